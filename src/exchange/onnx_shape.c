/* ONNX import: shape values. PyTorch's exporter writes x.view(x.size(0), -1) as
 * Shape -> Gather -> Unsqueeze -> Concat(with [-1]) -> Reshape: the Reshape's target
 * is computed at run time, from the batch size. Every other dimension of a tensor
 * computed from the image is fixed, so such integer tensors are evaluated here at
 * import, each element known, the batch size (OX_DK_BATCH), or something computed
 * from the batch size and unknown until run time (OX_DK_RUNTIME). A Reshape whose
 * target holds the batch first and known values after it is then a constant-shape
 * reshape that keeps the batch (onnx_ops.c, op_reshape); anything else is refused
 * where it is read. Shape values are small (OX_SHAPE_MAX elements, rank 0 or 1) and
 * all arithmetic on known values is range-checked. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "exchange/onnx_int.h"

typedef const Onnx__NodeProto node_t;

/* an integer tensor as shape arithmetic reads it */
typedef struct sv {
  int rank;   /* 0 or 1 */
  int n;      /* elements */
  int64_t v[OX_SHAPE_MAX];
  unsigned char k[OX_SHAPE_MAX]; /* 0: known, OX_DK_BATCH, OX_DK_RUNTIME */
} sv;

static int is_op(node_t *n, const char *op) { return n->op_type && !strcmp(n->op_type, op); }

static int int_value(const ox_value *v) { return v->is_shape || (v->is_const && v->is_int); }

static int input_is_int(ox_ctx *x, node_t *n, size_t k) {
  int i = ox_in_idx(x, n, k);
  return i >= 0 && int_value(&x->v[i]);
}

int ox_is_shape_node(ox_ctx *x, const Onnx__NodeProto *n) {
  if (is_op(n, "Shape") || is_op(n, "Gather") || is_op(n, "Slice") || is_op(n, "Cast"))
    return 1; /* no other conversion reads these */
  if (is_op(n, "Unsqueeze") || is_op(n, "Squeeze") || is_op(n, "Identity"))
    return input_is_int(x, n, 0);
  if (is_op(n, "Concat")) {
    for (size_t k = 0; k < n->n_input; k++)
      if (input_is_int(x, n, k)) return 1;
    return 0;
  }
  if (is_op(n, "Mul") || is_op(n, "Div") || is_op(n, "Add") || is_op(n, "Sub"))
    return n->n_input == 2 && input_is_int(x, n, 0) && input_is_int(x, n, 1);
  return 0;
}

/* input k as a shape value: an integer constant or a shape value of rank 0 or 1 */
static cnn_status read_sv(ox_ctx *x, node_t *n, size_t k, sv *s) {
  char nm[96];
  int i = ox_in_idx(x, n, k);
  if (i < 0) return ox_error(x, CNN_ERR_PARSE, "input %zu is missing", k);
  const ox_value *v = &x->v[i];
  ox_printable(v->name, nm, sizeof nm);
  if (!int_value(v)) {
    if (v->is_const)
      return ox_error(x, CNN_UNSUPPORTED, "input %zu ('%s') holds floats: cnn evaluates %s only "
                      "on integer shapes and indices", k, nm, n->op_type);
    return ox_error(x, CNN_UNSUPPORTED, "input %zu ('%s') is %s: cnn evaluates %s only on shapes "
                    "and integer constants (known at import)", k, nm,
                    v->defined ? "computed from the image" : "not computed before this node",
                    n->op_type);
  }
  int rank = v->crank;
  if (rank > 1 || v->count > OX_SHAPE_MAX)
    return ox_error(x, CNN_UNSUPPORTED, "input %zu ('%s') has rank %d and %zu values: cnn "
                    "evaluates shapes of rank 0 or 1 with at most %d values", k, nm, rank,
                    v->count, OX_SHAPE_MAX);
  s->rank = rank;
  s->n = (int)v->count;
  for (int e = 0; e < s->n; e++) {
    s->v[e] = v->i[e];
    s->k[e] = v->is_shape ? v->dk[e] : 0;
  }
  return CNN_OK;
}

