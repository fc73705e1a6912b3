/* ONNX import, last step: the sections as cfg text (in order, a [route] where a
 * section does not read the one before it) and their tensors under the names the
 * net built from that text gives them; then that net, every tensor set. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "exchange/onnx_int.h"

typedef struct text {
  char *p;
  size_t n, cap;
  int oom;
} text;

static void put(text *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void put(text *t, const char *fmt, ...) {
  if (t->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(t->p ? t->p + t->n : NULL, t->p ? t->cap - t->n : 0, fmt, ap);
    va_end(ap);
    if (k < 0) {
      t->oom = 1;
      return;
    }
    if (t->p && t->n + (size_t)k < t->cap) {
      t->n += (size_t)k;
      return;
    }
    size_t cap = (t->cap ? 2 * t->cap : 4096) + (size_t)k;
    char *np = realloc(t->p, cap);
    if (!np) {
      t->oom = 1;
      return;
    }
    t->p = np;
    t->cap = cap;
  }
}

/* hand a tensor to the model: `data` is copied, `add` added per element when given */
static cnn_status add_tensor(cnn_onnx_model *m, const char *layer, const char *what,
                             const float *data, size_t count, float add) {
  int k = m->n_tensors;
  char **names = realloc(m->names, (size_t)(k + 1) * sizeof *names);
  if (names) m->names = names;
  float **d = realloc(m->data, (size_t)(k + 1) * sizeof *d);
  if (d) m->data = d;
  size_t *c = realloc(m->counts, (size_t)(k + 1) * sizeof *c);
  if (c) m->counts = c;
  char nm[96];
  snprintf(nm, sizeof nm, "%s.%s", layer, what);
  if (!names || !d || !c || !(names[k] = strdup(nm))) return cnn_error(CNN_ERR_NOMEM, "out of memory");
  if (!(d[k] = malloc((count ? count : 1) * sizeof **d))) {
    free(names[k]);
    return cnn_error(CNN_ERR_NOMEM, "out of memory");
  }
  for (size_t i = 0; i < count; i++) d[k][i] = data[i] + add;
  c[k] = count;
  m->n_tensors = k + 1;
  return CNN_OK;
}

/* the shortest decimal that reads back as the same float (0.2, not 0.200000003) */
const char *cnn_onnx_float_str(float f, char *buf, size_t n) {
  for (int digits = 6; digits <= 9; digits++) {
    snprintf(buf, n, "%.*g", digits, f);
    if (strtof(buf, NULL) == f) break;
  }
  return buf;
}

static void put_act(text *t, const ox_sec *s) {
  char f[32];
  put(t, "activation=%s\n", s->act ? s->act : "linear");
  if (s->act && !strcmp(s->act, "leaky")) put(t, "slope=%s\n", cnn_onnx_float_str(s->slope, f, sizeof f));
}

static cnn_status bn_tensors(cnn_onnx_model *m, const char *layer, const ox_sec *s, float eps) {
  static const char *const what[4] = {"weight", "bias", "running_mean", "running_var"};
  for (int k = 0; k < 4; k++) /* a larger epsilon than the cfg's moves into the variance */
    CNN_TRY(add_tensor(m, layer, what[k], s->bnp[k], (size_t)s->c, k == 3 ? s->bn_eps - eps : 0));
  return CNN_OK;
}

