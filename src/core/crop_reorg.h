/* Index maps of Darknet's [crop] and [reorg] (descriptors in backend/backend.h),
 * shared by every backend's ops and the layers, so that ref, cpu and the CUDA
 * kernels pick the same windows and the same elements.
 *
 * crop: per image, the window offset, the flip and the per-channel offset of a
 * training step are pure functions of (seed, step, stream, image), drawn with the
 * counter RNG exactly like dropout_mask_st's key, so all backends agree and the
 * backward of a step sees the forward's draws.
 *
 * reorg: Darknet defines it on NCHW flat indices (blas.c reorg_cpu and flatten,
 * reorg_layer.c); we hold NHWC. cnn_reorg_src converts an output element's NHWC
 * index to Darknet's CHW index of the output, applies Darknet's map to find the
 * CHW index of the input element it copies, and converts that back to NHWC. */
#ifndef CNN_CROP_REORG_H
#define CNN_CROP_REORG_H

#include <stdint.h>

#include "backend/backend.h"
#include "core/error.h"
#include "core/hd.h"
#include "core/rng.h"

/* ---- crop ---------------------------------------------------------------------- */

/* the key of the step in flight (train only), as dropout_mask_st derives its seed */
CNN_HD uint64_t cnn_crop_key(const cnn_crop_desc *d, int64_t step) {
  return cnn_rng_u64(d->seed, (uint64_t)step * 4096u + d->stream);
}

/* counters per image: offset y, offset x, flip, then one per channel (shift) */
CNN_HD uint64_t cnn_crop_counter(const cnn_crop_desc *d, int image) {
  return (uint64_t)image * (uint64_t)(3 + d->c);
}

/* the window of image `image`: top-left (oy, ox) and whether it is mirrored */
CNN_HD void cnn_crop_window(const cnn_crop_desc *d, uint64_t key, int image, int *oy, int *ox,
                            int *flip) {
  if (!d->train) { /* Darknet's inference: the centre, rounded down, never flipped */
    *oy = (d->h - d->oh) / 2;
    *ox = (d->w - d->ow) / 2;
    *flip = 0;
    return;
  }
  uint64_t base = cnn_crop_counter(d, image);
  *oy = (int)(cnn_rng_u64(key, base) % (uint64_t)(d->h - d->oh + 1));
  *ox = (int)(cnn_rng_u64(key, base + 1) % (uint64_t)(d->w - d->ow + 1));
  *flip = d->flip && (cnn_rng_u64(key, base + 2) >> 63);
}

/* the additive term of channel ch of image `image`: trans, plus Darknet's shift in
 * training, (u - 1/2) * shift with u uniform in [0, 1) */
CNN_HD float cnn_crop_offset(const cnn_crop_desc *d, uint64_t key, int image, int ch) {
  if (!d->train || d->shift == 0.0f) return d->trans;
  float u = cnn_rng_uniform(key, cnn_crop_counter(d, image) + 3 + (uint64_t)ch);
  return d->trans + (u - 0.5f) * d->shift;
}

/* the input column read by output column q of a window at ox */
CNN_HD int cnn_crop_col(const cnn_crop_desc *d, int ox, int flip, int q) {
  return flip ? d->w - ox - q - 1 : q + ox; /* Darknet's mirrored column */
}

/* NULL when d is consistent, else what is wrong (host code checks this before
 * running an op) */
static inline const char *cnn_crop_desc_problem(const cnn_crop_desc *d) {
  if (!d) return "descriptor is NULL";
  if (d->n < 0 || d->h < 1 || d->w < 1 || d->c < 1 || d->oh < 1 || d->ow < 1)
    return "bad shape";
  if (d->oh > d->h || d->ow > d->w) return "the crop is larger than its input";
  return 0;
}

/* The argument check every backend's crop op makes: CNN_ERR_ARG naming the backend
 * and op for an inconsistent descriptor, a NULL buffer, or a training crop without
 * a step state. */
static inline cnn_status cnn_crop_check(const char *backend, const char *op,
                                        const cnn_crop_desc *d, const void *src, void *dst,
                                        const cnn_step_state *st) {
  const char *why = cnn_crop_desc_problem(d);
  if (!why && (!src || !dst)) why = "a buffer is NULL";
  if (!why && d->train && !st) why = "a training crop needs the step state";
  if (!why) return CNN_OK;
  return cnn_error(CNN_ERR_ARG, "%s %s: %s (%dx%dx%d -> %dx%d)", backend, op, why, d ? d->h : 0,
                   d ? d->w : 0, d ? d->c : 0, d ? d->oh : 0, d ? d->ow : 0);
}

/* ---- reorg ------------------------------------------------------------------------ */

/* Darknet's CHW index of the NHWC element o of an (h, w, c) image, and back */
CNN_HD int64_t cnn_chw_of_hwc(int64_t o, int h, int w, int c) {
  return (o % c) * ((int64_t)h * w) + o / c;
}
CNN_HD int64_t cnn_hwc_of_chw(int64_t f, int h, int w, int c) {
  int64_t hw = (int64_t)h * w;
  return (f % hw) * c + f / hw;
}

/* The NHWC index within an input image of the element that output element o
 * (NHWC within an output image) copies; -1: none (an EXTRA element, 0). */
