"""Rigid bodies in 2-D and 3-D, with penalty contact and impulse collisions.

Two ``System`` subclasses (any integrator of ``integrators.py`` steps them):

* ``RigidBodies3D`` — state ``x [B, 3]`` (centre of mass), ``q [B, 4]`` (unit quaternion,
  **(w, x, y, z)**, body -> world; see ``quaternion.py``), ``v [B, 3]`` (linear velocity),
  ``w [B, 3]`` (angular velocity in the **world** frame). Kinematics ``x' = v``,
  ``q' = 0.5 (0, w) ⊗ q``; dynamics ``m v' = F`` and Euler's equations in the world frame
  ``I w' = tau - w x (I w)`` with ``I = R I_body R^T``. ``post_step`` renormalizes ``q``.
* ``RigidBodies2D`` — state ``x [B, 2]``, ``theta [B, 1]`` (angle, counter-clockwise),
  ``v [B, 2]``, ``w [B, 1]``; ``m v' = F``, ``I w' = tau`` with a scalar inertia.

Both are built from masses and inertias, or from shapes: ``RigidBodies3D.spheres(radius,
density=... | mass=...)``, ``RigidBodies3D.boxes(half_extents, ...)``,
``RigidBodies2D.discs(...)``, ``RigidBodies2D.boxes(...)``. Forces and torques come from
gravity, linear drag (``drag``, applied exactly by the symplectic integrators), quadratic
air drag ``-k |v| v``, a user callable ``force(state, t, control) -> F or (F, tau)``, the
per-step control (``[B, D]`` force, or ``[B, D + A]`` force and torque, ``A`` = 3 in 3-D
and 1 in 2-D, when no ``force`` callable takes it), and contacts:

* ``PenaltyGround`` — smooth penalty contact with a plane (``n . p >= height``) with
  damping and smoothed Coulomb friction, at the contact points of each body (the centre of
  a sphere/disc with its radius; the corners of a box). Differentiable in ``height``,
  ``stiffness``, ``damping``, ``friction``.
* ``PenaltySphereContact`` — the same between pairs of spheres (body-body contact).
* ``ImpulseCollisions`` — elastic / inelastic collisions of spheres (restitution ``e``)
  with each other and with planes (ground, walls), resolved in ``post_step`` with a
  time-of-impact (TOI) correction: the motion inside the step is taken as linear,
  ``x(s) = x0 + u s`` with ``u = (x1 - x0) / dt``; the TOI ``s*`` solves
  ``|x_ij + u_ij s| = r_i + r_j`` (a quadratic) or ``n . x(s) = h + r`` (linear); the
  impulse is applied there and the rest of the step ``dt - s*`` is travelled with the
  post-collision velocity. Then the final position is a smooth function of the initial
  velocity across a collision (as in DiffTaichi's billiards), so its gradient is right;
  ``toi=False`` gives the naive scheme (velocities change, positions do not), whose
  gradient is wrong. Vectorized over all pairs (enumerated once, at construction).

Parameters a user may optimize (masses, inertias, radii, gravity, drag, contact stiffness,
restitution, plane heights, ...) are ordinary Tensors and receive gradients.
"""
from __future__ import annotations

import numpy as np

from ..autodiff import Tensor, as_tensor, cat, einsum, segment_sum, stack, where, zeros
from .contact import penalty_force
from .quaternion import cross3, quat_mul, quat_normalize, quat_rotate, quat_to_matrix
from .state import State
from .system import Movable, System, as_param, check_positive

__all__ = ["RigidBodies2D", "RigidBodies3D", "PenaltyGround", "PenaltySphereContact",
           "ImpulseCollisions", "sphere_inertia", "box_inertia", "disc_inertia", "box2d_inertia"]

_PI = float(np.pi)


# ---------------------------------------------------------------- mass properties

def sphere_inertia(mass, radius):
    """Principal moments of solid spheres: ``mass [B]``, ``radius [B]`` -> ``[B, 3]``
    (``2/5 m r^2`` each)."""
    m = (0.4 * mass * radius * radius).unsqueeze(-1)
    return cat([m, m, m], dim=-1)


def box_inertia(mass, half_extents):
    """Principal moments of solid boxes: ``mass [B]``, ``half_extents [B, 3]`` (a, b, c) ->
    ``[B, 3]`` = ``m/3 (b^2 + c^2, a^2 + c^2, a^2 + b^2)``."""
    s = half_extents * half_extents
    moments = stack([s[:, 1] + s[:, 2], s[:, 0] + s[:, 2], s[:, 0] + s[:, 1]], dim=-1)
    return moments * (mass / 3.0).unsqueeze(-1)


def disc_inertia(mass, radius):
    """Moment of inertia of uniform discs about their centre: ``[B]`` -> ``[B]`` (``m r^2 / 2``)."""
    return 0.5 * mass * radius * radius


def box2d_inertia(mass, half_extents):
    """Moment of inertia of uniform rectangles: ``mass [B]``, ``half_extents [B, 2]`` -> ``[B]``
    (``m (a^2 + b^2) / 3``)."""
    return mass * (half_extents * half_extents).sum(dim=-1) / 3.0


# ---------------------------------------------------------------- small helpers

