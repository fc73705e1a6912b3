/* How many threads the cpu backend runs and how its idle workers wait (issue 11:
 * "steady under load").
 *
 * Thread count: the cores this process may use, the fewer of its affinity mask
 * (sched_getaffinity) and its cgroup's CPU quota rounded up (v2 cpu.max, v1
 * cpu.cfs_quota_us / cpu.cfs_period_us, the process's cgroup and each one above
 * it). libgomp honours the affinity mask by itself but not the quota; OMP_NUM_THREADS
 * (and `cnn train --threads`, which sets it) overrides both.
 *
 * Waiting: libgomp's workers spin between parallel regions by default. When
 * another process keeps one core busy, a worker sharing that core is descheduled
 * while its peers spin for it, and every parallel region waits a time slice:
 * fashion.cfg at 2 threads fell below 1 thread (README, Benchmarks). Passive
 * waiting (futex sleep) costs nothing measurable idle here and, under load, keeps
 * 2 threads at least as fast as 1, because a woken sleeper preempts the busy
 * process where a spinner does not. libgomp reads OMP_WAIT_POLICY once, when it is
 * loaded, before main, so cnn_cpu_env_defaults sets it and re-executes the program (a
 * .preinit_array setenv is too early: libc's initialisation resets environ to the
 * original block afterwards; a constructor is too late: libgomp's runs first). */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <dirent.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend/backend.h"
#include "backend/cgroup.h"
#include "cnn/cnn.h"

/* quota/period of one cgroup folder as CPUs, rounded up; 0 when it has none */
static int cg_cpus(const char *dir, int v2) {
  char file[8300], buf[128];
  long long quota = -1, period = 0;
  if (v2) {
    snprintf(file, sizeof file, "%s/cpu.max", dir);
    FILE *f = fopen(file, "r");
    if (!f) return 0;
    int ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!ok || sscanf(buf, "%lld %lld", &quota, &period) != 2) return 0; /* "max 100000" */
  } else {
    snprintf(file, sizeof file, "%s/cpu.cfs_quota_us", dir);
    FILE *f = fopen(file, "r");
    if (!f) return 0;
    int ok = fscanf(f, "%lld", &quota) == 1;
    fclose(f);
    snprintf(file, sizeof file, "%s/cpu.cfs_period_us", dir);
    f = ok ? fopen(file, "r") : NULL;
    if (!f) return 0;
    ok = fscanf(f, "%lld", &period) == 1;
    fclose(f);
    if (!ok) return 0;
  }
  if (quota <= 0 || period <= 0) return 0;
  long long c = (quota + period - 1) / period;
  return c > 4096 ? 4096 : (int)c;
}

/* the least quota from the process's cgroup up to the mount's root; 0 if none */
typedef struct quota_walk {
  int v2, least;
} quota_walk;

static void quota_visit(const char *dir, void *ctx) {
  quota_walk *w = ctx;
  int c = cg_cpus(dir, w->v2);
  if (c > 0 && (!w->least || c < w->least)) w->least = c;
}

static int cg_quota(const char *proc_cgroup, const char *root, int v2) {
  quota_walk w = {v2, 0};
  cnn_cgroup_walk(proc_cgroup, root, v2 ? NULL : "cpu", quota_visit, &w);
  return w.least;
}

int cnn_cpu_quota_read(const char *proc_cgroup, const char *cg2, const char *cg1,
                       const char **source) {
  int q2 = cg_quota(proc_cgroup, cg2, 1), q1 = cg_quota(proc_cgroup, cg1, 0);
  if (q2 > 0 && (q1 <= 0 || q2 <= q1)) {
    if (source) *source = "cgroup cpu.max";
    return q2;
  }
  if (q1 > 0 && source) *source = "cgroup cpu.cfs_quota_us";
  return q1 > 0 ? q1 : 0;
}

int cnn_cpu_cores(const char **source) {
  const char *src = "online cores";
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  int n = online > 0 ? (int)online : 1;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) {
    n = CPU_COUNT(&set);
    src = "affinity mask";
  }
  const char *qsrc;
  int q = cnn_cpu_quota_read("/proc/self/cgroup", "/sys/fs/cgroup", "/sys/fs/cgroup/cpu", &qsrc);
  if (q <= 0) q = cnn_cpu_quota_read("/proc/self/cgroup", NULL, "/sys/fs/cgroup/cpu,cpuacct", &qsrc);
  if (q > 0 && q < n) n = q, src = qsrc;
  if (source) *source = src;
  return n;
}

