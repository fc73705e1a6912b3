/* Checks the `ref` backend, the oracle every other backend is compared with,
 * against small cases worked out by hand or by an independent formula (adjoint
 * identities, finite differences, per-group decomposition). ref memory is host
 * memory, so plain arrays are passed to the ops. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/rng.h"
#include "testutil.h"

static const cnn_backend_ops *B; /* the ref op table */

#define TOL 1e-6 /* hand cases: float rounding only */

static void check_val(const char *what, float got, double want, double tol) {
  float w = (float)want;
  tu_check_close(what, &got, &w, 1, tol);
}

static double dot(const float *a, const float *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

static void zero(float *x, size_t n) { memset(x, 0, n * sizeof *x); }

/* ---- memory ---- */

static void test_memory(cnn_backend *be) {
  void *p = NULL, *q = NULL;
  CHECK_OK(B->alloc(be->ctx, 1000, &p));
  CHECK(p && (uintptr_t)p % 256 == 0, "alloc is 256-byte aligned (%p)", p);
  CHECK_OK(B->alloc(be->ctx, 0, &q));
  CHECK(q != NULL, "zero-byte alloc gives a freeable pointer");
  float host[4] = {1, 2, 3, 4}, back[4] = {0};
  CHECK_OK(B->upload(be->ctx, p, host, sizeof host));
  CHECK_OK(B->copy(be->ctx, (char *)p + 256, p, sizeof host));
  CHECK_OK(B->download(be->ctx, back, (char *)p + 256, sizeof back));
  CHECK_OK(B->sync(be->ctx));
  tu_check_close("upload/copy/download round trip", back, host, 4, 0);
  B->free(be->ctx, p);
  B->free(be->ctx, q);
  CHECK(B->conv_workspace(be->ctx, NULL) == 0, "ref needs no conv workspace");
}

static void test_null_args(void) {
  float x[4] = {0};
  CHECK(B->fill(NULL, NULL, 4, 1.0f) == CNN_ERR_ARG, "fill NULL");
  CHECK(B->add(NULL, 4, x, NULL, x) == CNN_ERR_ARG, "add NULL b");
  CHECK(strstr(cnn_last_error(), "add") != NULL, "message names the op: %s", cnn_last_error());
  CHECK(B->gemm(NULL, 0, 0, 1, 1, 1, 1, NULL, 1, x, 1, 0, x, 1) == CNN_ERR_ARG, "gemm NULL a");
  CHECK(B->gemm(NULL, 0, 0, 2, 2, 2, 1, x, 1, x, 2, 0, x, 2) == CNN_ERR_ARG, "gemm lda < k");
  cnn_conv_desc d = {1, 2, 2, 3, 2, 1, 1, 2, 2, 1, 1, 0, 0, 1, 1, 2, CNN_MATH_F32, 0}; /* c=3, groups=2 */
  CHECK(B->conv_fwd(NULL, &d, x, x, NULL, x, NULL, 0) == CNN_ERR_ARG, "groups must divide c");
  int32_t bad_label = 5;
  CHECK(B->softmax_xent_fwd(NULL, 1, 4, x, &bad_label, 0, x, x) == CNN_ERR_ARG,
        "label out of range");
  CHECK(B->adam_step(NULL, 1, x, x, x, x, 0.1f, 0.9f, 0.999f, 1e-8f, 0, 0, 0) == CNN_ERR_ARG,
        "adam step 0");
  CHECK(B->dropout_mask(NULL, 4, 1.5f, 1, 0, x) == CNN_ERR_ARG, "dropout p > 1");

  /* step-program ops: the step state is required wherever the op reads or writes it */
  cnn_step_state st;
  memset(&st, 0, sizeof st);
  int32_t label = 1;
  CHECK(B->step_end(NULL, NULL, 1) == CNN_ERR_ARG, "step_end NULL state");
  CHECK(B->check_finite(NULL, 4, x, NULL) == CNN_ERR_ARG, "check_finite NULL state");
  CHECK(B->softmax_xent_step(NULL, 1, 4, x, 1, &label, 0, x, x, NULL, 1, NULL) == CNN_ERR_ARG,
        "softmax_xent_step with labels needs the state");
  CHECK_OK(B->softmax_xent_step(NULL, 1, 4, x, 1, NULL, 0, x, NULL, NULL, 1, NULL));
  CHECK(B->sgd_step_st(NULL, 4, x, x, x, 0.9f, 0, 0, NULL) == CNN_ERR_ARG, "sgd_step_st NULL st");
  CHECK(B->bn_commit(NULL, 4, 0, 0.1f, x, x, x, x, &st) == CNN_ERR_ARG, "bn_commit of 0 rows");
  CHECK(B->bn_act_fwd_train(NULL, 1, 4, x, x, x, 1e-5f, CNN_ACT_COUNT, 0, x, x, x, x) ==
            CNN_ERR_ARG, "bn_act_fwd_train unknown activation");
  CHECK(B->add_act_bwd(NULL, 4, x, x, CNN_ACT_GELU, 0, x, x) == CNN_ERR_ARG,
        "add_act_bwd GELU");
  CHECK_OK(B->add_act_bwd(NULL, 4, x, x, CNN_ACT_TANH, 0, NULL, NULL));
  CHECK(B->capture_begin == NULL && B->graph_launch == NULL, "ref has no CUDA graphs");
}

/* ---- elementwise ---- */

static void test_elementwise(void) {
  float a[3] = {1, -2, 3}, b[3] = {0.5f, 4, -1}, y[3];
  tu_poison(y, 3);
  CHECK_OK(B->axpby(NULL, 3, 2.0f, a, 0.0f, y)); /* beta 0: NaN in y must not leak */
  float want1[3] = {2, -4, 6};
  tu_check_close("axpby beta=0 ignores NaN y", y, want1, 3, TOL);
  CHECK_OK(B->axpby(NULL, 3, 1.0f, b, 0.5f, y));
  float want2[3] = {1.5f, 2, 2};
  tu_check_close("axpby", y, want2, 3, TOL);
  CHECK_OK(B->add(NULL, 3, a, b, y));
  float want3[3] = {1.5f, 2, 2};
  tu_check_close("add", y, want3, 3, TOL);
  tu_poison(y, 3);
  CHECK_OK(B->mul(NULL, 3, a, b, 0.0f, y));
  float want4[3] = {0.5f, -8, -3};
  tu_check_close("mul beta=0", y, want4, 3, TOL);
  CHECK_OK(B->mul(NULL, 3, a, b, 1.0f, y));
  float want5[3] = {1, -16, -6};
  tu_check_close("mul beta=1", y, want5, 3, TOL);
  CHECK_OK(B->fill(NULL, y, 3, 7.0f));
  float want6[3] = {7, 7, 7};
  tu_check_close("fill", y, want6, 3, 0);

  /* copy2d: a 2x2 block out of a [2, 3] source into a [2, 4] destination at column 1 */
  float src[6] = {1, 2, 3, 4, 5, 6}, dst[8] = {0};
  CHECK_OK(B->copy2d(NULL, 2, 2, src, 3, dst + 1, 4, 0));
  CHECK_OK(B->copy2d(NULL, 2, 2, src, 3, dst + 1, 4, 1));
  float want7[8] = {0, 2, 4, 0, 0, 8, 10, 0};
  tu_check_close("copy2d copy then accumulate", dst, want7, 8, 0);

  /* bias over [2 rows, 3 cols] */
  float m[6] = {1, 2, 3, 4, 5, 6}, bias[3] = {10, 20, 30}, db[3];
  CHECK_OK(B->bias_add(NULL, 2, 3, bias, m));
  float want8[6] = {11, 22, 33, 14, 25, 36};
  tu_check_close("bias_add", m, want8, 6, 0);
  tu_poison(db, 3);
  CHECK_OK(B->bias_grad(NULL, 2, 3, m, db));
  CHECK_OK(B->bias_grad(NULL, 2, 3, m, db)); /* overwrites, not accumulates */
  float want9[3] = {25, 47, 69};
  tu_check_close("bias_grad overwrites", db, want9, 3, 0);
}

/* ---- activations: hand values, and f' against central differences ---- */

static void test_activations(void) {
  float x[5] = {-2, -0.5f, 0, 0.5f, 1}, y[5];
  float want_relu[5] = {0, 0, 0, 0.5f, 1};
  float want_leaky[5] = {-0.2f, -0.05f, 0, 0.5f, 1};
  CHECK_OK(B->act_fwd(NULL, CNN_ACT_RELU, 0, 5, x, y));
  tu_check_close("relu", y, want_relu, 5, TOL);
  CHECK_OK(B->act_fwd(NULL, CNN_ACT_LEAKY, 0.1f, 5, x, y));
  tu_check_close("leaky 0.1", y, want_leaky, 5, TOL);
  CHECK_OK(B->act_fwd(NULL, CNN_ACT_GELU, 0, 5, x, y));
  check_val("gelu(1) = Phi(1)", y[4], 0.8413447460685429, TOL);
  CHECK_OK(B->act_fwd(NULL, CNN_ACT_SIGMOID, 0, 5, x, y));
  check_val("sigmoid(0)", y[2], 0.5, TOL);
  CHECK_OK(B->act_fwd(NULL, CNN_ACT_TANH, 0, 5, x, y));
  check_val("tanh(0.5)", y[3], 0.46211715726000974, TOL);
  float x6[5] = {-2, 0.5f, 5.5f, 6, 7.5f}, want_relu6[5] = {0, 0.5f, 5.5f, 6, 6};
  CHECK_OK(B->act_fwd(NULL, CNN_ACT_RELU6, 0, 5, x6, y));
  tu_check_close("relu6", y, want_relu6, 5, TOL);
  /* slope 1 on (0, 6), 0 elsewhere (at both kinks too, as PyTorch's hardtanh) */
  float dy6[5] = {1, 1, 1, 1, 1}, dx6[5] = {0}, want_d6[5] = {0, 1, 1, 0, 0};
  CHECK_OK(B->act_bwd(NULL, CNN_ACT_RELU6, 0, 5, x6, NULL, dy6, dx6));
  tu_check_close("relu6'", dx6, want_d6, 5, TOL);

  /* in place */
  float z[5];
  memcpy(z, x, sizeof z);
  CHECK_OK(B->act_fwd(NULL, CNN_ACT_RELU, 0, 5, z, z));
  tu_check_close("relu in place", z, want_relu, 5, TOL);

  /* GELU'(1) = Phi(1) + phi(1) */
  float one = 1, gout = 1, gx = 0;
  CHECK_OK(B->act_bwd(NULL, CNN_ACT_GELU, 0, 1, &one, NULL, &gout, &gx));
  check_val("gelu'(1)", gx, 1.0833154705876864, TOL);

  /* every activation: dx = dy * (f(x+h) - f(x-h)) / 2h at points off the kinks */
  float pts[4] = {-1.3f, -0.4f, 0.7f, 2.1f}, dy[4] = {1, -2, 0.5f, 3};
  for (int a = 0; a < CNN_ACT_COUNT; a++) {
    float hi[4], lo[4], xp[4], xm[4], dx[4] = {0}, want[4];
    const float h = 1e-2f;
    for (int i = 0; i < 4; i++) xp[i] = pts[i] + h, xm[i] = pts[i] - h;
    CHECK_OK(B->act_fwd(NULL, (cnn_act)a, 0.1f, 4, xp, hi));
    CHECK_OK(B->act_fwd(NULL, (cnn_act)a, 0.1f, 4, xm, lo));
    for (int i = 0; i < 4; i++) want[i] = dy[i] * (hi[i] - lo[i]) / ((xp[i] - xm[i]));
    CHECK_OK(B->act_bwd(NULL, (cnn_act)a, 0.1f, 4, pts, NULL, dy, dx));
    char what[64];
    snprintf(what, sizeof what, "act %d derivative vs central difference", a);
    tu_check_close(what, dx, want, 4, 1e-3);
    CHECK_OK(B->act_bwd(NULL, (cnn_act)a, 0.1f, 4, pts, NULL, dy, dx));
    for (int i = 0; i < 4; i++) want[i] *= 2;
    snprintf(what, sizeof what, "act %d backward accumulates", a);
    tu_check_close(what, dx, want, 4, 1e-3);
  }
}

/* ---- gemm ---- */

/* A = [[1,2,3],[4,5,6]], B = [[7,8],[9,10],[11,12]], A B = [[58,64],[139,154]].
 * Each operand is stored plain or transposed with a row stride longer than its row
 * (the extra column is NaN, so reading past the row shows up). */
static void test_gemm(void) {
  const float A[2][3] = {{1, 2, 3}, {4, 5, 6}}, Bm[3][2] = {{7, 8}, {9, 10}, {11, 12}};
  const float ab[4] = {58, 64, 139, 154};
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      float a[3 * 4], b[3 * 4], c[2 * 3];
      int lda = ta ? 3 : 4, ldb = tb ? 4 : 3, ldc = 3; /* one spare column each */
      tu_poison(a, 12);
      tu_poison(b, 12);
      for (int i = 0; i < 2; i++)
        for (int p = 0; p < 3; p++) {
          if (ta)
            a[p * lda + i] = A[i][p];
          else
            a[i * lda + p] = A[i][p];
        }
      for (int p = 0; p < 3; p++)
        for (int j = 0; j < 2; j++) {
          if (tb)
            b[j * ldb + p] = Bm[p][j];
          else
            b[p * ldb + j] = Bm[p][j];
        }
      tu_poison(c, 6);
      CHECK_OK(B->gemm(NULL, ta, tb, 2, 2, 3, 1.0f, a, lda, b, ldb, 0.0f, c, ldc));
      float got[4] = {c[0], c[1], c[3], c[4]};
      char what[64];
      snprintf(what, sizeof what, "gemm ta=%d tb=%d beta=0 over NaN C", ta, tb);
      tu_check_close(what, got, ab, 4, TOL);
      CHECK(isnan(c[2]) && isnan(c[5]), "gemm wrote past n in a row of C");
      /* alpha 2, beta 0.5 on C = A B: 2 A B + 0.5 A B = 2.5 A B */
      CHECK_OK(B->gemm(NULL, ta, tb, 2, 2, 3, 2.0f, a, lda, b, ldb, 0.5f, c, ldc));
      float got2[4] = {c[0], c[1], c[3], c[4]}, want2[4];
      for (int i = 0; i < 4; i++) want2[i] = 2.5f * ab[i];
      snprintf(what, sizeof what, "gemm ta=%d tb=%d alpha=2 beta=0.5", ta, tb);
      tu_check_close(what, got2, want2, 4, TOL);
    }
}

