/* cnn export CKPT OUT.onnx [--logits] [--fold-bn] [--opset N] */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/exchange.h"
#include "cli/meta.h"
#include "exchange/onnx_export.h"

static void help(FILE *f) {
  fprintf(f,
          "usage: cnn export CKPT.safetensors OUT.onnx [--logits] [--fold-bn] [--opset N]\n\n"
          "Writes the checkpoint as an ONNX model: input 'input', float [N, C, H, W] pixels in\n"
          "[0, 1] (N dynamic; the checkpoint's mean/std normalisation is part of the graph);\n"
          "output 'probs', [N, classes] probabilities.\n"
          "  --logits   output 'logits', the softmax's input, instead\n"
          "  --fold-bn  fold batch norm into the convolution before it (where it is that\n"
          "             convolution's only reader) instead of BatchNormalization nodes\n"
          "  --opset N  ONNX operator set, %d (default) to %d\n"
          "A layer ONNX cannot express exactly is refused with its name; see docs/exchange.md.\n",
          CNN_ONNX_OPSET_MIN, CNN_ONNX_OPSET_MAX);
}

int cli_export_onnx(int argc, char **argv) {
  const char *pos[2] = {NULL, NULL};
  int n_pos = 0;
  cnn_onnx_export_opts o = {.opset = CNN_ONNX_OPSET_MIN};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      help(stdout);
      return 0;
    } else if (!strcmp(argv[i], "--logits")) {
      o.logits = 1;
    } else if (!strcmp(argv[i], "--fold-bn")) {
      o.fold_bn = 1;
    } else if (!strcmp(argv[i], "--opset")) {
      if (!cli_int("--opset", i + 1 < argc ? argv[++i] : NULL, CNN_ONNX_OPSET_MIN,
                   CNN_ONNX_OPSET_MAX, &o.opset))
        return 2;
    } else if (argv[i][0] == '-' || n_pos == 2) {
      fprintf(stderr, "cnn export: unexpected argument '%s'\n", argv[i]);
      help(stderr);
      return 2;
    } else {
      pos[n_pos++] = argv[i];
    }
  }
  if (n_pos != 2) {
    help(stderr);
    return 2;
  }
  const char *ckpt = pos[0], *out = pos[1];
  cli_meta meta;
  memset(&meta, 0, sizeof meta);
  cnn_net *net = NULL;
  cnn_net_info info;
  cnn_onnx_export_info wrote;
  int rc = 1;
  if (cli_meta_read(ckpt, &meta) != CNN_OK || cnn_net_from_cfg_text(meta.cfg, ckpt, &net) != CNN_OK ||
      cnn_net_info_get(net, &info) != CNN_OK || cli_meta_check_model(ckpt, &meta, &info) != CNN_OK ||
      cnn_net_load(net, ckpt) != CNN_OK) {
    cli_fail(NULL); /* the messages name the file */
  } else if (cnn_onnx_export(net, meta.mean, meta.std, &o, out, &wrote) != CNN_OK) {
    cli_fail(NULL);
  } else {
    printf("wrote %s: ONNX opset %d, input 'input' [N, %d, %d, %d], output '%s' [N, %d]; "
           "%d nodes, %d initializers, %zu bytes\n",
           out, o.opset, info.channels, info.height, info.width, wrote.output, info.classes,
           wrote.nodes, wrote.initializers, wrote.bytes);
    rc = 0;
  }
  cnn_net_destroy(net);
  cli_meta_free(&meta);
  return rc;
}
