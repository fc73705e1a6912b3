#define _POSIX_C_SOURCE 200809L /* clock_gettime */
/* The cpu backend's Winograd F(4x4, 3x3) engine (src/backend/cpu/cpu_wino.c), called
 * directly, against the reference backend:
 *  - forward (bias or not, every activation), backward-data (adding into a nonzero
 *    dx) and backward-filter (db or not) on c, k in {1, 3, 8, 17, 64, 130}, h, w in
 *    {1, 2, 4, 5, 7, 13, 28} (non-square too), pad 0..2, n 1..5;
 *  - cpu_wino_takes refuses what it cannot run; the ops refuse such shapes and too
 *    small a workspace with an error naming the op;
 *  - repeat runs are bit-identical; 1 and 2 threads agree within the tolerance;
 *  - the activation epilogue gives conv + act_fwd's bits.
 *
 * Tolerance (fp32 unit roundoff u = 2^-24), a first-order worst-case bound:
 *     |got - ref| <= CMAX * ROUNDS(m) * u * S + 4 u |ref|       (x 1.2 after an activation)
 * Winograd computes each output as a bilinear form in the whole 6x6 input window of
 * its tile (d) and the 9 taps (g), with exact cancellation of the pairs that are not
 * taps of that output. Rounding leaves each pair (a, s) with an error of at most
 * u * ROUNDS * coef(a, s) |d_a g_s|, coef being the same form with |B^T|, |G|, |A^T|
 * (backward-filter: |G^T|, |A|, |B^T|) in place of the matrices: so the error is not
 * bounded by the tap sum (an output whose own taps are ~0 still carries its
 * neighbours' rounding), but by the window mass
 *     S = sum_c (sum of |d| over the 6x6 window) (sum over the 9 taps of |g|)
 * (backward-data: dy and the flipped filter; backward-filter: sum over tiles of
 * (sum of |dy| over the 4x4 tile) (sum of |x| over its 6x6 window)), times the largest
 * coefficient. Per dimension the largest coef is 32/3 for both transform pairs
 * (forward: output 3, input 3, tap 2, 1/6 + 1/6 + 2 (8 * 1/6 * 2) + 5 = 32/3;
 * backward-filter: tap 2, dy 3, input 3; found exhaustively with exact fractions),
 * so CMAX = (32/3)^2 = 113.8 in 2-D.
 * ROUNDS(m) = 24 + m: roundings along a term's path: input transform 2 passes of
 * <= 3, filter transform 2 of <= 3 plus the 1/576 scale (2), the product 1, output
 * transform 2 passes of <= 4, bias 1; then the GEMM's m-term sum (m = cin forward
 * and backward-data, tiles + 8 backward-filter: the blocks' and partials' sums).
 * 4 u |ref|: the final roundings (bias add, activation, dx's start value, ref's).
 * Activations are at most 1.2-Lipschitz (GELU 1.13, ramp 1.1).
 * Measured (all cases below): the worst |got - ref| / (u S) is 6.0 forward, 5.4
 * backward-data, 6.9 backward-filter, against CMAX * ROUNDS >= 2850: the worst-case
 * bound is far from tight for random signs, so an empirical guard (worst ratio <= 64)
 * is checked as well. Breaking a transform constant (tried: B^T's -5 -> -4 in row 0,
 * A^T's 8 -> 7) fails about 200-300 of the checks, by factors of 80 and more. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "backend/cpu/cpu_dnnl.h"
#include "backend/cpu/cpu_wino.h"
#include "cnn/cnn.h"
#include "testutil.h"

#define U_F32 (1.0 / 16777216.0) /* 2^-24 */
#define CMAX 113.78 /* (32/3)^2: the largest 2-D coefficient of the bound, see above */
#define ROUNDS(m) (24.0 + (double)(m))

static cnn_backend *ref;
static double worst_ratio[3]; /* fwd, bwd-data, bwd-filter: max |got - ref| / (u S) */

static cnn_conv_desc shape(int n, int h, int w, int c, int k, int ph, int pw) {
  cnn_conv_desc d;
  memset(&d, 0, sizeof d);
  d.n = n; d.h = h; d.w = w; d.c = c; d.k = k; d.r = d.s = 3;
  d.stride_h = d.stride_w = 1;
  d.pad_h = ph; d.pad_w = pw;
  d.dil_h = d.dil_w = 1;
  d.groups = 1;
  d.oh = h + 2 * ph - 2; d.ow = w + 2 * pw - 2;
  return d;
}

static float *alloc_f(size_t n) {
  float *p = aligned_alloc(256, (n * sizeof(float) + 255) / 256 * 256 + 256);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  return p;
}

static float *rand_f(size_t n, uint64_t seed) {
  float *p = alloc_f(n);
  tu_fill_uniform(p, n, -1.0f, 1.0f, seed);
  return p;
}