def _dot(a, b):
    """``sum(a * b)`` over the last dim, kept: ``[..., D] -> [..., 1]``."""
    return (a * b).sum(dim=-1, keepdim=True)


def _point_velocity(w, r, dim):
    """Velocity ``w x r`` of an offset ``r [..., D]`` on a body spinning with ``w`` (``[..., 3]``
    in 3-D, ``[..., 1]`` in 2-D), broadcasting."""
    if dim == 3:
        return cross3(w, r)
    return cat([-w * r[..., 1:2], w * r[..., 0:1]], dim=-1)


def _torque(r, f, dim):
    """Torque ``r x f`` of a force ``f`` at offset ``r``: ``[..., 3]`` in 3-D, ``[..., 1]`` in 2-D."""
    if dim == 3:
        return cross3(r, f)
    return r[..., 0:1] * f[..., 1:2] - r[..., 1:2] * f[..., 0:1]


def _index(ids, like):
    return as_tensor(np.asarray(ids, dtype=np.int64), device=like.device)


# ---------------------------------------------------------------- contacts

class PenaltyGround(Movable):
    """Smooth penalty contact with the plane ``normal . p = height`` (bodies stay on the side
    the normal points to), with damping and smoothed Coulomb friction.

    For a contact point ``p`` with radius ``r`` (sphere/disc centre, or a box corner with
    ``r = 0``) moving with ``u``: penetration ``d = r + height - n . p``, smoothed as
    ``pen = s softplus(d / s)``; normal force ``k pen - c (u . n) sigmoid(d / s)``; friction
    ``-mu k pen u_t / sqrt(|u_t|^2 + eps^2)`` against the tangential velocity ``u_t``.

    Args:
        normal: plane normal ``[D]`` (normalized here; default: +z in 3-D, +y in 2-D).
        height: plane offset along the normal (number or Tensor).
        stiffness ``k``, damping ``c`` (per unit normal speed), friction ``mu``: numbers or
            Tensors (>= 0).
        smoothing ``s``: length scale of the softplus (> 0); eps: friction velocity scale.
    """

    def __init__(self, normal=None, height=0.0, stiffness=1e4, damping=10.0, friction=0.5,
                 smoothing=1e-3, eps=1e-2):
        own = "PenaltyGround"
        self.normal = None if normal is None else as_param(normal, "normal", own)
        self.height = as_param(height, "height", own)
        self.stiffness = as_param(stiffness, "stiffness", own)
        self.damping = as_param(damping, "damping", own)
        self.friction = as_param(friction, "friction", own)
        for name in ("stiffness", "damping", "friction"):
            check_positive(getattr(self, name), name, own, allow_zero=True)
        if not smoothing > 0 or not eps > 0:
            raise ValueError(f"{own}: smoothing and eps must be > 0, got {smoothing!r}, {eps!r}")
        self.smoothing, self.eps = float(smoothing), float(eps)

    def _n(self, dim, like):
        n = self.normal
        if n is None:
            n = as_tensor(np.eye(dim)[-1], dtype=like.dtype, device=like.device)
        elif n.shape != (dim,):
            raise ValueError(f"PenaltyGround: normal must have shape [{dim}], got {list(n.shape)}")
        return n / (n * n).sum().sqrt()

    def forces(self, system, state):
        """Force ``[B, D]`` and torque ``[B, A]`` on each body from the ground."""
        dim = system.dim
        r, rad = system.contact_points(state)             # [B, K, D], [B, K]
        p = state.x.unsqueeze(1) + r
        n = self._n(dim, p)
        arm = r - rad.unsqueeze(-1) * n                   # centre -> touching point
        u = state.v.unsqueeze(1) + _point_velocity(state.w.unsqueeze(1), arm, dim)
        s = self.smoothing
        phi = _dot(p, n).squeeze(-1) - rad - self.height    # signed distance [B, K]
        f = penalty_force(phi, n, u, self.stiffness, self.damping, self.friction, s, self.eps)
        return f.sum(dim=1), _torque(arm, f, dim).sum(dim=1)

    def __repr__(self):
        return f"PenaltyGround(height={float(self.height.detach()):g}, smoothing={self.smoothing:g})"


