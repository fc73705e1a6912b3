/* The conv engine tuner: which engine runs each (shape, math, pass).
 *
 * Engines come from three families (cuda_engines.h): simt (always), own tensor-core
 * kernels, cuDNN. A pass is tuned when a program is compiled (conv_tune) or, for a
 * direct op call, on its first use outside a graph capture:
 *   1. the candidates are the engines that support the pass and whose workspace
 *      fits both the caller's workspace and the budget (--workspace);
 *   2. a choice in the cache file for this device (tune_cache.h) is taken as is;
 *   3. else each candidate runs on random inputs, its result is checked against
 *      simt's (a tolerance per math: a kernel that is wrong on this device is
 *      dropped with a warning, never chosen), then timed with CUDA events, and the
 *      fastest is kept and written to the cache file.
 * Inside a capture an untuned pass runs simt (tuning allocates and synchronises).
 * A forced engine (conv-engine NAME) or family (own, cudnn) narrows the candidates;
 * a forced engine that cannot run a pass is an error naming both. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_engines.h"
#include "backend/tune_cache.h"

#define MAX_ENGINES 96
#define TUNE_REPS 3           /* timed runs per candidate after one checked run */
#define BUDGET_CAP ((size_t)1 << 30)

/* family filter of conv-engine: all, ours (simt + tensor cores), cuDNN's */
enum { FORCE_AUTO = 0, FORCE_OWN, FORCE_CUDNN, FORCE_ENGINE };

struct cnn_cuda_tuner {
  const cnn_cuda_engine *eng[MAX_ENGINES];
  int n_eng;
  int force;                       /* FORCE_* */
  const cnn_cuda_engine *forced;   /* FORCE_ENGINE */
  size_t budget;                   /* workspace bytes the tuner may use */
  char device_id[512];
  char cache_path[4096];
  int cache_off, cache_loaded;
  cnn_tune_cache file;             /* choices read from / written to cache_path */
  cnn_tune_cache chosen;           /* this process's choices (engine names) */
  cnn_tune_cache reserve;          /* conv_ws_reserve's answers per shape (in .ws) */
};

/* ---- random inputs and result checks ------------------------------------------------ */

static __global__ void k_fill_hash(float *x, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    h ^= h >> 16;
    x[i] = (float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f; /* [-1, 1) */
  }
}

/* per block: the largest |a - b| (NaN counts as infinite) */
static __global__ void k_max_abs_diff(const float *a, const float *b, size_t n, float *block_max) {
  __shared__ float m[256];
  float v = 0.0f;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float d = fabsf(a[i] - b[i]);
    if (!(d <= 3.0e38f)) d = INFINITY;
    v = fmaxf(v, d);
  }
  m[threadIdx.x] = v;
  __syncthreads();
  for (int s = 128; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) m[threadIdx.x] = fmaxf(m[threadIdx.x], m[threadIdx.x + s]);
    __syncthreads();
  }
  if (threadIdx.x == 0) block_max[blockIdx.x] = m[0];
}

static cnn_status fill(cnn_cuda_ctx *ctx, float *x, size_t n, uint32_t seed) {
  if (!n) return CNN_OK;
  k_fill_hash<<<cnn_cuda_blocks(ctx, n), CNN_CUDA_THREADS, 0, ctx->stream>>>(x, n, seed);
  LAUNCH_CHECK("k_fill_hash");
  return CNN_OK;
}

#define DIFF_BLOCKS 128
static cnn_status max_diff(cnn_cuda_ctx *ctx, const float *a, const float *b, size_t n,
                           float *dev_tmp, double *out) {
  float host[DIFF_BLOCKS];
  *out = 0;
  if (!n) return CNN_OK;
  k_max_abs_diff<<<DIFF_BLOCKS, 256, 0, ctx->stream>>>(a, b, n, dev_tmp);
  LAUNCH_CHECK("k_max_abs_diff");
  CUDA_CHECK(cudaMemcpyAsync(host, dev_tmp, sizeof host, cudaMemcpyDeviceToHost, ctx->stream));
  CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
  for (int i = 0; i < DIFF_BLOCKS; i++) *out = fmax(*out, (double)host[i]);
  return CNN_OK;
}

