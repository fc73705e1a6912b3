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

/* With gemm_ex (cuda) the bias, and in inference the activation after the layer
 * (fuse.c sets fused_act), run as the gemm's epilogue; elsewhere a bias_add node
 * follows the gemm, exactly as before. */
static cnn_status dense_forward(cnn_program *p, cnn_net *net, cnn_layer *l, int n, int train) {
  int in = (int)cnn_shape_count(l->in_shape[0]), o = l->outputs;
  const int ex = net->b->ops->gemm_ex != NULL && !net->no_fuse;
  const float *bias = l->bias ? cnn_param_ptr(net, l, 1) : NULL;
  CNN_TRY(CNN_EMIT(p, net, l, CNN_NODE_GEMM, gemm, .ta = 0, .tb = 1, .m = n, .n = o, .k = in,
                   .alpha = 1.0f, .a = cnn_layer_x(net, l, 0), .lda = in,
                   .b = cnn_param_ptr(net, l, 0), .ldb = in, .beta = 0.0f, .c = l->y, .ldc = o,
                   .math = cnn_net_math(net), .bias = ex ? bias : NULL, .act = l->fused_act,
                   .act_alpha = l->fused_alpha));
  if (bias && !ex)
    CNN_TRY(CNN_EMIT(p, net, l, CNN_NODE_BIAS_ADD, bias, .rows = (size_t)n, .cols = (size_t)o,
                     .in = bias, .out = l->y));
  return CNN_OK;
}

static cnn_status dense_backward(cnn_program *p, cnn_net *net, cnn_layer *l, int n) {
  int in = (int)cnn_shape_count(l->in_shape[0]), o = l->outputs;
  const cnn_math math = cnn_net_math(net);
  /* dW[O, I] = dy^T[O, n] x[n, I] */
  CNN_TRY(CNN_EMIT(p, net, l, CNN_NODE_GEMM, gemm, .ta = 1, .tb = 0, .m = o, .n = in, .k = n,
                   .alpha = 1.0f, .a = l->dy, .lda = o, .b = cnn_layer_x(net, l, 0), .ldb = in,
                   .beta = 0.0f, .c = cnn_grad_ptr(net, l, 0), .ldc = in, .math = math));
  if (l->bias)
    CNN_TRY(CNN_EMIT(p, net, l, CNN_NODE_BIAS_GRAD, bias, .rows = (size_t)n, .cols = (size_t)o,
                     .in = l->dy, .out = cnn_grad_ptr(net, l, 1)));
  float *dx = cnn_layer_dx_needed(net, l, 0);
  /* dx[n, I] += dy[n, O] W[O, I] */
  if (dx)
    CNN_TRY(CNN_EMIT(p, net, l, CNN_NODE_GEMM, gemm, .ta = 0, .tb = 0, .m = n, .n = in, .k = o,
                     .alpha = 1.0f, .a = l->dy, .lda = o, .b = cnn_param_ptr(net, l, 0),
                     .ldb = in, .beta = 1.0f, .c = dx, .ldc = in, .math = math));
  return CNN_OK;
}

static void dense_describe(const cnn_net *net, const cnn_layer *l, char *buf, size_t len) {
  snprintf(buf, len, "%zu -> %d%s", cnn_shape_count(l->in_shape[0]), l->outputs,
           l->bias ? "" : " no bias");
}

const cnn_layer_kind cnn_kind_dense = {
    .name = "dense",
    .infer = dense_infer,
    .emit_fwd = dense_forward,
    .emit_bwd = dense_backward,
    .describe = dense_describe,
};
