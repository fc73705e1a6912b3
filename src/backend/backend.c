/* Backend selection by name, and the loader of the CUDA backend module. */
#define _GNU_SOURCE /* dladdr */
#include "backend/backend.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_module.h"
#include "core/error.h"

/* 1 when the CUDA module was built alongside this libcnn; it is not loaded here */
int cnn_have_cuda(void) { return CNN_HAVE_CUDA; }

#if !CNN_HAVE_CUDA
static const char no_cuda_build[] = "this build of cnn has no CUDA backend (nvcc was not found)";

int cnn_cuda_module_loaded(const char **where) {
  if (where) *where = no_cuda_build;
  return 0;
}
cnn_status cnn_backend_cuda_create(cnn_backend **out) {
  if (out) *out = NULL;
  return cnn_error(CNN_UNSUPPORTED, "%s", no_cuda_build);
}
int cnn_cuda_device_count(void) {
  cnn_error(CNN_UNSUPPORTED, "%s", no_cuda_build);
  return 0;
}
cnn_status cnn_cuda_device_info(int index, cnn_device_info *info) {
  (void)info;
  return cnn_error(CNN_UNSUPPORTED, "no CUDA device %d: %s", index, no_cuda_build);
}
#else
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

/* ---- the CUDA module ------------------------------------------------------------
 * libcnn_cuda.so (the CUDA backend, linking cudart and cuBLAS) is dlopen()ed on first
 * need, so libcnn and `cnn` start, and run on the CPU, where the module or the CUDA
 * libraries are missing, and pay nothing for CUDA when it is not used.
 *
 * Where it is looked for, first hit wins:
 *   1. $CNN_CUDA_MODULE, a full path; when set (non-empty) it is the only candidate,
 *      so it can point elsewhere or, pointing nowhere, switch the GPU off;
 *   2. the directory libcnn itself was loaded from (dladdr): the build tree, or the
 *      install lib dir where `make install` puts both;
 *   3. the directory of the running program (/proc/self/exe): in the build tree the
 *      programs sit next to the module also when libcnn was taken from elsewhere (a
 *      copy on LD_LIBRARY_PATH, as /work/shared/gpu/pack's run may link in);
 *   4. CNN_INSTALL_LIBDIR, the lib dir configured at build time;
 *   5. the dynamic linker's search path (LD_LIBRARY_PATH, ld.so.cache).
 * A candidate file that exists but does not load (e.g. libcudart missing) ends the
 * search with that error rather than falling through to another copy.
 *
 * Global state, on purpose: this is the one process-wide mutable object in libcnn
 * besides the thread-local error message. A dlopen handle belongs to the process,
 * not to a net or a backend (backends created from it share the module, and the CUDA
 * runtime it pulls in is itself per process), so it lives in a static that is
 * written exactly once, under pthread_once (thread-safe, and the loader never runs
 * twice), and is only read afterwards. The module is never unloaded: backends may
 * outlive any owner we could give it, and the CUDA runtime does not support being
 * unloaded and loaded again. Re-dlopening per use would only re-count a refcount on
 * the same handle while repeating the search and its error reporting. */
static struct {
  const cnn_cuda_module *mod; /* NULL: not available, see why */
  char path[4096];            /* where it was loaded from */
  char why[1536];             /* why it is not available */
} cuda_mod;
static pthread_once_t cuda_mod_once = PTHREAD_ONCE_INIT;
static const char cuda_mod_anchor = 0; /* an address inside libcnn, for dladdr */

/* dlopen `path`; 1: loaded (cuda_mod.mod set), 0: failed (cuda_mod.why set, after
 * `lead`) */
