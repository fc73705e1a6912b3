/* Batch loader: permutation per epoch, batch sizes, exact normalisation, each
 * augmentation against a naive per-pixel reference, threaded == unthreaded bit for
 * bit, resume mid-epoch, restart while a batch is in flight, dataset mean/std and
 * bad configs. Runs on small synthetic datasets whose label is the image index. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnn/cnn.h"
#include "cnn/loader.h"
#include "data/augment.h"
#include "testutil.h"

/* no byte normalises to exactly 0 with these (the cutout checks count zeros) */
static const float MEAN[4] = {0.31f, 0.47f, 0.52f, 0.21f};
static const float STD[4] = {0.23f, 0.29f, 0.17f, 0.5f};

/* n images h x w x c with varied bytes; label i = image index, so a batch says
 * which images it holds */
static cnn_dataset make_data(int n, int h, int w, int c) {
  cnn_dataset d = {n, h, w, c, n, NULL, NULL, NULL};
  d.images = malloc((size_t)n * h * w * c);
  d.labels = malloc(sizeof(int32_t) * (size_t)n);
  for (int i = 0; i < n; i++) {
    d.labels[i] = i;
    for (int p = 0; p < h * w * c; p++)
      d.images[(size_t)i * h * w * c + p] =
          (uint8_t)(cnn_rng_u64(1234, (uint64_t)i * 4096 + p) >> 56);
  }
  return d;
}

static void free_data(cnn_dataset *d) {
  free(d->images);
  free(d->labels);
}

static cnn_loader_config base_cfg(const cnn_dataset *d, int batch) {
  cnn_loader_config c;
  memset(&c, 0, sizeof c);
  c.data = d;
  c.batch = batch;
  c.shuffle = 1;
  c.seed = 42;
  c.channels = d ? d->c : 1;
  for (int i = 0; i < 4; i++) {
    c.mean[i] = MEAN[i];
    c.std[i] = STD[i];
  }
  return c;
}

static float hand_norm(int u, int ch) { return ((float)u / 255.0f - MEAN[ch]) / STD[ch]; }

/* naive reference of one augmented image: crop (raw-0 fill), flip, cutout to 0 */
static void ref_image(const cnn_dataset *d, int idx, const cnn_aug_draw *dr, float *out) {
  int h = d->h, w = d->w, c = d->c;
  const uint8_t *img = d->images + (size_t)idx * h * w * c;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int ch = 0; ch < c; ch++) {
        float v;
        int sx = (dr->flip ? w - 1 - x : x) + dr->dx, sy = y + dr->dy;
        if (y >= dr->cut_y0 && y < dr->cut_y1 && x >= dr->cut_x0 && x < dr->cut_x1)
          v = 0.0f;
        else if (sx < 0 || sx >= w || sy < 0 || sy >= h)
          v = hand_norm(0, ch);
        else
          v = hand_norm(img[(sy * w + sx) * c + ch], ch);
        out[(y * w + x) * c + ch] = v;
      }
}

/* every batch of an epoch, concatenated: x [n, h, w, c], y [n]; returns images */
static int run_epoch(cnn_loader *l, int epoch, int first, const cnn_dataset *d, float *x,
                     int32_t *y, int *sizes, int *nbatches) {
  size_t px = (size_t)d->h * d->w * d->c;
  int total = 0, nb = 0;
  const float *bx;
  const int32_t *by;
  int n;
  if (cnn_loader_start_epoch(l, epoch, first) != CNN_OK) return -1;
  while (cnn_loader_next(l, &bx, &by, &n)) {
    memcpy(x + (size_t)total * px, bx, sizeof(float) * px * (size_t)n);
    memcpy(y + total, by, sizeof(int32_t) * (size_t)n);
    if (sizes) sizes[nb] = n;
    nb++;
    total += n;
  }
  if (nbatches) *nbatches = nb;
  return total;
}

static int allocs_live, allocs_total;
static void *count_alloc(void *ctx, size_t n) {
  CHECK(ctx == &allocs_total, "host_ctx is passed to host_alloc");
  allocs_live++;
  allocs_total++;
  return malloc(n);
}
static void count_free(void *ctx, void *p) {
  CHECK(ctx == &allocs_total, "host_ctx is passed to host_free");
  allocs_live--;
  free(p);
}

