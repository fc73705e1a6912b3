/* cnn bench end to end on the cpu (and ref) backend:
 *  - models/lenet.cfg --batch 8 --steps 2 --json: exits 0; the JSON has every key
 *    the bench/ scripts read, with sane values (positive throughputs, one entry per
 *    layer of the net, per-layer GFLOP summing to gflop_per_image, times and conv
 *    engines per layer);
 *  - --infer leaves training out (null figures, no backward times);
 *  - --no-layers leaves the per-layer times out; --batch auto fits a memory limit;
 *  - --peak --device cpu measures a positive fp32 GEMM peak;
 *  - the cpu's --conv-engine dnnl and auto: the layer table names the engine per conv;
 *  - a small residual net with batch norm on ref: fused layers and the ref engine;
 *  - bad input (missing cfg, --batch 0, --device nonsense, a cuda engine on the cpu,
 *    --json in a missing folder, an unknown option) exits non-zero naming the
 *    problem. Times are never asserted beyond being positive. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clitest.h"
#include "cnn/cnn.h"
#include "testutil.h"

static char dir[256];
static const char *bin;

/* cnn bench ARGS > DIR/out_name 2>&1, with the environment settings env ("" none) */
static int run_env(const char *env, const char *args, const char *out_name) {
  char cmd[16384];
  snprintf(cmd, sizeof cmd, "cd %s && exec env OMP_NUM_THREADS=2 %s %s bench %s > %s/%s 2>&1",
           dir, env, bin, args, dir, out_name);
  return system(cmd);
}
static int run(const char *args, const char *out_name) { return run_env("", args, out_name); }

/* the JSON file DIR/rel, parsed (NULL, and a failed check, if it does not parse) */
static cJSON *load_json(const char *rel) {
  char *s = clitest_slurp(dir, rel);
  cJSON *j = cJSON_Parse(s);
  CHECK(j != NULL, "%s parses as JSON: %.300s", rel, s);
  free(s);
  return j;
}