class PenaltySphereContact(Movable):
    """Smooth penalty contact between pairs of spheres (discs in 2-D) with damping and
    smoothed friction; the same law as ``PenaltyGround`` with ``d = r_i + r_j - |x_i - x_j|``.

    Args:
        stiffness, damping, friction: numbers or Tensors (>= 0).
        pairs: ``[P, 2]`` int array of body pairs, or None for all pairs ``i < j``.
        smoothing, eps: as in ``PenaltyGround``.
    """

    def __init__(self, stiffness=1e4, damping=10.0, friction=0.0, pairs=None, smoothing=1e-3, eps=1e-2):
        own = "PenaltySphereContact"
        self.stiffness = as_param(stiffness, "stiffness", own)
        self.damping = as_param(damping, "damping", own)
        self.friction = as_param(friction, "friction", own)
        for name in ("stiffness", "damping", "friction"):
            check_positive(getattr(self, name), name, own, allow_zero=True)
        self.pairs = None if pairs is None else np.asarray(pairs, dtype=np.int64)
        if not smoothing > 0 or not eps > 0:
            raise ValueError(f"{own}: smoothing and eps must be > 0, got {smoothing!r}, {eps!r}")
        self.smoothing, self.eps = float(smoothing), float(eps)

    def forces(self, system, state):
        """Force ``[B, D]`` and torque ``[B, A]`` on each body from sphere-sphere contacts."""
        dim, nb = system.dim, system.n_bodies
        i, j = system.pair_indices(self.pairs, "PenaltySphereContact")
        if len(i) == 0:
            return None, None
        ii, jj = _index(i, state.x), _index(j, state.x)
        rad = system.require_radius("PenaltySphereContact")
        ri, rj = rad[ii].unsqueeze(-1), rad[jj].unsqueeze(-1)
        dx = state.x[ii] - state.x[jj]
        dist = ((dx * dx).sum(dim=-1, keepdim=True) + 1e-24).sqrt()
        n = dx / dist                                      # from j to i
        s = self.smoothing
        d = ri + rj - dist                                 # overlap [P, 1]
        # both forces act at one point, the middle of the overlap, so that the pair exerts no
        # net torque (angular momentum is conserved)
        arm_i = -(ri - 0.5 * d) * n
        arm_j = arm_i + dx
        u = (state.v[ii] + _point_velocity(state.w[ii], arm_i, dim)
             - state.v[jj] - _point_velocity(state.w[jj], arm_j, dim))
        f = penalty_force(-d.squeeze(-1), n, u, self.stiffness, self.damping, self.friction, s,
                          self.eps)                        # on i
        ids = _index(np.concatenate([i, j]), state.x)
        force = segment_sum(cat([f, -f], dim=0), ids, nb)
        torque = segment_sum(cat([_torque(arm_i, f, dim), _torque(arm_j, -f, dim)], dim=0), ids, nb)
        return force, torque

    def __repr__(self):
        return f"PenaltySphereContact(smoothing={self.smoothing:g})"


