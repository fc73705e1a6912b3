/* cnn_version(): the project version, from CMake's project() (CNN_VERSION). */
#include "cnn/cnn.h"

#ifndef CNN_VERSION
#error "CNN_VERSION must be defined by the build (CMake's project version)"
#endif

const char *cnn_version(void) { return CNN_VERSION; }
