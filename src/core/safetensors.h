/* safetensors reader and writer: 8-byte little-endian header length N, N bytes of
 * JSON header ({"__metadata__": {str: str}, "name": {"dtype", "shape",
 * "data_offsets": [begin, end]}, ...}), then the data buffer; offsets are relative
 * to the buffer start. Reading validates the whole header; writing is atomic
 * (temp file, fsync, rename), so a checkpoint already on disk is never lost.
 *
 * Integrity: a writer may record a checksum of the data buffer in the metadata,
 * "checksum": "crc32:<8 lowercase hex digits>" (zlib's CRC-32, the one of gzip,
 * PNG and Python's zlib.crc32, over the data buffer's bytes). The reader checks
 * it when present and reports a mismatch as corruption; files without one (other
 * tools, older files) and checksums of other algorithms are read unchecked. */
#ifndef CNN_SAFETENSORS_H
#define CNN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "cnn/cnn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CNN_ST_MAX_DIMS 8

typedef struct cnn_st_tensor {
  char *name;
  char dtype[8];                  /* "F32", "BF16", ... */
  int ndim;
  int64_t shape[CNN_ST_MAX_DIMS];
  size_t begin, end;              /* byte range in data */
} cnn_st_tensor;

typedef struct cnn_st_file {
  int n;
  cnn_st_tensor *tensors;         /* in header order */
  int n_meta;
  char **meta_keys, **meta_values;
  uint8_t *data;                  /* the whole data buffer */
  size_t data_len;
} cnn_st_file;

/* Bytes per element of a dtype name, 0 if unknown. Known: F64 F32 F16 BF16 I64
 * I32 I16 I8 U64 U32 U16 U8 BOOL. */
size_t cnn_st_dtype_size(const char *dtype);

cnn_status cnn_st_read(const char *path, cnn_st_file *out);
const cnn_st_tensor *cnn_st_find(const cnn_st_file *f, const char *name);
const char *cnn_st_meta(const cnn_st_file *f, const char *key); /* NULL if absent */
void cnn_st_free(cnn_st_file *f);

typedef struct cnn_st_item {
  const char *name;
  const char *dtype;
  int ndim;
  const int64_t *shape;
  const void *data;
  size_t nbytes;                  /* must equal prod(shape) * dtype size */
} cnn_st_item;

#define CNN_ST_CHECKSUM_KEY "checksum"
#define CNN_ST_CHECKSUM_LEN 16 /* "crc32:" + 8 hex digits + NUL */

/* The checksum value of the data buffer cnn_st_write would write for these items
 * (their bytes in order), as "crc32:xxxxxxxx", into out[CNN_ST_CHECKSUM_LEN]. */
void cnn_st_checksum(const cnn_st_item *items, int n, char *out);

/* Write items in the given order, whole or not at all (cnn_file_write_whole:
 * "PATH.tmp.<pid>", fsync, rename; stale temp files of earlier writes removed). */
cnn_status cnn_st_write(const char *path, const cnn_st_item *items, int n,
                        const char *const *meta_keys, const char *const *meta_values,
                        int n_meta);

#ifdef __cplusplus
}
#endif
#endif
