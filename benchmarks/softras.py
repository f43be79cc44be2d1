"""W4 softras written with ``render.soft_rasterize``, against W4 op by op (diffsim, PyTorch eager).

Workload W4 of shared/benchmarks.md (float64 icosphere, 2 subdivisions: 162 vertices, 320
faces; perspective xs = 1.5 X / (Z + 3), ys = 1.5 Y / (Z + 3); 64 x 64 pixel centres;
sigma = 1e-4; silhouette 1 - exp(sum_j log(1 - D_j + 1e-8)); target = the sphere translated
by (0.2, 0, 0); loss = mean((I - I_target)^2); gradient w.r.t. the vertices [162, 3]) three
ways, forward and backward timed separately (medians of interleaved runs after a warm-up,
all in this process):

* diffsim ``render.soft_rasterize``: one custom op, tiled, faces culled per tile;
* diffsim op by op: dense [P, F, 3] tensors of primitive ops (the definition, no culling);
* PyTorch eager on the CPU, the same dense program (skipped if torch is not installed).

All must agree: loss to 1e-9 relative, gradients to 1e-6 of their largest entry
(soft_rasterize runs with ``clamp=False``, W4's formula exactly; it treats faces
culled from a tile -- D < 1e-8 there -- as D = 0, which changes numbers at that level
only). Peak memory: tracemalloc peak of soft_rasterize forward + backward at 256 x 256 with
a 5 120-face icosphere (4 subdivisions); the criterion is < 2 GiB.

    python benchmarks/softras.py                     # W4 + 256x256 x 5120 memory
    python benchmarks/softras.py --repeats 3 --big 0 # W4 only, quicker
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (HERE, os.path.dirname(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import diffsim as ds  # noqa: E402
import diffsim.render as render  # noqa: E402

SIGMA = 1e-4
FOCAL = 1.5
SHIFT = 0.2
LOSS_RTOL = 1e-9
GRAD_TOL = 1e-6
MEM_LIMIT_MIB = 2048.0


def _screen(v, shift=0.0):
    """W4's projection with diffsim ops: verts [V, 3] -> screen [V, 3] = (xs, ys, Z + 3)."""
    X, Y, Z = v[:, 0] + shift, v[:, 1], v[:, 2]
    return ds.stack([FOCAL * X / (Z + 3), FOCAL * Y / (Z + 3), Z + 3], -1)


def _pixels(n):
    p = -1 + (2 * np.arange(n) + 1) / n
    PY, PX = np.meshgrid(p, p, indexing="ij")
    return PX.ravel(), PY.ravel()


# ---------------------------------------------------------------- diffsim, soft_rasterize

def w4_render(verts, faces, size, target=None, sigma=SIGMA, tile=8):
    img = render.soft_rasterize(_screen(verts), faces, size, sigma=sigma, tile=tile, clamp=False)
    return img if target is None else ((img - target) ** 2).mean()


# ---------------------------------------------------------------- diffsim op by op (dense)

def w4_dense(verts, faces, size, target=None, sigma=SIGMA):
    s = _screen(verts)
    F = faces.shape[0]
    fi = ds.tensor(faces.reshape(-1))
    ax = s[:, 0].index_select(0, fi).reshape(1, F, 3)
    ay = s[:, 1].index_select(0, fi).reshape(1, F, 3)
    ex, ey = ds.roll(ax, -1, 2) - ax, ds.roll(ay, -1, 2) - ay
    px, py = (ds.tensor(a).reshape(-1, 1, 1) for a in _pixels(size))
    apx, apy = px - ax, py - ay
    t = ((apx * ex + apy * ey) / (ex * ex + ey * ey)).clamp(0, 1)
    rx, ry = apx - t * ex, apy - t * ey
    d2 = (rx * rx + ry * ry).amin(-1)
    cr = ex * apy - ey * apx
    inside = ds.logical_or((cr > 0).all(-1), (cr < 0).all(-1))
    one = ds.ones((), dtype=ds.float64)
    sgn = ds.where(inside, one, -one)
    D = (sgn * d2 / sigma).sigmoid()
    img = 1 - ((1 - D + 1e-8).log().sum(1)).exp()
    return img if target is None else ((img - target) ** 2).mean()


# ---------------------------------------------------------------- PyTorch eager (dense)

def w4_torch(torch, verts, faces, size, target=None, sigma=SIGMA, shift=0.0):
    X, Y, Z = verts[:, 0] + shift, verts[:, 1], verts[:, 2]
    sx, sy = FOCAL * X / (Z + 3), FOCAL * Y / (Z + 3)
    F = faces.shape[0]
    fi = torch.as_tensor(faces.reshape(-1))
    ax, ay = sx[fi].reshape(1, F, 3), sy[fi].reshape(1, F, 3)
    ex, ey = torch.roll(ax, -1, 2) - ax, torch.roll(ay, -1, 2) - ay
    px, py = (torch.as_tensor(a).reshape(-1, 1, 1) for a in _pixels(size))
    apx, apy = px - ax, py - ay
    t = ((apx * ex + apy * ey) / (ex * ex + ey * ey)).clamp(0, 1)
    rx, ry = apx - t * ex, apy - t * ey
    d2 = (rx * rx + ry * ry).amin(-1)
    cr = ex * apy - ey * apx
    inside = (cr > 0).all(-1) | (cr < 0).all(-1)
    sgn = torch.where(inside, 1.0, -1.0).to(verts.dtype)
    D = torch.sigmoid(sgn * d2 / sigma)
    img = 1 - torch.exp(torch.log(1 - D + 1e-8).sum(1))
    return img if target is None else ((img - target) ** 2).mean()




