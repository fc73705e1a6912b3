/* Datasets: IDX (plain and gzip'd), CIFAR-10/100 binary, image folders, specs,
 * splits, and a clear error naming the file for each kind of bad input. Runs on
 * small generated files; Fashion-MNIST is checked too when it is installed. */
#define _XOPEN_SOURCE 700 /* nftw, mkdtemp, setenv, truncate */

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnn/cnn.h"
#include "cnn/data.h"
#include "core/error.h"
#include "testutil.h"

static char tmpdir[64];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  return remove(p);
}

static const char *tp(char *buf, const char *rel) { /* path under tmpdir */
  if (snprintf(buf, 256, "%s/%s", tmpdir, rel) >= 256) abort();
  return buf;
}

static void mkdirs(const char *rel) {
  char p[256], q[256];
  snprintf(p, sizeof p, "%s", rel);
  for (char *s = p; *s; s++)
    if (*s == '/') {
      *s = 0;
      mkdir(tp(q, p), 0700);
      *s = '/';
    }
  mkdir(tp(q, p), 0700);
}

static uint32_t crc32_of(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
  }
  return ~c;
}

/* gzip with stored deflate blocks: a valid .gz that needs no zlib in the test
 * (tests link only libcnn, which keeps zlib private) */
static uint8_t *gzip_stored(const uint8_t *p, size_t n, size_t *out_n) {
  size_t blocks = n / 65535 + 1;
  uint8_t *g = malloc(10 + n + 5 * blocks + 8), *o = g;
  static const uint8_t hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255};
  memcpy(o, hdr, 10);
  o += 10;
  size_t done = 0;
  for (size_t b = 0; b < blocks; b++) {
    size_t len = n - done < 65535 ? n - done : 65535;
    *o++ = b + 1 == blocks ? 1 : 0; /* BFINAL, BTYPE 00 = stored */
    o[0] = (uint8_t)len;
    o[1] = (uint8_t)(len >> 8);
    o[2] = (uint8_t)~len;
    o[3] = (uint8_t)(~len >> 8);
    o += 4;
    memcpy(o, p + done, len);
    o += len;
    done += len;
  }
  uint32_t crc = crc32_of(p, n), isize = (uint32_t)n;
  for (int i = 0; i < 4; i++) *o++ = (uint8_t)(crc >> (8 * i));
  for (int i = 0; i < 4; i++) *o++ = (uint8_t)(isize >> (8 * i));
  *out_n = (size_t)(o - g);
  return g;
}

static void write_file(const char *path, const void *p, size_t n, int gz) {
  uint8_t *z = NULL;
  if (gz) {
    z = gzip_stored(p, n, &n);
    p = z;
  }
  FILE *fp = fopen(path, "wb");
  CHECK(fp != NULL, "fopen %s", path);
  if (fp) {
    CHECK(fwrite(p, 1, n, fp) == n, "fwrite %s", path);
    fclose(fp);
  }
  free(z);
}

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static uint8_t pix(int i, int k) { return (uint8_t)(i * 31 + k * 7 + 3); }

/* IDX pair with n images of h x w; labels[i] = lab(i); extra: bytes appended */
static void write_idx(const char *img_path, const char *lab_path, int n, int h, int w,
                      int label_mod, int gz, uint32_t img_magic, int lab_n) {
  size_t isz = 16 + (size_t)n * h * w;
  uint8_t *b = malloc(isz);
  put_be32(b, img_magic);
  put_be32(b + 4, (uint32_t)n);
  put_be32(b + 8, (uint32_t)h);
  put_be32(b + 12, (uint32_t)w);
  for (int i = 0; i < n; i++)
    for (int k = 0; k < h * w; k++) b[16 + (size_t)i * h * w + k] = pix(i, k);
  write_file(img_path, b, isz, gz);
  free(b);
  uint8_t *l = malloc(8 + (size_t)lab_n);
  put_be32(l, 0x801);
  put_be32(l + 4, (uint32_t)lab_n);
  for (int i = 0; i < lab_n; i++) l[8 + i] = (uint8_t)(i % label_mod);
  write_file(lab_path, l, 8 + (size_t)lab_n, gz);
  free(l);
}

static void expect_fail(cnn_status s, const char *what, const char *needle, const char *needle2) {
  CHECK(s != CNN_OK, "%s should fail", what);
  if (s == CNN_OK) return;
  const char *m = cnn_last_error();
  if (needle) CHECK(strstr(m, needle) != NULL, "%s: message lacks '%s': %s", what, needle, m);
  if (needle2) CHECK(strstr(m, needle2) != NULL, "%s: message lacks '%s': %s", what, needle2, m);
  printf("  %-26s -> %s\n", what, m);
}

