/* The cnn command end to end on a small generated IDX dataset (4 classes: which
 * quadrant of a 12x12 image holds a bright blob):
 *  - train, eval and predict agree;
 *  - a run killed with SIGKILL mid-epoch and resumed ends exactly like the
 *    uninterrupted run (same step losses, same final accuracy), CPU, 1 thread;
 *  - bad input (truncated IDX, missing folder, corrupt checkpoint, a checkpoint of
 *    another model, a NaN loss) exits non-zero with a clear message and leaves
 *    the last checkpoint intact;
 *  - a checkpoint whose metadata is out of range (each field cli_meta_read reads)
 *    or names fewer classes than the model has is refused naming the file and the
 *    field, by eval and by train --resume (which crashed writing the report);
 *  - resuming into a folder that is not writable fails before training;
 *  - dataset export writes PNGs that load back exactly as a folder dataset; eval
 *    and train --resume match class folders to the checkpoint's names; a
 *    DIR/train-only layout is explained; predict warns when it stretches an image
 *    and --resize crop / letterbox feed the model the pixels expected. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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

static const char *cfg_text =
    "[net]\nheight=12\nwidth=12\nchannels=1\nbatch=32\nlearning_rate=0.05\nmomentum=0.9\n"
    "decay=0.0005\n[train]\nnesterov=1\nschedule=cosine\nepochs=3\nflip=0\ncrop=1\n"
    "[convolutional]\nfilters=8\nsize=3\npad=1\nactivation=relu\n[maxpool]\nsize=2\nstride=2\n"
    "[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\npad=1\nactivation=relu\n"
    "[avgpool]\nsize=3\nstride=3\n[dropout]\nprobability=0.1\n[connected]\noutput=4\n"
    "activation=linear\n[softmax]\n";

/* run a shell command with output to out_file; returns the wait status */
static int run(const char *args, const char *out_name) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "cd %s && exec env OMP_NUM_THREADS=1 %s %s > %s/%s 2>&1", dir, bin, args, dir,
           out_name);
  return system(cmd);
}

static double after(const char *s, const char *key) {
  const char *p = strstr(s, key);
  return p ? atof(p + strlen(key)) : -1;
}

