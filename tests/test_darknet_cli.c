/* Darknet's .weights through the cnn command ($CNN_BIN):
 *  - summary --weights reports a file that fits and names the layer of one that
 *    does not;
 *  - import writes a checkpoint holding the file's tensors and a cfg with Darknet's
 *    bn_eps; it refuses to replace a model, a file of the wrong size, a cfg without
 *    weights, and leaves nothing behind when it fails;
 *  - export of the imported checkpoint gives back the file byte for byte; a
 *    checkpoint Darknet's format cannot hold is refused naming the layer, and the
 *    file already at the output path stays as it was;
 *  - predict and eval with --weights print what they print for the imported
 *    checkpoint;
 *  - train --weights starts from the file's tensors (with --lr 0 they stay as they
 *    are) on pixels in [0, 1];
 *  - every --help mentions the new options. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cnn/cnn.h"
#include "cnn/data.h"
#include "core/safetensors.h"
#include "exchange/darknet_weights.h"
#include "clitest.h"
#include "testutil.h"

static char dir[256];
static const char *bin;

static const char *model_cfg =
    "[net]\nheight=8\nwidth=8\nchannels=1\nbatch=16\n"
    "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\npad=1\nactivation=leaky\n"
    "[maxpool]\nsize=2\nstride=2\n"
    "[connected]\noutput=3\nactivation=linear\n[softmax]\n";

static void path(const char *rel, char *buf, size_t n) { snprintf(buf, n, "%s/%s", dir, rel); }

static void write_bytes(const char *rel, const void *p, size_t n) {
  char f[512];
  path(rel, f, sizeof f);
  FILE *fp = fopen(f, "wb");
  CHECK(fp && fwrite(p, 1, n, fp) == n && fclose(fp) == 0, "writing %s", f);
}

static char *slurp(const char *rel, size_t *len) {
  char f[512];
  path(rel, f, sizeof f);
  FILE *fp = fopen(f, "rb");
  if (!fp) return calloc(1, 1);
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  size_t got = fread(s, 1, (size_t)n, fp);
  s[got] = 0;
  fclose(fp);
  if (len) *len = got;
  return s;
}

static int exists(const char *rel) {
  char f[512];
  struct stat sb;
  path(rel, f, sizeof f);
  return stat(f, &sb) == 0;
}

static int same_file(const char *a, const char *b) {
  size_t na, nb;
  char *x = slurp(a, &na), *y = slurp(b, &nb);
  int same = na == nb && na > 0 && !memcmp(x, y, na);
  free(x);
  free(y);
  return same;
}

/* run `cnn ARGS` in dir, stdout to NAME.out and stderr to NAME.err; the exit code */
static int run(const char *args, const char *name) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "cd %s && exec env OMP_NUM_THREADS=1 %s %s > %s.out 2> %s.err", dir,
           bin, args, name, name);
  int st = system(cmd);
  return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* the command fails (exit 1 or 2, no crash) and its stderr names every word */
static void expect_fail(const char *args, const char *const *words) {
  int rc = run(args, "fail");
  char *err = slurp("fail.err", NULL);
  printf("  cnn %s -> %d: %s", args, rc, err);
  CHECK(rc == 1 || rc == 2, "cnn %s exits 1 or 2, not %d", args, rc);
  for (int i = 0; words[i]; i++)
    CHECK(strstr(err, words[i]) != NULL, "cnn %s: stderr names '%s': %s", args, words[i], err);
  free(err);
}

/* random tensors (positive variances) saved as m.weights; the net stays for comparisons */
static cnn_net *make_weights(void) {
  cnn_net *net = NULL;
  CHECK_OK(cnn_net_from_cfg_text(model_cfg, "m.cfg", &net));
  if (!net) return NULL;
  for (int i = 0; i < cnn_net_num_tensors(net); i++) {
    cnn_param_desc d;
    float t[256];
    CHECK_OK(cnn_net_tensor_desc(net, i, &d));
    tu_fill_uniform(t, d.count, strstr(d.name, "running_var") ? 0.2f : -1, 1, 7 + (uint64_t)i);
    CHECK_OK(cnn_net_tensor_set(net, i, t));
  }
  char f[512];
  path("m.weights", f, sizeof f);
  CHECK_OK(cnn_darknet_save(net, f, 0));
  return net;
}

