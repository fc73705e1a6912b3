/* The memory plan: parameters, gradients, optimizer state and running
 * statistics each in one flat buffer; activations, their gradients and the
 * layers' aux buffers placed in one arena by liveness; one shared workspace.
 *
 * Time runs forward 0..L-1 then backward L..2L-1 (layer i's backward at 2L-1-i).
 * Inference: y_i lives from i to its last consumer. Training: every y_i and aux
 * lives the whole step (backward reads them); dy_i lives from its first writer
 * (the backward of its last consumer) to layer i's backward. */
#include <stdlib.h>
#include <string.h>

#include "core/net.h"

#define ALIGN 256

typedef struct pbuf {
  size_t bytes, offset;
  int t0, t1;          /* live interval, inclusive */
  float **slot;        /* where to store the pointer */
  cnn_dtype dt;
} pbuf;

static size_t align_up(size_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

static int cmp_size_desc(const void *a, const void *b) {
  const pbuf *x = a, *y = b;
  if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
  return x->t0 - y->t0;
}

/* first fit: the lowest offset not overlapping any placed buffer live at the same time */
static size_t place_all(pbuf *bufs, int n) {
  qsort(bufs, (size_t)n, sizeof *bufs, cmp_size_desc);
  size_t top = 0;
  for (int i = 0; i < n; i++) {
    size_t off = 0;
    for (int moved = 1; moved;) {
      moved = 0;
      for (int j = 0; j < i; j++) {
        if (bufs[j].t1 < bufs[i].t0 || bufs[i].t1 < bufs[j].t0) continue;
        if (off < bufs[j].offset + bufs[j].bytes && bufs[j].offset < off + bufs[i].bytes) {
          off = bufs[j].offset + bufs[j].bytes;
          moved = 1;
        }
      }
    }
    bufs[i].offset = off;
    if (off + bufs[i].bytes > top) top = off + bufs[i].bytes;
  }
  return top;
}

void cnn_net_release(cnn_net *net) {
  if (!net->b) return;
  cnn_net_drop_programs(net);
  cnn_net_unbind_data(net);
  void *ctx = net->b->ctx;
  const cnn_backend_ops *o = net->b->ops;
  if (net->read_pending && o->read_done) o->read_done(ctx, 1); /* nothing lands in freed memory */
  net->read_pending = 0;
  void *ptrs[] = {net->params, net->grads, net->state, net->opt[0], net->opt[1], net->arena,
                  net->ws, net->x, net->labels, net->st[0], net->st[1], net->fold, net->cast_ws};
  for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++)
    if (ptrs[i]) o->free(ctx, ptrs[i]);
  net->params = net->grads = net->state = net->opt[0] = net->opt[1] = NULL;
  net->x = NULL;
  net->arena = net->ws = NULL;
  net->labels = NULL;
  net->st[0] = net->st[1] = NULL;
  net->fold = NULL;
  net->cast_ws = NULL;
  free(net->bufs);
  net->bufs = NULL;
  net->n_bufs = 0;
  if (net->host_st) {
    if (o->host_free) o->host_free(ctx, net->host_st);
    else free(net->host_st);
  }
  net->host_st = NULL;
  free(net->host_out);
  free(net->host_loss);
  net->host_out = net->host_loss = NULL;
  for (int i = 0; i < net->n_layers; i++) {
    cnn_layer *l = &net->layers[i];
    l->y = l->dy = NULL;
    l->fold_w = l->fold_b = NULL;
    for (int j = 0; j < CNN_MAX_AUX; j++) l->aux[j] = NULL;
  }
  net->built = 0;
  net->b = NULL;
}

cnn_status cnn_net_sync_to_host(cnn_net *net) {
  if (!net->built) return CNN_OK;
  CNN_TRY(CNN_OP(net, download, net->host_params, net->params, net->n_params * sizeof(float)));
  return CNN_OP(net, download, net->host_state, net->state, net->n_state * sizeof(float));
}

static cnn_status balloc(cnn_net *net, size_t bytes, void **p) {
  cnn_status st = net->b->ops->alloc(net->b->ctx, bytes ? bytes : ALIGN, p);
  if (st != CNN_OK)
    return cnn_error_prefix(st, "allocating %zu bytes on %s", bytes, net->b->name);
  return CNN_OK;
}

