"""Identity, Linear, Bilinear, Flatten, Unflatten."""
from __future__ import annotations

import math

from ...autodiff import creation as _creation
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter

__all__ = ["Identity", "Linear", "LazyLinear", "Bilinear", "Flatten", "Unflatten"]


def _empty(shape, device=None, dtype=None):
    return _creation.empty(shape, device=device, dtype=dtype)


class Identity(Module):
    """Returns its input unchanged (any constructor arguments are ignored). Shape: any."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """``y = x W^T + b``.

    Shapes: input ``[*, in_features]`` -> output ``[*, out_features]``. Parameters: ``weight``
    ``[out_features, in_features]`` initialized with ``kaiming_uniform_(a=sqrt(5))`` (i.e.
    U(-1/sqrt(in), 1/sqrt(in))), ``bias`` ``[out_features]`` with U(-1/sqrt(in), 1/sqrt(in)),
    as PyTorch."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(_empty((out_features, in_features), device, dtype))
        if bias:
            self.bias = Parameter(_empty((out_features,), device, dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init._default_weight_bias_init_(self.weight, self.bias)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class LazyLinear(Linear):
    """A Linear whose ``in_features`` is inferred from the first input."""

    def __init__(self, out_features, bias=True, device=None, dtype=None):
        Module.__init__(self)
        self.in_features = 0
        self.out_features = out_features
        self._lazy = (bias, device, dtype)
        self.register_parameter("weight", None)
        self.register_parameter("bias", None)

    def forward(self, input):
        if self.weight is None:
            bias, device, dtype = self._lazy
            self.in_features = input.shape[-1]
            dev, dt = device or input.device, dtype or input.dtype
            self.weight = Parameter(_empty((self.out_features, self.in_features), dev, dt))
            if bias:
                self.bias = Parameter(_empty((self.out_features,), dev, dt))
            self.reset_parameters()
            self.__class__ = Linear           # as PyTorch: a materialized LazyLinear is a Linear
        return F.linear(input, self.weight, self.bias)


class Bilinear(Module):
    """``y = x1^T A x2 + b``.

    Shapes: input1 ``[*, in1_features]``, input2 ``[*, in2_features]`` -> output
    ``[*, out_features]``. Parameters: ``weight`` ``[out, in1, in2]`` and ``bias`` ``[out]``,
    both U(-1/sqrt(in1), 1/sqrt(in1)) as PyTorch."""

    def __init__(self, in1_features, in2_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in1_features, self.in2_features, self.out_features = in1_features, in2_features, out_features
        self.weight = Parameter(_empty((out_features, in1_features, in2_features), device, dtype))
        if bias:
            self.bias = Parameter(_empty((out_features,), device, dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1 / math.sqrt(self.weight.shape[1])
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input1, input2):
        return F.bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self):
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one. Shape: ``[N, *rest]`` ->
    ``[N, prod(rest)]`` with the defaults (start_dim=1, end_dim=-1)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Expand dim ``dim`` into ``unflattened_size``. Shape: ``[*, prod(size), *]`` ->
    ``[*, *size, *]``."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        if not isinstance(dim, int):
            raise TypeError(f"Unflatten: invalid dim {dim!r} (an int is expected)")
        self.dim = dim
        self.unflattened_size = tuple(unflattened_size)

    def forward(self, input):
        return input.unflatten(self.dim, self.unflattened_size)

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
