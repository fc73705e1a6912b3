#define _POSIX_C_SOURCE 200809L /* clock_gettime */
/* The cpu backend's ctx and its conv engines: ours (cpu_conv.c: im2col+gemm,
 * gemm-1x1, depthwise; the engine is a function of the shape) and oneDNN's
 * (cpu_dnnl.c, when built: "dnnl" with oneDNN's own weight layout, "dnnl-plain"
 * with ours). Which one runs a (shape, pass) is the conv-engine setting
 * (set_option, or $CNN_CPU_CONV_ENGINE when the backend is created):
 *
 *   (unset)     oneDNN where it takes the shape, ours elsewhere; but convs of bf16
 *               maths (cnn_conv_desc.math) on a CPU with bf16 instructions run ours
 *               (oneDNN's bf16 path is opt-in until it has run on such a CPU)
 *   own         ours, always
 *   dnnl        oneDNN wherever it takes the shape (ours elsewhere); likewise
 *   dnnl-plain
 *   auto        measured: the first time a (shape, pass) is met (conv_tune, which
 *               program compilation calls, or the first op) every engine that takes
 *               it runs a few times on scratch buffers and the fastest (least of 3
 *               timed runs after a warm-up) is remembered in the ctx
 *
 * Results are a fixed function of the inputs and the thread count for a fixed
 * choice; `auto` chooses by timing, so two processes may choose differently (and
 * so differ in the last bits): it is opt-in, and the default stays deterministic.
 * The choice is keyed by the thread count too (oneDNN builds a primitive for one). */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend/cpu/cpu.h"
#include "backend/cpu/cpu_dnnl.h"
#include "backend/cpu/cpu_wino.h"

/* ENG_WINO first after ours: the engines after it are oneDNN's */
enum { ENG_OWN = 0, ENG_WINO, ENG_DNNL, ENG_DNNL_PLAIN, ENG_N };
enum { MODE_DEFAULT = 0, MODE_AUTO, MODE_OWN, MODE_WINO, MODE_DNNL, MODE_DNNL_PLAIN };

typedef struct cpu_sel {
  cnn_conv_desc d;
  int dir, threads, engine;
} cpu_sel;

/* Weights kept repacked for an engine across inference runs (convs whose desc has
 * wconst): one per (shape, engine, epilogue, team size, weight pointer), valid while its epoch
 * is the ctx's; weights_changed starts a new epoch. */
typedef struct cpu_pack {
  cnn_conv_desc d; /* wconst cleared */
  int engine, with_bias, act;
  int threads; /* oneDNN builds a primitive (and may pick a layout) per team size */
  float alpha;
  const float *w;
  unsigned long epoch; /* of the contents; 0: never filled */
  void *buf;
  size_t bytes;
} cpu_pack;

/* at most this much host memory in kept packs (beyond it: repacked every call) */
#define CPU_PACK_BYTES ((size_t)2 << 30)

struct cpu_ctx {
  int mode;
  int dnnl_tried;
  cpu_dnnl *dnnl;
  cpu_sel *sel;
  int nsel, cap;
  cpu_pack *pack;
  int npack, pack_cap;
  size_t pack_bytes;
  unsigned long epoch; /* weights_changed count, from 1 */
  cnn_cpu_adapt adapt; /* the team size under contention (backend.h) */
};

