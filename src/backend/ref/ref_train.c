/* ref: softmax cross-entropy with label smoothing, and the SGD / Adam steps. */
#include <math.h>

#include "backend/ref/ref.h"

/* ---- softmax cross-entropy ---- */

cnn_status ref_check_xent(int n, int classes, const int32_t *labels, float smoothing,
                             const char *op) {
  if (n < 0 || classes < 1)
    return cnn_error(CNN_ERR_ARG, "ref %s: n=%d classes=%d", op, n, classes);
  if (!(smoothing >= 0.0f && smoothing <= 1.0f))
    return cnn_error(CNN_ERR_ARG, "ref %s: label smoothing %g is not in [0, 1]", op, smoothing);
  for (int i = 0; i < n; i++)
    if (labels[i] < 0 || labels[i] >= classes)
      return cnn_error(CNN_ERR_ARG, "ref %s: label %d of row %d is not in [0, %d)", op,
                       (int)labels[i], i, classes);
  return CNN_OK;
}

/* target t_j = (1 - eps) [j == label] + eps / classes */
double ref_xent_target(int j, int label, double smoothing, int classes) {
  return (j == label ? 1.0 - smoothing : 0.0) + smoothing / classes;
}

/* probs [n, classes] = softmax(logits [n, classes]); loss [n] = -sum_j t_j log p_j,
 * with log p_j = logit_j - logsumexp(logits) (max subtracted first) */
cnn_status ref_softmax_xent_fwd(void *ctx, int n, int classes, const float *logits,
                                const int32_t *labels, float smoothing, float *probs,
                                float *loss) {
  const char *op = "softmax_xent_fwd";
  REF_NEED(logits, op);
  REF_NEED(labels, op);
  REF_NEED(probs, op);
  REF_NEED(loss, op);
  CNN_TRY(ref_check_xent(n, classes, labels, smoothing, op));
  for (int i = 0; i < n; i++) {
    const float *z = logits + (size_t)i * classes;
    double zmax = z[0];
    for (int j = 1; j < classes; j++) zmax = fmax(zmax, z[j]);
    double sum = 0;
    for (int j = 0; j < classes; j++) sum += exp(z[j] - zmax);
    double lse = zmax + log(sum);
    double l = 0;
    for (int j = 0; j < classes; j++) {
      double logp = z[j] - lse;
      probs[(size_t)i * classes + j] = (float)exp(logp);
      l -= ref_xent_target(j, labels[i], smoothing, classes) * logp;
    }
    loss[i] = (float)l;
  }
  return CNN_OK;
}

/* dlogits += scale (probs - target) */
cnn_status ref_softmax_xent_bwd(void *ctx, int n, int classes, const float *probs,
                                const int32_t *labels, float smoothing, float scale,
                                float *dlogits) {
  const char *op = "softmax_xent_bwd";
  REF_NEED(probs, op);
  REF_NEED(labels, op);
  REF_NEED(dlogits, op);
  CNN_TRY(ref_check_xent(n, classes, labels, smoothing, op));
  for (int i = 0; i < n; i++)
    for (int j = 0; j < classes; j++) {
      size_t at = (size_t)i * classes + j;
      double g = scale * (probs[at] - ref_xent_target(j, labels[i], smoothing, classes));
      dlogits[at] = (float)(dlogits[at] + g);
    }
  return CNN_OK;
}

/* ---- optimizers: per element in double, stored as float ---- */

/* SGD, PyTorch semantics (no dampening):
 *   g = grad + wd p;  v = momentum v + g;  p -= lr (nesterov ? g + momentum v : v) */
cnn_status ref_sgd_step(void *ctx, size_t n, float *p, const float *g, float *v, float lr,
                        float momentum, float wd, int nesterov) {
  REF_NEED(p, "sgd_step");
  REF_NEED(g, "sgd_step");
  REF_NEED(v, "sgd_step");
  for (size_t i = 0; i < n; i++) {
    double grad = (double)g[i] + (double)wd * p[i];
    double vel = (double)momentum * v[i] + grad;
    double update = nesterov ? grad + (double)momentum * vel : vel;
    v[i] = (float)vel;
    p[i] = (float)(p[i] - (double)lr * update);
  }
  return CNN_OK;
}

/* Adam (decoupled == 0: wd p is added to the gradient, L2) or AdamW (decoupled:
 * p -= lr wd p before the Adam update). t is the 1-based step. */
cnn_status ref_adam_step(void *ctx, size_t n, float *p, const float *g, float *m, float *v,
                         float lr, float b1, float b2, float eps, float wd, int decoupled,
                         int64_t t) {
  REF_NEED(p, "adam_step");
  REF_NEED(g, "adam_step");
  REF_NEED(m, "adam_step");
  REF_NEED(v, "adam_step");
  if (t < 1) return cnn_error(CNN_ERR_ARG, "ref adam_step: step %lld is not >= 1", (long long)t);
  double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
  for (size_t i = 0; i < n; i++) {
    double param = p[i], grad = g[i];
    if (decoupled)
      param -= (double)lr * wd * param;
    else
      grad += (double)wd * param;
    double mom = (double)b1 * m[i] + (1.0 - b1) * grad;
    double var = (double)b2 * v[i] + (1.0 - b2) * grad * grad;
    double mhat = mom / bc1, vhat = var / bc2;
    m[i] = (float)mom;
    v[i] = (float)var;
    p[i] = (float)(param - (double)lr * mhat / (sqrt(vhat) + eps));
  }
  return CNN_OK;
}
