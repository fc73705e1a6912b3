/* cnn bench: what one run measures (bench_model.c, bench_peak.c) and how it is
 * reported (bench_out.c); cmd_bench.c parses the options and drives them. */
#ifndef CNN_CLI_BENCH_H
#define CNN_CLI_BENCH_H

#include <stddef.h>

#include "cli/cli.h"
#include "cnn/cnn.h"

/* one internal layer of the net, in the per-layer table */
typedef struct cli_bench_layer {
  int index;
  char type[32];               /* the layer kind: "conv", "maxpool", ... */
  char desc[96];               /* its describe() */
  int out[3];                  /* output h, w, c */
  double gflop;                /* forward GFLOP per image */
  double fwd_ms, bwd_ms;       /* per step at the batch; < 0: not measured / none */
  int fused_into;              /* >= 0: runs inside that layer's nodes (its times are there) */
  const char *engine[3];       /* conv passes fwd, bwd-data, bwd-filter (NULL: none) */
} cli_bench_layer;

/* matrix peaks (bench_peak.c); a figure < 0 was not measured */
typedef struct cli_bench_peak {
  int measured;
  int n;                       /* the square GEMM size timed */
  double fp32_tflops, tf32_tflops, bf16_tflops;
  double copy_gb_s;            /* device-to-device copy, read + write bytes per second */
  size_t copy_bytes;
  char note[256];              /* what was skipped and why */
} cli_bench_peak;

typedef struct cli_bench {
  /* options */
  const char *model, *device, *precision_arg, *conv_engine, *workspace, *json;
  cli_engine eng;  /* --conv-engine, --workspace, --tune-cache */
  int batch_req;               /* CLI_BATCH_AUTO, 0 (the cfg's), or a batch */
  int infer, steps, warmup, layers, peak, no_check;
  double peak_tflops;          /* --peak-tflops; 0: none */

  /* the device */
  char device_name[256];
  int sms, cc_major, cc_minor, threads;
  size_t mem_total;

  /* the model */
  const char *precision;       /* resolved */
  int batch, n_layers;
  size_t params;
  double gflop_per_image;
  double train_ips, infer_ips, latency_ms, train_tflops, infer_tflops; /* < 0: not run */
  double train_step_ms, infer_step_ms;
  long refused;                /* training steps refused (non-finite) in the timed run */
  int profile_runs;            /* runs averaged for the per-layer times (0: none) */
  double other_ms;             /* profile: time of nodes that belong to no layer */
  cli_bench_layer *layer;      /* [n_layers] */

  cli_bench_peak pk;
} cli_bench;

/* The device's name and size into r (cnn_backend_name(b) says which kind). */
void cli_bench_device(cli_bench *r, cnn_backend *b);
/* Measure the model (r's options in, its figures out). */
cnn_status cli_bench_model(cli_bench *r, cnn_net *net, cnn_backend *b);
/* Measure the matrix peaks and copy bandwidth of b into r->pk. */
cnn_status cli_bench_peak_run(cli_bench *r, cnn_backend *b);
/* The peak that r's precision runs at (TFLOP/s): --peak-tflops, else the measured
 * GEMM peak of that math; 0: none known */
double cli_bench_peak_for(const cli_bench *r);
/* Print the report on stdout, and write the JSON to r->json if given. */
void cli_bench_print(const cli_bench *r);
cnn_status cli_bench_write_json(const cli_bench *r);

#endif
