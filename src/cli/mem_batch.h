/* The batch size from memory (--batch auto, and the check of a batch given):
 * what train and eval allocate besides the net, counted against the device's free
 * memory with cnn_net_max_batch / cnn_net_batch_check. */
#ifndef CNN_CLI_MEM_BATCH_H
#define CNN_CLI_MEM_BATCH_H

#include <stddef.h>

#include "cnn/cnn.h"
#include "cnn/data.h"

#define CLI_BATCH_AUTO (-1)

/* --batch's value: "auto" (CLI_BATCH_AUTO) or an integer in [1, 65536]; prints an
 * error naming `cmd` and returns 0 when it is neither */
int cli_batch_arg(const char *cmd, const char *v, int *out);

/* The batch to build with, decided before building: `requested` CLI_BATCH_AUTO
 * picks the largest multiple of 8 that fits, up to max_batch (the data set's size),
 * and prints it on stderr unless quiet; any other batch is checked (unless
 * no_check) and refused with CNN_ERR_NOMEM, the bytes needed and available and the
 * largest batch that fits in cnn_last_error(). fit's extra_* give what the command
 * allocates in the device's memory besides the net. */
cnn_status cli_batch_pick(const char *cmd, cnn_net *net, cnn_backend *b, cnn_mode mode,
                          int requested, int no_check, int max_batch, int quiet,
                          cnn_batch_fit *fit, int *batch);

/* cli_batch_pick for `cnn train` and `cnn eval`, counting besides the net:
 * on a host-memory backend (cpu, ref), train's threaded loader (two batches of
 * float images and labels), the evaluation's loader (one batch) and its
 * probabilities, the net's host copies of a batch's outputs and losses, and each
 * loader's order of its data set; eval's one loader, probabilities and host copies.
 * On a GPU: the training set bound in its memory (device_data on, or auto; when
 * auto finds no batch that fits beside it, the set stays on the host and is not
 * counted). Not counted: the data sets themselves, which are loaded before the
 * free memory is read, so are not free. */
cnn_status cli_batch_train(cnn_net *net, cnn_backend *b, const char *device_data,
                           const cnn_dataset *train, const cnn_dataset *test, int requested,
                           int no_check, int quiet, int *batch);
cnn_status cli_batch_eval(cnn_net *net, cnn_backend *b, const cnn_dataset *test, int requested,
                          int no_check, int *batch);

#endif
