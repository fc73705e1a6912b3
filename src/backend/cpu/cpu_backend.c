/* The `cpu` backend: host memory, the op table, and the small ops (elementwise,
 * GEMM, bias, Darknet shortcut, dropout mask, optimizers). Activations, conv,
 * pooling, normalisation and the step-program ops live in cpu_act.c, cpu_conv.c,
 * cpu_pool.c, cpu_norm.c, cpu_bnact.c and cpu_program.c (see cpu.h).
 * ctx is a cpu_ctx (cpu_engine.c): the conv engine setting and what was chosen per
 * shape, and oneDNN's engine when it is built. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

/* Loops with a select (x > 0 ? a : b) vectorise only if GCC may evaluate both
 * sides; nothing here reads floating-point exception flags. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "core/rng.h"

/* ---- memory ---- */

cnn_status cpu_alloc_aligned(size_t bytes, const char *what, void **ptr) {
  *ptr = NULL;
  if (bytes > SIZE_MAX - CPU_ALIGN)
    return cnn_error(CNN_ERR_NOMEM, "cpu %s: %zu bytes is too large", what, bytes);
  size_t rounded = (bytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN;
  if (rounded == 0) rounded = CPU_ALIGN;
  *ptr = aligned_alloc(CPU_ALIGN, rounded);
  if (!*ptr)
    return cnn_error(CNN_ERR_NOMEM, "cpu %s: out of host memory for %zu bytes", what, bytes);
  return CNN_OK;
}

static void cpu_destroy(cnn_backend *b) {
  if (!b) return;
  cpu_ctx_destroy(b->ctx);
  free(b);
}

/* zero bytes still gets a unique, freeable block */
static cnn_status cpu_alloc(void *ctx, size_t bytes, void **ptr) {
  CPU_NEED(ptr, "alloc");
  return cpu_alloc_aligned(bytes, "alloc", ptr);
}

static void cpu_free(void *ctx, void *ptr) { free(ptr); }

/* upload, download and copy are all host to host; copy allows overlap */
static cnn_status cpu_memcpy(const char *op, void *dst, const void *src, size_t bytes) {
  if (bytes == 0) return CNN_OK;
  CPU_NEED(dst, op);
  CPU_NEED(src, op);
  memmove(dst, src, bytes);
  return CNN_OK;
}

static cnn_status cpu_upload(void *ctx, void *dst, const void *src_host, size_t bytes) {
  return cpu_memcpy("upload", dst, src_host, bytes);
}

static cnn_status cpu_download(void *ctx, void *dst_host, const void *src, size_t bytes) {
  return cpu_memcpy("download", dst_host, src, bytes);
}

static cnn_status cpu_copy(void *ctx, void *dst, const void *src, size_t bytes) {
  return cpu_memcpy("copy", dst, src, bytes);
}

/* every op runs to completion before returning */
static cnn_status cpu_sync(void *ctx) { return CNN_OK; }

/* host staging memory: any host memory is as fast as any other here */
static cnn_status cpu_host_alloc(void *ctx, size_t bytes, void **ptr) {
  CPU_NEED(ptr, "host_alloc");
  return cpu_alloc_aligned(bytes, "host_alloc", ptr);
}

/* ---- deterministic column sums (shared with conv bias grads and batch norm) ---- */

#define CPU_RED_CHUNKS 64   /* at most this many row chunks ... */
#define CPU_RED_ROWS 16     /* ... of at least this many rows */

/* acc[j] += sum_r a[r, j] on the calling thread, every term in double (sums of
 * gradients cancel heavily, so float partials would cost accuracy) */
void cpu_colsum_add(size_t rows, size_t cols, size_t ld, const float *a, double *acc) {
  for (size_t r = 0; r < rows; r++) {
    const float *ar = a + r * ld;
#pragma omp simd
    for (size_t j = 0; j < cols; j++) acc[j] += ar[j];
  }
}

/* chunk rows [r0, r1) of cpu_colsum into acc (zeroed by the caller) */
typedef struct colsum_arg {
  size_t cols, ld;
  const float *a, *b;
  const double *center;
  int mode;
} colsum_arg;

static void colsum_rows(size_t r0, size_t r1, const void *varg, double *acc) {
  const colsum_arg *g = varg;
  const size_t cols = g->cols, ld = g->ld;
  const double *center = g->center;
  if (g->mode == 0) {
    cpu_colsum_add(r1 - r0, cols, ld, g->a + r0 * ld, acc);
    return;
  }
  for (size_t r = r0; r < r1; r++) {
    const float *ar = g->a + r * ld;
    if (g->mode == 1) {
      double *acc2 = acc + cols;
#pragma omp simd
      for (size_t j = 0; j < cols; j++) {
        double t = ar[j] - center[j];
        acc[j] += t;
        acc2[j] += t * t;
      }
    } else {
      const float *br = g->b + r * ld;
      double *acc2 = acc + cols;
#pragma omp simd
      for (size_t j = 0; j < cols; j++) {
        acc[j] += ar[j];
        acc2[j] += ar[j] * (br[j] - center[j]);
      }
    }
  }
}

cnn_status cpu_reduce_rows(size_t rows, size_t width, size_t row_work, cpu_rows_fn fn,
                           const void *arg, double *out, const char *op) {
  if (width == 0) return CNN_OK;
  /* the chunking depends on the shape only, never on the thread count */
  size_t per = (rows + CPU_RED_CHUNKS - 1) / CPU_RED_CHUNKS;
  if (per < CPU_RED_ROWS) per = CPU_RED_ROWS;
  size_t chunks = (rows + per - 1) / per;
  if (chunks <= 1) {
    for (size_t j = 0; j < width; j++) out[j] = 0.0;
    fn(0, rows, arg, out);
    return CNN_OK;
  }
  double *part;
  CNN_TRY(cpu_alloc_aligned(chunks * width * sizeof *part, op, (void **)&part));
  int par = rows * row_work >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
  for (size_t p = 0; p < chunks; p++) {
    size_t r0 = p * per, r1 = r0 + per < rows ? r0 + per : rows;
    double *acc = part + p * width;
    for (size_t j = 0; j < width; j++) acc[j] = 0.0;
    fn(r0, r1, arg, acc);
  }
  for (size_t j = 0; j < width; j++) out[j] = part[j];
  for (size_t p = 1; p < chunks; p++) {
    const double *pp = part + p * width;
#pragma omp simd
    for (size_t j = 0; j < width; j++) out[j] += pp[j];
  }
  free(part);
  return CNN_OK;
}

cnn_status cpu_colsum(size_t rows, size_t cols, size_t ld, const float *a, const float *b,
                      const double *center, int mode, double *out, const char *op) {
  colsum_arg g = {cols, ld, a, b, center, mode};
  size_t width = (mode == 0 ? 1 : 2) * cols;
  return cpu_reduce_rows(rows, cols ? width : 0, cols, colsum_rows, &g, out, op);
}

/* ---- elementwise ---- */

cnn_status cpu_fill(void *ctx, float *x, size_t n, float v) {
  CPU_NEED(x, "fill");
#pragma omp parallel for simd schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) x[i] = v;
  return CNN_OK;
}

/* y = alpha x + beta y; beta == 0 must not read y (it may hold NaN) */
cnn_status cpu_axpby(void *ctx, size_t n, float alpha, const float *x, float beta, float *y) {
  CPU_NEED(x, "axpby");
  CPU_NEED(y, "axpby");
  if (beta == 0.0f) {
#pragma omp parallel for simd schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = alpha * x[i];
  } else {
#pragma omp parallel for simd schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = alpha * x[i] + beta * y[i];
  }
  return CNN_OK;
}

cnn_status cpu_add(void *ctx, size_t n, const float *a, const float *b, float *y) {
  CPU_NEED(a, "add");
  CPU_NEED(b, "add");
  CPU_NEED(y, "add");
#pragma omp parallel for simd schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
  return CNN_OK;
}

/* y = a b + beta y; beta == 0 must not read y */
cnn_status cpu_mul(void *ctx, size_t n, const float *a, const float *b, float beta, float *y) {
  CPU_NEED(a, "mul");
  CPU_NEED(b, "mul");
  CPU_NEED(y, "mul");
  if (beta == 0.0f) {
#pragma omp parallel for simd schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = a[i] * b[i];
  } else if (beta == 1.0f) {
#pragma omp parallel for simd schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] += a[i] * b[i];
  } else {
#pragma omp parallel for simd schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = a[i] * b[i] + beta * y[i];
  }
  return CNN_OK;
}

cnn_status cpu_copy2d(void *ctx, size_t rows, size_t cols, const float *src, size_t src_stride,
                      float *dst, size_t dst_stride, int accumulate) {
  CPU_NEED(src, "copy2d");
  CPU_NEED(dst, "copy2d");
  int par = rows > 1 && rows * cols >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
  for (size_t r = 0; r < rows; r++) {
    const float *s = src + r * src_stride;
    float *d = dst + r * dst_stride;
    if (accumulate) {
#pragma omp simd
      for (size_t j = 0; j < cols; j++) d[j] += s[j];
    } else {
      memmove(d, s, cols * sizeof *d);
    }
  }
  return CNN_OK;
}

/* ---- dense ---- */

/* C[m, n] = alpha op(A) op(B) + beta C; beta == 0: C is not read (NaN stays out).
 * OpenBLAS's sgemm zeroes C for beta == 0 before accumulating (it never forms
 * 0 * C), and the degenerate sizes are handled here so cblas never sees them.
 * OpenBLAS runs single-threaded (see cnn_backend_cpu_create); big products are
 * split over the OpenMP team by rows of C (or columns when C is wide), one sgemm
 * per thread; each element of C comes from exactly one call (no reduction across
 * threads), so results are deterministic for a given team size. */
#define CPU_GEMM_PAR_MIN ((double)(1 << 20)) /* multiply-adds */

/* One row (m == 1) or one column (n == 1) of C: matrix-vector products. OpenBLAS
 * 0.3.21's sgemm packs all of B even for one row of A (batch-1 dense layers:
 * measured 0.73 ms against sgemv's 0.16 ms for 1 x 3136 x 1024 on 2 threads, Zen 2).
 * The matrix is split over the team by its rows of output, one sgemv each; beta == 0
 * clears C first so that its old contents (NaN) never reach the sum. */
static cnn_status gemm_vec(int trans_a, int trans_b, int m, int n, int k, float alpha,
                           const float *a, int lda, const float *b, int ldb, float beta, float *c,
                           int ldc, int par) {
  /* m == 1: c[j] = sum_l op(B)[l][j] v[l], v = row 0 of op(A); the matrix is B
   * (n x k rows when trans_b, else k x n read transposed).
   * n == 1: c[i*ldc] = sum_l op(A)[i][l] v[l], v = column 0 of op(B). */
  const int row = m == 1;
  const int len = row ? n : m;               /* outputs */
  const float *mat = row ? b : a;
  const int ld = row ? ldb : lda;
  const int mtrans = row ? !trans_b : trans_a; /* the matrix is stored [k][len] */
  const float *v = row ? a : b;
  const int incv = row ? (trans_a ? lda : 1) : (trans_b ? 1 : ldb);
  const int incc = row ? 1 : ldc;
#pragma omp parallel if (par)
  {
    size_t t = (size_t)cpu_thread_num(), nt = (size_t)cpu_num_threads();
    int lo = (int)((size_t)len * t / nt), hi = (int)((size_t)len * (t + 1) / nt);
    if (hi > lo) {
      float *cc = c + (size_t)lo * incc;
      float bt = beta;
      if (beta == 0.0f) {
        for (int i = 0; i < hi - lo; i++) cc[(size_t)i * incc] = 0.0f;
        bt = 1.0f;
      }
      if (mtrans) /* [k][len]: columns [lo, hi) */
        cblas_sgemv(CblasRowMajor, CblasTrans, k, hi - lo, alpha, mat + lo, ld, v, incv, bt, cc,
                    incc);
      else /* [len][k]: rows [lo, hi) */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, hi - lo, k, alpha, mat + (size_t)lo * ld, ld, v,
                    incv, bt, cc, incc);
    }
  }
  return CNN_OK;
}

