#define _POSIX_C_SOURCE 200809L /* clock_gettime */
/* Step programs: compiling a built net into a node list, and running it (see
 * program.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/net.h"

static const char *const op_names[CNN_NODE_COUNT] = {
    "fill", "copy", "axpby", "add", "mul", "copy2d", "act_fwd", "act_bwd", "gemm", "bias_add",
    "bias_grad", "conv_fwd", "conv_fwd_act", "conv_bwd_data", "conv_bwd_filter", "maxpool_fwd",
    "maxpool_bwd", "avgpool_fwd", "avgpool_bwd", "bn_act_fwd_train", "bn_act_fwd_infer",
    "bn_act_bwd", "bn_commit", "bn_fold", "shortcut_fwd", "shortcut_bwd", "add_act_fwd",
    "add_act_bwd", "dropout_mask_st", "softmax_xent_step", "sgd_step_st", "adam_step_st",
    "step_begin", "step_end", "check_finite", "cast", "gather_aug", "crop_fwd", "crop_bwd",
    "reorg_fwd", "reorg_bwd", "bn_act_pool_fwd", "bn_act_pool_bwd"};

const char *cnn_node_op_name(cnn_node_op op) {
  return (unsigned)op < CNN_NODE_COUNT ? op_names[op] : "?";
}

/* a node's entry name: its op's, or the overwriting form's */
static const char *node_name(const cnn_node *nd) {
  if (nd->set && nd->op == CNN_NODE_MAXPOOL_BWD) return "maxpool_bwd_set";
  if (nd->set && nd->op == CNN_NODE_BN_BWD) return "bn_act_bwd_set";
  if (nd->set && nd->op == CNN_NODE_BN_POOL_BWD) return "bn_act_pool_bwd_set";
  return cnn_node_op_name(nd->op);
}

const char *cnn_dtype_name(cnn_dtype t) {
  static const char *const names[] = {"f32", "bf16", "f16", "i32", "u8"};
  return (unsigned)t < sizeof names / sizeof *names ? names[t] : "?";
}

/* the backend entry a node needs, or NULL when the backend lacks it */
static const void *entry(const cnn_backend_ops *o, cnn_node_op op) {
  switch (op) {
    case CNN_NODE_FILL: return (const void *)o->fill;
    case CNN_NODE_COPY: return (const void *)o->copy;
    case CNN_NODE_AXPBY: return (const void *)o->axpby;
    case CNN_NODE_ADD: return (const void *)o->add;
    case CNN_NODE_MUL: return (const void *)o->mul;
    case CNN_NODE_COPY2D: return (const void *)o->copy2d;
    case CNN_NODE_ACT_FWD: return (const void *)o->act_fwd;
    case CNN_NODE_ACT_BWD: return (const void *)o->act_bwd;
    case CNN_NODE_GEMM: return (const void *)o->gemm;
    case CNN_NODE_BIAS_ADD: return (const void *)o->bias_add;
    case CNN_NODE_BIAS_GRAD: return (const void *)o->bias_grad;
    case CNN_NODE_CONV_FWD: return (const void *)o->conv_fwd;
    case CNN_NODE_CONV_FWD_ACT: return (const void *)o->conv_fwd_act;
    case CNN_NODE_CONV_BWD_DATA: return (const void *)o->conv_bwd_data;
    case CNN_NODE_CONV_BWD_FILTER: return (const void *)o->conv_bwd_filter;
    case CNN_NODE_MAXPOOL_FWD: return (const void *)o->maxpool_fwd;
    case CNN_NODE_MAXPOOL_BWD: return (const void *)o->maxpool_bwd;
    case CNN_NODE_AVGPOOL_FWD: return (const void *)o->avgpool_fwd;
    case CNN_NODE_AVGPOOL_BWD: return (const void *)o->avgpool_bwd;
    case CNN_NODE_BN_FWD_TRAIN: return (const void *)o->bn_act_fwd_train;
    case CNN_NODE_BN_FWD_INFER: return (const void *)o->bn_act_fwd_infer;
    case CNN_NODE_BN_BWD: return (const void *)o->bn_act_bwd;
    case CNN_NODE_BN_COMMIT: return (const void *)o->bn_commit;
    case CNN_NODE_BN_FOLD: return (const void *)o->bn_fold;
    case CNN_NODE_SHORTCUT_FWD: return (const void *)o->shortcut_fwd;
    case CNN_NODE_SHORTCUT_BWD: return (const void *)o->shortcut_bwd;
    case CNN_NODE_ADD_ACT_FWD: return (const void *)o->add_act_fwd;
    case CNN_NODE_ADD_ACT_BWD: return (const void *)o->add_act_bwd;
    case CNN_NODE_DROPOUT_MASK: return (const void *)o->dropout_mask_st;
    case CNN_NODE_SOFTMAX_XENT: return (const void *)o->softmax_xent_step;
    case CNN_NODE_SGD: return (const void *)o->sgd_step_st;
    case CNN_NODE_ADAM: return (const void *)o->adam_step_st;
    case CNN_NODE_STEP_BEGIN: return (const void *)o->step_begin;
    case CNN_NODE_STEP_END: return (const void *)o->step_end;
    case CNN_NODE_CHECK_FINITE: return (const void *)o->check_finite;
    case CNN_NODE_CAST: return (const void *)o->cast;
    case CNN_NODE_GATHER: return (const void *)o->gather_aug;
    case CNN_NODE_CROP_FWD: return (const void *)o->crop_fwd;
    case CNN_NODE_CROP_BWD: return (const void *)o->crop_bwd;
    case CNN_NODE_REORG_FWD: return (const void *)o->reorg_fwd;
    case CNN_NODE_REORG_BWD: return (const void *)o->reorg_bwd;
    case CNN_NODE_BN_POOL_FWD: return (const void *)o->bn_act_pool_fwd;
    case CNN_NODE_BN_POOL_BWD: return (const void *)o->bn_act_pool_bwd;
    case CNN_NODE_COUNT: break;
  }
  return NULL;
}

