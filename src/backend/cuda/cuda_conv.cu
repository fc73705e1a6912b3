/* CUDA convolution, fp32, NHWC activations and KRSC weights [k][r][s][c/groups].
 *
 * Two engines per direction:
 *  - tiled implicit GEMM: a 256-thread block computes a 64 x 64 output tile
 *    (each thread 4 x 4) and walks the reduction in steps of 16, staging both
 *    operands in shared memory; the im2col operand is gathered on the fly
 *    (stride, padding, dilation, groups via blockIdx.z);
 *  - direct: one thread per output element, for small channel counts per group
 *    (depthwise, LeNet-sized layers) where a 64-wide tile would be mostly empty.
 *
 *   forward      y[m, ko]   = sum_{r,s,ci} x[im2col(m, r, s), ci] w[ko, r, s, ci]
 *                M = n*oh*ow pixels, N = k/groups filters, K = r*s*c/groups
 *   backward dx  dx[m, ci] += sum_{r,s,ko} dy[pixel reading (m, r, s), ko] w[ko, r, s, ci]
 *                M = n*h*w input pixels, N = c/groups, K = r*s*k/groups;
 *                each dx element is gathered by exactly one thread: no atomics
 *   backward dw  dw[ko, r, s, ci] = sum_p dy[p, ko] x[im2col(p, r, s), ci]
 *                M = k/groups, N = r*s*c/groups, K = n*oh*ow, split over S
 *                chunks of pixels into a workspace and summed in a fixed order
 *                (deterministic, no float atomics); db is a column sum of dy. */
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_device.cuh"
#include "backend/cuda/cuda_engines.h"

#define TB_M 64
#define TB_N 64
#define TB_K 16
#define TB_THREADS 256
/* below this many channels per group the direct kernels are used */
#define TILED_MIN_CH 8
/* the direct forward stages the weights in shared memory up to this size (the
 * default per-block limit, so no opt-in attribute is needed) */
#define DIRECT_SMEM_MAX ((size_t)48 << 10)

/* acc[i][j] += sum_kk As[kk][ty + 16 i] * Bs[kk][tx + 16 j] */
static __device__ __forceinline__ void tile_mma(const float (*As)[TB_M + 1],
                                                const float (*Bs)[TB_N + 1], int ty, int tx,
                                                float acc[4][4]) {
#pragma unroll
  for (int kk = 0; kk < TB_K; kk++) {
    float a[4], b[4];
#pragma unroll
    for (int i = 0; i < 4; i++) a[i] = As[kk][ty + 16 * i];
#pragma unroll
    for (int j = 0; j < 4; j++) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
      for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
  }
}

/* ---- forward ------------------------------------------------------------------ */

static __global__ void __launch_bounds__(TB_THREADS)
    k_conv_fwd_tiled(cnn_conv_desc d, const float *__restrict__ x, const float *__restrict__ w,
                     const float *__restrict__ bias, int act, float alpha,
                     float *__restrict__ y) {
  __shared__ float As[TB_K][TB_M + 1];
  __shared__ float Bs[TB_K][TB_N + 1];
  const int cg = d.c / d.groups, kg = d.k / d.groups, g = blockIdx.z;
  const int M = d.n * d.oh * d.ow, K = d.r * d.s * cg;
  const int m0 = blockIdx.x * TB_M, n0 = blockIdx.y * TB_N;
  const int tid = threadIdx.x, lo = tid & 15, hi = tid >> 4; /* lo: k (load) / n (compute) */
  const float *xg = x + (size_t)g * cg;
  const float *wg = w + (size_t)g * kg * K;
  int a_nb[4], a_ih[4], a_iw[4];
  bool a_ok[4];
#pragma unroll
  for (int l = 0; l < 4; l++) {
    int m = m0 + hi + 16 * l;
    a_ok[l] = m < M;
    int mm = a_ok[l] ? m : 0;
    int ox = mm % d.ow, t = mm / d.ow;
    int oy = t % d.oh;
    a_nb[l] = t / d.oh;
    a_ih[l] = oy * d.stride_h - d.pad_h;
    a_iw[l] = ox * d.stride_w - d.pad_w;
  }
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;

  for (int k0 = 0; k0 < K; k0 += TB_K) {
    const int kk = k0 + lo;
    const bool kok = kk < K;
    int ci = 0, ri = 0, si = 0;
    if (kok) {
      int rs = kk / cg;
      ci = kk - rs * cg;
      ri = rs / d.s;
      si = rs - ri * d.s;
    }
    const int dih = ri * d.dil_h, diw = si * d.dil_w;
#pragma unroll
    for (int l = 0; l < 4; l++) {
      const int ih = a_ih[l] + dih, iw = a_iw[l] + diw;
      float v = 0.0f;
      if (kok && a_ok[l] && ih >= 0 && ih < d.h && iw >= 0 && iw < d.w)
        v = xg[((size_t)(a_nb[l] * d.h + ih) * d.w + iw) * d.c + ci];
      As[lo][hi + 16 * l] = v;
      const int nn = n0 + hi + 16 * l;
      Bs[lo][hi + 16 * l] = (kok && nn < kg) ? wg[(size_t)nn * K + kk] : 0.0f;
    }
    __syncthreads();
    tile_mma(As, Bs, hi, lo, acc);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int m = m0 + hi + 16 * i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int nn = n0 + lo + 16 * j;
      if (nn >= kg) continue;
      const int ko = g * kg + nn;
      y[(size_t)m * d.k + ko] = act_f(act, alpha, acc[i][j] + (bias ? bias[ko] : 0.0f));
    }
  }
}

