"""A 2-layer CNN training step on 32x32 images, batch 64: diffsim vs PyTorch eager (CPU).

Model: Conv2d(3, 16, 3, padding=1) - ReLU - MaxPool2d(2) - Conv2d(16, 32, 3, padding=1) - ReLU
- MaxPool2d(2) - Flatten - Linear(32*8*8, 10); cross-entropy loss; SGD(lr=0.01, momentum=0.9).
Both start from the same weights; the step's loss is checked to agree.

    python benchmarks/cnn_step.py
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import diffsim as ds  # noqa: E402
import diffsim.nn as nn  # noqa: E402
import diffsim.optim as optim  # noqa: E402


def build(lib_nn):
    return lib_nn.Sequential(
        lib_nn.Conv2d(3, 16, 3, padding=1), lib_nn.ReLU(), lib_nn.MaxPool2d(2),
        lib_nn.Conv2d(16, 32, 3, padding=1), lib_nn.ReLU(), lib_nn.MaxPool2d(2),
        lib_nn.Flatten(), lib_nn.Linear(32 * 8 * 8, 10))


def data(batch=64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, 3, 32, 32)).astype(np.float32),
            rng.integers(0, 10, batch).astype(np.int64))


def time_steps(step, n, warmup=3):
    for _ in range(warmup):
        step()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def run(batch=64, steps=20):
    x_np, y_np = data(batch)
    model = build(nn)
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = ds.from_numpy(x_np), ds.from_numpy(y_np)
    loss_fn = nn.CrossEntropyLoss()
    first = {}

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        first.setdefault("diffsim", loss.item())
    t_ds = time_steps(step, steps)
    rows = []
    try:
        import torch
    except ImportError:
        return [dict(workload=f"CNN train step, batch {batch}, 32x32", diffsim_s=t_ds, baseline_s=None,
                     baseline="torch not installed", ratio=None, note="")]
    tmodel = build(torch.nn)
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
    tx, ty = torch.from_numpy(x_np), torch.from_numpy(y_np)
    tloss = torch.nn.CrossEntropyLoss()

    def tstep():
        topt.zero_grad()
        loss = tloss(tmodel(tx), ty)
        loss.backward()
        topt.step()
        first.setdefault("torch", loss.item())
    t_torch = time_steps(tstep, steps)
    if abs(first["diffsim"] - first["torch"]) > 1e-4:
        raise AssertionError(f"first-step losses differ: diffsim {first['diffsim']}, torch {first['torch']}")
    rows.append(dict(workload=f"CNN train step, batch {batch}, 32x32", diffsim_s=t_ds, baseline_s=t_torch,
                     baseline="torch eager (CPU)", ratio=t_ds / t_torch,
                     note=f"first loss {first['diffsim']:.5f}"))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args(argv)
    for r in run(steps=args.steps):
        base = "-" if r["baseline_s"] is None else f"{r['baseline_s'] * 1e3:.1f} ms"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['workload']}: diffsim {r['diffsim_s'] * 1e3:.1f} ms, {r['baseline']} {base}, ratio {ratio}")


if __name__ == "__main__":
    main()
