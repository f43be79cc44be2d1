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
* ``ImplicitEuler`` (backward Euler, order 1, A-stable, dissipative):
  ``v' = P(v + dt (a(q + dt K(q, v'), v') - c v'))``, ``q' = q + dt K(q, v')``, solved by
  Newton (``physics.implicit.root``, gradients by the implicit function theorem) or, for
  mass-spring systems, by Baraff & Witkin's one linearized sparse solve per step.

``K`` is the system's kinematics (``dx/dt = v``; quaternion rates for rigid bodies). After
each step the system's ``post_step`` runs (normalize quaternions, resolve impulse
collisions). A step is differentiable w.r.t. the state, the system's tensors and the
control.
"""
from __future__ import annotations

import math

from ..autodiff import Tensor

__all__ = ["Integrator", "ExplicitEuler", "SemiImplicitEuler", "VelocityVerlet", "RK4", "ImplicitEuler",
           "get_integrator"]


def _decay(c, h):
    """``exp(-c h)`` for a number or a Tensor ``c`` (a 0-d CPU tensor that needs no gradient
    becomes a number: two ops fewer per step)."""
    if isinstance(c, Tensor):
        if c.requires_grad or c.dim() or c.device.type != "cpu":
            return (c * (-h)).exp()
        c = float(c)
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


class ImplicitEuler(Integrator):
    """Implicit (backward) Euler, order 1, A-stable: stable for stiff systems at time steps far
    above the explicit limit (it damps the fastest modes instead of blowing up).

    With ``q`` the position fields, ``v`` the velocity fields, ``a`` the acceleration, ``c``
    the linear drag (taken implicitly, ``- c v'``), ``P`` the pin projection and ``K`` the
    kinematics, one step solves for ``v'``::

        R(v') = v' - P(v + dt (a(q + dt K(q, v'), v', t + dt) - c v')) = 0,   q' = q + dt K(q, v')

    (for ``dx/dt = v``: ``x' = x + dt v'``); then the system's ``post_step`` runs.
    State fields keep their shapes (e.g. ``x, v [P, D]``).

    Two ways of solving it:

    * **generic** (any ``System``): Newton's method on ``R`` with all velocity fields
      flattened into one vector ``[n]``, by ``physics.implicit.root``: with ``solver="direct"``
      a dense ``[n, n]`` Jacobian from autodiff (``n`` VJPs: small systems), with
      ``solver="cg"`` matrix-free GMRES on Jacobian-vector products. Gradients w.r.t. the
      initial state, the system's tensors and the control come from the implicit function
      theorem (one adjoint solve per step), not from the Newton iterations. First
      derivatives only.
    * **Baraff-Witkin** (systems with ``force_jacobian_coo``, i.e. ``MassSpring``): with the
      sparse spring Jacobians ``Jx = dF/dx``, ``Jv = dF/dv`` ``[P*D, P*D]`` at ``(x, v)`` and
      ``F`` all forces (springs, dashpots, colliders, user force, gravity ``m g``)::

          (M (1 + c dt) - dt Jv - dt^2 Jx) dv = dt (F - c M v + dt Jx v),   v' = P(v + dv)

      one sparse solve (``sparse.solve``) per step with ``linearize=True`` (default), or
      Newton to ``tol`` on the exact residual with that matrix as Jacobian
      (``linearize=False``, through ``physics.implicit.root(solver="sparse")``). Pinned
      DOFs get identity rows and columns (the matrix stays symmetric, so ``solver="cg"``
      applies; CG uses the symmetric Jacobian without the dashpot's position term).
      Colliders and the user force are **explicit** (evaluated at ``(x, v)``, absent from
      the matrix); with ``linearize=False`` and colliders or a user force, the generic dense
      path is used instead, so that the solve and its gradient are exact. Gradients flow
      through ``sparse.solve``'s adjoint to stiffness, damping, rest lengths, masses, drag,
      gravity and the initial state; second derivatives are supported with
      ``linearize=True`` as far as ``sparse.solve`` supports them.

    Args:
        newton_iters: Newton iterations allowed (RuntimeError if ``tol`` is not reached).
        tol: Newton's stopping tolerance on ``max |R|`` (default 1e-10 for float64, 1e-5
            for float32).
        solver: ``"direct"`` (sparse LU / dense solve) or ``"cg"`` (conjugate gradients with
            a Jacobi preconditioner on the Baraff-Witkin path; GMRES on the generic path).
        linearize: Baraff-Witkin path only: one linearized solve per step (True) or Newton
            to convergence (False).
        jacobian: ``"auto"`` (Baraff-Witkin when the system has ``force_jacobian_coo``) or
            ``"dense"`` (always the generic Newton path).
        cg_tol: relative tolerance of the CG solve (default 1e-10 / 1e-5 by dtype).
    """
    order = 1
    name = "implicit_euler"

    def __init__(self, newton_iters=20, tol=None, solver="direct", linearize=True, jacobian="auto", cg_tol=None):
        if solver not in ("direct", "cg"):
            raise ValueError(f"ImplicitEuler: solver must be 'direct' or 'cg', got {solver!r}")
        if jacobian not in ("auto", "dense"):
            raise ValueError(f"ImplicitEuler: jacobian must be 'auto' or 'dense', got {jacobian!r}")
        if not (isinstance(newton_iters, int) and newton_iters >= 1):
            raise ValueError(f"ImplicitEuler: newton_iters must be an int >= 1, got {newton_iters!r}")
        self.newton_iters, self.tol, self.solver = newton_iters, tol, solver
        self.linearize, self.jacobian, self.cg_tol = bool(linearize), jacobian, cg_tol

    def __repr__(self):
        return (f"ImplicitEuler(newton_iters={self.newton_iters}, tol={self.tol}, solver={self.solver!r}, "
                f"linearize={self.linearize}, jacobian={self.jacobian!r})")

    def _tol(self, like):
        if self.tol is not None:
            return self.tol
        import numpy as np
        return 1e-10 if like._data.dtype == np.float64 else 1e-5

    def uses_sparse_path(self, system):
        """Whether ``step`` takes the Baraff-Witkin sparse path for ``system``."""
        if self.jacobian != "auto" or not hasattr(system, "force_jacobian_coo"):
            return False
        if not self.linearize and (getattr(system, "colliders", None) or getattr(system, "force", None) is not None):
            return False
        return True

    def step(self, system, state, t, dt, control=None):
        if self.uses_sparse_path(system):
            new = self._step_sparse(system, state, t, dt, control)
        else:
            new = self._step_generic(system, state, t, dt, control)
        return system.post_step(new, state, t, dt)

    # ---------------------------------------------------------------- generic Newton path
    def _step_generic(self, system, state, t, dt, control):
        from ..autodiff import cat
        from .implicit import root
        vfs = tuple(system.velocity_fields)
        shapes = [tuple(state[vf].shape) for vf in vfs]
        sizes = [state[vf].numel() for vf in vfs]

        def unpack(z):
            out, o = {}, 0
            for vf, shp, sz in zip(vfs, shapes, sizes):
                out[vf] = z[o:o + sz].reshape(shp)
                o += sz
            return out

        def pack(d):
            return cat([d[vf].reshape(-1) for vf in vfs]) if len(vfs) > 1 else d[vfs[0]].reshape(-1)

        def velocities(v1):
            """``P(v + dt (a(q', v') - c v'))`` as a dict, ``q' = q + dt K(q, v')``."""
            mid = state.replace(**v1)
            moved = mid.replace(**self._drift(system, mid, dt))
            acc = system.acceleration(moved, t + dt, control)
            drag = system.drag
            out = {}
            for vf in vfs:
                a = acc.get(vf)
                c = drag.get(vf)
                if c is not None:
                    a = (-c * v1[vf]) if a is None else a - c * v1[vf]
                out[vf] = system.constrain(vf, state[vf] if a is None else state[vf] + a * dt)
            return out

        def residual(z, theta):
            v1 = unpack(z)
            return z - pack(velocities(v1))

        z0 = pack({vf: system.constrain(vf, state[vf]) for vf in vfs}).detach()
        z = root(residual, z0, (), tol=self._tol(z0), maxiter=self.newton_iters,
                 solver="dense" if self.solver == "direct" else "gmres")
        v1 = unpack(z)
        mid = state.replace(**v1)
        return mid.replace(**self._drift(system, mid, dt))

    # ---------------------------------------------------------------- Baraff-Witkin path
    @staticmethod
    def _bw_parts(system, x, v, dt, control, symmetric):
        """``(A, Jx-entries, free)``: the sparse step matrix
        ``A = M (1 + c dt) - dt Jv - dt^2 Jx`` ``[P*D, P*D]`` with identity rows/columns at
        pinned DOFs, the COO entries ``(rows, cols, vals)`` of ``Jx``, and the free-DOF mask
        ``[P*D]`` (raw array, or None without pins)."""
        from .. import sparse
        from ..autodiff import cat
        from ..autodiff.backend import get_xp
        from .state import State
        P, D = x.shape
        n = P * D
        rows, cols, fx, fv = system.force_jacobian_coo(State(x=x, v=v), control, symmetric=symmetric)
        xp = get_xp(rows)
        m = system.mass
        mdof = (m.unsqueeze(-1) if m.ndim == 1 else m) * (x.detach() * 0.0 + 1.0)      # [P, D]
        c = system.drag.get("v")
        if c is not None:
            mdof = mdof * (c * dt + 1.0)
        offdiag = fv * (-dt) - fx * (dt * dt)
        free = None
        diag = mdof.reshape(-1)
        if system.free_mask is not None:
            fm = system.free_mask._data
            from ..autodiff import as_tensor
            free = xp.ascontiguousarray(xp.broadcast_to(fm, (P, D))).reshape(-1)
            offdiag = offdiag * as_tensor(free[rows] * free[cols], dtype=x.dtype, device=x.device)
            ft = as_tensor(free, dtype=x.dtype, device=x.device)
            diag = diag * ft + (1.0 - ft)
            free = ft
        idx = xp.arange(n, dtype=rows.dtype)
        A = sparse.assemble(xp.concatenate([idx, rows.reshape(-1)]), xp.concatenate([idx, cols.reshape(-1)]),
                            cat([diag, offdiag.reshape(-1)]), (n, n))
        return A, (rows.reshape(-1), cols.reshape(-1), fx.reshape(-1)), free

    def _total_force(self, system, x, v, t, control):
        """All forces on the particles ``[P, D]``: springs, colliders, user force, ``m g``."""
        from .state import State
        F = system.forces(State(x=x, v=v), t, control)
        if system.gravity is not None:
            m = system.mass
            F = F + (m.unsqueeze(-1) if m.ndim == 1 else m) * system.gravity
        return F

    def _solve(self, A, b):
        from .. import sparse
        if self.solver == "direct":
            return sparse.solve(A, b)
        return sparse.solve(A, b, method="cg", preconditioner="jacobi", tol=self.cg_tol)

    def _step_sparse(self, system, state, t, dt, control):
        x, v = state.x, system.constrain("v", state.v)
        symmetric = self.solver == "cg"
        if self.linearize:
            v1 = self._linearized(system, state, t, dt, control, symmetric)
        else:
            v1 = self._newton_sparse(system, state, x, v, t, dt, control)
        return state.replace(x=x + v1 * dt, v=v1)

    def _linearized(self, system, state, t, dt, control, symmetric):
        """``v' [P, D]`` of one Baraff-Witkin step (one sparse solve)."""
        from ..autodiff import segment_sum
        x, v = state.x, system.constrain("v", state.v)
        P, D = x.shape
        n = P * D
        A, (rows, cols, fx), free = self._bw_parts(system, x, v, dt, control, symmetric)
        F = self._total_force(system, x, v, t, control)
        c = system.drag.get("v")
        if c is not None:
            m = system.mass
            F = F - (m.unsqueeze(-1) if m.ndim == 1 else m) * v * c
        vflat = v.reshape(-1)
        Jv0 = segment_sum(fx * vflat.index_select(0, cols), rows, n)       # Jx v  [n]
        rhs = (F.reshape(-1) + Jv0 * dt) * dt
        if free is not None:
            rhs = rhs * free
        dv = self._solve(A, rhs).reshape(P, D)
        return system.constrain("v", v + dv)

    def _newton_sparse(self, system, state, x, v, t, dt, control):
        """Newton on ``M (v' - v) - dt (F(x + dt v', v') - c M v') = 0`` (free DOFs),
        ``v' = 0`` (pinned), Jacobian the Baraff-Witkin matrix (exact without colliders)."""
        from .implicit import root
        P, D = x.shape
        m = system.mass
        mP = m.unsqueeze(-1) if m.ndim == 1 else m
        c = system.drag.get("v")
        fm = system.free_mask

        def residual(z, theta):
            v1 = z.reshape(P, D)
            F = self._total_force(system, x + v1 * dt, v1, t + dt, control)
            if c is not None:
                F = F - mP * v1 * c
            r = mP * (v1 - v) - F * dt
            if fm is not None:
                r = r * fm + v1 * (1.0 - fm)
            return r.reshape(-1)

        def jac(z, theta):
            v1 = z.reshape(P, D)
            A, _, _ = self._bw_parts(system, x + v1 * dt, v1, dt, control, False)
            return A

        from ..autodiff import no_grad
        with no_grad():                      # start from the linearized (Baraff-Witkin) step
            z0 = self._linearized(system, state.replace(x=x.detach(), v=v.detach()), t, dt, control, False)
        z = root(residual, z0.detach().reshape(-1), (), tol=self._tol(x), maxiter=self.newton_iters,
                 solver="sparse", jacobian=jac)
        return system.constrain("v", z.reshape(P, D))


BackwardEuler = ImplicitEuler

_BY_NAME = {"explicit_euler": ExplicitEuler, "euler": ExplicitEuler,
            "semi_implicit_euler": SemiImplicitEuler, "symplectic_euler": SemiImplicitEuler,
            "velocity_verlet": VelocityVerlet, "verlet": VelocityVerlet, "leapfrog": VelocityVerlet,
            "rk4": RK4, "implicit_euler": ImplicitEuler, "backward_euler": ImplicitEuler}


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