class ImpulseCollisions(Movable):
    """Impulse-based collisions of spheres (discs in 2-D) with each other and with planes,
    resolved after each step with a time-of-impact correction (see the module docstring).

    Args:
        restitution: ``e`` for sphere-sphere collisions (1: elastic), number or Tensor in [0, 1].
        planes: list of ``(normal [D], height)``: a sphere stays where ``n . x >= height + r``
            (ground, table cushions); normals are normalized; heights may be Tensors.
        plane_restitution: ``e`` for sphere-plane collisions (default: ``restitution``).
        pairs: ``[P, 2]`` body pairs that collide, None for all pairs ``i < j``, or False
            for none (planes only).
        toi: apply the time-of-impact correction (True); False is the naive scheme
            (velocity impulse only, no position correction), kept for comparison.

    The collision test (which pairs hit in a step) is not differentiated; everything else
    (TOI, normal, impulse, corrected positions) is, w.r.t. the state, masses, radii,
    restitution and plane heights. Bodies in several collisions in one step get the sum of
    the impulses.
    """

    def __init__(self, restitution=1.0, planes=(), plane_restitution=None, pairs=None, toi=True):
        own = "ImpulseCollisions"
        self.restitution = as_param(restitution, "restitution", own)
        self.plane_restitution = (self.restitution if plane_restitution is None
                                  else as_param(plane_restitution, "plane_restitution", own))
        for name in ("restitution", "plane_restitution"):
            e = getattr(self, name).detach()
            if e.numel() and bool(((e < 0) | (e > 1) | ~e.isfinite()).any()):
                raise ValueError(f"{own}: {name} must lie in [0, 1], got {e.tolist()}")
        self.planes = []
        for k, pl in enumerate(planes):
            if not isinstance(pl, (tuple, list)) or len(pl) != 2:
                raise ValueError(f"{own}: planes[{k}] must be a pair (normal, height), got {pl!r}")
            self.planes.append((as_param(pl[0], f"planes[{k}] normal", own),
                                as_param(pl[1], f"planes[{k}] height", own)))
        self.pairs = pairs if pairs is None or pairs is False else np.asarray(pairs, dtype=np.int64)
        self.toi = bool(toi)

    def apply(self, system, state, prev, dt):
        """Resolve the collisions of the step ``prev -> state``; returns the corrected State."""
        rad = system.require_radius("ImpulseCollisions")
        x0, x1, v1 = prev.x, state.x, state.v
        u = (x1 - x0) / dt                                 # mean velocity over the step
        dv, dx = None, None
        if self.pairs is not False:
            i, j = system.pair_indices(self.pairs, "ImpulseCollisions")
            if len(i):
                dv, dx = self._pairs(system, i, j, rad, x0, x1, u, v1, dt)
        for normal, height in self.planes:
            # against the velocities that the sphere-sphere impulses (and earlier planes) left
            pv, px = self._plane(system, normal, height, rad, x0, x1, u, v1 if dv is None else v1 + dv, dt)
            dv = pv if dv is None else dv + pv
            dx = px if dx is None else dx + px
        if dv is None:
            return state
        return state.replace(x=x1 + dx, v=v1 + dv)

    # sphere-sphere --------------------------------------------------------------
    def _pairs(self, system, i, j, rad, x0, x1, u, v1, dt):
        ii, jj = _index(i, x0), _index(j, x0)
        mi, mj = system.mass[ii].unsqueeze(-1), system.mass[jj].unsqueeze(-1)
        R = (rad[ii] + rad[jj]).unsqueeze(-1)
        x0ij, uij = x0[ii] - x0[jj], u[ii] - u[jj]
        x1ij = x1[ii] - x1[jj]
        a, b = _dot(uij, uij), 2.0 * _dot(x0ij, uij)
        c = _dot(x0ij, x0ij) - R * R
        with_hit = ((_dot(x1ij, x1ij) < R * R) & (b < 0)).detach()
        if not bool(with_hit.any()):
            zero = zeros(*x0.shape, dtype=x0.dtype, device=x0.device)
            return zero, zero
        one = a.detach() * 0 + 1
        if self.toi:
            a_s = where(with_hit, a, one)
            disc = where(with_hit, b * b - 4.0 * a * c, one)
            tau = ((-b - disc.sqrt()) / (2.0 * a_s)).clamp(0.0, dt)
            rel = x0ij + uij * tau                          # separation at the time of impact
        else:
            tau, rel = None, x1ij
        dist2 = where(with_hit, _dot(rel, rel), one)
        n = rel / dist2.sqrt()
        cand = np.flatnonzero(np.asarray(with_hit.cpu().numpy()).reshape(-1))
        ends = np.concatenate([i[cand], j[cand]])
        if len(np.unique(ends)) < len(ends):
            # a body in several collisions at once: resolve them one after the other
            return self._sequential(system, i, j, cand, n, tau, v1, dt)
        vn = _dot(v1[ii] - v1[jj], n)
        hit = (with_hit & (vn < 0)).detach()
        e = self.restitution
        jmag = -(1.0 + e) * vn / (1.0 / mi + 1.0 / mj)
        jmag = where(hit, jmag, jmag.detach() * 0)
        dvi, dvj = jmag * n / mi, -jmag * n / mj
        ids = _index(np.concatenate([i, j]), x0)
        nb = system.n_bodies
        dv = segment_sum(cat([dvi, dvj], dim=0), ids, nb)
        if tau is None:
            return dv, dv * 0.0
        rest = dt - tau
        dx = segment_sum(cat([dvi * rest, dvj * rest], dim=0), ids, nb)
        return dv, dx

    def _sequential(self, system, i, j, cand, n, tau, v1, dt):
        """Simultaneous collisions that share bodies (a body hit from two sides, a row of
        touching spheres): Gauss-Seidel sweeps over the colliding pairs, each impulse computed
        from the velocities the previous ones left, until no pair approaches. Summing impulses
        computed from the same pre-collision velocities instead would not conserve energy
        (three equal discs, the outer two moving in, would all stop)."""
        e = self.restitution
        e_flat = None if e.numel() == 1 else e.reshape(-1)
        m = system.mass
        nb = system.n_bodies
        v = v1
        dv = dx = None
        for _ in range(4 * len(cand) + 4):
            moved = False
            for p in cand:
                a, b = int(i[p]), int(j[p])
                n_p = n[int(p)]
                vn = ((v[a] - v[b]) * n_p).sum()
                if not float(vn.detach()) < 0:
                    continue
                moved = True
                e_p = e.reshape(()) if e_flat is None else e_flat[int(p)]
                jmag = -(1.0 + e_p) * vn / (1.0 / m[a] + 1.0 / m[b])
                upd = segment_sum(stack([jmag * n_p / m[a], -jmag * n_p / m[b]]),
                                  _index([a, b], v1), nb)
                v = v + upd
                dv = upd if dv is None else dv + upd
                if tau is not None:
                    step = upd * (dt - tau[int(p)])
                    dx = step if dx is None else dx + step
            if not moved:
                break
        if dv is None:
            zero = v1 * 0.0
            return zero, zero
        return dv, (dv * 0.0 if dx is None else dx)

    # sphere-plane ---------------------------------------------------------------
    def _plane(self, system, normal, height, rad, x0, x1, u, v1, dt):
        if normal.shape != (system.dim,):
            raise ValueError(f"ImpulseCollisions: plane normal must have shape [{system.dim}], "
                             f"got {list(normal.shape)}")
        n = normal / (normal * normal).sum().sqrt()
        r = rad.unsqueeze(-1)
        d0 = _dot(x0, n) - height - r
        d1 = _dot(x1, n) - height - r
        un = _dot(u, n)
        vn = _dot(v1, n)
        hit = ((d1 < 0) & (un < 0) & (vn < 0)).detach()
        if not bool(hit.any()):
            zero = x0 * 0.0
            return zero, zero
        e = self.plane_restitution
        dv = where(hit, -(1.0 + e) * vn, vn.detach() * 0) * n
        if not self.toi:
            return dv, dv * 0.0
        un_s = where(hit, un, un.detach() * 0 - 1)
        tau = (d0 / (-un_s)).clamp(0.0, dt)
        return dv, dv * (dt - tau)

    def __repr__(self):
        return f"ImpulseCollisions(planes={len(self.planes)}, toi={self.toi})"


# ---------------------------------------------------------------- systems

