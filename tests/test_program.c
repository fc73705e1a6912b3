/* Step programs (src/core/program.c) on ref and cpu:
 *  - fused vs unfused: the same net, seed and batches give the same per-step losses
 *    and parameters with fusion on and off (fusion is the only difference), on ref
 *    and on cpu, in training and in inference (BN folded into convs);
 *  - ref is bit-exact with itself (two nets, same seed: identical losses and
 *    parameters), and cpu agrees with ref within the f32 tolerance;
 *  - the compiled programs hold the fused nodes and not the unfused ones;
 *  - a refused step (non-finite input, or a loss that overflows) launched without
 *    any host read leaves parameters, optimizer state and running statistics
 *    bit-identical, and the metrics report it with its step number;
 *  - a counting wrapper around the cpu backend sees no sync, download, upload,
 *    alloc or free inside launched training steps, and exactly one asynchronous
 *    read per metrics poll;
 *  - a backend without an op the program needs is refused at compile time,
 *    naming the node, the op, the dtype and the backend;
 *  - partial batches (n < the built batch) run their own program;
 *  - batch norm [+ act] + max pool runs as one bn_act_pool node each way on ref and
 *    cpu: the same training as unfused (fp32, also with a frozen first block),
 *    inference on the running statistics, less activation memory; in bf16 cpu
 *    agrees with ref;
 *  - a backend with overwriting backward forms (maxpool_bwd_set, bn_act_bwd_set)
 *    gets them in place of zero-fills, and trains bit-identically to the same
 *    backend without them (fp32 and bf16);
 *  - bf16 builds (bf16 activations and gradients, f32 everything else) train like
 *    fp32 within bf16 rounding on ref and cpu, agree across the two, and plan less
 *    activation memory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "cnn/cnn.h"
#include "core/rng.h"
#include "testutil.h"

#define BATCH 8
#define STEPS 6
/* Tolerances (relative, as tu_check_close scales them):
 * fused vs unfused on one backend: the fused ops reorder a few f32 roundings per
 *   element (normalise + activation in one pass, folded weights); the f32 budget of
 *   one elementwise op (1e-5 ~ 170 u, see tests/lib/opsuite.c) covers them, also
 *   after STEPS steps of SGD (seen: ~4e-8);
 * cpu vs ref: im2col + sgemm against double accumulation over K ~ 50 terms per
 *   output, 1e-5 sqrt(K), compounded over STEPS steps: 1e-4 (seen: ~4e-8);
 * bf16 vs fp32: every activation and gradient is rounded to 8 mantissa bits (2^-9 ~
 *   2e-3 per rounding) and a loss sums many with random signs: 1e-2, five roundings'
 *   worth (seen: ~1e-3). */
#define TOL_FUSED 1e-5
#define TOL_CPU_REF 1e-4
#define TOL_BF16 1e-2

/* every fusion pattern: conv -> bn -> leaky, conv -> bn -> relu, a same-shape
 * shortcut with relu, conv -> relu (inference epilogue), a route, dropout, a
 * dense layer with bn -> tanh, and softmax with temperature + label smoothing */
static const char *cfg =
    "[net]\nheight=10\nwidth=10\nchannels=2\nbatch=8\n"
    "\n[train]\noptimizer=sgd\nnesterov=1\nlearning_rate=0.05\nmomentum=0.9\nseed=11\n"
    "label_smoothing=0.1\n"
    "\n[convolutional]\nbatch_normalize=1\nfilters=6\nsize=3\npad=1\nactivation=leaky\n"
    "\n[convolutional]\nbatch_normalize=1\nfilters=6\nsize=3\npad=1\nactivation=relu\n"
    "\n[shortcut]\nfrom=-2\nactivation=relu\n"
    "\n[maxpool]\nsize=2\nstride=2\n"
    "\n[convolutional]\nfilters=4\nsize=1\nactivation=relu\n"
    "\n[route]\nlayers=-1,-2\n"
    "\n[dropout]\nprobability=0.25\n"
    "\n[connected]\nbatch_normalize=1\noutput=12\nactivation=tanh\n"
    "\n[connected]\noutput=5\nactivation=linear\n"
    "\n[softmax]\ntemperature=2\n";

#define PIX (10 * 10 * 2)
#define CLASSES 5

static float xs[STEPS][BATCH * PIX];
static int32_t ys[STEPS][BATCH];

static void make_data(void) {
  for (int s = 0; s < STEPS; s++) {
    tu_fill_uniform(xs[s], BATCH * PIX, -1, 1, 100 + (uint64_t)s);
    for (int i = 0; i < BATCH; i++) ys[s][i] = (int32_t)(cnn_rng_u64(5, (uint64_t)(s * BATCH + i)) % CLASSES);
  }
}

