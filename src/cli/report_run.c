/* Builds report.html for a run folder from its metrics.jsonl (so a resumed run
 * reports its whole history), the model summary and the final confusion matrix. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "cli/evaluate.h"
#include "cli/meta.h"
#include "cli/report.h"
#include "core/error.h"

typedef struct hist {
  cli_epoch_stats *ep;
  int n_ep, cap_ep;
  int64_t *si;
  float *sl, *slr;
  int n_st, cap_st;
  int val;     /* the epoch records hold val_* (a --val-split run), not test_* */
} hist;

static double jnum(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void add_line(hist *h, const char *line) {
  cJSON *o = cJSON_Parse(line);
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
  if (cJSON_IsString(t) && !strcmp(t->valuestring, "step")) {
    if (h->n_st == h->cap_st) {
      h->cap_st = h->cap_st ? h->cap_st * 2 : 1024;
      h->si = realloc(h->si, (size_t)h->cap_st * sizeof *h->si);
      h->sl = realloc(h->sl, (size_t)h->cap_st * sizeof *h->sl);
      h->slr = realloc(h->slr, (size_t)h->cap_st * sizeof *h->slr);
    }
    h->si[h->n_st] = (int64_t)jnum(o, "step");
    h->slr[h->n_st] = (float)jnum(o, "lr");
    h->sl[h->n_st++] = (float)jnum(o, "loss");
  } else if (cJSON_IsString(t) && !strcmp(t->valuestring, "epoch")) {
    if (h->n_ep == h->cap_ep) {
      h->cap_ep = h->cap_ep ? h->cap_ep * 2 : 64;
      h->ep = realloc(h->ep, (size_t)h->cap_ep * sizeof *h->ep);
    }
    /* the held-out set's values: test_* or val_* (older files wrote both names) */
    int val = !cJSON_GetObjectItemCaseSensitive(o, "test_acc") &&
              cJSON_GetObjectItemCaseSensitive(o, "val_acc");
    h->val |= val;
    h->ep[h->n_ep++] = (cli_epoch_stats){(int)jnum(o, "epoch"), jnum(o, "train_loss"),
                                         jnum(o, "train_acc"), jnum(o, val ? "val_loss" : "test_loss"),
                                         jnum(o, val ? "val_acc" : "test_acc"), jnum(o, "lr"),
                                         jnum(o, "seconds"), jnum(o, "images_per_s")};
  }
  cJSON_Delete(o);
}

/* the metadata's "init" (cnn train --init) as "PATH (N tensors)", or "seed" */
static void init_note(const char *init, char *buf, size_t len) {
  cJSON *o = init ? cJSON_Parse(init) : NULL;
  const cJSON *from = cJSON_GetObjectItemCaseSensitive(o, "from");
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, "loaded");
  if (cJSON_IsString(from) && cJSON_IsNumber(n))
    snprintf(buf, len, "%.40s (%d tensors)", from->valuestring, n->valueint);
  else
    snprintf(buf, len, "%s", init ? "?" : "the seed");
  cJSON_Delete(o);
}

