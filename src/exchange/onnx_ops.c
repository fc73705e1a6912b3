/* ONNX import, second half: each node (in topological order) becomes a cfg section,
 * is folded into the section before it (batch norm, activation, bias), or only
 * renames a value (Identity, Dropout, Flatten/Reshape of a map whose order cnn
 * already has). Values carry their ONNX shape and ours; a map flattened in ONNX's CHW
 * order while ours is HWC remembers its shape, and the dense layer reading it gets
 * its weight columns permuted. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "exchange/onnx_int.h"

typedef const Onnx__NodeProto node_t;

static int is_op(node_t *n, const char *op) { return n->op_type && !strcmp(n->op_type, op); }

/* ---- attributes ---------------------------------------------------------------------- */

const Onnx__AttributeProto *ox_attr(node_t *n, const char *name) {
  for (size_t k = 0; k < n->n_attribute; k++)
    if (n->attribute[k]->name && !strcmp(n->attribute[k]->name, name)) return n->attribute[k];
  return NULL;
}

/* every attribute must be one this op's conversion reads: refusing the rest is what
 * keeps an unknown attribute from being silently ignored */
cnn_status ox_known_attrs(ox_ctx *x, node_t *n, const char *const *names) {
  char nm[64];
  for (size_t k = 0; k < n->n_attribute; k++) {
    const char *a = n->attribute[k]->name ? n->attribute[k]->name : "";
    int ok = 0;
    for (int i = 0; names[i] && !ok; i++) ok = !strcmp(a, names[i]);
    if (!ok)
      return ox_error(x, CNN_UNSUPPORTED, "attribute '%s' is not supported",
                      ox_printable(a, nm, sizeof nm));
  }
  return CNN_OK;
}
cnn_status ox_get_int(ox_ctx *x, node_t *n, const char *name, int64_t def, int64_t *out) {
  const Onnx__AttributeProto *a = ox_attr(n, name);
  *out = def;
  if (!a) return CNN_OK;
  if (!a->has_i || (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT))
    return ox_error(x, CNN_ERR_PARSE, "attribute '%s' must be an integer", name);
  *out = a->i;
  return CNN_OK;
}

static cnn_status get_float(ox_ctx *x, node_t *n, const char *name, float def, float *out) {
  const Onnx__AttributeProto *a = ox_attr(n, name);
  *out = def;
  if (!a) return CNN_OK;
  if (!a->has_f || (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT) ||
      !isfinite(a->f))
    return ox_error(x, CNN_ERR_PARSE, "attribute '%s' must be a finite float", name);
  *out = a->f;
  return CNN_OK;
}

/* an INTS attribute of exactly `want` values (want < 0: any count up to 8); *n_out = 0
 * when absent */
cnn_status ox_get_ints(ox_ctx *x, node_t *n, const char *name, int want, int64_t *out,
                           int *n_out) {
  const Onnx__AttributeProto *a = ox_attr(n, name);
  *n_out = 0;
  if (!a) return CNN_OK;
  if (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS)
    return ox_error(x, CNN_ERR_PARSE, "attribute '%s' must be a list of integers", name);
  if (want >= 0 ? a->n_ints != (size_t)want : a->n_ints > 8)
    return ox_error(x, CNN_UNSUPPORTED, "attribute '%s' has %zu values; cnn reads %s%d", name,
                    a->n_ints, want >= 0 ? "" : "at most ", want >= 0 ? want : 8);
  for (size_t k = 0; k < a->n_ints; k++) out[k] = a->ints[k];
  *n_out = (int)a->n_ints;
  return CNN_OK;
}

/* a STRING attribute compared with its allowed values; *idx = which (default 0) */
static cnn_status get_choice(ox_ctx *x, node_t *n, const char *name, const char *const *choices,
                             int *idx) {
  const Onnx__AttributeProto *a = ox_attr(n, name);
  *idx = 0;
  if (!a) return CNN_OK;
  char v[64];
  if (!a->has_s || a->s.len >= sizeof v)
    return ox_error(x, CNN_ERR_PARSE, "attribute '%s' must be a short string", name);
  memcpy(v, a->s.data, a->s.len);
  v[a->s.len] = 0;
  for (int i = 0; choices[i]; i++)
    if (!strcmp(v, choices[i])) {
      *idx = i;
      return CNN_OK;
    }
  char pv[64];
  return ox_error(x, CNN_UNSUPPORTED, "%s='%s' is not supported", name, ox_printable(v, pv, sizeof pv));
}

/* ---- inputs and outputs -------------------------------------------------------------- */

int ox_in_idx(ox_ctx *x, node_t *n, size_t k) {
  return k < n->n_input && *n->input[k] ? ox_find(x, n->input[k]) : -1;
}

cnn_status ox_need_inputs(ox_ctx *x, node_t *n, size_t lo, size_t hi) {
  size_t have = 0;
  for (size_t k = 0; k < n->n_input; k++) have = *n->input[k] ? k + 1 : have;
  if (have < lo || have > hi || ox_in_idx(x, n, 0) < 0) {
    char want[48]; /* "1", not "11" */
    if (hi > lo) snprintf(want, sizeof want, "%zu to %zu", lo, hi);
    else snprintf(want, sizeof want, "%zu", lo);
    return ox_error(x, CNN_ERR_PARSE, "has %zu inputs; expected %s", have, want);
  }
  for (size_t k = 0; k < lo; k++)
    if (ox_in_idx(x, n, k) < 0) return ox_error(x, CNN_ERR_PARSE, "input %zu is missing", k);
  return CNN_OK;
}

/* input k: a tensor computed from the image */
static cnn_status act_in(ox_ctx *x, node_t *n, size_t k, int *vi) {
  char nm[96];
  *vi = ox_in_idx(x, n, k);
  if (*vi < 0) return ox_error(x, CNN_ERR_PARSE, "input %zu is missing", k);
  const ox_value *v = &x->v[*vi];
  if (v->is_const)
    return ox_error(x, CNN_UNSUPPORTED, "input %zu ('%s') is a constant; cnn computes this op "
                    "only on tensors computed from the image", k, ox_printable(v->name, nm, sizeof nm));
  if (v->is_shape)
    return ox_error(x, CNN_UNSUPPORTED, "input %zu ('%s') is an integer tensor computed from "
                    "the batch size; cnn uses those only as a Reshape's target shape", k,
                    ox_printable(v->name, nm, sizeof nm));
  if (!v->defined)
    return ox_error(x, CNN_ERR_PARSE, "input %zu ('%s') is not computed before this node", k,
                    ox_printable(v->name, nm, sizeof nm));
  return CNN_OK;
}

/* input k: a constant; float = 1 for weights (finite), 0 for integer shapes/axes */
static cnn_status const_in(ox_ctx *x, node_t *n, size_t k, int want_float, int *vi) {
  char nm[96];
  *vi = ox_in_idx(x, n, k);
  if (*vi < 0) return ox_error(x, CNN_ERR_PARSE, "input %zu is missing", k);
  const ox_value *v = &x->v[*vi];
  ox_printable(v->name, nm, sizeof nm);
  if (v->is_shape)
    return ox_error(x, CNN_UNSUPPORTED, "input %zu ('%s') depends on the batch size: cnn reads "
                    "it only as a value known at import", k, nm);
  if (!v->is_const)
    return ox_error(x, CNN_UNSUPPORTED, "input %zu ('%s') must be a constant (an initializer "
                    "or a Constant node): cnn reads no weights or shapes computed at run time",
                    k, nm);
  if (want_float && v->is_int)
    return ox_error(x, CNN_UNSUPPORTED, "input %zu ('%s') holds integers; cnn imports float "
                    "weights (FLOAT, DOUBLE or FLOAT16)", k, nm);
  if (!want_float && !v->is_int)
    return ox_error(x, CNN_UNSUPPORTED, "input %zu ('%s') must hold integers (INT64)", k, nm);
  if (want_float)
    for (size_t i = 0; i < v->count; i++)
      if (!isfinite(v->f[i]))
        return ox_error(x, CNN_ERR_NUMERIC, "input %zu ('%s') holds a non-finite value at %zu", k,
                        nm, i);
  return CNN_OK;
}

/* outputs beyond the first (a batch norm's statistics, a dropout mask, pooling
 * indices) must be unused */
