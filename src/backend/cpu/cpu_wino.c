/* cpu: Winograd F(4x4, 3x3) convolution (Lavin & Gray, "Fast Algorithms for
 * Convolutional Neural Networks", 2015), NHWC / KRSC as cpu_conv.c.
 *
 * A 4x4 output tile of one (k, c) pair is  Y = A^T [(G g G^T) .* (B^T d B)] A  for
 * the 6x6 input tile d and the 3x3 filter g: 36 multiplies instead of 144. Summed
 * over c, the 36 element-wise products become 36 GEMMs per block of tiles:
 *
 *   U[xi][k][c] = (G g_kc G^T)[xi]            once per call (the filter transform)
 *   V[xi][t][c] = (B^T d_tc B)[xi]            per tile t of a block (input transform)
 *   M[xi][t][k] = sum_c V[xi][t][c] U[xi][k][c]   (36 GEMMs, T x K x C)
 *   y tile      = A^T M[.][t][k] A (+ bias, activation)   (output transform)
 *
 * Interpolation points 0, 1, -1, 2, -2, inf (Lavin's matrices, below). Points
 * +-1/2 shrink the largest output-transform coefficient (8 -> 2) but put 1/2, 1/4
 * and their products into B and G. The standard set keeps B^T and A^T small
 * integers (exact in fp32) and G as the integer rows of 24 G with one 1/576 scale
 * per 2-D filter transform, and its error is small: tests/test_cpu_wino.c derives
 * the bound (113.8 (24 + m) u times the tile window's mass) and measures at most
 * 7 u times that mass (m: GEMM length), so the better-conditioned points were not
 * needed and were not tried.
 *
 *   B^T = [4  0 -5  0 1 0]   G = [ 1/4    0    0 ]   A^T = [1 1  1 1  1 0]
 *         [0 -4 -4  1 1 0]       [-1/6 -1/6 -1/6]         [0 1 -1 2 -2 0]
 *         [0  4 -4 -1 1 0]       [-1/6  1/6 -1/6]         [0 1  1 4  4 0]
 *         [0 -2 -1  2 1 0]       [1/24 1/12  1/6]         [0 1 -1 8 -8 1]
 *         [0  2 -1 -2 1 0]       [1/24 -1/12 1/6]
 *         [0  4  0 -5 0 1]       [  0    0    1 ]
 *
 * Passes (tiles cover the output; input reads outside the image are 0):
 *  - forward: as above, tiles over (oh, ow); the epilogue adds bias and runs
 *    cpu_act_fwd_block on each output row segment of the tile.
 *  - backward-data: dx = conv(dy, w') with w'[c][r][s][k] = w[k][2-r][2-s][c] and
 *    padding 2 - pad: the same machinery, the flipped filter transform, tiles over
 *    (h, w), and an epilogue that adds into dx.
 *  - backward-filter: dM = A dY A^T per tile (6x6 from the 4x4 dy tile, 0 past
 *    oh/ow), V as forward, dU[xi][k][c] += dM[xi]^T V[xi] (36 GEMMs per block),
 *    dw = G^T dU G. Here the whole team works on one large block at a time (tiles
 *    transformed in parallel, then the GEMMs split by xi and column range): dU has
 *    one copy, each piece of it summed over the blocks in block order, and the
 *    GEMMs' reduction is long. Per-thread L2 blocks with a dU partial per run of
 *    blocks (as cpu_conv.c's filter grads) are kept for dU <= 4 MiB, where they
 *    measured faster; on resnet9's 256..512-channel layers they were up to 2x
 *    slower: every short-block GEMM re-reads and re-writes a dU of up to 36 MiB.
 *    db: fixed row chunks of dy summed in double, added in chunk order.
 *
 * Blocks of T tiles, two schedules:
 *  - U (36 K C floats) up to 4 MiB: per-thread blocks. A thread transforms a
 *    block's inputs into its own V slot, multiplies, and transforms the outputs
 *    while they are in L2 (T: V + M within 512 KiB, >= 32 tiles, and several
 *    blocks per thread). Blocks are handed out dynamically.
 *  - larger U: each short-block GEMM would re-read all of U (or re-write all of
 *    dU) from memory, so the team shares one large block at a time (V + M within
 *    16 MiB, <= 512 tiles): transforms split by runs of 4 tiles, GEMMs by (xi,
 *    column range). Measured on resnet9's 7x7 256->512 layer: 1.5x -> 2.2x faster
 *    than im2col forward.
 * A block's (or run's) results do not depend on the thread that ran it, so results
 * are bit-identical run to run for a given thread count (T, the schedule and the
 * runs depend on the team size).
 *
 * OpenBLAS is single-threaded here (cnn_backend_cpu_create), as in cpu_conv.c. */
#include <cblas.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/cpu/cpu_wino.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-loop-distribute-patterns", "no-trapping-math")
#endif

/* The transforms run on the AVX2 clone where the CPU has it (8 lanes instead of
 * SSE2's 4): measured 5-15 % less Winograd time (fashion 14x14 24->48 forward
 * 9.7 -> 8.6 ms, resnet9 28x28 64->128 59 -> 54 ms). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(CNN_WINO_NO_CLONES)
#define WINO_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define WINO_CLONES
#endif

/* the 1-D transforms are inlined into each clone, to run on its instruction set */
#if defined(__GNUC__)
#define WINO_INLINE __attribute__((always_inline))
#else
#define WINO_INLINE
#endif

/* channels per transform chunk (the SIMD loops run over these) */
#define CH 16
/* per-thread V + M block budget: half of the 1 MiB L2 */
#ifndef WINO_BLOCK_BYTES
#define WINO_BLOCK_BYTES ((size_t)1 << 19)
#endif
/* tiles per block: at least this many (a GEMM of fewer rows is all packing) ... */
#ifndef WINO_TMIN
#define WINO_TMIN 32
#endif
/* ... and at most this many */
#define WINO_TMAX 512
/* fewer GEMM multiply-adds than this: one thread */
#define WINO_PAR_MIN ((size_t)1 << 18)
/* U / dU (36 K C floats) over this size: the team shares one block at a time, of
 * V + M within WINO_SHARED_BYTES (see the top) */
