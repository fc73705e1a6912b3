/* cuBLASLt gemm with math and epilogues: not written yet. */
#include "backend/cuda/cuda_engines.h"

extern "C" cnn_status cnn_cuda_lt_init(cnn_cuda_ctx *ctx) {
  ctx->lt = NULL;
  return CNN_OK;
}
extern "C" void cnn_cuda_lt_release(cnn_cuda_ctx *ctx) { ctx->lt = NULL; }
extern "C" cnn_status cnn_cuda_gemm_ex(void *ctx, const cnn_gemm_desc *g) {
  (void)ctx;
  (void)g;
  return cnn_error(CNN_UNSUPPORTED, "gemm_ex: cuBLASLt path not built yet");
}
