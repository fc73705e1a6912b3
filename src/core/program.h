/* Step programs: a built net compiled, for one (batch, mode), into an ordered list
 * of nodes over planned buffers. Layers emit nodes (emit_fwd / emit_bwd); they no
 * longer run anything. A training program is
 *   step_begin, check_finite(x), forward, fused softmax cross-entropy (forward,
 *   metrics and its gradient), backward (with the zero-fills liveness implies),
 *   optimizer, batch-norm running-statistics commits, step_end
 * and an inference program step_begin, check_finite(x), forward (BN folded into
 * convs), softmax, step_end, after a prologue that folds BN into conv weights
 * whenever the parameters changed.
 *
 * Per-step values (learning rate, step index, dropout seeds, the non-finite flag)
 * are read by the ops from the step state in backend memory, so a program is the
 * same every step: ref and cpu run it node by node, cuda captures it into a CUDA
 * graph after a warm-up and replays it. Where the backend has an op's overwriting
 * form (maxpool_bwd_set, bn_act_bwd_set, bn_act_pool_bwd's set), a zero-fill
 * followed by that op on the same gradient becomes one node with `set`. Every
 * node's op must exist on the backend: compiling refuses a program otherwise,
 * naming node, op, dtype and backend. */
#ifndef CNN_PROGRAM_H
#define CNN_PROGRAM_H

#include "backend/backend.h"

const char *cnn_dtype_name(cnn_dtype t);

typedef enum cnn_node_op {
  CNN_NODE_FILL = 0, CNN_NODE_COPY, CNN_NODE_AXPBY, CNN_NODE_ADD, CNN_NODE_MUL, CNN_NODE_COPY2D,
  CNN_NODE_ACT_FWD, CNN_NODE_ACT_BWD, CNN_NODE_GEMM, CNN_NODE_BIAS_ADD, CNN_NODE_BIAS_GRAD,
  CNN_NODE_CONV_FWD, CNN_NODE_CONV_FWD_ACT, CNN_NODE_CONV_BWD_DATA, CNN_NODE_CONV_BWD_FILTER,
  CNN_NODE_MAXPOOL_FWD, CNN_NODE_MAXPOOL_BWD, CNN_NODE_AVGPOOL_FWD, CNN_NODE_AVGPOOL_BWD,
  CNN_NODE_BN_FWD_TRAIN, CNN_NODE_BN_FWD_INFER, CNN_NODE_BN_BWD, CNN_NODE_BN_COMMIT,
  CNN_NODE_BN_FOLD, CNN_NODE_SHORTCUT_FWD, CNN_NODE_SHORTCUT_BWD, CNN_NODE_ADD_ACT_FWD,
  CNN_NODE_ADD_ACT_BWD, CNN_NODE_DROPOUT_MASK, CNN_NODE_SOFTMAX_XENT, CNN_NODE_SGD,
  CNN_NODE_ADAM, CNN_NODE_STEP_BEGIN, CNN_NODE_STEP_END, CNN_NODE_CHECK_FINITE, CNN_NODE_CAST,
  CNN_NODE_GATHER, CNN_NODE_CROP_FWD, CNN_NODE_CROP_BWD, CNN_NODE_REORG_FWD, CNN_NODE_REORG_BWD,
  CNN_NODE_BN_POOL_FWD, CNN_NODE_BN_POOL_BWD,
  CNN_NODE_COUNT
} cnn_node_op;

/* the backend entry a node calls (for messages and the support check) */
const char *cnn_node_op_name(cnn_node_op op);

/* Arguments of each node kind, named as in backend.h. Pointers are planned
 * buffers (backend memory); the step state is the program's. */
