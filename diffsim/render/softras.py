"""Soft rasterization (SoftRas, Liu et al. 2019) as one custom op with a hand-written backward.

Screen space: vertices ``[B?, V, 3]`` hold (x_ndc, y_ndc, depth) -- ``camera.to_ndc`` makes
them. The image is H x W pixels; pixel (i, j) (row i from the top) samples the NDC point
``x = -1 + (2 j + 1) / W``, ``y = 1 - (2 i + 1) / H``.

For pixel p and face j with screen triangle (v0, v1, v2):

* ``d2`` = min over the three edges of the squared point-to-segment distance;
* ``s`` = +1 if the three edge functions share a sign (inside; orientation independent) else -1;
* ``D_j = sigmoid(s * d2 / sigma)``;
* silhouette ``A = max(0, 1 - exp(sum_j log(1 - D_j + 1e-8)))`` (= 1 - prod_j (1 - D_j) up to the
  1e-8; without the max -- ``clamp=False``, W4's exact formula -- the 1e-8 terms make empty
  pixels slightly negative, 1 - (1 + 1e-8)^F);
* colour (``mode='rgba'``): ``RGB = sum_j w_j C_j + w_b C_bg`` with
  ``w_j ∝ D_j exp(z_j / gamma)``, ``w_b ∝ exp(eps / gamma)`` (softmax, computed with the max
  subtracted), ``z_j = (far - depth_j) / (far - near)`` the normalized inverse depth of face j
  (depth_j: the face's depth at the pixel, so nearer faces weigh more), ``C_j`` the face's colour
  there -- both interpolated from the corners with the barycentric coordinates of the point of
  the triangle nearest the pixel (the pixel itself inside);
  faces with ``D_j < 1e-8`` at a pixel are left out of its softmax (else a near face far away
  in the image would still bleed its colour through ``exp(z_j / gamma)``).

Tiling and culling: pixels are processed in ``tile x tile`` blocks; a face takes part in a
tile only if its screen bounding box, grown by ``sqrt(18.42 * sigma)`` (where
``sigmoid(-d2 / sigma) < 1e-8``), overlaps the tile. A culled face counts as D = 0 (its
``log(1 + 1e-8)`` term is added exactly to the silhouette sum). Work and memory are
O(tile^2 * faces in the tile) per step; the backward recomputes per tile instead of storing
[pixels, faces] intermediates.
"""
from __future__ import annotations

import math

import numpy as np

import diffsim as ds
from diffsim.autodiff.backend import get_xp, to_numpy
from diffsim.autodiff.function import apply, call_op, defop
from diffsim.autodiff.rawops import RAW_NS

__all__ = ["soft_rasterize", "CULL_LOG"]

CULL_LOG = 18.42          # -log(1e-8): faces farther than sqrt(CULL_LOG * sigma) from a tile are culled
_EPS8 = 1e-8
_XCLIP = 80.0


def _pixel_centres(xp, H, W, dtype):
    xs = -1.0 + (2.0 * xp.arange(W, dtype=dtype) + 1.0) / W
    ys = 1.0 - (2.0 * xp.arange(H, dtype=dtype) + 1.0) / H
    return xs, ys


