/* ONNX import, first half: the file (size limits, a nesting check, protobuf-c's
 * unpack), the model's IR version and opsets, the one graph input, constants
 * (initializers and Constant nodes), and the nodes the output depends on in
 * topological order (cycles and undefined names refused). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "exchange/onnx_int.h"

#define OX_MIN_IR 3  /* the first IR with opset imports */
#define OX_MAX_IR 13
#define OX_MAX_DEPTH 48           /* message nesting; real models stay under 20 */
#define OX_MAX_UNPACKED (1ull << 29) /* bytes of protobuf-c structures beyond the payloads */

/* ---- messages -------------------------------------------------------------------- */

const char *ox_printable(const char *s, char *buf, size_t n) {
  size_t k = 0;
  if (!s) s = "";
  for (; *s && k + 4 < n; s++) buf[k++] = (*s >= 32 && *s < 127) ? *s : '?';
  if (*s && k + 4 >= n) buf[k++] = '.', buf[k++] = '.', buf[k++] = '.';
  buf[k] = 0;
  return buf;
}

cnn_status ox_error(ox_ctx *x, cnn_status s, const char *fmt, ...) {
  char msg[768], name[96], op[64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const Onnx__NodeProto *n = x->node;
  if (!n) return cnn_error(s, "%s: %s", x->file, msg);
  if (n->name && *n->name)
    return cnn_error(s, "%s: node '%s' (%s, opset %lld): %s", x->file,
                     ox_printable(n->name, name, sizeof name), ox_printable(n->op_type, op, sizeof op),
                     (long long)x->opset, msg);
  return cnn_error(s, "%s: node #%d (unnamed, %s, opset %lld): %s", x->file, x->node_index,
                   ox_printable(n->op_type, op, sizeof op), (long long)x->opset, msg);
}

void ox_note(ox_ctx *x, const char *fmt, ...) {
  char *notes = x->out->notes;
  size_t used = strlen(notes), cap = sizeof x->out->notes;
  if (used + 2 >= cap) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(notes + used, cap - used - 1, fmt, ap);
  va_end(ap);
  used = strlen(notes);
  notes[used] = '\n';
  notes[used + 1] = 0;
}

/* ---- values by name ---------------------------------------------------------------- */

static size_t hash(const char *s) {
  size_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

int ox_find(const ox_ctx *x, const char *name) {
  if (!name || !x->nslot) return -1;
  for (size_t k = hash(name) & (x->nslot - 1);; k = (k + 1) & (x->nslot - 1)) {
    int i = x->slot[k] - 1;
    if (i < 0) return -1;
    if (!strcmp(x->v[i].name, name)) return i;
  }
}

/* a new value; the caller has checked that the name is not taken */
cnn_status ox_add_value(ox_ctx *x, const char *name, int *idx) {
  if (x->nv == x->vcap) {
    int cap = x->vcap ? 2 * x->vcap : 64;
    ox_value *nv = realloc(x->v, (size_t)cap * sizeof *nv);
    if (!nv) return cnn_error(CNN_ERR_NOMEM, "out of memory");
    x->v = nv;
    x->vcap = cap;
  }
  if ((size_t)(x->nv + 1) * 2 > x->nslot) { /* rehash at half load */
    size_t ns = x->nslot ? 2 * x->nslot : 128;
    int *slot = calloc(ns, sizeof *slot);
    if (!slot) return cnn_error(CNN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < x->nv; i++) {
      size_t k = hash(x->v[i].name) & (ns - 1);
      while (slot[k]) k = (k + 1) & (ns - 1);
      slot[k] = i + 1;
    }
    free(x->slot);
    x->slot = slot;
    x->nslot = ns;
  }
  ox_value *v = &x->v[x->nv];
  memset(v, 0, sizeof *v);
  v->name = name;
  v->sec = -2;
  size_t k = hash(name) & (x->nslot - 1);
  while (x->slot[k]) k = (k + 1) & (x->nslot - 1);
  x->slot[k] = x->nv + 1;
  *idx = x->nv++;
  return CNN_OK;
}

/* ---- constants --------------------------------------------------------------------- */

static const char *dtype_name(int t) {
  static const char *const names[] = {"UNDEFINED", "FLOAT",  "UINT8",     "INT8",       "UINT16",
                                      "INT16",     "INT32",  "INT64",     "STRING",     "BOOL",
                                      "FLOAT16",   "DOUBLE", "UINT32",    "UINT64",     "COMPLEX64",
                                      "COMPLEX128", "BFLOAT16"};
  return t >= 0 && t < (int)(sizeof names / sizeof *names) ? names[t] : "an unknown type";
}

static float half_to_float(uint16_t h) {
  int e = h >> 10 & 31, m = h & 1023;
  float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY)
                                                     : ldexpf((float)(m | 1024), e - 25);
  return h >> 15 ? -v : v;
}

/* little-endian element k of raw bytes */
static uint64_t raw_le(const uint8_t *p, size_t es, size_t k) {
  uint64_t u = 0;
  for (size_t b = 0; b < es; b++) u |= (uint64_t)p[k * es + b] << (8 * b);
  return u;
}

/* A TensorProto as a constant value: float data (FLOAT, DOUBLE, FLOAT16) or integer
 * data (INT64, INT32, for shapes and axes). Which one a node needs is its check. */
cnn_status ox_tensor_const(ox_ctx *x, const Onnx__TensorProto *t, const char *name, int *idx) {
  char nm[96];
  ox_printable(name, nm, sizeof nm);
  if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
    return ox_error(x, CNN_UNSUPPORTED, "tensor '%s' is stored in an external data file, which "
                    "cnn import does not read (save the model with its weights inside)", nm);
  if (t->segment) return ox_error(x, CNN_UNSUPPORTED, "tensor '%s' is segmented", nm);
  if (t->n_dims > 8) return ox_error(x, CNN_ERR_SHAPE, "tensor '%s' has %zu dimensions", nm, t->n_dims);
  size_t count = 1;
  for (size_t d = 0; d < t->n_dims; d++) {
    if (t->dims[d] < 0 || t->dims[d] > (int64_t)1 << 31)
      return ox_error(x, CNN_ERR_SHAPE, "tensor '%s' has dimension %lld", nm, (long long)t->dims[d]);
    count *= (size_t)t->dims[d];
    if (count > (size_t)1 << 31)
      return ox_error(x, CNN_ERR_SHAPE, "tensor '%s' has over 2^31 elements", nm);
  }
  int dt = t->has_data_type ? t->data_type : 0;
  size_t es, have;
  int is_int = 0;
  switch (dt) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: es = 4, have = t->n_float_data; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: es = 8, have = t->n_double_data; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: es = 2, have = t->n_int32_data; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: es = 8, have = t->n_int64_data, is_int = 1; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: es = 4, have = t->n_int32_data, is_int = 1; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: es = 1, have = t->n_int32_data, is_int = 1; break;
  default:
    return ox_error(x, CNN_UNSUPPORTED, "tensor '%s' is %s; cnn imports FLOAT weights (DOUBLE "
                    "and FLOAT16 are converted) and INT64/INT32 shapes and axes", nm,
                    dtype_name(dt));
  }
  int raw = t->has_raw_data && t->raw_data.len > 0;
  if (raw ? t->raw_data.len != count * es : have != count)
    return ox_error(x, CNN_ERR_PARSE, "tensor '%s': %zu %s for %zu elements of %s", nm,
                    raw ? t->raw_data.len : have, raw ? "bytes" : "values", count, dtype_name(dt));
  *idx = ox_find(x, name); /* a Constant node's output is registered, not yet defined */
  if (*idx < 0) CNN_TRY(ox_add_value(x, name, idx));
  ox_value *v = &x->v[*idx];
  v->is_const = 1;
  v->is_int = is_int;
  v->crank = (int)t->n_dims;
  for (size_t d = 0; d < t->n_dims; d++) v->cdims[d] = t->dims[d];
  v->count = count;
  if (is_int ? !(v->i = malloc((count ? count : 1) * sizeof *v->i))
             : !(v->f = malloc((count ? count : 1) * sizeof *v->f)))
    return cnn_error(CNN_ERR_NOMEM, "out of memory for tensor '%s' (%zu elements)", nm, count);
  const uint8_t *p = t->raw_data.data;
  for (size_t k = 0; k < count; k++) {
    switch (dt) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: {
      uint32_t u = (uint32_t)(raw ? raw_le(p, 4, k) : 0);
      float f;
      memcpy(&f, &u, 4);
      v->f[k] = raw ? f : t->float_data[k];
      break;
    }
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: {
      uint64_t u = raw ? raw_le(p, 8, k) : 0;
      double d;
      memcpy(&d, &u, 8);
      v->f[k] = (float)(raw ? d : t->double_data[k]);
      break;
    }
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16:
      v->f[k] = half_to_float((uint16_t)(raw ? raw_le(p, 2, k) : (uint32_t)t->int32_data[k]));
      break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
      v->i[k] = raw ? (int64_t)raw_le(p, 8, k) : t->int64_data[k];
      break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL:
      v->i[k] = raw ? p[k] != 0 : t->int32_data[k] != 0;
      break;
    default: /* INT32 */
      v->i[k] = raw ? (int32_t)(uint32_t)raw_le(p, 4, k) : t->int32_data[k];
      break;
    }
  }
  return CNN_OK;
}