static cnn_status one_output(ox_ctx *x, node_t *n) {
  char nm[96];
  if (n->n_output < 1 || !*n->output[0]) return ox_error(x, CNN_ERR_PARSE, "has no output");
  for (size_t k = 1; k < n->n_output; k++) {
    int i = *n->output[k] ? ox_find(x, n->output[k]) : -1;
    if (i >= 0 && x->v[i].uses > 0)
      return ox_error(x, CNN_UNSUPPORTED, "output %zu ('%s') is used; cnn computes only the "
                      "first output", k, ox_printable(n->output[k], nm, sizeof nm));
  }
  return CNN_OK;
}

cnn_status ox_new_sec(ox_ctx *x, ox_kind k, int *idx) {
  if (x->ns >= OX_MAX_SECTIONS)
    return ox_error(x, CNN_ERR_SHAPE, "over %d layers", OX_MAX_SECTIONS);
  if (x->ns == x->scap) {
    int cap = x->scap ? 2 * x->scap : 32;
    ox_sec *ns = realloc(x->s, (size_t)cap * sizeof *ns);
    if (!ns) return cnn_error(CNN_ERR_NOMEM, "out of memory");
    x->s = ns;
    x->scap = cap;
  }
  memset(&x->s[x->ns], 0, sizeof *x->s);
  x->s[x->ns].kind = k;
  *idx = x->ns++;
  return CNN_OK;
}

/* define output 0 with ONNX dims (rank 2 or 4), produced by section `sec` (-1: the input) */
static cnn_status def_out(ox_ctx *x, node_t *n, int sec, int rank, const int64_t *dims, int *vo) {
  *vo = ox_find(x, n->output[0]);
  ox_value *v = &x->v[*vo];
  double per_image = 1;
  for (int d = 1; d < rank; d++) {
    if (dims[d] < 1 || dims[d] > OX_MAX_DIM)
      return ox_error(x, CNN_ERR_SHAPE, "output dimension %d would be %lld", d, (long long)dims[d]);
    per_image *= (double)dims[d];
  }
  if (per_image > 1e9) return ox_error(x, CNN_ERR_SHAPE, "output of %.0f values per image", per_image);
  v->defined = 1;
  v->rank = rank;
  for (int d = 0; d < 4; d++) v->dims[d] = d < rank ? dims[d] : 0;
  v->c = (int)dims[1];
  v->h = rank == 4 ? (int)dims[2] : 1;
  v->w = rank == 4 ? (int)dims[3] : 1;
  v->pc = v->ph = v->pw = 0;
  v->sec = sec;
  if (sec >= 0) {
    x->s[sec].uses = v->uses;
    x->s[sec].h = v->h;
    x->s[sec].w = v->w;
    x->s[sec].c = v->c;
  }
  return CNN_OK;
}

/* output 0 names the same data as value vi (which this node consumed) */
static cnn_status alias_out(ox_ctx *x, node_t *n, int vi, int *vo) {
  *vo = ox_find(x, n->output[0]);
  ox_value *v = &x->v[*vo];
  const ox_value *src = &x->v[vi];
  int uses = v->uses;
  const char *name = v->name;
  *v = *src;
  v->name = name;
  v->uses = uses;
  v->f = NULL;
  v->i = NULL;
  if (src->sec >= 0) x->s[src->sec].uses += uses - 1;
  else x->in_uses += uses - 1;
  return CNN_OK;
}

/* the section producing vi, when the node consuming vi can be folded into it: its
 * only consumer, of one of the given kinds (a bitmask of 1 << ox_kind) */
static int foldable(ox_ctx *x, int vi, unsigned kinds) {
  const ox_value *v = &x->v[vi];
  if (v->sec < 0 || v->pc) return -1;
  const ox_sec *s = &x->s[v->sec];
  return s->uses == 1 && (kinds >> s->kind & 1) ? v->sec : -1;
}

/* after folding node n into section si: n's output is that section's output */
static void folded_out(ox_ctx *x, node_t *n, int si, int vi) {
  int vo = ox_find(x, n->output[0]);
  ox_value *v = &x->v[vo];
  const ox_value *src = &x->v[vi];
  int uses = v->uses;
  const char *name = v->name;
  *v = *src;
  v->name = name;
  v->uses = uses;
  v->f = NULL;
  v->i = NULL;
  x->s[si].uses = uses;
}

static float *fdup(const float *p, size_t n) {
  float *q = malloc((n ? n : 1) * sizeof *q);
  if (q && n) memcpy(q, p, n * sizeof *q);
  return q;
}

/* a constant broadcast per channel onto a value of rank `rank` with c channels: a
 * scalar, [C] / [1, C] (rank 2), or [C, 1, 1] / [1, C, 1, 1] (rank 4) */
static cnn_status per_channel(ox_ctx *x, int ci, int rank, int c, float *out) {
  const ox_value *k = &x->v[ci];
  char nm[96];
  if (k->count == 1) {
    for (int i = 0; i < c; i++) out[i] = k->f[0];
    return CNN_OK;
  }
  int ok = (int)k->count == c;
  int chan_axis = rank == 4 ? k->crank - 3 : k->crank - 1; /* broadcast aligns from the right */
  for (int d = 0; ok && d < k->crank; d++)
    ok = d == chan_axis ? k->cdims[d] == c : (d < chan_axis && k->cdims[d] == 1) || (d > chan_axis && k->cdims[d] == 1);
  if (!ok || chan_axis < 0 || (rank == 4 ? k->crank > 4 : k->crank > 2))
    return ox_error(x, CNN_UNSUPPORTED, "constant '%s' is not one value per channel (%d "
                    "channels) or a scalar", ox_printable(k->name, nm, sizeof nm), c);
  memcpy(out, k->f, (size_t)c * sizeof *out);
  return CNN_OK;
}

/* ---- padding ------------------------------------------------------------------------- */

/* ONNX pads [top, left, bottom, right] of a conv or pool from auto_pad/pads; eff[] is the
 * (dilated) kernel extent, in[] the input size */
static cnn_status get_pads(ox_ctx *x, node_t *n, const int *in, const int *eff, const int64_t *stride,
                           int64_t *p) {
  static const char *const modes[] = {"NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER", NULL};
  int mode, np;
  CNN_TRY(get_choice(x, n, "auto_pad", modes, &mode));
  CNN_TRY(ox_get_ints(x, n, "pads", 4, p, &np));
  if (!np) p[0] = p[1] = p[2] = p[3] = 0;
  if (mode && np && (p[0] || p[1] || p[2] || p[3]))
    return ox_error(x, CNN_ERR_PARSE, "both auto_pad and pads are given");
  for (int a = 0; a < 2; a++) {
    if (mode == 1) p[a] = p[a + 2] = 0;
    if (mode >= 2) {
      int64_t out = (in[a] + stride[a] - 1) / stride[a];
      int64_t total = (out - 1) * stride[a] + eff[a] - in[a];
      if (total < 0) total = 0;
      p[mode == 2 ? a : a + 2] = total / 2;
      p[mode == 2 ? a + 2 : a] = total - total / 2;
    }
    if (p[a] < 0 || p[a + 2] < 0 || p[a] > 1 << 16 || p[a + 2] > 1 << 16)
      return ox_error(x, CNN_UNSUPPORTED, "pads %lld,%lld,%lld,%lld: negative or too large",
                      (long long)p[0], (long long)p[1], (long long)p[2], (long long)p[3]);
  }
  return CNN_OK;
}

/* ---- ops ----------------------------------------------------------------------------- */

