/* The fuzz targets, one function per input format. The libFuzzer harnesses
 * (tests/fuzz/fuzz_<name>.c, clang only) and the regression replayer
 * (tests/test_fuzz_regress.c, a normal ctest program) call these same functions, so
 * a crash found by the fuzzer replays through exactly the code that found it.
 *
 * Each takes arbitrary bytes and returns 0 when the library either accepted them or
 * refused them cleanly (an error status with a message); nonzero when the library
 * returned something that breaks its own promises (an accepted dataset with a label
 * out of range, an error with no message, ...): the harness aborts on that, the
 * replayer counts it as a failed check. Memory errors and leaks are the sanitizers'
 * business. Every target is deterministic: the same bytes take the same path.
 * CNN_FUZZ_VERBOSE=1 in the environment prints each call's status and message. */
#ifndef CNN_FUZZ_TARGETS_H
#define CNN_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

typedef int (*cnn_fuzz_fn)(const uint8_t *data, size_t size);

typedef struct cnn_fuzz_target {
  const char *name; /* the harness is fuzz_<name>, its corpus tests/fuzz/corpus/<name> */
  cnn_fuzz_fn fn;
} cnn_fuzz_target;

/* Darknet cfg text -> net; a small net is also planned, built on ref and run forward */
int cnn_fuzz_cfg(const uint8_t *data, size_t size);
/* a safetensors file: parsed directly (cnn_st_read, invariants checked), then loaded
 * into a fixed small net built for training (cnn_net_load) */
int cnn_fuzz_checkpoint(const uint8_t *data, size_t size);
/* the cfg text of that fixed net (for making seeds) */
const char *cnn_fuzz_checkpoint_cfg(void);
/* an IDX pair: [u16 little-endian label-file length L][L bytes labels][images] */
int cnn_fuzz_idx(const uint8_t *data, size_t size);
/* CIFAR binary: [flags][u16 LE names length L][L bytes names text][batch file];
 * flags bit 0: CIFAR-100, bit 1: write the class-names file, bit 2: train split */
int cnn_fuzz_cifar(const uint8_t *data, size_t size);
/* one image file (PNG, JPEG, BMP, GIF, ...) as a one-class image folder
 * (cnn_dataset_load_folder) and through cnn_image_load */
int cnn_fuzz_image(const uint8_t *data, size_t size);
/* an ONNX model file: converted (cnn_onnx_read); a converted model becomes a net
 * with its tensors (cnn_onnx_net), small ones are built on ref and run forward */
int cnn_fuzz_onnx(const uint8_t *data, size_t size);

/* Darknet .weights for a fixed small cfg (conv + batch norm, a grouped conv, a
 * flipped=1 conv, [batchnorm], [connected] after a spatial input and with batch
 * norm), from memory and from a file: both give the same status; an accepted file
 * written back (cnn_darknet_encode) holds the same values, a refused one leaves the
 * net as it was */
int cnn_fuzz_darknet(const uint8_t *data, size_t size);
/* the cfg text of that fixed net (for making seeds) */
const char *cnn_fuzz_darknet_cfg(void);

extern const cnn_fuzz_target cnn_fuzz_targets[];
extern const int cnn_fuzz_num_targets;

/* Free what the targets keep between calls (the ref backend, the checkpoint
 * target's net) and remove their temp folder; also done at exit. */
void cnn_fuzz_cleanup(void);

#endif
