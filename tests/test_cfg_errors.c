/* Bad cfg input never crashes and names the place: every case is cfg text given
 * to cnn_net_from_cfg_text as "bad.cfg" (or a temp file given to
 * cnn_net_from_cfg_file); the call must fail, leave *out NULL, and
 * cnn_last_error() must contain "bad.cfg:<line>:" for the line at fault (where a
 * line applies) and a word that tells what is wrong. Then the positive cases:
 * Darknet's cifar.cfg and resnet18.cfg (tests/data/darknet, unchanged) and
 * models/lenet.cfg load with the expected parameter counts, and comments, blank
 * lines and CRLF line ends are accepted. */
#define _XOPEN_SOURCE 700 /* mkdtemp */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnn/cnn.h"
#include "core/rng.h"
#include "testutil.h"

/* lines 1-4; a case's own text starts on line 5 */
#define NET28 "[net]\nheight=28\nwidth=28\nchannels=1\n"

typedef struct bad_case {
  const char *name;
  const char *text;
  int line;          /* the line the message must name; 0: none applies */
  const char *word;  /* must appear in the message ('|' separates alternatives) */
  cnn_status want;   /* the status, or CNN_OK for "any failure" */
} bad_case;

static const bad_case cases[] = {
    /* keys and numbers */
    {"unknown key in a layer", NET28 "[convolutional]\nfilters=4\nsize=3\nsizee=3\n", 8,
     "unknown key", CNN_ERR_PARSE},
    {"unknown key in [net]", NET28 "momentun=0.9\n[softmax]\n", 5, "unknown key", CNN_ERR_PARSE},
    {"misspelt required key", "[net]\nheight=28\nwidht=28\nchannels=1\n[softmax]\n", 3, "widht",
     CNN_ERR_PARSE},
    {"unknown key in [train]", NET28 "[train]\nlearnin_rate=0.1\n[softmax]\n", 6, "unknown key",
     CNN_ERR_PARSE},
    {"filters=abc", NET28 "[convolutional]\nfilters=abc\nsize=3\n", 6, "not an integer",
     CNN_ERR_PARSE},
    {"size=3x", NET28 "[convolutional]\nfilters=4\nsize=3x\n", 7, "not an integer", CNN_ERR_PARSE},
    {"filters= (empty)", NET28 "[convolutional]\nfilters=\nsize=3\n", 6, "not an integer",
     CNN_ERR_PARSE},
    {"learning_rate=fast", NET28 "learning_rate=fast\n[softmax]\n", 5, "number", CNN_ERR_PARSE},
    {"learning_rate=nan", NET28 "learning_rate=nan\n[softmax]\n", 5, "finite", CNN_ERR_PARSE},
    {"filters=99999999999999999999", NET28 "[convolutional]\nfilters=99999999999999999999\n", 6,
     "integer", CNN_ERR_PARSE},
    {"unknown activation", NET28 "[convolutional]\nfilters=4\nsize=3\nactivation=relux\n", 8,
     "activation", CNN_ERR_PARSE},
    {"unknown optimizer", NET28 "[train]\noptimizer=adagrad\n[softmax]\n", 6, "adam",
     CNN_ERR_PARSE},
    {"unknown schedule", NET28 "policy=sometimes\n[softmax]\n", 5, "schedule", CNN_ERR_PARSE},
    {"repeated key", "[net]\nheight=28\nwidth=28\nheight=28\nchannels=1\n[softmax]\n", 4,
     "repeated", CNN_ERR_PARSE},
    {"key without =", NET28 "[convolutional]\nfilters 4\n", 6, "key=value", CNN_ERR_PARSE},
    {"empty key", NET28 "[convolutional]\n=4\n", 6, "empty key", CNN_ERR_PARSE},

    /* sections */
    {"missing [net]", "[convolutional]\nfilters=4\nsize=3\n", 1, "[net]", CNN_ERR_PARSE},
    {"missing [net] after comments", "# a cfg\n\n; no net\n[convolutional]\nfilters=4\n", 4,
     "[net]", CNN_ERR_PARSE},
    {"empty text", "", 1, "[net]", CNN_ERR_PARSE},
    {"[net] without height", "[net]\nwidth=28\nchannels=1\n\n[softmax]\n", 1, "height",
     CNN_ERR_PARSE},
    {"[net] without channels", "[net]\nheight=28\nwidth=28\n\n[softmax]\n", 1, "channels",
     CNN_ERR_PARSE},
    {"no layers", NET28, 0, "no layers", CNN_ERR_PARSE},
    {"no layers, only [train]", NET28 "[train]\nseed=3\n", 0, "no layers", CNN_ERR_PARSE},
    {"second [net]", NET28 "[softmax]\n[net]\nheight=2\n", 6, "[net]", CNN_ERR_PARSE},
    {"unknown section", NET28 "[convolutionl]\nfilters=4\n", 5, "unknown section",
     CNN_ERR_PARSE},
    {"malformed header [conv", NET28 "[conv\nfilters=4\n", 5, "section header", CNN_ERR_PARSE},
    {"malformed header []", NET28 "[]\nfilters=4\n", 5, "section header", CNN_ERR_PARSE},
    {"key before any section", "height=28\n[net]\nwidth=28\nchannels=1\n[softmax]\n", 1,
     "before any", CNN_ERR_PARSE},
    {"shortcut without from", NET28 "[convolutional]\nfilters=1\n[shortcut]\nactivation=linear\n",
     7, "from", CNN_ERR_PARSE},
    {"route without layers", NET28 "[convolutional]\nfilters=1\n[route]\n", 7, "layers",
     CNN_ERR_PARSE},
    {"route layers=-1,x", NET28 "[convolutional]\nfilters=1\n[route]\nlayers=-1,x\n", 8,
     "comma-separated", CNN_ERR_PARSE},

    /* references */
    {"from=-9 on the 2nd layer", NET28 "[convolutional]\nfilters=4\nsize=3\n\n[shortcut]\nfrom=-9\n",
     10, "refers to layer", CNN_ERR_SHAPE},
    {"from=0 on the first layer", NET28 "[shortcut]\nfrom=0\n", 6, "refers to layer",
     CNN_ERR_SHAPE},
    {"from=1 (itself)", NET28 "[convolutional]\nfilters=1\n[shortcut]\nfrom=1\n", 8,
     "refers to layer", CNN_ERR_SHAPE},
    {"route layers=5 (forward)", NET28 "[convolutional]\nfilters=4\nsize=3\n[route]\nlayers=5\n",
     9, "refers to layer", CNN_ERR_SHAPE},
    {"route layers=-1,-7", NET28 "[convolutional]\nfilters=4\n[route]\nlayers=-1,-7\n", 8,
     "refers to layer", CNN_ERR_SHAPE},

    /* sizes out of range */
    {"filters=0", NET28 "[convolutional]\nfilters=0\nsize=3\n", 6, "must be in", CNN_ERR_SHAPE},
    {"size=-1", NET28 "[convolutional]\nfilters=4\nsize=-1\n", 7, "must be in", CNN_ERR_SHAPE},
    {"stride=0", NET28 "[convolutional]\nfilters=4\nsize=3\nstride=0\n", 8, "must be in",
     CNN_ERR_SHAPE},
    {"groups=0", NET28 "[convolutional]\nfilters=4\ngroups=0\n", 7, "must be in", CNN_ERR_SHAPE},
    {"groups=3 not dividing", NET28 "[convolutional]\nfilters=4\ngroups=3\n", 5, "groups",
     CNN_ERR_SHAPE},
    {"maxpool stride=0", NET28 "[maxpool]\nsize=2\nstride=0\n", 7, "must be in", CNN_ERR_SHAPE},
    {"connected output=0", NET28 "[connected]\noutput=0\n", 6, "must be in", CNN_ERR_SHAPE},
    {"dropout probability=1.5", NET28 "[dropout]\nprobability=1.5\n", 6, "must be in",
     CNN_ERR_SHAPE},
    {"dropout probability=-0.1", NET28 "[dropout]\nprobability=-0.1\n", 6, "must be in",
     CNN_ERR_SHAPE},
    {"batch=0", "[net]\nbatch=0\nheight=28\nwidth=28\nchannels=1\n[softmax]\n", 2, "must be in",
     CNN_ERR_SHAPE},
    {"kernel 9 > padded 5x5", "[net]\nheight=5\nwidth=5\nchannels=1\n[convolutional]\nfilters=4\nsize=9\npad=0\n",
     5, "larger", CNN_ERR_SHAPE},
    {"dilated kernel > input", "[net]\nheight=5\nwidth=5\nchannels=1\n[convolutional]\nfilters=4\nsize=3\ndilation=3\n",
     5, "larger", CNN_ERR_SHAPE},
    {"maxpool window > input", "[net]\nheight=3\nwidth=3\nchannels=1\n[maxpool]\nsize=8\npadding=0\n",
     5, "larger", CNN_ERR_SHAPE},
    {"softmax of one value", NET28 "[connected]\noutput=1\n[softmax]\n", 7, "2 classes",
     CNN_ERR_SHAPE},
    {"crop larger than the input", NET28 "[crop]\ncrop_height=30\ncrop_width=20\n", 5,
     "larger", CNN_ERR_SHAPE},
    {"crop flip=2", NET28 "[crop]\ncrop_height=20\ncrop_width=20\nflip=2\n", 8, "must be in",
     CNN_ERR_SHAPE},
    {"crop unknown key", NET28 "[crop]\ncrop_height=20\ncrop_width=20\nhue=.1\n", 8,
     "unknown key", CNN_ERR_PARSE},
    {"reorg stride 3 on 28x28", NET28 "[convolutional]\nfilters=9\nsize=1\n[reorg]\nstride=3\n",
     8, "multiple", CNN_ERR_SHAPE},
    {"reorg stride 2 on 1 channel (Darknet's map needs c % 4)", NET28 "[reorg]\nstride=2\n", 5,
     "multiple", CNN_ERR_SHAPE},
    {"reorg reverse stride 2 on 1 channel", NET28 "[reorg]\nstride=2\nreverse=1\n", 5,
     "multiple", CNN_ERR_SHAPE},
    {"reorg extra with reverse", NET28 "[reorg]\nextra=1\nreverse=1\n", 6, "extra",
     CNN_ERR_PARSE},

    /* shapes that cannot connect */
    {"route 28x28 with 14x14",
     NET28 "[convolutional]\nfilters=4\nsize=3\npad=1\n[maxpool]\nsize=2\nstride=2\n[route]\nlayers=-1,-2\n",
     12, "concatenate", CNN_ERR_SHAPE},
    {"shortcut 28x28 with 10x10",
     NET28 "[convolutional]\nfilters=4\nsize=3\npad=1\n[convolutional]\nfilters=4\nsize=9\nstride=2\n[shortcut]\nfrom=-2\n",
     13, "cannot add", CNN_ERR_SHAPE},

    /* absurd sizes that would overflow */
    {"height=1000000", "[net]\nheight=1000000\nwidth=28\nchannels=1\n[softmax]\n", 2, "must be in",
     CNN_ERR_SHAPE},
    {"input 60000x60000x3", "[net]\nheight=60000\nwidth=60000\nchannels=3\n[softmax]\n", 1,
     "too large", CNN_ERR_SHAPE},
    {"filters=1000000 on 1000x1000",
     "[net]\nheight=1000\nwidth=1000\nchannels=3\n[convolutional]\nfilters=1000000\nsize=3\npad=1\n",
     5, "too large", CNN_ERR_SHAPE},
    {"connected output=16000000",
     "[net]\nheight=1000\nwidth=1000\nchannels=3\n[connected]\noutput=16000000\n", 5, "too large",
     CNN_ERR_SHAPE},
    {"connected output=2^31", NET28 "[connected]\noutput=2147483648\n", 6, "must be in",
     CNN_ERR_SHAPE},
    /* 2^20 channels, concatenated 8 times three times (2^29), then once more:
     * 2^32 channels, which must be refused, not wrap around */
    {"route to 2^32 channels",
     "[net]\nheight=1\nwidth=1\nchannels=1\n[convolutional]\nfilters=1048576\nsize=1\n"
     "[route]\nlayers=-1,-1,-1,-1,-1,-1,-1,-1\n[route]\nlayers=-1,-1,-1,-1,-1,-1,-1,-1\n"
     "[route]\nlayers=-1,-1,-1,-1,-1,-1,-1,-1\n[route]\nlayers=-1,-1,-1,-1,-1,-1,-1,-1\n"
     "[connected]\noutput=2\n[softmax]\n",
     14, "too large|too many|overflow", CNN_ERR_SHAPE},
};

