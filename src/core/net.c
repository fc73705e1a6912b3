/* Nets: creation from cfg text, layers and named tensors, info. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/net.h"

cnn_status cnn_net_parse_section(cnn_net *net, const cnn_cfg *cfg, cnn_cfg_section *s, int si,
                                 int *counters);
cnn_status cnn_net_parse_hyper(cnn_net *net, const cnn_cfg *cfg, cnn_cfg_section *s);
cnn_status cnn_net_parse_train(cnn_net *net, const cnn_cfg *cfg, cnn_cfg_section *s);

cnn_status cnn_op_missing(const cnn_backend *b, const char *op) {
  return cnn_error(CNN_UNSUPPORTED, "the %s backend does not implement %s", b->name, op);
}

cnn_status cnn_net_add_layer(cnn_net *net, const cnn_layer_kind *kind, const char *name,
                             int section, int line, int n_in, const int *in, int *idx) {
  if (net->n_layers == net->cap_layers) {
    int cap = net->cap_layers ? net->cap_layers * 2 : 32;
    cnn_layer *p = realloc(net->layers, (size_t)cap * sizeof *p);
    if (!p) return cnn_error(CNN_ERR_NOMEM, "out of memory adding a layer");
    net->layers = p;
    net->cap_layers = cap;
  }
  cnn_layer *l = &net->layers[net->n_layers];
  memset(l, 0, sizeof *l);
  l->kind = kind;
  snprintf(l->name, sizeof l->name, "%.63s", name);
  l->section = section;
  l->line = line;
  l->n_in = n_in;
  for (int i = 0; i < n_in; i++) l->in[i] = in[i];
  l->dil = l->groups = 1;
  *idx = net->n_layers++;
  return CNN_OK;
}

cnn_status cnn_net_add_tensor(cnn_net *net, cnn_layer *l, const char *suffix, int ndim,
                              const int64_t *shape, int trainable, int decay, cnn_init_kind init,
                              int fan_in, int fan_out) {
  if (l->n_param == CNN_MAX_PARAMS) return cnn_error(CNN_ERR_ARG, "too many parameters in a layer");
  if (net->n_tensors == net->cap_tensors) {
    int cap = net->cap_tensors ? net->cap_tensors * 2 : 64;
    cnn_tensor_entry *p = realloc(net->tensors, (size_t)cap * sizeof *p);
    if (!p) return cnn_error(CNN_ERR_NOMEM, "out of memory adding a tensor");
    net->tensors = p;
    net->cap_tensors = cap;
  }
  cnn_tensor_entry *t = &net->tensors[net->n_tensors];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s.%s", l->name, suffix);
  t->ndim = ndim;
  t->count = 1;
  for (int i = 0; i < ndim; i++) {
    t->shape[i] = shape[i];
    t->count *= (size_t)shape[i];
  }
  t->trainable = trainable;
  t->decay = decay;
  t->init = init;
  t->fan_in = fan_in;
  t->fan_out = fan_out;
  l->param[l->n_param++] = net->n_tensors++;
  return CNN_OK;
}

/* decayed trainable tensors first, then the rest, so the optimizer applies weight
 * decay to one contiguous range */
static cnn_status assign_offsets(cnn_net *net) {
  size_t p = 0, s = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < net->n_tensors; i++) {
      cnn_tensor_entry *t = &net->tensors[i];
      if (!t->trainable || t->decay != (pass == 0)) continue;
      t->offset = p;
      p += t->count;
      if (pass == 0) net->n_params_decay = p;
    }
  for (int i = 0; i < net->n_tensors; i++)
    if (!net->tensors[i].trainable) {
      net->tensors[i].offset = s;
      s += net->tensors[i].count;
    }
  net->n_params = p;
  net->n_state = s;
  if (p > ((size_t)1 << 34))
    return cnn_error(CNN_ERR_SHAPE, "%s: %zu parameters is more than this library accepts",
                     net->path, p);
  return CNN_OK;
}

