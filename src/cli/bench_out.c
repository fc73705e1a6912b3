/* cnn bench: the device's description, the printed report and the JSON file. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/bench.h"
#include "core/error.h"
#include "core/file_write.h"
#include "core/net.h"

static void cpu_model(char *out, size_t n) {
  snprintf(out, n, "unknown CPU");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    char *colon = strchr(line, ':');
    /* x86: "model name"; ARM: "Model" or "Hardware" (the first one found) */
    if (!colon || (strncmp(line, "model name", 10) && strncmp(line, "Model", 5) &&
                   strncmp(line, "Hardware", 8)))
      continue;
    char *v = colon + 1;
    v += strspn(v, " \t");
    v[strcspn(v, "\n")] = 0;
    if (*v) {
      snprintf(out, n, "%s", v);
      break;
    }
  }
  fclose(f);
}

void cli_bench_device(cli_bench *r, cnn_backend *b) {
  const char *dev = cnn_backend_name(b);
  r->sms = r->cc_major = r->cc_minor = 0;
  r->mem_total = 0;
  r->threads = 0;
  if (!strcmp(dev, "cuda")) {
    cnn_device_info d;
    if (cnn_cuda_device_info(0, &d) == CNN_OK) {
      snprintf(r->device_name, sizeof r->device_name, "%s", d.name);
      r->sms = d.sms;
      r->cc_major = d.cc_major, r->cc_minor = d.cc_minor;
      r->mem_total = d.mem_total;
    } else {
      snprintf(r->device_name, sizeof r->device_name, "CUDA device 0");
    }
    return;
  }
  cpu_model(r->device_name, sizeof r->device_name);
  r->threads = !strcmp(dev, "cpu") ? cnn_cpu_threads(NULL) : 1; /* ref: plain loops */
  size_t total = 0;
  if (cnn_backend_mem_info(b, NULL, &total, NULL) == CNN_OK) r->mem_total = total;
}

static int is_cuda(const cli_bench *r) { return !strcmp(r->device, "cuda"); }

static void print_device(const cli_bench *r) {
  double gib = (double)r->mem_total / (1024.0 * 1024.0 * 1024.0);
  if (is_cuda(r))
    printf("device     cuda: %s, %d SMs, compute capability %d.%d, %.1f GiB\n", r->device_name,
           r->sms, r->cc_major, r->cc_minor, gib);
  else
    printf("device     %s: %s, %d thread%s, %.1f GiB memory\n", r->device, r->device_name,
           r->threads, r->threads == 1 ? "" : "s", gib);
}

static void print_peak(const cli_bench *r) {
  const cli_bench_peak *pk = &r->pk;
  int g = !is_cuda(r); /* GFLOP/s on the host, TFLOP/s on a GPU */
  printf("peak       %dx%dx%d matrix products through the backend's gemm ops, copies through "
         "its copy op (best of 3 rounds)\n", pk->n, pk->n, pk->n);
  static const char *const names[] = {"fp32 gemm", "tf32 gemm", "bf16 gemm"};
  const double v[] = {pk->fp32_tflops, pk->tf32_tflops, pk->bf16_tflops};
  for (int i = 0; i < 3; i++) {
    if (v[i] < 0) continue;
    if (g) printf("  %-10s %10.1f GFLOP/s\n", names[i], v[i] * 1e3);
    else printf("  %-10s %10.2f TFLOP/s\n", names[i], v[i]);
  }
  if (pk->copy_gb_s >= 0)
    printf("  %-10s %10.1f GB/s (device to device, %zu MiB, bytes read + written)\n", "copy",
           pk->copy_gb_s, pk->copy_bytes >> 20);
  if (pk->note[0]) printf("  not measured: %s\n", pk->note);
}

/* a layer's TFLOP/s in the profile (training: 3x forward FLOPs over forward +
 * backward time); -1: not measured, no FLOPs, or fused into another layer */
static double layer_tflops(const cli_bench *r, const cli_bench_layer *l) {
  if (!r->profile_runs || l->fused_into >= 0 || l->gflop <= 0) return -1;
  double ms = (l->fwd_ms > 0 ? l->fwd_ms : 0) + (l->bwd_ms > 0 ? l->bwd_ms : 0);
  /* GFLOP x images / ms = 1e9 FLOP / 1e-3 s = TFLOP/s */
  return ms > 0 ? (r->train_ips >= 0 ? 3 : 1) * l->gflop * r->batch / ms : -1;
}

