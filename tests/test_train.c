/* Training a small net end to end on the `cpu` backend:
 *  - a tiny CNN learns a generated problem (which quadrant of a 12x12 image holds
 *    a bright blob, under noise; 4 classes, chance 0.25) and reaches >= 0.9 on a
 *    held-out set drawn from another seed;
 *  - a save / load round trip is bit-exact (every tensor, the optimizer state,
 *    the predictions, and the losses of further training steps);
 *  - a checkpoint of another cfg is refused with a message naming the tensor,
 *    and the net it was loaded into is left unchanged;
 *  - a seed reproduces: two runs of 20 steps give identical losses;
 *  - a non-finite input gives CNN_ERR_NUMERIC and leaves every tensor unchanged;
 *  - ref and cpu train alike: 50 steps' losses agree to 1e-3 relative;
 *  - in bf16 (bf16 activations and gradients, f32 masters) the same net learns the
 *    problem to the same accuracy bound, and its checkpoint loads into an fp32 net
 *    that predicts like it. */
#define _XOPEN_SOURCE 700 /* mkdtemp */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cnn/cnn.h"
#include "core/rng.h"
#include "testutil.h"

#define IMG 12
#define PIX (IMG * IMG)
#define CLASSES 4
#define BATCH 32
#define N_TRAIN 2048
#define N_TEST 512
#define STEPS 200
#define ACC_MIN 0.9     /* chance is 1/CLASSES = 0.25 */
#define REF_CPU_STEPS 50
#define REF_CPU_TOL 1e-3 /* relative, per step's loss */

/* conv 3x3 8 relu -> maxpool 2/2 (12 -> 6) -> conv 3x3 16 bn relu -> avgpool 3/3
 * (6 -> 2x2, one cell per quadrant) -> dense 4 -> softmax. Arguments: the seed,
 * the first conv's filters, an extra section before the dense layer. */
static const char *cfg_fmt =
    "[net]\n"
    "height=12\nwidth=12\nchannels=1\nbatch=32\n"
    "decay=0.0005\n"
    "\n[train]\n"
    "optimizer=sgd\nnesterov=1\nlearning_rate=0.05\nmomentum=0.9\nseed=%d\n"
    "\n[convolutional]\nfilters=%d\nsize=3\npad=1\nactivation=relu\n"
    "\n[maxpool]\nsize=2\nstride=2\n"
    "\n[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\npad=1\nactivation=relu\n"
    "\n[avgpool]\nsize=3\nstride=3\n"
    "%s"
    "\n[connected]\noutput=4\nactivation=linear\n"
    "\n[softmax]\n";

static char cfg_main[2048];

static void make_cfg(char *buf, size_t n, int seed, int filters, const char *extra) {
  snprintf(buf, n, cfg_fmt, seed, filters, extra);
}

/* n images of the quadrant problem from `seed`: class q puts a Gaussian blob
 * (sigma 1.2, amplitude 0.4..1.0) at a random centre inside quadrant q; every
 * pixel gets uniform noise in [-0.6, 0.6] (the blob's peak is 0.7..1.7 times the
 * noise amplitude). 200 steps reach ~0.96 held-out accuracy; 0.9 is required. */
static void make_data(float *x, int32_t *y, int n, uint64_t seed) {
  for (int i = 0; i < n; i++) {
    uint64_t c = (uint64_t)i * 1024;
    int q = (int)(cnn_rng_u64(seed, c) % CLASSES);
    double cy = (q / 2) * 6 + 1 + 4 * cnn_rng_uniform_d(seed, c + 1);
    double cx = (q % 2) * 6 + 1 + 4 * cnn_rng_uniform_d(seed, c + 2);
    double amp = 0.4 + 0.6 * cnn_rng_uniform_d(seed, c + 3);
    float *img = x + (size_t)i * PIX;
    for (int r = 0; r < IMG; r++)
      for (int s = 0; s < IMG; s++) {
        double d2 = (r - cy) * (r - cy) + (s - cx) * (s - cx);
        double noise = 1.2 * (cnn_rng_uniform_d(seed, c + 8 + r * IMG + s) - 0.5);
        img[r * IMG + s] = (float)(amp * exp(-d2 / (2 * 1.2 * 1.2)) + noise);
      }
    y[i] = q;
  }
}

