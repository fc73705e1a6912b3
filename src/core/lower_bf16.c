/* bf16 programs on f32 ops: the lowering pass.
 *
 * In a bf16 build every activation and activation gradient is stored as bf16 (the
 * plan sizes them at 2 bytes); parameters, their gradients, optimizer state,
 * batch-norm statistics, losses and probabilities stay f32. Until a backend has
 * native bf16 variants of an op, each node that touches a bf16 buffer is lowered
 * into explicit nodes: cast its bf16 operands into f32 scratch, run the f32 op
 * (which accumulates in f32 as always), cast its outputs back to bf16. The casts
 * are ordinary nodes, visible in the program listing, so what runs is what is
 * printed: bf16 storage, f32 arithmetic. */
#include <stdlib.h>
#include <string.h>

#include "core/net.h"

enum { A_IN = 1, A_OUT = 2, A_INOUT = 3 };

typedef struct node_arg {
  void **ptr;   /* the node's pointer field */
  size_t n;     /* elements the op may read or write through it */
  int role;
} node_arg;

#define ARG(field, count, r) (a[k++] = (node_arg){(void **)&(field), (count), (r)})

/* the activation operands of a node (parameters and statistics are never bf16) */
static int args_of(cnn_node *nd, node_arg *a) {
  int k = 0;
  switch (nd->op) {
    case CNN_NODE_AXPBY:
      ARG(nd->u.axpby.x, nd->u.axpby.n, A_IN);
      ARG(nd->u.axpby.y, nd->u.axpby.n, nd->u.axpby.beta != 0 ? A_INOUT : A_OUT);
      break;
    case CNN_NODE_ADD:
    case CNN_NODE_MUL:
      ARG(nd->u.ew.a, nd->u.ew.n, A_IN);
      ARG(nd->u.ew.b, nd->u.ew.n, A_IN);
      ARG(nd->u.ew.y, nd->u.ew.n, nd->op == CNN_NODE_MUL && nd->u.ew.beta != 0 ? A_INOUT : A_OUT);
      break;
    case CNN_NODE_COPY2D: /* the whole buffers: columns outside the copy are kept */
      ARG(nd->u.copy2d.src, nd->u.copy2d.rows * nd->u.copy2d.ss, A_IN);
      ARG(nd->u.copy2d.dst, nd->u.copy2d.rows * nd->u.copy2d.ds, A_INOUT);
      break;
    case CNN_NODE_ACT_FWD:
      ARG(nd->u.act.x, nd->u.act.n, A_IN);
      ARG(nd->u.act.out, nd->u.act.n, A_OUT);
      break;
    case CNN_NODE_ACT_BWD:
      ARG(nd->u.act.x, nd->u.act.n, A_IN);
      ARG(nd->u.act.y, nd->u.act.n, A_IN);
      ARG(nd->u.act.dy, nd->u.act.n, A_IN);
      ARG(nd->u.act.dx, nd->u.act.n, A_INOUT);
      break;
    case CNN_NODE_GEMM: {
      const __typeof__(nd->u.gemm) *g = &nd->u.gemm;
      ARG(nd->u.gemm.a, (size_t)(g->ta ? g->k : g->m) * g->lda, A_IN);
      ARG(nd->u.gemm.b, (size_t)(g->tb ? g->n : g->k) * g->ldb, A_IN);
      ARG(nd->u.gemm.c, (size_t)g->m * g->ldc, g->beta != 0 ? A_INOUT : A_OUT);
      break;
    }
    case CNN_NODE_BIAS_ADD:
      ARG(nd->u.bias.out, nd->u.bias.rows * nd->u.bias.cols, A_INOUT);
      break;
    case CNN_NODE_BIAS_GRAD:
      ARG(nd->u.bias.in, nd->u.bias.rows * nd->u.bias.cols, A_IN);
      break;
    case CNN_NODE_CONV_FWD:
    case CNN_NODE_CONV_FWD_ACT:
    case CNN_NODE_CONV_BWD_DATA:
    case CNN_NODE_CONV_BWD_FILTER: {
      const cnn_conv_desc *d = &nd->u.conv.d;
      size_t nx = (size_t)d->n * d->h * d->w * d->c, ny = (size_t)d->n * d->oh * d->ow * d->k;
      if (nd->op == CNN_NODE_CONV_BWD_DATA) {
        ARG(nd->u.conv.dy, ny, A_IN);
        ARG(nd->u.conv.dx, nx, A_INOUT);
      } else if (nd->op == CNN_NODE_CONV_BWD_FILTER) {
        ARG(nd->u.conv.x, nx, A_IN);
        ARG(nd->u.conv.dy, ny, A_IN);
      } else {
        ARG(nd->u.conv.x, nx, A_IN);
        ARG(nd->u.conv.y, ny, A_OUT);
      }
      break;
    }
    case CNN_NODE_MAXPOOL_FWD:
    case CNN_NODE_AVGPOOL_FWD:
    case CNN_NODE_MAXPOOL_BWD:
    case CNN_NODE_AVGPOOL_BWD: {
      const cnn_pool_desc *d = &nd->u.pool.d;
      size_t nx = (size_t)d->n * d->h * d->w * d->c, ny = (size_t)d->n * d->oh * d->ow * d->c;
      if (nd->op == CNN_NODE_MAXPOOL_FWD || nd->op == CNN_NODE_AVGPOOL_FWD) {
        ARG(nd->u.pool.x, nx, A_IN);
        ARG(nd->u.pool.y, ny, A_OUT);
      } else {
        if (nd->op == CNN_NODE_MAXPOOL_BWD) ARG(nd->u.pool.x, nx, A_IN);
        ARG(nd->u.pool.dy, ny, A_IN);
        ARG(nd->u.pool.dx, nx, nd->set ? A_OUT : A_INOUT);
      }
      break;
    }
    case CNN_NODE_BN_POOL_FWD:
    case CNN_NODE_BN_POOL_BWD: {
      const cnn_pool_desc *d = &nd->u.bnpool.d;
      size_t nx = (size_t)d->n * d->h * d->w * d->c, ny = (size_t)d->n * d->oh * d->ow * d->c;
      ARG(nd->u.bnpool.x, nx, A_IN);
      if (nd->op == CNN_NODE_BN_POOL_FWD) {
        ARG(nd->u.bnpool.y, ny, A_OUT);
      } else {
        ARG(nd->u.bnpool.dy, ny, A_IN);
        ARG(nd->u.bnpool.dx, nx, nd->set ? A_OUT : A_INOUT);
      }
      break;
    }
    case CNN_NODE_BN_FWD_TRAIN:
    case CNN_NODE_BN_FWD_INFER:
    case CNN_NODE_BN_BWD: {
      size_t n = nd->u.bn.rows * (size_t)nd->u.bn.c;
      ARG(nd->u.bn.x, n, A_IN);
      if (nd->op == CNN_NODE_BN_BWD) {
        ARG(nd->u.bn.dy, n, A_IN);
        ARG(nd->u.bn.dx, n, nd->set ? A_OUT : A_INOUT);
      } else {
        ARG(nd->u.bn.y, n, A_OUT);
      }
      break;
    }
    case CNN_NODE_SHORTCUT_FWD:
    case CNN_NODE_SHORTCUT_BWD: {
      const cnn_shortcut_desc *d = &nd->u.sc.d;
      size_t n1 = (size_t)d->n * d->h1 * d->w1 * d->c1, n2 = (size_t)d->n * d->h2 * d->w2 * d->c2;
      int fwd = nd->op == CNN_NODE_SHORTCUT_FWD;
      ARG(nd->u.sc.in, fwd ? n1 : n2, A_IN);
      ARG(nd->u.sc.out, fwd ? n2 : n1, A_INOUT);
      break;
    }
    case CNN_NODE_ADD_ACT_FWD:
      ARG(nd->u.addact.a, nd->u.addact.n, A_IN);
      ARG(nd->u.addact.b, nd->u.addact.n, A_IN);
      ARG(nd->u.addact.out, nd->u.addact.n, A_OUT);
      break;
    case CNN_NODE_ADD_ACT_BWD:
      ARG(nd->u.addact.y, nd->u.addact.n, A_IN);
      ARG(nd->u.addact.dy, nd->u.addact.n, A_IN);
      ARG(nd->u.addact.da, nd->u.addact.n, A_INOUT);
      ARG(nd->u.addact.db, nd->u.addact.n, A_INOUT);
      break;
    case CNN_NODE_SOFTMAX_XENT: {
      size_t n = (size_t)nd->u.sm.n * nd->u.sm.classes;
      ARG(nd->u.sm.logits, n, A_IN);
      ARG(nd->u.sm.dlogits, n, A_INOUT);
      break;
    }
    case CNN_NODE_CROP_FWD:
    case CNN_NODE_CROP_BWD: {
      const cnn_crop_desc *d = &nd->u.crop.d;
      size_t nx = (size_t)d->n * d->h * d->w * d->c, ny = (size_t)d->n * d->oh * d->ow * d->c;
      int fwd = nd->op == CNN_NODE_CROP_FWD;
      ARG(nd->u.crop.x, fwd ? nx : ny, A_IN);
      ARG(nd->u.crop.y, fwd ? ny : nx, fwd ? A_OUT : A_INOUT);
      break;
    }
    case CNN_NODE_REORG_FWD:
    case CNN_NODE_REORG_BWD: {
      const cnn_reorg_desc *d = &nd->u.reorg.d;
      size_t nx = (size_t)d->n * d->h * d->w * d->c, ny = (size_t)d->n * d->oh * d->ow * d->oc;
      int fwd = nd->op == CNN_NODE_REORG_FWD;
      ARG(nd->u.reorg.x, fwd ? nx : ny, A_IN);
      ARG(nd->u.reorg.y, fwd ? ny : nx, fwd ? A_OUT : A_INOUT);
      break;
    }
    default: /* fill and copy are handled by the caller; the rest touch no activation */
      break;
  }
  return k;
}

