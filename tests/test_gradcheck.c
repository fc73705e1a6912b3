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
 * compared with (L(p+h) - L(p-h)) / 2h, L = cnn_net_loss_grad(..., 0)'s loss.
 * Tensors of at most SAMPLE_ALL entries are checked entry by entry, larger ones
 * at SAMPLE seeded random entries.
 *
 * Step and tolerance. ref runs the forward in float with double accumulators,
 * so L carries a rounding error of a few float ulps of |L| (~1.4 here): about
 * 1e-7 per evaluation, i.e. ~1e-5 in a quotient over 2h = 2e-2. The truncation
 * error of the central difference is h^2/6 |L'''| ~ 2e-5 |L'''| at h = 1e-2.
 * Both stay far below the tolerance, which follows Caffe's checker,
 *     |a - n| <= TOL * max(|a|, |n|, FLOOR)
 * but with a floor of 1e-2 instead of Caffe's 1: gradients here are 1e-3..1e-1,
 * and Caffe's floor of 1 would let a gradient off by a factor of two pass. With
 * TOL = 1e-2 the check is a 1 % relative error for gradients above 1e-2 and an
 * absolute error of 1e-4 below, still >= 5x the noise estimate above.
 *
 * Kinks (ReLU at 0, max-pool ties, dropout is a fixed mask) are avoided by
 * random data: a perturbation of 1e-2 can move a pre-activation across 0. When
 * an entry fails at h it is re-measured at h/10, where a kink crossing is 10x
 * less likely (noise 10x larger, still under the tolerance); the entry passes
 * only if that agrees, and such re-measured entries are counted in the output.
 * Dropout's mask depends on (seed, step, layer) and cnn_net_loss_grad does not
 * advance the step, so every L evaluation sees the same mask. */
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
  if (st != CNN_OK) {
    fprintf(stderr, "loss_grad failed: %s\n", cnn_last_error());
    return NAN;
  }
  return r.loss;
}

static float get_param(cnn_net *net, size_t at) {
  float v;
  net->b->ops->download(net->b->ctx, &v, net->params + at, sizeof v);
  return v;
}

static void set_param(cnn_net *net, size_t at, float v) {
  net->b->ops->upload(net->b->ctx, net->params + at, &v, sizeof v);
}

/* numeric dL/dp at flat offset `at` with step h (the steps actually taken, after
 * float rounding of p +- h, are used as the denominator) */
static double numeric(cnn_net *net, size_t at, double h, const float *x, const int32_t *y) {
  float p0 = get_param(net, at);
  float pp = (float)(p0 + h), pm = (float)(p0 - h);
  set_param(net, at, pp);
  double lp = loss_at(net, x, y);
  set_param(net, at, pm);
  double lm = loss_at(net, x, y);
  set_param(net, at, p0);
  return (lp - lm) / ((double)pp - (double)pm);
}

static double scaled_err(double a, double n) {
  double s = fmax(fmax(fabs(a), fabs(n)), FLOOR);
  return fabs(a - n) / s;
}

/* cfg text: [net] h x w x c, the base conv, `body`, the dense head and softmax,
 * then `extra` (e.g. a [train] section) */
static char *make_cfg(int h, int w, int c, const char *body, const char *extra) {
  size_t n = strlen(body) + strlen(extra) + 512;
  char *s = malloc(n);
  snprintf(s, n,
           "[net]\nheight=%d\nwidth=%d\nchannels=%d\nbatch=%d\n\n"
           "[convolutional]\nfilters=6\nsize=3\nstride=1\npad=1\nactivation=linear\n\n"
           "%s\n"
           "[connected]\noutput=4\nactivation=linear\n\n[softmax]\n\n%s",
           h, w, c, BATCH, body, extra);
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
  net->b->ops->download(net->b->ctx, grads, net->grads, net->n_params * sizeof *grads);
  /* L itself must be reproducible (the difference quotient relies on it) */
  double l0 = loss_at(net, x, y);
  CHECK(l0 == r0.loss, "%s: loss is reproducible (%.17g vs %.17g)", name, l0, r0.loss);

  int n_trainable = 0, checked = 0, failed = 0, remeasured = 0;
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
      double a = grads[at];
      double num = numeric(net, at, H, x, y);
      double e = scaled_err(a, num);
      if (!(e <= TOL)) { /* a kink between p-h and p+h? measure again closer in */
        double num2 = numeric(net, at, H / 10, x, y);
        double e2 = scaled_err(a, num2);
        remeasured++;
        if (e2 <= TOL) {
          e = e2;
          num = num2;
        } else {
          failed++;
          fprintf(stderr, "  %s: %s[%zu]: analytic %.6g, numeric %.6g (h=%g), %.6g (h=%g)\n",
                  name, te->name, i, a, num, H, num2, H / 10);
        }
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
  printf("%-26s %s L=%.5f %3d entries in %d tensors, worst scaled err %.2e (%s)", name,
         failed ? "FAIL" : "ok  ", l0, checked, n_trainable, worst, worst_where);
  if (remeasured) printf(", %d re-measured at h/10", remeasured);
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

  /* ---- flatten ---- */
  run_case("flatten", 5, 6, 3, "[flatten]\n", "", 4);

  /* ---- label smoothing in the loss ---- */
  run_case("label_smoothing 0.1", 5, 6, 3, "[maxpool]\nsize=2\nstride=2\n",
           "[train]\nlabel_smoothing=0.1\n", 4);
  run_case("label_smoothing + dropout", 5, 6, 3,
           "[dropout]\nprobability=0.3\n[connected]\noutput=6\nactivation=gelu\n",
           "[train]\nlabel_smoothing=0.1\n", 6);

  cnn_backend_destroy(ref);
  return tu_finish("test_gradcheck");
}
