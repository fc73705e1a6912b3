/* gemm_ex through cuBLASLt: row-major C[m, n] = act(alpha op(A) op(B) + beta C + bias[n])
 * with the math of the desc (backend.h, cnn_gemm_desc).
 *
 * Row-major to column-major: a row-major matrix with row stride ld is the
 * column-major transpose with leading dimension ld, so we compute
 *   D' = C^T [n x m] = op(B)^T op(A)^T     (cuBLASLt's A is our B, its B our A)
 * exactly as cnn_cuda_gemm does with cublasSgemm. cuBLASLt's bias epilogue adds a
 * vector "of length = rows of D" broadcast over D's columns; D' has n rows, so our
 * bias[n] (per output column of row-major C) is exactly its bias vector.
 *
 * Math: F32 -> CUBLAS_COMPUTE_32F; TF32 -> CUBLAS_COMPUTE_32F_FAST_TF32; BF16 ->
 * CUBLAS_COMPUTE_32F_FAST_16BF (f32 A/B/C, products of bf16-rounded operands,
 * f32 accumulation); when the heuristic finds no algorithm for FAST_16BF we use
 * FAST_TF32 (more precise, so still valid for CNN_MATH_BF16).
 *
 * Epilogues: LINEAR -> BIAS or DEFAULT; RELU -> RELU_BIAS or RELU. GELU is NOT taken
 * from cuBLASLt (its GELU is documented without saying which form; ours is the exact
 * erf form, so we do not rely on it); GELU and every other activation run the matmul
 * with the BIAS (or DEFAULT) epilogue and then our own strided epilogue kernel
 * (act_f of cuda_device.cuh, the kernel act_fwd uses).
 *
 * Plans: the matmul descriptor, the three layouts and the heuristic's algorithm are
 * cached per (m, n, k, trans, ld, math, epilogue, pointer alignments) in a small ring
 * (LT_CACHE entries), created on the first call outside graph capture; only the bias
 * pointer is set per call. Under capture a missing plan is not created (no descriptor
 * churn inside a graph): the call takes the fallback, cnn_cuda_gemm (cuBLAS, f32)
 * followed by our epilogue kernel; so do shapes cuBLASLt refuses
 * (CUBLAS_STATUS_NOT_SUPPORTED, no heuristic result), remembered in the plan.
 *
 * Workspace: cuBLAS's fixed workspace (ctx->cublas_ws, CNN_CUDA_CUBLAS_WS). cuBLAS and
 * cuBLASLt only ever run on ctx->stream, so their uses of it are serialised by
 * stream order. */
#include <stdlib.h>
#include <string.h>

#include <cublasLt.h>

#include "backend/cuda/cuda_device.cuh"
#include "backend/cuda/cuda_engines.h"

#define LT_CACHE 128 /* a training step of ~40 dense layers has ~120 distinct gemms */

typedef struct lt_key {
  int m, n, k, ta, tb, lda, ldb, ldc;
  int math;       /* cnn_math */
  int epi;        /* cublasLtEpilogue_t */
  int align[3];   /* bytes (power of 2, <= 256) of a, b, c */
} lt_key;

typedef struct lt_plan {
  int used;
  lt_key key;
  int fallback;   /* cuBLASLt cannot run it: take cnn_cuda_gemm + our epilogue */
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t la, lb, lc;  /* cuBLASLt's A (our B), B (our A), C = D */
  cublasLtMatmulAlgo_t algo;
} lt_plan;

struct cnn_cuda_lt {
  cublasLtHandle_t handle;
  lt_plan plans[LT_CACHE];
  int next;       /* ring position of the next plan replaced */
};

static void plan_clear(lt_plan *p) {
  if (p->lc) (void)cublasLtMatrixLayoutDestroy(p->lc);
  if (p->lb) (void)cublasLtMatrixLayoutDestroy(p->lb);
  if (p->la) (void)cublasLtMatrixLayoutDestroy(p->la);
  if (p->op) (void)cublasLtMatmulDescDestroy(p->op);
  memset(p, 0, sizeof *p);
}

extern "C" cnn_status cnn_cuda_lt_init(cnn_cuda_ctx *ctx) {
  ctx->lt = NULL;
  cnn_cuda_lt *lt = (cnn_cuda_lt *)calloc(1, sizeof *lt);
  if (!lt) return cnn_error(CNN_ERR_NOMEM, "cuBLASLt state: out of host memory");
  cublasStatus_t s = cublasLtCreate(&lt->handle);
  if (s != CUBLAS_STATUS_SUCCESS) {
    free(lt);
    (void)cudaGetLastError();
    return cnn_error(CNN_ERR_DEVICE, "%s:%d: cublasLtCreate: %s", __FILE__, __LINE__,
                     cublasGetStatusString(s));
  }
  ctx->lt = lt;
  return CNN_OK;
}

extern "C" void cnn_cuda_lt_release(cnn_cuda_ctx *ctx) {
  if (!ctx || !ctx->lt) return;
  for (int i = 0; i < LT_CACHE; i++) plan_clear(&ctx->lt->plans[i]);
  if (ctx->lt->handle) (void)cublasLtDestroy(ctx->lt->handle);
  free(ctx->lt);
  ctx->lt = NULL;
}

