/* The index maps of our tensor-core conv kernels (cuda_conv_tc_kernels.cuh),
 * replayed on the host: runs without a GPU.
 *
 * For each shape, tile configuration and vector width, every block of the launch
 * grid is set up by the kernel's own tc_setup, every thread's loaders (the kernel's
 * own structs) produce the global address of each vector of each K tile, which is
 * checked to lie inside its tensor (and 16-byte aligned for VEC = 4) and copied to
 * the smem slot the kernel would copy it to; each tile slot must be written exactly
 * once. The product is then formed from the tiles the way the WMMA fragments read
 * them (A row [m][k] or col [k][m], B col [n][k] or row [k][n]) in double, and
 * stored through the kernel's tc_out_off; bwd-filter slabs are summed. The result
 * must equal a direct double-precision convolution to 1e-9, every fwd output and
 * every slab element must be written once, every dx element at most once.
 * Not covered (needs a GPU: test_gpu_conv_engines): the MMA itself, the cp.async
 * pipeline and its barriers, bf16 conversion, the warp / lane epilogue mapping.
 * Usage: test_tc_index_maps [random cases, default 20] */
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "backend/cuda/cuda_conv_tc_kernels.cuh"

static int fails = 0, checks = 0;
#define EXPECT(c, ...) do { checks++; if (!(c)) { if (fails++ < 30) { printf("FAIL: " __VA_ARGS__); printf("\n"); } } } while (0)

static void ref_fwd(const cnn_conv_desc &d, const float *x, const float *w, std::vector<double> &y) {
  int cg = d.c / d.groups, kg = d.k / d.groups;
  y.assign((size_t)d.n * d.oh * d.ow * d.k, 0);
  for (int nb = 0; nb < d.n; nb++) for (int oy = 0; oy < d.oh; oy++) for (int ox = 0; ox < d.ow; ox++)
    for (int ko = 0; ko < d.k; ko++) {
      int g = ko / kg; double s = 0;
      for (int r = 0; r < d.r; r++) for (int q = 0; q < d.s; q++) {
        int ih = oy * d.stride_h - d.pad_h + r * d.dil_h, iw = ox * d.stride_w - d.pad_w + q * d.dil_w;
        if (ih < 0 || ih >= d.h || iw < 0 || iw >= d.w) continue;
        for (int ci = 0; ci < cg; ci++)
          s += (double)x[((size_t)(nb * d.h + ih) * d.w + iw) * d.c + g * cg + ci] *
               w[(((size_t)ko * d.r + r) * d.s + q) * cg + ci];
      }
      y[((size_t)(nb * d.oh + oy) * d.ow + ox) * d.k + ko] = s;
    }
}
static void ref_bwd(const cnn_conv_desc &d, const float *dy, const float *w, const float *x,
                    std::vector<double> &dx, std::vector<double> &dw) {
  int cg = d.c / d.groups, kg = d.k / d.groups;
  dx.assign((size_t)d.n * d.h * d.w * d.c, 0);
  dw.assign((size_t)d.k * d.r * d.s * cg, 0);
  for (int nb = 0; nb < d.n; nb++) for (int oy = 0; oy < d.oh; oy++) for (int ox = 0; ox < d.ow; ox++)
    for (int ko = 0; ko < d.k; ko++) {
      int g = ko / kg; double gy = dy[((size_t)(nb * d.oh + oy) * d.ow + ox) * d.k + ko];
      for (int r = 0; r < d.r; r++) for (int q = 0; q < d.s; q++) {
        int ih = oy * d.stride_h - d.pad_h + r * d.dil_h, iw = ox * d.stride_w - d.pad_w + q * d.dil_w;
        if (ih < 0 || ih >= d.h || iw < 0 || iw >= d.w) continue;
        for (int ci = 0; ci < cg; ci++) {
          size_t xi = ((size_t)(nb * d.h + ih) * d.w + iw) * d.c + g * cg + ci;
          size_t wi = (((size_t)ko * d.r + r) * d.s + q) * cg + ci;
          dx[xi] += gy * w[wi];
          dw[wi] += gy * x[xi];
        }
      }
    }
}

