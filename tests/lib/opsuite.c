/* The op suite: see opsuite.h.
 *
 * Tolerances. tu_check_close measures e = |got - want| / max(|got|, |want|, 1), and
 * `want` comes from ref, which accumulates in double, so e is the f32 backend's own
 * rounding error. With u = 2^-24 ~ 6e-8 the unit roundoff, an elementwise op of
 * O(1) condition (a few roundings, libm's expf/erff/tanhf within a few ulp) shows
 * e of a few u; tol_f32 = 1e-5 ~ 170 u is the budget for one such op.
 *
 * An output that sums K terms (conv, gemm, pooling windows, bias_grad, the batch
 * statistics of BN) picks up one rounding per addition. Our inputs are zero-mean
 * (uniform in [-1, 1)), so the partial sums and the result grow like sqrt(K) and
 * the rounding errors add like a random walk: the error relative to the result is
 * ~u sqrt(K) for sequential summation and smaller for blocked or pairwise sums
 * (Higham & Mary's probabilistic bound gives the same sqrt(K) growth). Hence:
 *     tol(K) = tol_f32 * sqrt(K),
 * where K counts every term of the sum, including an accumulated dx or a beta*C.
 * This keeps the ~170x margin per unit of sqrt(K) that the elementwise budget has,
 * which covers the maximum over ~1e5 outputs, not only the typical error.
 *
 * Softmax cross-entropy with logits of magnitude up to L: rounding z - max(z) costs
 * an absolute error of u L in the exponent, hence a relative u L in every
 * probability and an absolute u L in log p (and in the loss, which combines log p
 * with weights summing to 1); the normaliser is a sum of C positive terms (u sqrt C).
 * The two add: tol = tol_f32 * (max(1, L) + sqrt(C)).
 *
 * Exact (tol 0): fill, copy, copy2d without accumulation (moves, no arithmetic),
 * maxpool_fwd (a max rounds nothing), dropout_mask (every backend draws the same
 * counter-based numbers; the contract requires the identical mask).
 *
 * Per op:
 *   fill, copy, copy2d(acc 0), dropout_mask     0
 *   axpby, add, mul, copy2d(acc 1), bias_add    tol_f32
 *   act_fwd, act_bwd (all activations)          tol_f32
 *   shortcut_fwd, shortcut_bwd                  tol_f32 (one addition per element)
 *   gemm                                        tol_f32 * sqrt(k + (beta != 0))
 *   bias_grad                                   tol_f32 * sqrt(rows)
 *   conv_fwd                                    tol_f32 * sqrt((c/g) r s + (bias != 0))
 *   conv_bwd_data                               tol_f32 * sqrt((k/g) r s + 1)   (+1: dx)
 *   conv_bwd_filter dw, db                      tol_f32 * sqrt(n oh ow)
 *   maxpool_fwd                                 0 (a max involves no rounding)
 *   maxpool_bwd, avgpool_bwd                    tol_f32 * sqrt(windows per cell + 1)
 *   maxpool_bwd_set (dx poisoned first)         tol_f32 * sqrt(windows per cell)
 *   avgpool_fwd                                 tol_f32 * sqrt(kh kw)
 *   bn_fwd_train (y, stats), bn_bwd             tol_f32 * sqrt(rows): every output
 *                                               depends on sums over the rows (x has
 *                                               mean 1: E[x^2]/var = 1.75, so even a
 *                                               one-pass variance loses < 1 bit)
 *   bn_fwd_infer                                tol_f32 (running var in [0.5, 1.5],
 *                                               so 1/sqrt(var+eps) does not amplify)
 *   softmax_xent_fwd probs, loss                tol_f32 * (max(1, L) + sqrt(C))
 *   softmax_xent_bwd                            tol_f32
 *   sgd_step, adam_step (p, v, m)               tol_f32 (lr small enough that the
 *                                               f32 bias correction 1 - b2^t, which
 *                                               cancels, perturbs p by < lr * 2e-5)
 *
 * Step-program ops (opsuite_program.c). An activation after a sum keeps the sum's
 * budget: every slope is <= 1.13 (GELU) and, where the output is much smaller than
 * its input (sigmoid/tanh saturating, leaky below 0), the slope shrinks the error
 * with it. ReLU/leaky derivatives of a recomputed BN output z are made safe by
 * moving x so that |z| >= 1e-3 (tu_bn_off_kink): an f32 z cannot change sign.
 *   upload_async, read_async                    0 (copies)
 *   cast (f32 <-> bf16)                         0 (one rounding rule, core/bf16.h)
 *   step_begin, step_end, metrics_reset,        integers exact, lr / sums / loss ring
 *   check_finite (the step state)               tol_f32 (one division or addition)
 *   softmax_xent_step probs, loss               tol_f32 * (max(1, L) + sqrt(C)), L the
 *                                               largest |inv_temp * logit|
 *   softmax_xent_step dlogits                   the same: |dscale| <= 1 times the error
 *                                               of the backend's own probabilities
 *   softmax_xent_step step_loss                 n * the loss tolerance (n rows summed;
 *                                               n is small, so the worst case is cheap);
 *                                               step_correct, step_n, nonfinite exact.
 *                                               NaN logit: nonfinite == LOSS and a
 *                                               non-finite step_loss on both sides
 *   sgd_step_st, adam_step_st                   as sgd_step / adam_step; refused step
 *                                               (nonfinite != 0): 0, p/v/m untouched
 *   dropout_mask_st                             0 (same counter-based draws)
 *   bn_act_fwd_train (y, save_*), bn_act_bwd,   tol_f32 * sqrt(rows), as bn_fwd_train
 *   bn_act_bwd_set (dx poisoned first),
 *   bn_act_pool_fwd, bn_act_pool_bwd (set 0, 1)
 *   bn_act_pool_fwd sel                         0 (x on a 1/64 grid: no near ties)
 *   bn_act_pool_* without bn (gamma NULL),      tol_f32 (one activation)
 *   and on running statistics
 *   bn_act_fwd_infer                            tol_f32, as bn_fwd_infer
 *   bn_commit                                   tol_f32 (a blend of two values); 0 when
 *                                               refused
 *   bn_fold (wout, bout)                        tol_f32 (a product, a sum of two; rvar
 *                                               in [0.5, 1.5])
 *   conv_fwd_act                                tol_f32 * sqrt((c/g) r s + (bias != 0))
 *   add_act_fwd, add_act_bwd                    tol_f32; GELU backward must give
 *                                               CNN_ERR_ARG and write nothing; an output
 *                                               given as NULL (da or db) is untouched: 0
 *
 * Darknet's crop and reorg (opsuite_crop_reorg.c):
 *   crop_fwd, crop_bwd                          tol_f32 (x scale + off, dx + scale dy:
 *                                               two roundings); the windows, flips and
 *                                               shifts are integer draws, the same
 *   reorg_fwd                                   0 (a permutation, zeros for extra)
 *   reorg_bwd                                   tol_f32 (one addition per element)
 */
#include "opsuite.h"
#include "opsuite_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- host helpers ---------------------------------------------------------- */

void *xmalloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "opsuite: out of host memory (%zu bytes)\n", bytes);
    exit(1);
  }
  return p;
}

float *hvec(size_t n) { return (float *)xmalloc(n * sizeof(float)); }

void urand(suite *S, float *x, size_t n, float lo, float hi) {
  tu_fill_uniform(x, n, lo, hi, S->seed++);
}

