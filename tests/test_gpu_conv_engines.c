/* Every conv engine of the `cuda` backend, forced one at a time, against `ref`.
 *
 * Only the backend op table is used (the CUDA module is dlopen'ed): for each case,
 * each math (F32, TF32, BF16) and each pass, conv_engines lists the engines that can
 * run it, set_option("conv-engine", name) forces one, and the backend op runs it:
 *   fwd          conv_fwd (no bias) and conv_fwd_act (bias, leaky 0.1): y poisoned
 *   bwd-data     conv_bwd_data: dx starts from known values (checks it accumulates)
 *   bwd-filter   conv_bwd_filter with db, with the planned workspace and again with
 *                none (then the engine runs, or the dispatch refuses it by name)
 * Each output is compared with ref in f32 by max_i |got - want| / max(|want|, |got|, 1)
 * (tu_max_rel_err), against a tolerance per math scaled by sqrt(K), K the terms
 * summed. Each engine also runs each pass twice: the results must be bitwise equal.
 * Prints the largest error seen per (engine, math, pass).
 * Exits 77 (ctest SKIP) without CUDA or without a device. */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "testutil.h"

/* Tolerances, relative to max(|ref|, 1), times sqrt(K). Inputs are uniform in
 * [-1, 1], so a term x*w has rms 1/3.
 *  F32:  f32 products and sums: the backend suite's 1e-5.
 *  TF32: each operand rounded to 11 significant bits (relative error <= 2^-11,
 *        rms 2^-11/sqrt(3) = 2.8e-4), so a term's error has rms about
 *        1/3 * sqrt(2) * 2.8e-4 = 1.3e-4 and a sum of K about 1.3e-4 sqrt(K);
 *        2e-3 sqrt(K) is 15 of those standard deviations.
 *  BF16: 8 significant bits (relative error <= 2^-8, rms 2.3e-3): a term's error
 *        rms about 1.1e-3, the sum about 1.1e-3 sqrt(K); 1e-2 sqrt(K) is 9 of them.
 * Not to be loosened to make an engine pass: a larger error is a bug. */
#define TOL_F32 1e-5
#define TOL_TF32 2e-3
#define TOL_BF16 1e-2

#define MAX_ENGINES 64

typedef struct conv_case {
  const char *name;
  int n, h, w, c, k, r, s, sh, sw, ph, pw, dh, dw, groups;
} conv_case;

