#!/usr/bin/env python3
"""The tables of `make bench`, in markdown, from the JSON files bench/run.sh writes:

  cnn-*.json      `cnn bench --json` (or, when it failed, {"tool": "cnn", "error": ...});
                  names ending in -own.json / -cudnn.json are the --conv-engine runs
  pytorch*.json   bench/pytorch_models.py --json
  tta*.json       bench/tta.py --json
  run.json        bench/run.sh's record of the run: CPU model, threads, rounds, cnn flags,
                  `uptime` load averages at the start and the end

A CPU run has rounds (cnn-rR-*.json, pytorch-rR-*.json: run.sh interleaves cnn and
PyTorch): every figure is the median over the rounds that measured it.

    python3 bench/table.py runs/bench            # every *.json there
    python3 bench/table.py a.json b.json ...

On a CPU it first prints issue 11's table: lenet, fashion and resnet9 training,
inference and batch-1 latency; columns cnn, PyTorch fp32 (the best mode, named), PyTorch
bf16 autocast, cnn / the best fp32 PyTorch mode and the target (throughput >= 1.3x,
latency <= 0.8x) with pass / miss; above it the machine, torch, rounds and load averages.
Then (every device) one table of all measurements (rows: model, precision, metric, batch;
columns: cnn, each PyTorch mode, cnn / the best PyTorch mode), the per-layer conv table of
our engine against cuDNN (GPU runs with both engines), and DESIGN.md's performance targets
with pass / miss (on a CPU only the time to accuracy, when it ran: the CPU targets are
the first table's). Standard library only.
"""
import glob
import json
import os
import re
import statistics
import sys

MODEL_ORDER = ["lenet", "fashion", "resnet9", "resnet50", "mobilenet_v2"]
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
        self.run = None        # run.json
        self.notes = []

    def load(self, path):
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            self.notes.append("%s: unreadable (%s)" % (os.path.basename(path), e))
            return
        base = os.path.basename(path)
        if not isinstance(doc, dict):
            self.notes.append("%s: not a JSON object" % base)
            return
        tool = doc.get("tool")
        m = re.match(r"(?:cnn|pytorch)-r(\d+)-", base)
        doc["_round"] = int(m.group(1)) if m else None
        if tool == "run" or base == "run.json":
            self.run = doc
        elif tool == "pytorch" or base.startswith("pytorch"):
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
        """{(model, precision, metric, batch): the median over the runs that measured it,
        or "failed [cN]"}"""
        vals = {}
        for d in self.cnn:
            m, p, b = model_name(d["model"]), d.get("precision"), d.get("batch")
            for metric in METRIC_ORDER:
                v = d.get(CNN_KEYS[metric])
                if not good(v):
                    continue
                batch = 1 if metric == "latency" else b
                if metric == "infer" and b == 1:
                    continue  # a latency run (--infer --batch 1): the latency row says it
                vals.setdefault((m, p, metric, batch), []).append(v)
        rows = {k: statistics.median(v) for k, v in vals.items()}
        measured = {(k[0], k[2], k[3]) for k in rows}  # any precision (a failed run's
        for i, d in enumerate(self.cnn_errors):       # may be "auto"): its rows say so
            m, p, b = model_name(d.get("model")), d.get("precision"), d.get("batch")
            for metric in METRIC_ORDER:
                key = (m, p, metric, 1 if metric == "latency" else b)
                if metric == "train" and d.get("infer_only"):
                    continue
                if (m, metric, key[3]) not in measured and not (metric == "infer" and b == 1):
                    rows[key] = rows.get(key, "failed") + " [c%d]" % (i + 1)
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
        vals = {}  # over the rounds: (row, mode) -> ([values], [errors])
        for d in self.pytorch:
            for r in d.get("results", []):
                key = (r["model"], r["precision"], r["metric"], r["batch"])
                v, e = vals.setdefault((key, r["mode"]), ([], []))
                if r.get("value") is not None:
                    v.append(r["value"])
                elif r.get("error"):
                    e.append(r["error"])
                if r["mode"] not in modes:
                    modes.append(r["mode"])
        for (key, mode), (v, e) in vals.items():  # the median; an error only if none measured
            cells.setdefault(key, {})[mode] = ((statistics.median(v), None) if v else
                                               (None, e[0] if e else None))
        modes.sort(key=lambda m: order(MODE_ORDER, m))
        return None, cells, modes

    def device(self):
        for d in self.cnn + self.cnn_errors + self.pytorch + ([self.run] if self.run else []):
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


