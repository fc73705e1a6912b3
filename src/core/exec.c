/* Running a built net: host batches staged asynchronously into the planned input
 * buffers, then a compiled step program (program.c). The host-pointer calls that
 * return a step's result (cnn_net_train_step, cnn_net_predict) read the step state
 * back and so wait for the step; cnn_net_train_launch and cnn_net_train_metrics
 * never wait inside a step. */
#include <math.h>
#include <string.h>

#include "core/net.h"


void cnn_net_drop_programs(cnn_net *net) {
  for (int i = 0; i < 4; i++) {
    cnn_program_free(net, net->progs[i]);
    net->progs[i] = NULL;
  }
}

/* the compiled program for (n, kind); compiled on first use, the oldest evicted */
cnn_status cnn_net_program_for(cnn_net *net, int n, cnn_prog_kind kind, cnn_program **out) {
  for (int i = 0; i < 4; i++)
    if (net->progs[i] && net->progs[i]->batch == n && net->progs[i]->kind == kind) {
      *out = net->progs[i];
      return CNN_OK;
    }
  cnn_program *p;
  CNN_TRY(cnn_program_compile(net, n, kind, &p));
  if (net->progs[3]) cnn_program_free(net, net->progs[3]);
  memmove(net->progs + 1, net->progs, 3 * sizeof *net->progs);
  net->progs[0] = p;
  *out = p;
  return CNN_OK;
}

/* host images and labels into the planned input buffers, without waiting for the
 * copies (labels are checked here: n integers; images by the program's
 * check_finite node) */
static cnn_status stage(cnn_net *net, const float *x, const int32_t *labels, int n) {
  if (!net->built) return cnn_error(CNN_ERR_ARG, "the net is not built (call cnn_net_build)");
  if (!x) return cnn_error(CNN_ERR_ARG, "no input images");
  if (n < 1 || n > net->batch)
    return cnn_error(CNN_ERR_ARG, "%d images do not fit the built batch of %d", n, net->batch);
  int classes = cnn_net_classes(net);
  size_t xb = (size_t)n * net->in_h * net->in_w * net->in_c * sizeof(float);
  const cnn_backend_ops *o = net->b->ops;
  cnn_status (*up)(void *, void *, const void *, size_t) = o->upload_async ? o->upload_async : o->upload;
  CNN_TRY(up(net->b->ctx, net->x, x, xb));
  if (labels) {
    for (int i = 0; i < n; i++)
      if (labels[i] < 0 || labels[i] >= classes)
        return cnn_error(CNN_ERR_ARG, "label %d of image %d is outside [0, %d)", labels[i], i,
                         classes);
    return up(net->b->ctx, net->labels, labels, (size_t)n * sizeof(int32_t));
  }
  /* no labels: the loss is computed against class 0 and not reported (an all-zero
   * float fill is an all-zero int32 array) */
  return CNN_OP(net, fill, (float *)net->labels, (size_t)n, 0.0f);
}

/* the step state of kind k (0 training, 1 inference) into host_st[1], waiting */
static cnn_status read_state(cnn_net *net, int k) {
  const cnn_backend_ops *o = net->b->ops;
  if (net->read_pending && o->read_done) o->read_done(net->b->ctx, 1);
  net->read_pending = 0;
  CNN_TRY(CNN_OP(net, download, &net->host_st[1], net->st[k], sizeof(cnn_step_state)));
  if (k == 0) net->step = net->host_st[1].step;
  return CNN_OK;
}

/* the message for a step the device refused (the error path may scan the input) */
static cnn_status refused(cnn_net *net, const float *x, int n, const cnn_step_state *s) {
  if (s->nonfinite & CNN_NONFINITE_INPUT) {
    size_t per = (size_t)net->in_h * net->in_w * net->in_c;
    for (size_t i = 0; i < (size_t)n * per; i++)
      if (!isfinite(x[i]))
        return cnn_error(CNN_ERR_NUMERIC,
                         "input image %zu has a non-finite value (%g) at element %zu", i / per,
                         x[i], i % per);
    return cnn_error(CNN_ERR_NUMERIC, "an input image has a non-finite value");
  }
  double loss = s->step_loss;
  return cnn_error(CNN_ERR_NUMERIC, "the loss is %s at step %lld", isnan(loss) ? "NaN" : "infinite",
                   (long long)s->step);
}

static void result_of(const cnn_step_state *s, cnn_step_result *res) {
  if (!res) return;
  res->loss = s->step_n ? s->step_loss / (double)s->step_n : 0;
  res->correct = (int)s->step_correct;
}

