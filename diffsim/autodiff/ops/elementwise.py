"""Elementwise ops: arithmetic, math functions, comparisons, casts. Each op's forward and
backward rule sit side by side; broadcasting gradients are reduced by the engine."""
from __future__ import annotations

import builtins as _builtins
import math
import numbers

import numpy as np

from .. import dtypes
from ..backend import get_xp, move
from ..function import apply, defop
from ..tensor import Tensor
from ._util import as_tensor_arg, check_tensor, float_result, method

_LN2, _LN10 = math.log(2.0), math.log(10.0)
_float, _int, _bool = float, int, bool


# ------------------------------------------------------------------ promotion for binary ops

def _promote(opname, a, b):
    """Cast Tensor operands (and fix scalars) so that numpy computes PyTorch's result dtype."""
    if isinstance(a, np.generic):
        a = a.item()
    if isinstance(b, np.generic):
        b = b.item()
    if not isinstance(a, (Tensor, numbers.Number)):
        a = as_tensor_arg(a, opname, b if isinstance(b, Tensor) else None)
    if not isinstance(b, (Tensor, numbers.Number)):
        b = as_tensor_arg(b, opname, a if isinstance(a, Tensor) else None)
    rt = dtypes.result_type(a, b)
    if isinstance(a, Tensor) and a._data.dtype != rt:
        a = astype(a, rt)
    if isinstance(b, Tensor) and b._data.dtype != rt:
        b = astype(b, rt)
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError(f"{opname}: expected at least one Tensor argument")
    return a, b


def _binary(op, name=None):
    """Wrap a binary OpDef: fast path for equal dtypes and same-category scalars."""
    def f(a, b):
        ta, tb = type(a), type(b)
        if ta is Tensor:
            da = a._data.dtype
            if tb is Tensor:
                if da is b._data.dtype or da == b._data.dtype:
                    return apply(op, (a, b))
            elif tb is _float:
                if da.kind == "f":
                    return apply(op, (a, b))
            elif tb is _int:
                if da.kind in "fiu":
                    return apply(op, (a, b))
        elif tb is Tensor:
            db = b._data.dtype
            if ta is _float:
                if db.kind == "f":
                    return apply(op, (a, b))
            elif ta is _int and db.kind in "fiu":
                return apply(op, (a, b))
        a, b = _promote(op.name, a, b)
        return apply(op, (a, b))
    f.__name__ = name or op.name
    return f


def _save_other(edges, args):
    """mul-like: input i is needed only for the other input's gradient."""
    return (0 if edges[1] is not None else -1, 1 if edges[0] is not None else -1)


# ------------------------------------------------------------------ arithmetic

_add = defop("add", lambda a, b: a + b, broadcast=True)
_add.defvjp(lambda ns, n, g: (g, g))
_sub = defop("sub", lambda a, b: a - b, broadcast=True)
_sub.defvjp(lambda ns, n, g: (g, -g))
_mul = defop("mul", lambda a, b: a * b, broadcast=True, save=_save_other)
_mul.defvjp(lambda ns, n, g, a, b: (None if b is None else g * b, None if a is None else g * a))
_div = defop("div", lambda a, b: a / b, broadcast=True, save=(1,), save_output=True)
_div.defvjp(lambda ns, n, g, b, out: (g / b, -g * out / b))


def _pow_fwd(a, b):
    return a ** b


_pow = defop("pow", _pow_fwd, broadcast=True, save=(0, 1), save_output=True)


@_pow.defvjp
def _(ns, n, g, a, b, out):
    e = n.edges
    ga = gb = None
    if e[0] is not None:
        # d(a**0)/da is 0 also at a == 0 (where b * a**(b-1) would be 0 * inf)
        if isinstance(b, numbers.Number):
            ga = 0 * g if b == 0 else g * b * a ** (b - 1)
        else:
            ga = ns.where((b == 0) & (a == 0), 0 * g, g * b * a ** (b - 1))
    if e[1] is not None:
        if isinstance(a, numbers.Number):       # scalar base: s ** x
            gb = g * out * math.log(a) if a > 0 else (0 * g if a == 0 else g * out * math.nan)
        else:
            safe = ns.where(a > 0, a, 1)
            gb = ns.where(a > 0, g * out * ns.log(safe), 0 * g)
    return ga, gb


