/* Darknet's .weights format both ways (see darknet_weights.h). A plan lists the
 * file's arrays in order for a net, each with the tensor it fills and how its
 * elements map to ours; reading, writing and the size checks all walk the plan. */
#define _POSIX_C_SOURCE 200809L
#include "exchange/darknet_weights.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/cfg.h"
#include "core/error.h"
#include "core/file_write.h"
#include "core/net.h"

typedef enum { A_PLAIN, A_CONV, A_DENSE, A_ZERO } arr_kind;

/* one float32 array of the file, or (A_ZERO) a tensor Darknet does not store,
 * which reads as zeros and must be zero to be written */
typedef struct arr {
  int layer;          /* our layer named in messages (the conv or dense of a section) */
  const char *what;   /* Darknet's name for the array */
  int tensor;
  size_t count;
  arr_kind kind;
  int nonneg;         /* a variance */
  /* A_CONV: n filters, c channels per group, size x size kernels, flip: the file
   * holds [c*size*size][n]. A_DENSE: n outputs, input h x w x c (flattened CHW in
   * the file), flip: the file holds [in][out]. */
  int n, c, h, w, size, flip;
} arr;

typedef struct plan {
  arr *a;
  int n, cap;
  size_t values;      /* floats after the header */
  size_t max_count;   /* the largest array (scratch size) */
} plan;

static void plan_free(plan *p) {
  free(p->a);
  memset(p, 0, sizeof *p);
}

static cnn_status push(plan *p, arr a) {
  if (p->n == p->cap) {
    int cap = p->cap ? 2 * p->cap : 16;
    arr *q = realloc(p->a, (size_t)cap * sizeof *q);
    if (!q) return cnn_error(CNN_ERR_NOMEM, "out of memory");
    p->a = q;
    p->cap = cap;
  }
  p->a[p->n++] = a;
  if (a.kind != A_ZERO) p->values += a.count;
  if (a.count > p->max_count) p->max_count = a.count;
  return CNN_OK;
}

/* "layer 2 [convolutional] (conv2)": Darknet numbers layers by cfg section */
static const char *where(const cnn_net *net, int li, char *buf, size_t n) {
  const cnn_layer *l = &net->layers[li];
  snprintf(buf, n, "layer %d [%s] (%s)", l->section, net->section_name[l->section], l->name);
  return buf;
}

static arr plain(int li, const char *what, const cnn_net *net, int tensor) {
  arr a = {.layer = li, .what = what, .tensor = tensor, .kind = A_PLAIN};
  a.count = net->tensors[tensor].count;
  return a;
}

/* Darknet's flipped=1 per section: our cfg reader accepts the key and ignores it,
 * so it is read here from the net's cfg text */
static cnn_status flipped_sections(const cnn_net *net, int *flip) {
  if (!net->cfg_text) return cnn_error(CNN_ERR_ARG, "%s: the net has no cfg text", net->path);
  cnn_cfg cfg;
  CNN_TRY(cnn_cfg_parse(net->cfg_text, net->path, &cfg));
  cnn_status st = CNN_OK;
  for (int i = 1, si = 0; i < cfg.n && si < net->n_sections && st == CNN_OK; i++) {
    if (!strcmp(cfg.sec[i].name, "train")) continue; /* not a layer, as in parse_net */
    st = cnn_cfg_int(&cfg, &cfg.sec[i], "flipped", 0, 0, 1, &flip[si++]);
  }
  cnn_cfg_free(&cfg);
  return st;
}

static cnn_status bn_arrays(plan *p, const cnn_net *net, int li, const cnn_layer *bn) {
  CNN_TRY(push(p, plain(li, "scales", net, bn->param[0])));
  CNN_TRY(push(p, plain(li, "rolling_mean", net, bn->param[2])));
  arr var = plain(li, "rolling_variance", net, bn->param[3]);
  var.nonneg = 1;
  return push(p, var);
}

