/* Reader for Darknet-format cfg files: [section] headers (repeated names are
 * normal), key=value lines, '#' and ';' comments. Our own small reader rather
 * than inih: Debian's libinih is built without line numbers and without a
 * new-section callback, so it cannot tell two [convolutional] sections apart
 * nor name the line of a bad key. */
#ifndef CNN_CFG_H
#define CNN_CFG_H

#include "cnn/cnn.h"

typedef struct cnn_cfg_kv {
  char *key, *value;
  int line;
  int used;          /* set by the getters; leftovers are unknown keys */
} cnn_cfg_kv;

typedef struct cnn_cfg_section {
  char *name;
  int line;
  int n_kv, cap_kv;
  cnn_cfg_kv *kv;
} cnn_cfg_section;

typedef struct cnn_cfg {
  char *path;        /* for messages */
  int n, cap;
  cnn_cfg_section *sec;
} cnn_cfg;

cnn_status cnn_cfg_parse(const char *text, const char *path, cnn_cfg *out);
void cnn_cfg_free(cnn_cfg *cfg);

/* Typed getters: absent key gives `def`; a present key must parse completely and
 * lie in [lo, hi], else an error naming path:line, section and key. */
cnn_status cnn_cfg_int(const cnn_cfg *cfg, cnn_cfg_section *s, const char *key, int def, int lo,
                       int hi, int *out);
cnn_status cnn_cfg_float(const cnn_cfg *cfg, cnn_cfg_section *s, const char *key, double def,
                         double lo, double hi, float *out);
/* string value or def; marks the key used */
const char *cnn_cfg_str(cnn_cfg_section *s, const char *key, const char *def);
/* the kv entry for key (not marking it), or NULL */
cnn_cfg_kv *cnn_cfg_find(cnn_cfg_section *s, const char *key);
/* mark keys as known-but-ignored (Darknet options we do not implement) */
void cnn_cfg_ignore(cnn_cfg_section *s, const char *const *keys);
/* error for the first key the section's parser did not use */
cnn_status cnn_cfg_check_unused(const cnn_cfg *cfg, const cnn_cfg_section *s);
/* error at a key's line: "path:line: [section] key=value: message" */
cnn_status cnn_cfg_key_error(const cnn_cfg *cfg, const cnn_cfg_section *s, const cnn_cfg_kv *kv,
                             cnn_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
/* error at a section's header line */
cnn_status cnn_cfg_section_error(const cnn_cfg *cfg, const cnn_cfg_section *s, cnn_status st,
                                 const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#endif
