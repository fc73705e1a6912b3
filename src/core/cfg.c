#define _POSIX_C_SOURCE 200809L
#include "core/cfg.h"


#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static char *dup_range(const char *a, const char *b) {
  while (a < b && isspace((unsigned char)*a)) a++;
  while (b > a && isspace((unsigned char)b[-1])) b--;
  char *s = malloc((size_t)(b - a) + 1);
  if (!s) return NULL;
  memcpy(s, a, (size_t)(b - a));
  s[b - a] = 0;
  return s;
}

static cnn_status add_section(cnn_cfg *cfg, char *name, int line) {
  if (cfg->n == cfg->cap) {
    int cap = cfg->cap ? cfg->cap * 2 : 16;
    cnn_cfg_section *p = realloc(cfg->sec, (size_t)cap * sizeof *p);
    if (!p) return cnn_error(CNN_ERR_NOMEM, "%s: out of memory", cfg->path);
    cfg->sec = p;
    cfg->cap = cap;
  }
  cnn_cfg_section *s = &cfg->sec[cfg->n++];
  memset(s, 0, sizeof *s);
  s->name = name;
  s->line = line;
  return CNN_OK;
}

static cnn_status add_kv(cnn_cfg *cfg, cnn_cfg_section *s, char *k, char *v, int line) {
  for (int i = 0; i < s->n_kv; i++)
    if (!strcmp(s->kv[i].key, k)) {
      cnn_status st = cnn_error(CNN_ERR_PARSE, "%s:%d: [%s] key '%s' repeated (first on line %d)",
                                cfg->path, line, s->name, k, s->kv[i].line);
      free(k);
      free(v);
      return st;
    }
  if (s->n_kv == s->cap_kv) {
    int cap = s->cap_kv ? s->cap_kv * 2 : 8;
    cnn_cfg_kv *p = realloc(s->kv, (size_t)cap * sizeof *p);
    if (!p) {
      free(k);
      free(v);
      return cnn_error(CNN_ERR_NOMEM, "%s: out of memory", cfg->path);
    }
    s->kv = p;
    s->cap_kv = cap;
  }
  s->kv[s->n_kv++] = (cnn_cfg_kv){k, v, line, 0};
  return CNN_OK;
}

static cnn_status parse_line(cnn_cfg *cfg, const char *a, const char *e, int line) {
  /* strip comments: '#' or ';' anywhere starts one (Darknet strips whole-line
   * comments; trailing ones are a common courtesy) */
  for (const char *p = a; p < e; p++)
    if (*p == '#' || *p == ';') {
      e = p;
      break;
    }
  while (a < e && isspace((unsigned char)*a)) a++;
  while (e > a && isspace((unsigned char)e[-1])) e--;
  if (a == e) return CNN_OK;
  if (*a == '[') {
    if (e[-1] != ']' || e - a < 3)
      return cnn_error(CNN_ERR_PARSE, "%s:%d: malformed section header (expected [name])",
                       cfg->path, line);
    char *name = dup_range(a + 1, e - 1);
    if (!name) return cnn_error(CNN_ERR_NOMEM, "out of memory");
    return add_section(cfg, name, line);
  }
  const char *eq = memchr(a, '=', (size_t)(e - a));
  if (!eq)
    return cnn_error(CNN_ERR_PARSE, "%s:%d: expected key=value or [section], got '%.*s'",
                     cfg->path, line, (int)(e - a > 60 ? 60 : e - a), a);
  if (cfg->n == 0)
    return cnn_error(CNN_ERR_PARSE, "%s:%d: key=value before any [section]", cfg->path, line);
  char *k = dup_range(a, eq), *v = dup_range(eq + 1, e);
  if (!k || !v) {
    free(k);
    free(v);
    return cnn_error(CNN_ERR_NOMEM, "out of memory");
  }
  if (!*k) {
    free(k);
    free(v);
    return cnn_error(CNN_ERR_PARSE, "%s:%d: empty key", cfg->path, line);
  }
  return add_kv(cfg, &cfg->sec[cfg->n - 1], k, v, line);
}

cnn_status cnn_cfg_parse(const char *text, const char *path, cnn_cfg *out) {
  memset(out, 0, sizeof *out);
  out->path = strdup(path ? path : "<cfg>");
  if (!out->path) return cnn_error(CNN_ERR_NOMEM, "out of memory");
  int line = 1;
  const char *p = text;
  while (*p) {
    const char *e = strchr(p, '\n');
    if (!e) e = p + strlen(p);
    cnn_status st = parse_line(out, p, e, line);
    if (st != CNN_OK) {
      cnn_cfg_free(out);
      return st;
    }
    line++;
    p = *e ? e + 1 : e;
  }
  return CNN_OK;
}