static cnn_status run_node_st(const cnn_backend *be, cnn_step_state *st, const cnn_node *nd);

/* the entry a node calls: its op's, or the overwriting form (node.set) */
static const void *node_entry(const cnn_backend_ops *o, const cnn_node *nd) {
  if (nd->set && nd->op == CNN_NODE_MAXPOOL_BWD) return (const void *)o->maxpool_bwd_set;
  if (nd->set && nd->op == CNN_NODE_BN_BWD) return (const void *)o->bn_act_bwd_set;
  if (nd->op == CNN_NODE_BN_POOL_BWD) return entry(o, nd->op); /* set is an argument */
  return nd->set ? NULL : entry(o, nd->op);
}

/* one node on the backend; the caller has checked that its entry exists */
static cnn_status run_node(const cnn_net *net, cnn_step_state *st, const cnn_node *nd) {
  const cnn_backend *be = net->b;
  const cnn_backend_ops *o = be->ops;
  void *c = be->ctx;
  switch (nd->op) {
    case CNN_NODE_FILL: return o->fill(c, nd->u.fill.x, nd->u.fill.n, nd->u.fill.v);
    case CNN_NODE_COPY: return o->copy(c, nd->u.copy.dst, nd->u.copy.src, nd->u.copy.bytes);
    case CNN_NODE_AXPBY: {
      const __typeof__(nd->u.axpby) *a = &nd->u.axpby;
      return o->axpby(c, a->n, a->alpha, a->x, a->beta, a->y);
    }
    case CNN_NODE_ADD: return o->add(c, nd->u.ew.n, nd->u.ew.a, nd->u.ew.b, nd->u.ew.y);
    case CNN_NODE_MUL: return o->mul(c, nd->u.ew.n, nd->u.ew.a, nd->u.ew.b, nd->u.ew.beta, nd->u.ew.y);
    case CNN_NODE_COPY2D: {
      const __typeof__(nd->u.copy2d) *a = &nd->u.copy2d;
      return o->copy2d(c, a->rows, a->cols, a->src + a->src_off, a->ss, a->dst + a->dst_off, a->ds,
                       a->acc);
    }
    case CNN_NODE_ACT_FWD: {
      const __typeof__(nd->u.act) *a = &nd->u.act;
      return o->act_fwd(c, a->act, a->alpha, a->n, a->x, a->out);
    }
    case CNN_NODE_ACT_BWD: {
      const __typeof__(nd->u.act) *a = &nd->u.act;
      return o->act_bwd(c, a->act, a->alpha, a->n, a->x, a->y, a->dy, a->dx);
    }
    case CNN_NODE_GEMM: {
      const __typeof__(nd->u.gemm) *g = &nd->u.gemm;
      if (o->gemm_ex && (g->math != CNN_MATH_F32 || g->bias || g->act != CNN_ACT_LINEAR)) {
        const cnn_gemm_desc d = {.trans_a = g->ta, .trans_b = g->tb, .m = g->m, .n = g->n,
                                 .k = g->k, .lda = g->lda, .ldb = g->ldb, .ldc = g->ldc,
                                 .alpha = g->alpha, .beta = g->beta, .a = g->a, .b = g->b,
                                 .bias = g->bias, .c = g->c, .act = g->act,
                                 .act_alpha = g->act_alpha, .math = g->math};
        return o->gemm_ex(c, &d);
      }
      CNN_TRY(o->gemm(c, g->ta, g->tb, g->m, g->n, g->k, g->alpha, g->a, g->lda, g->b, g->ldb,
                      g->beta, g->c, g->ldc));
      if ((g->bias || g->act != CNN_ACT_LINEAR) && g->ldc != g->n)
        return cnn_error(CNN_UNSUPPORTED, "gemm node with an epilogue and ldc %d != n %d needs "
                         "gemm_ex", g->ldc, g->n);
      if (g->bias) CNN_TRY(o->bias_add(c, (size_t)g->m, (size_t)g->n, g->bias, g->c));
      if (g->act != CNN_ACT_LINEAR)
        return o->act_fwd(c, g->act, g->act_alpha, (size_t)g->m * g->n, g->c, g->c);
      return CNN_OK;
    }
    case CNN_NODE_BIAS_ADD:
      return o->bias_add(c, nd->u.bias.rows, nd->u.bias.cols, nd->u.bias.in, nd->u.bias.out);
    case CNN_NODE_BIAS_GRAD:
      return o->bias_grad(c, nd->u.bias.rows, nd->u.bias.cols, nd->u.bias.in, nd->u.bias.out);
    case CNN_NODE_CONV_FWD:
    case CNN_NODE_CONV_FWD_ACT:
    case CNN_NODE_CONV_BWD_DATA:
    case CNN_NODE_CONV_BWD_FILTER: {
      /* the workspace is planned for the built batch: enough for any n up to it */
      const __typeof__(nd->u.conv) *v = &nd->u.conv;
      void *ws = net->ws;
      size_t wb = net->ws_bytes;
      if (nd->op == CNN_NODE_CONV_FWD) return o->conv_fwd(c, &v->d, v->x, v->w, v->bias, v->y, ws, wb);
      if (nd->op == CNN_NODE_CONV_FWD_ACT)
        return o->conv_fwd_act(c, &v->d, v->x, v->w, v->bias, v->act, v->alpha, v->y, ws, wb);
      if (nd->op == CNN_NODE_CONV_BWD_DATA) return o->conv_bwd_data(c, &v->d, v->dy, v->w, v->dx, ws, wb);
      return o->conv_bwd_filter(c, &v->d, v->x, v->dy, v->dw, v->db, ws, wb);
    }
    case CNN_NODE_MAXPOOL_FWD: return o->maxpool_fwd(c, &nd->u.pool.d, nd->u.pool.x, nd->u.pool.y);
    case CNN_NODE_MAXPOOL_BWD:
      return (nd->set ? o->maxpool_bwd_set : o->maxpool_bwd)(c, &nd->u.pool.d, nd->u.pool.x,
                                                             nd->u.pool.dy, nd->u.pool.dx);
    case CNN_NODE_AVGPOOL_FWD: return o->avgpool_fwd(c, &nd->u.pool.d, nd->u.pool.x, nd->u.pool.y);
    case CNN_NODE_AVGPOOL_BWD: return o->avgpool_bwd(c, &nd->u.pool.d, nd->u.pool.dy, nd->u.pool.dx);
    case CNN_NODE_BN_FWD_TRAIN: {
      const __typeof__(nd->u.bn) *b = &nd->u.bn;
      return o->bn_act_fwd_train(c, b->rows, b->c, b->x, b->gamma, b->beta, b->eps, b->act,
                                 b->alpha, b->mean, b->invstd, b->var, b->y);
    }
    case CNN_NODE_BN_FWD_INFER: {
      const __typeof__(nd->u.bn) *b = &nd->u.bn;
      return o->bn_act_fwd_infer(c, b->rows, b->c, b->x, b->gamma, b->beta, b->rmean_in,
                                 b->rvar_in, b->eps, b->act, b->alpha, b->y);
    }
    case CNN_NODE_BN_BWD: {
      const __typeof__(nd->u.bn) *b = &nd->u.bn;
      return (nd->set ? o->bn_act_bwd_set : o->bn_act_bwd)(c, b->rows, b->c, b->x, b->dy, b->gamma,
                                                           b->beta, b->mean, b->invstd, b->act,
                                                           b->alpha, b->dx, b->dgamma, b->dbeta);
    }
    case CNN_NODE_BN_POOL_FWD: {
      const __typeof__(nd->u.bnpool) *b = &nd->u.bnpool;
      return o->bn_act_pool_fwd(c, &b->d, b->x, b->gamma, b->beta, b->eps, b->act, b->alpha,
                                b->rmean_in, b->rvar_in, b->mean, b->invstd, b->var, b->sel,
                                b->y);
    }
    case CNN_NODE_BN_POOL_BWD: {
      const __typeof__(nd->u.bnpool) *b = &nd->u.bnpool;
      return o->bn_act_pool_bwd(c, &b->d, b->x, b->dy, b->sel, b->gamma, b->beta, b->mean,
                                b->invstd, b->act, b->alpha, b->dx, b->dgamma, b->dbeta, nd->set);
    }
    default: break;
  }
  return run_node_st(be, st, nd);
}