static cnn_status parse_mode(const char *v, int *mode) {
  static const struct { const char *name; int mode; } modes[] = {
      {"auto", MODE_AUTO}, {"own", MODE_OWN}, {"winograd", MODE_WINO}, {"dnnl", MODE_DNNL},
      {"dnnl-plain", MODE_DNNL_PLAIN}};
  for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
    if (!strcmp(v, modes[i].name)) {
      *mode = modes[i].mode;
      return CNN_OK;
    }
  return cnn_error(CNN_ERR_ARG, "--conv-engine %s: the cpu backend's engines are auto, own, "
                   "winograd, dnnl and dnnl-plain", v);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

cnn_status cpu_ctx_create(cpu_ctx **out) {
  *out = NULL;
  cpu_ctx *c = calloc(1, sizeof *c);
  if (!c) return cnn_error(CNN_ERR_NOMEM, "cpu create: out of host memory");
  const char *env = getenv("CNN_CPU_CONV_ENGINE");
  if (env && *env) {
    cnn_status st = parse_mode(env, &c->mode);
    if (st != CNN_OK) {
      free(c);
      return cnn_error_prefix(st, "%s", "CNN_CPU_CONV_ENGINE");
    }
  }
  c->epoch = 1;
  /* a team size the user set (OMP_NUM_THREADS, --threads) stays as it is */
  const char *nt = getenv("OMP_NUM_THREADS");
  c->adapt.base = nt && *nt ? 0 : cpu_max_threads();
  c->adapt.cur = cpu_max_threads();
  *out = c;
  return CNN_OK;
}

void cpu_threads_adapt(void *ctx) {
  cpu_ctx *c = ctx;
  if (!c || c->adapt.base <= 1) return;
  double now = now_s();
  if (c->adapt.last_t > 0.0 && now - c->adapt.last_t < CNN_CPU_ADAPT_PERIOD) return; /* cheap */
  int before = c->adapt.cur;
  int t = cnn_cpu_adapt_step(&c->adapt, now, cnn_cpu_run_delay());
#ifdef _OPENMP
  if (t != before) omp_set_num_threads(t);
#else
  (void)t;
  (void)before;
#endif
}

void cpu_team_info(void *ctx, int *team, int *full, double *reduced_s) {
  const cpu_ctx *c = ctx;
  int adapting = c && c->adapt.base > 1;
  *team = adapting ? c->adapt.cur : cpu_max_threads();
  *full = adapting ? c->adapt.base : *team;
  *reduced_s = adapting ? c->adapt.reduced_s : 0.0;
}

void cpu_ctx_destroy(cpu_ctx *c) {
  if (!c) return;
  cpu_dnnl_destroy(c->dnnl);
  free(c->sel);
  for (int i = 0; i < c->npack; i++) free(c->pack[i].buf);
  free(c->pack);
  free(c);
}

void cpu_weights_changed(void *ctx) {
  cpu_ctx *c = ctx;
  if (c) c->epoch++;
}

/* The kept pack of (d, engine, epilogue, w) with `bytes` of room, made on first need;
 * NULL when none can be kept (then the engine repacks per call). *fill: its contents
 * are not this epoch's (the caller repacks, then marks it with pack_done). */
static cpu_pack *pack_for(cpu_ctx *c, const cnn_conv_desc *d, int engine, int with_bias,
                          cnn_act act, float alpha, const float *w, size_t bytes, int *fill) {
  *fill = 1;
  if (!c || !bytes) return NULL;
  const int threads = cpu_max_threads();
  for (int i = 0; i < c->npack; i++) {
    cpu_pack *k = &c->pack[i];
    if (k->w == w && k->engine == engine && k->with_bias == with_bias && k->act == (int)act &&
        k->threads == threads && k->alpha == alpha && k->bytes == bytes &&
        !memcmp(&k->d, d, sizeof *d)) {
      *fill = k->epoch != c->epoch;
      return k;
    }
  }
  if (c->pack_bytes + bytes > CPU_PACK_BYTES) return NULL;
  if (c->npack == c->pack_cap) {
    int cap = c->pack_cap ? 2 * c->pack_cap : 16;
    cpu_pack *np = realloc(c->pack, (size_t)cap * sizeof *np);
    if (!np) return NULL;
    c->pack = np;
    c->pack_cap = cap;
  }
  void *buf;
  if (cpu_alloc_aligned(bytes, "conv weight pack", &buf) != CNN_OK) {
    cnn_error_clear();
    return NULL;
  }
  cpu_pack *k = &c->pack[c->npack++];
  memset(k, 0, sizeof *k);
  k->d = *d;
  k->engine = engine;
  k->with_bias = with_bias;
  k->act = (int)act;
  k->alpha = alpha;
  k->threads = threads;
  k->w = w;
  k->buf = buf;
  k->bytes = bytes;
  c->pack_bytes += bytes;
  return k;
}

/* oneDNN's engine, made on first need (NULL when not built) */
static cpu_dnnl *get_dnnl(cpu_ctx *c) {
  if (!c->dnnl_tried) {
    c->dnnl_tried = 1;
    c->dnnl = cpu_dnnl_create();
  }
  return c->dnnl;
}

static int variant_of(int engine) { return engine == ENG_DNNL_PLAIN ? CPU_DNNL_PLAIN : CPU_DNNL_ANY; }

/* 1 when oneDNN takes pass dir of d in the engine's variant */
static int dnnl_takes(cpu_ctx *c, const cnn_conv_desc *d, int dir, int engine) {
  cpu_dnnl *e = get_dnnl(c);
  if (!e) return 0;
  cnn_status st = cpu_dnnl_check(e, d, (cnn_conv_dir)dir, variant_of(engine));
  if (st != CNN_OK) cnn_error_clear();
  return st == CNN_OK;
}


/* scratch operands for timing: a fixed pattern in [-1, 1] */
static float *pattern(size_t n, unsigned seed) {
  float *p;
  if (cpu_alloc_aligned(n * sizeof *p, "conv tune", (void **)&p) != CNN_OK) return NULL;
  uint32_t s = seed * 2654435761u + 1u;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    p[i] = (float)(s >> 8) * (2.0f / 16777216.0f) - 1.0f;
  }
  return p;
}

