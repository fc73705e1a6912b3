/* cpu: max and average pooling, NHWC, windows clipped to the input.
 * Window (oy, ox) covers input rows oy*stride_h - pad_h + r (r < kh) and columns
 * ox*stride_w - pad_w + s (s < kw); cells outside the input are padding and take
 * no part. A window with no cell inside the input outputs 0 and gets no gradient.
 * Every loop runs over channels innermost (contiguous in NHWC), so it vectorises.
 *
 * Threads never write the same element: forward splits output rows; maxpool
 * backward splits output rows (windows without vertical overlap) or (image,
 * channel block) pairs; avgpool backward gathers per input row. Each dx element receives its terms in
 * window order (oy, ox), as in ref. */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

/* Loops with a select (x > 0 ? a : b) vectorise only if GCC may evaluate both
 * sides; nothing here reads floating-point exception flags. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

/* channels per maxpool-backward task (its argmax state lives on the stack) */
#define POOL_CB 128

static cnn_status check_pool(const cnn_pool_desc *d, const char *op) {
  CPU_NEED(d, op);
  if (d->n < 0 || d->h < 1 || d->w < 1 || d->c < 1 || d->oh < 0 || d->ow < 0)
    return cnn_error(CNN_ERR_ARG, "cpu %s: bad shape x %dx%dx%dx%d y %dx%d", op, d->n, d->h,
                     d->w, d->c, d->oh, d->ow);
  if (d->kh < 1 || d->kw < 1 || d->stride_h < 1 || d->stride_w < 1 || d->pad_h < 0 ||
      d->pad_w < 0)
    return cnn_error(CNN_ERR_ARG, "cpu %s: bad window %dx%d, stride %dx%d or padding %dx%d", op,
                     d->kh, d->kw, d->stride_h, d->stride_w, d->pad_h, d->pad_w);
  return CNN_OK;
}

/* the in-input part [lo, hi) of a window of `k` cells starting at `start` in [0, size) */
void cpu_pool_clip(int start, int k, int size, int *lo, int *hi) {
  int a = start < 0 ? 0 : start, b = start + k < size ? start + k : size;
  *lo = a;
  *hi = b > a ? b : a;
}

static int par_ok(size_t tasks, size_t work) { return tasks > 1 && work >= CPU_PAR_MIN; }

cnn_status cpu_maxpool_fwd(void *ctx, const cnn_pool_desc *d, const float *x, float *y) {
  CNN_TRY(check_pool(d, "maxpool_fwd"));
  CPU_NEED(x, "maxpool_fwd");
  CPU_NEED(y, "maxpool_fwd");
  const int C = d->c;
  size_t rows = (size_t)d->n * d->oh;
#pragma omp parallel for schedule(static) if (par_ok(rows, rows * d->ow * C * d->kh * d->kw))
  for (size_t idx = 0; idx < rows; idx++) {
    int n = (int)(idx / d->oh), oy = (int)(idx % d->oh);
    int y0, y1;
    cpu_pool_clip(oy * d->stride_h - d->pad_h, d->kh, d->h, &y0, &y1);
    const float *xn = x + (size_t)n * d->h * d->w * C;
    for (int ox = 0; ox < d->ow; ox++) {
      float *yp = y + (idx * d->ow + ox) * C;
      int x0, x1;
      cpu_pool_clip(ox * d->stride_w - d->pad_w, d->kw, d->w, &x0, &x1);
      if (y0 == y1 || x0 == x1) {
        memset(yp, 0, (size_t)C * sizeof *yp);
        continue;
      }
      /* first cell in (r, s) order, then strictly greater values replace it */
      memcpy(yp, xn + ((size_t)y0 * d->w + x0) * C, (size_t)C * sizeof *yp);
      for (int iy = y0; iy < y1; iy++)
        for (int ix = (iy == y0 ? x0 + 1 : x0); ix < x1; ix++) {
          const float *xp = xn + ((size_t)iy * d->w + ix) * C;
#pragma omp simd
          for (int ch = 0; ch < C; ch++) yp[ch] = xp[ch] > yp[ch] ? xp[ch] : yp[ch];
        }
    }
  }
  return CNN_OK;
}

/* One window's backward for channels [c0, c0 + cb) of image n: the maximum, then
 * dy added to the first cell in (r, s) order that holds it (ref's tie rule; a NaN
 * in the first cell keeps the gradient there, as in ref). Every cell is visited
 * with a select instead of a scatter, so the loops vectorise. */
