/* CUDA step programs end to end on a toy step: step state on the device, async
 * upload / read, CUDA graph capture and replay (the lr and the refusal of a
 * non-finite step must come from the device-side state on every replay), and
 * the ops that must be refused while capturing. Per-op numerics against ref are
 * tests/lib/opsuite.c's job. Exits 77 (ctest SKIP) without CUDA or a device. */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/error.h"
#include "testutil.h"

#define N 4   /* rows */
#define C 10  /* classes */
#define P 1000 /* parameters */

typedef struct {
  cnn_backend *b;
  const cnn_backend_ops *o;
  cnn_step_state *st, *st_host; /* device / pinned host */
  float *logits, *dlogits, *probs, *loss, *p, *g, *v;
  int32_t *labels;
} toy;

/* one training step of the toy program: the same sequence eager and captured */
static cnn_status toy_step(toy *t, const cnn_sched_desc *sd) {
  const cnn_backend_ops *o = t->o;
  void *c = t->b->ctx;
  CNN_TRY(o->step_begin(c, t->st, sd));
  CNN_TRY(o->check_finite(c, (size_t)N * C, t->logits, t->st));
  CNN_TRY(o->fill(c, t->dlogits, (size_t)N * C, 0.0f));
  CNN_TRY(o->softmax_xent_step(c, N, C, t->logits, 1.0f, t->labels, 0.1f, t->probs, t->loss,
                               t->dlogits, 1.0f / N, t->st));
  CNN_TRY(o->sgd_step_st(c, P, t->p, t->g, t->v, 0.9f, 0.0f, 0, t->st));
  CNN_TRY(o->step_end(c, t->st, 1));
  return o->read_async(c, t->st_host, t->st, sizeof *t->st);
}

/* host reference of the toy's loss sum and hits */
static void ref_xent(const float *z, const int32_t *lab, double *loss, int64_t *hits) {
  *loss = 0.0;
  *hits = 0;
  for (int i = 0; i < N; i++) {
    double mx = -INFINITY, s = 0.0, acc = 0.0;
    int am = 0;
    for (int j = 0; j < C; j++) {
      if (z[i * C + j] > mx) mx = z[i * C + j];
      if (z[i * C + j] > z[i * C + am]) am = j;
    }
    for (int j = 0; j < C; j++) s += exp(z[i * C + j] - mx);
    for (int j = 0; j < C; j++) {
      double t = 0.1 / C + (j == lab[i] ? 0.9 : 0.0);
      acc += t * ((z[i * C + j] - mx) - log(s));
    }
    *loss += -acc;
    *hits += am == lab[i];
  }
}

