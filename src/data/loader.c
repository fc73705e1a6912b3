/* Batch loader: a seeded permutation per epoch, per-image augmentation and
 * normalisation through a lookup table, and a worker thread that fills one of two
 * buffers while the caller reads the other.
 *
 * Threading protocol (all under mu): the caller holds batch cur-1 (slot
 * (cur-1)&1) between next() calls; the worker may make batch `made` into slot
 * made&1 only while made <= cur, i.e. never into the slot the caller holds, so at
 * most one batch runs ahead. start_epoch sets end = 0 (the worker starts nothing
 * new), waits for an in-flight batch to finish, and only then touches the
 * permutation, which the worker reads without the lock. */
#define _POSIX_C_SOURCE 200809L

#include "cnn/loader.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "data/augment.h"

struct cnn_loader {
  const cnn_dataset *data;
  int batch, cap;            /* cap = min(batch, n): images a buffer holds */
  int shuffle, drop_last, threaded, nb;
  uint64_t seed;
  cnn_augment aug;
  float lut[4 * 256];        /* [c][256]: normalised value of each raw byte */
  int32_t *perm;                /* [n] dataset index at each position of the epoch */
  float *x[2];               /* [cap, h, w, c] each */
  int32_t *y[2];             /* [cap] each */
  int nx[2];                 /* images in each buffer */
  void *(*alloc)(void *, size_t);
  void (*release)(void *, void *);
  void *host_ctx;
  /* epoch state; written only while the worker is idle and end == 0 */
  int epoch;
  uint64_t aug_key;
  int end;                   /* batches in this epoch; 0 before start_epoch */
  int cur;                   /* next batch the caller receives */
  /* worker */
  int made;                  /* batches < made are in their buffers */
  int busy, quit;
  int have_sync, have_thread;
  pthread_mutex_t mu;
  pthread_cond_t cv_work;    /* worker waits: something to make, or quit */
  pthread_cond_t cv_done;    /* caller waits: a batch finished */
  pthread_t thread;
};

static void plain_free(void *ctx, void *p) { free(p); }

static void *aligned_host_alloc(void *ctx, size_t bytes) {
  size_t a = 64;
  return aligned_alloc(a, (bytes + a - 1) / a * a);
}

/* batch b of the current epoch into buffer `slot` */
static void make_batch(cnn_loader *l, int b, int slot) {
  const cnn_dataset *d = l->data;
  int64_t start = (int64_t)b * l->batch;
  int n = (int)(d->n - start < l->batch ? d->n - start : l->batch);
  size_t img_px = (size_t)d->h * (size_t)d->w * (size_t)d->c;
  for (int i = 0; i < n; i++) {
    int64_t pos = start + i;
    int idx = l->perm[pos];
    cnn_aug_draw dr;
    cnn_aug_draw_for(l->aug_key, pos, d->h, d->w, &l->aug, &dr);
    cnn_aug_image(d->images + (size_t)idx * img_px, d->h, d->w, d->c, l->lut, &dr,
                  l->x[slot] + (size_t)i * img_px);
    l->y[slot][i] = d->labels[idx];
  }
  l->nx[slot] = n;
}

static void *worker_main(void *arg) {
  cnn_loader *l = arg;
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->quit && !(l->made < l->end && l->made <= l->cur))
      pthread_cond_wait(&l->cv_work, &l->mu);
    if (l->quit) break;
    int b = l->made;
    l->busy = 1;
    pthread_mutex_unlock(&l->mu);
    make_batch(l, b, b & 1);
    pthread_mutex_lock(&l->mu);
    l->busy = 0;
    l->made = b + 1;
    pthread_cond_broadcast(&l->cv_done);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

