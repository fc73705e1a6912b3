/* Image files: a dataset from one sub-folder per class, single-image load and PNG
 * write, resizing and channel conversion. The stb implementations live here, and
 * only here, as static functions so no stb symbol leaks from libcnn. */
#define _POSIX_C_SOURCE 200809L

/* This stb_image version declares stbi_set_unpremultiply_on_load_thread without
 * defining it; GCC reports that at the end of the file, so the pragma stays on. */
#pragma GCC diagnostic ignored "-Wunused-function"
#define STBIDEF static __attribute__((unused))
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_JPEG /* JPEG goes through libjpeg-turbo: see jpeg.c */
#define STB_IMAGE_WRITE_STATIC
#define STBIWDEF static __attribute__((unused))
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBIRDEF static __attribute__((unused))
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image.h>
#include <stb_image_resize.h>
#include <stb_image_write.h>

#include "data/jpeg.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cnn/data.h"
#include "core/error.h"

#define IMG_MAX_SIDE 65536

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void free_names(char **v, int n) {
  for (int i = 0; i < n; i++) free(v[i]);
  free(v);
}

/* Sorted non-hidden entries of dir that are directories (want_dirs) or regular
 * files; sorted so class indices and image order do not depend on the file system. */
static cnn_status list_dir(const char *dir, int want_dirs, char ***out, int *count) {
  *out = NULL;
  *count = 0;
  DIR *d = opendir(dir);
  if (!d) return cnn_error(CNN_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
  char **v = NULL;
  int n = 0, cap = 0;
  cnn_status s = CNN_OK;
  size_t dlen = strlen(dir);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue; /* hidden files, "." and ".." */
    size_t plen = dlen + strlen(e->d_name) + 2;
    char *p = malloc(plen);
    if (!p) {
      s = cnn_error(CNN_ERR_NOMEM, "%s: out of memory listing the folder", dir);
      break;
    }
    snprintf(p, plen, "%s/%s", dir, e->d_name);
    struct stat st;
    int keep = stat(p, &st) == 0 && (want_dirs ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
    free(p);
    if (!keep) continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      char **nv = n < INT_MAX / 2 ? realloc(v, (size_t)cap * sizeof *v) : NULL;
      if (!nv) {
        s = cnn_error(CNN_ERR_NOMEM, "%s: out of memory listing the folder", dir);
        break;
      }
      v = nv;
    }
    size_t len = strlen(e->d_name) + 1;
    if (!(v[n] = malloc(len))) {
      s = cnn_error(CNN_ERR_NOMEM, "%s: out of memory listing the folder", dir);
      break;
    }
    memcpy(v[n++], e->d_name, len);
  }
  closedir(d);
  if (s != CNN_OK) {
    free_names(v, n);
    return s;
  }
  if (n > 1) qsort(v, (size_t)n, sizeof *v, name_cmp);
  *out = v;
  *count = n;
  return CNN_OK;
}

/* ---- single images -------------------------------------------------------- */

static cnn_status check_dims(const char *what, int h, int w, int c) {
  if (h < 1 || w < 1 || h > IMG_MAX_SIDE || w > IMG_MAX_SIDE || c < 1 || c > 4)
    return cnn_error(CNN_ERR_ARG, "%s: bad image size %dx%dx%d (channels must be 1-4)", what, h,
                     w, c);
  return CNN_OK;
}