typedef struct tune_bufs {
  float *x, *w, *y, *b, *dx, *dw, *db;
  void *ws;
  size_t ws_bytes;
} tune_bufs;

static cnn_status run_engine(cpu_ctx *c, const cnn_conv_desc *d, int dir, int engine,
                             tune_bufs *t) {
  if (engine == ENG_WINO) {
    if (dir == CNN_CONV_FWD)
      return cpu_wino_fwd(d, t->x, t->w, t->b, CNN_ACT_LINEAR, 0.0f, t->y, t->ws, t->ws_bytes);
    if (dir == CNN_CONV_BWD_DATA) return cpu_wino_bwd_data(d, t->y, t->w, t->dx, t->ws, t->ws_bytes);
    return cpu_wino_bwd_filter(d, t->x, t->y, t->dw, t->db, t->ws, t->ws_bytes);
  }
  if (engine == ENG_OWN) {
    if (dir == CNN_CONV_FWD) return cpu_own_conv_fwd(NULL, d, t->x, t->w, t->b, t->y, t->ws, t->ws_bytes);
    if (dir == CNN_CONV_BWD_DATA)
      return cpu_own_conv_bwd_data(NULL, d, t->y, t->w, t->dx, t->ws, t->ws_bytes);
    return cpu_own_conv_bwd_filter(NULL, d, t->x, t->y, t->dw, t->db, t->ws, t->ws_bytes);
  }
  int v = variant_of(engine);
  if (dir == CNN_CONV_FWD)
    return cpu_dnnl_fwd(c->dnnl, d, v, t->x, t->w, NULL, 0, t->b, CNN_ACT_LINEAR, 0.0f, t->y);
  if (dir == CNN_CONV_BWD_DATA) return cpu_dnnl_bwd_data(c->dnnl, d, v, t->y, t->w, t->dx);
  return cpu_dnnl_bwd_filter(c->dnnl, d, v, t->x, t->y, t->dw, t->db);
}

/* Scratch operands above this are timed on fewer images (the engines' relative
 * speed hardly depends on the batch once it is this large). */
#define CPU_TUNE_BYTES ((size_t)256 << 20)

