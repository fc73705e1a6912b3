/* cpu: batch normalisation over channels (x is [rows = n*h*w, c]) and softmax
 * cross-entropy with label smoothing.
 *
 * Batch-norm statistics are column sums in double over fixed row chunks
 * (cpu_colsum), so they do not depend on the thread count; the per-row passes are
 * split over rows and vectorised over channels. */
#include <math.h>
#include <stdlib.h>

#include "backend/cpu/cpu.h"

/* Loops with a select (x > 0 ? a : b) vectorise only if GCC may evaluate both
 * sides; nothing here reads floating-point exception flags. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

/* ---- batch norm ---- */

void cpu_bn_bwd_coeffs(size_t rows, int c, const float *gamma, const float *save_invstd,
                       const double *sums, float *dgamma, float *dbeta, float *a, float *b,
                       float *k) {
  for (int j = 0; j < c; j++) {
    double invstd = save_invstd[j];
    double sum_g = sums[j], sum_g_xhat = sums[c + j] * invstd;
    dbeta[j] = (float)sum_g;
    dgamma[j] = (float)sum_g_xhat;
    a[j] = (float)(gamma[j] * invstd);
    b[j] = (float)(sum_g / (double)rows);
    k[j] = (float)(sum_g_xhat * invstd / (double)rows);
  }
}

cnn_status cpu_check_bn(size_t rows, int c, const char *op) {
  if (c < 1) return cnn_error(CNN_ERR_ARG, "cpu %s: %d channels", op, c);
  if (rows < 1) return cnn_error(CNN_ERR_ARG, "cpu %s: batch statistics of 0 rows", op);
  return CNN_OK;
}

cnn_status cpu_scratch_get(cpu_scratch *s, int c, int nd, int nf, const char *op) {
  s->heap = NULL;
  if (c <= 256) {
    s->d = s->stack_d;
    s->f = s->stack_f;
    return CNN_OK;
  }
  size_t dbytes = (size_t)nd * c * sizeof(double);
  CNN_TRY(cpu_alloc_aligned(dbytes + (size_t)nf * c * sizeof(float), op, &s->heap));
  s->d = s->heap;
  s->f = (float *)((char *)s->heap + dbytes);
  return CNN_OK;
}

/* One pass over x (it is read once more to normalise, so a second statistics pass
 * would be a third of the forward's memory traffic): sums of t and t^2 in double
 * about a shift, t = x - x[0, j]. var = E[t^2] - E[t]^2 cancels only as far as the
 * mean lies from the first row in standard deviations: at 1e3 of them it loses 20
 * of double's 53 bits, still far below f32's 24. The caller's var/mean arrays hold
 * c doubles, var 2c (its second half is scratch for the sums). */
cnn_status cpu_bn_stats(size_t rows, int c, const float *x, double *mean, double *var,
                        const char *op) {
  double *sums = var; /* [sum t | sum t^2], then overwritten by var in place */
  for (int j = 0; j < c; j++) mean[j] = x[j];
  double *shift = mean;
  CNN_TRY(cpu_colsum(rows, (size_t)c, (size_t)c, x, NULL, shift, 1, sums, op));
  for (int j = 0; j < c; j++) {
    double m1 = sums[j] / (double)rows, v = sums[c + j] / (double)rows - m1 * m1;
    mean[j] = shift[j] + m1;
    var[j] = v > 0 ? v : 0.0;
  }
  return CNN_OK;
}

/* Tile by tile (cpu_tile_shape): normalise a tile, then activate it while it is
 * in L1, so the fused op reads x and writes y once. */
void cpu_bn_act_apply(size_t rows, int c, const float *x, const float *mean,
                      const float *scale, const float *shift, cnn_act act, float alpha,
                      float *y) {
  size_t trows, tcols;
  cpu_tile_shape(c, &trows, &tcols);
  size_t blocks = (rows + trows - 1) / trows;
  int par = rows > 1 && rows * c >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
  for (size_t bk = 0; bk < blocks; bk++) {
    size_t r0 = bk * trows, rn = rows - r0 < trows ? rows - r0 : trows;
    for (size_t j0 = 0; j0 < (size_t)c; j0 += tcols) {
      size_t w = (size_t)c - j0 < tcols ? (size_t)c - j0 : tcols;
      for (size_t r = r0; r < r0 + rn; r++) {
        const float *xr = x + r * c + j0;
        float *yr = y + r * c + j0;
        const float *m = mean + j0, *sc = scale + j0, *sh = shift + j0;
#pragma omp simd
        for (size_t j = 0; j < w; j++) yr[j] = (xr[j] - m[j]) * sc[j] + sh[j];
      }
      if (act != CNN_ACT_LINEAR) {
        float *t = y + r0 * c + j0;
        cpu_act_fwd_block(act, alpha, rn * w, t, t);
      }
    }
  }
}

