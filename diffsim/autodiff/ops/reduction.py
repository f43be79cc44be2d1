"""Reductions (``dim`` int or tuple, ``keepdim``), scans, and softmax-family ops."""
from __future__ import annotations

import builtins as _builtins

import numpy as np

from .. import dtypes
from ..backend import get_xp
from ..function import apply, defop
from ..tensor import Tensor
from ._util import check_tensor, float_result, method, norm_dim, norm_dims


def _kshape(shape, dims):
    """The keepdim shape of reducing ``shape`` over ``dims`` (None = all)."""
    if dims is None:
        return (1,) * len(shape)
    return tuple(1 if i in dims else s for i, s in enumerate(shape))


def _expand_back(ns, g, n):
    """Broadcast a reduced gradient back to the input shape."""
    return ns.broadcast_to(ns.reshape(g, n.attrs["kshape"]), n.attrs["in_shape"])


def _reduce_attrs(x, dims, keepdim, **extra):
    return dict(dim=dims, keepdim=keepdim, kshape=_kshape(x.shape, dims), in_shape=x.shape, **extra)


def _all_dims(dim, ndim, opname):
    """``norm_dims``, except that an empty tuple means all dims (PyTorch's sum, mean, amax, var,
    norm ...; ``all``/``any`` keep numpy's "no dims")."""
    if isinstance(dim, (tuple, list)) and len(dim) == 0:
        return None
    return norm_dims(dim, ndim, opname)


def _count(shape, dims):
    n = 1
    for i, s in enumerate(shape):
        if dims is None or i in dims:
            n *= s
    return n


_sum = defop("sum", lambda x, dim, keepdim, kshape, in_shape, dtype=None:
             x.sum(axis=dim, keepdims=keepdim, dtype=dtype))
_sum.defvjp(lambda ns, n, g: (_expand_back(ns, g, n),))


@method()
def sum(input, dim=None, keepdim=False, *, dtype=None):  # noqa: A001,A002
    """Sum over ``dim`` (int, tuple, or None for all). Bool/int inputs sum to int64."""
    x = check_tensor(input, "sum")
    if dtype is not None:
        dtype = dtypes.as_dtype(dtype)
        if dtype.kind == "f" or x._data.dtype.kind == "f":
            # cast first (differentiable): the gradient then reaches x in x's dtype, as in PyTorch
            x, dtype = x.to(dtype), None
    dims = _all_dims(dim, x.ndim, "sum")
    if dtype is None and x._data.dtype.kind in "biu" and x._data.dtype != dtypes.int64:
        dtype = dtypes.int64
    if x.ndim == 0:
        dims = None
    attrs = _reduce_attrs(x, dims, keepdim)
    if dtype is not None:
        attrs["dtype"] = dtypes.as_dtype(dtype)
    return apply(_sum, (x,), attrs)


_mean = defop("mean", lambda x, dim, keepdim, kshape, in_shape, count: x.mean(axis=dim, keepdims=keepdim))
_mean.defvjp(lambda ns, n, g: (_expand_back(ns, g, n) / n.attrs["count"],))


@method()
def mean(input, dim=None, keepdim=False, *, dtype=None):  # noqa: A002
    """Mean over ``dim``; floating inputs only (as in PyTorch)."""
    x = check_tensor(input, "mean")
    if dtype is not None:
        x = x.to(dtype)
    if x._data.dtype.kind != "f":
        raise RuntimeError(f"mean: could not infer output dtype; input dtype must be floating point, "
                           f"got {x.dtype}; pass dtype= or convert with .float()")
    dims = _all_dims(dim, x.ndim, "mean") if x.ndim else None
    return apply(_mean, (x,), _reduce_attrs(x, dims, keepdim, count=_count(x.shape, dims)))


def _prod_fwd(x, dim, keepdim, kshape, in_shape):
    return x.prod(axis=dim, keepdims=keepdim)


_prod = defop("prod", _prod_fwd, save=(0,), save_output=True)


