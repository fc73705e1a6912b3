/* Concatenation along channels (Darknet [route]); one input is a plain copy. */
#include <stdio.h>

#include "core/net.h"

static cnn_status route_infer(cnn_net *net, cnn_layer *l) {
  cnn_shape o = l->in_shape[0];
  long long c = o.c; /* summed in 64 bits: repeated routes can overflow an int */
  for (int i = 1; i < l->n_in; i++) {
    cnn_shape s = l->in_shape[i];
    if (s.h != o.h || s.w != o.w)
      return cnn_error(CNN_ERR_SHAPE, "cannot concatenate %dx%dx%d with %dx%dx%d: spatial sizes differ",
                       o.h, o.w, o.c, s.h, s.w, s.c);
    c += s.c;
  }
  if ((double)c * o.h * o.w > (double)CNN_MAX_ELEMS_PER_IMAGE)
    return cnn_error(CNN_ERR_SHAPE, "output %dx%dx%lld is too large", o.h, o.w, c);
  o.c = (int)c;
  l->out = o;
  return CNN_OK;
}

static cnn_status route_forward(cnn_program *p, cnn_net *net, cnn_layer *l, int n, int train) {
  size_t rows = (size_t)n * l->out.h * l->out.w;
  int off = 0;
  for (int i = 0; i < l->n_in; i++) {
    int c = l->in_shape[i].c;
    CNN_TRY(CNN_EMIT(p, net, l, CNN_NODE_COPY2D, copy2d, .rows = rows, .cols = (size_t)c,
                     .src = cnn_layer_x(net, l, i), .ss = (size_t)c, .dst = l->y,
                     .dst_off = (size_t)off, .ds = (size_t)l->out.c, .acc = 0));
    off += c;
  }
  return CNN_OK;
}

static cnn_status route_backward(cnn_program *p, cnn_net *net, cnn_layer *l, int n) {
  size_t rows = (size_t)n * l->out.h * l->out.w;
  int off = 0;
  for (int i = 0; i < l->n_in; i++) {
    int c = l->in_shape[i].c;
    float *dx = cnn_layer_dx(net, l, i);
    if (dx)
      CNN_TRY(CNN_EMIT(p, net, l, CNN_NODE_COPY2D, copy2d, .rows = rows, .cols = (size_t)c,
                       .src = l->dy, .src_off = (size_t)off, .ss = (size_t)l->out.c, .dst = dx,
                       .ds = (size_t)c, .acc = 1));
    off += c;
  }
  return CNN_OK;
}

static void route_describe(const cnn_net *net, const cnn_layer *l, char *buf, size_t len) {
  int pos = snprintf(buf, len, "layers");
  for (int i = 0; i < l->n_in && pos < (int)len; i++)
    pos += snprintf(buf + pos, len - pos, " %d", l->in[i] < 0 ? -1 : net->layers[l->in[i]].section);
}

const cnn_layer_kind cnn_kind_route = {
    .name = "route",
    .infer = route_infer,
    .emit_fwd = route_forward,
    .emit_bwd = route_backward,
    .describe = route_describe,
};
