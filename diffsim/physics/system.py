"""``System``: the static description of a simulated system, separate from its state.

A system says how a state changes; integrators (``integrators.py``) combine those pieces
into a time step, so every integrator works for every system. A second-order system
has *position* fields (``x``; for rigid bodies also an orientation ``q``) and, paired with
them one to one, *velocity* fields (``v``; ``w``). A system implements:

* ``acceleration(state, t, control) -> {velocity field: Tensor}`` — the time derivative of
  each velocity field from forces (``F / m``; torques through the inertia), **without** the
  linear drag term below;
* ``kinematics(state) -> {position field: Tensor}`` — the time derivative of each position
  field given the velocities (default: ``dx/dt = v`` for each pair; rigid bodies map the
  angular velocity to a quaternion rate);
* ``drag`` — ``{velocity field: c}``: linear drag ``dv/dt = ... - c v`` (a number or a Tensor
  that broadcasts against the field). The symplectic integrators apply it exactly,
  ``v <- exp(-c dt) v``, as DiffTaichi's simulators do; Euler and RK4 integrate it with the
  rest of the acceleration;
* ``constrain(name, v) -> v`` — the projection of velocities (and velocity derivatives)
  onto the allowed motions: pinned particles get zero velocity. Default: none;
* ``post_step(state, prev, t, dt) -> state`` — corrections after each step (quaternion
  normalization, impulse collisions with time-of-impact). Default: none;
* ``check_state(state, opname)`` — raise a clear error for a state that does not fit.

Every physical quantity a user may optimize (stiffness, masses, ...) is an ordinary Tensor
attribute of the system; ``parameters()`` lists those that require grad.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..autodiff import Tensor, as_tensor, get_default_dtype

__all__ = ["System", "PotentialSystem", "as_param", "check_positive", "check_finite"]


class Movable:
    """``to(device)`` for the objects that make up a system (the system itself, colliders,
    force terms, contact models): a shallow copy whose Tensor attributes are moved with
    ``Tensor.to`` (recorded, so gradients reach the original tensors), index arrays moved
    to the device's array module, and nested movable objects (also inside lists and
    tuples) moved in turn. Build parameters directly on the device when an optimizer should
    update them there."""

    def to(self, device):
        import copy

        from ..autodiff.backend import Device, move as move_array
        dev = Device(device)

        def move(v):
            if isinstance(v, Tensor):
                return v.to(dev)
            if isinstance(v, Movable):
                return v.to(dev)
            if isinstance(v, (list, tuple)) and not hasattr(v, "_fields"):
                return type(v)(move(u) for u in v)
            if hasattr(v, "__array_namespace__") and getattr(v, "dtype", None) is not None \
                    and v.dtype.kind in "biu" and getattr(v, "ndim", 0):
                return move_array(v, dev)           # index arrays (springs, pairs, pins)
            return v
        new = copy.copy(self)
        for k, v in vars(self).items():
            setattr(new, k, move(v))
        return new


class System(Movable):
    """Base class of simulated systems (see the module docstring)."""
    position_fields: tuple = ("x",)
    velocity_fields: tuple = ("v",)

    # ------------------------------------------------------------ dynamics
    def acceleration(self, state, t, control=None):
        """``{velocity field: dv/dt}`` at ``state`` and time ``t`` (a float) under ``control``
        (None, a row of simulate's controls, or a policy's output); each value has the
        field's shape. Linear drag is not included (see ``drag``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement acceleration(state, t, control)")

    def kinematics(self, state):
        """``{position field: d/dt}`` from the velocities (default ``dx/dt = v`` per pair)."""
        return {p: state[v] for p, v in zip(self.position_fields, self.velocity_fields)}

    @property
    def drag(self):
        """``{velocity field: c}``, linear drag ``dv/dt = ... - c v`` (default: none)."""
        return {}

    def constrain(self, name, v):
        """Project velocity field ``name`` (or its rate) onto the allowed motions (pins);
        default: unchanged."""
        return v

    def post_step(self, state, prev, t, dt):
        """Correct ``state`` after a step from ``prev`` at time ``t`` (renormalize
        quaternions, resolve impulse collisions); default: unchanged."""
        return state

    def energy(self, state):
        """Total energy of ``state`` (0-d Tensor), for systems that define one."""
        raise NotImplementedError(f"{type(self).__name__} does not define an energy")

    def initial_state(self, x, v=None):
        """A ``State(x=x, v=v)`` for a system with fields ``x`` and ``v``: ``x`` a Tensor (kept as
        is, so a gradient reaches it) or array data ``[P, D]``; ``v`` defaults to zeros like
        ``x``. Every system has ``initial_state`` (``MassSpring``: ``x`` defaults to the rest
        positions; rigid bodies also take orientations and angular velocities)."""
        from ..autodiff import zeros_like
        from .state import State
        if tuple(self.fields) != ("x", "v"):
            raise NotImplementedError(f"{type(self).__name__} must implement initial_state")
        x = as_param(x, "x", f"{type(self).__name__}.initial_state")
        if v is None:
            v = zeros_like(x.detach())
        else:
            v = as_param(v, "v", f"{type(self).__name__}.initial_state", dtype=x.dtype)
        return State(x=x, v=v)

    # ------------------------------------------------------------ checks
    @property
    def fields(self):
        """Position fields then velocity fields."""
        return tuple(self.position_fields) + tuple(self.velocity_fields)

    def state_shapes(self):
        """``{field: expected shape}`` (None entries: any shape)."""
        return {f: None for f in self.fields}

    def check_state(self, state, opname="simulate"):
        """Raise ValueError if ``state`` lacks a field, a field has the wrong shape, or holds
        NaN/inf; TypeError if it is not a State or a field is not floating point."""
        from .state import State
        if not isinstance(state, State):
            raise TypeError(f"{opname}: state must be a physics.State, got {type(state).__name__}")
        shapes = self.state_shapes()
        missing = [f for f in self.fields if f not in state]
        if missing:
            raise ValueError(f"{opname}: {type(self).__name__} needs state fields {list(self.fields)}, "
                             f"the state lacks {missing} (it has {list(state.fields)})")
        for f in self.fields:
            t = state[f]
            want = shapes.get(f)
            if want is not None and tuple(t.shape) != tuple(want):
                raise ValueError(f"{opname}: state field {f!r} has shape {list(t.shape)}, but "
                                 f"{type(self).__name__} expects {list(want)}")
            if not t.is_floating_point():
                raise TypeError(f"{opname}: state field {f!r} must be floating point, got {t.dtype}")
        check_finite(state, opname)

    def parameters(self):
        """The Tensor attributes of this system that require grad (what an optimizer tunes)."""
        out, seen = [], set()
        for v in vars(self).values():
            if isinstance(v, Tensor) and v.requires_grad and id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        return out

    def __repr__(self):
        parts = []
        for k, v in vars(self).items():
            if k.startswith("_"):
                continue
            if isinstance(v, Tensor):
                parts.append(f"{k}=Tensor{list(v.shape)}")
            elif isinstance(v, (numbers.Number, str, bool)):
                parts.append(f"{k}={v!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


def check_finite(state, opname, when=""):
    """Raise ValueError naming the first field of ``state`` that holds NaN or inf."""
    for f, t in state.items():
        if t.numel() and not bool(t.detach().isfinite().all()):
            raise ValueError(f"{opname}: state field {f!r} {when}contains NaN or inf "
                             f"(shape {list(t.shape)}, dtype {t.dtype})")


def as_param(value, name, owner, dtype=None, device=None, shape=None):
    """``value`` as a floating-point Tensor (a Tensor is kept as is, so its gradient flows);
    ``shape``: broadcast-check against it and expand scalars. Raises naming ``owner``."""
    if isinstance(value, Tensor):
        t = value
        if not t.is_floating_point():
            raise TypeError(f"{owner}: {name} must be floating point, got {t.dtype}")
    else:
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{owner}: {name} must be numeric, got {arr.dtype}")
        if dtype is None:
            # a Python number becomes a 0-d float64 Tensor: 0-d tensors do not promote the
            # dtype of the state (PyTorch's rule), so float32 and float64 states both keep
            # their precision; float arrays keep theirs; other data gets the default dtype
            if arr.ndim == 0:
                dtype = np.float64
            elif isinstance(value, np.ndarray) and arr.dtype.kind == "f":
                dtype = arr.dtype
            else:
                dtype = get_default_dtype()
        t = as_tensor(arr, dtype=dtype, device=device)
    if shape is not None:
        try:
            np.broadcast_shapes(tuple(t.shape), tuple(shape))
        except ValueError:
            raise ValueError(f"{owner}: {name} of shape {list(t.shape)} does not broadcast to "
                             f"{list(shape)}") from None
    return t


def as_positions(positions, owner, dtype=None):
    """Particle positions as a floating-point Tensor ``[P, 2]`` or ``[P, 3]`` (P >= 1); float
    arrays keep their precision. Raises ValueError naming ``owner`` otherwise."""
    x = as_param(positions, "positions", owner, dtype=dtype)
    if x.ndim != 2 or x.shape[1] not in (2, 3) or x.shape[0] < 1:
        raise ValueError(f"{owner}: positions must be [P, 2] or [P, 3] with P >= 1, got shape {list(x.shape)}")
    return x


def check_positive(t, name, owner, allow_zero=False):
    """Raise ValueError if a parameter has an entry <= 0 (< 0 with ``allow_zero``) or NaN."""
    d = t.detach()
    bad = ~(d >= 0) if allow_zero else ~(d > 0)
    if d.numel() and bool(bad.any()):
        i = int(np.flatnonzero(np.asarray(bad.cpu().numpy()).reshape(-1))[0])
        val = float(d.reshape(-1)[i])
        rel = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{owner}: {name} must be {rel}, got {val} at flat index {i} "
                         f"(shape {list(t.shape)})")


