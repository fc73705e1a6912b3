/* Saving and loading a net's tensors as safetensors: every parameter and
 * running statistic under its name, optimizer state as "optimizer.<slot>.<name>"
 * when the net is built for training (unless CNN_SAVE_NO_OPTIMIZER), and metadata (the cfg text, the step, a
 * checksum of the tensor data, and whatever string pairs the caller adds). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/net.h"
#include "core/safetensors.h"

typedef struct saver {
  cnn_st_item *items;
  int n;
  float **bufs;
  int n_bufs;
  int64_t (*shapes)[4];
  char (*names)[128];
} saver;

static void saver_free(saver *s) {
  for (int i = 0; i < s->n_bufs; i++) free(s->bufs[i]);
  free(s->bufs);
  free(s->items);
  free(s->shapes);
  free(s->names);
}

static cnn_status collect_items(const cnn_net *net, int slots, saver *s) {
  int nt = net->n_tensors, cap = nt * (1 + slots);
  s->items = calloc((size_t)cap + 1, sizeof *s->items);
  s->bufs = calloc((size_t)cap + 1, sizeof *s->bufs);
  s->shapes = calloc((size_t)cap + 1, sizeof *s->shapes);
  s->names = calloc((size_t)cap + 1, sizeof *s->names);
  if (!s->items || !s->bufs || !s->shapes || !s->names) return cnn_error(CNN_ERR_NOMEM, "out of memory");
  float *opt[2] = {NULL, NULL};
  for (int k = 0; k < slots; k++) {
    opt[k] = malloc((net->n_params ? net->n_params : 1) * sizeof(float));
    if (!opt[k]) return cnn_error(CNN_ERR_NOMEM, "out of memory");
    s->bufs[s->n_bufs++] = opt[k];
    CNN_TRY(cnn_net_opt_state_get(net, k, opt[k], net->n_params));
  }
  for (int k = -1; k < slots; k++) {
    size_t at = 0;
    for (int i = 0; i < nt; i++) {
      const cnn_tensor_entry *t = &net->tensors[i];
      if (k >= 0 && !t->trainable) continue;
      float *data;
      if (k < 0) {
        data = malloc(t->count * sizeof(float));
        if (!data) return cnn_error(CNN_ERR_NOMEM, "out of memory");
        s->bufs[s->n_bufs++] = data;
        CNN_TRY(cnn_net_tensor_get(net, i, data));
        snprintf(s->names[s->n], sizeof s->names[0], "%s", t->name);
      } else {
        data = opt[k] + at;
        at += t->count;
        snprintf(s->names[s->n], sizeof s->names[0], "optimizer.%d.%s", k, t->name);
      }
      for (int d = 0; d < t->ndim; d++) s->shapes[s->n][d] = t->shape[d];
      s->items[s->n] = (cnn_st_item){s->names[s->n], "F32", t->ndim, s->shapes[s->n], data,
                                     t->count * sizeof(float)};
      s->n++;
    }
  }
  return CNN_OK;
}

static const char *const reserved_keys[] = {"format", "cfg", "step", CNN_ST_CHECKSUM_KEY};

cnn_status cnn_net_save(const cnn_net *net, const char *path, const char *metadata_json) {
  return cnn_net_save_flags(net, path, metadata_json, 0);
}

cnn_status cnn_net_save_flags(const cnn_net *net, const char *path, const char *metadata_json,
                              unsigned flags) {
  if (!net || !path) return cnn_error(CNN_ERR_ARG, "cnn_net_save: NULL argument");
  if (flags & ~CNN_SAVE_NO_OPTIMIZER)
    return cnn_error(CNN_ERR_ARG, "cnn_net_save_flags: unknown flags 0x%x", flags);
  int64_t at_step = net->step;
  if (net->built) { /* the device's counter: steps may still be in flight, some refused */
    cnn_step_state s;
    cnn_status ds = CNN_OP(net, download, &s, net->st[0], sizeof s);
    if (ds != CNN_OK) return ds;
    at_step = s.step;
  }
  cJSON *meta = NULL;
  if (metadata_json && *metadata_json) {
    meta = cJSON_Parse(metadata_json);
    if (!cJSON_IsObject(meta)) {
      cJSON_Delete(meta);
      return cnn_error(CNN_ERR_ARG, "%s: the checkpoint's metadata is not a JSON object of "
                       "strings", path);
    }
  }
  int n_meta = meta ? cJSON_GetArraySize(meta) : 0;
  const char **keys = calloc((size_t)n_meta + 4, sizeof *keys);
  const char **vals = calloc((size_t)n_meta + 4, sizeof *vals);
  char step[32], sum[CNN_ST_CHECKSUM_LEN];
  snprintf(step, sizeof step, "%lld", (long long)at_step);
  int k = 0;
  cnn_status st = keys && vals ? CNN_OK : cnn_error(CNN_ERR_NOMEM, "out of memory");
  saver s = {0};
  if (st == CNN_OK)
    st = collect_items(net, flags & CNN_SAVE_NO_OPTIMIZER ? 0 : cnn_net_opt_slots(net), &s);
  if (st == CNN_OK) {
    cnn_st_checksum(s.items, s.n, sum);
    keys[k] = "format", vals[k++] = "cnn-1";
    keys[k] = "cfg", vals[k++] = net->cfg_text;
    keys[k] = "step", vals[k++] = step;
    keys[k] = CNN_ST_CHECKSUM_KEY, vals[k++] = sum;
    for (cJSON *it = meta ? meta->child : NULL; it && st == CNN_OK; it = it->next) {
      if (!cJSON_IsString(it))
        st = cnn_error(CNN_ERR_ARG, "%s: checkpoint metadata value '%s' is not a string", path,
                       it->string);
      for (size_t r = 0; r < sizeof reserved_keys / sizeof *reserved_keys && st == CNN_OK; r++)
        if (!strcmp(it->string, reserved_keys[r]))
          st = cnn_error(CNN_ERR_ARG, "%s: checkpoint metadata key '%s' is reserved (written by "
                         "the library)", path, it->string);
      keys[k] = it->string, vals[k++] = it->valuestring;
    }
  }
  if (st == CNN_OK) st = cnn_st_write(path, s.items, s.n, keys, vals, k);
  saver_free(&s);
  free(keys);
  free(vals);
  cJSON_Delete(meta);
  return st;
}

