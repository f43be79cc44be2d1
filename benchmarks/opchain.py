"""W1 opchain: per-op overhead of the eager autodiff core (see shared/benchmarks.md).

float64, x0 = [0.1, 0.2, 0.3] requires grad; repeat ``n_iter`` times
``x = sin(x) * 1.0001 + 0.001`` (3 primitive ops each); loss = sum(x); backward to x0.

Compared in the same process with PyTorch eager on the CPU (when importable) and with a
hand-written numpy forward and backward. Forward and backward are timed separately;
times are medians over ``repeats`` interleaved runs after ``warmup`` runs, and each ratio
is the median of the per-repeat ratios (each repeat runs all programs back to back, so a
burst of load on the machine hits both sides of a ratio).

    python benchmarks/opchain.py [--iters 1000] [--repeats 30]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import diffsim as ds

X0 = [0.1, 0.2, 0.3]
SCALE, SHIFT = 1.0001, 0.001

try:  # the benchmark, never the library, may use torch
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None


# ------------------------------------------------------------------ the three programs

def diffsim_program(n_iter):
    """Returns ``once() -> (forward_s, backward_s, grad)``."""
    x0 = ds.tensor(X0, dtype=ds.float64, requires_grad=True)

    def once():
        x0.grad = None
        t0 = time.perf_counter()
        x = x0
        for _ in range(n_iter):
            x = ds.sin(x) * SCALE + SHIFT
        loss = x.sum()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, x0.grad.numpy()
    return once


def torch_program(n_iter):
    x0 = torch.tensor(X0, dtype=torch.float64, requires_grad=True)

    def once():
        x0.grad = None
        t0 = time.perf_counter()
        x = x0
        for _ in range(n_iter):
            x = torch.sin(x) * SCALE + SHIFT
        loss = x.sum()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, x0.grad.numpy().copy()
    return once


def numpy_program(n_iter):
    """Hand-written forward (keeping what the backward needs) and reverse sweep."""
    x0 = np.array(X0, dtype=np.float64)

    def once():
        t0 = time.perf_counter()
        xs = []
        x = x0
        for _ in range(n_iter):
            xs.append(x)                    # sin's backward needs its input
            x = np.sin(x) * SCALE + SHIFT
        loss = x.sum()
        t1 = time.perf_counter()
        g = np.ones_like(x)                 # d loss / d x (sum)
        for xk in reversed(xs):
            g = g * SCALE                   # mul by the constant (add passes g through)
            g = g * np.cos(xk)              # sin
        t2 = time.perf_counter()
        del loss
        return t1 - t0, t2 - t1, g
    return once


def programs(n_iter):
    progs = {"diffsim": diffsim_program(n_iter), "numpy": numpy_program(n_iter)}
    if torch is not None:
        progs["torch"] = torch_program(n_iter)
    return progs


# ------------------------------------------------------------------ measuring

def measure(progs, repeats, warmup):
    """Interleaved runs (each repeat runs every program once, back to back, in rotating order).
    Returns ({name: [(forward s, backward s), ...]}, {name: gradient})."""
    for _ in range(warmup):
        for f in progs.values():
            f()
    samples = {k: [] for k in progs}
    grads = {}
    items = list(progs.items())
    for r in range(repeats):
        # rotate the order: whatever one program leaves behind (allocator state, caches)
        # does not always land on the same next program
        for k, f in items[r % len(items):] + items[:r % len(items)]:
            fw, bw, g = f()
            samples[k].append((fw, bw))
            grads[k] = g
    return samples, grads


def _parts(sample):
    fw, bw = sample
    return fw, bw, fw + bw


def compare(samples, name, base):
    """Per part (forward, backward, total): (median diffsim s, median baseline s, ratio), where
    the ratio is the median over repeats of the paired per-repeat ratios (robust to load drift)."""
    out = []
    for i in range(3):
        d = [_parts(s)[i] for s in samples[name]]
        b = [_parts(s)[i] for s in samples[base]]
        out.append((statistics.median(d), statistics.median(b),
                    statistics.median(x / y for x, y in zip(d, b))))
    return out


def check_grads(grads, rtol=1e-12):
    """The gradients must agree (they are the same float64 computation)."""
    ref = grads["numpy"]
    for k, g in grads.items():
        if not np.allclose(g, ref, rtol=rtol, atol=0):
            raise AssertionError(f"opchain: {k} gradient {g} differs from the numpy one {ref}")


def run(n_iter=1000, repeats=30, warmup=5):
    """Run W1; returns rows (dicts: workload, diffsim_s, baseline_s, baseline, ratio, note).

    Times are medians; ratio is the median of per-repeat ratios. Raises if the diffsim,
    numpy and torch gradients disagree."""
    samples, grads = measure(programs(n_iter), repeats, warmup)
    check_grads(grads)
    n_ops = 3 * n_iter
    rows = []
    for base in ("torch", "numpy"):
        if base not in samples:
            continue
        name = "torch eager (CPU)" if base == "torch" else "numpy by hand"
        for part, (d, b, ratio) in zip(("forward", "backward", "fwd+bwd"),
                                       compare(samples, "diffsim", base)):
            rows.append(dict(
                workload=f"W1 opchain {part} ({n_ops} ops)",
                diffsim_s=d, baseline_s=b, baseline=name, ratio=ratio,
                note=f"{d / n_ops * 1e6:.2f} vs {b / n_ops * 1e6:.2f} us/op"))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=1000, help="loop iterations (3 ops each)")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="100 iterations, few repeats")
    a = p.parse_args(argv)
    if a.quick:
        a.iters, a.repeats, a.warmup = 100, 5, 1
    from run import format_table
    print(format_table(run(a.iters, a.repeats, a.warmup)))


if __name__ == "__main__":
    main()
