/* The op suite, part 2: the step-program ops of backend.h (async transfers, the
 * step state, fused softmax / BN / conv / add+act, optimizers and dropout keyed by
 * the step state), each against ref. The tolerance of every op, and why, is in the
 * table at the top of opsuite.c.
 *
 * A step state lives in a buf of sizeof(cnn_step_state) / 4 words (guard tail
 * included) and is compared field by field after download: integers exactly, the
 * double sums and the loss ring at the op's tolerance (NaN matches NaN), lr at
 * tol_f32 (cnn_sched_lr on a device may differ from the host's libm by an ulp). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/schedule.h"
#include "opsuite_impl.h"
#include "testutil.h"

#define ST_WORDS (sizeof(cnn_step_state) / sizeof(float))
_Static_assert(sizeof(cnn_step_state) % sizeof(float) == 0, "step state is whole words");

static const size_t prog_sizes[] = {1, 1001, 100003};
#define NPSIZES (sizeof prog_sizes / sizeof prog_sizes[0])

/* ---- step state helpers ---------------------------------------------------------- */

/* a state in the middle of a run, every field distinct from its reset value */
static void state_init(suite *S, cnn_step_state *st) {
  memset(st, 0, sizeof *st);
  st->step = 41;
  st->refused = 2;
  st->last_refused = 17;
  st->seen = 300;
  st->correct = 120;
  st->loss_sum = 512.25;
  st->step_loss = 3.75;
  st->step_correct = 5;
  st->step_n = 8;
  st->lr = 0.05f;
  st->nonfinite = 0;
  urand(S, st->loss_ring, CNN_LOSS_RING, 0, 3);
}

static buf state_new(suite *S, const cnn_step_state *host) {
  buf b = buf_new(S, ST_WORDS);
  buf_upload_raw(S, &b, host);
  return b;
}

static void state_get(suite *S, const buf *b, int side, cnn_step_state *out, const char *label) {
  float *h = hvec(b->n + GUARD);
  buf_get(S, b, side, h);
  check_guard(S, b, side, h, label);
  memcpy(out, h, sizeof *out);
  free(h);
}

/* NaN matches NaN and an infinity itself; otherwise the scaled error within tol */
static int close_d(double got, double want, double tol) {
  if (isnan(got) || isnan(want)) return isnan(got) && isnan(want);
  if (isinf(got) || isinf(want)) return got == want;
  return fabs(got - want) / fmax(fmax(fabs(got), fabs(want)), 1.0) <= tol;
}

/* ST_NAN_LOSS: a step with a NaN logit; step_loss need only be non-finite on both
 * sides, and step_correct is not compared (the argmax of a NaN row is undefined) */
enum { ST_NAN_LOSS = 1 };

