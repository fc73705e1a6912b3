/* cpu: the step-program ops that are not layers: transfers, the step state, the
 * finiteness check, the fused softmax cross-entropy with its metrics, and the
 * optimizers and dropout keyed by the step state.
 *
 * Memory is host memory and every op finishes before it returns, so the
 * "asynchronous" transfers are copies and a read has always landed. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "core/bf16.h"
#include "data/augment.h"
#include "core/rng.h"

/* the finiteness test is a compare that NaN fails: let GCC vectorise it */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

/* ---- transfers ---- */

static cnn_status copy_bytes(const char *op, void *dst, const void *src, size_t bytes) {
  if (bytes == 0) return CNN_OK;
  CPU_NEED(dst, op);
  CPU_NEED(src, op);
  memmove(dst, src, bytes);
  return CNN_OK;
}

cnn_status cpu_upload_async(void *ctx, void *dst, const void *src_host, size_t bytes) {
  return copy_bytes("upload_async", dst, src_host, bytes);
}

cnn_status cpu_read_async(void *ctx, void *dst_host, const void *src, size_t bytes) {
  return copy_bytes("read_async", dst_host, src, bytes);
}

int cpu_read_done(void *ctx, int wait) { return 1; }

/* ---- step state ---- */

cnn_status cpu_step_begin(void *ctx, cnn_step_state *st, const cnn_sched_desc *sd) {
  CPU_NEED(st, "step_begin");
  cpu_threads_adapt(ctx);
  st->nonfinite = 0;
  st->step_loss = 0.0;
  st->step_correct = 0;
  st->step_n = 0;
  if (sd) st->lr = cnn_sched_lr(sd, st->step);
  return CNN_OK;
}

cnn_status cpu_step_end(void *ctx, cnn_step_state *st, int train) {
  CPU_NEED(st, "step_end");
  if (!train || !st->nonfinite) {
    st->seen += st->step_n;
    st->correct += st->step_correct;
    st->loss_sum += st->step_loss;
  }
  if (!train) return CNN_OK;
  int64_t n = st->step_n > 1 ? st->step_n : 1;
  /* steps never go negative; the cast keeps a corrupt one inside the ring */
  st->loss_ring[(uint64_t)st->step % CNN_LOSS_RING] = (float)(st->step_loss / (double)n);
  if (st->nonfinite) {
    st->refused++;
    st->last_refused = st->step;
  } else {
    st->step++;
  }
  return CNN_OK;
}

cnn_status cpu_metrics_reset(void *ctx, cnn_step_state *st) {
  CPU_NEED(st, "metrics_reset");
  st->seen = 0;
  st->correct = 0;
  st->loss_sum = 0.0;
  return CNN_OK;
}

/* No early exit: an OR over a vectorised compare costs a read of x, and the
 * flag is an integer OR, so the order of the threads does not matter. */
cnn_status cpu_check_finite(void *ctx, size_t n, const float *x, cnn_step_state *st) {
  CPU_NEED(x, "check_finite");
  CPU_NEED(st, "check_finite");
  int bad = 0;
#pragma omp parallel for simd schedule(static) reduction(| : bad) if (n >= CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) bad |= !(fabsf(x[i]) <= 3.40282347e38f); /* NaN fails too */
  if (bad) st->nonfinite |= CNN_NONFINITE_INPUT;
  return CNN_OK;
}

/* ---- fused softmax cross-entropy ---- */

/* at most this many row chunks: the per-row losses are summed in their chunk, the
 * chunk sums in chunk order, so step_loss is the same for any thread count */
#define CPU_XENT_CHUNKS 64

/* first maximum */
static int argmax_row(int classes, const float *p) {
  int best = 0;
  float bv = p[0];
  for (int j = 1; j < classes; j++)
    if (p[j] > bv) {
      bv = p[j];
      best = j;
    }
  return best;
}

