/* Residual add with Darknet's [shortcut] semantics: out has the shape of the
 * previous layer (input 0); the `from` layer (input 1) is added in, strided or
 * sampled when its spatial size differs and over the common channels when its
 * channel count differs (see cnn_shortcut_desc). */
#include <stdio.h>

#include "core/net.h"

static int ratio_ok(int a, int b) { return a % b == 0 || b % a == 0; }

static cnn_status shortcut_infer(cnn_net *net, cnn_layer *l) {
  cnn_shape a = l->in_shape[0], f = l->in_shape[1];
  l->out = a;
  if (!ratio_ok(f.w, a.w) || !ratio_ok(f.h, a.h) ||
      (f.w >= a.w ? f.w / a.w : a.w / f.w) != (f.h >= a.h ? f.h / a.h : a.h / f.h))
    return cnn_error(CNN_ERR_SHAPE,
                     "cannot add %dx%dx%d to %dx%dx%d: spatial sizes must differ by one "
                     "integer factor", f.h, f.w, f.c, a.h, a.w, a.c);
  l->flops = (double)cnn_shape_count(a);
  return CNN_OK;
}

static int same_shape(const cnn_layer *l) {
  cnn_shape a = l->in_shape[0], f = l->in_shape[1];
  return a.h == f.h && a.w == f.w && a.c == f.c;
}

static cnn_shortcut_desc desc_of(const cnn_layer *l, int n) {
  cnn_shape a = l->in_shape[0], f = l->in_shape[1];
  return (cnn_shortcut_desc){n, f.h, f.w, f.c, a.h, a.w, a.c};
}

static cnn_status shortcut_forward(cnn_program *p, cnn_net *net, cnn_layer *l, int n, int train) {
  size_t count = (size_t)n * cnn_shape_count(l->out);
  const float *x = cnn_layer_x(net, l, 0), *from = cnn_layer_x(net, l, 1);
  if (same_shape(l)) {
    if (l->fused_act != CNN_ACT_LINEAR) /* the activation after it, fused (fuse.c) */
      return CNN_EMIT(p, net, l, CNN_NODE_ADD_ACT_FWD, addact, .n = count, .a = x, .b = from,
                      .act = l->fused_act, .alpha = l->fused_alpha, .out = l->y);
    return CNN_EMIT(p, net, l, CNN_NODE_ADD, ew, .n = count, .a = x, .b = from, .y = l->y);
  }
  CNN_TRY(CNN_EMIT(p, net, l, CNN_NODE_COPY, copy, .dst = l->y, .src = x,
                   .bytes = count * sizeof(float)));
  return CNN_EMIT(p, net, l, CNN_NODE_SHORTCUT_FWD, sc, .d = desc_of(l, n), .in = from, .out = l->y);
}

static cnn_status shortcut_backward(cnn_program *p, cnn_net *net, cnn_layer *l, int n) {
  size_t count = (size_t)n * cnn_shape_count(l->out);
  float *dx = cnn_layer_dx(net, l, 0), *dfrom = cnn_layer_dx(net, l, 1);
  if (l->fused_act != CNN_ACT_LINEAR)
    return CNN_EMIT(p, net, l, CNN_NODE_ADD_ACT_BWD, addact, .n = count, .y = l->y, .dy = l->dy,
                    .act = l->fused_act, .alpha = l->fused_alpha, .da = dx, .db = dfrom);
  if (dx)
    CNN_TRY(CNN_EMIT(p, net, l, CNN_NODE_AXPBY, axpby, .n = count, .alpha = 1.0f, .x = l->dy,
                     .beta = 1.0f, .y = dx));
  if (!dfrom) return CNN_OK;
  if (same_shape(l))
    return CNN_EMIT(p, net, l, CNN_NODE_AXPBY, axpby, .n = count, .alpha = 1.0f, .x = l->dy,
                    .beta = 1.0f, .y = dfrom);
  return CNN_EMIT(p, net, l, CNN_NODE_SHORTCUT_BWD, sc, .d = desc_of(l, n), .in = l->dy,
                  .out = dfrom);
}

static void shortcut_describe(const cnn_net *net, const cnn_layer *l, char *buf, size_t len) {
  snprintf(buf, len, "+ layer %d", l->from_section);
}

const cnn_layer_kind cnn_kind_shortcut = {
    .name = "shortcut",
    .infer = shortcut_infer,
    .emit_fwd = shortcut_forward,
    .emit_bwd = shortcut_backward,
    .describe = shortcut_describe,
};
