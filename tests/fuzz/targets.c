/* The fuzz targets shared by the libFuzzer harnesses and the regression replayer
 * (see targets.h). Formats read from paths get the bytes written to files in one
 * temp folder made on first use; each target removes what it wrote before it
 * returns, so no call sees a file left by an earlier one. */
#define _XOPEN_SOURCE 700 /* mkdtemp */

#include "targets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnn/cnn.h"
#include "cnn/data.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "exchange/darknet_weights.h"
#include "exchange/onnx_import.h"

/* ---- temp files ---------------------------------------------------------------- */

static char tmp_root[256];
static cnn_backend *ref;
static cnn_net *ckpt_net;
static cnn_net *dn_net;

static void at_exit_cleanup(void) {
  static int registered;
  if (!registered) atexit(cnn_fuzz_cleanup);
  registered = 1;
}

static const char *tmp_path(const char *rel, char *buf, size_t n) {
  if (!tmp_root[0]) {
    const char *t = getenv("TMPDIR");
    snprintf(tmp_root, sizeof tmp_root, "%s/cnn-fuzz-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmp_root)) {
      perror("cnn fuzz: mkdtemp");
      abort(); /* no temp folder: nothing can be tested; not the library's fault */
    }
    at_exit_cleanup();
  }
  snprintf(buf, n, "%s/%s", tmp_root, rel);
  return buf;
}

static void write_file(const char *path, const uint8_t *p, size_t n) {
  FILE *fp = fopen(path, "wb");
  if (!fp || (n && fwrite(p, 1, n, fp) != n) || fclose(fp) != 0) {
    perror(path);
    abort();
  }
}

static void make_dir(const char *rel) {
  char p[512];
  tmp_path(rel, p, sizeof p);
  if (mkdir(p, 0700) != 0) {
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
      perror(p);
      abort();
    }
  }
}

/* files and folders the targets may create, children before parents */
static const char *const tmp_entries[] = {
    "idx-images", "idx-labels", "cifar/data_batch_1.bin", "cifar/test_batch.bin",
    "cifar/train.bin", "cifar/test.bin", "cifar/batches.meta.txt",
    "cifar/fine_label_names.txt", "cifar", "img/cls/image", "img/cls", "img",
    "cfg", "ckpt.safetensors", "darknet.weights"};

static void remove_tmp_files(void) {
  char p[512];
  for (size_t i = 0; i < sizeof tmp_entries / sizeof *tmp_entries; i++)
    remove(tmp_path(tmp_entries[i], p, sizeof p));
}

/* a failed call must say why; CNN_FUZZ_VERBOSE=1 prints every outcome (triage) */
static int has_message(cnn_status s) {
  static int verbose = -1;
  if (verbose < 0) verbose = getenv("CNN_FUZZ_VERBOSE") && *getenv("CNN_FUZZ_VERBOSE") == '1';
  if (verbose) fprintf(stderr, "  -> %s%s%s\n", cnn_status_name(s), s ? ": " : "", s ? cnn_last_error() : "");
  if (s == CNN_OK) return 1;
  const char *m = cnn_last_error();
  if (m && *m) return 1;
  fprintf(stderr, "cnn fuzz: %s returned with no message\n", cnn_status_name(s));
  return 0;
}

#define EXPECT(cond)                                                         \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "cnn fuzz: %s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
      bad = 1;                                                               \
    }                                                                        \
  } while (0)

