"""W3 mlp (shared/benchmarks.md): 200 full-batch Adam steps of a 64-256-256-64 tanh MLP.

float32. X ~ N(0,1) [256, 64], W_true ~ N(0,1) [64, 64] / 8, Y = sin(X @ W_true).
Weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn once with numpy and copied into
every implementation, so all start from the same point and their final losses agree.
Adam lr=1e-3, betas (0.9, 0.999), eps 1e-8; loss MSE.

    python benchmarks/mlp.py             # diffsim vs PyTorch eager (CPU) vs hand-written numpy
    python benchmarks/mlp.py --steps 20
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

SIZES = (64, 256, 256, 64)


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((256, 64)).astype(np.float32)
    W = (rng.standard_normal((64, 64)) / 8).astype(np.float32)
    Y = np.sin(X @ W).astype(np.float32)
    params = []
    for fin, fout in zip(SIZES[:-1], SIZES[1:]):
        b = 1 / np.sqrt(fin)
        params.append((rng.uniform(-b, b, (fout, fin)).astype(np.float32),
                       rng.uniform(-b, b, fout).astype(np.float32)))
    return X, Y, params


def run_diffsim(X, Y, params, steps):
    layers = []
    for i, (w, b) in enumerate(params):
        lin = nn.Linear(w.shape[1], w.shape[0])
        with ds.no_grad():
            lin.weight.copy_(ds.from_numpy(w))
            lin.bias.copy_(ds.from_numpy(b))
        layers.append(lin)
        if i < len(params) - 1:
            layers.append(nn.Tanh())
    model = nn.Sequential(*layers)
    opt = optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = nn.MSELoss()
    x, y = ds.from_numpy(X), ds.from_numpy(Y)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0, loss.item()


def run_torch(X, Y, params, steps):
    import torch
    layers = []
    for i, (w, b) in enumerate(params):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if i < len(params) - 1:
            layers.append(torch.nn.Tanh())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = torch.nn.MSELoss()
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0, loss.item()


def run_numpy(X, Y, params, steps):
    """The same training loop with forward, backward and Adam written by hand."""
    ps = [a.copy() for wb in params for a in wb]
    m = [np.zeros_like(p) for p in ps]
    v = [np.zeros_like(p) for p in ps]
    b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-8
    t0 = time.perf_counter()
    for t in range(1, steps + 1):
        W1, c1, W2, c2, W3, c3 = ps
        h1 = np.tanh(X @ W1.T + c1)
        h2 = np.tanh(h1 @ W2.T + c2)
        out = h2 @ W3.T + c3
        diff = out - Y
        loss = float((diff * diff).mean())
        g = 2 * diff / diff.size
        gW3, gc3 = g.T @ h2, g.sum(0)
        g2 = (g @ W3) * (1 - h2 * h2)
        gW2, gc2 = g2.T @ h1, g2.sum(0)
        g1 = (g2 @ W2) * (1 - h1 * h1)
        gW1, gc1 = g1.T @ X, g1.sum(0)
        for i, gr in enumerate((gW1, gc1, gW2, gc2, gW3, gc3)):
            m[i] = b1 * m[i] + (1 - b1) * gr
            v[i] = b2 * v[i] + (1 - b2) * gr * gr
            mh = m[i] / (1 - b1 ** t)
            vh = v[i] / (1 - b2 ** t)
            ps[i] = ps[i] - lr * mh / (np.sqrt(vh) + eps)
    return time.perf_counter() - t0, loss


def run(steps=200, repeats=5):
    """Rows for benchmarks/run.py: diffsim vs torch (if installed) and vs numpy by hand."""
    X, Y, params = make_data()
    impls = {"diffsim": run_diffsim, "numpy by hand": run_numpy}
    try:
        import torch  # noqa: F401
        impls["torch eager (CPU)"] = run_torch
    except ImportError:
        pass
    for f in impls.values():                  # warm-up
        f(X, Y, params, 3)
    times = {k: [] for k in impls}
    losses = {}
    for r in range(repeats):
        names = list(impls)
        names = names[r % len(names):] + names[:r % len(names)]   # rotate the order
        for k in names:
            t, loss = impls[k](X, Y, params, steps)
            times[k].append(t)
            losses[k] = loss
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = []
    for base in [k for k in impls if k != "diffsim"]:
        if abs(losses[base] - losses["diffsim"]) > 1e-4 * max(1.0, abs(losses[base])):
            raise AssertionError(f"final losses differ: diffsim {losses['diffsim']}, {base} {losses[base]}")
        rows.append(dict(workload=f"W3 mlp, {steps} Adam steps", diffsim_s=med["diffsim"],
                         baseline_s=med[base], baseline=base, ratio=med["diffsim"] / med[base],
                         note=f"final loss {losses['diffsim']:.6f}"))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    for r in run(args.steps, args.repeats):
        print(f"{r['workload']:<28} diffsim {r['diffsim_s'] * 1e3:8.1f} ms  {r['baseline']:<18} "
              f"{r['baseline_s'] * 1e3:8.1f} ms  ratio {r['ratio']:.2f}  ({r['note']})")


if __name__ == "__main__":
    main()
