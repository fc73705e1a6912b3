#define _POSIX_C_SOURCE 200809L
/* Training (or inference) throughput of a model on one backend: images/s over
 * timed steps after warm-up, on random data (the figure excludes data loading).
 *   bench_train MODEL.cfg [--device cpu|ref|cuda] [--batch N] [--steps N] [--warmup N]
 *               [--infer] [--sync] [--no-fuse] [--cuda-graph on|off] [--precision P]
 *               [--profile]   (time per op kind; every node waited for)
 *               [--bound]     (batches made on the backend from a bound u8 dataset)
 *               [--no-memory-check]
 * --batch auto: the largest multiple of 8 whose memory plan, with the benchmark's
 * own buffers, fits the device's free memory with cnn_net_max_batch's margin; a
 * batch given that does not fit is refused before building (cnn_net_batch_check)
 * unless --no-memory-check. $CNN_MEMORY_LIMIT=BYTES replaces the free memory.
 * Training steps are launched without waiting (cnn_net_train_launch) and the
 * metrics are read once at the end of the timed steps; --sync waits for every
 * step's result instead (cnn_net_train_step, one host round trip per step). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnn/cnn.h"
#include "cnn/loader.h"
#include "core/rng.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* --bound: batches of random u8 images in backend memory */
enum { BOUND_BATCHES = 8, BATCH_AUTO = -1 };

/* the batch to build: auto, or the one given, checked against the device's free
 * memory; counted besides the plan: on a host backend the random batch (x, y) and
 * the net's host outputs, with --bound the u8 data set on the host; with --bound,
 * the copy bound in the backend (cnn_net_bind_data) */
static cnn_status pick_batch(cnn_net *net, cnn_backend *b, cnn_mode mode, const cnn_net_info *info,
                             int bound, int no_check, int *batch) {
  size_t px = (size_t)info->height * info->width * info->channels, k = (size_t)info->classes;
  cnn_batch_fit fit;
  memset(&fit, 0, sizeof fit);
  if (strcmp(cnn_backend_name(b), "cuda"))
    fit.extra_per_image = px * 4 + 4 + k * 4 + 4 + (bound ? BOUND_BATCHES * (px + 4) : 0);
  if (bound) {
    fit.extra_per_image += BOUND_BATCHES * (px + 8);
    fit.extra_fixed = 4 * 256 * sizeof(float);
  }
  if (*batch != BATCH_AUTO) return no_check ? CNN_OK : cnn_net_batch_check(net, b, *batch, mode, &fit);
  cnn_status st = cnn_net_max_batch(net, b, mode, 0, &fit);
  if (st != CNN_OK) return st;
  *batch = fit.batch;
  fprintf(stderr, "bench_train: --batch auto: %d, the largest multiple of 8 that fits: it needs "
          "%zu bytes (memory plan %zu, other buffers %zu, margin %zu) of %zu available on %s "
          "(%s)\n", fit.batch, fit.need_bytes, fit.plan_bytes, fit.extra_bytes, fit.margin_bytes,
          fit.avail_bytes, cnn_backend_name(b), fit.source);
  return CNN_OK;
}

static int fail(void) {
  fprintf(stderr, "bench_train: %s\n", cnn_last_error());
  return 1;
}