static float *abs_of(const float *a, size_t n) {
  float *p = alloc_f(n);
  for (size_t i = 0; i < n; i++) p[i] = fabsf(a[i]);
  return p;
}

/* W[t][ch] = sum of |in| over the 6 x 6 input window of output tile t (4 x 4 tiles
 * over an oh x ow output, window origin 4 ty - ph, 4 tx - pw, zero outside) */
static double *window_abs(const float *in, int n, int ih, int iw, int C, int ph, int pw, int oh,
                          int ow) {
  int th = (oh + 3) / 4, tw = (ow + 3) / 4;
  double *W = calloc((size_t)n * th * tw * C, sizeof *W);
  for (int b = 0; b < n; b++)
    for (int ty = 0; ty < th; ty++)
      for (int tx = 0; tx < tw; tx++) {
        double *wt = W + (((size_t)b * th + ty) * tw + tx) * C;
        for (int i = 0; i < 6; i++)
          for (int j = 0; j < 6; j++) {
            int iy = 4 * ty - ph + i, ix = 4 * tx - pw + j;
            if (iy < 0 || iy >= ih || ix < 0 || ix >= iw) continue;
            const float *p = in + (((size_t)b * ih + iy) * iw + ix) * C;
            for (int ch = 0; ch < C; ch++) wt[ch] += fabs(p[ch]);
          }
      }
  return W;
}

/* S[n][oy][ox][j] = sum_i W[tile of (oy, ox)][i] F[j][i] (the window mass of a conv
 * output: forward with F[k][c] = sum_rs |w|, backward-data with F[c][k]) */
static float *window_bound(const double *W, const double *F, int n, int oh, int ow, int cin,
                           int cout) {
  int th = (oh + 3) / 4, tw = (ow + 3) / 4;
  float *S = alloc_f((size_t)n * oh * ow * cout);
  for (int b = 0; b < n; b++)
    for (int oy = 0; oy < oh; oy++)
      for (int ox = 0; ox < ow; ox++) {
        const double *wt = W + (((size_t)b * th + oy / 4) * tw + ox / 4) * cin;
        float *sp = S + (((size_t)b * oh + oy) * ow + ox) * cout;
        for (int j = 0; j < cout; j++) {
          double sum = 0.0;
          for (int i = 0; i < cin; i++) sum += wt[i] * F[(size_t)j * cin + i];
          sp[j] = (float)sum;
        }
      }
  return S;
}

static void *alloc_ws(size_t bytes) { return aligned_alloc(256, (bytes + 255) / 256 * 256 + 256); }

/* got vs want with |err| <= lip * CMAX * rounds * u * s[i] + slack * u * |want[i]|;
 * records the worst |err| / (u s) in worst_ratio[pass] */
static void check_bound(const char *what, const cnn_conv_desc *d, int pass, const float *got,
                        const float *want, const float *s, size_t n, double rounds, double lip,
                        double slack) {
  double worst = 0.0, ratio = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)got[i] - want[i]);
    double tol = lip * CMAX * rounds * U_F32 * s[i] + slack * U_F32 * fabs(want[i]) + 1e-30;
    double r = e / tol;
    if (!(r <= worst)) { /* NaN too */
      worst = r;
      at = i;
    }
    double q = s[i] > 0 ? e / (U_F32 * s[i]) : 0.0;
    if (q > ratio) ratio = q;
  }
  if (ratio > worst_ratio[pass]) worst_ratio[pass] = ratio;
  CHECK(worst <= 1.0,
        "%s n%d %dx%d c%d k%d pad %d,%d: error %.3g of the bound at [%zu]: got %.9g want %.9g "
        "(S %.4g)",
        what, d->n, d->h, d->w, d->c, d->k, d->pad_h, d->pad_w, worst, at, got[at], want[at],
        s[at]);
}

static size_t ws_max(const cnn_conv_desc *d) {
  size_t a = cpu_wino_workspace(d, CNN_CONV_FWD, cpu_max_threads());
  size_t b = cpu_wino_workspace(d, CNN_CONV_BWD_DATA, cpu_max_threads());
  size_t c = cpu_wino_workspace(d, CNN_CONV_BWD_FILTER, cpu_max_threads());
  return a > b ? (a > c ? a : c) : (b > c ? b : c);
}

