/* Hyper-parameters from [net] (Darknet's keys) and [train] (ours). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/net.h"

static void defaults(cnn_train_config *t) {
  memset(t, 0, sizeof *t);
  t->optimizer = CNN_OPT_SGD;
  t->learning_rate = 0.01f;
  t->momentum = 0.9f;
  t->weight_decay = 0.0005f;
  t->beta1 = 0.9f;
  t->beta2 = 0.999f;
  t->eps = 1e-8f;
  t->schedule = CNN_SCHED_CONSTANT;
  t->gamma = 0.1f;
  t->power = 4;
  t->bn_momentum = 0.1f;
  t->bn_eps = 1e-5f;
  t->seed = 1;
  t->epochs = 1;
}

/* Darknet keys that describe its own augmentation / bookkeeping; accepted so its
 * cfgs load unchanged, and not used (augmentation is configured in [train]) */
static const char *const darknet_ignored[] = {
    "subdivisions", "max_crop", "min_crop", "hue", "saturation", "exposure", "angle", "aspect",
    "jitter", "flip", "mosaic", "letter_box", "inputs", "time_steps", "center", "scale_x_y",
    "max_chart_loss", "blur", "mixup", "cutmix", "label_smooth_eps", NULL};

static cnn_status parse_policy(cnn_net *net, const cnn_cfg *cfg, cnn_cfg_section *s, const char *key) {
  cnn_cfg_kv *kv = cnn_cfg_find(s, key);
  if (!kv) return CNN_OK;
  kv->used = 1;
  const char *v = kv->value;
  cnn_train_config *t = &net->tc;
  if (!strcmp(v, "constant")) t->schedule = CNN_SCHED_CONSTANT;
  else if (!strcmp(v, "step") || !strcmp(v, "steps")) t->schedule = CNN_SCHED_STEP;
  else if (!strcmp(v, "cosine") || !strcmp(v, "cos") || !strcmp(v, "sgdr")) t->schedule = CNN_SCHED_COSINE;
  else if (!strcmp(v, "onecycle") || !strcmp(v, "one-cycle")) t->schedule = CNN_SCHED_ONECYCLE;
  else if (!strcmp(v, "poly")) t->schedule = CNN_SCHED_POLY;
  else
    return cnn_cfg_key_error(cfg, s, kv, CNN_ERR_PARSE,
                             "unsupported schedule (expected constant, step, steps, cosine, "
                             "onecycle or poly)");
  return CNN_OK;
}

/* Darknet's steps=a,b scales=x,y: we keep the first pair as a periodic step */
static cnn_status parse_steps(cnn_net *net, const cnn_cfg *cfg, cnn_cfg_section *s) {
  cnn_cfg_kv *st = cnn_cfg_find(s, "steps"), *sc = cnn_cfg_find(s, "scales");
  if (st) {
    st->used = 1;
    char *end;
    long v = strtol(st->value, &end, 10);
    if (end == st->value || v <= 0 || (*end && *end != ','))
      return cnn_cfg_key_error(cfg, s, st, CNN_ERR_PARSE, "expected positive step counts");
    net->tc.step_size = (int)v;
  }
  if (sc) {
    sc->used = 1;
    char *end;
    double v = strtod(sc->value, &end);
    if (end == sc->value || !(v > 0) || (*end && *end != ','))
      return cnn_cfg_key_error(cfg, s, sc, CNN_ERR_PARSE, "expected positive scales");
    net->tc.gamma = (float)v;
  }
  return CNN_OK;
}

cnn_status cnn_net_parse_hyper(cnn_net *net, const cnn_cfg *cfg, cnn_cfg_section *s) {
  cnn_train_config *t = &net->tc;
  defaults(t);
  CNN_TRY(cnn_cfg_int(cfg, s, "batch", 1, 1, 1 << 16, &net->cfg_batch));
  CNN_TRY(cnn_cfg_int(cfg, s, "height", 0, 1, 1 << 16, &net->in_h));
  CNN_TRY(cnn_cfg_int(cfg, s, "width", 0, 1, 1 << 16, &net->in_w));
  CNN_TRY(cnn_cfg_int(cfg, s, "channels", 0, 1, 1 << 16, &net->in_c));
  CNN_TRY(cnn_cfg_float(cfg, s, "learning_rate", t->learning_rate, 0, 1e3, &t->learning_rate));
  CNN_TRY(cnn_cfg_float(cfg, s, "momentum", t->momentum, 0, 0.9999, &t->momentum));
  CNN_TRY(cnn_cfg_float(cfg, s, "decay", t->weight_decay, 0, 1, &t->weight_decay));
  CNN_TRY(parse_policy(net, cfg, s, "policy"));
  CNN_TRY(cnn_cfg_int(cfg, s, "step", 0, 1, 1 << 30, &t->step_size));
  CNN_TRY(cnn_cfg_float(cfg, s, "scale", t->gamma, 0, 1e3, &t->gamma));
  CNN_TRY(parse_steps(net, cfg, s));
  CNN_TRY(cnn_cfg_float(cfg, s, "power", t->power, 0, 100, &t->power));
  CNN_TRY(cnn_cfg_float(cfg, s, "gamma", t->gamma, 0, 1e3, &t->gamma));
  int mb, burn, adam;
  CNN_TRY(cnn_cfg_int(cfg, s, "max_batches", 0, 0, 1 << 30, &mb));
  t->total_steps = mb;
  CNN_TRY(cnn_cfg_int(cfg, s, "burn_in", 0, 0, 1 << 30, &burn));
  t->warmup_steps = burn;
  CNN_TRY(cnn_cfg_int(cfg, s, "adam", 0, 0, 1, &adam));
  if (adam) t->optimizer = CNN_OPT_ADAM;
  CNN_TRY(cnn_cfg_float(cfg, s, "B1", t->beta1, 0, 0.9999, &t->beta1));
  CNN_TRY(cnn_cfg_float(cfg, s, "B2", t->beta2, 0, 0.99999, &t->beta2));
  CNN_TRY(cnn_cfg_float(cfg, s, "eps", t->eps, 1e-12, 1, &t->eps));
  cnn_cfg_ignore(s, darknet_ignored);
  CNN_TRY(cnn_cfg_check_unused(cfg, s)); /* a misspelt key before a missing one */
  if (!net->in_h || !net->in_w || !net->in_c)
    return cnn_cfg_section_error(cfg, s, CNN_ERR_PARSE, "height, width and channels must be set");
  if ((double)net->in_h * net->in_w * net->in_c > (double)CNN_MAX_ELEMS_PER_IMAGE)
    return cnn_cfg_section_error(cfg, s, CNN_ERR_SHAPE, "input %dx%dx%d is too large", net->in_h,
                                 net->in_w, net->in_c);
  return CNN_OK;
}

