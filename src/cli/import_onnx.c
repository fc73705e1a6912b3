/* cnn import MODEL.onnx --out DIR: an ONNX model (PyTorch's export, onnx's tools)
 * as DIR/model.cfg + DIR/model.safetensors (src/exchange/onnx_import.c converts) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/exchange.h"
#include "exchange/onnx_import.h"

static void help(FILE *f) {
  fprintf(f,
          "usage: cnn import MODEL.onnx --out DIR [options]\n\n"
          "Converts an ONNX model (as torch.onnx.export or onnx's tools write it) into\n"
          "DIR/model.cfg and DIR/model.safetensors. It reads Conv, BatchNormalization,\n"
          "Relu/LeakyRelu/Sigmoid/Tanh/Gelu, Max/Average/Global pooling, Gemm, MatMul(+Add),\n"
          "Flatten/Reshape with constant shapes, Add, Concat, Softmax/LogSoftmax, Dropout,\n"
          "Identity and Constant (docs/exchange.md); anything else is refused naming\n"
          "the node, its op type and the opset. The model takes pixels scaled to [0, 1];\n"
          "per-channel Sub/Div of the input in the graph becomes the checkpoint's mean/std,\n"
          "and --mean/--std give preprocessing the graph does not hold. A graph that ends in\n"
          "logits gets a [softmax] layer.\n\noptions:\n%s",
          cli_import_flags_help);
}

/* --mean/--std given with a graph that already normalizes must say the same */
static int agrees(const char *flag, const char *s, const float *v, int channels) {
  float f[4];
  int n = 0;
  while (*s && n < 4) {
    char *end;
    f[n] = strtof(s, &end);
    if (end == s) break;
    n++;
    s = end;
    while (*s == ',' || *s == ' ') s++;
  }
  for (int c = 0; c < channels; c++) {
    float g = n == 1 ? f[0] : c < n ? f[c] : NAN;
    if (!(fabsf(g - v[c]) <= 1e-5f * fmaxf(1, fabsf(v[c])))) {
      fprintf(stderr, "cnn import: %s disagrees with the graph, whose input normalization gives "
              "channel %d %g\n", flag, c, v[c]);
      return 0;
    }
  }
  return 1;
}

int cli_import_onnx(int argc, char **argv) {
  cli_import_opts o = {0};
  const char *in = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      help(stdout);
      return 0;
    }
    int r = cli_import_flag(argc, argv, &i, &o);
    if (r < 0) return 2;
    if (r == 1) continue;
    if (argv[i][0] == '-' || in) {
      fprintf(stderr, "cnn import: unexpected argument '%s' (see cnn import MODEL.onnx --help)\n", argv[i]);
      return 2;
    }
    in = argv[i];
  }
  if (!in || !o.out) {
    help(stderr);
    return 2;
  }
  cnn_onnx_model m;
  if (cnn_onnx_read_file(in, &m) != CNN_OK) return cli_fail("import");
  char mean[160], std[160];
  if (m.has_norm) {
    if ((o.mean_s && !agrees("--mean", o.mean_s, m.mean, m.channels)) ||
        (o.std_s && !agrees("--std", o.std_s, m.std, m.channels))) {
      cnn_onnx_model_free(&m);
      return 1;
    }
    mean[0] = std[0] = 0;
    for (int c = 0; c < m.channels; c++) {
      char f[32];
      if (c) strcat(mean, ","), strcat(std, ",");
      strcat(mean, cnn_onnx_float_str(m.mean[c], f, sizeof f));
      strcat(std, cnn_onnx_float_str(m.std[c], f, sizeof f));
    }
    o.mean_s = mean;
    o.std_s = std;
  }
  cnn_net *net = NULL;
  cnn_status st = cnn_onnx_net(&m, &net);
  if (st == CNN_OK) st = cli_import_write(net, &o, in);
  if (st == CNN_OK) {
    fprintf(stderr, "cnn import: %s: %d nodes read, %d cfg sections written; the graph's output "
            "was %s\n", in, m.nodes, m.sections, m.output);
    if (m.has_norm) fprintf(stderr, "cnn import: pixel mean %s, std %s\n", mean, std);
    for (char *p = m.notes; *p;) {
      char *e = strchr(p, '\n');
      fprintf(stderr, "cnn import:   %.*s\n", e ? (int)(e - p) : (int)strlen(p), p);
      p = e ? e + 1 : p + strlen(p);
    }
  }
  cnn_net_destroy(net);
  cnn_onnx_model_free(&m);
  return st == CNN_OK ? 0 : cli_fail("import");
}
