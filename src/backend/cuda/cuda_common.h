/* Private to the CUDA backend: the context every op receives as `void *ctx`, the
 * error-checking macros, and the extern "C" launchers each .cu file defines.
 *
 * Every cuda* / cublas* call goes through CUDA_CHECK / CUBLAS_CHECK and every
 * kernel launch is followed by LAUNCH_CHECK, so a failure comes back as
 * CNN_ERR_DEVICE with "file:line: call: message" in cnn_last_error(). */
#ifndef CNN_CUDA_COMMON_H
#define CNN_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "core/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* pinned staging slots of upload_async */
#define CNN_CUDA_STAGE_SLOTS 3
/* scratch reserved at create (enough for every batch-norm / softmax reduction of
 * ordinary layers, so a first step captured into a graph need not grow it) */
#define CNN_CUDA_SCRATCH_INIT ((size_t)8 << 20)
/* cuBLAS workspace (32 MiB: NVIDIA's recommendation for Hopper) */
#define CNN_CUDA_CUBLAS_WS ((size_t)32 << 20)

/* one pinned staging buffer of upload_async */
typedef struct cnn_cuda_stage {
  void *host;
  size_t bytes;
  cudaEvent_t done;
  int pending; /* `done` recorded after the last copy out of this slot */
} cnn_cuda_stage;

typedef struct cnn_cuda_ctx {
  int device;
  cudaStream_t stream;     /* every op runs on this stream */
  cublasHandle_t cublas;   /* bound to `stream`, CUBLAS_DEFAULT_MATH (no TF32) */
  /* device properties, read once at create */
  char name[256];
  int sms, cc_major, cc_minor;
  int max_threads_per_sm;
  size_t mem_total, l2_bytes, smem_per_block_optin;
  /* scratch for reductions that have no workspace argument (bias_grad, batch
   * norm, conv db, softmax_xent_step); reserved at create, grown on demand
   * outside of graph capture only, freed at destroy. A captured graph keeps the
   * address it saw: a buffer replaced while graphs are alive is parked in
   * `deferred` and freed once the last graph is gone. */
  void *scratch;
  size_t scratch_bytes;
  /* device buffers whose cudaFree waits until no capture is open and no graph is
   * alive (see cnn_cuda_defer_free) */
  void **deferred;
  int n_deferred, cap_deferred;
  /* cuBLAS workspace set once at create, so cuBLAS never allocates under capture */
  void *cublas_ws;
  size_t cublas_ws_bytes;
  /* CNN_CUDA_SYNC=1 (read once at create): synchronise after every launch and
   * name the failing kernel (skipped while capturing) */
  int sync_debug;
  /* graphs: capturing is 1 between capture_begin and capture_end; capture_error
   * is set by an op refused during the capture (capture_end then fails);
   * graphs_live counts instantiated graphs not yet freed */
  int capturing, capture_error, graphs_live;
  /* upload_async: a ring of pinned staging buffers, one event per slot */
  cnn_cuda_stage stage[CNN_CUDA_STAGE_SLOTS];
  int stage_next;
  /* read_async: the one outstanding device-to-host read */
  cudaEvent_t read_ev;
  int read_pending, read_in_capture;
  /* conv engines: the tuner's choices and options (cuda_tune.cu), cuDNN's handle
   * and descriptors (cuda_cudnn.cu, NULL when cuDNN is not compiled in or not
   * loadable), cuBLASLt's handle (cuda_gemm_lt.cu); each owned by its file */
  /* timer_mark / timer_read: CUDA events, created on first use */
  cudaEvent_t timer_ev[CNN_TIMER_MARKS];
  int timer_n;
  struct cnn_cuda_tuner *tuner;
  struct cnn_cuda_cudnn *cudnn;
  struct cnn_cuda_lt *lt;
  /* the op table lives in the context: no global mutable state */
  cnn_backend_ops ops;
} cnn_cuda_ctx;

/* A failing runtime call also sets the runtime's "last error"; it is cleared here
 * so that the next LAUNCH_CHECK does not report a stale error. */