/* collect every activation-arena buffer with its live interval */
static cnn_status collect(cnn_net *net, int n, int train, pbuf **out, int *count) {
  int L = net->n_layers, cap = L * (2 + CNN_MAX_AUX), k = 0;
  pbuf *bufs = calloc((size_t)cap, sizeof *bufs);
  if (!bufs) return cnn_error(CNN_ERR_NOMEM, "out of memory planning");
  for (int i = 0; i < L; i++) {
    cnn_layer *l = &net->layers[i];
    if (l->absorbed_by >= 0) continue; /* shares its absorber's buffers */
    int tail = i; /* the last layer absorbed into i: its readers keep i's y alive */
    while (tail + 1 < L && net->layers[tail + 1].absorbed_by == i) tail++;
    /* activations and their gradients in the build's dtype; the net's output (the
     * buffer of the last layer, which may have been absorbed into this one) and every
     * aux buffer (statistics, losses, masks) in f32 */
    cnn_dtype dt = tail < L - 1 ? net->act_dt : CNN_DT_F32;
    /* the group's output: the tail's shape (a pool absorbed into a batch norm shrinks it) */
    size_t yb = align_up((size_t)n * cnn_shape_count(net->layers[tail].out) *
                         (dt == CNN_DT_BF16 ? 2 : 4));
    int last = net->layers[tail].last_consumer;
    int y_end = train || i == L - 1 ? 2 * L : (last > i ? last : i);
    if (tail == L - 1) y_end = 2 * L;
    bufs[k++] = (pbuf){yb, 0, i, y_end, &l->y, dt};
    if (train && tail < L - 1) {
      /* one slot early: the loss node writes its input's gradient during forward */
      int first = (last >= 0 ? 2 * L - 1 - last : 2 * L - 1 - i) - 1;
      bufs[k++] = (pbuf){yb, 0, first, 2 * L - 1 - i, &l->dy, dt};
    }
    size_t ac[CNN_MAX_AUX] = {0};
    if (l->kind->aux) l->kind->aux(l, n, ac);
    for (int j = 0; j < CNN_MAX_AUX; j++) {
      l->aux_count[j] = ac[j];
      if (!ac[j]) continue;
      int end = train || i == L - 1 ? 2 * L : i;
      bufs[k++] = (pbuf){align_up(ac[j] * sizeof(float)), 0, i, end, &l->aux[j], CNN_DT_F32};
    }
  }
  *out = bufs;
  *count = k;
  return CNN_OK;
}

static cnn_status plan_arena(cnn_net *net, int n, int train) {
  pbuf *bufs;
  int count;
  CNN_TRY(collect(net, n, train, &bufs, &count));
  size_t naive = 0;
  for (int i = 0; i < count; i++) naive += bufs[i].bytes;
  size_t top = place_all(bufs, count);
  net->plan.activation_bytes = top;
  net->plan.activation_bytes_naive = naive;
  cnn_status st = balloc(net, top, &net->arena);
  if (st == CNN_OK)
    for (int i = 0; i < count; i++) *bufs[i].slot = (float *)((char *)net->arena + bufs[i].offset);
  /* the dtype of every planned activation buffer, for the bf16 lowering (program.c) */
  net->bufs = st == CNN_OK ? calloc((size_t)count + 1, sizeof *net->bufs) : NULL;
  if (st == CNN_OK && !net->bufs) st = cnn_error(CNN_ERR_NOMEM, "out of memory planning");
  for (int i = 0; st == CNN_OK && i < count; i++)
    net->bufs[net->n_bufs++] = (cnn_bufinfo){(char *)*bufs[i].slot, bufs[i].bytes, bufs[i].dt};
  free(bufs);
  for (int i = 0; i < net->n_layers; i++) { /* absorbed layers read and write the absorber's */
    cnn_layer *l = &net->layers[i];
    if (l->absorbed_by < 0) continue;
    l->y = net->layers[l->absorbed_by].y;
    l->dy = net->layers[l->absorbed_by].dy;
  }
  return st;
}

static size_t max_workspace(cnn_net *net, int batch) {
  size_t ws = 0;
  for (int i = 0; i < net->n_layers; i++)
    if (net->layers[i].kind->workspace) {
      size_t w = net->layers[i].kind->workspace(net, &net->layers[i], batch);
      if (w > ws) ws = w;
    }
  return ws;
}

/* floats of folded conv weights and biases (inference builds) */
static size_t fold_count(const cnn_net *net) {
  size_t c = 0;
  for (int i = 0; i < net->n_layers; i++) {
    const cnn_layer *l = &net->layers[i];
    if (l->fold_bn >= 0) c += net->tensors[l->param[0]].count + (size_t)l->filters;
  }
  return c;
}

/* floats of one f32 scratch slot of the bf16 lowering: the largest activation */
static size_t cast_slot_floats(const cnn_net *net, int batch) {
  size_t most = (size_t)net->in_h * net->in_w * net->in_c;
  for (int i = 0; i < net->n_layers; i++)
    if (cnn_shape_count(net->layers[i].out) > most) most = cnn_shape_count(net->layers[i].out);
  return align_up((size_t)batch * most * sizeof(float)) / sizeof(float);
}