static cnn_net *make_net_p(cnn_backend *b, int fuse, cnn_mode mode, cnn_precision p) {
  cnn_net *net = NULL;
  CHECK_OK(cnn_net_from_cfg_text(cfg, "program.cfg", &net));
  if (!net) return NULL;
  CHECK_OK(cnn_net_set_precision(net, b, p));
  CHECK_OK(cnn_net_set_fusion(net, fuse));
  CHECK_OK(cnn_net_build(net, b, BATCH, mode));
  return net;
}

static cnn_net *make_net(cnn_backend *b, int fuse, cnn_mode mode) {
  return make_net_p(b, fuse, mode, CNN_PRECISION_FP32);
}


static void train(cnn_net *net, double *loss) {
  for (int s = 0; s < STEPS; s++) {
    cnn_step_result r = {0};
    CHECK_OK(cnn_net_train_step(net, xs[s], ys[s], BATCH, &r));
    loss[s] = r.loss;
  }
}

static void check_losses(const char *what, const double *a, const double *b, double tol) {
  double worst = 0;
  for (int s = 0; s < STEPS; s++) {
    double e = fabs(a[s] - b[s]) / fmax(1.0, fmax(fabs(a[s]), fabs(b[s])));
    if (!(e <= worst)) worst = e;
  }
  printf("%s: worst per-step loss difference %.3g (tolerance %g)\n", what, worst, tol);
  CHECK(worst <= tol, "%s: per-step losses differ by %.3g (tolerance %g)", what, worst, tol);
}

/* fused vs unfused training and inference on backend b */
static void test_fused_vs_unfused(cnn_backend *b, double *losses_out) {
  char what[128];
  double loss[2][STEPS];
  float *params[2], *probs[2];
  size_t np = 0;
  for (int fuse = 0; fuse < 2; fuse++) {
    cnn_net *net = make_net(b, fuse, CNN_MODE_TRAIN);
    if (!net) return;
    train(net, loss[fuse]);
    params[fuse] = tu_net_snapshot(net, &np);
    /* inference on a net built for inference: BN folded into the convs when fused */
    cnn_net *inf = NULL;
    CHECK_OK(cnn_net_from_cfg_text(cfg, "program.cfg", &inf));
    CHECK_OK(cnn_net_set_fusion(inf, fuse));
    CHECK_OK(cnn_net_build(inf, b, BATCH, CNN_MODE_INFER));
    int nt = cnn_net_num_tensors(net);
    float *p = params[fuse];
    for (int i = 0; i < nt; i++) {
      cnn_param_desc d;
      CHECK_OK(cnn_net_tensor_desc(net, i, &d));
      CHECK_OK(cnn_net_tensor_set(inf, i, p));
      p += d.count;
    }
    probs[fuse] = malloc(BATCH * CLASSES * sizeof(float));
    tu_poison(probs[fuse], BATCH * CLASSES);
    CHECK_OK(cnn_net_predict(inf, xs[0], NULL, BATCH, probs[fuse], NULL));
    cnn_net_destroy(inf);
    cnn_net_destroy(net);
  }
  snprintf(what, sizeof what, "%s training, fused vs unfused", cnn_backend_name(b));
  check_losses(what, loss[1], loss[0], TOL_FUSED);
  tu_check_close(what, params[1], params[0], np, TOL_FUSED);
  snprintf(what, sizeof what, "%s inference (BN folded), fused vs unfused", cnn_backend_name(b));
  tu_check_close(what, probs[1], probs[0], BATCH * CLASSES, TOL_FUSED);
  for (int s = 0; s < STEPS; s++) losses_out[s] = loss[1][s];
  for (int k = 0; k < 2; k++) {
    free(params[k]);
    free(probs[k]);
  }
}

/* the program text: fused nodes present, the unfused ones absent */
static void test_program_text(cnn_backend *b) {
  cnn_net *tr = make_net(b, 1, CNN_MODE_TRAIN), *in = make_net(b, 1, CNN_MODE_INFER);
  if (!tr || !in) return;
  char *buf = tu_program_text(tr, BATCH, CNN_MODE_TRAIN);
  if (!buf) return;
  CHECK(strstr(buf, "bn_act_fwd_train") && strstr(buf, "[+leaky]"), "training: BN + leaky fused:\n%s", buf);
  CHECK(strstr(buf, "add_act_fwd") && strstr(buf, "add_act_bwd"), "training: shortcut + relu fused:\n%s", buf);
  CHECK(strstr(buf, "softmax_xent_step") && !strstr(buf, "softmax_xent_fwd"), "one softmax node:\n%s", buf);
  CHECK(strstr(buf, "sgd_step_st") && strstr(buf, "bn_commit"), "optimizer and BN commits:\n%s", buf);
  /* the only act nodes left: the 1x1 conv's relu (training does not fuse it) */
  int acts = tu_count(buf, " act_fwd");
  CHECK(acts == 1, "training: %d act_fwd nodes, expected 1 (the conv's relu):\n%s", acts, buf);
  free(buf);
  buf = tu_program_text(in, BATCH, CNN_MODE_INFER);
  if (!buf) return;
  CHECK(strstr(buf, "bn_fold") && strstr(buf, "conv_fwd_act") && strstr(buf, "[+bn folded, leaky]"),
        "inference: BN folded, act in the conv epilogue:\n%s", buf);
  /* the dense layer's BN stays a node (only convs fold), with tanh fused */
  int bns = tu_count(buf, "bn_act_fwd_infer");
  CHECK(bns == 1, "inference: %d bn_act_fwd_infer nodes, expected 1:\n%s", bns, buf);
  CHECK(!strstr(buf, " act_fwd"), "inference: no separate activation node:\n%s", buf);
  free(buf);
  cnn_net_destroy(tr);
  cnn_net_destroy(in);
}

