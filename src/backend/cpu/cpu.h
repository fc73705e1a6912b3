/* Private header of the `cpu` backend: the op functions each cpu_*.c file defines
 * (gathered into the op table in cpu_backend.c) and the helpers they share.
 *
 * cpu is the fast host backend: OpenBLAS cblas_sgemm for every matrix product,
 * OpenMP for all threading, loops written so the compiler vectorises them. There
 * is one thread pool, OpenMP's: OpenBLAS is made single-threaded when the backend
 * is created, and GEMMs are split over the OpenMP team by the ops themselves (see
 * cpu_conv.c for why).
 *
 * Determinism: no atomics; every result is a fixed function of the inputs and the
 * thread count. Bias grads, batch-norm statistics and depthwise filter grads sum
 * fixed row chunks (their number depends on the shape only) into double partials
 * added in chunk order, so they do not even depend on the thread count; conv
 * filter grads sum per-thread-count runs of tiles the same way. The step-program
 * reductions (fused BN backward sums, softmax_xent_step's loss) use fixed chunks
 * too, so they are thread-count independent; fused ops reuse the unfused ops'
 * kernels, so they give the unfused chain's bits except where cpu_conv.c and
 * cpu_bnact.c say otherwise.
 *
 * Argument rule (the same as ref): every buffer is required unless backend.h says
 * "if != NULL" (conv bias, conv db); a NULL required buffer gives CNN_ERR_ARG. The
 * memory ops are no-ops for zero bytes whatever the pointers. */
#ifndef CNN_CPU_H
#define CNN_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "core/error.h"

