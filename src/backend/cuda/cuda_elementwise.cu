/* CUDA elementwise ops: fill, axpby, add, mul, copy2d, activations, bias add/grad,
 * Darknet shortcut, dropout mask; and the deterministic column-sum used by
 * bias_grad, conv db and batch norm. 1-D kernels are grid-stride loops. */
#include <math.h>
#include <string.h>

#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_device.cuh"
#include "core/bf16.h"
#include "core/rng.h"

/* i % cols and i / cols, with 32-bit arithmetic whenever i fits (the common case) */
static __device__ __forceinline__ size_t col_of(size_t i, size_t cols) {
  if (i <= 0xffffffffull && cols <= 0xffffffffull) return (unsigned)i % (unsigned)cols;
  return i % cols;
}
static __device__ __forceinline__ size_t row_of(size_t i, size_t cols) {
  if (i <= 0xffffffffull && cols <= 0xffffffffull) return (unsigned)i / (unsigned)cols;
  return i / cols;
}

/* ---- fill / axpby / add / mul ---------------------------------------------- */

static __global__ void k_fill(float *x, size_t n, float v) {
  GRID_STRIDE(i, n) x[i] = v;
}

static __global__ void k_axpby(size_t n, float alpha, const float *x, float beta, float *y) {
  if (beta == 0.0f) {
    GRID_STRIDE(i, n) y[i] = alpha * x[i];
  } else {
    GRID_STRIDE(i, n) y[i] = alpha * x[i] + beta * y[i];
  }
}

static __global__ void k_add(size_t n, const float *a, const float *b, float *y) {
  GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}

static __global__ void k_mul(size_t n, const float *a, const float *b, float beta, float *y) {
  if (beta == 0.0f) {
    GRID_STRIDE(i, n) y[i] = a[i] * b[i];
  } else {
    GRID_STRIDE(i, n) y[i] = a[i] * b[i] + beta * y[i];
  }
}

extern "C" cnn_status cnn_cuda_fill(void *vctx, float *x, size_t n, float v) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (n == 0) return CNN_OK;
  k_fill<<<cnn_cuda_blocks(ctx, n), CNN_CUDA_THREADS, 0, ctx->stream>>>(x, n, v);
  LAUNCH_CHECK("k_fill");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_axpby(void *vctx, size_t n, float alpha, const float *x, float beta,
                                     float *y) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (n == 0) return CNN_OK;
  k_axpby<<<cnn_cuda_blocks(ctx, n), CNN_CUDA_THREADS, 0, ctx->stream>>>(n, alpha, x, beta, y);
  LAUNCH_CHECK("k_axpby");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_add(void *vctx, size_t n, const float *a, const float *b,
                                   float *y) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (n == 0) return CNN_OK;
  k_add<<<cnn_cuda_blocks(ctx, n), CNN_CUDA_THREADS, 0, ctx->stream>>>(n, a, b, y);
  LAUNCH_CHECK("k_add");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_mul(void *vctx, size_t n, const float *a, const float *b,
                                   float beta, float *y) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (n == 0) return CNN_OK;
  k_mul<<<cnn_cuda_blocks(ctx, n), CNN_CUDA_THREADS, 0, ctx->stream>>>(n, a, b, beta, y);
  LAUNCH_CHECK("k_mul");
  return CNN_OK;
}

/* ---- copy2d ---------------------------------------------------------------- */

static __global__ void k_copy2d(size_t rows, size_t cols, const float *src, size_t src_stride,
                                float *dst, size_t dst_stride, int accumulate) {
  size_t total = rows * cols;
  GRID_STRIDE(i, total) {
    size_t j = col_of(i, cols), r = row_of(i, cols);
    float v = src[r * src_stride + j];
    if (accumulate)
      dst[r * dst_stride + j] += v;
    else
      dst[r * dst_stride + j] = v;
  }
}

extern "C" cnn_status cnn_cuda_copy2d(void *vctx, size_t rows, size_t cols, const float *src,
                                      size_t src_stride, float *dst, size_t dst_stride,
                                      int accumulate) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (rows == 0 || cols == 0) return CNN_OK;
  /* cudaMemcpy2D rejects pitches above cudaDevAttrMaxPitch (2^31 - 1 bytes on
   * sm_80 / sm_90: cudaErrorInvalidPitchValue); wider strides take the kernel */
  if (!accumulate && src_stride >= cols && dst_stride >= cols &&
      src_stride <= 0x7fffffffu / sizeof(float) && dst_stride <= 0x7fffffffu / sizeof(float)) {
    CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_stride * sizeof(float), src, src_stride * sizeof(float),
                                 cols * sizeof(float), rows, cudaMemcpyDeviceToDevice,
                                 ctx->stream));
    return CNN_OK;
  }
  k_copy2d<<<cnn_cuda_blocks(ctx, rows * cols), CNN_CUDA_THREADS, 0, ctx->stream>>>(
      rows, cols, src, src_stride, dst, dst_stride, accumulate);
  LAUNCH_CHECK("k_copy2d");
  return CNN_OK;
}

