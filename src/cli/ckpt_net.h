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

/* precision: "auto", "fp32", "tf32" or "bf16" (NULL: auto); the choice is printed on stderr */
cnn_status cli_model_open(const char *ckpt, const char *device, const char *precision, int batch,
                          cli_model *m);
void cli_model_close(cli_model *m);

#endif
