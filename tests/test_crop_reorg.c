/* Darknet's [crop] and [reorg] against Darknet's definitions, on `ref` (the op
 * suite then holds every other backend to ref):
 *  - hand-computed cases: space to depth of a 2x2x4 image by Darknet's map, the
 *    extra mode of go.cfg, a centre crop and its backward;
 *  - reorg in every mode against an oracle written here from Darknet's NCHW loops
 *    (reorg_cpu: for each input index compute the output index; flatten: a CHW <->
 *    HWC transpose), run the other way round from the library's map (which goes
 *    from each output to its input), on NCHW copies of the data;
 *  - crop in training: each image's output is its input window at the offsets and
 *    flip the step's draws give, the draws cover every offset and both flips over a
 *    few steps, different steps draw differently, shift adds one constant per
 *    (image, channel) within [-shift/2, shift/2);
 *  - a small net with [crop] (random windows, flips, shift) and [reorg] learns a
 *    flip-invariant problem on cpu: losses finite and falling, held-out accuracy
 *    (centre crops) >= 0.9; ref and cpu give the same losses over 10 steps; in bf16
 *    it trains too and the programs compile. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "cnn/cnn.h"
#include "core/crop_reorg.h"
#include "core/rng.h"
#include "testutil.h"

static const cnn_backend_ops *B;

/* ---- reorg ----------------------------------------------------------------------- */

static void test_reorg_hand(void) {
  /* 2x2x4 input whose element at Darknet's CHW index f holds f; stride 2 gives
   * 1x1x16 holding, at Darknet's output index t = i + 2 j + 4 k (input i, j, k),
   * the input index u = w2 + 4 h2 with w2 = 2i + k%2, h2 = 2j + k/2 (reorg_cpu
   * with out_c = 4/4 = 1): worked out by hand */
  static const float want[16] = {0, 2, 8, 10, 1, 3, 9, 11, 4, 6, 12, 14, 5, 7, 13, 15};
  float x[16], y[16], dx[16], dy[16];
  for (int j = 0; j < 2; j++)
    for (int i = 0; i < 2; i++)
      for (int k = 0; k < 4; k++) x[(j * 2 + i) * 4 + k] = (float)(k * 4 + j * 2 + i);
  cnn_reorg_desc d = {.n = 1, .h = 2, .w = 2, .c = 4, .oh = 1, .ow = 1, .oc = 16, .stride = 2,
                      .mode = CNN_REORG_PLAIN};
  tu_poison(y, 16);
  CHECK_OK(B->reorg_fwd(NULL, &d, x, y));
  tu_check_close("reorg 2x2x4 /2 (hand)", y, want, 16, 0);
  /* backward sends each dy element back where its value came from */
  for (int i = 0; i < 16; i++) dy[i] = want[i], dx[i] = 100;
  CHECK_OK(B->reorg_bwd(NULL, &d, dy, dx));
  for (int i = 0; i < 16; i++) dy[i] = x[i] + 100;
  tu_check_close("reorg 2x2x4 /2 backward (hand)", dx, dy, 16, 0);

  /* extra=2 on 1x2x2 (NHWC 1 2 | 3 4): CHW order 1 3 2 4, then two zeros */
  float xe[4] = {1, 2, 3, 4}, ye[6], we[6] = {1, 3, 2, 4, 0, 0};
  cnn_reorg_desc e = {.n = 1, .h = 1, .w = 2, .c = 2, .oh = 1, .ow = 1, .oc = 6, .stride = 1,
                      .mode = CNN_REORG_EXTRA};
  tu_poison(ye, 6);
  CHECK_OK(B->reorg_fwd(NULL, &e, xe, ye));
  tu_check_close("reorg extra=2 (hand)", ye, we, 6, 0);
  float dye[6] = {10, 30, 20, 40, 50, 60}, dxe[4] = {0, 0, 0, 0}, wdx[4] = {10, 20, 30, 40};
  CHECK_OK(B->reorg_bwd(NULL, &e, dye, dxe));
  tu_check_close("reorg extra=2 backward: the zeros get no gradient", dxe, wdx, 4, 0);

  /* inconsistent descriptors are refused */
  cnn_reorg_desc bad = d;
  bad.c = 6; /* 6 % 4 != 0 */
  CHECK(B->reorg_fwd(NULL, &bad, x, y) == CNN_ERR_ARG, "reorg of 6 channels by 2 is refused");
  bad = d;
  bad.oc = 15;
  CHECK(B->reorg_fwd(NULL, &bad, x, y) == CNN_ERR_ARG, "a wrong output shape is refused");
}

