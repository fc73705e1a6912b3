/* The op table every backend fills. `ref` (plain loops, double accumulators: the
 * oracle), `cpu` (OpenBLAS + OpenMP) and `cuda` are peers behind it.
 *
 * Conventions, shared by every backend:
 *  - Pointers are backend memory (host for ref/cpu, device for cuda), f32 unless
 *    said otherwise. Activations are NHWC, conv weights KRSC = [k][r][s][c/groups].
 *  - Forward ops overwrite their output.
 *  - Backward ops ADD into the input gradient (dx += ...), because one activation
 *    may feed several layers; the caller zeroes dx before its first writer.
 *  - Parameter gradients (dw, db, dgamma, dbeta) are OVERWRITTEN: each parameter
 *    has exactly one owner.
 *  - An op a backend lacks is NULL or returns CNN_UNSUPPORTED; callers report it.
 *  - Ops may run asynchronously (cuda); `sync` waits; download implies sync. */
#ifndef CNN_BACKEND_H
#define CNN_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include "cnn/cnn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cnn_conv_desc {
  int n, h, w, c;              /* input  [n, h, w, c] */
  int k, r, s;                 /* weight [k, r, s, c/groups] */
  int oh, ow;                  /* output [n, oh, ow, k] */
  int stride_h, stride_w;
  int pad_h, pad_w;            /* top / left padding; bottom/right is implied by oh/ow */
  int dil_h, dil_w;
  int groups;                  /* c % groups == 0 and k % groups == 0 */
} cnn_conv_desc;

typedef struct cnn_pool_desc {
  int n, h, w, c;              /* input  [n, h, w, c] */
  int oh, ow;                  /* output [n, oh, ow, c] */
  int kh, kw, stride_h, stride_w;
  int pad_h, pad_w;            /* top / left; windows are clipped to the input */
} cnn_pool_desc;
/* Average pooling divides by the number of window cells inside the input
 * (padding excluded). Max pooling ignores padded cells; ties go to the first
 * cell in (r, s) order; backward sends dy to that cell. */

typedef enum cnn_act {
  CNN_ACT_LINEAR = 0,
  CNN_ACT_RELU,
  CNN_ACT_LEAKY,     /* x > 0 ? x : alpha * x (Darknet: alpha = 0.1) */
  CNN_ACT_GELU,      /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
  CNN_ACT_SIGMOID,   /* Darknet's "logistic" */
  CNN_ACT_TANH,
  CNN_ACT_COUNT
} cnn_act;

/* Darknet's [shortcut] between different shapes: `from` is [n, h1, w1, c1],
 * out is [n, h2, w2, c2]; with stride = max(w1/w2, 1), sample = max(w2/w1, 1),
 * for every (n, y < min(h1,h2), x < min(w1,w2), ch < min(c1,c2)):
 *   out[n, y*sample, x*sample, ch] += from[n, y*stride, x*stride, ch]
 * Backward is the transpose: dfrom[...] += dout[...]. */
typedef struct cnn_shortcut_desc {
  int n, h1, w1, c1, h2, w2, c2;
} cnn_shortcut_desc;

typedef struct cnn_backend_ops cnn_backend_ops;

struct cnn_backend {
  const char *name;
  void *ctx;
  const cnn_backend_ops *ops;
};

struct cnn_backend_ops {
  void (*destroy)(cnn_backend *b);            /* frees ctx and b */

  /* ---- memory ---- */
  cnn_status (*alloc)(void *ctx, size_t bytes, void **ptr);   /* 256-byte aligned */
  void (*free)(void *ctx, void *ptr);
  cnn_status (*upload)(void *ctx, void *dst, const void *src_host, size_t bytes);
  cnn_status (*download)(void *ctx, void *dst_host, const void *src, size_t bytes);
  cnn_status (*copy)(void *ctx, void *dst, const void *src, size_t bytes); /* device to device */
  cnn_status (*sync)(void *ctx);
  /* optional: host memory the backend copies from fastest (pinned for cuda) */
  cnn_status (*host_alloc)(void *ctx, size_t bytes, void **ptr);
  void (*host_free)(void *ctx, void *ptr);