static void maxpool_bwd_window(const cnn_pool_desc *d, const float *x, const float *dy,
                               float *dx, int n, int oy, int ox, int c0, int cb) {
  const size_t C = (size_t)d->c;
  int y0, y1, x0, x1;
  cpu_pool_clip(oy * d->stride_h - d->pad_h, d->kh, d->h, &y0, &y1);
  cpu_pool_clip(ox * d->stride_w - d->pad_w, d->kw, d->w, &x0, &x1);
  if (y0 == y1 || x0 == x1) return;
  const size_t img = (size_t)n * d->h * d->w;
  const float *dyp = dy + (((size_t)n * d->oh + oy) * d->ow + ox) * C + c0;
  float best[POOL_CB], taken[POOL_CB];
  const float *xp0 = x + (img + (size_t)y0 * d->w + x0) * C + c0;
  for (int ch = 0; ch < cb; ch++) {
    best[ch] = xp0[ch];
    taken[ch] = 0.0f;
  }
  for (int iy = y0; iy < y1; iy++)
    for (int ix = (iy == y0 ? x0 + 1 : x0); ix < x1; ix++) {
      const float *xp = x + (img + (size_t)iy * d->w + ix) * C + c0;
#pragma omp simd
      for (int ch = 0; ch < cb; ch++) best[ch] = xp[ch] > best[ch] ? xp[ch] : best[ch];
    }
  for (int iy = y0; iy < y1; iy++)
    for (int ix = x0; ix < x1; ix++) {
      size_t at = (img + (size_t)iy * d->w + ix) * C + c0;
      const float *xp = x + at;
      float *dxp = dx + at;
#pragma omp simd
      for (int ch = 0; ch < cb; ch++) {
        float v = xp[ch], g = dyp[ch], b = best[ch], t = taken[ch];
        int hit = (t == 0.0f) & ((v == b) | (b != b));
        dxp[ch] += hit ? g : 0.0f;
        taken[ch] = hit ? 1.0f : t;
      }
    }
}

int cpu_pool_owned_row(const cnn_pool_desc *d, int oy) {
  if (oy <= 0) return 0;
  if (oy >= d->oh) return d->h;
  int r = oy * d->stride_h - d->pad_h;
  return r < 0 ? 0 : r > d->h ? d->h : r;
}

/* dx += dy routed to each window's argmax, recomputed from x (set: dx is zeroed
 * first, piece by piece inside the task that then adds to it, so the zeros are
 * still in cache). Windows that do not overlap vertically (stride_h >= kh) touch
 * disjoint input rows, so output rows run in parallel; otherwise (image, channel
 * block) pairs do, each walking its windows in order. */
static cnn_status maxpool_bwd(const cnn_pool_desc *d, const float *x, const float *dy, float *dx,
                              int set, const char *op) {
  CNN_TRY(check_pool(d, op));
  CPU_NEED(x, op);
  CPU_NEED(dy, op);
  CPU_NEED(dx, op);
  const int C = d->c;
  const size_t img = (size_t)d->h * d->w * C;
  if (set && (d->oh == 0 || d->ow == 0)) { /* no window: no task would zero dx */
    memset(dx, 0, (size_t)d->n * img * sizeof *dx);
    return CNN_OK;
  }
  size_t work = (size_t)d->n * d->oh * d->ow * C * d->kh * d->kw;
  if (d->stride_h >= d->kh) {
    size_t rows = (size_t)d->n * d->oh;
#pragma omp parallel for schedule(static) if (par_ok(rows, work))
    for (size_t idx = 0; idx < rows; idx++) {
      int n = (int)(idx / d->oh), oy = (int)(idx % d->oh);
      if (set) {
        int r0 = cpu_pool_owned_row(d, oy), r1 = cpu_pool_owned_row(d, oy + 1);
        memset(dx + (size_t)n * img + (size_t)r0 * d->w * C, 0,
               (size_t)(r1 - r0) * d->w * C * sizeof *dx);
      }
      for (int ox = 0; ox < d->ow; ox++)
        for (int c0 = 0; c0 < C; c0 += POOL_CB)
          maxpool_bwd_window(d, x, dy, dx, n, oy, ox, c0, C - c0 < POOL_CB ? C - c0 : POOL_CB);
    }
    return CNN_OK;
  }
  const size_t blocks = ((size_t)C + POOL_CB - 1) / POOL_CB;
  const size_t tasks = (size_t)d->n * blocks;
#pragma omp parallel for schedule(static) if (par_ok(tasks, work))
  for (size_t task = 0; task < tasks; task++) {
    int n = (int)(task / blocks);
    int c0 = (int)(task % blocks) * POOL_CB;
    int cb = C - c0 < POOL_CB ? C - c0 : POOL_CB;
    if (set) {
      float *dxn = dx + (size_t)n * img + c0;
      for (size_t px = 0; px < (size_t)d->h * d->w; px++)
        memset(dxn + px * C, 0, (size_t)cb * sizeof *dx);
    }
    for (int oy = 0; oy < d->oh; oy++)
      for (int ox = 0; ox < d->ow; ox++) maxpool_bwd_window(d, x, dy, dx, n, oy, ox, c0, cb);
  }
  return CNN_OK;
}

cnn_status cpu_maxpool_bwd(void *ctx, const cnn_pool_desc *d, const float *x, const float *dy,
                           float *dx) {
  return maxpool_bwd(d, x, dy, dx, 0, "maxpool_bwd");
}

