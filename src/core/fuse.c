/* Fusion: which layers run inside which, decided once per build.
 *
 * The patterns are matched on the layer graph rather than on the emitted node list:
 * a forward pattern fixes its backward nodes too, and deciding before planning lets
 * the planner drop the buffers of the layers absorbed (an absorbed activation
 * shares its absorber's y and dy). Patterns, each taken only when the backend has
 * the fused op and the intermediate output has no other reader:
 *   batch norm -> activation          one bn_act node forward, one backward (any act)
 *   batch norm [-> act] -> max pool   training, windows without overlap (<= 255 cells): one
 *                                     bn_act_pool node forward, one backward; the
 *                                     full-size normalised map is never stored (the
 *                                     group's y and dy are the pool's)
 *   activation -> max pool            training, the same windows: the bn_act_pool
 *                                     nodes without batch norm (gamma NULL)
 *   conv -> batch norm [-> act]       inference: BN folded into the conv's weights,
 *                                     the activation as the conv epilogue
 *   conv -> act                       inference: the activation as the conv epilogue
 *   dense -> act                      inference, backends with gemm_ex: the activation as
 *                                     the gemm's epilogue (dense.c; its bias always is)
 *   shortcut (same shapes) -> act     add_act forward and backward (training needs an
 *                                     activation whose derivative follows from y)
 * Softmax cross-entropy is always one node (see softmax.c). */
#include <stdlib.h>

#include "core/net.h"

/* the max pool right after `tail` (the end of i's group) that reads only it, with
 * windows bn_act_pool takes (no overlap, at most 255 cells), when the backend has the
 * op and the pool's output is not the net's */
static int pool_after(const cnn_net *net, const int *readers, int tail, int train) {
  const cnn_backend_ops *o = net->b->ops;
  if (!train || !o->bn_act_pool_fwd || !o->bn_act_pool_bwd || tail + 2 >= net->n_layers ||
      readers[tail] != 1)
    return -1;
  const cnn_layer *pl = &net->layers[tail + 1];
  if (pl->kind != &cnn_kind_maxpool || pl->n_in != 1 || pl->in[0] != tail ||
      pl->stride_h < pl->kh || pl->stride_w < pl->kw || pl->kh * pl->kw > 255)
    return -1;
  return tail + 1;
}

static void absorb_pool(cnn_net *net, int owner, int pool) {
  net->layers[owner].fused_pool = pool;
  net->layers[owner].fused_pool_out = net->layers[pool].out;
  net->layers[pool].absorbed_by = owner;
}

/* the act layer right after i that reads only i, when i has no other reader */
static int sole_act_after(const cnn_net *net, const int *readers, int i) {
  if (i + 1 >= net->n_layers || readers[i] != 1) return -1;
  const cnn_layer *a = &net->layers[i + 1];
  return a->kind == &cnn_kind_act && a->n_in == 1 && a->in[0] == i ? i + 1 : -1;
}

static void absorb(cnn_net *net, int owner, int j) {
  net->layers[j].absorbed_by = owner;
}

void cnn_net_fuse(cnn_net *net, int train) {
  int L = net->n_layers;
  for (int i = 0; i < L; i++) {
    cnn_layer *l = &net->layers[i];
    l->absorbed_by = -1;
    l->fused_act = CNN_ACT_LINEAR;
    l->fused_alpha = 0;
    l->fold_bn = -1;
    l->fused_pool = -1;
    l->fold_w = l->fold_b = NULL;
  }
  const cnn_backend_ops *o = net->b ? net->b->ops : NULL;
  int *readers = calloc((size_t)L, sizeof *readers);
  if (net->no_fuse || !o || !readers) {
    free(readers);
    return;
  }
  for (int j = 0; j < L; j++)
    for (int q = 0; q < net->layers[j].n_in; q++)
      if (net->layers[j].in[q] >= 0) readers[net->layers[j].in[q]]++;
  for (int i = 0; i < L; i++) {
    cnn_layer *l = &net->layers[i];
    if (l->absorbed_by >= 0) continue;
    int tail = i;
    if (!train && l->kind == &cnn_kind_conv && o->conv_fwd_act) {
      if (o->bn_fold && i + 1 < L && readers[i] == 1 &&
          net->layers[i + 1].kind == &cnn_kind_batchnorm && net->layers[i + 1].in[0] == i) {
        l->fold_bn = i + 1;
        absorb(net, i, i + 1);
        tail = i + 1;
      }
      int a = sole_act_after(net, readers, tail);
      if (a >= 0) {
        l->fused_act = net->layers[a].act;
        l->fused_alpha = net->layers[a].alpha;
        absorb(net, i, a);
      }
    } else if (!train && l->kind == &cnn_kind_dense && o->gemm_ex) {
      int a = sole_act_after(net, readers, i);
      if (a >= 0) {
        l->fused_act = net->layers[a].act;
        l->fused_alpha = net->layers[a].alpha;
        absorb(net, i, a);
      }
    } else if (l->kind == &cnn_kind_batchnorm &&
               (train ? o->bn_act_bwd != NULL : o->bn_act_fwd_infer != NULL)) {
      int a = sole_act_after(net, readers, i);
      if (a >= 0) {
        l->fused_act = net->layers[a].act;
        l->fused_alpha = net->layers[a].alpha;
        absorb(net, i, a);
        tail = a;
      }
      int pool = pool_after(net, readers, tail, train);
      if (pool >= 0) absorb_pool(net, i, pool);
    } else if (l->kind == &cnn_kind_act) { /* left alone by what it follows */
      int pool = pool_after(net, readers, i, train);
      if (pool >= 0) absorb_pool(net, i, pool);
    } else if (l->kind == &cnn_kind_shortcut && o->add_act_fwd && (!train || o->add_act_bwd)) {
      cnn_shape x = l->in_shape[0], f = l->in_shape[1];
      int a = sole_act_after(net, readers, i);
      int from_y = a >= 0 && net->layers[a].act != CNN_ACT_GELU;
      if (a >= 0 && x.h == f.h && x.w == f.w && x.c == f.c && (!train || from_y)) {
        l->fused_act = net->layers[a].act;
        l->fused_alpha = net->layers[a].alpha;
        absorb(net, i, a);
      }
    }
  }
  free(readers);
}