/* a [convolutional] or [connected] section: the layer li and its batch norm, if any */
static cnn_status plan_weighted(plan *p, const cnn_net *net, int li, int flip, int transposed) {
  const cnn_layer *l = &net->layers[li];
  const cnn_layer *bn = li + 1 < net->n_layers && net->layers[li + 1].section == l->section &&
                                net->layers[li + 1].kind == &cnn_kind_batchnorm
                            ? &net->layers[li + 1]
                            : NULL;
  int conv = l->kind == &cnn_kind_conv;
  char at[160];
  where(net, li, at, sizeof at);
  if (bn && l->bias)
    return cnn_error(CNN_ERR_SHAPE, "%s: %s: bias=1 with batch_normalize=1 has no place in "
                     "Darknet's weights (its biases are the batch norm's)", net->path, at);
  if (!bn && !l->bias)
    return cnn_error(CNN_ERR_SHAPE, "%s: %s: bias=0 without batch_normalize has no place in "
                     "Darknet's weights (its layers always have biases)", net->path, at);
  if (conv && l->kh != l->kw)
    return cnn_error(CNN_ERR_SHAPE, "%s: %s: a %dx%d kernel has no place in Darknet's weights "
                     "(its kernels are square)", net->path, at, l->kh, l->kw);
  if (conv && flip && l->groups > 1) /* Darknet transposes c*size*size rows, not c/groups */
    return cnn_error(CNN_ERR_SHAPE, "%s: %s: flipped=1 with groups=%d: Darknet's layout of "
                     "those weights is not defined", net->path, at, l->groups);
  CNN_TRY(push(p, plain(li, "biases", net, bn ? bn->param[1] : l->param[1])));
  if (conv && bn) CNN_TRY(bn_arrays(p, net, li, bn));
  arr w = plain(li, "weights", net, l->param[0]);
  if (conv) {
    w.kind = A_CONV;
    w.n = l->filters;
    w.c = l->in_shape[0].c / l->groups;
    w.size = l->kh;
    w.flip = flip;
  } else {
    /* the flattening order is that of the last input with spatial extent: a
     * [flatten] (ours) keeps NHWC order, Darknet's connected layers read CHW */
    cnn_shape s = l->in_shape[0];
    for (int q = l->in[0]; q >= 0 && net->layers[q].kind == &cnn_kind_flatten;
         q = net->layers[q].in[0])
      s = net->layers[q].in_shape[0];
    w.kind = A_DENSE;
    w.n = l->outputs;
    w.h = s.h;
    w.w = s.w;
    w.c = s.c;
    w.flip = transposed;
  }
  CNN_TRY(push(p, w));
  if (!conv && bn) CNN_TRY(bn_arrays(p, net, li, bn));
  return CNN_OK;
}

/* the file's arrays for `net` in order; transposed: connected weights are [in][out] */
static cnn_status plan_make(const cnn_net *net, int transposed, plan *p) {
  memset(p, 0, sizeof *p);
  int *flip = calloc((size_t)net->n_sections + 1, sizeof *flip);
  int *uses = calloc((size_t)net->n_tensors + 1, sizeof *uses);
  cnn_status st = flip && uses ? flipped_sections(net, flip) : cnn_error(CNN_ERR_NOMEM, "out of memory");
  for (int li = 0; li < net->n_layers && st == CNN_OK; li++) {
    const cnn_layer *l = &net->layers[li];
    if (l->kind == &cnn_kind_conv || l->kind == &cnn_kind_dense) {
      st = plan_weighted(p, net, li, flip[l->section], transposed);
    } else if (l->kind == &cnn_kind_batchnorm &&
               !(li > 0 && net->layers[li - 1].section == l->section &&
                 (net->layers[li - 1].kind == &cnn_kind_conv ||
                  net->layers[li - 1].kind == &cnn_kind_dense))) {
      /* a [batchnorm] section: Darknet keeps no beta for it (zeros in its forward) */
      st = bn_arrays(p, net, li, l);
      arr beta = plain(li, "beta", net, l->param[1]);
      beta.kind = A_ZERO;
      if (st == CNN_OK) st = push(p, beta);
    }
  }
  for (int i = 0; i < p->n && st == CNN_OK; i++) uses[p->a[i].tensor]++;
  for (int t = 0; t < net->n_tensors && st == CNN_OK; t++)
    if (uses[t] != 1) /* a layer kind with parameters this file does not know */
      st = cnn_error(CNN_ERR_SHAPE, "%s: tensor '%s' has no place in Darknet's weights",
                     net->path, net->tensors[t].name);
  free(flip);
  free(uses);
  if (st != CNN_OK) plan_free(p);
  return st;
}

