"""Functional activations (relu ... gelu, silu, mish, softplus ...).

All take a Tensor of any shape and return a Tensor of the same shape (``glu`` halves
``dim``; ``softmin`` keeps the shape). The common ones (leaky_relu, elu, gelu, silu,
softplus) are single primitive ops whose backward rules are written with ``ns``, so they are
fast and differentiable twice; the others are compositions of diffsim ops. ``inplace=True``
is accepted where PyTorch has it: the result is written into ``input`` and ``input`` is
returned.
"""
from __future__ import annotations

import math

import numpy as np

from ...autodiff import ops as _ops
from ...autodiff.backend import get_xp
from ...autodiff.function import apply, defop
from ...autodiff.ops._util import check_tensor, float_result
from ...autodiff.tensor import Tensor

__all__ = ["relu", "relu_", "relu6", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "celu",
           "gelu", "silu", "mish", "softplus", "sigmoid", "tanh", "hardtanh", "hardtanh_",
           "hardsigmoid", "hardswish", "softsign", "tanhshrink", "logsigmoid", "softmin", "glu",
           "threshold", "hardshrink", "softshrink", "sine"]

_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


# ------------------------------------------------------------------ helpers usable in ns rules
# (backward rules get raw arrays in a plain backward and Tensors under create_graph)

def _erf(x):
    if isinstance(x, Tensor):
        return _ops.erf(x)
    if isinstance(x, (np.ndarray, np.generic, float)):
        import scipy.special
        return scipy.special.erf(x)
    import cupyx.scipy.special
    return cupyx.scipy.special.erf(x)


def _sigmoid(x):
    if isinstance(x, Tensor):
        return _ops.sigmoid(x)
    # 1 / (1 + exp(-x)): relative accuracy in both tails; exp overflows to inf only where the
    # result is 0 anyway (no np.where, which is slow on random masks)
    xp = get_xp(x)
    with np.errstate(over="ignore"):
        e = xp.exp(-x)
    e += 1
    return xp.reciprocal(e) if hasattr(e, "shape") and e.shape else 1 / e


def _mask(ns, x, like):
    """``x > 0`` as 0/1 in ``like``'s dtype (arithmetic masks beat where on random masks)."""
    return ns.astype(x > 0, like.dtype)


def _float_in(x, name):
    x = check_tensor(x, name)
    return float_result(x) if x._data.dtype.kind != "f" else x


def _finish(input, out, inplace, name):
    """Write ``out`` into ``input`` when ``inplace`` (PyTorch's ``inplace=True``)."""
    if not inplace:
        return out
    input._check_inplace(name)
    return input._become(out, name)


def _src(input, inplace):
    """The tensor an in-place activation computes from: a clone when the graph needs the old
    values (they are about to be overwritten)."""
    from ...autodiff.grad_mode import STATE
    if inplace and STATE.grad_enabled and input._rg:
        return _ops.clone(input)
    return input


# ------------------------------------------------------------------ primitive ops

def _leaky_fwd(x, negative_slope):
    xp = get_xp(x)
    if 0 <= negative_slope <= 1:
        return xp.maximum(x, x * negative_slope)
    if negative_slope > 1:
        return xp.minimum(x, x * negative_slope)
    return xp.where(x > 0, x, x * negative_slope)


_leaky = defop("leaky_relu", _leaky_fwd, save=(0,))


@_leaky.defvjp
def _(ns, n, g, x):
    s = n.attrs["negative_slope"]
    return (g * (s + (1 - s) * _mask(ns, x, g)),)


def _elu_fwd(x, alpha, scale):
    xp = get_xp(x)
    neg = xp.expm1(xp.minimum(x, 0))
    neg *= alpha * scale
    pos = xp.maximum(x, 0)
    if scale != 1.0:
        pos *= scale
    return pos + neg


_elu = defop("elu", _elu_fwd, save=(0,))


@_elu.defvjp
def _(ns, n, g, x):
    a, s = n.attrs["alpha"], n.attrs["scale"]
    m = _mask(ns, x, g)
    return (g * (s * m + (a * s) * ns.exp(ns.minimum(x, 0)) * (1 - m)),)


