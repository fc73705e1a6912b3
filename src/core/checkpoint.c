/* Saving and loading a net's tensors as safetensors: every parameter and
 * running statistic under its name, optimizer state as "optimizer.<slot>.<name>"
 * when the net is built for training, and metadata (the cfg text, the step, and
 * whatever string pairs the caller adds). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/net.h"
#include "core/safetensors.h"

typedef struct saver {
  cnn_st_item *items;
  int n;
  float **bufs;
  int n_bufs;
  int64_t (*shapes)[4];
  char (*names)[128];
} saver;

static void saver_free(saver *s) {
  for (int i = 0; i < s->n_bufs; i++) free(s->bufs[i]);
  free(s->bufs);
  free(s->items);
  free(s->shapes);
  free(s->names);
}

static cnn_status collect_items(const cnn_net *net, saver *s) {
  int slots = cnn_net_opt_slots(net), nt = net->n_tensors, cap = nt * (1 + slots);
  s->items = calloc((size_t)cap + 1, sizeof *s->items);
  s->bufs = calloc((size_t)cap + 1, sizeof *s->bufs);
  s->shapes = calloc((size_t)cap + 1, sizeof *s->shapes);
  s->names = calloc((size_t)cap + 1, sizeof *s->names);
  if (!s->items || !s->bufs || !s->shapes || !s->names) return cnn_error(CNN_ERR_NOMEM, "out of memory");
  float *opt[2] = {NULL, NULL};
  for (int k = 0; k < slots; k++) {
    opt[k] = malloc((net->n_params ? net->n_params : 1) * sizeof(float));
    if (!opt[k]) return cnn_error(CNN_ERR_NOMEM, "out of memory");
    s->bufs[s->n_bufs++] = opt[k];
    CNN_TRY(cnn_net_opt_state_get(net, k, opt[k], net->n_params));
  }
  for (int k = -1; k < slots; k++) {
    size_t at = 0;
    for (int i = 0; i < nt; i++) {
      const cnn_tensor_entry *t = &net->tensors[i];
      if (k >= 0 && !t->trainable) continue;
      float *data;
      if (k < 0) {
        data = malloc(t->count * sizeof(float));
        if (!data) return cnn_error(CNN_ERR_NOMEM, "out of memory");
        s->bufs[s->n_bufs++] = data;
        CNN_TRY(cnn_net_tensor_get(net, i, data));
        snprintf(s->names[s->n], sizeof s->names[0], "%s", t->name);
      } else {
        data = opt[k] + at;
        at += t->count;
        snprintf(s->names[s->n], sizeof s->names[0], "optimizer.%d.%s", k, t->name);
      }
      for (int d = 0; d < t->ndim; d++) s->shapes[s->n][d] = t->shape[d];
      s->items[s->n] = (cnn_st_item){s->names[s->n], "F32", t->ndim, s->shapes[s->n], data,
                                     t->count * sizeof(float)};
      s->n++;
    }
  }
  return CNN_OK;
}

cnn_status cnn_net_save(const cnn_net *net, const char *path, const char *metadata_json) {
  if (!net || !path) return cnn_error(CNN_ERR_ARG, "cnn_net_save: NULL argument");
  int64_t at_step = net->step;
  if (net->built) { /* the device's counter: steps may still be in flight, some refused */
    cnn_step_state s;
    cnn_status ds = CNN_OP(net, download, &s, net->st[0], sizeof s);
    if (ds != CNN_OK) return ds;
    at_step = s.step;
  }
  cJSON *meta = NULL;
  if (metadata_json && *metadata_json) {
    meta = cJSON_Parse(metadata_json);
    if (!cJSON_IsObject(meta)) {
      cJSON_Delete(meta);
      return cnn_error(CNN_ERR_ARG, "cnn_net_save: metadata is not a JSON object of strings");
    }
  }
  int n_meta = meta ? cJSON_GetArraySize(meta) : 0;
  const char **keys = calloc((size_t)n_meta + 3, sizeof *keys);
  const char **vals = calloc((size_t)n_meta + 3, sizeof *vals);
  char step[32];
  snprintf(step, sizeof step, "%lld", (long long)at_step);
  int k = 0;
  cnn_status st = keys && vals ? CNN_OK : cnn_error(CNN_ERR_NOMEM, "out of memory");
  if (st == CNN_OK) {
    keys[k] = "format", vals[k++] = "cnn-1";
    keys[k] = "cfg", vals[k++] = net->cfg_text;
    keys[k] = "step", vals[k++] = step;
    for (cJSON *it = meta ? meta->child : NULL; it && st == CNN_OK; it = it->next) {
      if (!cJSON_IsString(it))
        st = cnn_error(CNN_ERR_ARG, "cnn_net_save: metadata value '%s' is not a string", it->string);
      keys[k] = it->string, vals[k++] = it->valuestring;
    }
  }
  saver s = {0};
  if (st == CNN_OK) st = collect_items(net, &s);
  if (st == CNN_OK) st = cnn_st_write(path, s.items, s.n, keys, vals, k);
  saver_free(&s);
  free(keys);
  free(vals);
  cJSON_Delete(meta);
  return st;
}