/* ours[o] <-> file[f] for every element of a: calls mv(ctx, o, f) */
static void for_each(const arr *a, void (*mv)(void *, size_t, size_t), void *ctx) {
  if (a->kind == A_CONV) {
    size_t n = (size_t)a->n, c = (size_t)a->c, z = (size_t)a->size;
    for (size_t k = 0; k < n; k++)
      for (size_t r = 0; r < z; r++)
        for (size_t s = 0; s < z; s++)
          for (size_t ch = 0; ch < c; ch++) {
            size_t j = (ch * z + r) * z + s; /* Darknet: [n][c][size][size] */
            mv(ctx, ((k * z + r) * z + s) * c + ch, a->flip ? j * n + k : k * c * z * z + j);
          }
  } else if (a->kind == A_DENSE) {
    size_t n = (size_t)a->n, h = (size_t)a->h, w = (size_t)a->w, c = (size_t)a->c;
    size_t in = h * w * c;
    for (size_t o = 0; o < n; o++)
      for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++)
          for (size_t ch = 0; ch < c; ch++) {
            size_t i = (ch * h + y) * w + x; /* Darknet's input index: CHW */
            mv(ctx, o * in + (y * w + x) * c + ch, a->flip ? i * n + o : o * in + i);
          }
  } else {
    for (size_t i = 0; i < a->count; i++) mv(ctx, i, i);
  }
}

static uint32_t rd_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static float rd_f32(const uint8_t *p) {
  uint32_t u = rd_u32(p);
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
static void wr_u32(uint8_t *p, uint32_t u) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(u >> 8 * i);
}

typedef struct move_ctx {
  float *ours;
  const uint8_t *file; /* reading */
  uint8_t *out;        /* writing */
} move_ctx;

static void mv_read(void *c, size_t o, size_t f) {
  move_ctx *m = c;
  m->ours[o] = rd_f32(m->file + 4 * f);
}
static void mv_write(void *c, size_t o, size_t f) {
  move_ctx *m = c;
  uint32_t u;
  memcpy(&u, &m->ours[o], sizeof u);
  wr_u32(m->out + 4 * f, u);
}

/* bytes 8.. of a safetensors file start its JSON header */
static int looks_safetensors(const uint8_t *p, size_t size) {
  return size >= 10 && p[8] == '{' && p[9] == '"';
}

/* head: the first min(size, 20) bytes of a file of `size` bytes */
static cnn_status parse_header(const uint8_t *head, size_t size, const char *name,
                               cnn_darknet_info *h) {
  memset(h, 0, sizeof *h);
  if (size == 0) return cnn_error(CNN_ERR_PARSE, "%s: empty file, not Darknet weights", name);
  if (size < 16)
    return cnn_error(CNN_ERR_PARSE, "%s: bad header: %zu bytes, shorter than a Darknet weights "
                     "header (16 or 20 bytes)", name, size);
  h->major = (int32_t)rd_u32(head);
  h->minor = (int32_t)rd_u32(head + 4);
  h->revision = (int32_t)rd_u32(head + 8);
  if (h->major < 0 || h->minor < 0 || h->revision < 0)
    return cnn_error(CNN_ERR_PARSE, "%s: bad header: version %d.%d.%d is not a Darknet weights "
                     "version%s", name, h->major, h->minor, h->revision,
                     looks_safetensors(head, size) ? " (it is a safetensors file)" : "");
  /* Darknet's rule: an 8-byte counter from version 0.2 on, 4 bytes before */
  int wide = (int64_t)h->major * 10 + h->minor >= 2 && h->major < 1000 && h->minor < 1000;
  h->header_bytes = wide ? 20 : 16;
  if (size < h->header_bytes)
    return cnn_error(CNN_ERR_PARSE, "%s: bad header: version %d.%d.%d has a 20-byte header, the "
                     "file has %zu bytes", name, h->major, h->minor, h->revision, size);
  h->seen = wide ? (uint64_t)rd_u32(head + 12) | (uint64_t)rd_u32(head + 16) << 32
                 : (uint64_t)rd_u32(head + 12);
  h->transposed = h->major > 1000 || h->minor > 1000;
  return CNN_OK;
}

