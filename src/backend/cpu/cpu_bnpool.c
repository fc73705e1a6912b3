/* cpu: batch norm + activation + max pool in training (backend.h, bn_act_pool_*).
 *
 * The full-size a = act(bn(x)) never reaches memory. Work is cut into tasks (image,
 * output row, channel block); a task owns the input rows [lo(oy), lo(oy + 1))
 * (cpu_pool_owned_row: windows do not overlap, so its windows lie there, and rows
 * no window reaches belong to some task too).
 *   forward:  one statistics pass over x, then one pass that computes a window by
 *             window and writes only the pooled y and each output's argmax (sel);
 *   backward: a sums pass and a dx pass, each reading x, the pooled dy and sel: g is
 *             dy act'(z) in the cell sel names and 0 elsewhere, so nothing of a or
 *             of the max is recomputed.
 * Unfused, the same step wrote a and read it back, wrote the full-size gradient of
 * a (after zeroing it) and read it twice: on fashion.cfg's first block that traffic
 * was most of the non-conv time. The arithmetic of z, a and the max is that of
 * bn_act_fwd_train and maxpool_fwd, the gradient's that of bn_act_bwd; the backward
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

/* per-cell helpers: inlined into each clone of the loops that call them */
#if defined(__GNUC__)
#define BP_INLINE static inline __attribute__((always_inline))
#else
#define BP_INLINE static inline
#endif

#define BP_CB 256 /* most channels per task (its per-cell vectors are on the stack) */
#define BP_CELLS 4096 /* floats of a task's owned rows per channel block, at most */
#define BP_WIN 2048   /* floats of a task's row of outputs (ow x channel block), at most,
                        * unless ow alone is more */

typedef struct bp_plan {
  const cnn_pool_desc *d;
  int cb, blocks;                   /* channels per task, blocks per pixel */
  size_t tasks;                     /* n * oh * blocks */
  const float *x, *dy;
  const float *mean, *scale, *beta; /* z = (x - mean) scale + beta */
  const double *center;             /* the sums' centre (mean in double) */
  cnn_act act;
  float alpha;
  const float *ca, *cb_, *ck;       /* dx (+)= ca (g - cb_ - (x - mean) ck) */
  float *y, *dx;
  int plain;                        /* no batch norm (gamma NULL): z = x, dx (+)= g */
  uint8_t *sel;                     /* forward: written */
  const uint8_t *sel_in;            /* backward: read */
  float *rowbuf;                    /* backward: [threads][2][ow cb], sel as floats and dy */
  int set;
} bp_plan;

typedef struct bp_task {
  int n, oy, r0, r1, c0, cw;
} bp_task;

BP_INLINE bp_task task_at(const bp_plan *p, size_t t) {
  const cnn_pool_desc *d = p->d;
  bp_task k;
  size_t row = t / (size_t)p->blocks;
  k.n = (int)(row / (size_t)d->oh);
  k.oy = (int)(row % (size_t)d->oh);
  k.c0 = (int)(t % (size_t)p->blocks) * p->cb;
  k.cw = d->c - k.c0 < p->cb ? d->c - k.c0 : p->cb;
  k.r0 = cpu_pool_owned_row(d, k.oy);
  k.r1 = cpu_pool_owned_row(d, k.oy + 1);
  return k;
}

/* x of cell (row r, column col) of the task's image, at channel c0 */
BP_INLINE const float *x_at(const bp_plan *p, const bp_task *k, int r, int col) {
  const cnn_pool_desc *d = p->d;
  return p->x + (((size_t)k->n * d->h + r) * d->w + col) * d->c + k->c0;
}

/* the output (oy, ox) at channel c0: its offset in y, dy and sel */
BP_INLINE size_t out_at(const bp_plan *p, const bp_task *k, int ox) {
  const cnn_pool_desc *d = p->d;
  return (((size_t)k->n * d->oh + k->oy) * d->ow + ox) * d->c + k->c0;
}

/* a = act(z) of one cell: ReLU and leaky with act_fwd's formulas (the same bits),
 * others through act_fwd's kernel */
