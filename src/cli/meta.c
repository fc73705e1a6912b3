#define _POSIX_C_SOURCE 200809L
#include "cli/meta.h"

#include <math.h>
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
  if (m->freeze) add_num(o, "freeze", m->freeze);
  if (m->init) cJSON_AddStringToObject(o, "init", m->init);
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

/* Reading trusts nothing: every field is checked against what cnn train can
 * write (the ranges of the cfg keys and flags that set it), and an error names
 * the checkpoint file and the field. Fields absent from older files take the
 * defaults of a cfg without them. */

#define META_MAX_INT 9007199254740992.0 /* 2^53: exact in the JSON / %.17g text */

static cnn_status bad(const char *path, const char *key) {
  return cnn_error(CNN_ERR_PARSE, "%s: metadata '%s' is missing or malformed: not a checkpoint "
                                  "written by cnn train?", path, key);
}

static cnn_status out_of_range(const char *path, const char *key, const char *val, int integer,
                               double lo, double hi, const char *names) {
  return cnn_error(CNN_ERR_PARSE,
                   "%s: metadata '%s' is %.40s, expected %s in [%.16g, %.16g]%s%s%s: a damaged "
                   "checkpoint?", path, key, val, integer ? "a whole number" : "a number", lo, hi,
                   names ? " (" : "", names ? names : "", names ? ")" : "");
}

/* a range check of x: `flt` compares as float (the field is a float, written
 * from one, so a bound like 1e-12 must not reject float(1e-12)) */
static int in_range(double x, int integer, int flt, double lo, double hi) {
  if (!isfinite(x) || (integer && x != floor(x))) return 0;
  if (flt) return (float)x >= (float)lo && (float)x <= (float)hi && isfinite((float)x);
  return x >= lo && x <= hi;
}

/* a top-level number (the metadata holds strings): absent leaves *out */
static cnn_status top_num(const char *path, const cnn_st_file *f, const char *key, int integer,
                          double lo, double hi, double *out) {
  const char *v = cnn_st_meta(f, key);
  if (!v) return CNN_OK;
  char *end = NULL;
  double x = strtod(v, &end);
  if (end == v || *end || !in_range(x, integer, 0, lo, hi)) {
    char q[64];
    snprintf(q, sizeof q, "'%.40s'", v);
    return out_of_range(path, key, q, integer, lo, hi, NULL);
  }
  *out = x;
  return CNN_OK;
}

typedef struct train_reader {
  const char *path;
  const cJSON *o;
  cnn_status st;
} train_reader;

/* train.<key>: absent gives def; anything but a number in range is an error */
static double tnum(train_reader *r, const char *k, double def, int integer, int flt, double lo,
                   double hi, const char *names) {
  if (r->st != CNN_OK) return def;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->o, k);
  if (!v) return def;
  char key[64], val[64];
  snprintf(key, sizeof key, "train.%s", k);
  if (cJSON_IsNumber(v) && in_range(v->valuedouble, integer, flt, lo, hi)) return v->valuedouble;
  if (cJSON_IsNumber(v)) snprintf(val, sizeof val, "%.16g", v->valuedouble);
  else snprintf(val, sizeof val, "not a number");
  r->st = out_of_range(r->path, key, val, integer, lo, hi, names);
  return def;
}

