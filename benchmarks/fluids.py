"""Stable fluids: one 2-D smoke step at 128 x 128, forward + backward (``physics.StableFluids``).

The step (closed box, MAC layout in one ``[H, W, 2]`` array, float32 by default):
semi-Lagrangian advection of the density and of the velocity with bilinear sampling
(clamped at the walls), buoyancy ``dt * b * density`` on the vertical faces, and a pressure
projection with ``iterations`` (default 40) Jacobi sweeps. Loss ``sum(rho^2) + sum(u^2)``
after ``steps`` steps (default 1); gradients w.r.t. the initial velocity and density.

* diffsim: ``physics.StableFluids(..., projection="jacobi")`` (the sampler and the Jacobi
  solve are custom ops with hand-written backward);
* PyTorch eager CPU: the same algorithm written with torch ops (gathers for the bilinear
  sampling, rolls for the Jacobi sweeps), gradients by torch's autograd;
* numpy: the same forward, hand-written (no gradient).

Times are medians over ``repeats`` after one warm-up, the programs timed in rotation in the
same process; torch runs with its default thread count and with one thread, the faster counts.

    python benchmarks/fluids.py [--n 128] [--steps 1] [--iterations 40] [--repeats 5]
"""
from __future__ import annotations

import argparse
import itertools
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
from diffsim.physics.grid import Grid

try:  # the benchmark, never the library, may use torch
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

DT, BUOY = 0.05, 1.0


def initial(n, seed=0):
    rng = np.random.default_rng(seed)
    h = 1.0 / n
    x = (np.arange(n) + 0.5) * h
    X, Y = np.meshgrid(x, x, indexing="ij")
    rho = np.exp(-((X - 0.5) ** 2 + (Y - 0.25) ** 2) / 0.01)
    u = 0.3 * rng.standard_normal((n, n, 2))
    u[-1, :, 0] = 0
    u[:, -1, 1] = 0
    return u, rho


def _consts(n):
    idx = np.stack(np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64), indexing="ij"), -1)
    F = np.ones((n, n, 2))
    F[-1, :, 0] = 0
    F[:, -1, 1] = 0
    diag = sum((F[..., a] + np.roll(F[..., a], 1, a)) * n * n for a in range(2))
    return idx, 0.5 * np.eye(2), F, 1.0 / diag


# ------------------------------------------------------------------ programs

def diffsim_program(n, steps, iterations, backward, dtype="float32"):
    u0, rho0 = initial(n)
    sf = physics.StableFluids(Grid((n, n), spacing=1.0 / n), buoyancy=BUOY, projection="jacobi",
                              iterations=iterations)
    dt_ = getattr(ds, dtype)

    def once():
        u = ds.tensor(u0, dtype=dt_, requires_grad=backward)
        r = ds.tensor(rho0, dtype=dt_, requires_grad=backward)
        with ds.set_grad_enabled(backward):
            uu, rr = sf.rollout(u, r, DT, steps)
            if backward:
                ((rr ** 2).sum() + (uu ** 2).sum()).backward()
                return u.grad.numpy(), r.grad.numpy()
        return uu.numpy(), rr.numpy()
    return once


