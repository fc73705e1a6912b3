"""Writes the seeds of the onnx fuzz target (tests/fuzz/corpus/onnx/): tiny models
(a few hundred bytes) that together use every op and pattern the importer reads, plus a
truncated one, one nested deeper than the importer allows and a text file. Run with a Python that has onnx (the exchange tests' venv):
    .venv/bin/python tests/fuzz/onnx_seeds.py tests/fuzz/corpus/onnx"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(7)


def model(nodes, inits, c, h, w, out, opset=13):
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, h, w])
    outp = helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", "K"])
    g = helper.make_graph(nodes, "g", [inp], [outp],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def f32(*shape):
    return rng.uniform(-1, 1, shape).astype(np.float32)


def seeds():
    n = helper.make_node
    yield "conv-bn-relu-gemm", model([
        n("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        n("BatchNormalization", ["c", "g", "be", "m", "v"], ["bn"], epsilon=1e-3),
        n("Relu", ["bn"], ["r"]),
        n("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        n("Flatten", ["p"], ["f"]),
        n("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
        n("Softmax", ["y"], ["out"], axis=1)],
        {"w": f32(2, 1, 3, 3), "b": f32(2), "g": f32(2), "be": f32(2), "m": f32(2),
         "v": np.abs(f32(2)) + 0.5, "fw": f32(3, 8), "fb": f32(3)}, 1, 4, 4, "out")
    yield "residual-concat", model([
        n("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        n("Add", ["a", "x"], ["s"]),
        n("LeakyRelu", ["s"], ["l"], alpha=0.2),
        n("Concat", ["l", "x"], ["cat"], axis=1),
        n("GlobalAveragePool", ["cat"], ["gp"]),
        n("Reshape", ["gp", "shape"], ["f"]),
        n("MatMul", ["f", "mw"], ["mm"]),
        n("Add", ["mm", "mb"], ["out"])],
        {"w": f32(2, 2, 3, 3), "shape": np.array([0, -1], np.int64), "mw": f32(4, 3),
         "mb": f32(3)}, 2, 3, 3, "out")
    yield "pools-norm", model([
        n("Sub", ["x", "mean"], ["s"]),
        n("Div", ["s", "std"], ["d"]),
        n("Conv", ["d", "w", "b"], ["c"], group=2, kernel_shape=[1, 1]),
        n("Sigmoid", ["c"], ["sg"]),
        n("AveragePool", ["sg"], ["ap"], kernel_shape=[2, 2], pads=[0, 0, 1, 1]),
        n("MaxPool", ["ap"], ["mp"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        n("ReduceMean", ["mp"], ["rm"], axes=[2, 3], keepdims=0),
        n("Dropout", ["rm"], ["dr"]),
        n("Identity", ["dr"], ["out"])],
        {"mean": np.array([0.5, 0.4], np.float32).reshape(2, 1, 1),
         "std": np.array([0.2, 0.3], np.float32).reshape(2, 1, 1), "w": f32(2, 1, 1, 1),
         "b": f32(2)}, 2, 5, 5, "out")
    yield "dilated-same-const", model([
        n("Constant", [], ["cw"], value=numpy_helper.from_array(f32(3, 1, 3, 3))),
        n("Conv", ["x", "cw"], ["c"], dilations=[2, 2], pads=[2, 2, 2, 2]),
        n("Tanh", ["c"], ["t"]),
        n("Conv", ["t", "w2"], ["c2"], strides=[2, 2], auto_pad="SAME_UPPER"),
        n("Gelu", ["c2"], ["ge"]),
        n("GlobalMaxPool", ["ge"], ["gm"]),
        n("Squeeze", ["gm", "axes"], ["sq"]),
        n("LogSoftmax", ["sq"], ["out"], axis=-1)],
        {"w2": f32(2, 3, 3, 3), "axes": np.array([2, 3], np.int64)}, 1, 4, 4, "out", opset=20)
    # x.view(x.size(0), -1) as PyTorch exports it with a dynamic batch: the Reshape's
    # target computed from Shape (opset 11: Unsqueeze axes as an attribute)
    yield "dyn-batch-view", model([
        n("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3]),
        n("Relu", ["c"], ["r"]),
        n("Shape", ["r"], ["s"]),
        n("Constant", [], ["i0"], value=numpy_helper.from_array(np.array(0, np.int64))),
        n("Gather", ["s", "i0"], ["g"], axis=0),
        n("Unsqueeze", ["g"], ["u"], axes=[0]),
        n("Concat", ["u", "m1"], ["t"], axis=0),
        n("Reshape", ["r", "t"], ["f"]),
        n("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
        n("Softmax", ["y"], ["out"], axis=1)],
        {"w": f32(2, 1, 3, 3), "m1": np.array([-1], np.int64), "fw": f32(3, 8), "fb": f32(3)},
        1, 4, 4, "out", opset=11)
    # the variants: Slice with input bounds, Cast, Squeeze/Unsqueeze/Identity of the
    # batch, Mul/Div of gathered dims (opset 13: axes as inputs)
    yield "dyn-batch-slice", model([
        n("GlobalAveragePool", ["x"], ["gp"]),
        n("Shape", ["gp"], ["s"]),
        n("Slice", ["s", "z", "one", "z", "one"], ["n"]),
        n("Cast", ["n"], ["nc"], to=TensorProto.INT32),
        n("Cast", ["nc"], ["n64"], to=TensorProto.INT64),
        n("Squeeze", ["n64", "z"], ["sq"]),
        n("Unsqueeze", ["sq", "z"], ["un"]),
        n("Identity", ["un"], ["id"]),
        n("Gather", ["s", "gi"], ["chw"], axis=0),
        n("Mul", ["chw", "one"], ["cm"]),
        n("Div", ["cm", "one"], ["cd"]),
        n("Concat", ["id", "cd"], ["t"], axis=0),
        n("Reshape", ["gp", "t"], ["f"]),
        n("MatMul", ["f", "mw"], ["out"])],
        {"z": np.array([0], np.int64), "one": np.array([1], np.int64),
         "gi": np.array([1], np.int64), "mw": f32(2, 3)}, 2, 3, 3, "out")


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 127, n >> 7
        out.append(b | (128 if n else 0))
        if not n:
            return bytes(out)


def ld(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def deep(levels):
    """ModelProto{ir_version, graph{input{type: TypeProto nested `levels` deep}}}"""
    t = b""
    for _ in range(levels):
        t = ld(4, ld(1, t))  # TypeProto.sequence_type -> Sequence.elem_type
    return b"\x08\x08" + ld(7, ld(11, ld(2, t)))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fuzz/corpus/onnx"
    os.makedirs(out, exist_ok=True)
    for name, m in seeds():
        data = m.SerializeToString()
        with open(os.path.join(out, name + ".onnx"), "wb") as f:
            f.write(data)
        if name == "conv-bn-relu-gemm":
            with open(os.path.join(out, "truncated.onnx"), "wb") as f:
                f.write(data[: len(data) * 2 // 3])
    with open(os.path.join(out, "deep-nesting.onnx"), "wb") as f:
        f.write(deep(60))
    with open(os.path.join(out, "text.onnx"), "wb") as f:
        f.write(b"ir_version: 8\ngraph { node { op_type: \"Conv\" } }\n")


if __name__ == "__main__":
    main()
