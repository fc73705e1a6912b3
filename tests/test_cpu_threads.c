/* The cpu backend's thread count and OpenMP wait policy (issue 11):
 *  - cnn_cpu_cores() follows the affinity mask (a child pinned to one CPU sees 1);
 *  - `cnn devices --json` run pinned to one CPU reports 1 OpenMP thread, and
 *    OMP_NUM_THREADS still overrides it;
 *  - cgroup CPU quotas (v2 cpu.max, v1 cfs quota/period) in a made-up tree: the
 *    least along the path from the process's cgroup up, rounded up; none is 0;
 *  - the command runs with OMP_WAIT_POLICY=passive when it was unset, and with the
 *    user's value when set.
 * No timings: the speed under load is measured by bench_train (README, Benchmarks). */
#define _GNU_SOURCE /* sched_setaffinity, CPU_SET */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/backend.h"
#include "cnn/cnn.h"
#include "testutil.h"

static const char *bin;
static int one_cpu = -1; /* a CPU of this process's mask */

static void pin_one(void) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(one_cpu, &s);
  if (sched_setaffinity(0, sizeof s, &s)) _exit(90);
}

/* cnn devices --json in a child (pinned to one CPU if pin), its stdout into out;
 * OMP_NUM_THREADS and OMP_WAIT_POLICY as given (NULL: unset). 0 on exit 0. */
static int devices(int pin, const char *nthreads, const char *policy, char *out, size_t n) {
  int fd[2];
  if (pipe(fd)) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    close(fd[0]);
    dup2(fd[1], 1);
    if (pin) pin_one();
    if (nthreads) setenv("OMP_NUM_THREADS", nthreads, 1);
    else unsetenv("OMP_NUM_THREADS");
    if (policy) setenv("OMP_WAIT_POLICY", policy, 1);
    else unsetenv("OMP_WAIT_POLICY");
    execl(bin, bin, "devices", "--json", (char *)NULL);
    _exit(91);
  }
  close(fd[1]);
  size_t got = 0;
  ssize_t r;
  while (got + 1 < n && (r = read(fd[0], out + got, n - 1 - got)) > 0) got += (size_t)r;
  out[got] = 0;
  char sink[4096];
  while (read(fd[0], sink, sizeof sink) > 0) {
  }
  close(fd[0]);
  int st;
  if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) return -1;
  return WEXITSTATUS(st);
}

/* the number after "key": in json, -1 if absent */
static long num(const char *json, const char *key) {
  char k[64];
  snprintf(k, sizeof k, "\"%s\":", key);
  const char *p = strstr(json, k);
  return p ? strtol(p + strlen(k), NULL, 10) : -1;
}

/* the string after "key": into out ("" if absent) */
static const char *str(const char *json, const char *key, char *out, size_t n) {
  char k[64];
  snprintf(k, sizeof k, "\"%s\":", key);
  const char *p = strstr(json, k);
  out[0] = 0;
  if (!p || !(p = strchr(p + strlen(k), '"'))) return out;
  size_t len = strcspn(p + 1, "\"");
  snprintf(out, n, "%.*s", (int)(len < n ? len : n - 1), p + 1);
  return out;
}

static char tmp[256];

static void put(const char *rel, const char *text) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", tmp, rel);
  for (char *q = p + strlen(tmp) + 1; *q; q++) /* the folders on the way */
    if (*q == '/') {
      *q = 0;
      mkdir(p, 0755);
      *q = '/';
    }
  FILE *f = fopen(p, "w");
  CHECK(f != NULL, "cannot write %s", p);
  if (f) fputs(text, f), fclose(f);
}

