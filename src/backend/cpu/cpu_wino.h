/* cpu: Winograd F(4x4, 3x3) convolution engine (cpu_wino.c) for 3x3, stride-1,
 * undilated, ungrouped convs with padding 0..2 and the "same-or-valid" output size.
 * Conventions as cpu_conv.c: NHWC x [n][h][w][c], KRSC w [k][r][s][c], y [n][oh][ow][k];
 * one OpenMP team of cpu_max_threads() threads, each calling single-threaded
 * OpenBLAS on its own block; scratch only from ws; results bit-identical run to run
 * for a given thread count. */
#ifndef CNN_CPU_WINO_H
#define CNN_CPU_WINO_H

#include <stddef.h>

#include "backend/backend.h"
#include "core/error.h"

/* 1 when the Winograd engine can run d: groups 1, 3x3, stride 1, dilation 1,
   pad_h, pad_w in 0..2, oh == h + 2*pad_h - 2, ow == w + 2*pad_w - 2, n >= 1 */
int cpu_wino_takes(const cnn_conv_desc *d);
/* 1 when cpu_wino_takes(d) and Winograd measured faster than im2col+gemm for pass
 * dir of d on a 2-core AVX2 EPYC (the rule and its table are in cpu_wino.c): a
 * fixed function of the shape, so an engine choice made from it is deterministic */
int cpu_wino_wins(const cnn_conv_desc *d, cnn_conv_dir dir);
/* Inference keeps the forward's filter transform (U, 36 c k floats) across calls:
 * its bytes, filling it, the forward from it (scratch: cpu_wino_packed_workspace),
 * and whether that beats the GEMM engines (cpu_wino_wins for the forward, or few
 * tiles (batch 1) with a U small enough to stay in cache). Same bits as cpu_wino_fwd. */
size_t cpu_wino_pack_bytes(const cnn_conv_desc *d);
void cpu_wino_pack(const cnn_conv_desc *d, const float *w, float *U);
size_t cpu_wino_packed_workspace(const cnn_conv_desc *d, int threads);
cnn_status cpu_wino_fwd_packed(const cnn_conv_desc *d, const float *x, const float *U,
                               const float *bias, cnn_act act, float alpha, float *y, void *ws,
                               size_t ws_bytes);
int cpu_wino_wins_packed(const cnn_conv_desc *d);
/* bytes of scratch pass dir of d needs with `threads` threads (everything: the
   transformed filters, per-thread tile-block buffers, partial sums); 0 if not taken.
   ws must be 8-byte aligned (it holds double partials); the ops run a smaller team
   when ws was sized for fewer threads than cpu_max_threads() */
size_t cpu_wino_workspace(const cnn_conv_desc *d, cnn_conv_dir dir, int threads);
/* y = act(conv(x, w) + bias) (bias may be NULL, act CNN_ACT_LINEAR: none) */
cnn_status cpu_wino_fwd(const cnn_conv_desc *d, const float *x, const float *w, const float *bias,
                        cnn_act act, float alpha, float *y, void *ws, size_t ws_bytes);
/* dx += conv_transpose(dy, w)  (ADDS into dx, like the other engines) */
cnn_status cpu_wino_bwd_data(const cnn_conv_desc *d, const float *dy, const float *w, float *dx,
                             void *ws, size_t ws_bytes);
/* dw = correlation(x, dy) (overwrites), db = column sums of dy if db != NULL (overwrites) */
cnn_status cpu_wino_bwd_filter(const cnn_conv_desc *d, const float *x, const float *dy, float *dw,
                               float *db, void *ws, size_t ws_bytes);

#endif