static cnn_status op_conv(ox_ctx *x, node_t *n) {
  KNOWN("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides");
  CNN_TRY(ox_need_inputs(x, n, 2, 3));
  int xi, wi, bi = -1;
  CNN_TRY(act_in(x, n, 0, &xi));
  CNN_TRY(const_in(x, n, 1, 1, &wi));
  if (ox_in_idx(x, n, 2) >= 0) CNN_TRY(const_in(x, n, 2, 1, &bi));
  const ox_value *X = &x->v[xi], *W = &x->v[wi];
  if (X->rank != 4 || W->crank != 4)
    return ox_error(x, CNN_UNSUPPORTED, "only 2-D convolutions are supported (input rank %d, "
                    "weight rank %d)", X->rank, W->crank);
  int64_t group, ks[2], dil[2] = {1, 1}, st[2] = {1, 1}, pads[4];
  int nk, nd, ns;
  CNN_TRY(ox_get_int(x, n, "group", 1, &group));
  CNN_TRY(ox_get_ints(x, n, "kernel_shape", 2, ks, &nk));
  CNN_TRY(ox_get_ints(x, n, "dilations", 2, dil, &nd));
  CNN_TRY(ox_get_ints(x, n, "strides", 2, st, &ns));
  if (!nd) dil[0] = dil[1] = 1;
  if (!ns) st[0] = st[1] = 1;
  int64_t K = W->cdims[0], Cg = W->cdims[1], R = W->cdims[2], S = W->cdims[3];
  if (R > 1 << 16 || S > 1 << 16)
    return ox_error(x, CNN_UNSUPPORTED, "kernel %lldx%lld", (long long)R, (long long)S);
  if (group < 1 || group > X->c || Cg * group != X->c || K % group || K < 1 || R < 1 || S < 1)
    return ox_error(x, CNN_ERR_SHAPE, "weight [%lld, %lld, %lld, %lld] with group %lld does not "
                    "fit an input of %d channels", (long long)K, (long long)Cg, (long long)R,
                    (long long)S, (long long)group, X->c);
  if (nk && (ks[0] != R || ks[1] != S))
    return ox_error(x, CNN_ERR_SHAPE, "kernel_shape %lldx%lld differs from the weight's %lldx%lld",
                    (long long)ks[0], (long long)ks[1], (long long)R, (long long)S);
  if (dil[0] != dil[1] || dil[0] < 1 || dil[0] > 1 << 10)
    return ox_error(x, CNN_UNSUPPORTED, "dilations %lld,%lld: cnn dilates both axes alike",
                    (long long)dil[0], (long long)dil[1]);
  if (st[0] < 1 || st[1] < 1 || st[0] > 1 << 16 || st[1] > 1 << 16)
    return ox_error(x, CNN_UNSUPPORTED, "strides %lld,%lld", (long long)st[0], (long long)st[1]);
  if (bi >= 0 && (int64_t)x->v[bi].count != K)
    return ox_error(x, CNN_ERR_SHAPE, "bias has %zu values for %lld filters", x->v[bi].count,
                    (long long)K);
  int in[2] = {X->h, X->w}, eff[2] = {(int)(dil[0] * (R - 1) + 1), (int)(dil[1] * (S - 1) + 1)};
  CNN_TRY(get_pads(x, n, in, eff, st, pads));
  int64_t out[2];
  for (int a = 0; a < 2; a++) {
    out[a] = (in[a] + pads[a] + pads[a + 2] - eff[a]) / st[a] + 1;
    if (in[a] + pads[a] + pads[a + 2] < eff[a])
      return ox_error(x, CNN_ERR_SHAPE, "kernel larger than its padded input");
  }
  int si;
  CNN_TRY(ox_new_sec(x, OS_CONV, &si));
  ox_sec *s = &x->s[si];
  s->filters = (int)K, s->kh = (int)R, s->kw = (int)S, s->sh = (int)st[0], s->sw = (int)st[1];
  s->dil = (int)dil[0], s->groups = (int)group;
  /* zero padding adds nothing to a conv: pads [b, e] on an axis are cnn's symmetric b
   * when that gives the same output size (the windows start at the same places; end
   * padding beyond what the last window reads is never read, and what it reads is
   * zeros either way) -- as cnn export writes Darknet's pad=1 with a stride */
  int sym = 1;
  for (int a = 0; a < 2; a++)
    sym = sym && in[a] + 2 * pads[a] >= eff[a] && (in[a] + 2 * pads[a] - eff[a]) / st[a] + 1 == out[a];
  int same = 1; /* cnn's 'same' padding (the extra row/column at the end) */
  for (int a = 0; a < 2; a++) {
    int64_t o = (in[a] + st[a] - 1) / st[a], total = (o - 1) * st[a] + eff[a] - in[a];
    if (total < 0) total = 0;
    same = same && o == out[a] && pads[a] == total / 2;
  }
  int alike = pads[0] == pads[1] || (pads[0] == R / 2 && pads[1] == S / 2);
  if (sym && (alike || !same)) {
    s->ph = (int)pads[0], s->pw = (int)pads[1];
    if (!alike)
      return ox_error(x, CNN_UNSUPPORTED, "pads %d (rows) and %d (columns): cnn pads both axes "
                      "alike or by half the kernel", s->ph, s->pw);
  } else if (same) {
    s->same = 1;
  } else {
    return ox_error(x, CNN_UNSUPPORTED, "asymmetric pads %lld,%lld,%lld,%lld: cnn supports "
                    "symmetric padding, SAME_UPPER-style padding and end padding that changes "
                    "no output size only", (long long)pads[0], (long long)pads[1],
                    (long long)pads[2], (long long)pads[3]);
  }
  size_t cnt = (size_t)(K * Cg * R * S);
  if (!(s->wt = malloc(cnt * sizeof *s->wt))) return cnn_error(CNN_ERR_NOMEM, "out of memory");
  s->wn = cnt;
  for (int64_t k = 0; k < K; k++) /* ONNX [K][C/g][R][S] -> ours [K][R][S][C/g] */
    for (int64_t c = 0; c < Cg; c++)
      for (int64_t r = 0; r < R; r++)
        for (int64_t q = 0; q < S; q++)
          s->wt[((k * R + r) * S + q) * Cg + c] = W->f[((k * Cg + c) * R + r) * S + q];
  if (bi >= 0) {
    s->bias = 1;
    if (!(s->b = fdup(x->v[bi].f, (size_t)K))) return cnn_error(CNN_ERR_NOMEM, "out of memory");
  }
  s->in[0] = xi, s->n_in = 1;
  int64_t dims[4] = {0, K, out[0], out[1]};
  int vo;
  return def_out(x, n, si, 4, dims, &vo);
}

static cnn_status op_bn(ox_ctx *x, node_t *n) {
  KNOWN("epsilon", "momentum", "spatial", "training_mode");
  CNN_TRY(ox_need_inputs(x, n, 5, 5));
  CNN_TRY(one_output(x, n));
  int xi, pi[4];
  CNN_TRY(act_in(x, n, 0, &xi));
  for (int k = 0; k < 4; k++) CNN_TRY(const_in(x, n, (size_t)k + 1, 1, &pi[k]));
  float eps, mom;
  int64_t spatial, training;
  CNN_TRY(get_float(x, n, "epsilon", 1e-5f, &eps));
  CNN_TRY(get_float(x, n, "momentum", 0.9f, &mom));
  CNN_TRY(ox_get_int(x, n, "spatial", 1, &spatial));
  CNN_TRY(ox_get_int(x, n, "training_mode", 0, &training));
  if (spatial != 1) return ox_error(x, CNN_UNSUPPORTED, "spatial=%lld (cnn normalizes per channel)", (long long)spatial);
  if (training) return ox_error(x, CNN_UNSUPPORTED, "training_mode=1: export the model in eval mode");
  if (!(eps >= 1e-12f && eps <= 1)) return ox_error(x, CNN_UNSUPPORTED, "epsilon %g outside 1e-12..1", eps);
  if (!(mom >= 0 && mom <= 1)) return ox_error(x, CNN_UNSUPPORTED, "momentum %g outside 0..1", mom);
  const ox_value *X = &x->v[xi];
  if (X->pc) return ox_error(x, CNN_UNSUPPORTED, "batch norm of a flattened feature map");
  int c = X->c;
  for (int k = 0; k < 4; k++)
    if ((int)x->v[pi[k]].count != c)
      return ox_error(x, CNN_ERR_SHAPE, "input %d has %zu values for %d channels", k + 1,
                      x->v[pi[k]].count, c);
  for (int i = 0; i < c; i++)
    if (!(x->v[pi[3]].f[i] + eps > 0))
      return ox_error(x, CNN_ERR_NUMERIC, "running variance + epsilon is not positive at channel %d", i);
  int si = foldable(x, xi, 1u << OS_CONV | 1u << OS_FC);
  if (si >= 0 && (x->s[si].bn || x->s[si].act)) si = -1;
  int fold = si >= 0;
  if (!fold) {
    CNN_TRY(ox_new_sec(x, OS_BN, &si));
    x->s[si].in[0] = xi, x->s[si].n_in = 1;
  }
  ox_sec *s = &x->s[si];
  for (int k = 0; k < 4; k++)
    if (!(s->bnp[k] = fdup(x->v[pi[k]].f, (size_t)c))) return cnn_error(CNN_ERR_NOMEM, "out of memory");
  s->bn = 1;
  s->bn_eps = eps;
  s->bn_mom = mom;
  if (fold && s->bias) { /* BN(conv + b) = BN with running mean - b, and no conv bias */
    for (int i = 0; i < c; i++) s->bnp[2][i] -= s->b[i];
    free(s->b);
    s->b = NULL;
    s->bias = 0;
  }
  if (fold) {
    x->n_bn_fused++;
    folded_out(x, n, si, xi);
    return CNN_OK;
  }
  int vo;
  CNN_TRY(def_out(x, n, si, X->rank, X->dims, &vo));
  x->v[vo].h = X->h, x->v[vo].w = X->w, x->s[si].h = X->h, x->s[si].w = X->w;
  return CNN_OK;
}