static void test_idx(void) {
  char ip[256], lp[256];
  cnn_dataset d;
  for (int gz = 0; gz < 2; gz++) {
    tp(ip, gz ? "i.gz" : "i.idx");
    tp(lp, gz ? "l.gz" : "l.idx");
    write_idx(ip, lp, 7, 5, 4, 6, gz, 0x803, 7);
    CHECK_OK(cnn_dataset_load_idx(ip, lp, &d));
    CHECK(d.n == 7 && d.h == 5 && d.w == 4 && d.c == 1, "idx dims %d %d %d %d", d.n, d.h, d.w, d.c);
    CHECK(d.classes == 6 && d.class_names == NULL, "idx classes %d", d.classes);
    int bad = 0;
    for (int i = 0; i < d.n; i++) {
      bad += d.labels[i] != i % 6;
      for (int k = 0; k < 20; k++) bad += d.images[i * 20 + k] != pix(i, k);
    }
    CHECK(bad == 0, "idx gz=%d: %d wrong values", gz, bad);
    cnn_dataset_free(&d);
    CHECK(d.images == NULL && d.n == 0, "free clears");
  }
  printf("bad IDX files:\n");
  /* truncated plain and gzip'd */
  write_idx(tp(ip, "t.idx"), tp(lp, "tl.idx"), 7, 5, 4, 6, 0, 0x803, 7);
  CHECK(truncate(ip, 16 + 7 * 20 - 3) == 0, "truncate");
  expect_fail(cnn_dataset_load_idx(ip, lp, &d), "truncated images", ip, "byte offset 153");
  CHECK(d.images == NULL && d.n == 0, "failed load leaves an empty dataset");
  write_idx(tp(ip, "t.gz"), tp(lp, "tl.gz"), 50, 28, 28, 6, 1, 0x803, 50);
  struct stat st;
  stat(ip, &st);
  CHECK(truncate(ip, st.st_size / 2) == 0, "truncate gz");
  expect_fail(cnn_dataset_load_idx(ip, lp, &d), "truncated gzip", ip, "byte offset");
  write_idx(tp(ip, "tl2.idx"), tp(lp, "tl2l.idx"), 7, 5, 4, 6, 0, 0x803, 7);
  CHECK(truncate(lp, 8 + 5) == 0, "truncate labels");
  expect_fail(cnn_dataset_load_idx(ip, lp, &d), "truncated labels", lp, "byte offset 13");
  CHECK(truncate(lp, 6) == 0, "truncate labels header");
  expect_fail(cnn_dataset_load_idx(ip, lp, &d), "truncated label header", lp, "header");
  /* wrong magic: the two files swapped, and garbage */
  write_idx(tp(ip, "m.idx"), tp(lp, "ml.idx"), 7, 5, 4, 6, 0, 0x803, 7);
  expect_fail(cnn_dataset_load_idx(lp, ip, &d), "files swapped", lp, "label file");
  write_idx(tp(ip, "m2.idx"), tp(lp, "m2l.idx"), 7, 5, 4, 6, 0, 0x12345678, 7);
  expect_fail(cnn_dataset_load_idx(ip, lp, &d), "wrong magic", ip, "0x12345678");
  /* counts differ */
  write_idx(tp(ip, "c.idx"), tp(lp, "cl.idx"), 7, 5, 4, 6, 0, 0x803, 6);
  expect_fail(cnn_dataset_load_idx(ip, lp, &d), "count mismatch", lp, ip);
  /* absurd dims */
  write_idx(tp(ip, "a.idx"), tp(lp, "al.idx"), 2, 100000, 1, 6, 0, 0x803, 2);
  expect_fail(cnn_dataset_load_idx(ip, lp, &d), "absurd dims", ip, "absurd");
  write_idx(tp(ip, "z.idx"), tp(lp, "zl.idx"), 0, 5, 4, 6, 0, 0x803, 0);
  expect_fail(cnn_dataset_load_idx(ip, lp, &d), "zero images", ip, "no images");
  /* trailing bytes */
  write_idx(tp(ip, "x.idx"), tp(lp, "xl.idx"), 3, 2, 2, 6, 0, 0x803, 3);
  FILE *fp = fopen(ip, "ab");
  fputc(1, fp);
  fclose(fp);
  expect_fail(cnn_dataset_load_idx(ip, lp, &d), "trailing data", ip, "byte offset 28");
  /* missing */
  expect_fail(cnn_dataset_load_idx(tp(ip, "none.idx"), lp, &d), "missing file", ip, NULL);

  /* specs: mnist:DIR with gz train and plain test, idx:DIR, label range */
  mkdirs("mn");
  write_idx(tp(ip, "mn/train-images-idx3-ubyte.gz"), tp(lp, "mn/train-labels-idx1-ubyte.gz"), 30,
            28, 28, 10, 1, 0x803, 30);
  write_idx(tp(ip, "mn/t10k-images-idx3-ubyte"), tp(lp, "mn/t10k-labels-idx1-ubyte"), 11, 28, 28,
            10, 0, 0x803, 11);
  char spec[300], dir[256];
  snprintf(spec, sizeof spec, "mnist:%s", tp(dir, "mn"));
  CHECK_OK(cnn_dataset_open(spec, 1, 0, 0, 0, &d));
  CHECK(d.n == 30 && d.h == 28 && d.classes == 10 && d.class_names &&
            strcmp(d.class_names[3], "3") == 0, "mnist train");
  cnn_dataset_free(&d);
  CHECK_OK(cnn_dataset_open(spec, 0, 0, 0, 0, &d));
  CHECK(d.n == 11 && d.classes == 10, "mnist test n=%d", d.n);
  cnn_dataset_free(&d);
  /* resized and converted to RGB on the way in */
  CHECK_OK(cnn_dataset_open(spec, 0, 32, 30, 3, &d));
  CHECK(d.n == 11 && d.h == 32 && d.w == 30 && d.c == 3, "resized %dx%dx%d", d.h, d.w, d.c);
  if (d.images) {
    int gray = 1;
    for (int p = 0; p < 32 * 30; p++)
      gray &= d.images[p * 3] == d.images[p * 3 + 1] && d.images[p * 3] == d.images[p * 3 + 2];
    CHECK(gray, "gray -> RGB replicates the channel");
  }
  cnn_dataset_free(&d);
  snprintf(spec, sizeof spec, "idx:%s", tp(dir, "mn"));
  CHECK_OK(cnn_dataset_open(spec, 0, 0, 0, 0, &d));
  CHECK(d.n == 11 && d.class_names == NULL, "idx: spec");
  cnn_dataset_free(&d);
  mkdirs("mn11");
  write_idx(tp(ip, "mn11/train-images-idx3-ubyte"), tp(lp, "mn11/train-labels-idx1-ubyte"), 12, 4,
            4, 12, 0, 0x803, 12);
  snprintf(spec, sizeof spec, "mnist:%s", tp(dir, "mn11"));
  expect_fail(cnn_dataset_open(spec, 1, 0, 0, 0, &d), "label out of range", lp, "record 10");
  expect_fail(cnn_dataset_open(spec, 0, 0, 0, 0, &d), "missing test split",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte");
  expect_fail(cnn_dataset_open("fashion-mnist:/nonexistent/fm", 1, 0, 0, 0, &d),
              "missing fashion dir", "/nonexistent/fm/train-images-idx3-ubyte", NULL);
  expect_fail(cnn_dataset_open("nosuch:x", 1, 0, 0, 0, &d), "unknown spec", "nosuch", NULL);

  /* $CNN_DATA_DIR/fashion-mnist comes before the system copy */
  mkdirs("env/fashion-mnist");
  write_idx(tp(ip, "env/fashion-mnist/train-images-idx3-ubyte"),
            tp(lp, "env/fashion-mnist/train-labels-idx1-ubyte"), 13, 28, 28, 10, 0, 0x803, 13);
  setenv("CNN_DATA_DIR", tp(dir, "env"), 1);
  CHECK_OK(cnn_dataset_open("fashion-mnist", 1, 0, 0, 0, &d));
  CHECK(d.n == 13 && d.classes == 10 && d.class_names &&
            strcmp(d.class_names[9], "Ankle boot") == 0, "CNN_DATA_DIR fashion-mnist n=%d", d.n);
  cnn_dataset_free(&d);
  unsetenv("CNN_DATA_DIR");
}

/* CIFAR record i: label then planar RGB with value f(i, ch, p) */
static uint8_t cpx(int i, int ch, int p) { return (uint8_t)(i * 13 + ch * 101 + p * 3); }

static void write_cifar(const char *path, int first, int n, int c100, int bad_label_at) {
  size_t rec = (c100 ? 2 : 1) + 3072;
  uint8_t *b = malloc(rec * n);
  for (int r = 0; r < n; r++) {
    uint8_t *p = b + rec * r;
    int i = first + r;
    if (c100) {
      p[0] = (uint8_t)(i % 20);
      p[1] = (uint8_t)(i * 7 % 100);
    } else {
      p[0] = (uint8_t)(i % 10);
    }
    if (r == bad_label_at) p[c100 ? 1 : 0] = c100 ? 100 : 10;
    uint8_t *img = p + (c100 ? 2 : 1);
    for (int ch = 0; ch < 3; ch++)
      for (int q = 0; q < 1024; q++) img[ch * 1024 + q] = cpx(i, ch, q);
  }
  write_file(path, b, rec * n, 0);
  free(b);
}

static int check_cifar_pixels(const cnn_dataset *d, int first) {
  int bad = 0;
  for (int i = 0; i < d->n; i++)
    for (int q = 0; q < 1024; q++)
      for (int ch = 0; ch < 3; ch++)
        bad += d->images[((size_t)i * 1024 + q) * 3 + ch] != cpx(first + i, ch, q);
  return bad;
}

static void test_cifar(void) {
  char p[256], dir[256], spec[300];
  cnn_dataset d;
  mkdirs("c10");
  write_cifar(tp(p, "c10/data_batch_1.bin"), 0, 3, 0, -1);
  write_cifar(tp(p, "c10/data_batch_2.bin"), 3, 2, 0, -1);
  write_cifar(tp(p, "c10/test_batch.bin"), 100, 2, 0, -1);
  const char *names = "plane\ncar\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
  write_file(tp(p, "c10/batches.meta.txt"), names, strlen(names), 0);
  CHECK_OK(cnn_dataset_load_cifar(tp(dir, "c10"), 0, 1, &d));
  CHECK(d.n == 5 && d.h == 32 && d.w == 32 && d.c == 3 && d.classes == 10, "cifar10 train n=%d",
        d.n);
  CHECK(check_cifar_pixels(&d, 0) == 0, "cifar10 CHW -> HWC");
  int bad = 0;
  for (int i = 0; i < d.n; i++) bad += d.labels[i] != i % 10;
  CHECK(bad == 0, "cifar10 labels");
  CHECK(d.class_names && strcmp(d.class_names[1], "car") == 0, "names from batches.meta.txt");
  cnn_dataset_free(&d);
  snprintf(spec, sizeof spec, "cifar10:%s", tp(dir, "c10"));
  CHECK_OK(cnn_dataset_open(spec, 0, 0, 0, 0, &d));
  CHECK(d.n == 2 && check_cifar_pixels(&d, 100) == 0 && d.labels[1] == 1, "cifar10 test");
  cnn_dataset_free(&d);

  printf("bad CIFAR files:\n");
  FILE *fp = fopen(tp(p, "c10/data_batch_2.bin"), "ab");
  fputs("xy", fp);
  fclose(fp);
  expect_fail(cnn_dataset_load_cifar(tp(dir, "c10"), 0, 1, &d), "cifar size", p,
              "byte offset 6146");
  write_cifar(tp(p, "c10/data_batch_2.bin"), 3, 2, 0, 1);
  expect_fail(cnn_dataset_load_cifar(tp(dir, "c10"), 0, 1, &d), "cifar label", p, "record 1");
  write_cifar(tp(p, "c10/data_batch_2.bin"), 3, 2, 0, -1);
  write_file(tp(p, "c10/batches.meta.txt"), "a\nb\n", 4, 0);
  expect_fail(cnn_dataset_load_cifar(tp(dir, "c10"), 0, 1, &d), "cifar names", p, "2 class");
  expect_fail(cnn_dataset_load_cifar(tp(dir, "c100"), 1, 1, &d), "cifar100 missing", "c100",
              NULL);
  mkdirs("empty");
  expect_fail(cnn_dataset_load_cifar(tp(dir, "empty"), 0, 1, &d), "no batches", "data_batch",
              NULL);

  /* CIFAR-100 in its archive's sub-folder; the fine label is used */
  mkdirs("c100/cifar-100-binary");
  write_cifar(tp(p, "c100/cifar-100-binary/train.bin"), 0, 4, 1, -1);
  write_cifar(tp(p, "c100/cifar-100-binary/test.bin"), 50, 1, 1, -1);
  snprintf(spec, sizeof spec, "cifar100:%s", tp(dir, "c100"));
  CHECK_OK(cnn_dataset_open(spec, 1, 0, 0, 0, &d));
  CHECK(d.n == 4 && d.classes == 100 && d.labels[3] == 21 && d.class_names == NULL,
        "cifar100 train");
  CHECK(check_cifar_pixels(&d, 0) == 0, "cifar100 pixels");
  cnn_dataset_free(&d);
  write_cifar(tp(p, "c100/cifar-100-binary/test.bin"), 50, 2, 1, 1);
  expect_fail(cnn_dataset_open(spec, 0, 0, 0, 0, &d), "cifar100 label", p, "byte offset 3075");
}

static void put_le(uint8_t *p, uint32_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* 24-bit BMP written by hand: bottom-up rows of BGR, each padded to 4 bytes */
static void write_bmp(const char *path, int h, int w, const uint8_t *rgb) {
  int row = (w * 3 + 3) & ~3;
  size_t size = 54 + (size_t)row * h;
  uint8_t *b = calloc(1, size);
  b[0] = 'B';
  b[1] = 'M';
  put_le(b + 2, (uint32_t)size, 4);
  put_le(b + 10, 54, 4);
  put_le(b + 14, 40, 4);
  put_le(b + 18, (uint32_t)w, 4);
  put_le(b + 22, (uint32_t)h, 4);
  put_le(b + 26, 1, 2);
  put_le(b + 28, 24, 2);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int ch = 0; ch < 3; ch++)
        b[54 + (size_t)(h - 1 - y) * row + x * 3 + (2 - ch)] = rgb[(y * w + x) * 3 + ch];
  write_file(path, b, size, 0);
  free(b);
}

static void write_img(const char *rel, int h, int w, int c, int bmp, uint8_t seed) {
  char p[256];
  uint8_t *img = malloc((size_t)h * w * c);
  for (int i = 0; i < h * w * c; i++) img[i] = (uint8_t)(seed + i * 5);
  if (bmp)
    write_bmp(tp(p, rel), h, w, img); /* c must be 3 */
  else
    CHECK_OK(cnn_image_write_png(tp(p, rel), h, w, c, img));
  free(img);
}

static void test_folder(void) {
  char p[256], dir[256], spec[300];
  cnn_dataset d;
  mkdirs("f/cat");
  mkdirs("f/dog");
  mkdirs("f/.git");
  write_img("f/cat/a.png", 8, 8, 3, 0, 10);
  write_img("f/cat/b.bmp", 16, 12, 3, 1, 20);
  write_img("f/dog/c.png", 8, 8, 1, 0, 30);
  write_img("f/dog/.hidden.png", 3, 3, 1, 0, 0);
  write_file(tp(p, "f/dog/.DS_Store"), "junk", 4, 0);
  write_file(tp(p, "f/.git/x.txt"), "junk", 4, 0);
  CHECK_OK(cnn_dataset_load_folder(tp(dir, "f"), 8, 8, 3, &d));
  CHECK(d.n == 3 && d.classes == 2 && d.h == 8 && d.w == 8 && d.c == 3, "folder n=%d classes=%d",
        d.n, d.classes);
  CHECK(d.class_names && strcmp(d.class_names[0], "cat") == 0 &&
            strcmp(d.class_names[1], "dog") == 0, "folder class names");
  CHECK(d.labels && d.labels[0] == 0 && d.labels[1] == 0 && d.labels[2] == 1, "folder labels");
  if (d.n == 3) {
    int bad = 0;
    for (int i = 0; i < 8 * 8 * 3; i++) bad += d.images[i] != (uint8_t)(10 + i * 5);
    CHECK(bad == 0, "a.png decoded exactly");
    for (int i = 0; i < 64; i++) {
      const uint8_t *q = d.images + 2 * 192 + i * 3;
      bad += q[0] != (uint8_t)(30 + i * 5) || q[1] != q[0] || q[2] != q[0];
    }
    CHECK(bad == 0, "gray c.png replicated to RGB");
  }
  cnn_dataset_free(&d);
  /* the hand-written BMP decodes exactly at its own size */
  uint8_t bmp[16 * 12 * 3];
  CHECK_OK(cnn_image_load(tp(p, "f/cat/b.bmp"), 16, 12, 3, bmp));
  int bbad = 0;
  for (int i = 0; i < 16 * 12 * 3; i++) bbad += bmp[i] != (uint8_t)(20 + i * 5);
  CHECK(bbad == 0, "BMP decoded exactly (%d wrong)", bbad);
  /* gray, size from the first image */
  CHECK_OK(cnn_dataset_load_folder(tp(dir, "f"), 0, 0, 1, &d));
  CHECK(d.n == 3 && d.h == 8 && d.w == 8 && d.c == 1, "folder size from first image");
  cnn_dataset_free(&d);

  /* single images */
  uint8_t img[8 * 8 * 3], back[8 * 8 * 3], small[4 * 4 * 3];
  for (int i = 0; i < 192; i++) img[i] = (uint8_t)(i * 3);
  CHECK_OK(cnn_image_write_png(tp(p, "one.png"), 8, 8, 3, img));
  CHECK_OK(cnn_image_load(p, 8, 8, 3, back));
  CHECK(memcmp(img, back, sizeof img) == 0, "PNG round trip");
  CHECK_OK(cnn_image_load(p, 4, 4, 3, small));
  expect_fail(cnn_image_load(tp(p, "nope.png"), 8, 8, 3, back), "missing image", p, NULL);
  expect_fail(cnn_image_write_png(tp(p, "no/dir/x.png"), 8, 8, 3, img), "png to missing dir", p,
              NULL);

  printf("bad image folders:\n");
  write_file(tp(p, "f/dog/notes.txt"), "not an image\n", 13, 0);
  expect_fail(cnn_dataset_load_folder(tp(dir, "f"), 8, 8, 3, &d), "non-image file", p, "decode");
  CHECK(d.images == NULL && d.class_names == NULL, "failed folder load leaves an empty dataset");
  remove(p);
  mkdirs("e");
  expect_fail(cnn_dataset_load_folder(tp(dir, "e"), 8, 8, 3, &d), "empty folder", dir,
              "sub-folder");
  mkdirs("e/x");
  expect_fail(cnn_dataset_load_folder(tp(dir, "e"), 8, 8, 3, &d), "no images", dir, "no image");
  expect_fail(cnn_dataset_load_folder(tp(dir, "missing"), 8, 8, 3, &d), "missing folder", dir,
              "not found");
  snprintf(spec, sizeof spec, "folder:%s", tp(dir, "missing"));
  expect_fail(cnn_dataset_open(spec, 1, 8, 8, 3, &d), "missing folder spec", dir, NULL);

  /* train/test layout: test lacks "cat", so "dog" must keep index 1 */
  mkdirs("s/train/cat");
  mkdirs("s/train/dog");
  mkdirs("s/test/dog");
  write_img("s/train/cat/1.png", 6, 6, 3, 0, 1);
  write_img("s/train/dog/2.png", 6, 6, 3, 0, 2);
  write_img("s/test/dog/3.png", 6, 6, 3, 0, 3);
  snprintf(spec, sizeof spec, "folder:%s", tp(dir, "s"));
  CHECK_OK(cnn_dataset_open(spec, 1, 6, 6, 3, &d));
  CHECK(d.n == 2 && d.classes == 2, "folder train split");
  cnn_dataset_free(&d);
  CHECK_OK(cnn_dataset_open(spec, 0, 6, 6, 3, &d));
  CHECK(d.n == 1 && d.classes == 2 && d.labels && d.labels[0] == 1 && d.class_names &&
            strcmp(d.class_names[0], "cat") == 0, "folder test split uses train classes");
  cnn_dataset_free(&d);
  mkdirs("s/test/bird");
  write_img("s/test/bird/4.png", 6, 6, 3, 0, 4);
  expect_fail(cnn_dataset_open(spec, 0, 6, 6, 3, &d), "test-only class", "bird", NULL);
}

/* A folder dataset matched to a model's class names: folders in an order unlike
 * the model's, a '/' in a name ("Mid/x" in folder Mid_x), names refused when they
 * do not match, and the placeholder names "0", "1", ... */
static void test_class_map(void) {
  char dir[256];
  cnn_dataset d;
  static const char *const folders[4] = {"Mid_x", "alpha", "beta", "zeta"}; /* alphabetical */
  for (int k = 0; k < 4; k++) {
    char rel[64];
    snprintf(rel, sizeof rel, "cm/%s", folders[k]);
    mkdirs(rel);
    snprintf(rel, sizeof rel, "cm/%s/%d.png", folders[k], k);
    write_img(rel, 2, 2, 1, 0, (uint8_t)(40 * k));
  }
  static const char *const names[4] = {"zeta", "alpha", "Mid/x", "beta"};
  int by_name = -1;
  CHECK_OK(cnn_dataset_load_folder(tp(dir, "cm"), 2, 2, 1, &d));
  CHECK_OK(cnn_dataset_map_classes(&d, names, 4, &by_name));
  /* folder k (alphabetical) holds image k: Mid_x -> 2, alpha -> 1, beta -> 3, zeta -> 0 */
  static const int want[4] = {2, 1, 3, 0};
  int bad = d.n != 4 || d.classes != 4 || by_name != 1;
  for (int i = 0; i < d.n && !bad; i++)
    bad += d.labels[i] != want[i] || strcmp(d.class_names[i], names[i]) != 0;
  CHECK(!bad, "folders relabelled to the model's classes by name (by_name %d)", by_name);
  CHECK(d.n == 4 && d.images[2 * 4] == 80, "images keep their order");
  cnn_dataset_free(&d);

  printf("class names that do not match:\n");
  static const char *const other[4] = {"zeta", "alpha", "gamma", "beta"};
  CHECK_OK(cnn_dataset_load_folder(dir, 2, 2, 1, &d));
  expect_fail(cnn_dataset_map_classes(&d, other, 4, &by_name), "folder and class unmatched",
              "'Mid_x'", "'gamma'");
  CHECK(d.labels && d.labels[0] == 0 && strcmp(d.class_names[0], "Mid_x") == 0,
        "a refused mapping leaves the dataset as it was");
  static const char *const five[5] = {"zeta", "alpha", "Mid/x", "beta", "omega"};
  expect_fail(cnn_dataset_map_classes(&d, five, 5, &by_name), "a class without a folder",
              "'omega'", "no folder");
  static const char *const clash[5] = {"zeta", "alpha", "Mid/x", "beta", "Mid_x"};
  expect_fail(cnn_dataset_map_classes(&d, clash, 5, &by_name), "two classes, one folder", "Mid_x",
              "both");
  /* placeholders: "4" is an unnamed fifth output and may have no folder */
  static const char *const unnamed5[5] = {"zeta", "alpha", "Mid/x", "beta", "4"};
  CHECK_OK(cnn_dataset_map_classes(&d, unnamed5, 5, &by_name));
  CHECK(by_name == 1 && d.classes == 5 && d.labels[0] == 2, "a placeholder may lack a folder");
  cnn_dataset_free(&d);
  /* all names placeholders and the folders named otherwise: alphabetical, as before */
  static const char *const digits[4] = {"0", "1", "2", "3"};
  CHECK_OK(cnn_dataset_load_folder(dir, 2, 2, 1, &d));
  CHECK_OK(cnn_dataset_map_classes(&d, digits, 4, &by_name));
  CHECK(by_name == 0 && d.labels[0] == 0 && d.labels[3] == 3 && !strcmp(d.class_names[0], "Mid_x"),
        "unnamed classes keep the folders' alphabetical order (by_name %d)", by_name);
  cnn_dataset_free(&d);
  /* folders named by number match by name, not alphabetically: "10" < "2" as text */
  mkdirs("cn/2");
  mkdirs("cn/10");
  write_img("cn/2/a.png", 2, 2, 1, 0, 1);
  write_img("cn/10/b.png", 2, 2, 1, 0, 2);
  const char *eleven[11];
  char nb[11][4];
  for (int j = 0; j < 11; j++) snprintf(nb[j], sizeof nb[j], "%d", j), eleven[j] = nb[j];
  CHECK_OK(cnn_dataset_load_folder(tp(dir, "cn"), 2, 2, 1, &d));
  CHECK_OK(cnn_dataset_map_classes(&d, eleven, 11, &by_name));
  CHECK(by_name == 1 && d.n == 2 && d.labels[0] == 10 && d.labels[1] == 2,
        "numbered folders by number (labels %d %d)", d.n == 2 ? d.labels[0] : -1,
        d.n == 2 ? d.labels[1] : -1);
  cnn_dataset_free(&d);
  char b[32];
  CHECK(cnn_class_dir_name("T-shirt/top", b, sizeof b) && !strcmp(b, "T-shirt_top"), "/ -> _");
  CHECK(cnn_class_dir_name(".x", b, sizeof b) && !strcmp(b, "_x"), "leading . -> _");
  CHECK(cnn_class_dir_name("", b, sizeof b) && !strcmp(b, "_"), "empty -> _");
  CHECK(!cnn_class_dir_name("abcdef", b, 4), "too small a buffer");
}

/* folder:DIR with only DIR/train (or only DIR/test): that split alone; the other
 * is refused with the layouts expected, not read as one class named "train" */
static void test_split_only(void) {
  char dir[256], spec[300];
  cnn_dataset d;
  mkdirs("to/train/cat");
  mkdirs("to/train/dog");
  write_img("to/train/cat/1.png", 4, 4, 1, 0, 1);
  write_img("to/train/dog/2.png", 4, 4, 1, 0, 2);
  snprintf(spec, sizeof spec, "folder:%s", tp(dir, "to"));
  CHECK_OK(cnn_dataset_open(spec, 1, 4, 4, 1, &d));
  CHECK(d.n == 2 && d.classes == 2 && d.class_names && !strcmp(d.class_names[0], "cat"),
        "only DIR/train: the training split is its classes");
  cnn_dataset_free(&d);
  expect_fail(cnn_dataset_open(spec, 0, 4, 4, 1, &d), "only DIR/train, test split", "to/test",
              "<class>");
  CHECK(strstr(cnn_last_error(), "to/train") != NULL, "names what was found: %s", cnn_last_error());
  mkdirs("te/test/cat");
  write_img("te/test/cat/1.png", 4, 4, 1, 0, 1);
  snprintf(spec, sizeof spec, "folder:%s", tp(dir, "te"));
  CHECK_OK(cnn_dataset_open(spec, 0, 4, 4, 1, &d));
  CHECK(d.n == 1 && d.classes == 1 && !strcmp(d.class_names[0], "cat"), "only DIR/test: test split");
  cnn_dataset_free(&d);
  expect_fail(cnn_dataset_open(spec, 1, 4, 4, 1, &d), "only DIR/test, train split", "te/train",
              "training split");
  /* "train" beside other class folders is a class like the others */
  mkdirs("tc/train");
  mkdirs("tc/bus");
  write_img("tc/train/1.png", 4, 4, 1, 0, 1);
  write_img("tc/bus/2.png", 4, 4, 1, 0, 2);
  snprintf(spec, sizeof spec, "folder:%s", tp(dir, "tc"));
  CHECK_OK(cnn_dataset_open(spec, 0, 4, 4, 1, &d));
  CHECK(d.n == 2 && d.classes == 2, "a class named train among others");
  cnn_dataset_free(&d);
}

/* cnn_image_load_fit: stretch, centre crop and letterbox, pixel for pixel */
static void test_image_fit(void) {
  char p[256];
  /* 4 wide, 2 high: columns 1-2 are the centre square */
  static const uint8_t wide[8] = {10, 20, 30, 40, 50, 60, 70, 80};
  CHECK_OK(cnn_image_write_png(tp(p, "wide.png"), 2, 4, 1, wide));
  uint8_t o[16];
  int fw = 0, fh = 0;
  CHECK_OK(cnn_image_load_fit(p, 2, 2, 1, 0, CNN_FIT_CROP, NULL, o, &fw, &fh));
  CHECK(fw == 4 && fh == 2 && o[0] == 20 && o[1] == 30 && o[2] == 60 && o[3] == 70,
        "crop of 4x2 to 2x2: the centre (%dx%d: %d %d %d %d)", fw, fh, o[0], o[1], o[2], o[3]);
  static const uint8_t fill = 7;
  CHECK_OK(cnn_image_load_fit(p, 4, 4, 1, 0, CNN_FIT_LETTERBOX, &fill, o, NULL, NULL));
  int bad = 0;
  for (int i = 0; i < 16; i++) bad += o[i] != (i < 4 || i >= 12 ? 7 : wide[i - 4]);
  CHECK(bad == 0, "letterbox of 4x2 in 4x4: rows 1-2 the image, rows 0 and 3 the fill");
  /* 2 wide, 4 high */
  static const uint8_t tall[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  CHECK_OK(cnn_image_write_png(tp(p, "tall.png"), 4, 2, 1, tall));
  CHECK_OK(cnn_image_load_fit(p, 2, 2, 1, 0, CNN_FIT_CROP, NULL, o, &fw, &fh));
  CHECK(fw == 2 && fh == 4 && !memcmp(o, tall + 2, 4), "crop of 2x4 to 2x2: rows 1-2");
  CHECK_OK(cnn_image_load_fit(p, 4, 4, 1, 0, CNN_FIT_LETTERBOX, &fill, o, NULL, NULL));
  bad = 0;
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 4; x++) bad += o[y * 4 + x] != (x == 0 || x == 3 ? 7 : tall[y * 2 + x - 1]);
  CHECK(bad == 0, "letterbox of 2x4 in 4x4: columns 1-2 the image, 0 and 3 the fill");
  /* stretch: the whole 4x2 image into 2x2 (resampled: one colour stays that colour,
   * and it is the resize cnn_image_load always did) */
  uint8_t flat[4 * 2 * 3], f3[2 * 2 * 3];
  for (int i = 0; i < 24; i++) flat[i] = (uint8_t)(50 * (1 + i % 3));
  CHECK_OK(cnn_image_write_png(tp(p, "flat.png"), 2, 4, 3, flat));
  CHECK_OK(cnn_image_load_fit(p, 2, 2, 3, 0, CNN_FIT_STRETCH, NULL, f3, NULL, NULL));
  CHECK(!memcmp(f3, flat, 12), "stretch of a one-colour 4x2 to 2x2: %d %d %d", f3[0], f3[1], f3[2]);
  CHECK_OK(cnn_image_write_png(tp(p, "cols.png"), 2, 4, 1, wide));
  CHECK_OK(cnn_image_load_fit(p, 4, 4, 1, 0, CNN_FIT_STRETCH, NULL, o, NULL, NULL));
  uint8_t same[16];
  CHECK_OK(cnn_image_load(p, 4, 4, 1, same));
  CHECK(!memcmp(o, same, 16), "stretch is what cnn_image_load does");
  /* RGB letterbox with a fill colour; a same-shaped image is resized whole in every mode */
  uint8_t rgb[2 * 4 * 3], fill3[3] = {1, 2, 3};
  for (int i = 0; i < 24; i++) rgb[i] = (uint8_t)(100 + i);
  CHECK_OK(cnn_image_write_png(tp(p, "rgb.png"), 2, 4, 3, rgb));
  uint8_t o3[4 * 4 * 3];
  CHECK_OK(cnn_image_load_fit(p, 4, 4, 3, 0, CNN_FIT_LETTERBOX, fill3, o3, NULL, NULL));
  bad = 0;
  for (int i = 0; i < 48; i++) bad += o3[i] != (i < 12 || i >= 36 ? fill3[i % 3] : rgb[i - 12]);
  CHECK(bad == 0, "RGB letterbox with fill (1, 2, 3)");
  for (int f = 0; f < 3; f++) {
    CHECK_OK(cnn_image_load_fit(p, 2, 4, 3, 0, (cnn_image_fit)f, fill3, o3, NULL, NULL));
    CHECK(!memcmp(o3, rgb, 24), "fit %d of a same-shaped image is the image", f);
  }
  expect_fail(cnn_image_load_fit(p, 2, 4, 3, 0, (cnn_image_fit)9, NULL, o3, NULL, NULL),
              "unknown fit", "fit", NULL);
}

/* Hostile image files: empty or huge sizes in the header, pixel data missing.
 * Each is refused with a message naming the file, before anything is decoded. */
/* JPEG goes through libjpeg-turbo (stb is built without it): the 16x16 test image
 * decodes in every channel count, close to the lossless PNG of the same picture
 * (JPEG is lossy: a mean absolute difference of a few levels), and corrupt JPEGs
 * are refused with the file named. */
static void test_jpeg(void) {
  char pj[512], pp[512];
  tu_source_path("tests/fuzz/corpus/image/python.jpg", pj, sizeof pj);
  tu_source_path("tests/fuzz/corpus/image/python.png", pp, sizeof pp);
  for (int c = 1; c <= 4; c++) {
    uint8_t a[16 * 16 * 4], b[16 * 16 * 4];
    CHECK_OK(cnn_image_load(pj, 16, 16, c, a));
    CHECK_OK(cnn_image_load(pp, 16, 16, c, b));
    double diff = 0; /* colour channels only: the PNG's alpha is its own */
    int colour = c == 2 || c == 4 ? c - 1 : c;
    for (int i = 0; i < 16 * 16; i++)
      for (int k = 0; k < colour; k++) diff += abs((int)a[i * c + k] - (int)b[i * c + k]);
    diff /= 16 * 16 * colour;
    CHECK(diff < 12, "JPEG vs PNG of the same picture, %d channels: mean difference %.2f levels",
          c, diff);
    if (c == 2 || c == 4) {
      int opaque = 1;
      for (int i = 0; i < 16 * 16; i++) opaque &= a[i * c + c - 1] == 255;
      CHECK(opaque, "a JPEG's alpha channel is opaque (%d channels)", c);
    }
  }
  /* a truncated JPEG and one whose Huffman table overflows stb 2.27 */
  char bad[512], path[600];
  tu_source_path("tests/fuzz/regress/image/crash-jpeg-huffman-oob", bad, sizeof bad);
  uint8_t img[16 * 16 * 3];
  cnn_status st = cnn_image_load(bad, 16, 16, 3, img);
  CHECK(st != CNN_OK && strstr(cnn_last_error(), "crash-jpeg-huffman-oob"),
        "a corrupt JPEG is refused naming the file: %s", cnn_last_error());
  snprintf(path, sizeof path, "%s/short.jpg", tmpdir);
  FILE *in = fopen(pj, "rb"), *out = fopen(path, "wb");
  CHECK(in && out, "copy a truncated JPEG");
  if (in && out) {
    uint8_t buf[200];
    size_t n = fread(buf, 1, sizeof buf, in);
    fwrite(buf, 1, n, out);
  }
  if (in) fclose(in);
  if (out) fclose(out);
  st = cnn_image_load(path, 16, 16, 3, img);
  CHECK(st == CNN_OK || strstr(cnn_last_error(), "short.jpg"),
        "a truncated JPEG decodes (libjpeg fills the rest) or is refused naming the file: %s",
        cnn_last_error());
}

static void test_bad_images(void) {
  char p[256], p2[256], dir[256], spec[300];
  uint8_t out[8 * 8 * 3];
  cnn_dataset d;
  printf("hostile image files:\n");
  /* 25 bytes: a core-header BMP of 1x0 pixels (once an assertion in the resizer) */
  static const uint8_t zero_h[25] = {'B', 'M', 25, 0, 0, 0, 0, 0, 0, 0, 26, 0, 0,
                                     0,   12,  0,  0, 0, 1, 0, 0, 0, 1, 0, 24};
  write_file(tp(p, "zero_h.bmp"), zero_h, sizeof zero_h, 0);
  expect_fail(cnn_image_load(p, 8, 8, 3, out), "BMP of height 0", p, "1x0");
  mkdirs("z/a");
  write_file(tp(p, "z/a/0.bmp"), zero_h, sizeof zero_h, 0);
  expect_fail(cnn_dataset_load_folder(tp(dir, "z"), 0, 0, 3, &d), "folder, size from a 1x0 BMP",
              p, "1x0");
  expect_fail(cnn_dataset_load_folder(dir, 8, 8, 3, &d), "folder with a 1x0 BMP", p, "1x0");

  /* headers promising pixels the file does not hold (3000x3000 is under the limit) */
  uint8_t bmp[54] = {'B', 'M'};
  put_le(bmp + 2, 54, 4);
  put_le(bmp + 10, 54, 4);
  put_le(bmp + 14, 40, 4);
  put_le(bmp + 18, 3000, 4);
  put_le(bmp + 22, 3000, 4);
  put_le(bmp + 26, 1, 2);
  put_le(bmp + 28, 24, 2);
  write_file(tp(p, "empty.bmp"), bmp, sizeof bmp, 0);
  expect_fail(cnn_image_load(p, 8, 8, 3, out), "BMP without pixel data", p, "truncated");
  const char *pnm = "P6\n3000 3000\n255\n";
  write_file(tp(p, "empty.ppm"), pnm, strlen(pnm), 0);
  expect_fail(cnn_image_load(p, 8, 8, 3, out), "PPM without pixel data", p, "truncated");
  uint8_t tga[18] = {0, 0, 2};
  put_le(tga + 12, 2000, 2);
  put_le(tga + 14, 2000, 2);
  tga[16] = 24;
  tga[17] = 0x20;
  write_file(tp(p, "empty.tga"), tga, sizeof tga, 0);
  expect_fail(cnn_image_load(p, 8, 8, 3, out), "TGA without pixel data", p, "truncated");

  /* complete files of those formats still load, rows padded or not */
  uint8_t rgb[3 * 5 * 3], got[3 * 5 * 3];
  for (int i = 0; i < 45; i++) rgb[i] = (uint8_t)(7 + i * 5);
  write_bmp(tp(p, "odd.bmp"), 3, 5, rgb); /* 15-byte rows padded to 16 */
  CHECK_OK(cnn_image_load(p, 3, 5, 3, got));
  CHECK(memcmp(rgb, got, sizeof rgb) == 0, "odd-width BMP decoded exactly");
  uint8_t ppm[11 + 45];
  memcpy(ppm, "P6\n5 3\n255\n", 11);
  memcpy(ppm + 11, rgb, 45);
  write_file(tp(p, "ok.ppm"), ppm, sizeof ppm, 0);
  CHECK_OK(cnn_image_load(p, 3, 5, 3, got));
  CHECK(memcmp(rgb, got, sizeof rgb) == 0, "PPM decoded exactly");
  uint8_t tgaok[18 + 45] = {0, 0, 2};
  put_le(tgaok + 12, 5, 2);
  put_le(tgaok + 14, 3, 2);
  tgaok[16] = 24;
  tgaok[17] = 0x20; /* top-left origin */
  for (int i = 0; i < 15; i++)
    for (int ch = 0; ch < 3; ch++) tgaok[18 + i * 3 + ch] = rgb[i * 3 + 2 - ch]; /* BGR */
  write_file(tp(p, "ok.tga"), tgaok, sizeof tgaok, 0);
  CHECK_OK(cnn_image_load(p, 3, 5, 3, got));
  CHECK(memcmp(rgb, got, sizeof rgb) == 0, "TGA decoded exactly");
  /* the size a short file would need is not checked for compressed formats, which
   * detect their own truncation: a PNG cut short fails to decode */

  /* a PNG header of 20000x20000 (400 megapixels): refused before decoding */
  static const uint8_t big_png[] = {
      0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
      0, 0, 0x4e, 0x20, 0, 0, 0x4e, 0x20, 8, 0, 0, 0, 0, 0, 0, 0, 0,
      0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
  write_file(tp(p, "big.png"), big_png, sizeof big_png, 0);
  expect_fail(cnn_image_load(p, 8, 8, 3, out), "400-megapixel PNG", p, "20000x20000");
  CHECK(strstr(cnn_last_error(), "limit") != NULL, "the message names the limit: %s",
        cnn_last_error());
  /* a lower or higher limit through the API */
  uint8_t img[8 * 8 * 3];
  memset(img, 9, sizeof img);
  CHECK_OK(cnn_image_write_png(tp(p2, "eight.png"), 8, 8, 3, img));
  CHECK_OK(cnn_image_load_limit(p2, 8, 8, 3, 64, out));
  expect_fail(cnn_image_load_limit(p2, 8, 8, 3, 63, out), "over a limit of 63 pixels", p2, "63");
  CHECK(cnn_image_load_limit(p, 8, 8, 3, 400000000, out) != CNN_OK &&
            strstr(cnn_last_error(), "limit") == NULL,
        "under a raised limit the bogus PNG gets to the decoder: %s", cnn_last_error());
  mkdirs("l/a");
  CHECK_OK(cnn_image_write_png(tp(p2, "l/a/eight.png"), 8, 8, 3, img));
  CHECK_OK(cnn_dataset_load_folder_limit(tp(dir, "l"), 0, 0, 3, 64, &d));
  cnn_dataset_free(&d);
  expect_fail(cnn_dataset_load_folder_limit(dir, 0, 0, 3, 63, &d), "folder over the limit", p2,
              "63");
  expect_fail(cnn_dataset_load_folder_limit(dir, 4, 4, 3, 63, &d), "folder over the limit (resized)",
              p2, "63");
  snprintf(spec, sizeof spec, "folder:%s", dir);
  CHECK_OK(cnn_dataset_open_limit(spec, 1, 4, 4, 1, 64, &d));
  cnn_dataset_free(&d);
  expect_fail(cnn_dataset_open_limit(spec, 1, 4, 4, 1, 63, &d), "folder spec over the limit", p2,
              "63");
}

static void test_split(void) {
  cnn_dataset src = {0}, tr, va, tr2, va2;
  src.n = 100;
  src.h = 2;
  src.w = 1;
  src.c = 1;
  src.classes = 3;
  src.images = malloc(200);
  src.labels = malloc(100 * sizeof(int32_t));
  src.class_names = malloc(3 * sizeof(char *));
  for (int i = 0; i < 3; i++) {
    src.class_names[i] = malloc(3);
    memcpy(src.class_names[i], (const char[3]){'c', (char)('0' + i), 0}, 3);
  }
  for (int i = 0; i < 100; i++) {
    src.images[2 * i] = (uint8_t)i; /* the image says where it came from */
    src.images[2 * i + 1] = (uint8_t)(255 - i);
    src.labels[i] = i % 3;
  }
  CHECK_OK(cnn_dataset_split(&src, 0.2, 42, &tr, &va));
  CHECK(tr.n == 80 && va.n == 20, "split sizes %d %d", tr.n, va.n);
  int seen[100] = {0}, bad = 0;
  for (int i = 0; i < tr.n; i++) {
    int k = tr.images[2 * i];
    seen[k]++;
    bad += tr.labels[i] != k % 3 || tr.images[2 * i + 1] != 255 - k;
  }
  for (int i = 0; i < va.n; i++) {
    int k = va.images[2 * i];
    seen[k]++;
    bad += va.labels[i] != k % 3 || va.images[2 * i + 1] != 255 - k;
  }
  for (int k = 0; k < 100; k++) bad += seen[k] != 1;
  CHECK(bad == 0, "split is disjoint, complete, and keeps labels with images");
  CHECK(tr.class_names && tr.class_names != src.class_names && va.class_names &&
            strcmp(va.class_names[2], "c2") == 0, "split copies class names");
  CHECK_OK(cnn_dataset_split(&src, 0.2, 42, &tr2, &va2));
  CHECK(memcmp(va.images, va2.images, 40) == 0 && memcmp(tr.images, tr2.images, 160) == 0,
        "same seed, same split");
  cnn_dataset_free(&tr2);
  cnn_dataset_free(&va2);
  CHECK_OK(cnn_dataset_split(&src, 0.2, 43, &tr2, &va2));
  CHECK(memcmp(va.images, va2.images, 40) != 0, "another seed, another split");
  cnn_dataset_free(&tr2);
  cnn_dataset_free(&va2);
  int first_va = va.images[0];
  cnn_dataset_free(&tr);
  cnn_dataset_free(&va);
  CHECK(src.images[2 * first_va] == first_va, "source untouched");
  CHECK_OK(cnn_dataset_split(&src, 0.0, 1, &tr, &va));
  CHECK(tr.n == 100 && va.n == 0, "fraction 0");
  cnn_dataset_free(&tr);
  cnn_dataset_free(&va);
  CHECK(cnn_dataset_split(&src, 1.5, 1, &tr, &va) == CNN_ERR_ARG, "fraction 1.5 rejected");
  cnn_dataset_free(&src);
}

static void test_fashion(void) {
  const char *sys = "/usr/share/datasets/fashion-mnist";
  struct stat st;
  if (stat(sys, &st) != 0) {
    printf("note: %s not installed (apt-get install dataset-fashion-mnist); skipping the "
           "Fashion-MNIST check\n", sys);
    return;
  }
  cnn_dataset d;
  for (int train = 1; train >= 0; train--) {
    CHECK_OK(cnn_dataset_open("fashion-mnist", train, 0, 0, 0, &d));
    int want = train ? 60000 : 10000;
    CHECK(d.n == want && d.h == 28 && d.w == 28 && d.c == 1 && d.classes == 10,
          "fashion-mnist %s: n=%d %dx%dx%d classes=%d", train ? "train" : "test", d.n, d.h, d.w,
          d.c, d.classes);
    int count[10] = {0}, bad = 0;
    for (int i = 0; i < d.n; i++) {
      if (d.labels[i] < 0 || d.labels[i] >= 10)
        bad++;
      else
        count[d.labels[i]]++;
    }
    CHECK(bad == 0, "labels in range");
    for (int k = 0; k < 10; k++)
      CHECK(count[k] == want / 10, "class %d has %d images", k, count[k]);
    CHECK(d.class_names && strcmp(d.class_names[0], "T-shirt/top") == 0 &&
              strcmp(d.class_names[9], "Ankle boot") == 0, "class names");
    long sum = 0;
    for (size_t i = 0; i < (size_t)d.n * 784; i++) sum += d.images[i];
    CHECK(sum > 0, "images are not all zero");
    printf("fashion-mnist %s: %d images, mean pixel %.2f\n", train ? "train" : "test", d.n,
           (double)sum / ((double)d.n * 784));
    cnn_dataset_free(&d);
  }
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/cnn_test_data_XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  unsetenv("CNN_DATA_DIR");
  test_idx();
  test_cifar();
  test_folder();
  test_class_map();
  test_split_only();
  test_image_fit();
  test_bad_images();
  test_jpeg();
  test_split();
  test_fashion();
  nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return tu_finish("test_data");
}
