/* safetensors read/write. The reader trusts nothing in the file: every count,
 * offset and shape is checked before use, and every error names the file, what was
 * wrong and the byte offset. The writer never leaves a half-written PATH. */
#define _POSIX_C_SOURCE 200809L

#include "core/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "core/error.h"
#include "core/file_write.h"

#define ST_MAX_HEADER (100u * 1000u * 1000u) /* larger headers are corrupt, not big */
#define ST_MAX_INT 9007199254740992.0        /* 2^53: the exact range of a JSON double */

static const struct { const char *name; size_t size; } st_dtypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
    {"I8", 1},  {"U64", 8}, {"U32", 4}, {"U16", 2},  {"U8", 1},   {"BOOL", 1},
};

size_t cnn_st_dtype_size(const char *dtype) {
  if (!dtype) return 0;
  for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
    if (strcmp(st_dtypes[i].name, dtype) == 0) return st_dtypes[i].size;
  return 0;
}

/* prod(shape) * esize, 0 on overflow with *ok cleared */
static size_t st_nbytes(const int64_t *shape, int ndim, size_t esize, int *ok) {
  size_t total = esize;
  *ok = 1;
  for (int i = 0; i < ndim; i++) {
    uint64_t d = (uint64_t)shape[i];
    if (d != 0 && total > SIZE_MAX / d) {
      *ok = 0;
      return 0;
    }
    total *= (size_t)d;
  }
  return total;
}

void cnn_st_free(cnn_st_file *f) {
  if (!f) return;
  for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
  free(f->tensors);
  for (int i = 0; i < f->n_meta; i++) {
    free(f->meta_keys[i]);
    free(f->meta_values[i]);
  }
  free(f->meta_keys);
  free(f->meta_values);
  free(f->data);
  memset(f, 0, sizeof *f);
}

const cnn_st_tensor *cnn_st_find(const cnn_st_file *f, const char *name) {
  if (!f || !name) return NULL;
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
  return NULL;
}

const char *cnn_st_meta(const cnn_st_file *f, const char *key) {
  if (!f || !key) return NULL;
  for (int i = 0; i < f->n_meta; i++)
    if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
  return NULL;
}

static char *st_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* zlib's CRC-32 (IEEE 802.3, as gzip, PNG, Python's zlib.crc32): already linked
 * for gzip'd datasets, fast, and reproducible by any other tool */
static uint32_t st_crc32(uint32_t crc, const void *p, size_t n) {
  return (uint32_t)crc32_z(crc, (const Bytef *)p, (z_size_t)n);
}

void cnn_st_checksum(const cnn_st_item *items, int n, char *out) {
  uint32_t crc = st_crc32(0, NULL, 0);
  for (int i = 0; i < n; i++)
    if (items[i].nbytes && items[i].data) crc = st_crc32(crc, items[i].data, items[i].nbytes);
  snprintf(out, CNN_ST_CHECKSUM_LEN, "crc32:%08x", (unsigned)crc);
}

/* a "crc32:" checksum in the metadata must match the data buffer; other
 * algorithms (another tool's key) are not ours to check */