float *hrand(suite *S, size_t n, float lo, float hi) {
  float *x = hvec(n);
  urand(S, x, n, lo, hi);
  return x;
}

double tol_sum(const suite *S, double k) { return S->tol * sqrt(k < 1 ? 1 : k); }

/* ---- backend memory ------------------------------------------------------------ */

void mem_fatal(suite *S, int side, const char *what, size_t bytes, cnn_status st) {
  fprintf(stderr, "FAIL opsuite: %s of %zu bytes on backend '%s' failed: %s: %s\n", what,
          bytes, S->be[side]->name, cnn_status_name(st), cnn_last_error());
  exit(1);
}

void buf_upload_raw(suite *S, buf *b, const void *host) {
  size_t bytes = (b->n + GUARD) * sizeof(float);
  float *tmp = hvec(b->n + GUARD);
  if (b->n) memcpy(tmp, host, b->n * sizeof(float));
  for (size_t i = 0; i < GUARD; i++) tmp[b->n + i] = SENTINEL;
  for (int side = 0; side < 2; side++) {
    cnn_status st = S->be[side]->ops->upload(S->be[side]->ctx, b->d[side], tmp, bytes);
    if (st != CNN_OK) mem_fatal(S, side, "upload", bytes, st);
  }
  free(tmp);
}

void buf_set(suite *S, buf *b, const float *host) { buf_upload_raw(S, b, host); }

void buf_poison(suite *S, buf *b) {
  float *tmp = hvec(b->n);
  tu_poison(tmp, b->n);
  buf_upload_raw(S, b, tmp);
  free(tmp);
}

buf buf_new(suite *S, size_t n) {
  buf b;
  size_t bytes = (n + GUARD) * sizeof(float);
  b.n = n;
  for (int side = 0; side < 2; side++) {
    b.d[side] = NULL;
    cnn_status st = S->be[side]->ops->alloc(S->be[side]->ctx, bytes, &b.d[side]);
    if (st != CNN_OK || !b.d[side]) mem_fatal(S, side, "alloc", bytes, st);
  }
  buf_poison(S, &b);
  return b;
}

/* a new buffer holding `host` (n floats) on both sides */
buf buf_from(suite *S, const float *host, size_t n) {
  buf b = buf_new(S, n);
  buf_set(S, &b, host);
  return b;
}

void buf_free(suite *S, buf *b) {
  for (int side = 0; side < 2; side++)
    if (b->d[side]) S->be[side]->ops->free(S->be[side]->ctx, b->d[side]);
  b->d[0] = b->d[1] = NULL;
}

void buf_get(suite *S, const buf *b, int side, float *host /* n + GUARD */) {
  size_t bytes = (b->n + GUARD) * sizeof(float);
  cnn_status st = S->be[side]->ops->download(S->be[side]->ctx, host, b->d[side], bytes);
  if (st != CNN_OK) mem_fatal(S, side, "download", bytes, st);
}

void check_guard(suite *S, const buf *b, int side, const float *host, const char *label) {
  size_t bad = GUARD;
  for (size_t i = 0; i < GUARD; i++)
    if (memcmp(&host[b->n + i], &(float){SENTINEL}, sizeof(float))) {
      bad = i;
      break;
    }
  CHECK(bad == GUARD, "%s: backend '%s' wrote past the end of the %zu-element buffer (at +%zu)",
        label, S->be[side]->name, b->n, bad);
}

/* Compare b on the test side with b on the ref side: guards intact on both, then
 * tu_check_close over the n elements. */
void check(suite *S, const buf *b, const char *op, const char *cas, const char *what,
           double tol) {
  char label[320];
  float *got = hvec(b->n + GUARD), *want = hvec(b->n + GUARD);
  snprintf(label, sizeof label, "%s[%s] %s (%s vs %s)", op, cas, what, S->be[T]->name,
           S->be[R]->name);
  buf_get(S, b, T, got);
  buf_get(S, b, R, want);
  check_guard(S, b, T, got, label);
  check_guard(S, b, R, want, label);
  size_t at = 0;
  double e = tu_max_rel_err(got, want, b->n, &at);
  if (tu_check_close(label, got, want, b->n, tol) && S->verbose)
    printf("  ok  %-70s err %.2e tol %.2e\n", label, e, tol);
  free(got);
  free(want);
}

/* ---- running an op on both sides ---------------------------------------------- */

static int reported(suite *S, const char *op) {
  for (int i = 0; i < S->ndone; i++)
    if (!strcmp(S->done[i], op)) return 1;
  return 0;
}

static void mark(suite *S, const char *op) {
  if (S->ndone < MAX_DONE) S->done[S->ndone++] = op;
}

/* 1 if the op may run: ref must have it (else a failure), test may lack it (skip). */
int gate(suite *S, const char *op, int have_test, int have_ref) {
  if (reported(S, op)) return 0;
  if (!have_ref) {
    tu_checks++;
    tu_failures++;
    fprintf(stderr, "FAIL %s: the reference backend '%s' has no entry (NULL)\n", op,
            S->be[R]->name);
    mark(S, op);
    return 0;
  }
  if (!have_test) { /* cpu and cuda implement the whole table: a gap is a failure */
    tu_checks++;
    tu_failures++;
    fprintf(stderr, "FAIL %s: the backend '%s' has no entry (NULL)\n", op, S->be[T]->name);
    S->skips++;
    mark(S, op);
    return 0;
  }
  return 1;
}

/* 1 if the call succeeded. An op a backend declares (a non-NULL entry) must run
 * every case: CNN_UNSUPPORTED from it is a failure like any other error. */
int called(suite *S, const char *op, const char *cas, int side, cnn_status st) {
  if (st == CNN_OK) return 1;
  tu_checks++;
  tu_failures++;
  fprintf(stderr, "FAIL %s[%s]: backend '%s' returned %s: %s\n", op, cas, S->be[side]->name,
          cnn_status_name(st), cnn_last_error());
  return 0;
}

/* ---- elementwise ---------------------------------------------------------------- */

static const size_t elem_sizes[] = {1, 1001, 100003};
#define NSIZES (sizeof elem_sizes / sizeof elem_sizes[0])

static void test_fill_copy(suite *S) {
  char cas[96];
  int ran;
  for (size_t si = 0; si < NSIZES; si++) {
    size_t n = elem_sizes[si];
    const float vals[] = {0.0f, 0.37f, -3.5f};
    buf y = buf_new(S, n);
    for (int vi = 0; vi < 3; vi++) {
      snprintf(cas, sizeof cas, "n=%zu v=%g", n, vals[vi]);
      buf_poison(S, &y);
      RUN(S, fill, cas, P(y), n, vals[vi]);
      if (ran) check(S, &y, "fill", cas, "x", 0);
    }
    float *hx = hrand(S, n, -1, 1);
    buf x = buf_from(S, hx, n);
    snprintf(cas, sizeof cas, "n=%zu", n);
    buf_poison(S, &y);
    RUN(S, copy, cas, P(y), P(x), n * sizeof(float));
    if (ran) check(S, &y, "copy", cas, "dst", 0);
    buf_free(S, &x);
    buf_free(S, &y);
    free(hx);
  }
}

