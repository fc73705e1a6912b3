/* cnn export CKPT OUT: the output's extension picks the format */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/exchange.h"

static void help(FILE *f) {
  fprintf(f,
          "usage: cnn export CKPT.safetensors OUT.onnx    [--logits] [--fold-bn] [--opset N]\n"
          "       cnn export CKPT.safetensors OUT.weights\n\n"
          "Writes a checkpoint in another framework's format, picked by OUT's extension:\n"
          "  .onnx     ONNX (onnxruntime, TensorRT, OpenCV DNN): input 'input', float NCHW\n"
          "            pixels in [0, 1] with a dynamic batch dimension (the checkpoint's\n"
          "            mean/std normalisation is part of the graph); output 'probs' or,\n"
          "            with --logits, 'logits'. --fold-bn folds batch norm into the\n"
          "            convolutions. A layer ONNX cannot express exactly is refused.\n"
          "  .weights  Darknet's binary weights for the checkpoint's cfg.\n"
          "'cnn export CKPT OUT.onnx --help' and 'cnn export CKPT OUT.weights --help'\n"
          "describe each.\n");
}

int cnn_cmd_export(int argc, char **argv) {
  const char *out = NULL;
  int n_pos = 0;
  for (int i = 1; i < argc; i++) {
    if (argv[i][0] != '-' && ++n_pos == 2) out = argv[i];
  }
  if (!out) {
    int asked = argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
    help(asked ? stdout : stderr);
    return asked ? 0 : 2;
  }
  if (cli_ends_with(out, ".onnx")) return cli_export_onnx(argc, argv);
  if (cli_ends_with(out, ".weights")) return cli_export_darknet(argc, argv);
  fprintf(stderr, "cnn export: %s: unknown format (the name must end in .onnx or .weights)\n", out);
  return 2;
}
