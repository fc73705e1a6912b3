/* Fine-tuning support in the library:
 *  - freezing (freeze_suite.c) on ref and cpu: frozen tensors and their optimizer
 *    state bit-identical after training, the rest changed, frozen batch norm on its
 *    running statistics, no backward nodes for the frozen prefix;
 *  - cnn_net_set_frozen's limits and cnn_net_find_section;
 *  - cnn_net_load_matching: from a trained 10-class net into a 5-class net with
 *    another head: loaded, new, other-shape and unused tensors reported, loaded
 *    tensors equal the source's, the others keep the target's initialisation; a
 *    file with nothing in common is refused and changes nothing;
 *  - cnn_net_save_flags(CNN_SAVE_NO_OPTIMIZER): no optimizer.* tensors, and the
 *    file loads (cnn_net_load) into inference and training builds. */
#define _XOPEN_SOURCE 700 /* mkdtemp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnn/cnn.h"
#include "core/safetensors.h"
#include "freeze_suite.h"
#include "testutil.h"

/* the suite's net with a 5-class head, no hidden dense layer, batch norm in conv2 */
static const char *cfg5 =
    "[net]\nheight=8\nwidth=8\nchannels=2\nbatch=16\nlearning_rate=0.05\nmomentum=0.9\n"
    "[train]\nseed=11\n"
    "[convolutional]\nbatch_normalize=1\nfilters=6\nsize=3\npad=1\nactivation=relu\n"
    "[maxpool]\nsize=2\nstride=2\n"
    "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\npad=1\nactivation=leaky\n"
    "[connected]\noutput=5\nactivation=linear\n"
    "[softmax]\n";

static char dir[64];

static float *get(cnn_net *net, const char *name, size_t *count) {
  for (int i = 0; i < cnn_net_num_tensors(net); i++) {
    cnn_param_desc d;
    cnn_net_tensor_desc(net, i, &d);
    if (strcmp(d.name, name)) continue;
    float *v = malloc(d.count * sizeof(float));
    cnn_net_tensor_get(net, i, v);
    if (count) *count = d.count;
    return v;
  }
  return NULL;
}

static int tensor_equal(cnn_net *a, cnn_net *b, const char *name) {
  size_t na = 0, nb = 0;
  float *x = get(a, name, &na), *y = get(b, name, &nb);
  int eq = x && y && na == nb && !memcmp(x, y, na * sizeof(float));
  free(x);
  free(y);
  return eq;
}

static void test_limits(void) {
  cnn_net *net = NULL;
  CHECK_OK(cnn_net_from_cfg_text(fs_cfg, "freeze.cfg", &net));
  if (!net) return;
  CHECK(cnn_net_set_frozen(net, 6) == CNN_ERR_ARG, "all 6 sections cannot be frozen");
  CHECK(cnn_net_set_frozen(net, -1) == CNN_ERR_ARG, "a negative count is refused");
  /* sections 0-4 hold every parameter: only the softmax would be left */
  CHECK(cnn_net_set_frozen(net, 5) == CNN_ERR_ARG && strstr(cnn_last_error(), "no parameter"),
        "freezing every parameter is refused: %s", cnn_last_error());
  CHECK(cnn_net_frozen(net) == 0, "a refused freeze leaves none frozen");
  int s = -1;
  CHECK_OK(cnn_net_find_section(net, "conv2", &s));
  CHECK(s == 2, "conv2 is section 2, got %d", s);
  CHECK_OK(cnn_net_find_section(net, "conv1.bn", &s));
  CHECK(s == 0, "conv1.bn is section 0, got %d", s);
  CHECK_OK(cnn_net_find_section(net, "fc1.weight", &s));
  CHECK(s == 3, "fc1.weight is section 3, got %d", s);
  CHECK(cnn_net_find_section(net, "conv9", &s) == CNN_ERR_ARG && strstr(cnn_last_error(), "fc2"),
        "an unknown name is refused, listing the layers: %s", cnn_last_error());
  CHECK_OK(cnn_net_set_frozen(net, 4));
  cnn_param_desc d;
  int frozen = 0;
  for (int i = 0; i < cnn_net_num_tensors(net); i++)
    if (cnn_net_tensor_desc(net, i, &d) == CNN_OK && d.frozen) frozen++;
  CHECK(frozen == 9, "4 sections freeze conv1 (5 tensors), conv2 and fc1 (2 each): %d", frozen);
  CHECK_OK(cnn_net_set_frozen(net, 0));
  CHECK(cnn_net_tensor_desc(net, 0, &d) == CNN_OK && !d.frozen, "unfreezing clears the flags");
  cnn_net_destroy(net);
}

