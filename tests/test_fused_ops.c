/* Each step-program op against the chain of plain ops it stands for, on the SAME
 * backend: ref and cpu. Both keep buffers in host memory, so buffers come from the
 * backend's alloc and are read and written directly. A NULL entry is a failure on
 * both. Every call's status is checked; no check at all is a failure.
 *
 * Tolerances. With u = 2^-24 the f32 unit roundoff, TOL = 1e-5 (~170 u) is the
 * budget of an elementwise result, as in tests/lib/opsuite.c. The two chains round
 * differently (the unfused one stores the BN or conv output in f32 before the
 * activation, a backend may sum statistics in another order), so:
 *   elementwise results (act after add, BN inference, optimizers, commit)   TOL
 *   results built on K-term sums (BN over rows, conv over (c/g) r s)        TOL sqrt(K)
 *   softmax with logits up to L in magnitude, C classes                     TOL (max(1,L) + sqrt C)
 *   conv with folded BN: the scale s = gamma / sqrt(rvar + eps) <= 2.2 here
 *   multiplies the conv's error, and folding rounds w s once more           3 TOL sqrt(K + 2)
 * and exact where the contract defines the op as a plain one with derived
 * arguments (dropout_mask_st, step_begin's lr, integer accounting, refused steps
 * leaving buffers bit-identical). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/rng.h"
#include "core/schedule.h"
#include "testutil.h"

#define TOL 1e-5

typedef struct fx {
  cnn_backend *be;
  const cnn_backend_ops *o;
  void *ctx;
  int must;         /* ref: a NULL new op is a failure, not a skip */
  int skips;
  uint64_t seed;    /* next fill seed */
} fx;

/* ---- helpers ---------------------------------------------------------------------- */

static void *fnew(fx *F, size_t n) {
  void *p = NULL;
  cnn_status st = F->o->alloc(F->ctx, (n ? n : 1) * sizeof(float), &p);
  if (st != CNN_OK || !p) {
    fprintf(stderr, "FAIL alloc of %zu floats on %s: %s\n", n, F->be->name, cnn_last_error());
    exit(1);
  }
  return p;
}

static float *frand(fx *F, size_t n, float lo, float hi) {
  float *p = fnew(F, n);
  tu_fill_uniform(p, n, lo, hi, F->seed++);
  return p;
}

static float *fcopy(fx *F, const float *src, size_t n) {
  float *p = fnew(F, n);
  memcpy(p, src, n * sizeof(float));
  return p;
}

static void ffree(fx *F, int count, void **ptrs) {
  for (int i = 0; i < count; i++) F->o->free(F->ctx, ptrs[i]);
}
#define FREE_ALL(F, ...)                                             \
  do {                                                               \
    void *all_[] = {__VA_ARGS__};                                    \
    ffree((F), (int)(sizeof all_ / sizeof all_[0]), all_);           \
  } while (0)

static int have(fx *F, const char *op, int present) {
  if (present) return 1;
  if (F->must) {
    CHECK(0, "%s: backend '%s' has no entry (NULL)", op, F->be->name);
  } else {
    printf("skip %s on %s: not implemented (NULL)\n", op, F->be->name);
    F->skips++;
  }
  return 0;
}
#define HAVE(F, OP) have((F), #OP, (F)->o->OP != NULL)

static void close_to(fx *F, const char *op, const char *cas, const char *what, const float *got,
                     const float *want, size_t n, double tol) {
  char label[256];
  snprintf(label, sizeof label, "%s on %s [%s]: %s", op, F->be->name, cas, what);
  tu_check_close(label, got, want, n, tol);
}

static int same_d(double a, double b, double tol) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
  if (isinf(a) || isinf(b)) return a == b;
  return fabs(a - b) / fmax(fmax(fabs(a), fabs(b)), 1.0) <= tol;
}