static void fill_info(cnn_net *net, int batch, int train, size_t ws) {
  cnn_plan_info *p = &net->plan;
  size_t pb = net->n_params * sizeof(float);
  size_t xb = (size_t)batch * net->in_h * net->in_w * net->in_c * sizeof(float);
  p->batch = batch;
  p->mode = train ? CNN_MODE_TRAIN : CNN_MODE_INFER;
  p->param_bytes = pb;
  p->grad_bytes = train ? pb : 0;
  p->opt_state_bytes = train ? (size_t)(net->tc.optimizer == CNN_OPT_SGD ? 1 : 2) * pb : 0;
  p->state_bytes = net->n_state * sizeof(float);
  p->workspace_bytes = ws;
  p->peak_bytes = p->param_bytes + p->grad_bytes + p->opt_state_bytes + p->state_bytes + ws +
                  p->activation_bytes + xb + (size_t)batch * sizeof(int32_t) +
                  fold_count(net) * sizeof(float) + 2 * sizeof(cnn_step_state);
  if (net->act_dt == CNN_DT_BF16) /* the bf16 lowering's f32 scratch (build allocates it) */
    p->peak_bytes += CNN_CAST_SLOTS * cast_slot_floats(net, batch) * sizeof(float);
}

cnn_status cnn_net_plan_estimate(cnn_net *net, cnn_backend *b, int batch, cnn_mode mode,
                                 cnn_plan_info *info) {
  if (!net || !b || !info) return cnn_error(CNN_ERR_ARG, "cnn_net_plan_estimate: NULL argument");
  if (net->built) return cnn_error(CNN_ERR_ARG, "cnn_net_plan_estimate: the net is built");
  if (batch <= 0) batch = net->cfg_batch;
  int train = mode == CNN_MODE_TRAIN;
  pbuf *bufs;
  int count;
  net->b = b;
  net->act_dt = cnn_net_precision(net) == CNN_PRECISION_BF16 ? CNN_DT_BF16 : CNN_DT_F32;
  cnn_net_fuse(net, train);
  cnn_status cst = collect(net, batch, train, &bufs, &count);
  net->b = NULL;
  if (cst != CNN_OK) return cst;
  size_t naive = 0;
  for (int i = 0; i < count; i++) naive += bufs[i].bytes;
  memset(&net->plan, 0, sizeof net->plan);
  net->plan.activation_bytes = place_all(bufs, count);
  net->plan.activation_bytes_naive = naive;
  free(bufs);
  for (int i = 0; i < net->n_layers; i++) { /* collect pointed the slots at nothing */
    net->layers[i].y = net->layers[i].dy = NULL;
    for (int j = 0; j < CNN_MAX_AUX; j++) net->layers[i].aux[j] = NULL;
  }
  net->b = b;
  size_t ws = max_workspace(net, batch);
  net->b = NULL;
  fill_info(net, batch, train, ws);
  *info = net->plan;
  return CNN_OK;
}

/* the two step states (training, inference) and the host copy metrics are read into */
static cnn_status step_states(cnn_net *net) {
  cnn_step_state init;
  memset(&init, 0, sizeof init);
  init.step = net->step;
  init.last_refused = -1;
  for (int k = 0; k < 2; k++) {
    CNN_TRY(balloc(net, sizeof init, (void **)&net->st[k]));
    CNN_TRY(CNN_OP(net, upload, net->st[k], &init, sizeof init));
  }
  const cnn_backend_ops *o = net->b->ops;
  /* [0]: where asynchronous reads land; [1]: the last complete read */
  if (o->host_alloc) CNN_TRY(o->host_alloc(net->b->ctx, 2 * sizeof init, (void **)&net->host_st));
  else net->host_st = malloc(2 * sizeof init);
  if (!net->host_st) return cnn_error(CNN_ERR_NOMEM, "out of host memory");
  net->host_st[0] = net->host_st[1] = init;
  net->launched = net->step;
  return CNN_OK;
}