cnn_status cpu_softmax_xent_step(void *ctx, int n, int classes, const float *logits,
                                 float inv_temp, const int32_t *labels, float smoothing,
                                 float *probs, float *loss, float *dlogits, float dscale,
                                 cnn_step_state *st) {
  const char *op = "softmax_xent_step";
  CPU_NEED(logits, op);
  CPU_NEED(probs, op);
  CPU_NEED(st, op);
  if (n < 0 || classes < 1)
    return cnn_error(CNN_ERR_ARG, "cpu %s: n=%d classes=%d", op, n, classes);
  const int par = n > 1 && (size_t)n * classes >= CPU_PAR_MIN / 8;
  if (!labels) { /* inference: probabilities only */
#pragma omp parallel for schedule(static) if (par)
    for (int i = 0; i < n; i++) {
      double zsum;
      cpu_softmax_row(classes, logits + (size_t)i * classes, inv_temp,
                      probs + (size_t)i * classes, &zsum);
    }
    return CNN_OK;
  }
  CPU_NEED(loss, op);
  CNN_TRY(cpu_check_xent(n, classes, labels, smoothing, op));
  /* as softmax_xent_fwd / _bwd */
  const double on = 1.0 - smoothing, off = (double)smoothing / classes;
  const float goff = (float)((double)smoothing / classes);
  const float gon = (float)(1.0 - smoothing + (double)smoothing / classes);
  const int64_t per = n > 0 ? (n - 1) / CPU_XENT_CHUNKS + 1 : 1;
  const int chunks = (int)((n + per - 1) / per);
  double part[CPU_XENT_CHUNKS];
  int64_t hits[CPU_XENT_CHUNKS];
#pragma omp parallel for schedule(static) if (par && chunks > 1)
  for (int q = 0; q < chunks; q++) {
    int i0 = (int)(q * per), i1 = (q + 1) * per < n ? (int)((q + 1) * per) : n;
    double lsum = 0.0;
    int64_t h = 0;
    for (int i = i0; i < i1; i++) { /* one row, all in cache */
      const float *z = logits + (size_t)i * classes;
      float *p = probs + (size_t)i * classes;
      double zsum;
      double lse = cpu_softmax_row(classes, z, inv_temp, p, &zsum);
      float li = (float)(lse - on * (inv_temp * z[labels[i]]) - off * zsum);
      loss[i] = li;
      lsum += li;
      h += argmax_row(classes, p) == labels[i];
      if (dlogits)
        cpu_xent_grad_row(classes, p, labels[i], gon, goff, dscale,
                          dlogits + (size_t)i * classes);
    }
    part[q] = lsum;
    hits[q] = h;
  }
  double total = 0.0;
  int64_t correct = 0;
  for (int q = 0; q < chunks; q++) {
    total += part[q];
    correct += hits[q];
  }
  st->step_loss += total;
  st->step_correct += correct;
  st->step_n += n;
  if (!isfinite(st->step_loss)) st->nonfinite |= CNN_NONFINITE_LOSS;
  return CNN_OK;
}

/* ---- optimizers and dropout on the step state ---- */

/* a refused step changes nothing; otherwise exactly sgd_step at the state's rate */
cnn_status cpu_sgd_step_st(void *ctx, size_t n, float *p, const float *g, float *v,
                           float momentum, float wd, int nesterov, const cnn_step_state *st) {
  CPU_NEED(st, "sgd_step_st");
  if (st->nonfinite) return CNN_OK;
  return cpu_sgd_step(ctx, n, p, g, v, st->lr, momentum, wd, nesterov);
}

cnn_status cpu_adam_step_st(void *ctx, size_t n, float *p, const float *g, float *m, float *v,
                            float b1, float b2, float eps, float wd, int decoupled,
                            const cnn_step_state *st) {
  CPU_NEED(st, "adam_step_st");
  if (st->nonfinite) return CNN_OK;
  return cpu_adam_step(ctx, n, p, g, m, v, st->lr, b1, b2, eps, wd, decoupled, st->step + 1);
}