/* the three passes of one shape against ref */
static void check_case(int n, int h, int w, int c, int k, int ph, int pw, cnn_act act,
                       int with_bias, int with_db, uint64_t seed) {
  cnn_conv_desc d = shape(n, h, w, c, k, ph, pw);
  CHECK(cpu_wino_takes(&d), "takes n%d %dx%d c%d k%d pad %d,%d", n, h, w, c, k, ph, pw);
  size_t nx = (size_t)n * h * w * c, ny = (size_t)n * d.oh * d.ow * k, nw = (size_t)k * 9 * c;
  float *x = rand_f(nx, seed), *wt = rand_f(nw, seed + 1), *bias = rand_f((size_t)k, seed + 2);
  float *dy = rand_f(ny, seed + 3), *dx0 = rand_f(nx, seed + 4);
  float *ax = abs_of(x, nx), *aw = abs_of(wt, nw), *ady = abs_of(dy, ny), *ab = abs_of(bias, k);
  float *y = alloc_f(ny), *yr = alloc_f(ny), *sy = alloc_f(ny);
  float *dx = alloc_f(nx), *dxr = alloc_f(nx), *sdx = alloc_f(nx);
  float *dw = alloc_f(nw), *dwr = alloc_f(nw), *sdw = alloc_f(nw);
  float *db = alloc_f((size_t)k), *dbr = alloc_f((size_t)k), *sdb = alloc_f((size_t)k);
  size_t wsb = ws_max(&d);
  void *ws = alloc_ws(wsb);
  float alpha = act == CNN_ACT_LEAKY ? 0.1f : 0.0f;
  const float *b = with_bias ? bias : NULL;

  /* forward */
  tu_poison(y, ny);
  CHECK_OK(cpu_wino_fwd(&d, x, wt, b, act, alpha, y, ws, wsb));
  CHECK_OK(ref->ops->conv_fwd_act(ref->ctx, &d, x, wt, b, act, alpha, yr, NULL, 0));
  double *Wx = window_abs(x, n, h, w, c, ph, pw, d.oh, d.ow);
  double *Wdy = window_abs(dy, n, d.oh, d.ow, k, 2 - ph, 2 - pw, h, w);
  double *Fkc = calloc((size_t)k * c, sizeof *Fkc), *Fck = calloc((size_t)k * c, sizeof *Fck);
  for (int kk = 0; kk < k; kk++)
    for (int rs = 0; rs < 9; rs++)
      for (int ch = 0; ch < c; ch++) {
        double a = fabs(wt[((size_t)kk * 9 + rs) * c + ch]);
        Fkc[(size_t)kk * c + ch] += a;
        Fck[(size_t)ch * k + kk] += a;
      }
  free(sy);
  sy = window_bound(Wx, Fkc, n, d.oh, d.ow, c, k);
  check_bound("fwd", &d, 0, y, yr, sy, ny, ROUNDS(c), 1.2, 4.0);
  /* the epilogue is act_fwd's kernel on the linear result: the same bits as the
   * unfused chain */
  float *ylin = alloc_f(ny);
  CHECK_OK(cpu_wino_fwd(&d, x, wt, b, CNN_ACT_LINEAR, 0.0f, ylin, ws, wsb));
  cpu_act_fwd_block(act, alpha, ny, ylin, ylin);
  CHECK(!memcmp(y, ylin, ny * sizeof *y), "fwd with act %d differs from fwd + act_fwd", (int)act);
  free(ylin);
  /* repeat: the same bits */
  float *y2 = alloc_f(ny);
  CHECK_OK(cpu_wino_fwd(&d, x, wt, b, act, alpha, y2, ws, wsb));
  CHECK(!memcmp(y, y2, ny * sizeof *y), "fwd differs between two runs");
  free(y2);

  /* backward-data: adds into dx */
  memcpy(dx, dx0, nx * sizeof *dx);
  memcpy(dxr, dx0, nx * sizeof *dx);
  memset(sdx, 0, nx * sizeof *sdx);
  CHECK_OK(cpu_wino_bwd_data(&d, dy, wt, dx, ws, wsb));
  CHECK_OK(ref->ops->conv_bwd_data(ref->ctx, &d, dy, wt, dxr, NULL, 0));
  free(sdx);
  sdx = window_bound(Wdy, Fck, n, h, w, k, c);
  check_bound("bwd_data", &d, 1, dx, dxr, sdx, nx, ROUNDS(k), 1.0, 4.0);
  float *dx2 = alloc_f(nx);
  memcpy(dx2, dx0, nx * sizeof *dx);
  CHECK_OK(cpu_wino_bwd_data(&d, dy, wt, dx2, ws, wsb));
  CHECK(!memcmp(dx, dx2, nx * sizeof *dx), "bwd_data differs between two runs");
  free(dx2);

  /* backward-filter */
  tu_poison(dw, nw);
  tu_poison(db, (size_t)k);
  CHECK_OK(cpu_wino_bwd_filter(&d, x, dy, dw, with_db ? db : NULL, ws, wsb));
  CHECK_OK(ref->ops->conv_bwd_filter(ref->ctx, &d, x, dy, dwr, dbr, NULL, 0));
  CHECK_OK(ref->ops->conv_bwd_filter(ref->ctx, &d, ax, ady, sdw, sdb, NULL, 0));
  /* S[k][.][.][c] = sum over tiles of (sum of |dy| in the 4 x 4 tile) W[t][c] */
  size_t tiles = (size_t)n * ((d.oh + 3) / 4) * ((d.ow + 3) / 4);
  double *Dt = window_abs(dy, n, d.oh, d.ow, k, 0, 0, d.oh, d.ow); /* 6x6 from 0: the 4x4 tile */
  for (int kk = 0; kk < k; kk++)
    for (int ch = 0; ch < c; ch++) {
      double sum = 0.0;
      for (size_t t = 0; t < tiles; t++) sum += Dt[t * k + kk] * Wx[t * c + ch];
      for (int rs = 0; rs < 9; rs++) sdw[((size_t)kk * 9 + rs) * c + ch] = (float)sum;
    }
  free(Dt);
  check_bound("bwd_filter", &d, 2, dw, dwr, sdw, nw, ROUNDS(tiles + 8), 1.0, 4.0);
  if (with_db) { /* double sums: rounded once, ref too */
    double e = 0.0;
    for (int j = 0; j < k; j++) {
      double q = fabs((double)db[j] - dbr[j]) / (2.0 * U_F32 * sdb[j] + 1e-30);
      if (!(q <= e)) e = q;
    }
    CHECK(e <= 1.0, "db n%d %dx%d c%d k%d: error %.3g of 2 u sum |dy|", n, h, w, c, k, e);
  }
  float *dw2 = alloc_f(nw), *db2 = alloc_f((size_t)k);
  memcpy(db2, db, (size_t)k * sizeof *db);
  CHECK_OK(cpu_wino_bwd_filter(&d, x, dy, dw2, with_db ? db2 : NULL, ws, wsb));
  CHECK(!memcmp(dw, dw2, nw * sizeof *dw) && !memcmp(db, db2, (size_t)k * sizeof *db),
        "bwd_filter differs between two runs");
  free(dw2); free(db2);

  free(x); free(wt); free(bias); free(dy); free(dx0); free(ax); free(aw); free(ady); free(ab);
  free(y); free(yr); free(sy); free(dx); free(dxr); free(sdx); free(dw); free(dwr); free(sdw);
  free(db); free(dbr); free(sdb); free(ws); free(Wx); free(Wdy); free(Fkc); free(Fck);
}

