#include "cli/data_open.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"

cnn_status cli_data_open(const char *spec, int train, int h, int w, int c, int64_t max_pixels,
                         char *const *names, int classes, int quiet, cnn_dataset *out) {
  CNN_TRY(cnn_dataset_open_limit(spec, train, h, w, c, max_pixels, out));
  if (!names || classes < 1 || strncmp(spec, "folder:", 7) != 0) return CNN_OK;
  int by_name = 0;
  cnn_status s = cnn_dataset_map_classes(out, (const char *const *)names, classes, &by_name);
  if (s != CNN_OK) {
    cnn_dataset_free(out);
    return cnn_error_prefix(s, "%s (%s split)", spec, train ? "training" : "test");
  }
  if (!by_name && !quiet) {
    fprintf(stderr, "cnn: note: the model's classes are unnamed (0, 1, ...): the class folders "
                    "of %s are numbered in alphabetical order:", spec);
    for (int k = 0; k < out->classes && k < 12; k++)
      fprintf(stderr, "%s %s=%d", k ? "," : "", out->class_names[k], k);
    fprintf(stderr, "%s\n", out->classes > 12 ? ", ..." : "");
  }
  return CNN_OK;
}
