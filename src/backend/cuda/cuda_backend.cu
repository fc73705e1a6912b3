/* CUDA backend: context (device, stream, cuBLAS handle, properties, scratch), the op
 * table, memory, dense GEMM through cuBLAS, and the public device queries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_engines.h"

/* ---- device queries (public API) ------------------------------------------ */

extern "C" int cnn_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

/* fill `info` for `dev`; the caller has made `dev` current */
static cnn_status fill_device_info(int dev, cnn_device_info *info) {
  cudaDeviceProp prop;
  int clock_khz = 0;
  size_t mem_free = 0, mem_total = 0;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, dev));
  CUDA_CHECK(cudaMemGetInfo(&mem_free, &mem_total));
  memset(info, 0, sizeof *info);
  snprintf(info->name, sizeof info->name, "%s", prop.name);
  info->cc_major = prop.major;
  info->cc_minor = prop.minor;
  info->sms = prop.multiProcessorCount;
  info->mem_total = mem_total ? mem_total : prop.totalGlobalMem;
  info->mem_free = mem_free;
  info->l2_bytes = prop.l2CacheSize > 0 ? (size_t)prop.l2CacheSize : 0;
  info->smem_per_block_optin = prop.sharedMemPerBlockOptin;
  info->clock_khz = clock_khz;
  info->mem_bus_bits = prop.memoryBusWidth;
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_device_info(int index, cnn_device_info *info) {
  int count = 0, prev = 0;
  cnn_status s;
  if (!info) return cnn_error(CNN_ERR_ARG, "cnn_cuda_device_info: info is NULL");
  count = cnn_cuda_device_count();
  if (index < 0 || index >= count)
    return cnn_error(CNN_ERR_ARG, "no CUDA device %d (%d found)", index, count);
  CUDA_CHECK(cudaGetDevice(&prev));
  CUDA_CHECK(cudaSetDevice(index));
  s = fill_device_info(index, info);
  /* leave the caller's current device as it was */
  if (prev != index) CUDA_CHECK(cudaSetDevice(prev));
  return s;
}

/* ---- memory -------------------------------------------------------------- */

/* ---- capture guards, deferred frees, debug synchronisation ---------------------- */

extern "C" cnn_status cnn_cuda_refuse_in_capture(cnn_cuda_ctx *ctx, const char *op) {
  ctx->capture_error = 1;
  return cnn_error(CNN_ERR_ARG,
                   "cuda %s: not allowed while a CUDA graph is being captured (it would "
                   "allocate, synchronise or freeze host data into the graph)",
                   op);
}

extern "C" cnn_status cnn_cuda_debug_sync(cnn_cuda_ctx *ctx, const char *what, const char *file,
                                          int line) {
  cudaError_t e;
  if (!ctx->sync_debug || ctx->capturing) return CNN_OK;
  e = cudaStreamSynchronize(ctx->stream);
  if (e == cudaSuccess) e = cudaGetLastError();
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return cnn_error(CNN_ERR_DEVICE, "%s:%d: %s failed (CNN_CUDA_SYNC): %s", file, line, what,
                     cudaGetErrorString(e));
  }
  return CNN_OK;
}

/* park a device buffer that a live graph may still reference (or that cannot be
 * freed during a capture); 0 if it could not be parked */
static int defer_free(cnn_cuda_ctx *ctx, void *p) {
  if (ctx->n_deferred == ctx->cap_deferred) {
    int cap = ctx->cap_deferred ? 2 * ctx->cap_deferred : 8;
    void **d = (void **)realloc(ctx->deferred, (size_t)cap * sizeof *d);
    if (!d) return 0;
    ctx->deferred = d;
    ctx->cap_deferred = cap;
  }
  ctx->deferred[ctx->n_deferred++] = p;
  return 1;
}

extern "C" void cnn_cuda_release_deferred(cnn_cuda_ctx *ctx) {
  int i;
  if (ctx->capturing || ctx->graphs_live > 0 || ctx->n_deferred == 0) return;
  if (cudaStreamSynchronize(ctx->stream) != cudaSuccess) (void)cudaGetLastError();
  for (i = 0; i < ctx->n_deferred; i++)
    if (cudaFree(ctx->deferred[i]) != cudaSuccess) (void)cudaGetLastError();
  ctx->n_deferred = 0;
}

