/* The exporter's ONNX graph builder (see onnx_emit.h). */
#define _POSIX_C_SOURCE 200809L
#include "exchange/onnx_emit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"

#define OX_MAX_ATTRS 8 /* the most any node we emit carries (Conv: 5) */

typedef struct ox_block {
  struct ox_block *next;
  max_align_t data[];
} ox_block;

struct ox_graph {
  ox_block *blocks;
  int nomem;
  Onnx__NodeProto **nodes;
  size_t n_nodes, cap_nodes;
  Onnx__TensorProto **inits;
  size_t n_inits, cap_inits;
};

/* zeroed arena memory; each allocation is its own block (few thousand at most) */
static void *ox_alloc(ox_graph *g, size_t bytes) {
  if (!g || g->nomem) return NULL;
  ox_block *b = calloc(1, sizeof *b + bytes);
  if (!b) {
    g->nomem = 1;
    return NULL;
  }
  b->next = g->blocks;
  g->blocks = b;
  return b->data;
}

ox_graph *ox_new(void) { return calloc(1, sizeof(ox_graph)); }

void ox_free(ox_graph *g) {
  if (!g) return;
  for (ox_block *b = g->blocks, *next; b; b = next) {
    next = b->next;
    free(b);
  }
  free(g->nodes);
  free(g->inits);
  free(g);
}

const char *ox_str(ox_graph *g, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *s = n < 0 ? NULL : ox_alloc(g, (size_t)n + 1);
  if (!s) return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

/* room for one more element in a growing array (NULL: out of memory) */
static void *ox_grow(ox_graph *g, void *arr, size_t n, size_t *cap, size_t elem) {
  if (g->nomem) return NULL;
  if (n < *cap) return arr;
  size_t nc = *cap ? 2 * *cap : 64;
  void *na = realloc(arr, nc * elem);
  if (!na) {
    g->nomem = 1;
    return NULL;
  }
  *cap = nc;
  return na;
}

Onnx__NodeProto *ox_node(ox_graph *g, const char *op, const char *out, int n_in,
                         const char *const *in) {
  Onnx__NodeProto *n = ox_alloc(g, sizeof *n);
  char **ins = ox_alloc(g, (size_t)(n_in ? n_in : 1) * sizeof *ins);
  char **outs = ox_alloc(g, sizeof *outs);
  Onnx__AttributeProto **attrs = ox_alloc(g, OX_MAX_ATTRS * sizeof *attrs);
  if (!n || !ins || !outs || !attrs || !op || !out) {
    if (g) g->nomem = 1; /* a NULL name means an earlier allocation failed */
    return NULL;
  }
  *n = (Onnx__NodeProto)ONNX__NODE_PROTO__INIT;
  for (int i = 0; i < n_in; i++) {
    if (!in[i]) return g->nomem = 1, NULL;
    ins[i] = (char *)in[i];
  }
  outs[0] = (char *)out;
  n->n_input = (size_t)n_in;
  n->input = ins;
  n->n_output = 1;
  n->output = outs;
  n->op_type = (char *)op;
  n->name = (char *)out; /* outputs are unique, so they name nodes well */
  n->attribute = attrs;
  Onnx__NodeProto **grown = ox_grow(g, g->nodes, g->n_nodes, &g->cap_nodes, sizeof *grown);
  if (!grown) return NULL;
  g->nodes = grown;
  g->nodes[g->n_nodes++] = n;
  return n;
}

static Onnx__AttributeProto *ox_attr(ox_graph *g, Onnx__NodeProto *n, const char *name,
                                     Onnx__AttributeProto__AttributeType type) {
  if (!n || g->nomem) return NULL;
  if (n->n_attribute == OX_MAX_ATTRS) { /* a programming error, reported as one */
    g->nomem = 1;
    return NULL;
  }
  Onnx__AttributeProto *a = ox_alloc(g, sizeof *a);
  if (!a) return NULL;
  *a = (Onnx__AttributeProto)ONNX__ATTRIBUTE_PROTO__INIT;
  a->name = (char *)name;
  a->has_type = 1;
  a->type = type;
  n->attribute[n->n_attribute++] = a;
  return a;
}

void ox_attr_int(ox_graph *g, Onnx__NodeProto *n, const char *name, int64_t v) {
  Onnx__AttributeProto *a = ox_attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  if (a) a->has_i = 1, a->i = v;
}

void ox_attr_float(ox_graph *g, Onnx__NodeProto *n, const char *name, float v) {
  Onnx__AttributeProto *a = ox_attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  if (a) a->has_f = 1, a->f = v;
}

void ox_attr_ints(ox_graph *g, Onnx__NodeProto *n, const char *name, int count, const int64_t *v) {
  Onnx__AttributeProto *a = ox_attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  int64_t *copy = a ? ox_alloc(g, (size_t)count * sizeof *copy) : NULL;
  if (!copy) return;
  memcpy(copy, v, (size_t)count * sizeof *copy);
  a->n_ints = (size_t)count;
  a->ints = copy;
}

Onnx__NodeProto *ox_last_node_making(ox_graph *g, const char *name) {
  if (!g || g->nomem || !g->n_nodes) return NULL;
  Onnx__NodeProto *n = g->nodes[g->n_nodes - 1];
  return !strcmp(n->output[0], name) ? n : NULL;
}

static Onnx__TensorProto *ox_tensor(ox_graph *g, const char *name, int ndim, const int64_t *dims,
                                    int32_t type, size_t bytes) {
  Onnx__TensorProto *t = ox_alloc(g, sizeof *t);
  int64_t *d = ox_alloc(g, (size_t)(ndim ? ndim : 1) * sizeof *d);
  uint8_t *raw = ox_alloc(g, bytes ? bytes : 1);
  if (!t || !d || !raw || !name) return g->nomem = 1, NULL;
  *t = (Onnx__TensorProto)ONNX__TENSOR_PROTO__INIT;
  if (ndim) memcpy(d, dims, (size_t)ndim * sizeof *d); /* a scalar has no dims (NULL) */
  t->n_dims = (size_t)ndim;
  t->dims = d;
  t->has_data_type = 1;
  t->data_type = type;
  t->name = (char *)name;
  t->has_raw_data = 1;
  t->raw_data.len = bytes;
  t->raw_data.data = raw;
  Onnx__TensorProto **grown = ox_grow(g, g->inits, g->n_inits, &g->cap_inits, sizeof *grown);
  if (!grown) return NULL;
  g->inits = grown;
  g->inits[g->n_inits++] = t;
  return t;
}

/* raw_data is little-endian whatever the host is */
static void put_le(uint8_t *dst, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) dst[i] = (uint8_t)(v >> (8 * i));
}