/* ---- a backend wrapper that counts the calls that would stall a GPU ---------- */
typedef struct counts {
  int sync, download, upload, alloc, free, read_async, read_done, host_alloc;
} counts;
static counts cnt;            /* test-program state: one wrapper at a time */
static const cnn_backend_ops *inner;

static cnn_status c_alloc(void *c, size_t n, void **p) { cnt.alloc++; return inner->alloc(c, n, p); }
static void c_free(void *c, void *p) { cnt.free++; inner->free(c, p); }
static cnn_status c_upload(void *c, void *d, const void *s, size_t n) { cnt.upload++; return inner->upload(c, d, s, n); }
static cnn_status c_download(void *c, void *d, const void *s, size_t n) { cnt.download++; return inner->download(c, d, s, n); }
static cnn_status c_sync(void *c) { cnt.sync++; return inner->sync(c); }
static cnn_status c_read_async(void *c, void *d, const void *s, size_t n) { cnt.read_async++; return inner->read_async(c, d, s, n); }
static int c_read_done(void *c, int w) { cnt.read_done++; return inner->read_done(c, w); }
static cnn_status c_host_alloc(void *c, size_t n, void **p) { cnt.host_alloc++; return inner->host_alloc(c, n, p); }

static void test_no_host_sync(cnn_backend *cpu) {
  cnn_backend_ops ops = *cpu->ops;
  inner = cpu->ops;
  ops.destroy = NULL;
  ops.alloc = c_alloc;
  ops.free = c_free;
  ops.upload = c_upload;
  ops.download = c_download;
  ops.sync = c_sync;
  ops.read_async = inner->read_async ? c_read_async : NULL;
  ops.read_done = inner->read_done ? c_read_done : NULL;
  ops.host_alloc = inner->host_alloc ? c_host_alloc : NULL;
  cnn_backend wrap = {"counting-cpu", cpu->ctx, &ops};
  CHECK(ops.read_async && ops.read_done && ops.upload_async, "cpu has asynchronous transfers");
  cnn_net *net = make_net(&wrap, 1, CNN_MODE_TRAIN);
  if (!net) return;
  cnn_train_metrics m;
  CHECK_OK(cnn_net_train_metrics(net, 1, &m)); /* compiles nothing; a baseline read */
  CHECK_OK(cnn_net_train_launch(net, xs[0], ys[0], BATCH)); /* first launch compiles */
  counts before = cnt;
  int polls = 0;
  for (int s = 1; s < STEPS; s++) {
    CHECK_OK(cnn_net_train_launch(net, xs[s], ys[s], BATCH));
    if (s % 2 == 0) {
      CHECK_OK(cnn_net_train_metrics(net, 0, &m));
      polls++;
    }
  }
  counts d = {cnt.sync - before.sync, cnt.download - before.download, cnt.upload - before.upload,
              cnt.alloc - before.alloc, cnt.free - before.free,
              cnt.read_async - before.read_async, cnt.read_done - before.read_done,
              cnt.host_alloc - before.host_alloc};
  CHECK(d.sync == 0 && d.download == 0 && d.upload == 0, "no host sync in %d steps: %d sync, "
        "%d download, %d upload calls", STEPS - 1, d.sync, d.download, d.upload);
  CHECK(d.alloc == 0 && d.free == 0 && d.host_alloc == 0, "no allocation in steps: %d alloc, "
        "%d free, %d host_alloc", d.alloc, d.free, d.host_alloc);
  CHECK(d.read_async <= polls && d.read_async >= 1, "%d asynchronous reads for %d metric polls",
        d.read_async, polls);
  CHECK_OK(cnn_net_train_metrics(net, 1, &m));
  CHECK(m.step == STEPS && m.refused == 0 && m.seen == STEPS * BATCH,
        "metrics after %d steps: step %lld, refused %lld, seen %lld", STEPS, (long long)m.step,
        (long long)m.refused, (long long)m.seen);
  float ring[STEPS];
  CHECK(cnn_net_step_losses(net, 0, STEPS, ring) == STEPS, "the loss of every step is kept");
  int finite = 1;
  for (int s = 0; s < STEPS; s++) finite &= isfinite(ring[s]) && ring[s] > 0;
  CHECK(finite, "step losses are positive and finite");

  /* a backend lacking an op the program needs: refused at compile, named */
  cnn_net_destroy(net);
  ops.add_act_fwd = NULL; /* fusion then leaves the shortcut unfused: still fine */
  ops.add = NULL;
  net = NULL;
  CHECK_OK(cnn_net_from_cfg_text(cfg, "program.cfg", &net));
  if (net) { /* refused when building, before any step */
    cnn_status st = cnn_net_build(net, &wrap, BATCH, CNN_MODE_TRAIN);
    const char *e = cnn_last_error();
    CHECK(st == CNN_UNSUPPORTED && strstr(e, "counting-cpu") && strstr(e, "add") &&
          strstr(e, "f32") && strstr(e, "node") && strstr(e, "shortcut"),
          "missing op refused with node, op, dtype and backend named: %s: %s",
          cnn_status_name(st), e);
    cnn_net_destroy(net);
  }
}

