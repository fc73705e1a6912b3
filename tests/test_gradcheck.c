/* Every layer kind's backward checked against central differences on the `ref`
 * backend. Each case is a tiny net written as cfg text:
 *
 *   [net] (5x6x3 unless said) -> [convolutional] 6 3x3 with bias, linear
 *        -> the layer(s) under test -> [connected] output=4 -> [softmax]
 *
 * so that gradients reach a parameterised layer *before* the tested one (its
 * input gradient is checked through that layer's weights) and one after it. The
 * net is built for training, given random images and labels, and
 * cnn_net_loss_grad(..., do_backward=1) gives every parameter gradient; each is
 * compared with central differences of L = cnn_net_loss_grad(..., 0)'s loss
 * (a double), p moved by +-h.
 * Tensors of at most SAMPLE_ALL entries are checked entry by entry, larger ones
 * at SAMPLE seeded random entries.
 *
 * Step, estimate and tolerance. ref runs the forward in float with double
 * accumulators, so L carries a rounding error of a few float ulps of |L| (L is
 * 1..6 here: ~1e-7..1e-6 per evaluation). The numeric derivative is Richardson's
 * extrapolation of central differences at h and h/2, (4 D(h/2) - D(h)) / 3,
 * which cancels the h^2 truncation term (batch norm over 3 rows is curved
 * enough for plain central differences at h = 1e-2 to be off by 3 %); its
 * rounding error is about 3 x (error of L) / 2h, 1.5e-5..1.5e-4 at h = 1e-2
 * (measured: mostly below 3e-5). The check follows Caffe's,
 *     |a - n| <= TOL * max(|a|, |n|, FLOOR * H / h),   TOL = 1e-2, FLOOR = 1e-2,
 * but with a floor of 1e-2 instead of Caffe's 1: gradients here are 1e-3..1e-1
 * and Caffe's floor would let a gradient off by a factor of two pass. So it is
 * a 1 % relative error for gradients above 1e-2 and 1e-4 absolute below, at
 * H = 1e-2 (the floor grows as 1/h with the rounding noise when the step is
 * reduced). Over 8 seeds of all cases the worst scaled error was 7e-3; scaling
 * every analytic gradient by 1.02, or adding 2e-4 to it, fails every case.
 *
 * Kinks (ReLU and leaky at 0, max-pool argmax changes) are detected rather than
 * hoped away: a fingerprint of every ReLU sign and max-pool argmax is taken at
 * the base point and at each perturbed point. When one side of p crosses a
 * kink, the other side's one-sided Richardson estimate, 2 D(h/2) - D(h), is
 * used; when both do, the step shrinks to h/3, then h/10; an entry with kinks
 * on both sides even at h/10 is skipped and counted (at most a quarter of a
 * case's entries may be). Dropout's mask depends on (seed, step, layer) and
 * cnn_net_loss_grad does not advance the step, so every L sees the same mask. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn/cnn.h"
#include "core/net.h"
#include "core/rng.h"
#include "testutil.h"

#define H 1e-2
#define TOL 1e-2
#define FLOOR 1e-2
#define SAMPLE_ALL 40
#define SAMPLE 30
#define BATCH 3

static cnn_backend *ref;

/* L at the current parameters */
static double loss_at(cnn_net *net, const float *x, const int32_t *y) {
  cnn_step_result r = {0};
  cnn_status st = cnn_net_loss_grad(net, x, y, BATCH, 0, &r);
  if (st != CNN_OK) { /* counted only when it fails: loss_at runs thousands of times */
    CHECK(st == CNN_OK, "loss_grad: %s", cnn_last_error());
    return NAN;
  }
  return r.loss;
}

static float get_param(cnn_net *net, size_t at) {
  float v = NAN;
  CHECK_OK(net->b->ops->download(net->b->ctx, &v, net->params + at, sizeof v));
  return v;
}

static void set_param(cnn_net *net, size_t at, float v) {
  CHECK_OK(net->b->ops->upload(net->b->ctx, net->params + at, &v, sizeof v));
}

/* A fingerprint of every discrete decision the forward made: the sign of each
 * ReLU / leaky input and the argmax of each max-pool window (first maximum in
 * (r, s) order, padding excluded, as backend.h specifies). Two forwards with the
 * same fingerprint lie on the same smooth piece of L; a perturbation that
 * changes it crossed a kink. ref buffers are host memory, and in training mode
 * every activation stays live after the forward. */
static uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3ull; }

static uint64_t kink_signature(const cnn_net *net) {
  uint64_t sig = 0xcbf29ce484222325ull;
  for (int li = 0; li < net->n_layers; li++) {
    const cnn_layer *l = &net->layers[li];
    const float *x = cnn_layer_x(net, l, 0);
    if (l->kind == &cnn_kind_act &&
        (l->act == CNN_ACT_RELU || l->act == CNN_ACT_LEAKY || l->act == CNN_ACT_RAMP ||
         l->act == CNN_ACT_RELU6)) {
      size_t n = (size_t)BATCH * cnn_shape_count(l->out);
      for (size_t i = 0; i < n; i++) sig = mix(sig, (uint64_t)(x[i] > 0) + (x[i] >= 6));
    } else if (l->kind == &cnn_kind_maxpool) {
      cnn_pool_desc d = cnn_layer_pool_desc(l, BATCH);
      for (int b = 0; b < d.n; b++)
        for (int oy = 0; oy < d.oh; oy++)
          for (int ox = 0; ox < d.ow; ox++)
            for (int ch = 0; ch < d.c; ch++) {
              long best = -1;
              float bv = 0;
              for (int r = 0; r < d.kh; r++)
                for (int q = 0; q < d.kw; q++) {
                  int iy = oy * d.stride_h - d.pad_h + r, ix = ox * d.stride_w - d.pad_w + q;
                  if (iy < 0 || iy >= d.h || ix < 0 || ix >= d.w) continue;
                  long at = (((long)b * d.h + iy) * d.w + ix) * d.c + ch;
                  if (best < 0 || x[at] > bv) best = at, bv = x[at];
                }
              sig = mix(sig, (uint64_t)best);
            }
    }
  }
  return sig;
}

/* L at p0 + d for the parameter at flat offset `at`; *dd: the step actually taken
 * (after float rounding); *kink |= that point lies on another smooth piece than
 * the base point (signature sig0) */
static double loss_step(cnn_net *net, size_t at, float p0, double d, const float *x,
                        const int32_t *y, uint64_t sig0, double *dd, int *kink) {
  float p = (float)(p0 + d);
  set_param(net, at, p);
  double l = loss_at(net, x, y);
  *kink |= kink_signature(net) != sig0;
  set_param(net, at, p0);
  *dd = (double)p - (double)p0;
  return l;
}

/* dL/dp at flat offset `at` by Richardson extrapolation over steps h and h/2:
 * central, (4 D(h/2) - D(h)) / 3, which cancels the h^2 error term; or, when one
 * side crosses a kink, one-sided on the other, 2 D(h/2) - D(h), which cancels
 * the h term. *kink: both sides cross one (no estimate). */
static double numeric(cnn_net *net, size_t at, double h, const float *x, const int32_t *y,
                      double l0, uint64_t sig0, int *kink) {
  float p0 = get_param(net, at);
  int kp = 0, km = 0;
  double dp1, dp2, dm1, dm2;
  double lp1 = loss_step(net, at, p0, h, x, y, sig0, &dp1, &kp);
  double lp2 = loss_step(net, at, p0, h / 2, x, y, sig0, &dp2, &kp);
  double lm1 = loss_step(net, at, p0, -h, x, y, sig0, &dm1, &km);
  double lm2 = loss_step(net, at, p0, -h / 2, x, y, sig0, &dm2, &km);
  *kink = kp && km;
  if (!kp && !km) {
    double d1 = (lp1 - lm1) / (dp1 - dm1), d2 = (lp2 - lm2) / (dp2 - dm2);
    return (4 * d2 - d1) / 3;
  }
  if (!kp) return 2 * (lp2 - l0) / dp2 - (lp1 - l0) / dp1;
  return 2 * (lm2 - l0) / dm2 - (lm1 - l0) / dm1;
}

/* |a - n| / max(|a|, |n|, floor), the floor growing as 1/h like the rounding noise */
static double scaled_err(double a, double n, double h) {
  double s = fmax(fmax(fabs(a), fabs(n)), FLOOR * H / h);
  return fabs(a - n) / s;
}

