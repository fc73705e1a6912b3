/* Device code of our tensor-core convolution engines (cuda_conv_tc.cu): one
 * implicit-GEMM kernel template for the three passes, WMMA fragments (TF32
 * m16n16k8 / BF16 m16n16k16), f32 accumulation.
 *
 * GEMM per pass (same mapping as cuda_conv.cu):
 *   PASS 0 fwd   C[m, n] = y[m, g*kg + n],  m = output pixel, n = filter in group,
 *                k = (r, s, ci):  A = x gathered (im2col), B = w[n][k]
 *   PASS 1 bwd-data (gather, stride-phase decomposed): m = input pixel of the block's
 *                phase, n = ci, k = (tap r, tap s, ko) over the taps of that phase only:
 *                A = dy gathered, B = w[ko][r][s][ci];  dx += C
 *   PASS 2 bwd-filter: m = ko, n = (r, s, ci), k = output pixel p of the block's split:
 *                A[m, k] = dy[p, g*kg + m], B[k, n] = x gathered;  slab = C
 *
 * Shared-memory tiles, one per operand and stage, each stored "line-major" with a
 * padded stride LD (lines along the contiguous global dimension, so that a thread's
 * vector of VEC consecutive elements is one cp.async / one register load):
 *   A row  [BM][BK + PAD]  element (m, k) at m * LD + k   (fwd, bwd-data)
 *   A col  [BK][BM + PAD]  element (m, k) at k * LD + m   (bwd-filter)
 *   B col  [BN][BK + PAD]  element (k, n) at n * LD + k   (fwd)
 *   B row  [BK][BN + PAD]  element (k, n) at k * LD + n   (bwd-data, bwd-filter)
 * PAD = 4 floats (TF32) / 8 bf16 (BF16): 16 bytes of skew, so 8 consecutive lines of
 * a fragment load hit different bank groups, and LD stays a multiple of 4 / 8
 * elements as WMMA requires. Every fragment pointer is a multiple of 32 bytes away
 * from a 128-byte aligned stage base: 16 lines * LD * size and 8 (TF32) or 16 (BF16)
 * elements along k are both multiples of 32 bytes.
 *
 * Data path: TF32 copies global f32 straight into the stage ring with cp.async
 * (16 bytes when VEC = 4, else 4 bytes; src-size 0 zero-fills padding and tile
 * overhang) and rounds each fragment element with __float_to_tf32. BF16 loads the
 * next K tile into registers while the tensor cores work on the current one, then
 * converts and stores it to the other of two buffers. */
#ifndef CNN_CUDA_CONV_TC_KERNELS_CUH
#define CNN_CUDA_CONV_TC_KERNELS_CUH

#include <cuda_bf16.h>
#include <mma.h>

#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_device.cuh"

#define TC_BK 32     /* K elements per tile (4 TF32 / 2 BF16 MMA steps) */
#define TC_LDS 20    /* per-warp epilogue staging stride (floats, multiple of 4) */
/* index arithmetic is host + device so that a host harness can replay it */
#define TC_HD __host__ __device__ __forceinline__
#ifdef __CUDA_ARCH__
#define TC_UNROLL _Pragma("unroll")
#else
#define TC_UNROLL /* the host compiler does not know the pragma */
#endif

/* what every block of a launch needs besides the descriptor */
typedef struct tc_args {
  cnn_conv_desc d;
  const float *a; /* fwd: x,  bwd-data: dy, bwd-filter: dy */
  const float *b; /* fwd: w,  bwd-data: w,  bwd-filter: x */
  const float *bias;
  float *out;     /* fwd: y,  bwd-data: dx, bwd-filter: slabs [splits][k][r*s*cg] */
  int act;
  float alpha;
  int chunk;      /* bwd-filter: pixels per split (a multiple of TC_BK) */
} tc_args;

/* ---- geometry shared by host and device ---- */

static __host__ __device__ constexpr int tc_pad(bool bf16) { return bf16 ? 8 : 4; }
static __host__ __device__ constexpr int tc_esize(bool bf16) { return bf16 ? 2 : 4; }
static __host__ __device__ constexpr int tc_round128(int b) { return (b + 127) / 128 * 128; }
/* A: row [BM][BK+PAD] except bwd-filter's col [BK][BM+PAD] */
static __host__ __device__ constexpr int tc_lda(int pass, int bm, bool bf16) {
  return pass == 2 ? bm + tc_pad(bf16) : TC_BK + tc_pad(bf16);
}
static __host__ __device__ constexpr int tc_ldb(int pass, int bn, bool bf16) {
  return pass != 0 ? bn + tc_pad(bf16) : TC_BK + tc_pad(bf16);
}
static __host__ __device__ constexpr int tc_a_bytes(int pass, int bm, bool bf16) {
  return tc_round128((pass == 2 ? TC_BK : bm) * tc_lda(pass, bm, bf16) * tc_esize(bf16));
}
static __host__ __device__ constexpr int tc_b_bytes(int pass, int bn, bool bf16) {
  return tc_round128((pass != 0 ? TC_BK : bn) * tc_ldb(pass, bn, bf16) * tc_esize(bf16));
}
static __host__ __device__ constexpr int tc_stage_bytes(int pass, int bm, int bn, bool bf16) {
  return tc_a_bytes(pass, bm, bf16) + tc_b_bytes(pass, bn, bf16);
}
/* dynamic shared memory of one block: the stage ring plus per-warp staging */
static __host__ __device__ constexpr int tc_smem_bytes(int pass, int bm, int bn, bool bf16,
                                                       int stages, int warps) {
  return stages * tc_stage_bytes(pass, bm, bn, bf16) + warps * 16 * TC_LDS * 4;
}