/* Darknet's semantics on NCHW buffers of one image, written from its loops */
static void darknet_reorg(const float *x, int w, int h, int c, int s, int forward, float *out) {
  int out_c = c / (s * s);
  for (int k = 0; k < c; k++)
    for (int j = 0; j < h; j++)
      for (int i = 0; i < w; i++) {
        int t = i + w * (j + h * k);
        int c2 = k % out_c, off = k / out_c;
        int u = (i * s + off % s) + w * s * ((j * s + off / s) + h * s * c2);
        if (forward)
          out[u] = x[t];
        else
          out[t] = x[u];
      }
}

static void darknet_flatten(const float *x, int size, int layers, int forward, float *out) {
  for (int k = 0; k < layers; k++)
    for (int i = 0; i < size; i++) {
      if (forward)
        out[i * layers + k] = x[k * size + i];
      else
        out[k * size + i] = x[i * layers + k];
    }
}

static void to_chw(const float *x, int h, int w, int c, float *out) {
  for (int k = 0; k < c; k++)
    for (int p = 0; p < h * w; p++) out[k * h * w + p] = x[p * c + k];
}

static void test_reorg_oracle(void) {
  static const struct { cnn_reorg_mode mode; int h, w, c, s, extra; } cases[] = {
      {CNN_REORG_PLAIN, 4, 6, 8, 2, 0},         {CNN_REORG_PLAIN, 6, 3, 18, 3, 0},
      {CNN_REORG_PLAIN, 26, 26, 64, 2, 0},      {CNN_REORG_REVERSE, 3, 5, 8, 2, 0},
      {CNN_REORG_REVERSE, 2, 4, 27, 3, 0},      {CNN_REORG_FLATTEN, 5, 7, 3, 1, 0},
      {CNN_REORG_FLATTEN, 4, 6, 5, 2, 0},       {CNN_REORG_FLATTEN_REVERSE, 5, 7, 3, 1, 0},
      {CNN_REORG_FLATTEN_REVERSE, 3, 2, 8, 2, 0}, {CNN_REORG_EXTRA, 19, 19, 1, 1, 1},
      {CNN_REORG_EXTRA, 3, 4, 5, 1, 7}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    int h = cases[ci].h, w = cases[ci].w, c = cases[ci].c, s = cases[ci].s, oh, ow, oc;
    const char *why = cnn_reorg_shape(cases[ci].mode, h, w, c, s, cases[ci].extra, &oh, &ow, &oc);
    CHECK(why == NULL, "case %zu: %s", ci, why ? why : "");
    if (why) continue;
    int n = 2;
    size_t in = (size_t)h * w * c, out = (size_t)oh * ow * oc;
    float *x = malloc(n * in * sizeof *x), *y = malloc(n * out * sizeof *y);
    float *xc = malloc(in * sizeof *x), *yc = malloc(out * sizeof *y), *want = malloc(out * sizeof *y);
    tu_fill_uniform(x, n * in, -1, 1, 500 + ci);
    tu_poison(y, n * out);
    cnn_reorg_desc d = {.n = n, .h = h, .w = w, .c = c, .oh = oh, .ow = ow, .oc = oc,
                        .stride = s, .mode = cases[ci].mode};
    CHECK_OK(B->reorg_fwd(NULL, &d, x, y));
    for (int b = 0; b < n; b++) {
      to_chw(x + b * in, h, w, c, xc);
      memset(yc, 0, out * sizeof *yc); /* Darknet's output starts zeroed (calloc) */
      switch (cases[ci].mode) {
        case CNN_REORG_PLAIN: darknet_reorg(xc, w, h, c, s, 0, yc); break;
        case CNN_REORG_REVERSE: darknet_reorg(xc, w, h, c, s, 1, yc); break;
        case CNN_REORG_FLATTEN: darknet_flatten(xc, w * h, c, 1, yc); break;
        case CNN_REORG_FLATTEN_REVERSE: darknet_flatten(xc, w * h, c, 0, yc); break;
        case CNN_REORG_EXTRA: memcpy(yc, xc, in * sizeof *xc); break;
      }
      /* Darknet's output, CHW of (oh, ow, oc), in our NHWC order */
      to_chw(yc, oc, 1, oh * ow, want); /* a CHW -> HWC transpose is to_chw of the transpose */
      char what[96];
      snprintf(what, sizeof what, "reorg mode %d %dx%dx%d /%d image %d vs Darknet's loops",
               (int)d.mode, h, w, c, s, b);
      tu_check_close(what, y + b * out, want, out, 0);
    }
    free(x);
    free(y);
    free(xc);
    free(yc);
    free(want);
  }
}

