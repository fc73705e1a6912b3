/* cpu: batch norm fused with an activation (x is [rows = n*h*w, c]), the deferred
 * running-statistics update, and folding an inference BN into the conv before it.
 *
 * The fused ops work tile by tile (cpu_tile_shape): a tile is normalised and
 * activated (forward) or has its z and g = dy act'(z) recomputed (backward) while
 * it sits in L1, so no full-size temporary exists and x, dy are read once per pass.
 * Statistics and the backward sums use the fixed row chunks of cpu_reduce_rows in
 * double, so no result depends on the thread count. The arithmetic is that of
 * bn_fwd_train / bn_bwd and act_fwd / act_bwd (the same kernels): the forwards
 * give the chain's bits for every activation, the backward for LINEAR; otherwise
 * its z is rebuilt from the saved f32 invstd, not the forward's double one, so
 * it may differ in the last bits (or flip a ReLU kink for z within an ulp of 0).
 * The backward evaluates act' twice (once per pass) instead of storing g: cheap
 * for ReLU/leaky, a real cost for GELU/sigmoid/tanh. */
#include <math.h>
#include <stdlib.h>

#include "backend/cpu/cpu.h"

/* Loops with a select vectorise only if GCC may evaluate both sides; nothing here
 * reads floating-point exception flags. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

/* Training forward: statistics (two chunked passes), then one pass that
 * normalises and activates. Running statistics wait for bn_commit. */
cnn_status cpu_bn_act_fwd_train(void *ctx, size_t rows, int c, const float *x,
                                const float *gamma, const float *beta, float eps, cnn_act act,
                                float alpha, float *save_mean, float *save_invstd,
                                float *save_var, float *y) {
  const char *op = "bn_act_fwd_train";
  CNN_TRY(cpu_check_bn(rows, c, op));
  CNN_TRY(cpu_check_act(act, op));
  CPU_NEED(x, op);
  CPU_NEED(gamma, op);
  CPU_NEED(beta, op);
  CPU_NEED(save_mean, op);
  CPU_NEED(save_invstd, op);
  CPU_NEED(save_var, op);
  CPU_NEED(y, op);
  cpu_scratch s;
  CNN_TRY(cpu_scratch_get(&s, c, 3, 1, op));
  double *mean = s.d, *var = s.d + c; /* var: 2c (cpu_bn_stats) */
  float *scale = s.f;
  cnn_status st = cpu_bn_stats(rows, c, x, mean, var, op);
  if (st == CNN_OK) {
    for (int j = 0; j < c; j++) {
      double invstd = 1.0 / sqrt(var[j] + eps);
      save_mean[j] = (float)mean[j];
      save_invstd[j] = (float)invstd;
      save_var[j] = (float)var[j];
      scale[j] = (float)(gamma[j] * invstd);
    }
    cpu_bn_act_apply(rows, c, x, save_mean, scale, beta, act, alpha, y);
  }
  free(s.heap);
  return st;
}

/* y = act(gamma (x - rmean) / sqrt(rvar + eps) + beta), one pass */
cnn_status cpu_bn_act_fwd_infer(void *ctx, size_t rows, int c, const float *x,
                                const float *gamma, const float *beta, const float *rmean,
                                const float *rvar, float eps, cnn_act act, float alpha,
                                float *y) {
  const char *op = "bn_act_fwd_infer";
  if (c < 1) return cnn_error(CNN_ERR_ARG, "cpu %s: %d channels", op, c);
  CNN_TRY(cpu_check_act(act, op));
  CPU_NEED(x, op);
  CPU_NEED(gamma, op);
  CPU_NEED(beta, op);
  CPU_NEED(rmean, op);
  CPU_NEED(rvar, op);
  CPU_NEED(y, op);
  cpu_scratch s;
  CNN_TRY(cpu_scratch_get(&s, c, 0, 1, op));
  float *scale = s.f;
  for (int j = 0; j < c; j++) scale[j] = (float)(gamma[j] / sqrt((double)rvar[j] + eps));
  cpu_bn_act_apply(rows, c, x, rmean, scale, beta, act, alpha, y);
  free(s.heap);
  return CNN_OK;
}

/* ---- backward ---- */

typedef struct bnact_bwd {
  size_t rows;
  int c;
  const float *x, *dy;
  const float *mean, *scale, *beta; /* z = (x - mean) scale + beta */
  const double *center;             /* mean in double (the sums' centre, as bn_bwd) */
  cnn_act act;
  float alpha;
  const float *a, *b, *k;           /* dx += a (g - b - (x - mean) k) */
  float *dx;
  int set;                          /* dx = 0 + a (...): dx is not read */
} bnact_bwd;

/* g = dy act'(z) of the tile at row r0, channel j0 (rn rows of w channels, one
 * contiguous run) into gbuf; LINEAR needs no z and returns dy itself */
