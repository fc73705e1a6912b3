/* Dataset specs ("fashion-mnist", "cifar10:DIR", ...), freeing and seeded
 * train/val splits. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cnn/data.h"
#include "core/error.h"
#include "core/rng.h"

#define PATH_BUF 4096

static const char *const fashion_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                              "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                              "Bag",         "Ankle boot"};
static const char *const digit_names[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};

void cnn_dataset_free(cnn_dataset *d) {
  if (!d) return;
  if (d->class_names)
    for (int i = 0; i < d->classes; i++) free(d->class_names[i]);
  free(d->class_names);
  free(d->images);
  free(d->labels);
  memset(d, 0, sizeof *d);
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

static char **dup_names(const char *const *names, int n) {
  char **v = calloc((size_t)n, sizeof *v);
  if (!v) return NULL;
  for (int i = 0; i < n; i++)
    if (!(v[i] = dup_str(names[i]))) {
      for (int j = 0; j < i; j++) free(v[j]);
      free(v);
      return NULL;
    }
  return v;
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- splits ------------------------------------------------------------------ */

static int int_cmp(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

static cnn_status subset(const cnn_dataset *src, const int *idx, int k, cnn_dataset *dst) {
  memset(dst, 0, sizeof *dst);
  size_t isz = (size_t)src->h * src->w * src->c;
  dst->n = k;
  dst->h = src->h;
  dst->w = src->w;
  dst->c = src->c;
  dst->classes = src->classes;
  dst->images = malloc(isz * (size_t)(k ? k : 1));
  dst->labels = malloc(sizeof *dst->labels * (size_t)(k ? k : 1));
  if (src->class_names)
    dst->class_names = dup_names((const char *const *)src->class_names, src->classes);
  if (!dst->images || !dst->labels || (src->class_names && !dst->class_names)) {
    cnn_dataset_free(dst);
    return cnn_error(CNN_ERR_NOMEM, "out of memory splitting %d images", src->n);
  }
  for (int i = 0; i < k; i++) {
    memcpy(dst->images + (size_t)i * isz, src->images + (size_t)idx[i] * isz, isz);
    dst->labels[i] = src->labels[idx[i]];
  }
  return CNN_OK;
}

cnn_status cnn_dataset_split(cnn_dataset *src, double fraction, uint64_t seed,
                             cnn_dataset *train, cnn_dataset *val) {
  if (!src || !train || !val || train == val || train == src || val == src)
    return cnn_error(CNN_ERR_ARG, "cnn_dataset_split: NULL or aliased dataset");
  if (!(fraction >= 0.0 && fraction <= 1.0))
    return cnn_error(CNN_ERR_ARG, "validation fraction %g must be in [0, 1]", fraction);
  memset(train, 0, sizeof *train);
  memset(val, 0, sizeof *val);
  int n = src->n;
  int nv = (int)floor(n * fraction + 0.5);
  int *perm = malloc(sizeof *perm * (size_t)(n ? n : 1));
  if (!perm) return cnn_error(CNN_ERR_NOMEM, "out of memory splitting %d images", n);
  for (int i = 0; i < n; i++) perm[i] = i;
  /* Fisher-Yates with a counter RNG: the split depends only on (seed, n) */
  for (int i = n - 1; i > 0; i--) {
    int j = (int)(cnn_rng_u64(seed, (uint64_t)i) % (uint64_t)(i + 1));
    int t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  /* keep file order inside each part: shuffling for training is the loader's job */
  qsort(perm, (size_t)(n - nv), sizeof *perm, int_cmp);
  qsort(perm + (n - nv), (size_t)nv, sizeof *perm, int_cmp);
  cnn_status s = subset(src, perm, n - nv, train);
  if (s == CNN_OK) s = subset(src, perm + (n - nv), nv, val);
  if (s != CNN_OK) cnn_dataset_free(train);
  free(perm);
  return s;
}

/* ---- IDX specs ------------------------------------------------------------------ */

/* DIR/<prefix>-<kind>[.gz]; appends what it tried to `tried` */
static int find_idx(const char *dir, const char *prefix, const char *kind, char *out,
                    char *tried, size_t tried_n) {
  static const char *const ext[2] = {".gz", ""};
  for (int i = 0; i < 2; i++) {
    snprintf(out, PATH_BUF, "%s/%s-%s%s", dir, prefix, kind, ext[i]);
    if (is_file(out)) return 1;
    size_t used = strlen(tried);
    snprintf(tried + used, tried_n - used, "%s%s", used ? ", " : "", out);
  }
  return 0;
}

/* the 10-class IDX datasets: labels must be 0-9 */
static cnn_status ten_classes(cnn_dataset *d, const char *labels_path, const char *const *names) {
  for (int i = 0; i < d->n; i++)
    if (d->labels[i] >= 10)
      return cnn_error(CNN_ERR_PARSE, "%s: record %d (byte offset %d): label %d out of range "
                       "[0, 10)", labels_path, i, 8 + i, d->labels[i]);
  d->classes = 10;
  d->class_names = dup_names(names, 10);
  if (!d->class_names) return cnn_error(CNN_ERR_NOMEM, "out of memory for class names");
  return CNN_OK;
}

/* Look in each dir for the split's image and label files and load the first pair;
 * names10: a 10-class dataset with these class names. */
static cnn_status open_idx(const char *what, const char *const *dirs, int ndirs, int train,
                           const char *const *names10, cnn_dataset *out) {
  const char *prefix = train ? "train" : "t10k";
  char img[PATH_BUF], lab[PATH_BUF], tried[4 * PATH_BUF] = "";
  for (int i = 0; i < ndirs; i++) {
    if (!dirs[i]) continue;
    int a = find_idx(dirs[i], prefix, "images-idx3-ubyte", img, tried, sizeof tried);
    int b = find_idx(dirs[i], prefix, "labels-idx1-ubyte", lab, tried, sizeof tried);
    if (!a || !b) continue;
    CNN_TRY(cnn_dataset_load_idx(img, lab, out));
    return names10 ? ten_classes(out, lab, names10) : CNN_OK;
  }
  return cnn_error(CNN_ERR_IO, "%s: %s set not found; tried %s", what, train ? "training" : "test",
                   tried);
}

/* ---- folder specs ------------------------------------------------------------- */

/* sorted non-hidden sub-folder names of dir (the class list of a folder dataset) */
static cnn_status class_dirs(const char *dir, char ***out, int *n) {
  *out = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return cnn_error(CNN_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
  char **v = NULL;
  int cnt = 0;
  struct dirent *e;
  char path[PATH_BUF];
  cnn_status s = CNN_OK;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path || !is_dir(path))
      continue;
    char **nv = realloc(v, sizeof *v * (size_t)(cnt + 1));
    if (!nv || !(nv[cnt] = dup_str(e->d_name))) {
      if (nv) v = nv;
      s = cnn_error(CNN_ERR_NOMEM, "%s: out of memory listing the folder", dir);
      break;
    }
    v = nv;
    cnt++;
  }
  closedir(d);
  if (s != CNN_OK) {
    for (int i = 0; i < cnt; i++) free(v[i]);
    free(v);
    return s;
  }
  for (int i = 1; i < cnt; i++) /* insertion sort: class lists are short */
    for (int j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
      char *t = v[j];
      v[j] = v[j - 1];
      v[j - 1] = t;
    }
  *out = v;
  *n = cnt;
  return CNN_OK;
}

/* Relabel a test split by the train split's class list, so class k means the same
 * thing in both even when the test folder lacks a class. */
static cnn_status align_classes(cnn_dataset *d, const char *test_dir, const char *train_dir) {
  char **names;
  int n;
  CNN_TRY(class_dirs(train_dir, &names, &n));
  int *map = malloc(sizeof *map * (size_t)(d->classes ? d->classes : 1));
  cnn_status s = map ? CNN_OK : cnn_error(CNN_ERR_NOMEM, "out of memory");
  for (int k = 0; k < d->classes && s == CNN_OK; k++) {
    map[k] = -1;
    for (int j = 0; j < n; j++)
      if (strcmp(d->class_names[k], names[j]) == 0) map[k] = j;
    if (map[k] < 0)
      s = cnn_error(CNN_ERR_PARSE, "%s/%s: class folder has no counterpart in %s", test_dir,
                    d->class_names[k], train_dir);
  }
  if (s == CNN_OK) {
    for (int i = 0; i < d->n; i++) d->labels[i] = map[d->labels[i]];
    for (int k = 0; k < d->classes; k++) free(d->class_names[k]);
    free(d->class_names);
    d->class_names = names;
    d->classes = n;
  } else {
    for (int j = 0; j < n; j++) free(names[j]);
    free(names);
  }
  free(map);
  return s;
}

static cnn_status open_folder(const char *dir, int train, int h, int w, int c, int64_t max_px,
                              cnn_dataset *out) {
  char tr[PATH_BUF], te[PATH_BUF];
  if (!is_dir(dir))
    return cnn_error(CNN_ERR_IO, "folder:%s: directory not found", dir);
  snprintf(tr, sizeof tr, "%s/train", dir);
  snprintf(te, sizeof te, "%s/test", dir);
  int has_tr = is_dir(tr), has_te = is_dir(te);
  if (has_tr != has_te) { /* only one split's folder: a split layout, unless classes sit beside it */
    char **names;
    int n;
    CNN_TRY(class_dirs(dir, &names, &n));
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    if (n == 1 && has_tr == train) return cnn_dataset_load_folder_limit(has_tr ? tr : te, h, w, c,
                                                                         max_px, out);
    if (n == 1)
      return cnn_error(CNN_ERR_IO, "folder:%s: there is %s but no %s/%s, so no %s split: expected "
                       "either %s/train/<class>/<image> and %s/test/<class>/<image>, or "
                       "%s/<class>/<image> (one sub-folder per class, used for both splits)%s",
                       dir, has_tr ? tr : te, dir, train ? "train" : "test",
                       train ? "training" : "test", dir, dir, dir,
                       train ? "" : "; cnn train --val-split F holds out part of the training "
                       "split instead");
  }
  if (!has_tr || !has_te) return cnn_dataset_load_folder_limit(dir, h, w, c, max_px, out);
  if (train) return cnn_dataset_load_folder_limit(tr, h, w, c, max_px, out);
  CNN_TRY(cnn_dataset_load_folder_limit(te, h, w, c, max_px, out));
  cnn_status s = align_classes(out, te, tr);
  if (s != CNN_OK) cnn_dataset_free(out);
  return s;
}

/* ---- specs ------------------------------------------------------------------- */

cnn_status cnn_dataset_open(const char *spec, int train, int h, int w, int c,
                            cnn_dataset *out) {
  return cnn_dataset_open_limit(spec, train, h, w, c, 0, out);
}

cnn_status cnn_dataset_open_limit(const char *spec, int train, int h, int w, int c,
                                  int64_t max_pixels, cnn_dataset *out) {
  if (!spec || !out) return cnn_error(CNN_ERR_ARG, "cnn_dataset_open: NULL argument");
  memset(out, 0, sizeof *out);
  if (strlen(spec) > PATH_BUF - 512) /* room for the file names we append */
    return cnn_error(CNN_ERR_ARG, "dataset '%.64s...': path too long", spec);
  if (h < 0 || w < 0 || c < 0 || c > 4)
    return cnn_error(CNN_ERR_ARG, "dataset %s: bad image size %dx%dx%d", spec, h, w, c);
  const char *colon = strchr(spec, ':');
  size_t klen = colon ? (size_t)(colon - spec) : strlen(spec);
  const char *arg = colon ? colon + 1 : NULL;
  char kind[32];
  if (klen >= sizeof kind || (colon && !*arg))
    return cnn_error(CNN_ERR_ARG, "dataset '%s': unknown spec", spec);
  memcpy(kind, spec, klen);
  kind[klen] = 0;

  /* without a DIR, a named dataset is looked up under $CNN_DATA_DIR */
  char envdir[PATH_BUF];
  const char *data_dir = getenv("CNN_DATA_DIR");
  envdir[0] = 0;
  if (data_dir && *data_dir &&
      snprintf(envdir, sizeof envdir, "%s/%s", data_dir, kind) >= (int)sizeof envdir)
    return cnn_error(CNN_ERR_ARG, "CNN_DATA_DIR '%.64s...': path too long", data_dir);
  const char *dir = arg ? arg : (envdir[0] ? envdir : NULL);

  cnn_status s;
  if (strcmp(kind, "fashion-mnist") == 0) {
    const char *dirs[2] = {dir, arg ? NULL : "/usr/share/datasets/fashion-mnist"};
    s = open_idx(spec, dirs, 2, train, fashion_names, out);
    if (s == CNN_ERR_IO && !arg) {
      char msg[1024];
      snprintf(msg, sizeof msg, "%s", cnn_last_error());
      s = cnn_error(s, "%s (install Debian's dataset-fashion-mnist: apt-get install "
                    "dataset-fashion-mnist, or put the files in $CNN_DATA_DIR/fashion-mnist)",
                    msg);
    }
  } else if (strcmp(kind, "mnist") == 0 || strcmp(kind, "idx") == 0) {
    if (!dir)
      return cnn_error(CNN_ERR_ARG, "dataset '%s': give a directory (%s:DIR) or set CNN_DATA_DIR",
                       spec, kind);
    const char *dirs[1] = {dir};
    s = open_idx(spec, dirs, 1, train, kind[0] == 'm' ? digit_names : NULL, out);
  } else if (strcmp(kind, "cifar10") == 0 || strcmp(kind, "cifar100") == 0) {
    if (!dir)
      return cnn_error(CNN_ERR_ARG, "dataset '%s': give a directory (%s:DIR) or set CNN_DATA_DIR",
                       spec, kind);
    s = cnn_dataset_load_cifar(dir, strcmp(kind, "cifar100") == 0, train, out);
  } else if (strcmp(kind, "folder") == 0 && arg) {
    s = open_folder(arg, train, h, w, c, max_pixels, out);
  } else {
    return cnn_error(CNN_ERR_ARG,
                     "dataset '%s': unknown spec (use fashion-mnist, mnist:DIR, idx:DIR, "
                     "cifar10:DIR, cifar100:DIR or folder:DIR)", spec);
  }
  if (s == CNN_OK) s = cnn_dataset_resize(out, h, w, c);
  if (s != CNN_OK) cnn_dataset_free(out);
  return s;
}