/* ---- convolution ---- */

static cnn_conv_desc conv_desc(int n, int h, int w, int c, int k, int r, int s, int stride,
                               int pad, int dil, int groups) {
  cnn_conv_desc d = {n, h, w, c, k, r, s, 0, 0, stride, stride, pad, pad, dil, dil, groups, CNN_MATH_F32, 0};
  d.oh = (h + 2 * pad - dil * (r - 1) - 1) / stride + 1;
  d.ow = (w + 2 * pad - dil * (s - 1) - 1) / stride + 1;
  return d;
}

/* 4x4 input x[i][j] = 4i + j + 1 (1..16) */
static void fill_1_to_16(float *x) {
  for (int i = 0; i < 16; i++) x[i] = (float)(i + 1);
}

static void test_conv_hand(void) {
  float x[16], w[9], y[4];
  fill_1_to_16(x);
  /* w[r][s] = 3r + s + 1. y(i,j) = sum w (4(i+r) + (j+s) + 1)
   *   = 45 (4i + j + 1) + sum (3r+s+1)(4r+s) = 45 (4i + j + 1) + 303 */
  for (int i = 0; i < 9; i++) w[i] = (float)(i + 1);
  cnn_conv_desc d = conv_desc(1, 4, 4, 1, 1, 3, 3, 1, 0, 1, 1);
  CHECK(d.oh == 2 && d.ow == 2, "3x3 valid conv of 4x4 is 2x2");
  tu_poison(y, 4);
  CHECK_OK(B->conv_fwd(NULL, &d, x, w, NULL, y, NULL, 0));
  float want[4] = {348, 393, 528, 573};
  tu_check_close("conv 3x3 on 4x4", y, want, 4, TOL);
  float bias = -0.5f;
  CHECK_OK(B->conv_fwd(NULL, &d, x, w, &bias, y, NULL, 0));
  float want_b[4] = {347.5f, 392.5f, 527.5f, 572.5f};
  tu_check_close("conv with bias", y, want_b, 4, TOL);

  /* stride 2, pad 1, all-ones 3x3: each output sums its window's in-input cells
   * (0,0): 1+2+5+6   (0,1): rows 0-1 x cols 1-3   (1,0): rows 1-3 x cols 0-1
   * (1,1): rows 1-3 x cols 1-3 */
  for (int i = 0; i < 9; i++) w[i] = 1;
  d = conv_desc(1, 4, 4, 1, 1, 3, 3, 2, 1, 1, 1);
  CHECK(d.oh == 2 && d.ow == 2, "stride 2 pad 1 gives 2x2");
  CHECK_OK(B->conv_fwd(NULL, &d, x, w, NULL, y, NULL, 0));
  float want_s[4] = {14, 30, 57, 99};
  tu_check_close("conv stride 2 pad 1", y, want_s, 4, TOL);

  /* dilation 2 on a 5x5 input x = 1..25: one output, taps at rows/cols 0, 2, 4
   *   = sum over i,j in {0,2,4} of 5i + j + 1 = 9 + 3*5*6 + 3*6 = 117 */
  float x5[25];
  for (int i = 0; i < 25; i++) x5[i] = (float)(i + 1);
  d = conv_desc(1, 5, 5, 1, 1, 3, 3, 1, 0, 2, 1);
  CHECK(d.oh == 1 && d.ow == 1, "dilated 3x3 on 5x5 gives 1x1");
  CHECK_OK(B->conv_fwd(NULL, &d, x5, w, NULL, y, NULL, 0));
  check_val("conv dilation 2", y[0], 117, TOL);

  /* two input channels, NHWC: channel 1 is 10x channel 0, w = 1 on c0, 2 on c1,
   * 1x1 kernel: y = x0 + 2 * 10 x0 = 21 x0 */
  float x2[8], w2[2] = {1, 2}, y2[4];
  for (int i = 0; i < 4; i++) x2[2 * i] = (float)(i + 1), x2[2 * i + 1] = 10.0f * (i + 1);
  d = conv_desc(1, 2, 2, 2, 1, 1, 1, 1, 0, 1, 1);
  CHECK_OK(B->conv_fwd(NULL, &d, x2, w2, NULL, y2, NULL, 0));
  float want2[4] = {21, 42, 63, 84};
  tu_check_close("conv NHWC channels", y2, want2, 4, TOL);
}