/* ---- activations ------------------------------------------------------------- */

static __global__ void k_act_fwd(int a, float alpha, size_t n, const float *x, float *y) {
  GRID_STRIDE(i, n) y[i] = act_f(a, alpha, x[i]);
}

static __global__ void k_act_bwd(int a, float alpha, size_t n, const float *x, const float *dy,
                                 float *dx) {
  GRID_STRIDE(i, n) dx[i] += dy[i] * act_df(a, alpha, x[i]);
}

extern "C" cnn_status cnn_cuda_act_fwd(void *vctx, cnn_act a, float alpha, size_t n,
                                       const float *x, float *y) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if ((int)a < 0 || (int)a >= CNN_ACT_COUNT)
    return cnn_error(CNN_ERR_ARG, "cuda act_fwd: unknown activation %d", (int)a);
  if (n == 0) return CNN_OK;
  if (a == CNN_ACT_LINEAR) {
    if (x == y) return CNN_OK;
    CUDA_CHECK(cudaMemcpyAsync(y, x, n * sizeof(float), cudaMemcpyDeviceToDevice, ctx->stream));
    return CNN_OK;
  }
  k_act_fwd<<<cnn_cuda_blocks(ctx, n), CNN_CUDA_THREADS, 0, ctx->stream>>>((int)a, alpha, n, x, y);
  LAUNCH_CHECK("k_act_fwd");
  return CNN_OK;
}

/* the derivative is taken from x for every activation (y is not needed) */
extern "C" cnn_status cnn_cuda_act_bwd(void *vctx, cnn_act a, float alpha, size_t n,
                                       const float *x, const float *y, const float *dy,
                                       float *dx) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  (void)y;
  if ((int)a < 0 || (int)a >= CNN_ACT_COUNT)
    return cnn_error(CNN_ERR_ARG, "cuda act_bwd: unknown activation %d", (int)a);
  if (n == 0) return CNN_OK;
  k_act_bwd<<<cnn_cuda_blocks(ctx, n), CNN_CUDA_THREADS, 0, ctx->stream>>>((int)a, alpha, n, x,
                                                                             dy, dx);
  LAUNCH_CHECK("k_act_bwd");
  return CNN_OK;
}

/* ---- column sums (deterministic) ------------------------------------------------ */

#define CS_COLS 32 /* columns per block (one warp across) */
#define CS_LANES 8 /* row lanes per block */

/* Block (CS_COLS, CS_LANES) reduces rows [part*chunk, (part+1)*chunk) of 32
 * columns: each lane sums its strided rows in order, then lane 0 adds the lanes
 * in order. Output: out0/out1[part * cols + col]. */
