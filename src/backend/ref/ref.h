/* Private header of the `ref` backend: the op functions each ref_*.c file defines
 * (gathered into the op table in ref_backend.c) and the argument checks they share.
 *
 * ref is the oracle every other backend is tested against, so it is written for
 * the reader: loops straight from each op's definition in backend/backend.h,
 * double accumulators for every sum, no threads, no BLAS, no tricks.
 *
 * Argument rule: every buffer is required unless backend.h says "if != NULL"
 * (conv bias, conv db); a NULL required buffer gives CNN_ERR_ARG. The memory ops
 * are no-ops for zero bytes whatever the pointers. */
#ifndef CNN_REF_H
#define CNN_REF_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "core/error.h"

/* Return CNN_ERR_ARG naming the op and the argument when `ptr` is NULL. */
#define REF_NEED(ptr, op)                                                          \
  do {                                                                             \
    if (!(ptr)) return cnn_error(CNN_ERR_ARG, "ref %s: %s is NULL", (op), #ptr);   \
  } while (0)

/* ---- ref_elementwise.c ---- */
cnn_status ref_fill(void *ctx, float *x, size_t n, float v);
cnn_status ref_axpby(void *ctx, size_t n, float alpha, const float *x, float beta, float *y);
cnn_status ref_add(void *ctx, size_t n, const float *a, const float *b, float *y);
cnn_status ref_mul(void *ctx, size_t n, const float *a, const float *b, float beta, float *y);
cnn_status ref_copy2d(void *ctx, size_t rows, size_t cols, const float *src, size_t src_stride,
                      float *dst, size_t dst_stride, int accumulate);
cnn_status ref_act_fwd(void *ctx, cnn_act a, float alpha, size_t n, const float *x, float *y);
cnn_status ref_act_bwd(void *ctx, cnn_act a, float alpha, size_t n, const float *x,
                       const float *y, const float *dy, float *dx);
cnn_status ref_shortcut_fwd(void *ctx, const cnn_shortcut_desc *d, const float *from,
                            float *out);
cnn_status ref_shortcut_bwd(void *ctx, const cnn_shortcut_desc *d, const float *dout,
                            float *dfrom);
cnn_status ref_dropout_mask(void *ctx, size_t n, float p, uint64_t seed, uint64_t offset,
                            float *mask);

/* ---- ref_dense.c ---- */
cnn_status ref_gemm(void *ctx, int trans_a, int trans_b, int m, int n, int k, float alpha,
                    const float *a, int lda, const float *b, int ldb, float beta, float *c,
                    int ldc);
cnn_status ref_bias_add(void *ctx, size_t rows, size_t cols, const float *bias, float *y);
cnn_status ref_bias_grad(void *ctx, size_t rows, size_t cols, const float *dy, float *db);

/* ---- ref_conv.c ---- */
size_t ref_conv_workspace(void *ctx, const cnn_conv_desc *d);
cnn_status ref_conv_fwd(void *ctx, const cnn_conv_desc *d, const float *x, const float *w,
                        const float *bias, float *y, void *ws, size_t ws_bytes);
cnn_status ref_conv_bwd_data(void *ctx, const cnn_conv_desc *d, const float *dy,
                             const float *w, float *dx, void *ws, size_t ws_bytes);
cnn_status ref_conv_bwd_filter(void *ctx, const cnn_conv_desc *d, const float *x,
                               const float *dy, float *dw, float *db, void *ws,
                               size_t ws_bytes);

/* ---- ref_pool.c ---- */
cnn_status ref_maxpool_fwd(void *ctx, const cnn_pool_desc *d, const float *x, float *y);
cnn_status ref_maxpool_bwd(void *ctx, const cnn_pool_desc *d, const float *x, const float *dy,
                           float *dx);
/* dx = 0, then maxpool_bwd (the definition of the overwriting form) */
cnn_status ref_maxpool_bwd_set(void *ctx, const cnn_pool_desc *d, const float *x,
                               const float *dy, float *dx);
cnn_status ref_avgpool_fwd(void *ctx, const cnn_pool_desc *d, const float *x, float *y);
cnn_status ref_avgpool_bwd(void *ctx, const cnn_pool_desc *d, const float *dy, float *dx);

/* ---- ref_norm.c ---- */
cnn_status ref_bn_fwd_train(void *ctx, size_t rows, int c, const float *x, const float *gamma,
                            const float *beta, float eps, float momentum, float *running_mean,
                            float *running_var, float *save_mean, float *save_invstd,
                            float *y);
cnn_status ref_bn_fwd_infer(void *ctx, size_t rows, int c, const float *x, const float *gamma,
                            const float *beta, const float *running_mean,
                            const float *running_var, float eps, float *y);
cnn_status ref_bn_bwd(void *ctx, size_t rows, int c, const float *x, const float *dy,
                      const float *gamma, const float *save_mean, const float *save_invstd,
                      float *dx, float *dgamma, float *dbeta);

/* ---- ref_train.c: loss and optimizers ---- */
cnn_status ref_softmax_xent_fwd(void *ctx, int n, int classes, const float *logits,
                                const int32_t *labels, float smoothing, float *probs,
                                float *loss);
cnn_status ref_softmax_xent_bwd(void *ctx, int n, int classes, const float *probs,
                                const int32_t *labels, float smoothing, float scale,
                                float *dlogits);
cnn_status ref_sgd_step(void *ctx, size_t n, float *p, const float *g, float *v, float lr,
                        float momentum, float wd, int nesterov);
cnn_status ref_adam_step(void *ctx, size_t n, float *p, const float *g, float *m, float *v,
                         float lr, float b1, float b2, float eps, float wd, int decoupled,
                         int64_t t);

/* ---- helpers shared between the ref files (each defined in the file named) ---- */
/* ref_backend.c: host memcpy; no-op for zero bytes whatever the pointers */
cnn_status ref_memcpy(const char *op, void *dst, const void *src, size_t bytes);
/* ref_elementwise.c: f(x) and f'(x) in double; CNN_ERR_ARG for an unknown act */
double ref_act_value(cnn_act a, double alpha, double x);
double ref_act_derivative(cnn_act a, double alpha, double x);
cnn_status ref_check_act(cnn_act a, const char *op);
/* ref_norm.c: c >= 1 and rows >= 1; two-pass mean and biased variance of channel
 * ch; BN backward of one channel for g = dy act'(z) (act LINEAR: g = dy) */
cnn_status ref_check_bn(size_t rows, int c, const char *op);
void ref_bn_channel_stats(size_t rows, int c, const float *x, int ch, double *mean,
                          double *var);
void ref_bn_bwd_channel(size_t rows, int c, int ch, const float *x, const float *dy,
                        double gamma, double beta, double mean, double invstd, cnn_act act,
                        double alpha, float *dx, float *dgamma, float *dbeta);
/* ref_train.c: shape / smoothing / label checks; smoothed target t_j */
cnn_status ref_check_xent(int n, int classes, const int32_t *labels, float smoothing,
                          const char *op);
double ref_xent_target(int j, int label, double smoothing, int classes);

/* ---- ref_program.c: the step-program ops ---- */
cnn_status ref_upload_async(void *ctx, void *dst, const void *src_host, size_t bytes);
cnn_status ref_read_async(void *ctx, void *dst_host, const void *src, size_t bytes);
int ref_read_done(void *ctx, int wait);
cnn_status ref_step_begin(void *ctx, cnn_step_state *st, const cnn_sched_desc *sd);
cnn_status ref_step_end(void *ctx, cnn_step_state *st, int train);
cnn_status ref_metrics_reset(void *ctx, cnn_step_state *st);
cnn_status ref_check_finite(void *ctx, size_t n, const float *x, cnn_step_state *st);
cnn_status ref_softmax_xent_step(void *ctx, int n, int classes, const float *logits,
                                 float inv_temp, const int32_t *labels, float smoothing,
                                 float *probs, float *loss, float *dlogits, float dscale,
                                 cnn_step_state *st);
cnn_status ref_sgd_step_st(void *ctx, size_t n, float *p, const float *g, float *v,
                           float momentum, float wd, int nesterov, const cnn_step_state *st);
cnn_status ref_adam_step_st(void *ctx, size_t n, float *p, const float *g, float *m, float *v,
                            float b1, float b2, float eps, float wd, int decoupled,
                            const cnn_step_state *st);
cnn_status ref_dropout_mask_st(void *ctx, size_t n, float p, uint64_t seed, uint64_t stream,
                               const cnn_step_state *st, float *mask);
cnn_status ref_bn_act_fwd_train(void *ctx, size_t rows, int c, const float *x,
                                const float *gamma, const float *beta, float eps, cnn_act act,
                                float alpha, float *save_mean, float *save_invstd,
                                float *save_var, float *y);
cnn_status ref_bn_act_fwd_infer(void *ctx, size_t rows, int c, const float *x,
                                const float *gamma, const float *beta, const float *rmean,
                                const float *rvar, float eps, cnn_act act, float alpha,
                                float *y);
cnn_status ref_bn_act_bwd(void *ctx, size_t rows, int c, const float *x, const float *dy,
                          const float *gamma, const float *beta, const float *save_mean,
                          const float *save_invstd, cnn_act act, float alpha, float *dx,
                          float *dgamma, float *dbeta);
/* window (n, oy, ox, ch)'s argmax in x as the window-local index r * kw + s (the
 * first cell holding the maximum), -1 for a window with no cell in the input */
int ref_pool_argmax_local(const cnn_pool_desc *d, const float *x, int n, int oy, int ox, int ch);
cnn_status ref_bn_act_pool_fwd(void *ctx, const cnn_pool_desc *d, const float *x,
                               const float *gamma, const float *beta, float eps, cnn_act act,
                               float alpha, const float *rmean, const float *rvar,
                               float *save_mean, float *save_invstd, float *save_var,
                               uint8_t *sel, float *y);
cnn_status ref_bn_act_pool_bwd(void *ctx, const cnn_pool_desc *d, const float *x,
                               const float *dy, const uint8_t *sel, const float *gamma,
                               const float *beta, const float *save_mean,
                               const float *save_invstd, cnn_act act, float alpha, float *dx,
                               float *dgamma, float *dbeta, int set);
/* dx = 0, then bn_act_bwd */
cnn_status ref_bn_act_bwd_set(void *ctx, size_t rows, int c, const float *x, const float *dy,
                              const float *gamma, const float *beta, const float *save_mean,
                              const float *save_invstd, cnn_act act, float alpha, float *dx,
                              float *dgamma, float *dbeta);
cnn_status ref_bn_commit(void *ctx, int c, size_t rows, float momentum, const float *save_mean,
                         const float *save_var, float *running_mean, float *running_var,
                         const cnn_step_state *st);
cnn_status ref_bn_fold(void *ctx, int kout, size_t per_k, const float *w, const float *bias,
                       const float *gamma, const float *beta, const float *rmean,
                       const float *rvar, float eps, float *wout, float *bout);
cnn_status ref_conv_fwd_act(void *ctx, const cnn_conv_desc *d, const float *x, const float *w,
                            const float *bias, cnn_act act, float alpha, float *y, void *ws,
                            size_t ws_bytes);
cnn_status ref_add_act_fwd(void *ctx, size_t n, const float *a, const float *b, cnn_act act,
                           float alpha, float *y);
cnn_status ref_add_act_bwd(void *ctx, size_t n, const float *y, const float *dy, cnn_act act,
                           float alpha, float *da, float *db);

/* ---- ref_crop_reorg.c: Darknet's crop and reorg ---- */
cnn_status ref_crop_fwd(void *ctx, const cnn_crop_desc *d, const float *x, float *y,
                        const cnn_step_state *st);
cnn_status ref_crop_bwd(void *ctx, const cnn_crop_desc *d, const float *dy, float *dx,
                        const cnn_step_state *st);
cnn_status ref_reorg_fwd(void *ctx, const cnn_reorg_desc *d, const float *x, float *y);
cnn_status ref_reorg_bwd(void *ctx, const cnn_reorg_desc *d, const float *dy, float *dx);

/* ---- ref_program.c: dtype conversion ---- */
cnn_status ref_cast(void *ctx, size_t n, const void *src, cnn_dtype src_dt, void *dst,
                    cnn_dtype dst_dt);

/* ---- ref_program.c: a dataset bound in backend memory ---- */
cnn_status ref_gather_aug(void *ctx, int n, int h, int w, int c, const uint8_t *images,
                          const int32_t *labels, const int32_t *perm, const float *lut,
                          const cnn_augment *aug, float *x, int32_t *y, cnn_step_state *st);
cnn_status ref_data_seek(void *ctx, cnn_step_state *st, int64_t pos, uint64_t key);

#endif