static void test_errors(void) {
  cnn_dataset d = make_data(10, 4, 4, 3);
  cnn_loader *l = (cnn_loader *)&d; /* must come back NULL on error */
  cnn_loader_config c = base_cfg(&d, 0);
  CHECK(cnn_loader_create(&c, &l) == CNN_ERR_ARG && l == NULL, "batch 0: %s", cnn_last_error());
  c = base_cfg(&d, -3);
  CHECK(cnn_loader_create(&c, &l) == CNN_ERR_ARG, "negative batch");
  c = base_cfg(NULL, 4);
  c.channels = 3;
  CHECK(cnn_loader_create(&c, &l) == CNN_ERR_ARG, "NULL data");
  CHECK(cnn_loader_create(NULL, &l) == CNN_ERR_ARG, "NULL config");
  c = base_cfg(&d, 4);
  c.channels = 1;
  cnn_status s = cnn_loader_create(&c, &l);
  CHECK(s == CNN_ERR_SHAPE && strstr(cnn_last_error(), "channels"), "mismatched channels: %s",
        cnn_last_error());
  c = base_cfg(&d, 4);
  c.std[1] = 0;
  CHECK(cnn_loader_create(&c, &l) == CNN_ERR_ARG, "std 0");
  c = base_cfg(&d, 4);
  c.aug.crop_pad = -1;
  CHECK(cnn_loader_create(&c, &l) == CNN_ERR_ARG, "negative pad");
  c = base_cfg(&d, 4);
  c.aug.cutout = -2;
  CHECK(cnn_loader_create(&c, &l) == CNN_ERR_ARG, "negative cutout");
  c = base_cfg(&d, 4);
  c.host_alloc = count_alloc;
  c.host_ctx = &allocs_total;
  CHECK(cnn_loader_create(&c, &l) == CNN_ERR_ARG, "host_alloc without host_free");
  cnn_dataset empty = d;
  empty.n = 0;
  c = base_cfg(&empty, 4);
  CHECK(cnn_loader_create(&c, &l) != CNN_OK, "empty dataset");

  for (int threaded = 0; threaded < 2; threaded++) {
    c = base_cfg(&d, 4);
    c.threaded = threaded;
    l = NULL;
    CHECK_OK(cnn_loader_create(&c, &l));
    if (!l) continue;
    const float *x = NULL;
    CHECK(cnn_loader_next(l, &x, NULL, NULL) == 0, "next before start_epoch gives nothing");
    CHECK(cnn_loader_start_epoch(l, 0, 4) == CNN_ERR_ARG, "first batch past the end");
    CHECK(cnn_loader_start_epoch(l, 0, -1) == CNN_ERR_ARG, "negative first batch");
    CHECK(cnn_loader_start_epoch(l, -1, 0) == CNN_ERR_ARG, "negative epoch");
    CHECK_OK(cnn_loader_start_epoch(l, 0, 3)); /* = batches per epoch: an empty epoch */
    CHECK(cnn_loader_next(l, &x, NULL, NULL) == 0, "empty epoch");
    cnn_loader_destroy(l);
  }
  cnn_loader_destroy(NULL);
  free_data(&d);
}