/* the file must hold exactly the plan's values: else name where it runs out, or
 * how much is left over */
static cnn_status check_size(const cnn_net *net, const plan *p, const cnn_darknet_info *h,
                             const uint8_t *head, size_t size, const char *name) {
  size_t need = h->header_bytes + 4 * p->values;
  if (size == need) return CNN_OK;
  if (looks_safetensors(head, size))
    return cnn_error(CNN_ERR_PARSE, "%s: a safetensors file (a cnn checkpoint?), not Darknet "
                     "weights", name);
  if (size > need)
    return cnn_error(CNN_ERR_SHAPE, "%s: %zu bytes left over after the last layer: %s needs "
                     "%zu bytes (a %zu-byte header and %zu values), the file has %zu: weights of "
                     "another model?", name, size - need, net->path, need, h->header_bytes,
                     p->values, size);
  size_t off = h->header_bytes;
  for (int i = 0; i < p->n; i++) {
    const arr *a = &p->a[i];
    if (a->kind == A_ZERO) continue;
    if (off + 4 * a->count > size) {
      char at[160];
      return cnn_error(CNN_ERR_SHAPE, "%s: ends in %s: it needs %zu bytes for its %s at "
                       "offset %zu, %zu remain (the file is %zu bytes short for %s)", name,
                       where(net, a->layer, at, sizeof at), 4 * a->count, a->what, off,
                       size - off, need - size, net->path);
    }
    off += 4 * a->count;
  }
  return cnn_error(CNN_ERR_SHAPE, "%s: %zu bytes, %s needs %zu", name, size, net->path, need);
}

/* every value finite, every variance >= 0: checked before the net changes */
static cnn_status check_values(const cnn_net *net, const plan *p, const uint8_t *payload,
                               size_t header, const char *name) {
  size_t off = 0;
  for (int i = 0; i < p->n; i++) {
    const arr *a = &p->a[i];
    if (a->kind == A_ZERO) continue;
    for (size_t j = 0; j < a->count; j++) {
      float v = rd_f32(payload + off + 4 * j);
      if (isfinite(v) && !(a->nonneg && v < 0)) continue;
      char at[160];
      where(net, a->layer, at, sizeof at);
      if (!isfinite(v))
        return cnn_error(CNN_ERR_NUMERIC, "%s: %s: %s[%zu] is %s (byte offset %zu): damaged "
                         "weights?", name, at, a->what, j, isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf",
                         header + off + 4 * j);
      return cnn_error(CNN_ERR_NUMERIC, "%s: %s: %s[%zu] is %g (byte offset %zu): a variance "
                       "cannot be negative", name, at, a->what, j, v, header + off + 4 * j);
    }
    off += 4 * a->count;
  }
  return CNN_OK;
}