_atan2 = defop("atan2", lambda y, x: get_xp(y if hasattr(y, "dtype") else x).arctan2(y, x),
               broadcast=True, save=(0, 1))


@_atan2.defvjp
def _(ns, n, g, y, x):
    r = x * x + y * y
    return g * x / r, -g * y / r


_remainder = defop("remainder", lambda a, b: np.remainder(a, b), broadcast=True, save=(0, 1))
_remainder.defvjp(lambda ns, n, g, a, b: (g, -g * ns.floor(a / b)))
_hypot = defop("hypot", lambda a, b: np.hypot(a, b), broadcast=True, save=(0, 1), save_output=True)
_hypot.defvjp(lambda ns, n, g, a, b, out: (g * a / out, g * b / out))


def _minmax_bwd(pick_a):
    def bwd(ns, n, g, a, b):
        ga = ns.where(a == b, g * 0.5, ns.where(pick_a(a, b), g, 0 * g))
        return ga, g - ga
    return bwd


_maximum = defop("maximum", lambda a, b: np.maximum(a, b), broadcast=True, save=(0, 1))
_maximum.defvjp(_minmax_bwd(lambda a, b: a > b))
_minimum = defop("minimum", lambda a, b: np.minimum(a, b), broadcast=True, save=(0, 1))
_minimum.defvjp(_minmax_bwd(lambda a, b: a < b))
_fmax = defop("fmax", lambda a, b: np.fmax(a, b), broadcast=True, save=(0, 1), save_output=True)
_fmax.defvjp(lambda ns, n, g, a, b, out: (ns.where(out == a, g, 0 * g), ns.where(out == a, 0 * g, g)))
_fmin = defop("fmin", lambda a, b: np.fmin(a, b), broadcast=True, save=(0, 1), save_output=True)
_fmin.defvjp(lambda ns, n, g, a, b, out: (ns.where(out == a, g, 0 * g), ns.where(out == a, 0 * g, g)))

add = _binary(_add, "add")
sub = _binary(_sub, "sub")
mul = _binary(_mul, "mul")
_div_b = _binary(_div, "div")
pow = _binary(_pow, "pow")  # noqa: A001
_atan2_b = _binary(_atan2, "atan2")
remainder = _binary(_remainder, "remainder")
hypot = _binary(_hypot, "hypot")
maximum = _binary(_maximum, "maximum")
minimum = _binary(_minimum, "minimum")
fmax = _binary(_fmax, "fmax")
fmin = _binary(_fmin, "fmin")


def atan2(input, other):  # noqa: A002
    """Elementwise angle of the point ``(other, input)``, in ``[-pi, pi]``, with broadcasting.
    Integer and bool inputs give the default float dtype, as in PyTorch."""
    a, b = _promote("atan2", input, other)
    if (a if isinstance(a, Tensor) else b)._data.dtype.kind != "f":
        a = float_result(a) if isinstance(a, Tensor) else _float(a)
        b = float_result(b) if isinstance(b, Tensor) else _float(b)
    return apply(_atan2, (a, b))


arctan2 = atan2


def add(a, b, alpha=1, _f=add):  # noqa: F811
    """``a + alpha * b`` with broadcasting. Shapes: any broadcastable pair."""
    return _f(a, b if alpha == 1 else b * alpha)


def sub(a, b, alpha=1, _f=sub):  # noqa: F811
    """``a - alpha * b`` with broadcasting."""
    return _f(a, b if alpha == 1 else b * alpha)


subtract, multiply = sub, mul