static const cnn_load_item *item(const cnn_load_report *r, const char *name) {
  for (int i = 0; i < r->n_items; i++)
    if (!strcmp(r->items[i].name, name)) return &r->items[i];
  return NULL;
}

static void test_load_matching(void) {
  cnn_net *src = NULL, *dst = NULL, *fresh = NULL;
  cnn_backend *cpu = NULL;
  CHECK_OK(cnn_backend_create("cpu", &cpu));
  CHECK_OK(cnn_net_from_cfg_text(fs_cfg, "ten.cfg", &src));
  CHECK_OK(cnn_net_from_cfg_text(cfg5, "five.cfg", &dst));
  CHECK_OK(cnn_net_from_cfg_text(cfg5, "five.cfg", &fresh));
  if (!src || !dst || !fresh || !cpu) return;
  CHECK_OK(cnn_net_build(src, cpu, 16, CNN_MODE_TRAIN));
  float x[16 * 128];
  int32_t y[16];
  for (int s = 0; s < 3; s++) { /* the source's tensors move away from any initialisation */
    tu_fill_uniform(x, sizeof x / sizeof *x, -1, 1, 40 + (uint64_t)s);
    for (int i = 0; i < 16; i++) y[i] = (i + s) % 10;
    cnn_step_result r;
    CHECK_OK(cnn_net_train_step(src, x, y, 16, &r));
  }
  char full[128], light[128];
  snprintf(full, sizeof full, "%s/full.safetensors", dir);
  snprintf(light, sizeof light, "%s/light.safetensors", dir);
  CHECK_OK(cnn_net_save(src, full, "{\"note\":\"full\"}"));
  CHECK_OK(cnn_net_save_flags(src, light, NULL, CNN_SAVE_NO_OPTIMIZER));
  CHECK(cnn_net_save_flags(src, light, NULL, 8) == CNN_ERR_ARG, "unknown save flags are refused");

  /* the file without optimizer state: no optimizer.* tensor; with: one per slot and tensor */
  cnn_st_file f;
  int opt_light = -1, opt_full = -1, n_light = 0;
  if (cnn_st_read(light, &f) == CNN_OK) {
    opt_light = 0;
    for (int i = 0; i < f.n; i++) opt_light += !strncmp(f.tensors[i].name, "optimizer.", 10);
    n_light = f.n;
    cnn_st_free(&f);
  }
  if (cnn_st_read(full, &f) == CNN_OK) {
    opt_full = 0;
    for (int i = 0; i < f.n; i++) opt_full += !strncmp(f.tensors[i].name, "optimizer.", 10);
    cnn_st_free(&f);
  }
  CHECK(opt_light == 0 && n_light == cnn_net_num_tensors(src),
        "the light file holds the %d tensors and no optimizer state (%d, %d tensors)",
        cnn_net_num_tensors(src), opt_light, n_light);
  CHECK(opt_full == 9, "the full file holds momentum for its 9 trainable tensors: %d", opt_full);

  /* the light file loads for inference and into a training build of the same model */
  cnn_net *inf = NULL, *tr = NULL;
  CHECK_OK(cnn_net_from_cfg_text(fs_cfg, "ten.cfg", &inf));
  CHECK_OK(cnn_net_from_cfg_text(fs_cfg, "ten.cfg", &tr));
  if (inf && tr) {
    CHECK_OK(cnn_net_build(inf, cpu, 16, CNN_MODE_INFER));
    CHECK_OK(cnn_net_load(inf, light));
    CHECK_OK(cnn_net_build(tr, cpu, 16, CNN_MODE_TRAIN));
    CHECK_OK(cnn_net_load(tr, light));
    float pa[16 * 10], pb[16 * 10];
    CHECK_OK(cnn_net_predict(src, x, NULL, 16, pa, NULL));
    CHECK_OK(cnn_net_predict(inf, x, NULL, 16, pb, NULL));
    tu_check_close("predictions from the light checkpoint", pb, pa, 16 * 10, 1e-5);
    CHECK(tensor_equal(src, tr, "fc2.weight") && tensor_equal(src, tr, "conv1.bn.running_var"),
          "the light file's tensors load exactly");
  }
  cnn_net_destroy(inf);
  cnn_net_destroy(tr);

  /* into the 5-class model */
  CHECK_OK(cnn_net_build(dst, cpu, 16, CNN_MODE_TRAIN));
  cnn_load_report rep;
  CHECK_OK(cnn_net_load_matching(dst, full, &rep));
  /* loaded: conv1.weight + conv1.bn's 4, conv2.weight; new: conv2.bn's 4; other
   * shape: fc1.weight [5,128] vs [16,128], fc1.bias; unused: conv2.bias, fc2.* */
  CHECK(rep.loaded == 6 && rep.fresh == 4 && rep.shape == 2 && rep.unused == 3,
        "loaded %d new %d shape %d unused %d", rep.loaded, rep.fresh, rep.shape, rep.unused);
  CHECK(rep.n_items == cnn_net_num_tensors(dst) + rep.unused, "one item per tensor and unused one");
  CHECK(rep.loaded_values == 6 * 2 * 9 + 4 * 6 + 8 * 6 * 9, "values loaded: %zu", rep.loaded_values);
  const cnn_load_item *it = item(&rep, "fc1.weight");
  CHECK(it && it->what == CNN_LOAD_SHAPE && strstr(it->detail, "[16,128] in the file") &&
            strstr(it->detail, "[5,128] in the model"),
        "fc1.weight skipped for its shape: %s", it ? it->detail : "(absent)");
  it = item(&rep, "conv2.bn.running_mean");
  CHECK(it && it->what == CNN_LOAD_NEW, "conv2.bn.running_mean is new");
  it = item(&rep, "fc2.weight");
  CHECK(it && it->what == CNN_LOAD_UNUSED && !strcmp(it->detail, "[10,16]"),
        "fc2.weight is unused: %s", it ? it->detail : "(absent)");
  CHECK(item(&rep, "optimizer.0.fc2.weight") == NULL, "optimizer state is not listed");
  it = item(&rep, "conv1.bn.running_var");
  CHECK(it && it->what == CNN_LOAD_LOADED, "running statistics load too");
  const char *loaded[] = {"conv1.weight", "conv1.bn.weight", "conv1.bn.bias", "conv1.bn.running_mean",
                          "conv1.bn.running_var", "conv2.weight"};
  for (size_t i = 0; i < sizeof loaded / sizeof *loaded; i++) {
    CHECK(tensor_equal(dst, src, loaded[i]), "%s equals the source's", loaded[i]);
    CHECK(!tensor_equal(dst, fresh, loaded[i]), "%s differs from the initialisation", loaded[i]);
  }
  const char *kept[] = {"fc1.weight", "fc1.bias", "conv2.bn.weight", "conv2.bn.running_var"};
  for (size_t i = 0; i < sizeof kept / sizeof *kept; i++)
    CHECK(tensor_equal(dst, fresh, kept[i]), "%s keeps the seed's initialisation", kept[i]);
  CHECK(cnn_net_step_count(dst) == 0, "the step count is not taken from the file");
  cnn_load_report_free(&rep);
  /* the loaded net trains */
  cnn_step_result r;
  for (int i = 0; i < 16; i++) y[i] = i % 5;
  CHECK_OK(cnn_net_train_step(dst, x, y, 16, &r));

  /* a light file works as the source too; nothing in common is refused, unchanged */
  cnn_net *again = NULL;
  CHECK_OK(cnn_net_from_cfg_text(cfg5, "five.cfg", &again));
  if (again) {
    CHECK_OK(cnn_net_load_matching(again, light, NULL));
    CHECK(tensor_equal(again, src, "conv2.weight"), "loaded from the light file");
    cnn_net_destroy(again);
  }
  cnn_net *other = NULL;
  CHECK_OK(cnn_net_from_cfg_text("[net]\nheight=8\nwidth=8\nchannels=2\n[connected]\noutput=3\n"
                                 "activation=linear\n[softmax]\n", "other.cfg", &other));
  if (other) {
    size_t n0 = 0;
    float *w0 = get(other, "fc1.weight", &n0);
    cnn_status st = cnn_net_load_matching(other, full, &rep);
    CHECK(st == CNN_ERR_SHAPE && strstr(cnn_last_error(), "another shape") &&
              strstr(cnn_last_error(), "fc1.weight"),
          "nothing matching is refused: %s", cnn_last_error());
    CHECK(rep.items == NULL && rep.n_items == 0, "a refused load leaves the report empty");
    float *w1 = get(other, "fc1.weight", NULL);
    CHECK(w0 && w1 && !memcmp(w0, w1, n0 * sizeof(float)), "and changes nothing");
    free(w0);
    free(w1);
    cnn_net_destroy(other);
  }
  cnn_net_destroy(src);
  cnn_net_destroy(dst);
  cnn_net_destroy(fresh);
  cnn_backend_destroy(cpu);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/cnn_finetune_XXXXXX");
  if (!mkdtemp(dir)) return 1;
  test_limits();
  fs_run("ref");
  fs_run("cpu");
  test_load_matching();
  int rc = tu_finish("test_finetune");
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (!rc && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return rc;
}
