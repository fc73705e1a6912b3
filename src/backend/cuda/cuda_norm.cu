/* CUDA batch normalisation over channels (x is [rows = n*h*w, c]) and softmax
 * cross-entropy with label smoothing.
 *
 * Batch norm statistics are two-pass per-channel column sums in double
 * (cnn_cuda_colsum: blocks over row chunks, partials summed in a fixed order, so
 * results are reproducible run to run); the per-element passes are grid-stride
 * loops. Softmax: one warp per row, reductions in a fixed shuffle order. */
#include <math.h>

#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_device.cuh"

/* ---- batch norm ------------------------------------------------------------------ */

/* mean_d[j] = sums[j] / rows (double, for the running stats); save_mean as float */
static __global__ void k_bn_mean(int c, size_t rows, const double *__restrict__ sums,
                                 double *__restrict__ mean_d, float *__restrict__ save_mean) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= c) return;
  double m = sums[j] / (double)rows;
  mean_d[j] = m;
  save_mean[j] = (float)m;
}

/* biased variance -> invstd (and save_var if non-NULL); running stats (if
 * non-NULL) move towards the batch mean and the unbiased variance (a single row
 * has none: its biased variance, 0, is used) */
static __global__ void k_bn_var(int c, size_t rows, float eps, float momentum,
                                const double *__restrict__ sq, const double *__restrict__ mean_d,
                                float *__restrict__ save_invstd, float *__restrict__ save_var,
                                float *__restrict__ running_mean, float *__restrict__ running_var) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= c) return;
  double var = sq[j] / (double)rows;
  save_invstd[j] = (float)(1.0 / sqrt(var + (double)eps));
  if (save_var) save_var[j] = (float)var;
  double unbiased = rows > 1 ? var * (double)rows / (double)(rows - 1) : var;
  double mom = (double)momentum;
  if (running_mean)
    running_mean[j] = (float)((1.0 - mom) * (double)running_mean[j] + mom * mean_d[j]);
  if (running_var)
    running_var[j] = (float)((1.0 - mom) * (double)running_var[j] + mom * unbiased);
}

/* y = act(gamma (x - mean) invstd + beta) (gamma NULL: 1, beta NULL: 0); x may
 * equal y. The pre-activation expression is the one k_bn_bwd_apply and colsum
 * mode 3 recompute: keep the three identical. */
static __global__ void k_bn_apply(size_t total, int c, const float *x, const float *mean,
                                  const float *invstd, const float *__restrict__ gamma,
                                  const float *__restrict__ beta, int act, float alpha, float *y) {
  GRID_STRIDE(i, total) {
    const int j = chan_of(i, c);
    const float g = gamma ? gamma[j] : 1.0f, b = beta ? beta[j] : 0.0f;
    y[i] = act_f(act, alpha, g * ((x[i] - mean[j]) * invstd[j]) + b);
  }
}

/* inference: invstd from the running variance, per element */
static __global__ void k_bn_infer(size_t total, int c, const float *x,
                                  const float *__restrict__ gamma, const float *__restrict__ beta,
                                  const float *__restrict__ rmean, const float *__restrict__ rvar,
                                  float eps, int act, float alpha, float *y) {
  GRID_STRIDE(i, total) {
    const int j = chan_of(i, c);
    const float g = gamma ? gamma[j] : 1.0f, b = beta ? beta[j] : 0.0f;
    const float invstd = 1.0f / sqrtf(rvar[j] + eps);
    y[i] = act_f(act, alpha, g * ((x[i] - rmean[j]) * invstd) + b);
  }
}

/* sum_dy = s0, sum_dy_xhat = s1 * invstd; dbeta/dgamma (overwrite) and the two
 * per-channel coefficients of dx: k1 = sum_dy / rows, k2 = sum_dy_xhat / rows */
