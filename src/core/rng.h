/* Counter-based RNG: every value is a pure function of (seed, counter), so a seed
 * reproduces a run on any backend and any thread count, and the CUDA kernels draw
 * the same numbers as the host. The mixer is SplitMix64's finaliser applied to a
 * seed-keyed counter, which passes BigCrush for sequential counters. */
#ifndef CNN_RNG_H
#define CNN_RNG_H

#include <stdint.h>

#include "core/hd.h"

CNN_HD uint64_t cnn_rng_u64(uint64_t seed, uint64_t counter) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + (counter + 1) * 0xD1B54A32D192ED03ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* uniform in [0, 1) with 24 bits: exactly representable as float */
CNN_HD float cnn_rng_uniform(uint64_t seed, uint64_t counter) {
  return (float)(cnn_rng_u64(seed, counter) >> 40) * (1.0f / 16777216.0f);
}

/* uniform in [0, 1) with 53 bits */
CNN_HD double cnn_rng_uniform_d(uint64_t seed, uint64_t counter) {
  return (double)(cnn_rng_u64(seed, counter) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
