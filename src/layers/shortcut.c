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

static cnn_status shortcut_forward(cnn_net *net, cnn_layer *l, int n, int train) {
  size_t count = (size_t)n * cnn_shape_count(l->out);
  const float *x = cnn_layer_x(net, l, 0), *from = cnn_layer_x(net, l, 1);
  if (same_shape(l)) return CNN_OP(net, add, count, x, from, l->y);
  CNN_TRY(CNN_OP(net, copy, l->y, x, count * sizeof(float)));
  cnn_shortcut_desc d = desc_of(l, n);
  return CNN_OP(net, shortcut_fwd, &d, from, l->y);
}

static cnn_status shortcut_backward(cnn_net *net, cnn_layer *l, int n) {
  size_t count = (size_t)n * cnn_shape_count(l->out);
  float *dx = cnn_layer_dx(net, l, 0), *dfrom = cnn_layer_dx(net, l, 1);
  if (dx) CNN_TRY(CNN_OP(net, axpby, count, 1.0f, l->dy, 1.0f, dx));
  if (!dfrom) return CNN_OK;
  if (same_shape(l)) return CNN_OP(net, axpby, count, 1.0f, l->dy, 1.0f, dfrom);
  cnn_shortcut_desc d = desc_of(l, n);
  return CNN_OP(net, shortcut_bwd, &d, l->dy, dfrom);
}

static void shortcut_describe(const cnn_net *net, const cnn_layer *l, char *buf, size_t len) {
  snprintf(buf, len, "+ layer %d", l->from_section);
}

const cnn_layer_kind cnn_kind_shortcut = {
    .name = "shortcut",
    .infer = shortcut_infer,
    .forward = shortcut_forward,
    .backward = shortcut_backward,
    .describe = shortcut_describe,
};
