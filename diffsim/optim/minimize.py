"""``optim.minimize``: scipy.optimize.minimize driven by diffsim gradients.

Scientists already reach for SciPy's optimizers (L-BFGS-B with bounds, SLSQP and
trust-constr with constraints); this bridge lets them keep doing so on functions written with
diffsim ops. The variables (one Tensor of any shape, or several) are flattened into one
float64 vector for SciPy and unflattened into Tensors of the original shapes, dtypes and
devices for ``fn``; the gradient of ``fn`` (and the Jacobian of each constraint) comes from
reverse-mode autodiff, so SciPy never falls back to finite differences.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..autodiff import backend
from ..autodiff.engine import grad as _autograd_grad
from ..autodiff.grad_mode import enable_grad, no_grad
from ..autodiff.tensor import Tensor

__all__ = ["minimize"]

# methods that take no gradient (SciPy warns if given one), and those that need a Hessian
_GRADIENT_FREE = {"nelder-mead", "powell", "cobyla", "cobyqa"}
_NEEDS_HESSIAN = {"dogleg", "trust-ncg", "trust-krylov", "trust-exact"}


class _Packing:
    """How a list of Tensors maps to one flat float64 vector and back."""

    def __init__(self, xs):
        self.shapes = [tuple(x.shape) for x in xs]
        self.sizes = [int(np.prod(s, dtype=np.int64)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int).tolist()
        self.dtypes = [x.dtype for x in xs]
        self.devices = [x.device for x in xs]
        self.n = self.offsets[-1]

    def flatten(self, arrays):
        """Concatenate arrays / Tensors (one per variable, any device) into a float64 vector."""
        parts = []
        for a in arrays:
            if isinstance(a, Tensor):
                a = a._data
            parts.append(np.asarray(backend.to_numpy(a) if backend.is_array(a) else a,
                                    dtype=np.float64).reshape(-1))
        return np.concatenate(parts) if parts else np.zeros(0)

    def unflatten(self, v, requires_grad=False):
        """Tensors of the variables' shapes, dtypes and devices from the flat vector ``v``."""
        out = []
        v = np.asarray(v, dtype=np.float64)
        for o, n, shape, dt, dev in zip(self.offsets, self.sizes, self.shapes, self.dtypes, self.devices):
            a = v[o:o + n].reshape(shape).astype(dt)        # always a fresh array
            if dev.type != "cpu":
                a = backend.move(a, dev)
            t = Tensor._make(a, False, None, 0)
            if requires_grad:
                t.requires_grad_(True)
            out.append(t)
        return out

    def split(self, v):
        """Numpy pieces of ``v`` of the variables' shapes (float64)."""
        return [v[o:o + n].reshape(s) for o, n, s in zip(self.offsets, self.sizes, self.shapes)]


def _out_tensor(out, what):
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (numbers.Number, np.ndarray, np.generic)):
        return Tensor._make(np.asarray(out, dtype=np.float64), False, None, 0)
    raise TypeError(f"minimize: {what} must return a Tensor, got {type(out).__name__}")


def _grads(out, ts, grad_output, pack):
    """Flat float64 gradient of ``sum(out * grad_output)`` w.r.t. the Tensors ``ts``."""
    if not out.requires_grad:
        return np.zeros(pack.n)
    gs = _autograd_grad(out, ts, grad_outputs=grad_output, retain_graph=True, allow_unused=True,
                        materialize_grads=True)
    return pack.flatten(gs)


def _is_scalar_like(b):
    if b is None or isinstance(b, numbers.Real):
        return True
    if isinstance(b, (Tensor, np.ndarray, np.generic)):
        return np.ndim(b) == 0
    return False


def _is_array_like(b):
    return isinstance(b, (Tensor, np.ndarray)) or backend.is_array(b)


def _to_np(b):
    if isinstance(b, Tensor):
        b = b._data
    return np.asarray(backend.to_numpy(b) if backend.is_array(b) else b, dtype=np.float64)


def _fill(lo_or_hi, shape, default):
    if lo_or_hi is None:
        return np.full(shape, default)
    a = _to_np(lo_or_hi)
    a = np.where(np.isnan(a), default, a) if a.ndim else (np.float64(default) if np.isnan(a) else a)
    try:
        return np.broadcast_to(a, shape).astype(np.float64)
    except ValueError:
        raise ValueError(f"minimize: a bound of shape {list(a.shape)} can't be broadcast to the "
                         f"variable's shape {list(shape)}") from None