/* 1 and 2 threads: both within the bound of ref (checked above), and of each other */
static void check_threads(int n, int h, int c, int k) {
  cnn_conv_desc d = shape(n, h, h, c, k, 1, 1);
  size_t nx = (size_t)n * h * h * c, ny = (size_t)n * d.oh * d.ow * k, nw = (size_t)k * 9 * c;
  float *x = rand_f(nx, 11), *wt = rand_f(nw, 12), *dy = rand_f(ny, 13);
  float *y[2] = {alloc_f(ny), alloc_f(ny)}, *dx[2] = {alloc_f(nx), alloc_f(nx)};
  float *dw[2] = {alloc_f(nw), alloc_f(nw)}, *db[2] = {alloc_f((size_t)k), alloc_f((size_t)k)};
  int saved = omp_get_max_threads();
  for (int t = 0; t < 2; t++) {
    omp_set_num_threads(t + 1);
    size_t wsb = ws_max(&d);
    void *ws = alloc_ws(wsb);
    memset(dx[t], 0, nx * sizeof(float));
    CHECK_OK(cpu_wino_fwd(&d, x, wt, NULL, CNN_ACT_LINEAR, 0.0f, y[t], ws, wsb));
    CHECK_OK(cpu_wino_bwd_data(&d, dy, wt, dx[t], ws, wsb));
    CHECK_OK(cpu_wino_bwd_filter(&d, x, dy, dw[t], db[t], ws, wsb));
    free(ws);
  }
  omp_set_num_threads(saved);
  /* inputs in [-1, 1]: S <= 36 * 9 * cin (forward, backward-data) or 16 * 36 * tiles
   * (backward-filter); each team is within the bound of ref, so they are within
   * twice the bound of each other (tu_max_rel_err's scaled error is <= |a - b|) */
  double e_y = tu_max_rel_err(y[0], y[1], ny, NULL), e_dx = tu_max_rel_err(dx[0], dx[1], nx, NULL);
  double e_dw = tu_max_rel_err(dw[0], dw[1], nw, NULL), e_db = tu_max_rel_err(db[0], db[1], k, NULL);
  double tiles = (double)n * ((d.oh + 3) / 4) * ((d.ow + 3) / 4);
  CHECK(e_y <= 2 * CMAX * ROUNDS(c) * U_F32 * 324 * c, "1 vs 2 threads fwd %.3g", e_y);
  CHECK(e_dx <= 2 * CMAX * ROUNDS(k) * U_F32 * 324 * k, "1 vs 2 threads bwd_data %.3g", e_dx);
  CHECK(e_dw <= 2 * CMAX * ROUNDS(tiles + 8) * U_F32 * 576 * tiles,
        "1 vs 2 threads bwd_filter %.3g", e_dw);
  CHECK(e_db <= 4 * U_F32 * 16 * tiles, "1 vs 2 threads db %.3g", e_db);
  printf("1 vs 2 threads n%d %dx%d c%d k%d: max scaled diff fwd %.3g bwd_data %.3g "
         "bwd_filter %.3g db %.3g\n", n, h, h, c, k, e_y, e_dx, e_dw, e_db);
  free(x); free(wt); free(dy);
  for (int t = 0; t < 2; t++) {
    free(y[t]); free(dx[t]); free(dw[t]); free(db[t]);
  }
}

