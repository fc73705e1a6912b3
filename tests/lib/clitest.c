#define _POSIX_C_SOURCE 200809L
#include "clitest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/rng.h"
#include "testutil.h"

const char *clitest_setup(const char *prefix, char *dir, size_t len) {
  const char *bin = getenv("CNN_BIN");
  if (!bin) tu_skip("CNN_BIN (the cnn command) is not set; run under ctest");
  snprintf(dir, len, "/tmp/%s_XXXXXX", prefix);
  if (!mkdtemp(dir)) {
    fprintf(stderr, "mkdtemp %s: %s\n", dir, strerror(errno));
    exit(1);
  }
  return bin;
}

int clitest_finish(const char *name, const char *dir) {
  int rc = tu_finish(name);
  if (!rc) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  } else {
    fprintf(stderr, "files kept in %s\n", dir);
  }
  return rc;
}

void clitest_put_be32(FILE *f, unsigned v) {
  unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                        (unsigned char)v};
  fwrite(b, 1, 4, f);
}

void clitest_quadrant_images(int n, uint64_t seed, uint8_t *img, uint8_t *lab) {
  for (int i = 0; i < n; i++) {
    int q = (int)(cnn_rng_u64(seed, (uint64_t)i * 1000) % 4);
    lab[i] = (uint8_t)q;
    int cy = (q / 2) * 6 + 1 + (int)(cnn_rng_u64(seed, (uint64_t)i * 1000 + 1) % 3);
    int cx = (q % 2) * 6 + 1 + (int)(cnn_rng_u64(seed, (uint64_t)i * 1000 + 2) % 3);
    for (int y = 0; y < 12; y++)
      for (int x = 0; x < 12; x++) {
        int v = (int)(cnn_rng_uniform(seed, (uint64_t)i * 1000 + 10 + y * 12 + x) * 90);
        if (y >= cy && y < cy + 3 && x >= cx && x < cx + 3) v += 150;
        img[(size_t)i * 144 + y * 12 + x] = (uint8_t)(v > 255 ? 255 : v);
      }
  }
}

void clitest_write_quadrants(const char *dir, const char *img, const char *lab, int n,
                             uint64_t seed) {
  uint8_t *pix = malloc((size_t)n * 144), *labels = malloc((size_t)n ? (size_t)n : 1);
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, img);
  FILE *fi = fopen(p, "wb");
  snprintf(p, sizeof p, "%s/%s", dir, lab);
  FILE *fl = fopen(p, "wb");
  if (!pix || !labels || !fi || !fl) {
    fprintf(stderr, "clitest: cannot write %s\n", p);
    exit(1);
  }
  clitest_quadrant_images(n, seed, pix, labels);
  clitest_put_be32(fi, 0x803), clitest_put_be32(fi, (unsigned)n);
  clitest_put_be32(fi, 12), clitest_put_be32(fi, 12);
  clitest_put_be32(fl, 0x801), clitest_put_be32(fl, (unsigned)n);
  fwrite(pix, 1, (size_t)n * 144, fi);
  fwrite(labels, 1, (size_t)n, fl);
  fclose(fi);
  fclose(fl);
  free(pix);
  free(labels);
}

char *clitest_slurp(const char *dir, const char *rel) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, rel);
  FILE *f = fopen(p, "rb");
  if (!f) return calloc(1, 1);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)(n > 0 ? n : 0) + 1);
  s[fread(s, 1, (size_t)(n > 0 ? n : 0), f)] = 0;
  fclose(f);
  return s;
}

int clitest_exists(const char *dir, const char *rel) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, rel);
  return access(p, F_OK) == 0;
}

int clitest_exited_ok(int st) { return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0; }
int clitest_failed_cleanly(int st) { return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) != 0; }
