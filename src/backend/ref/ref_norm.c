/* ref: batch normalisation over channels. x is [rows = n*h*w, c]; every statistic
 * is per channel, summed in double. */
#include <math.h>

#include "backend/ref/ref.h"

static cnn_status check_bn(size_t rows, int c, const char *op) {
  if (c < 1) return cnn_error(CNN_ERR_ARG, "ref %s: %d channels", op, c);
  if (rows < 1) return cnn_error(CNN_ERR_ARG, "ref %s: batch statistics of 0 rows", op);
  return CNN_OK;
}

/* mean and biased variance (divide by rows) of channel ch, two-pass */
static void channel_stats(size_t rows, int c, const float *x, int ch, double *mean,
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
  CNN_TRY(check_bn(rows, c, op));
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
    channel_stats(rows, c, x, ch, &mean, &var);
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

/* The batch-statistics gradient, with xhat = (x - mean) invstd:
 *   dbeta  = sum_i dy_i
 *   dgamma = sum_i dy_i xhat_i
 *   dx_i  += gamma invstd / rows * (rows dy_i - dbeta - xhat_i dgamma)
 * dgamma and dbeta are overwritten; dx is accumulated into. */
cnn_status ref_bn_bwd(void *ctx, size_t rows, int c, const float *x, const float *dy,
                      const float *gamma, const float *save_mean, const float *save_invstd,
                      float *dx, float *dgamma, float *dbeta) {
  const char *op = "bn_bwd";
  CNN_TRY(check_bn(rows, c, op));
  REF_NEED(x, op);
  REF_NEED(dy, op);
  REF_NEED(gamma, op);
  REF_NEED(save_mean, op);
  REF_NEED(save_invstd, op);
  REF_NEED(dx, op);
  REF_NEED(dgamma, op);
  REF_NEED(dbeta, op);
  for (int ch = 0; ch < c; ch++) {
    double mean = save_mean[ch], invstd = save_invstd[ch];
    double sum_dy = 0, sum_dy_xhat = 0;
    for (size_t i = 0; i < rows; i++) {
      double xhat = (x[i * c + ch] - mean) * invstd;
      sum_dy += dy[i * c + ch];
      sum_dy_xhat += dy[i * c + ch] * xhat;
    }
    double scale = gamma[ch] * invstd / (double)rows;
    for (size_t i = 0; i < rows; i++) {
      double xhat = (x[i * c + ch] - mean) * invstd;
      double g = scale * ((double)rows * dy[i * c + ch] - sum_dy - xhat * sum_dy_xhat);
      dx[i * c + ch] = (float)(dx[i * c + ch] + g);
    }
    dgamma[ch] = (float)sum_dy_xhat;
    dbeta[ch] = (float)sum_dy;
  }
  return CNN_OK;
}
