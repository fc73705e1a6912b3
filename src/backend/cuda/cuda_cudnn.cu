/* cuDNN as a conv engine family: not written yet (the family is empty). */
#include "backend/cuda/cuda_engines.h"

extern "C" int cnn_cuda_cudnn_engines(const cnn_cuda_engine **list) {
  *list = NULL;
  return 0;
}
extern "C" cnn_status cnn_cuda_cudnn_init(cnn_cuda_ctx *ctx) {
  ctx->cudnn = NULL;
  return CNN_OK;
}
extern "C" void cnn_cuda_cudnn_release(cnn_cuda_ctx *ctx) { ctx->cudnn = NULL; }
extern "C" const char *cnn_cuda_cudnn_status(cnn_cuda_ctx *ctx) {
  (void)ctx;
  return "not built in";
}
