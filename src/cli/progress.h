/* Training progress: a bar redrawn in place on a terminal (fitted to its width,
 * which is read again at every redraw, so a resized window gets a fitted bar), one
 * plain line every few seconds on a pipe, nothing with --quiet. Written to stderr.
 * Also: text wrapped to the terminal's width, and Ctrl-C as a request to stop. */
#ifndef CNN_CLI_PROGRESS_H
#define CNN_CLI_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef struct cli_progress {
  int tty, quiet;
  int open;           /* a bar is drawn and its line not yet ended */
  double last;        /* time of the last line printed */
  double run_t0;      /* the run's start (this process), for the whole run's ETA */
  int64_t run_step0, run_total; /* global steps at that start, and in the whole run */
} cli_progress;

void cli_progress_init(cli_progress *p, int quiet);
/* the whole run: started at time t0 at global step step0 of total steps */
void cli_progress_start_run(cli_progress *p, double t0, int64_t step0, int64_t total);
/* step of steps in the epoch; global: the run's step count after it; eta_s: the
 * epoch's remaining seconds. The whole run's ETA comes from the run's rate so far. */
void cli_progress_step(cli_progress *p, double t, int epoch, int epochs, int step, int steps,
                       int64_t global, double loss, double acc, double img_s, double eta_s);
/* ends the bar's line (if one is drawn) so that other output can follow */
void cli_progress_end_epoch(cli_progress *p);

/* The progress line for a terminal `cols` columns wide (at most cols - 1
 * characters, so the cursor never wraps): fields are dropped in the order img/s,
 * accuracy, loss, the epoch's ETA, the run's ETA, the bar; the bar is 10 to 30
 * characters. eta_run_s < 0: not known. Exposed for tests. */
void cli_progress_format(char *buf, size_t n, int cols, int epoch, int epochs, int step, int steps,
                         double loss, double acc, double img_s, double eta_s, double eta_run_s);

/* columns of the terminal on fd (TIOCGWINSZ; $COLUMNS, else 80, where that fails) */
int cli_term_cols(int fd);
/* text and a newline on f; on a terminal wrapped to its width: before " | " first,
 * else after ", ", "; ", ": " or before " (", else at a space; continuation lines
 * indented by two */
void cli_term_print(FILE *f, const char *text);

/* Ctrl-C (SIGINT) as a request to stop: the first sets a flag that the training
 * loop reads between steps; a second one, before the loop has stopped, ends the
 * process at once (the default action). The flag is the one piece of mutable
 * global state here: a signal handler can reach nothing else, and may only write
 * a volatile sig_atomic_t. */
void cli_interrupt_install(void);
void cli_interrupt_restore(void);
int cli_interrupted(void);

#endif