static void check_state(suite *S, const buf *b, const char *op, const char *cas, double tol,
                        int flags) {
  char label[320];
  snprintf(label, sizeof label, "%s[%s] step state (%s vs %s)", op, cas, S->be[T]->name,
           S->be[R]->name);
  cnn_step_state s[2];
  for (int side = 0; side < 2; side++) state_get(S, b, side, &s[side], label);
  const cnn_step_state *g = &s[T], *w = &s[R];
  int fails0 = tu_failures;
#define ST_EXACT(f) \
  CHECK(g->f == w->f, "%s: " #f " %lld, want %lld", label, (long long)g->f, (long long)w->f)
  ST_EXACT(step);
  ST_EXACT(refused);
  ST_EXACT(last_refused);
  ST_EXACT(seen);
  ST_EXACT(correct);
  ST_EXACT(step_n);
  ST_EXACT(nonfinite);
  if (!(flags & ST_NAN_LOSS)) ST_EXACT(step_correct);
#undef ST_EXACT
  CHECK(close_d(g->loss_sum, w->loss_sum, tol), "%s: loss_sum %.17g, want %.17g", label,
        g->loss_sum, w->loss_sum);
  if (flags & ST_NAN_LOSS)
    CHECK(!isfinite(g->step_loss) && !isfinite(w->step_loss),
          "%s: step_loss %g and %g must both be non-finite", label, g->step_loss, w->step_loss);
  else
    CHECK(close_d(g->step_loss, w->step_loss, tol), "%s: step_loss %.17g, want %.17g", label,
          g->step_loss, w->step_loss);
  CHECK(close_d(g->lr, w->lr, S->tol), "%s: lr %.9g, want %.9g", label, g->lr, w->lr);
  size_t bad = CNN_LOSS_RING;
  for (size_t i = 0; i < CNN_LOSS_RING && bad == CNN_LOSS_RING; i++)
    if (!close_d(g->loss_ring[i], w->loss_ring[i], tol)) bad = i;
  CHECK(bad == CNN_LOSS_RING, "%s: loss_ring[%zu] %.9g, want %.9g", label, bad,
        bad < CNN_LOSS_RING ? g->loss_ring[bad] : 0.0f,
        bad < CNN_LOSS_RING ? w->loss_ring[bad] : 0.0f);
  if (tu_failures == fails0 && S->verbose) printf("  ok  %-70s tol %.2e\n", label, tol);
}

/* ---- asynchronous transfers ---------------------------------------------------- */

static float *host_buf(suite *S, int side, size_t n) {
  cnn_backend *be = S->be[side];
  void *p = NULL;
  size_t bytes = n * sizeof(float);
  if (be->ops->host_alloc && be->ops->host_free) {
    cnn_status st = be->ops->host_alloc(be->ctx, bytes, &p);
    if (st != CNN_OK || !p) mem_fatal(S, side, "host_alloc", bytes, st);
    return p;
  }
  return xmalloc(bytes);
}

static void host_buf_free(suite *S, int side, float *p) {
  cnn_backend *be = S->be[side];
  if (be->ops->host_alloc && be->ops->host_free)
    be->ops->host_free(be->ctx, p);
  else
    free(p);
}

static void test_async(suite *S) {
  char cas[64], label[160];
  int ran;
  const cnn_backend_ops *t = S->be[T]->ops, *r = S->be[R]->ops;
  for (size_t si = 0; si < NPSIZES; si++) {
    size_t n = prog_sizes[si], bytes = n * sizeof(float);
    float *hs = hrand(S, n, -1, 1), *tmp = hvec(n);
    buf dst = buf_new(S, n), src = buf_from(S, hs, n);
    snprintf(cas, sizeof cas, "n=%zu", n);

    /* the source is scribbled on as soon as the call returns: it may be reused */
    ran = gate(S, "upload_async", t->upload_async != NULL, r->upload_async != NULL);
    for (int side = 0; ran && side < 2; side++) {
      cnn_backend *be = S->be[side];
      memcpy(tmp, hs, bytes);
      ran = called(S, "upload_async", cas, side,
                   be->ops->upload_async(be->ctx, dst.d[side], tmp, bytes));
      tu_poison(tmp, n);
    }
    if (ran) check(S, &dst, "upload_async", cas, "dst", 0);

    /* two reads back to back: the second replaces the first; wait for it */
    ran = gate(S, "read_async", t->read_async != NULL, r->read_async != NULL) &&
          gate(S, "read_done", t->read_done != NULL, r->read_done != NULL);
    float *hd[2] = {NULL, NULL}, *hfirst[2] = {NULL, NULL};
    for (int side = 0; ran && side < 2; side++) {
      cnn_backend *be = S->be[side];
      hd[side] = host_buf(S, side, n + GUARD);
      hfirst[side] = host_buf(S, side, n);
      tu_poison(hd[side], n);
      for (size_t i = 0; i < GUARD; i++) hd[side][n + i] = SENTINEL;
      ran = called(S, "read_async", cas, side,
                   be->ops->read_async(be->ctx, hfirst[side], dst.d[side], bytes));
      if (ran)
        ran = called(S, "read_async", cas, side,
                     be->ops->read_async(be->ctx, hd[side], src.d[side], bytes));
      if (ran) {
        int done = be->ops->read_done(be->ctx, 1), again = be->ops->read_done(be->ctx, 0);
        CHECK(done == 1 && again == 1, "read_done[%s] on '%s': wait gave %d, then %d", cas,
              be->name, done, again);
      }
    }
    if (ran) {
      snprintf(label, sizeof label, "read_async[%s] host dst (%s vs source)", cas,
               S->be[T]->name);
      check_guard(S, &src, T, hd[T], label);
      check_guard(S, &src, R, hd[R], label);
      tu_check_close(label, hd[T], hs, n, 0);
      snprintf(label, sizeof label, "read_async[%s] host dst (%s vs source)", cas,
               S->be[R]->name);
      tu_check_close(label, hd[R], hs, n, 0);
      if (S->verbose) printf("  ok  read_async[%s]\n", cas);
    }
    for (int side = 0; side < 2; side++) {
      if (hd[side]) host_buf_free(S, side, hd[side]);
      if (hfirst[side]) host_buf_free(S, side, hfirst[side]);
    }
    buf_free(S, &dst);
    buf_free(S, &src);
    free(hs);
    free(tmp);
  }
}

/* ---- step state ops ------------------------------------------------------------ */

static void test_step_begin(suite *S) {
  static const int kinds[] = {CNN_SD_CONSTANT, CNN_SD_STEP, CNN_SD_COSINE, CNN_SD_ONECYCLE,
                              CNN_SD_POLY};
  static const int64_t steps[] = {0, 3, 250, 999, 5000};
  char cas[96];
  int ran;
  cnn_step_state h;
  state_init(S, &h);
  buf st = state_new(S, &h);
  for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++)
    for (size_t si = 0; si < sizeof steps / sizeof steps[0]; si++) {
      cnn_sched_desc sd = {.kind = kinds[ki], .lr = 0.1, .final_lr = 0.001, .warmup = 10,
                           .total = 1000, .step_size = 100, .gamma = 0.5, .power = 2.0};
      h.step = steps[si];
      h.nonfinite = CNN_NONFINITE_INPUT | CNN_NONFINITE_LOSS;
      buf_upload_raw(S, &st, &h);
      snprintf(cas, sizeof cas, "schedule kind %d, step %lld", kinds[ki], (long long)h.step);
      RUN(S, step_begin, cas, PS(st), &sd);
      if (ran) check_state(S, &st, "step_begin", cas, S->tol, 0);
    }
  h.nonfinite = CNN_NONFINITE_LOSS;
  buf_upload_raw(S, &st, &h);
  RUN(S, step_begin, "no schedule", PS(st), (const cnn_sched_desc *)NULL);
  if (ran) check_state(S, &st, "step_begin", "no schedule", S->tol, 0);
  buf_free(S, &st);
}

static void test_step_end(suite *S) {
  static const struct { int train, nonfinite; int64_t step, step_n; double step_loss; } cases[] = {
      {1, 0, 41, 8, 3.75},     {1, CNN_NONFINITE_LOSS, 41, 8, NAN},
      {1, CNN_NONFINITE_INPUT, 41, 8, 2.5},   {1, 0, 2047, 0, 0.5},  {1, 0, 1023, 1, 0.7},
      {0, 0, 41, 8, 3.75},     {0, CNN_NONFINITE_INPUT, 41, 8, 3.75}, {0, 0, 0, 0, 0}};
  char cas[128];
  int ran;
  cnn_step_state h;
  state_init(S, &h);
  buf st = state_new(S, &h);
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    h.nonfinite = cases[ci].nonfinite;
    h.step = cases[ci].step;
    h.step_n = cases[ci].step_n;
    h.step_loss = cases[ci].step_loss;
    buf_upload_raw(S, &st, &h);
    snprintf(cas, sizeof cas, "train=%d nonfinite=%d step=%lld step_n=%lld step_loss=%g",
             cases[ci].train, h.nonfinite, (long long)h.step, (long long)h.step_n, h.step_loss);
    RUN(S, step_end, cas, PS(st), cases[ci].train);
    if (ran) check_state(S, &st, "step_end", cas, S->tol, 0);
  }
  state_init(S, &h);
  buf_upload_raw(S, &st, &h);
  RUN(S, metrics_reset, "mid-run state", PS(st));
  if (ran) check_state(S, &st, "metrics_reset", "mid-run state", 0, 0);
  buf_free(S, &st);
}

static void test_check_finite(suite *S) {
  static const char *where[] = {"all finite", "NaN last", "+Inf first", "-Inf in the middle"};
  char cas[96];
  int ran;
  cnn_step_state h;
  state_init(S, &h);
  buf st = state_new(S, &h);
  for (size_t si = 0; si < NPSIZES; si++) {
    size_t n = prog_sizes[si];
    for (int k = 0; k < 4; k++) {
      float *hx = hrand(S, n, -1e30f, 1e30f);
      if (k == 1) hx[n - 1] = NAN;
      if (k == 2) hx[0] = INFINITY;
      if (k == 3) hx[n / 2] = -INFINITY;
      buf x = buf_from(S, hx, n);
      for (int keep = 0; keep <= CNN_NONFINITE_LOSS; keep += CNN_NONFINITE_LOSS) {
        h.nonfinite = keep; /* bits already set must stay */
        buf_upload_raw(S, &st, &h);
        snprintf(cas, sizeof cas, "n=%zu %s, nonfinite before %d", n, where[k], keep);
        RUN(S, check_finite, cas, n, P(x), PS(st));
        if (ran) check_state(S, &st, "check_finite", cas, 0, 0);
      }
      buf_free(S, &x);
      free(hx);
    }
  }
  buf_free(S, &st);
}

