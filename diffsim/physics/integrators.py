"""Time integrators: one step ``state(t) -> state(t + dt)`` for any ``System``.

Each integrator uses only the system's ``acceleration``, ``kinematics``, ``drag``,
``constrain`` and ``post_step`` (see ``system.py``), so each works for every system.
Writing ``q`` for position fields, ``v`` for velocity fields, ``a(q, v)`` for the
acceleration, ``c`` for linear drag and ``P`` for the velocity constraint (pins):

* ``ExplicitEuler`` (order 1):  ``v' = P(v + dt (a - c v))``,  ``q' = q + dt K(q, P v)``.
  Not symplectic: the energy of an oscillator grows every step.
* ``SemiImplicitEuler`` (symplectic Euler, order 1): ``v' = P(e^{-c dt} v + dt a(q, v))``,
  ``q' = q + dt K(q, v')``. The standard step of DiffTaichi / Warp simulators (and W2 of
  shared/benchmarks.md). Energy error stays bounded.
* ``VelocityVerlet`` (leapfrog, order 2, symplectic): half kick, drift, half kick, with
  ``a`` evaluated twice per step (at ``q`` and at the new ``q``; velocity-dependent forces
  see the half-step velocity).
* ``RK4`` (classic Runge-Kutta, order 4) on the first-order system
  ``(q, v)' = (K(q, P v), P(a - c v))``.

``K`` is the system's kinematics (``dx/dt = v``; quaternion rates for rigid bodies). After
each step the system's ``post_step`` runs (normalize quaternions, resolve impulse
collisions). A step is differentiable w.r.t. the state, the system's tensors and the
control.
"""
from __future__ import annotations

import math

from ..autodiff import Tensor

__all__ = ["Integrator", "ExplicitEuler", "SemiImplicitEuler", "VelocityVerlet", "RK4", "get_integrator"]


def _decay(c, h):
    """``exp(-c h)`` for a number or a Tensor ``c``."""
    if isinstance(c, Tensor):
        return (c * (-h)).exp()
    return math.exp(-c * h)


