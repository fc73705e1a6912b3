/* ref: 2-D convolution, NHWC activations, KRSC weights, with stride, top/left
 * padding, dilation and groups. Every op is the direct loop nest of the definition
 *
 *   y[n, oy, ox, k] = bias[k] + sum_{r, s, ci} x[n, iy, ix, g*cg + ci] * w[k, r, s, ci]
 *     iy = oy*stride_h - pad_h + r*dil_h,  ix = ox*stride_w - pad_w + s*dil_w,
 *     g = k / kg (the group of filter k), cg = c/groups, kg = k/groups,
 *
 * with taps outside the input skipped (zero padding). */
#include <stdlib.h>

#include "backend/ref/ref.h"

static cnn_status check_conv(const cnn_conv_desc *d, const char *op) {
  REF_NEED(d, op);
  if (d->n < 0 || d->h < 1 || d->w < 1 || d->c < 1 || d->k < 1 || d->r < 1 || d->s < 1 ||
      d->oh < 0 || d->ow < 0)
    return cnn_error(CNN_ERR_ARG, "ref %s: bad shape x %dx%dx%dx%d w %dx%dx%d y %dx%d", op,
                     d->n, d->h, d->w, d->c, d->k, d->r, d->s, d->oh, d->ow);
  if (d->stride_h < 1 || d->stride_w < 1 || d->dil_h < 1 || d->dil_w < 1 || d->pad_h < 0 ||
      d->pad_w < 0)
    return cnn_error(CNN_ERR_ARG, "ref %s: bad stride %dx%d, dilation %dx%d or padding %dx%d", op,
                     d->stride_h, d->stride_w, d->dil_h, d->dil_w, d->pad_h, d->pad_w);
  if (d->groups < 1 || d->c % d->groups || d->k % d->groups)
    return cnn_error(CNN_ERR_ARG, "ref %s: groups %d must divide channels %d and filters %d", op,
                     d->groups, d->c, d->k);
  return CNN_OK;
}

/* x [n, h, w, c] */
static size_t x_at(const cnn_conv_desc *d, int n, int y, int x, int ch) {
  return (((size_t)n * d->h + y) * d->w + x) * d->c + ch;
}

/* y [n, oh, ow, k] */
static size_t y_at(const cnn_conv_desc *d, int n, int oy, int ox, int k) {
  return (((size_t)n * d->oh + oy) * d->ow + ox) * d->k + k;
}

/* w [k, r, s, c/groups] */
static size_t w_at(const cnn_conv_desc *d, int k, int r, int s, int ci) {
  return (((size_t)k * d->r + r) * d->s + s) * (d->c / d->groups) + ci;
}

/* input row / column a tap reads; outside [0, h) / [0, w) means padding */
static int in_y(const cnn_conv_desc *d, int oy, int r) {
  return oy * d->stride_h - d->pad_h + r * d->dil_h;
}
static int in_x(const cnn_conv_desc *d, int ox, int s) {
  return ox * d->stride_w - d->pad_w + s * d->dil_w;
}

/* ref needs no scratch */
size_t ref_conv_workspace(void *ctx, const cnn_conv_desc *d) { return 0; }

cnn_status ref_conv_fwd(void *ctx, const cnn_conv_desc *d, const float *x, const float *w,
                        const float *bias, float *y, void *ws, size_t ws_bytes) {
  CNN_TRY(check_conv(d, "conv_fwd"));
  REF_NEED(x, "conv_fwd");
  REF_NEED(w, "conv_fwd");
  REF_NEED(y, "conv_fwd");
  int cg = d->c / d->groups, kg = d->k / d->groups;
  for (int n = 0; n < d->n; n++)
    for (int oy = 0; oy < d->oh; oy++)
      for (int ox = 0; ox < d->ow; ox++)
        for (int k = 0; k < d->k; k++) {
          int g = k / kg;
          double sum = bias ? bias[k] : 0.0;
          for (int r = 0; r < d->r; r++) {
            int iy = in_y(d, oy, r);
            if (iy < 0 || iy >= d->h) continue;
            for (int s = 0; s < d->s; s++) {
              int ix = in_x(d, ox, s);
              if (ix < 0 || ix >= d->w) continue;
              for (int ci = 0; ci < cg; ci++)
                sum += (double)x[x_at(d, n, iy, ix, g * cg + ci)] * w[w_at(d, k, r, s, ci)];
            }
          }
          y[y_at(d, n, oy, ox, k)] = (float)sum;
        }
  return CNN_OK;
}

