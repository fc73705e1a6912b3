/* report.html: facts, training curves, confusion matrix and tables in one file.
 * Everything is inline (CSS, SVG) so the report opens offline and can be mailed
 * or archived as it is. All text from the caller is HTML-escaped. */
#define _POSIX_C_SOURCE 200809L
#include "cli/report.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"

/* Beyond this many steps the loss curve is drawn from per-group min/max/mean,
 * keeping the file small and the browser fast whatever the run length. */
#define REPORT_MAX_POINTS 1000
#define C_TRAIN "#2563eb"
#define C_TEST "#ea580c"
#define C_LR "#059669"

static const char css[] =
    ":root{--fg:#1f2937;--muted:#6b7280;--line:#e5e7eb;--card:#f9fafb}\n"
    "*{box-sizing:border-box}\n"
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;"
    "color:var(--fg);background:#fff;margin:0 auto;max-width:1200px;padding:24px}\n"
    "h1{font-size:24px;margin:0 0 4px}\n"
    "h2{font-size:18px;margin:32px 0 12px;border-bottom:1px solid var(--line);padding-bottom:4px}\n"
    ".sub,.muted,footer{color:var(--muted)}\n"
    ".sub{margin:0 0 16px;overflow-wrap:anywhere}\n"
    ".facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:10px}\n"
    ".fact{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px 12px}\n"
    ".fact .k{color:var(--muted);font-size:11px;text-transform:uppercase;letter-spacing:.05em}\n"
    ".fact .v{font-size:16px;font-weight:600;overflow-wrap:anywhere}\n"
    ".charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:16px}\n"
    ".chart{width:100%;height:auto;border:1px solid var(--line);border-radius:8px;background:#fff}\n"
    ".chart .ct{font-size:14px;font-weight:600}\n"
    ".chart .note{font-size:10px;fill:var(--muted)}\n"
    ".tick{font-size:11px;fill:var(--muted);font-variant-numeric:tabular-nums}\n"
    ".al{font-size:12px;fill:#374151}\n"
    ".lg{font-size:11px;fill:#374151}\n"
    ".grid{stroke:#eef0f3;stroke-width:1}\n"
    ".frame{fill:none;stroke:#9ca3af;stroke-width:1}\n"
    ".cmwrap{overflow:auto;max-width:100%}\n"
    ".cm{max-width:100%;height:auto}\n"
    ".cm text{font-variant-numeric:tabular-nums}\n"
    ".cm .cv{fill:#111827}\n"
    ".cm .cv.w{fill:#fff}\n"
    "table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:4px 0}\n"
    "th,td{padding:4px 12px;border-bottom:1px solid var(--line);text-align:right}\n"
    "th{background:var(--card);font-weight:600}\n"
    "td.l,th.l{text-align:left}\n"
    "td.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}\n"
    "tr.best td{background:#ecfdf5;font-weight:600}\n"
    "pre{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px;"
    "overflow:auto;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}\n"
    "details summary{cursor:pointer;margin:8px 0}\n"
    "footer{margin-top:40px;font-size:12px}\n"
    "@media print{.chart,.fact,pre{break-inside:avoid}}\n";

/* ---- text ---------------------------------------------------------------- */

/* HTML-escape at most max_chars UTF-8 characters of s (an ellipsis marks a cut);
 * control characters other than newline and tab are dropped (invalid in HTML). */
static void esc_max(FILE *f, const char *s, size_t max_chars) {
  if (!s) return;
  size_t chars = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if ((*p & 0xC0) != 0x80 && chars++ == max_chars) {
      fputs("&#8230;", f);
      return;
    }
    switch (*p) {
      case '&': fputs("&amp;", f); break;
      case '<': fputs("&lt;", f); break;
      case '>': fputs("&gt;", f); break;
      case '"': fputs("&quot;", f); break;
      case '\'': fputs("&#39;", f); break;
      default:
        if (*p >= 0x20 || *p == '\n' || *p == '\t') fputc(*p, f);
    }
  }
}

static void esc(FILE *f, const char *s) { esc_max(f, s, (size_t)-1); }