BP_INLINE void cell_a(const bp_plan *p, const float *xr, const float *m, const float *sc,
                   const float *sh, size_t cw, float *a) {
  const float lo = p->alpha;
  switch (p->act) {
    case CNN_ACT_RELU:
#pragma omp simd
      for (size_t j = 0; j < cw; j++) {
        float v = (xr[j] - m[j]) * sc[j] + sh[j];
        a[j] = v < 0.0f ? 0.0f : v;
      }
      return;
    case CNN_ACT_LEAKY:
#pragma omp simd
      for (size_t j = 0; j < cw; j++) {
        float v = (xr[j] - m[j]) * sc[j] + sh[j];
        a[j] = v * (v > 0.0f ? 1.0f : lo);
      }
      return;
    default:
#pragma omp simd
      for (size_t j = 0; j < cw; j++) a[j] = (xr[j] - m[j]) * sc[j] + sh[j];
      if (p->act != CNN_ACT_LINEAR) cpu_act_fwd_block(p->act, p->alpha, cw, a, a);
  }
}

/* the window ox of the task's row: its cells [y0, y1) x [x0, x1) (empty: y0 == y1) */
BP_INLINE void window(const cnn_pool_desc *d, int oy, int ox, int *y0, int *y1, int *x0, int *x1) {
  cpu_pool_clip(oy * d->stride_h - d->pad_h, d->kh, d->h, y0, y1);
  cpu_pool_clip(ox * d->stride_w - d->pad_w, d->kw, d->w, x0, x1);
  if (*x0 == *x1) *y1 = *y0;
}

/* y = the window's max of a, sel = the window-local index of its first cell holding
 * it (maxpool_fwd's order: strictly greater values replace the first cell) */
BP_CLONES
static void forward_task(const bp_plan *p, size_t t) {
  const cnn_pool_desc *d = p->d;
  const bp_task k = task_at(p, t);
  const size_t cw = (size_t)k.cw;
  const float *m = p->mean + k.c0, *sc = p->scale + k.c0, *sh = p->beta + k.c0;
  float a[BP_CB], best[BP_CB], idx[BP_CB];
  for (int ox = 0; ox < d->ow; ox++) {
    const size_t o = out_at(p, &k, ox);
    float *yp = p->y + o;
    uint8_t *sp = p->sel ? p->sel + o : NULL;
    int y0, y1, x0, x1;
    window(d, k.oy, ox, &y0, &y1, &x0, &x1);
    if (y0 == y1) {
      memset(yp, 0, cw * sizeof *yp);
      if (sp) memset(sp, 255, cw);
      continue;
    }
    const int ry = k.oy * d->stride_h - d->pad_h, rx = ox * d->stride_w - d->pad_w;
    for (int iy = y0; iy < y1; iy++)
      for (int ix = x0; ix < x1; ix++) {
        cell_a(p, x_at(p, &k, iy, ix), m, sc, sh, cw, a);
        const float li = (float)((iy - ry) * d->kw + (ix - rx));
        if (iy == y0 && ix == x0) {
#pragma omp simd
          for (size_t j = 0; j < cw; j++) {
            best[j] = a[j];
            idx[j] = li;
          }
          continue;
        }
#pragma omp simd
        for (size_t j = 0; j < cw; j++) {
          float av = a[j], bv = best[j], iv = idx[j];
          int gt = av > bv;
          /* arithmetic, exact on these small integers: as a select, GCC stores it
           * with vmaskmovps behind a branch, microcoded and slow on AMD */
          idx[j] = iv + (float)gt * (li - iv);
          best[j] = gt ? av : bv;
        }
      }
    memcpy(yp, best, cw * sizeof *yp);
    if (sp)
#pragma omp simd
      for (size_t j = 0; j < cw; j++) sp[j] = (uint8_t)(int)idx[j];
  }
}

/* this thread's room for row_outputs */
BP_INLINE float *row_buf(const bp_plan *p) {
  return p->rowbuf + (size_t)cpu_thread_num() * 2 * p->d->ow * p->cb;
}

/* the task's row of outputs, [ow][cw]: sel as floats (so the per-cell loops compare
 * floats with floats and vectorise) and dy */
BP_INLINE void row_outputs(const bp_plan *p, const bp_task *k, float *selw, float *dyw) {
  const size_t cw = (size_t)k->cw;
  for (int ox = 0; ox < p->d->ow; ox++) {
    const size_t o = out_at(p, k, ox);
    const uint8_t *sp = p->sel_in + o;
    const float *dyp = p->dy + o;
    float *sw = selw + (size_t)ox * cw, *dw = dyw + (size_t)ox * cw;
#pragma omp simd
    for (size_t j = 0; j < cw; j++) {
      sw[j] = (float)sp[j];
      dw[j] = dyp[j];
    }
  }
}

