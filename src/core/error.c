#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *cnn_last_error(void) { return last_error; }

void cnn_error_clear(void) { last_error[0] = 0; }

cnn_status cnn_error(cnn_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return s;
}

cnn_status cnn_error_prefix(cnn_status s, const char *fmt, ...) {
  char prefix[512], old[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, last_error, sizeof old);
  snprintf(last_error, sizeof last_error, "%.500s: %.520s", prefix, old);
  return s;
}

const char *cnn_status_name(cnn_status s) {
  switch (s) {
    case CNN_OK: return "ok";
    case CNN_ERR_ARG: return "bad argument";
    case CNN_ERR_PARSE: return "parse error";
    case CNN_ERR_SHAPE: return "shape error";
    case CNN_ERR_IO: return "I/O error";
    case CNN_ERR_NOMEM: return "out of memory";
    case CNN_UNSUPPORTED: return "unsupported";
    case CNN_ERR_DEVICE: return "device error";
    case CNN_ERR_NUMERIC: return "numeric error";
  }
  return "unknown status";
}