def div(a, b, rounding_mode=None):
    """True division (``rounding_mode=None``), or ``"floor"``/``"trunc"`` (no gradient).
    Integer inputs give the default float dtype, as in PyTorch."""
    if rounding_mode == "floor":
        return floor_divide(a, b)
    if rounding_mode == "trunc":
        return trunc(div(a, b))
    if rounding_mode is not None:
        raise ValueError(f"div: rounding_mode must be None, 'floor' or 'trunc', got {rounding_mode!r}")
    if isinstance(a, Tensor) and a._data.dtype.kind != "f" and not (
            isinstance(b, Tensor) and b._data.dtype.kind == "f") and not isinstance(b, _float):
        a = astype(a, dtypes.get_default_dtype())
    elif isinstance(b, Tensor) and b._data.dtype.kind != "f" and not (
            isinstance(a, Tensor) and a._data.dtype.kind == "f") and not isinstance(a, _float):
        b = astype(b, dtypes.get_default_dtype())
    return _div_b(a, b)


true_divide = divide = div

_floor_divide = defop("floor_divide", lambda a, b: np.floor_divide(a, b), differentiable=False)
floor_divide = _binary(_floor_divide, "floor_divide")


# ------------------------------------------------------------------ unary math

def _unary(name, fwd, bwd, save=(0,), save_output=False, float_only=True, doc=None):
    op = defop(name, fwd, save=save, save_output=save_output)
    op.defvjp(bwd)

    def f(x):
        if type(x) is not Tensor:
            x = check_tensor(x, name)
        if float_only and x._data.dtype.kind != "f":
            x = float_result(x)
        return apply(op, (x,))
    f.__name__ = name
    f.__doc__ = doc or f"Elementwise ``{name}``. Shape: same as input."
    setattr(Tensor, name, f)
    return f


neg = _unary("neg", lambda x: -x, lambda ns, n, g: (-g,), save=(), float_only=False)
negative = neg
abs = _unary("abs", lambda x: np.abs(x), lambda ns, n, g, x: (g * ns.sign(x),), float_only=False)  # noqa: A001
absolute = abs
exp = _unary("exp", lambda x: np.exp(x), lambda ns, n, g, out: (g * out,), save=(), save_output=True)
exp2 = _unary("exp2", lambda x: np.exp2(x), lambda ns, n, g, out: (g * out * _LN2,), save=(),
              save_output=True)
expm1 = _unary("expm1", lambda x: np.expm1(x), lambda ns, n, g, out: (g * (out + 1),), save=(),
               save_output=True)
log = _unary("log", lambda x: np.log(x), lambda ns, n, g, x: (g / x,))
log2 = _unary("log2", lambda x: np.log2(x), lambda ns, n, g, x: (g / (x * _LN2),))
log10 = _unary("log10", lambda x: np.log10(x), lambda ns, n, g, x: (g / (x * _LN10),))
log1p = _unary("log1p", lambda x: np.log1p(x), lambda ns, n, g, x: (g / (x + 1),))
sqrt = _unary("sqrt", lambda x: np.sqrt(x), lambda ns, n, g, out: (g / (2 * out),), save=(),
              save_output=True)
rsqrt = _unary("rsqrt", lambda x: 1 / np.sqrt(x), lambda ns, n, g, out: (-0.5 * g * out * out * out,),
               save=(), save_output=True)
square = _unary("square", lambda x: x * x, lambda ns, n, g, x: (2 * g * x,), float_only=False)
sin = _unary("sin", lambda x: np.sin(x), lambda ns, n, g, x: (g * ns.cos(x),))
cos = _unary("cos", lambda x: np.cos(x), lambda ns, n, g, x: (-g * ns.sin(x),))
tan = _unary("tan", lambda x: np.tan(x), lambda ns, n, g, out: (g * (1 + out * out),), save=(),
             save_output=True)