/* the whole step state against the one the contract predicts */
static void state_is(const char *label, const cnn_step_state *g, const cnn_step_state *w,
                     double tol) {
#define SI(f) \
  CHECK(g->f == w->f, "%s: " #f " %lld, want %lld", label, (long long)g->f, (long long)w->f)
  SI(step);
  SI(refused);
  SI(last_refused);
  SI(seen);
  SI(correct);
  SI(step_correct);
  SI(step_n);
  SI(nonfinite);
#undef SI
  CHECK(same_d(g->loss_sum, w->loss_sum, tol), "%s: loss_sum %.17g, want %.17g", label,
        g->loss_sum, w->loss_sum);
  CHECK(same_d(g->step_loss, w->step_loss, tol), "%s: step_loss %.17g, want %.17g", label,
        g->step_loss, w->step_loss);
  CHECK(g->lr == w->lr, "%s: lr %.9g, want %.9g", label, g->lr, w->lr);
  int bad = -1;
  for (int i = 0; i < CNN_LOSS_RING && bad < 0; i++)
    if (!same_d(g->loss_ring[i], w->loss_ring[i], tol)) bad = i;
  CHECK(bad < 0, "%s: loss_ring[%d] %.9g, want %.9g", label, bad, bad < 0 ? 0 : g->loss_ring[bad],
        bad < 0 ? 0 : w->loss_ring[bad]);
}

static cnn_step_state *state_new(fx *F) {
  cnn_step_state *st = fnew(F, sizeof(cnn_step_state) / sizeof(float));
  memset(st, 0, sizeof *st);
  st->last_refused = -1;
  return st;
}

static const char *act_name(cnn_act a) {
  static const char *names[] = {"linear", "relu", "leaky", "gelu", "sigmoid", "tanh", "ramp", "relu6"};
  return names[a];
}

/* ---- batch norm: train / commit / backward / inference --------------------------- */

static void test_bn(fx *F) {
  if (!HAVE(F, bn_act_fwd_train) || !HAVE(F, bn_commit) || !HAVE(F, bn_act_bwd) ||
      !HAVE(F, bn_act_fwd_infer))
    return;
  static const struct { size_t rows; int c; } cases[] = {{2, 5}, {105, 3}, {1024, 32}};
  const float eps = 1e-5f, mom = 0.1f, alpha = 0.1f;
  const cnn_backend_ops *o = F->o;
  void *cx = F->ctx;
  char cas[96];
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    size_t rows = cases[ci].rows, n = rows * cases[ci].c;
    int c = cases[ci].c;
    double tol = TOL * sqrt((double)rows);
    float *x = frand(F, n, -1, 3), *gamma = frand(F, c, 0.5f, 1.5f);
    float *beta = frand(F, c, -0.5f, 0.5f), *rm0 = frand(F, c, -0.5f, 0.5f);
    float *rv0 = frand(F, c, 0.5f, 1.5f), *dy = frand(F, n, -1, 1), *dx0 = frand(F, n, -1, 1);
    tu_bn_off_kink(x, rows, c, gamma, beta, eps, 1e-3);
    float *var = fnew(F, c);
    tu_bn_stats(x, rows, c, eps, NULL, var, NULL);
    float *rm = fnew(F, c), *rv = fnew(F, c), *sm = fnew(F, c), *si = fnew(F, c);
    float *ybn = fnew(F, n), *yact = fnew(F, n), *g = fnew(F, n), *dxu = fnew(F, n);
    float *dgu = fnew(F, c), *dbu = fnew(F, c), *fsm = fnew(F, c), *fsi = fnew(F, c);
    float *fsv = fnew(F, c), *fy = fnew(F, n), *frm = fnew(F, c), *frv = fnew(F, c);
    float *dxf = fnew(F, n), *dgf = fnew(F, c), *dbf = fnew(F, c), *yi = fnew(F, n);
    cnn_step_state *st = state_new(F);
    for (int ai = 0; ai < CNN_ACT_COUNT; ai++) {
      cnn_act a = (cnn_act)ai;
      snprintf(cas, sizeof cas, "rows=%zu c=%d %s", rows, c, act_name(a));
      /* unfused: bn_fwd_train (moves the running stats), then the activation */
      memcpy(rm, rm0, c * sizeof(float));
      memcpy(rv, rv0, c * sizeof(float));
      CHECK_OK(o->bn_fwd_train(cx, rows, c, x, gamma, beta, eps, mom, rm, rv, sm, si, ybn));
      CHECK_OK(o->act_fwd(cx, a, alpha, n, ybn, yact));
      tu_poison(fy, n);
      CHECK_OK(o->bn_act_fwd_train(cx, rows, c, x, gamma, beta, eps, a, alpha, fsm, fsi, fsv, fy));
      close_to(F, "bn_act_fwd_train", cas, "y", fy, yact, n, tol);
      close_to(F, "bn_act_fwd_train", cas, "save_mean", fsm, sm, c, tol);
      close_to(F, "bn_act_fwd_train", cas, "save_invstd", fsi, si, c, tol);
      close_to(F, "bn_act_fwd_train", cas, "save_var (double)", fsv, var, c, tol);

      /* commit of a good step == bn_fwd_train's running stats; a refused one is a no-op */
      memcpy(frm, rm0, c * sizeof(float));
      memcpy(frv, rv0, c * sizeof(float));
      st->nonfinite = 0;
      CHECK_OK(o->bn_commit(cx, c, rows, mom, fsm, fsv, frm, frv, st));
      close_to(F, "bn_commit", cas, "running_mean", frm, rm, c, tol);
      close_to(F, "bn_commit", cas, "running_var", frv, rv, c, tol);
      memcpy(rm, frm, c * sizeof(float));
      memcpy(rv, frv, c * sizeof(float));
      st->nonfinite = CNN_NONFINITE_INPUT;
      CHECK_OK(o->bn_commit(cx, c, rows, mom, fsm, fsv, frm, frv, st));
      CHECK(!memcmp(frm, rm, c * sizeof(float)) && !memcmp(frv, rv, c * sizeof(float)),
            "bn_commit on %s [%s]: a refused step changed the running stats", F->be->name, cas);

      /* backward: act_bwd at the BN output, then bn_bwd of that gradient */
      memset(g, 0, n * sizeof(float));
      memcpy(dxu, dx0, n * sizeof(float));
      memcpy(dxf, dx0, n * sizeof(float));
      CHECK_OK(o->act_bwd(cx, a, alpha, n, ybn, yact, dy, g));
      CHECK_OK(o->bn_bwd(cx, rows, c, x, g, gamma, sm, si, dxu, dgu, dbu));
      tu_poison(dgf, c);
      tu_poison(dbf, c);
      CHECK_OK(o->bn_act_bwd(cx, rows, c, x, dy, gamma, beta, sm, si, a, alpha, dxf, dgf, dbf));
      close_to(F, "bn_act_bwd", cas, "dx", dxf, dxu, n, tol);
      close_to(F, "bn_act_bwd", cas, "dgamma", dgf, dgu, c, tol);
      close_to(F, "bn_act_bwd", cas, "dbeta", dbf, dbu, c, tol);

      /* inference with the initial running stats */
      CHECK_OK(o->bn_fwd_infer(cx, rows, c, x, gamma, beta, rm0, rv0, eps, ybn));
      CHECK_OK(o->act_fwd(cx, a, alpha, n, ybn, yact));
      tu_poison(yi, n);
      CHECK_OK(o->bn_act_fwd_infer(cx, rows, c, x, gamma, beta, rm0, rv0, eps, a, alpha, yi));
      close_to(F, "bn_act_fwd_infer", cas, "y", yi, yact, n, TOL);
    }
    FREE_ALL(F, x, gamma, beta, rm0, rv0, dy, dx0, var, rm, rv, sm, si, ybn, yact, g, dxu, dgu,
             dbu, fsm, fsi, fsv, fy, frm, frv, dxf, dgf, dbf, yi, st);
  }
}

