/* cpu: batch norm + activation + max pool in training (backend.h, bn_act_pool_*).
 *
 * The full-size a = act(bn(x)) never reaches memory. Work is cut into tasks (image,
 * output row, channel block); a task owns the input rows [lo(oy), lo(oy + 1))
 * (cpu_pool_owned_row: windows do not overlap, so its windows lie there, and rows
 * no window reaches belong to some task too) and rebuilds z, a and the gradient of
 * that region in per-thread buffers that stay in L1/L2.
 *   forward:  one statistics pass over x, then one pass writing only the pooled y;
 *   backward: a sums pass and a dx pass, each reading x and the pooled dy.
 * Unfused, the same step wrote a and read it back, wrote the full-size gradient of
 * a (after zeroing it) and read it twice: on fashion.cfg's first block that traffic
 * was most of the non-conv time. The arithmetic of z, a, the max and the gradient
 * is that of bn_act_fwd_train / maxpool_fwd / maxpool_bwd / bn_act_bwd; the backward
 * sums run over cpu_reduce_rows' fixed chunks of tasks, so no result depends on the
 * thread count (the chunks differ from bn_act_bwd's, so the last bits may). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

/* Loops with a select vectorise only if GCC may evaluate both sides; nothing here
 * reads floating-point exception flags. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

/* The region loops run on an AVX2 clone where the CPU has one (8 lanes, not SSE2's 4) */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BP_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define BP_CLONES
#endif

#define BP_REGION 8192 /* floats per region buffer (32 KB): sets the channel block */
#define BP_CB 256      /* most channels per task (the argmax state is on the stack) */

typedef struct bp_plan {
  const cnn_pool_desc *d;
  int cb, blocks;                  /* channels per task, blocks per pixel */
  size_t tasks, region;            /* n * oh * blocks; floats per region buffer */
  float *buf;                      /* [threads][3][region]: z, a, routed dy / g */
  const float *x, *dy;
  const float *mean, *scale, *beta; /* z = (x - mean) scale + beta */
  const double *center;            /* the sums' centre (mean in double) */
  cnn_act act;
  float alpha;
  const float *ca, *cb_, *ck;      /* dx (+)= ca (g - cb_ - (x - mean) ck) */
  float *y, *dx;
  int set;
} bp_plan;

typedef struct bp_task {
  int n, oy, r0, r1, c0, cw;
  size_t len; /* floats of the region: (r1 - r0) w cw */
} bp_task;

static bp_task task_at(const bp_plan *p, size_t t) {
  const cnn_pool_desc *d = p->d;
  bp_task k;
  size_t row = t / (size_t)p->blocks;
  k.n = (int)(row / (size_t)d->oh);
  k.oy = (int)(row % (size_t)d->oh);
  k.c0 = (int)(t % (size_t)p->blocks) * p->cb;
  k.cw = d->c - k.c0 < p->cb ? d->c - k.c0 : p->cb;
  k.r0 = cpu_pool_owned_row(d, k.oy);
  k.r1 = cpu_pool_owned_row(d, k.oy + 1);
  k.len = (size_t)(k.r1 - k.r0) * d->w * k.cw;
  return k;
}

/* x of the region's cell (row r, column col), at channel c0 */
static const float *x_at(const bp_plan *p, const bp_task *k, int r, int col) {
  const cnn_pool_desc *d = p->d;
  return p->x + (((size_t)k->n * d->h + r) * d->w + col) * d->c + k->c0;
}

/* z of the region, cell by cell: [(r - r0) w + col][cw] */
BP_CLONES
static void region_z(const bp_plan *p, const bp_task *k, float *z) {
  const float *m = p->mean + k->c0, *sc = p->scale + k->c0, *sh = p->beta + k->c0;
  const size_t cw = (size_t)k->cw;
  for (int r = k->r0; r < k->r1; r++)
    for (int col = 0; col < p->d->w; col++) {
      const float *xr = x_at(p, k, r, col);
      float *zr = z + ((size_t)(r - k->r0) * p->d->w + col) * cw;
#pragma omp simd
      for (size_t j = 0; j < cw; j++) zr[j] = (xr[j] - m[j]) * sc[j] + sh[j];
    }
}

/* the window ox of the task's row: its cells [y0, y1) x [x0, x1) (empty: y0 == y1) */
static void window(const cnn_pool_desc *d, int oy, int ox, int *y0, int *y1, int *x0, int *x1) {
  cpu_pool_clip(oy * d->stride_h - d->pad_h, d->kh, d->h, y0, y1);
  cpu_pool_clip(ox * d->stride_w - d->pad_w, d->kw, d->w, x0, x1);
  if (*x0 == *x1) *y1 = *y0;
}