@_prod.defvjp
def _(ns, n, g, x, out):
    # product of all the other elements, exact also where x has zeros:
    # move reduced dims last, flatten them, multiply exclusive prefix and suffix products.
    in_shape, dims = n.attrs["in_shape"], n.attrs["dim"]
    nd = len(in_shape)
    red = tuple(range(nd)) if dims is None else dims
    keep = tuple(i for i in range(nd) if i not in red)
    perm = keep + red
    xt = ns.permute(x, perm) if perm != tuple(range(nd)) else x
    k = _count(in_shape, red)
    lead = tuple(in_shape[i] for i in keep)
    flat = ns.reshape(xt, lead + (k,))
    ones = ns.ones_like(ns.reshape(ns.sum(flat, -1, True), lead + (1,)))
    left = ns.cumprod(ns.cat([ones, flat], -1), -1)
    rev = ns.flip(flat, (-1,))
    right = ns.flip(ns.cumprod(ns.cat([ones, rev], -1), -1), (-1,))
    others = _narrow_last(ns, left, 0, k) * _narrow_last(ns, right, 1, k)
    others = ns.reshape(others, tuple(in_shape[i] for i in perm))
    if perm != tuple(range(nd)):
        inv = tuple(np.argsort(perm))
        others = ns.permute(others, inv)
    return (_expand_back(ns, g, n) * others,)


def _narrow_last(ns, x, start, length):
    return ns.getitem(x, (Ellipsis, slice(start, start + length)))


@method()
def prod(input, dim=None, keepdim=False, *, dtype=None):  # noqa: A002
    """Product over ``dim`` (an int, or None for all elements)."""
    x = check_tensor(input, "prod")
    if dtype is not None:
        x = x.to(dtype)
    elif x._data.dtype.kind in "biu" and x._data.dtype != dtypes.int64:
        x = x.to(dtypes.int64)                   # as PyTorch: integer products are int64
    dims = norm_dims(dim, x.ndim, "prod") if x.ndim else None
    return apply(_prod, (x,), _reduce_attrs(x, dims, keepdim))


# ------------------------------------------------------------------ max / min

def _extreme_even(pick):
    def fwd(x, dim, keepdim, kshape, in_shape):
        return pick(x, axis=dim, keepdims=keepdim)

    def bwd(ns, n, g, x, out):
        o = ns.reshape(out, n.attrs["kshape"])
        mask = x == o
        cnt = ns.sum(ns.astype(mask, g.dtype), n.attrs["dim"], True)
        return (ns.where(mask, _expand_back(ns, g, n) / cnt, 0 * g.sum()),)
    return fwd, bwd


def _def_extreme(name, pick):
    fwd, bwd = _extreme_even(pick)
    op = defop(name, fwd, save=(0,), save_output=True)
    op.defvjp(bwd)
    return op


_amax = _def_extreme("amax", lambda x, axis, keepdims: x.max(axis=axis, keepdims=keepdims))
_amin = _def_extreme("amin", lambda x, axis, keepdims: x.min(axis=axis, keepdims=keepdims))


def _check_nonempty(x, dims, opname):
    """Reducing over a size-0 dim has no identity; other dims may be empty (as in PyTorch)."""
    if x._data.size == 0:
        red = range(x.ndim) if dims is None else ((dims,) if isinstance(dims, int) else dims)
        if dims is None or _builtins.any(x.shape[d] == 0 for d in red):
            raise IndexError(f"{opname}: expected a non-empty tensor to reduce (dim={dims}), got "
                             f"shape {list(x.shape)}")


@method()
def amax(input, dim=None, keepdim=False):  # noqa: A002
    """Maximum over ``dim``; the gradient is shared evenly between tied maxima."""
    x = check_tensor(input, "amax")
    dims = _all_dims(dim, x.ndim, "amax") if x.ndim else None
    _check_nonempty(x, dims, "amax")
    return apply(_amax, (x,), _reduce_attrs(x, dims, keepdim))


@method()
def amin(input, dim=None, keepdim=False):  # noqa: A002
    """Minimum over ``dim``; the gradient is shared evenly between tied minima."""
    x = check_tensor(input, "amin")
    dims = _all_dims(dim, x.ndim, "amin") if x.ndim else None
    _check_nonempty(x, dims, "amin")
    return apply(_amin, (x,), _reduce_attrs(x, dims, keepdim))