#define WINO_SHARED_MIN ((size_t)4 << 20)
#define WINO_SHARED_BYTES ((size_t)16 << 20)
/* inference with kept filter transforms (cpu_wino_fwd_packed): Winograd also from
 * WINO_PACK_TILES tiles (batch 1 of a 28x28 layer: 49) while the transform stays this
 * small (it is read from cache). Measured at batch 1 against oneDNN with its weights
 * kept reordered (cnn bench models/resnet9.cfg --batch 1 --infer, 2 threads):
 * 28x28 64->128 (49 tiles) 0.85-0.93 vs 1.41 ms; 14x14 128->128 (16 tiles) 0.72-0.77
 * vs 0.68-0.72 and 128->256 1.47-1.50 vs 1.31 (16-row GEMMs are mostly packing). */
#define WINO_PACK_CACHED ((size_t)6 << 20)
#define WINO_PACK_TILES 32
/* backward-filter: fixed row chunks of the bias-grad sum */
#define WINO_DB_CHUNKS 32

/* geometry of one pass as a "core" conv: input [n][ih][iw][cin], padding ph/pw,
 * 3x3 filter, output [n][oh][ow][cout], tiles over the output */
typedef struct wino_geom {
  int n, ih, iw, cin;
  int oh, ow, cout;
  int ph, pw;
  int th, tw;   /* tiles per image: ceil(oh / 4) x ceil(ow / 4) */
  size_t tiles; /* n * th * tw */
} wino_geom;

typedef struct wino_plan {
  wino_geom g;
  int threads;
  int T;          /* tiles per block */
  size_t blocks;
  size_t u_slot;  /* floats of a transformed filter set (36 * cin * cout) */
  size_t v_slot;  /* floats of one thread's V block (36 * T * cin) */
  size_t m_slot;  /* floats of one thread's M block (36 * T * cout) */
  int shared;       /* 1: the team works on one block at a time (large U / dU) */
  size_t parts;     /* bwd-filter, per-thread blocks: dU partials */
  size_t csplit;    /* shared blocks: column ranges per GEMM */
  size_t db_rows;   /* bwd-filter: rows of dy (n oh ow) */
  size_t db_chunks; /* bwd-filter: fixed row chunks of the db sum */
  size_t db_slot;   /* bwd-filter: doubles of one db partial */
  size_t ws;      /* bytes */
} wino_plan;

static size_t slot(size_t floats) { return (floats + 15) / 16 * 16; }

int cpu_wino_takes(const cnn_conv_desc *d) {
  if (!d) return 0;
  if (d->n < 1 || d->h < 1 || d->w < 1 || d->c < 1 || d->k < 1) return 0;
  if (d->groups != 1 || d->r != 3 || d->s != 3) return 0;
  if (d->stride_h != 1 || d->stride_w != 1 || d->dil_h != 1 || d->dil_w != 1) return 0;
  if (d->pad_h < 0 || d->pad_h > 2 || d->pad_w < 0 || d->pad_w > 2) return 0;
  if (d->oh < 1 || d->ow < 1) return 0;
  if (d->oh != d->h + 2 * d->pad_h - 2 || d->ow != d->w + 2 * d->pad_w - 2) return 0;
  return 1;
}

static void geom(const cnn_conv_desc *d, cnn_conv_dir dir, wino_geom *g) {
  memset(g, 0, sizeof *g);
  g->n = d->n;
  if (dir == CNN_CONV_BWD_DATA) { /* dx = conv(dy, w'), padding 2 - pad */
    g->ih = d->oh, g->iw = d->ow, g->cin = d->k;
    g->oh = d->h, g->ow = d->w, g->cout = d->c;
    g->ph = 2 - d->pad_h, g->pw = 2 - d->pad_w;
  } else { /* forward; backward-filter tiles the forward's output */
    g->ih = d->h, g->iw = d->w, g->cin = d->c;
    g->oh = d->oh, g->ow = d->ow, g->cout = d->k;
    g->ph = d->pad_h, g->pw = d->pad_w;
  }
  g->th = (g->oh + 3) / 4;
  g->tw = (g->ow + 3) / 4;
  g->tiles = (size_t)g->n * g->th * g->tw;
}

/* T: the block's V and M within WINO_BLOCK_BYTES, clamped to [WINO_TMIN, WINO_TMAX],
 * and no more than a quarter of a thread's fair share when that is still >= TMIN
 * (several blocks per thread, so a thread slowed by another process hands work over) */
static void plan_t(const cnn_conv_desc *d, cnn_conv_dir dir, int threads, wino_plan *p) {
  memset(p, 0, sizeof *p);
  geom(d, dir, &p->g);
  const wino_geom *g = &p->g;
  const int bf = dir == CNN_CONV_BWD_FILTER;
  size_t per_tile = 36 * (size_t)(g->cin + g->cout) * sizeof(float);
  size_t macs = 36 * g->tiles * (size_t)g->cin * g->cout;
  p->threads = macs >= WINO_PAR_MIN && threads > 1 ? threads : 1;
  p->u_slot = slot(36 * (size_t)g->cin * g->cout);
  /* also when per-thread blocks of WINO_TMIN tiles would leave threads idle (batch 1) */
  p->shared = p->threads > 1 && (p->u_slot * sizeof(float) > WINO_SHARED_MIN ||
                                 g->tiles < (size_t)p->threads * WINO_TMIN);
  size_t T;
  if (p->shared) {
    /* large U / dU: the team shares one large block at a time (see the top) */
    T = WINO_SHARED_BYTES / per_tile;
    if (T < WINO_TMIN) T = WINO_TMIN;
    if (T > WINO_TMAX) T = WINO_TMAX;
    /* column ranges per GEMM (forward: of cout, backward-filter: of cin): enough
     * items for the team, ranges of >= 64 columns */
    int cols = bf ? g->cin : g->cout;
    size_t cs = (4 * (size_t)p->threads + 35) / 36, cmax = ((size_t)cols + 63) / 64;
    p->csplit = cs < cmax ? cs : cmax;
    if (p->csplit < 1) p->csplit = 1;
  } else {
    /* per-thread blocks whose V and M stay in L2; several blocks per thread */
    T = WINO_BLOCK_BYTES / per_tile;
    if (T < WINO_TMIN) T = WINO_TMIN;
    if (T > WINO_TMAX) T = WINO_TMAX;
    size_t fair = (g->tiles + 4 * (size_t)p->threads - 1) / (4 * (size_t)p->threads);
    if (T > fair) T = fair < WINO_TMIN ? WINO_TMIN : fair;
  }
  if (T > g->tiles) T = g->tiles;
  if (T < 1) T = 1;
  p->T = (int)T;
  p->blocks = (g->tiles + T - 1) / T;
  if (!p->shared && (size_t)p->threads > p->blocks) p->threads = (int)p->blocks;
  p->v_slot = slot(36 * T * (size_t)g->cin);
  p->m_slot = slot(36 * T * (size_t)g->cout);
  size_t slots = p->shared ? 1 : (size_t)p->threads;
  size_t floats = slots * (p->v_slot + p->m_slot) + p->u_slot;
  if (bf) {
    /* per-thread blocks: each run of blocks summed into its own dU partial, the
     * partials added in order (as cpu_conv.c's filter grads) */
    if (!p->shared) {
      size_t parts = 1;
      if (p->threads > 1) {
        parts = 2 * (size_t)p->threads;
        if (parts > p->blocks) parts = p->blocks;
        if (parts < (size_t)p->threads) parts = (size_t)p->threads;
      }
      p->parts = parts;
      floats += (parts - 1) * p->u_slot;
    }
    p->db_rows = (size_t)g->n * g->oh * g->ow;
    p->db_chunks = p->db_rows < WINO_DB_CHUNKS ? p->db_rows : WINO_DB_CHUNKS;
    p->db_slot = ((size_t)d->k + 7) / 8 * 8;
    p->ws = floats * sizeof(float) + p->db_chunks * p->db_slot * sizeof(double);
  } else {
    p->ws = floats * sizeof(float);
  }
}

