"""Deform an icosphere into a target shape from its silhouettes (shape from silhouettes, after
SoftRas / PyTorch3D's mesh-fitting tutorial).

The target is a primitive (default: a box 1.4 x 1.0 x 0.8, tilted so that no view sees it
face-on; or a cylinder) rendered from ``--views`` cameras on a ring around it, slightly above
and below the equator. The model is an icosphere whose vertex offsets are optimized with Adam
so that its soft silhouettes (``render.silhouette``, SoftRas aggregation) match the targets:

    loss = mean (silhouette - target)^2 + w_lap * laplacian + w_edge * edge length

The uniform Laplacian keeps the surface smooth and the edge term keeps the triangles from
stretching. The score is the IoU of the hard silhouettes (``render.rasterize``) of the fitted
and the target mesh, averaged over the views.

    python examples/fit_mesh_to_silhouettes.py                 # 64 x 64, 12 views, 200 steps (IoU ~0.99)
    python examples/fit_mesh_to_silhouettes.py --size 32 --views 8 --iters 40 --save none

Images (examples/output/fit_mesh_to_silhouettes.png: targets, initial and final silhouettes,
and shaded renders of the result) need pillow; without it the script says so and carries on.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import numpy as np

try:
    import diffsim as ds
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import diffsim as ds
import diffsim.render as R

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "output", "fit_mesh_to_silhouettes.png")
DTYPE = ds.float64


def make_target(kind):
    """The target mesh: a tilted box or an upright cylinder."""
    if kind == "box":
        m = R.box((1.4, 1.0, 0.8), dtype=DTYPE)
        rot = R.axis_angle_to_matrix(ds.tensor([0.3, 0.5, 0.2], dtype=DTYPE))
        return m.with_verts(m.verts @ rot.transpose(0, 1))
    if kind == "cylinder":
        return R.cylinder(radius=0.6, height=1.5, segments=32, dtype=DTYPE)
    raise ValueError(f"make_target: kind must be 'box' or 'cylinder', got {kind!r}")


def make_cameras(n_views, size, distance=3.0):
    """n_views perspective cameras on a ring around the origin, alternately 25 degrees above and below."""
    az = 2 * np.pi * np.arange(n_views) / n_views
    el = np.where(np.arange(n_views) % 2 == 0, 0.45, -0.45)
    eye = distance * np.stack([np.cos(el) * np.sin(az), np.sin(el), -np.cos(el) * np.cos(az)], 1)
    Rm, T = R.look_at(ds.tensor(eye, dtype=DTYPE))
    return R.PerspectiveCamera(Rm, T, image_size=size, fov=45.0, near=0.5, far=10.0)


def hard_silhouettes(mesh, cam):
    """[B, H, W] bool masks from the z-buffer rasterizer."""
    return R.rasterize(cam.to_ndc(mesh.verts).detach(), mesh.faces_np, cam.image_size).mask.numpy()


def mean_iou(a, b):
    """Mean over views of the IoU of boolean masks [B, H, W]."""
    inter = (a & b).sum((1, 2))
    union = (a | b).sum((1, 2))
    return float(np.mean(inter / np.maximum(union, 1)))


def fit(target="box", views=12, size=64, iters=200, lr=0.02, sigma=None, subdivisions=2, w_lap=0.2,
        w_edge=0.02, seed=0, log=print, log_every=50):
    """Returns a dict: iou_before, iou_after, losses, target / initial / fitted meshes, cameras."""
    ds.manual_seed(seed)
    cam = make_cameras(views, size)
    tgt_mesh = make_target(target)
    sigma = sigma if sigma is not None else 0.3 * (2.0 / size) ** 2        # 0.3 pixel^2 (NDC units)
    with ds.no_grad():
        tgt = R.silhouette(tgt_mesh, cam, sigma=sigma)     # the same blur as the model's: an exact fit exists
    src = R.icosphere(subdivisions, radius=0.8, dtype=DTYPE)
    offs = ds.zeros(src.num_verts, 3, dtype=DTYPE, requires_grad=True)
    opt = ds.optim.Adam([offs], lr=lr)
    tgt_hard = hard_silhouettes(tgt_mesh, cam)
    iou_before = mean_iou(hard_silhouettes(src, cam), tgt_hard)
    losses = []
    t0 = time.time()
    for it in range(1, iters + 1):
        opt.zero_grad()
        v = src.verts + offs
        m = src.with_verts(v)
        sil = R.silhouette(m, cam, sigma=sigma)
        l_img = ((sil - tgt) ** 2).mean()
        loss = l_img + w_lap * R.laplacian_smoothing_loss(src, v) + w_edge * R.edge_length_loss(src, v)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if log and (it == 1 or it % log_every == 0 or it == iters):
            log(f"iter {it:4d}  loss {loss.item():.5f}  image {l_img.item():.5f}  ({time.time() - t0:.1f} s)")
    fitted = src.with_verts((src.verts + offs).detach())
    iou_after = mean_iou(hard_silhouettes(fitted, cam), tgt_hard)
    return dict(iou_before=iou_before, iou_after=iou_after, losses=losses, target=tgt_mesh, initial=src,
                fitted=fitted, cameras=cam)


def save_renders(res, path, n_show=4):
    """A grid: rows = target, initial, fitted silhouettes and the fitted mesh shaded; False without pillow."""
    if importlib.util.find_spec("PIL") is None:
        return False
    from diffsim.render.images import image_grid, save_image
    cam = res["cameras"]
    rows = [hard_silhouettes(res[k], cam)[:n_show].astype(float) for k in ("target", "initial", "fitted")]
    rows = [np.repeat(r[..., None], 3, -1) for r in rows]
    with ds.no_grad():
        light = [R.AmbientLight(intensity=0.3), R.DirectionalLight(ds.tensor([0.4, 0.8, -1.0], dtype=DTYPE))]
        shaded = R.shade_mesh(res["fitted"], cam, light, mode="hard").numpy()[:n_show, ..., :3]
    grid = image_grid(np.concatenate(rows + [shaded]), nrow=min(n_show, cam.R.shape[0]), padding=2, pad_value=0.5)
    save_image(grid, path)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="box", choices=["box", "cylinder"])
    p.add_argument("--views", type=int, default=12, help="number of silhouettes (8-20)")
    p.add_argument("--size", type=int, default=64, help="image size in pixels")
    p.add_argument("--iters", type=int, default=200, help="Adam steps")
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--subdivisions", type=int, default=2, help="icosphere level (2: 162 vertices)")
    p.add_argument("--w-lap", type=float, default=0.2, help="Laplacian smoothing weight")
    p.add_argument("--w-edge", type=float, default=0.02, help="edge-length weight")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=DEFAULT_OUT, help="where to save the renders ('none': no image)")
    a = p.parse_args(argv)
    res = fit(a.target, a.views, a.size, a.iters, a.lr, subdivisions=a.subdivisions, w_lap=a.w_lap,
              w_edge=a.w_edge, seed=a.seed, log_every=max(1, a.iters // 6))
    print(f"silhouette IoU (mean over {a.views} views): before {res['iou_before']:.3f}, "
          f"after {res['iou_after']:.3f}")
    if a.save.lower() != "none":
        if save_renders(res, a.save):
            print(f"renders saved to {a.save}")
        else:
            print("(pillow is not installed: no images; pip install pillow)")
    return res


if __name__ == "__main__":
    main()
