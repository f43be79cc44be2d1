"""Reductions, scans and the softmax family: forward values against numpy, gradients against
central finite differences (gradcheck and gradgradcheck, float64), ``dim`` as None, an int or
a tuple, ``keepdim``, 0-d and empty tensors, numerical stability, and PyTorch's semantics
(where installed, compared directly).

Generated from tables: one row per op with its numpy reference, its value domain (unique,
well separated values where ties would make the gradient ill-defined) and which ``dim``
forms it takes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import diffsim as ds
from diffsim.testing import assert_close, gradcheck, gradgradcheck
from diffsim.testing import strategies as dst

pytestmark = pytest.mark.filterwarnings(
    "ignore:Mean of empty slice:RuntimeWarning", "ignore:Degrees of freedom:RuntimeWarning",
    "ignore:invalid value encountered:RuntimeWarning", "ignore:divide by zero:RuntimeWarning")

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.filter_too_much,
                                                      HealthCheck.data_too_large])
FAST = settings(max_examples=15, **SETTINGS)
GRAD = settings(max_examples=10, **SETTINGS)
GRADGRAD = settings(max_examples=6, **SETTINGS)

R = dst.floats(-3, 3)
NZ = dst.floats(-2, 2, away_from=[0], margin=0.5)             # |x| in [0.5, 2]: prod stays tame
# distinct values, and distinct |values| (positives = 0.03 mod 0.1, negatives = 0.07 mod 0.1):
# no ties for max/argmax/inf-norm, never 0 (the kink of |x|)
UNIQ = dst.spaced_floats(-20, 20, 0.1, offset=0.03)
WITH_ZEROS = st.one_of(st.just(0.0), dst.spaced_floats(-2, 2, 0.5))   # many exact zeros
TRUTHY = st.sampled_from([0.0, 1.0, -0.5])


# ------------------------------------------------------------------ numpy references

def _np_argext(f):
    def ref(a, axis, keepdim):
        if axis is None:
            r = np.asarray(f(a))
            return r.reshape((1,) * a.ndim) if keepdim else r
        return f(a, axis=axis[0], keepdims=keepdim)
    return ref


def _np_norm(p):
    def ref(a, axis, keepdim):
        x = np.abs(a)
        if p == math.inf:
            return np.max(x, axis=axis, keepdims=keepdim)
        if p == -math.inf:
            return np.min(x, axis=axis, keepdims=keepdim)
        if p == 0:
            return np.sum(x != 0, axis=axis, keepdims=keepdim).astype(a.dtype)
        return np.sum(x ** p, axis=axis, keepdims=keepdim) ** (1.0 / p)
    return ref


def _np_logsumexp(a, axis, keepdim):
    m = np.max(a, axis=axis, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0)
    r = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return r if keepdim else np.squeeze(r, axis=axis)


def _np_softmax(a, axis):
    if a.ndim == 0:
        return np.ones_like(a)
    m = np.max(a, axis=axis, keepdims=True, initial=-np.inf)
    e = np.exp(a - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def _np_log_softmax(a, axis):
    if a.ndim == 0:
        return np.zeros_like(a)
    m = np.max(a, axis=axis, keepdims=True, initial=-np.inf)
    s = a - m
    return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


def _np_scan(f):
    return lambda a, axis: a.copy() if a.ndim == 0 else f(a, axis=axis)


# ------------------------------------------------------------------ the tables

@dataclass
class Red:
    """A reduction ``fn(x, dim, keepdim)`` against ``ref(array, axis tuple | None, keepdim)``."""
    name: str
    fn: Callable
    ref: Callable
    elems: object = R
    dims: str = "tuple"           # "tuple": None/int/tuple | "int": None/int | "required": int/tuple
    empty: str = "ok"             # "error": reducing over a size-0 dim raises (max, argmax ...)
    unique: bool = False
    grad: bool = True
    gg: bool = True
    out: str = "float"            # "float" | "int64" | "bool"

    def __repr__(self):
        return self.name


def _red(name, ref, **kw):
    return Red(name, lambda x, d, k, _f=getattr(ds, name): _f(x, d, keepdim=k), ref, **kw)


def _varstd(name, ref, correction, **kw):
    fn = getattr(ds, name)
    if correction is None:
        return Red(name, lambda x, d, k: fn(x, d, keepdim=k),
                   lambda a, ax, k: ref(a, axis=ax, ddof=1, keepdims=k), **kw)
    return Red(f"{name}_correction{correction}", lambda x, d, k: fn(x, d, keepdim=k, correction=correction),
               lambda a, ax, k: ref(a, axis=ax, ddof=correction, keepdims=k), **kw)


def _norm(p, **kw):
    return Red(f"norm_p{p}", lambda x, d, k: ds.norm(x, p, d, keepdim=k), _np_norm(
        2 if p == "fro" else p), **kw)


REDUCTIONS = [
    _red("sum", lambda a, ax, k: np.sum(a, axis=ax, keepdims=k)),
    _red("mean", lambda a, ax, k: np.mean(a, axis=ax, keepdims=k)),
    _red("prod", lambda a, ax, k: np.prod(a, axis=ax, keepdims=k), elems=NZ, dims="int"),
    Red("prod_with_zeros", lambda x, d, k: ds.prod(x, d, keepdim=k),
        lambda a, ax, k: np.prod(a, axis=ax, keepdims=k), elems=WITH_ZEROS, dims="int"),
    _red("amax", lambda a, ax, k: np.max(a, axis=ax, keepdims=k), elems=UNIQ, unique=True,
         empty="error"),
    _red("amin", lambda a, ax, k: np.min(a, axis=ax, keepdims=k), elems=UNIQ, unique=True,
         empty="error"),
    Red("max_all", lambda x, d, k: ds.max(x), lambda a, ax, k: np.max(a), elems=UNIQ, unique=True,
        dims="none", empty="error"),
    Red("min_all", lambda x, d, k: x.min(), lambda a, ax, k: np.min(a), elems=UNIQ, unique=True,
        dims="none", empty="error"),
    _red("argmax", _np_argext(np.argmax), elems=UNIQ, unique=True, dims="int", empty="error",
         grad=False, out="int64"),
    _red("argmin", _np_argext(np.argmin), elems=UNIQ, unique=True, dims="int", empty="error",
         grad=False, out="int64"),
    _varstd("var", np.var, None, unique=True),
    _varstd("var", np.var, 0, unique=True),
    _varstd("var", np.var, 2, unique=True),
    _varstd("std", np.std, None, unique=True, elems=UNIQ),
    _varstd("std", np.std, 0, unique=True, elems=UNIQ),
    Red("var_unbiased_false", lambda x, d, k: ds.var(x, d, False, k),
        lambda a, ax, k: np.var(a, axis=ax, keepdims=k), unique=True),
    _norm("fro", elems=NZ),
    _norm(1, elems=NZ),
    _norm(3, elems=NZ),
    _norm(0.5, elems=NZ),
    _norm(math.inf, elems=UNIQ, unique=True, empty="error"),
    _norm(-math.inf, elems=UNIQ, unique=True, empty="error"),
    _norm(0, elems=WITH_ZEROS, gg=False),
    Red("logsumexp", lambda x, d, k: ds.logsumexp(x, d, keepdim=k), _np_logsumexp, dims="required"),
    _red("all", lambda a, ax, k: np.all(a, axis=ax, keepdims=k), elems=TRUTHY, grad=False, out="bool"),
    _red("any", lambda a, ax, k: np.any(a, axis=ax, keepdims=k), elems=TRUTHY, grad=False, out="bool"),
]


@dataclass
class Scan:
    """A dim-preserving op ``fn(x, dim)`` (dim an int) against ``ref(array, axis)``."""
    name: str
    fn: Callable
    ref: Callable
    elems: object = R

    def __repr__(self):
        return self.name


SCANS = [
    Scan("cumsum", ds.cumsum, _np_scan(np.cumsum)),
    Scan("cumprod", ds.cumprod, _np_scan(np.cumprod), elems=NZ),
    Scan("cumprod_with_zeros", ds.cumprod, _np_scan(np.cumprod), elems=WITH_ZEROS),
    Scan("softmax", ds.softmax, _np_softmax),
    Scan("log_softmax", ds.log_softmax, _np_log_softmax),
]


# ------------------------------------------------------------------ drawing dims

def draw_dim(data, ndim, kind):
    """None, an int or a tuple of distinct dims (each maybe negative), as ``kind`` allows."""
    if kind == "none":
        return None
    n = max(ndim, 1)
    one = st.integers(-n, n - 1)
    if kind == "int":
        return data.draw(st.one_of(st.none(), one), label="dim")
    subset = st.sets(st.integers(0, n - 1), min_size=1, max_size=n).flatmap(
        lambda s: st.tuples(*[st.sampled_from([d, d - n]) for d in sorted(s)]))
    options = [one, subset] if kind == "required" else [st.none(), one, subset]
    return data.draw(st.one_of(*options), label="dim")


def np_axis(dim, ndim):
    """The numpy ``axis`` (a tuple of non-negative dims, or None) for a diffsim ``dim``."""
    if dim is None or ndim == 0:
        return None
    dims = dim if isinstance(dim, tuple) else (dim,)
    return tuple(sorted(d % ndim for d in dims))


def reduces_empty(shape, axis):
    dims = range(len(shape)) if axis is None else axis
    return any(shape[d] == 0 for d in dims) or (axis is None and 0 in shape)


def draw_case(data, row, dtype=ds.float64, requires_grad=False, max_dims=4, max_side=4):
    shape = data.draw(dst.shapes(max_dims=max_dims, max_side=max_side), label="shape")
    if row.out == "bool" and data.draw(st.booleans(), label="bool input"):
        x = data.draw(dst.tensors(shape=shape, dtype=ds.bool, elements=st.booleans()))
    else:
        x = data.draw(dst.tensors(shape=shape, dtype=dtype, elements=row.elems, unique=row.unique,
                                  requires_grad=requires_grad))
    dim = draw_dim(data, x.ndim, row.dims)
    keepdim = data.draw(st.booleans(), label="keepdim")
    return x, dim, keepdim


_TOL = {ds.float32: dict(rtol=1e-4, atol=1e-4), ds.float64: dict(rtol=1e-10, atol=1e-10)}


# ------------------------------------------------------------------ the matrix

@pytest.mark.parametrize("row", REDUCTIONS, ids=repr)
@pytest.mark.parametrize("dtype", [ds.float32, ds.float64], ids=str)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")        # mean of empty, var with dof <= 0
@FAST
@given(data=st.data())
def test_reduction_forward(row, dtype, data):
    x, dim, keepdim = draw_case(data, row, dtype)
    axis = np_axis(dim, x.ndim)
    if row.empty == "error" and reduces_empty(x.shape, axis):
        with pytest.raises((IndexError, RuntimeError)):
            row.fn(x, dim, keepdim)
        return
    out = row.fn(x, dim, keepdim)
    a = x.numpy()
    with np.errstate(all="ignore"):
        expected = np.asarray(row.ref(a.astype(np.float64) if a.dtype.kind == "f" else a, axis, keepdim))
    want = {"float": dtype, "int64": ds.int64, "bool": ds.bool}[row.out]
    assert out.dtype == want, f"{row.name}: dtype {out.dtype}, expected {want}"
    assert_close(out, expected.astype(want), msg=f"{row.name}(dim={dim}, keepdim={keepdim})",
                 **(_TOL[dtype] if row.out == "float" else {}))


@pytest.mark.parametrize("row", [r for r in REDUCTIONS if r.grad], ids=repr)
@GRAD
@given(data=st.data())
def test_reduction_gradcheck(row, data):
    x, dim, keepdim = draw_case(data, row, requires_grad=True, max_dims=3, max_side=3)
    if row.empty == "error" and reduces_empty(x.shape, np_axis(dim, x.ndim)):
        return
    assert gradcheck(lambda t: row.fn(t, dim, keepdim), (x,))


@pytest.mark.parametrize("row", [r for r in REDUCTIONS if r.grad and r.gg], ids=repr)
@GRADGRAD
@given(data=st.data())
def test_reduction_gradgradcheck(row, data):
    x, dim, keepdim = draw_case(data, row, requires_grad=True, max_dims=2, max_side=3)
    if row.empty == "error" and reduces_empty(x.shape, np_axis(dim, x.ndim)):
        return
    assert gradgradcheck(lambda t: row.fn(t, dim, keepdim), (x,))


def _draw_scan(data, row, dtype=ds.float64, requires_grad=False, max_dims=4, max_side=4):
    x = data.draw(dst.tensors(shape=dst.shapes(max_dims=max_dims, max_side=max_side), dtype=dtype,
                              elements=row.elems, requires_grad=requires_grad))
    n = max(x.ndim, 1)
    return x, data.draw(st.integers(-n, n - 1), label="dim")


@pytest.mark.parametrize("row", SCANS, ids=repr)
@pytest.mark.parametrize("dtype", [ds.float32, ds.float64], ids=str)
@FAST
@given(data=st.data())
def test_scan_forward(row, dtype, data):
    x, dim = _draw_scan(data, row, dtype)
    out = row.fn(x, dim)
    expected = row.ref(x.numpy().astype(np.float64), dim % max(x.ndim, 1))
    assert out.dtype == dtype and out.shape == x.shape
    assert_close(out, np.asarray(expected).astype(dtype), msg=f"{row.name}(dim={dim})", **_TOL[dtype])


@pytest.mark.parametrize("row", SCANS, ids=repr)
@GRAD
@given(data=st.data())
def test_scan_gradcheck(row, data):
    x, dim = _draw_scan(data, row, requires_grad=True, max_dims=3, max_side=3)
    assert gradcheck(lambda t: row.fn(t, dim), (x,))


@pytest.mark.parametrize("row", SCANS, ids=repr)
@GRADGRAD
@given(data=st.data())
def test_scan_gradgradcheck(row, data):
    x, dim = _draw_scan(data, row, requires_grad=True, max_dims=2, max_side=4)
    assert gradgradcheck(lambda t: row.fn(t, dim), (x,))


@pytest.mark.parametrize("values", [[0.0, 0.5, 0.0, 1.0], [0.5, 0.0, 1.0, 1.5], [0.0, 0.0],
                                    [[0.0, 1.0, 2.0], [1.5, 0.0, 0.0]]], ids=str)
@pytest.mark.parametrize("name", ["cumprod", "prod"])
def test_products_with_zeros_second_order(name, values):
    x = ds.tensor(values, dtype=ds.float64, requires_grad=True)
    fn = getattr(ds, name)
    for dim in range(x.ndim):
        assert gradcheck(lambda t: fn(t, dim), (x,))
        assert gradgradcheck(lambda t: fn(t, dim), (x,))


# ------------------------------------------------------------------ max / min with dim

@pytest.mark.parametrize("name", ["max", "min"])
@FAST
@given(data=st.data())
def test_max_min_with_dim(name, data):
    x = data.draw(dst.tensors(shape=dst.shapes(min_dims=1, max_dims=3, max_side=3), elements=UNIQ,
                              unique=True, requires_grad=True))
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1), label="dim")
    keepdim = data.draw(st.booleans(), label="keepdim")
    fn = getattr(ds, name)
    if x.shape[dim] == 0:
        with pytest.raises((IndexError, RuntimeError)):
            fn(x, dim, keepdim)
        return
    res = fn(x, dim, keepdim)
    values, indices = res
    assert res.values is values and res.indices is indices
    a = x.detach().numpy()
    npf, nparg = (np.max, np.argmax) if name == "max" else (np.min, np.argmin)
    assert_close(values, npf(a, axis=dim, keepdims=keepdim))
    assert indices.dtype == ds.int64
    assert_close(indices, nparg(a, axis=dim, keepdims=keepdim))
    method = getattr(x, name)(dim=dim, keepdim=keepdim)
    assert_close(method.values, values)
    assert gradcheck(lambda t: fn(t, dim, keepdim).values, (x,))


def test_max_min_of_two_tensors_is_elementwise():
    a = ds.tensor([1.0, 5.0, -2.0])
    b = ds.tensor([3.0, 4.0, -1.0])
    assert_close(ds.max(a, b), np.float32([3.0, 5.0, -1.0]))
    assert_close(ds.min(a, b), np.float32([1.0, 4.0, -2.0]))


def test_ties_share_the_gradient_evenly_and_argmax_takes_the_first():
    x = ds.tensor([1.0, 3.0, 3.0, 0.0], dtype=ds.float64, requires_grad=True)
    ds.max(x).backward()
    assert_close(x.grad, np.array([0.0, 0.5, 0.5, 0.0]))
    x.grad = None
    ds.amax(x, 0).backward()
    assert_close(x.grad, np.array([0.0, 0.5, 0.5, 0.0]))
    assert ds.argmax(x).item() == 1
    assert ds.max(x, 0).indices.item() == 1
    assert ds.argmin(ds.tensor([2.0, 0.0, 0.0])).item() == 1


# ------------------------------------------------------------------ edge cases and semantics

@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_empty_reductions_match_pytorch():
    e = ds.ones(0, 3, dtype=ds.float64)
    assert_close(ds.sum(e), np.array(0.0))
    assert_close(ds.prod(e), np.array(1.0))
    assert np.isnan(ds.mean(e).item())
    assert_close(ds.mean(e, 1), np.zeros(0))
    assert_close(ds.amax(e, 1), np.zeros(0))          # nothing reduced over the empty dim
    assert_close(ds.max(e, 1).values, np.zeros(0))
    assert_close(ds.argmax(e, 1), np.zeros(0, dtype=np.int64))
    assert_close(ds.norm(e), np.array(0.0))
    assert_close(ds.logsumexp(e, 0), np.full(3, -np.inf))
    assert_close(ds.softmax(e, 0), np.zeros((0, 3)))
    assert_close(ds.log_softmax(e, 0), np.zeros((0, 3)))
    assert ds.all(e).item() is True and ds.any(e).item() is False
    for f in (lambda: ds.amax(e), lambda: ds.amax(e, 0), lambda: ds.max(e), lambda: ds.argmax(e),
              lambda: ds.max(e, 0), lambda: ds.norm(e, math.inf)):
        with pytest.raises((IndexError, RuntimeError)):
            f()


@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin", "var", "std", "norm", "logsumexp"])
def test_empty_dim_tuple_reduces_everything(name):
    """As in PyTorch, ``dim=()`` (an empty tuple) means all dims for arithmetic reductions."""
    x = ds.tensor([[1.0, 2.0, 4.0], [0.5, -1.0, 3.0]], dtype=ds.float64)
    fn = getattr(ds, name)
    out = fn(x, p=2, dim=()) if name == "norm" else fn(x, ())
    full = fn(x) if name != "logsumexp" else fn(x, (0, 1))
    assert_close(out, full)
    out_k = fn(x, p=2, dim=(), keepdim=True) if name == "norm" else fn(x, (), keepdim=True)
    assert out_k.shape == (1, 1)


def test_all_any_with_empty_dim_tuple_reduce_nothing():
    x = ds.tensor([[1.0, 0.0], [2.0, 3.0]])
    assert_close(ds.all(x, ()), np.array([[True, False], [True, True]]))
    assert_close(ds.any(x, ()), np.array([[True, False], [True, True]]))


@pytest.mark.parametrize("name", ["cumsum", "cumprod", "softmax", "log_softmax"])
def test_scans_of_0d_tensors_stay_0d(name):
    x = ds.tensor(0.7, dtype=ds.float64, requires_grad=True)
    out = getattr(ds, name)(x, 0)
    assert out.shape == ()
    assert gradcheck(lambda t: getattr(ds, name)(t, -1), (x,))


@pytest.mark.parametrize("correction", [0, 1, 2, 3])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_var_std_correction(correction):
    x = ds.tensor([[1.0, 2.0, 4.0], [0.5, -1.0, 3.0]], dtype=ds.float64)
    a = x.numpy()
    assert_close(ds.var(x, 1, correction=correction), np.var(a, axis=1, ddof=correction))
    assert_close(ds.std(x, (0, 1), correction=correction), np.std(a, ddof=correction))
    assert_close(x.var(correction=correction), np.var(a, ddof=correction))


def test_std_of_constant_has_zero_gradient():
    """PyTorch: the std gradient is 0 (a subgradient), not NaN, where the std is 0."""
    x = ds.tensor([[3.0], [2.0]], dtype=ds.float64, requires_grad=True)
    ds.std(x, 1, correction=0).sum().backward()
    assert_close(x.grad, np.zeros((2, 1)))
    y = ds.tensor([1.5, 1.5, 1.5], dtype=ds.float64, requires_grad=True)
    ds.std(y).backward()
    assert_close(y.grad, np.zeros(3))


def test_norm_of_zero_vector_has_zero_gradient():
    x = ds.zeros(3, dtype=ds.float64, requires_grad=True)
    ds.norm(x).backward()
    assert_close(x.grad, np.zeros(3))


@pytest.mark.parametrize("shift", [1000.0, -1000.0, 1e6])
def test_softmax_family_is_stable_for_large_inputs(shift):
    base = np.array([[0.0, 1.0, -2.0, 0.5], [3.0, 3.0, -1.0, 0.0]])
    x = ds.tensor(base + shift, dtype=ds.float64, requires_grad=True)
    sm = ds.softmax(x, 1)
    lsm = ds.log_softmax(x, -1)
    lse = ds.logsumexp(x, 1)
    assert_close(sm, _np_softmax(base, 1), rtol=1e-9, atol=1e-12)
    assert_close(lsm, _np_log_softmax(base, 1), rtol=1e-9, atol=1e-9)
    assert_close(lse, _np_logsumexp(base, (1,), False) + shift, rtol=1e-12, atol=1e-9)
    (sm.sum() + lsm.sum() + lse.sum()).backward()
    assert np.all(np.isfinite(x.grad.numpy()))
    x32 = ds.tensor(base + shift, dtype=ds.float32)
    assert np.all(np.isfinite(ds.softmax(x32, 1).numpy()))
    assert np.all(np.isfinite(ds.log_softmax(x32, 1).numpy()))
    assert_close(ds.softmax(x32, 1).sum(1), np.ones(2, dtype=np.float32))


def test_integer_reductions_promote_like_pytorch():
    x = ds.tensor([1, 2, 3], dtype=ds.int32)
    assert ds.sum(x).dtype == ds.int64
    assert ds.sum(ds.tensor([True, True])).dtype == ds.int64
    assert ds.prod(x).dtype == ds.int64
    assert ds.cumsum(x, 0).dtype == ds.int64
    assert ds.cumprod(x, 0).dtype == ds.int64
    assert ds.amax(x).dtype == ds.int32
    assert ds.sum(x, dtype=ds.float64).dtype == ds.float64
    assert ds.sum(ds.tensor([1.0], dtype=ds.float32)).dtype == ds.float32
    with pytest.raises(RuntimeError, match="mean"):
        ds.mean(x)
    assert ds.mean(x, dtype=ds.float64).item() == 2.0


def test_dim_errors_name_the_op():
    x = ds.ones(2, 3)
    with pytest.raises(IndexError, match="sum"):
        ds.sum(x, 2)
    with pytest.raises(RuntimeError, match="sum"):
        ds.sum(x, (0, -2))


# ------------------------------------------------------------------ matmul (second order)

@GRAD
@given(data=st.data())
def test_matmul_gradcheck_and_gradgradcheck(data):
    n = data.draw(st.integers(1, 3), label="n")
    kind = data.draw(st.sampled_from(["vv", "mv", "vm", "mm", "batched"]), label="kind")
    m, k = data.draw(st.integers(1, 3), label="m"), data.draw(st.integers(1, 3), label="k")
    shapes = {"vv": ((n,), (n,)), "mv": ((m, n), (n,)), "vm": ((n,), (n, k)), "mm": ((m, n), (n, k)),
              "batched": ((2, 1, m, n), (3, n, k))}[kind]
    a, b = (data.draw(dst.tensors(shape=s, elements=R, requires_grad=True)) for s in shapes)
    assert_close(ds.matmul(a, b), np.matmul(a.detach().numpy(), b.detach().numpy()), rtol=1e-12,
                 atol=1e-12)
    assert_close(a @ b, np.matmul(a.detach().numpy(), b.detach().numpy()), rtol=1e-12, atol=1e-12)
    assert gradcheck(ds.matmul, (a, b))
    assert gradgradcheck(ds.matmul, (a, b))


# ------------------------------------------------------------------ against PyTorch

TORCH_SUBSET = ["sum", "mean", "prod", "prod_with_zeros", "amax", "var", "std_correction0",
                "norm_pfro", "norm_p1", "norm_p3", "norm_pinf", "logsumexp", "max_all"]


def _torch_reduction(torch, name, t, dim, keepdim):
    if name in ("sum", "mean", "amax"):
        return getattr(torch, name)(t, dim=dim, keepdim=keepdim) if dim is not None else getattr(
            torch, name)(t)
    if name.startswith("prod"):
        return torch.prod(t, dim, keepdim=keepdim) if dim is not None else torch.prod(t)
    if name == "var":
        return torch.var(t, dim, keepdim=keepdim)
    if name == "std_correction0":
        return torch.std(t, dim, keepdim=keepdim, correction=0)
    if name.startswith("norm_p"):
        p = name[6:]
        p = 2 if p == "fro" else float(p)
        return torch.linalg.vector_norm(t, p, dim, keepdim=keepdim)
    if name == "logsumexp":
        return torch.logsumexp(t, dim, keepdim=keepdim)
    if name == "max_all":
        return torch.max(t)
    raise KeyError(name)


@pytest.mark.parametrize("name", TORCH_SUBSET + ["cumsum", "cumprod_with_zeros", "softmax",
                                                 "log_softmax", "max_dim"])
@pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")
@GRAD
@given(data=st.data())
def test_against_torch(name, data):
    torch = pytest.importorskip("torch")
    scans = {s.name: s for s in SCANS}
    rows = {r.name: r for r in REDUCTIONS}
    if name in scans:
        row = scans[name]
        x, dim = _draw_scan(data, row, requires_grad=True, max_dims=3, max_side=3)
        out = row.fn(x, dim)
        tfn = {"cumsum": torch.cumsum, "cumprod_with_zeros": torch.cumprod, "softmax": torch.softmax,
               "log_softmax": torch.log_softmax}[name]
        t = torch.tensor(x.detach().numpy(), requires_grad=True)
        tout = tfn(t, dim)
    elif name == "max_dim":
        x = data.draw(dst.tensors(shape=dst.shapes(min_dims=1, max_dims=3, min_side=1, max_side=3),
                                  elements=UNIQ, unique=True, requires_grad=True))
        dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
        out = ds.max(x, dim).values
        t = torch.tensor(x.detach().numpy(), requires_grad=True)
        tout = torch.max(t, dim).values
    else:
        row = rows[name]
        x, dim, keepdim = draw_case(data, row, requires_grad=True, max_dims=3, max_side=3)
        if reduces_empty(x.shape, np_axis(dim, x.ndim)) and row.empty == "error":
            return
        if name.startswith("prod") and x.ndim == 0 and dim is not None:
            dim = None
        if dim is None:
            keepdim = False          # PyTorch has no keepdim for most full reductions
        out = row.fn(x, dim, keepdim)
        t = torch.tensor(x.detach().numpy(), requires_grad=True)
        tout = _torch_reduction(torch, name, t, dim, keepdim)
    assert_close(out, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    v = np.random.default_rng(1).standard_normal(out.shape)
    (g,) = ds.autograd.grad(out, [x], ds.tensor(v))
    (tg,) = torch.autograd.grad(tout, [t], torch.tensor(v))
    assert_close(g, tg.numpy(), rtol=1e-9, atol=1e-12, msg=f"{name} gradient")


# ------------------------------------------------------------------ regressions (review)

def test_max_min_with_other_keyword():
    x, y = ds.tensor([1.0, 5.0]), ds.tensor([3.0, 2.0])
    assert ds.max(x, other=y).tolist() == [3.0, 5.0] and x.max(other=y).tolist() == [3.0, 5.0]
    assert ds.min(x, other=y).tolist() == [1.0, 2.0]
    with pytest.raises(TypeError, match="dim or other"):
        ds.max(x, 0, other=y)


def test_sum_with_dtype_sends_gradients_in_the_input_dtype():
    x = ds.ones(2, requires_grad=True)
    h = x * 2
    h.retain_grad()
    s = h.sum(dtype=ds.float64)
    assert s.dtype == ds.float64
    s.backward()
    assert h.grad.dtype == ds.float32 and x.grad.dtype == ds.float32
    assert ds.tensor([1, 2], dtype=ds.int32).sum(dtype=ds.int32).dtype == ds.int32
    assert ds.tensor([1, 2], dtype=ds.int32).sum().dtype == ds.int64