/* the "step" lines of metrics.jsonl, in order */
static char *step_lines(const char *run_dir) {
  char name[256];
  snprintf(name, sizeof name, "%s/metrics.jsonl", run_dir);
  char *all = slurp(name), *out = calloc(strlen(all) + 1, 1), *save = NULL;
  for (char *l = strtok_r(all, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
    if (strstr(l, "\"type\":\"step\"")) {
      strcat(out, l);
      strcat(out, "\n");
    }
  free(all);
  return out;
}

static void test_train_resume(void) {
  int st = run("train model.cfg --data idx:data --out full --seed 5 --quiet", "full.txt");
  char *o = slurp("full.txt");
  CHECK(exited_ok(st), "full run: %s", o);
  double acc = after(o, "final test accuracy: ");
  CHECK(acc >= 0.9, "full run reaches 0.9 on the 4-quadrant problem (chance 0.25): %.4f", acc);
  /* 512 images / 32 = 16 steps per epoch: killed at step 24, mid-epoch 2 */
  st = run("train model.cfg --data idx:data --out part --seed 5 --quiet --kill-at-step 24", "part.txt");
  CHECK(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the run was killed (status %d)", st);
  char p[512];
  struct stat sb;
  snprintf(p, sizeof p, "%s/part/last.safetensors", dir);
  CHECK(stat(p, &sb) == 0, "the epoch-1 checkpoint survived the kill");
  st = run("train --resume part/last.safetensors --quiet", "resume.txt");
  char *r = slurp("resume.txt");
  CHECK(exited_ok(st), "resumed run: %s", r);
  double racc = after(r, "final test accuracy: ");
  CHECK(racc == acc, "resumed final accuracy %.4f equals the uninterrupted %.4f", racc, acc);
  char *a = step_lines("full"), *b = step_lines("part");
  CHECK(strlen(a) > 0 && !strcmp(a, b), "the resumed run's step losses equal the uninterrupted run's");
  free(a);
  free(b);
  free(o);
  free(r);
}

static void test_eval_predict(void) {
  int st = run("eval full/best.safetensors --json", "eval.txt");
  char *e = slurp("eval.txt");
  char *metrics = slurp("full/metrics.jsonl");
  CHECK(exited_ok(st), "eval: %s", e);
  double acc = after(e, "\"accuracy\":");
  /* the best epoch's test accuracy as the training run logged it */
  double best = 0;
  for (const char *q = metrics; (q = strstr(q, "\"test_acc\":")); q++) {
    double v = atof(q + 11);
    if (v > best) best = v;
  }
  CHECK(acc > 0 && (acc - best) < 1e-6 && (best - acc) < 1e-6, "eval %.6f == training's best %.6f",
        acc, best);
  /* PNG files cut from the test set, in a folder dataset: eval and predict agree */
  uint8_t img[24 * 144], lab[24];
  clitest_quadrant_images(24, 777, img, lab);
  char args[4096] = "predict full/best.safetensors --top 1";
  for (int i = 0; i < 24; i++) {
    char sub[512], path[600];
    snprintf(sub, sizeof sub, "%s/pngs/%d", dir, lab[i]);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", sub);
    CHECK(system(cmd) == 0, "mkdir");
    snprintf(path, sizeof path, "%s/img%02d.png", sub, i);
    CHECK_OK(cnn_image_write_png(path, 12, 12, 1, img + (size_t)i * 144));
    size_t len = strlen(args);
    snprintf(args + len, sizeof args - len, " pngs/%d/img%02d.png", lab[i], i);
  }
  for (int c = 0; c < 4; c++) { /* every class folder must exist for a folder dataset */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/pngs/%d", dir, c);
    CHECK(system(cmd) == 0, "mkdir");
  }
  st = run(args, "predict.txt");
  char *pr = slurp("predict.txt");
  CHECK(exited_ok(st), "predict: %s", pr);
  int hits = 0;
  for (int i = 0; i < 24; i++) {
    char key[64];
    snprintf(key, sizeof key, "pngs/%d/img%02d.png:  1. %d (%d)", lab[i], i, lab[i], lab[i]);
    if (strstr(pr, key)) hits++;
  }
  st = run("eval full/best.safetensors --data folder:pngs --json", "eval_png.txt");
  char *ep = slurp("eval_png.txt");
  CHECK(exited_ok(st), "eval on the PNG folder: %s", ep);
  double pacc = after(ep, "\"accuracy\":");
  CHECK(hits / 24.0 == pacc, "predict (%d/24 right) agrees with eval on the same files (%.4f)", hits,
        pacc);
  free(e);
  free(metrics);
  free(pr);
  free(ep);
}

static void expect_fail(const char *args, const char *word, const char *what) {
  int st = run(args, "bad.txt");
  char *o = slurp("bad.txt");
  CHECK(failed_cleanly(st), "%s exits non-zero without crashing (status %d): %s", what, st, o);
  CHECK(strstr(o, word) != NULL, "%s: the message mentions '%s': %s", what, word, o);
  free(o);
}

static void test_bad_input(void) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "cd %s && mkdir -p trunc && head -c 5000 data/train-images-idx3-ubyte > "
           "trunc/train-images-idx3-ubyte && cp data/train-labels-idx1-ubyte data/t10k-* trunc/ && "
           "head -c 3000 full/last.safetensors > corrupt.safetensors && cp full/last.safetensors "
           "keep.safetensors && cmp -s full/last.safetensors keep.safetensors",
           dir);
  CHECK(system(cmd) == 0, "set-up of the bad files");
  expect_fail("train model.cfg --data idx:trunc --quiet", "train-images-idx3-ubyte", "truncated IDX");
  expect_fail("train model.cfg --data folder:nowhere --quiet", "nowhere", "missing data folder");
  expect_fail("eval corrupt.safetensors", "corrupt.safetensors", "truncated checkpoint");
  expect_fail("predict full/best.safetensors model.cfg", "model.cfg", "a file that is not an image");
  expect_fail("train other.cfg --resume full/last.safetensors --quiet", "conv", "a checkpoint of another model");
  /* the cpu refuses a cuda engine and --workspace by name; auto passes */
  expect_fail("train model.cfg --data idx:data --device cpu --conv-engine cudnn --out eng --quiet",
              "conv-engine cudnn", "--conv-engine on the cpu");
  expect_fail("eval full/best.safetensors --device cpu --workspace 64", "workspace",
              "--workspace on the cpu");
  {
    int st0 = run("eval full/best.safetensors --device cpu --conv-engine auto", "eng_auto.txt");
    char *o0 = slurp("eng_auto.txt");
    CHECK(exited_ok(st0) && strstr(o0, "accuracy: "), "--conv-engine auto runs on the cpu: %s", o0);
    free(o0);
  }
  /* a NaN loss (the step schedule multiplies the lr by 1000 each epoch; no batch norm)
   * stops the run with a clear message; the checkpoint of the last good epoch stays */
  expect_fail("train nan.cfg --data idx:data --out nanrun --quiet", "NaN", "a NaN loss");
  snprintf(cmd, sizeof cmd, "cd %s && cp nanrun/last.safetensors nan_keep.safetensors", dir);
  CHECK(system(cmd) == 0, "the NaN run left a checkpoint of its last good epoch");
  int st = run("eval nanrun/last.safetensors", "nan_eval.txt");
  char *o = slurp("nan_eval.txt");
  CHECK(exited_ok(st) && strstr(o, "accuracy: "), "the last good checkpoint evaluates: %s", o);
  free(o);
  snprintf(cmd, sizeof cmd, "cd %s && cmp -s full/last.safetensors keep.safetensors", dir);
  CHECK(system(cmd) == 0, "failed runs left the earlier run's checkpoint unchanged");
}

static void write_text(const char *rel, const char *text) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, rel);
  FILE *f = fopen(p, "wb");
  CHECK(f != NULL, "fopen %s", p);
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

