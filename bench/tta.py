#!/usr/bin/env python3
"""Time to accuracy: ResNet-9 (models/resnet9.cfg) on Fashion-MNIST to >= 94 % test
accuracy with DESIGN.md's recipe (batch 512, SGD with Nesterov momentum 0.9, weight
decay 5e-4 on the weights, one-cycle learning rate peaking at 0.4, label smoothing 0.1,
random crops of +-2 px and horizontal flips, 12 epochs), in wall seconds from launching
the process to its last test evaluation, for cnn and for PyTorch on the same device.

    python3 bench/tta.py --device cuda --json runs/bench/tta.json
    python3 bench/tta.py --side pytorch --device cpu --epochs 1 --limit 2048   # a smoke run

The cnn side is exactly this command (CNN_TTA below), timed from launch to exit:

    build/cnn train models/resnet9.cfg --data fashion-mnist --device cuda --precision bf16 \\
      --batch 512 --epochs 12 --optimizer sgd --lr 0.4 --momentum 0.9 --nesterov 1 \\
      --wd 0.0005 --schedule onecycle --label-smoothing 0.1 --crop 2 --flip 1 --seed 1 \\
      --quiet --out DIR

The PyTorch side runs in its own process (python and torch start-up count, as cnn's
does): the same net (bench/pytorch_models.py), channels_last, bf16 autocast on cuda,
the data on the device and augmented there, cnn's one-cycle (linear warm-up over the
first quarter of the steps, then linear decay to 0), a test evaluation after every
epoch. The data is read from $CNN_DATA_DIR/fashion-mnist or
/usr/share/datasets/fashion-mnist (IDX, gzip'd), as cnn reads it.
"""
import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RECIPE = {"batch": 512, "epochs": 12, "lr": 0.4, "momentum": 0.9, "nesterov": True,
          "weight_decay": 5e-4, "schedule": "onecycle", "label_smoothing": 0.1, "crop": 2,
          "flip": True, "target_accuracy": 0.94}


def cnn_command(cnn, device, precision, epochs, out, model="models/resnet9.cfg"):
    return [cnn, "train", model, "--data", "fashion-mnist", "--device", device,
            "--precision", precision, "--batch", str(RECIPE["batch"]), "--epochs", str(epochs),
            "--optimizer", "sgd", "--lr", str(RECIPE["lr"]), "--momentum", str(RECIPE["momentum"]),
            "--nesterov", "1", "--wd", str(RECIPE["weight_decay"]), "--schedule", "onecycle",
            "--label-smoothing", str(RECIPE["label_smoothing"]), "--crop", str(RECIPE["crop"]),
            "--flip", "1", "--seed", "1", "--quiet", "--out", out]


def run_cnn(a):
    res = {}
    with tempfile.TemporaryDirectory(prefix="cnn-tta-") as tmp:
        out = os.path.join(tmp, "run")
        cmd = cnn_command(a.cnn, a.device, a.precision, a.epochs, out, a.model)
        res["command"] = " ".join(cmd)
        print("cnn:", res["command"], flush=True)
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout, cwd=ROOT)
        except subprocess.TimeoutExpired:
            res["error"] = "timed out after %d s" % a.timeout
            return res
        except OSError as e:
            res["error"] = str(e)
            return res
        res["seconds"] = time.perf_counter() - t0
        if p.returncode != 0:
            res["error"] = "exit %d: %s" % (p.returncode, (p.stderr or p.stdout).strip()[-300:])
            return res
        m = re.search(r"final test accuracy: ([0-9.]+)", p.stdout + p.stderr)
        epochs = []
        try:
            with open(os.path.join(out, "metrics.jsonl")) as f:
                for line in f:
                    r = json.loads(line)
                    if r.get("type") == "epoch":
                        epochs.append({"epoch": r["epoch"], "test_acc": r.get("test_acc"),
                                       "seconds": r.get("seconds")})
        except (OSError, ValueError):
            pass
        res["epochs"] = epochs
        res["accuracy"] = float(m.group(1)) if m else (epochs[-1]["test_acc"] if epochs else None)
        res["first_at_target"] = next((e["epoch"] for e in epochs if (e["test_acc"] or 0) >=
                                       RECIPE["target_accuracy"]), None)
    return res


# ---- the PyTorch side (its own process) ----------------------------------------------------


def read_idx(path):
    import numpy as np
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def data_dir():
    cands = [os.path.join(os.environ["CNN_DATA_DIR"], "fashion-mnist")] if \
        os.environ.get("CNN_DATA_DIR") else []
    cands.append("/usr/share/datasets/fashion-mnist")
    for d in cands:
        if os.path.exists(os.path.join(d, "train-images-idx3-ubyte.gz")):
            return d
    raise FileNotFoundError("Fashion-MNIST not found in %s" % " or ".join(cands))


