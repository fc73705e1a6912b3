/* A net as an ONNX model: float NCHW input `input` holding pixels in [0, 1] (the
 * normalisation is part of the graph), a dynamic batch dimension, and the
 * probabilities (`probs`) or the softmax's input (`logits`) as output. A layer that
 * ONNX cannot express exactly is refused with the layer named. docs/exchange.md
 * lists what each layer becomes. */
#ifndef CNN_EXCHANGE_ONNX_EXPORT_H
#define CNN_EXCHANGE_ONNX_EXPORT_H

#include <stddef.h>

#include "cnn/cnn.h"

#define CNN_ONNX_OPSET_MIN 17
#define CNN_ONNX_OPSET_MAX 22

typedef struct cnn_onnx_export_opts {
  int logits;   /* output the softmax layer's input instead of its probabilities */
  int fold_bn;  /* fold each batch norm into the conv before it when it is that conv's
                   only reader */
  int opset;    /* CNN_ONNX_OPSET_MIN..MAX; 0: the minimum */
} cnn_onnx_export_opts;

typedef struct cnn_onnx_export_info {
  int nodes, initializers;
  size_t bytes;
  const char *output; /* "probs" or "logits" */
} cnn_onnx_export_info;

/* Write `net` (its tensors as they are: the host copy, or the backend's when built)
 * to `path`. mean/std: per input channel, in [0, 1] pixel units (NULL: 0 and 1).
 * The file appears whole or not at all; info (may be NULL) says what was written. */
cnn_status cnn_onnx_export(const cnn_net *net, const float *mean, const float *std,
                           const cnn_onnx_export_opts *o, const char *path,
                           cnn_onnx_export_info *info);

#endif
