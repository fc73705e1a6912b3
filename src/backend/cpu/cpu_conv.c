/* cpu: 2-D convolution, NHWC activations, KRSC weights [k][r][s][c/groups].
 *
 *   y[n, oy, ox, k] = bias[k] + sum_{r, s, ci} x[n, iy, ix, g*cg + ci] w[k, r, s, ci]
 *     iy = oy*stride_h - pad_h + r*dil_h, ix = ox*stride_w - pad_w + s*dil_w,
 *     taps outside the input read 0.
 *
 * Three engines, picked from the shape:
 *  - depthwise (groups == c == k): direct loops vectorised over channels; tiny
 *    per-group GEMMs would be all overhead.
 *  - 1x1, stride 1, no padding, same output size: x [n*h*w, c] already is the
 *    column matrix; runs of rows go to the threads, one GEMM per group each.
 *  - everything else: im2col + GEMM over tiles of whole images. A thread takes a
 *    tile, builds its column matrix in the thread's own cache-sized slot of the
 *    workspace and multiplies it at once, while it is hot.
 *    The column matrix is [rows = image pixels][g][r][s][cg], so group g's columns
 *    are the contiguous block at g*r*s*cg with row stride r*s*c, and its filters
 *    are the contiguous block w[g*kg .. (g+1)*kg) with row stride r*s*cg:
 *      forward         Y_g[M, kg]      = col_g[M, rscg] W_g^T     (onto a bias pre-fill)
 *      backward-data   dcol_g[M, rscg] = dY_g[M, kg] W_g;  dx += col2im(dcol)
 *      backward-filter dW_g[kg, rscg]  = sum over tiles dY_g^T col_g,  db alongside
 *    Tiles hold whole images, so backward-data threads never share a dx element.
 *
 * conv_fwd_act runs the same engines and activates each piece of output right
 * after its GEMM (an im2col tile, a depthwise output row, a 1x1 block of rows),
 * while it is in cache. Im2col and depthwise give conv_fwd + act_fwd's bits; the
 * 1x1 engine issues its GEMMs in L2-sized row blocks, and OpenBLAS rounds a row
 * differently depending on where the M range is cut (measured on 0.3.21, Zen: a
 * few 1e-7 relative), so there it matches conv_fwd + act_fwd to that, not bitwise.
 *
 * Threads: one OpenMP team drives everything and each thread calls the GEMM on its
 * own tile, with OpenBLAS itself single-threaded (cnn_backend_cpu_create sets that
 * up). Letting OpenBLAS's pthread pool run beside OpenMP's team, one GEMM at a time
 * between parallel im2col passes, measured 2.5x slower on 2 cores (LeNet conv2:
 * 84 vs 210 GFLOP/s): the two pools' spinning workers take each other's cores.
 * Tiles are handed out dynamically (a thread slowed by another process hands its
 * share over); forward and backward-data results do not depend on who computed
 * what, and backward-filter sums fixed runs of tiles into partials that are added
 * in order, so every result is deterministic for a given thread count. */
#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

/* Keep GCC from turning the short copy loops below back into libc calls, and let
 * it vectorise selects (nothing here reads floating-point exception flags). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-loop-distribute-patterns", "no-trapping-math")
#endif

/* im2col tile budget per thread: its column matrix plus its output rows, about
 * half of a 2 MiB L2 (a tile is at least one image). */
#ifndef CPU_CONV_TILE
#define CPU_CONV_TILE ((size_t)1 << 20)
#endif
/* Convs with fewer multiply-adds than this run on one thread. */
#define CPU_CONV_PAR_MIN ((size_t)1 << 18)
/* Depthwise filter grads: row chunks with their own double partials. */
#define CPU_DW_CHUNKS 32

enum { CONV_IM2COL = 0, CONV_GEMM1X1, CONV_DEPTHWISE };

typedef struct conv_plan {
  int kind;
  int groups, cg, kg;
  size_t rs, rscg, rsc; /* r*s, r*s*cg, r*s*c: row length of the column matrix */
  size_t pix;           /* oh*ow output pixels per image */
  int threads;          /* team size the scratch is laid out for */
  int nb;               /* im2col: images per tile */
  size_t items;         /* work items: im2col tiles, or 1x1 rows */
  size_t col_slot;      /* im2col: floats of one thread's column matrix */
  size_t parts;         /* filter grads: partial sums (1: straight into dw) */
  size_t dw_slot;       /* floats of one partial (0: none) */
  size_t db_slot;       /* doubles of one bias-grad partial */
  size_t dw_chunks;     /* depthwise: row chunks of the filter-grad reduction */
  size_t ws;            /* bytes of scratch */
} conv_plan;

/* floats rounded up to a 64-byte multiple, so every slot starts on a cache line */
static size_t slot(size_t floats) { return (floats + 15) / 16 * 16; }