size_t cpu_wino_workspace(const cnn_conv_desc *d, cnn_conv_dir dir, int threads) {
  if (!cpu_wino_takes(d)) return 0;
  wino_plan p;
  plan_t(d, dir, threads < 1 ? 1 : threads, &p);
  return p.ws;
}

/* the plan for cpu_max_threads(), or the largest team whose scratch fits ws */
static cnn_status plan_fit(const cnn_conv_desc *d, cnn_conv_dir dir, wino_plan *p, void *ws,
                           size_t ws_bytes, const char *op) {
  if (!cpu_wino_takes(d)) {
    if (!d) return cnn_error(CNN_ERR_ARG, "cpu %s: d is NULL", op);
    return cnn_error(CNN_ERR_ARG,
                     "cpu %s: Winograd F(4x4,3x3) does not take x %dx%dx%dx%d w %dx%dx%d y %dx%d "
                     "stride %dx%d pad %dx%d dilation %dx%d groups %d (needs 3x3, stride 1, "
                     "dilation 1, groups 1, pad 0..2, oh = h + 2 pad - 2 >= 1, n >= 1)",
                     op, d->n, d->h, d->w, d->c, d->k, d->r, d->s, d->oh, d->ow, d->stride_h,
                     d->stride_w, d->pad_h, d->pad_w, d->dil_h, d->dil_w, d->groups);
  }
  plan_t(d, dir, cpu_max_threads(), p);
  if (ws && ws_bytes >= p->ws) return CNN_OK;
  size_t need = p->ws;
  if (ws)
    for (int t = p->threads - 1; t >= 1; t--) {
      wino_plan q;
      plan_t(d, dir, t, &q);
      if (q.ws <= ws_bytes) {
        *p = q;
        return CNN_OK;
      }
    }
  return cnn_error(CNN_ERR_ARG, "cpu %s: workspace of %zu bytes%s, this shape needs %zu", op,
                   ws_bytes, ws ? "" : " (NULL)", need);
}

/* ---- the 1-D transforms on CH-lane vectors: in[i*is + l] -> out[i*os + l] ---- */

/* B^T: 6 -> 6 */
static inline WINO_INLINE void bt6(const float *restrict in, size_t is, float *restrict out, size_t os) {
#pragma omp simd
  for (int l = 0; l < CH; l++) {
    float d0 = in[l], d1 = in[is + l], d2 = in[2 * is + l], d3 = in[3 * is + l];
    float d4 = in[4 * is + l], d5 = in[5 * is + l];
    out[l] = 4.0f * d0 - 5.0f * d2 + d4;
    out[os + l] = -4.0f * (d1 + d2) + (d3 + d4);
    out[2 * os + l] = 4.0f * (d1 - d2) + (d4 - d3);
    out[3 * os + l] = 2.0f * (d3 - d1) + (d4 - d2);
    out[4 * os + l] = 2.0f * (d1 - d3) + (d4 - d2);
    out[5 * os + l] = 4.0f * d1 - 5.0f * d3 + d5;
  }
}

/* A^T: 6 -> 4 */
static inline WINO_INLINE void at6(const float *restrict in, size_t is, float *restrict out, size_t os) {
#pragma omp simd
  for (int l = 0; l < CH; l++) {
    float m0 = in[l], m1 = in[is + l], m2 = in[2 * is + l], m3 = in[3 * is + l];
    float m4 = in[4 * is + l], m5 = in[5 * is + l];
    float p12 = m1 + m2, d12 = m1 - m2, p34 = m3 + m4, d34 = m3 - m4;
    out[l] = m0 + p12 + p34;
    out[os + l] = d12 + 2.0f * d34;
    out[2 * os + l] = p12 + 4.0f * p34;
    out[3 * os + l] = d12 + 8.0f * d34 + m5;
  }
}

/* A: 4 -> 6 (backward-filter's dY transform) */
static inline WINO_INLINE void a4(const float *restrict in, size_t is, float *restrict out, size_t os) {
#pragma omp simd
  for (int l = 0; l < CH; l++) {
    float y0 = in[l], y1 = in[is + l], y2 = in[2 * is + l], y3 = in[3 * is + l];
    float p02 = y0 + y2, p13 = y1 + y3, q02 = y0 + 4.0f * y2, q13 = 2.0f * y1 + 8.0f * y3;
    out[l] = y0;
    out[os + l] = p02 + p13;
    out[2 * os + l] = p02 - p13;
    out[3 * os + l] = q02 + q13;
    out[4 * os + l] = q02 - q13;
    out[5 * os + l] = y3;
  }
}