/* the rest: mostly the nodes that read or write the step state */
static cnn_status run_node_st(const cnn_backend *be, cnn_step_state *st, const cnn_node *nd) {
  const cnn_backend_ops *o = be->ops;
  void *c = be->ctx;
  switch (nd->op) {
    case CNN_NODE_BN_COMMIT: {
      const __typeof__(nd->u.bn) *b = &nd->u.bn;
      return o->bn_commit(c, b->c, b->rows, b->momentum, b->mean, b->var, b->rmean, b->rvar, st);
    }
    case CNN_NODE_BN_FOLD: {
      const __typeof__(nd->u.fold) *f = &nd->u.fold;
      return o->bn_fold(c, f->kout, f->per_k, f->w, f->bias, f->gamma, f->beta, f->rmean, f->rvar,
                        f->eps, f->wout, f->bout);
    }
    case CNN_NODE_SHORTCUT_FWD: return o->shortcut_fwd(c, &nd->u.sc.d, nd->u.sc.in, nd->u.sc.out);
    case CNN_NODE_SHORTCUT_BWD: return o->shortcut_bwd(c, &nd->u.sc.d, nd->u.sc.in, nd->u.sc.out);
    case CNN_NODE_ADD_ACT_FWD: {
      const __typeof__(nd->u.addact) *a = &nd->u.addact;
      return o->add_act_fwd(c, a->n, a->a, a->b, a->act, a->alpha, a->out);
    }
    case CNN_NODE_ADD_ACT_BWD: {
      const __typeof__(nd->u.addact) *a = &nd->u.addact;
      return o->add_act_bwd(c, a->n, a->y, a->dy, a->act, a->alpha, a->da, a->db);
    }
    case CNN_NODE_DROPOUT_MASK: {
      const __typeof__(nd->u.drop) *d = &nd->u.drop;
      return o->dropout_mask_st(c, d->n, d->p, d->seed, d->stream, st, d->mask);
    }
    case CNN_NODE_SOFTMAX_XENT: {
      const __typeof__(nd->u.sm) *s = &nd->u.sm;
      return o->softmax_xent_step(c, s->n, s->classes, s->logits, s->inv_temp, s->labels,
                                  s->smoothing, s->probs, s->loss, s->dlogits, s->dscale, st);
    }
    case CNN_NODE_SGD: {
      const __typeof__(nd->u.opt) *a = &nd->u.opt;
      return o->sgd_step_st(c, a->n, a->p, a->g, a->v, a->momentum, a->wd, a->nesterov, st);
    }
    case CNN_NODE_ADAM: {
      const __typeof__(nd->u.opt) *a = &nd->u.opt;
      return o->adam_step_st(c, a->n, a->p, a->g, a->m, a->v, a->b1, a->b2, a->eps, a->wd,
                             a->decoupled, st);
    }
    case CNN_NODE_STEP_BEGIN:
      return o->step_begin(c, st, nd->u.step.has_sched ? &nd->u.step.sd : NULL);
    case CNN_NODE_STEP_END: return o->step_end(c, st, nd->u.step.train);
    case CNN_NODE_CHECK_FINITE: return o->check_finite(c, nd->u.check.n, nd->u.check.x, st);
    case CNN_NODE_CAST: {
      const __typeof__(nd->u.cast) *a = &nd->u.cast;
      return o->cast(c, a->n, a->src, a->sdt, a->dst, a->ddt);
    }
    case CNN_NODE_GATHER: {
      const __typeof__(nd->u.gather) *g = &nd->u.gather;
      return o->gather_aug(c, g->n, g->h, g->w, g->c, g->images, g->labels, g->perm, g->lut, &g->aug,
                           g->x, g->y, st);
    }
    case CNN_NODE_CROP_FWD: return o->crop_fwd(c, &nd->u.crop.d, nd->u.crop.x, nd->u.crop.y, st);
    case CNN_NODE_CROP_BWD: return o->crop_bwd(c, &nd->u.crop.d, nd->u.crop.x, nd->u.crop.y, st);
    case CNN_NODE_REORG_FWD: return o->reorg_fwd(c, &nd->u.reorg.d, nd->u.reorg.x, nd->u.reorg.y);
    case CNN_NODE_REORG_BWD: return o->reorg_bwd(c, &nd->u.reorg.d, nd->u.reorg.x, nd->u.reorg.y);
    default: break;
  }
  return CNN_UNSUPPORTED;
}

