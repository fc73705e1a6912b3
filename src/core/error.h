/* Error reporting: each public call returns a cnn_status and leaves a message
 * for cnn_last_error(). The message lives in thread-local storage (like errno),
 * the one piece of per-thread state the library keeps. */
#ifndef CNN_ERROR_H
#define CNN_ERROR_H

#include "cnn/cnn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Set the message (printf format) and return `s`, so callers can write
 * `return cnn_error(CNN_ERR_ARG, "batch %d must be positive", b);` */
cnn_status cnn_error(cnn_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Prefix the current message with "context: " and return s. */
cnn_status cnn_error_prefix(cnn_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void cnn_error_clear(void);

#define CNN_TRY(expr)                  \
  do {                                 \
    cnn_status cnn_try_s_ = (expr);    \
    if (cnn_try_s_ != CNN_OK) return cnn_try_s_; \
  } while (0)

#ifdef __cplusplus
}
#endif
#endif
