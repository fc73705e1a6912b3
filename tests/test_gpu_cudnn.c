/* The cuDNN conv engines (src/backend/cuda/cuda_cudnn.cu) against ref: for a few
 * shapes (c, k >= 130, stride 2, dilation, groups 2, odd sizes, 1x1), every engine
 * named "cudnn-*" that conv_engines lists for a pass is forced with
 * set_option("conv-engine", name) and its pass compared with ref's:
 *   forward          y = conv(x, w) + bias              (overwrite: y starts NaN)
 *   backward data    dx += conv_transpose(dy, w)         (dx starts random: accumulate)
 *   backward filter  dw = corr(x, dy), db = colsum(dy)   (overwrite: dw, db start NaN)
 * Tolerance, relative to max(1, |ref|), scaled by sqrt(K) with K the terms summed:
 *   F32 math 1e-5 sqrt(K), except FFT / Winograd engines 1e-4 sqrt(K) (they round in
 *   a transformed space); TF32 math 2e-3 sqrt(K).
 * A shape whose bottom/right padding differs from its top/left (cuDNN pads
 * symmetrically) must list no cuDNN engine.
 * Exits 77 (ctest SKIP) without CUDA, a device, or a loadable cuDNN (printing why). */
#define _POSIX_C_SOURCE 200112L
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "testutil.h"

#define MAX_ENGINES 64

static cnn_backend *gpu, *ref;

