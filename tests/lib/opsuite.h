/* The op suite: every op of a backend checked against the reference backend `ref`,
 * case by case, on seeded random inputs (like ggml's test-backend-ops).
 *
 * Inputs are built on the host and uploaded to both backends through their own
 * alloc/upload, so `test` may be a device backend whose memory the host cannot
 * address. Outputs are poisoned with NaN before each run (accumulated outputs,
 * such as dx, start from the same random values on both sides instead), and every
 * buffer carries a guard tail that no op may write. Results are compared with
 * tu_check_close at a tolerance stated per op in opsuite.c, derived from tol_f32
 * (the scaled error an f32 elementwise op may show, ~1e-5) and the number of terms
 * an output sums.
 *
 * Every op must be present on both backends and run every case: a NULL entry or
 * any error (CNN_UNSUPPORTED included) on either side is a failure, not a skip.
 * Returns the number of failures (also counted in the testutil globals). */
#ifndef CNN_OPSUITE_H
#define CNN_OPSUITE_H

#include "backend/backend.h"

int cnn_opsuite_run(cnn_backend *test, cnn_backend *ref, double tol_f32, int verbose);
/* only the convolution cases (conv_fwd, conv_bwd_data, conv_bwd_filter, conv_fwd_act):
 * for backends with several conv engines, run once per forced engine */
int cnn_opsuite_run_conv(cnn_backend *test, cnn_backend *ref, double tol_f32, int verbose);

#endif
