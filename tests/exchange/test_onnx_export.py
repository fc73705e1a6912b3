"""cnn export CKPT OUT.onnx, checked against onnxruntime.

Every shipped model, a selection of Darknet's classifier cfgs (at a reduced input
size where the full one would take too long on 2 cores; the layers are the same) and
two cfgs written to reach every mapping (odd pooling padding, dilation, groups,
shortcuts between different shapes, flatten and dense orders, temperatures, every
activation) get random weights and random batch-norm statistics (cnn_xtool init),
are exported with and without --fold-bn and --logits, checked with onnx's checker,
and run in onnxruntime (CPU) and in cnn (cnn_xtool forward) on the same random
batch of 3 images. Refused layers must fail with the layer named.

Tolerances (fp32 both sides, different summation orders; cnn's BN folding and
onnxruntime's fusions round differently):
  probabilities  max |ort - cnn| <= 1e-4
  logits         max |ort - cnn| <= 1e-4 * max(1, max |cnn logits|)
"""
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

SRC = os.environ["CNN_SOURCE_DIR"]
CNN = os.environ["CNN_BIN"]
XTOOL = os.environ["CNN_XTOOL"]
BATCH = 3
PROB_TOL = 1e-4
LOGIT_TOL = 1e-4

# every mapping of spatial values (and a softmax that later layers read): 24x16 input
ZOO_SPATIAL = """
[net]
height=24
width=16
channels=3
[convolutional]
batch_normalize=1
filters=8
size=3
pad=1
activation=leaky
slope=0.2
[convolutional]
filters=8
size_y=3
size_x=1
stride_y=2
stride_x=1
padding=same
activation=gelu
[maxpool]
size=3
stride=2
padding=2
[softmax]
[convolutional]
filters=16
size=3
dilation=2
padding=2
groups=2
activation=tanh
[shortcut]
from=-2
activation=relu
[avgpool]
size=3
stride=1
padding=2
[route]
layers=-1,-3
[convolutional]
filters=12
size=1
bias=0
activation=logistic
[batchnorm]
[activation]
activation=relu
[shortcut]
from=-4
[convolutional]
batch_normalize=1
filters=24
size=3
stride=2
pad=1
activation=relu
[shortcut]
from=-2
[route]
layers=-4
[shortcut]
from=-2
[maxpool]
size=3
stride=1
padding=3
[convolutional]
filters=5
size=1
activation=linear
[softmax]
temperature=2
"""

# flattened values: dense on a spatial input, flatten then dense, 2-D batch norm,
# adds and concatenations of flat values, a conv on a dense output
ZOO_FLAT = """
[net]
height=10
width=10
channels=2
[convolutional]
batch_normalize=1
filters=6
size=3
pad=1
activation=relu
[maxpool]
size=2
stride=2
[dropout]
probability=0.3
[connected]
batch_normalize=1
output=20
activation=leaky
[route]
layers=-3
[flatten]
[connected]
output=20
activation=gelu
[shortcut]
from=-4
[route]
layers=-1,-5
[convolutional]
filters=9
size=1
activation=logistic
[connected]
output=7
activation=linear
[softmax]
temperature=0.5
"""

# a window wholly in padding: cnn gives 0 there, no ONNX pooling does
REFUSED_POOL = """
[net]
height=8
width=8
channels=1
[convolutional]
filters=4
size=3
pad=1
activation=relu
[maxpool]
size=2
stride=1
padding=4
[connected]
output=3
activation=linear
[softmax]
"""

failures = []
measured = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL:", what, flush=True)


def run(*args, expect=0):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if expect is not None and p.returncode != expect:
        raise RuntimeError("%s exited %d (expected %d):\n%s%s" % (
            " ".join(map(str, args)), p.returncode, expect, p.stdout, p.stderr))
    return p


def resized(text, h, w):
    """the cfg with its [net] input size changed (everything else as it is)"""
    net_end = re.search(r"\n\[(?!net\])", text).start()
    net, layers = text[:net_end], text[net_end:]
    net = re.sub(r"(?m)^height=\d+", "height=%d" % h, net)
    net = re.sub(r"(?m)^width=\d+", "width=%d" % w, net)
    return net + layers