/* Largest acceptable |engine - simt| for a pass summing K products of inputs in
 * [-1, 1): per-term rounding of the operands (f32 2^-24 .. bf16 2^-8 relative)
 * grows like sqrt(K); these are ~6x the expected worst case, far below the size of
 * a wrong tap or index (~0.3 per term), which is what this check is for. */
static double tolerance(cnn_math m, double K) {
  double per = m == CNN_MATH_BF16 ? 1e-2 : m == CNN_MATH_TF32 ? 2e-3 : 1e-5;
  return per * sqrt(K > 1 ? K : 1) + 1e-6;
}

/* ---- engine lookup -------------------------------------------------------------------- */

static int allowed(const cnn_cuda_tuner *t, const cnn_cuda_engine *e) {
  switch (t->force) {
  case FORCE_OWN: return e->family == CNN_CUDA_FAM_SIMT || e->family == CNN_CUDA_FAM_OWN;
  case FORCE_CUDNN: return e->family == CNN_CUDA_FAM_CUDNN;
  case FORCE_ENGINE: return e == t->forced;
  default: return 1;
  }
}

static const cnn_cuda_engine *by_name(const cnn_cuda_tuner *t, const char *name) {
  for (int i = 0; i < t->n_eng; i++)
    if (!strcmp(t->eng[i]->name, name)) return t->eng[i];
  return NULL;
}

static size_t engine_ws(cnn_cuda_ctx *ctx, const cnn_cuda_engine *e, const cnn_conv_desc *d,
                        cnn_conv_dir dir) {
  if (!e->supports(ctx, e, d, dir)) return (size_t)-1;
  return e->workspace ? e->workspace(ctx, e, d, dir) : 0;
}

static const char *dir_name(cnn_conv_dir dir) {
  return dir == CNN_CONV_FWD ? "forward" : dir == CNN_CONV_BWD_DATA ? "backward-data"
                                                                    : "backward-filter";
}

static const char *math_name(cnn_math m) {
  return m == CNN_MATH_BF16 ? "bf16" : m == CNN_MATH_TF32 ? "tf32" : "fp32";
}

static void shape_text(const cnn_conv_desc *d, char *buf, size_t len) {
  snprintf(buf, len, "%dx%dx%dx%d -> %d filters %dx%d/%d pad %d dil %d groups %d, %s", d->n, d->h,
           d->w, d->c, d->k, d->r, d->s, d->stride_h, d->pad_h, d->dil_h, d->groups,
           math_name(d->math));
}

/* ---- init / options -------------------------------------------------------------------- */

extern "C" cnn_status cnn_cuda_tuner_init(cnn_cuda_ctx *ctx) {
  cnn_cuda_tuner *t = (cnn_cuda_tuner *)calloc(1, sizeof *t);
  if (!t) return cnn_error(CNN_ERR_NOMEM, "cuda tuner: out of host memory");
  ctx->tuner = t;
  const cnn_cuda_engine *list = NULL;
  int (*fams[3])(const cnn_cuda_engine **) = {cnn_cuda_simt_engines, cnn_cuda_own_engines,
                                              cnn_cuda_cudnn_engines};
  for (int f = 0; f < 3; f++) {
    int n = fams[f](&list);
    for (int i = 0; i < n && t->n_eng < MAX_ENGINES; i++) t->eng[t->n_eng++] = &list[i];
  }
  size_t fr = 0, tot = 0;
  if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) (void)cudaGetLastError();
  t->budget = fr / 8 < BUDGET_CAP ? fr / 8 : BUDGET_CAP;
  int rt = 0, drv = 0;
  if (cudaRuntimeGetVersion(&rt) != cudaSuccess) (void)cudaGetLastError();
  if (cudaDriverGetVersion(&drv) != cudaSuccess) (void)cudaGetLastError();
  snprintf(t->device_id, sizeof t->device_id, "%s|cc%d.%d|sms%d|cuda%d|driver%d|%s|cnn%s",
           ctx->name, ctx->cc_major, ctx->cc_minor, ctx->sms, rt, drv,
           cnn_cuda_cudnn_status(ctx), CNN_VERSION);
  CNN_TRY(cnn_tune_cache_init(&t->file, t->device_id));
  CNN_TRY(cnn_tune_cache_init(&t->chosen, t->device_id));
  CNN_TRY(cnn_tune_cache_init(&t->reserve, t->device_id));
  if (!cnn_tune_cache_path(t->device_id, t->cache_path, sizeof t->cache_path)) t->cache_off = 1;
  return CNN_OK;
}

