/* cuDNN as a conv engine family (cuda_engines.h), through cuDNN 9's legacy
 * convolution API (cudnnConvolutionForward / BackwardData / BackwardFilter with a
 * fixed algorithm each).
 *
 * Optional twice over:
 *  - at build time: CMake defines CNN_HAVE_CUDNN=1 when cudnn.h is found next to the
 *    CUDA toolkit's headers; without it this file is the empty family;
 *  - at run time: libcnn_cuda.so does NOT link libcudnn. cnn_cuda_cudnn_init
 *    dlopen()s "libcudnn.so.9" (then "libcudnn.so"), dlsym()s every function used
 *    into a table, checks cudnnGetVersion() is 9.x and creates a handle bound to
 *    ctx->stream. Any failure leaves ctx->cudnn NULL (the family then supports
 *    nothing) and cnn_cuda_cudnn_status() says why; backend creation still succeeds.
 *    CNN_CUDNN=0 in the environment skips loading (for comparisons).
 *
 * Engines: one per (pass, algorithm), named "cudnn-<pass>-<algo>". The algorithms
 * cuDNN documents as non-deterministic (BWD_DATA_ALGO_0, BWD_FILTER_ALGO_0 and _3)
 * are not engines: every pass of this project is reproducible run to run. supports()
 * also drops an algorithm that cuDNN's own heuristic (cudnnGet*Algorithm_v7) lists
 * as failing or non-deterministic for the shape.
 *
 * Layouts: activations NHWC (cudnnSetTensor4dDescriptor(CUDNN_TENSOR_NHWC)), weights
 * KRSC = a CUDNN_TENSOR_NHWC filter [k][r][s][c/groups]. cuDNN pads symmetrically:
 * a shape whose implied bottom/right padding gives another output size than
 * cuDNN computes (cudnnGetConvolution2dForwardOutputDim) is not supported.
 *
 * Math: F32 -> CUDNN_FMA_MATH (no tensor cores, no TF32). TF32 -> CUDNN_DEFAULT_MATH,
 * which for float data lets cuDNN 8+ use TF32 tensor cores on sm_80+. BF16 -> the
 * same as TF32: cuDNN has no "round float operands to bf16" mode for float tensors,
 * and tf32 (10 mantissa bits) is more precise than bf16 (7), so it is a valid
 * implementation of CNN_MATH_BF16 (backend.h: rounding is permitted, not required).
 *
 * Epilogues are ours, not cuDNN's: forward runs with beta = 0, then the bias
 * (cnn_cuda_bias_add) and activation (cnn_cuda_act_fwd) kernels; backward-filter's
 * db is cnn_cuda_bias_grad (deterministic column sums), not cudnnConvolutionBackwardBias.
 * Backward-data runs with beta = 1: dx += conv_transpose(dy, w), as the op requires. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_engines.h"

#if defined(CNN_HAVE_CUDNN) && CNN_HAVE_CUDNN

#include <cudnn.h>
#include <dlfcn.h>

/* every cuDNN function used, dlsym()ed into cnn_cuda_cudnn::p_<name> */
#define CNN_DNN_FUNCS(X)                                                                   \
  X(cudnnGetVersion)                                                                       \
  X(cudnnGetCudartVersion)                                                                 \
  X(cudnnGetErrorString)                                                                   \
  X(cudnnCreate)                                                                           \
  X(cudnnDestroy)                                                                          \
  X(cudnnSetStream)                                                                        \
  X(cudnnCreateTensorDescriptor)                                                           \
  X(cudnnDestroyTensorDescriptor)                                                          \
  X(cudnnSetTensor4dDescriptor)                                                            \
  X(cudnnCreateFilterDescriptor)                                                           \
  X(cudnnDestroyFilterDescriptor)                                                          \
  X(cudnnSetFilter4dDescriptor)                                                            \
  X(cudnnCreateConvolutionDescriptor)                                                      \
  X(cudnnDestroyConvolutionDescriptor)                                                     \
  X(cudnnSetConvolution2dDescriptor)                                                       \
  X(cudnnSetConvolutionGroupCount)                                                         \
  X(cudnnSetConvolutionMathType)                                                           \
  X(cudnnGetConvolution2dForwardOutputDim)                                                 \
  X(cudnnGetConvolutionForwardWorkspaceSize)                                               \
  X(cudnnGetConvolutionBackwardDataWorkspaceSize)                                          \
  X(cudnnGetConvolutionBackwardFilterWorkspaceSize)                                        \
  X(cudnnGetConvolutionForwardAlgorithm_v7)                                                \
  X(cudnnGetConvolutionBackwardDataAlgorithm_v7)                                           \
  X(cudnnGetConvolutionBackwardFilterAlgorithm_v7)                                         \
  X(cudnnConvolutionForward)                                                               \
  X(cudnnConvolutionBackwardData)                                                          \
  X(cudnnConvolutionBackwardFilter)

