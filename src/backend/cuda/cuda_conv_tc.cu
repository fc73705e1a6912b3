/* Our tensor-core convolution engines (family "own"): implicit GEMM on WMMA with
 * TF32 or BF16 operands and f32 accumulation, for the three conv passes and three
 * tile shapes each; the kernel itself is in cuda_conv_tc_kernels.cuh.
 *
 * Engine names: tc-<math>-<pass>-<BMxBN>, math tf32 | bf16, pass fwd | bwd-data |
 * bwd-filter. A TF32 engine also serves BF16 math (its rounding is finer); a BF16
 * engine serves BF16 math only. None serves F32 math, none runs below cc 8.0.
 * bwd-filter splits the pixel sum over `splits` slabs of the workspace and adds
 * them in a fixed order (deterministic); with less workspace than it asked for it
 * uses as many slabs as fit, down to one slab written straight into dw. */
#include <string.h>

#include "backend/cuda/cuda_conv_tc_kernels.cuh"
#include "backend/cuda/cuda_engines.h"

/* below this many channels per group on the tile's N (fwd: k/groups, bwd-data:
 * c/groups) or M (bwd-filter: k/groups) side the tiles would be mostly empty */
#define TC_MIN_CH 8

/* tile shapes: BM x BN, WM x WN warps, cp.async stages for TF32 (BF16 always
 * double-buffers through registers) */
template <int TILE> struct tc_tile;
template <> struct tc_tile<0> { enum { BM = 128, BN = 128, WM = 2, WN = 4, STAGES = 2 }; };
template <> struct tc_tile<1> { enum { BM = 128, BN = 64, WM = 4, WN = 2, STAGES = 3 }; };
template <> struct tc_tile<2> { enum { BM = 64, BN = 64, WM = 2, WN = 2, STAGES = 3 }; };
#define TC_TILES 3

typedef struct tc_tile_rt {
  int bm, bn, warps, stages;
} tc_tile_rt;
static const tc_tile_rt tc_tiles[TC_TILES] = {
    {tc_tile<0>::BM, tc_tile<0>::BN, tc_tile<0>::WM * tc_tile<0>::WN, tc_tile<0>::STAGES},
    {tc_tile<1>::BM, tc_tile<1>::BN, tc_tile<1>::WM * tc_tile<1>::WN, tc_tile<1>::STAGES},
    {tc_tile<2>::BM, tc_tile<2>::BN, tc_tile<2>::WM * tc_tile<2>::WN, tc_tile<2>::STAGES},
};

/* cfg = pass * 6 + bf16 * 3 + tile */
static int cfg_pass(const cnn_cuda_engine *e) { return e->cfg / 6; }
static int cfg_bf16(const cnn_cuda_engine *e) { return (e->cfg / 3) % 2; }
static int cfg_tile(const cnn_cuda_engine *e) { return e->cfg % 3; }

static int tc_smem_of(int pass, int bf16, int tile) {
  const tc_tile_rt *t = &tc_tiles[tile];
  return tc_smem_bytes(pass, t->bm, t->bn, bf16 != 0, bf16 ? 2 : t->stages, t->warps);
}

static long long cdiv_ll(long long a, long long b) { return (a + b - 1) / b; }

/* the shapes the kernels index correctly: a valid descriptor whose pixel and
 * im2col counts stay below INT_MAX with a tile of headroom (indices are int) */
static int tc_desc_ok(const cnn_conv_desc *d) {
  if (!d || d->n < 0 || d->h <= 0 || d->w <= 0 || d->c <= 0 || d->k <= 0 || d->r <= 0 ||
      d->s <= 0 || d->oh < 0 || d->ow < 0 || d->stride_h <= 0 || d->stride_w <= 0 ||
      d->dil_h <= 0 || d->dil_w <= 0 || d->pad_h < 0 || d->pad_w < 0 || d->groups <= 0 ||
      d->c % d->groups != 0 || d->k % d->groups != 0)
    return 0;
  const double lim = 2147483647.0 - 4.0 * 128;
  return (double)d->n * d->h * d->w < lim && (double)d->n * d->oh * d->ow < lim &&
         (double)d->r * d->s * d->c < lim && (double)d->r * d->s * d->k < lim &&
         (double)d->k * d->r * d->s * (d->c / d->groups) < 4e18;
}