def _convert_bounds(bounds, pack, single):
    """Turn the accepted bounds forms into a scipy ``Bounds`` over the flat vector."""
    from scipy.optimize import Bounds
    n = pack.n
    if bounds is None:
        return None
    if isinstance(bounds, Bounds):
        lb, ub = np.asarray(bounds.lb, dtype=np.float64), np.asarray(bounds.ub, dtype=np.float64)
        if lb.ndim and lb.size == n:
            lb = lb.reshape(-1)
        if ub.ndim and ub.size == n:
            ub = ub.reshape(-1)
        return Bounds(lb, ub, keep_feasible=bounds.keep_feasible)
    bounds = list(bounds)
    # (lo, hi) for every element: scalars/None, or arrays of the variable's shape (one variable)
    if len(bounds) == 2 and all(_is_scalar_like(b) or (single and _is_array_like(b)) for b in bounds):
        lo, hi = bounds
        if single:
            shape = pack.shapes[0]
            return Bounds(_fill(lo, shape, -np.inf).reshape(-1), _fill(hi, shape, np.inf).reshape(-1))
        return Bounds(_fill(lo, (n,), -np.inf), _fill(hi, (n,), np.inf))
    # one (lo, hi) per element of the flat vector
    if len(bounds) == n and all(isinstance(b, (tuple, list)) and len(b) == 2
                                and all(_is_scalar_like(x) for x in b) for b in bounds):
        lb = np.array([-np.inf if b[0] is None else float(b[0]) for b in bounds], dtype=np.float64)
        ub = np.array([np.inf if b[1] is None else float(b[1]) for b in bounds], dtype=np.float64)
        return Bounds(lb, ub)
    # one (lo, hi) per variable (several variables), each broadcast to that variable's shape
    if not single and len(bounds) == len(pack.shapes) and all(
            isinstance(b, (tuple, list)) and len(b) == 2 for b in bounds):
        lbs = [_fill(b[0], s, -np.inf).reshape(-1) for b, s in zip(bounds, pack.shapes)]
        ubs = [_fill(b[1], s, np.inf).reshape(-1) for b, s in zip(bounds, pack.shapes)]
        return Bounds(np.concatenate(lbs), np.concatenate(ubs))
    raise ValueError(
        f"minimize: can't interpret bounds of length {len(bounds)} for {n} variable element(s)"
        + ("" if single else f" in {len(pack.shapes)} tensors")
        + "; give a pair (lo, hi) broadcast to every element, a list of n (lo, hi) pairs, "
          + ("" if single else "a list of one (lo, hi) pair per tensor, ")
        + "or a scipy.optimize.Bounds over the flattened vector")


def _convert_constraints(constraints, pack, use_jac):
    if constraints is None:
        return ()
    if isinstance(constraints, dict):
        constraints = [constraints]
    out = []
    for i, c in enumerate(constraints):
        if not isinstance(c, dict):
            out.append(c)           # scipy constraint objects act on the flat vector as they are
            continue
        typ = c.get("type")
        if typ not in ("eq", "ineq"):
            raise ValueError(f"minimize: constraint {i} has type {typ!r}; expected 'eq' or 'ineq'")
        if "fun" not in c or not callable(c["fun"]):
            raise ValueError(f"minimize: constraint {i} needs a callable 'fun' (Tensors -> Tensor)")
        out.append(_wrap_constraint(c, i, pack, use_jac))
    return out


def _wrap_constraint(c, i, pack, use_jac):
    cfun, cargs = c["fun"], tuple(c.get("args", ()))
    what = f"constraint {i} 'fun'"

    def fun(v):
        ts = pack.unflatten(v)
        with no_grad():
            out = _out_tensor(cfun(*ts, *cargs), what)
        return _to_np(out).reshape(-1)

    new = {"type": c["type"], "fun": fun}
    if not use_jac:
        return new
    if "jac" in c and callable(c["jac"]):
        ujac = c["jac"]

        def jac(v):
            ts = pack.unflatten(v)
            with no_grad():
                J = ujac(*ts, *cargs)
            return _to_np(J).reshape(-1, pack.n)
    else:
        def jac(v):
            ts = pack.unflatten(v, requires_grad=True)
            with enable_grad():
                out = _out_tensor(cfun(*ts, *cargs), what)
            m = out.numel()
            J = np.zeros((m, pack.n))
            if out.requires_grad:
                xp = backend.get_xp(out._data)
                for r in range(m):
                    e = xp.zeros(m, dtype=out._data.dtype)
                    e[r] = 1
                    J[r] = _grads(out, ts, Tensor._make(e.reshape(out.shape), False, None, 0), pack)
            return J
    new["jac"] = jac
    return new


