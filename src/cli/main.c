/* cnn: train and run convolutional neural networks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cnn/cnn.h"

static const struct {
  const char *name, *help;
  int (*run)(int, char **);
} commands[] = {
    {"train", "train a model on a dataset (checkpoints, metrics, report.html)", cnn_cmd_train},
    {"eval", "accuracy, per-class accuracy and confusion matrix of a checkpoint", cnn_cmd_eval},
    {"predict", "top-k classes of image files", cnn_cmd_predict},
    {"summary", "layers, output shapes, parameters, FLOPs and the memory plan of a model",
     cnn_cmd_summary},
    {"export", "write a checkpoint as ONNX or Darknet weights", cnn_cmd_export},
    {"import", "convert an ONNX model or a Darknet cfg + weights into a checkpoint",
     cnn_cmd_import},
    {"dataset", "write a dataset's images as PNG files (dataset export)", cnn_cmd_dataset},
    {"devices", "the CPU and the CUDA GPUs this build can use", cnn_cmd_devices},
};

static void usage(FILE *f) {
  fprintf(f, "usage: cnn COMMAND [ARGS]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
  fprintf(f, "\n'cnn COMMAND --help' describes each command.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "cnn: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