static cnn_status st_verify_checksum(const char *path, size_t hlen, const cnn_st_file *f) {
  const char *v = cnn_st_meta(f, CNN_ST_CHECKSUM_KEY);
  if (!v || strncmp(v, "crc32:", 6) != 0) return CNN_OK;
  unsigned want = 0;
  int ok = strlen(v) == 14;
  for (int i = 6; ok && i < 14; i++) {
    char c = v[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    ok = d >= 0;
    want = want << 4 | (unsigned)(d & 15);
  }
  if (!ok)
    return cnn_error(CNN_ERR_PARSE, "%s: corrupt: the header's checksum '%.40s' is not "
                     "crc32:<8 hex digits>", path, v);
  uint32_t got = st_crc32(st_crc32(0, NULL, 0), f->data, f->data_len);
  if (got != want)
    return cnn_error(CNN_ERR_PARSE, "%s: corrupt: the tensor data (%zu bytes from byte offset "
                     "%zu) has checksum crc32:%08x, the header records crc32:%08x; the file "
                     "was damaged after it was written", path, f->data_len, 8 + hlen,
                     (unsigned)got, want);
  return CNN_OK;
}

/* File offset of the header entry for `key` (its quoted name), or -1: cJSON keeps
 * no positions, and a byte offset makes a bad entry easy to find with a hex dump. */
static long long st_key_offset(const char *hdr, size_t hlen, const char *key) {
  size_t k = strlen(key);
  if (k + 2 > hlen) return -1;
  for (size_t i = 0; i + k + 2 <= hlen; i++) {
    if (hdr[i] != '"' || memcmp(hdr + i + 1, key, k) != 0 || hdr[i + k + 1] != '"') continue;
    size_t j = i + k + 2; /* a key, not an equal string value: ':' follows */
    while (j < hlen && (hdr[j] == ' ' || hdr[j] == '\t' || hdr[j] == '\n' || hdr[j] == '\r')) j++;
    if (j < hlen && hdr[j] == ':') return 8 + (long long)i;
  }
  return -1;
}

/* a JSON number that is an exact non-negative integer below 2^53 */
static int st_get_uint(const cJSON *j, double *v) {
  if (!cJSON_IsNumber(j)) return 0;
  double d = j->valuedouble;
  if (!isfinite(d) || d != floor(d) || d < 0 || d > ST_MAX_INT) return 0;
  *v = d;
  return 1;
}

typedef struct st_ctx {
  const char *path;
  const char *hdr;
  size_t hlen;
} st_ctx;

/* error about header entry `name` */
#define ST_ENTRY_ERR(c, name, fmt, ...)                                                  \
  cnn_error(CNN_ERR_PARSE, "%s: tensor '%s' (header entry at byte offset %lld): " fmt, \
            (c)->path, (name), st_key_offset((c)->hdr, (c)->hlen, (name)), __VA_ARGS__)

static cnn_status st_parse_meta(const st_ctx *c, const cJSON *m, cnn_st_file *out) {
  long long at = st_key_offset(c->hdr, c->hlen, "__metadata__");
  if (!cJSON_IsObject(m))
    return cnn_error(CNN_ERR_PARSE, "%s: __metadata__ (byte offset %lld) is not an object",
                     c->path, at);
  int n = cJSON_GetArraySize(m);
  out->meta_keys = calloc((size_t)n + 1, sizeof(char *));
  out->meta_values = calloc((size_t)n + 1, sizeof(char *));
  if (!out->meta_keys || !out->meta_values)
    return cnn_error(CNN_ERR_NOMEM, "%s: out of memory for %d metadata entries", c->path, n);
  const cJSON *e;
  cJSON_ArrayForEach(e, m) {
    if (!cJSON_IsString(e) || !e->valuestring)
      return cnn_error(CNN_ERR_PARSE,
                       "%s: __metadata__ (byte offset %lld): value of '%s' is not a string",
                       c->path, at, e->string);
    if (cnn_st_meta(out, e->string))
      return cnn_error(CNN_ERR_PARSE, "%s: __metadata__ (byte offset %lld): duplicate key '%s'",
                       c->path, at, e->string);
    int i = out->n_meta;
    out->meta_keys[i] = st_strdup(e->string);
    out->meta_values[i] = st_strdup(e->valuestring);
    if (!out->meta_keys[i] || !out->meta_values[i]) {
      free(out->meta_keys[i]);
      free(out->meta_values[i]);
      return cnn_error(CNN_ERR_NOMEM, "%s: out of memory for metadata", c->path);
    }
    out->n_meta++;
  }
  return CNN_OK;
}

static cnn_status st_parse_tensor(const st_ctx *c, const cJSON *e, size_t data_len,
                                  cnn_st_tensor *t) {
  const char *name = e->string;
  if (!cJSON_IsObject(e)) return ST_ENTRY_ERR(c, name, "%s", "entry is not an object");
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
  const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
  if (!dt || !sh || !of)
    return ST_ENTRY_ERR(c, name, "missing %s", !dt ? "dtype" : !sh ? "shape" : "data_offsets");
  if (!cJSON_IsString(dt) || !dt->valuestring)
    return ST_ENTRY_ERR(c, name, "%s", "dtype is not a string");
  size_t esize = cnn_st_dtype_size(dt->valuestring);
  if (!esize)
    return ST_ENTRY_ERR(c, name,
                        "unknown dtype '%s' (known: F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 "
                        "U16 U8 BOOL)", dt->valuestring);
  snprintf(t->dtype, sizeof t->dtype, "%s", dt->valuestring);

  if (!cJSON_IsArray(sh)) return ST_ENTRY_ERR(c, name, "%s", "shape is not an array");
  int nd = cJSON_GetArraySize(sh);
  if (nd > CNN_ST_MAX_DIMS)
    return ST_ENTRY_ERR(c, name, "shape has %d dims (at most %d supported)", nd,
                        CNN_ST_MAX_DIMS);
  t->ndim = nd;
  for (int i = 0; i < nd; i++) {
    const cJSON *d = cJSON_GetArrayItem(sh, i);
    double v;
    if (cJSON_IsNumber(d) && d->valuedouble < 0)
      return ST_ENTRY_ERR(c, name, "negative dimension %g at shape[%d]", d->valuedouble, i);
    if (!st_get_uint(d, &v))
      return ST_ENTRY_ERR(c, name, "shape[%d] is not a non-negative integer", i);
    t->shape[i] = (int64_t)v;
  }

  if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2)
    return ST_ENTRY_ERR(c, name, "%s", "data_offsets is not an array [begin, end]");
  double b, en;
  if (!st_get_uint(cJSON_GetArrayItem(of, 0), &b) || !st_get_uint(cJSON_GetArrayItem(of, 1), &en))
    return ST_ENTRY_ERR(c, name, "%s", "data_offsets are not non-negative integers");
  if (b > en)
    return ST_ENTRY_ERR(c, name, "data_offsets [%.0f, %.0f]: begin is after end", b, en);
  if (en > (double)data_len)
    return ST_ENTRY_ERR(c, name,
                        "data_offsets [%.0f, %.0f] (file bytes %.0f..%.0f) run past the data "
                        "buffer of %zu bytes (file ends at byte %.0f)",
                        b, en, b + 8 + (double)c->hlen, en + 8 + (double)c->hlen, data_len,
                        (double)data_len + 8 + (double)c->hlen);
  t->begin = (size_t)b;
  t->end = (size_t)en;
  int ok;
  size_t want = st_nbytes(t->shape, nd, esize, &ok);
  if (!ok) return ST_ENTRY_ERR(c, name, "%s", "shape's byte size overflows");
  if (want != t->end - t->begin)
    return ST_ENTRY_ERR(c, name,
                        "shape and dtype %s need %zu bytes but data_offsets [%zu, %zu] hold %zu",
                        t->dtype, want, t->begin, t->end, t->end - t->begin);
  return CNN_OK;
}