/* Training: batch mean / biased variance (two passes); save mean and invstd; move
 * the running stats towards the batch mean and the unbiased variance (a single
 * row has none, so its biased variance is used, as in ref). x may equal y. */
cnn_status cpu_bn_fwd_train(void *ctx, size_t rows, int c, const float *x, const float *gamma,
                            const float *beta, float eps, float momentum, float *running_mean,
                            float *running_var, float *save_mean, float *save_invstd,
                            float *y) {
  const char *op = "bn_fwd_train";
  CNN_TRY(cpu_check_bn(rows, c, op));
  CPU_NEED(x, op);
  CPU_NEED(gamma, op);
  CPU_NEED(beta, op);
  CPU_NEED(running_mean, op);
  CPU_NEED(running_var, op);
  CPU_NEED(save_mean, op);
  CPU_NEED(save_invstd, op);
  CPU_NEED(y, op);
  cpu_scratch s;
  CNN_TRY(cpu_scratch_get(&s, c, 3, 2, op));
  double *mean = s.d, *var = s.d + c; /* var: 2c (cpu_bn_stats) */
  float *meanf = s.f, *scale = s.f + c;
  cnn_status st = cpu_bn_stats(rows, c, x, mean, var, op);
  if (st == CNN_OK) {
    for (int j = 0; j < c; j++) {
      double v = var[j];
      double invstd = 1.0 / sqrt(v + eps);
      double unbiased = rows > 1 ? v * (double)rows / (double)(rows - 1) : v;
      running_mean[j] = (float)((1.0 - momentum) * running_mean[j] + momentum * mean[j]);
      running_var[j] = (float)((1.0 - momentum) * running_var[j] + momentum * unbiased);
      save_mean[j] = (float)mean[j];
      save_invstd[j] = (float)invstd;
      meanf[j] = (float)mean[j];
      scale[j] = (float)(gamma[j] * invstd);
    }
    cpu_bn_act_apply(rows, c, x, meanf, scale, beta, CNN_ACT_LINEAR, 0.0f, y);
  }
  free(s.heap);
  return st;
}

/* Inference: y = gamma (x - running_mean) / sqrt(running_var + eps) + beta */
cnn_status cpu_bn_fwd_infer(void *ctx, size_t rows, int c, const float *x, const float *gamma,
                            const float *beta, const float *running_mean,
                            const float *running_var, float eps, float *y) {
  const char *op = "bn_fwd_infer";
  if (c < 1) return cnn_error(CNN_ERR_ARG, "cpu %s: %d channels", op, c);
  CPU_NEED(x, op);
  CPU_NEED(gamma, op);
  CPU_NEED(beta, op);
  CPU_NEED(running_mean, op);
  CPU_NEED(running_var, op);
  CPU_NEED(y, op);
  cpu_scratch s;
  CNN_TRY(cpu_scratch_get(&s, c, 0, 1, op));
  float *scale = s.f;
  for (int j = 0; j < c; j++) scale[j] = (float)(gamma[j] / sqrt((double)running_var[j] + eps));
  cpu_bn_act_apply(rows, c, x, running_mean, scale, beta, CNN_ACT_LINEAR, 0.0f, y);
  free(s.heap);
  return CNN_OK;
}

/* With xhat = (x - mean) invstd:
 *   dbeta = sum dy;  dgamma = sum dy xhat   (overwritten)
 *   dx += gamma invstd / rows (rows dy - dbeta - xhat dgamma) */
cnn_status cpu_bn_bwd(void *ctx, size_t rows, int c, const float *x, const float *dy,
                      const float *gamma, const float *save_mean, const float *save_invstd,
                      float *dx, float *dgamma, float *dbeta) {
  const char *op = "bn_bwd";
  CNN_TRY(cpu_check_bn(rows, c, op));
  CPU_NEED(x, op);
  CPU_NEED(dy, op);
  CPU_NEED(gamma, op);
  CPU_NEED(save_mean, op);
  CPU_NEED(save_invstd, op);
  CPU_NEED(dx, op);
  CPU_NEED(dgamma, op);
  CPU_NEED(dbeta, op);
  cpu_scratch s;
  CNN_TRY(cpu_scratch_get(&s, c, 3, 3, op));
  double *center = s.d, *sums = s.d + c; /* sums: [sum dy | sum dy (x - mean)] */
  float *a = s.f, *b = s.f + c, *k = s.f + 2 * c;
  for (int j = 0; j < c; j++) center[j] = save_mean[j];
  cnn_status st = cpu_colsum(rows, (size_t)c, (size_t)c, dy, x, center, 2, sums, op);
  if (st == CNN_OK) {
    cpu_bn_bwd_coeffs(rows, c, gamma, save_invstd, sums, dgamma, dbeta, a, b, k);
    const float *mean = save_mean;
    int par = rows > 1 && rows * c >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
    for (size_t r = 0; r < rows; r++) {
      const float *xr = x + r * c, *dyr = dy + r * c;
      float *dxr = dx + r * c;
#pragma omp simd
      for (int j = 0; j < c; j++) dxr[j] += a[j] * (dyr[j] - b[j] - (xr[j] - mean[j]) * k[j]);
    }
  }
  free(s.heap);
  return st;
}