/* ---- bwd-filter split plan ---- */

/* `splits` chunks of `chunk` pixels (a multiple of TC_BK): enough blocks to fill
 * the device about twice, each split at least 8 K tiles long */
static void tc_bwf_plan(const cnn_cuda_ctx *ctx, const cnn_conv_desc *d, int tile, int *splits,
                        int *chunk) {
  const long long P = (long long)d->n * d->oh * d->ow;
  const int cg = d->c / d->groups, kg = d->k / d->groups;
  const long long tiles = cdiv_ll(kg, tc_tiles[tile].bm) *
                          cdiv_ll((long long)d->r * d->s * cg, tc_tiles[tile].bn) * d->groups;
  const long long target = 2LL * (ctx->sms > 0 ? ctx->sms : 1);
  const long long steps = cdiv_ll(P > 0 ? P : 1, TC_BK);
  long long s = cdiv_ll(target, tiles);
  if (s > steps / 8) s = steps / 8;
  if (s > 64) s = 64;
  if (s > 65535 / d->groups) s = 65535 / d->groups;
  if (s < 1) s = 1;
  const long long per = cdiv_ll(steps, s);
  *chunk = (int)(per * TC_BK);
  *splits = (int)cdiv_ll(steps, per);
}

/* ---- the engine interface ---- */

static int tc_supports(cnn_cuda_ctx *ctx, const cnn_cuda_engine *e, const cnn_conv_desc *d,
                       cnn_conv_dir dir) {
  const int pass = cfg_pass(e), bf16 = cfg_bf16(e), tile = cfg_tile(e);
  if ((int)dir != pass || ctx->cc_major < 8 || !tc_desc_ok(d)) return 0;
  if (d->math == CNN_MATH_F32 || (bf16 && d->math != CNN_MATH_BF16)) return 0;
  if (d->math != CNN_MATH_TF32 && d->math != CNN_MATH_BF16) return 0;
  const int cg = d->c / d->groups, kg = d->k / d->groups;
  const tc_tile_rt *t = &tc_tiles[tile];
  if ((size_t)tc_smem_of(pass, bf16, tile) > ctx->smem_per_block_optin) return 0;
  switch (pass) {
    case CNN_CONV_FWD: /* grid (M tiles, kg tiles, groups) */
      return kg >= TC_MIN_CH && cdiv_ll(kg, t->bn) <= 65535 && d->groups <= 65535;
    case CNN_CONV_BWD_DATA: /* grid (M tiles, cg tiles, groups * phases) */
      return cg >= TC_MIN_CH && cdiv_ll(cg, t->bn) <= 65535 &&
             (long long)d->groups * d->stride_h * d->stride_w <= 65535;
    case CNN_CONV_BWD_FILTER: /* grid (kg tiles, r*s*cg tiles, groups * splits) */
      return kg >= TC_MIN_CH && cdiv_ll((long long)d->r * d->s * cg, t->bn) <= 65535 &&
             d->groups <= 65535;
    default: return 0;
  }
}

static size_t tc_workspace(cnn_cuda_ctx *ctx, const cnn_cuda_engine *e, const cnn_conv_desc *d,
                           cnn_conv_dir dir) {
  if ((int)dir != CNN_CONV_BWD_FILTER || cfg_pass(e) != CNN_CONV_BWD_FILTER || !tc_desc_ok(d))
    return 0;
  if ((long long)d->n * d->oh * d->ow == 0) return 0;
  int splits = 1, chunk = 0;
  tc_bwf_plan(ctx, d, cfg_tile(e), &splits, &chunk);
  if (splits <= 1) return 0;
  return cnn_cuda_align256((size_t)splits * d->k * d->r * d->s * (d->c / d->groups) *
                           sizeof(float));
}

/* ---- launch ---- */

static const char *const tc_kernel_names[3] = {"k_tc_conv (fwd)", "k_tc_conv (bwd-data)",
                                               "k_tc_conv (bwd-filter)"};

