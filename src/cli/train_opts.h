/* Options of `cnn train`: flags override the cfg's [net]/[train] sections. */
#ifndef CNN_CLI_TRAIN_OPTS_H
#define CNN_CLI_TRAIN_OPTS_H

#include <stdint.h>

#include "cli/cli.h"

typedef struct train_opts {
  const char *model, *data, *device, *precision, *out, *resume, *optimizer, *schedule;
  const char *device_data;     /* auto | on | off: the training set in device memory */
  const char *cuda_graph;      /* on | off */
  const char *weights;         /* --weights: Darknet .weights to start from */
  const char *init;            /* --init: a checkpoint whose matching tensors to start from */
  const char *freeze;          /* --freeze N|LAYER (train_init.h) */
  int best_with_optimizer;     /* --best-with-optimizer: best.safetensors keeps it */
  int epochs, batch, quiet, threads, warmup, nesterov; /* batch: CLI_BATCH_AUTO for auto */
  int no_memory_check;         /* --no-memory-check: build a batch that seems not to fit */
  double lr, momentum, wd, smoothing, val_split;
  int crop, flip, cutout;      /* -1: from the cfg */
  int64_t seed;                /* -1: from the cfg */
  int64_t kill_at_step;        /* testing aid: SIGKILL ourselves after this global step */
  int64_t interrupt_at_step;   /* testing aid: SIGINT ourselves (a Ctrl-C) after this step */
  int patience;                /* --patience: stop after this many epochs without a better
                                  accuracy; 0: never */
  int64_t max_pixels;          /* --max-pixels: image files' limit; 0: CNN_IMAGE_MAX_PIXELS */
  cli_engine eng;              /* --conv-engine, --workspace, --tune-cache */
} train_opts;

int cli_train_parse(int argc, char **argv, train_opts *o);
int cli_train_run(const train_opts *o);

#endif
