"""Elementwise ops: forward values against numpy, gradients against central finite differences
(gradcheck, gradgradcheck in float64), PyTorch's type promotion, operators (reflected forms
with Python scalars included) and in-place forms.

The tests are generated from tables, one row per op: the diffsim function, the numpy
reference and, per input, a hypothesis strategy of values inside the op's domain and clear of
its kinks (``abs`` at 0, ``floor`` at integers, ties of ``maximum``). Shapes come from
hypothesis too: broadcasting pairs/triples, size-1 dims, 0-d and empty tensors.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import diffsim as ds
from diffsim.testing import assert_close, gradcheck, gradgradcheck
from diffsim.testing import strategies as dst

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.filter_too_much,
                                                      HealthCheck.data_too_large])
FAST = settings(max_examples=10, **SETTINGS)
GRAD = settings(max_examples=8, **SETTINGS)
GRADGRAD = settings(max_examples=4, **SETTINGS)

# ------------------------------------------------------------------ value domains

R = dst.floats(-3, 3)
WIDE = dst.floats(-8, 8)
POS = dst.floats(0.1, 4)
NZ = dst.floats(-3, 3, away_from=[0], margin=0.1)          # away from a kink/pole at 0
UNIT = dst.floats(-0.9, 0.9)                                 # inside (-1, 1)
GRID = dst.spaced_floats(-2, 2, 0.1)                         # k / 10
OFFGRID = dst.spaced_floats(-2, 2, 0.1, offset=0.05)         # never within 0.05 of GRID
QUARTER = dst.spaced_floats(-3, 3, 0.5, offset=0.25)         # away from integers and halves
HALVES = dst.spaced_floats(-3, 3, 0.5)                       # includes .5 ties (round half even)
COARSE = dst.spaced_floats(-1, 1, 0.5)                       # few values: ties for comparisons
REM_A = dst.spaced_floats(-3, 3, 0.25, offset=0.125)         # odd multiples of 1/8 ...
REM_B = st.sampled_from([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0])    # ... so a / b is never an integer
NONFINITE = st.one_of(R, st.sampled_from([math.nan, math.inf, -math.inf]))
NANS = st.one_of(GRID, st.just(math.nan))
BOOL = "bool"                                                # a bool input (where's condition)

LO_BOUND = dst.spaced_floats(-2, -0.1, 0.1)                  # clamp bounds on GRID, x on OFFGRID
HI_BOUND = dst.spaced_floats(0.1, 2, 0.1)


def _vec(f):
    return np.vectorize(f, otypes=[np.float64])


def _clip01(x, eps):
    return np.clip(x, eps, 1 - eps)


@dataclass
class Op:
    """One table row: ``fn(*tensors)`` against ``ref(*float64 arrays)``."""
    name: str
    fn: Callable
    ref: Callable
    args: tuple                      # per input: an elements strategy, or BOOL
    grad: str = "fd"                 # "fd" gradcheck | "zero" zero gradient | "none" no gradient
    gg: bool = True                  # also gradgradcheck
    out: str = "float"               # "float": the inputs' float dtype | "bool"
    fwd_args: tuple | None = None    # wider domain for the forward check (nan, inf, ties ...)
    ref_in_dtype: bool = False       # compute the reference in the inputs' dtype, not float64

    def __repr__(self):
        return self.name


def _unary(name, ref, dom, **kw):
    return Op(name, getattr(ds, name), ref, (dom,), **kw)


UNARY = [
    _unary("neg", np.negative, R),
    _unary("abs", np.abs, NZ, fwd_args=(R,)),
    _unary("sign", np.sign, NZ, grad="zero", fwd_args=(HALVES,)),
    _unary("exp", np.exp, R),
    _unary("exp2", np.exp2, R),
    _unary("expm1", np.expm1, R),
    _unary("log", np.log, POS),
    _unary("log2", np.log2, POS),
    _unary("log10", np.log10, POS),
    _unary("log1p", np.log1p, dst.floats(-0.9, 4)),
    _unary("sqrt", np.sqrt, POS),
    _unary("rsqrt", lambda x: 1 / np.sqrt(x), POS),
    _unary("square", np.square, R),
    _unary("sin", np.sin, R),
    _unary("cos", np.cos, R),
    _unary("tan", np.tan, dst.floats(-1.3, 1.3)),
    _unary("asin", np.arcsin, UNIT),
    _unary("acos", np.arccos, UNIT),
    _unary("atan", np.arctan, R),
    _unary("sinh", np.sinh, R),
    _unary("cosh", np.cosh, R),
    _unary("tanh", np.tanh, R),
    _unary("asinh", np.arcsinh, R),
    _unary("acosh", np.arccosh, dst.floats(1.1, 4)),
    _unary("atanh", np.arctanh, UNIT),
    _unary("sigmoid", lambda x: 1 / (1 + np.exp(-x)), WIDE),
    _unary("logit", lambda x: np.log(x / (1 - x)), dst.floats(0.05, 0.95)),
    Op("logit_eps", lambda x: ds.logit(x, eps=0.2),
       lambda x: np.log(_clip01(x, 0.2) / (1 - _clip01(x, 0.2))),
       (dst.floats(0.02, 0.98, away_from=[0.2, 0.8], margin=0.02),)),
    _unary("erf", _vec(math.erf), R),
    _unary("erfc", _vec(math.erfc), R),
    _unary("floor", np.floor, QUARTER, grad="zero", fwd_args=(HALVES,)),
    _unary("ceil", np.ceil, QUARTER, grad="zero", fwd_args=(HALVES,)),
    _unary("trunc", np.trunc, QUARTER, grad="zero", fwd_args=(HALVES,)),
    _unary("round", np.round, QUARTER, grad="zero", fwd_args=(HALVES,)),   # half to even
    Op("round_decimals", lambda x: ds.round(x, decimals=1), lambda x: np.round(x, 1),
       (dst.spaced_floats(-3, 3, 0.1, offset=0.02),), grad="zero"),
    _unary("reciprocal", np.reciprocal, NZ),
    _unary("relu", lambda x: np.maximum(x, 0), NZ),
    _unary("nan_to_num", np.nan_to_num, NONFINITE, gg=False, ref_in_dtype=True),  # +-inf -> finfo
    Op("nan_to_num_values", lambda x: ds.nan_to_num(x, nan=1.5, posinf=9.0, neginf=-9.0),
       lambda x: np.nan_to_num(x, nan=1.5, posinf=9.0, neginf=-9.0), (NONFINITE,), gg=False),
    Op("clamp_scalar", lambda x: ds.clamp(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), (OFFGRID,)),
    Op("clamp_min", lambda x: ds.clamp(x, min=-0.5), lambda x: np.maximum(x, -0.5), (OFFGRID,)),
    Op("clamp_max", lambda x: ds.clamp(x, max=0.5), lambda x: np.minimum(x, 0.5), (OFFGRID,)),
    Op("clip_scalar", lambda x: ds.clip(x, -1, 1), lambda x: np.clip(x, -1, 1), (OFFGRID,)),
    _unary("isnan", np.isnan, NONFINITE, grad="none", out="bool"),
    _unary("isinf", np.isinf, NONFINITE, grad="none", out="bool"),
    _unary("isfinite", np.isfinite, NONFINITE, grad="none", out="bool"),
]


def _binary(name, ref, a, b, **kw):
    return Op(name, getattr(ds, name), ref, (a, b), **kw)


NARY = [
    _binary("add", np.add, R, R),
    _binary("sub", np.subtract, R, R),
    _binary("mul", np.multiply, R, R),
    _binary("div", np.divide, R, NZ),
    _binary("true_divide", np.true_divide, R, NZ),
    Op("add_alpha", lambda a, b: ds.add(a, b, alpha=2.5), lambda a, b: a + 2.5 * b, (R, R)),
    Op("sub_alpha", lambda a, b: ds.sub(a, b, alpha=-0.5), lambda a, b: a + 0.5 * b, (R, R)),
    # rounding a quotient: the reference must round the quotient in the same dtype
    Op("div_floor", lambda a, b: ds.div(a, b, rounding_mode="floor"), np.floor_divide,
       (R, NZ), grad="none", ref_in_dtype=True),
    Op("div_trunc", lambda a, b: ds.div(a, b, rounding_mode="trunc"), lambda a, b: np.trunc(a / b),
       (R, NZ), grad="none", ref_in_dtype=True),
    _binary("floor_divide", np.floor_divide, R, NZ, grad="none", ref_in_dtype=True),
    _binary("remainder", np.remainder, REM_A, REM_B),
    _binary("pow", np.power, POS, dst.floats(-2, 2)),
    _binary("atan2", np.arctan2, NZ, R),
    _binary("hypot", np.hypot, NZ, R),
    _binary("maximum", np.maximum, OFFGRID, GRID, fwd_args=(NANS, NANS)),
    _binary("minimum", np.minimum, OFFGRID, GRID, fwd_args=(NANS, NANS)),
    _binary("fmax", np.fmax, OFFGRID, GRID, fwd_args=(NANS, NANS)),
    _binary("fmin", np.fmin, OFFGRID, GRID, fwd_args=(NANS, NANS)),
    Op("lerp", ds.lerp, lambda s, e, w: s + w * (e - s), (R, R, dst.floats(0, 1))),
    Op("lerp_scalar_weight", lambda s, e: ds.lerp(s, e, 0.3), lambda s, e: s + 0.3 * (e - s), (R, R)),
    Op("where", ds.where, np.where, (BOOL, R, R)),
    Op("clamp_tensor", ds.clamp, np.clip, (OFFGRID, LO_BOUND, HI_BOUND)),
    Op("clamp_tensor_min", lambda x, lo: ds.clamp(x, min=lo), np.maximum, (OFFGRID, GRID)),
    Op("clamp_tensor_max", lambda x, hi: ds.clamp(x, max=hi), np.minimum, (OFFGRID, GRID)),
    # min > max: PyTorch (and numpy) return max everywhere; the gradient goes to max only
    Op("clamp_crossed_bounds", ds.clamp, np.clip, (OFFGRID, HI_BOUND, LO_BOUND)),
]

COMPARISONS = [
    _binary(n, ref, COARSE, COARSE, grad="none", out="bool")
    for n, ref in (("eq", np.equal), ("ne", np.not_equal), ("lt", np.less), ("le", np.less_equal),
                   ("gt", np.greater), ("ge", np.greater_equal))
] + [
    Op(f"op_{n}", f, f, (COARSE, COARSE), grad="none", out="bool")
    for n, f in (("==", operator.eq), ("!=", operator.ne), ("<", operator.lt),
                 ("<=", operator.le), (">", operator.gt), (">=", operator.ge))
] + [
    _binary(n, ref, BOOL, BOOL, grad="none", out="bool")
    for n, ref in (("logical_and", np.logical_and), ("logical_or", np.logical_or),
                   ("logical_xor", np.logical_xor))
]

ALL = UNARY + NARY + COMPARISONS
DIFF = [op for op in ALL if op.grad != "none"]
GG = [op for op in DIFF if op.grad == "fd" and op.gg]
NONDIFF = [op for op in ALL if op.grad == "none"]


# ------------------------------------------------------------------ drawing inputs

def _shapes(data, n, max_dims, max_side, min_side=0):
    if n == 1:
        return (data.draw(dst.shapes(max_dims=max_dims, min_side=min_side, max_side=max_side),
                          label="shape"),)
    s = data.draw(dst.mutually_broadcastable_shapes(n, max_dims=max_dims, min_side=min_side,
                                                    max_side=max_side), label="shapes")
    return s.input_shapes


def draw_inputs(data, args, dtype=ds.float64, requires_grad=False, max_dims=3, max_side=3,
                min_side=0):
    """One tensor per entry of ``args``, with mutually broadcastable shapes."""
    out = []
    for shape, dom in zip(_shapes(data, len(args), max_dims, max_side, min_side), args):
        if dom is BOOL:
            t = data.draw(dst.tensors(shape=shape, dtype=ds.bool, elements=st.booleans()))
        else:
            t = data.draw(dst.tensors(shape=shape, dtype=dtype, elements=dom,
                                      requires_grad=requires_grad))
        out.append(t)
    return out


def _np64(t):
    a = t.detach().numpy()
    return a.astype(np.float64) if a.dtype.kind == "f" else a


_TOL = {ds.float32: dict(rtol=1e-5, atol=1e-5), ds.float64: dict(rtol=1e-10, atol=1e-12)}


def check_forward(op, xs, dtype):
    out = op.fn(*xs)
    with np.errstate(all="ignore"):
        expected = np.asarray(op.ref(*[x.numpy() if op.ref_in_dtype else _np64(x) for x in xs]))
    want = ds.bool if op.out == "bool" else dtype
    assert out.dtype == want, f"{op.name}: dtype {out.dtype}, expected {want}"
    assert_close(out, expected.astype(want), msg=op.name, **(_TOL[dtype] if op.out == "float" else {}))
    return out


# ------------------------------------------------------------------ the matrix

@pytest.mark.parametrize("op", ALL, ids=repr)
@pytest.mark.parametrize("dtype", [ds.float32, ds.float64], ids=str)
@FAST
@given(data=st.data())
def test_forward(op, dtype, data):
    xs = draw_inputs(data, op.fwd_args or op.args, dtype, max_dims=4, max_side=3)
    check_forward(op, xs, dtype)


@pytest.mark.parametrize("op", DIFF, ids=repr)
@GRAD
@given(data=st.data())
def test_gradcheck(op, data):
    xs = draw_inputs(data, op.args, requires_grad=True)
    assert gradcheck(op.fn, xs)
    if op.grad == "zero":
        out = op.fn(*xs)
        grads = ds.autograd.grad(out, [x for x in xs if x.requires_grad], ds.ones_like(out),
                                 allow_unused=True)
        for g in grads:
            assert g is None or not np.any(g.numpy()), f"{op.name}: gradient should be zero"


@pytest.mark.parametrize("op", GG, ids=repr)
@GRADGRAD
@given(data=st.data())
def test_gradgradcheck(op, data):
    xs = draw_inputs(data, op.args, requires_grad=True, max_dims=2, max_side=3)
    assert gradgradcheck(op.fn, xs)


@pytest.mark.parametrize("op", NONDIFF, ids=repr)
def test_no_gradient(op):
    args = [ds.tensor([True, False]) if a is BOOL else ds.tensor([0.5, 1.5], dtype=ds.float64,
                                                                 requires_grad=True)
            for a in op.args]
    out = op.fn(*args)
    if out.requires_grad:     # PyTorch's floor division: in the graph, with a zero gradient
        grads = ds.autograd.grad(out, [a for a in args if a.requires_grad], ds.ones_like(out),
                                 allow_unused=True)
        assert all(g is None or not np.any(g.numpy()) for g in grads)


@pytest.mark.parametrize("op", [op for op in UNARY + COMPARISONS if hasattr(ds.Tensor, op.name)],
                         ids=repr)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_method_matches_function(op):
    xs = [ds.tensor([0.25, 0.5, 0.75], dtype=ds.float64) if a is not BOOL else
          ds.tensor([True, False, True]) for a in op.args]
    assert_close(getattr(xs[0], op.name)(*xs[1:]), op.fn(*xs))


def test_int_inputs_to_float_ops_give_default_dtype():
    x = ds.tensor([1, 2, 3])
    for f in (ds.sin, ds.exp, ds.sqrt, ds.log, ds.sigmoid, ds.erf, ds.reciprocal):
        assert f(x).dtype == ds.float32
    ds.set_default_dtype(ds.float64)
    assert ds.sin(x).dtype == ds.float64
    assert ds.atan2(x, x).dtype == ds.float64
    assert (x / x).dtype == ds.float64


def test_int_inputs_keep_int_dtype():
    x = ds.tensor([-2, 3], dtype=ds.int32)
    for f in (ds.neg, ds.abs, ds.square, ds.sign):
        assert f(x).dtype == ds.int32
    assert (x * x).dtype == ds.int32
    assert (x // 2).dtype == ds.int32
    assert_close(ds.floor_divide(ds.tensor([-7, 7]), ds.tensor([2, -2])), np.array([-4, -4]))
    assert_close(ds.remainder(ds.tensor([-7, 7]), ds.tensor([2, -2])), np.array([1, -1]))


def test_nan_propagation():
    a = ds.tensor([math.nan, 1.0, math.nan], dtype=ds.float64)
    b = ds.tensor([0.0, math.nan, math.nan], dtype=ds.float64)
    assert np.isnan(ds.maximum(a, b).numpy()).all()
    assert_close(ds.fmax(a, b), np.array([0.0, 1.0, math.nan]))
    assert_close(ds.clamp(a, -1, 1), np.array([math.nan, 1.0, math.nan]))


# ------------------------------------------------------------------ operators with Python scalars

@dataclass
class ScalarOp:
    """``expr(x, s)`` works on a Tensor and on a numpy array alike."""
    name: str
    expr: Callable
    x: object
    s: object
    grad: str = "fd"

    def __repr__(self):
        return self.name


INT_S = st.integers(-3, 3)
NZ_INT = st.sampled_from([-3, -2, -1, 1, 2, 3])
SCALAR_OPS = [
    ScalarOp("x+s", lambda x, s: x + s, R, st.one_of(R, INT_S)),
    ScalarOp("s+x", lambda x, s: s + x, R, st.one_of(R, INT_S)),
    ScalarOp("x-s", lambda x, s: x - s, R, st.one_of(R, INT_S)),
    ScalarOp("s-x", lambda x, s: s - x, R, st.one_of(R, INT_S)),
    ScalarOp("x*s", lambda x, s: x * s, R, st.one_of(R, INT_S)),
    ScalarOp("s*x", lambda x, s: s * x, R, st.one_of(R, INT_S)),
    ScalarOp("x/s", lambda x, s: x / s, R, st.one_of(NZ, NZ_INT)),
    ScalarOp("s/x", lambda x, s: s / x, NZ, st.one_of(R, INT_S)),
    ScalarOp("x**s", lambda x, s: x ** s, POS, dst.floats(-2, 2)),
    ScalarOp("x**int", lambda x, s: x ** s, R, st.integers(0, 3)),
    ScalarOp("x**-int", lambda x, s: x ** s, NZ, st.integers(-3, -1).map(float)),
    ScalarOp("s**x", lambda x, s: s ** x, R, POS),
    ScalarOp("x//s", lambda x, s: x // s, R, NZ, grad="none"),
    ScalarOp("s//x", lambda x, s: s // x, NZ, R, grad="none"),
    ScalarOp("x%s", lambda x, s: x % s, REM_A, REM_B),
    ScalarOp("s%x", lambda x, s: s % x, REM_B, REM_A),
    ScalarOp("-x", lambda x, s: -x, R, st.none()),
    ScalarOp("+x", lambda x, s: +x, R, st.none()),
    ScalarOp("abs(x)", lambda x, s: abs(x), NZ, st.none()),
    ScalarOp("x<s", lambda x, s: x < s, COARSE, COARSE, grad="none"),
    ScalarOp("s<x", lambda x, s: s < x, COARSE, COARSE, grad="none"),
    ScalarOp("s>=x", lambda x, s: s >= x, COARSE, COARSE, grad="none"),
    ScalarOp("x==s", lambda x, s: x == s, COARSE, COARSE, grad="none"),
    ScalarOp("s!=x", lambda x, s: s != x, COARSE, COARSE, grad="none"),
]


@pytest.mark.parametrize("op", SCALAR_OPS, ids=repr)
@pytest.mark.parametrize("dtype", [ds.float32, ds.float64], ids=str)
@FAST
@given(data=st.data())
def test_scalar_operator_forward(op, dtype, data):
    x = data.draw(dst.tensors(shape=dst.shapes(max_dims=3, max_side=4), dtype=dtype, elements=op.x))
    s = data.draw(op.s, label="scalar")
    out = op.expr(x, s)
    # PyTorch computes in the tensor's dtype: a Python float is first rounded to it
    s_ref = float(dtype.type(s)) if isinstance(s, float) else s
    x_ref = x.numpy() if op.grad == "none" else _np64(x)   # floor division: round in-dtype too
    with np.errstate(all="ignore"):
        expected = np.asarray(op.expr(x_ref, s_ref))
    assert out.shape == expected.shape
    if expected.dtype == np.bool_:
        assert out.dtype == ds.bool
        assert_close(out, expected)
    else:
        assert out.dtype == dtype, f"{op.name}: a {dtype} tensor with a Python scalar gave {out.dtype}"
        assert_close(out, expected.astype(dtype), msg=op.name, **_TOL[dtype])


@pytest.mark.parametrize("op", [o for o in SCALAR_OPS if o.grad == "fd"], ids=repr)
@GRAD
@given(data=st.data())
def test_scalar_operator_gradcheck(op, data):
    x = data.draw(dst.tensors(shape=dst.shapes(max_dims=3, max_side=3), elements=op.x,
                              requires_grad=True))
    s = data.draw(op.s, label="scalar")
    assert gradcheck(lambda t: op.expr(t, s), (x,))
    if x.ndim <= 2:
        assert gradgradcheck(lambda t: op.expr(t, s), (x,))


def test_numpy_scalars_and_arrays_as_operands():
    x = ds.tensor([1.0, 2.0], dtype=ds.float32)
    assert (x * np.float64(2.0)).dtype == ds.float32
    assert (np.float64(2.0) * x).dtype == ds.float32
    assert isinstance(np.float64(2.0) * x, ds.Tensor)
    assert_close(x + np.array([1.0, 1.0], dtype=np.float32), np.float32([2.0, 3.0]))


# ------------------------------------------------------------------ type promotion (PyTorch's rules)

f16, f32, f64 = ds.float16, ds.float32, ds.float64
i8, i16, i32, i64, u8, b = ds.int8, ds.int16, ds.int32, ds.int64, ds.uint8, ds.bool


def _operand(spec):
    """``("t", dtype)``: a 1-d tensor; ``("0d", dtype)``: a 0-d tensor; else a Python scalar."""
    if isinstance(spec, tuple):
        kind, dt = spec
        val = [1] if kind == "t" else 1
        return ds.tensor(val, dtype=dt) if dt != b else ds.tensor([True] if kind == "t" else True)
    return spec


DEFAULT = "default"
PROMOTION = [
    (("t", f32), 2.0, f32),
    (("t", f32), 2, f32),
    (("t", i32), 2.5, DEFAULT),
    (("t", i32), 2, i32),
    (("t", i64), ("0d", f64), f64),
    (("t", i32), ("0d", f32), f32),
    (("t", f32), ("0d", f64), f32),
    (("t", f16), ("0d", f64), f16),
    (("t", i32), ("0d", i64), i32),
    (("t", u8), ("t", i8), i16),
    (("t", i32), ("t", i64), i64),
    (("t", f32), ("t", f64), f64),
    (("t", i64), ("t", f16), f16),
    (("t", b), 1, i64),
    (("t", b), True, b),
    (("t", b), 2.5, DEFAULT),
    (("t", b), ("t", i8), i8),
    (("t", b), ("0d", i32), i32),
    (("0d", f32), 2.0, f32),
    (("0d", i32), 2.5, DEFAULT),
    (("0d", f32), ("0d", f64), f64),
    (("0d", i64), ("0d", f16), f16),
    (("t", u8), 3, u8),
]


@pytest.mark.parametrize("default", [f32, f64], ids=str)
@pytest.mark.parametrize("a,b_,want", PROMOTION, ids=[f"{a}-{b_}" for a, b_, _ in PROMOTION])
def test_type_promotion_table(a, b_, want, default):
    ds.set_default_dtype(default)
    want = default if want == DEFAULT else want
    x, y = _operand(a), _operand(b_)
    assert ds.dtypes.result_type(x, y) == want
    assert ds.dtypes.result_type(y, x) == want
    assert (x + y).dtype == want
    assert (y + x).dtype == want
    assert (x * y).dtype == want
    if isinstance(y, ds.Tensor):                  # maximum takes two tensors
        assert ds.maximum(x, y).dtype == want


def test_true_division_of_integers_gives_default_float():
    x = ds.tensor([1, 2], dtype=ds.int32)
    assert (x / 2).dtype == f32
    assert (x / x).dtype == f32
    assert (2 / x).dtype == f32
    assert (x / ds.tensor(2.0, dtype=f64)).dtype == f64
    ds.set_default_dtype(f64)
    assert (x / x).dtype == f64
    assert (x * 2.5).dtype == f64
    assert ds.tensor([1.5]).dtype == f64


_OPERAND = st.one_of(
    st.tuples(st.sampled_from(["t", "0d"]), dst.dtypes(half=True)),
    st.booleans(), st.integers(1, 3), st.sampled_from([0.5, 2.0]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # 1 / False
@settings(max_examples=150, **SETTINGS)
@given(a=st.tuples(st.sampled_from(["t", "0d"]), dst.dtypes(half=True)), b_=_OPERAND,
       default=st.sampled_from([f32, f64]),
       opname=st.sampled_from(["add", "mul", "sub", "div", "maximum", "where", "eq", "lt"]))
def test_type_promotion_against_torch(a, b_, default, opname):
    torch = pytest.importorskip("torch")

    def tt(spec):
        if not isinstance(spec, tuple):
            return spec
        kind, dt = spec
        tdt = torch.bool if dt == b else getattr(torch, dt.name)
        v = [1] if kind == "t" else 1
        return torch.tensor(v, dtype=tdt) if dt != b else torch.tensor([True] if kind == "t" else True)

    x, y = _operand(a), _operand(b_)
    tx, ty = tt(a), tt(b_)
    if opname == "sub" and (x.dtype == b or isinstance(y, bool) or getattr(y, "dtype", None) == b):
        return                                   # PyTorch refuses bool subtraction
    if opname == "maximum" and not isinstance(y, ds.Tensor):
        return
    prev = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, default.name))
    ds.set_default_dtype(default)
    try:
        if opname == "where":
            cond_ds, cond_t = ds.tensor([True]), torch.tensor([True])
            got, want = ds.where(cond_ds, x, y), torch.where(cond_t, tx, ty)
        else:
            got, want = getattr(ds, opname)(x, y), getattr(torch, opname)(tx, ty)
        assert str(want.dtype).replace("torch.", "") == got.dtype.name, (a, b_, opname)
        assert str(torch.result_type(tx, ty)).replace("torch.", "") == ds.dtypes.result_type(x, y).name
        assert_close(got.to(f64), want.double().numpy(), check_dtype=False, rtol=1e-3, atol=1e-3)
    finally:
        torch.set_default_dtype(prev)


def test_float_ops_on_int_tensors_against_torch():
    torch = pytest.importorskip("torch")
    for dt in (u8, i32, i64, b):
        x = _operand(("t", dt))
        tx = torch.tensor([True]) if dt == b else torch.tensor([1], dtype=getattr(torch, dt.name))
        for name in ("sin", "exp", "sqrt", "sigmoid", "abs", "neg", "square"):
            if dt == b and name in ("neg", "square", "abs"):
                continue
            got, want = getattr(ds, name)(x), getattr(torch, name)(tx)
            assert got.dtype.name == str(want.dtype).replace("torch.", ""), (dt, name)
        if dt != b:
            assert ds.atan2(x, x).dtype.name == str(torch.atan2(tx, tx).dtype).replace("torch.", "")


# ------------------------------------------------------------------ in-place forms

@dataclass
class Inplace:
    """``fn(y, o)`` modifies ``y`` in place; ``ref(a, o)`` is the numpy result."""
    name: str
    fn: Callable
    ref: Callable
    y: object
    o: object = None          # elements of a tensor operand broadcastable to y, or None
    scalar: object = None     # strategy of a Python-scalar operand
    grad: bool = True

    def __repr__(self):
        return self.name


INPLACE = [
    Inplace("+= tensor", operator.iadd, np.add, R, o=R),
    Inplace("+= scalar", operator.iadd, np.add, R, scalar=R),
    Inplace("-= tensor", operator.isub, np.subtract, R, o=R),
    Inplace("*= tensor", operator.imul, np.multiply, R, o=R),
    Inplace("*= scalar", operator.imul, np.multiply, R, scalar=INT_S),
    Inplace("/= tensor", operator.itruediv, np.divide, R, o=NZ),
    Inplace("**= scalar", operator.ipow, np.power, POS, scalar=dst.floats(-2, 2)),
    Inplace("add_", lambda y, o: y.add_(o), np.add, R, o=R),
    Inplace("add_ alpha", lambda y, o: y.add_(o, alpha=2.0), lambda a, o: a + 2.0 * o, R, o=R),
    Inplace("sub_", lambda y, o: y.sub_(o), np.subtract, R, o=R),
    Inplace("mul_", lambda y, o: y.mul_(o), np.multiply, R, o=R),
    Inplace("mul_ scalar", lambda y, o: y.mul_(o), np.multiply, R, scalar=R),
    Inplace("div_", lambda y, o: y.div_(o), np.divide, R, o=NZ),
    Inplace("pow_", lambda y, o: y.pow_(o), np.power, POS, scalar=dst.floats(-2, 2)),
    Inplace("clamp_ scalar", lambda y, o: y.clamp_(-0.5, 0.5), lambda a, o: np.clip(a, -0.5, 0.5),
            OFFGRID),
    Inplace("clamp_ tensor min", lambda y, o: y.clamp_(min=o), np.maximum, OFFGRID, o=GRID),
    Inplace("clip_", lambda y, o: y.clip_(max=0.5), lambda a, o: np.minimum(a, 0.5), OFFGRID),
    Inplace("zero_", lambda y, o: y.zero_(), lambda a, o: np.zeros_like(a), R),
    Inplace("fill_ scalar", lambda y, o: y.fill_(o), lambda a, o: np.full_like(a, o), R, scalar=R),
    Inplace("fill_ 0-d tensor", lambda y, o: y.fill_(o.sum()), lambda a, o: np.full_like(a, o.sum()),
            R, o=R),
    Inplace("copy_", lambda y, o: y.copy_(o), lambda a, o: np.broadcast_to(o, a.shape).copy(), R, o=R),
    Inplace("neg_", lambda y, o: y.neg_(), np.negative, R),
    Inplace("exp_", lambda y, o: y.exp_(), np.exp, R),
    Inplace("sqrt_", lambda y, o: y.sqrt_(), np.sqrt, POS),
    Inplace("sigmoid_", lambda y, o: y.sigmoid_(), lambda a, o: 1 / (1 + np.exp(-a)), R),
    Inplace("tanh_", lambda y, o: y.tanh_(), np.tanh, R),
    Inplace("reciprocal_", lambda y, o: y.reciprocal_(), np.reciprocal, NZ),
    Inplace("floor_", lambda y, o: y.floor_(), np.floor, QUARTER),
    Inplace("lerp_", lambda y, o: y.lerp_(o, 0.25), lambda a, o: a + 0.25 * (o - a), R, o=R),
    Inplace("maximum_", lambda y, o: y.maximum_(o), np.maximum, OFFGRID, o=GRID),
]


def _shapes_broadcasting_to(shape):
    """Shapes that broadcast *to* ``shape`` (trailing dims of it, some set to 1)."""
    return st.integers(0, len(shape)).flatmap(lambda k: st.tuples(
        *[st.sampled_from([s, 1]) for s in shape[len(shape) - k:]]))


def _draw_inplace(data, row, dtype=f64, requires_grad=False, max_side=3):
    y_shape = data.draw(dst.shapes(max_dims=3, max_side=max_side), label="y shape")
    y = data.draw(dst.tensors(shape=y_shape, dtype=dtype, elements=row.y, requires_grad=requires_grad))
    if row.o is not None:
        o_shape = data.draw(_shapes_broadcasting_to(y_shape), label="o shape")
        o = data.draw(dst.tensors(shape=o_shape, dtype=dtype, elements=row.o,
                                  requires_grad=requires_grad))
    elif row.scalar is not None:
        o = data.draw(row.scalar, label="scalar")
    else:
        o = None
    return y, o


def _ref_operand(o):
    return _np64(o) if isinstance(o, ds.Tensor) else o


@pytest.mark.parametrize("row", INPLACE, ids=repr)
@pytest.mark.parametrize("grad_mode", [False, True], ids=["no_grad", "recorded"])
@FAST
@given(data=st.data())
def test_inplace_forward(row, grad_mode, data):
    y, o = _draw_inplace(data, row, requires_grad=grad_mode)
    expected = np.asarray(row.ref(_np64(y), _ref_operand(o))).astype(np.float64)
    target = y * 1 if grad_mode else y.clone()          # a non-leaf when recording
    before = target._version_count
    res = row.fn(target, o)
    assert res is target, f"{row.name} must return self"
    assert target.shape == y.shape and target.dtype == y.dtype
    assert target._version_count > before
    assert_close(target, expected, **_TOL[f64])
    assert target.requires_grad == (grad_mode and row.grad)


@pytest.mark.parametrize("row", INPLACE, ids=repr)
@GRAD
@given(data=st.data())
def test_inplace_gradcheck(row, data):
    y, o = _draw_inplace(data, row, requires_grad=True)
    inputs = (y, o) if isinstance(o, ds.Tensor) else (y,)

    def f(yy, oo=o):
        return row.fn(yy * 1, oo)
    assert gradcheck(f, inputs)


def test_inplace_float32_with_float64_operand_stays_float32():
    x = ds.tensor([1.0, 2.0], dtype=f32)
    x += ds.tensor([0.5, 0.5], dtype=f64)
    x.mul_(ds.tensor(2.0, dtype=f64))
    assert x.dtype == f32
    assert_close(x, np.float32([3.0, 5.0]))


@pytest.mark.parametrize("requires_grad", [False, True])
def test_inplace_result_type_errors(requires_grad):
    x = ds.tensor([1, 2])
    with pytest.raises(RuntimeError, match="add_"):
        x.add_(2.5)
    with pytest.raises(RuntimeError, match="mul_"):
        x.mul_(ds.tensor([1.5, 2.0], requires_grad=requires_grad))
    with pytest.raises(RuntimeError, match="add_"):
        ds.tensor([True]).add_(1)
    assert_close(x, np.array([1, 2]))


@pytest.mark.parametrize("requires_grad", [False, True])
def test_inplace_broadcast_shape_error(requires_grad):
    y = ds.zeros(3, dtype=f64)
    other = ds.ones(2, 3, dtype=f64, requires_grad=requires_grad)
    with pytest.raises(RuntimeError, match="add_"):
        y.add_(other)


def test_inplace_on_leaf_requiring_grad_raises_and_no_grad_allows():
    w = ds.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        w.add_(1.0)
    with ds.no_grad():
        w.add_(1.0)
        w.mul_(2.0)
        w.zero_()
    assert w.requires_grad and w.grad_fn is None
    assert_close(w, np.float32([0.0, 0.0]))


def test_inplace_through_a_view_changes_the_base():
    base = ds.zeros(2, 3, dtype=f64)
    v = base.view(6)
    v.add_(1.0)
    v.mul_(ds.arange(6).to(f64))
    assert_close(base, np.arange(6.0).reshape(2, 3))
    assert base._version_count == v._version_count


def test_modifying_a_saved_tensor_in_place_is_detected():
    x = ds.tensor([0.5, 1.0], dtype=f64, requires_grad=True)
    y = x * 1
    z = y.sin()
    y.add_(1.0)
    with pytest.raises(RuntimeError):
        z.sum().backward()


def test_inplace_gradient_flows_through_chain():
    x = ds.tensor([0.5, -1.0, 2.0], dtype=f64, requires_grad=True)
    s = ds.tensor(3.0, dtype=f64, requires_grad=True)
    y = x * 1
    y.mul_(s)
    y += x
    y.clamp_(-2.0, 4.0)
    y.sum().backward()
    # y = clamp(x*s + x, -2, 4), x*(s+1) = [2, -4, 8]: only the first is inside (-2, 4)
    assert_close(x.grad, np.array([4.0, 0.0, 0.0]))
    assert_close(s.grad, np.array(0.5))


# ------------------------------------------------------------------ against PyTorch

def _torch_fns(torch):
    return {
        "exp": torch.exp, "log1p": torch.log1p, "rsqrt": torch.rsqrt, "tan": torch.tan,
        "acosh": torch.acosh, "sigmoid": torch.sigmoid, "logit": torch.logit,
        "logit_eps": lambda x: torch.logit(x, eps=0.2), "erfc": torch.erfc,
        "round": torch.round, "nan_to_num": torch.nan_to_num,
        "clamp_scalar": lambda x: torch.clamp(x, -0.5, 0.5),
        "div": torch.div, "remainder": torch.remainder, "pow": torch.pow, "atan2": torch.atan2,
        "hypot": torch.hypot, "maximum": torch.maximum, "fmin": torch.fmin, "lerp": torch.lerp,
        "where": torch.where, "clamp_tensor": torch.clamp, "clamp_crossed_bounds": torch.clamp,
        "div_floor": lambda a, b: torch.div(a, b, rounding_mode="floor"),
    }


TORCH_SUBSET = ["exp", "log1p", "rsqrt", "tan", "acosh", "sigmoid", "logit", "logit_eps", "erfc",
                "round", "nan_to_num", "clamp_scalar", "div", "remainder", "pow", "atan2", "hypot",
                "maximum", "fmin", "lerp", "where", "clamp_tensor", "clamp_crossed_bounds",
                "div_floor"]


@pytest.mark.parametrize("name", TORCH_SUBSET)
@GRAD
@given(data=st.data())
def test_against_torch(name, data):
    torch = pytest.importorskip("torch")
    op = {o.name: o for o in ALL}[name]
    xs = draw_inputs(data, op.args, requires_grad=op.grad != "none", min_side=1)
    if name.startswith("clamp_"):
        # PyTorch's clamp backward fails for a 0-d input with broadcast bounds: same shapes
        shape = np.broadcast_shapes(*[x.shape for x in xs])
        xs = [ds.tensor(np.broadcast_to(x.detach().numpy(), shape), requires_grad=True) for x in xs]
    txs = [torch.tensor(x.detach().numpy(), requires_grad=x.requires_grad) for x in xs]
    out, tout = op.fn(*xs), _torch_fns(torch)[name](*txs)
    assert_close(out, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    if op.grad == "none" or not out.requires_grad:
        return
    v = np.random.default_rng(0).standard_normal(out.shape)
    diff = [x for x in xs if x.requires_grad]
    grads = ds.autograd.grad(out, diff, ds.tensor(v), allow_unused=True)
    tdiff = [t for t in txs if t.requires_grad]
    tgrads = torch.autograd.grad(tout, tdiff, torch.tensor(v), allow_unused=True)
    for g, tg, x in zip(grads, tgrads, diff):
        g = np.zeros(x.shape) if g is None else g.numpy()
        tg = np.zeros(x.shape) if tg is None else tg.numpy()
        assert_close(g, tg, rtol=1e-9, atol=1e-12, msg=f"{name} gradient")


# ------------------------------------------------------------------ the testing kit itself

@FAST
@given(data=st.data())
def test_strategies_respect_their_bounds(data):
    shape = data.draw(dst.shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    assert 1 <= len(shape) <= 3 and all(1 <= s <= 4 for s in shape)
    dt = data.draw(dst.dtypes(half=True))
    t = data.draw(dst.tensors(shape=dst.shapes(max_dims=2), dtype=dt))
    assert isinstance(t, ds.Tensor) and t.dtype == dt and not t.requires_grad
    if dt.kind != "b" and t.numel():
        assert np.all(np.abs(t.numpy().astype(np.float64)) <= 10)
    x = data.draw(dst.tensors(shape=(3, 2), dtype=ds.float32, elements=dst.floats(0.5, 1.0),
                              requires_grad=True))
    assert x.shape == (3, 2) and x.dtype == ds.float32 and x.requires_grad
    assert np.all((x.detach().numpy() >= 0.5) & (x.detach().numpy() <= 1.0))
    u = data.draw(dst.tensors(shape=(6,), elements=dst.spaced_floats(-1, 1, 0.25), unique=True))
    assert np.min(np.diff(np.sort(u.numpy()))) >= 0.25 - 1e-12
    k = data.draw(dst.floats(-1, 1, away_from=[0, 0.5], margin=0.1))
    assert abs(k) >= 0.1 and abs(k - 0.5) >= 0.1
    s = data.draw(dst.broadcastable_shapes((3, 1), max_dims=3))
    assert len(np.broadcast_shapes((3, 1), s)) >= 2
    assert data.draw(dst.dtypes(integer=False, boolean=False)) in (ds.float32, ds.float64)


def test_strategies_reject_bad_arguments():
    with pytest.raises(ValueError, match="floating"):
        dst.tensors(dtype=ds.int64, requires_grad=True)
    with pytest.raises(ValueError, match="max_dims"):
        dst.shapes(min_dims=3, max_dims=2)
    with pytest.raises(ValueError, match="kind"):
        dst.dtypes(floating=False, integer=False, boolean=False)
    with pytest.raises(ValueError, match="grid"):
        dst.spaced_floats(0.1, 0.2, 1.0)


def test_assert_close():
    assert_close(ds.tensor([1.0, math.nan]), np.float32([1.0, math.nan]))
    assert_close(ds.tensor([1.0]), np.array([1.0 + 1e-9]), check_dtype=False)
    with pytest.raises(AssertionError, match="dtype"):
        assert_close(ds.tensor([1.0]), np.array([1.0]))
    with pytest.raises(AssertionError, match="shape"):
        assert_close(ds.tensor([1.0]), np.float32([1.0, 1.0]))
    with pytest.raises(AssertionError, match="1 of 2 elements differ"):
        assert_close(ds.tensor([1.0, 2.0]), np.float32([1.0, 2.1]))
    with pytest.raises(AssertionError):
        assert_close(ds.tensor([math.inf]), np.float32([-math.inf]))
    with pytest.raises(AssertionError):
        assert_close(ds.tensor([3]), np.array([4]))


# ------------------------------------------------------------------ regressions (review)

def test_fill_with_tensor_value_checks_leaf_and_value_shape():
    x = ds.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        x.fill_(ds.tensor(2.0))
    y = ds.zeros(3)
    with pytest.raises(RuntimeError, match="0-dimensional value"):
        y.fill_(ds.ones(3))
    v = ds.tensor(2.0, dtype=ds.float64, requires_grad=True)
    z = ds.zeros(3, dtype=ds.float64)
    z.fill_(v)
    z.sum().backward()
    assert z.tolist() == [2.0, 2.0, 2.0] and v.grad.item() == 3.0
