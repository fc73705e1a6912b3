/* Shared by train and eval: accuracy, loss and confusion matrix of a built net
 * over a dataset, and small file helpers. */
#ifndef CNN_CLI_EVALUATE_H
#define CNN_CLI_EVALUATE_H

#include <stdint.h>

#include "cnn/cnn.h"
#include "cnn/data.h"

typedef struct cli_eval {
  int64_t n, correct;
  double loss;             /* mean cross-entropy */
  double acc;
  int classes;
  int64_t *confusion;      /* [classes * classes]: row true, column predicted (caller frees) */
} cli_eval;

/* runs the whole dataset through the net in batches of the built size (inference
 * semantics), normalising with mean/std */
cnn_status cli_evaluate(cnn_net *net, const cnn_dataset *d, int batch, const float *mean,
                        const float *std, cli_eval *out);

/* mkdir -p */
int cli_mkdirs(const char *path);
/* a whole text file (at most 64 MiB), NUL-terminated; NULL with cnn_last_error() set */
char *cli_read_text(const char *path);

#endif