/* one thread per y element */
/* The direct forward over outputs i (grid-stride), weights of filter ko at
 * wt + ko * wstride: global memory (wstride K) or a shared-memory copy. */
static __device__ __forceinline__ void conv_fwd_direct_body(const cnn_conv_desc &d,
                                                            const float *__restrict__ x,
                                                            const float *wt, int wstride,
                                                            const float *__restrict__ bias,
                                                            int act, float alpha,
                                                            float *__restrict__ y) {
  const int cg = d.c / d.groups, kg = d.k / d.groups;
  const size_t total = (size_t)d.n * d.oh * d.ow * d.k;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (size_t)gridDim.x * blockDim.x) {
    const int ko = (int)(i % d.k);
    const size_t m = i / d.k;
    const int ox = (int)(m % d.ow);
    const size_t t = m / d.ow;
    const int oy = (int)(t % d.oh);
    const int nb = (int)(t / d.oh);
    const int g = ko / kg;
    const float *wk = wt + (size_t)ko * wstride;
    float sum = 0.0f;
    for (int ri = 0; ri < d.r; ri++) {
      const int ih = oy * d.stride_h - d.pad_h + ri * d.dil_h;
      if (ih < 0 || ih >= d.h) continue;
      for (int si = 0; si < d.s; si++) {
        const int iw = ox * d.stride_w - d.pad_w + si * d.dil_w;
        if (iw < 0 || iw >= d.w) continue;
        const float *xp = x + ((size_t)(nb * d.h + ih) * d.w + iw) * d.c + (size_t)g * cg;
        const float *wp = wk + (ri * d.s + si) * cg;
        for (int ci = 0; ci < cg; ci++) sum = fmaf(xp[ci], wp[ci], sum);
      }
    }
    y[i] = act_f(act, alpha, sum + (bias ? bias[ko] : 0.0f));
  }
}

static __global__ void k_conv_fwd_direct(cnn_conv_desc d, const float *__restrict__ x,
                                         const float *__restrict__ w,
                                         const float *__restrict__ bias, int act, float alpha,
                                         float *__restrict__ y) {
  conv_fwd_direct_body(d, x, w, d.r * d.s * (d.c / d.groups), bias, act, alpha, y);
}

/* The same with the whole weight tensor staged in shared memory (when it fits): in
 * the kernel above consecutive threads read weights K floats apart (one transaction
 * per thread); here the block copies w once with consecutive threads on consecutive
 * floats, and rows are padded to an odd stride so that threads of a warp, which read
 * rows ko, ko+1, ... at the same column, fall in different banks. */
static __global__ void k_conv_fwd_direct_smem(cnn_conv_desc d, const float *__restrict__ x,
                                              const float *__restrict__ w,
                                              const float *__restrict__ bias, int act,
                                              float alpha, float *__restrict__ y) {
  extern __shared__ float ws_[]; /* [k][Kp] */
  const int K = d.r * d.s * (d.c / d.groups), Kp = K | 1;
  for (int j = threadIdx.x; j < d.k * K; j += blockDim.x) ws_[(j / K) * Kp + j % K] = w[j];
  __syncthreads();
  conv_fwd_direct_body(d, x, ws_, Kp, bias, act, alpha, y);
}

/* ---- backward data ------------------------------------------------------------ */