def _gelu_fwd(x, approximate):
    xp = get_xp(x)
    if approximate == "tanh":
        return 0.5 * x * (1 + xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
    return 0.5 * x * (1 + _erf(x / _SQRT_2))


_gelu = defop("gelu", _gelu_fwd, save=(0,))


@_gelu.defvjp
def _(ns, n, g, x):
    if n.attrs["approximate"] == "tanh":
        x2 = x * x
        t = ns.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x2 * x))
        d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * (_SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x2))
        return (g * d,)
    cdf = 0.5 * (1 + _erf(x / _SQRT_2))
    pdf = _INV_SQRT_2PI * ns.exp(-0.5 * x * x)
    return (g * (cdf + x * pdf),)


_silu = defop("silu", lambda x: x * _sigmoid(x), save=(0,))


@_silu.defvjp
def _(ns, n, g, x):
    s = _sigmoid(x)
    return (g * s * (1 + x * (1 - s)),)


def _softplus_fwd(x, beta, threshold):
    xp = get_xp(x)
    bx = x * beta if beta != 1 else x
    sp = xp.log1p(xp.exp(-xp.abs(bx))) + xp.maximum(bx, 0)
    if beta != 1:
        sp = sp / beta
    lin = bx > threshold                      # linear regime: exactly x, as PyTorch
    if lin.any():
        sp[lin] = x[lin]
    return sp


_softplus = defop("softplus", _softplus_fwd, save=(0,))


@_softplus.defvjp
def _(ns, n, g, x):
    beta, threshold = n.attrs["beta"], n.attrs["threshold"]
    bx = x * beta if beta != 1 else x
    lin = ns.astype(bx > threshold, g.dtype)
    return (g * ns.maximum(_sigmoid(bx), lin),)


# ------------------------------------------------------------------ public functions

def relu(input, inplace=False):
    """``max(x, 0)``. Shape: any, output same shape."""
    out = _ops.relu(_src(input, inplace))
    return _finish(input, out, inplace, "relu_")


def relu_(input):
    return relu(input, inplace=True)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """``x`` for ``x > 0``, else ``negative_slope * x``. Shape: any."""
    x = _float_in(input, "leaky_relu")
    out = apply(_leaky, (_src(x, inplace),), {"negative_slope": float(negative_slope)})
    return _finish(input, out, inplace, "leaky_relu_")


def leaky_relu_(input, negative_slope=0.01):
    return leaky_relu(input, negative_slope, inplace=True)


def elu(input, alpha=1.0, inplace=False):
    """``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``. Shape: any."""
    x = _float_in(input, "elu")
    out = apply(_elu, (_src(x, inplace),), {"alpha": float(alpha), "scale": 1.0})
    return _finish(input, out, inplace, "elu_")


def elu_(input, alpha=1.0):
    return elu(input, alpha, inplace=True)


def selu(input, inplace=False):
    """``scale * elu(x, alpha)`` with the self-normalizing constants (Klambauer et al. 2017)."""
    x = _float_in(input, "selu")
    out = apply(_elu, (_src(x, inplace),), {"alpha": _SELU_ALPHA, "scale": _SELU_SCALE})
    return _finish(input, out, inplace, "selu_")


def celu(input, alpha=1.0, inplace=False):
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``. Shape: any."""
    if alpha == 0:
        raise ValueError("celu: alpha must not be 0")
    x = _float_in(input, "celu")
    out = apply(_elu, (_src(x, inplace) / alpha,), {"alpha": 1.0, "scale": 1.0}) * alpha
    return _finish(input, out, inplace, "celu_")


def gelu(input, approximate="none"):
    """Gaussian error linear unit ``x * Phi(x)`` (``approximate='none'``: exact, with erf;
    ``'tanh'``: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``). Shape: any."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return apply(_gelu, (_float_in(input, "gelu"),), {"approximate": approximate})


def silu(input, inplace=False):
    """``x * sigmoid(x)`` (swish). Shape: any."""
    x = _float_in(input, "silu")
    out = apply(_silu, (_src(x, inplace),))
    return _finish(input, out, inplace, "silu_")


def softplus(input, beta=1.0, threshold=20.0):
    """``log(1 + exp(beta x)) / beta``, linear (``x``) where ``beta x > threshold``; stable for
    large ``|x|``. Shape: any."""
    return apply(_softplus, (_float_in(input, "softplus"),),
                 {"beta": float(beta), "threshold": float(threshold)})