asin = _unary("asin", lambda x: np.arcsin(x), lambda ns, n, g, x: (g / ns.sqrt(1 - x * x),))
acos = _unary("acos", lambda x: np.arccos(x), lambda ns, n, g, x: (-g / ns.sqrt(1 - x * x),))
atan = _unary("atan", lambda x: np.arctan(x), lambda ns, n, g, x: (g / (1 + x * x),))
sinh = _unary("sinh", lambda x: np.sinh(x), lambda ns, n, g, x: (g * ns.cosh(x),))
cosh = _unary("cosh", lambda x: np.cosh(x), lambda ns, n, g, x: (g * ns.sinh(x),))
tanh = _unary("tanh", lambda x: np.tanh(x), lambda ns, n, g, out: (g * (1 - out * out),), save=(),
              save_output=True)
asinh = _unary("asinh", lambda x: np.arcsinh(x), lambda ns, n, g, x: (g / ns.sqrt(x * x + 1),))
acosh = _unary("acosh", lambda x: np.arccosh(x), lambda ns, n, g, x: (g / ns.sqrt(x * x - 1),))
atanh = _unary("atanh", lambda x: np.arctanh(x), lambda ns, n, g, x: (g / (1 - x * x),))
arcsin, arccos, arctan, arcsinh, arccosh, arctanh = asin, acos, atan, asinh, acosh, atanh


def _sigmoid_fwd(x):
    # stable for large |x|: exp of a non-positive number only
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


sigmoid = _unary("sigmoid", _sigmoid_fwd, lambda ns, n, g, out: (g * out * (1 - out),), save=(),
                 save_output=True)
relu = _unary("relu", lambda x: np.maximum(x, 0), lambda ns, n, g, out: (g * (out > 0),),
              save=(), save_output=True, float_only=False)
reciprocal = _unary("reciprocal", lambda x: 1 / x, lambda ns, n, g, out: (-g * out * out,), save=(),
                    save_output=True)


def _special(name):
    def fwd(x):
        if type(x) is np.ndarray:
            import scipy.special
            return getattr(scipy.special, name)(x)
        import cupyx.scipy.special
        return getattr(cupyx.scipy.special, name)(x)
    return fwd


_2_SQRT_PI = 2 / math.sqrt(math.pi)
erf = _unary("erf", _special("erf"), lambda ns, n, g, x: (g * _2_SQRT_PI * ns.exp(-x * x),))
erfc = _unary("erfc", _special("erfc"), lambda ns, n, g, x: (-g * _2_SQRT_PI * ns.exp(-x * x),))

_logit = defop("logit", lambda x, eps=None: np.log(_clip_eps(x, eps) / (1 - _clip_eps(x, eps))),
               save=(0,))


def _clip_eps(x, eps):
    return x if eps is None else np.clip(x, eps, 1 - eps)


@_logit.defvjp
def _(ns, n, g, x):
    eps = n.attrs.get("eps")
    d = g / (x * (1 - x))
    if eps is None:
        return (d,)
    return (ns.where((x < eps) | (x > 1 - eps), 0 * g, d),)


@method()
def logit(x, eps=None):
    """``log(x / (1 - x))``, with ``x`` clamped to ``[eps, 1 - eps]`` when ``eps`` is given."""
    return apply(_logit, (float_result(check_tensor(x, "logit")),), {"eps": eps} if eps is not None else {})


def _zero_grad_unary(name, fwd):
    op = defop(name, fwd)
    op.defvjp(lambda ns, n, g: (ns.zeros_like(g),))

    def f(x):
        return apply(op, (check_tensor(x, name),))
    f.__name__ = name
    f.__doc__ = f"Elementwise ``{name}``; its gradient is zero almost everywhere."
    setattr(Tensor, name, f)
    return f


sign = _zero_grad_unary("sign", lambda x: np.sign(x))
floor = _zero_grad_unary("floor", lambda x: np.floor(x))
ceil = _zero_grad_unary("ceil", lambda x: np.ceil(x))
trunc = _zero_grad_unary("trunc", lambda x: np.trunc(x))
fix = trunc
_round = defop("round", lambda x, decimals=0: np.round(x, decimals))
_round.defvjp(lambda ns, n, g: (ns.zeros_like(g),))