cnn_status cnn_program_emit(cnn_program *p, const cnn_node *node) {
  if (p->n_nodes == p->cap_nodes) {
    int cap = p->cap_nodes ? p->cap_nodes * 2 : 64;
    cnn_node *n = realloc(p->nodes, (size_t)cap * sizeof *n);
    if (!n) return cnn_error(CNN_ERR_NOMEM, "out of memory compiling a step program");
    p->nodes = n;
    p->cap_nodes = cap;
  }
  p->nodes[p->n_nodes++] = *node;
  return CNN_OK;
}

static cnn_status emit_own(cnn_program *p, cnn_node nd) {
  nd.layer = -1;
  return cnn_program_emit(p, &nd);
}

/* the last layer absorbed into i (i itself if none): its readers are i's readers */
static int tail_of(const cnn_net *net, int i) {
  while (i + 1 < net->n_layers && net->layers[i + 1].absorbed_by >= 0 &&
         net->layers[i + 1].absorbed_by == (net->layers[i].absorbed_by >= 0
                                                ? net->layers[i].absorbed_by : i))
    i++;
  return i;
}

/* zero the gradient of each input of j whose first writer j is (j is its last reader) */
static cnn_status emit_fills(cnn_program *p, cnn_net *net, int j, int n) {
  cnn_layer *l = &net->layers[j];
  for (int q = 0; q < l->n_in; q++) {
    int i = l->in[q];
    if (i < 0) continue;
    int dup = 0; /* the same input twice in one layer: zero once */
    for (int r = 0; r < q; r++)
      if (l->in[r] == i) dup = 1;
    cnn_layer *src = &net->layers[i];
    if (src->last_consumer == j && !dup)
      CNN_TRY(CNN_EMIT(p, net, l, CNN_NODE_FILL, fill, .x = src->dy,
                       .n = (size_t)n * cnn_shape_count(src->out), .v = 0.0f));
  }
  return CNN_OK;
}