/* g of one cell: dy act'(z) where the cell is its window's sel, else 0 (li < 0: in
 * no window); z from x (bn_act_bwd's tile_grad arithmetic) */
BP_INLINE void cell_g(const bp_plan *p, const bp_task *k, const float *xr, int li, int ox,
                      const float *selw, const float *dyw, float *g) {
  const size_t cw = (size_t)k->cw;
  if (li < 0) {
    memset(g, 0, cw * sizeof *g);
    return;
  }
  const float *sw = selw + (size_t)ox * cw, *dyp = dyw + (size_t)ox * cw;
  const float *m = p->mean + k->c0, *sc = p->scale + k->c0, *sh = p->beta + k->c0;
  const float lo = p->act == CNN_ACT_RELU ? 0.0f : p->alpha, lf = (float)li;
  switch (p->act) {
    case CNN_ACT_LINEAR:
#pragma omp simd
      for (size_t j = 0; j < cw; j++) {
        float v = dyp[j];
        g[j] = sw[j] == lf ? v : 0.0f;
      }
      return;
    case CNN_ACT_RELU:
    case CNN_ACT_LEAKY:
#pragma omp simd
      for (size_t j = 0; j < cw; j++) {
        float z = (xr[j] - m[j]) * sc[j] + sh[j], v = dyp[j] * (z > 0.0f ? 1.0f : lo);
        g[j] = 0.0f + (sw[j] == lf ? v : 0.0f);
      }
      return;
    default: {
      float z[BP_CB], dys[BP_CB];
#pragma omp simd
      for (size_t j = 0; j < cw; j++) {
        z[j] = (xr[j] - m[j]) * sc[j] + sh[j];
        float v = dyp[j];
        dys[j] = sw[j] == lf ? v : 0.0f;
        g[j] = 0.0f;
      }
      cpu_act_bwd_block(p->act, p->alpha, cw, z, dys, g);
    }
  }
}

/* the window a cell of the task's row lies in */
typedef struct bp_col {
  int ox, ds; /* the column's window and its offset in it (ds >= kw: between windows) */
} bp_col;

/* column 0, then column by column without a division per cell */
BP_INLINE bp_col col_first(const cnn_pool_desc *d) {
  bp_col c = {0, d->pad_w};
  while (c.ds >= d->stride_w) {
    c.ds -= d->stride_w;
    c.ox++;
  }
  return c;
}
BP_INLINE void col_next(const cnn_pool_desc *d, bp_col *c) {
  if (++c->ds == d->stride_w) {
    c->ds = 0;
    c->ox++;
  }
}
/* the window-local index of the cell in window row dr (r + pad_h - oy stride_h), -1
 * when no window holds it */
BP_INLINE int col_li(const cnn_pool_desc *d, const bp_col *c, int dr) {
  return dr >= 0 && dr < d->kh && c->ox < d->ow && c->ds < d->kw ? dr * d->kw + c->ds : -1;
}

/* tasks [t0, t1): acc[j] += g, acc[c + j] += g (x - mean) */
BP_CLONES
static void bp_sums(size_t t0, size_t t1, const void *varg, double *acc) {
  const bp_plan *p = varg;
  const cnn_pool_desc *d = p->d;
  float g[BP_CB], *selw = row_buf(p), *dyw = selw + (size_t)p->d->ow * p->cb;
  for (size_t t = t0; t < t1; t++) {
    const bp_task k = task_at(p, t);
    const size_t cw = (size_t)k.cw;
    row_outputs(p, &k, selw, dyw);
    const double *ctr = p->center + k.c0;
    double *s1 = acc + k.c0, *s2 = acc + d->c + k.c0;
    for (int r = k.r0; r < k.r1; r++) {
      const int dr = r + d->pad_h - k.oy * d->stride_h;
      bp_col cc = col_first(d);
      for (int col = 0; col < d->w; col++, col_next(d, &cc)) {
        int li = col_li(d, &cc, dr);
        if (li < 0) continue; /* g = 0 adds nothing */
        const float *xr = x_at(p, &k, r, col);
        cell_g(p, &k, xr, li, cc.ox, selw, dyw, g);
#pragma omp simd
        for (size_t j = 0; j < cw; j++) {
          s1[j] += g[j];
          s2[j] += g[j] * (xr[j] - ctr[j]);
        }
      }
    }
  }
}

