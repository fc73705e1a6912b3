/* cnn train --init / --freeze / --best-with-optimizer end to end (cpu), on the
 * generated 4-class quadrant problem of test_cli:
 *  - best.safetensors has no optimizer state, last.safetensors has it; eval,
 *    predict and export read the light file; --best-with-optimizer keeps it;
 *  - --init from a 10-class model's best.safetensors into a 5-class model with
 *    another hidden layer reports loaded, new and skipped tensors (by name, with
 *    the shapes), records them in the metadata and the report, and the loaded tensors start equal
 *    to the source's;
 *  - --freeze 2 (and --freeze conv1, its equivalent): after an epoch, and after a
 *    resumed second one, the frozen tensors (conv1 and its batch norm, running
 *    statistics included) equal the source's bit for bit, the rest changed;
 *  - --init with --resume, --init of an unrelated file, an unknown --freeze layer
 *    and --freeze of every section are refused with a message. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cnn/cnn.h"
#include "cnn/data.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "clitest.h"
#include "testutil.h"

static char dir[256];
static const char *bin;

static void write_idx(const char *img, const char *lab, int n, uint64_t seed) {
  char pi[64], pl[64];
  snprintf(pi, sizeof pi, "data/%s", img);
  snprintf(pl, sizeof pl, "data/%s", lab);
  clitest_write_quadrants(dir, pi, pl, n, seed);
}
static char *slurp(const char *rel) { return clitest_slurp(dir, rel); }
#define exited_ok clitest_exited_ok
#define failed_cleanly clitest_failed_cleanly

/* the source (10 outputs) and the target (5 outputs, a wider hidden layer) */
#define CFG_HEAD                                                                              \
  "[net]\nheight=12\nwidth=12\nchannels=1\nbatch=32\nlearning_rate=0.05\nmomentum=0.9\n"      \
  "decay=0.0005\n[train]\nepochs=1\n"                                                         \
  "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\npad=1\nactivation=relu\n"           \
  "[maxpool]\nsize=2\nstride=2\n"                                                             \
  "[convolutional]\nfilters=16\nsize=3\npad=1\nactivation=relu\n[avgpool]\nsize=3\nstride=3\n"
static const char *cfg10 = CFG_HEAD "[connected]\noutput=16\nactivation=relu\n"
                                    "[connected]\noutput=10\nactivation=linear\n[softmax]\n";
static const char *cfg5 = CFG_HEAD "[connected]\noutput=24\nactivation=relu\n"
                                   "[connected]\noutput=5\nactivation=linear\n[softmax]\n";

static int run(const char *args, const char *out_name) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "cd %s && exec env OMP_NUM_THREADS=1 %s %s > %s/%s 2>&1", dir, bin,
           args, dir, out_name);
  return system(cmd);
}

/* a checkpoint's tensors */
typedef struct ckpt {
  cnn_st_file f;
  int ok;
} ckpt;

static ckpt open_ckpt(const char *rel) {
  ckpt c = {0};
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, rel);
  c.ok = cnn_st_read(p, &c.f) == CNN_OK;
  CHECK(c.ok, "%s reads: %s", rel, cnn_last_error());
  return c;
}

static int n_optimizer(const ckpt *c) {
  int n = 0;
  for (int i = 0; c->ok && i < c->f.n; i++) n += !strncmp(c->f.tensors[i].name, "optimizer.", 10);
  return n;
}

/* 1: both hold `name` with the same bytes; 0: different; -1: absent somewhere */
static int same_tensor(const ckpt *a, const ckpt *b, const char *name) {
  const cnn_st_tensor *x = a->ok ? cnn_st_find(&a->f, name) : NULL;
  const cnn_st_tensor *y = b->ok ? cnn_st_find(&b->f, name) : NULL;
  if (!x || !y) return -1;
  size_t nx = x->end - x->begin, ny = y->end - y->begin;
  return nx == ny && !memcmp(a->f.data + x->begin, b->f.data + y->begin, nx);
}

static void expect_fail(const char *args, const char *word, const char *what) {
  int st = run(args, "fail.txt");
  char *o = slurp("fail.txt");
  CHECK(failed_cleanly(st) && strstr(o, word), "%s: exits non-zero naming '%s': %s", what, word, o);
  free(o);
}