/* time every engine that takes (d, dir); the fastest, ENG_OWN when in doubt */
static int measure(cpu_ctx *c, const cnn_conv_desc *d0, int dir) {
  cnn_conv_desc d = *d0;
  const size_t img_x = (size_t)d.h * d.w * d.c, img_y = (size_t)d.oh * d.ow * d.k;
  const size_t nw = (size_t)d.k * d.r * d.s * (d.c / d.groups);
  while (d.n > 1 && (size_t)d.n * (2 * img_x + img_y) * sizeof(float) > CPU_TUNE_BYTES)
    d.n = (d.n + 1) / 2;
  int cand[ENG_N], nc = 0;
  cand[nc++] = ENG_OWN;
  if (cpu_wino_takes(&d)) cand[nc++] = ENG_WINO;
  for (int e = ENG_DNNL; e < ENG_N; e++)
    if (dnnl_takes(c, d0, dir, e) && dnnl_takes(c, &d, dir, e)) cand[nc++] = e;
  if (nc == 1 || d.n < 1) return ENG_OWN;
  tune_bufs t = {0};
  t.x = pattern((size_t)d.n * img_x, 1);
  t.y = pattern((size_t)d.n * img_y, 2);
  t.w = pattern(nw, 3);
  t.b = pattern((size_t)d.k, 4);
  t.dx = pattern((size_t)d.n * img_x, 5);
  t.dw = pattern(nw, 6);
  t.db = pattern((size_t)d.k, 7);
  t.ws_bytes = cpu_own_conv_workspace(&d);
  if (cpu_wino_takes(&d)) {
    size_t wb = cpu_wino_workspace(&d, (cnn_conv_dir)dir, cpu_max_threads());
    if (wb > t.ws_bytes) t.ws_bytes = wb;
  }
  if (t.ws_bytes && cpu_alloc_aligned(t.ws_bytes, "conv tune", &t.ws) != CNN_OK) t.ws = NULL;
  int best = ENG_OWN;
  if (t.x && t.y && t.w && t.b && t.dx && t.dw && t.db && (t.ws || !t.ws_bytes)) {
    double best_t = 0.0;
    for (int i = 0; i < nc; i++) {
      double tmin = -1.0;
      for (int rep = 0; rep < 4; rep++) { /* a warm-up (builds oneDNN's primitive), 3 timed */
        double t0 = now_s();
        if (run_engine(c, &d, dir, cand[i], &t) != CNN_OK) {
          cnn_error_clear();
          tmin = -1.0;
          break;
        }
        double dt = now_s() - t0;
        if (rep > 0 && (tmin < 0 || dt < tmin)) tmin = dt;
        if (rep == 1 && i > 0 && dt > 4.0 * best_t) break; /* far behind: no more runs */
      }
      if (tmin >= 0 && (i == 0 || tmin < best_t)) {
        best_t = tmin;
        best = cand[i];
      }
    }
  }
  cnn_error_clear();
  free(t.x);
  free(t.y);
  free(t.w);
  free(t.b);
  free(t.dx);
  free(t.dw);
  free(t.db);
  free(t.ws);
  return best;
}

/* the engine of (d, dir) now; measured on first need in auto mode */
static int choose(cpu_ctx *c, const cnn_conv_desc *d, int dir) {
  if (!c || cpu_conv_check(d, "conv") != CNN_OK) {
    cnn_error_clear();
    return ENG_OWN;
  }
  switch (c->mode) {
  case MODE_OWN: return ENG_OWN;
  case MODE_WINO: return cpu_wino_takes(d) ? ENG_WINO : ENG_OWN;
  case MODE_DNNL: return dnnl_takes(c, d, dir, ENG_DNNL) ? ENG_DNNL : ENG_OWN;
  case MODE_DNNL_PLAIN: return dnnl_takes(c, d, dir, ENG_DNNL_PLAIN) ? ENG_DNNL_PLAIN : ENG_OWN;
  case MODE_DEFAULT:
    /* Winograd where it measured faster than the GEMM engines (cpu_wino_wins: 3x3
     * stride 1, >= 16 channels, enough full tiles; f32 products, for any maths).
     * Against oneDNN its forward and backward-data lose slightly below 32 channels
     * (fashion's 14x14 24->48: 0.89x, 0.96x; cpu_wino.c's table), so there oneDNN. */
    if (cpu_wino_wins(d, (cnn_conv_dir)dir) &&
        (dir == CNN_CONV_BWD_FILTER || (d->c >= 32 && d->k >= 32) ||
         !dnnl_takes(c, d, dir, ENG_DNNL)))
      return ENG_WINO;
    /* bf16 maths on a CPU with bf16 units: ours (f32 products). oneDNN's bf16 path
     * has not run on such a CPU yet (none here), so it is opt-in (--conv-engine dnnl
     * or auto) until measured there. */
    if (cpu_dnnl_uses_bf16(get_dnnl(c), d)) return ENG_OWN;
    /* f32: oneDNN where it takes the shape: faster than ours on every model measured
     * (docs/cpu-engines.md), and a fixed choice, so results stay repeatable */
    return dnnl_takes(c, d, dir, ENG_DNNL) ? ENG_DNNL : ENG_OWN;
  default: break;
  }
  const int threads = cpu_max_threads();
  for (int i = 0; i < c->nsel; i++)
    if (c->sel[i].dir == dir && c->sel[i].threads == threads && !memcmp(&c->sel[i].d, d, sizeof *d))
      return c->sel[i].engine;
  int e = measure(c, d, dir);
  if (c->nsel == c->cap) {
    int cap = c->cap ? 2 * c->cap : 32;
    cpu_sel *ns = realloc(c->sel, (size_t)cap * sizeof *ns);
    if (!ns) return e; /* not remembered: measured again next time */
    c->sel = ns;
    c->cap = cap;
  }
  cpu_sel *s = &c->sel[c->nsel++];
  memcpy(&s->d, d, sizeof *d);
  s->dir = dir;
  s->threads = threads;
  s->engine = e;
  return e;
}