/* the dtype of the planned buffer holding p (f32 outside the arena) */
static cnn_dtype dtype_at(const cnn_net *net, const void *p) {
  const char *c = p;
  for (int i = 0; c && i < net->n_bufs; i++)
    if (c >= net->bufs[i].p && c < net->bufs[i].p + net->bufs[i].bytes) return net->bufs[i].dt;
  return CNN_DT_F32;
}

static cnn_status cast_node(cnn_program *out, int layer, size_t n, const void *src, cnn_dtype sdt,
                            void *dst, cnn_dtype ddt) {
  cnn_node c = {.op = CNN_NODE_CAST, .layer = layer, .dtype = CNN_DT_BF16};
  c.u.cast.n = n;
  c.u.cast.src = src;
  c.u.cast.sdt = sdt;
  c.u.cast.dst = dst;
  c.u.cast.ddt = ddt;
  return cnn_program_emit(out, &c);
}

static cnn_status lower_node(const cnn_net *net, cnn_node nd, cnn_program *out) {
  if (nd.op == CNN_NODE_FILL && dtype_at(net, nd.u.fill.x) == CNN_DT_BF16) {
    /* all-zero bits either way: n bf16 zeros are ceil(n/2) f32 zeros (the planner
     * rounds buffers up to 256 bytes, so the last half-word is inside the buffer) */
    if (nd.u.fill.v != 0.0f) return cnn_error(CNN_ERR_ARG, "a non-zero fill of a bf16 buffer");
    nd.u.fill.n = (nd.u.fill.n + 1) / 2;
    nd.dtype = CNN_DT_BF16;
    return cnn_program_emit(out, &nd);
  }
  if (nd.op == CNN_NODE_COPY) { /* a copy between dtypes is a cast */
    cnn_dtype s = dtype_at(net, nd.u.copy.src), d = dtype_at(net, nd.u.copy.dst);
    if (s == CNN_DT_F32 && d == CNN_DT_F32) return cnn_program_emit(out, &nd);
    return cast_node(out, nd.layer, nd.u.copy.bytes / sizeof(float), nd.u.copy.src, s,
                     nd.u.copy.dst, d);
  }
  node_arg a[8];
  int k = args_of(&nd, a);
  void *orig[8], *slot_ptr[CNN_CAST_SLOTS];
  int role[CNN_CAST_SLOTS], slot_of[8], used = 0;
  size_t count[CNN_CAST_SLOTS];
  for (int i = 0; i < k; i++) {
    orig[i] = *a[i].ptr;
    slot_of[i] = -1;
    if (!orig[i] || dtype_at(net, orig[i]) != CNN_DT_BF16) continue;
    int s = -1;
    for (int j = 0; j < i; j++) /* the same buffer twice (in place, a + a): one slot */
      if (slot_of[j] >= 0 && orig[j] == orig[i]) s = slot_of[j];
    if (s < 0) {
      if (used == CNN_CAST_SLOTS || a[i].n > net->cast_slot)
        return cnn_error(CNN_ERR_SHAPE, "bf16 lowering: node %s needs more f32 scratch than planned",
                         cnn_node_op_name(nd.op));
      s = used++;
      slot_ptr[s] = net->cast_ws + (size_t)s * net->cast_slot;
      role[s] = 0;
      count[s] = 0;
    }
    slot_of[i] = s;
    role[s] |= a[i].role;
    if (a[i].n > count[s]) count[s] = a[i].n;
  }
  for (int s = 0; s < used; s++) { /* operands in */
    int i = 0;
    while (slot_of[i] != s) i++;
    if (role[s] & A_IN)
      CNN_TRY(cast_node(out, nd.layer, count[s], orig[i], CNN_DT_BF16, slot_ptr[s], CNN_DT_F32));
  }
  for (int i = 0; i < k; i++)
    if (slot_of[i] >= 0) *a[i].ptr = slot_ptr[slot_of[i]];
  if (used) nd.dtype = CNN_DT_BF16;
  CNN_TRY(cnn_program_emit(out, &nd));
  for (int s = 0; s < used; s++) { /* results out */
    int i = 0;
    while (slot_of[i] != s) i++;
    if (role[s] & A_OUT)
      CNN_TRY(cast_node(out, nd.layer, count[s], slot_ptr[s], CNN_DT_F32, orig[i], CNN_DT_BF16));
  }
  return CNN_OK;
}

cnn_status cnn_program_lower_bf16(const cnn_net *net, cnn_program *p) {
  cnn_program out = *p;
  out.nodes = NULL;
  out.n_nodes = out.cap_nodes = 0;
  cnn_status st = CNN_OK;
  for (int i = 0; i < p->n_nodes && st == CNN_OK; i++) st = lower_node(net, p->nodes[i], &out);
  if (st != CNN_OK) {
    free(out.nodes);
    return st;
  }
  free(p->nodes);
  p->nodes = out.nodes;
  p->n_nodes = out.n_nodes;
  p->cap_nodes = out.cap_nodes;
  return CNN_OK; /* the prologue (bn_fold: parameters only) gains no nodes */
}
