"""cnn export then cnn import: cnn's own ONNX files must come back as the same model.

The shipped models, a selection of Darknet's classifier cfgs (at 64x64 where the
full input would take too long on 2 cores; the layers are the same) and a small cfg
with Darknet's strided pad=1 convs and a softmax temperature get random
weights and random batch-norm statistics (cnn_xtool init, some with --mean/--std),
are exported with and without --fold-bn and --logits (spread over the models to keep
the test near a minute; densenet201, whose 7x7 stride-2 conv1 also imports, is too
slow to load at every run), imported (cnn import), and the
original checkpoint and the imported one run in cnn (cnn_xtool forward) on the same
random batch of 3 images. The imported checkpoint's mean/std must be the original's
(the export writes them as Sub/Div at the input, the import reads them back).

Tolerances (cnn fp32 on both sides; a folded batch norm rounds differently):
  probabilities  max |imported - original| <= 1e-5
  logits         max |imported - original| <= 1e-5 * max(1, max |original logits|)

A --logits export ends before the softmax, so a [softmax] temperature (resnet9's 8)
is not in the file: the imported model's softmax has temperature 1 and its
probabilities are softmax(logits) (checked against numpy, same tolerance).

Darknet's shortcuts between different shapes (Slice/Pad before the Add), [reorg]
(Gather, Pad) and [crop] (Slice of the image) do not import: resnet18, resnet50,
go and strided must be refused with the node named.
"""
import json
import os
import re
import struct
import sys
import tempfile
import time

import numpy as np

# the export test's helpers (its checks run only as a script): check() records a failure,
# report() prints `measured` and the failures
from test_onnx_export import (BATCH, CNN, SRC, XTOOL, check, darknet, measured, read, report,
                              run, setup_case)

PROB_TOL = 1e-5
LOGIT_TOL = 1e-5

# what the import now reads back: Darknet's pad=1 convs with a stride, which the export
# writes with the end padding trimmed to what the last window reads (7x7 stride 2 on 20:
# pads 3,3,2,2; 3x5 stride 2 on an odd size), and a temperature whose reciprocal is
# not exact in float
ZOO = """
[net]
height=20
width=18
channels=3
[convolutional]
batch_normalize=1
filters=8
size=7
stride=2
pad=1
activation=leaky
[convolutional]
filters=8
size_y=3
size_x=5
stride=2
pad=1
activation=relu
[maxpool]
size=2
stride=2
[convolutional]
batch_normalize=1
filters=6
size=3
stride=2
pad=1
activation=relu
[avgpool]
[softmax]
temperature=3
"""

def shipped(name):
    return read(os.path.join(SRC, "models", name + ".cfg"))


def metadata(ckpt):
    with open(ckpt, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))["__metadata__"]


def norm(meta):
    return (np.float32(json.loads(meta["mean"])), np.float32(json.loads(meta["std"])))


def forward(ckpt, xin, d, tag):
    out = {}
    for logits in (0, 1):
        o = os.path.join(d, "%s%d.f32" % (tag, logits))
        run(XTOOL, "forward", ckpt, xin, o, BATCH, *(["--logits"] if logits else []))
        out[logits] = np.fromfile(o, dtype=np.float32).reshape(BATCH, -1)
    return out


def temperature(cfg_text):
    m = re.search(r"\[softmax\][^\[]*?^temperature=([\d.eE+-]+)", cfg_text, re.M | re.S)
    return float(m.group(1)) if m else 1.0


