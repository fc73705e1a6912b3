/* The conv tuner's cache file (src/backend/tune_cache.c): round trip, keys that
 * tell shapes, maths and passes apart, and every way a file is refused (corrupt,
 * foreign device, truncated, duplicate) without losing the caller's state. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/tune_cache.h"
#include "testutil.h"

static char dir[] = "/tmp/cnn_tune_XXXXXX";

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK(f != NULL, "cannot write %s", path);
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

static cnn_conv_desc desc(void) {
  cnn_conv_desc d = {.n = 8, .h = 32, .w = 32, .c = 64, .k = 128, .r = 3, .s = 3, .oh = 16,
                     .ow = 16, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1,
                     .dil_h = 1, .dil_w = 1, .groups = 1, .math = CNN_MATH_BF16};
  return d;
}

static void test_keys(void) {
  char a[CNN_TUNE_KEY_MAX], b[CNN_TUNE_KEY_MAX];
  cnn_conv_desc d = desc(), e = desc();
  cnn_tune_key(&d, CNN_CONV_FWD, a, sizeof a);
  cnn_tune_key(&e, CNN_CONV_FWD, b, sizeof b);
  CHECK(!strcmp(a, b), "equal shapes give equal keys");
  CHECK(strchr(a, ' ') == NULL && strlen(a) + 1 < sizeof a, "key '%s' is one short token", a);
  CHECK(strstr(a, "bf16") != NULL, "key '%s' names the math", a);
  cnn_tune_key(&d, CNN_CONV_BWD_DATA, b, sizeof b);
  CHECK(strcmp(a, b) != 0, "passes differ");
  e.math = CNN_MATH_TF32;
  cnn_tune_key(&e, CNN_CONV_FWD, b, sizeof b);
  CHECK(strcmp(a, b) != 0, "maths differ");
  e = desc();
  e.pad_w = 0;
  cnn_tune_key(&e, CNN_CONV_FWD, b, sizeof b);
  CHECK(strcmp(a, b) != 0, "paddings differ");
  e = desc();
  e.groups = 2;
  cnn_tune_key(&e, CNN_CONV_FWD, b, sizeof b);
  CHECK(strcmp(a, b) != 0, "groups differ");
  /* the largest shapes still fit the key */
  e.n = e.h = e.w = e.c = e.k = e.oh = e.ow = 2000000000;
  cnn_tune_key(&e, CNN_CONV_BWD_FILTER, b, sizeof b);
  CHECK(strlen(b) + 1 < sizeof b, "a key of 10-digit sizes fits (%zu chars)", strlen(b));
}

static void test_round_trip(void) {
  char path[256], why[512];
  snprintf(path, sizeof path, "%s/sub/dir/tune.txt", dir); /* parents are created */
  cnn_tune_cache c, r;
  CHECK_OK(cnn_tune_cache_init(&c, "NVIDIA H200\n|cc 9.0|cudnn 91900"));
  CHECK(strchr(c.device, '\n') == NULL, "newlines leave the device id");
  CHECK_OK(cnn_tune_cache_put(&c, "fwd:k1", "tc-bf16-fwd-128x128", 0.125));
  CHECK_OK(cnn_tune_cache_put(&c, "bwd-data:k1", "simt", 1.5));
  CHECK_OK(cnn_tune_cache_put(&c, "fwd:k1", "cudnn-fwd-implicit-precomp-gemm", 0.1));
  CHECK(c.n == 2 && c.dirty, "put replaces an existing key (n %d)", c.n);
  CHECK(cnn_tune_cache_put(&c, "has space", "simt", 1) != CNN_OK, "keys hold no whitespace");
  CHECK(cnn_tune_cache_put(&c, "k", "", 1) != CNN_OK, "an empty engine name is refused");
  CHECK_OK(cnn_tune_cache_save(&c, path));
  CHECK(!c.dirty, "save clears dirty");

  CHECK_OK(cnn_tune_cache_init(&r, c.device));
  CHECK(cnn_tune_cache_load(&r, path, why, sizeof why) == 1, "load: %s", why);
  CHECK(r.n == 2, "2 entries back, got %d", r.n);
  const cnn_tune_entry *e = cnn_tune_cache_get(&r, "fwd:k1");
  CHECK(e && !strcmp(e->engine, "cudnn-fwd-implicit-precomp-gemm") && e->ms == 0.1,
        "fwd:k1 round trip (%s)", e ? e->engine : "missing");
  e = cnn_tune_cache_get(&r, "bwd-data:k1");
  CHECK(e && !strcmp(e->engine, "simt") && e->ms == 1.5, "bwd-data:k1 round trip");
  CHECK(cnn_tune_cache_get(&r, "bwd-filter:k1") == NULL, "absent key");
  cnn_tune_cache_clear(&r);

  /* another device: ignored, with the reason */
  CHECK_OK(cnn_tune_cache_init(&r, "NVIDIA H100|cc 9.0|cudnn 91900"));
  CHECK(cnn_tune_cache_load(&r, path, why, sizeof why) == -1 && r.n == 0,
        "a foreign cache is ignored");
  CHECK(strstr(why, "another device") != NULL, "why: '%s'", why);
  cnn_tune_cache_clear(&r);
  cnn_tune_cache_clear(&c);

  /* missing file: 0, not an error */
  snprintf(path, sizeof path, "%s/none.txt", dir);
  CHECK_OK(cnn_tune_cache_init(&r, "x"));
  CHECK(cnn_tune_cache_load(&r, path, why, sizeof why) == 0 && r.n == 0, "missing file");
  cnn_tune_cache_clear(&r);
}