typedef struct cnn_node {
  cnn_node_op op;
  int layer;        /* the emitting layer; -1: the program's own node */
  cnn_dtype dtype;  /* of the activations it reads and writes */
  int set;          /* maxpool_bwd, bn_bwd, bn_pool_bwd: the backend's overwriting form
                     * (dx = ..., not dx += ...) in place of a zero-fill before the node */
  union {
    struct { float *x; size_t n; float v; } fill;
    struct { void *dst; const void *src; size_t bytes; } copy;
    struct { size_t n; float alpha; const float *x; float beta; float *y; } axpby;
    struct { size_t n; const float *a, *b; float beta; float *y; } ew; /* add (beta unused), mul */
    /* src/dst + element offsets (offsets, not pointer arithmetic: the buffers may be bf16) */
    struct { size_t rows, cols, ss, ds, src_off, dst_off; const float *src; float *dst; int acc; } copy2d;
    struct { cnn_act act; float alpha; size_t n; const float *x, *y, *dy; float *dx; float *out; } act;
    /* C = act(alpha op(A) op(B) + beta C + bias[n]) (cnn_gemm_desc); math, bias and act
     * zero (F32, NULL, LINEAR) for a plain gemm. Emitted with a bias or act only for
     * a backend with gemm_ex (the run falls back to gemm + bias_add + act_fwd). */
    struct { int ta, tb, m, n, k, lda, ldb, ldc; float alpha, beta; const float *a, *b; float *c;
             cnn_math math; const float *bias; cnn_act act; float act_alpha; } gemm;
    struct { size_t rows, cols; const float *in; float *out; } bias; /* bias_add: in = bias, out = y */
    struct { cnn_conv_desc d; const float *x, *w, *bias, *dy; float *y, *dx, *dw, *db;
             cnn_act act; float alpha; } conv;
    struct { cnn_pool_desc d; const float *x, *dy; float *y, *dx; } pool;
    struct { size_t rows; int c; float eps, momentum; cnn_act act; float alpha;
             const float *x, *dy, *gamma, *beta, *rmean_in, *rvar_in;
             float *mean, *invstd, *var, *y, *dx, *dgamma, *dbeta, *rmean, *rvar; } bn;
    /* batch norm + act + max pool (bn_act_pool_fwd / _bwd): d the pool, x the bn input;
     * forward: rmean_in NULL for batch statistics (saved in mean, invstd, var) */
    struct { cnn_pool_desc d; float eps; cnn_act act; float alpha;
             const float *x, *dy, *gamma, *beta, *rmean_in, *rvar_in;
             float *mean, *invstd, *var, *y, *dx, *dgamma, *dbeta; uint8_t *sel; } bnpool;
    struct { int kout; size_t per_k; float eps; const float *w, *bias, *gamma, *beta, *rmean, *rvar;
             float *wout, *bout; } fold;
    struct { cnn_shortcut_desc d; const float *in; float *out; } sc;
    struct { size_t n; cnn_act act; float alpha; const float *a, *b, *y, *dy; float *out, *da, *db; } addact;
    struct { size_t n; float p; uint64_t seed, stream; float *mask; } drop;
    struct { int n, classes; float inv_temp, smoothing, dscale; const float *logits;
             const int32_t *labels; float *probs, *loss, *dlogits; } sm;
    struct { size_t n; float *p, *m, *v; const float *g; float momentum, wd, b1, b2, eps;
             int nesterov, decoupled; } opt;
    struct { int has_sched; cnn_sched_desc sd; int train; } step;
    struct { size_t n; const float *x; } check;
    struct { size_t n; const void *src; void *dst; cnn_dtype sdt, ddt; } cast;
    /* forward: x -> y; backward: x = dy, y = dx (accumulated) */
    struct { cnn_crop_desc d; const float *x; float *y; } crop;
    struct { cnn_reorg_desc d; const float *x; float *y; } reorg;
    struct { int n, h, w, c; const uint8_t *images; const int32_t *labels, *perm; const float *lut;
             cnn_augment aug; float *x; int32_t *y; } gather;
  } u;
} cnn_node;

/* What a program does: inference; a training step; forward + loss + backward
 * without the optimizer (GRAD) or forward + loss only (LOSS), for the gradient
 * checker; a training step whose batch comes from the bound dataset (DATA). */
typedef enum cnn_prog_kind {
  CNN_PK_INFER = 0, CNN_PK_TRAIN, CNN_PK_GRAD, CNN_PK_LOSS, CNN_PK_DATA
} cnn_prog_kind;

typedef struct cnn_program {
  int batch;             /* images per step this program was compiled for */
  cnn_prog_kind kind;
  cnn_node *nodes;
  int n_nodes, cap_nodes;
  int n_prologue;        /* nodes [0, n_prologue) run only when the parameters changed */
  cnn_step_state *st;    /* backend memory */
  /* cuda graphs: captured after `runs` reaches the warm-up count */
  void *graph;
  int runs;
  double *node_s;        /* [n_nodes] seconds per node summed over runs (profiling) */
} cnn_program;

typedef struct cnn_net cnn_net;

/* Compile the net (built, planned for at least n images) for n images. */
cnn_status cnn_program_compile(cnn_net *net, int n, cnn_prog_kind kind, cnn_program **out);
/* bf16 builds: cast nodes around every node that reads or writes a bf16 buffer
 * (lower_bf16.c) */
cnn_status cnn_program_lower_bf16(const cnn_net *net, cnn_program *p);
/* the conv pass a node runs (a cnn_conv_dir), or -1 when it is no conv node */
int cnn_node_conv_dir(const cnn_node *nd);
/* Append a node (layers call this from emit_fwd / emit_bwd). */
cnn_status cnn_program_emit(cnn_program *p, const cnn_node *node);
/* Run the prologue (if `prologue`) and then the body once on the net's backend. */
cnn_status cnn_program_run(cnn_net *net, cnn_program *p, int prologue);
void cnn_program_free(cnn_net *net, cnn_program *p);
/* One line per node: index, op, layer, dtype, sizes (for `cnn summary --program`). */
void cnn_program_print(const cnn_net *net, const cnn_program *p, void *file);
/* Time per op kind of a program run with net->profile set. */
void cnn_program_profile_print(const cnn_net *net, const cnn_program *p, void *file);

#endif