/* 24 G: 3 -> 6 (the filter transform, scaled to integers) */
static inline WINO_INLINE void g3(const float *restrict in, size_t is, float *restrict out, size_t os) {
#pragma omp simd
  for (int l = 0; l < CH; l++) {
    float g0 = in[l], g1 = in[is + l], g2 = in[2 * is + l];
    float p02 = g0 + g2;
    out[l] = 6.0f * g0;
    out[os + l] = -4.0f * (p02 + g1);
    out[2 * os + l] = -4.0f * (p02 - g1);
    out[3 * os + l] = (g0 + 4.0f * g2) + 2.0f * g1;
    out[4 * os + l] = (g0 + 4.0f * g2) - 2.0f * g1;
    out[5 * os + l] = 24.0f * g2;
  }
}

/* 24 G^T: 6 -> 3 (backward-filter's dU -> dw) */
static inline WINO_INLINE void gt6(const float *restrict in, size_t is, float *restrict out, size_t os) {
#pragma omp simd
  for (int l = 0; l < CH; l++) {
    float v0 = in[l], v1 = in[is + l], v2 = in[2 * is + l], v3 = in[3 * is + l];
    float v4 = in[4 * is + l], v5 = in[5 * is + l];
    float p12 = v1 + v2, p34 = v3 + v4;
    out[l] = 6.0f * v0 - 4.0f * p12 + p34;
    out[os + l] = 4.0f * (v2 - v1) + 2.0f * (v3 - v4);
    out[2 * os + l] = 4.0f * (p34 - p12) + 24.0f * v5;
  }
}

/* ---- filter transforms ---- */

/* One filter's transform on CH lanes: t[i][s] = sum_r 24G[i][r] g[r][s], u[i][j] =
 * sum_s t[i][s] 24G[j][s], stored / 576 into dst[xi * xs + l] for lanes l < n */
static inline WINO_INLINE void filter_tile(const float *restrict g, float *restrict t,
                                           float *restrict u, float *restrict dst, size_t xs,
                                           int n) {
  const float scale = 1.0f / 576.0f;
  for (int s = 0; s < 3; s++) g3(g + s * CH, 3 * CH, t + s * CH, 3 * CH);
  for (int i = 0; i < 6; i++) g3(t + i * 3 * CH, CH, u + i * 6 * CH, CH);
  for (int xi = 0; xi < 36; xi++) {
    float *d = dst + xi * xs;
    const float *src = u + xi * CH;
#pragma omp simd
    for (int l = 0; l < n; l++) d[l] = src[l] * scale;
  }
}

/* U[xi][k][c] = (G g G^T)[xi] of g = w[k][.][.][c] (forward), vectorised over a
 * chunk of c; run inside a parallel region: items are (k block, c chunk) pairs */
#define WINO_FT_KB 16
WINO_CLONES
static void filter_transform(int K, int C, const float *restrict w, float *restrict U) {
  const size_t KC = (size_t)K * C;
  const int chunks = (C + CH - 1) / CH, kblocks = (K + WINO_FT_KB - 1) / WINO_FT_KB;
  float g[9 * CH], t[18 * CH], u[36 * CH];
  memset(g, 0, sizeof g);
#pragma omp for schedule(static)
  for (int item = 0; item < chunks * kblocks; item++) {
    int c0 = (item % chunks) * CH, kb = item / chunks;
    int cc = C - c0 < CH ? C - c0 : CH;
    int k1 = (kb + 1) * WINO_FT_KB < K ? (kb + 1) * WINO_FT_KB : K;
    for (int k = kb * WINO_FT_KB; k < k1; k++) {
      for (int rs = 0; rs < 9; rs++) {
        const float *src = w + ((size_t)k * 9 + rs) * C + c0;
        for (int l = 0; l < cc; l++) g[rs * CH + l] = src[l];
      }
      filter_tile(g, t, u, U + (size_t)k * C + c0, KC, cc);
    }
  }
}

/* the backward-data one: U[xi][c][k] of g[r][s] = w[k][2-r][2-s][c], vectorised over
 * a chunk of k (so U's rows are written contiguously; w is read with stride 9 C,
 * each line used for 16 consecutive c); items are k chunks */
WINO_CLONES
static void filter_transform_flip(int K, int C, const float *restrict w, float *restrict U) {
  const size_t KC = (size_t)K * C;
  const int chunks = (K + CH - 1) / CH;
  float g[9 * CH], t[18 * CH], u[36 * CH];
  memset(g, 0, sizeof g);
#pragma omp for schedule(static)
  for (int item = 0; item < chunks; item++) {
    int k0 = item * CH, kc = K - k0 < CH ? K - k0 : CH;
    for (int c = 0; c < C; c++) {
      for (int rs = 0; rs < 9; rs++) {
        const float *src = w + (size_t)k0 * 9 * C + (size_t)(8 - rs) * C + c;
        for (int l = 0; l < kc; l++) g[rs * CH + l] = src[(size_t)l * 9 * C];
      }
      filter_tile(g, t, u, U + (size_t)c * K + k0, KC, kc);
    }
  }
}

/* ---- input transform: V[xi][t][c] for tiles [t0, t0 + nt) ---- */