#define CUDA_CHECK(call)                                                                  \
  do {                                                                                    \
    cudaError_t cnn_cuda_e_ = (call);                                                     \
    if (cnn_cuda_e_ != cudaSuccess) {                                                     \
      (void)cudaGetLastError();                                                           \
      return cnn_error(CNN_ERR_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #call,        \
                       cudaGetErrorString(cnn_cuda_e_));                                  \
    }                                                                                     \
  } while (0)

#define CUBLAS_CHECK(call)                                                                \
  do {                                                                                    \
    cublasStatus_t cnn_cublas_s_ = (call);                                                \
    if (cnn_cublas_s_ != CUBLAS_STATUS_SUCCESS) {                                         \
      (void)cudaGetLastError();                                                           \
      return cnn_error(CNN_ERR_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #call,        \
                       cublasGetStatusString(cnn_cublas_s_));                             \
    }                                                                                     \
  } while (0)

/* after every <<<...>>>: catches bad launch configurations (and earlier
 * asynchronous faults, which the message then names at this launch). Needs the
 * op's `cnn_cuda_ctx *ctx` in scope: with CNN_CUDA_SYNC=1 it also synchronises
 * (outside capture) so that a fault inside the kernel is reported against it. */
#define LAUNCH_CHECK(kernel_name)                                                         \
  do {                                                                                    \
    cudaError_t cnn_cuda_e_ = cudaGetLastError();                                         \
    if (cnn_cuda_e_ != cudaSuccess)                                                       \
      return cnn_error(CNN_ERR_DEVICE, "%s:%d: launch %s: %s", __FILE__, __LINE__,        \
                       kernel_name, cudaGetErrorString(cnn_cuda_e_));                     \
    if (ctx->sync_debug) CNN_TRY(cnn_cuda_debug_sync(ctx, kernel_name, __FILE__, __LINE__)); \
  } while (0)

#define CNN_CUDA_CTX(p) ((cnn_cuda_ctx *)(p))

/* threads per block for 1-D elementwise kernels */
#define CNN_CUDA_THREADS 256

/* blocks for a grid-stride loop over n elements: enough to fill the device a few
 * times over, never 0 (callers return early for n == 0) */
static inline unsigned cnn_cuda_blocks(const cnn_cuda_ctx *ctx, size_t n) {
  size_t want = (n + CNN_CUDA_THREADS - 1) / CNN_CUDA_THREADS;
  size_t cap = (size_t)(ctx->sms > 0 ? ctx->sms : 1) * 32;
  if (want > cap) want = cap;
  if (want < 1) want = 1;
  return (unsigned)want;
}

/* scratch of at least `bytes` (256-aligned), valid until the next call; may
 * synchronize the stream to grow (cuda_backend.cu). Growth is refused (clear
 * error, and the open capture is marked failed) while a graph is being captured. */
cnn_status cnn_cuda_scratch(cnn_cuda_ctx *ctx, size_t bytes, void **out);

/* CNN_CUDA_SYNC=1: synchronise the stream after `what` (not while capturing) and
 * report a failure as "what failed: ..." (cuda_backend.cu) */
cnn_status cnn_cuda_debug_sync(cnn_cuda_ctx *ctx, const char *what, const char *file, int line);

/* An op that cannot run under stream capture: sets ctx->capture_error so that
 * capture_end fails too, and returns CNN_ERR_ARG naming the op. */
cnn_status cnn_cuda_refuse_in_capture(cnn_cuda_ctx *ctx, const char *op);

/* cudaFree the buffers parked while capturing or while graphs were alive, once
 * neither is the case any more (synchronises the stream; no-op otherwise) */
void cnn_cuda_release_deferred(cnn_cuda_ctx *ctx);

/* Deterministic per-column reductions over a [rows, cols] row-major matrix
 * (cuda_elementwise.cu), shared by bias_grad, conv db and batch norm.
 * Column sums in double go to sums0 (and sums1 for mode 2):
 *   mode 0: sums0[j] = sum_r a[r, j]
 *   mode 1: sums0[j] = sum_r (a[r, j] - mean[j])^2
 *   mode 2: sums0[j] = sum_r b[r, j];  sums1[j] = sum_r b[r, j] * (a[r, j] - mean[j])
 * Rows are split into `parts` chunks (cnn_cuda_colsum_parts) reduced by separate
 * blocks into `partials` (2 * parts * cols doubles; unused when parts == 1), then
 * summed in a fixed order: the result depends only on the shape and the device's
 * SM count, never on scheduling. */
