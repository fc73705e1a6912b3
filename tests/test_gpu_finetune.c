/* Freezing on the cuda backend (freeze_suite.c): frozen tensors and their
 * optimizer state bit-identical after training steps replayed as CUDA graphs, the
 * rest changed, frozen batch norm on its running statistics, no backward nodes for
 * the frozen prefix. Skips (77) without a GPU. */
#include "cnn/cnn.h"
#include "freeze_suite.h"
#include "testutil.h"

int main(void) {
  tu_need_cuda();
  fs_run("cuda");
  return tu_finish("test_gpu_finetune");
}
