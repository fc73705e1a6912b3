#!/usr/bin/env python3
"""The tables of `make bench`, in markdown, from the JSON files bench/run.sh writes:

  cnn-*.json      `cnn bench --json` (or, when it failed, {"tool": "cnn", "error": ...});
                  names ending in -own.json / -cudnn.json are the --conv-engine runs
  pytorch*.json   bench/pytorch_models.py --json
  tta*.json       bench/tta.py --json

    python3 bench/table.py runs/bench            # every *.json there
    python3 bench/table.py a.json b.json ...

Prints one table of the measurements (rows: model, precision, metric, batch; columns:
cnn, each PyTorch mode, cnn / the best PyTorch mode), the per-layer conv table of our
engine against cuDNN (GPU runs with both engines), and DESIGN.md's performance targets
with pass / miss. Standard library only.
"""
import glob
import json
import os
import re
import sys

MODEL_ORDER = ["lenet", "resnet9", "resnet50", "mobilenet_v2"]
PREC_ORDER = ["fp32", "tf32", "bf16"]
METRIC_ORDER = ["train", "infer", "latency"]
MODE_ORDER = ["eager", "channels_last", "cuda_graph", "compile"]
CNN_KEYS = {"train": "train_images_per_s", "infer": "infer_images_per_s",
            "latency": "latency_ms_batch1"}
NOT_INSTALLED = "torch not installed"


def model_name(m):
    return os.path.basename(str(m or "?")).rsplit(".cfg", 1)[0]


def order(lst, v):
    return (lst.index(v), "") if v in lst else (len(lst), str(v))


def fmt_value(v, metric):
    if v is None:
        return "—"
    if isinstance(v, str):  # a failed run: its footnote
        return v
    if metric == "latency":
        return "%.3f ms" % v
    return format(round(v), ",") if v >= 100 else "%.1f" % v


def fmt_ratio(r):
    return "—" if r is None else "%.2f×" % r


def good(v):
    return isinstance(v, (int, float)) and v >= 0


class Data:
    def __init__(self):
        self.cnn = []          # cnn bench documents (default engine)
        self.engines = {}      # (model, precision, batch) -> {"own": doc, "cudnn": doc}
        self.pytorch = []      # pytorch_models.py documents
        self.tta = []
        self.cnn_errors = []   # failed cnn runs
        self.notes = []

    def load(self, path):
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            self.notes.append("%s: unreadable (%s)" % (os.path.basename(path), e))
            return
        base = os.path.basename(path)
        tool = doc.get("tool")
        if tool == "pytorch" or base.startswith("pytorch"):
            self.pytorch.append(doc)
        elif tool == "tta" or base.startswith("tta"):
            self.tta.append(doc)
        elif doc.get("error") and "train_images_per_s" not in doc:
            doc["_file"] = base
            self.cnn_errors.append(doc)
        elif "model" in doc:
            eng = None
            m = re.search(r"-(own|cudnn)\.json$", base)
            if m:
                eng = m.group(1)
            elif doc.get("conv_engine") in ("own", "cudnn") and base.startswith("cnn-engine"):
                eng = doc["conv_engine"]
            if eng:
                key = (model_name(doc["model"]), doc.get("precision"), doc.get("batch"))
                self.engines.setdefault(key, {})[eng] = doc
            else:
                self.cnn.append(doc)

    # ---- the measurements -------------------------------------------------------------

    def cnn_rows(self):
        rows = {}
        for d in self.cnn:
            m, p, b = model_name(d["model"]), d.get("precision"), d.get("batch")
            for metric in METRIC_ORDER:
                v = d.get(CNN_KEYS[metric])
                if not good(v):
                    continue
                batch = 1 if metric == "latency" else b
                if metric == "infer" and b == 1:
                    continue  # a latency run (--infer --batch 1): the latency row says it
                rows[(m, p, metric, batch)] = v
        for i, d in enumerate(self.cnn_errors):  # a failed run: its rows say so
            m, p, b = model_name(d.get("model")), d.get("precision"), d.get("batch")
            for metric in METRIC_ORDER:
                key = (m, p, metric, 1 if metric == "latency" else b)
                if key not in rows and not (metric == "infer" and b == 1):
                    rows[key] = "failed [c%d]" % (i + 1)
        return rows

    def cnn_value(self, key):
        """cnn's number for a row (None when it failed or is missing)"""
        v = self.cnn_rows().get(key)
        return v if isinstance(v, (int, float)) else None

    def torch_state(self):
        """(error for every PyTorch cell or None, {row: {mode: (value, error)}}, modes)"""
        cells, modes = {}, []
        if not self.pytorch:
            return "not run", cells, modes
        errs = [d.get("error") for d in self.pytorch if d.get("error")]
        if errs and len(errs) == len(self.pytorch):
            return errs[0], cells, modes
        for d in self.pytorch:
            for r in d.get("results", []):
                key = (r["model"], r["precision"], r["metric"], r["batch"])
                cells.setdefault(key, {})[r["mode"]] = (r.get("value"), r.get("error"))
                if r["mode"] not in modes:
                    modes.append(r["mode"])
        modes.sort(key=lambda m: order(MODE_ORDER, m))
        return None, cells, modes

    def device(self):
        for d in self.cnn + self.cnn_errors + self.pytorch:
            if d.get("device"):
                return d["device"]
        return "?"