WINO_CLONES
static void input_transform(const wino_geom *g, const float *restrict x, size_t t0, int nt,
                            int T, float *restrict V) {
  const int C = g->cin;
  const size_t xs = (size_t)T * C; /* V's xi stride */
  float d[36 * CH], tmp[36 * CH], o[36 * CH];
  for (size_t t = t0; t < t0 + (size_t)nt; t++) {
    const size_t per = (size_t)g->th * g->tw;
    int n = (int)(t / per), rem = (int)(t % per);
    int iy0 = (rem / g->tw) * 4 - g->ph, ix0 = (rem % g->tw) * 4 - g->pw;
    const float *xn = x + (size_t)n * g->ih * g->iw * C;
    float *vt = V + (t - t0) * C;
    for (int c0 = 0; c0 < C; c0 += CH) {
      int cc = C - c0 < CH ? C - c0 : CH;
      for (int i = 0; i < 6; i++) {
        int iy = iy0 + i;
        for (int j = 0; j < 6; j++) {
          int ix = ix0 + j;
          float *dp = d + (i * 6 + j) * CH;
          if (iy < 0 || iy >= g->ih || ix < 0 || ix >= g->iw) {
#pragma omp simd
            for (int l = 0; l < CH; l++) dp[l] = 0.0f;
          } else if (cc == CH) {
            const float *src = xn + ((size_t)iy * g->iw + ix) * C + c0;
#pragma omp simd
            for (int l = 0; l < CH; l++) dp[l] = src[l];
          } else {
            const float *src = xn + ((size_t)iy * g->iw + ix) * C + c0;
            for (int l = 0; l < CH; l++) dp[l] = l < cc ? src[l] : 0.0f;
          }
        }
      }
      /* tmp[i][j] = (d B)[i][j]; o[i][j] = (B^T tmp)[i][j] */
      for (int i = 0; i < 6; i++) bt6(d + i * 6 * CH, CH, tmp + i * 6 * CH, CH);
      if (cc == CH) {
        for (int j = 0; j < 6; j++) bt6(tmp + j * CH, 6 * CH, vt + j * xs + c0, 6 * xs);
      } else {
        for (int j = 0; j < 6; j++) bt6(tmp + j * CH, 6 * CH, o + j * CH, 6 * CH);
        for (int xi = 0; xi < 36; xi++)
          for (int l = 0; l < cc; l++) vt[xi * xs + c0 + l] = o[xi * CH + l];
      }
    }
  }
}

/* ---- output transform: y tile = A^T M A (+ bias), written (mode 0, then the
 * activation) or added (mode 1) for tiles [t0, t0 + nt) ---- */

WINO_CLONES
static void output_transform(const wino_geom *g, const float *restrict M, size_t t0, int nt,
                             int T, const float *restrict bias, cnn_act act, float alpha,
                             int add, float *restrict y) {
  const int K = g->cout;
  const size_t ms = (size_t)T * K;
  float m[36 * CH], tmp[24 * CH], o[16 * CH], b[CH];
  memset(m, 0, sizeof m);
  for (size_t t = t0; t < t0 + (size_t)nt; t++) {
    const size_t per = (size_t)g->th * g->tw;
    int n = (int)(t / per), rem = (int)(t % per);
    int oy0 = (rem / g->tw) * 4, ox0 = (rem % g->tw) * 4;
    int ni = g->oh - oy0 < 4 ? g->oh - oy0 : 4, nj = g->ow - ox0 < 4 ? g->ow - ox0 : 4;
    const float *mt = M + (t - t0) * K;
    float *yt = y + (((size_t)n * g->oh + oy0) * g->ow + ox0) * K;
    for (int k0 = 0; k0 < K; k0 += CH) {
      int kc = K - k0 < CH ? K - k0 : CH;
      for (int xi = 0; xi < 36; xi++) {
        const float *src = mt + xi * ms + k0;
        float *dst = m + xi * CH;
        if (kc == CH) {
#pragma omp simd
          for (int l = 0; l < CH; l++) dst[l] = src[l];
        } else {
          for (int l = 0; l < kc; l++) dst[l] = src[l];
        }
      }
      /* tmp[i][j] = (m A)[i][j] (6 x 4); o[i][j] = (A^T tmp)[i][j] (4 x 4) */
      for (int i = 0; i < 6; i++) at6(m + i * 6 * CH, CH, tmp + i * 4 * CH, CH);
      for (int j = 0; j < 4; j++) at6(tmp + j * CH, 4 * CH, o + j * CH, 4 * CH);
      for (int l = 0; l < CH; l++) b[l] = bias && l < kc ? bias[k0 + l] : 0.0f;
      for (int i = 0; i < ni; i++)
        for (int j = 0; j < nj; j++) {
          float *dst = yt + ((size_t)i * g->ow + j) * K + k0;
          const float *src = o + (i * 4 + j) * CH;
          if (add) {
#pragma omp simd
            for (int l = 0; l < kc; l++) dst[l] += src[l];
          } else {
#pragma omp simd
            for (int l = 0; l < kc; l++) dst[l] = src[l] + b[l];
          }
        }
    }
    if (!add && act != CNN_ACT_LINEAR)
      for (int i = 0; i < ni; i++) {
        float *row = yt + (size_t)i * g->ow * K;
        cpu_act_fwd_block(act, alpha, (size_t)nj * K, row, row);
      }
  }
}

/* ---- backward-filter's dY transform: dM[xi][t][k] = (A dY A^T)[xi] ---- */

WINO_CLONES
static void dy_transform(const wino_geom *g, const float *restrict dy, size_t t0, int nt, int T,
                         float *restrict M) {
  const int K = g->cout;
  const size_t ms = (size_t)T * K;
  float e[16 * CH], tmp[24 * CH], o[36 * CH];
  for (size_t t = t0; t < t0 + (size_t)nt; t++) {
    const size_t per = (size_t)g->th * g->tw;
    int n = (int)(t / per), rem = (int)(t % per);
    int oy0 = (rem / g->tw) * 4, ox0 = (rem % g->tw) * 4;
    int ni = g->oh - oy0 < 4 ? g->oh - oy0 : 4, nj = g->ow - ox0 < 4 ? g->ow - ox0 : 4;
    const float *yt = dy + (((size_t)n * g->oh + oy0) * g->ow + ox0) * K;
    float *mt = M + (t - t0) * K;
    for (int k0 = 0; k0 < K; k0 += CH) {
      int kc = K - k0 < CH ? K - k0 : CH;
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
          float *dst = e + (i * 4 + j) * CH;
          if (i >= ni || j >= nj) {
#pragma omp simd
            for (int l = 0; l < CH; l++) dst[l] = 0.0f;
            continue;
          }
          const float *src = yt + ((size_t)i * g->ow + j) * K + k0;
          if (kc == CH) {
#pragma omp simd
            for (int l = 0; l < CH; l++) dst[l] = src[l];
          } else {
            for (int l = 0; l < CH; l++) dst[l] = l < kc ? src[l] : 0.0f;
          }
        }
      /* tmp[i][j] = (e A^T)[i][j] (4 x 6); o[i][j] = (A tmp)[i][j] (6 x 6) */
      for (int i = 0; i < 4; i++) a4(e + i * 4 * CH, CH, tmp + i * 6 * CH, CH);
      for (int j = 0; j < 6; j++) a4(tmp + j * CH, 6 * CH, o + j * CH, 6 * CH);
      for (int xi = 0; xi < 36; xi++) {
        float *dst = mt + xi * ms + k0;
        const float *src = o + xi * CH;
        if (kc == CH) {
#pragma omp simd
          for (int l = 0; l < CH; l++) dst[l] = src[l];
        } else {
          for (int l = 0; l < kc; l++) dst[l] = src[l];
        }
      }
    }
  }
}

