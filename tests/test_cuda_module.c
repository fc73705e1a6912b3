/* The CUDA backend is the module libcnn_cuda.so, which libcnn loads at run time
 * (src/backend/backend.c, src/backend/cuda/cuda_module.h):
 *  - libcnn.so has no DT_NEEDED entry for a CUDA library (read from its ELF dynamic
 *    section), and a process using the CPU backend maps no CUDA library;
 *  - in a CUDA build the module is found next to libcnn in the build tree;
 *  - the cnn command with CNN_CUDA_MODULE naming a missing file, a library that is not
 *    the module, or a file that is not a library: `cnn devices` exits 0 and says why,
 *    `cnn train --device cuda` fails with the loader's message, and
 *    `cnn train --device auto` trains on the CPU without a word about CUDA. */
#define _POSIX_C_SOURCE 200809L
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/cuda/cuda_module.h"
#include "cnn/cnn.h"
#include "testutil.h"

static char dir[256];
static const char *bin;

static const char *const cuda_libs[] = {"libcudart", "libcublas", "libcuda.", "libcnn_cuda"};
enum { N_CUDA_LIBS = sizeof cuda_libs / sizeof *cuda_libs };

static char *slurp_path(const char *p, size_t *len) {
  FILE *f = fopen(p, "rb");
  char *s;
  long n;
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  s = malloc((size_t)(n > 0 ? n : 0) + 1);
  n = (long)fread(s, 1, (size_t)(n > 0 ? n : 0), f);
  s[n] = 0;
  fclose(f);
  if (len) *len = (size_t)n;
  return s;
}

/* the first line of /proc/self/maps naming `needle`: its path into out ("" if none) */
static int mapped(const char *needle, char *out, size_t n) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[4096];
  if (out && n) out[0] = 0;
  if (!f) return 0;
  while (fgets(line, sizeof line, f)) {
    char *path = strchr(line, '/');
    if (!path || !strstr(path, needle)) continue;
    path[strcspn(path, "\n")] = 0;
    if (out) snprintf(out, n, "%s", path);
    fclose(f);
    return 1;
  }
  fclose(f);
  return 0;
}

/* DT_NEEDED names of an ELF64 little-endian shared object, '\n'-separated, into out;
 * -1 if it cannot be read as one */
static int elf_needed(const char *path, char *out, size_t n) {
  size_t len = 0;
  int found = 0;
  char *img = slurp_path(path, &len);
  out[0] = 0;
  if (!img || len < sizeof(Elf64_Ehdr) || memcmp(img, ELFMAG, SELFMAG) ||
      img[EI_CLASS] != ELFCLASS64) {
    free(img);
    return -1;
  }
  Elf64_Ehdr eh;
  memcpy(&eh, img, sizeof eh);
  if (eh.e_shoff == 0 || eh.e_shentsize != sizeof(Elf64_Shdr) ||
      eh.e_shoff + (size_t)eh.e_shnum * sizeof(Elf64_Shdr) > len) {
    free(img);
    return -1;
  }
  for (int i = 0; i < eh.e_shnum; i++) {
    Elf64_Shdr sh, str;
    memcpy(&sh, img + eh.e_shoff + (size_t)i * sizeof sh, sizeof sh);
    if (sh.sh_type != SHT_DYNAMIC || sh.sh_link >= eh.e_shnum) continue;
    memcpy(&str, img + eh.e_shoff + (size_t)sh.sh_link * sizeof str, sizeof str);
    if (sh.sh_offset + sh.sh_size > len || str.sh_offset + str.sh_size > len) break;
    for (size_t off = 0; off + sizeof(Elf64_Dyn) <= sh.sh_size; off += sizeof(Elf64_Dyn)) {
      Elf64_Dyn d;
      memcpy(&d, img + sh.sh_offset + off, sizeof d);
      if (d.d_tag == DT_NULL) break;
      if (d.d_tag != DT_NEEDED || d.d_un.d_val >= str.sh_size) continue;
      const char *name = img + str.sh_offset + d.d_un.d_val;
      size_t used = strlen(out);
      snprintf(out + used, n - used, "%s\n", name);
      found++;
    }
  }
  free(img);
  return found;
}

