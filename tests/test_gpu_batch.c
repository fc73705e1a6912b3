/* The batch size from the GPU's memory: the cuda backend's free memory is
 * cudaMemGetInfo's (as cnn_cuda_device_info reads it); cnn_net_max_batch picks the
 * largest multiple of 8 whose plan and margin fit it, the next one does not fit;
 * a net built at that batch trains a step, and what the build and the step took
 * from the device (free memory before and after) is within the plan and margin;
 * CNN_MEMORY_LIMIT replaces the figure on cuda too. Exits 77 (ctest SKIP) without
 * a GPU. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn/cnn.h"
#include "testutil.h"

/* large activations for their FLOPs, so that the batch found is well under the
 * 65536 cap on any GPU (about 40 MB an image in training) */
static const char *cfg =
    "[net]\nheight=192\nwidth=192\nchannels=3\nbatch=8\nlearning_rate=0.01\nmomentum=0.9\n"
    "[convolutional]\nbatch_normalize=1\nfilters=32\nsize=3\npad=1\nactivation=relu\n"
    "[convolutional]\nfilters=32\nsize=3\npad=1\nactivation=relu\n"
    "[maxpool]\nsize=2\nstride=2\n"
    "[convolutional]\nbatch_normalize=1\nfilters=64\nsize=3\npad=1\nactivation=relu\n"
    "[avgpool]\n[connected]\noutput=10\nactivation=linear\n[softmax]\n";

static size_t need_of(cnn_net *net, cnn_backend *b, int batch, cnn_mode mode) {
  cnn_plan_info p;
  if (cnn_net_plan_estimate(net, b, batch, mode, &p) != CNN_OK) return (size_t)-1;
  return p.peak_bytes + p.peak_bytes / 100 * 10 + ((size_t)64 << 20);
}

static size_t absdiff(size_t a, size_t b) { return a > b ? a - b : b - a; }