/* ---- our epilogue: c[r, j] = act(c[r, j] + bias[j]) over [m, n] with row stride ldc ---- */

static __global__ void k_lt_epilogue(int m, int n, int ldc, const float *bias, int act,
                                     float alpha, float *c) {
  const size_t total = (size_t)m * n;
  GRID_STRIDE(i, total) {
    const size_t r = i / (size_t)n, j = i - r * (size_t)n;
    float *p = c + r * (size_t)ldc + j;
    const float v = *p + (bias ? bias[j] : 0.0f);
    *p = act_f(act, alpha, v);
  }
}

static cnn_status epilogue(cnn_cuda_ctx *ctx, const cnn_gemm_desc *g, const float *bias, int act) {
  if (!bias && act == CNN_ACT_LINEAR) return CNN_OK;
  const size_t total = (size_t)g->m * g->n;
  k_lt_epilogue<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(
      g->m, g->n, g->ldc, bias, act, g->act_alpha, g->c);
  LAUNCH_CHECK("k_lt_epilogue");
  return CNN_OK;
}

/* cuBLAS f32 gemm, then bias and activation by our kernel: valid for every math */
static cnn_status gemm_fallback(cnn_cuda_ctx *ctx, const cnn_gemm_desc *g) {
  CNN_TRY(cnn_cuda_gemm(ctx, g->trans_a, g->trans_b, g->m, g->n, g->k, g->alpha, g->a, g->lda,
                        g->b, g->ldb, g->beta, g->c, g->ldc));
  return epilogue(ctx, g, g->bias, g->act);
}

/* ---- plans ---------------------------------------------------------------------- */

static int align_of(const void *p) {
  uintptr_t a = (uintptr_t)p;
  int al = 256;
  while (al > 1 && (a & (uintptr_t)(al - 1))) al >>= 1;
  return al;
}

static cublasComputeType_t compute_of(int math) {
  if (math == CNN_MATH_TF32) return CUBLAS_COMPUTE_32F_FAST_TF32;
  if (math == CNN_MATH_BF16) return CUBLAS_COMPUTE_32F_FAST_16BF;
  return CUBLAS_COMPUTE_32F;
}

/* Build p for its key: descriptors and one heuristic algorithm. CNN_OK with
 * p->fallback set when cuBLASLt has no algorithm; an error only for failures that
 * are not "unsupported". */
static cnn_status plan_build(cnn_cuda_ctx *ctx, lt_plan *p, cublasComputeType_t ct) {
  const lt_key *k = &p->key;
  const cublasOperation_t opa = k->tb ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLASLt's A = our B */
  const cublasOperation_t opb = k->ta ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLASLt's B = our A */
  const int32_t epi = k->epi;
  cublasLtMatmulPreference_t pref = NULL;
  cublasLtMatmulHeuristicResult_t res;
  int nres = 0;
  cublasStatus_t s;

  CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, ct, CUDA_R_32F));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
  /* stored (pre-op) column-major shapes: our B is [k, n] row-major = [n rows, k cols]
   * column-major (transposed: [k rows, n cols]); our A likewise with m */
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->la, CUDA_R_32F, k->tb ? k->k : k->n,
                                          k->tb ? k->n : k->k, k->ldb));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_32F, k->ta ? k->m : k->k,
                                          k->ta ? k->k : k->m, k->lda));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lc, CUDA_R_32F, k->n, k->m, k->ldc));

  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  {
    const uint64_t wsb = ctx->cublas_ws_bytes;
    const uint32_t aa = (uint32_t)k->align[1], ab = (uint32_t)k->align[0],
                   ac = (uint32_t)k->align[2];
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb,
                                             sizeof wsb);
    /* cuBLASLt's A is our b, its B our a; C and D are our c */
    if (s == CUBLAS_STATUS_SUCCESS)
      s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                               &aa, sizeof aa);
    if (s == CUBLAS_STATUS_SUCCESS)
      s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                               &ab, sizeof ab);
    if (s == CUBLAS_STATUS_SUCCESS)
      s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                               &ac, sizeof ac);
    if (s == CUBLAS_STATUS_SUCCESS)
      s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                               &ac, sizeof ac);
    if (s == CUBLAS_STATUS_SUCCESS)
      s = cublasLtMatmulAlgoGetHeuristic(ctx->lt->handle, p->op, p->la, p->lb, p->lc, p->lc,
                                         pref, 1, &res, &nres);
    (void)cublasLtMatmulPreferenceDestroy(pref);
  }
  (void)cudaGetLastError();
  if (s == CUBLAS_STATUS_SUCCESS && nres > 0 && res.state == CUBLAS_STATUS_SUCCESS) {
    p->algo = res.algo;
    return CNN_OK;
  }
  if (s != CUBLAS_STATUS_SUCCESS && s != CUBLAS_STATUS_NOT_SUPPORTED &&
      s != CUBLAS_STATUS_INVALID_VALUE)
    return cnn_error(CNN_ERR_DEVICE, "%s:%d: cublasLtMatmulAlgoGetHeuristic: %s", __FILE__,
                     __LINE__, cublasGetStatusString(s));
  if (ct == CUBLAS_COMPUTE_32F_FAST_16BF) { /* BF16 not offered: TF32 is valid for it */
    lt_key keep = p->key;
    plan_clear(p);
    p->key = keep;
    p->used = 1;
    return plan_build(ctx, p, CUBLAS_COMPUTE_32F_FAST_TF32);
  }
  p->fallback = 1;
  return CNN_OK;
}