static __global__ void __launch_bounds__(TB_THREADS)
    k_conv_bwd_data_tiled(cnn_conv_desc d, const float *__restrict__ dy,
                          const float *__restrict__ w, float *__restrict__ dx) {
  __shared__ float As[TB_K][TB_M + 1];
  __shared__ float Bs[TB_K][TB_N + 1];
  const int cg = d.c / d.groups, kg = d.k / d.groups, g = blockIdx.z;
  const int M = d.n * d.h * d.w, K = d.r * d.s * kg, Kw = d.r * d.s * cg;
  const int m0 = blockIdx.x * TB_M, n0 = blockIdx.y * TB_N;
  const int tid = threadIdx.x, lo = tid & 15, hi = tid >> 4;
  const int bn = tid & 63, bk = tid >> 6; /* B loads: consecutive threads, consecutive ci */
  const float *dyg = dy + (size_t)g * kg;
  const float *wg = w + (size_t)g * kg * Kw;
  int a_nb[4], a_ihp[4], a_iwp[4];
  bool a_ok[4];
#pragma unroll
  for (int l = 0; l < 4; l++) {
    int m = m0 + hi + 16 * l;
    a_ok[l] = m < M;
    int mm = a_ok[l] ? m : 0;
    int iw = mm % d.w, t = mm / d.w;
    int ih = t % d.h;
    a_nb[l] = t / d.h;
    a_ihp[l] = ih + d.pad_h;
    a_iwp[l] = iw + d.pad_w;
  }
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;

  for (int k0 = 0; k0 < K; k0 += TB_K) {
    /* A: dy gathered at the output pixel that read input pixel m through (r, s) */
    {
      const int kk = k0 + lo;
      const bool kok = kk < K;
      int ko = 0, ri = 0, si = 0;
      if (kok) {
        int rs = kk / kg;
        ko = kk - rs * kg;
        ri = rs / d.s;
        si = rs - ri * d.s;
      }
      const int dih = ri * d.dil_h, diw = si * d.dil_w;
#pragma unroll
      for (int l = 0; l < 4; l++) {
        float v = 0.0f;
        const int ty = a_ihp[l] - dih, tx = a_iwp[l] - diw;
        if (kok && a_ok[l] && ty >= 0 && tx >= 0 && ty % d.stride_h == 0 &&
            tx % d.stride_w == 0) {
          const int oy = ty / d.stride_h, ox = tx / d.stride_w;
          if (oy < d.oh && ox < d.ow)
            v = dyg[((size_t)(a_nb[l] * d.oh + oy) * d.ow + ox) * d.k + ko];
        }
        As[lo][hi + 16 * l] = v;
      }
    }
    /* B: w[g*kg + ko][r][s][ci] */
#pragma unroll
    for (int l = 0; l < 4; l++) {
      const int kr = bk + 4 * l, kk = k0 + kr, nn = n0 + bn;
      float v = 0.0f;
      if (kk < K && nn < cg) {
        int rs = kk / kg;
        int ko = kk - rs * kg;
        v = wg[(size_t)ko * Kw + (size_t)rs * cg + nn];
      }
      Bs[kr][bn] = v;
    }
    __syncthreads();
    tile_mma(As, Bs, hi, lo, acc);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int m = m0 + hi + 16 * i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int nn = n0 + lo + 16 * j;
      if (nn >= cg) continue;
      dx[(size_t)m * d.c + (size_t)g * cg + nn] += acc[i][j];
    }
  }
}

/* one thread per dx element, gathering from every (output pixel, filter) that read it */
static __global__ void k_conv_bwd_data_direct(cnn_conv_desc d, const float *__restrict__ dy,
                                              const float *__restrict__ w,
                                              float *__restrict__ dx) {
  const int cg = d.c / d.groups, kg = d.k / d.groups;
  const int Kw = d.r * d.s * cg;
  const size_t total = (size_t)d.n * d.h * d.w * d.c;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (size_t)gridDim.x * blockDim.x) {
    const int ch = (int)(i % d.c);
    const size_t m = i / d.c;
    const int iw = (int)(m % d.w);
    const size_t t = m / d.w;
    const int ih = (int)(t % d.h);
    const int nb = (int)(t / d.h);
    const int g = ch / cg, ci = ch - g * cg;
    float sum = 0.0f;
    for (int ri = 0; ri < d.r; ri++) {
      const int ty = ih + d.pad_h - ri * d.dil_h;
      if (ty < 0 || ty % d.stride_h) continue;
      const int oy = ty / d.stride_h;
      if (oy >= d.oh) continue;
      for (int si = 0; si < d.s; si++) {
        const int tx = iw + d.pad_w - si * d.dil_w;
        if (tx < 0 || tx % d.stride_w) continue;
        const int ox = tx / d.stride_w;
        if (ox >= d.ow) continue;
        const float *dyp = dy + ((size_t)(nb * d.oh + oy) * d.ow + ox) * d.k + (size_t)g * kg;
        const float *wp = w + (size_t)g * kg * Kw + (ri * d.s + si) * cg + ci;
        for (int ko = 0; ko < kg; ko++) sum = fmaf(dyp[ko], wp[(size_t)ko * Kw], sum);
      }
    }
    dx[i] += sum;
  }
}

/* ---- backward filter ------------------------------------------------------------ */

/* grid (ceil(kg/64), ceil(Kw/64), groups * splits); block `split` reduces pixels
 * [split*chunk, min(P, (split+1)*chunk)) into out + split * wcount */