static cnn_status check_conv(const cnn_conv_desc *d, const char *op) {
  CPU_NEED(d, op);
  if (d->n < 0 || d->h < 1 || d->w < 1 || d->c < 1 || d->k < 1 || d->r < 1 || d->s < 1 ||
      d->oh < 0 || d->ow < 0)
    return cnn_error(CNN_ERR_ARG, "cpu %s: bad shape x %dx%dx%dx%d w %dx%dx%d y %dx%d", op,
                     d->n, d->h, d->w, d->c, d->k, d->r, d->s, d->oh, d->ow);
  if (d->stride_h < 1 || d->stride_w < 1 || d->dil_h < 1 || d->dil_w < 1 || d->pad_h < 0 ||
      d->pad_w < 0)
    return cnn_error(CNN_ERR_ARG, "cpu %s: bad stride %dx%d, dilation %dx%d or padding %dx%d", op,
                     d->stride_h, d->stride_w, d->dil_h, d->dil_w, d->pad_h, d->pad_w);
  if (d->groups < 1 || d->c % d->groups || d->k % d->groups)
    return cnn_error(CNN_ERR_ARG, "cpu %s: groups %d must divide channels %d and filters %d", op,
                     d->groups, d->c, d->k);
  return CNN_OK;
}

cnn_status cpu_conv_check(const cnn_conv_desc *d, const char *op) { return check_conv(d, op); }

/* Filter-grad partial sums: at most this many, and at most this much memory. */
#define CPU_CONV_PARTS 8
#define CPU_CONV_PARTS_BYTES ((size_t)16 << 20)

/* A valid desc and a team size in, the engine and its scratch out. */
static void make_plan_t(const cnn_conv_desc *d, int threads, conv_plan *p) {
  memset(p, 0, sizeof *p);
  p->groups = d->groups;
  p->cg = d->c / d->groups;
  p->kg = d->k / d->groups;
  p->rs = (size_t)d->r * d->s;
  p->rscg = p->rs * p->cg;
  p->rsc = p->rs * d->c;
  p->pix = (size_t)d->oh * d->ow;
  size_t macs = (size_t)d->n * p->pix * d->k * p->rscg;
  p->threads = macs >= CPU_CONV_PAR_MIN && threads > 1 ? threads : 1;
  if (d->groups == d->c && d->c == d->k) {
    p->kind = CONV_DEPTHWISE;
    size_t rows = (size_t)d->n * d->oh;
    p->dw_chunks = rows < CPU_DW_CHUNKS ? rows : CPU_DW_CHUNKS;
    size_t wt = p->rs * d->c * sizeof(float);
    size_t part = p->dw_chunks * p->rs * d->c * sizeof(double);
    p->ws = wt > part ? wt : part;
    return;
  }
  const int is1x1 = d->r == 1 && d->s == 1 && d->stride_h == 1 && d->stride_w == 1 &&
                    d->pad_h == 0 && d->pad_w == 0 && d->oh == d->h && d->ow == d->w;
  p->kind = is1x1 ? CONV_GEMM1X1 : CONV_IM2COL;
  if (d->n == 0 || p->pix == 0) return;
  if (is1x1) {
    p->items = (size_t)d->n * p->pix; /* rows */
  } else {
    size_t per_image = (p->pix * p->rsc + p->pix * d->k) * sizeof(float);
    size_t nb = CPU_CONV_TILE / per_image;
    /* several tiles per thread, so a thread slowed by another process hands work over */
    size_t fair = ((size_t)d->n + 4 * (size_t)p->threads - 1) / (4 * (size_t)p->threads);
    if (nb > fair) nb = fair;
    if (nb < 1) nb = 1;
    while (nb > 1 && nb * p->pix > (size_t)INT_MAX) nb = (nb + 1) / 2; /* GEMM sizes are int */
    p->nb = (int)nb;
    p->items = ((size_t)d->n + nb - 1) / nb; /* tiles */
    p->col_slot = slot(nb * p->pix * p->rsc);
  }
  /* filter grads: the items are cut into `parts` fixed runs, each summed into its
   * own partial and the partials added in order, so the result does not depend on
   * which thread took which run */
  if (p->threads > 1) {
    size_t dw_bytes = (size_t)d->k * p->rscg * sizeof(float);
    size_t parts = CPU_CONV_PARTS_BYTES / dw_bytes;
    if (parts > CPU_CONV_PARTS) parts = CPU_CONV_PARTS;
    if (parts < (size_t)p->threads) parts = (size_t)p->threads;
    if (parts > p->items) parts = p->items;
    p->parts = parts;
  } else {
    p->parts = 1;
  }
  p->dw_slot = p->parts > 1 ? slot((size_t)d->k * p->rscg) : 0;
  p->db_slot = ((size_t)d->k + 7) / 8 * 8;
  p->ws = ((size_t)p->threads * p->col_slot + p->parts * p->dw_slot) * sizeof(float) +
          p->parts * p->db_slot * sizeof(double);
}

