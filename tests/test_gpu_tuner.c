/* The conv engine tuner of the cuda backend (src/backend/cuda/cuda_tune.cu), through
 * the backend's ops: a choice survives in the cache file and is found again by a new
 * backend; a corrupt cache is ignored and rewritten; a forced engine that cannot run
 * a shape is a clear error; bad settings are refused; a fixed choice is bitwise
 * deterministic. Exits 77 (ctest SKIP) without a GPU. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "testutil.h"

static char dir[] = "/tmp/cnn_gpu_tuner_XXXXXX";

/* device buffers of one conv shape, inputs uniform in [-1, 1] */
typedef struct bufs {
  float *x, *w, *bias, *y, *y2, *dy, *dx, *dw, *db;
  void *ws;
  size_t ws_bytes;
} bufs;

static void *dev_upload_rand(cnn_backend *b, size_t n, uint64_t seed) {
  float *h = malloc(n * sizeof *h);
  void *d = NULL;
  CHECK(h != NULL, "host alloc");
  if (!h) return NULL;
  tu_fill_uniform(h, n, -1.0f, 1.0f, seed);
  CHECK_OK(b->ops->alloc(b->ctx, n * sizeof *h, &d));
  if (d) CHECK_OK(b->ops->upload(b->ctx, d, h, n * sizeof *h));
  free(h);
  return d;
}

static void make_bufs(cnn_backend *b, const cnn_conv_desc *d, bufs *o) {
  size_t nx = (size_t)d->n * d->h * d->w * d->c, ny = (size_t)d->n * d->oh * d->ow * d->k;
  size_t nw = (size_t)d->k * d->r * d->s * (d->c / d->groups);
  memset(o, 0, sizeof *o);
  o->x = dev_upload_rand(b, nx, 1);
  o->w = dev_upload_rand(b, nw, 2);
  o->bias = dev_upload_rand(b, (size_t)d->k, 3);
  o->dy = dev_upload_rand(b, ny, 4);
  o->y = dev_upload_rand(b, ny, 5);
  o->y2 = dev_upload_rand(b, ny, 6);
  o->dx = dev_upload_rand(b, nx, 7);
  o->dw = dev_upload_rand(b, nw, 8);
  o->db = dev_upload_rand(b, (size_t)d->k, 9);
  o->ws_bytes = b->ops->conv_workspace(b->ctx, d);
  if (o->ws_bytes) CHECK_OK(b->ops->alloc(b->ctx, o->ws_bytes, &o->ws));
}

static void free_bufs(cnn_backend *b, bufs *o) {
  void *p[] = {o->x, o->w, o->bias, o->y, o->y2, o->dy, o->dx, o->dw, o->db, o->ws};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    if (p[i]) b->ops->free(b->ctx, p[i]);
}

static cnn_conv_desc shape(int c, int k, cnn_math math) {
  cnn_conv_desc d = {.n = 4, .h = 17, .w = 17, .c = c, .k = k, .r = 3, .s = 3, .oh = 17, .ow = 17,
                     .stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1, .dil_h = 1,
                     .dil_w = 1, .groups = 1, .math = math};
  return d;
}

static char *slurp_path(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *s = calloc(1, 1 << 20);
  if (s) (void)!fread(s, 1, (1 << 20) - 1, f);
  fclose(f);
  return s;
}

static cnn_backend *gpu_with_cache(const char *path) {
  cnn_backend *b = NULL;
  CHECK_OK(cnn_backend_cuda_create(&b));
  if (b) CHECK_OK(b->ops->set_option(b->ctx, "tune-cache", path));
  return b;
}