static void test_corrupt(void) {
  static const char *const bad[] = {
      "",                                             /* empty */
      "\x89PNG\r\n",                                  /* another file */
      "cnn-tune 2\ndevice d\n",                       /* other version */
      "cnn-tune 1\n",                                 /* no device line */
      "cnn-tune 1\ndevice d\nfwd:a simt\n",           /* no time */
      "cnn-tune 1\ndevice d\nfwd:a simt 1.0 extra\n", /* trailing field */
      "cnn-tune 1\ndevice d\nfwd:a simt -1\n",        /* negative time */
      "cnn-tune 1\ndevice d\nfwd:a simt nan\n",       /* NaN time */
      "cnn-tune 1\ndevice d\nfwd:a simt 1\nfwd:a tc 2\n", /* duplicate */
  };
  char path[256], why[512];
  snprintf(path, sizeof path, "%s/bad.txt", dir);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    write_file(path, bad[i]);
    cnn_tune_cache c;
    CHECK_OK(cnn_tune_cache_init(&c, "d"));
    CHECK_OK(cnn_tune_cache_put(&c, "stale", "simt", 1)); /* load replaces entries */
    int r = cnn_tune_cache_load(&c, path, why, sizeof why);
    CHECK(r == -1 && c.n == 0, "corrupt case %zu refused (r %d, n %d)", i, r, c.n);
    CHECK(strstr(why, path) != NULL && strstr(why, "line") != NULL,
          "case %zu: the warning names file and line: '%s'", i, why);
    cnn_tune_cache_clear(&c);
  }
  /* a line longer than any valid one */
  {
    char big[2048];
    int p = snprintf(big, sizeof big, "cnn-tune 1\ndevice d\n");
    memset(big + p, 'k', 1500);
    strcpy(big + p + 1500, " simt 1\n");
    write_file(path, big);
    cnn_tune_cache c;
    CHECK_OK(cnn_tune_cache_init(&c, "d"));
    CHECK(cnn_tune_cache_load(&c, path, why, sizeof why) == -1, "an overlong line is refused");
    cnn_tune_cache_clear(&c);
  }
  /* valid, last line without newline */
  write_file(path, "cnn-tune 1\ndevice d\nfwd:a simt 1\nfwd:b tc 0.5");
  cnn_tune_cache c;
  CHECK_OK(cnn_tune_cache_init(&c, "d"));
  CHECK(cnn_tune_cache_load(&c, path, why, sizeof why) == 1 && c.n == 2, "valid file: %s", why);
  cnn_tune_cache_clear(&c);
  /* a save over a corrupt file replaces it */
  write_file(path, "garbage\n");
  CHECK_OK(cnn_tune_cache_init(&c, "d"));
  CHECK_OK(cnn_tune_cache_put(&c, "fwd:a", "simt", 2));
  CHECK_OK(cnn_tune_cache_save(&c, path));
  cnn_tune_cache_clear(&c);
  CHECK_OK(cnn_tune_cache_init(&c, "d"));
  CHECK(cnn_tune_cache_load(&c, path, why, sizeof why) == 1 && c.n == 1, "rewritten: %s", why);
  cnn_tune_cache_clear(&c);
}

static void test_paths(void) {
  char buf[512];
  unsetenv("CNN_TUNE_CACHE");
  setenv("XDG_CACHE_HOME", "/x/cache", 1);
  CHECK(cnn_tune_cache_path("NVIDIA H200|cc 9.0", buf, sizeof buf) &&
            !strcmp(buf, "/x/cache/cnn/tune-NVIDIA_H200_cc_9.0.txt"),
        "XDG path: %s", buf);
  unsetenv("XDG_CACHE_HOME");
  setenv("HOME", "/home/u", 1);
  CHECK(cnn_tune_cache_path("a/b", buf, sizeof buf) && !strcmp(buf, "/home/u/.cache/cnn/tune-a_b.txt"),
        "HOME path: %s", buf);
  setenv("CNN_TUNE_CACHE", "/tmp/t.txt", 1);
  CHECK(cnn_tune_cache_path("a", buf, sizeof buf) && !strcmp(buf, "/tmp/t.txt"), "env path");
  unsetenv("CNN_TUNE_CACHE");
  unsetenv("HOME");
  CHECK(cnn_tune_cache_path("a", buf, sizeof buf) == NULL, "no home: NULL");
}

int main(void) {
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  test_keys();
  test_round_trip();
  test_corrupt();
  test_paths();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0, "cleanup");
  return tu_finish("test_tune_cache");
}