/* dx += conv_transpose(dy, w): the forward loop nest, scattering each output's
 * gradient back to the taps that produced it. Sums collect in a double copy of dx
 * so the result does not depend on the float rounding order. */
cnn_status ref_conv_bwd_data(void *ctx, const cnn_conv_desc *d, const float *dy,
                             const float *w, float *dx, void *ws, size_t ws_bytes) {
  CNN_TRY(check_conv(d, "conv_bwd_data"));
  REF_NEED(dy, "conv_bwd_data");
  REF_NEED(w, "conv_bwd_data");
  REF_NEED(dx, "conv_bwd_data");
  size_t nx = (size_t)d->n * d->h * d->w * d->c;
  double *acc = calloc(nx ? nx : 1, sizeof *acc); /* [n, h, w, c] */
  if (!acc)
    return cnn_error(CNN_ERR_NOMEM, "ref conv_bwd_data: out of host memory for %zu doubles", nx);
  int cg = d->c / d->groups, kg = d->k / d->groups;
  for (int n = 0; n < d->n; n++)
    for (int oy = 0; oy < d->oh; oy++)
      for (int ox = 0; ox < d->ow; ox++)
        for (int k = 0; k < d->k; k++) {
          int g = k / kg;
          double g_out = dy[y_at(d, n, oy, ox, k)];
          for (int r = 0; r < d->r; r++) {
            int iy = in_y(d, oy, r);
            if (iy < 0 || iy >= d->h) continue;
            for (int s = 0; s < d->s; s++) {
              int ix = in_x(d, ox, s);
              if (ix < 0 || ix >= d->w) continue;
              for (int ci = 0; ci < cg; ci++)
                acc[x_at(d, n, iy, ix, g * cg + ci)] += g_out * w[w_at(d, k, r, s, ci)];
            }
          }
        }
  for (size_t i = 0; i < nx; i++) dx[i] = (float)(dx[i] + acc[i]);
  free(acc);
  return CNN_OK;
}

/* dw[k, r, s, ci] = sum_{n, oy, ox} dy[n, oy, ox, k] * x[n, iy, ix, g*cg + ci] */
static double filter_grad(const cnn_conv_desc *d, const float *x, const float *dy, int k, int r,
                          int s, int ch) {
  double sum = 0;
  for (int n = 0; n < d->n; n++)
    for (int oy = 0; oy < d->oh; oy++) {
      int iy = in_y(d, oy, r);
      if (iy < 0 || iy >= d->h) continue;
      for (int ox = 0; ox < d->ow; ox++) {
        int ix = in_x(d, ox, s);
        if (ix < 0 || ix >= d->w) continue;
        sum += (double)dy[y_at(d, n, oy, ox, k)] * x[x_at(d, n, iy, ix, ch)];
      }
    }
  return sum;
}

/* db[k] = sum_{n, oy, ox} dy[n, oy, ox, k] */
static double bias_grad(const cnn_conv_desc *d, const float *dy, int k) {
  double sum = 0;
  for (int n = 0; n < d->n; n++)
    for (int oy = 0; oy < d->oh; oy++)
      for (int ox = 0; ox < d->ow; ox++) sum += dy[y_at(d, n, oy, ox, k)];
  return sum;
}

/* dw (and db if not NULL) are overwritten */
cnn_status ref_conv_bwd_filter(void *ctx, const cnn_conv_desc *d, const float *x,
                               const float *dy, float *dw, float *db, void *ws,
                               size_t ws_bytes) {
  CNN_TRY(check_conv(d, "conv_bwd_filter"));
  REF_NEED(x, "conv_bwd_filter");
  REF_NEED(dy, "conv_bwd_filter");
  REF_NEED(dw, "conv_bwd_filter");
  int cg = d->c / d->groups, kg = d->k / d->groups;
  for (int k = 0; k < d->k; k++) {
    int g = k / kg;
    for (int r = 0; r < d->r; r++)
      for (int s = 0; s < d->s; s++)
        for (int ci = 0; ci < cg; ci++)
          dw[w_at(d, k, r, s, ci)] = (float)filter_grad(d, x, dy, k, r, s, g * cg + ci);
    if (db) db[k] = (float)bias_grad(d, dy, k);
  }
  return CNN_OK;
}