/* cfg text: [net] h x w x c, the base conv, `body`, the dense head and softmax,
 * then `extra` (e.g. a [train] section) */
static int no_base_conv; /* 1: the tested layer reads the net input itself */

static char *make_cfg(int h, int w, int c, const char *body, const char *extra) {
  size_t n = strlen(body) + strlen(extra) + 512;
  char *s = malloc(n);
  snprintf(s, n,
           "[net]\nheight=%d\nwidth=%d\nchannels=%d\nbatch=%d\n\n"
           "%s"
           "%s\n"
           "[connected]\noutput=4\nactivation=linear\n\n[softmax]\n\n%s",
           h, w, c, BATCH,
           no_base_conv ? ""
                        : "[convolutional]\nfilters=6\nsize=3\nstride=1\npad=1\nactivation=linear\n\n",
           body, extra);
  return s;
}

static uint64_t case_seed = 1000;

/* Build the net of `cfg`, check every trainable tensor. min_tensors: the number
 * of trainable tensors the case must have (guards against a cfg that silently
 * lost its tested layer). */
static void run_case(const char *name, int h, int w, int c, const char *body, const char *extra,
                     int min_tensors) {
  char *cfg = make_cfg(h, w, c, body, extra);
  cnn_net *net = NULL;
  cnn_status st = cnn_net_from_cfg_text(cfg, name, &net);
  CHECK(st == CNN_OK, "%s: cfg: %s", name, cnn_last_error());
  free(cfg);
  if (st != CNN_OK) return;
  st = cnn_net_build(net, ref, BATCH, CNN_MODE_TRAIN);
  CHECK(st == CNN_OK, "%s: build: %s", name, cnn_last_error());
  if (st != CNN_OK) {
    cnn_net_destroy(net);
    return;
  }
  uint64_t seed = ++case_seed;
  size_t nx = (size_t)BATCH * h * w * c;
  float *x = malloc(nx * sizeof *x);
  tu_fill_uniform(x, nx, -1.0f, 1.0f, seed);
  int classes = cnn_net_classes(net);
  int32_t y[BATCH];
  for (int i = 0; i < BATCH; i++) y[i] = (int32_t)(cnn_rng_u64(seed, 1u << 20 | i) % classes);

  cnn_step_result r0 = {0};
  st = cnn_net_loss_grad(net, x, y, BATCH, 1, &r0);
  CHECK(st == CNN_OK, "%s: loss_grad: %s", name, cnn_last_error());
  float *grads = malloc((net->n_params ? net->n_params : 1) * sizeof *grads);
  CHECK_OK(net->b->ops->download(net->b->ctx, grads, net->grads, net->n_params * sizeof *grads));
  /* parameter gradients are overwritten, not accumulated, by a second backward */
  float *again = malloc((net->n_params ? net->n_params : 1) * sizeof *again);
  CHECK_OK(cnn_net_loss_grad(net, x, y, BATCH, 1, NULL));
  CHECK_OK(net->b->ops->download(net->b->ctx, again, net->grads, net->n_params * sizeof *again));
  CHECK(!memcmp(grads, again, net->n_params * sizeof *again),
        "%s: a second backward gives the same gradients", name);
  free(again);
  /* L itself must be reproducible (the difference quotient relies on it) */
  double l0 = loss_at(net, x, y);
  CHECK(l0 == r0.loss, "%s: loss is reproducible (%.17g vs %.17g)", name, l0, r0.loss);

  uint64_t sig0 = kink_signature(net); /* the forward above ran at the base point */
  int n_trainable = 0, checked = 0, failed = 0, smaller = 0, skipped = 0;
  double worst = 0;
  char worst_where[160] = "";
  for (int t = 0; t < net->n_tensors; t++) {
    const cnn_tensor_entry *te = &net->tensors[t];
    if (!te->trainable) continue;
    n_trainable++;
    size_t m = te->count <= SAMPLE_ALL ? te->count : SAMPLE;
    for (size_t k = 0; k < m; k++) {
      size_t i = te->count <= SAMPLE_ALL ? k : (size_t)(cnn_rng_u64(seed + t, k) % te->count);
      size_t at = te->offset + i;
      double a = grads[at], hh = H, num = 0;
      int kink = 1;
      /* a ReLU sign or max-pool argmax flipped within the step: step closer in */
      for (int rung = 0; rung < 3 && kink; rung++) {
        hh = H / (rung == 0 ? 1 : rung == 1 ? 3 : 10);
        num = numeric(net, at, hh, x, y, l0, sig0, &kink);
      }
      if (kink) {
        skipped++;
        continue;
      }
      if (hh < H) smaller++;
      double e = scaled_err(a, num, hh);
      if (!(e <= TOL)) {
        failed++;
        fprintf(stderr, "  %s: %s[%zu]: analytic %.6g, numeric %.6g (h=%g), scaled err %.3g\n",
                name, te->name, i, a, num, hh, e);
      }
      if (e > worst || isnan(e)) {
        worst = e;
        snprintf(worst_where, sizeof worst_where, "%s[%zu] a=%.4g n=%.4g", te->name, i, a, num);
      }
      checked++;
    }
  }
  /* the restored parameters give the same loss (set/restore is exact) */
  double l1 = loss_at(net, x, y);
  CHECK(l1 == l0, "%s: parameters restored (%.17g vs %.17g)", name, l1, l0);
  CHECK(n_trainable >= min_tensors, "%s: %d trainable tensors, expected >= %d", name,
        n_trainable, min_tensors);
  CHECK(failed == 0, "%s: %d of %d gradient entries disagree with central differences", name,
        failed, checked);
  CHECK(checked >= 3 * (checked + skipped) / 4, "%s: %d entries checked, %d skipped at kinks",
        name, checked, skipped);
  printf("%-26s %s L=%.5f %3d entries in %d tensors, worst scaled err %.2e (%s)", name,
         failed ? "FAIL" : "ok  ", l0, checked, n_trainable, worst, worst_where);
  if (smaller) printf(", %d at h/3 or h/10", smaller);
  if (skipped) printf(", %d skipped (kink within h/10)", skipped);
  printf("\n");
  free(grads);
  free(x);
  cnn_net_destroy(net);
}

