/* Named parameter / state tensors and optimizer state, copied to and from host
 * arrays, for checkpoints and interop. */
#include <string.h>

#include "core/net.h"

int cnn_net_num_tensors(const cnn_net *net) { return net ? net->n_tensors : 0; }

static cnn_status check_index(const cnn_net *net, int i) {
  if (!net) return cnn_error(CNN_ERR_ARG, "NULL net");
  if (i < 0 || i >= net->n_tensors)
    return cnn_error(CNN_ERR_ARG, "tensor index %d outside [0, %d)", i, net->n_tensors);
  return CNN_OK;
}

cnn_status cnn_net_tensor_desc(const cnn_net *net, int i, cnn_param_desc *d) {
  CNN_TRY(check_index(net, i));
  const cnn_tensor_entry *t = &net->tensors[i];
  d->name = t->name;
  d->ndim = t->ndim;
  for (int k = 0; k < 4; k++) d->shape[k] = k < t->ndim ? t->shape[k] : 0;
  d->count = t->count;
  d->trainable = t->trainable;
  d->frozen = t->frozen;
  return CNN_OK;
}

static float *where(const cnn_net *net, const cnn_tensor_entry *t, int device) {
  if (device) return (t->trainable ? net->params : net->state) + t->offset;
  return (t->trainable ? net->host_params : net->host_state) + t->offset;
}

cnn_status cnn_net_tensor_get(const cnn_net *net, int i, float *dst) {
  CNN_TRY(check_index(net, i));
  const cnn_tensor_entry *t = &net->tensors[i];
  if (net->built) return CNN_OP(net, download, dst, where(net, t, 1), t->count * sizeof(float));
  memcpy(dst, where(net, t, 0), t->count * sizeof(float));
  return CNN_OK;
}

cnn_status cnn_net_tensor_set(cnn_net *net, int i, const float *src) {
  CNN_TRY(check_index(net, i));
  const cnn_tensor_entry *t = &net->tensors[i];
  memcpy(where(net, t, 0), src, t->count * sizeof(float));
  net->params_dirty = 1; /* folded weights are recomputed before the next inference */
  if (net->built) return CNN_OP(net, upload, where(net, t, 1), src, t->count * sizeof(float));
  return CNN_OK;
}

int cnn_net_opt_slots(const cnn_net *net) { return net && net->built ? net->opt_slots : 0; }

static cnn_status check_slot(const cnn_net *net, int slot, size_t count) {
  if (!net || !net->built || slot < 0 || slot >= net->opt_slots)
    return cnn_error(CNN_ERR_ARG, "no optimizer state slot %d (the net has %d)", slot,
                     cnn_net_opt_slots(net));
  if (count != net->n_params)
    return cnn_error(CNN_ERR_ARG, "optimizer state has %zu values, the net %zu", net->n_params, count);
  return CNN_OK;
}

/* optimizer state in tensor order (the flat buffer's order differs) */
cnn_status cnn_net_opt_state_get(const cnn_net *net, int slot, float *dst, size_t count) {
  CNN_TRY(check_slot(net, slot, count));
  size_t at = 0;
  for (int i = 0; i < net->n_tensors; i++) {
    const cnn_tensor_entry *t = &net->tensors[i];
    if (!t->trainable) continue;
    CNN_TRY(CNN_OP(net, download, dst + at, net->opt[slot] + t->offset, t->count * sizeof(float)));
    at += t->count;
  }
  return CNN_OK;
}

cnn_status cnn_net_opt_state_set(cnn_net *net, int slot, const float *src, size_t count) {
  CNN_TRY(check_slot(net, slot, count));
  size_t at = 0;
  for (int i = 0; i < net->n_tensors; i++) {
    const cnn_tensor_entry *t = &net->tensors[i];
    if (!t->trainable) continue;
    CNN_TRY(CNN_OP(net, upload, net->opt[slot] + t->offset, src + at, t->count * sizeof(float)));
    at += t->count;
  }
  return CNN_OK;
}