static cnn_status compile(cnn_net *net, cnn_program *p, int n, cnn_prog_kind kind) {
  int L = net->n_layers, train = kind != CNN_PK_INFER, data = kind == CNN_PK_DATA;
  if (data) kind = CNN_PK_TRAIN; /* the same step after the gather node */
  cnn_layer *loss = &net->layers[L - 1];
  int has_loss = train && loss->kind == &cnn_kind_softmax;
  /* prologue: BN folded into conv weights (inference builds, when parameters change) */
  for (int i = 0; i < L && !train; i++) {
    cnn_layer *l = &net->layers[i], *bn = l->fold_bn >= 0 ? &net->layers[l->fold_bn] : NULL;
    if (!bn) continue;
    const cnn_tensor_entry *w = &net->tensors[l->param[0]];
    CNN_TRY(CNN_EMIT(p, net, l, CNN_NODE_BN_FOLD, fold, .kout = l->filters,
                     .per_k = w->count / (size_t)l->filters, .eps = net->tc.bn_eps,
                     .w = cnn_param_ptr(net, l, 0), .bias = l->bias ? cnn_param_ptr(net, l, 1) : NULL,
                     .gamma = cnn_param_ptr(net, bn, 0), .beta = cnn_param_ptr(net, bn, 1),
                     .rmean = cnn_param_ptr(net, bn, 2), .rvar = cnn_param_ptr(net, bn, 3),
                     .wout = l->fold_w, .bout = l->fold_b));
  }
  p->n_prologue = p->n_nodes;
  CNN_TRY(emit_own(p, (cnn_node){.op = CNN_NODE_STEP_BEGIN,
                                 .u.step = {.has_sched = kind == CNN_PK_TRAIN, .sd = cnn_net_sched(net)}}));
  if (data) { /* u8 images: nothing to check for NaN */
    const cnn_bound_data *d = &net->data;
    CNN_TRY(emit_own(p, (cnn_node){.op = CNN_NODE_GATHER,
                                   .u.gather = {.n = n, .h = net->in_h, .w = net->in_w,
                                                .c = net->in_c, .images = d->images,
                                                .labels = d->labels, .perm = d->perm,
                                                .lut = d->lut, .aug = d->aug, .x = net->x,
                                                .y = net->labels}}));
  } else {
    CNN_TRY(emit_own(p, (cnn_node){.op = CNN_NODE_CHECK_FINITE,
                                   .u.check = {.n = (size_t)n * net->in_h * net->in_w * net->in_c,
                                               .x = net->x}}));
  }
  for (int i = 0; i < L; i++) {
    cnn_layer *l = &net->layers[i];
    if (l->absorbed_by >= 0) continue;
    if (has_loss && i == L - 1) CNN_TRY(emit_fills(p, net, i, n)); /* it writes d logits now */
    cnn_status st = l->kind->emit_fwd(p, net, l, n, train);
    if (st != CNN_OK)
      return cnn_error_prefix(st, "forward of layer %d (%s, %s)", l->section, l->name, l->kind->name);
  }
  if (kind == CNN_PK_TRAIN || kind == CNN_PK_GRAD) {
    for (int j = L - 1; j >= 0; j--) {
      cnn_layer *l = &net->layers[j];
      /* frozen layers, and those before the first that trains: no gradient is
       * needed in or before them (freezing is a prefix of the sections) */
      if (l->absorbed_by >= 0 || l->no_grad) continue;
      if (!(has_loss && j == L - 1)) CNN_TRY(emit_fills(p, net, j, n));
      int t = tail_of(net, j);
      if (l->dy && net->layers[t].last_consumer < 0 && t != L - 1) /* nothing reads it */
        CNN_TRY(CNN_EMIT(p, net, l, CNN_NODE_FILL, fill, .x = l->dy,
                         .n = (size_t)n * cnn_shape_count(l->out), .v = 0.0f));
      cnn_status st = l->kind->emit_bwd(p, net, l, n);
      if (st != CNN_OK)
        return cnn_error_prefix(st, "backward of layer %d (%s, %s)", l->section, l->name,
                                l->kind->name);
    }
  }
  if (kind == CNN_PK_TRAIN) {
    CNN_TRY(cnn_optim_emit(p, net));
    for (int i = 0; i < L; i++) {
      cnn_layer *l = &net->layers[i];
      if (l->absorbed_by < 0 && l->kind->emit_commit && !cnn_layer_frozen(net, l))
        CNN_TRY(l->kind->emit_commit(p, net, l, n));
    }
  }
  return emit_own(p, (cnn_node){.op = CNN_NODE_STEP_END, .u.step = {.train = kind == CNN_PK_TRAIN}});
}

