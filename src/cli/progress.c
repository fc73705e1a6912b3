#define _POSIX_C_SOURCE 200809L
#include "cli/progress.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#ifndef TIOCGWINSZ
#include <termios.h>
#endif

void cli_progress_init(cli_progress *p, int quiet) {
  memset(p, 0, sizeof *p);
  p->tty = isatty(2);
  p->quiet = quiet;
  p->last = -1e9;
  p->run_total = -1;
}

void cli_progress_start_run(cli_progress *p, double t0, int64_t step0, int64_t total) {
  p->run_t0 = t0;
  p->run_step0 = step0;
  p->run_total = total;
}

/* h:mm:ss, or m:ss under an hour when short */
static void eta(char *buf, size_t n, double s, int short_form) { /* at most 9 characters */
  if (!(s >= 0) || s > 3600.0 * 999) s = 0;
  int t = (int)(s + 0.5);
  if (short_form && t < 3600) snprintf(buf, n, "%d:%02d", t / 60, t % 60);
  else snprintf(buf, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
}

int cli_term_cols(int fd) {
  struct winsize ws;
  if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  const char *c = getenv("COLUMNS");
  int v = c ? atoi(c) : 0;
  return v > 0 && v < 10000 ? v : 80;
}

enum { F_SPEED, F_ACC, F_LOSS, F_ETA, F_RUN, F_BAR, NF }; /* in the order they are dropped */

void cli_progress_format(char *buf, size_t n, int cols, int epoch, int epochs, int step, int steps,
                         double loss, double acc, double img_s, double eta_s, double eta_run_s) {
  int w = cols - 1; /* the last column would wrap the cursor on some terminals */
  if (w < 1) w = 1;
  char e1[24], e2[24], f[NF][80];
  eta(e1, sizeof e1, eta_s, 1);
  eta(e2, sizeof e2, eta_run_s, 1);
  snprintf(f[F_SPEED], sizeof f[0], " %.0f img/s", img_s);
  snprintf(f[F_ACC], sizeof f[0], " acc %.4f", acc);
  snprintf(f[F_LOSS], sizeof f[0], " loss %.4f", loss);
  int on[NF] = {1, 1, 1, 1, eta_run_s >= 0, 1};
  /* the bar's width follows the terminal's alone (so it never widens as the terminal
   * narrows): 30 from 97 columns, 13 at 80, 10 from 76 down; the numbers come first */
  int bar_w = w - 66 < 10 ? 10 : w - 66 > 30 ? 30 : w - 66;
  char head[48], count[48], line[512] = "";
  snprintf(head, sizeof head, "epoch %d/%d", epoch, epochs);
  snprintf(count, sizeof count, " %d/%d", step, steps);
  for (int drop = 0; drop <= NF; drop++) {
    if (drop > 0) on[drop - 1] = 0;
    if (on[F_ETA] && on[F_RUN]) snprintf(f[F_ETA], sizeof f[0], " ETA %s (run %s)", e1, e2);
    else if (on[F_ETA]) snprintf(f[F_ETA], sizeof f[0], " ETA %s", e1);
    else if (on[F_RUN]) snprintf(f[F_ETA], sizeof f[0], " ETA run %s", e2);
    else f[F_ETA][0] = 0;
    int ends = on[F_ETA] || on[F_RUN];
    size_t len = strlen(head) + strlen(count) + (on[F_LOSS] ? strlen(f[F_LOSS]) : 0) +
                 (on[F_ACC] ? strlen(f[F_ACC]) : 0) + (on[F_SPEED] ? strlen(f[F_SPEED]) : 0) +
                 (ends ? strlen(f[F_ETA]) : 0);
    int room = w - (int)len - 3; /* " [" and "]" */
    int bar = on[F_BAR] && room >= bar_w ? bar_w : 0;
    if (on[F_BAR] && !bar && drop < F_BAR) continue; /* drop another field first */
    if (!on[F_BAR] && (int)len > w && drop < NF) continue;
    char b[40] = "";
    if (bar) {
      int fill = steps ? (int)((double)bar * step / steps) : bar;
      b[0] = ' ', b[1] = '[';
      for (int i = 0; i < bar; i++) b[2 + i] = i < fill ? '=' : (i == fill ? '>' : ' ');
      b[2 + bar] = ']', b[3 + bar] = 0;
    }
    snprintf(line, sizeof line, "%s%s%s%s%s%s%s", head, b, count, on[F_LOSS] ? f[F_LOSS] : "",
             on[F_ACC] ? f[F_ACC] : "", on[F_SPEED] ? f[F_SPEED] : "", ends ? f[F_ETA] : "");
    break;
  }
  if ((int)strlen(line) > w) line[w] = 0; /* narrower than "epoch 1/1 1/1" */
  snprintf(buf, n, "%s", line);
}

void cli_progress_step(cli_progress *p, double t, int epoch, int epochs, int step, int steps,
                       int64_t global, double loss, double acc, double img_s, double eta_s) {
  if (p->quiet) return;
  int last = step == steps;
  if (!p->tty && !last && t - p->last < 5.0) return; /* a pipe gets a line every 5 s */
  if (p->tty && !last && t - p->last < 0.1) return;  /* a terminal is redrawn at 10 Hz */
  p->last = t;
  /* the whole run's ETA: its rate so far (evaluation included) over the steps left */
  double eta_run = -1;
  if (p->run_total > 0 && global > p->run_step0 && t > p->run_t0)
    eta_run = (t - p->run_t0) / (double)(global - p->run_step0) * (double)(p->run_total - global);
  char line[512];
  if (p->tty) {
    cli_progress_format(line, sizeof line, cli_term_cols(2), epoch, epochs, step, steps, loss, acc,
                        img_s, eta_s, eta_run);
    fprintf(stderr, "\r\033[K%s", line);
    p->open = 1;
  } else {
    char e1[24], e2[48] = "";
    eta(e1, sizeof e1, eta_s, 0);
    if (eta_run >= 0) {
      char e[24];
      eta(e, sizeof e, eta_run, 0);
      snprintf(e2, sizeof e2, " (run %s)", e);
    }
    fprintf(stderr, "epoch %d/%d step %d/%d loss %.4f acc %.4f %.0f img/s ETA %s%s\n", epoch,
            epochs, step, steps, loss, acc, img_s, e1, e2);
  }
  fflush(stderr);
}

void cli_progress_end_epoch(cli_progress *p) {
  if (!p->quiet && p->tty && p->open) fputc('\n', stderr);
  p->open = 0;
}

/* ---- wrapped text ---------------------------------------------------------- */

/* a good place to break after s[i] (a space): after ",;:" or before "|(" */
static int good_break(const char *s, size_t i) {
  return i > 0 && (strchr(",;:", s[i - 1]) || s[i + 1] == '|' || s[i + 1] == '(');
}

void cli_term_print(FILE *f, const char *text) {
  int fd = fileno(f);
  if (fd < 0 || !isatty(fd)) {
    fprintf(f, "%s\n", text);
    return;
  }
  int w = cli_term_cols(fd) - 1, indent = 0;
  if (w < 20) w = 20;
  const char *s = text;
  for (;;) {
    size_t len = strlen(s), room = (size_t)(w - indent);
    if (len <= room) {
      fprintf(f, "%*s%s\n", indent, "", s);
      break;
    }
    size_t cut = 0, bar = 0;
    for (size_t i = 1; i < room; i++) { /* the last good break that fits, else the last space */
      if (s[i] == ' ' && good_break(s, i)) cut = i;
      if (s[i] == ' ' && s[i + 1] == '|') bar = i;
    }
    if (bar >= room / 2) cut = bar; /* "a | b | c": whole parts where they fit */
    if (cut < room / 3)
      for (size_t i = room / 3; i < room; i++)
        if (s[i] == ' ') cut = i;
    if (!cut) cut = room; /* one word longer than the line: cut it */
    fprintf(f, "%*s%.*s\n", indent, "", (int)cut, s);
    s += cut;
    while (*s == ' ') s++;
    if (!*s) break;
    indent = 2;
  }
  fflush(f);
}

/* ---- Ctrl-C ------------------------------------------------------------------ */

/* Written by the signal handler, read by the training loop: the only kind of
 * object a handler may write (C11 7.14.1.1), hence global. */
static volatile sig_atomic_t interrupted;
static struct sigaction old_int;

static void on_sigint(int sig) {
  if (interrupted) { /* the second Ctrl-C: the default action, now */
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  interrupted = 1;
}

void cli_interrupt_install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART; /* file writes and waits carry on; the loop polls the flag */
  interrupted = 0;
  sigaction(SIGINT, &sa, &old_int);
}

void cli_interrupt_restore(void) { sigaction(SIGINT, &old_int, NULL); }

int cli_interrupted(void) { return interrupted != 0; }