def ort_run(path, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return s.run(None, {"input": x})[0]


def check_io(model, out_name, c, h, w, classes, name):
    g = model.graph
    check(len(g.input) == 1 and g.input[0].name == "input", name + ": one input named 'input'")
    check(len(g.output) == 1 and g.output[0].name == out_name, name + ": output named " + out_name)
    ti, to = g.input[0].type.tensor_type, g.output[0].type.tensor_type
    check(ti.elem_type == onnx.TensorProto.FLOAT and to.elem_type == onnx.TensorProto.FLOAT,
          name + ": float input and output")
    di = [d.dim_param or d.dim_value for d in ti.shape.dim]
    do = [d.dim_param or d.dim_value for d in to.shape.dim]
    check(di == ["N", c, h, w], name + ": input shape %s" % di)
    check(do == ["N", classes], name + ": output shape %s" % do)
    check(any(o.domain in ("", "ai.onnx") and o.version >= 17 for o in model.opset_import),
          name + ": opset >= 17")
    check(not any(n.op_type == "Dropout" for n in g.node), name + ": no Dropout node")


def export_and_compare(name, ckpt, x, ref, dims, tmp, flags):
    c, h, w, classes = dims
    logits = "--logits" in flags
    tag = name + (" " + " ".join(flags) if flags else "")
    out = os.path.join(tmp, "%s%s.onnx" % (name, "".join(f.replace("-", "_") for f in flags)))
    p = run(CNN, "export", ckpt, out, *flags)
    model = onnx.load(out)
    g = model.graph
    m = re.search(r"(\d+) nodes, (\d+) initializers, (\d+) bytes", p.stdout)
    check(m and "wrote " + out in p.stdout and int(m.group(1)) == len(g.node)
          and int(m.group(2)) == len(g.initializer) and int(m.group(3)) == os.path.getsize(out),
          tag + ": summary line " + p.stdout.strip())
    onnx.checker.check_model(model, full_check=True)
    check_io(model, "logits" if logits else "probs", c, h, w, classes, tag)
    producer = {o: n for n in g.node for o in n.output}
    readers = {}
    for n in g.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    unfolded = [n.name for n in g.node if n.op_type == "BatchNormalization"
                and producer.get(n.input[0]) is not None
                and producer[n.input[0]].op_type == "Conv" and readers[n.input[0]] == 1]
    if "--fold-bn" in flags:
        check(not unfolded, tag + ": batch norms after convs folded: %s" % unfolded)
    got = ort_run(out, x)
    check(got.shape == ref.shape, tag + ": output shape %s vs %s" % (got.shape, ref.shape))
    diff = float(np.max(np.abs(got - ref)))
    if logits:
        scale = max(1.0, float(np.max(np.abs(ref))))
        ok = diff <= LOGIT_TOL * scale
        measured.append((tag, "logits", diff, diff / scale))
    else:
        ok = diff <= PROB_TOL
        measured.append((tag, "probs", diff, diff))
    check(ok, tag + ": max |ort - cnn| = %.3g" % diff)
    return diff


# Darknet's [crop] (centre window, with and without x * 2 - 1), every [reorg] mode
# and the ramp activation: 16x12 input
ZOO_DARKNET = """
[net]
height=16
width=12
channels=3
[crop]
crop_height=14
crop_width=10
flip=1
shift=.2
[convolutional]
filters=8
size=3
pad=1
activation=ramp
[reorg]
stride=2
[convolutional]
filters=8
size=1
activation=leaky
[reorg]
stride=2
reverse=1
[reorg]
flatten=1
stride=1
[convolutional]
filters=6
size=3
pad=1
activation=ramp
[reorg]
flatten=1
reverse=1
stride=1
[crop]
crop_height=9
crop_width=6
noadjust=1
[convolutional]
filters=5
size=3
stride=2
activation=linear
[reorg]
extra=3
[softmax]
"""


# relu6 (Clip(0, 6)) on a conv, a depthwise conv, a shortcut and on its own; the input
# std of 0.05 makes the values large enough to reach both kinks: 10x10 input
ZOO_RELU6 = """
[net]
height=10
width=10
channels=3
[convolutional]
batch_normalize=1
filters=8
size=3
pad=1
activation=relu6
[convolutional]
filters=8
size=3
pad=1
groups=8
activation=relu6
[convolutional]
batch_normalize=1
filters=8
size=1
activation=linear
[shortcut]
from=-3
activation=relu6
[convolutional]
filters=8
size=3
stride=2
pad=1
activation=linear
[activation]
activation=relu6
[avgpool]
[connected]
output=5
activation=linear
[softmax]
"""


def setup_case(name, cfg_text, tmp, mean=None, std=None, seed=1):
    """tmp/name/model.safetensors with random weights, and a random batch (also written
    to tmp/name/in.f32): (dir, checkpoint, batch, its file)"""
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, "src.cfg")
    with open(cfg, "w") as f:
        f.write(cfg_text)
    init = [XTOOL, "init", cfg, d, "--seed", seed]
    if mean:
        init += ["--mean", ",".join(map(str, mean)), "--std", ",".join(map(str, std))]
    run(*init)
    net = re.search(r"\[net\](.*?)\n\[", cfg_text, re.S).group(1)
    h, w, c = (int(re.search(r"(?m)^%s=(\d+)" % k, net).group(1)) for k in ("height", "width", "channels"))
    rng = np.random.default_rng(seed)
    x = rng.random((BATCH, c, h, w), dtype=np.float32)
    xin = os.path.join(d, "in.f32")
    x.tofile(xin)
    return d, os.path.join(d, "model.safetensors"), x, xin