cnn_status cpu_maxpool_bwd_set(void *ctx, const cnn_pool_desc *d, const float *x,
                               const float *dy, float *dx) {
  return maxpool_bwd(d, x, dy, dx, 1, "maxpool_bwd_set");
}

/* y = mean of the window's in-input cells, summed in double */
cnn_status cpu_avgpool_fwd(void *ctx, const cnn_pool_desc *d, const float *x, float *y) {
  CNN_TRY(check_pool(d, "avgpool_fwd"));
  CPU_NEED(x, "avgpool_fwd");
  CPU_NEED(y, "avgpool_fwd");
  const int C = d->c;
  size_t rows = (size_t)d->n * d->oh;
#pragma omp parallel for schedule(static) if (par_ok(rows, rows * d->ow * C * d->kh * d->kw))
  for (size_t idx = 0; idx < rows; idx++) {
    int n = (int)(idx / d->oh), oy = (int)(idx % d->oh);
    int y0, y1;
    cpu_pool_clip(oy * d->stride_h - d->pad_h, d->kh, d->h, &y0, &y1);
    const float *xn = x + (size_t)n * d->h * d->w * C;
    double acc[POOL_CB];
    for (int ox = 0; ox < d->ow; ox++) {
      float *yp = y + (idx * d->ow + ox) * C;
      int x0, x1;
      cpu_pool_clip(ox * d->stride_w - d->pad_w, d->kw, d->w, &x0, &x1);
      int count = (y1 - y0) * (x1 - x0);
      if (!count) {
        memset(yp, 0, (size_t)C * sizeof *yp);
        continue;
      }
      for (int c0 = 0; c0 < C; c0 += POOL_CB) {
        int cb = C - c0 < POOL_CB ? C - c0 : POOL_CB;
        for (int ch = 0; ch < cb; ch++) acc[ch] = 0.0;
        for (int iy = y0; iy < y1; iy++)
          for (int ix = x0; ix < x1; ix++) {
            const float *xp = xn + ((size_t)iy * d->w + ix) * C + c0;
#pragma omp simd
            for (int ch = 0; ch < cb; ch++) acc[ch] += xp[ch];
          }
        for (int ch = 0; ch < cb; ch++) yp[c0 + ch] = (float)(acc[ch] / count);
      }
    }
  }
  return CNN_OK;
}

/* dx += dy / count over each window's in-input cells, gathered per input row: input
 * cell (iy, ix) lies in windows oy with oy*stride_h - pad_h <= iy < that + kh */
cnn_status cpu_avgpool_bwd(void *ctx, const cnn_pool_desc *d, const float *dy, float *dx) {
  CNN_TRY(check_pool(d, "avgpool_bwd"));
  CPU_NEED(dy, "avgpool_bwd");
  CPU_NEED(dx, "avgpool_bwd");
  const int C = d->c;
  size_t rows = (size_t)d->n * d->h;
  size_t work = (size_t)d->n * d->oh * d->ow * C * d->kh * d->kw;
#pragma omp parallel for schedule(static) if (par_ok(rows, work))
  for (size_t idx = 0; idx < rows; idx++) {
    int n = (int)(idx / d->h), iy = (int)(idx % d->h);
    /* windows whose rows contain iy: oy*sh <= iy + ph <= oy*sh + kh - 1 */
    int t = iy + d->pad_h;
    int oy_lo = t - d->kh + 1 <= 0 ? 0 : (t - d->kh + d->stride_h) / d->stride_h;
    int oy_hi = t / d->stride_h; /* inclusive */
    if (oy_hi >= d->oh) oy_hi = d->oh - 1;
    for (int oy = oy_lo; oy <= oy_hi; oy++) {
      int y0, y1;
      cpu_pool_clip(oy * d->stride_h - d->pad_h, d->kh, d->h, &y0, &y1);
      int rows_in = y1 - y0;
      for (int ix = 0; ix < d->w; ix++) {
        int u = ix + d->pad_w;
        int ox_lo = u - d->kw + 1 <= 0 ? 0 : (u - d->kw + d->stride_w) / d->stride_w;
        int ox_hi = u / d->stride_w;
        if (ox_hi >= d->ow) ox_hi = d->ow - 1;
        float *dxp = dx + (idx * d->w + ix) * C;
        for (int ox = ox_lo; ox <= ox_hi; ox++) {
          int x0, x1;
          cpu_pool_clip(ox * d->stride_w - d->pad_w, d->kw, d->w, &x0, &x1);
          double count = (double)rows_in * (x1 - x0);
          const float *dyp = dy + ((((size_t)n * d->oh + oy) * d->ow + ox) * C);
#pragma omp simd
          for (int ch = 0; ch < C; ch++) dxp[ch] += (float)(dyp[ch] / count);
        }
      }
    }
  }
  return CNN_OK;
}
