/* Internal view of a net: layers in topological order, named parameter tensors,
 * the build (plan + buffers on a backend). */
#ifndef CNN_NET_H
#define CNN_NET_H

#include <stdio.h>

#include "backend/backend.h"
#include "cnn/cnn.h"
#include "core/cfg.h"
#include "core/error.h"

#define CNN_MAX_INPUTS 8
#define CNN_MAX_PARAMS 4
#define CNN_MAX_AUX 3
/* largest tensor we accept (elements per image), keeps size arithmetic in range */
#define CNN_MAX_ELEMS_PER_IMAGE (1ll << 31)

typedef struct cnn_shape { int h, w, c; } cnn_shape; /* one image, NHWC without N */

static inline size_t cnn_shape_count(cnn_shape s) { return (size_t)s.h * s.w * s.c; }

typedef enum cnn_init_kind {
  CNN_INIT_WEIGHT = 0, /* Kaiming normal or Xavier uniform, per the train config */
  CNN_INIT_ZERO,
  CNN_INIT_ONE
} cnn_init_kind;

typedef struct cnn_tensor_entry {
  char name[96];
  int ndim;
  int64_t shape[4];
  size_t count;
  int trainable;  /* 1: lives in the params buffer (and has a gradient); 0: state */
  int decay;      /* weight decay applies (conv and dense weights only) */
  size_t offset;  /* element offset in the params or state flat buffer */
  cnn_init_kind init;
  int fan_in, fan_out;
} cnn_tensor_entry;

typedef struct cnn_net cnn_net;
typedef struct cnn_layer cnn_layer;

typedef struct cnn_layer_kind {
  const char *name;
  /* l->in_shape[] is set; set l->out, declare parameters (cnn_net_add_tensor),
   * set l->flops; validate everything a forward relies on */
  cnn_status (*infer)(cnn_net *net, cnn_layer *l);
  /* float elements of each aux buffer for a batch of n (NULL: none) */
  void (*aux)(const cnn_layer *l, int n, size_t count[CNN_MAX_AUX]);
  /* workspace bytes for a batch of n (NULL: none) */
  size_t (*workspace)(cnn_net *net, const cnn_layer *l, int n);
  cnn_status (*forward)(cnn_net *net, cnn_layer *l, int n, int train);
  /* accumulate into inputs' dy (where not NULL), overwrite parameter grads */
  cnn_status (*backward)(cnn_net *net, cnn_layer *l, int n);
  /* one-line description of the hyper-parameters, e.g. "5x5/1 pad 2, 32" */
  void (*describe)(const cnn_net *net, const cnn_layer *l, char *buf, size_t len);
} cnn_layer_kind;

struct cnn_layer {
  const cnn_layer_kind *kind;
  char name[64];
  int section;                      /* cfg section index (0 = first after [net]) */
  int line;                         /* cfg line of the section */
  int n_in;
  int in[CNN_MAX_INPUTS];           /* producing layer index; -1 = the net input */
  cnn_shape in_shape[CNN_MAX_INPUTS];
  cnn_shape out;
  int n_param;
  int param[CNN_MAX_PARAMS];        /* tensor indices: weight, bias / gamma, beta, mean, var */
  double flops;                     /* forward FLOPs per image */
  int last_consumer;                /* the last layer reading this one's output, -1: none */

  /* hyper-parameters (the kinds use what they need) */
  int filters, kh, kw, stride_h, stride_w, pad_h, pad_w, dil, groups, bias;
  int same_pad;                     /* conv padding=same */
  int global;                       /* global pooling */
  int pad_total_h, pad_total_w;     /* pooling: Darknet's padding (total) */
  cnn_act act;
  float alpha;                      /* leaky slope */
  float prob;                       /* dropout */
  float temperature;                /* softmax: logits are divided by it */
  int outputs;                      /* dense */
  int from_section;                 /* shortcut: the cfg section added in (for summaries) */

  /* build: pointers into the arena (NULL where the mode needs none) */
  float *y;                         /* [n, out] */
  float *dy;                        /* [n, out], training only */
  float *aux[CNN_MAX_AUX];
  size_t aux_count[CNN_MAX_AUX];
};

struct cnn_net {
  char *path;
  char *cfg_text;
  int in_h, in_w, in_c, cfg_batch;
  cnn_train_config tc;

  int n_layers, cap_layers;
  cnn_layer *layers;
  int n_sections;
  int *section_out;                 /* [n_sections] layer index giving the section's output */
  char **section_name;              /* [n_sections] */