/* conv(6) -> X: the base conv's weight and bias, plus the tested layer's */
#define CONV_BODY(extra) "[convolutional]\nfilters=4\nsize=3\nactivation=linear\n" extra

int main(void) {
  CHECK_OK(cnn_backend_create("ref", &ref));
  if (!ref) return tu_finish("test_gradcheck");
  printf("central differences, h=%g, |a-n| <= %g * max(|a|,|n|,%g); batch %d on ref\n", H, TOL,
         FLOOR, BATCH);

  /* ---- convolution ---- (tensors: base w,b; tested w[,b]; dense w,b) */
  run_case("conv 3x3 pad 1", 5, 6, 3, CONV_BODY("pad=1\n"), "", 6);
  run_case("conv 3x3 stride 2", 5, 6, 3, CONV_BODY("pad=1\nstride=2\n"), "", 6);
  run_case("conv stride 2x1", 5, 6, 3, CONV_BODY("pad=1\nstride_y=2\nstride_x=1\n"), "", 6);
  run_case("conv dilation 2", 5, 6, 3, CONV_BODY("pad=1\ndilation=2\n"), "", 6);
  run_case("conv 1x3 kernel", 5, 6, 3,
           "[convolutional]\nfilters=4\nsize_y=1\nsize_x=3\npadding=1\nactivation=linear\n", "", 6);
  run_case("conv groups 3", 5, 6, 3,
           "[convolutional]\nfilters=9\nsize=3\npad=1\ngroups=3\nactivation=linear\n", "", 6);
  run_case("conv depthwise", 5, 6, 3,
           "[convolutional]\nfilters=6\nsize=3\npad=1\ngroups=6\nactivation=linear\n", "", 6);
  run_case("conv padding=same s2", 5, 6, 3, CONV_BODY("padding=same\nstride=2\n"), "", 6);
  run_case("conv padding=same 4x4", 5, 6, 3,
           "[convolutional]\nfilters=4\nsize=4\npadding=same\nactivation=linear\n", "", 6);
  run_case("conv no bias", 5, 6, 3, CONV_BODY("pad=1\nbias=0\n"), "", 5);
  run_case("conv 1x1", 5, 6, 3, "[convolutional]\nfilters=5\nsize=1\nactivation=linear\n", "", 6);

  /* ---- batch norm ---- */
  run_case("conv batch_normalize", 5, 6, 3, CONV_BODY("pad=1\nbatch_normalize=1\n"), "", 7);
  run_case("[batchnorm]", 5, 6, 3, "[batchnorm]\n", "", 6);
  no_base_conv = 1; /* batch norm on the net input (no input gradient to write) */
  run_case("[batchnorm] on the input", 5, 6, 3, "[batchnorm]\n", "", 4);
  no_base_conv = 0;
  run_case("conv bn leaky", 5, 6, 3,
           "[convolutional]\nfilters=4\nsize=3\npad=1\nbatch_normalize=1\nactivation=leaky\n", "",
           7);

  /* ---- dense ---- */
  run_case("dense", 5, 6, 3, "[connected]\noutput=5\nactivation=linear\n", "", 6);
  run_case("dense no bias tanh", 5, 6, 3, "[connected]\noutput=5\nbias=0\nactivation=tanh\n", "",
           5);
  run_case("dense batch_normalize", 5, 6, 3,
           "[connected]\noutput=5\nbatch_normalize=1\nactivation=linear\n", "", 7);

  /* ---- pooling ---- */
  run_case("maxpool 2/2 (pad 1)", 5, 6, 3, "[maxpool]\nsize=2\nstride=2\n", "", 4);
  run_case("maxpool 3/1 (pad 2)", 5, 6, 3, "[maxpool]\nsize=3\nstride=1\n", "", 4);
  run_case("maxpool 3/2 padding=0", 5, 6, 3, "[maxpool]\nsize=3\nstride=2\npadding=0\n", "", 4);
  run_case("maxpool global", 5, 6, 3, "[maxpool]\nglobal=1\n", "", 4);
  run_case("avgpool global", 5, 6, 3, "[avgpool]\n", "", 4);
  run_case("avgpool 2/2", 5, 6, 3, "[avgpool]\nsize=2\nstride=2\n", "", 4);
  run_case("avgpool 3/2 padding=2", 5, 6, 3, "[avgpool]\nsize=3\nstride=2\npadding=2\n", "", 4);

  /* ---- activations (as [activation] sections, and fused in a conv) ---- */
  run_case("relu", 5, 6, 3, "[activation]\nactivation=relu\n", "", 4);
  run_case("leaky", 5, 6, 3, "[activation]\nactivation=leaky\n", "", 4);
  run_case("gelu", 5, 6, 3, "[activation]\nactivation=gelu\n", "", 4);
  run_case("logistic", 5, 6, 3, "[activation]\nactivation=logistic\n", "", 4);
  run_case("tanh", 5, 6, 3, "[activation]\nactivation=tanh\n", "", 4);
  run_case("ramp", 5, 6, 3, "[activation]\nactivation=ramp\n", "", 4);
  run_case("relu6", 5, 6, 3, "[activation]\nactivation=relu6\n", "", 4);
  /* MobileNetV2's depthwise block: grouped conv + batch norm + relu6 */
  run_case("depthwise conv bn relu6", 5, 6, 4,
           "[convolutional]\nfilters=6\nsize=3\npad=1\ngroups=6\nbatch_normalize=1\n"
           "activation=relu6\n", "", 7);
  run_case("conv relu", 5, 6, 3,
           "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=relu\n", "", 6);
  run_case("conv gelu", 5, 6, 3,
           "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=gelu\n", "", 6);
  run_case("conv logistic (default)", 5, 6, 3, "[convolutional]\nfilters=4\nsize=3\npad=1\n", "", 6);

  /* ---- dropout (fixed mask: the step does not advance) ---- */
  run_case("dropout 0.3", 5, 6, 3, "[dropout]\nprobability=0.3\n", "", 4);

  /* ---- shortcut: the base conv feeds both the second conv and the shortcut,
   * so its gradient is the sum of two paths ---- */
  run_case("shortcut same shape", 5, 6, 3,
           "[convolutional]\nfilters=6\nsize=3\npad=1\nactivation=tanh\n"
           "[shortcut]\nfrom=-2\nactivation=linear\n", "", 6);
  run_case("shortcut + leaky", 5, 6, 3,
           "[convolutional]\nfilters=6\nsize=3\npad=1\nactivation=linear\n"
           "[shortcut]\nfrom=-2\nactivation=leaky\n", "", 6);
  /* Darknet's different shapes: 6x6x6 added into a strided 3x3x8 (stride 2,
   * common channels 6), and 3x3x4 added into 6x6x6 (sample 2, channels 4) */
  run_case("shortcut 6x6x6 -> 3x3x8", 6, 6, 3,
           "[convolutional]\nfilters=8\nsize=3\npad=1\nstride=2\nactivation=linear\n"
           "[shortcut]\nfrom=-2\n", "", 6);
  run_case("shortcut 3x3x4 -> 6x6x6", 6, 6, 3,
           "[convolutional]\nfilters=4\nsize=3\npad=1\nstride=2\nactivation=linear\n"
           "[route]\nlayers=-2\n" /* the base conv's 6x6x6 again */
           "[shortcut]\nfrom=-2\n", "", 6);
  /* a layer added to itself: both inputs of one layer are the same producer */
  run_case("shortcut from=-1 (x + x)", 5, 6, 3,
           "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=tanh\n"
           "[shortcut]\nfrom=-1\n", "", 6);

  /* ---- route: concatenation of two layers; the base conv again has two
   * consumers ---- */
  run_case("route -1,-2", 5, 6, 3,
           "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=linear\n"
           "[route]\nlayers=-1,-2\n", "", 6);
  run_case("route one layer", 5, 6, 3,
           "[convolutional]\nfilters=4\nsize=1\nactivation=linear\n"
           "[route]\nlayers=-2\n"
           "[convolutional]\nfilters=4\nsize=1\nactivation=linear\n"
           "[route]\nlayers=-1,-3\n", "", 8);

  /* ---- Darknet's crop (the training window is fixed: the step does not advance)
   * and reorg in each mode; the base conv's gradient goes through them ---- */
  run_case("crop 3x4 flip", 5, 6, 3, "[crop]\ncrop_height=3\ncrop_width=4\nflip=1\n", "", 4);
  run_case("crop noadjust shift", 5, 6, 3,
           "[crop]\ncrop_height=4\ncrop_width=5\nflip=1\nnoadjust=1\nshift=0.2\n", "", 4);
  run_case("crop between convs", 6, 6, 3,
           "[crop]\ncrop_height=5\ncrop_width=4\nflip=1\n" CONV_BODY("pad=1\n"), "", 6);
  run_case("reorg /2", 4, 6, 3,
           "[convolutional]\nfilters=8\nsize=1\nactivation=linear\n[reorg]\nstride=2\n", "", 6);
  run_case("reorg /2 reverse", 4, 6, 3,
           "[convolutional]\nfilters=8\nsize=1\nactivation=linear\n[reorg]\nstride=2\nreverse=1\n",
           "", 6);
  run_case("reorg flatten", 4, 6, 3, "[reorg]\nflatten=1\n", "", 4);
  run_case("reorg flatten reverse /2", 4, 6, 3,
           "[convolutional]\nfilters=8\nsize=1\nactivation=linear\n"
           "[reorg]\nstride=2\nflatten=1\nreverse=1\n", "", 6);
  run_case("reorg extra=3", 4, 6, 3, "[reorg]\nextra=3\n", "", 4);

  /* ---- flatten ---- */
  run_case("flatten", 5, 6, 3, "[flatten]\n", "", 4);

  /* ---- softmax temperature (extra lands in the [softmax] section) ---- */
  run_case("softmax temperature 4", 5, 6, 3, "[maxpool]\nsize=2\nstride=2\n", "temperature=4\n", 4);

  /* ---- label smoothing in the loss ---- */
  run_case("label_smoothing 0.1", 5, 6, 3, "[maxpool]\nsize=2\nstride=2\n",
           "[train]\nlabel_smoothing=0.1\n", 4);
  run_case("label_smoothing + dropout", 5, 6, 3,
           "[dropout]\nprobability=0.3\n[connected]\noutput=6\nactivation=gelu\n",
           "[train]\nlabel_smoothing=0.1\n", 6);

  cnn_backend_destroy(ref);
  return tu_finish("test_gradcheck");
}