def _timed(fwd, bwd):
    t0 = time.perf_counter()
    loss = fwd()
    t1 = time.perf_counter()
    g = bwd(loss)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, loss, g


def run(size=64, subdivisions=2, repeats=5, warmup=1, big=256, big_subdivisions=4, tile=8, torch_threads=None):
    """Time W4 three ways and measure the 256x256 peak memory; returns benchmark rows
    (see benchmarks/run.py). Raises AssertionError if the implementations disagree."""
    mesh = render.icosphere(subdivisions, dtype=ds.float64)
    faces = mesh.faces_np
    v0 = mesh.verts.detach()
    # each program makes its own target (no grad); soft_rasterize's rows run top-down (row 0 at
    # y = +1), the dense programs' bottom-up: the same pixels in another order, the same mean
    shifted = v0 + ds.tensor([SHIFT, 0.0, 0.0], dtype=ds.float64)
    with ds.no_grad():
        tgt_dense = w4_dense(shifted, faces, size)
        tgt_img = w4_render(shifted, faces, size, tile=tile)

    def ds_prog(fn, tgt):
        v = v0.clone().requires_grad_(True)

        def fwd():
            return fn(v, faces, size, tgt)

        def bwd(loss):
            v.grad = None
            loss.backward()
            return v.grad.numpy()
        return fwd, bwd

    progs = {"soft_rasterize": ds_prog(lambda v, f, n, t: w4_render(v, f, n, t, tile=tile), tgt_img),
             "op-by-op": ds_prog(w4_dense, tgt_dense)}
    try:
        import torch
        if torch_threads:
            torch.set_num_threads(torch_threads)
        vt = torch.tensor(v0.numpy(), requires_grad=True)
        with torch.no_grad():
            ttgt = w4_torch(torch, vt, faces, size, shift=SHIFT)

        def tfwd():
            return w4_torch(torch, vt, faces, size, ttgt)

        def tbwd(loss):
            vt.grad = None
            loss.backward()
            return vt.grad.numpy().copy()
        progs["torch eager"] = (tfwd, tbwd)
    except ImportError:
        torch = None
    times = {k: ([], []) for k in progs}
    results = {}
    for it in range(warmup + repeats):
        for name, (fwd, bwd) in progs.items():
            tf, tb, loss, g = _timed(fwd, bwd)
            if it >= warmup:
                times[name][0].append(tf)
                times[name][1].append(tb)
            results[name] = (float(loss.item()), g)
    ref_loss, ref_g = results["op-by-op"]
    worst = [0.0, 0.0]
    for name, (loss, g) in results.items():
        lerr = abs(loss - ref_loss) / abs(ref_loss)
        if lerr > LOSS_RTOL:
            raise AssertionError(f"softras: {name} loss {loss!r} differs from op-by-op {ref_loss!r}")
        err = np.abs(g - ref_g).max() / np.abs(ref_g).max()
        if err > GRAD_TOL:
            raise AssertionError(f"softras: {name} gradient differs from op-by-op by {err:.3g} (relative to max)")
        worst = [max(worst[0], lerr), max(worst[1], err)]
    med = {k: (statistics.median(a), statistics.median(b)) for k, (a, b) in times.items()}
    note = (f"loss {ref_loss:.6g} (rel diff <= {worst[0]:.1e}), grad diff <= {worst[1]:.1e} of max; "
            f"{size}x{size}, {faces.shape[0]} faces, tile {tile}")
    rows = []
    for j, phase in enumerate(("fwd", "bwd")):
        d = med["soft_rasterize"][j]
        for base in ("torch eager", "op-by-op"):
            if base in med:
                b = med[base][j]
                rows.append(dict(workload=f"W4 softras {phase}", diffsim_s=d, baseline_s=b,
                                 baseline=f"{base} (dense)", ratio=d / b, note=note))
    if torch is None:
        rows.append(dict(workload="W4 softras", diffsim_s=None, baseline_s=None, baseline="torch eager",
                         ratio=None, note="skipped: torch not installed"))
    if big:
        rows += _big_rows(big, big_subdivisions, tile)
    return rows


def _big_rows(size, subdivisions, tile):
    mesh = render.icosphere(subdivisions, dtype=ds.float64)
    v = mesh.verts.detach().clone().requires_grad_(True)

    def fb():
        img = w4_render(v, mesh.faces_np, size, sigma=SIGMA, tile=tile)
        (img * img).mean().backward()

    t0 = time.perf_counter()
    fb()
    t = time.perf_counter() - t0
    v.grad = None
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fb()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    mib = peak / 2 ** 20
    return [dict(workload=f"softras {size}x{size} x {mesh.num_faces} faces peak mem", diffsim=mib,
                 baseline_value=MEM_LIMIT_MIB, unit="MiB", baseline="limit (2 GiB)", ratio=mib / MEM_LIMIT_MIB,
                 note=f"fwd+bwd {t:.2f} s (untraced); {'OK' if mib < MEM_LIMIT_MIB else 'OVER LIMIT'}")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--big", type=int, default=256, help="image side for the peak-memory run (0: skip)")
    p.add_argument("--tile", type=int, default=8)
    p.add_argument("--torch-threads", type=int, default=None)
    a = p.parse_args(argv)
    from run import format_table
    print(format_table(run(size=a.size, repeats=a.repeats, big=a.big, tile=a.tile, torch_threads=a.torch_threads)))


if __name__ == "__main__":
    main()
