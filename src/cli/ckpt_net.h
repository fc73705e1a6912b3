/* Opening a checkpoint as a ready net: its metadata, the net from its cfg,
 * built on a device for inference, and its tensors loaded; or the same from a
 * Darknet cfg and weights. */
#ifndef CNN_CLI_CKPT_NET_H
#define CNN_CLI_CKPT_NET_H

#include "cli/cli.h"
#include "cli/meta.h"
#include "cnn/cnn.h"

typedef struct cli_model {
  cli_meta meta;
  cnn_net *net;
  cnn_backend *b;
  cnn_net_info info;
  const char *device;
  const char *ckpt;  /* the checkpoint whose tensors cli_model_build loads; NULL: Darknet's */
  char what[1100];   /* the model as printed: the checkpoint, or cfg with weights */
} cli_model;

/* precision: "auto", "fp32", "tf32" or "bf16" (NULL: auto); the choice is printed on stderr */
cnn_status cli_model_open(const char *ckpt, const char *device, const char *precision,
                          const cli_engine *eng, int batch, cli_model *m);
/* A Darknet cfg with its .weights (--weights): the cfg with Darknet's bn_eps
 * (cnn_darknet_cfg_text), pixels in [0, 1] (mean 0, std 1), class names from
 * `classes` as cnn import's --classes (NULL: 0, 1, ...), no dataset. */
cnn_status cli_model_open_darknet(const char *cfg, const char *weights, const char *classes,
                                  const char *device, const char *precision,
                                  const cli_engine *eng, int batch, cli_model *m);
/* The same in three steps, so that a caller can choose the batch on the device
 * before building (--batch auto): the net from the checkpoint (or Darknet's cfg and
 * weights, its tensors loaded into the host copy), not on any device yet; then the
 * device and precision (printed); then the build and, for a checkpoint, its tensors. */
cnn_status cli_model_prepare(const char *ckpt, cli_model *m);
cnn_status cli_model_prepare_darknet(const char *cfg, const char *weights, const char *classes,
                                     cli_model *m);
cnn_status cli_model_device(cli_model *m, const char *device, const char *precision,
                            const cli_engine *eng);
cnn_status cli_model_build(cli_model *m, int batch);
void cli_model_close(cli_model *m);

#endif