static __global__ void k_bn_bwd_final(int c, size_t rows, const double *__restrict__ s0,
                                      const double *__restrict__ s1,
                                      const float *__restrict__ invstd, float *__restrict__ dgamma,
                                      float *__restrict__ dbeta, float *__restrict__ k1,
                                      float *__restrict__ k2) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= c) return;
  double sdy = s0[j], sdyx = s1[j] * (double)invstd[j];
  if (dbeta) dbeta[j] = (float)sdy;
  if (dgamma) dgamma[j] = (float)sdyx;
  k1[j] = (float)(sdy / (double)rows);
  k2[j] = (float)(sdyx / (double)rows);
}

/* dx += gamma invstd (g - sum_g/rows - xhat sum_g_xhat/rows), g = dy act'(z) with
 * z = gamma xhat + beta recomputed as k_bn_apply computes it (LINEAR: g = dy) */
static __global__ void k_bn_bwd_apply(size_t total, int c, const float *__restrict__ x,
                                      const float *__restrict__ dy,
                                      const float *__restrict__ gamma,
                                      const float *__restrict__ beta,
                                      const float *__restrict__ mean,
                                      const float *__restrict__ invstd,
                                      const float *__restrict__ k1, const float *__restrict__ k2,
                                      int act, float alpha, float *__restrict__ dx) {
  GRID_STRIDE(i, total) {
    const int j = chan_of(i, c);
    const float is = invstd[j];
    const float g = gamma ? gamma[j] : 1.0f;
    float gy = dy[i];
    if (act != CNN_ACT_LINEAR) {
      const float b = beta ? beta[j] : 0.0f;
      gy *= act_df(act, alpha, g * ((x[i] - mean[j]) * is) + b);
    }
    const float xhat = (x[i] - mean[j]) * is;
    dx[i] += g * is * (gy - k1[j] - xhat * k2[j]);
  }
}

static unsigned chan_blocks(int c) { return (unsigned)((c + 255) / 256); }

static cnn_status check_bn(size_t rows, int c, const char *op) {
  if (c < 1) return cnn_error(CNN_ERR_ARG, "cuda %s: %d channels", op, c);
  if (rows < 1) return cnn_error(CNN_ERR_ARG, "cuda %s: batch statistics of 0 rows", op);
  return CNN_OK;
}

static cnn_status check_act(cnn_act act, const char *op) {
  if ((int)act < 0 || (int)act >= CNN_ACT_COUNT)
    return cnn_error(CNN_ERR_ARG, "cuda %s: unknown activation %d", op, (int)act);
  return CNN_OK;
}

/* Training forward shared by bn_fwd_train (running stats updated, LINEAR) and
 * bn_act_fwd_train (running stats NULL: bn_commit does that later; save_var). */
static cnn_status bn_train(cnn_cuda_ctx *ctx, const char *op, size_t rows, int c, const float *x,
                           const float *gamma, const float *beta, float eps, float momentum,
                           float *running_mean, float *running_var, float *save_mean,
                           float *save_invstd, float *save_var, cnn_act act, float alpha,
                           float *y) {
  CNN_TRY(check_bn(rows, c, op));
  CNN_TRY(check_act(act, op));
  if (!save_mean || !save_invstd)
    return cnn_error(CNN_ERR_ARG, "cuda %s: save_mean / save_invstd are required", op);
  if (!x || !y) return cnn_error(CNN_ERR_ARG, "cuda %s: x / y is NULL", op);
  const int parts = cnn_cuda_colsum_parts(ctx, rows, c);
  const size_t vec = cnn_cuda_align256((size_t)c * sizeof(double));
  const size_t part_bytes = parts > 1 ? 2 * (size_t)parts * c * sizeof(double) : 0;
  void *s = NULL;
  CNN_TRY(cnn_cuda_scratch(ctx, 2 * vec + part_bytes, &s));
  double *sums = (double *)s;
  double *mean_d = (double *)((char *)s + vec);
  double *partials = (double *)((char *)s + 2 * vec);

  CNN_TRY(cnn_cuda_colsum(ctx, 0, rows, c, x, NULL, NULL, parts, partials, sums, NULL));
  k_bn_mean<<<chan_blocks(c), 256, 0, ctx->stream>>>(c, rows, sums, mean_d, save_mean);
  LAUNCH_CHECK("k_bn_mean");
  /* second pass: squared deviations from the mean (no cancellation) */
  CNN_TRY(cnn_cuda_colsum(ctx, 1, rows, c, x, NULL, save_mean, parts, partials, sums, NULL));
  k_bn_var<<<chan_blocks(c), 256, 0, ctx->stream>>>(c, rows, eps, momentum, sums, mean_d,
                                                     save_invstd, save_var, running_mean,
                                                     running_var);
  LAUNCH_CHECK("k_bn_var");
  const size_t total = rows * (size_t)c;
  k_bn_apply<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(
      total, c, x, save_mean, save_invstd, gamma, beta, (int)act, alpha, y);
  LAUNCH_CHECK("k_bn_apply");
  return CNN_OK;
}