static void test_libcnn_links_no_cuda(void) {
  char libcnn[4096], needed[8192], where[4096];
  cnn_backend *b = NULL;
  CHECK(mapped("/libcnn.so", libcnn, sizeof libcnn), "libcnn.so is not in /proc/self/maps");
  int n = elf_needed(libcnn, needed, sizeof needed);
  CHECK(n > 0, "no DT_NEEDED read from %s (%d)", libcnn, n);
  CHECK(strstr(needed, "libc.so") != NULL, "the parser missed libc.so in %s:\n%s", libcnn, needed);
  for (int i = 0; i < N_CUDA_LIBS; i++)
    CHECK(!strstr(needed, cuda_libs[i]), "%s needs %s:\n%s", libcnn, cuda_libs[i], needed);

  /* the CPU backend and cnn_have_cuda touch no CUDA library */
  CHECK_OK(cnn_backend_create("cpu", &b));
  (void)cnn_have_cuda();
  cnn_backend_destroy(b);
  for (int i = 0; i < N_CUDA_LIBS; i++)
    CHECK(!mapped(cuda_libs[i], where, sizeof where), "using the CPU mapped %s", where);

  const char *what = NULL;
  int loaded = cnn_cuda_module_loaded(&what);
  if (!cnn_have_cuda()) {
    CHECK(!loaded && cnn_cuda_device_count() == 0, "a build without CUDA loaded a module");
    printf("no CUDA in this build: %s\n", what);
    return;
  }
  /* the module sits next to libcnn in the build tree */
  char libdir[4096];
  snprintf(libdir, sizeof libdir, "%s", libcnn);
  *strrchr(libdir, '/') = 0;
  if (loaded) {
    printf("CUDA module loaded from %s\n", what);
    CHECK(strstr(what, libdir) == what, "module %s is not from libcnn's directory %s", what, libdir);
    CHECK(mapped("libcnn_cuda.so", where, sizeof where), "the loaded module is not mapped");
    int count = cnn_cuda_device_count();
    if (count == 0) { /* this machine has no GPU: creating cuda fails and says so */
      CHECK(*cnn_last_error(), "cnn_cuda_device_count gave 0 without a reason");
      printf("no device: %s\n", cnn_last_error());
      CHECK(cnn_backend_create("cuda", &b) == CNN_UNSUPPORTED && !b, "cuda without a device");
    }
  } else { /* found there, but the CUDA libraries it needs are missing on this machine */
    printf("CUDA module not loaded: %s\n", what);
    CHECK(strstr(what, libdir) && strstr(what, "libcu"),
          "the module next to libcnn (%s) was not found: %s", libdir, what);
  }
}

/* ---- the command ---------------------------------------------------------------- */

static void put_be32(FILE *f, unsigned v) {
  unsigned char c[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                        (unsigned char)v};
  fwrite(c, 1, 4, f);
}

/* n 8x8 images, label = which half holds the bright square */
static void write_idx(const char *img_name, const char *lab_name, int n) {
  char p[512];
  snprintf(p, sizeof p, "%s/data/%s", dir, img_name);
  FILE *fi = fopen(p, "wb");
  snprintf(p, sizeof p, "%s/data/%s", dir, lab_name);
  FILE *fl = fopen(p, "wb");
  put_be32(fi, 0x803), put_be32(fi, (unsigned)n), put_be32(fi, 8), put_be32(fi, 8);
  put_be32(fl, 0x801), put_be32(fl, (unsigned)n);
  for (int i = 0; i < n; i++) {
    unsigned char img[64], lab = (unsigned char)(i % 2);
    for (int j = 0; j < 64; j++) img[j] = (unsigned char)((j * 37 + i * 11) % 60);
    for (int y = 2; y < 6; y++)
      for (int x = 0; x < 3; x++) img[y * 8 + (lab ? 5 + x : x)] = 220;
    fwrite(img, 1, 64, fi);
    fputc(lab, fl);
  }
  fclose(fi);
  fclose(fl);
}

/* run `cnn args` with CNN_CUDA_MODULE=module (NULL: unset); output into *out */
static int run(const char *module, const char *args, char **out) {
  char cmd[4096], p[512];
  snprintf(p, sizeof p, "%s/out.txt", dir);
  if (module)
    snprintf(cmd, sizeof cmd, "cd %s && exec env OMP_NUM_THREADS=1 CNN_CUDA_MODULE='%s' %s %s > %s 2>&1",
             dir, module, bin, args, p);
  else
    snprintf(cmd, sizeof cmd, "cd %s && exec env -u CNN_CUDA_MODULE OMP_NUM_THREADS=1 %s %s > %s 2>&1",
             dir, bin, args, p);
  int st = system(cmd);
  *out = slurp_path(p, NULL);
  if (!*out) *out = calloc(1, 1);
  return st;
}

static int exited_ok(int st) { return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0; }
static int failed_cleanly(int st) { return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) != 0; }

/* a CNN_CUDA_MODULE that does not give a module: devices explains, cuda fails with the
 * same explanation, auto runs on the CPU */