static cnn_status build(cnn_net *net, int batch, int train) {
  size_t pb = net->n_params * sizeof(float), sb = net->n_state * sizeof(float);
  CNN_TRY(balloc(net, pb, (void **)&net->params));
  CNN_TRY(balloc(net, sb, (void **)&net->state));
  CNN_TRY(CNN_OP(net, upload, net->params, net->host_params, pb));
  CNN_TRY(CNN_OP(net, upload, net->state, net->host_state, sb));
  net->opt_slots = 0;
  if (train) {
    CNN_TRY(balloc(net, pb, (void **)&net->grads));
    net->opt_slots = net->tc.optimizer == CNN_OPT_SGD ? 1 : 2;
    for (int s = 0; s < net->opt_slots; s++) {
      CNN_TRY(balloc(net, pb, (void **)&net->opt[s]));
      CNN_TRY(CNN_OP(net, fill, net->opt[s], net->n_params, 0.0f));
    }
  }
  size_t xb = (size_t)batch * net->in_h * net->in_w * net->in_c * sizeof(float);
  CNN_TRY(balloc(net, xb, (void **)&net->x));
  CNN_TRY(balloc(net, (size_t)batch * sizeof(int32_t), (void **)&net->labels));
  cnn_net_fuse(net, train);
  CNN_TRY(plan_arena(net, batch, train));
  net->fold_count = fold_count(net);
  if (net->fold_count) {
    CNN_TRY(balloc(net, net->fold_count * sizeof(float), (void **)&net->fold));
    float *f = net->fold;
    for (int i = 0; i < net->n_layers; i++) {
      cnn_layer *l = &net->layers[i];
      if (l->fold_bn < 0) continue;
      l->fold_w = f;
      f += net->tensors[l->param[0]].count;
      l->fold_b = f;
      f += l->filters;
    }
  }
  net->params_dirty = 1;
  CNN_TRY(step_states(net));
  if (net->act_dt == CNN_DT_BF16) { /* f32 scratch where ops see bf16 buffers as f32 */
    net->cast_slot = cast_slot_floats(net, batch);
    CNN_TRY(balloc(net, CNN_CAST_SLOTS * net->cast_slot * sizeof(float), (void **)&net->cast_ws));
  }
  size_t ws = max_workspace(net, batch);
  net->ws_bytes = ws;
  if (ws) CNN_TRY(balloc(net, ws, &net->ws));
  int classes = cnn_net_classes(net);
  net->host_out = malloc((size_t)batch * classes * sizeof(float));
  net->host_loss = malloc((size_t)batch * sizeof(float));
  if (!net->host_out || !net->host_loss) return cnn_error(CNN_ERR_NOMEM, "out of host memory");
  fill_info(net, batch, train, ws);
  return CNN_OK;
}

cnn_status cnn_net_plan_build(cnn_net *net, cnn_backend *b, int batch, cnn_mode mode) {
  if (net->built) {
    cnn_step_state st; /* the device's step counter is the truth (refused steps) */
    CNN_TRY(CNN_OP(net, download, &st, net->st[0], sizeof st));
    net->step = st.step;
    CNN_TRY(cnn_net_sync_to_host(net));
    cnn_net_release(net);
  }
  memset(&net->plan, 0, sizeof net->plan);
  net->act_dt = cnn_net_precision(net) == CNN_PRECISION_BF16 ? CNN_DT_BF16 : CNN_DT_F32;
  net->b = b;
  net->batch = batch;
  net->mode = mode;
  cnn_status st = build(net, batch, mode == CNN_MODE_TRAIN);
  if (st != CNN_OK) {
    cnn_net_release(net);
    return st;
  }
  net->built = 1;
  return CNN_OK;
}

cnn_status cnn_net_build(cnn_net *net, cnn_backend *b, int batch, cnn_mode mode) {
  if (!net || !b) return cnn_error(CNN_ERR_ARG, "cnn_net_build: NULL argument");
  if (batch == 0) batch = net->cfg_batch;
  if (batch < 1 || batch > (1 << 16))
    return cnn_error(CNN_ERR_ARG, "batch %d must be in [1, 65536]", batch);
  if (mode == CNN_MODE_TRAIN && net->layers[net->n_layers - 1].kind != &cnn_kind_softmax)
    return cnn_error(CNN_ERR_ARG, "%s: training needs a [softmax] as the last layer", net->path);
  CNN_TRY(cnn_net_plan_build(net, b, batch, mode));
  /* compile the build's main program now: a backend that cannot run a node is
   * refused here, naming it, not at the first step */
  cnn_program *p;
  cnn_status st =
      cnn_net_program_for(net, batch, mode == CNN_MODE_TRAIN ? CNN_PK_TRAIN : CNN_PK_INFER, &p);
  if (st != CNN_OK) {
    cnn_net_release(net);
    return st;
  }
  return CNN_OK;
}

cnn_status cnn_net_plan_info(const cnn_net *net, cnn_plan_info *info) {
  if (!net || !info) return cnn_error(CNN_ERR_ARG, "cnn_net_plan_info: NULL argument");
  if (!net->built) return cnn_error(CNN_ERR_ARG, "the net is not built");
  *info = net->plan;
  return CNN_OK;
}
