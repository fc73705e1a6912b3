/* cpu: activations, and the residual add fused with one.
 *
 * Every activation is computed by one serial kernel over a block of floats
 * (cpu_act_fwd_block / cpu_act_bwd_block). act_fwd and act_bwd run it over fixed
 * blocks in parallel; the fused ops (conv epilogue, BN + activation, add +
 * activation) run it on a tile they have just written, while it is in cache. So a
 * fused op gives exactly the bits of the unfused chain. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu.h"

/* Loops with a select (x > 0 ? a : b) vectorise only if GCC may evaluate both
 * sides; nothing here reads floating-point exception flags. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#define CPU_SQRT1_2 0.70710678118654752440f     /* 1 / sqrt(2) */
#define CPU_INV_SQRT_2PI 0.39894228040143267794f /* 1 / sqrt(2 pi) */

/* floats per block of the parallel elementwise drivers (16 KiB: L1-sized) */
#define CPU_ACT_BLK 4096

cnn_status cpu_check_act(cnn_act a, const char *op) {
  if ((int)a < 0 || a >= CNN_ACT_COUNT)
    return cnn_error(CNN_ERR_ARG, "cpu %s: unknown activation %d", op, (int)a);
  return CNN_OK;
}

/* y = f(x); x may equal y */
void cpu_act_fwd_block(cnn_act a, float alpha, size_t n, const float *x, float *y) {
  switch (a) {
    case CNN_ACT_LINEAR:
      if (x != y) memmove(y, x, n * sizeof *y);
      break;
    case CNN_ACT_RELU:
#pragma omp simd
      for (size_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i]; /* NaN propagates, as ref */
      break;
    case CNN_ACT_LEAKY:
#pragma omp simd
      for (size_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = v * (v > 0.0f ? 1.0f : alpha);
      }
      break;
    case CNN_ACT_GELU:
      for (size_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * CPU_SQRT1_2));
      break;
    case CNN_ACT_SIGMOID:
      for (size_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
      break;
    case CNN_ACT_TANH:
      for (size_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
      break;
    case CNN_ACT_RAMP:
#pragma omp simd
      for (size_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = (v > 0.0f ? v : 0.0f) + 0.1f * v;
      }
      break;
    case CNN_ACT_RELU6:
#pragma omp simd
      for (size_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v); /* NaN propagates, as ref */
      }
      break;
    default: break;
  }
}

/* dx += dy f'(x), from the pre-activation x; f' is always multiplied in (a select
 * between constants, so the loops vectorise, and an infinite dy times 0 gives NaN
 * exactly as in ref). The sigmoid and tanh derivatives use e = exp(-|x|) forms,
 * which keep their relative accuracy in the tails where s (1 - s) and 1 - t^2
 * cancel. At the ReLU/leaky kink x == 0 the left derivative is used. */
void cpu_act_bwd_block(cnn_act a, float alpha, size_t n, const float *x, const float *dy,
                       float *dx) {
  switch (a) {
    case CNN_ACT_LINEAR:
#pragma omp simd
      for (size_t i = 0; i < n; i++) dx[i] += dy[i];
      break;
    case CNN_ACT_RELU:
#pragma omp simd
      for (size_t i = 0; i < n; i++) dx[i] += dy[i] * (x[i] > 0.0f ? 1.0f : 0.0f);
      break;
    case CNN_ACT_LEAKY:
#pragma omp simd
      for (size_t i = 0; i < n; i++) dx[i] += dy[i] * (x[i] > 0.0f ? 1.0f : alpha);
      break;
    case CNN_ACT_GELU:
      for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float d = 0.5f * (1.0f + erff(v * CPU_SQRT1_2)) + v * CPU_INV_SQRT_2PI * expf(-0.5f * v * v);
        dx[i] += dy[i] * d;
      }
      break;
    case CNN_ACT_SIGMOID:
      for (size_t i = 0; i < n; i++) {
        float e = expf(-fabsf(x[i])), q = 1.0f + e; /* s (1 - s) = e / (1 + e)^2 */
        dx[i] += dy[i] * (e / (q * q));
      }
      break;
    case CNN_ACT_TANH:
      for (size_t i = 0; i < n; i++) {
        float e = expf(-2.0f * fabsf(x[i])), q = 1.0f + e; /* 1 - t^2 = 4 e / (1 + e)^2 */
        dx[i] += dy[i] * (4.0f * e / (q * q));
      }
      break;
    case CNN_ACT_RAMP:
#pragma omp simd
      for (size_t i = 0; i < n; i++) dx[i] += dy[i] * (x[i] > 0.0f ? 1.1f : 0.1f);
      break;
    case CNN_ACT_RELU6:
#pragma omp simd
      for (size_t i = 0; i < n; i++) dx[i] += dy[i] * (x[i] > 0.0f && x[i] < 6.0f ? 1.0f : 0.0f);
      break;
    default: break;
  }
}

/* x may equal y */
cnn_status cpu_act_fwd(void *ctx, cnn_act a, float alpha, size_t n, const float *x, float *y) {
  CPU_NEED(x, "act_fwd");
  CPU_NEED(y, "act_fwd");
  CNN_TRY(cpu_check_act(a, "act_fwd"));
  if (a == CNN_ACT_LINEAR) { /* a copy: one memmove beats splitting it */
    cpu_act_fwd_block(a, alpha, n, x, y);
    return CNN_OK;
  }
  size_t blocks = (n + CPU_ACT_BLK - 1) / CPU_ACT_BLK;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t b = 0; b < blocks; b++) {
    size_t lo = b * CPU_ACT_BLK, len = n - lo < CPU_ACT_BLK ? n - lo : CPU_ACT_BLK;
    cpu_act_fwd_block(a, alpha, len, x + lo, y + lo);
  }
  return CNN_OK;
}