static __global__ void __launch_bounds__(TB_THREADS)
    k_conv_bwd_filter_tiled(cnn_conv_desc d, int chunk, const float *__restrict__ x,
                            const float *__restrict__ dy, float *__restrict__ out) {
  __shared__ float As[TB_K][TB_M + 1];
  __shared__ float Bs[TB_K][TB_N + 1];
  const int cg = d.c / d.groups, kg = d.k / d.groups;
  const int g = blockIdx.z % d.groups, split = blockIdx.z / d.groups;
  const int P = d.n * d.oh * d.ow, Kw = d.r * d.s * cg;
  const int m0 = blockIdx.x * TB_M, n0 = blockIdx.y * TB_N;
  const int p_begin = split * chunk;
  const int p_end = P - p_begin < chunk ? P : p_begin + chunk;
  const int tid = threadIdx.x, lo = tid & 15, hi = tid >> 4;
  const int lm = tid & 63, lp = tid >> 6; /* loads: 64 consecutive columns x 4 pixels */
  const size_t wcount = (size_t)d.k * Kw;
  const float *dyg = dy + (size_t)g * kg;
  const float *xg = x + (size_t)g * cg;
  /* this thread's B column kk = n0 + lm: fixed (r, s, ci) */
  const int kk = n0 + lm;
  const bool kok = kk < Kw;
  int ci = 0, ri = 0, si = 0;
  if (kok) {
    int rs = kk / cg;
    ci = kk - rs * cg;
    ri = rs / d.s;
    si = rs - ri * d.s;
  }
  const int dih = ri * d.dil_h - d.pad_h, diw = si * d.dil_w - d.pad_w;
  const bool mok = m0 + lm < kg;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;

  for (int p0 = p_begin; p0 < p_end; p0 += TB_K) {
#pragma unroll
    for (int l = 0; l < 4; l++) {
      const int pr = lp + 4 * l, p = p0 + pr;
      float a = 0.0f, b = 0.0f;
      if (p < p_end) {
        if (mok) a = dyg[(size_t)p * d.k + m0 + lm];
        if (kok) {
          int ox = p % d.ow, t = p / d.ow;
          int oy = t % d.oh, nb = t / d.oh;
          int ih = oy * d.stride_h + dih, iw = ox * d.stride_w + diw;
          if (ih >= 0 && ih < d.h && iw >= 0 && iw < d.w)
            b = xg[((size_t)(nb * d.h + ih) * d.w + iw) * d.c + ci];
        }
      }
      As[pr][lm] = a;
      Bs[pr][lm] = b;
    }
    __syncthreads();
    tile_mma(As, Bs, hi, lo, acc);
    __syncthreads();
  }

  float *o = out + (size_t)split * wcount;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int m = m0 + hi + 16 * i;
    if (m >= kg) continue;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int nn = n0 + lo + 16 * j;
      if (nn >= Kw) continue;
      o[(size_t)(g * kg + m) * Kw + nn] = acc[i][j];
    }
  }
}

#define DF_COLS 32
#define DF_LANES 8
/* grid (ceil(k/32), min(r*s*cg, 65535), splits), block (32, 8): 32 consecutive
 * filters share one (r, s, ci); 8 lanes stride over the split's pixels in double;
 * lanes are summed in order */
static __global__ void k_conv_bwd_filter_direct(cnn_conv_desc d, int chunk,
                                                const float *__restrict__ x,
                                                const float *__restrict__ dy,
                                                float *__restrict__ out) {
  __shared__ double red[DF_LANES][DF_COLS];
  const int cg = d.c / d.groups, kg = d.k / d.groups;
  const int P = d.n * d.oh * d.ow, Kw = d.r * d.s * cg;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int ko = blockIdx.x * DF_COLS + tx;
  const int split = blockIdx.z;
  const int p_begin = split * chunk;
  const int p_end = P - p_begin < chunk ? P : p_begin + chunk;
  float *o = out + (size_t)split * ((size_t)d.k * Kw);
  for (int rsc = blockIdx.y; rsc < Kw; rsc += gridDim.y) { /* uniform per block */
    const int rs = rsc / cg, ci = rsc - rs * cg;
    const int ri = rs / d.s, si = rs - ri * d.s;
    double acc = 0.0;
    if (ko < d.k) {
      const int ch = (ko / kg) * cg + ci;
      const int dih = ri * d.dil_h - d.pad_h, diw = si * d.dil_w - d.pad_w;
      for (int p = p_begin + ty; p < p_end; p += DF_LANES) {
        int ox = p % d.ow, t = p / d.ow;
        int oy = t % d.oh, nb = t / d.oh;
        int ih = oy * d.stride_h + dih, iw = ox * d.stride_w + diw;
        if (ih < 0 || ih >= d.h || iw < 0 || iw >= d.w) continue;
        acc += (double)dy[(size_t)p * d.k + ko] *
               (double)x[((size_t)(nb * d.h + ih) * d.w + iw) * d.c + ch];
      }
    }
    red[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && ko < d.k) {
      double sum = 0.0;
      for (int l = 0; l < DF_LANES; l++) sum += red[l][tx];
      o[(size_t)ko * Kw + rsc] = (float)sum;
    }
    __syncthreads(); /* red is reused by the next rsc */
  }
}

