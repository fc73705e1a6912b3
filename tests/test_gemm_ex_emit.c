/* Dense layers on a backend with gemm_ex (the cuda backend's cuBLASLt path), checked
 * on the cpu: a wrapper adds a gemm_ex to the cpu backend that runs exactly the ops
 * the plain program would (gemm, bias_add, act_fwd), so
 *  - training and inference give bit-identical losses, parameters and probabilities
 *    with and without gemm_ex (only where the bias and activation run differs);
 *  - the programs hold the fused epilogues: no bias_add node in the forward pass,
 *    and in inference no act_fwd after a dense layer (the act is the epilogue);
 *    `cnn summary --program` (cnn_program_print) shows "[+bias, relu]";
 *  - the plain cpu backend (no gemm_ex) keeps its bias_add and act_fwd nodes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "cnn/cnn.h"
#include "core/error.h"
#include "core/rng.h"
#include "testutil.h"

#define BATCH 4
#define STEPS 4
#define PIX (6 * 6 * 2)
#define CLASSES 5

static const char *cfg =
    "[net]\nheight=6\nwidth=6\nchannels=2\nbatch=4\n"
    "\n[train]\noptimizer=sgd\nlearning_rate=0.05\nmomentum=0.9\nseed=3\n"
    "\n[connected]\noutput=16\nactivation=relu\n"
    "\n[connected]\noutput=12\nactivation=gelu\n"
    "\n[connected]\noutput=9\nactivation=leaky\n"
    "\n[connected]\noutput=5\nactivation=linear\n"
    "\n[softmax]\n";

static float xs[STEPS][BATCH * PIX];
static int32_t ys[STEPS][BATCH];

static const cnn_backend_ops *inner;
static int n_ex, n_ex_bias, n_ex_act;

/* gemm_ex as the plain program would run it (bit-identical by construction) */
static cnn_status emu_gemm_ex(void *c, const cnn_gemm_desc *g) {
  n_ex++;
  n_ex_bias += g->bias != NULL;
  n_ex_act += g->act != CNN_ACT_LINEAR;
  CNN_TRY(inner->gemm(c, g->trans_a, g->trans_b, g->m, g->n, g->k, g->alpha, g->a, g->lda, g->b,
                      g->ldb, g->beta, g->c, g->ldc));
  for (int r = 0; r < g->m; r++) {
    float *row = g->c + (size_t)r * g->ldc;
    if (g->bias) CNN_TRY(inner->bias_add(c, 1, (size_t)g->n, g->bias, row));
    if (g->act != CNN_ACT_LINEAR)
      CNN_TRY(inner->act_fwd(c, (cnn_act)g->act, g->act_alpha, (size_t)g->n, row, row));
  }
  return CNN_OK;
}

static cnn_net *make(cnn_backend *b, cnn_mode mode) {
  cnn_net *net = NULL;
  CHECK_OK(cnn_net_from_cfg_text(cfg, "dense.cfg", &net));
  if (!net) return NULL;
  CHECK_OK(cnn_net_build(net, b, BATCH, mode));
  return net;
}



/* train STEPS steps, then predict on a net built for inference with the trained
 * parameters: losses, parameters, probabilities */
static void run(cnn_backend *b, double *loss, float **params, size_t *np, float *probs) {
  cnn_net *net = make(b, CNN_MODE_TRAIN), *inf = make(b, CNN_MODE_INFER);
  if (!net || !inf) return;
  for (int s = 0; s < STEPS; s++) {
    cnn_step_result r = {0};
    CHECK_OK(cnn_net_train_step(net, xs[s], ys[s], BATCH, &r));
    loss[s] = r.loss;
  }
  *params = tu_net_snapshot(net, np);
  float *p = *params;
  for (int i = 0; i < cnn_net_num_tensors(net); i++) {
    cnn_param_desc d;
    CHECK_OK(cnn_net_tensor_desc(net, i, &d));
    CHECK_OK(cnn_net_tensor_set(inf, i, p));
    p += d.count;
  }
  tu_poison(probs, BATCH * CLASSES);
  CHECK_OK(cnn_net_predict(inf, xs[0], NULL, BATCH, probs, NULL));
  cnn_net_destroy(inf);
  cnn_net_destroy(net);
}

