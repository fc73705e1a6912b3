#include "cli/ckpt_net.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"

cnn_status cli_model_open(const char *ckpt, const char *device, const char *precision, int batch,
                          cli_model *m) {
  memset(m, 0, sizeof *m);
  CNN_TRY(cli_meta_read(ckpt, &m->meta));
  CNN_TRY(cnn_net_from_cfg_text(m->meta.cfg, ckpt, &m->net));
  CNN_TRY(cnn_net_info_get(m->net, &m->info));
  CNN_TRY(cli_meta_check_model(ckpt, &m->meta, &m->info));
  m->device = !device || !strcmp(device, "auto") ? (cnn_cuda_device_count() > 0 ? "cuda" : "cpu")
                                                 : device;
  CNN_TRY(cnn_backend_create(m->device, &m->b));
  cnn_precision p;
  CNN_TRY(cnn_precision_parse(precision ? precision : "auto", &p));
  CNN_TRY(cnn_net_set_precision(m->net, m->b, p));
  fprintf(stderr, "cnn: %s on %s, precision %s%s\n", ckpt, m->device,
          cnn_precision_name(cnn_net_precision(m->net)), p == CNN_PRECISION_AUTO ? " (auto)" : "");
  CNN_TRY(cnn_net_build(m->net, m->b, batch, CNN_MODE_INFER));
  return cnn_net_load(m->net, ckpt);
}

void cli_model_close(cli_model *m) {
  cnn_net_destroy(m->net);
  cnn_backend_destroy(m->b);
  cli_meta_free(&m->meta);
  memset(m, 0, sizeof *m);
}