cnn_status cpu_gemm(void *ctx, int trans_a, int trans_b, int m, int n, int k, float alpha,
                    const float *a, int lda, const float *b, int ldb, float beta, float *c,
                    int ldc) {
  if (m < 0 || n < 0 || k < 0)
    return cnn_error(CNN_ERR_ARG, "cpu gemm: negative size m=%d n=%d k=%d", m, n, k);
  int a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
  if (lda < a_cols || ldb < b_cols || ldc < n)
    return cnn_error(CNN_ERR_ARG,
                     "cpu gemm: row strides lda=%d ldb=%d ldc=%d shorter than rows %d %d %d",
                     lda, ldb, ldc, a_cols, b_cols, n);
  CPU_NEED(a, "gemm");
  CPU_NEED(b, "gemm");
  CPU_NEED(c, "gemm");
  if (m == 0 || n == 0) return CNN_OK;
  if (k == 0 || alpha == 0.0f) { /* C = beta C */
    for (int i = 0; i < m; i++) {
      float *ci = c + (size_t)i * ldc;
      if (beta == 0.0f)
        for (int j = 0; j < n; j++) ci[j] = 0.0f;
      else
        for (int j = 0; j < n; j++) ci[j] *= beta;
    }
    return CNN_OK;
  }
  int par = (double)m * n * k >= CPU_GEMM_PAR_MIN && (m > 1 || n > 1);
  if (m == 1 || n == 1) return gemm_vec(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, par);
  const enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
  const enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  const int by_rows = m >= n;
#pragma omp parallel if (par)
  {
    size_t t = (size_t)cpu_thread_num(), nt = (size_t)cpu_num_threads();
    size_t len = by_rows ? (size_t)m : (size_t)n;
    int lo = (int)(len * t / nt), hi = (int)(len * (t + 1) / nt);
    if (hi > lo) {
      if (by_rows) /* rows [lo, hi) of C and of op(A) */
        cblas_sgemm(CblasRowMajor, ta, tb, hi - lo, n, k, alpha,
                    trans_a ? a + lo : a + (size_t)lo * lda, lda, b, ldb, beta,
                    c + (size_t)lo * ldc, ldc);
      else /* columns [lo, hi) of C and of op(B) */
        cblas_sgemm(CblasRowMajor, ta, tb, m, hi - lo, k, alpha, a, lda,
                    trans_b ? b + (size_t)lo * ldb : b + lo, ldb, beta, c + lo, ldc);
    }
  }
  return CNN_OK;
}