static __global__ void k_colsum_partial(int mode, size_t rows, int cols, size_t chunk,
                                        const float *a, const float *b, const float *mean,
                                        cnn_cuda_colsum_act ba, double *out0, double *out1) {
  __shared__ double s0[CS_LANES][CS_COLS];
  __shared__ double s1[CS_LANES][CS_COLS];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int col = blockIdx.x * CS_COLS + tx;
  const size_t part = blockIdx.y;
  const size_t r0 = part * chunk;
  const size_t r1 = r0 + chunk < rows ? r0 + chunk : rows;
  double acc0 = 0.0, acc1 = 0.0;
  if (col < cols) {
    const size_t ucols = (size_t)cols;
    if (mode == 0) {
      for (size_t r = r0 + ty; r < r1; r += CS_LANES) acc0 += (double)a[r * ucols + col];
    } else if (mode == 1) {
      const double m = (double)mean[col];
      for (size_t r = r0 + ty; r < r1; r += CS_LANES) {
        double d = (double)a[r * ucols + col] - m;
        acc0 += d * d;
      }
    } else if (mode == 2) {
      const double m = (double)mean[col];
      for (size_t r = r0 + ty; r < r1; r += CS_LANES) {
        double g = (double)b[r * ucols + col];
        acc0 += g;
        acc1 += g * ((double)a[r * ucols + col] - m);
      }
    } else { /* mode 3: g = b act'(z), z exactly as the fused forward computes it */
      const float mf = mean[col], is = ba.invstd[col];
      const float gm = ba.gamma ? ba.gamma[col] : 1.0f, bt = ba.beta ? ba.beta[col] : 0.0f;
      const double m = (double)mf;
      for (size_t r = r0 + ty; r < r1; r += CS_LANES) {
        const float xv = a[r * ucols + col];
        const float z = gm * ((xv - mf) * is) + bt;
        const double g = (double)(b[r * ucols + col] * act_df(ba.act, ba.alpha, z));
        acc0 += g;
        acc1 += g * ((double)xv - m);
      }
    }
  }
  s0[ty][tx] = acc0;
  s1[ty][tx] = acc1;
  __syncthreads();
  if (ty == 0 && col < cols) {
    double t0 = 0.0, t1 = 0.0;
    for (int l = 0; l < CS_LANES; l++) {
      t0 += s0[l][tx];
      t1 += s1[l][tx];
    }
    out0[part * (size_t)cols + col] = t0;
    if (mode >= 2) out1[part * (size_t)cols + col] = t1;
  }
}

/* sums[j] = sum over parts, in order */
static __global__ void k_colsum_final(int mode, int parts, int cols, const double *p0,
                                      const double *p1, double *sums0, double *sums1) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  double t0 = 0.0, t1 = 0.0;
  for (int p = 0; p < parts; p++) {
    t0 += p0[(size_t)p * cols + j];
    if (mode >= 2) t1 += p1[(size_t)p * cols + j];
  }
  sums0[j] = t0;
  if (mode >= 2) sums1[j] = t1;
}

extern "C" int cnn_cuda_colsum_parts(const cnn_cuda_ctx *ctx, size_t rows, int cols) {
  size_t colblocks = ((size_t)cols + CS_COLS - 1) / CS_COLS;
  size_t target = (size_t)(ctx->sms > 0 ? ctx->sms : 1) * 4; /* blocks to fill the device */
  size_t parts = (target + colblocks - 1) / colblocks;
  size_t max_by_rows = (rows + 255) / 256; /* at least ~256 rows (32 per lane) per block */
  if (parts > max_by_rows) parts = max_by_rows;
  if (parts > 1024) parts = 1024;
  if (parts < 1) parts = 1;
  return (int)parts;
}

extern "C" cnn_status cnn_cuda_colsum(cnn_cuda_ctx *ctx, int mode, size_t rows, int cols,
                                      const float *a, const float *b, const float *mean,
                                      int parts, double *partials, double *sums0, double *sums1) {
  if (mode < 0 || mode > 2) return cnn_error(CNN_ERR_ARG, "cuda colsum: mode %d", mode);
  return cnn_cuda_colsum_ex(ctx, mode, rows, cols, a, b, mean, NULL, parts, partials, sums0,
                            sums1);
}

extern "C" cnn_status cnn_cuda_colsum_ex(cnn_cuda_ctx *ctx, int mode, size_t rows, int cols,
                                         const float *a, const float *b, const float *mean,
                                         const cnn_cuda_colsum_act *act, int parts,
                                         double *partials, double *sums0, double *sums1) {
  size_t chunk;
  unsigned colblocks;
  cnn_cuda_colsum_act ba;
  if (cols <= 0) return CNN_OK;
  if (mode < 0 || mode > 3 || (mode == 3 && (!act || !act->invstd)))
    return cnn_error(CNN_ERR_ARG, "cuda colsum: mode %d without its activation data", mode);
  memset(&ba, 0, sizeof ba);
  if (act) ba = *act;
  if (parts < 1) parts = 1;
  if (rows == 0) {
    CUDA_CHECK(cudaMemsetAsync(sums0, 0, (size_t)cols * sizeof(double), ctx->stream));
    if (mode >= 2)
      CUDA_CHECK(cudaMemsetAsync(sums1, 0, (size_t)cols * sizeof(double), ctx->stream));
    return CNN_OK;
  }
  chunk = (rows + (size_t)parts - 1) / (size_t)parts;
  colblocks = (unsigned)(((size_t)cols + CS_COLS - 1) / CS_COLS);
  if (parts == 1) {
    k_colsum_partial<<<dim3(colblocks, 1), dim3(CS_COLS, CS_LANES), 0, ctx->stream>>>(
        mode, rows, cols, chunk, a, b, mean, ba, sums0, sums1);
    LAUNCH_CHECK("k_colsum_partial");
    return CNN_OK;
  }
  {
    double *p0 = partials, *p1 = partials + (size_t)parts * cols;
    k_colsum_partial<<<dim3(colblocks, (unsigned)parts), dim3(CS_COLS, CS_LANES), 0,
                       ctx->stream>>>(mode, rows, cols, chunk, a, b, mean, ba, p0, p1);
    LAUNCH_CHECK("k_colsum_partial");
    k_colsum_final<<<(unsigned)((cols + 255) / 256), 256, 0, ctx->stream>>>(mode, parts, cols, p0,
                                                                           p1, sums0, sums1);
    LAUNCH_CHECK("k_colsum_final");
  }
  return CNN_OK;
}