static size_t utf8_len(const char *s) {
  size_t n = 0;
  for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

static const char *class_name(const cli_report *r, int i, char *buf, size_t n) {
  if (r->class_names && r->class_names[i]) return r->class_names[i];
  snprintf(buf, n, "%d", i);
  return buf;
}

/* 1234567 -> "1,234,567" */
static void put_thousands(FILE *f, double v) {
  char buf[64];
  snprintf(buf, sizeof buf, "%.0f", v);
  const char *d = buf + (buf[0] == '-');
  size_t len = strlen(d);
  if (d != buf) fputc('-', f);
  for (size_t i = 0; i < len; i++) {
    fputc(d[i], f);
    if ((len - i - 1) % 3 == 0 && i + 1 < len) fputc(',', f);
  }
}

static void put_num(FILE *f, const char *fmt, double v) {
  if (isfinite(v))
    fprintf(f, fmt, v);
  else
    fputs("&#8212;", f);
}

static void put_pct(FILE *f, double frac) {
  if (isfinite(frac))
    fprintf(f, "%.2f&#8201;%%", frac * 100);
  else
    fputs("&#8212;", f);
}

static void put_duration(FILE *f, double s) {
  if (!isfinite(s) || s < 0)
    fputs("&#8212;", f);
  else if (s < 60)
    fprintf(f, "%.1f s", s);
  else if (s < 3600)
    fprintf(f, "%d min %02d s", (int)(s / 60), (int)fmod(s, 60));
  else
    fprintf(f, "%d h %02d min", (int)(s / 3600), (int)fmod(s / 60, 60));
}

static void fmt_count(char *buf, size_t n, int64_t c) {
  if (c < 10000)
    snprintf(buf, n, "%" PRId64, c);
  else if (c < 1000000)
    snprintf(buf, n, c < 100000 ? "%.1fk" : "%.0fk", (double)c / 1e3);
  else
    snprintf(buf, n, "%.1fM", (double)c / 1e6);
}

/* ---- line charts --------------------------------------------------------- */

enum { CW = 560, CH = 300, ML = 56, MR = 16, MT = 40, MB = 46 }; /* ML: least left margin */

typedef struct series {
  const char *name, *color;
  int n;
  const double *x, *y;
  double width, opacity;
  int markers; /* a circle with a hover title per point */
} series;

typedef struct band { /* shaded min..max envelope */
  int n;
  const double *x, *lo, *hi;
  const char *color;
} band;

typedef struct chart {
  const char *title, *xlabel, *ylabel, *note;
  int x_int;  /* integer ticks on x (epochs) */
  int y_zero; /* the y axis includes 0 */
  int y_pct;  /* values are percentages: keep the axis within [0, 100] */
} chart;

static double nice_step(double range, int target) {
  double raw = range / target;
  double mag = pow(10, floor(log10(raw)));
  double m = raw / mag;
  return (m < 1.5 ? 1 : m < 3 ? 2 : m < 7 ? 5 : 10) * mag;
}

static void fmt_tick(char *buf, size_t n, double v, double step) {
  if (fabs(v) < step * 1e-6) v = 0; /* no "-0" or 1e-17 from accumulated steps */
  double a = fabs(v);
  if (a >= 1e6 || step < 1e-3)
    snprintf(buf, n, "%.3g", v);
  else if (a >= 1e4 && step >= 1000)
    snprintf(buf, n, "%gk", v / 1000);
  else
    snprintf(buf, n, "%.*f", step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9), v);
}

static int any_finite(const series *s) {
  for (int i = 0; i < s->n; i++)
    if (isfinite(s->x[i]) && isfinite(s->y[i])) return 1;
  return 0;
}

