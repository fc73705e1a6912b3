/* report.html: a full report carries its charts, class names, counts and escaped
 * text, references nothing on the network, survives edge cases (no epochs, one
 * class, hundreds of classes, NaN), and a failed write names the path and
 * leaves no file behind.
 * Built from tests/test_report.c + src/cli/report.c + tests/lib/testutil.c. */
#define _XOPEN_SOURCE 700 /* mkdtemp, rmdir */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/report.h"
#include "cnn/cnn.h"
#include "testutil.h"

static char tmpdir[64];

static char *read_all(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  char *p = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (p && fread(p, 1, (size_t)n, fp) != (size_t)n) {
    free(p);
    p = NULL;
  }
  if (p) p[n] = 0;
  fclose(fp);
  return p;
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

static size_t count(const char *hay, const char *needle) {
  size_t n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

static void join(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", tmpdir, name); }

/* write r to NAME in the temp dir and return the text (caller frees), NULL on failure */
static char *render(const cli_report *r, const char *name) {
  char path[256], tmp[300];
  join(path, sizeof path, name);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  CHECK_OK(cli_report_write(path, r));
  CHECK(!exists(tmp), "%s left behind", tmp);
  char *s = read_all(path);
  CHECK(s != NULL, "cannot read %s back", path);
  if (s) CHECK(!strncmp(s, "<!DOCTYPE html>", 15), "%s does not start with <!DOCTYPE html>", name);
  if (s) CHECK(strstr(s, "</html>") != NULL, "%s is not complete", name);
  remove(path);
  return s;
}

/* every "http" must be the SVG namespace: nothing is fetched from anywhere */
static void check_offline(const char *s, const char *name) {
  const char *ns = "http://www.w3.org/2000/svg\"";
  int bad = 0;
  for (const char *p = s; (p = strstr(p, "http")); p += 4)
    if (strncmp(p, ns, strlen(ns)) || p - s < 7 || strncmp(p - 7, "xmlns=\"", 7)) bad++;
  CHECK(bad == 0, "%s: %d references to http other than the SVG xmlns", name, bad);
  CHECK(!strstr(s, "<script") && !strstr(s, "<img") && !strstr(s, "<link") && !strstr(s, "url("),
        "%s: scripts, images, links or url() in the report", name);
  /* non-finite numbers must be skipped, never printed as coordinates or text */
  const char *nonfinite[] = {">nan", "nan,", ",nan", "\"nan", " nan", ">inf", "inf,", ",inf",
                             "\"inf", " inf", "-nan", "-inf"};
  for (size_t i = 0; i < sizeof nonfinite / sizeof *nonfinite; i++)
    CHECK(!strstr(s, nonfinite[i]), "%s: '%s' in the report", name, nonfinite[i]);
}

static void test_full_report(void) {
  enum { K = 10, STEPS = 5000 };
  static const char *names[K] = {"a<b&c",   "Trouser", "Pullover", "Dress", "Coat",
                                 "Sandal", "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  int64_t cm[K * K];
  for (int i = 0; i < K; i++)
    for (int j = 0; j < K; j++) cm[i * K + j] = i == j ? 900 + i : (i + j) % 7;
  cm[3 * K + 3] = 4321;
  cm[6 * K + 0] = 77; /* shirts taken for the first class */
  cli_epoch_stats ep[3] = {
      {1, 0.61, 0.78, 0.45, 0.84, 0.05, 3.2, 18750},
      {2, 0.38, 0.86, NAN, 0.88, 0.03, 3.0, 20000},
      {3, 0.29, 0.90, 0.31, 0.915, 0.01, 2.9, 20689},
  };
  static int64_t idx[STEPS];
  static float loss[STEPS], lr[STEPS];
  for (int i = 0; i < STEPS; i++) {
    idx[i] = i + 1;
    loss[i] = (float)(2.3 * exp(-i / 900.0) + 0.25 + 0.1 * sin(i * 0.7));
    /* one-cycle: up to 0.1 at step 1234 (a group's middle when 5000 steps are drawn as
     * 500 groups), then down; a per-epoch or per-group mean would miss the peak */
    lr[i] = (float)(i < 1233 ? 0.1 * (i + 1) / 1234 : 0.1 - 0.1 * (i - 1233) / 3767.0);
  }
  lr[1233] = 0.1f;
  loss[100] = NAN;
  loss[2000] = INFINITY;
  const char *keys[] = {"learning_rate", "optimizer", "weird <key>"};
  const char *vals[] = {"0.05", "sgd nesterov", "x > y && z"};
  cli_report r = {
      .title = "Run <1> & \"x\"",
      .model_path = "models/resnet9.cfg",
      .data_spec = "fashion-mnist",
      .device = "cpu (2 threads)",
      .precision = "fp32",
      .started_at = "2026-01-02 03:04:05",
      .n_hyper = 3, .hyper_keys = keys, .hyper_values = vals,
      .summary_text = "layer  output\nconv   <28x28x64>\n",
      .n_epochs = 3, .epochs = ep,
      .n_steps = STEPS, .step_index = idx, .step_loss = loss, .step_lr = lr,
      .eval_name = "validation", .note = "stopped early after epoch 3 of 9",
      .version = "9.8.7", .written_at = "2026-01-02 05:06:07 +0100",
      .classes = K, .class_names = names, .confusion = cm,
      .total_seconds = 9.1, .best_acc = 0.915, .best_epoch = 3,
  };
  char *s = render(&r, "report.html");
  if (!s) return;
  check_offline(s, "full report");
  /* step chart, three epoch charts, confusion matrix */
  CHECK(count(s, "<svg") >= 5, "%zu <svg> elements, want at least 5", count(s, "<svg"));
  CHECK(strstr(s, "<polyline") != NULL, "no polyline in the charts");
  CHECK(strstr(s, "Training loss per step") && strstr(s, "Accuracy per epoch") &&
            strstr(s, "Learning rate per step") && strstr(s, "Loss per epoch"),
        "a chart title is missing");
  CHECK(!strstr(s, "Learning rate per epoch"), "the per-epoch lr chart is drawn though steps have one");
  CHECK(strstr(s, "peak 0.1 at step 1234; final 2.65") != NULL, "the lr chart's note names the peak");
  CHECK(strstr(s, "Best validation accuracy") && strstr(s, "<th>validation acc</th>") &&
            !strstr(s, "test acc"),
        "the held-out set is called validation");
  CHECK(strstr(s, "<div class=\"k\">Stopped</div><div class=\"v\">stopped early after epoch 3 of 9<"),
        "the note on how the run ended");
  CHECK(strstr(s, "<div class=\"k\">cnn version</div><div class=\"v\">9.8.7<") &&
            strstr(s, "<div class=\"k\">Written</div><div class=\"v\">2026-01-02 05:06:07 +0100<") &&
            strstr(s, "Written by the cnn command 9.8.7 on 2026-01-02 05:06:07 +0100."),
        "version and date, as facts and in the footer");
  CHECK(strstr(s, "a&lt;b&amp;c") != NULL, "class name not escaped as a&lt;b&amp;c");
  CHECK(!strstr(s, "a<b&c"), "raw class name a<b&c in the HTML");
  for (int i = 1; i < K; i++) CHECK(strstr(s, names[i]) != NULL, "class name %s missing", names[i]);
  CHECK(strstr(s, ">4321<") != NULL, "the count 4321 is not shown in the matrix");
  CHECK(strstr(s, ">77<") != NULL, "the count 77 is not shown in the matrix");
  CHECK(strstr(s, "Run &lt;1&gt; &amp; &quot;x&quot;") != NULL, "title not escaped");
  CHECK(strstr(s, "weird &lt;key&gt;") && strstr(s, "x &gt; y &amp;&amp; z"), "hyper-parameters not escaped");
  CHECK(strstr(s, "conv   &lt;28x28x64&gt;") != NULL, "summary not escaped in <pre>");
  CHECK(strstr(s, "<pre>") != NULL, "no <pre> for the summary");
  CHECK(strstr(s, "91.50") != NULL, "best accuracy 91.50 %% missing");
  CHECK(strstr(s, "recall") != NULL, "no recall column");
  /* downsampled: far fewer points than steps */
  CHECK(strlen(s) < 400000, "report of %zu bytes for %d steps: not downsampled", strlen(s), STEPS);
  free(s);
}

static void test_edge_cases(void) {
  /* no epochs, no steps, nothing optional */
  cli_report r0 = {0};
  char *s = render(&r0, "empty.html");
  if (s) check_offline(s, "empty report");
  if (s) CHECK(strstr(s, "Written by the cnn command. ") && !strstr(s, "Written<"),
               "no version or date given: none shown");
  free(s);

  /* one epoch with NaN test values, a few steps, one class */
  cli_epoch_stats e1 = {1, 0.5, 0.8, NAN, NAN, 0.1, 1.0, NAN};
  int64_t idx[3] = {0, 1, 2}, one = 42;
  float loss[3] = {1.0f, NAN, 0.5f};
  const char *name1[] = {"only"};
  cli_report r1 = {.n_epochs = 1, .epochs = &e1, .n_steps = 3, .step_index = idx, .step_loss = loss,
                   .classes = 1, .class_names = name1, .confusion = &one,
                   .total_seconds = NAN, .best_acc = NAN};
  s = render(&r1, "one.html");
  if (s) {
    check_offline(s, "one-epoch report");
    CHECK(strstr(s, ">42<") && strstr(s, "only"), "one-class matrix missing");
    CHECK(strstr(s, "Learning rate per epoch") && strstr(s, "Best test accuracy"),
          "without per-step rates the lr is drawn per epoch; the held-out set is 'test'");
  }
  free(s);

  /* 150 classes, no names: small cells, no per-cell numbers, still every count in a tooltip */
  enum { K = 150 };
  int64_t *cm = calloc((size_t)K * K, sizeof *cm);
  if (!cm) return;
  for (int i = 0; i < K; i++) cm[i * K + i] = 1234, cm[i * K + (i + 3) % K] = 3;
  cli_epoch_stats e2[2] = {{1, 4.0, 0.1, 3.9, 0.12, 0.1, 10, 5000}, {2, 3.0, 0.3, 3.1, 0.28, 0.05, 10, 5000}};
  cli_report r2 = {.n_epochs = 2, .epochs = e2, .classes = K, .confusion = cm, .total_seconds = 20};
  s = render(&r2, "many.html");
  if (s) {
    check_offline(s, "150-class report");
    CHECK(strstr(s, ">149<") != NULL, "class label 149 missing");
    CHECK(!strstr(s, ">1234<"), "per-cell numbers drawn for 150 classes");
  }
  free(s);
  free(cm);
}

static void test_write_errors(void) {
  cli_report r = {.title = "x"};
  /* a directory that does not exist: fails, names the path, creates nothing */
  char path[256];
  join(path, sizeof path, "no-such-dir/report.html");
  cnn_status st = cli_report_write(path, &r);
  CHECK(st == CNN_ERR_IO, "write into a missing directory gave %s", cnn_status_name(st));
  CHECK(strstr(cnn_last_error(), path) != NULL, "message '%s' does not name %s", cnn_last_error(), path);
  char dir[256];
  join(dir, sizeof dir, "no-such-dir");
  CHECK(!exists(dir), "the write created %s", dir);

  /* the destination is a directory: the temp file is written, the rename fails,
   * and the temp file must be removed */
  char target[256], tmp[300];
  join(target, sizeof target, "is-a-dir.html");
  snprintf(tmp, sizeof tmp, "%s.tmp", target);
  CHECK(mkdir(target, 0700) == 0, "cannot make %s", target);
  st = cli_report_write(target, &r);
  CHECK(st == CNN_ERR_IO, "rename onto a directory gave %s", cnn_status_name(st));
  CHECK(strstr(cnn_last_error(), target) != NULL, "message '%s' does not name %s", cnn_last_error(), target);
  CHECK(!exists(tmp), "%s left behind after a failed rename", tmp);
  rmdir(target);

  CHECK(cli_report_write(NULL, &r) == CNN_ERR_ARG, "NULL path accepted");
  cli_report bad = {.n_epochs = 2};
  join(path, sizeof path, "bad.html");
  CHECK(cli_report_write(path, &bad) == CNN_ERR_ARG, "2 epochs without an array accepted");
  CHECK(!exists(path), "an invalid report was written");
}

int main(void) {
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/cnn_report_XXXXXX", base && strlen(base) < 40 ? base : "/tmp");
  if (!mkdtemp(tmpdir)) tu_skip("cannot make a temp directory");
  test_full_report();
  test_edge_cases();
  test_write_errors();
  CHECK(rmdir(tmpdir) == 0, "files left in %s", tmpdir);
  return tu_finish("test_report");
}