static char tmpdir[64];

/* msg contains one of the '|'-separated alternatives in words */
static int has_word_in(const char *msg, const char *words) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", words);
  for (char *w = buf, *bar; w; w = bar ? bar + 1 : NULL) {
    bar = strchr(w, '|');
    if (bar) *bar = 0;
    if (strstr(msg, w)) return 1;
  }
  return 0;
}

static void check_failure(const char *name, cnn_status st, const cnn_net *net, const char *file,
                          int line, const char *word, cnn_status want) {
  const char *msg = st == CNN_OK ? "(no error: it loaded)" : cnn_last_error();
  int ok = st != CNN_OK && net == NULL;
  char where[512] = "";
  if (line) snprintf(where, sizeof where, "%s:%d:", file, line);
  else snprintf(where, sizeof where, "%s", file);
  int has_where = strstr(msg, where) != NULL;
  int has_word = !word || has_word_in(msg, word);
  int right_status = want == CNN_OK || st == want;
  CHECK(ok, "%s: must fail and leave *out NULL (status %s)", name, cnn_status_name(st));
  CHECK(has_where, "%s: message names '%s': %s", name, where, msg);
  CHECK(has_word, "%s: message says '%s': %s", name, word, msg);
  CHECK(right_status, "%s: status %s, expected %s", name, cnn_status_name(st),
        cnn_status_name(want));
  printf("%-30s %s %-12s %s\n", name, ok && has_where && has_word && right_status ? "ok  " : "FAIL",
         cnn_status_name(st), msg);
}

