/* What every subcommand uses (not in main.c: cnn_xtool links the commands too). */
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "cnn/cnn.h"

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
