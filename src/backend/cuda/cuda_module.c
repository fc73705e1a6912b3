/* The entry point of libcnn_cuda.so, the one symbol it exports (the module is built
 * with hidden visibility): the table libcnn's loader (src/backend/backend.c) calls
 * the CUDA backend through. */
#include <cuda_runtime_api.h>

#include "backend/cuda/cuda_module.h"
#include "core/error.h"

/* The table points at cuda_backend.cu's cnn_backend_cuda_create and
 * cnn_cuda_device_info (declared in backend.h and cnn.h; hidden in this module). */

/* cnn_cuda_device_count with a reason when there is no device */
static int module_device_count(void) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    /* e.g. no driver, or a driver older than this CUDA runtime */
    cnn_error(CNN_UNSUPPORTED, "no CUDA device (cudaGetDeviceCount: %s)", cudaGetErrorString(e));
    return 0;
  }
  if (n <= 0) cnn_error(CNN_UNSUPPORTED, "no CUDA device (cudaGetDeviceCount found none)");
  return n > 0 ? n : 0;
}

static const cnn_cuda_module module = {
    CNN_CUDA_MODULE_ABI,
    (uint32_t)sizeof(cnn_backend_ops),
    (uint32_t)sizeof(cnn_backend),
    (uint32_t)sizeof(cnn_step_state),
    (uint32_t)sizeof(cnn_device_info),
    CNN_VERSION,
    cnn_backend_cuda_create,
    module_device_count,
    cnn_cuda_device_info,
};

__attribute__((visibility("default"))) const cnn_cuda_module *cnn_cuda_module_v1(void) {
  return &module;
}