static int st_cmp_name(const void *a, const void *b) {
  return strcmp((*(const cnn_st_tensor *const *)a)->name, (*(const cnn_st_tensor *const *)b)->name);
}

static int st_cmp_range(const void *a, const void *b) {
  const cnn_st_tensor *x = *(const cnn_st_tensor *const *)a, *y = *(const cnn_st_tensor *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* names unique; ranges tile [0, data_len) exactly, with no overlap and no gap */
static cnn_status st_check_layout(const st_ctx *c, cnn_st_file *f) {
  if (f->n == 0) {
    if (f->data_len != 0)
      return cnn_error(CNN_ERR_PARSE,
                       "%s: no tensors in the header but %zu data bytes at byte offset %zu",
                       c->path, f->data_len, 8 + c->hlen);
    return CNN_OK;
  }
  const cnn_st_tensor **v = malloc((size_t)f->n * sizeof *v);
  if (!v) return cnn_error(CNN_ERR_NOMEM, "%s: out of memory", c->path);
  for (int i = 0; i < f->n; i++) v[i] = &f->tensors[i];
  cnn_status s = CNN_OK;
  qsort(v, (size_t)f->n, sizeof *v, st_cmp_name);
  for (int i = 1; i < f->n && s == CNN_OK; i++)
    if (strcmp(v[i - 1]->name, v[i]->name) == 0)
      s = ST_ENTRY_ERR(c, v[i]->name, "%s", "duplicate tensor name");
  if (s == CNN_OK) {
    qsort(v, (size_t)f->n, sizeof *v, st_cmp_range);
    size_t expect = 0, base = 8 + c->hlen;
    for (int i = 0; i < f->n && s == CNN_OK; i++) {
      if (v[i]->begin < expect)
        s = ST_ENTRY_ERR(c, v[i]->name,
                         "data_offsets [%zu, %zu] overlap tensor '%s' (file byte offset %zu)",
                         v[i]->begin, v[i]->end, v[i - 1]->name, base + v[i]->begin);
      else if (v[i]->begin > expect)
        s = ST_ENTRY_ERR(c, v[i]->name,
                         "data_offsets [%zu, %zu] leave a gap of %zu unused bytes at file byte "
                         "offset %zu",
                         v[i]->begin, v[i]->end, v[i]->begin - expect, base + expect);
      expect = v[i]->end;
    }
    if (s == CNN_OK && expect != f->data_len)
      s = cnn_error(CNN_ERR_PARSE,
                    "%s: tensors cover %zu data bytes but the data buffer has %zu: %zu unused "
                    "bytes at file byte offset %zu",
                    c->path, expect, f->data_len, f->data_len - expect, base + expect);
  }
  free(v);
  return s;
}

static cnn_status st_parse_header(const st_ctx *c, cnn_st_file *out) {
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(c->hdr, c->hlen, &end, 0);
  if (!root) {
    long long at = end ? (long long)(end - c->hdr) : 0;
    return cnn_error(CNN_ERR_PARSE, "%s: header JSON does not parse near byte offset %lld",
                     c->path, 8 + at);
  }
  cnn_status s = CNN_OK;
  size_t used = (size_t)(end - c->hdr);
  for (size_t i = used; i < c->hlen && s == CNN_OK; i++)
    if (c->hdr[i] != ' ' && c->hdr[i] != '\t' && c->hdr[i] != '\n' && c->hdr[i] != '\r' &&
        c->hdr[i] != 0)
      s = cnn_error(CNN_ERR_PARSE, "%s: unexpected byte 0x%02x after the header JSON at byte "
                    "offset %zu", c->path, (unsigned char)c->hdr[i], 8 + i);
  if (s == CNN_OK && !cJSON_IsObject(root))
    s = cnn_error(CNN_ERR_PARSE, "%s: header at byte offset 8 is not a JSON object", c->path);
  if (s != CNN_OK) {
    cJSON_Delete(root);
    return s;
  }
  int total = cJSON_GetArraySize(root);
  out->tensors = calloc((size_t)total + 1, sizeof *out->tensors);
  if (!out->tensors) {
    cJSON_Delete(root);
    return cnn_error(CNN_ERR_NOMEM, "%s: out of memory for %d tensors", c->path, total);
  }
  const cJSON *e;
  int seen_meta = 0;
  cJSON_ArrayForEach(e, root) {
    if (strcmp(e->string, "__metadata__") == 0) {
      if (seen_meta++) {
        s = cnn_error(CNN_ERR_PARSE, "%s: duplicate __metadata__ in the header", c->path);
        break;
      }
      if ((s = st_parse_meta(c, e, out)) != CNN_OK) break;
      continue;
    }
    cnn_st_tensor *t = &out->tensors[out->n];
    if ((s = st_parse_tensor(c, e, out->data_len, t)) != CNN_OK) break;
    if (!(t->name = st_strdup(e->string))) {
      s = cnn_error(CNN_ERR_NOMEM, "%s: out of memory", c->path);
      break;
    }
    out->n++;
  }
  cJSON_Delete(root);
  if (s == CNN_OK) s = st_check_layout(c, out);
  return s;
}

cnn_status cnn_st_read(const char *path, cnn_st_file *out) {
  if (!path || !out) return cnn_error(CNN_ERR_ARG, "cnn_st_read: NULL argument");
  memset(out, 0, sizeof *out);
  FILE *fp = fopen(path, "rb");
  if (!fp) return cnn_error(CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(fp);
    return cnn_error(CNN_ERR_IO, "%s: not a regular file", path);
  }
  uint64_t size = (uint64_t)st.st_size;
  uint8_t lenb[8];
  if (size < 8 || fread(lenb, 1, 8, fp) != 8) {
    fclose(fp);
    return cnn_error(CNN_ERR_PARSE,
                     "%s: file is %llu bytes, shorter than the 8-byte header length at byte "
                     "offset 0", path, (unsigned long long)size);
  }
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lenb[i];
  if (hlen > ST_MAX_HEADER || hlen > size - 8) {
    fclose(fp);
    return cnn_error(CNN_ERR_PARSE,
                     "%s: header length %llu at byte offset 0 is %s (file is %llu bytes)", path,
                     (unsigned long long)hlen,
                     hlen > size - 8 ? "larger than the file" : "absurd (over 100 MB)",
                     (unsigned long long)size);
  }
  if (hlen < 2) {
    fclose(fp);
    return cnn_error(CNN_ERR_PARSE, "%s: header length %llu at byte offset 0 is too short for "
                     "a JSON object", path, (unsigned long long)hlen);
  }
  char *hdr = malloc((size_t)hlen + 1);
  out->data_len = (size_t)(size - 8 - hlen);
  out->data = malloc(out->data_len ? out->data_len : 1);
  if (!hdr || !out->data) {
    free(hdr);
    fclose(fp);
    cnn_st_free(out);
    return cnn_error(CNN_ERR_NOMEM, "%s: out of memory for %llu bytes", path,
                     (unsigned long long)size);
  }
  size_t got_h = fread(hdr, 1, (size_t)hlen, fp);
  size_t got_d = got_h == hlen ? fread(out->data, 1, out->data_len, fp) : 0;
  int rerr = ferror(fp);
  fclose(fp);
  if (got_h != hlen || got_d != out->data_len) {
    free(hdr);
    cnn_st_free(out);
    return cnn_error(CNN_ERR_IO, "%s: read failed at byte offset %llu%s", path,
                     (unsigned long long)(8 + got_h + got_d),
                     rerr ? "" : " (file shrank while reading)");
  }
  hdr[hlen] = 0;
  st_ctx c = {path, hdr, (size_t)hlen};
  cnn_status s = st_parse_header(&c, out);
  if (s == CNN_OK) s = st_verify_checksum(path, (size_t)hlen, out);
  free(hdr);
  if (s != CNN_OK) cnn_st_free(out);
  return s;
}

/* ---- writing ------------------------------------------------------------ */

typedef struct st_buf {
  char *p;
  size_t len, cap;
  int oom;
} st_buf;

static void sb_put(st_buf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}

static void sb_str(st_buf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_json_str(st_buf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    if (*p == '"' || *p == '\\') {
      esc[0] = '\\';
      esc[1] = (char)*p;
      sb_put(b, esc, 2);
    } else if (*p < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", *p);
      sb_put(b, esc, 6);
    } else {
      sb_put(b, (const char *)p, 1);
    }
  }
  sb_put(b, "\"", 1);
}

static int st_cmp_cstr(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static cnn_status st_check_items(const char *path, const cnn_st_item *items, int n,
                                 const char *const *mk, const char *const *mv, int n_meta) {
  if (n < 0 || n_meta < 0 || (n > 0 && !items) || (n_meta > 0 && (!mk || !mv)))
    return cnn_error(CNN_ERR_ARG, "%s: bad item or metadata arrays (n=%d, n_meta=%d)", path, n,
                     n_meta);
  for (int i = 0; i < n_meta; i++)
    if (!mk[i] || !mv[i])
      return cnn_error(CNN_ERR_ARG, "%s: metadata entry %d has a NULL key or value", path, i);
  for (int i = 0; i < n; i++) {
    const cnn_st_item *it = &items[i];
    if (!it->name || !it->name[0] || strcmp(it->name, "__metadata__") == 0)
      return cnn_error(CNN_ERR_ARG, "%s: item %d has no valid name", path, i);
    size_t es = cnn_st_dtype_size(it->dtype);
    if (!es)
      return cnn_error(CNN_ERR_ARG, "%s: tensor '%s': unknown dtype '%s'", path, it->name,
                       it->dtype ? it->dtype : "(null)");
    if (it->ndim < 0 || it->ndim > CNN_ST_MAX_DIMS || (it->ndim > 0 && !it->shape))
      return cnn_error(CNN_ERR_ARG, "%s: tensor '%s': bad ndim %d", path, it->name, it->ndim);
    for (int d = 0; d < it->ndim; d++)
      if (it->shape[d] < 0)
        return cnn_error(CNN_ERR_ARG, "%s: tensor '%s': negative dimension %lld", path,
                         it->name, (long long)it->shape[d]);
    int ok;
    size_t want = st_nbytes(it->shape, it->ndim, es, &ok);
    if (!ok)
      return cnn_error(CNN_ERR_ARG, "%s: tensor '%s': shape's byte size overflows", path, it->name);
    if (want != it->nbytes)
      return cnn_error(CNN_ERR_ARG, "%s: tensor '%s': shape and dtype %s need %zu bytes, got %zu",
                       path, it->name, it->dtype, want, it->nbytes);
    if (it->nbytes && !it->data)
      return cnn_error(CNN_ERR_ARG, "%s: tensor '%s': NULL data", path, it->name);
  }
  if (n > 1) {
    const char **names = malloc((size_t)n * sizeof *names);
    if (!names) return cnn_error(CNN_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < n; i++) names[i] = items[i].name;
    qsort(names, (size_t)n, sizeof *names, st_cmp_cstr);
    for (int i = 1; i < n; i++)
      if (strcmp(names[i - 1], names[i]) == 0) {
        cnn_status s = cnn_error(CNN_ERR_ARG, "%s: duplicate tensor name '%s'", path, names[i]);
        free(names);
        return s;
      }
    free(names);
  }
  return CNN_OK;
}

static cnn_status st_build_header(const char *path, const cnn_st_item *items, int n,
                                  const char *const *mk, const char *const *mv, int n_meta,
                                  st_buf *b) {
  char num[64];
  sb_str(b, "{");
  if (n_meta > 0) {
    sb_str(b, "\"__metadata__\":{");
    for (int i = 0; i < n_meta; i++) {
      if (i) sb_str(b, ",");
      sb_json_str(b, mk[i]);
      sb_str(b, ":");
      sb_json_str(b, mv[i]);
    }
    sb_str(b, "}");
  }
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    const cnn_st_item *it = &items[i];
    if (i || n_meta > 0) sb_str(b, ",");
    sb_json_str(b, it->name);
    sb_str(b, ":{\"dtype\":");
    sb_json_str(b, it->dtype);
    sb_str(b, ",\"shape\":[");
    for (int d = 0; d < it->ndim; d++) {
      snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)it->shape[d]);
      sb_str(b, num);
    }
    snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", off, off + it->nbytes);
    sb_str(b, num);
    off += it->nbytes;
  }
  sb_str(b, "}");
  /* pad with spaces so the data starts 8-byte aligned, as the reference writer does */
  while (!b->oom && b->len % 8) sb_str(b, " ");
  if (b->oom) return cnn_error(CNN_ERR_NOMEM, "%s: out of memory for the header", path);
  return CNN_OK;
}