static void run_text_cases(void) {
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const bad_case *c = &cases[i];
    cnn_net *net = (cnn_net *)&tmpdir; /* a failing call must reset it to NULL */
    cnn_status st = cnn_net_from_cfg_text(c->text, "bad.cfg", &net);
    const cnn_net *got = net;
    if (st == CNN_OK) cnn_net_destroy(net);
    check_failure(c->name, st, got, "bad.cfg", c->line, c->word, c->want);
  }
}

/* a file's bytes under tmpdir; returns its path */
static const char *write_file(const char *name, const void *data, size_t n, char *path, size_t len) {
  snprintf(path, len, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL, "cannot create %s", path);
  if (!f) return path;
  CHECK(fwrite(data, 1, n, f) == n, "short write to %s", path);
  fclose(f);
  return path;
}

static void run_file_cases(void) {
  char path[256];
  cnn_net *net = NULL;
  cnn_status st;

  /* a NUL byte inside otherwise good text */
  static const char nul_text[] = NET28 "[conv\0olutional]\nfilters=4\n[softmax]\n";
  write_file("nul.cfg", nul_text, sizeof nul_text - 1, path, sizeof path);
  st = cnn_net_from_cfg_file(path, &net);
  check_failure("file with a NUL byte", st, net, path, 0, "NUL", CNN_ERR_PARSE);
  net = NULL;

  /* binary garbage: random bytes, with and without NULs, and after a good [net] */
  unsigned char junk[4096];
  for (int round = 0; round < 3; round++) {
    for (size_t i = 0; i < sizeof junk; i++) {
      junk[i] = (unsigned char)cnn_rng_u64(77 + round, i);
      if (round > 0 && junk[i] == 0) junk[i] = 1;
    }
    if (round == 2) memcpy(junk, NET28, strlen(NET28));
    char nm[32];
    snprintf(nm, sizeof nm, "junk%d.cfg", round);
    write_file(nm, junk, sizeof junk, path, sizeof path);
    st = cnn_net_from_cfg_file(path, &net);
    char what[64];
    snprintf(what, sizeof what, "binary garbage %d%s", round,
             round == 0 ? " (NULs)" : round == 1 ? " (no NUL)" : " after [net]");
    /* round 2: the garbage starts on line 5, right after the [net] lines */
    check_failure(what, st, net, path, round == 2 ? 5 : 0, NULL, CNN_OK);
    if (st == CNN_OK) cnn_net_destroy(net);
    net = NULL;
  }

  /* a missing file: an I/O error naming the path */
  snprintf(path, sizeof path, "%s/no/such/model.cfg", tmpdir);
  st = cnn_net_from_cfg_file(path, &net);
  check_failure("missing file", st, net, path, 0, "cannot open|No such file", CNN_ERR_IO);
  net = NULL;

  /* a directory is not a cfg */
  st = cnn_net_from_cfg_file(tmpdir, &net);
  check_failure("a directory", st, net, tmpdir, 0, NULL, CNN_OK);
  if (st == CNN_OK) cnn_net_destroy(net);
  net = NULL;

  /* the file's path, not "bad.cfg", names the line of an error inside it */
  static const char bad_line[] = NET28 "\n[convolutional]\nfilters=4\nsize=0\n";
  write_file("badline.cfg", bad_line, sizeof bad_line - 1, path, sizeof path);
  st = cnn_net_from_cfg_file(path, &net);
  check_failure("error in a file", st, net, path, 8, "size", CNN_ERR_SHAPE);

  /* NULL arguments */
  CHECK(cnn_net_from_cfg_text(NULL, "x", &net) == CNN_ERR_ARG, "NULL text");
  CHECK(cnn_net_from_cfg_file(NULL, &net) == CNN_ERR_ARG, "NULL path");
  CHECK(cnn_net_from_cfg_text(NET28 "[softmax]\n", "x", NULL) == CNN_ERR_ARG, "NULL out");

  remove(path);
  char p2[256];
  for (int round = 0; round < 3; round++) {
    snprintf(p2, sizeof p2, "%s/junk%d.cfg", tmpdir, round);
    remove(p2);
  }
  snprintf(p2, sizeof p2, "%s/nul.cfg", tmpdir);
  remove(p2);
}