static void test_cache(void) {
  char path[256];
  snprintf(path, sizeof path, "%s/tune.txt", dir);
  cnn_conv_desc d = shape(64, 96, CNN_MATH_TF32);
  const char *names[64];
  cnn_backend *b = gpu_with_cache(path);
  if (!b) return;
  int n_fwd = b->ops->conv_engines(b->ctx, &d, CNN_CONV_FWD, names, 64);
  CHECK(n_fwd >= 1, "at least simt runs the forward pass (%d engines)", n_fwd);
  for (int i = 0; i < n_fwd && i < 64; i++) printf("  forward engine: %s\n", names[i]);
  CHECK(!strcmp(b->ops->conv_engine(b->ctx, &d, CNN_CONV_FWD), "untuned"), "untuned before");
  bufs o;
  make_bufs(b, &d, &o);
  for (int dir_i = 0; dir_i < 3; dir_i++)
    CHECK_OK(b->ops->conv_tune(b->ctx, &d, (cnn_conv_dir)dir_i, o.ws_bytes));
  char chosen[3][64];
  for (int dir_i = 0; dir_i < 3; dir_i++) {
    snprintf(chosen[dir_i], sizeof chosen[dir_i], "%s",
             b->ops->conv_engine(b->ctx, &d, (cnn_conv_dir)dir_i));
    printf("  tuned pass %d: %s\n", dir_i, chosen[dir_i]);
    CHECK(strcmp(chosen[dir_i], "untuned") != 0, "pass %d tuned", dir_i);
  }
  /* a fixed choice is deterministic: two forwards, bit for bit */
  size_t ny = (size_t)d.n * d.oh * d.ow * d.k;
  float *h1 = malloc(ny * sizeof *h1), *h2 = malloc(ny * sizeof *h2);
  CHECK_OK(b->ops->conv_fwd(b->ctx, &d, o.x, o.w, o.bias, o.y, o.ws, o.ws_bytes));
  CHECK_OK(b->ops->conv_fwd(b->ctx, &d, o.x, o.w, o.bias, o.y2, o.ws, o.ws_bytes));
  CHECK_OK(b->ops->download(b->ctx, h1, o.y, ny * sizeof *h1));
  CHECK_OK(b->ops->download(b->ctx, h2, o.y2, ny * sizeof *h2));
  CHECK(!memcmp(h1, h2, ny * sizeof *h1), "the tuned forward is bitwise repeatable");
  free(h1);
  free(h2);
  free_bufs(b, &o);
  b->ops->destroy(b);

  char *file = slurp_path(path);
  if (n_fwd > 1) {
    CHECK(file && !strncmp(file, "cnn-tune 1\n", 11), "the cache file was written");
    CHECK(file && strstr(file, chosen[0]) != NULL, "it names the forward choice %s", chosen[0]);
  }
  free(file);

  /* a new backend takes the cached choices */
  b = gpu_with_cache(path);
  if (!b) return;
  for (int dir_i = 0; dir_i < 3; dir_i++) {
    CHECK_OK(b->ops->conv_tune(b->ctx, &d, (cnn_conv_dir)dir_i, o.ws_bytes));
    CHECK(!strcmp(b->ops->conv_engine(b->ctx, &d, (cnn_conv_dir)dir_i), chosen[dir_i]),
          "pass %d: the cached choice %s is taken again (got %s)", dir_i, chosen[dir_i],
          b->ops->conv_engine(b->ctx, &d, (cnn_conv_dir)dir_i));
  }
  b->ops->destroy(b);

  /* a corrupt cache: ignored (a warning), tuning works, the file is rewritten */
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL, "rewrite %s", path);
  if (f) {
    fputs("cnn-tune 1\ndevice something else\nfwd:x simt 1\n\x01\x02garbage", f);
    fclose(f);
  }
  b = gpu_with_cache(path);
  if (!b) return;
  CHECK_OK(b->ops->conv_tune(b->ctx, &d, CNN_CONV_FWD, o.ws_bytes));
  CHECK(strcmp(b->ops->conv_engine(b->ctx, &d, CNN_CONV_FWD), "untuned") != 0,
        "tuned despite a corrupt cache");
  b->ops->destroy(b);
  file = slurp_path(path);
  if (n_fwd > 1)
    CHECK(file && !strncmp(file, "cnn-tune 1\n", 11) && !strstr(file, "garbage"),
          "the corrupt cache was replaced by a valid one");
  free(file);
}