/* How a thread covers one operand tile of O lines of L contiguous elements with
 * vectors of VEC: vector v = tid + i * T sits on line tid / VPL + i * LSTEP at
 * position (tid % VPL) * VEC, the same position for all its ITER vectors. */
template <int L, int O, int T, int VEC>
struct tc_split {
  static const int VPL = L / VEC;
  static const int LSTEP = T / VPL;
  static const int ITER = O / LSTEP;
  static_assert(L % VEC == 0 && T % VPL == 0 && O % LSTEP == 0, "tile does not split evenly");
  static_assert(ITER <= 32, "validity masks are 32 bits");
};

/* per-block facts the loaders share */
typedef struct tc_block {
  int g, m0, n0, cg, kg;
  /* bwd-data: the phase (ih + pad_h) % stride_h == phh, likewise w */
  int ihf, iwf, nh, nw;     /* first input row / column of the phase, their counts */
  int r0, stepr, nr;        /* taps r = r0 + t * stepr, t < nr */
  int s0, steps, ns;
  /* bwd-filter: this split's pixels [p_begin, p_end) */
  int p_begin, p_end;
} tc_block;

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

/* ---- loaders: per K tile, the global address of each of a thread's vectors
 * (NULL: zeros), advanced tile by tile without divisions (mixed-radix adds) ---- */

/* fwd A: lines m = output pixel, k = (r, s, ci) with ci fastest */
template <int BM, int T, int VEC>
struct tc_ld_fwd_a {
  typedef tc_split<TC_BK, BM, T, VEC> S;
  int xoff[S::ITER], ih0[S::ITER], iw0[S::ITER]; /* pixel index of (ih0, iw0); corner */
  unsigned valid;                                /* bit i: line i is a real pixel */
  int r, s, ci;                                  /* this thread's k column */
  int a_r, a_s, a_ci;                            /* TC_BK in radix (s, cg) */
  int dr;                                        /* current tile: pixel offset of (r, s) */
  const float *base;                             /* x + g * cg */
  TC_HD void init(const cnn_conv_desc &d, const tc_block &b, const float *x, int tid) {
    base = x + (size_t)b.g * b.cg;
    const int M = d.n * d.oh * d.ow;
    valid = 0;
    TC_UNROLL
    for (int i = 0; i < S::ITER; i++) {
      const int m = b.m0 + tid / S::VPL + i * S::LSTEP;
      xoff[i] = ih0[i] = iw0[i] = 0;
      if (m < M) {
        const int ox = m % d.ow, t = m / d.ow, oy = t % d.oh, nb = t / d.oh;
        ih0[i] = oy * d.stride_h - d.pad_h;
        iw0[i] = ox * d.stride_w - d.pad_w;
        xoff[i] = (nb * d.h + ih0[i]) * d.w + iw0[i];
        valid |= 1u << i;
      }
    }
    const int k = (tid % S::VPL) * VEC;
    ci = k % b.cg;
    s = (k / b.cg) % d.s;
    r = (k / b.cg) / d.s;
    a_ci = TC_BK % b.cg;
    a_s = (TC_BK / b.cg) % d.s;
    a_r = (TC_BK / b.cg) / d.s;
  }
  TC_HD void tile(const cnn_conv_desc &d, const tc_block &) {
    dr = r * d.dil_h * d.w + s * d.dil_w;
  }
  TC_HD const float *src(const cnn_conv_desc &d, const tc_block &, int i) const {
    if (!((valid >> i) & 1u) || r >= d.r) return NULL;
    const int ih = ih0[i] + r * d.dil_h, iw = iw0[i] + s * d.dil_w;
    if ((unsigned)ih >= (unsigned)d.h || (unsigned)iw >= (unsigned)d.w) return NULL;
    return base + (size_t)(xoff[i] + dr) * d.c + ci;
  }
  TC_HD void advance(const cnn_conv_desc &d, const tc_block &b) {
    ci += a_ci;
    const int carry = ci >= b.cg;
    if (carry) ci -= b.cg;
    s += a_s + carry;
    if (s >= d.s) {
      s -= d.s;
      r++;
    }
    r += a_r;
  }
};

