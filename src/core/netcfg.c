/* From cfg sections to layers. A Darknet section may become several layers:
 * [convolutional] with batch_normalize=1 and activation=leaky is conv -> bn ->
 * act. `from=` / `layers=` count sections, as in Darknet, so section_out maps
 * each section to the layer holding its output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/net.h"

typedef struct builder {
  cnn_net *net;
  const cnn_cfg *cfg;
  int si;          /* current section index (0 = first after [net]) */
  int counters[16];
} builder;

enum { C_CONV, C_FC, C_BN, C_POOL, C_DROP, C_SHORT, C_ROUTE, C_FLAT, C_SOFT, C_ACT, C_CROP,
       C_REORG };
static const char *const counter_names[] = {"conv",  "fc",      "bn",      "pool",
                                            "dropout", "shortcut", "route", "flatten",
                                            "softmax", "act",     "crop",    "reorg"};

static void next_name(builder *b, int which, char *buf, size_t len) {
  snprintf(buf, len, "%s%d", counter_names[which], ++b->counters[which]);
}

/* the layer giving the previous section's output (-1: the net input) */
static int prev_out(const builder *b) { return b->si ? b->net->section_out[b->si - 1] : -1; }

/* resolve a Darknet layer reference (negative: relative, else absolute section) */
static cnn_status resolve_ref(builder *b, cnn_cfg_section *s, cnn_cfg_kv *kv, long ref, int *out) {
  long target = ref < 0 ? b->si + ref : ref;
  if (b->si == 0)
    return cnn_cfg_key_error(b->cfg, s, kv, CNN_ERR_SHAPE,
                             "refers to layer %ld, but no layer comes before this one", target);
  if (target < 0 || target >= b->si)
    return cnn_cfg_key_error(b->cfg, s, kv, CNN_ERR_SHAPE,
                             "refers to layer %ld, but only layers 0..%d come before this one",
                             target, b->si - 1);
  *out = b->net->section_out[target];
  return CNN_OK;
}

static cnn_status add(builder *b, cnn_cfg_section *s, const cnn_layer_kind *k, int which,
                      const char *name, int n_in, const int *in, int *idx) {
  char nm[96];
  if (name)
    snprintf(nm, sizeof nm, "%s", name);
  else
    next_name(b, which, nm, sizeof nm);
  return cnn_net_add_layer(b->net, k, nm, b->si, s->line, n_in, in, idx);
}

/* optional batch norm + activation after a conv or dense layer */
static cnn_status add_bn_act(builder *b, cnn_cfg_section *s, int idx, int bn, cnn_act act,
                             float alpha) {
  char base[40];
  snprintf(base, sizeof base, "%.39s", b->net->layers[idx].name);
  if (bn) {
    char nm[64];
    snprintf(nm, sizeof nm, "%s.bn", base);
    CNN_TRY(add(b, s, &cnn_kind_batchnorm, C_BN, nm, 1, &idx, &idx));
  }
  if (act != CNN_ACT_LINEAR) {
    char nm[64];
    snprintf(nm, sizeof nm, "%s.%s", base, cnn_act_name(act));
    CNN_TRY(add(b, s, &cnn_kind_act, C_ACT, nm, 1, &idx, &idx));
    b->net->layers[idx].act = act;
    b->net->layers[idx].alpha = alpha;
  }
  b->net->section_out[b->si] = idx;
  return CNN_OK;
}

static cnn_status get_act(builder *b, cnn_cfg_section *s, const char *def, cnn_act *a, float *alpha) {
  const char *v = cnn_cfg_str(s, "activation", def);
  if (cnn_act_parse(v, a, alpha) != CNN_OK)
    return cnn_cfg_key_error(b->cfg, s, cnn_cfg_find(s, "activation"), CNN_ERR_PARSE, "%s",
                             cnn_last_error());
  return cnn_cfg_float(b->cfg, s, "slope", *alpha, 0, 1, alpha); /* ours: leaky slope */
}

