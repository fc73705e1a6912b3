"""bench/table.py on the fixture JSON files of tests/data/bench: a GPU run (cnn bench
of lenet, our conv engine and cuDNN per layer on resnet9, PyTorch's modes with an error
and skipped cells, a time-to-accuracy result), issue 11's CPU table on three interleaved
rounds (medians, the best fp32 mode named, a failed round, a cnn run failed in every
round, the load averages), a quick CPU run without torch (and a cnn run that timed out)
and a cnn bf16 run. Checks the cells, ratios and pass / miss verdicts it prints; then that
bench/pytorch_models.py without torch says so, writes that in its JSON and exits 0."""
import json
import os
import subprocess
import sys
import tempfile

SRC = os.environ.get("CNN_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = os.path.join(SRC, "bench", "table.py")
DATA = os.path.join(SRC, "tests", "data", "bench")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def table(*args):
    p = subprocess.run([sys.executable, TABLE, *args], capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "table.py %s exits 0 (%s)" % (" ".join(args), p.stderr.strip()))
    return p.stdout


def rows(text):
    """every markdown table row as its list of cells"""
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|") and "---" not in line]


def row(text, *first):
    """the row whose first cells are `first`"""
    for r in rows(text):
        if tuple(r[:len(first)]) == first:
            return r
    return None


def expect_row(text, first, cells, what):
    r = row(text, *first)
    check(r is not None, "%s: a row %s" % (what, first))
    if r is None:
        return
    for i, want in cells.items():
        got = r[i] if i < len(r) else None
        check(got == want, "%s: cell %d is %r (got %r)" % (what, i, want, got))


def gpu():
    out = table(os.path.join(DATA, "cuda"))
    print(out)
    head = row(out, "model", "precision", "metric")
    check(head == ["model", "precision", "metric", "batch", "cnn", "PyTorch eager",
                   "PyTorch cuda_graph", "PyTorch compile", "cnn / PyTorch best"],
          "the main table's columns: cnn, each PyTorch mode measured, the ratio (%s)" % head)
    # train: 200000 / max(60000, 180000) = 1.11; the compile error is a footnote
    expect_row(out, ("lenet", "fp32", "train (img/s)", "128"),
               {4: "200,000", 5: "60,000", 6: "180,000", 7: "error [1]",
                8: "1.11× (vs cuda_graph)"}, "lenet training")
    check("[1] RuntimeError: no compiler" in out, "the error's footnote")
    expect_row(out, ("lenet", "fp32", "infer (img/s)", "128"),
               {4: "1,000,000", 7: "skipped", 8: "1.25× (vs cuda_graph)"}, "lenet inference")
    # latency: the best PyTorch mode is the smallest time; 0.2 / 0.25 = 0.80
    expect_row(out, ("lenet", "fp32", "latency (ms)", "1"),
               {4: "0.200 ms", 5: "0.500 ms", 6: "0.250 ms", 8: "0.80× (vs cuda_graph)"},
               "lenet latency")
    check(row(out, "resnet9", "bf16", "train (img/s)") is None,
          "the --conv-engine runs make no rows of the main table")
    # conv layers: cuDNN time / ours, forward and backward; c_in from the FLOPs
    expect_row(out, ("resnet9", "bf16", "512", "0"),
               {6: "1", 7: "small channels", 10: "1.20×", 13: "0.90×", 14: "≥ 1.0×",
                15: "miss"}, "conv layer 0 (c_in 1)")
    # layers 3 and 4 have one shape: one row, the mean times (own 0.4 and 0.6 forward,
    # cuDNN 0.36 and 0.44: 0.4 / 0.5 = 0.80; backward 0.72 / 0.8 = 0.90)
    expect_row(out, ("resnet9", "bf16", "512", "3 (2 layers)"),
               {6: "64", 7: "tensor-core", 8: "0.500", 9: "0.400", 10: "0.80×", 11: "0.800",
                12: "0.720", 13: "0.90×", 14: "≥ 0.8×", 15: "pass"},
               "conv layers 3 and 4 (64 -> 128), one shape")
    check(row(out, "resnet9", "bf16", "512", "1") is None, "a batch-norm layer is no conv row")
    # DESIGN.md's targets
    expect_row(out, ("lenet fp32 training (batch 128)",),
               {1: "200,000", 2: "180,000 (cuda_graph)", 4: "miss (1.11×)"},
               "target: lenet >= 2x the CUDA graph")
    expect_row(out, ("lenet fp32 batch-1 latency",),
               {1: "0.200 ms", 2: "0.250 ms (cuda_graph)", 4: "pass (0.80×)"},
               "target: latency <= 0.8x the CUDA graph")
    expect_row(out, ("resnet9 bf16 training",), {4: "n/a (no cnn figure)"},
               "target without a measurement")
    expect_row(out, ("own conv, tensor-core shapes",), {1: "1 of 1 shapes pass", 4: "pass"},
               "target: conv on tensor-core shapes")
    expect_row(out, ("own conv, small channels",), {1: "0 of 1 shapes pass", 4: "miss"},
               "target: conv on small channels")
    expect_row(out, ("resnet9 to ≥ 94 % Fashion-MNIST (cuda)",),
               {1: "3.5 s to 94.52 %", 2: "10.0 s to 94.50 %", 4: "pass"},
               "target: time to accuracy")
    # --out writes the same text
    with tempfile.TemporaryDirectory() as tmp:
        f = os.path.join(tmp, "t.md")
        again = table(os.path.join(DATA, "cuda"), "--out", f)
        with open(f) as fh:
            check(fh.read() == again == out, "--out writes what is printed")


def cpu():
    """issue 11's CPU table: three rounds, medians, the best fp32 mode named, a failed run"""
    out = table(os.path.join(DATA, "cpu"))
    print(out)
    head = row(out, "workload")
    check(head == ["workload", "cnn", "PyTorch fp32, best", "PyTorch bf16 autocast",
                   "cnn / PyTorch fp32 best", "target", "result"],
          "the CPU table's columns (%s)" % head)
    want = ["lenet training, batch 128 (img/s)", "models/fashion.cfg training, batch 128 (img/s)",
            "resnet9 training, batch 64 (img/s)", "lenet inference, batch 128 (img/s)",
            "models/fashion.cfg inference, batch 128 (img/s)",
            "resnet9 inference, batch 128 (img/s)", "lenet batch-1 latency (ms)",
            "models/fashion.cfg batch-1 latency (ms)", "resnet9 batch-1 latency (ms)"]
    got = [r[0] for r in rows(out)]
    check(got[1:1 + len(want)] == want, "the CPU table's rows, in the issue's order (%s)" % got)
    check("machine: AMD EPYC 7B13, 2 threads" in out, "the machine and threads")
    check("PyTorch: torch 2.15.0" in out, "the torch version")
    check("rounds: 3, interleaved" in out, "the rounds")
    check("load average (1, 5, 15 min): 1.50, 1.25, 1.00 at the start, 2.00, 1.60, 1.10 at "
          "the end" in out, "the load averages at the start and the end")
    check("cnn flags: `--conv-engine dnnl`" in out, "BENCH_CNN_FLAGS")
    check("cnn fp32 vs PyTorch fp32" in out, "cnn ran fp32: says it is compared with fp32")
    # medians over the rounds, not the last round or the mean: cnn 400, 520, 450 -> 450;
    # channels_last 340, 330, 360 -> 340 beats eager's median 310; 450 / 340 = 1.32
    expect_row(out, ("lenet training, batch 128 (img/s)",),
               {1: "450", 2: "340 (channels_last)", 3: "205 (eager)", 4: "1.32×", 5: "≥ 1.3×",
                6: "pass"}, "lenet training: medians, the best fp32 mode")
    # cnn 1100, 1250, 1000 -> 1100; eager 1000, 920, 900 -> 920 (channels_last 800)
    expect_row(out, ("lenet inference, batch 128 (img/s)",),
               {1: "1,100", 2: "920 (eager)", 4: "1.20×", 6: "miss"}, "lenet inference: a miss")
    # latency: the least ms wins; cnn 2.5, 3.5, 2.0 -> 2.5; channels_last 3.3, 3.6, 3.2 -> 3.3
    expect_row(out, ("lenet batch-1 latency (ms)",),
               {1: "2.500 ms", 2: "3.300 ms (channels_last)", 3: "5.000 ms (eager)",
                4: "0.76×", 5: "≤ 0.8×", 6: "pass"}, "lenet latency: <= 0.8x passes")
    # fashion: round 2's cnn run failed (2 of 3 runs); compile failed in round 1, its
    # median over the other two (2000, 1600 -> 1800) beats eager's 1000
    expect_row(out, ("models/fashion.cfg training, batch 128 (img/s)",),
               {1: "2,200 (2 of 3 runs; [f1])", 2: "1,800 (compile, 2 of 3 rounds)", 3: "—",
                4: "1.22×",
                6: "miss"}, "fashion training: a failed round, compile's median")
    expect_row(out, ("models/fashion.cfg batch-1 latency (ms)",),
               {1: "0.600 ms (2 of 3 runs; [f1])", 4: "1.50×", 6: "miss"}, "fashion latency")
    check("[f1] cnn (cnn-r2-fashion-b128.json): exit 1: out of memory" in out,
          "the failed round's footnote")
    # resnet9: training at 64; the inference run at 128 (--infer) failed in every round
    expect_row(out, ("resnet9 training, batch 64 (img/s)",),
               {1: "63.0", 2: "50.0 (eager)", 3: "30.0 (eager)", 4: "1.26×", 6: "miss"},
               "resnet9 training at 64 (not the failed --infer run's row)")
    expect_row(out, ("resnet9 inference, batch 128 (img/s)",),
               {1: "failed [f2]", 2: "100 (eager)", 4: "—", 6: "n/a (no cnn figure)"},
               "resnet9 inference: a failed cnn run")
    check("[f2] cnn (cnn-r1-resnet9-b128-infer.json, cnn-r2-resnet9-b128-infer.json, "
          "cnn-r3-resnet9-b128-infer.json): exit 124: timed out after 900 s" in out,
          "one footnote for the same error in three rounds")
    # the latency comes from every run of the model: three measured, three failed
    expect_row(out, ("resnet9 batch-1 latency (ms)",),
               {1: "22.000 ms (3 of 6 runs; [f2])", 2: "20.000 ms (eager)", 4: "1.10×",
                6: "miss"}, "resnet9 latency")
    # the table of every measurement: medians too, a failed --infer run has no train row
    expect_row(out, ("lenet", "fp32", "train (img/s)", "128"),
               {4: "450", 5: "310", 6: "340", 8: "1.32× (vs channels_last)"},
               "every measurement: medians")
    check(row(out, "resnet9", "auto", "train (img/s)") is None,
          "a failed --infer run makes no training row")
    check(row(out, "CPU lenet fp32 training") is None and "DESIGN.md performance targets"
          not in out, "on a CPU no second targets table (the CPU table has them)")


def cpu_no_torch():
    out = table(os.path.join(DATA, "cpu-notorch"))
    print(out)
    check("PyTorch: torch not installed" in out, "without torch: says so")
    check("(quick run)" in out and "rounds: 1," in out, "a quick run of one round")
    expect_row(out, ("lenet training, batch 128 (img/s)",),
               {1: "1,500", 2: "torch not installed", 3: "torch not installed", 4: "—",
                6: "n/a"}, "without torch: cnn's figure, no ratio")
    expect_row(out, ("lenet batch-1 latency (ms)",), {1: "1.250 ms", 6: "n/a"},
               "without torch: latency")
    expect_row(out, ("models/fashion.cfg training, batch 128 (img/s)",),
               {1: "failed [f1]", 6: "n/a"}, "without torch: a failed cnn run")
    check("[f1] cnn (cnn-r1-fashion-b128.json): exit 124: timed out after 300 s" in out,
          "its footnote")
    expect_row(out, ("resnet9 training, batch 64 (img/s)",), {1: "—"}, "a row not run")
    check(row(out, "model", "precision", "metric")[5:8] ==
          ["PyTorch eager", "PyTorch channels_last", "PyTorch compile"],
          "without torch on a CPU: the CPU modes, no cuda_graph column")


def cpu_bf16():
    """cnn ran bf16: the ratio stays against fp32's best, the bf16 cell compares too"""
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(DATA, "cpu-notorch", "cnn-r1-lenet-b128.json")) as f:
            doc = json.load(f)
        doc["precision"] = "bf16"
        with open(os.path.join(tmp, "cnn-r1-lenet-b128.json"), "w") as f:
            json.dump(doc, f)
        res = [{"model": "lenet", "precision": p, "metric": "train", "batch": 128,
                "mode": "eager", "value": v, "error": None} for p, v in (("fp32", 1000),
                                                                         ("bf16", 750))]
        with open(os.path.join(tmp, "pytorch-r1-lenet.json"), "w") as f:
            json.dump({"tool": "pytorch", "device": "cpu", "torch": "2.15.0", "results": res}, f)
        out = table(tmp)
        print(out)
        check("cnn ran bf16" in out and "cnn fp32 vs PyTorch fp32" not in out,
              "cnn ran bf16: says so")
        expect_row(out, ("lenet training, batch 128 (img/s)",),
                   {1: "1,500 (bf16)", 2: "1,000 (eager)", 3: "750 (eager); cnn bf16 / this 2.00×",
                    4: "1.50×", 6: "pass"}, "cnn bf16 against both columns")
        check("load average: not recorded" in out, "no run.json: no load averages")


def no_torch():
    try:
        import torch  # noqa: F401
        print("skip pytorch_models.py without torch: torch is installed here")
        return
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        j = os.path.join(tmp, "pt.json")
        p = subprocess.run([sys.executable, os.path.join(SRC, "bench", "pytorch_models.py"),
                            "--device", "cpu", "--quick", "--models", "lenet", "--json", j],
                           capture_output=True, text=True, timeout=60)
        check(p.returncode == 0 and "torch not installed" in p.stdout,
              "pytorch_models.py without torch: exit 0, says so (%d, %r)" % (p.returncode, p.stdout))
        with open(j) as f:
            doc = json.load(f)
        check(doc.get("error") == "torch not installed" and doc.get("results") == [],
              "its JSON says so")
        out = table(j)
        check("torch not installed" in out, "and the table says so")


def main():
    gpu()
    cpu()
    cpu_no_torch()
    cpu_bf16()
    no_torch()
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