extern "C" void cnn_cuda_tuner_release(cnn_cuda_ctx *ctx) {
  cnn_cuda_tuner *t = ctx->tuner;
  if (!t) return;
  cnn_tune_cache_clear(&t->file);
  cnn_tune_cache_clear(&t->chosen);
  cnn_tune_cache_clear(&t->reserve);
  free(t);
  ctx->tuner = NULL;
}

extern "C" cnn_status cnn_cuda_set_option(void *vctx, const char *key, const char *value) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  cnn_cuda_tuner *t = ctx->tuner;
  if (!key || !value) return cnn_error(CNN_ERR_ARG, "cuda set_option: NULL key or value");
  if (!strcmp(key, "conv-engine")) {
    if (!strcmp(value, "auto")) {
      t->force = FORCE_AUTO;
    } else if (!strcmp(value, "own")) {
      t->force = FORCE_OWN;
    } else if (!strcmp(value, "cudnn")) {
      if (!ctx->cudnn)
        return cnn_error(CNN_UNSUPPORTED, "--conv-engine cudnn: cuDNN is not available (%s)",
                         cnn_cuda_cudnn_status(ctx));
      t->force = FORCE_CUDNN;
    } else {
      const cnn_cuda_engine *e = by_name(t, value);
      if (!e)
        return cnn_error(CNN_ERR_ARG,
                         "unknown conv engine '%s': expected auto, own, cudnn or an engine "
                         "name (`cnn bench MODEL.cfg --device cuda` lists the engines per layer)",
                         value);
      t->force = FORCE_ENGINE;
      t->forced = e;
    }
    cnn_tune_cache_clear(&t->chosen); /* choices made under another filter */
    cnn_tune_cache_clear(&t->reserve);
    return CNN_OK;
  }
  if (!strcmp(key, "workspace")) {
    char *end = NULL;
    double mb = strtod(value, &end);
    if (!*value || !end || *end || !(mb >= 0) || mb > 1e9)
      return cnn_error(CNN_ERR_ARG, "--workspace '%s': expected megabytes (a number >= 0)", value);
    t->budget = (size_t)(mb * 1048576.0);
    cnn_tune_cache_clear(&t->chosen);
    cnn_tune_cache_clear(&t->reserve);
    return CNN_OK;
  }
  if (!strcmp(key, "tune-cache")) {
    if (!strcmp(value, "off")) {
      t->cache_off = 1;
    } else {
      if (!*value || strlen(value) >= sizeof t->cache_path)
        return cnn_error(CNN_ERR_ARG, "--tune-cache: a file path or off");
      snprintf(t->cache_path, sizeof t->cache_path, "%s", value);
      t->cache_off = 0;
      t->cache_loaded = 0;
    }
    return CNN_OK;
  }
  return cnn_error(CNN_ERR_ARG, "unknown cuda option '%s' (expected conv-engine, workspace or "
                   "tune-cache)", key);
}

/* ---- listing ---------------------------------------------------------------------- */