/* dw[i] = sum over splits, in order */
static __global__ void k_sum_splits(size_t wcount, int splits, const float *__restrict__ part,
                                    float *__restrict__ dw) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < wcount;
       i += (size_t)gridDim.x * blockDim.x) {
    float s = 0.0f;
    for (int sp = 0; sp < splits; sp++) s += part[(size_t)sp * wcount + i];
    dw[i] = s;
  }
}

/* the end of a split backward-filter, shared by the engines that split over pixels:
 * dw = the slabs summed in order (splits > 1), db = column sums of dy viewed as
 * [P, k] (bias_grad: deterministic); both overwrite */
extern "C" cnn_status cnn_cuda_conv_filter_finish(cnn_cuda_ctx *ctx, size_t wcount, int splits,
                                                  const float *slabs, float *dw, size_t P, int k,
                                                  const float *dy, float *db) {
  if (splits > 1) {
    k_sum_splits<<<cnn_cuda_blocks(ctx, wcount), CNN_CUDA_THREADS, 0, ctx->stream>>>(
        wcount, splits, slabs, dw);
    LAUNCH_CHECK("k_sum_splits");
  }
  /* bias_grad's scratch may be the slabs' (stream order makes that safe) */
  return db ? cnn_cuda_bias_grad(ctx, P, (size_t)k, dy, db) : CNN_OK;
}

/* ---- planning ---------------------------------------------------------------------- */

static cnn_status check_desc(const cnn_conv_desc *d, const char *op) {
  if (!d) return cnn_error(CNN_ERR_ARG, "cuda %s: descriptor is NULL", op);
  if (d->n < 0 || d->h <= 0 || d->w <= 0 || d->c <= 0 || d->k <= 0 || d->r <= 0 || d->s <= 0 ||
      d->oh < 0 || d->ow < 0 || d->stride_h <= 0 || d->stride_w <= 0 || d->dil_h <= 0 ||
      d->dil_w <= 0 || d->pad_h < 0 || d->pad_w < 0 || d->groups <= 0 ||
      d->c % d->groups != 0 || d->k % d->groups != 0)
    return cnn_error(CNN_ERR_ARG,
                     "cuda %s: bad conv shape n=%d h=%d w=%d c=%d k=%d r=%d s=%d oh=%d ow=%d "
                     "stride=%d,%d pad=%d,%d dil=%d,%d groups=%d",
                     op, d->n, d->h, d->w, d->c, d->k, d->r, d->s, d->oh, d->ow, d->stride_h,
                     d->stride_w, d->pad_h, d->pad_w, d->dil_h, d->dil_w, d->groups);
  /* the tiled kernels index pixels and im2col rows with int, and form indices up
   * to one tile (64) past the last one: keep that headroom below INT_MAX */
  const double lim = 2147483647.0 - 2.0 * TB_M;
  if ((double)d->n * d->h * d->w >= lim || (double)d->n * d->oh * d->ow >= lim ||
      (double)d->r * d->s * d->c >= lim || (double)d->r * d->s * d->k >= lim)
    return cnn_error(CNN_ERR_SHAPE, "cuda %s: conv shape too large for 32-bit indexing", op);
  return CNN_OK;
}

static unsigned ceil_div_u(long long a, long long b) { return (unsigned)((a + b - 1) / b); }

/* gridDim.y and gridDim.z are limited to 65535 on every device: the tiled
 * engines put the N tiles in y and the groups in z, so shapes beyond either
 * limit take the direct kernels (grid-stride, no such limit) */
static int tiles_fit_y(long long n) { return (n + TB_N - 1) / TB_N <= 65535; }

static int use_tiled_fwd(const cnn_conv_desc *d) {
  const int kg = d->k / d->groups;
  return kg >= TILED_MIN_CH && d->groups <= 65535 && tiles_fit_y(kg);
}

static int use_tiled_bwd_data(const cnn_conv_desc *d) {
  const int cg = d->c / d->groups;
  return cg >= TILED_MIN_CH && d->groups <= 65535 && tiles_fit_y(cg);
}

