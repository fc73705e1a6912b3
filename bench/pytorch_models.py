#!/usr/bin/env python3
"""PyTorch side of `make bench`: the models of models/*.cfg (lenet, fashion, resnet9,
resnet50, mobilenet_v2) measured with the data already on the device, in every PyTorch mode
worth comparing against:

  eager          NCHW, the default
  channels_last  model and input in torch.channels_last
  cuda_graph     the whole training step (forward, loss, backward, SGD) or the forward
                 captured once as a CUDA graph and replayed (cuda only)
  compile        torch.compile(model), default mode (compile time not counted)

at precisions fp32 (TF32 off), tf32 (TF32 matmuls and convs) and bf16 (autocast), for
three metrics:

  train    images/s of SGD steps (momentum 0.9, Nesterov, weight decay 5e-4),
           cross-entropy loss included, at --batch
  infer    images/s of eval-mode forwards at --batch
  latency  ms of one eval-mode forward of batch 1 (median)

    python3 bench/pytorch_models.py --device cuda --models lenet,resnet9 --json out.json
    python3 bench/pytorch_models.py --device cpu --quick --models lenet,resnet9

Each measurement runs in its own try/except: a mode that fails (compile without a
compiler, a graph capture error) records its error string and the rest go on. Without
torch it prints "torch not installed", writes a JSON saying so and exits 0.
bench/table.py reads the JSON; bench/run.sh runs it beside `cnn bench`.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

MODELS = ("lenet", "fashion", "resnet9", "resnet50", "mobilenet_v2")
MODES = ("eager", "channels_last", "cuda_graph", "compile")
PRECISIONS = ("fp32", "tf32", "bf16")
METRICS = ("train", "infer", "latency")
# the models' inputs and classes (models/*.cfg)
SHAPES = {"lenet": (1, 28, 28, 10), "fashion": (1, 28, 28, 10), "resnet9": (1, 28, 28, 10),
          "resnet50": (3, 224, 224, 1000), "mobilenet_v2": (3, 224, 224, 1000)}
# DESIGN.md's workloads on a GPU: the batch of each model
GPU_BATCH = {"lenet": 128, "fashion": 128, "resnet9": 512, "resnet50": 256, "mobilenet_v2": 256}
CPU_BATCH = {"lenet": 128, "fashion": 128, "resnet9": 64, "resnet50": 8, "mobilenet_v2": 16}

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # the script still runs: it says so in the JSON
    torch = None

# ---- the models ----------------------------------------------------------------------

if torch is not None:

    def lenet():
        """models/lenet.cfg: 3,274,634 parameters"""
        return nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(7 * 7 * 64, 1024), nn.ReLU(inplace=True), nn.Dropout(0.4),
            nn.Linear(1024, 10))

    def conv_bn(ci, co, k=3, stride=1, groups=1, act=nn.ReLU):
        layers = [nn.Conv2d(ci, co, k, stride, k // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(co)]
        if act is not None:
            layers.append(act(inplace=True))
        return layers

    def fashion():
        """models/fashion.cfg: 53,362 parameters. Its convs have batch_normalize=1 and so no
        bias (cnn, as Darknet, drops the conv bias under batch norm; the BN shift is it);
        Darknet's 2x2/2 max pool of an even size is MaxPool2d(2); `global=1` is a global
        max pool"""
        return nn.Sequential(
            *conv_bn(1, 24), nn.MaxPool2d(2),
            *conv_bn(24, 48), nn.MaxPool2d(2),
            *conv_bn(48, 96),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(96, 10))

    class Residual(nn.Module):
        def __init__(self, *layers):
            super().__init__()
            self.f = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.f(x)

    class Scale(nn.Module):
        def __init__(self, s):
            super().__init__()
            self.s = s

        def forward(self, x):
            return x * self.s

    def resnet9():
        """models/resnet9.cfg: 6,571,978 parameters; Darknet's max pool of 7x7 gives 4x4
        (ceil_mode), the softmax temperature 8 is the 0.125 output scale"""
        return nn.Sequential(
            *conv_bn(1, 64),
            *conv_bn(64, 128), nn.MaxPool2d(2),
            Residual(*conv_bn(128, 128), *conv_bn(128, 128)),
            *conv_bn(128, 256), nn.MaxPool2d(2),
            *conv_bn(256, 512), nn.MaxPool2d(2, ceil_mode=True),
            Residual(*conv_bn(512, 512), *conv_bn(512, 512)),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(512, 10), Scale(0.125))

    class Bottleneck(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            self.f = nn.Sequential(*conv_bn(cin, width, 1), *conv_bn(width, width, 3, stride),
                                   *conv_bn(width, width * 4, 1, act=None))
            self.down = None
            if stride != 1 or cin != width * 4:
                self.down = nn.Sequential(nn.Conv2d(cin, width * 4, 1, stride, bias=False),
                                          nn.BatchNorm2d(width * 4))

        def forward(self, x):
            return F.relu(self.f(x) + (x if self.down is None else self.down(x)))

    def resnet50_own():
        """torchvision's resnet50 (v1.5) layer for layer: 25,557,032 parameters"""
        layers = [*conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for stage, (width, n) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
            for b in range(n):
                layers.append(Bottleneck(cin, width, 2 if b == 0 and stage > 0 else 1))
                cin = width * 4
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000)]
        return nn.Sequential(*layers)

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, t):
            super().__init__()
            hidden = cin * t
            layers = [] if t == 1 else conv_bn(cin, hidden, 1, act=nn.ReLU6)
            layers += conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6)
            layers += conv_bn(hidden, cout, 1, act=None)
            self.f = nn.Sequential(*layers)
            self.res = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.f(x) if self.res else self.f(x)

    def mobilenet_v2_own():
        """torchvision's mobilenet_v2 (width 1.0) layer for layer: 3,504,872 parameters"""
        layers = conv_bn(3, 32, 3, 2, act=nn.ReLU6)
        cin = 32
        for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += conv_bn(cin, 1280, 1, act=nn.ReLU6)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(1280, 1000)]
        return nn.Sequential(*layers)