/* Clip's bound k (1: min, 2: max): an attribute before opset 11, an optional scalar
 * constant input from it (infinite values allowed: clamp(min=0) has max = inf) */
static cnn_status clip_bound(ox_ctx *x, node_t *n, int k, float def, float *out) {
  *out = def;
  if (x->opset < 11) return get_float(x, n, k == 1 ? "min" : "max", def, out);
  int vi = ox_in_idx(x, n, (size_t)k);
  if (vi < 0) return CNN_OK;
  const ox_value *v = &x->v[vi];
  char nm[96];
  if (!v->is_const || v->is_int || v->count != 1)
    return ox_error(x, CNN_UNSUPPORTED, "Clip's %s ('%s') must be a float scalar constant",
                    k == 1 ? "min" : "max", ox_printable(v->name, nm, sizeof nm));
  if (isnan(v->f[0])) return ox_error(x, CNN_ERR_NUMERIC, "Clip's %s is NaN", k == 1 ? "min" : "max");
  *out = v->f[0];
  return CNN_OK;
}

static cnn_status op_act(ox_ctx *x, node_t *n) {
  const char *act;
  float slope = 0.1f;
  if (is_op(n, "Relu")) {
    KNOWN("");
    act = "relu";
  } else if (is_op(n, "Clip")) { /* Clip(0, 6) is relu6, Clip(0, inf) relu */
    if (x->opset < 11) KNOWN("min", "max");
    else KNOWN("");
    CNN_TRY(ox_need_inputs(x, n, 1, x->opset < 11 ? 1 : 3));
    float lo, hi;
    CNN_TRY(clip_bound(x, n, 1, -INFINITY, &lo));
    CNN_TRY(clip_bound(x, n, 2, INFINITY, &hi));
    if (lo == 0 && hi == 6)
      act = "relu6";
    else if (lo == 0 && hi >= 3.402823466e38f) /* inf, or FLT_MAX as older exporters write */
      act = "relu";
    else
      return ox_error(x, CNN_UNSUPPORTED, "Clip(min %g, max %g): cnn imports Clip only as relu "
                      "(min 0, no max) or relu6 (min 0, max 6)", lo, hi);
  } else if (is_op(n, "LeakyRelu")) {
    KNOWN("alpha");
    CNN_TRY(get_float(x, n, "alpha", 0.01f, &slope));
    if (!(slope >= 0 && slope <= 1))
      return ox_error(x, CNN_UNSUPPORTED, "alpha %g: cnn's leaky slope is in 0..1", slope);
    act = "leaky";
  } else if (is_op(n, "Sigmoid")) {
    KNOWN("");
    act = "logistic";
  } else if (is_op(n, "Tanh")) {
    KNOWN("");
    act = "tanh";
  } else { /* Gelu */
    KNOWN("approximate");
    static const char *const modes[] = {"none", NULL};
    int m;
    CNN_TRY(get_choice(x, n, "approximate", modes, &m));
    act = "gelu";
  }
  if (!is_op(n, "Clip")) CNN_TRY(ox_need_inputs(x, n, 1, 1));
  int xi;
  CNN_TRY(act_in(x, n, 0, &xi));
  int si = foldable(x, xi, 1u << OS_CONV | 1u << OS_FC | 1u << OS_SHORTCUT);
  if (si >= 0 && !x->s[si].act) {
    x->s[si].act = act;
    x->s[si].slope = slope;
    x->n_act_fused++;
    folded_out(x, n, si, xi);
    return CNN_OK;
  }
  CNN_TRY(ox_new_sec(x, OS_ACT, &si));
  x->s[si].act = act;
  x->s[si].slope = slope;
  x->s[si].in[0] = xi, x->s[si].n_in = 1;
  const ox_value *X = &x->v[xi];
  int vo;
  CNN_TRY(def_out(x, n, si, X->rank, X->dims, &vo));
  ox_value *v = &x->v[vo];
  v->h = X->h, v->w = X->w, v->c = X->c, v->pc = X->pc, v->ph = X->ph, v->pw = X->pw;
  x->s[si].h = X->h, x->s[si].w = X->w, x->s[si].c = X->c;
  return CNN_OK;
}

static cnn_status op_pool(ox_ctx *x, node_t *n, int is_max) {
  if (is_max) KNOWN("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides");
  else KNOWN("auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides");
  CNN_TRY(ox_need_inputs(x, n, 1, 1));
  CNN_TRY(one_output(x, n));
  int xi;
  CNN_TRY(act_in(x, n, 0, &xi));
  const ox_value *X = &x->v[xi];
  if (X->rank != 4) return ox_error(x, CNN_UNSUPPORTED, "only 2-D pooling is supported");
  int64_t ks[2], st[2] = {1, 1}, dil[2], pads[4], ceil_mode, include_pad = 0;
  int nk, ns, nd;
  CNN_TRY(ox_get_ints(x, n, "kernel_shape", 2, ks, &nk));
  CNN_TRY(ox_get_ints(x, n, "strides", 2, st, &ns));
  CNN_TRY(ox_get_ints(x, n, "dilations", 2, dil, &nd));
  CNN_TRY(ox_get_int(x, n, "ceil_mode", 0, &ceil_mode));
  if (!is_max) CNN_TRY(ox_get_int(x, n, "count_include_pad", 0, &include_pad));
  if (!nk) return ox_error(x, CNN_ERR_PARSE, "kernel_shape is required");
  if (!ns) st[0] = st[1] = 1;
  if (nd && (dil[0] != 1 || dil[1] != 1)) return ox_error(x, CNN_UNSUPPORTED, "dilated pooling");
  if (ks[0] != ks[1] || ks[0] < 1 || ks[0] > 1 << 16)
    return ox_error(x, CNN_UNSUPPORTED, "kernel %lldx%lld: cnn pools square windows",
                    (long long)ks[0], (long long)ks[1]);
  if (st[0] < 1 || st[1] < 1 || st[0] > 1 << 16 || st[1] > 1 << 16)
    return ox_error(x, CNN_UNSUPPORTED, "strides %lld,%lld", (long long)st[0], (long long)st[1]);
  int k = (int)ks[0], in[2] = {X->h, X->w}, eff[2] = {k, k};
  CNN_TRY(get_pads(x, n, in, eff, st, pads));
  int64_t out[2];
  int touches_pad = 0;
  for (int a = 0; a < 2; a++) {
    if (pads[a] >= k || pads[a + 2] >= k)
      return ox_error(x, CNN_UNSUPPORTED, "padding %lld,%lld not smaller than the kernel %d",
                      (long long)pads[a], (long long)pads[a + 2], k);
    int64_t span = in[a] + pads[a] + pads[a + 2] - k;
    if (span < 0) return ox_error(x, CNN_ERR_SHAPE, "window larger than its padded input");
    out[a] = ceil_mode ? (span + st[a] - 1) / st[a] + 1 : span / st[a] + 1;
    if (ceil_mode && (out[a] - 1) * st[a] >= in[a] + pads[a]) out[a]--; /* a window must start
                                                                          * inside the input */
    touches_pad |= pads[a] > 0 || (out[a] - 1) * st[a] - pads[a] + k > in[a];
  }
  if (!is_max && include_pad && touches_pad)
    return ox_error(x, CNN_UNSUPPORTED, "count_include_pad=1 with windows over the padding: cnn "
                    "averages over the input values only (export with count_include_pad=False)");
  /* cnn (Darknet): total padding T, T/2 on the top/left, out = (in + T - k) / stride + 1;
   * windows are clipped to the input either way, so equal positions give equal results */
  int total = -1;
  for (int t = 2 * (int)pads[0]; t <= 2 * (int)pads[0] + 1 && total < 0; t++) {
    int ok = pads[0] == pads[1];
    for (int a = 0; a < 2 && ok; a++) ok = (in[a] + t - k) >= 0 && (in[a] + t - k) / st[a] + 1 == out[a];
    if (ok) total = t;
  }
  if (total < 0)
    return ox_error(x, CNN_UNSUPPORTED, "pads %lld,%lld,%lld,%lld%s: cnn pools with the same "
                    "padding on both axes, half of it (rounded down) before", (long long)pads[0],
                    (long long)pads[1], (long long)pads[2], (long long)pads[3],
                    ceil_mode ? " with ceil_mode" : "");
  int si;
  CNN_TRY(ox_new_sec(x, is_max ? OS_MAXPOOL : OS_AVGPOOL, &si));
  ox_sec *s = &x->s[si];
  s->kh = k, s->sh = (int)st[0], s->sw = (int)st[1], s->pad_total = total;
  s->in[0] = xi, s->n_in = 1;
  int64_t dims[4] = {0, X->c, out[0], out[1]};
  int vo;
  return def_out(x, n, si, 4, dims, &vo);
}