/* fwd B: lines n = filter in group, k contiguous in w[g*kg + n][K] */
template <int BN, int T, int VEC>
struct tc_ld_fwd_b {
  typedef tc_split<TC_BK, BN, T, VEC> S;
  int K, k, n, kg;
  const float *wg; /* w + g * kg * K */
  TC_HD void init(const cnn_conv_desc &d, const tc_block &b, const float *w, int tid) {
    K = d.r * d.s * b.cg;
    wg = w + (size_t)b.g * b.kg * K;
    n = b.n0 + tid / S::VPL;
    k = (tid % S::VPL) * VEC;
    kg = b.kg;
  }
  TC_HD void tile(const cnn_conv_desc &, const tc_block &) {}
  TC_HD const float *src(const cnn_conv_desc &, const tc_block &, int i) const {
    const int nn = n + i * S::LSTEP;
    if (nn >= kg || k >= K) return NULL; /* VEC = 4: K % 4 == 0, so k < K covers all 4 */
    return wg + (size_t)nn * K + k;
  }
  TC_HD void advance(const cnn_conv_desc &, const tc_block &) { k += TC_BK; }
};

/* bwd-data A: lines m = input pixel of the phase, k = (tap r, tap s, ko), ko fastest;
 * dy read at oy = jh + (ihf + pad_h - r dil_h) / stride_h (an exact division) */
template <int BM, int T, int VEC>
struct tc_ld_bwd_a {
  typedef tc_split<TC_BK, BM, T, VEC> S;
  int pb[S::ITER], jh[S::ITER], jw[S::ITER]; /* nb * oh * ow; row / column in phase */
  unsigned valid;
  int tr, ts, ko, a_tr, a_ts, a_ko;
  int oyb, oxb;       /* current tile: output offsets of the taps */
  const float *base;  /* dy + g * kg */
  TC_HD void init(const cnn_conv_desc &d, const tc_block &b, const float *dy, int tid) {
    base = dy + (size_t)b.g * b.kg;
    const int M = d.n * b.nh * b.nw;
    valid = 0;
    TC_UNROLL
    for (int i = 0; i < S::ITER; i++) {
      const int m = b.m0 + tid / S::VPL + i * S::LSTEP;
      pb[i] = jh[i] = jw[i] = 0;
      if (m < M) {
        const int t = m / b.nw;
        jw[i] = m - t * b.nw;
        jh[i] = t % b.nh;
        pb[i] = (t / b.nh) * d.oh * d.ow;
        valid |= 1u << i;
      }
    }
    const int k = (tid % S::VPL) * VEC;
    ko = k % b.kg;
    ts = (k / b.kg) % b.ns;
    tr = (k / b.kg) / b.ns;
    a_ko = TC_BK % b.kg;
    a_ts = (TC_BK / b.kg) % b.ns;
    a_tr = (TC_BK / b.kg) / b.ns;
  }
  TC_HD void tile(const cnn_conv_desc &d, const tc_block &b) {
    const int r = b.r0 + tr * b.stepr, s = b.s0 + ts * b.steps;
    oyb = (b.ihf + d.pad_h - r * d.dil_h) / d.stride_h;
    oxb = (b.iwf + d.pad_w - s * d.dil_w) / d.stride_w;
  }
  TC_HD const float *src(const cnn_conv_desc &d, const tc_block &b, int i) const {
    if (!((valid >> i) & 1u) || tr >= b.nr) return NULL;
    const int oy = jh[i] + oyb, ox = jw[i] + oxb;
    if ((unsigned)oy >= (unsigned)d.oh || (unsigned)ox >= (unsigned)d.ow) return NULL;
    return base + (size_t)(pb[i] + oy * d.ow + ox) * d.k + ko;
  }
  TC_HD void advance(const cnn_conv_desc &, const tc_block &b) {
    ko += a_ko;
    const int carry = ko >= b.kg;
    if (carry) ko -= b.kg;
    ts += a_ts + carry;
    if (ts >= b.ns) {
      ts -= b.ns;
      tr++;
    }
    tr += a_tr;
  }
};

/* bwd-data B: lines k = (tap r, tap s, ko), n = ci contiguous in w[g*kg + ko][r][s][:] */
template <int BN, int T, int VEC>
struct tc_ld_bwd_b {
  typedef tc_split<BN, TC_BK, T, VEC> S;
  int tr[S::ITER], ts[S::ITER], ko[S::ITER];
  int a_tr, a_ts, a_ko, Kw;
  bool nok;
  const float *base; /* w + g * kg * Kw + n */
  TC_HD void init(const cnn_conv_desc &d, const tc_block &b, const float *w, int tid) {
    Kw = d.r * d.s * b.cg;
    const int n = b.n0 + (tid % S::VPL) * VEC;
    nok = n < b.cg; /* VEC = 4: cg % 4 == 0, so all 4 */
    base = w + (size_t)b.g * b.kg * Kw + (nok ? n : 0);
    TC_UNROLL
    for (int i = 0; i < S::ITER; i++) {
      const int k = tid / S::VPL + i * S::LSTEP;
      ko[i] = k % b.kg;
      ts[i] = (k / b.kg) % b.ns;
      tr[i] = (k / b.kg) / b.ns;
    }
    a_ko = TC_BK % b.kg;
    a_ts = (TC_BK / b.kg) % b.ns;
    a_tr = (TC_BK / b.kg) / b.ns;
  }
  TC_HD void tile(const cnn_conv_desc &, const tc_block &) {}
  TC_HD const float *src(const cnn_conv_desc &d, const tc_block &b, int i) const {
    if (!nok || tr[i] >= b.nr) return NULL;
    const int r = b.r0 + tr[i] * b.stepr, s = b.s0 + ts[i] * b.steps;
    return base + (size_t)ko[i] * Kw + (r * d.s + s) * b.cg;
  }
  TC_HD void advance(const cnn_conv_desc &, const tc_block &b) {
    TC_UNROLL
    for (int i = 0; i < S::ITER; i++) {
      ko[i] += a_ko;
      const int carry = ko[i] >= b.kg;
      if (carry) ko[i] -= b.kg;
      ts[i] += a_ts + carry;
      if (ts[i] >= b.ns) {
        ts[i] -= b.ns;
        tr[i]++;
      }
      tr[i] += a_tr;
    }
  }
};

