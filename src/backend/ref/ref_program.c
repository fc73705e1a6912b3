/* ref: the step-program ops of backend.h ("==== step programs ===="). Each is the
 * definition written out, reusing the plain ref ops and helpers where an op is
 * "exactly X" (optimizers, dropout, conv) so the oracle cannot drift from itself.
 * Memory is host memory: the async transfers are memcpy and are done on return;
 * the step state is read and written in place. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ref/ref.h"
#include "core/bf16.h"
#include "data/augment.h"
#include "core/rng.h"
#include "core/schedule.h"

/* ---- asynchronous transfers: synchronous on ref ---- */

cnn_status ref_upload_async(void *ctx, void *dst, const void *src_host, size_t bytes) {
  return ref_memcpy("upload_async", dst, src_host, bytes);
}

cnn_status ref_read_async(void *ctx, void *dst_host, const void *src, size_t bytes) {
  return ref_memcpy("read_async", dst_host, src, bytes);
}

/* every read has landed by the time read_async returned */
int ref_read_done(void *ctx, int wait) { return 1; }

/* ---- step state ---- */

cnn_status ref_step_begin(void *ctx, cnn_step_state *st, const cnn_sched_desc *sd) {
  REF_NEED(st, "step_begin");
  st->nonfinite = 0;
  st->step_loss = 0;
  st->step_correct = 0;
  st->step_n = 0;
  if (sd) st->lr = cnn_sched_lr(sd, st->step);
  return CNN_OK;
}

cnn_status ref_step_end(void *ctx, cnn_step_state *st, int train) {
  REF_NEED(st, "step_end");
  if (st->step < 0)
    return cnn_error(CNN_ERR_ARG, "ref step_end: step %lld is negative", (long long)st->step);
  if (train) {
    /* the ring slot is the index of the step in flight, before any increment */
    st->loss_ring[st->step % CNN_LOSS_RING] =
        (float)(st->step_loss / (double)(st->step_n > 0 ? st->step_n : 1));
    if (st->nonfinite) {
      st->refused++;
      st->last_refused = st->step;
      return CNN_OK;
    }
  }
  st->seen += st->step_n;
  st->correct += st->step_correct;
  st->loss_sum += st->step_loss;
  if (train) st->step++;
  return CNN_OK;
}

cnn_status ref_metrics_reset(void *ctx, cnn_step_state *st) {
  REF_NEED(st, "metrics_reset");
  st->seen = 0;
  st->correct = 0;
  st->loss_sum = 0;
  return CNN_OK;
}

cnn_status ref_check_finite(void *ctx, size_t n, const float *x, cnn_step_state *st) {
  REF_NEED(x, "check_finite");
  REF_NEED(st, "check_finite");
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i])) {
      st->nonfinite |= CNN_NONFINITE_INPUT;
      break;
    }
  return CNN_OK;
}

/* ---- fused softmax cross-entropy ---- */

/* Per row, in double: z = inv_temp logits, log p = z - logsumexp(z). The top-1 hit
 * is decided on the probabilities as written (f32), first maximum, so every
 * backend that writes the same probs counts the same hits. Without labels, loss,
 * dlogits and st are not touched (and may be NULL). */