/* ---- the file ---------------------------------------------------------------------- */

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    v |= (uint64_t)(b & 127) << shift;
    if (!(b & 128)) {
      *out = v;
      return 1;
    }
  }
  return 0;
}

/* protobuf-c unpacks nested messages recursively with no depth limit (a 2 MB file of
 * nested TypeProtos overflows the stack) and allocates a whole struct per message
 * (a few bytes of input can cost hundreds). So before unpacking, walk the wire
 * format with the generated descriptors: nesting and the structures' total size are
 * bounded. Only framing is read here; protobuf-c does the decoding. */
static int walk(const uint8_t *p, size_t n, const ProtobufCMessageDescriptor *d, int depth,
                uint64_t *bytes) {
  if (depth > OX_MAX_DEPTH) return -1;
  *bytes += d->sizeof_message;
  const uint8_t *end = p + n;
  while (p < end) {
    uint64_t key, len;
    if (!read_varint(&p, end, &key)) return 0;
    switch (key & 7) {
    case 0:
      if (!read_varint(&p, end, &len)) return 0;
      break;
    case 1:
      if (end - p < 8) return 0;
      p += 8;
      break;
    case 5:
      if (end - p < 4) return 0;
      p += 4;
      break;
    case 2: {
      if (!read_varint(&p, end, &len) || len > (uint64_t)(end - p)) return 0;
      const ProtobufCFieldDescriptor *f =
          key >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3))
                                 : NULL;
      *bytes += sizeof(void *); /* a repeated field's pointer (over-counted for others) */
      if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
        int r = walk(p, (size_t)len, f->descriptor, depth + 1, bytes);
        if (r <= 0) return r;
      }
      p += len;
      break;
    }
    default:
      return 0; /* groups (3, 4) are not in ONNX; 6, 7 do not exist */
    }
    if (*bytes > OX_MAX_UNPACKED) return -2;
  }
  return 1;
}