/* 1-channel 8x8 IDX files: n images of random pixels, labels i % 3 */
static void write_idx(const char *images, const char *labels, int n, uint64_t seed) {
  uint8_t *b = malloc(16 + (size_t)n * 64);
  float *px = malloc((size_t)n * 64 * sizeof *px);
  tu_fill_uniform(px, (size_t)n * 64, 0, 256, seed);
  const uint8_t head[16] = {0, 0, 8, 3, 0, 0, (uint8_t)(n >> 8), (uint8_t)n, 0, 0, 0, 8, 0, 0, 0, 8};
  memcpy(b, head, 16);
  for (int i = 0; i < n * 64; i++) b[16 + i] = (uint8_t)px[i];
  write_bytes(images, b, 16 + (size_t)n * 64);
  const uint8_t lhead[8] = {0, 0, 8, 1, 0, 0, (uint8_t)(n >> 8), (uint8_t)n};
  memcpy(b, lhead, 8);
  for (int i = 0; i < n; i++) b[8 + i] = (uint8_t)(i % 3);
  write_bytes(labels, b, 8 + (size_t)n);
  free(b);
  free(px);
}

/* every tensor of checkpoint `rel` (loaded into a net of its cfg) equals want's */
static int ckpt_equals(const char *rel, const cnn_net *want, int trainable_only) {
  char f[512];
  path(rel, f, sizeof f);
  cnn_st_file st;
  if (cnn_st_read(f, &st) != CNN_OK) return 0;
  int same = 1;
  for (int i = 0; i < cnn_net_num_tensors(want) && same; i++) {
    cnn_param_desc d;
    float w[256];
    CHECK_OK(cnn_net_tensor_desc(want, i, &d));
    CHECK_OK(cnn_net_tensor_get(want, i, w));
    const cnn_st_tensor *t = cnn_st_find(&st, d.name);
    if (trainable_only && !d.trainable) continue;
    same = t && t->end - t->begin == d.count * sizeof(float) &&
           !memcmp(st.data + t->begin, w, d.count * sizeof(float));
    if (!same) fprintf(stderr, "%s: tensor %s differs\n", rel, d.name);
  }
  cnn_st_free(&st);
  return same;
}

static const char *meta_of(const char *rel, const char *key, char *buf, size_t n) {
  char f[512];
  path(rel, f, sizeof f);
  cnn_st_file st;
  buf[0] = 0;
  if (cnn_st_read(f, &st) != CNN_OK) return buf;
  const char *v = cnn_st_meta(&st, key);
  snprintf(buf, n, "%s", v ? v : "");
  cnn_st_free(&st);
  return buf;
}

