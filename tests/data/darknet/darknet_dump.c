/* Prints the layer table Darknet itself builds for a cfg, one tab-separated line
 * per section: index, Darknet's layer type, out w h c, outputs, and for conv layers
 * the FLOPs by Darknet's own expression (convolutional_layer.c, the number it
 * prints as BFLOPs). Not part of the build: compiled against pjreddie/darknet's
 * libdarknet.a by regen.sh (see README.md), which writes expected.tsv.
 *   usage: darknet_dump NAME CFG */
#include <stdio.h>

#include "darknet.h"

static const char *type_name(LAYER_TYPE t) {
  switch (t) {
    case CONVOLUTIONAL: return "convolutional";
    case CONNECTED: return "connected";
    case MAXPOOL: return "maxpool";
    case SOFTMAX: return "softmax";
    case DROPOUT: return "dropout";
    case CROP: return "crop";
    case ROUTE: return "route";
    case COST: return "cost";
    case AVGPOOL: return "avgpool";
    case SHORTCUT: return "shortcut";
    case BATCHNORM: return "batchnorm";
    case REORG: return "reorg";
    default: return "other";
  }
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s NAME CFG\n", argv[0]);
    return 2;
  }
  network *net = parse_network_cfg(argv[2]);
  for (int i = 0; i < net->n; i++) {
    layer l = net->layers[i];
    double flops = 0;
    if (l.type == CONVOLUTIONAL) /* Darknet's expression, as it prints it (x 1e-9) */
      flops = 2.0 * l.n * l.size * l.size * l.c / l.groups * l.out_h * l.out_w;
    printf("%s\t%d\t%s\t%d\t%d\t%d\t%d\t%.0f\n", argv[1], i, type_name(l.type), l.out_w, l.out_h,
           l.out_c, l.outputs, flops);
  }
  return 0;
}
