/* Checkpoints that must not load, and loads that are all-or-nothing:
 *  - cnn_net_save records a crc32 checksum of the tensor data in the metadata; a
 *    file whose data was damaged after writing (one flipped bit) is refused as
 *    corrupt, naming the file; a file without a checksum (older files, other
 *    tools) or with another tool's algorithm still loads;
 *  - a checkpoint holding NaN or Inf (a parameter, a running statistic, the
 *    optimizer state) is refused naming the file and the tensor;
 *  - a malformed or negative "step" is refused;
 *  - the library's own metadata keys cannot be overridden by the caller;
 *  - every refused load leaves the net bit-identical: tensors, optimizer state,
 *    step counter. */
#define _XOPEN_SOURCE 700 /* mkdtemp */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnn/cnn.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "testutil.h"

#define BATCH 4

static const char *cfg =
    "[net]\nheight=6\nwidth=6\nchannels=1\nbatch=4\n"
    "[train]\noptimizer=sgd\nlearning_rate=0.1\nmomentum=0.9\nseed=3\n"
    "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\npad=1\nactivation=relu\n"
    "[avgpool]\n[connected]\noutput=3\nactivation=linear\n[softmax]\n";

static char tmpdir[64];
static cnn_backend *cpu;

static cnn_net *new_net(void) {
  cnn_net *net = NULL;
  CHECK_OK(cnn_net_from_cfg_text(cfg, "ckpt.cfg", &net));
  if (net) CHECK_OK(cnn_net_build(net, cpu, BATCH, CNN_MODE_TRAIN));
  return net;
}

/* every tensor, the optimizer state and the step: what a refused load must not change */
typedef struct state {
  float *v;
  size_t n;
  int64_t step;
} state;

static state snap(const cnn_net *net) {
  cnn_net_info info;
  cnn_net_info_get(net, &info);
  size_t total = info.num_params * (size_t)cnn_net_opt_slots(net);
  for (int i = 0; i < cnn_net_num_tensors(net); i++) {
    cnn_param_desc d;
    cnn_net_tensor_desc(net, i, &d);
    total += d.count;
  }
  state s = {calloc(total + 1, sizeof(float)), total, cnn_net_step_count(net)};
  float *p = s.v;
  for (int i = 0; i < cnn_net_num_tensors(net); i++) {
    cnn_param_desc d;
    cnn_net_tensor_desc(net, i, &d);
    CHECK_OK(cnn_net_tensor_get(net, i, p));
    p += d.count;
  }
  for (int k = 0; k < cnn_net_opt_slots(net); k++, p += info.num_params)
    CHECK_OK(cnn_net_opt_state_get(net, k, p, info.num_params));
  return s;
}

static int same_state(state a, state b) {
  return a.n == b.n && a.step == b.step && !memcmp(a.v, b.v, a.n * sizeof(float));
}

/* Copy checkpoint src to dst through the safetensors reader and writer, without
 * its checksum (as another tool would write it): optionally with element 3 of
 * tensor `poison` set to `value` and metadata `key` set to `val` (added if absent). */
static void rewrite(const char *src, const char *dst, const char *poison, float value,
                    const char *key, const char *val) {
  cnn_st_file f;
  CHECK_OK(cnn_st_read(src, &f));
  if (!f.tensors) return;
  cnn_st_item *items = calloc((size_t)f.n, sizeof *items);
  const char **mk = calloc((size_t)f.n_meta + 1, sizeof *mk), **mv = calloc((size_t)f.n_meta + 1, sizeof *mv);
  for (int i = 0; i < f.n; i++) {
    cnn_st_tensor *t = &f.tensors[i];
    if (poison && !strcmp(t->name, poison)) memcpy(f.data + t->begin + 3 * sizeof(float), &value, sizeof value);
    items[i] = (cnn_st_item){t->name, t->dtype, t->ndim, t->shape, f.data + t->begin, t->end - t->begin};
  }
  int n = 0, set = 0;
  for (int i = 0; i < f.n_meta; i++) {
    if (!strcmp(f.meta_keys[i], "checksum")) continue;
    mk[n] = f.meta_keys[i];
    mv[n] = f.meta_values[i];
    if (key && !strcmp(mk[n], key)) mv[n] = val, set = 1;
    n++;
  }
  if (key && !set) mk[n] = key, mv[n++] = val;
  CHECK_OK(cnn_st_write(dst, items, f.n, mk, mv, n));
  free(items);
  free(mk);
  free(mv);
  cnn_st_free(&f);
}

/* load into `net` must fail naming the file and every word in `words` (NULL-ended),
 * leaving the net as it was */
static void expect_refused(cnn_net *net, const char *path, const char *what, const char *const *words) {
  state before = snap(net);
  cnn_error_clear();
  cnn_status st = cnn_net_load(net, path);
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", cnn_last_error());
  state after = snap(net);
  CHECK(st != CNN_OK, "%s: the load must be refused", what);
  CHECK(strstr(msg, path) != NULL, "%s: the message names the file: %s", what, msg);
  for (int i = 0; words[i]; i++)
    CHECK(strstr(msg, words[i]) != NULL, "%s: the message names '%s': %s", what, words[i], msg);
  CHECK(same_state(before, after), "%s: the net is unchanged (tensors, optimizer state, step)", what);
  printf("  %-36s -> %s\n", what, st == CNN_OK ? "LOADED" : msg);
  free(before.v);
  free(after.v);
}

