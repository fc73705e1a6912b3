/* Parameter initialisation on the host from the counter RNG: tensor t, element i
 * draws from counter (t << 40) + i, so values do not depend on build order,
 * backend or thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/net.h"
#include "core/rng.h"

static void init_tensor(const cnn_train_config *tc, const cnn_tensor_entry *t, int ti, float *dst,
                        uint64_t seed) {
  uint64_t base = (uint64_t)ti << 40;
  switch (t->init) {
    case CNN_INIT_ZERO:
      memset(dst, 0, t->count * sizeof *dst);
      return;
    case CNN_INIT_ONE:
      for (size_t i = 0; i < t->count; i++) dst[i] = 1.0f;
      return;
    case CNN_INIT_WEIGHT:
      break;
  }
  if (tc->init == 1) { /* Xavier (Glorot) uniform */
    double bound = sqrt(6.0 / (double)(t->fan_in + t->fan_out));
    for (size_t i = 0; i < t->count; i++)
      dst[i] = (float)((2.0 * cnn_rng_uniform_d(seed, base + i) - 1.0) * bound);
    return;
  }
  /* Kaiming (He) normal for ReLU-family nets, Box-Muller from two uniforms */
  double std = sqrt(2.0 / (double)t->fan_in);
  for (size_t i = 0; i < t->count; i++) {
    double u1 = 1.0 - cnn_rng_uniform_d(seed, base + 2 * i); /* (0, 1] */
    double u2 = cnn_rng_uniform_d(seed, base + 2 * i + 1);
    dst[i] = (float)(std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
  }
}

cnn_status cnn_net_init_host(cnn_net *net, uint64_t seed) {
  if (!net->host_params) net->host_params = malloc((net->n_params ? net->n_params : 1) * sizeof(float));
  if (!net->host_state) net->host_state = malloc((net->n_state ? net->n_state : 1) * sizeof(float));
  if (!net->host_params || !net->host_state)
    return cnn_error(CNN_ERR_NOMEM, "out of memory for %zu parameters", net->n_params);
  for (int i = 0; i < net->n_tensors; i++) {
    const cnn_tensor_entry *t = &net->tensors[i];
    init_tensor(&net->tc, t, i, (t->trainable ? net->host_params : net->host_state) + t->offset,
                seed);
  }
  net->params_initialised = 1;
  return CNN_OK;
}

cnn_status cnn_net_init_params(cnn_net *net, uint64_t seed) {
  if (!net) return cnn_error(CNN_ERR_ARG, "cnn_net_init_params: NULL net");
  CNN_TRY(cnn_net_init_host(net, seed));
  if (!net->built) return CNN_OK;
  net->params_dirty = 1;
  CNN_TRY(CNN_OP(net, upload, net->params, net->host_params, net->n_params * sizeof(float)));
  CNN_TRY(CNN_OP(net, upload, net->state, net->host_state, net->n_state * sizeof(float)));
  for (int s = 0; s < net->opt_slots; s++) CNN_TRY(CNN_OP(net, fill, net->opt[s], net->n_params, 0.0f));
  net->step = 0;
  return CNN_OK;
}