static void test_axpby_add_mul(suite *S) {
  char cas[96];
  int ran;
  for (size_t si = 0; si < NSIZES; si++) {
    size_t n = elem_sizes[si];
    float *ha = hrand(S, n, -1, 1), *hb = hrand(S, n, -1, 1), *hy = hrand(S, n, -1, 1);
    buf a = buf_from(S, ha, n), b = buf_from(S, hb, n), y = buf_new(S, n);
    const float betas[] = {0.0f, 1.0f, -0.3f};
    for (int bi = 0; bi < 3; bi++) {
      float beta = betas[bi];
      snprintf(cas, sizeof cas, "n=%zu alpha=0.7 beta=%g", n, beta);
      if (beta == 0) buf_poison(S, &y); else buf_set(S, &y, hy);
      RUN(S, axpby, cas, n, 0.7f, P(a), beta, P(y));
      if (ran) check(S, &y, "axpby", cas, "y", S->tol);
    }
    snprintf(cas, sizeof cas, "n=%zu", n);
    buf_poison(S, &y);
    RUN(S, add, cas, n, P(a), P(b), P(y));
    if (ran) check(S, &y, "add", cas, "y", S->tol);
    for (int beta = 0; beta <= 1; beta++) {
      snprintf(cas, sizeof cas, "n=%zu beta=%d", n, beta);
      if (beta == 0) buf_poison(S, &y); else buf_set(S, &y, hy);
      RUN(S, mul, cas, n, P(a), P(b), (float)beta, P(y));
      if (ran) check(S, &y, "mul", cas, "y", S->tol);
    }
    buf_free(S, &a);
    buf_free(S, &b);
    buf_free(S, &y);
    free(ha);
    free(hb);
    free(hy);
  }
}

static void test_copy2d(suite *S) {
  static const struct { size_t rows, cols, ss, ds; } cases[] = {
      {7, 5, 9, 12}, {7, 5, 5, 5}, {1, 3, 3, 7}, {1000, 33, 40, 97}, {300, 64, 64, 160}};
  char cas[96];
  int ran;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    size_t rows = cases[ci].rows, cols = cases[ci].cols, ss = cases[ci].ss, ds = cases[ci].ds;
    size_t ns = (rows - 1) * ss + cols, nd = (rows - 1) * ds + cols;
    float *hs = hrand(S, ns, -1, 1), *hd = hrand(S, nd, -1, 1);
    buf src = buf_from(S, hs, ns), dst = buf_new(S, nd);
    for (int acc = 0; acc <= 1; acc++) {
      /* dst starts random in both cases: the gaps between rows must survive */
      snprintf(cas, sizeof cas, "%zux%zu src_stride=%zu dst_stride=%zu accumulate=%d", rows,
               cols, ss, ds, acc);
      buf_set(S, &dst, hd);
      RUN(S, copy2d, cas, rows, cols, P(src), ss, P(dst), ds, acc);
      if (ran) check(S, &dst, "copy2d", cas, "dst", acc ? S->tol : 0);
    }
    buf_free(S, &src);
    buf_free(S, &dst);
    free(hs);
    free(hd);
  }
}

static void test_bias(suite *S) {
  static const struct { size_t rows, cols; } cases[] = {{1, 1}, {105, 7}, {4096, 64}, {37, 1000}};
  char cas[96];
  int ran;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    size_t rows = cases[ci].rows, cols = cases[ci].cols;
    float *hy = hrand(S, rows * cols, -1, 1), *hb = hrand(S, cols, -1, 1);
    buf y = buf_from(S, hy, rows * cols), bias = buf_from(S, hb, cols);
    snprintf(cas, sizeof cas, "rows=%zu cols=%zu", rows, cols);
    RUN(S, bias_add, cas, rows, cols, P(bias), P(y));
    if (ran) check(S, &y, "bias_add", cas, "y", S->tol);
    /* bias_grad: y (reset to random) is the dy; bias is the poisoned db */
    buf_set(S, &y, hy);
    buf_poison(S, &bias);
    RUN(S, bias_grad, cas, rows, cols, P(y), P(bias));
    if (ran) check(S, &bias, "bias_grad", cas, "db", tol_sum(S, (double)rows));
    buf_free(S, &y);
    buf_free(S, &bias);
    free(hy);
    free(hb);
  }
}

/* ---- activations --------------------------------------------------------------- */

const char *act_name(cnn_act a) {
  static const char *names[] = {"linear", "relu", "leaky", "gelu", "sigmoid", "tanh", "ramp", "relu6"};
  return (unsigned)a < CNN_ACT_COUNT ? names[a] : "?";
}

double host_act(cnn_act a, double alpha, double x) {
  switch (a) {
    case CNN_ACT_LINEAR: return x;
    case CNN_ACT_RELU: return x > 0 ? x : 0;
    case CNN_ACT_LEAKY: return x > 0 ? x : alpha * x;
    case CNN_ACT_GELU: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    case CNN_ACT_SIGMOID: return 1 / (1 + exp(-x));
    case CNN_ACT_TANH: return tanh(x);
    case CNN_ACT_RAMP: return (x > 0 ? 1.1 : 0.1) * x;
    case CNN_ACT_RELU6: return x > 0 ? (x < 6 ? x : 6) : 0;
    default: return NAN;
  }
}

static void test_act(suite *S) {
  char cas[96];
  int ran;
  /* alpha is passed to every activation: only leaky may use it */
  const float alpha = 0.1f;
  for (size_t si = 0; si < NSIZES; si++) {
    size_t n = elem_sizes[si];
    float *hx = hrand(S, n, -4, 4), *hdy = hrand(S, n, -1, 1), *hdx = hrand(S, n, -1, 1);
    float *hy = hvec(n), *hx2 = hvec(n);
    for (size_t i = 0; i < n; i++) hx2[i] = 2 * hx[i]; /* [-8, 8]: both kinks of relu6 */
    buf x1 = buf_from(S, hx, n), x2 = buf_from(S, hx2, n), y = buf_new(S, n);
    buf dy = buf_from(S, hdy, n), dx = buf_new(S, n);
    for (int ai = 0; ai < CNN_ACT_COUNT; ai++) {
      cnn_act a = (cnn_act)ai;
      const int wide = a == CNN_ACT_RELU6;
      const float *hxa = wide ? hx2 : hx;
      buf x = wide ? x2 : x1;
      snprintf(cas, sizeof cas, "%s alpha=%g n=%zu", act_name(a), alpha, n);
      buf_poison(S, &y);
      RUN(S, act_fwd, cas, a, alpha, n, P(x), P(y));
      if (ran) check(S, &y, "act_fwd", cas, "y", S->tol);
      snprintf(cas, sizeof cas, "%s alpha=%g n=%zu in place", act_name(a), alpha, n);
      buf_set(S, &y, hxa);
      RUN(S, act_fwd, cas, a, alpha, n, P(y), P(y));
      if (ran) check(S, &y, "act_fwd", cas, "y", S->tol);
      /* backward gets the true y = f(x), computed here in double */
      for (size_t i = 0; i < n; i++) hy[i] = (float)host_act(a, alpha, hxa[i]);
      buf_set(S, &y, hy);
      buf_set(S, &dx, hdx);
      snprintf(cas, sizeof cas, "%s alpha=%g n=%zu", act_name(a), alpha, n);
      RUN(S, act_bwd, cas, a, alpha, n, P(x), P(y), P(dy), P(dx));
      if (ran) check(S, &dx, "act_bwd", cas, "dx", S->tol);
    }
    buf_free(S, &x1);
    buf_free(S, &x2);
    buf_free(S, &y);
    buf_free(S, &dy);
    buf_free(S, &dx);
    free(hx);
    free(hx2);
    free(hy);
    free(hdy);
    free(hdx);
  }
}