static void expect_loads(cnn_net *net, const char *path, const char *what) {
  cnn_status st = cnn_net_load(net, path);
  CHECK(st == CNN_OK, "%s: loads: %s", what, cnn_last_error());
  printf("  %-36s -> %s\n", what, st == CNN_OK ? "loads" : cnn_last_error());
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/cnn_ckpt_XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;
  CHECK_OK(cnn_backend_create("cpu", &cpu));
  cnn_net *a = cpu ? new_net() : NULL, *b = cpu ? new_net() : NULL;
  if (!a || !b) return tu_finish("test_checkpoint");
  /* a trains a few steps (momentum and running statistics become non-trivial);
   * b stays at its initialisation, so a partial load into b would show */
  float x[BATCH * 36];
  int32_t y[BATCH] = {0, 1, 2, 1};
  for (int s = 0; s < 3; s++) {
    tu_fill_uniform(x, BATCH * 36, -1, 1, 100 + (uint64_t)s);
    cnn_step_result r;
    CHECK_OK(cnn_net_train_step(a, x, y, BATCH, &r));
  }
  CHECK(cnn_net_opt_slots(a) == 1, "SGD with momentum has one optimizer slot");
  char good[128], p[128];
  snprintf(good, sizeof good, "%s/good.safetensors", tmpdir);
  CHECK_OK(cnn_net_save(a, good, "{\"note\": \"test\"}"));

  /* the checksum */
  cnn_st_file f;
  CHECK_OK(cnn_st_read(good, &f));
  const char *sum = cnn_st_meta(&f, "checksum");
  CHECK(sum && !strncmp(sum, "crc32:", 6) && strlen(sum) == 14,
        "the checkpoint records a crc32 checksum: %s", sum ? sum : "(none)");
  size_t data_len = f.data_len;
  cnn_st_free(&f);
  expect_loads(b, good, "the checkpoint as written");
  state sa = snap(a), sb = snap(b);
  CHECK(same_state(sa, sb), "a round trip restores tensors, optimizer state and step");
  free(sa.v);
  free(sb.v);
  cnn_net_destroy(b);
  b = new_net();
  if (!b) return tu_finish("test_checkpoint");

  /* one flipped bit in the data (the low mantissa bit of the last float: still finite) */
  snprintf(p, sizeof p, "%s/flipped.safetensors", tmpdir);
  FILE *in = fopen(good, "rb"), *out = fopen(p, "wb");
  CHECK(in && out, "copy");
  if (in && out) {
    fseek(in, 0, SEEK_END);
    long len = ftell(in);
    fseek(in, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)len);
    CHECK(fread(buf, 1, (size_t)len, in) == (size_t)len && (size_t)len > data_len, "read");
    buf[len - 4] ^= 1;
    fwrite(buf, 1, (size_t)len, out);
    free(buf);
  }
  if (in) fclose(in);
  if (out) fclose(out);
  expect_refused(b, p, "one flipped bit in the tensor data", (const char *const[]){"corrupt", NULL});

  /* without a checksum (another tool, an older file), or another tool's algorithm */
  snprintf(p, sizeof p, "%s/nosum.safetensors", tmpdir);
  rewrite(good, p, NULL, 0, NULL, NULL);
  expect_loads(b, p, "no checksum");
  snprintf(p, sizeof p, "%s/othersum.safetensors", tmpdir);
  rewrite(good, p, NULL, 0, "checksum", "sha256:0123");
  expect_loads(b, p, "another tool's checksum algorithm");
  cnn_net_destroy(b);
  b = new_net();
  if (!b) return tu_finish("test_checkpoint");

  /* non-finite values, in each kind of tensor */
  const struct {
    const char *what, *tensor;
    float v;
  } bad[] = {
      {"NaN in a weight", "conv1.weight", NAN},
      {"+Inf in a running variance", "conv1.bn.running_var", INFINITY},
      {"-Inf in the dense weight", "fc1.weight", -INFINITY},
      {"NaN in the momentum", "optimizer.0.conv1.weight", NAN},
  };
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
    snprintf(p, sizeof p, "%s/nonfinite%zu.safetensors", tmpdir, k);
    rewrite(good, p, bad[k].tensor, bad[k].v, NULL, NULL);
    const char *words[] = {bad[k].tensor, isnan(bad[k].v) ? "NaN" : "Inf", NULL};
    expect_refused(b, p, bad[k].what, words);
  }

  /* the step */
  const char *steps[] = {"-5", "abc", "12x"};
  for (size_t k = 0; k < sizeof steps / sizeof *steps; k++) {
    snprintf(p, sizeof p, "%s/step%zu.safetensors", tmpdir, k);
    rewrite(good, p, NULL, 0, "step", steps[k]);
    char what[64];
    snprintf(what, sizeof what, "step '%s'", steps[k]);
    expect_refused(b, p, what, (const char *const[]){"step", NULL});
  }

  /* the library's keys are its own */
  snprintf(p, sizeof p, "%s/reserved.safetensors", tmpdir);
  const char *reserved[] = {"{\"step\": \"7\"}", "{\"checksum\": \"crc32:00000000\"}",
                            "{\"cfg\": \"x\"}"};
  for (size_t k = 0; k < sizeof reserved / sizeof *reserved; k++) {
    cnn_status st = cnn_net_save(a, p, reserved[k]);
    CHECK(st == CNN_ERR_ARG && strstr(cnn_last_error(), "reserved"),
          "metadata %s is refused as reserved: %s", reserved[k],
          st == CNN_OK ? "saved" : cnn_last_error());
  }
  CHECK(access(p, F_OK) != 0, "nothing was written for reserved keys");

  cnn_net_destroy(a);
  cnn_net_destroy(b);
  cnn_backend_destroy(cpu);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return tu_finish("test_checkpoint");
}