template <int PASS, bool BF16, int BM, int BN, int WM, int WN, int VEC>
static void emulate(const cnn_conv_desc &d, const float *x, const float *w, const float *dy,
                    int chunk, const std::vector<double> &want, const char *tag) {
  constexpr int T = WM * WN * 32, FM = BM / WM / 16, FN = BN / WN / 16, KS = BF16 ? 16 : 8;
  typedef typename tc_loaders<PASS, BM, BN, T, VEC>::A LA;
  typedef typename tc_loaders<PASS, BM, BN, T, VEC>::B LB;
  constexpr int LDA = tc_lda(PASS, BM, BF16), LDB = tc_ldb(PASS, BN, BF16);
  const int cg = d.c / d.groups, kg = d.k / d.groups, Kw = d.r * d.s * cg;
  const long long P = (long long)d.n * d.oh * d.ow;
  tc_args p{};
  p.d = d; p.a = PASS == 0 ? x : dy; p.b = PASS == 2 ? x : w; p.chunk = chunk;
  const size_t nx = (size_t)d.n * d.h * d.w * d.c, nw = (size_t)d.k * Kw, ny = (size_t)P * d.k;
  const size_t a_n = PASS == 0 ? nx : ny, b_n = PASS == 2 ? nx : nw;
  int gx, gy, gz, splits = 1;
  auto cd = [](long long a, long long b) { return (int)((a + b - 1) / b); };
  if (PASS == 0) { gx = cd(P, BM); gy = cd(kg, BN); gz = d.groups; }
  else if (PASS == 1) { gx = cd((long long)d.n * cd(d.h, d.stride_h) * cd(d.w, d.stride_w), BM); gy = cd(cg, BN); gz = d.groups * d.stride_h * d.stride_w; }
  else { splits = cd(P, chunk); gx = cd(kg, BM); gy = cd(Kw, BN); gz = d.groups * splits; }
  const size_t on = PASS == 0 ? ny : PASS == 1 ? nx : (size_t)splits * nw;
  std::vector<double> out(on, 0);
  std::vector<int> writes(on, 0);
  const int sa_n = (PASS == 2 ? TC_BK : BM) * LDA, sb_n = (PASS != 0 ? TC_BK : BN) * LDB;
  for (int bz = 0; bz < gz; bz++) for (int by = 0; by < gy; by++) for (int bx = 0; bx < gx; bx++) {
    tc_block b; int M, N, KT, split;
    if (!tc_setup<PASS, BM, BN>(p, bx, by, bz, b, M, N, KT, split)) continue;
    std::vector<LA> la(T); std::vector<LB> lb(T);
    for (int t = 0; t < T; t++) { la[t].init(d, b, p.a, t); lb[t].init(d, b, p.b, t); }
    std::vector<double> acc(BM * BN, 0);
    for (int kt = 0; kt < KT; kt++) {
      std::vector<float> sA(sa_n, NAN), sB(sb_n, NAN);
      std::vector<int> cA(sa_n, 0), cB(sb_n, 0);
      for (int t = 0; t < T; t++) {
        la[t].tile(d, b);
        const int ao = (t / LA::S::VPL) * LDA + (t % LA::S::VPL) * VEC;
        for (int i = 0; i < LA::S::ITER; i++) {
          const float *s = la[t].src(d, b, i);
          const int o = ao + i * LA::S::LSTEP * LDA;
          if (s) {
            long long e = s - p.a;
            EXPECT(e >= 0 && e + VEC <= (long long)a_n, "%s A src out of range %lld", tag, e);
            EXPECT(VEC == 1 || e % 4 == 0, "%s A src misaligned", tag);
            if (!(e >= 0 && e + VEC <= (long long)a_n)) s = NULL;
          }
          for (int v = 0; v < VEC; v++) { sA[o + v] = s ? s[v] : 0.0f; cA[o + v]++; }
        }
        la[t].advance(d, b);
        lb[t].tile(d, b);
        const int bo = (t / LB::S::VPL) * LDB + (t % LB::S::VPL) * VEC;
        for (int i = 0; i < LB::S::ITER; i++) {
          const float *s = lb[t].src(d, b, i);
          const int o = bo + i * LB::S::LSTEP * LDB;
          if (s) {
            long long e = s - p.b;
            EXPECT(e >= 0 && e + VEC <= (long long)b_n, "%s B src out of range %lld", tag, e);
            EXPECT(VEC == 1 || e % 4 == 0, "%s B src misaligned", tag);
            if (!(e >= 0 && e + VEC <= (long long)b_n)) s = NULL;
          }
          for (int v = 0; v < VEC; v++) { sB[o + v] = s ? s[v] : 0.0f; cB[o + v]++; }
        }
        lb[t].advance(d, b);
      }
      /* the slots are the same for every K tile: check them on the first */
      for (int m = 0; kt == 0 && m < BM; m++) for (int k = 0; k < TC_BK; k++) {
        int i = PASS == 2 ? k * LDA + m : m * LDA + k;
        EXPECT(cA[i] == 1, "%s A tile (%d,%d) written %d times", tag, m, k, cA[i]);
      }
      for (int n = 0; kt == 0 && n < BN; n++) for (int k = 0; k < TC_BK; k++) {
        int i = PASS == 0 ? n * LDB + k : k * LDB + n;
        EXPECT(cB[i] == 1, "%s B tile (%d,%d) written %d times", tag, k, n, cB[i]);
      }
      /* the warps' fragments, read with WMMA's layout semantics: row_major (r, c) at
       * p[r * ld + c], col_major at p[r + c * ld]; A col_major for bwd-filter, B
       * col_major for fwd (tc_mma) */
      std::vector<int> hit(BM * BN, 0);
      for (int warp = 0; warp < T / 32; warp++) {
        int wm0, wn0;
        tc_warp_origin<BM, BN, WM, WN>(warp, wm0, wn0);
        for (int i = 0; i < FM; i++) for (int j = 0; j < FN; j++) {
          const int m = wm0 + i * 16, n = wn0 + j * 16;
          for (int kk = 0; kk < TC_BK; kk += KS) {
            const int pa = tc_a_frag<PASS, LDA>(m, kk), pb = tc_b_frag<PASS, LDB>(kk, n);
            for (int r = 0; r < 16; r++) for (int c = 0; c < 16; c++) {
              if (kk == 0 && kt == 0) hit[(m + r) * BN + n + c]++;
              if (b.m0 + m + r >= M || b.n0 + n + c >= N) continue; /* never stored */
              double sum = 0;
              for (int q = 0; q < KS; q++) {
                const double av = sA[PASS == 2 ? pa + r + q * LDA : pa + r * LDA + q];
                const double bv = sB[PASS == 0 ? pb + q + c * LDB : pb + q * LDB + c];
                sum += av * bv;
              }
              acc[(m + r) * BN + n + c] += sum;
            }
          }
        }
      }
      for (int i = 0; kt == 0 && i < BM * BN; i++) EXPECT(hit[i] == 1, "%s warp tiles cover (%d, %d) %d times", tag, i / BN, i % BN, hit[i]);
    }
    for (int m = 0; m < BM; m++) for (int n = 0; n < BN; n++) {
      int gm = b.m0 + m, gn = b.n0 + n;
      if (gm >= M || gn >= N) continue;
      size_t o = tc_out_off<PASS>(d, b, split, gm, gn);
      EXPECT(o < on, "%s out offset out of range", tag);
      if (o >= on) continue;
      out[o] += acc[m * BN + n];
      writes[o]++;
    }
  }
  std::vector<double> got;
  if (PASS == 2) {
    got.assign(nw, 0);
    for (int sp = 0; sp < splits; sp++) for (size_t i = 0; i < nw; i++) {
      got[i] += out[sp * nw + i];
      EXPECT(writes[sp * nw + i] == 1, "%s slab %d elem %zu written %d", tag, sp, i, writes[sp * nw + i]);
    }
  } else {
    got = out;
    for (size_t i = 0; i < on; i++)
      EXPECT(PASS == 0 ? writes[i] == 1 : writes[i] <= 1, "%s out %zu written %d times", tag, i, writes[i]);
  }
  double maxe = 0;
  for (size_t i = 0; i < got.size(); i++) maxe = fmax(maxe, fabs(got[i] - want[i]) / fmax(1, fabs(want[i])));
  EXPECT(maxe < 1e-9, "%s max err %g", tag, maxe);
}