BP_CLONES
static void forward_task(const bp_plan *p, size_t t, float *z) {
  const cnn_pool_desc *d = p->d;
  const bp_task k = task_at(p, t);
  const size_t cw = (size_t)k.cw, C = (size_t)d->c;
  region_z(p, &k, z);
  if (p->act != CNN_ACT_LINEAR) cpu_act_fwd_block(p->act, p->alpha, k.len, z, z);
  for (int ox = 0; ox < d->ow; ox++) {
    float *yp = p->y + (((size_t)k.n * d->oh + k.oy) * d->ow + ox) * C + k.c0;
    int y0, y1, x0, x1;
    window(d, k.oy, ox, &y0, &y1, &x0, &x1);
    if (y0 == y1) {
      memset(yp, 0, cw * sizeof *yp);
      continue;
    }
    /* maxpool_fwd's order: the first cell, then strictly greater values replace it */
    memcpy(yp, z + ((size_t)(y0 - k.r0) * d->w + x0) * cw, cw * sizeof *yp);
    for (int iy = y0; iy < y1; iy++)
      for (int ix = (iy == y0 ? x0 + 1 : x0); ix < x1; ix++) {
        const float *ap = z + ((size_t)(iy - k.r0) * d->w + ix) * cw;
#pragma omp simd
        for (size_t j = 0; j < cw; j++) yp[j] = ap[j] > yp[j] ? ap[j] : yp[j];
      }
  }
}

/* g = (dy routed to the argmax of a) act'(z) over the task's region; returns g. ReLU
 * and leaky take act' inside the routing loop (0 + dy act', the bits of maxpool_bwd
 * then bn_act_bwd's 0 + g act'). */
BP_CLONES
static const float *region_grad(const bp_plan *p, const bp_task *k, float *z, float *a,
                                float *gs) {
  const cnn_pool_desc *d = p->d;
  const size_t cw = (size_t)k->cw, C = (size_t)d->c;
  region_z(p, k, z);
  const float *av = z;
  if (p->act != CNN_ACT_LINEAR) {
    cpu_act_fwd_block(p->act, p->alpha, k->len, z, a);
    av = a;
  }
  memset(gs, 0, k->len * sizeof *gs);
  const int relu_like = p->act == CNN_ACT_RELU || p->act == CNN_ACT_LEAKY;
  const float lo = p->act == CNN_ACT_RELU ? 0.0f : p->alpha;
  for (int ox = 0; ox < d->ow; ox++) {
    int y0, y1, x0, x1;
    window(d, k->oy, ox, &y0, &y1, &x0, &x1);
    if (y0 == y1) continue;
    const float *dyp = p->dy + (((size_t)k->n * d->oh + k->oy) * d->ow + ox) * C + k->c0;
    float best[BP_CB], taken[BP_CB];
    const float *a0 = av + ((size_t)(y0 - k->r0) * d->w + x0) * cw;
    for (size_t j = 0; j < cw; j++) {
      best[j] = a0[j];
      taken[j] = 0.0f;
    }
    for (int iy = y0; iy < y1; iy++)
      for (int ix = (iy == y0 ? x0 + 1 : x0); ix < x1; ix++) {
        const float *ap = av + ((size_t)(iy - k->r0) * d->w + ix) * cw;
#pragma omp simd
        for (size_t j = 0; j < cw; j++) best[j] = ap[j] > best[j] ? ap[j] : best[j];
      }
    /* maxpool_bwd's rule: the first cell holding the maximum (a NaN first cell keeps it) */
    for (int iy = y0; iy < y1; iy++)
      for (int ix = x0; ix < x1; ix++) {
        size_t at = ((size_t)(iy - k->r0) * d->w + ix) * cw;
        const float *ap = av + at, *zp = z + at;
        float *gp = gs + at;
        if (relu_like) {
#pragma omp simd
          for (size_t j = 0; j < cw; j++) {
            float v = ap[j], g = dyp[j] * (zp[j] > 0.0f ? 1.0f : lo), b = best[j], t = taken[j];
            int hit = (t == 0.0f) & ((v == b) | (b != b));
            gp[j] += hit ? g : 0.0f; /* gs is zeroed; a plain select store does not vectorise */
            taken[j] = hit ? 1.0f : t;
          }
        } else {
#pragma omp simd
          for (size_t j = 0; j < cw; j++) {
            float v = ap[j], g = dyp[j], b = best[j], t = taken[j];
            int hit = (t == 0.0f) & ((v == b) | (b != b));
            gp[j] += hit ? g : 0.0f;
            taken[j] = hit ? 1.0f : t;
          }
        }
      }
  }
  if (p->act == CNN_ACT_LINEAR || relu_like) return gs;
  memset(a, 0, k->len * sizeof *a); /* as bn_act_bwd's tile_grad */
  cpu_act_bwd_block(p->act, p->alpha, k->len, z, gs, a);
  return a;
}