class _RigidBodies(System):
    """What 2-D and 3-D rigid bodies share: masses, shapes, forces, contacts, checks."""
    dim = None          # D
    ang_dim = None      # A: components of w (3 in 3-D, 1 in 2-D)

    def _setup(self, own, mass, radius, half_extents, gravity, force, linear_drag, angular_drag,
               air_drag, contacts, impulses):
        self.mass = as_param(mass, "mass", own)
        if self.mass.dim() != 1:
            raise ValueError(f"{own}: mass must have shape [B], got {list(self.mass.shape)}")
        check_positive(self.mass, "mass", own)
        B, D = self.mass.shape[0], self.dim
        dt_kw = dict(dtype=self.mass.dtype, device=self.mass.device)
        self.radius = None if radius is None else as_param(radius, "radius", own, **dt_kw)
        if self.radius is not None:
            if tuple(self.radius.shape) != (B,):
                raise ValueError(f"{own}: radius must have shape [B] = [{B}], got {list(self.radius.shape)}")
            check_positive(self.radius, "radius", own)
        self.half_extents = None if half_extents is None else as_param(half_extents, "half_extents", own, **dt_kw)
        if self.half_extents is not None:
            if tuple(self.half_extents.shape) != (B, D):
                raise ValueError(f"{own}: half_extents must have shape [B, {D}] = [{B}, {D}], got "
                                 f"{list(self.half_extents.shape)}")
            check_positive(self.half_extents, "half_extents", own)
        if self.radius is not None and self.half_extents is not None:
            raise ValueError(f"{own}: give radius (spheres) or half_extents (boxes), not both")
        if gravity is None:
            gravity = [0.0] * D
        self.gravity = as_param(gravity, "gravity", own, **dt_kw)
        if tuple(self.gravity.shape) != (D,):
            raise ValueError(f"{own}: gravity must have shape [{D}], got {list(self.gravity.shape)}")
        if force is not None and not callable(force):
            raise TypeError(f"{own}: force must be callable force(state, t, control), got {type(force).__name__}")
        self.force = force
        self.linear_drag = None if linear_drag is None else as_param(linear_drag, "linear_drag", own, **dt_kw)
        self.angular_drag = None if angular_drag is None else as_param(angular_drag, "angular_drag", own, **dt_kw)
        self.air_drag = None if air_drag is None else as_param(air_drag, "air_drag", own, **dt_kw)
        for name in ("linear_drag", "angular_drag", "air_drag"):
            t = getattr(self, name)
            if t is not None:
                check_positive(t, name, own, allow_zero=True)
        contacts = [] if contacts is None else (list(contacts) if isinstance(contacts, (list, tuple)) else [contacts])
        for c in contacts:
            if not hasattr(c, "forces"):
                raise TypeError(f"{own}: contacts must be PenaltyGround / PenaltySphereContact objects, "
                                f"got {type(c).__name__}")
        self.contacts = contacts
        if impulses is not None and not isinstance(impulses, ImpulseCollisions):
            raise TypeError(f"{own}: impulses must be an ImpulseCollisions, got {type(impulses).__name__}")
        self.impulses = impulses
        self._pairs_cache = {}

    @property
    def n_bodies(self):
        return self.mass.shape[0]

    @property
    def drag(self):
        d = {}
        if self.linear_drag is not None:
            d["v"] = self.linear_drag
        if self.angular_drag is not None:
            d["w"] = self.angular_drag
        return d

    def parameters(self):
        """Tensors of the system and of its contacts that require grad."""
        out = super().parameters()
        seen = {id(p) for p in out}
        for obj in list(self.contacts) + ([self.impulses] if self.impulses is not None else []):
            cand = [v for v in vars(obj).values() if isinstance(v, Tensor)]
            for pl in getattr(obj, "planes", []):
                cand.extend(pl)
            for v in cand:
                if v.requires_grad and id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out

    # shapes ---------------------------------------------------------------------
    def require_radius(self, who):
        if self.radius is None:
            raise ValueError(f"{who}: needs spherical bodies (build the system with radius=..., e.g. "
                             f"{type(self).__name__}.{'spheres' if self.dim == 3 else 'discs'}(...))")
        return self.radius

    def pair_indices(self, pairs, who):
        """Body pairs ``(i [P], j [P])`` as numpy int arrays (all ``i < j`` when ``pairs`` is None)."""
        if pairs is None:
            i, j = np.triu_indices(self.n_bodies, k=1)
            return i.astype(np.int64), j.astype(np.int64)
        p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        if p.size and (p.min() < 0 or p.max() >= self.n_bodies or (p[:, 0] == p[:, 1]).any()):
            raise ValueError(f"{who}: pairs must hold distinct body indices in [0, {self.n_bodies}), "
                             f"got {p.tolist()}")
        return p[:, 0], p[:, 1]

    def contact_points(self, state):
        """Contact points relative to the centres, in the world frame, and their radii:
        ``r [B, K, D]``, ``radius [B, K]`` — spheres: ``K = 1`` (the centre, radius r);
        boxes: ``K = 2^D`` corners (radius 0)."""
        x = state.x
        if self.radius is not None:
            return x.unsqueeze(1) * 0.0, self.radius.unsqueeze(-1)
        if self.half_extents is None:
            raise ValueError(f"{type(self).__name__}: contact needs shapes (radius= or half_extents=)")
        signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * self.dim, indexing="ij")).reshape(self.dim, -1).T
        corners = self.half_extents.unsqueeze(1) * as_tensor(signs, dtype=x.dtype, device=x.device)
        r = self.to_world(state, corners)
        return r, r[..., 0] * 0.0

    # forces ---------------------------------------------------------------------
    def external(self, state, t, control=None):
        """Total force ``[B, D]`` and torque ``[B, A]`` on each body (gravity, air drag, user
        force, control, penalty contacts; linear drag is in ``drag``)."""
        B, D, A = self.n_bodies, self.dim, self.ang_dim
        f = self.mass.unsqueeze(-1) * self.gravity
        tau = None
        if self.air_drag is not None:
            speed = ((state.v * state.v).sum(dim=-1, keepdim=True) + 1e-24).sqrt()
            f = f - self.air_drag * speed * state.v
        if self.force is not None:
            out = self.force(state, t, control)
            uf, ut = out if isinstance(out, tuple) else (out, None)
            if uf is not None:
                f = f + uf
            if ut is not None:
                tau = ut
        elif control is not None:
            c = control if isinstance(control, Tensor) else as_tensor(control, dtype=f.dtype, device=f.device)
            if tuple(c.shape) == (B, D):
                f = f + c
            elif tuple(c.shape) == (B, D + A):
                f, tau = f + c[:, :D], c[:, D:]
            else:
                raise ValueError(f"{type(self).__name__}: a control must have shape [B, {D}] (force) or "
                                 f"[B, {D + A}] (force, torque), got {list(c.shape)}; or pass force=callable")
        for contact in self.contacts:
            cf, ct = contact.forces(self, state)
            if cf is not None:
                f = f + cf
                tau = ct if tau is None else tau + ct
        if tau is None:
            tau = state.w * 0.0
        return f, tau

    # checks ---------------------------------------------------------------------
    def state_shapes(self):
        B = self.n_bodies
        return {f: (B, n) for f, n in self._field_sizes().items()}

    def check_state(self, state, opname="simulate"):
        from .state import State as _S
        if isinstance(state, _S):
            for f, n in self._field_sizes().items():
                if f in state and (state[f].dim() != 2 or state[f].shape[-1] != n):
                    extra = " (unit quaternions, (w, x, y, z))" if f == "q" else ""
                    raise ValueError(f"{opname}: {type(self).__name__} state field {f!r} must have shape "
                                     f"[B, {n}] = [{self.n_bodies}, {n}]{extra}, got {list(state[f].shape)}")
        super().check_state(state, opname)
        for f in self._field_sizes():
            if state[f].dtype != self.mass.dtype:
                raise TypeError(f"{opname}: {type(self).__name__} state field {f!r} has dtype {state[f].dtype} "
                                f"but the system's parameters (mass) are {self.mass.dtype}; convert one with "
                                ".to(dtype) (e.g. build the bodies from float32 tensors)")

    def linear_momentum(self, state):
        """Total linear momentum ``sum m v`` ``[D]``."""
        return (self.mass.unsqueeze(-1) * state.v).sum(dim=0)

    def kinetic_energy(self, state):
        """Translational plus rotational kinetic energy, a 0-d Tensor."""
        lin = 0.5 * (self.mass * (state.v * state.v).sum(dim=-1)).sum()
        return lin + 0.5 * (state.w * self.world_angular_momentum(state)).sum()

    def energy(self, state):
        """Kinetic energy plus gravitational potential energy ``-m g . x`` (contacts excluded)."""
        return self.kinetic_energy(state) - (self.mass * (state.x * self.gravity).sum(dim=-1)).sum()

    def angular_momentum(self, state):
        """Total angular momentum about the origin, ``sum (x x m v + I w)``: ``[3]`` in 3-D,
        ``[1]`` in 2-D."""
        orbital = _torque(state.x, self.mass.unsqueeze(-1) * state.v, self.dim)
        return (orbital + self.world_angular_momentum(state)).sum(dim=0)