static int out_dim(int in, int k, int stride, int pad, int dil) {
  return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

static cnn_conv_desc shape(int n, int h, int w, int c, int k, int r, int stride, int pad, int dil,
                           int groups) {
  cnn_conv_desc d = {.n = n, .h = h, .w = w, .c = c, .k = k, .r = r, .s = r,
                     .stride_h = stride, .stride_w = stride, .pad_h = pad, .pad_w = pad,
                     .dil_h = dil, .dil_w = dil, .groups = groups, .math = CNN_MATH_F32};
  d.oh = out_dim(h, r, stride, pad, dil);
  d.ow = out_dim(w, r, stride, pad, dil);
  return d;
}

static int is_cudnn(const char *name) { return strncmp(name, "cudnn-", 6) == 0; }

static double tol_for(const char *engine, cnn_math math, double terms) {
  double t = math == CNN_MATH_F32 ? 1e-5 : 2e-3;
  if (math == CNN_MATH_F32 && (strstr(engine, "fft") || strstr(engine, "winograd"))) t = 1e-4;
  return t * sqrt(terms > 1 ? terms : 1);
}

typedef struct {
  size_t nx, nw, ny;
  float *x, *w, *bias, *dy, *dx0;
  float *want_y, *want_dx, *want_dw, *want_db, *got;
  void *gx, *gw, *gbias, *gdy, *gy, *gdx, *gdw, *gdb, *gws;
  size_t gws_bytes;
} bufs;

static void *dev(size_t n) {
  void *p = NULL;
  CHECK_OK(gpu->ops->alloc(gpu->ctx, n * sizeof(float) + 256, &p));
  return p;
}

/* the three reference passes on ref */
static void reference(const cnn_conv_desc *d, bufs *b) {
  const cnn_backend_ops *o = ref->ops;
  size_t wsb = o->conv_workspace ? o->conv_workspace(ref->ctx, d) : 0;
  void *ws = wsb ? malloc(wsb) : NULL;
  CHECK_OK(o->conv_fwd(ref->ctx, d, b->x, b->w, b->bias, b->want_y, ws, wsb));
  memcpy(b->want_dx, b->dx0, b->nx * sizeof(float));
  CHECK_OK(o->conv_bwd_data(ref->ctx, d, b->dy, b->w, b->want_dx, ws, wsb));
  CHECK_OK(o->conv_bwd_filter(ref->ctx, d, b->x, b->dy, b->want_dw, b->want_db, ws, wsb));
  free(ws);
}

static void compare(const char *what, const float *got, const float *want, size_t n, double tol) {
  size_t where = 0;
  double e = tu_max_rel_err(got, want, n, &where);
  CHECK(e <= tol, "%s: max error %.3g > %.3g at %zu (got %g, want %g)", what, e, tol, where,
        got[where], want[where]);
}

/* run engine `name` for pass dir of d on the gpu and compare with ref */
static void run_engine(const cnn_conv_desc *d, cnn_conv_dir dir, const char *name, bufs *b) {
  const cnn_backend_ops *o = gpu->ops;
  void *c = gpu->ctx;
  char what[256];
  const int cg = d->c / d->groups;
  const double kf = (double)cg * d->r * d->s;            /* forward / bwd-filter terms */
  const double kd = (double)(d->k / d->groups) * d->r * d->s; /* bwd-data terms (upper bound) */
  const double kw = (double)d->n * d->oh * d->ow;        /* bwd-filter terms */
  snprintf(what, sizeof what, "%s n%d %dx%d c%d k%d %dx%d s%d p%d d%d g%d math %d", name, d->n,
           d->h, d->w, d->c, d->k, d->r, d->s, d->stride_h, d->pad_h, d->dil_h, d->groups,
           (int)d->math);
  cnn_status s = o->set_option(c, "conv-engine", name);
  CHECK(s == CNN_OK, "%s: set_option: %s", what, cnn_last_error());
  if (s != CNN_OK) return;
  if (dir == CNN_CONV_FWD) {
    float *nan = malloc(b->ny * sizeof *nan);
    tu_poison(nan, b->ny);
    CHECK_OK(o->upload(c, b->gy, nan, b->ny * sizeof(float)));
    free(nan);
    s = o->conv_fwd(c, d, b->gx, b->gw, b->gbias, b->gy, b->gws, b->gws_bytes);
    CHECK(s == CNN_OK, "%s fwd: %s", what, cnn_last_error());
    CHECK_OK(o->download(c, b->got, b->gy, b->ny * sizeof(float)));
    compare(what, b->got, b->want_y, b->ny, tol_for(name, d->math, kf));
  } else if (dir == CNN_CONV_BWD_DATA) {
    CHECK_OK(o->upload(c, b->gdx, b->dx0, b->nx * sizeof(float)));
    s = o->conv_bwd_data(c, d, b->gdy, b->gw, b->gdx, b->gws, b->gws_bytes);
    CHECK(s == CNN_OK, "%s bwd-data: %s", what, cnn_last_error());
    CHECK_OK(o->download(c, b->got, b->gdx, b->nx * sizeof(float)));
    compare(what, b->got, b->want_dx, b->nx, tol_for(name, d->math, kd));
  } else {
    float *nan = malloc(b->nw * sizeof *nan);
    tu_poison(nan, b->nw);
    CHECK_OK(o->upload(c, b->gdw, nan, b->nw * sizeof(float)));
    CHECK_OK(o->upload(c, b->gdb, nan, (size_t)d->k * sizeof(float)));
    free(nan);
    s = o->conv_bwd_filter(c, d, b->gx, b->gdy, b->gdw, b->gdb, b->gws, b->gws_bytes);
    CHECK(s == CNN_OK, "%s bwd-filter: %s", what, cnn_last_error());
    CHECK_OK(o->download(c, b->got, b->gdw, b->nw * sizeof(float)));
    compare(what, b->got, b->want_dw, b->nw, tol_for(name, d->math, kw));
    CHECK_OK(o->download(c, b->got, b->gdb, (size_t)d->k * sizeof(float)));
    compare(what, b->got, b->want_db, (size_t)d->k, 1e-5 * sqrt(kw));
  }
  CHECK_OK(o->set_option(c, "conv-engine", "auto"));
}

/* every cuDNN engine listed for every pass of d; returns how many ran */
static int test_shape(cnn_conv_desc d, uint64_t seed) {
  bufs b;
  memset(&b, 0, sizeof b);
  b.nx = (size_t)d.n * d.h * d.w * d.c;
  b.nw = (size_t)d.k * d.r * d.s * (d.c / d.groups);
  b.ny = (size_t)d.n * d.oh * d.ow * d.k;
  size_t most = b.nx > b.nw ? b.nx : b.nw;
  if (b.ny > most) most = b.ny;
  b.x = malloc(b.nx * sizeof(float));
  b.w = malloc(b.nw * sizeof(float));
  b.bias = malloc((size_t)d.k * sizeof(float));
  b.dy = malloc(b.ny * sizeof(float));
  b.dx0 = malloc(b.nx * sizeof(float));
  b.want_y = malloc(b.ny * sizeof(float));
  b.want_dx = malloc(b.nx * sizeof(float));
  b.want_dw = malloc(b.nw * sizeof(float));
  b.want_db = malloc((size_t)d.k * sizeof(float));
  b.got = malloc(most * sizeof(float));
  tu_fill_uniform(b.x, b.nx, -1, 1, seed);
  tu_fill_uniform(b.w, b.nw, -1, 1, seed + 1);
  tu_fill_uniform(b.bias, (size_t)d.k, -1, 1, seed + 2);
  tu_fill_uniform(b.dy, b.ny, -1, 1, seed + 3);
  tu_fill_uniform(b.dx0, b.nx, -1, 1, seed + 4);
  reference(&d, &b);

  const cnn_backend_ops *o = gpu->ops;
  void *c = gpu->ctx;
  b.gx = dev(b.nx); b.gw = dev(b.nw); b.gbias = dev((size_t)d.k); b.gdy = dev(b.ny);
  b.gy = dev(b.ny); b.gdx = dev(b.nx); b.gdw = dev(b.nw); b.gdb = dev((size_t)d.k);
  b.gws_bytes = o->conv_workspace ? o->conv_workspace(c, &d) : 0;
  if (b.gws_bytes) CHECK_OK(o->alloc(c, b.gws_bytes, &b.gws));
  CHECK_OK(o->upload(c, b.gx, b.x, b.nx * sizeof(float)));
  CHECK_OK(o->upload(c, b.gw, b.w, b.nw * sizeof(float)));
  CHECK_OK(o->upload(c, b.gbias, b.bias, (size_t)d.k * sizeof(float)));
  CHECK_OK(o->upload(c, b.gdy, b.dy, b.ny * sizeof(float)));

  int ran = 0;
  for (int m = 0; m < 2; m++) {
    d.math = m ? CNN_MATH_TF32 : CNN_MATH_F32;
    for (int dir = 0; dir < 3; dir++) {
      const char *names[MAX_ENGINES];
      int n = o->conv_engines(c, &d, (cnn_conv_dir)dir, names, MAX_ENGINES);
      if (n > MAX_ENGINES) n = MAX_ENGINES;
      for (int i = 0; i < n; i++)
        if (is_cudnn(names[i])) {
          run_engine(&d, (cnn_conv_dir)dir, names[i], &b);
          ran++;
        }
    }
  }
  void *all[] = {b.gx, b.gw, b.gbias, b.gdy, b.gy, b.gdx, b.gdw, b.gdb, b.gws};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) o->free(c, all[i]);
  free(b.x); free(b.w); free(b.bias); free(b.dy); free(b.dx0);
  free(b.want_y); free(b.want_dx); free(b.want_dw); free(b.want_db); free(b.got);
  return ran;
}

