/* A net as an ONNX graph (see onnx_export.h, docs/exchange.md). Our activations
 * are NHWC and the graph's NCHW: conv weights go KRSC -> OIHW, and a flattened
 * value remembers whether its elements are in ONNX's CHW order or ours (HWC), so
 * that a dense layer permutes its weight columns instead of the graph transposing
 * activations. Every mapping is exact up to float rounding, or refused. */
#include "exchange/onnx_export.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crop_reorg.h"
#include "core/net.h"
#include "exchange/onnx_emit.h"

/* one value of the graph */
typedef struct ox_val {
  const char *name;
  int rank;    /* 4: [N, c, h, w]; 2: [N, count] */
  cnn_shape s; /* rank 4: its shape; rank 2: (1, 1, count), or with chw the shape
                  whose CHW order the elements follow */
  int chw;     /* rank 2: elements in CHW order (ONNX's Flatten of NCHW), not ours */
} ox_val;

typedef struct ex {
  const cnn_net *net;
  const cnn_onnx_export_opts *o;
  ox_graph *g;
  ox_val input;
  ox_val *val;          /* [n_layers] each layer's output */
  int *readers;         /* [n_layers] how many layers read each output */
  int *folded;          /* [n_layers] 1: a batch norm folded into its conv */
  const cnn_layer *cur; /* the layer being exported: prefixes intermediate names */
  int serial;           /* makes intermediate names unique */
} ex;