class RigidBodies3D(_RigidBodies):
    """3-D rigid bodies (see the module docstring).

    Args:
        mass: ``[B]`` (> 0).
        inertia: body-frame inertia, ``[B, 3]`` principal moments or ``[B, 3, 3]`` symmetric
            positive definite tensors. Use ``spheres``/``boxes`` to derive both from shapes.
        radius: ``[B]`` sphere radii (needed for sphere contacts and impulses), or
        half_extents: ``[B, 3]`` box half extents (boxes touch the ground at their corners).
        gravity: ``[3]`` acceleration (default ``(0, 0, -9.81)``: z is up).
        force: optional ``force(state, t, control) -> F [B, 3]`` or ``(F, tau [B, 3])``, world
            frame, torque about the centre of mass.
        linear_drag, angular_drag: ``dv/dt = ... - c v``, ``dw/dt = ... - c w`` (numbers or
            Tensors broadcasting against ``[B, 3]``).
        air_drag: quadratic drag ``F = -k |v| v``.
        contacts: a ``PenaltyGround`` / ``PenaltySphereContact`` or a list of them.
        impulses: an ``ImpulseCollisions`` (spheres only).

    State: ``x [B, 3]``, ``q [B, 4]`` (w, x, y, z), ``v [B, 3]``, ``w [B, 3]`` (world frame).
    """
    position_fields = ("x", "q")
    velocity_fields = ("v", "w")
    dim, ang_dim = 3, 3

    def __init__(self, mass, inertia, radius=None, half_extents=None, gravity=(0.0, 0.0, -9.81),
                 force=None, linear_drag=None, angular_drag=None, air_drag=None, contacts=None,
                 impulses=None):
        own = "RigidBodies3D"
        self._setup(own, mass, radius, half_extents, gravity, force, linear_drag, angular_drag,
                    air_drag, contacts, impulses)
        B = self.n_bodies
        inertia = as_param(inertia, "inertia", own, dtype=self.mass.dtype, device=self.mass.device)
        if tuple(inertia.shape) == (B, 3):
            check_positive(inertia, "inertia", own)
            eye = as_tensor(np.eye(3), dtype=inertia.dtype, device=inertia.device)
            self.inertia = inertia.unsqueeze(-1) * eye
            self.inertia_inv = (1.0 / inertia).unsqueeze(-1) * eye
        elif tuple(inertia.shape) == (B, 3, 3):
            arr = np.asarray(inertia.detach().cpu().numpy(), dtype=np.float64)
            if not np.allclose(arr, np.swapaxes(arr, 1, 2)) or (np.linalg.eigvalsh(arr) <= 0).any():
                raise ValueError(f"{own}: inertia [B, 3, 3] must be symmetric positive definite")
            from ..autodiff import linalg
            self.inertia = inertia
            self.inertia_inv = linalg.inv(inertia)
        else:
            raise ValueError(f"{own}: inertia must have shape [B, 3] or [B, 3, 3] with B = {B}, "
                             f"got {list(inertia.shape)}")

    @classmethod
    def spheres(cls, radius, density=None, mass=None, **kwargs):
        """Solid spheres of ``radius [B]`` from ``density`` (mass ``4/3 pi r^3 rho``) or ``mass [B]``."""
        radius, mass = _shape_mass("RigidBodies3D.spheres", radius, density, mass,
                                   lambda r: 4.0 / 3.0 * _PI * r ** 3, vector=False)
        return cls(mass, sphere_inertia(mass, radius), radius=radius, **kwargs)

    @classmethod
    def boxes(cls, half_extents, density=None, mass=None, **kwargs):
        """Solid boxes of ``half_extents [B, 3]`` from ``density`` (mass ``8 a b c rho``) or ``mass [B]``."""
        he, mass = _shape_mass("RigidBodies3D.boxes", half_extents, density, mass,
                               lambda h: 8.0 * h[:, 0] * h[:, 1] * h[:, 2], vector=True)
        return cls(mass, box_inertia(mass, he), half_extents=he, **kwargs)

    def _field_sizes(self):
        return {"x": 3, "q": 4, "v": 3, "w": 3}

    def initial_state(self, x, q=None, v=None, w=None):
        """A State with ``x [B, 3]`` and defaults: identity orientations, zero velocities."""
        x = as_param(x, "x", "RigidBodies3D.initial_state", dtype=self.mass.dtype)
        B = x.shape[0]
        if q is None:
            q = as_tensor(np.tile([1.0, 0.0, 0.0, 0.0], (B, 1)), dtype=x.dtype, device=x.device)
        return State(x=x, q=_arg(q, x), v=_arg(v, x, (B, 3)), w=_arg(w, x, (B, 3)))

    def to_world(self, state, r_body):
        """Rotate body-frame offsets ``[B, K, 3]`` into the world frame."""
        return quat_rotate(state.q.unsqueeze(1), r_body)

    def rotation(self, state):
        """Rotation matrices ``[B, 3, 3]`` (body -> world)."""
        return quat_to_matrix(state.q)

    def world_angular_momentum(self, state):
        """Spin angular momentum ``I_world w = R I_body R^T w`` ``[B, 3]``."""
        R = self.rotation(state)
        return einsum("bij,bj->bi", R, einsum("bij,bj->bi", self.inertia, einsum("bji,bj->bi", R, state.w)))

    def kinematics(self, state):
        zero = state.w[:, :1] * 0.0
        return {"x": state.v, "q": 0.5 * quat_mul(cat([zero, state.w], dim=-1), state.q)}

    def acceleration(self, state, t, control=None):
        f, tau = self.external(state, t, control)
        R = self.rotation(state)
        L = einsum("bij,bj->bi", R, einsum("bij,bj->bi", self.inertia, einsum("bji,bj->bi", R, state.w)))
        rhs = tau - cross3(state.w, L)
        wdot = einsum("bij,bj->bi", R, einsum("bij,bj->bi", self.inertia_inv, einsum("bji,bj->bi", R, rhs)))
        return {"v": f / self.mass.unsqueeze(-1), "w": wdot}

    def post_step(self, state, prev, t, dt):
        state = state.replace(q=quat_normalize(state.q))
        if self.impulses is not None:
            state = self.impulses.apply(self, state, prev, dt)
        return state

    def check_state(self, state, opname="simulate"):
        super().check_state(state, opname)
        qn = (state.q.detach() ** 2).sum(dim=-1)
        if bool((qn < 1e-12).any()):
            raise ValueError(f"{opname}: RigidBodies3D state field 'q' holds a zero quaternion; "
                             "orientations must be unit quaternions (w, x, y, z)")


