/* Freezing (cnn_net_set_frozen) on one backend:
 *  - after training steps with SGD (momentum, Nesterov, weight decay) and with
 *    AdamW, every tensor of the frozen sections (weights, batch-norm scale, shift
 *    and running statistics) and its optimizer state is bit-identical, and every
 *    trainable tensor after them changed;
 *  - frozen batch norm normalises with its running statistics: the first training
 *    step's loss equals the inference loss on the same batch (no dropout here);
 *    (also in a bf16 build where the backend has one);
 *  - the training program computes no gradient for the frozen prefix: no backward
 *    node of a frozen layer, no data gradient into it, no statistics commit. */
#include "freeze_suite.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn/cnn.h"
#include "testutil.h"

const char *fs_cfg =
    "[net]\nheight=8\nwidth=8\nchannels=2\nbatch=16\nlearning_rate=0.05\nmomentum=0.9\n"
    "decay=0.01\n[train]\nnesterov=1\nseed=3\n"
    "[convolutional]\nbatch_normalize=1\nfilters=6\nsize=3\npad=1\nactivation=relu\n"
    "[maxpool]\nsize=2\nstride=2\n"
    "[convolutional]\nfilters=8\nsize=3\npad=1\nactivation=leaky\n"
    "[connected]\noutput=16\nactivation=relu\n"
    "[connected]\noutput=10\nactivation=linear\n"
    "[softmax]\n";

#define N 16
#define IN (8 * 8 * 2)

static void batch(float *x, int32_t *y, uint64_t seed) {
  tu_fill_uniform(x, (size_t)N * IN, -1.0f, 1.0f, seed);
  for (int i = 0; i < N; i++) y[i] = (int32_t)((seed * 7 + (uint64_t)i * 3) % 10);
}

typedef struct snap {
  int n;
  float **t, **m[2];
  size_t *count;
  cnn_param_desc *d;
} snap;

static void take(cnn_net *net, snap *s) {
  s->n = cnn_net_num_tensors(net);
  s->t = calloc((size_t)s->n, sizeof *s->t);
  s->m[0] = calloc((size_t)s->n, sizeof *s->m[0]);
  s->m[1] = calloc((size_t)s->n, sizeof *s->m[1]);
  s->count = calloc((size_t)s->n, sizeof *s->count);
  s->d = calloc((size_t)s->n, sizeof *s->d);
  int slots = cnn_net_opt_slots(net);
  cnn_net_info info;
  cnn_net_info_get(net, &info);
  float *opt[2] = {NULL, NULL};
  for (int k = 0; k < slots; k++) {
    opt[k] = malloc(info.num_params * sizeof(float));
    CHECK_OK(cnn_net_opt_state_get(net, k, opt[k], info.num_params));
  }
  size_t at = 0;
  for (int i = 0; i < s->n; i++) {
    cnn_net_tensor_desc(net, i, &s->d[i]);
    s->count[i] = s->d[i].count;
    s->t[i] = malloc(s->count[i] * sizeof(float));
    CHECK_OK(cnn_net_tensor_get(net, i, s->t[i]));
    if (!s->d[i].trainable) continue;
    for (int k = 0; k < slots; k++) {
      s->m[k][i] = malloc(s->count[i] * sizeof(float));
      memcpy(s->m[k][i], opt[k] + at, s->count[i] * sizeof(float));
    }
    at += s->count[i];
  }
  free(opt[0]);
  free(opt[1]);
}

static void drop(snap *s) {
  for (int i = 0; i < s->n; i++) free(s->t[i]), free(s->m[0][i]), free(s->m[1][i]);
  free(s->t), free(s->m[0]), free(s->m[1]), free(s->count), free(s->d);
}

static int same(const float *a, const float *b, size_t n) {
  return a && b ? !memcmp(a, b, n * sizeof(float)) : a == b;
}

