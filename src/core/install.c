/* cnn_version and cnn_model_path: the version, and the models installed with libcnn.
 *
 * The models directory is found from where libcnn itself was loaded (dladdr), as
 * LIBDIR/CNN_LIB_TO_MODELS (the install layout's relative path from the lib dir to
 * DATADIR/cnn/models, e.g. "../share/cnn/models"), so a prefix installed with
 * `cmake --install --prefix P` or moved afterwards still finds its models. The libcnn
 * of a build tree (its directory is CNN_BUILD_DIR) uses the source tree's models/
 * instead; the configured install directory comes last (a libcnn copied elsewhere). */
#define _GNU_SOURCE /* dladdr, realpath, scandir */
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cnn/cnn.h"
#include "core/error.h"

#ifndef CNN_VERSION
#error "CNN_VERSION must be defined by the build"
#endif

const char *cnn_version(void) { return CNN_VERSION; }

enum { MAX_DIRS = 3 };
typedef struct models_dir {
  char dir[PATH_MAX];
  const char *what; /* why this directory is a candidate */
  int exists;
} models_dir;

static const char models_anchor = 0; /* an address inside libcnn, for dladdr */

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* add `dir` (canonical when it exists) unless it is already there */
static void add_dir(models_dir *d, int *n, const char *dir, const char *what) {
  char real[PATH_MAX];
  int exists = is_dir(dir) && realpath(dir, real);
  const char *p = exists ? real : dir;
  if (*n >= MAX_DIRS || strlen(p) >= sizeof d->dir) return;
  for (int i = 0; i < *n; i++)
    if (!strcmp(d[i].dir, p)) return;
  strcpy(d[*n].dir, p);
  d[*n].what = what;
  d[*n].exists = exists;
  (*n)++;
}

static int models_dirs(models_dir *d) {
  int n = 0;
  Dl_info di;
  char lib[PATH_MAX], dir[PATH_MAX + 64];
  if (dladdr(&models_anchor, &di) && di.dli_fname && realpath(di.dli_fname, lib)) {
    char *slash = strrchr(lib, '/');
    if (slash) *slash = 0; /* libcnn's directory ("" for "/") */
    int in_build = 0;
#if defined(CNN_BUILD_DIR) && defined(CNN_SOURCE_MODELS)
    char build[PATH_MAX];
    if (realpath(CNN_BUILD_DIR, build) && !strcmp(build, lib)) {
      add_dir(d, &n, CNN_SOURCE_MODELS, "the source tree of this build");
      in_build = 1;
    }
#endif
    int w = snprintf(dir, sizeof dir, "%s/%s", lib, CNN_LIB_TO_MODELS);
    if (!in_build && w > 0 && (size_t)w < sizeof dir)
      add_dir(d, &n, dir, "installed with libcnn");
  }
#ifdef CNN_INSTALL_MODELSDIR
  add_dir(d, &n, CNN_INSTALL_MODELSDIR, "the configured install directory");
#endif
  return n;
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && !strcmp(s + a - b, suffix);
}

/* printf to the end of buf[n] (truncated if need be) */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void append(char *buf, size_t n, const char *fmt, ...) {
  size_t used = strlen(buf);
  va_list ap;
  va_start(ap, fmt);
  if (used < n) vsnprintf(buf + used, n - used, fmt, ap);
  va_end(ap);
}

static int cfg_entry(const struct dirent *e) {
  return e->d_name[0] != '.' && ends_with(e->d_name, ".cfg");
}

/* ", NAME.cfg" for each cfg of `dir`, sorted, appended to buf */
static void list_models(const char *dir, char *buf, size_t n) {
  struct dirent **names;
  int k = scandir(dir, &names, cfg_entry, alphasort);
  if (k < 0) return;
  for (int i = 0; i < k; i++) {
    append(buf, n, "%s%s", i ? ", " : "", names[i]->d_name);
    free(names[i]);
  }
  free(names);
  if (k == 0) append(buf, n, "none");
}

static cnn_status copy_out(const char *p, char *path, size_t n) {
  if (strlen(p) >= n)
    return cnn_error(CNN_ERR_ARG, "cnn_model_path: %s does not fit in %zu bytes", p, n);
  strcpy(path, p);
  return CNN_OK;
}

cnn_status cnn_model_path(const char *name, char *path, size_t n) {
  models_dir d[MAX_DIRS];
  char looked[1024] = "", cand[PATH_MAX + 512];
  int nd, first = -1;
  if (!path || n == 0) return cnn_error(CNN_ERR_ARG, "cnn_model_path: no room for the path");
  path[0] = 0;
  if (name && strchr(name, '/'))
    return cnn_error(CNN_ERR_ARG, "cnn_model_path: '%s' is a path, not a model name", name);
  nd = models_dirs(d);
  for (int i = 0; i < nd; i++) {
    append(looked, sizeof looked, "%s%s (%s%s)", i ? ", " : "", d[i].dir, d[i].what,
           d[i].exists ? "" : ", absent");
    if (!d[i].exists) continue;
    if (first < 0) first = i;
    if (!name || !*name) return copy_out(d[i].dir, path, n);
    int w = snprintf(cand, sizeof cand, "%s/%s", d[i].dir, name);
    if (w > 0 && (size_t)w < sizeof cand && is_file(cand)) return copy_out(cand, path, n);
    if (!ends_with(name, ".cfg")) {
      w = snprintf(cand, sizeof cand, "%s/%s.cfg", d[i].dir, name);
      if (w > 0 && (size_t)w < sizeof cand && is_file(cand)) return copy_out(cand, path, n);
    }
  }
  if (!name || !*name)
    return cnn_error(CNN_ERR_IO, "no cnn models directory: looked in %s", looked);
  if (first < 0)
    return cnn_error(CNN_ERR_IO, "no model '%s': no cnn models directory (looked in %s)", name,
                     looked);
  char models[512] = "";
  list_models(d[first].dir, models, sizeof models);
  return cnn_error(CNN_ERR_IO, "no model '%s' in %s; the models in %s: %s", name, looked,
                   d[first].dir, models);
}
