#define _POSIX_C_SOURCE 200809L
#include "cli/meta.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "core/safetensors.h"

static void add_num(cJSON *o, const char *k, double v) {
  char buf[64];
  snprintf(buf, sizeof buf, "%.17g", v);
  cJSON_AddStringToObject(o, k, buf);
}

static char *floats_json(const float *v, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
  char *s = cJSON_PrintUnformatted(a);
  cJSON_Delete(a);
  return s;
}

static char *train_json(const cnn_train_config *t) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "optimizer", t->optimizer);
  cJSON_AddNumberToObject(o, "learning_rate", t->learning_rate);
  cJSON_AddNumberToObject(o, "momentum", t->momentum);
  cJSON_AddNumberToObject(o, "nesterov", t->nesterov);
  cJSON_AddNumberToObject(o, "weight_decay", t->weight_decay);
  cJSON_AddNumberToObject(o, "beta1", t->beta1);
  cJSON_AddNumberToObject(o, "beta2", t->beta2);
  cJSON_AddNumberToObject(o, "eps", t->eps);
  cJSON_AddNumberToObject(o, "schedule", t->schedule);
  cJSON_AddNumberToObject(o, "warmup_steps", t->warmup_steps);
  cJSON_AddNumberToObject(o, "step_size", t->step_size);
  cJSON_AddNumberToObject(o, "gamma", t->gamma);
  cJSON_AddNumberToObject(o, "final_lr_frac", t->final_lr_frac);
  cJSON_AddNumberToObject(o, "power", t->power);
  cJSON_AddNumberToObject(o, "total_steps", (double)t->total_steps);
  cJSON_AddNumberToObject(o, "label_smoothing", t->label_smoothing);
  cJSON_AddNumberToObject(o, "bn_momentum", t->bn_momentum);
  cJSON_AddNumberToObject(o, "bn_eps", t->bn_eps);
  cJSON_AddNumberToObject(o, "init", t->init);
  cJSON_AddNumberToObject(o, "seed", (double)t->seed);
  cJSON_AddNumberToObject(o, "epochs", t->epochs);
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return s;
}

char *cli_meta_json(const cli_meta *m) {
  cJSON *o = cJSON_CreateObject();
  if (m->data) cJSON_AddStringToObject(o, "data", m->data);
  add_num(o, "epoch", m->epoch);
  add_num(o, "total_steps", (double)m->total_steps);
  add_num(o, "acc", m->acc);
  add_num(o, "best_acc", m->best_acc);
  add_num(o, "best_epoch", m->best_epoch);
  add_num(o, "batch", m->batch);
  add_num(o, "crop", m->crop);
  add_num(o, "flip", m->flip);
  add_num(o, "cutout", m->cutout);
  add_num(o, "val_split", m->val_split);
  char rng[96];
  snprintf(rng, sizeof rng, "{\"seed\":%llu,\"epoch\":%d,\"step\":%lld}",
           (unsigned long long)m->seed, m->epoch, (long long)m->step);
  cJSON_AddStringToObject(o, "rng", rng);
  cJSON *names = cJSON_CreateArray();
  for (int i = 0; i < m->classes; i++)
    cJSON_AddItemToArray(names, cJSON_CreateString(m->class_names ? m->class_names[i] : ""));
  char *s = cJSON_PrintUnformatted(names);
  cJSON_Delete(names);
  cJSON_AddStringToObject(o, "classes", s);
  free(s);
  s = floats_json(m->mean, m->channels);
  cJSON_AddStringToObject(o, "mean", s);
  free(s);
  s = floats_json(m->std, m->channels);
  cJSON_AddStringToObject(o, "std", s);
  free(s);
  s = train_json(&m->tc);
  cJSON_AddStringToObject(o, "train", s);
  free(s);
  char *out = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return out;
}

static cnn_status bad(const char *path, const char *key) {
  return cnn_error(CNN_ERR_PARSE, "%s: metadata '%s' is missing or malformed: not a checkpoint "
                                  "written by cnn train?", path, key);
}

