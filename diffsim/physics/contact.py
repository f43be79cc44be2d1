"""Smooth penalty contact with friction: ground planes and spheres.

A collider measures the signed distance ``phi`` of points to its surface (negative inside)
and the outward unit normal ``n``; ``penalty_force`` turns those into a force that is a
smooth function of the points, their velocities and every collider parameter::

    depth = s * softplus(-phi / s)                 # smoothed max(0, -phi); s = smoothing
    fn    = stiffness * depth - damping * sigmoid(-phi / s) * (v . n)   # normal push
    ft    = -friction * stiffness * depth * v_t / sqrt(|v_t|^2 + slip^2) # smooth Coulomb
    F     = fn n + ft

``v_t = v - (v . n) n`` is the tangential velocity. The friction term is Coulomb's
``-mu |f_n| v_t / |v_t|`` with the sign function regularized below the ``slip`` speed,
so it is differentiable everywhere and slows sliding without a discontinuity at rest.
Colliders know nothing about what the points belong to: mass-spring particles, particle
systems and rigid-body contact points can all call ``collider.force(x, v)``.

Every collider parameter (``normal``, ``offset``, ``centre``, ``radius``, ``stiffness``,
``damping``, ``friction``) is a Tensor attribute; make it require grad to optimize it.
"""
from __future__ import annotations

from ..autodiff import Tensor, float64, sigmoid, sqrt
from .system import Movable, as_param, check_positive

__all__ = ["Collider", "GroundPlane", "Sphere", "penalty_force"]


def penalty_force(phi, normal, v, stiffness, damping=0.0, friction=0.0, smoothing=1e-3, slip=1e-2):
    """Smooth penalty contact force (see the module docstring).

    Args:
        phi: signed distances ``[P]`` (negative: penetrating).
        normal: outward unit normals ``[P, D]`` or one ``[D]`` for all points.
        v: point velocities ``[P, D]``.
        stiffness, damping, friction: numbers or 0-d Tensors (force per unit depth, per unit
            normal speed inside contact, Coulomb coefficient).
        smoothing: length scale ``s`` of the softplus that smooths ``max(0, -phi)``.
        slip: speed below which friction is regularized (``tanh``-like).

    Returns:
        Force on each point, ``[P, D]``.
    """
    z = phi * (-1.0 / smoothing)
    depth = (z.relu() + (-z.abs()).exp().log1p()) * smoothing  # s softplus(-phi / s), stable  [P]
    vn = (v * normal).sum(-1)                                   # [P]
    fel = depth * stiffness                                     # elastic normal force, >= 0
    fn = fel
    if not _is_zero(damping):
        fn = fn - sigmoid(-phi * (1.0 / smoothing)) * vn * damping
    out = fn.unsqueeze(-1) * normal
    if not _is_zero(friction):
        vt = v - vn.unsqueeze(-1) * normal
        speed = sqrt((vt * vt).sum(-1) + slip * slip)
        out = out - vt * (fel * friction / speed).unsqueeze(-1)
    return out


def _like(param, x):
    """``param`` in ``x``'s dtype (a recorded cast, so gradients still reach it)."""
    return param if param.dtype == x.dtype else param.to(x.dtype)


def _is_zero(c):
    return (not isinstance(c, Tensor)) and c == 0