def model_case(name, cfg_text, tmp, mean=None, std=None, seed=1, flag_sets=None):
    t0 = time.time()
    d, ckpt, x, xin = setup_case(name, cfg_text, tmp, mean, std, seed)
    c, h, w = x.shape[1:]
    refs = {}
    for logits in (0, 1):
        o = os.path.join(d, "out%d.f32" % logits)
        run(XTOOL, "forward", ckpt, xin, o, BATCH, *(["--logits"] if logits else []))
        refs[logits] = np.fromfile(o, dtype=np.float32).reshape(BATCH, -1)
    classes = refs[0].shape[1]
    for flags in flag_sets or ([], ["--fold-bn"], ["--logits"], ["--fold-bn", "--logits"]):
        export_and_compare(name, ckpt, x, refs["--logits" in flags], (c, h, w, classes), d, flags)
    print("%-14s %5.1fs" % (name, time.time() - t0), flush=True)
    return ckpt, x, refs


def read(path):
    with open(path) as f:
        return f.read()


def darknet(name, size=None):
    text = read(os.path.join(SRC, "tests", "data", "darknet", name + ".cfg"))
    return resized(text, size, size) if size else text


def refusals(tmp):
    d = os.path.join(tmp, "refused")
    cfg = os.path.join(tmp, "refused.cfg")
    with open(cfg, "w") as f:
        f.write(REFUSED_POOL)
    run(XTOOL, "init", cfg, d)
    ckpt = os.path.join(d, "model.safetensors")
    out = os.path.join(tmp, "refused.onnx")
    with open(out, "w") as f:
        f.write("earlier file")
    p = run(CNN, "export", ckpt, out, expect=1)
    check("pool1" in p.stderr and "maxpool" in p.stderr and "padding" in p.stderr,
          "refused pooling names the layer: " + p.stderr.strip())
    check(read(out) == "earlier file", "a refused export leaves the earlier file alone")
    check(not [f for f in os.listdir(tmp) if f.startswith("refused.onnx.")], "no temp file left")
    print("refused:", p.stderr.strip())
    # a good export replaces the earlier file
    run(CNN, "export", os.path.join(tmp, "fashion", "model.safetensors"), out)
    check(onnx.load(out).graph.output[0].name == "probs", "an export replaces an earlier file")
    # bad usage
    ckpt_ok = os.path.join(tmp, "fashion", "model.safetensors")
    for bad in (["--opset", "16"], ["--opset", "99"], ["--frobnicate"]):
        p = run(CNN, "export", ckpt_ok, os.path.join(tmp, "bad.onnx"), *bad, expect=2)
    check(not os.path.exists(os.path.join(tmp, "bad.onnx")), "bad usage writes nothing")
    p = run(CNN, "export", os.path.join(tmp, "missing.safetensors"), os.path.join(tmp, "m.onnx"),
            expect=1)
    check("missing.safetensors" in p.stderr, "a missing checkpoint is named")