def best(metric, mode_cells, modes=None):
    """(value, mode) of the best PyTorch measurement among `modes` (all if None)"""
    vals = [(v, m) for m, (v, e) in mode_cells.items()
            if v is not None and (modes is None or m in modes)]
    if not vals:
        return None, None
    return (min if metric == "latency" else max)(vals)


def ratio(metric, cnn, ref):
    if cnn is None or ref is None or ref <= 0:
        return None
    return cnn / ref


def main_table(data, out):
    crow = data.cnn_rows()
    terr, tcells, modes = data.torch_state()
    if terr:
        modes = [m for m in MODE_ORDER if data.device() == "cuda" or m != "cuda_graph"]
    keys = sorted(set(crow) | set(tcells), key=lambda k: (order(MODEL_ORDER, k[0]),
                                                         order(PREC_ORDER, k[1]),
                                                         order(METRIC_ORDER, k[2]), k[3]))
    footnotes = []
    if terr:
        out.append("PyTorch: %s." % terr)
        out.append("")
    head = ["model", "precision", "metric", "batch", "cnn"] + ["PyTorch " + m for m in modes] + \
           ["cnn / PyTorch best"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join(" --- " for _ in head) + "|")
    for k in keys:
        m, p, metric, b = k
        cnn = crow.get(k)
        cells = [m, p, metric + (" (ms)" if metric == "latency" else " (img/s)"), str(b),
                 fmt_value(cnn, metric)]
        mc = tcells.get(k, {})
        for mode in modes:
            if terr:
                cells.append(terr)
                continue
            v, e = mc.get(mode, (None, None))
            if v is not None:
                cells.append(fmt_value(v, metric))
            elif e is None:
                cells.append("—")
            elif e == "cuda only":
                cells.append("n/a")
            elif e.startswith("skipped"):
                cells.append("skipped")
            else:
                if e not in footnotes:
                    footnotes.append(e)
                cells.append("error [%d]" % (footnotes.index(e) + 1))
        bv, bm = best(metric, mc)
        r = ratio(metric, cnn if not isinstance(cnn, str) else None, bv)
        cells.append(fmt_ratio(r) + (" (vs %s)" % bm if r is not None else ""))
        out.append("| " + " | ".join(cells) + " |")
    if not keys:
        out.append("| (no measurements) |" + " |" * (len(head) - 1))
    out.append("")
    out.append("img/s: images per second, higher is better; latency: ms for one image, "
               "lower is better, so the latency ratio wants to be below 1.")
    for i, e in enumerate(footnotes):
        out.append("[%d] %s" % (i + 1, e))
    for i, d in enumerate(data.cnn_errors):
        out.append("[c%d] cnn (%s): %s" % (i + 1, d.get("_file", "?"), d.get("error")))


# ---- conv layers: our engine against cuDNN -------------------------------------------------


def conv_shape(layer):
    """(c_in, groups, kh, kw, filters) of a conv layer from its description and FLOPs"""
    desc = layer.get("desc", "")
    m = re.search(r"(\d+)x(\d+)/", desc)
    kh, kw = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
    g = re.search(r"groups (\d+)", desc)
    groups = int(g.group(1)) if g else 1
    h, w, k = (layer.get("out") or [0, 0, 0])[:3]
    per_group = 0
    if h and w and k:
        per_group = round(layer.get("gflop", 0) * 1e9 / (2.0 * h * w * k * kh * kw))
    return per_group * groups, groups, kh, kw, k