/* ---- the conv ops ---- */

/* the forward on engine e; with d0->wconst the weights stay repacked across calls */
static cnn_status fwd_on(cpu_ctx *c, int e, const cnn_conv_desc *d0, const cnn_conv_desc *d,
                         const float *x, const float *w, const float *bias, cnn_act act,
                         float alpha, float *y) {
  int fill = 1;
  cpu_pack *k = NULL;
  if (d0->wconst) {
    size_t bytes = cpu_dnnl_fwd_wbytes(c->dnnl, d, variant_of(e), bias != NULL, act, alpha);
    k = pack_for(c, d, e, bias != NULL, act, alpha, w, bytes, &fill);
  }
  CNN_TRY(cpu_dnnl_fwd(c->dnnl, d, variant_of(e), x, w, k ? k->buf : NULL, fill, bias, act, alpha, y));
  if (k) k->epoch = c->epoch;
  return CNN_OK;
}

/* the desc as the engines' caches key it: wconst is how a call may run, not a shape */
static cnn_conv_desc shape_of(const cnn_conv_desc *d) {
  cnn_conv_desc s = *d;
  s.wconst = 0;
  return s;
}

/* the engine of (d, dir) for a call with ws_bytes of workspace: Winograd's needs more
 * than ours; a caller that sized the workspace for another choice gets ours */
static int engine_for(void *ctx, const cnn_conv_desc *d, int dir, int ptrs, size_t ws_bytes) {
  int e = ptrs ? choose(ctx, d, dir) : ENG_OWN;
  if (e == ENG_WINO && ws_bytes < cpu_wino_workspace(d, (cnn_conv_dir)dir, 1)) e = ENG_OWN;
  return e;
}

/* An inference forward (wconst) on Winograd with its filter transform kept: wherever
 * the forward runs on Winograd anyway (forced, measured, or the default's rule), and
 * in the default also where keeping the transform makes it win (cpu_wino_wins_packed:
 * batch 1 of 28x28 layers), under the same 32-channel rule against oneDNN */
static int wino_packed(cpu_ctx *c, const cnn_conv_desc *d) {
  if (!c) return 0;
  if (c->mode == MODE_WINO) return cpu_wino_takes(d);
  if (c->mode != MODE_DEFAULT && c->mode != MODE_AUTO) return 0;
  if (choose(c, d, CNN_CONV_FWD) == ENG_WINO) return 1;
  return c->mode == MODE_DEFAULT && cpu_wino_wins_packed(d) &&
         ((d->c >= 32 && d->k >= 32) || !dnnl_takes(c, d, CNN_CONV_FWD, ENG_DNNL));
}

static cnn_status fwd_impl(void *ctx, const cnn_conv_desc *d0, const float *x, const float *w,
                           const float *bias, cnn_act act, float alpha, float *y, void *ws,
                           size_t ws_bytes, const char *op) {
  CPU_NEED(d0, op);
  CNN_TRY(cpu_check_act(act, op));
  cnn_conv_desc dd = shape_of(d0), *d = &dd;
  cpu_ctx *c = ctx;
  if (d0->wconst && x && w && y && wino_packed(c, d) &&
      ws_bytes >= cpu_wino_packed_workspace(d, 1)) {
    int fill;
    cpu_pack *k = pack_for(c, d, ENG_WINO, 0, CNN_ACT_LINEAR, 0.0f, w, cpu_wino_pack_bytes(d), &fill);
    if (k) {
      if (fill) cpu_wino_pack(d, w, k->buf);
      k->epoch = c->epoch;
      return cpu_wino_fwd_packed(d, x, k->buf, bias, act, alpha, y, ws, ws_bytes);
    }
  }
  int e = engine_for(ctx, d, CNN_CONV_FWD, x && w && y, ws_bytes);
  if (e == ENG_WINO) return cpu_wino_fwd(d, x, w, bias, act, alpha, y, ws, ws_bytes);
  if (e != ENG_OWN) return fwd_on(ctx, e, d0, d, x, w, bias, act, alpha, y);
  return cpu_own_conv_fwd_act(NULL, d, x, w, bias, act, alpha, y, ws, ws_bytes);
}