/* The first writer of a gradient overwrites it where the backend can: a zero-fill
 * of a buffer followed at once by a maxpool, batch-norm or batch-norm + pool
 * backward whose dx is exactly that buffer becomes the op's overwriting form (the
 * fill's zeros would cost a write of dx, and the op a read of them). */
static void first_writers(const cnn_backend_ops *o, cnn_program *p) {
  int k = p->n_prologue;
  for (int i = p->n_prologue; i < p->n_nodes; i++) {
    cnn_node *f = &p->nodes[i], *nx = i + 1 < p->n_nodes ? &p->nodes[i + 1] : NULL;
    if (f->op == CNN_NODE_FILL && f->u.fill.v == 0.0f && nx && !nx->set) {
      const cnn_pool_desc *d = &nx->u.pool.d;
      int pool = nx->op == CNN_NODE_MAXPOOL_BWD && o->maxpool_bwd_set &&
                 nx->u.pool.dx == f->u.fill.x &&
                 (size_t)d->n * d->h * d->w * d->c == f->u.fill.n;
      int bn = nx->op == CNN_NODE_BN_BWD && o->bn_act_bwd_set && nx->u.bn.dx == f->u.fill.x &&
               nx->u.bn.rows * (size_t)nx->u.bn.c == f->u.fill.n;
      const cnn_pool_desc *e = &nx->u.bnpool.d;
      int bnpool = nx->op == CNN_NODE_BN_POOL_BWD && nx->u.bnpool.dx == f->u.fill.x &&
                   (size_t)e->n * e->h * e->w * e->c == f->u.fill.n;
      if (pool || bn || bnpool) {
        nx->set = 1;
        continue; /* the fill goes */
      }
    }
    p->nodes[k++] = *f;
  }
  p->n_nodes = k;
}

/* every node's op must exist on the backend: no silent fallbacks */
static cnn_status check_support(const cnn_net *net, const cnn_program *p) {
  for (int i = 0; i < p->n_nodes; i++) {
    const cnn_node *nd = &p->nodes[i];
    if (node_entry(net->b->ops, nd)) continue;
    const char *layer = nd->layer >= 0 ? net->layers[nd->layer].name : "(program)";
    return cnn_error(CNN_UNSUPPORTED,
                     "the %s backend cannot run this net: node %d (%s, %s, layer %s) has no "
                     "implementation there", net->b->name, i, node_name(nd),
                     cnn_dtype_name(nd->dtype), layer);
  }
  return CNN_OK;
}

/* Backends with several conv engines choose one per pass now, while nothing is being
 * captured: by the tune cache, or by timing them within the planned workspace. */
int cnn_node_conv_dir(const cnn_node *nd) {
  switch (nd->op) {
  case CNN_NODE_CONV_FWD:
  case CNN_NODE_CONV_FWD_ACT: return CNN_CONV_FWD;
  case CNN_NODE_CONV_BWD_DATA: return CNN_CONV_BWD_DATA;
  case CNN_NODE_CONV_BWD_FILTER: return CNN_CONV_BWD_FILTER;
  default: return -1;
  }
}

static cnn_status tune_convs(cnn_net *net, const cnn_program *p) {
  const cnn_backend_ops *o = net->b->ops;
  if (!o->conv_tune) return CNN_OK;
  for (int i = 0; i < p->n_nodes; i++) {
    const cnn_node *nd = &p->nodes[i];
    const int dir = cnn_node_conv_dir(nd);
    if (dir < 0) continue;
    cnn_status st = o->conv_tune(net->b->ctx, &nd->u.conv.d, (cnn_conv_dir)dir,
                                 net->ws ? net->ws_bytes : 0);
    if (st != CNN_OK) {
      const char *layer = nd->layer >= 0 ? net->layers[nd->layer].name : "-";
      return cnn_error_prefix(st, "layer %s", layer);
    }
  }
  return CNN_OK;
}

