/* A folder dataset's classes matched to a model's by name: the folder of a class
 * is its name with '/' as '_' (cnn_class_dir_name); the dataset is relabelled so
 * label k means the model's class k. Names that are only their own index ("0",
 * "1", ...) are placeholders: a model whose names are all placeholders keeps the
 * folders' alphabetical order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn/data.h"
#include "core/error.h"

int cnn_class_dir_name(const char *name, char *out, size_t n) {
  if (!name || !out || n == 0) return 0;
  size_t len = strlen(name);
  if (len + 2 > n) return 0;
  if (len == 0) { /* an empty name gets a visible folder */
    memcpy(out, "_", 2);
    return 1;
  }
  for (size_t i = 0; i <= len; i++) out[i] = name[i] == '/' ? '_' : name[i];
  if (out[0] == '.') out[0] = '_'; /* hidden folders (and "." / "..") are skipped when loading */
  return 1;
}

/* names[j] is "j" */
static int placeholder(const char *name, int j) {
  char buf[16];
  snprintf(buf, sizeof buf, "%d", j);
  return strcmp(name, buf) == 0;
}

/* "'a', 'b', 'c' and 5 more" of the flagged names, into buf */
static const char *list(char *const *names, const char *flag, int n, char *buf, size_t cap) {
  size_t used = 0;
  int shown = 0, total = 0;
  buf[0] = 0;
  for (int i = 0; i < n; i++) {
    if (flag && !flag[i]) continue;
    total++;
    if (shown >= 8 || used + strlen(names[i]) + 8 >= cap) continue;
    used += (size_t)snprintf(buf + used, cap - used, "%s'%s'", shown ? ", " : "", names[i]);
    shown++;
  }
  if (total > shown) snprintf(buf + used, cap - used, " and %d more", total - shown);
  return buf;
}

cnn_status cnn_dataset_map_classes(cnn_dataset *d, const char *const *names, int classes,
                                   int *by_name) {
  if (by_name) *by_name = 0;
  if (!d || !names || classes < 1)
    return cnn_error(CNN_ERR_ARG, "cnn_dataset_map_classes: NULL argument or no classes");
  if (!d->class_names)
    return cnn_error(CNN_ERR_ARG, "the dataset has no class names to match the model's by");
  char (*dirs)[256] = malloc(sizeof *dirs * (size_t)classes);
  int *map = malloc(sizeof *map * (size_t)(d->classes ? d->classes : 1));
  char *unmatched = calloc((size_t)(d->classes ? d->classes : 1), 1);
  char *missing = calloc((size_t)classes, 1);
  char **copy = calloc((size_t)classes, sizeof *copy);
  cnn_status s = CNN_OK;
  if (!dirs || !map || !unmatched || !missing || !copy)
    s = cnn_error(CNN_ERR_NOMEM, "out of memory matching %d classes", classes);
  int all_placeholders = 1, nunmatched = 0, nmissing = 0;
  for (int j = 0; j < classes && s == CNN_OK; j++) {
    if (!names[j]) {
      s = cnn_error(CNN_ERR_ARG, "the model's class %d has no name", j);
      break;
    }
    if (!cnn_class_dir_name(names[j], dirs[j], sizeof dirs[j]))
      dirs[j][0] = 0; /* longer than a folder name can be: matches no folder */
    if (!placeholder(names[j], j)) all_placeholders = 0;
    for (int i = 0; i < j && s == CNN_OK && dirs[j][0]; i++)
      if (!strcmp(dirs[i], dirs[j]))
        s = cnn_error(CNN_ERR_ARG, "the model's classes '%s' and '%s' both match the folder '%s'",
                      names[i], names[j], dirs[j]);
  }
  for (int k = 0; k < d->classes && s == CNN_OK; k++) {
    map[k] = -1;
    for (int j = 0; j < classes && map[k] < 0; j++)
      if (dirs[j][0] && !strcmp(d->class_names[k], dirs[j])) map[k] = j;
    if (map[k] < 0) unmatched[k] = 1, nunmatched++;
  }
  for (int j = 0; j < classes && s == CNN_OK; j++) {
    int found = 0;
    for (int k = 0; k < d->classes; k++) found |= map[k] == j;
    if (!found && !placeholder(names[j], j)) missing[j] = 1, nmissing++;
  }
  if (s == CNN_OK && nunmatched && all_placeholders) { /* unnamed classes: alphabetical order */
    s = CNN_OK;
  } else if (s == CNN_OK && (nunmatched || nmissing)) {
    char a[300], b[300], c[300];
    if (nunmatched && nmissing)
      s = cnn_error(CNN_ERR_ARG, "class folder%s %s match%s no class of the model, and its "
                    "class%s %s %s no folder (the model's classes: %s)",
                    nunmatched > 1 ? "s" : "", list(d->class_names, unmatched, d->classes, a, sizeof a),
                    nunmatched > 1 ? "" : "es", nmissing > 1 ? "es" : "",
                    list((char *const *)names, missing, classes, b, sizeof b),
                    nmissing > 1 ? "have" : "has", list((char *const *)names, NULL, classes, c, sizeof c));
    else if (nunmatched)
      s = cnn_error(CNN_ERR_ARG, "class folder%s %s match%s no class of the model (its classes: %s)",
                    nunmatched > 1 ? "s" : "", list(d->class_names, unmatched, d->classes, a, sizeof a),
                    nunmatched > 1 ? "" : "es", list((char *const *)names, NULL, classes, c, sizeof c));
    else
      s = cnn_error(CNN_ERR_ARG, "the model's class%s %s %s no folder in the data (its folders: %s)",
                    nmissing > 1 ? "es" : "", list((char *const *)names, missing, classes, b, sizeof b),
                    nmissing > 1 ? "have" : "has", list(d->class_names, NULL, d->classes, a, sizeof a));
  } else if (s == CNN_OK) { /* every folder is a class of the model: relabel */
    for (int j = 0; j < classes && s == CNN_OK; j++)
      if (!(copy[j] = malloc(strlen(names[j]) + 1)))
        s = cnn_error(CNN_ERR_NOMEM, "out of memory for class names");
      else
        memcpy(copy[j], names[j], strlen(names[j]) + 1);
    if (s == CNN_OK) {
      for (int i = 0; i < d->n; i++) d->labels[i] = map[d->labels[i]];
      for (int k = 0; k < d->classes; k++) free(d->class_names[k]);
      free(d->class_names);
      d->class_names = copy;
      d->classes = classes;
      copy = NULL;
      if (by_name) *by_name = 1;
    }
  }
  if (copy)
    for (int j = 0; j < classes; j++) free(copy[j]);
  free(copy);
  free(dirs);
  free(map);
  free(unmatched);
  free(missing);
  return s;
}