static void svg_chart(FILE *f, const chart *c, const series *s, int ns, const band *b) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (int k = 0; k < ns; k++)
    for (int i = 0; i < s[k].n; i++) {
      double x = s[k].x[i], y = s[k].y[i];
      if (!isfinite(x) || !isfinite(y)) continue;
      x0 = fmin(x0, x), x1 = fmax(x1, x), y0 = fmin(y0, y), y1 = fmax(y1, y);
    }
  for (int i = 0; b && i < b->n; i++) {
    if (!isfinite(b->x[i]) || !isfinite(b->lo[i]) || !isfinite(b->hi[i])) continue;
    x0 = fmin(x0, b->x[i]), x1 = fmax(x1, b->x[i]);
    y0 = fmin(y0, b->lo[i]), y1 = fmax(y1, b->hi[i]);
  }
  int have = x0 <= x1;
  double ys = 1, ylo = 0, yhi = 1, xs = 1;
  int nyt = 0;
  size_t ylen = 1; /* longest y tick label: the left margin grows to fit it */
  char buf[48];
  if (have) {
    if (c->y_zero) y0 = fmin(y0, 0), y1 = fmax(y1, 0);
    if (x0 == x1) x0 -= 1, x1 += 1;
    if (y0 == y1) {
      double pad = y0 != 0 ? fabs(y0) * 0.1 : 1;
      y0 = c->y_zero && y0 >= 0 ? 0 : y0 - pad, y1 += pad;
    } else {
      /* a little air so markers at the extremes do not sit on the frame */
      double pad = (y1 - y0) * 0.03;
      if (!(c->y_zero && y0 == 0)) y0 -= pad;
      y1 += pad;
    }
    ys = nice_step(y1 - y0, 5);
    ylo = floor(y0 / ys) * ys, yhi = ceil(y1 / ys) * ys;
    if (c->y_pct) {
      if (ylo < 0 && y0 >= 0) ylo = 0;
      if (yhi > 100 && y1 <= 100) yhi = 100;
    }
    xs = nice_step(x1 - x0, 6);
    if (c->x_int && xs < 1) xs = 1;
    nyt = (int)floor((yhi - ylo) / ys + 1e-6);
    for (int i = 0; i <= nyt; i++) {
      fmt_tick(buf, sizeof buf, ylo + i * ys, ys);
      if (strlen(buf) > ylen) ylen = strlen(buf);
    }
  }
  const int ml = (int)fmax(ML, 34 + ylen * 6.5), pw = CW - ml - MR, ph = CH - MT - MB;
  fprintf(f, "<svg class=\"chart\" viewBox=\"0 0 %d %d\" xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"", CW, CH);
  esc(f, c->title);
  fprintf(f, "\">\n<text class=\"ct\" x=\"%d\" y=\"18\">", ml);
  esc(f, c->title);
  fputs("</text>\n", f);
  if (c->note) {
    fprintf(f, "<text class=\"note\" x=\"%d\" y=\"32\">", ml);
    esc(f, c->note);
    fputs("</text>\n", f);
  }
  if (!have) {
    fprintf(f, "<rect class=\"frame\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/>\n", ml, MT, pw, ph);
    fprintf(f, "<text class=\"al\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">no data</text>\n</svg>\n",
            ml + pw / 2, MT + ph / 2);
    return;
  }
#define PX(x) (ml + ((x) - x0) / (x1 - x0) * pw)
#define PY(y) (MT + (1 - ((y) - ylo) / (yhi - ylo)) * ph)
  for (int i = 0; i <= nyt; i++) {
    double v = ylo + i * ys, py = PY(v);
    fmt_tick(buf, sizeof buf, v, ys);
    fprintf(f, "<line class=\"grid\" x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\"/>"
               "<text class=\"tick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
            ml, ml + pw, py, py, ml - 6, py + 4, buf);
  }
  double xfirst = ceil(x0 / xs - 1e-9) * xs;
  int nxt = (int)floor((x1 - xfirst) / xs + 1e-6);
  for (int i = 0; i <= nxt; i++) {
    double v = xfirst + i * xs, px = PX(v);
    fmt_tick(buf, sizeof buf, v, xs);
    fprintf(f, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\"/>"
               "<text class=\"tick\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
            px, px, MT, MT + ph, px, MT + ph + 16, buf);
  }
  fprintf(f, "<rect class=\"frame\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/>\n", ml, MT, pw, ph);
  fprintf(f, "<text class=\"al\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">", ml + pw / 2, CH - 8);
  esc(f, c->xlabel);
  fprintf(f, "</text>\n<text class=\"al\" transform=\"translate(16 %d) rotate(-90)\" text-anchor=\"middle\">",
          MT + ph / 2);
  esc(f, c->ylabel);
  fputs("</text>\n", f);

  if (b && b->n > 0) {
    fprintf(f, "<polygon fill=\"%s\" fill-opacity=\"0.18\" stroke=\"none\" points=\"", b->color);
    for (int i = 0; i < b->n; i++)
      if (isfinite(b->x[i]) && isfinite(b->lo[i]) && isfinite(b->hi[i]))
        fprintf(f, "%.1f,%.1f ", PX(b->x[i]), PY(b->hi[i]));
    for (int i = b->n - 1; i >= 0; i--)
      if (isfinite(b->x[i]) && isfinite(b->lo[i]) && isfinite(b->hi[i]))
        fprintf(f, "%.1f,%.1f ", PX(b->x[i]), PY(b->lo[i]));
    fputs("\"/>\n", f);
  }
  for (int k = 0; k < ns; k++) {
    int nf = 0;
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" stroke-opacity=\"%.2f\" "
               "stroke-linejoin=\"round\" points=\"",
            s[k].color, s[k].width, s[k].opacity);
    for (int i = 0; i < s[k].n; i++)
      if (isfinite(s[k].x[i]) && isfinite(s[k].y[i]))
        nf++, fprintf(f, "%.1f,%.1f ", PX(s[k].x[i]), PY(s[k].y[i]));
    fputs("\"/>\n", f);
    if (!s[k].markers && nf != 1) continue; /* a lone point needs a marker to be seen */
    for (int i = 0; i < s[k].n; i++) {
      double x = s[k].x[i], y = s[k].y[i];
      if (!isfinite(x) || !isfinite(y)) continue;
      fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>", PX(x), PY(y), s[k].color);
      esc(f, s[k].name);
      fputs(", ", f);
      esc(f, c->xlabel);
      fprintf(f, c->y_pct ? " %g: %.2f %%</title></circle>\n" : " %g: %.5g</title></circle>\n", x, y);
    }
  }
#undef PX
#undef PY
  /* legend, right-aligned on the title line */
  double lx = CW - MR;
  for (int k = ns - 1; k >= 0; k--) {
    if (!s[k].name || !any_finite(&s[k])) continue;
    lx -= (double)utf8_len(s[k].name) * 6.2 + 34;
    fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"14\" y2=\"14\" stroke=\"%s\" stroke-width=\"3\" "
               "stroke-opacity=\"%.2f\"/><text class=\"lg\" x=\"%.1f\" y=\"18\">",
            lx, lx + 16, s[k].color, fmax(s[k].opacity, 0.5), lx + 20);
    esc(f, s[k].name);
    fputs("</text>\n", f);
  }
  fputs("</svg>\n", f);
}

/* Per-step loss: raw (faint) and an exponential moving average, or for long runs
 * a min..max band per group of steps with the average's mean on top. */