/* ---- gemm ----------------------------------------------------------------------- */

static void test_gemm(suite *S) {
  static const struct { int m, n, k; } sizes[] = {{1, 1, 1}, {7, 5, 3}, {37, 29, 67}, {130, 70, 257},
      /* one row / one column of C (matrix-vector paths), large enough to be split */
      {1, 1500, 800}, {1300, 1, 900}, {1, 9, 4}};
  char cas[128];
  int ran;
  for (size_t zi = 0; zi < sizeof sizes / sizeof sizes[0]; zi++) {
    for (int tr = 0; tr < 4; tr++) {
      int ta = tr >> 1, tb = tr & 1;
      int m = sizes[zi].m, n = sizes[zi].n, k = sizes[zi].k;
      /* leading dimensions larger than the minimum */
      int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
      size_t arows = ta ? k : m, acols = ta ? m : k, brows = tb ? n : k, bcols = tb ? k : n;
      size_t na = arows * lda, nb = brows * ldb, nc = (size_t)m * ldc;
      float *ha = hrand(S, na, -1, 1), *hb = hrand(S, nb, -1, 1), *hc = hrand(S, nc, -1, 1);
      float *hc0 = hvec(nc);
      /* the padding of A and B is NaN: a backend that reads it produces NaN */
      for (size_t r = 0; r < arows; r++)
        for (size_t j = acols; j < (size_t)lda; j++) ha[r * lda + j] = NAN;
      for (size_t r = 0; r < brows; r++)
        for (size_t j = bcols; j < (size_t)ldb; j++) hb[r * ldb + j] = NAN;
      /* beta == 0: C is poisoned where written; its padding keeps random values,
       * which must survive on both sides */
      memcpy(hc0, hc, nc * sizeof(float));
      for (int r = 0; r < m; r++)
        for (int j = 0; j < n; j++) hc0[(size_t)r * ldc + j] = NAN;
      buf a = buf_from(S, ha, na), b = buf_from(S, hb, nb), c = buf_new(S, nc);
      const float betas[] = {0.0f, 1.0f, 0.5f};
      for (int bi = 0; bi < 3; bi++) {
        float beta = betas[bi], alpha = 0.75f;
        if (bi == 2 && zi != 1 && zi < 4) continue; /* a general beta once per transposition */
        snprintf(cas, sizeof cas, "ta=%d tb=%d m=%d n=%d k=%d lda=%d ldb=%d ldc=%d alpha=%g beta=%g",
                 ta, tb, m, n, k, lda, ldb, ldc, alpha, beta);
        buf_set(S, &c, beta == 0 ? hc0 : hc);
        RUN(S, gemm, cas, ta, tb, m, n, k, alpha, P(a), lda, P(b), ldb, beta, P(c), ldc);
        if (ran) check(S, &c, "gemm", cas, "C", tol_sum(S, k + (beta != 0)));
      }
      buf_free(S, &a);
      buf_free(S, &b);
      buf_free(S, &c);
      free(ha);
      free(hb);
      free(hc);
      free(hc0);
    }
  }
}

/* ---- convolution --------------------------------------------------------------- */

typedef struct conv_case {
  const char *name;
  int n, h, w, c, k, r, s, sh, sw, ph, pw, dh, dw, groups;
  int oh, ow; /* 0: floor((h + 2 pad - dil (r - 1) - 1) / stride) + 1 */
} conv_case;

static const conv_case conv_cases[] = {
    /* name                               n   h   w   c   k  r  s sh sw ph pw dh dw  g oh ow */
    {"1x1",                               3,  7,  5,  3,  4, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0},
    {"3x3 pad 1",                         3,  7,  5,  3,  8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0},
    {"5x5 pad 2",                         2,  9,  7,  4,  6, 5, 5, 1, 1, 2, 2, 1, 1, 1, 0, 0},
    {"5x5 pad 2 on 2x3 input",            3,  2,  3,  3,  4, 5, 5, 1, 1, 2, 2, 1, 1, 1, 0, 0},
    {"3x3 stride 2 pad 1",                3,  9,  7,  5,  6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 0},
    {"1x1 stride 2",                      2,  7,  7,  4,  8, 1, 1, 2, 2, 0, 0, 1, 1, 1, 0, 0},
    {"3x1 pad 1x0",                       2,  7,  5,  3,  5, 3, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0},
    {"1x3 stride 1x2 pad 0x1",            2,  6,  9,  3,  4, 1, 3, 1, 2, 0, 1, 1, 1, 1, 0, 0},
    {"3x3 dilation 2 pad 2",              2,  9,  7,  4,  5, 3, 3, 1, 1, 2, 2, 2, 2, 1, 0, 0},
    {"3x3 dilation 2x1 pad 2x1",          2,  8,  7,  3,  4, 3, 3, 1, 1, 2, 1, 2, 1, 1, 0, 0},
    {"3x3 groups 2",                      3,  7,  5,  6,  4, 3, 3, 1, 1, 1, 1, 1, 1, 2, 0, 0},
    {"depthwise 3x3",                     2,  7,  5,  8,  8, 3, 3, 1, 1, 1, 1, 1, 1, 8, 0, 0},
    {"depthwise 3x3 stride 2",            2,  9,  9,  6,  6, 3, 3, 2, 2, 1, 1, 1, 1, 6, 0, 0},
    {"kernel 7x6 = padded input",         3,  5,  4,  3,  4, 7, 6, 1, 1, 1, 1, 1, 1, 1, 0, 0},
    {"c=1 input",                         3, 11,  9,  1,  8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0},
    {"odd 13x11 stride 2 batch 1",        1, 13, 11,  7,  9, 3, 3, 2, 2, 0, 0, 1, 1, 1, 0, 0},
    {"batch 5",                           5,  6,  6,  4,  4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0},
    {"implied bottom/right pad",          2,  8,  8,  3,  4, 3, 3, 2, 2, 0, 0, 1, 1, 1, 4, 4},
    {"large 16x16x32->64 3x3",            4, 16, 16, 32, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0},
    {"large 1x1 8x8x64->32",              2,  8,  8, 64, 32, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0},
    {"large 15x15x16->32 stride 2",       2, 15, 15, 16, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 0},
    {"large groups 4 12x12x32->32",       2, 12, 12, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 4, 0, 0},
    /* shapes of real nets, and edges an engine with its own geometry rules must meet */
    {"first layer 5x5 c=3 pad 2",         3, 28, 28,  3, 16, 5, 5, 1, 1, 2, 2, 1, 1, 1, 0, 0},
    {"odd 10x11 stride 2, a row unread",  2, 10, 11,  5,  7, 3, 3, 2, 2, 0, 0, 1, 1, 1, 0, 0},
    {"output cut short (2x2 of 3x3)",     2,  8,  8,  3,  4, 3, 3, 2, 2, 0, 0, 1, 1, 1, 2, 2},
    {"1x1 groups 2 odd 9x7x24->40",       2,  9,  7, 24, 40, 1, 1, 1, 1, 0, 0, 1, 1, 2, 0, 0},
    {"1x1 64->128 stride 2 (downsample)", 2, 10, 10, 64,128, 1, 1, 2, 2, 0, 0, 1, 1, 1, 0, 0},
    {"depthwise 5x5 dilation 2",          2, 13, 11, 16, 16, 5, 5, 1, 1, 4, 4, 2, 2,16, 0, 0},
    {"depthwise 3x3 stride 2 c=32",       3, 14, 14, 32, 32, 3, 3, 2, 2, 1, 1, 1, 1,32, 0, 0},
    {"large 3x3 64->64 8x8 batch 8",      8,  8,  8, 64, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0},
    {"3x3 dilation 3 stride 2 pad 3",     2, 17, 15,  8, 12, 3, 3, 2, 2, 3, 3, 3, 3, 1, 0, 0},
};