/* the cached plan for key, or a new one (never while capturing: NULL then) */
static cnn_status plan_get(cnn_cuda_ctx *ctx, const lt_key *key, lt_plan **out) {
  cnn_cuda_lt *lt = ctx->lt;
  *out = NULL;
  for (int i = 0; i < LT_CACHE; i++)
    if (lt->plans[i].used && memcmp(&lt->plans[i].key, key, sizeof *key) == 0) {
      *out = &lt->plans[i];
      return CNN_OK;
    }
  if (ctx->capturing) return CNN_OK;
  lt_plan *p = &lt->plans[lt->next];
  lt->next = (lt->next + 1) % LT_CACHE;
  plan_clear(p);
  p->used = 1;
  p->key = *key;
  cnn_status s = plan_build(ctx, p, compute_of(key->math));
  if (s != CNN_OK) {
    plan_clear(p);
    return s;
  }
  *out = p;
  return CNN_OK;
}

/* ---- the op ----------------------------------------------------------------------- */

extern "C" cnn_status cnn_cuda_gemm_ex(void *vctx, const cnn_gemm_desc *g) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (!g) return cnn_error(CNN_ERR_ARG, "cuda gemm_ex: desc is NULL");
  if (g->m < 0 || g->n < 0 || g->k < 0)
    return cnn_error(CNN_ERR_ARG, "cuda gemm_ex: negative size m=%d n=%d k=%d", g->m, g->n, g->k);
  if ((int)g->act < 0 || (int)g->act >= CNN_ACT_COUNT)
    return cnn_error(CNN_ERR_ARG, "cuda gemm_ex: unknown activation %d", g->act);
  if (g->m == 0 || g->n == 0) return CNN_OK;
  if (g->lda < (g->trans_a ? g->m : g->k) || g->ldb < (g->trans_b ? g->k : g->n) ||
      g->ldc < g->n || g->lda < 1 || g->ldb < 1)
    return cnn_error(CNN_ERR_ARG, "cuda gemm_ex: strides lda=%d ldb=%d ldc=%d too small for "
                     "m=%d n=%d k=%d (trans %d %d)", g->lda, g->ldb, g->ldc, g->m, g->n, g->k,
                     g->trans_a, g->trans_b);
  if (!ctx->lt || g->k == 0) return gemm_fallback(ctx, g);

  /* what cuBLASLt fuses; the rest is our epilogue afterwards. The bias epilogue
   * wants a packed, aligned vector: a bias not 16-byte aligned is added by us. */
  const float *lt_bias = g->bias && align_of(g->bias) >= 16 ? g->bias : NULL;
  int lt_relu = g->act == CNN_ACT_RELU && (lt_bias || !g->bias);
  cublasLtEpilogue_t epi = lt_relu ? (lt_bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU)
                                   : (lt_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT);
  const float *after_bias = lt_bias ? NULL : g->bias;
  const int after_act = lt_relu ? CNN_ACT_LINEAR : g->act;

  lt_key key;
  memset(&key, 0, sizeof key); /* memcmp'd: no stray padding */
  key.m = g->m; key.n = g->n; key.k = g->k;
  key.ta = g->trans_a != 0; key.tb = g->trans_b != 0;
  key.lda = g->lda; key.ldb = g->ldb; key.ldc = g->ldc;
  key.math = (int)g->math; key.epi = (int)epi;
  key.align[0] = align_of(g->b);  /* cuBLASLt's A */
  key.align[1] = align_of(g->a);  /* cuBLASLt's B */
  key.align[2] = align_of(g->c);
  lt_plan *p = NULL;
  CNN_TRY(plan_get(ctx, &key, &p));
  if (!p || p->fallback) return gemm_fallback(ctx, g);

  if (lt_bias)
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &lt_bias,
                                                sizeof lt_bias));
  const float alpha = g->alpha, beta = g->beta;
  cublasStatus_t s = cublasLtMatmul(ctx->lt->handle, p->op, &alpha, g->b, p->la, g->a, p->lb, &beta,
                                    g->c, p->lc, g->c, p->lc, &p->algo, ctx->cublas_ws,
                                    ctx->cublas_ws_bytes, ctx->stream);
  if (s == CUBLAS_STATUS_NOT_SUPPORTED) { /* remember, and take the fallback */
    (void)cudaGetLastError();
    p->fallback = 1;
    return gemm_fallback(ctx, g);
  }
  CUBLAS_CHECK(s);
  if (ctx->sync_debug) CNN_TRY(cnn_cuda_debug_sync(ctx, "cublasLtMatmul", __FILE__, __LINE__));
  return epilogue(ctx, g, after_bias, after_act);
}