/* Launch a step on x that the device must refuse; everything stays bit-identical
 * and the metrics name the step. */
static void expect_refused(cnn_net *net, const float *x, const int32_t *y, int64_t refused,
                           int64_t step, const char *what) {
  size_t np, n2;
  float *before = tu_net_snapshot(net, &np);
  cnn_net_info info;
  CHECK_OK(cnn_net_info_get(net, &info));
  float *m0 = malloc(info.num_params * sizeof *m0), *m1 = malloc(info.num_params * sizeof *m1);
  CHECK_OK(cnn_net_opt_state_get(net, 0, m0, info.num_params));
  CHECK_OK(cnn_net_train_launch(net, x, y, BATCH));
  cnn_train_metrics m;
  CHECK_OK(cnn_net_train_metrics(net, 1, &m));
  CHECK(m.refused == refused && m.last_refused == step && m.step == step,
        "%s: refused %lld (expected %lld), last refused step %lld, step %lld (expected %lld)",
        what, (long long)m.refused, (long long)refused, (long long)m.last_refused,
        (long long)m.step, (long long)step);
  float *after = tu_net_snapshot(net, &n2);
  CHECK(n2 == np && !memcmp(before, after, np * sizeof *after),
        "%s: parameters and running statistics bit-identical after a refused step", what);
  CHECK_OK(cnn_net_opt_state_get(net, 0, m1, info.num_params));
  CHECK(!memcmp(m0, m1, info.num_params * sizeof *m1),
        "%s: optimizer state bit-identical after a refused step", what);
  free(before);
  free(after);
  free(m0);
  free(m1);
}

/* a refused step changes nothing and is reported, without a host read in the step */
static void test_refused(cnn_backend *b) {
  char what[96];
  cnn_net *net = make_net(b, 1, CNN_MODE_TRAIN);
  if (!net) return;
  CHECK_OK(cnn_net_train_step(net, xs[0], ys[0], BATCH, NULL));
  static float bad[BATCH * PIX];
  memcpy(bad, xs[1], sizeof bad);
  bad[77] = NAN;
  snprintf(what, sizeof what, "%s, a NaN input", cnn_backend_name(b));
  expect_refused(net, bad, ys[1], 1, 1, what);
  /* the host-pointer call reports it as an error naming the input */
  cnn_status st = cnn_net_train_step(net, bad, ys[1], BATCH, NULL);
  CHECK(st == CNN_ERR_NUMERIC && strstr(cnn_last_error(), "image 0") &&
        strstr(cnn_last_error(), "element 77"), "train_step names the bad input: %s",
        cnn_last_error());
  /* and training goes on */
  cnn_step_result r;
  CHECK_OK(cnn_net_train_step(net, xs[1], ys[1], BATCH, &r));
  CHECK(cnn_net_step_count(net) == 2 && isfinite(r.loss), "a good step after refused ones");
  cnn_net_destroy(net);

  /* a finite input whose loss overflows: a dense layer of all-one weights sums
   * 3e38 sixteen times, every logit is +inf and the loss NaN */
  static const char *lin = "[net]\nheight=4\nwidth=4\nchannels=1\n"
                           "\n[connected]\noutput=3\nactivation=linear\n\n[softmax]\n";
  net = NULL;
  CHECK_OK(cnn_net_from_cfg_text(lin, "linear.cfg", &net));
  if (!net) return;
  CHECK_OK(cnn_net_build(net, b, BATCH, CNN_MODE_TRAIN));
  float ones[3 * 16], big[BATCH * 16];
  for (int i = 0; i < 3 * 16; i++) ones[i] = 1.0f;
  for (int i = 0; i < BATCH * 16; i++) big[i] = 3e38f;
  CHECK_OK(cnn_net_tensor_set(net, 0, ones));
  int32_t y3[BATCH] = {0, 1, 2, 0, 1, 2, 0, 1};
  snprintf(what, sizeof what, "%s, an overflowing loss", cnn_backend_name(b));
  expect_refused(net, big, y3, 1, 0, what);
  cnn_net_destroy(net);
}