static float *train_x, *test_x;
static int32_t *train_y, *test_y;
static char tmpdir[64];

static cnn_net *new_net(const char *cfg, const char *backend_name, cnn_backend *b) {
  cnn_net *net = NULL;
  cnn_status st = cnn_net_from_cfg_text(cfg, "train.cfg", &net);
  CHECK(st == CNN_OK, "cfg: %s", cnn_last_error());
  if (st != CNN_OK) return NULL;
  st = cnn_net_build(net, b, BATCH, CNN_MODE_TRAIN);
  CHECK(st == CNN_OK, "build on %s: %s", backend_name, cnn_last_error());
  if (st != CNN_OK) {
    cnn_net_destroy(net);
    return NULL;
  }
  return net;
}

/* `steps` steps over the training set from batch `first`; losses[] optional */
static int train(cnn_net *net, int first, int steps, double *losses) {
  for (int s = 0; s < steps; s++) {
    int b = (first + s) % (N_TRAIN / BATCH);
    cnn_step_result r;
    cnn_status st = cnn_net_train_step(net, train_x + (size_t)b * BATCH * PIX,
                                       train_y + (size_t)b * BATCH, BATCH, &r);
    if (st != CNN_OK) {
      CHECK(st == CNN_OK, "train step %d: %s", s, cnn_last_error());
      return 0;
    }
    if (losses) losses[s] = r.loss;
  }
  return 1;
}

static double accuracy(cnn_net *net, const float *x, const int32_t *y, int n) {
  int correct = 0;
  for (int i = 0; i < n; i += BATCH) {
    int m = n - i < BATCH ? n - i : BATCH;
    cnn_step_result r;
    cnn_status st = cnn_net_predict(net, x + (size_t)i * PIX, y + i, m, NULL, &r);
    CHECK(st == CNN_OK, "predict: %s", cnn_last_error());
    if (st != CNN_OK) return 0;
    correct += r.correct;
  }
  return (double)correct / n;
}

/* every tensor of a net, concatenated (parameters and running statistics) */
static float *snapshot(const cnn_net *net, size_t *count) {
  size_t total = 0;
  for (int i = 0; i < cnn_net_num_tensors(net); i++) {
    cnn_param_desc d;
    cnn_net_tensor_desc(net, i, &d);
    total += d.count;
  }
  float *all = malloc((total ? total : 1) * sizeof *all), *p = all;
  for (int i = 0; i < cnn_net_num_tensors(net); i++) {
    cnn_param_desc d;
    cnn_net_tensor_desc(net, i, &d);
    CHECK_OK(cnn_net_tensor_get(net, i, p));
    p += d.count;
  }
  *count = total;
  return all;
}

/* the first tensor whose bytes differ between a and b ("" if none) */
static const char *first_diff(const cnn_net *net, const float *a, const float *b) {
  size_t at = 0;
  for (int i = 0; i < cnn_net_num_tensors(net); i++) {
    cnn_param_desc d;
    cnn_net_tensor_desc(net, i, &d);
    if (memcmp(a + at, b + at, d.count * sizeof *a)) return d.name;
    at += d.count;
  }
  return "";
}

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* ---- a tiny CNN learns; its checkpoint round-trips ---- */