/* ---- bias ------------------------------------------------------------------------ */

static __global__ void k_bias_add(size_t rows, size_t cols, const float *bias, float *y) {
  size_t total = rows * cols;
  GRID_STRIDE(i, total) y[i] += bias[col_of(i, cols)];
}

static __global__ void k_double_to_float(int n, const double *s, float *out) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j < n) out[j] = (float)s[j];
}

extern "C" cnn_status cnn_cuda_bias_add(void *vctx, size_t rows, size_t cols, const float *bias,
                                        float *y) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (rows == 0 || cols == 0) return CNN_OK;
  k_bias_add<<<cnn_cuda_blocks(ctx, rows * cols), CNN_CUDA_THREADS, 0, ctx->stream>>>(rows, cols,
                                                                                     bias, y);
  LAUNCH_CHECK("k_bias_add");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_bias_grad(void *vctx, size_t rows, size_t cols, const float *dy,
                                         float *db) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  int parts;
  size_t sums_bytes, part_bytes;
  void *scratch = NULL;
  double *sums, *partials;
  if (cols == 0) return CNN_OK;
  if (cols > 0x7fffffff) return cnn_error(CNN_ERR_ARG, "cuda bias_grad: %zu columns", cols);
  parts = cnn_cuda_colsum_parts(ctx, rows, (int)cols);
  sums_bytes = cnn_cuda_align256(cols * sizeof(double));
  part_bytes = parts > 1 ? 2 * (size_t)parts * cols * sizeof(double) : 0;
  CNN_TRY(cnn_cuda_scratch(ctx, sums_bytes + part_bytes, &scratch));
  sums = (double *)scratch;
  partials = (double *)((char *)scratch + sums_bytes);
  CNN_TRY(cnn_cuda_colsum(ctx, 0, rows, (int)cols, dy, NULL, NULL, parts, partials, sums, NULL));
  k_double_to_float<<<(unsigned)((cols + 255) / 256), 256, 0, ctx->stream>>>((int)cols, sums, db);
  LAUNCH_CHECK("k_double_to_float");
  return CNN_OK;
}

/* ---- Darknet shortcut -------------------------------------------------------------- */

/* one thread per (n, y, x, ch) of the overlap; the index maps are injective, so
 * every destination element has exactly one writer */
static __global__ void k_shortcut(int backward, cnn_shortcut_desc d, int stride, int sample,
                                  int minh, int minw, int minc, const float *src, float *dst) {
  size_t total = (size_t)d.n * minh * minw * minc;
  GRID_STRIDE(i, total) {
    size_t t = i;
    int ch = (int)(t % minc);
    t /= minc;
    int x = (int)(t % minw);
    t /= minw;
    int y = (int)(t % minh);
    int b = (int)(t / minh);
    const int y1 = y * stride, x1 = x * stride, y2 = y * sample, x2 = x * sample;
    /* only when the h and w ratios differ: a row outside the other tensor */
    if (y1 >= d.h1 || x1 >= d.w1 || y2 >= d.h2 || x2 >= d.w2) continue;
    size_t from_i = (((size_t)b * d.h1 + y1) * d.w1 + x1) * d.c1 + ch;
    size_t out_i = (((size_t)b * d.h2 + y2) * d.w2 + x2) * d.c2 + ch;
    if (backward)
      dst[from_i] += src[out_i]; /* src = dout, dst = dfrom */
    else
      dst[out_i] += src[from_i]; /* src = from, dst = out */
  }
}