def _arg(name, fn):
    op = defop(name, lambda x, dim, keepdim: fn(x, dim, keepdim), differentiable=False)

    def f(input, dim=None, keepdim=False):  # noqa: A002
        x = check_tensor(input, name)
        d = None if dim is None else norm_dim(dim, x.ndim, name)
        _check_nonempty(x, d, name)
        return apply(op, (x,), {"dim": d, "keepdim": keepdim})
    f.__name__ = name
    f.__doc__ = f"Indices (int64) of the {name[3:]}imum over ``dim`` (flattened if None)."
    setattr(Tensor, name, f)
    return f


def _argfn(np_name):
    def fn(x, dim, keepdim):
        xp = get_xp(x)
        if dim is None:
            r = getattr(xp, np_name)(x)
            r = r.reshape((1,) * x.ndim) if keepdim else r
        else:
            r = getattr(xp, np_name)(x, axis=dim, keepdims=keepdim)
        return r.astype(np.int64)
    return fn


argmax = _arg("argmax", _argfn("argmax"))
argmin = _arg("argmin", _argfn("argmin"))

def _select_at_fwd(x, idx, dim, keepdim, in_shape):
    r = np.take_along_axis(x, idx, axis=dim)
    return r if keepdim else np.squeeze(r, axis=dim)


_select_at = defop("select_at", _select_at_fwd, save=(1,))


@_select_at.defvjp
def _(ns, n, g, idx):
    dim, keepdim, shape = n.attrs["dim"], n.attrs["keepdim"], n.attrs["in_shape"]
    gk = g if keepdim else ns.unsqueeze(g, dim)
    return ns.scatter_add_into(shape, dim, idx, gk), None


def _max_min(name, full, argf):
    def f(input, dim=None, keepdim=False, *, other=None):  # noqa: A002
        x = check_tensor(input, name)
        if other is not None:            # max(x, other=y), as max(x, y)
            if dim is not None:
                raise TypeError(f"{name}: give either dim or other, not both")
            dim = other
        if isinstance(dim, Tensor):
            from . import elementwise
            return (elementwise.maximum if name == "max" else elementwise.minimum)(x, dim)
        if dim is None:
            return full(x)
        d = norm_dim(dim, x.ndim, name)
        _check_nonempty(x, d, name)
        if x.ndim == 0:       # a 0-d tensor is its own max along dim 0, at index 0
            from .elementwise import clone
            idx = Tensor._make(get_xp(x._data).zeros((), np.int64), False, None, 0)
            return _MinMaxResult(clone(x), idx)
        idx = argf(x, d, True)
        values = apply(_select_at, (x, idx), {"dim": d, "keepdim": keepdim, "in_shape": x.shape})
        if not keepdim:
            idx = idx.squeeze(d)
        return _MinMaxResult(values, idx)
    f.__name__ = name
    f.__doc__ = (f"``{name}(x)``: the {name}imum of all elements (gradient shared by ties). "
                 f"``{name}(x, dim, keepdim=False)``: a named tuple ``(values, indices)``; the "
                 "gradient flows to the selected index. ``{name}(x, other)``: elementwise.")
    setattr(Tensor, name, f)
    return f


class _MinMaxResult(tuple):
    """``(values, indices)`` with attribute access, like PyTorch's return type."""

    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))

    values = property(lambda self: self[0])
    indices = property(lambda self: self[1])


max = _max_min("max", amax, argmax)  # noqa: A001
min = _max_min("min", amin, argmin)  # noqa: A001


# ------------------------------------------------------------------ var / std / norm

def _var_fwd(x, dim, keepdim, kshape, in_shape, correction):
    return x.var(axis=dim, keepdims=keepdim, ddof=correction)


_var = defop("var", _var_fwd, save=(0,))


@_var.defvjp
def _(ns, n, g, x):
    a = n.attrs
    m = ns.sum(x, a["dim"], True) / _count(a["in_shape"], a["dim"])
    return (_expand_back(ns, g, n) * 2 * (x - m) / (_count(a["in_shape"], a["dim"]) - a["correction"]),)


