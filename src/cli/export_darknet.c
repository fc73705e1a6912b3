/* cnn export CKPT.safetensors OUT.weights: a checkpoint as Darknet's weights */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/exchange.h"
#include "cli/meta.h"
#include "exchange/darknet_weights.h"

static void help(FILE *f) {
  fprintf(f,
          "usage: cnn export CKPT.safetensors OUT.weights\n\n"
          "Writes the checkpoint's tensors as Darknet's binary weights, version 0.2.0,\n"
          "with the checkpoint's step x batch as the images seen (0 when unknown), for\n"
          "the checkpoint's cfg: Darknet reads them with that cfg (less cnn's own\n"
          "sections and keys, such as [train]). Convolution weights go to Darknet's\n"
          "[n][c][size][size] and the columns of connected layers to its CHW order.\n"
          "What Darknet's format cannot hold is refused naming the layer: bias=0 without\n"
          "batch_normalize, bias=1 with it, non-square kernels, a [batchnorm] whose beta\n"
          "is not zero. Darknet feeds a model pixels in [0, 1] and its batch norm divides\n"
          "by sqrt(var) + 1e-6: a note says when the checkpoint's input normalisation or\n"
          "bn_eps differ from that. OUT appears whole or not at all.\n");
}

/* what Darknet computes differently from this checkpoint, as notes on stderr */
static void notes(const cli_meta *m, cnn_net *net) {
  for (int c = 0; c < m->channels && c < 4; c++)
    if (m->mean[c] != 0 || m->std[c] != 1) {
      /* the format has no place for it: say how to get it back */
      char mean[128] = "", std[128] = "";
      for (int k = 0; k < m->channels && k < 4; k++) {
        snprintf(mean + strlen(mean), sizeof mean - strlen(mean), "%s%.9g", k ? "," : "", m->mean[k]);
        snprintf(std + strlen(std), sizeof std - strlen(std), "%s%.9g", k ? "," : "", m->std[k]);
      }
      fprintf(stderr, "cnn export: note: the model takes pixels normalised with mean %s and std "
              "%s; Darknet's weights cannot hold that and Darknet feeds pixels in [0, 1] (cnn "
              "import MODEL.cfg WEIGHTS --mean %s --std %s restores it)\n", mean, std, mean, std);
      break;
    }
  cnn_net_info info;
  cnn_train_config tc;
  if (cnn_net_info_get(net, &info) == CNN_OK && info.num_state > 0 &&
      cnn_net_train_config(net, &tc) == CNN_OK && tc.bn_eps != CNN_DARKNET_BN_EPS)
    fprintf(stderr, "cnn export: note: the model's batch norm divides by sqrt(var + %g), "
            "Darknet's by sqrt(var) + 1e-6: outputs differ slightly where variances are small\n",
            (double)tc.bn_eps);
}

int cli_export_darknet(int argc, char **argv) {
  const char *ckpt = NULL, *out = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      help(stdout);
      return 0;
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "cnn export: unknown option '%s' for .weights\n", argv[i]);
      help(stderr);
      return 2;
    } else if (!ckpt) {
      ckpt = argv[i];
    } else if (!out) {
      out = argv[i];
    } else {
      fprintf(stderr, "cnn export: unexpected argument '%s'\n", argv[i]);
      return 2;
    }
  }
  cli_meta m;
  memset(&m, 0, sizeof m);
  cnn_net *net = NULL;
  cnn_status st = cli_meta_read(ckpt, &m);
  if (st == CNN_OK) st = cnn_net_from_cfg_text(m.cfg, ckpt, &net);
  if (st == CNN_OK) st = cnn_net_load(net, ckpt);
  uint64_t seen = m.step > 0 && m.batch > 0 ? (uint64_t)m.step * (uint64_t)m.batch : 0;
  if (st == CNN_OK) st = cnn_darknet_save(net, out, seen);
  if (st == CNN_OK) {
    size_t bytes = 0;
    cnn_darknet_payload_bytes(net, &bytes);
    fprintf(stderr, "cnn export: wrote %s (Darknet weights 0.2.0, %zu values, %llu images seen)\n",
            out, bytes / 4, (unsigned long long)seen);
    notes(&m, net);
  }
  cnn_net_destroy(net);
  cli_meta_free(&m);
  return st == CNN_OK ? 0 : cli_fail("export");
}