/* Return CNN_ERR_ARG naming the op and the argument when `ptr` is NULL. */
#define CPU_NEED(ptr, op)                                                          \
  do {                                                                             \
    if (!(ptr)) return cnn_error(CNN_ERR_ARG, "cpu %s: %s is NULL", (op), #ptr);   \
  } while (0)

/* Loops over fewer elements than this run on the calling thread: starting a
 * parallel region costs more than the work. */
#define CPU_PAR_MIN ((size_t)1 << 15)

/* Alignment of every buffer the backend hands out (backend.h asks for 256). */
#define CPU_ALIGN ((size_t)256)

/* OpenMP thread id / team size (0 / 1 without OpenMP) */
#ifdef _OPENMP
#include <omp.h>
static inline int cpu_thread_num(void) { return omp_get_thread_num(); }
static inline int cpu_num_threads(void) { return omp_get_num_threads(); }
static inline int cpu_max_threads(void) { return omp_get_max_threads(); }
#else
static inline int cpu_thread_num(void) { return 0; }
static inline int cpu_num_threads(void) { return 1; }
static inline int cpu_max_threads(void) { return 1; }
#endif

/* ---- cpu_backend.c: shared helpers ---- */
/* Aligned host allocation; CNN_ERR_NOMEM with a message naming `what` on failure. */
cnn_status cpu_alloc_aligned(size_t bytes, const char *what, void **ptr);
/* Column sums in double of a [rows, cols] row-major matrix with row stride `ld`:
 *   mode 0: out[j] = sum_r a[r, j]
 *   mode 1: out[j] = sum_r t  and  out[cols + j] = sum_r t^2,  t = a[r, j] - center[j]
 *   mode 2: out[j] = sum_r a[r, j]  and  out[cols + j] = sum_r a[r, j] (b[r, j] - center[j])
 * Deterministic for any thread count (fixed row chunks, combined in order). */
cnn_status cpu_colsum(size_t rows, size_t cols, size_t ld, const float *a, const float *b,
                      const double *center, int mode, double *out, const char *op);
/* acc[j] += sum_r a[r, j] for a [rows, cols] matrix with row stride ld, on the
 * calling thread (for use inside a parallel region) */
void cpu_colsum_add(size_t rows, size_t cols, size_t ld, const float *a, double *acc);
/* The chunking behind cpu_colsum, for any per-row reduction: rows are cut into
 * fixed chunks (their number depends on rows only), fn(r0, r1, arg, acc) adds
 * rows [r0, r1) into acc[width] (zeroed before the call), and the chunk partials
 * are added in chunk order into out[width]. row_work (elements per row) decides
 * whether the chunks run in parallel. */
typedef void (*cpu_rows_fn)(size_t r0, size_t r1, const void *arg, double *acc);
cnn_status cpu_reduce_rows(size_t rows, size_t width, size_t row_work, cpu_rows_fn fn,
                           const void *arg, double *out, const char *op);

/* Tiles of a [rows, c] row-major matrix small enough for L1, which the fused ops
 * (BN + activation, epilogues) finish before moving on: `trows` rows of `tcols`
 * channels. Either tcols == c or trows == 1, so a tile is always one contiguous
 * run of trows * tcols floats starting at row r, channel j0. */
#define CPU_TILE 1024
static inline void cpu_tile_shape(int c, size_t *trows, size_t *tcols) {
  size_t cc = (size_t)c;
  *tcols = cc <= CPU_TILE ? cc : CPU_TILE;
  *trows = cc <= CPU_TILE ? CPU_TILE / cc : 1;
}

/* ---- cpu_backend.c: elementwise, dense, shortcut, dropout, optimizers ---- */
cnn_status cpu_fill(void *ctx, float *x, size_t n, float v);
cnn_status cpu_axpby(void *ctx, size_t n, float alpha, const float *x, float beta, float *y);
cnn_status cpu_add(void *ctx, size_t n, const float *a, const float *b, float *y);
cnn_status cpu_mul(void *ctx, size_t n, const float *a, const float *b, float beta, float *y);
cnn_status cpu_copy2d(void *ctx, size_t rows, size_t cols, const float *src, size_t src_stride,
                      float *dst, size_t dst_stride, int accumulate);
cnn_status cpu_gemm(void *ctx, int trans_a, int trans_b, int m, int n, int k, float alpha,
                    const float *a, int lda, const float *b, int ldb, float beta, float *c,
                    int ldc);
cnn_status cpu_bias_add(void *ctx, size_t rows, size_t cols, const float *bias, float *y);
cnn_status cpu_bias_grad(void *ctx, size_t rows, size_t cols, const float *dy, float *db);
cnn_status cpu_shortcut_fwd(void *ctx, const cnn_shortcut_desc *d, const float *from,
                            float *out);
cnn_status cpu_shortcut_bwd(void *ctx, const cnn_shortcut_desc *d, const float *dout,
                            float *dfrom);
cnn_status cpu_dropout_mask(void *ctx, size_t n, float p, uint64_t seed, uint64_t offset,
                            float *mask);
cnn_status cpu_sgd_step(void *ctx, size_t n, float *p, const float *g, float *v, float lr,
                        float momentum, float wd, int nesterov);
cnn_status cpu_adam_step(void *ctx, size_t n, float *p, const float *g, float *m, float *v,
                         float lr, float b1, float b2, float eps, float wd, int decoupled,
                         int64_t t);

/* ---- cpu_act.c: activations, plain and fused with a residual add ---- */
/* CNN_ERR_ARG unless a is a known activation */
cnn_status cpu_check_act(cnn_act a, const char *op);
/* y = f(x) over n floats on the calling thread (x may equal y): the one kernel
 * every activation forward runs, so fused epilogues are bit-equal to act_fwd */
void cpu_act_fwd_block(cnn_act a, float alpha, size_t n, const float *x, float *y);
/* dx += dy f'(x) over n floats on the calling thread (act_bwd's kernel) */
void cpu_act_bwd_block(cnn_act a, float alpha, size_t n, const float *x, const float *dy,
                       float *dx);
cnn_status cpu_act_fwd(void *ctx, cnn_act a, float alpha, size_t n, const float *x, float *y);
cnn_status cpu_act_bwd(void *ctx, cnn_act a, float alpha, size_t n, const float *x,
                       const float *y, const float *dy, float *dx);
cnn_status cpu_add_act_fwd(void *ctx, size_t n, const float *a, const float *b, cnn_act act,
                           float alpha, float *y);
cnn_status cpu_add_act_bwd(void *ctx, size_t n, const float *y, const float *dy, cnn_act act,
                           float alpha, float *da, float *db);

/* ---- cpu_conv.c: our own conv engines (im2col+gemm, gemm-1x1, depthwise) ---- */
/* scratch bytes of cpu_own_conv_* for d with the current team size */
size_t cpu_own_conv_workspace(const cnn_conv_desc *d);
/* CNN_ERR_ARG (naming op) unless d is a valid conv */
cnn_status cpu_conv_check(const cnn_conv_desc *d, const char *op);
/* "im2col+gemm", "gemm-1x1" or "depthwise": what cpu_own_conv_* runs for d */
const char *cpu_own_conv_kind(const cnn_conv_desc *d);
cnn_status cpu_own_conv_fwd(void *ctx, const cnn_conv_desc *d, const float *x, const float *w,
                            const float *bias, float *y, void *ws, size_t ws_bytes);
cnn_status cpu_own_conv_fwd_act(void *ctx, const cnn_conv_desc *d, const float *x,
                                const float *w, const float *bias, cnn_act act, float alpha,
                                float *y, void *ws, size_t ws_bytes);
cnn_status cpu_own_conv_bwd_data(void *ctx, const cnn_conv_desc *d, const float *dy,
                                 const float *w, float *dx, void *ws, size_t ws_bytes);
cnn_status cpu_own_conv_bwd_filter(void *ctx, const cnn_conv_desc *d, const float *x,
                                   const float *dy, float *dw, float *db, void *ws,
                                   size_t ws_bytes);

/* ---- cpu_engine.c: the backend's ctx and the choice of conv engine per shape ----
 * ctx is a cpu_ctx (cnn_backend_cpu_create); the conv ops below run the engine
 * chosen for (shape, pass): ours (cpu_conv.c) or oneDNN's (cpu_dnnl.c). */
typedef struct cpu_ctx cpu_ctx;
cnn_status cpu_ctx_create(cpu_ctx **out);
void cpu_ctx_destroy(cpu_ctx *c);
cnn_status cpu_conv_fwd(void *ctx, const cnn_conv_desc *d, const float *x, const float *w,
                        const float *bias, float *y, void *ws, size_t ws_bytes);
cnn_status cpu_conv_fwd_act(void *ctx, const cnn_conv_desc *d, const float *x, const float *w,
                            const float *bias, cnn_act act, float alpha, float *y, void *ws,
                            size_t ws_bytes);
cnn_status cpu_conv_bwd_data(void *ctx, const cnn_conv_desc *d, const float *dy,
                             const float *w, float *dx, void *ws, size_t ws_bytes);
cnn_status cpu_conv_bwd_filter(void *ctx, const cnn_conv_desc *d, const float *x,
                               const float *dy, float *dw, float *db, void *ws,
                               size_t ws_bytes);
int cpu_conv_engines(void *ctx, const cnn_conv_desc *d, cnn_conv_dir dir, const char **names,
                     int max);
cnn_status cpu_conv_tune(void *ctx, const cnn_conv_desc *d, cnn_conv_dir dir, size_t ws_bytes);
const char *cpu_conv_engine(void *ctx, const cnn_conv_desc *d, cnn_conv_dir dir);
cnn_status cpu_set_option(void *ctx, const char *key, const char *value);
unsigned cpu_matrix_math(void *ctx);
/* scratch for every pass of d on the engines chosen for it (the backend op) */
size_t cpu_conv_workspace(void *ctx, const cnn_conv_desc *d);
/* at a step's start: the team size under contention (backend.h, cnn_cpu_adapt) */
void cpu_threads_adapt(void *ctx);
/* backend.h's team_info */
void cpu_team_info(void *ctx, int *team, int *full, double *reduced_s);
/* weights kept repacked for inference convs (wconst) are stale from now on */
void cpu_weights_changed(void *ctx);

/* ---- cpu_pool.c ---- */
cnn_status cpu_maxpool_fwd(void *ctx, const cnn_pool_desc *d, const float *x, float *y);
cnn_status cpu_maxpool_bwd(void *ctx, const cnn_pool_desc *d, const float *x, const float *dy,
                           float *dx);
cnn_status cpu_maxpool_bwd_set(void *ctx, const cnn_pool_desc *d, const float *x,
                               const float *dy, float *dx);
/* the in-input part [lo, hi) of a window of k cells starting at start in [0, size) */
void cpu_pool_clip(int start, int k, int size, int *lo, int *hi);
/* Windows that do not overlap vertically (stride_h >= kh): output row oy owns input
 * rows [cpu_pool_owned_row(d, oy), cpu_pool_owned_row(d, oy + 1)), which hold its
 * windows; rows no window reaches are owned too (row 0 on, up to h). */
int cpu_pool_owned_row(const cnn_pool_desc *d, int oy);
cnn_status cpu_bn_act_pool_fwd(void *ctx, const cnn_pool_desc *d, const float *x,
                               const float *gamma, const float *beta, float eps, cnn_act act,
                               float alpha, const float *rmean, const float *rvar,
                               float *save_mean, float *save_invstd, float *save_var,
                               uint8_t *sel, float *y);
cnn_status cpu_bn_act_pool_bwd(void *ctx, const cnn_pool_desc *d, const float *x,
                               const float *dy, const uint8_t *sel, const float *gamma,
                               const float *beta, const float *save_mean,
                               const float *save_invstd, cnn_act act, float alpha, float *dx,
                               float *dgamma, float *dbeta, int set);
cnn_status cpu_avgpool_fwd(void *ctx, const cnn_pool_desc *d, const float *x, float *y);
cnn_status cpu_avgpool_bwd(void *ctx, const cnn_pool_desc *d, const float *dy, float *dx);

/* ---- cpu_norm.c: batch norm and softmax cross-entropy ---- */
/* Per-channel scratch: `nd` double arrays and `nf` float arrays of c each, in one
 * block (on the stack for c <= 256); release with free(s.heap). */
typedef struct cpu_scratch {
  double stack_d[4 * 256];
  float stack_f[4 * 256];
  void *heap;
  double *d;
  float *f;
} cpu_scratch;
cnn_status cpu_scratch_get(cpu_scratch *s, int c, int nd, int nf, const char *op);
/* Batch-norm backward from the per-channel sums [sum g | sum g (x - mean)] of the
 * upstream gradient g: dgamma, dbeta, and the coefficients of
 * dx += a (g - b - (x - mean) k) (cpu_norm.c; bn_bwd and bn_act_bwd share it). */
void cpu_bn_bwd_coeffs(size_t rows, int c, const float *gamma, const float *save_invstd,
                       const double *sums, float *dgamma, float *dbeta, float *a, float *b,
                       float *k);
/* CNN_ERR_ARG unless rows >= 1 and c >= 1 */
cnn_status cpu_check_bn(size_t rows, int c, const char *op);
/* batch mean and biased variance per channel of x [rows, c], in double, in one
 * pass; var has room for 2c doubles (the second half is scratch) */
cnn_status cpu_bn_stats(size_t rows, int c, const float *x, double *mean, double *var,
                        const char *op);
/* y = act((x - mean) scale + shift) per channel, tile by tile (x may equal y) */
void cpu_bn_act_apply(size_t rows, int c, const float *x, const float *mean,
                      const float *scale, const float *shift, cnn_act act, float alpha,
                      float *y);
/* softmax cross-entropy checks (labels required) */
cnn_status cpu_check_xent(int n, int classes, const int32_t *labels, float smoothing,
                          const char *op);
/* p = softmax(inv_temp * logits) of one row; returns the log-sum-exp of the scaled
 * logits and their sum in *zsum */
double cpu_softmax_row(int classes, const float *logits, float inv_temp, float *p,
                       double *zsum);
/* g += scale (p - t) for one row, t = on at label and off elsewhere */
void cpu_xent_grad_row(int classes, const float *p, int label, float on, float off, float scale,
                       float *g);
cnn_status cpu_bn_fwd_train(void *ctx, size_t rows, int c, const float *x, const float *gamma,
                            const float *beta, float eps, float momentum, float *running_mean,
                            float *running_var, float *save_mean, float *save_invstd,
                            float *y);
cnn_status cpu_bn_fwd_infer(void *ctx, size_t rows, int c, const float *x, const float *gamma,
                            const float *beta, const float *running_mean,
                            const float *running_var, float eps, float *y);
cnn_status cpu_bn_bwd(void *ctx, size_t rows, int c, const float *x, const float *dy,
                      const float *gamma, const float *save_mean, const float *save_invstd,
                      float *dx, float *dgamma, float *dbeta);
cnn_status cpu_softmax_xent_fwd(void *ctx, int n, int classes, const float *logits,
                                const int32_t *labels, float smoothing, float *probs,
                                float *loss);
cnn_status cpu_softmax_xent_bwd(void *ctx, int n, int classes, const float *probs,
                                const int32_t *labels, float smoothing, float scale,
                                float *dlogits);


/* ---- cpu_bnact.c: batch norm fused with an activation, commit and fold ---- */
cnn_status cpu_bn_act_fwd_train(void *ctx, size_t rows, int c, const float *x,
                                const float *gamma, const float *beta, float eps, cnn_act act,
                                float alpha, float *save_mean, float *save_invstd,
                                float *save_var, float *y);
cnn_status cpu_bn_act_fwd_infer(void *ctx, size_t rows, int c, const float *x,
                                const float *gamma, const float *beta, const float *rmean,
                                const float *rvar, float eps, cnn_act act, float alpha,
                                float *y);
cnn_status cpu_bn_act_bwd(void *ctx, size_t rows, int c, const float *x, const float *dy,
                          const float *gamma, const float *beta, const float *save_mean,
                          const float *save_invstd, cnn_act act, float alpha, float *dx,
                          float *dgamma, float *dbeta);
cnn_status cpu_bn_act_bwd_set(void *ctx, size_t rows, int c, const float *x, const float *dy,
                              const float *gamma, const float *beta, const float *save_mean,
                              const float *save_invstd, cnn_act act, float alpha, float *dx,
                              float *dgamma, float *dbeta);
cnn_status cpu_bn_commit(void *ctx, int c, size_t rows, float momentum, const float *save_mean,
                         const float *save_var, float *running_mean, float *running_var,
                         const cnn_step_state *st);
cnn_status cpu_bn_fold(void *ctx, int kout, size_t per_k, const float *w, const float *bias,
                       const float *gamma, const float *beta, const float *rmean,
                       const float *rvar, float eps, float *wout, float *bout);

/* ---- cpu_program.c: step state, transfers, fused loss, optimizers on the state ---- */
cnn_status cpu_upload_async(void *ctx, void *dst, const void *src_host, size_t bytes);
cnn_status cpu_read_async(void *ctx, void *dst_host, const void *src, size_t bytes);
int cpu_read_done(void *ctx, int wait);
cnn_status cpu_step_begin(void *ctx, cnn_step_state *st, const cnn_sched_desc *sd);
cnn_status cpu_step_end(void *ctx, cnn_step_state *st, int train);
cnn_status cpu_metrics_reset(void *ctx, cnn_step_state *st);
cnn_status cpu_check_finite(void *ctx, size_t n, const float *x, cnn_step_state *st);
cnn_status cpu_softmax_xent_step(void *ctx, int n, int classes, const float *logits,
                                 float inv_temp, const int32_t *labels, float smoothing,
                                 float *probs, float *loss, float *dlogits, float dscale,
                                 cnn_step_state *st);
cnn_status cpu_sgd_step_st(void *ctx, size_t n, float *p, const float *g, float *v,
                           float momentum, float wd, int nesterov, const cnn_step_state *st);
cnn_status cpu_adam_step_st(void *ctx, size_t n, float *p, const float *g, float *m, float *v,
                            float b1, float b2, float eps, float wd, int decoupled,
                            const cnn_step_state *st);
cnn_status cpu_dropout_mask_st(void *ctx, size_t n, float p, uint64_t seed, uint64_t stream,
                               const cnn_step_state *st, float *mask);

/* ---- cpu_program.c: dtype conversion ---- */
cnn_status cpu_cast(void *ctx, size_t n, const void *src, cnn_dtype src_dt, void *dst,
                    cnn_dtype dst_dt);

/* ---- cpu_program.c: a dataset bound in backend memory ---- */
cnn_status cpu_gather_aug(void *ctx, int n, int h, int w, int c, const uint8_t *images,
                          const int32_t *labels, const int32_t *perm, const float *lut,
                          const cnn_augment *aug, float *x, int32_t *y, cnn_step_state *st);
cnn_status cpu_data_seek(void *ctx, cnn_step_state *st, int64_t pos, uint64_t key);

/* ---- cpu_crop_reorg.c: Darknet's crop and reorg ---- */
cnn_status cpu_crop_fwd(void *ctx, const cnn_crop_desc *d, const float *x, float *y,
                        const cnn_step_state *st);
cnn_status cpu_crop_bwd(void *ctx, const cnn_crop_desc *d, const float *dy, float *dx,
                        const cnn_step_state *st);
cnn_status cpu_reorg_fwd(void *ctx, const cnn_reorg_desc *d, const float *x, float *y);
cnn_status cpu_reorg_bwd(void *ctx, const cnn_reorg_desc *d, const float *dy, float *dx);

#endif
