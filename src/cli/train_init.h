/* cnn train --init CKPT and --freeze N|LAYER: starting from another model's
 * weights and freezing a prefix of the layers (train_init.c). */
#ifndef CNN_CLI_TRAIN_INIT_H
#define CNN_CLI_TRAIN_INIT_H

#include <stdio.h>

#include "cli/meta.h"
#include "cnn/cnn.h"

/* --freeze N (the first N cfg sections) or --freeze LAYER (up to and including
 * the section of that layer or tensor, e.g. conv3 or fc1.weight): the number of
 * sections, checked against the model */
cnn_status cli_freeze_sections(const cnn_net *net, const char *spec, int *sections);

/* --init: the matching tensors of `path` into net (built), the report printed to
 * `log` (NULL: not printed); *meta_json gets the metadata "init" value (a JSON
 * object: from, loaded, new, skipped, unused; free() it) */
cnn_status cli_init_from(cnn_net *net, const char *path, FILE *log, char **meta_json);

/* --init without mean/std in the cfg: the normalisation of the checkpoint when it
 * has cnn's metadata for `channels` channels (the features were learned on it; as
 * one fine-tunes torchvision's models with their ImageNet mean/std), else none
 * (m->channels stays 0: the training set's) */
void cli_init_norm(const char *path, int channels, cli_meta *m, FILE *log);

/* one line for the start of training: "frozen: sections 0-2 (conv1 ... conv2), 7
 * tensors, 1,234 parameters" */
void cli_freeze_print(const cnn_net *net, FILE *log);

#endif