int main(int argc, char **argv) {
  cnn_cpu_env_defaults(argv); /* as the cnn command: passive waiting unless set */
  fprintf(stderr, "bench_train: note: `cnn bench` supersedes this program (docs/bench.md)\n");
  const char *cfg = NULL, *dev = "cpu", *precision = "auto";
  int batch = 0, steps = 20, warm = 3, infer = 0, sync = 0, fuse = 1, graphs = 1, profile = 0,
      bound = 0, no_check = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--device") && i + 1 < argc) dev = argv[++i];
    else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
      batch = !strcmp(argv[i + 1], "auto") ? (i++, BATCH_AUTO) : atoi(argv[++i]);
    else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warm = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--precision") && i + 1 < argc) precision = argv[++i];
    else if (!strcmp(argv[i], "--cuda-graph") && i + 1 < argc) graphs = strcmp(argv[++i], "off") != 0;
    else if (!strcmp(argv[i], "--infer")) infer = 1;
    else if (!strcmp(argv[i], "--sync")) sync = 1;
    else if (!strcmp(argv[i], "--no-fuse")) fuse = 0;
    else if (!strcmp(argv[i], "--profile")) profile = 1;
    else if (!strcmp(argv[i], "--bound")) bound = 1;
    else if (!strcmp(argv[i], "--no-memory-check")) no_check = 1;
    else if (argv[i][0] == '-') {
      fprintf(stderr, "bench_train: unknown option %s\n", argv[i]);
      return 2;
    } else cfg = argv[i];
  }
  if (!cfg || steps < 1 || warm < 0) {
    fprintf(stderr, "usage: bench_train MODEL.cfg [--device D] [--batch N] [--steps N] [--warmup N] "
                    "[--infer] [--sync] [--no-fuse] [--cuda-graph on|off] [--precision P] [--profile] "
                    "[--bound] [--no-memory-check]   (--batch N|auto)\n");
    return 2;
  }
  cnn_net *net;
  cnn_backend *b;
  if (cnn_net_from_cfg_file(cfg, &net)) return fail();
  if (cnn_backend_create(dev, &b)) {
    int rc = fail();
    cnn_net_destroy(net);
    return rc;
  }
  cnn_precision prec;
  cnn_net_info info;
  cnn_net_info_get(net, &info);
  if (!batch) batch = info.batch;
  if (cnn_precision_parse(precision, &prec) || cnn_net_set_precision(net, b, prec) ||
      cnn_net_set_fusion(net, fuse) || cnn_net_set_graphs(net, graphs) ||
      cnn_net_set_profile(net, profile) ||
      pick_batch(net, b, infer ? CNN_MODE_INFER : CNN_MODE_TRAIN, &info, bound && !infer, no_check,
                 &batch) ||
      cnn_net_build(net, b, batch, infer ? CNN_MODE_INFER : CNN_MODE_TRAIN)) {
    int rc = fail(); /* a refused setup (e.g. a batch that does not fit) frees what it made */
    cnn_net_destroy(net);
    cnn_backend_destroy(b);
    return rc;
  }
  size_t per = (size_t)info.height * info.width * info.channels;
  float *x = malloc((size_t)batch * per * sizeof *x);
  int32_t *y = malloc((size_t)batch * sizeof *y);
  for (size_t i = 0; i < (size_t)batch * per; i++) x[i] = cnn_rng_uniform(7, i) - 0.5f;
  for (int i = 0; i < batch; i++) y[i] = (int32_t)(cnn_rng_u64(8, (uint64_t)i) % (uint64_t)info.classes);
  /* --bound: 8 batches of random u8 images in backend memory, with crop and flip */
  cnn_dataset ds = {0};
  if (bound && !infer) {
    ds.n = BOUND_BATCHES * batch;
    ds.h = info.height, ds.w = info.width, ds.c = info.channels, ds.classes = info.classes;
    ds.images = malloc((size_t)ds.n * per);
    ds.labels = malloc((size_t)ds.n * sizeof *ds.labels);
    for (size_t i = 0; i < (size_t)ds.n * per; i++) ds.images[i] = (uint8_t)(cnn_rng_u64(7, i) >> 56);
    for (int i = 0; i < ds.n; i++) ds.labels[i] = y[i % batch];
    cnn_loader_config lc = {0};
    lc.data = &ds;
    lc.batch = batch;
    lc.shuffle = 1;
    lc.seed = 1;
    lc.channels = info.channels;
    for (int c = 0; c < 4; c++) lc.mean[c] = 0.5f, lc.std[c] = 0.25f;
    lc.aug.crop_pad = 2;
    lc.aug.flip = 1;
    if (cnn_net_bind_data(net, &lc)) return fail();
  }
  cnn_step_result r = {0};
  cnn_train_metrics m;
  double t0 = 0;
  for (int s = 0; s < warm + steps; s++) {
    if (s == warm) {
      if (!infer && !sync && cnn_net_train_metrics(net, 1, &m)) return fail(); /* drain warm-up */
      t0 = now();
    }
    int got;
    cnn_status st = infer  ? cnn_net_predict(net, x, y, batch, NULL, &r)
                    : ds.n ? cnn_net_train_bound(net, s / BOUND_BATCHES, s % BOUND_BATCHES, 1, &got)
                    : sync ? cnn_net_train_step(net, x, y, batch, &r)
                           : cnn_net_train_launch(net, x, y, batch);
    if (st) return fail();
  }
  if (!infer && !sync) {
    if (cnn_net_train_metrics(net, 1, &m)) return fail(); /* waits for every step */
    float last;
    if (cnn_net_step_losses(net, m.step - 1, 1, &last) == 1) r.loss = last;
  }
  double dt = now() - t0;
  printf("%s %s %s %s batch %d%s%s%s%s: %.1f images/s (%d steps, %.3f ms/step, last loss "
         "%.4f)\n", cfg, dev, cnn_precision_name(cnn_net_precision(net)),
         infer ? "inference" : "training", batch, sync ? " sync" : "", fuse ? "" : " unfused",
         ds.n ? " bound-data" : "", graphs ? "" : " no-graphs", steps * (double)batch / dt, steps,
         1e3 * dt / steps, r.loss);
  if (profile) cnn_net_profile_print(net, batch, infer ? CNN_MODE_INFER : CNN_MODE_TRAIN, stdout);
  free(x);
  free(y);
  free(ds.images);
  free(ds.labels);
  cnn_net_destroy(net);
  cnn_backend_destroy(b);
  return 0;
}
