/* IDX files (MNIST, Fashion-MNIST): big-endian magic and dims, then u8 data.
 * zlib's gzopen reads gzip'd and plain files alike, so both need no special case;
 * offsets in messages are of the decompressed stream. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cnn/data.h"
#include "core/error.h"

#define IDX_MAGIC_U8_1D 0x00000801u
#define IDX_MAGIC_U8_3D 0x00000803u
#define IDX_MAX_SIDE 65536
#define IDX_MAX_BYTES (1ull << 36) /* 64 GiB: anything larger is a corrupt header */

typedef struct idx_file {
  const char *path;
  gzFile g;
  uint64_t pos; /* bytes consumed so far */
  uint64_t more; /* bytes of the item being read after the current chunk */
} idx_file;

static cnn_status idx_open(idx_file *f, const char *path) {
  f->path = path;
  f->pos = 0;
  f->more = 0;
  f->g = gzopen(path, "rb");
  if (!f->g) return cnn_error(CNN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  gzbuffer(f->g, 1 << 20);
  return CNN_OK;
}

static const char *idx_where(const idx_file *f) {
  return gzdirect(f->g) ? "" : " of the decompressed data";
}

/* read exactly n bytes of `what`; a short read is truncation, named by offset */
static cnn_status idx_read(idx_file *f, void *buf, uint64_t n, const char *what) {
  uint8_t *p = buf;
  uint64_t done = 0;
  while (done < n) {
    uint64_t chunk = n - done > (1u << 30) ? (1u << 30) : n - done;
    int got = gzread(f->g, p + done, (unsigned)chunk);
    if (got < 0) {
      int zerr;
      const char *msg = gzerror(f->g, &zerr);
      return cnn_error(CNN_ERR_IO, "%s: read error in %s at byte offset %llu%s: %s", f->path,
                       what, (unsigned long long)(f->pos + done), idx_where(f),
                       zerr == Z_ERRNO ? strerror(errno) : msg);
    }
    if (got == 0) {
      int zerr;
      const char *msg = gzerror(f->g, &zerr);
      return cnn_error(CNN_ERR_PARSE,
                       "%s: truncated: %s ran out at byte offset %llu%s (%llu more bytes "
                       "expected)%s%s",
                       f->path, what, (unsigned long long)(f->pos + done), idx_where(f),
                       (unsigned long long)(n - done + f->more), zerr != Z_OK ? "; zlib: " : "",
                       zerr != Z_OK ? msg : "");
    }
    done += (uint64_t)got;
  }
  f->pos += n;
  return CNN_OK;
}

/* Read the n bytes of `what` into a buffer that grows as data arrives (at most
 * doubling), so a header that promises more than the file holds costs no more
 * memory than the file's real data: a 56-byte file claiming 19 GB of images must
 * fail as truncated, not allocate 19 GB first. *out is malloc'd. */
static cnn_status idx_read_grow(idx_file *f, uint64_t n, const char *what, uint8_t **out) {
  uint64_t cap = n < (1u << 20) ? n : (1u << 20), done = 0;
  uint8_t *buf = malloc(cap ? cap : 1);
  cnn_status s = buf ? CNN_OK : cnn_error(CNN_ERR_NOMEM, "%s: out of memory", f->path);
  while (s == CNN_OK && done < n) {
    if (done == cap) {
      cap = cap * 2 < n ? cap * 2 : n;
      uint8_t *p = realloc(buf, cap);
      if (!p) {
        s = cnn_error(CNN_ERR_NOMEM, "%s: out of memory for %llu bytes of %s", f->path,
                      (unsigned long long)cap, what);
        break;
      }
      buf = p;
    }
    f->more = n - cap; /* a truncation message counts what the whole item misses */
    s = idx_read(f, buf + done, cap - done, what);
    f->more = 0;
    done = cap;
  }
  if (s != CNN_OK) {
    free(buf);
    buf = NULL;
  }
  *out = buf;
  return s;
}

/* magic and dims; checks the magic against `want` */
static cnn_status idx_header(idx_file *f, uint32_t want, uint32_t *dims, int ndim) {
  uint8_t b[4 * 4];
  CNN_TRY(idx_read(f, b, 4, "the magic number"));
  uint32_t magic = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
  if (magic != want) {
    const char *hint = magic == IDX_MAGIC_U8_1D ? " (this is a label file)"
                       : magic == IDX_MAGIC_U8_3D ? " (this is an image file)"
                                                  : "";
    return cnn_error(CNN_ERR_PARSE, "%s: bad magic 0x%08x at byte offset 0, expected 0x%08x%s",
                     f->path, magic, want, hint);
  }
  CNN_TRY(idx_read(f, b + 4, 4 * (uint64_t)ndim, "the header"));
  for (int i = 0; i < ndim; i++) {
    const uint8_t *d = b + 4 + 4 * i;
    dims[i] = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
  }
  return CNN_OK;
}

/* the file must end where the data does: extra bytes mean a wrong or corrupt file */
static cnn_status idx_expect_end(idx_file *f) {
  uint8_t extra;
  int got = gzread(f->g, &extra, 1);
  if (got > 0)
    return cnn_error(CNN_ERR_PARSE, "%s: unexpected data after the last record at byte offset "
                     "%llu%s", f->path, (unsigned long long)f->pos, idx_where(f));
  if (got < 0) {
    int zerr;
    const char *msg = gzerror(f->g, &zerr);
    return cnn_error(CNN_ERR_IO, "%s: read error at byte offset %llu%s: %s", f->path,
                     (unsigned long long)f->pos, idx_where(f), msg);
  }
  return CNN_OK;
}

cnn_status cnn_dataset_load_idx(const char *images_path, const char *labels_path,
                                cnn_dataset *out) {
  if (!images_path || !labels_path || !out)
    return cnn_error(CNN_ERR_ARG, "cnn_dataset_load_idx: NULL argument");
  memset(out, 0, sizeof *out);
  idx_file fi = {0}, fl = {0};
  cnn_status s = idx_open(&fi, images_path);
  if (s == CNN_OK) s = idx_open(&fl, labels_path);
  uint32_t idims[3] = {0}, ldims[1] = {0};
  if (s == CNN_OK) s = idx_header(&fi, IDX_MAGIC_U8_3D, idims, 3);
  if (s == CNN_OK) s = idx_header(&fl, IDX_MAGIC_U8_1D, ldims, 1);
  if (s == CNN_OK) {
    uint64_t n = idims[0], h = idims[1], w = idims[2];
    if (n == 0)
      s = cnn_error(CNN_ERR_PARSE, "%s: header at byte offset 4 says the file holds no images",
                    images_path);
    else if (n > INT_MAX || h == 0 || w == 0 || h > IDX_MAX_SIDE || w > IDX_MAX_SIDE ||
        n * h * w > IDX_MAX_BYTES)
      s = cnn_error(CNN_ERR_PARSE,
                    "%s: absurd dimensions %llu x %llu x %llu in the header at byte offset 4",
                    images_path, (unsigned long long)n, (unsigned long long)h,
                    (unsigned long long)w);
    else if (ldims[0] != n)
      s = cnn_error(CNN_ERR_PARSE,
                    "%s has %llu labels (header at byte offset 4) but %s has %llu images",
                    labels_path, (unsigned long long)ldims[0], images_path,
                    (unsigned long long)n);
  }
  if (s == CNN_OK) {
    out->n = (int)idims[0];
    out->h = (int)idims[1];
    out->w = (int)idims[2];
    out->c = 1;
    size_t bytes = (size_t)out->n * (size_t)out->h * (size_t)out->w;
    uint8_t *lab = NULL;
    s = idx_read_grow(&fi, bytes, "image data", &out->images);
    if (s == CNN_OK) s = idx_expect_end(&fi);
    if (s == CNN_OK) s = idx_read_grow(&fl, (uint64_t)out->n, "label data", &lab);
    if (s == CNN_OK) s = idx_expect_end(&fl);
    if (s == CNN_OK && !(out->labels = malloc((size_t)out->n * sizeof *out->labels)))
      s = cnn_error(CNN_ERR_NOMEM, "%s: out of memory for %d labels", labels_path, out->n);
    if (s == CNN_OK) {
      int maxl = 0;
      for (int i = 0; i < out->n; i++) {
        out->labels[i] = lab[i];
        if (lab[i] > maxl) maxl = lab[i];
      }
      out->classes = maxl + 1;
    }
    free(lab);
  }
  if (fi.g) gzclose(fi.g);
  if (fl.g) gzclose(fl.g);
  if (s != CNN_OK) cnn_dataset_free(out);
  return s;
}
