/* Starting from another model's weights (cnn_net_load_matching): tensors copied
 * by name where the shapes agree, the rest of the net left as initialised, and a
 * report of each. Like cnn_net_load, nothing changes until everything copied has
 * been checked. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/net.h"
#include "core/safetensors.h"

static void shape_str(char *buf, size_t len, int ndim, const int64_t *shape) {
  size_t at = (size_t)snprintf(buf, len, "[");
  for (int d = 0; d < ndim && at < len; d++)
    at += (size_t)snprintf(buf + at, len - at, "%s%lld", d ? "," : "", (long long)shape[d]);
  if (at < len) snprintf(buf + at, len - at, "]");
}

static int same_shape(const cnn_st_tensor *t, const cnn_tensor_entry *e) {
  if (strcmp(t->dtype, "F32") || t->ndim != e->ndim) return 0;
  for (int d = 0; d < e->ndim; d++)
    if (t->shape[d] != e->shape[d]) return 0;
  return 1;
}

static cnn_status finite(const char *path, const char *name, const uint8_t *p, size_t count) {
  for (size_t i = 0; i < count; i++) {
    float v;
    memcpy(&v, p + i * sizeof v, sizeof v);
    if (!isfinite(v))
      return cnn_error(CNN_ERR_NUMERIC, "%s: tensor '%s' holds %s at element %zu: a checkpoint of "
                       "a diverged run or a damaged file", path, name,
                       isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf", i);
  }
  return CNN_OK;
}

static int is_net_tensor(const cnn_net *net, const char *name) {
  for (int i = 0; i < net->n_tensors; i++)
    if (!strcmp(net->tensors[i].name, name)) return 1;
  return 0;
}

static const cnn_load_item *first_shape(const cnn_load_report *r) {
  for (int i = 0; i < r->n_items; i++)
    if (r->items[i].what == CNN_LOAD_SHAPE) return &r->items[i];
  return &r->items[0];
}

void cnn_load_report_free(cnn_load_report *rep) {
  if (!rep) return;
  free(rep->items);
  memset(rep, 0, sizeof *rep);
}

cnn_status cnn_net_load_matching(cnn_net *net, const char *path, cnn_load_report *rep) {
  if (rep) memset(rep, 0, sizeof *rep);
  if (!net || !path) return cnn_error(CNN_ERR_ARG, "cnn_net_load_matching: NULL argument");
  cnn_st_file f;
  CNN_TRY(cnn_st_read(path, &f)); /* checks the data against its checksum, when it has one */
  cnn_load_report r = {0};
  r.items = calloc((size_t)net->n_tensors + (size_t)f.n + 1, sizeof *r.items);
  cnn_status st = r.items ? CNN_OK : cnn_error(CNN_ERR_NOMEM, "out of memory");
  for (int i = 0; i < net->n_tensors && st == CNN_OK; i++) {
    const cnn_tensor_entry *e = &net->tensors[i];
    const cnn_st_tensor *t = cnn_st_find(&f, e->name);
    cnn_load_item *it = &r.items[r.n_items++];
    snprintf(it->name, sizeof it->name, "%s", e->name);
    char want[64];
    shape_str(want, sizeof want, e->ndim, e->shape);
    if (!t) {
      it->what = CNN_LOAD_NEW;
      snprintf(it->detail, sizeof it->detail, "%s", want);
      r.fresh++;
    } else if (!same_shape(t, e)) {
      char have[64];
      shape_str(have, sizeof have, t->ndim, t->shape);
      it->what = CNN_LOAD_SHAPE;
      snprintf(it->detail, sizeof it->detail, "%s %s in the file, %s in the model", t->dtype, have,
               want);
      r.shape++;
    } else {
      it->what = CNN_LOAD_LOADED;
      snprintf(it->detail, sizeof it->detail, "%s", want);
      st = finite(path, e->name, f.data + t->begin, e->count);
      r.loaded++;
      r.loaded_values += e->count;
    }
  }
  for (int k = 0; k < f.n && st == CNN_OK; k++) { /* the file's tensors the net has no name for */
    const cnn_st_tensor *t = &f.tensors[k];
    if (!strncmp(t->name, "optimizer.", 10) || is_net_tensor(net, t->name)) continue;
    cnn_load_item *it = &r.items[r.n_items++];
    snprintf(it->name, sizeof it->name, "%s", t->name);
    it->what = CNN_LOAD_UNUSED;
    char have[64];
    shape_str(have, sizeof have, t->ndim, t->shape);
    snprintf(it->detail, sizeof it->detail, "%s", have);
    r.unused++;
  }
  if (st == CNN_OK && !r.loaded)
    st = r.shape ? cnn_error(CNN_ERR_SHAPE, "%s: no tensor matches the model by name and shape "
                             "(%d of its %d tensor names are in the file, all with another shape, "
                             "e.g. %s: %s)", path, r.shape, net->n_tensors, first_shape(&r)->name,
                             first_shape(&r)->detail)
                 : cnn_error(CNN_ERR_SHAPE, "%s: none of the model's %d tensor names (e.g. '%s') "
                             "is in the file: weights of another model?", path, net->n_tensors,
                             net->n_tensors ? net->tensors[0].name : "");
  /* everything checked: change the net */
  for (int i = 0; i < net->n_tensors && st == CNN_OK; i++)
    if (r.items[i].what == CNN_LOAD_LOADED) {
      const cnn_st_tensor *t = cnn_st_find(&f, net->tensors[i].name);
      st = cnn_net_tensor_set(net, i, (const float *)(f.data + t->begin));
    }
  cnn_st_free(&f);
  if (st == CNN_OK && rep) *rep = r;
  else free(r.items);
  return st;
}