class Integrator:
    """Base class: ``step(system, state, t, dt, control) -> state``; ``order`` is the
    global order of accuracy."""
    order = None
    name = "integrator"

    def step(self, system, state, t, dt, control=None):
        """The state at ``t + dt`` (a new ``State``, fields shaped as in ``state``) from ``state``
        at ``t``; ``control``: this step's control, passed to the system."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"

    # shared pieces --------------------------------------------------------------
    @staticmethod
    def _kick(system, state, acc, h, decay_h):
        """Velocities ``P(e^{-c decay_h} v + h a)`` as a dict."""
        drag = system.drag
        out = {}
        for vf in system.velocity_fields:
            v = state[vf]
            c = drag.get(vf)
            if c is not None:
                v = v * _decay(c, decay_h)
            a = acc.get(vf)
            if a is not None:
                v = v + a * h
            out[vf] = system.constrain(vf, v)
        return out

    @staticmethod
    def _drift(system, state, h):
        """Positions ``q + h K(q, v)`` as a dict."""
        kin = system.kinematics(state)
        return {pf: state[pf] + kin[pf] * h for pf in system.position_fields}


class ExplicitEuler(Integrator):
    """Explicit (forward) Euler, order 1: ``v' = P(v + dt (a - c v))``, ``q' = q + dt K(q, P v)``; not
    symplectic. Works on any system; state fields keep their shapes (e.g. ``x, v [P, D]``)."""
    order = 1
    name = "explicit_euler"

    def step(self, system, state, t, dt, control=None):
        acc = system.acceleration(state, t, control)
        drag = system.drag
        vels = {}
        for vf in system.velocity_fields:
            v = state[vf]
            a = acc.get(vf)
            c = drag.get(vf)
            if c is not None:
                a = (-c * v) if a is None else a - c * v
            vels[vf] = system.constrain(vf, v if a is None else v + a * dt)
        pinned = state.replace(**{vf: system.constrain(vf, state[vf]) for vf in system.velocity_fields})
        pos = self._drift(system, pinned, dt)
        return system.post_step(state.replace(**pos, **vels), state, t, dt)


class SemiImplicitEuler(Integrator):
    """Symplectic Euler, order 1: ``v' = P(e^{-c dt} v + dt a(q, v))``, then ``q' = q + dt K(q, v')``
    (the DiffTaichi / Warp step). Works on any system; state fields keep their shapes."""
    order = 1
    name = "semi_implicit_euler"

    def step(self, system, state, t, dt, control=None):
        acc = system.acceleration(state, t, control)
        vels = self._kick(system, state, acc, dt, dt)
        mid = state.replace(**vels)
        pos = self._drift(system, mid, dt)
        return system.post_step(mid.replace(**pos), state, t, dt)


class VelocityVerlet(Integrator):
    """Velocity Verlet (leapfrog), order 2, symplectic: half kick, drift, half kick (drag as
    ``e^{-c dt/2}`` in each half kick). Works on any system; state fields keep their shapes."""
    order = 2
    name = "velocity_verlet"

    def step(self, system, state, t, dt, control=None):
        h = 0.5 * dt
        acc0 = system.acceleration(state, t, control)
        half = state.replace(**self._kick(system, state, acc0, h, h))
        moved = half.replace(**self._drift(system, half, dt))
        acc1 = system.acceleration(moved, t + dt, control)
        new = moved.replace(**self._kick(system, moved, acc1, h, h))
        return system.post_step(new, state, t, dt)


Leapfrog = VelocityVerlet


class RK4(Integrator):
    """Classic fourth-order Runge-Kutta on ``(q, v)' = (K(q, P v), P(a - c v))``. Works on any
    system; state fields keep their shapes."""
    order = 4
    name = "rk4"

    def _deriv(self, system, s, t, control):
        drag = system.drag
        pinned = s.replace(**{vf: system.constrain(vf, s[vf]) for vf in system.velocity_fields})
        d = dict(system.kinematics(pinned))
        acc = system.acceleration(s, t, control)
        for vf in system.velocity_fields:
            a = acc.get(vf)
            c = drag.get(vf)
            if c is not None:
                a = (-c * s[vf]) if a is None else a - c * s[vf]
            d[vf] = system.constrain(vf, a if a is not None else s[vf] * 0.0)
        return d

    def step(self, system, state, t, dt, control=None):
        names = tuple(system.position_fields) + tuple(system.velocity_fields)

        def shifted(k, h):
            return state.replace(**{n: state[n] + k[n] * h for n in names})
        k1 = self._deriv(system, state, t, control)
        k2 = self._deriv(system, shifted(k1, 0.5 * dt), t + 0.5 * dt, control)
        k3 = self._deriv(system, shifted(k2, 0.5 * dt), t + 0.5 * dt, control)
        k4 = self._deriv(system, shifted(k3, dt), t + dt, control)
        new = state.replace(**{n: state[n] + (k1[n] + (k2[n] + k3[n]) * 2.0 + k4[n]) * (dt / 6.0)
                               for n in names})
        return system.post_step(new, state, t, dt)


_BY_NAME = {"explicit_euler": ExplicitEuler, "euler": ExplicitEuler,
            "semi_implicit_euler": SemiImplicitEuler, "symplectic_euler": SemiImplicitEuler,
            "velocity_verlet": VelocityVerlet, "verlet": VelocityVerlet, "leapfrog": VelocityVerlet,
            "rk4": RK4}


def get_integrator(integrator, opname="simulate"):
    """An Integrator from an instance, a class, or a name ("semi_implicit_euler", "rk4", ...)."""
    if isinstance(integrator, Integrator):
        return integrator
    if isinstance(integrator, type) and issubclass(integrator, Integrator):
        return integrator()
    if isinstance(integrator, str):
        key = integrator.lower()
        if key in _BY_NAME:
            return _BY_NAME[key]()
        raise ValueError(f"{opname}: unknown integrator {integrator!r}; choose one of "
                         f"{sorted(set(_BY_NAME))}")
    raise TypeError(f"{opname}: integrator must be an Integrator, an Integrator class or a name, "
                    f"got {type(integrator).__name__}")