cnn_status ref_softmax_xent_step(void *ctx, int n, int classes, const float *logits,
                                 float inv_temp, const int32_t *labels, float smoothing,
                                 float *probs, float *loss, float *dlogits, float dscale,
                                 cnn_step_state *st) {
  const char *op = "softmax_xent_step";
  REF_NEED(logits, op);
  REF_NEED(probs, op);
  if (labels) {
    REF_NEED(loss, op);
    REF_NEED(st, op);
  }
  if (n < 0) return cnn_error(CNN_ERR_ARG, "ref %s: n=%d", op, n);
  CNN_TRY(ref_check_xent(labels ? n : 0, classes, labels, smoothing, op));
  double loss_sum = 0;
  int64_t hits = 0;
  for (int i = 0; i < n; i++) {
    const float *lg = logits + (size_t)i * classes;
    float *p = probs + (size_t)i * classes;
    double zmax = (double)inv_temp * lg[0];
    for (int j = 1; j < classes; j++) zmax = fmax(zmax, (double)inv_temp * lg[j]);
    double sum = 0;
    for (int j = 0; j < classes; j++) sum += exp((double)inv_temp * lg[j] - zmax);
    double lse = zmax + log(sum);
    for (int j = 0; j < classes; j++) p[j] = (float)exp((double)inv_temp * lg[j] - lse);
    if (!labels) continue;
    double l = 0;
    int best = 0;
    for (int j = 0; j < classes; j++) {
      double logp = (double)inv_temp * lg[j] - lse;
      double t = ref_xent_target(j, labels[i], smoothing, classes);
      l -= t * logp;
      if (p[j] > p[best]) best = j;
      if (dlogits) {
        size_t at = (size_t)i * classes + j;
        dlogits[at] = (float)(dlogits[at] + (double)dscale * (exp(logp) - t));
      }
    }
    loss[i] = (float)l;
    loss_sum += l;
    hits += best == labels[i];
  }
  if (labels) {
    st->step_loss += loss_sum;
    st->step_correct += hits;
    st->step_n += n;
    if (!isfinite(st->step_loss)) st->nonfinite |= CNN_NONFINITE_LOSS;
  }
  return CNN_OK;
}

/* ---- optimizers and dropout keyed by the step state ---- */

cnn_status ref_sgd_step_st(void *ctx, size_t n, float *p, const float *g, float *v,
                           float momentum, float wd, int nesterov, const cnn_step_state *st) {
  REF_NEED(p, "sgd_step_st");
  REF_NEED(g, "sgd_step_st");
  REF_NEED(v, "sgd_step_st");
  REF_NEED(st, "sgd_step_st");
  if (st->nonfinite) return CNN_OK; /* refused step: parameters untouched */
  return ref_sgd_step(ctx, n, p, g, v, st->lr, momentum, wd, nesterov);
}

cnn_status ref_adam_step_st(void *ctx, size_t n, float *p, const float *g, float *m, float *v,
                            float b1, float b2, float eps, float wd, int decoupled,
                            const cnn_step_state *st) {
  REF_NEED(p, "adam_step_st");
  REF_NEED(g, "adam_step_st");
  REF_NEED(m, "adam_step_st");
  REF_NEED(v, "adam_step_st");
  REF_NEED(st, "adam_step_st");
  if (st->nonfinite) return CNN_OK;
  return ref_adam_step(ctx, n, p, g, m, v, st->lr, b1, b2, eps, wd, decoupled, st->step + 1);
}

cnn_status ref_dropout_mask_st(void *ctx, size_t n, float p, uint64_t seed, uint64_t stream,
                               const cnn_step_state *st, float *mask) {
  REF_NEED(st, "dropout_mask_st");
  REF_NEED(mask, "dropout_mask_st");
  uint64_t step_seed = cnn_rng_u64(seed, (uint64_t)st->step * 4096 + stream);
  return ref_dropout_mask(ctx, n, p, step_seed, 0, mask);
}

/* ---- batch norm fused with an activation ---- */

cnn_status ref_bn_act_fwd_train(void *ctx, size_t rows, int c, const float *x,
                                const float *gamma, const float *beta, float eps, cnn_act act,
                                float alpha, float *save_mean, float *save_invstd,
                                float *save_var, float *y) {
  const char *op = "bn_act_fwd_train";
  CNN_TRY(ref_check_bn(rows, c, op));
  CNN_TRY(ref_check_act(act, op));
  REF_NEED(x, op);
  REF_NEED(gamma, op);
  REF_NEED(beta, op);
  REF_NEED(save_mean, op);
  REF_NEED(save_invstd, op);
  REF_NEED(save_var, op);
  REF_NEED(y, op);
  for (int ch = 0; ch < c; ch++) {
    double mean, var;
    ref_bn_channel_stats(rows, c, x, ch, &mean, &var);
    double invstd = 1.0 / sqrt(var + eps);
    for (size_t i = 0; i < rows; i++) {
      double z = gamma[ch] * (x[i * c + ch] - mean) * invstd + beta[ch];
      y[i * c + ch] = (float)ref_act_value(act, alpha, z);
    }
    save_mean[ch] = (float)mean;
    save_invstd[ch] = (float)invstd;
    save_var[ch] = (float)var;
  }
  return CNN_OK;
}

