/* Flatten [h, w, c] to [1, 1, h*w*c]. NHWC memory is already in that order, so
 * it is a copy; kept as a layer so summaries show the shape a user wrote. */
#include <stdio.h>

#include "core/net.h"

static cnn_status flatten_infer(cnn_net *net, cnn_layer *l) {
  l->out = (cnn_shape){1, 1, (int)cnn_shape_count(l->in_shape[0])};
  return CNN_OK;
}

static cnn_status flatten_forward(cnn_net *net, cnn_layer *l, int n, int train) {
  return CNN_OP(net, copy, l->y, cnn_layer_x(net, l, 0),
                (size_t)n * cnn_shape_count(l->out) * sizeof(float));
}

static cnn_status flatten_backward(cnn_net *net, cnn_layer *l, int n) {
  float *dx = cnn_layer_dx(net, l, 0);
  if (!dx) return CNN_OK;
  return CNN_OP(net, axpby, (size_t)n * cnn_shape_count(l->out), 1.0f, l->dy, 1.0f, dx);
}

static void flatten_describe(const cnn_net *net, const cnn_layer *l, char *buf, size_t len) {
  snprintf(buf, len, "-> %d", l->out.c);
}

const cnn_layer_kind cnn_kind_flatten = {
    .name = "flatten",
    .infer = flatten_infer,
    .forward = flatten_forward,
    .backward = flatten_backward,
    .describe = flatten_describe,
};
