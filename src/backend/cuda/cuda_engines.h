/* Convolution engines of the CUDA backend: several implementations of each conv
 * pass, chosen per (shape, math, pass) by the tuner (cuda_tune.cu).
 *
 * An engine is a static description {name, family, supports, workspace, run}. Its
 * `run` has the semantics of the backend op for its pass (backend.h):
 *   CNN_CONV_FWD         y = act(conv(x, w) + bias)          (overwrite; bias may be NULL)
 *   CNN_CONV_BWD_DATA    dx += conv_transpose(dy, w)          (accumulate)
 *   CNN_CONV_BWD_FILTER  dw = corr(x, dy); db = colsum(dy)    (overwrite; db may be NULL)
 * with d.math the arithmetic it may use (F32 engines ignore it: f32 is valid for all).
 * Families:
 *   simt     cuda_conv.cu: fp32 tiled implicit GEMM / direct kernels; runs everything,
 *            the fallback and the tuner's reference
 *   own      cuda_conv_tc.cu: our tensor-core implicit GEMM (TF32 / BF16 math, sm_80+)
 *   cudnn    cuda_cudnn.cu: cuDNN 9's algorithms (compiled when cuDNN is found,
 *            loaded at run time; absent: the family is empty)
 * Names are stable: the tune cache stores them. */
#ifndef CNN_CUDA_ENGINES_H
#define CNN_CUDA_ENGINES_H

#include "backend/cuda/cuda_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cnn_cuda_family {
  CNN_CUDA_FAM_SIMT = 0, CNN_CUDA_FAM_OWN, CNN_CUDA_FAM_CUDNN, CNN_CUDA_FAM_COUNT
} cnn_cuda_family;

/* one conv pass to run: the pointers its pass reads and writes (others NULL) */
typedef struct cnn_cuda_conv_call {
  cnn_conv_desc d;
  cnn_conv_dir dir;
  const float *x;   /* [n, h, w, c]          fwd, bwd_filter */
  const float *w;   /* [k, r, s, c/groups]   fwd, bwd_data */
  const float *bias;/* [k] or NULL           fwd */
  const float *dy;  /* [n, oh, ow, k]        bwd_data, bwd_filter */
  float *y;         /* [n, oh, ow, k]        fwd (overwritten) */
  float *dx;        /* [n, h, w, c]          bwd_data (accumulated) */
  float *dw;        /* [k, r, s, c/groups]   bwd_filter (overwritten) */
  float *db;        /* [k] or NULL           bwd_filter (overwritten) */
  cnn_act act;      /* fwd epilogue (LINEAR: none) */
  float alpha;      /* its slope (leaky) */
  void *ws;         /* workspace the caller planned (may be NULL when ws_bytes == 0) */
  size_t ws_bytes;
} cnn_cuda_conv_call;

typedef struct cnn_cuda_engine cnn_cuda_engine;
struct cnn_cuda_engine {
  const char *name;          /* unique and stable, e.g. "simt", "tc-bf16-128x128", "cudnn-fwd-1" */
  cnn_cuda_family family;
  int cfg;                   /* the family's own variant index */
  /* nonzero when it can run pass dir of d on this device (math, cc, shape limits) */
  int (*supports)(cnn_cuda_ctx *ctx, const cnn_cuda_engine *e, const cnn_conv_desc *d,
                  cnn_conv_dir dir);
  /* workspace bytes it needs for (d, dir); (size_t)-1: cannot say (treated as unsupported) */
  size_t (*workspace)(cnn_cuda_ctx *ctx, const cnn_cuda_engine *e, const cnn_conv_desc *d,
                      cnn_conv_dir dir);
  cnn_status (*run)(cnn_cuda_ctx *ctx, const cnn_cuda_engine *e, const cnn_cuda_conv_call *c);
};

/* Each family's engines: sets *list to a static array and returns its length. */
int cnn_cuda_simt_engines(const cnn_cuda_engine **list);   /* cuda_conv.cu */
int cnn_cuda_own_engines(const cnn_cuda_engine **list);    /* cuda_conv_tc.cu */
int cnn_cuda_cudnn_engines(const cnn_cuda_engine **list);  /* cuda_cudnn.cu (0 without cuDNN) */

/* cuDNN state: created at backend create when cuDNN is compiled in and its library
 * loads (ctx->cudnn stays NULL otherwise, with the reason kept for `cnn devices`);
 * released at destroy. */
cnn_status cnn_cuda_cudnn_init(cnn_cuda_ctx *ctx);
void cnn_cuda_cudnn_release(cnn_cuda_ctx *ctx);
/* "cuDNN 9.19.0" or why it is not there (static or ctx-owned string) */
const char *cnn_cuda_cudnn_status(cnn_cuda_ctx *ctx);

/* cuBLASLt (cuda_gemm_lt.cu): gemm with TF32 / BF16 math and bias / activation
 * epilogues; the backend's gemm_ex op. */
cnn_status cnn_cuda_lt_init(cnn_cuda_ctx *ctx);
void cnn_cuda_lt_release(cnn_cuda_ctx *ctx);
cnn_status cnn_cuda_gemm_ex(void *ctx, const cnn_gemm_desc *g);

/* The tuner (cuda_tune.cu): backend ops conv_engines / conv_tune / conv_engine /
 * set_option, and the dispatch every conv op goes through. */
cnn_status cnn_cuda_tuner_init(cnn_cuda_ctx *ctx);
void cnn_cuda_tuner_release(cnn_cuda_ctx *ctx);
int cnn_cuda_conv_engines(void *ctx, const cnn_conv_desc *d, cnn_conv_dir dir, const char **names,
                          int max);
cnn_status cnn_cuda_conv_tune(void *ctx, const cnn_conv_desc *d, cnn_conv_dir dir, size_t ws_bytes);
const char *cnn_cuda_conv_engine(void *ctx, const cnn_conv_desc *d, cnn_conv_dir dir);
cnn_status cnn_cuda_set_option(void *ctx, const char *key, const char *value);
/* the end of a backward-filter split over pixels (cuda_conv.cu): dw = the `splits`
 * slabs [splits][wcount] summed in order (slabs may be dw itself when splits == 1),
 * db = column sums of dy [P, k] if db != NULL */
cnn_status cnn_cuda_conv_filter_finish(cnn_cuda_ctx *ctx, size_t wcount, int splits,
                                       const float *slabs, float *dw, size_t P, int k,
                                       const float *dy, float *db);
/* workspace the faster engines of d's three passes may use: the most any engine
 * that supports a pass asks for, capped by the workspace budget (0 when the
 * engine is forced to simt) */
size_t cnn_cuda_conv_ws_reserve(cnn_cuda_ctx *ctx, const cnn_conv_desc *d);
/* run c with the engine chosen for (c->d, c->dir) (tuning first if needed and allowed) */
cnn_status cnn_cuda_conv_dispatch(cnn_cuda_ctx *ctx, const cnn_cuda_conv_call *c);

#ifdef __cplusplus
}
#endif
#endif
