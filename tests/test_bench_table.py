"""bench/table.py on the fixture JSON files of tests/data/bench: a GPU run (cnn bench
of lenet, our conv engine and cuDNN per layer on resnet9, PyTorch's modes with an error
and skipped cells, a time-to-accuracy result) and a CPU run without torch (and a cnn run
that timed out). Checks the cells, ratios and pass / miss verdicts it prints; then that
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
    out = table(os.path.join(DATA, "cpu"))
    print(out)
    expect_row(out, ("lenet", "fp32", "train (img/s)", "64"),
               {4: "1,500", 5: "torch not installed", 6: "torch not installed", 8: "—"},
               "without torch")
    check(row(out, "model", "precision", "metric")[5:8] ==
          ["PyTorch eager", "PyTorch channels_last", "PyTorch compile"],
          "without torch on a CPU: the CPU modes, no cuda_graph column")
    expect_row(out, ("resnet50", "fp32", "latency (ms)", "1"), {4: "failed [c1]"},
               "a failed cnn run")
    check("[c1] cnn (cnn-resnet50-fp32-b2.json): exit 124: timed out after 300 s" in out,
          "the failed run's footnote")
    expect_row(out, ("CPU lenet fp32 training",), {2: "torch not installed", 4: "n/a"},
               "CPU target without torch")


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
    no_torch()
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