static void test_forced(void) {
  cnn_backend *b = NULL;
  CHECK_OK(cnn_backend_cuda_create(&b));
  if (!b) return;
  CHECK_OK(b->ops->set_option(b->ctx, "tune-cache", "off"));
  /* an engine that runs a wide shape but not a 3-channel one (tensor-core tiles) */
  cnn_conv_desc wide = shape(64, 96, CNN_MATH_BF16), narrow = shape(3, 96, CNN_MATH_BF16);
  const char *wn[64], *nn[64], *only = NULL;
  int nw = b->ops->conv_engines(b->ctx, &wide, CNN_CONV_FWD, wn, 64);
  int n_n = b->ops->conv_engines(b->ctx, &narrow, CNN_CONV_FWD, nn, 64);
  for (int i = 0; i < nw && i < 64 && !only; i++) {
    int found = 0;
    for (int j = 0; j < n_n && j < 64; j++) found |= !strcmp(wn[i], nn[j]);
    if (!found) only = wn[i];
  }
  if (only) {
    bufs o;
    make_bufs(b, &narrow, &o);
    CHECK_OK(b->ops->set_option(b->ctx, "conv-engine", only));
    cnn_status st = b->ops->conv_fwd(b->ctx, &narrow, o.x, o.w, o.bias, o.y, o.ws, o.ws_bytes);
    CHECK(st == CNN_UNSUPPORTED, "forced %s on 3 channels: CNN_UNSUPPORTED (got %d)", only, st);
    CHECK(strstr(cnn_last_error(), only) && strstr(cnn_last_error(), "cannot run"),
          "the error names the engine and says it cannot run: %s", cnn_last_error());
    CHECK(!strcmp(b->ops->conv_engine(b->ctx, &narrow, CNN_CONV_FWD), only), "conv_engine says %s", only);
    CHECK_OK(b->ops->set_option(b->ctx, "conv-engine", "simt"));
    CHECK_OK(b->ops->conv_fwd(b->ctx, &narrow, o.x, o.w, o.bias, o.y, o.ws, o.ws_bytes));
    CHECK_OK(b->ops->sync(b->ctx));
    free_bufs(b, &o);
  } else {
    printf("note: every engine that runs 64 channels also runs 3; forced-engine refusal not "
           "exercised\n");
  }
  cnn_status st = b->ops->set_option(b->ctx, "conv-engine", "no-such-engine");
  CHECK(st == CNN_ERR_ARG && strstr(cnn_last_error(), "no-such-engine"), "unknown engine: %s",
        cnn_last_error());
  st = b->ops->set_option(b->ctx, "workspace", "lots");
  CHECK(st == CNN_ERR_ARG && strstr(cnn_last_error(), "lots"), "bad workspace: %s", cnn_last_error());
  st = b->ops->set_option(b->ctx, "no-such-key", "1");
  CHECK(st == CNN_ERR_ARG, "unknown key refused");
  st = b->ops->set_option(b->ctx, "conv-engine", "cudnn");
  CHECK(st == CNN_OK || (st == CNN_UNSUPPORTED && strstr(cnn_last_error(), "cuDNN")),
        "cudnn family: available, or refused saying why (%s)", cnn_last_error());
  printf("conv-engine cudnn: %s\n", st == CNN_OK ? "available" : cnn_last_error());
  CHECK_OK(b->ops->set_option(b->ctx, "conv-engine", "own"));
  CHECK_OK(b->ops->set_option(b->ctx, "conv-engine", "auto"));
  CHECK_OK(b->ops->set_option(b->ctx, "workspace", "0"));
  {
    /* workspace 0: only engines without workspace are candidates, and they run */
    bufs o;
    cnn_conv_desc d = shape(64, 96, CNN_MATH_TF32);
    make_bufs(b, &d, &o);
    CHECK_OK(b->ops->conv_tune(b->ctx, &d, CNN_CONV_FWD, 0));
    CHECK_OK(b->ops->conv_fwd(b->ctx, &d, o.x, o.w, o.bias, o.y, NULL, 0));
    CHECK_OK(b->ops->sync(b->ctx));
    free_bufs(b, &o);
  }
  b->ops->destroy(b);
}

int main(void) {
  tu_need_cuda();
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  test_cache();
  test_forced();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0, "cleanup");
  return tu_finish("test_gpu_tuner");
}