/* ---- convolution: activation epilogue and BN folding ----------------------------- */

static void test_conv(fx *F) {
  if (!HAVE(F, conv_fwd_act) || !HAVE(F, bn_fold)) return;
  static const struct { int n, h, w, c, k, r, stride, pad, groups; } cases[] = {
      {3, 7, 5, 3, 8, 3, 1, 1, 1}, {2, 9, 9, 6, 6, 3, 2, 1, 6}, {2, 8, 8, 16, 12, 3, 1, 1, 4}};
  const float alpha = 0.1f, eps = 1e-5f;
  const cnn_backend_ops *o = F->o;
  void *cx = F->ctx;
  char cas[128];
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    cnn_conv_desc d = {.n = cases[ci].n, .h = cases[ci].h, .w = cases[ci].w, .c = cases[ci].c,
                       .k = cases[ci].k, .r = cases[ci].r, .s = cases[ci].r,
                       .stride_h = cases[ci].stride, .stride_w = cases[ci].stride,
                       .pad_h = cases[ci].pad, .pad_w = cases[ci].pad, .dil_h = 1, .dil_w = 1,
                       .groups = cases[ci].groups};
    d.oh = (d.h + 2 * d.pad_h - d.r) / d.stride_h + 1;
    d.ow = (d.w + 2 * d.pad_w - d.s) / d.stride_w + 1;
    size_t per_k = (size_t)d.r * d.s * (d.c / d.groups), nw = (size_t)d.k * per_k;
    size_t nx = (size_t)d.n * d.h * d.w * d.c, rows = (size_t)d.n * d.oh * d.ow;
    size_t ny = rows * d.k;
    double K = (double)per_k;
    size_t wsb = o->conv_workspace ? o->conv_workspace(cx, &d) : 0;
    void *ws = wsb ? fnew(F, (wsb + sizeof(float) - 1) / sizeof(float)) : NULL;
    float *x = frand(F, nx, -1, 1), *w = frand(F, nw, -1, 1), *bias = frand(F, d.k, -1, 1);
    float *gamma = frand(F, d.k, 0.5f, 1.5f), *beta = frand(F, d.k, -0.5f, 0.5f);
    float *rm = frand(F, d.k, -0.5f, 0.5f), *rv = frand(F, d.k, 0.5f, 1.5f);
    float *yc = fnew(F, ny), *ya = fnew(F, ny), *yf = fnew(F, ny);
    float *wf = fnew(F, nw), *bf = fnew(F, d.k);
    for (int with_bias = 0; with_bias <= 1; with_bias++) {
      const float *b = with_bias ? bias : NULL;
      CHECK_OK(o->conv_fwd(cx, &d, x, w, b, yc, ws, wsb));
      for (int ai = 0; ai < CNN_ACT_COUNT; ai++) {
        cnn_act a = (cnn_act)ai;
        snprintf(cas, sizeof cas, "case %zu %s %s", ci, with_bias ? "bias" : "no bias",
                 act_name(a));
        CHECK_OK(o->act_fwd(cx, a, alpha, ny, yc, ya));
        tu_poison(yf, ny);
        CHECK_OK(o->conv_fwd_act(cx, &d, x, w, b, a, alpha, yf, ws, wsb));
        close_to(F, "conv_fwd_act", cas, "y", yf, ya, ny, TOL * sqrt(K + with_bias));
      }
      /* conv with folded weights == conv, then BN inference over its k channels */
      snprintf(cas, sizeof cas, "case %zu %s", ci, with_bias ? "bias" : "no bias");
      CHECK_OK(o->bn_fwd_infer(cx, rows, d.k, yc, gamma, beta, rm, rv, eps, ya));
      tu_poison(wf, nw);
      tu_poison(bf, d.k);
      CHECK_OK(o->bn_fold(cx, d.k, per_k, w, b, gamma, beta, rm, rv, eps, wf, bf));
      CHECK_OK(o->conv_fwd(cx, &d, x, wf, bf, yf, ws, wsb));
      close_to(F, "bn_fold + conv_fwd", cas, "y", yf, ya, ny, 3 * TOL * sqrt(K + 2));
    }
    FREE_ALL(F, x, w, bias, gamma, beta, rm, rv, yc, ya, yf, wf, bf);
    if (ws) F->o->free(F->ctx, ws);
  }
}