static cnn_status infer_all(cnn_net *net, const cnn_cfg *cfg, cnn_cfg_section *const *secs) {
  for (int i = 0; i < net->n_layers; i++) {
    cnn_layer *l = &net->layers[i];
    for (int j = 0; j < l->n_in; j++)
      l->in_shape[j] = l->in[j] < 0 ? (cnn_shape){net->in_h, net->in_w, net->in_c}
                                    : net->layers[l->in[j]].out;
    cnn_status st = l->kind->infer(net, l);
    if (st == CNN_OK && (double)cnn_shape_count(l->out) > (double)CNN_MAX_ELEMS_PER_IMAGE)
      st = cnn_error(CNN_ERR_SHAPE, "output %dx%dx%d is too large", l->out.h, l->out.w, l->out.c);
    if (st != CNN_OK)
      return cnn_error_prefix(st, "%s:%d: [%s] (layer %d)", cfg->path, l->line,
                              secs[l->section]->name, l->section);
  }
  return CNN_OK;
}

static cnn_status parse_net(cnn_net *net, cnn_cfg *cfg) {
  if (cfg->n == 0 || (strcmp(cfg->sec[0].name, "net") && strcmp(cfg->sec[0].name, "network")))
    return cnn_error(CNN_ERR_PARSE, "%s:%d: the first section must be [net]", cfg->path,
                     cfg->n ? cfg->sec[0].line : 1);
  CNN_TRY(cnn_net_parse_hyper(net, cfg, &cfg->sec[0]));
  int n_layer_secs = 0;
  for (int i = 1; i < cfg->n; i++) {
    if (!strcmp(cfg->sec[i].name, "train"))
      CNN_TRY(cnn_net_parse_train(net, cfg, &cfg->sec[i]));
    else if (!strcmp(cfg->sec[i].name, "net") || !strcmp(cfg->sec[i].name, "network"))
      return cnn_cfg_section_error(cfg, &cfg->sec[i], CNN_ERR_PARSE, "a second [net] section");
    else
      n_layer_secs++;
  }
  if (!n_layer_secs) return cnn_error(CNN_ERR_PARSE, "%s: no layers after [net]", cfg->path);
  cnn_cfg_section **secs = calloc((size_t)n_layer_secs, sizeof *secs);
  net->section_out = calloc((size_t)n_layer_secs, sizeof *net->section_out);
  net->section_name = calloc((size_t)n_layer_secs, sizeof *net->section_name);
  if (!secs || !net->section_out || !net->section_name) {
    free(secs);
    return cnn_error(CNN_ERR_NOMEM, "out of memory");
  }
  int counters[16] = {0}, si = 0;
  cnn_status st = CNN_OK;
  for (int i = 1; i < cfg->n && st == CNN_OK; i++) {
    if (!strcmp(cfg->sec[i].name, "train")) continue;
    secs[si] = &cfg->sec[i];
    net->section_name[si] = strdup(cfg->sec[i].name);
    net->n_sections = si + 1;
    st = cnn_net_parse_section(net, cfg, &cfg->sec[i], si, counters);
    si++;
  }
  if (st == CNN_OK) st = infer_all(net, cfg, secs);
  for (int i = 0; i < net->n_layers; i++) net->layers[i].last_consumer = -1;
  for (int j = 0; j < net->n_layers; j++) /* the graph is fixed: liveness is computed once */
    for (int q = 0; q < net->layers[j].n_in; q++)
      if (net->layers[j].in[q] >= 0) net->layers[net->layers[j].in[q]].last_consumer = j;
  free(secs);
  if (st == CNN_OK) st = assign_offsets(net);
  return st;
}

cnn_status cnn_net_from_cfg_text(const char *text, const char *name, cnn_net **out) {
  return cnn_net_parse_cfg(text, name, 1, out);
}

cnn_status cnn_net_parse_cfg(const char *text, const char *name, int init, cnn_net **out) {
  if (!text || !out) return cnn_error(CNN_ERR_ARG, "cnn_net_from_cfg_text: NULL argument");
  *out = NULL;
  cnn_net *net = calloc(1, sizeof *net);
  if (!net) return cnn_error(CNN_ERR_NOMEM, "out of memory");
  net->path = strdup(name ? name : "<cfg>");
  net->graphs = 1;
  net->cfg_text = strdup(text);
  cnn_cfg cfg;
  cnn_status st = cnn_cfg_parse(text, net->path, &cfg);
  if (st != CNN_OK) {
    cnn_net_destroy(net);
    return st;
  }
  st = parse_net(net, &cfg);
  cnn_cfg_free(&cfg);
  if (st == CNN_OK && init) st = cnn_net_init_host(net, net->tc.seed);
  if (st != CNN_OK) {
    cnn_net_destroy(net);
    return st;
  }
  *out = net;
  return CNN_OK;
}

