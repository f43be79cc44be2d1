"""Ordinary differential equations: ``odeint`` and ``odeint_adjoint`` (torchdiffeq's API).

::

    ys = odeint(f, y0, t)                       # ys: [len(t), *y0.shape]
    ys = odeint(f, y0, t, adjoint=True)         # same values, O(1) memory in the number of steps

``f(t, y)`` returns dy/dt: ``t`` is a 0-d Tensor, ``y`` a Tensor shaped like ``y0`` (or a tuple
of Tensors when ``y0`` is a tuple, and then ``f`` returns a tuple of the same shapes).

Methods
-------
* fixed grid: ``"euler"`` (order 1), ``"midpoint"`` (2), ``"rk4"`` (classic Runge-Kutta, 4).
  They step on the grid ``t`` itself, or, with ``options={"step_size": h}``, split every
  interval ``[t_i, t_{i+1}]`` into ``ceil(|t_{i+1} - t_i| / h)`` equal steps (so every
  requested time is hit exactly and no step is longer than ``h``).
* adaptive: ``"dopri5"`` (Dormand-Prince 5(4), 4th-order dense output) and ``"bosh3"``
  (Bogacki-Shampine 3(2), cubic Hermite interpolation). Embedded error estimates, error
  ratio ``rms(err / (atol + rtol * max(|y_n|, |y_{n+1}|)))``, Hairer's initial step
  selection, PI step-size control (``beta``; 0 gives the standard controller), safety
  factor and min/max factors. Output times are hit by interpolating inside the accepted
  steps (the steps are not shortened to land on them).

Options (``options=dict``): ``step_size`` (fixed grid); ``first_step``, ``safety`` (0.9),
``min_factor`` (0.2), ``max_factor`` (10), ``beta`` (0.04 for dopri5, 0 for bosh3),
``max_num_steps`` (2**31 - 1; a clear error when exceeded), ``max_step`` (inf).

Gradients
---------
Without ``adjoint`` the solve is recorded by autograd like any other diffsim code, so it is
differentiable w.r.t. ``y0``, ``t`` and every tensor ``f`` uses (memory grows with the
number of steps). The step-size controller's decisions are not differentiated (the step
grid is ``t[0] + offsets`` with the offsets held constant), as in every RK code.

With ``adjoint=True`` the forward solve runs under ``no_grad`` and the backward pass
integrates the adjoint system ``[y, a, a_params]`` backward in time between the output
times (``da/dt = -a df/dy``, ``da_p/dt = -a df/dp``) with vector-Jacobian products of ``f``
from ``autograd.grad``; ``dL/dt_i = g_i . f(t_i, y_i)`` for ``i >= 1`` and
``dL/dt_0 = -a(t_0) . f(t_0, y_0)``. The parameters are ``params`` or, if ``f`` has a
``parameters()`` method (an ``nn.Module``), those. Tensors that ``f`` captures in a closure
cannot be discovered: **pass them in** ``params`` or they get no gradient.
"""
from __future__ import annotations

import math

import numpy as np

from ..autodiff import backend
from ..autodiff import Function, Tensor, as_tensor, autograd, cat, enable_grad, no_grad, stack, zeros

__all__ = ["odeint", "odeint_adjoint", "FIXED_METHODS", "ADAPTIVE_METHODS"]

# ------------------------------------------------------------------------- tableaus

class _Tableau:
    def __init__(self, c, a, e, order, beta):
        self.c, self.a, self.e, self.order, self.beta = c, a, e, order, beta


