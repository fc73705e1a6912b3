/* The cuda backend's gemm_ex (cuBLASLt with epilogues, src/backend/cuda/cuda_gemm_lt.cu)
 * against ref's gemm + bias_add + act_fwd: all four transpose combinations, odd
 * sizes, strides larger than the rows, beta 0 and 1, with and without a bias, the
 * activations cuBLASLt fuses (RELU) and those it does not (GELU, LEAKY), each math,
 * and pointers that are only 4-byte aligned (cuBLASLt's heuristic is told the real
 * alignment). The padding between rows of C must stay untouched, and with beta 0
 * C is not read (it starts as NaN). Under graph capture, a cached plan runs and a
 * missing one takes the fallback.
 *
 * Tolerance, relative to max(1, |ref|), scaled by sqrt(k) (the terms summed),
 * values in [-1, 1]:
 *   F32  1e-5 sqrt(k)   (f32 products and sums)
 *   TF32 2e-3 sqrt(k)   (operands rounded to 10 mantissa bits: 2^-11 each)
 *   BF16 1e-2 sqrt(k)   (operands rounded to 7 mantissa bits: 2^-8 each)
 * Exits 77 (ctest SKIP) without CUDA or a device. */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "testutil.h"

static const double TOL[3] = {1e-5, 2e-3, 1e-2};
static const char *const MATH[3] = {"f32", "tf32", "bf16"};
#define SENTINEL 12345.0f

typedef struct {
  int ta, tb, m, n, k, pad; /* pad: extra elements per row of A, B, C */
  float beta;
  int bias, act, math, misalign;
} gcase;

static cnn_backend *gpu, *ref;

/* one case (failed CHECKs count themselves) */
static void run_case(const gcase *t, uint64_t seed) {
  const int m = t->m, n = t->n, k = t->k;
  const int arows = t->ta ? k : m, acols = t->ta ? m : k;
  const int brows = t->tb ? n : k, bcols = t->tb ? k : n;
  const int lda = acols + t->pad, ldb = bcols + t->pad, ldc = n + t->pad;
  const int off = t->misalign ? 1 : 0; /* elements: a 4-byte aligned view */
  const size_t na = (size_t)arows * lda + off, nb = (size_t)brows * ldb + off,
               nc = (size_t)m * ldc + off, nbias = (size_t)n + off;
  float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b), *c0 = malloc(nc * sizeof *c0);
  float *want = malloc(nc * sizeof *want), *got = malloc(nc * sizeof *got);
  float *bias = malloc(nbias * sizeof *bias);
  void *da = NULL, *db = NULL, *dc = NULL, *dbias = NULL;
  char what[256];
  snprintf(what, sizeof what,
           "gemm_ex ta=%d tb=%d m=%d n=%d k=%d pad=%d beta=%g bias=%d act=%d math=%s misalign=%d",
           t->ta, t->tb, m, n, k, t->pad, t->beta, t->bias, t->act, MATH[t->math], t->misalign);
  CHECK(a && b && c0 && want && got && bias, "out of memory");
  if (!(a && b && c0 && want && got && bias)) goto done;
  tu_fill_uniform(a, na, -1.0f, 1.0f, seed);
  tu_fill_uniform(b, nb, -1.0f, 1.0f, seed + 1);
  tu_fill_uniform(bias, nbias, -1.0f, 1.0f, seed + 2);
  for (size_t i = 0; i < nc; i++) c0[i] = SENTINEL; /* padding */
  for (int r = 0; r < m; r++)
    for (int j = 0; j < n; j++) {
      size_t i = (size_t)off + (size_t)r * ldc + j;
      /* beta 0: C must not be read, so it starts as NaN */
      c0[i] = t->beta == 0.0f ? NAN : (float)(((r * 7 + j * 3) % 17) - 8) / 8.0f;
    }

  /* the reference: ref's gemm, then bias_add and act_fwd row by row (ldc > n) */
  memcpy(want, c0, nc * sizeof *want);
  if (t->beta == 0.0f)
    for (int r = 0; r < m; r++)
      for (int j = 0; j < n; j++) want[off + (size_t)r * ldc + j] = 0.0f; /* ref may read C */
  {
    const cnn_backend_ops *o = ref->ops;
    CHECK_OK(o->gemm(ref->ctx, t->ta, t->tb, m, n, k, 1.0f, a + off, lda, b + off, ldb, t->beta,
                     want + off, ldc));
    for (int r = 0; r < m; r++) {
      float *row = want + off + (size_t)r * ldc;
      if (t->bias) CHECK_OK(o->bias_add(ref->ctx, 1, (size_t)n, bias + off, row));
      CHECK_OK(o->act_fwd(ref->ctx, (cnn_act)t->act, 0.1f, (size_t)n, row, row));
    }
  }

  /* the device */
  {
    const cnn_backend_ops *o = gpu->ops;
    void *c = gpu->ctx;
    CHECK_OK(o->alloc(c, na * sizeof(float), &da));
    CHECK_OK(o->alloc(c, nb * sizeof(float), &db));
    CHECK_OK(o->alloc(c, nc * sizeof(float), &dc));
    CHECK_OK(o->alloc(c, nbias * sizeof(float), &dbias));
    if (!da || !db || !dc || !dbias) goto done;
    CHECK_OK(o->upload(c, da, a, na * sizeof(float)));
    CHECK_OK(o->upload(c, db, b, nb * sizeof(float)));
    CHECK_OK(o->upload(c, dc, c0, nc * sizeof(float)));
    CHECK_OK(o->upload(c, dbias, bias, nbias * sizeof(float)));
    cnn_gemm_desc g = {.trans_a = t->ta, .trans_b = t->tb, .m = m, .n = n, .k = k, .lda = lda,
                       .ldb = ldb, .ldc = ldc, .alpha = 1.0f, .beta = t->beta,
                       .a = (const float *)da + off, .b = (const float *)db + off,
                       .bias = t->bias ? (const float *)dbias + off : NULL,
                       .c = (float *)dc + off, .act = t->act, .act_alpha = 0.1f,
                       .math = (cnn_math)t->math};
    cnn_status s = o->gemm_ex(c, &g);
    CHECK(s == CNN_OK, "%s: %s", what, cnn_last_error());
    CHECK_OK(o->download(c, got, dc, nc * sizeof(float)));
  }
  {
    const double tol = TOL[t->math] * sqrt((double)(k > 0 ? k : 1));
    double worst = 0.0;
    size_t where = 0;
    int pad_ok = off == 0 || got[0] == SENTINEL;
    for (int r = 0; r < m; r++) {
      const size_t row = (size_t)off + (size_t)r * ldc;
      for (int j = 0; j < n; j++) {
        double w = want[row + j], gv = got[row + j];
        double e = fabs(gv - w) / (fabs(w) > 1.0 ? fabs(w) : 1.0);
        if (!(e <= worst)) { /* NaN counts as the worst */
          worst = isnan(e) ? INFINITY : e;
          where = row + j;
        }
      }
      for (int j = n; j < ldc; j++) pad_ok &= got[row + j] == SENTINEL;
    }
    CHECK(worst <= tol, "%s: max error %.3g > %.3g at %zu (got %g, want %g)", what, worst, tol,
          where, got[where], want[where]);
    CHECK(pad_ok, "%s: the padding between rows of C was written", what);
  }
