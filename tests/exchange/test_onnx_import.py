"""cnn import MODEL.onnx: models built with onnx.helper in the patterns PyTorch's
exporter writes, random weights and random batch-norm statistics, imported and run by
cnn (cnn_xtool forward, ref and cpu backends) against onnxruntime on the same random
batch; then the refusals (each must name the node, its op type and the opset) and
broken files (a clear error, never a crash); then cnn predict on an imported model.

Tolerance: |cnn - onnxruntime| <= ATOL + RTOL * |onnxruntime| elementwise, with
ATOL = RTOL = 1e-4 on logits and probabilities. Both sides compute in fp32 but in
different orders (onnxruntime's MLAS kernels; cnn folds batch norm into the conv
weights and accumulates in another order, ref in double), so the two differ by
float32 roundings along each multiply-add chain: at worst n * 2^-24 ~ 3.6e-5 relative
for the longest chain here (600 terms), typically sqrt(n) times less, over a few
layers. The largest difference measured is ~2.4e-7 (printed per model); a layout
mistake (a transposed kernel, the CHW/HWC flatten order, an unfolded conv bias, a
wrong epsilon or mean/std) moves outputs by 1e-2 or more (checked by breaking each
conversion on purpose)."""
import os
import subprocess
import sys
import tempfile
import zlib
import struct

import numpy as np
import onnx
import onnxruntime as ort  # a missing onnxruntime fails this test (it must not skip)
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.environ["CNN_SOURCE_DIR"], "tests", "fuzz"))
from onnx_seeds import deep  # noqa: E402  (a file nested beyond protobuf-c's stack)

CNN = os.environ["CNN_BIN"]
XTOOL = os.environ["CNN_XTOOL"]
ATOL = RTOL = 1e-4
N = 3
rng = np.random.default_rng(20260127)
failures = []
TMP = tempfile.mkdtemp(prefix="cnn-onnx-import-")


def fail(msg):
    print("FAIL:", msg)
    failures.append(msg)


# ---- building models --------------------------------------------------------------


class G:
    """a graph under construction: nodes, initializers, fresh names"""

    def __init__(self, c, h, w, opset=13):
        self.nodes, self.inits, self.k = [], [], 0
        self.shape, self.opset = (c, h, w), opset

    def name(self, base):
        self.k += 1
        return f"{base}_{self.k}"

    def const(self, arr, base="w"):
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    def node(self, op, inputs, n_out=1, name=None, **attrs):
        name = name or self.name(op.lower())
        outs = [f"{name}_out{i}" if i else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0]

    def conv(self, x, cin, cout, k, bias=True, group=1, **attrs):
        kh, kw = (k, k) if isinstance(k, int) else k
        fan = cin // group * kh * kw
        w = (rng.standard_normal((cout, cin // group, kh, kw)) / np.sqrt(fan)).astype(np.float32)
        ins = [x, self.const(w)]
        if bias:
            ins.append(self.const(rng.uniform(-0.3, 0.3, cout).astype(np.float32), "b"))
        return self.node("Conv", ins, group=group, kernel_shape=[kh, kw], **attrs)

    def bn(self, x, c, eps=1e-5):
        p = [rng.uniform(0.5, 1.5, c), rng.uniform(-0.3, 0.3, c), rng.uniform(-0.3, 0.3, c),
             rng.uniform(0.5, 1.5, c)]
        ins = [x] + [self.const(a.astype(np.float32), "bn") for a in p]
        return self.node("BatchNormalization", ins, epsilon=eps, momentum=0.9)

    def gemm(self, x, i, o, trans_b=1, **attrs):
        w = (rng.standard_normal((o, i) if trans_b else (i, o)) / np.sqrt(i)).astype(np.float32)
        b = rng.uniform(-0.3, 0.3, o).astype(np.float32)
        return self.node("Gemm", [x, self.const(w), self.const(b, "b")], transB=trans_b, **attrs)

    def model(self, out, ir=8, batch="N"):
        c, h, w = self.shape
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, c, h, w])
        outp = helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, "K"])
        g = helper.make_graph(self.nodes, "g", [inp], [outp], self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)],
                                 ir_version=ir, producer_name="cnn-test")


def save(model, name):
    path = os.path.join(TMP, name + ".onnx")
    onnx.save(model, path)
    return path


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)


# ---- import and compare -------------------------------------------------------------