static void test_summary_import_export(const cnn_net *net) {
  int rc = run("summary m.cfg --weights m.weights", "sum");
  char *out = slurp("sum.out", NULL);
  CHECK(rc == 0 && strstr(out, "weights m.weights: Darknet 0.2.0, 0 images seen, 247 values") &&
            strstr(out, "they fit m.cfg"),
        "summary --weights reports the file (rc %d): %s", rc, out);
  free(out);
  expect_fail("summary m.cfg --weights short.weights",
              (const char *const[]){"short.weights: ends in layer 2 [connected] (fc1)", "remain",
                                    NULL});
  expect_fail("summary m.cfg --weights long.weights",
              (const char *const[]){"long.weights: 4 bytes left over", NULL});

  rc = run("import m.cfg m.weights --out imp --classes x,y,z", "imp");
  char *err = slurp("imp.err", NULL);
  CHECK(rc == 0 && strstr(err, "wrote imp/model.cfg"), "import (rc %d): %s", rc, err);
  free(err);
  char *cfg = slurp("imp/model.cfg", NULL);
  CHECK(!strncmp(cfg, model_cfg, strlen(model_cfg)) && strstr(cfg, "[train]\nbn_eps=1e-12"),
        "the imported cfg is m.cfg with Darknet's bn_eps: %s", cfg);
  free(cfg);
  CHECK(ckpt_equals("imp/model.safetensors", net, 0), "the imported checkpoint holds the file's tensors");
  char m[256];
  CHECK(!strcmp(meta_of("imp/model.safetensors", "mean", m, sizeof m), "[0]"), "mean %s", m);

  /* refusals leave what exists as it was, and write nothing new */
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "cp %s/imp/model.safetensors %s/keep.safetensors", dir, dir);
  CHECK(system(cmd) == 0, "copy");
  expect_fail("import m.cfg m.weights --out imp", (const char *const[]){"already holds", NULL});
  expect_fail("import m.cfg short.weights --out imp --force",
              (const char *const[]){"short.weights: ends in layer 2 [connected] (fc1)", NULL});
  CHECK(same_file("imp/model.safetensors", "keep.safetensors"), "failed imports left imp as it was");
  expect_fail("import m.cfg long.weights --out imp2", (const char *const[]){"4 bytes left over", NULL});
  CHECK(!exists("imp2/model.cfg") && !exists("imp2/model.safetensors"), "nothing in imp2");
  expect_fail("import m.cfg --out imp3", (const char *const[]){"needs its weights", NULL});
  expect_fail("import m.cfg m.safetensors.weights --out imp3",
              (const char *const[]){"safetensors", NULL});

  rc = run("export imp/model.safetensors back.weights", "exp");
  err = slurp("exp.err", NULL);
  CHECK(rc == 0 && strstr(err, "wrote back.weights"), "export (rc %d): %s", rc, err);
  CHECK(!strstr(err, "note:"), "no notes for an imported model: %s", err);
  free(err);
  CHECK(same_file("back.weights", "m.weights"), "export of the imported checkpoint is the file");
}

static void test_predict_eval(void) {
  uint8_t img[2][64];
  float px[128];
  tu_fill_uniform(px, 128, 0, 256, 99);
  for (int i = 0; i < 128; i++) img[i / 64][i % 64] = (uint8_t)px[i];
  char f[512];
  path("a.png", f, sizeof f);
  CHECK_OK(cnn_image_write_png(f, 8, 8, 1, img[0]));
  path("b.png", f, sizeof f);
  CHECK_OK(cnn_image_write_png(f, 8, 8, 1, img[1]));
  int r1 = run("predict m.cfg a.png b.png --weights m.weights --classes x,y,z --device cpu", "p1");
  int r2 = run("predict imp/model.safetensors a.png b.png --device cpu", "p2");
  char *o1 = slurp("p1.out", NULL), *o2 = slurp("p2.out", NULL), *e1 = slurp("p1.err", NULL);
  CHECK(r1 == 0 && r2 == 0 && strstr(o1, "a.png:  1. ") && !strcmp(o1, o2),
        "predict --weights (rc %d) prints what predict of the import (rc %d) prints:\n%s---\n%s%s",
        r1, r2, o1, o2, e1);
  printf("  predict --weights: %s", o1);
  free(o1);
  free(o2);
  free(e1);
  r1 = run("eval m.cfg --weights m.weights --classes x,y,z --data idx:data --json --device cpu", "e1");
  r2 = run("eval imp/model.safetensors --data idx:data --json --device cpu", "e2");
  o1 = slurp("e1.out", NULL);
  o2 = slurp("e2.out", NULL);
  CHECK(r1 == 0 && r2 == 0 && strstr(o1, "\"accuracy\"") && !strcmp(o1, o2),
        "eval --weights (rc %d) prints what eval of the import (rc %d) prints:\n%s---\n%s", r1, r2,
        o1, o2);
  free(o1);
  free(o2);
  expect_fail("eval m.cfg --weights short.weights --data idx:data",
              (const char *const[]){"short.weights: ends in layer 2 [connected] (fc1)", NULL});
  expect_fail("predict m.cfg a.png --classes x,y,z",
              (const char *const[]){"--classes goes with --weights", NULL});
  expect_fail("predict m.cfg a.png --weights m.weights --classes x,y",
              (const char *const[]){"2 names, but the model has 3 outputs", NULL});
}

