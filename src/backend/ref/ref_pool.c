/* ref: max and average pooling, NHWC, windows clipped to the input.
 * Window (oy, ox) covers input rows oy*stride_h - pad_h + r (r < kh) and columns
 * ox*stride_w - pad_w + s (s < kw); cells outside the input are padding and take
 * no part. A window with no cell inside the input outputs 0 and gets no gradient. */
#include <string.h>

#include "backend/ref/ref.h"

static cnn_status check_pool(const cnn_pool_desc *d, const char *op) {
  REF_NEED(d, op);
  if (d->n < 0 || d->h < 1 || d->w < 1 || d->c < 1 || d->oh < 0 || d->ow < 0)
    return cnn_error(CNN_ERR_ARG, "ref %s: bad shape x %dx%dx%dx%d y %dx%d", op, d->n, d->h,
                     d->w, d->c, d->oh, d->ow);
  if (d->kh < 1 || d->kw < 1 || d->stride_h < 1 || d->stride_w < 1 || d->pad_h < 0 ||
      d->pad_w < 0)
    return cnn_error(CNN_ERR_ARG, "ref %s: bad window %dx%d, stride %dx%d or padding %dx%d", op,
                     d->kh, d->kw, d->stride_h, d->stride_w, d->pad_h, d->pad_w);
  return CNN_OK;
}

/* x [n, h, w, c] */
static size_t x_at(const cnn_pool_desc *d, int n, int y, int x, int ch) {
  return (((size_t)n * d->h + y) * d->w + x) * d->c + ch;
}

/* y [n, oh, ow, c] */
static size_t y_at(const cnn_pool_desc *d, int n, int oy, int ox, int ch) {
  return (((size_t)n * d->oh + oy) * d->ow + ox) * d->c + ch;
}

static int inside(const cnn_pool_desc *d, int iy, int ix) {
  return iy >= 0 && iy < d->h && ix >= 0 && ix < d->w;
}

/* Index in x of window (n, oy, ox, ch)'s maximum: the first in-input cell in
 * (r, s) order wins ties (strict >). Returns -1 for a window entirely in padding. */
static long long window_argmax(const cnn_pool_desc *d, const float *x, int n, int oy, int ox,
                               int ch) {
  long long best = -1;
  for (int r = 0; r < d->kh; r++)
    for (int s = 0; s < d->kw; s++) {
      int iy = oy * d->stride_h - d->pad_h + r, ix = ox * d->stride_w - d->pad_w + s;
      if (!inside(d, iy, ix)) continue;
      size_t i = x_at(d, n, iy, ix, ch);
      if (best < 0 || x[i] > x[best]) best = (long long)i;
    }
  return best;
}

int ref_pool_argmax_local(const cnn_pool_desc *d, const float *x, int n, int oy, int ox, int ch) {
  long long at = window_argmax(d, x, n, oy, ox, ch);
  if (at < 0) return -1;
  long long pix = at / d->c, iy = (pix / d->w) % d->h, ix = pix % d->w;
  return (int)((iy - (oy * d->stride_h - d->pad_h)) * d->kw + (ix - (ox * d->stride_w - d->pad_w)));
}

/* number of window (oy, ox)'s cells inside the input: avgpool's divisor */
static int window_count(const cnn_pool_desc *d, int oy, int ox) {
  int count = 0;
  for (int r = 0; r < d->kh; r++)
    for (int s = 0; s < d->kw; s++)
      count += inside(d, oy * d->stride_h - d->pad_h + r, ox * d->stride_w - d->pad_w + s);
  return count;
}