static double num(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  CHECK(cJSON_IsNumber(v), "\"%s\" is a number", key);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int is_null(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return v && cJSON_IsNull(v);
}

static void test_model_json(const char *lenet) {
  cnn_net *net;
  cnn_net_info info;
  CHECK_OK(cnn_net_from_cfg_file(lenet, &net));
  CHECK_OK(cnn_net_info_get(net, &info));
  cnn_net_destroy(net);
  char args[1200];
  snprintf(args, sizeof args, "%s --device cpu --batch 8 --steps 2 --conv-engine own --json out.json",
           lenet);
  int st = run(args, "model.txt");
  char *o = clitest_slurp(dir, "model.txt");
  CHECK(clitest_exited_ok(st), "cnn bench lenet exits 0: %s", o);
  CHECK(strstr(o, "training") && strstr(o, "inference") && strstr(o, "latency") &&
            strstr(o, "per layer") && strstr(o, "im2col+gemm"),
        "the report has throughputs, latency and the layer table: %s", o);
  printf("%s", o);
  free(o);
  cJSON *j = load_json("out.json");
  if (!j) return;
  static const char *const keys[] = {"model", "device", "device_name", "precision", "batch",
                                      "params", "gflop_per_image", "train_images_per_s",
                                      "infer_images_per_s", "latency_ms_batch1", "train_tflops",
                                      "infer_tflops", "layers"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
    CHECK(cJSON_GetObjectItemCaseSensitive(j, keys[i]), "key \"%s\" is there", keys[i]);
  const cJSON *dev = cJSON_GetObjectItemCaseSensitive(j, "device");
  CHECK(cJSON_IsString(dev) && !strcmp(dev->valuestring, "cpu"), "device is cpu");
  const cJSON *prec = cJSON_GetObjectItemCaseSensitive(j, "precision");
  CHECK(cJSON_IsString(prec) && !strcmp(prec->valuestring, "fp32"), "precision fp32 on the cpu");
  CHECK(num(j, "batch") == 8, "batch 8");
  CHECK(num(j, "params") == (double)info.num_params, "params %g == %zu", num(j, "params"),
        info.num_params);
  double gpi = num(j, "gflop_per_image");
  CHECK(fabs(gpi - info.flops_per_image / 1e9) < 1e-9 * (1 + gpi), "gflop_per_image %g", gpi);
  static const char *const pos[] = {"train_images_per_s", "infer_images_per_s",
                                    "latency_ms_batch1", "train_tflops", "infer_tflops"};
  for (size_t i = 0; i < sizeof pos / sizeof *pos; i++)
    CHECK(num(j, pos[i]) > 0 && isfinite(num(j, pos[i])), "%s = %g is positive", pos[i],
          num(j, pos[i]));
  const cJSON *layers = cJSON_GetObjectItemCaseSensitive(j, "layers");
  CHECK(cJSON_IsArray(layers) && cJSON_GetArraySize(layers) == info.num_layers,
        "one entry per layer (%d)", info.num_layers);
  double gsum = 0, tsum = 0;
  int convs = 0, idx = 0;
  const cJSON *l;
  cJSON_ArrayForEach(l, layers) {
    static const char *const lk[] = {"index", "type", "desc", "out", "gflop", "fwd_ms",
                                     "bwd_ms", "engine_fwd", "engine_bwd_data",
                                     "engine_bwd_filter"};
    for (size_t i = 0; i < sizeof lk / sizeof *lk; i++)
      CHECK(cJSON_GetObjectItemCaseSensitive(l, lk[i]), "layer %d has \"%s\"", idx, lk[i]);
    CHECK(num(l, "index") == idx, "layer %d's index", idx);
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(l, "out");
    CHECK(cJSON_IsArray(out) && cJSON_GetArraySize(out) == 3, "layer %d: out is [h, w, c]", idx);
    gsum += num(l, "gflop");
    double f = num(l, "fwd_ms"), b = num(l, "bwd_ms");
    CHECK(f >= 0 && b >= 0, "layer %d: forward %g and backward %g ms", idx, f, b);
    tsum += f + b;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(l, "type");
    if (cJSON_IsString(type) && !strcmp(type->valuestring, "conv")) {
      const cJSON *e = cJSON_GetObjectItemCaseSensitive(l, "engine_fwd");
      CHECK(cJSON_IsString(e) && !strcmp(e->valuestring, "im2col+gemm"),
            "conv layer %d: the cpu's im2col+gemm engine", idx);
      convs++;
    } else {
      CHECK(is_null(l, "engine_fwd"), "layer %d is no conv: no engine", idx);
    }
    idx++;
  }
  CHECK(convs == 2, "lenet's two convs have engines (%d)", convs);
  CHECK(fabs(gsum - gpi) <= 1e-6 * gpi, "per-layer GFLOP sum %g == gflop_per_image %g", gsum, gpi);
  CHECK(tsum > 0, "the layers took time (%g ms)", tsum);
  cJSON_Delete(j);
}

/* the cpu's conv engines on the command line: --conv-engine dnnl runs oneDNN on lenet's
 * convs (or is refused naming the missing oneDNN), auto picks ours or oneDNN per pass
 * and the layer table reports it */
static void test_cpu_engines(const char *lenet) {
  char args[1200];
  snprintf(args, sizeof args, "%s --device cpu --batch 8 --steps 1 --warmup 1 --conv-engine dnnl "
           "--json dnnl.json", lenet);
  int st = run(args, "dnnl.txt");
  char *o = clitest_slurp(dir, "dnnl.txt");
  int have = clitest_exited_ok(st);
  CHECK(have || (clitest_failed_cleanly(st) && strstr(o, "without oneDNN")),
        "--conv-engine dnnl runs, or is refused naming oneDNN: %s", o);
  free(o);
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 0 && !have) continue;
    if (pass == 1) {
      snprintf(args, sizeof args, "%s --device cpu --batch 8 --steps 1 --warmup 1 "
               "--conv-engine auto --json auto.json", lenet);
      st = run(args, "auto.txt");
      o = clitest_slurp(dir, "auto.txt");
      CHECK(clitest_exited_ok(st), "--conv-engine auto on the cpu: %s", o);
      free(o);
    }
    cJSON *j = load_json(pass ? "auto.json" : "dnnl.json");
    if (!j) continue;
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(j, "layers"), *l;
    int convs = 0;
    cJSON_ArrayForEach(l, layers) {
      const cJSON *e = cJSON_GetObjectItemCaseSensitive(l, "engine_fwd");
      if (!cJSON_IsString(e)) continue;
      convs++;
      if (pass == 0)
        CHECK(!strcmp(e->valuestring, "dnnl"), "forced dnnl: a conv runs %s", e->valuestring);
      else
        CHECK(!strcmp(e->valuestring, "im2col+gemm") || (have && !strcmp(e->valuestring, "dnnl")),
              "auto: a conv runs %s", e->valuestring);
    }
    CHECK(convs == 2, "lenet's two convs report engines (%d)", convs);
    cJSON_Delete(j);
  }
}

