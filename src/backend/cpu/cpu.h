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
 * filter grads sum per-thread-count runs of tiles the same way.
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
 *   mode 1: out[j] = sum_r (a[r, j] - center[j])^2
 *   mode 2: out[j] = sum_r a[r, j]  and  out[cols + j] = sum_r a[r, j] (b[r, j] - center[j])
 * Deterministic for any thread count (fixed row chunks, combined in order). */
cnn_status cpu_colsum(size_t rows, size_t cols, size_t ld, const float *a, const float *b,
                      const double *center, int mode, double *out, const char *op);
/* acc[j] += sum_r a[r, j] for a [rows, cols] matrix with row stride ld, on the
 * calling thread (for use inside a parallel region) */
void cpu_colsum_add(size_t rows, size_t cols, size_t ld, const float *a, double *acc);

/* ---- cpu_backend.c: elementwise, dense, shortcut, dropout, optimizers ---- */
cnn_status cpu_fill(void *ctx, float *x, size_t n, float v);
cnn_status cpu_axpby(void *ctx, size_t n, float alpha, const float *x, float beta, float *y);
cnn_status cpu_add(void *ctx, size_t n, const float *a, const float *b, float *y);
cnn_status cpu_mul(void *ctx, size_t n, const float *a, const float *b, float beta, float *y);
cnn_status cpu_copy2d(void *ctx, size_t rows, size_t cols, const float *src, size_t src_stride,
                      float *dst, size_t dst_stride, int accumulate);
cnn_status cpu_act_fwd(void *ctx, cnn_act a, float alpha, size_t n, const float *x, float *y);
cnn_status cpu_act_bwd(void *ctx, cnn_act a, float alpha, size_t n, const float *x,
                       const float *y, const float *dy, float *dx);
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

/* ---- cpu_conv.c ---- */
size_t cpu_conv_workspace(void *ctx, const cnn_conv_desc *d);
cnn_status cpu_conv_fwd(void *ctx, const cnn_conv_desc *d, const float *x, const float *w,
                        const float *bias, float *y, void *ws, size_t ws_bytes);
cnn_status cpu_conv_bwd_data(void *ctx, const cnn_conv_desc *d, const float *dy,
                             const float *w, float *dx, void *ws, size_t ws_bytes);
cnn_status cpu_conv_bwd_filter(void *ctx, const cnn_conv_desc *d, const float *x,
                               const float *dy, float *dw, float *db, void *ws,
                               size_t ws_bytes);

/* ---- cpu_pool.c ---- */
cnn_status cpu_maxpool_fwd(void *ctx, const cnn_pool_desc *d, const float *x, float *y);
cnn_status cpu_maxpool_bwd(void *ctx, const cnn_pool_desc *d, const float *x, const float *dy,
                           float *dx);
cnn_status cpu_avgpool_fwd(void *ctx, const cnn_pool_desc *d, const float *x, float *y);
cnn_status cpu_avgpool_bwd(void *ctx, const cnn_pool_desc *d, const float *dy, float *dx);

/* ---- cpu_norm.c: batch norm and softmax cross-entropy ---- */
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

#endif
