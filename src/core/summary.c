/* `cnn summary`: per-layer output shapes, parameters and FLOPs, the totals, and
 * the memory plan. */
#include <stdio.h>
#include <string.h>

#include "core/net.h"

void cnn_commas(char *buf, size_t len, unsigned long long v) {
  char tmp[32];
  int n = snprintf(tmp, sizeof tmp, "%llu", v), o = 0;
  for (int i = 0; i < n && o + 2 < (int)len; i++) {
    if (i && (n - i) % 3 == 0) buf[o++] = ',';
    buf[o++] = tmp[i];
  }
  buf[o] = 0;
}

void cnn_human_bytes(char *buf, size_t len, double bytes) {
  const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (bytes >= 1024 && i < 4) {
    bytes /= 1024;
    i++;
  }
  snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", bytes, u[i]);
}

static void flops_str(char *buf, size_t len, double f) {
  if (f >= 1e9) snprintf(buf, len, "%.2f G", f / 1e9);
  else if (f >= 1e6) snprintf(buf, len, "%.2f M", f / 1e6);
  else if (f >= 1e3) snprintf(buf, len, "%.1f K", f / 1e3);
  else snprintf(buf, len, "%.0f", f);
}

static size_t layer_params(const cnn_net *net, const cnn_layer *l) {
  size_t n = 0;
  for (int j = 0; j < l->n_param; j++)
    if (net->tensors[l->param[j]].trainable) n += net->tensors[l->param[j]].count;
  return n;
}

cnn_status cnn_net_summary(const cnn_net *net, int batch, void *fp) {
  FILE *f = fp ? fp : stdout;
  if (!net) return cnn_error(CNN_ERR_ARG, "cnn_net_summary: NULL net");
  if (batch <= 0) batch = net->cfg_batch;
  char a[64], b[64], c[64];
  fprintf(f, "%s: input %dx%dx%d (HxWxC), batch %d\n\n", net->path, net->in_h, net->in_w,
          net->in_c, batch);
  fprintf(f, "%4s  %-18s %-10s %-28s %-16s %14s %12s\n", "sec", "layer", "kind", "config",
          "output (HxWxC)", "params", "FLOPs/img");
  double flops = 0;
  for (int i = 0; i < net->n_layers; i++) {
    const cnn_layer *l = &net->layers[i];
    char cfgs[64], shape[32];
    l->kind->describe(net, l, cfgs, sizeof cfgs);
    snprintf(shape, sizeof shape, "%dx%dx%d", l->out.h, l->out.w, l->out.c);
    cnn_commas(a, sizeof a, layer_params(net, l));
    flops_str(b, sizeof b, l->flops);
    fprintf(f, "%4d  %-18s %-10s %-28s %-16s %14s %12s\n", l->section, l->name, l->kind->name,
            cfgs, shape, a, b);
    flops += l->flops;
  }
  cnn_commas(a, sizeof a, net->n_params);
  cnn_commas(b, sizeof b, net->n_state);
  flops_str(c, sizeof c, flops);
  fprintf(f, "\nparameters: %s trainable, %s batch-norm statistics\n", a, b);
  fprintf(f, "forward FLOPs: %sFLOP per image, %.2f GFLOP per batch of %d\n", c,
          flops * batch / 1e9, batch);
  return CNN_OK;
}

/* a memory plan (of a built net, or from cnn_net_plan_estimate) */
cnn_status cnn_plan_print(const cnn_plan_info *p, const char *backend, void *fp) {
  FILE *f = fp ? fp : stdout;
  char v[32], w[32];
  fprintf(f, "memory plan (%s, batch %d, backend %s):\n",
          p->mode == CNN_MODE_TRAIN ? "training" : "inference", p->batch, backend);
  struct { const char *what; size_t bytes; } rows[] = {
      {"parameters", p->param_bytes},   {"gradients", p->grad_bytes},
      {"optimizer state", p->opt_state_bytes}, {"batch-norm statistics", p->state_bytes},
      {"workspace", p->workspace_bytes}};
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    cnn_human_bytes(v, sizeof v, (double)rows[i].bytes);
    fprintf(f, "  %-24s %12s\n", rows[i].what, v);
  }
  cnn_human_bytes(v, sizeof v, (double)p->activation_bytes);
  cnn_human_bytes(w, sizeof w, (double)p->activation_bytes_naive);
  fprintf(f, "  %-24s %12s  (placed by liveness; %s without reuse)\n", "activations", v, w);
  cnn_human_bytes(v, sizeof v, (double)p->peak_bytes);
  fprintf(f, "  %-24s %12s  (%zu bytes)\n", "peak", v, p->peak_bytes);
  return CNN_OK;
}
