/* cnn train as users meet it, on a small generated IDX dataset (4 classes: which
 * quadrant of a 12x12 image holds a bright blob):
 *  - the progress line fits any width (cli_progress_format, 20..200 columns);
 *  - in a pseudo-terminal of 80 columns no output line is wider than 80, the bar
 *    is redrawn with \r, a resize to 60 columns (TIOCSWINSZ, SIGWINCH) narrows it,
 *    and Ctrl-C (^C typed into the terminal) stops the run with exit status 130,
 *    a loadable last.safetensors, the --resume command and the report's path, and
 *    the printed command resumes it;
 *  - a run stopped by Ctrl-C mid-epoch (--interrupt-at-step) and resumed ends
 *    exactly like the uninterrupted run; on a pipe the output stays line-oriented;
 *  - --patience stops a run that cannot improve (lr 0) and says so, in the output
 *    and the report;
 *  - metrics.jsonl names each held-out value once; report.html has a date, the
 *    version, one normalisation value per channel and the learning rate per step
 *    (the one-cycle peak).
 * Built from tests/test_train_term.c + src/cli/progress.c; needs forkpty (-lutil). */
#define _DEFAULT_SOURCE /* forkpty, cfmakeraw */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <termios.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/progress.h"
#include "cnn/cnn.h"
#include "core/rng.h"
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
static int exists(const char *rel) { return clitest_exists(dir, rel); }

static void write_text(const char *rel, const char *text) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, rel);
  FILE *f = fopen(p, "wb");
  if (!f) exit(1);
  fputs(text, f);
  fclose(f);
}

/* cnn ARGS in the test folder, output (both streams) to OUT; the wait status */
static int run(const char *args, const char *out) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "cd %s && exec env OMP_NUM_THREADS=1 %s %s > %s 2>&1", dir, bin, args,
           out);
  return system(cmd);
}

static int exit_code(int st) { return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1; }

