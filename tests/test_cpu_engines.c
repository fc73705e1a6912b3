#define _POSIX_C_SOURCE 200809L /* setenv */
/* The cpu backend's conv engines (src/backend/cpu/cpu_engine.c, cpu_dnnl.c):
 *  - each engine forced with set_option("conv-engine", ...) runs the op suite's conv
 *    cases against ref (oneDNN's two variants where the build has oneDNN; shapes it
 *    cannot take run on ours, which the suite cannot tell apart);
 *  - auto measures, picks an engine per (shape, pass) that conv_engines lists, and
 *    reports it through conv_engine;
 *  - a fixed choice is deterministic (the same pass twice: the same bits);
 *  - bad settings are refused by name; CNN_CPU_CONV_ENGINE sets the engine;
 *  - bf16 maths runs on oneDNN only where the CPU has bf16 instructions. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_wino.h"
#include "opsuite.h"
#include "testutil.h"

static cnn_conv_desc shape(int n, int h, int c, int k, int r, int stride, int pad, int groups) {
  cnn_conv_desc d;
  memset(&d, 0, sizeof d);
  d.n = n; d.h = d.w = h; d.c = c; d.k = k; d.r = d.s = r;
  d.stride_h = d.stride_w = stride;
  d.pad_h = d.pad_w = pad;
  d.dil_h = d.dil_w = 1;
  d.groups = groups;
  d.oh = d.ow = (h + 2 * pad - r) / stride + 1;
  return d;
}

static float *filled(size_t n, unsigned seed) {
  float *p = aligned_alloc(256, (n * sizeof *p + 255) / 256 * 256);
  unsigned s = seed;
  for (size_t i = 0; p && i < n; i++) {
    s = s * 1664525u + 1013904223u;
    p[i] = (float)(s >> 8) / 8388608.0f - 1.0f;
  }
  return p;
}

/* the three passes of d twice each on backend b: bit-identical results */
static void check_repeatable(cnn_backend *b, const cnn_conv_desc *d, const char *engine) {
  size_t nx = (size_t)d->n * d->h * d->w * d->c, ny = (size_t)d->n * d->oh * d->ow * d->k;
  size_t nw = (size_t)d->k * d->r * d->s * (d->c / d->groups);
  float *x = filled(nx, 1), *w = filled(nw, 2), *bias = filled((size_t)d->k, 3);
  float *dy = filled(ny, 4), *y[2] = {filled(ny, 5), filled(ny, 5)};
  float *dx[2] = {filled(nx, 6), filled(nx, 6)}, *dw[2] = {filled(nw, 7), filled(nw, 7)};
  float *db[2] = {filled((size_t)d->k, 8), filled((size_t)d->k, 8)};
  size_t wsb = b->ops->conv_workspace(b->ctx, d);
  void *ws = wsb ? aligned_alloc(256, (wsb + 255) / 256 * 256) : NULL;
  for (int i = 0; i < 2; i++) {
    CHECK_OK(b->ops->conv_fwd_act(b->ctx, d, x, w, bias, CNN_ACT_RELU, 0.0f, y[i], ws, wsb));
    CHECK_OK(b->ops->conv_bwd_data(b->ctx, d, dy, w, dx[i], ws, wsb));
    CHECK_OK(b->ops->conv_bwd_filter(b->ctx, d, x, dy, dw[i], db[i], ws, wsb));
  }
  CHECK(!memcmp(y[0], y[1], ny * sizeof(float)), "%s: forward differs between two runs", engine);
  CHECK(!memcmp(dx[0], dx[1], nx * sizeof(float)), "%s: backward-data differs between two runs",
        engine);
  CHECK(!memcmp(dw[0], dw[1], nw * sizeof(float)) &&
            !memcmp(db[0], db[1], (size_t)d->k * sizeof(float)),
        "%s: backward-filter differs between two runs", engine);
  /* backward-data accumulates: dx = start + g, so the difference is g, twice in a row */
  float *start = filled(nx, 6);
  CHECK_OK(b->ops->conv_bwd_data(b->ctx, d, dy, w, dx[1], ws, wsb));
  double worst = 0.0;
  for (size_t i = 0; i < nx; i++) {
    double g1 = (double)dx[0][i] - start[i], g2 = (double)dx[1][i] - dx[0][i];
    double e = fabs(g1 - g2) / (1.0 + fabs(g1));
    if (e > worst) worst = e;
  }
  CHECK(worst < 1e-4, "%s: backward-data adds into dx (worst %.3g)", engine, worst);
  free(start);
  free(x); free(w); free(bias); free(dy); free(ws);
  for (int i = 0; i < 2; i++) {
    free(y[i]); free(dx[i]); free(dw[i]); free(db[i]);
  }
}

