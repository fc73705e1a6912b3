/* Writes the generated seed inputs of tests/fuzz/corpus/<target>/ (the committed
 * seeds came from this; rerun it when a format changes):
 *   build/fuzz_gen_seeds tests/fuzz/corpus
 * Seeds copied from elsewhere (cfg files, sample images) are listed in
 * tests/fuzz/README.md. Everything is small: the fuzzer mutates from here. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "cnn/cnn.h"
#include "cnn/data.h"
#include "exchange/darknet_weights.h"
#include "fuzz/targets.h"

static const char *root;

static void path_of(const char *target, const char *name, char *buf, size_t n) {
  snprintf(buf, n, "%s/%s", root, target);
  mkdir(buf, 0755);
  snprintf(buf, n, "%s/%s/%s", root, target, name);
}

static void put(const char *target, const char *name, const void *p, size_t n) {
  char path[1024];
  path_of(target, name, path, sizeof path);
  FILE *fp = fopen(path, "wb");
  if (!fp || fwrite(p, 1, n, fp) != n || fclose(fp)) {
    perror(path);
    exit(1);
  }
}

static void put_text(const char *target, const char *name, const char *text) {
  put(target, name, text, strlen(text));
}

/* ---- cfg: small nets touching every layer kind and most keys ----------------- */

static void cfg_seeds(void) {
  put_text("cfg", "tiny-conv.cfg",
           "[net]\nheight=8\nwidth=8\nchannels=1\nbatch=2\n"
           "[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=relu\n"
           "[maxpool]\nsize=2\nstride=2\n[connected]\noutput=3\nactivation=linear\n[softmax]\n");
  put_text("cfg", "residual.cfg",
           "[net]\nheight=6\nwidth=6\nchannels=3\nbatch=1\nlearning_rate=0.1\nmomentum=0.9\n"
           "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\npad=1\nactivation=leaky\n"
           "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\npad=1\nactivation=gelu\n"
           "[shortcut]\nfrom=-2\nactivation=relu\n"
           "[route]\nlayers=-1,-3\n"
           "[convolutional]\nfilters=6\nsize=1\ngroups=2\nactivation=logistic\n"
           "[avgpool]\n[dropout]\nprobability=0.3\n"
           "[connected]\noutput=5\nactivation=tanh\n[softmax]\ntemperature=2\n[cost]\ntype=sse\n");
  put_text("cfg", "keys.cfg",
           "# ours: [train], size_x/size_y, stride_x/stride_y, dilation, padding=same\n"
           "[network]\nheight=9\nwidth=7\nchannels=2\nbatch=3\n"
           "[train]\noptimizer=adamw\nschedule=onecycle\nepochs=2\nlabel_smoothing=0.1\n"
           "[convolutional]\nfilters=3\nsize_x=3\nsize_y=1\nstride_x=2\nstride_y=1\n"
           "padding=same\nbias=0\nactivation=leaky\nslope=0.2\n"
           "[convolutional]\nfilters=3\nsize=3\ndilation=2\npadding=2\nactivation=linear\n"
           "[batchnorm]\n[activation]\nactivation=sigmoid\n"
           "[maxpool]\nsize=3\nstride=2\npadding=1\n"
           "[avgpool]\nsize=2\nstride=1\npadding=1\n"
           "[maxpool]\nglobal=1\n[flatten]\n"
           "[connected]\noutput=4\nbatch_normalize=1\nbias=1\nactivation=relu\n"
           "[connected]\noutput=2\n[softmax]\ngroups=1\n");
  put_text("cfg", "errors.cfg",
           "; malformed on purpose: the reader must name the line\n"
           "[net]\nheight=8\nwidth=\nchannels=x\n[convolutional\nfilters=-1\n"
           "[shortcut]\nfrom=-9\n[route]\nlayers=5,-1\n");
}

/* ---- checkpoint: real checkpoints of the target's fixed net -------------------- */