static cnn_status apply(cnn_net *net, const plan *p, const uint8_t *payload) {
  float *scratch = malloc((p->max_count ? p->max_count : 1) * sizeof *scratch);
  if (!scratch) return cnn_error(CNN_ERR_NOMEM, "out of memory for %zu values", p->max_count);
  cnn_status st = CNN_OK;
  size_t off = 0;
  for (int i = 0; i < p->n && st == CNN_OK; i++) {
    const arr *a = &p->a[i];
    if (a->kind == A_ZERO) {
      memset(scratch, 0, a->count * sizeof *scratch);
    } else {
      move_ctx m = {.ours = scratch, .file = payload + off};
      for_each(a, mv_read, &m);
      off += 4 * a->count;
    }
    st = cnn_net_tensor_set(net, a->tensor, scratch);
  }
  free(scratch);
  return st;
}

/* header parsed, size checked: check the values, then fill the net */
static cnn_status read_checked(cnn_net *net, const plan *p, const cnn_darknet_info *h,
                               const uint8_t *payload, const char *name) {
  CNN_TRY(check_values(net, p, payload, h->header_bytes, name));
  return apply(net, p, payload);
}

cnn_status cnn_darknet_payload_bytes(const cnn_net *net, size_t *bytes) {
  if (!net || !bytes) return cnn_error(CNN_ERR_ARG, "cnn_darknet_payload_bytes: NULL argument");
  plan p;
  CNN_TRY(plan_make(net, 0, &p));
  *bytes = 4 * p.values;
  plan_free(&p);
  return CNN_OK;
}

cnn_status cnn_darknet_read(cnn_net *net, const uint8_t *data, size_t size, const char *name,
                            cnn_darknet_info *info) {
  if (!net || (!data && size)) return cnn_error(CNN_ERR_ARG, "cnn_darknet_read: NULL argument");
  if (!name) name = "<weights>";
  cnn_darknet_info h;
  CNN_TRY(parse_header(data, size, name, &h));
  plan p;
  CNN_TRY(plan_make(net, h.transposed, &p));
  cnn_status st = check_size(net, &p, &h, data, size, name);
  if (st == CNN_OK) st = read_checked(net, &p, &h, data + h.header_bytes, name);
  h.values = p.values;
  plan_free(&p);
  if (st == CNN_OK && info) *info = h;
  return st;
}

cnn_status cnn_darknet_load(cnn_net *net, const char *path, cnn_darknet_info *info) {
  if (!net || !path) return cnn_error(CNN_ERR_ARG, "cnn_darknet_load: NULL argument");
  FILE *f = fopen(path, "rb");
  if (!f) return cnn_error(CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    fclose(f);
    return cnn_error(CNN_ERR_IO, "%s: not a regular file", path);
  }
  size_t size = (size_t)sb.st_size;
  uint8_t head[20] = {0};
  size_t nh = size < sizeof head ? size : sizeof head;
  cnn_darknet_info h;
  plan p = {0};
  cnn_status st = fread(head, 1, nh, f) == nh ? CNN_OK
                                               : cnn_error(CNN_ERR_IO, "%s: read error", path);
  if (st == CNN_OK) st = parse_header(head, size, path, &h);
  if (st == CNN_OK) st = plan_make(net, h.transposed, &p);
  if (st == CNN_OK) st = check_size(net, &p, &h, head, size, path);
  /* the size matched the net's: the buffer is bounded by the net, not by the file */
  uint8_t *payload = st == CNN_OK ? malloc(4 * p.values + 1) : NULL;
  if (st == CNN_OK && !payload)
    st = cnn_error(CNN_ERR_NOMEM, "%s: out of memory for %zu values", path, p.values);
  if (st == CNN_OK && (fseek(f, (long)h.header_bytes, SEEK_SET) != 0 ||
                       fread(payload, 1, 4 * p.values, f) != 4 * p.values))
    st = cnn_error(CNN_ERR_IO, "%s: read error (the file changed while being read?)", path);
  if (st == CNN_OK) st = read_checked(net, &p, &h, payload, path);
  h.values = p.values;
  free(payload);
  plan_free(&p);
  fclose(f);
  if (st == CNN_OK && info) *info = h;
  return st;
}