/* an accepted dataset must be what data.h promises */
static int check_dataset(const cnn_dataset *d) {
  int bad = 0;
  EXPECT(d->n > 0 && d->h > 0 && d->w > 0 && d->c >= 1 && d->c <= 4);
  EXPECT(d->classes > 0);
  EXPECT(d->images != NULL && d->labels != NULL);
  for (int i = 0; !bad && i < d->n; i++) EXPECT(d->labels[i] >= 0 && d->labels[i] < d->classes);
  if (d->class_names)
    for (int k = 0; !bad && k < d->classes; k++) EXPECT(d->class_names[k] != NULL);
  if (!bad && d->n) { /* every byte readable (ASan checks the extent) */
    size_t bytes = (size_t)d->n * d->h * d->w * d->c;
    unsigned sum = 0;
    for (size_t i = 0; i < bytes; i++) sum += d->images[i];
    (void)sum;
  }
  return bad;
}

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static cnn_backend *ref_backend(void) {
  if (!ref) {
    if (cnn_backend_create("ref", &ref) != CNN_OK) {
      fprintf(stderr, "cnn fuzz: no ref backend: %s\n", cnn_last_error());
      abort();
    }
    at_exit_cleanup();
  }
  return ref;
}

/* ---- cfg ------------------------------------------------------------------------ */

#define CFG_MAX_PEAK_BYTES (16u << 20)
#define CFG_MAX_FLOPS 4e6
#define CFG_MAX_LAYERS 64

int cnn_fuzz_cfg(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = 0;
  int bad = 0;
  cnn_net *net = NULL;
  cnn_error_clear();
  cnn_status s = cnn_net_from_cfg_text(text, "fuzz.cfg", &net);
  free(text);
  if (!has_message(s)) return 1;
  if (s != CNN_OK) {
    EXPECT(net == NULL);
    return bad;
  }
  EXPECT(net != NULL);
  if (!net) return bad;
  cnn_net_info info;
  s = cnn_net_info_get(net, &info);
  EXPECT(s == CNN_OK);
  if (s == CNN_OK) {
    EXPECT(info.height > 0 && info.width > 0 && info.channels > 0 && info.num_layers > 0);
    FILE *devnull = fopen("/dev/null", "w");
    if (devnull) {
      cnn_error_clear();
      s = cnn_net_summary(net, 1, devnull);
      EXPECT(has_message(s));
      fclose(devnull);
    }
    cnn_plan_info plan;
    cnn_error_clear();
    s = cnn_net_plan_estimate(net, ref_backend(), 1, CNN_MODE_INFER, &plan);
    EXPECT(has_message(s));
    /* a small net is built and run forward once; big ones would make fuzzing slow */
    if (s == CNN_OK && plan.peak_bytes <= CFG_MAX_PEAK_BYTES &&
        info.flops_per_image <= CFG_MAX_FLOPS && info.num_layers <= CFG_MAX_LAYERS) {
      cnn_error_clear();
      s = cnn_net_build(net, ref_backend(), 1, CNN_MODE_INFER);
      EXPECT(has_message(s));
      if (s == CNN_OK) {
        size_t nin = (size_t)info.height * info.width * info.channels;
        float *x = malloc(nin * sizeof *x);
        float *probs = malloc((size_t)(info.classes > 0 ? info.classes : 1) * sizeof *probs);
        if (x && probs) {
          for (size_t i = 0; i < nin; i++) x[i] = (float)((i * 37 % 101) / 50.0 - 1.0);
          cnn_step_result r;
          cnn_error_clear();
          s = cnn_net_predict(net, x, NULL, 1, probs, &r);
          EXPECT(has_message(s));
        }
        free(x);
        free(probs);
      }
    }
  }
  cnn_net_destroy(net);
  return bad;
}

/* ---- checkpoint ----------------------------------------------------------------- */

/* the fixed net checkpoints are loaded into: every kind of tensor the loader
 * handles (conv weight, batch-norm parameters and running statistics, dense
 * weight and bias, SGD momentum as optimizer state) */
static const char ckpt_cfg[] =
    "[net]\nheight=6\nwidth=6\nchannels=2\nbatch=2\nlearning_rate=0.1\nmomentum=0.9\n"
    "[convolutional]\nbatch_normalize=1\nfilters=3\nsize=3\nstride=1\npad=1\nactivation=relu\n"
    "[maxpool]\nsize=2\nstride=2\n"
    "[connected]\noutput=4\nactivation=linear\n"
    "[softmax]\n";

