/* CUDA: Darknet's crop and reorg (rules in backend.h, index maps in
 * core/crop_reorg.h, the same functions ref and cpu call). One thread per output
 * element; both maps are injective, so every backward write has one writer. The
 * crop's draws read the step in flight from the device-side step state, so a
 * captured graph replays with the next step's windows. */
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_device.cuh"
#include "core/crop_reorg.h"

/* forward: y[o] = x[i] scale + off; backward: dx[i] += scale dy[o] */
static __global__ void k_crop(cnn_crop_desc d, const cnn_step_state *st, int backward,
                              const float *src, float *dst) {
  const size_t total = (size_t)d.n * d.oh * d.ow * d.c;
  const uint64_t key = d.train ? cnn_crop_key(&d, st->step) : 0;
  GRID_STRIDE(o, total) {
    size_t t = o;
    int ch = (int)(t % d.c);
    t /= d.c;
    int q = (int)(t % d.ow);
    t /= d.ow;
    int r = (int)(t % d.oh);
    int b = (int)(t / d.oh);
    int oy, ox, flip;
    cnn_crop_window(&d, key, b, &oy, &ox, &flip);
    size_t i = (((size_t)b * d.h + r + oy) * d.w + cnn_crop_col(&d, ox, flip, q)) * d.c + ch;
    if (backward)
      dst[i] += d.scale * src[o];
    else
      dst[o] = src[i] * d.scale + cnn_crop_offset(&d, key, b, ch);
  }
}

static cnn_status crop_launch(cnn_cuda_ctx *ctx, const char *op, const cnn_crop_desc *d,
                              const float *src, float *dst, const cnn_step_state *st,
                              int backward) {
  CNN_TRY(cnn_crop_check("cuda", op, d, src, dst, st));
  size_t total = (size_t)d->n * d->oh * d->ow * d->c;
  if (total == 0) return CNN_OK;
  k_crop<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(*d, st, backward,
                                                                           src, dst);
  LAUNCH_CHECK("k_crop");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_crop_fwd(void *vctx, const cnn_crop_desc *d, const float *x,
                                        float *y, const cnn_step_state *st) {
  return crop_launch(CNN_CUDA_CTX(vctx), "crop_fwd", d, x, y, st, 0);
}

extern "C" cnn_status cnn_cuda_crop_bwd(void *vctx, const cnn_crop_desc *d, const float *dy,
                                        float *dx, const cnn_step_state *st) {
  return crop_launch(CNN_CUDA_CTX(vctx), "crop_bwd", d, dy, dx, st, 1);
}

/* forward: y[o] = x[s(o)] or 0; backward: dx[s(o)] += dy[o] */
static __global__ void k_reorg(cnn_reorg_desc d, int backward, const float *src, float *dst) {
  const int64_t in = (int64_t)d.h * d.w * d.c, out = (int64_t)d.oh * d.ow * d.oc;
  const size_t total = (size_t)d.n * (size_t)out;
  GRID_STRIDE(t, total) {
    int64_t b = (int64_t)t / out, s = cnn_reorg_src(&d, (int64_t)t % out);
    if (backward) {
      if (s >= 0) dst[b * in + s] += src[t];
    } else {
      dst[t] = s < 0 ? 0.0f : src[b * in + s];
    }
  }
}

static cnn_status reorg_launch(cnn_cuda_ctx *ctx, const char *op, const cnn_reorg_desc *d,
                               const float *src, float *dst, int backward) {
  CNN_TRY(cnn_reorg_check("cuda", op, d, src, dst));
  size_t total = (size_t)d->n * d->oh * d->ow * d->oc;
  if (total == 0) return CNN_OK;
  k_reorg<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(*d, backward, src,
                                                                            dst);
  LAUNCH_CHECK("k_reorg");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_reorg_fwd(void *vctx, const cnn_reorg_desc *d, const float *x,
                                         float *y) {
  return reorg_launch(CNN_CUDA_CTX(vctx), "reorg_fwd", d, x, y, 0);
}

extern "C" cnn_status cnn_cuda_reorg_bwd(void *vctx, const cnn_reorg_desc *d, const float *dy,
                                         float *dx) {
  return reorg_launch(CNN_CUDA_CTX(vctx), "reorg_bwd", d, dy, dx, 1);
}