static void test_conv_case(suite *S, const conv_case *cc) {
  cnn_conv_desc d;
  memset(&d, 0, sizeof d);
  d.n = cc->n; d.h = cc->h; d.w = cc->w; d.c = cc->c;
  d.k = cc->k; d.r = cc->r; d.s = cc->s;
  d.stride_h = cc->sh; d.stride_w = cc->sw;
  d.pad_h = cc->ph; d.pad_w = cc->pw;
  d.dil_h = cc->dh; d.dil_w = cc->dw;
  d.groups = cc->groups;
  d.oh = cc->oh ? cc->oh : (cc->h + 2 * cc->ph - cc->dh * (cc->r - 1) - 1) / cc->sh + 1;
  d.ow = cc->ow ? cc->ow : (cc->w + 2 * cc->pw - cc->dw * (cc->s - 1) - 1) / cc->sw + 1;
  if (d.oh < 1 || d.ow < 1 || d.c % d.groups || d.k % d.groups) {
    CHECK(0, "opsuite: bad conv case '%s'", cc->name);
    return;
  }
  char cas[192];
  snprintf(cas, sizeof cas, "%s: n=%d %dx%dx%d -> %dx%dx%d k%dx%d s%dx%d p%dx%d d%dx%d g%d",
           cc->name, d.n, d.h, d.w, d.c, d.oh, d.ow, d.k, d.r, d.s, d.stride_h, d.stride_w,
           d.pad_h, d.pad_w, d.dil_h, d.dil_w, d.groups);
  size_t nx = (size_t)d.n * d.h * d.w * d.c, nw = (size_t)d.k * d.r * d.s * (d.c / d.groups);
  size_t ny = (size_t)d.n * d.oh * d.ow * d.k;
  float *hx = hrand(S, nx, -1, 1), *hw = hrand(S, nw, -1, 1), *hb = hrand(S, d.k, -1, 1);
  float *hdy = hrand(S, ny, -1, 1), *hdx = hrand(S, nx, -1, 1);
  buf x = buf_from(S, hx, nx), w = buf_from(S, hw, nw), bias = buf_from(S, hb, d.k);
  buf y = buf_new(S, ny), dy = buf_from(S, hdy, ny), dx = buf_new(S, nx);
  buf dw = buf_new(S, nw), db = buf_new(S, d.k);

  /* each side's own workspace; a NULL conv_workspace means none */
  void *ws_[2] = {NULL, NULL};
  size_t wsb_[2] = {0, 0};
  for (int side = 0; side < 2; side++) {
    cnn_backend *b = S->be[side];
    wsb_[side] = b->ops->conv_workspace ? b->ops->conv_workspace(b->ctx, &d) : 0;
    if (wsb_[side]) {
      cnn_status st = b->ops->alloc(b->ctx, wsb_[side], &ws_[side]);
      if (st != CNN_OK || !ws_[side]) mem_fatal(S, side, "conv workspace alloc", wsb_[side], st);
    }
  }
#define WS ws_[side_], wsb_[side_]
  int ran;
  double kf = (double)(d.c / d.groups) * d.r * d.s;
  double kb = (double)(d.k / d.groups) * d.r * d.s;
  double kw = (double)d.n * d.oh * d.ow;
  char cb[224];

  snprintf(cb, sizeof cb, "%s, no bias", cas);
  buf_poison(S, &y);
  RUN(S, conv_fwd, cb, &d, P(x), P(w), NULL, P(y), WS);
  if (ran) check(S, &y, "conv_fwd", cb, "y", tol_sum(S, kf));

  snprintf(cb, sizeof cb, "%s, bias", cas);
  buf_poison(S, &y);
  RUN(S, conv_fwd, cb, &d, P(x), P(w), P(bias), P(y), WS);
  if (ran) check(S, &y, "conv_fwd", cb, "y", tol_sum(S, kf + 1));

  buf_set(S, &dx, hdx); /* accumulates: same random start on both sides */
  RUN(S, conv_bwd_data, cas, &d, P(dy), P(w), P(dx), WS);
  if (ran) check(S, &dx, "conv_bwd_data", cas, "dx", tol_sum(S, kb + 1));

  snprintf(cb, sizeof cb, "%s, no db", cas);
  buf_poison(S, &dw);
  buf_poison(S, &db); /* poisoned for the next case, which overwrites it */
  RUN(S, conv_bwd_filter, cb, &d, P(x), P(dy), P(dw), NULL, WS);
  if (ran) check(S, &dw, "conv_bwd_filter", cb, "dw", tol_sum(S, kw));

  snprintf(cb, sizeof cb, "%s, db", cas);
  buf_poison(S, &dw);
  RUN(S, conv_bwd_filter, cb, &d, P(x), P(dy), P(dw), P(db), WS);
  if (ran) {
    check(S, &dw, "conv_bwd_filter", cb, "dw", tol_sum(S, kw));
    check(S, &db, "conv_bwd_filter", cb, "db", tol_sum(S, kw));
  }
#undef WS
  for (int side = 0; side < 2; side++)
    if (ws_[side]) S->be[side]->ops->free(S->be[side]->ctx, ws_[side]);
  buf_free(S, &x);
  buf_free(S, &w);
  buf_free(S, &bias);
  buf_free(S, &y);
  buf_free(S, &dy);
  buf_free(S, &dx);
  buf_free(S, &dw);
  buf_free(S, &db);
  free(hx);
  free(hw);
  free(hb);
  free(hdy);
  free(hdx);
}

static void test_conv(suite *S) {
  for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++)
    test_conv_case(S, &conv_cases[i]);
}

/* ---- pooling ------------------------------------------------------------------ */

typedef struct pool_case {
  const char *name;
  int n, h, w, c, kh, kw, sh, sw, ph, pw;
  int oh, ow;  /* 0: floor((h + 2 pad - k) / stride) + 1 */
  int data;    /* 0: uniform [-1, 1); 1: values in {0, 0.5, 1} (ties); 2: all in [-2, -1) */
} pool_case;