/* Hostile image files and augmentation/split settings that cannot work: refused
 * with a message naming the file, flag or cfg key (never an internal function). */
static void test_hostile_data(void) {
  char cmd[1024];
  /* a 25-byte BMP of 1x0 pixels, once an assertion failure in stb's resizer */
  static const unsigned char zero_h[25] = {'B', 'M', 25, 0, 0, 0, 0, 0, 0, 0, 26, 0, 0,
                                           0,   12,  0,  0, 0, 1, 0, 0, 0, 1, 0, 24};
  snprintf(cmd, sizeof cmd, "cd %s && mkdir -p zbad/0 zbad/1 one/0 && cp pngs/0/*.png zbad/0/ && "
           "cp pngs/1/*.png zbad/1/ && cp pngs/0/$(ls pngs/0 | head -1) one/0/a.png", dir);
  CHECK(system(cmd) == 0, "set-up of the hostile folders");
  char p[512];
  snprintf(p, sizeof p, "%s/zero.bmp", dir);
  FILE *f = fopen(p, "wb");
  if (f) {
    fwrite(zero_h, 1, sizeof zero_h, f);
    fclose(f);
  }
  snprintf(cmd, sizeof cmd, "cp %s/zero.bmp %s/zbad/1/zz.bmp", dir, dir);
  CHECK(system(cmd) == 0, "copy zero.bmp");
  /* predict: the bad file is named, the good one still predicted, exit non-zero */
  int st = run("predict full/best.safetensors zero.bmp one/0/a.png", "hostile.txt");
  char *o = slurp("hostile.txt");
  CHECK(failed_cleanly(st), "predict of a 1x0 BMP exits non-zero without crashing (status %d): %s",
        st, o);
  CHECK(strstr(o, "zero.bmp") && strstr(o, "1x0"), "the message names the file: %s", o);
  CHECK(strstr(o, "one/0/a.png:  1."), "the good file is still predicted: %s", o);
  free(o);
  expect_fail("train model.cfg --data folder:zbad --epochs 1 --quiet", "zz.bmp",
              "training on a folder with a 1x0 BMP");
  /* --max-pixels: the 12x12 images are 144 pixels */
  expect_fail("predict full/best.safetensors one/0/a.png --max-pixels 143", "a.png",
              "predict over --max-pixels");
  st = run("predict full/best.safetensors one/0/a.png --max-pixels 144", "hostile.txt");
  o = slurp("hostile.txt");
  CHECK(exited_ok(st) && strstr(o, "a.png:  1."), "predict at --max-pixels: %s", o);
  free(o);
  expect_fail("train model.cfg --data folder:pngs --max-pixels 143 --epochs 1 --quiet", "143",
              "train over --max-pixels");
  st = run("predict --help", "hostile.txt");
  o = slurp("hostile.txt");
  CHECK(exited_ok(st) && strstr(o, "--max-pixels"), "predict --help documents --max-pixels: %s", o);
  free(o);
  st = run("train --help", "hostile.txt");
  o = slurp("hostile.txt");
  CHECK(exited_ok(st) && strstr(o, "--max-pixels"), "train --help documents --max-pixels: %s", o);
  free(o);

  /* augmentation larger than the 12x12 images */
  expect_fail("train model.cfg --data idx:data --cutout 40 --epochs 1 --quiet",
              "--cutout 40 is larger than the 12x12 images", "--cutout larger than the images");
  expect_fail("train model.cfg --data idx:data --crop 12 --epochs 1 --quiet", "--crop 12",
              "--crop as large as the images");
  write_text("cut.cfg", "[net]\nheight=12\nwidth=12\nchannels=1\n[train]\ncutout=13\nepochs=1\n"
             "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=relu\n[avgpool]\n"
             "[connected]\noutput=4\nactivation=linear\n[softmax]\n");
  expect_fail("train cut.cfg --data idx:data --quiet", "cutout=13", "cfg cutout larger than the images");
  /* a split that leaves no training (or no validation) images */
  expect_fail("train model.cfg --data folder:one --val-split 0.9 --epochs 1 --quiet", "--val-split 0.9",
              "--val-split leaving no training images");
  o = slurp("bad.txt");
  CHECK(!strstr(o, "cnn_"), "no internal function in the message: %s", o);
  free(o);
  expect_fail("train model.cfg --data folder:one --val-split 0.1 --epochs 1 --quiet", "--val-split 0.1",
              "--val-split leaving no validation images");
  write_text("split.cfg", "[net]\nheight=12\nwidth=12\nchannels=1\n[train]\nval_split=0.9\nepochs=1\n"
             "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=relu\n[avgpool]\n"
             "[connected]\noutput=4\nactivation=linear\n[softmax]\n");
  expect_fail("train split.cfg --data folder:one --quiet", "val_split=0.9", "cfg val_split");
}