static cnn_status check_tensor(const char *path, const cnn_st_tensor *st, const cnn_tensor_entry *t) {
  int ok = !strcmp(st->dtype, "F32") && st->ndim == t->ndim;
  for (int d = 0; ok && d < t->ndim; d++) ok = st->shape[d] == t->shape[d];
  if (ok) return CNN_OK;
  char have[96] = "", want[96] = "";
  int a = 0, b = 0;
  for (int d = 0; d < st->ndim && a < 80; d++) a += snprintf(have + a, sizeof have - a, "%s%lld", d ? "," : "", (long long)st->shape[d]);
  for (int d = 0; d < t->ndim && b < 80; d++) b += snprintf(want + b, sizeof want - b, "%s%lld", d ? "," : "", (long long)t->shape[d]);
  return cnn_error(CNN_ERR_SHAPE,
                   "%s: tensor '%s' is %s [%s], the model expects F32 [%s]: a checkpoint of "
                   "another model?", path, t->name, st->dtype, have, want);
}

/* the first non-finite value of `count` floats at p (unaligned), or -1 */
static long long first_non_finite(const uint8_t *p, size_t count, float *bad) {
  for (size_t i = 0; i < count; i++) {
    float v;
    memcpy(&v, p + i * sizeof v, sizeof v);
    if (!isfinite(v)) {
      *bad = v;
      return (long long)i;
    }
  }
  return -1;
}