extern "C" int cnn_cuda_conv_engines(void *vctx, const cnn_conv_desc *d, cnn_conv_dir dir,
                                     const char **names, int max) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  cnn_cuda_tuner *t = ctx->tuner;
  int n = 0;
  for (int i = 0; i < t->n_eng; i++) {
    if (engine_ws(ctx, t->eng[i], d, dir) == (size_t)-1) continue;
    if (n < max && names) names[n] = t->eng[i]->name;
    n++;
  }
  cnn_error_clear(); /* a support query that failed inside an engine is not an error here */
  return n;
}

/* asked for every conv layer of every plan (and --batch auto plans many): the answer
 * per shape is remembered, since cuDNN's support queries run its heuristics */
extern "C" size_t cnn_cuda_conv_ws_reserve(cnn_cuda_ctx *ctx, const cnn_conv_desc *d) {
  cnn_cuda_tuner *t = ctx->tuner;
  size_t most = 0;
  char key[CNN_TUNE_KEY_MAX];
  if (!t) return 0;
  cnn_tune_key(d, CNN_CONV_FWD, key, sizeof key);
  const cnn_tune_entry *memo = cnn_tune_cache_get(&t->reserve, key);
  if (memo) return memo->ws;
  for (int dir = 0; dir < 3; dir++)
    for (int i = 0; i < t->n_eng; i++) {
      if (!allowed(t, t->eng[i])) continue;
      size_t w = engine_ws(ctx, t->eng[i], d, (cnn_conv_dir)dir);
      if (w != (size_t)-1 && w <= t->budget && w > most) most = w;
    }
  cnn_error_clear();
  if (cnn_tune_cache_put(&t->reserve, key, "reserve", 0) == CNN_OK)
    ((cnn_tune_entry *)cnn_tune_cache_get(&t->reserve, key))->ws = most;
  else
    cnn_error_clear(); /* out of host memory: just not remembered */
  return most;
}

/* ---- tuning ---------------------------------------------------------------------------- */

/* buffers of one timing session (device memory, freed at the end) */
typedef struct tune_bufs {
  float *x, *w, *bias, *dy, *out, *ref, *dbo, *dbr, *tmp;
  void *ws;
} tune_bufs;

static void free_bufs(tune_bufs *b) {
  void *p[] = {b->x, b->w, b->bias, b->dy, b->out, b->ref, b->dbo, b->dbr, b->tmp, b->ws};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    if (p[i] && cudaFree(p[i]) != cudaSuccess) (void)cudaGetLastError();
  memset(b, 0, sizeof *b);
}

/* the call for pass dir on the session's buffers, writing into `out` (db into dbo) */
static cnn_cuda_conv_call make_call(const cnn_conv_desc *d, cnn_conv_dir dir, tune_bufs *b,
                                    float *out, float *db, size_t ws_bytes) {
  cnn_cuda_conv_call c = {};
  c.d = *d;
  c.dir = dir;
  c.act = CNN_ACT_LINEAR;
  c.ws = ws_bytes ? b->ws : NULL;
  c.ws_bytes = ws_bytes;
  if (dir == CNN_CONV_FWD) {
    c.x = b->x; c.w = b->w; c.bias = b->bias; c.y = out;
  } else if (dir == CNN_CONV_BWD_DATA) {
    c.dy = b->dy; c.w = b->w; c.dx = out;
  } else {
    c.x = b->x; c.dy = b->dy; c.dw = out; c.db = db;
  }
  return c;
}

static size_t out_count(const cnn_conv_desc *d, cnn_conv_dir dir) {
  if (dir == CNN_CONV_FWD) return (size_t)d->n * d->oh * d->ow * d->k;
  if (dir == CNN_CONV_BWD_DATA) return (size_t)d->n * d->h * d->w * d->c;
  return (size_t)d->k * d->r * d->s * (d->c / d->groups);
}

static double terms(const cnn_conv_desc *d, cnn_conv_dir dir) {
  if (dir == CNN_CONV_FWD) return (double)d->r * d->s * (d->c / d->groups) + 1;
  if (dir == CNN_CONV_BWD_DATA) return (double)d->r * d->s * (d->k / d->groups);
  return (double)d->n * d->oh * d->ow;
}