/* A grouped conv equals `groups` independent convs, each on its slice of input
 * channels with its block of filters (contiguous in KRSC). */
static void check_grouped(const char *what, cnn_conv_desc d) {
  int G = d.groups, cg = d.c / G, kg = d.k / G;
  size_t nx = (size_t)d.n * d.h * d.w * d.c, nw = (size_t)d.k * d.r * d.s * cg;
  size_t npix = (size_t)d.n * d.oh * d.ow, ny = npix * d.k;
  float *x = malloc(nx * 4), *w = malloc(nw * 4), *bias = malloc(d.k * 4), *y = malloc(ny * 4);
  float *xg = malloc(nx * 4), *yg = malloc(ny * 4), *got = malloc(ny * 4);
  tu_fill_uniform(x, nx, -1, 1, 1);
  tu_fill_uniform(w, nw, -1, 1, 2);
  tu_fill_uniform(bias, d.k, -1, 1, 3);
  tu_poison(y, ny);
  CHECK_OK(B->conv_fwd(NULL, &d, x, w, bias, y, NULL, 0));
  cnn_conv_desc dg = d;
  dg.c = cg, dg.k = kg, dg.groups = 1;
  for (int g = 0; g < G; g++) {
    for (size_t p = 0; p < (size_t)d.n * d.h * d.w; p++)
      for (int ci = 0; ci < cg; ci++) xg[p * cg + ci] = x[p * d.c + g * cg + ci];
    CHECK_OK(B->conv_fwd(NULL, &dg, xg, w + (size_t)g * kg * d.r * d.s * cg, bias + g * kg, yg,
                         NULL, 0));
    for (size_t p = 0; p < npix; p++)
      for (int kk = 0; kk < kg; kk++) got[p * kg + kk] = y[p * d.k + g * kg + kk];
    tu_check_close(what, got, yg, npix * kg, 1e-6);
  }
  free(x), free(w), free(bias), free(y), free(xg), free(yg), free(got);
}

