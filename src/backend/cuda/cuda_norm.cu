/* CUDA batch normalisation over channels (x is [rows = n*h*w, c]) and softmax
 * cross-entropy with label smoothing.
 *
 * Batch norm statistics are two-pass per-channel column sums in double
 * (cnn_cuda_colsum: blocks over row chunks, partials summed in a fixed order, so
 * results are reproducible run to run); the per-element passes are grid-stride
 * loops. Softmax: one warp per row, reductions in a fixed shuffle order. */
#include <math.h>

#include "backend/cuda/cuda_common.h"

#define GRID_STRIDE(i, n)                                                   \
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
       i += (size_t)gridDim.x * blockDim.x)

static __device__ __forceinline__ int chan_of(size_t i, int c) {
  if (i <= 0xffffffffull) return (int)((unsigned)i % (unsigned)c);
  return (int)(i % (size_t)c);
}

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

/* biased variance -> invstd; running stats move towards the batch mean and the
 * unbiased variance (a single row has none: its biased variance, 0, is used) */
static __global__ void k_bn_var(int c, size_t rows, float eps, float momentum,
                                const double *__restrict__ sq, const double *__restrict__ mean_d,
                                float *__restrict__ save_invstd, float *__restrict__ running_mean,
                                float *__restrict__ running_var) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= c) return;
  double var = sq[j] / (double)rows;
  save_invstd[j] = (float)(1.0 / sqrt(var + (double)eps));
  double unbiased = rows > 1 ? var * (double)rows / (double)(rows - 1) : var;
  double mom = (double)momentum;
  if (running_mean)
    running_mean[j] = (float)((1.0 - mom) * (double)running_mean[j] + mom * mean_d[j]);
  if (running_var)
    running_var[j] = (float)((1.0 - mom) * (double)running_var[j] + mom * unbiased);
}

/* y = gamma (x - mean) invstd + beta (gamma NULL: 1, beta NULL: 0); x may equal y */
static __global__ void k_bn_apply(size_t total, int c, const float *x, const float *mean,
                                  const float *invstd, const float *__restrict__ gamma,
                                  const float *__restrict__ beta, float *y) {
  GRID_STRIDE(i, total) {
    const int j = chan_of(i, c);
    const float g = gamma ? gamma[j] : 1.0f, b = beta ? beta[j] : 0.0f;
    y[i] = g * ((x[i] - mean[j]) * invstd[j]) + b;
  }
}

/* inference: invstd from the running variance, per element */
static __global__ void k_bn_infer(size_t total, int c, const float *x,
                                  const float *__restrict__ gamma, const float *__restrict__ beta,
                                  const float *__restrict__ rmean, const float *__restrict__ rvar,
                                  float eps, float *y) {
  GRID_STRIDE(i, total) {
    const int j = chan_of(i, c);
    const float g = gamma ? gamma[j] : 1.0f, b = beta ? beta[j] : 0.0f;
    const float invstd = 1.0f / sqrtf(rvar[j] + eps);
    y[i] = g * ((x[i] - rmean[j]) * invstd) + b;
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

/* dx += gamma invstd (dy - sum_dy/rows - xhat sum_dy_xhat/rows) */
static __global__ void k_bn_bwd_apply(size_t total, int c, const float *__restrict__ x,
                                      const float *__restrict__ dy,
                                      const float *__restrict__ gamma,
                                      const float *__restrict__ mean,
                                      const float *__restrict__ invstd,
                                      const float *__restrict__ k1, const float *__restrict__ k2,
                                      float *__restrict__ dx) {
  GRID_STRIDE(i, total) {
    const int j = chan_of(i, c);
    const float is = invstd[j];
    const float g = gamma ? gamma[j] : 1.0f;
    const float xhat = (x[i] - mean[j]) * is;
    dx[i] += g * is * (dy[i] - k1[j] - xhat * k2[j]);
  }
}

static unsigned chan_blocks(int c) { return (unsigned)((c + 255) / 256); }

static cnn_status check_bn(size_t rows, int c, const char *op) {
  if (c < 1) return cnn_error(CNN_ERR_ARG, "cuda %s: %d channels", op, c);
  if (rows < 1) return cnn_error(CNN_ERR_ARG, "cuda %s: batch statistics of 0 rows", op);
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_bn_fwd_train(void *vctx, size_t rows, int c, const float *x,
                                            const float *gamma, const float *beta, float eps,
                                            float momentum, float *running_mean,
                                            float *running_var, float *save_mean,
                                            float *save_invstd, float *y) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  CNN_TRY(check_bn(rows, c, "bn_fwd_train"));
  if (!save_mean || !save_invstd)
    return cnn_error(CNN_ERR_ARG, "cuda bn_fwd_train: save_mean / save_invstd are required");
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
                                                     save_invstd, running_mean, running_var);
  LAUNCH_CHECK("k_bn_var");
  const size_t total = rows * (size_t)c;
  k_bn_apply<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(
      total, c, x, save_mean, save_invstd, gamma, beta, y);
  LAUNCH_CHECK("k_bn_apply");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_bn_fwd_infer(void *vctx, size_t rows, int c, const float *x,
                                            const float *gamma, const float *beta,
                                            const float *running_mean,
                                            const float *running_var, float eps, float *y) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (c < 1) return cnn_error(CNN_ERR_ARG, "cuda bn_fwd_infer: %d channels", c);
  const size_t total = rows * (size_t)c;
  if (total == 0) return CNN_OK;
  k_bn_infer<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(
      total, c, x, gamma, beta, running_mean, running_var, eps, y);
  LAUNCH_CHECK("k_bn_infer");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_bn_bwd(void *vctx, size_t rows, int c, const float *x,
                                      const float *dy, const float *gamma, const float *save_mean,
                                      const float *save_invstd, float *dx, float *dgamma,
                                      float *dbeta) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  CNN_TRY(check_bn(rows, c, "bn_bwd"));
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

  CNN_TRY(cnn_cuda_colsum(ctx, 2, rows, c, x, dy, save_mean, parts, partials, s0, s1));
  k_bn_bwd_final<<<chan_blocks(c), 256, 0, ctx->stream>>>(c, rows, s0, s1, save_invstd, dgamma,
                                                           dbeta, k1, k2);
  LAUNCH_CHECK("k_bn_bwd_final");
  const size_t total = rows * (size_t)c;
  k_bn_bwd_apply<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(
      total, c, x, dy, gamma, save_mean, save_invstd, k1, k2, dx);
  LAUNCH_CHECK("k_bn_bwd_apply");
  return CNN_OK;
}

/* ---- softmax cross-entropy ----------------------------------------------------------- */

#define SM_WARPS 8 /* rows per 256-thread block */

/* tree reduction to lane 0, then broadcast: every lane gets the same value */
static __device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return __shfl_sync(0xffffffffu, v, 0);
}

static __device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

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
