/* The shipped models (the cfgs in models/): each parses with the parameter count of its
 * reference implementation (torchvision's resnet50 and mobilenet_v2, the Fashion-MNIST
 * models as documented in their cfgs), its input and output shapes; the ImageNet
 * models build on the cpu backend at batch 1 and run one forward of a 224x224 image
 * to finite probabilities summing to 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cnn/cnn.h"
#include "testutil.h"

typedef struct model_case {
  const char *path;
  size_t params;              /* trainable: conv/dense weights and biases, BN gamma/beta */
  size_t state;               /* BN running mean and variance */
  int h, w, c, classes;
  double gflop_lo, gflop_hi;  /* forward FLOPs per image, a range around the reference */
  int forward;                /* run a batch-1 forward on the cpu backend */
} model_case;

static const model_case cases[] = {
    /* torchvision resnet50: 25,557,032 parameters, 4.09 GMAC (8.2 GFLOP, plus BN/ReLU) */
    {"models/resnet50.cfg", 25557032, 53120, 224, 224, 3, 1000, 8.1, 8.4, 1},
    /* torchvision mobilenet_v2: 3,504,872 parameters, 0.30 GMAC */
    {"models/mobilenet_v2.cfg", 3504872, 34112, 224, 224, 3, 1000, 0.60, 0.66, 1},
    {"models/resnet9.cfg", 6571978, 4480, 28, 28, 1, 10, 0.61, 0.62, 0},
    {"models/lenet.cfg", 3274634, 0, 28, 28, 1, 10, 0, 1e9, 0},
    {"models/fashion.cfg", 53362, 336, 28, 28, 1, 10, 0, 1e9, 0},
};

static void forward_once(const char *what, cnn_net *net, const cnn_net_info *info) {
  cnn_backend *be = NULL;
  CHECK_OK(cnn_backend_create("cpu", &be));
  if (!be) return;
  cnn_status st = cnn_net_build(net, be, 1, CNN_MODE_INFER);
  CHECK(st == CNN_OK, "%s: build at batch 1: %s", what, cnn_last_error());
  if (st == CNN_OK) {
    size_t nx = (size_t)info->height * info->width * info->channels;
    float *x = malloc(nx * sizeof *x), *p = malloc((size_t)info->classes * sizeof *p);
    tu_fill_uniform(x, nx, -1.0f, 1.0f, 7);
    tu_poison(p, (size_t)info->classes);
    st = cnn_net_predict(net, x, NULL, 1, p, NULL);
    CHECK(st == CNN_OK, "%s: forward: %s", what, cnn_last_error());
    if (st == CNN_OK) {
      double sum = 0;
      int finite = 1;
      for (int i = 0; i < info->classes; i++) {
        finite &= isfinite(p[i]) && p[i] >= 0;
        sum += p[i];
      }
      CHECK(finite, "%s: the probabilities are finite and non-negative", what);
      CHECK(fabs(sum - 1) < 1e-4, "%s: the probabilities sum to %.6f", what, sum);
      printf("%-26s forward of one %dx%dx%d image: %d probabilities, sum %.6f\n", what,
             info->height, info->width, info->channels, info->classes, sum);
    }
    free(x);
    free(p);
  }
  cnn_net_destroy(net); /* before its backend */
  cnn_backend_destroy(be);
}

int main(void) {
  char path[1024];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const model_case *m = &cases[i];
    cnn_net *net = NULL;
    cnn_status st = cnn_net_from_cfg_file(tu_source_path(m->path, path, sizeof path), &net);
    CHECK(st == CNN_OK, "%s loads: %s", m->path, cnn_last_error());
    if (st != CNN_OK) continue;
    cnn_net_info info;
    CHECK_OK(cnn_net_info_get(net, &info));
    CHECK(info.num_params == m->params, "%s: %zu parameters, expected %zu", m->path,
          info.num_params, m->params);
    CHECK(info.num_state == m->state, "%s: %zu batch-norm statistics, expected %zu", m->path,
          info.num_state, m->state);
    CHECK(info.height == m->h && info.width == m->w && info.channels == m->c,
          "%s: input %dx%dx%d, expected %dx%dx%d", m->path, info.height, info.width,
          info.channels, m->h, m->w, m->c);
    CHECK(info.classes == m->classes, "%s: output [%d], expected [%d]", m->path, info.classes,
          m->classes);
    double gflop = info.flops_per_image / 1e9;
    CHECK(gflop >= m->gflop_lo && gflop <= m->gflop_hi,
          "%s: %.3f GFLOP per image, expected %.2f..%.2f", m->path, gflop, m->gflop_lo,
          m->gflop_hi);
    printf("%-26s %zu params, %zu BN statistics, input %dx%dx%d, output [%d], %.3f GFLOP/image\n",
           m->path, info.num_params, info.num_state, info.height, info.width, info.channels,
           info.classes, gflop);
    if (m->forward)
      forward_once(m->path, net, &info);
    else
      cnn_net_destroy(net);
  }
  return tu_finish("test_model_zoo");
}