static double num(const cJSON *o, const char *k, double def) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static cnn_status parse_train(const char *path, const char *s, cnn_train_config *t) {
  cJSON *o = cJSON_Parse(s);
  if (!cJSON_IsObject(o)) {
    cJSON_Delete(o);
    return bad(path, "train");
  }
  t->optimizer = (cnn_optimizer_kind)(int)num(o, "optimizer", 0);
  t->learning_rate = (float)num(o, "learning_rate", 0.01);
  t->momentum = (float)num(o, "momentum", 0.9);
  t->nesterov = (int)num(o, "nesterov", 0);
  t->weight_decay = (float)num(o, "weight_decay", 0);
  t->beta1 = (float)num(o, "beta1", 0.9);
  t->beta2 = (float)num(o, "beta2", 0.999);
  t->eps = (float)num(o, "eps", 1e-8);
  t->schedule = (cnn_schedule_kind)(int)num(o, "schedule", 0);
  t->warmup_steps = (int)num(o, "warmup_steps", 0);
  t->step_size = (int)num(o, "step_size", 0);
  t->gamma = (float)num(o, "gamma", 0.1);
  t->final_lr_frac = (float)num(o, "final_lr_frac", 0);
  t->power = (float)num(o, "power", 4);
  t->total_steps = (int64_t)num(o, "total_steps", 0);
  t->label_smoothing = (float)num(o, "label_smoothing", 0);
  t->bn_momentum = (float)num(o, "bn_momentum", 0.1);
  t->bn_eps = (float)num(o, "bn_eps", 1e-5);
  t->init = (int)num(o, "init", 0);
  t->seed = (uint64_t)num(o, "seed", 1);
  t->epochs = (int)num(o, "epochs", 1);
  cJSON_Delete(o);
  return CNN_OK;
}

static int floats(const char *s, float *v, int max) {
  cJSON *a = cJSON_Parse(s);
  int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
  if (n > max) n = -1;
  for (int i = 0; i < n; i++) {
    cJSON *e = cJSON_GetArrayItem(a, i);
    if (!cJSON_IsNumber(e)) n = -1;
    else v[i] = (float)e->valuedouble;
  }
  cJSON_Delete(a);
  return n;
}

static cnn_status parse(const char *path, const cnn_st_file *f, cli_meta *m) {
  const char *cfg = cnn_st_meta(f, "cfg"), *v;
  if (!cfg) return bad(path, "cfg");
  m->cfg = strdup(cfg);
  if ((v = cnn_st_meta(f, "data"))) m->data = strdup(v);
  if ((v = cnn_st_meta(f, "step"))) m->step = strtoll(v, NULL, 10);
#define NUM(key, field, type) \
  if ((v = cnn_st_meta(f, key))) m->field = (type)strtod(v, NULL);
  NUM("epoch", epoch, int)
  NUM("total_steps", total_steps, int64_t)
  NUM("acc", acc, double)
  NUM("best_acc", best_acc, double)
  NUM("best_epoch", best_epoch, int)
  NUM("batch", batch, int)
  NUM("crop", crop, int)
  NUM("flip", flip, int)
  NUM("cutout", cutout, int)
  NUM("val_split", val_split, double)
#undef NUM
  v = cnn_st_meta(f, "classes");
  cJSON *names = v ? cJSON_Parse(v) : NULL;
  if (!cJSON_IsArray(names)) {
    cJSON_Delete(names);
    return bad(path, "classes");
  }
  m->classes = cJSON_GetArraySize(names);
  m->class_names = calloc((size_t)m->classes + 1, sizeof *m->class_names);
  for (int i = 0; i < m->classes; i++) {
    cJSON *e = cJSON_GetArrayItem(names, i);
    m->class_names[i] = strdup(cJSON_IsString(e) ? e->valuestring : "?");
  }
  cJSON_Delete(names);
  int nm = (v = cnn_st_meta(f, "mean")) ? floats(v, m->mean, 4) : -1;
  int ns = (v = cnn_st_meta(f, "std")) ? floats(v, m->std, 4) : -1;
  if (nm < 1 || nm != ns) return bad(path, "mean/std");
  m->channels = nm;
  if (!(v = cnn_st_meta(f, "train"))) return bad(path, "train");
  CNN_TRY(parse_train(path, v, &m->tc));
  m->seed = m->tc.seed;
  return CNN_OK;
}

cnn_status cli_meta_read(const char *path, cli_meta *m) {
  memset(m, 0, sizeof *m);
  cnn_st_file f;
  CNN_TRY(cnn_st_read(path, &f));
  cnn_status st = parse(path, &f, m);
  cnn_st_free(&f);
  if (st != CNN_OK) cli_meta_free(m);
  return st;
}

void cli_meta_free(cli_meta *m) {
  free(m->cfg);
  free(m->data);
  if (m->class_names)
    for (int i = 0; i < m->classes; i++) free(m->class_names[i]);
  free(m->class_names);
  memset(m, 0, sizeof *m);
}