const char *cnn_fuzz_checkpoint_cfg(void) { return ckpt_cfg; }

static cnn_net *checkpoint_net(void) {
  if (!ckpt_net) {
    if (cnn_net_from_cfg_text(ckpt_cfg, "ckpt.cfg", &ckpt_net) != CNN_OK ||
        cnn_net_build(ckpt_net, ref_backend(), 2, CNN_MODE_TRAIN) != CNN_OK) {
      fprintf(stderr, "cnn fuzz: the checkpoint target's net: %s\n", cnn_last_error());
      abort();
    }
  }
  return ckpt_net;
}

/* what cnn_st_read promises of a file it accepted */
static int check_st_file(const cnn_st_file *f) {
  int bad = 0;
  EXPECT(f->n >= 0 && f->n_meta >= 0);
  for (int i = 0; !bad && i < f->n; i++) {
    const cnn_st_tensor *t = &f->tensors[i];
    EXPECT(t->name != NULL);
    EXPECT(t->ndim >= 0 && t->ndim <= CNN_ST_MAX_DIMS);
    EXPECT(t->begin <= t->end && t->end <= f->data_len);
    size_t es = cnn_st_dtype_size(t->dtype);
    EXPECT(es > 0);
    if (bad) break;
    size_t count = 1;
    for (int d = 0; d < t->ndim; d++) {
      EXPECT(t->shape[d] >= 0);
      count *= (size_t)t->shape[d];
    }
    EXPECT(count * es == t->end - t->begin);
    EXPECT(cnn_st_find(f, t->name) != NULL);
    if (!bad && t->end > t->begin) { /* the range is readable */
      volatile uint8_t x = f->data[t->begin];
      x = f->data[t->end - 1];
      (void)x;
    }
  }
  for (int i = 0; !bad && i < f->n_meta; i++) {
    EXPECT(f->meta_keys[i] != NULL && f->meta_values[i] != NULL);
    if (!bad) EXPECT(cnn_st_meta(f, f->meta_keys[i]) != NULL);
  }
  return bad;
}

int cnn_fuzz_checkpoint(const uint8_t *data, size_t size) {
  char path[512];
  tmp_path("ckpt.safetensors", path, sizeof path);
  write_file(path, data, size);
  int bad = 0;
  cnn_st_file f;
  cnn_error_clear();
  cnn_status s = cnn_st_read(path, &f);
  if (!has_message(s)) bad = 1;
  if (s == CNN_OK) {
    bad |= check_st_file(&f);
    cnn_st_free(&f);
  }
  cnn_net *net = checkpoint_net();
  cnn_error_clear();
  s = cnn_net_load(net, path);
  if (!has_message(s)) bad = 1;
  if (s == CNN_OK && cnn_st_read(path, &f) == CNN_OK) {
    /* every tensor of the net now holds the file's bytes */
    for (int i = 0; i < cnn_net_num_tensors(net) && !bad; i++) {
      cnn_param_desc d;
      EXPECT(cnn_net_tensor_desc(net, i, &d) == CNN_OK);
      if (bad) break;
      const cnn_st_tensor *t = cnn_st_find(&f, d.name);
      EXPECT(t != NULL && t->end - t->begin == d.count * sizeof(float));
      float *got = bad ? NULL : malloc(d.count * sizeof *got);
      if (got) {
        EXPECT(cnn_net_tensor_get(net, i, got) == CNN_OK);
        EXPECT(memcmp(got, f.data + t->begin, d.count * sizeof *got) == 0);
      }
      free(got);
    }
    cnn_st_free(&f);
  }
  remove_tmp_files();
  return bad;
}

/* ---- IDX ------------------------------------------------------------------------ */