class RigidBodies2D(_RigidBodies):
    """2-D rigid bodies (see the module docstring).

    Args:
        mass: ``[B]`` (> 0); inertia: ``[B]`` moments about the centre of mass (> 0).
        radius: ``[B]`` disc radii, or half_extents: ``[B, 2]`` box half extents.
        gravity: ``[2]`` (default ``(0, -9.81)``: y is up; use ``(0, 0)`` for a table top).
        force: optional ``force(state, t, control) -> F [B, 2]`` or ``(F, tau [B, 1])``.
        linear_drag, angular_drag, air_drag, contacts, impulses: as in ``RigidBodies3D``.

    State: ``x [B, 2]``, ``theta [B, 1]``, ``v [B, 2]``, ``w [B, 1]``.
    """
    position_fields = ("x", "theta")
    velocity_fields = ("v", "w")
    dim, ang_dim = 2, 1

    def __init__(self, mass, inertia, radius=None, half_extents=None, gravity=(0.0, -9.81),
                 force=None, linear_drag=None, angular_drag=None, air_drag=None, contacts=None,
                 impulses=None):
        own = "RigidBodies2D"
        self._setup(own, mass, radius, half_extents, gravity, force, linear_drag, angular_drag,
                    air_drag, contacts, impulses)
        self.inertia = as_param(inertia, "inertia", own, dtype=self.mass.dtype, device=self.mass.device)
        if tuple(self.inertia.shape) != (self.n_bodies,):
            raise ValueError(f"{own}: inertia must have shape [B] = [{self.n_bodies}], got "
                             f"{list(self.inertia.shape)}")
        check_positive(self.inertia, "inertia", own)

    @classmethod
    def discs(cls, radius, density=None, mass=None, **kwargs):
        """Uniform discs of ``radius [B]`` from areal ``density`` (mass ``pi r^2 rho``) or ``mass [B]``."""
        radius, mass = _shape_mass("RigidBodies2D.discs", radius, density, mass,
                                   lambda r: _PI * r ** 2, vector=False)
        return cls(mass, disc_inertia(mass, radius), radius=radius, **kwargs)

    @classmethod
    def boxes(cls, half_extents, density=None, mass=None, **kwargs):
        """Uniform rectangles of ``half_extents [B, 2]`` from areal ``density`` or ``mass [B]``."""
        he, mass = _shape_mass("RigidBodies2D.boxes", half_extents, density, mass,
                               lambda h: 4.0 * h[:, 0] * h[:, 1], vector=True)
        return cls(mass, box2d_inertia(mass, he), half_extents=he, **kwargs)

    def _field_sizes(self):
        return {"x": 2, "theta": 1, "v": 2, "w": 1}

    def initial_state(self, x, theta=None, v=None, w=None):
        """A State with ``x [B, 2]`` and defaults: zero angles and velocities."""
        x = as_param(x, "x", "RigidBodies2D.initial_state", dtype=self.mass.dtype)
        B = x.shape[0]
        return State(x=x, theta=_arg(theta, x, (B, 1)), v=_arg(v, x, (B, 2)), w=_arg(w, x, (B, 1)))

    def to_world(self, state, r_body):
        """Rotate body-frame offsets ``[B, K, 2]`` by ``theta`` into the world frame."""
        c, s = state.theta.cos().unsqueeze(1), state.theta.sin().unsqueeze(1)
        px, py = r_body[..., 0:1], r_body[..., 1:2]
        return cat([c * px - s * py, s * px + c * py], dim=-1)

    def world_angular_momentum(self, state):
        """Spin angular momentum ``I w`` ``[B, 1]``."""
        return self.inertia.unsqueeze(-1) * state.w

    def acceleration(self, state, t, control=None):
        f, tau = self.external(state, t, control)
        return {"v": f / self.mass.unsqueeze(-1), "w": tau / self.inertia.unsqueeze(-1)}

    def post_step(self, state, prev, t, dt):
        if self.impulses is not None:
            state = self.impulses.apply(self, state, prev, dt)
        return state


