/* cnn bench MODEL: training and inference throughput, batch-1 latency and the
 * per-layer profile of a model on one backend, on random data.
 *
 * Throughput runs the compiled step program itself (cnn_program_run), as bench_train
 * does: the random batch is staged once (the first warm-up step goes through
 * cnn_net_train_launch / cnn_net_predict) and every later step replays the program on
 * it, so the figures exclude data loading and host-to-device copies. On cuda the
 * program is a CUDA graph after its warm-up. Each timed step is waited for (the
 * backend's sync) so that the median of the step times can be taken.
 *
 * The per-layer times come from a separate run with node profiling on and CUDA
 * graphs off: on cuda program.c records a CUDA event after every node and reads
 * them once per run (the backend's timer ops), elsewhere it waits for every node
 * (the backend's sync) and adds its wall time to the program's node_s. They show
 * where the time goes; the throughput figures say how fast a step is. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/bench.h"
#include "cli/mem_batch.h"
#include "core/error.h"
#include "core/net.h"
#include "core/rng.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static cnn_status dev_sync(const cnn_backend *b) {
  return b->ops->sync ? b->ops->sync(b->ctx) : CNN_OK;
}

/* warm untimed runs of p, then `steps` timed ones, each waited for: median seconds */
static cnn_status time_program(cnn_net *net, cnn_program *p, int warm, int steps, double *med) {
  double *t = malloc((size_t)steps * sizeof *t);
  if (!t) return cnn_error(CNN_ERR_NOMEM, "out of memory");
  cnn_status st = CNN_OK;
  for (int s = 0; s < warm + steps && st == CNN_OK; s++) {
    double t0 = now_s();
    st = cnn_program_run(net, p, 0);
    if (st == CNN_OK) st = dev_sync(net->b);
    if (s >= warm) t[s - warm] = now_s() - t0;
  }
  if (st == CNN_OK) *med = median(t, steps);
  free(t);
  return st;
}

/* The engine a conv pass runs with: the backend's conv_engine op where it has one
 * (cuda, cpu); else "ref" (plain loops), or what a cpu backend without the op would
 * pick from the shape (cpu_conv.c: the same kind for all three passes). */
static const char *engine_name(const cnn_backend *b, const cnn_conv_desc *d, cnn_conv_dir dir) {
  if (b->ops->conv_engine) {
    const char *e = b->ops->conv_engine(b->ctx, d, dir);
    return e ? e : "?";
  }
  if (strcmp(b->name, "cpu")) return strcmp(b->name, "ref") ? "?" : "ref";
  if (d->groups == d->c && d->c == d->k) return "depthwise";
  if (d->r == 1 && d->s == 1 && d->stride_h == 1 && d->stride_w == 1 && d->pad_h == 0 &&
      d->pad_w == 0 && d->oh == d->h && d->ow == d->w)
    return "gemm-1x1";
  return "im2col+gemm";
}

/* the engines of every conv node of p, on its layer */
static void program_engines(cli_bench *r, const cnn_net *net, const cnn_program *p) {
  for (int i = 0; i < p->n_nodes; i++) {
    const cnn_node *nd = &p->nodes[i];
    const int dir = cnn_node_conv_dir(nd);
    if (dir < 0) continue;
    if (nd->layer >= 0 && nd->layer < r->n_layers)
      r->layer[nd->layer].engine[dir] = engine_name(net->b, &nd->u.conv.d, (cnn_conv_dir)dir);
  }
}

/* ops that only a backward pass runs */
static int backward_op(cnn_node_op op) {
  switch (op) {
    case CNN_NODE_ACT_BWD: case CNN_NODE_BIAS_GRAD: case CNN_NODE_CONV_BWD_DATA:
    case CNN_NODE_CONV_BWD_FILTER: case CNN_NODE_MAXPOOL_BWD: case CNN_NODE_AVGPOOL_BWD:
    case CNN_NODE_BN_BWD: case CNN_NODE_SHORTCUT_BWD: case CNN_NODE_ADD_ACT_BWD:
    case CNN_NODE_CROP_BWD: case CNN_NODE_REORG_BWD: case CNN_NODE_BN_POOL_BWD:
      return 1;
    default:
      return 0;
  }
}

/* node times of a profiled program onto the layers. A training program is forward
 * (layers in ascending order), then backward (descending), then the optimizer and
 * the statistics commits (program.c's compile): the backward part starts at the
 * first node of a lower layer than one already seen, or of a backward-only op.
 * The fused softmax cross-entropy node (loss and its gradient) counts as forward;
 * commits count as their layer's backward; nodes of no layer (step state, input
 * check, optimizer) as other. */