extern "C" cnn_status cnn_cuda_alloc(void *vctx, size_t bytes, void **ptr) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  void *p = NULL;
  cudaError_t e;
  if (!ptr) return cnn_error(CNN_ERR_ARG, "cuda alloc: ptr is NULL");
  *ptr = NULL;
  if (ctx->capturing) return cnn_cuda_refuse_in_capture(ctx, "alloc");
  /* a real (unique, 256-aligned) pointer even for 0 bytes */
  e = cudaMalloc(&p, bytes ? bytes : 1);
  if (e == cudaErrorMemoryAllocation) {
    size_t fr = 0, tot = 0;
    (void)cudaGetLastError();
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) (void)cudaGetLastError();
    return cnn_error(CNN_ERR_NOMEM,
                     "%s:%d: cudaMalloc(%zu bytes): out of device memory (%zu of %zu bytes free)",
                     __FILE__, __LINE__, bytes, fr, tot);
  }
  CUDA_CHECK(e);
  *ptr = p;
  return CNN_OK;
}

extern "C" void cnn_cuda_free(void *vctx, void *ptr) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (!ptr) return;
  /* no synchronisation (nor cudaFree) is allowed while capturing: free it after */
  if (ctx->capturing && defer_free(ctx, ptr)) return;
  /* pending kernels on our stream may still use the buffer */
  if (cudaStreamSynchronize(ctx->stream) != cudaSuccess) (void)cudaGetLastError();
  if (cudaFree(ptr) != cudaSuccess) (void)cudaGetLastError();
}

extern "C" cnn_status cnn_cuda_upload(void *vctx, void *dst, const void *src_host, size_t bytes) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (ctx->capturing) return cnn_cuda_refuse_in_capture(ctx, "upload");
  if (bytes == 0) return CNN_OK;
  CUDA_CHECK(cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, ctx->stream));
  /* the source may be pageable and reused by the caller as soon as we return */
  CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_download(void *vctx, void *dst_host, const void *src, size_t bytes) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (ctx->capturing) return cnn_cuda_refuse_in_capture(ctx, "download");
  if (bytes == 0) return CNN_OK;
  CUDA_CHECK(cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, ctx->stream));
  CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_copy(void *vctx, void *dst, const void *src, size_t bytes) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (bytes == 0 || dst == src) return CNN_OK;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx->stream));
  if (ctx->sync_debug) CNN_TRY(cnn_cuda_debug_sync(ctx, "copy", __FILE__, __LINE__));
  return CNN_OK;
}

/* pinned host memory: uploads from it are true DMA, with no staging copy */
static cnn_status cuda_host_alloc(void *vctx, size_t bytes, void **ptr) {
  (void)vctx;
  *ptr = NULL;
  cudaError_t e = cudaHostAlloc(ptr, bytes ? bytes : 1, cudaHostAllocDefault);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    *ptr = NULL;
    return cnn_error(CNN_ERR_NOMEM, "cudaHostAlloc of %zu bytes: %s", bytes, cudaGetErrorString(e));
  }
  return CNN_OK;
}

static void cuda_host_free(void *vctx, void *ptr) {
  (void)vctx;
  /* a failure also sets the runtime's last error: clear it, or the next
   * LAUNCH_CHECK would report it against an unrelated kernel */
  if (ptr && cudaFreeHost(ptr) != cudaSuccess) (void)cudaGetLastError();
}

