/* Learning-rate schedules and the optimizer nodes of a training program: one node
 * for the weight-decayed range of the flat buffers (conv/dense weights) and one
 * for the rest. The rate itself is computed by the step_begin node from the step
 * state (src/core/schedule.h), so it is never a frozen kernel argument. */
#include <math.h>

#include "core/net.h"

static cnn_sched_desc sched_of(const cnn_train_config *tc, int64_t total) {
  cnn_sched_desc sd = {0};
  sd.kind = (int)tc->schedule;
  sd.lr = tc->learning_rate;
  sd.final_lr = sd.lr * tc->final_lr_frac;
  sd.total = total > 0 ? total : tc->total_steps;
  sd.warmup = tc->warmup_steps;
  if (tc->schedule == CNN_SCHED_ONECYCLE && sd.warmup == 0 && sd.total > 0) sd.warmup = sd.total / 4;
  sd.step_size = tc->step_size;
  sd.gamma = tc->gamma;
  sd.power = tc->power;
  return sd;
}

cnn_sched_desc cnn_net_sched(const cnn_net *net) { return sched_of(&net->tc, net->total_steps); }

float cnn_schedule_lr(const cnn_train_config *tc, int64_t step, int64_t total) {
  cnn_sched_desc sd = sched_of(tc, total);
  return cnn_sched_lr(&sd, step);
}

float cnn_net_lr_at(const cnn_net *net, int64_t step) {
  return net ? cnn_schedule_lr(&net->tc, step, net->total_steps) : 0.0f;
}

float cnn_net_current_lr(const cnn_net *net) {
  return net ? cnn_schedule_lr(&net->tc, net->step, net->total_steps) : 0.0f;
}

cnn_status cnn_optim_emit(cnn_program *p, cnn_net *net) {
  const cnn_train_config *tc = &net->tc;
  size_t nd = net->n_params_decay, rest = net->n_params - nd;
  float *pp = net->params, *g = net->grads;
  int adam = tc->optimizer != CNN_OPT_SGD;
  cnn_node_op op = adam ? CNN_NODE_ADAM : CNN_NODE_SGD;
  for (int part = 0; part < 2; part++) {
    size_t off = part ? nd : 0, n = part ? rest : nd;
    if (!n) continue;
    cnn_node node = {.op = op, .layer = -1};
    node.u.opt.n = n;
    node.u.opt.p = pp + off;
    node.u.opt.g = g + off;
    node.u.opt.m = adam ? net->opt[0] + off : NULL;
    node.u.opt.v = adam ? net->opt[1] + off : net->opt[0] + off;
    node.u.opt.momentum = tc->momentum;
    node.u.opt.nesterov = tc->nesterov;
    node.u.opt.wd = part ? 0.0f : tc->weight_decay;
    node.u.opt.b1 = tc->beta1;
    node.u.opt.b2 = tc->beta2;
    node.u.opt.eps = tc->eps;
    node.u.opt.decoupled = tc->optimizer == CNN_OPT_ADAMW;
    CNN_TRY(cnn_program_emit(p, &node));
  }
  return CNN_OK;
}
