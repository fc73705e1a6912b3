/* Opening a dataset split for a model: a folder dataset's classes are matched to
 * the model's class names (cnn_dataset_map_classes), never taken in folder order
 * when the model names its classes. */
#ifndef CNN_CLI_DATA_OPEN_H
#define CNN_CLI_DATA_OPEN_H

#include <stdint.h>

#include "cnn/data.h"

/* cnn_dataset_open_limit, then for a "folder:" spec with the model's class names
 * (names may be NULL: no matching) the relabelling by name. When the model's
 * names are only 0, 1, ... and the folders are named otherwise, the folders keep
 * their alphabetical order, said on stderr unless quiet. Errors name the spec. */
cnn_status cli_data_open(const char *spec, int train, int h, int w, int c, int64_t max_pixels,
                         char *const *names, int classes, int quiet, cnn_dataset *out);

#endif