/* y[rows, cols] += bias[cols] broadcast over rows */
cnn_status cpu_bias_add(void *ctx, size_t rows, size_t cols, const float *bias, float *y) {
  CPU_NEED(bias, "bias_add");
  CPU_NEED(y, "bias_add");
  int par = rows > 1 && rows * cols >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
  for (size_t r = 0; r < rows; r++) {
    float *yr = y + r * cols;
#pragma omp simd
    for (size_t j = 0; j < cols; j++) yr[j] += bias[j];
  }
  return CNN_OK;
}

/* db[cols] = column sums of dy[rows, cols] (overwrites), summed in double */
cnn_status cpu_bias_grad(void *ctx, size_t rows, size_t cols, const float *dy, float *db) {
  CPU_NEED(dy, "bias_grad");
  CPU_NEED(db, "bias_grad");
  if (cols == 0) return CNN_OK;
  double stack[256], *sum = stack;
  if (cols > 256) CNN_TRY(cpu_alloc_aligned(cols * sizeof *sum, "bias_grad", (void **)&sum));
  cnn_status s = cpu_colsum(rows, cols, cols, dy, NULL, NULL, 0, sum, "bias_grad");
  if (s == CNN_OK)
    for (size_t j = 0; j < cols; j++) db[j] = (float)sum[j];
  if (sum != stack) free(sum);
  return s;
}