static void test_order_and_sizes(void) {
  cnn_dataset d = make_data(103, 6, 5, 3);
  size_t px = (size_t)6 * 5 * 3;
  float *x = malloc(sizeof(float) * px * 103);
  int32_t y0[103], y1[103], y2[103], y3[103];
  int sizes[16], nb;
  for (int threaded = 0; threaded < 2; threaded++) {
    cnn_loader_config c = base_cfg(&d, 10);
    c.threaded = threaded;
    cnn_loader *l = NULL;
    CHECK_OK(cnn_loader_create(&c, &l));
    if (!l) continue;
    CHECK(cnn_loader_batches_per_epoch(l) == 11, "103/10 -> 11 batches, got %d",
          cnn_loader_batches_per_epoch(l));
    int total = run_epoch(l, 0, 0, &d, x, y0, sizes, &nb);
    CHECK(total == 103 && nb == 11, "epoch 0: %d images in %d batches", total, nb);
    for (int b = 0; b < nb; b++)
      CHECK(sizes[b] == (b < 10 ? 10 : 3), "batch %d has %d images", b, sizes[b]);
    int seen[103] = {0};
    for (int i = 0; i < 103; i++)
      if (y0[i] >= 0 && y0[i] < 103) seen[y0[i]]++;
    int once = 1;
    for (int i = 0; i < 103; i++) once &= seen[i] == 1;
    CHECK(once, "every image exactly once per epoch");
    int identity = 1;
    for (int i = 0; i < 103; i++) identity &= y0[i] == i;
    CHECK(!identity, "shuffle changes the order");
    run_epoch(l, 1, 0, &d, x, y1, NULL, NULL);
    CHECK(memcmp(y0, y1, sizeof y0) != 0, "epochs 0 and 1 differ");
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 103; i++)
      if (y1[i] >= 0 && y1[i] < 103) seen[y1[i]]++;
    once = 1;
    for (int i = 0; i < 103; i++) once &= seen[i] == 1;
    CHECK(once, "every image exactly once in epoch 1");
    run_epoch(l, 0, 0, &d, x, y2, NULL, NULL);
    CHECK(memcmp(y0, y2, sizeof y0) == 0, "epoch 0 again: same order");
    cnn_loader_destroy(l);

    /* a fresh loader with the same seed agrees; another seed does not */
    l = NULL;
    CHECK_OK(cnn_loader_create(&c, &l));
    if (l) {
      run_epoch(l, 1, 0, &d, x, y2, NULL, NULL);
      CHECK(memcmp(y1, y2, sizeof y1) == 0, "same (seed, epoch) in a new loader: same order");
      cnn_loader_destroy(l);
    }
    c.seed = 43;
    l = NULL;
    CHECK_OK(cnn_loader_create(&c, &l));
    if (l) {
      run_epoch(l, 1, 0, &d, x, y3, NULL, NULL);
      CHECK(memcmp(y1, y3, sizeof y1) != 0, "another seed: another order");
      cnn_loader_destroy(l);
    }

    /* no shuffle: dataset order; drop_last: only full batches */
    c = base_cfg(&d, 10);
    c.threaded = threaded;
    c.shuffle = 0;
    c.drop_last = 1;
    l = NULL;
    CHECK_OK(cnn_loader_create(&c, &l));
    if (l) {
      CHECK(cnn_loader_batches_per_epoch(l) == 10, "drop_last: 10 batches");
      total = run_epoch(l, 3, 0, &d, x, y2, sizes, &nb);
      CHECK(total == 100 && nb == 10, "drop_last: %d images in %d batches", total, nb);
      identity = 1;
      for (int i = 0; i < total; i++) identity &= y2[i] == i;
      CHECK(identity, "no shuffle: dataset order");
      cnn_loader_destroy(l);
    }

    /* batch larger than the dataset */
    c = base_cfg(&d, 500);
    c.threaded = threaded;
    l = NULL;
    CHECK_OK(cnn_loader_create(&c, &l));
    if (l) {
      total = run_epoch(l, 0, 0, &d, x, y2, sizes, &nb);
      CHECK(total == 103 && nb == 1, "batch 500: one batch of %d (%d batches)", total, nb);
      cnn_loader_destroy(l);
    }
    c.drop_last = 1;
    l = NULL;
    CHECK_OK(cnn_loader_create(&c, &l));
    if (l) {
      CHECK(cnn_loader_batches_per_epoch(l) == 0, "batch 500, drop_last: no batches");
      total = run_epoch(l, 0, 0, &d, x, y2, sizes, &nb);
      CHECK(total == 0 && nb == 0, "batch 500, drop_last: empty epoch");
      cnn_loader_destroy(l);
    }
  }
  free(x);
  free_data(&d);
}

/* no augmentation: every value bit-equal to the hand formula, and to
 * cnn_normalize_image */
