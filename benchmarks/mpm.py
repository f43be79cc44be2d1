"""MLS-MPM step, 8 192 particles on a 128 x 128 grid (2-D), forward + backward.

An elastic (Neo-Hookean) block of 8 192 particles (64 x 128, four per cell) falls under
gravity on a 128^2 grid (sticky walls, float64). The workload is ``steps`` MPM steps
(default 10) followed by the gradient of ``sum(w * x_final)`` w.r.t. the initial positions
``x0 [P, 2]``, velocities ``v0 [P, 2]`` and the per-particle Young's modulus ``E [P]``,
three ways, timed in the same process (medians of interleaved runs after a warm-up):

* diffsim ``physics.MPM`` rolled out by ``physics.simulate`` (P2G and G2P are single ops
  with hand-written backward);
* the same algorithm in PyTorch eager on the CPU (``index_add`` scatter, gather, autograd),
  with torch's default thread count and with one thread (numpy, hence diffsim, runs these
  ops on one thread); skipped if torch is not installed;
* the forward alone in hand-written numpy (``np.bincount`` scatter), no gradient.

diffsim and torch must agree (loss and gradients to 1e-8 relative).

    python benchmarks/mpm.py
    python benchmarks/mpm.py --steps 5 --repeats 3
    python benchmarks/mpm.py --steady-malloc     # glibc mmap threshold fixed (all variants)
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (HERE, os.path.dirname(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import diffsim as ds  # noqa: E402
from diffsim import physics  # noqa: E402

N_GRID = 128
DT = 2e-4
E0, NU, RHO = 400.0, 0.2, 1.0
GRAVITY = (0.0, -9.8)
AGREE_RTOL = 1e-8


def make_case(n_particles=8192, n_grid=N_GRID, seed=0):
    """Initial positions (a block of ``n_particles`` on a dx/2 lattice), velocities, E, and
    the loss weights, as numpy arrays."""
    dx = 1.0 / n_grid
    ny = int(round(np.sqrt(n_particles / 2)))
    nx = n_particles // ny
    X, Y = np.meshgrid((np.arange(nx) + 0.5) * dx / 2, (np.arange(ny) + 0.5) * dx / 2, indexing="ij")
    x0 = np.stack([X.ravel() + 0.2, Y.ravel() + 0.3], 1)[:n_particles]
    rng = np.random.default_rng(seed)
    v0 = 0.1 * rng.standard_normal(x0.shape)
    E = E0 * (1.0 + 0.1 * rng.random(len(x0)))
    w = rng.standard_normal(x0.shape)
    return dict(x0=x0, v0=v0, E=E, w=w, n_grid=n_grid, dx=dx, vol=(dx / 2) ** 2)


# ------------------------------------------------------------------ diffsim

def make_diffsim(case, steps):
    body = physics.MPM(ds.tensor(case["x0"], dtype=ds.float64), n_grid=case["n_grid"], E=1.0, nu=NU,
                       density=RHO, gravity=GRAVITY, boundary="sticky")
    integ = physics.MPMIntegrator()
    w = ds.tensor(case["w"], dtype=ds.float64)

    def run():
        x0 = ds.tensor(case["x0"], dtype=ds.float64, requires_grad=True)
        v0 = ds.tensor(case["v0"], dtype=ds.float64, requires_grad=True)
        E = ds.tensor(case["E"], dtype=ds.float64, requires_grad=True)
        body.E = E
        final = physics.simulate(body, body.initial_state(x0, v0), steps, DT, integrator=integ)
        loss = (final.x * w).sum()
        loss.backward()
        return loss.item(), x0.grad.numpy(), v0.grad.numpy(), E.grad.numpy()
    return run


# ------------------------------------------------------------------ torch

def make_torch(case, steps):
    """The same algorithm in PyTorch eager (CPU, float64); None without torch."""
    try:
        import torch
    except ImportError:
        return None
    n, dx, vol = case["n_grid"], case["dx"], case["vol"]
    inv_dx = 1.0 / dx
    G = n * n
    offs = torch.tensor(list(itertools.product(range(3), repeat=2)), dtype=torch.float64)     # [9, 2]
    offs_i = offs.long()
    eye = torch.eye(2, dtype=torch.float64)
    g = torch.tensor(GRAVITY, dtype=torch.float64)
    idx = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij"), -1).reshape(G, 2)
    lo, hi = idx < 3, idx >= n - 3
    w_loss = torch.from_numpy(case["w"])
    m = RHO * vol

    def step(x, v, C, F, mu, la):
        Fn = F + DT * (C @ F)
        J = Fn[:, 0, 0] * Fn[:, 1, 1] - Fn[:, 0, 1] * Fn[:, 1, 0]
        tau = mu[:, None, None] * (Fn @ Fn.transpose(1, 2) - eye) + (la * torch.log(J))[:, None, None] * eye
        A = tau * (-DT * vol * 4 * inv_dx * inv_dx) + C * m
        base = torch.floor(x.detach() * inv_dx - 0.5)
        fx = x * inv_dx - base
        Wd = torch.stack([0.5 * (1.5 - fx) ** 2, 0.75 - (fx - 1) ** 2, 0.5 * (fx - 0.5) ** 2], 1)  # [P,3,2]
        w = Wd[:, offs_i[:, 0], 0] * Wd[:, offs_i[:, 1], 1]                                      # [P,9]
        dpos = (offs[None] - fx[:, None, :]) * dx                                                # [P,9,2]
        bi = base.long()
        flat = ((bi[:, None, 0] + offs_i[None, :, 0]) * n + bi[:, None, 1] + offs_i[None, :, 1]).reshape(-1)
        mom = m * v[:, None, :] + torch.einsum("pab,psb->psa", A, dpos)
        gmv = torch.zeros(G, 2, dtype=torch.float64).index_add(0, flat, (mom * w[..., None]).reshape(-1, 2))
        gm = torch.zeros(G, dtype=torch.float64).index_add(0, flat, (w * m).reshape(-1))
        has = gm > 0
        gv = gmv / torch.where(has, gm, torch.ones_like(gm))[:, None] + DT * g
        vd = gv.detach()
        into = ((lo & (vd < 0)) | (hi & (vd > 0))).any(1)
        gv = gv * (~into)[:, None].to(gv.dtype)
        vs = gv[flat].reshape(-1, 9, 2)
        wv = vs * w[..., None]
        vn = wv.sum(1)
        Cn = torch.einsum("psa,psb->pab", wv, dpos) * (4 * inv_dx * inv_dx)
        return x + DT * vn, vn, Cn, Fn

    def run():
        x0 = torch.from_numpy(case["x0"]).clone().requires_grad_(True)
        v0 = torch.from_numpy(case["v0"]).clone().requires_grad_(True)
        E = torch.from_numpy(case["E"]).clone().requires_grad_(True)
        mu = E / (2 * (1 + NU))
        la = E * NU / ((1 + NU) * (1 - 2 * NU))
        P = x0.shape[0]
        x, v = x0, v0
        C = torch.zeros(P, 2, 2, dtype=torch.float64)
        F = eye.expand(P, 2, 2).clone()
        for _ in range(steps):
            x, v, C, F = step(x, v, C, F, mu, la)
        loss = (x * w_loss).sum()
        loss.backward()
        return loss.item(), x0.grad.numpy(), v0.grad.numpy(), E.grad.numpy()
    run.threads = torch.get_num_threads()
    run.version = torch.__version__
    return run


# ------------------------------------------------------------------ numpy forward

def make_numpy(case, steps):
    """The forward alone in hand-written numpy; returns the loss."""
    n, dx, vol = case["n_grid"], case["dx"], case["vol"]
    inv_dx = 1.0 / dx
    G = n * n
    offs = np.array(list(itertools.product(range(3), repeat=2)), np.float64)
    offs_i = offs.astype(np.int64)
    eye = np.eye(2)
    g = np.array(GRAVITY)
    idx = np.stack(np.unravel_index(np.arange(G), (n, n)), -1)
    lo, hi = idx < 3, idx >= n - 3
    m = RHO * vol
    mu = case["E"] / (2 * (1 + NU))
    la = case["E"] * NU / ((1 + NU) * (1 - 2 * NU))

    def run():
        x, v = case["x0"].copy(), case["v0"].copy()
        P = x.shape[0]
        C = np.zeros((P, 2, 2))
        F = np.broadcast_to(eye, (P, 2, 2)).copy()
        for _ in range(steps):
            F = F + DT * (C @ F)
            J = F[:, 0, 0] * F[:, 1, 1] - F[:, 0, 1] * F[:, 1, 0]
            tau = mu[:, None, None] * (F @ F.transpose(0, 2, 1) - eye) + (la * np.log(J))[:, None, None] * eye
            A = tau * (-DT * vol * 4 * inv_dx * inv_dx) + C * m
            base = np.floor(x * inv_dx - 0.5)
            fx = x * inv_dx - base
            Wd = np.stack([0.5 * (1.5 - fx) ** 2, 0.75 - (fx - 1) ** 2, 0.5 * (fx - 0.5) ** 2], 1)
            w = Wd[:, offs_i[:, 0], 0] * Wd[:, offs_i[:, 1], 1]
            dpos = (offs[None] - fx[:, None, :]) * dx
            bi = base.astype(np.int64)
            flat = ((bi[:, None, 0] + offs_i[None, :, 0]) * n + bi[:, None, 1] + offs_i[None, :, 1]).ravel()
            mom = (m * v[:, None, :] + np.einsum("pab,psb->psa", A, dpos)) * w[..., None]
            gmv = np.stack([np.bincount(flat, mom[..., k].ravel(), G) for k in range(2)], 1)
            gm = np.bincount(flat, (w * m).ravel(), G)
            gv = gmv / np.where(gm > 0, gm, 1.0)[:, None] + DT * g
            into = ((lo & (gv < 0)) | (hi & (gv > 0))).any(1)
            gv[into] = 0.0
            vs = gv[flat].reshape(P, 9, 2)
            wv = vs * w[..., None]
            v = wv.sum(1)
            C = np.einsum("psa,psb->pab", wv, dpos) * (4 * inv_dx * inv_dx)
            x = x + DT * v
        return float((x * case["w"]).sum())
    return run


# ------------------------------------------------------------------ measure

def _agree(r, ref):
    ok = abs(r[0] - ref[0]) <= AGREE_RTOL * abs(ref[0])
    return ok and all(np.abs(a - b).max() <= AGREE_RTOL * np.abs(b).max() for a, b in zip(r[1:], ref[1:]))


def measure(n_particles=8192, n_grid=N_GRID, steps=10, repeats=5):
    """Medians (s) of the variants and their results; raises if diffsim and torch disagree."""
    case = make_case(n_particles, n_grid)
    variants = {"diffsim": make_diffsim(case, steps), "numpy_fwd": make_numpy(case, steps)}
    tf = make_torch(case, steps)
    if tf is not None:
        import torch
        variants["torch"] = tf

        def torch_1thread():
            n = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return tf()
            finally:
                torch.set_num_threads(n)
        variants["torch_1thread"] = torch_1thread
    results, times = {}, {k: [] for k in variants}
    for k, fn in variants.items():
        results[k] = fn()
    for _ in range(repeats):
        for k, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    ref = results["diffsim"]
    if not np.isclose(results["numpy_fwd"], ref[0], rtol=AGREE_RTOL):
        raise AssertionError(f"mpm: numpy forward loss {results['numpy_fwd']!r} differs from diffsim's {ref[0]!r}")
    if tf is not None and not (_agree(results["torch"], ref) and _agree(results["torch_1thread"], ref)):
        raise AssertionError(f"mpm: torch disagrees with diffsim: loss {results['torch'][0]!r} vs {ref[0]!r}, max "
                             f"|dx0| diff {np.abs(results['torch'][1] - ref[1]).max():.3e}")
    out = dict(steps=steps, n_particles=case["x0"].shape[0], n_grid=n_grid,
               times={k: statistics.median(v) for k, v in times.items()})
    if tf is not None:
        out["torch_info"] = f"torch {tf.version}, {tf.threads} threads"
    return out


def rows_from(r):
    t = r["times"]
    wl = f"MPM 2-D P={r['n_particles']} grid={r['n_grid']}^2 T={r['steps']} fwd+bwd"
    rows = []
    if "torch" in t:
        rows.append(dict(workload=wl, diffsim_s=t["diffsim"], baseline_s=t["torch"], baseline="torch eager CPU",
                         ratio=t["diffsim"] / t["torch"], note=r.get("torch_info", "") + "; loss and grads agree"))
        rows.append(dict(workload=wl, diffsim_s=t["diffsim"], baseline_s=t["torch_1thread"],
                         baseline="torch eager CPU, 1 thread", ratio=t["diffsim"] / t["torch_1thread"],
                         note="diffsim's numpy runs on one thread too"))
    rows.append(dict(workload=wl, diffsim_s=t["diffsim"], baseline_s=t["numpy_fwd"], baseline="numpy forward only",
                     ratio=t["diffsim"] / t["numpy_fwd"], note="diffsim includes the backward"))
    return rows


def run(n_particles=8192, n_grid=N_GRID, steps=10, repeats=5):
    """For ``benchmarks/run.py``: rows (diffsim vs torch eager, vs numpy forward)."""
    return rows_from(measure(n_particles, n_grid, steps, repeats))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--particles", type=int, default=8192)
    p.add_argument("--n-grid", type=int, default=N_GRID)
    p.add_argument("--steps", type=int, default=10, help="MPM steps per timed rollout")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steady-malloc", action="store_true",
                   help="fix glibc's mmap threshold first (large_arrays.steady_malloc; applies to every variant)")
    a = p.parse_args(argv)
    if a.steady_malloc:
        from large_arrays import steady_malloc
        if not steady_malloc():
            print("# --steady-malloc: mallopt not available (not glibc); ignored")
    r = measure(a.particles, a.n_grid, a.steps, a.repeats)
    rows = rows_from(r)
    print(f"# MPM 2-D, {r['n_particles']} particles, {a.n_grid}^2 grid, {a.steps} steps, float64, forward + backward")
    for k, s in r["times"].items():
        print(f"{k:12s}{s * 1e3:10.1f} ms   ({s / a.steps * 1e3:.2f} ms/step)")
    for row in rows:
        print(f"{row['workload']:50s} {row['diffsim_s']:.4g} s vs {row['baseline_s']:.4g} s ({row['baseline']}): "
              f"ratio {row['ratio']:.3f}  {row['note']}")
    return rows


if __name__ == "__main__":
    main()