/* Copy checkpoint src to dst (paths under dir) without its checksum, with metadata
 * `key` set to `val`; for key "train.X", the number X in the "train" object is
 * replaced by the JSON text `val`. */
static void doctor(const char *src, const char *dst, const char *key, const char *val) {
  char ps[512], pd[512];
  snprintf(ps, sizeof ps, "%s/%s", dir, src);
  snprintf(pd, sizeof pd, "%s/%s", dir, dst);
  cnn_st_file f;
  CHECK_OK(cnn_st_read(ps, &f));
  if (!f.n) return;
  cnn_st_item *items = calloc((size_t)f.n, sizeof *items);
  const char **mk = calloc((size_t)f.n_meta + 1, sizeof *mk), **mv = calloc((size_t)f.n_meta + 1, sizeof *mv);
  for (int i = 0; i < f.n; i++) {
    cnn_st_tensor *t = &f.tensors[i];
    items[i] = (cnn_st_item){t->name, t->dtype, t->ndim, t->shape, f.data + t->begin, t->end - t->begin};
  }
  char train[4096] = "";
  int n = 0, found = 0;
  for (int i = 0; i < f.n_meta; i++) {
    if (!strcmp(f.meta_keys[i], "checksum")) continue;
    mk[n] = f.meta_keys[i];
    mv[n] = f.meta_values[i];
    if (!strcmp(mk[n], key)) mv[n] = val, found = 1;
    if (!strncmp(key, "train.", 6) && !strcmp(mk[n], "train")) {
      char pat[64];
      snprintf(pat, sizeof pat, "\"%s\":", key + 6);
      const char *at = strstr(mv[n], pat);
      if (at) {
        at += strlen(pat);
        size_t keep = (size_t)(at - mv[n]), skip = strcspn(at, ",}");
        snprintf(train, sizeof train, "%.*s%s%s", (int)keep, mv[n], val, at + skip);
        mv[n] = train;
        found = 1;
      }
    }
    n++;
  }
  CHECK(found, "doctor: %s has metadata %s", src, key);
  CHECK_OK(cnn_st_write(pd, items, f.n, mk, mv, n));
  free(items);
  free(mk);
  free(mv);
  cnn_st_free(&f);
}

/* the command fails cleanly, naming the file and the field */
static void expect_refused(const char *cmd, const char *file, const char *field) {
  char args[512];
  snprintf(args, sizeof args, cmd, file);
  int st = run(args, "bad.txt");
  char *o = slurp("bad.txt");
  CHECK(failed_cleanly(st), "%s exits non-zero without crashing (status %d): %s", args, st, o);
  CHECK(strstr(o, file) && strstr(o, field), "%s: the message names the file and '%s': %s", args,
        field, o);
  printf("  %-22s %-8s -> %s", field, args[0] == 'e' ? "eval" : "resume", o);
  free(o);
}

/* the wait status of a shell command run in dir */
static int sh(const char *cmd_fmt) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "cd %s && %s", dir, cmd_fmt);
  return system(cmd);
}

/* cnn dataset export: N PNGs in DIR/<class>/<index>.png that load back bit for bit
 * as a folder dataset; a folder already holding files is refused and kept */
static void test_dataset_export(void) {
  int st = run("dataset export --data idx:data --out exp --count 40", "exp.txt");
  char *o = slurp("exp.txt");
  CHECK(exited_ok(st) && strstr(o, "wrote 40 images"), "dataset export: %s", o);
  free(o);
  uint8_t img[256 * 144], lab[256];
  clitest_quadrant_images(256, 2, img, lab); /* the test split of idx:data */
  char spec[600], p[600];
  snprintf(p, sizeof p, "%s/exp/%d/007.png", dir, lab[7]); /* 256 images: 3 digits */
  struct stat sb;
  CHECK(stat(p, &sb) == 0, "image 7 is exp/<its class>/007.png");
  snprintf(spec, sizeof spec, "folder:%s/exp", dir);
  cnn_dataset d;
  CHECK_OK(cnn_dataset_open(spec, 0, 12, 12, 1, &d));
  /* the folder dataset's order: class folders 0..3, index order inside each */
  int bad = d.n != 40 || d.classes != 4, j = 0;
  for (int k = 0; k < 4 && !bad; k++)
    for (int i = 0; i < 40; i++)
      if (lab[i] == k) {
        bad += j >= d.n || d.labels[j] != k || memcmp(d.images + (size_t)j * 144, img + (size_t)i * 144, 144);
        j++;
      }
  CHECK(!bad && j == 40, "the 40 exported PNGs load back bit for bit with their labels (n %d)", d.n);
  cnn_dataset_free(&d);
  expect_fail("dataset export --data idx:data --out exp --count 5", "not empty",
              "export into a folder that holds files");
  CHECK_OK(cnn_dataset_open(spec, 0, 12, 12, 1, &d));
  CHECK(d.n == 40, "the refused export left the 40 files (%d)", d.n);
  cnn_dataset_free(&d);
  expect_fail("dataset export --data idx:data --out exp2 --split val", "--split",
              "an unknown split");
  st = run("dataset --help", "exp.txt");
  o = slurp("exp.txt");
  CHECK(exited_ok(st) && strstr(o, "--count") && strstr(o, "<class name>/<index>.png"),
        "dataset --help: %s", o);
  free(o);
}

