/* Darknet's [crop]: a crop_height x crop_width window of the input, values mapped
 * y = x * 2 - 1 (Darknet's images are in [0, 1]; noadjust=1: y = x), as Darknet's
 * forward_crop_layer computes it.
 *
 *  - Inference: the centre window ((h - crop_height) / 2 rounded down, idem for the
 *    width), never flipped, as Darknet.
 *  - Training: a random window and, with flip=1, a horizontal flip (Darknet's
 *    mirrored column w - ox - q - 1), and with shift=s a per-channel offset
 *    (u - 1/2) s, u uniform in [0, 1) (Darknet's GPU path adds it to the first three
 *    channels). Darknet's CPU path draws one window for the whole batch and its GPU
 *    path one per image; we draw one per image, from the counter RNG keyed by
 *    (seed, step, layer) like dropout, so every backend crops the same windows and
 *    a seed reproduces them.
 *  - Backward (Darknet has none, so the layer could only come first): the gradient
 *    is scattered into the window, mirrored where the forward was, times the scale,
 *    so a [crop] can sit anywhere in a net.
 *  - angle, saturation and exposure are accepted and NOT applied: Darknet's CPU
 *    forward ignores them too; only its GPU path rotates (bilinear) and jitters
 *    hue-saturation-value. Every classifier cfg of Darknet sets angle=0 and
 *    saturation = exposure = 1, where they do nothing. The data loader's
 *    augmentation (cnn train --crop, --flip) is the place for more. */
#include <stdio.h>

#include "core/crop_reorg.h"
#include "core/net.h"

static cnn_status crop_infer(cnn_net *net, cnn_layer *l) {
  cnn_shape in = l->in_shape[0];
  if (l->crop_h > in.h || l->crop_w > in.w)
    return cnn_error(CNN_ERR_SHAPE,
                     "crop_height=%d crop_width=%d is larger than the input %dx%d (HxW)", l->crop_h,
                     l->crop_w, in.h, in.w);
  l->out = (cnn_shape){l->crop_h, l->crop_w, in.c};
  l->flops = l->noadjust ? 0 : 2.0 * (double)cnn_shape_count(l->out); /* x * 2 - 1 */
  return CNN_OK;
}

static cnn_crop_desc crop_desc(const cnn_net *net, const cnn_layer *l, int n, int train) {
  cnn_shape in = l->in_shape[0];
  return (cnn_crop_desc){.n = n, .h = in.h, .w = in.w, .c = in.c, .oh = l->out.h,
                         .ow = l->out.w, .train = train, .flip = l->flip,
                         .scale = l->noadjust ? 1.0f : 2.0f, .trans = l->noadjust ? 0.0f : -1.0f,
                         .shift = l->shift, .seed = net->tc.seed,
                         .stream = (uint64_t)(l - net->layers)};
}

static cnn_status crop_forward(cnn_program *p, cnn_net *net, cnn_layer *l, int n, int train) {
  return CNN_EMIT(p, net, l, CNN_NODE_CROP_FWD, crop, .d = crop_desc(net, l, n, train),
                  .x = cnn_layer_x(net, l, 0), .y = l->y);
}

static cnn_status crop_backward(cnn_program *p, cnn_net *net, cnn_layer *l, int n) {
  float *dx = cnn_layer_dx(net, l, 0);
  if (!dx) return CNN_OK;
  return CNN_EMIT(p, net, l, CNN_NODE_CROP_BWD, crop, .d = crop_desc(net, l, n, 1), .x = l->dy,
                  .y = dx);
}

static void crop_describe(const cnn_net *net, const cnn_layer *l, char *buf, size_t len) {
  int pos = snprintf(buf, len, "%dx%d%s%s", l->crop_h, l->crop_w, l->flip ? " flip" : "",
                     l->noadjust ? " noadjust" : " x*2-1");
  if (l->shift != 0 && pos < (int)len) snprintf(buf + pos, len - pos, " shift %g", l->shift);
}

const cnn_layer_kind cnn_kind_crop = {
    .name = "crop",
    .infer = crop_infer,
    .emit_fwd = crop_forward,
    .emit_bwd = crop_backward,
    .describe = crop_describe,
};