/* Run the call once for the check. Outputs that are overwritten start as NaN (an
 * engine that leaves some unwritten cannot inherit the previous candidate's
 * values); dx, which is accumulated into, starts from dx0 (nonzero: an engine that
 * overwrites instead of adding shows). */
static cnn_status run_once(cnn_cuda_ctx *ctx, const cnn_cuda_engine *e, const cnn_cuda_conv_call *c,
                           size_t nout, const float *dx0) {
  if (c->dir == CNN_CONV_BWD_DATA) {
    CUDA_CHECK(cudaMemcpyAsync(c->dx, dx0, nout * sizeof(float), cudaMemcpyDeviceToDevice,
                               ctx->stream));
  } else if (c->dir == CNN_CONV_FWD) {
    CUDA_CHECK(cudaMemsetAsync(c->y, 0xff, nout * sizeof(float), ctx->stream));
  } else {
    CUDA_CHECK(cudaMemsetAsync(c->dw, 0xff, nout * sizeof(float), ctx->stream));
    if (c->db) CUDA_CHECK(cudaMemsetAsync(c->db, 0xff, (size_t)c->d.k * sizeof(float), ctx->stream));
  }
  return e->run(ctx, e, c);
}

#define TRY_ALLOC(p, count)                                                                \
  do {                                                                                     \
    if ((count) && cudaMalloc((void **)&(p), (count) * sizeof(float)) != cudaSuccess) {    \
      (void)cudaGetLastError();                                                            \
      ok = 0;                                                                              \
    }                                                                                      \
  } while (0)

/* time the candidates; *best is the fastest that agrees with simt (simt itself when
 * nothing else does, or when the buffers do not fit in memory) */