int main(void) {
  tu_need_cuda(); /* skips (77) without a usable GPU, says why */
  unsetenv("CNN_MEMORY_LIMIT");
  cnn_backend *b = NULL;
  cnn_net *net = NULL;
  CHECK_OK(cnn_backend_create("cuda", &b));
  CHECK_OK(cnn_net_from_cfg_text(cfg, "big.cfg", &net));
  if (!b || !net) return tu_finish("test_gpu_batch");
  CHECK_OK(cnn_net_set_precision(net, b, CNN_PRECISION_FP32));

  size_t avail = 0, total = 0;
  const char *src = NULL;
  cnn_device_info di;
  CHECK_OK(cnn_backend_mem_info(b, &avail, &total, &src));
  CHECK_OK(cnn_cuda_device_info(0, &di));
  const size_t slack = (size_t)256 << 20; /* other processes on the card */
  CHECK(src && !strcmp(src, "cudaMemGetInfo"), "source %s", src ? src : "(null)");
  CHECK(total == di.mem_total && absdiff(avail, di.mem_free) <= slack,
        "cuda mem_info %zu of %zu, cudaMemGetInfo %zu of %zu", avail, total, di.mem_free,
        di.mem_total);
  printf("device %s: %zu of %zu bytes free\n", di.name, avail, total);

  /* inference first (no build): more images fit than in training */
  cnn_batch_fit inf;
  memset(&inf, 0, sizeof inf);
  CHECK_OK(cnn_net_max_batch(net, b, CNN_MODE_INFER, 0, &inf));

  cnn_batch_fit fit;
  memset(&fit, 0, sizeof fit);
  CHECK_OK(cnn_net_max_batch(net, b, CNN_MODE_TRAIN, 0, &fit));
  int B = fit.batch;
  printf("--batch auto on cuda: training %d (needs %zu of %zu), inference %d\n", B,
         fit.need_bytes, fit.avail_bytes, inf.batch);
  CHECK(B >= 8 && B % 8 == 0 && B < 65536, "training batch %d: a multiple of 8 under the cap", B);
  CHECK(inf.batch > B, "inference fits more images (%d) than training (%d)", inf.batch, B);
  CHECK(absdiff(fit.avail_bytes, di.mem_free) <= slack, "the search used the free memory: %zu",
        fit.avail_bytes);
  size_t nb = need_of(net, b, B, CNN_MODE_TRAIN), nb8 = need_of(net, b, B + 8, CNN_MODE_TRAIN);
  CHECK(fit.need_bytes == nb && nb <= fit.avail_bytes && nb8 > fit.avail_bytes,
        "batch %d needs %zu, %d would need %zu, of %zu free", B, nb, B + 8, nb8, fit.avail_bytes);
  cnn_batch_fit chk;
  memset(&chk, 0, sizeof chk);
  cnn_status st = cnn_net_batch_check(net, b, B + 8, CNN_MODE_TRAIN, &chk);
  char needs[64];
  snprintf(needs, sizeof needs, "needs %zu bytes", chk.need_bytes);
  CHECK(st == CNN_ERR_NOMEM && strstr(cnn_last_error(), needs) && strstr(cnn_last_error(), "cuda has"),
        "batch %d is refused on cuda: %s", B + 8, cnn_last_error());

  /* CNN_MEMORY_LIMIT on cuda */
  setenv("CNN_MEMORY_LIMIT", "2G", 1);
  cnn_batch_fit lim;
  memset(&lim, 0, sizeof lim);
  CHECK_OK(cnn_net_max_batch(net, b, CNN_MODE_TRAIN, 0, &lim));
  CHECK(lim.avail_bytes == ((size_t)2 << 30) && !strcmp(lim.source, "CNN_MEMORY_LIMIT") &&
            lim.need_bytes <= lim.avail_bytes &&
            need_of(net, b, lim.batch + 8, CNN_MODE_TRAIN) > lim.avail_bytes,
        "under CNN_MEMORY_LIMIT=2G: batch %d", lim.batch);
  unsetenv("CNN_MEMORY_LIMIT");

  /* build at the batch found and train a step: it fits, and takes no more than planned */
  size_t before = 0, after = 0;
  CHECK_OK(cnn_backend_mem_info(b, &before, NULL, NULL));
  size_t per = (size_t)192 * 192 * 3;
  float *x = calloc((size_t)B * per, sizeof *x);
  int32_t *y = calloc((size_t)B, sizeof *y);
  for (size_t i = 0; x && i < (size_t)B * per; i += 97) x[i] = 0.5f;
  for (int i = 0; y && i < B; i++) y[i] = i % 10;
  st = cnn_net_build(net, b, B, CNN_MODE_TRAIN);
  CHECK(st == CNN_OK, "building batch %d on cuda: %s", B, st ? cnn_last_error() : "ok");
  if (st == CNN_OK && x && y) {
    cnn_plan_info p;
    CHECK_OK(cnn_net_plan_info(net, &p));
    CHECK(p.peak_bytes == fit.plan_bytes, "the build's plan %zu is the estimate %zu", p.peak_bytes,
          fit.plan_bytes);
    cnn_step_result r;
    st = cnn_net_train_step(net, x, y, B, &r);
    CHECK(st == CNN_OK && isfinite(r.loss), "a training step of batch %d: %s", B,
          st ? cnn_last_error() : "ok");
    CHECK_OK(cnn_backend_mem_info(b, &after, NULL, NULL));
    size_t used = before > after ? before - after : 0;
    printf("the build and a step took %zu bytes of the device; plan %zu, need with margin %zu\n",
           used, p.peak_bytes, fit.need_bytes);
    CHECK(used <= fit.need_bytes, "used %zu <= plan + margin %zu", used, fit.need_bytes);
    CHECK(used + slack >= p.peak_bytes, "the build allocated its plan: used %zu, plan %zu", used,
          p.peak_bytes);
  }
  free(x);
  free(y);
  cnn_net_destroy(net);
  cnn_backend_destroy(b);
  return tu_finish("test_gpu_batch");
}
