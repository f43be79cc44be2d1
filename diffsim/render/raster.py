"""Hard (z-buffer) rasterization and attribute interpolation -- the sigma -> 0 limit of SoftRas.

Two small stages, after nvdiffrast's ``rasterize`` / ``interpolate``:

* ``rasterize(verts, faces, image_size)`` -> ``Fragments``: for every pixel the index of the
  nearest face covering its centre (-1: background), that face's depth there and the
  barycentric coordinates of the pixel centre in it. Not differentiable (integer coverage);
  computed in vectorized numpy/cupy on detached values.
* ``interpolate(attributes, faces, fragments)`` -> per-pixel attributes, differentiable
  w.r.t. the attributes (the fragments are constants): vertex colours, normals, world
  positions, uvs ...

Screen space and pixel centres are those of ``softras.py``: vertices ``[B?, V, 3]`` hold
(x_ndc, y_ndc, depth) (``camera.to_ndc`` makes them) and pixel (i, j) samples the NDC point
``x = -1 + (2 j + 1) / W``, ``y = 1 - (2 i + 1) / H``. A pixel is covered by a triangle when
its centre is inside or on the boundary (orientation independent; degenerate triangles cover
nothing) and the interpolated depth is > ``near``; the smallest depth wins.

Barycentrics: screen-space (affine in NDC, as ``soft_rasterize`` interpolates) by default;
``perspective_correct=True`` divides by the corner depths first (the right weights for a
perspective camera, where depth = view z: then interpolating world positions gives the 3-D
point seen through the pixel centre) and the depth is ``1 / sum_k(b_k / z_k)``.

Tiling and culling as ``soft_rasterize``: pixels in ``tile x tile`` blocks, a face tested only
in the tiles its screen bounding box overlaps; memory O(tile^2 * faces per tile).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

import diffsim as ds
from diffsim.autodiff.backend import get_xp

from .softras import _pixel_centres, _tile_faces, image_size_hw

__all__ = ["Fragments", "rasterize", "interpolate"]


class Fragments(NamedTuple):
    """Output of ``rasterize``; every field is a Tensor with no gradient.

    face_index [B, H, W] int64: index into ``faces`` of the visible face, -1 for background.
    depth [B, H, W]: depth of the visible face at the pixel centre (-1 for background).
    bary [B, H, W, 3]: barycentric coordinates of the pixel centre in that face (sum to 1;
    0 for background)."""
    face_index: ds.Tensor
    depth: ds.Tensor
    bary: ds.Tensor

    @property
    def mask(self):
        """Coverage [B, H, W] bool: face_index >= 0 (the hard silhouette)."""
        return self.face_index >= 0


def _bad(op, msg):
    return ValueError(f"{op}: {msg}")


def _check_faces(faces, V, op, shape):
    f = faces.detach()._data if isinstance(faces, ds.Tensor) else np.asarray(faces)   # numpy or cupy
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] == 0:
        raise _bad(op, "faces must have shape [F, 3] with F > 0 (an empty mesh cannot be rendered), got "
                       f"{list(f.shape)}")
    if f.dtype.kind not in "iu":
        raise _bad(op, f"faces must be integers, got dtype {f.dtype}")
    fmin, fmax = int(f.min()), int(f.max())
    if fmin < 0 or fmax >= V:
        raise _bad(op, f"faces [{f.shape[0]}, 3] index vertices in [{fmin}, {fmax}] but the vertices have "
                       f"shape {shape}; indices must be in [0, {V - 1}]")
    return f.astype(np.int64)


def _raster_one(xp, v, faces, H, W, tile, near, perspective_correct, fi, dep, bar):
    xs, ys = _pixel_centres(xp, H, W, v.dtype)
    fv = v[faces]                                          # [F, 3, 3]
    ax, ay = fv[:, :, 0], fv[:, :, 1]
    area = (ax[:, 1] - ax[:, 0]) * (ay[:, 2] - ay[:, 0]) - (ax[:, 2] - ax[:, 0]) * (ay[:, 1] - ay[:, 0])
    ok = area != 0
    if perspective_correct:
        ok = ok & (fv[:, :, 2] > 0).all(1)                 # 1/z weights need positive corner depths
    lo, hi = fv[..., :2].min(1), fv[..., :2].max(1)
    for i0, i1, j0, j1, idx in _tile_faces(xp, lo, hi, xs, ys, H, W, tile, ok):
        if int(idx.shape[0]) == 0:
            continue
        py, px = (a.reshape(-1) for a in xp.meshgrid(ys[i0:i1], xs[j0:j1], indexing="ij"))
        bx = ax[idx][None] - px[:, None, None]         # corner - pixel, [P, n, 3]
        by = ay[idx][None] - py[:, None, None]
        Ak = xp.roll(bx, -1, 2) * xp.roll(by, -2, 2) - xp.roll(by, -1, 2) * xp.roll(bx, -2, 2)
        lam = Ak / area[idx][None, :, None]            # signed sub-areas / signed area: >= 0 inside
        inside = (lam >= 0).all(2)
        z = fv[idx, :, 2][None]                        # [1, n, 3]
        if perspective_correct:
            w = lam / z
            s = w.sum(2, keepdims=True)
            s = xp.where(s > 0, s, 1.0)
            lam = w / s
            depth = 1.0 / s[..., 0]
        else:
            depth = (lam * z).sum(2)
        depth = xp.where(inside & (depth > near), depth, xp.inf)     # [P, n]
        best = depth.argmin(1)                         # [P]
        P = best.shape[0]
        dbest = depth[xp.arange(P), best]
        hit = xp.isfinite(dbest)
        shape = (i1 - i0, j1 - j0)
        fi[i0:i1, j0:j1] = xp.where(hit, idx[best], -1).reshape(shape)
        dep[i0:i1, j0:j1] = xp.where(hit, dbest, -1.0).reshape(shape)
        bar[i0:i1, j0:j1] = xp.where(hit[:, None], lam[xp.arange(P), best], 0.0).reshape(shape + (3,))


def rasterize(verts, faces, image_size, near=0.0, perspective_correct=False, tile=16):
    """Z-buffer rasterization of screen-space triangles.

    verts: [B, V, 3] or [V, 3] (x_ndc, y_ndc, depth) per vertex, a Tensor or array (its values
    only are used: no gradient flows through rasterization).
    faces: [F, 3] integer vertex indices (array, list or int Tensor), F > 0.
    image_size: int or (H, W).
    near: fragments with depth <= near are discarded (0: everything in front of the camera).
    perspective_correct: barycentrics with 1/depth weighting (module docstring); the default
    False gives screen-space barycentrics, as ``soft_rasterize`` uses. With it, faces with a
    corner at depth <= 0 are skipped (there is no clipping against the near plane).
    tile: pixels per tile side for the bounding-box culling.

    Returns ``Fragments(face_index [B, H, W] int64 (-1 background), depth [B, H, W] (-1
    background), bary [B, H, W, 3])``; always with the leading B (B = 1 for [V, 3] verts).
    """
    op = "rasterize"
    if isinstance(verts, ds.Tensor):
        if not verts.is_floating_point():
            raise _bad(op, f"verts must be floating point, got {verts.dtype}")
        device = verts.device
        v = verts.detach().numpy() if device.type == "cpu" else verts.detach()._data
    else:
        device = None
        v = np.asarray(verts, dtype=float)
    shape = list(v.shape)
    if v.ndim == 2:
        v = v[None]
    if v.ndim != 3 or v.shape[-1] != 3 or v.shape[1] == 0:
        raise _bad(op, f"verts must have shape [B, V, 3] or [V, 3] with V > 0, got {shape}")
    xp = get_xp(v)
    if not bool(xp.isfinite(v).all()):
        raise _bad(op, f"verts {shape} contain NaN or inf")
    f = _check_faces(faces, v.shape[1], op, shape)
    H, W = image_size_hw(image_size, op)
    if int(tile) < 1:
        raise _bad(op, f"tile must be >= 1, got {tile}")
    fx = f if xp is np else xp.asarray(f)
    B = v.shape[0]
    fi = xp.full((B, H, W), -1, dtype=np.int64)
    dep = xp.full((B, H, W), -1.0, dtype=v.dtype)
    bar = xp.zeros((B, H, W, 3), dtype=v.dtype)
    for b in range(B):
        _raster_one(xp, v[b], fx, H, W, int(tile), float(near), bool(perspective_correct), fi[b], dep[b], bar[b])
    kw = {} if device is None else dict(device=device)
    return Fragments(ds.tensor(fi, **kw), ds.tensor(dep, **kw), ds.tensor(bar, **kw))


def interpolate(attributes, faces, fragments):
    """Per-pixel attributes from per-vertex ones: ``out[b, i, j] = sum_k bary[b, i, j, k] *
    attributes[b, faces[face_index[b, i, j], k]]`` (0 on background pixels).

    attributes: [V, C] (shared by the batch) or [B, V, C] float Tensor -- differentiable.
    faces: [F, 3] integer vertex indices, the ones given to ``rasterize``.
    fragments: ``Fragments`` from ``rasterize`` (constants: no gradient w.r.t. the
    barycentrics or the coverage).
    Returns [B, H, W, C]. Built from gather (``index_select``) and elementwise ops, so it is
    differentiable to any order w.r.t. ``attributes``."""
    op = "interpolate"
    if not isinstance(fragments, Fragments):
        raise TypeError(f"{op}: fragments must be the Fragments returned by rasterize, got {type(fragments).__name__}")
    if not isinstance(attributes, ds.Tensor):
        attributes = ds.tensor(np.asarray(attributes, dtype=float), dtype=fragments.bary.dtype,
                               device=fragments.bary.device)
    B, H, W = fragments.face_index.shape
    a = attributes
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[0] not in (1, B):
        raise _bad(op, f"attributes must be [V, C] or [B={B}, V, C], got {list(attributes.shape)}")
    Ba, V, C = a.shape
    f = _check_faces(faces, V, op, list(attributes.shape))
    # gather the corner vertex ids on the fragments' device (numpy or cupy): no host round-trip
    fi = fragments.face_index._data.reshape(B, H * W)
    xp = get_xp(fi)
    fmax = fi.max() if fi.size else -1
    if int(fmax) >= f.shape[0]:                                      # one scalar sync (validation)
        raise _bad(op, f"fragments reference face {int(fmax)} but faces has shape {list(f.shape)}; "
                       "pass the faces given to rasterize")
    fd = xp.asarray(f)
    vid = fd[xp.maximum(fi, 0)]                                      # [B, HW, 3]
    if Ba > 1:
        vid = vid + (xp.arange(B, dtype=vid.dtype) * V)[:, None, None]
    flat = a.reshape(Ba * V, C)
    g = flat.index_select(0, ds.tensor(vid.reshape(-1), device=a.device)).reshape(B, H, W, 3, C)
    bary = fragments.bary.to(a.dtype) if fragments.bary.dtype != a.dtype else fragments.bary
    return (g * bary[..., None]).sum(-2)