/* ---- residual add with an activation -------------------------------------------- */

static void test_add_act(fx *F) {
  if (!HAVE(F, add_act_fwd) || !HAVE(F, add_act_bwd)) return;
  static const size_t sizes[] = {1, 1001, 100003};
  const float alpha = 0.1f;
  const cnn_backend_ops *o = F->o;
  void *cx = F->ctx;
  char cas[96];
  for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
    size_t n = sizes[si];
    float *a = frand(F, n, -2, 2), *b = frand(F, n, -2, 2), *dy = frand(F, n, -1, 1);
    float *da0 = frand(F, n, -1, 1), *db0 = frand(F, n, -1, 1);
    float *x = fnew(F, n), *y = fnew(F, n), *yf = fnew(F, n), *g = fnew(F, n);
    float *dau = fnew(F, n), *dbu = fnew(F, n), *daf = fnew(F, n), *dbf = fnew(F, n);
    CHECK_OK(o->add(cx, n, a, b, x));
    for (int ai = 0; ai < CNN_ACT_COUNT; ai++) {
      cnn_act act = (cnn_act)ai;
      snprintf(cas, sizeof cas, "n=%zu %s", n, act_name(act));
      CHECK_OK(o->act_fwd(cx, act, alpha, n, x, y));
      tu_poison(yf, n);
      CHECK_OK(o->add_act_fwd(cx, n, a, b, act, alpha, yf));
      close_to(F, "add_act_fwd", cas, "y", yf, y, n, TOL);
      memcpy(yf, a, n * sizeof(float)); /* y aliasing a */
      CHECK_OK(o->add_act_fwd(cx, n, yf, b, act, alpha, yf));
      close_to(F, "add_act_fwd", cas, "y (aliasing a)", yf, y, n, TOL);

      memcpy(daf, da0, n * sizeof(float));
      memcpy(dbf, db0, n * sizeof(float));
      if (act == CNN_ACT_GELU) {
        cnn_status st = o->add_act_bwd(cx, n, y, dy, act, alpha, daf, dbf);
        CHECK(st == CNN_ERR_ARG, "add_act_bwd on %s [%s]: %s, want CNN_ERR_ARG", F->be->name,
              cas, cnn_status_name(st));
        continue;
      }
      /* unfused: g = dy f'(x) (act_bwd), then da += g, db += g (axpby) */
      memset(g, 0, n * sizeof(float));
      memcpy(dau, da0, n * sizeof(float));
      memcpy(dbu, db0, n * sizeof(float));
      CHECK_OK(o->act_bwd(cx, act, alpha, n, x, y, dy, g));
      CHECK_OK(o->axpby(cx, n, 1.0f, g, 1.0f, dau));
      CHECK_OK(o->axpby(cx, n, 1.0f, g, 1.0f, dbu));
      CHECK_OK(o->add_act_bwd(cx, n, y, dy, act, alpha, daf, dbf));
      close_to(F, "add_act_bwd", cas, "da", daf, dau, n, TOL);
      close_to(F, "add_act_bwd", cas, "db", dbf, dbu, n, TOL);
      memcpy(daf, da0, n * sizeof(float));
      CHECK_OK(o->add_act_bwd(cx, n, y, dy, act, alpha, daf, NULL));
      close_to(F, "add_act_bwd", cas, "da (db NULL)", daf, dau, n, TOL);
    }
    FREE_ALL(F, a, b, dy, da0, db0, x, y, yf, g, dau, dbu, daf, dbf);
  }
}

/* ---- fused softmax cross-entropy -------------------------------------------------- */