/* bwd-filter A (col tile): lines k = pixel p, m = ko contiguous in dy[p][g*kg + m] */
template <int BM, int T, int VEC>
struct tc_ld_bwf_a {
  typedef tc_split<BM, TC_BK, T, VEC> S;
  int p; /* pixel of line 0 in the current tile */
  bool mok;
  const float *base; /* dy + g * kg + m */
  TC_HD void init(const cnn_conv_desc &, const tc_block &b, const float *dy, int tid) {
    const int m = b.m0 + (tid % S::VPL) * VEC;
    mok = m < b.kg; /* VEC = 4: kg % 4 == 0, so all 4 */
    base = dy + (size_t)b.g * b.kg + (mok ? m : 0);
    p = b.p_begin + tid / S::VPL;
  }
  TC_HD void tile(const cnn_conv_desc &, const tc_block &) {}
  TC_HD const float *src(const cnn_conv_desc &d, const tc_block &b, int i) const {
    const int pi = p + i * S::LSTEP;
    if (!mok || pi >= b.p_end) return NULL;
    return base + (size_t)pi * d.k;
  }
  TC_HD void advance(const cnn_conv_desc &, const tc_block &) { p += TC_BK; }
};

/* bwd-filter B (row tile): lines k = pixel p = (nb, oy, ox), n = (r, s, ci) fixed per
 * thread, ci contiguous in x */
template <int BN, int T, int VEC>
struct tc_ld_bwf_b {
  typedef tc_split<BN, TC_BK, T, VEC> S;
  int nb[S::ITER], oy[S::ITER], ox[S::ITER];
  int p;                  /* pixel of line 0 in the current tile */
  int a_nb, a_oy, a_ox;   /* TC_BK in radix (oh, ow) */
  int dih, diw;           /* r dil_h - pad_h, s dil_w - pad_w */
  bool nok;
  const float *base;      /* x + g * cg + ci */
  TC_HD void init(const cnn_conv_desc &d, const tc_block &b, const float *x, int tid) {
    const int n = b.n0 + (tid % S::VPL) * VEC;
    const int Kw = d.r * d.s * b.cg;
    nok = n < Kw; /* VEC = 4: cg % 4 == 0, so all 4 share (r, s) */
    const int nn = nok ? n : 0;
    const int ci = nn % b.cg, rs = nn / b.cg;
    dih = (rs / d.s) * d.dil_h - d.pad_h;
    diw = (rs % d.s) * d.dil_w - d.pad_w;
    base = x + (size_t)b.g * b.cg + ci;
    p = b.p_begin + tid / S::VPL;
    TC_UNROLL
    for (int i = 0; i < S::ITER; i++) {
      const int pi = p + i * S::LSTEP;
      const int t = pi / d.ow;
      ox[i] = pi - t * d.ow;
      oy[i] = t % d.oh;
      nb[i] = t / d.oh;
    }
    a_ox = TC_BK % d.ow;
    a_oy = (TC_BK / d.ow) % d.oh;
    a_nb = (TC_BK / d.ow) / d.oh;
  }
  TC_HD void tile(const cnn_conv_desc &, const tc_block &) {}
  TC_HD const float *src(const cnn_conv_desc &d, const tc_block &b, int i) const {
    if (!nok || p + i * S::LSTEP >= b.p_end) return NULL;
    const int ih = oy[i] * d.stride_h + dih, iw = ox[i] * d.stride_w + diw;
    if ((unsigned)ih >= (unsigned)d.h || (unsigned)iw >= (unsigned)d.w) return NULL;
    return base + (size_t)((nb[i] * d.h + ih) * d.w + iw) * d.c;
  }
  TC_HD void advance(const cnn_conv_desc &d, const tc_block &) {
    p += TC_BK;
    TC_UNROLL
    for (int i = 0; i < S::ITER; i++) {
      ox[i] += a_ox;
      const int carry = ox[i] >= d.ow;
      if (carry) ox[i] -= d.ow;
      oy[i] += a_oy + carry;
      if (oy[i] >= d.oh) {
        oy[i] -= d.oh;
        nb[i]++;
      }
      nb[i] += a_nb;
    }
  }
};