static int cuda_mod_try(const char *path, const char *from, const char *lead) {
  const cnn_cuda_module *m;
  cnn_cuda_module_entry_fn entry;
  void *h, *sym;
  (void)dlerror();
  h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    snprintf(cuda_mod.why, sizeof cuda_mod.why, "%scannot load the CUDA module %s%s: %s", lead,
             path, from, e ? e : "unknown dlopen error");
    return 0;
  }
  sym = dlsym(h, CNN_CUDA_MODULE_ENTRY);
  memcpy(&entry, &sym, sizeof entry); /* object to function pointer, as POSIX allows */
  m = sym ? entry() : NULL;
  if (!m) {
    snprintf(cuda_mod.why, sizeof cuda_mod.why, "%s%s is not a cnn CUDA module (no %s)", path,
             from, CNN_CUDA_MODULE_ENTRY);
  } else if (m->abi != CNN_CUDA_MODULE_ABI || m->sizeof_ops != sizeof(cnn_backend_ops) ||
             m->sizeof_backend != sizeof(cnn_backend) ||
             m->sizeof_step_state != sizeof(cnn_step_state) ||
             m->sizeof_device_info != sizeof(cnn_device_info) || !m->version ||
             strcmp(m->version, CNN_VERSION)) {
    snprintf(cuda_mod.why, sizeof cuda_mod.why,
             "the CUDA module %s%s does not match this libcnn (module %s, abi %u; libcnn %s, "
             "abi %u): use the libcnn_cuda.so built with it",
             path, from, m->version ? m->version : "?", (unsigned)m->abi, CNN_VERSION,
             CNN_CUDA_MODULE_ABI);
    m = NULL;
  }
  if (!m) {
    dlclose(h);
    return 0;
  }
  snprintf(cuda_mod.path, sizeof cuda_mod.path, "%s", path);
  cuda_mod.mod = m;
  return 1;
}

/* `dir`/libcnn_cuda.so if that file exists: 1 and path filled */
static int cuda_mod_in(const char *dir, size_t dir_len, char *path, size_t n) {
  int w = snprintf(path, n, "%.*s/%s", (int)dir_len, dir, CNN_CUDA_MODULE_FILE);
  return w > 0 && (size_t)w < n && access(path, F_OK) == 0;
}

/* append "dir, " (its first len bytes) to the list of places looked in */
static void cuda_mod_looked(char *looked, size_t n, const char *dir, size_t len) {
  size_t used = strlen(looked);
  snprintf(looked + used, n - used, "%.*s, ", (int)len, dir);
}

static void cuda_mod_load(void) {
  char path[4096], looked[2048] = "";
  const char *env = getenv("CNN_CUDA_MODULE");
  Dl_info di;
  if (env && *env) {
    cuda_mod_try(env, " (from CNN_CUDA_MODULE)", "");
    return;
  }
  if (dladdr(&cuda_mod_anchor, &di) && di.dli_fname && strchr(di.dli_fname, '/')) {
    const char *slash = strrchr(di.dli_fname, '/');
    size_t len = (size_t)(slash - di.dli_fname);
    if (cuda_mod_in(di.dli_fname, len ? len : 1, path, sizeof path)) {
      cuda_mod_try(path, "", "");
      return;
    }
    cuda_mod_looked(looked, sizeof looked, di.dli_fname, len ? len : 1);
  }
  {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? (exe[n] = 0, strrchr(exe, '/')) : NULL;
    if (slash && slash > exe) {
      size_t len = (size_t)(slash - exe);
      *slash = 0;
      if (cuda_mod_in(exe, len, path, sizeof path)) {
        cuda_mod_try(path, "", "");
        return;
      }
      if (strncmp(looked, exe, len) || strncmp(looked + len, ", ", 2)) /* not libcnn's dir */
        cuda_mod_looked(looked, sizeof looked, exe, len);
    }
  }
#ifdef CNN_INSTALL_LIBDIR
  if (cuda_mod_in(CNN_INSTALL_LIBDIR, strlen(CNN_INSTALL_LIBDIR), path, sizeof path)) {
    cuda_mod_try(path, "", "");
    return;
  }
  cuda_mod_looked(looked, sizeof looked, CNN_INSTALL_LIBDIR, strlen(CNN_INSTALL_LIBDIR));
#endif
  snprintf(path, sizeof path,
           "%s is in none of: %sthe library search path (CNN_CUDA_MODULE may name it): ",
           CNN_CUDA_MODULE_FILE, looked);
  cuda_mod_try(CNN_CUDA_MODULE_FILE, "", path);
}

static const cnn_cuda_module *cuda_module(void) {
  pthread_once(&cuda_mod_once, cuda_mod_load);
  return cuda_mod.mod;
}

int cnn_cuda_module_loaded(const char **where) {
  const cnn_cuda_module *m = cuda_module();
  if (where) *where = m ? cuda_mod.path : cuda_mod.why;
  return m != NULL;
}

cnn_status cnn_backend_cuda_create(cnn_backend **out) {
  const cnn_cuda_module *m = cuda_module();
  if (!out) return cnn_error(CNN_ERR_ARG, "cnn_backend_cuda_create: out is NULL");
  *out = NULL;
  if (!m) return cnn_error(CNN_UNSUPPORTED, "no CUDA backend: %s", cuda_mod.why);
  return m->backend_create(out);
}