@method()
def round(x, decimals=0):  # noqa: A001
    """Round half to even (as PyTorch), to ``decimals`` places; zero gradient."""
    return apply(_round, (check_tensor(x, "round"),), {"decimals": decimals} if decimals else {})


_nan_to_num = defop("nan_to_num", lambda x, nan=0.0, posinf=None, neginf=None:
                    np.nan_to_num(x, nan=nan, posinf=posinf, neginf=neginf), save=(0,))
_nan_to_num.defvjp(lambda ns, n, g, x: (ns.where(ns.isfinite(x), g, 0 * g),))


@method()
def nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    """Replace NaN/+Inf/-Inf; the gradient is zero at replaced entries."""
    return apply(_nan_to_num, (check_tensor(x, "nan_to_num"),),
                 {"nan": nan, "posinf": posinf, "neginf": neginf})


# ------------------------------------------------------------------ clamp, where, lerp

_clamp = defop("clamp", lambda x, lo, hi: np.clip(x, lo, hi), save=(0, 1, 2), broadcast=True)


@_clamp.defvjp
def _(ns, n, g, x, lo, hi):
    zero = 0 * g
    below = (x < lo) if lo is not None else None
    above = (x > hi) if hi is not None else None
    if below is not None and above is not None:
        # out = min(max(x, lo), hi): where lo > hi the output is hi, whatever x is
        above = above | (lo > hi)
        below = below & ~above
    gx = g
    if below is not None:
        gx = ns.where(below, zero, gx)
    if above is not None:
        gx = ns.where(above, zero, gx)
    glo = ns.where(below, g, zero) if below is not None and n.edges[1] is not None else None
    ghi = ns.where(above, g, zero) if above is not None and n.edges[2] is not None else None
    return gx, glo, ghi


@method("clamp", "clip")
def clamp(x, min=None, max=None):  # noqa: A002
    """Clamp to ``[min, max]`` (either may be None, a number or a broadcastable Tensor).
    The gradient flows to ``x`` inside the range and to a Tensor bound where it is active."""
    x = check_tensor(x, "clamp")
    if min is None and max is None:
        raise ValueError("clamp: at least one of 'min' or 'max' must not be None")
    for bound in (min, max):            # promote x as x + bound would be
        if isinstance(bound, Tensor):
            rt = dtypes.result_type(x, bound)
            if x._data.dtype != rt:
                x = astype(x, rt)
        elif isinstance(bound, _float):
            x = float_result(x)
    lo = astype(min, x._data.dtype) if isinstance(min, Tensor) else min
    hi = astype(max, x._data.dtype) if isinstance(max, Tensor) else max
    return apply(_clamp, (x, lo, hi))


clip = clamp

_where = defop("where", lambda c, a, b: np.where(c, a, b), broadcast=True, save=(0,))


@_where.defvjp
def _(ns, n, g, c):
    zero = 0 * g
    return None, ns.where(c, g, zero), ns.where(c, zero, g)


def where(condition, input=None, other=None):  # noqa: A002
    """``input`` where ``condition`` else ``other`` (broadcasting); ``where(c)`` is ``nonzero(c, as_tuple=True)``."""
    if input is None and other is None:
        from .indexing import nonzero
        return nonzero(condition, as_tuple=True)
    c = as_tensor_arg(condition, "where")
    if c._data.dtype.kind != "b":
        raise TypeError(f"where: condition must be a bool tensor, got dtype {c.dtype}")
    a, b = input, other
    if not isinstance(a, Tensor) or not isinstance(b, Tensor) or a._data.dtype != b._data.dtype:
        a, b = _promote("where", a, b)
        like = a if isinstance(a, Tensor) else b
        if not isinstance(a, Tensor):
            a = _scalar_like(a, like)
        if not isinstance(b, Tensor):
            b = _scalar_like(b, like)
    return apply(_where, (c, a, b))