/* ---- the phase of a bwd-data block ---- */

/* taps t of a kernel extent R (dilation dil) that map an input coordinate of phase
 * ph = (i + pad) % stride onto an output coordinate: r dil == ph (mod stride), i.e.
 * r = r0 + j * step, step = stride / gcd(stride, dil), j < count */
static TC_HD void tc_taps(int R, int dil, int stride, int ph, int *r0, int *step,
                               int *count) {
  int a = stride, c = dil;
  while (c) {
    const int t = a % c;
    a = c;
    c = t;
  }
  *step = stride / a;
  *r0 = 0;
  *count = 0;
  for (int r = 0; r < *step && r < R; r++)
    if ((r * dil) % stride == ph) {
      *r0 = r;
      *count = (R - r + *step - 1) / *step;
      break;
    }
}

/* phase = phh * stride_w + phw: input rows ih = ihf + j stride_h (j < nh) have
 * (ih + pad_h) % stride_h == phh, and only the taps of tc_taps reach them */
static TC_HD void tc_phase(const cnn_conv_desc &d, int phase, tc_block &b) {
  const int phh = phase / d.stride_w, phw = phase % d.stride_w;
  b.ihf = ((phh - d.pad_h) % d.stride_h + d.stride_h) % d.stride_h;
  b.iwf = ((phw - d.pad_w) % d.stride_w + d.stride_w) % d.stride_w;
  b.nh = b.ihf < d.h ? (d.h - b.ihf + d.stride_h - 1) / d.stride_h : 0;
  b.nw = b.iwf < d.w ? (d.w - b.iwf + d.stride_w - 1) / d.stride_w : 0;
  tc_taps(d.r, d.dil_h, d.stride_h, phh, &b.r0, &b.stepr, &b.nr);
  tc_taps(d.s, d.dil_w, d.stride_w, phw, &b.s0, &b.steps, &b.ns);
}

/* ---- block setup and output addressing (host + device) ---- */

/* the block (bx, by, bz)'s facts, its GEMM extent M x N and K tiles KT, and for
 * bwd-filter its split; false: the block has nothing to do (bwd-data: a phase with
 * fewer pixels than bx reaches, or no taps: dx += 0) */
template <int PASS, int BM, int BN>
static TC_HD bool tc_setup(const tc_args &p, int bx, int by, int bz, tc_block &b, int &M,
                           int &N, int &KT, int &split) {
  const cnn_conv_desc &d = p.d;
  b = tc_block{};
  b.cg = d.c / d.groups;
  b.kg = d.k / d.groups;
  b.m0 = bx * BM;
  b.n0 = by * BN;
  split = 0;
  if (PASS == 0) {
    b.g = bz;
    M = d.n * d.oh * d.ow;
    N = b.kg;
    KT = (d.r * d.s * b.cg + TC_BK - 1) / TC_BK;
  } else if (PASS == 1) {
    b.g = bz % d.groups;
    tc_phase(d, bz / d.groups, b);
    M = d.n * b.nh * b.nw;
    N = b.cg;
    const int K = b.nr * b.ns * b.kg;
    KT = (K + TC_BK - 1) / TC_BK;
    if (b.m0 >= M || K == 0) return false;
  } else {
    b.g = bz % d.groups;
    split = bz / d.groups;
    const long long P = (long long)d.n * d.oh * d.ow, pb = (long long)split * p.chunk;
    b.p_begin = (int)(pb < P ? pb : P);
    b.p_end = (int)(pb + p.chunk < P ? pb + p.chunk : P);
    M = b.kg;
    N = d.r * d.s * b.cg;
    KT = (b.p_end - b.p_begin + TC_BK - 1) / TC_BK; /* 0: this slab is written as zeros */
  }
  return true;
}

/* element offset of output (m, n) of the block's GEMM (m < M, n < N):
 * fwd y[m][g*kg + n]; bwd-data dx[pixel of phase row m][g*cg + n];
 * bwd-filter slab `split` of [k][r*s*cg] at [g*kg + m][n] */
template <int PASS>
static TC_HD size_t tc_out_off(const cnn_conv_desc &d, const tc_block &b, int split, int m,
                               int n) {
  if (PASS == 0) return (size_t)m * d.k + (size_t)b.g * b.kg + n;
  if (PASS == 1) {
    const int t = m / b.nw, jw = m - t * b.nw, jh = t % b.nh, nb = t / b.nh;
    const int ih = b.ihf + jh * d.stride_h, iw = b.iwf + jw * d.stride_w;
    return ((size_t)(nb * d.h + ih) * d.w + iw) * d.c + (size_t)b.g * b.cg + n;
  }
  const size_t Kw = (size_t)d.r * d.s * b.cg;
  return ((size_t)split * d.k + (size_t)b.g * b.kg + m) * Kw + n;
}

