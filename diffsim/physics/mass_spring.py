"""Mass-spring systems: cloth, ropes, soft bodies and DiffTaichi-style actuated robots.

::

    cloth = physics.MassSpring.cloth(32, stiffness=500.0, mass=0.01, drag=1.0, pinned="top-row")
    cloth.stiffness.requires_grad_()
    final = physics.simulate(cloth, cloth.initial_state(), 200, 1e-3)
    loss = ((final.x - target) ** 2).sum(-1).mean(); loss.backward()
    cloth.stiffness.grad                                    # [S]

Particles ``x [P, D]`` (D = 2 or 3) with velocities ``v [P, D]`` and masses ``m`` are joined by
springs ``(a_s, b_s)``. With ``d = x[b] - x[a]``, ``l = |d|`` and ``n = d / l`` spring ``s``
pulls particle ``a`` with

    f_s = (k_s (l_s - L_s) + c_s (v[b] - v[a]) . n_s) n_s          (and ``b`` with ``-f_s``)

(Hooke spring ``k`` plus a dashpot ``c`` along the spring). The gather, the spring law and
the scatter-add of all spring forces onto the particles is **one op**, ``spring_forces``,
with a hand-written vectorized backward (``np.bincount`` scatter-adds, no Python loops),
written with ``ns`` functions so that it also runs on cupy and is differentiable again.

The acceleration is ``(F_springs + F_colliders + F_user) / m + g``; linear air drag ``c``
(``dv/dt = -c v``) is applied exactly as ``exp(-c dt)`` by the symplectic integrators;
pinned particles get zero velocity (``constrain``). Actuated springs have rest length
``L_s (1 + alpha_s u_s(t))`` where ``u`` is the control (``simulate(..., controls=...)``).
"""
from __future__ import annotations

import itertools
import numbers

import numpy as np

from ..autodiff import Tensor, as_tensor, get_default_dtype, segment_sum, zeros_like
from ..autodiff.backend import get_xp
from ..autodiff.function import defop
from ..autodiff.rawops import RAW_NS
from ._scatter import pair_scatter
from .state import State
from .system import System, as_param, as_positions, check_positive

__all__ = ["MassSpring", "spring_forces"]


# ====================================================================== the op

def _rowdot(ns, p, q):
    """Row-wise dot product ``[S, D] x [S, D] -> [S]`` (on raw arrays column by column:
    several times faster than ``(p * q).sum(-1)`` for rows of 2 or 3)."""
    if ns is RAW_NS:
        out = p[:, 0] * q[:, 0]
        for j in range(1, p.shape[1]):
            out += p[:, j] * q[:, j]
        return out
    return ns.sum(p * q, -1)


def _spring_geometry(ns, x, a, b, ab, S):
    """``d = x[b] - x[a]`` ``[S, D]`` and ``l = |d|`` ``[S]`` (one gather for both ends)."""
    xab = ns.index_select(x, 0, ab)
    d = xab[S:] - xab[:S]
    return d, ns.sqrt(_rowdot(ns, d, d))


def _spring_fwd(x, v, k, c, L, a, b, ab, n_particles, damped):
    S = a.shape[0]
    xp = get_xp(x)
    d, l = _spring_geometry(RAW_NS, x, a, b, ab, S)
    pos, ls = _safe_length(xp, l)
    fs = k * (l - L)
    if damped:
        vab = xp.take(v, ab, axis=0)
        fs = fs + c * _rowdot(RAW_NS, vab[S:] - vab[:S], d) / ls
    # f = s d with s = fs / l; where the ends coincide (l = 0, d = 0) the force is 0 and
    # s = k keeps the Jacobian right for a zero-rest-length spring (f = k d)
    s = xp.where(pos, fs / ls, k)
    f = s[:, None] * d                                          # force on a [S, D]
    return pair_scatter(RAW_NS, f, ab, n_particles)


_spring_op = defop("spring_forces", _spring_fwd, save=(0, 1, 2, 3, 4))


