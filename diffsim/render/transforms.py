"""Rotation parameterizations -> rotation matrices, written with diffsim ops (differentiable).

All functions take a leading batch shape ``[...]`` and return ``[..., 3, 3]`` matrices that
act on column vectors (``x' = R @ x``).
"""
from __future__ import annotations

import diffsim as ds

__all__ = ["axis_angle_to_matrix", "quaternion_to_matrix", "rotation_6d_to_matrix", "skew"]


def _as_tensor(x, name, last):
    if not isinstance(x, ds.Tensor):
        x = ds.tensor(x, dtype=ds.get_default_dtype())
    if x.ndim < 1 or x.shape[-1] != last:
        raise ValueError(f"{name}: expected a tensor of shape [..., {last}], got shape {list(x.shape)}")
    return x


def skew(v):
    """Cross-product matrix: v [..., 3] -> K [..., 3, 3] with K @ u = v x u."""
    v = _as_tensor(v, "skew", 3)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    o = ds.zeros_like(x)
    return ds.stack([ds.stack([o, -z, y], -1), ds.stack([z, o, -x], -1), ds.stack([-y, x, o], -1)], -2)


def axis_angle_to_matrix(axis_angle):
    """Rodrigues' formula: axis_angle [..., 3] (unit axis times angle in radians) -> R [..., 3, 3].

    R = I + A K + B K^2 with K = skew(w), A = sin(t)/t, B = (1 - cos t)/t^2, t = |w|; A and B
    switch to their Taylor series near t = 0, so the value and gradient are finite there."""
    w = _as_tensor(axis_angle, "axis_angle_to_matrix", 3)
    t2 = (w * w).sum(-1)
    small = t2 < 1e-6
    t2s = ds.where(small, ds.ones_like(t2), t2)
    t = t2s.sqrt()
    a = ds.where(small, 1 - t2 / 6 + t2 * t2 / 120, t.sin() / t)
    b = ds.where(small, 0.5 - t2 / 24 + t2 * t2 / 720, (1 - t.cos()) / t2s)
    K = skew(w)
    eye = ds.eye(3, dtype=w.dtype, device=w.device)
    return eye + a[..., None, None] * K + b[..., None, None] * (K @ K)


def quaternion_to_matrix(q):
    """Quaternion q [..., 4] ordered (w, x, y, z), any non-zero norm (normalized here) -> R [..., 3, 3]."""
    q = _as_tensor(q, "quaternion_to_matrix", 4)
    q = q / (q * q).sum(-1, keepdim=True).sqrt()
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        ds.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        ds.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        ds.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ]
    return ds.stack(rows, -2)


def rotation_6d_to_matrix(r6):
    """6-D representation (Zhou et al. 2019) r6 [..., 6] -> R [..., 3, 3] by Gram-Schmidt.

    The first three numbers give the first row (normalized), the last three the second row
    (orthogonalized against the first, normalized); the third row is their cross product."""
    r6 = _as_tensor(r6, "rotation_6d_to_matrix", 6)
    a1, a2 = r6[..., :3], r6[..., 3:]
    b1 = a1 / (a1 * a1).sum(-1, keepdim=True).sqrt()
    a2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = a2 / (a2 * a2).sum(-1, keepdim=True).sqrt()
    b3 = ds.cross(b1, b2, dim=-1)
    return ds.stack([b1, b2, b3], -2)