cnn_status ref_bn_act_fwd_infer(void *ctx, size_t rows, int c, const float *x,
                                const float *gamma, const float *beta, const float *rmean,
                                const float *rvar, float eps, cnn_act act, float alpha,
                                float *y) {
  const char *op = "bn_act_fwd_infer";
  if (c < 1) return cnn_error(CNN_ERR_ARG, "ref %s: %d channels", op, c);
  CNN_TRY(ref_check_act(act, op));
  REF_NEED(x, op);
  REF_NEED(gamma, op);
  REF_NEED(beta, op);
  REF_NEED(rmean, op);
  REF_NEED(rvar, op);
  REF_NEED(y, op);
  for (int ch = 0; ch < c; ch++) {
    double invstd = 1.0 / sqrt((double)rvar[ch] + eps);
    for (size_t i = 0; i < rows; i++) {
      double z = gamma[ch] * ((double)x[i * c + ch] - rmean[ch]) * invstd + beta[ch];
      y[i * c + ch] = (float)ref_act_value(act, alpha, z);
    }
  }
  return CNN_OK;
}

cnn_status ref_bn_act_bwd(void *ctx, size_t rows, int c, const float *x, const float *dy,
                          const float *gamma, const float *beta, const float *save_mean,
                          const float *save_invstd, cnn_act act, float alpha, float *dx,
                          float *dgamma, float *dbeta) {
  const char *op = "bn_act_bwd";
  CNN_TRY(ref_check_bn(rows, c, op));
  CNN_TRY(ref_check_act(act, op));
  REF_NEED(x, op);
  REF_NEED(dy, op);
  REF_NEED(gamma, op);
  REF_NEED(beta, op);
  REF_NEED(save_mean, op);
  REF_NEED(save_invstd, op);
  REF_NEED(dx, op);
  REF_NEED(dgamma, op);
  REF_NEED(dbeta, op);
  for (int ch = 0; ch < c; ch++)
    ref_bn_bwd_channel(rows, c, ch, x, dy, gamma[ch], beta[ch], save_mean[ch], save_invstd[ch],
                       act, alpha, dx, dgamma, dbeta);
  return CNN_OK;
}

cnn_status ref_bn_act_bwd_set(void *ctx, size_t rows, int c, const float *x, const float *dy,
                              const float *gamma, const float *beta, const float *save_mean,
                              const float *save_invstd, cnn_act act, float alpha, float *dx,
                              float *dgamma, float *dbeta) {
  CNN_TRY(ref_check_bn(rows, c, "bn_act_bwd_set"));
  REF_NEED(dx, "bn_act_bwd_set");
  memset(dx, 0, rows * (size_t)c * sizeof *dx);
  return ref_bn_act_bwd(ctx, rows, c, x, dy, gamma, beta, save_mean, save_invstd, act, alpha, dx,
                        dgamma, dbeta);
}

/* Batch norm + act + max pool, by definition: the full-size a = act(bn(x)) in a
 * temporary, then the plain pooling ops (backend.h) */
static cnn_status bnpool_check(const cnn_pool_desc *d, cnn_act act, const char *op) {
  REF_NEED(d, op);
  CNN_TRY(ref_check_act(act, op));
  if (d->n < 1 || d->h < 1 || d->w < 1 || d->c < 1 || d->kh < 1 || d->kw < 1 ||
      d->stride_h < d->kh || d->stride_w < d->kw || d->kh * d->kw > 255)
    return cnn_error(CNN_ERR_ARG, "ref %s: n %d, %dx%dx%d, window %dx%d stride %dx%d (windows "
                     "must not overlap and hold at most 255 cells)", op, d->n, d->h, d->w, d->c,
                     d->kh, d->kw, d->stride_h, d->stride_w);
  return CNN_OK;
}

