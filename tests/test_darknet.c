/* Darknet's .weights format (src/exchange/darknet_weights.c):
 *  - a hand-made file for a net with conv + batch norm, a grouped conv without
 *    batch norm, a standalone [batchnorm], a [connected] after a 3x4x4 input and a
 *    [connected] with batch norm loads to the expected tensors, element by element
 *    (KRSC from Darknet's [n][c][size][size], HWC columns from its CHW ones), and
 *    the net's forward equals Darknet's forward written out here from Darknet's
 *    definitions (CHW, its batch norm's sqrt(var) + 1e-6) on the file's arrays;
 *  - the other header versions (0.1.0 with a 4-byte counter; above 1000, connected
 *    weights transposed), flipped=1 and a [connected] after a [flatten];
 *  - export then import is bit-exact, and export of the hand-made file's tensors
 *    gives back its bytes;
 *  - a file short by one float, cut inside a layer, with 4 bytes too many, empty,
 *    with a bad header, holding a NaN or a negative variance: refused with the
 *    layer and the byte counts named, and the net unchanged;
 *  - cfgs Darknet cannot express are refused naming the layer. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnn/cnn.h"
#include "exchange/darknet_weights.h"
#include "testutil.h"

static const char *net_cfg =
    "[net]\nheight=4\nwidth=5\nchannels=2\nbatch=2\n"
    "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
    "[convolutional]\nfilters=4\nsize=2\nstride=1\npad=0\ngroups=2\nactivation=linear\n"
    "[batchnorm]\n"
    "[connected]\noutput=3\nactivation=leaky\n"
    "[connected]\nbatch_normalize=1\noutput=4\nactivation=linear\n"
    "[softmax]\n";

/* where each of Darknet's arrays starts, in floats after the header */
enum {
  S0_B = 0, S0_S = 4, S0_M = 8, S0_V = 12, S0_W = 16,  /* conv1: 4 filters 3x3 on 2 channels */
  S1_B = 88, S1_W = 92,                                 /* conv2: 4 filters 2x2, 2 groups of 2 */
  S2_S = 124, S2_M = 128, S2_V = 132,                   /* bn1 on 4 channels */
  S3_B = 136, S3_W = 139,                               /* fc1: 48 (3x4x4) -> 3 */
  S4_B = 283, S4_W = 287, S4_S = 299, S4_M = 303, S4_V = 307, /* fc2: 3 -> 4, batch norm */
  N_VALUES = 311
};

static int is_var(int i) {
  return (i >= S0_V && i < S0_V + 4) || (i >= S2_V && i < S2_V + 4) || (i >= S4_V && i < S4_V + 4);
}
/* every value distinct (313 is prime), variances positive */
static float val(int i) {
  return is_var(i) ? 0.25f + (float)(i % 13) / 16 : (float)((i * 37) % 313 - 156) / 128;
}

typedef struct buf {
  uint8_t b[4096];
  size_t n;
} buf;
static void put_u32(buf *f, uint32_t v) {
  for (int i = 0; i < 4; i++) f->b[f->n++] = (uint8_t)(v >> 8 * i);
}
static void put_f32(buf *f, float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  put_u32(f, u);
}
/* version header: 8-byte counter when `wide` */
static void header(buf *f, uint32_t major, uint32_t minor, uint64_t seen, int wide) {
  f->n = 0;
  put_u32(f, major);
  put_u32(f, minor);
  put_u32(f, 0);
  put_u32(f, (uint32_t)seen);
  if (wide) put_u32(f, (uint32_t)(seen >> 32));
}
/* the test net's file; transposed: fc weights as [in][out] */
static void hand_file(buf *f, uint32_t major, uint32_t minor, uint64_t seen, int wide,
                      int transposed) {
  header(f, major, minor, seen, wide);
  for (int i = 0; i < N_VALUES; i++) {
    int j = i;
    if (transposed && i >= S3_W && i < S3_W + 144) { /* file [in 48][out 3] */
      int in = (i - S3_W) / 3, o = (i - S3_W) % 3;
      j = S3_W + o * 48 + in;
    } else if (transposed && i >= S4_W && i < S4_W + 12) { /* [in 3][out 4] */
      int in = (i - S4_W) / 4, o = (i - S4_W) % 4;
      j = S4_W + o * 3 + in;
    }
    put_f32(f, val(j));
  }
}