/* ---- positive cases ---- */

static void expect_net(const char *what, cnn_status st, cnn_net *net, size_t params, int h, int w,
                       int c, int classes) {
  CHECK(st == CNN_OK, "%s loads: %s", what, cnn_last_error());
  if (st != CNN_OK) {
    printf("%-30s FAIL %s\n", what, cnn_last_error());
    return;
  }
  cnn_net_info info;
  CHECK_OK(cnn_net_info_get(net, &info));
  int ok = info.num_params == params && info.height == h && info.width == w &&
           info.channels == c && info.classes == classes;
  CHECK(info.num_params == params, "%s: %zu parameters, expected %zu", what, info.num_params,
        params);
  CHECK(info.height == h && info.width == w && info.channels == c,
        "%s: input %dx%dx%d, expected %dx%dx%d", what, info.height, info.width, info.channels, h,
        w, c);
  CHECK(info.classes == classes, "%s: %d classes, expected %d", what, info.classes, classes);
  printf("%-30s %s %zu params, input %dx%dx%d, %d classes, %d sections, %d layers\n", what,
         ok ? "ok  " : "FAIL", info.num_params, info.height, info.width, info.channels,
         info.classes, info.num_sections, info.num_layers);
  cnn_net_destroy(net);
}

static void run_positive_cases(void) {
  char path[1024];
  cnn_net *net = NULL;
  cnn_status st;

  st = cnn_net_from_cfg_file(tu_source_path("tests/data/darknet/cifar.cfg", path, sizeof path), &net);
  expect_net("darknet cifar.cfg", st, net, 7681674, 28, 28, 3, 10);
  net = NULL;
  st = cnn_net_from_cfg_file(tu_source_path("tests/data/darknet/resnet18.cfg", path, sizeof path),
                             &net);
  expect_net("darknet resnet18.cfg", st, net, 11515688, 256, 256, 3, 1000);
  net = NULL;
  st = cnn_net_from_cfg_file(tu_source_path("models/lenet.cfg", path, sizeof path), &net);
  expect_net("models/lenet.cfg", st, net, 3274634, 28, 28, 1, 10);
  net = NULL;

  /* comments ('#' and ';', whole-line and trailing), blank lines, indentation,
   * spaces around '=', CRLF line ends: conv 3x3 1->4 (36 + 4) + dense 4*28*28*... */
  static const char commented[] =
      "# a model\n"
      "; written by hand\n"
      "\n"
      "[net]\r\n"
      "height = 6   # rows\r\n"
      "  width=6\n"
      "channels=1 ; grey\n"
      "\n\n"
      "[convolutional]   # the only conv\n"
      "filters=4\n"
      "size=3\n"
      "pad=1\n"
      "\t\n"
      "activation=relu\n"
      "# [maxpool] commented out\n"
      ";size=2\n"
      "[connected]\n"
      "output=3\n"
      "[softmax]";
  st = cnn_net_from_cfg_text(commented, "commented.cfg", &net);
  expect_net("comments and blank lines", st, net, 4 * 9 + 4 + 6 * 6 * 4 * 3 + 3, 6, 6, 1, 3);
  net = NULL;

  /* line numbers stay right after comments and CRLF: the error is on line 9 */
  static const char crlf_bad[] = "# c\r\n[net]\r\nheight=6\r\nwidth=6\r\nchannels=1\r\n\r\n"
                                 "[convolutional]\r\n; c\r\nfilters=x\r\n";
  st = cnn_net_from_cfg_text(crlf_bad, "bad.cfg", &net);
  check_failure("error line after CRLF/comments", st, net, "bad.cfg", 9, "not an integer",
                CNN_ERR_PARSE);
}