class PotentialSystem(System):
    """Particles moving in a potential ``U(x)``: ``m dv/dt = -dU/dx`` with the force derived by
    autodiff, so a new system is one line::

        spring = PotentialSystem(lambda x: 0.5 * k * (x ** 2).sum(), mass=1.0)

    Args:
        energy: ``energy(x) -> 0-d Tensor``, any differentiable diffsim function of the
            positions ``x`` (it may use parameters, which then get gradients).
        mass: a number, or a Tensor broadcastable against ``x`` (e.g. ``[P, 1]``); > 0.
        drag: linear drag coefficient ``c`` (``dv/dt = ... - c v``), default none.
        force: optional extra force ``force(x, v, t, control) -> Tensor`` shaped like ``x``.

    State fields: ``x`` and ``v`` of any (equal) shape; ``initial_state(x, v=None)`` builds one.
    """

    def __init__(self, energy, mass=1.0, drag=None, force=None):
        if not callable(energy):
            raise TypeError(f"PotentialSystem: energy must be callable, got {type(energy).__name__}")
        self.energy_fn = energy
        self.mass = as_param(mass, "mass", "PotentialSystem")
        check_positive(self.mass, "mass", "PotentialSystem")
        self._drag = None if drag is None else as_param(drag, "drag", "PotentialSystem")
        self.force = force

    @property
    def drag(self):
        return {} if self._drag is None else {"v": self._drag}

    def potential_force(self, x):
        """``-dU/dx`` at ``x``: differentiable (a graph is built) whenever grad mode is on."""
        from ..autodiff import autograd, enable_grad
        from ..autodiff.checkpoint import scratch_leaf
        from ..autodiff.grad_mode import STATE
        graph = STATE.grad_enabled
        with enable_grad():
            xin = x if x.requires_grad else scratch_leaf(x.detach().requires_grad_(True))
            u = self.energy_fn(xin)
            if not isinstance(u, Tensor) or u.numel() != 1:
                raise ValueError("PotentialSystem: energy(x) must return a scalar Tensor, got "
                                 f"{type(u).__name__}{'' if not isinstance(u, Tensor) else list(u.shape)}")
            (g,) = autograd.grad(u.sum(), [xin], create_graph=graph, allow_unused=True)
        if g is None:
            from ..autodiff import zeros_like
            return zeros_like(x)
        return -g

    def acceleration(self, state, t, control=None):
        f = self.potential_force(state.x)
        if self.force is not None:
            f = f + self.force(state.x, state.v, t, control)
        return {"v": f / self.mass}

    def check_state(self, state, opname="simulate"):
        super().check_state(state, opname)
        if tuple(state.x.shape) != tuple(state.v.shape):
            raise ValueError(f"{opname}: state fields x {list(state.x.shape)} and v {list(state.v.shape)} "
                             "must have the same shape")

    def energy(self, state):
        """Kinetic plus potential energy, a 0-d Tensor."""
        ke = 0.5 * (self.mass * state.v ** 2).sum()
        return ke + self.energy_fn(state.x)