static void checkpoint_seeds(void) {
  cnn_backend *ref;
  cnn_net *net;
  char path[1024];
  if (cnn_backend_create("ref", &ref) != CNN_OK ||
      cnn_net_from_cfg_text(cnn_fuzz_checkpoint_cfg(), "ckpt.cfg", &net) != CNN_OK) {
    fprintf(stderr, "%s\n", cnn_last_error());
    exit(1);
  }
  /* unbuilt: parameters only; built for training: with optimizer state */
  path_of("checkpoint", "params.safetensors", path, sizeof path);
  if (cnn_net_save(net, path, "{\"epoch\": \"3\"}") != CNN_OK ||
      cnn_net_build(net, ref, 2, CNN_MODE_TRAIN) != CNN_OK) {
    fprintf(stderr, "%s\n", cnn_last_error());
    exit(1);
  }
  path_of("checkpoint", "train.safetensors", path, sizeof path);
  if (cnn_net_save(net, path, NULL) != CNN_OK) {
    fprintf(stderr, "%s\n", cnn_last_error());
    exit(1);
  }
  cnn_net_destroy(net);
  cnn_backend_destroy(ref);
  /* hand-made: every dtype, a metadata block, an empty tensor */
  static const char hdr[] =
      "{\"__metadata__\":{\"format\":\"cnn-1\",\"step\":\"7\"},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[8,12]},"
      "\"c\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[12,20]},"
      "\"d\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[20,20]},"
      "\"e\":{\"dtype\":\"BOOL\",\"shape\":[],\"data_offsets\":[20,21]}}";
  uint8_t buf[512];
  uint64_t hl = sizeof hdr - 1;
  for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(hl >> 8 * i);
  memcpy(buf + 8, hdr, hl);
  for (int i = 0; i < 21; i++) buf[8 + hl + i] = (uint8_t)(i * 11);
  put("checkpoint", "dtypes.safetensors", buf, 8 + hl + 21);
}

/* ---- IDX: [u16 LE label length][labels][images] -------------------------------- */

static size_t idx_images(uint8_t *p, int n, int h, int w) {
  const uint32_t v[4] = {0x803, (uint32_t)n, (uint32_t)h, (uint32_t)w};
  for (int k = 0; k < 4; k++)
    for (int b = 0; b < 4; b++) p[4 * k + b] = (uint8_t)(v[k] >> (24 - 8 * b));
  for (int i = 0; i < n * h * w; i++) p[16 + i] = (uint8_t)(i * 7);
  return 16 + (size_t)n * h * w;
}

static size_t idx_labels(uint8_t *p, int n) {
  const uint32_t v[2] = {0x801, (uint32_t)n};
  for (int k = 0; k < 2; k++)
    for (int b = 0; b < 4; b++) p[4 * k + b] = (uint8_t)(v[k] >> (24 - 8 * b));
  for (int i = 0; i < n; i++) p[8 + i] = (uint8_t)(i % 10);
  return 8 + (size_t)n;
}

static size_t gzip_bytes(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
  z_stream z = {0};
  deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY); /* gzip wrapper */
  z.next_in = (uint8_t *)in;
  z.avail_in = (unsigned)n;
  z.next_out = out;
  z.avail_out = (unsigned)cap;
  deflate(&z, Z_FINISH);
  size_t len = z.total_out;
  deflateEnd(&z);
  return len;
}

static void idx_pair(const char *name, const uint8_t *lab, size_t nl, const uint8_t *img,
                     size_t ni) {
  uint8_t *buf = malloc(2 + nl + ni);
  buf[0] = (uint8_t)nl;
  buf[1] = (uint8_t)(nl >> 8);
  memcpy(buf + 2, lab, nl);
  memcpy(buf + 2 + nl, img, ni);
  put("idx", name, buf, 2 + nl + ni);
  free(buf);
}

static void idx_seeds(void) {
  uint8_t img[4096], lab[256], gimg[4096], glab[256];
  size_t ni = idx_images(img, 3, 4, 5), nl = idx_labels(lab, 3);
  idx_pair("plain", lab, nl, img, ni);
  size_t gi = gzip_bytes(img, ni, gimg, sizeof gimg), gl = gzip_bytes(lab, nl, glab, sizeof glab);
  idx_pair("gzip", glab, gl, gimg, gi);
  idx_pair("gzip-labels", glab, gl, img, ni);
  ni = idx_images(img, 12, 2, 2);
  nl = idx_labels(lab, 12);
  idx_pair("twelve", lab, nl, img, ni);
  idx_pair("truncated", lab, nl, img, ni - 3);
  idx_pair("swapped", img, ni, lab, nl);
}

/* ---- CIFAR: [flags][u16 LE names length][names][batch] ------------------------- */