# ---- the CPU table (issue 11) ----------------------------------------------------------------

# (workload, model, metric, batch)
CPU_ROWS = [
    ("lenet training, batch 128 (img/s)", "lenet", "train", 128),
    ("models/fashion.cfg training, batch 128 (img/s)", "fashion", "train", 128),
    ("resnet9 training, batch 64 (img/s)", "resnet9", "train", 64),
    ("lenet inference, batch 128 (img/s)", "lenet", "infer", 128),
    ("models/fashion.cfg inference, batch 128 (img/s)", "fashion", "infer", 128),
    ("resnet9 inference, batch 128 (img/s)", "resnet9", "infer", 128),
    ("lenet batch-1 latency (ms)", "lenet", "latency", 1),
    ("models/fashion.cfg batch-1 latency (ms)", "fashion", "latency", 1),
    ("resnet9 batch-1 latency (ms)", "resnet9", "latency", 1),
]
CPU_TARGET = {"train": 1.3, "infer": 1.3, "latency": 0.8}


def median_of(vals):
    return statistics.median(vals) if vals else None


def cpu_cnn(data, model, metric, batch):
    """([values], {precisions}, [errors]) of cnn over every run and round that measured
    the row (latency: every run of the model, each measures it)"""
    vals, precs, errs = [], set(), []
    for d in data.cnn:
        if model_name(d.get("model")) != model:
            continue
        if metric != "latency" and d.get("batch") != batch:
            continue
        v = d.get(CNN_KEYS[metric])
        if good(v):
            vals.append(v)
            precs.add(d.get("precision") or "?")
    for d in data.cnn_errors:
        if model_name(d.get("model")) == model and (metric == "latency" or d.get("batch") == batch) \
                and not (metric == "train" and d.get("infer_only")):
            errs.append(d)
    return vals, precs, errs


def cpu_torch(data, model, prec, metric, batch):
    """(median of the best mode, that mode, rounds it had) for PyTorch at `prec`: per
    mode the median over the rounds, then the best mode (the most images/s, the least
    ms); None when nothing was measured"""
    per_mode = {}
    for d in data.pytorch:
        for r in d.get("results", []):
            if (r.get("model"), r.get("precision"), r.get("metric"), r.get("batch")) == \
                    (model, prec, metric, batch) and r.get("value") is not None:
                per_mode.setdefault(r["mode"], []).append(r["value"])
    if not per_mode:
        return None, None, 0
    meds = [(statistics.median(v), m, len(v)) for m, v in per_mode.items()]
    pick = min(meds) if metric == "latency" else max(meds)
    return pick


def cpu_header(data, out):
    """the machine, torch, rounds, load averages"""
    run = data.run or {}
    names = sorted({d.get("device_name") for d in data.cnn if d.get("device_name")})
    cpu = run.get("cpu_model") or (names[0] if names else None) or \
        next((d.get("device_name") for d in data.pytorch if d.get("device_name")), "?")
    threads = run.get("threads") or next((d.get("threads") for d in data.cnn + data.pytorch
                                           if d.get("threads")), "?")
    tv = next((d.get("torch") for d in data.pytorch if d.get("torch")), None)
    rounds = run.get("rounds") or len({d.get("_round") for d in data.cnn + data.pytorch +
                                       data.cnn_errors if d.get("_round") is not None}) or 1
    out.append("## cnn vs PyTorch on the CPU (issue 11)")
    out.append("")
    out.append("- machine: %s, %s threads (both sides)%s" % (
        cpu, threads, ", %s cores" % run["nproc"] if run.get("nproc") else ""))
    out.append("- PyTorch: %s" % ("torch " + tv if tv else
                                  (data.torch_state()[0] or "not run")))
    out.append("- rounds: %d, interleaved (each round: cnn then PyTorch, row by row); every "
               "figure is the median over the rounds%s" % (
                   rounds, " (quick run)" if run.get("quick") else ""))
    la, lb = run.get("loadavg_start"), run.get("loadavg_end")
    fmt = lambda l: ", ".join("%.2f" % x for x in l) if l else "?"  # noqa: E731
    out.append("- load average (1, 5, 15 min): %s at the start, %s at the end" % (
        fmt(la), fmt(lb)) if run else "- load average: not recorded (no run.json)")
    if run.get("cnn_flags"):
        out.append("- cnn flags: `%s`" % run["cnn_flags"])
    return rounds