/* ---- fused softmax cross-entropy ------------------------------------------------ */

enum { SX_FULL, SX_NO_DLOGITS, SX_NO_LABELS, SX_NAN };

static void test_softmax_step(suite *S) {
  static const struct { int n, classes; float range, smoothing, inv_temp, dscale; int mode; }
  cases[] = {
      {5, 10, 3, 0, 1, 0.2f, SX_FULL},        {5, 10, 3, 0.1f, 0.5f, 0.2f, SX_FULL},
      {4, 10, 50, 0.1f, 1, 0.25f, SX_FULL},   {4, 10, 25, 0, 2, -1, SX_FULL},
      {3, 1000, 3, 0.1f, 2, 1 / 3.0f, SX_FULL}, {7, 2, 3, 0.1f, 1, 1 / 7.0f, SX_NO_DLOGITS},
      {1, 10, 3, 0, 1, 1, SX_FULL},           {4, 10, 3, 0.1f, 1, 0.25f, SX_NO_LABELS},
      {4, 10, 3, 0.1f, 1, 0.25f, SX_NAN}};
  static const char *modes[] = {"labels, dlogits", "labels, no dlogits", "no labels",
                                "NaN logit"};
  char cas[160];
  int ran;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    int n = cases[ci].n, C = cases[ci].classes, mode = cases[ci].mode;
    float L = cases[ci].range, sm = cases[ci].smoothing, it = cases[ci].inv_temp;
    size_t nz = (size_t)n * C;
    float *hz = hrand(S, nz, -L, L), *hd = hrand(S, nz, -1, 1), *hl = hrand(S, n, 0, 1);
    int32_t *lab = xmalloc(n * sizeof(int32_t));
    for (int i = 0; i < n; i++) lab[i] = (int32_t)(hl[i] * C) < C ? (int32_t)(hl[i] * C) : C - 1;
    if (L >= 25) { /* the label the largest logit in one row, the smallest in another */
      hz[lab[0]] = L;
      if (n > 1) hz[(size_t)C + lab[1]] = -L;
    }
    double zmax = 0;
    for (size_t i = 0; i < nz; i++) zmax = fmax(zmax, fabs((double)it * hz[i]));
    if (mode == SX_NAN) hz[(size_t)1 * C + 2] = NAN;
    double tol = S->tol * (fmax(1, zmax) + sqrt((double)C));
    cnn_step_state h;
    state_init(S, &h);
    h.step_loss = 1.5; /* the op adds to the step's sums */
    h.step_correct = 2;
    h.step_n = 3;
    buf z = buf_from(S, hz, nz), labels = buf_new(S, n), p = buf_new(S, nz), loss = buf_new(S, n);
    buf dl = buf_from(S, hd, nz), st = state_new(S, &h);
    buf_upload_raw(S, &labels, lab);
    snprintf(cas, sizeof cas, "n=%d classes=%d logits in [-%g, %g) inv_temp=%g smoothing=%g "
             "dscale=%g, %s", n, C, L, L, it, sm, cases[ci].dscale, modes[mode]);
    RUN(S, softmax_xent_step, cas, n, C, P(z), it, mode == SX_NO_LABELS ? NULL : PI(labels), sm,
        P(p), P(loss), mode == SX_NO_DLOGITS ? NULL : P(dl), cases[ci].dscale, PS(st));
    if (ran && mode != SX_NAN) {
      check(S, &p, "softmax_xent_step", cas, "probs", tol);
      /* dlogits: the backend's own probabilities (error tol) times |dscale| <= 1;
       * untouched (tol 0) without dlogits or labels */
      check(S, &dl, "softmax_xent_step", cas, "dlogits", mode == SX_FULL ? tol : 0);
      if (mode != SX_NO_LABELS) check(S, &loss, "softmax_xent_step", cas, "loss", tol);
      /* step_loss sums n losses, each within tol: bounded by n tol */
      check_state(S, &st, "softmax_xent_step", cas, mode == SX_NO_LABELS ? 0 : tol * n, 0);
    }
    if (ran && mode == SX_NAN) {
      check_state(S, &st, "softmax_xent_step", cas, tol * n, ST_NAN_LOSS);
      for (int side = 0; side < 2; side++) {
        cnn_step_state got;
        state_get(S, &st, side, &got, cas);
        CHECK(got.nonfinite == CNN_NONFINITE_LOSS && got.step_n == 3 + n,
              "softmax_xent_step[%s] on '%s': nonfinite %d (want %d), step_n %lld", cas,
              S->be[side]->name, got.nonfinite, CNN_NONFINITE_LOSS, (long long)got.step_n);
      }
    }
    buf *all[] = {&z, &labels, &p, &loss, &dl, &st};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) buf_free(S, all[i]);
    free(hz);
    free(hd);
    free(hl);
    free(lab);
  }
}

/* ---- optimizers and dropout keyed by the step state ------------------------------- */