const char *ox_init_f32(ox_graph *g, const char *name, int ndim, const int64_t *dims,
                        const float *data) {
  size_t count = 1;
  for (int i = 0; i < ndim; i++) count *= (size_t)dims[i];
  Onnx__TensorProto *t =
      ox_tensor(g, name, ndim, dims, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, count * 4);
  if (!t) return NULL;
  for (size_t i = 0; i < count; i++) {
    uint32_t u;
    memcpy(&u, &data[i], 4);
    put_le(t->raw_data.data + 4 * i, u, 4);
  }
  return name;
}

const char *ox_init_i64(ox_graph *g, const char *name, int count, const int64_t *v) {
  int64_t dims[1] = {count};
  Onnx__TensorProto *t =
      ox_tensor(g, name, 1, dims, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, (size_t)count * 8);
  if (!t) return NULL;
  for (int i = 0; i < count; i++) put_le(t->raw_data.data + 8 * i, (uint64_t)v[i], 8);
  return name;
}

/* a float tensor type [N, dims...] with N symbolic */
static Onnx__ValueInfoProto *ox_value_info(ox_graph *g, const char *name, int ndim,
                                           const int64_t *dims) {
  Onnx__ValueInfoProto *vi = ox_alloc(g, sizeof *vi);
  Onnx__TypeProto *tp = ox_alloc(g, sizeof *tp);
  Onnx__TypeProto__Tensor *tt = ox_alloc(g, sizeof *tt);
  Onnx__TensorShapeProto *sh = ox_alloc(g, sizeof *sh);
  Onnx__TensorShapeProto__Dimension **dv = ox_alloc(g, (size_t)(ndim + 1) * sizeof *dv);
  Onnx__TensorShapeProto__Dimension *dd = ox_alloc(g, (size_t)(ndim + 1) * sizeof *dd);
  if (!vi || !tp || !tt || !sh || !dv || !dd) return NULL;
  *vi = (Onnx__ValueInfoProto)ONNX__VALUE_INFO_PROTO__INIT;
  *tp = (Onnx__TypeProto)ONNX__TYPE_PROTO__INIT;
  *tt = (Onnx__TypeProto__Tensor)ONNX__TYPE_PROTO__TENSOR__INIT;
  *sh = (Onnx__TensorShapeProto)ONNX__TENSOR_SHAPE_PROTO__INIT;
  for (int i = 0; i <= ndim; i++) {
    dd[i] = (Onnx__TensorShapeProto__Dimension)ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
    if (i == 0) {
      dd[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      dd[i].dim_param = "N";
    } else {
      dd[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      dd[i].dim_value = dims[i - 1];
    }
    dv[i] = &dd[i];
  }
  sh->n_dim = (size_t)ndim + 1;
  sh->dim = dv;
  tt->has_elem_type = 1;
  tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  tt->shape = sh;
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  tp->tensor_type = tt;
  vi->name = (char *)name;
  vi->type = tp;
  return vi;
}

/* protobuf-c writes the packed model through this straight into the file */
typedef struct ox_file_buf {
  ProtobufCBuffer base;
  FILE *f;
  int failed;
  size_t bytes;
} ox_file_buf;

static void ox_file_append(ProtobufCBuffer *b, size_t len, const uint8_t *data) {
  ox_file_buf *fb = (ox_file_buf *)b;
  if (!fb->failed && fwrite(data, 1, len, fb->f) != len) fb->failed = errno ? errno : EIO;
  fb->bytes += len;
}

cnn_status ox_write(ox_graph *g, const ox_model_desc *d, const char *path, int *nodes, int *inits,
                    size_t *bytes) {
  int64_t in_dims[3] = {d->c, d->h, d->w}, out_dims[1] = {d->classes};
  Onnx__ValueInfoProto *in = ox_value_info(g, d->input, 3, in_dims);
  Onnx__ValueInfoProto *out = ox_value_info(g, d->output, 1, out_dims);
  if (!g || g->nomem || !in || !out)
    return cnn_error(CNN_ERR_NOMEM, "%s: out of memory building the ONNX graph", path);
  Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
  Onnx__OperatorSetIdProto *opsets[1] = {&opset};
  opset.domain = "";
  opset.has_version = 1;
  opset.version = d->opset;
  Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
  graph.name = "cnn";
  graph.n_node = g->n_nodes;
  graph.node = g->nodes;
  graph.n_initializer = g->n_inits;
  graph.initializer = g->inits;
  graph.n_input = 1;
  graph.input = &in;
  graph.n_output = 1;
  graph.output = &out;
  Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
  m.has_ir_version = 1;
  m.ir_version = d->ir_version;
  m.n_opset_import = 1;
  m.opset_import = opsets;
  m.producer_name = "cnn";
  m.producer_version = CNN_VERSION;
  m.graph = &graph;

  /* protobuf messages stop at 2 GiB; larger models need ONNX's external data */
  size_t size = onnx__model_proto__get_packed_size(&m);
  if (size > 0x7fffffffu)
    return cnn_error(CNN_ERR_SHAPE, "%s: the model would be %zu bytes; ONNX files without "
                     "external data stop at 2 GiB", path, size);
  size_t tlen = strlen(path) + 32;
  char *tmp = malloc(tlen);
  if (!tmp) return cnn_error(CNN_ERR_NOMEM, "%s: out of memory", path);
  snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
  ox_file_buf fb = {{ox_file_append}, fopen(tmp, "wb"), 0, 0};
  if (!fb.f) {
    cnn_status s = cnn_error(CNN_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    free(tmp);
    return s;
  }
  errno = 0;
  onnx__model_proto__pack_to_buffer(&m, &fb.base);
  if (!fb.failed && (fflush(fb.f) != 0 || fsync(fileno(fb.f)) != 0)) fb.failed = errno;
  if (fclose(fb.f) != 0 && !fb.failed) fb.failed = errno;
  if (!fb.failed && rename(tmp, path) != 0) fb.failed = errno;
  if (fb.failed) {
    cnn_status s = cnn_error(CNN_ERR_IO, "%s: writing it failed (%s); any earlier file of that "
                             "name is left as it was", path, strerror(fb.failed));
    unlink(tmp);
    free(tmp);
    return s;
  }
  free(tmp);
  *nodes = (int)g->n_nodes;
  *inits = (int)g->n_inits;
  *bytes = fb.bytes;
  return CNN_OK;
}