static const float *tile_grad(const bnact_bwd *p, size_t r0, size_t rn, size_t j0, size_t w,
                              float *zbuf, float *gbuf) {
  const size_t c = (size_t)p->c, off = r0 * c + j0, len = rn * w;
  if (p->act == CNN_ACT_LINEAR) return p->dy + off;
  const float *m = p->mean + j0, *sc = p->scale + j0, *bt = p->beta + j0;
  if (p->act == CNN_ACT_RELU || p->act == CNN_ACT_LEAKY) { /* one loop, no z buffer */
    const float lo = p->act == CNN_ACT_RELU ? 0.0f : p->alpha;
    for (size_t i = 0; i < rn; i++) {
      const float *xr = p->x + off + i * c, *dyr = p->dy + off + i * c;
      float *gr = gbuf + i * w;
      /* 0 + ...: the bits of act_bwd into a zeroed buffer (no -0) */
#pragma omp simd
      for (size_t j = 0; j < w; j++) {
        float z = (xr[j] - m[j]) * sc[j] + bt[j];
        gr[j] = 0.0f + dyr[j] * (z > 0.0f ? 1.0f : lo);
      }
    }
    return gbuf;
  }
  for (size_t i = 0; i < rn; i++) {
    const float *xr = p->x + off + i * c;
    float *zr = zbuf + i * w;
#pragma omp simd
    for (size_t j = 0; j < w; j++) zr[j] = (xr[j] - m[j]) * sc[j] + bt[j];
  }
  for (size_t i = 0; i < len; i++) gbuf[i] = 0.0f;
  cpu_act_bwd_block(p->act, p->alpha, len, zbuf, p->dy + off, gbuf);
  return gbuf;
}

/* rows [r0, r1): acc[j] += g, acc[c + j] += g (x - mean), as cpu_colsum mode 2 */
static void bnact_sums(size_t r0, size_t r1, const void *varg, double *acc) {
  const bnact_bwd *p = varg;
  const size_t c = (size_t)p->c;
  size_t trows, tcols;
  cpu_tile_shape(p->c, &trows, &tcols);
  float zbuf[CPU_TILE], gbuf[CPU_TILE];
  for (size_t r = r0; r < r1; r += trows) {
    size_t rn = r1 - r < trows ? r1 - r : trows;
    for (size_t j0 = 0; j0 < c; j0 += tcols) {
      size_t w = c - j0 < tcols ? c - j0 : tcols;
      const float *g = tile_grad(p, r, rn, j0, w, zbuf, gbuf);
      const double *ctr = p->center + j0;
      double *s1 = acc + j0, *s2 = acc + c + j0;
      for (size_t i = 0; i < rn; i++) {
        const float *gr = g + i * w, *xr = p->x + (r + i) * c + j0;
#pragma omp simd
        for (size_t j = 0; j < w; j++) {
          s1[j] += gr[j];
          s2[j] += gr[j] * (xr[j] - ctr[j]);
        }
      }
    }
  }
}

/* dx += a (g - b - (x - mean) k), g recomputed tile by tile (set: dx = 0 + ..., the
 * bits of a zeroed dx plus the term, without reading dx) */
static void bnact_dx(const bnact_bwd *p) {
  const size_t c = (size_t)p->c, rows = p->rows;
  size_t trows, tcols;
  cpu_tile_shape(p->c, &trows, &tcols);
  size_t blocks = (rows + trows - 1) / trows;
  int par = rows > 1 && rows * c >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
  for (size_t bk = 0; bk < blocks; bk++) {
    float zbuf[CPU_TILE], gbuf[CPU_TILE];
    size_t r = bk * trows, rn = rows - r < trows ? rows - r : trows;
    for (size_t j0 = 0; j0 < c; j0 += tcols) {
      size_t w = c - j0 < tcols ? c - j0 : tcols;
      const float *g = tile_grad(p, r, rn, j0, w, zbuf, gbuf);
      const float *a = p->a + j0, *b = p->b + j0, *k = p->k + j0, *m = p->mean + j0;
      for (size_t i = 0; i < rn; i++) {
        const float *gr = g + i * w, *xr = p->x + (r + i) * c + j0;
        float *dxr = p->dx + (r + i) * c + j0;
        if (p->set) {
#pragma omp simd
          for (size_t j = 0; j < w; j++)
            dxr[j] = 0.0f + a[j] * (gr[j] - b[j] - (xr[j] - m[j]) * k[j]);
        } else {
#pragma omp simd
          for (size_t j = 0; j < w; j++) dxr[j] += a[j] * (gr[j] - b[j] - (xr[j] - m[j]) * k[j]);
        }
      }
    }
  }
}