BP_CLONES
static void dx_task(const bp_plan *p, size_t t) {
  const cnn_pool_desc *d = p->d;
  const bp_task k = task_at(p, t);
  const size_t cw = (size_t)k.cw;
  const float *ca = p->ca + k.c0, *cb = p->cb_ + k.c0, *ck = p->ck + k.c0, *m = p->mean + k.c0;
  float g[BP_CB], *selw = row_buf(p), *dyw = selw + (size_t)d->ow * p->cb;
  row_outputs(p, &k, selw, dyw);
  for (int r = k.r0; r < k.r1; r++) {
    const int dr = r + d->pad_h - k.oy * d->stride_h;
    bp_col cc = col_first(d);
    for (int col = 0; col < d->w; col++, col_next(d, &cc)) {
      const float *xr = x_at(p, &k, r, col);
      cell_g(p, &k, xr, col_li(d, &cc, dr), cc.ox, selw, dyw, g);
      float *dxr = p->dx + (xr - p->x);
      if (p->plain) {
        if (p->set) {
#pragma omp simd
          for (size_t j = 0; j < cw; j++) dxr[j] = 0.0f + g[j];
        } else {
#pragma omp simd
          for (size_t j = 0; j < cw; j++) dxr[j] += g[j];
        }
        continue;
      }
      /* bn_act_bwd's dx loop, written out here: shared as an inline helper from cpu.h
       * it made this AVX2 clone 4-6x slower (10 ms instead of 2.4 on fashion's first
       * block, forced inline or not) */
      if (p->set) {
#pragma omp simd
        for (size_t j = 0; j < cw; j++)
          dxr[j] = 0.0f + ca[j] * (g[j] - cb[j] - (xr[j] - m[j]) * ck[j]);
      } else {
#pragma omp simd
        for (size_t j = 0; j < cw; j++) dxr[j] += ca[j] * (g[j] - cb[j] - (xr[j] - m[j]) * ck[j]);
      }
    }
  }
}

/* the task split: channel blocks small enough that a task's rows stay in L2 */
static cnn_status plan_tasks(bp_plan *p, const cnn_pool_desc *d, cnn_act act, const char *op) {
  CPU_NEED(d, op);
  CNN_TRY(cpu_check_act(act, op));
  if (d->n < 1 || d->h < 1 || d->w < 1 || d->c < 1 || d->oh < 1 || d->ow < 1 || d->kh < 1 ||
      d->kw < 1 || d->pad_h < 0 || d->pad_w < 0 || d->stride_h < d->kh ||
      d->stride_w < d->kw || d->kh * d->kw > 255)
    return cnn_error(CNN_ERR_ARG, "cpu %s: x %dx%dx%dx%d, y %dx%d, window %dx%d, stride %dx%d, "
                     "padding %dx%d (windows must not overlap and hold at most 255 cells)", op,
                     d->n, d->h, d->w, d->c, d->oh, d->ow, d->kh, d->kw, d->stride_h, d->stride_w,
                     d->pad_h, d->pad_w);
  int rows = 1; /* the most rows one task owns */
  for (int oy = 0; oy < d->oh; oy++) {
    int r = cpu_pool_owned_row(d, oy + 1) - cpu_pool_owned_row(d, oy);
    if (r > rows) rows = r;
  }
  size_t cb = BP_CELLS / ((size_t)rows * d->w);
  if (cb > BP_WIN / (size_t)d->ow) cb = BP_WIN / (size_t)d->ow;
  if (cb < 1) cb = 1;
  if (cb > BP_CB) cb = BP_CB;
  if (cb >= (size_t)d->c) cb = (size_t)d->c;
  else if (cb >= 8) cb &= ~(size_t)7; /* whole vectors */
  p->d = d;
  p->cb = (int)cb;
  p->blocks = (int)((d->c + cb - 1) / cb);
  p->tasks = (size_t)d->n * d->oh * p->blocks;
  p->act = act;
  return CNN_OK;
}

/* elements a parallel loop over the tasks touches (the CPU_PAR_MIN threshold) */
static size_t task_work(const bp_plan *p) {
  return (size_t)p->d->n * p->d->h * p->d->w * p->d->c;
}

