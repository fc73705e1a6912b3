/* Whole training steps on the CUDA backend against the CPU backend: the same
 * cfg, seed and data give the same losses step by step (fp32 on both; the sums
 * are ordered differently, so they agree to a tolerance, not bit for bit), the
 * same inference probabilities, and a checkpoint written from the GPU loads on
 * the CPU. Steps launched without waiting and replayed as CUDA graphs give the
 * same losses, bit for bit, as the same steps run node by node; bf16 builds on
 * cuda agree with bf16 on the cpu. Exits 77 (ctest SKIP) without a GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cnn/cnn.h"
#include "core/rng.h"
#include "testutil.h"

/* every layer kind the engine has, small */
static const char *cfg =
    "[net]\nheight=12\nwidth=12\nchannels=3\nbatch=16\nlearning_rate=0.02\nmomentum=0.9\n"
    "decay=0.0005\n[train]\nnesterov=1\nlabel_smoothing=0.1\nseed=11\n"
    "[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\npad=1\nactivation=relu\n"
    "[convolutional]\nfilters=16\nsize=3\npad=1\ngroups=16\nactivation=leaky\n"
    "[shortcut]\nfrom=-2\nactivation=linear\n"
    "[maxpool]\nsize=2\nstride=2\n"
    "[convolutional]\nbatch_normalize=1\nfilters=24\nsize=3\nstride=2\npad=1\nactivation=gelu\n"
    "[route]\nlayers=-1\n"
    "[convolutional]\nfilters=8\nsize=1\nactivation=tanh\n"
    "[avgpool]\n[dropout]\nprobability=0.2\n"
    "[connected]\noutput=5\nactivation=linear\n[softmax]\n";

int main(void) {
  tu_need_cuda(); /* skips (77) without a usable GPU, says why */
  enum { N = 16, PER = 12 * 12 * 3, STEPS = 30 };
  float *x = malloc(sizeof(float) * N * PER);
  int32_t y[N];
  for (int i = 0; i < N * PER; i++) x[i] = cnn_rng_uniform(5, (uint64_t)i) * 2 - 1;
  for (int i = 0; i < N; i++) y[i] = (int32_t)(cnn_rng_u64(6, (uint64_t)i) % 5);
  cnn_net *net[2] = {NULL, NULL};
  cnn_backend *b[2] = {NULL, NULL};
  const char *names[2] = {"cpu", "cuda"};
  for (int k = 0; k < 2; k++) {
    CHECK_OK(cnn_backend_create(names[k], &b[k]));
    CHECK_OK(cnn_net_from_cfg_text(cfg, "gpu_net.cfg", &net[k]));
    if (!b[k] || !net[k]) return tu_finish("test_gpu_net");
    CHECK_OK(cnn_net_build(net[k], b[k], N, CNN_MODE_TRAIN));
  }
  /* fp32 both sides: per-step losses drift apart only by rounding, which SGD
   * amplifies slowly; 1e-3 relative over 30 steps is the stated budget */
  double worst = 0;
  for (int s = 0; s < STEPS; s++) {
    cnn_step_result r[2];
    for (int k = 0; k < 2; k++) CHECK_OK(cnn_net_train_step(net[k], x, y, N, &r[k]));
    double e = fabs(r[0].loss - r[1].loss) / fmax(fabs(r[0].loss), 1e-6);
    if (e > worst) worst = e;
  }
  printf("worst relative loss difference over %d steps: %.3g\n", STEPS, worst);
  CHECK(worst <= 1e-3, "cuda and cpu losses agree to 1e-3 relative (worst %.3g)", worst);
  float pc[N * 5], pg[N * 5];
  CHECK_OK(cnn_net_predict(net[0], x, NULL, N, pc, NULL));
  CHECK_OK(cnn_net_predict(net[1], x, NULL, N, pg, NULL));
  tu_check_close("inference probabilities, cuda vs cpu", pg, pc, N * 5, 1e-3);
  const char *path = "/tmp/cnn_test_gpu_net.safetensors";
  CHECK_OK(cnn_net_save(net[1], path, NULL));
  cnn_net *back = NULL;
  CHECK_OK(cnn_net_from_cfg_text(cfg, "gpu_net.cfg", &back));
  if (back) {
    CHECK_OK(cnn_net_build(back, b[0], N, CNN_MODE_INFER));
    CHECK_OK(cnn_net_load(back, path));
    float pb[N * 5];
    CHECK_OK(cnn_net_predict(back, x, NULL, N, pb, NULL));
    tu_check_close("a GPU checkpoint predicts the same on the CPU", pb, pg, N * 5, 1e-4);
    cnn_net_destroy(back);
  }
  remove(path);

  /* launched steps, graphs on vs off: the same kernels in the same order */
  float lg[2][STEPS];
  for (int g = 0; g < 2; g++) {
    cnn_net *n = NULL;
    CHECK_OK(cnn_net_from_cfg_text(cfg, "gpu_net.cfg", &n));
    if (!n) break;
    CHECK_OK(cnn_net_set_graphs(n, g));
    CHECK_OK(cnn_net_build(n, b[1], N, CNN_MODE_TRAIN));
    for (int s = 0; s < STEPS; s++) CHECK_OK(cnn_net_train_launch(n, x, y, N));
    cnn_train_metrics m;
    CHECK_OK(cnn_net_train_metrics(n, 1, &m));
    CHECK(m.step == STEPS && m.refused == 0, "graphs %s: %lld steps accepted, %lld refused",
          g ? "on" : "off", (long long)m.step, (long long)m.refused);
    CHECK(cnn_net_step_losses(n, 0, STEPS, lg[g]) == STEPS, "every step's loss is kept");
    cnn_net_destroy(n);
  }
  int same = 1;
  for (int s = 0; s < STEPS; s++) same &= lg[0][s] == lg[1][s];
  CHECK(same, "graph replay and node-by-node steps give bit-identical losses");

  /* bf16 on both backends: the same casts, f32 ops that differ by rounding */
  double wb = 0;
  cnn_net *nb[2] = {NULL, NULL};
  for (int k = 0; k < 2; k++) {
    CHECK_OK(cnn_net_from_cfg_text(cfg, "gpu_net.cfg", &nb[k]));
    if (!nb[k]) break;
    CHECK_OK(cnn_net_set_precision(nb[k], b[k], CNN_PRECISION_BF16));
    CHECK_OK(cnn_net_build(nb[k], b[k], N, CNN_MODE_TRAIN));
  }
  for (int s = 0; s < 10 && nb[0] && nb[1]; s++) {
    cnn_step_result r[2];
    for (int k = 0; k < 2; k++) CHECK_OK(cnn_net_train_step(nb[k], x, y, N, &r[k]));
    double e = fabs(r[0].loss - r[1].loss) / fmax(fabs(r[0].loss), 1e-6);
    if (e > wb) wb = e;
  }
  printf("bf16: worst relative loss difference over 10 steps: %.3g\n", wb);
  CHECK(wb <= 1e-2, "bf16 cuda and cpu losses agree to 1e-2 relative (worst %.3g)", wb);
  for (int k = 0; k < 2; k++) cnn_net_destroy(nb[k]);
  for (int k = 0; k < 2; k++) {
    cnn_net_destroy(net[k]);
    cnn_backend_destroy(b[k]);
  }
  free(x);
  return tu_finish("test_gpu_net");
}