static cnn_status parse_conv(builder *b, cnn_cfg_section *s) {
  const cnn_cfg *c = b->cfg;
  int filters, size, size_y, size_x, stride, sy, sx, pad, dil, groups, bn, bias;
  CNN_TRY(cnn_cfg_int(c, s, "filters", 1, 1, 1 << 20, &filters));
  CNN_TRY(cnn_cfg_int(c, s, "size", 1, 1, 1 << 16, &size));
  CNN_TRY(cnn_cfg_int(c, s, "size_y", size, 1, 1 << 16, &size_y)); /* ours: 3x1 kernels */
  CNN_TRY(cnn_cfg_int(c, s, "size_x", size, 1, 1 << 16, &size_x));
  CNN_TRY(cnn_cfg_int(c, s, "stride", 1, 1, 1 << 16, &stride));
  CNN_TRY(cnn_cfg_int(c, s, "stride_y", stride, 1, 1 << 16, &sy));
  CNN_TRY(cnn_cfg_int(c, s, "stride_x", stride, 1, 1 << 16, &sx));
  CNN_TRY(cnn_cfg_int(c, s, "pad", 0, 0, 1, &pad));
  CNN_TRY(cnn_cfg_int(c, s, "dilation", 1, 1, 1 << 16, &dil));
  CNN_TRY(cnn_cfg_int(c, s, "groups", 1, 1, 1 << 20, &groups));
  CNN_TRY(cnn_cfg_int(c, s, "batch_normalize", 0, 0, 1, &bn));
  CNN_TRY(cnn_cfg_int(c, s, "bias", !bn, 0, 1, &bias)); /* ours: bias=0 drops the bias */
  int same = 0, ph = pad ? size_y / 2 : 0, pw = pad ? size_x / 2 : 0;
  cnn_cfg_kv *pkv = cnn_cfg_find(s, "padding");
  if (pkv) {
    if (!strcmp(pkv->value, "same")) {
      pkv->used = 1;
      same = 1;
    } else {
      int p;
      CNN_TRY(cnn_cfg_int(c, s, "padding", 0, 0, 1 << 16, &p));
      ph = pw = p;
    }
  }
  cnn_act act;
  float alpha;
  CNN_TRY(get_act(b, s, "logistic", &act, &alpha)); /* Darknet's default activation */
  static const char *const ignored[] = {"flipped", "dot", NULL};
  cnn_cfg_ignore(s, ignored);
  CNN_TRY(cnn_cfg_check_unused(c, s));
  int in = prev_out(b), idx;
  CNN_TRY(add(b, s, &cnn_kind_conv, C_CONV, NULL, 1, &in, &idx));
  cnn_layer *l = &b->net->layers[idx];
  l->filters = filters;
  l->kh = size_y;
  l->kw = size_x;
  l->stride_h = sy;
  l->stride_w = sx;
  l->pad_h = ph;
  l->pad_w = pw;
  l->same_pad = same;
  l->dil = dil;
  l->groups = groups;
  l->bias = bias;
  return add_bn_act(b, s, idx, bn, act, alpha);
}

static cnn_status parse_dense(builder *b, cnn_cfg_section *s) {
  int out, bn, bias;
  CNN_TRY(cnn_cfg_int(b->cfg, s, "output", 1, 1, 1 << 24, &out));
  CNN_TRY(cnn_cfg_int(b->cfg, s, "batch_normalize", 0, 0, 1, &bn));
  CNN_TRY(cnn_cfg_int(b->cfg, s, "bias", !bn, 0, 1, &bias));
  cnn_act act;
  float alpha;
  CNN_TRY(get_act(b, s, "logistic", &act, &alpha));
  CNN_TRY(cnn_cfg_check_unused(b->cfg, s));
  int in = prev_out(b), idx;
  CNN_TRY(add(b, s, &cnn_kind_dense, C_FC, NULL, 1, &in, &idx));
  b->net->layers[idx].outputs = out;
  b->net->layers[idx].bias = bias;
  return add_bn_act(b, s, idx, bn, act, alpha);
}

