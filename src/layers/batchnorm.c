/* Batch norm over channels: batch statistics in training (running statistics
 * updated), running statistics in inference. aux: save_mean[c], save_invstd[c],
 * and a scratch dx when the layer reads the net input (which has no gradient). */
#include <stdio.h>

#include "core/net.h"

static cnn_status bn_infer(cnn_net *net, cnn_layer *l) {
  l->out = l->in_shape[0];
  int64_t c[1] = {l->out.c};
  CNN_TRY(cnn_net_add_tensor(net, l, "weight", 1, c, 1, 0, CNN_INIT_ONE, 0, 0));
  CNN_TRY(cnn_net_add_tensor(net, l, "bias", 1, c, 1, 0, CNN_INIT_ZERO, 0, 0));
  CNN_TRY(cnn_net_add_tensor(net, l, "running_mean", 1, c, 0, 0, CNN_INIT_ZERO, 0, 0));
  CNN_TRY(cnn_net_add_tensor(net, l, "running_var", 1, c, 0, 0, CNN_INIT_ONE, 0, 0));
  l->flops = 4.0 * (double)cnn_shape_count(l->out);
  return CNN_OK;
}

static void bn_aux(const cnn_layer *l, int n, size_t count[CNN_MAX_AUX]) {
  count[0] = count[1] = (size_t)l->out.c;
  count[2] = l->in[0] < 0 ? (size_t)n * cnn_shape_count(l->out) : 0;
}

static cnn_status bn_forward(cnn_net *net, cnn_layer *l, int n, int train) {
  size_t rows = (size_t)n * l->out.h * l->out.w;
  const float *x = cnn_layer_x(net, l, 0);
  if (train)
    return CNN_OP(net, bn_fwd_train, rows, l->out.c, x, cnn_param_ptr(net, l, 0),
                  cnn_param_ptr(net, l, 1), net->tc.bn_eps, net->tc.bn_momentum,
                  cnn_param_ptr(net, l, 2), cnn_param_ptr(net, l, 3), l->aux[0], l->aux[1], l->y);
  return CNN_OP(net, bn_fwd_infer, rows, l->out.c, x, cnn_param_ptr(net, l, 0),
                cnn_param_ptr(net, l, 1), cnn_param_ptr(net, l, 2), cnn_param_ptr(net, l, 3),
                net->tc.bn_eps, l->y);
}

static cnn_status bn_backward(cnn_net *net, cnn_layer *l, int n) {
  size_t rows = (size_t)n * l->out.h * l->out.w;
  float *dx = cnn_layer_dx(net, l, 0);
  if (!dx) dx = l->aux[2];
  return CNN_OP(net, bn_bwd, rows, l->out.c, cnn_layer_x(net, l, 0), l->dy,
                cnn_param_ptr(net, l, 0), l->aux[0], l->aux[1], dx, cnn_grad_ptr(net, l, 0),
                cnn_grad_ptr(net, l, 1));
}

static void bn_describe(const cnn_net *net, const cnn_layer *l, char *buf, size_t len) {
  snprintf(buf, len, "%d channels", l->out.c);
}

const cnn_layer_kind cnn_kind_batchnorm = {
    .name = "batchnorm",
    .infer = bn_infer,
    .aux = bn_aux,
    .forward = bn_forward,
    .backward = bn_backward,
    .describe = bn_describe,
};
