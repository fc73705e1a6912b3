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
#include "cnn/loader.h"
#include "core/schedule.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Arithmetic a matrix product (conv, gemm) may use. F32: exact f32 products.
 * TF32 / BF16: the operands of each product may be rounded to tf32 / bf16 (tensor
 * cores), sums always accumulate in f32. f32 arithmetic is a valid implementation
 * of all three (ref and cpu ignore the field). Tolerances against ref per math:
 * f32 1e-5, tf32 ~1e-3, bf16 ~1e-2 (relative, scaled by sqrt of the terms summed). */
typedef enum cnn_math { CNN_MATH_F32 = 0, CNN_MATH_TF32, CNN_MATH_BF16 } cnn_math;

/* the three convolution passes (engine choice and tuning are per pass) */
typedef enum cnn_conv_dir { CNN_CONV_FWD = 0, CNN_CONV_BWD_DATA, CNN_CONV_BWD_FILTER } cnn_conv_dir;

typedef struct cnn_conv_desc {
  int n, h, w, c;              /* input  [n, h, w, c] */
  int k, r, s;                 /* weight [k, r, s, c/groups] */
  int oh, ow;                  /* output [n, oh, ow, k] */
  int stride_h, stride_w;
  int pad_h, pad_w;            /* top / left padding; bottom/right is implied by oh/ow */
  int dil_h, dil_w;
  int groups;                  /* c % groups == 0 and k % groups == 0 */
  cnn_math math;               /* 0 (F32) unless the build's precision permits rounding */
  int wconst;                  /* forward in an inference program: the weights at this
                                * pointer stay as they were at its previous call until
                                * weights_changed, so an engine may keep them repacked */
} cnn_conv_desc;

/* A dense product with an epilogue (gemm_ex): row-major
 *   C[m, n] = act(alpha * op(A) op(B) + beta * C + bias[n])
 * op(A) [m, k], op(B) [k, n]; lda/ldb/ldc are row strides as stored; bias may be
 * NULL; act LINEAR when there is no epilogue; beta == 0: C is not read. */
typedef struct cnn_gemm_desc {
  int trans_a, trans_b, m, n, k, lda, ldb, ldc;
  float alpha, beta;
  const float *a, *b, *bias;
  float *c;
  int act;                     /* a cnn_act */
  float act_alpha;
  cnn_math math;
} cnn_gemm_desc;

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
  CNN_ACT_RAMP,      /* Darknet's ramp: (x > 0 ? x : 0) + 0.1 x, slope 1.1 or 0.1 */
  CNN_ACT_RELU6,     /* min(max(x, 0), 6); slope 1 on (0, 6), 0 elsewhere (MobileNetV2) */
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

/* Darknet's [crop] (src/layers/crop.c): out [n, oh, ow, c] is a window of x [n, h, w, c]
 * (oh <= h, ow <= w), mapped y = x * scale + off. Per image i, with the draws of
 * src/core/crop_reorg.h (cnn_crop_window, cnn_crop_offset):
 *   y[i, r, q, ch] = x[i, r + oy, flip ? w - ox - q - 1 : q + ox, ch] * scale + off(i, ch)
 * train == 0: centre window oy = (h - oh) / 2, ox = (w - ow) / 2, no flip, off = trans.
 * train == 1: oy, ox uniform integers in [0, h - oh], [0, w - ow], flip with
 *   probability 1/2 if `flip`, off = trans + (u - 1/2) shift, all drawn from the
 *   counter RNG keyed by (seed, step in flight, stream) as dropout_mask_st is.
 * Backward is the transpose: dx[the window cell] += scale * dy. */
typedef struct cnn_crop_desc {
  int n, h, w, c;              /* input  [n, h, w, c] */
  int oh, ow;                  /* output [n, oh, ow, c] */
  int train, flip;
  float scale, trans, shift;
  uint64_t seed, stream;
} cnn_crop_desc;

/* Darknet's [reorg] (src/layers/reorg.c): a fixed permutation of each image's
 * elements defined on Darknet's CHW indices (cnn_reorg_src in src/core/crop_reorg.h);
 * in EXTRA mode the output has `extra` more elements than the input, which are 0:
 *   y[i, o] = s(o) >= 0 ? x[i, s(o)] : 0,   backward dx[i, s(o)] += dy[i, o]. */
