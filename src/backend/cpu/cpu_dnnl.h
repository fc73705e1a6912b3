/* oneDNN (Intel's deep-learning primitives, Debian's libdnnl-dev) as a conv engine of
 * the cpu backend. Compiled when CMake finds it (CNN_HAVE_DNNL=1); elsewhere every
 * entry point says CNN_UNSUPPORTED and cpu_dnnl_create gives NULL.
 *
 * One cpu_dnnl per backend (in its ctx): a oneDNN cpu engine and stream, and the
 * primitives built so far, cached by (shape, pass, variant, bias, epilogue, thread
 * count). Activations stay NHWC (tag nhwc), weights KRSC (ohwi / gohwi), bias [k].
 *
 * Variants:
 *  - CPU_DNNL_ANY:   oneDNN picks its weight layout (blocked, for its JIT kernels);
 *    weights are reordered into it on every call (they change every training step),
 *    and filter grads are reordered back to KRSC.
 *  - CPU_DNNL_PLAIN: the weights in our KRSC layout as they are (no reorder; oneDNN
 *    then usually runs its gemm-based kernels).
 * With cnn_conv_desc.math == CNN_MATH_BF16 and a CPU with bf16 instructions
 * (AVX512-BF16 or AMX; cpu_dnnl_has_bf16), the products take bf16 operands (x, w, dy
 * rounded to bf16 by reorders) and accumulate in f32; outputs stay f32.
 *
 * Contracts are the backend's (backend.h): forward overwrites y, backward-data
 * ADDS into dx (a sum post-op where oneDNN takes one, else through a scratch
 * buffer), backward-filter overwrites dw and db. Results are deterministic for a
 * given thread count. */
#ifndef CNN_CPU_DNNL_H
#define CNN_CPU_DNNL_H

#include "backend/backend.h"

typedef struct cpu_dnnl cpu_dnnl;

enum { CPU_DNNL_ANY = 0, CPU_DNNL_PLAIN = 1 };

/* NULL (and no error) when not compiled or when oneDNN has no cpu engine */
cpu_dnnl *cpu_dnnl_create(void);
void cpu_dnnl_destroy(cpu_dnnl *e);
/* 1 when the CPU runs bf16 products natively (AVX512-BF16 or AMX), 0 otherwise */
int cpu_dnnl_has_bf16(const cpu_dnnl *e);
/* 1 when this pass of d would run with bf16 operands */
int cpu_dnnl_uses_bf16(const cpu_dnnl *e, const cnn_conv_desc *d);
/* "2.6.3, isa avx2" (static buffer in e) */
const char *cpu_dnnl_describe(cpu_dnnl *e);
/* CNN_OK when oneDNN runs pass dir of d in `variant` (builds and caches the primitive) */
cnn_status cpu_dnnl_check(cpu_dnnl *e, const cnn_conv_desc *d, cnn_conv_dir dir, int variant);
/* oneDNN's name of the implementation it picked ("jit:avx2", "gemm:jit"), or NULL */
const char *cpu_dnnl_impl(cpu_dnnl *e, const cnn_conv_desc *d, cnn_conv_dir dir, int variant);

/* bytes of oneDNN's own layout of the forward weights of (d, variant, bias, epilogue);
 * 0 when it takes ours as they are (nothing to keep repacked) or not at all */
size_t cpu_dnnl_fwd_wbytes(cpu_dnnl *e, const cnn_conv_desc *d, int variant, int with_bias,
                           cnn_act act, float alpha);
/* y = act(conv(x, w) + bias) (act LINEAR: none). wpack: NULL (w reordered on every
 * call), or a buffer of cpu_dnnl_fwd_wbytes bytes that keeps w reordered across calls:
 * filled from w first when fill is set, else used as it is (w unread). */
cnn_status cpu_dnnl_fwd(cpu_dnnl *e, const cnn_conv_desc *d, int variant, const float *x,
                        const float *w, void *wpack, int fill, const float *bias, cnn_act act,
                        float alpha, float *y);
/* dx += conv_transpose(dy, w) */
cnn_status cpu_dnnl_bwd_data(cpu_dnnl *e, const cnn_conv_desc *d, int variant, const float *dy,
                             const float *w, float *dx);
/* dw = correlation(x, dy), db = sums of dy if db != NULL */
cnn_status cpu_dnnl_bwd_filter(cpu_dnnl *e, const cnn_conv_desc *d, int variant, const float *x,
                               const float *dy, float *dw, float *db);

#endif
