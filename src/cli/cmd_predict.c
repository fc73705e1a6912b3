/* cnn predict CKPT FILE... [--top K] [--json] [--max-pixels N] [--resize M]: the
 * top-k classes of each image. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/ckpt_net.h"
#include "cli/cli.h"
#include "cnn/data.h"
#include "cnn/loader.h"

static void help(FILE *f) {
  fprintf(f, "usage: cnn predict CKPT FILE... [--top K] [--device D] [--precision P] [--json]\n"
             "                   [--max-pixels N] [--resize stretch|crop|letterbox]\n"
             "       cnn predict MODEL.cfg FILE... --weights FILE.weights [--classes C] [options]\n\n"
             "Prints the K most probable classes (default 3) of each image file (PNG, JPEG,\n"
             "BMP, ...), which is converted to the model's input size and channels.\n"
             "--weights FILE.weights: run MODEL.cfg with Darknet's binary weights instead of\n"
             "  a checkpoint (as cnn import reads them: pixels in [0, 1], Darknet's batch\n"
             "  norm epsilon); --classes FILE (one name a line) or a,b,c names its classes.\n"
             "--precision: auto (default) | fp32 | tf32 | bf16 (where the device runs it;\n"
             "  auto: tf32 on GPUs with tensor cores, bf16 on CPUs with bf16 units, else\n"
             "  fp32).\n"
             CLI_ENGINE_HELP
             "--max-pixels N: refuse image files larger than N pixels (width x height, from\n"
             "  the header, before decoding); default %lld (64 megapixels).\n"
             "--resize: how an image whose aspect ratio differs from the model's input is\n"
             "  fitted to it: stretch (default; the whole image, distorted: a warning says\n"
             "  so unless --resize stretch is given), crop (the largest centred region of\n"
             "  the input's shape, resized) or letterbox (the whole image resized to fit,\n"
             "  centred, the rest filled with the model's mean colour: the training set's\n"
             "  mean pixel, which is 0 after normalisation; black for imported models).\n"
             "A file that cannot be used is reported by name; the others are still\n"
             "predicted, and the exit status is 1.\n", (long long)CNN_IMAGE_MAX_PIXELS);
}

/* a JSON string literal (file and class names may hold quotes or backslashes) */
static void json_str(const char *s) {
  putchar('"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') printf("\\%c", c);
    else if (c < 0x20) printf("\\u%04x", c);
    else putchar(c);
  }
  putchar('"');
}

typedef struct fit_opts {
  cnn_image_fit fit;
  int given; /* --resize was given: no warning */
} fit_opts;

static int classify(cli_model *m, char **files, int n, int top, int json, int64_t max_pixels,
                    const fit_opts *fo, int *first) {
  int h = m->info.height, w = m->info.width, c = m->info.channels, k = m->info.classes;
  size_t per = (size_t)h * w * c;
  float *x = malloc((size_t)n * per * sizeof *x), *probs = malloc((size_t)n * k * sizeof *probs);
  uint8_t *img = malloc(per);
  char *used = malloc((size_t)k); /* classes already listed for the current image */
  int *ok = calloc((size_t)n, sizeof *ok), bad = 0, good = 0,
      oom = !x || !probs || !img || !ok || !used;
  if (oom) {
    fprintf(stderr, "cnn predict: out of memory\n");
    bad = n;
  }
  uint8_t fill[4];
  for (int ch = 0; ch < 4; ch++) { /* the mean colour: 0 after normalisation */
    float v = m->meta.mean[ch] * 255.0f + 0.5f;
    fill[ch] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
  }
  for (int i = 0; !oom && i < n; i++) {
    int fw = 0, fh = 0;
    if (cnn_image_load_fit(files[i], h, w, c, max_pixels, fo->fit, fill, img, &fw, &fh) != CNN_OK) {
      fprintf(stderr, "cnn predict: %s\n", cnn_last_error());
      bad++;
      continue;
    }
    if (!fo->given && (int64_t)fw * h != (int64_t)fh * w)
      fprintf(stderr, "cnn predict: warning: %s is %dx%d, stretched to the model's %dx%d input "
              "(its shape changes); --resize crop or --resize letterbox keeps the shape\n",
              files[i], fw, fh, w, h);
    cnn_normalize_image(img, h, w, c, m->meta.mean, m->meta.std, x + (size_t)good * per);
    ok[i] = 1;
    good++;
  }
  if (good && cnn_net_predict(m->net, x, NULL, good, probs, NULL) != CNN_OK) {
    cli_fail("predict");
    good = 0;
    bad = n;
  }
  for (int i = 0, j = 0; i < n && good; i++) {
    if (!ok[i]) continue;
    const float *p = probs + (size_t)j++ * k;
    if (json) {
      printf("%s{\"file\":", *first ? "" : ",\n");
      json_str(files[i]);
      printf(",\"top\":[");
    } else {
      printf("%s:", files[i]);
    }
    *first = 0;
    memset(used, 0, (size_t)k);
    for (int t = 0; t < top && t < k; t++) {
      int best = -1;
      for (int q = 0; q < k; q++)
        if (!used[q] && (best < 0 || p[q] > p[best])) best = q;
      used[best] = 1;
      const char *name = best < m->meta.classes ? m->meta.class_names[best] : "?";
      if (json) {
        printf("%s{\"class\":%d,\"name\":", t ? "," : "", best);
        json_str(name);
        printf(",\"p\":%.6f}", p[best]);
      } else {
        printf("  %d. %s (%d) %.4f", t + 1, name, best, p[best]);
      }
    }
    printf(json ? "]}" : "\n");
  }
  free(x);
  free(probs);
  free(img);
  free(used);
  free(ok);
  return bad;
}