static cnn_status time_candidates(cnn_cuda_ctx *ctx, const cnn_conv_desc *d, cnn_conv_dir dir,
                                  const cnn_cuda_engine **cand, const size_t *cand_ws, int n,
                                  const cnn_cuda_engine **best, double *best_ms) {
  const cnn_cuda_engine *simt = NULL;
  (void)cnn_cuda_simt_engines(&simt);
  tune_bufs b = {};
  const size_t nx = (size_t)d->n * d->h * d->w * d->c, ny = (size_t)d->n * d->oh * d->ow * d->k;
  const size_t nw = (size_t)d->k * d->r * d->s * (d->c / d->groups), nout = out_count(d, dir);
  size_t ws_max = simt->workspace(ctx, simt, d, dir);
  for (int i = 0; i < n; i++) ws_max = cand_ws[i] > ws_max ? cand_ws[i] : ws_max;
  int ok = 1;
  TRY_ALLOC(b.x, nx);
  TRY_ALLOC(b.w, nw);
  TRY_ALLOC(b.bias, (size_t)d->k);
  TRY_ALLOC(b.dy, ny);
  TRY_ALLOC(b.out, nout);
  TRY_ALLOC(b.ref, nout);
  TRY_ALLOC(b.dbo, (size_t)d->k);
  TRY_ALLOC(b.dbr, (size_t)d->k);
  TRY_ALLOC(b.tmp, (size_t)DIFF_BLOCKS);
  if (ws_max && cudaMalloc(&b.ws, ws_max) != cudaSuccess) {
    (void)cudaGetLastError();
    ok = 0;
  }
  *best = simt;
  *best_ms = -1;
  if (!ok) { /* no room to measure: keep simt rather than fail the build */
    char shape[256];
    shape_text(d, shape, sizeof shape);
    fprintf(stderr, "cnn: warning: not enough device memory to tune the %s pass of %s; using simt\n",
            dir_name(dir), shape);
    free_bufs(&b);
    return CNN_OK;
  }
  cudaEvent_t ev0 = NULL, ev1 = NULL;
  cnn_status st = CNN_OK;
#define T_CHECK(call)                                                                      \
  do {                                                                                     \
    cudaError_t e_ = (call);                                                               \
    if (e_ != cudaSuccess) {                                                               \
      (void)cudaGetLastError();                                                            \
      st = cnn_error(CNN_ERR_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #call,           \
                     cudaGetErrorString(e_));                                              \
      goto out;                                                                            \
    }                                                                                      \
  } while (0)
  T_CHECK(cudaEventCreate(&ev0));
  T_CHECK(cudaEventCreate(&ev1));
  if ((st = fill(ctx, b.x, nx, 0x1234u)) != CNN_OK) goto out;
  if ((st = fill(ctx, b.w, nw, 0x2345u)) != CNN_OK) goto out;
  if ((st = fill(ctx, b.bias, (size_t)d->k, 0x3456u)) != CNN_OK) goto out;
  if ((st = fill(ctx, b.dy, ny, 0x4567u)) != CNN_OK) goto out;
  {
    size_t sws = simt->workspace(ctx, simt, d, dir);
    cnn_cuda_conv_call rc = make_call(d, dir, &b, b.ref, b.dbr, sws);
    if ((st = run_once(ctx, simt, &rc, nout, b.x)) != CNN_OK) goto out; /* bwd-data: nout = nx */
  }
  {
    const double tol = tolerance(d->math, terms(d, dir));
    char shape[256];
    shape_text(d, shape, sizeof shape);
    for (int i = 0; i < n; i++) {
      const cnn_cuda_engine *e = cand[i];
      cnn_cuda_conv_call c = make_call(d, dir, &b, b.out, b.dbo, cand_ws[i]);
      double err = 0, err_db = 0;
      cnn_status rs = run_once(ctx, e, &c, nout, b.x);
      if (rs == CNN_OK) rs = max_diff(ctx, b.out, b.ref, nout, b.tmp, &err);
      if (rs == CNN_OK && dir == CNN_CONV_BWD_FILTER)
        rs = max_diff(ctx, b.dbo, b.dbr, (size_t)d->k, b.tmp, &err_db);
      if (rs != CNN_OK) {
        if (rs == CNN_ERR_DEVICE && cudaPeekAtLastError() != cudaSuccess) {
          st = rs; /* a sticky device error: nothing further can run */
          goto out;
        }
        fprintf(stderr, "cnn: warning: conv engine %s failed on the %s pass of %s (%s); not used\n",
                e->name, dir_name(dir), shape, cnn_last_error());
        cnn_error_clear();
        continue;
      }
      if (!(err <= tol) || !(err_db <= tolerance(d->math, terms(d, dir)))) {
        /* f32-exact engines that merely round differently (FFT, Winograd) are skipped
         * quietly in fp32; anything beyond the bf16 tolerance is a wrong result */
        if (!(err <= tolerance(CNN_MATH_BF16, terms(d, dir))) || d->math != CNN_MATH_F32)
          fprintf(stderr,
                  "cnn: warning: conv engine %s disagrees with simt on the %s pass of %s (max "
                  "error %.3g, tolerance %.3g); not used\n",
                  e->name, dir_name(dir), shape, fmax(err, err_db), tol);
        continue;
      }
      if (n == 1) { /* nothing to compare against */
        *best = e;
        *best_ms = 0;
        break;
      }
      float times[TUNE_REPS];
      int runs = 0;
      for (int r = 0; r < TUNE_REPS; r++) {
        T_CHECK(cudaEventRecord(ev0, ctx->stream));
        if ((st = e->run(ctx, e, &c)) != CNN_OK) goto out;
        T_CHECK(cudaEventRecord(ev1, ctx->stream));
        T_CHECK(cudaEventSynchronize(ev1));
        T_CHECK(cudaEventElapsedTime(&times[runs], ev0, ev1));
        runs++;
        /* far slower than the best so far: no need for more runs */
        if (*best_ms >= 0 && times[runs - 1] > 3 * *best_ms) break;
      }
      float ms = times[0]; /* the least of the runs: the least disturbed by the rest */
      for (int r = 1; r < runs; r++)
        if (times[r] < ms) ms = times[r];
      if (*best_ms < 0 || ms < *best_ms) {
        *best = e;
        *best_ms = ms;
      }
    }
  }
out:
  if (ev0 && cudaEventDestroy(ev0) != cudaSuccess) (void)cudaGetLastError();
  if (ev1 && cudaEventDestroy(ev1) != cudaSuccess) (void)cudaGetLastError();
  if (cudaStreamSynchronize(ctx->stream) != cudaSuccess) (void)cudaGetLastError();
  free_bufs(&b);
  return st;
#undef T_CHECK
}