static cnn_status unpack(ox_ctx *x, const uint8_t *data, size_t size, Onnx__ModelProto **m) {
  if (size == 0) return ox_error(x, CNN_ERR_PARSE, "empty file");
  if (size > CNN_ONNX_MAX_FILE_BYTES)
    return ox_error(x, CNN_ERR_PARSE, "%zu bytes: over protobuf's 2 GB limit", size);
  uint64_t bytes = 0;
  int r = walk(data, size, &onnx__model_proto__descriptor, 0, &bytes);
  if (r == -1)
    return ox_error(x, CNN_ERR_PARSE, "not a valid ONNX model: messages nested over %d deep",
                    OX_MAX_DEPTH);
  if (r == -2)
    return ox_error(x, CNN_ERR_PARSE, "not a valid ONNX model: it would unpack into over %llu "
                    "MB of messages", OX_MAX_UNPACKED >> 20);
  if (r == 0)
    return ox_error(x, CNN_ERR_PARSE, "not an ONNX model: not valid protobuf (truncated or "
                    "another kind of file)");
  *m = onnx__model_proto__unpack(NULL, size, data);
  if (!*m)
    return ox_error(x, CNN_ERR_PARSE, "not an ONNX model: protobuf could not decode it "
                    "(truncated or another kind of file)");
  return CNN_OK;
}