static cnn_status parse_pool(builder *b, cnn_cfg_section *s, int is_max) {
  const cnn_cfg *c = b->cfg;
  int size, stride, sy, sx, padding, global;
  int has_size = cnn_cfg_find(s, "size") != NULL;
  CNN_TRY(cnn_cfg_int(c, s, "size", 2, 1, 1 << 16, &size));
  CNN_TRY(cnn_cfg_int(c, s, "stride", size, 1, 1 << 16, &stride));
  CNN_TRY(cnn_cfg_int(c, s, "stride_y", stride, 1, 1 << 16, &sy));
  CNN_TRY(cnn_cfg_int(c, s, "stride_x", stride, 1, 1 << 16, &sx));
  CNN_TRY(cnn_cfg_int(c, s, "padding", is_max ? size - 1 : 0, 0, 1 << 16, &padding));
  /* Darknet's [avgpool] is global; ours: size= makes it local, global=1 on [maxpool] */
  CNN_TRY(cnn_cfg_int(c, s, "global", is_max ? 0 : !has_size, 0, 1, &global));
  CNN_TRY(cnn_cfg_check_unused(c, s));
  int in = prev_out(b), idx;
  CNN_TRY(add(b, s, is_max ? &cnn_kind_maxpool : &cnn_kind_avgpool, C_POOL, NULL, 1, &in, &idx));
  cnn_layer *l = &b->net->layers[idx];
  l->global = global;
  l->kh = l->kw = size;
  l->stride_h = sy;
  l->stride_w = sx;
  l->pad_total_h = l->pad_total_w = padding;
  b->net->section_out[b->si] = idx;
  return CNN_OK;
}

static cnn_status parse_simple(builder *b, cnn_cfg_section *s, const cnn_layer_kind *k, int which) {
  int in = prev_out(b), idx;
  float p = 0;
  if (k == &cnn_kind_dropout) CNN_TRY(cnn_cfg_float(b->cfg, s, "probability", 0.5, 0, 0.999, &p));
  cnn_act act = CNN_ACT_LINEAR;
  float alpha = 0, temperature = 1;
  if (k == &cnn_kind_act) CNN_TRY(get_act(b, s, "linear", &act, &alpha));
  if (k == &cnn_kind_softmax) {
    int groups;
    CNN_TRY(cnn_cfg_int(b->cfg, s, "groups", 1, 1, 1, &groups));
    CNN_TRY(cnn_cfg_float(b->cfg, s, "temperature", 1.0, 1e-3, 1e3, &temperature));
  }
  CNN_TRY(cnn_cfg_check_unused(b->cfg, s));
  CNN_TRY(add(b, s, k, which, NULL, 1, &in, &idx));
  b->net->layers[idx].prob = p;
  b->net->layers[idx].act = act;
  b->net->layers[idx].alpha = alpha;
  b->net->layers[idx].temperature = temperature;
  b->net->section_out[b->si] = idx;
  return CNN_OK;
}

static cnn_status parse_shortcut(builder *b, cnn_cfg_section *s) {
  cnn_cfg_kv *kv = cnn_cfg_find(s, "from");
  if (!kv) return cnn_cfg_section_error(b->cfg, s, CNN_ERR_PARSE, "missing key 'from'");
  int from_rel;
  CNN_TRY(cnn_cfg_int(b->cfg, s, "from", 0, -(1 << 20), 1 << 20, &from_rel));
  int in[2] = {prev_out(b), 0};
  CNN_TRY(resolve_ref(b, s, kv, from_rel, &in[1]));
  cnn_act act;
  float alpha;
  CNN_TRY(get_act(b, s, "linear", &act, &alpha));
  CNN_TRY(cnn_cfg_check_unused(b->cfg, s));
  if (b->si == 0)
    return cnn_cfg_section_error(b->cfg, s, CNN_ERR_SHAPE, "a shortcut cannot be the first layer");
  int idx;
  CNN_TRY(add(b, s, &cnn_kind_shortcut, C_SHORT, NULL, 2, in, &idx));
  b->net->layers[idx].from_section = from_rel < 0 ? b->si + from_rel : from_rel;
  return add_bn_act(b, s, idx, 0, act, alpha);
}

