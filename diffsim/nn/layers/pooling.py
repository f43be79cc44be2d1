"""MaxPool1d/2d/3d, AvgPool1d/2d/3d, AdaptiveAvgPool1d/2d/3d, AdaptiveMaxPool1d/2d, Upsample."""
from __future__ import annotations

from .. import functional as F
from ..module import Module

__all__ = ["MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
           "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d",
           "AdaptiveMaxPool2d", "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d"]


class _MaxPoolNd(Module):
    _fn = None

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input):
        return getattr(F, self._fn)(input, self.kernel_size, self.stride, self.padding, self.dilation,
                                    ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool1d(_MaxPoolNd):
    """Max over windows: input ``[N, C, L]`` -> ``[N, C, L_out]``,
    ``L_out = floor((L + 2p - d (k - 1) - 1) / s) + 1`` (ceil with ``ceil_mode``); stride
    defaults to kernel_size."""
    _fn = "max_pool1d"


class MaxPool2d(_MaxPoolNd):
    """Max over windows: input ``[N, C, H, W]`` -> ``[N, C, H_out, W_out]`` (per dim as
    ``MaxPool1d``)."""
    _fn = "max_pool2d"


class MaxPool3d(_MaxPoolNd):
    """Max over windows: input ``[N, C, D, H, W]`` -> ``[N, C, D_out, H_out, W_out]``."""
    _fn = "max_pool3d"


class _AvgPoolNd(Module):
    _fn = None
    _has_divisor = True

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode, self.count_include_pad = padding, ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input):
        fn = getattr(F, self._fn)
        if self._has_divisor:
            return fn(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                      self.count_include_pad, self.divisor_override)
        return fn(input, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _tuple1(v):
    return (v,) if not isinstance(v, (tuple, list)) else tuple(v)


class AvgPool1d(_AvgPoolNd):
    """Mean over windows: input ``[N, C, L]`` -> ``[N, C, L_out]`` (sizes as ``MaxPool1d``,
    zero padding counted unless ``count_include_pad=False``)."""
    _fn = "avg_pool1d"
    _has_divisor = False

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__(_tuple1(kernel_size), _tuple1(stride if stride is not None else kernel_size),
                         _tuple1(padding), ceil_mode, count_include_pad)


class AvgPool2d(_AvgPoolNd):
    """Mean over windows: input ``[N, C, H, W]`` -> ``[N, C, H_out, W_out]``."""
    _fn = "avg_pool2d"


class AvgPool3d(_AvgPoolNd):
    """Mean over windows: input ``[N, C, D, H, W]`` -> ``[N, C, D_out, H_out, W_out]``."""
    _fn = "avg_pool3d"


class _AdaptiveNd(Module):
    _fn = None

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        return getattr(F, self._fn)(input, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptiveNd):
    """Mean over adaptive windows: ``[N, C, L]`` -> ``[N, C, output_size]``."""
    _fn = "adaptive_avg_pool1d"


class AdaptiveAvgPool2d(_AdaptiveNd):
    """Mean over adaptive windows: ``[N, C, H, W]`` -> ``[N, C, *output_size]`` (None keeps a dim)."""
    _fn = "adaptive_avg_pool2d"


class AdaptiveAvgPool3d(_AdaptiveNd):
    """Mean over adaptive windows: ``[N, C, D, H, W]`` -> ``[N, C, *output_size]``."""
    _fn = "adaptive_avg_pool3d"


class _AdaptiveMax(_AdaptiveNd):
    def __init__(self, output_size, return_indices=False):
        super().__init__(output_size)
        self.return_indices = return_indices

    def forward(self, input):
        return getattr(F, self._fn)(input, self.output_size, self.return_indices)


class AdaptiveMaxPool1d(_AdaptiveMax):
    """Max over adaptive windows: ``[N, C, L]`` -> ``[N, C, output_size]``."""
    _fn = "adaptive_max_pool1d"


class AdaptiveMaxPool2d(_AdaptiveMax):
    """Max over adaptive windows: ``[N, C, H, W]`` -> ``[N, C, *output_size]``."""
    _fn = "adaptive_max_pool2d"


class Upsample(Module):
    """Resize with ``F.interpolate``: ``size`` or ``scale_factor``; ``mode`` 'nearest',
    'linear', 'bilinear', 'bicubic', 'trilinear' (as the functional supports). Shape:
    ``[N, C, *S]`` -> ``[N, C, *size]`` or ``[N, C, *floor(S * scale_factor)]``."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None):
        super().__init__()
        self.name = type(self).__name__
        self.size = size
        self.scale_factor = float(scale_factor) if isinstance(scale_factor, (int, float)) else \
            (tuple(float(f) for f in scale_factor) if scale_factor is not None else None)
        self.mode, self.align_corners = mode, align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, input):
        kw = {}
        if self.recompute_scale_factor is not None:
            kw["recompute_scale_factor"] = self.recompute_scale_factor
        return F.interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners, **kw)

    def extra_repr(self):
        if self.scale_factor is not None:
            info = f"scale_factor={self.scale_factor!r}"
        else:
            info = f"size={self.size!r}"
        return info + f", mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    """``Upsample(mode='nearest')`` for 4-D inputs."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    """``Upsample(mode='bilinear', align_corners=True)`` for 4-D inputs."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)