/* a value input k that must be known entirely (indices, axes, starts, ...) */
static cnn_status read_known(ox_ctx *x, node_t *n, size_t k, sv *s) {
  CNN_TRY(read_sv(x, n, k, s));
  for (int e = 0; e < s->n; e++)
    if (s->k[e])
      return ox_error(x, CNN_UNSUPPORTED, "input %zu depends on the batch size: cnn reads %s's "
                      "input %zu only as a value known at import", k, n->op_type, k);
  return CNN_OK;
}

/* output 0 := s: a constant when every element is known, else a shape value */
static cnn_status write_sv(ox_ctx *x, node_t *n, const sv *s) {
  int vo = ox_find(x, n->output[0]);
  ox_value *v = &x->v[vo];
  int sym = 0;
  for (int e = 0; e < s->n; e++) sym |= s->k[e];
  free(v->i);
  if (!(v->i = malloc((size_t)(s->n ? s->n : 1) * sizeof *v->i)))
    return cnn_error(CNN_ERR_NOMEM, "out of memory");
  v->is_const = !sym;
  v->is_int = !sym;
  v->is_shape = sym != 0;
  v->crank = s->rank;
  v->cdims[0] = s->n;
  v->count = (size_t)s->n;
  for (int e = 0; e < s->n; e++) {
    v->i[e] = s->v[e];
    v->dk[e] = s->k[e];
  }
  x->n_shape++;
  return CNN_OK;
}

/* an axis of a rank-r tensor, negative counted from the end */
static cnn_status axis_of(ox_ctx *x, int64_t a, int r, const char *what, int *out) {
  if (a < -r || a >= r)
    return ox_error(x, CNN_ERR_SHAPE, "%s %lld is out of range for rank %d", what, (long long)a, r);
  *out = (int)(a < 0 ? a + r : a);
  return CNN_OK;
}

/* ---- ops ------------------------------------------------------------------------------- */

static cnn_status op_shape(ox_ctx *x, node_t *n) {
  KNOWN("start", "end");
  CNN_TRY(ox_need_inputs(x, n, 1, 1));
  if (x->opset < 15 && (ox_attr(n, "start") || ox_attr(n, "end")))
    return ox_error(x, CNN_ERR_PARSE, "start and end are attributes of Shape from opset 15");
  char nm[96];
  const ox_value *v = &x->v[ox_in_idx(x, n, 0)];
  sv s = {.rank = 1};
  if (v->is_const || v->is_shape) { /* its dims are known */
    s.n = v->crank;
    for (int d = 0; d < v->crank; d++) s.v[d] = v->cdims[d];
  } else if (v->defined) { /* [N, C, H, W] or [N, F]: all but N known */
    s.n = v->rank;
    s.k[0] = OX_DK_BATCH;
    for (int d = 1; d < v->rank; d++) s.v[d] = v->dims[d];
  } else {
    return ox_error(x, CNN_ERR_PARSE, "input 0 ('%s') is not computed before this node",
                    ox_printable(v->name, nm, sizeof nm));
  }
  int64_t start, end;
  CNN_TRY(ox_get_int(x, n, "start", 0, &start));
  CNN_TRY(ox_get_int(x, n, "end", s.n, &end));
  /* clamped, as the spec says */
  if (start < 0) start = start < -s.n ? 0 : start + s.n;
  if (end < 0) end = end < -s.n ? 0 : end + s.n;
  if (start > s.n) start = s.n;
  if (end > s.n) end = s.n;
  sv o = {.rank = 1};
  for (int64_t d = start; d < end; d++, o.n++) o.v[o.n] = s.v[d], o.k[o.n] = s.k[d];
  return write_sv(x, n, &o);
}