def numpy_program(n, steps, iterations, dtype="float32"):
    """Hand-written numpy forward of the same step."""
    u0, rho0 = initial(n)
    idx, off, F, inv_diag = (a.astype(dtype) for a in _consts(n))
    inv_h = float(n)

    def sample(f, pos):                 # f [n, n, C], pos [..., C, 2] -> [..., C]
        C = f.shape[-1]
        p0 = np.clip(pos[..., 0], 0, n - 1)
        p1 = np.clip(pos[..., 1], 0, n - 1)
        f0 = np.minimum(np.floor(p0), n - 2)
        f1 = np.minimum(np.floor(p1), n - 2)
        t0, t1 = p0 - f0, p1 - f1
        i0, i1 = f0.astype(np.int64), f1.astype(np.int64)
        ch = np.arange(C)
        tab = f.reshape(-1)
        out = 0
        for b0, b1 in itertools.product((0, 1), repeat=2):
            w = (t0 if b0 else 1 - t0) * (t1 if b1 else 1 - t1)
            out = out + tab[((i0 + b0) * n + (i1 + b1)) * C + ch] * w
        return out

    def step(u, rho):
        vel = sample(u, idx[..., None, :] - off)
        pos = (idx - vel * (DT * inv_h))[..., None, :]
        rho = sample(rho[..., None], pos)[..., 0]
        faces = idx[..., None, :] + off
        velf = sample(u, faces[..., None, :] - off)
        u = sample(u, faces - velf * (DT * inv_h) - off)
        rho_face = 0.5 * (rho + np.roll(rho, -1, 1))
        u = u.copy()
        u[..., 1] += DT * BUOY * rho_face
        uf = u * F
        div = sum((uf[..., a] - np.roll(uf[..., a], 1, a)) * inv_h for a in range(2))
        p = -div * inv_diag
        for _ in range(iterations - 1):
            nb = sum((F[..., a] * np.roll(p, -1, a) + np.roll(F[..., a] * p, 1, a)) * inv_h ** 2 for a in range(2))
            p = (nb - div) * inv_diag
        gp = np.stack([(np.roll(p, -1, a) - p) * inv_h for a in range(2)], -1)
        return (u - gp) * F, rho

    def once():
        u, rho = u0.astype(dtype), rho0.astype(dtype)
        for _ in range(steps):
            u, rho = step(u, rho)
        return u, rho
    return once


def torch_program(n, steps, iterations, backward, dtype="float32"):
    u0, rho0 = initial(n)
    tdt = getattr(torch, dtype)
    idx, off, F, inv_diag = (torch.tensor(a, dtype=tdt) for a in _consts(n))
    inv_h = float(n)

    def sample(f, pos):
        C = f.shape[-1]
        p0 = pos[..., 0].clamp(0, n - 1)
        p1 = pos[..., 1].clamp(0, n - 1)
        f0 = torch.floor(p0).clamp(max=n - 2)
        f1 = torch.floor(p1).clamp(max=n - 2)
        t0, t1 = p0 - f0, p1 - f1
        i0, i1 = f0.long(), f1.long()
        ch = torch.arange(C)
        tab = f.reshape(-1)
        out = 0
        for b0, b1 in itertools.product((0, 1), repeat=2):
            w = (t0 if b0 else 1 - t0) * (t1 if b1 else 1 - t1)
            out = out + tab[((i0 + b0) * n + (i1 + b1)) * C + ch] * w
        return out

    def step(u, rho):
        vel = sample(u, idx[..., None, :] - off)
        pos = (idx - vel * (DT * inv_h))[..., None, :]
        rho = sample(rho[..., None], pos)[..., 0]
        faces = idx[..., None, :] + off
        velf = sample(u, faces[..., None, :] - off)
        u = sample(u, faces - velf * (DT * inv_h) - off)
        rho_face = 0.5 * (rho + torch.roll(rho, -1, 1))
        u = u + torch.stack([torch.zeros_like(rho_face), DT * BUOY * rho_face], -1)
        uf = u * F
        div = sum((uf[..., a] - torch.roll(uf[..., a], 1, a)) * inv_h for a in range(2))
        p = -div * inv_diag
        for _ in range(iterations - 1):
            nb = sum((F[..., a] * torch.roll(p, -1, a) + torch.roll(F[..., a] * p, 1, a)) * inv_h ** 2
                     for a in range(2))
            p = (nb - div) * inv_diag
        gp = torch.stack([(torch.roll(p, -1, a) - p) * inv_h for a in range(2)], -1)
        return (u - gp) * F, rho

    def once():
        u = torch.tensor(u0, dtype=tdt, requires_grad=backward)
        r = torch.tensor(rho0, dtype=tdt, requires_grad=backward)
        with torch.set_grad_enabled(backward):
            uu, rr = u, r
            for _ in range(steps):
                uu, rr = step(uu, rr)
            if backward:
                ((rr ** 2).sum() + (uu ** 2).sum()).backward()
                return u.grad.numpy(), r.grad.numpy()
        return uu.detach().numpy(), rr.detach().numpy()
    return once