/* element offset, within a stage's A / B tile, of the fragment whose first row
 * (A: m, B: k) and column (A: k, B: n) are given: A row [m][k] except bwd-filter's
 * col [k][m]; B col [n][k] for fwd, row [k][n] otherwise */
template <int PASS, int LDA>
static TC_HD int tc_a_frag(int m, int kk) {
  return PASS == 2 ? kk * LDA + m : m * LDA + kk;
}
template <int PASS, int LDB>
static TC_HD int tc_b_frag(int kk, int n) {
  return PASS == 0 ? n * LDB + kk : kk * LDB + n;
}

/* first row / column of warp `warp`'s (BM/WM) x (BN/WN) piece of the block tile */
template <int BM, int BN, int WM, int WN>
static TC_HD void tc_warp_origin(int warp, int &wm0, int &wn0) {
  wm0 = (warp / WN) * (BM / WM);
  wn0 = (warp % WN) * (BN / WN);
}

/* ---- pass -> loaders, math -> fragments ---- */

template <int PASS, int BM, int BN, int T, int VEC> struct tc_loaders;
template <int BM, int BN, int T, int VEC> struct tc_loaders<0, BM, BN, T, VEC> {
  typedef tc_ld_fwd_a<BM, T, VEC> A;
  typedef tc_ld_fwd_b<BN, T, VEC> B;
};
template <int BM, int BN, int T, int VEC> struct tc_loaders<1, BM, BN, T, VEC> {
  typedef tc_ld_bwd_a<BM, T, VEC> A;
  typedef tc_ld_bwd_b<BN, T, VEC> B;
};
template <int BM, int BN, int T, int VEC> struct tc_loaders<2, BM, BN, T, VEC> {
  typedef tc_ld_bwf_a<BM, T, VEC> A;
  typedef tc_ld_bwf_b<BN, T, VEC> B;
};

template <bool C, class X, class Y> struct tc_if { typedef X type; };
template <class X, class Y> struct tc_if<false, X, Y> { typedef Y type; };

/* fragment layouts follow the tile layouts of the header comment */
template <bool BF16, int PASS> struct tc_mma;
template <int PASS> struct tc_mma<false, PASS> {
  typedef float E;
  static const int KS = 8;
  typedef typename tc_if<PASS == 2, nvcuda::wmma::col_major, nvcuda::wmma::row_major>::type LA;
  typedef typename tc_if<PASS != 0, nvcuda::wmma::row_major, nvcuda::wmma::col_major>::type LB;
  typedef nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 8, nvcuda::wmma::precision::tf32, LA> FA;
  typedef nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 8, nvcuda::wmma::precision::tf32, LB> FB;
  typedef nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 8, float> FC;
  /* the fragments hold f32 as loaded: round each to tf32 (round to nearest) */
  template <class F> static __device__ __forceinline__ void fix(F &f) {
#pragma unroll
    for (int t = 0; t < f.num_elements; t++) f.x[t] = nvcuda::wmma::__float_to_tf32(f.x[t]);
  }
};
template <int PASS> struct tc_mma<true, PASS> {
  typedef __nv_bfloat16 E;
  static const int KS = 16;
  typedef typename tc_if<PASS == 2, nvcuda::wmma::col_major, nvcuda::wmma::row_major>::type LA;
  typedef typename tc_if<PASS != 0, nvcuda::wmma::row_major, nvcuda::wmma::col_major>::type LB;
  typedef nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __nv_bfloat16, LA> FA;
  typedef nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __nv_bfloat16, LB> FB;
  typedef nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> FC;
  template <class F> static __device__ __forceinline__ void fix(F &) {}
};

/* ---- data movement ---- */

/* global -> shared, VEC floats; ok == false: zero-fill (src is then any valid
 * address and is not read) */
template <int VEC>
static __device__ __forceinline__ void tc_cp_async(float *dst, const float *src, bool ok) {
  const unsigned sa = (unsigned)__cvta_generic_to_shared(dst);
  if constexpr (VEC == 4) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sa), "l"(src),
                 "r"(ok ? 16 : 0));
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(sa), "l"(src),
                 "r"(ok ? 4 : 0));
  }
}
static __device__ __forceinline__ void tc_cp_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N> static __device__ __forceinline__ void tc_cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* TF32: one operand tile of the next K tile into the stage at dst (this thread's
 * first vector); LD is the tile's padded line stride */
template <int VEC, int LD, class L>
static __device__ __forceinline__ void tc_issue(L &l, const cnn_conv_desc &d, const tc_block &b,
                                                float *dst, const float *any) {
  l.tile(d, b);
#pragma unroll
  for (int i = 0; i < L::S::ITER; i++) {
    const float *src = l.src(d, b, i);
    tc_cp_async<VEC>(dst + i * L::S::LSTEP * LD, src ? src : any, src != NULL);
  }
  l.advance(d, b);
}

