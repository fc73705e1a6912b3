/* Internal to the ONNX importer: onnx_read.c (file, model checks, constants, node
 * order), onnx_ops.c (nodes -> sections), onnx_shape.c (integer tensors computed from
 * shapes, the batch size symbolic), onnx_cfgtext.c (sections -> cfg text and tensors).
 * Nothing outside src/exchange/onnx_*.c includes this. */
#ifndef CNN_EXCHANGE_ONNX_INT_H
#define CNN_EXCHANGE_ONNX_INT_H

#include <stddef.h>
#include <stdint.h>

#include "cnn/cnn.h"
#include "exchange/onnx_import.h"
#include "onnx/onnx.pb-c.h"

#define OX_MIN_OPSET 7
#define OX_MAX_OPSET 25
#define OX_MAX_NODES 100000
#define OX_MAX_SECTIONS 20000
#define OX_MAX_DIM (1 << 24) /* any one dimension */
#define OX_MAX_IN 8          /* inputs of a route (CNN_MAX_INPUTS) */
#define OX_SHAPE_MAX 16      /* elements of an integer tensor evaluated at import */
#define OX_DK_BATCH 1        /* a shape value's element: the batch size */
#define OX_DK_RUNTIME 2      /* ... computed from it (2 N, N / 2): unknown at import */

/* A named value of the graph: a constant (initializer, Constant node) or an
 * activation (the input, or a node's output). */
typedef struct ox_value {
  const char *name;  /* points into the unpacked model */
  int is_const;
  /* constant: float or integer data with its ONNX dims */
  int is_int;
  int crank;
  int64_t cdims[8];
  size_t count;
  float *f;
  int64_t *i;
  /* activation */
  int defined;
  int rank;          /* 2 ([N, F]) or 4 ([N, C, H, W]) */
  int64_t dims[4];   /* dims[0] is the batch and never read */
  int h, w, c;       /* our shape */
  int pc, ph, pw;    /* nonzero: a flattened map of ONNX shape [pc, ph, pw]: ONNX orders its
                      * values CHW, ours HWC */
  int sec;           /* the section producing it; -1: the graph input */
  /* a shape value: an integer tensor (rank 0 or 1, count <= OX_SHAPE_MAX, data in i[])
   * computed from shapes, some elements of which are only known at run time (dk[]);
   * one whose elements are all known is a constant (is_const, is_int) instead */
  int is_shape;
  unsigned char dk[OX_SHAPE_MAX];
  int uses;          /* consumers among the nodes kept (+1 for the graph output) */
  double tscale;     /* nonzero: this is the producing section's output times tscale > 0,
                      * read only by the final Softmax (its temperature 1 / tscale) */
} ox_value;

typedef enum ox_kind {
  OS_CONV, OS_FC, OS_BN, OS_MAXPOOL, OS_AVGPOOL, OS_SHORTCUT, OS_ROUTE, OS_FLATTEN, OS_ACT,
  OS_SOFTMAX
} ox_kind;

/* One cfg section to write. */
typedef struct ox_sec {
  ox_kind kind;
  int n_in, in[OX_MAX_IN]; /* value indices; in[0] is the main input */
  int uses;                /* consumers of its output, through aliases (Identity, Reshape) */
  int h, w, c;             /* output shape (ours) */
  int filters, kh, kw, sh, sw, ph, pw, same, dil, groups, bias; /* conv; fc: filters */
  int global, pad_total;   /* pools (kh, sh, sw too) */
  int bn;                  /* a batch norm inside the conv/fc section */
  const char *act;         /* cfg activation name; NULL = linear */
  float slope;             /* leaky */
  float *wt, *b;           /* conv KRSC / fc [O][I] weights, bias [filters] */
  size_t wn;
  float *bnp[4];           /* gamma, beta, running mean, running var [c] */
  float bn_eps, bn_mom;    /* the node's epsilon and momentum (ONNX convention) */
  float temperature;       /* softmax: the logits divided by it; 0 = 1 */
} ox_sec;

typedef struct ox_ctx {
  const char *file;
  const Onnx__ModelProto *m;
  const Onnx__GraphProto *g;
  int64_t opset;
  ox_value *v;
  int nv, vcap;
  int *slot;               /* name hash -> value index + 1 */
  size_t nslot;
  ox_sec *s;
  int ns, scap;
  int input, output;       /* value indices */
  int in_uses;             /* consumers of the (normalized) input, through aliases */
  int64_t batch;           /* the input's static batch, 0 when symbolic */
  int normalized;          /* pixels went through Sub/Div (etc.) at the input */
  double na[4], nb[4];     /* that affine map per channel: a x + b */
  const Onnx__NodeProto *node; /* the node being converted, for messages */
  int node_index;
  int n_bn_fused, n_act_fused, n_bias_fused, n_dropped, n_reshaped, n_norm, n_shape;
  cnn_onnx_model *out;
} ox_ctx;

/* onnx_read.c */
cnn_status ox_error(ox_ctx *x, cnn_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* "name" safe to print: control characters replaced, long names cut */
const char *ox_printable(const char *s, char *buf, size_t n);
int ox_find(const ox_ctx *x, const char *name); /* value index or -1 */
cnn_status ox_add_value(ox_ctx *x, const char *name, int *idx);
cnn_status ox_tensor_const(ox_ctx *x, const Onnx__TensorProto *t, const char *name, int *idx);
void ox_note(ox_ctx *x, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* onnx_ops.c: attributes and inputs of node n (shared with onnx_shape.c) */
const Onnx__AttributeProto *ox_attr(const Onnx__NodeProto *n, const char *name);
/* every attribute must be one of names (NULL-terminated): refused by name otherwise */
cnn_status ox_known_attrs(ox_ctx *x, const Onnx__NodeProto *n, const char *const *names);
#define KNOWN(...)                                            \
  do {                                                        \
    static const char *const names_[] = {__VA_ARGS__, NULL}; \
    CNN_TRY(ox_known_attrs(x, n, names_));                    \
  } while (0)
cnn_status ox_get_int(ox_ctx *x, const Onnx__NodeProto *n, const char *name, int64_t def,
                      int64_t *out);
/* an INTS attribute of exactly `want` values (want < 0: up to 8); *n_out = 0 if absent */
cnn_status ox_get_ints(ox_ctx *x, const Onnx__NodeProto *n, const char *name, int want,
                       int64_t *out, int *n_out);
int ox_in_idx(ox_ctx *x, const Onnx__NodeProto *n, size_t k); /* value of input k or -1 */
cnn_status ox_need_inputs(ox_ctx *x, const Onnx__NodeProto *n, size_t lo, size_t hi);

/* onnx_ops.c: one node (already in topological order) */
cnn_status ox_convert_node(ox_ctx *x, const Onnx__NodeProto *n);
/* after the last node: the graph output, the softmax */
cnn_status ox_finish(ox_ctx *x);
cnn_status ox_new_sec(ox_ctx *x, ox_kind k, int *idx);

/* onnx_shape.c: integer tensors computed from shapes (Shape, Gather, Slice, ...),
 * evaluated at import with the batch size kept symbolic */
int ox_is_shape_node(ox_ctx *x, const Onnx__NodeProto *n);
cnn_status ox_shape_node(ox_ctx *x, const Onnx__NodeProto *n);

/* onnx_cfgtext.c */
cnn_status ox_emit(ox_ctx *x);

#endif