cnn_status cnn_program_compile(cnn_net *net, int n, cnn_prog_kind kind, cnn_program **out) {
  *out = NULL;
  if (!net->built) return cnn_error(CNN_ERR_ARG, "the net is not built (call cnn_net_build)");
  if (n < 1 || n > net->batch)
    return cnn_error(CNN_ERR_ARG, "%d images do not fit the built batch of %d", n, net->batch);
  if (kind != CNN_PK_INFER && net->mode != CNN_MODE_TRAIN)
    return cnn_error(CNN_ERR_ARG, "the net was built for inference; build it with CNN_MODE_TRAIN");
  cnn_program *p = calloc(1, sizeof *p);
  if (!p) return cnn_error(CNN_ERR_NOMEM, "out of memory compiling a step program");
  p->batch = n;
  p->kind = kind;
  p->st = net->st[kind == CNN_PK_INFER ? 1 : 0];
  if (kind == CNN_PK_DATA && !net->data.images) {
    cnn_program_free(net, p);
    return cnn_error(CNN_ERR_ARG, "no dataset is bound to the net (cnn_net_bind_data)");
  }
  cnn_status st = compile(net, p, n, kind);
  if (st == CNN_OK) first_writers(net->b->ops, p);
  if (st == CNN_OK && net->act_dt == CNN_DT_BF16) st = cnn_program_lower_bf16(net, p);
  if (st == CNN_OK) st = check_support(net, p);
  if (st == CNN_OK) st = tune_convs(net, p);
  if (st != CNN_OK) {
    cnn_program_free(net, p);
    return st;
  }
  *out = p;
  return CNN_OK;
}


static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Profiling on a backend with device timers: a mark before the first node and after
 * each, read once at the end, so nodes run back to back as in a real step (pieces
 * of CNN_TIMER_MARKS - 1 nodes). */
static cnn_status run_range_timed(cnn_net *net, cnn_program *p, int from, int to) {
  const cnn_backend_ops *o = net->b->ops;
  void *c = net->b->ctx;
  float ms[CNN_TIMER_MARKS];
  for (int a = from; a < to; a += CNN_TIMER_MARKS - 1) {
    const int b = a + CNN_TIMER_MARKS - 1 < to ? a + CNN_TIMER_MARKS - 1 : to;
    CNN_TRY(o->timer_mark(c, 0));
    for (int i = a; i < b; i++) {
      const cnn_node *nd = &p->nodes[i];
      cnn_status st = run_node(net, p->st, nd);
      if (st == CNN_OK) st = o->timer_mark(c, i - a + 1);
      if (st != CNN_OK) {
        const char *layer = nd->layer >= 0 ? net->layers[nd->layer].name : "(program)";
        return cnn_error_prefix(st, "node %d (%s of layer %s)", i, node_name(nd),
                                layer);
      }
    }
    CNN_TRY(o->timer_read(c, b - a + 1, ms));
    for (int i = a; i < b; i++) p->node_s[i] += ms[i - a] * 1e-3;
  }
  return CNN_OK;
}

static cnn_status run_range(cnn_net *net, cnn_program *p, int from, int to) {
  if (net->profile && !p->node_s) p->node_s = calloc((size_t)p->n_nodes, sizeof *p->node_s);
  if (p->node_s && net->b->ops->timer_mark && net->b->ops->timer_read)
    return run_range_timed(net, p, from, to);
  for (int i = from; i < to; i++) {
    const cnn_node *nd = &p->nodes[i];
    double t0 = p->node_s ? now_s() : 0;
    cnn_status st = run_node(net, p->st, nd);
    if (p->node_s && st == CNN_OK) { /* profiling: wait for the node (a device may queue it) */
      if (net->b->ops->sync) st = net->b->ops->sync(net->b->ctx);
      p->node_s[i] += now_s() - t0;
    }
    if (st != CNN_OK) {
      const char *layer = nd->layer >= 0 ? net->layers[nd->layer].name : "(program)";
      return cnn_error_prefix(st, "node %d (%s of layer %s)", i, node_name(nd), layer);
    }
  }
  return CNN_OK;
}

/* runs after which a program is captured as a graph (the first runs warm up
 * libraries that allocate on first use, e.g. cuBLAS) */
#define GRAPH_WARMUP 2