int main(void) {
  for (int s = 0; s < STEPS; s++) {
    tu_fill_uniform(xs[s], BATCH * PIX, -1, 1, 40 + (uint64_t)s);
    for (int i = 0; i < BATCH; i++)
      ys[s][i] = (int32_t)(cnn_rng_u64(9, (uint64_t)(s * BATCH + i)) % CLASSES);
  }
  cnn_backend *cpu = NULL;
  CHECK_OK(cnn_backend_cpu_create(&cpu));
  if (!cpu) return tu_finish("test_gemm_ex_emit");
  CHECK(cpu->ops->gemm_ex == NULL, "the cpu backend has no gemm_ex (else this test is moot)");
  inner = cpu->ops;
  cnn_backend_ops ops = *cpu->ops;
  ops.destroy = NULL;
  ops.gemm_ex = emu_gemm_ex;
  cnn_backend wrap = {"cpu+gemm_ex", cpu->ctx, &ops};

  /* the programs */
  {
    cnn_net *tr = make(&wrap, CNN_MODE_TRAIN), *in = make(&wrap, CNN_MODE_INFER);
    cnn_net *ptr = make(cpu, CNN_MODE_TRAIN), *pin = make(cpu, CNN_MODE_INFER);
    if (tr && in && ptr && pin) {
      char *t = tu_program_text(tr, BATCH, CNN_MODE_TRAIN);
      char *i = tu_program_text(in, BATCH, CNN_MODE_INFER);
      char *pt = tu_program_text(ptr, BATCH, CNN_MODE_TRAIN);
      char *pi = tu_program_text(pin, BATCH, CNN_MODE_INFER);
      if (getenv("CNN_TEST_VERBOSE")) printf("%s\n%s\n", t, i);
      CHECK(tu_count(t, "bias_add") == 0 && tu_count(t, "[+bias]") == 4,
            "training with gemm_ex: the 4 biases are gemm epilogues:\n%s", t);
      CHECK(tu_count(t, " act_fwd") == 3, "training: the 3 activations stay nodes:\n%s", t);
      CHECK(tu_count(i, "bias_add") == 0 && tu_count(i, " act_fwd") == 0 &&
                tu_count(i, "[+bias, relu]") == 1 && tu_count(i, "[+bias, gelu]") == 1 &&
                tu_count(i, "[+bias, leaky]") == 1 && tu_count(i, "[+bias]") == 1,
            "inference with gemm_ex: bias and activation in the gemm epilogue:\n%s", i);
      CHECK(tu_count(pt, "bias_add") == 4 && tu_count(pi, "bias_add") == 4 &&
                tu_count(pi, " act_fwd") == 3 && !strstr(pi, "[+bias"),
            "plain cpu: bias_add and act_fwd nodes as before:\n%s\n%s", pt, pi);
      free(t);
      free(i);
      free(pt);
      free(pi);
    }
    cnn_net_destroy(tr);
    cnn_net_destroy(in);
    cnn_net_destroy(ptr);
    cnn_net_destroy(pin);
  }

  /* the numbers: bit-identical */
  {
    double loss[2][STEPS];
    float *params[2] = {NULL, NULL}, probs[2][BATCH * CLASSES];
    size_t np[2] = {0, 0};
    run(cpu, loss[0], &params[0], &np[0], probs[0]);
    n_ex = n_ex_bias = n_ex_act = 0;
    run(&wrap, loss[1], &params[1], &np[1], probs[1]);
    CHECK(n_ex > 0 && n_ex_bias > 0 && n_ex_act > 0,
          "gemm_ex ran (%d calls, %d with a bias, %d with an act)", n_ex, n_ex_bias, n_ex_act);
    int same = np[0] == np[1] && params[0] && params[1] &&
               memcmp(params[0], params[1], np[0] * sizeof(float)) == 0;
    for (int s = 0; s < STEPS; s++) same &= loss[0][s] == loss[1][s];
    CHECK(same, "training with gemm_ex is bit-identical to without");
    CHECK(memcmp(probs[0], probs[1], sizeof probs[0]) == 0,
          "inference with gemm_ex epilogues is bit-identical to without");
    free(params[0]);
    free(params[1]);
  }
  cpu->ops->destroy(cpu);
  return tu_finish("test_gemm_ex_emit");
}