cnn_status ref_maxpool_fwd(void *ctx, const cnn_pool_desc *d, const float *x, float *y) {
  CNN_TRY(check_pool(d, "maxpool_fwd"));
  REF_NEED(x, "maxpool_fwd");
  REF_NEED(y, "maxpool_fwd");
  for (int n = 0; n < d->n; n++)
    for (int oy = 0; oy < d->oh; oy++)
      for (int ox = 0; ox < d->ow; ox++)
        for (int ch = 0; ch < d->c; ch++) {
          long long best = window_argmax(d, x, n, oy, ox, ch);
          y[y_at(d, n, oy, ox, ch)] = best < 0 ? 0.0f : x[best];
        }
  return CNN_OK;
}

/* dx += dy routed to each window's argmax, recomputed from x */
cnn_status ref_maxpool_bwd(void *ctx, const cnn_pool_desc *d, const float *x, const float *dy,
                           float *dx) {
  CNN_TRY(check_pool(d, "maxpool_bwd"));
  REF_NEED(x, "maxpool_bwd");
  REF_NEED(dy, "maxpool_bwd");
  REF_NEED(dx, "maxpool_bwd");
  for (int n = 0; n < d->n; n++)
    for (int oy = 0; oy < d->oh; oy++)
      for (int ox = 0; ox < d->ow; ox++)
        for (int ch = 0; ch < d->c; ch++) {
          long long best = window_argmax(d, x, n, oy, ox, ch);
          if (best >= 0) dx[best] += dy[y_at(d, n, oy, ox, ch)];
        }
  return CNN_OK;
}

cnn_status ref_maxpool_bwd_set(void *ctx, const cnn_pool_desc *d, const float *x,
                               const float *dy, float *dx) {
  CNN_TRY(check_pool(d, "maxpool_bwd_set"));
  REF_NEED(dx, "maxpool_bwd_set");
  memset(dx, 0, (size_t)d->n * d->h * d->w * d->c * sizeof *dx);
  return ref_maxpool_bwd(ctx, d, x, dy, dx);
}

/* y = mean of the window's in-input cells */
cnn_status ref_avgpool_fwd(void *ctx, const cnn_pool_desc *d, const float *x, float *y) {
  CNN_TRY(check_pool(d, "avgpool_fwd"));
  REF_NEED(x, "avgpool_fwd");
  REF_NEED(y, "avgpool_fwd");
  for (int n = 0; n < d->n; n++)
    for (int oy = 0; oy < d->oh; oy++)
      for (int ox = 0; ox < d->ow; ox++)
        for (int ch = 0; ch < d->c; ch++) {
          double sum = 0;
          for (int r = 0; r < d->kh; r++)
            for (int s = 0; s < d->kw; s++) {
              int iy = oy * d->stride_h - d->pad_h + r, ix = ox * d->stride_w - d->pad_w + s;
              if (inside(d, iy, ix)) sum += x[x_at(d, n, iy, ix, ch)];
            }
          int count = window_count(d, oy, ox);
          y[y_at(d, n, oy, ox, ch)] = count ? (float)(sum / count) : 0.0f;
        }
  return CNN_OK;
}

/* dx += dy / count spread over the window's in-input cells */
cnn_status ref_avgpool_bwd(void *ctx, const cnn_pool_desc *d, const float *dy, float *dx) {
  CNN_TRY(check_pool(d, "avgpool_bwd"));
  REF_NEED(dy, "avgpool_bwd");
  REF_NEED(dx, "avgpool_bwd");
  for (int n = 0; n < d->n; n++)
    for (int oy = 0; oy < d->oh; oy++)
      for (int ox = 0; ox < d->ow; ox++)
        for (int ch = 0; ch < d->c; ch++) {
          int count = window_count(d, oy, ox);
          if (!count) continue;
          float share = (float)((double)dy[y_at(d, n, oy, ox, ch)] / count);
          for (int r = 0; r < d->kh; r++)
            for (int s = 0; s < d->kw; s++) {
              int iy = oy * d->stride_h - d->pad_h + r, ix = ox * d->stride_w - d->pad_w + s;
              if (inside(d, iy, ix)) dx[x_at(d, n, iy, ix, ch)] += share;
            }
        }
  return CNN_OK;
}