static cnn_status parse_train(const char *path, const char *s, cnn_train_config *t) {
  cJSON *o = cJSON_Parse(s);
  if (!cJSON_IsObject(o)) {
    cJSON_Delete(o);
    return bad(path, "train");
  }
  train_reader r = {path, o, CNN_OK};
  /* the ranges of the [train] / [net] keys and of cnn train's flags */
  t->optimizer = (cnn_optimizer_kind)(int)tnum(&r, "optimizer", 0, 1, 0, 0, 2, "0 sgd, 1 adam, 2 adamw");
  t->learning_rate = (float)tnum(&r, "learning_rate", 0.01, 0, 1, 0, 1e3, NULL);
  t->momentum = (float)tnum(&r, "momentum", 0.9, 0, 1, 0, 0.9999, NULL);
  t->nesterov = (int)tnum(&r, "nesterov", 0, 1, 0, 0, 1, NULL);
  t->weight_decay = (float)tnum(&r, "weight_decay", 0, 0, 1, 0, 1, NULL);
  t->beta1 = (float)tnum(&r, "beta1", 0.9, 0, 1, 0, 0.9999, NULL);
  t->beta2 = (float)tnum(&r, "beta2", 0.999, 0, 1, 0, 0.99999, NULL);
  t->eps = (float)tnum(&r, "eps", 1e-8, 0, 1, 1e-12, 1, NULL);
  t->schedule = (cnn_schedule_kind)(int)tnum(&r, "schedule", 0, 1, 0, 0, 4,
                                             "0 constant, 1 step, 2 cosine, 3 onecycle, 4 poly");
  t->warmup_steps = (int)tnum(&r, "warmup_steps", 0, 1, 0, 0, 1 << 30, NULL);
  t->step_size = (int)tnum(&r, "step_size", 0, 1, 0, 0, 1 << 30, NULL);
  t->gamma = (float)tnum(&r, "gamma", 0.1, 0, 1, 0, 1e3, NULL);
  t->final_lr_frac = (float)tnum(&r, "final_lr_frac", 0, 0, 1, 0, 1, NULL);
  t->power = (float)tnum(&r, "power", 4, 0, 1, 0, 100, NULL);
  t->total_steps = (int64_t)tnum(&r, "total_steps", 0, 1, 0, 0, META_MAX_INT, NULL);
  t->label_smoothing = (float)tnum(&r, "label_smoothing", 0, 0, 1, 0, 0.999, NULL);
  t->bn_momentum = (float)tnum(&r, "bn_momentum", 0.1, 0, 1, 0, 1, NULL);
  t->bn_eps = (float)tnum(&r, "bn_eps", 1e-5, 0, 1, 1e-12, 1, NULL);
  t->init = (int)tnum(&r, "init", 0, 1, 0, 0, 1, "0 kaiming, 1 xavier");
  t->seed = (uint64_t)tnum(&r, "seed", 1, 1, 0, 0, META_MAX_INT, NULL);
  t->epochs = (int)tnum(&r, "epochs", 1, 1, 0, 1, 1 << 20, NULL);
  cJSON_Delete(o);
  return r.st;
}

/* a JSON array of 1..max finite numbers; returns the count, or -1 */
static int floats(const char *s, float *v, int max) {
  cJSON *a = cJSON_Parse(s);
  int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
  if (n > max) n = -1;
  for (int i = 0; i < n; i++) {
    cJSON *e = cJSON_GetArrayItem(a, i);
    if (!cJSON_IsNumber(e) || !isfinite((float)e->valuedouble)) n = -1;
    else v[i] = (float)e->valuedouble;
  }
  cJSON_Delete(a);
  return n;
}

static cnn_status parse_classes(const char *path, const char *v, cli_meta *m) {
  cJSON *names = v ? cJSON_Parse(v) : NULL;
  int n = cJSON_IsArray(names) ? cJSON_GetArraySize(names) : 0;
  for (int i = 0; i < n; i++) {
    const cJSON *e = cJSON_GetArrayItem(names, i);
    if (!cJSON_IsString(e) || !e->valuestring) n = 0;
  }
  if (n < 1) {
    cJSON_Delete(names);
    return cnn_error(CNN_ERR_PARSE, "%s: metadata 'classes' is missing or malformed (expected a "
                     "JSON array of one name per class): a damaged checkpoint?", path);
  }
  m->class_names = calloc((size_t)n + 1, sizeof *m->class_names);
  if (!m->class_names) {
    cJSON_Delete(names);
    return cnn_error(CNN_ERR_NOMEM, "%s: out of memory for %d class names", path, n);
  }
  m->classes = n;
  for (int i = 0; i < n; i++) m->class_names[i] = strdup(cJSON_GetArrayItem(names, i)->valuestring);
  cJSON_Delete(names);
  return CNN_OK;
}

