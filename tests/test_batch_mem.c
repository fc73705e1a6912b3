/* The batch size from memory:
 *  - the host's free memory: MemAvailable, lowered by cgroup v2 and v1 limits of
 *    the process's cgroup and those above it (fake /proc and /sys files);
 *  - $CNN_MEMORY_LIMIT replaces it, and a malformed value is refused;
 *  - cnn_net_max_batch picks exactly the largest multiple of 8 whose plan
 *    (cnn_net_plan_estimate) + the caller's buffers + the margin fit, found here by
 *    scanning every multiple of 8; cnn_net_batch_check agrees and names the bytes;
 *  - `cnn summary --batch B` prints the plan the search uses;
 *  - `cnn train`, `cnn eval` and `bench_train` with --batch auto under several
 *    CNN_MEMORY_LIMIT values pick that batch (with their own buffers counted as
 *    documented in src/cli/mem_batch.h and bench/bench_train.c), and a batch given
 *    that does not fit is refused before anything is written, with the bytes
 *    needed and available; --no-memory-check builds it anyway. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/backend.h"
#include "cnn/cnn.h"
#include "core/rng.h"
#include "clitest.h"
#include "testutil.h"

static char dir[256];
static const char *bin;

#define NTRAIN 404 /* the batch cap of train: 400 */
#define NTEST 100  /* of eval: 96 */
#define PX 144
#define CLASSES 4

static const char *cfg_text =
    "[net]\nheight=12\nwidth=12\nchannels=1\nbatch=32\nlearning_rate=0.05\nmomentum=0.9\n"
    "[train]\nepochs=1\n"
    "[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\npad=1\nactivation=relu\n"
    "[maxpool]\nsize=2\nstride=2\n[convolutional]\nfilters=16\nsize=3\npad=1\nactivation=relu\n"
    "[connected]\noutput=4\nactivation=linear\n[softmax]\n";

/* ---- files ---- */

static void put(const char *rel, const char *text) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s", dir, rel);
  for (char *s = strchr(p + strlen(dir) + 1, '/'); s; s = strchr(s + 1, '/')) { /* parents */
    *s = 0;
    mkdir(p, 0777);
    *s = '/';
  }
  FILE *f = fopen(p, "w");
  fputs(text, f);
  fclose(f);
}

static char *slurp(const char *rel) { return clitest_slurp(dir, rel); }
static int exists(const char *rel) { return clitest_exists(dir, rel); }
#define put_be32 clitest_put_be32
#define exited_ok clitest_exited_ok
#define failed_cleanly clitest_failed_cleanly

static void write_idx(const char *img_name, const char *lab_name, int n, uint64_t seed) {
  char p[512];
  snprintf(p, sizeof p, "%s/data/%s", dir, img_name);
  FILE *f = fopen(p, "wb");
  put_be32(f, 0x803);
  put_be32(f, (unsigned)n);
  put_be32(f, 12);
  put_be32(f, 12);
  for (size_t i = 0; i < (size_t)n * PX; i++) fputc((int)(cnn_rng_u64(seed, i) >> 56), f);
  fclose(f);
  snprintf(p, sizeof p, "%s/data/%s", dir, lab_name);
  f = fopen(p, "wb");
  put_be32(f, 0x801);
  put_be32(f, (unsigned)n);
  for (int i = 0; i < n; i++) fputc((int)(cnn_rng_u64(seed + 1, (uint64_t)i) % CLASSES), f);
  fclose(f);
}

/* `prog args` in dir with CNN_MEMORY_LIMIT=limit (0: unset), output to out */
static int run(const char *prog, size_t limit, const char *args, const char *out) {
  char cmd[2048], env[64] = "";
  if (limit) snprintf(env, sizeof env, "CNN_MEMORY_LIMIT=%zu", limit);
  snprintf(cmd, sizeof cmd, "cd %s && exec env -u CNN_MEMORY_LIMIT %s OMP_NUM_THREADS=2 %s %s > %s/%s 2>&1",
           dir, env, prog, args, dir, out);
  return system(cmd);
}

/* the number after `key` in s, -1 if absent */
static long long after(const char *s, const char *key) {
  const char *p = strstr(s, key);
  return p ? atoll(p + strlen(key)) : -1;
}

/* ---- the expected figures, from the library's plan and the documented margin ---- */

