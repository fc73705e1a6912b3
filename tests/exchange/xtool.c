/* cnn_xtool: what the exchange tests (tests/exchange/test_*.py) need from cnn beyond
 * its command line, at full float precision:
 *   cnn_xtool init MODEL.cfg DIR [--seed S] [import options]
 *       DIR/model.cfg + DIR/model.safetensors with random weights AND random batch-norm
 *       scales, shifts and running statistics (a fresh net's are 1, 0, 0, 1, which
 *       would hide a wrong batch-norm conversion)
 *   cnn_xtool forward CKPT IN.f32 OUT.f32 N [--logits] [--device D]
 *       IN: N images as float32 NCHW pixels in [0, 1] (ONNX's layout); the
 *       checkpoint's mean/std are applied as cnn predict does; OUT: [N, classes]
 *       float32 probabilities, or the logits (the softmax layer's input) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/ckpt_net.h"
#include "cli/exchange.h"
#include "core/net.h"

static int fail(const char *what) {
  fprintf(stderr, "cnn_xtool: %s: %s\n", what, cnn_last_error());
  return 1;
}

static float uniform(uint64_t *s, float lo, float hi) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return lo + (hi - lo) * (float)((*s >> 40) * (1.0 / 16777216.0));
}

static int cmd_init(int argc, char **argv) {
  if (argc < 3) return fprintf(stderr, "usage: cnn_xtool init MODEL.cfg DIR [--seed S]\n"), 2;
  cli_import_opts o = {.out = argv[2], .force = 1};
  uint64_t seed = 1;
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
    else if (cli_import_flag(argc, argv, &i, &o) != 1) return fprintf(stderr, "bad option %s\n", argv[i]), 2;
  }
  cnn_net *net;
  if (cnn_net_from_cfg_file(argv[1], &net) != CNN_OK) return fail(argv[1]);
  if (cnn_net_init_params(net, seed) != CNN_OK) return fail("init");
  uint64_t s = seed * 2654435761u + 7;
  for (int i = 0; i < cnn_net_num_tensors(net); i++) {
    cnn_param_desc d;
    cnn_net_tensor_desc(net, i, &d);
    const char *suffix = strrchr(d.name, '.');
    float lo, hi;
    int gamma = 0; /* a batch norm's scale is its "weight" tensor */
    for (int j = 0; j < net->n_layers; j++)
      gamma |= net->layers[j].kind == &cnn_kind_batchnorm && net->layers[j].param[0] == i;
    if (!suffix) continue;
    if (gamma || !strcmp(suffix, ".running_var")) lo = 0.5f, hi = 1.5f;
    else if (!strcmp(suffix, ".beta") || !strcmp(suffix, ".running_mean") || !strcmp(suffix, ".bias"))
      lo = -0.3f, hi = 0.3f;
    else continue;
    float *v = malloc(d.count * sizeof *v);
    for (size_t k = 0; k < d.count; k++) v[k] = uniform(&s, lo, hi);
    cnn_status st = cnn_net_tensor_set(net, i, v);
    free(v);
    if (st != CNN_OK) return fail(d.name);
  }
  cnn_status st = cli_import_write(net, &o, argv[1]);
  cnn_net_destroy(net);
  return st == CNN_OK ? 0 : fail("write");
}

static int cmd_forward(int argc, char **argv) {
  if (argc < 5)
    return fprintf(stderr, "usage: cnn_xtool forward CKPT IN.f32 OUT.f32 N [--logits] [--device D]\n"), 2;
  int n = atoi(argv[4]), logits = 0;
  const char *device = "cpu";
  for (int i = 5; i < argc; i++) {
    if (!strcmp(argv[i], "--logits")) logits = 1;
    else if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
  }
  cli_model m;
  if (n < 1 || cli_model_open(argv[1], device, "fp32", NULL, n, &m) != CNN_OK) return fail(argv[1]);
  int h = m.info.height, w = m.info.width, c = m.info.channels, k = m.info.classes;
  size_t per = (size_t)h * w * c;
  float *in = malloc((size_t)n * per * sizeof *in), *x = malloc((size_t)n * per * sizeof *x);
  float *out = malloc((size_t)n * k * sizeof *out);
  FILE *f = fopen(argv[2], "rb");
  if (!f || fread(in, sizeof *in, (size_t)n * per, f) != (size_t)n * per)
    return fprintf(stderr, "cnn_xtool: %s: expected %zu floats\n", argv[2], (size_t)n * per), 1;
  fclose(f);
  for (int i = 0; i < n; i++) /* NCHW [0, 1] -> NHWC normalised */
    for (int ch = 0; ch < c; ch++)
      for (int p = 0; p < h * w; p++)
        x[(size_t)i * per + (size_t)p * c + ch] =
            (in[(size_t)i * per + (size_t)ch * h * w + p] - m.meta.mean[ch]) / m.meta.std[ch];
  if (cnn_net_predict(m.net, x, NULL, n, out, NULL) != CNN_OK) return fail("predict");
  if (logits) { /* the softmax layer's input, as the program left it */
    cnn_net *net = m.net;
    cnn_layer *last = &net->layers[net->n_layers - 1];
    if (last->kind != &cnn_kind_softmax) return fprintf(stderr, "cnn_xtool: no softmax layer\n"), 1;
    const cnn_layer *src = &net->layers[last->in[0]];
    while (src->absorbed_by >= 0) src = &net->layers[src->absorbed_by];
    if (CNN_OP(net, download, out, src->y, (size_t)n * k * sizeof *out) != CNN_OK)
      return fail("logits");
  }
  f = fopen(argv[3], "wb");
  if (!f || fwrite(out, sizeof *out, (size_t)n * k, f) != (size_t)n * k || fclose(f))
    return fprintf(stderr, "cnn_xtool: cannot write %s\n", argv[3]), 1;
  free(in), free(x), free(out);
  cli_model_close(&m);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "init")) return cmd_init(argc - 1, argv + 1);
  if (argc >= 2 && !strcmp(argv[1], "forward")) return cmd_forward(argc - 1, argv + 1);
  fprintf(stderr, "usage: cnn_xtool init|forward ...\n");
  return 2;
}
