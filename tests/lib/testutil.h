/* Small test harness shared by the ctest programs: checks that count and report,
 * seeded random data, closeness with stated tolerances. */
#ifndef CNN_TESTUTIL_H
#define CNN_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int tu_failures;
extern int tu_checks;

#define CHECK(cond, ...)                                              \
  do {                                                                \
    tu_checks++;                                                      \
    if (!(cond)) {                                                    \
      tu_failures++;                                                  \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                   \
      fprintf(stderr, "\n");                                          \
    }                                                                 \
  } while (0)

/* a status call that must succeed; prints cnn_last_error() if not */
#define CHECK_OK(expr)                                                              \
  do {                                                                              \
    cnn_status tu_s_ = (expr);                                                      \
    tu_checks++;                                                                    \
    if (tu_s_ != CNN_OK) {                                                          \
      tu_failures++;                                                                \
      fprintf(stderr, "FAIL %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr,      \
              cnn_status_name(tu_s_), cnn_last_error());                            \
    }                                                                               \
  } while (0)

/* fill with uniform values in [lo, hi) from a seeded counter RNG */
void tu_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed);
/* NaN poison so unwritten outputs are caught */
void tu_poison(float *x, size_t n);
/* max over i of |a-b| / max(|a|, |b|, 1); NaN in either gives +inf */
double tu_max_rel_err(const float *a, const float *b, size_t n, size_t *where);
/* CHECK that two arrays agree within tol (the scaled error above) */
int tu_check_close(const char *what, const float *got, const float *want, size_t n, double tol);
/* per-channel batch statistics of x [rows, c] in double, stored as f32: mean,
 * biased variance and invstd = 1/sqrt(var + eps) (any of the three may be NULL) */
void tu_bn_stats(const float *x, size_t rows, int c, double eps, float *mean, float *var,
                 float *invstd);
/* Move every x whose BN output z = gamma (x - mean) invstd + beta lies within
 * `margin` of 0 out to |z| = margin (then the batch statistics are those of the
 * moved x, shifted by O(margin / rows)), so a ReLU/leaky derivative taken from an
 * f32 z cannot flip between backends or between fused and unfused chains. */
void tu_bn_off_kink(float *x, size_t rows, int c, const float *gamma, const float *beta,
                    double eps, double margin);
/* every tensor of a net (parameters and running statistics) in tensor order, in one
 * malloc'd array of *count floats */
struct cnn_net;
float *tu_net_snapshot(struct cnn_net *net, size_t *count);
/* the net's program for `batch` images in mode (a cnn_mode), as cnn summary --program
 * prints it, in a malloc'd string */
char *tu_program_text(struct cnn_net *net, int batch, int mode);
/* how many times `what` occurs in text */
int tu_count(const char *text, const char *what);
/* print "N passed, N failed" and return the exit code */
int tu_finish(const char *name);
/* exit 77 (ctest SKIP) with a reason */
void tu_skip(const char *why);
/* For the GPU tests: return if a CUDA device is usable; else skip (77) with the
 * reason, except that a machine with an NVIDIA driver (/dev/nvidiactl) where the
 * CUDA module libcnn_cuda.so does not load fails (exit 1): a broken module must not
 * pass as "no GPU". */
void tu_need_cuda(void);
/* path of a file under the source tree ($CNN_SOURCE_DIR or the compile-time one) */
const char *tu_source_path(const char *rel, char *buf, size_t n);

#endif
