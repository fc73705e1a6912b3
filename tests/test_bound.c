/* A training set bound in backend memory (cnn_net_bind_data, the gather_aug op):
 *  - gather_aug makes exactly the loader's batches (order, crop, flip, cutout,
 *    normalisation, labels), bit for bit, on ref and cpu (and cuda when a GPU is
 *    present), for two epochs including a partial last batch;
 *  - training from the bound set gives, step for step, the losses of training on
 *    the loader's batches with cnn_net_train_step (cpu: the same ops on the same
 *    batches), and the same parameters;
 *  - binding refuses an inference build, labels out of range and other shapes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "cnn/cnn.h"
#include "cnn/loader.h"
#include "core/rng.h"
#include "data/augment.h"
#include "testutil.h"

#define N 70 /* 4 full batches of 16 and one of 6 */
#define H 9
#define W 7
#define C 2
#define BATCH 16
#define CLASSES 3

static uint8_t images[N * H * W * C];
static int32_t labels[N];

static cnn_loader_config loader_cfg(const cnn_dataset *ds) {
  cnn_loader_config lc;
  memset(&lc, 0, sizeof lc);
  lc.data = ds;
  lc.batch = BATCH;
  lc.shuffle = 1;
  lc.seed = 42;
  lc.channels = C;
  lc.mean[0] = 0.4f, lc.mean[1] = 0.6f;
  lc.std[0] = 0.2f, lc.std[1] = 0.3f;
  lc.aug.crop_pad = 2;
  lc.aug.flip = 1;
  lc.aug.cutout = 3;
  return lc;
}

/* gather_aug on backend b against the loader, batch by batch */
static void test_gather(cnn_backend *b, const cnn_dataset *ds) {
  cnn_loader_config lc = loader_cfg(ds);
  cnn_loader *ld = NULL;
  CHECK_OK(cnn_loader_create(&lc, &ld));
  if (!ld) return;
  const cnn_backend_ops *o = b->ops;
  void *dimg, *dlab, *dperm, *dlut, *dx, *dy, *dst;
  size_t px = (size_t)H * W * C;
  CHECK_OK(o->alloc(b->ctx, sizeof images, &dimg));
  CHECK_OK(o->alloc(b->ctx, sizeof labels, &dlab));
  CHECK_OK(o->alloc(b->ctx, sizeof labels, &dperm));
  CHECK_OK(o->alloc(b->ctx, C * 256 * sizeof(float), &dlut));
  CHECK_OK(o->alloc(b->ctx, BATCH * px * sizeof(float), &dx));
  CHECK_OK(o->alloc(b->ctx, BATCH * sizeof(int32_t), &dy));
  CHECK_OK(o->alloc(b->ctx, sizeof(cnn_step_state), &dst));
  float lut[C * 256];
  for (int ch = 0; ch < C; ch++)
    for (int u = 0; u < 256; u++) lut[ch * 256 + u] = ((float)u / 255.0f - lc.mean[ch]) / lc.std[ch];
  cnn_step_state st0;
  memset(&st0, 0, sizeof st0);
  CHECK_OK(o->upload(b->ctx, dimg, images, sizeof images));
  CHECK_OK(o->upload(b->ctx, dlab, labels, sizeof labels));
  CHECK_OK(o->upload(b->ctx, dlut, lut, sizeof lut));
  CHECK_OK(o->upload(b->ctx, dst, &st0, sizeof st0));
  int batches = 0, same = 1;
  for (int epoch = 0; epoch < 2; epoch++) {
    int32_t perm[N];
    /* the epoch's order: the function the loader itself calls */
    cnn_aug_epoch_perm(lc.seed, epoch, 1, N, perm);
    CHECK_OK(o->upload(b->ctx, dperm, perm, sizeof perm));
    CHECK_OK(cnn_loader_start_epoch(ld, epoch, 0));
    CHECK_OK(o->data_seek(b->ctx, dst, 0, cnn_aug_epoch_key(lc.seed, epoch)));
    const float *x;
    const int32_t *y;
    int n;
    while (cnn_loader_next(ld, &x, &y, &n)) {
      float got[BATCH * H * W * C];
      int32_t gy[BATCH];
      CHECK_OK(o->gather_aug(b->ctx, n, H, W, C, dimg, dlab, dperm, dlut, &lc.aug, dx, dy, dst));
      CHECK_OK(o->download(b->ctx, got, dx, (size_t)n * px * sizeof(float)));
      CHECK_OK(o->download(b->ctx, gy, dy, (size_t)n * sizeof(int32_t)));
      same &= !memcmp(got, x, (size_t)n * px * sizeof(float)) && !memcmp(gy, y, n * sizeof *gy);
      batches++;
    }
  }
  cnn_step_state st1;
  CHECK_OK(o->download(b->ctx, &st1, dst, sizeof st1));
  CHECK(batches == 10 && same, "%s gather_aug: %d batches, bit-identical to the loader's: %s",
        cnn_backend_name(b), batches, same ? "yes" : "no");
  CHECK(st1.data_pos == N, "%s gather_aug advances the position: %lld (expected %d)",
        cnn_backend_name(b), (long long)st1.data_pos, N);
  void *bufs[] = {dimg, dlab, dperm, dlut, dx, dy, dst};
  for (int i = 0; i < 7; i++) o->free(b->ctx, bufs[i]);
  cnn_loader_destroy(ld);
}

static const char *cfg =
    "[net]\nheight=9\nwidth=7\nchannels=2\nbatch=16\n"
    "\n[train]\noptimizer=sgd\nlearning_rate=0.05\nmomentum=0.9\nseed=3\n"
    "\n[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\npad=1\nactivation=relu\n"
    "\n[avgpool]\n\n[connected]\noutput=3\nactivation=linear\n\n[softmax]\n";

