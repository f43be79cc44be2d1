"""``nn.init``: in-place parameter initializations with PyTorch's formulas.

Each function fills its tensor in place (without recording a graph), draws from
``generator`` or the default generator (so ``ds.manual_seed`` makes it reproducible), and
returns the tensor. Fans: for a weight ``[out, in, *kernel]``, fan_in = in * prod(kernel)
and fan_out = out * prod(kernel).
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ..autodiff import random as _random
from ..autodiff.backend import get_xp, move
from ..autodiff.grad_mode import no_grad
from ..autodiff.tensor import Tensor

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_",
           "eye_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
           "orthogonal_", "siren_uniform_"]


def _gen(generator, t):
    return (generator or _random.default_generator)._for(t.device)


def _fill(t, values):
    with no_grad():
        t._data[...] = values.astype(t._data.dtype, copy=False)
        t._version[0] += 1
    return t


def _check(t, opname):
    if not isinstance(t, Tensor):
        raise TypeError(f"{opname}: expected a Tensor, got {type(t).__name__}")


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for ``nonlinearity`` ('linear', 'conv*', 'sigmoid', 'tanh', 'relu',
    'leaky_relu' (param = negative slope, default 0.01), 'selu')."""
    linear = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid"}
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(t):
    if t.ndim < 2:
        raise ValueError(f"fan in and fan out can not be computed for a tensor with fewer than 2 "
                         f"dimensions (shape {list(t.shape)})")
    receptive = int(np.prod(t.shape[2:])) if t.ndim > 2 else 1
    return t.shape[1] * receptive, t.shape[0] * receptive


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with U(a, b)."""
    _check(tensor, "uniform_")
    g = _gen(generator, tensor)
    return _fill(tensor, a + (b - a) * g.random(tensor.shape))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with N(mean, std^2)."""
    _check(tensor, "normal_")
    g = _gen(generator, tensor)
    return _fill(tensor, mean + std * g.standard_normal(tensor.shape))


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Fill with N(mean, std^2) truncated to [a, b] (inverse-CDF sampling, as PyTorch)."""
    _check(tensor, "trunc_normal_")
    from scipy.special import erf, erfinv
    lo = (1 + erf((a - mean) / (std * math.sqrt(2)))) / 2
    hi = (1 + erf((b - mean) / (std * math.sqrt(2)))) / 2
    u = np.asarray(backend_random(generator, tensor))
    v = erfinv(2 * (lo + (hi - lo) * u) - 1) * std * math.sqrt(2) + mean
    return _fill(tensor, move(np.clip(v, a, b), tensor.device))


def backend_random(generator, tensor):
    g = (generator or _random.default_generator)._np
    return g.random(tensor.shape)


def constant_(tensor, val):
    """Fill with ``val``."""
    _check(tensor, "constant_")
    return _fill(tensor, get_xp(tensor._data).full(tensor.shape, val))


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def eye_(tensor):
    """Fill a 2-d tensor with the identity."""
    if tensor.ndim != 2:
        raise ValueError(f"eye_: only 2-d tensors are supported, got shape {list(tensor.shape)}")
    return _fill(tensor, get_xp(tensor._data).eye(*tensor.shape))


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def _kaiming_std(tensor, a, mode, nonlinearity):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def _zero_element(tensor):
    """As PyTorch: initializing a tensor with no elements (e.g. ``Linear(0, n).weight``, whose
    fan is 0) warns and does nothing."""
    if 0 in tuple(tensor.shape):
        warnings.warn("Initializing zero-element tensors is a no-op", UserWarning, stacklevel=3)
        return True
    return False


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """U(-b, b) with b = gain * sqrt(3 / fan) (He)."""
    if _zero_element(tensor):
        return tensor
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """N(0, std^2) with std = gain / sqrt(fan) (He)."""
    if _zero_element(tensor):
        return tensor
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator)


def orthogonal_(tensor, gain=1.0, generator=None):
    """A (semi-)orthogonal matrix from the QR decomposition of a Gaussian matrix, reshaped to
    the tensor's shape [rows, prod(rest)], times ``gain``."""
    if tensor.ndim < 2:
        raise ValueError(f"orthogonal_: only tensors with 2 or more dimensions are supported, got "
                         f"shape {list(tensor.shape)}")
    rows = tensor.shape[0]
    cols = tensor._data.size // rows
    g = _gen(generator, tensor)
    flat = g.standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    xp = get_xp(flat)
    q, r = xp.linalg.qr(flat)
    q = q * xp.sign(xp.diagonal(r))
    if rows < cols:
        q = q.T
    return _fill(tensor, (gain * q).reshape(tensor.shape))


def siren_uniform_(tensor, w0=30.0, is_first=False, generator=None):
    """SIREN initialization (Sitzmann et al. 2020) of a weight ``[out, in]`` for ``sin(w0 (W x + b))``:
    U(-1/in, 1/in) for the first layer (``is_first``), else U(-sqrt(6/in)/w0, sqrt(6/in)/w0),
    so that pre-activations stay ~ arcsine-distributed through depth."""
    fan_in, _ = _calculate_fan_in_and_fan_out(tensor)
    bound = 1.0 / fan_in if is_first else math.sqrt(6.0 / fan_in) / w0
    return uniform_(tensor, -bound, bound, generator)


def _default_weight_bias_init_(weight, bias):
    """PyTorch's default for Linear and Conv layers: ``kaiming_uniform_(a=sqrt(5))`` on the
    weight (= U(-1/sqrt(fan_in), 1/sqrt(fan_in))) and the same bound for ``bias`` (if any)."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = _calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        uniform_(bias, -bound, bound)
