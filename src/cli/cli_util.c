/* What every subcommand uses (not in main.c: cnn_xtool links the commands too). */
#define _POSIX_C_SOURCE 200809L /* stat */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cnn/cnn.h"
#include "core/error.h"

const char *cli_model_cfg(const char *arg) {
  static char path[4096];
  char why[1024];
  struct stat st;
  if (!arg || strchr(arg, '/') || stat(arg, &st) == 0) return arg;
  if (cnn_model_path(arg, path, sizeof path) == CNN_OK) return path;
  snprintf(why, sizeof why, "%s", cnn_last_error());
  cnn_error(CNN_ERR_IO, "%s: no such file, and %s", arg, why);
  return NULL;
}

int cli_fail(const char *what) {
  fprintf(stderr, "cnn: %s%s%s\n", what ? what : "", what && *cnn_last_error() ? ": " : "",
          cnn_last_error());
  return 1;
}

int cli_int(const char *flag, const char *v, int lo, int hi, int *out) {
  char *end;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || end == v || *end || x < lo || x > hi) {
    fprintf(stderr, "cnn: %s needs an integer in [%d, %d], got '%s'\n", flag, lo, hi,
            v ? v : "(nothing)");
    return 0;
  }
  *out = (int)x;
  return 1;
}

int cli_ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

int cli_engine_arg(int argc, char **argv, int *i, cli_engine *e) {
  const char *a = argv[*i];
  const char **slot = !strcmp(a, "--conv-engine") ? &e->conv_engine
                      : !strcmp(a, "--workspace") ? &e->workspace
                      : !strcmp(a, "--tune-cache") ? &e->tune_cache
                                                   : NULL;
  if (!slot || *i + 1 >= argc) return 0;
  *slot = argv[++*i];
  return 1;
}

cnn_status cli_engine_apply(cnn_backend *b, const cli_engine *e) {
  if (!e) return CNN_OK;
  if (e->conv_engine) CNN_TRY(cnn_backend_set_option(b, "conv-engine", e->conv_engine));
  if (e->workspace) CNN_TRY(cnn_backend_set_option(b, "workspace", e->workspace));
  if (e->tune_cache) CNN_TRY(cnn_backend_set_option(b, "tune-cache", e->tune_cache));
  return CNN_OK;
}