/* stage a host batch and launch one training-kind program on it, without waiting */
static cnn_status launch(cnn_net *net, cnn_prog_kind kind, const float *x, const int32_t *labels, int n) {
  if (!net) return cnn_error(CNN_ERR_ARG, "NULL net");
  if (!labels) return cnn_error(CNN_ERR_ARG, "training needs labels");
  if (net->built && net->mode != CNN_MODE_TRAIN)
    return cnn_error(CNN_ERR_ARG, "the net was built for inference; build it with CNN_MODE_TRAIN");
  CNN_TRY(stage(net, x, labels, n));
  cnn_program *p;
  CNN_TRY(cnn_net_program_for(net, n, kind, &p));
  CNN_TRY(cnn_program_run(net, p, 0));
  if (kind == CNN_PK_TRAIN) {
    net->launched++;
    net->params_dirty = 1;
  }
  return CNN_OK;
}

/* one training-kind program on a host batch, waited for */
static cnn_status train_kind(cnn_net *net, cnn_prog_kind kind, const float *x,
                             const int32_t *labels, int n,
                             cnn_step_result *res) {
  CNN_TRY(launch(net, kind, x, labels, n));
  CNN_TRY(read_state(net, 0));
  const cnn_step_state *s = &net->host_st[1];
  result_of(s, res);
  return s->nonfinite ? refused(net, x, n, s) : CNN_OK;
}

cnn_status cnn_net_loss_grad(cnn_net *net, const float *x, const int32_t *labels, int n,
                             int do_backward, cnn_step_result *res) {
  return train_kind(net, do_backward ? CNN_PK_GRAD : CNN_PK_LOSS, x, labels, n, res);
}

cnn_status cnn_net_train_step(cnn_net *net, const float *x, const int32_t *labels, int n,
                              cnn_step_result *res) {
  return train_kind(net, CNN_PK_TRAIN, x, labels, n, res);
}

cnn_status cnn_net_train_launch(cnn_net *net, const float *x, const int32_t *labels, int n) {
  return launch(net, CNN_PK_TRAIN, x, labels, n);
}

static void metrics_of(const cnn_net *net, int fresh, cnn_train_metrics *m) {
  const cnn_step_state *s = &net->host_st[1];
  m->step = s->step;
  m->launched = net->launched;
  m->refused = s->refused;
  m->last_refused = s->last_refused;
  m->seen = s->seen;
  m->correct = s->correct;
  m->loss_sum = s->loss_sum;
  m->lr = s->lr;
  m->fresh = fresh;
}

cnn_status cnn_net_train_metrics(cnn_net *net, int wait, cnn_train_metrics *m) {
  if (!net || !m) return cnn_error(CNN_ERR_ARG, "cnn_net_train_metrics: NULL argument");
  if (!net->built || net->mode != CNN_MODE_TRAIN)
    return cnn_error(CNN_ERR_ARG, "the net is not built for training");
  const cnn_backend_ops *o = net->b->ops;
  void *c = net->b->ctx;
  int fresh = 0;
  if (!o->read_async || !o->read_done) { /* a backend without async reads: read now */
    CNN_TRY(read_state(net, 0));
    metrics_of(net, 1, m);
    return CNN_OK;
  }
  if (net->read_pending && o->read_done(c, wait)) { /* landed in host_st[0] */
    net->host_st[1] = net->host_st[0];
    net->step = net->host_st[1].step;
    net->read_pending = 0;
    fresh = 1;
  }
  if (wait || !net->read_pending) { /* the next read; with wait, this one is the answer */
    CNN_TRY(o->read_async(c, &net->host_st[0], net->st[0], sizeof(cnn_step_state)));
    net->read_pending = 1;
    if (wait) {
      o->read_done(c, 1);
      net->host_st[1] = net->host_st[0];
      net->step = net->host_st[1].step;
      net->read_pending = 0;
      fresh = 1;
    }
  }
  metrics_of(net, fresh, m);
  return CNN_OK;
}

cnn_status cnn_net_train_metrics_reset(cnn_net *net) {
  if (!net || !net->built) return cnn_error(CNN_ERR_ARG, "the net is not built");
  return CNN_OP(net, metrics_reset, net->st[0]);
}

int cnn_net_step_losses(const cnn_net *net, int64_t from, int count, float *out) {
  if (!net || !net->host_st || count < 0) return 0;
  const cnn_step_state *s = &net->host_st[1];
  int got = 0;
  for (int i = 0; i < count; i++) {
    int64_t step = from + i;
    /* the ring holds the last CNN_LOSS_RING steps before the read's step */
    if (step < 0 || step >= s->step || step < s->step - CNN_LOSS_RING) break;
    out[i] = s->loss_ring[step % CNN_LOSS_RING];
    got++;
  }
  return got;
}

