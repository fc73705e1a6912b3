/* The training report: one self-contained report.html (inline CSS and SVG, no
 * scripts, fonts or images from elsewhere) that opens offline in any browser. */
#ifndef CNN_CLI_REPORT_H
#define CNN_CLI_REPORT_H

#include <stdint.h>

#include "cnn/cnn.h"

/* One row per epoch. Accuracies are fractions in [0, 1]; NaN marks a value that
 * was not measured (e.g. no test set) and is skipped in charts and tables. */
typedef struct cli_epoch_stats {
  int epoch;
  double train_loss, train_acc, test_loss, test_acc, lr, seconds, images_per_s;
} cli_epoch_stats;

typedef struct cli_report {
  const char *title, *model_path, *data_spec, *device, *precision, *started_at; /* any may be NULL */
  int n_hyper;
  const char *const *hyper_keys, *const *hyper_values; /* hyper-parameter table */
  const char *summary_text;                             /* model summary, shown in <pre> */
  int n_epochs;
  const cli_epoch_stats *epochs;
  int n_steps;
  const int64_t *step_index; /* may be NULL: steps 0..n_steps-1 */
  const float *step_loss;    /* per-step training loss; downsampled when long */
  const float *step_lr;      /* may be NULL: per-step learning rate (else the epochs' lr) */
  const char *eval_name;     /* the held-out set: "test" (NULL) or "validation" */
  const char *note;          /* may be NULL: how the run ended, when not as planned */
  const char *version;       /* may be NULL: the cnn version that wrote the report */
  const char *written_at;    /* may be NULL: the date the report was written */
  int classes;
  const char *const *class_names; /* may be NULL: 0..classes-1 */
  const int64_t *confusion;       /* [classes * classes], row = true, column = predicted; may be NULL */
  double total_seconds, best_acc; /* best_acc a fraction */
  int best_epoch;                 /* <= 0: taken from the epoch with the best test accuracy */
} cli_report;

/* Write the report to PATH.tmp, then rename it to PATH; on failure nothing is
 * left behind and cnn_last_error() names the path. */
cnn_status cli_report_write(const char *path, const cli_report *r);

#endif
