/* cnn train: set-up, the epoch loop, evaluation, checkpoints, metrics. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend/backend.h"
#include "cli/cli.h"
#include "cli/data_open.h"
#include "cli/evaluate.h"
#include "cli/mem_batch.h"
#include "cli/meta.h"
#include "cli/progress.h"
#include "cli/train_init.h"
#include "cli/train_opts.h"
#include "cnn/cnn.h"
#include "cnn/data.h"
#include "cnn/loader.h"
#include "core/cfg.h"
#include "core/error.h"
#include "exchange/darknet_weights.h"

typedef struct run {
  const train_opts *o;
  cnn_net *net;
  cnn_backend *b;
  cnn_net_info info;
  cnn_train_config tc;
  cli_meta meta;             /* what goes into checkpoints */
  cnn_dataset train, test;
  const char *eval_name;     /* "test" or "val" */
  cnn_loader *loader;
  int bound;                 /* the training set is bound in the backend's memory */
  int batch;
  char dir[1024];
  char *cfg_text;
  const char *model_name;
  const char *device;
} run;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* comma-separated floats (the cfg's mean= / std=) */
static int parse_floats(const char *s, float *v, int max) {
  int n = 0;
  while (*s && n < max) {
    char *end;
    double x = strtod(s, &end);
    if (end == s) return -1;
    v[n++] = (float)x;
    s = end;
    while (*s == ' ' || *s == ',') s++;
  }
  return *s ? -1 : n;
}

/* data keys of the cfg's [train] section, read here because they belong to the
 * command's data pipeline, not to the net */
static cnn_status cfg_data_keys(run *r) {
  cnn_cfg cfg;
  CNN_TRY(cnn_cfg_parse(r->cfg_text, r->model_name, &cfg));
  cnn_status st = CNN_OK;
  for (int i = 0; i < cfg.n && st == CNN_OK; i++) {
    cnn_cfg_section *s = &cfg.sec[i];
    if (strcmp(s->name, "train")) continue;
    float f;
    st = cnn_cfg_int(&cfg, s, "crop", r->meta.crop, 0, 1024, &r->meta.crop);
    if (st == CNN_OK) st = cnn_cfg_int(&cfg, s, "flip", r->meta.flip, 0, 1, &r->meta.flip);
    if (st == CNN_OK) st = cnn_cfg_int(&cfg, s, "cutout", r->meta.cutout, 0, 1024, &r->meta.cutout);
    if (st == CNN_OK) st = cnn_cfg_float(&cfg, s, "val_split", r->meta.val_split, 0, 0.9, &f);
    if (st == CNN_OK) r->meta.val_split = f;
    const char *m = cnn_cfg_str(s, "mean", NULL), *d = cnn_cfg_str(s, "std", NULL);
    if (st == CNN_OK && (m || d)) {
      int nm = m ? parse_floats(m, r->meta.mean, 4) : -1, nd = d ? parse_floats(d, r->meta.std, 4) : -1;
      if (nm != r->info.channels || nd != r->info.channels)
        st = cnn_cfg_section_error(&cfg, s, CNN_ERR_PARSE,
                                   "mean= and std= need %d comma-separated values (one per channel)",
                                   r->info.channels);
      for (int c = 0; st == CNN_OK && c < nd; c++)
        if (!(r->meta.std[c] > 0)) st = cnn_cfg_section_error(&cfg, s, CNN_ERR_PARSE, "std must be > 0");
      if (st == CNN_OK) r->meta.channels = nm;
    }
  }
  cnn_cfg_free(&cfg);
  return st;
}

static cnn_status apply_flags(run *r) {
  const train_opts *o = r->o;
  cnn_train_config *t = &r->tc;
  if (o->optimizer) {
    if (!strcmp(o->optimizer, "sgd")) t->optimizer = CNN_OPT_SGD;
    else if (!strcmp(o->optimizer, "adam")) t->optimizer = CNN_OPT_ADAM;
    else if (!strcmp(o->optimizer, "adamw")) t->optimizer = CNN_OPT_ADAMW;
    else return cnn_error(CNN_ERR_ARG, "--optimizer must be sgd, adam or adamw, not '%s'", o->optimizer);
  }
  if (o->schedule) {
    const char *names[] = {"constant", "step", "cosine", "onecycle", "poly"};
    int k = -1;
    for (int i = 0; i < 5; i++)
      if (!strcmp(o->schedule, names[i])) k = i;
    if (k < 0) return cnn_error(CNN_ERR_ARG, "--schedule must be constant, step, cosine, onecycle or poly");
    t->schedule = (cnn_schedule_kind)k;
  }
  if (o->epochs) t->epochs = o->epochs;
  if (o->lr >= 0) t->learning_rate = (float)o->lr;
  if (o->momentum >= 0) t->momentum = (float)o->momentum;
  if (o->wd >= 0) t->weight_decay = (float)o->wd;
  if (o->smoothing >= 0) t->label_smoothing = (float)o->smoothing;
  if (o->warmup >= 0) t->warmup_steps = o->warmup;
  if (o->nesterov >= 0) t->nesterov = o->nesterov;
  if (o->seed >= 0) t->seed = (uint64_t)o->seed;
  if (o->crop >= 0) r->meta.crop = o->crop;
  if (o->flip >= 0) r->meta.flip = o->flip;
  if (o->cutout >= 0) r->meta.cutout = o->cutout;
  if (o->val_split >= 0) r->meta.val_split = o->val_split;
  return CNN_OK;
}

static cnn_status open_data(run *r) {
  const char *spec = r->o->data ? r->o->data : r->meta.data;
  if (!spec) return cnn_error(CNN_ERR_ARG, "--data is required (e.g. --data fashion-mnist)");
  if (r->meta.data != spec) {
    free(r->meta.data);
    r->meta.data = strdup(spec);
  }
  int h = r->info.height, w = r->info.width, c = r->info.channels;
  cnn_dataset full;
  CNN_TRY(cli_data_open(spec, 1, h, w, c, r->o->max_pixels, r->meta.class_names, r->meta.classes,
                        r->o->quiet, &full)); /* on --resume, folders by the checkpoint's names */
  if (r->meta.val_split > 0) {
    cnn_status st = cnn_dataset_split(&full, r->meta.val_split, r->tc.seed, &r->train, &r->test);
    cnn_dataset_free(&full);
    CNN_TRY(st);
    r->eval_name = "val";
  } else {
    r->train = full;
    CNN_TRY(cli_data_open(spec, 0, h, w, c, r->o->max_pixels, r->meta.class_names,
                          r->meta.classes, 1, &r->test));
    r->eval_name = "test";
  }
  if (r->train.classes > r->info.classes)
    return cnn_error(CNN_ERR_SHAPE, "%s has %d classes but %s has only %d outputs", spec,
                     r->train.classes, r->model_name, r->info.classes);
  return CNN_OK;
}

/* a setting as the user gave it: "--flag V", or the cfg key, or the checkpoint's */
static const char *setting(const run *r, int flagged, const char *flag, const char *key,
                           const char *val, char *buf, size_t n) {
  if (flagged) snprintf(buf, n, "%s %s", flag, val);
  else if (r->o->resume) snprintf(buf, n, "%s=%s (from %s)", key, val, r->o->resume);
  else snprintf(buf, n, "%s=%s in [train] of %s", key, val, r->model_name);
  return buf;
}

/* Augmentation and split settings that cannot work with the loaded data, refused
 * before training starts: a crop shift or cutout square as large as the images
 * blanks whole inputs; a split may leave either part empty. */
static cnn_status check_data_opts(run *r) {
  const train_opts *o = r->o;
  int h = r->train.h, w = r->train.w, side = h < w ? h : w;
  char v[32], name[1200];
  if (r->meta.crop >= side) {
    snprintf(v, sizeof v, "%d", r->meta.crop);
    return cnn_error(CNN_ERR_ARG, "%s is not smaller than the %dx%d images (a shift that large "
                     "can move the whole image out)",
                     setting(r, o->crop >= 0, "--crop", "crop", v, name, sizeof name), w, h);
  }
  if (r->meta.cutout > side) {
    snprintf(v, sizeof v, "%d", r->meta.cutout);
    return cnn_error(CNN_ERR_ARG, "%s is larger than the %dx%d images (it would blank whole "
                     "inputs)",
                     setting(r, o->cutout >= 0, "--cutout", "cutout", v, name, sizeof name), w, h);
  }
  if (strcmp(r->eval_name, "val")) return CNN_OK;
  int nt = r->train.n, nv = r->test.n;
  snprintf(v, sizeof v, "%g", r->meta.val_split);
  setting(r, o->val_split >= 0, "--val-split", "val_split", v, name, sizeof name);
  if (nt == 0)
    return cnn_error(CNN_ERR_ARG, "%s leaves no training images: it holds out all %d image%s of "
                     "%s for validation", name, nv, nv == 1 ? "" : "s", r->meta.data);
  if (nv == 0)
    return cnn_error(CNN_ERR_ARG, "%s holds out no validation images: %s of the %d image%s of %s "
                     "rounds to 0", name, v, nt, nt == 1 ? "" : "s", r->meta.data);
  return CNN_OK;
}

static void set_class_names(run *r) {
  if (r->meta.class_names) return;
  r->meta.classes = r->info.classes;
  r->meta.class_names = calloc((size_t)r->info.classes, sizeof(char *));
  for (int i = 0; i < r->info.classes; i++) {
    char buf[32];
    snprintf(buf, sizeof buf, "%d", i);
    const char *n = r->train.class_names && i < r->train.classes ? r->train.class_names[i] : buf;
    r->meta.class_names[i] = strdup(n);
  }
}

/* a run folder that holds no earlier run: runs/NAME, runs/NAME-2, ... */
static cnn_status pick_dir(run *r) {
  if (r->o->resume) {
    snprintf(r->dir, sizeof r->dir, "%s", r->o->resume);
    char *slash = strrchr(r->dir, '/');
    if (slash) *slash = 0;
    else snprintf(r->dir, sizeof r->dir, ".");
    return CNN_OK;
  }
  char base[512];
  if (r->o->out) {
    snprintf(base, sizeof base, "%s", r->o->out);
  } else {
    const char *s = strrchr(r->model_name, '/');
    s = s ? s + 1 : r->model_name;
    snprintf(base, sizeof base, "runs/%.*s", (int)strcspn(s, "."), s);
  }
  for (int k = 1; k < 1000; k++) {
    if (k == 1) snprintf(r->dir, sizeof r->dir, "%s", base);
    else snprintf(r->dir, sizeof r->dir, "%s-%d", base, k);
    char probe[1100];
    snprintf(probe, sizeof probe, "%s/last.safetensors", r->dir);
    struct stat st;
    if (stat(probe, &st) != 0) {
      if (k > 1 && !r->o->quiet)
        fprintf(stderr, "cnn train: %s holds an earlier run; writing to %s\n", base, r->dir);
      break;
    }
  }
  if (cli_mkdirs(r->dir)) return cnn_error(CNN_ERR_IO, "cannot create %s: %s", r->dir, strerror(errno));
  return CNN_OK;
}

static cnn_status save(run *r, const char *name) {
  char path[1100];
  snprintf(path, sizeof path, "%s/%s", r->dir, name);
  r->meta.step = cnn_net_step_count(r->net);
  r->meta.tc = r->tc;
  r->meta.seed = r->tc.seed;
  char *json = cli_meta_json(&r->meta);
  /* best.safetensors is for eval, predict, export and --init: no optimizer state */
  int light = !strcmp(name, "best.safetensors") && !r->o->best_with_optimizer;
  cnn_status st = cnn_net_save_flags(r->net, path, json, light ? CNN_SAVE_NO_OPTIMIZER : 0);
  free(json);
  return st;
}

/* --device-data: the training set in backend memory, batches made there (auto: on
 * a GPU, whenever it fits; on the CPU the loader thread overlaps batch making with
 * the step, which measured faster on 2 cores) */
static cnn_status bind_data(run *r, const cnn_loader_config *lc) {
  const char *m = r->o->device_data;
  if (strcmp(m, "auto") && strcmp(m, "on") && strcmp(m, "off"))
    return cnn_error(CNN_ERR_ARG, "--device-data %s: expected auto, on or off", m);
  if (strcmp(r->o->cuda_graph, "on") && strcmp(r->o->cuda_graph, "off"))
    return cnn_error(CNN_ERR_ARG, "--cuda-graph %s: expected on or off", r->o->cuda_graph);
  CNN_TRY(cnn_net_set_graphs(r->net, !strcmp(r->o->cuda_graph, "on")));
  if (!strcmp(m, "off") || (!strcmp(m, "auto") && strcmp(r->device, "cuda"))) return CNN_OK;
  cnn_status st = cnn_net_bind_data(r->net, lc);
  if (st == CNN_OK) {
    r->bound = 1;
    return CNN_OK;
  }
  if (!strcmp(m, "on")) return st;
  if (!r->o->quiet) /* auto: too large for the device, stream it */
    fprintf(stderr, "cnn train: the training set stays on the host: %s\n", cnn_last_error());
  return CNN_OK;
}

/* metrics.jsonl: on resume, drop what the interrupted run wrote after the checkpoint */
static void trim_metrics(const char *path, int64_t max_step) {
  FILE *f = fopen(path, "r");
  if (!f) return;
  char tmp[1200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *g = fopen(tmp, "w");
  char line[4096];
  while (g && fgets(line, sizeof line, f)) {
    const char *s = strstr(line, "\"step\":");
    if (s && strtoll(s + 7, NULL, 10) > max_step) continue;
    fputs(line, g);
  }
  fclose(f);
  if (g && fclose(g) == 0) rename(tmp, path);
}

/* Before training: the run folder takes files (create and remove a probe) and
 * has room for checkpoints: a write needs the new file next to the old one, so
 * twice the bytes of one (parameters, statistics, optimizer state). Finding out
 * at the first checkpoint would cost an epoch. */
static cnn_status check_run_dir(run *r) {
  const char *fix = r->o->resume ? "copy the checkpoint to another folder and resume from there"
                                 : "choose another folder with --out";
  char probe[1100];
  snprintf(probe, sizeof probe, "%s/.cnn-probe.%ld", r->dir, (long)getpid());
  errno = 0;
  int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0 || write(fd, "cnn", 3) != 3) {
    int err = errno ? errno : EIO;
    if (fd >= 0) {
      close(fd);
      unlink(probe);
    }
    return cnn_error(CNN_ERR_IO, "the run folder %s is not writable (%s), and checkpoints, "
                     "metrics and the report go there: %s", r->dir, strerror(err), fix);
  }
  close(fd);
  unlink(probe);
  double bytes = 4096; /* the header */
  for (int i = 0; i < cnn_net_num_tensors(r->net); i++) {
    cnn_param_desc d;
    if (cnn_net_tensor_desc(r->net, i, &d) == CNN_OK) bytes += 4.0 * (double)d.count;
  }
  bytes += 4.0 * (double)r->info.num_params * cnn_net_opt_slots(r->net);
  struct statvfs fs;
  if (statvfs(r->dir, &fs) == 0 && (double)fs.f_bavail * fs.f_frsize < 2 * bytes)
    return cnn_error(CNN_ERR_IO, "the run folder %s has %.1f MB free, but a checkpoint needs "
                     "%.1f MB and writing one twice that: free some space or %s", r->dir,
                     (double)fs.f_bavail * fs.f_frsize / 1e6, bytes / 1e6, fix);
  return CNN_OK;
}

static cnn_status setup(run *r) {
  const train_opts *o = r->o;
  if (o->resume && o->weights)
    return cnn_error(CNN_ERR_ARG, "--weights starts a run from Darknet weights; --resume "
                     "continues a run from its checkpoint: give one of them");
  if (o->init && (o->resume || o->weights))
    return cnn_error(CNN_ERR_ARG, "--init starts a new run from a checkpoint's matching tensors; "
                     "%s: give one of them", o->resume ? "--resume continues a run" :
                     "--weights starts from Darknet weights");
  if (o->resume) {
    CNN_TRY(cli_meta_read(o->resume, &r->meta));
    /* a cfg given with --resume must match the checkpoint: loading checks every tensor */
    r->cfg_text = o->model ? cli_read_text(o->model) : strdup(r->meta.cfg);
    if (!r->cfg_text) return CNN_ERR_IO;
    r->model_name = o->model ? o->model : o->resume;
  } else {
    r->cfg_text = cli_read_text(o->model);
    if (!r->cfg_text) return CNN_ERR_IO;
    if (o->weights) { /* a Darknet model: its batch norm's epsilon, in the checkpoints' cfg too */
      char *t;
      CNN_TRY(cnn_darknet_cfg_text(r->cfg_text, o->model, &t));
      free(r->cfg_text);
      r->cfg_text = t;
    }
    r->model_name = o->model;
    r->meta.cfg = strdup(r->cfg_text);
  }
  CNN_TRY(cnn_net_from_cfg_text(r->cfg_text, r->model_name, &r->net));
  CNN_TRY(cnn_net_info_get(r->net, &r->info));
  if (o->resume) CNN_TRY(cli_meta_check_model(o->resume, &r->meta, &r->info));
  if (o->freeze) CNN_TRY(cli_freeze_sections(r->net, o->freeze, &r->meta.freeze));
  CNN_TRY(cnn_net_set_frozen(r->net, r->meta.freeze)); /* --resume: the checkpoint's */
  if (o->resume) r->tc = r->meta.tc;
  else CNN_TRY(cnn_net_train_config(r->net, &r->tc));
  if (!o->resume) CNN_TRY(cfg_data_keys(r));
  CNN_TRY(apply_flags(r));
  cnn_precision prec;
  CNN_TRY(cnn_precision_parse(o->precision, &prec));
  CNN_TRY(cnn_net_set_train_config(r->net, &r->tc));
  CNN_TRY(open_data(r));
  CNN_TRY(check_data_opts(r));
  set_class_names(r);
  if (o->weights && !r->meta.channels) { /* Darknet's models take pixels in [0, 1] */
    r->meta.channels = r->info.channels;
    for (int c = 0; c < 4; c++) r->meta.mean[c] = 0, r->meta.std[c] = 1;
  }
  if (o->init && !r->meta.channels) cli_init_norm(o->init, r->info.channels, &r->meta, o->quiet ? NULL : stderr);
  if (!r->meta.channels) { /* normalisation from the training set */
    r->meta.channels = r->info.channels;
    CNN_TRY(cnn_dataset_mean_std(&r->train, r->meta.mean, r->meta.std));
  }
  r->device = o->device;
  if (!strcmp(r->device, "auto")) r->device = cnn_cuda_device_count() > 0 ? "cuda" : "cpu";
  CNN_TRY(cnn_backend_create(r->device, &r->b));
  CNN_TRY(cli_engine_apply(r->b, &o->eng));
  CNN_TRY(cnn_net_set_precision(r->net, r->b, prec));
  r->batch = o->batch ? o->batch : o->resume && r->meta.batch ? r->meta.batch : r->info.batch;
  CNN_TRY(cli_batch_train(r->net, r->b, o->device_data, &r->train, &r->test, r->batch,
                          o->no_memory_check, o->quiet, &r->batch));
  r->meta.batch = r->batch;
  CNN_TRY(cnn_net_build(r->net, r->b, r->batch, CNN_MODE_TRAIN));
  if (o->resume) CNN_TRY(cnn_net_load(r->net, o->resume));
  if (o->weights) {
    cnn_darknet_info dn;
    CNN_TRY(cnn_darknet_load(r->net, o->weights, &dn));
    if (!o->quiet)
      fprintf(stderr, "cnn train: starting from %s (Darknet %d.%d.%d, %llu images seen)\n",
              o->weights, dn.major, dn.minor, dn.revision, (unsigned long long)dn.seen);
  }
  if (o->init) {
    free(r->meta.init);
    CNN_TRY(cli_init_from(r->net, o->init, o->quiet ? NULL : stderr, &r->meta.init));
  }
  if (!o->quiet) cli_freeze_print(r->net, stderr);
  cnn_loader_config lc = {0};
  lc.data = &r->train;
  lc.batch = r->batch;
  lc.shuffle = 1;
  lc.seed = r->tc.seed;
  lc.channels = r->info.channels;
  memcpy(lc.mean, r->meta.mean, sizeof lc.mean);
  memcpy(lc.std, r->meta.std, sizeof lc.std);
  lc.aug.crop_pad = r->meta.crop;
  lc.aug.flip = r->meta.flip;
  lc.aug.cutout = r->meta.cutout;
  lc.threaded = 1;
  lc.host_alloc = cnn_host_alloc; /* pinned on cuda: the upload needs no staging copy */
  lc.host_free = cnn_host_free;
  lc.host_ctx = r->b;
  CNN_TRY(cnn_loader_create(&lc, &r->loader));
  CNN_TRY(bind_data(r, &lc));
  int64_t total = (int64_t)r->tc.epochs * cnn_loader_batches_per_epoch(r->loader);
  r->meta.total_steps = total;
  CNN_TRY(cnn_net_set_step_count(r->net, cnn_net_step_count(r->net), total));
  CNN_TRY(pick_dir(r));
  CNN_TRY(check_run_dir(r));
  return CNN_OK;
}

static void metrics_line(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void metrics_line(run *r, const char *fmt, ...) {
  char path[1100];
  snprintf(path, sizeof path, "%s/metrics.jsonl", r->dir);
  FILE *f = fopen(path, "a");
  if (!f) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fputc('\n', f);
  fclose(f);
}

static void print_hyper(const run *r) {
  static const char *const opt[] = {"sgd", "adam", "adamw"};
  static const char *const sch[] = {"constant", "step", "cosine", "onecycle", "poly"};
  const cnn_train_config *t = &r->tc;
  char line[4096];
  snprintf(line, sizeof line,
           "cnn train: %s on %s, device %s, precision %s, batch %d, %d epochs, %s lr %g "
           "(%s), seed %llu -> %s",
           r->model_name, r->meta.data, r->device, cnn_precision_name(cnn_net_precision(r->net)),
           r->batch, t->epochs, opt[t->optimizer],
           t->learning_rate, sch[t->schedule], (unsigned long long)t->seed, r->dir);
  cli_term_print(stderr, line); /* wrapped on a terminal */
}

/* metrics.jsonl step lines for the accepted steps the last metrics read covers */
static void step_lines(run *r, int epoch, int64_t *written, int64_t upto) {
  float loss[256];
  while (*written < upto) {
    int want = upto - *written < 256 ? (int)(upto - *written) : 256;
    int got = cnn_net_step_losses(r->net, *written, want, loss);
    if (got <= 0) { /* fell out of the loss ring: nothing to write for these steps */
      *written = upto;
      break;
    }
    for (int i = 0; i < got; i++) {
      int64_t s = *written + i;
      metrics_line(r, "{\"type\":\"step\",\"epoch\":%d,\"step\":%lld,\"loss\":%.6g,\"lr\":%.6g}",
                   epoch + 1, (long long)(s + 1), loss[i],
                   cnn_net_lr_at(r->net, s));
    }
    *written += got;
  }
}

/* the backend's thread team (team_info): the seconds it has run smaller than full */
static double team_reduced(const run *r, int *team, int *full) {
  double s = 0.0;
  *team = *full = 0;
  if (r->b->ops->team_info) r->b->ops->team_info(r->b->ctx, team, full, &s);
  return s;
}

/* One epoch of training; returns the mean loss and accuracy. Steps are launched
 * without waiting; the metrics are read asynchronously at most every READ_S
 * seconds (and every READ_STEPS steps, so the device's loss ring never wraps
 * before its step lines are written), and waited for at the end of the epoch. */
#define READ_S 0.25
#define READ_STEPS 256
static cnn_status train_epoch(run *r, int epoch, int first, cli_progress *pg, double *loss,
                              double *acc, double *secs, int *stopped) {
  const train_opts *o = r->o;
  if (!r->bound) CNN_TRY(cnn_loader_start_epoch(r->loader, epoch, first));
  CNN_TRY(cnn_net_train_metrics_reset(r->net));
  int steps = cnn_loader_batches_per_epoch(r->loader), k = first;
  double t0 = now(), last_read = t0;
  cnn_train_metrics m;
  CNN_TRY(cnn_net_train_metrics(r->net, 1, &m));
  int64_t written = m.step, launched = m.launched, read_at = launched, refused0 = m.refused;
  const float *x;
  const int32_t *y;
  int n;
  cnn_status st = CNN_OK;
  while (st == CNN_OK && k < steps) {
    if (r->bound) { /* the batch is made on the device */
      int got = 0;
      st = cnn_net_train_bound(r->net, epoch, k, 1, &got);
      if (st == CNN_OK && got != 1) st = cnn_error(CNN_ERR_ARG, "the bound data ended early");
    } else if (!cnn_loader_next(r->loader, &x, &y, &n)) {
      break;
    } else {
      st = cnn_net_train_launch(r->net, x, y, n);
    }
    if (st != CNN_OK) break;
    k++;
    launched++;
    double t = now();
    int kill = o->kill_at_step > 0 && launched >= o->kill_at_step;
    if (o->interrupt_at_step > 0 && launched == o->interrupt_at_step) raise(SIGINT); /* testing aid */
    *stopped = cli_interrupted() && k < steps; /* Ctrl-C: stop after this step */
    int end = k == steps || *stopped;
    if (!end && !kill && t - last_read < READ_S && launched - read_at < READ_STEPS) continue;
    /* wait when the loss ring would wrap, at the end of the epoch, and before a kill */
    st = cnn_net_train_metrics(r->net, end || kill || launched - read_at >= 2 * READ_STEPS, &m);
    if (st != CNN_OK) break;
    if (!m.fresh) continue;
    last_read = t;
    read_at = launched;
    step_lines(r, epoch, &written, m.step);
    if (m.refused > refused0) { /* a refused step changed nothing; a second one stops */
      cli_progress_end_epoch(pg);
      fprintf(stderr, "cnn train: step %lld was refused (a non-finite input or loss); the "
              "parameters were left unchanged\n", (long long)m.last_refused + 1);
      if (m.refused > refused0 + 1) {
        st = cnn_error(CNN_ERR_NUMERIC, "the loss is NaN or infinite: %lld steps refused, the "
                       "last at step %lld", (long long)(m.refused - refused0),
                       (long long)m.last_refused + 1);
        break;
      }
      refused0 = m.refused;
    }
    t = now() - t0;
    if (m.seen > 0)
      cli_progress_step(pg, now(), epoch + 1, r->tc.epochs, k, steps, m.step, m.loss_sum / m.seen,
                        (double)m.correct / m.seen, m.seen / t, t / (k - first) * (steps - k));
    if (o->kill_at_step > 0 && m.step >= o->kill_at_step) raise(SIGKILL); /* testing aid */
    if (*stopped) break;
  }
  cli_progress_end_epoch(pg);
  if (st != CNN_OK) return st;
  *loss = m.seen ? m.loss_sum / m.seen : 0;
  *acc = m.seen ? (double)m.correct / m.seen : 0;
  *secs = now() - t0;
  return CNN_OK;
}

int cli_report_from_run(const char *dir, const char *title, const char *summary_file,
                        const cli_meta *meta, const char *device, const int64_t *confusion,
                        int classes, const char *note);

static int finish_report(run *r, const int64_t *confusion, const char *note) {
  char sum[1100];
  snprintf(sum, sizeof sum, "%s/summary.txt", r->dir);
  FILE *f = fopen(sum, "w");
  if (f) {
    cnn_net_summary(r->net, r->batch, f);
    cnn_plan_info p;
    if (cnn_net_plan_info(r->net, &p) == CNN_OK) {
      fputc('\n', f);
      cnn_plan_print(&p, r->device, f);
    }
    fclose(f);
  }
  int rc = cli_report_from_run(r->dir, r->model_name, sum, &r->meta, r->device, confusion,
                               r->info.classes, note);
  if (rc != 0) fprintf(stderr, "cnn train: report: %s\n", cnn_last_error());
  return rc;
}

/* Ctrl-C: the state after the last step is in last.safetensors (mid-epoch: the
 * resumed run starts at the next batch); say how to go on. Exit status 130, as
 * for a process ended by SIGINT: the run is not finished. */
static int stop_interrupted(run *r, const cli_eval *ev) {
  int64_t step = cnn_net_step_count(r->net);
  char note[256], msg[2400];
  snprintf(note, sizeof note, "stopped by Ctrl-C at step %lld of %lld (epoch %d of %d)",
           (long long)step, (long long)r->meta.total_steps, r->meta.epoch + (step > 0 &&
           step % cnn_loader_batches_per_epoch(r->loader) ? 1 : 0), r->tc.epochs);
  if (save(r, "last.safetensors") != CNN_OK) return cli_fail("writing a checkpoint");
  int bad = finish_report(r, ev->confusion, note);
  char extra[64] = "";
  if (r->o->patience) snprintf(extra, sizeof extra, " --patience %d", r->o->patience);
  snprintf(msg, sizeof msg, "cnn train: %s; saved %s/last.safetensors", note, r->dir);
  cli_term_print(stderr, msg);
  snprintf(msg, sizeof msg, "cnn train: to continue: cnn train --resume %s/last.safetensors%s",
           r->dir, extra);
  cli_term_print(stderr, msg);
  if (!bad) {
    snprintf(msg, sizeof msg, "report: %s/report.html", r->dir);
    cli_term_print(stderr, msg);
  }
  return 130;
}

static int train_loop(run *r) {
  cli_progress pg;
  cli_progress_init(&pg, r->o->quiet);
  if (!r->o->quiet) print_hyper(r);
  char mpath[1100], line[2400], note[256] = "";
  snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", r->dir);
  if (r->o->resume) trim_metrics(mpath, cnn_net_step_count(r->net));
  else remove(mpath);
  int steps = cnn_loader_batches_per_epoch(r->loader);
  /* a checkpoint written mid-epoch (Ctrl-C) goes on at the epoch's next batch */
  int64_t s0 = cnn_net_step_count(r->net), first = s0 - (int64_t)r->meta.epoch * steps;
  if (first <= 0 || first >= steps) first = 0;
  cli_progress_start_run(&pg, now(), s0, r->meta.total_steps);
  cli_eval ev = {0};
  for (int e = r->meta.epoch; e < r->tc.epochs; e++, first = 0) {
    double loss, acc, secs;
    int stopped = 0, team, full;
    double reduced0 = team_reduced(r, &team, &full);
    cnn_status st = train_epoch(r, e, (int)first, &pg, &loss, &acc, &secs, &stopped);
    if (st != CNN_OK) {
      fprintf(stderr, "cnn train: %s\n", cnn_last_error());
      if (r->meta.epoch > 0)
        fprintf(stderr, "cnn train: stopped; the last good checkpoint is %s/last.safetensors "
                        "(epoch %d)\n", r->dir, r->meta.epoch);
      else
        fprintf(stderr, "cnn train: stopped in the first epoch; no checkpoint was written\n");
      free(ev.confusion);
      return 1;
    }
    if (stopped) {
      int rc = stop_interrupted(r, &ev);
      free(ev.confusion);
      return rc;
    }
    free(ev.confusion);
    st = cli_evaluate(r->net, &r->test, r->batch, r->meta.mean, r->meta.std, &ev);
    if (st != CNN_OK) return cli_fail("evaluating");
    r->meta.epoch = e + 1;
    r->meta.acc = ev.acc;
    int best = ev.acc > r->meta.best_acc || r->meta.best_epoch == 0;
    if (best) {
      r->meta.best_acc = ev.acc;
      r->meta.best_epoch = e + 1;
    }
    if ((best && save(r, "best.safetensors") != CNN_OK) || save(r, "last.safetensors") != CNN_OK)
      return cli_fail("writing a checkpoint");
    double ips = secs > 0 ? (double)r->train.n * (steps - first) / steps / secs : 0;
    metrics_line(r,
                 "{\"type\":\"epoch\",\"epoch\":%d,\"step\":%lld,\"train_loss\":%.6g,"
                 "\"train_acc\":%.6g,\"%s_loss\":%.6g,\"%s_acc\":%.6g,\"lr\":%.6g,"
                 "\"seconds\":%.3f,\"images_per_s\":%.1f}",
                 e + 1, (long long)cnn_net_step_count(r->net), loss, acc, r->eval_name, ev.loss,
                 r->eval_name, ev.acc, cnn_net_current_lr(r->net), secs, ips);
    if (!r->o->quiet) {
      int n = snprintf(line, sizeof line, "epoch %d/%d: train loss %.4f acc %.4f | %s loss %.4f "
                       "acc %.4f | %.1f s, %.0f img/s, %d steps", e + 1, r->tc.epochs, loss, acc,
                       r->eval_name, ev.loss, ev.acc, secs, ips, steps - (int)first);
      /* say when the team ran smaller (other processes on our cores): it explains a
       * slow epoch, which otherwise looks like ours */
      double cut = secs > 0 ? (team_reduced(r, &team, &full) - reduced0) / secs : 0;
      if (cut >= 0.05 && n > 0 && (size_t)n < sizeof line)
        snprintf(line + n, sizeof line - (size_t)n, " | %.0f%% of it on fewer than %d threads: "
                 "other processes were using the cores", 100 * (cut < 1 ? cut : 1), full);
      cli_term_print(stdout, line);
    }
    fflush(stdout);
    if (cli_interrupted() && e + 1 < r->tc.epochs) { /* Ctrl-C during the evaluation */
      int rc = stop_interrupted(r, &ev);
      free(ev.confusion);
      return rc;
    }
    int stale = e + 1 - r->meta.best_epoch;
    if (r->o->patience && stale >= r->o->patience && e + 1 < r->tc.epochs) {
      snprintf(note, sizeof note, "stopped early after epoch %d of %d: no better %s accuracy "
               "for %d epoch%s (--patience %d)", e + 1, r->tc.epochs, r->eval_name, stale,
               stale == 1 ? "" : "s", r->o->patience);
      if (!r->o->quiet) {
        snprintf(line, sizeof line, "cnn train: %s; best.safetensors holds epoch %d", note,
                 r->meta.best_epoch);
        cli_term_print(stderr, line);
      }
      break;
    }
  }
  if (!ev.confusion) { /* resumed after the last epoch: evaluate once for the report */
    if (cli_evaluate(r->net, &r->test, r->batch, r->meta.mean, r->meta.std, &ev) != CNN_OK)
      return cli_fail("evaluating");
  }
  int bad = finish_report(r, ev.confusion, note[0] ? note : NULL);
  char tail[1200];
  if (bad) snprintf(tail, sizeof tail, "run folder %s", r->dir);
  else snprintf(tail, sizeof tail, "report %s/report.html", r->dir);
  char early[64] = "";
  if (note[0]) snprintf(early, sizeof early, ", stopped early after epoch %d", r->meta.epoch);
  snprintf(line, sizeof line, "final %s accuracy: %.4f (best %.4f at epoch %d%s); %s",
           r->eval_name, ev.acc, r->meta.best_acc, r->meta.best_epoch, early, tail);
  cli_term_print(stdout, line);
  free(ev.confusion);
  return 0;
}

int cli_train_run(const train_opts *o) {
  if (o->threads) {
    char buf[16];
    snprintf(buf, sizeof buf, "%d", o->threads);
    setenv("OMP_NUM_THREADS", buf, 1); /* overrides the cpu backend's default */
#ifdef _OPENMP
    omp_set_num_threads(o->threads); /* libgomp read the environment when it loaded */
#endif
  }
  run r;
  memset(&r, 0, sizeof r);
  r.o = o;
  int rc = 1;
  if (setup(&r) == CNN_OK) {
    cli_interrupt_install(); /* Ctrl-C from here on: stop after the current step */
    rc = train_loop(&r);
    cli_interrupt_restore();
  } else {
    rc = cli_fail(NULL);
  }
  cnn_loader_destroy(r.loader);
  cnn_net_destroy(r.net);
  cnn_backend_destroy(r.b);
  cnn_dataset_free(&r.train);
  cnn_dataset_free(&r.test);
  cli_meta_free(&r.meta);
  free(r.cfg_text);
  return rc;
}