static int use_tiled_bwd_filter(const cnn_conv_desc *d) {
  return d->k / d->groups >= TILED_MIN_CH && d->groups <= 65535 &&
         tiles_fit_y((long long)d->r * d->s * (d->c / d->groups));
}

/* How bwd_filter splits the n*oh*ow pixels: `splits` chunks of `chunk` pixels
 * (a multiple of TB_K), enough blocks to fill the device a few times. */
static void bwd_filter_plan(const cnn_cuda_ctx *ctx, const cnn_conv_desc *d, int *splits,
                            int *chunk) {
  const long long P = (long long)d->n * d->oh * d->ow;
  const int cg = d->c / d->groups, kg = d->k / d->groups;
  const long long target = 4LL * (ctx->sms > 0 ? ctx->sms : 1);
  long long tiles, steps, s, per, max_s;
  if (use_tiled_bwd_filter(d)) {
    tiles = (long long)ceil_div_u(kg, TB_M) * ceil_div_u((long long)d->r * d->s * cg, TB_N) *
            d->groups;
    max_s = 65535 / d->groups;
  } else {
    tiles = (long long)ceil_div_u(d->k, DF_COLS) * d->r * d->s * cg;
    max_s = 65535;
  }
  steps = (P + TB_K - 1) / TB_K;           /* pixel steps of 16 */
  s = (target + tiles - 1) / tiles;
  if (s > steps / 4) s = steps / 4;        /* at least 64 pixels per split */
  if (s > 256) s = 256;
  if (s > max_s) s = max_s;
  if (s < 1) s = 1;
  per = (steps + s - 1) / s;               /* steps per split */
  if (per < 1) per = 1;
  *chunk = (int)(per * TB_K);
  *splits = (int)((steps + per - 1) / per);
  if (*splits < 1) *splits = 1;
}

static size_t simt_workspace_bytes(cnn_cuda_ctx *ctx, const cnn_conv_desc *d) {
  int splits = 1, chunk = 0;
  if (check_desc(d, "conv_workspace") != CNN_OK) {
    cnn_error_clear();
    return 0;
  }
  if ((long long)d->n * d->oh * d->ow == 0) return 0;
  bwd_filter_plan(ctx, d, &splits, &chunk);
  if (splits <= 1) return 0;
  return cnn_cuda_align256((size_t)splits * d->k * d->r * d->s * (d->c / d->groups) *
                           sizeof(float));
}

/* ---- launchers ---------------------------------------------------------------------- */

/* y = act(conv(x, w) + bias): the activation is applied in the epilogue of either
 * engine (LINEAR: act_f is the identity, so conv_fwd is unchanged) */
static cnn_status conv_fwd_impl(cnn_cuda_ctx *ctx, const char *op, const cnn_conv_desc *d,
                                const float *x, const float *w, const float *bias, cnn_act act,
                                float alpha, float *y) {
  CNN_TRY(check_desc(d, op));
  if ((int)act < 0 || (int)act >= CNN_ACT_COUNT)
    return cnn_error(CNN_ERR_ARG, "cuda %s: unknown activation %d", op, (int)act);
  const long long M = (long long)d->n * d->oh * d->ow;
  const int kg = d->k / d->groups;
  if (M == 0) return CNN_OK;
  if (use_tiled_fwd(d)) {
    dim3 grid(ceil_div_u(M, TB_M), ceil_div_u(kg, TB_N), (unsigned)d->groups);
    k_conv_fwd_tiled<<<grid, TB_THREADS, 0, ctx->stream>>>(*d, x, w, bias, (int)act, alpha, y);
    LAUNCH_CHECK("k_conv_fwd_tiled");
  } else {
    size_t total = (size_t)M * d->k;
    const size_t K = (size_t)d->r * d->s * (d->c / d->groups);
    const size_t smem = (size_t)d->k * (K | 1) * sizeof(float);
    if (smem <= DIRECT_SMEM_MAX) {
      k_conv_fwd_direct_smem<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, smem, ctx->stream>>>(
          *d, x, w, bias, (int)act, alpha, y);
      LAUNCH_CHECK("k_conv_fwd_direct_smem");
    } else {
      k_conv_fwd_direct<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(
          *d, x, w, bias, (int)act, alpha, y);
      LAUNCH_CHECK("k_conv_fwd_direct");
    }
  }
  return CNN_OK;
}