template <bool BF16, int BM, int BN, int WM, int WN, int VEC>
static void all_passes(const cnn_conv_desc &d, const float *x, const float *w, const float *dy,
                       const std::vector<double> &y, const std::vector<double> &dx, const std::vector<double> &dw, const char *name) {
  char tag[256];
  const char *m = BF16 ? "bf16" : "tf32";
  snprintf(tag, sizeof tag, "[%s %s %dx%d vec%d fwd]", name, m, BM, BN, VEC);
  emulate<0, BF16, BM, BN, WM, WN, VEC>(d, x, w, dy, 0, y, tag);
  snprintf(tag, sizeof tag, "[%s %s %dx%d vec%d bwd-data]", name, m, BM, BN, VEC);
  emulate<1, BF16, BM, BN, WM, WN, VEC>(d, x, w, dy, 0, dx, tag);
  long long P = (long long)d.n * d.oh * d.ow;
  int one = (int)((P + 31) / 32 * 32);
  snprintf(tag, sizeof tag, "[%s %s %dx%d vec%d bwd-filter 1 split]", name, m, BM, BN, VEC);
  emulate<2, BF16, BM, BN, WM, WN, VEC>(d, x, w, dy, one, dw, tag);
  snprintf(tag, sizeof tag, "[%s %s %dx%d vec%d bwd-filter chunk 64]", name, m, BM, BN, VEC);
  emulate<2, BF16, BM, BN, WM, WN, VEC>(d, x, w, dy, 64, dw, tag);
  snprintf(tag, sizeof tag, "[%s %s %dx%d vec%d bwd-filter chunk 96]", name, m, BM, BN, VEC);
  emulate<2, BF16, BM, BN, WM, WN, VEC>(d, x, w, dy, 96, dw, tag);
}

