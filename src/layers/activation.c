/* Elementwise activation layer (relu, leaky, gelu, sigmoid/logistic, tanh, ramp,
 * relu6). In training a max pool right after it may run inside its nodes
 * (fused_pool: bn_act_pool without batch norm; y and dy are then the pool's, and
 * aux 0 holds the pool's argmax bytes). */
#include <stdio.h>
#include <string.h>

#include "core/net.h"

static const char *const act_names[CNN_ACT_COUNT] = {"linear", "relu", "leaky", "gelu",
                                                     "logistic", "tanh", "ramp", "relu6"};

cnn_status cnn_act_parse(const char *s, cnn_act *out, float *alpha) {
  *alpha = 0.1f; /* Darknet's leaky slope */
  if (!strcmp(s, "sigmoid")) s = "logistic";
  for (int i = 0; i < CNN_ACT_COUNT; i++)
    if (!strcmp(s, act_names[i])) {
      *out = (cnn_act)i;
      return CNN_OK;
    }
  return cnn_error(CNN_ERR_PARSE,
                   "unsupported activation '%s' (expected linear, relu, leaky, gelu, logistic, "
                   "sigmoid, tanh, ramp or relu6)", s);
}

const char *cnn_act_name(cnn_act a) {
  return (unsigned)a < CNN_ACT_COUNT ? act_names[a] : "?";
}

static cnn_status act_infer(cnn_net *net, cnn_layer *l) {
  l->out = l->in_shape[0];
  l->flops = (double)cnn_shape_count(l->out);
  return CNN_OK;
}

static void act_aux(const cnn_layer *l, int n, size_t count[CNN_MAX_AUX]) {
  count[0] = l->fused_pool >= 0 ? ((size_t)n * cnn_shape_count(l->fused_pool_out) + 3) / 4 : 0;
}

static cnn_status act_forward(cnn_program *p, cnn_net *net, cnn_layer *l, int n, int train) {
  if (l->fused_pool >= 0)
    return CNN_EMIT(p, net, l, CNN_NODE_BN_POOL_FWD, bnpool,
                    .d = cnn_layer_pool_desc(&net->layers[l->fused_pool], n),
                    .x = cnn_layer_x(net, l, 0), .act = l->act, .alpha = l->alpha,
                    .sel = (uint8_t *)l->aux[0], .y = l->y);
  return CNN_EMIT(p, net, l, CNN_NODE_ACT_FWD, act, .act = l->act, .alpha = l->alpha,
                  .n = (size_t)n * cnn_shape_count(l->out), .x = cnn_layer_x(net, l, 0),
                  .out = l->y);
}

static cnn_status act_backward(cnn_program *p, cnn_net *net, cnn_layer *l, int n) {
  float *dx = cnn_layer_dx(net, l, 0);
  if (!dx) return CNN_OK;
  if (l->fused_pool >= 0)
    return CNN_EMIT(p, net, l, CNN_NODE_BN_POOL_BWD, bnpool,
                    .d = cnn_layer_pool_desc(&net->layers[l->fused_pool], n),
                    .x = cnn_layer_x(net, l, 0), .dy = l->dy, .sel = (uint8_t *)l->aux[0],
                    .act = l->act, .alpha = l->alpha, .dx = dx);
  return CNN_EMIT(p, net, l, CNN_NODE_ACT_BWD, act, .act = l->act, .alpha = l->alpha,
                  .n = (size_t)n * cnn_shape_count(l->out), .x = cnn_layer_x(net, l, 0),
                  .y = l->y, .dy = l->dy, .dx = dx);
}

static void act_describe(const cnn_net *net, const cnn_layer *l, char *buf, size_t len) {
  if (l->act == CNN_ACT_LEAKY)
    snprintf(buf, len, "leaky %g", l->alpha);
  else
    snprintf(buf, len, "%s", cnn_act_name(l->act));
}

const cnn_layer_kind cnn_kind_act = {
    .name = "activation",
    .infer = act_infer,
    .aux = act_aux,
    .emit_fwd = act_forward,
    .emit_bwd = act_backward,
    .describe = act_describe,
};