/* The three conv ops are one bilinear form: for y = conv(x, w),
 *   <y, dy> = <x, bwd_data(dy, w)> = <w, bwd_filter(x, dy)>,
 * and db = sum of dy per filter. Also: bwd_data accumulates, bwd_filter overwrites. */
static void check_conv_adjoint(const char *what, cnn_conv_desc d) {
  size_t nx = (size_t)d.n * d.h * d.w * d.c, nw = (size_t)d.k * d.r * d.s * (d.c / d.groups);
  size_t npix = (size_t)d.n * d.oh * d.ow, ny = npix * d.k;
  float *x = malloc(nx * 4), *w = malloc(nw * 4), *y = malloc(ny * 4), *dy = malloc(ny * 4);
  float *dx = calloc(nx, 4), *dx2 = calloc(nx, 4), *dw = malloc(nw * 4), *dw2 = malloc(nw * 4);
  float *db = malloc(d.k * 4);
  tu_fill_uniform(x, nx, -1, 1, 11);
  tu_fill_uniform(w, nw, -1, 1, 12);
  tu_fill_uniform(dy, ny, -1, 1, 13);
  CHECK_OK(B->conv_fwd(NULL, &d, x, w, NULL, y, NULL, 0));
  CHECK_OK(B->conv_bwd_data(NULL, &d, dy, w, dx, NULL, 0));
  tu_poison(dw, nw);
  tu_poison(db, d.k);
  CHECK_OK(B->conv_bwd_filter(NULL, &d, x, dy, dw, db, NULL, 0));
  double ydy = dot(y, dy, ny), xdx = dot(x, dx, nx), wdw = dot(w, dw, nw);
  CHECK(fabs(ydy - xdx) <= 1e-5 * fmax(1, fabs(ydy)), "%s: <y,dy> %.9g != <x,dx> %.9g", what,
        ydy, xdx);
  CHECK(fabs(ydy - wdw) <= 1e-5 * fmax(1, fabs(ydy)), "%s: <y,dy> %.9g != <w,dw> %.9g", what,
        ydy, wdw);
  for (int k = 0; k < d.k; k++) {
    double s = 0;
    for (size_t p = 0; p < npix; p++) s += dy[p * d.k + k];
    check_val("conv db = sum dy", db[k], s, 1e-6);
  }
  /* accumulate: a second bwd_data doubles dx; bwd_filter with db NULL overwrites dw */
  memcpy(dx2, dx, nx * 4);
  CHECK_OK(B->conv_bwd_data(NULL, &d, dy, w, dx2, NULL, 0));
  for (size_t i = 0; i < nx; i++) dx[i] *= 2;
  tu_check_close("conv bwd_data accumulates", dx2, dx, nx, 1e-6);
  memcpy(dw2, dw, nw * 4);
  CHECK_OK(B->conv_bwd_filter(NULL, &d, x, dy, dw, NULL, NULL, 0));
  tu_check_close("conv bwd_filter overwrites", dw, dw2, nw, 0);
  free(x), free(w), free(y), free(dy), free(dx), free(dx2), free(dw), free(dw2), free(db);
}