typedef enum cnn_reorg_mode {
  CNN_REORG_PLAIN = 0,         /* space to depth by `stride`, Darknet's index mapping */
  CNN_REORG_REVERSE,           /* depth to space (Darknet's reverse=1) */
  CNN_REORG_FLATTEN,           /* Darknet's flatten=1: CHW order -> HWC order */
  CNN_REORG_FLATTEN_REVERSE,   /* flatten=1 reverse=1: HWC order -> CHW order */
  CNN_REORG_EXTRA              /* Darknet's extra=N: CHW order, N zeros appended */
} cnn_reorg_mode;
typedef struct cnn_reorg_desc {
  int n, h, w, c;              /* input  [n, h, w, c] */
  int oh, ow, oc;              /* output [n, oh, ow, oc] */
  int stride;
  cnn_reorg_mode mode;
} cnn_reorg_desc;

/* Element types of buffers. Parameters, optimizer state, batch-norm statistics and
 * losses are always f32; activations and their gradients are f32 or bf16. */
typedef enum cnn_dtype { CNN_DT_F32 = 0, CNN_DT_BF16, CNN_DT_F16, CNN_DT_I32, CNN_DT_U8 } cnn_dtype;

/* ---- step state -------------------------------------------------------------
 * One per built net, in backend memory (device memory on cuda). Ops of a step
 * program read per-step values from it (never from arguments frozen when a CUDA
 * graph was captured) and write the step's metrics into it; the host reads it
 * asynchronously. Layout is shared by host and device code: keep it POD. */
#define CNN_LOSS_RING 1024
enum {
  CNN_NONFINITE_INPUT = 1,  /* check_finite found NaN/Inf in an input */
  CNN_NONFINITE_LOSS = 2    /* softmax_xent_step's loss sum is NaN/Inf */
};
typedef struct cnn_step_state {
  int64_t step;          /* optimizer steps taken: the index of the step in flight */
  int64_t refused;       /* training steps refused (non-finite input or loss) */
  int64_t last_refused;  /* step index of the last refused step; -1: none */
  int64_t seen;          /* images counted into the sums below since metrics_reset */
  int64_t correct;       /* top-1 hits, idem */
  double loss_sum;       /* sum of per-image losses, idem */
  double step_loss;      /* this step: sum of per-image losses (softmax_xent_step) */
  int64_t step_correct;  /* this step: top-1 hits */
  int64_t step_n;        /* this step: images with labels (0: no labels given) */
  int64_t data_pos;      /* bound data: epoch position of the next batch (gather_aug) */
  uint64_t data_key;     /* bound data: the epoch's augmentation key (cnn_aug_epoch_key) */
  float lr;              /* learning rate of the step in flight (step_begin) */
  int32_t nonfinite;     /* CNN_NONFINITE_* bits of the step in flight */
  /* mean loss of training step s at [s % CNN_LOSS_RING], written by step_end
   * (also for a refused step, whose value is then not finite) */
  float loss_ring[CNN_LOSS_RING];
} cnn_step_state;

typedef struct cnn_backend_ops cnn_backend_ops;

/* marks of timer_mark per profiled run (programs longer than this are profiled in
 * pieces) */