static cnn_status parse_route(builder *b, cnn_cfg_section *s) {
  cnn_cfg_kv *kv = cnn_cfg_find(s, "layers");
  if (!kv) return cnn_cfg_section_error(b->cfg, s, CNN_ERR_PARSE, "missing key 'layers'");
  kv->used = 1;
  int in[CNN_MAX_INPUTS], n = 0;
  const char *p = kv->value;
  while (*p) {
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p)
      return cnn_cfg_key_error(b->cfg, s, kv, CNN_ERR_PARSE, "expected a comma-separated list of layer indices");
    if (n == CNN_MAX_INPUTS)
      return cnn_cfg_key_error(b->cfg, s, kv, CNN_ERR_SHAPE, "at most %d layers", CNN_MAX_INPUTS);
    CNN_TRY(resolve_ref(b, s, kv, v, &in[n]));
    n++;
    while (*end == ' ' || *end == '\t') end++;
    if (*end == ',') end++;
    else if (*end)
      return cnn_cfg_key_error(b->cfg, s, kv, CNN_ERR_PARSE, "expected a comma-separated list of layer indices");
    p = end;
  }
  if (!n) return cnn_cfg_key_error(b->cfg, s, kv, CNN_ERR_PARSE, "empty list");
  CNN_TRY(cnn_cfg_check_unused(b->cfg, s));
  int idx;
  CNN_TRY(add(b, s, &cnn_kind_route, C_ROUTE, NULL, n, in, &idx));
  b->net->section_out[b->si] = idx;
  return CNN_OK;
}

/* Darknet's [crop] (src/layers/crop.c says what is applied); Darknet's defaults */
static cnn_status parse_crop(builder *b, cnn_cfg_section *s) {
  const cnn_cfg *c = b->cfg;
  int ch, cw, flip, noadjust;
  float angle, saturation, exposure, shift;
  CNN_TRY(cnn_cfg_int(c, s, "crop_height", 1, 1, 1 << 16, &ch));
  CNN_TRY(cnn_cfg_int(c, s, "crop_width", 1, 1, 1 << 16, &cw));
  CNN_TRY(cnn_cfg_int(c, s, "flip", 0, 0, 1, &flip));
  CNN_TRY(cnn_cfg_int(c, s, "noadjust", 0, 0, 1, &noadjust));
  CNN_TRY(cnn_cfg_float(c, s, "shift", 0, 0, 100, &shift));
  CNN_TRY(cnn_cfg_float(c, s, "angle", 0, -360, 360, &angle));
  CNN_TRY(cnn_cfg_float(c, s, "saturation", 1, 1e-3, 1e3, &saturation));
  CNN_TRY(cnn_cfg_float(c, s, "exposure", 1, 1e-3, 1e3, &exposure));
  CNN_TRY(cnn_cfg_check_unused(c, s));
  int in = prev_out(b), idx;
  CNN_TRY(add(b, s, &cnn_kind_crop, C_CROP, NULL, 1, &in, &idx));
  cnn_layer *l = &b->net->layers[idx];
  l->crop_h = ch;
  l->crop_w = cw;
  l->flip = flip;
  l->noadjust = noadjust;
  l->shift = shift;
  l->angle = angle;
  l->saturation = saturation;
  l->exposure = exposure;
  b->net->section_out[b->si] = idx;
  return CNN_OK;
}