extern "C" cnn_status cnn_cuda_sync(void *vctx) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (ctx->capturing) return cnn_cuda_refuse_in_capture(ctx, "sync");
  CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_scratch(cnn_cuda_ctx *ctx, size_t bytes, void **out) {
  *out = NULL;
  if (bytes == 0) bytes = 256;
  if (bytes > ctx->scratch_bytes) {
    size_t want = cnn_cuda_align256(bytes + bytes / 4); /* some headroom */
    void *p = NULL;
    /* a captured graph must never allocate or synchronise: refuse, never grow */
    if (ctx->capturing) {
      ctx->capture_error = 1;
      return cnn_error(CNN_ERR_ARG,
                       "cuda scratch: %zu bytes needed but %zu reserved, and it cannot grow "
                       "while a CUDA graph is being captured (run the step once uncaptured "
                       "first)",
                       bytes, ctx->scratch_bytes);
    }
    if (ctx->scratch) {
      if (ctx->graphs_live > 0) {
        /* live graphs hold the old address: keep it until they are freed */
        if (!defer_free(ctx, ctx->scratch))
          return cnn_error(CNN_ERR_NOMEM, "cuda scratch: out of host memory");
      } else {
        /* kernels queued earlier may still read the old scratch */
        CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
        CUDA_CHECK(cudaFree(ctx->scratch));
      }
      ctx->scratch = NULL;
      ctx->scratch_bytes = 0;
    }
    if (cudaMalloc(&p, want) != cudaSuccess) {
      (void)cudaGetLastError();
      return cnn_error(CNN_ERR_NOMEM, "%s:%d: cudaMalloc(%zu bytes) for CUDA scratch failed",
                       __FILE__, __LINE__, want);
    }
    ctx->scratch = p;
    ctx->scratch_bytes = want;
  }
  *out = ctx->scratch;
  return CNN_OK;
}

/* ---- dense GEMM ------------------------------------------------------------ */

/* k == 0: C = beta C, and C is not read when beta == 0 (row-major [m, n], stride ldc) */
static __global__ void k_gemm_scale_c(int m, int n, float beta, float *c, int ldc) {
  const size_t total = (size_t)m * n;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (size_t)gridDim.x * blockDim.x) {
    const size_t r = i / (size_t)n, j = i - r * (size_t)n;
    float *cij = c + r * (size_t)ldc + j;
    *cij = beta == 0.0f ? 0.0f : beta * *cij;
  }
}

/* Row-major C = alpha op(A) op(B) + beta C through column-major cuBLAS: a row-major
 * matrix with row stride ld is the column-major transpose with leading dimension ld,
 * so we compute C^T = op(B)^T op(A)^T, i.e. swap the operands and m/n. cuBLAS does
 * not read C when beta == 0. */
extern "C" cnn_status cnn_cuda_gemm(void *vctx, int trans_a, int trans_b, int m, int n, int k,
                                    float alpha, const float *a, int lda, const float *b, int ldb,
                                    float beta, float *c, int ldc) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (m < 0 || n < 0 || k < 0)
    return cnn_error(CNN_ERR_ARG, "cuda gemm: negative size m=%d n=%d k=%d", m, n, k);
  if (m == 0 || n == 0) return CNN_OK;
  if (k == 0) { /* no products: leave nothing to cuBLAS's reading of an empty sum */
    size_t total = (size_t)m * n;
    k_gemm_scale_c<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(m, n, beta,
                                                                                      c, ldc);
    LAUNCH_CHECK("k_gemm_scale_c");
    return CNN_OK;
  }
  CUBLAS_CHECK(cublasSgemm(ctx->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                           trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb, a, lda,
                           &beta, c, ldc));
  if (ctx->sync_debug) CNN_TRY(cnn_cuda_debug_sync(ctx, "cublasSgemm", __FILE__, __LINE__));
  return CNN_OK;
}

/* ---- context and op table ---------------------------------------------------- */