def conv_table(data, out):
    pairs = [(k, v) for k, v in sorted(data.engines.items(), key=lambda kv: (
        order(MODEL_ORDER, kv[0][0]), order(PREC_ORDER, kv[0][1]), kv[0][2]))
        if "own" in v and "cudnn" in v]
    results = []  # (kind, pass)
    if not pairs:
        out.append("No conv-engine runs (cnn bench --conv-engine own / cudnn, GPU only).")
        return results
    out.append("| model | precision | batch | # | conv | out (HxWxC) | c_in | kind | own fwd ms | "
               "cuDNN fwd ms | fwd cuDNN/own | own bwd ms | cuDNN bwd ms | bwd cuDNN/own | "
               "target | result |")
    out.append("|" + " --- |" * 16)
    ms = lambda v: "%.3f" % v if v is not None else "—"  # noqa: E731
    for (m, p, b), d in pairs:
        cud = {l["index"]: l for l in d["cudnn"].get("layers", [])}
        shapes = {}  # one row per layer shape: (desc, out, c_in) -> [layers (own, cudnn)]
        for l in d["own"].get("layers", []):
            if l.get("type") == "conv" and l["index"] in cud:
                key = (l.get("desc", ""), tuple(l.get("out", [])), conv_shape(l)[0])
                shapes.setdefault(key, []).append((l, cud[l["index"]]))
        for (desc, shape, cin), ls in shapes.items():
            _, groups, kh, kw, k = conv_shape(ls[0][0])
            small = cin // max(groups, 1) < 16 or k // max(groups, 1) < 16
            target = 1.0 if small else 0.8

            def mean(side, key):  # over the layers of this shape (times are per layer)
                v = [pair[side].get(key) for pair in ls]
                return sum(v) / len(v) if all(good(x) for x in v) else None
            of, cf, ob, cb = mean(0, "fwd_ms"), mean(1, "fwd_ms"), mean(0, "bwd_ms"), mean(1, "bwd_ms")
            rf = cf / of if of and cf is not None else None
            rb = cb / ob if ob and cb is not None else None
            got = [r for r in (rf, rb) if r is not None]
            res = "—" if not got else "pass" if min(got) >= target - 1e-9 else "miss"
            if got:
                results.append(("small" if small else "tc", res == "pass"))
            idx = str(ls[0][0]["index"]) + (" (%d layers)" % len(ls) if len(ls) > 1 else "")
            out.append("| %s | %s | %s | %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | "
                       "≥ %.1f× | %s |" % (
                           m, p, b, idx, desc, "x".join(str(v) for v in shape), cin,
                           "small channels" if small else "tensor-core", ms(of), ms(cf),
                           fmt_ratio(rf), ms(ob), ms(cb), fmt_ratio(rb), target, res))
    out.append("")
    out.append("One row per layer shape (times: the mean over its layers, ms per layer at the "
               "batch). cuDNN/own: cuDNN's time over ours (above 1: ours is faster). Small "
               "channels: fewer than 16 input or output channels per group (first convs, "
               "depthwise).")
    return results


# ---- DESIGN.md's targets ---------------------------------------------------------------


