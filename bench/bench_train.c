#define _POSIX_C_SOURCE 200809L
/* Training throughput of a model on one backend: images/s over timed steps
 * after warm-up, on random data (the figure excludes data loading).
 *   bench_train MODEL.cfg [--device cpu|ref|cuda] [--batch N] [--steps N] [--warmup N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnn/cnn.h"
#include "core/rng.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  const char *cfg = NULL, *dev = "cpu";
  int batch = 0, steps = 20, warm = 3, infer = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--device") && i + 1 < argc) dev = argv[++i];
    else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warm = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--infer")) infer = 1;
    else cfg = argv[i];
  }
  if (!cfg) {
    fprintf(stderr, "usage: bench_train MODEL.cfg [--device D] [--batch N] [--steps N] [--warmup N] [--infer]\n");
    return 2;
  }
  cnn_net *net;
  cnn_backend *b;
  if (cnn_net_from_cfg_file(cfg, &net) || cnn_backend_create(dev, &b)) {
    fprintf(stderr, "bench_train: %s\n", cnn_last_error());
    return 1;
  }
  cnn_net_info info;
  cnn_net_info_get(net, &info);
  if (!batch) batch = info.batch;
  if (cnn_net_build(net, b, batch, infer ? CNN_MODE_INFER : CNN_MODE_TRAIN)) {
    fprintf(stderr, "bench_train: %s\n", cnn_last_error());
    return 1;
  }
  size_t per = (size_t)info.height * info.width * info.channels;
  float *x = malloc((size_t)batch * per * sizeof *x);
  int32_t *y = malloc((size_t)batch * sizeof *y);
  for (size_t i = 0; i < (size_t)batch * per; i++) x[i] = cnn_rng_uniform(7, i) - 0.5f;
  for (int i = 0; i < batch; i++) y[i] = (int32_t)(cnn_rng_u64(8, (uint64_t)i) % (uint64_t)info.classes);
  cnn_step_result r;
  double t0 = 0;
  for (int s = 0; s < warm + steps; s++) {
    if (s == warm) t0 = now();
    cnn_status st = infer ? cnn_net_predict(net, x, y, batch, NULL, &r)
                          : cnn_net_train_step(net, x, y, batch, &r);
    if (st) {
      fprintf(stderr, "bench_train: %s\n", cnn_last_error());
      return 1;
    }
  }
  double dt = now() - t0;
  printf("%s %s %s batch %d: %.1f images/s (%d steps, %.3f s/step, last loss %.4f)\n", cfg, dev,
         infer ? "inference" : "training", batch, steps * (double)batch / dt, steps, dt / steps, r.loss);
  free(x);
  free(y);
  cnn_net_destroy(net);
  cnn_backend_destroy(b);
  return 0;
}