_std = defop("std", lambda x, dim, keepdim, kshape, in_shape, correction:
             x.std(axis=dim, keepdims=keepdim, ddof=correction), save=(0,), save_output=True)


@_std.defvjp
def _(ns, n, g, x, out):
    a = n.attrs
    cnt = _count(a["in_shape"], a["dim"])
    m = ns.sum(x, a["dim"], True) / cnt
    o = ns.reshape(out, a["kshape"])
    safe = ns.where(o == 0, 1 + 0 * o, o)     # std == 0: x == m, so the gradient is 0 (PyTorch)
    return (_expand_back(ns, g, n) * (x - m) / ((cnt - a["correction"]) * safe),)


def _var_args(name, input, dim, unbiased, keepdim, correction):  # noqa: A002
    x = float_result(check_tensor(input, name))
    if isinstance(dim, bool):            # var(x, unbiased) legacy positional form
        unbiased, dim = dim, None
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    dims = _all_dims(dim, x.ndim, name) if x.ndim else None
    return x, _reduce_attrs(x, dims, keepdim, correction=correction)


@method()
def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):  # noqa: A002
    """Variance over ``dim`` with ``correction`` (default 1, Bessel's) degrees of freedom removed."""
    x, attrs = _var_args("var", input, dim, unbiased, keepdim, correction)
    return apply(_var, (x,), attrs)


@method()
def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):  # noqa: A002
    """Standard deviation over ``dim`` (``correction`` as in ``var``)."""
    x, attrs = _var_args("std", input, dim, unbiased, keepdim, correction)
    return apply(_std, (x,), attrs)


def _pnorm_fwd(x, p, dim, keepdim, kshape, in_shape):
    a = np.abs(x)
    if p == 2:
        return np.sqrt((x * x).sum(axis=dim, keepdims=keepdim))
    if p == 1:
        return a.sum(axis=dim, keepdims=keepdim)
    if p == float("inf"):
        return a.max(axis=dim, keepdims=keepdim)
    if p == -float("inf"):
        return a.min(axis=dim, keepdims=keepdim)
    if p == 0:
        return (x != 0).sum(axis=dim, keepdims=keepdim).astype(x.dtype)
    return (a ** p).sum(axis=dim, keepdims=keepdim) ** (1.0 / p)


_pnorm = defop("norm", _pnorm_fwd, save=(0,), save_output=True)


@_pnorm.defvjp
def _(ns, n, g, x, out):
    p = n.attrs["p"]
    o = ns.reshape(out, n.attrs["kshape"])
    ge = _expand_back(ns, g, n)
    if p == 0:
        return (0 * ge,)
    if p == 1:
        return (ge * ns.sign(x),)
    if p in (float("inf"), -float("inf")):
        mask = ns.abs(x) == o
        cnt = ns.sum(ns.astype(mask, ge.dtype), n.attrs["dim"], True)
        return (ns.where(mask, ge * ns.sign(x) / cnt, 0 * ge),)
    safe = ns.where(o == 0, 1 + 0 * o, o)
    if p == 2:
        return (ns.where(o == 0, 0 * ge, ge * x / safe),)
    ax = ns.abs(x)
    return (ns.where(o == 0, 0 * ge, ge * ns.sign(x) * ax ** (p - 1) / safe ** (p - 1)),)


def vector_norm(x, ord=2, dim=None, keepdim=False):  # noqa: A002
    """p-norm of the elements over ``dim`` (all if None): ``ord`` in {2, 1, inf, -inf, 0, p}.
    The gradient at a zero vector is zero (a subgradient), not NaN."""
    x = float_result(check_tensor(x, "vector_norm"))
    dims = _all_dims(dim, x.ndim, "norm") if x.ndim else None
    return apply(_pnorm, (x,), _reduce_attrs(x, dims, keepdim, p=float(ord)))


