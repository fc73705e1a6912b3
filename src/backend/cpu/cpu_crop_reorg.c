/* cpu: Darknet's crop and reorg (rules in backend.h, index maps in core/crop_reorg.h).
 * Crop splits (image, output row) pairs over threads: each reads or writes one
 * input row, so no two threads touch the same dx element, and the channel loop is
 * contiguous. Reorg splits an image's output elements; its map is injective, so backward's
 * scatter has one writer per dx element. Crop computes x * scale + off and
 * dx + scale * dy in float (ref: in double, rounded once): within a rounding or two. */
#include "backend/cpu/cpu.h"
#include "core/crop_reorg.h"

static void crop_rows(const cnn_crop_desc *d, const cnn_step_state *st, int backward,
                      const float *src, float *dst) {
  const uint64_t key = d->train ? cnn_crop_key(d, st->step) : 0;
  const long rows = (long)d->n * d->oh;
  const int c = d->c;
  const int par = (size_t)rows * d->ow * c >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
  for (long t = 0; t < rows; t++) {
    int b = (int)(t / d->oh), r = (int)(t % d->oh), oy, ox, flip;
    cnn_crop_window(d, key, b, &oy, &ox, &flip);
    float off[64]; /* per-channel offsets, computed once per row for small c */
    int cached = c <= 64;
    for (int ch = 0; cached && ch < c; ch++) off[ch] = cnn_crop_offset(d, key, b, ch);
    const size_t orow = ((size_t)b * d->oh + r) * d->ow * c;         /* [n,oh,ow,c] */
    const size_t irow = ((size_t)b * d->h + r + oy) * d->w * c;      /* [n,h,w,c] */
    for (int q = 0; q < d->ow; q++) {
      const size_t o = orow + (size_t)q * c, i = irow + (size_t)cnn_crop_col(d, ox, flip, q) * c;
      if (backward) {
        for (int ch = 0; ch < c; ch++) dst[i + ch] += d->scale * src[o + ch];
      } else {
        for (int ch = 0; ch < c; ch++)
          dst[o + ch] = src[i + ch] * d->scale + (cached ? off[ch] : cnn_crop_offset(d, key, b, ch));
      }
    }
  }
}

cnn_status cpu_crop_fwd(void *ctx, const cnn_crop_desc *d, const float *x, float *y,
                        const cnn_step_state *st) {
  CNN_TRY(cnn_crop_check("cpu", "crop_fwd", d, x, y, st));
  crop_rows(d, st, 0, x, y);
  return CNN_OK;
}

cnn_status cpu_crop_bwd(void *ctx, const cnn_crop_desc *d, const float *dy, float *dx,
                        const cnn_step_state *st) {
  CNN_TRY(cnn_crop_check("cpu", "crop_bwd", d, dy, dx, st));
  crop_rows(d, st, 1, dy, dx);
  return CNN_OK;
}

/* threads split the output elements of an image; each computes its source index
 * once (a few 64-bit divisions) and applies it to every image of the batch */
static void reorg_run(const cnn_reorg_desc *d, int backward, const float *src, float *dst) {
  const int64_t in = (int64_t)d->h * d->w * d->c, out = (int64_t)d->oh * d->ow * d->oc;
  const int n = d->n;
#pragma omp parallel for schedule(static) if ((size_t)(n * out) >= CPU_PAR_MIN)
  for (int64_t o = 0; o < out; o++) {
    const int64_t s = cnn_reorg_src(d, o);
    if (backward) {
      if (s >= 0)
        for (int b = 0; b < n; b++) dst[b * in + s] += src[b * out + o];
    } else {
      for (int b = 0; b < n; b++) dst[b * out + o] = s < 0 ? 0.0f : src[b * in + s];
    }
  }
}

cnn_status cpu_reorg_fwd(void *ctx, const cnn_reorg_desc *d, const float *x, float *y) {
  CNN_TRY(cnn_reorg_check("cpu", "reorg_fwd", d, x, y));
  reorg_run(d, 0, x, y);
  return CNN_OK;
}

cnn_status cpu_reorg_bwd(void *ctx, const cnn_reorg_desc *d, const float *dy, float *dx) {
  CNN_TRY(cnn_reorg_check("cpu", "reorg_bwd", d, dy, dx));
  reorg_run(d, 1, dy, dx);
  return CNN_OK;
}