static cnn_status simt_bwd_data(cnn_cuda_ctx *ctx, const cnn_conv_desc *d, const float *dy,
                                const float *w, float *dx) {
  CNN_TRY(check_desc(d, "conv_bwd_data"));
  const long long M = (long long)d->n * d->h * d->w;
  const int cg = d->c / d->groups;
  if (M == 0 || (long long)d->oh * d->ow == 0) return CNN_OK; /* dx += 0 */
  if (use_tiled_bwd_data(d)) {
    dim3 grid(ceil_div_u(M, TB_M), ceil_div_u(cg, TB_N), (unsigned)d->groups);
    k_conv_bwd_data_tiled<<<grid, TB_THREADS, 0, ctx->stream>>>(*d, dy, w, dx);
    LAUNCH_CHECK("k_conv_bwd_data_tiled");
  } else {
    size_t total = (size_t)M * d->c;
    k_conv_bwd_data_direct<<<cnn_cuda_blocks(ctx, total), CNN_CUDA_THREADS, 0, ctx->stream>>>(
        *d, dy, w, dx);
    LAUNCH_CHECK("k_conv_bwd_data_direct");
  }
  return CNN_OK;
}

static cnn_status simt_bwd_filter(cnn_cuda_ctx *ctx, const cnn_conv_desc *d, const float *x,
                                  const float *dy, float *dw, float *db, void *ws,
                                  size_t ws_bytes) {
  CNN_TRY(check_desc(d, "conv_bwd_filter"));
  const long long P = (long long)d->n * d->oh * d->ow;
  const int cg = d->c / d->groups, kg = d->k / d->groups;
  const int Kw = d->r * d->s * cg;
  const size_t wcount = (size_t)d->k * Kw;
  int splits = 1, chunk = 0;

  if (P == 0) { /* no pixels: the gradients are zero (overwrite) */
    CUDA_CHECK(cudaMemsetAsync(dw, 0, wcount * sizeof(float), ctx->stream));
    if (db) CUDA_CHECK(cudaMemsetAsync(db, 0, (size_t)d->k * sizeof(float), ctx->stream));
    return CNN_OK;
  }
  bwd_filter_plan(ctx, d, &splits, &chunk);
  if (splits > 1 && ws && ws_bytes < (size_t)splits * wcount * sizeof(float)) {
    /* a workspace sized for a larger batch can still be too small here: splits is
     * not monotonic in the pixel count (e.g. 1025 steps of 16 pixels give 205
     * splits, 1024 give 256). Use as many splits as it holds (the contract), rather
     * than growing the shared scratch, which allocates and synchronises mid-step. */
    const long long steps = (P + TB_K - 1) / TB_K;
    long long fit = (long long)(ws_bytes / (wcount * sizeof(float)));
    if (fit < 1) fit = 1;
    const long long per = (steps + fit - 1) / fit;
    chunk = (int)(per * TB_K);
    splits = (int)((steps + per - 1) / per);
  }
  float *out = dw;
  if (splits > 1) {
    size_t need = (size_t)splits * wcount * sizeof(float);
    if (ws && ws_bytes >= need) {
      out = (float *)ws;
    } else {
      void *s = NULL;
      CNN_TRY(cnn_cuda_scratch(ctx, need, &s));
      out = (float *)s;
    }
  }
  if (use_tiled_bwd_filter(d)) {
    dim3 grid(ceil_div_u(kg, TB_M), ceil_div_u(Kw, TB_N), (unsigned)(d->groups * splits));
    k_conv_bwd_filter_tiled<<<grid, TB_THREADS, 0, ctx->stream>>>(*d, chunk, x, dy, out);
    LAUNCH_CHECK("k_conv_bwd_filter_tiled");
  } else {
    dim3 grid(ceil_div_u(d->k, DF_COLS), (unsigned)(Kw < 65535 ? Kw : 65535), (unsigned)splits);
    k_conv_bwd_filter_direct<<<grid, dim3(DF_COLS, DF_LANES), 0, ctx->stream>>>(*d, chunk, x, dy,
                                                                               out);
    LAUNCH_CHECK("k_conv_bwd_filter_direct");
  }
  return cnn_cuda_conv_filter_finish(ctx, wcount, splits, out, dw, (size_t)P, d->k, dy, db);
}

/* ---- the simt engine and the backend's conv ops -------------------------------------- */

/* simt runs every shape in every math (f32 is valid for tf32 and bf16) */
static int simt_supports(cnn_cuda_ctx *ctx, const cnn_cuda_engine *e, const cnn_conv_desc *d,
                         cnn_conv_dir dir) {
  (void)ctx;
  (void)e;
  (void)dir;
  if (check_desc(d, "conv") != CNN_OK) {
    cnn_error_clear();
    return 0;
  }
  return 1;
}

static size_t simt_workspace(cnn_cuda_ctx *ctx, const cnn_cuda_engine *e, const cnn_conv_desc *d,
                             cnn_conv_dir dir) {
  (void)e;
  return dir == CNN_CONV_BWD_FILTER ? simt_workspace_bytes(ctx, d) : 0;
}

