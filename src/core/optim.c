/* Learning-rate schedules and the optimizer step on the flat buffers: one call
 * for the weight-decayed range (conv/dense weights) and one for the rest. */
#include <math.h>

#include "core/net.h"

float cnn_schedule_lr(const cnn_train_config *tc, int64_t step, int64_t total) {
  double lr = tc->learning_rate, fin = lr * tc->final_lr_frac;
  if (total <= 0) total = tc->total_steps;
  int64_t warm = tc->warmup_steps;
  if (tc->schedule == CNN_SCHED_ONECYCLE && warm == 0 && total > 0) warm = total / 4;
  if (warm > 0 && step < warm) return (float)(lr * (double)(step + 1) / (double)warm);
  double t = (double)(step - warm), span = (double)(total - warm);
  double frac = span > 0 ? fmin(fmax(t / span, 0.0), 1.0) : 0.0;
  switch (tc->schedule) {
    case CNN_SCHED_CONSTANT:
      return (float)lr;
    case CNN_SCHED_STEP:
      return tc->step_size > 0 ? (float)(lr * pow(tc->gamma, (double)(step / tc->step_size)))
                               : (float)lr;
    case CNN_SCHED_COSINE:
      return (float)(fin + (lr - fin) * 0.5 * (1.0 + cos(3.141592653589793 * frac)));
    case CNN_SCHED_ONECYCLE: /* linear up (above), then linear down to the final lr */
      return (float)(lr + (fin - lr) * frac);
    case CNN_SCHED_POLY:
      return (float)(lr * pow(1.0 - frac, tc->power));
  }
  return (float)lr;
}

float cnn_net_current_lr(const cnn_net *net) {
  return net ? cnn_schedule_lr(&net->tc, net->step, net->total_steps) : 0.0f;
}

cnn_status cnn_optim_step(cnn_net *net) {
  const cnn_train_config *tc = &net->tc;
  float lr = cnn_schedule_lr(tc, net->step, net->total_steps);
  size_t nd = net->n_params_decay, rest = net->n_params - nd;
  float *p = net->params, *g = net->grads;
  if (tc->optimizer == CNN_OPT_SGD) {
    float *v = net->opt[0];
    if (nd) CNN_TRY(CNN_OP(net, sgd_step, nd, p, g, v, lr, tc->momentum, tc->weight_decay, tc->nesterov));
    if (rest)
      CNN_TRY(CNN_OP(net, sgd_step, rest, p + nd, g + nd, v + nd, lr, tc->momentum, 0.0f, tc->nesterov));
    return CNN_OK;
  }
  int decoupled = tc->optimizer == CNN_OPT_ADAMW;
  float *m = net->opt[0], *v = net->opt[1];
  int64_t t = net->step + 1;
  if (nd)
    CNN_TRY(CNN_OP(net, adam_step, nd, p, g, m, v, lr, tc->beta1, tc->beta2, tc->eps,
                   tc->weight_decay, decoupled, t));
  if (rest)
    CNN_TRY(CNN_OP(net, adam_step, rest, p + nd, g + nd, m + nd, v + nd, lr, tc->beta1, tc->beta2,
                   tc->eps, 0.0f, decoupled, t));
  return CNN_OK;
}