/* ---- the model and its graph -------------------------------------------------------- */

static cnn_status check_model(ox_ctx *x) {
  const Onnx__ModelProto *m = x->m;
  if (!m->has_ir_version || m->ir_version < OX_MIN_IR || m->ir_version > OX_MAX_IR)
    return ox_error(x, CNN_UNSUPPORTED, "ONNX IR version %lld; cnn import reads %d..%d%s",
                    m->has_ir_version ? (long long)m->ir_version : 0LL, OX_MIN_IR, OX_MAX_IR,
                    m->has_ir_version ? "" : " (none given: not an ONNX model?)");
  x->opset = -1;
  for (size_t k = 0; k < m->n_opset_import; k++) {
    const Onnx__OperatorSetIdProto *o = m->opset_import[k];
    if (!o->domain || !*o->domain || !strcmp(o->domain, "ai.onnx"))
      x->opset = o->has_version ? o->version : 0;
  }
  if (x->opset < 0)
    return ox_error(x, CNN_UNSUPPORTED, "the model imports no opset of the default ONNX domain");
  if (x->opset < OX_MIN_OPSET || x->opset > OX_MAX_OPSET)
    return ox_error(x, CNN_UNSUPPORTED, "opset %lld; cnn import reads opsets %d..%d "
                    "(re-export with e.g. opset_version=17)", (long long)x->opset, OX_MIN_OPSET,
                    OX_MAX_OPSET);
  if (!m->graph) return ox_error(x, CNN_ERR_PARSE, "the model has no graph");
  x->g = m->graph;
  if (x->g->n_node > OX_MAX_NODES)
    return ox_error(x, CNN_ERR_SHAPE, "%zu nodes; cnn import reads at most %d", x->g->n_node,
                    OX_MAX_NODES);
  if (x->g->n_sparse_initializer)
    return ox_error(x, CNN_UNSUPPORTED, "sparse initializers are not supported");
  return CNN_OK;
}

static const char *value_name(const char *s) { return s ? s : ""; }