/* ---- mutations of a cfg using every section kind: each mutant either loads (and
 * then builds and runs a training step and a prediction on ref without a memory
 * error: the inferred shapes must be what the ops need) or fails with a message
 * naming the file; none crashes ---- */

static const char *const zoo_lines[] = {
    "[net]", "height=8", "width=8", "channels=3", "batch=2",
    "[train]", "label_smoothing=0.1",
    "[convolutional]", "filters=4", "size=3", "stride=1", "pad=1", "activation=leaky",
    "[convolutional]", "batch_normalize=1", "filters=4", "size=3", "pad=1", "groups=2",
    "activation=relu",
    "[shortcut]", "from=-2", "activation=linear",
    "[maxpool]", "size=2", "stride=2",
    "[route]", "layers=-1",
    "[convolutional]", "filters=6", "size=1", "dilation=1", "activation=gelu",
    "[route]", "layers=-1,-2",
    "[dropout]", "probability=0.25",
    "[avgpool]", "size=2", "stride=1",
    "[batchnorm]",
    "[flatten]",
    "[connected]", "output=5", "activation=linear",
    "[softmax]",
};
#define ZOO_N ((int)(sizeof zoo_lines / sizeof *zoo_lines))

/* the zoo with line `skip` left out (-1: none), line `repl`'s value replaced by
 * `value`, and only the first `keep` lines */