static void test_infer(const char *lenet) {
  char args[1200];
  snprintf(args, sizeof args, "%s --device cpu --batch 8 --steps 2 --infer --json infer.json",
           lenet);
  int st = run(args, "infer.txt");
  char *o = clitest_slurp(dir, "infer.txt");
  CHECK(clitest_exited_ok(st) && !strstr(o, "training"), "--infer: no training: %s", o);
  free(o);
  cJSON *j = load_json("infer.json");
  if (!j) return;
  CHECK(is_null(j, "train_images_per_s") && is_null(j, "train_tflops"),
        "--infer: the training figures are null");
  CHECK(num(j, "infer_images_per_s") > 0 && num(j, "latency_ms_batch1") > 0,
        "--infer: inference figures");
  const cJSON *l;
  int all_null = 1;
  cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(j, "layers")) {
    all_null &= is_null(l, "bwd_ms");
  }
  CHECK(all_null, "--infer: no backward times");
  cJSON_Delete(j);
  /* --no-layers: no table, no times */
  snprintf(args, sizeof args, "%s --device cpu --batch 8 --steps 1 --infer --no-layers "
           "--json nolayers.json", lenet);
  st = run(args, "nolayers.txt");
  o = clitest_slurp(dir, "nolayers.txt");
  CHECK(clitest_exited_ok(st) && !strstr(o, "per layer"), "--no-layers: no table: %s", o);
  free(o);
  j = load_json("nolayers.json");
  if (!j) return;
  l = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "layers"), 0);
  CHECK(l && is_null(l, "fwd_ms"), "--no-layers: no forward times");
  cJSON_Delete(j);
}

/* --batch auto under a memory limit: a multiple of 8 that fits, said on stderr */
static void test_batch_auto(const char *lenet) {
  char args[1200];
  snprintf(args, sizeof args, "%s --device cpu --batch auto --steps 1 --infer --no-layers "
           "--json auto.json", lenet);
  int st = run_env("CNN_MEMORY_LIMIT=200M", args, "auto.txt");
  char *o = clitest_slurp(dir, "auto.txt");
  CHECK(clitest_exited_ok(st) && strstr(o, "--batch auto: "), "--batch auto: %s", o);
  free(o);
  cJSON *j = load_json("auto.json");
  if (!j) return;
  double b = num(j, "batch");
  CHECK(b >= 8 && fmod(b, 8) == 0, "--batch auto picked %g, a multiple of 8", b);
  cJSON_Delete(j);
}