cnn_status cnn_net_parse_train(cnn_net *net, const cnn_cfg *cfg, cnn_cfg_section *s) {
  cnn_train_config *t = &net->tc;
  cnn_cfg_kv *kv = cnn_cfg_find(s, "optimizer");
  if (kv) {
    kv->used = 1;
    if (!strcmp(kv->value, "sgd")) t->optimizer = CNN_OPT_SGD;
    else if (!strcmp(kv->value, "adam")) t->optimizer = CNN_OPT_ADAM;
    else if (!strcmp(kv->value, "adamw")) t->optimizer = CNN_OPT_ADAMW;
    else return cnn_cfg_key_error(cfg, s, kv, CNN_ERR_PARSE, "expected sgd, adam or adamw");
  }
  kv = cnn_cfg_find(s, "init");
  if (kv) {
    kv->used = 1;
    if (!strcmp(kv->value, "kaiming") || !strcmp(kv->value, "he")) t->init = 0;
    else if (!strcmp(kv->value, "xavier") || !strcmp(kv->value, "glorot")) t->init = 1;
    else return cnn_cfg_key_error(cfg, s, kv, CNN_ERR_PARSE, "expected kaiming or xavier");
  }
  CNN_TRY(parse_policy(net, cfg, s, "schedule"));
  CNN_TRY(cnn_cfg_float(cfg, s, "learning_rate", t->learning_rate, 0, 1e3, &t->learning_rate));
  CNN_TRY(cnn_cfg_float(cfg, s, "lr", t->learning_rate, 0, 1e3, &t->learning_rate));
  CNN_TRY(cnn_cfg_float(cfg, s, "momentum", t->momentum, 0, 0.9999, &t->momentum));
  CNN_TRY(cnn_cfg_int(cfg, s, "nesterov", t->nesterov, 0, 1, &t->nesterov));
  CNN_TRY(cnn_cfg_float(cfg, s, "weight_decay", t->weight_decay, 0, 1, &t->weight_decay));
  CNN_TRY(cnn_cfg_float(cfg, s, "beta1", t->beta1, 0, 0.9999, &t->beta1));
  CNN_TRY(cnn_cfg_float(cfg, s, "beta2", t->beta2, 0, 0.99999, &t->beta2));
  CNN_TRY(cnn_cfg_float(cfg, s, "eps", t->eps, 1e-12, 1, &t->eps));
  CNN_TRY(cnn_cfg_int(cfg, s, "warmup", t->warmup_steps, 0, 1 << 30, &t->warmup_steps));
  CNN_TRY(cnn_cfg_int(cfg, s, "step_size", t->step_size, 0, 1 << 30, &t->step_size));
  CNN_TRY(cnn_cfg_float(cfg, s, "gamma", t->gamma, 0, 1e3, &t->gamma));
  CNN_TRY(cnn_cfg_float(cfg, s, "final_lr", t->final_lr_frac, 0, 1, &t->final_lr_frac));
  CNN_TRY(cnn_cfg_float(cfg, s, "power", t->power, 0, 100, &t->power));
  CNN_TRY(cnn_cfg_float(cfg, s, "label_smoothing", t->label_smoothing, 0, 0.999, &t->label_smoothing));
  CNN_TRY(cnn_cfg_float(cfg, s, "bn_momentum", t->bn_momentum, 0, 1, &t->bn_momentum));
  CNN_TRY(cnn_cfg_float(cfg, s, "bn_eps", t->bn_eps, 1e-12, 1, &t->bn_eps));
  CNN_TRY(cnn_cfg_int(cfg, s, "epochs", t->epochs, 1, 1 << 20, &t->epochs));
  int seed;
  CNN_TRY(cnn_cfg_int(cfg, s, "seed", (int)t->seed, 0, 0x7fffffff, &seed));
  t->seed = (uint64_t)seed;
  /* keys read by the cnn command's data pipeline (see docs/cfg.md) */
  static const char *const data_keys[] = {"crop", "flip", "cutout", "mean", "std",
                                          "val_split", "normalize", NULL};
  cnn_cfg_ignore(s, data_keys);
  return cnn_cfg_check_unused(cfg, s);
}