static void test_conv_general(void) {
  check_grouped("grouped conv (2 groups) = per-group convs",
                conv_desc(2, 5, 6, 4, 6, 3, 3, 1, 1, 1, 2));
  check_grouped("depthwise conv = per-channel convs", conv_desc(1, 6, 5, 3, 3, 3, 3, 2, 1, 1, 3));
  cnn_conv_desc d = conv_desc(2, 7, 6, 4, 6, 3, 2, 1, 1, 1, 2);
  d.stride_h = 2, d.dil_w = 2, d.pad_w = 0; /* asymmetric stride, dilation, padding */
  d.oh = (7 + 2 - 2 - 1) / 2 + 1;
  d.ow = (6 - 2 - 1) / 1 + 1;
  check_conv_adjoint("conv adjoint, groups/stride/pad/dilation", d);
  check_conv_adjoint("conv adjoint, plain 3x3 pad 1", conv_desc(1, 5, 5, 3, 4, 3, 3, 1, 1, 1, 1));
}

/* ---- pooling ---- */

static cnn_pool_desc pool_desc(int n, int h, int w, int c, int kk, int stride, int pad) {
  cnn_pool_desc d = {n, h, w, c, 0, 0, kk, kk, stride, stride, pad, pad};
  d.oh = (h + 2 * pad - kk) / stride + 1;
  d.ow = (w + 2 * pad - kk) / stride + 1;
  return d;
}

static void test_maxpool(void) {
  /* 2x2 stride 2 on 4x4, windows: all ties (5s), tie between cells 2 and 4 (in
   * (r,s) order), a plain max, and negatives */
  float x[16] = {5, 5, 1, 2,
                 5, 5, 3, 3,
                 0, 9, -1, -4,
                 9, 9, -3, -2};
  float y[4], dy[4] = {1, 2, 3, 4}, dx[16] = {0};
  cnn_pool_desc d = pool_desc(1, 4, 4, 1, 2, 2, 0);
  CHECK_OK(B->maxpool_fwd(NULL, &d, x, y));
  float want[4] = {5, 3, 9, -1};
  tu_check_close("maxpool", y, want, 4, 0);
  CHECK_OK(B->maxpool_bwd(NULL, &d, x, dy, dx));
  /* ties go to the first cell in (r, s) order: (0,0), (1,2), (2,1), (2,2) */
  float want_dx[16] = {1, 0, 0, 0,
                       0, 0, 2, 0,
                       0, 3, 4, 0,
                       0, 0, 0, 0};
  tu_check_close("maxpool backward routes ties to the first cell", dx, want_dx, 16, 0);
  CHECK_OK(B->maxpool_bwd(NULL, &d, x, dy, dx));
  for (int i = 0; i < 16; i++) want_dx[i] *= 2;
  tu_check_close("maxpool backward accumulates", dx, want_dx, 16, 0);

  /* padding is ignored, not a zero: all-negative input, 3x3 stride 1 pad 1 */
  float neg[9], yn[9], want_n[9];
  for (int i = 0; i < 9; i++) neg[i] = -1.0f - i, want_n[i] = 0;
  d = pool_desc(1, 3, 3, 1, 3, 1, 1);
  CHECK_OK(B->maxpool_fwd(NULL, &d, neg, yn));
  /* window (i,j) covers rows i-1..i+1, cols j-1..j+1: max is its top-left in-input cell */
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) want_n[i * 3 + j] = neg[(i ? i - 1 : 0) * 3 + (j ? j - 1 : 0)];
  tu_check_close("maxpool ignores padding", yn, want_n, 9, 0);

  /* a window entirely in padding outputs 0: 1x1 input, 1x1 window, pad 1 -> 3x3 */
  float one = -7, y3[9];
  d = pool_desc(1, 1, 1, 1, 1, 1, 1);
  CHECK(d.oh == 3 && d.ow == 3, "pool shape");
  CHECK_OK(B->maxpool_fwd(NULL, &d, &one, y3));
  float want3[9] = {0, 0, 0, 0, -7, 0, 0, 0, 0};
  tu_check_close("maxpool empty windows give 0", y3, want3, 9, 0);
}

static void test_avgpool(void) {
  /* 3x3 window, stride 1, pad 1 on x = 1..9 (3x3): a window averages only its
   * in-input cells: corner 4 cells, edge 6, centre 9 */
  float x[9], y[9], dy[9], dx[9] = {0};
  for (int i = 0; i < 9; i++) x[i] = (float)(i + 1), dy[i] = 1;
  cnn_pool_desc d = pool_desc(1, 3, 3, 1, 3, 1, 1);
  CHECK_OK(B->avgpool_fwd(NULL, &d, x, y));
  float want[9] = {(1 + 2 + 4 + 5) / 4.0f, (1 + 2 + 3 + 4 + 5 + 6) / 6.0f, (2 + 3 + 5 + 6) / 4.0f,
                   (1 + 2 + 4 + 5 + 7 + 8) / 6.0f, 5, (2 + 3 + 5 + 6 + 8 + 9) / 6.0f,
                   (4 + 5 + 7 + 8) / 4.0f, (4 + 5 + 6 + 7 + 8 + 9) / 6.0f, (5 + 6 + 8 + 9) / 4.0f};
  tu_check_close("avgpool at padded borders", y, want, 9, TOL);
  /* dy = 1: dx[cell] = sum over windows holding it of 1 / count(window);
   * corner 1/4 + 2/6 + 1/9, edge 2/4 + 3/6 + 1/9, centre 4/4 + 4/6 + 1/9 */
  CHECK_OK(B->avgpool_bwd(NULL, &d, dy, dx));
  double c = 0.25 + 2 / 6.0 + 1 / 9.0, e = 0.5 + 0.5 + 1 / 9.0, m = 1 + 4 / 6.0 + 1 / 9.0;
  float want_dx[9] = {(float)c, (float)e, (float)c, (float)e, (float)m,
                      (float)e, (float)c, (float)e, (float)c};
  tu_check_close("avgpool backward", dx, want_dx, 9, TOL);
  CHECK_OK(B->avgpool_bwd(NULL, &d, dy, dx));
  for (int i = 0; i < 9; i++) want_dx[i] *= 2;
  tu_check_close("avgpool backward accumulates", dx, want_dx, 9, TOL);

  /* global average pool over 2 channels, NHWC */
  float g[8] = {1, 10, 2, 20, 3, 30, 4, 40}, gy[2];
  d = pool_desc(1, 2, 2, 2, 2, 1, 0);
  CHECK_OK(B->avgpool_fwd(NULL, &d, g, gy));
  float want_g[2] = {2.5f, 25};
  tu_check_close("global avgpool", gy, want_g, 2, TOL);
}