_DOPRI5 = _Tableau(
    c=[0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0],
    a=[[], [1 / 5], [3 / 40, 9 / 40], [44 / 45, -56 / 15, 32 / 9],
       [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
       [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
       [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]],
    # b - b_hat (the last row of a is b: first same as last)
    e=[71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40],
    order=5, beta=0.04)

_BOSH3 = _Tableau(
    c=[0.0, 1 / 2, 3 / 4, 1.0],
    a=[[], [1 / 2], [0.0, 3 / 4], [2 / 9, 1 / 3, 4 / 9]],
    e=[2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8],
    order=3, beta=0.0)

# Hairer's dense output for DOPRI5 (order 4), dopri5.f / contd5
_D = [-12715105075 / 11282082432, 0.0, 87487479700 / 32700410799, -10690763975 / 1880347072,
      701980252875 / 199316789632, -1453857185 / 822651844, 69997945 / 29380423]

ADAPTIVE_METHODS = {"dopri5": _DOPRI5, "bosh3": _BOSH3}
FIXED_METHODS = ("euler", "midpoint", "rk4")
_ADAPTIVE_KEYS = {"first_step", "safety", "min_factor", "max_factor", "beta", "max_num_steps",
                  "max_step"}
_FIXED_KEYS = {"step_size", "max_num_steps"}


def _lincomb(coefs, ks):
    """sum_j coefs[j] * ks[j], skipping zero coefficients (Tensor ops)."""
    out = None
    for c, k in zip(coefs, ks):
        if c == 0.0:
            continue
        term = k * c
        out = term if out is None else out + term
    return out


def _rms(x):
    xp = backend.get_xp(x)
    return float(xp.sqrt(xp.mean(xp.square(x)))) if x.size else 0.0


# ------------------------------------------------------------------------- checks

def _check_finite(y, what, time):
    a = y._data
    if not bool(backend.get_xp(a).isfinite(a).all()):
        raise FloatingPointError(
            f"odeint: {what} is not finite (NaN or Inf) at t={time:.6g}; the ODE blew up or f "
            "produced NaN. Check f, use a smaller step or tighter tolerances, or shorten the interval.")


def _wrap_f(f, shape, dtype):
    """f with its output checked: a Tensor of y's shape."""
    def g(t, y):
        out = f(t, y)
        if not isinstance(out, Tensor):
            raise TypeError(f"odeint: f(t, y) must return a Tensor, got {type(out).__name__}")
        if out.shape != shape:
            raise ValueError(f"odeint: f(t, y) returned shape {list(out.shape)}, but y has shape "
                             f"{list(shape)}; dy/dt must have the shape of y")
        if out.dtype != dtype:
            out = out.to(dtype)
        return out
    return g


def _reverse(func):
    """s -> -t: solving g(s, y) = -f(-s, y) forward in s solves f backward in t."""
    def g(s, y):
        return -func(-s, y)
    return g


# ------------------------------------------------------------------------- fixed grid

def _step_fixed(method, func, t, h, y):
    if method == "euler":
        return y + h * func(t, y)
    if method == "midpoint":
        half = h * 0.5
        k1 = func(t, y)
        return y + h * func(t + half, y + half * k1)
    # classic RK4
    half = h * 0.5
    k1 = func(t, y)
    k2 = func(t + half, y + half * k1)
    k3 = func(t + half, y + half * k2)
    k4 = func(t + h, y + h * k3)
    return y + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)


def _solve_fixed(method, func, y0, t, tf, options, stats):
    step_size = options.get("step_size")
    max_steps = int(options.get("max_num_steps", 2 ** 31 - 1))
    if step_size is not None and not float(step_size) > 0:
        raise ValueError(f"odeint: options['step_size'] must be positive, got {step_size}")
    ys = [y0]
    y = y0
    grid = [tf[0]]
    n_total = 0
    for i in range(len(tf) - 1):
        span = tf[i + 1] - tf[i]
        n = 1 if step_size is None else max(1, int(math.ceil(span / float(step_size) - 1e-9)))
        if n_total + n > max_steps:
            raise RuntimeError(f"odeint: max_num_steps={max_steps} exceeded (the grid needs "
                               f"{n_total + n} steps or more); raise options['max_num_steps'] or "
                               "use a larger step_size")
        ti = t[i]
        h = (t[i + 1] - ti) / n
        for k in range(n):
            y = _step_fixed(method, func, ti + h * k, h, y)
            grid.append(tf[i] + span * (k + 1) / n)
            _check_finite(y, "the state", grid[-1])
        n_total += n
        ys.append(y)
    if stats is not None:
        stats.update(n_steps=n_total, n_accepted=n_total, n_rejected=0, grid=grid)
    return ys


# ------------------------------------------------------------------------- adaptive

def _initial_step(func, t0, y0, f0, order, rtol, atol):
    """Hairer, Norsett & Wanner, Solving ODEs I, II.4 (starting step size)."""
    y = y0._data
    fa = f0._data
    scale = atol + abs(y) * rtol
    d0, d1 = _rms(y / scale), _rms(fa / scale)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    y1 = y0 + f0 * h0
    f1 = func(t0 + h0, y1)
    d2 = _rms((f1._data - fa) / scale) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / order)
    return min(100 * h0, h1)


