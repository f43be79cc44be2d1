"""Large arrays: a 10-op elementwise chain on 1e6 float64 elements, forward + backward.

Where the opchain benchmark measures per-op overhead, this one measures what the core adds
when the arrays are big: extra copies, temporaries, broadcasting reductions. The program
(10 primitive ops; ``a``, ``b`` are Python floats)::

    s = sin(x); u = s * a; v = u + b; w = square(v); n = -w
    e = exp(n); l = log1p(e); q = sqrt(l); t = tanh(q); loss = sum(t)

Values stay finite: w in [0, (|a|+|b|)^2], e in (0, 1], l in (0, log 2], q > 0.
The baseline is the same computation in numpy with its gradient written by hand, in the
natural reverse order, one numpy expression per backward rule (what diffsim's rules do),
reusing one gradient variable so that each temporary is freed when the next one exists.
PyTorch eager is timed too when importable (for information). Times are medians over
interleaved repeats; each ratio is the median of the per-repeat ratios.

    python benchmarks/large_arrays.py [--n 1000000] [--repeats 20]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import diffsim as ds

A, B = 1.5, 0.3
N_OPS = 10

try:  # the benchmark, never the library, may use torch
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None


def steady_malloc(threshold=32 * 1024 * 1024):
    """Fix glibc's mmap threshold (``mallopt(M_MMAP_THRESHOLD)``) so that 8 MB arrays always
    come from the heap and freed memory is reused. By default glibc adapts the threshold as
    blocks are freed, so whether an array gets fresh pages (page faults, ~2000 per 8 MB)
    depends on the allocation history, and either side of a comparison may pay for it.
    Returns True if it was set (glibc only)."""
    try:
        import ctypes
        import ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, int(threshold)))    # M_MMAP_THRESHOLD = -3
    except (OSError, AttributeError):
        return False


def make_input(n, seed=0):
    return np.random.default_rng(seed).uniform(-3.0, 3.0, n)


# ------------------------------------------------------------------ the programs

def diffsim_program(xn):
    x = ds.tensor(xn, requires_grad=True)

    def once():
        x.grad = None
        t0 = time.perf_counter()
        s = ds.sin(x)
        u = s * A
        v = u + B
        w = ds.square(v)
        n = -w
        e = ds.exp(n)
        lg = ds.log1p(e)
        q = ds.sqrt(lg)
        t = ds.tanh(q)
        loss = t.sum()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, loss.item(), x.grad.numpy()
    return once


def numpy_program(xn):
    """Forward keeps what the hand-derived backward needs; backward in reverse op order."""
    x = xn

    def once():
        t0 = time.perf_counter()
        s = np.sin(x)
        u = s * A
        v = u + B
        w = v * v
        n = -w
        e = np.exp(n)
        lg = np.log1p(e)
        q = np.sqrt(lg)
        t = np.tanh(q)
        loss = t.sum()
        t1 = time.perf_counter()
        g = np.broadcast_to(np.ones((), t.dtype), t.shape)  # sum: the 0-d 1 broadcast back
        g = g * (1 - t * t)           # tanh (uses its output)
        g = g / (2 * q)               # sqrt (uses its output)
        g = g / (e + 1)               # log1p
        g = g * e                     # exp (uses its output)
        g = -g                        # neg
        g = 2 * g * v                 # square
        #                               add of a constant passes g through
        g = g * A                     # mul by a constant
        gx = g * np.cos(x)            # sin
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, float(loss), gx
    return once


def torch_program(xn):
    x = torch.tensor(xn, requires_grad=True)

    def once():
        x.grad = None
        t0 = time.perf_counter()
        s = torch.sin(x)
        u = s * A
        v = u + B
        w = torch.square(v)
        n = -w
        e = torch.exp(n)
        lg = torch.log1p(e)
        q = torch.sqrt(lg)
        t = torch.tanh(q)
        loss = t.sum()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, loss.item(), x.grad.numpy().copy()
    return once


def programs(xn, with_torch=True):
    progs = {"diffsim": diffsim_program(xn), "numpy": numpy_program(xn)}
    if with_torch and torch is not None:
        progs["torch"] = torch_program(xn)
    return progs


# ------------------------------------------------------------------ measuring

def measure(progs, repeats, warmup):
    """Interleaved runs (each repeat runs every program once, back to back, in rotating order).
    Returns ({name: [(forward s, backward s), ...]}, {name: (loss, gradient)})."""
    for _ in range(warmup):
        for f in progs.values():
            f()
    samples = {k: [] for k in progs}
    last = {}
    items = list(progs.items())
    for r in range(repeats):
        # rotate the order: whatever one program leaves behind (allocator state, caches)
        # does not always land on the same next program
        for k, f in items[r % len(items):] + items[:r % len(items)]:
            fw, bw, loss, g = f()
            samples[k].append((fw, bw))
            last[k] = (loss, g)
    return samples, last


def compare(samples, name, base):
    """Per part (forward, backward, total): (median diffsim s, median baseline s, ratio), where
    the ratio is the median over repeats of the paired per-repeat ratios (robust to load drift)."""
    out = []
    for i in range(3):
        d = [(fw, bw, fw + bw)[i] for fw, bw in samples[name]]
        b = [(fw, bw, fw + bw)[i] for fw, bw in samples[base]]
        out.append((statistics.median(d), statistics.median(b),
                    statistics.median(x / y for x, y in zip(d, b))))
    return out


def check_grads(results, rtol=1e-12, atol=1e-14):
    ref_loss, ref = results["numpy"]
    for k, (loss, g) in results.items():
        if not np.isclose(loss, ref_loss, rtol=rtol):
            raise AssertionError(f"large_arrays: {k} loss {loss} differs from the numpy one {ref_loss}")
        if not np.allclose(g, ref, rtol=rtol, atol=atol):
            err = float(np.max(np.abs(g - ref)))
            raise AssertionError(f"large_arrays: {k} gradient differs from the numpy one (max abs err {err})")


def _per_op(s):
    us = s / N_OPS * 1e6
    return f"{us:.1f} us" if us < 1000 else f"{us / 1e3:.2f} ms"


def run(n=1_000_000, repeats=20, warmup=3, with_torch=True):
    """Run the chain on ``n`` elements; returns rows (dicts: workload, diffsim_s, baseline_s,
    baseline, ratio, note). Times are medians; ratio is the median of per-repeat ratios.
    Raises if the losses or gradients disagree."""
    samples, results = measure(programs(make_input(n), with_torch), repeats, warmup)
    check_grads(results)
    rows = []
    for base, name in (("numpy", "numpy by hand"), ("torch", "torch eager (CPU)")):
        if base not in samples:
            continue
        for part, (d, b, ratio) in zip(("forward", "backward", "fwd+bwd"),
                                       compare(samples, "diffsim", base)):
            rows.append(dict(workload=f"large {N_OPS}-op chain {part} (n={n:.0e})",
                             diffsim_s=d, baseline_s=b, baseline=name, ratio=ratio,
                             note=f"{_per_op(d)} vs {_per_op(b)} per op"))
    return rows


def main(argv=None):
    from run import format_table
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="number of elements")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch timing")
    p.add_argument("--quick", action="store_true", help="n=10000, few repeats")
    p.add_argument("--steady-malloc", action="store_true",
                   help="fix glibc's mmap threshold first (see steady_malloc)")
    a = p.parse_args(argv)
    if a.steady_malloc and not steady_malloc():
        print("# --steady-malloc: mallopt not available (not glibc); ignored")
    if a.quick:
        a.n, a.repeats, a.warmup = 10_000, 5, 1
    print(format_table(run(a.n, a.repeats, a.warmup, not a.no_torch)))


if __name__ == "__main__":
    main()
