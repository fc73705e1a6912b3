/* libFuzzer harness: the onnx target of targets.c (built with -DCNN_FUZZ=ON, clang). */
#include <stdlib.h>

#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (cnn_fuzz_onnx(data, size) != 0) abort(); /* a broken promise, reported above */
  return 0;
}