/* ---- crop ----------------------------------------------------------------------- */

static void test_crop_centre(void) {
  /* 4x5x1 image 1..20, crop 2x3: rows 1-2 and columns 1-3 ((4-2)/2, (5-3)/2), 2v - 1 */
  float x[20], y[6], dx[20], dy[6] = {1, 1, 1, 1, 1, 1};
  static const float want[6] = {13, 15, 17, 23, 25, 27};
  for (int i = 0; i < 20; i++) x[i] = (float)(i + 1);
  cnn_crop_desc d = {.n = 1, .h = 4, .w = 5, .c = 1, .oh = 2, .ow = 3, .train = 0, .flip = 1,
                     .scale = 2, .trans = -1, .shift = 0.5f, .seed = 1, .stream = 0};
  tu_poison(y, 6);
  CHECK_OK(B->crop_fwd(NULL, &d, x, y, NULL)); /* inference needs no step state */
  tu_check_close("centre crop 4x5 -> 2x3 (hand)", y, want, 6, 0);
  memset(dx, 0, sizeof dx);
  CHECK_OK(B->crop_bwd(NULL, &d, dy, dx, NULL));
  float wdx[20] = {0};
  for (int r = 1; r <= 2; r++)
    for (int q = 1; q <= 3; q++) wdx[r * 5 + q] = 2; /* scale 2 into the window */
  tu_check_close("centre crop backward (hand)", dx, wdx, 20, 0);
  /* odd margin 5 -> 2 rounds down: offset 1 (Darknet's integer (5-2)/2) */
  cnn_crop_desc o = {.n = 1, .h = 5, .w = 1, .c = 1, .oh = 2, .ow = 1, .scale = 1, .trans = 0};
  float xo[5] = {10, 11, 12, 13, 14}, yo[2], wo[2] = {11, 12};
  CHECK_OK(B->crop_fwd(NULL, &o, xo, yo, NULL));
  tu_check_close("centre crop of an odd margin", yo, wo, 2, 0);
  cnn_crop_desc big = d;
  big.oh = 5;
  CHECK(B->crop_fwd(NULL, &big, x, y, NULL) == CNN_ERR_ARG, "a crop larger than its input");
  cnn_crop_desc tr = d;
  tr.train = 1;
  CHECK(B->crop_fwd(NULL, &tr, x, y, NULL) == CNN_ERR_ARG, "training crop without a step state");
}

