/* ref: elementwise ops, activations, Darknet's shortcut and the dropout mask. */
#include <math.h>

#include "backend/ref/ref.h"
#include "core/rng.h"

/* ---- plain elementwise ---- */

cnn_status ref_fill(void *ctx, float *x, size_t n, float v) {
  REF_NEED(x, "fill");
  for (size_t i = 0; i < n; i++) x[i] = v;
  return CNN_OK;
}

/* y = alpha x + beta y; beta == 0 must not read y (it may hold NaN) */
cnn_status ref_axpby(void *ctx, size_t n, float alpha, const float *x, float beta, float *y) {
  REF_NEED(x, "axpby");
  REF_NEED(y, "axpby");
  for (size_t i = 0; i < n; i++) {
    double old = beta == 0.0f ? 0.0 : (double)beta * y[i];
    y[i] = (float)((double)alpha * x[i] + old);
  }
  return CNN_OK;
}

cnn_status ref_add(void *ctx, size_t n, const float *a, const float *b, float *y) {
  REF_NEED(a, "add");
  REF_NEED(b, "add");
  REF_NEED(y, "add");
  for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
  return CNN_OK;
}

/* y = a b + beta y; beta == 0 must not read y */
cnn_status ref_mul(void *ctx, size_t n, const float *a, const float *b, float beta, float *y) {
  REF_NEED(a, "mul");
  REF_NEED(b, "mul");
  REF_NEED(y, "mul");
  for (size_t i = 0; i < n; i++) {
    double old = beta == 0.0f ? 0.0 : (double)beta * y[i];
    y[i] = (float)((double)a[i] * b[i] + old);
  }
  return CNN_OK;
}

/* src [rows, src_stride] -> dst [rows, dst_stride], the first cols of each row */
cnn_status ref_copy2d(void *ctx, size_t rows, size_t cols, const float *src, size_t src_stride,
                      float *dst, size_t dst_stride, int accumulate) {
  REF_NEED(src, "copy2d");
  REF_NEED(dst, "copy2d");
  for (size_t r = 0; r < rows; r++) {
    for (size_t j = 0; j < cols; j++) {
      float v = src[r * src_stride + j];
      if (accumulate)
        dst[r * dst_stride + j] += v;
      else
        dst[r * dst_stride + j] = v;
    }
  }
  return CNN_OK;
}

/* ---- activations, evaluated in double ---- */

#define REF_SQRT1_2 0.70710678118654752440    /* 1 / sqrt(2) */
#define REF_INV_SQRT_2PI 0.39894228040143267794 /* 1 / sqrt(2 pi) */

double ref_act_value(cnn_act a, double alpha, double x) {
  switch (a) {
    case CNN_ACT_LINEAR: return x;
    case CNN_ACT_RELU: return x < 0 ? 0 : x; /* NaN propagates, as in PyTorch */
    case CNN_ACT_LEAKY: return x > 0 ? x : alpha * x;
    case CNN_ACT_GELU: return 0.5 * x * (1 + erf(x * REF_SQRT1_2));
    case CNN_ACT_SIGMOID: return 1 / (1 + exp(-x));
    case CNN_ACT_TANH: return tanh(x);
    case CNN_ACT_RAMP: return (x > 0 ? x : 0) + 0.1 * x; /* Darknet's x (x > 0) + .1 x */
    case CNN_ACT_RELU6: return x < 0 ? 0 : (x > 6 ? 6 : x); /* NaN propagates */
    default: return NAN;
  }
}

/* f'(x); at the ReLU/leaky/ramp kink x == 0 the left derivative is used */
double ref_act_derivative(cnn_act a, double alpha, double x) {
  switch (a) {
    case CNN_ACT_LINEAR: return 1;
    case CNN_ACT_RELU: return x > 0 ? 1 : 0;
    case CNN_ACT_LEAKY: return x > 0 ? 1 : alpha;
    case CNN_ACT_GELU: /* d/dx x Phi(x) = Phi(x) + x phi(x) */
      return 0.5 * (1 + erf(x * REF_SQRT1_2)) + x * REF_INV_SQRT_2PI * exp(-0.5 * x * x);
    case CNN_ACT_SIGMOID: {
      double s = 1 / (1 + exp(-x));
      return s * (1 - s);
    }
    case CNN_ACT_TANH: {
      double t = tanh(x);
      return 1 - t * t;
    }
    case CNN_ACT_RAMP: return x > 0 ? 1.1 : 0.1;
    case CNN_ACT_RELU6: return x > 0 && x < 6 ? 1 : 0; /* 0 at both kinks, as PyTorch */
    default: return NAN;
  }
}

cnn_status ref_check_act(cnn_act a, const char *op) {
  if ((int)a < 0 || a >= CNN_ACT_COUNT)
    return cnn_error(CNN_ERR_ARG, "ref %s: unknown activation %d", op, (int)a);
  return CNN_OK;
}