int cnn_fuzz_idx(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t nl = le16(data);
  if (nl > size - 2) nl = size - 2;
  char ipath[512], lpath[512];
  tmp_path("idx-images", ipath, sizeof ipath);
  tmp_path("idx-labels", lpath, sizeof lpath);
  write_file(lpath, data + 2, nl);
  write_file(ipath, data + 2 + nl, size - 2 - nl);
  int bad = 0;
  cnn_dataset d;
  cnn_error_clear();
  cnn_status s = cnn_dataset_load_idx(ipath, lpath, &d);
  if (!has_message(s)) bad = 1;
  if (s == CNN_OK) {
    bad |= check_dataset(&d);
    EXPECT(d.c == 1 && d.classes <= 256);
    cnn_dataset_free(&d);
  }
  remove_tmp_files();
  return bad;
}

/* ---- CIFAR binary --------------------------------------------------------------- */

int cnn_fuzz_cifar(const uint8_t *data, size_t size) {
  if (size < 3) return 0;
  int cifar100 = data[0] & 1, names = data[0] >> 1 & 1, train = data[0] >> 2 & 1;
  size_t nn = le16(data + 1);
  if (nn > size - 3) nn = size - 3;
  const uint8_t *batch = data + 3 + nn;
  size_t nbatch = size - 3 - nn;
  make_dir("cifar");
  char path[512];
  const char *file = cifar100 ? (train ? "cifar/train.bin" : "cifar/test.bin")
                              : (train ? "cifar/data_batch_1.bin" : "cifar/test_batch.bin");
  write_file(tmp_path(file, path, sizeof path), batch, nbatch);
  if (names)
    write_file(tmp_path(cifar100 ? "cifar/fine_label_names.txt" : "cifar/batches.meta.txt", path,
                        sizeof path),
               data + 3, nn);
  int bad = 0;
  cnn_dataset d;
  cnn_error_clear();
  cnn_status s = cnn_dataset_load_cifar(tmp_path("cifar", path, sizeof path), cifar100, train, &d);
  if (!has_message(s)) bad = 1;
  if (s == CNN_OK) {
    bad |= check_dataset(&d);
    size_t rec = cifar100 ? 3074 : 3073;
    EXPECT((size_t)d.n * rec == nbatch);
    EXPECT(d.h == 32 && d.w == 32 && d.c == 3 && d.classes == (cifar100 ? 100 : 10));
    EXPECT(cifar100 || d.class_names != NULL);
    cnn_dataset_free(&d);
  }
  remove_tmp_files();
  return bad;
}

/* ---- images --------------------------------------------------------------------- */

/* The pixel limit the image target decodes under: 1 Mpx instead of the default 64,
 * so that a legitimately large image (seconds to decode and resize under the
 * sanitizers) is not reported as a hang; the limit itself is tested in test_data. */
#define FUZZ_MAX_PIXELS (1 << 20)

int cnn_fuzz_image(const uint8_t *data, size_t size) {
  make_dir("img");
  make_dir("img/cls");
  char dir[512], path[512];
  tmp_path("img", dir, sizeof dir);
  write_file(tmp_path("img/cls/image", path, sizeof path), data, size);
  int bad = 0, c = 1 + (int)(size % 4);
  cnn_dataset d;
  cnn_error_clear();
  /* height from the file (stbi_info), width resized to 16, c channels */
  cnn_status s = cnn_dataset_load_folder_limit(dir, 0, 16, c, FUZZ_MAX_PIXELS, &d);
  if (!has_message(s)) bad = 1;
  int folder_ok = s == CNN_OK;
  if (folder_ok) {
    bad |= check_dataset(&d);
    EXPECT(d.n == 1 && d.classes == 1 && d.w == 16 && d.c == c && d.labels[0] == 0);
    EXPECT(d.class_names && d.class_names[0] && !strcmp(d.class_names[0], "cls"));
    /* resizing and channel conversion of what was decoded */
    if (!bad && (size_t)d.h * d.w <= 1u << 20) {
      cnn_error_clear();
      s = cnn_dataset_resize(&d, 5, 3, c % 4 + 1);
      EXPECT(has_message(s));
      if (s == CNN_OK) EXPECT(d.h == 5 && d.w == 3);
    }
    cnn_dataset_free(&d);
  }
  uint8_t out[7 * 5 * 3];
  cnn_error_clear();
  s = cnn_image_load_limit(path, 7, 5, 3, FUZZ_MAX_PIXELS, out);
  if (!has_message(s)) bad = 1;
  if (folder_ok) EXPECT(s == CNN_OK); /* it decoded once, it decodes again */
  remove_tmp_files();
  return bad;
}