static void test_softmax(fx *F) {
  if (!HAVE(F, softmax_xent_step) || !HAVE(F, step_begin)) return;
  static const struct { int n, classes; float range, smoothing, inv_temp, dscale; } cases[] = {
      {8, 10, 3, 0.1f, 0.5f, 0.125f}, {5, 1000, 3, 0, 2, 0.2f}, {6, 10, 40, 0.1f, 1, 1 / 6.0f},
      {1, 2, 3, 0, 1, 1}};
  const cnn_backend_ops *o = F->o;
  void *cx = F->ctx;
  char cas[128], label[192];
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    int n = cases[ci].n, C = cases[ci].classes;
    float it = cases[ci].inv_temp, sm = cases[ci].smoothing, ds = cases[ci].dscale;
    size_t nz = (size_t)n * C;
    float *lg = frand(F, nz, -cases[ci].range, cases[ci].range), *dl0 = frand(F, nz, -1, 1);
    float *u = frand(F, n, 0, 1);
    int32_t *lab = fnew(F, n);
    for (int i = 0; i < n; i++) lab[i] = (int32_t)(u[i] * C) < C ? (int32_t)(u[i] * C) : C - 1;
    float *z = fnew(F, nz), *p = fnew(F, nz), *loss = fnew(F, n), *dlu = fnew(F, nz);
    float *pf = fnew(F, nz), *lossf = fnew(F, n), *dlf = fnew(F, nz);
    cnn_step_state *st = state_new(F);
    double L = 0;
    for (size_t i = 0; i < nz; i++) L = fmax(L, fabs((double)it * lg[i]));
    double tol = TOL * (fmax(1, L) + sqrt((double)C));
    snprintf(cas, sizeof cas, "n=%d classes=%d inv_temp=%g smoothing=%g dscale=%g", n, C, it, sm,
             ds);

    /* unfused: z = inv_temp logits (axpby), forward, backward */
    CHECK_OK(o->axpby(cx, nz, it, lg, 0.0f, z));
    CHECK_OK(o->softmax_xent_fwd(cx, n, C, z, lab, sm, p, loss));
    memcpy(dlu, dl0, nz * sizeof(float));
    CHECK_OK(o->softmax_xent_bwd(cx, n, C, p, lab, sm, ds, dlu));

    CHECK_OK(o->step_begin(cx, st, NULL));
    memcpy(dlf, dl0, nz * sizeof(float));
    tu_poison(pf, nz);
    tu_poison(lossf, n);
    CHECK_OK(o->softmax_xent_step(cx, n, C, lg, it, lab, sm, pf, lossf, dlf, ds, st));
    close_to(F, "softmax_xent_step", cas, "probs", pf, p, nz, tol);
    close_to(F, "softmax_xent_step", cas, "loss", lossf, loss, n, tol);
    close_to(F, "softmax_xent_step", cas, "dlogits", dlf, dlu, nz, tol);

    /* metrics: the sums of the unfused losses; hits by argmax of the probs written */
    cnn_step_state want = *st;
    double lsum = 0;
    int64_t hits = 0;
    for (int i = 0; i < n; i++) {
      int best = 0;
      for (int j = 1; j < C; j++)
        if (pf[(size_t)i * C + j] > pf[(size_t)i * C + best]) best = j;
      hits += best == lab[i];
      lsum += loss[i];
    }
    want.step_loss = lsum;
    want.step_correct = hits;
    want.step_n = n;
    want.nonfinite = 0;
    snprintf(label, sizeof label, "softmax_xent_step on %s [%s]: step state", F->be->name, cas);
    state_is(label, st, &want, tol * n);

    /* a second batch adds to the step's sums; without dlogits nothing else moves */
    memcpy(dlu, dlf, nz * sizeof(float));
    CHECK_OK(o->softmax_xent_step(cx, n, C, lg, it, lab, sm, pf, lossf, NULL, ds, st));
    want.step_loss = 2 * lsum;
    want.step_correct = 2 * hits;
    want.step_n = 2 * n;
    snprintf(label, sizeof label, "softmax_xent_step on %s [%s]: second batch", F->be->name, cas);
    state_is(label, st, &want, tol * n);
    close_to(F, "softmax_xent_step", cas, "dlogits untouched (NULL)", dlf, dlu, nz, 0);

    /* without labels only probs: loss, dlogits, state untouched */
    want = *st;
    tu_poison(lossf, n);
    tu_poison(pf, nz);
    CHECK_OK(o->softmax_xent_step(cx, n, C, lg, it, NULL, sm, pf, lossf, dlf, ds, st));
    close_to(F, "softmax_xent_step", cas, "probs (no labels)", pf, p, nz, tol);
    close_to(F, "softmax_xent_step", cas, "dlogits (no labels)", dlf, dlu, nz, 0);
    int untouched = 1;
    for (int i = 0; i < n; i++) untouched &= isnan(lossf[i]);
    CHECK(untouched, "softmax_xent_step on %s [%s]: loss written without labels", F->be->name,
          cas);
    snprintf(label, sizeof label, "softmax_xent_step on %s [%s]: no labels", F->be->name, cas);
    state_is(label, st, &want, 0);

    /* a NaN logit: the step's loss is not finite */
    lg[nz - 1] = NAN;
    CHECK_OK(o->step_begin(cx, st, NULL));
    CHECK_OK(o->softmax_xent_step(cx, n, C, lg, it, lab, sm, pf, lossf, NULL, ds, st));
    CHECK(st->nonfinite == CNN_NONFINITE_LOSS && !isfinite(st->step_loss) && st->step_n == n,
          "softmax_xent_step on %s [%s], NaN logit: nonfinite %d step_loss %g step_n %lld",
          F->be->name, cas, st->nonfinite, st->step_loss, (long long)st->step_n);
    FREE_ALL(F, lg, dl0, u, lab, z, p, loss, dlu, pf, lossf, dlf, st);
  }
}

/* ---- optimizers and dropout keyed by the step state ------------------------------- */