@_spring_op.defvjp
def _spring_bwd(ns, node, g, x, v, k, c, L):
    at = node.attrs
    a, b, ab, P, damped = at["a"], at["b"], at["ab"], at["n_particles"], at["damped"]
    S = a.shape[0]
    need = node.needs_input_grad
    d, l = _spring_geometry(ns, x, a, b, ab, S)
    pos = (l > 0)
    pos = pos.detach() if isinstance(pos, Tensor) else pos
    ls = ns.where(pos, l, l * 0.0 + 1.0)                         # l, or 1 where l = 0 (then d = 0)
    gab = ns.index_select(g, 0, ab)
    gf = gab[:S] - gab[S:]                                       # dLoss/df_s  [S, D]
    stretch = l - L
    fs = k * stretch
    if damped:
        vab = ns.index_select(v, 0, ab)
        dv = vab[S:] - vab[:S]
        w = _rowdot(ns, dv, d) / ls                             # (v_b - v_a) . n
        fs = fs + c * w
    s = ns.where(pos, fs / ls, k + l * 0.0)                      # f = s d (see the forward)
    gs = _rowdot(ns, gf, d)                                      # [S]
    gfs = gs / ls
    gl = gfs * k - gs * s / ls                                   # through fs and through 1/l
    gd = gf * ns.unsqueeze(s, -1)
    gv = gc = None
    if damped:
        gw = gfs * c
        gd = gd + dv * ns.unsqueeze(gw / ls, -1)
        gl = gl - gw * w / ls
        if need[1]:
            gdv = d * ns.unsqueeze(gw / ls, -1)
            gv = pair_scatter(ns, -gdv, ab, P)
        if need[3]:
            gc = _reduce(ns, gfs * w, c)
    gx = None
    if need[0]:
        gd = gd + d * ns.unsqueeze(gl / ls, -1)
        gx = pair_scatter(ns, -gd, ab, P)
    gk = _reduce(ns, gfs * stretch, k) if need[2] else None
    gL = _reduce(ns, -(gfs * k), L) if need[4] else None
    return gx, gv, gk, gc, gL


def _safe_length(xp, l):
    """``(l > 0, l with its zeros replaced by 1)``: spring lengths safe to divide by."""
    pos = l > 0
    return pos, xp.where(pos, l, 1.0)


def _reduce(ns, g, like):
    """Sum a per-spring gradient ``[S]`` to the shape of a (possibly broadcast) parameter."""
    shape = tuple(like.shape)
    return g if tuple(g.shape) == shape else ns.sum_to(g, shape)


def spring_forces(x, v, stiffness, damping, rest_length, a, b, ab=None):
    """Net spring force on every particle: ``F [P, D]`` (one op, see the module docstring).

    Args:
        x, v: positions and velocities ``[P, D]``.
        stiffness, damping, rest_length: ``[S]`` or broadcastable to it (0-d / numbers);
            ``damping`` may be ``None`` (no dashpots; ``v`` is then not used).
        a, b: integer arrays ``[S]`` (numpy or cupy, on ``x``'s device): spring endpoints.
        ab: ``concatenate([a, b])`` if already at hand.

    Differentiable w.r.t. ``x``, ``v``, ``stiffness``, ``damping`` and ``rest_length`` (and
    twice differentiable).
    """
    a, b = (i._data if isinstance(i, Tensor) else i for i in (a, b))
    if ab is None:
        ab = get_xp(a).concatenate([a, b])
    damped = damping is not None
    return _spring_op(x, v, stiffness, damping if damped else 0.0, rest_length,
                      a=a, b=b, ab=ab, n_particles=x.shape[0], damped=damped)


# ====================================================================== the system

