/* cnn devices [--json]: the CPU (model, cores, threads, SIMD) and every CUDA GPU. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend/cuda/cuda_module.h"
#include "cli/cli.h"
#include "cnn/cnn.h"

static void help(FILE *f) {
  fprintf(f,
          "usage: cnn devices [--json]\n\n"
          "Lists the CPU (model, logical cores, OpenMP threads, SIMD extensions) and every\n"
          "CUDA GPU (name, compute capability, SMs, memory, L2, shared memory per block,\n"
          "clock, memory bus width). Without a GPU it says why none is usable: no CUDA\n"
          "in this build, the CUDA module libcnn_cuda.so or the CUDA libraries it needs\n"
          "could not be loaded (set CNN_CUDA_MODULE to the module's path), or the CUDA\n"
          "runtime found no device.\n\n"
          "  --json   print one JSON object with the same fields\n");
}

typedef struct cli_cpu {
  char model[256];
  long online, configured;
  int threads;
  const char *threads_from; /* where the thread count came from */
  int cores;                /* usable: affinity mask and cgroup quota */
  const char *cores_from, *wait_policy;
} cli_cpu;

/* SIMD extensions the kernels can use; names as in /proc/cpuinfo and -m flags */
static const char *const simd_names[] = {"sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw",
                                         "avx512_bf16"};
enum { N_SIMD = sizeof simd_names / sizeof *simd_names };

/* -1: this compiler or architecture cannot tell */
static int cli_simd_has(int i) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  switch (i) {
    case 0: return __builtin_cpu_supports("sse4.2") != 0;
    case 1: return __builtin_cpu_supports("avx") != 0;
    case 2: return __builtin_cpu_supports("avx2") != 0;
    case 3: return __builtin_cpu_supports("fma") != 0;
    case 4: return __builtin_cpu_supports("avx512f") != 0;
    case 5: return __builtin_cpu_supports("avx512bw") != 0;
    case 6:
      /* the name is known to GCC 10+ and (at least) Clang 14+ */
#if (defined(__clang__) && __clang_major__ >= 14) || (!defined(__clang__) && __GNUC__ >= 10)
      return __builtin_cpu_supports("avx512bf16") != 0;
#else
      return -1;
#endif
  }
#endif
  return -1;
}

static void cli_trim(char *s) {
  size_t n = strlen(s);
  while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
  size_t lead = strspn(s, " \t");
  memmove(s, s + lead, n - lead + 1);
}

static void cli_cpu_model(char *out, size_t n) {
  snprintf(out, n, "unknown");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  /* x86 says "model name"; ARM kernels say "Model" or "Hardware" */
  static const char *const keys[] = {"model name", "Model", "Hardware", "cpu model"};
  char line[512], best[256] = "";
  int rank = (int)(sizeof keys / sizeof *keys);
  while (fgets(line, sizeof line, f)) {
    char *colon = strchr(line, ':');
    if (!colon) continue;
    *colon = 0;
    cli_trim(line);
    for (int k = 0; k < rank; k++)
      if (!strcmp(line, keys[k])) {
        snprintf(best, sizeof best, "%s", colon + 1);
        cli_trim(best);
        if (*best) rank = k;
        break;
      }
    if (rank == 0) break;
  }
  fclose(f);
  if (*best) snprintf(out, n, "%s", best);
}

static void cli_cpu_probe(cli_cpu *c) {
  cli_cpu_model(c->model, sizeof c->model);
  c->online = sysconf(_SC_NPROCESSORS_ONLN);
  c->configured = sysconf(_SC_NPROCESSORS_CONF);
  c->threads = cnn_cpu_threads(&c->threads_from); /* what the cpu backend will run */
  c->cores = cnn_cpu_cores(&c->cores_from);
  c->wait_policy = cnn_cpu_wait_policy();
}

static double cli_gib(size_t b) { return (double)b / (1024.0 * 1024.0 * 1024.0); }
static double cli_round2(double x) { return round(x * 100) / 100; }

static int cli_devices_text(const cli_cpu *c) {
  printf("CPU\n  model               %s\n", c->model);
  printf("  logical cores       %ld online", c->online);
  if (c->configured > c->online) printf(" (%ld configured)", c->configured);
  printf("\n  usable cores        %d (%s)", c->cores, c->cores_from);
  printf("\n  OpenMP threads      %d (from %s)", c->threads, c->threads_from);
  printf("\n  OpenMP wait policy  %s", c->wait_policy);
  printf("\n  SIMD               ");
  int any = 0;
  for (int i = 0; i < N_SIMD; i++)
    if (cli_simd_has(i) == 1) printf(" %s", simd_names[i]), any = 1;
  printf("%s\n", any ? "" : " (none detected)");

  int n = cnn_cuda_device_count();
  if (n <= 0) { /* the CPU is all there is; say why (cnn_cuda_device_count's message) */
    printf("\nno CUDA GPU: %s\n", cnn_last_error());
    if (!cnn_have_cuda()) printf("  (rebuild with nvcc and CNN_CUDA=ON for the CUDA backend)\n");
    return 0;
  }
  const char *module = NULL;
  if (cnn_cuda_module_loaded(&module)) printf("\nCUDA module  %s\n", module);
  for (int i = 0; i < n; i++) {
    cnn_device_info d;
    if (cnn_cuda_device_info(i, &d) != CNN_OK) {
      printf("\nGPU %d  (cannot query: %s)\n", i, cnn_last_error());
      continue;
    }
    printf("\nGPU %d  %s\n", i, d.name);
    printf("  compute capability  %d.%d\n", d.cc_major, d.cc_minor);
    printf("  SMs                 %d\n", d.sms);
    printf("  memory              %.2f GiB total, %.2f GiB free\n", cli_gib(d.mem_total), cli_gib(d.mem_free));
    printf("  L2 cache            %.1f MiB\n", (double)d.l2_bytes / (1024.0 * 1024.0));
    printf("  shared mem/block    %.0f KiB (opt-in)\n", (double)d.smem_per_block_optin / 1024.0);
    if (d.clock_khz > 0)
      printf("  clock               %d MHz\n", d.clock_khz / 1000);
    else
      printf("  clock               not reported\n");
    printf("  memory bus          %d bit\n", d.mem_bus_bits);
  }
  return 0;
}

