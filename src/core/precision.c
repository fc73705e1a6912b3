/* --precision: parsing, and what each backend runs. Every backend's ops are f32
 * today; bf16 activations need the bf16 op variants (see backend.h), so bf16 is
 * refused by name rather than silently run in f32. tf32 only permits rounding
 * inside matrix products, so f32 arithmetic is a valid tf32 implementation. */
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

/* the activation dtypes backend b runs programs in */
static int runs_bf16(const cnn_backend *b) {
  (void)b;
  return 0; /* no backend has the bf16 op variants yet */
}

cnn_status cnn_net_set_precision(cnn_net *net, const cnn_backend *b, cnn_precision p) {
  if (!net || !b) return cnn_error(CNN_ERR_ARG, "cnn_net_set_precision: NULL argument");
  if ((unsigned)p > CNN_PRECISION_BF16) return cnn_error(CNN_ERR_ARG, "precision %d is unknown", (int)p);
  if (p == CNN_PRECISION_AUTO) p = runs_bf16(b) ? CNN_PRECISION_BF16 : CNN_PRECISION_FP32;
  if (p == CNN_PRECISION_BF16 && !runs_bf16(b))
    return cnn_error(CNN_UNSUPPORTED,
                     "precision bf16 is not implemented on the %s backend yet (its ops are f32 "
                     "only); use fp32 or auto", b->name);
  if (net->built && net->precision != p)
    return cnn_error(CNN_ERR_ARG, "the net is built in %s; set the precision before building",
                     cnn_precision_name(net->precision));
  net->precision = p;
  return CNN_OK;
}

cnn_precision cnn_net_precision(const cnn_net *net) {
  return net && net->precision ? net->precision : CNN_PRECISION_FP32;
}
