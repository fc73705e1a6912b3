#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/evaluate.h"
#include "cli/exchange.h"
#include "cli/meta.h"
#include "core/error.h"

const char cli_import_flags_help[] =
    "  --out DIR         where model.cfg and model.safetensors go (created if needed)\n"
    "  --mean a,b,c      per-channel mean the model expects subtracted, in [0, 1] pixel\n"
    "                    units (default 0: the model takes pixels scaled to [0, 1])\n"
    "  --std a,b,c       per-channel divisor after the mean (default 1)\n"
    "  --classes FILE    class names, one a line (or a comma-separated list a,b,c);\n"
    "                    default: 0, 1, ...\n"
    "  --force           replace DIR/model.cfg and DIR/model.safetensors\n";

int cli_import_flag(int argc, char **argv, int *i, cli_import_opts *o) {
  static const char *const keys[] = {"--out", "--mean", "--std", "--classes"};
  const char **dst[] = {&o->out, &o->mean_s, &o->std_s, &o->classes_s};
  if (!strcmp(argv[*i], "--force")) {
    o->force = 1;
    return 1;
  }
  for (int k = 0; k < 4; k++) {
    if (strcmp(argv[*i], keys[k])) continue;
    if (*i + 1 >= argc) {
      fprintf(stderr, "cnn import: %s needs a value\n", keys[k]);
      return -1;
    }
    *dst[k] = argv[++*i];
    return 1;
  }
  return 0;
}

/* "a,b,c" -> v[]: the count, or -1 when malformed or not finite */
static int parse_floats(const char *s, float *v, int max) {
  int n = 0;
  while (*s) {
    char *end;
    double x = strtod(s, &end);
    if (end == s || n == max || !isfinite(x)) return -1;
    v[n++] = (float)x;
    s = end;
    while (*s == ' ' || *s == ',') s++;
  }
  return n;
}

static cnn_status norm_flag(const char *flag, const char *s, int channels, int positive, float *v) {
  int n = parse_floats(s, v, 4);
  if (n == 1)
    for (int c = 1; c < channels; c++) v[c] = v[0];
  else if (n != channels)
    return cnn_error(CNN_ERR_ARG, "%s '%s': expected %d comma-separated numbers (one per input "
                     "channel) or one for all", flag, s, channels);
  for (int c = 0; c < channels; c++)
    if (positive ? !(v[c] > 0) : !(v[c] >= -1 && v[c] <= 1))
      return cnn_error(CNN_ERR_ARG, "%s '%s': value %d is %g, expected %s", flag, s, c, v[c],
                       positive ? "> 0" : "in [-1, 1] (pixel units: 0..1)");
  return CNN_OK;
}