def _interp_dopri5(y0, y1, ks, h, theta):
    r2 = y1 - y0
    r3 = ks[0] * h - r2
    r4 = r2 - ks[6] * h - r3
    r5 = _lincomb(_D, ks) * h
    s1 = 1.0 - theta
    return y0 + theta * (r2 + s1 * (r3 + theta * (r4 + s1 * r5)))


def _interp_hermite(y0, y1, ks, h, theta):
    f0, f1 = ks[0], ks[-1]
    t2 = theta * theta
    t3 = t2 * theta
    return (y0 * (2 * t3 - 3 * t2 + 1) + (f0 * h) * (t3 - 2 * t2 + theta)
            + y1 * (3 * t2 - 2 * t3) + (f1 * h) * (t3 - t2))


def _solve_adaptive(method, func, y0, t, tf, rtol, atol, options, stats):
    tab = ADAPTIVE_METHODS[method]
    interp = _interp_dopri5 if method == "dopri5" else _interp_hermite
    safety = float(options.get("safety", 0.9))
    min_factor = float(options.get("min_factor", 0.2))
    max_factor = float(options.get("max_factor", 10.0))
    beta = float(options.get("beta", tab.beta))
    max_steps = int(options.get("max_num_steps", 2 ** 31 - 1))
    max_step = float(options.get("max_step", math.inf))
    expo = 1.0 / tab.order - 0.75 * beta
    offsets = [x - tf[0] for x in tf]
    s_end = offsets[-1]
    t0 = t[0]

    f0 = func(t0, y0)
    _check_finite(f0, "f(t0, y0)", tf[0])
    h = options.get("first_step")
    h = _initial_step(func, t0, y0, f0, tab.order, rtol, atol) if h is None else float(h)
    if not h > 0:
        raise ValueError(f"odeint: options['first_step'] must be positive, got {h}")
    h = min(h, max_step)

    ys = [y0]
    s, y, k1 = 0.0, y0, f0
    i = 1
    facold = 1e-4
    n_acc = n_rej = 0
    last_rejected = False
    ya = y0._data
    xp = backend.get_xp(ya)
    while i < len(tf):
        if n_acc + n_rej >= max_steps:
            raise RuntimeError(
                f"odeint: max_num_steps={max_steps} exceeded at t={tf[0] + s:.6g} (integrating to "
                f"{tf[-1]:.6g}, last step size {h:.3g}); the problem may be stiff or the tolerances "
                "too tight. Raise options['max_num_steps'] or loosen rtol/atol.")
        last = s + 1.01 * h >= s_end
        if last:
            h = s_end - s
        if h <= 4 * np.finfo(np.float64).eps * max(abs(tf[0] + s), 1.0) or h <= 0:
            raise FloatingPointError(
                f"odeint: step size underflow at t={tf[0] + s:.6g} (h={h:.3g}): the state or f is "
                "not finite (NaN or Inf) there, or the problem is too stiff for an explicit method.")
        tk = t0 + s
        ks = [k1]
        yi = y
        for c, arow in zip(tab.c[1:], tab.a[1:]):
            yi = y + _lincomb(arow, ks) * h
            ks.append(func(tk + c * h, yi))
        y1 = yi                                # FSAL: the last stage's input is the new state
        err = h * sum(e * k._data for e, k in zip(tab.e, ks) if e != 0.0)
        y1a = y1._data
        with np.errstate(invalid="ignore", over="ignore"):
            scale = atol + rtol * xp.maximum(abs(ya), abs(y1a))
            ratio = _rms(err / scale)
        if not math.isfinite(ratio) or not bool(xp.isfinite(y1a).all()):
            n_rej += 1
            last_rejected = True
            h *= 0.1
            continue
        if ratio <= 1.0:
            n_acc += 1
            s_new = s_end if last else s + h
            while i < len(tf) and offsets[i] <= s_new + 1e-12 * max(1.0, abs(s_new)):
                if last and i == len(tf) - 1 and offsets[i] == s_new and not t._rg:
                    ys.append(y1)
                else:
                    theta = (t[i] - tk) / h
                    ys.append(interp(y, y1, ks, h, theta))
                i += 1
            s, y, k1, ya = s_new, y1, ks[-1], y1a
            fac = max_factor if ratio == 0 else safety * ratio ** (-expo) * facold ** beta
            fac = min(max_factor, max(min_factor, fac))
            if last_rejected:
                fac = min(fac, 1.0)
            facold = max(ratio, 1e-4)
            last_rejected = False
            h = min(h * fac, max_step)
        else:
            n_rej += 1
            last_rejected = True
            h *= max(min_factor, safety * ratio ** (-1.0 / tab.order))
    if stats is not None:
        stats.update(n_steps=n_acc + n_rej, n_accepted=n_acc, n_rejected=n_rej)
    return ys