/* the number of program lines naming `op` on a layer whose name starts with `layer` ("" any) */
static int count_nodes(const char *prog, const char *op, const char *layer) {
  int n = 0;
  char want[64];
  snprintf(want, sizeof want, " %s ", op);
  for (const char *l = prog; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
    const char *e = strchr(l, '\n');
    size_t len = e ? (size_t)(e - l) : strlen(l);
    char line[256];
    snprintf(line, sizeof line, "%.*s", (int)(len < 255 ? len : 255), l);
    const char *o = strstr(line, want);
    if (o && (!*layer || strstr(o + strlen(want), layer))) n++;
  }
  return n;
}


/* freeze `frozen` sections, train `steps` steps with optimizer `opt`, compare */
static void train_frozen(const char *backend, int frozen, cnn_optimizer_kind opt, int steps,
                         int bf16) {
  cnn_net *net = NULL;
  cnn_backend *b = NULL;
  CHECK_OK(cnn_net_from_cfg_text(fs_cfg, "freeze.cfg", &net));
  CHECK_OK(cnn_backend_create(backend, &b));
  if (!net || !b) return;
  cnn_train_config tc;
  cnn_net_train_config(net, &tc);
  tc.optimizer = opt;
  if (opt != CNN_OPT_SGD) tc.learning_rate = 0.01f;
  CHECK_OK(cnn_net_set_train_config(net, &tc));
  if (bf16) {
    cnn_precision p = CNN_PRECISION_BF16;
    if (cnn_net_set_precision(net, b, p) != CNN_OK) { /* the backend has no bf16 */
      cnn_net_destroy(net);
      cnn_backend_destroy(b);
      return;
    }
  }
  CHECK_OK(cnn_net_set_frozen(net, frozen));
  CHECK(cnn_net_frozen(net) == frozen, "cnn_net_frozen says %d", cnn_net_frozen(net));
  CHECK_OK(cnn_net_build(net, b, N, CNN_MODE_TRAIN));
  float *x = malloc((size_t)N * IN * sizeof(float));
  int32_t y[N];
  /* one step first, then momentum, running statistics and Adam's moments are live
   * for the unfrozen part */
  batch(x, y, 100);
  cnn_step_result r, pr;
  CHECK_OK(cnn_net_train_step(net, x, y, N, &r));
  snap before, after;
  take(net, &before);
  batch(x, y, 1);
  CHECK_OK(cnn_net_predict(net, x, y, N, NULL, &pr));
  for (int s = 1; s <= steps; s++) {
    batch(x, y, (uint64_t)s);
    CHECK_OK(cnn_net_train_step(net, x, y, N, &r));
    if (s == 1 && frozen >= 1 && !bf16) /* frozen BN runs on its running statistics */
      CHECK(fabs(r.loss - pr.loss) <= 1e-5 * fmax(1.0, fabs(pr.loss)),
            "%s, %d frozen: the training loss %.9g equals the inference loss %.9g", backend,
            frozen, r.loss, pr.loss);
    if (s == 1 && frozen == 0 && !bf16) /* and unfrozen BN on batch statistics: they differ */
      CHECK(fabs(r.loss - pr.loss) > 1e-5, "%s: unfrozen, training loss %.9g vs inference %.9g",
            backend, r.loss, pr.loss);
  }
  take(net, &after);
  int n_frozen = 0, n_trained = 0;
  for (int i = 0; i < before.n; i++) {
    const cnn_param_desc *d = &after.d[i];
    int fz = d->frozen;
    int t_same = same(before.t[i], after.t[i], before.count[i]);
    int m_same = same(before.m[0][i], after.m[0][i], before.count[i]) &&
                 same(before.m[1][i], after.m[1][i], before.count[i]);
    if (fz) {
      n_frozen++;
      CHECK(t_same && m_same, "%s, %d frozen, %s: frozen tensor %s %s changed", backend, frozen,
            opt == CNN_OPT_SGD ? "sgd" : "adamw", d->name, t_same ? "(its optimizer state)" : "");
    } else if (d->trainable) {
      n_trained++;
      CHECK(!t_same, "%s, %d frozen: trainable tensor %s did not change", backend, frozen, d->name);
    } else { /* unfrozen running statistics move */
      CHECK(!t_same, "%s, %d frozen: running statistic %s did not change", backend, frozen, d->name);
    }
  }
  /* conv1 (+bn: 5 tensors) in section 0, conv2 (2) in section 2 */
  int want_frozen = frozen >= 3 ? 7 : frozen >= 1 ? 5 : 0;
  CHECK(n_frozen == want_frozen, "%s: %d tensors frozen by %d sections, expected %d", backend,
        n_frozen, frozen, want_frozen);
  CHECK(n_trained > 0, "something trained");
  char *prog = tu_program_text(net, N, CNN_MODE_TRAIN);
  /* backward ops in either form (the overwriting one where they write dx first), and
   * the batch norm + pool node where the backend fuses conv1's bn, relu and pool1 */
  int bnpool = count_nodes(prog, "bn_act_pool_bwd", "") +
               count_nodes(prog, "bn_act_pool_bwd_set", "");
  int bn_bwd = count_nodes(prog, "bn_act_bwd", "") + count_nodes(prog, "bn_act_bwd_set", "") +
               bnpool;
  int commit = count_nodes(prog, "bn_commit", "");
  int data1 = count_nodes(prog, "conv_bwd_data", "conv2"), filt = count_nodes(prog, "conv_bwd_filter", "");
  int pool = count_nodes(prog, "maxpool_bwd", "") + count_nodes(prog, "maxpool_bwd_set", "") +
             bnpool;
  int fc1_data = 0;
  /* fc1's data gradient: the second gemm of fc1's backward (dx), absent when frozen >= 3 */
  int fc1_gemms = count_nodes(prog, "gemm", "fc1");
  fc1_data = fc1_gemms - 1 /* forward */ - 1 /* weight gradient */;
  if (frozen == 0) {
    CHECK(bn_bwd == 1 && commit == 1 && data1 == 1 && filt == 2 && pool == 1 && fc1_data == 1,
          "%s, unfrozen program: bn_bwd %d commit %d conv2 data %d filter %d pool %d fc1 dx %d\n%s",
          backend, bn_bwd, commit, data1, filt, pool, fc1_data, prog);
  } else if (frozen == 1) { /* conv2 trains: its filter gradient, no data gradient behind it */
    CHECK(bn_bwd == 0 && commit == 0 && data1 == 0 && filt == 1 && pool == 0 && fc1_data == 1,
          "%s, 1 frozen: bn_bwd %d commit %d conv2 data %d filter %d pool %d fc1 dx %d\n%s",
          backend, bn_bwd, commit, data1, filt, pool, fc1_data, prog);
  } else {
    CHECK(bn_bwd == 0 && commit == 0 && data1 == 0 && filt == 0 && pool == 0 && fc1_data == 0,
          "%s, %d frozen: bn_bwd %d commit %d conv2 data %d filter %d pool %d fc1 dx %d\n%s",
          backend, frozen, bn_bwd, commit, data1, filt, pool, fc1_data, prog);
  }
  free(prog);
  drop(&before);
  drop(&after);
  free(x);
  cnn_net_destroy(net);
  cnn_backend_destroy(b);
}

void fs_run(const char *backend) {
  for (int opt = 0; opt < 2; opt++) {
    cnn_optimizer_kind k = opt ? CNN_OPT_ADAMW : CNN_OPT_SGD;
    train_frozen(backend, 0, k, 3, 0);
    train_frozen(backend, 1, k, 3, 0);
    train_frozen(backend, 3, k, 3, 0);
  }
  train_frozen(backend, 1, CNN_OPT_SGD, 3, 1); /* bf16 activations, where the backend has them */
}
