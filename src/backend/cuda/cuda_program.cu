/* CUDA ops of compiled step programs (backend.h, "step programs"): the
 * device-side step state (step_begin / step_end / metrics_reset / check_finite),
 * the fused softmax cross-entropy with its step metrics, asynchronous transfers
 * (pinned staging ring, event-tracked reads) and CUDA graph capture / replay.
 *
 * Everything here that a step program issues is graph-capturable: no allocation,
 * no synchronisation, no host read of device data; per-step values (lr, step,
 * the nonfinite flag) are read by the kernels from the step state in device
 * memory, so one captured graph serves every step. Reductions have a fixed
 * layout and order (no float atomics): results are reproducible run to run.
 * The fused batch norm, optimizer, dropout, add+act and conv epilogue ops live
 * next to the kernels they extend (cuda_norm.cu, cuda_optim.cu,
 * cuda_elementwise.cu, cuda_conv.cu). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_device.cuh"

/* ---- step state ------------------------------------------------------------------- */

/* one thread: the per-step fields are reset; lr from the schedule at st->step
 * (computed on the device: under a graph the host cannot supply it) */
static __global__ void k_step_begin(cnn_step_state *st, cnn_sched_desc sd, int has_sd) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  st->nonfinite = 0;
  st->step_loss = 0.0;
  st->step_correct = 0;
  st->step_n = 0;
  if (has_sd) st->lr = cnn_sched_lr(&sd, st->step);
}

static __global__ void k_step_end(cnn_step_state *st, int train) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  const int64_t s = st->step;
  if (train) {
    const int64_t n = st->step_n > 1 ? st->step_n : 1;
    const int64_t slot = ((s % CNN_LOSS_RING) + CNN_LOSS_RING) % CNN_LOSS_RING;
    st->loss_ring[slot] = (float)(st->step_loss / (double)n);
    if (st->nonfinite) {
      st->refused += 1;
      st->last_refused = s;
      return;
    }
    st->step = s + 1;
  }
  st->seen += st->step_n;
  st->correct += st->step_correct;
  st->loss_sum += st->step_loss;
}

static __global__ void k_metrics_reset(cnn_step_state *st) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  st->seen = 0;
  st->correct = 0;
  st->loss_sum = 0.0;
}

/* integer OR: the result does not depend on the order of the atomics */
static __global__ void k_check_finite(size_t n, const float *__restrict__ x,
                                      cnn_step_state *st) {
  int bad = 0;
  GRID_STRIDE(i, n) bad |= !isfinite(x[i]);
  if (__syncthreads_or(bad) && threadIdx.x == 0) atomicOr(&st->nonfinite, CNN_NONFINITE_INPUT);
}

extern "C" cnn_status cnn_cuda_step_begin(void *vctx, cnn_step_state *st,
                                          const cnn_sched_desc *sd) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  cnn_sched_desc d;
  if (!st) return cnn_error(CNN_ERR_ARG, "cuda step_begin: step state is NULL");
  memset(&d, 0, sizeof d);
  if (sd) d = *sd; /* by value: the schedule is fixed for the run, the step is not */
  k_step_begin<<<1, 32, 0, ctx->stream>>>(st, d, sd != NULL);
  LAUNCH_CHECK("k_step_begin");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_step_end(void *vctx, cnn_step_state *st, int train) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (!st) return cnn_error(CNN_ERR_ARG, "cuda step_end: step state is NULL");
  k_step_end<<<1, 32, 0, ctx->stream>>>(st, train != 0);
  LAUNCH_CHECK("k_step_end");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_metrics_reset(void *vctx, cnn_step_state *st) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (!st) return cnn_error(CNN_ERR_ARG, "cuda metrics_reset: step state is NULL");
  k_metrics_reset<<<1, 32, 0, ctx->stream>>>(st);
  LAUNCH_CHECK("k_metrics_reset");
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_check_finite(void *vctx, size_t n, const float *x,
                                            cnn_step_state *st) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (!st) return cnn_error(CNN_ERR_ARG, "cuda check_finite: step state is NULL");
  if (n == 0) return CNN_OK;
  if (!x) return cnn_error(CNN_ERR_ARG, "cuda check_finite: x is NULL");
  k_check_finite<<<cnn_cuda_blocks(ctx, n), CNN_CUDA_THREADS, 0, ctx->stream>>>(n, x, st);
  LAUNCH_CHECK("k_check_finite");
  return CNN_OK;
}