/* ---- Darknet shortcut (rule in backend.h) ---- */

static cnn_status check_shortcut(const cnn_shortcut_desc *d, const char *op) {
  CPU_NEED(d, op);
  if (d->n < 0 || d->h1 < 1 || d->w1 < 1 || d->c1 < 1 || d->h2 < 1 || d->w2 < 1 || d->c2 < 1)
    return cnn_error(CNN_ERR_ARG, "cpu %s: bad shapes n=%d from %dx%dx%d to %dx%dx%d", op, d->n,
                     d->h1, d->w1, d->c1, d->h2, d->w2, d->c2);
  return CNN_OK;
}

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

/* Forward adds from[n, y*stride, x*stride, :minc] into out[n, y*sample, x*sample, :minc];
 * backward adds dout into dfrom along the same pairs. Distinct (n, y) give distinct
 * rows on both sides, so rows run in parallel. Strides come from the widths, as in
 * Darknet; a row or column the ratio would place outside the other tensor (only
 * possible when the h and w ratios differ) is skipped, as in ref. */
static void shortcut_pairs(const cnn_shortcut_desc *d, int backward, const float *src,
                           float *dst) {
  int stride = imax(d->w1 / d->w2, 1), sample = imax(d->w2 / d->w1, 1);
  int minh = imin(d->h1, d->h2), minw = imin(d->w1, d->w2), minc = imin(d->c1, d->c2);
  size_t nrows = (size_t)d->n * minh;
  int par = nrows > 1 && nrows * minw * minc >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
  for (size_t row = 0; row < nrows; row++) {
    int n = (int)(row / minh), y = (int)(row % minh);
    int y1 = y * stride, y2 = y * sample;
    if (y1 >= d->h1 || y2 >= d->h2) continue;
    for (int x = 0; x < minw; x++) {
      int x1 = x * stride, x2 = x * sample;
      if (x1 >= d->w1 || x2 >= d->w2) continue;
      size_t i1 = (((size_t)n * d->h1 + y1) * d->w1 + x1) * d->c1;
      size_t i2 = (((size_t)n * d->h2 + y2) * d->w2 + x2) * d->c2;
      float *o = dst + (backward ? i1 : i2);
      const float *f = src + (backward ? i2 : i1);
#pragma omp simd
      for (int ch = 0; ch < minc; ch++) o[ch] += f[ch];
    }
  }
}