cnn_status ref_bn_act_pool_fwd(void *ctx, const cnn_pool_desc *d, const float *x,
                               const float *gamma, const float *beta, float eps, cnn_act act,
                               float alpha, const float *rmean, const float *rvar,
                               float *save_mean, float *save_invstd, float *save_var,
                               uint8_t *sel, float *y) {
  const char *op = "bn_act_pool_fwd";
  CNN_TRY(bnpool_check(d, act, op));
  const int plain = gamma == NULL, save = plain ? sel != NULL : !rmean;
  if (save) REF_NEED(sel, op);
  size_t rows = (size_t)d->n * d->h * d->w;
  float *a = malloc(rows * d->c * sizeof *a);
  if (!a) return cnn_error(CNN_ERR_NOMEM, "ref %s: out of memory", op);
  cnn_status st =
      plain   ? ref_act_fwd(ctx, act, alpha, rows * d->c, x, a)
      : rmean ? ref_bn_act_fwd_infer(ctx, rows, d->c, x, gamma, beta, rmean, rvar, eps, act, alpha, a)
              : ref_bn_act_fwd_train(ctx, rows, d->c, x, gamma, beta, eps, act, alpha, save_mean,
                                     save_invstd, save_var, a);
  if (st == CNN_OK) st = ref_maxpool_fwd(ctx, d, a, y);
  for (int n = 0; st == CNN_OK && save && n < d->n; n++)
    for (int oy = 0; oy < d->oh; oy++)
      for (int ox = 0; ox < d->ow; ox++)
        for (int ch = 0; ch < d->c; ch++) {
          int li = ref_pool_argmax_local(d, a, n, oy, ox, ch);
          sel[(((size_t)n * d->oh + oy) * d->ow + ox) * d->c + ch] = (uint8_t)(li < 0 ? 255 : li);
        }
  free(a);
  return st;
}

cnn_status ref_bn_act_pool_bwd(void *ctx, const cnn_pool_desc *d, const float *x,
                               const float *dy, const uint8_t *sel, const float *gamma,
                               const float *beta, const float *save_mean,
                               const float *save_invstd, cnn_act act, float alpha, float *dx,
                               float *dgamma, float *dbeta, int set) {
  const char *op = "bn_act_pool_bwd";
  CNN_TRY(bnpool_check(d, act, op));
  REF_NEED(x, op);
  REF_NEED(dy, op);
  REF_NEED(sel, op);
  REF_NEED(dx, op);
  const size_t rows = (size_t)d->n * d->h * d->w, c = (size_t)d->c;
  float *ga = calloc(rows * c, sizeof *ga); /* the gradient of a: dy at each sel */
  if (!ga) return cnn_error(CNN_ERR_NOMEM, "ref %s: out of memory", op);
  cnn_status st = CNN_OK;
  for (int n = 0; st == CNN_OK && n < d->n; n++)
    for (int oy = 0; oy < d->oh; oy++)
      for (int ox = 0; ox < d->ow; ox++)
        for (size_t ch = 0; ch < c; ch++) {
          size_t o = (((size_t)n * d->oh + oy) * d->ow + ox) * c + ch;
          if (sel[o] == 255) continue;
          int iy = oy * d->stride_h - d->pad_h + sel[o] / d->kw;
          int ix = ox * d->stride_w - d->pad_w + sel[o] % d->kw;
          if (sel[o] >= d->kh * d->kw || iy < 0 || iy >= d->h || ix < 0 || ix >= d->w) {
            st = cnn_error(CNN_ERR_ARG, "ref %s: sel %d of output %zu is outside its window", op,
                           sel[o], o);
            break;
          }
          ga[(((size_t)n * d->h + iy) * d->w + ix) * c + ch] += dy[o];
        }
  if (st == CNN_OK && set) memset(dx, 0, rows * c * sizeof *dx);
  if (st == CNN_OK && !gamma) /* no batch norm: the activation's gradient alone */
    st = ref_act_bwd(ctx, act, alpha, rows * c, x, NULL, ga, dx);
  else if (st == CNN_OK)
    st = ref_bn_act_bwd(ctx, rows, d->c, x, ga, gamma, beta, save_mean, save_invstd, act, alpha,
                        dx, dgamma, dbeta);
  free(ga);
  return st;
}

/* The running-stat update bn_fwd_train does, from the saved batch statistics; the
 * unbiased variance of a single row is taken as its biased one (0), as there. */
