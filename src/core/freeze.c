/* Freezing a prefix of the net for fine-tuning (cnn_net_set_frozen). A frozen
 * layer runs forward only: its batch norm uses the running statistics (as in
 * inference) and commits none, backward stops before it (every layer before a
 * frozen one is frozen too, so no gradient is needed there; nor in layers without
 * parameters between the frozen prefix and the first layer that trains), and the
 * optimizer skips its tensors. Its parameters, statistics and optimizer state therefore stay
 * bit-identical on every backend. Dropout in a frozen layer still drops in training. */
#include <string.h>

#include "core/net.h"

cnn_status cnn_net_set_frozen(cnn_net *net, int n_sections) {
  if (!net) return cnn_error(CNN_ERR_ARG, "cnn_net_set_frozen: NULL net");
  if (n_sections < 0 || n_sections >= net->n_sections)
    return cnn_error(CNN_ERR_ARG, "cannot freeze %d sections: the model has %d (0 to %d can be "
                     "frozen, leaving at least the last to train)", n_sections, net->n_sections,
                     net->n_sections - 1);
  size_t open = 0;
  for (int i = 0; i < net->n_layers; i++) {
    const cnn_layer *l = &net->layers[i];
    for (int j = 0; j < l->n_param; j++) {
      const cnn_tensor_entry *t = &net->tensors[l->param[j]];
      if (t->trainable && l->section >= n_sections) open += t->count;
    }
  }
  if (n_sections > 0 && !open)
    return cnn_error(CNN_ERR_ARG, "freezing %d of %d sections leaves no parameter to train",
                     n_sections, net->n_sections);
  net->frozen_sections = n_sections;
  for (int i = 0; i < net->n_layers; i++) { /* layers are in topological order */
    cnn_layer *l = &net->layers[i];
    int trains = 0, upstream = 0;
    for (int j = 0; j < l->n_param; j++) {
      cnn_tensor_entry *t = &net->tensors[l->param[j]];
      t->frozen = l->section < n_sections;
      trains |= t->trainable && !t->frozen;
    }
    for (int q = 0; q < l->n_in; q++) upstream |= l->in[q] >= 0 && !net->layers[l->in[q]].no_grad;
    /* without freezing, every layer runs backward as before */
    l->no_grad = n_sections > 0 && (l->section < n_sections || (!trains && !upstream));
  }
  cnn_net_drop_programs(net); /* what backward and the optimizer emit changed */
  return CNN_OK;
}

int cnn_net_frozen(const cnn_net *net) { return net ? net->frozen_sections : 0; }

cnn_status cnn_net_find_section(const cnn_net *net, const char *name, int *section) {
  if (!net || !name || !section) return cnn_error(CNN_ERR_ARG, "cnn_net_find_section: NULL argument");
  for (int i = 0; i < net->n_layers; i++)
    if (!strcmp(net->layers[i].name, name)) {
      *section = net->layers[i].section;
      return CNN_OK;
    }
  for (int i = 0; i < net->n_layers; i++) /* a tensor name: its layer */
    for (int j = 0; j < net->layers[i].n_param; j++)
      if (!strcmp(net->tensors[net->layers[i].param[j]].name, name)) {
        *section = net->layers[i].section;
        return CNN_OK;
      }
  char names[200] = "";
  size_t at = 0;
  for (int i = 0; i < net->n_layers && at + 20 < sizeof names; i++)
    if (net->layers[i].n_param)
      at += (size_t)snprintf(names + at, sizeof names - at, "%s%s", at ? ", " : "", net->layers[i].name);
  return cnn_error(CNN_ERR_ARG, "%s: no layer or tensor named '%s' (layers with parameters: %s%s)",
                   net->path, name, names, at + 20 >= sizeof names ? ", ..." : "");
}