/* training from the bound set == training on the loader's batches */
static void test_train_bound(cnn_backend *b, const cnn_dataset *ds) {
  cnn_loader_config lc = loader_cfg(ds);
  cnn_net *a = NULL, *c = NULL;
  CHECK_OK(cnn_net_from_cfg_text(cfg, "bound.cfg", &a));
  CHECK_OK(cnn_net_from_cfg_text(cfg, "bound.cfg", &c));
  if (!a || !c) return;
  CHECK_OK(cnn_net_build(a, b, BATCH, CNN_MODE_TRAIN));
  CHECK_OK(cnn_net_build(c, b, BATCH, CNN_MODE_TRAIN));
  CHECK_OK(cnn_net_bind_data(a, &lc));
  CHECK(cnn_net_bound_batches(a) == 5, "5 batches per epoch (got %d)", cnn_net_bound_batches(a));
  cnn_loader *ld = NULL;
  CHECK_OK(cnn_loader_create(&lc, &ld));
  if (!ld) return;
  double want[10];
  int k = 0;
  for (int epoch = 0; epoch < 2; epoch++) {
    int got = 0, more;
    /* launched in two calls to cross a call boundary mid-epoch */
    CHECK_OK(cnn_net_train_bound(a, epoch, 0, 2, &got));
    CHECK_OK(cnn_net_train_bound(a, epoch, 2, 10, &more));
    CHECK(got == 2 && more == 3, "epoch %d: launched %d + %d steps (expected 2 + 3)", epoch, got,
          more);
    CHECK_OK(cnn_loader_start_epoch(ld, epoch, 0));
    const float *x;
    const int32_t *y;
    int n;
    while (cnn_loader_next(ld, &x, &y, &n) && k < 10) {
      cnn_step_result r;
      CHECK_OK(cnn_net_train_step(c, x, y, n, &r));
      want[k++] = r.loss;
    }
  }
  cnn_train_metrics m;
  CHECK_OK(cnn_net_train_metrics(a, 1, &m));
  float got[10];
  CHECK(m.step == 10 && cnn_net_step_losses(a, 0, 10, got) == 10, "10 steps from the bound set");
  int same = 1;
  for (int s = 0; s < 10; s++) same &= (float)want[s] == got[s];
  CHECK(same, "%s: bound-data losses equal the loader's step for step (first: %g vs %g)",
        cnn_backend_name(b), got[0], want[0]);
  float pa[BATCH * CLASSES], pc[BATCH * CLASSES], xs[BATCH * H * W * C];
  tu_fill_uniform(xs, BATCH * H * W * C, -1, 1, 9);
  CHECK_OK(cnn_net_predict(a, xs, NULL, BATCH, pa, NULL));
  CHECK_OK(cnn_net_predict(c, xs, NULL, BATCH, pc, NULL));
  CHECK(!memcmp(pa, pc, sizeof pa), "%s: the same parameters after two epochs", cnn_backend_name(b));
  cnn_loader_destroy(ld);
  cnn_net_destroy(a);
  cnn_net_destroy(c);
}

static void test_refusals(cnn_backend *b, cnn_dataset *ds) {
  cnn_loader_config lc = loader_cfg(ds);
  cnn_net *net = NULL;
  CHECK_OK(cnn_net_from_cfg_text(cfg, "bound.cfg", &net));
  if (!net) return;
  CHECK_OK(cnn_net_build(net, b, BATCH, CNN_MODE_INFER));
  CHECK(cnn_net_bind_data(net, &lc) == CNN_ERR_ARG && strstr(cnn_last_error(), "training"),
        "an inference build is refused: %s", cnn_last_error());
  CHECK_OK(cnn_net_build(net, b, BATCH, CNN_MODE_TRAIN));
  int got = -1;
  CHECK(cnn_net_train_bound(net, 0, 0, 1, &got) == CNN_ERR_ARG && got == 0,
        "no dataset bound: refused");
  labels[5] = CLASSES; /* out of range */
  CHECK(cnn_net_bind_data(net, &lc) == CNN_ERR_ARG && strstr(cnn_last_error(), "image 5"),
        "a label out of range is refused naming the image: %s", cnn_last_error());
  labels[5] = 0;
  ds->w = W + 1;
  CHECK(cnn_net_bind_data(net, &lc) == CNN_ERR_SHAPE, "other image sizes are refused: %s",
        cnn_last_error());
  ds->w = W;
  cnn_net_destroy(net);
}

int main(void) {
  for (size_t i = 0; i < sizeof images; i++) images[i] = (uint8_t)(cnn_rng_u64(1, i) >> 56);
  for (int i = 0; i < N; i++) labels[i] = (int32_t)(cnn_rng_u64(2, (uint64_t)i) % CLASSES);
  cnn_dataset ds = {N, H, W, C, CLASSES, images, labels, NULL};
  const char *names[] = {"ref", "cpu", "cuda"};
  for (int k = 0; k < 3; k++) {
    if (k == 2 && (!cnn_have_cuda() || cnn_cuda_device_count() == 0)) {
      printf("cuda: no GPU here, its gather_aug is checked where one is present\n");
      break;
    }
    cnn_backend *b = NULL;
    CHECK_OK(cnn_backend_create(names[k], &b));
    if (!b) continue;
    test_gather(b, &ds);
    test_train_bound(b, &ds);
    if (k == 1) test_refusals(b, &ds);
    cnn_backend_destroy(b);
  }
  return tu_finish("test_bound");
}