static int cli_devices_json(const cli_cpu *c) {
  cJSON *root = cJSON_CreateObject(), *cpu = cJSON_AddObjectToObject(root, "cpu");
  cJSON *simd = NULL, *gpus = NULL;
  if (!root || !cpu) goto nomem;
  cJSON_AddStringToObject(cpu, "model", c->model);
  cJSON_AddNumberToObject(cpu, "logical_cores", (double)c->online);
  cJSON_AddNumberToObject(cpu, "configured_cores", (double)c->configured);
  cJSON_AddNumberToObject(cpu, "omp_max_threads", c->threads);
  cJSON_AddStringToObject(cpu, "omp_threads_from", c->threads_from);
  cJSON_AddNumberToObject(cpu, "usable_cores", c->cores);
  cJSON_AddStringToObject(cpu, "usable_cores_from", c->cores_from);
  cJSON_AddStringToObject(cpu, "omp_wait_policy", c->wait_policy);
  simd = cJSON_AddObjectToObject(cpu, "simd");
  if (!simd) goto nomem;
  for (int i = 0; i < N_SIMD; i++) {
    int has = cli_simd_has(i);
    if (has < 0)
      cJSON_AddNullToObject(simd, simd_names[i]); /* unknown, not absent */
    else
      cJSON_AddBoolToObject(simd, simd_names[i], has);
  }
  cJSON_AddBoolToObject(root, "cuda_built", cnn_have_cuda());
  int n = cnn_cuda_device_count();
  if (n <= 0) /* why no GPU is usable */
    cJSON_AddStringToObject(root, "cuda_error", cnn_last_error());
  else
    cJSON_AddNullToObject(root, "cuda_error");
  const char *module = NULL;
  if (cnn_cuda_module_loaded(&module))
    cJSON_AddStringToObject(root, "cuda_module", module);
  else
    cJSON_AddNullToObject(root, "cuda_module");
  gpus = cJSON_AddArrayToObject(root, "gpus");
  if (!gpus) goto nomem;
  for (int i = 0; i < n; i++) {
    cJSON *g = cJSON_CreateObject();
    if (!g) goto nomem;
    cJSON_AddItemToArray(gpus, g);
    cJSON_AddNumberToObject(g, "index", i);
    cnn_device_info d;
    if (cnn_cuda_device_info(i, &d) != CNN_OK) {
      cJSON_AddStringToObject(g, "error", cnn_last_error());
      continue;
    }
    char cc[32];
    snprintf(cc, sizeof cc, "%d.%d", d.cc_major, d.cc_minor);
    cJSON_AddStringToObject(g, "name", d.name);
    cJSON_AddStringToObject(g, "compute_capability", cc);
    cJSON_AddNumberToObject(g, "cc_major", d.cc_major);
    cJSON_AddNumberToObject(g, "cc_minor", d.cc_minor);
    cJSON_AddNumberToObject(g, "sms", d.sms);
    cJSON_AddNumberToObject(g, "mem_total_gib", cli_round2(cli_gib(d.mem_total)));
    cJSON_AddNumberToObject(g, "mem_free_gib", cli_round2(cli_gib(d.mem_free)));
    cJSON_AddNumberToObject(g, "mem_total_bytes", (double)d.mem_total);
    cJSON_AddNumberToObject(g, "mem_free_bytes", (double)d.mem_free);
    cJSON_AddNumberToObject(g, "l2_mib", cli_round2((double)d.l2_bytes / (1024.0 * 1024.0)));
    cJSON_AddNumberToObject(g, "smem_per_block_optin_kib", cli_round2((double)d.smem_per_block_optin / 1024.0));
    if (d.clock_khz > 0)
      cJSON_AddNumberToObject(g, "clock_mhz", d.clock_khz / 1000);
    else
      cJSON_AddNullToObject(g, "clock_mhz"); /* newer CUDA may not report it */
    cJSON_AddNumberToObject(g, "mem_bus_bits", d.mem_bus_bits);
  }
  char *text = cJSON_Print(root);
  if (!text) goto nomem;
  printf("%s\n", text);
  cJSON_free(text);
  cJSON_Delete(root);
  return 0;
nomem:
  cJSON_Delete(root);
  fprintf(stderr, "cnn devices: out of memory building the JSON\n");
  return 1;
}

int cnn_cmd_devices(int argc, char **argv) {
  int json = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      help(stdout);
      return 0;
    } else if (!strcmp(argv[i], "--json")) {
      json = 1;
    } else {
      fprintf(stderr, "cnn devices: unknown argument '%s'\n", argv[i]);
      help(stderr);
      return 2;
    }
  }
  cli_cpu c;
  cli_cpu_probe(&c);
  return json ? cli_devices_json(&c) : cli_devices_text(&c);
}