struct cnn_cuda_cudnn {
  void *dl;                  /* dlopen handle (RTLD_NODELETE: never unmapped) */
  cudnnHandle_t handle;      /* bound to ctx->stream */
  cudnnTensorDescriptor_t xd, yd;   /* x / dx [n,h,w,c] and y / dy [n,oh,ow,k], NHWC */
  cudnnFilterDescriptor_t wd;       /* w / dw, KRSC */
  cudnnConvolutionDescriptor_t cd;
  /* the descriptors currently describe `last` (skip re-setting them) */
  int have_last;
  cnn_conv_desc last;
  /* nonzero while supports() probes: failures are not reported through cnn_error */
  int quiet;
  char version[64];          /* "cuDNN 9.19.0" */
#define CNN_DNN_MEMBER(f) decltype(&::f) p_##f;
  CNN_DNN_FUNCS(CNN_DNN_MEMBER)
#undef CNN_DNN_MEMBER
};

/* Why cuDNN is absent (process-wide: loading fails the same way for every context;
 * two contexts created at once would write the same text). */
static char g_dnn_reason[512] = "cuDNN not initialised";

static void set_reason(const char *fmt, const char *a, const char *b) {
  snprintf(g_dnn_reason, sizeof g_dnn_reason, fmt, a ? a : "", b ? b : "");
}

/* a failed cuDNN call: CNN_ERR_DEVICE with "file:line: call: cuDNN's message"
 * (nothing is reported while supports() probes) */
static cnn_status dnn_fail(cnn_cuda_cudnn *h, const char *call, cudnnStatus_t s, const char *file,
                           int line) {
  (void)cudaGetLastError(); /* a failed launch inside cuDNN must not surface later */
  if (h->quiet) return CNN_ERR_DEVICE;
  return cnn_error(CNN_ERR_DEVICE, "%s:%d: %s: %s", file, line, call,
                   h->p_cudnnGetErrorString(s));
}