static void quotas(void) {
  snprintf(tmp, sizeof tmp, "/tmp/cnn_threads_XXXXXX");
  CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
  char pc[512], cg2[512], cg1[512];
  snprintf(pc, sizeof pc, "%s/cgroup", tmp);
  snprintf(cg2, sizeof cg2, "%s/v2", tmp);
  snprintf(cg1, sizeof cg1, "%s/v1", tmp);
  const char *src = NULL;
  CHECK(cnn_cpu_quota_read(NULL, NULL, NULL, &src) == 0, "no files: a quota");
  put("cgroup", "0::/a/b\n");
  put("v2/a/b/cpu.max", "max 100000\n");
  CHECK(cnn_cpu_quota_read(pc, cg2, NULL, &src) == 0, "cpu.max 'max': a quota");
  put("v2/a/cpu.max", "150000 100000\n");
  CHECK(cnn_cpu_quota_read(pc, cg2, NULL, &src) == 2, "1.5 CPUs above: %d, want 2",
        cnn_cpu_quota_read(pc, cg2, NULL, NULL));
  CHECK(src && !strcmp(src, "cgroup cpu.max"), "source %s", src ? src : "NULL");
  put("v2/a/b/cpu.max", "50000 100000\n");
  CHECK(cnn_cpu_quota_read(pc, cg2, NULL, NULL) == 1, "0.5 CPU below 1.5: %d, want 1",
        cnn_cpu_quota_read(pc, cg2, NULL, NULL));
  put("cgroup", "0::/elsewhere\n"); /* another namespace: the mount's root is the cgroup */
  put("v2/cpu.max", "400000 100000\n");
  CHECK(cnn_cpu_quota_read(pc, cg2, NULL, NULL) == 4, "namespace root: %d, want 4",
        cnn_cpu_quota_read(pc, cg2, NULL, NULL));
  put("cgroup", "4:cpu,cpuacct:/x\n2:memory:/y\n");
  put("v1/x/cpu.cfs_quota_us", "-1\n");
  put("v1/x/cpu.cfs_period_us", "100000\n");
  CHECK(cnn_cpu_quota_read(pc, NULL, cg1, NULL) == 0, "v1 quota -1: a quota");
  put("v1/cpu.cfs_quota_us", "250000\n");
  put("v1/cpu.cfs_period_us", "100000\n");
  CHECK(cnn_cpu_quota_read(pc, NULL, cg1, &src) == 3, "v1 2.5 CPUs above: %d, want 3",
        cnn_cpu_quota_read(pc, NULL, cg1, NULL));
  CHECK(src && !strcmp(src, "cgroup cpu.cfs_quota_us"), "source %s", src ? src : "NULL");
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
  CHECK(system(cmd) == 0, "rm %s", tmp);
}

/* the team size under contention (cnn_cpu_adapt_step) on made-up samples: seconds
 * of run-queue wait per second as the kernel would report them */