#define CNN_TIMER_MARKS 1024

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
  /* optional: bytes this backend's memory has free now (*avail) and in all (*total);
   * *source names where *avail was read (a static string). cpu and ref: host memory
   * (cnn_host_mem_info); cuda: cudaMemGetInfo on the backend's device. */
  cnn_status (*mem_info)(void *ctx, size_t *avail, size_t *total, const char **source);

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

  /* ==== step programs ========================================================
   * The ops below are what compiled step programs (src/core/program.c) call. Each
   * one that takes `st` reads per-step values from the step state in backend
   * memory; none of them synchronises with the host or allocates. */

  /* ---- asynchronous transfers ---- */
  /* Returns once src_host may be reused; the copy may still be in flight (cuda:
   * staged through pinned memory, on the compute stream, ordered before later ops). */
  cnn_status (*upload_async)(void *ctx, void *dst, const void *src_host, size_t bytes);
  /* Start copying bytes of src into host memory dst_host (from host_alloc on cuda);
   * only one read is outstanding per backend: a new one replaces the old. */
  cnn_status (*read_async)(void *ctx, void *dst_host, const void *src, size_t bytes);
  /* 1 when the last read_async has landed (wait != 0: block until it has), 0 if not */
  int (*read_done)(void *ctx, int wait);

  /* ---- step state ---- */
  /* st->nonfinite = 0; st->step_loss = 0, step_correct = step_n = 0;
   * st->lr = cnn_sched_lr(sd, st->step) (sd may be NULL: lr unchanged) */
  cnn_status (*step_begin)(void *ctx, cnn_step_state *st, const cnn_sched_desc *sd);
  /* Training (train != 0): if st->nonfinite: refused++, last_refused = step;
   *   otherwise seen += step_n, correct += step_correct, loss_sum += step_loss, step++.
   *   Either way loss_ring[step % CNN_LOSS_RING] = step_loss / max(step_n, 1) (the
   *   step index before the increment).
   * Inference (train == 0): the sums are always accumulated; step is unchanged. */
  cnn_status (*step_end)(void *ctx, cnn_step_state *st, int train);
  /* seen = correct = 0, loss_sum = 0 (the other fields are kept) */
  cnn_status (*metrics_reset)(void *ctx, cnn_step_state *st);
  /* st->nonfinite |= CNN_NONFINITE_INPUT if any of x[0..n) is NaN or Inf */
  cnn_status (*check_finite)(void *ctx, size_t n, const float *x, cnn_step_state *st);

  /* ---- fused softmax cross-entropy: forward, metrics and (dlogits != NULL) backward ----
   * z = inv_temp * logits; probs = softmax(z) per row; with labels (may be NULL):
   *   loss[i] = -sum_j t_ij log p_ij (log-sum-exp; t as softmax_xent_fwd, smoothing eps)
   *   st->step_loss += sum_i loss[i]; st->step_correct += #{i: argmax_j probs[i] == label
   *   (first maximum)}; st->step_n += n; nonfinite |= CNN_NONFINITE_LOSS if the step's
   *   loss sum is not finite;
   *   dlogits[i, j] += dscale * (p_ij - t_ij)   (only if dlogits != NULL)
   * Without labels only probs are written (loss and dlogits are ignored). */
  cnn_status (*softmax_xent_step)(void *ctx, int n, int classes, const float *logits,
                                  float inv_temp, const int32_t *labels, float smoothing,
                                  float *probs, float *loss, float *dlogits, float dscale,
                                  cnn_step_state *st);

  /* ---- optimizers reading the step state: the update is skipped entirely (p, v,
   * m unchanged) when st->nonfinite != 0; lr = st->lr; Adam's t = st->step + 1.
   * Otherwise exactly sgd_step / adam_step above. */
  cnn_status (*sgd_step_st)(void *ctx, size_t n, float *p, const float *g, float *v,
                            float momentum, float wd, int nesterov, const cnn_step_state *st);
  cnn_status (*adam_step_st)(void *ctx, size_t n, float *p, const float *g, float *m, float *v,
                             float b1, float b2, float eps, float wd, int decoupled,
                             const cnn_step_state *st);

  /* ---- dropout keyed by the step in flight: as dropout_mask with
   *   seed' = cnn_rng_u64(seed, (uint64_t)st->step * 4096 + stream), offset 0 */
  cnn_status (*dropout_mask_st)(void *ctx, size_t n, float p, uint64_t seed, uint64_t stream,
                                const cnn_step_state *st, float *mask);

  /* ---- batch norm fused with an activation (act = CNN_ACT_LINEAR: plain BN) ----
   * Training forward over x [rows, c]: mean and biased var per channel (f32 out,
   * accumulated in at least f32 pairwise/double); save_mean, save_invstd =
   * 1/sqrt(var + eps), save_var = var; y = act(gamma (x - mean) invstd + beta).
   * Running statistics are NOT touched (bn_commit does that, after the step is known
   * to be good). y may not alias x. */
  cnn_status (*bn_act_fwd_train)(void *ctx, size_t rows, int c, const float *x,
                                 const float *gamma, const float *beta, float eps, cnn_act act,
                                 float alpha, float *save_mean, float *save_invstd,
                                 float *save_var, float *y);
  /* y = act(gamma (x - rmean) / sqrt(rvar + eps) + beta) */
  cnn_status (*bn_act_fwd_infer)(void *ctx, size_t rows, int c, const float *x,
                                 const float *gamma, const float *beta, const float *rmean,
                                 const float *rvar, float eps, cnn_act act, float alpha,
                                 float *y);
  /* With z = gamma (x - mean) invstd + beta recomputed from x, g = dy * act'(z)
   * (act_bwd's derivative); then batch-norm backward of g (as bn_bwd):
   *   dgamma = sum_r g xhat, dbeta = sum_r g (overwrite),
   *   dx += gamma invstd (g - dbeta/rows - xhat dgamma/rows),  xhat = (x - mean) invstd */
  cnn_status (*bn_act_bwd)(void *ctx, size_t rows, int c, const float *x, const float *dy,
                           const float *gamma, const float *beta, const float *save_mean,
                           const float *save_invstd, cnn_act act, float alpha, float *dx,
                           float *dgamma, float *dbeta);
  /* Unless st->nonfinite: running_mean = (1 - m) running_mean + m save_mean;
   * running_var = (1 - m) running_var + m save_var * rows / max(rows - 1, 1). */
  cnn_status (*bn_commit)(void *ctx, int c, size_t rows, float momentum, const float *save_mean,
                          const float *save_var, float *running_mean, float *running_var,
                          const cnn_step_state *st);
  /* Inference folding of a BN after a conv: for out channel k < kout with
   * s = gamma[k] / sqrt(rvar[k] + eps):
   *   wout[k, i] = w[k, i] * s  (i < per_k)
   *   bout[k] = beta[k] + ((bias ? bias[k] : 0) - rmean[k]) * s */
  cnn_status (*bn_fold)(void *ctx, int kout, size_t per_k, const float *w, const float *bias,
                        const float *gamma, const float *beta, const float *rmean,
                        const float *rvar, float eps, float *wout, float *bout);

  /* ---- convolution with an activation epilogue: y = act(conv(x, w) + bias) ---- */
  cnn_status (*conv_fwd_act)(void *ctx, const cnn_conv_desc *d, const float *x, const float *w,
                             const float *bias, cnn_act act, float alpha, float *y, void *ws,
                             size_t ws_bytes);

  /* ---- residual add with an activation: y = act(a + b) (y may alias a or b) ---- */
  cnn_status (*add_act_fwd)(void *ctx, size_t n, const float *a, const float *b, cnn_act act,
                            float alpha, float *y);
  /* g = dy * act'(from y): act is LINEAR, RELU, LEAKY, SIGMOID or TANH (derivable
   * from the output; others give CNN_ERR_ARG); da += g, db += g (each if != NULL) */
  cnn_status (*add_act_bwd)(void *ctx, size_t n, const float *y, const float *dy, cnn_act act,
                            float alpha, float *da, float *db);

  /* ---- Darknet crop and reorg (cnn_crop_desc, cnn_reorg_desc above) ----
   * crop_fwd overwrites y; st is read only when d->train (the step in flight),
   * crop_bwd accumulates into dx with the same draws. */
  cnn_status (*crop_fwd)(void *ctx, const cnn_crop_desc *d, const float *x, float *y,
                         const cnn_step_state *st);
  cnn_status (*crop_bwd)(void *ctx, const cnn_crop_desc *d, const float *dy, float *dx,
                         const cnn_step_state *st);
  /* y = the permutation of x (overwrites); dx += its transpose of dy */
  cnn_status (*reorg_fwd)(void *ctx, const cnn_reorg_desc *d, const float *x, float *y);
  cnn_status (*reorg_bwd)(void *ctx, const cnn_reorg_desc *d, const float *dy, float *dx);

  /* ---- data in backend memory (a dataset bound to a net) ----
   * gather_aug: the batch of n images at epoch positions pos = st->data_pos + i
   * (i < n): idx = perm[pos]; x[i] = the u8 image images[idx] ([h, w, c]) shifted,
   * flipped, normalised through lut ([c][256] floats) and cut out exactly as the
   * host loader's cnn_aug_image does with the draws cnn_aug_draw_for(st->data_key,
   * pos, h, w, aug) (src/data/augment.h); y[i] = labels[idx]. Then
   * st->data_pos += n. The per-step values come from st, so a captured graph
   * replays the next batch. */
  cnn_status (*gather_aug)(void *ctx, int n, int h, int w, int c, const uint8_t *images,
                           const int32_t *labels, const int32_t *perm, const float *lut,
                           const cnn_augment *aug, float *x, int32_t *y, cnn_step_state *st);
  /* st->data_pos = pos, st->data_key = key (between steps: the start of an epoch) */
  cnn_status (*data_seek)(void *ctx, cnn_step_state *st, int64_t pos, uint64_t key);

  /* ---- dtype conversion: dst[i] = src[i] for i < n, between f32 and bf16 (either
   * way; the same dtype is a copy). f32 -> bf16 rounds to nearest even and keeps NaN
   * a NaN (quiet) and +-Inf infinite; bf16 -> f32 is exact. Other pairs:
   * CNN_UNSUPPORTED. src and dst do not overlap. */
  cnn_status (*cast)(void *ctx, size_t n, const void *src, cnn_dtype src_dt, void *dst,
                     cnn_dtype dst_dt);

  /* ---- CUDA graphs (optional; NULL elsewhere) ----
   * capture_begin/end record every op issued in between on this backend into a
   * graph instead of running it; graph_launch replays it; graph_free releases it. */
  cnn_status (*capture_begin)(void *ctx);
  cnn_status (*capture_end)(void *ctx, void **graph);
  cnn_status (*graph_launch)(void *ctx, void *graph);
  void (*graph_free)(void *ctx, void *graph);

  /* ---- matrix units and engines (optional; NULL where a backend has one engine) ----
   * matrix_math: bit (1 << CNN_MATH_*) set for each math the backend runs on matrix
   * units (cuda at cc >= 8.0: TF32 and BF16); --precision auto asks it. */
  unsigned (*matrix_math)(void *ctx);
  /* gemm with math and an epilogue (cnn_gemm_desc); where NULL, callers use gemm
   * followed by bias_add / act_fwd */
  cnn_status (*gemm_ex)(void *ctx, const cnn_gemm_desc *g);
  /* The engines that can run pass `dir` of d: writes up to max names (static strings,
   * stable: the tune cache stores them) and returns how many there are. */
  int (*conv_engines)(void *ctx, const cnn_conv_desc *d, cnn_conv_dir dir, const char **names,
                      int max);
  /* Choose the engine of (d, dir) now, within ws_bytes of workspace: from the tune
   * cache, else by timing the candidates (validated against the fp32 engine) and
   * caching the winner. Called when a program is compiled (never under capture);
   * a pass that was never tuned is tuned on first use outside a capture. */
  cnn_status (*conv_tune)(void *ctx, const cnn_conv_desc *d, cnn_conv_dir dir, size_t ws_bytes);
  /* the engine (d, dir) runs with now (a static string) */
  const char *(*conv_engine)(void *ctx, const cnn_conv_desc *d, cnn_conv_dir dir);
  /* ---- device-side timing (optional; cuda: CUDA events) ----
   * timer_mark records mark i (0 <= i < n, n <= CNN_TIMER_MARKS) in the order of the
   * ops issued; timer_read waits for the marks and sets ms[i] to the time between
   * marks i and i + 1 for i < n - 1. Profiling runs use it instead of waiting for
   * every node, so a node's time is what the device spent on it. Not under capture. */
  cnn_status (*timer_mark)(void *ctx, int i);
  cnn_status (*timer_read)(void *ctx, int n, float *ms);
  /* key=value settings, CNN_ERR_ARG naming the choices when either is unknown:
   *   conv-engine  auto (default) | own | cudnn | <an engine name from conv_engines>
   *   workspace    MB of conv workspace the tuner may use (default: from free memory)
   *   tune-cache   a file path | off (default ~/.cache/cnn/tune-<device>.txt) */
  cnn_status (*set_option)(void *ctx, const char *key, const char *value);
  /* (optional) weights may have changed since the last run of an inference program:
   * weights kept repacked for convs with cnn_conv_desc.wconst are stale. Called
   * before every run of a training program and before an inference run told that
   * the parameters changed (cnn_program_run's prologue flag: the same events that
   * refold batch norm into conv weights). */
  void (*weights_changed)(void *ctx);
  /* (optional) the host thread team: its size now, the size it returns to, and the
   * seconds it has run below that since the backend was made (cnn_cpu_adapt; cpu:
   * other processes kept cores busy). Without adaptation: team == full, reduced 0. */
  void (*team_info)(void *ctx, int *team, int *full, double *reduced_s);
  /* ---- (optional) overwriting forms of two backward ops: dx = ... where the plain op
   * does dx += ...; every element of dx is written (0 where no gradient reaches it)
   * and none is read, so dx may hold anything before. A compiled program calls one
   * where it would otherwise zero dx and then call the plain op (the first writer of
   * a gradient, src/core/program.c): one pass over dx instead of three. Where NULL,
   * the program keeps the zero-fill. Results are the bits of fill(0) + the plain op. */
  cnn_status (*maxpool_bwd_set)(void *ctx, const cnn_pool_desc *d, const float *x,
                                const float *dy, float *dx);
  cnn_status (*bn_act_bwd_set)(void *ctx, size_t rows, int c, const float *x, const float *dy,
                               const float *gamma, const float *beta, const float *save_mean,
                               const float *save_invstd, cnn_act act, float alpha, float *dx,
                               float *dgamma, float *dbeta);
  /* ---- (optional) batch norm + activation + max pool in training: x [n, h, w, c] (the
   * conv output; d->n, d->h, d->w, d->c), d the pool over a = act(bn(x)) with windows
   * that do not overlap (stride >= size). The full-size a is never stored: the
   * forward computes it window by window, the backward needs only x, dy and sel.
   * Forward: y [n, oh, ow, c] = maxpool(a). rmean == NULL: batch statistics as
   * bn_act_fwd_train (save_mean, save_invstd, save_var written), and z = (x - mean) s
   * + beta with s = gamma * save_invstd (the saved f32 invstd), the z the backward
   * rebuilds. With batch statistics sel [n, oh, ow, c] gets each output's argmax:
   * the window-local index r * kw + s of the first cell holding the maximum
   * (maxpool_fwd's order; windows of at most 255 cells), 255 for a window with no
   * cell. rmean != NULL: the running statistics rmean, rvar (a frozen layer, an
   * inference run), s = gamma / sqrt(rvar + eps); nothing is saved, sel untouched.
   * Backward: g = dy routed to the cell sel names (the forward's argmax), times
   * act'(z), 0 in every other cell; then the batch-norm backward of g as bn_act_bwd:
   * dgamma, dbeta overwritten; dx += ..., or with set dx = 0 + ... (dx not read).
   * gamma == NULL: no batch norm (an activation layer with its pool): z = x; the
   * forward writes sel where it is not NULL and reads no statistics; the backward's
   * dx (+)= g, and beta, the saved statistics, dgamma and dbeta are not used. */
  cnn_status (*bn_act_pool_fwd)(void *ctx, const cnn_pool_desc *d, const float *x,
                                const float *gamma, const float *beta, float eps, cnn_act act,
                                float alpha, const float *rmean, const float *rvar,
                                float *save_mean, float *save_invstd, float *save_var,
                                uint8_t *sel, float *y);
  cnn_status (*bn_act_pool_bwd)(void *ctx, const cnn_pool_desc *d, const float *x,
                                const float *dy, const uint8_t *sel, const float *gamma,
                                const float *beta, const float *save_mean,
                                const float *save_invstd, cnn_act act, float alpha, float *dx,
                                float *dgamma, float *dbeta, int set);
};