cnn_status cpu_shortcut_fwd(void *ctx, const cnn_shortcut_desc *d, const float *from,
                            float *out) {
  CNN_TRY(check_shortcut(d, "shortcut_fwd"));
  CPU_NEED(from, "shortcut_fwd");
  CPU_NEED(out, "shortcut_fwd");
  shortcut_pairs(d, 0, from, out);
  return CNN_OK;
}

cnn_status cpu_shortcut_bwd(void *ctx, const cnn_shortcut_desc *d, const float *dout,
                            float *dfrom) {
  CNN_TRY(check_shortcut(d, "shortcut_bwd"));
  CPU_NEED(dout, "shortcut_bwd");
  CPU_NEED(dfrom, "shortcut_bwd");
  shortcut_pairs(d, 1, dout, dfrom);
  return CNN_OK;
}

/* ---- dropout: mask[i] = (u(seed, offset + i) >= p) / (1 - p), bit-equal to ref:
 * the keep value is the float 1.0f / (1.0f - p); p == 1 drops everything. */
cnn_status cpu_dropout_mask(void *ctx, size_t n, float p, uint64_t seed, uint64_t offset,
                            float *mask) {
  CPU_NEED(mask, "dropout_mask");
  if (!(p >= 0.0f && p <= 1.0f))
    return cnn_error(CNN_ERR_ARG, "cpu dropout_mask: probability %g is not in [0, 1]", p);
  float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
#pragma omp parallel for simd schedule(static) if (n >= CPU_PAR_MIN / 4)
  for (size_t i = 0; i < n; i++)
    mask[i] = cnn_rng_uniform(seed, offset + i) >= p ? keep_scale : 0.0f;
  return CNN_OK;
}

