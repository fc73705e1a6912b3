/* cnn import IN... --out DIR: the first input's extension picks the format */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/exchange.h"

static void help(FILE *f) {
  fprintf(f,
          "usage: cnn import MODEL.onnx --out DIR [options]\n"
          "       cnn import MODEL.cfg MODEL.weights --out DIR [options]\n\n"
          "Converts a model from another framework into DIR/model.cfg and\n"
          "DIR/model.safetensors, which cnn summary/eval/predict/train use like any\n"
          "checkpoint. The model takes pixels scaled to [0, 1]; preprocessing that is\n"
          "not in the model can be given as options and is stored in the checkpoint.\n"
          "'cnn import MODEL.onnx --help' and 'cnn import MODEL.cfg --help' describe\n"
          "each format's options.\n\noptions:\n%s",
          cli_import_flags_help);
}

int cnn_cmd_import(int argc, char **argv) {
  const char *in = NULL;
  for (int i = 1; i < argc && !in; i++) {
    if (argv[i][0] != '-') in = argv[i];
    else if (!strcmp(argv[i], "--out") || !strcmp(argv[i], "--mean") || !strcmp(argv[i], "--std") ||
             !strcmp(argv[i], "--classes"))
      i++; /* skip the value */
  }
  if (!in) {
    int asked = argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
    help(asked ? stdout : stderr);
    return asked ? 0 : 2;
  }
  if (cli_ends_with(in, ".onnx")) return cli_import_onnx(argc, argv);
  if (cli_ends_with(in, ".cfg")) return cli_import_darknet(argc, argv);
  fprintf(stderr, "cnn import: %s: unknown format (expected MODEL.onnx, or MODEL.cfg "
                  "MODEL.weights)\n", in);
  return 2;
}