/* ---- softmax cross-entropy ---- */

cnn_status cpu_check_xent(int n, int classes, const int32_t *labels, float smoothing,
                          const char *op) {
  if (n < 0 || classes < 1)
    return cnn_error(CNN_ERR_ARG, "cpu %s: n=%d classes=%d", op, n, classes);
  if (!(smoothing >= 0.0f && smoothing <= 1.0f))
    return cnn_error(CNN_ERR_ARG, "cpu %s: label smoothing %g is not in [0, 1]", op, smoothing);
  for (int i = 0; i < n; i++)
    if (labels[i] < 0 || labels[i] >= classes)
      return cnn_error(CNN_ERR_ARG, "cpu %s: label %d of row %d is not in [0, %d)", op,
                       (int)labels[i], i, classes);
  return CNN_OK;
}

/* z = inv_temp * logits (exact for inv_temp == 1); p = exp(z - max) / sum in
 * float, the sum and the log-sum-exp in double */
double cpu_softmax_row(int classes, const float *logits, float inv_temp, float *p,
                       double *zsum) {
  float zmax = inv_temp * logits[0];
  for (int j = 1; j < classes; j++) {
    float z = inv_temp * logits[j];
    zmax = z > zmax ? z : zmax;
  }
  double sum = 0.0, zs = 0.0;
  for (int j = 0; j < classes; j++) {
    float z = inv_temp * logits[j];
    p[j] = expf(z - zmax);
    sum += p[j];
    zs += z;
  }
  float inv = (float)(1.0 / sum);
#pragma omp simd
  for (int j = 0; j < classes; j++) p[j] *= inv;
  *zsum = zs;
  return zmax + log(sum);
}

void cpu_xent_grad_row(int classes, const float *p, int label, float on, float off, float scale,
                       float *g) {
#pragma omp simd
  for (int j = 0; j < classes; j++) g[j] += scale * (p[j] - (j == label ? on : off));
}

/* probs = softmax(logits); loss[i] = -sum_j t_j log p_j = lse - sum_j t_j z_j
 * (the targets sum to 1), with lse = max + log sum exp(z - max) */
cnn_status cpu_softmax_xent_fwd(void *ctx, int n, int classes, const float *logits,
                                const int32_t *labels, float smoothing, float *probs,
                                float *loss) {
  const char *op = "softmax_xent_fwd";
  CPU_NEED(logits, op);
  CPU_NEED(labels, op);
  CPU_NEED(probs, op);
  CPU_NEED(loss, op);
  CNN_TRY(cpu_check_xent(n, classes, labels, smoothing, op));
  const double on = 1.0 - smoothing, off = (double)smoothing / classes;
  int par = n > 1 && (size_t)n * classes >= CPU_PAR_MIN / 8;
#pragma omp parallel for schedule(static) if (par)
  for (int i = 0; i < n; i++) {
    const float *z = logits + (size_t)i * classes;
    double zsum;
    double lse = cpu_softmax_row(classes, z, 1.0f, probs + (size_t)i * classes, &zsum);
    loss[i] = (float)(lse - on * z[labels[i]] - off * zsum);
  }
  return CNN_OK;
}

/* dlogits += scale (probs - target) */
cnn_status cpu_softmax_xent_bwd(void *ctx, int n, int classes, const float *probs,
                                const int32_t *labels, float smoothing, float scale,
                                float *dlogits) {
  const char *op = "softmax_xent_bwd";
  CPU_NEED(probs, op);
  CPU_NEED(labels, op);
  CPU_NEED(dlogits, op);
  CNN_TRY(cpu_check_xent(n, classes, labels, smoothing, op));
  const float off = (float)((double)smoothing / classes);
  const float on = (float)(1.0 - smoothing + (double)smoothing / classes);
  int par = n > 1 && (size_t)n * classes >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
  for (int i = 0; i < n; i++) {
    cpu_xent_grad_row(classes, probs + (size_t)i * classes, labels[i], on, off, scale,
                      dlogits + (size_t)i * classes);
  }
  return CNN_OK;
}
