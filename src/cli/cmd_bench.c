/* cnn bench MODEL.cfg [options]: training and inference throughput, batch-1
 * latency and a per-layer profile of a model; cnn bench --peak: the device's
 * matrix peaks. Measuring is in bench_model.c and bench_peak.c, the report in
 * bench_out.c; see docs/bench.md. */
#define _POSIX_C_SOURCE 200809L /* access */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "cli/bench.h"
#include "cli/cli.h"
#include "cli/mem_batch.h"
#include "cnn/cnn.h"

static void help(FILE *f) {
  fprintf(f,
          "usage: cnn bench MODEL.cfg [--device cuda|cpu|ref] [--precision auto|fp32|tf32|bf16]\n"
          "                 [--batch N|auto] [--infer] [--steps N] [--warmup N]\n"
          "                 [--conv-engine auto|own|cudnn|dnnl|winograd|NAME] [--workspace MB]\n"
          "                 [--layers|--no-layers] [--peak] [--peak-tflops X] [--json FILE]\n"
          "                 [--no-memory-check]\n"
          "       cnn bench --peak [--device D] [--json FILE]\n\n"
          "Measures a model on random data: training images/s (the whole step program,\n"
          "optimizer included; median of --steps timed steps after --warmup untimed ones),\n"
          "inference images/s at the same batch, the batch-1 latency, the TFLOP/s these\n"
          "reach (training counts 3x the forward FLOPs) and, per layer, forward and\n"
          "backward time, the engine of each conv pass and its TFLOP/s (from a separate\n"
          "profile run that waits for every node).\n\n"
          "  --device       cuda, cpu or ref (default: cuda when a GPU is usable, else cpu)\n"
          "  --precision    auto (default: tf32 on GPUs with tensor cores, bf16 on CPUs with\n"
          "                 bf16 units, else fp32) | fp32 | tf32 | bf16\n"
          "  --batch        images a step (default: the cfg's); auto: the largest multiple\n"
          "                 of 8 whose memory plan fits; a batch that does not fit is refused\n"
          "  --infer        inference only (no training build)\n"
          "  --steps N      timed steps (default 50 on cuda, 10 on cpu, 2 on ref)\n"
          "  --warmup N     untimed steps first (default 10 on cuda, 2 on cpu, 1 on ref)\n"
          "  --conv-engine  the conv engine: cuda: auto (tuned per shape), own, cudnn or an\n"
          "                 engine's name; cpu: a fixed rule per shape (default: Winograd,\n"
          "                 oneDNN or ours), own, winograd, dnnl, dnnl-plain or auto\n"
          "                 (measured per shape; docs/cpu-engines.md)\n"
          "  --workspace MB conv workspace the cuda tuner may use\n"
          "  --tune-cache F the cuda tuner's cache file, or off (default ~/.cache/cnn/)\n"
          "  --no-layers    skip the per-layer profile (--layers: on, the default)\n"
          "  --peak         measure the device's GEMM peaks (fp32, and tf32 / bf16 where the\n"
          "                 backend has gemm_ex and matrix units) and copy bandwidth; alone\n"
          "                 (no MODEL) it is all that runs; with a MODEL the achieved TFLOP/s\n"
          "                 are also given as a share of the peak of the build's precision\n"
          "  --peak-tflops X  that share against X TFLOP/s instead (no measurement)\n"
          "  --json FILE    also write everything as JSON (docs/bench.md lists the keys)\n");
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "cnn bench: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n(cnn bench --help describes the options)\n");
  return 2;
}

/* --json FILE: refuse a folder that is not there or not writable before measuring */
static int json_dir_unwritable(const char *path) {
  char dir[4096];
  const char *slash = strrchr(path, '/');
  if (!*path || (slash && !slash[1])) {
    fprintf(stderr, "cnn bench: --json needs a file name, got '%s'\n", path);
    return 1;
  }
  if (!slash) snprintf(dir, sizeof dir, ".");
  else snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
  if (access(dir, W_OK) == 0) return 0;
  fprintf(stderr, "cnn bench: cannot write --json %s: folder %s is %s\n", path, dir,
          access(dir, F_OK) ? "not there" : "not writable");
  return 1;
}

static int fail(void) {
  fprintf(stderr, "cnn bench: %s\n", cnn_last_error());
  return 1;
}