/* A row of the text report after "  N NAME": the per-class accuracy and count */
static const char *row_after(const char *report, int k, const char *name) {
  char key[64];
  snprintf(key, sizeof key, "\n  %2d %-16s ", k, name);
  const char *r = strstr(report, key);
  return r ? r + strlen(key) : "(missing)";
}

/* eval on class-named folders in an order unlike the model's classes: the same
 * numbers as the built-in data, rows under the right names; names that do not
 * match are refused; train --resume on folders maps by name too */
static void test_folder_classes(void) {
  CHECK(sh("mkdir -p nres") == 0, "mkdir");
  int st = run("dataset export --data idx:data --out named", "named.txt");
  CHECK(exited_ok(st), "export the test split");
  CHECK(sh("mv named/0 named/zeta && mv named/1 named/alpha && mv named/2 named/Mid_x && "
           "mv named/3 named/beta && cp -r named named2 && mv named2/beta named2/gamma") == 0,
        "rename the class folders");
  /* the model's classes, in an order unlike the folders' alphabetical one */
  doctor("full/best.safetensors", "nres/named.safetensors", "classes",
         "[\"zeta\",\"alpha\",\"Mid/x\",\"beta\"]");
  st = run("eval full/best.safetensors --data idx:data --json", "ev_idx.txt");
  char *a = slurp("ev_idx.txt");
  st |= run("eval nres/named.safetensors --data folder:named --json", "ev_named.txt");
  char *b = slurp("ev_named.txt");
  CHECK(exited_ok(st), "eval on IDX and on the named folders: %s %s", a, b);
  const char *ca = strstr(a, "\"per_class_accuracy\""), *cb = strstr(b, "\"per_class_accuracy\"");
  CHECK(after(a, "\"accuracy\":") > 0.9 && after(a, "\"accuracy\":") == after(b, "\"accuracy\":") &&
            ca && cb && !strcmp(ca, cb),
        "the named folders give the IDX accuracy, per-class accuracy and confusion: %s\nvs\n%s", a, b);
  CHECK(strstr(b, "\"zeta\",") && strstr(b, "\"Mid/x\","), "JSON names the classes: %s", b);
  free(a);
  free(b);
  st = run("eval full/best.safetensors --data idx:data", "ev_idx.txt");
  st |= run("eval nres/named.safetensors --data folder:named", "ev_named.txt");
  a = slurp("ev_idx.txt");
  b = slurp("ev_named.txt");
  static const char *const names[4] = {"zeta", "alpha", "Mid/x", "beta"};
  int rows = 0;
  for (int k = 0; k < 4; k++) {
    char digit[4];
    snprintf(digit, sizeof digit, "%d", k);
    const char *ra = row_after(a, k, digit), *rb = row_after(b, k, names[k]);
    size_t n = strcspn(ra, "\n"); /* "1.0000 (49)": accuracy and the class's image count */
    rows += n > 6 && n == strcspn(rb, "\n") && strncmp(ra, rb, n) == 0;
  }
  CHECK(exited_ok(st) && rows == 4, "each report row has its class's name and accuracy:\n%s\n%s", a, b);
  free(a);
  free(b);
  /* a folder that is no class, a class with no folder: refused, both named */
  st = run("eval nres/named.safetensors --data folder:named2", "bad.txt");
  char *o = slurp("bad.txt");
  CHECK(failed_cleanly(st) && strstr(o, "'gamma'") && strstr(o, "'beta'") &&
            strstr(o, "folder:named2"),
        "mismatched names refused, naming them: %s", o);
  free(o);
  /* classes named only 0..3: the folders in alphabetical order, said so */
  st = run("eval full/best.safetensors --data folder:named", "ev_named.txt");
  o = slurp("ev_named.txt");
  CHECK(exited_ok(st) && strstr(o, "alphabetical order") && strstr(o, "Mid_x=0"),
        "unnamed classes: alphabetical, with a note: %s", o);
  free(o);
  /* train --resume with folders: the checkpoint's names, not the folder order (the
   * first resumed step's loss is that of a trained model, not of shuffled labels) */
  st = run("train --resume nres/named.safetensors --data folder:named --epochs 4 --quiet",
           "nres.txt");
  o = slurp("nres.txt");
  char *steps = step_lines("nres");
  double loss = after(steps, "\"loss\":");
  CHECK(exited_ok(st) && loss >= 0 && loss < 0.5, "resume on named folders: first loss %.4f: %s",
        loss, o);
  free(steps);
  free(o);
  st = run("train --resume nres/named.safetensors --data folder:named2 --epochs 5 --quiet", "bad.txt");
  o = slurp("bad.txt");
  CHECK(failed_cleanly(st) && strstr(o, "'gamma'"), "resume on mismatched folders refused: %s", o);
  free(o);

  /* only DIR/train: explained, not a class named "train" */
  CHECK(sh("mkdir -p tonly/train && cp -r exp/* tonly/train/") == 0, "train-only layout");
  expect_fail("eval full/best.safetensors --data folder:tonly", "tonly/test", "eval on DIR/train only");
  o = slurp("bad.txt");
  CHECK(strstr(o, "tonly/train/<class>/<image>") && !strstr(o, "class folder 'train'"),
        "the layouts expected: %s", o);
  free(o);
  expect_fail("train model.cfg --data folder:tonly --epochs 1 --quiet", "--val-split",
              "train on DIR/train only without --val-split");
  st = run("train model.cfg --data folder:tonly --val-split 0.25 --epochs 1 --out tonlyrun --quiet",
           "tonly.txt");
  o = slurp("tonly.txt");
  CHECK(exited_ok(st), "train on DIR/train only with --val-split: %s", o);
  free(o);
}