def check(n=24, steps=2, iterations=10):
    """The three programs agree (float64): forward with numpy and torch, gradients with torch."""
    a = diffsim_program(n, steps, iterations, False, "float64")()
    b = numpy_program(n, steps, iterations, "float64")()
    for x, y in zip(a, b):
        assert np.allclose(x, y, rtol=1e-9, atol=1e-10), "diffsim and numpy disagree"
    if torch is not None:
        ga = diffsim_program(n, steps, iterations, True, "float64")()
        gb = torch_program(n, steps, iterations, True, "float64")()
        for x, y in zip(ga, gb):
            assert np.allclose(x, y, rtol=1e-8, atol=1e-9), "diffsim and torch gradients disagree"
    return True


def _interleaved(programs, repeats):
    """Median seconds of each program, timed in rotation (so load changes hit all alike)."""
    for fn in programs.values():
        fn()
    ts = {k: [] for k in programs}
    for _ in range(repeats):
        for k, fn in programs.items():
            t0 = time.perf_counter()
            fn()
            ts[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in ts.items()}


def run(n=128, steps=1, iterations=40, repeats=5, dtype="float32"):
    """Rows: forward + backward vs PyTorch eager CPU; forward vs hand-written numpy and torch."""
    label = f"stable fluids {n}x{n} ({iterations} Jacobi)"
    progs = {"fb": diffsim_program(n, steps, iterations, True, dtype),
             "fwd": diffsim_program(n, steps, iterations, False, dtype),
             "np": numpy_program(n, steps, iterations, dtype)}
    if torch is not None:
        progs["tb"] = torch_program(n, steps, iterations, True, dtype)
        progs["tf"] = torch_program(n, steps, iterations, False, dtype)
    rows = []
    if torch is not None:
        # torch gets its faster setting: its default thread count, or one thread (like numpy);
        # on a loaded machine the default can be many times slower
        default = torch.get_num_threads()
        best = None
        for threads in sorted({default, 1}):
            torch.set_num_threads(threads)
            t = _interleaved(progs, repeats)
            if best is None or t["tb"] < best[0]["tb"]:
                best = (t, threads)
        torch.set_num_threads(default)
        t, threads = best
        fb, fwd, npf, tb, tf = t["fb"], t["fwd"], t["np"], t["tb"], t["tf"]
        rows.append(dict(workload=f"{label} fwd+bwd", diffsim_s=fb, baseline_s=tb, baseline="torch",
                         ratio=fb / tb, note=f"{dtype}, {steps} step(s); diffsim {fb * 1e3:.1f} ms, "
                                             f"torch {tb * 1e3:.1f} ms ({threads} thread(s))"))
        rows.append(dict(workload=f"{label} fwd", diffsim_s=fwd, baseline_s=tf, baseline="torch",
                         ratio=fwd / tf, note=f"torch {tf * 1e3:.1f} ms"))
    else:
        t = _interleaved(progs, repeats)
        fb, fwd, npf = t["fb"], t["fwd"], t["np"]
        rows.append(dict(workload=f"{label} fwd+bwd", diffsim_s=fb, baseline_s=None,
                         baseline="torch (not installed)", ratio=None, note=f"diffsim {fb * 1e3:.1f} ms"))
    rows.append(dict(workload=f"{label} fwd", diffsim_s=fwd, baseline_s=npf, baseline="numpy", ratio=fwd / npf,
                     note=f"numpy {npf * 1e3:.1f} ms; diffsim fwd+bwd / numpy fwd {fb / npf:.2f}"))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = p.parse_args(argv)
    check()
    rows = run(args.n, args.steps, args.iterations, args.repeats, args.dtype)
    for r in rows:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['workload']:<44} vs {r['baseline']:<22} ratio {ratio:>6}   {r['note']}")
    return rows


if __name__ == "__main__":
    main()
