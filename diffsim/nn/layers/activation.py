"""Activation modules (ReLU ... Sine), SIREN layers and FourierFeatures.

Every activation module maps a Tensor of any shape to one of the same shape (``GLU`` halves
``dim``; ``FourierFeatures`` changes the last dim, see its docstring).
"""
from __future__ import annotations

import math

from ...autodiff import creation as _creation
from ...autodiff import ops as _ops
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter
from .linear import Linear

__all__ = ["ReLU", "LeakyReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Softplus", "Sigmoid",
           "Tanh", "Hardtanh", "ReLU6", "Hardsigmoid", "Hardswish", "Softsign", "Tanhshrink",
           "LogSigmoid", "Softmax", "LogSoftmax", "Softmin", "GLU", "Threshold", "Hardshrink",
           "Softshrink", "PReLU", "Sine", "SirenLinear", "FourierFeatures"]


def _inplace_str(inplace, lead=False):
    if not inplace:
        return ""
    return ", inplace=True" if lead else "inplace=True"


class ReLU(Module):
    """``max(x, 0)``. Shape: any -> same."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return F.relu(input, inplace=self.inplace)

    def extra_repr(self):
        return _inplace_str(self.inplace)


class LeakyReLU(Module):
    """``x`` if ``x > 0`` else ``negative_slope * x``. Shape: any -> same."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope, self.inplace)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}{_inplace_str(self.inplace, True)}"


class ELU(Module):
    """``x`` if ``x > 0`` else ``alpha * (exp(x) - 1)``. Shape: any -> same."""

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, input):
        return F.elu(input, self.alpha, self.inplace)

    def extra_repr(self):
        return f"alpha={self.alpha}{_inplace_str(self.inplace, True)}"


class CELU(ELU):
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``. Shape: any -> same."""

    def forward(self, input):
        return F.celu(input, self.alpha, self.inplace)


class SELU(Module):
    """Scaled ELU with the self-normalizing constants. Shape: any -> same."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return F.selu(input, self.inplace)

    def extra_repr(self):
        return _inplace_str(self.inplace)


class GELU(Module):
    """``x * Phi(x)`` (``approximate='none'``, erf) or its tanh approximation. Shape: any -> same."""

    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, input):
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """``x * sigmoid(x)``. Shape: any -> same."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return F.silu(input, inplace=self.inplace)

    def extra_repr(self):
        return _inplace_str(self.inplace)


class Mish(SiLU):
    """``x * tanh(softplus(x))``. Shape: any -> same."""

    def forward(self, input):
        return F.mish(input, inplace=self.inplace)


class Softplus(Module):
    """``log(1 + exp(beta x)) / beta`` (linear above ``threshold``). Shape: any -> same."""

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, input):
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class Sigmoid(Module):
    """``1 / (1 + exp(-x))``. Shape: any -> same."""

    def forward(self, input):
        return _ops.sigmoid(input)


class Tanh(Module):
    """``tanh(x)``. Shape: any -> same."""

    def forward(self, input):
        return _ops.tanh(input)


class Hardtanh(Module):
    """``clamp(x, min_val, max_val)``. Shape: any -> same."""

    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False):
        super().__init__()
        if max_val <= min_val:
            raise ValueError(f"Hardtanh: max_val ({max_val}) must be greater than min_val ({min_val})")
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace

    def forward(self, input):
        return F.hardtanh(input, self.min_val, self.max_val, self.inplace)

    def extra_repr(self):
        return f"min_val={self.min_val}, max_val={self.max_val}{_inplace_str(self.inplace, True)}"


class ReLU6(Hardtanh):
    """``min(max(x, 0), 6)``. Shape: any -> same."""

    def __init__(self, inplace=False):
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self):
        return _inplace_str(self.inplace)


class Hardsigmoid(Module):
    """``relu6(x + 3) / 6``. Shape: any -> same."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return F.hardsigmoid(input, self.inplace)


class Hardswish(Hardsigmoid):
    """``x * relu6(x + 3) / 6``. Shape: any -> same."""

    def forward(self, input):
        return F.hardswish(input, self.inplace)


class Softsign(Module):
    """``x / (1 + |x|)``. Shape: any -> same."""

    def forward(self, input):
        return F.softsign(input)


class Tanhshrink(Module):
    """``x - tanh(x)``. Shape: any -> same."""

    def forward(self, input):
        return F.tanhshrink(input)


class LogSigmoid(Module):
    """``log(sigmoid(x))`` (stable). Shape: any -> same."""

    def forward(self, input):
        return F.logsigmoid(input)


def _softmax_dim(ndim):
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(Module):
    """``exp(x) / sum(exp(x), dim)``. Shape: any -> same (sums to 1 along ``dim``)."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return _ops.softmax(input, self.dim if self.dim is not None else _softmax_dim(input.ndim))

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """``log(softmax(x, dim))`` (stable). Shape: any -> same."""

    def forward(self, input):
        return _ops.log_softmax(input, self.dim if self.dim is not None else _softmax_dim(input.ndim))


class Softmin(Softmax):
    """``softmax(-x, dim)``. Shape: any -> same."""

    def forward(self, input):
        return F.softmin(input, self.dim)


class GLU(Module):
    """Gated linear unit along ``dim``. Shape: ``[..., 2k, ...] -> [..., k, ...]``."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F.glu(input, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Threshold(Module):
    """``x`` where ``x > threshold`` else ``value``. Shape: any -> same."""

    def __init__(self, threshold, value, inplace=False):
        super().__init__()
        self.threshold, self.value, self.inplace = threshold, value, inplace

    def forward(self, input):
        return F.threshold(input, self.threshold, self.value, self.inplace)

    def extra_repr(self):
        return f"threshold={self.threshold}, value={self.value}{_inplace_str(self.inplace, True)}"