static int find(const cnn_net *net, const char *name) {
  for (int i = 0; i < cnn_net_num_tensors(net); i++) {
    cnn_param_desc d;
    if (cnn_net_tensor_desc(net, i, &d) == CNN_OK && !strcmp(d.name, name)) return i;
  }
  CHECK(0, "no tensor %s", name);
  return -1;
}

/* the tensor as floats (static buffer, 4096 at most) */
static const float *get(const cnn_net *net, const char *name) {
  static float t[4096];
  int i = find(net, name);
  if (i < 0) return memset(t, 0, sizeof t);
  CHECK_OK(cnn_net_tensor_get(net, i, t));
  return t;
}

static void check_plain(const cnn_net *net, const char *name, int at, int n) {
  const float *t = get(net, name);
  int bad = 0;
  for (int i = 0; i < n; i++) bad += t[i] != val(at + i);
  CHECK(!bad, "%s: %d of %d values differ from the file's", name, bad, n);
}

static void check_zero(const cnn_net *net, const char *name, int n) {
  const float *t = get(net, name);
  int bad = 0;
  for (int i = 0; i < n; i++) bad += t[i] != 0;
  CHECK(!bad, "%s: %d of %d values are not 0", name, bad, n);
}

/* conv weight KRSC [k][r][s][c] from Darknet's [k][c][r][s] at `at` */
static void check_conv(const cnn_net *net, const char *name, int at, int k, int z, int c) {
  const float *t = get(net, name);
  int bad = 0;
  for (int q = 0; q < k; q++)
    for (int r = 0; r < z; r++)
      for (int s = 0; s < z; s++)
        for (int ch = 0; ch < c; ch++)
          bad += t[((q * z + r) * z + s) * c + ch] != val(at + ((q * c + ch) * z + r) * z + s);
  CHECK(!bad, "%s: %d values not where KRSC puts Darknet's [n][c][size][size]", name, bad);
}