/* GlobalAveragePool, GlobalMaxPool, ReduceMean over H and W */
static cnn_status op_global(ox_ctx *x, node_t *n, int is_max, int keep) {
  int xi;
  CNN_TRY(act_in(x, n, 0, &xi));
  const ox_value *X = &x->v[xi];
  if (X->rank != 4) return ox_error(x, CNN_UNSUPPORTED, "input of rank %d; expected [N, C, H, W]", X->rank);
  int si;
  CNN_TRY(ox_new_sec(x, is_max ? OS_MAXPOOL : OS_AVGPOOL, &si));
  x->s[si].global = 1;
  x->s[si].in[0] = xi, x->s[si].n_in = 1;
  int64_t dims[4] = {0, X->c, 1, 1};
  int vo;
  return def_out(x, n, si, keep ? 4 : 2, dims, &vo);
}

/* the optional axes of n: an attribute before opset `since`, input 1 from it (a
 * constant of at most `max` values; the attribute up to 8); *na = 0 when absent */
static cnn_status get_axes(ox_ctx *x, node_t *n, int64_t since, int max, int64_t *axes, int *na) {
  *na = 0;
  if (x->opset < since) {
    if (ox_in_idx(x, n, 1) >= 0) return ox_error(x, CNN_ERR_PARSE, "has 2 inputs; expected 1");
    return ox_get_ints(x, n, "axes", -1, axes, na);
  }
  if (ox_attr(n, "axes"))
    return ox_error(x, CNN_ERR_PARSE, "axes is an input since opset %lld", (long long)since);
  if (ox_in_idx(x, n, 1) < 0) return CNN_OK;
  int ai;
  CNN_TRY(const_in(x, n, 1, 0, &ai));
  if (x->v[ai].count > (size_t)max) return ox_error(x, CNN_UNSUPPORTED, "too many axes");
  *na = (int)x->v[ai].count;
  for (int k = 0; k < *na; k++) axes[k] = x->v[ai].i[k];
  return CNN_OK;
}

static cnn_status op_reduce_mean(ox_ctx *x, node_t *n) {
  KNOWN("axes", "keepdims", "noop_with_empty_axes");
  CNN_TRY(ox_need_inputs(x, n, 1, 2));
  int64_t axes[8], keep, noop;
  int na = 0;
  CNN_TRY(ox_get_int(x, n, "keepdims", 1, &keep));
  CNN_TRY(ox_get_int(x, n, "noop_with_empty_axes", 0, &noop));
  CNN_TRY(get_axes(x, n, 18, 8, axes, &na));
  unsigned mask = 0;
  for (int k = 0; k < na; k++) {
    int64_t a = axes[k] < 0 ? axes[k] + 4 : axes[k];
    if (a < 0 || a > 3) return ox_error(x, CNN_ERR_SHAPE, "axis %lld out of range", (long long)axes[k]);
    mask |= 1u << a;
  }
  if (mask != 12 || noop)
    return ox_error(x, CNN_UNSUPPORTED, "ReduceMean is supported over axes 2 and 3 only (a "
                    "global average pool)");
  return op_global(x, n, 0, keep != 0);
}

/* a reshape-like op produced ONNX dims odims from value vi */
static cnn_status reshape_to(ox_ctx *x, node_t *n, int vi, int orank, const int64_t *odims) {
  const ox_value *X = &x->v[vi];
  double pin = 1, pout = 1;
  for (int d = 1; d < X->rank; d++) pin *= (double)X->dims[d];
  for (int d = 1; d < orank; d++) pout *= (double)odims[d];
  if (pin != pout)
    return ox_error(x, CNN_ERR_SHAPE, "reshapes %.0f values per image into %.0f", pin, pout);
  int vo;
  if (orank == 4) {
    int same = X->rank == 4 && X->dims[1] == odims[1] && X->dims[2] == odims[2] && X->dims[3] == odims[3];
    if (!same && !(odims[2] == 1 && odims[3] == 1 && !X->pc && X->h == 1 && X->w == 1))
      return ox_error(x, CNN_UNSUPPORTED, "reshape into [N, %lld, %lld, %lld]: cnn reshapes only "
                      "[N, C, H, W] into [N, C*H*W] (flatten) and [N, C] into [N, C, 1, 1]",
                      (long long)odims[1], (long long)odims[2], (long long)odims[3]);
    CNN_TRY(alias_out(x, n, vi, &vo));
    ox_value *v = &x->v[vo];
    v->rank = 4;
    for (int d = 1; d < 4; d++) v->dims[d] = odims[d];
    v->c = (int)odims[1], v->h = (int)odims[2], v->w = (int)odims[3];
    x->n_reshaped++;
    return CNN_OK;
  }
  if (orank != 2)
    return ox_error(x, CNN_UNSUPPORTED, "reshape into rank %d: cnn reshapes only into [N, "
                    "C*H*W] and [N, C, 1, 1]", orank);
  if (X->h * X->w > 1) { /* a [flatten] section: later layers see [1, 1, F] as cnn does */
    int si;
    CNN_TRY(ox_new_sec(x, OS_FLATTEN, &si));
    x->s[si].in[0] = vi, x->s[si].n_in = 1;
    int64_t dims[2] = {0, odims[1]};
    CNN_TRY(def_out(x, n, si, 2, dims, &vo));
    if (X->c > 1) x->v[vo].pc = X->c, x->v[vo].ph = X->h, x->v[vo].pw = X->w;
    return CNN_OK;
  }
  CNN_TRY(alias_out(x, n, vi, &vo));
  ox_value *v = &x->v[vo];
  v->rank = 2;
  v->dims[1] = odims[1], v->dims[2] = v->dims[3] = 0;
  v->h = v->w = 1, v->c = (int)odims[1];
  x->n_reshaped++;
  return CNN_OK;
}

static cnn_status op_flatten(ox_ctx *x, node_t *n) {
  KNOWN("axis");
  CNN_TRY(ox_need_inputs(x, n, 1, 1));
  int xi;
  CNN_TRY(act_in(x, n, 0, &xi));
  int64_t axis;
  CNN_TRY(ox_get_int(x, n, "axis", 1, &axis));
  if (axis < 0) axis += x->v[xi].rank;
  if (axis != 1) return ox_error(x, CNN_UNSUPPORTED, "axis %lld: cnn flattens all but the batch", (long long)axis);
  const ox_value *X = &x->v[xi];
  int64_t dims[2] = {0, (int64_t)X->c * X->h * X->w};
  if (X->rank == 2) dims[1] = X->dims[1];
  return reshape_to(x, n, xi, 2, dims);
}

