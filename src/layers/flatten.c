/* Flatten [h, w, c] to [1, 1, h*w*c]. NHWC memory is already in that order, so
 * it is a copy; kept as a layer so summaries show the shape a user wrote. */
#include <stdio.h>

#include "core/net.h"

static cnn_status flatten_infer(cnn_net *net, cnn_layer *l) {
  l->out = (cnn_shape){1, 1, (int)cnn_shape_count(l->in_shape[0])};
  return CNN_OK;
}

static cnn_status flatten_forward(cnn_program *p, cnn_net *net, cnn_layer *l, int n, int train) {
  return CNN_EMIT(p, net, l, CNN_NODE_COPY, copy, .dst = l->y, .src = cnn_layer_x(net, l, 0),
                  .bytes = (size_t)n * cnn_shape_count(l->out) * sizeof(float));
}

static cnn_status flatten_backward(cnn_program *p, cnn_net *net, cnn_layer *l, int n) {
  float *dx = cnn_layer_dx(net, l, 0);
  if (!dx) return CNN_OK;
  return CNN_EMIT(p, net, l, CNN_NODE_AXPBY, axpby, .n = (size_t)n * cnn_shape_count(l->out),
                  .alpha = 1.0f, .x = l->dy, .beta = 1.0f, .y = dx);
}

static void flatten_describe(const cnn_net *net, const cnn_layer *l, char *buf, size_t len) {
  snprintf(buf, len, "-> %d", l->out.c);
}

const cnn_layer_kind cnn_kind_flatten = {
    .name = "flatten",
    .infer = flatten_infer,
    .emit_fwd = flatten_forward,
    .emit_bwd = flatten_backward,
    .describe = flatten_describe,
};