/* ---- fused softmax cross-entropy ------------------------------------------------------ */

#define SX_WARPS 8      /* rows per block: one warp each */
#define SX_FINAL 1024   /* threads of the single-block final reduction (power of 2) */

/* One warp per row (probs and dlogits may alias logits: each element is read and
 * then written by one lane, after the warp-synchronous max and sum passes).
 * z = inv_temp logits; probs = softmax(z) via log-sum-exp. With
 * labels: loss = -sum_j t_j log p_j (NaN for a label outside [0, C)), top-1 hit
 * (first maximum of the probabilities), dlogits += dscale (p - t) if dlogits;
 * then per block: the 8 rows' losses (in double, warp order) and hits go to
 * part_loss / part_hit[blockIdx.x] for the fixed-order final reduction. */
static __global__ void __launch_bounds__(SX_WARPS * 32)
    k_softmax_step(int n, int C, const float *logits, float inv_temp,
                   const int32_t *__restrict__ labels, float smoothing, float *probs,
                   float *__restrict__ loss, float *dlogits, float dscale,
                   double *__restrict__ part_loss, int *__restrict__ part_hit) {
  __shared__ float s_loss[SX_WARPS];
  __shared__ int s_hit[SX_WARPS];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int row = blockIdx.x * SX_WARPS + warp;
  float row_loss = 0.0f;
  int row_hit = 0;
  if (row < n) { /* warp-uniform: every shuffle below has all 32 lanes */
    const float *z = logits + (size_t)row * C;
    float mx = -INFINITY;
    for (int j = lane; j < C; j += 32) mx = fmaxf(mx, inv_temp * z[j]);
    mx = warp_max(mx);
    float s = 0.0f;
    for (int j = lane; j < C; j += 32) s += expf(inv_temp * z[j] - mx);
    s = warp_sum(s);
    const float log_s = logf(s);
    const int label = labels ? labels[row] : -1;
    const float t_off = smoothing / (float)C, t_on = 1.0f - smoothing;
    float acc = 0.0f, best = -INFINITY;
    int best_j = C; /* C: no probability of this lane compared greater */
    for (int j = lane; j < C; j += 32) {
      const float logp = (inv_temp * z[j] - mx) - log_s;
      const float p = expf(logp);
      if (probs) probs[(size_t)row * C + j] = p;
      if (labels) {
        const float t = t_off + (j == label ? t_on : 0.0f);
        acc += t * logp;
        if (p > best) { /* lanes walk j upwards: strict > keeps the first maximum */
          best = p;
          best_j = j;
        }
        if (dlogits) dlogits[(size_t)row * C + j] += dscale * (p - t);
      }
    }
    if (labels) {
      acc = warp_sum(acc);
      /* argmax across lanes: larger wins, ties go to the smaller index */
      for (int o = 16; o > 0; o >>= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, o);
        const int oj = __shfl_xor_sync(0xffffffffu, best_j, o);
        if (ob > best || (ob == best && oj < best_j)) {
          best = ob;
          best_j = oj;
        }
      }
      best_j = __shfl_sync(0xffffffffu, best_j, 0);
      /* no probability compared greater (an all-NaN row): ref and cpu start their
       * scan at j = 0 and keep it, so class 0 is the argmax there too */
      if (best_j == C) best_j = 0;
      const bool valid = label >= 0 && label < C;
      row_loss = valid ? -acc : NAN;
      row_hit = valid && best_j == label;
      if (lane == 0 && loss) loss[row] = row_loss;
    }
  }
  if (!part_loss) return; /* no labels: no metrics (uniform: no barrier reached) */
  if (lane == 0) {
    s_loss[warp] = row_loss;
    s_hit[warp] = row_hit;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double a = 0.0;
    int h = 0;
    for (int w = 0; w < SX_WARPS; w++) {
      a += (double)s_loss[w];
      h += s_hit[w];
    }
    part_loss[blockIdx.x] = a;
    part_hit[blockIdx.x] = h;
  }
}