static uint32_t le(const uint8_t *p, int n) {
  uint32_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* The fewest bytes a file with this header (hd: its first n bytes) and this size
 * can hold, for the uncompressed formats where stb_image does not notice missing
 * pixel data (it reads zeros past the end); 0 where unknown or compressed. The
 * format is told as stb_image tells it: by magic bytes, and TGA (which has none)
 * last, by elimination. */
static int pnm_header(const uint8_t *hd, size_t n, uint64_t *maxval, uint64_t *data);

static uint64_t min_file_size(const uint8_t *hd, size_t n, uint64_t w, uint64_t h) {
  if (n < 2) return 0;
  uint64_t maxval, data;
  if (pnm_header(hd, n, &maxval, &data) == 1) /* 16 bits a sample above 255 */
    return data + w * h * (hd[1] == '6' ? 3 : 1) * (maxval > 255 ? 2 : 1);
  if (hd[0] == 'P' && (hd[1] == '5' || hd[1] == '6')) return w * h * (hd[1] == '6' ? 3 : 1);
  if (n < 18) return 0;
  if (hd[0] == 'B' && hd[1] == 'M') {
    if (n < 30) return 0;
    uint32_t offset = le(hd + 10, 4), hsz = le(hd + 14, 4);
    uint64_t bpp = hsz == 12 ? le(hd + 24, 2) : le(hd + 28, 2);
    uint32_t compress = hsz >= 40 && n >= 34 ? le(hd + 30, 4) : 0;
    if (compress == 1 || compress == 2) /* RLE8/RLE4: a 2-byte pair codes <= 255 pixels */
      return (uint64_t)offset + (w * h + 254) / 255 * 2;
    /* anything else stb decodes as raw pixels (an unknown compression included) */
    uint64_t row = (w * bpp + 31) / 32 * 4, last = (w * bpp + 7) / 8; /* last row unpadded */
    return (uint64_t)offset + row * (h - 1) + last;
  }
  /* Compressed formats: a bound from the best ratio the format allows, so a tiny file
   * cannot make the decoder produce (and spend seconds on) a huge image: deflate
   * codes at most 258 bytes in 2 bits (PNG: one bit a pixel at least), an LZW
   * code of >= 1 bit at most 4096 pixels (GIF). */
  static const uint8_t png[4] = {0x89, 'P', 'N', 'G'}, pic[4] = {0x53, 0x80, 0xF6, 0x34};
  if (!memcmp(hd, png, 4)) return w * h / (8 * 1032);
  if (!memcmp(hd, "GIF8", 4)) return w * h / (4096 * 8);
  if ((hd[0] == 0xFF && hd[1] == 0xD8) || !memcmp(hd, "8BPS", 4) || !memcmp(hd, pic, 4) ||
      !memcmp(hd, "#?", 2))
    return 0;
  /* TGA: types 1-3 (colour-mapped, true colour, gray) are uncompressed, 9-11 the same
   * run-length coded: a packet of one header byte and one pixel codes <= 128 pixels */
  uint64_t cmap = hd[1] == 1 ? (uint64_t)le(hd + 5, 2) * ((hd[7] + 7u) / 8) : 0;
  uint64_t px = (hd[16] + 7u) / 8;
  if (hd[2] >= 9 && hd[2] <= 11) return 18 + hd[0] + cmap + (w * h + 127) / 128 * (1 + px);
  if (hd[2] < 1 || hd[2] > 3) return 0;
  return 18 + hd[0] + cmap + w * h * px;
}

/* The header of a binary PNM (P5 gray, P6 RGB): width, height, maxval as digits
 * separated by whitespace or comments, then one whitespace byte before the pixels.
 * Returns -1 for a number of 10+ digits (it overflows stb_image 2.27's int parser, a
 * bug fixed in 2.28: a corrupt file either way), 1 with *maxval and *data (the
 * offset of the pixels) set, 0 when not a binary PNM or the header runs past n. */
static int pnm_header(const uint8_t *hd, size_t n, uint64_t *maxval, uint64_t *data) {
  if (n < 2 || hd[0] != 'P' || (hd[1] != '5' && hd[1] != '6')) return 0;
  size_t i = 2;
  uint64_t v = 0;
  for (int field = 0; field < 3; field++) { /* width, height, maxval */
    while (i < n && (hd[i] == ' ' || hd[i] == '\t' || hd[i] == '\n' || hd[i] == '\r' ||
                     hd[i] == '\v' || hd[i] == '\f' || hd[i] == '#')) {
      if (hd[i] == '#')
        while (i < n && hd[i] != '\n' && hd[i] != '\r') i++;
      else
        i++;
    }
    int digits = 0;
    for (v = 0; i < n && hd[i] >= '0' && hd[i] <= '9'; i++, digits++) v = v * 10 + (hd[i] - '0');
    if (digits > 9) return -1;
    if (i >= n) return 0; /* header longer than we looked at: the digits so far were fine */
  }
  *maxval = v;
  *data = i + 1;
  return 1;
}

/* A PNG's chunks must fit in the file: stb_image 2.27 sizes its IDAT buffer from the
 * chunk lengths before reading them, so a 170-byte file whose chunk claims 7 MB made
 * it reallocate up to gigabytes (found by fuzzing). 1 when a chunk overruns. */
static int png_bad_chunks(FILE *f, uint64_t size) {
  uint64_t pos = 8;
  uint8_t c[8];
  while (pos + 12 <= size) {
    if (fseek(f, (long)pos, SEEK_SET) != 0 || fread(c, 1, 8, f) != 8) return 0;
    uint64_t len = (uint64_t)c[0] << 24 | (uint64_t)c[1] << 16 | (uint64_t)c[2] << 8 | c[3];
    if (len > size - pos - 12) return 1;
    if (!memcmp(c + 4, "IEND", 4)) return 0;
    pos += 12 + len;
  }
  return 0;
}

/* Opens path and checks its header before anything is decoded: a size of at least
 * 1x1 and at most max_pixels, and a file long enough for it where the format says
 * how long that is. *fp is left at the start of the file. */
static cnn_status open_image(const char *path, int64_t max_pixels, FILE **fp, int *iw, int *ih,
                             int *jpeg) {
  if (max_pixels <= 0) max_pixels = CNN_IMAGE_MAX_PIXELS;
  FILE *f = *fp = fopen(path, "rb");
  if (!f) return cnn_error(CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  uint8_t hd[1024];
  size_t n = fread(hd, 1, sizeof hd, f);
  struct stat st;
  int ic = 0;
  cnn_status s = CNN_OK;
  uint64_t pnm_max, pnm_data;
  if (pnm_header(hd, n, &pnm_max, &pnm_data) < 0)
    s = cnn_error(CNN_ERR_PARSE, "%s: corrupt PNM header: a size of 10 or more digits", path);
  else if (fstat(fileno(f), &st) != 0 || fseek(f, 0, SEEK_SET) != 0)
    s = cnn_error(CNN_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
  else if (n >= 8 && !memcmp(hd, "\x89PNG\r\n\x1a\n", 8) && png_bad_chunks(f, (uint64_t)st.st_size))
    s = cnn_error(CNN_ERR_PARSE, "%s: corrupt PNG: a chunk runs past the end of the file", path);
  else if ((*jpeg = cnn_jpeg_is(hd, n))) {
    s = cnn_jpeg_info(f, path, iw, ih);
    if (s == CNN_OK && fseek(f, 0, SEEK_SET) != 0)
      s = cnn_error(CNN_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
  } else if (fseek(f, 0, SEEK_SET) != 0 || !stbi_info_from_file(f, iw, ih, &ic))
    s = cnn_error(CNN_ERR_PARSE, "%s: cannot decode image: %s", path, stbi_failure_reason());
  if (s == CNN_OK && (*iw < 1 || *ih < 1))
    s = cnn_error(CNN_ERR_PARSE, "%s: the header gives an empty %dx%d image", path, *iw, *ih);
  else if (s == CNN_OK && (int64_t)*iw * *ih > max_pixels)
    s = cnn_error(CNN_ERR_ARG, "%s: the header gives a %dx%d image (%lld pixels), over the "
                  "limit of %lld pixels per image (--max-pixels of cnn train, eval and predict raises it)",
                  path, *iw, *ih, (long long)*iw * *ih, (long long)max_pixels);
  if (s == CNN_OK) {
    uint64_t need = min_file_size(hd, n, (uint64_t)*iw, (uint64_t)*ih);
    if ((uint64_t)st.st_size < need)
      s = cnn_error(CNN_ERR_PARSE, "%s: truncated: %lld bytes, but a %dx%d image of this format "
                    "needs at least %llu", path, (long long)st.st_size, *iw, *ih,
                    (unsigned long long)need);
  }
  if (s != CNN_OK) {
    fclose(f);
    *fp = NULL;
  }
  return s;
}

/* [n] pixels of ci channels to co channels, with stb_image's rules (luma
 * (77 r + 150 g + 29 b) >> 8, opaque alpha added). stb decodes in the file's own
 * channels and this converts: stb 2.27 converts 16-bit PNMs as if they were 8-bit
 * and reads past its buffer (found by fuzzing; fixed upstream in 2.28). */
static void convert_channels(const uint8_t *in, int ci, uint8_t *o, int co, size_t n) {
  for (size_t i = 0; i < n; i++, in += ci, o += co) {
    int r = in[0], g = ci >= 3 ? in[1] : in[0], b = ci >= 3 ? in[2] : in[0];
    int a = ci == 2 ? in[1] : ci == 4 ? in[3] : 255;
    int y = ci >= 3 ? (r * 77 + g * 150 + b * 29) >> 8 : r;
    if (co == 1) o[0] = (uint8_t)y;
    else if (co == 2) o[0] = (uint8_t)y, o[1] = (uint8_t)a;
    else {
      o[0] = (uint8_t)r, o[1] = (uint8_t)g, o[2] = (uint8_t)b;
      if (co == 4) o[3] = (uint8_t)a;
    }
  }
}

/* The whole file decoded to c channels at its own size, checked first (open_image):
 * *img is freed with free() when *mallocd, else with stbi_image_free(). */
static cnn_status decode_image(const char *path, int c, int64_t max_pixels, uint8_t **img,
                               int *mallocd, int *iw, int *ih) {
  FILE *fp;
  int ic = 0, hw = 0, hh = 0, jpeg = 0;
  *img = NULL;
  CNN_TRY(open_image(path, max_pixels, &fp, &hw, &hh, &jpeg));
  *mallocd = jpeg; /* free() rather than stbi_image_free() */
  cnn_status s = CNN_OK;
  if (jpeg) {
    s = cnn_jpeg_load(fp, path, c, max_pixels > 0 ? max_pixels : CNN_IMAGE_MAX_PIXELS, iw, ih,
                      img);
  } else if (!(*img = stbi_load_from_file(fp, iw, ih, &ic, 0))) { /* the file's channels */
    s = cnn_error(CNN_ERR_PARSE, "%s: cannot decode image: %s", path, stbi_failure_reason());
  } else if (ic != c) {
    uint8_t *conv = ic >= 1 && ic <= 4 ? malloc((size_t)*iw * (size_t)*ih * (size_t)c) : NULL;
    if (conv) convert_channels(*img, ic, conv, c, (size_t)*iw * (size_t)*ih);
    else s = cnn_error(CNN_ERR_NOMEM, "%s: cannot convert %d channels to %d", path, ic, c);
    stbi_image_free(*img);
    *img = conv;
    *mallocd = 1;
  }
  fclose(fp);
  if (s == CNN_OK && (*iw != hw || *ih != hh)) /* the decoder disagrees with the checked header */
    s = cnn_error(CNN_ERR_PARSE, "%s: decoded a %dx%d image from a header of %dx%d", path, *iw,
                  *ih, hw, hh);
  if (s != CNN_OK) {
    if (*mallocd) free(*img);
    else stbi_image_free(*img);
    *img = NULL;
  }
  return s;
}

/* a / b rounded to nearest, clamped to [1, hi] */
static int ratio(int64_t a, int64_t b, int hi) {
  int64_t v = (a + b / 2) / b;
  return v < 1 ? 1 : v > hi ? hi : (int)v;
}

/* src region (sw x sh, row stride ss bytes) resized into dst (dw x dh, stride ds) */
static cnn_status resize_region(const char *path, const uint8_t *src, int sw, int sh, int ss,
                                uint8_t *dst, int dw, int dh, int ds, int c) {
  if (sw == dw && sh == dh) {
    for (int y = 0; y < sh; y++) memcpy(dst + (size_t)y * ds, src + (size_t)y * ss, (size_t)sw * c);
    return CNN_OK;
  }
  if (!stbir_resize_uint8(src, sw, sh, ss, dst, dw, dh, ds, c))
    return cnn_error(CNN_ERR_NOMEM, "%s: resizing %dx%d to %dx%d failed", path, sw, sh, dw, dh);
  return CNN_OK;
}

cnn_status cnn_image_load_fit(const char *path, int h, int w, int c, int64_t max_pixels,
                              cnn_image_fit fit, const uint8_t *fill, uint8_t *out, int *file_w,
                              int *file_h) {
  if (!path || !out) return cnn_error(CNN_ERR_ARG, "cnn_image_load: NULL argument");
  if (fit != CNN_FIT_STRETCH && fit != CNN_FIT_CROP && fit != CNN_FIT_LETTERBOX)
    return cnn_error(CNN_ERR_ARG, "cnn_image_load_fit: unknown fit %d", (int)fit);
  CNN_TRY(check_dims(path, h, w, c));
  uint8_t *img;
  int mallocd, iw = 0, ih = 0;
  CNN_TRY(decode_image(path, c, max_pixels, &img, &mallocd, &iw, &ih));
  if (file_w) *file_w = iw;
  if (file_h) *file_h = ih;
  int64_t wide = (int64_t)iw * h - (int64_t)ih * w; /* > 0: wider than the input */
  cnn_status s;
  if (fit == CNN_FIT_STRETCH || wide == 0) {
    s = resize_region(path, img, iw, ih, iw * c, out, w, h, w * c, c);
  } else if (fit == CNN_FIT_CROP) { /* the centred region with the input's aspect ratio */
    int cw = wide > 0 ? ratio((int64_t)ih * w, h, iw) : iw;
    int ch = wide > 0 ? ih : ratio((int64_t)iw * h, w, ih);
    const uint8_t *src = img + ((size_t)((ih - ch) / 2) * iw + (size_t)((iw - cw) / 2)) * c;
    s = resize_region(path, src, cw, ch, iw * c, out, w, h, w * c, c);
  } else { /* letterbox: the whole image inside h x w, centred, on fill */
    int nw = wide > 0 ? w : ratio((int64_t)iw * h, ih, w);
    int nh = wide > 0 ? ratio((int64_t)ih * w, iw, h) : h;
    for (size_t p = 0; p < (size_t)h * w; p++)
      for (int k = 0; k < c; k++) out[p * c + k] = fill ? fill[k] : 0;
    uint8_t *dst = out + ((size_t)((h - nh) / 2) * w + (size_t)((w - nw) / 2)) * c;
    s = resize_region(path, img, iw, ih, iw * c, dst, nw, nh, w * c, c);
  }
  if (mallocd) free(img);
  else stbi_image_free(img);
  return s;
}

cnn_status cnn_image_load_limit(const char *path, int h, int w, int c, int64_t max_pixels,
                                uint8_t *out) {
  return cnn_image_load_fit(path, h, w, c, max_pixels, CNN_FIT_STRETCH, NULL, out, NULL, NULL);
}

cnn_status cnn_image_load(const char *path, int h, int w, int c, uint8_t *out) {
  return cnn_image_load_limit(path, h, w, c, 0, out);
}

cnn_status cnn_image_write_png(const char *path, int h, int w, int c, const uint8_t *img) {
  if (!path || !img) return cnn_error(CNN_ERR_ARG, "cnn_image_write_png: NULL argument");
  CNN_TRY(check_dims(path, h, w, c));
  errno = 0;
  if (!stbi_write_png(path, w, h, c, img, w * c))
    return cnn_error(CNN_ERR_IO, "%s: cannot write PNG: %s", path,
                     errno ? strerror(errno) : "encoder failed");
  return CNN_OK;
}

/* ---- channel conversion and resizing ---------------------------------------- */

/* src pixel with sc channels -> dst pixel with dc channels (gray <-> RGB, alpha) */
static void convert_pixel(const uint8_t *s, int sc, uint8_t *d, int dc) {
  uint8_t r, g, b, a = 255;
  if (sc <= 2) {
    r = g = b = s[0];
    if (sc == 2) a = s[1];
  } else {
    r = s[0];
    g = s[1];
    b = s[2];
    if (sc == 4) a = s[3];
  }
  if (dc <= 2) {
    /* ITU-R BT.601 luma, as stb_image and PIL compute it */
    d[0] = sc <= 2 ? r : (uint8_t)((r * 77 + g * 150 + b * 29 + 128) >> 8);
    if (dc == 2) d[1] = a;
  } else {
    d[0] = r;
    d[1] = g;
    d[2] = b;
    if (dc == 4) d[3] = a;
  }
}

cnn_status cnn_dataset_resize(cnn_dataset *d, int h, int w, int c) {
  if (!d) return cnn_error(CNN_ERR_ARG, "cnn_dataset_resize: NULL dataset");
  if (!h) h = d->h;
  if (!w) w = d->w;
  if (!c) c = d->c;
  CNN_TRY(check_dims("resizing the dataset", h, w, c));
  if (h == d->h && w == d->w && c == d->c) return CNN_OK;
  size_t in_px = (size_t)d->h * d->w, out_sz = (size_t)h * w * c;
  if (d->n > 0 && out_sz > SIZE_MAX / (size_t)d->n)
    return cnn_error(CNN_ERR_NOMEM, "resizing %d images to %dx%dx%d: size overflows", d->n, h, w,
                     c);
  uint8_t *dst = malloc(out_sz * (size_t)(d->n ? d->n : 1));
  uint8_t *conv = malloc(in_px * (size_t)c);
  if (!dst || !conv) {
    free(dst);
    free(conv);
    return cnn_error(CNN_ERR_NOMEM, "out of memory resizing %d images to %dx%dx%d", d->n, h, w,
                     c);
  }
  for (int i = 0; i < d->n; i++) {
    const uint8_t *src = d->images + (size_t)i * in_px * d->c;
    uint8_t *o = dst + (size_t)i * out_sz;
    const uint8_t *stage = src;
    if (c != d->c) {
      for (size_t p = 0; p < in_px; p++) convert_pixel(src + p * d->c, d->c, conv + p * c, c);
      stage = conv;
    }
    if (h == d->h && w == d->w) {
      memcpy(o, stage, out_sz);
    } else if (!stbir_resize_uint8(stage, d->w, d->h, 0, o, w, h, 0, c)) {
      free(dst);
      free(conv);
      return cnn_error(CNN_ERR_NOMEM, "resizing image %d from %dx%d to %dx%d failed", i, d->w,
                       d->h, w, h);
    }
  }
  free(conv);
  free(d->images);
  d->images = dst;
  d->h = h;
  d->w = w;
  d->c = c;
  return CNN_OK;
}

/* ---- folder datasets -------------------------------------------------------- */

static char *join(const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", a, b);
  return p;
}

cnn_status cnn_dataset_load_folder(const char *dir, int h, int w, int c, cnn_dataset *out) {
  return cnn_dataset_load_folder_limit(dir, h, w, c, 0, out);
}

cnn_status cnn_dataset_load_folder_limit(const char *dir, int h, int w, int c,
                                         int64_t max_pixels, cnn_dataset *out) {
  if (!dir || !out) return cnn_error(CNN_ERR_ARG, "cnn_dataset_load_folder: NULL argument");
  memset(out, 0, sizeof *out);
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return cnn_error(CNN_ERR_IO, "%s: image folder not found (expected one sub-folder of "
                     "images per class)", dir);
  char **classes = NULL;
  int ncls = 0;
  CNN_TRY(list_dir(dir, 1, &classes, &ncls));
  if (ncls == 0) {
    free_names(classes, ncls);
    return cnn_error(CNN_ERR_IO, "%s: no class sub-folders (expected one sub-folder of images "
                     "per class, e.g. %s/cat/1.png)", dir, dir);
  }
  /* every image path with its class, gathered before decoding so we allocate once */
  char **files = NULL;
  int32_t *labels = NULL;
  int nfiles = 0, cap = 0;
  cnn_status s = CNN_OK;
  for (int k = 0; k < ncls && s == CNN_OK; k++) {
    char *cdir = join(dir, classes[k]);
    char **names = NULL;
    int nn = 0;
    s = cdir ? list_dir(cdir, 0, &names, &nn) : cnn_error(CNN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < nn && s == CNN_OK; i++) {
      if (nfiles == cap) {
        if (cap > INT_MAX / 4) {
          s = cnn_error(CNN_ERR_ARG, "%s: too many images", dir);
          break;
        }
        cap = cap ? 2 * cap : 256;
        char **nf = realloc(files, (size_t)cap * sizeof *files);
        if (nf) files = nf;
        int32_t *nl = realloc(labels, (size_t)cap * sizeof *labels);
        if (nl) labels = nl;
        if (!nf || !nl) {
          s = cnn_error(CNN_ERR_NOMEM, "%s: out of memory listing images", dir);
          break;
        }
      }
      if (!(files[nfiles] = join(cdir, names[i]))) {
        s = cnn_error(CNN_ERR_NOMEM, "%s: out of memory listing images", dir);
        break;
      }
      labels[nfiles++] = k;
    }
    free_names(names, nn);
    free(cdir);
  }
  if (s == CNN_OK && nfiles == 0)
    s = cnn_error(CNN_ERR_IO, "%s: the %d class sub-folders hold no image files", dir, ncls);
  if (s == CNN_OK && (!h || !w)) {
    /* size from the first image; the rest are resized to it */
    int iw = 0, ih = 0, jpeg = 0;
    FILE *fp;
    s = open_image(files[0], max_pixels, &fp, &iw, &ih, &jpeg);
    if (s == CNN_OK) fclose(fp);
    if (!h) h = ih;
    if (!w) w = iw;
  }
  if (!c) c = 3;
  if (s == CNN_OK) s = check_dims(dir, h, w, c);
  if (s == CNN_OK) {
    size_t isz = (size_t)h * w * c;
    out->n = nfiles;
    out->h = h;
    out->w = w;
    out->c = c;
    out->classes = ncls;
    out->class_names = classes;
    classes = NULL;
    out->labels = labels;
    labels = NULL;
    out->images = isz <= SIZE_MAX / (size_t)nfiles ? malloc(isz * (size_t)nfiles) : NULL;
    if (!out->images)
      s = cnn_error(CNN_ERR_NOMEM, "%s: out of memory for %d images of %dx%dx%d", dir, nfiles,
                    h, w, c);
    for (int i = 0; i < nfiles && s == CNN_OK; i++)
      s = cnn_image_load_limit(files[i], h, w, c, max_pixels, out->images + (size_t)i * isz);
  }
  free_names(files, nfiles);
  free(labels);
  if (classes) free_names(classes, ncls);
  if (s != CNN_OK) cnn_dataset_free(out);
  return s;
}