/* ---- batch norm ---- */

enum { BN_ROWS = 50, BN_C = 3 };

static void test_bn_forward(void) {
  float x[BN_ROWS * BN_C], y[BN_ROWS * BN_C];
  float gamma[BN_C] = {1, 1, 1}, beta[BN_C] = {0, 0, 0};
  float rm[BN_C] = {1, 2, 3}, rv[BN_C] = {4, 5, 6}, sm[BN_C], si[BN_C];
  tu_fill_uniform(x, BN_ROWS * BN_C, -1, 3, 21);
  for (int i = 0; i < BN_ROWS; i++) x[i * BN_C + 2] *= 10; /* a wide channel */
  const float eps = 1e-5f, mom = 0.1f;
  CHECK_OK(B->bn_fwd_train(NULL, BN_ROWS, BN_C, x, gamma, beta, eps, mom, rm, rv, sm, si, y));
  for (int ch = 0; ch < BN_C; ch++) {
    double mx = 0, vx = 0, my = 0, vy = 0;
    for (int i = 0; i < BN_ROWS; i++) mx += x[i * BN_C + ch], my += y[i * BN_C + ch];
    mx /= BN_ROWS, my /= BN_ROWS;
    for (int i = 0; i < BN_ROWS; i++) {
      vx += (x[i * BN_C + ch] - mx) * (x[i * BN_C + ch] - mx);
      vy += (y[i * BN_C + ch] - my) * (y[i * BN_C + ch] - my);
    }
    vx /= BN_ROWS, vy /= BN_ROWS;
    CHECK(fabs(my) < 1e-6, "bn channel %d output mean %g", ch, my);
    CHECK(fabs(vy - vx / (vx + eps)) < 1e-5, "bn channel %d output var %g", ch, vy);
    check_val("bn save_mean", sm[ch], mx, 1e-6);
    check_val("bn save_invstd", si[ch], 1 / sqrt(vx + eps), 1e-6);
    check_val("bn running_mean", rm[ch], 0.9 * (ch + 1) + 0.1 * mx, 1e-6);
    check_val("bn running_var (unbiased)", rv[ch], 0.9 * (ch + 4) + 0.1 * vx * BN_ROWS / (BN_ROWS - 1),
              1e-6);
  }
  /* gamma and beta scale and shift */
  float g2[BN_C] = {2, 0.5f, -1}, b2[BN_C] = {1, -1, 3}, y2[BN_ROWS * BN_C], want[BN_ROWS * BN_C];
  CHECK_OK(B->bn_fwd_train(NULL, BN_ROWS, BN_C, x, g2, b2, eps, mom, rm, rv, sm, si, y2));
  for (int i = 0; i < BN_ROWS * BN_C; i++) want[i] = g2[i % BN_C] * y[i] + b2[i % BN_C];
  tu_check_close("bn gamma/beta", y2, want, BN_ROWS * BN_C, 1e-6);
  /* inference with running stats = the batch's own biased stats reproduces training */
  float var[BN_C];
  for (int ch = 0; ch < BN_C; ch++) var[ch] = 1 / (si[ch] * si[ch]) - eps;
  CHECK_OK(B->bn_fwd_infer(NULL, BN_ROWS, BN_C, x, g2, b2, sm, var, eps, y));
  tu_check_close("bn infer with batch stats = train", y, y2, BN_ROWS * BN_C, 1e-5);
  /* one row: unbiased variance is undefined; running var must stay finite */
  float one[2] = {3, -1}, yo[2], rm1[2] = {0, 0}, rv1[2] = {1, 1}, sm1[2], si1[2];
  CHECK_OK(B->bn_fwd_train(NULL, 1, 2, one, gamma, beta, eps, mom, rm1, rv1, sm1, si1, yo));
  CHECK(isfinite(rv1[0]) && isfinite(rv1[1]), "bn rows=1 running var finite");
}

/* L(x) = sum dy * bn(x): bn_bwd's dx against central differences, dgamma, dbeta */
static void test_bn_backward(void) {
  enum { R = 6, C = 2 };
  float x[R * C], dy[R * C], y[R * C], dx[R * C] = {0}, want[R * C];
  float gamma[C] = {1.5f, -0.7f}, beta[C] = {0.2f, 0.1f}, rm[C], rv[C], sm[C], si[C];
  float dgamma[C], dbeta[C];
  tu_fill_uniform(x, R * C, -2, 2, 31);
  tu_fill_uniform(dy, R * C, -1, 1, 32);
  CHECK_OK(B->bn_fwd_train(NULL, R, C, x, gamma, beta, 1e-5f, 0.1f, rm, rv, sm, si, y));
  CHECK_OK(B->bn_bwd(NULL, R, C, x, dy, gamma, sm, si, dx, dgamma, dbeta));
  for (int i = 0; i < R * C; i++) {
    float xp[R * C], yp[R * C], ym[R * C];
    const float h = 1e-2f;
    memcpy(xp, x, sizeof x);
    xp[i] = x[i] + h;
    CHECK_OK(B->bn_fwd_train(NULL, R, C, xp, gamma, beta, 1e-5f, 0.1f, rm, rv, sm, si, yp));
    xp[i] = x[i] - h;
    CHECK_OK(B->bn_fwd_train(NULL, R, C, xp, gamma, beta, 1e-5f, 0.1f, rm, rv, sm, si, ym));
    want[i] = (float)((dot(dy, yp, R * C) - dot(dy, ym, R * C)) / (2.0 * h));
  }
  tu_check_close("bn_bwd dx vs central differences", dx, want, R * C, 2e-3);
  for (int ch = 0; ch < C; ch++) {
    double db = 0, dg = 0;
    for (int i = 0; i < R; i++) {
      db += dy[i * C + ch];
      dg += dy[i * C + ch] * (y[i * C + ch] - beta[ch]) / gamma[ch]; /* dy * xhat */
    }
    check_val("bn dbeta", dbeta[ch], db, 1e-5);
    check_val("bn dgamma", dgamma[ch], dg, 1e-5);
  }
  /* a second call with the saved stats of x doubles dx */
  float dx1[R * C];
  CHECK_OK(B->bn_fwd_train(NULL, R, C, x, gamma, beta, 1e-5f, 0.1f, rm, rv, sm, si, y));
  zero(dx, R * C);
  CHECK_OK(B->bn_bwd(NULL, R, C, x, dy, gamma, sm, si, dx, dgamma, dbeta));
  memcpy(dx1, dx, sizeof dx);
  CHECK_OK(B->bn_bwd(NULL, R, C, x, dy, gamma, sm, si, dx, dgamma, dbeta));
  for (int i = 0; i < R * C; i++) dx1[i] *= 2;
  tu_check_close("bn_bwd accumulates dx", dx, dx1, R * C, 1e-6);
}