cnn_status cpu_conv_fwd_act(void *ctx, const cnn_conv_desc *d, const float *x, const float *w,
                            const float *bias, cnn_act act, float alpha, float *y, void *ws,
                            size_t ws_bytes) {
  return fwd_impl(ctx, d, x, w, bias, act, alpha, y, ws, ws_bytes, "conv_fwd_act");
}

cnn_status cpu_conv_fwd(void *ctx, const cnn_conv_desc *d, const float *x, const float *w,
                        const float *bias, float *y, void *ws, size_t ws_bytes) {
  return fwd_impl(ctx, d, x, w, bias, CNN_ACT_LINEAR, 0.0f, y, ws, ws_bytes, "conv_fwd");
}

cnn_status cpu_conv_bwd_data(void *ctx, const cnn_conv_desc *d0, const float *dy,
                             const float *w, float *dx, void *ws, size_t ws_bytes) {
  CPU_NEED(d0, "conv_bwd_data");
  cnn_conv_desc dd = shape_of(d0), *d = &dd;
  cpu_ctx *c = ctx;
  int e = engine_for(ctx, d, CNN_CONV_BWD_DATA, dy && w && dx, ws_bytes);
  if (e == ENG_WINO) return cpu_wino_bwd_data(d, dy, w, dx, ws, ws_bytes);
  if (e != ENG_OWN) return cpu_dnnl_bwd_data(c->dnnl, d, variant_of(e), dy, w, dx);
  return cpu_own_conv_bwd_data(NULL, d, dy, w, dx, ws, ws_bytes);
}

cnn_status cpu_conv_bwd_filter(void *ctx, const cnn_conv_desc *d0, const float *x,
                               const float *dy, float *dw, float *db, void *ws,
                               size_t ws_bytes) {
  CPU_NEED(d0, "conv_bwd_filter");
  cnn_conv_desc dd = shape_of(d0), *d = &dd;
  cpu_ctx *c = ctx;
  int e = engine_for(ctx, d, CNN_CONV_BWD_FILTER, x && dy && dw, ws_bytes);
  if (e == ENG_WINO) return cpu_wino_bwd_filter(d, x, dy, dw, db, ws, ws_bytes);
  if (e != ENG_OWN) return cpu_dnnl_bwd_filter(c->dnnl, d, variant_of(e), x, dy, dw, db);
  return cpu_own_conv_bwd_filter(NULL, d, x, dy, dw, db, ws, ws_bytes);
}

/* 1 when pass dir of d may run on Winograd in c's mode. Cheap (no oneDNN primitive
 * is built, no timing): memory planning asks it for every batch size it tries, so
 * where the choice depends on oneDNN (default, below 32 channels) or on timing
 * (auto) it answers yes and the workspace covers Winograd anyway. */
static int may_run_wino(const cpu_ctx *c, const cnn_conv_desc *d, int dir) {
  if (!c) return 0;
  if (c->mode == MODE_DEFAULT) return cpu_wino_wins(d, (cnn_conv_dir)dir);
  return (c->mode == MODE_WINO || c->mode == MODE_AUTO) && cpu_wino_takes(d);
}

/* Scratch for every pass of d on the engines chosen for it: ours (im2col tiles) or
 * Winograd's (transformed filters and tile blocks); oneDNN keeps its own. */
