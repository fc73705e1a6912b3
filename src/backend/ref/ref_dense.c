/* ref: row-major GEMM and the dense bias ops. */
#include "backend/ref/ref.h"

/* op(A)[i, p]: A is stored [m, k] (lda >= k), or [k, m] (lda >= m) when transposed */
static float op_a(const float *a, int lda, int trans, int i, int p) {
  return trans ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
}

/* op(B)[p, j]: B is stored [k, n] (ldb >= n), or [n, k] (ldb >= k) when transposed */
static float op_b(const float *b, int ldb, int trans, int p, int j) {
  return trans ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
}

static cnn_status check_gemm(int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc) {
  if (m < 0 || n < 0 || k < 0)
    return cnn_error(CNN_ERR_ARG, "ref gemm: negative size m=%d n=%d k=%d", m, n, k);
  int a_cols = ta ? m : k, b_cols = tb ? k : n;
  if (lda < a_cols || ldb < b_cols || ldc < n)
    return cnn_error(CNN_ERR_ARG,
                     "ref gemm: row strides lda=%d ldb=%d ldc=%d shorter than rows %d %d %d",
                     lda, ldb, ldc, a_cols, b_cols, n);
  return CNN_OK;
}

/* C[m, n] = alpha op(A) op(B) + beta C; beta == 0: C is not read (NaN stays out) */
cnn_status ref_gemm(void *ctx, int trans_a, int trans_b, int m, int n, int k, float alpha,
                    const float *a, int lda, const float *b, int ldb, float beta, float *c,
                    int ldc) {
  CNN_TRY(check_gemm(trans_a, trans_b, m, n, k, lda, ldb, ldc));
  REF_NEED(a, "gemm");
  REF_NEED(b, "gemm");
  REF_NEED(c, "gemm");
  for (int i = 0; i < m; i++) {
    for (int j = 0; j < n; j++) {
      double sum = 0;
      for (int p = 0; p < k; p++)
        sum += (double)op_a(a, lda, trans_a, i, p) * op_b(b, ldb, trans_b, p, j);
      float *cij = &c[(size_t)i * ldc + j];
      double old = beta == 0.0f ? 0.0 : (double)beta * *cij;
      *cij = (float)(alpha * sum + old);
    }
  }
  return CNN_OK;
}

/* y[rows, cols] += bias[cols] broadcast over rows */
cnn_status ref_bias_add(void *ctx, size_t rows, size_t cols, const float *bias, float *y) {
  REF_NEED(bias, "bias_add");
  REF_NEED(y, "bias_add");
  for (size_t r = 0; r < rows; r++)
    for (size_t j = 0; j < cols; j++) y[r * cols + j] += bias[j];
  return CNN_OK;
}

/* db[cols] = column sums of dy[rows, cols] (overwrites) */
cnn_status ref_bias_grad(void *ctx, size_t rows, size_t cols, const float *dy, float *db) {
  REF_NEED(dy, "bias_grad");
  REF_NEED(db, "bias_grad");
  for (size_t j = 0; j < cols; j++) {
    double sum = 0;
    for (size_t r = 0; r < rows; r++) sum += dy[r * cols + j];
    db[j] = (float)sum;
  }
  return CNN_OK;
}
