#include "cli/ckpt_net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/evaluate.h"
#include "cli/exchange.h"
#include "core/error.h"
#include "exchange/darknet_weights.h"

cnn_status cli_model_device(cli_model *m, const char *device, const char *precision,
                            const cli_engine *eng) {
  m->device = !device || !strcmp(device, "auto") ? (cnn_cuda_device_count() > 0 ? "cuda" : "cpu")
                                                 : device;
  CNN_TRY(cnn_backend_create(m->device, &m->b));
  CNN_TRY(cli_engine_apply(m->b, eng));
  cnn_precision p;
  CNN_TRY(cnn_precision_parse(precision ? precision : "auto", &p));
  CNN_TRY(cnn_net_set_precision(m->net, m->b, p));
  fprintf(stderr, "cnn: %s on %s, precision %s%s\n", m->what, m->device,
          cnn_precision_name(cnn_net_precision(m->net)), p == CNN_PRECISION_AUTO ? " (auto)" : "");
  return CNN_OK;
}

cnn_status cli_model_build(cli_model *m, int batch) {
  CNN_TRY(cnn_net_build(m->net, m->b, batch, CNN_MODE_INFER));
  return m->ckpt ? cnn_net_load(m->net, m->ckpt) : CNN_OK;
}

cnn_status cli_model_prepare(const char *ckpt, cli_model *m) {
  memset(m, 0, sizeof *m);
  m->ckpt = ckpt;
  snprintf(m->what, sizeof m->what, "%s", ckpt);
  CNN_TRY(cli_meta_read(ckpt, &m->meta));
  CNN_TRY(cnn_net_from_cfg_text(m->meta.cfg, ckpt, &m->net));
  CNN_TRY(cnn_net_info_get(m->net, &m->info));
  return cli_meta_check_model(ckpt, &m->meta, &m->info);
}

cnn_status cli_model_open(const char *ckpt, const char *device, const char *precision,
                          const cli_engine *eng, int batch, cli_model *m) {
  CNN_TRY(cli_model_prepare(ckpt, m));
  CNN_TRY(cli_model_device(m, device, precision, eng));
  return cli_model_build(m, batch);
}

cnn_status cli_model_prepare_darknet(const char *cfg, const char *weights, const char *classes,
                                     cli_model *m) {
  memset(m, 0, sizeof *m);
  if (!(cfg = cli_model_cfg(cfg))) return CNN_ERR_IO;
  char *text = cli_read_text(cfg);
  if (!text) return CNN_ERR_IO;
  cnn_status st = cnn_darknet_cfg_text(text, cfg, &m->meta.cfg);
  free(text);
  CNN_TRY(st);
  CNN_TRY(cnn_net_from_cfg_text(m->meta.cfg, cfg, &m->net));
  CNN_TRY(cnn_net_info_get(m->net, &m->info));
  cnn_darknet_info info;
  CNN_TRY(cnn_darknet_load(m->net, weights, &info)); /* into the host copy, before building */
  if (m->info.channels > 4)
    return cnn_error(CNN_ERR_SHAPE, "%s takes %d input channels; cnn's images have at most 4", cfg,
                     m->info.channels);
  /* what a checkpoint would say: Darknet's models take pixels in [0, 1] */
  m->meta.channels = m->info.channels;
  m->meta.classes = m->info.classes;
  for (int c = 0; c < 4; c++) m->meta.mean[c] = 0, m->meta.std[c] = 1;
  CNN_TRY(cli_class_names(classes, m->info.classes, &m->meta.class_names));
  snprintf(m->what, sizeof m->what, "%s with %s (Darknet %d.%d.%d, %llu images seen)", cfg,
           weights, info.major, info.minor, info.revision, (unsigned long long)info.seen);
  return CNN_OK;
}

cnn_status cli_model_open_darknet(const char *cfg, const char *weights, const char *classes,
                                  const char *device, const char *precision,
                                  const cli_engine *eng, int batch, cli_model *m) {
  CNN_TRY(cli_model_prepare_darknet(cfg, weights, classes, m));
  m->meta.batch = batch;
  CNN_TRY(cli_model_device(m, device, precision, eng));
  return cli_model_build(m, batch);
}

void cli_model_close(cli_model *m) {
  cnn_net_destroy(m->net);
  cnn_backend_destroy(m->b);
  cli_meta_free(&m->meta);
  memset(m, 0, sizeof *m);
}