int main(void) {
  tu_need_cuda();
  {
    /* what this process would load (the backend dlopen()s the same names) */
    void *h = dlopen("libcudnn.so.9", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char *e = dlerror();
      printf("cuDNN: not loadable here: %s\n", e ? e : "?");
      tu_skip("cuDNN is not loadable on this machine");
    }
    size_t (*ver)(void) = NULL;
    void *sym = dlsym(h, "cudnnGetVersion");
    memcpy(&ver, &sym, sizeof ver);
    printf("cuDNN: libcudnn.so.9 loads, cudnnGetVersion() = %zu\n", ver ? ver() : (size_t)0);
  }
  CHECK_OK(cnn_backend_ref_create(&ref));
  CHECK_OK(cnn_backend_cuda_create(&gpu));
  if (!gpu || !ref) return tu_finish("test_gpu_cudnn");
  if (!gpu->ops->conv_engines || !gpu->ops->set_option) {
    gpu->ops->destroy(gpu);
    ref->ops->destroy(ref);
    tu_skip("the cuda backend has no conv_engines / set_option");
  }
  {
    /* does the backend list any cuDNN engine at all? (cuDNN may be compiled out,
     * fail to initialise, or CNN_CUDNN=0) */
    cnn_conv_desc d = shape(1, 8, 8, 16, 16, 3, 1, 1, 1, 1);
    const char *names[MAX_ENGINES];
    int n = gpu->ops->conv_engines(gpu->ctx, &d, CNN_CONV_FWD, names, MAX_ENGINES), any = 0;
    if (n > MAX_ENGINES) n = MAX_ENGINES;
    printf("forward engines for a 3x3 16->16 conv:");
    for (int i = 0; i < n; i++) {
      printf(" %s", names[i]);
      any |= is_cudnn(names[i]);
    }
    printf("\n");
    if (!any) {
      gpu->ops->destroy(gpu);
      ref->ops->destroy(ref);
      tu_skip("the cuda backend lists no cuDNN engine (not built in, not initialised, or "
              "CNN_CUDNN=0)");
    }
  }
  {
    /* bottom padding 1, top 0: cuDNN cannot express it */
    cnn_conv_desc d = shape(1, 8, 8, 16, 16, 3, 2, 0, 1, 1);
    d.oh = d.ow = 4; /* symmetric padding 0 gives 3 */
    for (int dir = 0; dir < 3; dir++) {
      const char *names[MAX_ENGINES];
      int n = gpu->ops->conv_engines(gpu->ctx, &d, (cnn_conv_dir)dir, names, MAX_ENGINES);
      for (int i = 0; i < n && i < MAX_ENGINES; i++)
        CHECK(!is_cudnn(names[i]), "asymmetric padding listed cuDNN engine %s", names[i]);
    }
  }
  static const int shapes[][10] = {
      /* n  h   w   c    k    r  stride pad dil groups */
      {2, 9, 9, 130, 132, 3, 1, 1, 1, 1},
      {2, 11, 13, 131, 130, 3, 2, 1, 1, 1},
      {1, 10, 10, 130, 130, 3, 1, 2, 2, 1},
      {2, 7, 7, 132, 134, 3, 1, 1, 1, 2},
      {3, 5, 7, 8, 6, 1, 1, 0, 1, 1},
      {1, 12, 12, 16, 32, 5, 2, 2, 1, 1},
  };
  int ran = 0;
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
    const int *s = shapes[i];
    ran += test_shape(shape(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9]),
                      100 + 10 * i);
  }
  printf("%d cuDNN engine runs compared with ref\n", ran);
  CHECK(ran > 0, "no cuDNN engine ran");
  gpu->ops->destroy(gpu);
  ref->ops->destroy(ref);
  return tu_finish("test_gpu_cudnn");
}