/* dense weight [o][h][w][c] from Darknet's [o][c][h][w] at `at` */
static void check_dense(const cnn_net *net, const char *name, int at, int o, int h, int w, int c) {
  const float *t = get(net, name);
  int bad = 0, in = h * w * c;
  for (int q = 0; q < o; q++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        for (int ch = 0; ch < c; ch++)
          bad += t[q * in + (y * w + x) * c + ch] != val(at + q * in + (ch * h + y) * w + x);
  CHECK(!bad, "%s: %d values not where HWC puts Darknet's CHW columns", name, bad);
}

static void check_test_net(const cnn_net *net, const char *what) {
  printf("  %s\n", what);
  check_plain(net, "conv1.bn.bias", S0_B, 4);
  check_plain(net, "conv1.bn.weight", S0_S, 4);
  check_plain(net, "conv1.bn.running_mean", S0_M, 4);
  check_plain(net, "conv1.bn.running_var", S0_V, 4);
  check_conv(net, "conv1.weight", S0_W, 4, 3, 2);
  /* one element worked out by hand: k=1 r=2 s=0 c=1 is ours 31, Darknet's 33 */
  CHECK(get(net, "conv1.weight")[31] == val(S0_W + 33), "conv1.weight[1][2][0][1]");
  check_plain(net, "conv2.bias", S1_B, 4);
  check_conv(net, "conv2.weight", S1_W, 4, 2, 2);
  check_plain(net, "bn1.weight", S2_S, 4);
  check_plain(net, "bn1.running_mean", S2_M, 4);
  check_plain(net, "bn1.running_var", S2_V, 4);
  check_zero(net, "bn1.bias", 4);
  check_plain(net, "fc1.bias", S3_B, 3);
  check_dense(net, "fc1.weight", S3_W, 3, 3, 4, 4);
  /* by hand: o=2 y=1 x=3 c=2 is ours 96 + 30, Darknet's 96 + (2*3 + 1)*4 + 3 */
  CHECK(get(net, "fc1.weight")[126] == val(S3_W + 127), "fc1.weight[2][1][3][2]");
  check_plain(net, "fc2.weight", S4_W, 12);
  check_plain(net, "fc2.bn.bias", S4_B, 4);
  check_plain(net, "fc2.bn.weight", S4_S, 4);
  check_plain(net, "fc2.bn.running_mean", S4_M, 4);
  check_plain(net, "fc2.bn.running_var", S4_V, 4);
}

static cnn_net *new_net(const char *cfg) {
  cnn_net *net = NULL;
  CHECK_OK(cnn_net_from_cfg_text(cfg, "test.cfg", &net));
  return net;
}

static void test_layout(void) {
  cnn_net *net = new_net(net_cfg);
  if (!net) return;
  size_t bytes = 0;
  CHECK_OK(cnn_darknet_payload_bytes(net, &bytes));
  CHECK(bytes == 4 * N_VALUES, "the cfg needs %zu bytes after the header, expected %d", bytes,
        4 * N_VALUES);
  CHECK_OK(cnn_net_tensor_set(net, find(net, "bn1.bias"), (float[]){7, 7, 7, 7}));
  buf f;
  hand_file(&f, 0, 2, 0x100000002ull, 1, 0);
  cnn_darknet_info info;
  CHECK_OK(cnn_darknet_read(net, f.b, f.n, "hand.weights", &info));
  CHECK(info.major == 0 && info.minor == 2 && info.revision == 0 && info.seen == 0x100000002ull &&
            info.header_bytes == 20 && info.values == N_VALUES && !info.transposed,
        "header read as %d.%d.%d seen %llu (%zu bytes), %zu values", info.major, info.minor,
        info.revision, (unsigned long long)info.seen, info.header_bytes, info.values);
  check_test_net(net, "version 0.2.0 (8-byte counter)");

  cnn_net *v1 = new_net(net_cfg);
  hand_file(&f, 0, 1, 12345, 0, 0);
  CHECK_OK(cnn_darknet_read(v1, f.b, f.n, "v01.weights", &info));
  CHECK(info.header_bytes == 16 && info.seen == 12345, "0.1.0: %zu-byte header, seen %llu",
        info.header_bytes, (unsigned long long)info.seen);
  check_test_net(v1, "version 0.1.0 (4-byte counter)");
  cnn_net_destroy(v1);

  cnn_net *tr = new_net(net_cfg);
  hand_file(&f, 1001, 0, 9, 0, 1);
  CHECK_OK(cnn_darknet_read(tr, f.b, f.n, "transposed.weights", &info));
  CHECK(info.transposed && info.header_bytes == 16, "1001.0.0: transposed, 16-byte header");
  check_test_net(tr, "version 1001.0.0 (connected weights [in][out])");
  cnn_net_destroy(tr);
  cnn_net_destroy(net);
}

/* ---- Darknet's forward, from its definitions, on the file's arrays (CHW) ---- */

static void dn_conv(const float *in, int c, int h, int w, const float *wt, const float *bias,
                    int n, int z, int pad, int groups, float *out, int oh, int ow) {
  int cg = c / groups, ng = n / groups;
  for (int k = 0; k < n; k++)
    for (int y = 0; y < oh; y++)
      for (int x = 0; x < ow; x++) {
        double s = bias ? bias[k] : 0;
        for (int ch = 0; ch < cg; ch++)
          for (int r = 0; r < z; r++)
            for (int q = 0; q < z; q++) {
              int iy = y + r - pad, ix = x + q - pad, ic = (k / ng) * cg + ch;
              if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                s += (double)wt[((k * cg + ch) * z + r) * z + q] * in[(ic * h + iy) * w + ix];
            }
        out[(k * oh + y) * ow + x] = (float)s;
      }
}
/* normalize_cpu, scale_bias, add_bias (bias NULL: a [batchnorm] layer's zeros) */
static void dn_bn(float *x, int c, int hw, const float *scale, const float *mean, const float *var,
                  const float *bias) {
  for (int k = 0; k < c; k++)
    for (int i = 0; i < hw; i++) {
      float v = (float)((x[k * hw + i] - mean[k]) / (sqrt(var[k]) + .000001f));
      x[k * hw + i] = v * scale[k] + (bias ? bias[k] : 0);
    }
}
static void dn_leaky(float *x, int n) {
  for (int i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : 0.1f * x[i];
}
static void dn_dense(const float *in, int ni, const float *wt, const float *bias, int no, float *out) {
  for (int o = 0; o < no; o++) {
    double s = bias ? bias[o] : 0;
    for (int i = 0; i < ni; i++) s += (double)wt[o * ni + i] * in[i];
    out[o] = (float)s;
  }
}

static void darknet_forward(const float *v, const float *x_hwc, float *probs) {
  float x[40], a[80], b[48], c[3], d[4];
  for (int y = 0; y < 4; y++)
    for (int q = 0; q < 5; q++)
      for (int ch = 0; ch < 2; ch++) x[(ch * 4 + y) * 5 + q] = x_hwc[(y * 5 + q) * 2 + ch];
  dn_conv(x, 2, 4, 5, v + S0_W, NULL, 4, 3, 1, 1, a, 4, 5);
  dn_bn(a, 4, 20, v + S0_S, v + S0_M, v + S0_V, v + S0_B);
  dn_leaky(a, 80);
  dn_conv(a, 4, 4, 5, v + S1_W, v + S1_B, 4, 2, 0, 2, b, 3, 4);
  dn_bn(b, 4, 12, v + S2_S, v + S2_M, v + S2_V, NULL);
  dn_dense(b, 48, v + S3_W, v + S3_B, 3, c);
  dn_leaky(c, 3);
  dn_dense(c, 3, v + S4_W, NULL, 4, d);
  dn_bn(d, 4, 1, v + S4_S, v + S4_M, v + S4_V, v + S4_B);
  double m = d[0], sum = 0;
  for (int k = 1; k < 4; k++) m = d[k] > m ? d[k] : m;
  for (int k = 0; k < 4; k++) sum += exp(d[k] - m);
  for (int k = 0; k < 4; k++) probs[k] = (float)(exp(d[k] - m) / sum);
}

static void test_forward(const char *backend) {
  char *cfg = NULL;
  CHECK_OK(cnn_darknet_cfg_text(net_cfg, "test.cfg", &cfg));
  cnn_net *net = cfg ? new_net(cfg) : NULL;
  free(cfg);
  cnn_backend *b = NULL;
  CHECK_OK(cnn_backend_create(backend, &b));
  if (!net || !b) return;
  cnn_train_config tc;
  CHECK_OK(cnn_net_train_config(net, &tc));
  CHECK(tc.bn_eps == CNN_DARKNET_BN_EPS, "the imported cfg sets bn_eps %g", (double)tc.bn_eps);
  buf f;
  hand_file(&f, 0, 2, 0, 1, 0);
  CHECK_OK(cnn_net_build(net, b, 2, CNN_MODE_INFER));
  CHECK_OK(cnn_darknet_read(net, f.b, f.n, "hand.weights", NULL)); /* into the built net */
  float x[2 * 40], got[8], want[8], v[N_VALUES];
  tu_fill_uniform(x, 80, -1, 1, 42);
  for (int i = 0; i < N_VALUES; i++) v[i] = val(i);
  CHECK_OK(cnn_net_predict(net, x, NULL, 2, got, NULL));
  darknet_forward(v, x, want);
  darknet_forward(v, x + 40, want + 4);
  float lo = 1, hi = 0;
  for (int i = 0; i < 8; i++) lo = want[i] < lo ? want[i] : lo, hi = want[i] > hi ? want[i] : hi;
  CHECK(lo > 1e-3f && hi < 0.99f, "the reference's probabilities are not saturated (%g..%g), so "
        "they show layout errors", (double)lo, (double)hi);
  printf("  forward on %s: probabilities %.5f %.5f %.5f %.5f (Darknet's %.5f %.5f %.5f %.5f)\n",
         backend, got[0], got[1], got[2], got[3], want[0], want[1], want[2], want[3]);
  tu_check_close("cnn's forward vs Darknet's", got, want, 8, 1e-5);
  cnn_net_destroy(net);
  cnn_backend_destroy(b);
}

/* flipped=1 (file [c*size*size][n]) and a [connected] after a [flatten] */
static void test_flipped_flatten(void) {
  const char *cfg = "[net]\nheight=2\nwidth=3\nchannels=2\n"
                    "[convolutional]\nfilters=3\nsize=3\npad=1\nflipped=1\nactivation=linear\n"
                    "[flatten]\n[connected]\noutput=2\nactivation=linear\n";
  cnn_net *net = new_net(cfg);
  if (!net) return;
  /* conv: biases 3, weights 3 x 18; fc: biases 2, weights 2 x 18 (2x3x3 CHW) */
  buf f;
  header(&f, 0, 2, 0, 1);
  for (int i = 0; i < 3 + 54 + 2 + 36; i++) put_f32(&f, val(i));
  CHECK_OK(cnn_darknet_read(net, f.b, f.n, "flipped.weights", NULL));
  const float *w = get(net, "conv1.weight");
  int bad = 0;
  for (int k = 0; k < 3; k++)
    for (int r = 0; r < 3; r++)
      for (int s = 0; s < 3; s++)
        for (int c = 0; c < 2; c++)
          bad += w[((k * 3 + r) * 3 + s) * 2 + c] != val(3 + ((c * 3 + r) * 3 + s) * 3 + k);
  CHECK(!bad, "flipped=1: %d conv weights not read as [c*size*size][n]", bad);
  check_dense(net, "fc1.weight", 59, 2, 2, 3, 3); /* the flatten's input shape decides */
  uint8_t *out = NULL;
  size_t n = 0;
  CHECK_OK(cnn_darknet_encode(net, 0, &out, &n));
  CHECK(out && n == f.n && !memcmp(out, f.b, n), "flipped=1 and [flatten]: written back as read");
  free(out);
  cnn_net_destroy(net);
}

static void snapshot(const cnn_net *net, float *dst) {
  for (int i = 0; i < cnn_net_num_tensors(net); i++) {
    cnn_param_desc d;
    CHECK_OK(cnn_net_tensor_desc(net, i, &d));
    CHECK_OK(cnn_net_tensor_get(net, i, dst));
    dst += d.count;
  }
}

static void test_roundtrip(void) {
  cnn_net *a = new_net(net_cfg), *b = new_net(net_cfg);
  if (!a || !b) return;
  /* the hand-made file's tensors are written back byte for byte */
  buf f;
  hand_file(&f, 0, 2, 77, 1, 0);
  CHECK_OK(cnn_darknet_read(a, f.b, f.n, "hand.weights", NULL));
  uint8_t *out = NULL;
  size_t n = 0;
  CHECK_OK(cnn_darknet_encode(a, 77, &out, &n));
  CHECK(out && n == f.n && !memcmp(out, f.b, n), "export of the hand-made file's tensors is the file");
  free(out);
  /* random tensors (variances positive, the [batchnorm]'s beta zero) both ways */
  for (int i = 0; i < cnn_net_num_tensors(a); i++) {
    cnn_param_desc d;
    CHECK_OK(cnn_net_tensor_desc(a, i, &d));
    float t[512];
    int var = strstr(d.name, "running_var") != NULL;
    tu_fill_uniform(t, d.count, var ? 0.01f : -3, 3, 100 + (uint64_t)i);
    if (!strcmp(d.name, "bn1.bias")) memset(t, 0, sizeof t);
    CHECK_OK(cnn_net_tensor_set(a, i, t));
  }
  char dir[] = "/tmp/cnn_darknet_XXXXXX", path[64];
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  snprintf(path, sizeof path, "%s/rt.weights", dir);
  CHECK_OK(cnn_darknet_save(a, path, 5));
  cnn_darknet_info info;
  CHECK_OK(cnn_darknet_load(b, path, &info));
  CHECK(info.seen == 5 && info.major == 0 && info.minor == 2, "saved as 0.2.0, seen 5");
  CHECK(rmdir(dir) != 0, "the folder holds the file");
  unlink(path);
  CHECK(rmdir(dir) == 0, "and nothing else: no temp file left");
  static float sa[4096], sb[4096];
  snapshot(a, sa);
  snapshot(b, sb);
  CHECK(!memcmp(sa, sb, sizeof sa), "export then import is bit-exact");
  cnn_net_destroy(a);
  cnn_net_destroy(b);
}

/* the file refused with `want`, the message holding every word, the net unchanged;
 * the same bytes through a file give the same message */
static void expect_refused(cnn_net *net, const char *what, const uint8_t *d, size_t n,
                           cnn_status want, const char *const *words) {
  static float before[4096], after[4096];
  snapshot(net, before);
  cnn_status st = cnn_darknet_read(net, d, n, "bad.weights", NULL);
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", cnn_last_error());
  printf("  %s -> %s\n", what, msg);
  CHECK(st == want, "%s: status %s, expected %s", what, cnn_status_name(st), cnn_status_name(want));
  for (int i = 0; words[i]; i++)
    CHECK(strstr(msg, words[i]) != NULL, "%s: the message names '%s': %s", what, words[i], msg);
  snapshot(net, after);
  CHECK(!memcmp(before, after, sizeof before), "%s: the net is unchanged", what);
  char path[] = "/tmp/cnn_darknet_bad_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0 && (n == 0 || write(fd, d, n) == (ssize_t)n), "temp file");
  if (fd >= 0) close(fd);
  CHECK(cnn_darknet_load(net, path, NULL) == want, "%s: the file gives the same status", what);
  CHECK(strstr(cnn_last_error(), words[0]) != NULL, "%s from a file: %s", what, cnn_last_error());
  unlink(path);
}

static void test_bad_files(void) {
  cnn_net *net = new_net(net_cfg);
  if (!net) return;
  buf f;
  hand_file(&f, 0, 2, 0, 1, 0);
  size_t full = f.n;
  CHECK(full == 20 + 4 * N_VALUES, "file size %zu", full);
  /* one float short: the last array, fc2's rolling_variance, runs out */
  expect_refused(net, "short by one float", f.b, full - 4, CNN_ERR_SHAPE,
                 (const char *const[]){"layer 4 [connected] (fc2)", "needs 16 bytes for its rolling_variance at offset 1248, 12 remain",
                                       "4 bytes short", NULL});
  /* cut 10 floats into conv2's weights */
  expect_refused(net, "cut inside conv2's weights", f.b, 20 + 4 * (S1_W + 10), CNN_ERR_SHAPE,
                 (const char *const[]){"layer 1 [convolutional] (conv2)", "needs 128 bytes for its weights at offset 388, 40 remain", NULL});
  /* ends exactly before the standalone batch norm */
  expect_refused(net, "ends before [batchnorm]", f.b, 20 + 4 * S2_S, CNN_ERR_SHAPE,
                 (const char *const[]){"layer 2 [batchnorm] (bn1)", "needs 16 bytes for its scales at offset 516, 0 remain", NULL});
  put_u32(&f, 0);
  expect_refused(net, "4 bytes too many", f.b, f.n, CNN_ERR_SHAPE,
                 (const char *const[]){"4 bytes left over", "1264 bytes", NULL});
  expect_refused(net, "empty", f.b, 0, CNN_ERR_PARSE, (const char *const[]){"empty", NULL});
  expect_refused(net, "10 bytes", f.b, 10, CNN_ERR_PARSE,
                 (const char *const[]){"bad header", "10 bytes", NULL});
  buf h;
  hand_file(&h, 0xffffffffu, 2, 0, 0, 0);
  expect_refused(net, "version -1.2.0", h.b, h.n, CNN_ERR_PARSE,
                 (const char *const[]){"bad header", "-1.2.0", NULL});
  hand_file(&h, 0, 2, 0, 0, 0); /* a 16-byte header where 0.2 has 20: 4 bytes missing */
  expect_refused(net, "0.2.0 with a 4-byte counter", h.b, h.n, CNN_ERR_SHAPE,
                 (const char *const[]){"layer 4 [connected] (fc2)", "4 bytes short", NULL});
  static const char st_file[] = "\x10\0\0\0\0\0\0\0{\"a\":{}}       ";
  expect_refused(net, "a safetensors file", (const uint8_t *)st_file, sizeof st_file - 1,
                 CNN_ERR_PARSE, (const char *const[]){"safetensors", NULL});
  hand_file(&f, 0, 2, 0, 1, 0);
  float nan = NAN;
  memcpy(f.b + 20 + 4 * (S0_S + 1), &nan, 4);
  expect_refused(net, "NaN", f.b, f.n, CNN_ERR_NUMERIC,
                 (const char *const[]){"layer 0 [convolutional] (conv1)", "scales[1] is NaN",
                                       "byte offset 40", NULL});
  hand_file(&f, 0, 2, 0, 1, 0);
  float neg = -0.5f;
  memcpy(f.b + 20 + 4 * (S2_V + 2), &neg, 4);
  expect_refused(net, "negative variance", f.b, f.n, CNN_ERR_NUMERIC,
                 (const char *const[]){"layer 2 [batchnorm] (bn1)", "rolling_variance[2] is -0.5",
                                       NULL});
  CHECK(cnn_darknet_load(net, "/nonexistent/x.weights", NULL) == CNN_ERR_IO &&
            strstr(cnn_last_error(), "/nonexistent/x.weights"),
        "a missing file: %s", cnn_last_error());
  cnn_net_destroy(net);
}

/* cfgs Darknet's weights cannot hold, and values it cannot: refused naming the layer */
static void expect_cfg_refused(const char *what, const char *cfg, const char *word) {
  cnn_net *net = new_net(cfg);
  if (!net) return;
  size_t bytes;
  cnn_status st = cnn_darknet_payload_bytes(net, &bytes);
  printf("  %s -> %s\n", what, cnn_last_error());
  CHECK(st == CNN_ERR_SHAPE && strstr(cnn_last_error(), word) &&
            strstr(cnn_last_error(), "test.cfg: layer 1 ["),
        "%s: refused naming the layer: %s", what, cnn_last_error());
  uint8_t *out = NULL;
  size_t n;
  CHECK(cnn_darknet_encode(net, 0, &out, &n) == CNN_ERR_SHAPE && !out && strstr(cnn_last_error(), word),
        "%s: export refused: %s", what, cnn_last_error());
  buf f;
  header(&f, 0, 2, 0, 1);
  CHECK(cnn_darknet_read(net, f.b, f.n, "x.weights", NULL) == CNN_ERR_SHAPE &&
            strstr(cnn_last_error(), word),
        "%s: import refused: %s", what, cnn_last_error());
  cnn_net_destroy(net);
}

static void test_refused_cfgs(void) {
  const char *head = "[net]\nheight=4\nwidth=4\nchannels=2\n[maxpool]\nsize=1\n";
  char cfg[512];
  snprintf(cfg, sizeof cfg, "%s[convolutional]\nfilters=2\nsize=3\nbias=0\nactivation=linear\n", head);
  expect_cfg_refused("conv bias=0 without batch norm", cfg, "bias=0 without batch_normalize");
  snprintf(cfg, sizeof cfg, "%s[convolutional]\nbatch_normalize=1\nbias=1\nfilters=2\nsize=3\n", head);
  expect_cfg_refused("conv bias=1 with batch norm", cfg, "bias=1 with batch_normalize=1");
  snprintf(cfg, sizeof cfg, "%s[convolutional]\nfilters=2\nsize_x=3\nsize_y=1\n", head);
  expect_cfg_refused("a 1x3 kernel", cfg, "a 1x3 kernel");
  snprintf(cfg, sizeof cfg, "%s[convolutional]\nfilters=2\nsize=3\ngroups=2\nflipped=1\n", head);
  expect_cfg_refused("flipped=1 with groups", cfg, "flipped=1 with groups=2");
  snprintf(cfg, sizeof cfg, "%s[connected]\noutput=2\nbias=0\n", head);
  expect_cfg_refused("connected bias=0", cfg, "bias=0 without batch_normalize");

  /* a standalone batch norm's beta, NaN and negative variances cannot be written */
  cnn_net *net = new_net(net_cfg);
  if (!net) return;
  uint8_t *out = NULL;
  size_t n;
  CHECK_OK(cnn_net_tensor_set(net, find(net, "bn1.bias"), (float[]){0, 0.5f, 0, 0}));
  CHECK(cnn_darknet_encode(net, 0, &out, &n) == CNN_ERR_SHAPE && !out &&
            strstr(cnn_last_error(), "layer 2 [batchnorm] (bn1): its beta (bn1.bias) is not zero"),
        "a [batchnorm] beta: %s", cnn_last_error());
  printf("  [batchnorm] with a beta -> %s\n", cnn_last_error());
  CHECK_OK(cnn_net_tensor_set(net, find(net, "bn1.bias"), (float[]){0, 0, 0, 0}));
  CHECK_OK(cnn_net_tensor_set(net, find(net, "fc1.bias"), (float[]){0, NAN, 0}));
  CHECK(cnn_darknet_encode(net, 0, &out, &n) == CNN_ERR_NUMERIC &&
            strstr(cnn_last_error(), "layer 3 [connected] (fc1): fc1.bias holds nan at element 1"),
        "a NaN: %s", cnn_last_error());
  cnn_net_destroy(net);
}

static void test_cfg_text(void) {
  char *out = NULL;
  CHECK_OK(cnn_darknet_cfg_text(net_cfg, "t.cfg", &out));
  CHECK(out && !strncmp(out, net_cfg, strlen(net_cfg)) && strstr(out, "[train]\nbn_eps=1e-12\n"),
        "bn_eps appended: %s", out ? out + strlen(net_cfg) : "");
  free(out);
  char cfg[1024];
  snprintf(cfg, sizeof cfg, "%s[train]\nbn_eps=0.001\n", net_cfg);
  CHECK_OK(cnn_darknet_cfg_text(cfg, "t.cfg", &out));
  CHECK(out && !strcmp(out, cfg), "a cfg that sets bn_eps is kept as it is");
  free(out);
}

int main(void) {
  test_layout();
  test_forward("ref");
  test_forward("cpu");
  test_flipped_flatten();
  test_roundtrip();
  test_bad_files();
  test_refused_cfgs();
  test_cfg_text();
  return tu_finish("test_darknet");
}
