/* Per-image augmentation for the loader: the random draws and the u8 -> float
 * transform. The draws are inline and host/device so a CUDA augmentation kernel
 * can reproduce the host loader's batches bit for bit. */
#ifndef CNN_DATA_AUGMENT_H
#define CNN_DATA_AUGMENT_H

#include <stdint.h>

#include "cnn/loader.h"
#include "core/rng.h"

/* keys that separate the loader's streams from other users of the same seed */
#define CNN_AUG_PERM_SALT 0x6C6F616465727065ull /* "loaderpe" */
#define CNN_AUG_DRAW_SALT 0x6175676D656E7421ull /* "augment!" */
#define CNN_AUG_SLOTS 8                         /* counters per image, 5 used */

typedef struct cnn_aug_draw {
  int dx, dy;                   /* out(y, x) = img(y + dy, x' + dx), x' = flip ? w-1-x : x */
  int flip;
  int cut_y0, cut_y1;           /* cutout rows [y0, y1), cols [x0, x1); empty if off */
  int cut_x0, cut_x1;
} cnn_aug_draw;

/* uniform integer in [0, n), n < 2^32: multiply-shift on the top 32 bits */
CNN_HD int cnn_aug_below(uint64_t r, uint32_t n) {
  return (int)(((r >> 32) * (uint64_t)n) >> 32);
}

/* the permutation key and the augmentation key of an epoch */
CNN_HD uint64_t cnn_aug_perm_key(uint64_t seed, int epoch) {
  return cnn_rng_u64(seed ^ CNN_AUG_PERM_SALT, (uint64_t)(uint32_t)epoch);
}
CNN_HD uint64_t cnn_aug_epoch_key(uint64_t seed, int epoch) {
  return cnn_rng_u64(seed ^ CNN_AUG_DRAW_SALT, (uint64_t)(uint32_t)epoch);
}

/* The draws for the image at position `pos` of the epoch. Each choice has its own
 * counter, so turning one augmentation on or off leaves the others' draws alone. */
CNN_HD void cnn_aug_draw_for(uint64_t epoch_key, int64_t pos, int h, int w,
                             const cnn_augment *aug, cnn_aug_draw *d) {
  uint64_t c = (uint64_t)pos * CNN_AUG_SLOTS;
  int p = aug->crop_pad;
  d->dx = d->dy = 0;
  if (p > 0) {
    d->dx = cnn_aug_below(cnn_rng_u64(epoch_key, c + 0), (uint32_t)(2 * p + 1)) - p;
    d->dy = cnn_aug_below(cnn_rng_u64(epoch_key, c + 1), (uint32_t)(2 * p + 1)) - p;
  }
  d->flip = aug->flip ? (int)(cnn_rng_u64(epoch_key, c + 2) >> 63) : 0;
  d->cut_y0 = d->cut_y1 = d->cut_x0 = d->cut_x1 = 0;
  if (aug->cutout > 0) {
    int cy = cnn_aug_below(cnn_rng_u64(epoch_key, c + 3), (uint32_t)h);
    int cx = cnn_aug_below(cnn_rng_u64(epoch_key, c + 4), (uint32_t)w);
    int y0 = cy - aug->cutout / 2, x0 = cx - aug->cutout / 2;
    int y1 = y0 + aug->cutout, x1 = x0 + aug->cutout;
    d->cut_y0 = y0 < 0 ? 0 : y0;
    d->cut_x0 = x0 < 0 ? 0 : x0;
    d->cut_y1 = y1 > h ? h : y1;
    d->cut_x1 = x1 > w ? w : x1;
  }
}

/* normalised value of raw pixel u in a channel; the loader's tables and
 * cnn_normalize_image both use exactly this expression */
static inline float cnn_aug_norm(int u, float mean, float std) {
  return ((float)u / 255.0f - mean) / std;
}

/* The image order of an epoch: perm[position] = dataset index (the loader's, and a
 * bound dataset's on every backend). */
void cnn_aug_epoch_perm(uint64_t seed, int epoch, int shuffle, int n, int32_t *perm);

/* lut: [c][256] normalised values. img [h, w, c] u8 -> out [h, w, c] float with
 * the draws in d applied (shift with raw-0 fill, flip, cutout to 0). */
void cnn_aug_image(const uint8_t *img, int h, int w, int c, const float *lut,
                   const cnn_aug_draw *d, float *out);

#endif