/* bf16 against fp32 on backend b; returns the bf16 losses */
static void test_bf16(cnn_backend *b, double *bf16_loss) {
  char what[128];
  double l32[STEPS];
  cnn_net *n32 = make_net_p(b, 1, CNN_MODE_TRAIN, CNN_PRECISION_FP32);
  cnn_net *n16 = make_net_p(b, 1, CNN_MODE_TRAIN, CNN_PRECISION_BF16);
  if (!n32 || !n16) return;
  CHECK(cnn_net_precision(n16) == CNN_PRECISION_BF16, "%s builds bf16", cnn_backend_name(b));
  cnn_plan_info p32, p16;
  CHECK_OK(cnn_net_plan_info(n32, &p32));
  CHECK_OK(cnn_net_plan_info(n16, &p16));
  CHECK(p16.activation_bytes < p32.activation_bytes * 3 / 4,
        "bf16 activations take less memory: %zu vs %zu bytes", p16.activation_bytes,
        p32.activation_bytes);
  train(n32, l32);
  train(n16, bf16_loss);
  snprintf(what, sizeof what, "%s training, bf16 vs fp32", cnn_backend_name(b));
  check_losses(what, bf16_loss, l32, TOL_BF16);
  int differs = 0;
  for (int s = 0; s < STEPS; s++) differs |= bf16_loss[s] != l32[s];
  CHECK(differs, "%s: bf16 losses differ from fp32 at all (the activations are rounded)",
        cnn_backend_name(b));
  /* inference in bf16 with BN folded */
  cnn_net *i16 = make_net_p(b, 1, CNN_MODE_INFER, CNN_PRECISION_BF16);
  if (i16) {
    size_t np;
    float *params = tu_net_snapshot(n32, &np), *p = params;
    for (int i = 0; i < cnn_net_num_tensors(n32); i++) {
      cnn_param_desc d;
      CHECK_OK(cnn_net_tensor_desc(n32, i, &d));
      CHECK_OK(cnn_net_tensor_set(i16, i, p));
      p += d.count;
    }
    float pa[BATCH * CLASSES], pb[BATCH * CLASSES];
    CHECK_OK(cnn_net_predict(n32, xs[0], NULL, BATCH, pa, NULL));
    CHECK_OK(cnn_net_predict(i16, xs[0], NULL, BATCH, pb, NULL));
    snprintf(what, sizeof what, "%s inference, bf16 vs fp32 probabilities", cnn_backend_name(b));
    tu_check_close(what, pb, pa, BATCH * CLASSES, TOL_BF16);
    free(params);
    cnn_net_destroy(i16);
  }
  cnn_net_destroy(n32);
  cnn_net_destroy(n16);
}

/* a net whose output is an activation fused into a conv (no softmax): in bf16 the
 * output buffer is still f32, so predict reads the values, not bf16 bit patterns */
static void test_bf16_output(cnn_backend *b) {
  static const char *c = "[net]\nheight=10\nwidth=10\nchannels=2\n"
                         "\n[convolutional]\nfilters=3\nsize=3\npad=1\nactivation=relu\n";
  float out[2][BATCH * 300];
  for (int k = 0; k < 2; k++) {
    cnn_net *net = NULL;
    CHECK_OK(cnn_net_from_cfg_text(c, "out.cfg", &net));
    if (!net) return;
    CHECK_OK(cnn_net_set_precision(net, b, k ? CNN_PRECISION_BF16 : CNN_PRECISION_FP32));
    CHECK_OK(cnn_net_build(net, b, BATCH, CNN_MODE_INFER));
    CHECK_OK(cnn_net_predict(net, xs[0], NULL, BATCH, out[k], NULL));
    cnn_net_destroy(net);
  }
  char what[96];
  snprintf(what, sizeof what, "%s: a fused output layer in bf16 vs fp32", cnn_backend_name(b));
  tu_check_close(what, out[1], out[0], BATCH * 300, TOL_BF16);
}

