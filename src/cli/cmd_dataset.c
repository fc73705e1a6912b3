/* cnn dataset export --data D --out DIR [--split train|test] [--count N]: a
 * dataset's images as PNG files, DIR/<class>/<index>.png (a folder dataset). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/evaluate.h"
#include "cnn/data.h"

static void help(FILE *f) {
  fprintf(f,
          "usage: cnn dataset export --data D --out DIR [--split test|train] [--count N]\n"
          "                          [--max-pixels N]\n\n"
          "Writes the images of a dataset split (default: test) as PNG files,\n"
          "DIR/<class name>/<index>.png: <index> is the image's place in the split,\n"
          "zero-padded to the split's size (DIR/Ankle boot/0000.png is Fashion-MNIST's\n"
          "first test image).\n"
          "A '/' in a class name is written '_' (T-shirt/top -> DIR/T-shirt_top). DIR\n"
          "is a folder dataset: --data folder:DIR reads the same pixels back, and eval\n"
          "matches its folders to a checkpoint's classes by name. Images keep their\n"
          "size and channels (gray or RGB); every class gets a folder, empty if none of\n"
          "its images is written. DIR must be new or empty: nothing is overwritten.\n"
          "--count N: the first N images of the split (default: all).\n"
          "--max-pixels N: refuse image files (folder:DIR) larger than N pixels.\n\n"
          "  cnn dataset export --data fashion-mnist --out samples --count 20\n"
          "  cnn predict runs/fashion/best.safetensors samples/Shirt/0004.png\n");
}

/* 1 when path is missing or an empty folder; else prints why and returns 0 */
static int fresh_dir(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return 1;
  if (!S_ISDIR(st.st_mode)) {
    fprintf(stderr, "cnn dataset export: %s exists and is not a folder\n", path);
    return 0;
  }
  DIR *d = opendir(path);
  if (!d) {
    fprintf(stderr, "cnn dataset export: %s: cannot open: %s\n", path, strerror(errno));
    return 0;
  }
  struct dirent *e;
  int empty = 1;
  while (empty && (e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
  closedir(d);
  if (!empty)
    fprintf(stderr, "cnn dataset export: %s is not empty; give a new or empty folder (nothing "
                    "is overwritten)\n", path);
  return empty;
}

static int export_images(const cnn_dataset *d, const char *out, int count) {
  int k = d->classes, rc = 0;
  char(*dirs)[256] = calloc((size_t)(k ? k : 1), sizeof *dirs);
  if (!dirs) {
    fprintf(stderr, "cnn dataset export: out of memory\n");
    return 1;
  }
  for (int j = 0; j < k && !rc; j++) { /* class folder names: distinct, creatable */
    char num[16];
    snprintf(num, sizeof num, "%d", j);
    const char *name = d->class_names ? d->class_names[j] : num;
    if (!cnn_class_dir_name(name, dirs[j], sizeof dirs[j])) {
      fprintf(stderr, "cnn dataset export: class %d's name is too long for a folder\n", j);
      rc = 1;
    }
    for (int i = 0; i < j && !rc; i++)
      if (!strcmp(dirs[i], dirs[j])) {
        fprintf(stderr, "cnn dataset export: classes %d and %d would share the folder '%s'\n", i,
                j, dirs[j]);
        rc = 1;
      }
  }
  char path[4096];
  for (int j = 0; j < k && !rc; j++) {
    if (snprintf(path, sizeof path, "%s/%s", out, dirs[j]) >= (int)sizeof path ||
        cli_mkdirs(path) != 0) {
      fprintf(stderr, "cnn dataset export: %s: cannot create the folder: %s\n", path,
              strerror(errno));
      rc = 1;
    }
  }
  int digits = 1;
  for (int v = d->n - 1; v >= 10; v /= 10) digits++;
  size_t isz = (size_t)d->h * d->w * d->c;
  int written = 0;
  for (int i = 0; i < count && !rc; i++) {
    if (snprintf(path, sizeof path, "%s/%s/%0*d.png", out, dirs[d->labels[i]], digits & 15, i) >=
        (int)sizeof path) {
      fprintf(stderr, "cnn dataset export: %s: path too long\n", out);
      rc = 1;
      break;
    }
    if (cnn_image_write_png(path, d->h, d->w, d->c, d->images + (size_t)i * isz) != CNN_OK) {
      remove(path); /* no half-written file */
      rc = cli_fail("dataset export");
      break;
    }
    written++;
  }
  if (!rc)
    printf("wrote %d images (%dx%d, %d channel%s) of %d classes to %s/<class>/<index>.png\n",
           written, d->w, d->h, d->c, d->c == 1 ? "" : "s", k, out);
  else if (written)
    fprintf(stderr, "cnn dataset export: the %d images written before the error are complete\n",
            written);
  free(dirs);
  return rc;
}

int cnn_cmd_dataset(int argc, char **argv) {
  const char *data = NULL, *out = NULL, *split = "test";
  int count = -1, max_pixels = 0;
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    help(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "export")) {
    fprintf(stderr, "cnn dataset: unknown action '%s' (cnn dataset export ...)\n", argv[1]);
    return 2;
  }
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      help(stdout);
      return 0;
    } else if (!strcmp(argv[i], "--data") && i + 1 < argc) {
      data = argv[++i];
    } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
      out = argv[++i];
    } else if (!strcmp(argv[i], "--split") && i + 1 < argc) {
      split = argv[++i];
    } else if (!strcmp(argv[i], "--count")) {
      if (!cli_int("--count", i + 1 < argc ? argv[++i] : NULL, 1, 0x7fffffff, &count)) return 2;
    } else if (!strcmp(argv[i], "--max-pixels")) {
      if (!cli_int("--max-pixels", i + 1 < argc ? argv[++i] : NULL, 1, 0x7fffffff, &max_pixels))
        return 2;
    } else {
      fprintf(stderr, "cnn dataset export: unexpected argument '%s'\n", argv[i]);
      help(stderr);
      return 2;
    }
  }
  if (!data || !out) {
    fprintf(stderr, "cnn dataset export: give --data D and --out DIR\n");
    return 2;
  }
  if (strcmp(split, "test") && strcmp(split, "train")) {
    fprintf(stderr, "cnn dataset export: --split is test or train, not '%s'\n", split);
    return 2;
  }
  if (!fresh_dir(out)) return 1;
  cnn_dataset d;
  if (cnn_dataset_open_limit(data, !strcmp(split, "train"), 0, 0, 0, max_pixels, &d) != CNN_OK)
    return cli_fail(NULL);
  int rc = export_images(&d, out, count < 0 || count > d.n ? d.n : count);
  cnn_dataset_free(&d);
  return rc;
}