cnn_status cnn_program_run(cnn_net *net, cnn_program *p, int prologue) {
  const cnn_backend_ops *o = net->b->ops;
  /* a training step changes the weights; an inference run is told so by the flag */
  if ((prologue || p->kind != CNN_PK_INFER) && o->weights_changed) o->weights_changed(net->b->ctx);
  if (prologue && p->n_prologue) CNN_TRY(run_range(net, p, 0, p->n_prologue));
  /* profiled runs time their nodes one by one: never as a graph */
  int can_graph = net->graphs && !net->profile && o->capture_begin && o->capture_end &&
                  o->graph_launch;
  if (can_graph && !p->graph && p->runs >= GRAPH_WARMUP) {
    CNN_TRY(o->capture_begin(net->b->ctx));
    cnn_status st = run_range(net, p, p->n_prologue, p->n_nodes);
    void *g = NULL;
    cnn_status st2 = o->capture_end(net->b->ctx, &g); /* always end the capture */
    if (st != CNN_OK) {
      if (g && o->graph_free) o->graph_free(net->b->ctx, g);
      return st;
    }
    CNN_TRY(st2);
    p->graph = g;
  }
  if (p->graph && !net->profile) return o->graph_launch(net->b->ctx, p->graph);
  p->runs++;
  return run_range(net, p, p->n_prologue, p->n_nodes);
}

void cnn_program_free(cnn_net *net, cnn_program *p) {
  if (!p) return;
  if (p->graph && net->b && net->b->ops->graph_free) net->b->ops->graph_free(net->b->ctx, p->graph);
  free(p->nodes);
  free(p->node_s);
  free(p);
}

void cnn_program_profile_print(const cnn_net *net, const cnn_program *p, void *file) {
  FILE *f = file;
  if (!p->node_s) return;
  double by_op[CNN_NODE_COUNT] = {0}, total = 0;
  int count[CNN_NODE_COUNT] = {0};
  for (int i = 0; i < p->n_nodes; i++) {
    by_op[p->nodes[i].op] += p->node_s[i];
    count[p->nodes[i].op]++;
    total += p->node_s[i];
  }
  fprintf(f, "time per op over %d runs (batch %d): %.3f ms per run\n", p->runs, p->batch,
          1e3 * total / (p->runs ? p->runs : 1));
  for (int pass = 0; pass < CNN_NODE_COUNT; pass++) { /* largest first */
    int best = -1;
    for (int o = 0; o < CNN_NODE_COUNT; o++)
      if (count[o] && (best < 0 || by_op[o] > by_op[best])) best = o;
    if (best < 0 || by_op[best] <= 0) break;
    fprintf(f, "  %-18s %3d nodes %8.3f ms %5.1f%%\n", cnn_node_op_name((cnn_node_op)best),
            count[best], 1e3 * by_op[best] / (p->runs ? p->runs : 1), 100 * by_op[best] / total);
    count[best] = 0;
  }
}

void cnn_program_print(const cnn_net *net, const cnn_program *p, void *file) {
  FILE *f = file;
  static const char *const kinds[] = {"inference", "training", "gradient", "loss",
                                      "training (bound data)"};
  fprintf(f, "%s program, batch %d: %d nodes (%d in the prologue)\n",
          kinds[(unsigned)p->kind < 5 ? p->kind : 0],
          p->batch, p->n_nodes, p->n_prologue);
  for (int i = 0; i < p->n_nodes; i++) {
    const cnn_node *nd = &p->nodes[i];
    const cnn_layer *l = nd->layer >= 0 ? &net->layers[nd->layer] : NULL;
    const char *fused = "";
    if (nd->op == CNN_NODE_GEMM) { /* its own epilogue and math (gemm_ex) */
      const __typeof__(nd->u.gemm) *g = &nd->u.gemm;
      static const char *const maths[] = {"f32", "tf32", "bf16"};
      fprintf(f, "  %3d  %-19s %-4s %-24s", i, node_name(nd), cnn_dtype_name(nd->dtype),
              l ? l->name : "");
      if (g->bias || g->act != CNN_ACT_LINEAR)
        fprintf(f, "  [+%s%s%s]", g->bias ? "bias" : "",
                g->bias && g->act != CNN_ACT_LINEAR ? ", " : "",
                g->act != CNN_ACT_LINEAR ? cnn_act_name(g->act) : "");
      if (g->math != CNN_MATH_F32)
        fprintf(f, "  math %s", (unsigned)g->math < 3 ? maths[g->math] : "?");
      fputc('\n', f);
      continue;
    }
    if (l && (l->fused_act != CNN_ACT_LINEAR || l->fold_bn >= 0 || l->fused_pool >= 0) &&
        nd->op != CNN_NODE_FILL && nd->op != CNN_NODE_BN_FOLD)
      fused = l->fold_bn >= 0 ? "  [+bn folded" : "  [+";
    fprintf(f, "  %3d  %-19s %-4s %-24s%s", i, node_name(nd), cnn_dtype_name(nd->dtype),
            l ? l->name : "", fused);
    if (*fused) {
      if (l->fused_act != CNN_ACT_LINEAR)
        fprintf(f, "%s%s", l->fold_bn >= 0 ? ", " : "", cnn_act_name(l->fused_act));
      if (l->fused_pool >= 0) /* its name: "maxpool" would read as a layer kind */
        fprintf(f, "%s%s", l->fused_act != CNN_ACT_LINEAR ? ", " : "",
                net->layers[l->fused_pool].name);
      fputc(']', f);
    }
    fputc('\n', f);
  }
}