static void print_layers(const cli_bench *r) {
  int train = r->train_ips >= 0;
  printf("\nper layer (%s, batch %d): ms per step from a separate profile run (mean of %d "
         "run%s,\nCUDA events on cuda): where the time goes; the lines above: how fast a "
         "step is\n", train ? "training step" : "inference", r->batch, r->profile_runs,
         r->profile_runs == 1 ? "" : "s");
  printf("%4s  %-10s %-30s %-13s %9s %9s %9s %8s  %s\n", "#", "type", "config", "output",
         "GFLOP/img", "fwd ms", "bwd ms", "TFLOP/s", train ? "engine fwd / bwd-data / bwd-filter"
                                                            : "engine fwd");
  double sum = 0;
  for (int i = 0; i < r->n_layers; i++) {
    const cli_bench_layer *l = &r->layer[i];
    char shape[32], fwd[16] = "", bwd[16] = "", tf[16] = "", eng[160] = "";
    snprintf(shape, sizeof shape, "%dx%dx%d", l->out[0], l->out[1], l->out[2]);
    if (l->fused_into >= 0) {
      snprintf(fwd, sizeof fwd, "in %d", l->fused_into);
    } else {
      double t = (l->fwd_ms > 0 ? l->fwd_ms : 0) + (l->bwd_ms > 0 ? l->bwd_ms : 0);
      sum += t;
      if (l->fwd_ms >= 0) snprintf(fwd, sizeof fwd, "%.3f", l->fwd_ms);
      if (l->bwd_ms >= 0) snprintf(bwd, sizeof bwd, "%.3f", l->bwd_ms);
      if (layer_tflops(r, l) >= 0) snprintf(tf, sizeof tf, "%.3f", layer_tflops(r, l));
    }
    if (l->engine[0] || l->engine[1] || l->engine[2]) {
      if (train)
        snprintf(eng, sizeof eng, "%s / %s / %s", l->engine[0] ? l->engine[0] : "-",
                 l->engine[1] ? l->engine[1] : "-", l->engine[2] ? l->engine[2] : "-");
      else
        snprintf(eng, sizeof eng, "%s", l->engine[0] ? l->engine[0] : "-");
    }
    char line[512];
    int n = snprintf(line, sizeof line, "%4d  %-10s %-30.30s %-13s %9.4f %9s %9s %8s  %s",
                     l->index, l->type, l->desc, shape, l->gflop, fwd, bwd, tf, eng);
    while (n > 0 && (size_t)n < sizeof line && line[n - 1] == ' ') line[--n] = 0;
    printf("%s\n", line);
  }
  printf("      other nodes (step state, input check%s): %.3f ms; all nodes %.3f ms per step\n",
         train ? ", optimizer" : "", r->other_ms, sum + r->other_ms);
  if (train)
    printf("      backward: the gradient nodes and batch-norm commits; the loss node (with its\n"
           "      gradient) counts as forward; TFLOP/s: 3x forward FLOPs / (fwd + bwd time)\n");
}

void cli_bench_print(const cli_bench *r) {
  char a[32];
  print_device(r);
  if (r->pk.measured) print_peak(r);
  if (!r->model) return;
  cnn_commas(a, sizeof a, r->params);
  printf("model      %s: %s parameters, %.4f GFLOP per image forward, %d layers\n", r->model, a,
         r->gflop_per_image, r->n_layers);
  printf("precision  %s, batch %d, median of %d timed step%s after %d warm-up (random data, "
         "already on the device)\n", r->precision, r->batch, r->steps, r->steps == 1 ? "" : "s",
         r->warmup);
  double peak = cli_bench_peak_for(r);
  if (r->train_ips >= 0) {
    printf("training   %10.1f images/s  %9.3f ms/step   %8.3f TFLOP/s (3x forward FLOPs)",
           r->train_ips, r->train_step_ms, r->train_tflops);
    if (peak > 0)
      printf("  %.1f%% of the %.3g TFLOP/s peak", 100 * r->train_tflops / peak, peak);
    printf("\n");
    if (r->refused)
      printf("           (%ld steps refused for a non-finite loss: they skip the update)\n",
             r->refused);
  }
  printf("inference  %10.1f images/s  %9.3f ms/batch  %8.3f TFLOP/s", r->infer_ips,
         r->infer_step_ms, r->infer_tflops);
  if (peak > 0) printf("  %.1f%% of the %.3g TFLOP/s peak", 100 * r->infer_tflops / peak, peak);
  printf("\nlatency    %10.3f ms (batch 1, median: upload, forward, probabilities back)\n",
         r->latency_ms);
  if (r->profile_runs) print_layers(r);
}

/* a figure, or null when it was not measured (< 0) */
static void add_num(cJSON *o, const char *key, double v) {
  if (v < 0) cJSON_AddNullToObject(o, key);
  else cJSON_AddNumberToObject(o, key, v);
}

static void add_str(cJSON *o, const char *key, const char *v) {
  if (v) cJSON_AddStringToObject(o, key, v);
  else cJSON_AddNullToObject(o, key);
}