static cnn_status step_chart(FILE *f, const cli_report *r) {
  int n = r->n_steps;
  double *x = malloc(sizeof(double) * n), *y = malloc(sizeof(double) * n),
         *sm = malloc(sizeof(double) * n);
  if (!x || !y || !sm) {
    free(x), free(y), free(sm);
    return cnn_error(CNN_ERR_NOMEM, "report: no memory for %d loss steps", n);
  }
  double w = fmin(fmax(n / 50.0, 1), 200), decay = 1 - 2 / (w + 1), acc = 0, wsum = 0;
  for (int i = 0; i < n; i++) {
    x[i] = r->step_index ? (double)r->step_index[i] : i;
    y[i] = r->step_loss[i];
    if (isfinite(y[i])) {
      acc = decay * acc + (1 - decay) * y[i];
      wsum = decay * wsum + (1 - decay); /* bias correction: early values are not pulled to 0 */
      sm[i] = acc / wsum;
    } else {
      sm[i] = NAN;
    }
  }
  chart c = {"Training loss per step", "step", "loss", NULL, 0, 1, 0};
  char note[128];
  if (n <= REPORT_MAX_POINTS) {
    series s[2] = {{"per step", C_TRAIN, n, x, y, 1.2, n >= 20 ? 0.3 : 1, n <= 60},
                   {"moving average", C_TRAIN, n, x, sm, 2, 1, 0}};
    c.x_int = 1;
    svg_chart(f, &c, s, n >= 20 ? 2 : 1, NULL);
  } else {
    int m = REPORT_MAX_POINTS / 2;
    double *bx = malloc(sizeof(double) * m * 4), *lo = bx + m, *hi = lo + m, *mean = hi + m;
    if (!bx) {
      free(x), free(y), free(sm);
      return cnn_error(CNN_ERR_NOMEM, "report: no memory for the loss chart");
    }
    for (int g = 0; g < m; g++) {
      int i0 = (int)((int64_t)g * n / m), i1 = (int)((int64_t)(g + 1) * n / m), cnt = 0;
      double sx = 0, ss = 0, l = INFINITY, h = -INFINITY;
      for (int i = i0; i < i1; i++) {
        if (!isfinite(y[i])) continue;
        cnt++, sx += x[i], ss += sm[i], l = fmin(l, y[i]), h = fmax(h, y[i]);
      }
      bx[g] = cnt ? sx / cnt : NAN, lo[g] = l, hi[g] = h, mean[g] = cnt ? ss / cnt : NAN;
    }
    snprintf(note, sizeof note, "%d steps in %d groups; band: min to max of each group", n, m);
    c.note = note;
    c.x_int = 1;
    series s = {"moving average", C_TRAIN, m, bx, mean, 2, 1, 0};
    band b = {m, bx, lo, hi, C_TRAIN};
    svg_chart(f, &c, &s, 1, &b);
    free(bx);
  }
  free(x), free(y), free(sm);
  return CNN_OK;
}

static const char *eval_name(const cli_report *r) {
  return r->eval_name && *r->eval_name ? r->eval_name : "test";
}

/* Learning rate per step: every step up to REPORT_MAX_POINTS; beyond, each group
 * of steps gives its smallest and largest rate in step order, so a peak (the top
 * of a one-cycle ramp) or a step drop is drawn at its height, never averaged away.
 * The note names the peak and the final rate. */
static cnn_status lr_chart(FILE *f, const cli_report *r) {
  int n = r->n_steps, m = n <= REPORT_MAX_POINTS ? n : REPORT_MAX_POINTS / 2;
  double *x = malloc(sizeof(double) * (size_t)(2 * m + 1) * 2), *y = x ? x + 2 * m + 1 : NULL;
  if (!x) return cnn_error(CNN_ERR_NOMEM, "report: no memory for the learning-rate chart");
  int k = 0, ipeak = -1, ilast = -1;
  for (int i = 0; i < n; i++) {
    if (!isfinite(r->step_lr[i])) continue;
    if (ipeak < 0 || r->step_lr[i] > r->step_lr[ipeak]) ipeak = i;
    ilast = i;
  }
#define STEP_X(i) (r->step_index ? (double)r->step_index[i] : (double)(i))
  for (int g = 0; g < m; g++) {
    int i0 = (int)((int64_t)g * n / m), i1 = (int)((int64_t)(g + 1) * n / m), lo = -1, hi = -1;
    for (int i = i0; i < i1; i++) {
      if (!isfinite(r->step_lr[i])) continue;
      if (lo < 0 || r->step_lr[i] < r->step_lr[lo]) lo = i;
      if (hi < 0 || r->step_lr[i] > r->step_lr[hi]) hi = i;
    }
    if (lo < 0) continue;
    int a = lo < hi ? lo : hi, b = lo < hi ? hi : lo;
    x[k] = STEP_X(a), y[k++] = r->step_lr[a];
    if (b != a) x[k] = STEP_X(b), y[k++] = r->step_lr[b];
  }
  char note[160] = "";
  if (ipeak >= 0)
    snprintf(note, sizeof note, "peak %.6g at step %.0f; final %.6g%s", r->step_lr[ipeak],
             STEP_X(ipeak), r->step_lr[ilast],
             n > REPORT_MAX_POINTS ? "; each group of steps drawn by its min and max" : "");
#undef STEP_X
  chart c = {"Learning rate per step", "step", "learning rate", note[0] ? note : NULL, 1, 1, 0};
  series s = {"learning rate", C_LR, k, x, y, 2, 1, 0};
  svg_chart(f, &c, &s, 1, NULL);
  free(x);
  return CNN_OK;
}

static int any_finite_f(const float *v, int n) {
  for (int i = 0; v && i < n; i++)
    if (isfinite(v[i])) return 1;
  return 0;
}