int cnn_cuda_device_count(void) {
  const cnn_cuda_module *m = cuda_module();
  if (!m) {
    cnn_error(CNN_UNSUPPORTED, "no CUDA backend: %s", cuda_mod.why);
    return 0;
  }
  return m->device_count();
}

cnn_status cnn_cuda_device_info(int index, cnn_device_info *info) {
  const cnn_cuda_module *m = cuda_module();
  if (!m) return cnn_error(CNN_UNSUPPORTED, "no CUDA device %d: %s", index, cuda_mod.why);
  return m->device_info(index, info);
}
#endif

cnn_status cnn_backend_create(const char *name, cnn_backend **out) {
  if (!out) return cnn_error(CNN_ERR_ARG, "cnn_backend_create: out is NULL");
  *out = NULL;
  if (!name || !strcmp(name, "cpu")) return cnn_backend_cpu_create(out);
  if (!strcmp(name, "ref")) return cnn_backend_ref_create(out);
  if (!strcmp(name, "cuda") || !strcmp(name, "gpu")) return cnn_backend_cuda_create(out);
  return cnn_error(CNN_ERR_ARG, "unknown device '%s' (expected cpu, ref or cuda)", name);
}

void cnn_backend_destroy(cnn_backend *b) {
  if (b) b->ops->destroy(b);
}

const char *cnn_backend_name(const cnn_backend *b) { return b ? b->name : "(none)"; }

cnn_status cnn_backend_set_option(cnn_backend *b, const char *key, const char *value) {
  if (!b || !key || !value) return cnn_error(CNN_ERR_ARG, "cnn_backend_set_option: NULL argument");
  if (b->ops->set_option) return b->ops->set_option(b->ctx, key, value);
  if (!strcmp(key, "conv-engine") && !strcmp(value, "auto")) return CNN_OK;
  return cnn_error(CNN_UNSUPPORTED, "--%s applies to the cuda backend; the %s backend has one "
                   "engine per op (got --%s %s)", key, b->name, key, value);
}

void *cnn_host_alloc(void *vb, size_t bytes) {
  cnn_backend *b = vb;
  void *p = NULL;
  if (b && b->ops->host_alloc) return b->ops->host_alloc(b->ctx, bytes, &p) == CNN_OK ? p : NULL;
  return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

void cnn_host_free(void *vb, void *p) {
  cnn_backend *b = vb;
  if (!p) return;
  if (b && b->ops->host_free) b->ops->host_free(b->ctx, p);
  else free(p);
}

/* $CNN_MEMORY_LIMIT: bytes, or K, M, G, T (powers of 1024); 0: unset or empty */
static cnn_status memory_limit_env(size_t *out) {
  const char *e = getenv("CNN_MEMORY_LIMIT");
  *out = 0;
  if (!e || !*e) return CNN_OK;
  char *end;
  unsigned long long v = strtoull(e, &end, 10);
  int shift = 0;
  static const char units[] = "KMGT";
  const char *u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
  if (u) {
    shift = 10 * (int)(u - units + 1);
    end++;
    if (*end == 'B' || *end == 'b') end++; /* 2G, 2GB */
  }
  if (end == e || *e == '-' || *end || v == 0 || (shift && v > (~0ull >> shift)))
    return cnn_error(CNN_ERR_ARG, "CNN_MEMORY_LIMIT='%s': expected a positive number of bytes, "
                     "e.g. 2000000000 or 2G (K, M, G, T: powers of 1024)", e);
  *out = (size_t)(v << shift);
  return CNN_OK;
}

cnn_status cnn_backend_mem_info(cnn_backend *b, size_t *avail, size_t *total, const char **source) {
  if (!b) return cnn_error(CNN_ERR_ARG, "cnn_backend_mem_info: NULL backend");
  size_t lim, a = 0, t = 0;
  const char *src = NULL;
  CNN_TRY(memory_limit_env(&lim));
  if (lim) {
    a = t = lim;
    src = "CNN_MEMORY_LIMIT";
  } else if (!b->ops->mem_info) {
    return cnn_error(CNN_UNSUPPORTED, "the %s backend cannot say how much memory it has free "
                     "(set CNN_MEMORY_LIMIT)", b->name);
  } else {
    CNN_TRY(b->ops->mem_info(b->ctx, &a, &t, &src));
  }
  if (avail) *avail = a;
  if (total) *total = t;
  if (source) *source = src;
  return CNN_OK;
}
