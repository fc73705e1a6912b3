/* The conv tuner's cache file (tune_cache.h). */
#define _POSIX_C_SOURCE 200809L
#include "backend/tune_cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/file_write.h"

#define MAGIC "cnn-tune 1"

static void clean_copy(char *dst, size_t len, const char *src) {
  size_t i = 0;
  for (; src && src[i] && i + 1 < len; i++)
    dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? ' ' : src[i];
  dst[i] = 0;
}

cnn_status cnn_tune_cache_init(cnn_tune_cache *c, const char *device) {
  if (!c) return cnn_error(CNN_ERR_ARG, "cnn_tune_cache_init: NULL cache");
  memset(c, 0, sizeof *c);
  clean_copy(c->device, sizeof c->device, device ? device : "?");
  return CNN_OK;
}

void cnn_tune_cache_clear(cnn_tune_cache *c) {
  if (!c) return;
  free(c->e);
  c->e = NULL;
  c->n = c->cap = 0;
  c->dirty = 0;
}

static const char *const dir_names[] = {"fwd", "bwd-data", "bwd-filter"};
static const char *const math_names[] = {"f32", "tf32", "bf16"};

void cnn_tune_key(const cnn_conv_desc *d, cnn_conv_dir dir, char *buf, size_t len) {
  snprintf(buf, len,
           "%s:n%d,h%d,w%d,c%d,k%d,r%d,s%d,oh%d,ow%d,st%dx%d,pad%dx%d,dil%dx%d,g%d,%s",
           (unsigned)dir < 3 ? dir_names[dir] : "?", d->n, d->h, d->w, d->c, d->k, d->r, d->s,
           d->oh, d->ow, d->stride_h, d->stride_w, d->pad_h, d->pad_w, d->dil_h, d->dil_w,
           d->groups, (unsigned)d->math < 3 ? math_names[d->math] : "?");
}

static int find(const cnn_tune_cache *c, const char *key) {
  for (int i = 0; i < c->n; i++)
    if (!strcmp(c->e[i].key, key)) return i;
  return -1;
}

const cnn_tune_entry *cnn_tune_cache_get(const cnn_tune_cache *c, const char *key) {
  int i = c && key ? find(c, key) : -1;
  return i >= 0 ? &c->e[i] : NULL;
}

/* a token for the file: non-empty, printable, no whitespace, fits max */
static int token_ok(const char *s, size_t max) {
  size_t n = 0;
  if (!s || !*s) return 0;
  for (; s[n]; n++)
    if ((unsigned char)s[n] <= 0x20 || s[n] == 0x7f) return 0;
  return n < max;
}

cnn_status cnn_tune_cache_put(cnn_tune_cache *c, const char *key, const char *engine, double ms) {
  if (!c || !token_ok(key, CNN_TUNE_KEY_MAX) || !token_ok(engine, CNN_TUNE_NAME_MAX))
    return cnn_error(CNN_ERR_ARG, "tune cache: bad key or engine name");
  int i = find(c, key);
  if (i < 0) {
    if (c->n == c->cap) {
      int cap = c->cap ? 2 * c->cap : 32;
      cnn_tune_entry *e = realloc(c->e, (size_t)cap * sizeof *e);
      if (!e) return cnn_error(CNN_ERR_NOMEM, "tune cache: out of memory");
      c->e = e;
      c->cap = cap;
    }
    i = c->n++;
    snprintf(c->e[i].key, sizeof c->e[i].key, "%s", key);
  }
  snprintf(c->e[i].engine, sizeof c->e[i].engine, "%s", engine);
  c->e[i].ms = ms;
  c->dirty = 1;
  return CNN_OK;
}

/* one line without its newline into buf; 0 at end of file, -1 when too long */
static int read_line(FILE *f, char *buf, size_t len) {
  if (!fgets(buf, (int)len, f)) return 0;
  size_t n = strlen(buf);
  if (n && buf[n - 1] == '\n') {
    buf[n - 1] = 0;
    return 1;
  }
  if (feof(f)) return 1; /* last line without a newline */
  return -1;
}

static int ignore(cnn_tune_cache *c, char *why, size_t why_len, const char *fmt, const char *path,
                  int line) {
  cnn_tune_cache_clear(c);
  if (why && why_len) snprintf(why, why_len, fmt, path, line);
  return -1;
}