class MassSpring(System):
    """Particles joined by damped springs (see the module docstring).

    Args:
        positions: rest positions ``[P, D]`` (D = 2 or 3); also the default initial state.
        springs: integer ``[S, 2]`` particle indices.
        stiffness: ``[S]`` or a number (force per unit extension), > 0.
        damping: spring dashpot ``[S]`` or a number (force per unit relative speed), >= 0;
            0 (default) skips the dashpot entirely.
        rest_length: ``[S]`` or a number, >= 0; default the spring lengths in ``positions``.
        mass: ``[P]`` or a number, > 0.
        gravity: ``[D]`` acceleration, default ``(0, -9.8, 0)`` (``(0, -9.8)`` in 2-D); None
            for none.
        drag: linear air drag ``c`` in 1/s (``dv/dt = -c v``), a number or 0-d Tensor, >= 0.
        pinned: indices ``[K]`` or a bool mask ``[P]`` of particles held fixed (their velocity
            is projected to zero).
        colliders: a list of ``contact.Collider`` (``GroundPlane``, ``Sphere``).
        actuators: integer ``[A]`` spring indices driven by control channel ``0..A-1``: rest
            length ``L_s (1 + actuation_j u_j)``.
        actuation: ``[A]`` or a number, the strength ``alpha`` of each actuator (default 0.1).
        force: optional ``force(x, v, t, control) -> [P, D]`` added to the forces.
        dtype: floating dtype of the parameters (default: that of ``positions`` if it is a
            Tensor or float numpy array, else the default dtype).

    Every Tensor argument is kept as is, so a Tensor that requires grad gets its gradient;
    numbers and arrays become Tensors (``system.stiffness`` ...) on which ``requires_grad_()``
    can be called.

    State fields: ``x [P, D]``, ``v [P, D]``; ``initial_state()`` (alias ``rest_state()``) gives
    the particles at rest.
    """

    def __init__(self, positions, springs, stiffness=1.0, damping=0.0, rest_length=None, mass=1.0,
                 gravity="default", drag=0.0, pinned=None, colliders=(), actuators=None, actuation=0.1,
                 force=None, dtype=None):
        op = "MassSpring"
        x = as_positions(positions, op, dtype)
        P, D = x.shape
        dt_ = x.dtype
        self.positions = x
        xp = get_xp(x._data)

        sp = springs._data if isinstance(springs, Tensor) else np.asarray(springs)
        if sp.size == 0:
            sp = np.zeros((0, 2), np.int64)
        if sp.ndim != 2 or sp.shape[1] != 2:
            raise ValueError(f"{op}: springs must be an integer array [S, 2], got shape {list(sp.shape)}")
        if sp.dtype.kind not in "iu":
            raise TypeError(f"{op}: springs must be integers, got dtype {sp.dtype}")
        sp = np.asarray(sp.get() if hasattr(sp, "get") else sp).astype(np.int64)
        if sp.size and (sp.min() < 0 or sp.max() >= P):
            bad = int(np.flatnonzero((sp < 0).any(1) | (sp >= P).any(1))[0])
            raise IndexError(f"{op}: spring {bad} = {sp[bad].tolist()} has a particle index out of range "
                             f"[0, {P}) (positions {list(x.shape)}, springs {list(sp.shape)})")
        if sp.size and (sp[:, 0] == sp[:, 1]).any():
            bad = int(np.flatnonzero(sp[:, 0] == sp[:, 1])[0])
            raise ValueError(f"{op}: spring {bad} joins particle {sp[bad, 0]} to itself")
        S = sp.shape[0]
        self.n_particles, self.n_springs, self.dim = P, S, D
        self.springs = sp
        self._a, self._b = xp.asarray(sp[:, 0]), xp.asarray(sp[:, 1])
        self._ab = xp.concatenate([self._a, self._b])

        def param(value, name, shape, allow_zero):
            t = as_param(value, name, op, dtype=dt_, device=x.device)
            if t.ndim > len(shape) or tuple(t.shape) not in (tuple(shape), (), (1,) * t.ndim):
                raise ValueError(f"{op}: {name} must be a number or have shape {list(shape)}, got "
                                 f"{list(t.shape)} (positions {list(x.shape)}, springs {list(sp.shape)})")
            check_positive(t, name, op, allow_zero=allow_zero)
            return t

        self.stiffness = param(stiffness, "stiffness", (S,), False)
        self.damping = param(damping, "damping", (S,), True)
        if rest_length is None:
            xa = x.detach()._data
            rest_length = as_tensor(xp.sqrt(((xa[self._b] - xa[self._a]) ** 2).sum(-1)), dtype=dt_)
        self.rest_length = param(rest_length, "rest_length", (S,), True)
        self.mass = param(mass, "mass", (P,), False)
        if isinstance(gravity, str) and gravity == "default":
            gravity = (0.0, -9.8, 0.0)[:D]
        if gravity is None:
            self.gravity = None
        else:
            self.gravity = as_param(gravity, "gravity", op, dtype=dt_, device=x.device)
            if tuple(self.gravity.shape) != (D,):
                raise ValueError(f"{op}: gravity must have shape [{D}] to match positions {list(x.shape)}, "
                                 f"got {list(self.gravity.shape)}")
        self.drag_coefficient = param(drag, "drag", (), True)

        self.free_mask = None
        self.pinned = np.zeros(0, np.int64)
        if pinned is not None:
            pin = pinned._data if isinstance(pinned, Tensor) else np.asarray(pinned)
            pin = np.asarray(pin.get() if hasattr(pin, "get") else pin)
            if pin.dtype.kind == "b":
                if pin.shape != (P,):
                    raise ValueError(f"{op}: a pinned mask must have shape [{P}], got {list(pin.shape)}")
                pin = np.flatnonzero(pin)
            elif pin.dtype.kind not in "iu" and pin.size:
                raise TypeError(f"{op}: pinned must be integer indices or a bool mask, got dtype {pin.dtype}")
            pin = pin.astype(np.int64).reshape(-1)
            if pin.size and (pin.min() < -P or pin.max() >= P):
                raise IndexError(f"{op}: pinned index out of range [0, {P}): {pin.tolist()[:10]}")
            pin = np.unique(pin % P)
            self.pinned = pin
            if pin.size:
                free = np.ones((P, 1))
                free[pin] = 0.0
                self.free_mask = as_tensor(xp.asarray(free), dtype=dt_)

        self.colliders = list(colliders or ())
        for i, c in enumerate(self.colliders):
            if not hasattr(c, "force"):
                raise TypeError(f"{op}: colliders[{i}] must have force(x, v) (a contact.Collider), "
                                f"got {type(c).__name__}")
        self.actuators = None
        self.actuation = None
        if actuators is not None:
            act = np.asarray(actuators._data if isinstance(actuators, Tensor) else actuators).reshape(-1)
            if act.size and act.dtype.kind not in "iu":
                raise TypeError(f"{op}: actuators must be integer spring indices, got dtype {act.dtype}")
            act = act.astype(np.int64)
            if act.size and (act.min() < 0 or act.max() >= S):
                raise IndexError(f"{op}: actuator spring index out of range [0, {S}): {act.tolist()[:10]}")
            self.actuators = xp.asarray(act)
            self.actuation = as_param(actuation, "actuation", op, dtype=dt_, device=x.device)
            if tuple(self.actuation.shape) not in ((), (act.size,)):
                raise ValueError(f"{op}: actuation must be a number or have shape [{act.size}] (one per "
                                 f"actuator), got {list(self.actuation.shape)}")
        if force is not None and not callable(force):
            raise TypeError(f"{op}: force must be callable force(x, v, t, control), got {type(force).__name__}")
        self.force = force

    # ------------------------------------------------------------ constructors
    @classmethod
    def cloth(cls, n, m=None, size=1.0, structural=True, shear=True, bending=False, pinned="top-row",
              hanging=False, dtype=None, **kw):
        """A rectangular cloth of ``n x m`` particles (``m = n`` by default).

        Particle ``i * m + j`` starts at ``(i hx, 0, j hz)`` (``hx = size_x / (n - 1)``, ``hz =
        size_z / (m - 1)``; ``size`` a number or ``(size_x, size_z)``), or at ``(i hx, -j hz, 0)``
        hanging in the xy-plane with ``hanging=True``. Springs per particle, in this order:
        structural ``(i+1, j)``, ``(i, j+1)``; shear ``(i, j)-(i+1, j+1)``, ``(i+1, j)-(i, j+1)``;
        bending ``(i+2, j)``, ``(i, j+2)``. With ``n = 32``, ``size = 1``, structural + shear and
        ``pinned="top-row"`` this is the cloth of workload W2 (shared/benchmarks.md).

        Args:
            pinned: "top-row" (``j == 0``), "corners" (the two ends of that row), None, or
                indices / a bool mask.
            **kw: the other ``MassSpring`` arguments (stiffness, damping, mass, drag, ...).
        """
        m = n if m is None else m
        if not (isinstance(n, numbers.Integral) and isinstance(m, numbers.Integral) and n >= 2 and m >= 2):
            raise ValueError(f"MassSpring.cloth: n and m must be ints >= 2, got {n!r}, {m!r}")
        sx, sz = (size, size) if isinstance(size, numbers.Real) else size
        i, j = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
        i, j = i.reshape(-1), j.reshape(-1)
        u, w = i * (sx / (n - 1)), j * (sz / (m - 1))
        zero = np.zeros_like(u)
        x = np.stack([u, -w, zero] if hanging else [u, zero, w], -1).astype(_np_dtype(dtype))
        offsets = []
        if structural:
            offsets += [((0, 0), (1, 0)), ((0, 0), (0, 1))]
        if shear:
            offsets += [((0, 0), (1, 1)), ((1, 0), (0, 1))]
        if bending:
            offsets += [((0, 0), (2, 0)), ((0, 0), (0, 2))]
        springs = _grid_springs((n, m), offsets)
        if isinstance(pinned, str):
            if pinned in ("top-row", "top_row", "edge"):
                pinned = np.flatnonzero(j == 0)
            elif pinned == "corners":
                pinned = np.array([0, (n - 1) * m])
            else:
                raise ValueError(f"MassSpring.cloth: pinned must be 'top-row', 'corners', None or indices, "
                                 f"got {pinned!r}")
        return cls(x, springs, pinned=pinned, dtype=dtype, **kw)

    @classmethod
    def rope(cls, n, length=1.0, start=(0.0, 0.0, 0.0), direction=(1.0, 0.0, 0.0), bending=False,
             pinned=(0,), dtype=None, **kw):
        """A rope of ``n`` particles from ``start`` along ``direction`` (its dimension, 2 or 3,
        is that of ``start``), springs ``(i, i+1)`` and with ``bending=True`` also
        ``(i, i+2)``. ``pinned``: indices (default the first particle), a mask or None."""
        if not (isinstance(n, numbers.Integral) and n >= 2):
            raise ValueError(f"MassSpring.rope: n must be an int >= 2, got {n!r}")
        start = np.asarray(start, dtype=np.float64)
        direction = np.asarray(direction, dtype=np.float64)
        if start.shape != direction.shape or start.shape not in ((2,), (3,)):
            raise ValueError(f"MassSpring.rope: start and direction must both have shape [2] or [3], got "
                             f"{list(start.shape)} and {list(direction.shape)}")
        norm = np.linalg.norm(direction)
        if not norm > 0:
            raise ValueError("MassSpring.rope: direction must be non-zero")
        x = start + np.linspace(0.0, length, n)[:, None] * (direction / norm)
        idx = np.arange(n)
        springs = [np.stack([idx[:-1], idx[1:]], 1)]
        if bending and n > 2:
            springs.append(np.stack([idx[:-2], idx[2:]], 1))
        return cls(x.astype(_np_dtype(dtype)), np.concatenate(springs), pinned=pinned, dtype=dtype, **kw)

    @classmethod
    def lattice(cls, shape, spacing=0.1, origin=None, mask=None, diagonals=True, pinned=None, dtype=None, **kw):
        """A 2-D ``(nx, ny)`` or 3-D ``(nx, ny, nz)`` soft-body lattice.

        Node ``(i, j[, k])`` sits at ``origin + spacing * (i, j[, k])``; springs join each node
        to its neighbours along the axes and, with ``diagonals=True`` (default; without them a
        lattice is a mechanism that shears freely), along every face and cell diagonal.
        ``mask``: optional bool array of ``shape``: only those nodes exist (e.g. a robot's
        legs); nodes are numbered in row-major order of the kept ones.
        """
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise ValueError(f"MassSpring.lattice: shape must be (nx, ny) or (nx, ny, nz) of positive ints, "
                             f"got {shape}")
        D = len(shape)
        grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, D)
        keep = np.ones(shape, bool) if mask is None else np.asarray(mask, bool)
        if keep.shape != shape:
            raise ValueError(f"MassSpring.lattice: mask must have shape {list(shape)}, got {list(keep.shape)}")
        origin = np.zeros(D) if origin is None else np.asarray(origin, np.float64)
        if origin.shape != (D,):
            raise ValueError(f"MassSpring.lattice: origin must have shape [{D}], got {list(origin.shape)}")
        offsets = [o for o in itertools.product((-1, 0, 1), repeat=D)
                   if any(o) and o[next(i for i, c in enumerate(o) if c)] > 0
                   and (diagonals or sum(map(abs, o)) == 1)]
        springs = _grid_springs(shape, [((0,) * D, o) for o in offsets], keep)
        number = -np.ones(int(np.prod(shape)), np.int64)
        number[keep.reshape(-1)] = np.arange(int(keep.sum()))
        springs = number[springs]
        x = origin + spacing * grid[keep.reshape(-1)]
        return cls(x.astype(_np_dtype(dtype)), springs, pinned=pinned, dtype=dtype, **kw)

    # ------------------------------------------------------------ state
    def initial_state(self, x=None, v=None):
        """``State(x, v)``: ``x [P, D]`` defaults to the rest ``positions``, ``v [P, D]`` to zeros."""
        x = self.positions if x is None else as_param(x, "x", "MassSpring.initial_state", dtype=self.positions.dtype)
        if v is None:
            v = zeros_like(x.detach())
        elif not isinstance(v, Tensor):
            v = as_param(v, "v", "MassSpring.initial_state", dtype=x.dtype)
        return State(x=x, v=v)

    def rest_state(self, velocity=None):
        """``State(x=positions, v=0)`` (or ``v=velocity [P, D]``), the particles at rest; the same
        as ``initial_state(v=velocity)``."""
        return self.initial_state(v=velocity)

    def state_shapes(self):
        return {"x": (self.n_particles, self.dim), "v": (self.n_particles, self.dim)}

    # ------------------------------------------------------------ dynamics
    def effective_rest_length(self, control=None):
        """Rest lengths ``[S]`` (or the broadcast parameter) under ``control [A]``:
        ``L_s (1 + actuation u)`` on the actuated springs."""
        L = self.rest_length
        if self.actuators is None or control is None:
            return L
        u = control if isinstance(control, Tensor) else as_tensor(control, dtype=L.dtype)
        A = int(self.actuators.shape[0])
        if tuple(u.shape) != (A,):
            raise ValueError(f"MassSpring: control must have shape [{A}] (one value per actuator), got "
                             f"{list(u.shape)}")
        scale = segment_sum(u * self.actuation, self.actuators, self.n_springs)
        return L * (scale + 1.0)

    def spring_force(self, x, v, control=None):
        """Net spring (+ dashpot) force on each particle ``[P, D]``."""
        damping = None if _is_zero_param(self.damping) else self.damping
        return spring_forces(x, v, self.stiffness, damping, self.effective_rest_length(control),
                             self._a, self._b, self._ab)

    def forces(self, state, t=0.0, control=None):
        """All forces except gravity: springs, colliders and the user force, ``[P, D]``."""
        x, v = state.x, state.v
        F = self.spring_force(x, v, control)
        for c in self.colliders:
            F = F + c.force(x, v)
        if self.force is not None:
            F = F + self.force(x, v, t, control)
        return F

    # ------------------------------------------------------------ force Jacobians
    def _dof_pattern(self):
        """Constant COO structure of the spring Jacobian blocks: ``rows, cols`` integer arrays
        ``[S, 4, D, D]`` (blocks (a,a), (a,b), (b,a), (b,b); DOF ``p * D + i`` of ``x [P, D]``)."""
        cache = getattr(self, "_jac_pattern", None)
        xp = get_xp(self._a)
        if cache is not None and get_xp(cache[0]) is xp:
            return cache
        D = self.dim
        a, b = self._a, self._b
        pr = xp.stack([a, a, b, b], 1)                              # block row particle [S, 4]
        pc = xp.stack([a, b, a, b], 1)                              # block col particle [S, 4]
        comp = xp.arange(D)
        rows = pr[:, :, None, None] * D + comp[None, None, :, None] + 0 * comp[None, None, None, :]
        cols = pc[:, :, None, None] * D + comp[None, None, None, :] + 0 * comp[None, None, :, None]
        self._jac_pattern = (rows.astype(np.int64), cols.astype(np.int64))
        return self._jac_pattern

    def spring_jacobian_blocks(self, state, control=None, symmetric=False):
        """Per-spring Jacobian blocks of the spring force ``f_s`` on particle ``a_s`` w.r.t. the
        spring vector ``d = x[b] - x[a]`` and the relative velocity ``w = v[b] - v[a]``.

        Returns ``(Kx [S, D, D], Kv [S, D, D])`` with, for ``n = d / l``,
        ``Kx = k [(1 - L/l)(I - n n^T) + n n^T] + (c / l)[n (w - (w.n) n)^T + (w.n)(I - n n^T)]``
        (the second, non-symmetric dashpot term is dropped with ``symmetric=True``, as
        Baraff & Witkin do) and ``Kv = c n n^T``; a spring of zero length has ``Kx = k I``,
        ``Kv = 0`` (as the forward op). Differentiable w.r.t. ``state.x``, ``state.v``,
        stiffness, damping and rest lengths (``L`` under ``control`` for actuated springs)."""
        from ..autodiff import eye, where
        x, v = state.x, state.v
        D = self.dim
        d = x.index_select(0, self._b) - x.index_select(0, self._a)          # [S, D]
        l = (d * d).sum(-1).sqrt()  # noqa: E741
        pos_raw = l.detach()._data > 0
        pos = as_tensor(pos_raw, device=x.device)
        ls = where(pos, l, l.detach() * 0.0 + 1.0)
        n = d / ls.unsqueeze(-1)
        eyeD = eye(D, dtype=x.dtype, device=x.device)
        nn = n.unsqueeze(-1) * n.unsqueeze(-2)                                # [S, D, D]
        S = self.n_springs
        one = ls.detach() * 0.0 + 1.0
        k = self.stiffness * one                                             # [S]
        L = self.effective_rest_length(control) * one
        ratio = (1.0 - L / ls).unsqueeze(-1).unsqueeze(-1)
        Kx = k.unsqueeze(-1).unsqueeze(-1) * (ratio * (eyeD - nn) + nn)
        pos3 = pos.reshape(S, 1, 1)
        Kx = where(pos3, Kx, k.unsqueeze(-1).unsqueeze(-1) * eyeD)
        if _is_zero_param(self.damping):
            Kv = Kx * 0.0
        else:
            c = (self.damping * one).unsqueeze(-1).unsqueeze(-1)
            Kv = where(pos3, c * nn, Kx * 0.0)
            if not symmetric:
                w = v.index_select(0, self._b) - v.index_select(0, self._a)
                wn = (w * n).sum(-1)
                g = w - wn.unsqueeze(-1) * n
                geo = (n.unsqueeze(-1) * g.unsqueeze(-2) + wn.unsqueeze(-1).unsqueeze(-1) * (eyeD - nn))
                Kx = Kx + where(pos3, c * geo / ls.unsqueeze(-1).unsqueeze(-1), Kx * 0.0)
        return Kx, Kv

    def force_jacobian_coo(self, state, control=None, symmetric=False):
        """Unassembled COO entries of the spring-force Jacobians (duplicates to be summed):
        ``(rows, cols, dFdx [S, 4, D, D], dFdv [S, 4, D, D])`` with integer ``rows, cols``
        ``[S, 4, D, D]`` indexing the flattened DOFs ``p * D + i``. Blocks per spring are
        ``(a,a): -K, (a,b): K, (b,a): K, (b,b): -K`` (``K`` from ``spring_jacobian_blocks``)."""
        from ..autodiff import stack
        Kx, Kv = self.spring_jacobian_blocks(state, control, symmetric)
        rows, cols = self._dof_pattern()
        fx = stack([-Kx, Kx, Kx, -Kx], 1)
        fv = stack([-Kv, Kv, Kv, -Kv], 1)
        return rows, cols, fx, fv

    def force_jacobian(self, state, control=None, symmetric=False):
        """Jacobians of the spring (+ dashpot) forces ``spring_force(x, v) [P, D]`` w.r.t. the
        positions and velocities: ``(dF/dx, dF/dv)``, two ``diffsim.sparse`` CSR matrices
        ``[P*D, P*D]`` (DOF ``p * D + i``), assembled from per-spring ``D x D`` blocks
        (see ``spring_jacobian_blocks``; ``symmetric=True`` drops the non-symmetric dashpot
        term of ``dF/dx``). Their values are differentiable Tensors. Colliders, gravity, air
        drag and the user ``force`` are not included (Baraff-Witkin implicit Euler treats
        colliders and the user force explicitly)."""
        from .. import sparse
        rows, cols, fx, fv = self.force_jacobian_coo(state, control, symmetric)
        n = self.n_particles * self.dim
        return sparse.assemble(rows, cols, fx, (n, n)), sparse.assemble(rows, cols, fv, (n, n))

    def acceleration(self, state, t, control=None):
        """``{"v": F / m + g}``, ``[P, D]``."""
        m = self.mass
        acc = self.forces(state, t, control) / (m.unsqueeze(-1) if m.ndim == 1 else m)
        if self.gravity is not None:
            acc = acc + self.gravity
        return {"v": acc}

    @property
    def drag(self):
        return {} if _is_zero_param(self.drag_coefficient) else {"v": self.drag_coefficient}

    def constrain(self, name, v):
        """Pinned particles' velocities (and accelerations) projected to zero."""
        return v if self.free_mask is None else v * self.free_mask

    def energy(self, state):
        """Kinetic + spring + gravitational energy (0-d Tensor). Dashpots, drag and contact
        forces are not conservative and not counted; rest lengths are the unactuated ones."""
        x, v = state.x, state.v
        m = self.mass.unsqueeze(-1) if self.mass.ndim == 1 else self.mass
        ke = 0.5 * (m * v * v).sum()
        d = x[self._b] - x[self._a]
        l = (d * d).sum(-1).sqrt()  # noqa: E741
        pe = 0.5 * (self.stiffness * (l - self.rest_length) ** 2).sum()
        if self.gravity is not None:
            pe = pe - (m * (x * self.gravity)).sum()
        return ke + pe

    def check_state(self, state, opname="simulate"):
        super().check_state(state, opname)
        if state.x.dtype != self.positions.dtype:
            raise TypeError(f"{opname}: MassSpring state has dtype {state.x.dtype} but the system's "
                            f"parameters are {self.positions.dtype}; convert one with .to(dtype)")