static void write_png(const char *rel, int h, int w, const uint8_t *px) {
  char p[600];
  snprintf(p, sizeof p, "%s/%s", dir, rel);
  CHECK_OK(cnn_image_write_png(p, h, w, 1, px));
}

/* the "top" part of a one-file predict --json */
static char *top_of(const char *args, const char *out) {
  int st = run(args, out);
  char *o = slurp(out);
  CHECK(exited_ok(st) && strstr(o, "\"top\":"), "%s: %s", args, o);
  const char *t = strstr(o, "\"top\":");
  char *r = strdup(t ? t : "(none)");
  free(o);
  return r;
}

/* cnn predict: a warning when an image is stretched; --resize crop and letterbox
 * give the model exactly the pixels expected (checked through its predictions) */
static void test_predict_resize(void) {
  uint8_t img[256 * 144], lab[256], wide[12 * 24], lb[6 * 12], boxed[144];
  clitest_quadrant_images(256, 2, img, lab);
  for (int y = 0; y < 12; y++)
    for (int x = 0; x < 24; x++)
      wide[y * 24 + x] = x >= 6 && x < 18 ? img[y * 12 + x - 6] : (uint8_t)(x * 37 + y * 11);
  write_png("orig.png", 12, 12, img);
  write_png("wide.png", 12, 24, wide);
  int st = run("predict full/best.safetensors wide.png", "pw.txt");
  char *o = slurp("pw.txt");
  CHECK(exited_ok(st) && strstr(o, "wide.png is 24x12, stretched to the model's 12x12") &&
            strstr(o, "--resize crop"), "stretching warns: %s", o);
  free(o);
  st = run("predict full/best.safetensors wide.png orig.png --resize stretch", "pw.txt");
  o = slurp("pw.txt");
  CHECK(exited_ok(st) && !strstr(o, "warning"), "no warning with --resize stretch: %s", o);
  free(o);
  char *c = top_of("predict full/best.safetensors wide.png --resize crop --json", "pc.txt");
  char *want = top_of("predict full/best.safetensors orig.png --json", "po.txt");
  CHECK(!strcmp(c, want), "--resize crop of the 24x12 image is its 12x12 centre: %s vs %s", c, want);
  free(c);
  free(want);
  /* letterbox: a 12x6 image centred in 12x12 on the model's mean colour */
  char p[600];
  snprintf(p, sizeof p, "%s/full/best.safetensors", dir);
  cnn_st_file f;
  CHECK_OK(cnn_st_read(p, &f));
  const char *mv = cnn_st_meta(&f, "mean");
  float mean = mv ? (float)atof(mv + 1) : 0.5f, fv = mean * 255.0f + 0.5f;
  uint8_t fill = (uint8_t)(fv < 0 ? 0 : fv > 255 ? 255 : fv);
  cnn_st_free(&f);
  memcpy(lb, img + 3 * 12, sizeof lb);
  memset(boxed, fill, sizeof boxed);
  memcpy(boxed + 3 * 12, lb, sizeof lb);
  write_png("lb.png", 6, 12, lb);
  write_png("boxed.png", 12, 12, boxed);
  c = top_of("predict full/best.safetensors lb.png --resize letterbox --json", "pl.txt");
  want = top_of("predict full/best.safetensors boxed.png --json", "pb.txt");
  CHECK(!strcmp(c, want), "--resize letterbox of 12x6 is it on the mean colour %d: %s vs %s", fill,
        c, want);
  free(c);
  free(want);
  expect_fail("predict full/best.safetensors wide.png --resize fit", "stretch, crop or letterbox",
              "an unknown --resize");
}

