/* --batch auto and the memory check of a batch given (see mem_batch.h). */
#include "cli/mem_batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int cli_batch_arg(const char *cmd, const char *v, int *out) {
  if (v && !strcmp(v, "auto")) {
    *out = CLI_BATCH_AUTO;
    return 1;
  }
  char *end;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || end == v || *end || x < 1 || x > 65536) {
    fprintf(stderr, "cnn %s: --batch takes auto or an integer in [1, 65536], got '%s'\n", cmd,
            v ? v : "(nothing)");
    return 0;
  }
  *out = (int)x;
  return 1;
}

cnn_status cli_batch_pick(const char *cmd, cnn_net *net, cnn_backend *b, cnn_mode mode,
                          int requested, int no_check, int max_batch, int quiet,
                          cnn_batch_fit *fit, int *batch) {
  if (requested != CLI_BATCH_AUTO) {
    *batch = requested;
    if (no_check) return CNN_OK;
    cnn_status st = cnn_net_batch_check(net, b, requested, mode, fit);
    if (st != CNN_ERR_NOMEM) return st;
    char why[1024];
    snprintf(why, sizeof why, "%s", cnn_last_error());
    cnn_batch_fit best = *fit;
    st = cnn_net_max_batch(net, b, mode, max_batch, &best);
    if (st == CNN_OK)
      return cnn_error(CNN_ERR_NOMEM, "%s; the largest batch that fits is %d (--batch auto "
                       "picks it; --no-memory-check skips this check)", why, best.batch);
    if (st != CNN_ERR_NOMEM) return st;
    return cnn_error(CNN_ERR_NOMEM, "%s; not even a batch of 8 fits (--no-memory-check skips "
                     "this check)", why);
  }
  cnn_status st = cnn_net_max_batch(net, b, mode, max_batch, fit);
  if (st == CNN_ERR_NOMEM) return cnn_error_prefix(st, "--batch auto");
  CNN_TRY(st);
  *batch = fit->batch;
  if (!quiet)
    fprintf(stderr, "cnn %s: --batch auto: %d, the largest multiple of 8 that fits%s: it needs "
            "%zu bytes (memory plan %zu, other buffers %zu, margin %zu) of %zu available on "
            "%s (%s)\n", cmd, fit->batch, fit->batch >= max_batch ? " up to the data set's size"
            : "", fit->need_bytes, fit->plan_bytes, fit->extra_bytes, fit->margin_bytes,
            fit->avail_bytes, cnn_backend_name(b), fit->source);
  return CNN_OK;
}

/* backends whose memory is the host's */
static int host_memory(const cnn_backend *b) { return strcmp(cnn_backend_name(b), "cuda") != 0; }

/* the batch cap of a data set of n images: n rounded down to a multiple of 8 (at least 8) */
static int data_cap(int n) { return n >= 8 ? n / 8 * 8 : 8; }

cnn_status cli_batch_train(cnn_net *net, cnn_backend *b, const char *device_data,
                           const cnn_dataset *train, const cnn_dataset *test, int requested,
                           int no_check, int quiet, int *batch) {
  cnn_net_info info;
  CNN_TRY(cnn_net_info_get(net, &info));
  size_t px = (size_t)info.height * info.width * info.channels, k = (size_t)info.classes;
  size_t n = (size_t)train->n, nt = (size_t)test->n;
  cnn_batch_fit fit;
  memset(&fit, 0, sizeof fit);
  if (host_memory(b)) {
    /* two loader batches, one evaluation batch and its probabilities, host outputs */
    fit.extra_per_image = 2 * (px * 4 + 4) + (px * 4 + 4 + k * 4) + (k * 4 + 4);
    fit.extra_fixed = 4 * (n + nt); /* the loaders' orders */
  }
  int bind = !strcmp(device_data, "on") || (!strcmp(device_data, "auto") && !host_memory(b));
  cnn_batch_fit with = fit;
  if (bind) /* cnn_net_bind_data: images, labels, order, normalisation table */
    with.extra_fixed += n * px + 2 * 4 * n + 4 * 256 * sizeof(float);
  int cap = data_cap(train->n);
  cnn_status st = cli_batch_pick("train", net, b, CNN_MODE_TRAIN, requested, no_check, cap, quiet,
                                 &with, batch);
  if (st != CNN_ERR_NOMEM || !bind || strcmp(device_data, "auto")) return st;
  /* --device-data auto: the batch does not fit beside the bound set, which then
   * stays on the host (bind_data falls back when binding runs out of memory) */
  return cli_batch_pick("train", net, b, CNN_MODE_TRAIN, requested, no_check, cap, quiet, &fit,
                        batch);
}

cnn_status cli_batch_eval(cnn_net *net, cnn_backend *b, const cnn_dataset *test, int requested,
                          int no_check, int *batch) {
  cnn_net_info info;
  CNN_TRY(cnn_net_info_get(net, &info));
  size_t px = (size_t)info.height * info.width * info.channels, k = (size_t)info.classes;
  cnn_batch_fit fit;
  memset(&fit, 0, sizeof fit);
  if (host_memory(b)) { /* one loader batch, its probabilities, host outputs */
    fit.extra_per_image = (px * 4 + 4 + k * 4) + (k * 4 + 4);
    fit.extra_fixed = 4 * (size_t)test->n;
  }
  return cli_batch_pick("eval", net, b, CNN_MODE_INFER, requested, no_check, data_cap(test->n), 0,
                        &fit, batch);
}
