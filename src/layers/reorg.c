/* Darknet's [reorg], exactly as its make_reorg_layer / forward_reorg_layer define it
 * (the index maps, on Darknet's CHW order, are in core/crop_reorg.h):
 *   stride=s            space to depth: h/s x w/s x c*s*s (Darknet's reorg_cpu map,
 *                       which is not the "natural" space-to-depth order)
 *   reverse=1           depth to space: h*s x w*s x c/(s*s)
 *   flatten=1           the shape of the above, the elements reordered from CHW to
 *                       HWC order (reverse=1: HWC to CHW)
 *   extra=N             the input in CHW order followed by N zeros: 1 x 1 x (h*w*c + N)
 *                       (Darknet reports 0x0x0 and h*w*c + N outputs; go.cfg ends
 *                       19x19x1 -> 362 = 361 points + "pass" for its softmax)
 * Darknet's precedence is flatten, then extra, then reverse in forward, but
 * reverse before extra in backward; extra with reverse or flatten is refused here
 * since Darknet's forward and backward disagree there. Backward is the transpose
 * of the forward map (the extra elements get no gradient). */
#include <stdio.h>

#include "core/crop_reorg.h"
#include "core/net.h"

static cnn_status reorg_infer(cnn_net *net, cnn_layer *l) {
  cnn_shape in = l->in_shape[0];
  int oh, ow, oc;
  const char *why = cnn_reorg_shape(l->reorg_mode, in.h, in.w, in.c, l->stride_h, l->extra, &oh,
                                    &ow, &oc);
  if (why)
    return cnn_error(CNN_ERR_SHAPE, "stride=%d on a %dx%dx%d input: %s", l->stride_h, in.h, in.w,
                     in.c, why);
  l->out = (cnn_shape){oh, ow, oc};
  return CNN_OK;
}

static cnn_reorg_desc reorg_desc(const cnn_layer *l, int n) {
  cnn_shape in = l->in_shape[0];
  return (cnn_reorg_desc){.n = n, .h = in.h, .w = in.w, .c = in.c, .oh = l->out.h,
                          .ow = l->out.w, .oc = l->out.c, .stride = l->stride_h,
                          .mode = l->reorg_mode};
}

static cnn_status reorg_forward(cnn_program *p, cnn_net *net, cnn_layer *l, int n, int train) {
  return CNN_EMIT(p, net, l, CNN_NODE_REORG_FWD, reorg, .d = reorg_desc(l, n),
                  .x = cnn_layer_x(net, l, 0), .y = l->y);
}

static cnn_status reorg_backward(cnn_program *p, cnn_net *net, cnn_layer *l, int n) {
  float *dx = cnn_layer_dx(net, l, 0);
  if (!dx) return CNN_OK;
  return CNN_EMIT(p, net, l, CNN_NODE_REORG_BWD, reorg, .d = reorg_desc(l, n), .x = l->dy,
                  .y = dx);
}

static void reorg_describe(const cnn_net *net, const cnn_layer *l, char *buf, size_t len) {
  static const char *const what[] = {"space to depth", "depth to space", "flatten CHW->HWC",
                                     "flatten HWC->CHW", "CHW"};
  if (l->reorg_mode == CNN_REORG_EXTRA)
    snprintf(buf, len, "%s + %d zeros", what[l->reorg_mode], l->extra);
  else
    snprintf(buf, len, "/%d %s", l->stride_h, what[l->reorg_mode]);
}

const cnn_layer_kind cnn_kind_reorg = {
    .name = "reorg",
    .infer = reorg_infer,
    .emit_fwd = reorg_forward,
    .emit_bwd = reorg_backward,
    .describe = reorg_describe,
};