static cnn_status bn_infer(cnn_cuda_ctx *ctx, const char *op, size_t rows, int c, const float *x,
                           const float *gamma, const float *beta, const float *running_mean,
                           const float *running_var, float eps, cnn_act act, float alpha,
                           float *y) {
  if (c < 1) return cnn_error(CNN_ERR_ARG, "cuda %s: %d channels", op, c);
  CNN_TRY(check_act(act, op));
  const size_t total = rows * (size_t)c;
  if (total == 0) return CNN_OK;
  if (!x || !y || !running_mean || !running_var)
    return cnn_error(CNN_ERR_ARG, "cuda %s: NULL buffer", op);
  k_bn_infer<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(
      total, c, x, gamma, beta, running_mean, running_var, eps, (int)act, alpha, y);
  LAUNCH_CHECK("k_bn_infer");
  return CNN_OK;
}

/* Backward shared by bn_bwd (LINEAR: colsum mode 2 of dy) and bn_act_bwd (mode 3:
 * the column sums are of g = dy act'(z), z recomputed from x) */
static cnn_status bn_backward(cnn_cuda_ctx *ctx, const char *op, size_t rows, int c,
                              const float *x, const float *dy, const float *gamma,
                              const float *beta, const float *save_mean,
                              const float *save_invstd, cnn_act act, float alpha, float *dx,
                              float *dgamma, float *dbeta) {
  CNN_TRY(check_bn(rows, c, op));
  CNN_TRY(check_act(act, op));
  if (!x || !dy || !save_mean || !save_invstd || !dx)
    return cnn_error(CNN_ERR_ARG, "cuda %s: NULL buffer", op);
  const int parts = cnn_cuda_colsum_parts(ctx, rows, c);
  const size_t vec_d = cnn_cuda_align256((size_t)c * sizeof(double));
  const size_t vec_f = cnn_cuda_align256((size_t)c * sizeof(float));
  const size_t part_bytes = parts > 1 ? 2 * (size_t)parts * c * sizeof(double) : 0;
  void *s = NULL;
  CNN_TRY(cnn_cuda_scratch(ctx, 2 * vec_d + 2 * vec_f + part_bytes, &s));
  char *p = (char *)s;
  double *s0 = (double *)p;
  double *s1 = (double *)(p + vec_d);
  float *k1 = (float *)(p + 2 * vec_d);
  float *k2 = (float *)(p + 2 * vec_d + vec_f);
  double *partials = (double *)(p + 2 * vec_d + 2 * vec_f);

  if (act == CNN_ACT_LINEAR) {
    CNN_TRY(cnn_cuda_colsum(ctx, 2, rows, c, x, dy, save_mean, parts, partials, s0, s1));
  } else {
    cnn_cuda_colsum_act ba;
    ba.invstd = save_invstd;
    ba.gamma = gamma;
    ba.beta = beta;
    ba.act = (int)act;
    ba.alpha = alpha;
    CNN_TRY(cnn_cuda_colsum_ex(ctx, 3, rows, c, x, dy, save_mean, &ba, parts, partials, s0, s1));
  }
  k_bn_bwd_final<<<chan_blocks(c), 256, 0, ctx->stream>>>(c, rows, s0, s1, save_invstd, dgamma,
                                                           dbeta, k1, k2);
  LAUNCH_CHECK("k_bn_bwd_final");
  const size_t total = rows * (size_t)c;
  k_bn_bwd_apply<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(
      total, c, x, dy, gamma, beta, save_mean, save_invstd, k1, k2, (int)act, alpha, dx);
  LAUNCH_CHECK("k_bn_bwd_apply");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_bn_fwd_train(void *vctx, size_t rows, int c, const float *x,
                                            const float *gamma, const float *beta, float eps,
                                            float momentum, float *running_mean,
                                            float *running_var, float *save_mean,
                                            float *save_invstd, float *y) {
  return bn_train(CNN_CUDA_CTX(vctx), "bn_fwd_train", rows, c, x, gamma, beta, eps, momentum,
                  running_mean, running_var, save_mean, save_invstd, NULL, CNN_ACT_LINEAR, 0.0f,
                  y);
}

extern "C" cnn_status cnn_cuda_bn_fwd_infer(void *vctx, size_t rows, int c, const float *x,
                                            const float *gamma, const float *beta,
                                            const float *running_mean,
                                            const float *running_var, float eps, float *y) {
  return bn_infer(CNN_CUDA_CTX(vctx), "bn_fwd_infer", rows, c, x, gamma, beta, running_mean,
                  running_var, eps, CNN_ACT_LINEAR, 0.0f, y);
}

extern "C" cnn_status cnn_cuda_bn_bwd(void *vctx, size_t rows, int c, const float *x,
                                      const float *dy, const float *gamma, const float *save_mean,
                                      const float *save_invstd, float *dx, float *dgamma,
                                      float *dbeta) {
  return bn_backward(CNN_CUDA_CTX(vctx), "bn_bwd", rows, c, x, dy, gamma, NULL, save_mean,
                     save_invstd, CNN_ACT_LINEAR, 0.0f, dx, dgamma, dbeta);
}

/* ---- batch norm fused with an activation (step programs) ---------------------------- */

extern "C" cnn_status cnn_cuda_bn_act_fwd_train(void *vctx, size_t rows, int c, const float *x,
                                                const float *gamma, const float *beta, float eps,
                                                cnn_act act, float alpha, float *save_mean,
                                                float *save_invstd, float *save_var, float *y) {
  if (x && x == y) return cnn_error(CNN_ERR_ARG, "cuda bn_act_fwd_train: y may not alias x");
  return bn_train(CNN_CUDA_CTX(vctx), "bn_act_fwd_train", rows, c, x, gamma, beta, eps, 0.0f,
                  NULL, NULL, save_mean, save_invstd, save_var, act, alpha, y);
}

extern "C" cnn_status cnn_cuda_bn_act_fwd_infer(void *vctx, size_t rows, int c, const float *x,
                                                const float *gamma, const float *beta,
                                                const float *rmean, const float *rvar, float eps,
                                                cnn_act act, float alpha, float *y) {
  return bn_infer(CNN_CUDA_CTX(vctx), "bn_act_fwd_infer", rows, c, x, gamma, beta, rmean, rvar,
                  eps, act, alpha, y);
}

extern "C" cnn_status cnn_cuda_bn_act_bwd(void *vctx, size_t rows, int c, const float *x,
                                          const float *dy, const float *gamma, const float *beta,
                                          const float *save_mean, const float *save_invstd,
                                          cnn_act act, float alpha, float *dx, float *dgamma,
                                          float *dbeta) {
  return bn_backward(CNN_CUDA_CTX(vctx), "bn_act_bwd", rows, c, x, dy, gamma, beta, save_mean,
                     save_invstd, act, alpha, dx, dgamma, dbeta);
}

/* running stats move towards the saved batch statistics, unless the step in flight
 * was refused (flag read on the device: the same graph serves good and bad steps) */
static __global__ void k_bn_commit(int c, size_t rows, float momentum,
                                   const float *__restrict__ save_mean,
                                   const float *__restrict__ save_var,
                                   float *__restrict__ running_mean,
                                   float *__restrict__ running_var,
                                   const cnn_step_state *__restrict__ st) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= c || st->nonfinite) return;
  const double mom = (double)momentum;
  const double unbiased =
      (double)save_var[j] * (double)rows / (double)(rows > 1 ? rows - 1 : (size_t)1);
  running_mean[j] = (float)((1.0 - mom) * (double)running_mean[j] + mom * (double)save_mean[j]);
  running_var[j] = (float)((1.0 - mom) * (double)running_var[j] + mom * unbiased);
}

