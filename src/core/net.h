/* Internal view of a net: layers in topological order, named parameter tensors,
 * the build (plan + buffers on a backend). */
#ifndef CNN_NET_H
#define CNN_NET_H

#include <stdio.h>

#include "backend/backend.h"
#include "cnn/loader.h"
#include "cnn/cnn.h"
#include "core/cfg.h"
#include "core/error.h"
#include "core/program.h"

#define CNN_MAX_INPUTS 8
#define CNN_MAX_PARAMS 4
#define CNN_MAX_AUX 5
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
  int frozen;     /* its layer is frozen (cnn_net_set_frozen): the optimizer skips it */
  cnn_init_kind init;
  int fan_in, fan_out;
} cnn_tensor_entry;

typedef struct cnn_net cnn_net;
typedef struct cnn_layer cnn_layer;

/* a training set in backend memory (cnn_net_bind_data) */
typedef struct cnn_bound_data {
  uint8_t *images;             /* [n, h, w, c] backend memory */
  int32_t *labels, *perm;      /* [n], [n] backend memory */
  float *lut;                  /* [c][256] backend memory: normalised value of each byte */
  int32_t *host_perm;          /* [n] host: the epoch's order before upload */
  int n, batch, batches, shuffle, drop_last;
  uint64_t seed;
  cnn_augment aug;
  int epoch, next;             /* where the device's cursor is: -1 before the first seek */
} cnn_bound_data;

/* a planned activation buffer and its element type */
typedef struct cnn_bufinfo {
  char *p;
  size_t bytes;
  cnn_dtype dt;
} cnn_bufinfo;
#define CNN_CAST_SLOTS 4 /* f32 scratch slots of the bf16 lowering: bf16 operands per node */

typedef struct cnn_layer_kind {
  const char *name;
  /* l->in_shape[] is set; set l->out, declare parameters (cnn_net_add_tensor),
   * set l->flops; validate everything a forward relies on */
  cnn_status (*infer)(cnn_net *net, cnn_layer *l);
  /* float elements of each aux buffer for a batch of n (NULL: none) */
  void (*aux)(const cnn_layer *l, int n, size_t count[CNN_MAX_AUX]);
  /* workspace bytes for a batch of n (NULL: none) */
  size_t (*workspace)(cnn_net *net, const cnn_layer *l, int n);
  /* append the forward nodes for a batch of n to p */
  cnn_status (*emit_fwd)(cnn_program *p, cnn_net *net, cnn_layer *l, int n, int train);
  /* append the backward nodes: accumulate into inputs' dy (where not NULL),
   * overwrite parameter grads */
  cnn_status (*emit_bwd)(cnn_program *p, cnn_net *net, cnn_layer *l, int n);
  /* optional: nodes after the optimizer that commit state of an accepted step */
  cnn_status (*emit_commit)(cnn_program *p, cnn_net *net, cnn_layer *l, int n);
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
  int no_grad;                      /* backward skips it: frozen, or (with a frozen prefix)
                                       nothing in or before it trains (freeze.c) */

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
  int crop_h, crop_w, flip, noadjust; /* crop (Darknet's keys) */
  float shift;                      /* crop: Darknet's per-channel shift in training */
  float angle, saturation, exposure; /* crop: accepted, not applied (see crop.c) */
  cnn_reorg_mode reorg_mode;        /* reorg; its stride is stride_h */
  int extra;                        /* reorg: Darknet's extra elements (0s) */

  /* fusion (decided per build by cnn_net_fuse, see fuse.c) */
  int absorbed_by;                  /* >= 0: this layer runs inside that one; its y and dy
                                       are the absorber's, it emits no nodes */
  cnn_act fused_act;                /* activation applied by this layer's own nodes */
  float fused_alpha;
  int fold_bn;                      /* conv, inference: the batch-norm layer folded in, -1 */
  int fused_pool;                   /* batch norm or activation, training: the max pool
                                       absorbed after it (its y and dy, pooled, are the
                                       group's), -1 */
  cnn_shape fused_pool_out;         /* that pool's output shape */
  float *fold_w, *fold_b;           /* [k, r, s, c/g], [k]: the folded weights (fold buffer) */

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
  int frozen_sections;              /* the first this many cfg sections are frozen (freeze.c) */

  float *host_params, *host_state;  /* canonical copy while not built */
  int params_initialised;

  /* build */
  cnn_backend *b;
  int batch;
  cnn_mode mode;
  int built;
  float *params, *grads, *state;    /* [n_params], [n_params], [n_state] */
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

  /* step programs */
  int no_fuse;                      /* 1: compile without fusion (tests, debugging) */
  cnn_precision precision;          /* resolved: FP32, TF32 or BF16 */
  cnn_dtype act_dt;                 /* activations and their gradients: f32 or bf16 */
  cnn_bufinfo *bufs;                /* [n_bufs] the arena's buffers with their dtypes */
  int n_bufs;
  float *cast_ws;                   /* [CNN_CAST_SLOTS][cast_slot] f32 scratch (bf16 builds) */
  size_t cast_slot;
  int graphs;                       /* 1: replay programs as CUDA graphs where supported */
  int profile;                      /* 1: time every node (synchronising after each) */
  cnn_step_state *st[2];            /* backend memory: [0] training steps, [1] inference */
  cnn_step_state *host_st;          /* [2] host copies (host_alloc memory): [0] where
                                       asynchronous reads land, [1] the last complete one */
  float *fold;                      /* folded conv weights and biases (inference) */
  size_t fold_count;
  int params_dirty;                 /* the folded weights are stale */
  cnn_program *progs[4];            /* compiled programs, keyed by (batch, train) */
  int64_t launched;                 /* training steps launched (not yet known accepted) */
  cnn_bound_data data;
  int read_pending;                 /* a read_async of st[0] is in flight into host_st */
};