done:
  if (gpu) {
    gpu->ops->free(gpu->ctx, da);
    gpu->ops->free(gpu->ctx, db);
    gpu->ops->free(gpu->ctx, dc);
    gpu->ops->free(gpu->ctx, dbias);
  }
  free(a);
  free(b);
  free(c0);
  free(want);
  free(got);
  free(bias);
}

/* Under CUDA graph capture: a shape whose plan exists (made by an eager call) and
 * one first seen inside the capture (it must take the fallback, allocating nothing);
 * both replayed twice and compared with ref. */
static void test_capture(void) {
  const cnn_backend_ops *o = gpu->ops;
  void *c = gpu->ctx;
  if (!o->capture_begin || !o->capture_end || !o->graph_launch) return;
  enum { M = 64, N = 96, K = 80 };
  const int n2 = N - 1; /* another plan key, same buffers (ldc = N) */
  float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * N * K);
  float *bias = malloc(sizeof(float) * N), *want = malloc(sizeof(float) * M * N * 2);
  float *got = malloc(sizeof(float) * M * N * 2);
  void *da = NULL, *db = NULL, *dbias = NULL, *dc = NULL, *graph = NULL;
  tu_fill_uniform(a, (size_t)M * K, -1, 1, 501);
  tu_fill_uniform(b, (size_t)N * K, -1, 1, 502);
  tu_fill_uniform(bias, N, -1, 1, 503);
  for (int h = 0; h < 2; h++) { /* ref: C_h = relu(A B^T + bias), columns < (h ? n2 : N) */
    float *w = want + (size_t)h * M * N;
    const int nn = h ? n2 : N;
    for (size_t i = 0; i < (size_t)M * N; i++) w[i] = 0.0f;
    CHECK_OK(ref->ops->gemm(ref->ctx, 0, 1, M, nn, K, 1.0f, a, K, b, K, 0.0f, w, N));
    for (int r = 0; r < M; r++) {
      CHECK_OK(ref->ops->bias_add(ref->ctx, 1, (size_t)nn, bias, w + (size_t)r * N));
      CHECK_OK(ref->ops->act_fwd(ref->ctx, CNN_ACT_RELU, 0, (size_t)nn, w + (size_t)r * N,
                                 w + (size_t)r * N));
    }
  }
  CHECK_OK(o->alloc(c, sizeof(float) * M * K, &da));
  CHECK_OK(o->alloc(c, sizeof(float) * N * K, &db));
  CHECK_OK(o->alloc(c, sizeof(float) * N, &dbias));
  CHECK_OK(o->alloc(c, sizeof(float) * M * N * 2, &dc));
  if (!da || !db || !dbias || !dc) goto done;
  CHECK_OK(o->upload(c, da, a, sizeof(float) * M * K));
  CHECK_OK(o->upload(c, db, b, sizeof(float) * N * K));
  CHECK_OK(o->upload(c, dbias, bias, sizeof(float) * N));
  CHECK_OK(o->fill(c, (float *)dc, (size_t)M * N * 2, 0.0f));
  cnn_gemm_desc g1 = {.trans_a = 0, .trans_b = 1, .m = M, .n = N, .k = K, .lda = K, .ldb = K,
                      .ldc = N, .alpha = 1.0f, .beta = 0.0f, .a = da, .b = db, .bias = dbias,
                      .c = dc, .act = CNN_ACT_RELU, .math = CNN_MATH_TF32};
  cnn_gemm_desc g2 = g1;
  g2.n = n2;
  g2.c = (float *)dc + (size_t)M * N;
  CHECK_OK(o->gemm_ex(c, &g1)); /* makes g1's plan */
  CHECK_OK(o->sync(c));
  CHECK_OK(o->fill(c, (float *)dc, (size_t)M * N * 2, 0.0f));
  CHECK_OK(o->capture_begin(c));
  cnn_status s1 = o->gemm_ex(c, &g1), s2 = o->gemm_ex(c, &g2);
  cnn_status se = o->capture_end(c, &graph);
  CHECK(s1 == CNN_OK && s2 == CNN_OK && se == CNN_OK, "gemm_ex under capture: %s",
        cnn_last_error());
  if (graph) {
    for (int rep = 0; rep < 2; rep++) CHECK_OK(o->graph_launch(c, graph));
    CHECK_OK(o->download(c, got, dc, sizeof(float) * M * N * 2));
    const double tol = TOL[CNN_MATH_TF32] * sqrt((double)K);
    tu_check_close("gemm_ex captured, cached plan", got, want, (size_t)M * N, tol);
    tu_check_close("gemm_ex captured, plan missing (fallback)", got + (size_t)M * N,
                   want + (size_t)M * N, (size_t)M * N, tol);
    if (o->graph_free) o->graph_free(c, graph);
  }