def _scalar_like(v, like):
    return Tensor._make(get_xp(like._data).asarray(v, dtype=like._data.dtype), False, None, 0)


Tensor.where = lambda self, condition, other: where(condition, self, other)

_lerp = defop("lerp", lambda s, e, w: s + w * (e - s), broadcast=True, save=(0, 1, 2))
_lerp.defvjp(lambda ns, n, g, s, e, w: (g * (1 - w), g * w,
                                        g * (e - s) if n.edges[2] is not None else None))


@method()
def lerp(input, end, weight):  # noqa: A002
    """``input + weight * (end - input)``; ``weight`` a number or Tensor."""
    return apply(_lerp, (input, end, weight))


# ------------------------------------------------------------------ predicates and comparisons

def _nondiff(name, fwd, nargs=1):
    op = defop(name, fwd, differentiable=False)
    if nargs == 1:
        def f(x):
            return apply(op, (check_tensor(x, name),))
    else:
        f = _binary(op, name)
    f.__name__ = name
    f.__doc__ = f"Elementwise ``{name}``; bool result, not differentiable."
    return f


isnan = _nondiff("isnan", lambda x: np.isnan(x))
isinf = _nondiff("isinf", lambda x: np.isinf(x))
isfinite = _nondiff("isfinite", lambda x: np.isfinite(x))
logical_not = _nondiff("logical_not", lambda x: np.logical_not(x))
eq = _nondiff("eq", lambda a, b: a == b, 2)
ne = _nondiff("ne", lambda a, b: a != b, 2)
lt = _nondiff("lt", lambda a, b: a < b, 2)
le = _nondiff("le", lambda a, b: a <= b, 2)
gt = _nondiff("gt", lambda a, b: a > b, 2)
ge = _nondiff("ge", lambda a, b: a >= b, 2)
logical_and = _nondiff("logical_and", lambda a, b: np.logical_and(a, b), 2)
logical_or = _nondiff("logical_or", lambda a, b: np.logical_or(a, b), 2)
logical_xor = _nondiff("logical_xor", lambda a, b: np.logical_xor(a, b), 2)
bitwise_and = _nondiff("bitwise_and", lambda a, b: a & b, 2)
bitwise_or = _nondiff("bitwise_or", lambda a, b: a | b, 2)
bitwise_xor = _nondiff("bitwise_xor", lambda a, b: a ^ b, 2)
bitwise_not = _nondiff("bitwise_not", lambda x: ~x)
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne

for _n in ("isnan", "isinf", "isfinite", "logical_not", "eq", "ne", "lt", "le", "gt", "ge",
           "logical_and", "logical_or", "logical_xor", "bitwise_not"):
    setattr(Tensor, _n, globals()[_n])


def equal(a, b):
    """True if both tensors have the same shape and values."""
    return a.shape == b.shape and bool((a._data == b._data).all())


def allclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
    """True if all elements are close (numpy semantics)."""
    return bool(get_xp(a._data).allclose(a._data, b._data, rtol=rtol, atol=atol, equal_nan=equal_nan))


def isclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
    return Tensor._make(get_xp(a._data).isclose(a._data, b._data, rtol=rtol, atol=atol,
                                                equal_nan=equal_nan), False, None, 0)


Tensor.equal = equal
Tensor.allclose = allclose
Tensor.isclose = isclose

# ------------------------------------------------------------------ casts and device moves

_astype = defop("astype", lambda x, dtype, src: x.astype(dtype))


@_astype.defvjp
def _(ns, n, g):
    src = n.attrs["src"]
    return (ns.astype(g, src),)


def astype(x, dtype):
    """Differentiable dtype cast (gradients are cast back to the source dtype)."""
    dtype = dtypes.as_dtype(dtype)
    return apply(_astype, (x,), {"dtype": dtype, "src": x._data.dtype}) if x._data.dtype != dtype else x



