/* Every op of the `cuda` backend against `ref`, in true fp32 (see
 * tests/lib/opsuite.c for the cases and the tolerance of each op: 1e-5 for
 * elementwise ops, 1e-5 sqrt(K) for sums of K terms; TF32 would not pass).
 * Exits 77 (ctest SKIP) without CUDA or without a device. */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "opsuite.h"
#include "testutil.h"

int main(void) {
  /* before any CUDA call: keep cuBLAS / cuDNN from using TF32 behind our back */
  setenv("NVIDIA_TF32_OVERRIDE", "0", 1);
  tu_need_cuda(); /* skips (77) without a usable GPU, says why */

  cnn_backend *gpu = NULL, *ref = NULL;
  CHECK_OK(cnn_backend_ref_create(&ref));
  CHECK_OK(cnn_backend_cuda_create(&gpu));
  if (gpu && ref) {
    cnn_device_info info;
    if (cnn_cuda_device_info(0, &info) == CNN_OK)
      printf("device 0: %s (cc %d.%d)\n", info.name, info.cc_major, info.cc_minor);
    const char *v = getenv("CNN_TEST_VERBOSE");
    cnn_opsuite_run(gpu, ref, 1e-5, v && *v && *v != '0');
  }
  if (gpu) gpu->ops->destroy(gpu);
  if (ref) ref->ops->destroy(ref);
  return tu_finish("test_gpu_ops");
}