cnn_status cnn_st_write(const char *path, const cnn_st_item *items, int n,
                        const char *const *meta_keys, const char *const *meta_values,
                        int n_meta) {
  if (!path || !path[0])
    return cnn_error(CNN_ERR_ARG, "cannot write a safetensors file: the file name is empty");
  CNN_TRY(st_check_items(path, items, n, meta_keys, meta_values, n_meta));
  st_buf hdr = {0};
  cnn_status s = st_build_header(path, items, n, meta_keys, meta_values, n_meta, &hdr);
  const void **parts = malloc(((size_t)n + 2) * sizeof *parts);
  size_t *sizes = malloc(((size_t)n + 2) * sizeof *sizes);
  if (s == CNN_OK && (!parts || !sizes)) s = cnn_error(CNN_ERR_NOMEM, "%s: out of memory", path);
  if (s == CNN_OK) {
    uint8_t lenb[8];
    uint64_t hl = hdr.len;
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)(hl >> (8 * i));
    parts[0] = lenb, sizes[0] = 8;
    parts[1] = hdr.p, sizes[1] = hdr.len;
    for (int i = 0; i < n; i++) parts[2 + i] = items[i].data, sizes[2 + i] = items[i].nbytes;
    s = cnn_file_write_whole(path, parts, sizes, n + 2);
  }
  free(parts);
  free(sizes);
  free(hdr.p);
  return s;
}