static void test_optim_st(suite *S) {
  static const struct { size_t n; float momentum, wd; int nesterov, nonfinite; } sgd[] = {
      {1001, 0.9f, 5e-4f, 0, 0},  {1001, 0.9f, 5e-4f, 1, 0},  {100003, 0.9f, 5e-4f, 1, 0},
      {1001, 0, 0, 0, 0},         {1001, 0.9f, 5e-4f, 1, CNN_NONFINITE_INPUT},
      {1001, 0, 0, 0, CNN_NONFINITE_LOSS}};
  static const struct { size_t n; float wd; int decoupled; int64_t step; int nonfinite; } adam[] = {
      {1001, 0, 0, 0, 0},         {1001, 0.01f, 0, 6, 0},     {1001, 0.01f, 1, 6, 0},
      {100003, 0.05f, 1, 6, 0},   {1001, 0.01f, 1, 6, CNN_NONFINITE_INPUT | CNN_NONFINITE_LOSS}};
  const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
  char cas[160];
  int ran;
  cnn_step_state h;
  state_init(S, &h);
  for (size_t ci = 0; ci < sizeof sgd / sizeof sgd[0]; ci++) {
    size_t n = sgd[ci].n;
    float *hp = hrand(S, n, -1, 1), *hg = hrand(S, n, -1, 1), *hv = hrand(S, n, -1, 1);
    h.lr = 0.1f;
    h.step = 12;
    h.nonfinite = sgd[ci].nonfinite;
    buf p = buf_from(S, hp, n), g = buf_from(S, hg, n), v = buf_from(S, hv, n);
    buf st = state_new(S, &h);
    snprintf(cas, sizeof cas, "n=%zu lr=%g momentum=%g wd=%g nesterov=%d nonfinite=%d", n, h.lr,
             sgd[ci].momentum, sgd[ci].wd, sgd[ci].nesterov, h.nonfinite);
    RUN(S, sgd_step_st, cas, n, P(p), P(g), P(v), sgd[ci].momentum, sgd[ci].wd,
        sgd[ci].nesterov, PS(st));
    if (ran) { /* a refused step leaves p and v bit-identical */
      check(S, &p, "sgd_step_st", cas, "p", h.nonfinite ? 0 : S->tol);
      check(S, &v, "sgd_step_st", cas, "v", h.nonfinite ? 0 : S->tol);
      check_state(S, &st, "sgd_step_st", cas, 0, 0);
    }
    buf *all[] = {&p, &g, &v, &st};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) buf_free(S, all[i]);
    free(hp);
    free(hg);
    free(hv);
  }
  for (size_t ci = 0; ci < sizeof adam / sizeof adam[0]; ci++) {
    size_t n = adam[ci].n;
    float *hp = hrand(S, n, -1, 1), *hg = hrand(S, n, -1, 1);
    float *hm = hrand(S, n, -0.1f, 0.1f), *hv = hrand(S, n, 0, 0.01f);
    h.lr = 0.01f;
    h.step = adam[ci].step;
    h.nonfinite = adam[ci].nonfinite;
    buf p = buf_from(S, hp, n), g = buf_from(S, hg, n), m = buf_from(S, hm, n);
    buf v = buf_from(S, hv, n), st = state_new(S, &h);
    snprintf(cas, sizeof cas, "%s n=%zu lr=%g wd=%g step=%lld (t=%lld) nonfinite=%d",
             adam[ci].decoupled ? "adamw" : "adam", n, h.lr, adam[ci].wd, (long long)h.step,
             (long long)h.step + 1, h.nonfinite);
    RUN(S, adam_step_st, cas, n, P(p), P(g), P(m), P(v), b1, b2, eps, adam[ci].wd,
        adam[ci].decoupled, PS(st));
    if (ran) {
      check(S, &p, "adam_step_st", cas, "p", h.nonfinite ? 0 : S->tol);
      check(S, &m, "adam_step_st", cas, "m", h.nonfinite ? 0 : S->tol);
      check(S, &v, "adam_step_st", cas, "v", h.nonfinite ? 0 : S->tol);
      check_state(S, &st, "adam_step_st", cas, 0, 0);
    }
    buf *all[] = {&p, &g, &m, &v, &st};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) buf_free(S, all[i]);
    free(hp);
    free(hg);
    free(hm);
    free(hv);
  }
}

static void test_dropout_st(suite *S) {
  static const struct { size_t n; float p; uint64_t seed, stream; int64_t step; } cases[] = {
      {1001, 0.3f, 1234, 0, 0},        {1001, 0.3f, 1234, 1, 0},   {1001, 0.3f, 1234, 0, 1},
      {100003, 0.5f, 7, 4095, 123456}, {1, 0.3f, 3, 2, 7},         {1001, 0.0f, 9, 5, 3}};
  char cas[128];
  int ran;
  cnn_step_state h;
  state_init(S, &h);
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    size_t n = cases[ci].n;
    h.step = cases[ci].step;
    buf m = buf_new(S, n), st = state_new(S, &h);
    snprintf(cas, sizeof cas, "n=%zu p=%g seed=%llu stream=%llu step=%lld", n, cases[ci].p,
             (unsigned long long)cases[ci].seed, (unsigned long long)cases[ci].stream,
             (long long)h.step);
    RUN(S, dropout_mask_st, cas, n, cases[ci].p, cases[ci].seed, cases[ci].stream, PS(st), P(m));
    if (ran) {
      check(S, &m, "dropout_mask_st", cas, "mask", 0);
      check_state(S, &st, "dropout_mask_st", cas, 0, 0);
    }
    buf_free(S, &m);
    buf_free(S, &st);
  }
}

/* ---- batch norm with an activation, commit, fold ---------------------------------- */

