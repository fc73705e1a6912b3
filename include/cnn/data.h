/* Datasets held in host memory as uint8 NHWC images plus int32 labels: IDX
 * (MNIST / Fashion-MNIST, gzip'd or plain), CIFAR-10/100 binary, and folders of
 * image files (one sub-folder per class). Every loader validates the files and
 * names the file and byte offset (or record) of anything wrong. */
#ifndef CNN_DATA_H
#define CNN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "cnn/cnn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cnn_dataset {
  int n, h, w, c, classes;
  uint8_t *images;     /* [n, h, w, c] */
  int32_t *labels;     /* [n], each in [0, classes) */
  char **class_names;  /* [classes] or NULL */
} cnn_dataset;

/* IDX image file (magic 0x00000803, [n, h, w] u8) and label file (0x00000801, [n]
 * u8), gzip'd or plain. classes = largest label + 1; class_names = NULL. */
cnn_status cnn_dataset_load_idx(const char *images_path, const char *labels_path,
                                cnn_dataset *out);

/* CIFAR binary batches in dir (or dir/cifar-10-batches-bin, dir/cifar-100-binary).
 * CIFAR-10: train = data_batch_1..5.bin (those present, at least one), test =
 * test_batch.bin; 3073-byte records (label, 1024 R, 1024 G, 1024 B). CIFAR-100:
 * train.bin / test.bin, 3074-byte records (coarse, fine); the fine label is used.
 * Class names from batches.meta.txt / fine_label_names.txt when present (CIFAR-10
 * falls back to the standard names). */
cnn_status cnn_dataset_load_cifar(const char *dir, int cifar100, int train, cnn_dataset *out);

/* Image files: before an image file is decoded, the size in its header must be at
 * least 1x1 and at most max_pixels (width x height) — a small file can promise
 * gigapixels (a decompression bomb) — and, for the uncompressed formats (BMP,
 * binary PNM, uncompressed TGA), the file must be long enough to hold that many
 * pixels. The functions without a max_pixels argument use this default (64
 * megapixels, e.g. 8192 x 8192); a max_pixels <= 0 means the default too. */
#define CNN_IMAGE_MAX_PIXELS ((int64_t)64 << 20)

/* One sub-folder of dir per class (sorted by name: index = class, name = class
 * name), holding PNG/JPEG/BMP/... files decoded to c channels (1, 3 or 4) and
 * resized to h x w when their size differs. Hidden files and folders are skipped.
 * h, w or c of 0: take the first image's size; 3 channels. For a model trained
 * on other data, cnn_dataset_map_classes relabels by the model's class names. */
cnn_status cnn_dataset_load_folder(const char *dir, int h, int w, int c, cnn_dataset *out);
cnn_status cnn_dataset_load_folder_limit(const char *dir, int h, int w, int c,
                                         int64_t max_pixels, cnn_dataset *out);

/* spec: "fashion-mnist" ($CNN_DATA_DIR/fashion-mnist, then
 * /usr/share/datasets/fashion-mnist), "fashion-mnist:DIR", "mnist:DIR", "idx:DIR"
 * (train-images-idx3-ubyte[.gz] etc. in DIR), "cifar10:DIR", "cifar100:DIR",
 * "folder:DIR" (DIR/train and DIR/test if both present, the test split using the
 * train split's class list; else DIR's class sub-folders for both splits; a DIR
 * whose only sub-folder is "train" (or "test") serves that split alone, and asking
 * it for the other is refused, saying which layouts are expected). h, w, c: 0 keeps
 * the dataset's own size; otherwise images are resized / converted (gray <-> RGB)
 * to h x w x c. */
cnn_status cnn_dataset_open(const char *spec, int train, int h, int w, int c,
                            cnn_dataset *out);
/* The same with a limit on the pixels of each image file (folder:DIR; see
 * CNN_IMAGE_MAX_PIXELS). */
cnn_status cnn_dataset_open_limit(const char *spec, int train, int h, int w, int c,
                                  int64_t max_pixels, cnn_dataset *out);

void cnn_dataset_free(cnn_dataset *d);

/* The folder that holds class `name` in a folder dataset: the name with each '/'
 * written as '_' (Fashion-MNIST's "T-shirt/top" -> "T-shirt_top"), a leading '.'
 * as '_' (hidden folders are skipped), "" as "_". 0 when out (n bytes) is too small. */
int cnn_class_dir_name(const char *name, char *out, size_t n);

/* Relabels a dataset with class names (a folder dataset) to a model's classes
 * `names[classes]`: the data's class k is the model's class j whose folder name
 * (cnn_class_dir_name) is k's name. Then d->classes = classes, d->class_names a
 * copy of names, *by_name = 1. Refused, naming them: data classes that match no
 * name, and names with no data class (a name that is its own index, "3" for class
 * 3, is a placeholder for an unnamed output and may be absent). When every name is
 * such a placeholder ("0", "1", ...) and the data's classes do not all match, the
 * names say nothing: d is left in its own (alphabetical) order and *by_name = 0. */
cnn_status cnn_dataset_map_classes(cnn_dataset *d, const char *const *names, int classes,
                                   int *by_name);

/* Seeded shuffle (cnn_rng_u64); the last `fraction` of the shuffled order becomes
 * val, the rest train. Each keeps the source order among its own images. src is
 * not modified; train and val own their memory (free both and src). */
cnn_status cnn_dataset_split(cnn_dataset *src, double fraction, uint64_t seed,
                             cnn_dataset *train, cnn_dataset *val);

/* Resize every image to h x w and convert to c channels (1: luminance, 3: gray
 * replicated, 4: adds opaque alpha), in place. Values of 0 keep the current one. */
cnn_status cnn_dataset_resize(cnn_dataset *d, int h, int w, int c);

/* One image file -> [h, w, c] uint8, resized when its size differs. The file's
 * own size is checked first (see CNN_IMAGE_MAX_PIXELS); errors name the file. */
cnn_status cnn_image_load(const char *path, int h, int w, int c, uint8_t *out);
cnn_status cnn_image_load_limit(const char *path, int h, int w, int c, int64_t max_pixels,
                                uint8_t *out);
cnn_status cnn_image_write_png(const char *path, int h, int w, int c, const uint8_t *img);

/* How an image whose aspect ratio differs from the model's input is fitted to it:
 * STRETCH resizes the whole image to h x w (distorting it); CROP resizes the
 * largest centred region with the input's aspect ratio; LETTERBOX resizes the
 * whole image to fit inside h x w, centred, and fills the rest with fill[c]. */
typedef enum { CNN_FIT_STRETCH, CNN_FIT_CROP, CNN_FIT_LETTERBOX } cnn_image_fit;

/* cnn_image_load_limit with a fit; file_w / file_h (either may be NULL) receive
 * the file's own size. fill: c values, used by LETTERBOX only (NULL: 0). */
cnn_status cnn_image_load_fit(const char *path, int h, int w, int c, int64_t max_pixels,
                              cnn_image_fit fit, const uint8_t *fill, uint8_t *out, int *file_w,
                              int *file_h);

#ifdef __cplusplus
}
#endif
#endif