cnn_status cnn_net_predict(cnn_net *net, const float *x, const int32_t *labels, int n,
                           float *probs, cnn_step_result *res) {
  if (!net) return cnn_error(CNN_ERR_ARG, "cnn_net_predict: NULL net");
  CNN_TRY(stage(net, x, labels, n));
  cnn_program *p;
  CNN_TRY(cnn_net_program_for(net, n, CNN_PK_INFER, &p));
  CNN_TRY(cnn_program_run(net, p, net->params_dirty));
  net->params_dirty = 0;
  cnn_layer *last = &net->layers[net->n_layers - 1];
  int classes = cnn_net_classes(net);
  CNN_TRY(CNN_OP(net, download, net->host_out, last->y, (size_t)n * classes * sizeof(float)));
  CNN_TRY(CNN_OP(net, download, &net->host_st[1], net->st[1], sizeof(cnn_step_state)));
  const cnn_step_state *s = &net->host_st[1];
  if (s->nonfinite & CNN_NONFINITE_INPUT) return refused(net, x, n, s);
  int correct = 0;
  for (int i = 0; i < n && labels; i++) {
    const float *pr = net->host_out + (size_t)i * classes;
    int best = 0;
    for (int c = 1; c < classes; c++)
      if (pr[c] > pr[best]) best = c;
    if (best == labels[i]) correct++;
  }
  int has_loss = labels && last->kind == &cnn_kind_softmax;
  if (res) {
    res->loss = has_loss && s->step_n ? s->step_loss / (double)s->step_n : 0;
    res->correct = correct;
  }
  if (has_loss && !isfinite(s->step_loss))
    return cnn_error(CNN_ERR_NUMERIC, "the loss is %s", isnan(s->step_loss) ? "NaN" : "infinite");
  if (probs) memcpy(probs, net->host_out, (size_t)n * classes * sizeof(float));
  return CNN_OK;
}

int64_t cnn_net_step_count(const cnn_net *net) { return net ? net->step : 0; }

cnn_status cnn_net_set_step_count(cnn_net *net, int64_t step, int64_t total_steps) {
  if (!net) return cnn_error(CNN_ERR_ARG, "cnn_net_set_step_count: NULL net");
  if (step < 0 || total_steps < 0)
    return cnn_error(CNN_ERR_ARG, "step %lld and total steps %lld must not be negative",
                     (long long)step, (long long)total_steps);
  net->step = step;
  net->launched = step;
  net->total_steps = total_steps;
  cnn_net_drop_programs(net); /* the schedule is compiled into the programs */
  if (!net->built) return CNN_OK;
  cnn_step_state s;
  CNN_TRY(CNN_OP(net, download, &s, net->st[0], sizeof s));
  s.step = step;
  CNN_TRY(CNN_OP(net, upload, net->st[0], &s, sizeof s));
  net->host_st[1] = s;
  return CNN_OK;
}

cnn_status cnn_net_set_fusion(cnn_net *net, int on) {
  if (!net) return cnn_error(CNN_ERR_ARG, "cnn_net_set_fusion: NULL net");
  if (net->no_fuse == !on) return CNN_OK;
  net->no_fuse = !on;
  /* fusion changes the memory plan: build again with the same batch, mode, backend */
  return net->built ? cnn_net_plan_build(net, net->b, net->batch, net->mode) : CNN_OK;
}

cnn_status cnn_net_set_graphs(cnn_net *net, int on) {
  if (!net) return cnn_error(CNN_ERR_ARG, "cnn_net_set_graphs: NULL net");
  net->graphs = on != 0;
  return CNN_OK;
}

cnn_status cnn_net_program_print(cnn_net *net, int batch, cnn_mode mode, void *f) {
  if (!net || !f) return cnn_error(CNN_ERR_ARG, "cnn_net_program_print: NULL argument");
  if (batch <= 0) batch = net->batch;
  cnn_program *p;
  CNN_TRY(cnn_net_program_for(net, batch, mode == CNN_MODE_TRAIN ? CNN_PK_TRAIN : CNN_PK_INFER, &p));
  cnn_program_print(net, p, f);
  return CNN_OK;
}

cnn_status cnn_net_set_profile(cnn_net *net, int on) {
  if (!net) return cnn_error(CNN_ERR_ARG, "cnn_net_set_profile: NULL net");
  net->profile = on != 0;
  return CNN_OK;
}

cnn_status cnn_net_profile_print(cnn_net *net, int batch, cnn_mode mode, void *f) {
  if (!net || !f) return cnn_error(CNN_ERR_ARG, "cnn_net_profile_print: NULL argument");
  if (batch <= 0) batch = net->batch;
  cnn_program *p;
  CNN_TRY(cnn_net_program_for(net, batch, mode == CNN_MODE_TRAIN ? CNN_PK_TRAIN : CNN_PK_INFER, &p));
  cnn_program_profile_print(net, p, f);
  return CNN_OK;
}