template <int PASS, bool BF16, int TILE, int VEC>
static cnn_status tc_launch(cnn_cuda_ctx *ctx, const tc_args &a, dim3 grid) {
  typedef tc_tile<TILE> TT;
  constexpr int STAGES = BF16 ? 2 : (int)TT::STAGES;
  constexpr int WM = TT::WM, WN = TT::WN, BM = TT::BM, BN = TT::BN;
  constexpr int smem = tc_smem_bytes(PASS, BM, BN, BF16, STAGES, WM * WN);
  if (smem > 48 * 1024) /* above the default: opt in (supports() checked the device limit) */
    CUDA_CHECK(cudaFuncSetAttribute(k_tc_conv<PASS, BF16, BM, BN, WM, WN, VEC, STAGES>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  k_tc_conv<PASS, BF16, BM, BN, WM, WN, VEC, STAGES>
      <<<grid, WM * WN * 32, smem, ctx->stream>>>(a);
  LAUNCH_CHECK(tc_kernel_names[PASS]);
  return CNN_OK;
}

/* VEC = 4 (16-byte copies) needs every vector of 4 channels inside one (r, s) /
 * group slice and 16-byte aligned: both channel counts per group % 4 == 0 and
 * 16-byte aligned base pointers; anything else takes 4-byte copies */
template <int PASS, bool BF16, int TILE>
static cnn_status tc_go(cnn_cuda_ctx *ctx, const tc_args &a, dim3 grid, int vec4) {
  return vec4 ? tc_launch<PASS, BF16, TILE, 4>(ctx, a, grid)
              : tc_launch<PASS, BF16, TILE, 1>(ctx, a, grid);
}

typedef cnn_status (*tc_go_fn)(cnn_cuda_ctx *, const tc_args &, dim3, int);
/* indexed by cfg */
static const tc_go_fn tc_go_table[18] = {
    tc_go<0, false, 0>, tc_go<0, false, 1>, tc_go<0, false, 2>,
    tc_go<0, true, 0>,  tc_go<0, true, 1>,  tc_go<0, true, 2>,
    tc_go<1, false, 0>, tc_go<1, false, 1>, tc_go<1, false, 2>,
    tc_go<1, true, 0>,  tc_go<1, true, 1>,  tc_go<1, true, 2>,
    tc_go<2, false, 0>, tc_go<2, false, 1>, tc_go<2, false, 2>,
    tc_go<2, true, 0>,  tc_go<2, true, 1>,  tc_go<2, true, 2>,
};

static int aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

static cnn_status tc_run(cnn_cuda_ctx *ctx, const cnn_cuda_engine *e, const cnn_cuda_conv_call *c) {
  const int pass = cfg_pass(e), bf16 = cfg_bf16(e), tile = cfg_tile(e);
  const cnn_conv_desc *d = &c->d;
  if ((int)c->dir != pass)
    return cnn_error(CNN_ERR_ARG, "conv engine %s runs pass %d, asked for pass %d", e->name, pass,
                     (int)c->dir);
  if (!tc_supports(ctx, e, d, c->dir))
    return cnn_error(CNN_UNSUPPORTED, "conv engine %s does not support this shape / math",
                     e->name);
  const tc_tile_rt *t = &tc_tiles[tile];
  const int cg = d->c / d->groups, kg = d->k / d->groups;
  const int ch4 = cg % 4 == 0 && kg % 4 == 0;
  tc_args a;
  memset(&a, 0, sizeof a);
  a.d = *d;

  if (pass == CNN_CONV_FWD) {
    const long long M = (long long)d->n * d->oh * d->ow;
    if ((int)c->act < 0 || (int)c->act >= CNN_ACT_COUNT)
      return cnn_error(CNN_ERR_ARG, "conv engine %s: unknown activation %d", e->name,
                       (int)c->act);
    if (M == 0) return CNN_OK;
    a.a = c->x;
    a.b = c->w;
    a.bias = c->bias;
    a.out = c->y;
    a.act = (int)c->act;
    a.alpha = c->alpha;
    dim3 grid((unsigned)cdiv_ll(M, t->bm), (unsigned)cdiv_ll(kg, t->bn), (unsigned)d->groups);
    return tc_go_table[e->cfg](ctx, a, grid, ch4 && aligned16(c->x) && aligned16(c->w));
  }

  if (pass == CNN_CONV_BWD_DATA) {
    if ((long long)d->n * d->h * d->w == 0 || (long long)d->oh * d->ow == 0)
      return CNN_OK; /* dx += 0 */
    a.a = c->dy;
    a.b = c->w;
    a.out = c->dx;
    /* the largest phase has ceil(h / sh) x ceil(w / sw) pixels per image */
    const long long Mmax = (long long)d->n * cdiv_ll(d->h, d->stride_h) * cdiv_ll(d->w, d->stride_w);
    dim3 grid((unsigned)cdiv_ll(Mmax, t->bm), (unsigned)cdiv_ll(cg, t->bn),
              (unsigned)(d->groups * d->stride_h * d->stride_w));
    return tc_go_table[e->cfg](ctx, a, grid, ch4 && aligned16(c->dy) && aligned16(c->w));
  }

  /* bwd-filter */
  const long long P = (long long)d->n * d->oh * d->ow;
  const size_t Kw = (size_t)d->r * d->s * cg, wcount = (size_t)d->k * Kw;
  if (P == 0) { /* no pixels: the gradients are zero (overwrite) */
    CUDA_CHECK(cudaMemsetAsync(c->dw, 0, wcount * sizeof(float), ctx->stream));
    if (c->db) CUDA_CHECK(cudaMemsetAsync(c->db, 0, (size_t)d->k * sizeof(float), ctx->stream));
    return CNN_OK;
  }
  int splits = 1, chunk = 0;
  tc_bwf_plan(ctx, d, tile, &splits, &chunk);
  const size_t have = c->ws ? c->ws_bytes : 0;
  if (splits > 1 && have < (size_t)splits * wcount * sizeof(float)) {
    /* fewer slabs than planned: as many as the workspace holds, at least one (dw) */
    const long long steps = cdiv_ll(P, TC_BK);
    long long fit = (long long)(have / (wcount * sizeof(float)));
    if (fit < 1) fit = 1;
    const long long per = cdiv_ll(steps, fit);
    chunk = (int)(per * TC_BK);
    splits = (int)cdiv_ll(steps, per);
  }
  float *out = splits > 1 ? (float *)c->ws : c->dw;
  a.a = c->dy;
  a.b = c->x;
  a.out = out;
  a.chunk = chunk;
  dim3 grid((unsigned)cdiv_ll(kg, t->bm), (unsigned)cdiv_ll((long long)Kw, t->bn),
            (unsigned)(d->groups * splits));
  CNN_TRY(tc_go_table[e->cfg](ctx, a, grid, ch4 && aligned16(c->x) && aligned16(c->dy)));
  return cnn_cuda_conv_filter_finish(ctx, wcount, splits, out, c->dw, (size_t)P, d->k, c->dy,
                                     c->db);
}

#define TC_ENGINE(name, cfg) {name, CNN_CUDA_FAM_OWN, cfg, tc_supports, tc_workspace, tc_run}
static const cnn_cuda_engine tc_engines[18] = {
    TC_ENGINE("tc-tf32-fwd-128x128", 0),         TC_ENGINE("tc-tf32-fwd-128x64", 1),
    TC_ENGINE("tc-tf32-fwd-64x64", 2),           TC_ENGINE("tc-bf16-fwd-128x128", 3),
    TC_ENGINE("tc-bf16-fwd-128x64", 4),          TC_ENGINE("tc-bf16-fwd-64x64", 5),
    TC_ENGINE("tc-tf32-bwd-data-128x128", 6),    TC_ENGINE("tc-tf32-bwd-data-128x64", 7),
    TC_ENGINE("tc-tf32-bwd-data-64x64", 8),      TC_ENGINE("tc-bf16-bwd-data-128x128", 9),
    TC_ENGINE("tc-bf16-bwd-data-128x64", 10),    TC_ENGINE("tc-bf16-bwd-data-64x64", 11),
    TC_ENGINE("tc-tf32-bwd-filter-128x128", 12), TC_ENGINE("tc-tf32-bwd-filter-128x64", 13),
    TC_ENGINE("tc-tf32-bwd-filter-64x64", 14),   TC_ENGINE("tc-bf16-bwd-filter-128x128", 15),
    TC_ENGINE("tc-bf16-bwd-filter-128x64", 16),  TC_ENGINE("tc-bf16-bwd-filter-64x64", 17),
};

extern "C" int cnn_cuda_own_engines(const cnn_cuda_engine **list) {
  *list = tc_engines;
  return (int)(sizeof tc_engines / sizeof tc_engines[0]);
}