static cnn_status simt_run(cnn_cuda_ctx *ctx, const cnn_cuda_engine *e, const cnn_cuda_conv_call *c) {
  (void)e;
  switch (c->dir) {
  case CNN_CONV_FWD:
    return conv_fwd_impl(ctx, c->act == CNN_ACT_LINEAR ? "conv_fwd" : "conv_fwd_act", &c->d, c->x,
                         c->w, c->bias, c->act, c->alpha, c->y);
  case CNN_CONV_BWD_DATA:
    return simt_bwd_data(ctx, &c->d, c->dy, c->w, c->dx);
  case CNN_CONV_BWD_FILTER:
    return simt_bwd_filter(ctx, &c->d, c->x, c->dy, c->dw, c->db, c->ws, c->ws_bytes);
  }
  return cnn_error(CNN_ERR_ARG, "cuda conv: unknown pass %d", (int)c->dir);
}

static const cnn_cuda_engine simt_engine[] = {
    {"simt", CNN_CUDA_FAM_SIMT, 0, simt_supports, simt_workspace, simt_run},
};

extern "C" int cnn_cuda_simt_engines(const cnn_cuda_engine **list) {
  *list = simt_engine;
  return 1;
}

/* what the three passes of d need: simt's own, or the tuner's reservation for the
 * faster engines (at most the workspace budget), whichever is larger */
extern "C" size_t cnn_cuda_conv_workspace(void *vctx, const cnn_conv_desc *d) {
  cnn_cuda_ctx *ctx = CNN_CUDA_CTX(vctx);
  if (check_desc(d, "conv_workspace") != CNN_OK) {
    cnn_error_clear();
    return 0;
  }
  size_t own = simt_workspace_bytes(ctx, d), res = cnn_cuda_conv_ws_reserve(ctx, d);
  return own > res ? own : res;
}

/* the call every conv op hands to the tuner's dispatch */
static cnn_cuda_conv_call conv_call(const cnn_conv_desc *d, cnn_conv_dir dir, void *ws,
                                    size_t ws_bytes) {
  cnn_cuda_conv_call c = {};
  c.d = *d;
  c.dir = dir;
  c.act = CNN_ACT_LINEAR;
  c.ws = ws;
  c.ws_bytes = ws ? ws_bytes : 0;
  return c;
}

extern "C" cnn_status cnn_cuda_conv_fwd(void *vctx, const cnn_conv_desc *d, const float *x,
                                        const float *w, const float *bias, float *y, void *ws,
                                        size_t ws_bytes) {
  CNN_TRY(check_desc(d, "conv_fwd"));
  cnn_cuda_conv_call c = conv_call(d, CNN_CONV_FWD, ws, ws_bytes);
  c.x = x;
  c.w = w;
  c.bias = bias;
  c.y = y;
  return cnn_cuda_conv_dispatch(CNN_CUDA_CTX(vctx), &c);
}

extern "C" cnn_status cnn_cuda_conv_fwd_act(void *vctx, const cnn_conv_desc *d, const float *x,
                                            const float *w, const float *bias, cnn_act act,
                                            float alpha, float *y, void *ws, size_t ws_bytes) {
  CNN_TRY(check_desc(d, "conv_fwd_act"));
  if ((int)act < 0 || (int)act >= CNN_ACT_COUNT)
    return cnn_error(CNN_ERR_ARG, "cuda conv_fwd_act: unknown activation %d", (int)act);
  cnn_cuda_conv_call c = conv_call(d, CNN_CONV_FWD, ws, ws_bytes);
  c.x = x;
  c.w = w;
  c.bias = bias;
  c.y = y;
  c.act = act;
  c.alpha = alpha;
  return cnn_cuda_conv_dispatch(CNN_CUDA_CTX(vctx), &c);
}

extern "C" cnn_status cnn_cuda_conv_bwd_data(void *vctx, const cnn_conv_desc *d, const float *dy,
                                             const float *w, float *dx, void *ws,
                                             size_t ws_bytes) {
  CNN_TRY(check_desc(d, "conv_bwd_data"));
  cnn_cuda_conv_call c = conv_call(d, CNN_CONV_BWD_DATA, ws, ws_bytes);
  c.dy = dy;
  c.w = w;
  c.dx = dx;
  return cnn_cuda_conv_dispatch(CNN_CUDA_CTX(vctx), &c);
}

extern "C" cnn_status cnn_cuda_conv_bwd_filter(void *vctx, const cnn_conv_desc *d, const float *x,
                                               const float *dy, float *dw, float *db, void *ws,
                                               size_t ws_bytes) {
  CNN_TRY(check_desc(d, "conv_bwd_filter"));
  cnn_cuda_conv_call c = conv_call(d, CNN_CONV_BWD_FILTER, ws, ws_bytes);
  c.x = x;
  c.dy = dy;
  c.dw = dw;
  c.db = db;
  return cnn_cuda_conv_dispatch(CNN_CUDA_CTX(vctx), &c);
}