def pytorch_worker(a):
    t_launch = float(a.launched)
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, HERE)
    import pytorch_models as pm
    dev = a.device
    torch.manual_seed(1)
    if dev == "cuda":
        torch.backends.cudnn.benchmark = True
    d = data_dir()
    xs = {s: read_idx(os.path.join(d, "%s-images-idx3-ubyte.gz" % s)) for s in ("train", "t10k")}
    ys = {s: read_idx(os.path.join(d, "%s-labels-idx1-ubyte.gz" % s)) for s in ("train", "t10k")}
    if a.limit:
        xs = {k: v[:a.limit] for k, v in xs.items()}
        ys = {k: v[:a.limit] for k, v in ys.items()}
    xtr = torch.from_numpy(xs["train"].copy()).to(dev).float().div_(255).unsqueeze(1)
    mean, std = xtr.mean().item(), xtr.std().item()
    xtr = ((xtr - mean) / std).contiguous(memory_format=torch.channels_last)
    xte = torch.from_numpy(xs["t10k"].copy()).to(dev).float().div_(255).unsqueeze(1)
    xte = ((xte - mean) / std).contiguous(memory_format=torch.channels_last)
    ytr = torch.from_numpy(ys["train"].astype("int64")).to(dev)
    yte = torch.from_numpy(ys["t10k"].astype("int64")).to(dev)
    model = pm.resnet9().to(dev).to(memory_format=torch.channels_last)
    net = torch.compile(model) if a.compile else model
    decay = [p for p in model.parameters() if p.dim() > 1]
    other = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": RECIPE["weight_decay"]},
                           {"params": other, "weight_decay": 0.0}], lr=RECIPE["lr"],
                          momentum=RECIPE["momentum"], nesterov=True)
    n, bs = xtr.shape[0], RECIPE["batch"]
    steps_per_epoch = (n + bs - 1) // bs
    total = steps_per_epoch * a.epochs
    warm = total // 4
    bf16 = dev == "cuda" and a.precision == "bf16"
    pad = RECIPE["crop"]

    def lr_at(step):  # cnn's one-cycle (src/core/schedule.h)
        if step < warm:
            return RECIPE["lr"] * (step + 1) / warm
        frac = min(max((step - warm) / max(total - warm, 1), 0.0), 1.0)
        return RECIPE["lr"] * (1 - frac)

    def augment(x):
        b = x.shape[0]
        xp = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b,), device=dev)
        ox = torch.randint(0, 2 * pad + 1, (b,), device=dev)
        h, w = x.shape[2], x.shape[3]
        iy = (oy[:, None] + torch.arange(h, device=dev)[None, :])            # b x h
        ix = (ox[:, None] + torch.arange(w, device=dev)[None, :])            # b x w
        flip = torch.rand(b, device=dev) < 0.5
        ix = torch.where(flip[:, None], ix.flip(1), ix)
        out = xp[torch.arange(b, device=dev)[:, None, None, None], torch.arange(x.shape[1],
                 device=dev)[None, :, None, None], iy[:, None, :, None], ix[:, None, None, :]]
        return out.contiguous(memory_format=torch.channels_last)

    def evaluate():
        model.eval()
        correct = 0
        with torch.inference_mode(), torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, xte.shape[0], 2000):
                correct += (net(xte[i:i + 2000]).argmax(1) == yte[i:i + 2000]).sum().item()
        model.train()
        return correct / xte.shape[0]

    epochs, step = [], 0
    for ep in range(a.epochs):
        perm = torch.randperm(n, device=dev)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
                out = net(augment(xtr[idx]))
            loss = F.cross_entropy(out.float(), ytr[idx],
                                   label_smoothing=RECIPE["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        acc = evaluate()
        epochs.append({"epoch": ep + 1, "test_acc": acc,
                       "seconds": time.time() - t_launch})
        print("pytorch epoch %d: test accuracy %.4f, %.1f s" % (ep + 1, acc, epochs[-1]["seconds"]),
              file=sys.stderr, flush=True)
    res = {"seconds": time.time() - t_launch, "accuracy": epochs[-1]["test_acc"],
           "epochs": epochs, "torch": torch.__version__, "compile": a.compile,
           "first_at_target": next((e["epoch"] for e in epochs if e["test_acc"] >=
                                    RECIPE["target_accuracy"]), None)}
    print(json.dumps(res))


def run_pytorch(a):
    try:
        import torch  # noqa: F401  (only whether it is there)
    except ImportError:
        return {"error": "torch not installed"}
    cmd = [sys.executable, os.path.abspath(__file__), "--side", "pytorch-worker", "--device",
           a.device, "--precision", a.precision, "--epochs", str(a.epochs), "--limit",
           str(a.limit), "--launched", repr(time.time())] + (["--compile"] if a.compile else [])
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after %d s" % a.timeout}
    sys.stderr.write(p.stderr)
    if p.returncode != 0:
        return {"error": "exit %d: %s" % (p.returncode, p.stderr.strip()[-300:])}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--side", default="both", choices=("both", "cnn", "pytorch", "pytorch-worker"))
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--precision", default=None, help="default: bf16 on cuda, fp32 on cpu")
    ap.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    ap.add_argument("--cnn", default=os.path.join(ROOT, "build", "cnn"))
    ap.add_argument("--model", default="models/resnet9.cfg", help="cnn's side (a smoke run may "
                    "use models/fashion.cfg)")
    ap.add_argument("--limit", type=int, default=0,
                    help="PyTorch side: only the first N training and test images (smoke runs)")
    ap.add_argument("--compile", action="store_true", help="PyTorch side: torch.compile")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per side")
    ap.add_argument("--launched", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    a.precision = a.precision or ("bf16" if a.device == "cuda" else "fp32")
    if a.side == "pytorch-worker":
        pytorch_worker(a)
        return 0
    doc = {"tool": "tta", "device": a.device, "precision": a.precision, "epochs": a.epochs,
           "recipe": RECIPE, "limit": a.limit}
    if a.side in ("both", "cnn"):
        doc["cnn"] = run_cnn(a)
        print("cnn:", json.dumps({k: v for k, v in doc["cnn"].items() if k != "epochs"}),
              flush=True)
    if a.side in ("both", "pytorch"):
        doc["pytorch"] = run_pytorch(a)
        print("pytorch:", json.dumps({k: v for k, v in doc["pytorch"].items() if k != "epochs"}),
              flush=True)
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