/* dw[k][r][s][c] = (G^T dU G)[r][s], dU the sum of `parts` partials (u_slot apart)
 * in order; run inside a parallel region */
WINO_CLONES
static void filter_grad_transform(int K, int C, const float *restrict dU, size_t u_slot,
                                  size_t parts, float *restrict dw) {
  const size_t KC = (size_t)K * C;
  const int chunks = (C + CH - 1) / CH;
  const float scale = 1.0f / 576.0f;
  float u[36 * CH], t[18 * CH], o[9 * CH];
  memset(u, 0, sizeof u);
#pragma omp for schedule(static)
  for (int item = 0; item < chunks * K; item++) {
    int c0 = (item % chunks) * CH, k = item / chunks;
    int cc = C - c0 < CH ? C - c0 : CH;
    for (int xi = 0; xi < 36; xi++) {
      const float *src = dU + xi * KC + (size_t)k * C + c0;
      float *dst = u + xi * CH;
      for (int l = 0; l < cc; l++) dst[l] = src[l];
      for (size_t q = 1; q < parts; q++) /* partials in order */
        for (int l = 0; l < cc; l++) dst[l] += src[q * u_slot + l];
    }
    /* t[r][j] = sum_i 24G^T[r][i] u[i][j] (3 x 6); o[r][s] = sum_j t[r][j] 24G[j][s] */
    for (int j = 0; j < 6; j++) gt6(u + j * CH, 6 * CH, t + j * CH, 6 * CH);
    for (int r = 0; r < 3; r++) gt6(t + r * 6 * CH, CH, o + r * 3 * CH, CH);
    for (int rs = 0; rs < 9; rs++) {
      float *dst = dw + ((size_t)k * 9 + rs) * C + c0;
      for (int l = 0; l < cc; l++) dst[l] = o[rs * CH + l] * scale;
    }
  }
}

/* ---- the passes ---- */

/* forward (dir FWD) and backward-data (dir BWD_DATA, add = 1); Upre: the forward's
 * filters already transformed (cpu_wino_pack), else w is transformed into ws */
static void run_conv(const wino_plan *p, int flip, const float *in, const float *w,
                     const float *Upre, const float *bias, cnn_act act, float alpha, int add,
                     float *out, void *ws) {
  const wino_geom *g = &p->g;
  float *U = Upre ? (float *)Upre : ws;
  float *slots = Upre ? (float *)ws : U + p->u_slot;
  const int cin = g->cin, cout = g->cout, T = p->T;
  /* filter dims as stored: forward w is [cout][3][3][cin], backward-data [cin][3][3][cout] */
  const int K = flip ? cin : cout, C = flip ? cout : cin;
#pragma omp parallel num_threads(p->threads) if (p->threads > 1)
  {
    if (flip)
      filter_transform_flip(K, C, w, U);
    else if (!Upre)
      filter_transform(K, C, w, U);
    if (p->shared) {
      /* one block at a time: its tiles transformed by runs of 4, the GEMMs split
       * by (xi, range of outputs), the output transform by runs of 4 tiles */
      float *V = slots, *M = V + p->v_slot;
      const int cs = (int)p->csplit, cw = (cout + cs - 1) / cs, items = 36 * cs;
      for (size_t b = 0; b < p->blocks; b++) {
        size_t t0 = b * (size_t)T;
        int nt = g->tiles - t0 < (size_t)T ? (int)(g->tiles - t0) : T, runs = (nt + 3) / 4;
#pragma omp for schedule(dynamic, 1)
        for (int q = 0; q < runs; q++) {
          int a = 4 * q, na = nt - a < 4 ? nt - a : 4;
          input_transform(g, in, t0 + a, na, T, V + (size_t)a * cin);
        }
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < items; it++) {
          int xi = it / cs, k0 = (it % cs) * cw, k1 = k0 + cw < cout ? k0 + cw : cout;
          if (k1 <= k0) continue;
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nt, k1 - k0, cin, 1.0f,
                      V + (size_t)xi * T * cin, cin, U + ((size_t)xi * cout + k0) * cin, cin,
                      0.0f, M + (size_t)xi * T * cout + k0, cout);
        }
#pragma omp for schedule(dynamic, 1)
        for (int q = 0; q < runs; q++) {
          int a = 4 * q, na = nt - a < 4 ? nt - a : 4;
          output_transform(g, M + (size_t)a * cout, t0 + a, na, T, bias, act, alpha, add, out);
        }
      }
    } else {
      float *V = slots + (size_t)cpu_thread_num() * (p->v_slot + p->m_slot);
      float *M = V + p->v_slot;
#pragma omp for schedule(dynamic, 1)
      for (size_t b = 0; b < p->blocks; b++) {
        size_t t0 = b * (size_t)T;
        int nt = g->tiles - t0 < (size_t)T ? (int)(g->tiles - t0) : T;
        input_transform(g, in, t0, nt, T, V);
        for (int xi = 0; xi < 36; xi++)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nt, cout, cin, 1.0f,
                      V + (size_t)xi * T * cin, cin, U + (size_t)xi * cout * cin, cin, 0.0f,
                      M + (size_t)xi * T * cout, cout);
        output_transform(g, M, t0, nt, T, bias, act, alpha, add, out);
      }
    }
  }
}

cnn_status cpu_wino_fwd(const cnn_conv_desc *d, const float *x, const float *w, const float *bias,
                        cnn_act act, float alpha, float *y, void *ws, size_t ws_bytes) {
  const char *op = "wino_fwd";
  CNN_TRY(cpu_check_act(act, op));
  CPU_NEED(x, op);
  CPU_NEED(w, op);
  CPU_NEED(y, op);
  wino_plan p;
  CNN_TRY(plan_fit(d, CNN_CONV_FWD, &p, ws, ws_bytes, op));
  run_conv(&p, 0, x, w, NULL, bias, act, alpha, 0, y, ws);
  return CNN_OK;
}

