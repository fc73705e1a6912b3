/* The conv tuner's cache: the engine chosen per (shape, math, pass), per device,
 * kept across runs in a text file (default ~/.cache/cnn/tune-<device>.txt).
 *
 *   cnn-tune 1
 *   device <id>                       one line naming the device and library versions
 *   <pass> <shape key> <engine> <ms>  one line per tuned pass
 *
 * A file that is not exactly this (bad header, malformed line, duplicate key) is
 * corrupt and a file written for another device id is foreign: either is ignored
 * as a whole with a warning and replaced at the next save. Host code, so the file
 * format is tested without a GPU (tests/test_tune_cache.c). */
#ifndef CNN_TUNE_CACHE_H
#define CNN_TUNE_CACHE_H

#include <stddef.h>

#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CNN_TUNE_KEY_MAX 160
#define CNN_TUNE_NAME_MAX 64

typedef struct cnn_tune_entry {
  char key[CNN_TUNE_KEY_MAX];
  char engine[CNN_TUNE_NAME_MAX];
  double ms;
  size_t ws;   /* workspace bytes the engine needs (kept in memory only, not in the file) */
} cnn_tune_entry;

typedef struct cnn_tune_cache {
  char device[256];       /* the id this cache belongs to (no newline) */
  cnn_tune_entry *e;
  int n, cap;
  int dirty;              /* entries added since load/save */
} cnn_tune_cache;

/* An empty cache for device id `device` (newlines and control characters are
 * replaced by spaces). */
cnn_status cnn_tune_cache_init(cnn_tune_cache *c, const char *device);
void cnn_tune_cache_clear(cnn_tune_cache *c);

/* The key of pass dir of d: "fwd n=..,h=..,..,math=bf16" (fits CNN_TUNE_KEY_MAX). */
void cnn_tune_key(const cnn_conv_desc *d, cnn_conv_dir dir, char *buf, size_t len);

/* Load `path` into c (replacing its entries). Returns 1 when entries were loaded,
 * 0 when the file does not exist, -1 when it was ignored (corrupt, foreign,
 * unreadable): then `why` says what, for the caller's warning, and c is empty. */
int cnn_tune_cache_load(cnn_tune_cache *c, const char *path, char *why, size_t why_len);
/* Write c to `path` whole or not at all (parent directories are created). */
cnn_status cnn_tune_cache_save(cnn_tune_cache *c, const char *path);

/* the engine cached for key, or NULL */
const cnn_tune_entry *cnn_tune_cache_get(const cnn_tune_cache *c, const char *key);
/* set (add or replace) key's engine; names and keys hold no whitespace */
cnn_status cnn_tune_cache_put(cnn_tune_cache *c, const char *key, const char *engine, double ms);

/* Default path for device id `device`: $CNN_TUNE_CACHE if set, else
 * $XDG_CACHE_HOME/cnn/tune-<slug>.txt, else $HOME/.cache/cnn/tune-<slug>.txt, where
 * slug is the id with every character outside [A-Za-z0-9._-] replaced by '_'.
 * Returns buf, or NULL when no home directory is known. */
char *cnn_tune_cache_path(const char *device, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