cnn_status cli_class_names(const char *s, int classes, char ***out) {
  char **names = calloc((size_t)classes, sizeof *names);
  if (!names) return cnn_error(CNN_ERR_NOMEM, "out of memory");
  *out = names;
  if (!s) {
    for (int i = 0; i < classes; i++) {
      char buf[24];
      snprintf(buf, sizeof buf, "%d", i);
      if (!(names[i] = strdup(buf))) return cnn_error(CNN_ERR_NOMEM, "out of memory");
    }
    return CNN_OK;
  }
  struct stat sb;
  char *text = NULL;
  char sep = ',';
  if (stat(s, &sb) == 0) {
    FILE *f = fopen(s, "rb");
    if (!f || sb.st_size > (1 << 24) || !(text = calloc((size_t)sb.st_size + 1, 1)) ||
        fread(text, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size) {
      if (f) fclose(f);
      free(text);
      return cnn_error(CNN_ERR_IO, "--classes %s: cannot read the file", s);
    }
    fclose(f);
    sep = '\n';
  } else if (!(text = strdup(s))) {
    return cnn_error(CNN_ERR_NOMEM, "out of memory");
  }
  int n = 0;
  cnn_status st = CNN_OK;
  for (char *p = text; *p && st == CNN_OK;) {
    char *e = strchr(p, sep);
    if (e) *e = 0;
    size_t len = strlen(p);
    while (len && (p[len - 1] == '\r' || p[len - 1] == ' ')) p[--len] = 0;
    if (len || sep == ',') {
      if (n < classes && !(names[n] = strdup(p))) st = cnn_error(CNN_ERR_NOMEM, "out of memory");
      n++;
    }
    if (!e) break;
    p = e + 1;
  }
  free(text);
  if (st == CNN_OK && n != classes)
    st = cnn_error(CNN_ERR_ARG, "--classes %s: %d names, but the model has %d outputs", s, n,
                   classes);
  return st;
}

static cnn_status write_text(const char *path, const char *text) {
  char tmp[1200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f) return cnn_error(CNN_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
  size_t n = strlen(text);
  int ok = fwrite(text, 1, n, f) == n;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    unlink(tmp);
    return cnn_error(CNN_ERR_IO, "cannot write %s: %s", path, strerror(errno));
  }
  return CNN_OK;
}

cnn_status cli_import_write(cnn_net *net, const cli_import_opts *o, const char *source) {
  if (!o->out) return cnn_error(CNN_ERR_ARG, "--out DIR is required");
  char cfg_path[1100], ckpt_path[1100];
  snprintf(cfg_path, sizeof cfg_path, "%s/model.cfg", o->out);
  snprintf(ckpt_path, sizeof ckpt_path, "%s/model.safetensors", o->out);
  struct stat sb;
  if (!o->force && (stat(cfg_path, &sb) == 0 || stat(ckpt_path, &sb) == 0))
    return cnn_error(CNN_ERR_IO, "%s already holds a model (model.cfg / model.safetensors); "
                     "--force replaces it", o->out);
  cnn_net_info info;
  CNN_TRY(cnn_net_info_get(net, &info));
  if (info.channels > 4)
    return cnn_error(CNN_ERR_SHAPE, "the model takes %d input channels; cnn's images have at "
                     "most 4", info.channels);
  cli_meta m;
  memset(&m, 0, sizeof m);
  m.channels = info.channels;
  m.classes = info.classes;
  m.batch = info.batch > 0 ? info.batch : 1;
  for (int c = 0; c < 4; c++) m.mean[c] = 0, m.std[c] = 1;
  cnn_status st = cnn_net_train_config(net, &m.tc);
  if (st == CNN_OK && o->mean_s) st = norm_flag("--mean", o->mean_s, m.channels, 0, m.mean);
  if (st == CNN_OK && o->std_s) st = norm_flag("--std", o->std_s, m.channels, 1, m.std);
  if (st == CNN_OK) st = cli_class_names(o->classes_s, m.classes, &m.class_names);
  char data[1100];
  snprintf(data, sizeof data, "import:%s", source);
  m.data = data;
  m.seed = m.tc.seed;
  char *json = st == CNN_OK ? cli_meta_json(&m) : NULL;
  if (st == CNN_OK && !json) st = cnn_error(CNN_ERR_NOMEM, "out of memory");
  if (st == CNN_OK && cli_mkdirs(o->out))
    st = cnn_error(CNN_ERR_IO, "cannot create %s: %s", o->out, strerror(errno));
  /* the checkpoint first: a cfg without its weights would look like a model */
  if (st == CNN_OK) st = cnn_net_save(net, ckpt_path, json);
  if (st == CNN_OK) {
    st = write_text(cfg_path, cnn_net_cfg_text(net));
    if (st != CNN_OK) unlink(ckpt_path);
  }
  if (st == CNN_OK)
    fprintf(stderr, "cnn import: wrote %s and %s (%d classes, %dx%dx%d input)\n", cfg_path,
            ckpt_path, info.classes, info.height, info.width, info.channels);
  free(json);
  m.data = NULL;
  cli_meta_free(&m);
  return st;
}