/* the one graph input that is not an initializer: float [N, C, H, W], N may be symbolic */
static cnn_status graph_input(ox_ctx *x) {
  const Onnx__GraphProto *g = x->g;
  char nm[96];
  x->input = -1;
  for (size_t k = 0; k < g->n_input; k++) {
    if (!g->input[k]) continue;
    const Onnx__ValueInfoProto *vi = g->input[k];
    const char *name = value_name(vi->name);
    int i = ox_find(x, name);
    if (i >= 0 && x->v[i].is_const) continue; /* IR < 4 lists initializers as inputs too */
    if (i >= 0 || !*name)
      return ox_error(x, CNN_ERR_PARSE, "graph input '%s' is %s", ox_printable(name, nm, sizeof nm),
                      *name ? "listed twice" : "unnamed");
    if (x->input >= 0)
      return ox_error(x, CNN_UNSUPPORTED, "the graph has more than one input ('%s', '%s'); cnn "
                      "models take one image batch", x->v[x->input].name,
                      ox_printable(name, nm, sizeof nm));
    CNN_TRY(ox_add_value(x, name, &x->input));
    ox_printable(name, nm, sizeof nm);
    const Onnx__TypeProto *t = vi->type;
    if (!t || t->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !t->tensor_type)
      return ox_error(x, CNN_UNSUPPORTED, "graph input '%s' is not a tensor", nm);
    const Onnx__TypeProto__Tensor *tt = t->tensor_type;
    if (!tt->has_elem_type || tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
      return ox_error(x, CNN_UNSUPPORTED, "graph input '%s' is %s; cnn models take FLOAT pixels",
                      nm, dtype_name(tt->has_elem_type ? tt->elem_type : 0));
    if (!tt->shape || tt->shape->n_dim != 4)
      return ox_error(x, CNN_UNSUPPORTED, "graph input '%s' has %s; cnn models take images "
                      "[N, C, H, W]", nm, tt->shape ? "another rank" : "no shape");
    ox_value *v = &x->v[x->input];
    v->defined = 1;
    v->rank = 4;
    v->sec = -1;
    for (int d = 0; d < 4; d++) {
      const Onnx__TensorShapeProto__Dimension *dim = tt->shape->dim[d];
      int known = dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      if (d == 0) {
        x->batch = known && dim->dim_value > 0 ? dim->dim_value : 0;
        continue;
      }
      if (!known || dim->dim_value < 1 || dim->dim_value > 1 << 16)
        return ox_error(x, CNN_UNSUPPORTED, "graph input '%s': dimension %d is %s; cnn needs a "
                        "fixed image size (only the batch may be dynamic)", nm, d,
                        known ? "out of range" : "dynamic");
      v->dims[d] = dim->dim_value;
    }
    v->c = x->out->channels = (int)v->dims[1];
    v->h = (int)v->dims[2];
    v->w = (int)v->dims[3];
    if (v->c > 4)
      return ox_error(x, CNN_UNSUPPORTED, "graph input '%s' has %d channels; cnn's images have "
                      "1 to 4", nm, v->c);
  }
  if (x->input < 0) return ox_error(x, CNN_ERR_PARSE, "the graph has no input besides its weights");
  for (int c = 0; c < 4; c++) x->na[c] = 1, x->nb[c] = 0;
  return CNN_OK;
}

/* Nodes the output depends on, in topological order (Kahn). Names read before they
 * are written, written twice, or never written are refused, and so are cycles. */
static cnn_status order_nodes(ox_ctx *x, int **order, int *n_order) {
  const Onnx__GraphProto *g = x->g;
  size_t nn = g->n_node;
  char nm[96];
  int *producer = NULL, *live = calloc(nn + 1, sizeof *live), *indeg = calloc(nn + 1, sizeof *indeg);
  int *stack = malloc((nn + 1) * sizeof *stack), *ord = malloc((nn + 1) * sizeof *ord);
  cnn_status st = CNN_OK;
  if (!live || !indeg || !stack || !ord) {
    st = cnn_error(CNN_ERR_NOMEM, "out of memory");
    goto done;
  }
  /* every node output is a value; producer[value] = node */
  for (size_t k = 0; k < nn && st == CNN_OK; k++) {
    const Onnx__NodeProto *n = g->node[k];
    x->node = n, x->node_index = (int)k;
    for (size_t o = 0; o < n->n_output && st == CNN_OK; o++) {
      const char *name = n->output[o];
      if (!*name) continue;
      if (ox_find(x, name) >= 0) {
        st = ox_error(x, CNN_ERR_PARSE, "output '%s' is already defined (by another node, an "
                      "initializer or the input)", ox_printable(name, nm, sizeof nm));
        break;
      }
      int idx;
      st = ox_add_value(x, name, &idx);
    }
  }
  x->node = NULL;
  if (st != CNN_OK) goto done;
  if (!(producer = malloc((size_t)x->nv * sizeof *producer))) {
    st = cnn_error(CNN_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (int i = 0; i < x->nv; i++) producer[i] = -1;
  for (size_t k = 0; k < nn; k++)
    for (size_t o = 0; o < g->node[k]->n_output; o++) {
      int i = ox_find(x, g->node[k]->output[o]);
      if (i >= 0) producer[i] = (int)k;
    }
  if (g->n_output != 1) {
    st = ox_error(x, CNN_UNSUPPORTED, "the graph has %zu outputs; cnn models have one (class "
                  "scores)", g->n_output);
    goto done;
  }
  x->output = ox_find(x, value_name(g->output[0]->name));
  if (x->output < 0) {
    st = ox_error(x, CNN_ERR_PARSE, "graph output '%s' is not computed by any node",
                  ox_printable(g->output[0]->name, nm, sizeof nm));
    goto done;
  }
  /* live nodes: backwards from the output's producer */
  int sp = 0;
  if (producer[x->output] >= 0) stack[sp++] = producer[x->output], live[producer[x->output]] = 1;
  while (sp > 0) {
    int k = stack[--sp];
    const Onnx__NodeProto *n = g->node[k];
    for (size_t i = 0; i < n->n_input; i++) {
      if (!*n->input[i]) continue; /* an optional input left out */
      int v = ox_find(x, n->input[i]);
      if (v < 0) {
        x->node = n, x->node_index = k;
        st = ox_error(x, CNN_ERR_PARSE, "input '%s' is not defined by any node, initializer or "
                      "graph input", ox_printable(n->input[i], nm, sizeof nm));
        goto done;
      }
      int p = producer[v];
      if (p >= 0 && !live[p]) live[p] = 1, stack[sp++] = p;
    }
  }
  /* Kahn: in-degree = inputs produced by live nodes */
  for (size_t k = 0; k < nn; k++) {
    if (!live[k]) continue;
    const Onnx__NodeProto *n = g->node[k];
    for (size_t i = 0; i < n->n_input; i++)
      if (*n->input[i] && producer[ox_find(x, n->input[i])] >= 0) indeg[k]++;
  }
  int n_live = 0, no = 0;
  for (size_t k = 0; k < nn; k++) {
    n_live += live[k];
    if (live[k] && !indeg[k]) stack[sp++] = (int)k;
  }
  /* consumers of each value, to pop in-degrees: one scan per popped node is O(n^2);
   * a flat adjacency list keeps it linear */
  int *first = calloc((size_t)x->nv + 1, sizeof *first), *adj = NULL;
  size_t n_edges = 0;
  for (size_t k = 0; k < nn; k++)
    if (live[k]) n_edges += g->node[k]->n_input;
  adj = malloc((n_edges + 1) * sizeof *adj);
  if (!first || !adj) {
    free(first);
    free(adj);
    st = cnn_error(CNN_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (size_t k = 0; k < nn; k++)
    if (live[k])
      for (size_t i = 0; i < g->node[k]->n_input; i++)
        if (*g->node[k]->input[i]) first[ox_find(x, g->node[k]->input[i]) + 1]++;
  for (int i = 0; i < x->nv; i++) first[i + 1] += first[i];
  int *fill = calloc((size_t)x->nv + 1, sizeof *fill);
  if (!fill) {
    free(first);
    free(adj);
    st = cnn_error(CNN_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (size_t k = 0; k < nn; k++)
    if (live[k])
      for (size_t i = 0; i < g->node[k]->n_input; i++)
        if (*g->node[k]->input[i]) {
          int v = ox_find(x, g->node[k]->input[i]);
          adj[first[v] + fill[v]++] = (int)k;
        }
  while (sp > 0) {
    int k = stack[--sp];
    ord[no++] = k;
    const Onnx__NodeProto *n = g->node[k];
    for (size_t o = 0; o < n->n_output; o++) {
      if (!*n->output[o]) continue;
      int v = ox_find(x, n->output[o]);
      for (int e = first[v]; e < first[v + 1]; e++)
        if (--indeg[adj[e]] == 0) stack[sp++] = adj[e];
    }
  }
  free(first);
  free(adj);
  free(fill);
  if (no != n_live) {
    for (size_t k = 0; k < nn; k++)
      if (live[k] && indeg[k] > 0) {
        x->node = g->node[k], x->node_index = (int)k;
        break;
      }
    st = ox_error(x, CNN_ERR_PARSE, "the graph has a cycle through this node");
    goto done;
  }
  /* uses: consumers among the live nodes, and the graph output. A Shape reads no
   * values, only the (fixed) dims: not a use, or a layer whose output is also read by
   * Shape (x.view(x.size(0), -1)) could not fold what follows it */
  for (int i = 0; i < no; i++) {
    const Onnx__NodeProto *n = g->node[ord[i]];
    if (n->op_type && !strcmp(n->op_type, "Shape") &&
        (!n->domain || !*n->domain || !strcmp(n->domain, "ai.onnx")))
      continue;
    for (size_t k = 0; k < n->n_input; k++)
      if (*n->input[k]) x->v[ox_find(x, n->input[k])].uses++;
  }
  x->v[x->output].uses++;
  *order = ord;
  *n_order = no;
  ord = NULL;
done:
  free(producer);
  free(live);
  free(indeg);
  free(stack);
  free(ord);
  return st;
}

static cnn_status convert(ox_ctx *x, const uint8_t *data, size_t size) {
  Onnx__ModelProto *m = NULL;
  CNN_TRY(unpack(x, data, size, &m));
  x->m = m;
  int *order = NULL, n_order = 0;
  cnn_status st = check_model(x);
  for (size_t k = 0; st == CNN_OK && k < x->g->n_initializer; k++) {
    const Onnx__TensorProto *t = x->g->initializer[k];
    char nm[96];
    int idx;
    if (!t->name || !*t->name || ox_find(x, t->name) >= 0)
      st = ox_error(x, CNN_ERR_PARSE, "initializer '%s' is %s", ox_printable(t->name, nm, sizeof nm),
                    t->name && *t->name ? "defined twice" : "unnamed");
    else
      st = ox_tensor_const(x, t, t->name, &idx);
  }
  if (st == CNN_OK) st = graph_input(x);
  if (st == CNN_OK) st = order_nodes(x, &order, &n_order);
  if (st == CNN_OK) {
    x->out->nodes = n_order;
    x->in_uses = x->v[x->input].uses;
  }
  for (int i = 0; st == CNN_OK && i < n_order; i++) {
    x->node = x->g->node[order[i]];
    x->node_index = order[i];
    st = ox_convert_node(x, x->node);
  }
  x->node = NULL;
  if (st == CNN_OK) st = ox_finish(x);
  if (st == CNN_OK) st = ox_emit(x);
  free(order);
  onnx__model_proto__free_unpacked(m, NULL);
  x->m = NULL;
  x->g = NULL;
  return st;
}

void cnn_onnx_model_free(cnn_onnx_model *m) {
  if (!m) return;
  free(m->cfg);
  for (int i = 0; i < m->n_tensors; i++) {
    free(m->names[i]);
    free(m->data[i]);
  }
  free(m->names);
  free(m->data);
  free(m->counts);
  memset(m, 0, sizeof *m);
}

cnn_status cnn_onnx_read(const uint8_t *data, size_t size, const char *name, cnn_onnx_model *out) {
  if (!out || (!data && size)) return cnn_error(CNN_ERR_ARG, "cnn_onnx_read: NULL argument");
  memset(out, 0, sizeof *out);
  ox_ctx x;
  memset(&x, 0, sizeof x);
  x.file = name ? name : "model.onnx";
  x.out = out;
  x.input = x.output = -1;
  cnn_status st = convert(&x, data, size);
  for (int i = 0; i < x.nv; i++) {
    free(x.v[i].f);
    free(x.v[i].i);
  }
  for (int i = 0; i < x.ns; i++) {
    free(x.s[i].wt);
    free(x.s[i].b);
    for (int k = 0; k < 4; k++) free(x.s[i].bnp[k]);
  }
  free(x.v);
  free(x.slot);
  free(x.s);
  if (st != CNN_OK) cnn_onnx_model_free(out);
  return st;
}

cnn_status cnn_onnx_read_file(const char *path, cnn_onnx_model *out) {
  struct stat sb;
  if (!path || !out) return cnn_error(CNN_ERR_ARG, "cnn_onnx_read_file: NULL argument");
  memset(out, 0, sizeof *out);
  if (stat(path, &sb) != 0) return cnn_error(CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  if (!S_ISREG(sb.st_mode)) return cnn_error(CNN_ERR_IO, "%s: not a file", path);
  if ((unsigned long long)sb.st_size > CNN_ONNX_MAX_FILE_BYTES)
    return cnn_error(CNN_ERR_PARSE, "%s: %lld bytes: over protobuf's 2 GB limit (cnn does "
                     "not read external data)", path, (long long)sb.st_size);
  FILE *f = fopen(path, "rb");
  if (!f) return cnn_error(CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  size_t n = (size_t)sb.st_size;
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) {
    fclose(f);
    return cnn_error(CNN_ERR_NOMEM, "%s: out of memory for %zu bytes", path, n);
  }
  size_t got = fread(buf, 1, n, f);
  fclose(f);
  cnn_status st = got == n ? cnn_onnx_read(buf, n, path, out)
                           : cnn_error(CNN_ERR_IO, "%s: read %zu of %zu bytes", path, got, n);
  free(buf);
  return st;
}
