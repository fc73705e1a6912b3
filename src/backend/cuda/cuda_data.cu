/* CUDA ops of a dataset bound in backend memory (backend.h: gather_aug, data_seek).
 *
 * gather_aug makes a training batch on the device: the u8 images, labels, the
 * epoch's permutation and the normalisation table live in device memory; the
 * epoch position and augmentation key are read from the device-side step state,
 * so a captured step graph gathers the next batch on every replay. The output is
 * bit-identical to the host loader's (src/data/augment.c cnn_aug_image): the same
 * draws (cnn_aug_draw_for, host/device), table lookups only, and 0.0f for cutout.
 *
 * Capture-safe: no allocation, no synchronisation (except CNN_CUDA_SYNC outside a
 * capture, via LAUNCH_CHECK). */
#include <limits.h>
#include <stdint.h>

#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_device.cuh"
#include "data/augment.h"

/* Grid: blockIdx.x strides over the images of the batch, blockIdx.y picks a
 * contiguous slice of output rows [oy0, oy1) of each image. Thread 0 computes the
 * image's index and draws once into shared memory; the block then writes its rows
 * of x[i] ([h, w, c] floats). Rows are flattened with the row length row_px = w*c
 * (< 2^31, checked by the launcher): a thread's (oy, j) advances by blockDim.x
 * elements per iteration without any 64-bit division. */
static __global__ void k_gather_aug(int n, int h, int w, int c, const uint8_t *__restrict__ images,
                                    const int32_t *__restrict__ labels,
                                    const int32_t *__restrict__ perm,
                                    const float *__restrict__ lut, cnn_augment aug,
                                    float *__restrict__ x, int32_t *__restrict__ y,
                                    const cnn_step_state *st) {
  __shared__ cnn_aug_draw s_d;
  __shared__ int32_t s_idx;
  const int row_px = w * c; /* fits in int: checked on the host */
  const int oy0 = (int)(((int64_t)h * blockIdx.y) / gridDim.y);
  const int oy1 = (int)(((int64_t)h * (blockIdx.y + 1)) / gridDim.y);
  const int step_q = (int)blockDim.x / row_px; /* rows and columns one stride advances */
  const int step_r = (int)blockDim.x % row_px;
  for (int i = blockIdx.x; i < n; i += gridDim.x) {
    __syncthreads(); /* the previous image's readers of s_d / s_idx are done */
    if (threadIdx.x == 0) {
      const int64_t pos = st->data_pos + (int64_t)i;
      const int32_t idx = perm[pos];
      cnn_aug_draw d;
      cnn_aug_draw_for(st->data_key, pos, h, w, &aug, &d);
      s_d = d;
      s_idx = idx;
      if (blockIdx.y == 0) y[i] = labels[idx];
    }
    __syncthreads();
    const cnn_aug_draw d = s_d;
    const uint8_t *img = images + (size_t)s_idx * (size_t)h * (size_t)row_px;
    float *out = x + (size_t)i * (size_t)h * (size_t)row_px;
    const int has_cut = d.cut_x1 > d.cut_x0;
    const int flip_base = w - 1 + d.dx; /* flip: source column of x is flip_base - x */
    int oy = oy0 + (int)threadIdx.x / row_px;
    int j = (int)threadIdx.x % row_px;
    while (oy < oy1) {
      const int px = j / c;
      const int ch = j - px * c;
      const int sy = oy + d.dy;
      const int sx = d.flip ? flip_base - px : px + d.dx;
      float v;
      if (has_cut && oy >= d.cut_y0 && oy < d.cut_y1 && px >= d.cut_x0 && px < d.cut_x1)
        v = 0.0f;
      else if (sy < 0 || sy >= h || sx < 0 || sx >= w)
        v = lut[ch * 256]; /* a raw-0 pixel: the padding */
      else
        v = lut[ch * 256 + img[(size_t)sy * (size_t)row_px + (size_t)sx * (size_t)c + ch]];
      out[(size_t)oy * (size_t)row_px + (size_t)j] = v;
      oy += step_q;
      j += step_r;
      if (j >= row_px) {
        j -= row_px;
        oy++;
      }
    }
  }
}

/* after every reader of this batch's position (same stream: ordered) */
static __global__ void k_data_advance(cnn_step_state *st, int n) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  st->data_pos += (int64_t)n;
}

static __global__ void k_data_seek(cnn_step_state *st, int64_t pos, uint64_t key) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  st->data_pos = pos;
  st->data_key = key;
}

extern "C" cnn_status cnn_cuda_gather_aug(void *vctx, int n, int h, int w, int c,
                                          const uint8_t *images, const int32_t *labels,
                                          const int32_t *perm, const float *lut,
                                          const cnn_augment *aug, float *x, int32_t *y,
                                          cnn_step_state *st) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (n < 0 || h < 1 || w < 1 || c < 1)
    return cnn_error(CNN_ERR_ARG, "cuda gather_aug: bad shape n=%d h=%d w=%d c=%d", n, h, w, c);
  /* row and column counters step up to one block past their end: keep int headroom */
  if ((int64_t)w * (int64_t)c > (int64_t)INT_MAX - 1024 || h > INT_MAX - 1024)
    return cnn_error(CNN_ERR_SHAPE, "cuda gather_aug: image %d x %d x %d too large", h, w, c);
  if (!st) return cnn_error(CNN_ERR_ARG, "cuda gather_aug: step state is NULL");
  if (!aug) return cnn_error(CNN_ERR_ARG, "cuda gather_aug: augmentation is NULL");
  if (n == 0) return CNN_OK; /* no images: data_pos += 0 */
  if (!images || !labels || !perm || !lut || !x || !y)
    return cnn_error(CNN_ERR_ARG, "cuda gather_aug: NULL buffer");
  /* images across x (capped: blocks loop over images), row slices across y so that a
   * small batch still fills the device; a slice is at least about one block of
   * elements, and gridDim.y stays within its 65535 limit */
  const unsigned cap = cnn_cuda_blocks(ctx, (size_t)-1 / 2); /* sms * 32 */
  const unsigned gx = (unsigned)n < cap ? (unsigned)n : cap;
  const size_t img_px = (size_t)h * (size_t)w * (size_t)c;
  size_t gy = cap / gx;
  if (gy > img_px / CNN_CUDA_THREADS) gy = img_px / CNN_CUDA_THREADS;
  if (gy > (size_t)h) gy = (size_t)h;
  if (gy > 65535) gy = 65535;
  if (gy < 1) gy = 1;
  const dim3 grid(gx, (unsigned)gy, 1);
  k_gather_aug<<<grid, CNN_CUDA_THREADS, 0, ctx->stream>>>(n, h, w, c, images, labels, perm,
                                                           lut, *aug, x, y, st);
  LAUNCH_CHECK("k_gather_aug");
  k_data_advance<<<1, 32, 0, ctx->stream>>>(st, n);
  LAUNCH_CHECK("k_data_advance");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_data_seek(void *vctx, cnn_step_state *st, int64_t pos,
                                         uint64_t key) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (!st) return cnn_error(CNN_ERR_ARG, "cuda data_seek: step state is NULL");
  if (pos < 0) return cnn_error(CNN_ERR_ARG, "cuda data_seek: negative position %lld",
                                (long long)pos);
  k_data_seek<<<1, 32, 0, ctx->stream>>>(st, pos, key);
  LAUNCH_CHECK("k_data_seek");
  return CNN_OK;
}
