/* The op suite, part 3: Darknet's crop and reorg against ref (tolerances in the
 * table at the top of opsuite.c). Crop runs in inference (centre window) and in
 * training (per-image windows, flips and shifts drawn from the step in the step
 * state): both sides must pick the same windows, so a wrong draw shows up as a
 * mismatch far above the tolerance. Reorg is a pure permutation: its forward must
 * be exact. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsuite_impl.h"
#include "testutil.h"

/* a step state at `step` in backend memory on both sides */
static buf state_at(suite *S, int64_t step) {
  cnn_step_state h;
  memset(&h, 0, sizeof h);
  h.step = step;
  h.lr = 0.1f;
  buf b = buf_new(S, sizeof h / sizeof(float));
  buf_upload_raw(S, &b, &h);
  return b;
}

static void test_crop(suite *S) {
  static const struct {
    int n, h, w, c, oh, ow, train, flip, noadjust;
    float shift;
    int64_t step;
  } cases[] = {
      {2, 7, 9, 3, 5, 4, 0, 0, 0, 0, 0},      /* centre, odd margins round down */
      {2, 7, 9, 3, 5, 4, 0, 1, 1, 0.2f, 3},   /* inference ignores flip and shift */
      {5, 7, 9, 3, 5, 4, 1, 0, 0, 0, 0},      /* random windows */
      {5, 7, 9, 3, 5, 4, 1, 1, 0, 0, 11},     /* and flips */
      {5, 8, 8, 4, 3, 3, 1, 1, 1, 0.2f, 12},  /* noadjust, shift */
      {3, 6, 6, 2, 6, 6, 1, 1, 0, 0, 5},      /* the whole image: only flips */
      {4, 33, 40, 3, 32, 32, 1, 1, 0, 0.5f, 123456},
      {1, 5, 5, 70, 2, 3, 1, 1, 0, 0.1f, 2},  /* more channels than cpu's offset cache */
  };
  char cas[200];
  int ran;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    cnn_crop_desc d = {.n = cases[ci].n, .h = cases[ci].h, .w = cases[ci].w, .c = cases[ci].c,
                       .oh = cases[ci].oh, .ow = cases[ci].ow, .train = cases[ci].train,
                       .flip = cases[ci].flip, .scale = cases[ci].noadjust ? 1.0f : 2.0f,
                       .trans = cases[ci].noadjust ? 0.0f : -1.0f, .shift = cases[ci].shift,
                       .seed = 77 + ci, .stream = 3};
    size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.oh * d.ow * d.c;
    snprintf(cas, sizeof cas, "n=%d %dx%dx%d -> %dx%d train=%d flip=%d scale=%g shift=%g step=%lld",
             d.n, d.h, d.w, d.c, d.oh, d.ow, d.train, d.flip, d.scale, d.shift,
             (long long)cases[ci].step);
    float *hx = hrand(S, nx, -1, 1), *hdy = hrand(S, ny, -1, 1), *hdx = hrand(S, nx, -1, 1);
    buf x = buf_from(S, hx, nx), y = buf_new(S, ny), st = state_at(S, cases[ci].step);
    RUN(S, crop_fwd, cas, &d, P(x), P(y), PS(st));
    if (ran) check(S, &y, "crop_fwd", cas, "y", S->tol);
    buf dy = buf_from(S, hdy, ny), dx = buf_from(S, hdx, nx); /* dx accumulates */
    RUN(S, crop_bwd, cas, &d, P(dy), P(dx), PS(st));
    if (ran) check(S, &dx, "crop_bwd", cas, "dx", S->tol);
    buf_free(S, &x);
    buf_free(S, &y);
    buf_free(S, &dy);
    buf_free(S, &dx);
    buf_free(S, &st);
    free(hx);
    free(hdy);
    free(hdx);
  }
}

static void test_reorg(suite *S) {
  static const struct { cnn_reorg_mode mode; int n, h, w, c, stride, oh, ow, oc; } cases[] = {
      {CNN_REORG_PLAIN, 2, 6, 4, 8, 2, 3, 2, 32},
      {CNN_REORG_PLAIN, 1, 26, 26, 64, 2, 13, 13, 256}, /* YOLOv2's passthrough */
      {CNN_REORG_PLAIN, 2, 6, 9, 9, 3, 2, 3, 81},
      {CNN_REORG_PLAIN, 2, 5, 3, 7, 1, 5, 3, 7},
      {CNN_REORG_REVERSE, 2, 3, 2, 8, 2, 6, 4, 2},
      {CNN_REORG_REVERSE, 2, 4, 5, 18, 3, 12, 15, 2},
      {CNN_REORG_FLATTEN, 2, 5, 3, 7, 1, 5, 3, 7},
      {CNN_REORG_FLATTEN, 2, 6, 4, 3, 2, 3, 2, 12},
      {CNN_REORG_FLATTEN_REVERSE, 2, 5, 3, 7, 1, 5, 3, 7},
      {CNN_REORG_FLATTEN_REVERSE, 2, 3, 2, 8, 2, 6, 4, 2},
      {CNN_REORG_EXTRA, 3, 19, 19, 1, 1, 1, 1, 362}, /* go.cfg */
      {CNN_REORG_EXTRA, 2, 3, 4, 5, 1, 1, 1, 67},
  };
  char cas[200];
  int ran;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    cnn_reorg_desc d = {.n = cases[ci].n, .h = cases[ci].h, .w = cases[ci].w, .c = cases[ci].c,
                        .oh = cases[ci].oh, .ow = cases[ci].ow, .oc = cases[ci].oc,
                        .stride = cases[ci].stride, .mode = cases[ci].mode};
    size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.oh * d.ow * d.oc;
    snprintf(cas, sizeof cas, "mode %d n=%d %dx%dx%d /%d -> %dx%dx%d", (int)d.mode, d.n, d.h, d.w,
             d.c, d.stride, d.oh, d.ow, d.oc);
    float *hx = hrand(S, nx, -1, 1), *hdy = hrand(S, ny, -1, 1), *hdx = hrand(S, nx, -1, 1);
    buf x = buf_from(S, hx, nx), y = buf_new(S, ny);
    RUN(S, reorg_fwd, cas, &d, P(x), P(y));
    if (ran) check(S, &y, "reorg_fwd", cas, "y", 0); /* a permutation: exact */
    buf dy = buf_from(S, hdy, ny), dx = buf_from(S, hdx, nx);
    RUN(S, reorg_bwd, cas, &d, P(dy), P(dx));
    if (ran) check(S, &dx, "reorg_bwd", cas, "dx", S->tol);
    buf_free(S, &x);
    buf_free(S, &y);
    buf_free(S, &dy);
    buf_free(S, &dx);
    free(hx);
    free(hdy);
    free(hdx);
  }
}

void test_crop_reorg_ops(suite *S) {
  test_crop(S);
  test_reorg(S);
}