typedef struct expect {
  cnn_net *net;
  cnn_backend *b;
  cnn_mode mode;
  size_t fixed, per_image; /* the command's own buffers */
  int cap;
} expect;

static size_t need(const expect *e, int batch) {
  cnn_plan_info p;
  if (cnn_net_plan_estimate(e->net, e->b, batch, e->mode, &p) != CNN_OK) {
    fprintf(stderr, "plan estimate: %s\n", cnn_last_error());
    exit(1);
  }
  size_t sum = p.peak_bytes + e->fixed + e->per_image * (size_t)batch;
  return sum + sum / 100 * 10 + ((size_t)64 << 20);
}

/* the largest multiple of 8 up to the cap that fits `limit`, by scanning them all */
static int largest(const expect *e, size_t limit) {
  int best = 0;
  for (int b = 8; b <= e->cap; b += 8)
    if (need(e, b) <= limit) best = b;
  return best;
}

static void expect_init(expect *e, cnn_mode mode) {
  memset(e, 0, sizeof *e);
  e->mode = mode;
  if (cnn_net_from_cfg_text(cfg_text, "model.cfg", &e->net) != CNN_OK ||
      cnn_backend_create("cpu", &e->b) != CNN_OK ||
      cnn_net_set_precision(e->net, e->b, CNN_PRECISION_AUTO) != CNN_OK) {
    fprintf(stderr, "%s\n", cnn_last_error());
    exit(1);
  }
  e->cap = 65536;
}

static void expect_free(expect *e) {
  cnn_net_destroy(e->net);
  cnn_backend_destroy(e->b);
}

/* ---- host memory files ---- */

static void test_host_mem(void) {
  char mi[512], pc[512], cg2[512], cg1[512];
  size_t avail = 0, total = 0;
  const char *src = NULL;
  snprintf(mi, sizeof mi, "%s/fake/meminfo", dir);
  snprintf(pc, sizeof pc, "%s/fake/cgroup", dir);
  snprintf(cg2, sizeof cg2, "%s/fake/cg2", dir);
  snprintf(cg1, sizeof cg1, "%s/fake/cg1", dir);
  put("fake/meminfo", "MemTotal:        8000000 kB\nMemFree:         1000000 kB\n"
                      "MemAvailable:    4000000 kB\nBuffers: 1 kB\n");
  CHECK_OK(cnn_host_mem_read(mi, NULL, NULL, NULL, &avail, &total, &src));
  CHECK(avail == 4000000ull * 1024 && total == 8000000ull * 1024, "meminfo: %zu of %zu", avail,
        total);
  CHECK(src && strstr(src, "MemAvailable"), "source %s", src ? src : "(null)");

  /* cgroup v2: the process in /a/b; b limits to 3e9 with 1e9 used of which 2e8 is
   * inactive file cache: 2.2e9 left, under MemAvailable's 4.096e9 */
  put("fake/cgroup", "0::/a/b\n");
  put("fake/cg2/a/b/memory.max", "3000000000\n");
  put("fake/cg2/a/b/memory.current", "1000000000\n");
  put("fake/cg2/a/b/memory.stat", "anon 800000000\nfile 200000000\ninactive_file 200000000\n");
  put("fake/cg2/a/memory.max", "max\n");
  put("fake/cg2/a/memory.current", "5000000000\n");
  CHECK_OK(cnn_host_mem_read(mi, pc, cg2, cg1, &avail, &total, &src));
  CHECK(avail == 2200000000ull && total == 3000000000ull, "cgroup v2: %zu of %zu", avail, total);
  CHECK(src && strstr(src, "memory.max"), "source %s", src ? src : "(null)");
  /* a tighter limit above it wins: /a allows 2.5e9 and holds 2e9 */
  put("fake/cg2/a/memory.max", "2500000000\n");
  put("fake/cg2/a/memory.current", "2000000000\n");
  CHECK_OK(cnn_host_mem_read(mi, pc, cg2, cg1, &avail, &total, &src));
  CHECK(avail == 500000000ull && total == 2500000000ull, "the parent's limit: %zu of %zu", avail,
        total);
  /* a cgroup path that is not under the mount (another namespace): the mount's root */
  put("fake/cgroup", "0::/elsewhere\n");
  put("fake/cg2/memory.max", "1000000000\n");
  put("fake/cg2/memory.current", "100000000\n");
  CHECK_OK(cnn_host_mem_read(mi, pc, cg2, cg1, &avail, &total, &src));
  CHECK(avail == 900000000ull, "the mount's root: %zu", avail);

  /* cgroup v1: no limit of its own ("unlimited" is 2^63 - 4096), one above */
  put("fake/cgroup", "5:cpu,cpuacct:/x\n4:memory:/p/q\n0::/\n");
  put("fake/cg2/memory.max", "max\n");
  put("fake/cg1/p/q/memory.limit_in_bytes", "9223372036854771712\n");
  put("fake/cg1/p/q/memory.usage_in_bytes", "100\n");
  put("fake/cg1/p/memory.limit_in_bytes", "2000000000\n");
  put("fake/cg1/p/memory.usage_in_bytes", "1500000000\n");
  put("fake/cg1/p/memory.stat", "cache 1\ninactive_file 7\ntotal_inactive_file 300000000\n");
  char cg2none[600];
  snprintf(cg2none, sizeof cg2none, "%s/none", cg2);
  CHECK_OK(cnn_host_mem_read(mi, pc, cg2none, cg1, &avail, &total, &src));
  CHECK(avail == 800000000ull && total == 2000000000ull, "cgroup v1: %zu of %zu", avail, total);
  CHECK(src && strstr(src, "limit_in_bytes"), "source %s", src ? src : "(null)");
  /* no limit anywhere: MemAvailable */
  put("fake/cg1/p/memory.limit_in_bytes", "9223372036854771712\n");
  CHECK_OK(cnn_host_mem_read(mi, pc, cg2none, cg1, &avail, &total, &src));
  CHECK(avail == 4000000ull * 1024, "no limit: %zu", avail);
  CHECK(cnn_host_mem_read("/nonexistent/meminfo", pc, cg2, cg1, &avail, &total, &src) ==
            CNN_UNSUPPORTED, "no meminfo is refused");

  /* this machine's, as the cpu backend reports it */
  cnn_backend *b;
  CHECK_OK(cnn_backend_create("cpu", &b));
  unsetenv("CNN_MEMORY_LIMIT");
  CHECK_OK(cnn_backend_mem_info(b, &avail, &total, &src));
  CHECK(avail > 0 && avail <= total, "this host: %zu of %zu (%s)", avail, total, src);
  cnn_backend_destroy(b);
}