static void zoo_text(char *buf, size_t len, int skip, int repl, const char *value, int keep) {
  size_t at = 0;
  buf[0] = 0;
  for (int i = 0; i < keep && i < ZOO_N; i++) {
    if (i == skip) continue;
    const char *l = zoo_lines[i];
    if (i == repl) {
      const char *eq = strchr(l, '=');
      at += (size_t)snprintf(buf + at, len - at, "%.*s=%s\n", (int)(eq - l), l, value);
    } else {
      at += (size_t)snprintf(buf + at, len - at, "%s\n", l);
    }
  }
}

static int zoo_loaded, zoo_refused, zoo_ran, zoo_bad_msg, zoo_run_failed;

static void zoo_try(cnn_backend *ref, const char *text, const char *what) {
  cnn_net *net = NULL;
  cnn_status st = cnn_net_from_cfg_text(text, "bad.cfg", &net);
  if (st != CNN_OK) {
    zoo_refused++;
    if (!strstr(cnn_last_error(), "bad.cfg") || net) {
      zoo_bad_msg++;
      CHECK(0, "mutant %s: refused without naming the file: %s", what, cnn_last_error());
    }
    return;
  }
  zoo_loaded++;
  cnn_net_info info;
  CHECK_OK(cnn_net_info_get(net, &info));
  if (ref && info.num_params < 200000 && info.flops_per_image < 2e7 && info.classes <= 4096) {
    size_t nx = (size_t)2 * info.height * info.width * info.channels;
    float *x = malloc(nx * sizeof *x);
    tu_fill_uniform(x, nx, -1.0f, 1.0f, 5);
    int32_t y[2] = {0, info.classes > 1 ? 1 : 0};
    cnn_step_result r;
    cnn_status s1 = cnn_net_build(net, ref, 2, CNN_MODE_TRAIN), s2 = CNN_OK;
    if (s1 == CNN_OK) {
      s1 = cnn_net_train_step(net, x, y, 2, &r);
    } else {
      CHECK(cnn_last_error()[0] != 0, "mutant %s: a build error with a message", what);
      s1 = cnn_net_build(net, ref, 2, CNN_MODE_INFER);
    }
    if (s1 == CNN_OK) s2 = cnn_net_predict(net, x, NULL, 2, NULL, &r);
    if (s1 != CNN_OK || s2 != CNN_OK) {
      zoo_run_failed++;
      CHECK(0, "mutant %s loads but does not run: %s", what, cnn_last_error());
    }
    zoo_ran++;
    free(x);
  }
  cnn_net_destroy(net);
}

