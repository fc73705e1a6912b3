/* Running a built net: a training step (forward, loss, backward, optimizer) and
 * inference. Inputs arrive as host arrays and are uploaded once per call. */
#include <math.h>
#include <string.h>

#include "core/net.h"

static cnn_status upload_batch(cnn_net *net, const float *x, const int32_t *labels, int n) {
  if (!net->built) return cnn_error(CNN_ERR_ARG, "the net is not built (call cnn_net_build)");
  if (!x) return cnn_error(CNN_ERR_ARG, "no input images");
  if (n < 1 || n > net->batch)
    return cnn_error(CNN_ERR_ARG, "%d images do not fit the built batch of %d", n, net->batch);
  int classes = cnn_net_classes(net);
  size_t per = (size_t)net->in_h * net->in_w * net->in_c, xb = (size_t)n * per * sizeof(float);
  for (size_t i = 0; i < (size_t)n * per; i++)
    if (!isfinite(x[i]))
      return cnn_error(CNN_ERR_NUMERIC, "input image %zu has a non-finite value (%g) at element %zu",
                       i / per, x[i], i % per);
  CNN_TRY(CNN_OP(net, upload, net->x, x, xb));
  if (labels) {
    for (int i = 0; i < n; i++)
      if (labels[i] < 0 || labels[i] >= classes)
        return cnn_error(CNN_ERR_ARG, "label %d of image %d is outside [0, %d)", labels[i], i,
                         classes);
    return CNN_OP(net, upload, net->labels, labels, (size_t)n * sizeof(int32_t));
  }
  /* no labels: the loss is computed against class 0 and not reported */
  int32_t zeros[256] = {0};
  for (int i = 0; i < n; i += 256) {
    int m = n - i < 256 ? n - i : 256;
    CNN_TRY(CNN_OP(net, upload, net->labels + i, zeros, (size_t)m * sizeof(int32_t)));
  }
  return CNN_OK;
}

static cnn_status forward(cnn_net *net, int n, int train) {
  for (int i = 0; i < net->n_layers; i++) {
    cnn_layer *l = &net->layers[i];
    cnn_status st = l->kind->forward(net, l, n, train);
    if (st != CNN_OK)
      return cnn_error_prefix(st, "forward of layer %d (%s, %s)", l->section, l->name, l->kind->name);
  }
  return CNN_OK;
}

/* zero each gradient buffer just before its first writer, then run backward */
static cnn_status backward(cnn_net *net, int n) {
  int L = net->n_layers;
  for (int j = L - 1; j >= 0; j--) {
    cnn_layer *l = &net->layers[j];
    for (int q = 0; q < l->n_in; q++) {
      int i = l->in[q];
      if (i < 0) continue;
      int dup = 0; /* the same input twice in one layer: zero once */
      for (int r = 0; r < q; r++)
        if (l->in[r] == i) dup = 1;
      /* j is the last consumer of i, so it writes dy_i first */
      if (net->layers[i].last_consumer == j && !dup)
        CNN_TRY(CNN_OP(net, fill, net->layers[i].dy, (size_t)n * cnn_shape_count(net->layers[i].out), 0.0f));
    }
    if (l->dy && l->last_consumer < 0) /* nothing reads it: its gradient is zero */
      CNN_TRY(CNN_OP(net, fill, l->dy, (size_t)n * cnn_shape_count(l->out), 0.0f));
    cnn_status st = l->kind->backward(net, l, n);
    if (st != CNN_OK)
      return cnn_error_prefix(st, "backward of layer %d (%s, %s)", l->section, l->name, l->kind->name);
  }
  return CNN_OK;
}

/* download probabilities and losses; mean loss and top-1 hits */
static cnn_status collect(cnn_net *net, const int32_t *labels, int n, cnn_step_result *res) {
  cnn_layer *last = &net->layers[net->n_layers - 1];
  int classes = cnn_net_classes(net);
  CNN_TRY(CNN_OP(net, download, net->host_out, last->y, (size_t)n * classes * sizeof(float)));
  int has_loss = last->kind == &cnn_kind_softmax;
  if (has_loss) CNN_TRY(CNN_OP(net, download, net->host_loss, last->aux[0], (size_t)n * sizeof(float)));
  double loss = 0;
  int correct = 0;
  for (int i = 0; i < n; i++) {
    const float *p = net->host_out + (size_t)i * classes;
    int best = 0;
    for (int c = 1; c < classes; c++)
      if (p[c] > p[best]) best = c;
    if (labels && best == labels[i]) correct++;
    if (has_loss) loss += net->host_loss[i];
  }
  if (res) {
    res->loss = labels && has_loss ? loss / n : 0;
    res->correct = correct;
  }
  if (labels && has_loss && !isfinite(loss))
    return cnn_error(CNN_ERR_NUMERIC, "the loss is %s at step %lld", isnan(loss) ? "NaN" : "infinite",
                     (long long)net->step);
  return CNN_OK;
}

cnn_status cnn_net_loss_grad(cnn_net *net, const float *x, const int32_t *labels, int n,
                             int do_backward, cnn_step_result *res) {
  if (!net) return cnn_error(CNN_ERR_ARG, "NULL net");
  if (!labels) return cnn_error(CNN_ERR_ARG, "training needs labels");
  if (net->built && net->mode != CNN_MODE_TRAIN)
    return cnn_error(CNN_ERR_ARG, "the net was built for inference; build it with CNN_MODE_TRAIN");
  CNN_TRY(upload_batch(net, x, labels, n));
  /* a refused step must leave everything as it was, running statistics included */
  size_t sb = net->n_state * sizeof(float);
  if (sb) CNN_TRY(CNN_OP(net, copy, net->state_backup, net->state, sb));
  cnn_status st = forward(net, n, 1);
  /* a non-finite loss stops here, before any parameter changes */
  if (st == CNN_OK) st = collect(net, labels, n, res);
  if (st != CNN_OK) {
    if (sb) CNN_OP(net, copy, net->state, net->state_backup, sb);
    return st;
  }
  return do_backward ? backward(net, n) : CNN_OK;
}

cnn_status cnn_net_train_step(cnn_net *net, const float *x, const int32_t *labels, int n,
                              cnn_step_result *res) {
  CNN_TRY(cnn_net_loss_grad(net, x, labels, n, 1, res));
  CNN_TRY(cnn_optim_step(net));
  net->step++;
  return CNN_OK;
}

cnn_status cnn_net_predict(cnn_net *net, const float *x, const int32_t *labels, int n,
                           float *probs, cnn_step_result *res) {
  if (!net) return cnn_error(CNN_ERR_ARG, "cnn_net_predict: NULL net");
  CNN_TRY(upload_batch(net, x, labels, n));
  CNN_TRY(forward(net, n, 0));
  CNN_TRY(collect(net, labels, n, res));
  if (probs) memcpy(probs, net->host_out, (size_t)n * cnn_net_classes(net) * sizeof(float));
  return CNN_OK;
}

int64_t cnn_net_step_count(const cnn_net *net) { return net ? net->step : 0; }

cnn_status cnn_net_set_step_count(cnn_net *net, int64_t step, int64_t total_steps) {
  if (!net || step < 0 || total_steps < 0)
    return cnn_error(CNN_ERR_ARG, "cnn_net_set_step_count: bad argument");
  net->step = step;
  net->total_steps = total_steps;
  return CNN_OK;
}