/* x may equal y */
cnn_status ref_act_fwd(void *ctx, cnn_act a, float alpha, size_t n, const float *x, float *y) {
  REF_NEED(x, "act_fwd");
  REF_NEED(y, "act_fwd");
  CNN_TRY(ref_check_act(a, "act_fwd"));
  for (size_t i = 0; i < n; i++) y[i] = (float)ref_act_value(a, alpha, x[i]);
  return CNN_OK;
}

/* dx += dy f'(x). The oracle uses the definition, so it reads the pre-activation
 * x and ignores y (which may be NULL). */
cnn_status ref_act_bwd(void *ctx, cnn_act a, float alpha, size_t n, const float *x,
                       const float *y, const float *dy, float *dx) {
  REF_NEED(x, "act_bwd");
  REF_NEED(dy, "act_bwd");
  REF_NEED(dx, "act_bwd");
  CNN_TRY(ref_check_act(a, "act_bwd"));
  for (size_t i = 0; i < n; i++)
    dx[i] += (float)((double)dy[i] * ref_act_derivative(a, alpha, x[i]));
  return CNN_OK;
}

/* ---- Darknet shortcut (rule in backend.h) ---- */

static cnn_status check_shortcut(const cnn_shortcut_desc *d, const char *op) {
  REF_NEED(d, op);
  if (d->n < 0 || d->h1 < 1 || d->w1 < 1 || d->c1 < 1 || d->h2 < 1 || d->w2 < 1 || d->c2 < 1)
    return cnn_error(CNN_ERR_ARG, "ref %s: bad shapes n=%d from %dx%dx%d to %dx%dx%d", op, d->n,
                     d->h1, d->w1, d->c1, d->h2, d->w2, d->c2);
  return CNN_OK;
}

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

/* Visit every (from index i1, out index i2) pair the rule pairs up. Forward adds
 * src = from[i1] into dst = out[i2]; backward adds src = dout[i2] into
 * dst = dfrom[i1]. Strides come from the widths, as in Darknet; a row the width
 * ratio would place outside the other tensor's height (only possible when the h
 * and w ratios differ) is skipped. */
static void shortcut_pairs(const cnn_shortcut_desc *d, int backward, const float *src,
                           float *dst) {
  int stride = imax(d->w1 / d->w2, 1), sample = imax(d->w2 / d->w1, 1);
  int minh = imin(d->h1, d->h2), minw = imin(d->w1, d->w2), minc = imin(d->c1, d->c2);
  for (int n = 0; n < d->n; n++)
    for (int y = 0; y < minh; y++)
      for (int x = 0; x < minw; x++)
        for (int ch = 0; ch < minc; ch++) {
          int y1 = y * stride, x1 = x * stride, y2 = y * sample, x2 = x * sample;
          if (y1 >= d->h1 || x1 >= d->w1 || y2 >= d->h2 || x2 >= d->w2) continue;
          size_t i1 = (((size_t)n * d->h1 + y1) * d->w1 + x1) * d->c1 + ch; /* [n,h1,w1,c1] */
          size_t i2 = (((size_t)n * d->h2 + y2) * d->w2 + x2) * d->c2 + ch; /* [n,h2,w2,c2] */
          if (backward)
            dst[i1] += src[i2];
          else
            dst[i2] += src[i1];
        }
}

cnn_status ref_shortcut_fwd(void *ctx, const cnn_shortcut_desc *d, const float *from,
                            float *out) {
  CNN_TRY(check_shortcut(d, "shortcut_fwd"));
  REF_NEED(from, "shortcut_fwd");
  REF_NEED(out, "shortcut_fwd");
  shortcut_pairs(d, 0, from, out);
  return CNN_OK;
}

cnn_status ref_shortcut_bwd(void *ctx, const cnn_shortcut_desc *d, const float *dout,
                            float *dfrom) {
  CNN_TRY(check_shortcut(d, "shortcut_bwd"));
  REF_NEED(dout, "shortcut_bwd");
  REF_NEED(dfrom, "shortcut_bwd");
  shortcut_pairs(d, 1, dout, dfrom);
  return CNN_OK;
}

/* ---- dropout: mask[i] = (u(seed, offset + i) >= p) / (1 - p) ---- */

/* p == 1 drops everything (mask 0, not 0/0); p outside [0, 1] is an error */
cnn_status ref_dropout_mask(void *ctx, size_t n, float p, uint64_t seed, uint64_t offset,
                            float *mask) {
  REF_NEED(mask, "dropout_mask");
  if (!(p >= 0.0f && p <= 1.0f))
    return cnn_error(CNN_ERR_ARG, "ref dropout_mask: probability %g is not in [0, 1]", p);
  float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  for (size_t i = 0; i < n; i++)
    mask[i] = cnn_rng_uniform(seed, offset + i) >= p ? keep_scale : 0.0f;
  return CNN_OK;
}
