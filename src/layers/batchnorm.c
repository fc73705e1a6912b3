/* Batch norm over channels: batch statistics in training (running statistics
 * committed after the optimizer), running statistics in inference and in frozen
 * layers (cnn_net_set_frozen). An activation
 * right after it runs inside its nodes (fused_act), and in training a max pool
 * after that too (fused_pool: the nodes are bn_act_pool, y and dy are pooled). aux: save_mean[c],
 * save_invstd[c], a scratch dx when the layer reads the net input (which has no
 * gradient), save_var[c], a fused pool's argmaxes (bytes). */
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
  count[0] = count[1] = count[3] = (size_t)l->out.c;
  count[2] = l->in[0] < 0 ? (size_t)n * cnn_shape_count(l->out) : 0;
  /* a fused pool's argmax per output, one byte each (in floats, rounded up) */
  count[4] = l->fused_pool >= 0 ? ((size_t)n * cnn_shape_count(l->fused_pool_out) + 3) / 4 : 0;
}

static cnn_status bn_forward(cnn_program *p, cnn_net *net, cnn_layer *l, int n, int train) {
  size_t rows = (size_t)n * l->out.h * l->out.w;
  const float *x = cnn_layer_x(net, l, 0);
  if (l->fused_pool >= 0) { /* batch statistics, or running ones as below */
    int batch = train && !cnn_layer_frozen(net, l);
    return CNN_EMIT(p, net, l, CNN_NODE_BN_POOL_FWD, bnpool,
                    .d = cnn_layer_pool_desc(&net->layers[l->fused_pool], n), .x = x,
                    .gamma = cnn_param_ptr(net, l, 0), .beta = cnn_param_ptr(net, l, 1),
                    .eps = net->tc.bn_eps, .act = l->fused_act, .alpha = l->fused_alpha,
                    .rmean_in = batch ? NULL : cnn_param_ptr(net, l, 2),
                    .rvar_in = batch ? NULL : cnn_param_ptr(net, l, 3),
                    .mean = batch ? l->aux[0] : NULL, .invstd = batch ? l->aux[1] : NULL,
                    .var = batch ? l->aux[3] : NULL, .sel = (uint8_t *)l->aux[4], .y = l->y);
  }
  /* training: running statistics are committed at the end of the step (bn_commit);
   * a frozen layer runs on its running statistics, as in inference, and commits none */
  if (train && !cnn_layer_frozen(net, l))
    return CNN_EMIT(p, net, l, CNN_NODE_BN_FWD_TRAIN, bn, .rows = rows, .c = l->out.c, .x = x,
                    .gamma = cnn_param_ptr(net, l, 0), .beta = cnn_param_ptr(net, l, 1),
                    .eps = net->tc.bn_eps, .act = l->fused_act, .alpha = l->fused_alpha,
                    .mean = l->aux[0], .invstd = l->aux[1], .var = l->aux[3], .y = l->y);
  return CNN_EMIT(p, net, l, CNN_NODE_BN_FWD_INFER, bn, .rows = rows, .c = l->out.c, .x = x,
                  .gamma = cnn_param_ptr(net, l, 0), .beta = cnn_param_ptr(net, l, 1),
                  .rmean_in = cnn_param_ptr(net, l, 2), .rvar_in = cnn_param_ptr(net, l, 3),
                  .eps = net->tc.bn_eps, .act = l->fused_act, .alpha = l->fused_alpha, .y = l->y);
}

static cnn_status bn_backward(cnn_program *p, cnn_net *net, cnn_layer *l, int n) {
  size_t rows = (size_t)n * l->out.h * l->out.w;
  float *dx = cnn_layer_dx(net, l, 0);
  if (!dx) dx = l->aux[2];
  if (l->fused_pool >= 0)
    return CNN_EMIT(p, net, l, CNN_NODE_BN_POOL_BWD, bnpool,
                    .d = cnn_layer_pool_desc(&net->layers[l->fused_pool], n),
                    .x = cnn_layer_x(net, l, 0), .dy = l->dy, .sel = (uint8_t *)l->aux[4],
                    .gamma = cnn_param_ptr(net, l, 0),
                    .beta = cnn_param_ptr(net, l, 1), .mean = l->aux[0], .invstd = l->aux[1],
                    .act = l->fused_act, .alpha = l->fused_alpha, .dx = dx,
                    .dgamma = cnn_grad_ptr(net, l, 0), .dbeta = cnn_grad_ptr(net, l, 1));
  return CNN_EMIT(p, net, l, CNN_NODE_BN_BWD, bn, .rows = rows, .c = l->out.c,
                  .x = cnn_layer_x(net, l, 0), .dy = l->dy, .gamma = cnn_param_ptr(net, l, 0),
                  .beta = cnn_param_ptr(net, l, 1), .mean = l->aux[0], .invstd = l->aux[1],
                  .act = l->fused_act, .alpha = l->fused_alpha, .dx = dx,
                  .dgamma = cnn_grad_ptr(net, l, 0), .dbeta = cnn_grad_ptr(net, l, 1));
}

/* after the optimizer: running statistics move only when the step was accepted */
static cnn_status bn_commit(cnn_program *p, cnn_net *net, cnn_layer *l, int n) {
  return CNN_EMIT(p, net, l, CNN_NODE_BN_COMMIT, bn, .c = l->out.c,
                  .rows = (size_t)n * l->out.h * l->out.w, .momentum = net->tc.bn_momentum,
                  .mean = l->aux[0], .var = l->aux[3], .rmean = cnn_param_ptr(net, l, 2),
                  .rvar = cnn_param_ptr(net, l, 3));
}

static void bn_describe(const cnn_net *net, const cnn_layer *l, char *buf, size_t len) {
  snprintf(buf, len, "%d channels", l->out.c);
}

const cnn_layer_kind cnn_kind_batchnorm = {
    .name = "batchnorm",
    .infer = bn_infer,
    .aux = bn_aux,
    .emit_fwd = bn_forward,
    .emit_bwd = bn_backward,
    .emit_commit = bn_commit,
    .describe = bn_describe,
};
