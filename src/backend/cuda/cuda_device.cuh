/* Private to the CUDA backend: small device helpers shared by several .cu files
 * (activations and their derivatives, warp reductions, grid-stride loops). All
 * are static inline so every translation unit gets its own copy. */
#ifndef CNN_CUDA_DEVICE_CUH
#define CNN_CUDA_DEVICE_CUH

#include <math.h>

#include "backend/backend.h"

#define GRID_STRIDE(i, n)                                                   \
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
       i += (size_t)gridDim.x * blockDim.x)

#define CNN_INV_SQRT2 0.70710678118654752440f
#define CNN_INV_SQRT_2PI 0.39894228040143267794f

/* i % c with 32-bit arithmetic whenever i fits (the common case) */
static __device__ __forceinline__ int chan_of(size_t i, int c) {
  if (i <= 0xffffffffull) return (int)((unsigned)i % (unsigned)c);
  return (int)(i % (size_t)c);
}

/* f(v) for cnn_act a (LINEAR and unknown values: identity) */
static __device__ __forceinline__ float act_f(int a, float alpha, float v) {
  switch (a) {
    case CNN_ACT_RELU: return v < 0.0f ? 0.0f : v; /* NaN propagates, as ref */
    case CNN_ACT_LEAKY: return v > 0.0f ? v : alpha * v;
    case CNN_ACT_GELU: return 0.5f * v * (1.0f + erff(v * CNN_INV_SQRT2));
    case CNN_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    case CNN_ACT_TANH: return tanhf(v);
    case CNN_ACT_RAMP: return (v > 0.0f ? v : 0.0f) + 0.1f * v;
    case CNN_ACT_RELU6: return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v); /* NaN propagates */
    default: return v;
  }
}

/* f'(v) from the pre-activation v (LINEAR: exactly 1, so dy * f' == dy) */
static __device__ __forceinline__ float act_df(int a, float alpha, float v) {
  switch (a) {
    case CNN_ACT_RELU: return v > 0.0f ? 1.0f : 0.0f;
    case CNN_ACT_LEAKY: return v > 0.0f ? 1.0f : alpha;
    case CNN_ACT_GELU:
      return 0.5f * (1.0f + erff(v * CNN_INV_SQRT2)) + v * CNN_INV_SQRT_2PI * expf(-0.5f * v * v);
    case CNN_ACT_SIGMOID: {
      float s = 1.0f / (1.0f + expf(-v));
      return s * (1.0f - s);
    }
    case CNN_ACT_TANH: {
      float t = tanhf(v);
      return 1.0f - t * t;
    }
    case CNN_ACT_RAMP: return v > 0.0f ? 1.1f : 0.1f;
    case CNN_ACT_RELU6: return v > 0.0f && v < 6.0f ? 1.0f : 0.0f;
    default: return 1.0f;
  }
}

/* f' from the output y = f(v), for the activations where that is possible
 * (LINEAR, RELU, LEAKY, SIGMOID, TANH, RAMP, RELU6; callers reject the others) */
static __device__ __forceinline__ float act_df_from_y(int a, float alpha, float y) {
  switch (a) {
    case CNN_ACT_RELU: return y > 0.0f ? 1.0f : 0.0f;
    case CNN_ACT_LEAKY: return y > 0.0f ? 1.0f : alpha;
    case CNN_ACT_SIGMOID: return y * (1.0f - y);
    case CNN_ACT_TANH: return 1.0f - y * y;
    case CNN_ACT_RAMP: return y > 0.0f ? 1.1f : 0.1f; /* y > 0 iff v > 0 */
    case CNN_ACT_RELU6: return y > 0.0f && y < 6.0f ? 1.0f : 0.0f; /* 0 < y < 6 iff 0 < v < 6 */
    default: return 1.0f;
  }
}

/* tree reduction to lane 0, then broadcast: every lane gets the same value */
static __device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return __shfl_sync(0xffffffffu, v, 0);
}

static __device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

#endif