/* ---- Darknet weights ------------------------------------------------------------ */

static const char darknet_cfg[] =
    "[net]\nheight=3\nwidth=3\nchannels=2\n"
    "[convolutional]\nbatch_normalize=1\nfilters=2\nsize=3\npad=1\nactivation=leaky\n"
    "[convolutional]\nfilters=2\nsize=1\ngroups=2\nactivation=linear\n"
    "[convolutional]\nfilters=2\nsize=1\nflipped=1\nactivation=linear\n"
    "[batchnorm]\n"
    "[connected]\noutput=2\nactivation=linear\n"
    "[connected]\nbatch_normalize=1\noutput=2\nactivation=linear\n";

const char *cnn_fuzz_darknet_cfg(void) { return darknet_cfg; }

/* every tensor of the net, in order (malloc'd) */
static float *dn_snapshot(const cnn_net *net, size_t *count) {
  size_t n = 0;
  for (int i = 0; i < cnn_net_num_tensors(net); i++) {
    cnn_param_desc d;
    if (cnn_net_tensor_desc(net, i, &d) == CNN_OK) n += d.count;
  }
  float *v = malloc((n ? n : 1) * sizeof *v), *p = v;
  for (int i = 0; v && i < cnn_net_num_tensors(net); i++) {
    cnn_param_desc d;
    if (cnn_net_tensor_desc(net, i, &d) != CNN_OK || cnn_net_tensor_get(net, i, p) != CNN_OK) abort();
    p += d.count;
  }
  *count = n;
  return v;
}

int cnn_fuzz_darknet(const uint8_t *data, size_t size) {
  if (!dn_net) {
    if (cnn_net_from_cfg_text(darknet_cfg, "darknet.cfg", &dn_net) != CNN_OK) {
      fprintf(stderr, "cnn fuzz: the darknet target's net: %s\n", cnn_last_error());
      abort();
    }
    at_exit_cleanup();
  }
  int bad = 0;
  size_t n0, n1;
  float *before = dn_snapshot(dn_net, &n0);
  cnn_darknet_info info;
  cnn_error_clear();
  cnn_status s = cnn_darknet_read(dn_net, data, size, "fuzz.weights", &info);
  if (!has_message(s)) bad = 1;
  float *after = dn_snapshot(dn_net, &n1);
  if (!before || !after) abort();
  if (s != CNN_OK) EXPECT(n0 == n1 && !memcmp(before, after, n0 * sizeof *before));
  if (s == CNN_OK) {
    EXPECT(info.header_bytes + 4 * info.values == size);
    uint8_t *out = NULL;
    size_t n = 0;
    cnn_error_clear();
    cnn_status e = cnn_darknet_encode(dn_net, info.seen, &out, &n);
    EXPECT(e == CNN_OK && n == 20 + 4 * info.values);
    /* values as read (a transposed file's connected weights come back in order) */
    if (e == CNN_OK && !info.transposed && n == 20 + 4 * info.values)
      EXPECT(!memcmp(out + 20, data + info.header_bytes, 4 * info.values));
    free(out);
  }
  char path[512];
  tmp_path("darknet.weights", path, sizeof path);
  write_file(path, data, size);
  cnn_error_clear();
  cnn_status f = cnn_darknet_load(dn_net, path, NULL);
  if (!has_message(f)) bad = 1;
  EXPECT(f == s);
  free(before);
  free(after);
  remove_tmp_files();
  return bad;
}

/* ---- ONNX model ------------------------------------------------------------------ */

/* converted models are built and run forward only when this small (ONNX files can
 * describe big nets in a few bytes: shapes come from attributes, weights must match) */
