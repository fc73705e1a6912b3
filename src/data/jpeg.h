/* JPEG files through libjpeg-turbo (see jpeg.c for why not stb_image). */
#ifndef CNN_DATA_JPEG_H
#define CNN_DATA_JPEG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cnn/cnn.h"

/* 1 if the first n bytes start a JPEG (SOI then a marker) */
int cnn_jpeg_is(const uint8_t *head, size_t n);
/* the image size from the header of the JPEG file f (read from its start) */
cnn_status cnn_jpeg_info(FILE *f, const char *path, int *w, int *h);
/* decode to malloc'd [h][w][c] (c 1: gray, 2: gray + alpha 255, 3: RGB, 4: RGB +
 * alpha 255); refuses a header over max_pixels (the caller checked it already) */
cnn_status cnn_jpeg_load(FILE *f, const char *path, int c, int64_t max_pixels, int *w, int *h,
                         uint8_t **out);

#endif