/* ---- optimizers ---- */

/* PyTorch SGD: g = grad + wd p; v = momentum v + g; p -= lr (nesterov ? g + momentum v : v) */
cnn_status cpu_sgd_step(void *ctx, size_t n, float *p, const float *g, float *v, float lr,
                        float momentum, float wd, int nesterov) {
  CPU_NEED(p, "sgd_step");
  CPU_NEED(g, "sgd_step");
  CPU_NEED(v, "sgd_step");
#pragma omp parallel for simd schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) {
    float gi = g[i] + wd * p[i];
    float vi = momentum * v[i] + gi;
    v[i] = vi;
    p[i] -= lr * (nesterov ? gi + momentum * vi : vi);
  }
  return CNN_OK;
}

/* Adam (wd as L2 in g) / AdamW (p -= lr wd p first); t is the 1-based step */
cnn_status cpu_adam_step(void *ctx, size_t n, float *p, const float *g, float *m, float *v,
                         float lr, float b1, float b2, float eps, float wd, int decoupled,
                         int64_t t) {
  CPU_NEED(p, "adam_step");
  CPU_NEED(g, "adam_step");
  CPU_NEED(m, "adam_step");
  CPU_NEED(v, "adam_step");
  if (t < 1) return cnn_error(CNN_ERR_ARG, "cpu adam_step: step %lld must be >= 1", (long long)t);
  float inv_bc1 = (float)(1.0 / (1.0 - pow((double)b1, (double)t)));
  float inv_bc2 = (float)(1.0 / (1.0 - pow((double)b2, (double)t)));
  float l2 = decoupled ? 0.0f : wd, decay = decoupled ? lr * wd : 0.0f;
  float c1 = 1.0f - b1, c2 = 1.0f - b2;
  /* not `simd`: sqrtf sets errno, which keeps compilers from vectorising it unless
   * the build says -fno-math-errno */
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) {
    float pi = p[i];
    float gi = g[i] + l2 * pi;
    pi -= decay * pi;
    float mi = b1 * m[i] + c1 * gi;
    float vi = b2 * v[i] + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - lr * (mi * inv_bc1) / (sqrtf(vi * inv_bc2) + eps);
  }
  return CNN_OK;
}

/* ---- the op table ---- */