static void test_bad_metadata(void) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "mkdir -p %s/meta", dir);
  CHECK(system(cmd) == 0, "mkdir");
  /* the model has 4 outputs; the checkpoint names 2 classes (train --resume used to
   * crash in the report, past the end of the list) */
  doctor("full/last.safetensors", "meta/short.safetensors", "classes", "[\"a\",\"b\"]");
  expect_refused("train --resume %s --quiet", "meta/short.safetensors", "classes");
  expect_refused("eval %s", "meta/short.safetensors", "classes");
  /* an optimizer that does not exist used to train as another one, exit 0 */
  doctor("full/last.safetensors", "meta/opt.safetensors", "train.optimizer", "7");
  expect_refused("train --resume %s --epochs 4 --quiet", "meta/opt.safetensors", "train.optimizer");
  static const struct {
    const char *key, *val;
  } cases[] = {
      {"step", "-1"}, {"step", "12abc"}, {"epoch", "-1"}, {"epoch", "7"},
      {"total_steps", "-3"}, {"acc", "nan"}, {"best_acc", "1.5"}, {"best_epoch", "9"},
      {"batch", "0"}, {"batch", "1e9"}, {"crop", "5000"}, {"flip", "2"}, {"cutout", "-1"},
      {"val_split", "0.95"}, {"mean", "[1e999]"}, {"mean", "[\"x\"]"}, {"std", "[0]"},
      {"std", "[-1]"}, {"std", "[0.5, 0.5]"}, {"mean", "[0.5, 0.5]"}, {"classes", "[1,2,3,4]"},
      {"classes", "\"abcd\""}, {"data", ""}, {"cfg", ""},
      {"train.optimizer", "-1"}, {"train.optimizer", "1.5"}, {"train.schedule", "9"},
      {"train.learning_rate", "-1"}, {"train.learning_rate", "1e9"}, {"train.momentum", "1.5"},
      {"train.nesterov", "2"}, {"train.weight_decay", "2"}, {"train.beta1", "-0.1"},
      {"train.beta2", "1"}, {"train.eps", "0"}, {"train.warmup_steps", "0.5"},
      {"train.step_size", "-1"}, {"train.gamma", "1e9"}, {"train.final_lr_frac", "2"},
      {"train.power", "\"x\""}, {"train.total_steps", "-1"}, {"train.label_smoothing", "1"},
      {"train.bn_momentum", "2"}, {"train.bn_eps", "0"}, {"train.init", "3"},
      {"train.seed", "-1"}, {"train.epochs", "0"}, {"train.epochs", "2"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    char name[64];
    snprintf(name, sizeof name, "meta/bad%zu.safetensors", k);
    doctor("full/last.safetensors", name, cases[k].key, cases[k].val);
    /* the field named: "std"/"mean" mismatches name either; epochs 2 < epoch 3 names epoch */
    const char *field = !strcmp(cases[k].key, "train.epochs") && !strcmp(cases[k].val, "2") ? "epoch"
                        : !strcmp(cases[k].key, "mean") && cases[k].val[3] == ',' ? "std"
                                                                                   : cases[k].key;
    expect_refused("eval %s", name, field);
  }
  /* the doctoring itself keeps a good checkpoint good */
  doctor("full/last.safetensors", "meta/same.safetensors", "acc", "0.5");
  int st = run("eval meta/same.safetensors", "meta_ok.txt");
  char *o = slurp("meta_ok.txt");
  CHECK(exited_ok(st), "a checkpoint with in-range metadata and no checksum evaluates: %s", o);
  free(o);
}

/* resuming where no file can be written fails at once, naming the folder */
static void test_unwritable_run_dir(void) {
  char cmd[1200];
  const char *as = "";
  if (geteuid() == 0) { /* root writes anywhere: run the command as nobody */
    if (system("command -v setpriv >/dev/null 2>&1") != 0) {
      printf("unwritable run folder: not checked (root, and no setpriv to drop privileges)\n");
      return;
    }
    as = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
  }
  snprintf(cmd, sizeof cmd, "cd %s && chmod 755 . && mkdir -p ro && cp full/last.safetensors ro/ && "
           "chmod 644 ro/last.safetensors && chmod 555 ro", dir);
  CHECK(system(cmd) == 0, "set-up of the read-only run folder");
  snprintf(cmd, sizeof cmd, "cd %s && exec %senv OMP_NUM_THREADS=1 %s train --resume "
           "ro/last.safetensors --epochs 5 --quiet > %s/ro.txt 2>&1", dir, as, bin, dir);
  int st = system(cmd);
  char *o = slurp("ro.txt");
  CHECK(failed_cleanly(st), "resuming into a read-only folder fails (status %d): %s", st, o);
  CHECK(strstr(o, "ro") && strstr(o, "not writable") && !strstr(o, "writing a checkpoint"),
        "it fails before training, naming the folder: %s", o);
  printf("  unwritable run folder%s -> %s", *as ? " (as nobody)" : "", o);
  free(o);
  snprintf(cmd, sizeof cmd, "chmod 755 %s/ro", dir);
  CHECK(system(cmd) == 0, "chmod back");
}