static const pool_case pool_cases[] = {
    /* name                                   n   h   w   c kh kw sh sw ph pw oh ow data */
    {"2x2 stride 2",                          3,  7,  5,  3, 2, 2, 2, 2, 0, 0, 0, 0, 0},
    {"3x3 stride 2 pad 1",                    3,  7,  5,  3, 3, 3, 2, 2, 1, 1, 0, 0, 0},
    {"3x3 stride 1 pad 1",                    2,  7,  5,  4, 3, 3, 1, 1, 1, 1, 0, 0, 0},
    {"2x2 stride 1, bottom/right clipped",    2,  7,  5,  3, 2, 2, 1, 1, 0, 0, 7, 5, 0},
    {"3x3 stride 2, ceil (clipped)",          2,  8,  6,  3, 3, 3, 2, 2, 0, 0, 4, 3, 0},
    {"3x2 stride 2x1 pad 1x0",                2,  7,  5,  3, 3, 2, 2, 1, 1, 0, 0, 0, 0},
    {"global 7x5",                            3,  7,  5,  6, 7, 5, 1, 1, 0, 0, 0, 0, 0},
    {"3x3 stride 2 pad 1, ties",              3,  7,  5,  3, 3, 3, 2, 2, 1, 1, 0, 0, 1},
    {"global 7x5, ties",                      2,  7,  5,  3, 7, 5, 7, 5, 0, 0, 0, 0, 1},
    {"3x3 stride 1 pad 1, all negative",      2,  7,  5,  3, 3, 3, 1, 1, 1, 1, 0, 0, 2},
    {"large 2x2 stride 2",                    4, 16, 16, 32, 2, 2, 2, 2, 0, 0, 0, 0, 0},
    {"large global 8x8",                      2,  8,  8, 64, 8, 8, 8, 8, 0, 0, 0, 0, 0},
    /* cells no window reaches (maxpool_bwd_set must zero them); channel blocks */
    {"2x2 stride 3, gaps",                    2,  8,  7,  3, 2, 2, 3, 3, 0, 0, 0, 0, 0},
    {"2x2 stride 3, gaps, 130 channels",      2,  8,  7,130, 2, 2, 3, 3, 0, 0, 0, 0, 0},
    {"3x3 stride 1 pad 1, 160 channels",      2,  5,  4,160, 3, 3, 1, 1, 1, 1, 0, 0, 0},
};

static int cdiv(int a, int b) { return (a + b - 1) / b; }

static void test_pool_case(suite *S, const pool_case *pc) {
  cnn_pool_desc d;
  memset(&d, 0, sizeof d);
  d.n = pc->n; d.h = pc->h; d.w = pc->w; d.c = pc->c;
  d.kh = pc->kh; d.kw = pc->kw; d.stride_h = pc->sh; d.stride_w = pc->sw;
  d.pad_h = pc->ph; d.pad_w = pc->pw;
  d.oh = pc->oh ? pc->oh : (pc->h + 2 * pc->ph - pc->kh) / pc->sh + 1;
  d.ow = pc->ow ? pc->ow : (pc->w + 2 * pc->pw - pc->kw) / pc->sw + 1;
  /* every window must hold at least one input cell */
  if (d.oh < 1 || d.ow < 1 || (d.oh - 1) * d.stride_h - d.pad_h >= d.h ||
      (d.ow - 1) * d.stride_w - d.pad_w >= d.w || d.kh <= d.pad_h || d.kw <= d.pad_w) {
    CHECK(0, "opsuite: bad pool case '%s'", pc->name);
    return;
  }
  char cas[192];
  snprintf(cas, sizeof cas, "%s: n=%d %dx%dx%d -> %dx%d k%dx%d s%dx%d p%dx%d", pc->name, d.n,
           d.h, d.w, d.c, d.oh, d.ow, d.kh, d.kw, d.stride_h, d.stride_w, d.pad_h, d.pad_w);
  size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.oh * d.ow * d.c;
  float *hx = hvec(nx), *hdy = hrand(S, ny, -1, 1), *hdx = hrand(S, nx, -1, 1);
  if (pc->data == 1) {
    urand(S, hx, nx, 0, 1);
    for (size_t i = 0; i < nx; i++) hx[i] = floorf(hx[i] * 3) * 0.5f;
  } else if (pc->data == 2) {
    urand(S, hx, nx, -2, -1);
  } else {
    urand(S, hx, nx, -1, 1);
  }
  buf x = buf_from(S, hx, nx), y = buf_new(S, ny), dy = buf_from(S, hdy, ny), dx = buf_new(S, nx);
  int ran;
  double kwin = (double)cdiv(d.kh, d.stride_h) * cdiv(d.kw, d.stride_w); /* windows per cell */

  buf_poison(S, &y);
  RUN(S, maxpool_fwd, cas, &d, P(x), P(y));
  if (ran) check(S, &y, "maxpool_fwd", cas, "y", 0);
  buf_set(S, &dx, hdx);
  RUN(S, maxpool_bwd, cas, &d, P(x), P(dy), P(dx));
  if (ran) check(S, &dx, "maxpool_bwd", cas, "dx", tol_sum(S, kwin + 1));
  buf_poison(S, &dx); /* the overwriting form reads nothing of dx */
  RUN(S, maxpool_bwd_set, cas, &d, P(x), P(dy), P(dx));
  if (ran) check(S, &dx, "maxpool_bwd_set", cas, "dx", tol_sum(S, kwin));

  buf_poison(S, &y);
  RUN(S, avgpool_fwd, cas, &d, P(x), P(y));
  if (ran) check(S, &y, "avgpool_fwd", cas, "y", tol_sum(S, (double)d.kh * d.kw));
  buf_set(S, &dx, hdx);
  RUN(S, avgpool_bwd, cas, &d, P(dy), P(dx));
  if (ran) check(S, &dx, "avgpool_bwd", cas, "dx", tol_sum(S, kwin + 1));

  buf_free(S, &x);
  buf_free(S, &y);
  buf_free(S, &dy);
  buf_free(S, &dx);
  free(hx);
  free(hdy);
  free(hdx);
}

static void test_pool(suite *S) {
  for (size_t i = 0; i < sizeof pool_cases / sizeof pool_cases[0]; i++)
    test_pool_case(S, &pool_cases[i]);
}

/* ---- batch norm ---------------------------------------------------------------- */