static float *thread_buf(const bp_plan *p) {
  return p->buf + (size_t)cpu_thread_num() * 3 * p->region;
}

/* tasks [t0, t1): acc[j] += g, acc[c + j] += g (x - mean) */
BP_CLONES
static void bp_sums(size_t t0, size_t t1, const void *varg, double *acc) {
  const bp_plan *p = varg;
  const cnn_pool_desc *d = p->d;
  float *z = thread_buf(p), *a = z + p->region, *gs = a + p->region;
  for (size_t t = t0; t < t1; t++) {
    const bp_task k = task_at(p, t);
    const size_t cw = (size_t)k.cw;
    const float *g = region_grad(p, &k, z, a, gs);
    const double *ctr = p->center + k.c0;
    double *s1 = acc + k.c0, *s2 = acc + d->c + k.c0;
    for (int r = k.r0; r < k.r1; r++)
      for (int col = 0; col < d->w; col++) {
        const float *xr = x_at(p, &k, r, col);
        const float *gr = g + ((size_t)(r - k.r0) * d->w + col) * cw;
#pragma omp simd
        for (size_t j = 0; j < cw; j++) {
          s1[j] += gr[j];
          s2[j] += gr[j] * (xr[j] - ctr[j]);
        }
      }
  }
}

BP_CLONES
static void dx_task(const bp_plan *p, size_t t) {
  const cnn_pool_desc *d = p->d;
  float *z = thread_buf(p), *a = z + p->region, *gs = a + p->region;
  const bp_task k = task_at(p, t);
  const size_t cw = (size_t)k.cw;
  const float *g = region_grad(p, &k, z, a, gs);
  const float *ca = p->ca + k.c0, *cb = p->cb_ + k.c0, *ck = p->ck + k.c0, *m = p->mean + k.c0;
  for (int r = k.r0; r < k.r1; r++)
    for (int col = 0; col < d->w; col++) {
      const float *xr = x_at(p, &k, r, col);
      const float *gr = g + ((size_t)(r - k.r0) * d->w + col) * cw;
      float *dxr = p->dx + (xr - p->x);
      if (p->set) {
#pragma omp simd
        for (size_t j = 0; j < cw; j++)
          dxr[j] = 0.0f + ca[j] * (gr[j] - cb[j] - (xr[j] - m[j]) * ck[j]);
      } else {
#pragma omp simd
        for (size_t j = 0; j < cw; j++) dxr[j] += ca[j] * (gr[j] - cb[j] - (xr[j] - m[j]) * ck[j]);
      }
    }
}

/* the task split and the per-thread region buffers */
static cnn_status plan_tasks(bp_plan *p, const cnn_pool_desc *d, cnn_act act, const char *op) {
  CPU_NEED(d, op);
  CNN_TRY(cpu_check_act(act, op));
  if (d->n < 1 || d->h < 1 || d->w < 1 || d->c < 1 || d->oh < 1 || d->ow < 1 || d->kh < 1 ||
      d->kw < 1 || d->pad_h < 0 || d->pad_w < 0 || d->stride_h < d->kh || d->stride_w < d->kw)
    return cnn_error(CNN_ERR_ARG, "cpu %s: x %dx%dx%dx%d, y %dx%d, window %dx%d, stride %dx%d, "
                     "padding %dx%d (windows must not overlap)", op, d->n, d->h, d->w, d->c,
                     d->oh, d->ow, d->kh, d->kw, d->stride_h, d->stride_w, d->pad_h, d->pad_w);
  int rows = 1; /* the most rows one task owns */
  for (int oy = 0; oy < d->oh; oy++) {
    int r = cpu_pool_owned_row(d, oy + 1) - cpu_pool_owned_row(d, oy);
    if (r > rows) rows = r;
  }
  size_t per_ch = (size_t)rows * d->w, cb = BP_REGION / per_ch;
  if (cb < 1) cb = 1;
  if (cb > BP_CB) cb = BP_CB;
  if (cb >= (size_t)d->c) cb = (size_t)d->c;
  else if (cb >= 8) cb &= ~(size_t)7; /* whole vectors */
  p->d = d;
  p->cb = (int)cb;
  p->blocks = (int)((d->c + cb - 1) / cb);
  p->tasks = (size_t)d->n * d->oh * p->blocks;
  p->region = per_ch * cb;
  p->act = act;
  return cpu_alloc_aligned((size_t)cpu_max_threads() * 3 * p->region * sizeof(float), op,
                           (void **)&p->buf);
}