cnn_status ox_emit(ox_ctx *x) {
  cnn_onnx_model *m = x->out;
  text t = {0};
  int *emitted = malloc((size_t)(x->ns ? x->ns : 1) * sizeof *emitted);
  if (!emitted) return cnn_error(CNN_ERR_NOMEM, "out of memory");
  float eps = 1, eps_max = 0, mom = -1;
  int mixed_mom = 0, any_bn = 0;
  for (int i = 0; i < x->ns; i++)
    if (x->s[i].bn || x->s[i].kind == OS_BN) {
      any_bn = 1;
      if (x->s[i].bn_eps < eps) eps = x->s[i].bn_eps;
      if (x->s[i].bn_eps > eps_max) eps_max = x->s[i].bn_eps;
      if (mom >= 0 && x->s[i].bn_mom != mom) mixed_mom = 1;
      if (mom < 0) mom = x->s[i].bn_mom;
    }
  /* the input as a layer: only the first section can read it directly */
  int need_copy = 0;
  for (int i = 0; i < x->ns; i++)
    for (int k = 0; k < x->s[i].n_in; k++)
      if (x->v[x->s[i].in[k]].sec == -1 && !(i == 0 && k == 0 && x->s[i].kind != OS_ROUTE))
        need_copy = 1;
  char file[96], s_eps[32], s_mom[32];
  put(&t, "# imported by cnn import from %s (ONNX opset %lld, %d nodes); the graph's output: %s\n",
      ox_printable(x->file, file, sizeof file), (long long)x->opset, m->nodes, m->output);
  const ox_value *in = &x->v[x->input];
  put(&t, "[net]\nheight=%d\nwidth=%d\nchannels=%d\nbatch=64\n", in->h, in->w, in->c);
  if (any_bn) {
    /* ONNX's momentum weighs the old statistics, cnn's (PyTorch's) the new ones */
    snprintf(s_mom, sizeof s_mom, "%.6g", 1.0 - mom);
    put(&t, "\n[train]\nbn_eps=%s\nbn_momentum=%s\n", cnn_onnx_float_str(eps, s_eps, sizeof s_eps), s_mom);
    if (mixed_mom) ox_note(x, "batch norms with different momenta: bn_momentum is the first one's");
    if (eps_max > eps)
      ox_note(x, "batch norm epsilons %s..%g: bn_eps is the smallest; a larger one's excess was "
                 "added to that layer's running variance", s_eps, eps_max);
  }
  int e = 0, last = -1, input_ref = -1, counters[3] = {0, 0, 0};
  if (need_copy) {
    put(&t, "\n# the input, for the layers that read it\n[activation]\nactivation=linear\n");
    input_ref = last = e++;
  }
  cnn_status st = CNN_OK;
  for (int i = 0; i < x->ns && st == CNN_OK; i++) {
    ox_sec *s = &x->s[i];
    int p[OX_MAX_IN];
    char f[32];
    for (int k = 0; k < s->n_in; k++) {
      int sec = x->v[s->in[k]].sec;
      p[k] = sec < 0 ? input_ref : emitted[sec];
    }
    if (s->kind == OS_SHORTCUT && p[1] == last && p[0] != last) {
      int tmp = p[0];
      p[0] = p[1], p[1] = tmp;
    }
    if (s->kind != OS_ROUTE && p[0] != last) {
      put(&t, "\n[route]\nlayers=%d\n", p[0]);
      last = e++;
    }
    char layer[32];
    switch (s->kind) {
    case OS_CONV:
      snprintf(layer, sizeof layer, "conv%d", ++counters[0]);
      put(&t, "\n[convolutional]\nfilters=%d\n", s->filters);
      if (s->kh == s->kw) put(&t, "size=%d\n", s->kh);
      else put(&t, "size_y=%d\nsize_x=%d\n", s->kh, s->kw);
      if (s->sh == s->sw) put(&t, "stride=%d\n", s->sh);
      else put(&t, "stride_y=%d\nstride_x=%d\n", s->sh, s->sw);
      if (s->same) put(&t, "padding=same\n");
      else if (s->ph == s->pw) put(&t, "padding=%d\n", s->ph);
      else put(&t, "pad=1\n"); /* size/2 on each axis (checked when read) */
      if (s->dil > 1) put(&t, "dilation=%d\n", s->dil);
      if (s->groups > 1) put(&t, "groups=%d\n", s->groups);
      put(&t, "batch_normalize=%d\nbias=%d\n", s->bn, s->bias);
      put_act(&t, s);
      st = add_tensor(m, layer, "weight", s->wt, s->wn, 0);
      if (st == CNN_OK && s->bias) st = add_tensor(m, layer, "bias", s->b, (size_t)s->filters, 0);
      break;
    case OS_FC:
      snprintf(layer, sizeof layer, "fc%d", ++counters[1]);
      put(&t, "\n[connected]\noutput=%d\nbatch_normalize=%d\nbias=%d\n", s->filters, s->bn, s->bias);
      put_act(&t, s);
      st = add_tensor(m, layer, "weight", s->wt, s->wn, 0);
      if (st == CNN_OK && s->bias) st = add_tensor(m, layer, "bias", s->b, (size_t)s->filters, 0);
      break;
    case OS_BN:
      snprintf(layer, sizeof layer, "bn%d", ++counters[2]);
      put(&t, "\n[batchnorm]\n");
      st = bn_tensors(m, layer, s, eps);
      break;
    case OS_MAXPOOL:
    case OS_AVGPOOL:
      put(&t, "\n[%s]\n", s->kind == OS_MAXPOOL ? "maxpool" : "avgpool");
      if (s->global) {
        if (s->kind == OS_MAXPOOL) put(&t, "global=1\n");
      } else {
        put(&t, "size=%d\n", s->kh);
        if (s->sh == s->sw) put(&t, "stride=%d\n", s->sh);
        else put(&t, "stride_y=%d\nstride_x=%d\n", s->sh, s->sw);
        put(&t, "padding=%d\n", s->pad_total);
      }
      break;
    case OS_SHORTCUT:
      put(&t, "\n[shortcut]\nfrom=%d\n", p[1]);
      put_act(&t, s);
      break;
    case OS_ROUTE:
      put(&t, "\n[route]\nlayers=");
      for (int k = 0; k < s->n_in; k++) put(&t, "%s%d", k ? "," : "", p[k]);
      put(&t, "\n");
      break;
    case OS_FLATTEN:
      put(&t, "\n[flatten]\n");
      break;
    case OS_ACT:
      put(&t, "\n[activation]\n");
      put_act(&t, s);
      break;
    case OS_SOFTMAX:
      put(&t, "\n[softmax]\n");
      if (s->temperature && s->temperature != 1.0f)
        put(&t, "temperature=%s\n", cnn_onnx_float_str(s->temperature, f, sizeof f));
      break;
    }
    if (st == CNN_OK && s->bn && s->kind != OS_BN) {
      char bn[40];
      snprintf(bn, sizeof bn, "%s.bn", layer);
      st = bn_tensors(m, bn, s, eps);
    }
    emitted[i] = last = e++;
  }
  free(emitted);
  if (st == CNN_OK && t.oom) st = cnn_error(CNN_ERR_NOMEM, "out of memory");
  if (st != CNN_OK) {
    free(t.p);
    return st;
  }
  m->cfg = t.p;
  m->sections = e;
  return CNN_OK;
}