/* BF16: the next K tile of one operand into registers */
template <int VEC, class L>
static __device__ __forceinline__ void tc_fetch(L &l, const cnn_conv_desc &d, const tc_block &b,
                                                float (*reg)[VEC]) {
  l.tile(d, b);
#pragma unroll
  for (int i = 0; i < L::S::ITER; i++) {
    const float *src = l.src(d, b, i);
    if constexpr (VEC == 4) {
      const float4 v = src ? __ldg((const float4 *)src) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      reg[i][0] = v.x;
      reg[i][1] = v.y;
      reg[i][2] = v.z;
      reg[i][3] = v.w;
    } else {
      reg[i][0] = src ? __ldg(src) : 0.0f;
    }
  }
  l.advance(d, b);
}

/* BF16: registers -> bf16 tile (round to nearest even) */
template <int VEC, int LD, class L>
static __device__ __forceinline__ void tc_put(__nv_bfloat16 *dst, const float (*reg)[VEC]) {
#pragma unroll
  for (int i = 0; i < L::S::ITER; i++) {
    __nv_bfloat16 *q = dst + i * L::S::LSTEP * LD;
    if constexpr (VEC == 4) { /* 4-element aligned: two 4-byte stores */
      *(__nv_bfloat162 *)q = __floats2bfloat162_rn(reg[i][0], reg[i][1]);
      *(__nv_bfloat162 *)(q + 2) = __floats2bfloat162_rn(reg[i][2], reg[i][3]);
    } else {
      q[0] = __float2bfloat16_rn(reg[i][0]);
    }
  }
}

/* acc += A_tile * B_tile of one stage, this warp's FM x FN fragments */
template <int PASS, bool BF16, int BM, int BN, int WM, int WN>
static __device__ __forceinline__ void tc_compute(
    const unsigned char *stage, int wm0, int wn0,
    typename tc_mma<BF16, PASS>::FC (&acc)[BM / WM / 16][BN / WN / 16]) {
  typedef tc_mma<BF16, PASS> MM;
  typedef typename MM::E E;
  constexpr int FM = BM / WM / 16, FN = BN / WN / 16;
  constexpr int LDA = tc_lda(PASS, BM, BF16), LDB = tc_ldb(PASS, BN, BF16);
  const E *sa = (const E *)stage;
  const E *sb = (const E *)(stage + tc_a_bytes(PASS, BM, BF16));
#pragma unroll
  for (int kk = 0; kk < TC_BK; kk += MM::KS) {
    typename MM::FA fa[FM];
    typename MM::FB fb[FN];
#pragma unroll
    for (int i = 0; i < FM; i++) {
      const int m = wm0 + i * 16;
      nvcuda::wmma::load_matrix_sync(fa[i], sa + tc_a_frag<PASS, LDA>(m, kk), LDA);
      MM::fix(fa[i]);
    }
#pragma unroll
    for (int j = 0; j < FN; j++) {
      const int n = wn0 + j * 16;
      nvcuda::wmma::load_matrix_sync(fb[j], sb + tc_b_frag<PASS, LDB>(kk, n), LDB);
      MM::fix(fb[j]);
    }
#pragma unroll
    for (int i = 0; i < FM; i++)
#pragma unroll
      for (int j = 0; j < FN; j++) nvcuda::wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
  }
}

/* ---- the kernel ----
 * grid  fwd:        (ceil(M / BM), ceil(kg / BN), groups)
 *       bwd-data:   (ceil(n ceil(h/sh) ceil(w/sw) / BM), ceil(cg / BN), groups * sh * sw)
 *       bwd-filter: (ceil(kg / BM), ceil(r s cg / BN), groups * splits)
 * block WM x WN warps, each computing a (BM/WM) x (BN/WN) piece of the tile */
