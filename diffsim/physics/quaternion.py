"""Unit quaternions for 3-D orientations, written with diffsim ops (differentiable).

Convention: a quaternion is a Tensor ``[..., 4]`` ordered **(w, x, y, z)** (scalar first),
Hamilton product, and ``q`` maps body-frame vectors to world-frame vectors:
``v_world = q ⊗ (0, v_body) ⊗ q*`` = ``quat_to_matrix(q) @ v_body``.
The identity rotation is ``(1, 0, 0, 0)``.
"""
from __future__ import annotations

import numpy as np

from ..autodiff import Tensor, as_tensor, cat, einsum

__all__ = ["quat_mul", "quat_conjugate", "quat_normalize", "quat_to_matrix", "quat_rotate",
           "quat_from_axis_angle", "cross3"]


def _np_hamilton(a, b):
    aw, av, bw, bv = a[0], a[1:], b[0], b[1:]
    return np.concatenate([[aw * bw - av @ bv], aw * bv + bw * av + np.cross(av, bv)])


def _np_matrix(q):
    """Homogeneous quadratic form of the rotation matrix (equals R for unit q)."""
    w, u = q[0], q[1:]
    ux = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    return (w * w - u @ u) * np.eye(3) + 2 * np.outer(u, u) + 2 * w * ux


_E4 = np.eye(4)
# constant tensors, so that each product is one einsum (one graph node) instead of dozens
_HAMILTON = np.stack([np.stack([_np_hamilton(_E4[j], _E4[k]) for k in range(4)], -1)
                      for j in range(4)], -2)                      # [i, j, k]
_ROT = np.zeros((3, 3, 4, 4))                                       # R_ij = C_ijab q_a q_b
for _a in range(4):
    for _b in range(4):
        _ROT[:, :, _a, _b] = (_np_matrix(_E4[_a] + _E4[_b]) - _np_matrix(_E4[_a]) - _np_matrix(_E4[_b])) / 2 \
            if _a != _b else _np_matrix(_E4[_a])
_LEVI = np.zeros((3, 3, 3))
for _i, _j, _k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
    _LEVI[_i, _j, _k], _LEVI[_i, _k, _j] = 1.0, -1.0
_CACHE = {}


def _const(name, arr, like):
    key = (name, like.dtype, str(like.device))
    t = _CACHE.get(key)
    if t is None:
        t = _CACHE[key] = as_tensor(arr, dtype=like.dtype, device=like.device)
    return t


def cross3(a, b):
    """Cross product of 3-vectors ``a [..., 3] x b [..., 3]`` (broadcast), as one einsum."""
    return einsum("ijk,...j,...k->...i", _const("levi", _LEVI, a), a, b)


def quat_mul(a, b):
    """Hamilton product ``a ⊗ b``; ``a``, ``b`` ``[..., 4]`` (broadcast) -> ``[..., 4]``."""
    return einsum("ijk,...j,...k->...i", _const("hamilton", _HAMILTON, a), a, b)


def quat_conjugate(q):
    """``q* = (w, -x, -y, -z)``; ``[..., 4]`` -> ``[..., 4]`` (the inverse of a unit quaternion)."""
    return cat([q[..., :1], -q[..., 1:]], dim=-1)


def quat_normalize(q):
    """``q / |q|``; ``[..., 4]`` -> ``[..., 4]``."""
    return q / (q * q).sum(dim=-1, keepdim=True).sqrt()


def quat_to_matrix(q):
    """Rotation matrices ``[..., 3, 3]`` (body -> world) of unit quaternions ``[..., 4]``
    (the quadratic form ``(w^2 - |u|^2) I + 2 u u^T + 2 w [u]_x``, = R for unit q)."""
    return einsum("ijab,...a,...b->...ij", _const("rot", _ROT, q), q, q)


def quat_rotate(q, v):
    """Rotate body-frame vectors ``v [..., 3]`` by unit quaternions ``q [..., 4]`` (broadcast);
    returns ``[..., 3]``."""
    return einsum("...ij,...j->...i", quat_to_matrix(q), v)


def quat_from_axis_angle(axis, angle, dtype=None):
    """Unit quaternion of a rotation by ``angle [...]`` (radians) about ``axis [..., 3]``
    (normalized here): ``(cos(a/2), sin(a/2) axis)``. Returns ``[..., 4]``."""
    if dtype is None:
        dtype = next((t.dtype for t in (angle, axis) if isinstance(t, Tensor)), None)
    axis = axis if isinstance(axis, Tensor) else as_tensor(axis, dtype=dtype)
    angle = angle if isinstance(angle, Tensor) else as_tensor(angle, dtype=axis.dtype)
    axis = axis / (axis * axis).sum(dim=-1, keepdim=True).sqrt()
    half = angle.unsqueeze(-1) * 0.5
    return cat([half.cos(), half.sin() * axis], dim=-1)