static void test_normalisation(void) {
  cnn_dataset d = make_data(103, 6, 5, 3);
  size_t px = (size_t)6 * 5 * 3;
  float *x = malloc(sizeof(float) * px * 103);
  float *one = malloc(sizeof(float) * px);
  int32_t y[103];
  cnn_loader_config c = base_cfg(&d, 16);
  cnn_loader *l = NULL;
  CHECK_OK(cnn_loader_create(&c, &l));
  if (l) {
    int total = run_epoch(l, 0, 0, &d, x, y, NULL, NULL);
    int bad = 0, bad_pred = 0;
    for (int i = 0; i < total; i++) {
      const uint8_t *img = d.images + (size_t)y[i] * px;
      cnn_normalize_image(img, 6, 5, 3, MEAN, STD, one);
      for (size_t p = 0; p < px; p++) {
        bad += x[i * px + p] != hand_norm(img[p], (int)(p % 3));
        bad_pred += memcmp(&one[p], &x[i * px + p], sizeof(float)) != 0;
      }
    }
    CHECK(total == 103 && bad == 0, "%d values differ from (u/255 - mean)/std", bad);
    CHECK(bad_pred == 0, "%d values of cnn_normalize_image differ from the loader's", bad_pred);
    cnn_loader_destroy(l);
  }
  free(one);
  free(x);
  free_data(&d);
}

/* Each augmentation alone and all together, against the naive reference image
 * built from the documented draws; and direct checks of what each must do. */
static void test_augment(int h, int w, int ch, cnn_augment aug, const char *what) {
  cnn_dataset d = make_data(103, h, w, ch);
  size_t px = (size_t)h * w * ch;
  float *x = malloc(sizeof(float) * px * 103);
  float *want = malloc(sizeof(float) * px);
  float *plain = malloc(sizeof(float) * px);
  int32_t y[103];
  cnn_loader_config c = base_cfg(&d, 10);
  c.aug = aug;
  c.seed = 7;
  cnn_loader *l = NULL;
  CHECK_OK(cnn_loader_create(&c, &l));
  if (!l) goto out;
  const int epoch = 2;
  int total = run_epoch(l, epoch, 0, &d, x, y, NULL, NULL);
  CHECK(total == 103, "%s: %d images", what, total);
  uint64_t key = cnn_aug_epoch_key(c.seed, epoch);
  int mismatched = 0, flips = 0, shifted = 0, cut = 0, bounds_bad = 0, cut_bad = 0;
  for (int i = 0; i < total; i++) {
    cnn_aug_draw dr;
    cnn_aug_draw_for(key, i, h, w, &aug, &dr);
    ref_image(&d, y[i], &dr, want);
    if (memcmp(want, x + i * px, sizeof(float) * px) != 0) mismatched++;
    flips += dr.flip;
    shifted += dr.dx != 0 || dr.dy != 0;
    if (dr.dx < -aug.crop_pad || dr.dx > aug.crop_pad || dr.dy < -aug.crop_pad ||
        dr.dy > aug.crop_pad)
      bounds_bad++;
    if (dr.flip && !aug.flip) bounds_bad++;
    if (aug.cutout > 0) {
      int ch_ = dr.cut_y1 - dr.cut_y0, cw = dr.cut_x1 - dr.cut_x0;
      if (ch_ <= 0 || cw <= 0 || ch_ > aug.cutout || cw > aug.cutout) cut_bad++;
      /* a square wholly inside is exactly cutout x cutout */
      if (dr.cut_y0 > 0 && dr.cut_y1 < h && dr.cut_x0 > 0 && dr.cut_x1 < w &&
          (ch_ != aug.cutout || cw != aug.cutout))
        cut_bad++;
      /* the square is zeros; normalised pixels are never exactly 0 here */
      int zeros = 0;
      for (size_t p = 0; p < px; p++) zeros += x[i * px + p] == 0.0f;
      if (zeros != ch_ * cw * ch) cut_bad++;
      cut += zeros > 0;
    } else if (dr.cut_y1 > dr.cut_y0) {
      cut_bad++;
    }
    /* direct checks of crop and flip on the plain image, no reference */
    if (!aug.cutout) {
      const uint8_t *img = d.images + (size_t)y[i] * px;
      cnn_normalize_image(img, h, w, ch, MEAN, STD, plain);
      const float *o = x + i * px;
      int ok = 1;
      for (int yy = 0; yy < h; yy++)
        for (int xx = 0; xx < w; xx++) {
          int sx = (dr.flip ? w - 1 - xx : xx) + dr.dx, sy = yy + dr.dy;
          for (int k = 0; k < ch; k++) {
            float v = o[(yy * w + xx) * ch + k];
            if (sx < 0 || sx >= w || sy < 0 || sy >= h)
              ok &= v == (0.0f - MEAN[k]) / STD[k]; /* padding is a raw-0 pixel */
            else
              ok &= v == plain[(sy * w + sx) * ch + k];
          }
        }
      if (!ok) mismatched++;
    }
  }
  CHECK(mismatched == 0, "%s: %d of %d images differ from the reference", what, mismatched, total);
  CHECK(bounds_bad == 0 && cut_bad == 0, "%s: %d draws out of bounds, %d bad cutouts", what,
        bounds_bad, cut_bad);
  if (aug.flip) CHECK(flips > 20 && flips < 83, "%s: %d of 103 flipped", what, flips);
  else CHECK(flips == 0, "%s: flipped without flip", what);
  if (aug.crop_pad) CHECK(shifted > 50, "%s: only %d of 103 shifted", what, shifted);
  else CHECK(shifted == 0, "%s: shifted without crop", what);
  if (aug.cutout) CHECK(cut == 103, "%s: %d of 103 have a cutout", what, cut);

  /* augmentation depends on the position in the epoch, not the call: again = same */
  float *x2 = malloc(sizeof(float) * px * 103);
  int32_t y2[103];
  run_epoch(l, epoch, 0, &d, x2, y2, NULL, NULL);
  CHECK(memcmp(x, x2, sizeof(float) * px * 103) == 0 && memcmp(y, y2, sizeof y) == 0,
        "%s: same epoch twice differs", what);
  free(x2);
  cnn_loader_destroy(l);
out:
  free(plain);
  free(want);
  free(x);
  free_data(&d);
}