cnn_status cpu_bn_act_pool_fwd(void *ctx, const cnn_pool_desc *d, const float *x,
                               const float *gamma, const float *beta, float eps, cnn_act act,
                               float alpha, const float *rmean, const float *rvar,
                               float *save_mean, float *save_invstd, float *save_var,
                               uint8_t *sel, float *y) {
  const char *op = "bn_act_pool_fwd";
  CPU_NEED(x, op);
  CPU_NEED(y, op);
  const int plain = gamma == NULL;
  if (!plain) CPU_NEED(beta, op);
  if (plain || rmean) {
    if (rmean) CPU_NEED(rvar, op);
  } else {
    CPU_NEED(save_mean, op);
    CPU_NEED(save_invstd, op);
    CPU_NEED(save_var, op);
    CPU_NEED(sel, op);
  }
  bp_plan p = {0};
  CNN_TRY(plan_tasks(&p, d, act, op));
  const int c = d->c;
  const size_t rows = (size_t)d->n * d->h * d->w;
  cpu_scratch s;
  CNN_TRY(cpu_scratch_get(&s, c, 3, 3, op));
  double *mean = s.d, *var = s.d + c; /* var: 2c (cpu_bn_stats) */
  float *meanf = s.f, *scale = s.f + c, *shift = s.f + 2 * c;
  cnn_status st = CNN_OK;
  if (plain) { /* z = (x - 0) 1 + 0 */
    for (int j = 0; j < c; j++) {
      meanf[j] = shift[j] = 0.0f;
      scale[j] = 1.0f;
    }
    beta = shift;
  } else if (rmean) { /* as bn_act_fwd_infer */
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
    p.sel = rmean && !plain ? NULL : sel;
    int par = p.tasks > 1 && task_work(&p) >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
    for (size_t t = 0; t < p.tasks; t++) forward_task(&p, t);
  }
  free(s.heap);
  return st;
}

cnn_status cpu_bn_act_pool_bwd(void *ctx, const cnn_pool_desc *d, const float *x,
                               const float *dy, const uint8_t *sel, const float *gamma,
                               const float *beta, const float *save_mean,
                               const float *save_invstd, cnn_act act, float alpha, float *dx,
                               float *dgamma, float *dbeta, int set) {
  const char *op = "bn_act_pool_bwd";
  CPU_NEED(x, op);
  CPU_NEED(dy, op);
  CPU_NEED(sel, op);
  CPU_NEED(dx, op);
  const int plain = gamma == NULL;
  if (!plain) {
    CPU_NEED(beta, op);
    CPU_NEED(save_mean, op);
    CPU_NEED(save_invstd, op);
    CPU_NEED(dgamma, op);
    CPU_NEED(dbeta, op);
  }
  bp_plan p = {0};
  CNN_TRY(plan_tasks(&p, d, act, op));
  const int c = d->c;
  const size_t rows = (size_t)d->n * d->h * d->w;
  cpu_scratch s;
  CNN_TRY(cpu_scratch_get(&s, c, 3, 5, op));
  double *center = s.d, *sums = s.d + c; /* sums: [sum g | sum g (x - mean)] */
  float *scale = s.f, *ca = s.f + c, *cb = s.f + 2 * c, *ck = s.f + 3 * c, *zero = s.f + 4 * c;
  for (int j = 0; j < c; j++) {
    if (plain) { /* z = (x - 0) 1 + 0, as the forward's */
      zero[j] = 0.0f;
      scale[j] = 1.0f;
      continue;
    }
    center[j] = save_mean[j];
    scale[j] = (float)(gamma[j] * (double)save_invstd[j]); /* as the forward's scale */
  }
  if (plain) save_mean = beta = zero;
  p.plain = plain;
  p.x = x;
  p.dy = dy;
  p.sel_in = sel;
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
  cnn_status st = cpu_alloc_aligned((size_t)cpu_max_threads() * 2 * d->ow * p.cb * sizeof(float),
                                    op, (void **)&p.rowbuf);
  if (st == CNN_OK && !plain)
    st = cpu_reduce_rows(p.tasks, 2 * (size_t)c, task_work(&p) / p.tasks, bp_sums, &p, sums, op);
  if (st == CNN_OK) {
    if (!plain) cpu_bn_bwd_coeffs(rows, c, gamma, save_invstd, sums, dgamma, dbeta, ca, cb, ck);
    int par = p.tasks > 1 && task_work(&p) >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
    for (size_t t = 0; t < p.tasks; t++) dx_task(&p, t);
  }
  free(p.rowbuf);
  free(s.heap);
  return st;
}
