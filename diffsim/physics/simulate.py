"""``simulate``: roll a system forward in time, differentiably, with optional checkpointing.

::

    final = physics.simulate(system, state, steps=200, dt=1e-3)                 # a State
    traj = physics.simulate(system, state, 200, 1e-3, record="all")             # a Trajectory
    loss = ((traj.final.x - target) ** 2).mean(); loss.backward()
    traj.grad_norms                       # [steps] norm of dL/d(state after each step)

Memory for long rollouts (``checkpoint``):

* ``None``: every step's graph is kept (fastest; memory grows with ``steps``).
* ``k`` (int): only the state at the start of each k-step segment is kept; backward
  recomputes one segment at a time. Memory ~ steps/k states + k steps of graph (``k ~
  sqrt(steps)`` balances them), time ~ one extra forward.
* ``"binomial"``: Griewank's binomial (revolve) checkpointing
  (``ds.checkpoint_binomial``): with ``s = ceil(log2 steps)`` snapshots, memory is
  O(log steps) states and each step runs at most ``r + 2`` times, ``r`` the least with
  ``C(s + r, s) >= steps`` (``r = 6`` for 100 000 steps); ``("binomial", s)`` chooses the
  number of snapshots. With ``record``, each recorded interval is one binomial rollout.

Gradients are the same in every mode (the same ops run on the same values; only the order
in which per-step contributions to a parameter's gradient are added can differ, by rounding).

Gradient hooks run on the gradient of each state field after each step, during
backward: ``grad_hooks=[physics.clip_gradient_through_time(10.0)]`` rescales every
per-step gradient whose norm exceeds 10 (truncating exploding gradients in long rollouts).
A hook is ``hook(step, field, grad) -> grad or None``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..autodiff import Tensor, stack
from ..autodiff.checkpoint import binomial_rollout, checkpoint as _checkpoint
from ..autodiff.grad_mode import STATE
from .integrators import get_integrator
from .state import State
from .system import System, check_finite

__all__ = ["simulate", "Trajectory", "clip_gradient_through_time", "GradientClip"]


# ------------------------------------------------------------------ trajectory

class Trajectory:
    """States recorded by ``simulate(..., record="all" | n)``.

    * ``traj.states``: list of States; ``traj[i]``; ``len(traj)``.
    * ``traj.steps`` (step index of each record, starting with 0 for the initial state) and
      ``traj.times`` (``t0 + step * dt``), numpy arrays.
    * ``traj.x`` (any field name): the field stacked over records, a Tensor
      ``[len(traj), *field shape]`` that carries gradients.
    * ``traj.final``: the state after the last step (recorded or not).
    * ``traj.grad_norms``: numpy ``[n_steps]``, after a backward through the rollout, the
      norm of the gradient w.r.t. the state after step ``i + 1`` (all fields together;
      0 where no gradient arrived); ``traj.field_grad_norms[name]`` per field.
    """

    def __init__(self, fields, steps, times, states, final, n_steps):
        self.fields = tuple(fields)
        self.steps = np.asarray(steps, dtype=np.int64)
        self.times = np.asarray(times, dtype=np.float64)
        self.states = list(states)
        self.final = final
        self.n_steps = n_steps
        self._grad_sq = np.zeros((n_steps, len(self.fields)))
        self._stacked = {}

    def __len__(self):
        return len(self.states)

    def __getitem__(self, i):
        return self.states[i]

    def __iter__(self):
        return iter(self.states)

    def __getattr__(self, name):
        if name.startswith("_") or name not in self.__dict__.get("fields", ()):
            raise AttributeError(f"Trajectory has no attribute {name!r}")
        cache = self._stacked
        if name not in cache:
            cache[name] = stack([s[name] for s in self.states])
        return cache[name]

    @property
    def grad_norms(self):
        return np.sqrt(self._grad_sq.sum(axis=1))

    @property
    def field_grad_norms(self):
        return {f: np.sqrt(self._grad_sq[:, i]) for i, f in enumerate(self.fields)}

    def _record_grad(self, step, field_index, g):
        self._grad_sq[step - 1, field_index] = float((g.detach() ** 2).sum())

    def __repr__(self):
        return (f"Trajectory({len(self)} states of {self.n_steps} steps, fields {list(self.fields)}, "
                f"t = {self.times[0]:g} .. {self.times[-1]:g})")


class GradientClip:
    """Gradient hook: rescale the gradient of each state field after each step to norm at
    most ``max_norm`` (``g * max_norm / |g|`` when ``|g| > max_norm``)."""

    def __init__(self, max_norm):
        if not isinstance(max_norm, numbers.Real) or not max_norm > 0:
            raise ValueError(f"clip_gradient_through_time: max_norm must be a positive number, got {max_norm!r}")
        self.max_norm = float(max_norm)

    def __call__(self, step, field, grad):
        n = float((grad.detach() ** 2).sum()) ** 0.5
        if n > self.max_norm:
            return grad * (self.max_norm / n)
        return None

    def __repr__(self):
        return f"clip_gradient_through_time({self.max_norm:g})"


def clip_gradient_through_time(max_norm):
    """A ``grad_hooks`` entry for ``simulate`` that clips the gradient flowing back through
    each step: the gradient w.r.t. each state field after each step is rescaled to norm at
    most ``max_norm``. It tames exploding gradients of long or chaotic rollouts (the
    result is then a biased, bounded gradient, like truncated backpropagation through
    time)."""
    return GradientClip(max_norm)


# ------------------------------------------------------------------ checks

def _check_args(system, state, steps, dt, controls, record, checkpoint, check_state=True):
    op = "simulate"
    if not isinstance(system, System):
        raise TypeError(f"{op}: system must be a physics.System, got {type(system).__name__}")
    if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"{op}: steps must be a non-negative int, got {steps!r}")
    if isinstance(dt, Tensor):
        if dt.numel() != 1:
            raise ValueError(f"{op}: dt must be a number, got a Tensor of shape {list(dt.shape)}")
        dt = float(dt.detach())
    if not isinstance(dt, numbers.Real) or isinstance(dt, bool) or not math.isfinite(dt) or not dt > 0:
        raise ValueError(f"{op}: dt must be a positive finite number, got {dt!r}")
    if check_state:
        system.check_state(state, op)
    elif not isinstance(state, State):
        raise TypeError(f"{op}: state must be a physics.State, got {type(state).__name__}")
    if isinstance(controls, Tensor):
        if controls.dim() == 0 or controls.shape[0] < steps:
            raise ValueError(f"{op}: controls must be a Tensor [steps, ...] with at least steps={steps} "
                             f"rows (one control per step), got shape {list(controls.shape)}")
    elif controls is not None and not callable(controls):
        raise TypeError(f"{op}: controls must be None, a Tensor [steps, ...] or a callable "
                        f"controls(t, state), got {type(controls).__name__}")
    if record in ("final", "all"):
        every = None if record == "final" else 1
    elif isinstance(record, numbers.Integral) and not isinstance(record, bool) and record >= 1:
        every = int(record)
    else:
        raise ValueError(f"{op}: record must be 'final', 'all' or a positive int (record every n-th "
                         f"step), got {record!r}")
    if checkpoint is None:
        ck = None
    elif checkpoint == "binomial":
        ck = ("binomial", None)
    elif (isinstance(checkpoint, tuple) and len(checkpoint) == 2 and checkpoint[0] == "binomial"
          and isinstance(checkpoint[1], numbers.Integral) and checkpoint[1] >= 1):
        ck = ("binomial", int(checkpoint[1]))
    elif isinstance(checkpoint, numbers.Integral) and not isinstance(checkpoint, bool) and checkpoint >= 1:
        ck = ("segments", int(checkpoint))
    else:
        raise ValueError(f"{op}: checkpoint must be None, a positive int (segment length), 'binomial' "
                         f"or ('binomial', snapshots), got {checkpoint!r}")
    return float(dt), every, ck


# ------------------------------------------------------------------ simulate

def simulate(system, state, steps, dt, integrator="semi_implicit_euler", controls=None, record="final",
             checkpoint=None, progress=False, t0=0.0, grad_hooks=None, check=True):
    """Integrate ``system`` from ``state`` for ``steps`` steps of size ``dt``.

    Args:
        system: a ``physics.System`` (``MassSpring``, ``Particles``, ``RigidBodies`` ...).
        state: a ``physics.State`` with the system's fields (e.g. ``x [P, D]``, ``v [P, D]``).
        steps: number of steps (int >= 0); dt: step size (> 0).
        integrator: an ``Integrator`` or its name ("semi_implicit_euler" (default),
            "explicit_euler", "velocity_verlet", "rk4").
        controls: None; a Tensor ``[steps, ...]`` (``controls[i]`` is passed to the system at
            step ``i``); or a callable ``controls(t, state)`` (e.g. an ``nn.Module`` policy).
        record: "final" (return the final State), "all" or n (return a ``Trajectory`` with
            the initial state and every n-th state).
        checkpoint: None, a segment length k, "binomial" or ("binomial", snapshots); see
            the module docstring.
        progress: show a tqdm progress bar over the forward steps.
        t0: time of the initial state.
        grad_hooks: a callable or list of callables ``hook(step, field, grad)`` run on the
            gradient w.r.t. each state field after each step during backward (e.g.
            ``clip_gradient_through_time(max_norm)``); a returned Tensor replaces the gradient.
        check: validate the initial state (fields, shapes, finite values) and raise if the
            final state is not finite.

    Returns:
        The final ``State``, or a ``Trajectory`` when ``record`` is "all" or an int.
        Gradients reach the initial state, the system's tensors and the controls.
    """
    dt, every, ck = _check_args(system, state, steps, dt, controls, record, checkpoint, check)
    integ = get_integrator(integrator)
    names = state.fields
    hooks = [] if grad_hooks is None else (list(grad_hooks) if isinstance(grad_hooks, (list, tuple))
                                           else [grad_hooks])
    for h in hooks:
        if not callable(h):
            raise TypeError(f"simulate: grad_hooks entries must be callable, got {type(h).__name__}")
    rec_steps = [] if every is None else list(range(0, steps + 1, every))
    rec_set = set(rec_steps)
    traj = (Trajectory(names, rec_steps, [t0 + i * dt for i in rec_steps], [], None, steps)
            if every is not None else None)
    fidx = {n: i for i, n in enumerate(names)}
    want_hooks = bool(hooks) or traj is not None
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc=f"simulate {type(system).__name__}", leave=False)
    counting = [True]

    def control_at(i, s):
        if controls is None:
            return None
        if isinstance(controls, Tensor):
            return controls[i]
        return controls(t0 + i * dt, s)

    def make_hook(i, name):
        def hook(g):
            for h in hooks:
                r = h(i, name, g)
                if r is not None:
                    g = r
            if traj is not None:
                traj._record_grad(i, fidx[name], g)
            return g
        return hook

    def one_step(tensors, i):
        s = State.from_tensors(names, tensors)
        s1 = integ.step(system, s, t0 + i * dt, dt, control_at(i, s))
        out = tuple(s1[n] for n in names)
        if want_hooks and STATE.grad_enabled:
            for n, t in zip(names, out):
                if t.requires_grad:
                    t.register_hook(make_hook(i + 1, n))
        if bar is not None and counting[0]:
            bar.update(1)
        return out

    def plain(tensors, start, n):
        recs = []
        for i in range(start, start + n):
            tensors = one_step(tensors, i)
            if i + 1 in rec_set:
                recs.append(tensors)
        return tensors, recs

    def segmented(tensors, k):
        recs = []
        for start in range(0, steps, k):
            n = min(k, steps - start)
            tensors, r = _checkpoint(lambda *ts, _s=start, _n=n: plain(ts, _s, _n), *tensors)
            recs.extend(r)
        return tensors, recs

    def binomial(tensors, snaps):
        # one binomial node per recorded interval: the recorded states are its outputs
        recs = []
        bounds = rec_steps[1:] if rec_steps else []
        edges = [0] + [b for b in bounds if 0 < b < steps] + [steps]
        for a, b in zip(edges[:-1], edges[1:]):
            s_ = snaps if snaps is not None else max(1, math.ceil(math.log2(max(b - a, 2))))
            tensors = binomial_rollout(one_step, b - a, tensors, s_, start=a)
            if b in rec_set:
                recs.append(tensors)
        return tensors, recs

    tensors = state.tensors()
    try:
        if ck is None or steps == 0:
            final, recs = plain(tensors, 0, steps)
        elif ck[0] == "segments":
            final, recs = segmented(tensors, ck[1])
        else:
            final, recs = binomial(tensors, ck[1])
    finally:
        counting[0] = False
        if bar is not None:
            bar.close()
    final_state = State.from_tensors(names, final)
    if check and steps:
        check_finite(final_state, "simulate", when=f"after {steps} steps (the rollout diverged; reduce dt?) ")
    if traj is None:
        return final_state
    traj.states = ([state] if 0 in rec_set else []) + [State.from_tensors(names, r) for r in recs]
    traj.final = final_state
    return traj
