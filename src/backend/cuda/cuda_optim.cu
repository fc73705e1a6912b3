/* CUDA optimizer steps on flat buffers: one fused grid-stride kernel per step over
 * every parameter of the net (parameters, gradients and state are each one
 * buffer). Semantics as in backend.h (PyTorch's SGD and Adam / AdamW). */
#include <math.h>

#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_device.cuh"

/* g = grad + wd p; v = momentum v + g; p -= lr (nesterov ? g + momentum v : v) */
static __device__ __forceinline__ void sgd_loop(size_t n, float *__restrict__ p,
                                                const float *__restrict__ g,
                                                float *__restrict__ v, float lr, float momentum,
                                                float wd, int nesterov) {
  GRID_STRIDE(i, n) {
    const float pi = p[i];
    const float grad = g[i] + wd * pi;
    const float vel = momentum * v[i] + grad;
    const float update = nesterov ? grad + momentum * vel : vel;
    v[i] = vel;
    p[i] = pi - lr * update;
  }
}

static __global__ void k_sgd(size_t n, float *__restrict__ p, const float *__restrict__ g,
                             float *__restrict__ v, float lr, float momentum, float wd,
                             int nesterov) {
  sgd_loop(n, p, g, v, lr, momentum, wd, nesterov);
}

/* lr from the step state; a refused step (nonfinite) leaves p and v untouched */
static __global__ void k_sgd_st(size_t n, float *__restrict__ p, const float *__restrict__ g,
                                float *__restrict__ v, float momentum, float wd, int nesterov,
                                const cnn_step_state *__restrict__ st) {
  if (st->nonfinite) return;
  sgd_loop(n, p, g, v, st->lr, momentum, wd, nesterov);
}

/* Adam (decoupled == 0: g += wd p) or AdamW (p -= lr wd p first);
 * bc1 = 1 - b1^t, bc2 = 1 - b2^t computed on the host in double */
static __device__ __forceinline__ void adam_loop(size_t n, float *__restrict__ p,
                                                 const float *__restrict__ g,
                                                 float *__restrict__ m, float *__restrict__ v,
                                                 float lr, float b1, float b2, float eps,
                                                 float wd, int decoupled, float bc1, float bc2) {
  const float one_b1 = 1.0f - b1, one_b2 = 1.0f - b2;
  GRID_STRIDE(i, n) {
    float param = p[i], grad = g[i];
    if (decoupled)
      param -= lr * wd * param;
    else
      grad += wd * param;
    const float mom = b1 * m[i] + one_b1 * grad;
    const float var = b2 * v[i] + one_b2 * grad * grad;
    m[i] = mom;
    v[i] = var;
    const float mhat = mom / bc1, vhat = var / bc2;
    p[i] = param - lr * mhat / (sqrtf(vhat) + eps);
  }
}

static __global__ void k_adam(size_t n, float *__restrict__ p, const float *__restrict__ g,
                              float *__restrict__ m, float *__restrict__ v, float lr, float b1,
                              float b2, float eps, float wd, int decoupled, float bc1,
                              float bc2) {
  adam_loop(n, p, g, m, v, lr, b1, b2, eps, wd, decoupled, bc1, bc2);
}

/* lr and t = step + 1 from the step state; the bias corrections are computed once
 * per block in double (as the host does for adam_step) and shared */
static __global__ void k_adam_st(size_t n, float *__restrict__ p, const float *__restrict__ g,
                                 float *__restrict__ m, float *__restrict__ v, float b1, float b2,
                                 float eps, float wd, int decoupled,
                                 const cnn_step_state *__restrict__ st) {
  __shared__ float bc[2];
  if (st->nonfinite) return; /* uniform over the grid: no thread reaches the barrier */
  if (threadIdx.x == 0) {
    const double t = (double)(st->step + 1);
    bc[0] = (float)(1.0 - pow((double)b1, t));
    bc[1] = (float)(1.0 - pow((double)b2, t));
  }
  __syncthreads();
  adam_loop(n, p, g, m, v, st->lr, b1, b2, eps, wd, decoupled, bc[0], bc[1]);
}

extern "C" cnn_status cnn_cuda_sgd_step(void *vctx, size_t n, float *p, const float *g, float *v,
                                        float lr, float momentum, float wd, int nesterov) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (n == 0) return CNN_OK;
  if (!p || !g || !v) return cnn_error(CNN_ERR_ARG, "cuda sgd_step: NULL buffer");
  k_sgd<<<cnn_cuda_blocks(ctx, n), CNN_CUDA_THREADS, 0, ctx->stream>>>(n, p, g, v, lr, momentum,
                                                                      wd, nesterov);
  LAUNCH_CHECK("k_sgd");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_adam_step(void *vctx, size_t n, float *p, const float *g, float *m,
                                         float *v, float lr, float b1, float b2, float eps,
                                         float wd, int decoupled, int64_t t) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (t < 1) return cnn_error(CNN_ERR_ARG, "cuda adam_step: step %lld is not >= 1", (long long)t);
  if (n == 0) return CNN_OK;
  if (!p || !g || !m || !v) return cnn_error(CNN_ERR_ARG, "cuda adam_step: NULL buffer");
  const double bc1 = 1.0 - pow((double)b1, (double)t);
  const double bc2 = 1.0 - pow((double)b2, (double)t);
  k_adam<<<cnn_cuda_blocks(ctx, n), CNN_CUDA_THREADS, 0, ctx->stream>>>(
      n, p, g, m, v, lr, b1, b2, eps, wd, decoupled, (float)bc1, (float)bc2);
  LAUNCH_CHECK("k_adam");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_sgd_step_st(void *vctx, size_t n, float *p, const float *g,
                                           float *v, float momentum, float wd, int nesterov,
                                           const cnn_step_state *st) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (n == 0) return CNN_OK;
  if (!p || !g || !v || !st) return cnn_error(CNN_ERR_ARG, "cuda sgd_step_st: NULL buffer");
  k_sgd_st<<<cnn_cuda_blocks(ctx, n), CNN_CUDA_THREADS, 0, ctx->stream>>>(n, p, g, v, momentum,
                                                                         wd, nesterov, st);
  LAUNCH_CHECK("k_sgd_st");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_adam_step_st(void *vctx, size_t n, float *p, const float *g,
                                            float *m, float *v, float b1, float b2, float eps,
                                            float wd, int decoupled, const cnn_step_state *st) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (n == 0) return CNN_OK;
  if (!p || !g || !m || !v || !st)
    return cnn_error(CNN_ERR_ARG, "cuda adam_step_st: NULL buffer");
  k_adam_st<<<cnn_cuda_blocks(ctx, n), CNN_CUDA_THREADS, 0, ctx->stream>>>(n, p, g, m, v, b1, b2,
                                                                          eps, wd, decoupled, st);
  LAUNCH_CHECK("k_adam_st");
  return CNN_OK;
}