static void test_learn_and_checkpoint(cnn_backend *cpu) {
  cnn_net *net = new_net(cfg_main, "cpu", cpu);
  if (!net) return;
  double acc0 = accuracy(net, test_x, test_y, N_TEST);
  double t0 = seconds();
  double *losses = calloc(STEPS, sizeof *losses);
  int ok = train(net, 0, STEPS, losses);
  double dt = seconds() - t0;
  double acc = accuracy(net, test_x, test_y, N_TEST);
  double train_acc = accuracy(net, train_x, train_y, 512);
  double first = 0, last = 0;
  for (int i = 0; i < 10; i++) first += losses[i] / 10, last += losses[STEPS - 10 + i] / 10;
  printf("learn: %d steps of %d in %.2f s; loss %.3f -> %.3f (mean of 10 steps); held-out "
         "accuracy %.3f (before %.3f, chance %.2f, required >= %.2f), train %.3f\n",
         STEPS, BATCH, dt, first, last, acc, acc0, 1.0 / CLASSES, ACC_MIN, train_acc);
  CHECK(ok, "training ran");
  CHECK(acc >= ACC_MIN, "held-out accuracy %.3f >= %.2f", acc, ACC_MIN);
  CHECK(last < first * 0.5, "loss fell: %.3f -> %.3f", first, last);
  CHECK(cnn_net_step_count(net) == STEPS, "step count %lld", (long long)cnn_net_step_count(net));
  free(losses);

  /* save, then load into a fresh net of the same cfg */
  char path[128];
  snprintf(path, sizeof path, "%s/small.safetensors", tmpdir);
  CHECK_OK(cnn_net_save(net, path, "{\"note\": \"test_train\"}"));
  cnn_net *back = new_net(cfg_main, "cpu", cpu);
  if (!back) {
    cnn_net_destroy(net);
    return;
  }
  CHECK_OK(cnn_net_load(back, path));
  size_t na, nb;
  float *a = snapshot(net, &na), *b = snapshot(back, &nb);
  int same_tensors = na == nb && !memcmp(a, b, na * sizeof *a);
  CHECK(same_tensors, "every tensor round-trips bit-exact (first difference: %s)",
        na == nb ? first_diff(net, a, b) : "count");
  CHECK(cnn_net_step_count(back) == STEPS, "step count restored: %lld",
        (long long)cnn_net_step_count(back));
  /* optimizer state (momentum) */
  int same_opt = cnn_net_opt_slots(net) == cnn_net_opt_slots(back);
  cnn_net_info info;
  CHECK_OK(cnn_net_info_get(net, &info));
  for (int s = 0; s < cnn_net_opt_slots(net) && same_opt; s++) {
    float *oa = malloc(info.num_params * sizeof *oa), *ob = malloc(info.num_params * sizeof *ob);
    CHECK_OK(cnn_net_opt_state_get(net, s, oa, info.num_params));
    CHECK_OK(cnn_net_opt_state_get(back, s, ob, info.num_params));
    same_opt = !memcmp(oa, ob, info.num_params * sizeof *oa);
    free(oa);
    free(ob);
  }
  CHECK(same_opt, "optimizer state round-trips bit-exact");
  /* predictions */
  float pa[BATCH * CLASSES], pb[BATCH * CLASSES];
  CHECK_OK(cnn_net_predict(net, test_x, NULL, BATCH, pa, NULL));
  CHECK_OK(cnn_net_predict(back, test_x, NULL, BATCH, pb, NULL));
  int same_probs = !memcmp(pa, pb, sizeof pa);
  CHECK(same_probs, "predictions of the loaded net are bit-exact");
  /* loading into an unbuilt net of the same cfg, then building, also works: bit-exact
   * in the same mode; an inference build folds batch norm into the conv weights, which
   * rounds differently (f32 tolerance of a few operations per output) */
  for (int mode = 0; mode < 2; mode++) {
    cnn_net *late = NULL;
    CHECK_OK(cnn_net_from_cfg_text(cfg_main, "train.cfg", &late));
    if (!late) break;
    CHECK_OK(cnn_net_load(late, path));
    CHECK_OK(cnn_net_build(late, cpu, BATCH, mode ? CNN_MODE_TRAIN : CNN_MODE_INFER));
    float pc[BATCH * CLASSES];
    CHECK_OK(cnn_net_predict(late, test_x, NULL, BATCH, pc, NULL));
    if (mode)
      CHECK(!memcmp(pb, pc, sizeof pb), "load before build: same predictions");
    else
      tu_check_close("load before an inference build (BN folded)", pc, pb, BATCH * CLASSES, 1e-4);
    cnn_net_destroy(late);
  }

  /* resuming: further training steps give the same losses on both */
  double la[5], lb[5];
  train(net, STEPS, 5, la);
  train(back, STEPS, 5, lb);
  int same_resume = !memcmp(la, lb, sizeof la);
  CHECK(same_resume, "5 steps after the load give the same losses (%.9g vs %.9g ...)", la[0],
        lb[0]);
  printf("checkpoint: %zu values in %d tensors: tensors %s, optimizer state %s, "
         "predictions %s, resumed losses %s\n",
         na, cnn_net_num_tensors(net), same_tensors ? "bit-exact" : "DIFFER",
         same_opt ? "bit-exact" : "DIFFER", same_probs ? "bit-exact" : "DIFFER",
         same_resume ? "identical" : "DIFFER");
  free(a);
  free(b);

  /* a checkpoint of another cfg: refused, naming the tensor, nothing changed */
  struct {
    const char *what, *tensor;
    int filters;
    const char *extra;
  } other[] = {
      {"conv1 with 12 filters", "conv1.weight", 12, ""},
      {"an extra conv layer", "conv3.weight",
       8, "\n[convolutional]\nfilters=4\nsize=1\nactivation=relu\n"},
  };
  for (size_t k = 0; k < sizeof other / sizeof *other; k++) {
    char cfg[2048];
    make_cfg(cfg, sizeof cfg, 7, other[k].filters, other[k].extra);
    cnn_net *o = new_net(cfg, "cpu", cpu);
    if (!o) continue;
    size_t n0, n1;
    float *before = snapshot(o, &n0);
    cnn_status st = cnn_net_load(o, path);
    const char *msg = cnn_last_error();
    float *after = snapshot(o, &n1);
    int named = strstr(msg, other[k].tensor) != NULL && strstr(msg, path) != NULL;
    int unchanged = !memcmp(before, after, n0 * sizeof *before);
    CHECK(st != CNN_OK, "loading into %s must fail", other[k].what);
    CHECK(named, "message names '%s' and the file: %s", other[k].tensor, msg);
    CHECK(unchanged, "a refused load changes nothing (first difference: %s)",
          first_diff(o, before, after));
    printf("other cfg (%s): %s, %s: %s\n", other[k].what, cnn_status_name(st),
           unchanged ? "net unchanged" : "NET CHANGED", msg);
    free(before);
    free(after);
    cnn_net_destroy(o);
  }
  remove(path);
  cnn_net_destroy(back);
  cnn_net_destroy(net);
}

