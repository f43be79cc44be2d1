"""Volume rendering: emission-absorption ray marching (the NeRF quadrature).

Conventions:

* **Grids** are channels-last and indexed like PyTorch's 3-D ``grid_sample``: a density grid
  ``[D, H, W]`` (or a colour grid ``[D, H, W, C]``) spans the axis-aligned box ``bounds =
  (lo, hi)`` (each 3 floats, world units) with x along W, y along H and z along D. Values sit on
  the grid *nodes*: node ``(d, h, w)`` is at ``lo + (w, h, d) / (W - 1, H - 1, D - 1) * (hi - lo)``
  (corners of the box included; an axis of size 1 is constant along that axis). Between nodes
  the grid is interpolated trilinearly (``trilinear_interpolate``); outside the box it is 0.
* **Rays** ``origins [..., 3]``, ``directions [..., 3]`` (world space; ``camera.rays()`` makes
  unit-length ones). A point at parameter t is ``o + t d``. ``near < far`` bound t.
* **Quadrature**: [near, far] is cut into ``n_samples`` equal bins of width ``dt``; sample i sits
  at the bin's midpoint (``stratified=False``) or uniformly at random in the bin
  (``stratified=True``). With ``delta = dt * |d|`` (world length of a bin),
  ``tau_i = sigma_i delta``, ``alpha_i = 1 - exp(-tau_i)``, the exclusive transmittance
  ``T_i = exp(-sum_{j<i} tau_j) = prod_{j<i} (1 - alpha_j)`` and weights ``w_i = T_i alpha_i``:
  ``rgb = sum_i w_i c_i + (1 - opacity) background``, ``opacity = 1 - exp(-sum_i tau_i)
  (= sum_i w_i)``, ``depth = sum_i w_i t_i`` (NeRF's depth map: not normalized by opacity). A
  piecewise-constant density along the ray whose pieces fill whole bins is integrated exactly
  (Beer-Lambert).

Everything is differentiable w.r.t. the grids (or a field's parameters) and the ray origins and
directions (so w.r.t. a camera's pose and intrinsics); the trilinear lookup is one custom op with
a hand-written backward (``ds.sample_grid``, shared with ``physics.grid.sample``).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np

import diffsim as ds

from .camera import _Camera

__all__ = ["render_volume", "trilinear_interpolate", "VolumeRender"]


# ---------------------------------------------------------------- trilinear lookup
# a thin wrapper over the autodiff layer's ``ds.sample_grid`` (index units, boundary "zero")


def _bounds(bounds, op):
    if bounds is None:
        bounds = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
    try:
        b = np.asarray(bounds, dtype=float)
    except (TypeError, ValueError):
        b = None
    if b is None or b.shape != (2, 3) or not np.isfinite(b).all() or not (b[1] > b[0]).all():
        raise ValueError(f"{op}: bounds must be (lo, hi), two triples of finite floats with hi > lo on every "
                         f"axis, got {bounds!r}")
    return b


def trilinear_interpolate(grid, points, bounds=None):
    """Trilinear lookup of a grid at world points: grid [D, H, W] or [D, H, W, C], points
    [..., 3] (x, y, z) -> [...] or [..., C].

    ``bounds``: (lo, hi), the box the grid spans (default the cube [-1, 1]^3); conventions in
    the module docstring (nodes on the box corners, x along W, y along H, z along D). Points
    outside the box give 0 (and no gradient). Differentiable w.r.t. ``grid`` and ``points``
    (and twice; one custom op with a hand-written backward, ``ds.sample_grid``)."""
    op = "trilinear_interpolate"
    b = _bounds(bounds, op)
    if not isinstance(grid, ds.Tensor) or grid.ndim not in (3, 4) or 0 in grid.shape:
        raise ValueError(f"{op}: grid must be a non-empty Tensor [D, H, W] or [D, H, W, C], got "
                         f"{list(grid.shape) if isinstance(grid, ds.Tensor) else type(grid).__name__}")
    if not isinstance(points, ds.Tensor) or points.ndim < 1 or points.shape[-1] != 3:
        raise ValueError(f"{op}: points must be a Tensor [..., 3], got "
                         f"{list(points.shape) if isinstance(points, ds.Tensor) else type(points).__name__}")
    if not grid.is_floating_point() or points.dtype != grid.dtype:
        raise ValueError(f"{op}: grid ({grid.dtype}) and points ({points.dtype}) must share one floating dtype")
    scalar = grid.ndim == 3
    g4 = grid[..., None] if scalar else grid
    D, H, W = g4.shape[:3]
    lo = ds.tensor(b[0], dtype=points.dtype, device=points.device)
    inv = ds.tensor(1.0 / (b[1] - b[0]), dtype=points.dtype, device=points.device)
    s = (points - lo) * inv                                  # box coordinates (x, y, z), in [0, 1] inside
    scale = ds.tensor([W - 1.0, H - 1.0, D - 1.0], dtype=points.dtype, device=points.device)
    out = ds.sample_grid(g4, (s * scale).flip(-1), boundary="zero")   # index coords (z, y, x)
    if 1 in (D, H, W):      # an axis of size 1 has index coordinate 0 everywhere: cut at the box here
        sd = s._data
        inside = ((sd >= 0) & (sd <= 1)).all(-1)
        out = out * ds.as_tensor(inside[..., None].astype(sd.dtype), device=points.device)
    return out[..., 0] if scalar else out


# ---------------------------------------------------------------- volume rendering

class VolumeRender(NamedTuple):
    """What ``render_volume`` returns (ray shape ``R = [...]``, S samples per ray):
    ``rgb`` [*R, C] (None without colour), ``opacity`` [*R], ``depth`` [*R], ``weights`` [*R, S],
    ``t`` [*R, S] or [S] (the sample parameters along the rays)."""
    rgb: Optional[ds.Tensor]
    opacity: ds.Tensor
    depth: ds.Tensor
    weights: ds.Tensor
    t: ds.Tensor


def _bad(msg):
    return ValueError("render_volume: " + msg)


def _shape(x):
    return list(x.shape) if isinstance(x, ds.Tensor) else type(x).__name__


def _field_call(field, pts, op):
    out = field(pts)
    if isinstance(out, ds.Tensor):
        if out.ndim == 2 and out.shape[-1] >= 2:
            return out[:, 0], out[:, 1:]
        sig, col = (out[:, 0] if out.ndim == 2 else out), None
    else:
        try:
            sig, col = out
        except (TypeError, ValueError):
            raise TypeError(f"{op}: field(points [N, 3]) must return (density [N], color [N, C]), a Tensor "
                            f"[N, 1 + C] or a density [N]; got {type(out).__name__}") from None
    N = pts.shape[0]
    if sig.ndim == 2 and sig.shape[-1] == 1:
        sig = sig[:, 0]
    if tuple(sig.shape) != (N,) or (col is not None and (col.ndim != 2 or col.shape[0] != N)):
        raise ValueError(f"{op}: field(points [{N}, 3]) returned density {_shape(sig)} and color "
                         f"{_shape(col) if col is not None else None}; expected [{N}] and [{N}, C]")
    return sig, col


def render_volume(density, color=None, bounds=None, camera=None, rays=None, near=None, far=None, n_samples=64,
                  stratified=False, generator=None, background=None, image_size=None):
    """Emission-absorption rendering of a density (+ colour) volume along rays.

    density: a Tensor grid [D, H, W] of non-negative densities (per world unit; use e.g.
    ``ds.relu`` or softplus of a raw parameter), or a callable field ``field(points [N, 3]) ->
    (density [N], color [N, C])`` (e.g. an ``nn.Module``; it may also return a Tensor
    [N, 1 + C] or a density [N] alone). color: a grid [D, H, W, C] for a density grid (or None:
    then ``rgb`` is None). bounds: (lo, hi) the box the grids span (default [-1, 1]^3; grid
    conventions in the module docstring).
    camera: a ``PerspectiveCamera`` / ``OrthographicCamera`` (rays through its pixel centres,
    ``image_size`` (H, W) overriding its own), or rays: (origins [..., 3], directions [..., 3]),
    broadcastable. near, far: floats, 0 <= near < far, the range of the ray parameter t.
    n_samples: S > 0 bins per ray. stratified: one uniform sample per bin (random; drawn from
    ``generator``, a ``ds.Generator``, or the global one) instead of the bin midpoints.
    background: C floats or one float (default 0), composited behind.

    Returns a ``VolumeRender(rgb [..., C], opacity [...], depth [...], weights [..., S], t)``
    with ``...`` the rays' shape (``[B?, H, W]`` for a camera). Differentiable w.r.t. the grids
    (or the field's parameters) and the rays, hence the camera pose and intrinsics."""
    op = "render_volume"
    # ---- rays
    if (camera is None) == (rays is None):
        raise _bad("give exactly one of camera= (a PerspectiveCamera / OrthographicCamera) or "
                   "rays=(origins [..., 3], directions [..., 3])")
    if camera is not None:
        if not isinstance(camera, _Camera):
            raise TypeError(f"{op}: camera must be a PerspectiveCamera or OrthographicCamera, got "
                            f"{type(camera).__name__}")
        H, W = (None, None) if image_size is None else (
            (image_size, image_size) if isinstance(image_size, int) else tuple(image_size))
        o, d = camera.rays(H, W)
    else:
        try:
            o, d = rays
        except (TypeError, ValueError):
            raise _bad("rays must be a pair (origins [..., 3], directions [..., 3])") from None
    if not isinstance(o, ds.Tensor) or not isinstance(d, ds.Tensor) or o.ndim < 1 or d.ndim < 1 \
            or o.shape[-1] != 3 or d.shape[-1] != 3:
        raise _bad(f"ray origins and directions must be Tensors [..., 3], got {_shape(o)} and {_shape(d)}")
    try:
        lead = tuple(np.broadcast_shapes(tuple(o.shape[:-1]), tuple(d.shape[:-1])))
    except ValueError:
        raise _bad(f"ray origins {list(o.shape)} and directions {list(d.shape)} do not broadcast") from None
    if o.dtype != d.dtype or not o.is_floating_point():
        raise _bad(f"ray origins ({o.dtype}) and directions ({d.dtype}) must share one floating dtype")
    dtype, dev = o.dtype, o.device
    # ---- sampling range
    if near is None or far is None:
        raise _bad(f"near and far are required (the range of the ray parameter t), got near={near}, far={far}")
    near, far = float(near), float(far)
    if not (math.isfinite(near) and math.isfinite(far)) or not 0 <= near < far:
        raise _bad(f"need 0 <= near < far (finite), got near={near}, far={far}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples <= 0:
        raise _bad(f"n_samples must be a positive int, got {n_samples!r}")
    S = int(n_samples)
    # ---- volume
    field = None
    if callable(density) and not isinstance(density, ds.Tensor):
        field = density
        if color is not None:
            raise _bad("color must be None with a callable field (the field returns the colour)")
        b = None
    else:
        b = _bounds(bounds, op)
        if not isinstance(density, ds.Tensor) or density.ndim != 3 or 0 in density.shape:
            raise _bad(f"density must be a grid Tensor [D, H, W] or a callable field, got {_shape(density)}")
        if density.dtype != dtype:
            raise _bad(f"density grid ({density.dtype}) and rays ({dtype}) must have the same dtype")
        if color is not None:
            if not isinstance(color, ds.Tensor) or color.ndim != 4 or tuple(color.shape[:3]) != tuple(density.shape) \
                    or color.shape[3] == 0:
                raise _bad(f"color grid must be [D, H, W, C] = {list(density.shape)} + [C], got {_shape(color)} "
                           f"(density grid {list(density.shape)})")
            if color.dtype != dtype:
                raise _bad(f"color grid ({color.dtype}) and density grid ({dtype}) must have the same dtype")
    # ---- sample positions
    dt = (far - near) / S
    t0 = ds.arange(S, dtype=dtype, device=dev) * dt + near              # bin starts [S]
    if stratified:
        u = ds.rand(*lead, S, generator=generator, dtype=dtype, device=dev)
        t = t0 + u * dt                                                   # [*lead, S]
    else:
        t = t0 + 0.5 * dt                                                 # [S]
    pts = o[..., None, :] + t[..., None] * d[..., None, :]                # [*lead, S, 3]
    pts = pts.expand(*lead, S, 3) if tuple(pts.shape) != lead + (S, 3) else pts
    flat = pts.reshape(-1, 3)
    if field is not None:
        sig, col = _field_call(field, flat, op)
    else:
        grid = density[..., None] if color is None else ds.cat([density[..., None], color], -1)
        vals = trilinear_interpolate(grid, flat, b)                       # [N, 1 + C]
        sig, col = vals[:, 0], (vals[:, 1:] if color is not None else None)
    sig = sig.reshape(*lead, S)
    # ---- quadrature
    dnorm = (d * d).sum(-1).sqrt()[..., None]                             # [*, 1]
    tau = sig * (dnorm * dt)                                              # [*lead, S]
    cum = ds.cumsum(tau, -1)
    trans = ds.exp(tau - cum)                                             # exclusive transmittance
    weights = trans * (1.0 - ds.exp(-tau))
    opacity = 1.0 - ds.exp(-cum[..., -1])
    depth = (weights * t).sum(-1)
    rgb = None
    if col is not None:
        C = col.shape[-1]
        rgb = (weights[..., None] * col.reshape(*lead, S, C)).sum(-2)
        if background is not None:
            try:
                bg = np.broadcast_to(np.asarray(background, dtype=float), (C,))
            except ValueError:
                raise _bad(f"background must be one float or C={C} floats, got {background!r}") from None
            rgb = rgb + (1.0 - opacity)[..., None] * ds.tensor(np.array(bg), dtype=dtype, device=dev)
    return VolumeRender(rgb, opacity, depth, weights, t)