class Collider(Movable):
    """Base class: ``signed_distance(x) -> (phi [P], normal [P, D] or [D])`` and
    ``force(x, v) -> [P, D]`` (smooth penalty contact with friction).

    Args (shared by the subclasses):
        stiffness: normal stiffness (force per unit penetration), > 0.
        damping: normal damping inside contact (force per unit normal speed), >= 0.
        friction: Coulomb friction coefficient ``mu``, >= 0.
        smoothing: width of the smoothed penetration (length), > 0.
        slip: regularization speed of friction, > 0.
        thickness: contact happens at distance ``thickness`` from the surface (particle
            radius), >= 0.
    """

    def __init__(self, stiffness=1e4, damping=0.0, friction=0.0, smoothing=1e-3, slip=1e-2, thickness=0.0,
                 dtype=None):
        name = type(self).__name__
        # float64 parameters by default: vectors are cast to the points' dtype where used,
        # and 0-d ones never change it, so float32 and float64 simulations both work
        dtype = dtype or float64
        self.stiffness = as_param(stiffness, "stiffness", name, dtype=dtype)
        self.damping = as_param(damping, "damping", name, dtype=dtype)
        self.friction = as_param(friction, "friction", name, dtype=dtype)
        check_positive(self.stiffness, "stiffness", name)
        check_positive(self.damping, "damping", name, allow_zero=True)
        check_positive(self.friction, "friction", name, allow_zero=True)
        for attr, val in (("smoothing", smoothing), ("slip", slip)):
            if not float(val) > 0:
                raise ValueError(f"{name}: {attr} must be > 0, got {val!r}")
        if not float(thickness) >= 0:
            raise ValueError(f"{name}: thickness must be >= 0, got {thickness!r}")
        self.smoothing, self.slip, self.thickness = float(smoothing), float(slip), float(thickness)

    def signed_distance(self, x):
        raise NotImplementedError

    def force(self, x, v):
        """Contact force on points ``x [P, D]`` moving with ``v [P, D]``: ``[P, D]``."""
        phi, n = self.signed_distance(x)
        if self.thickness:
            phi = phi - self.thickness
        return penalty_force(phi, n, v, self.stiffness, self.damping, self.friction, self.smoothing, self.slip)

    def _check_dim(self, x, d):
        if x.ndim != 2 or x.shape[1] != d:
            raise ValueError(f"{type(self).__name__}: points must be [P, {d}] to match the collider's "
                             f"dimension {d}, got {list(x.shape)}")

    def __repr__(self):
        parts = [f"{k}={list(v.shape) if v.ndim else float(v.detach())}" for k, v in vars(self).items()
                 if isinstance(v, Tensor)]
        return f"{type(self).__name__}({', '.join(parts)})"


class GroundPlane(Collider):
    """The half-space ``x . n_hat >= offset`` (``n_hat = normal / |normal|``).

    Args:
        normal: ``[D]`` (D = 2 or 3), default ``(0, 1, 0)``; need not be unit length.
        offset: height of the plane along the normal (a number or 0-d Tensor).
        **kw: see ``Collider``.
    """

    def __init__(self, normal=(0.0, 1.0, 0.0), offset=0.0, **kw):
        super().__init__(**kw)
        self.normal = as_param(normal, "normal", "GroundPlane", dtype=self.stiffness.dtype)
        if self.normal.ndim != 1 or self.normal.shape[0] not in (2, 3):
            raise ValueError(f"GroundPlane: normal must have shape [2] or [3], got {list(self.normal.shape)}")
        if not float((self.normal.detach() ** 2).sum()) > 0:
            raise ValueError("GroundPlane: normal must be non-zero")
        self.offset = as_param(offset, "offset", "GroundPlane", dtype=self.stiffness.dtype, shape=())

    def signed_distance(self, x):
        """``phi = x . n_hat - offset`` ``[P]`` and ``n_hat`` ``[D]``."""
        self._check_dim(x, self.normal.shape[0])
        normal = _like(self.normal, x)
        n = normal / sqrt((normal * normal).sum())
        return (x * n).sum(-1) - self.offset, n


class Sphere(Collider):
    """A solid ball: points are pushed out to ``|x - centre| >= radius``.

    Args:
        centre: ``[D]`` (D = 2 (a disc) or 3).
        radius: > 0.
        **kw: see ``Collider``.
    """

    def __init__(self, centre, radius, **kw):
        super().__init__(**kw)
        self.centre = as_param(centre, "centre", "Sphere", dtype=self.stiffness.dtype)
        if self.centre.ndim != 1 or self.centre.shape[0] not in (2, 3):
            raise ValueError(f"Sphere: centre must have shape [2] or [3], got {list(self.centre.shape)}")
        self.radius = as_param(radius, "radius", "Sphere", dtype=self.stiffness.dtype, shape=())
        check_positive(self.radius, "radius", "Sphere")

    def signed_distance(self, x):
        """``phi = |x - centre| - radius`` ``[P]`` and normals ``[P, D]``."""
        self._check_dim(x, self.centre.shape[0])
        r = x - _like(self.centre, x)
        dist = sqrt((r * r).sum(-1) + 1e-24)
        return dist - self.radius, r / dist.unsqueeze(-1)
