/* cnn train MODEL.cfg --data D [options]: argument parsing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/mem_batch.h"
#include "cli/train_opts.h"
#include "cnn/data.h"

static void help(FILE *f) {
  fprintf(f,
      "usage: cnn train MODEL.cfg --data D [options]\n"
      "       cnn train --resume CKPT [options]\n\n"
      "Trains MODEL.cfg; flags override the cfg's [net] and [train] sections.\n\n"
      "  --data D            fashion-mnist | mnist:DIR | idx:DIR | cifar10:DIR | cifar100:DIR |\n"
      "                      folder:DIR (one sub-folder per class; DIR/train, DIR/test if present;\n"
      "                      the folder names are recorded as the class names, and --resume\n"
      "                      matches folders to them by name)\n"
      "  --epochs N          epochs to train (total, also when resuming)\n"
      "  --batch N|auto      batch size; auto: the largest multiple of 8 whose memory plan\n"
      "                      fits the device's free memory with a margin (printed); a batch\n"
      "                      that does not fit is refused before training, with the bytes\n"
      "                      needed and available ($CNN_MEMORY_LIMIT=BYTES replaces the\n"
      "                      free memory measured; --no-memory-check skips the check)\n"
      "  --lr F              peak learning rate\n"
      "  --optimizer NAME    sgd | adam | adamw\n"
      "  --schedule NAME     constant | step | cosine | onecycle | poly\n"
      "  --momentum F  --nesterov 0|1  --wd F  --warmup STEPS  --label-smoothing F\n"
      "  --crop PX  --flip 0|1  --cutout PX   augmentation (random crop with padding, flips)\n"
      "  --val-split F       hold out this fraction of the training set for validation\n"
      "  --patience N        stop early when the test (or validation) accuracy has not\n"
      "                      improved for N epochs (best.safetensors keeps the best)\n"
      "  --max-pixels N      refuse image files (folder:) larger than N pixels, width x height,\n"
      "                      from the header before decoding (default %lld: 64 megapixels)\n"
      "  --device NAME       auto (default: cuda if a GPU is found, else cpu) | cpu | cuda | ref\n"
      "  --precision P       auto (default) | fp32 | tf32 | bf16: bf16 activations with f32\n"
      "                      masters where the device runs it; auto: tf32 on GPUs with\n"
      "                      tensor cores, bf16 on CPUs with bf16 units, else fp32\n"
      CLI_ENGINE_HELP
      "  --device-data M     auto (default) | on | off: keep the training set in the device's\n"
      "                      memory and make batches there (auto: on a GPU, when it fits)\n"
      "  --cuda-graph on|off replay each training step as a CUDA graph (default on)\n"
      "  --threads N         CPU threads (default: OMP_NUM_THREADS or all cores)\n"
      "  --seed N            seed of every random choice (init, order, augmentation, dropout)\n"
      "  --out DIR           run folder (default runs/MODEL; a new one if that holds a run)\n"
      "  --resume CKPT       continue from a checkpoint (its cfg, data and settings)\n"
      "  --weights FILE      start from Darknet's binary weights for MODEL.cfg instead of a\n"
      "                      random initialisation (as cnn import reads them); the model\n"
      "                      then takes pixels in [0, 1] unless [train] sets mean/std, and\n"
      "                      its batch norm uses Darknet's epsilon (bn_eps 1e-12)\n"
      "  --init CKPT         fine-tune: start from the tensors of CKPT (a checkpoint of any\n"
      "                      model) that match MODEL.cfg by name and shape; the others (e.g.\n"
      "                      a new classifier head) are initialised from the seed, and what\n"
      "                      was loaded, skipped and new is printed and kept in the metadata;\n"
      "                      CKPT's mean/std normalise the data unless [train] sets them\n"
      "  --freeze N|LAYER    train only after the first N cfg sections, or after the section\n"
      "                      of LAYER (e.g. conv3, as cnn summary names it; that section is\n"
      "                      frozen too): frozen weights, batch-norm statistics and optimizer\n"
      "                      state stay bit-identical (batch norm runs on its running\n"
      "                      statistics there) and no gradient is computed for them;\n"
      "                      --resume keeps the checkpoint's freeze (a flag overrides it)\n"
      "  --best-with-optimizer  keep the optimizer state in best.safetensors too (by default\n"
      "                      only last.safetensors holds it: best is for eval, predict,\n"
      "                      export and --init)\n"
      "  --quiet             print only the final accuracy\n\n"
      "Writes DIR/last.safetensors every epoch, DIR/best.safetensors for the best accuracy,\n"
      "DIR/metrics.jsonl, and DIR/report.html at the end. On the CPU, runs are deterministic\n"
      "for a given seed and thread count, and a resumed run repeats the uninterrupted one.\n"
      "Ctrl-C stops after the current step: last.safetensors and the report are written,\n"
      "the --resume command to continue is printed, and the exit status is 130 (a second\n"
      "Ctrl-C ends the process at once). On a terminal the progress bar fits its width.\n",
      (long long)CNN_IMAGE_MAX_PIXELS);
}

static int need(int argc, char **argv, int *i, const char **v) {
  if (*i + 1 >= argc) {
    fprintf(stderr, "cnn train: %s needs a value\n", argv[*i]);
    return 0;
  }
  *v = argv[++*i];
  return 1;
}

static int dbl(const char *flag, const char *v, double lo, double hi, double *out) {
  char *end;
  double x = strtod(v, &end);
  if (end == v || *end || !(x >= lo && x <= hi)) {
    fprintf(stderr, "cnn train: %s needs a number in [%g, %g], got '%s'\n", flag, lo, hi, v);
    return 0;
  }
  *out = x;
  return 1;
}

int cli_train_parse(int argc, char **argv, train_opts *o) {
  memset(o, 0, sizeof *o);
  o->device = "auto";
  o->precision = "auto";
  o->device_data = "auto";
  o->cuda_graph = "on";
  o->lr = o->momentum = o->wd = o->smoothing = o->val_split = -1;
  o->crop = o->flip = o->cutout = o->warmup = o->nesterov = -1;
  o->seed = -1;
  o->kill_at_step = -1;
  o->interrupt_at_step = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    int iv;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      help(stdout);
      return 0;
    }
    if (cli_engine_arg(argc, argv, &i, &o->eng)) continue;
#define STR(flag, field) else if (!strcmp(a, flag)) { if (!need(argc, argv, &i, &v)) return 2; o->field = v; }
#define INT(flag, field, lo, hi) else if (!strcmp(a, flag)) { if (!need(argc, argv, &i, &v) || !cli_int(flag, v, lo, hi, &iv)) return 2; o->field = iv; }
#define DBL(flag, field, lo, hi) else if (!strcmp(a, flag)) { if (!need(argc, argv, &i, &v) || !dbl(flag, v, lo, hi, &o->field)) return 2; }
    STR("--data", data)
    STR("--device", device)
    STR("--precision", precision)
    STR("--device-data", device_data)
    STR("--cuda-graph", cuda_graph)
    STR("--out", out)
    STR("--resume", resume)
    STR("--weights", weights)
    STR("--init", init)
    STR("--freeze", freeze)
    STR("--optimizer", optimizer)
    STR("--schedule", schedule)
    INT("--epochs", epochs, 1, 1 << 20)
    else if (!strcmp(a, "--batch")) {
      if (!need(argc, argv, &i, &v) || !cli_batch_arg("train", v, &o->batch)) return 2;
    }
    INT("--threads", threads, 1, 1024)
    INT("--warmup", warmup, 0, 1 << 30)
    INT("--nesterov", nesterov, 0, 1)
    INT("--crop", crop, 0, 1024)
    INT("--flip", flip, 0, 1)
    INT("--cutout", cutout, 0, 1024)
    INT("--max-pixels", max_pixels, 1, 0x7fffffff)
    INT("--patience", patience, 1, 1 << 20)
    DBL("--lr", lr, 0, 1000)
    DBL("--momentum", momentum, 0, 0.9999)
    DBL("--wd", wd, 0, 1)
    DBL("--label-smoothing", smoothing, 0, 0.999)
    DBL("--val-split", val_split, 0, 0.9)
    else if (!strcmp(a, "--seed")) {
      if (!need(argc, argv, &i, &v) || !cli_int("--seed", v, 0, 0x7fffffff, &iv)) return 2;
      o->seed = iv;
    } else if (!strcmp(a, "--kill-at-step")) {
      if (!need(argc, argv, &i, &v) || !cli_int("--kill-at-step", v, 1, 0x7fffffff, &iv)) return 2;
      o->kill_at_step = iv;
    } else if (!strcmp(a, "--interrupt-at-step")) { /* testing aid: a Ctrl-C at this step */
      if (!need(argc, argv, &i, &v) || !cli_int(a, v, 1, 0x7fffffff, &iv)) return 2;
      o->interrupt_at_step = iv;
    } else if (!strcmp(a, "--best-with-optimizer")) {
      o->best_with_optimizer = 1;
    } else if (!strcmp(a, "--no-memory-check")) {
      o->no_memory_check = 1;
    } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
      o->quiet = 1;
    } else if (a[0] == '-') {
      fprintf(stderr, "cnn train: unknown option '%s' (see cnn train --help)\n", a);
      return 2;
    } else if (!o->model) {
      o->model = a;
    } else {
      fprintf(stderr, "cnn train: unexpected argument '%s'\n", a);
      return 2;
    }
#undef STR
#undef INT
#undef DBL
  }
  if (!o->model && !o->resume) {
    help(stderr);
    return 2;
  }
  return -1; /* go on */
}

int cnn_cmd_train(int argc, char **argv) {
  train_opts o;
  int rc = cli_train_parse(argc, argv, &o);
  if (rc >= 0) return rc;
  if (o.model && !(o.model = cli_model_cfg(o.model))) return cli_fail(NULL);
  return cli_train_run(&o);
}