static size_t count(const char *hay, const char *needle) {
  size_t n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

/* the "step" lines of a metrics.jsonl */
static char *step_lines(const char *rel) {
  char *all = slurp(rel), *out = calloc(strlen(all) + 1, 1), *save = NULL;
  for (char *l = strtok_r(all, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
    if (strstr(l, "\"type\":\"step\"")) strcat(strcat(out, l), "\n");
  free(all);
  return out;
}

/* ---- the progress line, every width ------------------------------------------ */

static int bar_width(const char *line) {
  const char *a = strchr(line, '['), *b = a ? strchr(a, ']') : NULL;
  return a && b ? (int)(b - a - 1) : 0;
}

static void test_format(void) {
  char line[512];
  int prev = 1 << 30;
  for (int cols = 200; cols >= 20; cols--) {
    cli_progress_format(line, sizeof line, cols, 12, 200, 345, 1875, 0.41234, 0.85123, 23456.0,
                        75.0, 3725.0);
    CHECK((int)strlen(line) <= cols - 1, "%d columns: a line of %zu: '%s'", cols, strlen(line), line);
    int bw = bar_width(line);
    CHECK(bw <= prev, "%d columns: the bar grew from %d to %d: '%s'", cols, prev, bw, line);
    prev = bw;
    CHECK(!strncmp(line, "epoch 12/200", 12 < cols - 1 ? 12 : (size_t)cols - 1),
          "%d columns: '%s' does not start with the epoch", cols, line);
    if (cols >= 120) /* everything, and a full bar */
      CHECK(bw == 30 && strstr(line, "23456 img/s") && strstr(line, "acc 0.8512") &&
                strstr(line, "ETA 1:15 (run 1:02:05)"),
            "%d columns: '%s'", cols, line);
    if (cols >= 60) /* the bar and both ETAs survive */
      CHECK(bw >= 10 && strstr(line, "1:15") && strstr(line, "1:02:05"), "%d columns: '%s'", cols,
            line);
  }
  /* 80 columns: the loss stays; the run's ETA unknown is left out */
  cli_progress_format(line, sizeof line, 80, 1, 3, 5, 16, 1.5, 0.5, 900, 2, -1);
  CHECK(strstr(line, "loss 1.5000") && strstr(line, "ETA 0:02") && !strstr(line, "run"),
        "80 columns: '%s'", line);
}

/* ---- a pseudo-terminal ---------------------------------------------------------- */

typedef struct term {
  int fd;
  pid_t pid;
  char *out;
  size_t n, cap;
} term;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* read what the child wrote for up to `secs`; 0 at EOF (the child closed the terminal) */
static int term_read(term *t, double secs) {
  struct pollfd p = {t->fd, POLLIN, 0};
  if (poll(&p, 1, (int)(secs * 1000)) <= 0) return 1;
  if (t->n + 4096 + 1 > t->cap) {
    t->cap = (t->n + 4096 + 1) * 2;
    t->out = realloc(t->out, t->cap);
  }
  ssize_t got = read(t->fd, t->out + t->n, 4096);
  if (got <= 0) return 0; /* EIO once the child is gone */
  t->n += (size_t)got;
  t->out[t->n] = 0;
  return 1;
}

/* the segments of the output, between \r and \n, without "\033[K" and the echoed ^C */
typedef int (*seg_fn)(const char *seg, size_t len, void *ctx);
static int each_segment(const char *s, seg_fn fn, void *ctx) {
  char buf[4096];
  size_t len = 0;
  for (;; s++) {
    if (!*s || *s == '\r' || *s == '\n') {
      buf[len] = 0;
      int r = fn(buf, len, ctx);
      if (r) return r;
      len = 0;
      if (!*s) return 0;
    } else if (s[0] == '\033' && s[1] == '[' && s[2] == 'K') {
      s += 2;
    } else if (s[0] == '^' && s[1] == 'C') { /* the terminal's echo of the typed ^C */
      s += 1;
    } else if (len + 1 < sizeof buf) {
      buf[len++] = *s;
    }
  }
}

typedef struct widest { size_t max; char line[4096]; } widest;
static int seg_widest(const char *seg, size_t len, void *ctx) {
  widest *w = ctx;
  if (len > w->max) w->max = len, snprintf(w->line, sizeof w->line, "%s", seg);
  return 0;
}
/* the first progress bar's width (0 if none yet) */
static int seg_bar(const char *seg, size_t len, void *ctx) {
  (void)len;
  if (strncmp(seg, "epoch ", 6) || !strchr(seg, '[')) return 0;
  *(int *)ctx = bar_width(seg);
  return 1;
}

static void test_terminal(void) {
  term t = {0};
  struct winsize ws = {.ws_row = 24, .ws_col = 80};
  t.pid = forkpty(&t.fd, NULL, NULL, &ws);
  CHECK(t.pid >= 0, "forkpty: %s", strerror(errno));
  if (t.pid < 0) return;
  if (t.pid == 0) {
    /* NOFLSH: the ^C typed below must not make the terminal driver discard output the
     * test has not read yet (by default an INTR flushes both queues) */
    struct termios tio;
    if (tcgetattr(0, &tio) == 0) {
      tio.c_lflag |= NOFLSH;
      tcsetattr(0, TCSANOW, &tio);
    }
    if (chdir(dir) != 0) _exit(126);
    setenv("OMP_NUM_THREADS", "1", 1);
    unsetenv("COLUMNS");
    execl(bin, bin, "train", "model.cfg", "--data", "idx:data", "--out", "term", "--epochs", "300",
          "--batch", "8", "--seed", "4", (char *)NULL);
    _exit(127);
  }
  /* the first bar at 80 columns */
  int bar80 = 0, bar60 = 0, open = 1;
  double t0 = now();
  while (open && !bar80 && now() - t0 < 120) {
    open = term_read(&t, 0.5);
    if (t.out) each_segment(t.out, seg_bar, &bar80);
  }
  CHECK(bar80 >= 10, "a progress bar at 80 columns within 120 s: %s", t.out ? t.out : "");
  /* resize: the kernel sends SIGWINCH; later bars are 60 columns at most */
  size_t mark = t.n;
  ws.ws_col = 60;
  CHECK(ioctl(t.fd, TIOCSWINSZ, &ws) == 0, "TIOCSWINSZ: %s", strerror(errno));
  t0 = now();
  while (open && !bar60 && now() - t0 < 60) {
    open = term_read(&t, 0.5);
    /* skip the first segment after the mark: it may be a line drawn before the resize */
    const char *after = t.out + mark, *cr = strchr(after, '\r');
    if (cr && strchr(cr + 1, '\r')) each_segment(strchr(cr + 1, '\r') + 1, seg_bar, &bar60);
  }
  CHECK(bar60 > 0 && bar60 < bar80, "after a resize to 60 columns the bar narrows: %d -> %d",
        bar80, bar60);
  size_t mark60 = t.n;
  /* Ctrl-C typed into the terminal: SIGINT to the foreground process group */
  CHECK(write(t.fd, "\003", 1) == 1, "typing ^C");
  t0 = now();
  while (open && now() - t0 < 120) open = term_read(&t, 1.0);
  CHECK(!open, "the run ended within 120 s of ^C");
  if (open) kill(t.pid, SIGKILL);
  int st = 0;
  waitpid(t.pid, &st, 0);
  close(t.fd);
  const char *o = t.out ? t.out : "";
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 130, "^C: exit status 130 (status %d): %s", st, o);
  widest w = {0};
  each_segment(o, seg_widest, &w);
  CHECK(w.max <= 80, "every line fits 80 columns; the widest has %zu: '%s'", w.max, w.line);
  widest w60 = {0};
  each_segment(o + mark60, seg_widest, &w60);
  CHECK(w60.max <= 60, "after the resize every line fits 60 columns; the widest has %zu: '%s'",
        w60.max, w60.line);
  CHECK(count(o, "\r\033[Kepoch ") >= 2, "the bar is redrawn in place (\\r): %s", o);
  CHECK(strstr(o, "cnn train: model.cfg on idx:data") != NULL, "the header: %s", o);
  CHECK(strstr(o, "stopped by Ctrl-C at step") && strstr(o, "saved term/last.safetensors"),
        "^C: the message says where the state went: %s", o + mark60);
  CHECK(strstr(o, "cnn train --resume term/last.safetensors") != NULL,
        "^C: the message holds the --resume command: %s", o + mark60);
  const char *rep = strstr(o, "report: term/report.html");
  const char *nl = rep ? strchr(rep, '\n') : NULL;
  CHECK(nl && nl[1] == 0, "^C: the last line is the report's path: %s", o + mark60);
  CHECK(exists("term/last.safetensors") && exists("term/report.html"), "^C: checkpoint and report");
  int est = run("eval term/last.safetensors", "term_eval.txt");
  char *e = slurp("term_eval.txt");
  CHECK(exit_code(est) == 0 && strstr(e, "accuracy"), "the ^C checkpoint loads: %s", e);
  free(e);
  /* the printed command continues the run (to the end of the interrupted epoch) */
  const char *ep = strstr(o, "(epoch ");
  int epoch = ep ? atoi(ep + 7) : 0;
  CHECK(epoch >= 1 && epoch < 300, "^C: the epoch is named: %s", o + mark60);
  char args[256];
  snprintf(args, sizeof args, "train --resume term/last.safetensors --epochs %d --quiet",
           epoch > 0 ? epoch : 1);
  est = run(args, "term_resume.txt");
  e = slurp("term_resume.txt");
  CHECK(exit_code(est) == 0 && strstr(e, "final test accuracy"), "the resumed run: %s", e);
  CHECK(!strchr(e, '\r'), "a pipe gets lines, not \\r redraws: %s", e);
  free(e);
  free(t.out);
}

/* ---- Ctrl-C mid-epoch, resumed: the same run --------------------------------------- */

static void test_interrupt_resume(void) {
  const char *common = "train model.cfg --data idx:data --seed 5 --schedule onecycle --lr 0.08";
  char args[512];
  snprintf(args, sizeof args, "%s --out full", common);
  int st = run(args, "full.txt");
  char *full = slurp("full.txt");
  CHECK(exit_code(st) == 0, "the uninterrupted run: %s", full);
  CHECK(!strchr(full, '\r') && strstr(full, "epoch 1/3 step 16/16 loss ") &&
            strstr(full, " img/s ETA 0:00:00"),
        "a pipe gets one plain line per progress report: %s", full);
  CHECK(strstr(full, "; report full/report.html\n") != NULL,
        "the last line says where the report is: %s", full);
  /* 512 images / 32 = 16 steps per epoch: a Ctrl-C after step 24, mid-epoch 2 */
  snprintf(args, sizeof args, "%s --out part --interrupt-at-step 24", common);
  st = run(args, "part.txt");
  char *part = slurp("part.txt");
  CHECK(exit_code(st) == 130, "Ctrl-C: exit status 130 (status %d): %s", st, part);
  CHECK(strstr(part, "stopped by Ctrl-C at step 24 of 48 (epoch 2 of 3)") &&
            strstr(part, "cnn train --resume part/last.safetensors") &&
            strstr(part, "report: part/report.html\n"),
        "Ctrl-C: the step, the --resume command and the report: %s", part);
  char *report = slurp("part/report.html");
  CHECK(strstr(report, "stopped by Ctrl-C at step 24") != NULL, "the report says it was stopped");
  free(report);
  st = run("train --resume part/last.safetensors", "resume.txt");
  char *res = slurp("resume.txt");
  CHECK(exit_code(st) == 0, "the resumed run: %s", res);
  CHECK(strstr(res, "epoch 2/3: ") && strstr(res, "8 steps"),
        "the resumed run finishes epoch 2 from its 9th batch: %s", res);
  const char *a = strstr(full, "final test accuracy: "), *b = strstr(res, "final test accuracy: ");
  CHECK(a && b && atof(a + 21) == atof(b + 21), "the resumed final accuracy equals the "
        "uninterrupted one: %s / %s", a ? a : "?", b ? b : "?");
  char *sa = step_lines("full/metrics.jsonl"), *sb = step_lines("part/metrics.jsonl");
  CHECK(count(sa, "\n") == 48 && !strcmp(sa, sb),
        "the resumed run's 48 step lines (losses, lr) equal the uninterrupted run's");
  free(sa), free(sb);

  /* metrics.jsonl: each held-out value once; report.html: date, version, channels, lr */
  char *m = slurp("full/metrics.jsonl");
  size_t ep = count(m, "\"type\":\"epoch\"");
  CHECK(ep == 3 && count(m, "\"test_acc\":") == 3 && count(m, "\"test_loss\":") == 3 &&
            !strstr(m, "val_"),
        "3 epoch records, each with test_loss and test_acc once: %s", m);
  CHECK(strstr(m, "\"lr\":0.08}") != NULL, "a step at the one-cycle peak lr 0.08");
  free(m);
  char *r = slurp("full/report.html");
  CHECK(strstr(r, "Learning rate per step") && strstr(r, "peak 0.08 at step 12"),
        "the report's lr is per step and shows the one-cycle peak 0.08 at step 12");
  const char *ver = cnn_version();
  char want[128];
  snprintf(want, sizeof want, "<div class=\"k\">cnn version</div><div class=\"v\">%s<", ver);
  CHECK(ver && strlen(ver) >= 5 && strstr(r, want), "the report names version %s", ver);
  const char *wr = strstr(r, "<div class=\"k\">Written</div><div class=\"v\">");
  int y = 0, mo = 0, d = 0;
  CHECK(wr && sscanf(wr + 43, "%4d-%2d-%2d", &y, &mo, &d) == 3 && y >= 2024 && mo >= 1 &&
            mo <= 12 && d >= 1 && d <= 31,
        "the report has a date: %.60s", wr ? wr : "(none)");
  const char *sd = strstr(r, "normalisation std</td><td class=\"l mono\">");
  CHECK(sd && strchr(sd + 41, '<') - (sd + 41) == 6,
        "one std for the 1-channel model, not 0.0000 for unused channels: %.60s", sd ? sd : "-");
  free(r);
  free(full), free(part), free(res);
}

/* ---- --patience ------------------------------------------------------------------ */

static void test_patience(void) {
  /* lr 0 and no batch norm: the weights never change, so neither does the accuracy */
  int st = run("train flat.cfg --data idx:data --val-split 0.25 --out pat --lr 0 --epochs 10 "
               "--patience 2", "pat.txt");
  char *o = slurp("pat.txt");
  CHECK(exit_code(st) == 0, "--patience: exit 0: %s", o);
  CHECK(strstr(o, "stopped early after epoch 3 of 10: no better val accuracy for 2 epochs") &&
            strstr(o, "best.safetensors holds epoch 1"),
        "--patience 2 stops after epoch 3 and says so: %s", o);
  CHECK(!strstr(o, "epoch 4/10"), "no fourth epoch: %s", o);
  CHECK(strstr(o, "final val accuracy: ") && strstr(o, "stopped early after epoch 3)"),
        "the final line says it stopped early: %s", o);
  CHECK(exists("pat/best.safetensors"), "best.safetensors is kept");
  char *m = slurp("pat/metrics.jsonl");
  CHECK(count(m, "\"type\":\"epoch\"") == 3 && count(m, "\"val_acc\":") == 3 &&
            !strstr(m, "test_"),
        "3 epoch records with val_acc once each and no test_*: %s", m);
  free(m);
  char *r = slurp("pat/report.html");
  CHECK(strstr(r, "stopped early after epoch 3 of 10") && strstr(r, "Best validation accuracy"),
        "the report says it stopped early, on the validation set");
  free(r);
  free(o);
  st = run("train flat.cfg --data idx:data --patience 0", "pat0.txt");
  o = slurp("pat0.txt");
  CHECK(exit_code(st) == 2 && strstr(o, "--patience"), "--patience 0 is refused: %s", o);
  free(o);
}

int main(void) {
  test_format();
  bin = clitest_setup("cnn_term", dir, sizeof dir);
  char p[512];
  snprintf(p, sizeof p, "%s/data", dir);
  mkdir(p, 0777);
  write_idx("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 512, 1);
  write_idx("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 256, 2);
  write_text("model.cfg",
             "[net]\nheight=12\nwidth=12\nchannels=1\nbatch=32\nlearning_rate=0.05\nmomentum=0.9\n"
             "decay=0.0005\n[train]\nepochs=3\nflip=0\ncrop=1\n"
             "[convolutional]\nfilters=8\nsize=3\npad=1\nactivation=relu\n[maxpool]\nsize=2\n"
             "stride=2\n[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\npad=1\n"
             "activation=relu\n[avgpool]\nsize=3\nstride=3\n[dropout]\nprobability=0.1\n"
             "[connected]\noutput=4\nactivation=linear\n[softmax]\n");
  write_text("flat.cfg",
             "[net]\nheight=12\nwidth=12\nchannels=1\nbatch=32\nlearning_rate=0.05\nmomentum=0.9\n"
             "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=relu\n[connected]\noutput=4\n"
             "activation=linear\n[softmax]\n");
  test_interrupt_resume();
  test_patience();
  test_terminal();
  return clitest_finish("test_train_term", dir);
}
