/* cnn eval CKPT [--data D] [--json]: accuracy, per-class accuracy and the
 * confusion matrix on the test split. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/ckpt_net.h"
#include "cli/cli.h"
#include "cli/data_open.h"
#include "cli/evaluate.h"
#include "cli/mem_batch.h"
#include "cnn/data.h"

static void help(FILE *f) {
  fprintf(f, "usage: cnn eval CKPT [--data D] [--device D] [--precision P] [--batch N|auto]\n"
             "                     [--json] [--max-pixels N] [--no-memory-check]\n"
             "       cnn eval MODEL.cfg --weights FILE.weights --data D [--classes C] [options]\n\n"
             "Evaluates a checkpoint on the test split of D (default: the data it was trained\n"
             "on): accuracy, per-class accuracy and the confusion matrix (rows: true class).\n"
             "--weights FILE.weights: evaluate MODEL.cfg with Darknet's binary weights instead\n"
             "  of a checkpoint (as cnn import reads them: pixels in [0, 1], Darknet's batch\n"
             "  norm epsilon); --classes FILE (one name a line) or a,b,c names its classes.\n"
             "--precision: auto (default) | fp32 | tf32 | bf16 (where the device runs it;\n"
             "  auto: tf32 on GPUs with tensor cores, bf16 on CPUs with bf16 units, else\n"
             "  fp32).\n"
             CLI_ENGINE_HELP
             "--max-pixels N: refuse image files (folder:DIR) larger than N pixels.\n"
             "folder:DIR data is matched to the checkpoint's classes by name: class \"a/b\"\n"
             "  in folder DIR/a_b (as cnn dataset export writes it); a folder that is no\n"
             "  class, or a named class with no folder, is refused. Only when the classes\n"
             "  are unnamed (0, 1, ...) are the folders taken in alphabetical order.\n"
             "--batch: images a step (default 256); auto: the largest multiple of 8 whose\n"
             "  memory plan fits the device's free memory with a margin (printed). A batch\n"
             "  that does not fit is refused with the bytes needed and available\n"
             "  ($CNN_MEMORY_LIMIT=BYTES replaces the free memory measured;\n"
             "  --no-memory-check skips the check).\n");
}

static void print_text(const cli_model *m, const cli_eval *ev) {
  int k = ev->classes;
  printf("accuracy: %.4f (%lld/%lld), loss %.4f\n\nper-class accuracy:\n", ev->acc,
         (long long)ev->correct, (long long)ev->n, ev->loss);
  for (int i = 0; i < k; i++) {
    int64_t row = 0;
    for (int j = 0; j < k; j++) row += ev->confusion[(size_t)i * k + j];
    const char *name = i < m->meta.classes ? m->meta.class_names[i] : "?";
    if (row) printf("  %2d %-16s %.4f (%lld)\n", i, name, (double)ev->confusion[(size_t)i * k + i] / row, (long long)row);
  }
  printf("\nconfusion matrix (rows: true, columns: predicted):\n     ");
  for (int j = 0; j < k; j++) printf(" %6d", j);
  printf("\n");
  for (int i = 0; i < k; i++) {
    printf("  %2d ", i);
    for (int j = 0; j < k; j++) printf(" %6lld", (long long)ev->confusion[(size_t)i * k + j]);
    printf("\n");
  }
}

static void print_json(const cli_model *m, const cli_eval *ev) {
  int k = ev->classes;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "accuracy", ev->acc);
  cJSON_AddNumberToObject(o, "loss", ev->loss);
  cJSON_AddNumberToObject(o, "images", (double)ev->n);
  cJSON_AddNumberToObject(o, "correct", (double)ev->correct);
  cJSON *names = cJSON_AddArrayToObject(o, "classes");
  cJSON *per = cJSON_AddArrayToObject(o, "per_class_accuracy");
  cJSON *cm = cJSON_AddArrayToObject(o, "confusion");
  for (int i = 0; i < k; i++) {
    cJSON_AddItemToArray(names, cJSON_CreateString(i < m->meta.classes ? m->meta.class_names[i] : "?"));
    cJSON *row = cJSON_CreateArray();
    int64_t sum = 0;
    for (int j = 0; j < k; j++) {
      sum += ev->confusion[(size_t)i * k + j];
      cJSON_AddItemToArray(row, cJSON_CreateNumber((double)ev->confusion[(size_t)i * k + j]));
    }
    cJSON_AddItemToArray(cm, row);
    cJSON_AddItemToArray(per, sum ? cJSON_CreateNumber((double)ev->confusion[(size_t)i * k + i] / sum)
                                  : cJSON_CreateNull());
  }
  char *s = cJSON_Print(o);
  printf("%s\n", s);
  free(s);
  cJSON_Delete(o);
}

int cnn_cmd_eval(int argc, char **argv) {
  const char *ckpt = NULL, *data = NULL, *device = "auto", *precision = "auto";
  const char *weights = NULL, *classes = NULL;
  int json = 0, batch = 256, max_pixels = 0, no_check = 0;
  cli_engine eng = {0};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      help(stdout);
      return 0;
    } else if (cli_engine_arg(argc, argv, &i, &eng)) {
      continue;
    } else if (!strcmp(argv[i], "--json")) {
      json = 1;
    } else if (!strcmp(argv[i], "--data") && i + 1 < argc) {
      data = argv[++i];
    } else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
      device = argv[++i];
    } else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
      precision = argv[++i];
    } else if (!strcmp(argv[i], "--weights") && i + 1 < argc) {
      weights = argv[++i];
    } else if (!strcmp(argv[i], "--classes") && i + 1 < argc) {
      classes = argv[++i];
    } else if (!strcmp(argv[i], "--max-pixels")) {
      if (!cli_int("--max-pixels", i + 1 < argc ? argv[++i] : NULL, 1, 0x7fffffff, &max_pixels))
        return 2;
    } else if (!strcmp(argv[i], "--batch")) {
      if (!cli_batch_arg("eval", i + 1 < argc ? argv[++i] : NULL, &batch)) return 2;
    } else if (!strcmp(argv[i], "--no-memory-check")) {
      no_check = 1;
    } else if (argv[i][0] == '-' || ckpt) {
      fprintf(stderr, "cnn eval: unexpected argument '%s'\n", argv[i]);
      help(stderr);
      return 2;
    } else {
      ckpt = argv[i];
    }
  }
  if (!ckpt) {
    help(stderr);
    return 2;
  }
  if (classes && !weights) {
    fprintf(stderr, "cnn eval: --classes goes with --weights (a checkpoint names its classes)\n");
    return 2;
  }
  cli_model m;
  cnn_dataset test = {0};
  cli_eval ev = {0};
  int rc = 0;
  /* the data before the build: the batch is chosen against the memory left after it */
  cnn_status st = weights ? cli_model_prepare_darknet(ckpt, weights, classes, &m)
                          : cli_model_prepare(ckpt, &m);
  if (st != CNN_OK) {
    rc = cli_fail(NULL);
  } else if (!data && !m.meta.data) {
    fprintf(stderr, "cnn eval: %s does not say what data it was trained on; give --data\n", ckpt);
    rc = 2;
  } else if (cli_data_open(data ? data : m.meta.data, 0, m.info.height, m.info.width,
                           m.info.channels, max_pixels, m.meta.class_names, m.meta.classes, 0,
                           &test) != CNN_OK ||
             cli_model_device(&m, device, precision, &eng) != CNN_OK ||
             cli_batch_eval(m.net, m.b, &test, batch, no_check, &batch) != CNN_OK ||
             cli_model_build(&m, batch) != CNN_OK ||
             cli_evaluate(m.net, &test, batch, m.meta.mean, m.meta.std, &ev) != CNN_OK) {
    rc = cli_fail(NULL);
  } else if (json) {
    print_json(&m, &ev);
  } else {
    print_text(&m, &ev);
  }
  free(ev.confusion);
  cnn_dataset_free(&test);
  cli_model_close(&m);
  return rc;
}