/* constructors, one per backend (cuda's returns CNN_UNSUPPORTED when not compiled
 * or when no device is present) */
cnn_status cnn_backend_ref_create(cnn_backend **out);
cnn_status cnn_backend_cpu_create(cnn_backend **out);
cnn_status cnn_backend_cuda_create(cnn_backend **out);

/* Host memory free for this process (src/backend/host_mem.c): MemAvailable of
 * /proc/meminfo, lowered to what a cgroup memory limit leaves: for the process's
 * cgroup and each one above it, limit - (usage - inactive file pages), the page
 * cache the kernel reclaims before it fails an allocation (cgroup v2 memory.max,
 * memory.current, memory.stat; v1 memory.limit_in_bytes, memory.usage_in_bytes).
 * total: MemTotal, or the smallest limit if lower. The op of cpu and ref. */
cnn_status cnn_host_mem_info(void *ctx, size_t *avail, size_t *total, const char **source);
/* The same from the given files (for tests): meminfo as /proc/meminfo, proc_cgroup
 * as /proc/self/cgroup, cg2 the cgroup v2 mount (/sys/fs/cgroup), cg1 the v1 memory
 * controller's (/sys/fs/cgroup/memory); any may be NULL or missing. */
cnn_status cnn_host_mem_read(const char *meminfo, const char *proc_cgroup, const char *cg2,
                             const char *cg1, size_t *avail, size_t *total,
                             const char **source);