int main(void) {
  setenv("NVIDIA_TF32_OVERRIDE", "0", 1);
  tu_need_cuda(); /* skips (77) without a usable GPU, says why */

  toy t;
  memset(&t, 0, sizeof t);
  CHECK_OK(cnn_backend_cuda_create(&t.b));
  if (!t.b) return tu_finish("test_gpu_program");
  t.o = t.b->ops;
  void *c = t.b->ctx;
  CHECK(t.o->capture_begin && t.o->upload_async && t.o->softmax_xent_step, "ops missing");

  float z[N * C], gh[P], ph[P], vh[P];
  int32_t lab[N] = {3, 0, 9, 5};
  tu_fill_uniform(z, N * C, -3.0f, 3.0f, 1);
  tu_fill_uniform(gh, P, -1.0f, 1.0f, 2);
  tu_fill_uniform(ph, P, -1.0f, 1.0f, 3);
  memset(vh, 0, sizeof vh);

  CHECK_OK(t.o->alloc(c, sizeof(cnn_step_state), (void **)&t.st));
  CHECK_OK(t.o->host_alloc(c, sizeof(cnn_step_state), (void **)&t.st_host));
  CHECK_OK(t.o->alloc(c, sizeof z, (void **)&t.logits));
  CHECK_OK(t.o->alloc(c, sizeof z, (void **)&t.dlogits));
  CHECK_OK(t.o->alloc(c, sizeof z, (void **)&t.probs));
  CHECK_OK(t.o->alloc(c, N * sizeof(float), (void **)&t.loss));
  CHECK_OK(t.o->alloc(c, sizeof lab, (void **)&t.labels));
  CHECK_OK(t.o->alloc(c, sizeof ph, (void **)&t.p));
  CHECK_OK(t.o->alloc(c, sizeof gh, (void **)&t.g));
  CHECK_OK(t.o->alloc(c, sizeof vh, (void **)&t.v));
  if (tu_failures) return tu_finish("test_gpu_program");

  cnn_step_state s0;
  memset(&s0, 0, sizeof s0);
  s0.last_refused = -1;
  CHECK_OK(t.o->upload_async(c, t.st, &s0, sizeof s0));
  CHECK_OK(t.o->upload_async(c, t.logits, z, sizeof z));
  CHECK_OK(t.o->upload_async(c, t.labels, lab, sizeof lab));
  CHECK_OK(t.o->upload_async(c, t.p, ph, sizeof ph)); /* 4 uploads: the ring wraps */
  CHECK_OK(t.o->upload_async(c, t.g, gh, sizeof gh));
  CHECK_OK(t.o->upload_async(c, t.v, vh, sizeof vh));

  /* schedule: warm-up of 4 steps to lr 0.4 -> lr(step) = 0.1 (step + 1) */
  cnn_sched_desc sd;
  memset(&sd, 0, sizeof sd);
  sd.kind = CNN_SD_CONSTANT;
  sd.lr = 0.4;
  sd.warmup = 4;

  double want_loss;
  int64_t want_hits;
  ref_xent(z, lab, &want_loss, &want_hits);

  /* step 0, eager */
  CHECK_OK(toy_step(&t, &sd));
  CHECK(t.o->read_done(c, 1) == 1, "read_done(wait)");
  CHECK(t.st_host->step == 1, "step %lld", (long long)t.st_host->step);
  CHECK(fabsf(t.st_host->lr - 0.1f) < 1e-7f, "lr %g", t.st_host->lr);
  CHECK(t.st_host->step_n == N, "step_n %lld", (long long)t.st_host->step_n);
  CHECK(t.st_host->step_correct == want_hits, "hits %lld want %lld",
        (long long)t.st_host->step_correct, (long long)want_hits);
  CHECK(fabs(t.st_host->step_loss - want_loss) < 1e-4 * fabs(want_loss) + 1e-5,
        "loss %g want %g", t.st_host->step_loss, want_loss);
  CHECK(fabsf(t.st_host->loss_ring[0] - (float)(want_loss / N)) < 1e-4f, "ring[0] %g",
        t.st_host->loss_ring[0]);

  /* host mirror of SGD (momentum 0.9, no wd) */
  for (int i = 0; i < P; i++) {
    vh[i] = gh[i];
    ph[i] -= 0.1f * vh[i];
  }

  /* capture the same step; nothing runs until launched */
  void *graph = NULL;
  CHECK_OK(t.o->capture_begin(c));
  CHECK_OK(toy_step(&t, &sd));
  CHECK_OK(t.o->capture_end(c, &graph));
  CHECK(graph != NULL, "no graph");

  for (int s = 1; s <= 2 && graph; s++) { /* steps 1 and 2 by replay: lr 0.2, 0.3 */
    CHECK_OK(t.o->graph_launch(c, graph));
    CHECK(t.o->read_done(c, 1) == 1, "read_done(wait)");
    CHECK(t.st_host->step == s + 1, "step %lld", (long long)t.st_host->step);
    CHECK(fabsf(t.st_host->lr - 0.1f * (s + 1)) < 1e-6f, "replay lr %g", t.st_host->lr);
    CHECK(t.st_host->seen == (int64_t)N * (s + 1), "seen %lld", (long long)t.st_host->seen);
    const float lr = 0.1f * (float)(s + 1);
    for (int i = 0; i < P; i++) {
      vh[i] = 0.9f * vh[i] + gh[i];
      ph[i] -= lr * vh[i];
    }
  }
  float got[P], before[P];
  CHECK_OK(t.o->download(c, before, t.p, sizeof before));
  tu_check_close("p after eager + 2 replays", before, ph, P, 1e-5);

  /* a non-finite input: the replay refuses the step on the device */
  z[5] = NAN;
  CHECK_OK(t.o->upload_async(c, t.logits, z, sizeof z));
  if (graph) {
    CHECK_OK(t.o->graph_launch(c, graph));
    CHECK(t.o->read_done(c, 1) == 1, "read_done(wait)");
    CHECK(t.st_host->step == 3, "refused step advanced: %lld", (long long)t.st_host->step);
    CHECK(t.st_host->refused == 1 && t.st_host->last_refused == 3, "refused %lld last %lld",
          (long long)t.st_host->refused, (long long)t.st_host->last_refused);
    CHECK((t.st_host->nonfinite & CNN_NONFINITE_INPUT) != 0, "nonfinite %d",
          t.st_host->nonfinite);
    CHECK_OK(t.o->download(c, got, t.p, sizeof got));
    CHECK(memcmp(got, before, sizeof got) == 0, "p changed by a refused step");
  }

  /* refused under capture: upload_async, sync; capture_end then fails */
  CHECK_OK(t.o->capture_begin(c));
  CHECK(t.o->upload_async(c, t.logits, z, sizeof z) != CNN_OK, "upload_async captured");
  void *bad = NULL;
  CHECK(t.o->capture_end(c, &bad) != CNN_OK && bad == NULL, "capture_end after a refusal");
  /* the backend is usable again */
  CHECK_OK(t.o->sync(c));

  if (graph) t.o->graph_free(c, graph);
  t.o->host_free(c, t.st_host);
  t.o->free(c, t.st);
  t.o->free(c, t.logits);
  t.o->free(c, t.dlogits);
  t.o->free(c, t.probs);
  t.o->free(c, t.loss);
  t.o->free(c, t.labels);
  t.o->free(c, t.p);
  t.o->free(c, t.g);
  t.o->free(c, t.v);
  t.b->ops->destroy(t.b);
  return tu_finish("test_gpu_program");
}