# ------------------------------------------------------------------------- core

def _check_method(method, options):
    if method not in ADAPTIVE_METHODS and method not in FIXED_METHODS:
        raise ValueError(f"odeint: unknown method {method!r}; choose one of "
                         f"{sorted(ADAPTIVE_METHODS) + list(FIXED_METHODS)}")
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"odeint: options must be a dict, got {type(options).__name__}")
    allowed = _ADAPTIVE_KEYS if method in ADAPTIVE_METHODS else _FIXED_KEYS
    bad = set(options) - allowed
    if bad:
        raise ValueError(f"odeint: options {sorted(bad)} are not understood by method {method!r}; "
                         f"it takes {sorted(allowed)}")
    return dict(options)


def _check_t(t, dtype, device):
    if not isinstance(t, Tensor):
        t = as_tensor(np.asarray(t, dtype=np.float64), dtype=dtype, device=device)
    if t.ndim != 1:
        raise ValueError(f"odeint: t must be a 1-d Tensor of output times, got shape {list(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError("odeint: t must hold at least one time")
    if not t.is_floating_point():
        t = t.to(dtype)
    elif t.dtype != dtype:
        t = t.to(dtype)
    tf = [float(v) for v in backend.to_numpy(t._data).astype(np.float64)]
    if not all(math.isfinite(v) for v in tf):
        raise ValueError("odeint: t holds NaN or Inf")
    d = np.diff(tf)
    if len(d) and not (np.all(d > 0) or np.all(d < 0)):
        raise ValueError(f"odeint: t must be strictly increasing or strictly decreasing, got {tf[:8]}"
                         f"{' ...' if len(tf) > 8 else ''}")
    return t, tf


def _solve(func, y0, t, tf, method, rtol, atol, options, stats=None):
    """Solve on flat-or-not Tensor state; returns [len(t), *y0.shape] (recorded unless no_grad)."""
    _check_finite(y0, "y0", tf[0])
    if len(tf) == 1:
        return stack([y0])
    if tf[1] < tf[0]:
        func, t, tf = _reverse(func), -t, [-v for v in tf]
    if method in FIXED_METHODS:
        ys = _solve_fixed(method, func, y0, t, tf, options, stats)
    else:
        ys = _solve_adaptive(method, func, y0, t, tf, rtol, atol, options, stats)
    return stack(ys)


def _flatten(f, y0):
    """Tuple states -> one flat vector (and f on it); returns (f_flat, y0_flat, unflatten)."""
    if isinstance(y0, Tensor):
        return f, y0, None
    if not isinstance(y0, (tuple, list)) or not y0 or not all(isinstance(y, Tensor) for y in y0):
        raise TypeError(f"odeint: y0 must be a Tensor or a non-empty tuple of Tensors, got "
                        f"{type(y0).__name__}")
    dtypes = {y.dtype for y in y0}
    if len(dtypes) != 1:
        raise TypeError("odeint: the tensors of a tuple state must share a dtype, got "
                        f"{sorted(map(str, dtypes))}")
    shapes = [tuple(y.shape) for y in y0]
    sizes = [int(np.prod(s)) for s in shapes]
    offs = np.concatenate([[0], np.cumsum(sizes)]).tolist()

    def split(z):
        return tuple(z[offs[j]:offs[j + 1]].reshape(shapes[j]) for j in range(len(shapes)))

    def f_flat(t, z):
        out = f(t, split(z))
        if not isinstance(out, (tuple, list)) or len(out) != len(shapes):
            raise ValueError(f"odeint: y0 is a tuple of {len(shapes)} tensors, so f must return a tuple "
                             f"of {len(shapes)} tensors, got {type(out).__name__}"
                             f"{'' if not isinstance(out, (tuple, list)) else ' of length %d' % len(out)}")
        for j, (o, s) in enumerate(zip(out, shapes)):
            if not isinstance(o, Tensor) or tuple(o.shape) != s:
                raise ValueError(f"odeint: f returned shape {list(getattr(o, 'shape', ()))} for element {j} "
                                 f"of the state, which has shape {list(s)}")
        return cat([o.reshape(-1) for o in out])

    def unflatten(sol):
        n = sol.shape[0]
        return tuple(sol[:, offs[j]:offs[j + 1]].reshape((n,) + shapes[j]) for j in range(len(shapes)))

    return f_flat, cat([y.reshape(-1) for y in y0]), unflatten


def odeint(f, y0, t, method="dopri5", rtol=1e-7, atol=1e-9, adjoint=False, params=None, options=None,
           return_stats=False):
    """Solve ``dy/dt = f(t, y)``, ``y(t[0]) = y0``, and return ``y`` at every time in ``t``.

    Args:
        f: callable ``f(t, y) -> dy/dt``; ``t`` a 0-d Tensor, ``y`` shaped like ``y0`` (a Tensor or
            a tuple of Tensors); it must return the same shape(s). May be an ``nn.Module``.
        y0: Tensor of any shape ``S`` (or a tuple of Tensors of shapes ``S_j``, one dtype).
        t: 1-d Tensor ``[T]`` of output times, strictly increasing or strictly decreasing
            (a list or array is converted); ``t[0]`` is the initial time.
        method: ``"dopri5"`` | ``"bosh3"`` (adaptive) | ``"rk4"`` | ``"midpoint"`` | ``"euler"``.
        rtol, atol: tolerances of the adaptive methods (per component:
            ``|err| <= atol + rtol * |y|`` in the RMS sense).
        adjoint: compute gradients with the adjoint method (O(1) memory in the number of steps).
        params: with ``adjoint``, the tensors ``f`` uses that need gradients; default
            ``f.parameters()`` when ``f`` has that method. Tensors captured in closures must be
            listed here.
        options: dict of solver options (see the module docstring), e.g. ``{"step_size": 0.01}``
            for the fixed-grid methods or ``{"max_num_steps": 1000}``.
        return_stats: also return a dict ``{"n_steps", "n_accepted", "n_rejected"}`` (and
            ``"grid"``, the list of times stepped to, for the fixed-grid methods).

    Returns:
        Tensor ``[T, *S]`` (or a tuple of Tensors ``[T, *S_j]``); with ``return_stats``, the pair
        ``(solution, stats)``.

    Raises ``ValueError`` for a bad method, option, ``t`` or output shape of ``f``,
    ``RuntimeError`` when ``max_num_steps`` is exceeded, ``FloatingPointError`` for a non-finite
    state.
    """
    opts = _check_method(method, options)
    rtol, atol = float(rtol), float(atol)
    if not (rtol >= 0 and atol >= 0 and rtol + atol > 0):
        raise ValueError(f"odeint: rtol and atol must be >= 0 and not both 0, got rtol={rtol}, atol={atol}")
    f_flat, y, unflatten = _flatten(f, y0)
    if not y.is_floating_point():
        raise TypeError(f"odeint: y0 must be floating point, got dtype {y.dtype}")
    t, tf = _check_t(t, y.dtype, y.device)
    func = _wrap_f(f_flat, y.shape, y.dtype)
    stats = {} if return_stats else None
    if adjoint:
        if params is None:
            params = list(f.parameters()) if callable(getattr(f, "parameters", None)) else []
        ps, seen = [], set()
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"odeint: params must be Tensors, got {type(p).__name__}")
            if id(p) not in seen:
                seen.add(id(p))
                ps.append(p)
        sol = _OdeintAdjoint.apply(y, t, *ps, func=func, tf=tf, method=method, rtol=rtol, atol=atol,
                                   options=opts, stats=stats)
    else:
        sol = _solve(func, y, t, tf, method, rtol, atol, opts, stats)
    if unflatten is not None:
        sol = unflatten(sol)
    return (sol, stats) if return_stats else sol