static void attribute(cli_bench *r, const cnn_program *p, int runs) {
  int phase = 0, maxl = -1; /* 0 forward, 1 backward */
  double scale = 1e3 / runs;
  for (int i = 0; i < r->n_layers; i++)
    if (r->layer[i].fused_into < 0) {
      r->layer[i].fwd_ms = 0;
      r->layer[i].bwd_ms = p->kind == CNN_PK_INFER ? -1 : 0;
    }
  r->other_ms = 0;
  for (int i = 0; i < p->n_nodes; i++) {
    const cnn_node *nd = &p->nodes[i];
    double ms = p->node_s[i] * scale;
    if (nd->layer < 0 || nd->layer >= r->n_layers) {
      r->other_ms += ms;
      continue;
    }
    if (phase == 0 && p->kind != CNN_PK_INFER && (nd->layer < maxl || backward_op(nd->op)))
      phase = 1;
    if (nd->layer > maxl) maxl = nd->layer;
    cli_bench_layer *l = &r->layer[nd->layer];
    if (phase) l->bwd_ms += ms;
    else l->fwd_ms += ms;
  }
  r->profile_runs = runs;
}

/* the per-layer profile: `runs` runs of the (batch, kind) program with every node
 * timed and waited for, after one untimed run, CUDA graphs off */
static cnn_status profile(cli_bench *r, cnn_net *net, cnn_prog_kind kind, int runs) {
  cnn_program *p;
  cnn_net_set_graphs(net, 0);
  cnn_net_set_profile(net, 1);
  cnn_net_drop_programs(net);
  cnn_status st = cnn_net_program_for(net, r->batch, kind, &p);
  for (int i = 0; i < runs + 1 && st == CNN_OK; i++) {
    if (i == 1 && p->node_s) memset(p->node_s, 0, (size_t)p->n_nodes * sizeof *p->node_s);
    st = cnn_program_run(net, p, 0);
    if (st == CNN_OK) st = dev_sync(net->b);
  }
  if (st == CNN_OK && p->node_s) attribute(r, p, runs);
  cnn_net_set_profile(net, 0);
  cnn_net_drop_programs(net); /* a profiled program keeps timing its nodes */
  cnn_net_set_graphs(net, 1);
  return st;
}

static void layer_table(cli_bench *r, const cnn_net *net) {
  for (int i = 0; i < net->n_layers; i++) {
    const cnn_layer *l = &net->layers[i];
    cli_bench_layer *o = &r->layer[i];
    memset(o, 0, sizeof *o);
    o->index = i;
    snprintf(o->type, sizeof o->type, "%s", l->kind->name);
    l->kind->describe(net, l, o->desc, sizeof o->desc);
    o->out[0] = l->out.h, o->out[1] = l->out.w, o->out[2] = l->out.c;
    o->gflop = l->flops / 1e9;
    o->fwd_ms = o->bwd_ms = -1;
    o->fused_into = -1;
  }
}

/* fusion is decided per build: after one, which layers run inside another's nodes */
static void fused(cli_bench *r, const cnn_net *net) {
  for (int i = 0; i < net->n_layers; i++) r->layer[i].fused_into = net->layers[i].absorbed_by;
}

static cnn_status pick_batch(cli_bench *r, cnn_net *net, cnn_backend *b, const cnn_net_info *info) {
  cnn_batch_fit fit;
  memset(&fit, 0, sizeof fit);
  if (strcmp(cnn_backend_name(b), "cuda")) /* the random batch and the host outputs */
    fit.extra_per_image = (size_t)info->height * info->width * info->channels * 4 + 4 +
                          (size_t)info->classes * 4 + 4;
  int req = r->batch_req ? r->batch_req : info->batch;
  return cli_batch_pick("bench", net, b, r->infer ? CNN_MODE_INFER : CNN_MODE_TRAIN, req,
                        r->no_check, 65536, 0, &fit, &r->batch);
}

