#define _POSIX_C_SOURCE 200809L
#include "cli/progress.h"

#include <stdio.h>
#include <unistd.h>

void cli_progress_init(cli_progress *p, int quiet) {
  p->tty = isatty(2);
  p->quiet = quiet;
  p->last = -1e9;
}

static void eta(char *buf, size_t n, double s) {
  if (!(s >= 0) || s > 360000) s = 0;
  int t = (int)(s + 0.5);
  snprintf(buf, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
}

void cli_progress_step(cli_progress *p, double t, int epoch, int epochs, int step, int steps,
                       double loss, double acc, double img_s, double eta_s) {
  if (p->quiet) return;
  int last = step == steps;
  if (!p->tty && !last && t - p->last < 5.0) return; /* a pipe gets a line every 5 s */
  if (p->tty && !last && t - p->last < 0.1) return;  /* a terminal is redrawn at 10 Hz */
  p->last = t;
  char e[32];
  eta(e, sizeof e, eta_s);
  if (p->tty) {
    char bar[31];
    int fill = steps ? (int)(30.0 * step / steps) : 30;
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[30] = 0;
    fprintf(stderr, "\r\033[Kepoch %d/%d [%s] %d/%d loss %.4f acc %.4f %.0f img/s ETA %s", epoch,
            epochs, bar, step, steps, loss, acc, img_s, e);
  } else {
    fprintf(stderr, "epoch %d/%d step %d/%d loss %.4f acc %.4f %.0f img/s ETA %s\n", epoch, epochs,
            step, steps, loss, acc, img_s, e);
  }
  fflush(stderr);
}

void cli_progress_end_epoch(cli_progress *p) {
  if (!p->quiet && p->tty) fputc('\n', stderr);
}
