/* Building an ONNX graph for the exporter with protobuf-c's messages. Every
 * message, string and tensor lives in one arena that ox_free releases at once.
 * Errors are sticky: after an allocation fails every call returns NULL (and accepts
 * NULL), and ox_write reports it, so the mapping code needs no check per call. */
#ifndef CNN_EXCHANGE_ONNX_EMIT_H
#define CNN_EXCHANGE_ONNX_EMIT_H

#include <stddef.h>
#include <stdint.h>

#include "cnn/cnn.h"
#include "onnx/onnx.pb-c.h"

typedef struct ox_graph ox_graph;

ox_graph *ox_new(void);
void ox_free(ox_graph *g);

/* a string in the arena */
const char *ox_str(ox_graph *g, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* append node op (default domain) with inputs in[0..n_in) and one output */
Onnx__NodeProto *ox_node(ox_graph *g, const char *op, const char *out, int n_in,
                         const char *const *in);
void ox_attr_int(ox_graph *g, Onnx__NodeProto *n, const char *name, int64_t v);
void ox_attr_float(ox_graph *g, Onnx__NodeProto *n, const char *name, float v);
void ox_attr_ints(ox_graph *g, Onnx__NodeProto *n, const char *name, int count, const int64_t *v);
/* the node that produced `name` when it is the last node so far, else NULL */
Onnx__NodeProto *ox_last_node_making(ox_graph *g, const char *name);

/* float initializer (data copied as little-endian raw bytes); returns its name */
const char *ox_init_f32(ox_graph *g, const char *name, int ndim, const int64_t *dims,
                        const float *data);
/* 1-D int64 initializer (shapes, pads, slice bounds) */
const char *ox_init_i64(ox_graph *g, const char *name, int count, const int64_t *v);

typedef struct ox_model_desc {
  int opset;              /* default-domain operator set */
  int64_t ir_version;
  const char *input;      /* graph input: float [N, c, h, w], N symbolic */
  int c, h, w;
  const char *output;     /* graph output: float [N, classes] */
  int classes;
} ox_model_desc;

/* write the model to path through a temp file renamed over it when complete (an
 * existing file is left as it was on any failure); *nodes, *inits, *bytes: what
 * was written */
cnn_status ox_write(ox_graph *g, const ox_model_desc *d, const char *path, int *nodes, int *inits,
                    size_t *bytes);

#endif