static void test_bn_act(suite *S) {
  static const struct { size_t rows; int c; } cases[] = {
      {2, 5}, {105, 3}, {37, 64}, {1024, 32}, {3000, 1}};
  const float eps = 1e-5f, momentum = 0.1f, alpha = 0.1f;
  char cas[128];
  int ran;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    size_t rows = cases[ci].rows, nx = rows * cases[ci].c;
    int c = cases[ci].c;
    double tol = tol_sum(S, (double)rows);
    float *hx = hrand(S, nx, -1, 3), *hdy = hrand(S, nx, -1, 1), *hdx = hrand(S, nx, -1, 1);
    float *hg = hrand(S, c, 0.5f, 1.5f), *hbeta = hrand(S, c, -0.5f, 0.5f);
    float *hrm = hrand(S, c, -0.5f, 0.5f), *hrv = hrand(S, c, 0.5f, 1.5f);
    float *hsm = hvec(c), *hsv = hvec(c), *hsi = hvec(c);
    tu_bn_off_kink(hx, rows, c, hg, hbeta, eps, 1e-3);
    tu_bn_stats(hx, rows, c, eps, hsm, hsv, hsi);
    buf x = buf_from(S, hx, nx), gamma = buf_from(S, hg, c), beta = buf_from(S, hbeta, c);
    buf rm = buf_from(S, hrm, c), rv = buf_from(S, hrv, c), y = buf_new(S, nx);
    buf sm = buf_new(S, c), si = buf_new(S, c), sv = buf_new(S, c);
    buf dy = buf_from(S, hdy, nx), dx = buf_new(S, nx), dg = buf_new(S, c), db = buf_new(S, c);
    for (int ai = 0; ai < CNN_ACT_COUNT; ai++) {
      cnn_act a = (cnn_act)ai;
      snprintf(cas, sizeof cas, "rows=%zu c=%d eps=%g %s alpha=%g", rows, c, eps, act_name(a),
               alpha);
      buf *outs[] = {&y, &sm, &si, &sv};
      for (size_t i = 0; i < 4; i++) buf_poison(S, outs[i]);
      RUN(S, bn_act_fwd_train, cas, rows, c, P(x), P(gamma), P(beta), eps, a, alpha, P(sm),
          P(si), P(sv), P(y));
      if (ran) {
        check(S, &y, "bn_act_fwd_train", cas, "y", tol);
        check(S, &sm, "bn_act_fwd_train", cas, "save_mean", tol);
        check(S, &si, "bn_act_fwd_train", cas, "save_invstd", tol);
        check(S, &sv, "bn_act_fwd_train", cas, "save_var", tol);
      }
      buf_poison(S, &y);
      RUN(S, bn_act_fwd_infer, cas, rows, c, P(x), P(gamma), P(beta), P(rm), P(rv), eps, a, alpha,
          P(y));
      if (ran) check(S, &y, "bn_act_fwd_infer", cas, "y", S->tol);
      /* backward from the true batch statistics (computed here in double) */
      buf_set(S, &sm, hsm);
      buf_set(S, &si, hsi);
      buf_set(S, &dx, hdx);
      buf_poison(S, &dg);
      buf_poison(S, &db);
      RUN(S, bn_act_bwd, cas, rows, c, P(x), P(dy), P(gamma), P(beta), P(sm), P(si), a, alpha,
          P(dx), P(dg), P(db));
      if (ran) {
        check(S, &dx, "bn_act_bwd", cas, "dx", tol);
        check(S, &dg, "bn_act_bwd", cas, "dgamma", tol);
        check(S, &db, "bn_act_bwd", cas, "dbeta", tol);
      }
      buf_poison(S, &dx); /* the overwriting form reads nothing of dx */
      buf_poison(S, &dg);
      buf_poison(S, &db);
      RUN(S, bn_act_bwd_set, cas, rows, c, P(x), P(dy), P(gamma), P(beta), P(sm), P(si), a,
          alpha, P(dx), P(dg), P(db));
      if (ran) {
        check(S, &dx, "bn_act_bwd_set", cas, "dx", tol);
        check(S, &dg, "bn_act_bwd_set", cas, "dgamma", tol);
        check(S, &db, "bn_act_bwd_set", cas, "dbeta", tol);
      }
    }
    /* commit: a good step moves the running stats, a refused one leaves them alone */
    for (int nf = 0; nf <= CNN_NONFINITE_LOSS; nf += CNN_NONFINITE_LOSS) {
      cnn_step_state h;
      state_init(S, &h);
      h.nonfinite = nf;
      buf st = state_new(S, &h);
      buf_set(S, &sm, hsm);
      buf_set(S, &sv, hsv);
      buf_set(S, &rm, hrm);
      buf_set(S, &rv, hrv);
      snprintf(cas, sizeof cas, "rows=%zu c=%d momentum=%g nonfinite=%d", rows, c, momentum, nf);
      RUN(S, bn_commit, cas, c, rows, momentum, P(sm), P(sv), P(rm), P(rv), PS(st));
      if (ran) {
        check(S, &rm, "bn_commit", cas, "running_mean", nf ? 0 : S->tol);
        check(S, &rv, "bn_commit", cas, "running_var", nf ? 0 : S->tol);
        check_state(S, &st, "bn_commit", cas, 0, 0);
      }
      buf_free(S, &st);
    }
    buf *all[] = {&x, &gamma, &beta, &rm, &rv, &y, &sm, &si, &sv, &dy, &dx, &dg, &db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) buf_free(S, all[i]);
    float *hall[] = {hx, hdy, hdx, hg, hbeta, hrm, hrv, hsm, hsv, hsi};
    for (size_t i = 0; i < sizeof hall / sizeof hall[0]; i++) free(hall[i]);
  }
}

static void test_bn_fold(suite *S) {
  static const struct { int kout; size_t per_k; } cases[] = {{1, 1}, {8, 27}, {64, 288}, {5, 1000}};
  const float eps = 1e-5f;
  char cas[96];
  int ran;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    int k = cases[ci].kout;
    size_t nw = (size_t)k * cases[ci].per_k;
    float *hw = hrand(S, nw, -1, 1), *hb = hrand(S, k, -1, 1), *hg = hrand(S, k, 0.5f, 1.5f);
    float *hbeta = hrand(S, k, -0.5f, 0.5f), *hrm = hrand(S, k, -0.5f, 0.5f);
    float *hrv = hrand(S, k, 0.5f, 1.5f);
    buf w = buf_from(S, hw, nw), bias = buf_from(S, hb, k), gamma = buf_from(S, hg, k);
    buf beta = buf_from(S, hbeta, k), rm = buf_from(S, hrm, k), rv = buf_from(S, hrv, k);
    buf wo = buf_new(S, nw), bo = buf_new(S, k);
    for (int with_bias = 0; with_bias <= 1; with_bias++) {
      snprintf(cas, sizeof cas, "kout=%d per_k=%zu eps=%g %s", k, cases[ci].per_k, eps,
               with_bias ? "bias" : "no bias");
      buf_poison(S, &wo);
      buf_poison(S, &bo);
      RUN(S, bn_fold, cas, k, cases[ci].per_k, P(w), with_bias ? P(bias) : NULL, P(gamma),
          P(beta), P(rm), P(rv), eps, P(wo), P(bo));
      if (ran) {
        check(S, &wo, "bn_fold", cas, "wout", S->tol);
        check(S, &bo, "bn_fold", cas, "bout", S->tol);
      }
    }
    buf *all[] = {&w, &bias, &gamma, &beta, &rm, &rv, &wo, &bo};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) buf_free(S, all[i]);
    float *hall[] = {hw, hb, hg, hbeta, hrm, hrv};
    for (size_t i = 0; i < sizeof hall / sizeof hall[0]; i++) free(hall[i]);
  }
}

/* ---- convolution with an activation epilogue ------------------------------------ */