static cnn_status check_config(const cnn_loader_config *cfg) {
  const cnn_dataset *d = cfg->data;
  if (!d || !d->images || !d->labels)
    return cnn_error(CNN_ERR_ARG, "loader: dataset (or its images/labels) is NULL");
  if (d->n <= 0 || d->h <= 0 || d->w <= 0)
    return cnn_error(CNN_ERR_SHAPE, "loader: dataset of %d images of %dx%d has nothing to load",
                     d->n, d->h, d->w);
  if (d->c < 1 || d->c > 4)
    return cnn_error(CNN_ERR_SHAPE, "loader: dataset has %d channels; 1 to 4 are supported", d->c);
  if (cfg->channels != d->c)
    return cnn_error(CNN_ERR_SHAPE, "loader: config says %d channels but the dataset has %d",
                     cfg->channels, d->c);
  if (cfg->batch <= 0)
    return cnn_error(CNN_ERR_ARG, "loader: batch %d must be positive", cfg->batch);
  for (int ch = 0; ch < d->c; ch++)
    if (!isfinite(cfg->mean[ch]) || !isfinite(cfg->std[ch]) || !(cfg->std[ch] > 0))
      return cnn_error(CNN_ERR_ARG, "loader: channel %d has mean %g, std %g; std must be > 0",
                       ch, cfg->mean[ch], cfg->std[ch]);
  if (cfg->aug.crop_pad < 0 || cfg->aug.crop_pad > 65535)
    return cnn_error(CNN_ERR_ARG, "loader: crop padding %d must be in [0, 65535]",
                     cfg->aug.crop_pad);
  if (cfg->aug.cutout < 0 || cfg->aug.cutout > 65535)
    return cnn_error(CNN_ERR_ARG, "loader: cutout size %d must be in [0, 65535]", cfg->aug.cutout);
  if (!cfg->host_alloc != !cfg->host_free)
    return cnn_error(CNN_ERR_ARG, "loader: give both host_alloc and host_free, or neither");
  return CNN_OK;
}

cnn_status cnn_loader_create(const cnn_loader_config *cfg, cnn_loader **out) {
  if (!out) return cnn_error(CNN_ERR_ARG, "cnn_loader_create: NULL output");
  *out = NULL;
  if (!cfg) return cnn_error(CNN_ERR_ARG, "cnn_loader_create: NULL config");
  CNN_TRY(check_config(cfg));
  const cnn_dataset *d = cfg->data;
  cnn_loader *l = calloc(1, sizeof *l);
  if (!l) return cnn_error(CNN_ERR_NOMEM, "loader: out of memory");
  l->data = d;
  l->batch = cfg->batch;
  l->cap = cfg->batch < d->n ? cfg->batch : d->n;
  l->shuffle = cfg->shuffle;
  l->drop_last = cfg->drop_last;
  l->threaded = cfg->threaded;
  l->nb = cfg->drop_last ? d->n / cfg->batch : (d->n + cfg->batch - 1) / cfg->batch;
  l->seed = cfg->seed;
  l->aug = cfg->aug;
  l->alloc = cfg->host_alloc ? cfg->host_alloc : aligned_host_alloc;
  l->release = cfg->host_free ? cfg->host_free : plain_free;
  l->host_ctx = cfg->host_ctx;
  /* a table per channel replaces a subtract and divide per pixel */
  for (int ch = 0; ch < d->c; ch++)
    for (int u = 0; u < 256; u++)
      l->lut[ch * 256 + u] = cnn_aug_norm(u, cfg->mean[ch], cfg->std[ch]);

  size_t img_px = (size_t)d->h * (size_t)d->w * (size_t)d->c;
  size_t xbytes = sizeof(float) * img_px * (size_t)l->cap;
  if (img_px > SIZE_MAX / sizeof(float) / (size_t)l->cap) {
    cnn_loader_destroy(l);
    return cnn_error(CNN_ERR_NOMEM, "loader: batch of %d images of %zu values is too large",
                     l->cap, img_px);
  }
  l->perm = malloc(sizeof *l->perm * (size_t)d->n);
  int nslots = l->threaded ? 2 : 1;
  for (int s = 0; s < nslots; s++) {
    l->x[s] = l->alloc(l->host_ctx, xbytes);
    l->y[s] = l->alloc(l->host_ctx, sizeof(int32_t) * (size_t)l->cap);
  }
  if (!l->perm || !l->x[0] || !l->y[0] || (nslots == 2 && (!l->x[1] || !l->y[1]))) {
    cnn_loader_destroy(l);
    return cnn_error(CNN_ERR_NOMEM, "loader: out of memory for %d buffers of %zu bytes", nslots,
                     xbytes);
  }

  if (l->threaded) {
    if (pthread_mutex_init(&l->mu, NULL) != 0) {
      cnn_loader_destroy(l);
      return cnn_error(CNN_ERR_NOMEM, "loader: cannot create a mutex");
    }
    if (pthread_cond_init(&l->cv_work, NULL) != 0) {
      pthread_mutex_destroy(&l->mu);
      cnn_loader_destroy(l);
      return cnn_error(CNN_ERR_NOMEM, "loader: cannot create a condition variable");
    }
    if (pthread_cond_init(&l->cv_done, NULL) != 0) {
      pthread_cond_destroy(&l->cv_work);
      pthread_mutex_destroy(&l->mu);
      cnn_loader_destroy(l);
      return cnn_error(CNN_ERR_NOMEM, "loader: cannot create a condition variable");
    }
    l->have_sync = 1;
    if (pthread_create(&l->thread, NULL, worker_main, l) != 0) {
      cnn_loader_destroy(l);
      return cnn_error(CNN_ERR_NOMEM, "loader: cannot start the worker thread");
    }
    l->have_thread = 1;
  }
  *out = l;
  return CNN_OK;
}