/* the training half: throughput, then the profile */
static cnn_status bench_train(cli_bench *r, cnn_net *net, cnn_backend *b, const float *x,
                              const int32_t *y, double flops) {
  cnn_train_config tc;
  CNN_TRY(cnn_net_build(net, b, r->batch, CNN_MODE_TRAIN));
  fused(r, net);
  /* a tiny learning rate keeps random data from driving the loss to NaN (a refused
   * step skips the update); a step costs the same at any rate */
  CNN_TRY(cnn_net_train_config(net, &tc));
  tc.learning_rate = 1e-6f;
  CNN_TRY(cnn_net_set_train_config(net, &tc));
  CNN_TRY(cnn_net_train_launch(net, x, y, r->batch)); /* stages the batch: warm-up step 1 */
  cnn_program *p;
  double med;
  CNN_TRY(cnn_net_program_for(net, r->batch, CNN_PK_TRAIN, &p));
  int warm = r->warmup > 1 ? r->warmup - 1 : 0;
  CNN_TRY(time_program(net, p, warm, r->steps, &med));
  net->launched += warm + r->steps;
  net->params_dirty = 1;
  program_engines(r, net, p);
  cnn_train_metrics m;
  CNN_TRY(cnn_net_train_metrics(net, 1, &m));
  r->refused = (long)m.refused;
  r->train_step_ms = med * 1e3;
  r->train_ips = r->batch / med;
  r->train_tflops = 3 * flops * r->batch / med / 1e12;
  if (r->layers) CNN_TRY(profile(r, net, CNN_PK_TRAIN, r->profile_runs));
  return CNN_OK;
}

static cnn_status bench_infer(cli_bench *r, cnn_net *net, cnn_backend *b, const float *x,
                              const int32_t *y, double flops) {
  CNN_TRY(cnn_net_build(net, b, r->batch, CNN_MODE_INFER));
  if (r->infer) fused(r, net);
  /* stages the batch and folds batch norm into the conv weights: warm-up run 1 */
  CNN_TRY(cnn_net_predict(net, x, y, r->batch, NULL, NULL));
  cnn_program *p;
  double med;
  CNN_TRY(cnn_net_program_for(net, r->batch, CNN_PK_INFER, &p));
  CNN_TRY(time_program(net, p, r->warmup > 1 ? r->warmup - 1 : 0, r->steps, &med));
  if (r->infer) program_engines(r, net, p);
  r->infer_step_ms = med * 1e3;
  r->infer_ips = r->batch / med;
  r->infer_tflops = flops * r->batch / med / 1e12;
  if (r->layers && r->infer) CNN_TRY(profile(r, net, CNN_PK_INFER, r->profile_runs));
  /* latency: one image end to end (upload, the batch-1 program, probabilities back) */
  double *t = malloc((size_t)r->steps * sizeof *t);
  if (!t) return cnn_error(CNN_ERR_NOMEM, "out of memory");
  cnn_status st = CNN_OK;
  int warm = r->warmup < 3 && !strcmp(cnn_backend_name(b), "cuda") ? 3 : r->warmup;
  for (int s = 0; s < warm + r->steps && st == CNN_OK; s++) {
    double t0 = now_s();
    st = cnn_net_predict(net, x, y, 1, NULL, NULL);
    if (s >= warm) t[s - warm] = now_s() - t0;
  }
  if (st == CNN_OK) r->latency_ms = median(t, r->steps) * 1e3;
  free(t);
  return st;
}

cnn_status cli_bench_model(cli_bench *r, cnn_net *net, cnn_backend *b) {
  cnn_net_info info;
  CNN_TRY(cnn_net_info_get(net, &info));
  r->params = info.num_params;
  r->gflop_per_image = info.flops_per_image / 1e9;
  r->n_layers = net->n_layers;
  r->train_ips = r->infer_ips = r->latency_ms = r->train_tflops = r->infer_tflops = -1;
  r->train_step_ms = r->infer_step_ms = -1;
  r->layer = calloc((size_t)net->n_layers, sizeof *r->layer);
  if (!r->layer) return cnn_error(CNN_ERR_NOMEM, "out of memory");
  layer_table(r, net);
  CNN_TRY(pick_batch(r, net, b, &info));
  size_t per = (size_t)info.height * info.width * info.channels;
  float *x = malloc((size_t)r->batch * per * sizeof *x);
  int32_t *y = malloc((size_t)r->batch * sizeof *y);
  if (!x || !y) {
    free(x);
    free(y);
    return cnn_error(CNN_ERR_NOMEM, "out of memory for a batch of %d random images", r->batch);
  }
  for (size_t i = 0; i < (size_t)r->batch * per; i++) x[i] = cnn_rng_uniform(7, i) - 0.5f;
  for (int i = 0; i < r->batch; i++)
    y[i] = (int32_t)(cnn_rng_u64(8, (uint64_t)i) % (uint64_t)info.classes);
  cnn_status st = CNN_OK;
  if (!r->infer) st = bench_train(r, net, b, x, y, info.flops_per_image);
  if (st == CNN_OK) st = bench_infer(r, net, b, x, y, info.flops_per_image);
  free(x);
  free(y);
  return st;
}