def build_model(name):
    """(module, where it came from)"""
    if name in ("resnet50", "mobilenet_v2"):
        try:
            import torchvision.models as tvm
            return getattr(tvm, name)(weights=None), "torchvision"
        except Exception:  # no torchvision (or an old one): the same layers, ours
            return (resnet50_own if name == "resnet50" else mobilenet_v2_own)(), "own definition"
    return {"lenet": lenet, "fashion": fashion, "resnet9": resnet9}[name](), \
        "models/%s.cfg" % name


# ---- measuring ---------------------------------------------------------------------------


def set_precision(prec, device):
    """TF32 on for tf32 only (fp32: IEEE float products; bf16: autocast, TF32 off for what
    stays in float). PyTorch >= 2.9 has fp32_precision and refuses a mix with the older
    allow_tf32 flags, which inductor no longer reads: the new API where there is one."""
    if device != "cuda":
        return
    tf32 = prec == "tf32"
    if hasattr(torch.backends.cuda.matmul, "fp32_precision") and \
            hasattr(torch.backends.cudnn, "conv"):
        torch.backends.cuda.matmul.fp32_precision = "tf32" if tf32 else "ieee"
        torch.backends.cudnn.conv.fp32_precision = "tf32" if tf32 else "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True


def autocast(prec, device, graph=False):
    if prec != "bf16":
        return torch.autocast(device_type=device, enabled=False)
    # inside a CUDA graph capture autocast must not cache casts across captures
    return torch.autocast(device_type=device, dtype=torch.bfloat16, cache_enabled=not graph)


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


class Budget:
    """timed iterations: `steps`, fewer when `seconds` run out (at least `least`)"""

    def __init__(self, steps, seconds, least=2):
        self.steps, self.seconds, self.least = steps, seconds, least


def timed_loop(fn, device, warmup, budget):
    """images/s-ready: (iterations, seconds) of fn() after warmup calls"""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    n = 0
    while n < budget.steps:
        fn()
        n += 1
        if n >= budget.least and time.perf_counter() - t0 > budget.seconds:
            break
    sync(device)
    return n, time.perf_counter() - t0


def timed_each(fn, device, warmup, budget):
    """median ms of single calls, each synchronised"""
    for _ in range(warmup):
        fn()
    sync(device)
    times, t_start = [], time.perf_counter()
    while len(times) < budget.steps:
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= budget.least and time.perf_counter() - t_start > budget.seconds:
            break
    return statistics.median(times), len(times)


def make_inputs(name, batch, device, channels_last):
    c, h, w, classes = SHAPES[name]
    g = torch.Generator(device="cpu").manual_seed(0)
    x = (torch.rand(batch, c, h, w, generator=g) - 0.5).to(device)
    y = torch.randint(0, classes, (batch,), generator=g).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def prepare(name, mode, device):
    if mode == "compile":  # a fresh cache: no recompile limits from earlier models
        torch._dynamo.reset()
    model, _ = build_model(name)
    model = model.to(device)
    if mode == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    return model