/* the tile shapes of cuda_conv_tc.cu (tc_tile) */
template <bool BF16, int VEC>
static void all_tiles(const cnn_conv_desc &d, const float *x, const float *w, const float *dy,
                      const std::vector<double> &y, const std::vector<double> &dx, const std::vector<double> &dw, const char *name) {
  all_passes<BF16, 128, 128, 2, 4, VEC>(d, x, w, dy, y, dx, dw, name);
  all_passes<BF16, 128, 64, 4, 2, VEC>(d, x, w, dy, y, dx, dw, name);
  all_passes<BF16, 64, 64, 2, 2, VEC>(d, x, w, dy, y, dx, dw, name);
}

static void run(cnn_conv_desc d, const char *name, bool both) {
  d.oh = (d.h + 2 * d.pad_h - d.dil_h * (d.r - 1) - 1) / d.stride_h + 1;
  d.ow = (d.w + 2 * d.pad_w - d.dil_w * (d.s - 1) - 1) / d.stride_w + 1;
  if (d.oh < 1 || d.ow < 1) return;
  int cg = d.c / d.groups, kg = d.k / d.groups;
  size_t nx = (size_t)d.n * d.h * d.w * d.c, nw = (size_t)d.k * d.r * d.s * cg, ny = (size_t)d.n * d.oh * d.ow * d.k;
  std::vector<float> x(nx), w(nw), dy(ny);
  for (auto &v : x) v = (float)(rand() % 2001 - 1000) / 1000;
  for (auto &v : w) v = (float)(rand() % 2001 - 1000) / 1000;
  for (auto &v : dy) v = (float)(rand() % 2001 - 1000) / 1000;
  std::vector<double> y, dx, dw;
  ref_fwd(d, x.data(), w.data(), y);
  ref_bwd(d, dy.data(), w.data(), x.data(), dx, dw);
  /* tf32 and bf16 differ only in padding and fragment depth: bf16 on the fixed cases */
  all_tiles<false, 1>(d, x.data(), w.data(), dy.data(), y, dx, dw, name);
  if (both) all_tiles<true, 1>(d, x.data(), w.data(), dy.data(), y, dx, dw, name);
  if (cg % 4 == 0 && kg % 4 == 0) {
    all_tiles<false, 4>(d, x.data(), w.data(), dy.data(), y, dx, dw, name);
    if (both) all_tiles<true, 4>(d, x.data(), w.data(), dy.data(), y, dx, dw, name);
  }
}