static void adapt(void) {
  cnn_cpu_adapt a = {.base = 2, .cur = 2};
  double t = 100.0, d = 5.0;
  CHECK(cnn_cpu_adapt_step(&a, t, d) == 2, "first sample: no change");
  /* quiet (0.002 s/s, as measured): stays at 2 */
  for (int i = 0; i < 20; i++) {
    t += 0.5, d += 0.001;
    CHECK(cnn_cpu_adapt_step(&a, t, d) == 2, "quiet sample %d: 2 threads", i);
  }
  /* samples closer than the period are ignored */
  CHECK(cnn_cpu_adapt_step(&a, t + 0.1, d + 1.0) == 2, "a sample inside the period is ignored");
  /* contended (0.7 s/s): one sample is not enough, two in a row drop a thread */
  t += 0.5, d += 0.35;
  CHECK(cnn_cpu_adapt_step(&a, t, d) == 2, "one contended sample: still 2");
  t += 0.5, d += 0.35;
  CHECK(cnn_cpu_adapt_step(&a, t, d) == 1, "two contended samples: 1 thread");
  CHECK(a.reduced_s == 0.0, "no time below 2 threads yet: %.2f s", a.reduced_s);
  double dropped = t;
  /* at 1 thread the wait is gone; after CNN_CPU_ADAPT_PROBE seconds a probe up */
  int n = 1;
  while (n == 1 && t < dropped + 10.0) {
    t += 0.5, d += 0.001;
    n = cnn_cpu_adapt_step(&a, t, d);
  }
  CHECK(n == 2 && t - dropped >= CNN_CPU_ADAPT_PROBE && t - dropped < CNN_CPU_ADAPT_PROBE + 1.0,
        "probe up after %.1f s (want %.1f)", t - dropped, CNN_CPU_ADAPT_PROBE);
  /* every interval from the drop to the probe ran on 1 thread (0.5 s steps: exact) */
  CHECK(a.reduced_s == t - dropped, "time below 2 threads: %.2f s, want %.2f", a.reduced_s,
        t - dropped);
  double reduced = a.reduced_s;
  /* the probe meets contention again: down, and the next probe waits twice as long */
  t += 0.5, d += 0.35;
  cnn_cpu_adapt_step(&a, t, d);
  t += 0.5, d += 0.35;
  CHECK(cnn_cpu_adapt_step(&a, t, d) == 1, "a contended probe goes back to 1");
  CHECK(a.probe_wait == 2 * CNN_CPU_ADAPT_PROBE, "the probe wait doubled: %.1f", a.probe_wait);
  dropped = t;
  n = 1;
  while (n == 1 && t < dropped + 60.0) {
    t += 0.5, d += 0.001;
    n = cnn_cpu_adapt_step(&a, t, d);
  }
  CHECK(n == 2 && t - dropped >= 2 * CNN_CPU_ADAPT_PROBE, "second probe after %.1f s",
        t - dropped);
  /* contention gone: the probe holds, and the wait resets */
  for (int i = 0; i < 40; i++) {
    t += 0.5, d += 0.001;
    CHECK(cnn_cpu_adapt_step(&a, t, d) == 2, "after the load: 2 threads (sample %d)", i);
  }
  CHECK(a.probe_wait == CNN_CPU_ADAPT_PROBE, "the probe wait is back to %.1f: %.1f",
        CNN_CPU_ADAPT_PROBE, a.probe_wait);
  CHECK(a.reduced_s > reduced + 2 * CNN_CPU_ADAPT_PROBE - 1.0 && a.reduced_s < t - 100.0,
        "the second drop added its time: %.2f s after %.2f", a.reduced_s, reduced);
  reduced = a.reduced_s;
  t += 0.5, d += 0.001;
  cnn_cpu_adapt_step(&a, t, d);
  CHECK(a.reduced_s == reduced, "time at 2 threads is not counted: %.2f s", a.reduced_s);
  /* the backoff stops at its maximum */
  for (int k = 0; k < 12; k++) {
    for (int j = 0; j < 2; j++) t += 0.5, d += 0.35, cnn_cpu_adapt_step(&a, t, d);
    while (a.cur == 1) t += 0.5, d += 0.001, cnn_cpu_adapt_step(&a, t, d);
  }
  CHECK(a.probe_wait == CNN_CPU_ADAPT_PROBE_MAX, "the probe wait stops at %.0f s: %.1f",
        CNN_CPU_ADAPT_PROBE_MAX, a.probe_wait);
  /* never below 1, never above base; off for base <= 1 and without readings */
  cnn_cpu_adapt one = {.base = 1, .cur = 1};
  for (int i = 0; i < 10; i++) CHECK(cnn_cpu_adapt_step(&one, 200.0 + i, 10.0 * i) == 1, "base 1");
  cnn_cpu_adapt off = {.base = 0, .cur = 4};
  CHECK(cnn_cpu_adapt_step(&off, 1.0, 0.0) == 4 && cnn_cpu_adapt_step(&off, 9.0, 8.0) == 4,
        "base 0: off");
  cnn_cpu_adapt four = {.base = 4, .cur = 4};
  t = 1.0, d = 0.0;
  cnn_cpu_adapt_step(&four, t, d);
  for (int i = 0; i < 40; i++) t += 0.5, d += 0.5, cnn_cpu_adapt_step(&four, t, d);
  CHECK(four.cur == 1, "under heavy contention 4 threads step down to 1: %d", four.cur);
  CHECK(cnn_cpu_adapt_step(&four, t + 1.0, -1.0) == 1, "no reading (-1): no change");
  /* this process's run-queue wait, where the kernel reports it */
  FILE *f = fopen("/proc/thread-self/schedstat", "r");
  double rd = cnn_cpu_run_delay();
  if (f) {
    fclose(f);
    CHECK(rd >= 0.0, "schedstat is there: cnn_cpu_run_delay %.6f s", rd);
  } else {
    CHECK(rd == -1.0, "no schedstat: cnn_cpu_run_delay -1, got %g", rd);
  }
}

