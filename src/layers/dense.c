/* Dense (Darknet [connected]): y[n, O] = x[n, I] W[O, I]^T + b, the input
 * flattened in its NHWC order. */
#include <stdio.h>

#include "core/net.h"

static cnn_status dense_infer(cnn_net *net, cnn_layer *l) {
  size_t in = cnn_shape_count(l->in_shape[0]);
  if (l->outputs <= 0) return cnn_error(CNN_ERR_SHAPE, "output must be positive");
  if ((double)in * l->outputs > (double)CNN_MAX_ELEMS_PER_IMAGE)
    return cnn_error(CNN_ERR_SHAPE, "weights %zu x %d too large", in, l->outputs);
  l->out = (cnn_shape){1, 1, l->outputs};
  int64_t wshape[2] = {l->outputs, (int64_t)in};
  CNN_TRY(cnn_net_add_tensor(net, l, "weight", 2, wshape, 1, 1, CNN_INIT_WEIGHT, (int)in,
                             l->outputs));
  if (l->bias) {
    int64_t bshape[1] = {l->outputs};
    CNN_TRY(cnn_net_add_tensor(net, l, "bias", 1, bshape, 1, 0, CNN_INIT_ZERO, 0, 0));
  }
  l->flops = 2.0 * (double)in * l->outputs;
  return CNN_OK;
}

static cnn_status dense_forward(cnn_net *net, cnn_layer *l, int n, int train) {
  int in = (int)cnn_shape_count(l->in_shape[0]), o = l->outputs;
  CNN_TRY(CNN_OP(net, gemm, 0, 1, n, o, in, 1.0f, cnn_layer_x(net, l, 0), in,
                 cnn_param_ptr(net, l, 0), in, 0.0f, l->y, o));
  if (l->bias) CNN_TRY(CNN_OP(net, bias_add, (size_t)n, (size_t)o, cnn_param_ptr(net, l, 1), l->y));
  return CNN_OK;
}

static cnn_status dense_backward(cnn_net *net, cnn_layer *l, int n) {
  int in = (int)cnn_shape_count(l->in_shape[0]), o = l->outputs;
  /* dW[O, I] = dy^T[O, n] x[n, I] */
  CNN_TRY(CNN_OP(net, gemm, 1, 0, o, in, n, 1.0f, l->dy, o, cnn_layer_x(net, l, 0), in, 0.0f,
                 cnn_grad_ptr(net, l, 0), in));
  if (l->bias) CNN_TRY(CNN_OP(net, bias_grad, (size_t)n, (size_t)o, l->dy, cnn_grad_ptr(net, l, 1)));
  float *dx = cnn_layer_dx(net, l, 0);
  /* dx[n, I] += dy[n, O] W[O, I] */
  if (dx)
    CNN_TRY(CNN_OP(net, gemm, 0, 0, n, in, o, 1.0f, l->dy, o, cnn_param_ptr(net, l, 0), in, 1.0f,
                   dx, in));
  return CNN_OK;
}

static void dense_describe(const cnn_net *net, const cnn_layer *l, char *buf, size_t len) {
  snprintf(buf, len, "%zu -> %d%s", cnn_shape_count(l->in_shape[0]), l->outputs,
           l->bias ? "" : " no bias");
}

const cnn_layer_kind cnn_kind_dense = {
    .name = "dense",
    .infer = dense_infer,
    .forward = dense_forward,
    .backward = dense_backward,
    .describe = dense_describe,
};