/* Darknet's [crop] and [reorg] through the command: a net starting with a random
 * 10x10 crop (centre crop in eval) and a reorg trains to 0.9 and evaluates; `cnn
 * summary` describes Darknet's vgg-16.cfg (crop) and go.cfg (reorg extra). */
static void test_darknet_sections(void) {
  char p[512];
  snprintf(p, sizeof p, "%s/crop.cfg", dir);
  FILE *f = fopen(p, "w");
  fputs("[net]\nheight=12\nwidth=12\nchannels=1\nbatch=32\nlearning_rate=0.05\nmomentum=0.9\n"
        "[train]\nepochs=4\n[crop]\ncrop_height=10\ncrop_width=10\nshift=.1\n"
        "[convolutional]\nfilters=8\nsize=3\npad=1\nactivation=relu\n[reorg]\nstride=2\n"
        "[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\npad=1\nactivation=relu\n"
        "[maxpool]\nsize=2\nstride=2\n[connected]\noutput=4\nactivation=linear\n[softmax]\n", f);
  fclose(f);
  int st = run("train crop.cfg --data idx:data --out croprun --seed 3 --quiet", "crop.txt");
  char *o = slurp("crop.txt");
  double acc = after(o, "final test accuracy: ");
  CHECK(exited_ok(st) && acc >= 0.9, "train with [crop] and [reorg]: accuracy %.4f >= 0.9: %s",
        acc, o);
  free(o);
  st = run("eval croprun/best.safetensors --data idx:data", "crop_eval.txt");
  o = slurp("crop_eval.txt");
  CHECK(exited_ok(st) && strstr(o, "accuracy"), "eval of the [crop] model: %s", o);
  free(o);
  /* Darknet's cfgs: the crop's description and VGG-16's known parameter count; the
   * reorg's and go.cfg's 19x19 + "pass" outputs */
  static const struct { const char *cfg, *want1, *want2; } sums[] = {
      {"vgg-16", "224x224 flip x*2-1", "138,357,544"}, {"go", "CHW + 1 zeros", "1x1x362"}};
  for (int i = 0; i < 2; i++) {
    char rel[64], src[1024], args[1200];
    snprintf(rel, sizeof rel, "tests/data/darknet/%s.cfg", sums[i].cfg);
    snprintf(args, sizeof args, "summary %s", tu_source_path(rel, src, sizeof src));
    st = run(args, "summary.txt");
    o = slurp("summary.txt");
    CHECK(exited_ok(st) && strstr(o, sums[i].want1) && strstr(o, sums[i].want2),
          "summary of %s.cfg: %s", sums[i].cfg, o);
    free(o);
  }
}

int main(void) {
  bin = clitest_setup("cnn_cli", dir, sizeof dir);
  char p[512];
  snprintf(p, sizeof p, "%s/data", dir);
  mkdir(p, 0777);
  write_idx("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 512, 1);
  write_idx("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 256, 2);
  snprintf(p, sizeof p, "%s/model.cfg", dir);
  FILE *f = fopen(p, "w");
  fputs(cfg_text, f);
  fclose(f);
  snprintf(p, sizeof p, "%s/nan.cfg", dir);
  f = fopen(p, "w");
  fputs("[net]\nheight=12\nwidth=12\nchannels=1\nbatch=32\nlearning_rate=0.05\nmomentum=0.9\n"
        "[train]\nschedule=step\nstep_size=16\ngamma=1000\nepochs=4\n[convolutional]\nfilters=8\n"
        "size=3\npad=1\nactivation=relu\n[connected]\noutput=4\nactivation=linear\n[softmax]\n", f);
  fclose(f);
  snprintf(p, sizeof p, "%s/other.cfg", dir);
  f = fopen(p, "w");
  fputs("[net]\nheight=12\nwidth=12\nchannels=1\n[convolutional]\nfilters=5\nsize=3\npad=1\n"
        "activation=relu\n[avgpool]\n[connected]\noutput=4\nactivation=linear\n[softmax]\n", f);
  fclose(f);
  test_train_resume();
  test_eval_predict();
  test_bad_input();
  test_hostile_data();
  test_bad_metadata();
  test_unwritable_run_dir();
  test_darknet_sections();
  test_dataset_export();
  test_folder_classes();
  test_predict_resize();
  return clitest_finish("test_cli", dir);
}
