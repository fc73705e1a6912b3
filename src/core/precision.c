/* --precision: parsing, and what each backend runs. bf16 builds store activations
 * and their gradients as bf16 and run f32 ops between explicit cast nodes
 * (lower_bf16.c). tf32 only permits rounding inside matrix products, so f32
 * arithmetic is a valid tf32 implementation. */
#include <string.h>

#include "core/net.h"

static const char *const names[] = {"auto", "fp32", "tf32", "bf16"};

cnn_status cnn_precision_parse(const char *s, cnn_precision *out) {
  for (int i = 0; s && i < 4; i++)
    if (!strcmp(s, names[i])) {
      *out = (cnn_precision)i;
      return CNN_OK;
    }
  return cnn_error(CNN_ERR_ARG, "unknown precision '%s' (expected auto, fp32, tf32 or bf16)",
                   s ? s : "");
}

const char *cnn_precision_name(cnn_precision p) {
  return (unsigned)p < 4 ? names[p] : "?";
}

/* bf16 storage needs the cast op (lower_bf16.c runs the f32 ops between casts) */
static int runs_bf16(const cnn_backend *b) { return b->ops->cast != NULL; }

/* bf16 that pays: native bf16 ops (tensor cores, AMX). No backend has them yet, so
 * auto stays fp32: bf16 through casts saves activation memory but costs time. */
static int bf16_native(const cnn_backend *b) {
  (void)b;
  return 0;
}

cnn_status cnn_net_set_precision(cnn_net *net, const cnn_backend *b, cnn_precision p) {
  if (!net || !b) return cnn_error(CNN_ERR_ARG, "cnn_net_set_precision: NULL argument");
  if ((unsigned)p > CNN_PRECISION_BF16) return cnn_error(CNN_ERR_ARG, "precision %d is unknown", (int)p);
  if (p == CNN_PRECISION_AUTO) p = bf16_native(b) ? CNN_PRECISION_BF16 : CNN_PRECISION_FP32;
  if (p == CNN_PRECISION_BF16 && !runs_bf16(b))
    return cnn_error(CNN_UNSUPPORTED, "precision bf16 needs the cast op, which the %s backend "
                     "lacks; use fp32 or auto", b->name);
  if (net->built && net->precision != p)
    return cnn_error(CNN_ERR_ARG, "the net is built in %s; set the precision before building",
                     cnn_precision_name(net->precision));
  net->precision = p;
  return CNN_OK;
}

cnn_precision cnn_net_precision(const cnn_net *net) {
  return net && net->precision ? net->precision : CNN_PRECISION_FP32;
}
