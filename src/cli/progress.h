/* Training progress: a bar redrawn in place on a terminal, one plain line every
 * few seconds on a pipe, nothing with --quiet. Written to stderr. */
#ifndef CNN_CLI_PROGRESS_H
#define CNN_CLI_PROGRESS_H

typedef struct cli_progress {
  int tty, quiet;
  double last;        /* time of the last line printed */
} cli_progress;

void cli_progress_init(cli_progress *p, int quiet);
void cli_progress_step(cli_progress *p, double t, int epoch, int epochs, int step, int steps,
                       double loss, double acc, double img_s, double eta_s);
void cli_progress_end_epoch(cli_progress *p);

#endif