/* The CPU quota of the process's cgroup and each one above it, as whole CPUs
 * (quota / period rounded up, the least of them); 0 when none (src/backend/cpu/
 * cpu_threads.c, for cnn_cpu_cores). proc_cgroup as /proc/self/cgroup, cg2 the
 * cgroup v2 mount (cpu.max), cg1 the v1 cpu controller's (cpu.cfs_quota_us,
 * cpu.cfs_period_us); any may be NULL or missing. *source (may be NULL): which. */
int cnn_cpu_quota_read(const char *proc_cgroup, const char *cg2, const char *cg1,
                       const char **source);

/* The cpu backend's team size under contention (cpu_threads.c). Where another
 * process keeps one of our cores busy, the thread sharing it runs half the time and
 * every statically split parallel region waits for it: 2 threads measured 8 %
 * slower than 1 (fashion.cfg training). At each step's start (at most every
 * CNN_CPU_ADAPT_PERIOD s) the backend samples its threads' summed run-queue wait
 * (schedstat) and this decides: more than CNN_CPU_ADAPT_BUSY s of waiting per
 * second in two samples in a row: one thread fewer; less than CNN_CPU_ADAPT_IDLE:
 * after probe_wait seconds at the lower count, one more (a probe that is contended
 * again doubles the wait, up to CNN_CPU_ADAPT_PROBE_MAX). base 0 (OMP_NUM_THREADS or
 * --threads set): off. Measured on the 2-core EPYC VM, fashion.cfg training at 2
 * threads: 0.07 s/s quiet (waking passive workers), 0.74 s/s with a busy loop
 * beside it, 0.4-0.5 in the first second of a process (start-up). */