void test_conv_act(suite *S) {
  static const struct { const char *name; int n, h, w, c, k, r, s, st, pad, groups; } cases[] = {
      {"3x3 pad 1", 3, 7, 5, 3, 8, 3, 3, 1, 1, 1},
      {"depthwise 3x3 stride 2", 2, 9, 9, 6, 6, 3, 3, 2, 1, 6},
      {"1x1 groups 2", 2, 6, 6, 8, 4, 1, 1, 1, 0, 2},
      {"large 16x16x32->64 3x3", 4, 16, 16, 32, 64, 3, 3, 1, 1, 1}};
  const float alpha = 0.1f;
  char cas[192];
  int ran;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    cnn_conv_desc d;
    memset(&d, 0, sizeof d);
    d.n = cases[ci].n; d.h = cases[ci].h; d.w = cases[ci].w; d.c = cases[ci].c;
    d.k = cases[ci].k; d.r = cases[ci].r; d.s = cases[ci].s;
    d.stride_h = d.stride_w = cases[ci].st;
    d.pad_h = d.pad_w = cases[ci].pad;
    d.dil_h = d.dil_w = 1;
    d.groups = cases[ci].groups;
    d.oh = (d.h + 2 * d.pad_h - d.r) / d.stride_h + 1;
    d.ow = (d.w + 2 * d.pad_w - d.s) / d.stride_w + 1;
    size_t nx = (size_t)d.n * d.h * d.w * d.c, nw = (size_t)d.k * d.r * d.s * (d.c / d.groups);
    size_t ny = (size_t)d.n * d.oh * d.ow * d.k;
    float *hx = hrand(S, nx, -1, 1), *hw = hrand(S, nw, -1, 1), *hb = hrand(S, d.k, -1, 1);
    buf x = buf_from(S, hx, nx), w = buf_from(S, hw, nw), bias = buf_from(S, hb, d.k);
    buf y = buf_new(S, ny);
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
    /* the activation's slope is at most ~1.13 (GELU), so the conv budget carries over */
    double kf = (double)(d.c / d.groups) * d.r * d.s;
    for (int ai = 0; ai < CNN_ACT_COUNT; ai++)
      for (int with_bias = 0; with_bias <= 1; with_bias++) {
        cnn_act a = (cnn_act)ai;
        snprintf(cas, sizeof cas, "%s: n=%d %dx%dx%d -> %dx%dx%d g%d, %s, %s", cases[ci].name,
                 d.n, d.h, d.w, d.c, d.oh, d.ow, d.k, d.groups, with_bias ? "bias" : "no bias",
                 act_name(a));
        buf_poison(S, &y);
        RUN(S, conv_fwd_act, cas, &d, P(x), P(w), with_bias ? P(bias) : NULL, a, alpha, P(y),
            ws_[side_], wsb_[side_]);
        if (ran) check(S, &y, "conv_fwd_act", cas, "y", tol_sum(S, kf + with_bias));
      }
    for (int side = 0; side < 2; side++)
      if (ws_[side]) S->be[side]->ops->free(S->be[side]->ctx, ws_[side]);
    buf_free(S, &x);
    buf_free(S, &w);
    buf_free(S, &bias);
    buf_free(S, &y);
    free(hx);
    free(hw);
    free(hb);
  }
}

/* ---- residual add with an activation ------------------------------------------- */

static void test_add_act(suite *S) {
  const float alpha = 0.1f;
  char cas[96];
  int ran;
  for (size_t si = 0; si < NPSIZES; si++) {
    size_t n = prog_sizes[si];
    float *ha = hrand(S, n, -2, 2), *hb = hrand(S, n, -2, 2), *hdy = hrand(S, n, -1, 1);
    float *hda = hrand(S, n, -1, 1), *hdb = hrand(S, n, -1, 1), *hy = hvec(n);
    buf a = buf_from(S, ha, n), b = buf_from(S, hb, n), y = buf_new(S, n);
    buf dy = buf_from(S, hdy, n), da = buf_new(S, n), db = buf_new(S, n);
    for (int ai = 0; ai < CNN_ACT_COUNT; ai++) {
      cnn_act act = (cnn_act)ai;
      snprintf(cas, sizeof cas, "n=%zu %s alpha=%g", n, act_name(act), alpha);
      buf_poison(S, &y);
      RUN(S, add_act_fwd, cas, n, P(a), P(b), act, alpha, P(y));
      if (ran) check(S, &y, "add_act_fwd", cas, "y", S->tol);
      snprintf(cas, sizeof cas, "n=%zu %s alpha=%g, y aliases a", n, act_name(act), alpha);
      buf_set(S, &y, ha);
      RUN(S, add_act_fwd, cas, n, P(y), P(b), act, alpha, P(y));
      if (ran) check(S, &y, "add_act_fwd", cas, "y", S->tol);

      /* backward from the true output y = f(a + b), computed here in double */
      for (size_t i = 0; i < n; i++) hy[i] = (float)host_act(act, alpha, (double)ha[i] + hb[i]);
      buf_set(S, &y, hy);
      if (act == CNN_ACT_GELU) { /* not derivable from y: CNN_ERR_ARG, nothing written */
        snprintf(cas, sizeof cas, "n=%zu gelu is rejected", n);
        buf_set(S, &da, hda);
        ran = gate(S, "add_act_bwd", S->be[T]->ops->add_act_bwd != NULL,
                   S->be[R]->ops->add_act_bwd != NULL);
        for (int side = 0; ran && side < 2; side++) {
          cnn_backend *be = S->be[side];
          cnn_status st = be->ops->add_act_bwd(be->ctx, n, y.d[side], dy.d[side], act, alpha,
                                               da.d[side], NULL);
          if (side == T && st == CNN_UNSUPPORTED) {
            printf("skip add_act_bwd: unsupported on %s (case %s)\n", be->name, cas);
            S->skips++;
            ran = 0;
            break;
          }
          CHECK(st == CNN_ERR_ARG, "add_act_bwd[%s] on '%s' returned %s, want CNN_ERR_ARG", cas,
                be->name, cnn_status_name(st));
        }
        if (ran) check(S, &da, "add_act_bwd", cas, "da", 0);
        continue;
      }
      for (int which = 0; which < 3; which++) { /* both, da only, db only */
        static const char *what[] = {"da and db", "da only", "db only"};
        snprintf(cas, sizeof cas, "n=%zu %s alpha=%g, %s", n, act_name(act), alpha, what[which]);
        buf_set(S, &da, hda);
        buf_set(S, &db, hdb);
        RUN(S, add_act_bwd, cas, n, P(y), P(dy), act, alpha, which == 2 ? NULL : P(da),
            which == 1 ? NULL : P(db));
        if (ran) {
          check(S, &da, "add_act_bwd", cas, "da", which == 2 ? 0 : S->tol);
          check(S, &db, "add_act_bwd", cas, "db", which == 1 ? 0 : S->tol);
        }
      }
    }
    buf *all[] = {&a, &b, &y, &dy, &da, &db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) buf_free(S, all[i]);
    float *hall[] = {ha, hb, hdy, hda, hdb, hy};
    for (size_t i = 0; i < sizeof hall / sizeof hall[0]; i++) free(hall[i]);
  }
}