static void check_refusals(void) {
  cnn_conv_desc ok = shape(2, 6, 5, 3, 4, 1, 1), d;
  CHECK(cpu_wino_takes(&ok), "takes a plain 3x3");
  CHECK(!cpu_wino_takes(NULL), "refuses NULL");
  d = ok; d.stride_h = d.stride_w = 2; d.oh = 3; d.ow = 3;
  CHECK(!cpu_wino_takes(&d), "refuses stride 2");
  d = ok; d.r = d.s = 5; d.pad_h = d.pad_w = 2; d.oh = 6; d.ow = 5;
  CHECK(!cpu_wino_takes(&d), "refuses 5x5");
  d = ok; d.c = 4; d.groups = 2;
  CHECK(!cpu_wino_takes(&d), "refuses groups 2");
  d = ok; d.dil_h = d.dil_w = 2; d.pad_h = d.pad_w = 2;
  CHECK(!cpu_wino_takes(&d), "refuses dilation 2");
  d = ok; d.pad_h = d.pad_w = 3; d.oh = 10; d.ow = 9;
  CHECK(!cpu_wino_takes(&d), "refuses pad 3");
  d = ok; d.oh = 5;
  CHECK(!cpu_wino_takes(&d), "refuses a mismatched oh");
  d = ok; d.ow = 4;
  CHECK(!cpu_wino_takes(&d), "refuses a mismatched ow");
  d = ok; d.n = 0;
  CHECK(!cpu_wino_takes(&d), "refuses n 0");
  d = shape(1, 2, 2, 3, 4, 0, 0); /* oh = 0 */
  CHECK(!cpu_wino_takes(&d), "refuses an empty output");
  CHECK(!cpu_wino_wins(&d, CNN_CONV_FWD), "does not win what it cannot take");
  /* the rule of cpu_wino_wins (cpu_wino.c): resnet9's and fashion's layers but the
   * first, not thin channels, mostly empty tiles, or few tiles */
  static const int yes[][4] = {{64, 28, 64, 128}, {64, 14, 128, 256}, {64, 7, 256, 512},
                               {64, 4, 512, 512}, {128, 14, 24, 48}, {128, 7, 48, 96}};
  static const int no[][4] = {{128, 28, 1, 24}, {128, 14, 8, 8}, {128, 28, 3, 32},
                              {64, 2, 256, 256}, {64, 1, 512, 512}, {8, 7, 512, 512}};
  for (int i = 0; i < 6; i++)
    for (int dir = 0; dir < 3; dir++) {
      cnn_conv_desc a = shape(yes[i][0], yes[i][1], yes[i][1], yes[i][2], yes[i][3], 1, 1);
      cnn_conv_desc b = shape(no[i][0], no[i][1], no[i][1], no[i][2], no[i][3], 1, 1);
      CHECK(cpu_wino_wins(&a, (cnn_conv_dir)dir), "wins n%d %dx%d %d->%d", yes[i][0],
            yes[i][1], yes[i][1], yes[i][2], yes[i][3]);
      CHECK(!cpu_wino_wins(&b, (cnn_conv_dir)dir), "does not win n%d %dx%d %d->%d", no[i][0],
            no[i][1], no[i][1], no[i][2], no[i][3]);
    }
  CHECK(cpu_wino_workspace(&d, CNN_CONV_FWD, 2) == 0, "no workspace for what it cannot take");

  float buf[4096];
  memset(buf, 0, sizeof buf);
  d = ok; d.stride_h = d.stride_w = 2; d.oh = 3; d.ow = 3;
  cnn_status st = cpu_wino_fwd(&d, buf, buf, NULL, CNN_ACT_LINEAR, 0.0f, buf, buf, sizeof buf);
  CHECK(st == CNN_ERR_ARG && strstr(cnn_last_error(), "wino_fwd"),
        "fwd refuses stride 2 by name: %s", cnn_last_error());
  st = cpu_wino_bwd_data(&d, buf, buf, buf, buf, sizeof buf);
  CHECK(st == CNN_ERR_ARG && strstr(cnn_last_error(), "wino_bwd_data"),
        "bwd_data refuses stride 2 by name: %s", cnn_last_error());
  st = cpu_wino_bwd_filter(&d, buf, buf, buf, NULL, buf, sizeof buf);
  CHECK(st == CNN_ERR_ARG && strstr(cnn_last_error(), "wino_bwd_filter"),
        "bwd_filter refuses stride 2 by name: %s", cnn_last_error());

  /* too small a workspace: below the one-thread plan, and NULL */
  d = shape(2, 9, 8, 20, 24, 1, 1);
  size_t nx = (size_t)2 * 9 * 8 * 20, ny = (size_t)2 * 9 * 8 * 24, nw = (size_t)24 * 9 * 20;
  float *x = rand_f(nx, 1), *w = rand_f(nw, 2), *y = alloc_f(ny), *dy = rand_f(ny, 3);
  float *dx = alloc_f(nx), *dw = alloc_f(nw);
  const cnn_conv_dir dirs[3] = {CNN_CONV_FWD, CNN_CONV_BWD_DATA, CNN_CONV_BWD_FILTER};
  const char *names[3] = {"wino_fwd", "wino_bwd_data", "wino_bwd_filter"};
  for (int i = 0; i < 3; i++) {
    size_t one = cpu_wino_workspace(&d, dirs[i], 1), two = cpu_wino_workspace(&d, dirs[i], 2);
    CHECK(one > 0 && two >= one, "%s workspace %zu (1 thread) %zu (2)", names[i], one, two);
    void *ws = alloc_ws(two);
    for (int t = 0; t < 2; t++) {
      size_t give = t ? one - 1 : 0;
      void *p = t ? ws : NULL;
      if (i == 0) st = cpu_wino_fwd(&d, x, w, NULL, CNN_ACT_LINEAR, 0.0f, y, p, give);
      else if (i == 1) st = cpu_wino_bwd_data(&d, dy, w, dx, p, give);
      else st = cpu_wino_bwd_filter(&d, x, dy, dw, NULL, p, give);
      CHECK(st == CNN_ERR_ARG && strstr(cnn_last_error(), names[i]) &&
                strstr(cnn_last_error(), "workspace"),
            "%s refuses %zu bytes of workspace: %s", names[i], give, cnn_last_error());
    }
    /* the one-thread size is enough (a smaller team is planned) */
    memset(dx, 0, nx * sizeof *dx);
    if (i == 0) st = cpu_wino_fwd(&d, x, w, NULL, CNN_ACT_LINEAR, 0.0f, y, ws, one);
    else if (i == 1) st = cpu_wino_bwd_data(&d, dy, w, dx, ws, one);
    else st = cpu_wino_bwd_filter(&d, x, dy, dw, NULL, ws, one);
    CHECK(st == CNN_OK, "%s runs in the one-thread workspace: %s", names[i], cnn_last_error());
    free(ws);
  }
  free(x); free(w); free(y); free(dy); free(dx); free(dw);
}