static void release_ctx(cnn_cuda_ctx *ctx) {
  int i;
  if (!ctx) return;
  if (ctx->capturing && ctx->stream) { /* abandon an open capture */
    cudaGraph_t g = NULL;
    if (cudaStreamEndCapture(ctx->stream, &g) != cudaSuccess) (void)cudaGetLastError();
    if (g) (void)cudaGraphDestroy(g);
    ctx->capturing = 0;
  }
  if (ctx->stream && cudaStreamSynchronize(ctx->stream) != cudaSuccess) (void)cudaGetLastError();
  if (ctx->scratch && cudaFree(ctx->scratch) != cudaSuccess) (void)cudaGetLastError();
  for (i = 0; i < ctx->n_deferred; i++)
    if (cudaFree(ctx->deferred[i]) != cudaSuccess) (void)cudaGetLastError();
  free(ctx->deferred);
  for (i = 0; i < CNN_CUDA_STAGE_SLOTS; i++) {
    if (ctx->stage[i].host && cudaFreeHost(ctx->stage[i].host) != cudaSuccess)
      (void)cudaGetLastError();
    if (ctx->stage[i].done && cudaEventDestroy(ctx->stage[i].done) != cudaSuccess)
      (void)cudaGetLastError();
  }
  if (ctx->read_ev && cudaEventDestroy(ctx->read_ev) != cudaSuccess) (void)cudaGetLastError();
  for (i = 0; i < ctx->timer_n; i++)
    if (cudaEventDestroy(ctx->timer_ev[i]) != cudaSuccess) (void)cudaGetLastError();
  cnn_cuda_tuner_release(ctx);
  cnn_cuda_cudnn_release(ctx);
  cnn_cuda_lt_release(ctx);
  if (ctx->cublas) (void)cublasDestroy(ctx->cublas);
  /* after cuBLAS, which may use its workspace until destroyed */
  if (ctx->cublas_ws && cudaFree(ctx->cublas_ws) != cudaSuccess) (void)cudaGetLastError();
  if (ctx->stream && cudaStreamDestroy(ctx->stream) != cudaSuccess) (void)cudaGetLastError();
  free(ctx);
}

static void cuda_destroy(cnn_backend *b) {
  if (!b) return;
  release_ctx(CNN_CUDA_CTX(b->ctx));
  free(b);
}

/* free and total memory of the backend's device (made current for the query, then
 * the caller's device is restored) */
static cnn_status cuda_mem_info(void *vctx, size_t *avail, size_t *total, const char **source) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  int prev = 0;
  size_t fr = 0, tot = 0;
  CUDA_CHECK(cudaGetDevice(&prev));
  if (prev != ctx->device) CUDA_CHECK(cudaSetDevice(ctx->device));
  cudaError_t e = cudaMemGetInfo(&fr, &tot);
  if (e != cudaSuccess) (void)cudaGetLastError();
  if (prev != ctx->device) CUDA_CHECK(cudaSetDevice(prev));
  if (e != cudaSuccess)
    return cnn_error(CNN_ERR_DEVICE, "%s:%d: cudaMemGetInfo on device %d: %s", __FILE__, __LINE__,
                     ctx->device, cudaGetErrorString(e));
  *avail = fr;
  *total = tot;
  *source = "cudaMemGetInfo";
  return CNN_OK;
}

/* tensor cores: TF32 and BF16 products from compute capability 8.0 (init_ctx
 * refuses older devices) */
static unsigned cuda_matrix_math(void *vctx) {
  const cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  return ctx->cc_major >= 8 ? (1u << CNN_MATH_TF32) | (1u << CNN_MATH_BF16) : 0u;
}

