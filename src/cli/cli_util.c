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