int cnn_cmd_predict(int argc, char **argv) {
  const char *ckpt = NULL, *device = "auto", *precision = "auto", *weights = NULL, *classes = NULL;
  int top = 3, json = 0, n = 0, max_pixels = 0;
  fit_opts fo = {CNN_FIT_STRETCH, 0};
  cli_engine eng = {0};
  char **files = calloc((size_t)argc, sizeof *files);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      help(stdout);
      free(files);
      return 0;
    } else if (cli_engine_arg(argc, argv, &i, &eng)) {
      continue;
    } else if (!strcmp(argv[i], "--top")) {
      if (!cli_int("--top", i + 1 < argc ? argv[++i] : NULL, 1, 1000, &top)) return 2;
    } else if (!strcmp(argv[i], "--max-pixels")) {
      if (!cli_int("--max-pixels", i + 1 < argc ? argv[++i] : NULL, 1, 0x7fffffff, &max_pixels)) {
        free(files);
        return 2;
      }
    } else if (!strcmp(argv[i], "--resize")) {
      const char *v = i + 1 < argc ? argv[++i] : "";
      fo.given = 1;
      if (!strcmp(v, "stretch")) fo.fit = CNN_FIT_STRETCH;
      else if (!strcmp(v, "crop")) fo.fit = CNN_FIT_CROP;
      else if (!strcmp(v, "letterbox")) fo.fit = CNN_FIT_LETTERBOX;
      else {
        fprintf(stderr, "cnn predict: --resize is stretch, crop or letterbox, not '%s'\n", v);
        free(files);
        return 2;
      }
    } else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
      device = argv[++i];
    } else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
      precision = argv[++i];
    } else if (!strcmp(argv[i], "--weights") && i + 1 < argc) {
      weights = argv[++i];
    } else if (!strcmp(argv[i], "--classes") && i + 1 < argc) {
      classes = argv[++i];
    } else if (!strcmp(argv[i], "--json")) {
      json = 1;
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "cnn predict: unknown option '%s'\n", argv[i]);
      free(files);
      return 2;
    } else if (!ckpt) {
      ckpt = argv[i];
    } else {
      files[n++] = argv[i];
    }
  }
  if (!ckpt || !n) {
    help(stderr);
    free(files);
    return 2;
  }
  if (classes && !weights) {
    fprintf(stderr, "cnn predict: --classes goes with --weights (a checkpoint names its classes)\n");
    free(files);
    return 2;
  }
  int chunk = n < 64 ? n : 64, bad = 0, first = 1;
  cli_model m;
  cnn_status st = weights ? cli_model_open_darknet(ckpt, weights, classes, device, precision, &eng, chunk, &m)
                          : cli_model_open(ckpt, device, precision, &eng, chunk, &m);
  if (st != CNN_OK) {
    free(files);
    cli_model_close(&m);
    return cli_fail(NULL);
  }
  if (json) printf("[");
  for (int i = 0; i < n; i += chunk) bad += classify(&m, files + i, n - i < chunk ? n - i : chunk, top, json,
                                                max_pixels, &fo, &first);
  if (json) printf("]\n");
  cli_model_close(&m);
  free(files);
  return bad ? 1 : 0;
}