static const cnn_backend_ops cpu_ops = {
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .copy = cpu_copy,
    .sync = cpu_sync,
    .mem_info = cnn_host_mem_info,
    .host_alloc = cpu_host_alloc,
    .host_free = cpu_free,
    .fill = cpu_fill,
    .axpby = cpu_axpby,
    .add = cpu_add,
    .mul = cpu_mul,
    .copy2d = cpu_copy2d,
    .act_fwd = cpu_act_fwd,
    .act_bwd = cpu_act_bwd,
    .gemm = cpu_gemm,
    .bias_add = cpu_bias_add,
    .bias_grad = cpu_bias_grad,
    .conv_workspace = cpu_conv_workspace,
    .weights_changed = cpu_weights_changed,
    .conv_fwd = cpu_conv_fwd,
    .conv_bwd_data = cpu_conv_bwd_data,
    .conv_bwd_filter = cpu_conv_bwd_filter,
    .maxpool_fwd = cpu_maxpool_fwd,
    .maxpool_bwd = cpu_maxpool_bwd,
    .avgpool_fwd = cpu_avgpool_fwd,
    .avgpool_bwd = cpu_avgpool_bwd,
    .bn_fwd_train = cpu_bn_fwd_train,
    .bn_fwd_infer = cpu_bn_fwd_infer,
    .bn_bwd = cpu_bn_bwd,
    .shortcut_fwd = cpu_shortcut_fwd,
    .shortcut_bwd = cpu_shortcut_bwd,
    .dropout_mask = cpu_dropout_mask,
    .softmax_xent_fwd = cpu_softmax_xent_fwd,
    .softmax_xent_bwd = cpu_softmax_xent_bwd,
    .sgd_step = cpu_sgd_step,
    .adam_step = cpu_adam_step,
    /* step programs */
    .upload_async = cpu_upload_async,
    .cast = cpu_cast,
    .gather_aug = cpu_gather_aug,
    .data_seek = cpu_data_seek,
    .read_async = cpu_read_async,
    .read_done = cpu_read_done,
    .step_begin = cpu_step_begin,
    .step_end = cpu_step_end,
    .metrics_reset = cpu_metrics_reset,
    .check_finite = cpu_check_finite,
    .softmax_xent_step = cpu_softmax_xent_step,
    .sgd_step_st = cpu_sgd_step_st,
    .adam_step_st = cpu_adam_step_st,
    .dropout_mask_st = cpu_dropout_mask_st,
    .bn_act_fwd_train = cpu_bn_act_fwd_train,
    .bn_act_fwd_infer = cpu_bn_act_fwd_infer,
    .bn_act_bwd = cpu_bn_act_bwd,
    .bn_commit = cpu_bn_commit,
    .bn_fold = cpu_bn_fold,
    .conv_fwd_act = cpu_conv_fwd_act,
    .add_act_fwd = cpu_add_act_fwd,
    .add_act_bwd = cpu_add_act_bwd,
    .crop_fwd = cpu_crop_fwd,
    .crop_bwd = cpu_crop_bwd,
    .reorg_fwd = cpu_reorg_fwd,
    .reorg_bwd = cpu_reorg_bwd,
    .maxpool_bwd_set = cpu_maxpool_bwd_set,
    .bn_act_bwd_set = cpu_bn_act_bwd_set,
    .bn_act_pool_fwd = cpu_bn_act_pool_fwd,
    .bn_act_pool_bwd = cpu_bn_act_pool_bwd,
    .team_info = cpu_team_info,
    /* capture_*: no graphs on the host; NULL */
    /* conv engines: ours and oneDNN's (cpu_engine.c) */
    .matrix_math = cpu_matrix_math,
    .conv_engines = cpu_conv_engines,
    .conv_tune = cpu_conv_tune,
    .conv_engine = cpu_conv_engine,
    .set_option = cpu_set_option,
};

/* One thread pool: OpenMP's. A pthreads OpenBLAS keeps its own pool, whose
 * spinning workers and OpenMP's take each other's cores (2.5x slower convs on 2
 * cores, see cpu_conv.c), so it is told to run single-threaded and every op splits
 * its GEMMs over the OpenMP team itself. An OpenMP OpenBLAS needs nothing: it runs
 * single-threaded inside a parallel region by itself, and its
 * openblas_set_num_threads would change the OpenMP thread count. */
static void cpu_blas_single_thread(void) {
#if defined(OPENBLAS_VERSION) && defined(OPENBLAS_THREAD)
  if (openblas_get_parallel() == OPENBLAS_THREAD && openblas_get_num_threads() != 1)
    openblas_set_num_threads(1);
#endif
}

cnn_status cnn_backend_cpu_create(cnn_backend **out) {
  CPU_NEED(out, "create");
  *out = NULL;
  cpu_blas_single_thread();
  (void)cnn_cpu_threads(NULL); /* affinity and cgroup quota, unless OMP_NUM_THREADS */
  cpu_ctx *ctx;
  CNN_TRY(cpu_ctx_create(&ctx));
  cnn_backend *b = malloc(sizeof *b);
  if (!b) {
    cpu_ctx_destroy(ctx);
    return cnn_error(CNN_ERR_NOMEM, "cpu create: out of host memory");
  }
  b->name = "cpu";
  b->ctx = ctx;
  b->ops = &cpu_ops;
  *out = b;
  return CNN_OK;
}