static void test_env_limit(void) {
  cnn_backend *b;
  CHECK_OK(cnn_backend_create("ref", &b));
  struct { const char *v; size_t want; } ok[] = {
      {"1500", 1500}, {"300M", (size_t)300 << 20}, {"2G", (size_t)2 << 30}, {"2gb", (size_t)2 << 30},
      {"7k", 7 << 10}, {"1T", (size_t)1 << 40}};
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
    size_t a = 0, t = 0;
    const char *src = NULL;
    setenv("CNN_MEMORY_LIMIT", ok[i].v, 1);
    CHECK_OK(cnn_backend_mem_info(b, &a, &t, &src));
    CHECK(a == ok[i].want && t == ok[i].want && src && !strcmp(src, "CNN_MEMORY_LIMIT"),
          "CNN_MEMORY_LIMIT=%s: %zu", ok[i].v, a);
  }
  const char *bad[] = {"abc", "0", "-5", "12Q", "5M5", "99999999999999999999T"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    size_t a;
    setenv("CNN_MEMORY_LIMIT", bad[i], 1);
    cnn_status st = cnn_backend_mem_info(b, &a, NULL, NULL);
    CHECK(st == CNN_ERR_ARG && strstr(cnn_last_error(), "CNN_MEMORY_LIMIT"),
          "CNN_MEMORY_LIMIT=%s refused: %s", bad[i], cnn_last_error());
  }
  unsetenv("CNN_MEMORY_LIMIT");
  cnn_backend_destroy(b);
}

/* ---- the library's search ---- */