/* ---- softmax cross-entropy ---- */

static void test_softmax_xent(void) {
  /* logits [1, 2, 3], label 2: lse = 3.40760596444438,
   * loss = lse - 3; with smoothing 0.1 the target is [1/30, 1/30, 0.9 + 1/30] and
   * loss = lse - (0.9 * 3 + 0.1/3 * (1 + 2 + 3)) = lse - 2.9 */
  float z[6] = {1, 2, 3, 1000, 0, -1000}, p[6], loss[2];
  int32_t lab[2] = {2, 1};
  CHECK_OK(B->softmax_xent_fwd(NULL, 2, 3, z, lab, 0.0f, p, loss));
  float want_p[3] = {0.09003057317038048f, 0.2447284710547977f, 0.665240955774822f};
  tu_check_close("softmax probs", p, want_p, 3, TOL);
  check_val("xent loss", loss[0], 0.40760596444438013, TOL);
  /* row 2: logits 1000 and 0 must not overflow: loss = 1000, p = [1, e^-1000, 0] */
  check_val("xent large logits (log-sum-exp)", loss[1], 1000, TOL);
  CHECK(p[3] == 1.0f && p[4] == 0.0f && p[5] == 0.0f, "large-logit probs %g %g %g", p[3], p[4],
        p[5]);
  CHECK_OK(B->softmax_xent_fwd(NULL, 2, 3, z, lab, 0.1f, p, loss));
  check_val("xent loss with smoothing 0.1", loss[0], 0.5076059644443802, TOL);
  /* backward: dlogits += 0.5 (p - t), called twice */
  float dz[3] = {0};
  for (int rep = 0; rep < 2; rep++)
    CHECK_OK(B->softmax_xent_bwd(NULL, 1, 3, p, lab, 0.1f, 0.5f, dz));
  float want_dz[3] = {(float)(p[0] - 1 / 30.0), (float)(p[1] - 1 / 30.0),
                      (float)(p[2] - (0.9 + 1 / 30.0))};
  tu_check_close("xent backward (twice, scale 0.5)", dz, want_dz, 3, TOL);
}

/* ---- optimizers ---- */

static void test_sgd(void) {
  /* p = [1, -2], g = [0.5, 0.1], v = [0.2, 0], lr 0.1, momentum 0.9, wd 0.01:
   *   g' = [0.51, 0.08], v' = [0.9*0.2 + 0.51, 0.08] = [0.69, 0.08]
   *   plain:    p = [1 - 0.069, -2 - 0.008]                 = [0.931, -2.008]
   *   nesterov: update = g' + 0.9 v' = [1.131, 0.152];  p = [0.8869, -2.0152] */
  for (int nest = 0; nest < 2; nest++) {
    float p[2] = {1, -2}, g[2] = {0.5f, 0.1f}, v[2] = {0.2f, 0};
    CHECK_OK(B->sgd_step(NULL, 2, p, g, v, 0.1f, 0.9f, 0.01f, nest));
    float want_v[2] = {0.69f, 0.08f};
    float want_p[2] = {nest ? 0.8869f : 0.931f, nest ? -2.0152f : -2.008f};
    tu_check_close(nest ? "sgd nesterov p" : "sgd p", p, want_p, 2, TOL);
    tu_check_close("sgd velocity", v, want_v, 2, TOL);
  }
}

static void test_adam(void) {
  /* p = [1, -2], grads [0.5, 0.1] then [-0.2, 0.3]; lr 0.01, b1 0.9, b2 0.999,
   * eps 1e-8, wd 0.1. Values after step 2 worked out in double from the formulas
   * in backend.h, e.g. Adam element 0 step 1: g = 0.5 + 0.1 = 0.6, m = 0.06,
   * v = 0.00036, mhat = 0.6, vhat = 0.36, p = 1 - 0.01 * 0.6 / 0.6 = 0.99. */
  const double want[2][2][3] = {
      /* Adam (L2):  p, m, v per element */
      {{0.984628324547652, 0.0439, 0.00036984099999663365},
       {-1.990576059408093, 0.0011, 2.019099997980002e-05}},
      /* AdamW (decoupled) */
      {{0.9845549418114511, 0.025, 0.00028975},
       {-2.015169809780441, 0.039, 9.999000000000008e-05}}};
  for (int dec = 0; dec < 2; dec++) {
    float p[2] = {1, -2}, m[2] = {0, 0}, v[2] = {0, 0};
    float g1[2] = {0.5f, 0.1f}, g2[2] = {-0.2f, 0.3f};
    CHECK_OK(B->adam_step(NULL, 2, p, g1, m, v, 0.01f, 0.9f, 0.999f, 1e-8f, 0.1f, dec, 1));
    check_val(dec ? "adamw step 1 p" : "adam step 1 p", p[0], dec ? 0.9890000002 : 0.99, 1e-6);
    CHECK_OK(B->adam_step(NULL, 2, p, g2, m, v, 0.01f, 0.9f, 0.999f, 1e-8f, 0.1f, dec, 2));
    for (int i = 0; i < 2; i++) {
      check_val(dec ? "adamw p" : "adam p", p[i], want[dec][i][0], 1e-6);
      check_val(dec ? "adamw m" : "adam m", m[i], want[dec][i][1], 1e-6);
      check_val(dec ? "adamw v" : "adam v", v[i], want[dec][i][2], 1e-6);
    }
  }
}