def main():
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        # shipped models (fashion with a non-trivial normalisation)
        model_case("fashion", read(os.path.join(SRC, "models", "fashion.cfg")), tmp,
                   mean=[0.286], std=[0.353], seed=2)
        model_case("lenet", read(os.path.join(SRC, "models", "lenet.cfg")), tmp, seed=3,
                   flag_sets=[[], ["--logits"]])
        model_case("resnet9", read(os.path.join(SRC, "models", "resnet9.cfg")), tmp, seed=4)
        # the mappings
        ckpt, x, refs = model_case("zoo_spatial", ZOO_SPATIAL, tmp, mean=[0.5, 0.4, 0.3],
                                   std=[0.2, 0.25, 0.3], seed=5)
        model_case("zoo_flat", ZOO_FLAT, tmp, mean=[0.1, 0.9], std=[0.5, 2.0], seed=6)
        # every opset we write (Gelu is a node from 20 on)
        for opset in range(18, 23):
            flags = ["--opset", str(opset)]
            export_and_compare("zoo_spatial", ckpt, x, refs[0], (3, 24, 16, refs[0].shape[1]),
                               os.path.join(tmp, "zoo_spatial"), flags)
            export_and_compare("zoo_spatial", ckpt, x, refs[1], (3, 24, 16, refs[1].shape[1]),
                               os.path.join(tmp, "zoo_spatial"), flags + ["--logits"])
        # Darknet's classifiers (input size reduced where marked)
        model_case("cifar", darknet("cifar"), tmp, mean=[0.49, 0.48, 0.45], std=[0.25, 0.24, 0.26],
                   seed=7)
        model_case("tiny", darknet("tiny", 64), tmp, seed=8)
        model_case("darknet", darknet("darknet", 64), tmp, seed=9)
        model_case("darknet19", darknet("darknet19", 64), tmp, seed=10,
                   flag_sets=[["--fold-bn"], ["--logits"]])
        model_case("resnet18", darknet("resnet18", 64), tmp, seed=11)
        model_case("resnext50", darknet("resnext50", 64), tmp, seed=12,
                   flag_sets=[["--fold-bn"], ["--logits"]])
        model_case("densenet201", darknet("densenet201", 64), tmp, seed=13,
                   flag_sets=[["--fold-bn", "--logits"], []])
        # Darknet's [crop], [reorg] and ramp: the zoo, strided (crop 224 of 256 reduced to
        # 56 of 64) and go (reorg extra=1 at its own 19x19)
        model_case("zoo_darknet", ZOO_DARKNET, tmp, mean=[0.3, 0.5, 0.6], std=[0.3, 0.2, 0.4],
                   seed=14)
        model_case("strided", darknet("strided", 64).replace("crop_height=224", "crop_height=56")
                   .replace("crop_width=224", "crop_width=56"), tmp, seed=15,
                   flag_sets=[["--fold-bn"], ["--logits"]])
        model_case("go", darknet("go"), tmp, seed=16, flag_sets=[["--fold-bn", "--logits"], []])
        # relu6 as Clip(0, 6); models/mobilenet_v2.cfg at 32x32 (resnet50's layers are
        # those of resnet18 and resnext50 above)
        model_case("zoo_relu6", ZOO_RELU6, tmp, mean=[0.0, 0.0, 0.0], std=[0.05, 0.05, 0.05],
                   seed=17)
        model_case("mobilenet_v2", resized(read(os.path.join(SRC, "models", "mobilenet_v2.cfg")),
                                           32, 32), tmp, seed=18,
                   flag_sets=[["--fold-bn"], ["--logits"]])
        refusals(tmp)
    return report("export", t0)


def report(what, t0):
    """the table of measured differences, the failures; the exit status"""
    print("\n%-40s %-11s %-10s %s" % (what, "output", "max diff", "relative"))
    for tag, kind, diff, rel in measured:
        print("%-40s %-11s %-10.3g %.3g" % (tag, kind, diff, rel))
    print("\n%d comparisons, %d failures, %.1fs" % (len(measured), len(failures), time.time() - t0))
    for f in failures:
        print("FAIL:", f)
    return 1 if failures or not measured else 0


if __name__ == "__main__":
    sys.exit(main())