int cnn_loader_batches_per_epoch(const cnn_loader *l) { return l ? l->nb : 0; }

/* Fisher-Yates keyed by (seed, epoch): the order never depends on earlier epochs */
void cnn_aug_epoch_perm(uint64_t seed, int epoch, int shuffle, int n, int32_t *perm) {
  for (int i = 0; i < n; i++) perm[i] = i;
  if (!shuffle) return;
  uint64_t key = cnn_aug_perm_key(seed, epoch);
  for (int i = n - 1; i > 0; i--) {
    int j = cnn_aug_below(cnn_rng_u64(key, (uint64_t)i), (uint32_t)(i + 1));
    int32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

static void make_perm(cnn_loader *l, int epoch) {
  cnn_aug_epoch_perm(l->seed, epoch, l->shuffle, l->data->n, l->perm);
}

cnn_status cnn_loader_start_epoch(cnn_loader *l, int epoch, int first_batch) {
  if (!l) return cnn_error(CNN_ERR_ARG, "cnn_loader_start_epoch: NULL loader");
  if (epoch < 0) return cnn_error(CNN_ERR_ARG, "loader: epoch %d must be >= 0", epoch);
  if (first_batch < 0 || first_batch > l->nb)
    return cnn_error(CNN_ERR_ARG, "loader: first batch %d is outside [0, %d]", first_batch, l->nb);
  if (l->threaded) {
    /* stop the worker starting anything, then wait out a batch in flight */
    pthread_mutex_lock(&l->mu);
    l->end = 0;
    while (l->busy) pthread_cond_wait(&l->cv_done, &l->mu);
    pthread_mutex_unlock(&l->mu);
  }
  make_perm(l, epoch);
  if (l->threaded) pthread_mutex_lock(&l->mu);
  l->epoch = epoch;
  l->aug_key = cnn_aug_epoch_key(l->seed, epoch);
  l->cur = l->made = first_batch;
  l->end = l->nb;
  if (l->threaded) {
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
  }
  return CNN_OK;
}

int cnn_loader_next(cnn_loader *l, const float **x, const int32_t **y, int *n) {
  if (!l) return 0;
  int slot;
  if (l->threaded) {
    pthread_mutex_lock(&l->mu);
    if (l->cur >= l->end) {
      pthread_mutex_unlock(&l->mu);
      return 0;
    }
    while (l->made <= l->cur) pthread_cond_wait(&l->cv_done, &l->mu);
    slot = l->cur & 1;
    l->cur++;
    /* the slot read last time is free now: the worker may fill it with cur */
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
  } else {
    if (l->cur >= l->end) return 0;
    slot = 0;
    make_batch(l, l->cur, slot);
    l->cur++;
  }
  if (x) *x = l->x[slot];
  if (y) *y = l->y[slot];
  if (n) *n = l->nx[slot];
  return 1;
}

void cnn_loader_destroy(cnn_loader *l) {
  if (!l) return;
  if (l->have_thread) {
    pthread_mutex_lock(&l->mu);
    l->quit = 1;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
  }
  if (l->have_sync) {
    pthread_cond_destroy(&l->cv_done);
    pthread_cond_destroy(&l->cv_work);
    pthread_mutex_destroy(&l->mu);
  }
  for (int s = 0; s < 2; s++) {
    if (l->x[s]) l->release(l->host_ctx, l->x[s]);
    if (l->y[s]) l->release(l->host_ctx, l->y[s]);
  }
  free(l->perm);
  free(l);
}