#define CNN_CPU_ADAPT_PERIOD 0.5
#define CNN_CPU_ADAPT_BUSY 0.3
#define CNN_CPU_ADAPT_IDLE 0.05
#define CNN_CPU_ADAPT_PROBE 2.0
#define CNN_CPU_ADAPT_PROBE_MAX 32.0
typedef struct cnn_cpu_adapt {
  int base;          /* the team size to return to; 0: adaptation off */
  int cur;           /* the team size now */
  double last_t;     /* seconds (monotonic) of the previous sample; 0: none yet */
  double last_delay; /* the summed run-queue wait (seconds) then */
  double changed_t;  /* when cur last changed */
  double probe_wait; /* seconds at cur < base before trying cur + 1 */
  int rose;          /* the last change was a probe up */
  int strikes;       /* contended samples in a row */
  double reduced_s;  /* seconds between samples spent at fewer threads than base */
} cnn_cpu_adapt;
/* the team size after a sample at `now` with summed wait `delay` (both seconds) */
int cnn_cpu_adapt_step(cnn_cpu_adapt *a, double now, double delay);
/* this process's threads' summed run-queue wait in seconds (the second field of
 * /proc/self/task/TID/schedstat), or -1 where the kernel does not report it */
double cnn_cpu_run_delay(void);

#ifdef __cplusplus
}
#endif
#endif