cnn_status ref_bn_commit(void *ctx, int c, size_t rows, float momentum, const float *save_mean,
                         const float *save_var, float *running_mean, float *running_var,
                         const cnn_step_state *st) {
  const char *op = "bn_commit";
  CNN_TRY(ref_check_bn(rows, c, op));
  REF_NEED(save_mean, op);
  REF_NEED(save_var, op);
  REF_NEED(running_mean, op);
  REF_NEED(running_var, op);
  REF_NEED(st, op);
  if (st->nonfinite) return CNN_OK; /* a refused step must not move the running stats */
  double bessel = (double)rows / (double)(rows > 1 ? rows - 1 : 1);
  for (int ch = 0; ch < c; ch++) {
    running_mean[ch] =
        (float)((1.0 - momentum) * running_mean[ch] + (double)momentum * save_mean[ch]);
    running_var[ch] =
        (float)((1.0 - momentum) * running_var[ch] + (double)momentum * save_var[ch] * bessel);
  }
  return CNN_OK;
}

/* wout and bout may alias w and bias: each element is read before it is written */
cnn_status ref_bn_fold(void *ctx, int kout, size_t per_k, const float *w, const float *bias,
                       const float *gamma, const float *beta, const float *rmean,
                       const float *rvar, float eps, float *wout, float *bout) {
  const char *op = "bn_fold";
  if (kout < 1) return cnn_error(CNN_ERR_ARG, "ref %s: %d output channels", op, kout);
  REF_NEED(w, op);
  REF_NEED(gamma, op);
  REF_NEED(beta, op);
  REF_NEED(rmean, op);
  REF_NEED(rvar, op);
  REF_NEED(wout, op);
  REF_NEED(bout, op);
  for (int k = 0; k < kout; k++) {
    double s = gamma[k] / sqrt((double)rvar[k] + eps);
    for (size_t i = 0; i < per_k; i++)
      wout[(size_t)k * per_k + i] = (float)(w[(size_t)k * per_k + i] * s);
    double b = bias ? bias[k] : 0.0;
    bout[k] = (float)(beta[k] + (b - rmean[k]) * s);
  }
  return CNN_OK;
}

/* ---- convolution with an activation epilogue ---- */

/* the activation is applied to conv_fwd's (rounded) output: ref's conv is the
 * oracle already, and one more rounding is far inside every tolerance */
cnn_status ref_conv_fwd_act(void *ctx, const cnn_conv_desc *d, const float *x, const float *w,
                            const float *bias, cnn_act act, float alpha, float *y, void *ws,
                            size_t ws_bytes) {
  CNN_TRY(ref_check_act(act, "conv_fwd_act"));
  CNN_TRY(ref_conv_fwd(ctx, d, x, w, bias, y, ws, ws_bytes));
  size_t ny = (size_t)d->n * d->oh * d->ow * d->k;
  for (size_t i = 0; i < ny; i++) y[i] = (float)ref_act_value(act, alpha, y[i]);
  return CNN_OK;
}

/* ---- residual add with an activation ---- */

/* y may alias a or b: element i is read before it is written */
cnn_status ref_add_act_fwd(void *ctx, size_t n, const float *a, const float *b, cnn_act act,
                           float alpha, float *y) {
  const char *op = "add_act_fwd";
  CNN_TRY(ref_check_act(act, op));
  REF_NEED(a, op);
  REF_NEED(b, op);
  REF_NEED(y, op);
  for (size_t i = 0; i < n; i++) y[i] = (float)ref_act_value(act, alpha, (double)a[i] + b[i]);
  return CNN_OK;
}

/* f' from the output y = f(x). At the ReLU/leaky kink y == 0 (x == 0) this gives
 * the left derivative, as ref_act_derivative does from x; leaky assumes alpha > 0
 * (y > 0 iff x > 0). */
static double act_derivative_from_y(cnn_act a, double alpha, double y) {
  switch (a) {
    case CNN_ACT_LINEAR: return 1;
    case CNN_ACT_RELU: return y > 0 ? 1 : 0;
    case CNN_ACT_LEAKY: return y > 0 ? 1 : alpha;
    case CNN_ACT_SIGMOID: return y * (1 - y);
    case CNN_ACT_TANH: return 1 - y * y;
    case CNN_ACT_RAMP: return y > 0 ? 1.1 : 0.1; /* y > 0 iff x > 0 */
    case CNN_ACT_RELU6: return y > 0 && y < 6 ? 1 : 0; /* 0 < y < 6 iff 0 < x < 6 */
    default: return NAN; /* GELU is not invertible: rejected by the caller */
  }
}

