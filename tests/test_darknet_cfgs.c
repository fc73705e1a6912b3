/* Every Darknet classifier cfg of tests/data/darknet/ loads, and each section's
 * output shape and each conv's FLOPs are what Darknet itself reports for it.
 *
 * tests/data/darknet/expected.tsv was written by Darknet (pjreddie/darknet, built
 * from source and run over these files by regen.sh, see README.md there): per
 * section, Darknet's layer type, out w, h, c, outputs, the FLOPs of a conv by
 * Darknet's own expression 2 n size^2 c/groups out_h out_w, and the BFLOPs Darknet
 * prints for it (3 decimals). Darknet counts FLOPs for conv layers only and prints
 * no total, so we compare like with like:
 *  - shapes: our section output h, w, c equal Darknet's out_h, out_w, out_c where
 *    Darknet sets them (softmax, cost and reorg extra report 0x0x0), and the element
 *    count equals Darknet's `outputs` everywhere;
 *  - per conv section: our conv layer's FLOPs equal Darknet's expression exactly
 *    (both are integers below 2^53 computed in double) and lie within 0.0005 GFLOP
 *    (half the last printed digit) of the BFLOPs Darknet printed;
 *  - per cfg: the sum of our conv FLOPs equals the sum of Darknet's (exact).
 * Each row also names the section kind, which must match our cfg's section name. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn/cnn.h"
#include "core/net.h"
#include "testutil.h"

typedef struct row {
  char cfg[64], type[32], printed[16];
  int section, w, h, c, outputs;
  double flops;
} row;

static const char *const cfgs[] = {
    "alexnet",   "cifar",    "darknet",  "darknet19", "darknet19_448", "darknet53",
    "darknet53_448", "densenet201", "extraction", "go", "resnet101", "resnet152",
    "resnet18",  "resnet34", "resnet50", "resnext101-32x4d", "resnext152-32x4d", "resnext50",
    "strided",   "tiny",     "vgg-16"};
#define N_CFGS (sizeof cfgs / sizeof cfgs[0])

static row *read_rows(int *n_out) {
  char path[1024], line[512];
  FILE *f = fopen(tu_source_path("tests/data/darknet/expected.tsv", path, sizeof path), "r");
  CHECK(f != NULL, "cannot open %s", path);
  if (!f) return NULL;
  int n = 0, cap = 2048;
  row *rows = malloc(cap * sizeof *rows);
  if (!fgets(line, sizeof line, f) || strncmp(line, "cfg\tsection\t", 12)) /* the header */
    CHECK(0, "%s: unexpected header", path);
  while (fgets(line, sizeof line, f)) {
    if (n == cap) rows = realloc(rows, (cap *= 2) * sizeof *rows);
    row *r = &rows[n];
    int got = sscanf(line, "%63[^\t]\t%d\t%31[^\t]\t%d\t%d\t%d\t%d\t%lf\t%15s", r->cfg, &r->section,
                     r->type, &r->w, &r->h, &r->c, &r->outputs, &r->flops, r->printed);
    CHECK(got == 9, "%s: bad line %d: %s", path, n + 2, line);
    if (got == 9) n++;
  }
  fclose(f);
  *n_out = n;
  return rows;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  s[fread(s, 1, (size_t)n, f)] = 0;
  fclose(f);
  return s;
}

/* our section names for Darknet's layer types */
static int same_kind(const char *ours, const char *darknet) {
  if (!strcmp(ours, "conv")) ours = "convolutional";
  if (!strcmp(ours, "dense")) ours = "connected";
  return !strcmp(ours, darknet);
}