/* dx += dy f'(x) (y is ignored and may be NULL) */
cnn_status cpu_act_bwd(void *ctx, cnn_act a, float alpha, size_t n, const float *x,
                       const float *y, const float *dy, float *dx) {
  CPU_NEED(x, "act_bwd");
  CPU_NEED(dy, "act_bwd");
  CPU_NEED(dx, "act_bwd");
  CNN_TRY(cpu_check_act(a, "act_bwd"));
  size_t blocks = (n + CPU_ACT_BLK - 1) / CPU_ACT_BLK;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t b = 0; b < blocks; b++) {
    size_t lo = b * CPU_ACT_BLK, len = n - lo < CPU_ACT_BLK ? n - lo : CPU_ACT_BLK;
    cpu_act_bwd_block(a, alpha, len, x + lo, dy + lo, dx + lo);
  }
  return CNN_OK;
}

/* ---- residual add + activation ---- */

/* y = act(a + b), block by block: the sum is activated while it is in L1. y may
 * alias a or b (each element is read before it is written). */
cnn_status cpu_add_act_fwd(void *ctx, size_t n, const float *a, const float *b, cnn_act act,
                           float alpha, float *y) {
  const char *op = "add_act_fwd";
  CPU_NEED(a, op);
  CPU_NEED(b, op);
  CPU_NEED(y, op);
  CNN_TRY(cpu_check_act(act, op));
  size_t blocks = (n + CPU_ACT_BLK - 1) / CPU_ACT_BLK;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t k = 0; k < blocks; k++) {
    size_t lo = k * CPU_ACT_BLK, len = n - lo < CPU_ACT_BLK ? n - lo : CPU_ACT_BLK;
    const float *ak = a + lo, *bk = b + lo;
    float *yk = y + lo;
#pragma omp simd
    for (size_t i = 0; i < len; i++) yk[i] = ak[i] + bk[i];
    cpu_act_fwd_block(act, alpha, len, yk, yk);
  }
  return CNN_OK;
}

/* g = dy f'(from y) into g[n]; only activations whose derivative follows from the
 * output. y > 0 is the same test as x > 0 for ReLU and leaky (alpha > 0). */
static void act_grad_from_y(cnn_act a, float alpha, size_t n, const float *y, const float *dy,
                            float *g) {
  switch (a) {
    case CNN_ACT_RELU:
#pragma omp simd
      for (size_t i = 0; i < n; i++) g[i] = dy[i] * (y[i] > 0.0f ? 1.0f : 0.0f);
      break;
    case CNN_ACT_LEAKY:
#pragma omp simd
      for (size_t i = 0; i < n; i++) g[i] = dy[i] * (y[i] > 0.0f ? 1.0f : alpha);
      break;
    case CNN_ACT_SIGMOID:
#pragma omp simd
      for (size_t i = 0; i < n; i++) g[i] = dy[i] * (y[i] * (1.0f - y[i]));
      break;
    case CNN_ACT_TANH:
#pragma omp simd
      for (size_t i = 0; i < n; i++) g[i] = dy[i] * (1.0f - y[i] * y[i]);
      break;
    case CNN_ACT_RAMP: /* y > 0 iff x > 0 */
#pragma omp simd
      for (size_t i = 0; i < n; i++) g[i] = dy[i] * (y[i] > 0.0f ? 1.1f : 0.1f);
      break;
    case CNN_ACT_RELU6: /* 0 < y < 6 iff 0 < x < 6 */
#pragma omp simd
      for (size_t i = 0; i < n; i++) g[i] = dy[i] * (y[i] > 0.0f && y[i] < 6.0f ? 1.0f : 0.0f);
      break;
    default: /* LINEAR */
      memcpy(g, dy, n * sizeof *g);
      break;
  }
}

/* da += g, db += g with g = dy f'(from y), block by block through an L1 buffer */
cnn_status cpu_add_act_bwd(void *ctx, size_t n, const float *y, const float *dy, cnn_act act,
                           float alpha, float *da, float *db) {
  const char *op = "add_act_bwd";
  CPU_NEED(y, op);
  CPU_NEED(dy, op);
  if (act != CNN_ACT_LINEAR && act != CNN_ACT_RELU && act != CNN_ACT_LEAKY &&
      act != CNN_ACT_SIGMOID && act != CNN_ACT_TANH && act != CNN_ACT_RAMP &&
      act != CNN_ACT_RELU6)
    return cnn_error(CNN_ERR_ARG, "cpu %s: activation %d is not derivable from its output", op,
                     (int)act);
  if (!da && !db) return CNN_OK;
  size_t blocks = (n + CPU_ACT_BLK - 1) / CPU_ACT_BLK;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t k = 0; k < blocks; k++) {
    size_t lo = k * CPU_ACT_BLK, len = n - lo < CPU_ACT_BLK ? n - lo : CPU_ACT_BLK;
    float g[CPU_ACT_BLK];
    act_grad_from_y(act, alpha, len, y + lo, dy + lo, g);
    /* da and db may be one buffer (both inputs the same tensor): add twice */
    if (da) {
      float *d = da + lo;
#pragma omp simd
      for (size_t i = 0; i < len; i++) d[i] += g[i];
    }
    if (db) {
      float *d = db + lo;
#pragma omp simd
      for (size_t i = 0; i < len; i++) d[i] += g[i];
    }
  }
  return CNN_OK;
}