static void fill_ops(cnn_backend_ops *o) {
  memset(o, 0, sizeof *o);
  o->destroy = cuda_destroy;
  o->alloc = cnn_cuda_alloc;
  o->free = cnn_cuda_free;
  o->upload = cnn_cuda_upload;
  o->download = cnn_cuda_download;
  o->copy = cnn_cuda_copy;
  o->sync = cnn_cuda_sync;
  o->host_alloc = cuda_host_alloc;
  o->host_free = cuda_host_free;
  o->mem_info = cuda_mem_info;
  o->fill = cnn_cuda_fill;
  o->axpby = cnn_cuda_axpby;
  o->add = cnn_cuda_add;
  o->mul = cnn_cuda_mul;
  o->copy2d = cnn_cuda_copy2d;
  o->act_fwd = cnn_cuda_act_fwd;
  o->act_bwd = cnn_cuda_act_bwd;
  o->gemm = cnn_cuda_gemm;
  o->bias_add = cnn_cuda_bias_add;
  o->bias_grad = cnn_cuda_bias_grad;
  o->conv_workspace = cnn_cuda_conv_workspace;
  o->conv_fwd = cnn_cuda_conv_fwd;
  o->conv_bwd_data = cnn_cuda_conv_bwd_data;
  o->conv_bwd_filter = cnn_cuda_conv_bwd_filter;
  o->maxpool_fwd = cnn_cuda_maxpool_fwd;
  o->maxpool_bwd = cnn_cuda_maxpool_bwd;
  o->avgpool_fwd = cnn_cuda_avgpool_fwd;
  o->avgpool_bwd = cnn_cuda_avgpool_bwd;
  o->bn_fwd_train = cnn_cuda_bn_fwd_train;
  o->bn_fwd_infer = cnn_cuda_bn_fwd_infer;
  o->bn_bwd = cnn_cuda_bn_bwd;
  o->shortcut_fwd = cnn_cuda_shortcut_fwd;
  o->shortcut_bwd = cnn_cuda_shortcut_bwd;
  o->dropout_mask = cnn_cuda_dropout_mask;
  o->softmax_xent_fwd = cnn_cuda_softmax_xent_fwd;
  o->softmax_xent_bwd = cnn_cuda_softmax_xent_bwd;
  o->sgd_step = cnn_cuda_sgd_step;
  o->adam_step = cnn_cuda_adam_step;
  /* step programs */
  o->upload_async = cnn_cuda_upload_async;
  o->cast = cnn_cuda_cast;
  o->read_async = cnn_cuda_read_async;
  o->read_done = cnn_cuda_read_done;
  o->step_begin = cnn_cuda_step_begin;
  o->step_end = cnn_cuda_step_end;
  o->metrics_reset = cnn_cuda_metrics_reset;
  o->check_finite = cnn_cuda_check_finite;
  o->softmax_xent_step = cnn_cuda_softmax_xent_step;
  o->sgd_step_st = cnn_cuda_sgd_step_st;
  o->adam_step_st = cnn_cuda_adam_step_st;
  o->dropout_mask_st = cnn_cuda_dropout_mask_st;
  o->bn_act_fwd_train = cnn_cuda_bn_act_fwd_train;
  o->bn_act_fwd_infer = cnn_cuda_bn_act_fwd_infer;
  o->bn_act_bwd = cnn_cuda_bn_act_bwd;
  o->bn_commit = cnn_cuda_bn_commit;
  o->bn_fold = cnn_cuda_bn_fold;
  o->conv_fwd_act = cnn_cuda_conv_fwd_act;
  o->add_act_fwd = cnn_cuda_add_act_fwd;
  o->add_act_bwd = cnn_cuda_add_act_bwd;
  o->crop_fwd = cnn_cuda_crop_fwd;
  o->crop_bwd = cnn_cuda_crop_bwd;
  o->reorg_fwd = cnn_cuda_reorg_fwd;
  o->reorg_bwd = cnn_cuda_reorg_bwd;
  o->gather_aug = cnn_cuda_gather_aug;
  o->data_seek = cnn_cuda_data_seek;
  o->capture_begin = cnn_cuda_capture_begin;
  o->capture_end = cnn_cuda_capture_end;
  o->graph_launch = cnn_cuda_graph_launch;
  o->graph_free = cnn_cuda_graph_free;
  /* matrix units and engines */
  o->matrix_math = cuda_matrix_math;
  o->gemm_ex = cnn_cuda_gemm_ex;
  o->conv_engines = cnn_cuda_conv_engines;
  o->conv_tune = cnn_cuda_conv_tune;
  o->conv_engine = cnn_cuda_conv_engine;
  o->set_option = cnn_cuda_set_option;
  o->timer_mark = cnn_cuda_timer_mark;
  o->timer_read = cnn_cuda_timer_read;
}

