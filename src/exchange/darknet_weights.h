/* Darknet's binary .weights format, read into a net and written from one.
 *
 * A file is a header (major, minor, revision as int32; then the images seen in
 * training: 8 bytes when major*10 + minor >= 2 and both are below 1000, else 4)
 * and then, for each cfg section with parameters in order, float32 arrays:
 *   [convolutional]  biases[n], with batch_normalize: scales[n], rolling_mean[n],
 *                    rolling_variance[n]; then weights[n][c/groups][size][size]
 *   [connected]      biases[out], weights[out][in], with batch_normalize: scales,
 *                    rolling_mean, rolling_variance [out]
 *   [batchnorm]      scales[c], rolling_mean[c], rolling_variance[c]
 * all little-endian. With batch_normalize the biases are the batch norm's beta
 * (our <layer>.bn.bias) and the scales its gamma. Our conv weights are KRSC and our
 * dense layers flatten their input in HWC order, Darknet's in CHW order: both are
 * permuted here. A cfg key flipped=1 on a convolution (Darknet's) stores its weights
 * as [c*size*size][n]; a major or minor version above 1000 stores connected weights
 * as [in][out].
 *
 * Reading is all-or-nothing: the file's size is checked against the cfg before
 * anything is read (an error names the layer where it runs out, or the bytes left
 * over), every value is checked (NaN and infinities are refused, as our checkpoints
 * refuse them, and so is a negative variance), and only then does the net change.
 * Nothing is allocated from the header's numbers: buffers are sized by the net.
 *
 * Darknet's batch norm divides by sqrt(var) + 1e-6 where ours divides by
 * sqrt(var + bn_eps). With bn_eps = CNN_DARKNET_BN_EPS the two agree to within
 * 1e-6 / sqrt(var) relative (exactly at var = 0); cnn_darknet_cfg_text sets it. */
#ifndef CNN_EXCHANGE_DARKNET_WEIGHTS_H
#define CNN_EXCHANGE_DARKNET_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "cnn/cnn.h"

#define CNN_DARKNET_BN_EPS 1e-12f

typedef struct cnn_darknet_info {
  int32_t major, minor, revision;
  uint64_t seen;         /* images seen in training, from the header */
  int transposed;        /* connected weights stored [in][out] (a version above 1000) */
  size_t header_bytes;   /* 16 or 20 */
  size_t values;         /* float32 values after the header */
} cnn_darknet_info;

/* The bytes after the header that `net`'s cfg needs; refuses a net Darknet's format
 * cannot hold (naming the layer: a conv without bias and batch norm, a non-square
 * kernel, ...). */
cnn_status cnn_darknet_payload_bytes(const cnn_net *net, size_t *bytes);

/* Read a whole .weights file held in memory (`name` is for messages) into net's
 * tensors; built or not. info may be NULL. */
cnn_status cnn_darknet_read(cnn_net *net, const uint8_t *data, size_t size, const char *name,
                            cnn_darknet_info *info);
/* The same from a file. */
cnn_status cnn_darknet_load(cnn_net *net, const char *path, cnn_darknet_info *info);

/* Encode net's tensors as a version 0.2.0 file with `seen` images seen (*out is
 * malloc'd). Refuses what Darknet cannot hold, naming the layer, and non-finite
 * values. */
cnn_status cnn_darknet_encode(const cnn_net *net, uint64_t seen, uint8_t **out, size_t *size);
/* The same to a file, written whole (temp file, then rename) or not at all. */
cnn_status cnn_darknet_save(const cnn_net *net, const char *path, uint64_t seen);

/* The cfg text an imported Darknet model runs with: `cfg_text` plus a [train]
 * section setting bn_eps = CNN_DARKNET_BN_EPS, unless a [train] section already
 * sets bn_eps. *out is malloc'd. */
cnn_status cnn_darknet_cfg_text(const char *cfg_text, const char *name, char **out);

#endif