static void test_train(const cnn_net *net) {
  int rc = run("train m.cfg --weights m.weights --data idx:data --epochs 1 --lr 0 --out tr "
               "--device cpu --quiet", "tr");
  char *err = slurp("tr.err", NULL);
  CHECK(rc == 0, "train --weights (rc %d): %s", rc, err);
  free(err);
  CHECK(ckpt_equals("tr/last.safetensors", net, 1),
        "with lr 0 the trained weights are the file's: training started from them");
  char m[4096];
  CHECK(!strcmp(meta_of("tr/last.safetensors", "mean", m, sizeof m), "[0]") &&
            !strcmp(meta_of("tr/last.safetensors", "std", m, sizeof m), "[1]"),
        "a run from Darknet weights takes pixels in [0, 1]");
  CHECK(strstr(meta_of("tr/last.safetensors", "cfg", m, sizeof m), "bn_eps=1e-12") != NULL,
        "its checkpoints' cfg has Darknet's bn_eps: %s", m);
  expect_fail("train m.cfg --weights short.weights --data idx:data --out tr2 --quiet",
              (const char *const[]){"short.weights: ends in layer 2 [connected] (fc1)", NULL});
  expect_fail("train m.cfg --weights m.weights --resume tr/last.safetensors --quiet",
              (const char *const[]){"--weights", "--resume", NULL});

  /* a model Darknet cannot hold: export refused, the existing output untouched */
  static const char nb[] = "[net]\nheight=8\nwidth=8\nchannels=1\nbatch=16\n"
                           "[convolutional]\nfilters=2\nsize=3\npad=1\nbias=0\nactivation=relu\n"
                           "[connected]\noutput=3\nactivation=linear\n[softmax]\n";
  write_bytes("nb.cfg", nb, strlen(nb));
  rc = run("train nb.cfg --data idx:data --epochs 1 --out nb --device cpu --quiet", "nb");
  CHECK(rc == 0, "training the bias=0 model (rc %d)", rc);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "cp %s/m.weights %s/out.weights", dir, dir);
  CHECK(system(cmd) == 0, "copy");
  expect_fail("export nb/last.safetensors out.weights",
              (const char *const[]){"layer 0 [convolutional] (conv1): bias=0 without "
                                    "batch_normalize", NULL});
  snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", dir);
  CHECK(same_file("out.weights", "m.weights") && system(cmd) != 0,
        "the refused export left out.weights as it was, and no temp file");
}

static void test_help(void) {
  static const struct { const char *args, *word; } h[] = {
      {"summary --help", "--weights"},        {"eval --help", "--weights"},
      {"predict --help", "--weights"},        {"train --help", "--weights"},
      {"import m.cfg --help", "MODEL.weights"}, {"export x y.weights --help", "version 0.2.0"},
  };
  for (size_t i = 0; i < sizeof h / sizeof *h; i++) {
    int rc = run(h[i].args, "help");
    char *out = slurp("help.out", NULL);
    CHECK(rc == 0 && strstr(out, h[i].word), "cnn %s mentions %s", h[i].args, h[i].word);
    free(out);
  }
}

int main(void) {
  bin = clitest_setup("cnn_dncli", dir, sizeof dir);
  char d[512];
  path("data", d, sizeof d);
  mkdir(d, 0777);
  write_bytes("m.cfg", model_cfg, strlen(model_cfg));
  write_idx("data/train-images-idx3-ubyte", "data/train-labels-idx1-ubyte", 48, 1);
  write_idx("data/t10k-images-idx3-ubyte", "data/t10k-labels-idx1-ubyte", 24, 2);
  cnn_net *net = make_weights();
  size_t n;
  char *w = slurp("m.weights", &n);
  CHECK(n == 20 + 4 * 247, "m.weights is %zu bytes", n);
  write_bytes("short.weights", w, n - 100); /* ends inside fc1's weights */
  write_bytes("long.weights", w, n);
  char *extra = malloc(n + 4);
  memcpy(extra, w, n);
  memset(extra + n, 0, 4);
  write_bytes("long.weights", extra, n + 4);
  free(extra);
  free(w);
  char f[512];
  path("m.safetensors.weights", f, sizeof f);
  CHECK_OK(cnn_net_save(net, f, NULL));
  if (net) {
    test_summary_import_export(net);
    test_predict_eval();
    test_train(net);
    test_help();
  }
  cnn_net_destroy(net);
  return clitest_finish("test_darknet_cli", dir);
}