/* everything that can fail after ctx is allocated; release_ctx undoes it */
static cnn_status init_ctx(cnn_cuda_ctx *ctx) {
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDevice(&ctx->device));
  CUDA_CHECK(cudaGetDeviceProperties(&prop, ctx->device));
  snprintf(ctx->name, sizeof ctx->name, "%s", prop.name);
  ctx->sms = prop.multiProcessorCount > 0 ? prop.multiProcessorCount : 1;
  ctx->cc_major = prop.major;
  ctx->cc_minor = prop.minor;
  ctx->max_threads_per_sm = prop.maxThreadsPerMultiProcessor;
  ctx->mem_total = prop.totalGlobalMem;
  ctx->l2_bytes = prop.l2CacheSize > 0 ? (size_t)prop.l2CacheSize : 0;
  ctx->smem_per_block_optin = prop.sharedMemPerBlockOptin;
  if (prop.major < 8)
    return cnn_error(CNN_UNSUPPORTED,
                     "CUDA device %d (%s) has compute capability %d.%d; this build needs 8.0 "
                     "or newer",
                     ctx->device, prop.name, prop.major, prop.minor);
  {
    const char *e = getenv("CNN_CUDA_SYNC");
    ctx->sync_debug = e && e[0] && strcmp(e, "0") != 0;
  }
  /* a created (non-default, non-blocking) stream: graph capture needs one */
  CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
  CUBLAS_CHECK(cublasCreate(&ctx->cublas));
  CUBLAS_CHECK(cublasSetStream(ctx->cublas, ctx->stream));
  /* a fixed workspace, so cuBLAS never allocates (under capture it must not);
   * after cublasSetStream, which resets the workspace to the default pool */
  {
    void *ws = NULL;
    if (cudaMalloc(&ws, CNN_CUDA_CUBLAS_WS) != cudaSuccess) {
      (void)cudaGetLastError();
      return cnn_error(CNN_ERR_NOMEM, "%s:%d: cudaMalloc(%zu bytes) for the cuBLAS workspace",
                       __FILE__, __LINE__, CNN_CUDA_CUBLAS_WS);
    }
    ctx->cublas_ws = ws;
    ctx->cublas_ws_bytes = CNN_CUDA_CUBLAS_WS;
    CUBLAS_CHECK(cublasSetWorkspace(ctx->cublas, ctx->cublas_ws, ctx->cublas_ws_bytes));
  }
  /* plain fp32: no TF32 (tests compare with an fp32 reference at 1e-5) */
  CUBLAS_CHECK(cublasSetMathMode(ctx->cublas, CUBLAS_DEFAULT_MATH));
  CUBLAS_CHECK(cublasSetPointerMode(ctx->cublas, CUBLAS_POINTER_MODE_HOST));
  /* scratch reserved up front, so that a step captured first still fits */
  {
    void *sc = NULL;
    CNN_TRY(cnn_cuda_scratch(ctx, CNN_CUDA_SCRATCH_INIT, &sc));
  }
  {
    int i;
    for (i = 0; i < CNN_CUDA_STAGE_SLOTS; i++)
      CUDA_CHECK(cudaEventCreateWithFlags(&ctx->stage[i].done, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&ctx->read_ev, cudaEventDisableTiming));
  }
  /* engines: cuDNN is optional (a library that does not load leaves ctx->cudnn NULL
   * and its family empty); cuBLASLt and the tuner are always there */
  CNN_TRY(cnn_cuda_cudnn_init(ctx));
  CNN_TRY(cnn_cuda_lt_init(ctx));
  CNN_TRY(cnn_cuda_tuner_init(ctx));
  fill_ops(&ctx->ops);
  return CNN_OK;
}

extern "C" cnn_status cnn_backend_cuda_create(cnn_backend **out) {
  int count = 0;
  cnn_cuda_ctx *ctx;
  cnn_backend *b;
  cnn_status s;
  if (!out) return cnn_error(CNN_ERR_ARG, "cnn_backend_cuda_create: out is NULL");
  *out = NULL;
  {
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      /* e.g. no driver, or a driver older than this CUDA runtime */
      return cnn_error(CNN_UNSUPPORTED, "no CUDA device found (cudaGetDeviceCount: %s)",
                       cudaGetErrorString(e));
    }
    if (count <= 0) return cnn_error(CNN_UNSUPPORTED, "no CUDA device found");
  }
  ctx = (cnn_cuda_ctx *)calloc(1, sizeof *ctx);
  b = (cnn_backend *)calloc(1, sizeof *b);
  if (!ctx || !b) {
    free(ctx);
    free(b);
    return cnn_error(CNN_ERR_NOMEM, "cuda backend: out of host memory");
  }
  s = init_ctx(ctx);
  if (s != CNN_OK) {
    release_ctx(ctx);
    free(b);
    return s;
  }
  b->name = "cuda";
  b->ctx = ctx;
  b->ops = &ctx->ops;
  *out = b;
  return CNN_OK;
}
