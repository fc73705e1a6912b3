/* cnn import MODEL.cfg MODEL.weights --out DIR: a Darknet model as a checkpoint */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/evaluate.h"
#include "cli/exchange.h"
#include "exchange/darknet_weights.h"

static void help(FILE *f) {
  fprintf(f,
          "usage: cnn import MODEL.cfg MODEL.weights --out DIR [options]\n\n"
          "Reads Darknet's binary weights for the layers of MODEL.cfg and writes\n"
          "DIR/model.cfg and DIR/model.safetensors. Every header version Darknet reads is\n"
          "read (0.1 with a 4-byte images-seen counter, 0.2 with 8 bytes, connected\n"
          "weights transposed above version 1000). Convolution weights are converted to\n"
          "cnn's KRSC layout and the columns of connected layers to its HWC order. A file\n"
          "shorter or longer than the cfg needs is refused naming the layer where it runs\n"
          "out, or the bytes left over; so are NaN, infinities and negative variances.\n"
          "The model takes pixels scaled to [0, 1], as Darknet does. model.cfg is MODEL.cfg\n"
          "with a [train] section setting bn_eps=1e-12 (unless it sets bn_eps), with which\n"
          "cnn's batch norm computes what Darknet's does (it divides by sqrt(var) + 1e-6).\n\n"
          "options:\n%s",
          cli_import_flags_help);
}

int cli_import_darknet(int argc, char **argv) {
  cli_import_opts o;
  memset(&o, 0, sizeof o);
  const char *cfg = NULL, *weights = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      help(stdout);
      return 0;
    }
    int r = cli_import_flag(argc, argv, &i, &o);
    if (r < 0) return 2;
    if (r) continue;
    if (argv[i][0] == '-') {
      fprintf(stderr, "cnn import: unknown option '%s'\n", argv[i]);
      help(stderr);
      return 2;
    }
    if (!cfg) cfg = argv[i];
    else if (!weights) weights = argv[i];
    else {
      fprintf(stderr, "cnn import: unexpected argument '%s'\n", argv[i]);
      return 2;
    }
  }
  if (!weights) {
    fprintf(stderr, "cnn import: %s needs its weights: cnn import MODEL.cfg MODEL.weights "
                    "--out DIR\n", cfg);
    return 2;
  }
  if (!o.out) {
    fprintf(stderr, "cnn import: --out DIR is required\n");
    return 2;
  }
  if (!(cfg = cli_model_cfg(cfg))) return cli_fail("import");
  char *text = cli_read_text(cfg), *dn_text = NULL;
  cnn_net *net = NULL;
  cnn_darknet_info info;
  cnn_status st = text ? cnn_darknet_cfg_text(text, cfg, &dn_text) : CNN_ERR_IO;
  if (st == CNN_OK) st = cnn_net_from_cfg_text(dn_text, cfg, &net);
  if (st == CNN_OK) st = cnn_darknet_load(net, weights, &info);
  if (st == CNN_OK)
    fprintf(stderr, "cnn import: %s: Darknet weights version %d.%d.%d, %llu images seen, %zu "
            "values\n", weights, info.major, info.minor, info.revision,
            (unsigned long long)info.seen, info.values);
  if (st == CNN_OK) st = cli_import_write(net, &o, weights);
  cnn_net_destroy(net);
  free(dn_text);
  free(text);
  return st == CNN_OK ? 0 : cli_fail("import");
}