static cnn_status shortcut_launch(cnn_cuda_ctx *ctx, int backward, const cnn_shortcut_desc *d,
                                  const float *src, float *dst) {
  int stride, sample, minh, minw, minc;
  size_t total;
  if (!d) return cnn_error(CNN_ERR_ARG, "cuda shortcut: descriptor is NULL");
  if (d->w1 <= 0 || d->w2 <= 0 || d->h1 <= 0 || d->h2 <= 0 || d->c1 <= 0 || d->c2 <= 0 || d->n < 0)
    return cnn_error(CNN_ERR_ARG, "cuda shortcut: bad shapes n=%d from %dx%dx%d to %dx%dx%d",
                     d->n, d->h1, d->w1, d->c1, d->h2, d->w2, d->c2);
  stride = d->w1 / d->w2;
  if (stride < 1) stride = 1;
  sample = d->w2 / d->w1;
  if (sample < 1) sample = 1;
  minh = d->h1 < d->h2 ? d->h1 : d->h2;
  minw = d->w1 < d->w2 ? d->w1 : d->w2;
  minc = d->c1 < d->c2 ? d->c1 : d->c2;
  total = (size_t)d->n * minh * minw * minc;
  if (total == 0) return CNN_OK;
  k_shortcut<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(
      backward, *d, stride, sample, minh, minw, minc, src, dst);
  LAUNCH_CHECK("k_shortcut");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_shortcut_fwd(void *vctx, const cnn_shortcut_desc *d,
                                            const float *from, float *out) {
  return shortcut_launch(CNN_CUDA_CTX(vctx), 0, d, from, out);
}

extern "C" cnn_status cnn_cuda_shortcut_bwd(void *vctx, const cnn_shortcut_desc *d,
                                            const float *dout, float *dfrom) {
  return shortcut_launch(CNN_CUDA_CTX(vctx), 1, d, dout, dfrom);
}

/* ---- dropout mask -------------------------------------------------------------------- */

/* keep_scale = 1 / (1 - p), or 0 for p == 1 (drop everything, not 0/0).
 * st != NULL (dropout_mask_st): the seed is keyed by the step in flight, read
 * from the device-side step state (a captured graph replays with the new step). */
static __global__ void k_dropout_mask(size_t n, float p, float keep_scale, uint64_t seed,
                                      uint64_t offset, const cnn_step_state *st,
                                      uint64_t stream, float *mask) {
  if (st) seed = cnn_rng_u64(seed, (uint64_t)st->step * 4096u + stream);
  GRID_STRIDE(i, n) mask[i] = cnn_rng_uniform(seed, offset + (uint64_t)i) >= p ? keep_scale : 0.0f;
}

static cnn_status dropout_launch(cnn_cuda_ctx *ctx, const char *op, size_t n, float p,
                                 uint64_t seed, uint64_t offset, const cnn_step_state *st,
                                 uint64_t stream, float *mask) {
  if (!(p >= 0.0f && p <= 1.0f))
    return cnn_error(CNN_ERR_ARG, "cuda %s: probability %g is not in [0, 1]", op, p);
  if (n == 0) return CNN_OK;
  if (!mask) return cnn_error(CNN_ERR_ARG, "cuda %s: mask is NULL", op);
  /* the same float expression as the reference, evaluated once on the host */
  const float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  k_dropout_mask<<<cnn_cuda_blocks(ctx, n), CNN_CUDA_THREADS, 0, ctx->stream>>>(
      n, p, keep_scale, seed, offset, st, stream, mask);
  LAUNCH_CHECK("k_dropout_mask");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_dropout_mask(void *vctx, size_t n, float p, uint64_t seed,
                                            uint64_t offset, float *mask) {
  return dropout_launch(CNN_CUDA_CTX(vctx), "dropout_mask", n, p, seed, offset, NULL, 0, mask);
}

extern "C" cnn_status cnn_cuda_dropout_mask_st(void *vctx, size_t n, float p, uint64_t seed,
                                               uint64_t stream, const cnn_step_state *st,
                                               float *mask) {
  if (!st) return cnn_error(CNN_ERR_ARG, "cuda dropout_mask_st: step state is NULL");
  return dropout_launch(CNN_CUDA_CTX(vctx), "dropout_mask_st", n, p, seed, 0, st, stream, mask);
}

/* ---- residual add fused with an activation --------------------------------------------- */

/* y = act(a + b); y may alias a or b (each element is read, then written, by one thread) */
static __global__ void k_add_act_fwd(size_t n, const float *a, const float *b, int act,
                                     float alpha, float *y) {
  GRID_STRIDE(i, n) y[i] = act_f(act, alpha, a[i] + b[i]);
}

/* g = dy act'(from y); da += g, db += g (each if non-NULL) */
static __global__ void k_add_act_bwd(size_t n, const float *y, const float *dy, int act,
                                     float alpha, float *da, float *db) {
  GRID_STRIDE(i, n) {
    const float g = act == CNN_ACT_LINEAR ? dy[i] : dy[i] * act_df_from_y(act, alpha, y[i]);
    if (da) da[i] += g;
    if (db) db[i] += g;
  }
}

extern "C" cnn_status cnn_cuda_add_act_fwd(void *vctx, size_t n, const float *a, const float *b,
                                           cnn_act act, float alpha, float *y) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if ((int)act < 0 || (int)act >= CNN_ACT_COUNT)
    return cnn_error(CNN_ERR_ARG, "cuda add_act_fwd: unknown activation %d", (int)act);
  if (n == 0) return CNN_OK;
  if (!a || !b || !y) return cnn_error(CNN_ERR_ARG, "cuda add_act_fwd: NULL buffer");
  k_add_act_fwd<<<cnn_cuda_blocks(ctx, n), CNN_CUDA_THREADS, 0, ctx->stream>>>(n, a, b, (int)act,
                                                                              alpha, y);
  LAUNCH_CHECK("k_add_act_fwd");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_add_act_bwd(void *vctx, size_t n, const float *y, const float *dy,
                                           cnn_act act, float alpha, float *da, float *db) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (act != CNN_ACT_LINEAR && act != CNN_ACT_RELU && act != CNN_ACT_LEAKY &&
      act != CNN_ACT_SIGMOID && act != CNN_ACT_TANH && act != CNN_ACT_RAMP &&
      act != CNN_ACT_RELU6)
    return cnn_error(CNN_ERR_ARG,
                     "cuda add_act_bwd: activation %d cannot be differentiated from its output",
                     (int)act);
  if (n == 0 || (!da && !db)) return CNN_OK;
  if (!dy || (act != CNN_ACT_LINEAR && !y))
    return cnn_error(CNN_ERR_ARG, "cuda add_act_bwd: NULL buffer");
  k_add_act_bwd<<<cnn_cuda_blocks(ctx, n), CNN_CUDA_THREADS, 0, ctx->stream>>>(n, y, dy, (int)act,
                                                                              alpha, da, db);
  LAUNCH_CHECK("k_add_act_bwd");
  return CNN_OK;
}

/* ---- cast between f32 and bf16 (core/bf16.h: the same rounding as ref and cpu) ---- */
static __global__ void k_cast_f32_bf16(size_t n, const float *s, uint16_t *d) {
  GRID_STRIDE(i, n) d[i] = cnn_f32_to_bf16(s[i]);
}

static __global__ void k_cast_bf16_f32(size_t n, const uint16_t *s, float *d) {
  GRID_STRIDE(i, n) d[i] = cnn_bf16_to_f32(s[i]);
}

extern "C" cnn_status cnn_cuda_cast(void *vctx, size_t n, const void *src, cnn_dtype src_dt,
                                    void *dst, cnn_dtype dst_dt) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (n == 0) return CNN_OK;
  if (!src || !dst) return cnn_error(CNN_ERR_ARG, "cuda cast: NULL buffer");
  if (src_dt == dst_dt && (src_dt == CNN_DT_F32 || src_dt == CNN_DT_BF16)) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n * (src_dt == CNN_DT_F32 ? 4 : 2),
                               cudaMemcpyDeviceToDevice, ctx->stream));
    return CNN_OK;
  }
  if (src_dt == CNN_DT_F32 && dst_dt == CNN_DT_BF16) {
    k_cast_f32_bf16<<<cnn_cuda_blocks(ctx, n), CNN_CUDA_THREADS, 0, ctx->stream>>>(
        n, (const float *)src, (uint16_t *)dst);
    LAUNCH_CHECK("k_cast_f32_bf16");
    return CNN_OK;
  }
  if (src_dt == CNN_DT_BF16 && dst_dt == CNN_DT_F32) {
    k_cast_bf16_f32<<<cnn_cuda_blocks(ctx, n), CNN_CUDA_THREADS, 0, ctx->stream>>>(
        n, (const uint16_t *)src, (float *)dst);
    LAUNCH_CHECK("k_cast_bf16_f32");
    return CNN_OK;
  }
  return cnn_error(CNN_UNSUPPORTED, "cuda cast: %d to %d is not supported", (int)src_dt,
                   (int)dst_dt);
}