size_t cpu_wino_pack_bytes(const cnn_conv_desc *d) {
  return cpu_wino_takes(d) ? slot(36 * (size_t)d->c * d->k) * sizeof(float) : 0;
}

void cpu_wino_pack(const cnn_conv_desc *d, const float *w, float *U) {
  int threads = cpu_max_threads();
#pragma omp parallel num_threads(threads) if (threads > 1 && (size_t)d->k * d->c >= 4096)
  filter_transform(d->k, d->c, w, U);
}

size_t cpu_wino_packed_workspace(const cnn_conv_desc *d, int threads) {
  if (!cpu_wino_takes(d)) return 0;
  wino_plan p;
  plan_t(d, CNN_CONV_FWD, threads < 1 ? 1 : threads, &p);
  return p.ws - p.u_slot * sizeof(float);
}

cnn_status cpu_wino_fwd_packed(const cnn_conv_desc *d, const float *x, const float *U,
                               const float *bias, cnn_act act, float alpha, float *y, void *ws,
                               size_t ws_bytes) {
  const char *op = "wino_fwd_packed";
  CNN_TRY(cpu_check_act(act, op));
  CPU_NEED(x, op);
  CPU_NEED(U, op);
  CPU_NEED(y, op);
  wino_plan p;
  /* the plan without its U slot: fit against ws plus that much */
  size_t u_bytes = cpu_wino_pack_bytes(d);
  CNN_TRY(plan_fit(d, CNN_CONV_FWD, &p, ws, ws ? ws_bytes + u_bytes : 0, op));
  run_conv(&p, 0, x, NULL, U, bias, act, alpha, 0, y, ws);
  return CNN_OK;
}

cnn_status cpu_wino_bwd_data(const cnn_conv_desc *d, const float *dy, const float *w, float *dx,
                             void *ws, size_t ws_bytes) {
  const char *op = "wino_bwd_data";
  CPU_NEED(dy, op);
  CPU_NEED(w, op);
  CPU_NEED(dx, op);
  wino_plan p;
  CNN_TRY(plan_fit(d, CNN_CONV_BWD_DATA, &p, ws, ws_bytes, op));
  run_conv(&p, 1, dy, w, NULL, NULL, CNN_ACT_LINEAR, 0.0f, 1, dx, ws);
  return CNN_OK;
}

/* db = column sums of dy [rows, K] in fixed row chunks (double partials, added in
 * chunk order by db_finish); run inside a parallel region */
static void db_chunks(const wino_plan *p, const float *dy, double *dbpart) {
  const int K = p->g.cout;
#pragma omp for schedule(static)
  for (size_t q = 0; q < p->db_chunks; q++) {
    size_t r0 = p->db_rows * q / p->db_chunks, r1 = p->db_rows * (q + 1) / p->db_chunks;
    double *acc = dbpart + q * p->db_slot;
    memset(acc, 0, (size_t)K * sizeof *acc);
    cpu_colsum_add(r1 - r0, (size_t)K, (size_t)K, dy + r0 * K, acc);
  }
}

static void db_finish(const wino_plan *p, const double *dbpart, float *db) {
  for (int j = 0; j < p->g.cout; j++) {
    double sum = 0.0;
    for (size_t q = 0; q < p->db_chunks; q++) sum += dbpart[q * p->db_slot + j];
    db[j] = (float)sum;
  }
}

/* backward-filter with per-thread blocks: runs of blocks into dU partials */
static cnn_status bwd_filter_parts(const wino_plan *p, const float *x, const float *dy, float *dw,
                                   float *db, void *ws) {
  const wino_geom *g = &p->g;
  const int C = g->cin, K = g->cout, T = p->T;
  float *part = ws;
  float *slots = part + p->parts * p->u_slot;
  double *dbpart = (double *)(slots + (size_t)p->threads * (p->v_slot + p->m_slot));
#pragma omp parallel num_threads(p->threads) if (p->threads > 1)
  {
    if (db) db_chunks(p, dy, dbpart);
    float *V = slots + (size_t)cpu_thread_num() * (p->v_slot + p->m_slot);
    float *M = V + p->v_slot;
#pragma omp for schedule(dynamic, 1)
    for (size_t q = 0; q < p->parts; q++) {
      float *dU = part + q * p->u_slot;
      size_t lo = p->blocks * q / p->parts, hi = p->blocks * (q + 1) / p->parts;
      for (size_t b = lo; b < hi; b++) {
        size_t t0 = b * (size_t)T;
        int nt = g->tiles - t0 < (size_t)T ? (int)(g->tiles - t0) : T;
        input_transform(g, x, t0, nt, T, V);
        dy_transform(g, dy, t0, nt, T, M);
        for (int xi = 0; xi < 36; xi++)
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, C, nt, 1.0f,
                      M + (size_t)xi * T * K, K, V + (size_t)xi * T * C, C,
                      b == lo ? 0.0f : 1.0f, dU + (size_t)xi * K * C, C);
      }
      if (lo == hi) memset(dU, 0, 36 * (size_t)K * C * sizeof *dU);
    }
    filter_grad_transform(K, C, part, p->u_slot, p->parts, dw);
  }
  if (db) db_finish(p, dbpart, db);
  return CNN_OK;
}