#define ONNX_MAX_PEAK_BYTES (16u << 20)
#define ONNX_MAX_FLOPS 4e6

int cnn_fuzz_onnx(const uint8_t *data, size_t size) {
  int bad = 0;
  cnn_onnx_model m;
  cnn_error_clear();
  cnn_status s = cnn_onnx_read(data, size, "fuzz.onnx", &m);
  if (!has_message(s)) return 1;
  if (s != CNN_OK) {
    EXPECT(m.cfg == NULL && m.n_tensors == 0);
    return bad;
  }
  /* what the CLI relies on: cfg text, named tensors, an output kind, 1-4 channels */
  EXPECT(m.cfg != NULL && m.output != NULL && m.sections > 0);
  EXPECT(m.channels >= 1 && m.channels <= 4);
  for (int i = 0; !bad && i < m.n_tensors; i++) {
    EXPECT(m.names[i] != NULL && m.data[i] != NULL);
    if (!bad && m.counts[i]) { /* readable to the end (ASan checks) */
      volatile float f = m.data[i][0];
      f = m.data[i][m.counts[i] - 1];
      (void)f;
    }
  }
  cnn_net *net = NULL;
  cnn_error_clear();
  s = bad ? CNN_ERR_ARG : cnn_onnx_net(&m, &net);
  if (!bad && !has_message(s)) bad = 1;
  if (s == CNN_OK) {
    cnn_net_info info;
    cnn_plan_info plan;
    EXPECT(cnn_net_info_get(net, &info) == CNN_OK);
    EXPECT(info.channels == m.channels && info.classes >= 2);
    cnn_error_clear();
    s = bad ? CNN_ERR_ARG : cnn_net_plan_estimate(net, ref_backend(), 1, CNN_MODE_INFER, &plan);
    if (!bad) EXPECT(has_message(s));
    if (!bad && s == CNN_OK && plan.peak_bytes <= ONNX_MAX_PEAK_BYTES &&
        info.flops_per_image <= ONNX_MAX_FLOPS) {
      cnn_error_clear();
      s = cnn_net_build(net, ref_backend(), 1, CNN_MODE_INFER);
      EXPECT(has_message(s));
      size_t nin = (size_t)info.height * info.width * info.channels;
      float *x = s == CNN_OK ? malloc(nin * sizeof *x) : NULL;
      float *probs = x ? malloc((size_t)info.classes * sizeof *probs) : NULL;
      if (probs) {
        for (size_t i = 0; i < nin; i++) x[i] = (float)(i * 37 % 101) / 101.0f;
        cnn_error_clear();
        EXPECT(has_message(cnn_net_predict(net, x, NULL, 1, probs, NULL)));
      }
      free(x);
      free(probs);
    }
    cnn_net_destroy(net);
  }
  cnn_onnx_model_free(&m);
  return bad;
}

/* ---- the table ------------------------------------------------------------------ */

const cnn_fuzz_target cnn_fuzz_targets[] = {
    {"cfg", cnn_fuzz_cfg},
    {"checkpoint", cnn_fuzz_checkpoint},
    {"idx", cnn_fuzz_idx},
    {"cifar", cnn_fuzz_cifar},
    {"image", cnn_fuzz_image},
    {"darknet", cnn_fuzz_darknet},
    {"onnx", cnn_fuzz_onnx},
};
const int cnn_fuzz_num_targets = sizeof cnn_fuzz_targets / sizeof *cnn_fuzz_targets;

void cnn_fuzz_cleanup(void) {
  if (ckpt_net) {
    cnn_net_destroy(ckpt_net);
    ckpt_net = NULL;
  }
  if (dn_net) {
    cnn_net_destroy(dn_net);
    dn_net = NULL;
  }
  if (ref) {
    cnn_backend_destroy(ref);
    ref = NULL;
  }
  if (!tmp_root[0]) return;
  remove_tmp_files();
  rmdir(tmp_root);
  tmp_root[0] = 0;
}