static void test_bn(suite *S) {
  /* x in [-1, 3): a non-zero mean (as after ReLU) so the variance has cancellation
   * to handle (E[x^2] / var = 1.75) */
  static const struct { size_t rows; int c; } cases[] = {
      {2, 5}, {105, 3}, {37, 64}, {1024, 32}, {3000, 1}};
  const float eps = 1e-5f, momentum = 0.1f;
  char cas[96];
  int ran;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    size_t rows = cases[ci].rows, nx = rows * cases[ci].c;
    int c = cases[ci].c;
    double tol = tol_sum(S, (double)rows);
    float *hx = hrand(S, nx, -1, 3), *hdy = hrand(S, nx, -1, 1), *hdx = hrand(S, nx, -1, 1);
    float *hg = hrand(S, c, 0.5f, 1.5f), *hbeta = hrand(S, c, -0.5f, 0.5f);
    float *hrm = hrand(S, c, -0.5f, 0.5f), *hrv = hrand(S, c, 0.5f, 1.5f);
    float *hsm = hvec(c), *hsi = hvec(c);
    buf x = buf_from(S, hx, nx), gamma = buf_from(S, hg, c), beta = buf_from(S, hbeta, c);
    buf rm = buf_from(S, hrm, c), rv = buf_from(S, hrv, c), sm = buf_new(S, c), si = buf_new(S, c);
    buf y = buf_new(S, nx), dy = buf_from(S, hdy, nx), dx = buf_new(S, nx);
    buf dg = buf_new(S, c), dbeta = buf_new(S, c);

    snprintf(cas, sizeof cas, "rows=%zu c=%d eps=%g momentum=%g", rows, c, eps, momentum);
    RUN(S, bn_fwd_train, cas, rows, c, P(x), P(gamma), P(beta), eps, momentum, P(rm), P(rv),
        P(sm), P(si), P(y));
    if (ran) {
      check(S, &y, "bn_fwd_train", cas, "y", tol);
      check(S, &rm, "bn_fwd_train", cas, "running_mean", tol);
      check(S, &rv, "bn_fwd_train", cas, "running_var", tol);
      check(S, &sm, "bn_fwd_train", cas, "save_mean", tol);
      check(S, &si, "bn_fwd_train", cas, "save_invstd", tol);
    }

    /* inference with the (random) running stats: elementwise */
    buf_set(S, &rm, hrm);
    buf_set(S, &rv, hrv);
    buf_poison(S, &y);
    RUN(S, bn_fwd_infer, cas, rows, c, P(x), P(gamma), P(beta), P(rm), P(rv), eps, P(y));
    if (ran) check(S, &y, "bn_fwd_infer", cas, "y", S->tol);

    /* backward with the true batch statistics of x, computed here in double */
    for (int j = 0; j < c; j++) {
      double s = 0, ss = 0;
      for (size_t r = 0; r < rows; r++) s += hx[r * c + j];
      double mean = s / rows;
      for (size_t r = 0; r < rows; r++) ss += (hx[r * c + j] - mean) * (hx[r * c + j] - mean);
      hsm[j] = (float)mean;
      hsi[j] = (float)(1 / sqrt(ss / rows + eps));
    }
    buf_set(S, &sm, hsm);
    buf_set(S, &si, hsi);
    buf_set(S, &dx, hdx);
    RUN(S, bn_bwd, cas, rows, c, P(x), P(dy), P(gamma), P(sm), P(si), P(dx), P(dg), P(dbeta));
    if (ran) {
      check(S, &dx, "bn_bwd", cas, "dx", tol);
      check(S, &dg, "bn_bwd", cas, "dgamma", tol);
      check(S, &dbeta, "bn_bwd", cas, "dbeta", tol);
    }
    buf *all[] = {&x, &gamma, &beta, &rm, &rv, &sm, &si, &y, &dy, &dx, &dg, &dbeta};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) buf_free(S, all[i]);
    float *hall[] = {hx, hdy, hdx, hg, hbeta, hrm, hrv, hsm, hsi};
    for (size_t i = 0; i < sizeof hall / sizeof hall[0]; i++) free(hall[i]);
  }
}

/* ---- shortcut ------------------------------------------------------------------ */

static void test_shortcut(suite *S) {
  static const struct { const char *name; int n, h1, w1, c1, h2, w2, c2; } cases[] = {
      {"same shape", 3, 7, 5, 4, 7, 5, 4},
      {"from larger (stride 2)", 2, 14, 10, 4, 7, 5, 4},
      {"from smaller (sample 2)", 2, 7, 5, 4, 14, 10, 4},
      {"from more channels", 2, 7, 5, 6, 7, 5, 4},
      {"from fewer channels", 2, 7, 5, 3, 7, 5, 5},
      {"from larger, fewer channels", 2, 14, 10, 3, 7, 5, 5},
      {"from smaller, more channels", 2, 7, 5, 6, 14, 10, 4},
      {"odd 7x5 -> 3x2", 2, 7, 5, 3, 3, 2, 3},
  };
  char cas[160];
  int ran;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    cnn_shortcut_desc d;
    d.n = cases[ci].n;
    d.h1 = cases[ci].h1; d.w1 = cases[ci].w1; d.c1 = cases[ci].c1;
    d.h2 = cases[ci].h2; d.w2 = cases[ci].w2; d.c2 = cases[ci].c2;
    size_t n1 = (size_t)d.n * d.h1 * d.w1 * d.c1, n2 = (size_t)d.n * d.h2 * d.w2 * d.c2;
    snprintf(cas, sizeof cas, "%s: n=%d %dx%dx%d -> %dx%dx%d", cases[ci].name, d.n, d.h1, d.w1,
             d.c1, d.h2, d.w2, d.c2);
    float *hf = hrand(S, n1, -1, 1), *ho = hrand(S, n2, -1, 1);
    buf from = buf_from(S, hf, n1), out = buf_from(S, ho, n2);
    /* forward accumulates into out, backward into dfrom: random starts */
    RUN(S, shortcut_fwd, cas, &d, P(from), P(out));
    if (ran) check(S, &out, "shortcut_fwd", cas, "out", S->tol);
    buf_set(S, &from, hf);
    buf_set(S, &out, ho);
    RUN(S, shortcut_bwd, cas, &d, P(out), P(from));
    if (ran) check(S, &from, "shortcut_bwd", cas, "dfrom", S->tol);
    buf_free(S, &from);
    buf_free(S, &out);
    free(hf);
    free(ho);
  }
}

/* ---- dropout ------------------------------------------------------------------ */

static void test_dropout(suite *S) {
  static const struct { size_t n; float p; uint64_t seed, offset; } cases[] = {
      {1001, 0.0f, 1234, 0},   {1001, 0.3f, 1234, 0},     {1001, 0.3f, 99, 777},
      {100003, 0.3f, 5, 12345}, {100003, 0.5f, 7, 0},     {1, 0.3f, 3, 1}};
  char cas[96];
  int ran;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    size_t n = cases[ci].n;
    buf m = buf_new(S, n);
    snprintf(cas, sizeof cas, "n=%zu p=%g seed=%llu offset=%llu", n, cases[ci].p,
             (unsigned long long)cases[ci].seed, (unsigned long long)cases[ci].offset);
    RUN(S, dropout_mask, cas, n, cases[ci].p, cases[ci].seed, cases[ci].offset, P(m));
    if (ran) check(S, &m, "dropout_mask", cas, "mask", 0);
    buf_free(S, &m);
  }
}

/* ---- softmax cross-entropy --------------------------------------------------------- */

static void test_softmax(suite *S) {
  static const struct { int n, classes; float range, smoothing; } cases[] = {
      {5, 10, 3, 0},      {5, 10, 3, 0.1f},    {4, 10, 50, 0},    {4, 10, 50, 0.1f},
      {4, 10, 100, 0.1f}, {3, 1000, 3, 0.1f},  {7, 2, 3, 0.1f},   {1, 10, 3, 0}};
  char cas[96];
  int ran;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    int n = cases[ci].n, C = cases[ci].classes;
    float L = cases[ci].range, sm = cases[ci].smoothing;
    size_t nz = (size_t)n * C;
    float *hz = hrand(S, nz, -L, L), *hd = hrand(S, nz, -1, 1), *hp = hvec(nz);
    float *hl = hrand(S, n, 0, 1);
    int32_t *lab = (int32_t *)xmalloc(n * sizeof(int32_t));
    for (int i = 0; i < n; i++) {
      lab[i] = (int32_t)(hl[i] * C);
      if (lab[i] >= C) lab[i] = C - 1;
    }
    if (L >= 50) { /* make the label the largest logit in one row, the smallest in another */
      hz[(size_t)0 * C + lab[0]] = L;
      if (n > 1) hz[(size_t)1 * C + lab[1]] = -L;
    }
    double zmax = 0;
    for (size_t i = 0; i < nz; i++) zmax = fmax(zmax, fabs(hz[i]));
    double tol = S->tol * (fmax(1, zmax) + sqrt((double)C));
    buf z = buf_from(S, hz, nz), labels = buf_new(S, n), p = buf_new(S, nz), loss = buf_new(S, n);
    buf dz = buf_new(S, nz);
    buf_upload_raw(S, &labels, lab);
    snprintf(cas, sizeof cas, "n=%d classes=%d logits in [-%g, %g) smoothing=%g", n, C, L, L, sm);
    RUN(S, softmax_xent_fwd, cas, n, C, P(z), PI(labels), sm, P(p), P(loss));
    if (ran) {
      check(S, &p, "softmax_xent_fwd", cas, "probs", tol);
      check(S, &loss, "softmax_xent_fwd", cas, "loss", tol);
    }
    /* backward from the true probabilities, computed here in double */
    for (int i = 0; i < n; i++) {
      const float *zi = hz + (size_t)i * C;
      double mx = zi[0], s = 0;
      for (int j = 1; j < C; j++) mx = fmax(mx, zi[j]);
      for (int j = 0; j < C; j++) s += exp(zi[j] - mx);
      for (int j = 0; j < C; j++) hp[(size_t)i * C + j] = (float)(exp(zi[j] - mx) / s);
    }
    buf_set(S, &p, hp);
    buf_set(S, &dz, hd);
    float scale = 1.0f / n;
    RUN(S, softmax_xent_bwd, cas, n, C, P(p), PI(labels), sm, scale, P(dz));
    if (ran) check(S, &dz, "softmax_xent_bwd", cas, "dlogits", S->tol);
    buf *all[] = {&z, &labels, &p, &loss, &dz};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) buf_free(S, all[i]);
    free(hz);
    free(hd);
    free(hp);
    free(hl);
    free(lab);
  }
}