int main(void) {
  adapt();
  quotas();
  cpu_set_t s;
  CHECK(sched_getaffinity(0, sizeof s, &s) == 0, "sched_getaffinity");
  for (int i = 0; i < CPU_SETSIZE && one_cpu < 0; i++)
    if (CPU_ISSET(i, &s)) one_cpu = i;
  CHECK(one_cpu >= 0, "no CPU in the affinity mask");
  const char *src = NULL;
  int cores = cnn_cpu_cores(&src);
  CHECK(cores >= 1 && cores <= CPU_COUNT(&s), "cnn_cpu_cores %d, mask has %d", cores, CPU_COUNT(&s));
  CHECK(src && *src, "cnn_cpu_cores names no source");

  /* the affinity mask, in a child */
  pid_t pid = fork();
  if (pid == 0) {
    pin_one();
    const char *w = NULL;
    _exit(cnn_cpu_cores(&w) == 1 && w && !strcmp(w, "affinity mask") ? 0 : 1);
  }
  int st = -1;
  CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
        "pinned to one CPU, cnn_cpu_cores is not 1 from the affinity mask");

  bin = getenv("CNN_BIN");
  if (!bin) {
    fprintf(stderr, "CNN_BIN (the cnn command) is not set: the command is not tested\n");
    return tu_finish("test_cpu_threads");
  }
  static char out[1 << 16];
  char v[128];
  CHECK(devices(1, NULL, NULL, out, sizeof out) == 0, "cnn devices --json failed");
  CHECK(num(out, "omp_max_threads") == 1, "pinned to one CPU: omp_max_threads %ld, want 1\n%s",
        num(out, "omp_max_threads"), out);
  CHECK(num(out, "usable_cores") == 1, "pinned: usable_cores %ld", num(out, "usable_cores"));
  CHECK(!strcmp(str(out, "omp_wait_policy", v, sizeof v), "passive"),
        "OMP_WAIT_POLICY unset: the command runs with '%s', want passive", v);

  CHECK(devices(1, "2", "active", out, sizeof out) == 0, "cnn devices --json failed");
  CHECK(num(out, "omp_max_threads") == 2, "OMP_NUM_THREADS=2 pinned: omp_max_threads %ld, want 2",
        num(out, "omp_max_threads"));
  CHECK(!strcmp(str(out, "omp_threads_from", v, sizeof v), "OMP_NUM_THREADS"),
        "omp_threads_from '%s', want OMP_NUM_THREADS", v);
  CHECK(!strcmp(str(out, "omp_wait_policy", v, sizeof v), "active"),
        "OMP_WAIT_POLICY=active: the command runs with '%s'", v);

  if (CPU_COUNT(&s) > 1) { /* unpinned: every core of the mask, unless a cgroup quota is lower */
    CHECK(devices(0, NULL, "passive", out, sizeof out) == 0, "cnn devices --json failed");
    CHECK(num(out, "omp_max_threads") == num(out, "usable_cores") && num(out, "usable_cores") >= 1,
          "unpinned: omp_max_threads %ld, usable_cores %ld", num(out, "omp_max_threads"),
          num(out, "usable_cores"));
  }
  return tu_finish("test_cpu_threads");
}
