/* CUDA max and average pooling, NHWC, windows clipped to the input.
 * Window (oy, ox) covers input rows oy*stride_h - pad_h + r (r < kh) and columns
 * ox*stride_w - pad_w + s (s < kw); cells outside the input are padding and take
 * no part. A window with no cell inside the input outputs 0 and gets no gradient.
 * Max ties go to the first cell in (r, s) order (strict >).
 *
 * Forward: one thread per output element. Backward: one thread per input element,
 * gathering from every window that contains it (in (oy, ox) order), so dx += is
 * race-free and deterministic without atomics. */
#include "backend/cuda/cuda_common.h"

/* the windows containing input row i: oy in [lo, hi] (empty when lo > hi) */
static __device__ __forceinline__ void windows_of(int i, int pad, int k, int stride, int out,
                                                  int *lo, int *hi) {
  /* oy*stride - pad <= i <= oy*stride - pad + k - 1 */
  int t = i + pad - k + 1; /* oy >= ceil(t / stride) */
  int l = t <= 0 ? 0 : (t + stride - 1) / stride;
  int h = (i + pad) / stride; /* i + pad >= 0 always */
  if (h > out - 1) h = out - 1;
  *lo = l;
  *hi = h;
}

/* linear index in x of window (nb, oy, ox, ch)'s maximum, -1 if the window is
 * all padding */
static __device__ __forceinline__ long long window_argmax(const cnn_pool_desc &d,
                                                          const float *__restrict__ x, int nb,
                                                          int oy, int ox, int ch) {
  long long best = -1;
  float bv = 0.0f;
  const int y0 = oy * d.stride_h - d.pad_h, x0 = ox * d.stride_w - d.pad_w;
  for (int r = 0; r < d.kh; r++) {
    const int iy = y0 + r;
    if (iy < 0 || iy >= d.h) continue;
    for (int s = 0; s < d.kw; s++) {
      const int ix = x0 + s;
      if (ix < 0 || ix >= d.w) continue;
      const long long i = (((long long)nb * d.h + iy) * d.w + ix) * d.c + ch;
      const float v = x[i];
      if (best < 0 || v > bv) {
        best = i;
        bv = v;
      }
    }
  }
  return best;
}

/* number of window (oy, ox)'s cells inside the input */
static __device__ __forceinline__ int window_count(const cnn_pool_desc &d, int oy, int ox) {
  int y0 = oy * d.stride_h - d.pad_h, x0 = ox * d.stride_w - d.pad_w;
  int y1 = y0 + d.kh, x1 = x0 + d.kw;
  if (y0 < 0) y0 = 0;
  if (x0 < 0) x0 = 0;
  if (y1 > d.h) y1 = d.h;
  if (x1 > d.w) x1 = d.w;
  return (y1 > y0 && x1 > x0) ? (y1 - y0) * (x1 - x0) : 0;
}

/* decompose an NHWC index over [n, hh, ww, c] */
#define NHWC_SPLIT(i, hh, ww, cc, nb, yy, xx, ch) \
  do {                                          \
    size_t t_ = (i);                            \
    ch = (int)(t_ % (size_t)(cc));              \
    t_ /= (size_t)(cc);                         \
    xx = (int)(t_ % (size_t)(ww));              \
    t_ /= (size_t)(ww);                         \
    yy = (int)(t_ % (size_t)(hh));              \
    nb = (int)(t_ / (size_t)(hh));              \
  } while (0)

#define GRID_STRIDE(i, n)                                                   \
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
       i += (size_t)gridDim.x * blockDim.x)

static __global__ void k_maxpool_fwd(cnn_pool_desc d, const float *__restrict__ x,
                                     float *__restrict__ y) {
  const size_t total = (size_t)d.n * d.oh * d.ow * d.c;
  GRID_STRIDE(i, total) {
    int nb, oy, ox, ch;
    NHWC_SPLIT(i, d.oh, d.ow, d.c, nb, oy, ox, ch);
    long long best = window_argmax(d, x, nb, oy, ox, ch);
    y[i] = best < 0 ? 0.0f : x[best];
  }
}

static __global__ void k_maxpool_bwd(cnn_pool_desc d, const float *__restrict__ x,
                                     const float *__restrict__ dy, float *__restrict__ dx) {
  const size_t total = (size_t)d.n * d.h * d.w * d.c;
  GRID_STRIDE(i, total) {
    int nb, iy, ix, ch, oy0, oy1, ox0, ox1;
    NHWC_SPLIT(i, d.h, d.w, d.c, nb, iy, ix, ch);
    windows_of(iy, d.pad_h, d.kh, d.stride_h, d.oh, &oy0, &oy1);
    windows_of(ix, d.pad_w, d.kw, d.stride_w, d.ow, &ox0, &ox1);
    float acc = dx[i];
    for (int oy = oy0; oy <= oy1; oy++)
      for (int ox = ox0; ox <= ox1; ox++)
        if (window_argmax(d, x, nb, oy, ox, ch) == (long long)i)
          acc += dy[(((size_t)nb * d.oh + oy) * d.ow + ox) * d.c + ch];
    dx[i] = acc;
  }
}