/* the bf16 rounding of the cast op against hand-worked bit patterns */
static void test_cast_values(cnn_backend *b) {
  static const struct { uint32_t f32; uint16_t bf16; const char *what; } cases[] = {
      {0x3F800000u, 0x3F80u, "1.0 exactly"},
      {0x3F808000u, 0x3F80u, "a tie rounds to even (down)"},
      {0x3F818000u, 0x3F82u, "a tie rounds to even (up)"},
      {0x3F808001u, 0x3F81u, "just above a tie rounds up"},
      {0xBF807FFFu, 0xBF80u, "just below a tie rounds down (negative)"},
      {0x7F7FFFFFu, 0x7F80u, "the largest float rounds to +Inf"},
      {0xFF800000u, 0xFF80u, "-Inf stays -Inf"},
      {0x7FC00001u, 0x7FC0u, "a NaN stays a quiet NaN"},
      {0x7F800001u, 0x7FC0u, "a signalling NaN becomes quiet"},
      {0x00000001u, 0x0000u, "the smallest subnormal rounds to zero"},
  };
  enum { N = sizeof cases / sizeof cases[0] };
  float in[N], back[N];
  uint16_t out[N + 1];
  for (int i = 0; i < N; i++) memcpy(&in[i], &cases[i].f32, 4);
  void *d_in, *d_out, *d_back;
  CHECK_OK(b->ops->alloc(b->ctx, sizeof in, &d_in));
  CHECK_OK(b->ops->alloc(b->ctx, sizeof out, &d_out));
  CHECK_OK(b->ops->alloc(b->ctx, sizeof back, &d_back));
  CHECK_OK(b->ops->upload(b->ctx, d_in, in, sizeof in));
  CHECK_OK(b->ops->cast(b->ctx, N, d_in, CNN_DT_F32, d_out, CNN_DT_BF16));
  CHECK_OK(b->ops->cast(b->ctx, N, d_out, CNN_DT_BF16, d_back, CNN_DT_F32));
  CHECK_OK(b->ops->download(b->ctx, out, d_out, N * sizeof *out));
  CHECK_OK(b->ops->download(b->ctx, back, d_back, sizeof back));
  for (int i = 0; i < N; i++) {
    uint32_t u;
    memcpy(&u, &back[i], 4);
    CHECK(out[i] == cases[i].bf16 && u == (uint32_t)cases[i].bf16 << 16,
          "%s cast: %s: 0x%08x -> 0x%04x (expected 0x%04x), back 0x%08x", cnn_backend_name(b),
          cases[i].what, cases[i].f32, out[i], cases[i].bf16, u);
  }
  CHECK(b->ops->cast(b->ctx, 1, d_in, CNN_DT_F32, d_out, CNN_DT_U8) == CNN_UNSUPPORTED,
        "%s cast to u8 is refused", cnn_backend_name(b));
  b->ops->free(b->ctx, d_in);
  b->ops->free(b->ctx, d_out);
  b->ops->free(b->ctx, d_back);
}

/* b with and without its overwriting backward forms: the first writers of the
 * pool's and the batch norms' input gradients drop their zero-fills, and the two
 * train to the same bits (0 + term is what fill + add gives) */
static void test_first_writers(cnn_backend *b, cnn_precision prec) {
  CHECK(b->ops->maxpool_bwd_set && b->ops->bn_act_bwd_set, "%s has the overwriting forms",
        cnn_backend_name(b));
  cnn_backend_ops ops = *b->ops;
  ops.destroy = NULL;
  ops.maxpool_bwd_set = NULL;
  ops.bn_act_bwd_set = NULL;
  cnn_backend plain = {"plain", b->ctx, &ops};
  cnn_backend *bs[2] = {&plain, b};
  double loss[2][STEPS];
  float *params[2] = {NULL, NULL};
  size_t np[2] = {0, 0};
  int fills[2] = {0, 0}, sets[2] = {0, 0};
  for (int k = 0; k < 2; k++) {
    cnn_net *net = make_net_p(bs[k], 1, CNN_MODE_TRAIN, prec);
    if (!net) return;
    char *text = tu_program_text(net, BATCH, CNN_MODE_TRAIN);
    fills[k] = tu_count(text, " fill ");
    sets[k] = tu_count(text, "maxpool_bwd_set") + tu_count(text, "bn_act_bwd_set");
    /* the pool and the batch norms of conv1, conv2 and the first dense layer write
     * their dx first */
    CHECK(k == 0 ? sets[k] == 0 : (tu_count(text, "maxpool_bwd_set") == 1 &&
                                  tu_count(text, "bn_act_bwd_set") == 3),
          "%s (%s): %d overwriting nodes:\n%s", bs[k]->name, cnn_backend_name(b), sets[k], text);
    free(text);
    train(net, loss[k]);
    params[k] = tu_net_snapshot(net, &np[k]);
    cnn_net_destroy(net);
  }
  const char *pn = prec == CNN_PRECISION_BF16 ? "bf16" : "fp32";
  CHECK(fills[0] - fills[1] == sets[1], "%s %s: %d fills without the overwriting forms, %d with, "
        "%d overwriting nodes", cnn_backend_name(b), pn, fills[0], fills[1], sets[1]);
  CHECK(!memcmp(loss[0], loss[1], sizeof loss[0]), "%s %s: the same losses with and without "
        "the overwriting forms", cnn_backend_name(b), pn);
  CHECK(np[0] == np[1] && params[0] && params[1] &&
        !memcmp(params[0], params[1], np[0] * sizeof(float)),
        "%s %s: the same parameters with and without the overwriting forms", cnn_backend_name(b),
        pn);
  free(params[0]);
  free(params[1]);
}