static cnn_status op_gather(ox_ctx *x, node_t *n) {
  KNOWN("axis");
  CNN_TRY(ox_need_inputs(x, n, 2, 2));
  sv d, ix, o;
  CNN_TRY(read_sv(x, n, 0, &d));
  CNN_TRY(read_known(x, n, 1, &ix));
  int64_t axis;
  int a = 0;
  CNN_TRY(ox_get_int(x, n, "axis", 0, &axis));
  if (d.rank != 1) return ox_error(x, CNN_UNSUPPORTED, "gathers from a scalar");
  CNN_TRY(axis_of(x, axis, 1, "axis", &a));
  o.rank = ix.rank, o.n = ix.n;
  for (int e = 0; e < ix.n; e++) {
    int j = 0;
    CNN_TRY(axis_of(x, ix.v[e], d.n, "index", &j));
    o.v[e] = d.v[j], o.k[e] = d.k[j];
  }
  return write_sv(x, n, &o);
}

static cnn_status op_slice(ox_ctx *x, node_t *n) {
  int64_t st[8], en[8], ax[8] = {0}, sp[8] = {1};
  int ns, ne, na = 0, nsp = 0;
  sv d;
  if (x->opset < 10) {
    KNOWN("starts", "ends", "axes");
    CNN_TRY(ox_need_inputs(x, n, 1, 1));
    CNN_TRY(ox_get_ints(x, n, "starts", -1, st, &ns));
    CNN_TRY(ox_get_ints(x, n, "ends", -1, en, &ne));
    CNN_TRY(ox_get_ints(x, n, "axes", -1, ax, &na));
  } else {
    KNOWN("");
    CNN_TRY(ox_need_inputs(x, n, 3, 5));
    sv s[4];
    int *cnt[4] = {&ns, &ne, &na, &nsp};
    int64_t *dst[4] = {st, en, ax, sp};
    for (size_t k = 1; k < 5; k++) {
      *cnt[k - 1] = 0;
      if (ox_in_idx(x, n, k) < 0) continue;
      CNN_TRY(read_known(x, n, k, &s[k - 1]));
      if (s[k - 1].n > 8) return ox_error(x, CNN_UNSUPPORTED, "input %zu has over 8 values", k);
      *cnt[k - 1] = s[k - 1].n;
      memcpy(dst[k - 1], s[k - 1].v, (size_t)s[k - 1].n * sizeof *st);
    }
  }
  CNN_TRY(read_sv(x, n, 0, &d));
  if (d.rank != 1) return ox_error(x, CNN_UNSUPPORTED, "slices a scalar");
  if (ns != 1 || ne != 1 || na > 1 || nsp > 1)
    return ox_error(x, CNN_UNSUPPORTED, "slices %d axes: cnn slices the one axis of a shape", ns);
  int a = 0;
  if (na) CNN_TRY(axis_of(x, ax[0], 1, "axis", &a));
  int64_t step = nsp ? sp[0] : 1, dim = d.n, b = st[0], e = en[0];
  if (step == 0) return ox_error(x, CNN_ERR_SHAPE, "step 0");
  /* |step| > dim takes one element at most: clamping it keeps the arithmetic small */
  if (step > dim + 1) step = dim + 1;
  if (step < -dim - 1) step = -dim - 1;
  if (b < 0) b = (b < -dim ? -dim : b) + dim; /* negative: from the end */
  if (e < 0) e = (e < -dim - 1 ? -dim - 1 : e) + dim;
  if (step > 0) { /* then clamped to [0, dim], or [0, dim - 1] and [-1, dim - 1] going back */
    b = b > dim ? dim : b;
    e = e > dim ? dim : e < 0 ? 0 : e;
  } else {
    b = b > dim - 1 ? dim - 1 : b;
    e = e > dim - 1 ? dim - 1 : e < -1 ? -1 : e;
  }
  sv o = {.rank = 1};
  int64_t count = step > 0 ? (e > b ? (e - b - 1) / step + 1 : 0)
                           : (b > e ? (b - e - 1) / -step + 1 : 0);
  for (int64_t j = 0; j < count; j++, o.n++) o.v[o.n] = d.v[b + j * step], o.k[o.n] = d.k[b + j * step];
  return write_sv(x, n, &o);
}