_to_device = defop("to_device", lambda x, device, src: move(x, device))
_to_device.defvjp(lambda ns, n, g: (ns.to_device(g, n.attrs["src"]),))


def to_device(x, device):
    """Differentiable copy to ``device`` (gradients flow back to the source device)."""
    return apply(_to_device, (x,), {"device": device, "src": x.device})


_clone = defop("clone", lambda x: x.copy())
_clone.defvjp(lambda ns, n, g: (g,))


@method()
def clone(x):
    """A copy with its own memory, in the graph (gradients flow through)."""
    return apply(_clone, (check_tensor(x, "clone"),))


# ------------------------------------------------------------------ operators and in-place forms

def _rev(f):
    return lambda self, other: f(other, self)


Tensor.__add__ = add
Tensor.__radd__ = _rev(add)
Tensor.__sub__ = sub
Tensor.__rsub__ = _rev(sub)
Tensor.__mul__ = mul
Tensor.__rmul__ = _rev(mul)
Tensor.__truediv__ = div
Tensor.__rtruediv__ = _rev(div)
Tensor.__floordiv__ = floor_divide
Tensor.__rfloordiv__ = _rev(floor_divide)
Tensor.__mod__ = remainder
Tensor.__rmod__ = _rev(remainder)
Tensor.__pow__ = pow
Tensor.__rpow__ = _rev(pow)
Tensor.__neg__ = neg
Tensor.__pos__ = lambda self: self
Tensor.__abs__ = abs
def _eq_op(f):
    # ``t == None`` (and ``t in [None, ...]``) is False, not an error, as in PyTorch: the
    # comparison is left to Python's identity fallback for operands that are not array-like
    def op(self, other):
        if other is None or isinstance(other, (str, bytes)):
            return NotImplemented
        return f(self, other)
    op.__name__ = f.__name__
    return op


Tensor.__eq__ = _eq_op(eq)
Tensor.__ne__ = _eq_op(ne)
Tensor.__lt__ = lt
Tensor.__le__ = le
Tensor.__gt__ = gt
Tensor.__ge__ = ge
Tensor.__and__ = bitwise_and
Tensor.__or__ = bitwise_or
Tensor.__xor__ = bitwise_xor
Tensor.__invert__ = bitwise_not
Tensor.__rand__ = _rev(bitwise_and)
Tensor.__ror__ = _rev(bitwise_or)

for _n in ("add", "sub", "mul", "div", "pow", "atan2", "remainder", "hypot", "maximum", "minimum",
           "fmax", "fmin", "floor_divide", "true_divide", "subtract", "multiply", "divide",
           "arctan2", "astype"):
    setattr(Tensor, _n, globals()[_n])

_INPLACE_UFUNC = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


def _make_inplace(name, fn):
    ufunc = _INPLACE_UFUNC.get(name)

    def inplace(self, *args, **kwargs):
        from ..grad_mode import STATE
        self._check_inplace(name + "_")
        other = args[0] if args else None
        if (ufunc is not None and not kwargs and len(args) == 1 and not (
                STATE.grad_enabled and (self._rg or (isinstance(other, Tensor) and other._rg)))):
            # no graph to record: compute straight into self's memory
            o = other._data if isinstance(other, Tensor) else other
            if isinstance(other, Tensor) and type(o) is not type(self._data):
                raise RuntimeError(f"{name}_: expected both tensors on the same device, got "
                                   f"{self.device} and {other.device}")
            rt = dtypes.result_type(self, other if isinstance(other, Tensor) else o)
            if name == "div" or dtypes.category(rt) > dtypes.category(self._data.dtype):
                if dtypes.category(self._data.dtype) < 2:
                    raise RuntimeError(f"{name}_: result type {rt if name != 'div' else 'float'} "
                                       f"can't be cast to the desired output type {self.dtype}")
            try:
                ufunc(self._data, o, out=self._data, casting="same_kind")
            except ValueError as e:
                if "read-only" in str(e):
                    raise RuntimeError(f"{name}_: the tensor (shape {list(self.shape)}) is an expanded "
                                       "view whose elements share memory and cannot be written in "
                                       "place; clone() it first") from None
                raise RuntimeError(f"{name}_: output with shape {list(self.shape)} doesn't match the "
                                   f"broadcast shape of it and {list(getattr(o, 'shape', ()))}") from None
            self._version[0] += 1
            return self
        if STATE.grad_enabled and (self._rg or _builtins.any(
                isinstance(a, Tensor) and a._rg for a in (*args, *kwargs.values()))):
            # the op may save its input for backward, and self is about to be overwritten
            return self._become(fn(clone(self), *args, **kwargs), name + "_")
        return self._become(fn(self, *args, **kwargs), name + "_")
    inplace.__name__ = name + "_"
    inplace.__doc__ = f"In-place ``{name}``."
    return inplace


