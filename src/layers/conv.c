/* Convolution: [n,h,w,c] x [k,r,s,c/groups] -> [n,oh,ow,k], optional bias.
 * Stride, padding (symmetric or 'same'), dilation and groups (depthwise when
 * groups == c == k). Batch norm and activation are separate layers that a
 * [convolutional] section appends; in inference builds they run inside the conv
 * (BN folded into the weights, the activation as its epilogue: see fuse.c). */
#include <stdio.h>

#include "core/net.h"

cnn_conv_desc cnn_layer_conv_desc(const cnn_net *net, const cnn_layer *l, int n) {
  cnn_conv_desc d = {0};
  d.math = cnn_net_math(net);
  d.n = n;
  d.h = l->in_shape[0].h;
  d.w = l->in_shape[0].w;
  d.c = l->in_shape[0].c;
  d.k = l->filters;
  d.r = l->kh;
  d.s = l->kw;
  d.oh = l->out.h;
  d.ow = l->out.w;
  d.stride_h = l->stride_h;
  d.stride_w = l->stride_w;
  d.pad_h = l->pad_h;
  d.pad_w = l->pad_w;
  d.dil_h = d.dil_w = l->dil;
  d.groups = l->groups;
  return d;
}

/* output size along one axis; sets *pad (top/left) for 'same' */
static long conv_out(int in, int k, int stride, int dil, int same, int *pad) {
  long eff = (long)dil * (k - 1) + 1;
  if (same) {
    long out = (in + stride - 1) / stride;
    long total = (out - 1) * stride + eff - in;
    if (total < 0) total = 0;
    *pad = (int)(total / 2);
    return out;
  }
  long padded = (long)in + 2L * *pad;
  if (eff > padded) return -1;
  return (padded - eff) / stride + 1;
}

static cnn_status conv_infer(cnn_net *net, cnn_layer *l) {
  cnn_shape in = l->in_shape[0];
  if (l->filters <= 0 || l->kh <= 0 || l->kw <= 0 || l->stride_h <= 0 || l->stride_w <= 0 ||
      l->dil <= 0 || l->groups <= 0 || l->pad_h < 0 || l->pad_w < 0)
    return cnn_error(CNN_ERR_SHAPE, "filters, size, stride, dilation and groups must be positive");
  if (in.c % l->groups || l->filters % l->groups)
    return cnn_error(CNN_ERR_SHAPE, "groups=%d must divide the input channels (%d) and filters (%d)",
                     l->groups, in.c, l->filters);
  long oh = conv_out(in.h, l->kh, l->stride_h, l->dil, l->same_pad, &l->pad_h);
  long ow = conv_out(in.w, l->kw, l->stride_w, l->dil, l->same_pad, &l->pad_w);
  if (oh <= 0 || ow <= 0)
    return cnn_error(CNN_ERR_SHAPE,
                     "kernel %dx%d (dilation %d) is larger than its padded input %dx%d (padding %d)",
                     l->kh, l->kw, l->dil, in.h + 2 * l->pad_h, in.w + 2 * l->pad_w, l->pad_h);
  if ((double)oh * ow * l->filters > (double)CNN_MAX_ELEMS_PER_IMAGE ||
      (double)l->filters * l->kh * l->kw * (in.c / l->groups) > (double)CNN_MAX_ELEMS_PER_IMAGE)
    return cnn_error(CNN_ERR_SHAPE, "output %ldx%ldx%d or weights too large", oh, ow, l->filters);
  l->out = (cnn_shape){(int)oh, (int)ow, l->filters};
  int cg = in.c / l->groups;
  int64_t wshape[4] = {l->filters, l->kh, l->kw, cg};
  int fan_in = l->kh * l->kw * cg, fan_out = l->kh * l->kw * (l->filters / l->groups);
  CNN_TRY(cnn_net_add_tensor(net, l, "weight", 4, wshape, 1, 1, CNN_INIT_WEIGHT, fan_in, fan_out));
  if (l->bias) {
    int64_t bshape[1] = {l->filters};
    CNN_TRY(cnn_net_add_tensor(net, l, "bias", 1, bshape, 1, 0, CNN_INIT_ZERO, 0, 0));
  }
  l->flops = 2.0 * oh * ow * l->filters * fan_in;
  return CNN_OK;
}

static size_t conv_workspace(cnn_net *net, const cnn_layer *l, int n) {
  if (!net->b->ops->conv_workspace) return 0;
  cnn_conv_desc d = cnn_layer_conv_desc(net, l, n);
  return net->b->ops->conv_workspace(net->b->ctx, &d);
}

static cnn_status conv_forward(cnn_program *p, cnn_net *net, cnn_layer *l, int n, int train) {
  cnn_conv_desc d = cnn_layer_conv_desc(net, l, n);
  const float *w = cnn_param_ptr(net, l, 0), *bias = l->bias ? cnn_param_ptr(net, l, 1) : NULL;
  if (l->fold_bn >= 0) { /* inference: batch norm folded into weights and bias */
    w = l->fold_w;
    bias = l->fold_b;
  }
  d.wconst = !train; /* unchanged between runs unless weights_changed says otherwise */
  if (l->fold_bn < 0 && l->fused_act == CNN_ACT_LINEAR)
    return CNN_EMIT(p, net, l, CNN_NODE_CONV_FWD, conv, .d = d, .x = cnn_layer_x(net, l, 0),
                    .w = w, .bias = bias, .y = l->y);
  return CNN_EMIT(p, net, l, CNN_NODE_CONV_FWD_ACT, conv, .d = d, .x = cnn_layer_x(net, l, 0),
                  .w = w, .bias = bias, .y = l->y, .act = l->fused_act, .alpha = l->fused_alpha);
}

static cnn_status conv_backward(cnn_program *p, cnn_net *net, cnn_layer *l, int n) {
  cnn_conv_desc d = cnn_layer_conv_desc(net, l, n);
  float *dx = cnn_layer_dx_needed(net, l, 0);
  if (dx)
    CNN_TRY(CNN_EMIT(p, net, l, CNN_NODE_CONV_BWD_DATA, conv, .d = d, .dy = l->dy,
                     .w = cnn_param_ptr(net, l, 0), .dx = dx));
  return CNN_EMIT(p, net, l, CNN_NODE_CONV_BWD_FILTER, conv, .d = d, .x = cnn_layer_x(net, l, 0),
                  .dy = l->dy, .dw = cnn_grad_ptr(net, l, 0),
                  .db = l->bias ? cnn_grad_ptr(net, l, 1) : NULL);
}

static void conv_describe(const cnn_net *net, const cnn_layer *l, char *buf, size_t len) {
  int pos = snprintf(buf, len, "%d %dx%d/%d", l->filters, l->kh, l->kw, l->stride_h);
  if (l->stride_w != l->stride_h) pos += snprintf(buf + pos, len - pos, "x%d", l->stride_w);
  pos += snprintf(buf + pos, len - pos, " pad %d", l->pad_h);
  if (l->dil > 1) pos += snprintf(buf + pos, len - pos, " dil %d", l->dil);
  if (l->groups > 1) pos += snprintf(buf + pos, len - pos, " groups %d", l->groups);
  if (!l->bias) snprintf(buf + pos, len - pos, " no bias");
}

const cnn_layer_kind cnn_kind_conv = {
    .name = "conv",
    .infer = conv_infer,
    .workspace = conv_workspace,
    .emit_fwd = conv_forward,
    .emit_bwd = conv_backward,
    .describe = conv_describe,
};