cnn_status cnn_darknet_encode(const cnn_net *net, uint64_t seen, uint8_t **out, size_t *size) {
  if (!net || !out || !size) return cnn_error(CNN_ERR_ARG, "cnn_darknet_encode: NULL argument");
  *out = NULL;
  *size = 0;
  plan p;
  CNN_TRY(plan_make(net, 0, &p));
  size_t total = 20 + 4 * p.values;
  uint8_t *buf = malloc(total);
  float *scratch = malloc((p.max_count ? p.max_count : 1) * sizeof *scratch);
  cnn_status st = buf && scratch ? CNN_OK : cnn_error(CNN_ERR_NOMEM, "out of memory");
  if (st == CNN_OK) { /* version 0.2.0: what Darknet itself writes */
    wr_u32(buf, 0);
    wr_u32(buf + 4, 2);
    wr_u32(buf + 8, 0);
    wr_u32(buf + 12, (uint32_t)seen);
    wr_u32(buf + 16, (uint32_t)(seen >> 32));
  }
  size_t off = 20;
  for (int i = 0; i < p.n && st == CNN_OK; i++) {
    const arr *a = &p.a[i];
    st = cnn_net_tensor_get(net, a->tensor, scratch);
    const char *name = net->tensors[a->tensor].name;
    char at[160];
    for (size_t j = 0; j < a->count && st == CNN_OK; j++) {
      float v = scratch[j];
      if (a->kind == A_ZERO && v != 0)
        st = cnn_error(CNN_ERR_SHAPE, "%s: %s: its beta (%s) is not zero, and Darknet's "
                       "[batchnorm] has none: use batch_normalize=1 in the layer before instead",
                       net->path, where(net, a->layer, at, sizeof at), name);
      else if (!isfinite(v) || (a->nonneg && v < 0))
        st = cnn_error(CNN_ERR_NUMERIC, "%s: %s: %s holds %g at element %zu", net->path,
                       where(net, a->layer, at, sizeof at), name, v, j);
    }
    if (st != CNN_OK || a->kind == A_ZERO) continue;
    move_ctx m = {.ours = scratch, .out = buf + off};
    for_each(a, mv_write, &m);
    off += 4 * a->count;
  }
  free(scratch);
  plan_free(&p);
  if (st != CNN_OK) {
    free(buf);
    return st;
  }
  *out = buf;
  *size = total;
  return CNN_OK;
}

cnn_status cnn_darknet_save(const cnn_net *net, const char *path, uint64_t seen) {
  if (!path) return cnn_error(CNN_ERR_ARG, "cnn_darknet_save: NULL path");
  uint8_t *buf;
  size_t n;
  CNN_TRY(cnn_darknet_encode(net, seen, &buf, &n));
  const void *parts[1] = {buf};
  cnn_status st = cnn_file_write_whole(path, parts, &n, 1);
  free(buf);
  return st;
}

cnn_status cnn_darknet_cfg_text(const char *cfg_text, const char *name, char **out) {
  if (!cfg_text || !out) return cnn_error(CNN_ERR_ARG, "cnn_darknet_cfg_text: NULL argument");
  *out = NULL;
  cnn_cfg cfg;
  CNN_TRY(cnn_cfg_parse(cfg_text, name ? name : "<cfg>", &cfg));
  int has = 0;
  for (int i = 0; i < cfg.n; i++)
    if (!strcmp(cfg.sec[i].name, "train") && cnn_cfg_find(&cfg.sec[i], "bn_eps")) has = 1;
  cnn_cfg_free(&cfg);
  char add[160] = "";
  if (!has)
    snprintf(add, sizeof add,
             "\n# cnn: Darknet's batch norm divides by sqrt(var) + 1e-6; this matches it\n"
             "[train]\nbn_eps=%g\n", (double)CNN_DARKNET_BN_EPS);
  size_t n = strlen(cfg_text), k = strlen(add);
  char *s = malloc(n + k + 1);
  if (!s) return cnn_error(CNN_ERR_NOMEM, "out of memory");
  memcpy(s, cfg_text, n);
  memcpy(s + n, add, k + 1);
  *out = s;
  return CNN_OK;
}
