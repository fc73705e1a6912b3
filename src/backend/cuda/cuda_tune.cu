/* The conv engine tuner: placeholder until written (every pass runs simt). */
#include "backend/cuda/cuda_engines.h"

extern "C" cnn_status cnn_cuda_tuner_init(cnn_cuda_ctx *ctx) {
  ctx->tuner = NULL;
  return CNN_OK;
}
extern "C" void cnn_cuda_tuner_release(cnn_cuda_ctx *ctx) { ctx->tuner = NULL; }
extern "C" int cnn_cuda_conv_engines(void *ctx, const cnn_conv_desc *d, cnn_conv_dir dir,
                                     const char **names, int max) {
  (void)ctx; (void)d; (void)dir;
  if (max > 0) names[0] = "simt";
  return 1;
}
extern "C" cnn_status cnn_cuda_conv_tune(void *ctx, const cnn_conv_desc *d, cnn_conv_dir dir,
                                         size_t ws_bytes) {
  (void)ctx; (void)d; (void)dir; (void)ws_bytes;
  return CNN_OK;
}
extern "C" const char *cnn_cuda_conv_engine(void *ctx, const cnn_conv_desc *d, cnn_conv_dir dir) {
  (void)ctx; (void)d; (void)dir;
  return "simt";
}
extern "C" cnn_status cnn_cuda_set_option(void *ctx, const char *key, const char *value) {
  (void)ctx;
  return cnn_error(CNN_ERR_ARG, "option %s=%s: the tuner is not built yet", key, value);
}