static cnn_status check_tensor(const char *path, const cnn_st_tensor *st, const cnn_tensor_entry *t) {
  int ok = !strcmp(st->dtype, "F32") && st->ndim == t->ndim;
  for (int d = 0; ok && d < t->ndim; d++) ok = st->shape[d] == t->shape[d];
  if (ok) return CNN_OK;
  char have[96] = "", want[96] = "";
  int a = 0, b = 0;
  for (int d = 0; d < st->ndim && a < 80; d++) a += snprintf(have + a, sizeof have - a, "%s%lld", d ? "," : "", (long long)st->shape[d]);
  for (int d = 0; d < t->ndim && b < 80; d++) b += snprintf(want + b, sizeof want - b, "%s%lld", d ? "," : "", (long long)t->shape[d]);
  return cnn_error(CNN_ERR_SHAPE,
                   "%s: tensor '%s' is %s [%s], the model expects F32 [%s]: a checkpoint of "
                   "another model?", path, t->name, st->dtype, have, want);
}

cnn_status cnn_net_load(cnn_net *net, const char *path) {
  if (!net || !path) return cnn_error(CNN_ERR_ARG, "cnn_net_load: NULL argument");
  cnn_st_file f;
  CNN_TRY(cnn_st_read(path, &f));
  cnn_status st = CNN_OK;
  /* check everything before changing anything */
  for (int i = 0; i < net->n_tensors && st == CNN_OK; i++) {
    const cnn_st_tensor *t = cnn_st_find(&f, net->tensors[i].name);
    if (!t)
      st = cnn_error(CNN_ERR_SHAPE, "%s: has no tensor '%s': a checkpoint of another model?", path,
                     net->tensors[i].name);
    else
      st = check_tensor(path, t, &net->tensors[i]);
  }
  for (int i = 0; i < net->n_tensors && st == CNN_OK; i++) {
    const cnn_st_tensor *t = cnn_st_find(&f, net->tensors[i].name);
    st = cnn_net_tensor_set(net, i, (const float *)(f.data + t->begin));
  }
  int slots = cnn_net_opt_slots(net);
  for (int k = 0; k < slots && st == CNN_OK; k++) {
    float *buf = malloc((net->n_params ? net->n_params : 1) * sizeof(float));
    size_t at = 0;
    int complete = buf != NULL;
    for (int i = 0; i < net->n_tensors && complete; i++) {
      const cnn_tensor_entry *e = &net->tensors[i];
      if (!e->trainable) continue;
      char name[160];
      snprintf(name, sizeof name, "optimizer.%d.%s", k, e->name);
      const cnn_st_tensor *t = cnn_st_find(&f, name);
      if (!t || t->end - t->begin != e->count * sizeof(float) || strcmp(t->dtype, "F32")) {
        complete = 0;
        break;
      }
      memcpy(buf + at, f.data + t->begin, e->count * sizeof(float));
      at += e->count;
    }
    if (complete) st = cnn_net_opt_state_set(net, k, buf, net->n_params);
    free(buf);
  }
  const char *step = cnn_st_meta(&f, "step");
  if (st == CNN_OK && step) st = cnn_net_set_step_count(net, strtoll(step, NULL, 10), net->total_steps);
  cnn_st_free(&f);
  return st;
}
