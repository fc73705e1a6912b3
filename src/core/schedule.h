/* The learning-rate schedule as a pure function of the step, shared by the host
 * (cnn_net_current_lr, reports) and the step_begin op of every backend, which
 * writes the rate of the step in flight into the device-side step state. */
#ifndef CNN_SCHEDULE_H
#define CNN_SCHEDULE_H

#include <math.h>
#include <stdint.h>

#include "core/hd.h"

typedef struct cnn_sched_desc {
  int kind;               /* cnn_schedule_kind */
  double lr, final_lr;    /* peak and final rate */
  int64_t warmup;         /* linear warm-up steps (already resolved for one-cycle) */
  int64_t total;          /* steps of the whole run (0: unknown) */
  int step_size;          /* STEP */
  double gamma;           /* STEP */
  double power;           /* POLY */
} cnn_sched_desc;

/* kinds, as cnn_schedule_kind in cnn/cnn.h */
#define CNN_SD_CONSTANT 0
#define CNN_SD_STEP 1
#define CNN_SD_COSINE 2
#define CNN_SD_ONECYCLE 3
#define CNN_SD_POLY 4

CNN_HD float cnn_sched_lr(const cnn_sched_desc *sd, int64_t step) {
  double lr = sd->lr, fin = sd->final_lr;
  int64_t warm = sd->warmup, total = sd->total;
  if (warm > 0 && step < warm) return (float)(lr * (double)(step + 1) / (double)warm);
  double t = (double)(step - warm), span = (double)(total - warm);
  double frac = span > 0 ? fmin(fmax(t / span, 0.0), 1.0) : 0.0;
  switch (sd->kind) {
    case CNN_SD_STEP:
      return sd->step_size > 0 ? (float)(lr * pow(sd->gamma, (double)(step / sd->step_size)))
                               : (float)lr;
    case CNN_SD_COSINE:
      return (float)(fin + (lr - fin) * 0.5 * (1.0 + cos(3.141592653589793 * frac)));
    case CNN_SD_ONECYCLE: /* linear up (the warm-up), then linear down to the final rate */
      return (float)(lr + (fin - lr) * frac);
    case CNN_SD_POLY:
      return (float)(lr * pow(1.0 - frac, sd->power));
    default:
      return (float)lr;
  }
}

#endif
