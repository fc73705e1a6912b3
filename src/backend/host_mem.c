/* Host memory free for this process: /proc/meminfo's MemAvailable and any cgroup
 * memory limit above the process (v2 and v1), the mem_info op of cpu and ref. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cgroup.h"
#include "core/error.h"

/* a cgroup "limit" at or above this means none (v1 writes 2^63 - 4096) */
#define NO_LIMIT ((uint64_t)1 << 60)

/* the number a file starts with: 1 and *v; 0 when missing or not a number ("max") */
static int read_u64(const char *path, uint64_t *v) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char buf[64];
  int ok = fgets(buf, sizeof buf, f) != NULL;
  fclose(f);
  char *end;
  unsigned long long x = ok ? strtoull(buf, &end, 10) : 0;
  if (!ok || end == buf) return 0;
  *v = x;
  return 1;
}

/* the value of `key` in a file of "key value" or "key: value" lines */
static int read_key(const char *path, const char *key, uint64_t *v) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[256];
  size_t n = strlen(key);
  int found = 0;
  while (!found && fgets(line, sizeof line, f)) {
    if (strncmp(line, key, n) || (line[n] != ':' && line[n] != ' ')) continue;
    char *end;
    unsigned long long x = strtoull(line + n + 1, &end, 10);
    if (end != line + n + 1) {
      *v = x;
      found = 1;
    }
  }
  fclose(f);
  return found;
}

typedef struct cg_files {
  const char *limit, *usage, *inactive_key;
} cg_files;

/* From the process's cgroup up to the mount's root: at each level with a limit,
 * what it leaves, limit - (usage - inactive file pages); the least of them in
 * left and that level's limit in limit; any: some level has a limit. */
typedef struct mem_walk {
  const cg_files *fl;
  int any;
  uint64_t left, limit;
} mem_walk;

static void mem_visit(const char *dir, void *ctx) {
  mem_walk *w = ctx;
  char file[8300];
  uint64_t lim, use, inact = 0;
  snprintf(file, sizeof file, "%s/%s", dir, w->fl->limit);
  int has = read_u64(file, &lim) && lim < NO_LIMIT;
  snprintf(file, sizeof file, "%s/%s", dir, w->fl->usage);
  if (!has || !read_u64(file, &use)) return;
  snprintf(file, sizeof file, "%s/memory.stat", dir);
  if (!read_key(file, w->fl->inactive_key, &inact) || inact > use) inact = 0;
  use -= inact;
  uint64_t l = use < lim ? lim - use : 0;
  if (!w->any || l < w->left) w->left = l, w->limit = lim;
  w->any = 1;
}

static int cgroup_left(const char *proc_cgroup, const char *root, const char *controller,
                       const cg_files *fl, uint64_t *left, uint64_t *limit) {
  mem_walk w = {fl, 0, 0, 0};
  cnn_cgroup_walk(proc_cgroup, root, controller, mem_visit, &w);
  *left = w.left, *limit = w.limit;
  return w.any;
}

cnn_status cnn_host_mem_read(const char *meminfo, const char *proc_cgroup, const char *cg2,
                             const char *cg1, size_t *avail, size_t *total,
                             const char **source) {
  uint64_t av, tot, left, lim;
  const char *src = "MemAvailable in /proc/meminfo";
  if (!meminfo || !read_key(meminfo, "MemTotal", &tot))
    return cnn_error(CNN_UNSUPPORTED, "cannot read the host's memory from %s",
                     meminfo ? meminfo : "(no meminfo)");
  if (!read_key(meminfo, "MemAvailable", &av)) { /* kernels before 3.14 */
    if (!read_key(meminfo, "MemFree", &av)) av = 0;
    src = "MemFree in /proc/meminfo";
  }
  av *= 1024, tot *= 1024; /* kB */
  static const cg_files v2 = {"memory.max", "memory.current", "inactive_file"};
  static const cg_files v1 = {"memory.limit_in_bytes", "memory.usage_in_bytes",
                              "total_inactive_file"};
  if (cgroup_left(proc_cgroup, cg2, NULL, &v2, &left, &lim)) {
    if (left < av) av = left, src = "the cgroup's memory.max less its memory.current";
    if (lim < tot) tot = lim;
  }
  if (cgroup_left(proc_cgroup, cg1, "memory", &v1, &left, &lim)) {
    if (left < av) av = left, src = "the cgroup's memory.limit_in_bytes less its usage";
    if (lim < tot) tot = lim;
  }
  if (avail) *avail = (size_t)av;
  if (total) *total = (size_t)tot;
  if (source) *source = src;
  return CNN_OK;
}

cnn_status cnn_host_mem_info(void *ctx, size_t *avail, size_t *total, const char **source) {
  (void)ctx;
  return cnn_host_mem_read("/proc/meminfo", "/proc/self/cgroup", "/sys/fs/cgroup",
                           "/sys/fs/cgroup/memory", avail, total, source);
}
