/* cnn summary MODEL.cfg [--batch N] [--train] */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cnn/cnn.h"
#include "exchange/darknet_weights.h"

static void help(FILE *f) {
  fprintf(f,
          "usage: cnn summary MODEL.cfg [--batch N] [--infer] [--precision P] [--program]\n"
          "                             [--weights FILE.weights]\n\n"
          "Prints each layer's output shape, parameters and forward FLOPs, the totals,\n"
          "and the memory plan for a batch of N images (default: the cfg's batch) in\n"
          "training mode (--infer: inference, where activations are reused), as the cpu\n"
          "backend would run it. --program also prints the compiled step program: one\n"
          "line per node, with the layers fused into it. --precision: auto | fp32 |\n"
          "tf32 | bf16. --weights: check that Darknet's binary weights FILE fit MODEL.cfg\n"
          "(sizes and values, as cnn import reads them) and say what its header holds.\n"
          "train, eval and bench_train --batch auto pick the largest batch whose plan fits\n"
          "the device's free memory with a margin.\n");
}

int cnn_cmd_summary(int argc, char **argv) {
  const char *path = NULL;
  int batch = 0, program = 0;
  const char *precision = "auto", *weights = NULL;
  cnn_mode mode = CNN_MODE_TRAIN;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      help(stdout);
      return 0;
    } else if (!strcmp(argv[i], "--batch")) {
      if (!cli_int("--batch", i + 1 < argc ? argv[++i] : NULL, 1, 65536, &batch)) return 2;
    } else if (!strcmp(argv[i], "--infer")) {
      mode = CNN_MODE_INFER;
    } else if (!strcmp(argv[i], "--program")) {
      program = 1;
    } else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
      precision = argv[++i];
    } else if (!strcmp(argv[i], "--weights") && i + 1 < argc) {
      weights = argv[++i];
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "cnn summary: unknown option '%s'\n", argv[i]);
      help(stderr);
      return 2;
    } else if (!path) {
      path = argv[i];
    } else {
      fprintf(stderr, "cnn summary: one model at a time\n");
      return 2;
    }
  }
  if (!path) {
    help(stderr);
    return 2;
  }
  cnn_net *net;
  if (!(path = cli_model_cfg(path)) || cnn_net_from_cfg_file(path, &net) != CNN_OK)
    return cli_fail(NULL);
  cnn_darknet_info dn;
  if (weights && cnn_darknet_load(net, weights, &dn) != CNN_OK) { /* before printing anything */
    cnn_net_destroy(net);
    return cli_fail(NULL);
  }
  cnn_backend *b = NULL;
  cnn_plan_info plan;
  cnn_precision prec;
  int rc = 0;
  if (cnn_precision_parse(precision, &prec) != CNN_OK || cnn_backend_create("cpu", &b) != CNN_OK ||
      cnn_net_set_precision(net, b, prec) != CNN_OK || cnn_net_summary(net, batch, stdout) != CNN_OK ||
      cnn_net_plan_estimate(net, b, batch, mode, &plan) != CNN_OK)
    rc = cli_fail(NULL);
  else {
    printf("\nprecision %s\n", cnn_precision_name(cnn_net_precision(net)));
    cnn_plan_print(&plan, "cpu", stdout);
    if (weights)
      printf("\nweights %s: Darknet %d.%d.%d, %llu images seen, %zu values in %zu bytes: they fit "
             "%s\n", weights, dn.major, dn.minor, dn.revision, (unsigned long long)dn.seen,
             dn.values, dn.header_bytes + 4 * dn.values, path);
    if (program) { /* compiling needs a built net: build it on the cpu */
      printf("\n");
      if (cnn_net_build(net, b, batch, mode) != CNN_OK ||
          cnn_net_program_print(net, batch, mode, stdout) != CNN_OK)
        rc = cli_fail(NULL);
    }
  }
  cnn_backend_destroy(b);
  cnn_net_destroy(net);
  return rc;
}