static void test_crop_train(void) {
  enum { N = 16, H = 6, W = 7, C = 2, OH = 4, OW = 4, STEPS = 6 };
  static float x[N * H * W * C], y[N * OH * OW * C], dx[N * H * W * C], dy[N * OH * OW * C];
  tu_fill_uniform(x, sizeof x / sizeof *x, -1, 1, 42);
  int seen[H - OH + 1][W - OW + 1] = {{0}}, flips[2] = {0}, moved = 0;
  int first[N][3];
  for (int s = 0; s < STEPS; s++) {
    cnn_step_state st;
    memset(&st, 0, sizeof st);
    st.step = s;
    cnn_crop_desc d = {.n = N, .h = H, .w = W, .c = C, .oh = OH, .ow = OW, .train = 1, .flip = 1,
                       .scale = 2, .trans = -1, .shift = 0, .seed = 9, .stream = 4};
    CHECK_OK(B->crop_fwd(NULL, &d, x, y, &st));
    memset(dx, 0, sizeof dx);
    for (size_t i = 0; i < sizeof dy / sizeof *dy; i++) dy[i] = 1;
    CHECK_OK(B->crop_bwd(NULL, &d, dy, dx, &st));
    uint64_t key = cnn_crop_key(&d, s);
    for (int b = 0; b < N; b++) {
      int oy, ox, flip;
      cnn_crop_window(&d, key, b, &oy, &ox, &flip);
      CHECK(oy >= 0 && oy <= H - OH && ox >= 0 && ox <= W - OW, "window in range");
      seen[oy][ox]++;
      flips[flip]++;
      if (s == 0) first[b][0] = oy, first[b][1] = ox, first[b][2] = flip;
      else if (first[b][0] != oy || first[b][1] != ox || first[b][2] != flip) moved++;
      int bad = 0, bad_dx = 0;
      for (int r = 0; r < OH; r++)
        for (int q = 0; q < OW; q++)
          for (int ch = 0; ch < C; ch++) {
            int col = flip ? W - ox - q - 1 : q + ox; /* Darknet's mirrored column */
            float v = x[((b * H + r + oy) * W + col) * C + ch];
            if (y[((b * OH + r) * OW + q) * C + ch] != v * 2 - 1) bad++;
          }
      /* backward: 2 on the window's cells (mirrored or not: the same set), 0 elsewhere */
      for (int r = 0; r < H; r++)
        for (int col = 0; col < W; col++) {
          int in = r >= oy && r < oy + OH && col >= ox && col < ox + OW;
          if (flip) in = r >= oy && r < oy + OH && col >= W - ox - OW && col < W - ox;
          for (int ch = 0; ch < C; ch++)
            if (dx[((b * H + r) * W + col) * C + ch] != (in ? 2.0f : 0.0f)) bad_dx++;
        }
      CHECK(bad == 0, "step %d image %d: %d outputs are not the window at (%d, %d)%s", s, b, bad,
            oy, ox, flip ? " mirrored" : "");
      CHECK(bad_dx == 0, "step %d image %d: %d dx cells wrong", s, b, bad_dx);
    }
  }
  int missing = 0;
  for (int a = 0; a <= H - OH; a++)
    for (int b = 0; b <= W - OW; b++) missing += !seen[a][b];
  CHECK(missing == 0, "%d of %d window offsets never drawn in %d images", missing,
        (H - OH + 1) * (W - OW + 1), N * STEPS);
  CHECK(flips[0] > N * STEPS / 4 && flips[1] > N * STEPS / 4, "flips %d / %d", flips[1],
        flips[0] + flips[1]);
  CHECK(moved > N, "later steps draw other windows (%d changes)", moved);

  /* shift (noadjust): y - x is one value per (image, channel) in [-shift/2, shift/2) */
  cnn_step_state st;
  memset(&st, 0, sizeof st);
  st.step = 3;
  cnn_crop_desc d = {.n = N, .h = H, .w = W, .c = C, .oh = H, .ow = W, .train = 1, .flip = 0,
                     .scale = 1, .trans = 0, .shift = 0.4f, .seed = 9, .stream = 5};
  static float ys[N * H * W * C];
  CHECK_OK(B->crop_fwd(NULL, &d, x, ys, &st));
  int bad = 0, distinct = 0;
  for (int b = 0; b < N; b++)
    for (int ch = 0; ch < C; ch++) {
      float off = ys[b * H * W * C + ch] - x[b * H * W * C + ch];
      if (!(off >= -0.2f - 1e-6f && off < 0.2f + 1e-6f)) bad++;
      if (fabsf(off) > 1e-3f) distinct++;
      for (int p = 0; p < H * W; p++) {
        size_t i = ((size_t)b * H * W + p) * C + ch;
        if (fabsf(ys[i] - x[i] - off) > 1e-6f) bad++;
      }
    }
  CHECK(bad == 0, "shift: %d values off", bad);
  CHECK(distinct > N, "shift: offsets are drawn (%d of %d non-zero)", distinct, N * C);
}