/* Inference convs (wconst) on engine `engine` keep their weights repacked: the same
 * bits as a plain call; a weight change is seen only after weights_changed (the
 * contract: the program calls it whenever weights may have changed), per weight
 * pointer. Engines that keep packs: oneDNN's (its own weight layout) and Winograd's
 * (the filter transform). */
static int keeps_packs(const char *e) { return e && (!strcmp(e, "dnnl") || !strcmp(e, "winograd")); }

/* plain: where the plain (wconst 0) calls run: b, or a backend forced onto the engine
 * that b's kept packs run on */
static void check_packs_on(cnn_backend *b, cnn_backend *plain, const char *engine,
                           cnn_conv_desc d) {
  cnn_conv_desc dc = d;
  dc.wconst = 1;
  size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.oh * d.ow * d.k;
  size_t nw = (size_t)d.k * d.r * d.s * d.c;
  float *x = filled(nx, 11), *w = filled(nw, 12), *w2 = filled(nw, 13), *w3 = filled(nw, 14);
  float *bias = filled((size_t)d.k, 15), *y[6];
  for (int i = 0; i < 6; i++) y[i] = filled(ny, 16);
  size_t wsb = b->ops->conv_workspace(b->ctx, &d), wsp = plain->ops->conv_workspace(plain->ctx, &d);
  if (wsp > wsb) wsb = wsp;
  void *ws = wsb ? aligned_alloc(256, (wsb + 255) / 256 * 256) : NULL;
  const cnn_backend_ops *o = b->ops, *po = plain->ops;
  CHECK(o->weights_changed != NULL, "the cpu backend has weights_changed");
  if (!o->weights_changed) return;
  const int packs = keeps_packs(o->conv_engine(b->ctx, &d, CNN_CONV_FWD));
  o->weights_changed(b->ctx);
  CHECK_OK(po->conv_fwd_act(plain->ctx, &d, x, w, bias, CNN_ACT_RELU, 0.0f, y[0], ws, wsb));
  CHECK_OK(o->conv_fwd_act(b->ctx, &dc, x, w, bias, CNN_ACT_RELU, 0.0f, y[1], ws, wsb));
  CHECK(!memcmp(y[0], y[1], ny * sizeof(float)), "%s: a kept pack gives a plain call's bits", engine);
  float *keep = filled(nw, 12); /* w's values */
  memcpy(w, w2, nw * sizeof *w); /* changed behind the backend's back */
  CHECK_OK(o->conv_fwd_act(b->ctx, &dc, x, w, bias, CNN_ACT_RELU, 0.0f, y[2], ws, wsb));
  CHECK_OK(po->conv_fwd_act(plain->ctx, &d, x, w, bias, CNN_ACT_RELU, 0.0f, y[3], ws, wsb));
  if (packs)
    CHECK(!memcmp(y[2], y[1], ny * sizeof(float)), "%s: the pack is kept until weights_changed",
          engine);
  else
    CHECK(!memcmp(y[2], y[3], ny * sizeof(float)), "%s: no pack, the weights are read", engine);
  o->weights_changed(b->ctx);
  CHECK_OK(o->conv_fwd_act(b->ctx, &dc, x, w, bias, CNN_ACT_RELU, 0.0f, y[2], ws, wsb));
  CHECK(!memcmp(y[2], y[3], ny * sizeof(float)) && memcmp(y[2], y[1], ny * sizeof(float)),
        "%s: after weights_changed the new weights are used", engine);
  /* another weight buffer of the same shape has its own pack */
  CHECK_OK(o->conv_fwd_act(b->ctx, &dc, x, w3, bias, CNN_ACT_RELU, 0.0f, y[4], ws, wsb));
  CHECK_OK(po->conv_fwd_act(plain->ctx, &d, x, w3, bias, CNN_ACT_RELU, 0.0f, y[5], ws, wsb));
  CHECK(!memcmp(y[4], y[5], ny * sizeof(float)), "%s: a second weight buffer, its own pack", engine);
  CHECK_OK(o->conv_fwd_act(b->ctx, &dc, x, w, bias, CNN_ACT_RELU, 0.0f, y[4], ws, wsb));
  CHECK(!memcmp(y[4], y[3], ny * sizeof(float)), "%s: the first buffer's pack is still its own",
        engine);
  free(keep);
  free(x); free(w); free(w2); free(w3); free(bias); free(ws);
  for (int i = 0; i < 6; i++) free(y[i]);
}