def check_model(name, model, kind="probs", extra=(), check=True):
    """import, then cnn_xtool forward on ref and cpu vs onnxruntime; kind: what the
    graph outputs (probs, logits, logprobs)"""
    if check:
        onnx.checker.check_model(model, full_check=True)
    path = save(model, name)
    out = os.path.join(TMP, name)
    r = run([CNN, "import", path, "--out", out, "--force", *extra])
    if r.returncode != 0:
        fail(f"{name}: cnn import exited {r.returncode}: {r.stderr.strip()}")
        return
    c, h, w = (d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:])
    x = rng.uniform(0, 1, (N, c, h, w)).astype(np.float32)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    want = sess.run(None, {"input": x})[0].reshape(N, -1).astype(np.float64)
    if kind == "logprobs":
        want = np.exp(want)
    xin, xout = os.path.join(TMP, name + ".in.f32"), os.path.join(TMP, name + ".out.f32")
    x.tofile(xin)
    worst, n_failed = 0.0, len(failures)
    for device in ("ref", "cpu"):
        args = [XTOOL, "forward", os.path.join(out, "model.safetensors"), xin, xout, str(N),
                "--device", device]
        if kind == "logits":
            args.append("--logits")
        r = run(args)
        if r.returncode != 0:
            fail(f"{name} ({device}): cnn_xtool forward exited {r.returncode}: {r.stderr.strip()}")
            continue
        got = np.fromfile(xout, np.float32).reshape(N, -1).astype(np.float64)
        if got.shape != want.shape:
            fail(f"{name} ({device}): output {got.shape}, onnxruntime {want.shape}")
            continue
        diff = np.abs(got - want)
        worst = max(worst, float(diff.max()))
        bad = diff > ATOL + RTOL * np.abs(want)
        if bad.any():
            i = np.unravel_index(np.argmax(diff - RTOL * np.abs(want)), diff.shape)
            fail(f"{name} ({device}): {bad.sum()} values differ; worst at {i}: cnn {got[i]:.7g}, "
                 f"onnxruntime {want[i]:.7g}")
    if len(failures) > n_failed:
        return
    spread = float(np.abs(want).max())
    print(f"ok {name:<22} max |cnn - onnxruntime| = {worst:.2e} ({kind}, max |value| {spread:.3g})")
    return out