int cnn_tune_cache_load(cnn_tune_cache *c, const char *path, char *why, size_t why_len) {
  char line[512];
  int ln = 0, r;
  cnn_tune_cache_clear(c);
  if (why && why_len) why[0] = 0;
  FILE *f = fopen(path, "r");
  if (!f) {
    if (errno == ENOENT) return 0;
    if (why && why_len) snprintf(why, why_len, "%s: %s", path, strerror(errno));
    return -1;
  }
  int res = 1;
  if (read_line(f, line, sizeof line) != 1 || strcmp(line, MAGIC)) {
    res = ignore(c, why, why_len, "%s: line %d: not a cnn tune cache (expected '" MAGIC "')",
                 path, 1);
    goto done;
  }
  if (read_line(f, line, sizeof line) != 1 || strncmp(line, "device ", 7)) {
    res = ignore(c, why, why_len, "%s: line %d: expected 'device <id>'", path, 2);
    goto done;
  }
  if (strcmp(line + 7, c->device)) {
    res = ignore(c, why, why_len, "%s: line %d: written for another device or library version",
                 path, 2);
    goto done;
  }
  ln = 2;
  while ((r = read_line(f, line, sizeof line)) != 0) {
    char key[CNN_TUNE_KEY_MAX + 1], eng[CNN_TUNE_NAME_MAX + 1], extra[2];
    double ms = 0;
    ln++;
    if (r < 0 || sscanf(line, "%160s %64s %lf %1s", key, eng, &ms, extra) != 3 ||
        !token_ok(key, CNN_TUNE_KEY_MAX) || !token_ok(eng, CNN_TUNE_NAME_MAX) || !(ms >= 0) ||
        find(c, key) >= 0) {
      res = ignore(c, why, why_len, "%s: line %d: malformed or duplicate entry", path, ln);
      goto done;
    }
    if (cnn_tune_cache_put(c, key, eng, ms) != CNN_OK) {
      res = ignore(c, why, why_len, "%s: line %d: out of memory", path, ln);
      goto done;
    }
  }
  if (ferror(f)) res = ignore(c, why, why_len, "%s: read error after line %d", path, ln);
done:
  fclose(f);
  c->dirty = 0;
  return res;
}

/* mkdir -p of path's parent directory */
static void make_parents(const char *path) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    (void)mkdir(dir, 0755); /* existing is fine; a real failure shows at the write */
    *p = '/';
  }
}

cnn_status cnn_tune_cache_save(cnn_tune_cache *c, const char *path) {
  if (!c || !path) return cnn_error(CNN_ERR_ARG, "cnn_tune_cache_save: NULL argument");
  size_t cap = 64 + strlen(c->device) + (size_t)c->n * (CNN_TUNE_KEY_MAX + CNN_TUNE_NAME_MAX + 32);
  char *text = malloc(cap);
  if (!text) return cnn_error(CNN_ERR_NOMEM, "tune cache: out of memory");
  size_t pos = (size_t)snprintf(text, cap, MAGIC "\ndevice %s\n", c->device);
  for (int i = 0; i < c->n && pos < cap; i++)
    pos += (size_t)snprintf(text + pos, cap - pos, "%s %s %.6f\n", c->e[i].key, c->e[i].engine,
                            c->e[i].ms);
  make_parents(path);
  const void *parts[1] = {text};
  size_t sizes[1] = {pos < cap ? pos : cap - 1};
  cnn_status s = cnn_file_write_whole(path, parts, sizes, 1);
  free(text);
  if (s == CNN_OK) c->dirty = 0;
  return s;
}

char *cnn_tune_cache_path(const char *device, char *buf, size_t len) {
  const char *env = getenv("CNN_TUNE_CACHE");
  if (env && *env) {
    snprintf(buf, len, "%s", env);
    return buf;
  }
  char slug[128];
  size_t i = 0;
  for (; device && device[i] && i + 1 < sizeof slug; i++) {
    char ch = device[i];
    int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '.' || ch == '-' || ch == '_';
    slug[i] = ok ? ch : '_';
  }
  slug[i] = 0;
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (xdg && *xdg)
    snprintf(buf, len, "%s/cnn/tune-%s.txt", xdg, slug);
  else if (home && *home)
    snprintf(buf, len, "%s/.cache/cnn/tune-%s.txt", home, slug);
  else
    return NULL;
  return buf;
}