template <int PASS, bool BF16, int BM, int BN, int WM, int WN, int VEC, int STAGES>
__global__ void __launch_bounds__(WM * WN * 32) k_tc_conv(tc_args p) {
  constexpr int T = WM * WN * 32;
  constexpr int FM = BM / WM / 16, FN = BN / WN / 16;
  constexpr int LDA = tc_lda(PASS, BM, BF16), LDB = tc_ldb(PASS, BN, BF16);
  constexpr int SB = tc_stage_bytes(PASS, BM, BN, BF16), AB = tc_a_bytes(PASS, BM, BF16);
  static_assert(FM * 16 * WM == BM && FN * 16 * WN == BN, "warp tiles must be 16-multiples");
  static_assert(BF16 ? STAGES == 2 : STAGES >= 2, "bf16: double buffer; tf32: a ring");
  typedef tc_mma<BF16, PASS> MM;
  typedef typename MM::E E;
  typedef typename tc_loaders<PASS, BM, BN, T, VEC>::A LA;
  typedef typename tc_loaders<PASS, BM, BN, T, VEC>::B LB;
  extern __shared__ __align__(128) unsigned char tc_smem[];

  const cnn_conv_desc &d = p.d;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  tc_block b;
  int M, N, KT, split;
  if (!tc_setup<PASS, BM, BN>(p, blockIdx.x, blockIdx.y, blockIdx.z, b, M, N, KT, split))
    return; /* block-uniform, before any barrier */

  LA la;
  LB lb;
  la.init(d, b, p.a, tid);
  lb.init(d, b, p.b, tid);
  /* smem element offset of this thread's first vector in each operand tile */
  const int a_off = (tid / LA::S::VPL) * LDA + (tid % LA::S::VPL) * VEC;
  const int b_off = (tid / LB::S::VPL) * LDB + (tid % LB::S::VPL) * VEC;
  int wm0, wn0;
  tc_warp_origin<BM, BN, WM, WN>(warp, wm0, wn0);

  typename MM::FC acc[FM][FN];
#pragma unroll
  for (int i = 0; i < FM; i++)
#pragma unroll
    for (int j = 0; j < FN; j++) nvcuda::wmma::fill_fragment(acc[i][j], 0.0f);

  if constexpr (!BF16) {
    /* cp.async ring: tile kt lives in stage kt % STAGES; STAGES - 1 tiles in flight */
#pragma unroll
    for (int st = 0; st < STAGES - 1; st++) {
      if (st < KT) {
        tc_issue<VEC, LDA>(la, d, b, (float *)(tc_smem + st * SB) + a_off, p.a);
        tc_issue<VEC, LDB>(lb, d, b, (float *)(tc_smem + st * SB + AB) + b_off, p.b);
      }
      tc_cp_commit(); /* possibly empty: keeps the group count uniform */
    }
    for (int kt = 0; kt < KT; kt++) {
      tc_cp_wait<STAGES - 2>(); /* this thread's copies of tile kt have landed */
      __syncthreads();          /* everyone's have; and stage (kt-1) % STAGES is free */
      const int nk = kt + STAGES - 1;
      if (nk < KT) {
        unsigned char *st = tc_smem + (nk % STAGES) * SB;
        tc_issue<VEC, LDA>(la, d, b, (float *)st + a_off, p.a);
        tc_issue<VEC, LDB>(lb, d, b, (float *)(st + AB) + b_off, p.b);
      }
      tc_cp_commit();
      tc_compute<PASS, BF16, BM, BN, WM, WN>(tc_smem + (kt % STAGES) * SB, wm0, wn0, acc);
    }
    tc_cp_wait<0>();
  } else {
    /* registers -> bf16 double buffer: tile kt + 1 is read from global while the
     * tensor cores work on tile kt */
    float ra[LA::S::ITER][VEC], rb[LB::S::ITER][VEC];
    if (KT > 0) {
      tc_fetch<VEC>(la, d, b, ra);
      tc_fetch<VEC>(lb, d, b, rb);
      tc_put<VEC, LDA, LA>((E *)tc_smem + a_off, ra);
      tc_put<VEC, LDB, LB>((E *)(tc_smem + AB) + b_off, rb);
    }
    __syncthreads();
    for (int kt = 0; kt < KT; kt++) {
      const bool more = kt + 1 < KT;
      if (more) {
        tc_fetch<VEC>(la, d, b, ra);
        tc_fetch<VEC>(lb, d, b, rb);
      }
      tc_compute<PASS, BF16, BM, BN, WM, WN>(tc_smem + (kt & 1) * SB, wm0, wn0, acc);
      if (more) { /* the other buffer was last read in iteration kt - 1: barrier passed */
        unsigned char *st = tc_smem + ((kt + 1) & 1) * SB;
        tc_put<VEC, LDA, LA>((E *)st + a_off, ra);
        tc_put<VEC, LDB, LB>((E *)(st + AB) + b_off, rb);
      }
      __syncthreads();
    }
  }

  /* epilogue: each 16x16 accumulator goes through this warp's staging tile so that
   * lanes write whole rows of 16 with bounds checks; every output element has
   * exactly one writer */
  float *stg = (float *)(tc_smem + STAGES * SB) + warp * 16 * TC_LDS;
#pragma unroll
  for (int i = 0; i < FM; i++)
#pragma unroll
    for (int j = 0; j < FN; j++) {
      nvcuda::wmma::store_matrix_sync(stg, acc[i][j], TC_LDS, nvcuda::wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int rr = e >> 4, cc = e & 15;
        const int m = b.m0 + wm0 + i * 16 + rr, n = b.n0 + wn0 + j * 16 + cc;
        if (m >= M || n >= N) continue;
        const float v = stg[rr * TC_LDS + cc];
        const size_t o = tc_out_off<PASS>(d, b, split, m, n);
        if constexpr (PASS == 0) {
          const int ko = b.g * b.kg + n;
          p.out[o] = act_f(p.act, p.alpha, v + (p.bias ? p.bias[ko] : 0.0f));
        } else if constexpr (PASS == 1) {
          p.out[o] += v; /* dx accumulates; this thread is its only writer */
        } else {
          p.out[o] = v;
        }
      }
      __syncwarp(); /* the next store_matrix_sync overwrites stg */
    }
}

#else /* __CUDA_ARCH__ < 800: never launched (supports() needs cc >= 8.0) */

template <int PASS, bool BF16, int BM, int BN, int WM, int WN, int VEC, int STAGES>
__global__ void k_tc_conv(tc_args p) {
  (void)p;
}

#endif /* __CUDA_ARCH__ >= 800 */
#endif
