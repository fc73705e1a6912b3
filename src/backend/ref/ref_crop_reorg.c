/* ref: Darknet's crop and reorg (rules in backend.h, index maps in core/crop_reorg.h),
 * as loops over the output. */
#include "backend/ref/ref.h"
#include "core/crop_reorg.h"

/* every (output index, input index) pair of the crop: forward y[o] = x[i] scale + off,
 * backward dx[i] += scale dy[o] */
static void crop_pairs(const cnn_crop_desc *d, const cnn_step_state *st, int backward,
                       const float *src, float *dst) {
  uint64_t key = d->train ? cnn_crop_key(d, st->step) : 0;
  for (int b = 0; b < d->n; b++) {
    int oy, ox, flip;
    cnn_crop_window(d, key, b, &oy, &ox, &flip);
    for (int r = 0; r < d->oh; r++)
      for (int q = 0; q < d->ow; q++) {
        int col = cnn_crop_col(d, ox, flip, q);
        for (int ch = 0; ch < d->c; ch++) {
          size_t o = (((size_t)b * d->oh + r) * d->ow + q) * d->c + ch;            /* [n,oh,ow,c] */
          size_t i = (((size_t)b * d->h + r + oy) * d->w + col) * d->c + ch;       /* [n,h,w,c] */
          if (backward)
            dst[i] = (float)((double)dst[i] + (double)d->scale * src[o]);
          else
            dst[o] = (float)((double)src[i] * d->scale + cnn_crop_offset(d, key, b, ch));
        }
      }
  }
}

cnn_status ref_crop_fwd(void *ctx, const cnn_crop_desc *d, const float *x, float *y,
                        const cnn_step_state *st) {
  CNN_TRY(cnn_crop_check("ref", "crop_fwd", d, x, y, st));
  crop_pairs(d, st, 0, x, y);
  return CNN_OK;
}

cnn_status ref_crop_bwd(void *ctx, const cnn_crop_desc *d, const float *dy, float *dx,
                        const cnn_step_state *st) {
  CNN_TRY(cnn_crop_check("ref", "crop_bwd", d, dy, dx, st));
  crop_pairs(d, st, 1, dy, dx);
  return CNN_OK;
}

cnn_status ref_reorg_fwd(void *ctx, const cnn_reorg_desc *d, const float *x, float *y) {
  CNN_TRY(cnn_reorg_check("ref", "reorg_fwd", d, x, y));
  size_t in = (size_t)d->h * d->w * d->c, out = (size_t)d->oh * d->ow * d->oc;
  for (int b = 0; b < d->n; b++)
    for (size_t o = 0; o < out; o++) {
      int64_t s = cnn_reorg_src(d, (int64_t)o);
      y[b * out + o] = s < 0 ? 0.0f : x[b * in + (size_t)s];
    }
  return CNN_OK;
}

cnn_status ref_reorg_bwd(void *ctx, const cnn_reorg_desc *d, const float *dy, float *dx) {
  CNN_TRY(cnn_reorg_check("ref", "reorg_bwd", d, dy, dx));
  size_t in = (size_t)d->h * d->w * d->c, out = (size_t)d->oh * d->ow * d->oc;
  for (int b = 0; b < d->n; b++)
    for (size_t o = 0; o < out; o++) {
      int64_t s = cnn_reorg_src(d, (int64_t)o);
      if (s >= 0) dx[b * in + (size_t)s] += dy[b * out + o];
    }
  return CNN_OK;
}