/* ---- timing mode (not run by ctest):
 *   OMP_WAIT_POLICY=passive OMP_NUM_THREADS=2 build/test_cpu_wino --bench [rounds]
 * times the three passes of Winograd, of cpu_own_conv_* (im2col + gemm) and of
 * oneDNN (its weight layout, reordered every call as in training; where the build
 * has it), fwd with bias + relu, on resnet9's and fashion's 3x3 layers, the
 * engines interleaved, and prints medians of wall time and of process CPU time;
 * WINO_BENCH_ONLY=n,h,c,k times one shape (h x h, pad 1) instead ---- */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* CPU time of the whole process (all threads): on a machine shared with other
 * jobs it counts the work done rather than the waiting for a core (run the bench
 * with OMP_WAIT_POLICY=passive so that barrier spinning is not counted either) */
static double cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static cpu_dnnl *dnnl; /* oneDNN where the build has it (else NULL: not timed) */

static void bench_shape(const char *model, int n, int h, int c, int k, int rounds) {
  cnn_conv_desc d = shape(n, h, h, c, k, 1, 1);
  size_t nx = (size_t)n * h * h * c, ny = (size_t)n * h * h * k, nw = (size_t)k * 9 * c;
  float *x = rand_f(nx, 1), *w = rand_f(nw, 2), *bias = rand_f((size_t)k, 3);
  float *dy = rand_f(ny, 4), *y = alloc_f(ny), *dx = alloc_f(nx), *dw = alloc_f(nw);
  float *db = alloc_f((size_t)k);
  memset(dx, 0, nx * sizeof *dx);
  size_t ws_w = ws_max(&d), ws_g = cpu_conv_workspace(NULL, &d);
  void *wsw = alloc_ws(ws_w), *wsg = alloc_ws(ws_g ? ws_g : 1);
  const int engines = dnnl ? 3 : 2;
  double t[3][3][64], u[3][3][64];
  if (rounds > 64) rounds = 64;
  for (int it = -1; it < rounds; it++) /* round -1: warm-up */
    for (int e = 0; e < engines; e++)
      for (int pass = 0; pass < 3; pass++) {
        double t0 = now_ms(), c0 = cpu_ms();
        cnn_status st;
        if (e == 0) {
          st = pass == 0   ? cpu_wino_fwd(&d, x, w, bias, CNN_ACT_RELU, 0.0f, y, wsw, ws_w)
               : pass == 1 ? cpu_wino_bwd_data(&d, dy, w, dx, wsw, ws_w)
                           : cpu_wino_bwd_filter(&d, x, dy, dw, db, wsw, ws_w);
        } else if (e == 1) {
          st = pass == 0 ? cpu_own_conv_fwd_act(NULL, &d, x, w, bias, CNN_ACT_RELU, 0.0f, y, wsg,
                                                ws_g)
               : pass == 1 ? cpu_own_conv_bwd_data(NULL, &d, dy, w, dx, wsg, ws_g)
                           : cpu_own_conv_bwd_filter(NULL, &d, x, dy, dw, db, wsg, ws_g);
        } else { /* oneDNN's own weight layout, reordered every call (training) */
          st = pass == 0 ? cpu_dnnl_fwd(dnnl, &d, CPU_DNNL_ANY, x, w, NULL, 0, bias, CNN_ACT_RELU,
                                        0.0f, y)
               : pass == 1 ? cpu_dnnl_bwd_data(dnnl, &d, CPU_DNNL_ANY, dy, w, dx)
                           : cpu_dnnl_bwd_filter(dnnl, &d, CPU_DNNL_ANY, x, dy, dw, db);
        }
        double t1 = now_ms(), c1 = cpu_ms();
        if (st != CNN_OK) fprintf(stderr, "bench: %s\n", cnn_last_error());
        if (it >= 0) {
          t[e][pass][it] = t1 - t0;
          u[e][pass][it] = c1 - c0;
        }
      }
  static const char *pn[3] = {"fwd", "bwd_data", "bwd_filter"};
  for (int pass = 0; pass < 3; pass++) {
    double m[3] = {0, 0, 0}, cm[3] = {0, 0, 0};
    for (int e = 0; e < engines; e++) {
      m[e] = median(t[e][pass], rounds);
      cm[e] = median(u[e][pass], rounds);
    }
    printf("| %-7s | %3d | %2dx%-2d | %3d -> %3d | %-10s | %7.2f | %7.2f | %7.2f | %7.2f | "
           "%7.2f | %7.2f | %5.2f | %5.2f | %d |\n",
           model, n, h, h, c, k, pn[pass], m[0], m[1], m[2], cm[0], cm[1], cm[2],
           cm[1] / cm[0], dnnl ? cm[2] / cm[0] : 0.0, cpu_wino_wins(&d, (cnn_conv_dir)pass));
  }
  fflush(stdout);
  free(x); free(w); free(bias); free(dy); free(y); free(dx); free(dw); free(db);
  free(wsw); free(wsg);
}

