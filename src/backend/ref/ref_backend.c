/* The `ref` backend: host memory and the op table. The ops live in the other
 * ref_*.c files (see ref.h); ref keeps no state, so ctx is NULL. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ref/ref.h"

#define REF_ALIGN 256

static void ref_destroy(cnn_backend *b) { free(b); }

/* 256-byte aligned host memory. C11's aligned_alloc wants a size that is a multiple
 * of the alignment, so round up; zero bytes still gets a unique, freeable block. */
static cnn_status ref_alloc(void *ctx, size_t bytes, void **ptr) {
  REF_NEED(ptr, "alloc");
  *ptr = NULL;
  if (bytes > SIZE_MAX - REF_ALIGN)
    return cnn_error(CNN_ERR_NOMEM, "ref alloc: %zu bytes is too large", bytes);
  size_t rounded = (bytes + REF_ALIGN - 1) / REF_ALIGN * REF_ALIGN;
  if (rounded == 0) rounded = REF_ALIGN;
  *ptr = aligned_alloc(REF_ALIGN, rounded);
  if (!*ptr) return cnn_error(CNN_ERR_NOMEM, "ref alloc: out of host memory for %zu bytes", bytes);
  return CNN_OK;
}

static void ref_free(void *ctx, void *ptr) { free(ptr); }

/* upload, download and copy (and the async transfers) are all host-to-host on ref */
cnn_status ref_memcpy(const char *op, void *dst, const void *src, size_t bytes) {
  if (bytes == 0) return CNN_OK;
  REF_NEED(dst, op);
  REF_NEED(src, op);
  memcpy(dst, src, bytes);
  return CNN_OK;
}

static cnn_status ref_upload(void *ctx, void *dst, const void *src_host, size_t bytes) {
  return ref_memcpy("upload", dst, src_host, bytes);
}

static cnn_status ref_download(void *ctx, void *dst_host, const void *src, size_t bytes) {
  return ref_memcpy("download", dst_host, src, bytes);
}

static cnn_status ref_copy(void *ctx, void *dst, const void *src, size_t bytes) {
  return ref_memcpy("copy", dst, src, bytes);
}

/* ref runs every op to completion before returning */
static cnn_status ref_sync(void *ctx) { return CNN_OK; }

static const cnn_backend_ops ref_ops = {
    .destroy = ref_destroy,
    .alloc = ref_alloc,
    .free = ref_free,
    .upload = ref_upload,
    .download = ref_download,
    .copy = ref_copy,
    .sync = ref_sync,
    .mem_info = cnn_host_mem_info,
    .fill = ref_fill,
    .axpby = ref_axpby,
    .add = ref_add,
    .mul = ref_mul,
    .copy2d = ref_copy2d,
    .act_fwd = ref_act_fwd,
    .act_bwd = ref_act_bwd,
    .gemm = ref_gemm,
    .bias_add = ref_bias_add,
    .bias_grad = ref_bias_grad,
    .conv_workspace = ref_conv_workspace,
    .conv_fwd = ref_conv_fwd,
    .conv_bwd_data = ref_conv_bwd_data,
    .conv_bwd_filter = ref_conv_bwd_filter,
    .maxpool_fwd = ref_maxpool_fwd,
    .maxpool_bwd = ref_maxpool_bwd,
    .avgpool_fwd = ref_avgpool_fwd,
    .avgpool_bwd = ref_avgpool_bwd,
    .bn_fwd_train = ref_bn_fwd_train,
    .bn_fwd_infer = ref_bn_fwd_infer,
    .bn_bwd = ref_bn_bwd,
    .shortcut_fwd = ref_shortcut_fwd,
    .shortcut_bwd = ref_shortcut_bwd,
    .dropout_mask = ref_dropout_mask,
    .softmax_xent_fwd = ref_softmax_xent_fwd,
    .softmax_xent_bwd = ref_softmax_xent_bwd,
    .sgd_step = ref_sgd_step,
    .adam_step = ref_adam_step,
    /* step programs (ref_program.c); no CUDA graphs: capture_* stay NULL */
    .upload_async = ref_upload_async,
    .cast = ref_cast,
    .gather_aug = ref_gather_aug,
    .data_seek = ref_data_seek,
    .read_async = ref_read_async,
    .read_done = ref_read_done,
    .step_begin = ref_step_begin,
    .step_end = ref_step_end,
    .metrics_reset = ref_metrics_reset,
    .check_finite = ref_check_finite,
    .softmax_xent_step = ref_softmax_xent_step,
    .sgd_step_st = ref_sgd_step_st,
    .adam_step_st = ref_adam_step_st,
    .dropout_mask_st = ref_dropout_mask_st,
    .bn_act_fwd_train = ref_bn_act_fwd_train,
    .bn_act_fwd_infer = ref_bn_act_fwd_infer,
    .bn_act_bwd = ref_bn_act_bwd,
    .bn_commit = ref_bn_commit,
    .bn_fold = ref_bn_fold,
    .conv_fwd_act = ref_conv_fwd_act,
    .add_act_fwd = ref_add_act_fwd,
    .add_act_bwd = ref_add_act_bwd,
    .crop_fwd = ref_crop_fwd,
    .crop_bwd = ref_crop_bwd,
    .reorg_fwd = ref_reorg_fwd,
    .reorg_bwd = ref_reorg_bwd,
    .maxpool_bwd_set = ref_maxpool_bwd_set,
    .bn_act_bwd_set = ref_bn_act_bwd_set,
    .bn_act_pool_fwd = ref_bn_act_pool_fwd,
    .bn_act_pool_bwd = ref_bn_act_pool_bwd,
};

cnn_status cnn_backend_ref_create(cnn_backend **out) {
  REF_NEED(out, "create");
  *out = NULL;
  cnn_backend *b = malloc(sizeof *b);
  if (!b) return cnn_error(CNN_ERR_NOMEM, "ref create: out of host memory");
  b->name = "ref";
  b->ctx = NULL;
  b->ops = &ref_ops;
  *out = b;
  return CNN_OK;
}