static void test_best_light(void) {
  int st = run("train ten.cfg --data idx:data --out src --seed 5 --device cpu --quiet", "src.txt");
  char *o = slurp("src.txt");
  CHECK(exited_ok(st), "source run: %s", o);
  free(o);
  ckpt best = open_ckpt("src/best.safetensors"), last = open_ckpt("src/last.safetensors");
  CHECK(n_optimizer(&best) == 0, "best.safetensors holds no optimizer state (%d tensors)",
        n_optimizer(&best));
  CHECK(n_optimizer(&last) == 9, "last.safetensors holds momentum for each of the 9 trainable "
        "tensors (%d)", n_optimizer(&last));
  CHECK(same_tensor(&best, &last, "fc2.weight") == 1, "best (epoch 1) and last hold the same weights");
  cnn_st_free(&best.f);
  cnn_st_free(&last.f);
  st = run("eval src/best.safetensors --json", "eval.txt");
  o = slurp("eval.txt");
  CHECK(exited_ok(st) && strstr(o, "\"accuracy\":"), "eval reads best.safetensors: %s", o);
  free(o);
  uint8_t img[144], lab;
  clitest_quadrant_images(1, 9, img, &lab);
  char p[512];
  snprintf(p, sizeof p, "%s/one.png", dir);
  CHECK_OK(cnn_image_write_png(p, 12, 12, 1, img));
  st = run("predict src/best.safetensors one.png", "predict.txt");
  o = slurp("predict.txt");
  CHECK(exited_ok(st) && strstr(o, "one.png"), "predict reads best.safetensors: %s", o);
  free(o);
  st = run("export src/best.safetensors src.onnx", "export.txt");
  o = slurp("export.txt");
  struct stat sb;
  snprintf(p, sizeof p, "%s/src.onnx", dir);
  CHECK(exited_ok(st) && stat(p, &sb) == 0 && sb.st_size > 0, "export reads best.safetensors: %s", o);
  free(o);
  /* --best-with-optimizer; --resume from last still restores the optimizer state */
  st = run("train ten.cfg --data idx:data --out srcopt --seed 5 --device cpu --quiet "
           "--best-with-optimizer", "srcopt.txt");
  o = slurp("srcopt.txt");
  CHECK(exited_ok(st), "run with --best-with-optimizer: %s", o);
  free(o);
  best = open_ckpt("srcopt/best.safetensors");
  CHECK(n_optimizer(&best) == 9, "--best-with-optimizer: best holds it (%d)", n_optimizer(&best));
  cnn_st_free(&best.f);
}