static cnn_status epoch_charts(FILE *f, const cli_report *r) {
  int n = r->n_epochs;
  double *v = malloc(sizeof(double) * n * 6);
  if (!v) return cnn_error(CNN_ERR_NOMEM, "report: no memory for %d epochs", n);
  double *ep = v, *trl = v + n, *tel = v + 2 * n, *tra = v + 3 * n, *tea = v + 4 * n, *lr = v + 5 * n;
  for (int i = 0; i < n; i++) {
    const cli_epoch_stats *e = &r->epochs[i];
    ep[i] = e->epoch, trl[i] = e->train_loss, tel[i] = e->test_loss;
    tra[i] = e->train_acc * 100, tea[i] = e->test_acc * 100, lr[i] = e->lr;
  }
  int mk = n <= 60;
  const char *en = eval_name(r);
  series loss[2] = {{"train", C_TRAIN, n, ep, trl, 2, 1, mk}, {en, C_TEST, n, ep, tel, 2, 1, mk}};
  series acc[2] = {{"train", C_TRAIN, n, ep, tra, 2, 1, mk}, {en, C_TEST, n, ep, tea, 2, 1, mk}};
  series lrs = {"learning rate", C_LR, n, ep, lr, 2, 1, mk};
  chart cl = {"Loss per epoch", "epoch", "loss", NULL, 1, 1, 0};
  chart ca = {"Accuracy per epoch", "epoch", "accuracy (%)", NULL, 1, 0, 1};
  chart cr = {"Learning rate per epoch", "epoch", "learning rate", NULL, 1, 1, 0};
  svg_chart(f, &cl, loss, 2, NULL);
  svg_chart(f, &ca, acc, 2, NULL);
  if (any_finite_f(r->step_lr, r->n_steps)) { /* per step: the epochs' samples miss peaks */
    free(v);
    return lr_chart(f, r);
  }
  svg_chart(f, &cr, &lrs, 1, NULL);
  free(v);
  return CNN_OK;
}

/* ---- confusion matrix ----------------------------------------------------- */

/* t in [0, 1] along a light-to-dark ramp */
static void ramp(char *buf, size_t n, double t, const int a[3], const int b[3]) {
  t = fmin(fmax(t, 0), 1);
  snprintf(buf, n, "#%02x%02x%02x", (int)lround(a[0] + (b[0] - a[0]) * t),
           (int)lround(a[1] + (b[1] - a[1]) * t), (int)lround(a[2] + (b[2] - a[2]) * t));
}
static const int blue0[3] = {239, 246, 255}, blue1[3] = {30, 64, 175};
static const int red0[3] = {254, 242, 242}, red1[3] = {185, 28, 28};