static cnn_status bn_act_bwd(size_t rows, int c, const float *x, const float *dy,
                             const float *gamma, const float *beta, const float *save_mean,
                             const float *save_invstd, cnn_act act, float alpha, float *dx,
                             float *dgamma, float *dbeta, int set, const char *op) {
  CNN_TRY(cpu_check_bn(rows, c, op));
  CNN_TRY(cpu_check_act(act, op));
  CPU_NEED(x, op);
  CPU_NEED(dy, op);
  CPU_NEED(gamma, op);
  CPU_NEED(beta, op);
  CPU_NEED(save_mean, op);
  CPU_NEED(save_invstd, op);
  CPU_NEED(dx, op);
  CPU_NEED(dgamma, op);
  CPU_NEED(dbeta, op);
  cpu_scratch s;
  CNN_TRY(cpu_scratch_get(&s, c, 3, 4, op));
  double *center = s.d, *sums = s.d + c; /* sums: [sum g | sum g (x - mean)] */
  float *scale = s.f, *a = s.f + c, *b = s.f + 2 * c, *k = s.f + 3 * c;
  for (int j = 0; j < c; j++) {
    center[j] = save_mean[j];
    scale[j] = (float)(gamma[j] * (double)save_invstd[j]); /* as the forward's scale */
  }
  bnact_bwd p = {rows, c, x, dy, save_mean, scale, beta, center, act, alpha, a, b, k, dx, set};
  cnn_status st = cpu_reduce_rows(rows, 2 * (size_t)c, (size_t)c, bnact_sums, &p, sums, op);
  if (st == CNN_OK) {
    cpu_bn_bwd_coeffs(rows, c, gamma, save_invstd, sums, dgamma, dbeta, a, b, k);
    bnact_dx(&p);
  }
  free(s.heap);
  return st;
}

cnn_status cpu_bn_act_bwd(void *ctx, size_t rows, int c, const float *x, const float *dy,
                          const float *gamma, const float *beta, const float *save_mean,
                          const float *save_invstd, cnn_act act, float alpha, float *dx,
                          float *dgamma, float *dbeta) {
  return bn_act_bwd(rows, c, x, dy, gamma, beta, save_mean, save_invstd, act, alpha, dx, dgamma,
                    dbeta, 0, "bn_act_bwd");
}

cnn_status cpu_bn_act_bwd_set(void *ctx, size_t rows, int c, const float *x, const float *dy,
                              const float *gamma, const float *beta, const float *save_mean,
                              const float *save_invstd, cnn_act act, float alpha, float *dx,
                              float *dgamma, float *dbeta) {
  return bn_act_bwd(rows, c, x, dy, gamma, beta, save_mean, save_invstd, act, alpha, dx, dgamma,
                    dbeta, 1, "bn_act_bwd_set");
}

/* ---- running statistics and folding ---- */

/* running += m (batch - running), with the unbiased batch variance; skipped for
 * a refused step so a bad batch never reaches the inference statistics */
cnn_status cpu_bn_commit(void *ctx, int c, size_t rows, float momentum, const float *save_mean,
                         const float *save_var, float *running_mean, float *running_var,
                         const cnn_step_state *st) {
  const char *op = "bn_commit";
  CPU_NEED(st, op);
  if (c < 0) return cnn_error(CNN_ERR_ARG, "cpu %s: %d channels", op, c);
  CPU_NEED(save_mean, op);
  CPU_NEED(save_var, op);
  CPU_NEED(running_mean, op);
  CPU_NEED(running_var, op);
  if (st->nonfinite) return CNN_OK;
  const double m = momentum, bessel = (double)rows / (double)(rows > 1 ? rows - 1 : 1);
  for (int j = 0; j < c; j++) {
    running_mean[j] = (float)((1.0 - m) * running_mean[j] + m * save_mean[j]);
    running_var[j] = (float)((1.0 - m) * running_var[j] + m * ((double)save_var[j] * bessel));
  }
  return CNN_OK;
}

/* wout = w s, bout = beta + (bias - rmean) s with s = gamma / sqrt(rvar + eps),
 * all in double and rounded once */
cnn_status cpu_bn_fold(void *ctx, int kout, size_t per_k, const float *w, const float *bias,
                       const float *gamma, const float *beta, const float *rmean,
                       const float *rvar, float eps, float *wout, float *bout) {
  const char *op = "bn_fold";
  if (kout < 0) return cnn_error(CNN_ERR_ARG, "cpu %s: %d output channels", op, kout);
  CPU_NEED(w, op);
  CPU_NEED(gamma, op);
  CPU_NEED(beta, op);
  CPU_NEED(rmean, op);
  CPU_NEED(rvar, op);
  CPU_NEED(wout, op);
  CPU_NEED(bout, op);
  int par = kout > 1 && (size_t)kout * per_k >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
  for (int kk = 0; kk < kout; kk++) {
    double sc = (double)gamma[kk] / sqrt((double)rvar[kk] + eps);
    const float *wk = w + (size_t)kk * per_k;
    float *ok = wout + (size_t)kk * per_k;
#pragma omp simd
    for (size_t i = 0; i < per_k; i++) ok[i] = (float)(wk[i] * sc);
    double b0 = bias ? bias[kk] : 0.0;
    bout[kk] = (float)(beta[kk] + (b0 - rmean[kk]) * sc);
  }
  return CNN_OK;
}