static cnn_conv_desc mk(int n, int h, int w, int c, int k, int r, int s, int sh, int sw, int ph, int pw, int dh, int dw, int g) {
  cnn_conv_desc d{};
  d.n = n; d.h = h; d.w = w; d.c = c; d.k = k; d.r = r; d.s = s; d.stride_h = sh; d.stride_w = sw;
  d.pad_h = ph; d.pad_w = pw; d.dil_h = dh; d.dil_w = dw; d.groups = g;
  return d;
}

int main(int argc, char **argv) {
  int nrand = argc > 1 ? atoi(argv[1]) : 20;
  run(mk(2, 9, 11, 136, 144, 3, 3, 1, 1, 1, 1, 1, 1, 1), "3x3 136->144", true);
  run(mk(3, 13, 15, 132, 136, 3, 3, 2, 2, 1, 1, 1, 1, 1), "3x3 s2", true);
  run(mk(2, 14, 13, 136, 132, 1, 1, 2, 2, 0, 0, 1, 1, 1), "1x1 s2", true);
  run(mk(2, 12, 10, 64, 72, 3, 3, 1, 1, 2, 2, 2, 2, 1), "dil2", true);
  run(mk(2, 13, 11, 40, 48, 3, 3, 2, 2, 2, 2, 2, 2, 1), "dil2 s2", true);
  run(mk(2, 10, 9, 136, 144, 3, 3, 1, 1, 1, 1, 1, 1, 2), "g2", true);
  run(mk(2, 9, 9, 64, 96, 3, 3, 1, 1, 1, 1, 1, 1, 4), "g4", true);
  run(mk(2, 31, 29, 3, 64, 7, 7, 2, 2, 3, 3, 1, 1, 1), "7x7/2 c3", true);
  run(mk(2, 9, 7, 18, 30, 3, 3, 1, 1, 1, 1, 1, 1, 1), "c18 k30", true);
  run(mk(3, 17, 16, 24, 40, 5, 3, 3, 2, 2, 1, 1, 2, 1), "5x3 s3x2", true);
  run(mk(2, 8, 9, 26, 42, 3, 3, 1, 1, 1, 1, 1, 1, 2), "g2 odd", true);
  run(mk(3, 32, 32, 32, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1), "many pixels", true);
  printf("fixed cases: %d checks, %d failures\n", checks, fails);
  srand(7);
  for (int t = 0; t < nrand; t++) {
    int g = 1 + rand() % 3;
    cnn_conv_desc d = mk(1 + rand() % 3, 1 + rand() % 12, 1 + rand() % 12, g * (1 + rand() % 20), g * (1 + rand() % 20),
                         1 + rand() % 5, 1 + rand() % 5, 1 + rand() % 3, 1 + rand() % 3, rand() % 4, rand() % 4, 1 + rand() % 3, 1 + rand() % 3, g);
    if (rand() % 2) { d.c = g * 4 * (1 + rand() % 6); d.k = g * 4 * (1 + rand() % 6); }
    char name[64]; snprintf(name, sizeof name, "rand%d", t);
    run(d, name, false);
  }
  printf("%d checks, %d failures\n", checks, fails);
  return fails != 0;
}