/* ---- a net with [crop] and [reorg] learns ----------------------------------------- */

#define IMG 14
#define PIX (IMG * IMG)
#define CLASSES 3
#define BATCH 32
#define N_TRAIN 1024
#define N_TEST 256
#define STEPS 120

/* 14x14 -> random 12x12 crops, mirrored half the time, shifted -> conv 4 relu ->
 * reorg /2 (6x6x16) -> conv 8 bn relu -> maxpool 2/2 (3x3) -> dense 3 -> softmax */
static const char *cfg_text =
    "[net]\nheight=14\nwidth=14\nchannels=1\nbatch=32\n"
    "[crop]\ncrop_height=12\ncrop_width=12\nflip=1\nshift=.1\nangle=0\nsaturation=1\nexposure=1\n"
    "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=relu\n"
    "[reorg]\nstride=2\n"
    "[convolutional]\nfilters=8\nsize=3\npad=1\nbatch_normalize=1\nactivation=relu\n"
    "[maxpool]\nsize=2\nstride=2\n"
    "[connected]\noutput=3\nactivation=linear\n"
    "[softmax]\n"
    "[train]\noptimizer=sgd\nlearning_rate=0.05\nmomentum=0.9\nseed=5\n";

/* class k: a bright blob in horizontal band k (top, middle, bottom), anywhere
 * across: invariant to flips and to a pixel of crop offset */
static void make_data(float *x, int32_t *y, int n, uint64_t seed) {
  for (int i = 0; i < n; i++) {
    int k = (int)(cnn_rng_u64(seed, 3 * i) % CLASSES);
    double cy = 2.5 + 4.5 * k, cx = 2 + (double)(cnn_rng_u64(seed, 3 * i + 1) % 10);
    y[i] = k;
    for (int p = 0; p < PIX; p++) {
      double dy = p / IMG - cy, dx = p % IMG - cx;
      x[(size_t)i * PIX + p] = (float)(exp(-(dy * dy + dx * dx) / 3.0) +
                                       0.2 * cnn_rng_uniform(seed ^ 0xabc, (uint64_t)i * PIX + p));
    }
  }
}

static cnn_net *net_on(cnn_backend *b, cnn_precision prec) {
  cnn_net *net = NULL;
  CHECK_OK(cnn_net_from_cfg_text(cfg_text, "crop_reorg.cfg", &net));
  if (!net) return NULL;
  if (prec != CNN_PRECISION_AUTO) CHECK_OK(cnn_net_set_precision(net, b, prec));
  cnn_status st = cnn_net_build(net, b, BATCH, CNN_MODE_TRAIN);
  CHECK(st == CNN_OK, "build on %s: %s", b->name, cnn_last_error());
  if (st != CNN_OK) {
    cnn_net_destroy(net);
    return NULL;
  }
  return net;
}

static int train(cnn_net *net, const float *x, const int32_t *y, int steps, double *losses) {
  for (int s = 0; s < steps; s++) {
    int b = s % (N_TRAIN / BATCH);
    cnn_step_result r;
    cnn_status st = cnn_net_train_step(net, x + (size_t)b * BATCH * PIX, y + b * BATCH, BATCH, &r);
    CHECK(st == CNN_OK && isfinite(r.loss), "step %d: %s (loss %g)", s,
          st == CNN_OK ? "ok" : cnn_last_error(), r.loss);
    if (st != CNN_OK) return 0;
    losses[s] = r.loss;
  }
  return 1;
}