def softmax(z):
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def roundtrip(name, cfg_text, tmp, mean=None, std=None, seed=1, flag_sets=None):
    t0 = time.time()
    d, ckpt, _, xin = setup_case(name, cfg_text, tmp, mean, std, seed)
    ref = forward(ckpt, xin, d, "ref")
    want_norm = norm(metadata(ckpt))
    temp = temperature(cfg_text)
    for flags in flag_sets or ([], ["--fold-bn"], ["--logits"], ["--fold-bn", "--logits"]):
        tag = name + (" " + " ".join(flags) if flags else "")
        suffix = "".join(f.replace("-", "_") for f in flags)
        onnx_path = os.path.join(d, "m%s.onnx" % suffix)
        out = os.path.join(d, "imp%s" % suffix)
        run(CNN, "export", ckpt, onnx_path, *flags)
        p = run(CNN, "import", onnx_path, "--out", out, "--force", expect=None)
        if p.returncode:
            check(False, "%s: cnn import exited %d: %s" % (tag, p.returncode, p.stderr.strip()))
            continue
        imp_ckpt = os.path.join(out, "model.safetensors")
        if "--logits" not in flags and temp != 1.0:
            t = temperature(read(os.path.join(out, "model.cfg")))
            check(np.float32(t) == np.float32(temp), "%s: imported temperature %g, original %g"
                  % (tag, t, temp))
        got = forward(imp_ckpt, xin, out, "got")
        got_norm = norm(metadata(imp_ckpt))
        check(np.array_equal(got_norm[0], want_norm[0]) and np.array_equal(got_norm[1], want_norm[1]),
              "%s: imported mean/std %s/%s, original %s/%s" % (tag, got_norm[0], got_norm[1],
                                                              want_norm[0], want_norm[1]))
        check(got[1].shape == ref[1].shape, "%s: logits shape %s vs %s" % (tag, got[1].shape, ref[1].shape))
        if got[1].shape != ref[1].shape:
            continue
        scale = max(1.0, float(np.max(np.abs(ref[1]))))
        dl = float(np.max(np.abs(got[1] - ref[1])))
        measured.append((tag, "logits", dl, dl / scale))
        check(dl <= LOGIT_TOL * scale, "%s: logits max |imported - original| = %.3g (scale %.3g)"
              % (tag, dl, scale))
        if "--logits" in flags and temp != 1.0:  # the temperature is not in the file
            want, what = softmax(ref[1]).astype(np.float32), "probs(T=1)"
        else:
            want, what = ref[0], "probs"
        dp = float(np.max(np.abs(got[0] - want)))
        measured.append((tag, what, dp, dp))
        check(dp <= PROB_TOL, "%s: %s max |imported - original| = %.3g" % (tag, what, dp))
    print("%-14s %5.1fs" % (name, time.time() - t0), flush=True)


def refused(name, cfg_text, tmp, node_re, seed=1):
    """exported fine; the import must refuse, naming the node that has no cnn layer"""
    d, ckpt, _, _ = setup_case(name, cfg_text, tmp, seed=seed)
    onnx_path = os.path.join(d, "m.onnx")
    run(CNN, "export", ckpt, onnx_path)
    out = os.path.join(d, "imp")
    p = run(CNN, "import", onnx_path, "--out", out, expect=1)
    check(re.search(r"node '%s' \((Slice|Pad|Gather|Mul|Add)," % node_re, p.stderr) is not None,
          "%s: the refusal names the node (%s): %s" % (name, node_re, p.stderr.strip()))
    check(not os.path.exists(os.path.join(out, "model.safetensors")), name + ": a refusal writes nothing")
    print("%-14s refused: %s" % (name, p.stderr.strip()[:200]), flush=True)


def main():
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        roundtrip("lenet", shipped("lenet"), tmp, seed=3, flag_sets=[[], ["--logits"]])
        roundtrip("fashion", shipped("fashion"), tmp, mean=[0.286], std=[0.353], seed=2)
        roundtrip("resnet9", shipped("resnet9"), tmp, mean=[0.13], std=[0.31], seed=4,
                  flag_sets=[["--fold-bn"], ["--logits"]])
        roundtrip("zoo", ZOO, tmp, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3], seed=5)
        roundtrip("cifar", darknet("cifar"), tmp, mean=[0.49, 0.48, 0.45], std=[0.25, 0.24, 0.26],
                  seed=7, flag_sets=[[], ["--fold-bn", "--logits"]])
        roundtrip("tiny", darknet("tiny", 64), tmp, seed=8, flag_sets=[["--fold-bn"], ["--logits"]])
        roundtrip("darknet", darknet("darknet", 64), tmp, mean=[0.5, 0.5, 0.5], std=[0.2, 0.3, 0.4],
                  seed=9, flag_sets=[[]])
        roundtrip("darknet19", darknet("darknet19", 64), tmp, seed=10,
                  flag_sets=[["--fold-bn", "--logits"]])
        # shortcuts between different shapes: Slice (stride) / Pad (channels) before the Add
        refused("resnet18", darknet("resnet18", 64), tmp, r"shortcut\d+/picked\d+", seed=11)
        refused("resnet50", darknet("resnet50", 64), tmp, r"shortcut\d+/padded\d+", seed=12)
        refused("go", darknet("go"), tmp, r"reorg\d+", seed=16)
        refused("strided", darknet("strided", 64).replace("crop_height=224", "crop_height=56")
                .replace("crop_width=224", "crop_width=56"), tmp, r"crop\d+(/window\d+)?", seed=15)
    return report("export -> import", t0)


if __name__ == "__main__":
    sys.exit(main())