/* one block of SX_FINAL threads: strided sums in order, then a fixed tree */
static __global__ void __launch_bounds__(SX_FINAL)
    k_softmax_step_final(unsigned nparts, const double *__restrict__ part_loss,
                         const int *__restrict__ part_hit, int n, cnn_step_state *st) {
  __shared__ double s_l[SX_FINAL];
  __shared__ long long s_h[SX_FINAL];
  const unsigned t = threadIdx.x;
  double a = 0.0;
  long long h = 0;
  for (unsigned i = t; i < nparts; i += SX_FINAL) {
    a += part_loss[i];
    h += part_hit[i];
  }
  s_l[t] = a;
  s_h[t] = h;
  __syncthreads();
  for (unsigned o = SX_FINAL / 2; o > 0; o >>= 1) {
    if (t < o) {
      s_l[t] += s_l[t + o];
      s_h[t] += s_h[t + o];
    }
    __syncthreads();
  }
  if (t == 0) {
    st->step_loss += s_l[0];
    st->step_correct += (int64_t)s_h[0];
    st->step_n += n;
    if (!isfinite(st->step_loss)) st->nonfinite |= CNN_NONFINITE_LOSS;
  }
}

extern "C" cnn_status cnn_cuda_softmax_xent_step(void *vctx, int n, int classes,
                                                 const float *logits, float inv_temp,
                                                 const int32_t *labels, float smoothing,
                                                 float *probs, float *loss, float *dlogits,
                                                 float dscale, cnn_step_state *st) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (n < 0 || classes < 1)
    return cnn_error(CNN_ERR_ARG, "cuda softmax_xent_step: n=%d classes=%d", n, classes);
  if (!(smoothing >= 0.0f && smoothing <= 1.0f))
    return cnn_error(CNN_ERR_ARG, "cuda softmax_xent_step: label smoothing %g is not in [0, 1]",
                     smoothing);
  if (labels && !st)
    return cnn_error(CNN_ERR_ARG, "cuda softmax_xent_step: labels without a step state");
  if (n == 0) return CNN_OK; /* no rows: step_n += 0, loss sum unchanged */
  if (!logits) return cnn_error(CNN_ERR_ARG, "cuda softmax_xent_step: logits is NULL");
  if (!labels && !probs) return CNN_OK; /* nothing to write */
  const unsigned blocks = (unsigned)((n + SX_WARPS - 1) / SX_WARPS);
  double *part_loss = NULL;
  int *part_hit = NULL;
  if (labels) {
    const size_t lb = cnn_cuda_align256((size_t)blocks * sizeof(double));
    void *s = NULL;
    CNN_TRY(cnn_cuda_scratch(ctx, lb + (size_t)blocks * sizeof(int), &s));
    part_loss = (double *)s;
    part_hit = (int *)((char *)s + lb);
  }
  k_softmax_step<<<blocks, SX_WARPS * 32, 0, ctx->stream>>>(
      n, classes, logits, inv_temp, labels, smoothing, probs, labels ? loss : NULL,
      labels ? dlogits : NULL, dscale, part_loss, part_hit);
  LAUNCH_CHECK("k_softmax_step");
  if (labels) {
    k_softmax_step_final<<<1, SX_FINAL, 0, ctx->stream>>>(blocks, part_loss, part_hit, n, st);
    LAUNCH_CHECK("k_softmax_step_final");
  }
  return CNN_OK;
}

/* ---- asynchronous transfers -------------------------------------------------------------- */

/* Host data goes through a ring of CNN_CUDA_STAGE_SLOTS pinned buffers: the caller's
 * buffer is copied into the next slot (so it may be reused at once) and the DMA is
 * queued on the compute stream, ordered before every later op; the slot's event
 * marks when the DMA has read it. A slot is reused only after its event, so up to
 * SLOTS uploads are in flight. Refused under capture: the graph would replay the
 * DMA from a slot the ring has since refilled. */
