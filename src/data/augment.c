/* Per-image transforms of the loader (shift with zero fill, flip, cutout, all
 * fused into one pass through a per-channel lookup table) and the dataset
 * statistics used to normalise. */
#include "data/augment.h"

#include <math.h>
#include <string.h>

#include "core/error.h"

static void fill_px(float *o, int npx, int c, const float *fill) {
  if (c == 1) {
    for (int i = 0; i < npx; i++) o[i] = fill[0];
    return;
  }
  for (int i = 0; i < npx; i++)
    for (int ch = 0; ch < c; ch++) o[i * c + ch] = fill[ch];
}

void cnn_aug_image(const uint8_t *img, int h, int w, int c, const float *lut,
                   const cnn_aug_draw *d, float *out) {
  float fill[4]; /* a raw-0 pixel, normalised: what the padding holds */
  for (int ch = 0; ch < c; ch++) fill[ch] = lut[ch * 256];
  /* output columns whose source column lies inside the image: [x0, x1) */
  int s = d->flip ? d->dx : -d->dx;
  int x0 = s > 0 ? s : 0;
  int x1 = s < 0 ? w + s : w;
  if (x0 > w) x0 = w;
  if (x1 < x0) x1 = x0;
  size_t row_px = (size_t)w * (size_t)c;
  for (int oy = 0; oy < h; oy++) {
    float *o = out + (size_t)oy * row_px; /* [w, c] */
    int sy = oy + d->dy;
    if (sy < 0 || sy >= h) {
      fill_px(o, w, c, fill);
      continue;
    }
    fill_px(o, x0, c, fill);
    fill_px(o + (size_t)x1 * c, w - x1, c, fill);
    const uint8_t *row = img + (size_t)sy * row_px; /* [w, c] */
    if (!d->flip) {
      int dx = d->dx; /* source column of output x is x + dx */
      if (c == 1) {
        for (int x = x0; x < x1; x++) o[x] = lut[row[x + dx]];
      } else {
        for (int x = x0; x < x1; x++)
          for (int ch = 0; ch < c; ch++) o[x * c + ch] = lut[ch * 256 + row[(x + dx) * c + ch]];
      }
    } else {
      int base = w - 1 + d->dx; /* source column of output x is base - x */
      if (c == 1) {
        for (int x = x0; x < x1; x++) o[x] = lut[row[base - x]];
      } else {
        for (int x = x0; x < x1; x++)
          for (int ch = 0; ch < c; ch++)
            o[x * c + ch] = lut[ch * 256 + row[(base - x) * c + ch]];
      }
    }
  }
  /* cutout after normalisation: 0 is the mean colour */
  if (d->cut_x1 > d->cut_x0)
    for (int y = d->cut_y0; y < d->cut_y1; y++)
      memset(out + (size_t)y * row_px + (size_t)d->cut_x0 * c, 0,
             sizeof(float) * (size_t)(d->cut_x1 - d->cut_x0) * (size_t)c);
}

void cnn_normalize_image(const uint8_t *img, int h, int w, int c, const float *mean,
                         const float *std, float *out) {
  size_t npx = (size_t)h * (size_t)w;
  for (size_t i = 0; i < npx; i++)
    for (int ch = 0; ch < c; ch++)
      out[i * c + ch] = cnn_aug_norm(img[i * c + ch], mean[ch], std[ch]);
}

cnn_status cnn_dataset_mean_std(const cnn_dataset *d, float *mean, float *std) {
  if (!d || !d->images || !mean || !std)
    return cnn_error(CNN_ERR_ARG, "cnn_dataset_mean_std: NULL argument");
  if (d->n <= 0 || d->h <= 0 || d->w <= 0 || d->c < 1 || d->c > 4)
    return cnn_error(CNN_ERR_SHAPE, "no images to take the mean and std of: a dataset of %d "
                     "images of %dx%dx%d", d->n, d->h, d->w, d->c);
  int c = d->c;
  /* exact integer sums: 255^2 * 2^40 pixels fits in 64 bits */
  uint64_t sum[4] = {0, 0, 0, 0}, sq[4] = {0, 0, 0, 0};
  size_t npx = (size_t)d->n * (size_t)d->h * (size_t)d->w;
  const uint8_t *p = d->images;
  for (size_t i = 0; i < npx; i++, p += c)
    for (int ch = 0; ch < c; ch++) {
      uint64_t v = p[ch];
      sum[ch] += v;
      sq[ch] += v * v;
    }
  for (int ch = 0; ch < c; ch++) {
    double m = (double)sum[ch] / (double)npx;
    double var = (double)sq[ch] / (double)npx - m * m;
    mean[ch] = (float)(m / 255.0);
    /* a constant channel would divide by zero: leave it unscaled */
    std[ch] = var > 0 ? (float)(sqrt(var) / 255.0) : 1.0f;
  }
  return CNN_OK;
}
