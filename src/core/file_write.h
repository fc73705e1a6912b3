/* Writing a file whole or not at all, for checkpoints and exported models. */
#ifndef CNN_FILE_WRITE_H
#define CNN_FILE_WRITE_H

#include <stddef.h>

#include "cnn/cnn.h"

/* Write the n parts (bytes in order) as PATH: they go to "PATH.tmp.<pid>", then
 * fflush + fsync + rename over PATH (and the directory is synced); on any error the
 * temp file is removed and PATH is untouched. Before writing, stale temp files of
 * earlier writes of PATH are removed: only regular files of ours named exactly
 * "PATH.tmp.<pid>" whose writer is gone (no such process) or that were not touched
 * for an hour (a reused pid). */
cnn_status cnn_file_write_whole(const char *path, const void *const *parts, const size_t *sizes,
                                int n);

#endif
