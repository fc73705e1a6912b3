/* Internals of the op suite shared by its files (opsuite.c: the plain ops and the
 * entry point; opsuite_program.c: the step-program ops). Test programs include
 * opsuite.h only. */
#ifndef CNN_OPSUITE_IMPL_H
#define CNN_OPSUITE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"

#define GUARD 64 /* elements after every buffer that no op may write */
#define SENTINEL (-7777.25f)
#define MAX_DONE 96

enum { T = 0, R = 1 }; /* the two sides: test backend, reference backend */

typedef struct suite {
  cnn_backend *be[2];
  double tol;
  int verbose;
  uint64_t seed;                /* next fill seed: the run order makes it reproducible */
  const char *done[MAX_DONE];   /* ops already reported (skipped or missing in ref) */
  int ndone;
  int skips;
} suite;

/* n 4-byte elements (+ GUARD) on each side */
typedef struct buf {
  size_t n;
  void *d[2];
} buf;

/* host helpers */
void *xmalloc(size_t bytes);               /* exits on failure */
float *hvec(size_t n);
void urand(suite *S, float *x, size_t n, float lo, float hi);
float *hrand(suite *S, size_t n, float lo, float hi);
double tol_sum(const suite *S, double k);  /* S->tol sqrt(max(k, 1)) */
const char *act_name(cnn_act a);
double host_act(cnn_act a, double alpha, double x);

/* backend memory: every buffer exists on both sides with a SENTINEL guard tail */
void mem_fatal(suite *S, int side, const char *what, size_t bytes, cnn_status st);
void buf_upload_raw(suite *S, buf *b, const void *host);  /* b->n 4-byte elements */
void buf_set(suite *S, buf *b, const float *host);
void buf_poison(suite *S, buf *b);
buf buf_new(suite *S, size_t n);                          /* poisoned */
buf buf_from(suite *S, const float *host, size_t n);
void buf_free(suite *S, buf *b);
void buf_get(suite *S, const buf *b, int side, float *host /* n + GUARD */);
/* CHECK that the guard tail of host (b->n + GUARD elements from side) is intact */
void check_guard(suite *S, const buf *b, int side, const float *host, const char *label);
/* compare b on both sides: guards intact, then tu_check_close at tol */
void check(suite *S, const buf *b, const char *op, const char *cas, const char *what,
           double tol);

/* running an op: gate (NULL entries: skip on test, failure on ref) and called
 * (status: CNN_UNSUPPORTED on test is a skip, any other error a failure) */
int gate(suite *S, const char *op, int have_test, int have_ref);
int called(suite *S, const char *op, const char *cas, int side, cnn_status st);

/* Run OP on the test backend, then on ref, with the same arguments; buffers in the
 * argument list are written P(b) (float), PI(b) (int32), PB(b) (bytes) or PS(b) (a step state),
 * which pick the side's memory. Sets `ran` to 1 when both sides ran and returned
 * CNN_OK. */
#define P(b) ((float *)(b).d[side_])
#define PI(b) ((int32_t *)(b).d[side_])
#define PS(b) ((cnn_step_state *)(b).d[side_])
#define PB(b) ((uint8_t *)(b).d[side_])
#define RUN(S, OP, CAS, ...)                                                             \
  do {                                                                                   \
    ran = gate((S), #OP, (S)->be[T]->ops->OP != NULL, (S)->be[R]->ops->OP != NULL);      \
    for (int side_ = 0; ran && side_ < 2; side_++) {                                     \
      cnn_backend *b_ = (S)->be[side_];                                                  \
      ran = called((S), #OP, (CAS), side_, b_->ops->OP(b_->ctx, __VA_ARGS__));           \
    }                                                                                    \
  } while (0)

/* opsuite_program.c: every step-program op */
void test_conv_act(suite *S); /* conv_fwd_act with every activation (opsuite_program.c) */
void test_program_ops(suite *S);
/* opsuite_crop_reorg.c: Darknet's crop and reorg */
void test_crop_reorg_ops(suite *S);

#endif