static void test_library(void) {
  for (int m = 0; m < 2; m++) {
    expect e;
    expect_init(&e, m ? CNN_MODE_TRAIN : CNN_MODE_INFER);
    e.fixed = 12345;
    e.per_image = 1000;
    size_t base = need(&e, 8);
    size_t limits[] = {base - 1, base, need(&e, 96) + 1, need(&e, 104) - 1, base + ((size_t)50 << 20)};
    for (size_t i = 0; i < sizeof limits / sizeof *limits; i++) {
      char v[32];
      snprintf(v, sizeof v, "%zu", limits[i]);
      setenv("CNN_MEMORY_LIMIT", v, 1);
      int want = largest(&e, limits[i]);
      cnn_batch_fit fit;
      memset(&fit, 0, sizeof fit);
      fit.extra_fixed = e.fixed;
      fit.extra_per_image = e.per_image;
      cnn_status st = cnn_net_max_batch(e.net, e.b, e.mode, 0, &fit);
      if (!want) {
        CHECK(st == CNN_ERR_NOMEM && fit.batch == 8 && fit.need_bytes == base,
              "mode %d limit %zu: nothing fits: %s", m, limits[i], cnn_last_error());
        continue;
      }
      CHECK(st == CNN_OK && fit.batch == want, "mode %d limit %zu: batch %d, the scan found %d (%s)",
            m, limits[i], fit.batch, want, st ? cnn_last_error() : "ok");
      CHECK(fit.need_bytes == need(&e, want) && fit.avail_bytes == limits[i] &&
                fit.need_bytes == fit.plan_bytes + fit.extra_bytes + fit.margin_bytes &&
                fit.extra_bytes == e.fixed + e.per_image * (size_t)want,
            "mode %d: the figures of batch %d: need %zu", m, want, fit.need_bytes);
      CHECK(need(&e, want + 8) > limits[i], "the next multiple of 8 does not fit");
      CHECK_OK(cnn_net_batch_check(e.net, e.b, want, e.mode, &fit));
      st = cnn_net_batch_check(e.net, e.b, want + 8, e.mode, &fit);
      char n1[64], n2[64];
      snprintf(n1, sizeof n1, "needs %zu bytes", need(&e, want + 8));
      snprintf(n2, sizeof n2, "%zu bytes", limits[i]);
      CHECK(st == CNN_ERR_NOMEM && strstr(cnn_last_error(), n1) && strstr(cnn_last_error(), n2),
            "batch %d is refused naming the bytes: %s", want + 8, cnn_last_error());
    }
    /* the cap: everything fits, the answer is the cap rounded down to a multiple of 8 */
    setenv("CNN_MEMORY_LIMIT", "1T", 1);
    cnn_batch_fit fit;
    memset(&fit, 0, sizeof fit);
    CHECK(cnn_net_max_batch(e.net, e.b, e.mode, 101, &fit) == CNN_OK && fit.batch == 96,
          "capped at 101: %d", fit.batch);
    CHECK(cnn_net_max_batch(e.net, e.b, e.mode, 3, &fit) == CNN_OK && fit.batch == 8,
          "a cap under 8 still gives 8: %d", fit.batch);
    unsetenv("CNN_MEMORY_LIMIT");
    expect_free(&e);
  }
}

/* `cnn summary --batch B` prints the plan the search counts */
static void test_summary(void) {
  expect e;
  expect_init(&e, CNN_MODE_TRAIN);
  for (int batch = 24; batch <= 240; batch += 216) {
    char args[128];
    snprintf(args, sizeof args, "summary model.cfg --batch %d", batch);
    int st = run(bin, 0, args, "summary.txt");
    char *o = slurp("summary.txt");
    cnn_plan_info p;
    CHECK_OK(cnn_net_plan_estimate(e.net, e.b, batch, CNN_MODE_TRAIN, &p));
    const char *peak = strstr(o, "peak");
    CHECK(exited_ok(st) && peak && after(peak, "(") == (long long)p.peak_bytes,
          "summary --batch %d prints peak %lld, the library %zu", batch,
          peak ? after(peak, "(") : -1, p.peak_bytes);
    free(o);
  }
  expect_free(&e);
}

/* ---- the commands ---- */

/* what train and eval allocate on the cpu besides the net (src/cli/mem_batch.h) */
static void train_extras(expect *e) {
  e->per_image = 2 * (PX * 4 + 4) + (PX * 4 + 4 + CLASSES * 4) + (CLASSES * 4 + 4);
  e->fixed = 4 * (NTRAIN + NTEST);
  e->cap = NTRAIN / 8 * 8;
}