static cnn_status op_unsqueeze(ox_ctx *x, node_t *n, int un) {
  KNOWN("axes");
  int64_t axes[8];
  int na = 0;
  sv d;
  if (x->opset >= 13) {
    if (ox_attr(n, "axes")) return ox_error(x, CNN_ERR_PARSE, "axes is an input since opset 13");
    CNN_TRY(ox_need_inputs(x, n, 1, 2));
    if (ox_in_idx(x, n, 1) >= 0) {
      sv s;
      CNN_TRY(read_known(x, n, 1, &s));
      if (s.n > 8) return ox_error(x, CNN_UNSUPPORTED, "too many axes");
      na = s.n;
      memcpy(axes, s.v, (size_t)na * sizeof *axes);
    }
  } else {
    CNN_TRY(ox_need_inputs(x, n, 1, 1));
    CNN_TRY(ox_get_ints(x, n, "axes", -1, axes, &na));
  }
  CNN_TRY(read_sv(x, n, 0, &d));
  int a = 0;
  if (un) { /* a scalar becomes [1 value] */
    if (na != 1 || d.rank != 0)
      return ox_error(x, CNN_UNSUPPORTED, "unsqueezes %d axes of a rank-%d shape: cnn evaluates "
                      "shapes of rank 0 and 1", na, d.rank);
    CNN_TRY(axis_of(x, axes[0], 1, "axis", &a));
    d.rank = 1;
  } else { /* [1 value] becomes a scalar */
    if (na > 1 || d.rank != 1 || d.n != 1)
      return ox_error(x, CNN_UNSUPPORTED, "squeezes a shape of %d values: cnn evaluates shapes "
                      "of rank 0 and 1", d.n);
    if (na) CNN_TRY(axis_of(x, axes[0], 1, "axis", &a));
    d.rank = 0;
  }
  return write_sv(x, n, &d);
}

static cnn_status op_concat(ox_ctx *x, node_t *n) {
  KNOWN("axis");
  if (!ox_attr(n, "axis")) return ox_error(x, CNN_ERR_PARSE, "axis is required");
  int64_t axis;
  int a = 0;
  CNN_TRY(ox_get_int(x, n, "axis", 0, &axis));
  CNN_TRY(axis_of(x, axis, 1, "axis", &a));
  if (n->n_input < 1) return ox_error(x, CNN_ERR_PARSE, "has no inputs");
  sv o = {.rank = 1};
  for (size_t k = 0; k < n->n_input; k++) {
    sv s;
    CNN_TRY(read_sv(x, n, k, &s));
    if (s.rank != 1) return ox_error(x, CNN_ERR_SHAPE, "input %zu is a scalar", k);
    if (o.n + s.n > OX_SHAPE_MAX)
      return ox_error(x, CNN_UNSUPPORTED, "a shape of over %d values", OX_SHAPE_MAX);
    memcpy(o.v + o.n, s.v, (size_t)s.n * sizeof *s.v);
    memcpy(o.k + o.n, s.k, (size_t)s.n);
    o.n += s.n;
  }
  return write_sv(x, n, &o);
}

static cnn_status op_cast(ox_ctx *x, node_t *n) {
  KNOWN("to", "saturate");
  CNN_TRY(ox_need_inputs(x, n, 1, 1));
  int64_t to;
  if (!ox_attr(n, "to")) return ox_error(x, CNN_ERR_PARSE, "to is required");
  CNN_TRY(ox_get_int(x, n, "to", 0, &to));
  if (to != ONNX__TENSOR_PROTO__DATA_TYPE__INT64 && to != ONNX__TENSOR_PROTO__DATA_TYPE__INT32)
    return ox_error(x, CNN_UNSUPPORTED, "to=%lld: cnn evaluates Cast only of shapes, to INT64 or "
                    "INT32", (long long)to);
  sv d;
  CNN_TRY(read_sv(x, n, 0, &d));
  if (to == ONNX__TENSOR_PROTO__DATA_TYPE__INT32)
    for (int e = 0; e < d.n; e++)
      if (!d.k[e] && (d.v[e] < -2147483647 - 1 || d.v[e] > 2147483647))
        return ox_error(x, CNN_UNSUPPORTED, "%lld does not fit INT32", (long long)d.v[e]);
  return write_sv(x, n, &d);
}