static void test_optim(fx *F) {
  if (!HAVE(F, sgd_step_st) || !HAVE(F, adam_step_st)) return;
  const size_t n = 10007;
  const cnn_backend_ops *o = F->o;
  void *cx = F->ctx;
  char cas[96];
  float *p0 = frand(F, n, -1, 1), *g = frand(F, n, -1, 1), *v0 = frand(F, n, -1, 1);
  float *m0 = frand(F, n, -0.1f, 0.1f), *s0 = frand(F, n, 0, 0.01f);
  float *p1 = fnew(F, n), *v1 = fnew(F, n), *m1 = fnew(F, n), *p2 = fnew(F, n), *v2 = fnew(F, n);
  float *m2 = fnew(F, n);
  cnn_step_state *st = state_new(F);
  static const int64_t steps[] = {0, 9};
  for (size_t k = 0; k < 2; k++)
    for (int nesterov = 0; nesterov <= 1; nesterov++) {
      st->step = steps[k];
      st->lr = 0.05f;
      st->nonfinite = 0;
      snprintf(cas, sizeof cas, "step=%lld nesterov/decoupled=%d", (long long)st->step, nesterov);
      memcpy(p1, p0, n * 4), memcpy(v1, v0, n * 4), memcpy(p2, p0, n * 4), memcpy(v2, v0, n * 4);
      CHECK_OK(o->sgd_step_st(cx, n, p1, g, v1, 0.9f, 5e-4f, nesterov, st));
      CHECK_OK(o->sgd_step(cx, n, p2, g, v2, st->lr, 0.9f, 5e-4f, nesterov));
      close_to(F, "sgd_step_st", cas, "p", p1, p2, n, TOL);
      close_to(F, "sgd_step_st", cas, "v", v1, v2, n, TOL);
      memcpy(p1, p0, n * 4), memcpy(v1, s0, n * 4), memcpy(m1, m0, n * 4);
      memcpy(p2, p0, n * 4), memcpy(v2, s0, n * 4), memcpy(m2, m0, n * 4);
      CHECK_OK(o->adam_step_st(cx, n, p1, g, m1, v1, 0.9f, 0.999f, 1e-8f, 0.01f, nesterov, st));
      CHECK_OK(o->adam_step(cx, n, p2, g, m2, v2, st->lr, 0.9f, 0.999f, 1e-8f, 0.01f, nesterov,
                            st->step + 1));
      close_to(F, "adam_step_st", cas, "p", p1, p2, n, TOL);
      close_to(F, "adam_step_st", cas, "m", m1, m2, n, TOL);
      close_to(F, "adam_step_st", cas, "v", v1, v2, n, TOL);

      /* refused: bit-identical */
      st->nonfinite = nesterov ? CNN_NONFINITE_LOSS : CNN_NONFINITE_INPUT;
      memcpy(p1, p0, n * 4), memcpy(v1, v0, n * 4), memcpy(m1, m0, n * 4);
      CHECK_OK(o->sgd_step_st(cx, n, p1, g, v1, 0.9f, 5e-4f, nesterov, st));
      CHECK(!memcmp(p1, p0, n * 4) && !memcmp(v1, v0, n * 4),
            "sgd_step_st on %s [%s]: a refused step changed p or v", F->be->name, cas);
      CHECK_OK(o->adam_step_st(cx, n, p1, g, m1, v1, 0.9f, 0.999f, 1e-8f, 0.01f, nesterov, st));
      CHECK(!memcmp(p1, p0, n * 4) && !memcmp(v1, v0, n * 4) && !memcmp(m1, m0, n * 4),
            "adam_step_st on %s [%s]: a refused step changed p, m or v", F->be->name, cas);
    }
  FREE_ALL(F, p0, g, v0, m0, s0, p1, v1, m1, p2, v2, m2, st);
}

static void test_dropout(fx *F) {
  if (!HAVE(F, dropout_mask_st)) return;
  static const struct { size_t n; float p; uint64_t seed, stream; int64_t step; } cases[] = {
      {1001, 0.3f, 1234, 0, 0}, {1001, 0.3f, 1234, 1, 0}, {1001, 0.3f, 1234, 0, 1},
      {100003, 0.5f, 7, 4095, 123456}};
  const cnn_backend_ops *o = F->o;
  void *cx = F->ctx;
  cnn_step_state *st = state_new(F);
  float *prev = NULL;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    size_t n = cases[ci].n;
    float *m1 = fnew(F, n), *m2 = fnew(F, n);
    st->step = cases[ci].step;
    uint64_t seed = cnn_rng_u64(cases[ci].seed, (uint64_t)st->step * 4096 + cases[ci].stream);
    CHECK_OK(o->dropout_mask_st(cx, n, cases[ci].p, cases[ci].seed, cases[ci].stream, st, m1));
    CHECK_OK(o->dropout_mask(cx, n, cases[ci].p, seed, 0, m2));
    CHECK(!memcmp(m1, m2, n * sizeof(float)),
          "dropout_mask_st on %s [case %zu]: not dropout_mask with the derived seed",
          F->be->name, ci);
    /* another step or stream must draw another mask */
    if (prev && ci < 3)
      CHECK(memcmp(m1, prev, n * sizeof(float)), "dropout_mask_st on %s [case %zu]: same mask "
            "as case 0", F->be->name, ci);
    if (ci == 0) prev = fcopy(F, m1, n);
    FREE_ALL(F, m1, m2);
  }
  FREE_ALL(F, prev, st);
}

/* ---- step state: lr schedule and the accounting of a short run -------------------- */

