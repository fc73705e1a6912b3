#!/usr/bin/env python3
"""PyTorch reference for bench_train on models/lenet.cfg (the same net, batch, optimizer,
random data, thread count), so the two can be run side by side:

    OMP_NUM_THREADS=2 build/bench_train models/lenet.cfg --device cpu --steps 50
    python3 bench/pytorch_lenet.py --threads 2 --steps 50

Prints training images/s (forward, loss, backward, SGD step; data already in memory).
Not a test: needs torch, which the project does not depend on."""
import argparse
import time

import torch
import torch.nn as nn


def lenet():
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(7 * 7 * 64, 1024), nn.ReLU(), nn.Dropout(0.4),
        nn.Linear(1024, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--channels-last", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = lenet()
    x = torch.rand(a.batch, 1, 28, 28) - 0.5
    y = torch.randint(0, 10, (a.batch,))
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    print(f"pytorch {torch.__version__} lenet cpu training batch {a.batch}, {a.threads} threads"
          f"{', channels_last' if a.channels_last else ''}: {a.steps * a.batch / dt:.1f} images/s "
          f"({a.steps} steps, {dt / a.steps:.4f} s/step, last loss {loss.item():.4f})")


if __name__ == "__main__":
    main()
