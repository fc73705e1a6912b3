/* A training set bound in backend memory: uploaded once, batches made on the
 * backend by the gather node of CNN_PK_DATA programs (see cnn_net_bind_data). */
#include <stdlib.h>
#include <string.h>

#include "core/net.h"
#include "data/augment.h"


void cnn_net_unbind_data(cnn_net *net) {
  cnn_bound_data *d = &net->data;
  if (net->b) {
    void *bufs[] = {d->images, d->labels, d->perm, d->lut};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
      if (bufs[i]) net->b->ops->free(net->b->ctx, bufs[i]);
  }
  free(d->host_perm);
  memset(d, 0, sizeof *d);
}

static cnn_status balloc(cnn_net *net, size_t bytes, void **p) {
  cnn_status st = net->b->ops->alloc(net->b->ctx, bytes ? bytes : 256, p);
  if (st != CNN_OK)
    return cnn_error_prefix(st, "binding the dataset: %zu bytes on %s", bytes, net->b->name);
  return CNN_OK;
}

cnn_status cnn_net_bind_data(cnn_net *net, const void *loader_config) {
  const cnn_loader_config *cfg = loader_config;
  if (!net || !cfg || !cfg->data) return cnn_error(CNN_ERR_ARG, "cnn_net_bind_data: NULL argument");
  if (!net->built || net->mode != CNN_MODE_TRAIN)
    return cnn_error(CNN_ERR_ARG, "binding a training set needs a net built for training");
  const cnn_dataset *ds = cfg->data;
  if (ds->n < 1 || !ds->images || !ds->labels)
    return cnn_error(CNN_ERR_ARG, "the training set to bind has no images");
  if (ds->h != net->in_h || ds->w != net->in_w || ds->c != net->in_c || cfg->channels != ds->c)
    return cnn_error(CNN_ERR_SHAPE, "the dataset's images are %dx%dx%d, the net takes %dx%dx%d",
                     ds->h, ds->w, ds->c, net->in_h, net->in_w, net->in_c);
  if (cfg->batch < 1 || cfg->batch > net->batch)
    return cnn_error(CNN_ERR_ARG, "batch %d does not fit the built batch of %d", cfg->batch,
                     net->batch);
  int classes = cnn_net_classes(net);
  for (int i = 0; i < ds->n; i++) /* once here, so steps never need to look */
    if (ds->labels[i] < 0 || ds->labels[i] >= classes)
      return cnn_error(CNN_ERR_ARG, "label %d of image %d is outside [0, %d)", ds->labels[i], i,
                       classes);
  const cnn_backend_ops *o = net->b->ops;
  if (!o->gather_aug || !o->data_seek)
    return cnn_error(CNN_UNSUPPORTED, "the %s backend cannot make batches from a bound dataset",
                     net->b->name);
  cnn_net_unbind_data(net);
  cnn_net_drop_programs(net); /* CNN_PK_DATA programs point at the old buffers */
  cnn_bound_data *d = &net->data;
  size_t px = (size_t)ds->h * ds->w * ds->c, n = (size_t)ds->n;
  float lut[4 * 256];
  for (int ch = 0; ch < ds->c; ch++)
    for (int u = 0; u < 256; u++) lut[ch * 256 + u] = cnn_aug_norm(u, cfg->mean[ch], cfg->std[ch]);
  cnn_status st = balloc(net, n * px, (void **)&d->images);
  if (st == CNN_OK) st = balloc(net, n * sizeof(int32_t), (void **)&d->labels);
  if (st == CNN_OK) st = balloc(net, n * sizeof(int32_t), (void **)&d->perm);
  if (st == CNN_OK) st = balloc(net, sizeof lut, (void **)&d->lut);
  if (st == CNN_OK && !(d->host_perm = malloc(n * sizeof(int32_t))))
    st = cnn_error(CNN_ERR_NOMEM, "out of host memory binding the dataset");
  if (st == CNN_OK) st = o->upload(net->b->ctx, d->images, ds->images, n * px);
  if (st == CNN_OK) st = o->upload(net->b->ctx, d->labels, ds->labels, n * sizeof(int32_t));
  if (st == CNN_OK) st = o->upload(net->b->ctx, d->lut, lut, (size_t)ds->c * 256 * sizeof(float));
  if (st != CNN_OK) {
    cnn_net_unbind_data(net);
    return st;
  }
  d->n = ds->n;
  d->batch = cfg->batch;
  d->drop_last = cfg->drop_last;
  d->batches = cfg->drop_last ? ds->n / cfg->batch : (ds->n + cfg->batch - 1) / cfg->batch;
  d->shuffle = cfg->shuffle;
  d->seed = cfg->seed;
  d->aug = cfg->aug;
  d->epoch = -1;
  return CNN_OK;
}

int cnn_net_bound_batches(const cnn_net *net) { return net ? net->data.batches : 0; }

cnn_status cnn_net_train_bound(cnn_net *net, int epoch, int first, int k, int *launched) {
  if (launched) *launched = 0;
  if (!net) return cnn_error(CNN_ERR_ARG, "cnn_net_train_bound: NULL net");
  cnn_bound_data *d = &net->data;
  if (!d->images) return cnn_error(CNN_ERR_ARG, "no dataset is bound to the net (cnn_net_bind_data)");
  if (epoch < 0 || first < 0 || first > d->batches || k < 0)
    return cnn_error(CNN_ERR_ARG, "epoch %d, batch %d, %d steps: out of range (%d batches)", epoch,
                     first, k, d->batches);
  const cnn_backend_ops *o = net->b->ops;
  if (epoch != d->epoch) { /* the epoch's order, uploaded behind the steps in flight */
    cnn_aug_epoch_perm(d->seed, epoch, d->shuffle, d->n, d->host_perm);
    cnn_status (*up)(void *, void *, const void *, size_t) = o->upload_async ? o->upload_async : o->upload;
    CNN_TRY(up(net->b->ctx, d->perm, d->host_perm, (size_t)d->n * sizeof(int32_t)));
  }
  if (epoch != d->epoch || first != d->next) {
    CNN_TRY(o->data_seek(net->b->ctx, net->st[0], (int64_t)first * d->batch,
                         cnn_aug_epoch_key(d->seed, epoch)));
    d->epoch = epoch;
    d->next = first;
  }
  for (int s = 0; s < k && d->next < d->batches; s++) {
    int64_t pos = (int64_t)d->next * d->batch;
    int n = (int64_t)d->n - pos < d->batch ? (int)(d->n - pos) : d->batch;
    cnn_program *p;
    CNN_TRY(cnn_net_program_for(net, n, CNN_PK_DATA, &p));
    CNN_TRY(cnn_program_run(net, p, 0));
    d->next++;
    net->launched++;
    net->params_dirty = 1;
    if (launched) (*launched)++;
  }
  return CNN_OK;
}