static void cm_svg(FILE *f, const cli_report *r, const int64_t *rows) {
  const int k = r->classes;
  const int64_t *m = r->confusion;
  /* cell size shrinks with the class count; numbers only where they fit */
  int cell = k <= 10 ? 48 : k <= 20 ? 34 : k <= 40 ? 20 : k <= 80 ? 11 : k <= 200 ? 8 : 4;
  int numbers = cell >= 30, titles = k <= 200;
  double lf = fmin(12, fmax(cell * 0.8, 7)); /* label font */
  /* column labels at -45 degrees read best but need ~1.4 font heights of spacing */
  int steep = cell < 20;
  double rot = steep ? -90 : -45, lift = steep ? 1.0 : 0.72;
  int every = (int)ceil(lf / cell); /* label every n-th class when rows are thin: 1, 2, 5, 10 */
  if (every > 2) every = every <= 5 ? 5 : 10;
  size_t maxlen = 1;
  char nb[32], col[16];
  for (int i = 0; i < k; i++) {
    size_t l = utf8_len(class_name(r, i, nb, sizeof nb));
    if (l > maxlen) maxlen = l;
  }
  const size_t maxchars = 18;
  double lw = (double)(maxlen < maxchars ? maxlen : maxchars) * lf * 0.6 + 8;
  double gx = 30 + lw, gy = 30 + lw * lift; /* grid origin: room for labels */
  double rcw = numbers ? 56 : fmax(cell, 14), scw = numbers ? 60 : 0;
  double ex = gx + k * cell + 8; /* extra columns: recall, support */
  double W = ex + rcw + scw + (steep ? lf : lw * 0.72) + 12, H = gy + (double)k * cell + 12;
  fprintf(f, "<svg class=\"cm\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
             "xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"confusion matrix\">\n",
          W, H, W, H);
  fprintf(f, "<text class=\"al\" x=\"%.1f\" y=\"14\" text-anchor=\"middle\">predicted class</text>\n",
          gx + k * cell / 2.0);
  fprintf(f, "<text class=\"al\" transform=\"translate(14 %.1f) rotate(-90)\" text-anchor=\"middle\">true class</text>\n",
          gy + k * cell / 2.0);
  fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"#f9fafb\" stroke=\"#d1d5db\"/>\n",
          gx, gy, k * cell, k * cell);
  for (int i = 0; i < k; i += every) {
    const char *name = class_name(r, i, nb, sizeof nb);
    double c = (i + 0.5) * cell;
    fprintf(f, "<text class=\"lg\" style=\"font-size:%.1fpx\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\"><title>",
            lf, gx - 5, gy + c + lf * 0.35);
    esc(f, name);
    fputs("</title>", f);
    esc_max(f, name, maxchars - 1);
    fprintf(f, "</text>\n<text class=\"lg\" style=\"font-size:%.1fpx\" transform=\"translate(%.1f %.1f) rotate(%.0f)\"><title>",
            lf, gx + c + lf * 0.35, gy - 5, rot);
    esc(f, name);
    fputs("</title>", f);
    esc_max(f, name, maxchars - 1);
    fputs("</text>\n", f);
  }
  fprintf(f, "<text class=\"lg\" style=\"font-size:%.1fpx;font-weight:600\" transform=\"translate(%.1f %.1f) rotate(%.0f)\">recall</text>\n",
          lf, ex + rcw / 2 + lf * 0.35, gy - 5, rot);
  if (numbers)
    fprintf(f, "<text class=\"lg\" style=\"font-size:%.1fpx;font-weight:600\" transform=\"translate(%.1f %.1f) rotate(-45)\">images</text>\n",
            lf, ex + rcw + scw / 2 - 2, gy - 5);
  double vf = k <= 10 ? 12 : 10; /* value font */
  for (int i = 0; i < k; i++) {
    double y = gy + (double)i * cell;
    for (int j = 0; j < k; j++) {
      int64_t v = m[(size_t)i * k + j];
      if (v <= 0) continue; /* zero cells are the background: small files for big k */
      double frac = rows[i] ? (double)v / rows[i] : 0;
      /* errors are usually a few percent: sqrt(2 share) lifts them off the background */
      double t = i == j ? frac : sqrt(fmin(1, 2 * frac));
      ramp(col, sizeof col, 0.08 + 0.92 * t, i == j ? blue0 : red0, i == j ? blue1 : red1);
      double x = gx + (double)j * cell;
      fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"%s\"%s>", x, y, cell,
              cell, col, cell >= 10 ? " stroke=\"#fff\"" : "");
      if (titles) {
        fputs("<title>true ", f);
        esc(f, class_name(r, i, nb, sizeof nb));
        fputs(", predicted ", f);
        esc(f, class_name(r, j, nb, sizeof nb));
        fprintf(f, ": %" PRId64 " (%.1f %% of the class)</title>", v, frac * 100);
      }
      fputs("</rect>\n", f);
      if (numbers) {
        fmt_count(nb, sizeof nb, v);
        fprintf(f, "<text class=\"cv%s\" style=\"font-size:%.0fpx\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                t > 0.5 ? " w" : "", vf, x + cell / 2.0, y + cell / 2.0 + vf * 0.35, nb);
      }
    }
    /* recall column */
    double rec = rows[i] ? (double)m[(size_t)i * k + i] / rows[i] : NAN;
    /* recalls bunch near 100 %: the cube spreads 80 % and 99 % apart */
    double rt = isfinite(rec) ? 0.08 + 0.92 * rec * rec * rec : 0;
    if (isfinite(rec))
      ramp(col, sizeof col, rt, blue0, blue1);
    else
      snprintf(col, sizeof col, "#f3f4f6");
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.0f\" height=\"%d\" fill=\"%s\"%s>", ex, y, rcw,
            cell, col, cell >= 10 ? " stroke=\"#fff\"" : "");
    if (titles) {
      fputs("<title>recall of ", f);
      esc(f, class_name(r, i, nb, sizeof nb));
      if (isfinite(rec))
        fprintf(f, ": %.2f %%</title>", rec * 100);
      else
        fputs(": no images</title>", f);
    }
    fputs("</rect>\n", f);
    if (numbers) {
      if (isfinite(rec))
        snprintf(nb, sizeof nb, k <= 10 ? "%.1f%%" : "%.0f%%", rec * 100);
      else
        snprintf(nb, sizeof nb, "-");
      fprintf(f, "<text class=\"cv%s\" style=\"font-size:%.0fpx\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
              rt > 0.5 ? " w" : "", vf, ex + rcw / 2, y + cell / 2.0 + vf * 0.35, nb);
      fmt_count(nb, sizeof nb, rows[i]);
      fprintf(f, "<text class=\"cv\" style=\"font-size:%.0fpx\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
              vf, ex + rcw + scw / 2, y + cell / 2.0 + vf * 0.35, nb);
    }
  }
  fputs("</svg>\n", f);
}

/* Per-class table: support, recall, precision and the most frequent mistake. */
static void cm_table(FILE *f, const cli_report *r, const int64_t *rows, const int64_t *cols) {
  const int k = r->classes;
  const int64_t *m = r->confusion;
  char nb[32];
  fprintf(f, "<details%s><summary>Per-class results (%d classes)</summary>\n", k <= 20 ? " open" : "", k);
  fputs("<table><tr><th class=\"l\">class</th><th>images</th><th>correct</th><th>recall</th>"
        "<th>precision</th><th class=\"l\">most often predicted instead</th></tr>\n",
        f);
  for (int i = 0; i < k; i++) {
    int64_t diag = m[(size_t)i * k + i], worst = 0;
    int wj = -1;
    for (int j = 0; j < k; j++)
      if (j != i && m[(size_t)i * k + j] > worst) worst = m[(size_t)i * k + j], wj = j;
    fputs("<tr><td class=\"l\">", f);
    esc(f, class_name(r, i, nb, sizeof nb));
    fputs("</td><td>", f);
    put_thousands(f, (double)rows[i]);
    fputs("</td><td>", f);
    put_thousands(f, (double)diag);
    fputs("</td><td>", f);
    put_pct(f, rows[i] ? (double)diag / rows[i] : NAN);
    fputs("</td><td>", f);
    put_pct(f, cols[i] ? (double)diag / cols[i] : NAN);
    fputs("</td><td class=\"l\">", f);
    if (wj >= 0) {
      esc(f, class_name(r, wj, nb, sizeof nb));
      fprintf(f, " (%" PRId64 ")", worst);
    } else {
      fputs("&#8212;", f);
    }
    fputs("</td></tr>\n", f);
  }
  fputs("</table></details>\n", f);
}