extern "C" cnn_status cnn_cuda_bn_commit(void *vctx, int c, size_t rows, float momentum,
                                         const float *save_mean, const float *save_var,
                                         float *running_mean, float *running_var,
                                         const cnn_step_state *st) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (c < 0) return cnn_error(CNN_ERR_ARG, "cuda bn_commit: %d channels", c);
  if (c == 0) return CNN_OK;
  if (!save_mean || !save_var || !running_mean || !running_var || !st)
    return cnn_error(CNN_ERR_ARG, "cuda bn_commit: NULL buffer");
  k_bn_commit<<<chan_blocks(c), 256, 0, ctx->stream>>>(c, rows, momentum, save_mean, save_var,
                                                        running_mean, running_var, st);
  LAUNCH_CHECK("k_bn_commit");
  return CNN_OK;
}

/* s = gamma / sqrt(rvar + eps) per output channel (gamma NULL: 1, beta NULL: 0,
 * bias NULL: 0); wout may alias w and bout bias (read, then written, by one thread) */
static __global__ void k_bn_fold(int kout, size_t per_k, const float *w, const float *bias,
                                 const float *__restrict__ gamma, const float *__restrict__ beta,
                                 const float *__restrict__ rmean, const float *__restrict__ rvar,
                                 float eps, float *wout, float *bout) {
  const size_t total = (size_t)kout * per_k;
  GRID_STRIDE(i, total) {
    const int k = (int)(i / per_k);
    const float sc = (gamma ? gamma[k] : 1.0f) / sqrtf(rvar[k] + eps);
    wout[i] = w[i] * sc;
  }
  GRID_STRIDE(k, (size_t)kout) {
    const float sc = (gamma ? gamma[k] : 1.0f) / sqrtf(rvar[k] + eps);
    bout[k] = (beta ? beta[k] : 0.0f) + ((bias ? bias[k] : 0.0f) - rmean[k]) * sc;
  }
}