done:
  o->free(c, da);
  o->free(c, db);
  o->free(c, dbias);
  o->free(c, dc);
  free(a);
  free(b);
  free(bias);
  free(want);
  free(got);
}

int main(void) {
  tu_need_cuda();
  CHECK_OK(cnn_backend_ref_create(&ref));
  CHECK_OK(cnn_backend_cuda_create(&gpu));
  if (!gpu || !ref) return tu_finish("test_gpu_gemm_ex");
  CHECK(gpu->ops->gemm_ex != NULL, "the cuda backend has no gemm_ex");
  if (!gpu->ops->gemm_ex) return tu_finish("test_gpu_gemm_ex");

  static const int shapes[][3] = {{1, 1, 1},     {3, 130, 257}, {257, 3, 130}, {130, 257, 3},
                                  {257, 257, 257}, {1, 257, 130}, {130, 1, 3},   {64, 128, 256}};
  static const int acts[] = {CNN_ACT_LINEAR, CNN_ACT_RELU, CNN_ACT_GELU, CNN_ACT_LEAKY};
  const int nshapes = (int)(sizeof shapes / sizeof *shapes);
  uint64_t seed = 1;
  int count = 0;
  /* every shape x transposes x math; the other options cycle so each meets each */
  for (int s = 0; s < nshapes; s++)
    for (int tr = 0; tr < 4; tr++)
      for (int mt = 0; mt < 3; mt++, count++) {
        gcase t = {.ta = tr & 1, .tb = tr >> 1, .m = shapes[s][0], .n = shapes[s][1],
                   .k = shapes[s][2], .pad = (count % 3 == 1) ? 5 : 0,
                   .beta = (count / 2) % 2 ? 1.0f : 0.0f, .bias = (count / 4) % 2 == 0,
                   .act = acts[count % 4], .math = mt, .misalign = count % 7 == 3};
        run_case(&t, seed += 7);
      }
  /* the full epilogue grid on one shape, every math */
  for (int mt = 0; mt < 3; mt++)
    for (int ai = 0; ai < 4; ai++)
      for (int bias = 0; bias < 2; bias++)
        for (int beta = 0; beta < 2; beta++)
          for (int mis = 0; mis < 2; mis++) {
            gcase t = {.ta = 0, .tb = 1, .m = 33, .n = 130, .k = 67, .pad = mis ? 3 : 0,
                       .beta = (float)beta, .bias = bias, .act = acts[ai], .math = mt,
                       .misalign = mis};
            run_case(&t, seed += 7);
          }
  /* the same case twice: the second call takes the cached plan */
  for (int rep = 0; rep < 2; rep++) {
    gcase t = {.ta = 1, .tb = 0, .m = 130, .n = 257, .k = 130, .beta = 1.0f, .bias = 1,
               .act = CNN_ACT_RELU, .math = CNN_MATH_TF32};
    run_case(&t, 99);
  }
  test_capture();
  gpu->ops->destroy(gpu);
  ref->ops->destroy(ref);
  return tu_finish("test_gpu_gemm_ex");
}