/* the plan for the current OpenMP thread count */
static void make_plan(const cnn_conv_desc *d, conv_plan *p) {
  make_plan_t(d, cpu_max_threads(), p);
}

/* the engine cpu_own_conv_* picks for d (a static string) */
const char *cpu_own_conv_kind(const cnn_conv_desc *d) {
  if (check_conv(d, "conv") != CNN_OK) return "?";
  conv_plan p;
  make_plan_t(d, 1, &p);
  return p.kind == CONV_DEPTHWISE ? "depthwise" : p.kind == CONV_GEMM1X1 ? "gemm-1x1" : "im2col+gemm";
}

size_t cpu_own_conv_workspace(const cnn_conv_desc *d) {
  if (check_conv(d, "conv_workspace") != CNN_OK) return 0;
  conv_plan p;
  make_plan(d, &p);
  return p.ws;
}

/* Enough scratch for the plan; if the thread count grew since the caller sized the
 * workspace, plan for the largest team that fits instead. */
static cnn_status fit_ws(const cnn_conv_desc *d, conv_plan *p, void *ws, size_t ws_bytes,
                         const char *op) {
  if (!p->ws || (ws && ws_bytes >= p->ws)) return CNN_OK;
  size_t need = p->ws;
  if (ws && p->kind != CONV_DEPTHWISE)
    for (int t = p->threads - 1; t >= 1; t--) {
      conv_plan q;
      make_plan_t(d, t, &q);
      if (q.ws <= ws_bytes) {
        *p = q;
        return CNN_OK;
      }
    }
  return cnn_error(CNN_ERR_ARG, "cpu %s: workspace of %zu bytes%s, this shape needs %zu", op,
                   ws_bytes, ws ? "" : " (NULL)", need);
}

/* column range [s_lo, s_hi) of taps inside the input for a window starting at ix0
 * (unit dilation) */
static void tap_range(int ix0, int s, int w, int *s_lo, int *s_hi) {
  int lo = ix0 < 0 ? -ix0 : 0, hi = w - ix0 < s ? w - ix0 : s;
  if (hi < lo) hi = lo;
  if (lo > s) lo = hi = s;
  *s_lo = lo;
  *s_hi = hi;
}

/* Copy n floats. Runs in im2col are often a handful of floats (c = 1: one filter
 * row of s taps), where a libc call costs more than the copy. */
static inline void copy_floats(float *restrict dst, const float *restrict src, size_t n) {
  if (n >= 64) {
    memcpy(dst, src, n * sizeof *dst);
    return;
  }
#pragma omp simd
  for (size_t i = 0; i < n; i++) dst[i] = src[i];
}

static inline void zero_floats(float *dst, size_t n) {
  if (n >= 64) {
    memset(dst, 0, n * sizeof *dst);
    return;
  }
#pragma omp simd
  for (size_t i = 0; i < n; i++) dst[i] = 0.0f;
}

