/* Softmax over all of an image's outputs (h*w*c classes), with cross-entropy
 * (and label smoothing) against net->labels. y holds the probabilities;
 * aux[0] the per-image loss [n]. Backward starts the chain: d logits += (p - t)/n.
 * Darknet's `temperature` T divides the logits (aux[1] holds x / T when T != 1);
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
  count[1] = l->temperature != 1.0f ? (size_t)n * cnn_shape_count(l->out) : 0;
}

static cnn_status softmax_forward(cnn_net *net, cnn_layer *l, int n, int train) {
  int classes = (int)cnn_shape_count(l->out);
  const float *logits = cnn_layer_x(net, l, 0);
  if (l->temperature != 1.0f) {
    CNN_TRY(CNN_OP(net, axpby, (size_t)n * classes, 1.0f / l->temperature, logits, 0.0f,
                   l->aux[1]));
    logits = l->aux[1];
  }
  return CNN_OP(net, softmax_xent_fwd, n, classes, logits, net->labels,
                train ? net->tc.label_smoothing : 0.0f, l->y, l->aux[0]);
}

static cnn_status softmax_backward(cnn_net *net, cnn_layer *l, int n) {
  float *dx = cnn_layer_dx(net, l, 0);
  if (!dx) return CNN_OK;
  int classes = (int)cnn_shape_count(l->out);
  return CNN_OP(net, softmax_xent_bwd, n, classes, l->y, net->labels, net->tc.label_smoothing,
                1.0f / ((float)n * l->temperature), dx);
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
    .forward = softmax_forward,
    .backward = softmax_backward,
    .describe = softmax_describe,
};