/* ---- a seed reproduces ---- */

static void test_seed(cnn_backend *cpu) {
  double l[3][20];
  const int seeds[3] = {7, 7, 8};
  for (int r = 0; r < 3; r++) {
    char cfg[2048];
    make_cfg(cfg, sizeof cfg, seeds[r], 8, "");
    cnn_net *net = new_net(cfg, "cpu", cpu);
    if (!net) return;
    train(net, 0, 20, l[r]);
    cnn_net_destroy(net);
  }
  int same = !memcmp(l[0], l[1], sizeof l[0]);
  int differ = memcmp(l[0], l[2], sizeof l[0]) != 0;
  CHECK(same, "seed 7 twice: identical losses");
  CHECK(differ, "seed 8 gives other losses");
  printf("seed: two runs of 20 steps with seed 7 %s (last loss %.9g vs %.9g); seed 8 %s\n",
         same ? "identical" : "DIFFER", l[0][19], l[1][19], differ ? "differs" : "IDENTICAL");
}

/* ---- non-finite input ---- */

static void test_non_finite(cnn_backend *cpu) {
  const struct {
    const char *what;
    float value;
    int where;
  } cases[] = {
      {"one NaN pixel", NAN, 5 * PIX + 40},
      {"a NaN image", NAN, -1},
      {"one +Inf pixel", INFINITY, 3 * PIX + 77},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    cnn_net *net = new_net(cfg_main, "cpu", cpu);
    if (!net) return;
    train(net, 0, 3, NULL); /* momentum and running stats are not trivial */
    float *x = malloc((size_t)BATCH * PIX * sizeof *x);
    memcpy(x, train_x, (size_t)BATCH * PIX * sizeof *x);
    if (cases[k].where >= 0)
      x[cases[k].where] = cases[k].value;
    else
      for (int i = 0; i < PIX; i++) x[7 * PIX + i] = cases[k].value;
    size_t n0, n1;
    float *before = snapshot(net, &n0);
    float probs0[BATCH * CLASSES];
    CHECK_OK(cnn_net_predict(net, test_x, NULL, BATCH, probs0, NULL));
    int64_t step0 = cnn_net_step_count(net);
    cnn_step_result r = {0};
    cnn_status st = cnn_net_train_step(net, x, train_y, BATCH, &r);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", cnn_last_error());
    float *after = snapshot(net, &n1);
    int unchanged = !memcmp(before, after, n0 * sizeof *before);
    size_t n_bad = 0;
    for (size_t i = 0; i < n1; i++) n_bad += !isfinite(after[i]);
    CHECK(st == CNN_ERR_NUMERIC, "%s: status %s (loss %g), expected %s", cases[k].what,
          cnn_status_name(st), r.loss, cnn_status_name(CNN_ERR_NUMERIC));
    CHECK(unchanged, "%s: every tensor unchanged (first difference: %s)", cases[k].what,
          first_diff(net, before, after));
    CHECK(cnn_net_step_count(net) == step0, "%s: the step counter did not advance",
          cases[k].what);
    /* the net predicts clean data exactly as before the refused step */
    float probs[BATCH * CLASSES];
    CHECK_OK(cnn_net_predict(net, test_x, NULL, BATCH, probs, NULL));
    int finite = 1;
    for (int i = 0; i < BATCH * CLASSES; i++) finite &= isfinite(probs[i]) != 0;
    int same_probs = !memcmp(probs, probs0, sizeof probs);
    CHECK(finite, "%s: predictions on clean data afterwards are finite", cases[k].what);
    CHECK(same_probs, "%s: predictions on clean data afterwards are as before", cases[k].what);
    cnn_step_result r2 = {0};
    CHECK_OK(cnn_net_train_step(net, train_x, train_y, BATCH, &r2));
    CHECK(isfinite(r2.loss), "%s: a clean step afterwards has a finite loss (%g)",
          cases[k].what, r2.loss);
    printf("non-finite input (%s): %s, tensors %s (%zu non-finite values), later clean "
           "predictions %s and %s, later clean loss %.4f; %s\n",
           cases[k].what, cnn_status_name(st), unchanged ? "unchanged" : "CHANGED", n_bad,
           finite ? "finite" : "NOT FINITE", same_probs ? "as before" : "CHANGED", r2.loss, st == CNN_OK ? "(no error)" : msg);
    free(before);
    free(after);
    free(x);
    cnn_net_destroy(net);
  }
}