def odeint_adjoint(f, y0, t, method="dopri5", rtol=1e-7, atol=1e-9, params=None, options=None,
                   return_stats=False):
    """``odeint(..., adjoint=True)``: gradients by integrating the adjoint system backward in time,
    memory O(1) in the number of steps (see ``odeint``)."""
    return odeint(f, y0, t, method=method, rtol=rtol, atol=atol, adjoint=True, params=params,
                  options=options, return_stats=return_stats)


# ------------------------------------------------------------------------- adjoint

class _OdeintAdjoint(Function):
    """y0 [*S], t [T], *params -> ys [T, *S]; backward integrates the adjoint system."""

    @staticmethod
    def forward(ctx, y0, t, *params, func, tf, method, rtol, atol, options, stats):
        ys = _solve(func, y0, t, tf, method, rtol, atol, options, stats)   # under no_grad
        ctx.func, ctx.tf, ctx.method, ctx.rtol, ctx.atol, ctx.options = func, tf, method, rtol, atol, options
        ctx.params = params
        ctx.shape = tuple(y0.shape)
        ctx.save_for_backward(t, ys)
        return ys

    @staticmethod
    def backward(ctx, g):
        from ..autodiff import is_grad_enabled
        if is_grad_enabled():
            raise RuntimeError("odeint(adjoint=True): higher-order gradients (create_graph=True) are "
                               "not supported by the adjoint method; use adjoint=False to "
                               "differentiate through the solver instead")
        t, ys = ctx.saved_tensors
        func, shape, tf = ctx.func, ctx.shape, ctx.tf
        params = ctx.params
        need = ctx.needs_input_grad
        want_t = need[1]
        gp_idx = [j for j, p in enumerate(params) if p.requires_grad]
        gparams = [params[j] for j in gp_idx]
        n = int(np.prod(shape)) if shape else 1
        psizes = [p.numel() for p in gparams]
        poffs = np.concatenate([[0], np.cumsum(psizes)]).astype(int).tolist()
        with no_grad():
            g = g.detach()
            ys = ys.detach()
            t = t.detach()

            def aug_f(s, z):
                y = z[:n].reshape(shape)
                a = z[n:2 * n].reshape(shape)
                with enable_grad():
                    yv = y.detach().requires_grad_(True)
                    fe = func(s, yv)
                    if fe.requires_grad:
                        vj = autograd.grad(fe, (yv, *gparams), grad_outputs=a, allow_unused=True)
                    else:
                        vj = (None,) * (1 + len(gparams))
                parts = [fe.detach().reshape(-1)]
                for v, ref in zip(vj, (yv, *gparams)):
                    parts.append(zeros(ref.numel(), dtype=z.dtype) if v is None
                                 else -(v.detach().reshape(-1).to(z.dtype)))
                return cat(parts)

            T = len(tf)
            a = g[T - 1]
            ap = zeros(poffs[-1], dtype=ys.dtype)
            gt = [None] * T
            for i in range(T - 1, 0, -1):
                if want_t:
                    gt[i] = (g[i] * func(t[i], ys[i])).sum()
                z0 = cat([ys[i].reshape(-1), a.reshape(-1), ap])
                seg = t[i - 1:i + 1].flip(0)
                zs = _solve(aug_f, z0, seg, [tf[i], tf[i - 1]], ctx.method, ctx.rtol, ctx.atol,
                            ctx.options)
                z = zs[-1]
                a_plus = z[n:2 * n].reshape(shape)     # a(t_{i-1}+)
                a = a_plus + g[i - 1]
                ap = z[2 * n:]
            if want_t:
                if T > 1:
                    gt[0] = -(a_plus * func(t[0], ys[0])).sum()
                else:
                    gt[0] = zeros((), dtype=ys.dtype)
                grad_t = stack(gt)
            else:
                grad_t = None
            pgrads = [None] * len(params)
            for k, j in enumerate(gp_idx):
                pgrads[j] = ap[poffs[k]:poffs[k + 1]].reshape(params[j].shape).to(params[j].dtype)
        return (a.reshape(shape), grad_t, *pgrads)
