"""Gradient checks against central finite differences (float64)."""
from __future__ import annotations

import numpy as np

from ..autodiff import backend
from ..autodiff.engine import grad as autograd_grad
from ..autodiff.tensor import Tensor


class GradcheckError(AssertionError):
    """Raised by ``gradcheck`` when analytic and numerical gradients disagree."""


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _flat_outputs(out):
    outs = [o for o in _as_tuple(out) if isinstance(o, Tensor)]
    return [o for o in outs if o.dtype.kind == "f"]


def _numerical_jacobian(fn, inputs, i, eps):
    """Columns d(outputs)/d(inputs[i][k]) by central differences, as a list per output."""
    x = inputs[i]
    data = x._data
    cols = []
    # grad mode stays on: fn may itself compute gradients (gradgradcheck)
    for k in range(data.size):
        # perturb the element in x's own memory (``data.reshape(-1)`` would be a copy for a
        # non-contiguous input, and the perturbation would not reach fn)
        at = np.unravel_index(k, data.shape)
        orig = data[at].item()
        data[at] = orig + eps
        plus = [backend.to_numpy(o._data).astype(np.float64).ravel() for o in _flat_outputs(fn(*inputs))]
        data[at] = orig - eps
        minus = [backend.to_numpy(o._data).astype(np.float64).ravel() for o in _flat_outputs(fn(*inputs))]
        data[at] = orig
        cols.append([(p - m) / (2 * eps) for p, m in zip(plus, minus)])
    return cols


def _check_inputs(inputs, fname):
    for t in inputs:
        if isinstance(t, Tensor) and t.requires_grad and t.dtype != np.float64:
            raise ValueError(f"{fname}: inputs that require grad must be float64 for a meaningful "
                             f"finite-difference check, got {t.dtype} (shape {list(t.shape)})")


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0):
    """Compare the reverse-mode gradient of ``fn(*inputs)`` with central finite differences.

    ``inputs``: a Tensor or tuple of Tensors (those with ``requires_grad`` are checked; they
    must be float64). Every floating output is checked through vector-Jacobian products with
    random vectors, i.e. each output element's full gradient row is compared. Returns True;
    on a mismatch raises ``GradcheckError`` naming the input, the worst element's index, both
    values and the tolerance (or returns False with ``raise_exception=False``).
    """
    inputs = _as_tuple(inputs)
    _check_inputs(inputs, "gradcheck")
    wrt = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not wrt:
        raise ValueError("gradcheck: no input requires grad; set requires_grad=True on the inputs to check")
    outs = _flat_outputs(fn(*inputs))
    if not outs:
        raise ValueError("gradcheck: fn returned no floating-point Tensor")
    rng = np.random.default_rng(seed)
    # analytic full Jacobian rows via one VJP per output element would be slow; instead
    # compare J^T v for a few random v against finite differences of v . f.
    for trial in range(2):
        vs = [rng.standard_normal(o.shape) for o in outs]
        outs = _flat_outputs(fn(*inputs))
        diff = [o for o, v in zip(outs, vs) if o.requires_grad]
        if diff:
            gvs = [Tensor._make(backend.move(v.astype(o.dtype), o.device), False, None, 0)
                   for o, v in zip(outs, vs) if o.requires_grad]
            analytic = autograd_grad(diff, [inputs[i] for i in wrt], gvs, allow_unused=True)
        else:
            analytic = [None] * len(wrt)
        for slot, i in enumerate(wrt):
            cols = _numerical_jacobian(fn, inputs, i, eps)
            num = np.array([sum(float(np.dot(c, v.ravel())) for c, v in zip(col, vs)) for col in cols])
            num = num.reshape(inputs[i].shape)
            a = analytic[slot]
            ana = np.zeros(inputs[i].shape) if a is None else backend.to_numpy(a._data).astype(np.float64)
            if ana.shape != num.shape:
                msg = (f"gradcheck: gradient for input {i} has shape {list(ana.shape)}, expected "
                       f"{list(num.shape)}")
                if raise_exception:
                    raise GradcheckError(msg)
                return False
            err = np.abs(ana - num) - (atol + rtol * np.abs(num))
            if ana.size and (err.max() > 0 or not np.all(np.isfinite(ana)) and np.all(np.isfinite(num))):
                k = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(err), err, np.inf))), ana.shape)
                msg = (f"gradcheck: Jacobian mismatch for input {i} (shape {list(ana.shape)}) at index "
                       f"{tuple(int(j) for j in k)}: analytic {ana[k]!r}, numerical {num[k]!r} "
                       f"(atol={atol}, rtol={rtol}, eps={eps}); max abs error "
                       f"{np.nanmax(np.abs(ana - num)):.3e}")
                if raise_exception:
                    raise GradcheckError(msg)
                return False
    return True


def gradgradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0):
    """Check second derivatives: gradcheck of ``inputs -> d(v . fn(inputs))/d(inputs)`` computed
    with ``create_graph=True`` for a fixed random ``v``."""
    inputs = _as_tuple(inputs)
    _check_inputs(inputs, "gradgradcheck")
    wrt = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    rng = np.random.default_rng(seed + 1)
    outs0 = _flat_outputs(fn(*inputs))
    vs = [rng.standard_normal(o.shape) for o in outs0]

    def first_grads(*args):
        outs = _flat_outputs(fn(*args))
        diff = [(o, v) for o, v in zip(outs, vs) if o.requires_grad]
        gvs = [Tensor._make(backend.move(v.astype(o.dtype), o.device), False, None, 0) for o, v in diff]
        gs = autograd_grad([o for o, _ in diff], [args[i] for i in wrt], gvs, create_graph=True,
                           allow_unused=True, materialize_grads=True)
        return tuple(gs)

    return gradcheck(first_grads, inputs, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception, seed=seed)