cnn_status cpu_wino_bwd_filter(const cnn_conv_desc *d, const float *x, const float *dy, float *dw,
                               float *db, void *ws, size_t ws_bytes) {
  const char *op = "wino_bwd_filter";
  CPU_NEED(x, op);
  CPU_NEED(dy, op);
  CPU_NEED(dw, op);
  wino_plan p;
  CNN_TRY(plan_fit(d, CNN_CONV_BWD_FILTER, &p, ws, ws_bytes, op));
  if (!p.shared) return bwd_filter_parts(&p, x, dy, dw, db, ws);
  const wino_geom *g = &p.g;
  const int C = g->cin, K = g->cout, T = p.T;
  const int cs = (int)p.csplit, cw = (C + cs - 1) / cs; /* GEMM column ranges */
  float *dU = ws, *V = dU + p.u_slot, *M = V + p.v_slot;
  double *dbpart = (double *)(M + p.m_slot);
  /* transform items: runs of 4 tiles of a block; GEMM items: (xi, column range) */
  const int run = 4, items = 36 * cs;
#pragma omp parallel num_threads(p.threads) if (p.threads > 1)
  {
    if (db) db_chunks(&p, dy, dbpart);
    for (size_t b = 0; b < p.blocks; b++) {
      size_t t0 = b * (size_t)T;
      int nt = g->tiles - t0 < (size_t)T ? (int)(g->tiles - t0) : T;
      int runs = (nt + run - 1) / run;
#pragma omp for schedule(dynamic, 1)
      for (int q = 0; q < runs; q++) {
        int a = q * run, na = nt - a < run ? nt - a : run;
        input_transform(g, x, t0 + a, na, T, V + (size_t)a * C);
        dy_transform(g, dy, t0 + a, na, T, M + (size_t)a * K);
      }
      /* dU[xi][k][c0 .. c1) (+)= dM[xi]^T V[xi][.][c0 .. c1): items own disjoint dU
       * pieces, so the sum over blocks is in block order whoever runs an item */
#pragma omp for schedule(dynamic, 1)
      for (int it = 0; it < items; it++) {
        int xi = it / cs, c0 = (it % cs) * cw, c1 = c0 + cw < C ? c0 + cw : C;
        if (c1 <= c0) continue;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, c1 - c0, nt, 1.0f,
                    M + (size_t)xi * T * K, K, V + (size_t)xi * T * C + c0, C,
                    b == 0 ? 0.0f : 1.0f, dU + (size_t)xi * K * C + c0, C);
      }
    }
    filter_grad_transform(K, C, dU, p.u_slot, 1, dw);
  }
  if (db) db_finish(&p, dbpart, db);
  return CNN_OK;
}

/* ---- when Winograd beats im2col+gemm ----
 * Measured at 2 threads on the 2-core EPYC (AVX2) with
 * `OMP_WAIT_POLICY=passive OMP_NUM_THREADS=2 test_cpu_wino --bench 9`, pad 1: medians
 * of process CPU time (the machine was shared with other jobs, load 3-4 on 2
 * cores; CPU time counts the work, wall time the waiting too). Speed-up of
 * Winograd over im2col + OpenBLAS (cpu_own_conv_*) and, in brackets, over oneDNN
 * 2.6.3 (jit avx2, its weight layout reordered every call), fwd / bwd-data / bwd-filter:
 *   resnet9 n64 28x28  64->128 1.70/1.97/1.90 (1.47/1.96/2.54)
 *               28x28 128->128 2.14/2.30/2.35 (2.22/2.05/2.85)
 *               14x14 128->128 1.48/1.67/1.48 (1.39/1.36/1.76)
 *               14x14 128->256 1.58/1.60/1.67 (1.47/1.38/2.03)
 *                7x7  256->256 1.66/1.70/1.83 (1.55/1.42/2.21)
 *                7x7  256->512 2.26/2.20/1.89 (1.69/1.59/2.20)
 *                4x4  512->512 1.92/1.75/2.07 (2.05/1.68/2.84)
 *   fashion n128 28x28   1->24 0.31/0.45/0.37 (0.13/0.66/0.84)
 *               14x14  24->48 1.06/1.33/1.28 (0.89/0.96/1.28)
 *                7x7   48->96 1.28/1.29/1.49 (1.04/1.46/1.66)
 *   others, over im2col (one run each, +-10 %): n128 14x14 8->8 0.5/0.9/0.4,
 *          16->16 1.4/1.6/1.7, 16->32 1.2/1.3/1.6, 32->32 1.4/1.6/1.7;
 *          28x28 8->16 0.7/1.3/0.8, 3->32 0.5/0.9/0.6, 16->16 1.6/2.0/2.0;
 *          7x7 24->24 1.1/1.3/1.1, 32->32 1.6/1.8/1.7;  n64 4x4 64->64 1.9/1.9/1.7,
 *          2x2 256->256 0.6/0.5/0.9, 1x1 512->512 0.3/0.2/0.3;  n8 7x7 512->512
 *          1.1/0.9/1.1
 * So Winograd beats im2col + gemm when
 *  - both channel counts are >= 16: below, the GEMMs are too thin for the
 *    transforms' memory traffic (c or k of 1, 3, 8 lose);
 *  - the tiles are mostly full: n oh ow >= 8 * tiles, i.e. the multiply count
 *    falls at least 2x (9 oh ow vs 36 per tile: 4x for 4x4 and 28x28, 3.1x for
 *    7x7 and 14x14, 1x for 2x2 outputs, which lose);
 *  - there are >= 64 tiles: the filter transform (36 K C floats written per call)
 *    is paid back (n8 7x7 512->512, 32 tiles, was even).
 * The same rule for the three passes (they measured alike); dir is for later.
 * Against oneDNN the rule holds too except at the low channel end (fashion 24->48
 * forward 0.89, backward-data 0.96): a choice between these two would ask for
 * c, k >= 32 on those passes. */
int cpu_wino_wins_packed(const cnn_conv_desc *d) {
  if (!cpu_wino_takes(d) || d->c < 16 || d->k < 16) return 0;
  if (cpu_wino_wins(d, CNN_CONV_FWD)) return 1;
  size_t tiles = (size_t)d->n * ((d->oh + 3) / 4) * ((d->ow + 3) / 4);
  size_t outputs = (size_t)d->n * d->oh * d->ow;
  return tiles >= WINO_PACK_TILES && outputs >= 8 * tiles &&
         cpu_wino_pack_bytes(d) <= WINO_PACK_CACHED;
}

int cpu_wino_wins(const cnn_conv_desc *d, cnn_conv_dir dir) {
  (void)dir;
  if (!cpu_wino_takes(d)) return 0;
  if (d->c < 16 || d->k < 16) return 0;
  size_t tiles = (size_t)d->n * ((d->oh + 3) / 4) * ((d->ow + 3) / 4);
  size_t outputs = (size_t)d->n * d->oh * d->ow;
  return tiles >= 64 && outputs >= 8 * tiles;
}
