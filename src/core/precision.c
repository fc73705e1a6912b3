/* --precision: parsing, and what each backend runs. bf16 builds store activations
 * and their gradients as bf16 and run f32 ops between explicit cast nodes
 * (lower_bf16.c); their conv and dense products may round operands to bf16
 * (cnn_math, tensor cores on cuda). tf32 only permits rounding inside matrix
 * products, so f32 arithmetic is a valid tf32 implementation (ref, cpu). */
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

/* the maths backend b runs on matrix units (tensor cores): bits 1 << CNN_MATH_* */
static unsigned matrix_math(const cnn_backend *b) {
  return b->ops->matrix_math ? b->ops->matrix_math(b->ctx) : 0u;
}

/* auto: tf32 where the backend has tensor cores for it (cuda); else bf16 where its
 * matrix units run bf16 only (the cpu backend on a CPU with AVX512-BF16 or AMX, through
 * oneDNN: docs/cpu-engines.md); else fp32. Not bf16 where tf32 is there too: bf16
 * activations are still stored between f32 ops through cast nodes (lower_bf16.c), so
 * bf16 saves memory but costs a cast pass per node, while tf32 gets the tensor cores
 * with no casts; PyTorch's cuDNN convolutions default to tf32 likewise. On a CPU the
 * choice is bf16 or plain f32 products, and bf16's products are several times faster
 * there (what PyTorch's autocast uses on AMX; not measured here, no such CPU), so auto
 * takes it. */
static cnn_precision auto_precision(const cnn_backend *b) {
  unsigned mm = matrix_math(b);
  if (mm & (1u << CNN_MATH_TF32)) return CNN_PRECISION_TF32;
  if ((mm & (1u << CNN_MATH_BF16)) && runs_bf16(b)) return CNN_PRECISION_BF16;
  return CNN_PRECISION_FP32;
}

cnn_math cnn_net_math(const cnn_net *net) {
  switch (cnn_net_precision(net)) {
  case CNN_PRECISION_TF32: return CNN_MATH_TF32;
  case CNN_PRECISION_BF16: return CNN_MATH_BF16;
  default: return CNN_MATH_F32;
  }
}

cnn_status cnn_net_set_precision(cnn_net *net, const cnn_backend *b, cnn_precision p) {
  if (!net || !b) return cnn_error(CNN_ERR_ARG, "cnn_net_set_precision: NULL argument");
  if ((unsigned)p > CNN_PRECISION_BF16) return cnn_error(CNN_ERR_ARG, "precision %d is unknown", (int)p);
  if (p == CNN_PRECISION_AUTO) p = auto_precision(b);
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