static void eval_extras(expect *e) {
  e->per_image = (PX * 4 + 4 + CLASSES * 4) + (CLASSES * 4 + 4);
  e->fixed = 4 * NTEST;
  e->cap = NTEST / 8 * 8;
}

static void test_train_eval(void) {
  expect tr, ev;
  expect_init(&tr, CNN_MODE_TRAIN);
  expect_init(&ev, CNN_MODE_INFER);
  train_extras(&tr);
  eval_extras(&ev);
  /* limits just over the need of a few batches, a round figure, and one that caps */
  size_t limits[] = {need(&tr, 16) + 100, (need(&tr, 200) + need(&tr, 208)) / 2, 72000000,
                     (size_t)1 << 30};
  const char *trained = NULL;
  for (size_t i = 0; i < sizeof limits / sizeof *limits; i++) {
    int want = largest(&tr, limits[i]);
    char args[512], out[64];
    snprintf(out, sizeof out, "train%zu.txt", i);
    snprintf(args, sizeof args, "train model.cfg --data idx:data --batch auto --device cpu "
             "--out run%zu", i);
    int st = run(bin, limits[i], args, out);
    char *o = slurp(out);
    long long got = after(o, "--batch auto: ");
    CHECK(exited_ok(st) && want > 0 && got == want,
          "train under %zu bytes: --batch auto picked %lld, the plan says %d: %s", limits[i], got,
          want, o);
    CHECK(after(o, "it needs ") == (long long)need(&tr, want) && need(&tr, want) <= limits[i] &&
              (want + 8 > tr.cap || need(&tr, want + 8) > limits[i]),
          "train batch %d needs %zu of %zu; %d would need %zu", want, need(&tr, want), limits[i],
          want + 8, need(&tr, want + 8));
    char hyper[64];
    snprintf(hyper, sizeof hyper, ", batch %d,", want);
    CHECK(strstr(o, hyper) != NULL, "train ran with batch %d", want);
    if (exited_ok(st) && i == 3) trained = "run3/last.safetensors";
    free(o);
  }
  CHECK(largest(&tr, (size_t)1 << 30) == NTRAIN / 8 * 8, "1 GiB caps at the data set's size");

  /* an explicit batch that does not fit: refused before anything is written */
  size_t lim = limits[1];
  int fits = largest(&tr, lim), big = fits + 8;
  char args[512];
  snprintf(args, sizeof args, "train model.cfg --data idx:data --batch %d --device cpu --out big",
           big);
  int st = run(bin, lim, args, "big.txt");
  char *o = slurp("big.txt");
  CHECK(failed_cleanly(st), "batch %d under %zu bytes is refused: %s", big, lim, o);
  CHECK(after(o, "needs ") == (long long)need(&tr, big) && after(o, "cpu has ") == (long long)lim &&
            after(o, "the largest batch that fits is ") == fits,
        "the refusal names %zu bytes needed, %zu available and batch %d: %s", need(&tr, big), lim,
        fits, o);
  CHECK(!exists("big"), "nothing was written for the refused run");
  free(o);
  snprintf(args, sizeof args, "train model.cfg --data idx:data --batch %d --device cpu --out big "
           "--no-memory-check --quiet", big);
  st = run(bin, lim, args, "big2.txt");
  o = slurp("big2.txt");
  CHECK(exited_ok(st) && exists("big/last.safetensors"), "--no-memory-check trains: %s", o);
  free(o);

  /* eval: the same under its own plan (inference) and buffers */
  if (trained) {
    size_t elim[] = {need(&ev, 8) + 1, (need(&ev, 40) + need(&ev, 48)) / 2, (size_t)1 << 30};
    for (size_t i = 0; i < sizeof elim / sizeof *elim; i++) {
      int want = largest(&ev, elim[i]);
      char out[64];
      snprintf(out, sizeof out, "eval%zu.txt", i);
      snprintf(args, sizeof args, "eval %s --batch auto --device cpu", trained);
      st = run(bin, elim[i], args, out);
      o = slurp(out);
      long long got = after(o, "--batch auto: ");
      CHECK(exited_ok(st) && got == want && strstr(o, "accuracy: "),
            "eval under %zu bytes: --batch auto picked %lld, the plan says %d: %s", elim[i], got,
            want, o);
      CHECK(after(o, "it needs ") == (long long)need(&ev, want) &&
                (want + 8 > ev.cap || need(&ev, want + 8) > elim[i]),
            "eval batch %d needs %zu of %zu", want, need(&ev, want), elim[i]);
      free(o);
    }
    CHECK(largest(&ev, (size_t)1 << 30) == 96, "eval caps at the test set's 100 images: 96");
    lim = elim[1];
    big = largest(&ev, lim) + 8;
    snprintf(args, sizeof args, "eval %s --batch %d --device cpu", trained, big);
    st = run(bin, lim, args, "evalbig.txt");
    o = slurp("evalbig.txt");
    CHECK(failed_cleanly(st) && after(o, "needs ") == (long long)need(&ev, big) &&
              after(o, "cpu has ") == (long long)lim && !strstr(o, "accuracy: "),
          "eval batch %d under %zu bytes is refused with the bytes: %s", big, lim, o);
    free(o);
    snprintf(args, sizeof args, "eval %s --batch %d --device cpu --no-memory-check", trained, big);
    st = run(bin, lim, args, "evalbig2.txt");
    o = slurp("evalbig2.txt");
    CHECK(exited_ok(st) && strstr(o, "accuracy: "), "eval --no-memory-check runs: %s", o);
    free(o);
  }
  st = run(bin, 0, "train model.cfg --data idx:data --batch automatic", "badbatch.txt");
  o = slurp("badbatch.txt");
  CHECK(failed_cleanly(st) && strstr(o, "auto"), "--batch automatic is refused: %s", o);
  free(o);
  expect_free(&tr);
  expect_free(&ev);
}

