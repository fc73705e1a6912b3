#define _POSIX_C_SOURCE 200809L /* open_memstream */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cuda/cuda_module.h"
#include "cnn/cnn.h"
#include "core/rng.h"

int tu_failures = 0;
int tu_checks = 0;

void tu_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed) {
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * cnn_rng_uniform(seed, i);
}

void tu_poison(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = NAN;
}

double tu_max_rel_err(const float *a, const float *b, size_t n, size_t *where) {
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    double x = a[i], y = b[i];
    double e;
    if (isnan(x) || isnan(y) || isinf(x) || isinf(y)) {
      e = INFINITY;
    } else {
      double s = fmax(fmax(fabs(x), fabs(y)), 1.0);
      e = fabs(x - y) / s;
    }
    if (e > worst || (i == 0 && e == INFINITY)) {
      worst = e;
      at = i;
    }
  }
  if (where) *where = at;
  return worst;
}

int tu_check_close(const char *what, const float *got, const float *want, size_t n,
                   double tol) {
  size_t at = 0;
  double e = tu_max_rel_err(got, want, n, &at);
  tu_checks++;
  if (!(e <= tol)) {
    tu_failures++;
    fprintf(stderr, "FAIL %s: max scaled error %.3g > %.3g at [%zu]: got %.9g want %.9g\n",
            what, e, tol, at, n ? got[at] : 0.0f, n ? want[at] : 0.0f);
    return 0;
  }
  return 1;
}

void tu_bn_stats(const float *x, size_t rows, int c, double eps, float *mean, float *var,
                 float *invstd) {
  for (int j = 0; j < c; j++) {
    double s = 0, ss = 0;
    for (size_t r = 0; r < rows; r++) s += x[r * c + j];
    double mu = s / (double)rows;
    for (size_t r = 0; r < rows; r++) ss += (x[r * c + j] - mu) * (x[r * c + j] - mu);
    double v = ss / (double)rows;
    if (mean) mean[j] = (float)mu;
    if (var) var[j] = (float)v;
    if (invstd) invstd[j] = (float)(1 / sqrt(v + eps));
  }
}

void tu_bn_off_kink(float *x, size_t rows, int c, const float *gamma, const float *beta,
                    double eps, double margin) {
  float *mean = malloc(c * sizeof(float)), *invstd = malloc(c * sizeof(float));
  if (!mean || !invstd) {
    fprintf(stderr, "tu_bn_off_kink: out of memory\n");
    exit(1);
  }
  tu_bn_stats(x, rows, c, eps, mean, NULL, invstd);
  for (size_t r = 0; r < rows; r++)
    for (int j = 0; j < c; j++) {
      double scale = (double)gamma[j] * invstd[j];
      double z = scale * (x[r * c + j] - mean[j]) + beta[j];
      double to = z < 0 ? -margin : margin;
      if (fabs(z) < margin) x[r * c + j] = (float)(mean[j] + (to - beta[j]) / scale);
    }
  free(mean);
  free(invstd);
}

int tu_finish(const char *name) {
  printf("%s: %d checks\n", name, tu_checks);
  if (tu_checks == 0) { /* a test that checked nothing has not passed */
    printf("FAIL %s: no check ran\n", name);
    tu_failures = 1;
  }
  printf("%d passed, %d failed\n", tu_checks - tu_failures, tu_failures);
  return tu_failures ? 1 : 0;
}

void tu_skip(const char *why) {
  printf("SKIP: %s\n", why);
  exit(77);
}

const char *tu_source_path(const char *rel, char *buf, size_t n) {
  const char *root = getenv("CNN_SOURCE_DIR");
  if (!root) root = ".";
  snprintf(buf, n, "%s/%s", root, rel);
  return buf;
}

void tu_need_cuda(void) {
  const char *why, *where = NULL;
  if (!cnn_have_cuda()) tu_skip("this build of cnn has no CUDA backend");
  if (cnn_cuda_device_count() > 0) return;
  why = cnn_last_error();
  if (!cnn_cuda_module_loaded(&where) && access("/dev/nvidiactl", F_OK) == 0) {
    fprintf(stderr, "FAIL: this machine has an NVIDIA driver but the CUDA module did not load: %s\n",
            where);
    exit(1);
  }
  tu_skip(why);
}

char *tu_program_text(cnn_net *net, int batch, int mode) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return NULL;
  CHECK_OK(cnn_net_program_print(net, batch, (cnn_mode)mode, f));
  fclose(f);
  return buf;
}

int tu_count(const char *text, const char *what) {
  int n = 0;
  for (const char *p = text; p && (p = strstr(p, what)); p++) n++;
  return n;
}

float *tu_net_snapshot(cnn_net *net, size_t *count) {
  size_t total = 0;
  int nt = cnn_net_num_tensors(net);
  for (int i = 0; i < nt; i++) {
    cnn_param_desc d;
    CHECK_OK(cnn_net_tensor_desc(net, i, &d));
    total += d.count;
  }
  float *all = malloc(total * sizeof *all), *p = all;
  for (int i = 0; i < nt; i++) {
    cnn_param_desc d;
    CHECK_OK(cnn_net_tensor_desc(net, i, &d));
    CHECK_OK(cnn_net_tensor_get(net, i, p));
    p += d.count;
  }
  *count = total;
  return all;
}