/* conv -> bn -> relu -> pool, conv -> bn -> pool (no act), conv -> relu -> pool (no
 * bn), conv -> bn -> leaky -> global pool: each batch norm, and the lone relu, takes
 * its pool in (training) */
static const char *pool_cfg =
    "[net]\nheight=10\nwidth=10\nchannels=2\nbatch=8\n"
    "\n[train]\noptimizer=sgd\nlearning_rate=0.05\nmomentum=0.9\nseed=5\n"
    "\n[convolutional]\nbatch_normalize=1\nfilters=6\nsize=3\npad=1\nactivation=relu\n"
    "\n[maxpool]\nsize=2\nstride=2\n"
    "\n[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\npad=1\nactivation=linear\n"
    "\n[maxpool]\nsize=2\nstride=2\n"
    "\n[convolutional]\nfilters=10\nsize=3\npad=1\nactivation=relu\n"
    "\n[maxpool]\nsize=2\nstride=2\n"
    "\n[convolutional]\nbatch_normalize=1\nfilters=12\nsize=3\npad=1\nactivation=leaky\n"
    "\n[maxpool]\nglobal=1\n"
    "\n[connected]\noutput=5\nactivation=linear\n"
    "\n[softmax]\n";

static cnn_net *pool_net(cnn_backend *b, int fuse, cnn_mode mode, cnn_precision prec) {
  cnn_net *net = NULL;
  CHECK_OK(cnn_net_from_cfg_text(pool_cfg, "pool.cfg", &net));
  if (!net) return NULL;
  CHECK_OK(cnn_net_set_precision(net, b, prec));
  CHECK_OK(cnn_net_set_fusion(net, fuse));
  CHECK_OK(cnn_net_build(net, b, BATCH, mode));
  return net;
}

/* one training run of pool_cfg: losses, parameters, probabilities after it, plan */
typedef struct pool_run {
  double loss[STEPS];
  float *params, probs[BATCH * CLASSES];
  size_t np, act_bytes;
} pool_run;

static int pool_train(cnn_backend *b, int fuse, cnn_precision prec, int frozen, pool_run *r) {
  const char *pn = prec == CNN_PRECISION_BF16 ? "bf16" : "fp32";
  cnn_net *net = pool_net(b, fuse, CNN_MODE_TRAIN, prec);
  if (!net) return 0;
  if (frozen) CHECK_OK(cnn_net_set_frozen(net, 1)); /* conv1 and its bn: running stats */
  cnn_plan_info pi;
  CHECK_OK(cnn_net_plan_info(net, &pi));
  r->act_bytes = pi.activation_bytes;
  char *text = tu_program_text(net, BATCH, CNN_MODE_TRAIN);
  int fw = tu_count(text, "bn_act_pool_fwd"), bw = tu_count(text, "bn_act_pool_bwd");
  int pools = tu_count(text, "maxpool_");
  /* a frozen block has no backward: its pool's backward goes with it */
  CHECK(fuse ? fw == 4 && bw == 4 - frozen && pools == 0
             : fw == 0 && bw == 0 && pools == 8 - frozen,
        "%s %s fuse=%d frozen=%d: %d bn_act_pool_fwd, %d bn_act_pool_bwd, %d maxpool nodes:\n%s",
        cnn_backend_name(b), pn, fuse, frozen, fw, bw, pools, text);
  free(text);
  train(net, r->loss);
  r->params = tu_net_snapshot(net, &r->np);
  /* inference on the trained net: the running statistics inside the fused node */
  CHECK_OK(cnn_net_predict(net, xs[0], NULL, BATCH, r->probs, NULL));
  cnn_net_destroy(net);
  return r->params != NULL;
}

static void pool_compare(const char *what, const pool_run *a, const pool_run *b, double tol) {
  check_losses(what, a->loss, b->loss, tol);
  CHECK(a->np == b->np, "%s: %zu vs %zu parameters", what, a->np, b->np);
  if (a->np == b->np) tu_check_close(what, a->params, b->params, a->np, tol);
  tu_check_close(what, a->probs, b->probs, BATCH * CLASSES, tol);
}

/* fused vs unfused on b, fp32, optionally with the first block frozen */
static void test_bn_pool(cnn_backend *b, int frozen, double *loss_out) {
  char what[160];
  pool_run r[2];
  memset(r, 0, sizeof r);
  if (pool_train(b, 0, CNN_PRECISION_FP32, frozen, &r[0]) &&
      pool_train(b, 1, CNN_PRECISION_FP32, frozen, &r[1])) {
    snprintf(what, sizeof what, "%s: bn + pool fused vs unfused%s", cnn_backend_name(b),
             frozen ? ", first block frozen" : "");
    pool_compare(what, &r[1], &r[0], TOL_FUSED);
    CHECK(r[1].act_bytes < r[0].act_bytes, "%s: fusing the pools plans less activation memory "
          "(%zu vs %zu bytes)", what, r[1].act_bytes, r[0].act_bytes);
    if (loss_out)
      for (int s = 0; s < STEPS; s++) loss_out[s] = r[1].loss[s];
  }
  free(r[0].params);
  free(r[1].params);
}