/* the flip of a known row, spelled out: 1 x 4 x 1 image 10 20 30 40 */
static void test_flip_literal(void) {
  cnn_dataset d = make_data(64, 1, 4, 1);
  for (int i = 0; i < 64; i++)
    for (int k = 0; k < 4; k++) d.images[i * 4 + k] = (uint8_t)(10 * (k + 1));
  cnn_loader_config c = base_cfg(&d, 64);
  c.aug.flip = 1;
  cnn_loader *l = NULL;
  CHECK_OK(cnn_loader_create(&c, &l));
  if (!l) goto out;
  const float *x;
  int n = 0, fwd = 0, rev = 0;
  CHECK_OK(cnn_loader_start_epoch(l, 0, 0));
  CHECK(cnn_loader_next(l, &x, NULL, &n) == 1 && n == 64, "one batch of 64");
  for (int i = 0; i < n; i++) {
    int f = 1, r = 1;
    for (int k = 0; k < 4; k++) {
      f &= x[i * 4 + k] == hand_norm(10 * (k + 1), 0);
      r &= x[i * 4 + k] == hand_norm(10 * (4 - k), 0);
    }
    fwd += f;
    rev += r;
  }
  CHECK(fwd + rev == 64 && fwd > 0 && rev > 0, "flip: %d kept, %d mirrored of 64", fwd, rev);
  cnn_loader_destroy(l);
out:
  free_data(&d);
}

/* crop with a literal image: 3 x 3 x 1 of value 200, pad 1: each output has the
 * 200s where the shifted image lands and raw-0 pixels elsewhere */
static void test_crop_literal(void) {
  cnn_dataset d = make_data(200, 3, 3, 1);
  memset(d.images, 200, 200 * 9);
  cnn_loader_config c = base_cfg(&d, 200);
  c.aug.crop_pad = 1;
  cnn_loader *l = NULL;
  CHECK_OK(cnn_loader_create(&c, &l));
  if (!l) goto out;
  const float *x;
  int n = 0, bad = 0, seen[3][3] = {{0}};
  CHECK_OK(cnn_loader_start_epoch(l, 0, 0));
  CHECK(cnn_loader_next(l, &x, NULL, &n) == 1 && n == 200, "one batch of 200");
  float hi = hand_norm(200, 0), lo = hand_norm(0, 0);
  for (int i = 0; i < n; i++) {
    /* recover the shift from where the image lies */
    int found = 0;
    for (int dy = -1; dy <= 1; dy++)
      for (int dx = -1; dx <= 1; dx++) {
        int ok = 1;
        for (int yy = 0; yy < 3; yy++)
          for (int xx = 0; xx < 3; xx++) {
            int in = yy + dy >= 0 && yy + dy < 3 && xx + dx >= 0 && xx + dx < 3;
            ok &= x[i * 9 + yy * 3 + xx] == (in ? hi : lo);
          }
        if (ok) {
          found = 1;
          seen[dy + 1][dx + 1]++;
        }
      }
    bad += !found;
  }
  CHECK(bad == 0, "crop: %d of 200 images are not a shift within +-1 filled with raw 0", bad);
  int all = 1;
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 3; b++) all &= seen[a][b] > 0;
  CHECK(all, "crop: all 9 shifts occur in 200 images");
  cnn_loader_destroy(l);
