/* Replays every file of tests/fuzz/corpus/<target>/ and tests/fuzz/regress/<target>/
 * (every input that ever crashed a fuzz harness) through the harnesses' own target
 * functions (tests/fuzz/targets.c), without libFuzzer: a normal ctest program, run
 * under ASan+UBSan by `make sanitize`. Each file must be accepted or refused cleanly.
 * CNN_FUZZ_SLOW=1 also replays tests/fuzz/slow/<target>/ (inputs that timed out or ran
 * out of memory: seconds each, or gigabytes, until fixed). */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz/targets.h"
#include "testutil.h"

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* the regular, non-hidden files of dir in name order (replays are deterministic) */
static char **list_files(const char *dir, int *n) {
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return NULL;
  char **v = NULL;
  int cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || !strcmp(e->d_name, "README.md")) continue;
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (*n == cap) {
      cap = cap ? 2 * cap : 32;
      char **nv = realloc(v, (size_t)cap * sizeof *v);
      if (!nv) break;
      v = nv;
    }
    v[(*n)++] = strdup(p);
  }
  closedir(d);
  if (*n > 1) qsort(v, (size_t)*n, sizeof *v, name_cmp);
  return v;
}

static uint8_t *read_file(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  size_t cap = 4096, n = 0;
  uint8_t *p = malloc(cap);
  size_t got;
  while (p && (got = fread(p + n, 1, cap - n, fp)) > 0) {
    n += got;
    if (n == cap) {
      uint8_t *np = realloc(p, cap *= 2);
      if (!np) free(p);
      p = np;
    }
  }
  fclose(fp);
  *len = n;
  return p;
}

/* replay every file of dir through fn; the number replayed */
static int replay_dir(const char *target, cnn_fuzz_fn fn, const char *dir) {
  int n = 0;
  char **files = list_files(dir, &n);
  for (int i = 0; i < n; i++) {
    size_t len = 0;
    uint8_t *data = read_file(files[i], &len);
    CHECK(data != NULL, "cannot read %s", files[i]);
    if (data) {
      printf("replay %s\n", files[i]); /* the last line printed names a crashing input */
      fflush(stdout);
      int rc = fn(data, len);
      CHECK(rc == 0, "fuzz target %s broke a promise on %s (see above)", target, files[i]);
    }
    free(data);
    free(files[i]);
  }
  free(files);
  return n;
}

int main(void) {
  int total = 0;
  for (int t = 0; t < cnn_fuzz_num_targets; t++) {
    const cnn_fuzz_target *ft = &cnn_fuzz_targets[t];
    char dir[4096], rel[256];
    snprintf(rel, sizeof rel, "tests/fuzz/corpus/%s", ft->name);
    int seeds = replay_dir(ft->name, ft->fn, tu_source_path(rel, dir, sizeof dir));
    CHECK(seeds > 0, "no seed inputs in %s", dir);
    snprintf(rel, sizeof rel, "tests/fuzz/regress/%s", ft->name);
    int regress = replay_dir(ft->name, ft->fn, tu_source_path(rel, dir, sizeof dir));
    int slow = 0;
    if (getenv("CNN_FUZZ_SLOW") && *getenv("CNN_FUZZ_SLOW") == '1') {
      snprintf(rel, sizeof rel, "tests/fuzz/slow/%s", ft->name);
      slow = replay_dir(ft->name, ft->fn, tu_source_path(rel, dir, sizeof dir));
    }
    printf("%-10s %4d seeds, %3d regression inputs, %d slow ones replayed\n", ft->name, seeds,
           regress, slow);
    total += seeds + regress + slow;
  }
  CHECK(total > 0, "nothing replayed");
  cnn_fuzz_cleanup();
  return tu_finish("test_fuzz_regress");
}
