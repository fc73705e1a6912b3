#include "backend/cgroup.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* the process's cgroup path (see cnn_cgroup_walk) into out; 0 when there is none */
static int cgroup_path(const char *proc_cgroup, const char *controller, char *out, size_t n) {
  FILE *f = proc_cgroup ? fopen(proc_cgroup, "r") : NULL;
  if (!f) return 0;
  char line[4096];
  size_t k = controller ? strlen(controller) : 0;
  int found = 0;
  while (!found && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) continue;
    *c1 = *c2 = 0; /* line: the hierarchy's id; ctl: its controllers */
    const char *ctl = c1 + 1;
    int match = 0;
    if (!controller) {
      match = !strcmp(line, "0") && !*ctl;
    } else {
      for (const char *p = ctl; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] != 0))
        if (!strncmp(p, controller, k) && (p[k] == ',' || !p[k])) match = 1;
    }
    if (match && (size_t)snprintf(out, n, "%s", c2 + 1) < n) found = 1;
  }
  fclose(f);
  return found;
}

int cnn_cgroup_walk(const char *proc_cgroup, const char *root, const char *controller,
                    void (*visit)(const char *dir, void *ctx), void *ctx) {
  if (!root || !is_dir(root)) return 0;
  char rel[4096], dir[8192];
  if (!cgroup_path(proc_cgroup, controller, rel, sizeof rel) || rel[0] != '/')
    snprintf(rel, sizeof rel, "/");
  snprintf(dir, sizeof dir, "%s%s", root, rel);
  if (!is_dir(dir)) snprintf(rel, sizeof rel, "/"); /* another cgroup namespace: its root */
  for (;;) {
    snprintf(dir, sizeof dir, "%s%s", root, strcmp(rel, "/") ? rel : "");
    visit(dir, ctx);
    char *slash = strrchr(rel, '/');
    if (!slash || slash == rel) {
      if (!strcmp(rel, "/")) break;
      snprintf(rel, sizeof rel, "/");
    } else {
      *slash = 0;
    }
  }
  return 1;
}