/* bench_train --batch auto: its random batch and host outputs besides the plan */
static void test_bench(void) {
  char bench[1024];
  snprintf(bench, sizeof bench, "%s", bin);
  char *slash = strrchr(bench, '/');
  snprintf(slash ? slash + 1 : bench, sizeof bench - (size_t)(slash ? slash + 1 - bench : 0),
           "bench_train");
  if (access(bench, X_OK)) {
    CHECK(0, "bench_train next to cnn: %s", bench);
    return;
  }
  expect e;
  expect_init(&e, CNN_MODE_TRAIN);
  e.per_image = PX * 4 + 4 + CLASSES * 4 + 4;
  size_t lim = (need(&e, 120) + need(&e, 128)) / 2;
  int want = largest(&e, lim);
  int st = run(bench, lim, "model.cfg --device cpu --batch auto --steps 1 --warmup 0", "bench.txt");
  char *o = slurp("bench.txt");
  char ran[64];
  snprintf(ran, sizeof ran, "training batch %d:", want);
  CHECK(exited_ok(st) && want == 120 && after(o, "--batch auto: ") == want && strstr(o, ran),
        "bench_train under %zu bytes: batch %d expected: %s", lim, want, o);
  free(o);
  st = run(bench, lim, "model.cfg --device cpu --batch 128 --steps 1 --warmup 0", "bench2.txt");
  o = slurp("bench2.txt");
  CHECK(failed_cleanly(st) && after(o, "needs ") == (long long)need(&e, 128) &&
            !strstr(o, "images/s"),
        "bench_train batch 128 is refused with the bytes: %s", o);
  free(o);
  expect_free(&e);
}

int main(void) {
  setenv("OMP_NUM_THREADS", "2", 1); /* the cpu's conv workspace follows the thread count */
  unsetenv("CNN_MEMORY_LIMIT");
  bin = getenv("CNN_BIN");
  snprintf(dir, sizeof dir, "/tmp/cnn_batch_mem_XXXXXX");
  if (!mkdtemp(dir)) return 1;
  test_host_mem();
  test_env_limit();
  test_library();
  if (!bin) {
    fprintf(stderr, "CNN_BIN (the cnn command) is not set: the commands are not tested\n");
    CHECK(0, "run under ctest");
  } else {
    put("model.cfg", cfg_text);
    char p[512];
    snprintf(p, sizeof p, "%s/data", dir);
    mkdir(p, 0777);
    write_idx("train-images-idx3-ubyte", "train-labels-idx1-ubyte", NTRAIN, 1);
    write_idx("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", NTEST, 7);
    test_summary();
    test_train_eval();
    test_bench();
  }
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (tu_failures == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return tu_finish("test_batch_mem");
}