# ====================================================================== helpers

_ZERO_CACHE = {}


def _is_zero_param(t):
    """Whether a parameter is all zeros and needs no gradient (then its term is skipped).
    Cached per tensor and version, so a rollout does not test it (and sync) every step."""
    if t.requires_grad:
        return False
    key = id(t)
    hit = _ZERO_CACHE.get(key)
    if hit is not None and hit[0] is t and hit[1] == t._version[0]:
        return hit[2]
    zero = not bool((t.detach() != 0).any())
    if len(_ZERO_CACHE) > 256:
        _ZERO_CACHE.clear()
    _ZERO_CACHE[key] = (t, t._version[0], zero)
    return zero


def _np_dtype(dtype):
    from ..autodiff import dtypes
    d = dtype or get_default_dtype()
    return np.float32 if d == dtypes.float32 else np.float64


def _grid_springs(shape, pairs, keep=None):
    """Springs of a regular grid of ``shape``: for each node (row-major) and each
    ``(offset_a, offset_b)`` in ``pairs`` (in that order), the spring joining nodes
    ``node + offset_a`` and ``node + offset_b`` where both exist (and are kept). ``[S, 2]``
    flat node indices, ordered by node first, then by pair."""
    D = len(shape)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, D)
    dims = np.array(shape)
    ends, valid = [], []
    for oa, ob in pairs:
        pa, pb = grid + np.array(oa), grid + np.array(ob)
        ok = ((pa >= 0) & (pa < dims) & (pb >= 0) & (pb < dims)).all(1)
        pa, pb = np.clip(pa, 0, dims - 1), np.clip(pb, 0, dims - 1)
        fa, fb = np.ravel_multi_index(pa.T, shape), np.ravel_multi_index(pb.T, shape)
        if keep is not None:
            k = keep.reshape(-1)
            ok &= k[fa] & k[fb]
        ends.append(np.stack([fa, fb], 1))
        valid.append(ok)
    if not pairs:
        return np.zeros((0, 2), np.int64)
    ends = np.stack(ends, 1).reshape(-1, 2)          # [nodes * pairs, 2], node-major
    valid = np.stack(valid, 1).reshape(-1)
    return ends[valid].astype(np.int64)