/* dst[i] += src[i] */
static inline void add_floats(float *restrict dst, const float *restrict src, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

/* fill rows [rows, k] with bias on the calling thread (the GEMM then accumulates
 * onto it with beta = 1, which costs OpenBLAS no extra pass) */
static void fill_bias(size_t rows, int k, const float *bias, float *y) {
  for (size_t i = 0; i < rows; i++) copy_floats(y + i * k, bias, (size_t)k);
}

/* ---- im2col / col2im over images [n0, n0 + nb) ---- */

/* one filter row r of a window starting at column ix0, taps partly outside the row */
static void im2col_edge(const float *xr, int ix0, int S, int C, int w, float *dst) {
  int lo, hi;
  tap_range(ix0, S, w, &lo, &hi);
  if (lo > 0) zero_floats(dst, (size_t)lo * C);
  if (hi > lo) copy_floats(dst + (size_t)lo * C, xr + (size_t)(ix0 + lo) * C, (size_t)(hi - lo) * C);
  if (hi < S) zero_floats(dst + (size_t)hi * C, (size_t)(S - hi) * C);
}

/* groups == 1, unit column dilation: for each filter row the s taps are one
 * contiguous run of s*c floats of x; windows fully inside the row are plain copies */
static void im2col_row_unit(const cnn_conv_desc *d, const float *xn, int oy, size_t rsc,
                            float *crow) {
  const int S = d->s, C = d->c, sw = d->stride_w, pw = d->pad_w;
  const size_t sc = (size_t)S * C;
  int ox_a = (pw + sw - 1) / sw, ox_b = d->w - S + pw >= 0 ? (d->w - S + pw) / sw + 1 : 0;
  if (ox_a > d->ow) ox_a = d->ow;
  if (ox_b > d->ow) ox_b = d->ow;
  if (ox_b < ox_a) ox_b = ox_a;
  for (int r = 0; r < d->r; r++) {
    int iy = oy * d->stride_h - d->pad_h + r * d->dil_h;
    float *base = crow + (size_t)r * sc;
    if (iy < 0 || iy >= d->h) {
      for (int ox = 0; ox < d->ow; ox++) zero_floats(base + (size_t)ox * rsc, sc);
      continue;
    }
    const float *xr = xn + (size_t)iy * d->w * C;
    for (int ox = 0; ox < ox_a; ox++) im2col_edge(xr, ox * sw - pw, S, C, d->w, base + (size_t)ox * rsc);
    for (int ox = ox_a; ox < ox_b; ox++)
      copy_floats(base + (size_t)ox * rsc, xr + (size_t)(ox * sw - pw) * C, sc);
    for (int ox = ox_b; ox < d->ow; ox++) im2col_edge(xr, ox * sw - pw, S, C, d->w, base + (size_t)ox * rsc);
  }
}

/* any groups / dilation: tap by tap, group by group */
static void im2col_row_generic(const cnn_conv_desc *d, const conv_plan *p, const float *xn,
                               int oy, float *crow) {
  const int R = d->r, S = d->s, C = d->c, G = p->groups, cg = p->cg;
  for (int ox = 0; ox < d->ow; ox++) {
    float *cp = crow + (size_t)ox * p->rsc;
    int ix0 = ox * d->stride_w - d->pad_w;
    for (int r = 0; r < R; r++) {
      int iy = oy * d->stride_h - d->pad_h + r * d->dil_h;
      const int row_in = iy >= 0 && iy < d->h;
      const float *xr = xn + (size_t)(row_in ? iy : 0) * d->w * C;
      for (int s = 0; s < S; s++) {
        int ix = ix0 + s * d->dil_w;
        int inside = row_in && ix >= 0 && ix < d->w;
        for (int g = 0; g < G; g++) {
          float *dst = cp + (((size_t)g * R + r) * S + s) * cg;
          if (inside)
            copy_floats(dst, xr + (size_t)ix * C + (size_t)g * cg, (size_t)cg);
          else
            zero_floats(dst, (size_t)cg);
        }
      }
    }
  }
}

/* im2col of images [n0, n0 + nb) on the calling thread */
static void im2col_tile(const cnn_conv_desc *d, const conv_plan *p, const float *x, int n0,
                        int nb, float *col) {
  const int unit = p->groups == 1 && d->dil_w == 1;
  size_t rows = (size_t)nb * d->oh;
  for (size_t idx = 0; idx < rows; idx++) {
    int n = n0 + (int)(idx / d->oh), oy = (int)(idx % d->oh);
    const float *xn = x + (size_t)n * d->h * d->w * d->c;
    float *crow = col + idx * d->ow * p->rsc;
    if (unit)
      im2col_row_unit(d, xn, oy, p->rsc, crow);
    else
      im2col_row_generic(d, p, xn, oy, crow);
  }
}

/* dx[images n0 .. n0+nb) += col2im(col), on the calling thread; a gather over input
 * rows, so each dx element takes its terms in a fixed order */
static void col2im_add(const cnn_conv_desc *d, const conv_plan *p, const float *col, int n0,
                       int nb, float *dx) {
  const int R = d->r, S = d->s, C = d->c, G = p->groups, cg = p->cg;
  const int sw = d->stride_w, pw = d->pad_w;
  const size_t rsc = p->rsc, sc = (size_t)S * C;
  const int unit = G == 1 && d->dil_w == 1;
  /* unit case: windows ox in [ox_a, ox_b) lie inside the row */
  int ox_a = (pw + sw - 1) / sw, ox_b = d->w - S + pw >= 0 ? (d->w - S + pw) / sw + 1 : 0;
  if (ox_a > d->ow) ox_a = d->ow;
  if (ox_b > d->ow) ox_b = d->ow;
  if (ox_b < ox_a) ox_b = ox_a;
  size_t rows = (size_t)nb * d->h;
  for (size_t idx = 0; idx < rows; idx++) {
    int i = (int)(idx / d->h), iy = (int)(idx % d->h);
    float *dxr = dx + (((size_t)(n0 + i) * d->h + iy) * d->w) * C;
    const float *coln = col + (size_t)i * p->pix * rsc;
    for (int r = 0; r < R; r++) {
      int t = iy + d->pad_h - r * d->dil_h;
      if (t < 0 || t % d->stride_h) continue;
      int oy = t / d->stride_h;
      if (oy >= d->oh) continue;
      const float *crow = coln + (size_t)oy * d->ow * rsc;
      if (unit) {
        const float *base = crow + (size_t)r * sc;
        for (int ox = 0; ox < d->ow; ox++) {
          if (ox == ox_a) { /* the interior: whole runs of s*c floats */
            for (; ox < ox_b; ox++)
              add_floats(dxr + (size_t)(ox * sw - pw) * C, base + (size_t)ox * rsc, sc);
            if (ox >= d->ow) break;
          }
          int ix0 = ox * sw - pw, lo, hi;
          tap_range(ix0, S, d->w, &lo, &hi);
          if (hi > lo)
            add_floats(dxr + (size_t)(ix0 + lo) * C, base + (size_t)ox * rsc + (size_t)lo * C,
                       (size_t)(hi - lo) * C);
        }
        continue;
      }
      for (int ox = 0; ox < d->ow; ox++) {
        const float *cp = crow + (size_t)ox * rsc;
        int ix0 = ox * sw - pw;
        for (int s = 0; s < S; s++) {
          int ix = ix0 + s * d->dil_w;
          if (ix < 0 || ix >= d->w) continue;
          for (int g = 0; g < G; g++)
            add_floats(dxr + (size_t)ix * C + (size_t)g * cg,
                       cp + (((size_t)g * R + r) * S + s) * cg, (size_t)cg);
        }
      }
    }
  }
}

/* ---- depthwise (groups == c == k): w is [c][r][s], transposed to wt [r][s][c] ---- */

static void dw_transpose(const cnn_conv_desc *d, const float *w, float *wt) {
  size_t rs = (size_t)d->r * d->s;
  for (size_t ch = 0; ch < (size_t)d->c; ch++)
    for (size_t t = 0; t < rs; t++) wt[t * d->c + ch] = w[ch * rs + t];
}

/* y = act(conv + bias); each output row is activated as soon as it is complete */
static void dw_fwd(const cnn_conv_desc *d, const float *x, const float *wt, const float *bias,
                   cnn_act act, float alpha, float *y) {
  const int C = d->c;
  size_t rows = (size_t)d->n * d->oh;
  int par = rows > 1 && rows * d->ow * C * d->r * d->s >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
  for (size_t idx = 0; idx < rows; idx++) {
    int n = (int)(idx / d->oh), oy = (int)(idx % d->oh);
    const float *xn = x + (size_t)n * d->h * d->w * C;
    for (int ox = 0; ox < d->ow; ox++) {
      float *yp = y + (idx * d->ow + ox) * C;
      if (bias)
        memcpy(yp, bias, (size_t)C * sizeof *yp);
      else
        memset(yp, 0, (size_t)C * sizeof *yp);
      for (int r = 0; r < d->r; r++) {
        int iy = oy * d->stride_h - d->pad_h + r * d->dil_h;
        if (iy < 0 || iy >= d->h) continue;
        for (int s = 0; s < d->s; s++) {
          int ix = ox * d->stride_w - d->pad_w + s * d->dil_w;
          if (ix < 0 || ix >= d->w) continue;
          const float *xp = xn + ((size_t)iy * d->w + ix) * C;
          const float *wp = wt + ((size_t)r * d->s + s) * C;
#pragma omp simd
          for (int ch = 0; ch < C; ch++) yp[ch] += xp[ch] * wp[ch];
        }
      }
    }
    if (act != CNN_ACT_LINEAR) {
      float *yr = y + idx * d->ow * C;
      cpu_act_fwd_block(act, alpha, (size_t)d->ow * C, yr, yr);
    }
  }
}

/* dx += ..., gathered per input row */
static void dw_bwd_data(const cnn_conv_desc *d, const float *dy, const float *wt, float *dx) {
  const int C = d->c;
  size_t rows = (size_t)d->n * d->h;
  int par = rows > 1 && (size_t)d->n * d->oh * d->ow * C * d->r * d->s >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
  for (size_t idx = 0; idx < rows; idx++) {
    int n = (int)(idx / d->h), iy = (int)(idx % d->h);
    for (int ix = 0; ix < d->w; ix++) {
      float *dxp = dx + (idx * d->w + ix) * C;
      for (int r = 0; r < d->r; r++) {
        int t = iy + d->pad_h - r * d->dil_h;
        if (t < 0 || t % d->stride_h) continue;
        int oy = t / d->stride_h;
        if (oy >= d->oh) continue;
        for (int s = 0; s < d->s; s++) {
          int u = ix + d->pad_w - s * d->dil_w;
          if (u < 0 || u % d->stride_w) continue;
          int ox = u / d->stride_w;
          if (ox >= d->ow) continue;
          const float *dyp = dy + (((size_t)n * d->oh + oy) * d->ow + ox) * C;
          const float *wp = wt + ((size_t)r * d->s + s) * C;
#pragma omp simd
          for (int ch = 0; ch < C; ch++) dxp[ch] += dyp[ch] * wp[ch];
        }
      }
    }
  }
}

/* dw[ch][r][s] = sum x dy: fixed row chunks with double partials [r][s][c], summed in
 * chunk order (deterministic for any thread count) */
static void dw_bwd_filter(const cnn_conv_desc *d, const conv_plan *p, const float *x,
                          const float *dy, double *part, float *dw) {
  const int C = d->c;
  const size_t rs = p->rs, rsc = rs * C, chunks = p->dw_chunks;
  size_t rows = (size_t)d->n * d->oh;
  int par = chunks > 1 && rows * d->ow * rsc >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
  for (size_t q = 0; q < chunks; q++) {
    double *acc = part + q * rsc;
    for (size_t j = 0; j < rsc; j++) acc[j] = 0.0;
    size_t r0 = rows * q / chunks, r1 = rows * (q + 1) / chunks;
    for (size_t idx = r0; idx < r1; idx++) {
      int n = (int)(idx / d->oh), oy = (int)(idx % d->oh);
      const float *xn = x + (size_t)n * d->h * d->w * C;
      for (int ox = 0; ox < d->ow; ox++) {
        const float *dyp = dy + (idx * d->ow + ox) * C;
        for (int r = 0; r < d->r; r++) {
          int iy = oy * d->stride_h - d->pad_h + r * d->dil_h;
          if (iy < 0 || iy >= d->h) continue;
          for (int s = 0; s < d->s; s++) {
            int ix = ox * d->stride_w - d->pad_w + s * d->dil_w;
            if (ix < 0 || ix >= d->w) continue;
            const float *xp = xn + ((size_t)iy * d->w + ix) * C;
            double *ap = acc + ((size_t)r * d->s + s) * C;
#pragma omp simd
            for (int ch = 0; ch < C; ch++) ap[ch] += (double)xp[ch] * dyp[ch];
          }
        }
      }
    }
  }
  int par2 = rsc >= CPU_PAR_MIN / 8;
#pragma omp parallel for schedule(static) if (par2)
  for (size_t j = 0; j < rsc; j++) { /* j = t*C + ch -> dw[ch*rs + t] */
    double sum = 0.0;
    for (size_t q = 0; q < chunks; q++) sum += part[q * rsc + j];
    dw[(j % C) * rs + j / C] = (float)sum;
  }
}

/* ---- shared: db = column sums of dy [n*oh*ow, k] ---- */

static cnn_status conv_bias_grad(const cnn_conv_desc *d, const float *dy, float *db) {
  size_t rows = (size_t)d->n * d->oh * d->ow;
  double stack[256], *sum = stack;
  if (d->k > 256)
    CNN_TRY(cpu_alloc_aligned((size_t)d->k * sizeof *sum, "conv_bwd_filter", (void **)&sum));
  cnn_status st = cpu_colsum(rows, (size_t)d->k, (size_t)d->k, dy, NULL, NULL, 0, sum,
                             "conv_bwd_filter");
  if (st == CNN_OK)
    for (int j = 0; j < d->k; j++) db[j] = (float)sum[j];
  if (sum != stack) free(sum);
  return st;
}

/* ---- work split ---- */

/* run q of `parts` equal runs of `count` items: [count*q/parts, count*(q+1)/parts) */
static void run_of(size_t count, size_t q, size_t parts, size_t *lo, size_t *hi) {
  *lo = count * q / parts;
  *hi = count * (q + 1) / parts;
}

/* 1x1 engine: rows are handed out in this many runs per thread */
#define CPU_1X1_RUNS 4

/* dw = sum of the partials, in order */
static void reduce_partials(const float *part, size_t slot_floats, size_t parts, size_t count,
                            float *dw) {
  int par = count * parts >= CPU_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
  for (size_t i = 0; i < count; i++) {
    float sum = part[i];
    for (size_t q = 1; q < parts; q++) sum += part[q * slot_floats + i];
    dw[i] = sum;
  }
}

/* 1x1 engine with an activation epilogue: rows per GEMM, so that the output block
 * (this many bytes) is still in L2 when it is activated */
#define CPU_1X1_EPI_BYTES ((size_t)1 << 18)

/* ---- the ops ----
 * Tiles and row runs are handed out dynamically: forward and backward-data results
 * do not depend on who computes what, and backward-filter sums fixed runs. */

/* y = act(conv(x, w) + bias): bias is the GEMM's starting value and the
 * activation an epilogue on each tile just computed (LINEAR: none, conv_fwd) */
static cnn_status conv_fwd_impl(const cnn_conv_desc *d, const float *x, const float *w,
                                const float *bias, cnn_act act, float alpha, float *y,
                                void *ws, size_t ws_bytes, const char *op) {
  CNN_TRY(check_conv(d, op));
  CNN_TRY(cpu_check_act(act, op));
  CPU_NEED(x, op);
  CPU_NEED(w, op);
  CPU_NEED(y, op);
  conv_plan p;
  make_plan(d, &p);
  if (d->n == 0 || p.pix == 0) return CNN_OK;
  CNN_TRY(fit_ws(d, &p, ws, ws_bytes, op));
  const int K = d->k, kg = p.kg, G = p.groups, cg = p.cg;
  const float beta = bias ? 1.0f : 0.0f;
  const int epi = act != CNN_ACT_LINEAR;

  if (p.kind == CONV_DEPTHWISE) {
    float *wt = ws;
    dw_transpose(d, w, wt);
    dw_fwd(d, x, wt, bias, act, alpha, y);
    return CNN_OK;
  }
  if (p.kind == CONV_GEMM1X1) {
    const size_t runs = p.threads > 1 ? CPU_1X1_RUNS * (size_t)p.threads : 1;
    size_t blk = INT_MAX;
    if (epi) {
      blk = CPU_1X1_EPI_BYTES / ((size_t)K * sizeof(float));
      if (blk < 1) blk = 1;
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(p.threads) if (p.threads > 1)
    for (size_t q = 0; q < runs; q++) {
      size_t lo, hi;
      run_of(p.items, q, runs, &lo, &hi);
      for (size_t r0 = lo; r0 < hi; r0 += blk) {
        int m = (int)(hi - r0 < blk ? hi - r0 : blk);
        float *yc = y + r0 * K;
        if (bias) fill_bias((size_t)m, K, bias, yc);
        for (int g = 0; g < G; g++)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, kg, cg, 1.0f,
                      x + r0 * d->c + (size_t)g * cg, d->c, w + (size_t)g * kg * cg, cg, beta,
                      yc + (size_t)g * kg, K);
        if (epi) cpu_act_fwd_block(act, alpha, (size_t)m * K, yc, yc);
      }
    }
    return CNN_OK;
  }
#pragma omp parallel num_threads(p.threads) if (p.threads > 1)
  {
    float *col = (float *)ws + (size_t)cpu_thread_num() * p.col_slot;
#pragma omp for schedule(dynamic, 1)
    for (size_t tile = 0; tile < p.items; tile++) {
      int n0 = (int)tile * p.nb, nb = d->n - n0 < p.nb ? d->n - n0 : p.nb;
      int m = nb * (int)p.pix;
      float *yc = y + (size_t)n0 * p.pix * K;
      im2col_tile(d, &p, x, n0, nb, col);
      if (bias) fill_bias((size_t)m, K, bias, yc);
      for (int g = 0; g < G; g++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, kg, (int)p.rscg, 1.0f,
                    col + (size_t)g * p.rscg, (int)p.rsc, w + (size_t)g * kg * p.rscg,
                    (int)p.rscg, beta, yc + (size_t)g * kg, K);
      if (epi) cpu_act_fwd_block(act, alpha, (size_t)m * K, yc, yc);
    }
  }
  return CNN_OK;
}

cnn_status cpu_own_conv_fwd(void *ctx, const cnn_conv_desc *d, const float *x, const float *w,
                        const float *bias, float *y, void *ws, size_t ws_bytes) {
  return conv_fwd_impl(d, x, w, bias, CNN_ACT_LINEAR, 0.0f, y, ws, ws_bytes, "conv_fwd");
}

cnn_status cpu_own_conv_fwd_act(void *ctx, const cnn_conv_desc *d, const float *x, const float *w,
                            const float *bias, cnn_act act, float alpha, float *y, void *ws,
                            size_t ws_bytes) {
  return conv_fwd_impl(d, x, w, bias, act, alpha, y, ws, ws_bytes, "conv_fwd_act");
}

cnn_status cpu_own_conv_bwd_data(void *ctx, const cnn_conv_desc *d, const float *dy,
                             const float *w, float *dx, void *ws, size_t ws_bytes) {
  CNN_TRY(check_conv(d, "conv_bwd_data"));
  CPU_NEED(dy, "conv_bwd_data");
  CPU_NEED(w, "conv_bwd_data");
  CPU_NEED(dx, "conv_bwd_data");
  conv_plan p;
  make_plan(d, &p);
  if (d->n == 0 || p.pix == 0) return CNN_OK;
  CNN_TRY(fit_ws(d, &p, ws, ws_bytes, "conv_bwd_data"));
  const int K = d->k, kg = p.kg, G = p.groups, cg = p.cg;

  if (p.kind == CONV_DEPTHWISE) {
    float *wt = ws;
    dw_transpose(d, w, wt);
    dw_bwd_data(d, dy, wt, dx);
    return CNN_OK;
  }
  if (p.kind == CONV_GEMM1X1) { /* dx_g[M, cg] += dY_g[M, kg] W_g[kg, cg] */
    const size_t runs = p.threads > 1 ? CPU_1X1_RUNS * (size_t)p.threads : 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(p.threads) if (p.threads > 1)
    for (size_t q = 0; q < runs; q++) {
      size_t lo, hi;
      run_of(p.items, q, runs, &lo, &hi);
      for (size_t r0 = lo; r0 < hi; r0 += INT_MAX) {
        int m = (int)(hi - r0 < INT_MAX ? hi - r0 : INT_MAX);
        for (int g = 0; g < G; g++)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, cg, kg, 1.0f,
                      dy + r0 * K + (size_t)g * kg, K, w + (size_t)g * kg * cg, cg, 1.0f,
                      dx + r0 * d->c + (size_t)g * cg, d->c);
      }
    }
    return CNN_OK;
  }
#pragma omp parallel num_threads(p.threads) if (p.threads > 1)
  {
    float *col = (float *)ws + (size_t)cpu_thread_num() * p.col_slot;
#pragma omp for schedule(dynamic, 1)
    for (size_t tile = 0; tile < p.items; tile++) {
      int n0 = (int)tile * p.nb, nb = d->n - n0 < p.nb ? d->n - n0 : p.nb;
      int m = nb * (int)p.pix;
      const float *dyc = dy + (size_t)n0 * p.pix * K;
      for (int g = 0; g < G; g++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, (int)p.rscg, kg, 1.0f,
                    dyc + (size_t)g * kg, K, w + (size_t)g * kg * p.rscg, (int)p.rscg, 0.0f,
                    col + (size_t)g * p.rscg, (int)p.rsc);
      col2im_add(d, &p, col, n0, nb, dx);
    }
  }
  return CNN_OK;
}