static cnn_status check_finite(const char *path, const char *name, const uint8_t *p, size_t count) {
  float bad = 0;
  long long at = first_non_finite(p, count, &bad);
  if (at < 0) return CNN_OK;
  return cnn_error(CNN_ERR_NUMERIC,
                   "%s: tensor '%s' holds %s at element %lld: a checkpoint of a diverged run or a "
                   "damaged file", path, name, isnan(bad) ? "NaN" : bad > 0 ? "+Inf" : "-Inf", at);
}

/* the "step" metadata: a whole non-negative number, or absent (-1) */
static cnn_status parse_step(const char *path, const char *v, int64_t *step) {
  *step = -1;
  if (!v) return CNN_OK;
  char *end = NULL;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (end == v || *end || errno || x < 0 || v[0] == '-' || v[0] == ' ')
    return cnn_error(CNN_ERR_PARSE, "%s: metadata 'step' is '%.40s', not a step count (a whole "
                     "number >= 0)", path, v);
  *step = x;
  return CNN_OK;
}

/* Loading is all-or-nothing: every tensor's presence, shape and values, the
 * optimizer state and the step are checked before anything in the net changes. */
cnn_status cnn_net_load(cnn_net *net, const char *path) {
  if (!net || !path) return cnn_error(CNN_ERR_ARG, "cnn_net_load: NULL argument");
  cnn_st_file f;
  CNN_TRY(cnn_st_read(path, &f)); /* checks the data against its checksum, when it has one */
  int64_t step = -1;
  cnn_status st = parse_step(path, cnn_st_meta(&f, "step"), &step);
  for (int i = 0; i < net->n_tensors && st == CNN_OK; i++) {
    const cnn_tensor_entry *e = &net->tensors[i];
    const cnn_st_tensor *t = cnn_st_find(&f, e->name);
    if (!t)
      st = cnn_error(CNN_ERR_SHAPE, "%s: has no tensor '%s': a checkpoint of another model?", path,
                     e->name);
    else if ((st = check_tensor(path, t, e)) == CNN_OK)
      st = check_finite(path, e->name, f.data + t->begin, e->count);
  }
  /* optimizer state: a slot is restored when the file holds all of it */
  int slots = cnn_net_opt_slots(net);
  float *opt[2] = {NULL, NULL};
  for (int k = 0; k < slots && k < 2 && st == CNN_OK; k++) {
    float *buf = malloc((net->n_params ? net->n_params : 1) * sizeof(float));
    if (!buf) {
      st = cnn_error(CNN_ERR_NOMEM, "%s: out of memory for the optimizer state", path);
      break;
    }
    size_t at = 0;
    int complete = 1;
    for (int i = 0; i < net->n_tensors && complete && st == CNN_OK; i++) {
      const cnn_tensor_entry *e = &net->tensors[i];
      if (!e->trainable) continue;
      char name[160];
      snprintf(name, sizeof name, "optimizer.%d.%s", k, e->name);
      const cnn_st_tensor *t = cnn_st_find(&f, name);
      if (!t || t->end - t->begin != e->count * sizeof(float) || strcmp(t->dtype, "F32")) {
        complete = 0;
        break;
      }
      st = check_finite(path, name, f.data + t->begin, e->count);
      memcpy(buf + at, f.data + t->begin, e->count * sizeof(float));
      at += e->count;
    }
    if (complete && st == CNN_OK) opt[k] = buf;
    else free(buf);
  }
  /* everything checked: change the net */
  for (int i = 0; i < net->n_tensors && st == CNN_OK; i++) {
    const cnn_st_tensor *t = cnn_st_find(&f, net->tensors[i].name);
    st = cnn_net_tensor_set(net, i, (const float *)(f.data + t->begin));
  }
  for (int k = 0; k < 2; k++) {
    if (opt[k] && st == CNN_OK) st = cnn_net_opt_state_set(net, k, opt[k], net->n_params);
    free(opt[k]);
  }
  if (st == CNN_OK && step >= 0) st = cnn_net_set_step_count(net, step, net->total_steps);
  cnn_st_free(&f);
  return st;
}