static void test_step_begin(fx *F) {
  if (!HAVE(F, step_begin)) return;
  cnn_step_state *st = state_new(F);
  static const int64_t steps[] = {0, 4, 9, 10, 250, 999, 1000, 5000};
  for (int kind = CNN_SD_CONSTANT; kind <= CNN_SD_POLY; kind++)
    for (size_t si = 0; si < sizeof steps / sizeof steps[0]; si++) {
      cnn_sched_desc sd = {.kind = kind, .lr = 0.1, .final_lr = 0.001, .warmup = 10,
                           .total = 1000, .step_size = 100, .gamma = 0.5, .power = 2.0};
      st->step = steps[si];
      st->nonfinite = 3, st->step_loss = 2.5, st->step_correct = 4, st->step_n = 7;
      st->seen = 11, st->correct = 5, st->loss_sum = 9.5;
      cnn_step_state want = *st;
      want.nonfinite = 0, want.step_loss = 0, want.step_correct = 0, want.step_n = 0;
      want.lr = cnn_sched_lr(&sd, steps[si]);
      CHECK_OK(F->o->step_begin(F->ctx, st, &sd));
      char label[128];
      snprintf(label, sizeof label, "step_begin on %s [kind %d step %lld]", F->be->name, kind,
               (long long)steps[si]);
      state_is(label, st, &want, 0);
    }
  cnn_step_state want = *st;
  want.nonfinite = 0, want.step_loss = 0, want.step_correct = 0, want.step_n = 0;
  CHECK_OK(F->o->step_begin(F->ctx, st, NULL));
  state_is("step_begin without a schedule keeps lr", st, &want, 0);
  FREE_ALL(F, st);
}

/* nonfinite |= INPUT exactly when some element is NaN or Inf; other bits are kept */
static void test_check_finite(fx *F) {
  if (!HAVE(F, check_finite)) return;
  const size_t n = 1001;
  const float bad[] = {NAN, INFINITY, -INFINITY};
  float *x = frand(F, n, -1e30f, 1e30f);
  cnn_step_state *st = state_new(F);
  for (int keep = 0; keep <= CNN_NONFINITE_LOSS; keep += CNN_NONFINITE_LOSS) {
    st->nonfinite = keep;
    CHECK_OK(F->o->check_finite(F->ctx, n, x, st));
    CHECK(st->nonfinite == keep, "check_finite on %s: finite data gave %d, want %d", F->be->name,
          st->nonfinite, keep);
    for (size_t at = 0; at < n; at += n / 2)
      for (int b = 0; b < 3; b++) {
        float old = x[at];
        x[at] = bad[b];
        st->nonfinite = keep;
        CHECK_OK(F->o->check_finite(F->ctx, n, x, st));
        CHECK(st->nonfinite == (keep | CNN_NONFINITE_INPUT),
              "check_finite on %s: %g at [%zu] gave %d, want %d", F->be->name, x[at], at,
              st->nonfinite, keep | CNN_NONFINITE_INPUT);
        x[at] = old;
      }
  }
  FREE_ALL(F, x, st);
}

/* What step_end must do, from backend.h, applied to the host copy `w`. */
static void model_step_end(cnn_step_state *w, int train) {
  if (train) {
    w->loss_ring[w->step % CNN_LOSS_RING] =
        (float)(w->step_loss / (double)(w->step_n > 0 ? w->step_n : 1));
    if (w->nonfinite) {
      w->refused++;
      w->last_refused = w->step;
      return;
    }
  }
  w->seen += w->step_n;
  w->correct += w->step_correct;
  w->loss_sum += w->step_loss;
  if (train) w->step++;
}

/* Eight training steps across the end of the loss ring, two of them refused (NaN
 * logits; a NaN in the input alone), then evaluation after metrics_reset. */
