/* Max and average pooling, local or global. Local pooling follows Darknet:
 * `padding` is the total padding (default size-1 for max, 0 for average), half
 * of it on the top/left, out = (in + padding - size) / stride + 1; windows are
 * clipped to the input (padding never wins a max and never counts in a mean). */
#include <stdio.h>

#include "core/net.h"

cnn_pool_desc cnn_layer_pool_desc(const cnn_layer *l, int n) {
  cnn_pool_desc d = {0};
  d.n = n;
  d.h = l->in_shape[0].h;
  d.w = l->in_shape[0].w;
  d.c = l->in_shape[0].c;
  d.oh = l->out.h;
  d.ow = l->out.w;
  d.kh = l->kh;
  d.kw = l->kw;
  d.stride_h = l->stride_h;
  d.stride_w = l->stride_w;
  d.pad_h = l->pad_h;
  d.pad_w = l->pad_w;
  return d;
}

static cnn_status pool_infer(cnn_net *net, cnn_layer *l) {
  cnn_shape in = l->in_shape[0];
  if (l->global) {
    l->kh = in.h;
    l->kw = in.w;
    l->stride_h = in.h;
    l->stride_w = in.w;
    l->pad_h = l->pad_w = 0;
    l->out = (cnn_shape){1, 1, in.c};
  } else {
    if (l->kh <= 0 || l->kw <= 0 || l->stride_h <= 0 || l->stride_w <= 0 || l->pad_total_h < 0)
      return cnn_error(CNN_ERR_SHAPE, "size and stride must be positive, padding >= 0");
    if (l->kh > in.h + l->pad_total_h || l->kw > in.w + l->pad_total_w)
      return cnn_error(CNN_ERR_SHAPE, "window %dx%d is larger than its padded input %dx%d", l->kh,
                       l->kw, in.h + l->pad_total_h, in.w + l->pad_total_w);
    l->pad_h = l->pad_total_h / 2;
    l->pad_w = l->pad_total_w / 2;
    l->out.h = (in.h + l->pad_total_h - l->kh) / l->stride_h + 1;
    l->out.w = (in.w + l->pad_total_w - l->kw) / l->stride_w + 1;
    l->out.c = in.c;
  }
  l->flops = (double)cnn_shape_count(l->out) * l->kh * l->kw;
  return CNN_OK;
}

static cnn_status pool_forward(cnn_program *p, cnn_net *net, cnn_layer *l, int n, int train) {
  cnn_node_op op = l->kind == &cnn_kind_maxpool ? CNN_NODE_MAXPOOL_FWD : CNN_NODE_AVGPOOL_FWD;
  return CNN_EMIT(p, net, l, op, pool, .d = cnn_layer_pool_desc(l, n), .x = cnn_layer_x(net, l, 0),
                  .y = l->y);
}

static cnn_status pool_backward(cnn_program *p, cnn_net *net, cnn_layer *l, int n) {
  float *dx = cnn_layer_dx(net, l, 0);
  if (!dx) return CNN_OK;
  cnn_node_op op = l->kind == &cnn_kind_maxpool ? CNN_NODE_MAXPOOL_BWD : CNN_NODE_AVGPOOL_BWD;
  return CNN_EMIT(p, net, l, op, pool, .d = cnn_layer_pool_desc(l, n), .x = cnn_layer_x(net, l, 0),
                  .dy = l->dy, .dx = dx);
}

static void pool_describe(const cnn_net *net, const cnn_layer *l, char *buf, size_t len) {
  if (l->global)
    snprintf(buf, len, "global");
  else
    snprintf(buf, len, "%dx%d/%d pad %d", l->kh, l->kw, l->stride_h, l->pad_total_h);
}

const cnn_layer_kind cnn_kind_maxpool = {
    .name = "maxpool",
    .infer = pool_infer,
    .emit_fwd = pool_forward,
    .emit_bwd = pool_backward,
    .describe = pool_describe,
};

const cnn_layer_kind cnn_kind_avgpool = {
    .name = "avgpool",
    .infer = pool_infer,
    .emit_fwd = pool_forward,
    .emit_bwd = pool_backward,
    .describe = pool_describe,
};