static void test_peak(void) {
  int st = run("--peak --device cpu --json peak.json", "peak.txt");
  char *o = clitest_slurp(dir, "peak.txt");
  CHECK(clitest_exited_ok(st) && strstr(o, "GFLOP/s"), "--peak on the cpu: %s", o);
  printf("%s", o);
  free(o);
  cJSON *j = load_json("peak.json");
  if (!j) return;
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "peak");
  CHECK(cJSON_IsObject(p), "\"peak\" is an object");
  if (p) {
    CHECK(num(p, "fp32_tflops") > 0, "fp32 peak %g TFLOP/s is positive", num(p, "fp32_tflops"));
    CHECK(num(p, "copy_gb_per_s") > 0, "copy bandwidth is positive");
    CHECK(is_null(p, "bf16_tflops"), "no bf16 GEMM on the cpu");
  }
  CHECK(!cJSON_GetObjectItemCaseSensitive(j, "layers"), "--peak alone measures no model");
  cJSON_Delete(j);
}

/* batch norm and a residual add on ref: absorbed layers point at their absorber */
static void test_ref_fused(void) {
  char p[512];
  snprintf(p, sizeof p, "%s/res.cfg", dir);
  FILE *f = fopen(p, "w");
  fputs("[net]\nheight=8\nwidth=8\nchannels=3\nbatch=4\nlearning_rate=0.01\n"
        "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\npad=1\nactivation=relu\n"
        "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\npad=1\nactivation=relu\n"
        "[shortcut]\nfrom=-2\nactivation=linear\n[avgpool]\n[connected]\noutput=3\n"
        "activation=linear\n[softmax]\n", f);
  fclose(f);
  int st = run("res.cfg --device ref --steps 1 --warmup 1 --json res.json", "res.txt");
  char *o = clitest_slurp(dir, "res.txt");
  CHECK(clitest_exited_ok(st) && strstr(o, "ref / ref / ref"), "ref run with engines: %s", o);
  free(o);
  cJSON *j = load_json("res.json");
  if (!j) return;
  int fused = 0;
  const cJSON *l;
  cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(j, "layers")) {
    const cJSON *into = cJSON_GetObjectItemCaseSensitive(l, "fused_into");
    if (cJSON_IsNumber(into)) fused++;
  }
  CHECK(fused > 0, "some layers run fused into another (%d)", fused);
  cJSON_Delete(j);
}

static void test_errors(const char *lenet) {
  char a[8][1400];
  snprintf(a[0], sizeof a[0], "%s/missing.cfg --device cpu", dir);
  snprintf(a[1], sizeof a[1], "%s --device cpu --batch 0", lenet);
  snprintf(a[2], sizeof a[2], "%s --device nonsense", lenet);
  snprintf(a[3], sizeof a[3], "%s --device cpu --conv-engine cudnn", lenet);
  snprintf(a[4], sizeof a[4], "%s --device cpu --json %s/no/such/dir/x.json", lenet, dir);
  snprintf(a[5], sizeof a[5], "%s --device cpu --frobnicate", lenet);
  snprintf(a[6], sizeof a[6], "%s --device cpu --workspace 64", lenet);
  snprintf(a[7], sizeof a[7], "%s --device cpu --batch 4096", lenet); /* in 256 MiB */
  static const char *const want[] = {"missing.cfg", "--batch", "nonsense",
                                     "the cpu backend's engines are auto, own",
                                     "no/such/dir", "--frobnicate",
                                     "--workspace applies to the cuda backend", "does not fit"};
  for (int i = 0; i < 8; i++) {
    int st = run_env(i == 7 ? "CNN_MEMORY_LIMIT=256M" : "", a[i], "err.txt");
    char *o = clitest_slurp(dir, "err.txt");
    CHECK(clitest_failed_cleanly(st) && strstr(o, want[i]),
          "cnn bench %s fails naming '%s': %s", a[i], want[i], o);
    printf("  bench %s -> %s", strstr(a[i], "--") ? strstr(a[i], "--") : a[i], o);
    free(o);
  }
}

int main(void) {
  bin = clitest_setup("cnn_bench", dir, sizeof dir);
  char lenet[1024];
  tu_source_path("models/lenet.cfg", lenet, sizeof lenet);
  test_model_json(lenet);
  test_infer(lenet);
  test_cpu_engines(lenet);
  test_batch_auto(lenet);
  test_peak();
  test_ref_fused();
  test_errors(lenet);
  return clitest_finish("test_bench_cli", dir);
}