  /* ---- elementwise ---- */
  cnn_status (*fill)(void *ctx, float *x, size_t n, float v);
  /* y = alpha * x + beta * y (beta == 0: y is not read) */
  cnn_status (*axpby)(void *ctx, size_t n, float alpha, const float *x, float beta, float *y);
  /* y = a + b */
  cnn_status (*add)(void *ctx, size_t n, const float *a, const float *b, float *y);
  /* y = a * b (beta == 0) or y += a * b (beta == 1) */
  cnn_status (*mul)(void *ctx, size_t n, const float *a, const float *b, float beta, float *y);
  /* 2-D strided copy: for r < rows, j < cols:
   *   dst[r*dst_stride + j] = src[r*src_stride + j]        (accumulate == 0)
   *   dst[r*dst_stride + j] += src[r*src_stride + j]       (accumulate == 1)
   * Used by concat (route) forward and backward, channels-last. */
  cnn_status (*copy2d)(void *ctx, size_t rows, size_t cols, const float *src, size_t src_stride,
                       float *dst, size_t dst_stride, int accumulate);

  /* ---- activations (x may equal y in forward) ---- */
  cnn_status (*act_fwd)(void *ctx, cnn_act a, float alpha, size_t n, const float *x, float *y);
  /* dx += dy * f'(x); y = f(x) is given for backends that prefer it */
  cnn_status (*act_bwd)(void *ctx, cnn_act a, float alpha, size_t n, const float *x,
                        const float *y, const float *dy, float *dx);

  /* ---- dense ---- */
  /* Row-major C[m, n] = alpha * op(A) op(B) + beta * C, op(A) is [m, k], op(B) [k, n];
   * lda/ldb/ldc are row strides of A, B, C as stored. beta == 0: C is not read. */
  cnn_status (*gemm)(void *ctx, int trans_a, int trans_b, int m, int n, int k, float alpha,
                     const float *a, int lda, const float *b, int ldb, float beta, float *c,
                     int ldc);
  /* y[r, j] += bias[j] for r < rows, j < cols */
  cnn_status (*bias_add)(void *ctx, size_t rows, size_t cols, const float *bias, float *y);
  /* db[j] = sum_r dy[r, j] (overwrites) */
  cnn_status (*bias_grad)(void *ctx, size_t rows, size_t cols, const float *dy, float *db);

  /* ---- convolution ---- */
  /* bytes of scratch the three conv ops need for this shape (may be 0). Nets size
   * it for the built batch and call with any n up to it: an op given the size for
   * a larger n must still succeed (e.g. by using fewer threads). */
  size_t (*conv_workspace)(void *ctx, const cnn_conv_desc *d);
  /* y = conv(x, w) (+ bias[k] if bias != NULL) */
  cnn_status (*conv_fwd)(void *ctx, const cnn_conv_desc *d, const float *x, const float *w,
                         const float *bias, float *y, void *ws, size_t ws_bytes);
  /* dx += conv_transpose(dy, w) */
  cnn_status (*conv_bwd_data)(void *ctx, const cnn_conv_desc *d, const float *dy,
                              const float *w, float *dx, void *ws, size_t ws_bytes);
  /* dw = correlation(x, dy) (overwrite); db = sum of dy over n, oh, ow if db != NULL */
  cnn_status (*conv_bwd_filter)(void *ctx, const cnn_conv_desc *d, const float *x,
                                const float *dy, float *dw, float *db, void *ws, size_t ws_bytes);

  /* ---- pooling ---- */
  cnn_status (*maxpool_fwd)(void *ctx, const cnn_pool_desc *d, const float *x, float *y);
  /* dx += route of dy to each window's argmax (recomputed from x) */
  cnn_status (*maxpool_bwd)(void *ctx, const cnn_pool_desc *d, const float *x, const float *dy,
                            float *dx);
  cnn_status (*avgpool_fwd)(void *ctx, const cnn_pool_desc *d, const float *x, float *y);
  cnn_status (*avgpool_bwd)(void *ctx, const cnn_pool_desc *d, const float *dy, float *dx);

