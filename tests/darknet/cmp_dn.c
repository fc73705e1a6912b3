/* Darknet's side: cmp_dn CFG WEIGHTS|- INPUT.bin [SAVE.weights]
 * '-': Darknet's own random init, batch norm statistics and scales randomised, saved
 * to SAVE.weights; prints the softmax output for the input (CHW floats). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "darknet.h"

static unsigned long long s = 1234567ull;
static float rnd(float lo, float hi) {
  s ^= s << 13; s ^= s >> 7; s ^= s << 17;
  return lo + (hi - lo) * (float)((s >> 11) * (1.0 / 9007199254740992.0));
}

int main(int argc, char **argv) {
  int own = !strcmp(argv[2], "-");
  network *net = load_network(argv[1], own ? 0 : argv[2], 0);
  set_batch_network(net, 1);
  if (own) {
    for (int i = 0; i < net->n; i++) {
      layer *l = &net->layers[i];
      int n = l->type == CONVOLUTIONAL ? l->n : l->type == CONNECTED ? l->outputs : l->type == BATCHNORM ? l->c : 0;
      if (l->type == CONVOLUTIONAL || l->type == CONNECTED)
        for (int k = 0; k < n; k++) l->biases[k] = rnd(-0.5f, 0.5f);
      if (l->batch_normalize || l->type == BATCHNORM)
        for (int k = 0; k < n; k++) {
          l->scales[k] = rnd(0.5f, 1.5f);
          l->rolling_mean[k] = rnd(-0.3f, 0.3f);
          l->rolling_variance[k] = rnd(0.05f, 2);
        }
    }
    save_weights(net, argv[4]);
  }
  /* pjreddie's [batchnorm] allocates its x and x_norm only for GPU builds, and its CPU
   * forward copies into x: give it them */
  for (int i = 0; i < net->n; i++)
    if (net->layers[i].type == BATCHNORM && !net->layers[i].x) {
      net->layers[i].x = calloc(net->layers[i].outputs * net->layers[i].batch, sizeof(float));
      net->layers[i].x_norm = calloc(net->layers[i].outputs * net->layers[i].batch, sizeof(float));
    }
  int n = net->h * net->w * net->c;
  float *x = malloc(n * sizeof *x);
  FILE *f = fopen(argv[3], "rb");
  if (fread(x, sizeof *x, n, f) != (size_t)n) return 1;
  fclose(f);
  float *p = network_predict(net, x);
  for (int k = 0; k < net->outputs; k++) printf("%.9g\n", p[k]);
  return 0;
}
