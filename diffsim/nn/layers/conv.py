"""Conv1d, Conv2d, Conv3d, ConvTranspose1d/2d/3d (PyTorch names, shapes and initialization)."""
from __future__ import annotations


from ...autodiff import creation as _creation
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]


def _ntuple(v, n):
    if isinstance(v, (tuple, list)):
        if len(v) != n:
            raise ValueError(f"expected {n} values, got {tuple(v)}")
        return tuple(int(a) for a in v)
    return (int(v),) * n


class _ConvNd(Module):
    _nd = 2
    _transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", output_padding=0, device=None, dtype=None):
        super().__init__()
        nd = self._nd
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels % groups:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups:
            raise ValueError("out_channels must be divisible by groups")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"padding_mode must be one of 'zeros', 'reflect', 'replicate' or 'circular', "
                             f"but got padding_mode={padding_mode!r}")
        if self._transposed and padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {type(self).__name__}')
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _ntuple(kernel_size, nd)
        self.stride = _ntuple(stride, nd)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Invalid padding string {padding!r}, should be one of {{'valid', 'same'}}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            self.padding = padding
        else:
            self.padding = _ntuple(padding, nd)
        self.dilation = _ntuple(dilation, nd)
        self.output_padding = _ntuple(output_padding, nd)
        self.transposed = self._transposed
        self.groups, self.padding_mode = groups, padding_mode
        if isinstance(self.padding, str):
            self._reversed_padding_repeated_twice = [0, 0] * nd
            if padding == "same":
                for d, k, i in zip(self.dilation, self.kernel_size, range(nd - 1, -1, -1)):
                    total = d * (k - 1)
                    left = total // 2
                    self._reversed_padding_repeated_twice[2 * i] = left
                    self._reversed_padding_repeated_twice[2 * i + 1] = total - left
        else:
            self._reversed_padding_repeated_twice = [p for p in reversed(self.padding) for _ in range(2)]
        if self._transposed:
            wshape = (in_channels, out_channels // groups) + self.kernel_size
        else:
            wshape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = Parameter(_creation.empty(wshape, device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(_creation.empty((out_channels,), device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init._default_weight_bias_init_(self.weight, self.bias)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * len(self.padding):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * len(self.dilation):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * len(self.output_padding):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


_CONV = {1: "conv1d", 2: "conv2d", 3: "conv3d"}
_CONVT = {1: "conv_transpose1d", 2: "conv_transpose2d", 3: "conv_transpose3d"}


class _Conv(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, 0, device, dtype)

    def _conv_forward(self, input, weight, bias):
        fn = getattr(F, _CONV[self._nd])
        if self.padding_mode != "zeros":
            x = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return fn(x, weight, bias, self.stride, 0, self.dilation, self.groups)
        return fn(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, input):
        return self._conv_forward(input, self.weight, self.bias)


class Conv1d(_Conv):
    """1-D convolution (cross-correlation). Shapes: input ``[N, C_in, L]`` (or ``[C_in, L]``)
    -> ``[N, C_out, L_out]``, ``L_out = floor((L + 2p - d (k - 1) - 1) / s) + 1``. ``weight``
    ``[C_out, C_in/groups, k]`` ~ kaiming_uniform(a=sqrt(5)), ``bias`` U(+-1/sqrt(fan_in)).
    ``padding``: int, tuple, 'same' or 'valid'; ``padding_mode``: 'zeros', 'reflect',
    'replicate', 'circular'."""
    _nd = 1


class Conv2d(_Conv):
    """2-D convolution. Shapes: input ``[N, C_in, H, W]`` (or unbatched) -> ``[N, C_out,
    H_out, W_out]`` with ``H_out = floor((H + 2p - d (k - 1) - 1) / s) + 1`` per dim.
    ``weight`` ``[C_out, C_in/groups, kH, kW]``; init and padding as ``Conv1d``."""
    _nd = 2


class Conv3d(_Conv):
    """3-D convolution. Shapes: input ``[N, C_in, D, H, W]`` -> ``[N, C_out, D_out, H_out,
    W_out]``; ``weight`` ``[C_out, C_in/groups, kD, kH, kW]``; init and padding as ``Conv1d``."""
    _nd = 3


class _ConvTranspose(_ConvNd):
    _transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        if isinstance(padding, str):
            raise ValueError(f"{type(self).__name__}: string padding is not supported")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, output_padding, device, dtype)

    def _output_padding(self, input, output_size):
        if output_size is None:
            return self.output_padding
        nd = self._nd
        output_size = list(output_size)[-nd:]
        sp = input.shape[-nd:]
        out = []
        for i in range(nd):
            min_size = ((sp[i] - 1) * self.stride[i] - 2 * self.padding[i]
                        + self.dilation[i] * (self.kernel_size[i] - 1) + 1)
            extra = output_size[i] - min_size
            if not 0 <= extra < max(self.stride[i], self.dilation[i]):
                raise ValueError(f"requested an output size of {output_size}, but valid sizes range from "
                                 f"{min_size} to {min_size + max(self.stride[i], self.dilation[i]) - 1} "
                                 f"(for an input of {list(sp)})")
            out.append(extra)
        return tuple(out)

    def forward(self, input, output_size=None):
        op = self._output_padding(input, output_size)
        fn = getattr(F, _CONVT[self._nd])
        return fn(input, self.weight, self.bias, self.stride, self.padding, op, self.groups, self.dilation)


class ConvTranspose1d(_ConvTranspose):
    """1-D transposed convolution (the adjoint of Conv1d in its input). Shapes: input
    ``[N, C_in, L]`` -> ``[N, C_out, L_out]``, ``L_out = (L - 1) s - 2p + d (k - 1) +
    output_padding + 1``. ``weight`` ``[C_in, C_out/groups, k]``; PyTorch's init."""
    _nd = 1


class ConvTranspose2d(_ConvTranspose):
    """2-D transposed convolution. Shapes: input ``[N, C_in, H, W]`` -> ``[N, C_out, H_out,
    W_out]``, ``H_out = (H - 1) s - 2p + d (k - 1) + output_padding + 1`` per dim;
    ``forward(input, output_size=None)`` picks output_padding from ``output_size``. ``weight``
    ``[C_in, C_out/groups, kH, kW]``; PyTorch's init."""
    _nd = 2


class ConvTranspose3d(_ConvTranspose):
    """3-D transposed convolution; see ``ConvTranspose2d``."""
    _nd = 3
