/* Profiling with device timers (program.c's run_range_timed): on a backend with
 * timer_mark / timer_read, a profiled run marks before the first node and after
 * each, reads the marks once, and gives node i the time between marks i and i + 1,
 * without waiting for every node. The cpu backend is wrapped with timers whose
 * readings are known (node i of a piece takes i + 1 ms), so the bookkeeping is
 * checked exactly, including programs longer than one piece of marks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/net.h"
#include "core/program.h"
#include "testutil.h"

static cnn_backend_ops ops;
static int marks_seen[CNN_TIMER_MARKS], n_marks, n_reads, n_syncs;
static const cnn_backend_ops *inner;

static cnn_status fake_mark(void *c, int i) {
  (void)c;
  CHECK(i >= 0 && i < CNN_TIMER_MARKS, "mark %d in range", i);
  if (i >= 0 && i < CNN_TIMER_MARKS) marks_seen[i]++;
  if (i + 1 > n_marks) n_marks = i + 1;
  return CNN_OK;
}

/* the time between marks i and i + 1 is i + 1 ms */
static cnn_status fake_read(void *c, int n, float *ms) {
  (void)c;
  n_reads++;
  CHECK(n >= 1 && n <= n_marks, "read %d marks of %d recorded", n, n_marks);
  for (int i = 0; i + 1 < n; i++) ms[i] = (float)(i + 1);
  return CNN_OK;
}

static cnn_status counting_sync(void *c) {
  n_syncs++;
  return inner->sync(c);
}

int main(void) {
  cnn_backend *cpu = NULL;
  CHECK_OK(cnn_backend_cpu_create(&cpu));
  if (!cpu) return tu_finish("test_profile_timer");
  inner = cpu->ops;
  ops = *cpu->ops;
  ops.timer_mark = fake_mark;
  ops.timer_read = fake_read;
  ops.sync = counting_sync;
  cnn_backend wrapped = *cpu;
  wrapped.ops = &ops;

  static const char cfg[] =
      "[net]\nheight=8\nwidth=8\nchannels=1\nbatch=4\n"
      "[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=relu\n"
      "[maxpool]\nsize=2\nstride=2\n"
      "[connected]\noutput=3\nactivation=linear\n[softmax]\n";
  cnn_net *net = NULL;
  CHECK_OK(cnn_net_from_cfg_text(cfg, "t.cfg", &net));
  if (!net) return tu_finish("test_profile_timer");
  CHECK_OK(cnn_net_build(net, &wrapped, 4, CNN_MODE_TRAIN));
  CHECK_OK(cnn_net_set_profile(net, 1));
  float x[4 * 64];
  int32_t y[4] = {0, 1, 2, 0};
  tu_fill_uniform(x, 4 * 64, 0, 1, 7);
  cnn_step_result r = {0};
  n_syncs = 0;
  CHECK_OK(cnn_net_train_step(net, x, y, 4, &r));
  CHECK_OK(cnn_net_train_step(net, x, y, 4, &r));
  cnn_program *p = NULL;
  CHECK_OK(cnn_net_program_for(net, 4, CNN_PK_TRAIN, &p));
  if (p) {
    CHECK(p->node_s != NULL, "the profile has node times");
    CHECK(p->n_nodes + 1 <= CNN_TIMER_MARKS, "this program fits one piece (%d nodes)", p->n_nodes);
    CHECK(n_reads >= 2, "one read per run at least (%d)", n_reads);
    for (int i = 0; p->node_s && i < p->n_nodes; i++) {
      /* the body runs twice (the prologue is empty in training); node i is mark i */
      double want = 2 * (i + 1) * 1e-3;
      CHECK(p->node_s[i] > want - 1e-9 && p->node_s[i] < want + 1e-9,
            "node %d: %.6f s, expected %.6f", i, p->node_s[i], want);
    }
    CHECK(marks_seen[0] >= 2 && marks_seen[p->n_nodes] >= 2 && marks_seen[p->n_nodes + 1] == 0,
          "marks 0..n_nodes recorded each run, none beyond");
  }
  CHECK(n_syncs <= 4, "timed profiling does not wait for every node (%d syncs)", n_syncs);
  cnn_net_destroy(net);
  cpu->ops->destroy(cpu);
  return tu_finish("test_profile_timer");
}