cnn_status ref_add_act_bwd(void *ctx, size_t n, const float *y, const float *dy, cnn_act act,
                           float alpha, float *da, float *db) {
  const char *op = "add_act_bwd";
  CNN_TRY(ref_check_act(act, op));
  if (act == CNN_ACT_GELU)
    return cnn_error(CNN_ERR_ARG, "ref %s: GELU's derivative cannot be taken from its output",
                     op);
  REF_NEED(y, op);
  REF_NEED(dy, op);
  for (size_t i = 0; i < n; i++) {
    double g = (double)dy[i] * act_derivative_from_y(act, alpha, y[i]);
    if (da) da[i] = (float)(da[i] + g);
    if (db) db[i] = (float)(db[i] + g);
  }
  return CNN_OK;
}

/* ---- cast ---------------------------------------------------------------------- */

cnn_status ref_cast(void *ctx, size_t n, const void *src, cnn_dtype src_dt, void *dst,
                    cnn_dtype dst_dt) {
  if (n == 0) return CNN_OK;
  REF_NEED(src, "cast");
  REF_NEED(dst, "cast");
  if (src_dt == dst_dt && (src_dt == CNN_DT_F32 || src_dt == CNN_DT_BF16)) {
    memcpy(dst, src, n * (src_dt == CNN_DT_F32 ? 4 : 2));
    return CNN_OK;
  }
  if (src_dt == CNN_DT_F32 && dst_dt == CNN_DT_BF16) {
    for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = cnn_f32_to_bf16(((const float *)src)[i]);
    return CNN_OK;
  }
  if (src_dt == CNN_DT_BF16 && dst_dt == CNN_DT_F32) {
    for (size_t i = 0; i < n; i++) ((float *)dst)[i] = cnn_bf16_to_f32(((const uint16_t *)src)[i]);
    return CNN_OK;
  }
  return cnn_error(CNN_UNSUPPORTED, "ref cast: %d to %d is not supported", (int)src_dt, (int)dst_dt);
}

/* ---- data bound in backend memory: the host loader's own per-image transform ---- */

cnn_status ref_gather_aug(void *ctx, int n, int h, int w, int c, const uint8_t *images,
                          const int32_t *labels, const int32_t *perm, const float *lut,
                          const cnn_augment *aug, float *x, int32_t *y, cnn_step_state *st) {
  if (n == 0) return CNN_OK;
  REF_NEED(images, "gather_aug");
  REF_NEED(labels, "gather_aug");
  REF_NEED(perm, "gather_aug");
  REF_NEED(lut, "gather_aug");
  REF_NEED(aug, "gather_aug");
  REF_NEED(x, "gather_aug");
  REF_NEED(y, "gather_aug");
  REF_NEED(st, "gather_aug");
  if (n < 0 || h < 1 || w < 1 || c < 1 || c > 4)
    return cnn_error(CNN_ERR_ARG, "ref gather_aug: bad shape %dx%dx%dx%d", n, h, w, c);
  size_t px = (size_t)h * w * c;
  for (int i = 0; i < n; i++) {
    int64_t pos = st->data_pos + i;
    int idx = perm[pos];
    cnn_aug_draw d;
    cnn_aug_draw_for(st->data_key, pos, h, w, aug, &d);
    cnn_aug_image(images + (size_t)idx * px, h, w, c, lut, &d, x + (size_t)i * px);
    y[i] = labels[idx];
  }
  st->data_pos += n;
  return CNN_OK;
}

cnn_status ref_data_seek(void *ctx, cnn_step_state *st, int64_t pos, uint64_t key) {
  REF_NEED(st, "data_seek");
  if (pos < 0) return cnn_error(CNN_ERR_ARG, "ref data_seek: position %lld", (long long)pos);
  st->data_pos = pos;
  st->data_key = key;
  return CNN_OK;
}