cnn_status cnn_onnx_net(const cnn_onnx_model *m, cnn_net **out) {
  if (!m || !m->cfg || !out) return cnn_error(CNN_ERR_ARG, "cnn_onnx_net: no converted model");
  cnn_net *net;
  CNN_TRY(cnn_net_from_cfg_text(m->cfg, "model.cfg (from ONNX)", &net));
  int n = cnn_net_num_tensors(net), matched = 0;
  cnn_status st = CNN_OK;
  for (int i = 0; i < n && st == CNN_OK; i++) {
    cnn_param_desc d;
    st = cnn_net_tensor_desc(net, i, &d);
    int k = 0;
    while (st == CNN_OK && k < m->n_tensors && strcmp(m->names[k], d.name)) k++;
    if (st != CNN_OK) break;
    /* the conversion names every tensor the cfg implies; a miss is a bug here */
    if (k == m->n_tensors || m->counts[k] != d.count)
      st = cnn_error(CNN_ERR_SHAPE, "ONNX import: tensor %s (%zu values) %s", d.name, d.count,
                     k == m->n_tensors ? "was not converted" : "has another size in the conversion");
    else
      st = cnn_net_tensor_set(net, i, m->data[k]);
    matched++;
  }
  if (st == CNN_OK && matched != m->n_tensors)
    st = cnn_error(CNN_ERR_SHAPE, "ONNX import: %d tensors converted, the net has %d",
                   m->n_tensors, matched);
  if (st != CNN_OK) {
    cnn_net_destroy(net);
    return st;
  }
  *out = net;
  return CNN_OK;
}
