/* Backend selection by name. */
#include "backend/backend.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int cnn_have_cuda(void) { return CNN_HAVE_CUDA; }

#if !CNN_HAVE_CUDA
cnn_status cnn_backend_cuda_create(cnn_backend **out) {
  *out = NULL;
  return cnn_error(CNN_UNSUPPORTED, "this build of cnn has no CUDA backend (nvcc was not found)");
}
int cnn_cuda_device_count(void) { return 0; }
cnn_status cnn_cuda_device_info(int index, cnn_device_info *info) {
  (void)info;
  return cnn_error(CNN_UNSUPPORTED, "no CUDA device %d: this build has no CUDA backend", index);
}
#endif

cnn_status cnn_backend_create(const char *name, cnn_backend **out) {
  if (!out) return cnn_error(CNN_ERR_ARG, "cnn_backend_create: out is NULL");
  *out = NULL;
  if (!name || !strcmp(name, "cpu")) return cnn_backend_cpu_create(out);
  if (!strcmp(name, "ref")) return cnn_backend_ref_create(out);
  if (!strcmp(name, "cuda") || !strcmp(name, "gpu")) return cnn_backend_cuda_create(out);
  return cnn_error(CNN_ERR_ARG, "unknown device '%s' (expected cpu, ref or cuda)", name);
}

void cnn_backend_destroy(cnn_backend *b) {
  if (b) b->ops->destroy(b);
}

const char *cnn_backend_name(const cnn_backend *b) { return b ? b->name : "(none)"; }

void *cnn_host_alloc(void *vb, size_t bytes) {
  cnn_backend *b = vb;
  void *p = NULL;
  if (b && b->ops->host_alloc) return b->ops->host_alloc(b->ctx, bytes, &p) == CNN_OK ? p : NULL;
  return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

void cnn_host_free(void *vb, void *p) {
  cnn_backend *b = vb;
  if (!p) return;
  if (b && b->ops->host_free) b->ops->host_free(b->ctx, p);
  else free(p);
}