static void load_file(cnn_cuda_tuner *t) {
  if (t->cache_loaded || t->cache_off) return;
  char why[1024];
  t->cache_loaded = 1;
  if (cnn_tune_cache_init(&t->file, t->device_id) != CNN_OK) return;
  if (cnn_tune_cache_load(&t->file, t->cache_path, why, sizeof why) < 0)
    fprintf(stderr, "cnn: warning: ignoring the tune cache: %s (it will be rewritten)\n", why);
}

/* choose the engine of (d, dir) and remember it; ws_bytes: what the caller has */
static cnn_status tune(cnn_cuda_ctx *ctx, const cnn_conv_desc *d, cnn_conv_dir dir,
                       size_t ws_bytes, const char *key) {
  cnn_cuda_tuner *t = ctx->tuner;
  const cnn_cuda_engine *cand[MAX_ENGINES];
  size_t cand_ws[MAX_ENGINES];
  int n = 0;
  const size_t limit = ws_bytes < t->budget ? ws_bytes : t->budget;
  for (int i = 0; i < t->n_eng; i++) {
    const cnn_cuda_engine *e = t->eng[i];
    if (!allowed(t, e)) continue;
    size_t w = engine_ws(ctx, e, d, dir);
    if (w == (size_t)-1 || w > limit) continue;
    cand[n] = e;
    cand_ws[n++] = w;
  }
  cnn_error_clear();
  if (n == 0) {
    char shape[256];
    shape_text(d, shape, sizeof shape);
    return cnn_error(CNN_UNSUPPORTED, "conv engine %s cannot run the %s pass of %s%s",
                     t->force == FORCE_ENGINE ? t->forced->name
                                              : t->force == FORCE_CUDNN ? "family cudnn" : "?",
                     dir_name(dir), shape,
                     t->force == FORCE_ENGINE ? " (or needs more workspace than given)" : "");
  }
  const cnn_cuda_engine *best = cand[0];
  size_t best_ws = 0; /* simt, when it is the fallback without being a candidate, runs in any */
  double ms = 0;
  /* simt alone needs no choice; any other engine, even alone, is checked first */
  if (n > 1 || cand[0]->family != CNN_CUDA_FAM_SIMT) {
    load_file(t);
    const cnn_tune_entry *hit = t->cache_off ? NULL : cnn_tune_cache_get(&t->file, key);
    const cnn_cuda_engine *cached = hit ? by_name(t, hit->engine) : NULL;
    for (int i = 0; cached && i < n; i++)
      if (cand[i] == cached) {
        best = cached;
        ms = hit->ms;
        goto chosen;
      }
    CNN_TRY(time_candidates(ctx, d, dir, cand, cand_ws, n, &best, &ms));
    if (!t->cache_off && ms >= 0) {
      CNN_TRY(cnn_tune_cache_put(&t->file, key, best->name, ms));
      if (cnn_tune_cache_save(&t->file, t->cache_path) != CNN_OK) {
        fprintf(stderr, "cnn: warning: cannot write the tune cache (%s); choices are kept for "
                "this run only\n", cnn_last_error());
        cnn_error_clear();
        t->cache_off = 1;
      }
    }
  }
chosen:
  for (int i = 0; i < n; i++)
    if (cand[i] == best) best_ws = cand_ws[i];
  CNN_TRY(cnn_tune_cache_put(&t->chosen, key, best->name, ms < 0 ? 0 : ms));
  /* remembered so that dispatch need not ask the engine (cuDNN's query is not free) */
  ((cnn_tune_entry *)cnn_tune_cache_get(&t->chosen, key))->ws = best_ws;
  return CNN_OK;
}