extern "C" cnn_status cnn_cuda_bn_fold(void *vctx, int kout, size_t per_k, const float *w,
                                       const float *bias, const float *gamma, const float *beta,
                                       const float *rmean, const float *rvar, float eps,
                                       float *wout, float *bout) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (kout < 0) return cnn_error(CNN_ERR_ARG, "cuda bn_fold: %d output channels", kout);
  if (kout == 0) return CNN_OK;
  if (!rmean || !rvar || !bout || (per_k > 0 && (!w || !wout)))
    return cnn_error(CNN_ERR_ARG, "cuda bn_fold: NULL buffer");
  const size_t total = (size_t)kout * per_k;
  k_bn_fold<<<cnn_cuda_blocks(ctx, total > (size_t)kout ? total : (size_t)kout), CNN_CUDA_THREADS,
              0, ctx->stream>>>(kout, per_k, w, bias, gamma, beta, rmean, rvar, eps, wout, bout);
  LAUNCH_CHECK("k_bn_fold");
  return CNN_OK;
}

/* ---- softmax cross-entropy ----------------------------------------------------------- */

#define SM_WARPS 8 /* rows per 256-thread block */

/* one warp per row: probs = softmax(z); loss = -sum_j t_j log p_j with
 * log p_j = (z_j - max) - log(sum exp(z - max)) and t_j = eps/C + (1-eps)[j == label].
 * A label outside [0, C) gives a NaN loss (the caller's NaN check reports it). */
