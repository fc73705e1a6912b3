/* Batch loader: turns a cnn_dataset (uint8 NHWC in host memory) into normalised
 * float NHWC batches with optional augmentation, and (threaded) makes batch k+1 on
 * a background thread into a second buffer while the caller trains on batch k.
 *
 * Everything random is a pure function of the seed: the image order of an epoch
 * depends only on (seed, epoch); the augmentation of an image only on (seed, epoch,
 * its position in the epoch). So threaded and unthreaded loaders give bit-identical
 * batches, and resuming at (epoch, batch) reproduces the rest of that epoch. */
#ifndef CNN_LOADER_H
#define CNN_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "cnn/cnn.h"
#include "cnn/data.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Applied in this order, as torchvision's RandomCrop(padding), RandomHorizontalFlip,
 * ToTensor, Normalize, then Cutout:
 *  crop_pad: shift the image by (dx, dy), each uniform in [-pad, pad]; pixels
 *            shifted in from outside are raw 0 (black), normalised like any pixel,
 *            i.e. (0 - mean) / std: the same as padding the uint8 image with zeros
 *            and cropping before Normalize.
 *  flip:     mirror left-right with probability 1/2.
 *  cutout:   set a cutout x cutout square to 0 *after* normalisation (the dataset
 *            mean colour, as the Cutout paper's code); its centre is uniform over
 *            the image, and the square is clipped at the borders. */
typedef struct cnn_augment {
  int crop_pad; /* pad px each side; 0 = off */
  int flip;     /* random horizontal flip */
  int cutout;   /* side of the square; 0 = off */
} cnn_augment;

typedef struct cnn_loader_config {
  const cnn_dataset *data; /* not copied: must outlive the loader */
  int batch;               /* images per batch, > 0 */
  int shuffle;             /* 0: dataset order every epoch */
  int drop_last;           /* 0: the last batch of an epoch may be partial */
  uint64_t seed;
  int channels;            /* must equal data->c (1..4) */
  float mean[4], std[4];   /* per channel, 0..1 pixel units: x = (u8/255 - mean) / std */
  cnn_augment aug;
  int threaded;            /* 0: batches are made on the caller's thread, in next() */
  /* optional (both or neither): e.g. pinned memory for the CUDA backend.
   * NULL: 64-byte aligned malloc. */
  void *(*host_alloc)(void *ctx, size_t bytes);
  void (*host_free)(void *ctx, void *p);
  void *host_ctx;          /* passed to both, e.g. a cnn_backend (see cnn_host_alloc) */
} cnn_loader_config;

typedef struct cnn_loader cnn_loader;

cnn_status cnn_loader_create(const cnn_loader_config *cfg, cnn_loader **out);

/* floor(n / batch) with drop_last, else ceil(n / batch) */
int cnn_loader_batches_per_epoch(const cnn_loader *l);

/* Start epoch `epoch` (>= 0) at batch index `first_batch` (0..batches_per_epoch;
 * for resume). Safe while a batch is being made: the background batch is waited
 * for and discarded. Until the first call, cnn_loader_next returns 0. */
cnn_status cnn_loader_start_epoch(cnn_loader *l, int epoch, int first_batch);

/* Next batch of the epoch: *x is [n, h, w, c] float, *y is [n] int32, valid until
 * the next call of next / start_epoch / destroy. Returns 1 and sets n, or 0 when
 * the epoch is over. Any of x, y, n may be NULL. */
int cnn_loader_next(cnn_loader *l, const float **x, const int32_t **y, int *n);

/* Joins the background thread. NULL is a no-op. */
void cnn_loader_destroy(cnn_loader *l);

/* Per-channel mean and (population) std over every pixel of d, in 0..1 units,
 * accumulated exactly in integers. A channel with no variance (e.g. an opaque
 * alpha channel) gets std 1 so that normalising by it stays finite.
 * mean and std have d->c entries. */
cnn_status cnn_dataset_mean_std(const cnn_dataset *d, float *mean, float *std);

/* One u8 image [h, w, c] -> [h, w, c] float (u8/255 - mean) / std, no augmentation
 * (for predict); bit-identical to what the loader gives for the same image. */
void cnn_normalize_image(const uint8_t *img, int h, int w, int c, const float *mean,
                         const float *std, float *out);

#ifdef __cplusplus
}
#endif
#endif
