/* placeholder until this format lands (see cli/exchange.h) */
#include <stdio.h>

#include "cli/exchange.h"

int cli_import_onnx(int argc, char **argv) {
  fprintf(stderr, "cnn %s: this format is not built yet\n", argv[0]);
  return 1;
}