static void check_packs(cnn_backend *b, const char *engine) {
  check_packs_on(b, b, engine, shape(2, 10, 16, 24, 3, 1, 1, 1));
}

/* A net predicting between training steps and a weight write: its kept packs follow
 * every change (the programs call weights_changed), so its predictions match ours
 * (no packs) to f32 rounding; a stale pack would be far off. */
static void check_net_packs(int have_dnnl) {
  static const char cfg[] =
      "[net]\nheight=8\nwidth=8\nchannels=3\nbatch=4\nlearning_rate=0.5\nmomentum=0.9\n"
      "[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\npad=1\nactivation=relu\n"
      "[convolutional]\nfilters=8\nsize=3\npad=1\nactivation=leaky\n"
      "[maxpool]\nglobal=1\n[connected]\noutput=5\nactivation=linear\n[softmax]\n";
  const char *engines[2] = {have_dnnl ? "dnnl" : "own", "own"};
  float probs[2][3][20];
  float *x = filled(4 * 8 * 8 * 3, 21);
  int32_t labels[4] = {0, 3, 1, 4};
  for (int e = 0; e < 2; e++) {
    cnn_backend *b = NULL;
    cnn_net *net = NULL;
    CHECK_OK(cnn_backend_cpu_create(&b));
    CHECK_OK(cnn_net_from_cfg_text(cfg, "packs", &net));
    if (!b || !net) return;
    CHECK_OK(b->ops->set_option(b->ctx, "conv-engine", engines[e]));
    CHECK_OK(cnn_net_build(net, b, 4, CNN_MODE_TRAIN));
    CHECK_OK(cnn_net_predict(net, x, NULL, 4, probs[e][0], NULL));
    for (int s = 0; s < 2; s++) CHECK_OK(cnn_net_train_step(net, x, labels, 4, NULL));
    CHECK_OK(cnn_net_predict(net, x, NULL, 4, probs[e][1], NULL));
    cnn_param_desc pd;
    int wi = -1;
    for (int i = 0; i < cnn_net_num_tensors(net) && wi < 0; i++)
      if (cnn_net_tensor_desc(net, i, &pd) == CNN_OK && pd.ndim == 4 && pd.shape[0] == 8) wi = i;
    CHECK(wi >= 0, "the second conv's weight tensor");
    if (wi >= 0) {
      float *nw = filled(pd.count, 22);
      CHECK_OK(cnn_net_tensor_set(net, wi, nw));
      free(nw);
    }
    CHECK_OK(cnn_net_predict(net, x, NULL, 4, probs[e][2], NULL));
    cnn_net_destroy(net);
    b->ops->destroy(b);
  }
  for (int k = 0; k < 3; k++) {
    double worst = 0.0, moved = 0.0;
    for (int i = 0; i < 20; i++) {
      double dd = fabs((double)probs[0][k][i] - probs[1][k][i]);
      if (dd > worst) worst = dd;
      if (k && fabs((double)probs[0][k][i] - probs[0][k - 1][i]) > moved)
        moved = fabs((double)probs[0][k][i] - probs[0][k - 1][i]);
    }
    CHECK(worst < 1e-4, "net with kept packs (%s), prediction %d: off by %.3g from own", engines[0],
          k, worst);
    if (k) CHECK(moved > 1e-3, "prediction %d moved after the change (%.3g)", k, moved);
  }
  free(x);
}