/* ---- dropout ---- */

static void test_dropout(void) {
  enum { N = 100000 };
  float *mask = malloc(N * sizeof *mask), shifted[10];
  const float p = 0.3f, scale = 1.0f / (1.0f - p);
  CHECK_OK(B->dropout_mask(NULL, N, p, 42, 0, mask));
  size_t kept = 0, bad = 0;
  for (size_t i = 0; i < N; i++) {
    if (mask[i] == scale) kept++;
    else if (mask[i] != 0.0f) bad++;
  }
  CHECK(bad == 0, "%zu mask values outside {0, 1/(1-p)}", bad);
  CHECK(fabs((double)kept / N - (1 - p)) < 0.01, "kept fraction %g, want %g", (double)kept / N,
        1 - p);
  /* the mask is a pure function of (seed, offset + i) */
  CHECK_OK(B->dropout_mask(NULL, 10, p, 42, 5, shifted));
  tu_check_close("dropout mask at an offset", shifted, mask + 5, 10, 0);
  for (int i = 0; i < 10; i++)
    CHECK(shifted[i] == (cnn_rng_uniform(42, 5 + i) >= p ? scale : 0.0f), "mask[%d] rule", i);
  CHECK_OK(B->dropout_mask(NULL, N, 0.0f, 7, 0, mask));
  size_t ones = 0;
  for (size_t i = 0; i < N; i++) ones += mask[i] == 1.0f;
  CHECK(ones == N, "p = 0 keeps everything at scale 1 (%zu of %d)", ones, N);
  free(mask);
}

/* ---- shortcut ---- */

static void test_shortcut(void) {
  /* downsample: from [1, 4, 4, 2] into out [1, 2, 2, 3]: stride 2, sample 1,
   * out[y, x, ch] += from[2y, 2x, ch] for ch < 2; channel 2 untouched */
  cnn_shortcut_desc d = {1, 4, 4, 2, 2, 2, 3};
  float from[32], out[12], want[12];
  for (int i = 0; i < 32; i++) from[i] = (float)i;
  for (int i = 0; i < 12; i++) out[i] = want[i] = 100;
  for (int y = 0; y < 2; y++)
    for (int x = 0; x < 2; x++)
      for (int ch = 0; ch < 2; ch++) want[(y * 2 + x) * 3 + ch] += from[((2 * y) * 4 + 2 * x) * 2 + ch];
  CHECK_OK(B->shortcut_fwd(NULL, &d, from, out));
  tu_check_close("shortcut downsample", out, want, 12, 0);
  /* backward is the transpose: dfrom[2y, 2x, ch] += dout[y, x, ch], others unchanged */
  float dfrom[32] = {0}, want_df[32] = {0};
  for (int y = 0; y < 2; y++)
    for (int x = 0; x < 2; x++)
      for (int ch = 0; ch < 2; ch++) want_df[((2 * y) * 4 + 2 * x) * 2 + ch] = 2 * out[(y * 2 + x) * 3 + ch];
  CHECK_OK(B->shortcut_bwd(NULL, &d, out, dfrom));
  CHECK_OK(B->shortcut_bwd(NULL, &d, out, dfrom));
  tu_check_close("shortcut downsample backward (twice)", dfrom, want_df, 32, 0);

  /* upsample: from [1, 2, 2, 1] into out [1, 4, 4, 1]: sample 2,
   * out[2y, 2x] += from[y, x]; the other 12 cells untouched */
  cnn_shortcut_desc u = {1, 2, 2, 1, 4, 4, 1};
  float f2[4] = {1, 2, 3, 4}, o2[16] = {0};
  float want_u[16] = {1, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4, 0, 0, 0, 0, 0};
  CHECK_OK(B->shortcut_fwd(NULL, &u, f2, o2));
  tu_check_close("shortcut upsample", o2, want_u, 16, 0);
  float df2[4] = {0}, want_df2[4] = {1, 2, 3, 4};
  CHECK_OK(B->shortcut_bwd(NULL, &u, o2, df2));
  tu_check_close("shortcut upsample backward", df2, want_df2, 4, 0);

  /* same shape, batch 2: a plain residual add */
  cnn_shortcut_desc s = {2, 1, 2, 2, 1, 2, 2};
  float a[8] = {1, 2, 3, 4, 5, 6, 7, 8}, b[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  float want_s[8] = {2, 3, 4, 5, 6, 7, 8, 9};
  CHECK_OK(B->shortcut_fwd(NULL, &s, a, b));
  tu_check_close("shortcut same shape", b, want_s, 8, 0);
}

int main(void) {
  cnn_backend *be = NULL;
  CHECK_OK(cnn_backend_ref_create(&be));
  if (!be) return tu_finish("test_ref_ops");
  B = be->ops;
  CHECK(strcmp(be->name, "ref") == 0, "backend name %s", be->name);
  test_memory(be);
  test_null_args();
  test_elementwise();
  test_activations();
  test_gemm();
  test_conv_hand();
  test_conv_general();
  test_maxpool();
  test_avgpool();
  test_bn_forward();
  test_bn_backward();
  test_softmax_xent();
  test_sgd();
  test_adam();
  test_dropout();
  test_shortcut();
  be->ops->destroy(be);
  return tu_finish("test_ref_ops");
}