out:
  free_data(&d);
}

/* threaded == unthreaded bit for bit over 2 epochs; resume at batch k equals
 * batches k.. of the full epoch; a restart while a batch is in flight is clean */
static void test_threads_and_resume(int h, int w, int ch) {
  cnn_dataset d = make_data(103, h, w, ch);
  size_t px = (size_t)h * w * ch;
  float *xa = malloc(sizeof(float) * px * 103), *xb = malloc(sizeof(float) * px * 103);
  int32_t ya[103], yb[103];
  cnn_loader_config c = base_cfg(&d, 10);
  c.aug.crop_pad = 2;
  c.aug.flip = 1;
  c.aug.cutout = 2;
  cnn_loader *lu = NULL, *lt = NULL;
  CHECK_OK(cnn_loader_create(&c, &lu));
  c.threaded = 1;
  CHECK_OK(cnn_loader_create(&c, &lt));
  if (!lu || !lt) goto out;
  for (int e = 0; e < 2; e++) {
    int na = run_epoch(lu, e, 0, &d, xa, ya, NULL, NULL);
    int nb = run_epoch(lt, e, 0, &d, xb, yb, NULL, NULL);
    CHECK(na == 103 && nb == 103, "epoch %d: %d and %d images", e, na, nb);
    CHECK(memcmp(xa, xb, sizeof(float) * px * 103) == 0 && memcmp(ya, yb, sizeof ya) == 0,
          "epoch %d (%dx%dx%d): threaded differs from unthreaded", e, h, w, ch);
  }
  /* resume: start_epoch(1, k) gives batches k.. of epoch 1 */
  run_epoch(lu, 1, 0, &d, xa, ya, NULL, NULL);
  for (int t = 0; t < 2; t++) {
    cnn_loader *l = t ? lt : lu;
    for (int k = 0; k <= 11; k += 4) {
      int n = run_epoch(l, 1, k, &d, xb, yb, NULL, NULL);
      int want = 103 - 10 * k > 0 ? 103 - 10 * k : 0;
      CHECK(n == want, "resume at %d: %d images, want %d", k, n, want);
      int same = n == want &&
                 memcmp(xa + (size_t)10 * k * px, xb, sizeof(float) * px * (size_t)n) == 0 &&
                 memcmp(ya + 10 * k, yb, sizeof(int32_t) * (size_t)n) == 0;
      CHECK(same, "resume at batch %d (%s) differs from the full epoch", k,
            t ? "threaded" : "unthreaded");
    }
  }
  /* restarts at random points, with the worker mid-batch or waiting: every batch
   * still equals the unthreaded one */
  int bad = 0;
  for (int it = 0; it < 300; it++) {
    uint64_t r = cnn_rng_u64(99, (uint64_t)it);
    int e = (int)(r & 3), k = (int)((r >> 8) % 12), take = (int)((r >> 16) % 5);
    run_epoch(lu, e, 0, &d, xa, ya, NULL, NULL);
    if (cnn_loader_start_epoch(lt, e, k) != CNN_OK) {
      bad++;
      continue;
    }
    for (int b = k; b < k + take; b++) {
      const float *x;
      const int32_t *y;
      int n;
      int got = cnn_loader_next(lt, &x, &y, &n);
      if (got != (b < 11)) bad++;
      if (!got) break;
      if (n != (b < 10 ? 10 : 3) || memcmp(x, xa + (size_t)b * 10 * px, sizeof(float) * px * n) ||
          memcmp(y, ya + b * 10, sizeof(int32_t) * n))
        bad++;
    }
  }
  CHECK(bad == 0, "%d bad batches over 300 random restarts", bad);
  /* a slow consumer: the batch it holds must not change while the worker runs
   * ahead into the other buffer */
  run_epoch(lu, 3, 0, &d, xa, ya, NULL, NULL);
  CHECK_OK(cnn_loader_start_epoch(lt, 3, 0));
  bad = 0;
  for (int b = 0; b < 11; b++) {
    const float *x;
    const int32_t *y;
    int n = 0;
    if (!cnn_loader_next(lt, &x, &y, &n)) {
      bad++;
      break;
    }
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    if (memcmp(x, xa + (size_t)b * 10 * px, sizeof(float) * px * n) ||
        memcmp(y, ya + b * 10, sizeof(int32_t) * n))
      bad++;
  }
  CHECK(bad == 0, "slow consumer: %d held batches changed", bad);
out:
  cnn_loader_destroy(lu);
  cnn_loader_destroy(lt);
  free(xa);
  free(xb);
  free_data(&d);
}