cnn_status cpu_own_conv_bwd_filter(void *ctx, const cnn_conv_desc *d, const float *x,
                               const float *dy, float *dw, float *db, void *ws,
                               size_t ws_bytes) {
  CNN_TRY(check_conv(d, "conv_bwd_filter"));
  CPU_NEED(x, "conv_bwd_filter");
  CPU_NEED(dy, "conv_bwd_filter");
  CPU_NEED(dw, "conv_bwd_filter");
  conv_plan p;
  make_plan(d, &p);
  const int K = d->k, kg = p.kg, G = p.groups, cg = p.cg;
  const size_t dw_count = (size_t)K * p.rscg;
  if (d->n == 0 || p.pix == 0) { /* empty sums */
    memset(dw, 0, dw_count * sizeof *dw);
    if (db) memset(db, 0, (size_t)K * sizeof *db);
    return CNN_OK;
  }
  CNN_TRY(fit_ws(d, &p, ws, ws_bytes, "conv_bwd_filter"));

  if (p.kind == CONV_DEPTHWISE) {
    dw_bwd_filter(d, &p, x, dy, ws, dw);
  } else {
    /* after the threads' column slots: the dw partials (if several), then the db
     * partials; db is summed from each tile of dy while it is in cache */
    float *part = (float *)ws + (size_t)p.threads * p.col_slot;
    double *dbpart = (double *)(part + p.parts * p.dw_slot);
#pragma omp parallel num_threads(p.threads) if (p.threads > 1)
    {
      float *col = (float *)ws + (size_t)cpu_thread_num() * p.col_slot;
#pragma omp for schedule(dynamic, 1)
      for (size_t q = 0; q < p.parts; q++) {
        float *acc = p.parts > 1 ? part + q * p.dw_slot : dw;
        double *dbacc = dbpart + q * p.db_slot;
        size_t lo, hi;
        run_of(p.items, q, p.parts, &lo, &hi);
        float beta = 0.0f;
        if (db) memset(dbacc, 0, (size_t)K * sizeof *dbacc);
        if (p.kind == CONV_GEMM1X1) { /* dW_g[kg, cg] = dY_g^T X_g over rows [lo, hi) */
          for (size_t r0 = lo; r0 < hi; r0 += INT_MAX, beta = 1.0f) {
            int m = (int)(hi - r0 < INT_MAX ? hi - r0 : INT_MAX);
            for (int g = 0; g < G; g++)
              cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kg, cg, m, 1.0f,
                          dy + r0 * K + (size_t)g * kg, K, x + r0 * d->c + (size_t)g * cg,
                          d->c, beta, acc + (size_t)g * kg * cg, cg);
            if (db) cpu_colsum_add((size_t)m, (size_t)K, (size_t)K, dy + r0 * K, dbacc);
          }
        } else {
          for (size_t tile = lo; tile < hi; tile++, beta = 1.0f) {
            int n0 = (int)tile * p.nb, nb = d->n - n0 < p.nb ? d->n - n0 : p.nb;
            int m = nb * (int)p.pix;
            im2col_tile(d, &p, x, n0, nb, col);
            for (int g = 0; g < G; g++)
              cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kg, (int)p.rscg, m, 1.0f,
                          dy + (size_t)n0 * p.pix * K + (size_t)g * kg, K,
                          col + (size_t)g * p.rscg, (int)p.rsc, beta,
                          acc + (size_t)g * kg * p.rscg, (int)p.rscg);
            if (db)
              cpu_colsum_add((size_t)m, (size_t)K, (size_t)K, dy + (size_t)n0 * p.pix * K, dbacc);
          }
        }
        if (lo == hi) memset(acc, 0, dw_count * sizeof *acc);
      }
    }
    if (p.parts > 1) reduce_partials(part, p.dw_slot, p.parts, dw_count, dw);
    if (db)
      for (int j = 0; j < K; j++) {
        double sum = 0.0;
        for (size_t q = 0; q < p.parts; q++) sum += dbpart[q * p.db_slot + j];
        db[j] = (float)sum;
      }
    return CNN_OK;
  }
  if (db) CNN_TRY(conv_bias_grad(d, dy, db));
  return CNN_OK;
}