int cnn_cuda_colsum_parts(const cnn_cuda_ctx *ctx, size_t rows, int cols);
/* mode 3 (bn_act_bwd) is mode 2 with b replaced by g = b * act'(z), where
 * z = gamma (a - mean) invstd + beta (gamma NULL: 1, beta NULL: 0) is recomputed
 * exactly as the fused batch-norm forward computes it */
typedef struct cnn_cuda_colsum_act {
  const float *invstd, *gamma, *beta;
  int act;
  float alpha;
} cnn_cuda_colsum_act;
cnn_status cnn_cuda_colsum_ex(cnn_cuda_ctx *ctx, int mode, size_t rows, int cols,
                              const float *a, const float *b, const float *mean,
                              const cnn_cuda_colsum_act *act, int parts, double *partials,
                              double *sums0, double *sums1);
cnn_status cnn_cuda_colsum(cnn_cuda_ctx *ctx, int mode, size_t rows, int cols, const float *a,
                           const float *b, const float *mean, int parts, double *partials,
                           double *sums0, double *sums1);

/* round a byte count up to 256 (to carve several arrays out of one scratch) */
static inline size_t cnn_cuda_align256(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

/* ---- launchers: cuda_backend.cu ---- */
cnn_status cnn_cuda_alloc(void *ctx, size_t bytes, void **ptr);
void cnn_cuda_free(void *ctx, void *ptr);
cnn_status cnn_cuda_upload(void *ctx, void *dst, const void *src_host, size_t bytes);
cnn_status cnn_cuda_download(void *ctx, void *dst_host, const void *src, size_t bytes);
cnn_status cnn_cuda_copy(void *ctx, void *dst, const void *src, size_t bytes);
cnn_status cnn_cuda_sync(void *ctx);
cnn_status cnn_cuda_gemm(void *ctx, int trans_a, int trans_b, int m, int n, int k, float alpha,
                         const float *a, int lda, const float *b, int ldb, float beta, float *c,
                         int ldc);

/* ---- cuda_elementwise.cu ---- */
cnn_status cnn_cuda_fill(void *ctx, float *x, size_t n, float v);
cnn_status cnn_cuda_axpby(void *ctx, size_t n, float alpha, const float *x, float beta, float *y);
cnn_status cnn_cuda_add(void *ctx, size_t n, const float *a, const float *b, float *y);
cnn_status cnn_cuda_mul(void *ctx, size_t n, const float *a, const float *b, float beta, float *y);
cnn_status cnn_cuda_copy2d(void *ctx, size_t rows, size_t cols, const float *src,
                           size_t src_stride, float *dst, size_t dst_stride, int accumulate);
cnn_status cnn_cuda_act_fwd(void *ctx, cnn_act a, float alpha, size_t n, const float *x,
                            float *y);
cnn_status cnn_cuda_act_bwd(void *ctx, cnn_act a, float alpha, size_t n, const float *x,
                            const float *y, const float *dy, float *dx);
cnn_status cnn_cuda_bias_add(void *ctx, size_t rows, size_t cols, const float *bias, float *y);
cnn_status cnn_cuda_bias_grad(void *ctx, size_t rows, size_t cols, const float *dy, float *db);
cnn_status cnn_cuda_shortcut_fwd(void *ctx, const cnn_shortcut_desc *d, const float *from,
                                 float *out);
cnn_status cnn_cuda_shortcut_bwd(void *ctx, const cnn_shortcut_desc *d, const float *dout,
                                 float *dfrom);
cnn_status cnn_cuda_dropout_mask(void *ctx, size_t n, float p, uint64_t seed, uint64_t offset,
                                 float *mask);
cnn_status cnn_cuda_dropout_mask_st(void *ctx, size_t n, float p, uint64_t seed, uint64_t stream,
                                    const cnn_step_state *st, float *mask);
cnn_status cnn_cuda_add_act_fwd(void *ctx, size_t n, const float *a, const float *b, cnn_act act,
                                float alpha, float *y);
cnn_status cnn_cuda_cast(void *ctx, size_t n, const void *src, cnn_dtype src_dt, void *dst,
                         cnn_dtype dst_dt);
cnn_status cnn_cuda_add_act_bwd(void *ctx, size_t n, const float *y, const float *dy,
                                cnn_act act, float alpha, float *da, float *db);

/* ---- cuda_crop_reorg.cu ---- */
cnn_status cnn_cuda_crop_fwd(void *ctx, const cnn_crop_desc *d, const float *x, float *y,
                             const cnn_step_state *st);
cnn_status cnn_cuda_crop_bwd(void *ctx, const cnn_crop_desc *d, const float *dy, float *dx,
                             const cnn_step_state *st);
cnn_status cnn_cuda_reorg_fwd(void *ctx, const cnn_reorg_desc *d, const float *x, float *y);
cnn_status cnn_cuda_reorg_bwd(void *ctx, const cnn_reorg_desc *d, const float *dy, float *dx);

/* ---- cuda_conv.cu ---- */
size_t cnn_cuda_conv_workspace(void *ctx, const cnn_conv_desc *d);
cnn_status cnn_cuda_conv_fwd(void *ctx, const cnn_conv_desc *d, const float *x, const float *w,
                             const float *bias, float *y, void *ws, size_t ws_bytes);
cnn_status cnn_cuda_conv_fwd_act(void *ctx, const cnn_conv_desc *d, const float *x,
                                 const float *w, const float *bias, cnn_act act, float alpha,
                                 float *y, void *ws, size_t ws_bytes);
cnn_status cnn_cuda_conv_bwd_data(void *ctx, const cnn_conv_desc *d, const float *dy,
                                  const float *w, float *dx, void *ws, size_t ws_bytes);
cnn_status cnn_cuda_conv_bwd_filter(void *ctx, const cnn_conv_desc *d, const float *x,
                                    const float *dy, float *dw, float *db, void *ws,
                                    size_t ws_bytes);

/* ---- cuda_pool.cu ---- */
cnn_status cnn_cuda_maxpool_fwd(void *ctx, const cnn_pool_desc *d, const float *x, float *y);
cnn_status cnn_cuda_maxpool_bwd(void *ctx, const cnn_pool_desc *d, const float *x,
                                const float *dy, float *dx);
cnn_status cnn_cuda_avgpool_fwd(void *ctx, const cnn_pool_desc *d, const float *x, float *y);
cnn_status cnn_cuda_avgpool_bwd(void *ctx, const cnn_pool_desc *d, const float *dy, float *dx);

/* ---- cuda_norm.cu ---- */
cnn_status cnn_cuda_bn_fwd_train(void *ctx, size_t rows, int c, const float *x,
                                 const float *gamma, const float *beta, float eps,
                                 float momentum, float *running_mean, float *running_var,
                                 float *save_mean, float *save_invstd, float *y);
cnn_status cnn_cuda_bn_fwd_infer(void *ctx, size_t rows, int c, const float *x,
                                 const float *gamma, const float *beta,
                                 const float *running_mean, const float *running_var, float eps,
                                 float *y);
cnn_status cnn_cuda_bn_bwd(void *ctx, size_t rows, int c, const float *x, const float *dy,
                           const float *gamma, const float *save_mean, const float *save_invstd,
                           float *dx, float *dgamma, float *dbeta);
cnn_status cnn_cuda_bn_act_fwd_train(void *ctx, size_t rows, int c, const float *x,
                                     const float *gamma, const float *beta, float eps,
                                     cnn_act act, float alpha, float *save_mean,
                                     float *save_invstd, float *save_var, float *y);
cnn_status cnn_cuda_bn_act_fwd_infer(void *ctx, size_t rows, int c, const float *x,
                                     const float *gamma, const float *beta, const float *rmean,
                                     const float *rvar, float eps, cnn_act act, float alpha,
                                     float *y);
cnn_status cnn_cuda_bn_act_bwd(void *ctx, size_t rows, int c, const float *x, const float *dy,
                               const float *gamma, const float *beta, const float *save_mean,
                               const float *save_invstd, cnn_act act, float alpha, float *dx,
                               float *dgamma, float *dbeta);
cnn_status cnn_cuda_bn_commit(void *ctx, int c, size_t rows, float momentum,
                              const float *save_mean, const float *save_var,
                              float *running_mean, float *running_var, const cnn_step_state *st);
cnn_status cnn_cuda_bn_fold(void *ctx, int kout, size_t per_k, const float *w, const float *bias,
                            const float *gamma, const float *beta, const float *rmean,
                            const float *rvar, float eps, float *wout, float *bout);
cnn_status cnn_cuda_softmax_xent_fwd(void *ctx, int n, int classes, const float *logits,
                                     const int32_t *labels, float smoothing, float *probs,
                                     float *loss);
cnn_status cnn_cuda_softmax_xent_bwd(void *ctx, int n, int classes, const float *probs,
                                     const int32_t *labels, float smoothing, float scale,
                                     float *dlogits);

/* ---- cuda_optim.cu ---- */
cnn_status cnn_cuda_sgd_step(void *ctx, size_t n, float *p, const float *g, float *v, float lr,
                             float momentum, float wd, int nesterov);
cnn_status cnn_cuda_adam_step(void *ctx, size_t n, float *p, const float *g, float *m, float *v,
                              float lr, float b1, float b2, float eps, float wd, int decoupled,
                              int64_t t);
cnn_status cnn_cuda_sgd_step_st(void *ctx, size_t n, float *p, const float *g, float *v,
                                float momentum, float wd, int nesterov, const cnn_step_state *st);
cnn_status cnn_cuda_adam_step_st(void *ctx, size_t n, float *p, const float *g, float *m,
                                 float *v, float b1, float b2, float eps, float wd, int decoupled,
                                 const cnn_step_state *st);

/* ---- cuda_data.cu: a dataset bound in device memory ---- */
cnn_status cnn_cuda_gather_aug(void *ctx, int n, int h, int w, int c, const uint8_t *images,
                               const int32_t *labels, const int32_t *perm, const float *lut,
                               const cnn_augment *aug, float *x, int32_t *y, cnn_step_state *st);
cnn_status cnn_cuda_data_seek(void *ctx, cnn_step_state *st, int64_t pos, uint64_t key);

/* ---- cuda_program.cu: step state, fused softmax, async transfers, graphs ---- */
cnn_status cnn_cuda_upload_async(void *ctx, void *dst, const void *src_host, size_t bytes);
cnn_status cnn_cuda_read_async(void *ctx, void *dst_host, const void *src, size_t bytes);
int cnn_cuda_read_done(void *ctx, int wait);
cnn_status cnn_cuda_step_begin(void *ctx, cnn_step_state *st, const cnn_sched_desc *sd);
cnn_status cnn_cuda_step_end(void *ctx, cnn_step_state *st, int train);
cnn_status cnn_cuda_metrics_reset(void *ctx, cnn_step_state *st);
cnn_status cnn_cuda_check_finite(void *ctx, size_t n, const float *x, cnn_step_state *st);
cnn_status cnn_cuda_softmax_xent_step(void *ctx, int n, int classes, const float *logits,
                                      float inv_temp, const int32_t *labels, float smoothing,
                                      float *probs, float *loss, float *dlogits, float dscale,
                                      cnn_step_state *st);
cnn_status cnn_cuda_timer_mark(void *ctx, int i);
cnn_status cnn_cuda_timer_read(void *ctx, int n, float *ms);
cnn_status cnn_cuda_capture_begin(void *ctx);
cnn_status cnn_cuda_capture_end(void *ctx, void **graph);
cnn_status cnn_cuda_graph_launch(void *ctx, void *graph);
void cnn_cuda_graph_free(void *ctx, void *graph);

#ifdef __cplusplus
}
#endif
#endif