#define DNN_CHECK(h, call)                                                                  \
  do {                                                                                      \
    cudnnStatus_t cnn_dnn_s_ = (call);                                                      \
    if (cnn_dnn_s_ != CUDNN_STATUS_SUCCESS)                                                 \
      return dnn_fail((h), #call, cnn_dnn_s_, __FILE__, __LINE__);                          \
  } while (0)

/* ---- state ------------------------------------------------------------------ */

/* tolerant of any partial initialisation (NULL members are skipped) */
static void dnn_destroy(cnn_cuda_cudnn *h) {
  if (!h) return;
  if (h->cd) (void)h->p_cudnnDestroyConvolutionDescriptor(h->cd);
  if (h->wd) (void)h->p_cudnnDestroyFilterDescriptor(h->wd);
  if (h->yd) (void)h->p_cudnnDestroyTensorDescriptor(h->yd);
  if (h->xd) (void)h->p_cudnnDestroyTensorDescriptor(h->xd);
  if (h->handle) (void)h->p_cudnnDestroy(h->handle);
  (void)cudaGetLastError();
  /* RTLD_NODELETE keeps the library mapped: unmapping libraries that registered CUDA
   * kernels with the runtime is a known source of crashes at exit */
  if (h->dl) dlclose(h->dl);
  free(h);
}

extern "C" cnn_status cnn_cuda_cudnn_init(cnn_cuda_ctx *ctx) {
  ctx->cudnn = NULL;
  const char *env = getenv("CNN_CUDNN");
  if (env && strcmp(env, "0") == 0) {
    set_reason("cuDNN disabled (CNN_CUDNN=0)%s%s", NULL, NULL);
    return CNN_OK;
  }
  const int flags = RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE;
  void *dl = dlopen("libcudnn.so.9", flags);
  if (!dl) {
    char first[256];
    const char *e = dlerror();
    snprintf(first, sizeof first, "%s", e ? e : "dlopen failed");
    dl = dlopen("libcudnn.so", flags);
    if (!dl) {
      set_reason("cuDNN not loadable: %s%s", first, NULL);
      return CNN_OK;
    }
  }
  cnn_cuda_cudnn *h = (cnn_cuda_cudnn *)calloc(1, sizeof *h);
  if (!h) {
    dlclose(dl);
    set_reason("cuDNN not loaded: out of host memory%s%s", NULL, NULL);
    return CNN_OK;
  }
  h->dl = dl;
#define CNN_DNN_LOAD(f)                                                                     \
  {                                                                                         \
    void *sym = dlsym(dl, #f);                                                              \
    if (!sym) {                                                                             \
      set_reason("cuDNN library lacks %s%s", #f, NULL);                                     \
      dnn_destroy(h);                                                                       \
      return CNN_OK;                                                                        \
    }                                                                                       \
    h->p_##f = reinterpret_cast<decltype(h->p_##f)>(sym);                                   \
  }
  CNN_DNN_FUNCS(CNN_DNN_LOAD)
#undef CNN_DNN_LOAD
  {
    /* cuDNN 9 encodes its version as major * 10000 + minor * 100 + patch */
    size_t v = h->p_cudnnGetVersion();
    char vs[64];
    snprintf(vs, sizeof vs, "%zu", v);
    if (v < 90000 || v >= 100000) {
      set_reason("cuDNN version %s found, 9.x needed%s", vs, NULL);
      dnn_destroy(h);
      return CNN_OK;
    }
    snprintf(h->version, sizeof h->version, "cuDNN %zu.%zu.%zu", v / 10000, v / 100 % 100,
             v % 100);
    /* a cuDNN built for another CUDA major version than this module's runtime */
    size_t rt = h->p_cudnnGetCudartVersion();
    if (rt / 1000 != (size_t)CUDART_VERSION / 1000) {
      char want[32], got[32];
      snprintf(got, sizeof got, "%zu", rt / 1000);
      snprintf(want, sizeof want, "%d", CUDART_VERSION / 1000);
      set_reason("cuDNN is built for CUDA %s, this backend for CUDA %s", got, want);
      dnn_destroy(h);
      return CNN_OK;
    }
  }
  {
    cudnnStatus_t s = h->p_cudnnCreate(&h->handle);
    if (s != CUDNN_STATUS_SUCCESS) {
      h->handle = NULL;
      set_reason("cuDNN loaded but cudnnCreate failed: %s%s", h->p_cudnnGetErrorString(s), NULL);
      dnn_destroy(h);
      return CNN_OK;
    }
  }
  cudnnStatus_t s = h->p_cudnnSetStream(h->handle, ctx->stream);
  const char *what = "cudnnSetStream";
  if (s == CUDNN_STATUS_SUCCESS) {
    what = "cudnnCreateTensorDescriptor";
    s = h->p_cudnnCreateTensorDescriptor(&h->xd);
  }
  if (s == CUDNN_STATUS_SUCCESS) s = h->p_cudnnCreateTensorDescriptor(&h->yd);
  if (s == CUDNN_STATUS_SUCCESS) {
    what = "cudnnCreateFilterDescriptor";
    s = h->p_cudnnCreateFilterDescriptor(&h->wd);
  }
  if (s == CUDNN_STATUS_SUCCESS) {
    what = "cudnnCreateConvolutionDescriptor";
    s = h->p_cudnnCreateConvolutionDescriptor(&h->cd);
  }
  if (s != CUDNN_STATUS_SUCCESS) {
    set_reason("cuDNN loaded but %s failed: %s", what, h->p_cudnnGetErrorString(s));
    dnn_destroy(h);
    return CNN_OK;
  }
  ctx->cudnn = h;
  return CNN_OK;
}

extern "C" void cnn_cuda_cudnn_release(cnn_cuda_ctx *ctx) {
  if (!ctx) return;
  dnn_destroy(ctx->cudnn);
  ctx->cudnn = NULL;
}

extern "C" const char *cnn_cuda_cudnn_status(cnn_cuda_ctx *ctx) {
  if (ctx && ctx->cudnn) return ctx->cudnn->version;
  return g_dnn_reason;
}

/* ---- descriptors ------------------------------------------------------------ */

/* Describe d to cuDNN (n of 0 is described as 1: the algorithms and their support
 * do not depend on it, and cuDNN refuses empty tensors). CNN_UNSUPPORTED when
 * cuDNN's symmetric padding gives another output size than d's. */
static cnn_status dnn_prepare(cnn_cuda_cudnn *h, const cnn_conv_desc *din) {
  cnn_conv_desc d = *din;
  if (d.n < 1) d.n = 1;
  if (h->have_last && memcmp(&d, &h->last, sizeof d) == 0) return CNN_OK;
  h->have_last = 0;
  if (d.groups < 1 || d.c % d.groups || d.k % d.groups || d.oh < 1 || d.ow < 1) {
    if (h->quiet) return CNN_UNSUPPORTED;
    return cnn_error(CNN_UNSUPPORTED, "cudnn: conv shape not described (groups %d, c %d, k %d, "
                     "out %dx%d)", d.groups, d.c, d.k, d.oh, d.ow);
  }
  DNN_CHECK(h, h->p_cudnnSetTensor4dDescriptor(h->xd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, d.n,
                                               d.c, d.h, d.w));
  DNN_CHECK(h, h->p_cudnnSetTensor4dDescriptor(h->yd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, d.n,
                                               d.k, d.oh, d.ow));
  /* dims are given as (k, c, h, w) whatever the format; NHWC makes the memory KRSC */
  DNN_CHECK(h, h->p_cudnnSetFilter4dDescriptor(h->wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, d.k,
                                               d.c / d.groups, d.r, d.s));
  DNN_CHECK(h, h->p_cudnnSetConvolution2dDescriptor(h->cd, d.pad_h, d.pad_w, d.stride_h,
                                                    d.stride_w, d.dil_h, d.dil_w,
                                                    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  DNN_CHECK(h, h->p_cudnnSetConvolutionGroupCount(h->cd, d.groups));
  DNN_CHECK(h, h->p_cudnnSetConvolutionMathType(
                   h->cd, d.math == CNN_MATH_F32 ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH));
  int on = 0, oc = 0, oh = 0, ow = 0;
  DNN_CHECK(h, h->p_cudnnGetConvolution2dForwardOutputDim(h->cd, h->xd, h->wd, &on, &oc, &oh,
                                                          &ow));
  if (on != d.n || oc != d.k || oh != d.oh || ow != d.ow) {
    if (h->quiet) return CNN_UNSUPPORTED;
    return cnn_error(CNN_UNSUPPORTED,
                     "cudnn: this conv's output is %dx%d but cuDNN's symmetric padding gives "
                     "%dx%d (bottom/right padding differs from top/left)",
                     d.oh, d.ow, oh, ow);
  }
  h->last = d;
  h->have_last = 1;
  return CNN_OK;
}

/* ---- engines ---------------------------------------------------------------- */

/* cfg = pass * 16 + cuDNN algorithm */
static cnn_conv_dir cfg_dir(int cfg) { return (cnn_conv_dir)(cfg / 16); }
static int cfg_algo(int cfg) { return cfg % 16; }

/* workspace bytes of the engine's algorithm for d (descriptors prepared) */
static cnn_status dnn_ws(cnn_cuda_cudnn *h, cnn_conv_dir dir, int algo, size_t *bytes) {
  *bytes = 0;
  if (dir == CNN_CONV_FWD)
    DNN_CHECK(h, h->p_cudnnGetConvolutionForwardWorkspaceSize(
                     h->handle, h->xd, h->wd, h->cd, h->yd, (cudnnConvolutionFwdAlgo_t)algo,
                     bytes));
  else if (dir == CNN_CONV_BWD_DATA)
    DNN_CHECK(h, h->p_cudnnGetConvolutionBackwardDataWorkspaceSize(
                     h->handle, h->wd, h->yd, h->cd, h->xd,
                     (cudnnConvolutionBwdDataAlgo_t)algo, bytes));
  else
    DNN_CHECK(h, h->p_cudnnGetConvolutionBackwardFilterWorkspaceSize(
                     h->handle, h->xd, h->yd, h->cd, h->wd,
                     (cudnnConvolutionBwdFilterAlgo_t)algo, bytes));
  return CNN_OK;
}

/* in dnn_heuristic_ok: does the heuristic's result list r name `algo` (listed), as
 * available and deterministic (good)? One scan for each pass's own result type */
#define SCAN_PERF(r)                                                      \
  for (int i_ = 0; i_ < n && i_ < MAXR; i_++)                             \
    if ((int)(r)[i_].algo == algo) {                                      \
      listed = 1;                                                         \
      good |= (r)[i_].status == CUDNN_STATUS_SUCCESS &&                   \
              (r)[i_].determinism == CUDNN_DETERMINISTIC;                 \
    }

/* 0 when cuDNN's heuristic lists `algo` for the prepared descriptors only with a
 * failing status or as non-deterministic; 1 otherwise (also when it does not list
 * it: the workspace query is then the judge) */
static int dnn_heuristic_ok(cnn_cuda_cudnn *h, cnn_conv_dir dir, int algo) {
  enum { MAXR = 16 };
  int n = 0, listed = 0, good = 0;
  if (dir == CNN_CONV_FWD) {
    cudnnConvolutionFwdAlgoPerf_t r[MAXR];
    if (h->p_cudnnGetConvolutionForwardAlgorithm_v7(h->handle, h->xd, h->wd, h->cd, h->yd, MAXR,
                                                    &n, r) != CUDNN_STATUS_SUCCESS)
      return 1;
    SCAN_PERF(r);
  } else if (dir == CNN_CONV_BWD_DATA) {
    cudnnConvolutionBwdDataAlgoPerf_t r[MAXR];
    if (h->p_cudnnGetConvolutionBackwardDataAlgorithm_v7(h->handle, h->wd, h->yd, h->cd, h->xd,
                                                         MAXR, &n, r) != CUDNN_STATUS_SUCCESS)
      return 1;
    SCAN_PERF(r);
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t r[MAXR];
    if (h->p_cudnnGetConvolutionBackwardFilterAlgorithm_v7(h->handle, h->xd, h->yd, h->cd, h->wd,
                                                           MAXR, &n, r) != CUDNN_STATUS_SUCCESS)
      return 1;
    SCAN_PERF(r);
  }
  (void)cudaGetLastError();
  return !listed || good;
}
#undef SCAN_PERF

/* quiet probe: descriptors, workspace and heuristic; CNN_OK when e can run d */
static cnn_status dnn_probe(cnn_cuda_ctx *ctx, const cnn_cuda_engine *e, const cnn_conv_desc *d,
                            cnn_conv_dir dir, size_t *ws) {
  cnn_cuda_cudnn *h = ctx->cudnn;
  if (!h || dir != cfg_dir(e->cfg)) return CNN_UNSUPPORTED;
  h->quiet = 1;
  cnn_status s = dnn_prepare(h, d);
  if (s == CNN_OK) s = dnn_ws(h, dir, cfg_algo(e->cfg), ws);
  if (s == CNN_OK && !dnn_heuristic_ok(h, dir, cfg_algo(e->cfg))) s = CNN_UNSUPPORTED;
  h->quiet = 0;
  return s;
}

static int dnn_supports(cnn_cuda_ctx *ctx, const cnn_cuda_engine *e, const cnn_conv_desc *d,
                        cnn_conv_dir dir) {
  size_t ws = 0;
  return dnn_probe(ctx, e, d, dir, &ws) == CNN_OK;
}

static size_t dnn_workspace(cnn_cuda_ctx *ctx, const cnn_cuda_engine *e, const cnn_conv_desc *d,
                            cnn_conv_dir dir) {
  size_t ws = 0;
  return dnn_probe(ctx, e, d, dir, &ws) == CNN_OK ? ws : (size_t)-1;
}

static cnn_status dnn_run(cnn_cuda_ctx *ctx, const cnn_cuda_engine *e, const cnn_cuda_conv_call *c) {
  cnn_cuda_cudnn *h = ctx->cudnn;
  const cnn_conv_desc *d = &c->d;
  const cnn_conv_dir dir = cfg_dir(e->cfg);
  const int algo = cfg_algo(e->cfg);
  if (!h) return cnn_error(CNN_UNSUPPORTED, "engine %s: %s", e->name, g_dnn_reason);
  if (c->dir != dir)
    return cnn_error(CNN_ERR_ARG, "engine %s runs pass %d, called for pass %d", e->name,
                     (int)dir, (int)c->dir);
  const size_t P = (size_t)(d->n > 0 ? d->n : 0) * (size_t)(d->oh > 0 ? d->oh : 0) *
                   (size_t)(d->ow > 0 ? d->ow : 0);
  if (P == 0) {                       /* no output pixels: nothing to compute (cuDNN refuses) */
    if (dir == CNN_CONV_BWD_FILTER) { /* gradients of nothing are zero (overwrite) */
      const size_t wcount = (size_t)d->k * d->r * d->s * (d->c / (d->groups > 0 ? d->groups : 1));
      CUDA_CHECK(cudaMemsetAsync(c->dw, 0, wcount * sizeof(float), ctx->stream));
      if (c->db) CUDA_CHECK(cudaMemsetAsync(c->db, 0, (size_t)d->k * sizeof(float), ctx->stream));
    }
    return CNN_OK;
  }
  CNN_TRY(dnn_prepare(h, d));
  size_t need = 0;
  CNN_TRY(dnn_ws(h, dir, algo, &need));
  void *ws = need ? c->ws : NULL;
  if (need > c->ws_bytes || (need && !ws)) /* refused (with a clear message) under capture */
    CNN_TRY(cnn_cuda_scratch(ctx, need, &ws));
  const float one = 1.0f, zero = 0.0f;
  if (dir == CNN_CONV_FWD) {
    DNN_CHECK(h, h->p_cudnnConvolutionForward(h->handle, &one, h->xd, c->x, h->wd, c->w, h->cd,
                                              (cudnnConvolutionFwdAlgo_t)algo, ws, need, &zero,
                                              h->yd, c->y));
    if (ctx->sync_debug) CNN_TRY(cnn_cuda_debug_sync(ctx, e->name, __FILE__, __LINE__));
    if (c->bias) CNN_TRY(cnn_cuda_bias_add(ctx, P, (size_t)d->k, c->bias, c->y));
    if (c->act != CNN_ACT_LINEAR)
      CNN_TRY(cnn_cuda_act_fwd(ctx, c->act, c->alpha, P * (size_t)d->k, c->y, c->y));
  } else if (dir == CNN_CONV_BWD_DATA) {
    /* beta = 1: accumulate into dx */
    DNN_CHECK(h, h->p_cudnnConvolutionBackwardData(h->handle, &one, h->wd, c->w, h->yd, c->dy,
                                                   h->cd, (cudnnConvolutionBwdDataAlgo_t)algo, ws,
                                                   need, &one, h->xd, c->dx));
    if (ctx->sync_debug) CNN_TRY(cnn_cuda_debug_sync(ctx, e->name, __FILE__, __LINE__));
  } else {
    DNN_CHECK(h, h->p_cudnnConvolutionBackwardFilter(h->handle, &one, h->xd, c->x, h->yd, c->dy,
                                                     h->cd, (cudnnConvolutionBwdFilterAlgo_t)algo,
                                                     ws, need, &zero, h->wd, c->dw));
    if (ctx->sync_debug) CNN_TRY(cnn_cuda_debug_sync(ctx, e->name, __FILE__, __LINE__));
    /* db = column sums of dy viewed as [P, k], deterministic (stream order makes the
     * scratch it uses safe after cuDNN's workspace) */
    if (c->db) CNN_TRY(cnn_cuda_bias_grad(ctx, P, (size_t)d->k, c->dy, c->db));
  }
  return CNN_OK;
}

#define DNN_ENGINE(name, dir, algo) \
  { name, CNN_CUDA_FAM_CUDNN, (int)(dir) * 16 + (int)(algo), dnn_supports, dnn_workspace, dnn_run }

/* Stable names (the tune cache stores them). Left out: BWD_DATA_ALGO_0,
 * BWD_FILTER_ALGO_0 and BWD_FILTER_ALGO_3 (non-deterministic), BWD_FILTER_ALGO_WINOGRAD
 * (not implemented by cuDNN). */
static const cnn_cuda_engine g_dnn_engines[] = {
    DNN_ENGINE("cudnn-fwd-implicit-gemm", CNN_CONV_FWD, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM),
    DNN_ENGINE("cudnn-fwd-implicit-precomp-gemm", CNN_CONV_FWD,
               CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM),
    DNN_ENGINE("cudnn-fwd-gemm", CNN_CONV_FWD, CUDNN_CONVOLUTION_FWD_ALGO_GEMM),
    DNN_ENGINE("cudnn-fwd-direct", CNN_CONV_FWD, CUDNN_CONVOLUTION_FWD_ALGO_DIRECT),
    DNN_ENGINE("cudnn-fwd-fft", CNN_CONV_FWD, CUDNN_CONVOLUTION_FWD_ALGO_FFT),
    DNN_ENGINE("cudnn-fwd-fft-tiling", CNN_CONV_FWD, CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING),
    DNN_ENGINE("cudnn-fwd-winograd", CNN_CONV_FWD, CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD),
    DNN_ENGINE("cudnn-fwd-winograd-nonfused", CNN_CONV_FWD,
               CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED),
    DNN_ENGINE("cudnn-bwd-data-algo1", CNN_CONV_BWD_DATA, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1),
    DNN_ENGINE("cudnn-bwd-data-fft", CNN_CONV_BWD_DATA, CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT),
    DNN_ENGINE("cudnn-bwd-data-fft-tiling", CNN_CONV_BWD_DATA,
               CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING),
    DNN_ENGINE("cudnn-bwd-data-winograd", CNN_CONV_BWD_DATA,
               CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD),
    DNN_ENGINE("cudnn-bwd-data-winograd-nonfused", CNN_CONV_BWD_DATA,
               CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED),
    DNN_ENGINE("cudnn-bwd-filter-algo1", CNN_CONV_BWD_FILTER,
               CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1),
    DNN_ENGINE("cudnn-bwd-filter-fft", CNN_CONV_BWD_FILTER, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT),
    DNN_ENGINE("cudnn-bwd-filter-fft-tiling", CNN_CONV_BWD_FILTER,
               CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING),
    DNN_ENGINE("cudnn-bwd-filter-winograd-nonfused", CNN_CONV_BWD_FILTER,
               CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED),
};

extern "C" int cnn_cuda_cudnn_engines(const cnn_cuda_engine **list) {
  *list = g_dnn_engines;
  return (int)(sizeof g_dnn_engines / sizeof *g_dnn_engines);
}

#else /* !CNN_HAVE_CUDNN: the empty family */

extern "C" int cnn_cuda_cudnn_engines(const cnn_cuda_engine **list) {
  *list = NULL;
  return 0;
}
extern "C" cnn_status cnn_cuda_cudnn_init(cnn_cuda_ctx *ctx) {
  ctx->cudnn = NULL;
  return CNN_OK;
}
extern "C" void cnn_cuda_cudnn_release(cnn_cuda_ctx *ctx) { ctx->cudnn = NULL; }
extern "C" const char *cnn_cuda_cudnn_status(cnn_cuda_ctx *ctx) {
  (void)ctx;
  return "cuDNN not built in (cudnn.h was not found at configure time)";
}

#endif