static cnn_status op_reshape(ox_ctx *x, node_t *n) {
  KNOWN("allowzero");
  CNN_TRY(ox_need_inputs(x, n, 2, 2));
  int xi, si = ox_in_idx(x, n, 1);
  CNN_TRY(act_in(x, n, 0, &xi));
  if (si < 0 || !x->v[si].is_shape) CNN_TRY(const_in(x, n, 1, 0, &si));
  int64_t allowzero;
  CNN_TRY(ox_get_int(x, n, "allowzero", 0, &allowzero));
  const ox_value *X = &x->v[xi], *S = &x->v[si];
  if (S->count < 1 || S->count > 4)
    return ox_error(x, CNN_UNSUPPORTED, "target shape of %zu dimensions", S->count);
  int orank = (int)S->count;
  int64_t t[4], known = 1, per_image = 1;
  int infer = -1;
  for (int d = 1; d < X->rank; d++) per_image *= X->dims[d];
  for (int d = 0; d < orank; d++) {
    t[d] = S->i[d];
    if (S->is_shape && S->dk[d] == OX_DK_RUNTIME)
      return ox_error(x, CNN_UNSUPPORTED, "target dimension %d is computed from the batch size "
                      "(not the batch size itself): known only at run time", d);
    if (S->is_shape && S->dk[d] == OX_DK_BATCH) { /* Shape -> Gather(0) -> ... */
      if (d > 0)
        return ox_error(x, CNN_UNSUPPORTED, "the target shape puts the batch size at dimension "
                        "%d: cnn keeps the batch dimension first", d);
      t[0] = -2;
      continue;
    }
    if (t[d] == 0 && !allowzero) {
      if (d >= X->rank) return ox_error(x, CNN_ERR_SHAPE, "0 in the shape copies a dimension the input lacks");
      t[d] = d == 0 ? -2 : X->dims[d]; /* -2: the batch */
    }
    if (t[d] == -1) {
      if (infer >= 0) return ox_error(x, CNN_ERR_SHAPE, "two -1 in the target shape");
      infer = d;
    } else if (d > 0 && (t[d] < 1 || t[d] > OX_MAX_DIM)) {
      return ox_error(x, CNN_UNSUPPORTED, "target dimension %lld", (long long)t[d]);
    } else if (d > 0) {
      known *= t[d];
      if (known > per_image) return ox_error(x, CNN_ERR_SHAPE, "the target shape holds more values than the input");
    }
  }
  /* the first dimension must stay the batch: kept (0), inferred (-1, the rest fixed),
   * or the input's own fixed batch */
  if (!(t[0] == -2 || (t[0] == -1 && infer == 0) || (x->batch > 0 && t[0] == x->batch)))
    return ox_error(x, CNN_UNSUPPORTED, "target shape begins with %lld: cnn keeps the batch "
                    "dimension first", (long long)S->i[0]);
  if (infer > 0) {
    if (known == 0 || per_image % known) return ox_error(x, CNN_ERR_SHAPE, "cannot infer the -1 dimension");
    t[infer] = per_image / known;
  }
  return reshape_to(x, n, xi, orank, t);
}

/* Squeeze / Unsqueeze of non-batch axes */
static cnn_status op_squeeze(ox_ctx *x, node_t *n, int un) {
  KNOWN("axes");
  CNN_TRY(ox_need_inputs(x, n, 1, 2));
  int xi;
  CNN_TRY(act_in(x, n, 0, &xi));
  int64_t axes[8];
  int na = 0;
  CNN_TRY(get_axes(x, n, 13, 4, axes, &na));
  const ox_value *X = &x->v[xi];
  int orank = un ? X->rank + na : X->rank - na;
  if (un && !na) return ox_error(x, CNN_ERR_PARSE, "axes are required");
  unsigned mask = 0;
  for (int k = 0; k < na; k++) {
    int64_t a = axes[k] < 0 ? axes[k] + (un ? orank : X->rank) : axes[k];
    if (a <= 0 || a >= (un ? orank : X->rank) || a > 7 || mask >> a & 1)
      return ox_error(x, CNN_UNSUPPORTED, "axis %lld: cnn keeps the batch axis and reads ranks 2 and 4",
                      (long long)axes[k]);
    mask |= 1u << a;
  }
  int64_t od[8];
  int r = 0;
  if (!un) {
    if (!na) { /* every axis of size 1 but the batch */
      if (x->batch == 1) return ox_error(x, CNN_UNSUPPORTED, "Squeeze without axes of a batch of 1");
      for (int d = 1; d < X->rank; d++)
        if (X->dims[d] == 1) mask |= 1u << d;
    }
    for (int d = 0; d < X->rank; d++) {
      if (mask >> d & 1) {
        if (X->dims[d] != 1) return ox_error(x, CNN_ERR_SHAPE, "squeezes axis %d of size %lld", d, (long long)X->dims[d]);
      } else {
        od[r++] = X->dims[d];
      }
    }
  } else {
    if (orank > 8) return ox_error(x, CNN_UNSUPPORTED, "rank %d", orank);
    for (int d = 0, s = 0; d < orank; d++) od[r++] = mask >> d & 1 ? 1 : X->dims[s++];
  }
  return reshape_to(x, n, xi, r, od);
}

static cnn_status op_gemm(ox_ctx *x, node_t *n, int matmul) {
  if (matmul) KNOWN("");
  else KNOWN("alpha", "beta", "transA", "transB");
  CNN_TRY(ox_need_inputs(x, n, 2, matmul ? 2 : 3));
  int ai, bi, ci = -1;
  CNN_TRY(act_in(x, n, 0, &ai));
  CNN_TRY(const_in(x, n, 1, 1, &bi));
  if (ox_in_idx(x, n, 2) >= 0) CNN_TRY(const_in(x, n, 2, 1, &ci));
  float alpha = 1, beta = 1;
  int64_t ta = 0, tb = 0;
  if (!matmul) {
    CNN_TRY(get_float(x, n, "alpha", 1, &alpha));
    CNN_TRY(get_float(x, n, "beta", 1, &beta));
    CNN_TRY(ox_get_int(x, n, "transA", 0, &ta));
    CNN_TRY(ox_get_int(x, n, "transB", 0, &tb));
  }
  const ox_value *A = &x->v[ai], *B = &x->v[bi];
  if (ta) return ox_error(x, CNN_UNSUPPORTED, "transA=1: the batch must be the first axis of A");
  if (A->rank != 2 || B->crank != 2)
    return ox_error(x, CNN_UNSUPPORTED, "A of rank %d and B of rank %d: cnn reads [N, I] x "
                    "[I, O] (flatten first)", A->rank, B->crank);
  int64_t I = A->dims[1], O = tb ? B->cdims[0] : B->cdims[1], IB = tb ? B->cdims[1] : B->cdims[0];
  if (IB != I || O < 1)
    return ox_error(x, CNN_ERR_SHAPE, "B [%lld, %lld] does not fit A [N, %lld]",
                    (long long)B->cdims[0], (long long)B->cdims[1], (long long)I);
  if (ci >= 0 && x->v[ci].count != 1 && ((int64_t)x->v[ci].count != O || x->v[ci].crank > 2 ||
                                         (x->v[ci].crank == 2 && x->v[ci].cdims[0] != 1)))
    return ox_error(x, CNN_UNSUPPORTED, "C must be a scalar, [O] or [1, O] (a bias)");
  int si;
  CNN_TRY(ox_new_sec(x, OS_FC, &si));
  ox_sec *s = &x->s[si];
  s->filters = (int)O;
  size_t cnt = (size_t)(O * I);
  if (!(s->wt = malloc(cnt * sizeof *s->wt))) return cnn_error(CNN_ERR_NOMEM, "out of memory");
  s->wn = cnt;
  /* our column j reads cnn's (HWC) element j; ONNX's column is that element's CHW index */
  int C = A->pc, H = A->ph, W = A->pw;
  for (int64_t o = 0; o < O; o++)
    for (int64_t j = 0; j < I; j++) {
      int64_t i = j;
      if (C) {
        int64_t c = j % C, hw = j / C;
        i = c * H * W + hw;
      }
      s->wt[o * I + j] = alpha * (tb ? B->f[o * I + i] : B->f[i * O + o]);
    }
  if (ci >= 0) {
    s->bias = 1;
    if (!(s->b = malloc((size_t)O * sizeof *s->b))) return cnn_error(CNN_ERR_NOMEM, "out of memory");
    for (int64_t o = 0; o < O; o++) s->b[o] = beta * x->v[ci].f[x->v[ci].count == 1 ? 0 : o];
  }
  s->in[0] = ai, s->n_in = 1;
  int64_t dims[2] = {0, O};
  int vo;
  return def_out(x, n, si, 2, dims, &vo);
}

/* Add/Sub/Mul/Div of a per-channel constant applied to the pixels: kept as the
 * checkpoint's mean/std (x' = a x + b per channel) */
static cnn_status fold_norm(ox_ctx *x, node_t *n, int xi, int ci, char op) {
  float k[4];
  const ox_value *X = &x->v[xi];
  CNN_TRY(per_channel(x, ci, X->rank, X->c, k));
  for (int c = 0; c < X->c; c++) {
    if (op == '*' || op == '/') {
      if (!(k[c] > 0)) return ox_error(x, CNN_UNSUPPORTED, "scales the pixels by %g: not a positive std", k[c]);
      double f = op == '*' ? (double)k[c] : 1.0 / k[c];
      x->na[c] *= f, x->nb[c] *= f;
    } else {
      x->nb[c] += op == '+' ? k[c] : -k[c];
    }
  }
  x->normalized = 1;
  x->n_norm++;
  int vo;
  return alias_out(x, n, xi, &vo);
}