int cnn_cpu_threads(const char **source) {
  const char *env = getenv("OMP_NUM_THREADS");
  if (env && *env) {
    if (source) *source = "OMP_NUM_THREADS";
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
  }
  const char *src;
  int cores = cnn_cpu_cores(&src);
#ifdef _OPENMP
  if (cores < omp_get_max_threads()) omp_set_num_threads(cores);
  if (source) *source = src;
  return omp_get_max_threads();
#else
  (void)cores;
  if (source) *source = "no OpenMP";
  return 1;
#endif
}

const char *cnn_cpu_wait_policy(void) {
  const char *p = getenv("OMP_WAIT_POLICY");
  return p && *p ? p : "libgomp default (spin, then sleep)";
}

void cnn_cpu_env_defaults(char **argv) {
  const char *p = getenv("OMP_WAIT_POLICY");
  if ((p && *p) || !argv || !argv[0]) return;
  /* not when /proc/self/exe is not the program: started through ld.so, or under
   * valgrind (its preload would be lost) */
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  const char *pre = getenv("LD_PRELOAD");
  if (n <= 0 || (pre && strstr(pre, "vgpreload"))) return;
  exe[n] = 0;
  const char *base = strrchr(exe, '/');
  if (!strncmp(base ? base + 1 : exe, "ld-", 3)) return;
  if (setenv("OMP_WAIT_POLICY", "passive", 1)) return;
  execv("/proc/self/exe", argv);
  unsetenv("OMP_WAIT_POLICY"); /* no /proc, or the program is gone: libgomp's default */
}

/* ---- the team size under contention (backend.h: cnn_cpu_adapt) ---- */

int cnn_cpu_adapt_step(cnn_cpu_adapt *a, double now, double delay) {
  if (a->base <= 1 || delay < 0.0) return a->cur;
  if (a->last_t <= 0.0 || now < a->last_t || delay < a->last_delay) { /* first (or reset) */
    a->last_t = now;
    a->last_delay = delay;
    if (a->changed_t <= 0.0) a->changed_t = now;
    if (a->probe_wait <= 0.0) a->probe_wait = CNN_CPU_ADAPT_PROBE;
    return a->cur;
  }
  double dt = now - a->last_t;
  if (dt < CNN_CPU_ADAPT_PERIOD) return a->cur;
  double busy = (delay - a->last_delay) / dt; /* seconds waited per second, all threads */
  if (a->cur < a->base) a->reduced_s += dt; /* the interval just ended ran at cur */
  a->last_t = now;
  a->last_delay = delay;
  /* two contended samples in a row: one alone may be a start-up transient */
  a->strikes = busy > CNN_CPU_ADAPT_BUSY ? a->strikes + 1 : 0;
  if (a->strikes >= 2 && a->cur > 1) {
    a->strikes = 0;
    /* a probe up that met contention again waits twice as long before the next */
    if (a->rose && now - a->changed_t < 2 * a->probe_wait)
      a->probe_wait = a->probe_wait * 2 < CNN_CPU_ADAPT_PROBE_MAX ? a->probe_wait * 2
                                                                  : CNN_CPU_ADAPT_PROBE_MAX;
    a->cur--;
    a->changed_t = now;
    a->rose = 0;
  } else if (busy < CNN_CPU_ADAPT_IDLE && a->cur < a->base &&
             now - a->changed_t >= a->probe_wait) {
    a->cur++;
    a->changed_t = now;
    a->rose = 1;
  } else if (a->rose && busy < CNN_CPU_ADAPT_IDLE && now - a->changed_t >= 2 * a->probe_wait) {
    a->probe_wait = CNN_CPU_ADAPT_PROBE; /* the probe held: contention is gone */
    a->rose = 0;
  }
  return a->cur;
}

double cnn_cpu_run_delay(void) {
  DIR *dir = opendir("/proc/self/task");
  if (!dir) return -1.0;
  double sum = 0.0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(dir)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char path[96], buf[128];
    snprintf(path, sizeof path, "/proc/self/task/%.40s/schedstat", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    unsigned long long run, wait;
    if (fgets(buf, sizeof buf, f) && sscanf(buf, "%llu %llu", &run, &wait) == 2) {
      sum += (double)wait * 1e-9;
      n++;
    }
    fclose(f);
  }
  closedir(dir);
  return n ? sum : -1.0;
}