class Hardshrink(Module):
    """``x`` where ``|x| > lambd`` else 0. Shape: any -> same."""

    def __init__(self, lambd=0.5):
        super().__init__()
        self.lambd = lambd

    def forward(self, input):
        return F.hardshrink(input, self.lambd)

    def extra_repr(self):
        return f"{self.lambd}"


class Softshrink(Hardshrink):
    """Soft thresholding by ``lambd``. Shape: any -> same."""

    def forward(self, input):
        return F.softshrink(input, self.lambd)


class PReLU(Module):
    """``x`` if ``x > 0`` else ``a * x`` with a learnable ``a`` (one, or one per channel =
    dim 1), initialized to ``init``. Shape: any -> same."""

    def __init__(self, num_parameters=1, init=0.25, device=None, dtype=None):
        super().__init__()
        self.num_parameters = num_parameters
        self.init = init
        self.weight = Parameter(_creation.empty((num_parameters,), device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self):
        init.constant_(self.weight, self.init)

    def forward(self, input):
        w = self.weight
        if self.num_parameters > 1:
            w = w.reshape((self.num_parameters,) + (1,) * (input.ndim - 2))
        else:
            w = w.reshape(())                   # a 0-d input stays 0-d
        return _ops.where(input > 0, input, w * input)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class Sine(Module):
    """SIREN activation ``sin(w0 * x)`` (Sitzmann et al. 2020, "Implicit Neural Representations
    with Periodic Activation Functions"); pair it with ``init.siren_uniform_`` or use
    ``SirenLinear``. Shape: any -> same."""

    def __init__(self, w0=30.0):
        super().__init__()
        self.w0 = w0

    def forward(self, input):
        return _ops.sin(input * self.w0)

    def extra_repr(self):
        return f"w0={self.w0}"


class SirenLinear(Module):
    """One SIREN layer ``sin(w0 * (x W^T + b))`` with the initialization of Sitzmann et al.
    2020: the first layer's weight U(-1/in, 1/in), the others' U(-sqrt(6/in)/w0,
    sqrt(6/in)/w0) (see ``init.siren_uniform_``); the bias keeps Linear's default.

    Shapes: input ``[*, in_features]`` -> output ``[*, out_features]``. Submodule ``linear``
    holds ``weight`` and ``bias``."""

    def __init__(self, in_features, out_features, bias=True, w0=30.0, is_first=False,
                 device=None, dtype=None):
        super().__init__()
        self.w0, self.is_first = w0, is_first
        self.linear = Linear(in_features, out_features, bias, device, dtype)
        self.reset_parameters()

    def reset_parameters(self):
        init.siren_uniform_(self.linear.weight, w0=self.w0, is_first=self.is_first)

    def forward(self, input):
        return _ops.sin(self.linear(input) * self.w0)

    def extra_repr(self):
        return f"w0={self.w0}, is_first={self.is_first}"


class FourierFeatures(Module):
    """Gaussian random Fourier features (Tancik et al. 2020, "Fourier Features Let Networks
    Learn High Frequency Functions in Low Dimensional Domains"):
    ``gamma(x) = [x, sin(2 pi x B^T), cos(2 pi x B^T)]`` with ``B ~ N(0, scale^2)`` of shape
    ``[mapping_size, in_features]``, stored as the buffer ``B`` (saved in ``state_dict``) or,
    with ``learnable=True``, as a Parameter.

    ``mapping_size`` (alias ``num_frequencies``, default 256) is the number of frequencies.
    Shapes: input ``[*, in_features]`` -> output ``[*, out_features]`` with
    ``out_features = 2 * mapping_size + (in_features if include_input else 0)``; the input
    comes first when included."""

    def __init__(self, in_features, mapping_size=None, scale=10.0, learnable=False,
                 include_input=True, num_frequencies=None, device=None, dtype=None):
        super().__init__()
        if mapping_size is not None and num_frequencies is not None and mapping_size != num_frequencies:
            raise ValueError("FourierFeatures: give mapping_size or num_frequencies, not both")
        m = mapping_size if mapping_size is not None else (num_frequencies or 256)
        self.in_features, self.mapping_size, self.scale = in_features, m, scale
        self.learnable, self.include_input = learnable, include_input
        self.out_features = 2 * m + (in_features if include_input else 0)
        B = _creation.empty((m, in_features), device=device, dtype=dtype)
        init.normal_(B, 0.0, scale)
        if learnable:
            self.B = Parameter(B)
        else:
            self.register_buffer("B", B)

    def forward(self, input):
        if input.shape[-1] != self.in_features:
            raise RuntimeError(f"FourierFeatures: expected input [*, {self.in_features}], got "
                               f"{list(input.shape)}")
        proj = (input @ self.B.mT) * (2 * math.pi)
        parts = [_ops.sin(proj), _ops.cos(proj)]
        if self.include_input:
            parts.insert(0, input)
        return _ops.cat(parts, -1)

    def extra_repr(self):
        return (f"in_features={self.in_features}, mapping_size={self.mapping_size}, "
                f"scale={self.scale}, learnable={self.learnable}, include_input={self.include_input}")
