/* Batch size from memory: whether a batch's memory plan fits a backend's free
 * memory with a margin, and the largest multiple of 8 that does. */
#include <stdio.h>

#include "core/net.h"

#define BATCH_STEP 8
#define BATCH_MAX 65536

/* fit's figures for `batch` against fit->avail_bytes; 1 if it fits */
static cnn_status measure(cnn_net *net, cnn_backend *b, int batch, cnn_mode mode,
                          cnn_batch_fit *fit, int *fits) {
  cnn_plan_info p;
  CNN_TRY(cnn_net_plan_estimate(net, b, batch, mode, &p));
  fit->batch = batch;
  fit->plan_bytes = p.peak_bytes;
  fit->extra_bytes = fit->extra_fixed + fit->extra_per_image * (size_t)batch;
  size_t sum = fit->plan_bytes + fit->extra_bytes;
  fit->margin_bytes = sum / 100 * CNN_BATCH_MARGIN_PERCENT + CNN_BATCH_RESERVE;
  fit->need_bytes = sum + fit->margin_bytes;
  *fits = fit->need_bytes <= fit->avail_bytes;
  return CNN_OK;
}

static cnn_status start(cnn_net *net, cnn_backend *b, cnn_batch_fit *fit) {
  if (!net || !b || !fit) return cnn_error(CNN_ERR_ARG, "batch fit: NULL argument");
  if (net->built) return cnn_error(CNN_ERR_ARG, "batch fit: the net is built");
  return cnn_backend_mem_info(b, &fit->avail_bytes, &fit->total_bytes, &fit->source);
}

/* CNN_ERR_NOMEM naming fit's figures */
static cnn_status refuse(const cnn_backend *b, const cnn_batch_fit *f) {
  char need[32], plan[32], extra[32], margin[32], avail[32];
  cnn_human_bytes(need, sizeof need, (double)f->need_bytes);
  cnn_human_bytes(plan, sizeof plan, (double)f->plan_bytes);
  cnn_human_bytes(extra, sizeof extra, (double)f->extra_bytes);
  cnn_human_bytes(margin, sizeof margin, (double)f->margin_bytes);
  cnn_human_bytes(avail, sizeof avail, (double)f->avail_bytes);
  return cnn_error(CNN_ERR_NOMEM,
                   "batch %d does not fit: it needs %zu bytes (%s: memory plan %s, other "
                   "buffers %s, margin %s) but %s has %zu bytes (%s) available (%s)",
                   f->batch, f->need_bytes, need, plan, extra, margin, b->name, f->avail_bytes,
                   avail, f->source ? f->source : "?");
}

cnn_status cnn_net_batch_check(cnn_net *net, cnn_backend *b, int batch, cnn_mode mode,
                               cnn_batch_fit *fit) {
  CNN_TRY(start(net, b, fit));
  if (batch <= 0) batch = net->cfg_batch;
  int fits;
  CNN_TRY(measure(net, b, batch, mode, fit, &fits));
  return fits ? CNN_OK : refuse(b, fit);
}

cnn_status cnn_net_max_batch(cnn_net *net, cnn_backend *b, cnn_mode mode, int max_batch,
                             cnn_batch_fit *fit) {
  CNN_TRY(start(net, b, fit));
  if (max_batch <= 0 || max_batch > BATCH_MAX) max_batch = BATCH_MAX;
  /* bisection over k (batch = 8k): lo fits (or is 0), hi does not (or is past the cap) */
  int lo = 0, hi = max_batch / BATCH_STEP + 1, fits;
  if (hi < 2) hi = 2; /* a cap under 8 still tries 8 */
  while (hi - lo > 1) {
    int mid = lo + (hi - lo) / 2;
    CNN_TRY(measure(net, b, mid * BATCH_STEP, mode, fit, &fits));
    if (fits) lo = mid;
    else hi = mid;
  }
  /* the figures of the answer (or of batch 8, refused) */
  CNN_TRY(measure(net, b, (lo ? lo : 1) * BATCH_STEP, mode, fit, &fits));
  return lo ? CNN_OK : refuse(b, fit);
}