static int listed(const char *name, const char **names, int n) {
  for (int i = 0; i < n; i++)
    if (!strcmp(name, names[i])) return 1;
  return 0;
}

int main(void) {
  cnn_backend *ref = NULL, *cpu = NULL;
  CHECK_OK(cnn_backend_ref_create(&ref));
  unsetenv("CNN_CPU_CONV_ENGINE");
  CHECK_OK(cnn_backend_cpu_create(&cpu));
  if (!ref || !cpu) return tu_finish("test_cpu_engines");
  const cnn_backend_ops *o = cpu->ops;
  CHECK(o->set_option && o->conv_engine && o->conv_engines && o->conv_tune,
        "the cpu backend has the engine ops");
  const char *v = getenv("CNN_TEST_VERBOSE");
  int verbose = v && *v && *v != '0';

  /* oneDNN is there when the build found it */
  cnn_status st = o->set_option(cpu->ctx, "conv-engine", "dnnl");
  int have_dnnl = st == CNN_OK;
  printf("oneDNN engine: %s\n", have_dnnl ? "built" : cnn_last_error());
  CHECK(have_dnnl || st == CNN_UNSUPPORTED, "conv-engine dnnl: built or unsupported: %s",
        cnn_last_error());

  static const char *const forced[] = {"own", "dnnl", "dnnl-plain", "auto", "winograd"};
  cnn_conv_desc d3 = shape(4, 12, 16, 32, 3, 1, 1, 1);
  for (int i = 0; i < 5; i++) {
    if (!have_dnnl && (i == 1 || i == 2)) continue;
    cnn_backend *b = NULL;
    CHECK_OK(cnn_backend_cpu_create(&b));
    if (!b) continue;
    CHECK_OK(b->ops->set_option(b->ctx, "conv-engine", forced[i]));
    printf("-- conv-engine %s\n", forced[i]);
    cnn_opsuite_run_conv(b, ref, 1e-5, verbose);
    const char *e = b->ops->conv_engine(b->ctx, &d3, CNN_CONV_FWD);
    printf("   3x3 16->32 forward runs on %s\n", e ? e : "(null)");
    if (i == 1) CHECK(e && !strcmp(e, "dnnl"), "forced dnnl runs dnnl: %s", e ? e : "(null)");
    if (i == 2) { /* oneDNN 2.6 has JIT kernels for plain weights on few shapes */
      const char *names[8];
      int n = b->ops->conv_engines(b->ctx, &d3, CNN_CONV_FWD, names, 8);
      const char *want = listed("dnnl-plain", names, n) ? "dnnl-plain" : "im2col+gemm";
      CHECK(e && !strcmp(e, want), "forced dnnl-plain runs %s: %s", want, e ? e : "(null)");
    }
    if (i == 0) CHECK(e && !strcmp(e, "im2col+gemm"), "own runs im2col+gemm: %s", e ? e : "(null)");
    if (i == 4) {
      CHECK(e && !strcmp(e, "winograd"), "forced winograd runs winograd: %s", e ? e : "(null)");
      cnn_conv_desc s2 = shape(4, 12, 16, 32, 3, 2, 1, 1); /* stride 2: not Winograd's */
      const char *e2 = b->ops->conv_engine(b->ctx, &s2, CNN_CONV_FWD);
      CHECK(e2 && !strcmp(e2, "im2col+gemm"), "forced winograd, stride 2: ours: %s",
            e2 ? e2 : "(null)");
    }
    check_repeatable(b, &d3, forced[i]);
    check_packs(b, forced[i]);
    cnn_conv_desc dw = shape(2, 9, 24, 24, 3, 2, 1, 24);
    check_repeatable(b, &dw, forced[i]);
    b->ops->destroy(b);
  }

  /* auto: every pass of a few shapes gets an engine conv_engines lists */
  {
    cnn_backend *b = NULL;
    CHECK_OK(cnn_backend_cpu_create(&b));
    CHECK_OK(b->ops->set_option(b->ctx, "conv-engine", "auto"));
    cnn_conv_desc ds[] = {shape(8, 16, 32, 32, 3, 1, 1, 1), shape(8, 8, 64, 128, 1, 1, 0, 1),
                          shape(8, 28, 1, 16, 5, 1, 2, 1), shape(4, 14, 32, 32, 3, 2, 1, 32)};
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++)
      for (int dir = 0; dir < 3; dir++) {
        const char *names[8];
        int n = b->ops->conv_engines(b->ctx, &ds[i], (cnn_conv_dir)dir, names, 8);
        CHECK(n >= (have_dnnl ? 2 : 1), "shape %zu pass %d: %d engines", i, dir, n);
        CHECK_OK(b->ops->conv_tune(b->ctx, &ds[i], (cnn_conv_dir)dir, 0));
        const char *e = b->ops->conv_engine(b->ctx, &ds[i], (cnn_conv_dir)dir);
        CHECK(e && listed(e, names, n), "shape %zu pass %d: auto chose %s, one of its engines",
              i, dir, e ? e : "(null)");
        printf("   auto: %dx%dx%d->%d k%d s%d g%d pass %d: %s of", ds[i].h, ds[i].w, ds[i].c,
               ds[i].k, ds[i].r, ds[i].stride_h, ds[i].groups, dir, e ? e : "(null)");
        for (int j = 0; j < n; j++) printf(" %s", names[j]);
        printf("\n");
        /* asked again: the remembered choice */
        const char *e2 = b->ops->conv_engine(b->ctx, &ds[i], (cnn_conv_dir)dir);
        CHECK(e && e2 && !strcmp(e, e2), "auto's choice is remembered");
      }
    b->ops->destroy(b);
  }

  /* bf16 maths: oneDNN in bf16 only when asked for (--conv-engine dnnl or auto: the
   * path has not run on a CPU with bf16 units yet) and only where the CPU has them */
  {
    cnn_backend *b = NULL;
    CHECK_OK(cnn_backend_cpu_create(&b)); /* default setting */
    if (b) {
      const cnn_backend_ops *bo = b->ops;
      CHECK(!bo->matrix_math || bo->matrix_math(b->ctx) == 0u,
            "default setting: no matrix units reported (bf16 is opt-in)");
      cnn_conv_desc d = d3;
      d.math = CNN_MATH_BF16;
      const char *e = bo->conv_engine(b->ctx, &d, CNN_CONV_FWD);
      CHECK(e && !strstr(e, "bf16"), "default setting, bf16 maths: never oneDNN's bf16: %s",
            e ? e : "(null)");
      d.math = CNN_MATH_F32;
      e = bo->conv_engine(b->ctx, &d, CNN_CONV_FWD);
      CHECK(e && !strcmp(e, have_dnnl ? "dnnl" : "im2col+gemm"),
            "default setting, f32: oneDNN where built, else ours: %s", e ? e : "(null)");
      CHECK(keeps_packs(e) == have_dnnl, "default setting: oneDNN keeps packs where built");
      cnn_conv_desc big = shape(8, 16, 32, 32, 3, 1, 1, 1); /* 128 full 4x4 tiles */
      for (int dir = 0; dir < 3; dir++) {
        const char *ew = bo->conv_engine(b->ctx, &big, (cnn_conv_dir)dir);
        CHECK(ew && !strcmp(ew, "winograd"), "default setting, 3x3 32->32 on 16x16 x8, pass %d: "
              "winograd: %s", dir, ew ? ew : "(null)");
      }
      size_t wsb = bo->conv_workspace(b->ctx, &big);
      CHECK(wsb >= cpu_wino_workspace(&big, CNN_CONV_BWD_FILTER, 1),
            "the workspace covers Winograd's scratch (%zu bytes)", wsb);
      check_packs_on(b, b, "default, winograd", big); /* its inference keeps the transform */
      /* batch 1 of a 28x28 layer (49 tiles): Winograd only with a kept transform */
      cnn_conv_desc one = shape(1, 28, 32, 32, 3, 1, 1, 1), onec = one;
      onec.wconst = 1;
      const char *e1 = bo->conv_engine(b->ctx, &one, CNN_CONV_FWD);
      const char *e2 = bo->conv_engine(b->ctx, &onec, CNN_CONV_FWD);
      CHECK(e1 && e2 && strcmp(e1, "winograd") && !strcmp(e2, "winograd"),
            "batch 1, 28x28: %s per call, winograd with a kept transform (%s)", e1 ? e1 : "(null)",
            e2 ? e2 : "(null)");
      cnn_backend *wb = NULL;
      CHECK_OK(cnn_backend_cpu_create(&wb));
      if (wb) {
        CHECK_OK(wb->ops->set_option(wb->ctx, "conv-engine", "winograd"));
        check_packs_on(b, wb, "default, batch 1", one);
        wb->ops->destroy(wb);
      }
      check_packs(b, "default");
      if (bo->set_option(b->ctx, "conv-engine", "dnnl") == CNN_OK) {
        unsigned mm = bo->matrix_math ? bo->matrix_math(b->ctx) : 0u;
        printf("matrix_math with dnnl: 0x%x\n", mm);
        CHECK(!(mm & (1u << CNN_MATH_TF32)), "the cpu has no tf32 units");
        d.math = CNN_MATH_BF16;
        e = bo->conv_engine(b->ctx, &d, CNN_CONV_FWD);
        if (mm & (1u << CNN_MATH_BF16))
          CHECK(e && !strcmp(e, "dnnl-bf16"), "dnnl, bf16 maths on a bf16 CPU: dnnl-bf16: %s", e);
        else
          CHECK(e && !strstr(e, "bf16"), "dnnl, bf16 maths without bf16 instructions: f32 "
                "products (%s)", e ? e : "(null)");
        CHECK_OK(bo->set_option(b->ctx, "conv-engine", "own"));
        CHECK(!bo->matrix_math || bo->matrix_math(b->ctx) == 0u, "own engine: no matrix units");
      } else {
        /* built without oneDNN: nothing more to check */
      }
      b->ops->destroy(b);
    }
  }

  /* refusals by name */
  st = o->set_option(cpu->ctx, "conv-engine", "cudnn");
  CHECK(st == CNN_ERR_ARG && strstr(cnn_last_error(), "cudnn") && strstr(cnn_last_error(), "dnnl"),
        "an unknown engine is refused naming the choices: %s", cnn_last_error());
  st = o->set_option(cpu->ctx, "workspace", "64");
  CHECK(st == CNN_UNSUPPORTED && strstr(cnn_last_error(), "--workspace applies to the cuda"),
        "--workspace is refused on the cpu: %s", cnn_last_error());
  st = o->set_option(cpu->ctx, "frobnicate", "1");
  CHECK(st == CNN_ERR_ARG, "an unknown setting is refused");

  /* the environment variable */
  {
    cnn_backend *b = NULL;
    setenv("CNN_CPU_CONV_ENGINE", "own", 1);
    CHECK_OK(cnn_backend_cpu_create(&b));
    if (b) {
      const char *e = b->ops->conv_engine(b->ctx, &d3, CNN_CONV_BWD_FILTER);
      CHECK(e && !strcmp(e, "im2col+gemm"),
            "CNN_CPU_CONV_ENGINE picks the engine: %s", e ? e : "(null)");
      b->ops->destroy(b);
    }
    b = NULL;
    setenv("CNN_CPU_CONV_ENGINE", "warp-drive", 1);
    st = cnn_backend_cpu_create(&b);
    CHECK(st == CNN_ERR_ARG && !b && strstr(cnn_last_error(), "CNN_CPU_CONV_ENGINE"),
          "a bad CNN_CPU_CONV_ENGINE is refused: %s", cnn_last_error());
    if (b) b->ops->destroy(b);
    unsetenv("CNN_CPU_CONV_ENGINE");
  }

  check_net_packs(have_dnnl);

  cpu->ops->destroy(cpu);
  ref->ops->destroy(ref);
  return tu_finish("test_cpu_engines");
}