def targets(data, conv_results, out):
    crow = data.cnn_rows()
    terr, tcells, _ = data.torch_state()
    dev = data.device()

    def lookup(model, prec, metric, batch):
        """the row key, preferring the exact batch"""
        cands = [k for k in set(crow) | set(tcells) if k[:3] == (model, prec, metric)]
        if (model, prec, metric, batch) in cands:
            return (model, prec, metric, batch)
        return sorted(cands, key=lambda k: k[3])[-1] if cands else None

    rows = []

    def compare(what, model, prec, metric, batch, modes, factor, target_text):
        k = lookup(model, prec, metric, batch)
        cnn = data.cnn_value(k) if k else None
        if terr:
            rows.append((what, fmt_value(cnn, metric), terr, target_text, "n/a"))
            return
        ref, mode = best(metric, tcells.get(k, {}), modes) if k else (None, None)
        r = ratio(metric, cnn, ref)
        if r is None:
            why = "no cnn figure" if cnn is None else "no PyTorch figure"
            rows.append((what + ("" if not k or metric == "latency" else " (batch %s)" % k[3]),
                         fmt_value(cnn, metric),
                         fmt_value(ref, metric), target_text, "n/a (%s)" % why))
            return
        ok = r <= factor + 1e-9 if metric == "latency" else r >= factor - 1e-9
        rows.append((what + ("" if metric == "latency" else " (batch %s)" % k[3]),
                     fmt_value(cnn, metric),
                     "%s (%s)" % (fmt_value(ref, metric), mode), target_text,
                     "%s (%s)" % ("pass" if ok else "miss", fmt_ratio(r))))

    if dev == "cuda":
        compare("lenet fp32 training", "lenet", "fp32", "train", 128, ["cuda_graph"], 2.0,
                "≥ 2× PyTorch's CUDA graph")
        compare("resnet9 bf16 training", "resnet9", "bf16", "train", 512, ["eager", "compile"],
                1.5, "≥ 1.5× the better of eager, compile")
        for metric in ("train", "infer"):
            compare("resnet50 bf16 " + ("training" if metric == "train" else "inference"),
                    "resnet50", "bf16", metric, 256, ["eager", "channels_last"], 1.2,
                    "≥ 1.2× the better of eager, channels_last")
        for m in MODEL_ORDER:
            prec = "fp32" if lookup(m, "fp32", "latency", 1) else "bf16"
            compare("%s %s batch-1 latency" % (m, prec), m, prec, "latency", 1, ["cuda_graph"],
                    0.8, "≤ 0.8× PyTorch's CUDA graph")
        for kind, text, name in (("tc", "≥ 0.8× cuDNN", "own conv, tensor-core shapes"),
                                 ("small", "≥ 1× cuDNN", "own conv, small channels")):
            got = [ok for k, ok in conv_results if k == kind]
            rows.append((name, "%d of %d shapes pass" % (sum(got), len(got)) if got else "—",
                         "cuDNN", text, ("pass" if all(got) else "miss") if got else "n/a"))
    else:
        for k in sorted((k for k in crow if not isinstance(crow[k], str)), key=lambda k: (order(MODEL_ORDER, k[0]), order(PREC_ORDER, k[1]),
                                             order(METRIC_ORDER, k[2]))):
            m, p, metric, b = k
            if metric == "latency":
                compare("CPU %s %s batch-1 latency" % (m, p), m, p, metric, b, None, 0.8,
                        "≤ 0.8× PyTorch's best mode")
            else:
                compare("CPU %s %s %s" % (m, p, "training" if metric == "train" else "inference"),
                        m, p, metric, b, None, 1.3, "≥ 1.3× PyTorch's best mode")
    for t in data.tta:
        c, pt = t.get("cnn") or {}, t.get("pytorch") or {}

        def show(s):
            if not s:
                return "not run"
            if s.get("error"):
                return "error: " + s["error"]
            return "%.1f s to %.2f %%" % (s.get("seconds", float("nan")),
                                         100 * (s.get("accuracy") or 0))
        cs = c.get("seconds")
        ok = (cs is not None and not c.get("error") and (c.get("accuracy") or 0) >= 0.94 and
              cs <= 4.0)
        rows.append(("resnet9 to ≥ 94 %% Fashion-MNIST (%s)" % t.get("device", "?"), show(c),
                     show(pt), "≤ 4 s", "n/a" if cs is None else "pass" if ok else "miss"))
    out.append("| DESIGN.md target | cnn | PyTorch | target | result |")
    out.append("| --- | --- | --- | --- | --- |")
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    if not rows:
        out.append("| (nothing measured) | | | | |")


def render(paths):
    data = Data()
    files = []
    for p in paths:
        files += sorted(glob.glob(os.path.join(p, "*.json"))) if os.path.isdir(p) else [p]
    for f in files:
        data.load(f)
    out = []
    dev = data.device()
    names = sorted({d.get("device_name") for d in data.cnn + data.pytorch if d.get("device_name")})
    tv = [d.get("torch") for d in data.pytorch if d.get("torch")]
    out.append("## cnn vs PyTorch on %s%s%s" % (dev, " (%s)" % ", ".join(names) if names else "",
                                               ", torch %s" % tv[0] if tv else ""))
    out.append("")
    main_table(data, out)
    out.append("")
    if dev == "cuda" or data.engines:
        out.append("## conv layers: own engine vs cuDNN")
        out.append("")
        conv_results = conv_table(data, out)
        out.append("")
    else:
        conv_results = []
    out.append("## DESIGN.md performance targets")
    out.append("")
    targets(data, conv_results, out)
    for n in data.notes:
        out.append("")
        out.append("note: " + n)
    return "\n".join(out) + "\n"


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    out_file = None
    if "--out" in argv:
        i = argv.index("--out")
        out_file = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    text = render(argv)
    sys.stdout.write(text)
    if out_file:
        with open(out_file, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