def measure_train(name, mode, prec, batch, device, warmup, budget):
    model = prepare(name, mode, device)
    model.train()
    x, y = make_inputs(name, batch, device, mode == "channels_last")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    net = torch.compile(model) if mode == "compile" else model

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(prec, device):
            loss = loss_fn(net(x).float(), y)
        loss.backward()
        opt.step()
        return loss

    if mode != "cuda_graph":
        n, dt = timed_loop(step, device, warmup, budget)
        return n * batch / dt, n
    # the documented whole-network capture: warm up on a side stream (the optimizer's
    # momentum buffers and cuDNN's choices are made there), then capture one step
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(g):
        with autocast(prec, device, graph=True):
            loss = loss_fn(model(x).float(), y)
        loss.backward()
        opt.step()
    n, dt = timed_loop(g.replay, device, warmup, budget)
    return n * batch / dt, n


def forward_fn(name, mode, prec, batch, device):
    """an eval-mode forward of `batch` images (a graph replay for cuda_graph)"""
    model = prepare(name, mode, device)
    model.eval()
    x, _ = make_inputs(name, batch, device, mode == "channels_last")
    net = torch.compile(model) if mode == "compile" else model

    def fwd():
        with torch.inference_mode(), autocast(prec, device):
            return net(x)

    if mode != "cuda_graph":
        return fwd
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.no_grad():
        for _ in range(3):
            with autocast(prec, device):
                model(x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(g):
        with autocast(prec, device, graph=True):
            model(x)
    return g.replay


def measure(metric, name, mode, prec, batch, device, warmup, budget):
    """(value, unit, iterations)"""
    if metric == "train":
        v, n = measure_train(name, mode, prec, batch, device, warmup, budget)
        return v, "images/s", n
    if metric == "infer":
        n, dt = timed_loop(forward_fn(name, mode, prec, batch, device), device, warmup, budget)
        return n * batch / dt, "images/s", n
    ms, n = timed_each(forward_fn(name, mode, prec, 1, device), device, warmup,
                       Budget(max(budget.steps, 20), budget.seconds, 5))
    return ms, "ms", n


def param_count(name):
    m, src = build_model(name)
    return sum(p.numel() for p in m.parameters() if p.requires_grad), src


def short_error(e):
    s = "%s: %s" % (type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else "")
    return s[:300]


# ---- main ------------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--precisions", default=None,
                    help="comma list of fp32,tf32,bf16 (default: cuda fp32,bf16; cpu fp32)")
    ap.add_argument("--modes", default=None,
                    help="comma list of eager,channels_last,cuda_graph,compile (default: all "
                         "that apply to the device)")
    ap.add_argument("--metrics", default=",".join(METRICS))
    ap.add_argument("--batch", default=None,
                    help="one batch for every model, or model=N,model=N (default: DESIGN.md's "
                         "on cuda, small ones on cpu)")
    ap.add_argument("--steps", type=int, default=None, help="timed iterations per measurement")
    ap.add_argument("--warmup", type=int, default=None, help="untimed iterations first")
    ap.add_argument("--seconds", type=float, default=None,
                    help="stop a measurement's timed loop after this many seconds")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    ap.add_argument("--compile-models", default=None,
                    help="models that get the compile mode (default: all; --quick: lenet, "
                         "fashion and resnet9)")
    ap.add_argument("--job", action="append", default=[],
                    help="MODEL:PRECISIONS:METRICS[:MODES[:BATCH]] (lists comma-separated), "
                         "e.g. resnet50:fp32:latency:eager,cuda_graph; repeatable; replaces "
                         "--models/--precisions/--metrics/--modes")
    ap.add_argument("--quick", action="store_true",
                    help="few steps: the whole run fits a few minutes")
    ap.add_argument("--json", default=None, help="write the results here")
    return ap.parse_args(argv)


def batches(arg, device, models):
    base = dict(GPU_BATCH if device == "cuda" else CPU_BATCH)
    if arg:
        if "=" in arg:
            for kv in arg.split(","):
                k, v = kv.split("=")
                base[k.strip()] = int(v)
        else:
            base = {m: int(arg) for m in models}
    return base


def write_json(path, doc):
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(doc, f, indent=1)


