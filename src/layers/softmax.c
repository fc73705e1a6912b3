/* Softmax over all of an image's outputs (h*w*c classes), with cross-entropy
 * (and label smoothing) against net->labels. y holds the probabilities;
 * aux[0] the per-image loss [n]. In training its one node also starts the backward
 * chain: d logits += (p - t) / (n T). Darknet's `temperature` T divides the logits;
 * T = 8 is the 0.125 output scale of the DAWNBench ResNet-9. */
#include <stdio.h>

#include "core/net.h"

static cnn_status softmax_infer(cnn_net *net, cnn_layer *l) {
  l->out = l->in_shape[0];
  if (!(l->temperature > 0)) l->temperature = 1.0f; /* a softmax made without a cfg */
  if (cnn_shape_count(l->out) < 2)
    return cnn_error(CNN_ERR_SHAPE, "softmax needs at least 2 classes, input has %zu values",
                     cnn_shape_count(l->out));
  l->flops = 5.0 * (double)cnn_shape_count(l->out);
  return CNN_OK;
}

static void softmax_aux(const cnn_layer *l, int n, size_t count[CNN_MAX_AUX]) {
  count[0] = (size_t)n;
}

/* One node: probabilities, per-image losses, the step's metrics in the step state
 * and, in training, the gradient d logits += (p - t) / (n T) for the layers below
 * (there is no separate backward). */
static cnn_status softmax_forward(cnn_program *p, cnn_net *net, cnn_layer *l, int n, int train) {
  float *dx = train ? cnn_layer_dx(net, l, 0) : NULL;
  return CNN_EMIT(p, net, l, CNN_NODE_SOFTMAX_XENT, sm, .n = n,
                  .classes = (int)cnn_shape_count(l->out), .logits = cnn_layer_x(net, l, 0),
                  .inv_temp = 1.0f / l->temperature, .labels = net->labels,
                  .smoothing = train ? net->tc.label_smoothing : 0.0f, .probs = l->y,
                  .loss = l->aux[0], .dlogits = dx, .dscale = 1.0f / ((float)n * l->temperature));
}

static cnn_status softmax_backward(cnn_program *p, cnn_net *net, cnn_layer *l, int n) {
  return CNN_OK; /* done by the forward node */
}

static void softmax_describe(const cnn_net *net, const cnn_layer *l, char *buf, size_t len) {
  if (l->temperature != 1.0f)
    snprintf(buf, len, "%zu classes, T %g, cross-entropy", cnn_shape_count(l->out),
             l->temperature);
  else
    snprintf(buf, len, "%zu classes, cross-entropy", cnn_shape_count(l->out));
}

const cnn_layer_kind cnn_kind_softmax = {
    .name = "softmax",
    .infer = softmax_infer,
    .aux = softmax_aux,
    .emit_fwd = softmax_forward,
    .emit_bwd = softmax_backward,
    .describe = softmax_describe,
};