static cnn_status op_identity(ox_ctx *x, node_t *n) {
  KNOWN("");
  CNN_TRY(ox_need_inputs(x, n, 1, 1));
  sv d;
  CNN_TRY(read_sv(x, n, 0, &d));
  return write_sv(x, n, &d);
}

/* Add, Sub, Mul, Div of integer shapes (a scalar or [1] broadcast); known values exact
 * (refused where they would leave int64 or round), the batch kept through + 0, - 0, * 1
 * and / 1, anything else computed from it unknown until run time */
static cnn_status op_arith(ox_ctx *x, node_t *n, char op) {
  KNOWN("");
  CNN_TRY(ox_need_inputs(x, n, 2, 2));
  sv A, B;
  CNN_TRY(read_sv(x, n, 0, &A));
  CNN_TRY(read_sv(x, n, 1, &B));
  if (A.n != B.n && A.n != 1 && B.n != 1)
    return ox_error(x, CNN_ERR_SHAPE, "%d and %d values do not broadcast", A.n, B.n);
  sv o = {.rank = A.rank > B.rank ? A.rank : B.rank, .n = A.n > B.n ? A.n : B.n};
  if (A.n == 0 || B.n == 0) o.n = 0;
  for (int e = 0; e < o.n; e++) {
    int64_t a = A.v[A.n == 1 ? 0 : e], b = B.v[B.n == 1 ? 0 : e];
    int ka = A.k[A.n == 1 ? 0 : e], kb = B.k[B.n == 1 ? 0 : e];
    o.v[e] = 0;
    if (!ka && !kb) {
      if (op == '/' && b == 0) return ox_error(x, CNN_ERR_SHAPE, "divides %lld by 0", (long long)a);
      /* in double first: over 9e18 is refused before int64 arithmetic could overflow */
      double r = op == '+' ? (double)a + (double)b : op == '-' ? (double)a - (double)b
               : op == '*' ? (double)a * (double)b : (double)a / (double)b;
      if (!(fabs(r) <= 9e18)) return ox_error(x, CNN_ERR_SHAPE, "integer overflow");
      if (op == '/' && (a < 0 || b < 0) && a % b)
        return ox_error(x, CNN_UNSUPPORTED, "%lld / %lld: the rounding of a negative integer "
                        "division is not evaluated", (long long)a, (long long)b);
      o.v[e] = op == '+' ? a + b : op == '-' ? a - b : op == '*' ? a * b : a / b;
      o.k[e] = 0;
    } else if (ka == OX_DK_BATCH && !kb && (((op == '+' || op == '-') && b == 0) ||
                                            ((op == '*' || op == '/') && b == 1))) {
      o.k[e] = OX_DK_BATCH;
    } else if (kb == OX_DK_BATCH && !ka && ((op == '+' && a == 0) || (op == '*' && a == 1))) {
      o.k[e] = OX_DK_BATCH;
    } else if (op == '*' && ((!ka && a == 0) || (!kb && b == 0))) {
      o.k[e] = 0;
    } else {
      o.k[e] = OX_DK_RUNTIME;
    }
  }
  return write_sv(x, n, &o);
}

cnn_status ox_shape_node(ox_ctx *x, const Onnx__NodeProto *n) {
  if (is_op(n, "Shape")) return op_shape(x, n);
  if (is_op(n, "Gather")) return op_gather(x, n);
  if (is_op(n, "Slice")) return op_slice(x, n);
  if (is_op(n, "Unsqueeze")) return op_unsqueeze(x, n, 1);
  if (is_op(n, "Squeeze")) return op_unsqueeze(x, n, 0);
  if (is_op(n, "Concat")) return op_concat(x, n);
  if (is_op(n, "Cast")) return op_cast(x, n);
  if (is_op(n, "Identity")) return op_identity(x, n);
  if (is_op(n, "Add")) return op_arith(x, n, '+');
  if (is_op(n, "Sub")) return op_arith(x, n, '-');
  if (is_op(n, "Mul")) return op_arith(x, n, '*');
  return op_arith(x, n, '/');
}