void cnn_cfg_free(cnn_cfg *cfg) {
  for (int i = 0; i < cfg->n; i++) {
    for (int j = 0; j < cfg->sec[i].n_kv; j++) {
      free(cfg->sec[i].kv[j].key);
      free(cfg->sec[i].kv[j].value);
    }
    free(cfg->sec[i].kv);
    free(cfg->sec[i].name);
  }
  free(cfg->sec);
  free(cfg->path);
  memset(cfg, 0, sizeof *cfg);
}

cnn_cfg_kv *cnn_cfg_find(cnn_cfg_section *s, const char *key) {
  for (int i = 0; i < s->n_kv; i++)
    if (!strcmp(s->kv[i].key, key)) return &s->kv[i];
  return NULL;
}

static cnn_status vkey_error(const cnn_cfg *cfg, const cnn_cfg_section *s, const cnn_cfg_kv *kv,
                             cnn_status st, const char *fmt, va_list ap) {
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  return cnn_error(st, "%s:%d: [%s] %s=%s: %s", cfg->path, kv->line, s->name, kv->key, kv->value,
                   msg);
}

cnn_status cnn_cfg_key_error(const cnn_cfg *cfg, const cnn_cfg_section *s, const cnn_cfg_kv *kv,
                             cnn_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  cnn_status r = vkey_error(cfg, s, kv, st, fmt, ap);
  va_end(ap);
  return r;
}

cnn_status cnn_cfg_section_error(const cnn_cfg *cfg, const cnn_cfg_section *s, cnn_status st,
                                 const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return cnn_error(st, "%s:%d: [%s]: %s", cfg->path, s->line, s->name, msg);
}

cnn_status cnn_cfg_int(const cnn_cfg *cfg, cnn_cfg_section *s, const char *key, int def, int lo,
                       int hi, int *out) {
  cnn_cfg_kv *kv = cnn_cfg_find(s, key);
  *out = def;
  if (!kv) return CNN_OK;
  kv->used = 1;
  char *end;
  errno = 0;
  long v = strtol(kv->value, &end, 10);
  if (end == kv->value || *end || errno == ERANGE)
    return cnn_cfg_key_error(cfg, s, kv, CNN_ERR_PARSE, "not an integer");
  if (v < lo || v > hi)
    return cnn_cfg_key_error(cfg, s, kv, CNN_ERR_SHAPE, "must be in [%d, %d]", lo, hi);
  *out = (int)v;
  return CNN_OK;
}

cnn_status cnn_cfg_float(const cnn_cfg *cfg, cnn_cfg_section *s, const char *key, double def,
                         double lo, double hi, float *out) {
  cnn_cfg_kv *kv = cnn_cfg_find(s, key);
  *out = (float)def;
  if (!kv) return CNN_OK;
  kv->used = 1;
  char *end;
  errno = 0;
  double v = strtod(kv->value, &end);
  if (end == kv->value || *end || errno == ERANGE || !isfinite(v))
    return cnn_cfg_key_error(cfg, s, kv, CNN_ERR_PARSE, "not a finite number");
  if (v < lo || v > hi)
    return cnn_cfg_key_error(cfg, s, kv, CNN_ERR_SHAPE, "must be in [%g, %g]", lo, hi);
  *out = (float)v;
  return CNN_OK;
}

const char *cnn_cfg_str(cnn_cfg_section *s, const char *key, const char *def) {
  cnn_cfg_kv *kv = cnn_cfg_find(s, key);
  if (!kv) return def;
  kv->used = 1;
  return kv->value;
}

void cnn_cfg_ignore(cnn_cfg_section *s, const char *const *keys) {
  for (; *keys; keys++) {
    cnn_cfg_kv *kv = cnn_cfg_find(s, *keys);
    if (kv) kv->used = 1;
  }
}

cnn_status cnn_cfg_check_unused(const cnn_cfg *cfg, const cnn_cfg_section *s) {
  for (int i = 0; i < s->n_kv; i++)
    if (!s->kv[i].used)
      return cnn_cfg_key_error(cfg, s, &s->kv[i], CNN_ERR_PARSE, "unknown key for [%s]", s->name);
  return CNN_OK;
}
