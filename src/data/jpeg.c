/* JPEG decoding with libjpeg-turbo (Debian's libjpeg62-turbo). Debian's stb_image
 * 2.27 writes out of bounds on corrupt Huffman tables (found by tests/fuzz; fixed
 * upstream only in 2.28) and its marker parsing cannot be guarded from outside, so
 * stb is built without JPEG (STBI_NO_JPEG in folder.c) and JPEG files come here:
 * libjpeg-turbo is the maintained, continuously fuzzed decoder. Errors longjmp out
 * of the library (its only error path) and become a message naming the file. */
#include "data/jpeg.h"

#include <jpeglib.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

typedef struct jerr {
  struct jpeg_error_mgr mgr;
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX];
} jerr;

static void on_error(j_common_ptr ci) {
  jerr *e = (jerr *)ci->err;
  ci->err->format_message(ci, e->msg);
  longjmp(e->jump, 1);
}

static void on_message(j_common_ptr ci) { (void)ci; } /* warnings: corrupt data is refused later */

int cnn_jpeg_is(const uint8_t *head, size_t n) {
  return n >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF;
}

/* State shared by info and load: volatile where it lives across the longjmp. */
static cnn_status decode(FILE *f, const char *path, int c, int64_t max_pixels, int *w, int *h,
                         uint8_t **out) {
  struct jpeg_decompress_struct ci;
  jerr e;
  uint8_t *volatile img = NULL, *volatile line = NULL;
  memset(&ci, 0, sizeof ci);
  ci.err = jpeg_std_error(&e.mgr);
  e.mgr.error_exit = on_error;
  e.mgr.output_message = on_message;
  e.msg[0] = 0;
  if (setjmp(e.jump)) {
    jpeg_destroy_decompress(&ci);
    free(img);
    free(line);
    return cnn_error(CNN_ERR_PARSE, "%s: cannot decode JPEG: %s", path, e.msg);
  }
  jpeg_create_decompress(&ci);
  jpeg_stdio_src(&ci, f);
  jpeg_read_header(&ci, TRUE);
  *w = (int)ci.image_width;
  *h = (int)ci.image_height;
  if (!out || *w < 1 || *h < 1 || (int64_t)*w * *h > max_pixels) { /* the caller says why */
    jpeg_destroy_decompress(&ci);
    return CNN_OK;
  }
  ci.out_color_space = c <= 2 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&ci);
  int oc = (int)ci.output_components;
  size_t row = (size_t)ci.output_width * (size_t)oc;
  img = malloc((size_t)ci.output_height * (size_t)ci.output_width * (size_t)c);
  line = malloc(row);
  if (!img || !line) {
    free(line);
    jpeg_destroy_decompress(&ci);
    free(img);
    return cnn_error(CNN_ERR_NOMEM, "%s: out of memory decoding a %dx%d JPEG", path, *w, *h);
  }
  /* [h][w][c]: gray or RGB as decoded, an opaque alpha added for c = 2 and 4 */
  while (ci.output_scanline < ci.output_height) {
    JSAMPROW rows[1] = {line};
    size_t y = ci.output_scanline;
    jpeg_read_scanlines(&ci, rows, 1);
    uint8_t *o = img + y * (size_t)ci.output_width * (size_t)c;
    for (size_t x = 0; x < ci.output_width; x++) {
      for (int k = 0; k < oc; k++) o[x * c + k] = line[x * oc + k];
      if (c == 2 || c == 4) o[x * c + oc] = 255;
    }
  }
  free(line);
  line = NULL;
  jpeg_finish_decompress(&ci);
  jpeg_destroy_decompress(&ci);
  *out = img;
  return CNN_OK;
}

cnn_status cnn_jpeg_info(FILE *f, const char *path, int *w, int *h) {
  return decode(f, path, 1, 0, w, h, NULL);
}

cnn_status cnn_jpeg_load(FILE *f, const char *path, int c, int64_t max_pixels, int *w, int *h,
                         uint8_t **out) {
  *out = NULL;
  if (c < 1 || c > 4) return cnn_error(CNN_ERR_ARG, "%s: %d channels", path, c);
  CNN_TRY(decode(f, path, c, max_pixels, w, h, out));
  if (!*out)
    return cnn_error(CNN_ERR_PARSE, "%s: the JPEG header gives a %dx%d image", path, *w, *h);
  return CNN_OK;
}
