/* ONNX -> cnn: an ONNX model file (protobuf, read with protobuf-c's generated code)
 * becomes cfg text in our Darknet dialect plus its tensors (f32, our layouts: KRSC
 * conv weights, dense columns in HWC order). The op set, the patterns folded and
 * what is refused are in docs/exchange.md. Every refusal is a cnn_status with
 * a message naming the node, its op type and the opset; untrusted bytes never crash. */
#ifndef CNN_EXCHANGE_ONNX_IMPORT_H
#define CNN_EXCHANGE_ONNX_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "cnn/cnn.h"

/* files over this are refused before reading (protobuf's own 2 GB message limit) */
#define CNN_ONNX_MAX_FILE_BYTES ((size_t)2147483647)

typedef struct cnn_onnx_model {
  char *cfg;             /* the model as cfg text */
  int n_tensors;
  char **names;          /* "conv1.weight", ... as the net built from cfg names them */
  float **data;
  size_t *counts;
  int channels;          /* input channels */
  int has_norm;          /* the graph began with per-channel Sub/Div (etc.) of the pixels */
  float mean[4], std[4]; /* those, as cnn's mean/std in [0, 1] pixel units */
  int nodes;             /* graph nodes read */
  int sections;          /* cfg sections written */
  const char *output;    /* what the graph's output was: "probabilities", "logits",
                          * "log-probabilities" */
  char notes[2048];      /* what was folded or dropped, one item per line */
} cnn_onnx_model;

/* Parse and convert `size` bytes of an ONNX model; `name` is used in messages. */
cnn_status cnn_onnx_read(const uint8_t *data, size_t size, const char *name, cnn_onnx_model *out);
cnn_status cnn_onnx_read_file(const char *path, cnn_onnx_model *out);
/* the unbuilt net of a converted model, every tensor set from it */
cnn_status cnn_onnx_net(const cnn_onnx_model *m, cnn_net **out);
void cnn_onnx_model_free(cnn_onnx_model *m);
/* the shortest decimal that reads back as f (for cfg text and messages) */
const char *cnn_onnx_float_str(float f, char *buf, size_t n);

#endif