static cnn_status confusion_section(FILE *f, const cli_report *r) {
  const int k = r->classes;
  int64_t *rows = calloc((size_t)k * 2, sizeof *rows), *cols = rows + k, total = 0, correct = 0;
  if (!rows) return cnn_error(CNN_ERR_NOMEM, "report: no memory for %d classes", k);
  for (int i = 0; i < k; i++)
    for (int j = 0; j < k; j++) {
      int64_t v = r->confusion[(size_t)i * k + j];
      if (v < 0) v = 0;
      rows[i] += v, cols[j] += v, total += v;
      if (i == j) correct += v;
    }
  fputs("<h2>Confusion matrix</h2>\n", f);
  if (total == 0) {
    fputs("<p class=\"muted\">The confusion matrix is empty (no images were evaluated).</p>\n", f);
    free(rows);
    return CNN_OK;
  }
  fputs("<p class=\"muted\">Rows are the true class, columns the prediction. Blue cells are correct "
        "(shaded by the share of the true class), red cells are confusions (shaded by the square "
        "root of twice that share, so rare mistakes stay visible). ",
        f);
  fputs("Overall accuracy ", f);
  put_pct(f, (double)correct / total);
  fputs(" on ", f);
  put_thousands(f, (double)total);
  fputs(" images.</p>\n<div class=\"cmwrap\">\n", f);
  cm_svg(f, r, rows);
  fputs("</div>\n", f);
  cm_table(f, r, rows, cols);
  free(rows);
  return CNN_OK;
}

/* ---- page ------------------------------------------------------------------ */

static void fact(FILE *f, const char *key, const char *value) {
  if (!value || !*value) return;
  fprintf(f, "<div class=\"fact\"><div class=\"k\">%s</div><div class=\"v\">", key);
  esc(f, value);
  fputs("</div></div>\n", f);
}

static void fact_open(FILE *f, const char *key) {
  fprintf(f, "<div class=\"fact\"><div class=\"k\">%s</div><div class=\"v\">", key);
}

static void facts(FILE *f, const cli_report *r) {
  /* best: the caller's, else the epoch with the highest test accuracy */
  double best = r->best_acc;
  int best_epoch = r->best_epoch;
  if (best_epoch <= 0) {
    best = NAN;
    for (int i = 0; i < r->n_epochs; i++)
      if (isfinite(r->epochs[i].test_acc) && !(r->epochs[i].test_acc <= best))
        best = r->epochs[i].test_acc, best_epoch = r->epochs[i].epoch;
  }
  double ips = 0, peak = 0;
  int nips = 0;
  for (int i = 0; i < r->n_epochs; i++)
    if (isfinite(r->epochs[i].images_per_s) && r->epochs[i].images_per_s > 0)
      ips += r->epochs[i].images_per_s, nips++, peak = fmax(peak, r->epochs[i].images_per_s);
  fputs("<section class=\"facts\">\n", f);
  fact(f, "Model", r->model_path);
  fact(f, "Data", r->data_spec);
  fact(f, "Device", r->device);
  fact(f, "Precision", r->precision);
  fprintf(f, "<div class=\"fact\"><div class=\"k\">Best %s accuracy</div><div class=\"v\">",
          eval_name(r));
  put_pct(f, best);
  if (isfinite(best) && best_epoch > 0) fprintf(f, " <span class=\"muted\">(epoch %d)</span>", best_epoch);
  fputs("</div></div>\n", f);
  if (r->n_epochs > 0) {
    const cli_epoch_stats *last = &r->epochs[r->n_epochs - 1];
    fprintf(f, "<div class=\"fact\"><div class=\"k\">Final %s accuracy</div><div class=\"v\">",
            eval_name(r));
    put_pct(f, last->test_acc);
    fputs("</div></div>\n", f);
  }
  fact_open(f, "Total time");
  put_duration(f, r->total_seconds);
  fputs("</div></div>\n", f);
  fact_open(f, "Throughput");
  if (nips) {
    put_thousands(f, ips / nips);
    fputs(" images/s", f);
    if (nips > 1) {
      fputs(" <span class=\"muted\">(peak ", f);
      put_thousands(f, peak);
      fputs(")</span>", f);
    }
  } else {
    fputs("&#8212;", f);
  }
  fputs("</div></div>\n", f);
  fact_open(f, "Epochs / steps");
  fprintf(f, "%d / ", r->n_epochs);
  put_thousands(f, r->n_steps);
  fputs("</div></div>\n", f);
  if (r->classes > 0) {
    fact_open(f, "Classes");
    fprintf(f, "%d", r->classes);
    fputs("</div></div>\n", f);
  }
  fact(f, "Started", r->started_at);
  fact(f, "Stopped", r->note);
  fact(f, "Written", r->written_at);
  fact(f, "cnn version", r->version);
  fputs("</section>\n", f);
}