static void check_cfg(const char *name, const row *rows, int n_rows) {
  char rel[128], path[1024];
  snprintf(rel, sizeof rel, "tests/data/darknet/%s.cfg", name);
  /* parsed without initialising parameters (VGG-16's 138 M random weights take
   * seconds and say nothing about shapes) */
  cnn_net *net = NULL;
  char *text = slurp(tu_source_path(rel, path, sizeof path));
  CHECK(text != NULL, "cannot read %s", path);
  if (!text) return;
  cnn_status st = cnn_net_parse_cfg(text, path, 0, &net);
  free(text);
  CHECK(st == CNN_OK, "%s: does not load: %s", name, cnn_last_error());
  CHECK(n_rows > 0, "%s: no rows in expected.tsv", name);
  if (st != CNN_OK || n_rows == 0) return;
  CHECK(net->n_sections == n_rows, "%s: %d sections, Darknet has %d layers", name,
        net->n_sections, n_rows);
  int fails0 = tu_failures, convs = 0, shapes = 0;
  double ours_total = 0, dn_total = 0;
  for (int i = 0; i < n_rows && i < net->n_sections; i++) {
    const row *r = &rows[i];
    CHECK(r->section == i, "%s: row %d is section %d", name, i, r->section);
    CHECK(same_kind(net->section_name[i], r->type), "%s: section %d is [%s], Darknet: %s", name,
          i, net->section_name[i], r->type);
    const cnn_layer *l = &net->layers[net->section_out[i]];
    long long count = (long long)cnn_shape_count(l->out);
    CHECK(count == r->outputs, "%s: section %d [%s]: %lld outputs (%dx%dx%d), Darknet %d", name,
          i, r->type, count, l->out.h, l->out.w, l->out.c, r->outputs);
    if (r->w || r->h || r->c) {
      CHECK(l->out.w == r->w && l->out.h == r->h && l->out.c == r->c,
            "%s: section %d [%s]: out %dx%dx%d (WxHxC), Darknet %dx%dx%d", name, i, r->type,
            l->out.w, l->out.h, l->out.c, r->w, r->h, r->c);
      shapes++;
    }
    double flops = 0;
    int n_conv = 0;
    for (int j = 0; j < net->n_layers; j++)
      if (net->layers[j].section == i && net->layers[j].kind == &cnn_kind_conv) {
        flops += net->layers[j].flops;
        n_conv++;
      }
    CHECK(n_conv == !strcmp(r->type, "convolutional"), "%s: section %d has %d conv layers", name,
          i, n_conv);
    if (!n_conv) continue;
    convs++;
    ours_total += flops;
    dn_total += r->flops;
    CHECK(flops == r->flops, "%s: section %d: %.0f FLOPs, Darknet %.0f", name, i, flops, r->flops);
    double printed = atof(r->printed);
    CHECK(strcmp(r->printed, "-") && fabs(flops / 1e9 - printed) <= 0.0005 + 1e-12,
          "%s: section %d: %.6f GFLOPs, Darknet printed %s BFLOPs", name, i, flops / 1e9,
          r->printed);
  }
  CHECK(ours_total == dn_total, "%s: conv FLOPs %.0f, Darknet %.0f", name, ours_total, dn_total);
  printf("%-18s %s %3d sections (%3d shapes WxHxC, all counts), %3d convs, %9.3f GFLOPs "
         "(Darknet %9.3f)\n", name, tu_failures == fails0 ? "ok  " : "FAIL", net->n_sections,
         shapes, convs, ours_total / 1e9, dn_total / 1e9);
  cnn_net_destroy(net);
}

int main(void) {
  int n = 0;
  row *rows = read_rows(&n);
  if (!rows) return tu_finish("test_darknet_cfgs");
  int used = 0;
  for (size_t k = 0; k < N_CFGS; k++) {
    int first = -1, count = 0;
    for (int i = 0; i < n; i++)
      if (!strcmp(rows[i].cfg, cfgs[k])) {
        if (first < 0) first = i;
        count++;
      }
    used += count;
    check_cfg(cfgs[k], first < 0 ? rows : rows + first, count);
  }
  CHECK(used == n, "expected.tsv has %d rows for cfgs this test does not know", n - used);
  free(rows);
  return tu_finish("test_darknet_cfgs");
}