/* custom host allocator: used for every buffer and freed again */

static void test_host_alloc(void) {
  cnn_dataset d = make_data(20, 3, 3, 1);
  cnn_loader_config c = base_cfg(&d, 8);
  c.threaded = 1;
  c.host_alloc = count_alloc;
  c.host_free = count_free;
  c.host_ctx = &allocs_total;
  cnn_loader *l = NULL;
  CHECK_OK(cnn_loader_create(&c, &l));
  CHECK(allocs_total == 4, "threaded: 2 x (images, labels) allocated, got %d", allocs_total);
  if (l) {
    CHECK_OK(cnn_loader_start_epoch(l, 0, 0));
    const float *x;
    int n;
    CHECK(cnn_loader_next(l, &x, NULL, &n) == 1 && n == 8, "first batch"); /* worker busy */
    cnn_loader_destroy(l); /* with a batch possibly in flight */
  }
  CHECK(allocs_live == 0, "%d host buffers leaked", allocs_live);
  free_data(&d);
}

static void test_mean_std(void) {
  cnn_dataset d = make_data(37, 5, 7, 3);
  for (int i = 0; i < 37 * 35; i++) d.images[i * 3 + 2] = 77; /* constant channel */
  float mean[3], std[3];
  CHECK_OK(cnn_dataset_mean_std(&d, mean, std));
  size_t npx = (size_t)37 * 35;
  for (int ch = 0; ch < 2; ch++) {
    double s = 0, q = 0;
    for (size_t i = 0; i < npx; i++) s += d.images[i * 3 + ch] / 255.0;
    double m = s / (double)npx;
    for (size_t i = 0; i < npx; i++) {
      double v = d.images[i * 3 + ch] / 255.0 - m;
      q += v * v;
    }
    double sd = sqrt(q / (double)npx);
    CHECK(fabs(mean[ch] - m) < 1e-6 && fabs(std[ch] - sd) < 1e-6,
          "channel %d: mean %.8f std %.8f, want %.8f %.8f", ch, mean[ch], std[ch], m, sd);
  }
  CHECK(fabsf(mean[2] - 77.0f / 255.0f) < 1e-7f && std[2] == 1.0f,
        "constant channel: mean %g std %g (want std 1)", mean[2], std[2]);
  CHECK(cnn_dataset_mean_std(NULL, mean, std) == CNN_ERR_ARG, "NULL dataset");
  cnn_dataset empty = d;
  empty.n = 0;
  CHECK(cnn_dataset_mean_std(&empty, mean, std) != CNN_OK, "empty dataset");
  free_data(&d);
}

int main(void) {
  test_errors();
  test_order_and_sizes();
  test_normalisation();
  test_augment(6, 5, 3, (cnn_augment){0, 0, 0}, "none");
  test_augment(6, 5, 3, (cnn_augment){2, 0, 0}, "crop 2");
  test_augment(6, 5, 3, (cnn_augment){0, 1, 0}, "flip");
  test_augment(6, 5, 3, (cnn_augment){0, 0, 3}, "cutout 3");
  test_augment(6, 5, 3, (cnn_augment){2, 1, 3}, "crop+flip+cutout");
  test_augment(7, 9, 1, (cnn_augment){2, 1, 0}, "1 channel crop+flip");
  test_augment(7, 9, 1, (cnn_augment){3, 1, 4}, "1 channel all");
  test_augment(4, 3, 4, (cnn_augment){7, 1, 9}, "pad and cutout larger than the image");
  test_flip_literal();
  test_crop_literal();
  test_threads_and_resume(6, 5, 3);
  test_threads_and_resume(7, 9, 1);
  test_host_alloc();
  test_mean_std();
  return tu_finish("test_loader");
}
