/* cnn: train and run convolutional neural networks. */
#define _GNU_SOURCE /* dladdr, realpath */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_module.h"
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
    {"bench", "training / inference throughput, latency and per-layer times of a model",
     cnn_cmd_bench},
};

static void usage(FILE *f) {
  fprintf(f, "usage: cnn COMMAND [ARGS]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
  fprintf(f, "\n'cnn COMMAND --help' describes each command; 'cnn --version' says which\n"
             "libcnn, CUDA module and models this cnn uses.\n");
}

/* cnn --version: this command's version and what it runs with. The CUDA module is
 * loaded (not a GPU initialised) to say whether it loads here. */
static int version(void) {
  Dl_info di;
  const char *lib = NULL, *module = NULL;
  char models[4096];
  void *fn;
  const char *(*version_fn)(void) = cnn_version;
  memcpy(&fn, &version_fn, sizeof fn); /* function to object pointer, as POSIX allows */
  char real[4096];
  if (dladdr(fn, &di) && di.dli_fname)
    lib = realpath(di.dli_fname, real) ? real : di.dli_fname;
  printf("cnn %s\n", CNN_VERSION);
  printf("libcnn %s%s%s%s\n", cnn_version(), lib ? " (" : "", lib ? lib : "", lib ? ")" : "");
  if (!cnn_have_cuda())
    printf("CUDA backend: not built (nvcc was not found when cnn was built)\n");
  else if (cnn_cuda_module_loaded(&module))
    printf("CUDA backend: built, module %s\n", module);
  else
    printf("CUDA backend: built, but not usable here: %s\n", module);
  if (cnn_model_path(NULL, models, sizeof models) == CNN_OK)
    printf("models: %s\n", models);
  else
    printf("models: none found (%s)\n", cnn_last_error());
  return 0;
}

int main(int argc, char **argv) {
  cnn_cpu_env_defaults(argv); /* passive OpenMP waiting unless OMP_WAIT_POLICY is set */
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  /* cnn --version, cnn version, cnn COMMAND --version */
  if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version") ||
      (argc > 2 && !strcmp(argv[2], "--version")))
    return version();
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "cnn: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
