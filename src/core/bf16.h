/* bf16 <-> f32 conversion shared by host and device code: bf16 is the top half of
 * an f32; rounding is to nearest even, NaN stays a quiet NaN. */
#ifndef CNN_BF16_H
#define CNN_BF16_H

#include <stdint.h>
#include <string.h>

#include "core/hd.h"

CNN_HD uint16_t cnn_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN: quiet */
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even (Inf stays Inf) */
  return (uint16_t)(u >> 16);
}

CNN_HD float cnn_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

#endif