extern "C" cnn_status cnn_cuda_upload_async(void *vctx, void *dst, const void *src_host,
                                            size_t bytes) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (ctx->capturing) return cnn_cuda_refuse_in_capture(ctx, "upload_async");
  if (bytes == 0) return CNN_OK;
  if (!dst || !src_host) return cnn_error(CNN_ERR_ARG, "cuda upload_async: NULL buffer");
  cnn_cuda_stage *sl = &ctx->stage[ctx->stage_next];
  if (sl->pending) { /* the DMA of this slot's previous upload must have read it */
    CUDA_CHECK(cudaEventSynchronize(sl->done));
    sl->pending = 0;
  }
  if (sl->bytes < bytes) {
    size_t want = cnn_cuda_align256(bytes + bytes / 4);
    void *p = NULL;
    if (sl->host) {
      void *old = sl->host;
      sl->host = NULL;
      sl->bytes = 0;
      CUDA_CHECK(cudaFreeHost(old));
    }
    if (cudaHostAlloc(&p, want, cudaHostAllocDefault) != cudaSuccess) {
      (void)cudaGetLastError();
      return cnn_error(CNN_ERR_NOMEM, "%s:%d: cudaHostAlloc(%zu bytes) for upload staging failed",
                       __FILE__, __LINE__, want);
    }
    sl->host = p;
    sl->bytes = want;
  }
  memcpy(sl->host, src_host, bytes);
  CUDA_CHECK(cudaMemcpyAsync(dst, sl->host, bytes, cudaMemcpyHostToDevice, ctx->stream));
  CUDA_CHECK(cudaEventRecord(sl->done, ctx->stream));
  sl->pending = 1;
  ctx->stage_next = (ctx->stage_next + 1) % CNN_CUDA_STAGE_SLOTS;
  if (ctx->sync_debug) CNN_TRY(cnn_cuda_debug_sync(ctx, "upload_async", __FILE__, __LINE__));
  return CNN_OK;
}

/* One outstanding read, tracked by ctx->read_ev. Under capture the copy becomes a
 * graph node and the event an external event-record node (cudaEventRecordExternal),
 * so every replay records it after its copy and read_done works after graph_launch. */
extern "C" cnn_status cnn_cuda_read_async(void *vctx, void *dst_host, const void *src,
                                          size_t bytes) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (bytes == 0) return CNN_OK;
  if (!dst_host || !src) return cnn_error(CNN_ERR_ARG, "cuda read_async: NULL buffer");
  CUDA_CHECK(cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, ctx->stream));
  if (ctx->capturing)
    CUDA_CHECK(cudaEventRecordWithFlags(ctx->read_ev, ctx->stream, cudaEventRecordExternal));
  else
    CUDA_CHECK(cudaEventRecord(ctx->read_ev, ctx->stream));
  ctx->read_pending = 1;
  ctx->read_in_capture = ctx->capturing;
  if (ctx->sync_debug) CNN_TRY(cnn_cuda_debug_sync(ctx, "read_async", __FILE__, __LINE__));
  return CNN_OK;
}

/* 1: landed (or nothing outstanding), 0: still in flight. A failure is left in
 * cnn_last_error() and reported as landed, so that a waiting caller cannot spin. */
extern "C" int cnn_cuda_read_done(void *vctx, int wait) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  cudaError_t e;
  if (!ctx->read_pending) return 1;
  /* a read recorded inside the open capture only runs when the graph is launched:
   * there is nothing in flight to wait for, and its event may not be queried yet */
  if (ctx->capturing && ctx->read_in_capture) return 1;
  e = wait ? cudaEventSynchronize(ctx->read_ev) : cudaEventQuery(ctx->read_ev);
  if (e == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return 0;
  }
  ctx->read_pending = 0;
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    (void)cnn_error(CNN_ERR_DEVICE, "%s:%d: read_done: %s", __FILE__, __LINE__,
                    cudaGetErrorString(e));
  }
  return 1;
}

/* ---- CUDA graphs -------------------------------------------------------------------------- */