/* ---- cast f32 <-> bf16: exact (every backend rounds the same way: core/bf16.h) ---- */
static void test_cast(suite *S) {
  char cas[96];
  int ran;
  for (size_t si = 0; si < NPSIZES; si++) {
    size_t n = prog_sizes[si] + 1, nh = n / 2; /* even: n bf16 values fill nh floats */
    /* magnitudes from 1e-38 (subnormal after rounding) to 1e38, both signs, and
     * values exactly halfway between two bf16 numbers (ties go to even) */
    float *hx = hvec(n);
    for (size_t i = 0; i < n; i++) {
      uint64_t r = cnn_rng_u64(S->seed, i);
      float m = 1.0f + (float)(r & 0xffff) / 65536.0f;
      float e = powf(10.0f, (float)((int)((r >> 16) % 77) - 38));
      hx[i] = (r >> 40 & 1 ? -m : m) * e;
      if (i % 7 == 3) { /* a tie: the 16 low bits are exactly 0x8000 */
        uint32_t u;
        memcpy(&u, &hx[i], 4);
        u = (u & 0xffff0000u) | 0x8000u;
        memcpy(&hx[i], &u, 4);
      }
    }
    S->seed++;
    buf x = buf_from(S, hx, n), h = buf_new(S, nh), back = buf_new(S, n);
    snprintf(cas, sizeof cas, "n=%zu f32 -> bf16", n);
    RUN(S, cast, cas, n, P(x), CNN_DT_F32, P(h), CNN_DT_BF16);
    if (ran) check(S, &h, "cast", cas, "bf16 bits", 0);
    snprintf(cas, sizeof cas, "n=%zu bf16 -> f32", n);
    RUN(S, cast, cas, n, P(h), CNN_DT_BF16, P(back), CNN_DT_F32);
    if (ran) check(S, &back, "cast", cas, "f32", 0);
    buf_free(S, &x);
    buf_free(S, &h);
    buf_free(S, &back);
    free(hx);
  }
}

/* ---- batch norm + activation + max pool ------------------------------------------ */

/* x on a grid of 1/64 steps in [-1, 3): cells of a window differ by whole steps, far
 * more than the f32 and double z can differ, so both backends take the same argmax
 * (equal x, or ReLU zeros, are exact ties that both break alike) */
static void grid_x(suite *S, float *x, size_t n) {
  urand(S, x, n, 0, 256);
  for (size_t i = 0; i < n; i++) x[i] = floorf(x[i]) / 64.0f - 1.0f;
}