/* n's output is read only by a Softmax or LogSoftmax that makes the graph output */
static int feeds_final_softmax(ox_ctx *x, node_t *n) {
  int vo = ox_find(x, n->output[0]);
  if (vo < 0 || vo == x->output || x->v[vo].uses != 1) return 0;
  for (size_t k = 0; k < x->g->n_node; k++) { /* that consumer: the output's producer (live) */
    const Onnx__NodeProto *c = x->g->node[k];
    if ((is_op(c, "Softmax") || is_op(c, "LogSoftmax")) && c->n_input >= 1 && c->n_output >= 1 &&
        !strcmp(c->input[0], n->output[0]) && ox_find(x, c->output[0]) == x->output)
      return 1;
  }
  return 0;
}

/* Mul by s > 0 (Div by t > 0) before the final softmax: its temperature 1 / s (t), as
 * cnn export writes [softmax] temperature= */
static cnn_status temper(ox_ctx *x, node_t *n, int xi, int ci, char op) {
  const ox_value *k = &x->v[ci];
  if (k->count != 1)
    return ox_error(x, CNN_UNSUPPORTED, "%s before the final Softmax by %zu values: cnn's softmax "
                    "temperature is one scalar", n->op_type, k->count);
  double f = op == '*' ? (double)k->f[0] : 1.0 / k->f[0], t = 1.0 / f;
  if (!(k->f[0] > 0) || !(t >= 1e-3 && t <= 1e3))
    return ox_error(x, CNN_UNSUPPORTED, "%s by %g before the final Softmax: a softmax temperature "
                    "must be in 0.001..1000", n->op_type, k->f[0]);
  int vo;
  CNN_TRY(alias_out(x, n, xi, &vo));
  x->v[vo].tscale = f;
  return CNN_OK;
}

static cnn_status op_arith(ox_ctx *x, node_t *n, char op) {
  KNOWN("");
  CNN_TRY(ox_need_inputs(x, n, 2, 2));
  int a = ox_in_idx(x, n, 0), b = ox_in_idx(x, n, 1);
  if (!x->v[a].is_const && !x->v[b].is_const && op == '+') { /* residual add */
    int ai, bi;
    CNN_TRY(act_in(x, n, 0, &ai));
    CNN_TRY(act_in(x, n, 1, &bi));
    const ox_value *A = &x->v[ai], *B = &x->v[bi];
    if (A->rank != B->rank || A->h != B->h || A->w != B->w || A->c != B->c || A->pc != B->pc ||
        A->ph != B->ph || A->pw != B->pw)
      return ox_error(x, CNN_UNSUPPORTED, "adds tensors of different shapes (broadcasting)");
    int si;
    CNN_TRY(ox_new_sec(x, OS_SHORTCUT, &si));
    x->s[si].in[0] = ai, x->s[si].in[1] = bi, x->s[si].n_in = 2;
    int vo;
    CNN_TRY(def_out(x, n, si, A->rank, A->dims, &vo));
    ox_value *v = &x->v[vo];
    v->h = A->h, v->w = A->w, v->c = A->c, v->pc = A->pc, v->ph = A->ph, v->pw = A->pw;
    x->s[si].h = A->h, x->s[si].w = A->w, x->s[si].c = A->c;
    return CNN_OK;
  }
  int cfirst = x->v[a].is_const;
  if (cfirst && (op == '-' || op == '/'))
    return ox_error(x, CNN_UNSUPPORTED, "a constant %s a tensor is not supported",
                    op == '-' ? "minus" : "divided by");
  int xi, ci;
  CNN_TRY(act_in(x, n, cfirst ? 1 : 0, &xi));
  CNN_TRY(const_in(x, n, cfirst ? 0 : 1, 1, &ci));
  if (x->v[xi].sec == -1 && x->in_uses == 1) return fold_norm(x, n, xi, ci, op);
  int si = op == '+' ? foldable(x, xi, 1u << OS_CONV | 1u << OS_FC) : -1;
  if (si >= 0 && !x->s[si].act) { /* a bias after Conv, Gemm or MatMul */
    ox_sec *s = &x->s[si];
    int c = s->filters;
    float *k = malloc((size_t)c * sizeof *k);
    if (!k) return cnn_error(CNN_ERR_NOMEM, "out of memory");
    cnn_status st = per_channel(x, ci, x->v[xi].rank, c, k);
    if (st == CNN_OK && !s->bn && !s->b && !(s->b = calloc((size_t)c, sizeof *s->b)))
      st = cnn_error(CNN_ERR_NOMEM, "out of memory");
    if (st == CNN_OK) {
      float *dst = s->bn ? s->bnp[1] : s->b; /* after a batch norm: its shift */
      for (int i = 0; i < c; i++) dst[i] += k[i];
      if (!s->bn) s->bias = 1;
      x->n_bias_fused++;
      folded_out(x, n, si, xi);
    }
    free(k);
    return st;
  }
  if ((op == '*' || op == '/') && feeds_final_softmax(x, n)) return temper(x, n, xi, ci, op);
  return ox_error(x, CNN_UNSUPPORTED, "%s with a constant is supported only on the graph input "
                  "(pixel normalization)%s", n->op_type,
                  op == '+' ? " or as the bias of a Conv, Gemm or MatMul"
                            : " or as the temperature of the final Softmax");
}

static cnn_status op_concat(ox_ctx *x, node_t *n) {
  KNOWN("axis");
  int64_t axis;
  if (!ox_attr(n, "axis")) return ox_error(x, CNN_ERR_PARSE, "axis is required");
  CNN_TRY(ox_get_int(x, n, "axis", 1, &axis));
  if (n->n_input < 1 || n->n_input > OX_MAX_IN)
    return ox_error(x, CNN_UNSUPPORTED, "%zu inputs; cnn concatenates 1 to %d", n->n_input, OX_MAX_IN);
  int vi[OX_MAX_IN];
  for (size_t k = 0; k < n->n_input; k++) CNN_TRY(act_in(x, n, k, &vi[k]));
  const ox_value *A = &x->v[vi[0]];
  if (axis < 0) axis += A->rank;
  if (axis != 1) return ox_error(x, CNN_UNSUPPORTED, "axis %lld: cnn concatenates channels (axis 1)", (long long)axis);
  int64_t c = 0;
  for (size_t k = 0; k < n->n_input; k++) {
    const ox_value *B = &x->v[vi[k]];
    if (B->rank != A->rank || B->h != A->h || B->w != A->w || B->pc)
      return ox_error(x, CNN_UNSUPPORTED, "input %zu's shape does not concatenate along channels", k);
    c += B->c;
  }
  int vo;
  if (n->n_input == 1) return alias_out(x, n, vi[0], &vo);
  int si;
  CNN_TRY(ox_new_sec(x, OS_ROUTE, &si));
  for (size_t k = 0; k < n->n_input; k++) x->s[si].in[k] = vi[k];
  x->s[si].n_in = (int)n->n_input;
  int64_t dims[4] = {0, c, A->rank == 4 ? A->dims[2] : 0, A->rank == 4 ? A->dims[3] : 0};
  return def_out(x, n, si, A->rank, dims, &vo);
}

static cnn_status op_softmax(ox_ctx *x, node_t *n, int log) {
  KNOWN("axis");
  CNN_TRY(ox_need_inputs(x, n, 1, 1));
  int xi;
  CNN_TRY(act_in(x, n, 0, &xi));
  int64_t axis;
  CNN_TRY(ox_get_int(x, n, "axis", x->opset < 13 ? 1 : -1, &axis));
  const ox_value *X = &x->v[xi];
  if (axis < 0) axis += X->rank;
  int ok = axis == 1 && (X->rank == 2 || (X->h == 1 && X->w == 1));
  if (!ok || X->pc)
    return ox_error(x, CNN_UNSUPPORTED, "softmax over axis %lld of a rank-%d tensor: cnn's "
                    "softmax is over the class scores of [N, K]", (long long)axis, X->rank);
  if (ox_find(x, n->output[0]) != x->output)
    return ox_error(x, CNN_UNSUPPORTED, "a softmax is supported only as the graph's last node");
  int si;
  CNN_TRY(ox_new_sec(x, OS_SOFTMAX, &si));
  x->s[si].in[0] = xi, x->s[si].n_in = 1;
  if (X->tscale) x->s[si].temperature = (float)(1.0 / X->tscale);
  x->out->output = log ? "log-probabilities" : "probabilities";
  int vo;
  return def_out(x, n, si, X->rank, X->dims, &vo);
}