static void epoch_table(FILE *f, const cli_report *r, int best_epoch) {
  fprintf(f, "<h2>Epochs</h2>\n<table><tr><th>epoch</th><th>train loss</th><th>train acc</th>"
          "<th>%s loss</th><th>%s acc</th><th>learning rate</th><th>time (s)</th>"
          "<th>images/s</th></tr>\n", eval_name(r), eval_name(r));
  for (int i = 0; i < r->n_epochs; i++) {
    const cli_epoch_stats *e = &r->epochs[i];
    fprintf(f, "<tr%s><td>%d</td><td>", e->epoch == best_epoch ? " class=\"best\"" : "", e->epoch);
    put_num(f, "%.4f", e->train_loss);
    fputs("</td><td>", f);
    put_pct(f, e->train_acc);
    fputs("</td><td>", f);
    put_num(f, "%.4f", e->test_loss);
    fputs("</td><td>", f);
    put_pct(f, e->test_acc);
    fputs("</td><td>", f);
    put_num(f, "%.4g", e->lr);
    fputs("</td><td>", f);
    put_num(f, "%.2f", e->seconds);
    fputs("</td><td>", f);
    if (isfinite(e->images_per_s))
      put_thousands(f, e->images_per_s);
    else
      fputs("&#8212;", f);
    fputs("</td></tr>\n", f);
  }
  fputs("</table>\n", f);
}

static cnn_status write_html(FILE *f, const cli_report *r) {
  const char *title = r->title && *r->title ? r->title : "cnn training report";
  fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>",
        f);
  esc(f, title);
  fprintf(f, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<header>\n<h1>", css);
  esc(f, title);
  fputs("</h1>\n<p class=\"sub\">", f);
  const char *sub[] = {r->model_path, r->data_spec, r->device, r->started_at};
  int any = 0;
  for (size_t i = 0; i < sizeof sub / sizeof *sub; i++) {
    if (!sub[i] || !*sub[i]) continue;
    if (any++) fputs(" &#183; ", f);
    esc(f, sub[i]);
  }
  fputs("</p>\n</header>\n", f);
  facts(f, r);

  fputs("<h2>Training curves</h2>\n", f);
  if (r->n_steps == 0 && r->n_epochs == 0)
    fputs("<p class=\"muted\">No training steps were recorded.</p>\n", f);
  else {
    fputs("<div class=\"charts\">\n", f);
    if (r->n_steps > 0) CNN_TRY(step_chart(f, r));
    if (r->n_epochs > 0) CNN_TRY(epoch_charts(f, r));
    fputs("</div>\n", f);
    if (r->n_epochs == 0) fputs("<p class=\"muted\">No epoch was completed.</p>\n", f);
  }

  if (r->classes > 0 && r->confusion) CNN_TRY(confusion_section(f, r));

  if (r->n_epochs > 0) {
    int best_epoch = r->best_epoch;
    if (best_epoch <= 0) {
      double best = NAN;
      for (int i = 0; i < r->n_epochs; i++)
        if (isfinite(r->epochs[i].test_acc) && !(r->epochs[i].test_acc <= best))
          best = r->epochs[i].test_acc, best_epoch = r->epochs[i].epoch;
    }
    epoch_table(f, r, best_epoch);
  }

  if (r->n_hyper > 0) {
    fputs("<h2>Hyper-parameters</h2>\n<table>\n", f);
    for (int i = 0; i < r->n_hyper; i++) {
      fputs("<tr><td class=\"l\">", f);
      esc(f, r->hyper_keys[i]);
      fputs("</td><td class=\"l mono\">", f);
      esc(f, r->hyper_values[i]);
      fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
  }
  if (r->summary_text && *r->summary_text) {
    fputs("<h2>Model summary</h2>\n<pre>", f);
    esc(f, r->summary_text);
    fputs("</pre>\n", f);
  }
  fputs("<footer>Written by the cnn command", f);
  if (r->version && *r->version) {
    fputs(" ", f);
    esc(f, r->version);
  }
  if (r->written_at && *r->written_at) {
    fputs(" on ", f);
    esc(f, r->written_at);
  }
  fputs(". This file is self-contained: it needs no network.</footer>\n</body>\n</html>\n", f);
  return CNN_OK;
}

cnn_status cli_report_write(const char *path, const cli_report *r) {
  if (!path || !*path || !r) return cnn_error(CNN_ERR_ARG, "report: no path or no report given");
  if (r->n_epochs < 0 || r->n_steps < 0 || r->classes < 0 || r->n_hyper < 0 ||
      (r->n_epochs > 0 && !r->epochs) || (r->n_steps > 0 && !r->step_loss) ||
      (r->n_hyper > 0 && (!r->hyper_keys || !r->hyper_values)))
    return cnn_error(CNN_ERR_ARG, "report %s: inconsistent counts and arrays", path);
  size_t n = strlen(path);
  char *tmp = malloc(n + 5);
  if (!tmp) return cnn_error(CNN_ERR_NOMEM, "report %s: no memory", path);
  memcpy(tmp, path, n);
  memcpy(tmp + n, ".tmp", 5);
  FILE *f = fopen(tmp, "w");
  if (!f) {
    cnn_status s = cnn_error(CNN_ERR_IO, "cannot write report %s: %s", tmp, strerror(errno));
    free(tmp);
    return s;
  }
  errno = 0; /* so a write error's errno is not confused with an older one */
  cnn_status st = write_html(f, r);
  /* flush and sync before the rename, so a crash leaves the old report or the new one */
  int bad = ferror(f) || fflush(f) != 0 || fsync(fileno(f)) != 0;
  int err = errno;
  if (fclose(f) != 0 && !bad) bad = 1, err = errno;
  if (st == CNN_OK && bad)
    st = cnn_error(CNN_ERR_IO, "cannot write report %s: %s", tmp, err ? strerror(err) : "write error");
  if (st == CNN_OK && rename(tmp, path) != 0)
    st = cnn_error(CNN_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
  if (st != CNN_OK) remove(tmp);
  free(tmp);
  return st;
}
