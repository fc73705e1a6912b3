/* ref: batch normalisation over channels. x is [rows = n*h*w, c]; every statistic
 * is per channel, summed in double. */
#include <math.h>

#include "backend/ref/ref.h"

cnn_status ref_check_bn(size_t rows, int c, const char *op) {
  if (c < 1) return cnn_error(CNN_ERR_ARG, "ref %s: %d channels", op, c);
  if (rows < 1) return cnn_error(CNN_ERR_ARG, "ref %s: batch statistics of 0 rows", op);
  return CNN_OK;
}

/* mean and biased variance (divide by rows) of channel ch, two-pass */
void ref_bn_channel_stats(size_t rows, int c, const float *x, int ch, double *mean,
                          double *var) {
  double sum = 0;
  for (size_t i = 0; i < rows; i++) sum += x[i * c + ch];
  double mu = sum / (double)rows;
  double sq = 0;
  for (size_t i = 0; i < rows; i++) {
    double dev = x[i * c + ch] - mu;
    sq += dev * dev;
  }
  *mean = mu;
  *var = sq / (double)rows;
}

/* Training: normalise with the batch mean / biased variance; save mean and
 * invstd for backward; move the running stats towards the batch mean and the
 * unbiased variance (rows/(rows-1); a single row has no unbiased estimate, so its
 * biased variance, 0, is used). x may equal y: a channel's statistics are
 * complete before that channel is written. */
cnn_status ref_bn_fwd_train(void *ctx, size_t rows, int c, const float *x, const float *gamma,
                            const float *beta, float eps, float momentum, float *running_mean,
                            float *running_var, float *save_mean, float *save_invstd,
                            float *y) {
  const char *op = "bn_fwd_train";
  CNN_TRY(ref_check_bn(rows, c, op));
  REF_NEED(x, op);
  REF_NEED(gamma, op);
  REF_NEED(beta, op);
  REF_NEED(running_mean, op);
  REF_NEED(running_var, op);
  REF_NEED(save_mean, op);
  REF_NEED(save_invstd, op);
  REF_NEED(y, op);
  for (int ch = 0; ch < c; ch++) {
    double mean, var;
    ref_bn_channel_stats(rows, c, x, ch, &mean, &var);
    double invstd = 1.0 / sqrt(var + eps);
    for (size_t i = 0; i < rows; i++)
      y[i * c + ch] = (float)(gamma[ch] * (x[i * c + ch] - mean) * invstd + beta[ch]);
    double unbiased = rows > 1 ? var * (double)rows / (double)(rows - 1) : var;
    running_mean[ch] = (float)((1.0 - momentum) * running_mean[ch] + momentum * mean);
    running_var[ch] = (float)((1.0 - momentum) * running_var[ch] + momentum * unbiased);
    save_mean[ch] = (float)mean;
    save_invstd[ch] = (float)invstd;
  }
  return CNN_OK;
}

/* Inference: y = gamma (x - running_mean) / sqrt(running_var + eps) + beta */
cnn_status ref_bn_fwd_infer(void *ctx, size_t rows, int c, const float *x, const float *gamma,
                            const float *beta, const float *running_mean,
                            const float *running_var, float eps, float *y) {
  const char *op = "bn_fwd_infer";
  if (c < 1) return cnn_error(CNN_ERR_ARG, "ref %s: %d channels", op, c);
  REF_NEED(x, op);
  REF_NEED(gamma, op);
  REF_NEED(beta, op);
  REF_NEED(running_mean, op);
  REF_NEED(running_var, op);
  REF_NEED(y, op);
  for (int ch = 0; ch < c; ch++) {
    double invstd = 1.0 / sqrt((double)running_var[ch] + eps);
    for (size_t i = 0; i < rows; i++)
      y[i * c + ch] =
          (float)(gamma[ch] * ((double)x[i * c + ch] - running_mean[ch]) * invstd + beta[ch]);
  }
  return CNN_OK;
}

/* The gradient g_i reaching the BN output of row i, channel ch: dy_i, or with an
 * activation after BN, dy_i act'(z_i) with z_i = gamma (x_i - mean) invstd + beta
 * recomputed in double. LINEAR gives exactly dy_i (beta is not read). */
static double bn_out_grad(size_t i, int c, int ch, const float *x, const float *dy, double gamma,
                          double beta, double mean, double invstd, cnn_act act, double alpha) {
  if (act == CNN_ACT_LINEAR) return dy[i * c + ch];
  double z = gamma * (x[i * c + ch] - mean) * invstd + beta;
  return dy[i * c + ch] * ref_act_derivative(act, alpha, z);
}

/* The batch-statistics gradient of channel ch, with xhat = (x - mean) invstd and g
 * the gradient at the BN output (bn_out_grad):
 *   dbeta  = sum_i g_i
 *   dgamma = sum_i g_i xhat_i
 *   dx_i  += gamma invstd / rows * (rows g_i - dbeta - xhat_i dgamma)
 * dgamma and dbeta are overwritten; dx is accumulated into. Shared by bn_bwd
 * (act LINEAR) and bn_act_bwd. */
void ref_bn_bwd_channel(size_t rows, int c, int ch, const float *x, const float *dy,
                        double gamma, double beta, double mean, double invstd, cnn_act act,
                        double alpha, float *dx, float *dgamma, float *dbeta) {
  double sum_dy = 0, sum_dy_xhat = 0;
  for (size_t i = 0; i < rows; i++) {
    double xhat = (x[i * c + ch] - mean) * invstd;
    double g = bn_out_grad(i, c, ch, x, dy, gamma, beta, mean, invstd, act, alpha);
    sum_dy += g;
    sum_dy_xhat += g * xhat;
  }
  double scale = gamma * invstd / (double)rows;
  for (size_t i = 0; i < rows; i++) {
    double xhat = (x[i * c + ch] - mean) * invstd;
    double g = bn_out_grad(i, c, ch, x, dy, gamma, beta, mean, invstd, act, alpha);
    double gx = scale * ((double)rows * g - sum_dy - xhat * sum_dy_xhat);
    dx[i * c + ch] = (float)(dx[i * c + ch] + gx);
  }
  dgamma[ch] = (float)sum_dy_xhat;
  dbeta[ch] = (float)sum_dy;
}

cnn_status ref_bn_bwd(void *ctx, size_t rows, int c, const float *x, const float *dy,
                      const float *gamma, const float *save_mean, const float *save_invstd,
                      float *dx, float *dgamma, float *dbeta) {
  const char *op = "bn_bwd";
  CNN_TRY(ref_check_bn(rows, c, op));
  REF_NEED(x, op);
  REF_NEED(dy, op);
  REF_NEED(gamma, op);
  REF_NEED(save_mean, op);
  REF_NEED(save_invstd, op);
  REF_NEED(dx, op);
  REF_NEED(dgamma, op);
  REF_NEED(dbeta, op);
  for (int ch = 0; ch < c; ch++)
    ref_bn_bwd_channel(rows, c, ch, x, dy, gamma[ch], 0.0, save_mean[ch], save_invstd[ch],
                       CNN_ACT_LINEAR, 0.0, dx, dgamma, dbeta);
  return CNN_OK;
}