static double accuracy(cnn_net *net, const float *x, const int32_t *y) {
  int correct = 0;
  for (int i = 0; i < N_TEST; i += BATCH) {
    cnn_step_result r;
    CHECK_OK(cnn_net_predict(net, x + (size_t)i * PIX, y + i, BATCH, NULL, &r));
    correct += r.correct;
  }
  return (double)correct / N_TEST;
}

static double mean(const double *v, int n) {
  double s = 0;
  for (int i = 0; i < n; i++) s += v[i];
  return s / n;
}

static void test_training(cnn_backend *cpu, cnn_backend *ref) {
  float *x = malloc((size_t)N_TRAIN * PIX * sizeof *x), *tx = malloc((size_t)N_TEST * PIX * sizeof *x);
  int32_t *y = malloc(N_TRAIN * sizeof *y), *ty = malloc(N_TEST * sizeof *y);
  make_data(x, y, N_TRAIN, 11);
  make_data(tx, ty, N_TEST, 12);
  double losses[STEPS], lr[10];
  cnn_net *net = net_on(cpu, CNN_PRECISION_FP32);
  if (net && train(net, x, y, STEPS, losses)) {
    double a = mean(losses, 10), b = mean(losses + STEPS - 10, 10), acc = accuracy(net, tx, ty);
    printf("cpu: loss %.3f (first 10 steps) -> %.3f (last 10), held-out accuracy %.3f\n", a, b,
           acc);
    CHECK(b < 0.5 * a, "the loss falls: %.3f -> %.3f", a, b);
    CHECK(acc >= 0.9, "held-out accuracy %.3f >= 0.9", acc);
  }
  cnn_net_destroy(net);
  /* ref and cpu draw the same windows: the same losses */
  cnn_net *rn = net_on(ref, CNN_PRECISION_FP32), *cn = net_on(cpu, CNN_PRECISION_FP32);
  if (rn && cn && train(rn, x, y, 10, lr) && train(cn, x, y, 10, losses)) {
    double worst = 0;
    for (int s = 0; s < 10; s++) worst = fmax(worst, fabs(losses[s] - lr[s]) / lr[s]);
    printf("ref vs cpu, 10 steps: worst relative loss difference %.2e\n", worst);
    CHECK(worst <= 1e-3, "ref and cpu losses differ by %.2e", worst);
  }
  cnn_net_destroy(rn);
  cnn_net_destroy(cn);
  /* bf16: crop and reorg nodes lowered with casts, in training and inference */
  cnn_net *bn = net_on(cpu, CNN_PRECISION_BF16);
  if (bn && train(bn, x, y, 60, losses)) {
    double a = mean(losses, 10), b = mean(losses + 50, 10), acc = accuracy(bn, tx, ty);
    printf("cpu bf16: loss %.3f -> %.3f, held-out accuracy %.3f\n", a, b, acc);
    CHECK(b < a, "bf16: the loss falls: %.3f -> %.3f", a, b);
  }
  cnn_net_destroy(bn);
  free(x);
  free(tx);
  free(y);
  free(ty);
}

int main(void) {
  cnn_backend *ref = NULL, *cpu = NULL;
  CHECK_OK(cnn_backend_create("ref", &ref));
  CHECK_OK(cnn_backend_create("cpu", &cpu));
  if (!ref || !cpu) return tu_finish("test_crop_reorg");
  B = ref->ops;
  test_reorg_hand();
  test_reorg_oracle();
  test_crop_centre();
  test_crop_train();
  test_training(cpu, ref);
  cnn_backend_destroy(cpu);
  cnn_backend_destroy(ref);
  return tu_finish("test_crop_reorg");
}