def _tile_faces(xp, lo, hi, xs, ys, H, W, tile, valid=None):
    """Faces whose (grown) screen bounding box [lo, hi] ([F, 2] each) overlaps each tile.

    Returns a list of (i0, i1, j0, j1, face index array on xp's device). The tile x face overlap
    masks are built on the device for a chunk of tile rows at a time (at most 2^24 booleans) and
    the per-tile counts come to the host once per chunk, so a GPU syncs once per chunk rather than
    once per tile. ``valid`` [F] bool: faces to consider at all."""
    F = lo.shape[0]
    rows, cols = list(range(0, H, tile)), list(range(0, W, tile))
    nC = len(cols)
    c0 = xp.asarray(cols, dtype=np.int64)
    c1 = xp.asarray([min(W, j + tile) - 1 for j in cols], dtype=np.int64)
    mx = (hi[None, :, 0] >= xs[c0][:, None]) & (lo[None, :, 0] <= xs[c1][:, None])      # [nC, F]
    if valid is not None:
        mx = mx & valid[None]
    chunk = max(1, (1 << 24) // max(1, nC * F))
    out = []
    for k0 in range(0, len(rows), chunk):
        rr = rows[k0:k0 + chunk]
        r0 = xp.asarray(rr, dtype=np.int64)
        r1 = xp.asarray([min(H, i + tile) - 1 for i in rr], dtype=np.int64)
        my = (hi[None, :, 1] >= ys[r1][:, None]) & (lo[None, :, 1] <= ys[r0][:, None])  # [nr, F]
        tid, fid = xp.nonzero((my[:, None, :] & mx[None]).reshape(len(rr) * nC, F))
        counts = to_numpy(xp.bincount(tid, minlength=len(rr) * nC)) if tid.size else np.zeros(len(rr) * nC, int)
        offs = np.concatenate([[0], np.cumsum(counts)]).tolist()
        for a, i0 in enumerate(rr):
            for c, j0 in enumerate(cols):
                t = a * nC + c
                out.append((i0, min(H, i0 + tile), j0, min(W, j0 + tile), fid[offs[t]:offs[t + 1]]))
    return out


def _tiles(xp, v, faces, H, W, tile, sigma, cull_near=None):
    """Per batch element: pixel centres, per-face corners fv [F, 3, 3] and the tiles (``_tile_faces``).
    ``cull_near``: faces with a corner at depth <= cull_near (behind the camera or crossing its
    near plane, where the perspective division mirrors them) take part in no tile."""
    xs, ys = _pixel_centres(xp, H, W, v.dtype)
    fv = v[faces]                                          # [F, 3, 3]
    r = math.sqrt(CULL_LOG * sigma)
    lo = fv[..., :2].min(1) - r                            # [F, 2]
    hi = fv[..., :2].max(1) + r
    valid = None if cull_near is None else (fv[..., 2] > cull_near).all(1)
    return xs, ys, fv, _tile_faces(xp, lo, hi, xs, ys, H, W, tile, valid)


def _face_terms(xp, px, py, fvt, sigma, grad=True):
    """px, py [P]; fvt [Ft, 3, 3] -> dict of per (pixel, face) terms, each [P, Ft] (or [P, Ft, 3]);
    ``grad=False`` skips what only the backward needs (nearest edge, its t and offset r)."""
    ax, ay = fvt[:, :, 0], fvt[:, :, 1]                    # [Ft, 3] corner k
    ex = xp.roll(ax, -1, axis=1) - ax                      # edge k: corner k -> k+1
    ey = xp.roll(ay, -1, axis=1) - ay
    el = ex * ex + ey * ey
    inv = xp.where(el > 0, 1.0 / xp.where(el > 0, el, 1.0), 0.0)
    apx = px[:, None, None] - ax[None]                     # [P, Ft, 3]
    apy = py[:, None, None] - ay[None]
    t = xp.clip((apx * ex + apy * ey) * inv, 0.0, 1.0)
    rx = apx - t * ex
    ry = apy - t * ey
    d2e = rx * rx + ry * ry
    cr = ex * apy - ey * apx
    inside = (cr > 0).all(2) | (cr < 0).all(2)
    if grad:
        k = d2e.argmin(2)[..., None]                       # [P, Ft, 1]
        d2 = xp.take_along_axis(d2e, k, 2)[..., 0]
    else:
        d2 = d2e.min(2)
    s = xp.where(inside, 1.0, -1.0).astype(px.dtype)
    x = xp.clip(s * d2 / sigma, -_XCLIP, _XCLIP)
    ex_ = xp.exp(-x)
    D = 1.0 / (1.0 + ex_)                                  # sigmoid(x)
    om = ex_ * D                                           # 1 - D = sigmoid(-x), no cancellation
    if not grad:
        return dict(D=D, om=om, x=x)
    return dict(D=D, om=om, x=x, s=s, k=k[..., 0], t=t, rx=rx, ry=ry, inside=inside, apx=apx, apy=apy,
                ex=ex, ey=ey, inv=inv)


def _bary(xp, T):
    """Barycentric coordinates [P, Ft, 3] of the point of each triangle nearest each pixel: the
    pixel itself inside (signed sub-triangle areas / area), else the nearest point a + t (b - a)
    of the nearest edge k (weights 1 - t, t on corners k, k + 1). Continuous across the edges."""
    bx, by = -T["apx"], -T["apy"]                          # corner - pixel, [P, Ft, 3]
    Ak = xp.roll(bx, -1, 2) * xp.roll(by, -2, 2) - xp.roll(by, -1, 2) * xp.roll(bx, -2, 2)
    A = Ak.sum(2, keepdims=True)
    ins = T["inside"][..., None]
    lam_in = Ak / xp.where(ins, A, 1.0)
    k = T["k"][..., None]
    tk = xp.take_along_axis(T["t"], k, 2)
    ar = xp.arange(3)
    lam_out = (ar == k) * (1.0 - tk) + (ar == (k + 1) % 3) * tk
    return xp.where(ins, lam_in, lam_out), Ak, A


def _bary_vjp(xp, glam, lam, Ak, A, T):
    """Gradient of _bary's output w.r.t. the corners' (x, y): glam [P, Ft, 3] -> [Ft, 3, 2]."""
    ins = T["inside"][..., None]
    bx, by = -T["apx"], -T["apy"]
    # inside: lam_k = A_k / A, A_k = cross(b_{k+1}, b_{k+2}) with b = corner - pixel
    gA = xp.where(ins, (glam - (glam * lam).sum(2, keepdims=True)) / xp.where(ins, A, 1.0), 0.0)
    r1, rm1 = (lambda z: xp.roll(z, 1, 2)), (lambda z: xp.roll(z, -1, 2))
    gcx = r1(gA) * rm1(by) - rm1(gA) * r1(by)
    gcy = rm1(gA) * r1(bx) - r1(gA) * rm1(bx)
    # outside: lam_k = 1 - t, lam_{k+1} = t on the nearest edge k; t = clip(ap.e / |e|^2, 0, 1)
    k = T["k"][..., None]
    ar = xp.arange(3)
    t, ex, ey, inv = T["t"], T["ex"], T["ey"], T["inv"]
    gt = xp.take_along_axis(glam, (k + 1) % 3, 2) - xp.take_along_axis(glam, k, 2)     # [P, Ft, 1]
    w = xp.where((ar == k) & ~ins & (t > 0) & (t < 1), gt, 0.0)                         # per edge [P, Ft, 3]
    dbx = (T["apx"] - 2.0 * t * ex) * inv                  # dt / d(corner k+1), x
    dby = (T["apy"] - 2.0 * t * ey) * inv
    dax, day = -ex * inv - dbx, -ey * inv - dby            # dt / d(corner k)
    gcx = gcx + w * dax + r1(w * dbx)
    gcy = gcy + w * day + r1(w * dby)
    return xp.stack([gcx.sum(0), gcy.sum(0)], -1)


def _colour_weights(xp, T, zf, a):
    """Softmax weights over faces + background: T from _face_terms, zf [P, Ft] normalized inverse depth."""
    x = T["x"]
    logD = -xp.log1p(xp.exp(-x))                          # log sigmoid(x) (x is clipped: no overflow)
    # faces with D < 1e-8 at this pixel take no part (as the tile culling; SoftRas does the same)
    lg = xp.where(x > -CULL_LOG, logD + zf / a["gamma"], -xp.inf)   # [P, Ft]
    lb = a["eps"] / a["gamma"]
    m = xp.maximum(lg.max(1) if lg.shape[1] else lb, lb)   # [P]
    wf = xp.exp(lg - m[:, None])
    wb = xp.exp(lb - m)
    Z = wf.sum(1) + wb
    return wf / Z[:, None], wb / Z


def _prep(v, colors, a):
    xp = get_xp(v)
    faces = a["faces"]
    if xp is not np:
        faces = xp.asarray(faces)
    return xp, faces


def _softras_fwd(v, colors=None, *, faces, H, W, sigma, gamma, eps, near, far, background, mode, tile, clamp,
                 cull_near=None):
    a = dict(faces=faces, sigma=sigma, gamma=gamma, eps=eps, near=near, far=far)
    xp, faces = _prep(v, colors, a)
    B, F = v.shape[0], faces.shape[0]
    C = 0 if mode == "silhouette" else colors.shape[-1]
    out = xp.empty((B, H, W, C + 1), v.dtype)
    bg = xp.asarray(background, dtype=v.dtype)
    l8 = math.log1p(_EPS8)
    for b in range(B):
        xs, ys, fv, tiles = _tiles(xp, v[b], faces, H, W, tile, sigma, cull_near)
        for i0, i1, j0, j1, idx in tiles:
            py, px = (a_.reshape(-1) for a_ in xp.meshgrid(ys[i0:i1], xs[j0:j1], indexing="ij"))
            n = int(idx.shape[0])
            if n == 0:
                out[b, i0:i1, j0:j1, C] = 0.0 if clamp else -math.expm1(F * l8)   # 1 - (1 + 1e-8)^F
                if C:
                    out[b, i0:i1, j0:j1, :C] = bg
                continue
            T = _face_terms(xp, px, py, fv[idx], sigma, grad=bool(C))
            L = xp.log(T["om"] + _EPS8).sum(1) + (F - n) * l8
            A = -xp.expm1(L)
            out[b, i0:i1, j0:j1, C] = (xp.maximum(A, 0.0) if clamp else A).reshape(i1 - i0, j1 - j0)
            if C:
                lam = _bary(xp, T)[0]
                zn = (far - (lam * fv[idx, :, 2]).sum(2)) / (far - near)          # [P, n]
                cpix = xp.einsum("pnk,nkc->pnc", lam, colors[b][idx])
                wf, wb = _colour_weights(xp, T, zn, a)
                rgb = xp.einsum("pn,pnc->pc", wf, cpix) + wb[:, None] * bg
                out[b, i0:i1, j0:j1, :C] = rgb.reshape(i1 - i0, j1 - j0, C)
    return out


def _softras_bwd_raw(g, v, colors, *, faces, H, W, sigma, gamma, eps, near, far, background, mode, tile, clamp,
                     cull_near=None):
    a = dict(faces=faces, sigma=sigma, gamma=gamma, eps=eps, near=near, far=far)
    xp, faces = _prep(v, colors, a)
    B, V = v.shape[:2]
    F = faces.shape[0]
    C = 0 if mode == "silhouette" else colors.shape[-1]
    bg = xp.asarray(background, dtype=v.dtype)
    l8 = math.log1p(_EPS8)
    gv = xp.zeros_like(v)
    gc = xp.zeros_like(colors) if C else None
    for b in range(B):
        xs, ys, fv, tiles = _tiles(xp, v[b], faces, H, W, tile, sigma, cull_near)
        gf = xp.zeros((F, 3, 3), v.dtype)                  # d/d corner (x, y, depth)
        for i0, i1, j0, j1, idx in tiles:
            n = int(idx.shape[0])
            if n == 0:
                continue
            py, px = (a_.reshape(-1) for a_ in xp.meshgrid(ys[i0:i1], xs[j0:j1], indexing="ij"))
            gt = g[b, i0:i1, j0:j1].reshape(-1, C + 1)
            T = _face_terms(xp, px, py, fv[idx], sigma)
            D, om = T["D"], T["om"]
            L = xp.log(om + _EPS8).sum(1) + (F - n) * l8
            # silhouette A = 1 - exp(L): dA/dD_j = exp(L) / (1 - D_j + 1e-8); dD/dx = D (1 - D)
            gA = gt[:, C] * xp.exp(L)
            if clamp:
                gA = xp.where(L < 0, gA, 0.0)                  # A clamped at 0 where L >= 0
            gx = gA[:, None] * (D * om / (om + _EPS8))
            if C:
                lam, Ak, A = _bary(xp, T)
                zc = fv[idx, :, 2]                             # [n, 3] corner depths
                zn = (far - (lam * zc).sum(2)) / (far - near)  # [P, n]
                cc = colors[b][idx]                            # [n, 3, C] corner colours
                cpix = xp.einsum("pnk,nkc->pnc", lam, cc)
                wf, wb = _colour_weights(xp, T, zn, a)
                grgb = gt[:, :C]                               # [P, C]
                rgb = xp.einsum("pn,pnc->pc", wf, cpix) + wb[:, None] * bg
                gl = wf * (xp.einsum("pc,pnc->pn", grgb, cpix) - (grgb * rgb).sum(1, keepdims=True))
                gcp = wf[..., None] * grgb[:, None, :]         # d/d cpix [P, n, C]
                gc[b][idx] += xp.einsum("pnk,pnc->nkc", lam, gcp)
                gx = gx + gl * om                              # d log sigmoid(x) / dx = 1 - D
                gz = -gl / (gamma * (far - near))              # d/d interpolated depth [P, n]
                gf[idx, :, 2] += xp.einsum("pn,pnk->nk", gz, lam)
                glam = xp.einsum("pnc,nkc->pnk", gcp, cc) + gz[..., None] * zc[None]
                gf[idx, :, :2] += _bary_vjp(xp, glam, lam, Ak, A, T)
            gx = xp.where(xp.abs(T["x"]) >= _XCLIP, 0.0, gx)         # clipped: derivative 0
            gd2 = gx * T["s"] / sigma                          # [P, n]
            kk, t = T["k"], T["t"]
            for k in range(3):
                sel = kk == k
                tk = t[:, :, k]
                w = xp.where(sel, -2.0 * gd2, 0.0)
                wrx, wry = w * T["rx"][:, :, k], w * T["ry"][:, :, k]
                # d2 = |p - (a + t (b - a))|^2 with optimal t: d/da = -2 r (1 - t), d/db = -2 r t
                ga = xp.stack([(wrx * (1 - tk)).sum(0), (wry * (1 - tk)).sum(0)], -1)
                gb = xp.stack([(wrx * tk).sum(0), (wry * tk).sum(0)], -1)
                gf[idx, k, :2] += ga
                gf[idx, (k + 1) % 3, :2] += gb
        flat = faces.reshape(-1)
        for c in range(3):
            gv[b, :, c] = xp.bincount(flat, weights=gf[:, :, c].reshape(-1), minlength=V)
    return gv, gc


def _save(edges, args):
    return tuple(range(len(args)))


_softras_op = defop("soft_rasterize", _softras_fwd, save=_save)


def _bwd_fwd(g, v, colors=None, **attrs):
    gv, gc = _softras_bwd_raw(g, v, colors, **attrs)
    return (gv, gc if gc is not None else get_xp(v).zeros((1,), v.dtype))


_softras_bwd_op = defop("soft_rasterize_backward", _bwd_fwd, n_out=2)


@_softras_bwd_op.defvjp
def _(ns, node, grads, *saved):
    raise NotImplementedError("soft_rasterize: second derivatives (gradient of the gradient) are not "
                              "implemented; use first-order gradients of soft_rasterize only")


@_softras_op.defvjp
def _(ns, node, g, v, colors=None):
    need = node.needs_input_grad
    if ns is RAW_NS:
        gv, gc = _softras_bwd_raw(g, v, colors, **node.attrs)
    else:
        args = (g, v) if colors is None else (g, v, colors)
        gv, gc = call_op(ns, _softras_bwd_op, *args, **node.attrs)
    if colors is None:
        return (gv if need[0] else None,)
    return (gv if need[0] else None, gc if need[1] else None)


def _bad(msg):
    return ValueError("soft_rasterize: " + msg)


def image_size_hw(image_size, op):
    """``(H, W)`` from an int or a pair of positive ints; ValueError naming ``op`` otherwise."""
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    try:
        H, W = (int(s) for s in image_size)
        ok = H > 0 and W > 0 and all(float(s) == int(s) for s in image_size)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{op}: image_size must be a positive int or (H, W) of positive ints, got {image_size!r}")
    return H, W


def soft_rasterize(verts, faces, image_size, sigma=1e-4, gamma=1e-4, colors=None, background=None,
                   mode=None, near=1.0, far=100.0, eps=1e-3, tile=8, clamp=True, face_colors=None, cull_near=None):
    """Soft silhouette / colour image of screen-space triangles (SoftRas).

    verts: [B, V, 3] or [V, 3] float Tensor, (x_ndc, y_ndc, depth) per vertex (differentiable).
    faces: [F, 3] integer vertex indices (array, list or int Tensor), F > 0.
    image_size: int or (H, W).
    sigma: sharpness of the probability maps (> 0; smaller = sharper, in NDC units squared).
    gamma: softmax temperature of the depth aggregation (> 0; 'rgba' only).
    colors: [B, V, C] or [V, C] per-vertex colours, interpolated with the barycentric coordinates
    of the triangle point nearest each pixel (differentiable); or
    face_colors: [B, F, C] or [F, C] per-face colours (differentiable). One of them for 'rgba'.
    background: C floats (or one), the colour where no face is (constant; default 0).
    mode: 'silhouette' (default without colours) -> [B, H, W] alpha, or 'rgba' (default with
    colours) -> [B, H, W, C + 1] (colour channels, then alpha = the silhouette).
    near, far: depth range for the normalized inverse depth (far - depth) / (far - near); the
    depth of face j at a pixel is interpolated like the colours.
    eps: background's normalized depth in the softmax. tile: pixels per tile side (8 was fastest
    on a CPU from 64x64 to 256x256).
    clamp: clamp the silhouette at 0 (default; ``clamp=False`` gives W4's formula exactly, whose
    value on empty pixels is 1 - (1 + 1e-8)^F, slightly negative).
    cull_near: None (default) or a float: faces with a corner at depth <= cull_near are skipped
    (D = 0 everywhere; no clipping). Cameras mirror points behind the eye through the perspective
    division, so ``silhouette`` / ``render_rgba`` / ``shade_mesh`` pass the camera's ``near``.
    Faces whose bounding box grown by sqrt(18.42 sigma) misses a tile count as D = 0 there
    (module docstring). Memory: O(tile^2 * faces per tile); the backward recomputes per tile.
    Unbatched verts [V, 3] give outputs without the leading B. Gradients flow to verts (x, y
    and, in 'rgba', depth) and the colours; second derivatives raise NotImplementedError.
    """
    if not isinstance(verts, ds.Tensor):
        raise TypeError(f"soft_rasterize: verts must be a Tensor [B?, V, 3], got {type(verts).__name__}")
    unbatched = verts.ndim == 2
    v = verts[None] if unbatched else verts
    if v.ndim != 3 or v.shape[-1] != 3 or v.shape[1] == 0:
        raise _bad(f"verts must have shape [B, V, 3] or [V, 3] with V > 0, got {list(verts.shape)}")
    if not v.is_floating_point():
        raise _bad(f"verts must be floating point, got {v.dtype}")
    f = faces.numpy() if isinstance(faces, ds.Tensor) else np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] == 0:
        raise _bad(f"faces must have shape [F, 3] with F > 0 (an empty mesh cannot be rendered), got {list(f.shape)}")
    if f.dtype.kind not in "iu":
        raise _bad(f"faces must be integers, got dtype {f.dtype}")
    V = v.shape[1]
    if f.min() < 0 or f.max() >= V:
        raise _bad(f"faces [{f.shape[0]}, 3] index vertices in [{f.min()}, {f.max()}] but verts has shape "
                   f"{list(verts.shape)}; indices must be in [0, {V - 1}]")
    if not bool(ds.isfinite(v.detach()).all()):
        raise _bad(f"verts {list(verts.shape)} contain NaN or inf")
    H, W = image_size_hw(image_size, "soft_rasterize")
    if not (sigma > 0) or not (gamma > 0):
        raise _bad(f"sigma and gamma must be > 0, got sigma={sigma}, gamma={gamma}")
    if not 0 <= near < far:
        raise _bad(f"need 0 <= near < far, got near={near}, far={far}")
    if int(tile) < 1:
        raise _bad(f"tile must be >= 1, got {tile}")
    if colors is not None and face_colors is not None:
        raise _bad("give colors (per vertex) or face_colors (per face), not both")
    mode = mode or ("silhouette" if colors is None and face_colors is None else "rgba")
    if mode not in ("silhouette", "rgba"):
        raise _bad(f"mode must be 'silhouette' or 'rgba', got {mode!r}")
    attrs = dict(faces=f.astype(np.int64), H=H, W=W, sigma=float(sigma), gamma=float(gamma), eps=float(eps),
                 near=float(near), far=float(far), mode=mode, tile=int(tile), clamp=bool(clamp),
                 cull_near=None if cull_near is None else float(cull_near))
    if mode == "silhouette":
        attrs["background"] = ()
        out = apply(_softras_op, (v,), attrs)[..., 0]
    else:
        per_vertex = colors is not None
        cin = colors if per_vertex else face_colors
        name, n, what = ("colors", V, "V") if per_vertex else ("face_colors", f.shape[0], "F")
        if cin is None:
            raise _bad("mode 'rgba' needs colors [B?, V, C] (per vertex) or face_colors [B?, F, C]")
        if not isinstance(cin, ds.Tensor):
            cin = ds.tensor(np.asarray(cin, dtype=float), dtype=v.dtype, device=v.device)
        c = cin[None] if cin.ndim == 2 else cin
        if c.ndim != 3 or c.shape[1] != n or c.shape[0] not in (1, v.shape[0]) or c.shape[2] == 0:
            raise _bad(f"{name} must be [{what}={n}, C] or [B={v.shape[0]}, {what}, C], got {list(cin.shape)}")
        if c.dtype != v.dtype:
            raise _bad(f"{name} ({c.dtype}) and verts ({v.dtype}) must have the same dtype")
        Bc, C = c.shape[0], c.shape[2]
        if per_vertex:                                    # corner colours [Bc, F, 3, C]
            c = c.index_select(1, ds.tensor(f.reshape(-1).astype(np.int64), device=v.device))
            c = c.reshape(Bc, f.shape[0], 3, C)
        else:
            c = c[:, :, None, :].expand(Bc, f.shape[0], 3, C)
        if Bc != v.shape[0]:
            c = c.expand(v.shape[0], *c.shape[1:])
        try:
            bg = tuple(float(x) for x in np.broadcast_to(np.asarray(0.0 if background is None else background,
                                                                    float), (C,)))
        except ValueError:
            raise _bad(f"background must be one float or C={C} floats, got {background!r}") from None
        attrs["background"] = bg
        out = apply(_softras_op, (v, c), attrs)
    return out[0] if unbatched else out
