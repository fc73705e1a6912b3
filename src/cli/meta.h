/* What a checkpoint carries besides tensors (safetensors __metadata__, all
 * strings): the cfg text, progress, RNG state, class names, normalisation and
 * the effective training configuration, so a checkpoint alone is enough to
 * evaluate, predict or resume. */
#ifndef CNN_CLI_META_H
#define CNN_CLI_META_H

#include <stdint.h>

#include "cnn/cnn.h"

typedef struct cli_meta {
  char *cfg;                 /* the model's cfg text */
  char *data;                /* dataset spec used for training */
  int epoch;                 /* completed epochs */
  int64_t step, total_steps;
  int classes;
  char **class_names;        /* [classes] */
  int channels;
  float mean[4], std[4];     /* input normalisation, 0..1 pixel units */
  double acc, best_acc;
  int best_epoch;
  int batch;
  int crop, flip, cutout;    /* augmentation */
  double val_split;
  cnn_train_config tc;
  uint64_t seed;             /* RNG state: all randomness is f(seed, epoch, step) */
  int freeze;                /* cfg sections frozen (cnn train --freeze) */
  char *init;                /* --init: a JSON object (from, loaded, new, skipped, unused) */
} cli_meta;

/* read the metadata of a checkpoint; every field is checked against the range
 * cnn train can write (errors name the file and the key) */
cnn_status cli_meta_read(const char *path, cli_meta *m);
/* the metadata fits the model built from it: channels of mean/std, class names */
cnn_status cli_meta_check_model(const char *path, const cli_meta *m, const cnn_net_info *info);
/* the metadata as a JSON object of strings, for cnn_net_save (free() it) */
char *cli_meta_json(const cli_meta *m);
void cli_meta_free(cli_meta *m);

#endif