static cnn_status op_constant(ox_ctx *x, node_t *n) {
  KNOWN("value", "value_float", "value_floats", "value_int", "value_ints");
  if (n->n_attribute != 1) return ox_error(x, CNN_ERR_PARSE, "needs exactly one value attribute");
  const Onnx__AttributeProto *a = n->attribute[0];
  if (!strcmp(a->name, "value")) {
    if (!a->t) return ox_error(x, CNN_ERR_PARSE, "value is not a tensor");
    int vi;
    return ox_tensor_const(x, a->t, n->output[0], &vi);
  }
  /* value_float(s) / value_int(s) as a one-dimensional tensor */
  Onnx__TensorProto t = ONNX__TENSOR_PROTO__INIT;
  int64_t dim;
  t.has_data_type = 1;
  if (!strcmp(a->name, "value_float") || !strcmp(a->name, "value_floats")) {
    int one = a->name[11] == 0;
    t.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t.n_float_data = one ? 1 : a->n_floats;
    t.float_data = one ? (float *)&a->f : a->floats;
    dim = (int64_t)t.n_float_data;
    t.n_dims = !one;
  } else {
    int one = a->name[9] == 0;
    t.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    t.n_int64_data = one ? 1 : a->n_ints;
    t.int64_data = one ? (int64_t *)&a->i : a->ints;
    dim = (int64_t)t.n_int64_data;
    t.n_dims = !one;
  }
  t.dims = &dim;
  int vi;
  return ox_tensor_const(x, &t, n->output[0], &vi);
}

static cnn_status op_passthrough(ox_ctx *x, node_t *n, int dropout) {
  if (dropout) {
    KNOWN("ratio", "seed");
    CNN_TRY(one_output(x, n));
    int ti = ox_in_idx(x, n, 2);
    if (ti >= 0) {
      int ci;
      CNN_TRY(const_in(x, n, 2, 0, &ci));
      if (x->v[ci].count != 1 || x->v[ci].i[0])
        return ox_error(x, CNN_UNSUPPORTED, "training_mode is true: export the model in eval mode");
    }
  } else {
    KNOWN("");
    CNN_TRY(ox_need_inputs(x, n, 1, 1));
  }
  int xi;
  CNN_TRY(act_in(x, n, 0, &xi));
  x->n_dropped++;
  int vo;
  return alias_out(x, n, xi, &vo);
}

cnn_status ox_convert_node(ox_ctx *x, const Onnx__NodeProto *n) {
  char dom[64];
  if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx"))
    return ox_error(x, CNN_UNSUPPORTED, "ops of domain '%s' are not supported",
                    ox_printable(n->domain, dom, sizeof dom));
  if (!n->op_type) return ox_error(x, CNN_ERR_PARSE, "no op type");
  if (n->n_output < 1 || !*n->output[0]) return ox_error(x, CNN_ERR_PARSE, "has no output");
  if (is_op(n, "Constant")) return op_constant(x, n);
  CNN_TRY(one_output(x, n));
  if (ox_is_shape_node(x, n)) return ox_shape_node(x, n);
  if (is_op(n, "Conv")) return op_conv(x, n);
  if (is_op(n, "BatchNormalization")) return op_bn(x, n);
  if (is_op(n, "Relu") || is_op(n, "LeakyRelu") || is_op(n, "Sigmoid") || is_op(n, "Tanh") ||
      is_op(n, "Clip") || (is_op(n, "Gelu") && x->opset >= 20))
    return op_act(x, n);
  if (is_op(n, "MaxPool")) return op_pool(x, n, 1);
  if (is_op(n, "AveragePool")) return op_pool(x, n, 0);
  if (is_op(n, "GlobalAveragePool") || is_op(n, "GlobalMaxPool")) {
    KNOWN("");
    CNN_TRY(ox_need_inputs(x, n, 1, 1));
    return op_global(x, n, is_op(n, "GlobalMaxPool"), 1);
  }
  if (is_op(n, "ReduceMean")) return op_reduce_mean(x, n);
  if (is_op(n, "Flatten")) return op_flatten(x, n);
  if (is_op(n, "Reshape")) return op_reshape(x, n);
  if (is_op(n, "Squeeze")) return op_squeeze(x, n, 0);
  if (is_op(n, "Unsqueeze")) return op_squeeze(x, n, 1);
  if (is_op(n, "Gemm")) return op_gemm(x, n, 0);
  if (is_op(n, "MatMul")) return op_gemm(x, n, 1);
  if (is_op(n, "Add")) return op_arith(x, n, '+');
  if (is_op(n, "Sub")) return op_arith(x, n, '-');
  if (is_op(n, "Mul")) return op_arith(x, n, '*');
  if (is_op(n, "Div")) return op_arith(x, n, '/');
  if (is_op(n, "Concat")) return op_concat(x, n);
  if (is_op(n, "Softmax")) return op_softmax(x, n, 0);
  if (is_op(n, "LogSoftmax")) return op_softmax(x, n, 1);
  if (is_op(n, "Dropout")) return op_passthrough(x, n, 1);
  if (is_op(n, "Identity")) return op_passthrough(x, n, 0);
  return ox_error(x, CNN_UNSUPPORTED, "unsupported op (cnn import reads Conv, "
                  "BatchNormalization, Relu, Clip (as relu or relu6), LeakyRelu, Sigmoid, Tanh, Gelu, "
                  "MaxPool, AveragePool, "
                  "GlobalAveragePool, GlobalMaxPool, ReduceMean, Gemm, MatMul, Flatten, Reshape, "
                  "Squeeze, Unsqueeze, Add, Sub, Mul, Div, Concat, Softmax, LogSoftmax, Dropout, "
                  "Identity and Constant, and Shape, Gather, Slice and Cast computing a "
                  "Reshape's target)");
}

cnn_status ox_finish(ox_ctx *x) {
  const ox_value *v = &x->v[x->output];
  char nm[96];
  ox_printable(v->name, nm, sizeof nm);
  if (!v->defined || v->is_const)
    return ox_error(x, CNN_UNSUPPORTED, "graph output '%s' is %s", nm,
                    v->is_const ? "a constant" : "not computed");
  if (v->sec < 0) return ox_error(x, CNN_UNSUPPORTED, "graph output '%s' is the input: the graph has no layers", nm);
  if (x->s[v->sec].kind != OS_SOFTMAX) {
    if (v->pc || (v->rank == 4 && (v->h != 1 || v->w != 1)))
      return ox_error(x, CNN_UNSUPPORTED, "graph output '%s' is a feature map (%d x %d x %d), "
                      "not class scores [N, K]", nm, v->c, v->h, v->w);
    int si;
    CNN_TRY(ox_new_sec(x, OS_SOFTMAX, &si));
    x->s[si].in[0] = x->output, x->s[si].n_in = 1;
    x->s[si].h = x->s[si].w = 1, x->s[si].c = v->c;
    x->out->output = "logits";
    ox_note(x, "the graph ends in logits: a [softmax] was added (cnn_xtool --logits or the "
               "softmax's input give them back)");
  } else if (!strcmp(x->out->output, "log-probabilities")) {
    ox_note(x, "LogSoftmax at the end became [softmax]: cnn reports probabilities");
  }
  if (v->c < 2) return ox_error(x, CNN_UNSUPPORTED, "graph output '%s' has %d class(es); cnn needs at least 2", nm, v->c);
  if (x->n_bn_fused) ox_note(x, "%d BatchNormalization folded into the conv/dense before it", x->n_bn_fused);
  if (x->n_act_fused) ox_note(x, "%d activations made the activation= of the layer before", x->n_act_fused);
  if (x->n_bias_fused) ox_note(x, "%d Add of a constant made a bias", x->n_bias_fused);
  if (x->n_dropped) ox_note(x, "%d Identity/Dropout removed", x->n_dropped);
  if (x->n_shape)
    ox_note(x, "%d Shape/Gather/Unsqueeze/Concat/... computing a Reshape's target "
               "evaluated at import (the batch size kept dynamic)", x->n_shape);
  if (x->n_reshaped) ox_note(x, "%d Flatten/Reshape/Squeeze/Unsqueeze needed no layer", x->n_reshaped);
  if (x->normalized) {
    cnn_onnx_model *m = x->out;
    m->has_norm = 1;
    for (int c = 0; c < m->channels; c++) {
      m->std[c] = (float)(1 / x->na[c]);
      m->mean[c] = (float)(-x->nb[c] / x->na[c]);
    }
    ox_note(x, "%d Sub/Div/Add/Mul of the pixels kept as the checkpoint's mean/std", x->n_norm);
  }
  return CNN_OK;
}