cnn_status cnn_net_from_cfg_file(const char *path, cnn_net **out) {
  if (!path || !out) return cnn_error(CNN_ERR_ARG, "cnn_net_from_cfg_file: NULL argument");
  FILE *f = fopen(path, "rb");
  if (!f) return cnn_error(CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap + 1);
  size_t got;
  while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
    len += got;
    if (len > (64u << 20)) {
      free(buf);
      fclose(f);
      return cnn_error(CNN_ERR_PARSE, "%s: larger than 64 MiB, not a cfg file", path);
    }
    if (len == cap) {
      char *p = realloc(buf, cap * 2 + 1);
      if (!p) break;
      buf = p;
      cap *= 2;
    }
  }
  int err = ferror(f);
  fclose(f);
  if (!buf) return cnn_error(CNN_ERR_NOMEM, "out of memory reading %s", path);
  if (err) {
    free(buf);
    return cnn_error(CNN_ERR_IO, "%s: read error", path);
  }
  buf[len] = 0;
  size_t nul = strlen(buf);
  if (nul != len) {
    free(buf);
    return cnn_error(CNN_ERR_PARSE, "%s: contains a NUL byte at offset %zu, not a cfg file", path,
                     nul);
  }
  cnn_status st = cnn_net_from_cfg_text(buf, path, out);
  free(buf);
  return st;
}

void cnn_net_destroy(cnn_net *net) {
  if (!net) return;
  cnn_net_release(net);
  for (int i = 0; i < net->n_sections; i++) free(net->section_name[i]);
  free(net->section_name);
  free(net->section_out);
  free(net->layers);
  free(net->tensors);
  free(net->host_params);
  free(net->host_state);
  free(net->path);
  free(net->cfg_text);
  free(net);
}

int cnn_net_classes(const cnn_net *net) {
  return (int)cnn_shape_count(net->layers[net->n_layers - 1].out);
}

cnn_status cnn_net_info_get(const cnn_net *net, cnn_net_info *info) {
  if (!net || !info) return cnn_error(CNN_ERR_ARG, "cnn_net_info_get: NULL argument");
  memset(info, 0, sizeof *info);
  info->batch = net->cfg_batch;
  info->height = net->in_h;
  info->width = net->in_w;
  info->channels = net->in_c;
  info->classes = cnn_net_classes(net);
  info->num_layers = net->n_layers;
  info->num_sections = net->n_sections;
  info->num_params = net->n_params;
  info->num_state = net->n_state;
  for (int i = 0; i < net->n_layers; i++) info->flops_per_image += net->layers[i].flops;
  return CNN_OK;
}

const char *cnn_net_cfg_text(const cnn_net *net) { return net ? net->cfg_text : NULL; }

cnn_status cnn_net_train_config(cnn_net *net, cnn_train_config *cfg) {
  if (!net || !cfg) return cnn_error(CNN_ERR_ARG, "cnn_net_train_config: NULL argument");
  *cfg = net->tc;
  return CNN_OK;
}

cnn_status cnn_net_set_train_config(cnn_net *net, const cnn_train_config *cfg) {
  if (!net || !cfg) return cnn_error(CNN_ERR_ARG, "cnn_net_set_train_config: NULL argument");
  if (!(cfg->learning_rate >= 0) || !(cfg->momentum >= 0 && cfg->momentum < 1) ||
      !(cfg->weight_decay >= 0) || !(cfg->label_smoothing >= 0 && cfg->label_smoothing < 1) ||
      !(cfg->beta1 >= 0 && cfg->beta1 < 1) || !(cfg->beta2 >= 0 && cfg->beta2 < 1) ||
      !(cfg->eps > 0) || !(cfg->bn_eps > 0) || !(cfg->bn_momentum >= 0 && cfg->bn_momentum <= 1))
    return cnn_error(CNN_ERR_ARG, "training configuration out of range (learning rate >= 0, "
                                  "momentum/betas in [0,1), label smoothing in [0,1), eps > 0)");
  if (net->built && net->mode == CNN_MODE_TRAIN &&
      net->opt_slots != (cfg->optimizer == CNN_OPT_SGD ? 1 : 2))
    return cnn_error(CNN_ERR_ARG, "changing between SGD and Adam needs cnn_net_build again");
  net->tc = *cfg;
  cnn_net_drop_programs(net); /* hyper-parameters are compiled into the programs */
  return CNN_OK;
}
