/* CIFAR-10 / CIFAR-100 binary batches: fixed-size records of label byte(s) then a
 * 32x32 image stored planar (1024 R, 1024 G, 1024 B); converted to HWC here. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cnn/data.h"
#include "core/error.h"

#define CIFAR_SIDE 32
#define CIFAR_PIXELS (CIFAR_SIDE * CIFAR_SIDE)

static const char *const cifar10_names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                              "dog", "frog", "horse", "ship", "truck"};

static int is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* the CIFAR archives unpack into a sub-folder; accept dir or that sub-folder */
static void cifar_base(const char *dir, int cifar100, char *buf, size_t n) {
  const char *sub = cifar100 ? "cifar-100-binary" : "cifar-10-batches-bin";
  snprintf(buf, n, "%s/%s", dir, sub);
  if (!is_dir(buf)) snprintf(buf, n, "%s", dir);
}

/* one batch file, appended at record index out->n (space already allocated) */
static cnn_status cifar_read_batch(const char *path, int cifar100, size_t nrec, cnn_dataset *out) {
  const size_t rec = (cifar100 ? 2 : 1) + 3 * CIFAR_PIXELS;
  const int classes = cifar100 ? 100 : 10;
  FILE *fp = fopen(path, "rb");
  if (!fp) return cnn_error(CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  uint8_t *buf = malloc(rec * nrec);
  if (!buf) {
    fclose(fp);
    return cnn_error(CNN_ERR_NOMEM, "%s: out of memory for %zu records", path, nrec);
  }
  size_t got = fread(buf, rec, nrec, fp);
  fclose(fp);
  cnn_status s = CNN_OK;
  if (got != nrec)
    s = cnn_error(CNN_ERR_IO, "%s: read failed at record %zu (byte offset %zu)", path, got,
                  got * rec);
  for (size_t r = 0; r < nrec && s == CNN_OK; r++) {
    const uint8_t *p = buf + r * rec;
    int coarse = cifar100 ? p[0] : 0, label = cifar100 ? p[1] : p[0];
    if (cifar100 && coarse >= 20)
      s = cnn_error(CNN_ERR_PARSE, "%s: record %zu (byte offset %zu): coarse label %d out of "
                    "range [0, 20)", path, r, r * rec, coarse);
    else if (label >= classes)
      s = cnn_error(CNN_ERR_PARSE, "%s: record %zu (byte offset %zu): label %d out of range "
                    "[0, %d)", path, r, r * rec + (cifar100 ? 1 : 0), label, classes);
    if (s != CNN_OK) break;
    const uint8_t *img = p + (cifar100 ? 2 : 1);
    uint8_t *dst = out->images + (size_t)out->n * 3 * CIFAR_PIXELS;
    for (int i = 0; i < CIFAR_PIXELS; i++)
      for (int ch = 0; ch < 3; ch++) dst[i * 3 + ch] = img[ch * CIFAR_PIXELS + i];
    out->labels[out->n++] = label;
  }
  free(buf);
  return s;
}

/* names one per line, blank lines skipped; must give exactly `classes` names */
static cnn_status cifar_names(const char *path, int classes, cnn_dataset *out) {
  FILE *fp = fopen(path, "r");
  if (!fp) return cnn_error(CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  out->class_names = calloc((size_t)classes, sizeof(char *));
  if (!out->class_names) {
    fclose(fp);
    return cnn_error(CNN_ERR_NOMEM, "%s: out of memory", path);
  }
  char line[512];
  int k = 0, lineno = 0;
  cnn_status s = CNN_OK;
  while (s == CNN_OK && fgets(line, sizeof line, fp)) {
    lineno++;
    size_t len = strcspn(line, "\r\n");
    line[len] = 0;
    while (len && (line[len - 1] == ' ' || line[len - 1] == '\t')) line[--len] = 0;
    if (!len) continue;
    if (k == classes) {
      s = cnn_error(CNN_ERR_PARSE, "%s:%d: more than %d class names", path, lineno, classes);
      break;
    }
    out->class_names[k] = malloc(len + 1);
    if (!out->class_names[k]) {
      s = cnn_error(CNN_ERR_NOMEM, "%s: out of memory", path);
      break;
    }
    memcpy(out->class_names[k++], line, len + 1);
  }
  fclose(fp);
  if (s == CNN_OK && k != classes)
    s = cnn_error(CNN_ERR_PARSE, "%s: %d class names, expected %d", path, k, classes);
  return s;
}

static cnn_status cifar_default_names(cnn_dataset *out) {
  out->class_names = calloc(10, sizeof(char *));
  if (!out->class_names) return cnn_error(CNN_ERR_NOMEM, "out of memory for class names");
  for (int i = 0; i < 10; i++) {
    size_t len = strlen(cifar10_names[i]) + 1;
    if (!(out->class_names[i] = malloc(len)))
      return cnn_error(CNN_ERR_NOMEM, "out of memory for class names");
    memcpy(out->class_names[i], cifar10_names[i], len);
  }
  return CNN_OK;
}

cnn_status cnn_dataset_load_cifar(const char *dir, int cifar100, int train, cnn_dataset *out) {
  if (!dir || !out) return cnn_error(CNN_ERR_ARG, "cnn_dataset_load_cifar: NULL argument");
  memset(out, 0, sizeof *out);
  if (strlen(dir) > 3000) /* room for the file names we append */
    return cnn_error(CNN_ERR_ARG, "CIFAR directory '%.64s...': path too long", dir);
  if (!is_dir(dir))
    return cnn_error(CNN_ERR_IO, "%s: CIFAR-%d directory not found", dir, cifar100 ? 100 : 10);
  char base[4096];
  cifar_base(dir, cifar100, base, sizeof base);
  const size_t rec = (cifar100 ? 2 : 1) + 3 * CIFAR_PIXELS;

  /* the batch files of this split, and their record counts */
  char paths[5][4160];
  size_t counts[5];
  int nfiles = 0;
  if (cifar100 || !train) {
    snprintf(paths[0], sizeof paths[0], "%s/%s", base,
             cifar100 ? (train ? "train.bin" : "test.bin") : "test_batch.bin");
    nfiles = is_file(paths[0]) ? 1 : 0;
  } else {
    for (int b = 1; b <= 5; b++) {
      snprintf(paths[nfiles], sizeof paths[0], "%s/data_batch_%d.bin", base, b);
      if (is_file(paths[nfiles])) nfiles++;
    }
  }
  if (!nfiles)
    return cnn_error(CNN_ERR_IO, "%s: no CIFAR-%d %s batch found (looked for %s in %s%s%s)", dir,
                     cifar100 ? 100 : 10, train ? "training" : "test",
                     cifar100 ? (train ? "train.bin" : "test.bin")
                              : (train ? "data_batch_1..5.bin" : "test_batch.bin"),
                     dir, strcmp(base, dir) ? " and " : "", strcmp(base, dir) ? base : "");

  size_t total = 0;
  for (int i = 0; i < nfiles; i++) {
    struct stat st;
    if (stat(paths[i], &st) != 0)
      return cnn_error(CNN_ERR_IO, "%s: cannot stat: %s", paths[i], strerror(errno));
    size_t size = (size_t)st.st_size;
    if (size == 0 || size % rec)
      return cnn_error(CNN_ERR_PARSE,
                       "%s: size %zu is not a multiple of the %zu-byte CIFAR-%d record: the "
                       "record at byte offset %zu is truncated",
                       paths[i], size, rec, cifar100 ? 100 : 10, size - size % rec);
    counts[i] = size / rec;
    total += counts[i];
  }
  if (total > INT_MAX / 2)
    return cnn_error(CNN_ERR_PARSE, "%s: %zu records is absurd", dir, total);

  out->h = out->w = CIFAR_SIDE;
  out->c = 3;
  out->classes = cifar100 ? 100 : 10;
  out->images = malloc(total * 3 * CIFAR_PIXELS);
  out->labels = malloc(total * sizeof *out->labels);
  cnn_status s = CNN_OK;
  if (!out->images || !out->labels)
    s = cnn_error(CNN_ERR_NOMEM, "%s: out of memory for %zu images", dir, total);
  for (int i = 0; i < nfiles && s == CNN_OK; i++)
    s = cifar_read_batch(paths[i], cifar100, counts[i], out);

  if (s == CNN_OK) {
    char names[4160];
    snprintf(names, sizeof names, "%s/%s", base,
             cifar100 ? "fine_label_names.txt" : "batches.meta.txt");
    if (is_file(names))
      s = cifar_names(names, out->classes, out);
    else if (!cifar100)
      s = cifar_default_names(out);
  }
  if (s != CNN_OK) cnn_dataset_free(out);
  return s;
}