static int bench(int rounds) {
  printf("threads %d, rounds %d (medians, engines interleaved)\n", omp_get_max_threads(), rounds);
  dnnl = cpu_dnnl_create();
  printf("%s; ms: medians of wall time and of process CPU time (all threads); ratios: "
         "CPU time of the other engine over Winograd's\n",
         dnnl ? cpu_dnnl_describe(dnnl) : "no oneDNN in this build");
  printf("| model   |   n | h x w | c -> k     | pass       | wino | im2col | onednn | "
         "wino cpu | im2col cpu | onednn cpu | im2col/wino | onednn/wino | wins |\n");
  printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  const char *only = getenv("WINO_BENCH_ONLY");
  if (only) {
    int n, h, c, k;
    if (sscanf(only, "%d,%d,%d,%d", &n, &h, &c, &k) == 4) bench_shape("custom", n, h, c, k, rounds);
    cpu_dnnl_destroy(dnnl);
    return 0;
  }
  bench_shape("resnet9", 64, 28, 64, 128, rounds);
  bench_shape("resnet9", 64, 28, 128, 128, rounds);
  bench_shape("resnet9", 64, 14, 128, 128, rounds);
  bench_shape("resnet9", 64, 14, 128, 256, rounds);
  bench_shape("resnet9", 64, 7, 256, 256, rounds);
  bench_shape("resnet9", 64, 7, 256, 512, rounds);
  bench_shape("resnet9", 64, 4, 512, 512, rounds);
  bench_shape("fashion", 128, 28, 1, 24, rounds);
  bench_shape("fashion", 128, 14, 24, 48, rounds);
  bench_shape("fashion", 128, 7, 48, 96, rounds);
  cpu_dnnl_destroy(dnnl);
  return 0;
}

