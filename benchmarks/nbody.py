"""N-body: softened gravity between all pairs, ``physics.Particles`` + ``physics.Gravity``.

float64, N particles (default 2 000) with random positions and velocities, unit masses,
G = 1, softening 0.05, semi-implicit Euler (``v += dt a(x); x += dt v``), dt = 1e-3.

* forward: ``steps`` steps under ``no_grad`` (the same algorithm in hand-written numpy, with
  the same row blocks, and in PyTorch eager CPU with a dense [N, N, 3] difference tensor);
* forward + backward: ``steps`` steps (default 10) recording the graph, loss
  ``sum(x_T ** 2)``, gradients w.r.t. the initial positions and velocities (PyTorch eager:
  the same dense program with ``backward``).

Steps per second are reported in the notes; times are medians over ``repeats`` after one
warm-up, all programs measured in the same process.

    python benchmarks/nbody.py [--n 2000] [--steps 10] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

try:
    import diffsim as ds
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import diffsim as ds
from diffsim import physics

try:  # the benchmark, never the library, may use torch
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

G, EPS, DT = 1.0, 0.05, 1e-3


def initial(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)), rng.standard_normal((n, 3)) * 0.1


# ------------------------------------------------------------------ programs

def diffsim_program(n, steps, backward):
    x0, v0 = initial(n)
    system = physics.Particles(1.0, forces=[physics.Gravity(G, EPS)])

    def once():
        x = ds.tensor(x0, dtype=ds.float64, requires_grad=backward)
        v = ds.tensor(v0, dtype=ds.float64, requires_grad=backward)
        if not backward:
            with ds.no_grad():
                out = physics.simulate(system, physics.State(x=x, v=v), steps, DT, check=False)
            return out.x.numpy()
        out = physics.simulate(system, physics.State(x=x, v=v), steps, DT, check=False)
        (out.x ** 2).sum().backward()
        return x.grad.numpy()
    return once


def numpy_program(n, steps, chunk=64):
    """Hand-written numpy forward: the same blocked direct-difference kernel."""
    x0, v0 = initial(n)

    def acc(x):
        out = np.empty_like(x)
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            d = x[None, :, :] - x[s:e, None, :]
            r2 = np.einsum("ijk,ijk->ij", d, d) + EPS * EPS
            w = r2 ** -1.5
            w[np.arange(e - s), np.arange(s, e)] = 0.0
            out[s:e] = G * np.einsum("ij,ijk->ik", w, d)
        return out

    def once():
        x, v = x0.copy(), v0.copy()
        for _ in range(steps):
            v = v + DT * acc(x)
            x = x + DT * v
        return x
    return once


def torch_program(n, steps, backward):
    x0, v0 = initial(n)

    def acc(x):
        d = x[None, :, :] - x[:, None, :]
        r2 = (d * d).sum(-1) + EPS * EPS
        w = r2.pow(-1.5) * (1.0 - torch.eye(n, dtype=x.dtype))
        return G * (w.unsqueeze(-1) * d).sum(1)

    def once():
        x = torch.tensor(x0, requires_grad=backward)
        v = torch.tensor(v0, requires_grad=backward)
        with torch.set_grad_enabled(backward):
            xx, vv = x, v
            for _ in range(steps):
                vv = vv + DT * acc(xx)
                xx = xx + DT * vv
            if backward:
                (xx ** 2).sum().backward()
                return x.grad.numpy()
        return xx.detach().numpy()
    return once


def _median_time(fn, repeats):
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def run(n=2000, steps=10, repeats=3):
    """Rows: forward (vs numpy and torch) and forward + backward (vs torch)."""
    rows = []
    fwd = _median_time(diffsim_program(n, steps, False), repeats)
    npf = _median_time(numpy_program(n, steps), repeats)
    label = f"nbody N={n} fwd {steps} steps"
    rows.append(dict(workload=label, diffsim_s=fwd, baseline_s=npf, baseline="numpy", ratio=fwd / npf,
                     note=f"diffsim {steps / fwd:.1f} steps/s, numpy {steps / npf:.1f} steps/s"))
    fb = _median_time(diffsim_program(n, steps, True), repeats)
    if torch is not None:
        torch.set_num_threads(max(1, torch.get_num_threads()))
        tf = _median_time(torch_program(n, steps, False), repeats)
        rows.append(dict(workload=label, diffsim_s=fwd, baseline_s=tf, baseline="torch", ratio=fwd / tf,
                         note=f"torch {steps / tf:.1f} steps/s (dense [N,N,3])"))
        tb = _median_time(torch_program(n, steps, True), repeats)
        rows.append(dict(workload=f"nbody N={n} fwd+bwd {steps} steps", diffsim_s=fb, baseline_s=tb,
                         baseline="torch", ratio=fb / tb,
                         note=f"diffsim {steps / fb:.1f} steps/s, torch {steps / tb:.1f} steps/s"))
    else:
        rows.append(dict(workload=f"nbody N={n} fwd+bwd {steps} steps", diffsim_s=fb, baseline_s=None,
                         baseline="torch (not installed)", ratio=None, note=f"diffsim {steps / fb:.1f} steps/s"))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    # check the programs agree before timing them
    a = diffsim_program(50, 3, False)()
    b = numpy_program(50, 3)()
    assert np.allclose(a, b, rtol=1e-10, atol=1e-12), "diffsim and numpy disagree"
    if torch is not None:
        ga = diffsim_program(50, 3, True)()
        gb = torch_program(50, 3, True)()
        assert np.allclose(ga, gb, rtol=1e-8, atol=1e-10), "diffsim and torch gradients disagree"
    for r in run(args.n, args.steps, args.repeats):
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['workload']:<32} vs {r['baseline']:<22} ratio {ratio:>6}   {r['note']}")


if __name__ == "__main__":
    main()