def minimize(fn, x0, method="L-BFGS-B", bounds=None, constraints=(), tol=None, options=None, args=(),
             callback=None):
    """Minimize ``fn`` with ``scipy.optimize.minimize``, gradients from diffsim's autodiff.

    Args:
        fn: the objective. With one Tensor ``x0`` it is called as ``fn(x, *args)``; with a
            tuple/list of Tensors as ``fn(x1, x2, ..., *args)``. It must return a 0-d (or
            one-element) Tensor and be written with diffsim ops so it can be differentiated.
        x0: the starting point: a floating-point Tensor of any shape, or a tuple/list of them.
            SciPy sees one float64 vector of all elements (``x0``'s are flattened in order and
            concatenated); ``fn`` sees Tensors of the original shapes, dtypes and devices.
        method (str): any ``scipy.optimize.minimize`` method. Gradient-based ones get the
            autodiff gradient (``jac``): "L-BFGS-B" (default; bounds), "BFGS", "CG",
            "Newton-CG" (Hessian-vector products by finite differences of the gradient), "TNC"
            (bounds), "SLSQP" (bounds, constraints), "trust-constr" (bounds, constraints).
            Gradient-free ones ("Nelder-Mead", "Powell", "COBYLA", "COBYQA") get the objective
            only. Methods that need a Hessian ("dogleg", "trust-ncg", "trust-krylov",
            "trust-exact") are not supported.
        bounds: ``None``; a pair ``(lo, hi)`` applied to every element (each side a number,
            ``None`` for unbounded, or — with one Tensor ``x0`` — an array/Tensor broadcastable
            to ``x0``'s shape); a list of one ``(lo, hi)`` pair per element of the flat vector;
            with several tensors, a list of one ``(lo, hi)`` pair per tensor; or a
            ``scipy.optimize.Bounds`` over the flat vector.
        constraints: a dict or a list of dicts ``{"type": "eq" | "ineq", "fun": callable,
            "args": tuple (optional), "jac": callable (optional)}``; ``fun`` takes the same
            Tensors as ``fn`` (plus its own ``args``) and returns a Tensor (any shape; "eq" means
            ``fun == 0``, "ineq" means ``fun >= 0`` elementwise). Its Jacobian comes from
            autodiff (one backward pass per output element) unless ``jac`` is given (returning
            an array of shape ``[m, n]`` over the flat vector). ``scipy.optimize``
            ``LinearConstraint``/``NonlinearConstraint`` objects pass through unchanged and act
            on the flat float64 vector.
        tol, options: passed to SciPy.
        args (tuple): extra arguments passed to ``fn`` after the variables.
        callback: optional ``callback(x)``, called after each iteration with the current point
            as Tensor(s) shaped like ``x0``; raise ``StopIteration`` to stop.

    Returns:
        SciPy's ``OptimizeResult``; ``res.x`` is the solution as a Tensor (or a tuple/list of
        Tensors) with ``x0``'s shapes, dtypes and devices; ``res.fun`` a float; ``res.jac``,
        when present, the flat float64 gradient; ``res.x_flat`` the flat float64 solution.
    """
    import scipy.optimize as so

    single = isinstance(x0, Tensor)
    if single:
        xs = [x0]
    elif isinstance(x0, (tuple, list)):
        xs = list(x0)
        if not xs:
            raise ValueError("minimize: x0 is an empty sequence; give a Tensor or a tuple of Tensors")
    else:
        raise TypeError(f"minimize: x0 must be a Tensor or a tuple/list of Tensors, got {type(x0).__name__}")
    for i, x in enumerate(xs):
        if not isinstance(x, Tensor):
            raise TypeError(f"minimize: x0[{i}] must be a Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"minimize: x0{'' if single else f'[{i}]'} (shape {list(x.shape)}) has dtype "
                            f"{x.dtype}; the variables must be floating point (use .double())")
    if not isinstance(args, tuple):
        args = (args,)
    meth = method.lower() if isinstance(method, str) else method
    if meth in _NEEDS_HESSIAN:
        raise ValueError(f"minimize: method {method!r} needs a Hessian, which this bridge does not "
                         "supply; use 'L-BFGS-B', 'BFGS', 'Newton-CG', 'trust-constr' or 'SLSQP'")
    use_jac = not (isinstance(meth, str) and meth in _GRADIENT_FREE)

    pack = _Packing(xs)
    v0 = pack.flatten(xs)

    def objective(v):
        ts = pack.unflatten(v, requires_grad=use_jac)
        with (enable_grad() if use_jac else no_grad()):
            out = _out_tensor(fn(*ts, *args), "fn")
        if out.numel() != 1:
            raise ValueError(f"minimize: fn must return a 0-d Tensor (a scalar), got shape {list(out.shape)}")
        f = float(out.item())
        if not use_jac:
            return f
        return f, _grads(out, ts, None, pack)

    def _result_x(v):
        ts = pack.unflatten(v)
        if single:
            return ts[0]
        return type(x0)(ts)

    def _callback(intermediate_result):
        v = getattr(intermediate_result, "x", intermediate_result)
        return callback(_result_x(v))

    res = so.minimize(objective, v0, args=(), method=method, jac=True if use_jac else None,
                      bounds=_convert_bounds(bounds, pack, single),
                      constraints=_convert_constraints(constraints, pack, use_jac),
                      tol=tol, options=options, callback=None if callback is None else _callback)
    res.x_flat = np.asarray(res.x, dtype=np.float64)
    res.x = _result_x(res.x_flat)
    return res