static cnn_status parse(const char *path, const cnn_st_file *f, cli_meta *m) {
  const char *cfg = cnn_st_meta(f, "cfg"), *v;
  if (!cfg || !*cfg) return bad(path, "cfg");
  m->cfg = strdup(cfg);
  if ((v = cnn_st_meta(f, "data"))) {
    if (!*v) return bad(path, "data");
    m->data = strdup(v);
  }
  double x;
#define NUM(key, field, type, integer, lo, hi)                  \
  x = (double)m->field;                                        \
  CNN_TRY(top_num(path, f, key, integer, lo, hi, &x));         \
  m->field = (type)x;
  NUM("step", step, int64_t, 1, 0, META_MAX_INT)
  NUM("epoch", epoch, int, 1, 0, 1 << 20)
  NUM("total_steps", total_steps, int64_t, 1, 0, META_MAX_INT)
  NUM("acc", acc, double, 0, 0, 1)
  NUM("best_acc", best_acc, double, 0, 0, 1)
  NUM("best_epoch", best_epoch, int, 1, 0, m->epoch)
  NUM("batch", batch, int, 1, 1, 65536)
  NUM("crop", crop, int, 1, 0, 1024)
  NUM("flip", flip, int, 1, 0, 1)
  NUM("cutout", cutout, int, 1, 0, 1024)
  NUM("val_split", val_split, double, 0, 0, 0.9)
  NUM("freeze", freeze, int, 1, 0, 1 << 20)
#undef NUM
  if ((v = cnn_st_meta(f, "init"))) m->init = strdup(v); /* a note, carried over on resume */
  CNN_TRY(parse_classes(path, cnn_st_meta(f, "classes"), m));
  int nm = (v = cnn_st_meta(f, "mean")) ? floats(v, m->mean, 4) : -1;
  int ns = (v = cnn_st_meta(f, "std")) ? floats(v, m->std, 4) : -1;
  if (nm < 1)
    return cnn_error(CNN_ERR_PARSE, "%s: metadata 'mean' is missing or malformed (expected a JSON "
                     "array of 1 to 4 finite numbers, one per channel): a damaged checkpoint?", path);
  if (ns != nm)
    return cnn_error(CNN_ERR_PARSE, "%s: metadata 'std' is missing or malformed (expected a JSON "
                     "array of finite numbers > 0, one per channel like 'mean', which has %d): a "
                     "damaged checkpoint?", path, nm);
  for (int c = 0; c < ns; c++)
    if (!(m->std[c] > 0) || !isnormal(m->std[c]))
      return cnn_error(CNN_ERR_PARSE, "%s: metadata 'std' value %d is %g, expected > 0: a "
                       "damaged checkpoint?", path, c, m->std[c]);
  m->channels = nm;
  if (!(v = cnn_st_meta(f, "train"))) return bad(path, "train");
  CNN_TRY(parse_train(path, v, &m->tc));
  if (m->epoch > m->tc.epochs) {
    char val[32];
    snprintf(val, sizeof val, "%d", m->epoch);
    return out_of_range(path, "epoch", val, 1, 0, m->tc.epochs, "at most train.epochs");
  }
  m->seed = m->tc.seed;
  return CNN_OK;
}

cnn_status cli_meta_check_model(const char *path, const cli_meta *m, const cnn_net_info *info) {
  if (m->channels != info->channels)
    return cnn_error(CNN_ERR_PARSE, "%s: metadata 'mean'/'std' have %d channels, the model %d",
                     path, m->channels, info->channels);
  if (m->classes != info->classes)
    return cnn_error(CNN_ERR_PARSE, "%s: metadata 'classes' names %d classes, the model has %d "
                     "outputs", path, m->classes, info->classes);
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
  free(m->init);
  if (m->class_names)
    for (int i = 0; i < m->classes; i++) free(m->class_names[i]);
  free(m->class_names);
  memset(m, 0, sizeof *m);
}