static cnn_status refuse(const cnn_layer *l, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static cnn_status refuse(const cnn_layer *l, const char *fmt, ...) {
  char why[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  return cnn_error(CNN_UNSUPPORTED, "cannot export layer %s (%s, cfg line %d) to ONNX: %s",
                   l->name, l->kind->name, l->line, why);
}

/* a fresh name for an intermediate value or constant of the current layer */
static const char *tmp(ex *e, const char *what) {
  return ox_str(e->g, "%s/%s%d", e->cur ? e->cur->name : "input", what, ++e->serial);
}

static const char *node1(ex *e, const char *op, const char *out, const char *a) {
  const char *in[1] = {a};
  ox_node(e->g, op, out, 1, in);
  return out;
}

static const char *node2(ex *e, const char *op, const char *out, const char *a, const char *b) {
  const char *in[2] = {a, b};
  ox_node(e->g, op, out, 2, in);
  return out;
}

static const char *scalar(ex *e, float v) { return ox_init_f32(e->g, tmp(e, "c"), 0, NULL, &v); }

static const char *ints(ex *e, int n, const int64_t *v) { return ox_init_i64(e->g, tmp(e, "i"), n, v); }

/* a copy of tensor i of the net (free it) */
static float *tensor(const ex *e, int i) {
  const cnn_tensor_entry *t = &e->net->tensors[i];
  float *p = malloc((t->count ? t->count : 1) * sizeof *p);
  if (!p) {
    cnn_error(CNN_ERR_NOMEM, "out of memory reading %s", t->name);
    return NULL;
  }
  if (cnn_net_tensor_get(e->net, i, p) != CNN_OK) {
    free(p);
    return NULL;
  }
  return p;
}

/* a tensor of the net as an initializer, with its own shape or `dims` */
static const char *param(ex *e, int i, int ndim, const int64_t *dims) {
  const cnn_tensor_entry *t = &e->net->tensors[i];
  float *p = tensor(e, i);
  if (!p) return NULL;
  const char *name = ox_init_f32(e->g, ox_str(e->g, "%s", t->name), ndim ? ndim : t->ndim,
                                 ndim ? dims : t->shape, p);
  free(p);
  return name;
}

static ox_val in_val(const ex *e, const cnn_layer *l, int i) {
  return l->in[i] < 0 ? e->input : e->val[l->in[i]];
}

static int hw_and_c(cnn_shape s) { return s.h * s.w > 1 && s.c > 1; }

/* v as [N, count] in our (HWC) order */
static ox_val to_2d(ex *e, ox_val v) {
  if (v.rank == 2 && (!v.chw || !hw_and_c(v.s))) {
    v.chw = 0;
    v.s = (cnn_shape){1, 1, (int)cnn_shape_count(v.s)};
    return v;
  }
  const char *x = v.name;
  if (v.rank == 2) { /* back to NCHW first */
    int64_t shape[4] = {0, v.s.c, v.s.h, v.s.w};
    x = node2(e, "Reshape", tmp(e, "nchw"), x, ints(e, 4, shape));
  }
  if (hw_and_c(v.s)) {
    static const int64_t nhwc[4] = {0, 2, 3, 1};
    x = node1(e, "Transpose", tmp(e, "nhwc"), x);
    ox_attr_ints(e->g, ox_last_node_making(e->g, x), "perm", 4, nhwc);
  }
  x = node1(e, "Flatten", tmp(e, "flat"), x);
  return (ox_val){x, 2, {1, 1, (int)cnn_shape_count(v.s)}, 0};
}

/* v as [N, c, h, w]; a rank-2 value is a layer output of shape (1, 1, count) */
static ox_val to_4d(ex *e, ox_val v) {
  if (v.rank == 4) return v;
  v = to_2d(e, v);
  int64_t shape[4] = {0, v.s.c, 1, 1};
  return (ox_val){node2(e, "Reshape", tmp(e, "4d"), v.name, ints(e, 4, shape)), 4, v.s, 0};
}

/* ONNX's Flatten of an NCHW value: CHW order, which a dense layer absorbs */
static ox_val flatten(ex *e, ox_val v, const char *out) {
  if (v.rank == 2) return v;
  node1(e, "Flatten", out, v.name);
  if (hw_and_c(v.s)) return (ox_val){out, 2, v.s, 1};
  return (ox_val){out, 2, {1, 1, (int)cnn_shape_count(v.s)}, 0};
}

/* end padding that makes ONNX's floor((in + begin + end - eff) / stride) + 1 equal
 * our out: only what the last window reaches (Darknet's rest is never read) */
static int end_pad(int in, int out, int eff, int stride, int begin) {
  int need = (out - 1) * stride + eff - in - begin;
  return need > 0 ? need : 0;
}

static int onnx_out(int in, int begin, int end, int eff, int stride) {
  return (in + begin + end - eff) / stride + 1;
}

/* kernel_shape, strides and pads of a conv or pooling node; refuses a size mismatch */
static cnn_status window_attrs(ex *e, const cnn_layer *l, Onnx__NodeProto *n, int effh, int effw,
                               int64_t pads[4]) {
  cnn_shape in = l->in_shape[0];
  pads[0] = l->pad_h;
  pads[1] = l->pad_w;
  pads[2] = end_pad(in.h, l->out.h, effh, l->stride_h, l->pad_h);
  pads[3] = end_pad(in.w, l->out.w, effw, l->stride_w, l->pad_w);
  if (onnx_out(in.h, l->pad_h, (int)pads[2], effh, l->stride_h) != l->out.h ||
      onnx_out(in.w, l->pad_w, (int)pads[3], effw, l->stride_w) != l->out.w)
    return refuse(l, "no ONNX padding gives its output size %dx%d", l->out.h, l->out.w);
  int64_t k[2] = {l->kh, l->kw}, s[2] = {l->stride_h, l->stride_w};
  ox_attr_ints(e->g, n, "kernel_shape", 2, k);
  ox_attr_ints(e->g, n, "strides", 2, s);
  ox_attr_ints(e->g, n, "pads", 4, pads);
  return CNN_OK;
}

/* the batch norm to fold into conv li: its only reader, a batch norm */
static int fold_target(const ex *e, int li) {
  if (!e->o->fold_bn || e->readers[li] != 1) return -1;
  for (int j = li + 1; j < e->net->n_layers; j++) {
    const cnn_layer *b = &e->net->layers[j];
    if (b->kind == &cnn_kind_batchnorm && b->n_in == 1 && b->in[0] == li) return j;
  }
  return -1;
}

static cnn_status ex_conv(ex *e, int li) {
  const cnn_layer *l = &e->net->layers[li];
  ox_val x = to_4d(e, in_val(e, l, 0));
  int k = l->filters, r = l->kh, s = l->kw, cg = l->in_shape[0].c / l->groups;
  size_t per_k = (size_t)r * s * cg;
  int bn = fold_target(e, li);
  float *w = tensor(e, l->param[0]), *wt = malloc((size_t)k * per_k * sizeof *wt);
  float *b = calloc((size_t)k, sizeof *b), *bnp[4] = {0};
  cnn_status st = w && wt && b ? CNN_OK : cnn_error(CNN_ERR_NOMEM, "out of memory");
  if (st == CNN_OK && l->bias) {
    float *bias = tensor(e, l->param[1]);
    if (bias) memcpy(b, bias, (size_t)k * sizeof *b);
    else st = CNN_ERR_NOMEM;
    free(bias);
  }
  for (int j = 0; j < 4 && bn >= 0 && st == CNN_OK; j++)
    if (!(bnp[j] = tensor(e, e->net->layers[bn].param[j]))) st = CNN_ERR_NOMEM;
  if (st == CNN_OK && bn >= 0) { /* as the inference build folds (bn_fold), in double */
    for (int o = 0; o < k; o++) {
      double sc = bnp[0][o] / sqrt((double)bnp[3][o] + e->net->tc.bn_eps);
      for (size_t i = 0; i < per_k; i++) w[o * per_k + i] = (float)(w[o * per_k + i] * sc);
      b[o] = (float)(bnp[1][o] + ((double)b[o] - bnp[2][o]) * sc);
    }
    e->folded[bn] = 1;
  }
  if (st == CNN_OK) /* KRSC -> OIHW */
    for (int o = 0; o < k; o++)
      for (int y = 0; y < r; y++)
        for (int xx = 0; xx < s; xx++)
          for (int c = 0; c < cg; c++)
            wt[(((size_t)o * cg + c) * r + y) * s + xx] = w[(((size_t)o * r + y) * s + xx) * cg + c];
  const char *in[3] = {x.name, NULL, NULL};
  if (st == CNN_OK) {
    int64_t wdims[4] = {k, cg, r, s}, bdims[1] = {k};
    in[1] = ox_init_f32(e->g, ox_str(e->g, "%s.weight", l->name), 4, wdims, wt);
    if (l->bias || bn >= 0) in[2] = ox_init_f32(e->g, ox_str(e->g, "%s.bias", l->name), 1, bdims, b);
  }
  free(w), free(wt), free(b);
  for (int j = 0; j < 4; j++) free(bnp[j]);
  CNN_TRY(st);
  Onnx__NodeProto *n = ox_node(e->g, "Conv", l->name, in[2] ? 3 : 2, in);
  int64_t pads[4], dil[2] = {l->dil, l->dil};
  CNN_TRY(window_attrs(e, l, n, l->dil * (r - 1) + 1, l->dil * (s - 1) + 1, pads));
  ox_attr_ints(e->g, n, "dilations", 2, dil);
  ox_attr_int(e->g, n, "group", l->groups);
  e->val[li] = (ox_val){l->name, 4, l->out, 0};
  return CNN_OK;
}

static cnn_status ex_batchnorm(ex *e, int li) {
  const cnn_layer *l = &e->net->layers[li];
  ox_val x = in_val(e, l, 0);
  if (e->folded[li]) { /* the conv before it already applies it */
    e->val[li] = x;
    return CNN_OK;
  }
  if (x.rank == 2) x = to_2d(e, x); /* [N, C]: channels in our order */
  const char *in[5] = {x.name};
  for (int j = 0; j < 4; j++) in[j + 1] = param(e, l->param[j], 0, NULL);
  ox_attr_float(e->g, ox_node(e->g, "BatchNormalization", l->name, 5, in), "epsilon",
                e->net->tc.bn_eps);
  x.name = l->name;
  e->val[li] = x;
  return CNN_OK;
}

static cnn_status ex_act(ex *e, int li) {
  const cnn_layer *l = &e->net->layers[li];
  ox_val x = in_val(e, l, 0), y = x;
  y.name = l->name;
  switch (l->act) {
    case CNN_ACT_LINEAR: y = x; break;
    case CNN_ACT_RELU: node1(e, "Relu", l->name, x.name); break;
    case CNN_ACT_LEAKY:
      ox_attr_float(e->g, ox_last_node_making(e->g, node1(e, "LeakyRelu", l->name, x.name)),
                    "alpha", l->alpha);
      break;
    case CNN_ACT_SIGMOID: node1(e, "Sigmoid", l->name, x.name); break;
    case CNN_ACT_TANH: node1(e, "Tanh", l->name, x.name); break;
    case CNN_ACT_GELU:
      if (e->o->opset >= 20) { /* Gelu's default is the exact (erf) form, as ours */
        node1(e, "Gelu", l->name, x.name);
      } else { /* 0.5 x (1 + erf(x / sqrt 2)) */
        const char *t = node2(e, "Mul", tmp(e, "scaled"), x.name, scalar(e, 0.70710678118654752f /* 1 / sqrt 2 */));
        t = node1(e, "Erf", tmp(e, "erf"), t);
        t = node2(e, "Add", tmp(e, "erf1"), t, scalar(e, 1.0f));
        t = node2(e, "Mul", tmp(e, "xerf1"), x.name, t);
        node2(e, "Mul", l->name, t, scalar(e, 0.5f));
      }
      break;
    case CNN_ACT_RELU6: { /* Clip with min and max as inputs (opset >= 11) */
      const char *in[3] = {x.name, scalar(e, 0.0f), scalar(e, 6.0f)};
      ox_node(e->g, "Clip", l->name, 3, in);
      break;
    }
    case CNN_ACT_RAMP: { /* Darknet's ramp: relu(x) + 0.1 x */
      const char *r = node1(e, "Relu", tmp(e, "relu"), x.name);
      node2(e, "Add", l->name, r, node2(e, "Mul", tmp(e, "tenth"), x.name, scalar(e, 0.1f)));
      break;
    }
    default: return refuse(l, "activation %s has no ONNX form", cnn_act_name(l->act));
  }
  e->val[li] = y;
  return CNN_OK;
}

static cnn_status ex_pool(ex *e, int li) {
  const cnn_layer *l = &e->net->layers[li];
  int is_max = l->kind == &cnn_kind_maxpool;
  ox_val x = to_4d(e, in_val(e, l, 0));
  e->val[li] = (ox_val){l->name, 4, l->out, 0};
  if (l->global) {
    node1(e, is_max ? "GlobalMaxPool" : "GlobalAveragePool", l->name, x.name);
    return CNN_OK;
  }
  Onnx__NodeProto *n = ox_node(e->g, is_max ? "MaxPool" : "AveragePool", l->name, 1, &x.name);
  int64_t pads[4];
  CNN_TRY(window_attrs(e, l, n, l->kh, l->kw, pads));
  /* Darknet's clipped windows: ONNX's MaxPool never picks padding and AveragePool
   * without count_include_pad divides by the cells inside, but a window wholly in
   * padding (Darknet: 0) has no ONNX equivalent */
  if (pads[0] >= l->kh || pads[2] >= l->kh || pads[1] >= l->kw || pads[3] >= l->kw)
    return refuse(l, "with padding %d, a %dx%d window at the border lies entirely in the "
                  "padding (cnn gives 0 there; ONNX's %s has no such case)",
                  l->pad_total_h, l->kh, l->kw, is_max ? "MaxPool" : "AveragePool");
  if (!is_max) ox_attr_int(e->g, n, "count_include_pad", 0);
  return CNN_OK;
}

static cnn_status ex_flatten(ex *e, int li) {
  const cnn_layer *l = &e->net->layers[li];
  e->val[li] = flatten(e, in_val(e, l, 0), l->name);
  return CNN_OK;
}

static cnn_status ex_dense(ex *e, int li) {
  const cnn_layer *l = &e->net->layers[li];
  ox_val x = flatten(e, in_val(e, l, 0), tmp(e, "flat"));
  int o = l->outputs, in = (int)cnn_shape_count(l->in_shape[0]);
  float *w = tensor(e, l->param[0]);
  if (!w) return CNN_ERR_NOMEM;
  if (x.chw) { /* our columns are HWC, the input's CHW: move column (p, c) to (c, p) */
    int hw = x.s.h * x.s.w, c = x.s.c;
    float *wp = malloc((size_t)o * in * sizeof *wp);
    if (!wp) return free(w), cnn_error(CNN_ERR_NOMEM, "out of memory");
    for (int r = 0; r < o; r++)
      for (int p = 0; p < hw; p++)
        for (int ch = 0; ch < c; ch++)
          wp[(size_t)r * in + (size_t)ch * hw + p] = w[(size_t)r * in + (size_t)p * c + ch];
    free(w);
    w = wp;
  }
  int64_t wdims[2] = {o, in};
  const char *inputs[3] = {x.name, ox_init_f32(e->g, ox_str(e->g, "%s.weight", l->name), 2, wdims, w),
                           l->bias ? param(e, l->param[1], 0, NULL) : NULL};
  free(w);
  ox_attr_int(e->g, ox_node(e->g, "Gemm", l->name, l->bias ? 3 : 2, inputs), "transB", 1);
  e->val[li] = (ox_val){l->name, 2, l->out, 0};
  return CNN_OK;
}

/* f [N, c1, h1, w1] as [N, c2, h2, w2] holding what Darknet's shortcut adds where it
 * adds it and zeros elsewhere (the rule in backend.h): rows y < ny and columns
 * x < nx pair from[y*stride, x*stride] with out[y*sample, x*sample] over the common
 * channels. Slice picks, an interleaving Pad spreads, Slice/Pad fit the size. */
static ox_val shortcut_fit(ex *e, ox_val f, cnn_shape o) {
  cnn_shape i = f.s;
  int stride = i.w / o.w > 1 ? i.w / o.w : 1, sample = o.w / i.w > 1 ? o.w / i.w : 1;
  int minc = i.c < o.c ? i.c : o.c;
  int ny = i.h < o.h ? i.h : o.h, nx = i.w < o.w ? i.w : o.w;
  if (ny > (i.h + stride - 1) / stride) ny = (i.h + stride - 1) / stride;
  if (ny > (o.h + sample - 1) / sample) ny = (o.h + sample - 1) / sample;
  if (nx > (i.w + stride - 1) / stride) nx = (i.w + stride - 1) / stride;
  if (nx > (o.w + sample - 1) / sample) nx = (o.w + sample - 1) / sample;
  const char *x = f.name;
  int64_t ends[3] = {minc, (int64_t)(ny - 1) * stride + 1, (int64_t)(nx - 1) * stride + 1};
  if (ends[0] != i.c || ends[1] != i.h || ends[2] != i.w || stride > 1) {
    static const int64_t axes[3] = {1, 2, 3}, zero[3] = {0, 0, 0};
    int64_t steps[3] = {1, stride, stride};
    const char *in[5] = {x, ints(e, 3, zero), ints(e, 3, ends), ints(e, 3, axes), ints(e, 3, steps)};
    x = tmp(e, "picked");
    ox_node(e->g, "Slice", x, 5, in);
  }
  int hs = ny, ws = nx;
  if (sample > 1) { /* [.., ny, nx] -> [.., ny, 1, nx, 1] -> zero-padded to sample x sample */
    int64_t split[6] = {0, minc, ny, 1, nx, 1}, pads[12] = {0};
    pads[6 + 3] = pads[6 + 5] = sample - 1;
    int64_t merged[4] = {0, minc, (int64_t)ny * sample, (int64_t)nx * sample};
    x = node2(e, "Reshape", tmp(e, "split"), x, ints(e, 6, split));
    x = node2(e, "Pad", tmp(e, "spread"), x, ints(e, 12, pads));
    x = node2(e, "Reshape", tmp(e, "merged"), x, ints(e, 4, merged));
    hs = ny * sample;
    ws = nx * sample;
  }
  if (hs > o.h || ws > o.w) { /* only the spreading's zeros lie past the output */
    static const int64_t axes[2] = {2, 3}, zero[2] = {0, 0};
    hs = hs < o.h ? hs : o.h;
    ws = ws < o.w ? ws : o.w;
    int64_t ends2[2] = {hs, ws};
    const char *in[4] = {x, ints(e, 2, zero), ints(e, 2, ends2), ints(e, 2, axes)};
    x = tmp(e, "cropped");
    ox_node(e->g, "Slice", x, 4, in);
  }
  if (minc < o.c || hs < o.h || ws < o.w) {
    int64_t pads[8] = {0, 0, 0, 0, 0, o.c - minc, o.h - hs, o.w - ws};
    x = node2(e, "Pad", tmp(e, "padded"), x, ints(e, 8, pads));
  }
  return (ox_val){x, 4, o, 0};
}

static cnn_status ex_shortcut(ex *e, int li) {
  const cnn_layer *l = &e->net->layers[li];
  ox_val a = in_val(e, l, 0), f = in_val(e, l, 1);
  cnn_shape as = l->in_shape[0], fs = l->in_shape[1];
  if (a.rank == 2 && f.rank == 2 && as.c == fs.c) { /* both [N, C] */
    a = to_2d(e, a);
    f = to_2d(e, f);
  } else {
    a = to_4d(e, a);
    f = to_4d(e, f);
    if (as.h != fs.h || as.w != fs.w || as.c != fs.c) f = shortcut_fit(e, f, as);
  }
  node2(e, "Add", l->name, a.name, f.name);
  a.name = l->name;
  e->val[li] = a;
  return CNN_OK;
}

static cnn_status ex_route(ex *e, int li) {
  const cnn_layer *l = &e->net->layers[li];
  if (l->n_in == 1) {
    e->val[li] = in_val(e, l, 0);
    return CNN_OK;
  }
  int flat = 1;
  for (int i = 0; i < l->n_in; i++) flat &= in_val(e, l, i).rank == 2;
  const char *in[CNN_MAX_INPUTS];
  for (int i = 0; i < l->n_in; i++)
    in[i] = (flat ? to_2d(e, in_val(e, l, i)) : to_4d(e, in_val(e, l, i))).name;
  ox_attr_int(e->g, ox_node(e->g, "Concat", l->name, l->n_in, in), "axis", 1);
  e->val[li] = (ox_val){l->name, flat ? 2 : 4, l->out, 0};
  return CNN_OK;
}

/* softmax over all of an image's values, in our order; out names the result, final:
 * it is the graph's output */
static cnn_status ex_softmax(ex *e, int li, const char *out, int final) {
  const cnn_layer *l = &e->net->layers[li];
  ox_val x = to_2d(e, in_val(e, l, 0));
  const char *t = x.name;
  if (l->temperature != 1.0f) /* the logits times 1/T, as the softmax node computes */
    t = node2(e, "Mul", tmp(e, "tempered"), t, scalar(e, 1.0f / l->temperature));
  ox_attr_int(e->g, ox_last_node_making(e->g, node1(e, "Softmax", out, t)), "axis", 1);
  e->val[li] = (ox_val){out, 2, {1, 1, (int)cnn_shape_count(l->out)}, 0};
  if (!final && l->out.h * l->out.w > 1) { /* read by later layers as [h, w, c] again */
    int64_t nhwc[4] = {0, l->out.h, l->out.w, l->out.c};
    static const int64_t nchw[4] = {0, 3, 1, 2};
    const char *r = node2(e, "Reshape", tmp(e, "nhwc"), out, ints(e, 4, nhwc));
    const char *y = node1(e, "Transpose", tmp(e, "nchw"), r);
    ox_attr_ints(e->g, ox_last_node_making(e->g, y), "perm", 4, nchw);
    e->val[li] = (ox_val){y, 4, l->out, 0};
  }
  return CNN_OK;
}

/* Darknet's [crop] at inference: the centre window (rounded down), then x * 2 - 1
 * unless noadjust; training's random windows, flips and shifts have no place here */
static cnn_status ex_crop(ex *e, int li) {
  const cnn_layer *l = &e->net->layers[li];
  cnn_shape in = l->in_shape[0];
  ox_val x = to_4d(e, in_val(e, l, 0));
  int64_t oy = (in.h - l->out.h) / 2, ox = (in.w - l->out.w) / 2;
  int64_t starts[2] = {oy, ox}, ends[2] = {oy + l->out.h, ox + l->out.w}, axes[2] = {2, 3};
  const char *sin[4] = {x.name, ints(e, 2, starts), ints(e, 2, ends), ints(e, 2, axes)};
  const char *y = l->noadjust ? l->name : tmp(e, "window");
  ox_node(e->g, "Slice", y, 4, sin);
  if (!l->noadjust) {
    const char *t = node2(e, "Mul", tmp(e, "twice"), y, scalar(e, 2.0f));
    node2(e, "Add", l->name, t, scalar(e, -1.0f));
  }
  e->val[li] = (ox_val){l->name, 4, l->out, 0};
  return CNN_OK;
}

/* Darknet's [reorg]: a fixed permutation of each image's elements (extra: the
 * elements in CHW order, then zeros), as a Gather over the CHW-flattened input */
static cnn_status ex_reorg(ex *e, int li) {
  const cnn_layer *l = &e->net->layers[li];
  cnn_shape in = l->in_shape[0];
  ox_val x = flatten(e, to_4d(e, in_val(e, l, 0)), tmp(e, "chw"));
  int64_t count = (int64_t)cnn_shape_count(in);
  if (l->reorg_mode == CNN_REORG_EXTRA) { /* CHW order already; append `extra` zeros */
    int64_t pads[4] = {0, 0, 0, (int64_t)cnn_shape_count(l->out) - count};
    node2(e, "Pad", l->name, x.name, ints(e, 4, pads));
    e->val[li] = (ox_val){l->name, 2, {1, 1, l->out.c}, 0};
    return CNN_OK;
  }
  cnn_reorg_desc d = {.n = 1, .h = in.h, .w = in.w, .c = in.c, .oh = l->out.h, .ow = l->out.w,
                      .oc = l->out.c, .stride = l->stride_h, .mode = l->reorg_mode};
  if (count > (1 << 26)) return refuse(l, "%lld elements is too many for a Gather table", (long long)count);
  int64_t *idx = malloc((size_t)count * sizeof *idx); /* [oc * oh * ow] CHW input index */
  if (!idx) return cnn_error(CNN_ERR_NOMEM, "out of memory exporting %s", l->name);
  for (int64_t f = 0; f < count; f++) /* output CHW index -> input CHW index */
    idx[f] = cnn_chw_of_hwc(cnn_reorg_src(&d, cnn_hwc_of_chw(f, d.oh, d.ow, d.oc)), d.h, d.w, d.c);
  const char *t = node2(e, "Gather", tmp(e, "perm"), x.name, ox_init_i64(e->g, tmp(e, "i"), (int)count, idx));
  free(idx);
  ox_attr_int(e->g, ox_last_node_making(e->g, t), "axis", 1);
  int64_t shape[4] = {0, l->out.c, l->out.h, l->out.w};
  node2(e, "Reshape", l->name, t, ints(e, 4, shape));
  e->val[li] = (ox_val){l->name, 4, l->out, 0};
  return CNN_OK;
}

static cnn_status ex_layer(ex *e, int li) {
  const cnn_layer *l = &e->net->layers[li];
  const cnn_layer_kind *k = l->kind;
  if (k == &cnn_kind_conv) return ex_conv(e, li);
  if (k == &cnn_kind_batchnorm) return ex_batchnorm(e, li);
  if (k == &cnn_kind_act) return ex_act(e, li);
  if (k == &cnn_kind_maxpool || k == &cnn_kind_avgpool) return ex_pool(e, li);
  if (k == &cnn_kind_dense) return ex_dense(e, li);
  if (k == &cnn_kind_flatten) return ex_flatten(e, li);
  if (k == &cnn_kind_shortcut) return ex_shortcut(e, li);
  if (k == &cnn_kind_route) return ex_route(e, li);
  if (k == &cnn_kind_softmax) return ex_softmax(e, li, l->name, 0);
  if (k == &cnn_kind_crop) return ex_crop(e, li);
  if (k == &cnn_kind_reorg) return ex_reorg(e, li);
  if (k == &cnn_kind_dropout) { /* identity in inference */
    e->val[li] = in_val(e, l, 0);
    return CNN_OK;
  }
  return refuse(l, "the exporter does not know the layer kind '%s'", k->name);
}

/* graph input, normalised as cnn predict does: (x - mean) / std per channel */
static void ex_input(ex *e, const float *mean, const float *std) {
  const cnn_net *net = e->net;
  e->input = (ox_val){"input", 4, {net->in_h, net->in_w, net->in_c}, 0};
  int plain = 1;
  for (int c = 0; c < net->in_c; c++)
    plain &= (!mean || mean[c] == 0.0f) && (!std || std[c] == 1.0f);
  if (plain) return;
  float m[64], s[64];
  for (int c = 0; c < net->in_c; c++) {
    m[c] = mean ? mean[c] : 0.0f;
    s[c] = std ? std[c] : 1.0f;
  }
  int64_t dims[4] = {1, net->in_c, 1, 1};
  const char *x = node2(e, "Sub", "input/centred", "input", ox_init_f32(e->g, "input/mean", 4, dims, m));
  e->input.name = node2(e, "Div", "input/normalised", x, ox_init_f32(e->g, "input/std", 4, dims, s));
}

static int64_t ir_version_for(int opset) { return opset <= 18 ? 8 : opset <= 20 ? 9 : 10; }

static cnn_status export_graph(ex *e, const float *mean, const float *std, const char *path,
                               cnn_onnx_export_info *info) {
  const cnn_net *net = e->net;
  int L = net->n_layers;
  const cnn_layer *last = &net->layers[L - 1];
  int softmax = last->kind == &cnn_kind_softmax, probs = softmax && !e->o->logits;
  int out_layer = softmax && e->o->logits ? last->in[0] : L - 1; /* -1: the input itself */
  const char *out_name = probs ? "probs" : "logits";
  int *needed = calloc((size_t)L, sizeof *needed);
  if (!needed) return cnn_error(CNN_ERR_NOMEM, "out of memory");
  if (out_layer >= 0) needed[out_layer] = 1;
  for (int i = L - 1; i >= 0; i--) {
    const cnn_layer *l = &net->layers[i];
    for (int j = 0; j < l->n_in; j++) {
      if (l->in[j] >= 0) e->readers[l->in[j]]++;
      if (needed[i] && l->in[j] >= 0) needed[l->in[j]] = 1;
    }
  }
  if (net->in_c > 64) return free(needed), cnn_error(CNN_ERR_SHAPE, "%d input channels", net->in_c);
  ex_input(e, mean, std);
  cnn_status st = CNN_OK;
  for (int i = 0; i < L && st == CNN_OK; i++) {
    if (!needed[i]) continue; /* nothing the output depends on */
    e->cur = &net->layers[i];
    e->serial = 0;
    st = probs && i == L - 1 ? ex_softmax(e, i, out_name, 1) : ex_layer(e, i);
  }
  free(needed);
  CNN_TRY(st);
  if (!probs) { /* name the output: rename its producer when it is the last node */
    ox_val v = to_2d(e, out_layer >= 0 ? e->val[out_layer] : e->input);
    Onnx__NodeProto *n = ox_last_node_making(e->g, v.name);
    if (n) n->output[0] = n->name = (char *)out_name;
    else node1(e, "Identity", out_name, v.name);
  }
  ox_model_desc d = {e->o->opset, ir_version_for(e->o->opset), "input", net->in_c, net->in_h,
                     net->in_w, out_name, cnn_net_classes(net)};
  int nodes = 0, inits = 0;
  size_t bytes = 0;
  CNN_TRY(ox_write(e->g, &d, path, &nodes, &inits, &bytes));
  if (info) *info = (cnn_onnx_export_info){nodes, inits, bytes, out_name};
  return CNN_OK;
}

cnn_status cnn_onnx_export(const cnn_net *net, const float *mean, const float *std,
                           const cnn_onnx_export_opts *o, const char *path,
                           cnn_onnx_export_info *info) {
  if (!net || !path || !net->n_layers) return cnn_error(CNN_ERR_ARG, "cnn_onnx_export: no net or path");
  cnn_onnx_export_opts opts = o ? *o : (cnn_onnx_export_opts){0};
  if (!opts.opset) opts.opset = CNN_ONNX_OPSET_MIN;
  if (opts.opset < CNN_ONNX_OPSET_MIN || opts.opset > CNN_ONNX_OPSET_MAX)
    return cnn_error(CNN_ERR_ARG, "ONNX opset %d: the exporter writes opsets %d to %d", opts.opset,
                     CNN_ONNX_OPSET_MIN, CNN_ONNX_OPSET_MAX);
  int L = net->n_layers;
  ex e = {.net = net, .o = &opts, .g = ox_new(), .val = calloc((size_t)L, sizeof(ox_val)),
          .readers = calloc((size_t)L, sizeof(int)), .folded = calloc((size_t)L, sizeof(int))};
  cnn_status st = e.g && e.val && e.readers && e.folded
                      ? export_graph(&e, mean, std, path, info)
                      : cnn_error(CNN_ERR_NOMEM, "out of memory");
  ox_free(e.g);
  free(e.val), free(e.readers), free(e.folded);
  return st;
}