extern "C" cnn_status cnn_cuda_capture_begin(void *vctx) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (ctx->capturing) return cnn_error(CNN_ERR_ARG, "cuda capture_begin: a capture is already open");
  /* capture needs a created stream; the legacy default stream (0) cannot be captured */
  if (ctx->stream == 0 || ctx->stream == cudaStreamLegacy || ctx->stream == cudaStreamPerThread)
    return cnn_error(CNN_ERR_ARG, "cuda capture_begin: the backend stream is a default stream");
  CUDA_CHECK(cudaStreamIsCapturing(ctx->stream, &cs));
  if (cs != cudaStreamCaptureStatusNone)
    return cnn_error(CNN_ERR_ARG, "cuda capture_begin: the stream is already being captured");
  CUDA_CHECK(cudaStreamBeginCapture(ctx->stream, cudaStreamCaptureModeThreadLocal));
  ctx->capturing = 1;
  ctx->capture_error = 0;
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_capture_end(void *vctx, void **graph) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  cudaGraph_t g = NULL;
  cudaGraphExec_t exec = NULL;
  cudaError_t e;
  if (graph) *graph = NULL;
  if (!ctx->capturing) return cnn_error(CNN_ERR_ARG, "cuda capture_end: no capture is open");
  e = cudaStreamEndCapture(ctx->stream, &g);
  ctx->capturing = 0;
  /* Buffers freed during the capture were parked; a graph made here may still
   * reference them, so they are released only on the paths that make no graph
   * (with a graph, graphs_live > 0 keeps them until graph_free). */
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    if (g && cudaGraphDestroy(g) != cudaSuccess) (void)cudaGetLastError();
    cnn_cuda_release_deferred(ctx);
    return cnn_error(CNN_ERR_DEVICE, "%s:%d: cudaStreamEndCapture: %s%s", __FILE__, __LINE__,
                     cudaGetErrorString(e),
                     ctx->capture_error ? " (an op was refused during the capture)" : "");
  }
  if (ctx->capture_error || !graph) {
    if (g && cudaGraphDestroy(g) != cudaSuccess) (void)cudaGetLastError();
    ctx->capture_error = 0;
    cnn_cuda_release_deferred(ctx);
    if (!graph) return cnn_error(CNN_ERR_ARG, "cuda capture_end: graph is NULL");
    return cnn_error(CNN_ERR_ARG,
                     "cuda capture_end: an op was refused during the capture; no graph made");
  }
  e = cudaGraphInstantiate(&exec, g, 0);
  if (cudaGraphDestroy(g) != cudaSuccess) (void)cudaGetLastError(); /* exec keeps its copy */
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    cnn_cuda_release_deferred(ctx);
    return cnn_error(CNN_ERR_DEVICE, "%s:%d: cudaGraphInstantiate: %s", __FILE__, __LINE__,
                     cudaGetErrorString(e));
  }
  ctx->graphs_live++;
  *graph = (void *)exec;
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_graph_launch(void *vctx, void *graph) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (!graph) return cnn_error(CNN_ERR_ARG, "cuda graph_launch: graph is NULL");
  if (ctx->capturing) return cnn_cuda_refuse_in_capture(ctx, "graph_launch");
  CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)graph, ctx->stream));
  /* a read_async captured into this graph records read_ev again on every replay:
   * re-arm read_done (for a graph without one, the event is an old, completed one) */
  ctx->read_pending = 1;
  ctx->read_in_capture = 0;
  if (ctx->sync_debug) CNN_TRY(cnn_cuda_debug_sync(ctx, "graph_launch", __FILE__, __LINE__));
  return CNN_OK;
}

extern "C" void cnn_cuda_graph_free(void *vctx, void *graph) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (!graph) return;
  /* a replay still queued may use the graph (and deferred buffers): let it finish */
  if (!ctx->capturing && cudaStreamSynchronize(ctx->stream) != cudaSuccess)
    (void)cudaGetLastError();
  if (cudaGraphExecDestroy((cudaGraphExec_t)graph) != cudaSuccess) (void)cudaGetLastError();
  if (ctx->graphs_live > 0) ctx->graphs_live--;
  cnn_cuda_release_deferred(ctx);
}

/* ---- device-side timing ----------------------------------------------------------- */

extern "C" cnn_status cnn_cuda_timer_mark(void *vctx, int i) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (i < 0 || i >= CNN_TIMER_MARKS)
    return cnn_error(CNN_ERR_ARG, "cuda timer_mark: mark %d outside [0, %d)", i, CNN_TIMER_MARKS);
  if (ctx->capturing) return cnn_cuda_refuse_in_capture(ctx, "timer_mark");
  while (ctx->timer_n <= i) { /* events with timing, made once and kept */
    CUDA_CHECK(cudaEventCreate(&ctx->timer_ev[ctx->timer_n]));
    ctx->timer_n++;
  }
  CUDA_CHECK(cudaEventRecord(ctx->timer_ev[i], ctx->stream));
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_timer_read(void *vctx, int n, float *ms) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (n < 1 || n > ctx->timer_n)
    return cnn_error(CNN_ERR_ARG, "cuda timer_read: %d marks asked, %d recorded", n, ctx->timer_n);
  CUDA_CHECK(cudaEventSynchronize(ctx->timer_ev[n - 1]));
  for (int i = 0; i + 1 < n; i++)
    CUDA_CHECK(cudaEventElapsedTime(&ms[i], ctx->timer_ev[i], ctx->timer_ev[i + 1]));
  return CNN_OK;
}