int cli_report_from_run(const char *dir, const char *title, const char *summary_file,
                        const cli_meta *m, const char *device, const int64_t *confusion,
                        int classes, const char *note) {
  char path[1100];
  snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
  hist h = {0};
  FILE *f = fopen(path, "r");
  char line[4096];
  while (f && fgets(line, sizeof line, f)) add_line(&h, line);
  if (f) fclose(f);
  static const char *const opt[] = {"sgd", "adam", "adamw"};
  static const char *const sch[] = {"constant", "step", "cosine", "onecycle", "poly"};
  const cnn_train_config *t = &m->tc;
  char v[18][64];
  const char *keys[18] = {"optimizer", "learning rate", "schedule", "warm-up steps", "momentum",
                          "nesterov", "weight decay", "label smoothing", "batch", "epochs",
                          "seed", "augmentation", "normalisation mean", "normalisation std",
                          "steps", "data", "initialised from", "frozen sections"};
  /* the metadata was validated when read; still, nothing here indexes past a table */
  if ((unsigned)t->optimizer < 3) snprintf(v[0], 64, "%s", opt[t->optimizer]);
  else snprintf(v[0], 64, "%d", (int)t->optimizer);
  snprintf(v[1], 64, "%g", t->learning_rate);
  if ((unsigned)t->schedule < 5) snprintf(v[2], 64, "%s", sch[t->schedule]);
  else snprintf(v[2], 64, "%d", (int)t->schedule);
  snprintf(v[3], 64, "%d", t->warmup_steps);
  snprintf(v[4], 64, "%g", t->momentum);
  snprintf(v[5], 64, "%d", t->nesterov);
  snprintf(v[6], 64, "%g", t->weight_decay);
  snprintf(v[7], 64, "%g", t->label_smoothing);
  snprintf(v[8], 64, "%d", m->batch);
  snprintf(v[9], 64, "%d", t->epochs);
  snprintf(v[10], 64, "%llu", (unsigned long long)t->seed);
  snprintf(v[11], 64, "crop %d, flip %d, cutout %d", m->crop, m->flip, m->cutout);
  /* one value per input channel: a 1-channel model shows one mean and one std */
  int nch = m->channels < 1 ? 1 : m->channels > 4 ? 4 : m->channels;
  for (int k = 12; k <= 13; k++) {
    const float *a = k == 12 ? m->mean : m->std;
    size_t len = 0;
    for (int c = 0; c < nch; c++)
      len += (size_t)snprintf(v[k] + len, 64 - len, c ? " %.4f" : "%.4f", a[c]);
  }
  snprintf(v[14], 64, "%lld", (long long)m->total_steps);
  snprintf(v[15], 64, "%.63s", m->data ? m->data : "");
  init_note(m->init, v[16], 64);
  snprintf(v[17], 64, "%d", m->freeze);
  const char *vals[18];
  for (int i = 0; i < 18; i++) vals[i] = v[i];
  double total = 0;
  for (int i = 0; i < h.n_ep; i++)
    if (isfinite(h.ep[i].seconds)) total += h.ep[i].seconds;
  char *summary = cli_read_text(summary_file);
  cli_report r = {0};
  r.title = title;
  r.model_path = title;
  r.data_spec = m->data;
  r.device = device;
  r.precision = "fp32";
  r.n_hyper = 18;
  r.hyper_keys = keys;
  r.hyper_values = vals;
  r.summary_text = summary;
  r.n_epochs = h.n_ep;
  r.epochs = h.ep;
  r.n_steps = h.n_st;
  r.step_index = h.si;
  r.step_loss = h.sl;
  r.step_lr = h.slr;
  r.eval_name = h.val ? "validation" : "test";
  r.note = note;
  r.version = cnn_version();
  char date[64] = "";
  time_t now = time(NULL);
  struct tm tm;
  if (localtime_r(&now, &tm)) strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %z", &tm);
  r.written_at = date;
  r.classes = classes;
  /* one name per row of the confusion matrix: numbers where the metadata has none */
  const char **names = calloc((size_t)(classes > 0 ? classes : 1), sizeof *names);
  char (*numbers)[16] = calloc((size_t)(classes > 0 ? classes : 1), sizeof *numbers);
  for (int i = 0; names && numbers && i < classes; i++) {
    snprintf(numbers[i], sizeof numbers[i], "%d", i);
    names[i] = m->class_names && i < m->classes && m->class_names[i] ? m->class_names[i]
                                                                    : numbers[i];
  }
  r.class_names = names && numbers ? names : NULL;
  r.confusion = confusion;
  r.total_seconds = total;
  r.best_acc = m->best_acc;
  r.best_epoch = m->best_epoch;
  snprintf(path, sizeof path, "%s/report.html", dir);
  cnn_status st = cli_report_write(path, &r);
  free(summary);
  free(names);
  free(numbers);
  free(h.ep);
  free(h.si);
  free(h.sl);
  free(h.slr);
  return st == CNN_OK ? 0 : 1;
}