/* ---- optimizers ------------------------------------------------------------------ */

static void test_sgd(suite *S) {
  static const struct { size_t n; float momentum, wd; int nesterov; } cases[] = {
      {1001, 0, 0, 0},         {1001, 0.9f, 0, 0},       {1001, 0.9f, 5e-4f, 0},
      {1001, 0.9f, 5e-4f, 1},  {1001, 0.9f, 0.1f, 1},    {100003, 0.9f, 5e-4f, 1}};
  const float lr = 0.1f;
  char cas[96];
  int ran;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    size_t n = cases[ci].n;
    float *hp = hrand(S, n, -1, 1), *hg = hrand(S, n, -1, 1), *hv = hrand(S, n, -1, 1);
    buf p = buf_from(S, hp, n), g = buf_from(S, hg, n), v = buf_from(S, hv, n);
    snprintf(cas, sizeof cas, "n=%zu lr=%g momentum=%g wd=%g nesterov=%d", n, lr,
             cases[ci].momentum, cases[ci].wd, cases[ci].nesterov);
    RUN(S, sgd_step, cas, n, P(p), P(g), P(v), lr, cases[ci].momentum, cases[ci].wd,
        cases[ci].nesterov);
    if (ran) {
      check(S, &p, "sgd_step", cas, "p", S->tol);
      check(S, &v, "sgd_step", cas, "v", S->tol);
    }
    buf_free(S, &p);
    buf_free(S, &g);
    buf_free(S, &v);
    free(hp);
    free(hg);
    free(hv);
  }
}

static void test_adam(suite *S) {
  static const struct { size_t n; float wd; int decoupled; int64_t t; } cases[] = {
      {1001, 0, 0, 1},       {1001, 0.01f, 0, 1},    {1001, 0.01f, 0, 7},
      {1001, 0.01f, 1, 1},   {1001, 0.01f, 1, 7},    {100003, 0.05f, 1, 7}};
  const float lr = 0.01f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
  char cas[128];
  int ran;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    size_t n = cases[ci].n;
    float *hp = hrand(S, n, -1, 1), *hg = hrand(S, n, -1, 1);
    float *hm = hrand(S, n, -0.1f, 0.1f), *hv = hrand(S, n, 0, 0.01f);
    buf p = buf_from(S, hp, n), g = buf_from(S, hg, n), m = buf_from(S, hm, n), v = buf_from(S, hv, n);
    snprintf(cas, sizeof cas, "%s n=%zu lr=%g b1=%g b2=%g eps=%g wd=%g t=%lld",
             cases[ci].decoupled ? "adamw" : "adam", n, lr, b1, b2, eps, cases[ci].wd,
             (long long)cases[ci].t);
    RUN(S, adam_step, cas, n, P(p), P(g), P(m), P(v), lr, b1, b2, eps, cases[ci].wd,
        cases[ci].decoupled, cases[ci].t);
    if (ran) {
      check(S, &p, "adam_step", cas, "p", S->tol);
      check(S, &m, "adam_step", cas, "m", S->tol);
      check(S, &v, "adam_step", cas, "v", S->tol);
    }
    buf_free(S, &p);
    buf_free(S, &g);
    buf_free(S, &m);
    buf_free(S, &v);
    free(hp);
    free(hg);
    free(hm);
    free(hv);
  }
}

/* ---- entry point ---------------------------------------------------------------- */

static void suite_init(suite *S, cnn_backend *test, cnn_backend *ref, double tol_f32,
                       int verbose) {
  memset(S, 0, sizeof *S);
  S->be[T] = test;
  S->be[R] = ref;
  S->tol = tol_f32;
  S->verbose = verbose;
  S->seed = 0x5eed0000u;
}

int cnn_opsuite_run(cnn_backend *test, cnn_backend *ref, double tol_f32, int verbose) {
  int fail0 = tu_failures, checks0 = tu_checks;
  if (!test || !ref || !test->ops || !ref->ops) {
    CHECK(0, "cnn_opsuite_run: missing backend");
    return tu_failures - fail0;
  }
  const cnn_backend_ops *mem[2] = {test->ops, ref->ops};
  for (int side = 0; side < 2; side++)
    if (!mem[side]->alloc || !mem[side]->free || !mem[side]->upload || !mem[side]->download) {
      CHECK(0, "backend '%s' lacks alloc/free/upload/download", side ? ref->name : test->name);
      return tu_failures - fail0;
    }
  suite S;
  suite_init(&S, test, ref, tol_f32, verbose);

  printf("op suite: %s vs %s, tol_f32 %.1e\n", test->name, ref->name, tol_f32);
  test_fill_copy(&S);
  test_axpby_add_mul(&S);
  test_copy2d(&S);
  test_bias(&S);
  test_act(&S);
  test_gemm(&S);
  test_conv(&S);
  test_pool(&S);
  test_bn(&S);
  test_shortcut(&S);
  test_dropout(&S);
  test_softmax(&S);
  test_sgd(&S);
  test_adam(&S);
  test_program_ops(&S);
  test_crop_reorg_ops(&S);
  if (test->ops->sync) {
    cnn_status st = test->ops->sync(test->ctx);
    CHECK(st == CNN_OK, "sync on '%s': %s", test->name, cnn_last_error());
  }
  int fails = tu_failures - fail0;
  printf("op suite: %s vs %s: %d checks, %d failed, %d skipped\n", test->name, ref->name,
         tu_checks - checks0, fails, S.skips);
  return fails;
}

int cnn_opsuite_run_conv(cnn_backend *test, cnn_backend *ref, double tol_f32, int verbose) {
  const int fail0 = tu_failures, checks0 = tu_checks;
  suite S;
  suite_init(&S, test, ref, tol_f32, verbose);
  printf("op suite (conv): %s vs %s, tol_f32 %.1e\n", test->name, ref->name, tol_f32);
  test_conv(&S);
  test_conv_act(&S);
  int fails = tu_failures - fail0;
  printf("op suite (conv): %s vs %s: %d checks, %d failed, %d skipped\n", test->name, ref->name,
         tu_checks - checks0, fails, S.skips);
  return fails;
}