static void json_model(cJSON *root, const cli_bench *r) {
  add_str(root, "model", r->model);
  add_str(root, "precision", r->precision);
  cJSON_AddNumberToObject(root, "batch", r->batch);
  cJSON_AddNumberToObject(root, "params", (double)r->params);
  cJSON_AddNumberToObject(root, "gflop_per_image", r->gflop_per_image);
  add_num(root, "train_images_per_s", r->train_ips);
  add_num(root, "infer_images_per_s", r->infer_ips);
  add_num(root, "latency_ms_batch1", r->latency_ms);
  add_num(root, "train_tflops", r->train_tflops);
  add_num(root, "infer_tflops", r->infer_tflops);
  add_num(root, "train_step_ms", r->train_step_ms);
  add_num(root, "infer_step_ms", r->infer_step_ms);
  cJSON_AddNumberToObject(root, "steps", r->steps);
  cJSON_AddNumberToObject(root, "warmup", r->warmup);
  cJSON_AddNumberToObject(root, "refused_steps", (double)r->refused);
  add_str(root, "conv_engine", r->conv_engine);
  double peak = cli_bench_peak_for(r);
  add_num(root, "peak_tflops_used", peak > 0 ? peak : -1);
  add_num(root, "train_peak_share",
          peak > 0 && r->train_tflops >= 0 ? r->train_tflops / peak : -1);
  add_num(root, "infer_peak_share",
          peak > 0 && r->infer_tflops >= 0 ? r->infer_tflops / peak : -1);
  cJSON_AddNumberToObject(root, "profile_runs", r->profile_runs);
  add_num(root, "other_ms", r->profile_runs ? r->other_ms : -1);
  cJSON *layers = cJSON_AddArrayToObject(root, "layers");
  static const char *const ekeys[] = {"engine_fwd", "engine_bwd_data", "engine_bwd_filter"};
  for (int i = 0; i < r->n_layers && layers; i++) {
    const cli_bench_layer *l = &r->layer[i];
    cJSON *o = cJSON_CreateObject();
    if (!o) break;
    cJSON_AddItemToArray(layers, o);
    cJSON_AddNumberToObject(o, "index", l->index);
    cJSON_AddStringToObject(o, "type", l->type);
    cJSON_AddStringToObject(o, "desc", l->desc);
    cJSON_AddItemToObject(o, "out", cJSON_CreateIntArray(l->out, 3));
    cJSON_AddNumberToObject(o, "gflop", l->gflop);
    int own = l->fused_into < 0 && r->profile_runs;
    add_num(o, "fwd_ms", own ? l->fwd_ms : l->fused_into >= 0 && r->profile_runs ? 0 : -1);
    add_num(o, "bwd_ms", own ? l->bwd_ms : l->fused_into >= 0 && r->profile_runs &&
                                                   r->train_ips >= 0 ? 0 : -1);
    add_num(o, "tflops", layer_tflops(r, l));
    for (int e = 0; e < 3; e++) add_str(o, ekeys[e], l->engine[e]);
    add_num(o, "fused_into", l->fused_into);
  }
}

static void json_peak(cJSON *root, const cli_bench_peak *pk) {
  cJSON *o = cJSON_AddObjectToObject(root, "peak");
  if (!o) return;
  cJSON_AddNumberToObject(o, "gemm_n", pk->n);
  add_num(o, "fp32_tflops", pk->fp32_tflops);
  add_num(o, "tf32_tflops", pk->tf32_tflops);
  add_num(o, "bf16_tflops", pk->bf16_tflops);
  add_num(o, "copy_gb_per_s", pk->copy_gb_s);
  cJSON_AddNumberToObject(o, "copy_bytes", (double)pk->copy_bytes);
  add_str(o, "note", pk->note[0] ? pk->note : NULL);
}

cnn_status cli_bench_write_json(const cli_bench *r) {
  if (!r->json) return CNN_OK;
  cJSON *root = cJSON_CreateObject();
  if (!root) return cnn_error(CNN_ERR_NOMEM, "out of memory building the JSON");
  cJSON_AddStringToObject(root, "device", r->device);
  cJSON_AddStringToObject(root, "device_name", r->device_name);
  if (is_cuda(r)) {
    cJSON_AddNumberToObject(root, "sms", r->sms);
    char cc[16];
    snprintf(cc, sizeof cc, "%d.%d", r->cc_major, r->cc_minor);
    cJSON_AddStringToObject(root, "compute_capability", cc);
  } else {
    cJSON_AddNumberToObject(root, "threads", r->threads);
  }
  cJSON_AddNumberToObject(root, "memory_bytes", (double)r->mem_total);
  if (r->model) json_model(root, r);
  if (r->pk.measured) json_peak(root, &r->pk);
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  if (!text) return cnn_error(CNN_ERR_NOMEM, "out of memory printing the JSON");
  const void *parts[] = {text, "\n"};
  size_t sizes[] = {strlen(text), 1};
  cnn_status st = cnn_file_write_whole(r->json, parts, sizes, 2);
  cJSON_free(text);
  if (st != CNN_OK) return cnn_error_prefix(st, "writing %s", r->json);
  return CNN_OK;
}