  int n_tensors, cap_tensors;
  cnn_tensor_entry *tensors;
  size_t n_params, n_params_decay, n_state; /* decayed params come first in the buffer */

  float *host_params, *host_state;  /* canonical copy while not built */
  int params_initialised;

  /* build */
  cnn_backend *b;
  int batch;
  cnn_mode mode;
  int built;
  float *params, *grads, *state;    /* [n_params], [n_params], [n_state] */
  float *state_backup;              /* [n_state], training: restored when a step is refused */
  float *opt[2];                    /* momentum, or Adam m and v */
  int opt_slots;
  void *arena;                      /* activations, gradients, aux, placed by liveness */
  void *ws;                         /* shared workspace */
  size_t ws_bytes;
  float *x;                         /* [batch, in_h, in_w, in_c] */
  int32_t *labels;                  /* [batch] */
  float *host_out;                  /* [batch, classes] probabilities, host */
  float *host_loss;                 /* [batch] */
  cnn_plan_info plan;
  int64_t step, total_steps;
};

/* call an op through the backend table, reporting a missing one */
cnn_status cnn_op_missing(const cnn_backend *b, const char *op);
#define CNN_OP(net, op, ...)                                                      \
  ((net)->b->ops->op ? (net)->b->ops->op((net)->b->ctx, __VA_ARGS__)              \
                     : cnn_op_missing((net)->b, #op))

/* the input activation / its gradient (NULL for the net input) */
static inline const float *cnn_layer_x(const cnn_net *net, const cnn_layer *l, int i) {
  return l->in[i] < 0 ? net->x : net->layers[l->in[i]].y;
}
static inline float *cnn_layer_dx(const cnn_net *net, const cnn_layer *l, int i) {
  return l->in[i] < 0 ? NULL : net->layers[l->in[i]].dy;
}
static inline float *cnn_param_ptr(const cnn_net *net, const cnn_layer *l, int j) {
  const cnn_tensor_entry *t = &net->tensors[l->param[j]];
  return (t->trainable ? net->params : net->state) + t->offset;
}
static inline float *cnn_grad_ptr(const cnn_net *net, const cnn_layer *l, int j) {
  const cnn_tensor_entry *t = &net->tensors[l->param[j]];
  return t->trainable ? net->grads + t->offset : NULL;
}

/* declare a parameter of l (name is "<layer name>.<suffix>") */
cnn_status cnn_net_add_tensor(cnn_net *net, cnn_layer *l, const char *suffix, int ndim,
                              const int64_t *shape, int trainable, int decay, cnn_init_kind init,
                              int fan_in, int fan_out);

/* append a layer reading `n_in` producers; returns its index via *idx */
cnn_status cnn_net_add_layer(cnn_net *net, const cnn_layer_kind *kind, const char *name,
                             int section, int line, int n_in, const int *in, int *idx);

/* the layer kinds (src/layers/) */
extern const cnn_layer_kind cnn_kind_conv, cnn_kind_dense, cnn_kind_batchnorm, cnn_kind_act,
    cnn_kind_maxpool, cnn_kind_avgpool, cnn_kind_dropout, cnn_kind_shortcut, cnn_kind_route,
    cnn_kind_flatten, cnn_kind_softmax;

/* activation names <-> enum */
cnn_status cnn_act_parse(const char *s, cnn_act *out, float *alpha);
const char *cnn_act_name(cnn_act a);

/* conv / pooling descriptors for a batch of n */
cnn_conv_desc cnn_layer_conv_desc(const cnn_layer *l, int n);
cnn_pool_desc cnn_layer_pool_desc(const cnn_layer *l, int n);

/* building blocks shared by net.c, plan.c, exec.c */
cnn_status cnn_net_init_host(cnn_net *net, uint64_t seed);
cnn_status cnn_net_plan_build(cnn_net *net, cnn_backend *b, int batch, cnn_mode mode);
void cnn_net_release(cnn_net *net);      /* free backend buffers, keep host params */
cnn_status cnn_net_sync_to_host(cnn_net *net);
float cnn_schedule_lr(const cnn_train_config *tc, int64_t step, int64_t total);
cnn_status cnn_optim_step(cnn_net *net);
int cnn_net_classes(const cnn_net *net);
/* forward in training mode, the loss, and (do_backward) every gradient, without
 * an optimizer step: the training step's first half, and the gradient checker's */
cnn_status cnn_net_loss_grad(cnn_net *net, const float *x, const int32_t *labels, int n,
                             int do_backward, cnn_step_result *res);

#endif
