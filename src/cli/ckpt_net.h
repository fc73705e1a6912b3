/* Opening a checkpoint as a ready net: its metadata, the net from its cfg,
 * built on a device for inference, and its tensors loaded. */
#ifndef CNN_CLI_CKPT_NET_H
#define CNN_CLI_CKPT_NET_H

#include "cli/meta.h"
#include "cnn/cnn.h"

typedef struct cli_model {
  cli_meta meta;
  cnn_net *net;
  cnn_backend *b;
  cnn_net_info info;
  const char *device;
} cli_model;

cnn_status cli_model_open(const char *ckpt, const char *device, int batch, cli_model *m);
void cli_model_close(cli_model *m);

#endif