static void test_cli_without_module(const char *module, const char *expect) {
  char *o = NULL, args[1024];
  /* without CUDA in the build, the module is not looked for */
  int built = cnn_have_cuda();
  if (!built) expect = "this build of cnn has no CUDA backend";
  int st = run(module, "devices", &o);
  CHECK(exited_ok(st), "[%s] cnn devices exited %d:\n%s", module, st, o);
  CHECK(strstr(o, "CPU") && strstr(o, "no CUDA GPU"), "[%s] cnn devices:\n%s", module, o);
  CHECK((!built || strstr(o, module)) && strstr(o, expect),
        "[%s] cnn devices does not say '%s':\n%s", module, expect, o);
  free(o);

  st = run(module, "devices --json", &o);
  CHECK(exited_ok(st) && strstr(o, "\"cuda_error\"") && strstr(o, expect),
        "[%s] cnn devices --json (%d):\n%s", module, st, o);
  CHECK(strstr(o, "\"cuda_module\":\tnull") != NULL, "[%s] json names a module:\n%s", module, o);
  free(o);

  snprintf(args, sizeof args, "train model.cfg --data idx:data --out gpu --device cuda --quiet");
  st = run(module, args, &o);
  CHECK(failed_cleanly(st), "[%s] train --device cuda did not fail cleanly (%d):\n%s", module, st, o);
  CHECK(strstr(o, "CUDA") && (!built || strstr(o, module)) && strstr(o, expect),
        "[%s] train --device cuda does not say why:\n%s", module, o);
  printf("train --device cuda with CNN_CUDA_MODULE=%s:\n  %s", module, o);
  free(o);

  snprintf(args, sizeof args, "train model.cfg --data idx:data --out cpu --device auto --quiet");
  st = run(module, args, &o);
  CHECK(exited_ok(st), "[%s] train --device auto exited %d:\n%s", module, st, o);
  CHECK(!strstr(o, "CUDA") && !strstr(o, module), "[%s] train --device auto is not quiet:\n%s",
        module, o);
  free(o);
  char p[512];
  struct stat sb;
  snprintf(p, sizeof p, "%s/cpu/last.safetensors", dir);
  CHECK(stat(p, &sb) == 0 && sb.st_size > 0, "[%s] train --device auto wrote no checkpoint", module);
  snprintf(args, sizeof args, "rm -rf %s/cpu %s/gpu", dir, dir);
  CHECK(system(args) == 0, "rm");
}

static void test_cli(void) {
  char p[512], libcnn[4096], *o = NULL;
  snprintf(p, sizeof p, "%s/data", dir);
  mkdir(p, 0777);
  write_idx("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 64);
  write_idx("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 32);
  snprintf(p, sizeof p, "%s/model.cfg", dir);
  FILE *f = fopen(p, "w");
  fputs("[net]\nheight=8\nwidth=8\nchannels=1\nbatch=16\nlearning_rate=0.05\nmomentum=0.9\n"
        "[train]\nepochs=1\nflip=0\n[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=relu\n"
        "[avgpool]\n[connected]\noutput=2\nactivation=linear\n[softmax]\n",
        f);
  fclose(f);
  snprintf(p, sizeof p, "%s/not-a-library.so", dir);
  f = fopen(p, "w");
  fputs("this is not an ELF file\n", f);
  fclose(f);

  snprintf(p, sizeof p, "%s/no/such/libcnn_cuda.so", dir);
  test_cli_without_module(p, "cannot open shared object file");
  snprintf(p, sizeof p, "%s/not-a-library.so", dir);
  test_cli_without_module(p, "cannot load the CUDA module");
  if (mapped("/libcnn.so", libcnn, sizeof libcnn)) /* a library, but not the module */
    test_cli_without_module(libcnn, "is not a cnn CUDA module");

  /* the plain command finds the module in the build tree (or says why there is no GPU) */
  int st = run(NULL, "devices", &o);
  CHECK(exited_ok(st), "cnn devices exited %d:\n%s", st, o);
  if (cnn_have_cuda() && cnn_cuda_module_loaded(NULL))
    CHECK(strstr(o, "no CUDA GPU: no CUDA device") || strstr(o, "CUDA module  /"),
          "cnn devices with the module in the build tree:\n%s", o);
  free(o);
}

int main(void) {
  unsetenv("CNN_CUDA_MODULE"); /* this process finds the module the default way */
  test_libcnn_links_no_cuda();
  bin = getenv("CNN_BIN");
  if (!bin) {
    fprintf(stderr, "CNN_BIN (the cnn command) is not set; run under ctest for the command checks\n");
  } else {
    snprintf(dir, sizeof dir, "/tmp/cnn_cudamod_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    test_cli();
  }
  int rc = tu_finish("test_cuda_module");
  if (bin) {
    char cmd[300];
    if (!rc) {
      snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
      if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    } else {
      fprintf(stderr, "files kept in %s\n", dir);
    }
  }
  return rc;
}