/* call an op through the backend table, reporting a missing one */
cnn_status cnn_op_missing(const cnn_backend *b, const char *op);
#define CNN_OP(net, op, ...)                                                      \
  ((net)->b->ops->op ? (net)->b->ops->op((net)->b->ctx, __VA_ARGS__)              \
                     : cnn_op_missing((net)->b, #op))

/* append a node of layer l: CNN_EMIT(p, net, l, CNN_NODE_FILL, fill, .x = y, .n = k) */
#define CNN_EMIT(p, net, l, OP, member, ...)                                      \
  cnn_program_emit((p), &(cnn_node){.op = (OP), .layer = (int)((l) - (net)->layers), \
                                    .u.member = {__VA_ARGS__}})

/* the input activation / its gradient (NULL for the net input) */
static inline const float *cnn_layer_x(const cnn_net *net, const cnn_layer *l, int i) {
  return l->in[i] < 0 ? net->x : net->layers[l->in[i]].y;
}
static inline float *cnn_layer_dx(const cnn_net *net, const cnn_layer *l, int i) {
  return l->in[i] < 0 ? NULL : net->layers[l->in[i]].dy;
}
/* frozen (cnn_net_set_frozen): forward only, batch norm on its running statistics,
 * no gradient, no update, no statistics commit */
static inline int cnn_layer_frozen(const cnn_net *net, const cnn_layer *l) {
  return l->section < net->frozen_sections;
}
/* the gradient of input i where backward must compute it: NULL for the net input
 * and for a producer that backward skips (no_grad: nothing in or before it trains);
 * layers whose input gradient costs a product use this */
static inline float *cnn_layer_dx_needed(const cnn_net *net, const cnn_layer *l, int i) {
  return l->in[i] < 0 || net->layers[l->in[i]].no_grad ? NULL : net->layers[l->in[i]].dy;
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
    cnn_kind_flatten, cnn_kind_softmax, cnn_kind_crop, cnn_kind_reorg;

/* activation names <-> enum */
cnn_status cnn_act_parse(const char *s, cnn_act *out, float *alpha);
const char *cnn_act_name(cnn_act a);

/* conv / pooling descriptors for a batch of n */
cnn_conv_desc cnn_layer_conv_desc(const cnn_net *net, const cnn_layer *l, int n);
/* the arithmetic the build's precision lets matrix products use (precision.c) */
cnn_math cnn_net_math(const cnn_net *net);
cnn_pool_desc cnn_layer_pool_desc(const cnn_layer *l, int n);

/* cnn_net_from_cfg_text; init = 0 leaves the parameters unallocated and
 * uninitialised (shapes and FLOPs only: the net must not be built or saved) */
cnn_status cnn_net_parse_cfg(const char *text, const char *name, int init, cnn_net **out);

/* building blocks shared by net.c, plan.c, exec.c */
cnn_status cnn_net_init_host(cnn_net *net, uint64_t seed);
cnn_status cnn_net_plan_build(cnn_net *net, cnn_backend *b, int batch, cnn_mode mode);
void cnn_net_release(cnn_net *net);      /* free backend buffers, keep host params */
cnn_status cnn_net_sync_to_host(cnn_net *net);
float cnn_schedule_lr(const cnn_train_config *tc, int64_t step, int64_t total);
int cnn_net_classes(const cnn_net *net);
/* forward in training mode, the loss, and (do_backward) every gradient, without
 * an optimizer step: the training step's first half, and the gradient checker's */
cnn_status cnn_net_loss_grad(cnn_net *net, const float *x, const int32_t *labels, int n,
                             int do_backward, cnn_step_result *res);

/* fusion decisions for a build in `mode` (sets absorbed_by, fused_act, fold_bn) */
void cnn_net_fuse(cnn_net *net, int train);
/* the compiled program for (n, kind), compiled on first use (exec.c) */
cnn_status cnn_net_program_for(cnn_net *net, int n, cnn_prog_kind kind, cnn_program **out);
/* free the bound dataset's buffers (plan.c releases it with the build) */
void cnn_net_unbind_data(cnn_net *net);
/* "12.3 MiB": bytes in binary units for messages and summaries (summary.c) */
void cnn_human_bytes(char *buf, size_t len, double bytes);
/* v with thousands separators: "3,274,634" (summary.c) */
void cnn_commas(char *buf, size_t len, unsigned long long v);
/* the schedule of this net's training run */
cnn_sched_desc cnn_net_sched(const cnn_net *net);
/* drop compiled programs (the config, step count or parameters' home changed) */
void cnn_net_drop_programs(cnn_net *net);
/* nodes the optimizer appends to a training program */
cnn_status cnn_optim_emit(cnn_program *p, cnn_net *net);

#endif