/* ---- ref and cpu agree ---- */

static void test_bf16(cnn_backend *cpu) {
  cnn_net *net = NULL;
  CHECK_OK(cnn_net_from_cfg_text(cfg_main, "train.cfg", &net));
  if (!net) return;
  CHECK_OK(cnn_net_set_precision(net, cpu, CNN_PRECISION_BF16));
  CHECK_OK(cnn_net_build(net, cpu, BATCH, CNN_MODE_TRAIN));
  CHECK(cnn_net_precision(net) == CNN_PRECISION_BF16, "built in bf16");
  int ok = train(net, 0, STEPS, NULL);
  double acc = accuracy(net, test_x, test_y, N_TEST);
  printf("bf16: %d steps, held-out accuracy %.3f (required >= %.2f)\n", STEPS, acc, ACC_MIN);
  CHECK(ok && acc >= ACC_MIN, "bf16 training: held-out accuracy %.3f >= %.2f", acc, ACC_MIN);
  /* checkpoints hold the f32 masters: an fp32 net predicts within bf16 rounding */
  char path[128];
  snprintf(path, sizeof path, "%s/bf16.safetensors", tmpdir);
  CHECK_OK(cnn_net_save(net, path, NULL));
  cnn_net *f32 = new_net(cfg_main, "cpu", cpu);
  if (f32) {
    CHECK_OK(cnn_net_load(f32, path));
    double acc32 = accuracy(f32, test_x, test_y, N_TEST);
    CHECK(fabs(acc32 - acc) <= 0.02, "the bf16 checkpoint in fp32: accuracy %.3f vs %.3f", acc32,
          acc);
    cnn_net_destroy(f32);
  }
  cnn_net_destroy(net);
}

