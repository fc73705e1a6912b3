/* Learning-rate schedules and the optimizer nodes of a training program: one node
 * for the weight-decayed range of the flat buffers (conv/dense weights) and one
 * for the rest (split where frozen tensors lie in them). The rate itself is computed by the step_begin node from the step
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

static cnn_status emit_range(cnn_program *p, cnn_net *net, size_t off, size_t n, float wd) {
  const cnn_train_config *tc = &net->tc;
  int adam = tc->optimizer != CNN_OPT_SGD;
  cnn_node node = {.op = adam ? CNN_NODE_ADAM : CNN_NODE_SGD, .layer = -1};
  node.u.opt.n = n;
  node.u.opt.p = net->params + off;
  node.u.opt.g = net->grads + off;
  node.u.opt.m = adam ? net->opt[0] + off : NULL;
  node.u.opt.v = adam ? net->opt[1] + off : net->opt[0] + off;
  node.u.opt.momentum = tc->momentum;
  node.u.opt.nesterov = tc->nesterov;
  node.u.opt.wd = wd;
  node.u.opt.b1 = tc->beta1;
  node.u.opt.b2 = tc->beta2;
  node.u.opt.eps = tc->eps;
  node.u.opt.decoupled = tc->optimizer == CNN_OPT_ADAMW;
  return cnn_program_emit(p, &node);
}

/* One node per contiguous run of trainable tensors that are not frozen, in each
 * of the two ranges (decayed, not decayed): without frozen layers that is one node
 * per range; frozen tensors are never touched (no update, no decay, no momentum). */
cnn_status cnn_optim_emit(cnn_program *p, cnn_net *net) {
  for (int part = 0; part < 2; part++) {
    size_t begin = 0, end = 0; /* the open run [begin, end) */
    for (int i = 0; i <= net->n_tensors; i++) {
      const cnn_tensor_entry *t = i < net->n_tensors ? &net->tensors[i] : NULL;
      if (t && (!t->trainable || t->decay != (part == 0))) continue;
      if (t && !t->frozen && t->offset == end && end > begin) { /* extends the run */
        end += t->count;
        continue;
      }
      if (end > begin) CNN_TRY(emit_range(p, net, begin, end - begin, part ? 0.0f : net->tc.weight_decay));
      begin = end = 0;
      if (t && !t->frozen) begin = t->offset, end = t->offset + t->count;
    }
  }
  return CNN_OK;
}
