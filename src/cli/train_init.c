/* cnn train --init and --freeze (see train_init.h). */
#include "cli/train_init.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "core/error.h"

cnn_status cli_freeze_sections(const cnn_net *net, const char *spec, int *sections) {
  cnn_net_info info;
  CNN_TRY(cnn_net_info_get(net, &info));
  char *end = NULL;
  long n = strtol(spec, &end, 10);
  if (end != spec && !*end) {
    if (n < 0 || n >= info.num_sections)
      return cnn_error(CNN_ERR_ARG, "--freeze %s: the model has %d sections after [net]; freeze "
                       "0 to %d of them (or name a layer, e.g. conv2)", spec, info.num_sections,
                       info.num_sections - 1);
    *sections = (int)n;
    return CNN_OK;
  }
  int s;
  cnn_status st = cnn_net_find_section(net, spec, &s);
  if (st != CNN_OK) return cnn_error_prefix(st, "--freeze");
  *sections = s + 1;
  return CNN_OK;
}

void cli_freeze_print(const cnn_net *net, FILE *log) {
  int n = cnn_net_frozen(net), tensors = 0;
  if (!n || !log) return;
  size_t values = 0;
  const char *first = NULL, *last = NULL;
  for (int i = 0; i < cnn_net_num_tensors(net); i++) {
    cnn_param_desc d;
    if (cnn_net_tensor_desc(net, i, &d) != CNN_OK || !d.frozen) continue;
    tensors++;
    if (d.trainable) values += d.count;
    if (!first) first = d.name;
    last = d.name;
  }
  fprintf(log, "cnn train: frozen: the first %d section%s (%d tensors, %s to %s: %zu parameters "
          "fixed, batch norm on its running statistics)\n", n, n == 1 ? "" : "s", tensors,
          first ? first : "-", last ? last : "-", values);
}

static void list(FILE *log, const cnn_load_report *r, cnn_load_what w, const char *label) {
  for (int i = 0; i < r->n_items; i++)
    if (r->items[i].what == w)
      fprintf(log, "  %-8s %s %s\n", label, r->items[i].name, r->items[i].detail);
}

cnn_status cli_init_from(cnn_net *net, const char *path, FILE *log, char **meta_json) {
  cnn_load_report r;
  *meta_json = NULL;
  cnn_status st = cnn_net_load_matching(net, path, &r);
  if (st != CNN_OK) return cnn_error_prefix(st, "--init");
  if (log) {
    fprintf(log, "cnn train: --init %s: %d tensors loaded (%zu values), %d new (initialised "
            "from the seed), %d skipped (another shape), %d of the file's unused\n", path,
            r.loaded, r.loaded_values, r.fresh + r.shape, r.shape, r.unused);
    if (r.loaded <= 16) list(log, &r, CNN_LOAD_LOADED, "loaded");
    list(log, &r, CNN_LOAD_NEW, "new");
    for (int i = 0; i < r.n_items; i++)
      if (r.items[i].what == CNN_LOAD_SHAPE)
        fprintf(log, "  %-8s %s: %s (initialised from the seed)\n", "skipped", r.items[i].name,
                r.items[i].detail);
    list(log, &r, CNN_LOAD_UNUSED, "unused");
  }
  cJSON *o = cJSON_CreateObject(), *arr[3];
  cJSON_AddStringToObject(o, "from", path);
  cJSON_AddNumberToObject(o, "loaded", r.loaded);
  const char *keys[3] = {"new", "skipped", "unused"};
  const cnn_load_what what[3] = {CNN_LOAD_NEW, CNN_LOAD_SHAPE, CNN_LOAD_UNUSED};
  for (int k = 0; k < 3; k++) {
    arr[k] = cJSON_AddArrayToObject(o, keys[k]);
    for (int i = 0; i < r.n_items; i++)
      if (r.items[i].what == what[k]) cJSON_AddItemToArray(arr[k], cJSON_CreateString(r.items[i].name));
  }
  *meta_json = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  cnn_load_report_free(&r);
  return *meta_json ? CNN_OK : cnn_error(CNN_ERR_NOMEM, "out of memory");
}

void cli_init_norm(const char *path, int channels, cli_meta *m, FILE *log) {
  cli_meta src;
  cnn_status st = cli_meta_read(path, &src);
  if (st != CNN_OK || src.channels != channels) {
    if (log)
      fprintf(log, "cnn train: --init %s: %s; normalising with the training set's mean/std\n",
              path, st != CNN_OK ? "no cnn normalisation metadata"
                                 : "its normalisation is for another number of channels");
    if (st == CNN_OK) cli_meta_free(&src);
    return;
  }
  m->channels = src.channels;
  memcpy(m->mean, src.mean, sizeof m->mean);
  memcpy(m->std, src.std, sizeof m->std);
  if (log)
    fprintf(log, "cnn train: --init %s: normalising with its mean/std, as it was trained\n", path);
  cli_meta_free(&src);
}