/* parse argv into r; 0 to go on, else the exit code (help: -1 meaning 0) */
static int parse(int argc, char **argv, cli_bench *r) {
  int steps = -1, warmup = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      help(stdout);
      return -1;
    } else if (!strcmp(a, "--infer")) {
      r->infer = 1;
    } else if (!strcmp(a, "--layers")) {
      r->layers = 1;
    } else if (!strcmp(a, "--no-layers")) {
      r->layers = 0;
    } else if (!strcmp(a, "--peak")) {
      r->peak = 1;
    } else if (!strcmp(a, "--no-memory-check")) {
      r->no_check = 1;
    } else if (!strcmp(a, "--batch")) {
      if (!cli_batch_arg("bench", v, &r->batch_req)) return 2;
      i++;
    } else if (!strcmp(a, "--steps")) {
      if (!cli_int("--steps", v, 1, 1000000, &steps)) return 2;
      i++;
    } else if (!strcmp(a, "--warmup")) {
      if (!cli_int("--warmup", v, 0, 1000000, &warmup)) return 2;
      i++;
    } else if (cli_engine_arg(argc, argv, &i, &r->eng)) {
      r->conv_engine = r->eng.conv_engine;
      r->workspace = r->eng.workspace;
    } else if (!strcmp(a, "--peak-tflops")) {
      char *end;
      r->peak_tflops = v ? strtod(v, &end) : 0;
      if (!v || end == v || *end || !(r->peak_tflops > 0 && r->peak_tflops < 1e9))
        return usage_error("--peak-tflops takes a positive number of TFLOP/s, got '%s'",
                           v ? v : "(nothing)");
      i++;
    } else if (!strcmp(a, "--device") || !strcmp(a, "--precision") || !strcmp(a, "--json")) {
      if (!v || !*v) return usage_error("%s needs a value", a);
      const char **dst = !strcmp(a, "--device")      ? &r->device
                         : !strcmp(a, "--precision") ? &r->precision_arg
                                                     : &r->json;
      *dst = v;
      i++;
    } else if (a[0] == '-') {
      return usage_error("unknown option '%s'", a);
    } else if (r->model) {
      return usage_error("one model at a time (got '%s' as well)", a);
    } else {
      r->model = a;
    }
  }
  if (!r->model && !r->peak) {
    help(stderr);
    return 2;
  }
  if (strcmp(r->device, "auto") && strcmp(r->device, "cuda") && strcmp(r->device, "cpu") &&
      strcmp(r->device, "ref"))
    return usage_error("--device takes cuda, cpu, ref or auto, got '%s'", r->device);
  cnn_precision prec;
  if (cnn_precision_parse(r->precision_arg, &prec) != CNN_OK)
    return usage_error("%s", cnn_last_error());
  if (r->json && json_dir_unwritable(r->json)) return 2;
  if (!strcmp(r->device, "auto")) r->device = cnn_cuda_device_count() > 0 ? "cuda" : "cpu";
  int cuda = !strcmp(r->device, "cuda"), ref = !strcmp(r->device, "ref");
  r->steps = steps > 0 ? steps : cuda ? 50 : ref ? 2 : 10;
  r->warmup = warmup >= 0 ? warmup : cuda ? 10 : ref ? 1 : 2;
  /* profile runs: enough to average on a GPU, few where a step is slow */
  r->profile_runs = !r->layers ? 0 : cuda ? 5 : ref ? 1 : (r->steps < 3 ? r->steps : 3);
  return 0;
}

/* --conv-engine, --workspace, --tune-cache: the backend's engine settings */
static int set_options(cli_bench *r, cnn_backend *b) {
  if (cli_engine_apply(b, &r->eng) != CNN_OK) {
    fprintf(stderr, "cnn bench: %s\n", cnn_last_error());
    return 2;
  }
  return 0;
}

static int run(cli_bench *r, cnn_net *net, cnn_backend *b) {
  int rc = set_options(r, b);
  if (rc) return rc;
  cli_bench_device(r, b);
  if (r->peak && cli_bench_peak_run(r, b) != CNN_OK) return fail();
  if (net) {
    cnn_precision prec;
    if (cnn_precision_parse(r->precision_arg, &prec) != CNN_OK ||
        cnn_net_set_precision(net, b, prec) != CNN_OK)
      return fail();
    r->precision = cnn_precision_name(cnn_net_precision(net));
    if (cli_bench_model(r, net, b) != CNN_OK) return fail();
  }
  cli_bench_print(r);
  if (cli_bench_write_json(r) != CNN_OK) return fail();
  if (r->json) printf("\nwrote %s\n", r->json);
  return 0;
}

int cnn_cmd_bench(int argc, char **argv) {
  cli_bench r;
  memset(&r, 0, sizeof r);
  r.device = "auto";
  r.precision_arg = "auto";
  r.layers = 1;
  int rc = parse(argc, argv, &r);
  if (rc) return rc < 0 ? 0 : rc;
  cnn_net *net = NULL;
  cnn_backend *b = NULL;
  const char *cfg = r.model ? cli_model_cfg(r.model) : NULL;
  if (r.model && (!cfg || cnn_net_from_cfg_file(cfg, &net) != CNN_OK)) return fail();
  if (cnn_backend_create(r.device, &b) != CNN_OK) {
    rc = fail();
  } else {
    rc = run(&r, net, b);
  }
  free(r.layer);
  cnn_net_destroy(net);
  cnn_backend_destroy(b);
  return rc;
}
