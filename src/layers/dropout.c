/* Dropout: y = x * mask in training, mask[i] in {0, 1/(1-p)} drawn from the
 * counter RNG keyed by (seed, step, layer), so a seed reproduces every mask on
 * every backend; identity in inference. aux: mask [n, out]. */
#include <stdio.h>

#include "core/net.h"
#include "core/rng.h"

static cnn_status dropout_infer(cnn_net *net, cnn_layer *l) {
  if (!(l->prob >= 0 && l->prob < 1))
    return cnn_error(CNN_ERR_SHAPE, "probability must be in [0, 1)");
  l->out = l->in_shape[0];
  return CNN_OK;
}

static void dropout_aux(const cnn_layer *l, int n, size_t count[CNN_MAX_AUX]) {
  count[0] = (size_t)n * cnn_shape_count(l->out);
}

static cnn_status dropout_forward(cnn_program *p, cnn_net *net, cnn_layer *l, int n, int train) {
  size_t count = (size_t)n * cnn_shape_count(l->out);
  const float *x = cnn_layer_x(net, l, 0);
  if (!train || l->prob == 0)
    return CNN_EMIT(p, net, l, CNN_NODE_COPY, copy, .dst = l->y, .src = x,
                    .bytes = count * sizeof(float));
  /* the mask of step s is keyed by (seed, s, layer): the step comes from the step state */
  CNN_TRY(CNN_EMIT(p, net, l, CNN_NODE_DROPOUT_MASK, drop, .n = count, .p = l->prob,
                   .seed = net->tc.seed, .stream = (uint64_t)(l - net->layers), .mask = l->aux[0]));
  return CNN_EMIT(p, net, l, CNN_NODE_MUL, ew, .n = count, .a = x, .b = l->aux[0], .beta = 0.0f,
                  .y = l->y);
}

static cnn_status dropout_backward(cnn_program *p, cnn_net *net, cnn_layer *l, int n) {
  float *dx = cnn_layer_dx(net, l, 0);
  if (!dx) return CNN_OK;
  size_t count = (size_t)n * cnn_shape_count(l->out);
  if (l->prob == 0)
    return CNN_EMIT(p, net, l, CNN_NODE_AXPBY, axpby, .n = count, .alpha = 1.0f, .x = l->dy,
                    .beta = 1.0f, .y = dx);
  return CNN_EMIT(p, net, l, CNN_NODE_MUL, ew, .n = count, .a = l->dy, .b = l->aux[0],
                  .beta = 1.0f, .y = dx);
}

static void dropout_describe(const cnn_net *net, const cnn_layer *l, char *buf, size_t len) {
  snprintf(buf, len, "p %g", l->prob);
}

const cnn_layer_kind cnn_kind_dropout = {
    .name = "dropout",
    .infer = dropout_infer,
    .aux = dropout_aux,
    .emit_fwd = dropout_forward,
    .emit_bwd = dropout_backward,
    .describe = dropout_describe,
};