@method()
def norm(input, p="fro", dim=None, keepdim=False, dtype=None):  # noqa: A002
    """Vector p-norm over ``dim`` (``p="fro"`` is the 2-norm of all elements), as ``torch.norm``.
    Matrix norms (nuc, spectral) are in ``ds.linalg.matrix_norm``."""
    x = check_tensor(input, "norm")
    if dtype is not None:
        x = x.to(dtype)
    if p == "fro" or p is None:
        p = 2
    if p == "nuc":
        from ..linalg import matrix_norm
        return matrix_norm(x, "nuc", dim=(-2, -1) if dim is None else dim, keepdim=keepdim)
    return vector_norm(x, p, dim, keepdim)


def _lse_fwd(x, dim, keepdim, kshape, in_shape):
    if x.size == 0:         # an empty sum of exponentials: log(0) = -inf
        return get_xp(x).full_like(x.sum(axis=dim, keepdims=keepdim), -np.inf)
    m = x.max(axis=dim, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    r = np.log(np.exp(x - m).sum(axis=dim, keepdims=True)) + m
    return r if keepdim else r.reshape(tuple(s for i, s in enumerate(r.shape) if i not in
                                             (dim if dim is not None else range(x.ndim))))


_lse = defop("logsumexp", _lse_fwd, save=(0,), save_output=True)
_lse.defvjp(lambda ns, n, g, x, out: (_expand_back(ns, g, n) * ns.exp(x - ns.reshape(out, n.attrs["kshape"])),))


@method()
def logsumexp(input, dim, keepdim=False):  # noqa: A002
    """``log(sum(exp(x), dim))`` computed stably (max-shifted)."""
    x = float_result(check_tensor(input, "logsumexp"))
    dims = _all_dims(dim, x.ndim, "logsumexp") if x.ndim else None
    return apply(_lse, (x,), _reduce_attrs(x, dims, keepdim))


def _softmax_fwd(x, dim):
    if x.size == 0:
        return x.copy()
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


_softmax = defop("softmax", _softmax_fwd, save_output=True)
_softmax.defvjp(lambda ns, n, g, out: (out * (g - ns.sum(g * out, n.attrs["dim"], True)),))


def _log_softmax_fwd(x, dim):
    if x.size == 0:
        return x.copy()
    s = x - x.max(axis=dim, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=dim, keepdims=True))


_log_softmax = defop("log_softmax", _log_softmax_fwd, save_output=True)
_log_softmax.defvjp(lambda ns, n, g, out: (g - ns.exp(out) * ns.sum(g, n.attrs["dim"], True),))


def _softmax_args(name, input, dim, dtype):  # noqa: A002
    x = check_tensor(input, name)
    if dtype is not None:
        x = x.to(dtype)
    x = float_result(x)
    if dim is None:
        raise TypeError(f"{name}: dim must be given (an int)")
    return x, {"dim": norm_dim(dim, x.ndim, name) if x.ndim else None}


@method()
def softmax(input, dim, dtype=None):  # noqa: A002
    """``exp(x) / sum(exp(x), dim)``, computed stably."""
    x, a = _softmax_args("softmax", input, dim, dtype)
    return apply(_softmax, (x,), a)


@method()
def log_softmax(input, dim, dtype=None):  # noqa: A002
    """``x - logsumexp(x, dim)``, computed stably."""
    x, a = _softmax_args("log_softmax", input, dim, dtype)
    return apply(_log_softmax, (x,), a)


# ------------------------------------------------------------------ scans

_cumsum = defop("cumsum", lambda x, dim: np.cumsum(x, axis=dim))
_cumsum.defvjp(lambda ns, n, g: (ns.flip(ns.cumsum(ns.flip(g, (n.attrs["dim"],)), n.attrs["dim"]),
                                         (n.attrs["dim"],)),))


@method()
def cumsum(input, dim, *, dtype=None):  # noqa: A002
    """Cumulative sum along ``dim``."""
    x = check_tensor(input, "cumsum")
    if dtype is not None:
        x = x.to(dtype)
    elif x._data.dtype.kind in "biu" and x._data.dtype != dtypes.int64:
        x = x.to(dtypes.int64)
    if x.ndim == 0:                              # a 0-d scan is the identity (stays 0-d)
        norm_dim(dim, 0, "cumsum")
        from .elementwise import clone
        return clone(x)
    return apply(_cumsum, (x,), {"dim": norm_dim(dim, x.ndim, "cumsum")})