for _n, _f in (("add", add), ("sub", sub), ("mul", mul), ("div", div), ("pow", pow),
               ("clamp", clamp), ("clip", clamp), ("neg", neg), ("abs", abs), ("exp", exp),
               ("log", log), ("sqrt", sqrt), ("sin", sin), ("cos", cos), ("tanh", tanh),
               ("sigmoid", sigmoid), ("relu", relu), ("floor", floor), ("ceil", ceil),
               ("round", round), ("trunc", trunc), ("reciprocal", reciprocal), ("square", square),
               ("remainder", remainder), ("lerp", lerp), ("nan_to_num", nan_to_num),
               ("maximum", maximum), ("minimum", minimum), ("sign", sign)):
    setattr(Tensor, _n + "_", _make_inplace(_n, _f))

Tensor.__iadd__ = Tensor.add_
Tensor.__isub__ = Tensor.sub_
Tensor.__imul__ = Tensor.mul_
Tensor.__itruediv__ = Tensor.div_
Tensor.__ipow__ = Tensor.pow_


_fill = defop("fill", lambda x, value: np.full_like(x, value))
_fill.defvjp(lambda ns, n, g: (ns.zeros_like(g),))
_fill_t = defop("fill_tensor", lambda x, v: np.broadcast_to(v, x.shape).astype(x.dtype), save=())
_fill_t.defvjp(lambda ns, n, g: (ns.zeros_like(g), ns.sum(g)))


def _fill_(self, value):
    """Fill with ``value`` (a number or 0-d Tensor, which receives the gradient) in place."""
    self._check_inplace("fill_")
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(f"fill_: only supports a 0-dimensional value tensor, but got a tensor "
                               f"with {value.ndim} dimension(s) (shape {list(value.shape)})")
        return self._become(apply(_fill_t, (self, value)), "fill_")
    from ..grad_mode import STATE
    if self._rg and STATE.grad_enabled:
        return self._become(apply(_fill, (self,), {"value": value}), "fill_")
    self._data[...] = value
    self._version[0] += 1
    return self


def _zero_inplace(self):
    return _fill_(self, 0)


_copy = defop("copy", lambda dst, src, src_shape, src_dtype:
              np.broadcast_to(src, dst.shape).astype(dst.dtype))


@_copy.defvjp
def _(ns, n, g):
    gs = g
    shp = n.attrs["src_shape"]
    if gs.shape != shp:
        gs = ns.sum_to(gs, shp)
    return ns.zeros_like(g), ns.astype(gs, n.attrs["src_dtype"])


def _copy_(self, src):
    """Copy ``src`` (broadcast, cast, possibly from another device) into ``self`` in place;
    differentiable w.r.t. ``src``."""
    src = as_tensor_arg(src, "copy_", self)
    if src.device != self.device:
        src = to_device(src, self.device)
    self._check_inplace("copy_")
    return self._become(apply(_copy, (self, src), {"src_shape": src.shape, "src_dtype": src.dtype}),
                        "copy_")


Tensor.zero_ = _zero_inplace
Tensor.fill_ = _fill_
Tensor.copy_ = _copy_