def _arg(value, like, shape=None):
    if value is None:
        return zeros(*shape, dtype=like.dtype, device=like.device)
    return value if isinstance(value, Tensor) else as_tensor(value, dtype=like.dtype, device=like.device)


def _shape_mass(own, size, density, mass, volume, vector):
    """Validate a shape size and return ``(size, mass)`` from ``density`` or ``mass``."""
    size = as_param(size, "half_extents" if vector else "radius", own)
    if vector and size.dim() != 2:
        raise ValueError(f"{own}: half_extents must have shape [B, D], got {list(size.shape)}")
    if not vector and size.dim() != 1:
        raise ValueError(f"{own}: radius must have shape [B], got {list(size.shape)}")
    check_positive(size, "half_extents" if vector else "radius", own)
    if (density is None) == (mass is None):
        raise ValueError(f"{own}: give exactly one of density= or mass=")
    if mass is None:
        density = as_param(density, "density", own, dtype=size.dtype, device=size.device)
        check_positive(density, "density", own)
        mass = density * volume(size)
    else:
        mass = as_param(mass, "mass", own, dtype=size.dtype, device=size.device)
        if isinstance(mass, Tensor) and mass.dim() == 0:
            mass = mass * (size[:, 0] * 0.0 + 1.0) if vector else mass * (size * 0.0 + 1.0)
        check_positive(mass, "mass", own)
    return size, mass


