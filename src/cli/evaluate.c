#define _POSIX_C_SOURCE 200809L
#include "cli/evaluate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cnn/loader.h"
#include "core/error.h"

cnn_status cli_evaluate(cnn_net *net, const cnn_dataset *d, int batch, const float *mean,
                        const float *std, cli_eval *out) {
  memset(out, 0, sizeof *out);
  cnn_net_info info;
  CNN_TRY(cnn_net_info_get(net, &info));
  int classes = info.classes;
  if (d->classes > classes)
    return cnn_error(CNN_ERR_SHAPE, "the data has %d classes, the model only %d outputs", d->classes,
                     classes);
  cnn_loader_config lc = {0};
  lc.data = d;
  lc.batch = batch;
  lc.channels = d->c;
  memcpy(lc.mean, mean, sizeof lc.mean);
  memcpy(lc.std, std, sizeof lc.std);
  cnn_loader *ld;
  CNN_TRY(cnn_loader_create(&lc, &ld));
  float *probs = malloc((size_t)batch * classes * sizeof *probs);
  out->confusion = calloc((size_t)classes * classes, sizeof *out->confusion);
  out->classes = classes;
  cnn_status st = probs && out->confusion ? cnn_loader_start_epoch(ld, 0, 0)
                                          : cnn_error(CNN_ERR_NOMEM, "out of memory");
  const float *x;
  const int32_t *y;
  int n;
  double loss = 0;
  while (st == CNN_OK && cnn_loader_next(ld, &x, &y, &n)) {
    cnn_step_result r;
    st = cnn_net_predict(net, x, y, n, probs, &r);
    if (st != CNN_OK) break;
    loss += r.loss * n;
    out->correct += r.correct;
    out->n += n;
    for (int i = 0; i < n; i++) {
      const float *p = probs + (size_t)i * classes;
      int best = 0;
      for (int c = 1; c < classes; c++)
        if (p[c] > p[best]) best = c;
      out->confusion[(size_t)y[i] * classes + best]++;
    }
  }
  cnn_loader_destroy(ld);
  free(probs);
  if (st != CNN_OK) {
    free(out->confusion);
    out->confusion = NULL;
    return st;
  }
  out->loss = out->n ? loss / out->n : 0;
  out->acc = out->n ? (double)out->correct / out->n : 0;
  return CNN_OK;
}

int cli_mkdirs(const char *path) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      if (mkdir(buf, 0777) && errno != EEXIST) return -1;
      *p = '/';
    }
  if (mkdir(buf, 0777) && errno != EEXIST) return -1;
  return 0;
}

char *cli_read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    cnn_error(CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
  char *s = n >= 0 && n < (64l << 20) && fseek(f, 0, SEEK_SET) == 0 ? malloc((size_t)n + 1) : NULL;
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
    free(s);
    s = NULL;
  }
  fclose(f);
  if (!s) {
    cnn_error(CNN_ERR_IO, "%s: cannot read (or larger than 64 MiB)", path);
    return NULL;
  }
  s[n] = 0;
  return s;
}
