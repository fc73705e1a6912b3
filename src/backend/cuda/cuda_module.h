/* The boundary between libcnn and the CUDA backend module libcnn_cuda.so.
 *
 * libcnn links no CUDA library. The CUDA backend (src/backend/cuda/) is built into
 * a separate module that links cudart + cuBLAS and libcnn itself (for cnn_error and
 * its thread-local message, so errors raised in the module read back through
 * cnn_last_error()). libcnn dlopen()s the module on first need (src/backend/backend.c)
 * and reaches it only through the table below, found by the one exported symbol
 * CNN_CUDA_MODULE_ENTRY; everything else in the module has hidden visibility, so its
 * cnn_backend_cuda_create / cnn_cuda_device_* never clash with libcnn's public ones. */
#ifndef CNN_CUDA_MODULE_H
#define CNN_CUDA_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CNN_CUDA_MODULE_FILE "libcnn_cuda.so"
#define CNN_CUDA_MODULE_ENTRY "cnn_cuda_module_v1"
#define CNN_CUDA_MODULE_ABI 1u

typedef struct cnn_cuda_module {
  /* checked by the loader: a module built from other headers is refused */
  uint32_t abi;                 /* CNN_CUDA_MODULE_ABI */
  uint32_t sizeof_ops;          /* sizeof(cnn_backend_ops) */
  uint32_t sizeof_backend;      /* sizeof(cnn_backend) */
  uint32_t sizeof_step_state;   /* sizeof(cnn_step_state) */
  uint32_t sizeof_device_info;  /* sizeof(cnn_device_info) */
  const char *version;          /* the cnn version it was built from (CNN_VERSION) */
  cnn_status (*backend_create)(cnn_backend **out);
  /* 0: none usable, and cnn_last_error() says why (the CUDA runtime's message) */
  int (*device_count)(void);
  cnn_status (*device_info)(int index, cnn_device_info *info);
} cnn_cuda_module;

typedef const cnn_cuda_module *(*cnn_cuda_module_entry_fn)(void);

/* For libcnn's own tools and tests (not public API): loads the module if not yet
 * tried. 1: loaded, *where = the path it was loaded from; 0: not available,
 * *where = why (the loader's message, or "this build has no CUDA backend").
 * where may be NULL. The string lives as long as the process. */
int cnn_cuda_module_loaded(const char **where);

#ifdef __cplusplus
}
#endif
#endif