static __global__ void k_softmax_xent_fwd(int n, int C, const float *__restrict__ logits,
                                          const int32_t *__restrict__ labels, float smoothing,
                                          float *__restrict__ probs, float *__restrict__ loss) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * SM_WARPS + (threadIdx.x >> 5);
  if (row >= n) return; /* whole warp: no block-level sync below */
  const float *z = logits + (size_t)row * C;
  float mx = -INFINITY;
  for (int j = lane; j < C; j += 32) mx = fmaxf(mx, z[j]);
  mx = warp_max(mx);
  float s = 0.0f;
  for (int j = lane; j < C; j += 32) s += expf(z[j] - mx);
  s = warp_sum(s);
  const float log_s = logf(s);
  const int label = labels[row];
  const bool valid = label >= 0 && label < C;
  const float t_off = smoothing / (float)C, t_on = 1.0f - smoothing;
  float acc = 0.0f;
  for (int j = lane; j < C; j += 32) {
    const float logp = (z[j] - mx) - log_s;
    if (probs) probs[(size_t)row * C + j] = expf(logp);
    const float t = t_off + (j == label ? t_on : 0.0f);
    acc += t * logp;
  }
  acc = warp_sum(acc);
  if (lane == 0 && loss) loss[row] = valid ? -acc : NAN;
}

/* dlogits += scale (probs - t) */
static __global__ void k_softmax_xent_bwd(int n, int C, const float *__restrict__ probs,
                                          const int32_t *__restrict__ labels, float smoothing,
                                          float scale, float *__restrict__ dlogits) {
  const size_t total = (size_t)n * C;
  const float t_off = smoothing / (float)C, t_on = 1.0f - smoothing;
  GRID_STRIDE(i, total) {
    const int j = chan_of(i, C);
    const size_t row = (i - (size_t)j) / (size_t)C;
    const float t = t_off + (j == labels[row] ? t_on : 0.0f);
    dlogits[i] += scale * (probs[i] - t);
  }
}

static cnn_status check_xent(int n, int classes, float smoothing, const char *op) {
  if (n < 0 || classes < 1)
    return cnn_error(CNN_ERR_ARG, "cuda %s: n=%d classes=%d", op, n, classes);
  if (!(smoothing >= 0.0f && smoothing <= 1.0f))
    return cnn_error(CNN_ERR_ARG, "cuda %s: label smoothing %g is not in [0, 1]", op, smoothing);
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_softmax_xent_fwd(void *vctx, int n, int classes,
                                                const float *logits, const int32_t *labels,
                                                float smoothing, float *probs, float *loss) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  CNN_TRY(check_xent(n, classes, smoothing, "softmax_xent_fwd"));
  if (n == 0) return CNN_OK;
  const unsigned blocks = (unsigned)((n + SM_WARPS - 1) / SM_WARPS);
  k_softmax_xent_fwd<<<blocks, SM_WARPS * 32, 0, ctx->stream>>>(n, classes, logits, labels,
                                                                smoothing, probs, loss);
  LAUNCH_CHECK("k_softmax_xent_fwd");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_softmax_xent_bwd(void *vctx, int n, int classes,
                                                const float *probs, const int32_t *labels,
                                                float smoothing, float scale, float *dlogits) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  CNN_TRY(check_xent(n, classes, smoothing, "softmax_xent_bwd"));
  const size_t total = (size_t)n * classes;
  if (total == 0) return CNN_OK;
  k_softmax_xent_bwd<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(
      n, classes, probs, labels, smoothing, scale, dlogits);
  LAUNCH_CHECK("k_softmax_xent_bwd");
  return CNN_OK;
}