def mish(input, inplace=False):
    """``x * tanh(softplus(x))`` (Misra 2019). Shape: any."""
    x = _float_in(input, "mish")
    s = _src(x, inplace)
    out = s * _ops.tanh(softplus(s))
    return _finish(input, out, inplace, "mish_")


def sigmoid(input):
    """``1 / (1 + exp(-x))`` (stable). Shape: any."""
    return _ops.sigmoid(input)


def tanh(input):
    """Hyperbolic tangent. Shape: any."""
    return _ops.tanh(input)


def _clamp_open(x, lo, hi):
    """``clamp(x, lo, hi)`` whose gradient is 1 strictly inside ``(lo, hi)`` and 0 at the ends,
    as PyTorch's hardtanh / relu6 / hardsigmoid / hardswish (clamp passes it at the ends)."""
    at_or_beyond = (x <= lo) | (x >= hi)         # (False for NaN, which passes through)
    return _ops.where(at_or_beyond, _ops.clamp(x, lo, hi).detach(), x)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """``clamp(x, min_val, max_val)``. Shape: any."""
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})")
    out = _clamp_open(_src(input, inplace), min_val, max_val)
    return _finish(input, out, inplace, "hardtanh_")


def hardtanh_(input, min_val=-1.0, max_val=1.0):
    return hardtanh(input, min_val, max_val, inplace=True)


def relu6(input, inplace=False):
    """``min(max(x, 0), 6)``. Shape: any."""
    return hardtanh(input, 0.0, 6.0, inplace)


def hardsigmoid(input, inplace=False):
    """``relu6(x + 3) / 6``. Shape: any."""
    out = _clamp_open(_src(input, inplace) + 3.0, 0.0, 6.0) / 6.0
    return _finish(input, out, inplace, "hardsigmoid_")


def hardswish(input, inplace=False):
    """``x * relu6(x + 3) / 6`` (Howard et al. 2019). Shape: any."""
    s = _src(input, inplace)
    out = s * (_clamp_open(s + 3.0, 0.0, 6.0) / 6.0)
    return _finish(input, out, inplace, "hardswish_")


def softsign(input):
    """``x / (1 + |x|)``. Shape: any."""
    return input / (1 + _ops.abs(input))


def tanhshrink(input):
    """``x - tanh(x)``. Shape: any."""
    return input - _ops.tanh(input)


def logsigmoid(input):
    """``log(sigmoid(x)) = -softplus(-x)``, stable for large ``|x|``. Shape: any."""
    return -softplus(-_float_in(input, "logsigmoid"))


def softmin(input, dim=None, dtype=None):
    """``softmax(-x, dim)``. Shape: any; ``dim`` sums to one."""
    if dim is None:
        dim = 0 if input.ndim in (0, 1, 3) else 1      # PyTorch's legacy implicit choice
    return _ops.softmax(-input, dim, dtype=dtype)


def glu(input, dim=-1):
    """Gated linear unit: ``a * sigmoid(b)`` where ``a, b`` are the halves of ``input`` along
    ``dim``. Shape: ``[..., 2k, ...] -> [..., k, ...]``."""
    n = input.shape[dim]
    if n % 2:
        raise RuntimeError(f"glu: halving dimension must be even, but dimension {dim} is size {n}")
    a, b = _ops.chunk(input, 2, dim)
    return a * _ops.sigmoid(b)


def threshold(input, threshold, value, inplace=False):
    """``x`` where ``x > threshold``, else ``value``. Shape: any."""
    s = _src(input, inplace)
    out = _ops.where(s > threshold, s, value)
    return _finish(input, out, inplace, "threshold_")


def hardshrink(input, lambd=0.5):
    """``x`` where ``|x| > lambd``, else 0. Shape: any."""
    return _ops.where(_ops.abs(input) > lambd, input, 0.0)


def softshrink(input, lambd=0.5):
    """``x - lambd`` above ``lambd``, ``x + lambd`` below ``-lambd``, else 0. Shape: any."""
    return _ops.where(input > lambd, input - lambd, _ops.where(input < -lambd, input + lambd, 0.0))


def sine(input, w0=30.0):
    """SIREN activation ``sin(w0 * x)`` (Sitzmann et al. 2020). Shape: any."""
    return _ops.sin(input * w0)
