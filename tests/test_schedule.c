/* Learning-rate schedules against their formulas at chosen steps, and each
 * optimizer training the same small problem (loss must fall). */
#include <math.h>
#include <string.h>

#include "cnn/cnn.h"
#include "core/net.h"
#include "testutil.h"

static cnn_train_config base(void) {
  cnn_train_config t;
  memset(&t, 0, sizeof t);
  t.learning_rate = 0.4f;
  t.gamma = 0.1f;
  t.power = 2;
  return t;
}

static void near(const char *what, double got, double want) {
  CHECK(fabs(got - want) <= 1e-6 * fmax(1.0, fabs(want)), "%s: lr %.9g, want %.9g", what, got, want);
}

static void test_schedules(void) {
  cnn_train_config t = base();
  t.schedule = CNN_SCHED_CONSTANT;
  near("constant", cnn_schedule_lr(&t, 123, 1000), 0.4);
  t.warmup_steps = 10;
  near("constant, warm-up step 0", cnn_schedule_lr(&t, 0, 1000), 0.4 * 1 / 10.0);
  near("constant, warm-up step 4", cnn_schedule_lr(&t, 4, 1000), 0.4 * 5 / 10.0);
  near("constant, after warm-up", cnn_schedule_lr(&t, 10, 1000), 0.4);
  t = base();
  t.schedule = CNN_SCHED_STEP;
  t.step_size = 100;
  near("step 99", cnn_schedule_lr(&t, 99, 1000), 0.4);
  near("step 100", cnn_schedule_lr(&t, 100, 1000), 0.04);
  near("step 250", cnn_schedule_lr(&t, 250, 1000), 0.004);
  t = base();
  t.schedule = CNN_SCHED_COSINE;
  t.final_lr_frac = 0.1f;
  near("cosine start", cnn_schedule_lr(&t, 0, 1000), 0.4);
  near("cosine middle", cnn_schedule_lr(&t, 500, 1000), 0.04 + 0.36 * 0.5);
  near("cosine end", cnn_schedule_lr(&t, 1000, 1000), 0.04);
  t = base();
  t.schedule = CNN_SCHED_ONECYCLE; /* warm-up 25% by default, then linear down to 0 */
  near("onecycle step 0", cnn_schedule_lr(&t, 0, 400), 0.4 / 100);
  near("onecycle peak", cnn_schedule_lr(&t, 100, 400), 0.4);
  near("onecycle 3/4", cnn_schedule_lr(&t, 250, 400), 0.2);
  near("onecycle end", cnn_schedule_lr(&t, 400, 400), 0.0);
  t = base();
  t.schedule = CNN_SCHED_POLY;
  near("poly half", cnn_schedule_lr(&t, 50, 100), 0.4 * 0.25);
}

static const char *cfg =
    "[net]\nheight=6\nwidth=6\nchannels=2\nbatch=16\nlearning_rate=%s\n[train]\noptimizer=%s\n"
    "seed=3\n[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=tanh\n[avgpool]\n"
    "[connected]\noutput=3\nactivation=linear\n[softmax]\n";

static void test_optimizers(void) {
  const char *opts[][2] = {{"sgd", "0.2"}, {"adam", "0.01"}, {"adamw", "0.01"}};
  float x[16 * 72];
  int32_t y[16];
  for (int i = 0; i < 16; i++) y[i] = i % 3;
  for (int i = 0; i < 16 * 72; i++) x[i] = (float)((i % 72) % (y[i / 72] + 2)) * 0.3f - 0.2f;
  for (int k = 0; k < 3; k++) {
    char text[1024];
    snprintf(text, sizeof text, cfg, opts[k][1], opts[k][0]);
    cnn_net *net = NULL;
    cnn_backend *b = NULL;
    CHECK_OK(cnn_net_from_cfg_text(text, opts[k][0], &net));
    CHECK_OK(cnn_backend_create("cpu", &b));
    if (!net || !b) continue;
    CHECK_OK(cnn_net_build(net, b, 16, CNN_MODE_TRAIN));
    CHECK(cnn_net_opt_slots(net) == (k ? 2 : 1), "%s keeps %d state slots", opts[k][0], cnn_net_opt_slots(net));
    cnn_step_result r0, r;
    CHECK_OK(cnn_net_train_step(net, x, y, 16, &r0));
    for (int s = 0; s < 60; s++) CHECK_OK(cnn_net_train_step(net, x, y, 16, &r));
    CHECK(r.loss < 0.5 * r0.loss, "%s: loss %.4f -> %.4f should halve in 60 steps", opts[k][0], r0.loss, r.loss);
    cnn_net_destroy(net);
    cnn_backend_destroy(b);
  }
}

int main(void) {
  test_schedules();
  test_optimizers();
  return tu_finish("test_schedule");
}