def m_conv_bn_relu():
    g = G(3, 16, 16)
    y = g.conv("input", 3, 8, 3, pads=[1, 1, 1, 1])             # conv with bias, then BN
    y = g.node("Relu", [g.bn(y, 8)])
    y = g.node("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    y = g.conv(y, 8, 16, 3, bias=False, strides=[2, 2], pads=[1, 1, 1, 1])
    y = g.node("Relu", [g.bn(y, 16)])
    y = g.node("GlobalAveragePool", [y])
    y = g.node("Flatten", [y], axis=1)
    y = g.node("Softmax", [g.gemm(y, 16, 10)], axis=1)
    return g.model(y)


def m_residual():
    g = G(3, 12, 12)
    stem = g.node("Relu", [g.bn(g.conv("input", 3, 8, 3, bias=False, pads=[1, 1, 1, 1]), 8)])
    y = g.node("Relu", [g.bn(g.conv(stem, 8, 8, 3, bias=False, pads=[1, 1, 1, 1]), 8)])
    y = g.bn(g.conv(y, 8, 8, 3, bias=False, pads=[1, 1, 1, 1]), 8)
    y = g.node("Relu", [g.node("Add", [stem, y])])                # skip first, as PyTorch
    down = g.bn(g.conv(y, 8, 16, 1, bias=False, strides=[2, 2]), 16)
    z = g.node("Relu", [g.bn(g.conv(y, 8, 16, 3, bias=False, strides=[2, 2], pads=[1, 1, 1, 1]), 16)])
    z = g.bn(g.conv(z, 16, 16, 3, bias=False, pads=[1, 1, 1, 1]), 16)
    y = g.node("Relu", [g.node("Add", [z, down])])
    y = g.node("Flatten", [g.node("GlobalAveragePool", [y])])
    return g.model(g.gemm(y, 16, 5))                              # logits


def m_concat_reshape():
    g = G(3, 10, 10, opset=11)
    a = g.node("Relu", [g.conv("input", 3, 4, 1)])
    b = g.node("Relu", [g.conv("input", 3, 6, 3, pads=[1, 1, 1, 1])])
    c = g.node("AveragePool", [a], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
               count_include_pad=0)
    y = g.node("Concat", [b, a, c], axis=1)
    y = g.node("Relu", [g.bn(g.conv(y, 14, 8, 3, strides=[2, 2]), 8, eps=1e-3)])
    y = g.node("GlobalAveragePool", [y])
    y = g.node("Reshape", [y, g.const(np.array([0, -1], np.int64), "shape")])
    return g.model(g.node("Softmax", [g.gemm(y, 8, 7)]))


def m_flatten_order():
    """Flatten of a 4x3x3 map (CHW in ONNX, HWC in cnn) into Gemm, Relu, MatMul+Add"""
    g = G(2, 9, 9)
    y = g.node("Relu", [g.conv("input", 2, 4, 3)])               # 7x7
    y = g.node("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])  # 3x3
    y = g.node("Flatten", [y])
    y = g.node("Relu", [g.gemm(y, 36, 12)])
    w = (rng.standard_normal((12, 6)) / np.sqrt(12)).astype(np.float32)
    y = g.node("MatMul", [y, g.const(w)])
    y = g.node("Add", [y, g.const(rng.uniform(-0.3, 0.3, 6).astype(np.float32), "b")])
    return g.model(g.node("LogSoftmax", [y], axis=1))


def m_matmul_const_nodes():
    """Constant node inputs, a Reshape to [-1, F], AveragePool, Dropout, Identity"""
    g = G(1, 8, 8, opset=13)
    y = g.node("Relu", [g.conv("input", 1, 4, 3, pads=[1, 1, 1, 1])])
    y = g.node("AveragePool", [y], kernel_shape=[2, 2], strides=[2, 2])     # 4x4
    shape = g.node("Constant", [], value=numpy_helper.from_array(np.array([-1, 64], np.int64)))
    y = g.node("Reshape", [y, shape])
    y = g.node("Dropout", [y], n_out=2)
    w = g.node("Constant", [], value=numpy_helper.from_array(
        (rng.standard_normal((64, 10)) / 8).astype(np.float32)))
    y = g.node("MatMul", [y, w])
    y = g.node("Identity", [y])
    b = g.node("Constant", [], value=numpy_helper.from_array(
        rng.uniform(-0.3, 0.3, (1, 10)).astype(np.float32)))
    y = g.node("Add", [b, y])
    return g.model(g.node("Softmax", [g.node("Identity", [y])], axis=-1))


def m_grouped_dilated():
    g = G(4, 14, 14, opset=17)
    y = g.conv("input", 4, 8, 3, group=2, dilations=[2, 2], pads=[2, 2, 2, 2])
    y = g.node("LeakyRelu", [y], alpha=0.2)
    y = g.node("Sigmoid", [g.conv(y, 8, 8, 3, group=8, pads=[1, 1, 1, 1])])  # depthwise
    y = g.conv(y, 8, 12, 3, strides=[2, 2], auto_pad="SAME_UPPER")        # asymmetric pads
    y = g.node("Tanh", [g.conv(y, 12, 12, (3, 1), pads=[1, 0, 1, 0])])     # 3x1 kernel
    y = g.node("Flatten", [g.node("GlobalMaxPool", [y])])
    return g.model(g.gemm(y, 12, 6, trans_b=0, alpha=0.5, beta=2.0))


def m_pool_modes():
    g = G(3, 11, 11, opset=13)
    y = g.node("Relu", [g.conv("input", 3, 6, 3, pads=[1, 1, 1, 1])])
    y = g.node("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)   # 11 -> 5
    y = g.node("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)   # 5 -> 3
    y = g.node("AveragePool", [y], kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1])
    y = g.node("ReduceMean", [y], axes=[2, 3], keepdims=1)
    y = g.node("Squeeze", [y, g.const(np.array([2, 3], np.int64), "axes")])
    return g.model(g.node("Softmax", [g.gemm(y, 6, 4)], axis=1))


def m_normalize_bn():
    """pixel Sub/Div in the graph (mean/std), BN with other epsilons, standalone BN"""
    g = G(3, 8, 8, opset=9)
    y = g.node("Sub", ["input", g.const(np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1))])
    y = g.node("Div", [y, g.const(np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1))])
    a = g.bn(g.conv(y, 3, 6, 3, pads=[1, 1, 1, 1]), 6, eps=1e-3)
    b = g.conv(y, 3, 6, 1)
    y = g.bn(g.node("Add", [a, b]), 6, eps=2e-5)                   # BN after an add
    y = g.node("Relu", [y])
    y = g.node("Flatten", [g.node("GlobalAveragePool", [y])])
    y = g.bn(g.gemm(y, 6, 8), 8, eps=1e-5)                          # BatchNorm1d
    return g.model(g.node("Softmax", [g.gemm(g.node("Relu", [y]), 8, 3)]))


def m_input_skip():
    """the input read by two layers (an identity first layer), Gelu (opset 20), a conv
    as classifier and Unsqueeze"""
    g = G(2, 6, 6, opset=20)
    a = g.conv("input", 2, 2, 3, pads=[1, 1, 1, 1])
    y = g.node("Gelu", [g.node("Add", [a, "input"])])
    y = g.node("Flatten", [g.conv(y, 2, 8, 6)])                     # [N, 8, 1, 1] -> [N, 8]
    y = g.node("Unsqueeze", [y, g.const(np.array([2, 3], np.int64), "axes")])
    return g.model(g.node("Flatten", [g.conv(y, 8, 5, 1)]))


def m_trimmed_pads(log=False):
    """end padding trimmed to what the last window reads (as cnn export writes Darknet's
    strided pad=1 convs): 7x7 stride 2 on 12 with pads 3,3,2,2 and 3x3 stride 2 on 6
    with pads 1,1,0,0 are cnn's symmetric 3 and 1; a scalar Div (Mul) before the final
    Softmax (LogSoftmax) is its temperature"""
    g = G(3, 12, 12, opset=13)
    y = g.node("Relu", [g.bn(g.conv("input", 3, 6, 7, bias=False, strides=[2, 2], pads=[3, 3, 2, 2]), 6)])
    y = g.node("Relu", [g.conv(y, 6, 8, 3, strides=[2, 2], pads=[1, 1, 0, 0])])
    y = g.gemm(g.node("Flatten", [g.node("GlobalAveragePool", [y])]), 8, 5)
    if log:
        y = g.node("Mul", [g.const(np.float32(2.5), "inv_t"), y])
        return g.model(g.node("LogSoftmax", [y], axis=1))
    y = g.node("Div", [y, g.const(np.float32(0.7), "t")])
    return g.model(g.node("Softmax", [y], axis=1))


# ---- dynamic batch: the shape arithmetic PyTorch's TorchScript exporter writes ---------
# for x.view(x.size(0), -1) / x.reshape(x.shape[0], -1) with dynamic_axes={"input": {0:
# "batch_size"}}: Shape -> Gather(0) -> Unsqueeze -> Concat(with [-1]) -> Reshape, the
# constants as Constant nodes, node names as PyTorch writes them ("/Shape", ...).


def i64(v):
    return numpy_helper.from_array(np.array(v, np.int64))


def view_batch(g, x, opset, tail=(-1,), fold=True, prefix=""):
    """x.view(x.size(0), *tail) as PyTorch exports it: opset < 13 Unsqueeze takes axes as
    an attribute, from 13 as an input; fold=False: the [-1] is itself an unsqueezed
    scalar Constant (do_constant_folding=False)"""
    p = prefix
    shape = g.node("Shape", [x], name=f"{p}/Shape")
    idx = g.node("Constant", [], name=f"{p}/Constant", value=i64(0))
    n = g.node("Gather", [shape, idx], name=f"{p}/Gather", axis=0)

    def unsqueeze(v, name):
        if opset < 13:
            return g.node("Unsqueeze", [v], name=name, axes=[0])
        axes = g.node("Constant", [], name=name + "_axes", value=i64([0]))
        return g.node("Unsqueeze", [v, axes], name=name)

    n = unsqueeze(n, f"{p}/Unsqueeze")
    if fold:
        rest = g.node("Constant", [], name=f"{p}/Constant_1", value=i64(list(tail)))
    else:
        rest = unsqueeze(g.node("Constant", [], name=f"{p}/Constant_1", value=i64(tail[0])),
                         f"{p}/Unsqueeze_1")
    cat = g.node("Concat", [n, rest], name=f"{p}/Concat", axis=0)
    return g.node("Reshape", [x, cat], name=f"{p}/Reshape")


def m_dyn_view(opset, fold):
    """Conv -> Relu -> MaxPool -> view(size(0), -1) -> Gemm -> Softmax"""
    def make():
        g = G(3, 12, 12, opset=opset)
        y = g.node("Relu", [g.conv("input", 3, 6, 3, pads=[1, 1, 1, 1])])
        y = g.node("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])          # 6x6
        y = view_batch(g, y, opset, fold=fold, prefix="/features")
        y = g.node("Relu", [g.gemm(y, 6 * 36, 16)])
        return g.model(g.node("Softmax", [g.gemm(y, 16, 10)], axis=1), batch="batch_size")
    return make


def m_dyn_residual():
    """a residual net, GlobalAveragePool -> Shape/Gather/Unsqueeze/Concat/Reshape -> Gemm
    (logits); Shape reads the pooled map that the Reshape reads too"""
    g = G(3, 12, 12, opset=13)
    stem = g.node("Relu", [g.bn(g.conv("input", 3, 8, 3, bias=False, pads=[1, 1, 1, 1]), 8)])
    y = g.node("Relu", [g.bn(g.conv(stem, 8, 8, 3, bias=False, pads=[1, 1, 1, 1]), 8)])
    y = g.bn(g.conv(y, 8, 8, 3, bias=False, pads=[1, 1, 1, 1]), 8)
    y = g.node("Relu", [g.node("Add", [stem, y])])
    down = g.bn(g.conv(y, 8, 16, 1, bias=False, strides=[2, 2]), 16)
    z = g.node("Relu", [g.bn(g.conv(y, 8, 16, 3, bias=False, strides=[2, 2], pads=[1, 1, 1, 1]), 16)])
    z = g.bn(g.conv(z, 16, 16, 3, bias=False, pads=[1, 1, 1, 1]), 16)
    y = g.node("Relu", [g.node("Add", [z, down])])
    y = view_batch(g, g.node("GlobalAveragePool", [y], name="/avgpool/GlobalAveragePool"), 13)
    return g.model(g.gemm(y, 16, 5), batch="batch_size")


def m_dyn_slice_mul():
    """opset 9: Shape -> Slice (attributes) -> Cast; the features c*h*w as Gathers of
    the shape multiplied (and divided by 1); after the classifier a view(size(0), k, 1,
    1) (the batch read from the Gemm's output) and Flatten"""
    g = G(2, 8, 8, opset=9)
    y = g.node("Relu", [g.conv("input", 2, 4, 3)])                            # 4x6x6
    s = g.node("Shape", [y], name="/Shape")
    n = g.node("Cast", [g.node("Slice", [s], name="/Slice", starts=[0], ends=[1])],
               name="/Cast", to=TensorProto.INT64)
    dims = [g.node("Gather", [s, g.node("Constant", [], value=i64(d))], axis=0) for d in (1, 2, 3)]
    f = g.node("Mul", [dims[0], g.node("Mul", [dims[1], dims[2]])])
    f = g.node("Div", [f, g.node("Constant", [], value=i64(1))])
    f = g.node("Unsqueeze", [f], axes=[0])
    y = g.node("Reshape", [y, g.node("Concat", [n, f], axis=0)], name="/Reshape")
    y = g.gemm(y, 144, 6)
    s2 = g.node("Shape", [y])
    n2 = g.node("Unsqueeze", [g.node("Gather", [s2, g.node("Constant", [], value=i64(0))], axis=0)],
                axes=[0])
    t = g.node("Concat", [n2, g.node("Constant", [], value=i64([6, 1, 1]))], axis=0)
    y = g.node("Flatten", [g.node("Reshape", [y, t], name="/Reshape_1")])
    return g.model(g.node("Softmax", [y], axis=1), batch="batch_size")


def m_dyn_slice_inputs():
    """opset 17: Slice with input starts/ends/axes (ends INT64_MAX, as PyTorch writes
    x.shape[1:]), Squeeze/Unsqueeze/Identity of the batch, Cast to INT32 and back, a
    Reshape to [batch, c, h, w] (no change) and one to [batch, -1]"""
    g = G(3, 7, 7, opset=17)
    y = g.node("Relu", [g.conv("input", 3, 5, 3, strides=[2, 2])])             # 5x3x3
    s = g.node("Cast", [g.node("Shape", [y])], to=TensorProto.INT32)
    s = g.node("Cast", [s], to=TensorProto.INT64)
    c = {k: g.node("Constant", [], value=i64(v)) for k, v in
         (("0", [0]), ("1", [1]), ("max", [2**63 - 1]), ("axes", [0]))}
    n = g.node("Slice", [s, c["0"], c["1"], c["axes"]])
    n = g.node("Identity", [g.node("Unsqueeze", [g.node("Squeeze", [n, c["axes"]]), c["axes"]])])
    chw = g.node("Slice", [s, c["1"], c["max"], c["axes"], c["1"]])
    y = g.node("Reshape", [y, g.node("Concat", [n, chw], axis=0)], name="/Reshape")
    y = view_batch(g, y, 17, prefix="/flat")
    return g.model(g.node("LogSoftmax", [g.gemm(y, 45, 4)], axis=1), batch="batch_size")


def m_clip(opset):
    """MobileNetV2's pattern: Clip(0, 6) (relu6) after conv + BN, a depthwise conv, a
    linear bottleneck, the residual Add, then Clip(0, no max) (relu, as torch.clamp(min=0)
    exports it). Before opset 11 min and max are attributes, from 11 on inputs. The first
    conv's weights are scaled up so that values cross 6."""
    g = G(3, 10, 10, opset=opset)

    def clip(x, lo, hi):
        if opset < 11:
            return g.node("Clip", [x], **({"min": lo} if lo is not None else {}),
                          **({"max": hi} if hi is not None else {}))
        ins = [x, g.const(np.float32(lo), "min") if lo is not None else ""]
        if hi is not None:
            ins.append(g.const(np.float32(hi), "max"))
        return g.node("Clip", ins)

    w = (rng.standard_normal((8, 3, 3, 3)) * 2.5).astype(np.float32)
    y = g.node("Conv", ["input", g.const(w)], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    stem = clip(g.bn(y, 8), 0.0, 6.0)
    y = clip(g.bn(g.conv(stem, 8, 8, 3, bias=False, group=8, pads=[1, 1, 1, 1]), 8), 0.0, 6.0)
    y = g.bn(g.conv(y, 8, 8, 1, bias=False), 8)                      # linear bottleneck
    y = clip(g.node("Add", [stem, y]), 0.0, None)                    # relu
    y = clip(g.conv(y, 8, 8, 3, strides=[2, 2], pads=[1, 1, 1, 1]), 0.0, 6.0)
    y = g.node("Flatten", [g.node("GlobalAveragePool", [y])])
    return g.model(g.node("Softmax", [g.gemm(y, 8, 5)], axis=1))


MODELS = [
    ("conv_bn_relu", m_conv_bn_relu, "probs"),
    ("residual", m_residual, "logits"),
    ("concat_reshape", m_concat_reshape, "probs"),
    ("flatten_order", m_flatten_order, "logprobs"),
    ("matmul_const_nodes", m_matmul_const_nodes, "probs"),
    ("grouped_dilated", m_grouped_dilated, "logits"),
    ("pool_modes", m_pool_modes, "probs"),
    ("normalize_bn", m_normalize_bn, "probs"),
    ("input_skip", m_input_skip, "logits"),
    ("trimmed_pads_temp", m_trimmed_pads, "probs"),
    ("trimmed_pads_logtemp", lambda: m_trimmed_pads(log=True), "logprobs"),
    ("dyn_view_opset11", m_dyn_view(11, fold=False), "probs"),
    ("dyn_view_opset13", m_dyn_view(13, fold=True), "probs"),
    ("dyn_residual", m_dyn_residual, "logits"),
    ("dyn_slice_mul", m_dyn_slice_mul, "probs"),
    ("dyn_slice_inputs", m_dyn_slice_inputs, "logprobs"),
    ("clip_relu6_opset9", lambda: m_clip(9), "probs"),
    ("clip_relu6_opset13", lambda: m_clip(13), "probs"),
]

# ---- refusals --------------------------------------------------------------------------


def refused(name, model, words, raw=None):
    """cnn import must exit non-zero, with every word of `words` in its message"""
    path = os.path.join(TMP, name + ".onnx")
    if raw is not None:
        with open(path, "wb") as f:
            f.write(raw)
    else:
        onnx.save(model, path)
    r = run([CNN, "import", path, "--out", os.path.join(TMP, name), "--force"])
    msg = r.stderr.strip()
    if r.returncode == 0 or r.returncode >= 128 or r.returncode < 0:
        fail(f"refusal {name}: exit status {r.returncode} (expected 1): {msg}")
        return
    missing = [w for w in words if w not in msg]
    if missing:
        fail(f"refusal {name}: message lacks {missing}: {msg}")
    else:
        print(f"ok refused {name}: {msg}")


def small(op_node=None, opset=13, conv_w=None):
    g = G(3, 8, 8, opset=opset)
    y = g.conv("input", 3, 4, 3) if conv_w is None else g.node(
        "Conv", ["input", g.const(conv_w)], name="conv_int", kernel_shape=[3, 3])
    if op_node:
        y = op_node(g, y)
    y = g.node("Flatten", [g.node("GlobalAveragePool", [y])])
    return g.model(g.gemm(y, 4, 3))


def refusals():
    refused("lstm", small(lambda g, y: g.node("LSTM", [y], name="my_lstm", hidden_size=4)),
            ["my_lstm", "LSTM", "opset 13", "unsupported op"])
    refused("resize", small(lambda g, y: g.node(
        "Resize", [y, "", g.const(np.array([1, 1, 2, 2], np.float32), "scales")],
        name="up", mode="nearest"), opset=11), ["'up'", "Resize", "opset 11"])
    refused("dilation_attr", small(lambda g, y: g.conv(y, 4, 4, 3, name="dil12", dilations=[1, 2])),
            ["Conv", "opset 13", "dilations 1,2"])
    refused("count_include_pad", small(lambda g, y: g.node(
        "AveragePool", [y], name="avg_pad", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
        count_include_pad=1)), ["avg_pad", "AveragePool", "count_include_pad"])
    refused("unknown_attr", small(lambda g, y: g.node("Relu", [y], name="relu_x", foo=3)),
            ["relu_x", "Relu", "attribute 'foo'"])
    refused("int64_weights", small(conv_w=np.ones((4, 3, 3, 3), np.int64)),
            ["conv_int", "Conv", "opset 13", "integers"])
    refused("opset", small(opset=30), ["opset 30"])
    refused("clip_range", small(lambda g, y: g.node(
        "Clip", [y, g.const(np.float32(-1)), g.const(np.float32(1))], name="clip11")),
        ["clip11", "Clip", "relu6"])
    refused("clip_attr_range", small(lambda g, y: g.node("Clip", [y], name="clip9", min=0.0, max=4.0),
                                     opset=9), ["clip9", "Clip", "max 4"])
    refused("mul_mid", small(lambda g, y: g.node("Mul", [y, g.const(np.float32(2.0))], name="scale")),
            ["scale", "Mul", "opset 13"])
    # end padding that the windows read (the output size differs from symmetric padding)
    refused("pads_end_read", small(lambda g, y: g.conv(y, 4, 4, 3, name="endpad", pads=[0, 0, 1, 1])),
            ["endpad", "Conv", "asymmetric pads 0,0,1,1"])

    def softmax_after(scale):  # Mul(scale) before the final Softmax
        g = G(3, 8, 8)
        y = g.node("Flatten", [g.node("GlobalAveragePool", [g.conv("input", 3, 4, 3)])])
        y = g.node("Mul", [g.gemm(y, 4, 3), g.const(np.asarray(scale, np.float32))], name="scale_sm")
        return g.model(g.node("Softmax", [y], axis=1))
    refused("temp_vector", softmax_after([1, 2, 3]), ["scale_sm", "Mul", "one scalar"])
    refused("temp_negative", softmax_after(-2), ["scale_sm", "Mul", "temperature"])
    refused("temp_range", softmax_after(1e4), ["scale_sm", "Mul", "0.001..1000"])
    # dynamic batch: a target computed from the batch but not the batch (2 N), one
    # computed from the image's values, one putting the batch last
    def view_2n(g, y):
        n = g.node("Gather", [g.node("Shape", [y]), g.const(np.int64(0), "idx")], axis=0)
        n = g.node("Mul", [n, g.const(np.int64(2), "two")])
        n = g.node("Unsqueeze", [n, g.const(np.array([0], np.int64), "axes")])
        t = g.node("Concat", [n, g.const(np.array([-1], np.int64), "m1")], axis=0)
        return g.node("Reshape", [y, t], name="view_2n")
    refused("dyn_runtime", small(view_2n), ["view_2n", "Reshape", "opset 13",
                                            "computed from the batch size"])

    def view_data(g, y):
        t = g.node("Cast", [g.node("Flatten", [g.node("GlobalMaxPool", [y])])], name="cast_act",
                   to=TensorProto.INT64)
        return g.node("Reshape", [y, t], name="view_data")
    refused("dyn_data", small(view_data), ["cast_act", "Cast", "opset 13", "computed from the image"])

    def view_moved(g, y):
        n = g.node("Gather", [g.node("Shape", [y]), g.const(np.int64(0), "idx")], axis=0)
        n = g.node("Unsqueeze", [n], axes=[0])
        t = g.node("Concat", [g.const(np.array([-1], np.int64), "m1"), n], axis=0)
        return g.node("Reshape", [y, t], name="view_moved")
    refused("dyn_moved", small(view_moved, opset=11), ["view_moved", "Reshape", "opset 11",
                                                       "batch size at dimension 1"])
    # a cycle: a -> b -> a
    g = G(3, 8, 8)
    y = g.conv("input", 3, 4, 3)
    g.nodes.append(helper.make_node("Add", [y, "loop_b"], ["loop_a"], name="loop_add"))
    g.nodes.append(helper.make_node("Relu", ["loop_a"], ["loop_b"], name="loop_relu"))
    y = g.node("Flatten", [g.node("GlobalAveragePool", ["loop_b"])])
    refused("cycle", g.model(g.gemm(y, 4, 3)), ["cycle", "opset 13"])
    # an undefined input name
    g = G(3, 8, 8)
    y = g.node("Relu", ["nowhere"], name="dangling")
    refused("dangling", g.model(y), ["dangling", "'nowhere'", "not defined"])
    # dynamic image size
    m = small()
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    refused("dynamic_hw", m, ["dynamic"])
    # weights in an external file
    m = small()
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="weights.bin")
    refused("external", m, ["external data"])
    # broken files
    good = small().SerializeToString()
    refused("truncated", None, ["not", "ONNX"], raw=good[: len(good) // 2])
    refused("not_protobuf", None, ["ONNX"], raw=b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    refused("empty", None, ["empty"], raw=b"")
    # nested TypeProtos 100000 deep: protobuf-c alone would overflow the stack
    refused("deep_nesting", None, ["nested"], raw=deep(100000))
    # --mean contradicting the graph's own normalization
    path = save(m_normalize_bn(), "norm_conflict")
    r = run([CNN, "import", path, "--out", os.path.join(TMP, "norm_conflict"), "--force",
             "--mean", "0.5,0.5,0.5"])
    if r.returncode != 1 or "--mean disagrees" not in r.stderr:
        fail(f"--mean contradicting the graph: exit {r.returncode}: {r.stderr.strip()}")
    else:
        print("ok refused --mean contradicting the graph:", r.stderr.strip())


# ---- predict on an imported model --------------------------------------------------------


def png(path, img):
    """an 8-bit RGB PNG of img [h, w, 3] uint8 (zlib only)"""
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def predict():
    names = os.path.join(TMP, "names.txt")
    with open(names, "w") as f:
        f.write("\n".join(f"class_{c}" for c in "abcdefghij") + "\n")
    out = check_model("predict_model", m_conv_bn_relu(), extra=["--classes", names])
    if not out:
        return
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    path = os.path.join(TMP, "img.png")
    png(path, img)
    r = run([CNN, "predict", os.path.join(out, "model.safetensors"), path, "--top", "10", "--json"])
    if r.returncode != 0:
        fail(f"cnn predict exited {r.returncode}: {r.stderr.strip()}")
        return
    # the same image through onnxruntime: the top class must be the same
    sess = ort.InferenceSession(os.path.join(TMP, "predict_model.onnx"), providers=["CPUExecutionProvider"])
    x = (img.astype(np.float32) / 255).transpose(2, 0, 1)[None]
    p = sess.run(None, {"input": x})[0][0]
    top = f"class_{'abcdefghij'[int(np.argmax(p))]}"
    first = r.stdout.find("class_")
    if first < 0 or not r.stdout[first:].startswith(top):
        fail(f"cnn predict: expected {top} first (onnxruntime), got: {r.stdout.strip()[:300]}")
    else:
        print(f"ok predict: top class {top} as onnxruntime")
    s = run([CNN, "summary", os.path.join(out, "model.cfg")])
    if s.returncode != 0:
        fail(f"cnn summary of the imported cfg exited {s.returncode}: {s.stderr.strip()}")


def main():
    for name, make, kind in MODELS:
        try:
            check_model(name, make(), kind)
        except Exception as e:  # a model onnx or onnxruntime rejects is a bug in this test
            fail(f"{name}: {type(e).__name__}: {e}")
    refusals()
    predict()
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("all ok")


if __name__ == "__main__":
    main()