def main(argv=None):
    a = parse_args(argv)
    doc = {"tool": "pytorch", "device": a.device, "host": platform.node(), "results": []}
    if torch is None:
        print("torch not installed")
        doc["error"] = "torch not installed"
        write_json(a.json, doc)
        return 0
    device = a.device
    if device == "cuda" and not torch.cuda.is_available():
        print("torch has no usable CUDA device")
        doc["error"] = "torch has no usable CUDA device"
        write_json(a.json, doc)
        return 0
    if a.threads:
        torch.set_num_threads(a.threads)
    models = [m for m in a.models.split(",") if m]
    for m in models:
        if m not in MODELS:
            sys.exit("unknown model '%s' (expected %s)" % (m, ", ".join(MODELS)))
    precs = (a.precisions or ("fp32,bf16" if device == "cuda" else "fp32")).split(",")
    modes = (a.modes or ",".join(m for m in MODES if device == "cuda" or m != "cuda_graph"))
    modes = modes.split(",")
    metrics = a.metrics.split(",")
    compile_models = (a.compile_models.split(",") if a.compile_models is not None else
                      ["lenet", "fashion", "resnet9"] if a.quick else list(MODELS))
    bs = batches(a.batch, device, models)
    if device == "cuda":
        steps = a.steps or (15 if a.quick else 50)
        warmup = a.warmup if a.warmup is not None else (5 if a.quick else 10)
        seconds = a.seconds or (2.0 if a.quick else 10.0)
        doc["device_name"] = torch.cuda.get_device_name(0)
    else:
        steps = a.steps or (5 if a.quick else 20)
        warmup = a.warmup if a.warmup is not None else (2 if a.quick else 3)
        seconds = a.seconds or (5.0 if a.quick else 30.0)
        doc["device_name"] = platform.processor() or platform.machine()
    doc.update(torch=torch.__version__, threads=torch.get_num_threads(), steps=steps,
               warmup=warmup, seconds=seconds, quick=a.quick, models={})
    try:
        import torchvision
        doc["torchvision"] = torchvision.__version__
    except Exception:
        doc["torchvision"] = None
    if device == "cuda":
        doc["cudnn"] = torch.backends.cudnn.version()
    print("pytorch %s on %s (%s, %d threads): %d timed steps after %d warm-up, at most %.0f s "
          "each" % (torch.__version__, device, doc["device_name"], doc["threads"], steps, warmup,
                    seconds), flush=True)
    budget = Budget(steps, seconds)
    # the jobs: (model, precisions, metrics, modes, batch)
    jobs = [(m, precs, metrics, modes, bs[m]) for m in models]
    if a.job:
        jobs = []
        for j in a.job:
            f = j.split(":")
            if len(f) < 3 or f[0] not in MODELS:
                sys.exit("--job %s: expected MODEL:PRECISIONS:METRICS[:MODES[:BATCH]] with a "
                         "model of %s" % (j, ", ".join(MODELS)))
            jobs.append((f[0], f[1].split(","), f[2].split(","),
                         f[3].split(",") if len(f) > 3 and f[3] else modes,
                         int(f[4]) if len(f) > 4 else bs[f[0]]))
    t_all = time.perf_counter()
    for name, precs, metrics, modes, batch_n in jobs:
        if name not in doc["models"]:
            try:
                params, src = param_count(name)
                doc["models"][name] = {"params": params, "source": src}
                print("%s: %s parameters (%s)" % (name, format(params, ","), src), flush=True)
            except Exception as e:
                doc["models"][name] = {"error": short_error(e)}
        for prec in precs:
            if prec == "tf32" and device != "cuda":
                continue  # no TF32 on a CPU
            for metric in metrics:
                batch = 1 if metric == "latency" else batch_n
                for mode in modes:
                    row = {"model": name, "precision": prec, "metric": metric, "batch": batch,
                           "mode": mode, "value": None, "unit": "ms" if metric == "latency"
                           else "images/s", "error": None}
                    if mode == "cuda_graph" and device != "cuda":
                        row["error"] = "cuda only"
                    elif mode == "compile" and name not in compile_models:
                        row["error"] = "skipped (--compile-models)"
                    else:
                        t0 = time.perf_counter()
                        try:
                            set_precision(prec, device)
                            torch.manual_seed(0)
                            v, unit, n = measure(metric, name, mode, prec, batch, device, warmup,
                                                 budget)
                            row.update(value=v, unit=unit, iterations=n)
                        except Exception as e:
                            row["error"] = short_error(e)
                        row["seconds"] = round(time.perf_counter() - t0, 2)
                        if device == "cuda":
                            torch.cuda.empty_cache()
                    doc["results"].append(row)
                    shown = ("%.1f %s" % (row["value"], row["unit"]) if row["value"] is not None
                             else "-- " + row["error"])
                    print("  %-13s %-5s %-8s batch %-4d %-14s %s" % (name, prec, metric, batch,
                                                                  mode, shown), flush=True)
                    write_json(a.json, doc)  # what is measured so far survives a timeout
    doc["wall_seconds"] = round(time.perf_counter() - t_all, 1)
    write_json(a.json, doc)
    print("done in %.1f s" % doc["wall_seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
