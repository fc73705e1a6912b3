/* cnn's side of tests/darknet/compare.sh:
 *   cmp_cnn make CFG OUT.weights INPUT.bin : random tensors saved as Darknet weights,
 *                                            a random input (CHW floats), cnn's probabilities
 *   cmp_cnn run CFG IN.weights INPUT.bin   : cnn's probabilities with those weights */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cnn/cnn.h"
#include "exchange/darknet_weights.h"

static unsigned long long s = 88172645463325252ull;
static float rnd(float lo, float hi) {
  s ^= s << 13; s ^= s >> 7; s ^= s << 17;
  return lo + (hi - lo) * (float)((s >> 11) * (1.0 / 9007199254740992.0));
}
#define OK(x) do { if ((x) != CNN_OK) { fprintf(stderr, "%s: %s\n", #x, cnn_last_error()); return 1; } } while (0)

int main(int argc, char **argv) {
  if (argc != 5) return 2;
  int make = !strcmp(argv[1], "make");
  FILE *f = fopen(argv[2], "rb");
  static char text[1 << 16];
  text[fread(text, 1, sizeof text - 1, f)] = 0;
  fclose(f);
  char *dn;
  cnn_net *net;
  OK(cnn_darknet_cfg_text(text, argv[2], &dn));
  OK(cnn_net_from_cfg_text(dn, argv[2], &net));
  cnn_net_info info;
  OK(cnn_net_info_get(net, &info));
  int h = info.height, w = info.width, c = info.channels, n = h * w * c;
  float *chw = malloc(n * sizeof *chw), *hwc = malloc(n * sizeof *hwc), probs[64];
  if (make) {
    for (int i = 0; i < cnn_net_num_tensors(net); i++) {
      cnn_param_desc d;
      OK(cnn_net_tensor_desc(net, i, &d));
      float *t = malloc(d.count * sizeof *t);
      int var = strstr(d.name, "running_var") != NULL, zero = !strcmp(d.name, "bn1.bias");
      for (size_t j = 0; j < d.count; j++) t[j] = zero ? 0 : var ? rnd(0.05f, 2) : rnd(-0.8f, 0.8f);
      OK(cnn_net_tensor_set(net, i, t));
      free(t);
    }
    OK(cnn_darknet_save(net, argv[3], 0));
    for (int i = 0; i < n; i++) chw[i] = rnd(0, 1);
    f = fopen(argv[4], "wb");
    fwrite(chw, sizeof *chw, n, f);
    fclose(f);
  } else {
    OK(cnn_darknet_load(net, argv[3], NULL));
    f = fopen(argv[4], "rb");
    if (fread(chw, sizeof *chw, n, f) != (size_t)n) return 1;
    fclose(f);
  }
  for (int ch = 0; ch < c; ch++)
    for (int i = 0; i < h * w; i++) hwc[i * c + ch] = chw[ch * h * w + i];
  cnn_backend *b;
  OK(cnn_backend_create("cpu", &b));
  OK(cnn_net_build(net, b, 1, CNN_MODE_INFER));
  OK(cnn_net_predict(net, hwc, NULL, 1, probs, NULL));
  for (int k = 0; k < info.classes; k++) printf("%.9g\n", probs[k]);
  return 0;
}