/* a fresh mask per step and stream, the same on every backend */
cnn_status cpu_dropout_mask_st(void *ctx, size_t n, float p, uint64_t seed, uint64_t stream,
                               const cnn_step_state *st, float *mask) {
  CPU_NEED(st, "dropout_mask_st");
  uint64_t key = cnn_rng_u64(seed, (uint64_t)st->step * 4096u + stream);
  return cpu_dropout_mask(ctx, n, p, key, 0, mask);
}

/* ---- cast (f32 <-> bf16), split over threads; each element is independent ---- */

cnn_status cpu_cast(void *ctx, size_t n, const void *src, cnn_dtype src_dt, void *dst,
                    cnn_dtype dst_dt) {
  if (n == 0) return CNN_OK;
  if (!src || !dst) return cnn_error(CNN_ERR_ARG, "cpu cast: NULL buffer");
  int par = n >= CPU_PAR_MIN;
  if (src_dt == dst_dt && (src_dt == CNN_DT_F32 || src_dt == CNN_DT_BF16)) {
    memcpy(dst, src, n * (src_dt == CNN_DT_F32 ? 4 : 2));
  } else if (src_dt == CNN_DT_F32 && dst_dt == CNN_DT_BF16) {
    const float *s = src;
    uint16_t *d = dst;
#pragma omp parallel for simd schedule(static) if (par)
    for (size_t i = 0; i < n; i++) d[i] = cnn_f32_to_bf16(s[i]);
  } else if (src_dt == CNN_DT_BF16 && dst_dt == CNN_DT_F32) {
    const uint16_t *s = src;
    float *d = dst;
#pragma omp parallel for simd schedule(static) if (par)
    for (size_t i = 0; i < n; i++) d[i] = cnn_bf16_to_f32(s[i]);
  } else {
    return cnn_error(CNN_UNSUPPORTED, "cpu cast: %d to %d is not supported", (int)src_dt,
                     (int)dst_dt);
  }
  return CNN_OK;
}

/* ---- data bound in backend memory: the host loader's per-image transform, over
 * images in parallel (each image is independent, so threads change nothing) ---- */

cnn_status cpu_gather_aug(void *ctx, int n, int h, int w, int c, const uint8_t *images,
                          const int32_t *labels, const int32_t *perm, const float *lut,
                          const cnn_augment *aug, float *x, int32_t *y, cnn_step_state *st) {
  if (n == 0) return CNN_OK;
  if (!images || !labels || !perm || !lut || !aug || !x || !y || !st)
    return cnn_error(CNN_ERR_ARG, "cpu gather_aug: NULL argument");
  if (n < 0 || h < 1 || w < 1 || c < 1 || c > 4)
    return cnn_error(CNN_ERR_ARG, "cpu gather_aug: bad shape %dx%dx%dx%d", n, h, w, c);
  size_t px = (size_t)h * w * c;
  int64_t pos0 = st->data_pos;
  uint64_t key = st->data_key;
#pragma omp parallel for schedule(static) if ((size_t)n * px >= CPU_PAR_MIN)
  for (int i = 0; i < n; i++) {
    int idx = perm[pos0 + i];
    cnn_aug_draw d;
    cnn_aug_draw_for(key, pos0 + i, h, w, aug, &d);
    cnn_aug_image(images + (size_t)idx * px, h, w, c, lut, &d, x + (size_t)i * px);
    y[i] = labels[idx];
  }
  st->data_pos = pos0 + n;
  return CNN_OK;
}

cnn_status cpu_data_seek(void *ctx, cnn_step_state *st, int64_t pos, uint64_t key) {
  if (!st) return cnn_error(CNN_ERR_ARG, "cpu data_seek: NULL state");
  if (pos < 0) return cnn_error(CNN_ERR_ARG, "cpu data_seek: position %lld", (long long)pos);
  st->data_pos = pos;
  st->data_key = key;
  return CNN_OK;
}