/* Darknet's [reorg] (src/layers/reorg.c) */
static cnn_status parse_reorg(builder *b, cnn_cfg_section *s) {
  const cnn_cfg *c = b->cfg;
  int stride, reverse, flatten, extra;
  CNN_TRY(cnn_cfg_int(c, s, "stride", 1, 1, 1 << 12, &stride));
  CNN_TRY(cnn_cfg_int(c, s, "reverse", 0, 0, 1, &reverse));
  CNN_TRY(cnn_cfg_int(c, s, "flatten", 0, 0, 1, &flatten));
  CNN_TRY(cnn_cfg_int(c, s, "extra", 0, 0, 1 << 24, &extra));
  if (extra && (reverse || flatten)) /* Darknet's forward and backward disagree there */
    return cnn_cfg_key_error(c, s, cnn_cfg_find(s, "extra"), CNN_ERR_PARSE,
                             "extra cannot be combined with %s", reverse ? "reverse" : "flatten");
  CNN_TRY(cnn_cfg_check_unused(c, s));
  int in = prev_out(b), idx;
  CNN_TRY(add(b, s, &cnn_kind_reorg, C_REORG, NULL, 1, &in, &idx));
  cnn_layer *l = &b->net->layers[idx];
  l->stride_h = l->stride_w = stride;
  l->extra = extra;
  l->reorg_mode = flatten ? (reverse ? CNN_REORG_FLATTEN_REVERSE : CNN_REORG_FLATTEN)
                  : extra ? CNN_REORG_EXTRA
                  : reverse ? CNN_REORG_REVERSE : CNN_REORG_PLAIN;
  b->net->section_out[b->si] = idx;
  return CNN_OK;
}

/* [cost] follows [softmax] in Darknet's classifiers; the loss already lives in
 * the softmax layer, so the section only passes its input on */
static cnn_status parse_cost(builder *b, cnn_cfg_section *s) {
  static const char *const ignored[] = {"type", "scale", NULL};
  cnn_cfg_ignore(s, ignored);
  CNN_TRY(cnn_cfg_check_unused(b->cfg, s));
  if (b->si == 0) return cnn_cfg_section_error(b->cfg, s, CNN_ERR_SHAPE, "[cost] needs a layer before it");
  b->net->section_out[b->si] = prev_out(b);
  return CNN_OK;
}

cnn_status cnn_net_parse_section(cnn_net *net, const cnn_cfg *cfg, cnn_cfg_section *s, int si,
                                 int *counters) {
  builder b = {net, cfg, si, {0}};
  memcpy(b.counters, counters, sizeof b.counters);
  const char *n = s->name;
  cnn_status st;
  if (!strcmp(n, "convolutional") || !strcmp(n, "conv"))
    st = parse_conv(&b, s);
  else if (!strcmp(n, "connected") || !strcmp(n, "dense"))
    st = parse_dense(&b, s);
  else if (!strcmp(n, "maxpool"))
    st = parse_pool(&b, s, 1);
  else if (!strcmp(n, "avgpool"))
    st = parse_pool(&b, s, 0);
  else if (!strcmp(n, "dropout"))
    st = parse_simple(&b, s, &cnn_kind_dropout, C_DROP);
  else if (!strcmp(n, "batchnorm"))
    st = parse_simple(&b, s, &cnn_kind_batchnorm, C_BN);
  else if (!strcmp(n, "activation"))
    st = parse_simple(&b, s, &cnn_kind_act, C_ACT);
  else if (!strcmp(n, "flatten"))
    st = parse_simple(&b, s, &cnn_kind_flatten, C_FLAT);
  else if (!strcmp(n, "softmax"))
    st = parse_simple(&b, s, &cnn_kind_softmax, C_SOFT);
  else if (!strcmp(n, "shortcut"))
    st = parse_shortcut(&b, s);
  else if (!strcmp(n, "route"))
    st = parse_route(&b, s);
  else if (!strcmp(n, "cost"))
    st = parse_cost(&b, s);
  else if (!strcmp(n, "crop"))
    st = parse_crop(&b, s);
  else if (!strcmp(n, "reorg"))
    st = parse_reorg(&b, s);
  else
    st = cnn_cfg_section_error(cfg, s, CNN_ERR_PARSE,
                               "unknown section (expected convolutional, connected, maxpool, "
                               "avgpool, dropout, batchnorm, activation, flatten, shortcut, route, "
                               "crop, reorg, softmax or cost)");
  memcpy(counters, b.counters, sizeof b.counters);
  return st;
}