CNN_HD int64_t cnn_reorg_src(const cnn_reorg_desc *d, int64_t o) {
  const int64_t s = d->stride, hw = (int64_t)d->h * d->w;
  const int64_t f = cnn_chw_of_hwc(o, d->oh, d->ow, d->oc); /* Darknet's output index */
  int64_t in;                                                /* Darknet's input index */
  switch (d->mode) {
    case CNN_REORG_PLAIN: {
      /* reorg_cpu(forward = 0): out[t] = x[u] with t = i + w (j + h k) running over
       * the input's (k, j, i) and u = w2 + w s (h2 + h s c2) */
      int64_t i = f % d->w, j = f / d->w % d->h, k = f / hw, oc = d->c / (s * s);
      int64_t c2 = k % oc, off = k / oc;
      in = (i * s + off % s) + d->w * s * ((j * s + off / s) + d->h * s * c2);
      break;
    }
    case CNN_REORG_REVERSE: {
      /* reorg_cpu(forward = 1): out[u] = x[t], the same t and u solved for t */
      int64_t ws = d->w * s, hs = d->h * s, oc = d->c / (s * s);
      int64_t w2 = f % ws, h2 = f / ws % hs, c2 = f / (ws * hs);
      int64_t k = ((h2 % s) * s + w2 % s) * oc + c2;
      in = w2 / s + d->w * (h2 / s + d->h * k);
      break;
    }
    case CNN_REORG_FLATTEN: /* flatten(forward = 1): out[p c + k] = x[k hw + p] */
      in = (f % d->c) * hw + f / d->c;
      break;
    case CNN_REORG_FLATTEN_REVERSE: /* flatten(forward = 0): out[k hw + p] = x[p c + k] */
      in = (f % hw) * d->c + f / hw;
      break;
    default: /* EXTRA: the input in CHW order, then zeros */
      if (f >= hw * d->c) return -1;
      in = f;
      break;
  }
  return cnn_hwc_of_chw(in, d->h, d->w, d->c);
}

/* The output shape of a reorg of an (h, w, c) input (extra: EXTRA's appended
 * elements); NULL when Darknet's map is a permutation of it, else why not. */
static inline const char *cnn_reorg_shape(cnn_reorg_mode mode, int h, int w, int c, int stride,
                                          int extra, int *oh, int *ow, int *oc) {
  int64_t s = stride, ss = (int64_t)stride * stride;
  if (h < 1 || w < 1 || c < 1 || stride < 1) return "bad shape or stride";
  if ((int64_t)h * w * c > INT32_MAX) return "input too large";
  switch (mode) {
    case CNN_REORG_PLAIN:
    case CNN_REORG_FLATTEN:
      if (h % s || w % s) return "height and width must be multiples of stride";
      if (mode == CNN_REORG_PLAIN && c % ss) return "channels must be a multiple of stride^2";
      if ((int64_t)c * ss > INT32_MAX) return "too many output channels";
      *oh = (int)(h / s);
      *ow = (int)(w / s);
      *oc = (int)(c * ss);
      return 0;
    case CNN_REORG_REVERSE:
    case CNN_REORG_FLATTEN_REVERSE:
      if (c % ss) return "channels must be a multiple of stride^2";
      if ((int64_t)h * s > INT32_MAX || (int64_t)w * s > INT32_MAX) return "output too large";
      *oh = (int)(h * s);
      *ow = (int)(w * s);
      *oc = (int)(c / ss);
      return 0;
    case CNN_REORG_EXTRA:
      if (extra < 1) return "extra must be positive";
      if ((int64_t)h * w * c + extra > INT32_MAX) return "output too large";
      *oh = *ow = 1;
      *oc = h * w * c + extra;
      return 0;
  }
  return "unknown mode";
}

/* NULL when d is consistent (its output shape is cnn_reorg_shape's), else why not */
static inline const char *cnn_reorg_desc_problem(const cnn_reorg_desc *d) {
  if (!d) return "descriptor is NULL";
  if (d->n < 0) return "bad batch";
  int oh = 0, ow = 0, oc = 0;
  int64_t extra = d->mode == CNN_REORG_EXTRA ? d->oc - (int64_t)d->h * d->w * d->c : 0;
  if (extra < 0) return "the output is smaller than the input";
  const char *why =
      cnn_reorg_shape(d->mode, d->h, d->w, d->c, d->stride, (int)extra, &oh, &ow, &oc);
  if (why) return why;
  if (oh != d->oh || ow != d->ow || oc != d->oc) return "the output shape does not match the mode";
  return 0;
}

/* The argument check every backend's reorg op makes (as cnn_crop_check) */
static inline cnn_status cnn_reorg_check(const char *backend, const char *op,
                                         const cnn_reorg_desc *d, const void *src, void *dst) {
  const char *why = cnn_reorg_desc_problem(d);
  if (!why && (!src || !dst)) why = "a buffer is NULL";
  if (!why) return CNN_OK;
  return cnn_error(CNN_ERR_ARG, "%s %s: %s (%dx%dx%d -> %dx%dx%d, stride %d, mode %d)", backend,
                   op, why, d ? d->h : 0, d ? d->w : 0, d ? d->c : 0, d ? d->oh : 0,
                   d ? d->ow : 0, d ? d->oc : 0, d ? d->stride : 0, d ? (int)d->mode : 0);
}

#endif