static void test_ref_vs_cpu(cnn_backend *cpu, cnn_backend *ref) {
  double lc[REF_CPU_STEPS], lr[REF_CPU_STEPS];
  cnn_net *a = new_net(cfg_main, "cpu", cpu), *b = new_net(cfg_main, "ref", ref);
  if (!a || !b) {
    cnn_net_destroy(a);
    cnn_net_destroy(b);
    return;
  }
  double t0 = seconds();
  train(a, 0, REF_CPU_STEPS, lc);
  double t1 = seconds();
  train(b, 0, REF_CPU_STEPS, lr);
  double t2 = seconds();
  double worst = 0;
  int at = 0;
  for (int s = 0; s < REF_CPU_STEPS; s++) {
    double e = fabs(lc[s] - lr[s]) / fmax(fabs(lr[s]), 1e-12);
    if (!(e <= worst)) {
      worst = e;
      at = s;
    }
  }
  CHECK(worst <= REF_CPU_TOL, "ref vs cpu: step %d loss %.9g vs %.9g, relative %.3g > %g", at,
        lr[at], lc[at], worst, REF_CPU_TOL);
  printf("ref vs cpu: %d steps, worst relative loss difference %.2e at step %d (tolerance %g); "
         "loss %.4f -> %.4f; cpu %.2f s, ref %.2f s\n",
         REF_CPU_STEPS, worst, at, REF_CPU_TOL, lr[0], lr[REF_CPU_STEPS - 1], t1 - t0, t2 - t1);
  cnn_net_destroy(a);
  cnn_net_destroy(b);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/cnn_train_XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  make_cfg(cfg_main, sizeof cfg_main, 7, 8, "");
  train_x = malloc((size_t)N_TRAIN * PIX * sizeof *train_x);
  test_x = malloc((size_t)N_TEST * PIX * sizeof *test_x);
  train_y = malloc(N_TRAIN * sizeof *train_y);
  test_y = malloc(N_TEST * sizeof *test_y);
  make_data(train_x, train_y, N_TRAIN, 1234);
  make_data(test_x, test_y, N_TEST, 98765);

  cnn_backend *cpu = NULL, *ref = NULL;
  CHECK_OK(cnn_backend_create("cpu", &cpu));
  CHECK_OK(cnn_backend_create("ref", &ref));
  if (cpu) {
    test_learn_and_checkpoint(cpu);
    test_seed(cpu);
    test_non_finite(cpu);
    test_bf16(cpu);
  }
  if (cpu && ref) test_ref_vs_cpu(cpu, ref);
  cnn_backend_destroy(cpu);
  cnn_backend_destroy(ref);
  free(train_x);
  free(test_x);
  free(train_y);
  free(test_y);
  rmdir(tmpdir);
  return tu_finish("test_train");
}