def cpu_table(data, out):
    rounds = cpu_header(data, out)
    terr, _, _ = data.torch_state()
    precs = set()
    for _, model, metric, batch in CPU_ROWS:
        precs |= cpu_cnn(data, model, metric, batch)[1]
    if precs == {"fp32"} or not precs:
        out.append("- cnn ran fp32 (no bf16 units, or not asked): cnn fp32 vs PyTorch fp32; "
                   "the bf16 autocast column is for reference")
    else:
        out.append("- cnn ran %s: the ratio is against PyTorch's best fp32 mode; cnn's bf16 "
                   "against PyTorch's bf16 autocast is in that column" % "/".join(sorted(precs)))
    out.append("")
    out.append("| workload | cnn | PyTorch fp32, best | PyTorch bf16 autocast | "
               "cnn / PyTorch fp32 best | target | result |")
    out.append("| --- | --- | --- | --- | --- | --- | --- |")
    notes = []  # [(message, [files])]: one footnote per message, [f1], [f2], ...

    def note(d):
        msg = d.get("error") or "?"
        for i, (m, files) in enumerate(notes):
            if m == msg:
                if d.get("_file") not in files:
                    files.append(d.get("_file"))
                return i + 1
        notes.append((msg, [d.get("_file")]))
        return len(notes)

    for what, model, metric, batch in CPU_ROWS:
        vals, cprec, errs = cpu_cnn(data, model, metric, batch)
        cnn = median_of(vals)
        refs = " ".join("[f%d]" % n for n in sorted({note(d) for d in errs}))
        if cnn is not None:
            ccell = fmt_value(cnn, metric)
            if cprec != {"fp32"}:
                ccell += " (%s)" % "/".join(sorted(cprec))
            if errs:  # some runs failed: how many measured it, and why not the others
                ccell += " (%d of %d runs; %s)" % (len(vals), len(vals) + len(errs), refs)
        elif errs:
            ccell = "failed " + refs
        else:
            ccell = "—"
        target = CPU_TARGET[metric]
        ttext = ("≤ %.1f×" if metric == "latency" else "≥ %.1f×") % target
        if terr:
            out.append("| %s | %s | %s | %s | — | %s | n/a |" % (what, ccell, terr, terr, ttext))
            continue
        f32, f32m, f32n = cpu_torch(data, model, "fp32", metric, batch)
        b16, b16m, b16n = cpu_torch(data, model, "bf16", metric, batch)

        def pcell(v, mode, n):  # the value, its mode, and how many rounds measured it
            if v is None:
                return "—"
            return "%s (%s%s)" % (fmt_value(v, metric), mode,
                                  ", %d of %d rounds" % (n, rounds) if n < rounds else "")
        fcell, bcell = pcell(f32, f32m, f32n), pcell(b16, b16m, b16n)
        if b16 is not None and "bf16" in cprec and cnn is not None:
            bcell += "; cnn bf16 / this %s" % fmt_ratio(cnn / b16)
        r = ratio(metric, cnn, f32)
        if r is None:
            res = "n/a (%s)" % ("no cnn figure" if cnn is None else "no PyTorch figure")
        else:
            ok = r <= target + 1e-9 if metric == "latency" else r >= target - 1e-9
            res = "pass" if ok else "miss"
        out.append("| %s | %s | %s | %s | %s | %s | %s |" % (what, ccell, fcell, bcell,
                                                             fmt_ratio(r), ttext, res))
    out.append("")
    out.append("img/s: images per second, higher is better; latency: ms for one image, lower "
               "is better (cnn's end to end: upload, forward, probabilities back; PyTorch's "
               "the forward alone). PyTorch's best: per mode the median over the rounds, then "
               "the best mode (eager NCHW, channels_last, torch.compile when it ran).")
    for i, (msg, files) in enumerate(notes):
        out.append("[f%d] cnn (%s): %s" % (i + 1, ", ".join(str(f) for f in files), msg))


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
    # on a CPU the targets (>= 1.3x PyTorch's best fp32 mode, latency <= 0.8x) are the
    # CPU table's last columns
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
    if dev != "cuda":
        cpu_table(data, out)
        out.append("")
        out.append("## every measurement on %s%s%s%s" % (
            dev, " (%s)" % ", ".join(names) if names else "", ", torch %s" % tv[0] if tv else "",
            ", medians over the rounds" if data.run or any(
                d.get("_round") for d in data.cnn + data.pytorch) else ""))
    else:
        out.append("## cnn vs PyTorch on %s%s%s" % (
            dev, " (%s)" % ", ".join(names) if names else "", ", torch %s" % tv[0] if tv else ""))
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
    if dev == "cuda" or data.tta:
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