static void test_bn_act_pool(suite *S) {
  static const struct { const char *name; int n, h, w, c, kh, kw, sh, sw, ph, pw, oh, ow; } cases[] = {
      /* name                             n   h   w    c kh kw sh sw ph pw oh ow */
      {"2x2 stride 2",                     3,  8,  6,   5, 2, 2, 2, 2, 0, 0, 0, 0},
      {"2x2 stride 2, odd, clipped",       2,  7,  5,   3, 2, 2, 2, 2, 0, 0, 4, 3},
      {"3x3 stride 3 pad 1",               2,  7,  8,   4, 3, 3, 3, 3, 1, 1, 0, 0},
      {"2x2 stride 3, gaps",               2,  8,  7,   3, 2, 2, 3, 3, 0, 0, 0, 0},
      {"global 7x5",                       3,  7,  5,   6, 7, 5, 7, 5, 0, 0, 0, 0},
      {"2x2 stride 2, 300 channels",       2,  4,  4, 300, 2, 2, 2, 2, 0, 0, 0, 0},
      {"global 15x15, channel blocks",     2, 15, 15,  40, 15, 15, 15, 15, 0, 0, 0, 0},
      {"2x2 stride 2, 28x28x24",           4, 28, 28,  24, 2, 2, 2, 2, 0, 0, 0, 0},
      {"1x1 stride 1, 2100 outputs a row", 1,  2, 2100, 3, 1, 1, 1, 1, 0, 0, 0, 0},
  };
  const float eps = 1e-5f, alpha = 0.1f;
  char cas[192];
  int ran;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    cnn_pool_desc d;
    memset(&d, 0, sizeof d);
    d.n = cases[ci].n; d.h = cases[ci].h; d.w = cases[ci].w; d.c = cases[ci].c;
    d.kh = cases[ci].kh; d.kw = cases[ci].kw; d.stride_h = cases[ci].sh; d.stride_w = cases[ci].sw;
    d.pad_h = cases[ci].ph; d.pad_w = cases[ci].pw;
    d.oh = cases[ci].oh ? cases[ci].oh : (d.h + 2 * d.pad_h - d.kh) / d.stride_h + 1;
    d.ow = cases[ci].ow ? cases[ci].ow : (d.w + 2 * d.pad_w - d.kw) / d.stride_w + 1;
    const int c = d.c;
    const size_t rows = (size_t)d.n * d.h * d.w, nx = rows * c, ny = (size_t)d.n * d.oh * d.ow * c;
    double tol = tol_sum(S, (double)rows);
    float *hx = hvec(nx), *hdy = hrand(S, ny, -1, 1), *hdx = hrand(S, nx, -1, 1);
    float *hg = hrand(S, c, 0.5f, 1.5f), *hbeta = hrand(S, c, -0.5f, 0.5f);
    float *hrm = hrand(S, c, -0.5f, 0.5f), *hrv = hrand(S, c, 0.5f, 1.5f);
    float *hsm = hvec(c), *hsv = hvec(c), *hsi = hvec(c);
    grid_x(S, hx, nx);
    tu_bn_off_kink(hx, rows, c, hg, hbeta, eps, 1e-3);
    tu_bn_stats(hx, rows, c, eps, hsm, hsv, hsi);
    buf x = buf_from(S, hx, nx), gamma = buf_from(S, hg, c), beta = buf_from(S, hbeta, c);
    buf rm = buf_from(S, hrm, c), rv = buf_from(S, hrv, c), y = buf_new(S, ny);
    buf sm = buf_new(S, c), si = buf_new(S, c), sv = buf_new(S, c);
    buf dy = buf_from(S, hdy, ny), dx = buf_new(S, nx), dg = buf_new(S, c), db = buf_new(S, c);
    buf sel = buf_new(S, (ny + 3) / 4); /* bytes */
    float *hsel[2] = {hvec(sel.n + GUARD), hvec(sel.n + GUARD)};
    for (int ai = 0; ai < CNN_ACT_COUNT; ai++) {
      cnn_act a = (cnn_act)ai;
      snprintf(cas, sizeof cas, "%s: n=%d %dx%dx%d -> %dx%d, %s", cases[ci].name, d.n, d.h, d.w,
               c, d.oh, d.ow, act_name(a));
      buf *outs[] = {&y, &sm, &si, &sv, &sel};
      for (size_t i = 0; i < 5; i++) buf_poison(S, outs[i]);
      RUN(S, bn_act_pool_fwd, cas, &d, P(x), P(gamma), P(beta), eps, a, alpha, NULL, NULL, P(sm),
          P(si), P(sv), PB(sel), P(y));
      if (ran) {
        check(S, &y, "bn_act_pool_fwd", cas, "y", tol);
        check(S, &sm, "bn_act_pool_fwd", cas, "save_mean", tol);
        check(S, &si, "bn_act_pool_fwd", cas, "save_invstd", tol);
        check(S, &sv, "bn_act_pool_fwd", cas, "save_var", tol);
        /* the argmaxes: the same cells on both sides (the grid makes them unambiguous) */
        for (int side = 0; side < 2; side++) buf_get(S, &sel, side, hsel[side]);
        CHECK(!memcmp(hsel[T], hsel[R], ny), "bn_act_pool_fwd[%s] sel (%s vs ref)", cas,
              S->be[T]->name);
      }
      for (size_t i = 0; i < 4; i++) buf_poison(S, outs[i]);
      RUN(S, bn_act_pool_fwd, cas, &d, P(x), P(gamma), P(beta), eps, a, alpha, P(rm), P(rv),
          NULL, NULL, NULL, NULL, P(y));
      if (ran) check(S, &y, "bn_act_pool_fwd (running statistics)", cas, "y", S->tol);
      /* backward from the true batch statistics (computed here in double), routed by
       * ref's argmaxes on both sides */
      buf_upload_raw(S, &sel, hsel[R]);
      for (int set = 0; set <= 1; set++) {
        buf_set(S, &sm, hsm);
        buf_set(S, &si, hsi);
        if (set)
          buf_poison(S, &dx); /* the overwriting form reads nothing of dx */
        else
          buf_set(S, &dx, hdx);
        buf_poison(S, &dg);
        buf_poison(S, &db);
        RUN(S, bn_act_pool_bwd, cas, &d, P(x), P(dy), PB(sel), P(gamma), P(beta), P(sm), P(si),
            a, alpha, P(dx), P(dg), P(db), set);
        const char *op = set ? "bn_act_pool_bwd (set)" : "bn_act_pool_bwd";
        if (ran) {
          check(S, &dx, op, cas, "dx", tol);
          check(S, &dg, op, cas, "dgamma", tol);
          check(S, &db, op, cas, "dbeta", tol);
        }
      }
      /* without batch norm (gamma NULL): an activation layer and its pool */
      buf_poison(S, &y);
      buf_poison(S, &sel);
      RUN(S, bn_act_pool_fwd, cas, &d, P(x), NULL, NULL, eps, a, alpha, NULL, NULL, NULL, NULL,
          NULL, PB(sel), P(y));
      if (ran) {
        check(S, &y, "bn_act_pool_fwd (no bn)", cas, "y", S->tol);
        for (int side = 0; side < 2; side++) buf_get(S, &sel, side, hsel[side]);
        CHECK(!memcmp(hsel[T], hsel[R], ny), "bn_act_pool_fwd (no bn)[%s] sel (%s vs ref)", cas,
              S->be[T]->name);
      }
      buf_upload_raw(S, &sel, hsel[R]);
      for (int set = 0; set <= 1; set++) {
        if (set)
          buf_poison(S, &dx);
        else
          buf_set(S, &dx, hdx);
        RUN(S, bn_act_pool_bwd, cas, &d, P(x), P(dy), PB(sel), NULL, NULL, NULL, NULL, a, alpha,
            P(dx), NULL, NULL, set);
        if (ran) check(S, &dx, set ? "bn_act_pool_bwd (no bn, set)" : "bn_act_pool_bwd (no bn)",
                       cas, "dx", S->tol);
      }
    }
    /* overlapping windows, and windows of more cells than a byte names, are refused */
    cnn_pool_desc bad[2] = {d, d};
    bad[0].stride_h = bad[0].kh > 1 ? bad[0].kh - 1 : 1;
    bad[0].kh = bad[0].stride_h + 1;
    bad[1].kh = bad[1].stride_h = 16;
    bad[1].kw = bad[1].stride_w = 16;
    for (int side = 0; side < 2; side++)
      for (int k = 0; k < 2; k++) {
        cnn_backend *b = S->be[side];
        if (!b->ops->bn_act_pool_fwd) continue;
        cnn_status st = b->ops->bn_act_pool_fwd(b->ctx, &bad[k], x.d[side], gamma.d[side],
                                                beta.d[side], eps, CNN_ACT_RELU, alpha, NULL,
                                                NULL, sm.d[side], si.d[side], sv.d[side],
                                                sel.d[side], y.d[side]);
        CHECK(st == CNN_ERR_ARG, "%s bn_act_pool_fwd refuses %s (%s): %s", b->name,
              k ? "a 16x16 window" : "overlapping windows", cases[ci].name, cnn_status_name(st));
      }
    buf *all[] = {&x, &gamma, &beta, &rm, &rv, &y, &sm, &si, &sv, &dy, &dx, &dg, &db, &sel};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) buf_free(S, all[i]);
    float *hs[] = {hx, hdy, hdx, hg, hbeta, hrm, hrv, hsm, hsv, hsi, hsel[0], hsel[1]};
    for (size_t i = 0; i < sizeof hs / sizeof *hs; i++) free(hs[i]);
  }
}

void test_program_ops(suite *S) {
  test_cast(S);
  test_async(S);
  test_step_begin(S);
  test_step_end(S);
  test_check_finite(S);
  test_softmax_step(S);
  test_optim_st(S);
  test_dropout_st(S);
  test_bn_act(S);
  test_bn_act_pool(S);
  test_bn_fold(S);
  test_conv_act(S);
  test_add_act(S);
}