static const conv_case cases[] = {
    /* name                                  n   h   w    c    k  r  s sh sw ph pw dh dw  g */
    {"3x3, c and k > 128, partial tiles",    2,  9, 11, 136, 144, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {"3x3 stride 2, odd sizes, batch 3",     3, 13, 15, 132, 136, 3, 3, 2, 2, 1, 1, 1, 1, 1},
    {"1x1 stride 2",                         2, 14, 13, 136, 132, 1, 1, 2, 2, 0, 0, 1, 1, 1},
    {"1x1 stride 1",                         3,  7,  9, 144, 136, 1, 1, 1, 1, 0, 0, 1, 1, 1},
    {"3x3 dilation 2",                       2, 12, 10,  64,  72, 3, 3, 1, 1, 2, 2, 2, 2, 1},
    {"3x3 dilation 2 stride 2",              2, 13, 11,  40,  48, 3, 3, 2, 2, 2, 2, 2, 2, 1},
    {"3x3 groups 2",                         2, 10,  9, 136, 144, 3, 3, 1, 1, 1, 1, 1, 1, 2},
    {"3x3 groups 4",                         2,  9,  9,  64,  96, 3, 3, 1, 1, 1, 1, 1, 1, 4},
    {"7x7/2 first layer, c = 3",             2, 31, 29,   3,  64, 7, 7, 2, 2, 3, 3, 1, 1, 1},
    {"3x3, channels not multiples of 4",     2,  9,  7,  18,  30, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {"5x3 stride 3x2 pad 2x1 dil 1x2",       3, 17, 16,  24,  40, 5, 3, 3, 2, 2, 1, 1, 2, 1},
    {"3x3 groups 2, odd channels per group", 2,  8,  9,  26,  42, 3, 3, 1, 1, 1, 1, 1, 1, 2},
    {"3x3 many pixels (split K)",            3, 32, 32,  32,  64, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    /* 65,537 groups of 8 channels: past the 65,535 limit of gridDim.y/z, so engines
     * that put groups on the grid must refuse it or fold them (the grid-limit path) */
    {"1x1, 65537 groups (grid limit)",       1,  3,  3, 524296, 524296, 1, 1, 1, 1, 0, 0, 1, 1, 65537},
};

static const char *const math_names[3] = {"f32", "tf32", "bf16"};
static const double math_tol[3] = {TOL_F32, TOL_TF32, TOL_BF16};
static const char *const pass_names[3] = {"fwd", "bwd-data", "bwd-filter"};

/* largest error seen per (engine, math, pass), as a fraction of its tolerance too */
typedef struct record {
  char engine[96];
  int math, pass, runs;
  double err, ratio;
} record;
static record records[512];
static int n_records;

static void note(const char *engine, int math, int pass, double err, double tol) {
  record *r = NULL;
  for (int i = 0; i < n_records; i++)
    if (records[i].math == math && records[i].pass == pass &&
        strcmp(records[i].engine, engine) == 0)
      r = &records[i];
  if (!r) {
    if (n_records == (int)(sizeof records / sizeof records[0])) return;
    r = &records[n_records++];
    memset(r, 0, sizeof *r);
    snprintf(r->engine, sizeof r->engine, "%s", engine);
    r->math = math;
    r->pass = pass;
  }
  r->runs++;
  if (err > r->err || err != err) r->err = err;
  if (err / tol > r->ratio || err != err) r->ratio = err / tol;
}

/* ---- backend buffers ---- */

static float *hrand(size_t n, uint64_t seed) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  if (!p) {
    fprintf(stderr, "FAIL: out of host memory\n");
    exit(1);
  }
  tu_fill_uniform(p, n, -1.0f, 1.0f, seed);
  return p;
}

static float *hnan(size_t n) {
  float *p = hrand(n, 1);
  tu_poison(p, n);
  return p;
}

static void *dev(cnn_backend *b, const float *host, size_t n) {
  void *p = NULL;
  CHECK_OK(b->ops->alloc(b->ctx, (n ? n : 1) * sizeof(float), &p));
  if (!p) {
    fprintf(stderr, "FAIL: %s alloc of %zu floats\n", b->name, n);
    exit(1);
  }
  if (host && n) CHECK_OK(b->ops->upload(b->ctx, p, host, n * sizeof(float)));
  return p;
}

static void set(cnn_backend *b, void *p, const float *host, size_t n) {
  if (n) CHECK_OK(b->ops->upload(b->ctx, p, host, n * sizeof(float)));
}

static float *get(cnn_backend *b, const void *p, size_t n) {
  float *h = hrand(n, 2);
  if (n) CHECK_OK(b->ops->download(b->ctx, h, p, n * sizeof(float)));
  return h;
}

/* compare got (downloaded) with want; returns the error */
static double compare(const char *what, const char *engine, int math, int pass, const char *cas,
                      const float *got, const float *want, size_t n, double terms) {
  const double tol = math_tol[math] * sqrt(terms < 1 ? 1 : terms);
  size_t where = 0;
  const double err = tu_max_rel_err(got, want, n, &where);
  CHECK(err <= tol, "%s: engine %s, math %s, %s %s: max error %.3g > tol %.3g at %zu "
        "(got %g, want %g)", cas, engine, math_names[math], pass_names[pass], what, err, tol,
        where, n ? got[where] : 0.0, n ? want[where] : 0.0);
  note(engine, math, pass, err, tol);
  return err;
}

static void check_same(const char *what, const char *engine, int math, const char *cas,
                       const float *a, const float *b, size_t n) {
  CHECK(memcmp(a, b, n * sizeof(float)) == 0,
        "%s: engine %s, math %s: %s differs between two identical runs (not deterministic)",
        cas, engine, math_names[math], what);
}

static void run_case(cnn_backend *gpu, cnn_backend *ref, const conv_case *cc, uint64_t seed) {
  cnn_conv_desc d;
  memset(&d, 0, sizeof d);
  d.n = cc->n; d.h = cc->h; d.w = cc->w; d.c = cc->c;
  d.k = cc->k; d.r = cc->r; d.s = cc->s;
  d.stride_h = cc->sh; d.stride_w = cc->sw;
  d.pad_h = cc->ph; d.pad_w = cc->pw;
  d.dil_h = cc->dh; d.dil_w = cc->dw;
  d.groups = cc->groups;
  d.oh = (cc->h + 2 * cc->ph - cc->dh * (cc->r - 1) - 1) / cc->sh + 1;
  d.ow = (cc->w + 2 * cc->pw - cc->dw * (cc->s - 1) - 1) / cc->sw + 1;
  char cas[256];
  snprintf(cas, sizeof cas, "%s: n=%d %dx%dx%d -> %dx%dx%d k%dx%d s%dx%d p%dx%d d%dx%d g%d",
           cc->name, d.n, d.h, d.w, d.c, d.oh, d.ow, d.k, d.r, d.s, d.stride_h, d.stride_w,
           d.pad_h, d.pad_w, d.dil_h, d.dil_w, d.groups);
  printf("case %s\n", cas);
  const int cg = d.c / d.groups, kg = d.k / d.groups;
  const size_t nx = (size_t)d.n * d.h * d.w * d.c, nw = (size_t)d.k * d.r * d.s * cg;
  const size_t ny = (size_t)d.n * d.oh * d.ow * d.k, nk = (size_t)d.k;
  /* terms summed per output: fwd r*s*cg (+1 bias), bwd-data r*s*kg (+1 start value),
   * bwd-filter n*oh*ow */
  const double kf = (double)d.r * d.s * cg + 1, kb = (double)d.r * d.s * kg + 1;
  const double kw = (double)d.n * d.oh * d.ow;

  float *hx = hrand(nx, seed + 1), *hw = hrand(nw, seed + 2), *hb = hrand(nk, seed + 3);
  float *hdy = hrand(ny, seed + 4), *hdx = hrand(nx, seed + 5);
  float *ny_nan = hnan(ny), *nw_nan = hnan(nw), *nk_nan = hnan(nk);

  /* the oracle */
  float *want_y = NULL, *want_ya = NULL, *want_dx = NULL, *want_dw = NULL, *want_db = NULL;
  {
    float *x = dev(ref, hx, nx), *w = dev(ref, hw, nw), *b = dev(ref, hb, nk);
    float *y = dev(ref, NULL, ny), *dy = dev(ref, hdy, ny), *dx = dev(ref, hdx, nx);
    float *dw = dev(ref, NULL, nw), *db = dev(ref, NULL, nk);
    CHECK_OK(ref->ops->conv_fwd(ref->ctx, &d, x, w, NULL, y, NULL, 0));
    want_y = get(ref, y, ny);
    CHECK_OK(ref->ops->conv_fwd_act(ref->ctx, &d, x, w, b, CNN_ACT_LEAKY, 0.1f, y, NULL, 0));
    want_ya = get(ref, y, ny);
    CHECK_OK(ref->ops->conv_bwd_data(ref->ctx, &d, dy, w, dx, NULL, 0));
    want_dx = get(ref, dx, nx);
    CHECK_OK(ref->ops->conv_bwd_filter(ref->ctx, &d, x, dy, dw, db, NULL, 0));
    want_dw = get(ref, dw, nw);
    want_db = get(ref, db, nk);
    void *all[] = {x, w, b, y, dy, dx, dw, db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ref->ops->free(ref->ctx, all[i]);
  }

  float *x = dev(gpu, hx, nx), *w = dev(gpu, hw, nw), *b = dev(gpu, hb, nk);
  float *y = dev(gpu, NULL, ny), *dy = dev(gpu, hdy, ny), *dx = dev(gpu, NULL, nx);
  float *dw = dev(gpu, NULL, nw), *db = dev(gpu, NULL, nk);

  for (int math = 0; math < 3; math++) {
    d.math = (cnn_math)math;
    const size_t wsb = gpu->ops->conv_workspace ? gpu->ops->conv_workspace(gpu->ctx, &d) : 0;
    void *ws = NULL;
    if (wsb) CHECK_OK(gpu->ops->alloc(gpu->ctx, wsb, &ws));
    for (int pass = 0; pass < 3; pass++) {
      const char *names[MAX_ENGINES];
      int ne = gpu->ops->conv_engines(gpu->ctx, &d, (cnn_conv_dir)pass, names, MAX_ENGINES);
      CHECK(ne >= 1, "%s: math %s, %s: no engine listed", cas, math_names[math], pass_names[pass]);
      if (ne > MAX_ENGINES) ne = MAX_ENGINES;
      for (int e = 0; e < ne; e++) {
        const char *en = names[e];
        cnn_status st = gpu->ops->set_option(gpu->ctx, "conv-engine", en);
        CHECK(st == CNN_OK, "set_option conv-engine=%s: %s", en, cnn_last_error());
        if (st != CNN_OK) continue;
        if (pass == CNN_CONV_FWD) {
          float *r1, *r2;
          set(gpu, y, ny_nan, ny);
          CHECK_OK(gpu->ops->conv_fwd(gpu->ctx, &d, x, w, NULL, y, ws, wsb));
          r1 = get(gpu, y, ny);
          compare("y", en, math, pass, cas, r1, want_y, ny, kf - 1);
          set(gpu, y, ny_nan, ny);
          CHECK_OK(gpu->ops->conv_fwd(gpu->ctx, &d, x, w, NULL, y, ws, wsb));
          r2 = get(gpu, y, ny);
          check_same("y", en, math, cas, r1, r2, ny);
          free(r1);
          free(r2);
          set(gpu, y, ny_nan, ny);
          CHECK_OK(gpu->ops->conv_fwd_act(gpu->ctx, &d, x, w, b, CNN_ACT_LEAKY, 0.1f, y, ws, wsb));
          r1 = get(gpu, y, ny);
          compare("y (bias, leaky)", en, math, pass, cas, r1, want_ya, ny, kf);
          free(r1);
        } else if (pass == CNN_CONV_BWD_DATA) {
          float *r1, *r2;
          set(gpu, dx, hdx, nx);
          CHECK_OK(gpu->ops->conv_bwd_data(gpu->ctx, &d, dy, w, dx, ws, wsb));
          r1 = get(gpu, dx, nx);
          compare("dx", en, math, pass, cas, r1, want_dx, nx, kb);
          set(gpu, dx, hdx, nx);
          CHECK_OK(gpu->ops->conv_bwd_data(gpu->ctx, &d, dy, w, dx, ws, wsb));
          r2 = get(gpu, dx, nx);
          check_same("dx", en, math, cas, r1, r2, nx);
          free(r1);
          free(r2);
        } else {
          float *r1, *r2, *b1, *b2;
          set(gpu, dw, nw_nan, nw);
          set(gpu, db, nk_nan, nk);
          CHECK_OK(gpu->ops->conv_bwd_filter(gpu->ctx, &d, x, dy, dw, db, ws, wsb));
          r1 = get(gpu, dw, nw);
          b1 = get(gpu, db, nk);
          compare("dw", en, math, pass, cas, r1, want_dw, nw, kw);
          compare("db", en, math, pass, cas, b1, want_db, nk, kw);
          set(gpu, dw, nw_nan, nw);
          set(gpu, db, nk_nan, nk);
          CHECK_OK(gpu->ops->conv_bwd_filter(gpu->ctx, &d, x, dy, dw, db, ws, wsb));
          r2 = get(gpu, dw, nw);
          b2 = get(gpu, db, nk);
          check_same("dw", en, math, cas, r1, r2, nw);
          check_same("db", en, math, cas, b1, b2, nk);
          free(r2);
          /* no workspace at all: the engine runs (with fewer or no split slabs) or the
           * forced engine is refused with a message naming what it needs */
          set(gpu, dw, nw_nan, nw);
          st = gpu->ops->conv_bwd_filter(gpu->ctx, &d, x, dy, dw, NULL, NULL, 0);
          if (st == CNN_OK) {
            r2 = get(gpu, dw, nw);
            compare("dw (no workspace)", en, math, pass, cas, r2, want_dw, nw, kw);
            free(r2);
          } else {
            const char *why = cnn_last_error();
            CHECK(why && *why, "%s: engine %s, math %s: bwd-filter without workspace failed "
                  "with no message", cas, en, math_names[math]);
          }
          free(r1);
          free(b1);
          free(b2);
        }
      }
    }
    if (ws) gpu->ops->free(gpu->ctx, ws);
  }

  void *all[] = {x, w, b, y, dy, dx, dw, db};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) gpu->ops->free(gpu->ctx, all[i]);
  float *hall[] = {hx, hw, hb, hdy, hdx, ny_nan, nw_nan, nk_nan,
                   want_y, want_ya, want_dx, want_dw, want_db};
  for (size_t i = 0; i < sizeof hall / sizeof hall[0]; i++) free(hall[i]);
}

int main(void) {
  /* before any CUDA call: keep cuBLAS / cuDNN from using TF32 behind our back */
  setenv("NVIDIA_TF32_OVERRIDE", "0", 1);
  tu_need_cuda(); /* skips (77) without a usable GPU, says why */

  cnn_backend *gpu = NULL, *ref = NULL;
  CHECK_OK(cnn_backend_ref_create(&ref));
  CHECK_OK(cnn_backend_cuda_create(&gpu));
  if (gpu && ref) {
    if (!gpu->ops->conv_engines || !gpu->ops->set_option) {
      CHECK(0, "the cuda backend has no conv_engines / set_option op");
    } else {
      cnn_device_info info;
      if (cnn_cuda_device_info(0, &info) == CNN_OK)
        printf("device 0: %s (cc %d.%d)\n", info.name, info.cc_major, info.cc_minor);
      /* CNN_TEST_QUICK=1 (scripts/gpu-check.sh under compute-sanitizer, which runs
       * kernels 10-100x slower): the first two cases and the c = 3 first layer */
      const char *q = getenv("CNN_TEST_QUICK");
      const int quick = q && *q && strcmp(q, "0") != 0;
      for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!quick || i < 2 || cases[i].c == 3)
          run_case(gpu, ref, &cases[i], 1000 * (uint64_t)(i + 1));
      CHECK_OK(gpu->ops->set_option(gpu->ctx, "conv-engine", "auto"));
      printf("%-32s %-5s %-10s %5s %12s %9s\n", "engine", "math", "pass", "runs", "max error",
             "of tol");
      for (int i = 0; i < n_records; i++)
        printf("%-32s %-5s %-10s %5d %12.3e %9.3f\n", records[i].engine,
               math_names[records[i].math], pass_names[records[i].pass], records[i].runs,
               records[i].err, records[i].ratio);
    }
  }
  if (gpu) gpu->ops->destroy(gpu);
  if (ref) ref->ops->destroy(ref);
  return tu_finish("test_gpu_conv_engines");
}