/* bf16: the fused nodes lowered, cpu against ref. Not against fp32 or unfused bf16:
 * with bf16 conv outputs, rounding ties move pooling argmaxes (seen: 2e-2 loss
 * differences after 6 steps of this small net, either way), so only two runs of the
 * same rounding compare at the bf16 tolerance. */
static void test_bn_pool_bf16(cnn_backend *ref, cnn_backend *cpu) {
  pool_run r[2];
  memset(r, 0, sizeof r);
  if (pool_train(ref, 1, CNN_PRECISION_BF16, 0, &r[0]) &&
      pool_train(cpu, 1, CNN_PRECISION_BF16, 0, &r[1]))
    pool_compare("bn + pool fused, bf16, cpu vs ref", &r[1], &r[0], TOL_BF16);
  free(r[0].params);
  free(r[1].params);
}

/* the last batch of an epoch: fewer images than built */
static void test_partial(cnn_backend *b) {
  double l[2];
  for (int fuse = 0; fuse < 2; fuse++) {
    cnn_net *net = make_net(b, fuse, CNN_MODE_TRAIN);
    if (!net) return;
    cnn_step_result r = {0};
    CHECK_OK(cnn_net_train_step(net, xs[0], ys[0], BATCH, &r));
    CHECK_OK(cnn_net_train_step(net, xs[1], ys[1], 5, &r));
    l[fuse] = r.loss;
    CHECK_OK(cnn_net_train_step(net, xs[2], ys[2], BATCH, &r));
    cnn_net_destroy(net);
  }
  CHECK(fabs(l[0] - l[1]) <= TOL_FUSED * fmax(1, fabs(l[0])) && isfinite(l[0]),
        "%s partial batch: fused %g vs unfused %g", cnn_backend_name(b), l[1], l[0]);
}

int main(void) {
  make_data();
  cnn_backend *ref = NULL, *cpu = NULL;
  CHECK_OK(cnn_backend_create("ref", &ref));
  CHECK_OK(cnn_backend_create("cpu", &cpu));
  if (!ref || !cpu) return tu_finish("test_program");
  double lref[STEPS], lcpu[STEPS], lref2[STEPS];
  test_fused_vs_unfused(ref, lref);
  test_fused_vs_unfused(cpu, lcpu);
  check_losses("cpu vs ref, fused training", lcpu, lref, TOL_CPU_REF);
  /* ref is deterministic: the same run twice is bit-identical */
  cnn_net *a = make_net(ref, 1, CNN_MODE_TRAIN), *b = make_net(ref, 1, CNN_MODE_TRAIN);
  if (a && b) {
    train(a, lref);
    train(b, lref2);
    CHECK(!memcmp(lref, lref2, sizeof lref), "ref: identical losses from the same seed");
    size_t n1, n2;
    float *p1 = tu_net_snapshot(a, &n1), *p2 = tu_net_snapshot(b, &n2);
    CHECK(n1 == n2 && !memcmp(p1, p2, n1 * sizeof *p1), "ref: identical parameters");
    free(p1);
    free(p2);
  }
  cnn_net_destroy(a);
  cnn_net_destroy(b);
  test_program_text(cpu);
  test_refused(ref);
  test_refused(cpu);
  test_partial(ref);
  test_partial(cpu);
  test_first_writers(ref, CNN_PRECISION_FP32);
  test_first_writers(cpu, CNN_PRECISION_FP32);
  test_first_writers(ref, CNN_PRECISION_BF16);
  test_first_writers(cpu, CNN_PRECISION_BF16);
  double pref[STEPS], pcpu[STEPS];
  test_bn_pool(ref, 0, pref);
  test_bn_pool(cpu, 0, pcpu);
  check_losses("bn + pool fused, cpu vs ref", pcpu, pref, TOL_CPU_REF);
  test_bn_pool(ref, 1, NULL);
  test_bn_pool(cpu, 1, NULL);
  test_bn_pool_bf16(ref, cpu);
  test_no_host_sync(cpu);
  test_cast_values(ref);
  test_cast_values(cpu);
  test_bf16_output(ref);
  test_bf16_output(cpu);
  double b16ref[STEPS], b16cpu[STEPS];
  test_bf16(ref, b16ref);
  test_bf16(cpu, b16cpu);
  check_losses("bf16 training, cpu vs ref", b16cpu, b16ref, TOL_BF16);
  cnn_backend_destroy(ref);
  cnn_backend_destroy(cpu);
  return tu_finish("test_program");
}