static void cifar_seed(const char *name, int flags, const char *names, int records) {
  int c100 = flags & 1;
  size_t rec = c100 ? 3074 : 3073, nn = names ? strlen(names) : 0;
  size_t n = 3 + nn + rec * (size_t)records;
  uint8_t *p = calloc(1, n);
  p[0] = (uint8_t)(flags | (names ? 2 : 0));
  p[1] = (uint8_t)nn;
  p[2] = (uint8_t)(nn >> 8);
  if (nn) memcpy(p + 3, names, nn);
  uint8_t *b = p + 3 + nn;
  for (int r = 0; r < records; r++) {
    uint8_t *q = b + r * rec;
    if (c100) {
      q[0] = (uint8_t)(r % 20);
      q[1] = (uint8_t)(r * 37 % 100);
    } else {
      q[0] = (uint8_t)(r % 10);
    }
    for (size_t i = c100 ? 2 : 1; i < rec; i++) q[i] = (uint8_t)(i * 13 + r);
  }
  put("cifar", name, p, n);
  free(p);
}

static void cifar_seeds(void) {
  char names100[1200] = "";
  for (int k = 0; k < 100; k++) {
    char line[16];
    snprintf(line, sizeof line, "c%d\n", k);
    strcat(names100, line);
  }
  cifar_seed("c10-test-2", 0, NULL, 2);
  cifar_seed("c10-train-names", 4,
             "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n", 1);
  cifar_seed("c10-few-names", 0, "a\n\nb \n", 1);
  cifar_seed("c100-train", 5, NULL, 2);
  cifar_seed("c100-test-names", 1, names100, 1);
}

/* ---- images: PNGs of each channel count; sample files are copied ------------------ */

static void image_seeds(void) {
  uint8_t img[6 * 5 * 4];
  for (int i = 0; i < 6 * 5 * 4; i++) img[i] = (uint8_t)(i * 29);
  char path[1024];
  for (int c = 1; c <= 4; c++) {
    char name[32];
    snprintf(name, sizeof name, "gen-%dch.png", c);
    path_of("image", name, path, sizeof path);
    if (cnn_image_write_png(path, 6, 5, c, img) != CNN_OK) {
      fprintf(stderr, "%s\n", cnn_last_error());
      exit(1);
    }
  }
}

/* ---- Darknet weights for the darknet target's cfg ------------------------------ */

static void darknet_seeds(void) {
  cnn_net *net;
  if (cnn_net_from_cfg_text(cnn_fuzz_darknet_cfg(), "darknet.cfg", &net) != CNN_OK) {
    fprintf(stderr, "%s\n", cnn_last_error());
    exit(1);
  }
  for (int i = 0; i < cnn_net_num_tensors(net); i++) { /* small exact values, variances > 0 */
    cnn_param_desc d;
    float v[64];
    if (cnn_net_tensor_desc(net, i, &d) != CNN_OK || d.count > 64) exit(1);
    int var = strstr(d.name, "running_var") != NULL;
    int beta = !strcmp(d.name, "bn1.bias"); /* a [batchnorm]'s beta: Darknet has none */
    for (size_t j = 0; j < d.count; j++)
      v[j] = beta ? 0 : var ? 0.5f + (float)(j % 3) : (float)((int)(j * 7 % 11) - 5) / 4;
    if (cnn_net_tensor_set(net, i, v) != CNN_OK) exit(1);
  }
  uint8_t *b, v01[1024];
  size_t n;
  if (cnn_darknet_encode(net, 1234, &b, &n) != CNN_OK || n > sizeof v01) {
    fprintf(stderr, "%s\n", cnn_last_error());
    exit(1);
  }
  put("darknet", "v0.2.weights", b, n);
  put("darknet", "truncated.weights", b, n / 2);
  /* 0.1.0: a 4-byte counter; 1001.0.0: also, and connected weights [in][out] */
  memcpy(v01, b, 16);
  memcpy(v01 + 16, b + 20, n - 20);
  v01[4] = 1;
  put("darknet", "v0.1.weights", v01, n - 4);
  v01[0] = 0xe9, v01[1] = 0x03, v01[4] = 0; /* 1001 */
  put("darknet", "v1001-transposed.weights", v01, n - 4);
  free(b);
  cnn_net_destroy(net);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR (tests/fuzz/corpus)\n", argv[0]);
    return 2;
  }
  root = argv[1];
  mkdir(root, 0755);
  cfg_seeds();
  checkpoint_seeds();
  idx_seeds();
  cifar_seeds();
  image_seeds();
  darknet_seeds();
  printf("seeds written under %s\n", root);
  return 0;
}