size_t cpu_conv_workspace(void *ctx, const cnn_conv_desc *d0) {
  if (!d0 || cpu_conv_check(d0, "conv_workspace") != CNN_OK) {
    cnn_error_clear();
    return 0;
  }
  cnn_conv_desc d = shape_of(d0);
  size_t ws = cpu_own_conv_workspace(&d);
  cpu_ctx *c = ctx;
  /* an inference forward may run on a kept transform (no oneDNN check here: cheap) */
  if (c && c->mode == MODE_DEFAULT && cpu_wino_wins_packed(&d)) {
    size_t wb = cpu_wino_packed_workspace(&d, cpu_max_threads());
    if (wb > ws) ws = wb;
  }
  for (int dir = 0; dir < 3; dir++)
    if (may_run_wino(ctx, &d, dir)) {
      size_t wb = cpu_wino_workspace(&d, (cnn_conv_dir)dir, cpu_max_threads());
      if (wb > ws) ws = wb;
    }
  return ws;
}

/* ---- engine ops (backend.h) ---- */

static const char *dnnl_name(cpu_ctx *c, const cnn_conv_desc *d, int engine) {
  int bf = cpu_dnnl_uses_bf16(c->dnnl, d);
  if (engine == ENG_DNNL_PLAIN) return bf ? "dnnl-plain-bf16" : "dnnl-plain";
  return bf ? "dnnl-bf16" : "dnnl";
}

int cpu_conv_engines(void *ctx, const cnn_conv_desc *d0, cnn_conv_dir dir, const char **names,
                     int max) {
  cpu_ctx *c = ctx;
  if (!d0) return 0;
  cnn_conv_desc dd = shape_of(d0), *d = &dd;
  int n = 0;
  if (cpu_conv_check(d, "conv_engines") != CNN_OK) {
    cnn_error_clear();
    return 0;
  }
  const char *list[ENG_N];
  list[n++] = cpu_own_conv_kind(d);
  if (cpu_wino_takes(d)) list[n++] = "winograd";
  for (int e = ENG_DNNL; c && e < ENG_N; e++)
    if (dnnl_takes(c, d, (int)dir, e)) list[n++] = dnnl_name(c, d, e);
  for (int i = 0; i < n && i < max; i++) names[i] = list[i];
  return n;
}

cnn_status cpu_conv_tune(void *ctx, const cnn_conv_desc *d0, cnn_conv_dir dir, size_t ws_bytes) {
  CPU_NEED(d0, "conv_tune");
  cnn_conv_desc d = shape_of(d0);
  (void)choose(ctx, &d, (int)dir);
  return CNN_OK;
}

const char *cpu_conv_engine(void *ctx, const cnn_conv_desc *d0, cnn_conv_dir dir) {
  if (!d0) return "?";
  cnn_conv_desc dd = shape_of(d0), *d = &dd;
  int e = choose(ctx, d, (int)dir);
  if (e == ENG_WINO || (d0->wconst && dir == CNN_CONV_FWD && wino_packed(ctx, d))) return "winograd";
  return e == ENG_OWN ? cpu_own_conv_kind(d) : dnnl_name(ctx, d, e);
}

cnn_status cpu_set_option(void *ctx, const char *key, const char *value) {
  cpu_ctx *c = ctx;
  if (!strcmp(key, "conv-engine")) {
    int mode;
    CNN_TRY(parse_mode(value, &mode));
    if ((mode == MODE_DNNL || mode == MODE_DNNL_PLAIN) && !get_dnnl(c))
      return cnn_error(CNN_UNSUPPORTED, "--conv-engine %s: this cnn was built without oneDNN "
                       "(install libdnnl-dev and rebuild)", value);
    c->mode = mode;
    return CNN_OK;
  }
  if (!strcmp(key, "workspace") || !strcmp(key, "tune-cache"))
    return cnn_error(CNN_UNSUPPORTED, "--%s applies to the cuda backend; the cpu backend "
                     "plans its own scratch (got --%s %s)", key, key, value);
  return cnn_error(CNN_ERR_ARG, "cpu: unknown setting '%s' (expected conv-engine)", key);
}

/* bf16 products on matrix units: oneDNN on a CPU with AVX512-BF16 or AMX, when the
 * conv engine is oneDNN or measured (opt-in: see choose) */
unsigned cpu_matrix_math(void *ctx) {
  cpu_ctx *c = ctx;
  if (!c || (c->mode != MODE_DNNL && c->mode != MODE_AUTO)) return 0u;
  return cpu_dnnl_has_bf16(get_dnnl(c)) ? 1u << CNN_MATH_BF16 : 0u;
}