static __global__ void k_avgpool_fwd(cnn_pool_desc d, const float *__restrict__ x,
                                     float *__restrict__ y) {
  const size_t total = (size_t)d.n * d.oh * d.ow * d.c;
  GRID_STRIDE(i, total) {
    int nb, oy, ox, ch;
    NHWC_SPLIT(i, d.oh, d.ow, d.c, nb, oy, ox, ch);
    const int y0 = oy * d.stride_h - d.pad_h, x0 = ox * d.stride_w - d.pad_w;
    float sum = 0.0f;
    for (int r = 0; r < d.kh; r++) {
      const int iy = y0 + r;
      if (iy < 0 || iy >= d.h) continue;
      for (int s = 0; s < d.kw; s++) {
        const int ix = x0 + s;
        if (ix < 0 || ix >= d.w) continue;
        sum += x[(((size_t)nb * d.h + iy) * d.w + ix) * d.c + ch];
      }
    }
    const int count = window_count(d, oy, ox);
    y[i] = count ? sum / (float)count : 0.0f;
  }
}

static __global__ void k_avgpool_bwd(cnn_pool_desc d, const float *__restrict__ dy,
                                     float *__restrict__ dx) {
  const size_t total = (size_t)d.n * d.h * d.w * d.c;
  GRID_STRIDE(i, total) {
    int nb, iy, ix, ch, oy0, oy1, ox0, ox1;
    NHWC_SPLIT(i, d.h, d.w, d.c, nb, iy, ix, ch);
    windows_of(iy, d.pad_h, d.kh, d.stride_h, d.oh, &oy0, &oy1);
    windows_of(ix, d.pad_w, d.kw, d.stride_w, d.ow, &ox0, &ox1);
    float acc = dx[i];
    for (int oy = oy0; oy <= oy1; oy++)
      for (int ox = ox0; ox <= ox1; ox++) {
        const int count = window_count(d, oy, ox); /* >= 1: the window holds (iy, ix) */
        acc += dy[(((size_t)nb * d.oh + oy) * d.ow + ox) * d.c + ch] / (float)count;
      }
    dx[i] = acc;
  }
}

static cnn_status check_pool(const cnn_pool_desc *d, const char *op) {
  if (!d) return cnn_error(CNN_ERR_ARG, "cuda %s: descriptor is NULL", op);
  if (d->n < 0 || d->h < 1 || d->w < 1 || d->c < 1 || d->oh < 0 || d->ow < 0)
    return cnn_error(CNN_ERR_ARG, "cuda %s: bad shape x %dx%dx%dx%d y %dx%d", op, d->n, d->h,
                     d->w, d->c, d->oh, d->ow);
  if (d->kh < 1 || d->kw < 1 || d->stride_h < 1 || d->stride_w < 1 || d->pad_h < 0 ||
      d->pad_w < 0)
    return cnn_error(CNN_ERR_ARG, "cuda %s: bad window %dx%d, stride %dx%d or padding %dx%d", op,
                     d->kh, d->kw, d->stride_h, d->stride_w, d->pad_h, d->pad_w);
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_maxpool_fwd(void *vctx, const cnn_pool_desc *d, const float *x,
                                           float *y) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  CNN_TRY(check_pool(d, "maxpool_fwd"));
  size_t total = (size_t)d->n * d->oh * d->ow * d->c;
  if (total == 0) return CNN_OK;
  k_maxpool_fwd<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(*d, x, y);
  LAUNCH_CHECK("k_maxpool_fwd");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_maxpool_bwd(void *vctx, const cnn_pool_desc *d, const float *x,
                                           const float *dy, float *dx) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  CNN_TRY(check_pool(d, "maxpool_bwd"));
  size_t total = (size_t)d->n * d->h * d->w * d->c;
  if (total == 0 || d->oh == 0 || d->ow == 0) return CNN_OK;
  k_maxpool_bwd<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(*d, x, dy, dx);
  LAUNCH_CHECK("k_maxpool_bwd");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_avgpool_fwd(void *vctx, const cnn_pool_desc *d, const float *x,
                                           float *y) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  CNN_TRY(check_pool(d, "avgpool_fwd"));
  size_t total = (size_t)d->n * d->oh * d->ow * d->c;
  if (total == 0) return CNN_OK;
  k_avgpool_fwd<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(*d, x, y);
  LAUNCH_CHECK("k_avgpool_fwd");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_avgpool_bwd(void *vctx, const cnn_pool_desc *d, const float *dy,
                                           float *dx) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  CNN_TRY(check_pool(d, "avgpool_bwd"));
  size_t total = (size_t)d->n * d->h * d->w * d->c;
  if (total == 0 || d->oh == 0 || d->ow == 0) return CNN_OK;
  k_avgpool_bwd<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(*d, dy, dx);
  LAUNCH_CHECK("k_avgpool_bwd");
  return CNN_OK;
}
