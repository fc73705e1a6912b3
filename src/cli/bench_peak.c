/* cnn bench --peak: what the backend's matrix products and copies reach, timed
 * through the op table (so exactly what a step program calls):
 *   fp32  the gemm op, C = A B on square n x n f32 matrices
 *   tf32, bf16  the gemm_ex op with that math (cnn_gemm_desc; f32 buffers, the
 *         products' operands rounded to tf32 / bf16), where the backend has gemm_ex
 *         and its matrix_math op says it runs that math on matrix units
 *   copy  the copy op (device to device), counting the bytes read and written
 * n: 8192 on cuda, 2048 on cpu, 256 on ref. Each figure is the best of three
 * rounds of `reps` calls after one untimed call, each round waited for. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/bench.h"
#include "core/error.h"
#include "backend/backend.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

enum { ROUNDS = 3 };

typedef enum { RUN_GEMM, RUN_GEMM_EX, RUN_COPY } run_kind;

typedef struct peak_bufs {
  cnn_backend *b;
  int n;
  float *a, *bm, *c;
  size_t copy_bytes;
  void *src, *dst;
} peak_bufs;

static cnn_status run_once(const peak_bufs *p, run_kind kind, cnn_math math) {
  const cnn_backend_ops *o = p->b->ops;
  void *ctx = p->b->ctx;
  int n = p->n;
  if (kind == RUN_GEMM) return o->gemm(ctx, 0, 0, n, n, n, 1.0f, p->a, n, p->bm, n, 0.0f, p->c, n);
  if (kind == RUN_COPY) return o->copy(ctx, p->dst, p->src, p->copy_bytes);
  cnn_gemm_desc g;
  memset(&g, 0, sizeof g);
  g.m = g.n = g.k = g.lda = g.ldb = g.ldc = n;
  g.alpha = 1.0f;
  g.a = p->a, g.b = p->bm, g.c = p->c;
  g.act = CNN_ACT_LINEAR;
  g.math = math;
  return o->gemm_ex(ctx, &g);
}

/* best seconds per call over ROUNDS rounds of reps calls, after one untimed call */
static cnn_status time_best(const peak_bufs *p, run_kind kind, cnn_math math, int reps,
                            double *best) {
  const cnn_backend_ops *o = p->b->ops;
  CNN_TRY(run_once(p, kind, math));
  if (o->sync) CNN_TRY(o->sync(p->b->ctx));
  *best = 0;
  for (int r = 0; r < ROUNDS; r++) {
    double t0 = now_s();
    for (int i = 0; i < reps; i++) CNN_TRY(run_once(p, kind, math));
    if (o->sync) CNN_TRY(o->sync(p->b->ctx));
    double t = (now_s() - t0) / reps;
    if (r == 0 || t < *best) *best = t;
  }
  return CNN_OK;
}

static void note(cli_bench_peak *pk, const char *what) {
  size_t len = strlen(pk->note);
  snprintf(pk->note + len, sizeof pk->note - len, "%s%s", len ? "; " : "", what);
}

static void free_bufs(peak_bufs *p) {
  const cnn_backend_ops *o = p->b->ops;
  void *bufs[] = {p->a, p->bm, p->c, p->src, p->dst};
  for (int i = 0; i < 5; i++)
    if (bufs[i]) o->free(p->b->ctx, bufs[i]);
}

static cnn_status alloc_fill(peak_bufs *p, void **ptr, size_t bytes, float v) {
  CNN_TRY(p->b->ops->alloc(p->b->ctx, bytes, ptr));
  return p->b->ops->fill(p->b->ctx, *ptr, bytes / sizeof(float), v);
}

static cnn_status measure(cli_bench_peak *pk, peak_bufs *p) {
  const cnn_backend_ops *o = p->b->ops;
  const char *dev = cnn_backend_name(p->b);
  int cuda = !strcmp(dev, "cuda");
  size_t mat = (size_t)p->n * p->n * sizeof(float);
  CNN_TRY(alloc_fill(p, (void **)&p->a, mat, 0.5f));
  CNN_TRY(alloc_fill(p, (void **)&p->bm, mat, 0.25f));
  CNN_TRY(alloc_fill(p, (void **)&p->c, mat, 0.0f));
  double flop = 2.0 * p->n * p->n * p->n, t;
  int reps = cuda ? 5 : 1;
  if (!o->gemm) {
    note(pk, "no gemm op");
  } else {
    CNN_TRY(time_best(p, RUN_GEMM, CNN_MATH_F32, reps, &t));
    pk->fp32_tflops = flop / t / 1e12;
  }
  unsigned units = o->matrix_math ? o->matrix_math(p->b->ctx) : 0;
  static const struct { cnn_math math; const char *name; } ex[] = {
      {CNN_MATH_TF32, "tf32"}, {CNN_MATH_BF16, "bf16"}};
  for (int i = 0; i < 2; i++) {
    char why[192];
    if (!o->gemm_ex || !(units & (1u << ex[i].math))) {
      snprintf(why, sizeof why, "%s: %s", ex[i].name,
               !o->gemm_ex ? "the backend has no gemm_ex" : "no matrix units for it");
      note(pk, why);
      continue;
    }
    cnn_status st = time_best(p, RUN_GEMM_EX, ex[i].math, reps, &t);
    if (st == CNN_UNSUPPORTED || st == CNN_ERR_ARG) { /* skip it, say why */
      snprintf(why, sizeof why, "%s: %s", ex[i].name, cnn_last_error());
      note(pk, why);
      continue;
    }
    CNN_TRY(st);
    *(ex[i].math == CNN_MATH_TF32 ? &pk->tf32_tflops : &pk->bf16_tflops) = flop / t / 1e12;
  }
  if (!o->copy) {
    note(pk, "no copy op");
    return CNN_OK;
  }
  p->copy_bytes = (size_t)(cuda ? 256 : 64) << 20;
  CNN_TRY(alloc_fill(p, &p->src, p->copy_bytes, 1.0f));
  CNN_TRY(alloc_fill(p, &p->dst, p->copy_bytes, 0.0f));
  CNN_TRY(time_best(p, RUN_COPY, CNN_MATH_F32, cuda ? 10 : 3, &t));
  pk->copy_bytes = p->copy_bytes;
  pk->copy_gb_s = 2.0 * p->copy_bytes / t / 1e9;
  return CNN_OK;
}

cnn_status cli_bench_peak_run(cli_bench *r, cnn_backend *b) {
  cli_bench_peak *pk = &r->pk;
  const char *dev = cnn_backend_name(b);
  memset(pk, 0, sizeof *pk);
  pk->fp32_tflops = pk->tf32_tflops = pk->bf16_tflops = pk->copy_gb_s = -1;
  pk->n = !strcmp(dev, "cuda") ? 8192 : !strcmp(dev, "cpu") ? 2048 : 256;
  peak_bufs p;
  memset(&p, 0, sizeof p);
  p.b = b;
  p.n = pk->n;
  cnn_status st = measure(pk, &p);
  free_bufs(&p);
  if (st != CNN_OK) return cnn_error_prefix(st, "measuring the %s peak", dev);
  pk->measured = 1;
  return CNN_OK;
}

double cli_bench_peak_for(const cli_bench *r) {
  if (r->peak_tflops > 0) return r->peak_tflops;
  if (!r->pk.measured || !r->precision) return 0;
  double v = !strcmp(r->precision, "bf16")   ? r->pk.bf16_tflops
             : !strcmp(r->precision, "tf32") ? r->pk.tf32_tflops
                                             : r->pk.fp32_tflops;
  return v > 0 ? v : 0;
}