  /* ---- batch norm over channels: x is [rows = n*h*w, c] ---- */
  /* Training: batch mean / biased variance per channel; saves mean and
   * invstd = 1/sqrt(var + eps); updates running stats with the unbiased variance:
   *   running_mean = (1 - momentum) running_mean + momentum mean   (same for var). */
  cnn_status (*bn_fwd_train)(void *ctx, size_t rows, int c, const float *x, const float *gamma,
                             const float *beta, float eps, float momentum, float *running_mean,
                             float *running_var, float *save_mean, float *save_invstd, float *y);
  cnn_status (*bn_fwd_infer)(void *ctx, size_t rows, int c, const float *x, const float *gamma,
                             const float *beta, const float *running_mean,
                             const float *running_var, float eps, float *y);
  /* dx += ..., dgamma = ..., dbeta = ... (overwrite) */
  cnn_status (*bn_bwd)(void *ctx, size_t rows, int c, const float *x, const float *dy,
                       const float *gamma, const float *save_mean, const float *save_invstd,
                       float *dx, float *dgamma, float *dbeta);

  /* ---- Darknet shortcut between shapes (see cnn_shortcut_desc) ---- */
  cnn_status (*shortcut_fwd)(void *ctx, const cnn_shortcut_desc *d, const float *from, float *out);
  cnn_status (*shortcut_bwd)(void *ctx, const cnn_shortcut_desc *d, const float *dout,
                             float *dfrom);

  /* ---- dropout: mask[i] = (u(seed, offset + i) >= p) / (1 - p), u uniform [0,1)
   * from cnn_rng_uniform (src/core/rng.h), so every backend draws the same mask. */
  cnn_status (*dropout_mask)(void *ctx, size_t n, float p, uint64_t seed, uint64_t offset,
                             float *mask);

  /* ---- softmax cross-entropy with label smoothing eps: target is
   * (1 - eps) one_hot(label) + eps / classes.
   * Forward: probs [n, classes] = softmax(logits); loss[i] = -sum_j t_ij log p_ij
   * (computed with log-sum-exp). labels are int32 on the backend. */
  cnn_status (*softmax_xent_fwd)(void *ctx, int n, int classes, const float *logits,
                                 const int32_t *labels, float smoothing, float *probs,
                                 float *loss);
  /* dlogits += scale * (probs - target) */
  cnn_status (*softmax_xent_bwd)(void *ctx, int n, int classes, const float *probs,
                                 const int32_t *labels, float smoothing, float scale,
                                 float *dlogits);

  /* ---- optimizers on flat buffers (n elements) ----
   * SGD (PyTorch semantics): g = grad + wd * p; v = momentum * v + g;
   *   p -= lr * (nesterov ? g + momentum * v : v)
   * Adam / AdamW: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
   *   mhat = m / (1 - b1^t); vhat = v / (1 - b2^t)
   *   Adam:  g includes wd * p (L2);  AdamW: p -= lr * wd * p first (decoupled)
   *   p -= lr * mhat / (sqrt(vhat) + eps);   t is the 1-based step. */
  cnn_status (*sgd_step)(void *ctx, size_t n, float *p, const float *g, float *v, float lr,
                         float momentum, float wd, int nesterov);
  cnn_status (*adam_step)(void *ctx, size_t n, float *p, const float *g, float *m, float *v,
                          float lr, float b1, float b2, float eps, float wd, int decoupled,
                          int64_t t);
};

/* constructors, one per backend (cuda's returns CNN_UNSUPPORTED when not compiled
 * or when no device is present) */
cnn_status cnn_backend_ref_create(cnn_backend **out);
cnn_status cnn_backend_cpu_create(cnn_backend **out);
cnn_status cnn_backend_cuda_create(cnn_backend **out);

#ifdef __cplusplus
}
#endif
#endif
