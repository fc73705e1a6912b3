/* Writing a file whole or not at all (see file_write.h). */
#define _POSIX_C_SOURCE 200809L

#include "core/file_write.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"

/* make the rename itself durable; best effort, the data is already synced */
static void sync_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir;
  if (!slash) {
    dir = strdup(".");
  } else {
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    dir = malloc(n + 1);
    if (dir) {
      memcpy(dir, path, n);
      dir[n] = 0;
    }
  }
  if (!dir) return;
  int fd = open(dir, O_RDONLY);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  free(dir);
}

#define STALE_GONE_S 60     /* a dead writer's temp file, untouched this long */
#define STALE_ANY_S 3600    /* any temp file untouched this long (its pid was reused) */

/* Remove temp files that earlier writes of `path` left behind (a writer killed or
 * out of power between creating "PATH.tmp.<pid>" and the rename). Only names of
 * exactly that form for this PATH, regular files owned by us, not our own, and
 * only when stale: the writing process is gone (checked on this machine; the 60 s
 * margin spares a live writer in another pid namespace, which keeps its file's
 * mtime fresh) or the file was not touched for an hour. Best effort. */
static void remove_stale_temps(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  size_t dlen = slash ? (size_t)(slash - path) : 0, blen = strlen(base);
  char *dir = malloc(dlen + 2), *full = malloc(strlen(path) + 40);
  if (!dir || !full || !blen) {
    free(dir);
    free(full);
    return;
  }
  if (!slash) strcpy(dir, ".");
  else if (!dlen) strcpy(dir, "/");
  else {
    memcpy(dir, path, dlen);
    dir[dlen] = 0;
  }
  DIR *d = opendir(dir);
  struct dirent *e;
  time_t now = time(NULL);
  while (d && (e = readdir(d)) != NULL) {
    const char *nm = e->d_name;
    if (strncmp(nm, base, blen) != 0 || strncmp(nm + blen, ".tmp.", 5) != 0) continue;
    const char *digits = nm + blen + 5;
    size_t nd = strspn(digits, "0123456789");
    if (nd == 0 || nd > 9 || digits[nd] || digits[0] == '0') continue;
    long pid = strtol(digits, NULL, 10);
    if (pid == (long)getpid()) continue;
    snprintf(full, strlen(path) + 40, "%s%s", path, nm + blen);
    struct stat sb;
    if (lstat(full, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_uid != geteuid()) continue;
    double age = difftime(now, sb.st_mtime);
    int gone = kill((pid_t)pid, 0) != 0 && errno == ESRCH;
    if ((gone && age >= STALE_GONE_S) || age >= STALE_ANY_S) (void)unlink(full);
  }
  if (d) closedir(d);
  free(dir);
  free(full);
}

cnn_status cnn_file_write_whole(const char *path, const void *const *parts, const size_t *sizes,
                                int n) {
  if (!path || !path[0]) return cnn_error(CNN_ERR_ARG, "cannot write a file: the name is empty");
  remove_stale_temps(path);
  struct stat prev;
  int had_prev = stat(path, &prev) == 0; /* what a failure leaves behind */
  size_t tlen = strlen(path) + 32;
  char *tmp = malloc(tlen);
  if (!tmp) return cnn_error(CNN_ERR_NOMEM, "%s: out of memory", path);
  snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
  FILE *fp = fopen(tmp, "wb");
  if (!fp) {
    cnn_status s = cnn_error(CNN_ERR_IO, "%s: cannot create temp file %s: %s", path, tmp,
                             strerror(errno));
    free(tmp);
    return s;
  }
  int ok = 1;
  for (int i = 0; ok && i < n; i++)
    if (sizes[i]) ok = fwrite(parts[i], 1, sizes[i], fp) == sizes[i];
  int err = ok ? 0 : errno;
  if (ok && (fflush(fp) != 0 || fsync(fileno(fp)) != 0)) {
    ok = 0;
    err = errno;
  }
  if (fclose(fp) != 0 && ok) {
    ok = 0;
    err = errno;
  }
  cnn_status s = CNN_OK;
  const char *left = had_prev ? "; the previous file is left intact" : "; nothing was written";
  if (ok && rename(tmp, path) != 0) {
    s = cnn_error(CNN_ERR_IO, "%s: cannot rename %s over it: %s%s", path, tmp, strerror(errno),
                  left);
    unlink(tmp);
  } else if (!ok) {
    s = cnn_error(CNN_ERR_IO, "%s: writing temp file %s failed: %s%s", path, tmp, strerror(err),
                  left);
    unlink(tmp);
  } else {
    sync_dir(path);
  }
  free(tmp);
  return s;
}