extern "C" cnn_status cnn_cuda_conv_tune(void *vctx, const cnn_conv_desc *d, cnn_conv_dir dir,
                                         size_t ws_bytes) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  char key[CNN_TUNE_KEY_MAX];
  if (!d || (unsigned)dir > CNN_CONV_BWD_FILTER)
    return cnn_error(CNN_ERR_ARG, "cuda conv_tune: bad descriptor or pass");
  if (ctx->capturing) return cnn_cuda_refuse_in_capture(ctx, "conv_tune");
  if (ctx->tuner->force == FORCE_ENGINE) return CNN_OK; /* nothing to choose */
  cnn_tune_key(d, dir, key, sizeof key);
  if (cnn_tune_cache_get(&ctx->tuner->chosen, key)) return CNN_OK;
  return tune(ctx, d, dir, ws_bytes, key);
}

extern "C" const char *cnn_cuda_conv_engine(void *vctx, const cnn_conv_desc *d, cnn_conv_dir dir) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  cnn_cuda_tuner *t = ctx->tuner;
  char key[CNN_TUNE_KEY_MAX];
  if (t->force == FORCE_ENGINE) return t->forced->name;
  cnn_tune_key(d, dir, key, sizeof key);
  const cnn_tune_entry *c = cnn_tune_cache_get(&t->chosen, key);
  const cnn_cuda_engine *e = c ? by_name(t, c->engine) : NULL;
  return e ? e->name : "untuned";
}

extern "C" cnn_status cnn_cuda_conv_dispatch(cnn_cuda_ctx *ctx, const cnn_cuda_conv_call *c) {
  cnn_cuda_tuner *t = ctx->tuner;
  const cnn_cuda_engine *e = NULL;
  char key[CNN_TUNE_KEY_MAX], shape[256];
  if ((unsigned)c->d.math > CNN_MATH_BF16)
    return cnn_error(CNN_ERR_ARG, "cuda conv: unknown math %d", (int)c->d.math);
  if (t->force == FORCE_ENGINE) {
    e = t->forced;
    size_t w = engine_ws(ctx, e, &c->d, c->dir);
    cnn_error_clear();
    if (w == (size_t)-1 || w > c->ws_bytes) {
      shape_text(&c->d, shape, sizeof shape);
      if (w == (size_t)-1)
        return cnn_error(CNN_UNSUPPORTED, "conv engine %s cannot run the %s pass of %s", e->name,
                         dir_name(c->dir), shape);
      return cnn_error(CNN_ERR_ARG,
                       "conv engine %s needs %zu bytes of workspace for the %s pass of %s; %zu "
                       "given",
                       e->name, w, dir_name(c->dir), shape, c->ws_bytes);
    }
    return e->run(ctx, e, c);
  }
  cnn_tune_key(&c->d, c->dir, key, sizeof key);
  const cnn_tune_entry *ch = cnn_tune_cache_get(&t->chosen, key);
  if (!ch && !ctx->capturing) {
    CNN_TRY(tune(ctx, &c->d, c->dir, c->ws_bytes, key));
    ch = cnn_tune_cache_get(&t->chosen, key);
  }
  e = ch ? by_name(t, ch->engine) : NULL;
  if (e && ch->ws <= c->ws_bytes) return e->run(ctx, e, c);
  /* untuned inside a capture, or a caller with less workspace than at tuning */
  const cnn_cuda_engine *simt = NULL;
  (void)cnn_cuda_simt_engines(&simt);
  if (t->force == FORCE_CUDNN) {
    shape_text(&c->d, shape, sizeof shape);
    return cnn_error(CNN_UNSUPPORTED, "conv engine family cudnn: no engine chosen for the %s "
                     "pass of %s (untuned inside a graph capture, or too little workspace)",
                     dir_name(c->dir), shape);
  }
  return simt->run(ctx, simt, c);
}