static void run_mutations(void) {
  static const char *const values[] = {"0", "1", "2", "3", "-1", "-2", "-3", "5", "7", "100",
                                       "abc", "", "1.5", "-1,-9", "linear"};
  cnn_backend *ref = NULL;
  CHECK_OK(cnn_backend_create("ref", &ref));
  char text[4096], what[96];
  zoo_text(text, sizeof text, -1, -1, NULL, ZOO_N);
  zoo_try(ref, text, "unchanged");
  CHECK(zoo_loaded == 1 && zoo_ran == 1, "the unmutated zoo loads and runs: %s", cnn_last_error());
  int n = 1;
  for (int i = 0; i < ZOO_N; i++) {
    snprintf(what, sizeof what, "without line %d (%s)", i + 1, zoo_lines[i]);
    zoo_text(text, sizeof text, i, -1, NULL, ZOO_N);
    zoo_try(ref, text, what);
    snprintf(what, sizeof what, "first %d lines", i + 1);
    zoo_text(text, sizeof text, -1, -1, NULL, i + 1);
    zoo_try(ref, text, what);
    n += 2;
    if (!strchr(zoo_lines[i], '=')) continue;
    for (size_t v = 0; v < sizeof values / sizeof *values; v++) {
      snprintf(what, sizeof what, "line %d as %.*s=%s", i + 1,
               (int)(strchr(zoo_lines[i], '=') - zoo_lines[i]), zoo_lines[i], values[v]);
      zoo_text(text, sizeof text, -1, i, values[v], ZOO_N);
      zoo_try(ref, text, what);
      n++;
    }
  }
  printf("%-30s %s %d mutants: %d refused (all naming the file: %s), %d loaded, %d of them "
         "trained and predicted on ref (%d failed)\n",
         "mutations of a cfg", zoo_bad_msg || zoo_run_failed ? "FAIL" : "ok  ", n, zoo_refused,
         zoo_bad_msg ? "NO" : "yes", zoo_loaded, zoo_ran, zoo_run_failed);
  cnn_backend_destroy(ref);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/cnn_cfgerr_XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  run_text_cases();
  run_file_cases();
  run_positive_cases();
  run_mutations();
  rmdir(tmpdir);
  return tu_finish("test_cfg_errors");
}
