"""Reconstruct a coloured 3-D volume from multi-view renders (tomography / NeRF).

The target is two coloured Gaussian blobs (a red and a blue one) inside the cube [-1, 1]^3,
stored as a density grid [G, G, G] and a colour grid [G, G, G, 3]. ``render.render_volume``
(emission-absorption ray marching with trilinear lookups) renders it from ``--views`` cameras
on a ring around it (plus ``--test-views`` held-out cameras between them). Then two models
are fitted to the training images with Adam, by gradients through the renderer:

1. a voxel grid (NeRF without a network): density = softplus(raw), colour = sigmoid(raw);
2. a small neural field: FourierFeatures(3 -> 2m) + MLP -> (density, colour) at any point,
   trained on random batches of rays.

Both report PSNR on the held-out views before and after training, and the images (targets,
grid and field reconstructions of the held-out views) are saved side by side.

    python examples/volume_reconstruction.py                       # a minute or two on a CPU
    python examples/volume_reconstruction.py --grid 10 --res 12 --views 6 --samples 24 \\
        --iters 40 --field-iters 40 --out none

Output: examples/output/volume_reconstruction.png (needs pillow; without it the script says
so and carries on).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

try:
    import diffsim as ds
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import diffsim as ds
import diffsim.nn as nn
import diffsim.nn.functional as F
from diffsim import render

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "output", "volume_reconstruction.png")
DTYPE = ds.float32
BOUNDS = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
RADIUS = 3.0
NEAR, FAR = RADIUS - 1.75, RADIUS + 1.75            # the box lies within [near, far] from every camera


def target_volume(G):
    """The ground truth: density [G, G, G] and colour [G, G, G, 3] on the grid nodes."""
    c = np.linspace(-1.0, 1.0, G)
    z, y, x = np.meshgrid(c, c, c, indexing="ij")       # grid[d, h, w] is at (x_w, y_h, z_d)
    p = np.stack([x, y, z], -1)
    blobs = [((-0.35, 0.1, 0.0), 0.3, 8.0, (0.9, 0.2, 0.1)), ((0.35, -0.15, 0.2), 0.25, 10.0, (0.1, 0.3, 0.9))]
    dens = np.zeros(p.shape[:3])
    col = np.zeros(p.shape)
    for centre, r, peak, rgb in blobs:
        s = peak * np.exp(-((p - np.array(centre)) ** 2).sum(-1) / (2 * r * r))
        dens += s
        col += s[..., None] * np.array(rgb)
    col = col / np.maximum(dens, 1e-6)[..., None]
    col[dens < 1e-3] = 0.5
    return ds.tensor(dens, dtype=DTYPE), ds.tensor(col, dtype=DTYPE)


def cameras(n, res, offset=0.0):
    """n cameras on a ring of radius RADIUS around the y axis, elevations alternating +-25 degrees."""
    cams = []
    for k in range(n):
        az = 2 * math.pi * (k + offset) / n
        el = math.radians(25.0 if k % 2 == 0 else -20.0)
        eye = [RADIUS * math.cos(el) * math.sin(az), RADIUS * math.sin(el), -RADIUS * math.cos(el) * math.cos(az)]
        R, T = render.look_at(ds.tensor(eye, dtype=DTYPE))
        cams.append(render.PerspectiveCamera(R=R, T=T, image_size=res, fov=40.0, dtype=DTYPE))
    return cams


def all_rays(cams):
    """Rays of all cameras, origins and directions each [N_cams, H, W, 3]."""
    o, d = zip(*(c.rays() for c in cams))
    return ds.stack(o), ds.stack(d)


def render_grid(raw_d, raw_c, rays, n_samples, **kw):
    return render.render_volume(F.softplus(raw_d), ds.sigmoid(raw_c), bounds=BOUNDS, rays=rays, near=NEAR,
                                far=FAR, n_samples=n_samples, **kw).rgb


class NeuralField(nn.Module):
    """points [N, 3] -> (density [N] >= 0, colour [N, 3] in (0, 1)); zero outside the box."""

    def __init__(self, mapping_size=32, scale=1.5, hidden=64):
        super().__init__()
        self.ff = nn.FourierFeatures(3, mapping_size=mapping_size, scale=scale)
        self.mlp = nn.Sequential(nn.Linear(self.ff.out_features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 4))

    def forward(self, p):
        out = self.mlp(self.ff(p))
        inside = ((p.detach().abs() <= 1.0).all(-1)).to(p.dtype)
        return F.softplus(out[:, 0] - 2.0) * inside, ds.sigmoid(out[:, 1:])


def fit_grid(target, rays, G, n_samples, iters, lr, log, test):
    raw_d = ds.full((G, G, G), -3.0, dtype=DTYPE, requires_grad=True)
    raw_c = ds.zeros(G, G, G, 3, dtype=DTYPE, requires_grad=True)
    opt = ds.optim.Adam([raw_d, raw_c], lr=lr)
    losses = []
    start = time.time()
    for it in range(1, iters + 1):
        opt.zero_grad()
        loss = ((render_grid(raw_d, raw_c, rays, n_samples) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if it == 1 or it % max(iters // 5, 1) == 0 or it == iters:
            log(f"  grid  iter {it:4d}  loss {loss.item():.5f}  ({time.time() - start:.1f} s)")
    with ds.no_grad():
        pred = render_grid(raw_d, raw_c, test[0], n_samples)
    return losses, pred, (raw_d, raw_c)


def fit_field(target, rays, n_samples, iters, lr, batch, log, test, seed):
    ds.manual_seed(seed)
    net = NeuralField().to(DTYPE)
    opt = ds.optim.Adam(net.parameters(), lr=lr)
    o, d = (x.reshape(-1, 3) for x in rays)
    tgt = target.reshape(-1, 3)
    n = o.shape[0]
    rng = np.random.default_rng(seed)
    gen = ds.Generator().manual_seed(seed)
    losses = []
    start = time.time()
    for it in range(1, iters + 1):
        idx = ds.tensor(rng.choice(n, size=min(batch, n), replace=False), dtype=ds.int64)
        opt.zero_grad()
        out = render.render_volume(net, rays=(o[idx], d[idx]), near=NEAR, far=FAR, n_samples=n_samples,
                                   stratified=True, generator=gen)
        loss = ((out.rgb - tgt[idx]) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if it == 1 or it % max(iters // 5, 1) == 0 or it == iters:
            log(f"  field iter {it:4d}  loss {loss.item():.5f}  ({time.time() - start:.1f} s)")
    with ds.no_grad():
        pred = render.render_volume(net, rays=test[0], near=NEAR, far=FAR, n_samples=n_samples).rgb
    return losses, pred, net


def main(argv=None, log=print):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", type=int, default=20, help="grid nodes per axis (target and reconstruction)")
    p.add_argument("--res", type=int, default=24, help="image size (pixels per side)")
    p.add_argument("--views", type=int, default=12, help="training views")
    p.add_argument("--test-views", type=int, default=3, help="held-out views")
    p.add_argument("--samples", type=int, default=32, help="samples per ray")
    p.add_argument("--iters", type=int, default=150, help="Adam iterations for the voxel grid")
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate for the voxel grid")
    p.add_argument("--field-iters", type=int, default=200, help="Adam iterations for the neural field (0: skip)")
    p.add_argument("--field-lr", type=float, default=5e-3, help="Adam learning rate for the neural field")
    p.add_argument("--batch", type=int, default=512, help="rays per neural-field iteration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=DEFAULT_OUT, help="where to save the image ('none': no image)")
    a = p.parse_args(argv)

    dens, col = target_volume(a.grid)
    train_cams = cameras(a.views, a.res)
    test_cams = cameras(a.test_views, a.res, offset=0.5)
    rays, test_rays = all_rays(train_cams), all_rays(test_cams)
    with ds.no_grad():
        target = render.render_volume(dens, col, bounds=BOUNDS, rays=rays, near=NEAR, far=FAR,
                                      n_samples=a.samples).rgb                       # [V, H, W, 3]
        test_target = render.render_volume(dens, col, bounds=BOUNDS, rays=test_rays, near=NEAR, far=FAR,
                                           n_samples=a.samples).rgb
    test = (test_rays, test_target)
    res = {}
    log(f"target: {a.grid}^3 grid, {a.views} training + {a.test_views} held-out views of {a.res}x{a.res}, "
        f"{a.samples} samples per ray")

    with ds.no_grad():
        before = render_grid(ds.full((a.grid,) * 3, -3.0, dtype=DTYPE), ds.zeros(*(a.grid,) * 3, 3, dtype=DTYPE),
                             test_rays, a.samples)
    res["grid_psnr_before"] = render.psnr(before, test_target).item()
    losses, grid_pred, (raw_d, _) = fit_grid(target, rays, a.grid, a.samples, a.iters, a.lr, log, test)
    res["grid_losses"] = losses
    res["grid_psnr"] = render.psnr(grid_pred, test_target).item()
    with ds.no_grad():
        res["density_rel_error"] = ((F.softplus(raw_d) - dens).norm() / dens.norm()).item()
    log(f"voxel grid:   held-out PSNR {res['grid_psnr_before']:.2f} dB -> {res['grid_psnr']:.2f} dB, "
        f"density relative L2 error {res['density_rel_error']:.3f}")

    preds = [test_target, grid_pred]
    if a.field_iters > 0:
        ds.manual_seed(a.seed)
        with ds.no_grad():
            net0 = NeuralField().to(DTYPE)
            before = render.render_volume(net0, rays=test_rays, near=NEAR, far=FAR, n_samples=a.samples).rgb
        res["field_psnr_before"] = render.psnr(before, test_target).item()
        losses, field_pred, _ = fit_field(target, rays, a.samples, a.field_iters, a.field_lr, a.batch, log,
                                          test, a.seed)
        res["field_losses"] = losses
        res["field_psnr"] = render.psnr(field_pred, test_target).item()
        preds.append(field_pred)
        log(f"neural field: held-out PSNR {res['field_psnr_before']:.2f} dB -> {res['field_psnr']:.2f} dB")

    if a.out.lower() != "none":
        # rows: held-out views; columns: target, voxel grid, neural field
        tiles = ds.stack([ds.stack([p_[v] for p_ in preds]) for v in range(a.test_views)]).reshape(
            -1, a.res, a.res, 3)
        try:
            render.save_image(render.image_grid(tiles, nrow=len(preds), padding=1, pad_value=1.0), a.out)
            log(f"image saved to {a.out} (rows: held-out views; columns: target, voxel grid"
                f"{', neural field' if len(preds) > 2 else ''})")
            res["image"] = a.out
        except ImportError:
            log("(pillow is not installed: no image; pip install pillow)")
    return res


if __name__ == "__main__":
    main()