static void test_accounting(fx *F) {
  if (!HAVE(F, step_begin) || !HAVE(F, step_end) || !HAVE(F, metrics_reset) ||
      !HAVE(F, check_finite) || !HAVE(F, softmax_xent_step))
    return;
  const int n = 6, C = 5;
  const cnn_backend_ops *o = F->o;
  void *cx = F->ctx;
  cnn_step_state *st = state_new(F), want;
  st->step = CNN_LOSS_RING - 3;
  float *img = fnew(F, 64), *lg = fnew(F, (size_t)n * C), *p = fnew(F, (size_t)n * C);
  float *loss = fnew(F, n), *u = frand(F, n, 0, 1);
  int32_t *lab = fnew(F, n);
  for (int i = 0; i < n; i++) lab[i] = (int32_t)(u[i] * C) < C ? (int32_t)(u[i] * C) : C - 1;
  cnn_sched_desc sd = {.kind = CNN_SD_COSINE, .lr = 0.1, .final_lr = 0.01, .warmup = 2,
                       .total = CNN_LOSS_RING + 10};
  char label[128];
  for (int s = 0; s < 8; s++) {
    tu_fill_uniform(img, 64, -1, 1, F->seed++);
    tu_fill_uniform(lg, (size_t)n * C, -3, 3, F->seed++);
    if (s == 2) lg[7] = NAN;   /* refused: input and loss */
    if (s == 5) img[63] = NAN; /* refused: input only, the loss stays finite */
    CHECK_OK(o->step_begin(cx, st, &sd));
    CHECK_OK(o->check_finite(cx, 64, img, st));
    CHECK_OK(o->check_finite(cx, (size_t)n * C, lg, st));
    CHECK_OK(o->softmax_xent_step(cx, n, C, lg, 1.0f, lab, 0.1f, p, loss, NULL, 1.0f, st));
    int want_nf = s == 2 ? CNN_NONFINITE_INPUT | CNN_NONFINITE_LOSS
                         : s == 5 ? CNN_NONFINITE_INPUT : 0;
    CHECK(st->nonfinite == want_nf, "step %d on %s: nonfinite %d, want %d", s, F->be->name,
          st->nonfinite, want_nf);
    want = *st;
    model_step_end(&want, 1);
    CHECK_OK(o->step_end(cx, st, 1));
    snprintf(label, sizeof label, "step_end on %s, training step %d", F->be->name, s);
    state_is(label, st, &want, TOL);
  }
  CHECK(st->step == CNN_LOSS_RING + 3 && st->refused == 2 && st->last_refused == CNN_LOSS_RING + 1,
        "after the run on %s: step %lld refused %lld last_refused %lld", F->be->name,
        (long long)st->step, (long long)st->refused, (long long)st->last_refused);

  want = *st;
  want.seen = want.correct = 0, want.loss_sum = 0;
  CHECK_OK(o->metrics_reset(cx, st));
  state_is("metrics_reset", st, &want, 0);
  for (int s = 0; s < 3; s++) { /* evaluation: the last batch is not finite, yet counted */
    tu_fill_uniform(lg, (size_t)n * C, -3, 3, F->seed++);
    if (s == 2) lg[0] = INFINITY;
    CHECK_OK(o->step_begin(cx, st, NULL));
    CHECK_OK(o->check_finite(cx, (size_t)n * C, lg, st));
    CHECK_OK(o->softmax_xent_step(cx, n, C, lg, 1.0f, lab, 0.1f, p, loss, NULL, 1.0f, st));
    want = *st;
    model_step_end(&want, 0);
    CHECK_OK(o->step_end(cx, st, 0));
    snprintf(label, sizeof label, "step_end on %s, evaluation batch %d", F->be->name, s);
    state_is(label, st, &want, TOL);
  }
  CHECK(st->seen == 3 * n && st->step == CNN_LOSS_RING + 3 && !isfinite(st->loss_sum),
        "after evaluation on %s: seen %lld step %lld loss_sum %g", F->be->name,
        (long long)st->seen, (long long)st->step, st->loss_sum);
  FREE_ALL(F, st, img, lg, p, loss, u, lab);
}

/* ---- async transfers (host memory: a copy, done on return or after read_done) ----- */

static void test_async(fx *F) {
  if (!HAVE(F, upload_async) || !HAVE(F, read_async) || !HAVE(F, read_done)) return;
  const size_t n = 4099;
  float *src = frand(F, n, -1, 1), *dev = fnew(F, n), *back = fnew(F, n);
  float *host = malloc(n * sizeof(float));
  if (!host) exit(1);
  memcpy(host, src, n * sizeof(float));
  CHECK_OK(F->o->upload_async(F->ctx, dev, host, n * sizeof(float)));
  tu_poison(host, n); /* reusable at once */
  CHECK_OK(F->o->read_async(F->ctx, back, dev, n * sizeof(float)));
  CHECK(F->o->read_done(F->ctx, 1) == 1, "read_done(wait) on %s", F->be->name);
  close_to(F, "upload_async + read_async", "n=4099", "round trip", back, src, n, 0);
  free(host);
  FREE_ALL(F, src, dev, back);
}

/* ---- driver ---------------------------------------------------------------------- */

static int plain_ops_present(const cnn_backend *be) {
  const cnn_backend_ops *o = be->ops;
  return o->alloc && o->free && o->add && o->axpby && o->act_fwd && o->act_bwd && o->conv_fwd &&
         o->bn_fwd_train && o->bn_fwd_infer && o->bn_bwd && o->dropout_mask &&
         o->softmax_xent_fwd && o->softmax_xent_bwd && o->sgd_step && o->adam_step;
}

/* returns the number of checks run */
static int run_backend(cnn_backend *be, int must) {
  int checks0 = tu_checks;
  fx F = {.be = be, .o = be->ops, .ctx = be->ctx, .must = must, .seed = 0xf05ed000u};
  if (!plain_ops_present(be)) {
    CHECK(0, "backend '%s' lacks a plain op this test compares against", be->name);
    return tu_checks - checks0;
  }
  test_async(&F);
  test_step_begin(&F);
  test_check_finite(&F);
  test_accounting(&F);
  test_softmax(&F);
  test_optim(&F);
  test_dropout(&F);
  test_bn(&F);
  test_conv(&F);
  test_add_act(&F);
  int ran = tu_checks - checks0;
  if (be->ops->sync) CHECK_OK(be->ops->sync(be->ctx));
  printf("%s: %d checks, %d skipped\n", be->name, ran, F.skips);
  return ran;
}

int main(void) {
  cnn_backend *ref = NULL, *cpu = NULL;
  CHECK_OK(cnn_backend_ref_create(&ref));
  CHECK_OK(cnn_backend_cpu_create(&cpu));
  int ref_checks = ref ? run_backend(ref, 1) : 0;
  CHECK(ref_checks > 0, "no check ran on ref");
  if (cpu) run_backend(cpu, 1);
  if (cpu) cpu->ops->destroy(cpu);
  if (ref) ref->ops->destroy(ref);
  return tu_finish("test_fused_ops");
}