static void test_init_freeze(void) {
  int st = run("train five.cfg --data idx:data --out ft --seed 7 --device cpu "
               "--init src/best.safetensors --freeze 2", "ft.txt");
  char *o = slurp("ft.txt");
  CHECK(exited_ok(st), "fine-tuning run: %s", o);
  /* loaded: conv1 + its batch norm (5), conv2 (2); skipped: fc1 [24,64] vs [16,64]
   * and its bias, fc2 [5,24] vs [10,16] and its bias */
  CHECK(strstr(o, "7 tensors loaded") && strstr(o, "4 new") && strstr(o, "4 skipped") &&
            strstr(o, "0 of the file's unused"),
        "the counts are reported: %s", o);
  CHECK(strstr(o, "skipped  fc1.weight: F32 [16,64] in the file, [24,64] in the model") &&
            strstr(o, "skipped  fc2.bias: F32 [10] in the file, [5] in the model") &&
            strstr(o, "loaded   conv1.bn.running_var [8]"),
        "each tensor is reported with its shapes: %s", o);
  CHECK(strstr(o, "frozen: the first 2 sections (5 tensors"), "the frozen part is reported: %s", o);
  CHECK(strstr(o, "normalising with its mean/std"), "the source's normalisation is used: %s", o);
  free(o);
  ckpt src = open_ckpt("src/best.safetensors"), ft = open_ckpt("ft/last.safetensors");
  const char *frozen[] = {"conv1.weight", "conv1.bn.weight", "conv1.bn.bias", "conv1.bn.running_mean",
                          "conv1.bn.running_var"};
  for (size_t i = 0; i < 5; i++)
    CHECK(same_tensor(&src, &ft, frozen[i]) == 1, "frozen %s equals the source's", frozen[i]);
  CHECK(same_tensor(&src, &ft, "conv2.weight") == 0 && same_tensor(&src, &ft, "conv2.bias") == 0,
        "conv2 (loaded, not frozen) trained away from the source");
  const char *meta = ft.ok ? cnn_st_meta(&ft.f, "init") : NULL;
  CHECK(meta && strstr(meta, "\"from\":\"src/best.safetensors\"") && strstr(meta, "\"loaded\":7") &&
            strstr(meta, "\"skipped\":[\"fc1.weight\",\"fc1.bias\",\"fc2.weight\",\"fc2.bias\"]"),
        "the metadata records the initialisation: %s", meta ? meta : "(none)");
  const char *fz = ft.ok ? cnn_st_meta(&ft.f, "freeze") : NULL;
  CHECK(fz && !strcmp(fz, "2"), "the metadata records the freeze: %s", fz ? fz : "(none)");
  cnn_st_free(&ft.f);
  char *html = slurp("ft/report.html");
  CHECK(strstr(html, "initialised from") && strstr(html, "src/best.safetensors (7 tensors)"),
        "the report names the initialisation");
  free(html);
  /* a second epoch from the checkpoint keeps the freeze and the record */
  st = run("train --resume ft/last.safetensors --epochs 2 --quiet", "ft2.txt");
  o = slurp("ft2.txt");
  CHECK(exited_ok(st), "resumed fine-tuning: %s", o);
  free(o);
  ft = open_ckpt("ft/last.safetensors");
  for (size_t i = 0; i < 5; i++)
    CHECK(same_tensor(&src, &ft, frozen[i]) == 1, "resumed: frozen %s equals the source's", frozen[i]);
  meta = ft.ok ? cnn_st_meta(&ft.f, "init") : NULL;
  CHECK(meta && strstr(meta, "src/best.safetensors"), "the record survives the resume");
  const char *ep = ft.ok ? cnn_st_meta(&ft.f, "epoch") : NULL;
  CHECK(ep && !strcmp(ep, "2"), "two epochs done: %s", ep ? ep : "(none)");
  cnn_st_free(&ft.f);
  /* --freeze conv1.bn: the same sections by name; and the same run bit for bit */
  st = run("train five.cfg --data idx:data --out ftname --seed 7 --device cpu --quiet "
           "--init src/best.safetensors --freeze conv1.bn", "ftname.txt");
  o = slurp("ftname.txt");
  CHECK(exited_ok(st), "--freeze by layer name: %s", o);
  free(o);
  ckpt a = open_ckpt("ftname/last.safetensors");
  fz = a.ok ? cnn_st_meta(&a.f, "freeze") : NULL;
  CHECK(fz && !strcmp(fz, "1"), "--freeze conv1.bn freezes section 0 and its layer: %s", fz ? fz : "-");
  CHECK(same_tensor(&src, &a, "conv1.weight") == 1, "conv1 frozen by name");
  cnn_st_free(&a.f);
  cnn_st_free(&src.f);
}

static void test_refused(void) {
  expect_fail("train --resume src/last.safetensors --init src/best.safetensors", "--init",
              "--init with --resume");
  expect_fail("train five.cfg --data idx:data --init other.safetensors --quiet", "no tensor",
              "--init from an unrelated file");
  expect_fail("train five.cfg --data idx:data --freeze conv7 --quiet", "conv7",
              "an unknown layer to freeze");
  expect_fail("train five.cfg --data idx:data --freeze 7 --quiet", "--freeze 7",
              "freezing every section");
  expect_fail("train five.cfg --data idx:data --freeze 6 --quiet", "no parameter",
              "freezing every parameter");
}

static void write_text(const char *name, const char *text) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  fputs(text, f);
  fclose(f);
}

int main(void) {
  bin = clitest_setup("cnn_clift", dir, sizeof dir);
  char p[512];
  snprintf(p, sizeof p, "%s/data", dir);
  mkdir(p, 0777);
  write_idx("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 256, 1);
  write_idx("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 64, 2);
  write_text("ten.cfg", cfg10);
  write_text("five.cfg", cfg5);
  /* a safetensors file of another model: nothing in it matches */
  cnn_net *other = NULL;
  CHECK_OK(cnn_net_from_cfg_text("[net]\nheight=4\nwidth=4\nchannels=3\n[connected]\noutput=2\n"
                                 "activation=linear\n[softmax]\n", "other.cfg", &other));
  snprintf(p, sizeof p, "%s/other.safetensors", dir);
  if (other) CHECK_OK(cnn_net_save(other, p, NULL));
  cnn_net_destroy(other);
  test_best_light();
  test_init_freeze();
  test_refused();
  return clitest_finish("test_cli_finetune", dir);
}