cnn_status cpu_bn_act_pool_fwd(void *ctx, const cnn_pool_desc *d, const float *x,
                               const float *gamma, const float *beta, float eps, cnn_act act,
                               float alpha, const float *rmean, const float *rvar,
                               float *save_mean, float *save_invstd, float *save_var, float *y) {
  const char *op = "bn_act_pool_fwd";
  CPU_NEED(x, op);
  CPU_NEED(gamma, op);
  CPU_NEED(beta, op);
  CPU_NEED(y, op);
  if (rmean) {
    CPU_NEED(rvar, op);
  } else {
    CPU_NEED(save_mean, op);
    CPU_NEED(save_invstd, op);
    CPU_NEED(save_var, op);
  }
  bp_plan p = {0};
  CNN_TRY(plan_tasks(&p, d, act, op));
  const int c = d->c;
  const size_t rows = (size_t)d->n * d->h * d->w;
  cpu_scratch s;
  cnn_status st = cpu_scratch_get(&s, c, 3, 2, op);
  if (st != CNN_OK) {
    free(p.buf);
    return st;
  }
  double *mean = s.d, *var = s.d + c; /* var: 2c (cpu_bn_stats) */
  float *meanf = s.f, *scale = s.f + c;
  if (rmean) { /* as bn_act_fwd_infer */
    for (int j = 0; j < c; j++) {
      meanf[j] = rmean[j];
      scale[j] = (float)(gamma[j] / sqrt((double)rvar[j] + eps));
    }
  } else {
    st = cpu_bn_stats(rows, c, x, mean, var, op);
    for (int j = 0; st == CNN_OK && j < c; j++) {
      save_mean[j] = (float)mean[j];
      save_invstd[j] = (float)(1.0 / sqrt(var[j] + eps));
      save_var[j] = (float)var[j];
      meanf[j] = save_mean[j];
      scale[j] = (float)(gamma[j] * (double)save_invstd[j]); /* the backward's z */
    }
  }
  if (st == CNN_OK) {
    p.x = x;
    p.mean = meanf;
    p.scale = scale;
    p.beta = beta;
    p.alpha = alpha;
    p.y = y;
    int par = p.tasks > 1 && p.tasks * p.region >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
    for (size_t t = 0; t < p.tasks; t++) forward_task(&p, t, thread_buf(&p));
  }
  free(s.heap);
  free(p.buf);
  return st;
}

cnn_status cpu_bn_act_pool_bwd(void *ctx, const cnn_pool_desc *d, const float *x,
                               const float *dy, const float *gamma, const float *beta,
                               const float *save_mean, const float *save_invstd, cnn_act act,
                               float alpha, float *dx, float *dgamma, float *dbeta, int set) {
  const char *op = "bn_act_pool_bwd";
  CPU_NEED(x, op);
  CPU_NEED(dy, op);
  CPU_NEED(gamma, op);
  CPU_NEED(beta, op);
  CPU_NEED(save_mean, op);
  CPU_NEED(save_invstd, op);
  CPU_NEED(dx, op);
  CPU_NEED(dgamma, op);
  CPU_NEED(dbeta, op);
  bp_plan p = {0};
  CNN_TRY(plan_tasks(&p, d, act, op));
  const int c = d->c;
  const size_t rows = (size_t)d->n * d->h * d->w;
  cpu_scratch s;
  cnn_status st = cpu_scratch_get(&s, c, 3, 5, op);
  if (st != CNN_OK) {
    free(p.buf);
    return st;
  }
  double *center = s.d, *sums = s.d + c; /* sums: [sum g | sum g (x - mean)] */
  float *scale = s.f, *ca = s.f + c, *cb = s.f + 2 * c, *ck = s.f + 3 * c;
  for (int j = 0; j < c; j++) {
    center[j] = save_mean[j];
    scale[j] = (float)(gamma[j] * (double)save_invstd[j]); /* as the forward's scale */
  }
  p.x = x;
  p.dy = dy;
  p.mean = save_mean;
  p.scale = scale;
  p.beta = beta;
  p.center = center;
  p.alpha = alpha;
  p.ca = ca;
  p.cb_ = cb;
  p.ck = ck;
  p.dx = dx;
  p.set = set;
  st = cpu_reduce_rows(p.tasks, 2 * (size_t)c, p.region, bp_sums, &p, sums, op);
  if (st == CNN_OK) {
    cpu_bn_bwd_coeffs(rows, c, gamma, save_invstd, sums, dgamma, dbeta, ca, cb, ck);
    int par = p.tasks > 1 && p.tasks * p.region >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
    for (size_t t = 0; t < p.tasks; t++) dx_task(&p, t);
  }
  free(s.heap);
  free(p.buf);
  return st;
}