_cumprod = defop("cumprod", lambda x, dim: np.cumprod(x, axis=dim), save=(0,), save_output=True)


@_cumprod.defvjp
def _(ns, n, g, x, out):
    # grad_i = sum_{j>=i} g_j prod_{m<=j, m!=i} x_m. With pref = cumprod(x, zeros -> 1) and
    # z_j = number of zeros in x[..j], a term is non-zero only if z_j == 0 (then it equals
    # pref_j / x_i) or z_j == 1 and x_i is that zero (then it equals pref_j).
    d = n.attrs["dim"]
    is_zero = x == 0
    if isinstance(x, Tensor) and bool(is_zero.any()):
        # create_graph with zeros: the masks below are constant in x, so this rule's own
        # derivative would be wrong; use the exact O(n^2) form instead
        return (_cumprod_grad_exact(ns, g, x, d),)
    safe = ns.where(is_zero, 1 + 0 * x, x)
    pref = ns.cumprod(safe, d)
    z = ns.cumsum(ns.astype(is_zero, g.dtype), d)
    w = g * pref
    zero = 0 * w

    def revcumsum(a):
        return ns.flip(ns.cumsum(ns.flip(a, (d,)), d), (d,))
    s0 = revcumsum(ns.where(z == 0, w, zero))
    s1 = revcumsum(ns.where(z == 1, w, zero))
    return (ns.where(is_zero, s1, s0 / safe),)


def _cumprod_grad_exact(ns, g, x, d):
    """grad_i = sum_{j>=i} g_j cumprod(y_i)_j with y_i = x where its entry i is replaced by 1:
    a smooth function of x (the replaced entry is a constant), so it differentiates correctly
    again, zeros or not. Memory O(n^2) along ``dim``; used only under ``create_graph``."""
    xt, gt = ns.transpose(x, d, -1), ns.transpose(g, d, -1)
    k = xt.shape[-1]
    eye = Tensor._make(get_xp(x._data).eye(k, dtype=bool), False, None, 0)
    y = ns.where(eye, 1.0, ns.broadcast_to(ns.unsqueeze(xt, -2), xt.shape[:-1] + (k, k)))
    c = ns.triu(ns.cumprod(y, -1), 0)            # c[..., i, j] = prod_{m<=j, m!=i} x_m, j >= i
    return ns.transpose(ns.sum(c * ns.unsqueeze(gt, -2), -1), d, -1)


@method()
def cumprod(input, dim, *, dtype=None):  # noqa: A002
    """Cumulative product along ``dim`` (gradient exact also with zeros in the input)."""
    x = check_tensor(input, "cumprod")
    if dtype is not None:
        x = x.to(dtype)
    elif x._data.dtype.kind in "biu" and x._data.dtype != dtypes.int64:
        x = x.to(dtypes.int64)
    if x.ndim == 0:
        norm_dim(dim, 0, "cumprod")
        from .elementwise import clone
        return clone(x)
    return apply(_cumprod, (x,), {"dim": norm_dim(dim, x.ndim, "cumprod")})


# ------------------------------------------------------------------ all / any

def _bool_reduce(name, fn):
    op = defop(name, lambda x, dim, keepdim: fn(x, dim, keepdim), differentiable=False)

    def f(input, dim=None, keepdim=False):  # noqa: A002
        x = check_tensor(input, name)
        dims = norm_dims(dim, x.ndim, name) if x.ndim else None
        return apply(op, (x,), {"dim": dims, "keepdim": keepdim})
    f.__name__ = name
    f.__doc__ = f"Logical {name} over ``dim`` (bool result)."
    setattr(Tensor, name, f)
    return f


all = _bool_reduce("all", lambda x, dim, keepdim: x.astype(bool).all(axis=dim, keepdims=keepdim))  # noqa: A001
any = _bool_reduce("any", lambda x, dim, keepdim: x.astype(bool).any(axis=dim, keepdims=keepdim))  # noqa: A001
count_nonzero = _bool_reduce("count_nonzero", lambda x, dim, keepdim:
                             (x != 0).sum(axis=dim, keepdims=keepdim).astype(np.int64))