int main(int argc, char **argv) {
  cnn_backend *cpu = NULL;
  CHECK_OK(cnn_backend_cpu_create(&cpu)); /* single-threaded OpenBLAS, as the backend runs it */
  if (argc > 1 && !strcmp(argv[1], "--bench")) {
    int r = bench(argc > 2 ? atoi(argv[2]) : 7);
    cnn_backend_destroy(cpu);
    return r;
  }
  CHECK_OK(cnn_backend_ref_create(&ref));
  if (!ref) return tu_finish("test_cpu_wino");

  check_refusals();

  static const int cs[6] = {1, 3, 8, 17, 64, 130};
  static const int hs[7] = {1, 2, 4, 5, 7, 13, 28};
  int count = 0;
  for (int i = 0; i < 6; i++)
    for (int j = 0; j < 6; j++)
      for (int v = 0; v < 3; v++) {
        int q = i * 6 + j;
        int h = hs[(q + 3 * v) % 7], w = hs[(2 * q + v + 1) % 7];
        int ph = (q + v) % 3, pw = (q + 2 * v) % 3;
        int n = 1 + (q + 2 * v) % 5;
        /* an output of at least 1 x 1 */
        while (h + 2 * ph - 2 < 1) ph++;
        while (w + 2 * pw - 2 < 1) pw++;
        int c = cs[i], k = cs[j];
        /* keep ref's direct loops to a few seconds: shrink the big ones */
        while ((double)n * h * w * c * k > 4e6 && n > 1) n--;
        while ((double)n * h * w * c * k > 4e6 && (h > 7 || w > 7)) {
          if (h > 7) h = h == 28 ? 13 : 7;
          if (w > 7) w = w == 28 ? 13 : 7;
        }
        cnn_act act = (cnn_act)(count % CNN_ACT_COUNT);
        check_case(n, h, w, c, k, ph, pw, act, count % 2 == 0, count % 3 != 1,
                   1000 + 10 * (uint64_t)count);
        count++;
      }
  /* dU over 4 MiB: backward-filter's shared-block scheme (on 2 threads) */
  check_case(3, 9, 7, 130, 256, 1, 0, CNN_ACT_TANH, 1, 1, 9);
  check_case(2, 4, 4, 256, 130, 1, 1, CNN_ACT_SIGMOID, 0, 1, 10);
  /* a batch of 28 x 28 images at the sizes the nets run */
  check_case(3, 28, 28, 24, 48, 1, 1, CNN_ACT_RELU, 1, 1, 7);
  check_case(2, 14, 14, 64, 130, 1, 1, CNN_ACT_LEAKY, 1, 1, 8);
  printf("%d shapes; worst |got - ref| / (u S): fwd %.1f, bwd_data %.1f, bwd_filter %.1f\n",
         count + 4, worst_ratio[0], worst_ratio[1], worst_ratio[2]);

  omp_set_num_threads(1); /* the suite's other shapes ran on the default team */
  check_case(3, 13, 11, 17, 64, 1, 2, CNN_ACT_RELU6, 1, 1, 21);
  check_case(5, 28, 28, 8, 8, 1, 1, CNN_ACT_GELU, 0, 1, 22);
  omp_set_num_threads(2);
  check_case(3, 13, 11, 17, 64, 1, 2, CNN_ACT_RELU6, 1, 1, 21);
  check_case(5, 28, 28, 8, 8, 1, 1, CNN_ACT_GELU, 0, 1, 22);
  /* the bound above is a worst case; this guard is empirical: 10x the worst ratio
   * measured (7), so that a loss of accuracy (other points, a transform rewritten
   * less carefully) shows long before an outright bug would */
  for (int i = 0; i < 3; i++)
    CHECK(worst_ratio[i] <= 64.0, "pass %d: worst |got - ref| / (u S) %.1f > 64", i,
          worst_ratio[i]);
  check_threads(5, 28, 8, 8);
  check_threads(4, 13, 17, 64);
  check_threads(3, 9, 130, 256);
  check_threads(20, 13, 130, 256); /* 320 tiles: two shared blocks of backward-filter */
  check_threads(8, 14, 64, 64);

  cnn_backend_destroy(ref);
  cnn_backend_destroy(cpu);
  return tu_finish("test_cpu_wino");
}
