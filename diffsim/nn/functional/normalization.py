"""batch_norm, layer_norm, group_norm, instance_norm, normalize.

The normalization ``(x - mean) / sqrt(var + eps)`` over a set of dims is one primitive op
(``standardize``) whose backward is the closed form
``dx = invstd * (g - mean(g) - xhat * mean(g * xhat))``, written with ``ns`` (it recomputes
the statistics from the saved input, so it is differentiable again). The affine part is an
ordinary multiply-add.
"""
from __future__ import annotations

import numbers

from ...autodiff import ops as _ops
from ...autodiff.backend import get_xp
from ...autodiff.function import apply, defop
from ...autodiff.grad_mode import no_grad
from ...autodiff.ops._util import check_tensor

__all__ = ["batch_norm", "layer_norm", "group_norm", "instance_norm", "normalize", "local_response_norm"]


def _std_fwd(x, axes, eps, stats=None):
    xp = get_xp(x)
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(axis=axes, keepdims=True)
    invstd = 1.0 / xp.sqrt(var + eps)
    if stats is not None:
        stats.append((mean, var))
    xc *= invstd
    return xc


_standardize = defop("standardize", _std_fwd, save=(0,))


@_standardize.defvjp
def _(ns, node, g, x):
    axes, eps = node.attrs["axes"], node.attrs["eps"]
    n = 1
    for a in axes:
        n *= x.shape[a]
    mean = ns.sum(x, axes, True) / n
    xc = x - mean
    var = ns.sum(xc * xc, axes, True) / n
    invstd = 1.0 / ns.sqrt(var + eps)
    xhat = xc * invstd
    gm = ns.sum(g, axes, True) / n
    gxm = ns.sum(g * xhat, axes, True) / n
    return (invstd * (g - gm - xhat * gxm),)


def _standardize_over(x, axes, eps, stats=None):
    attrs = {"axes": tuple(axes), "eps": float(eps)}
    if stats is not None:
        attrs["stats"] = stats
    return apply(_standardize, (x,), attrs)


def _float_check(x, name):
    check_tensor(x, name)
    if x._data.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating point input, got {x.dtype}")


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalization over all dims but the channel dim 1.

    Shapes: input ``[N, C, *]``; running_mean, running_var, weight, bias ``[C]`` (or None);
    output like input. In training (or without running stats) the batch statistics are used
    and the running stats, when given, are updated in place:
    ``running = (1 - momentum) * running + momentum * batch`` (the variance unbiased). In eval
    the running stats are used."""
    _float_check(input, "batch_norm")
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected an input of at least 2 dims [N, C, *], got "
                         f"shape {list(input.shape)}")
    C = input.shape[1]
    for nm, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                  ("bias", bias)):
        if t is not None and tuple(t.shape) != (C,):
            raise RuntimeError(f"batch_norm: {nm} should have shape [{C}] for an input with {C} "
                               f"channels (shape {list(input.shape)}), got {list(t.shape)}")
    bshape = (1, C) + (1,) * (input.ndim - 2)
    axes = (0,) + tuple(range(2, input.ndim))
    if training:
        n = input._data.size // max(C, 1)
        if input._data.size == 0:
            # an empty batch: an empty output and the running stats untouched (as PyTorch)
            y = input * 1.0
            if weight is not None:
                y = y * weight.reshape(bshape)
            if bias is not None:
                y = y + bias.reshape(bshape)
            return y
        if n <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, "
                             f"got input size {list(input.shape)}")
        stats = [] if running_mean is not None or running_var is not None else None
        y = _standardize_over(input, axes, eps, stats)
        if stats:
            mean, var = stats[0]
            with no_grad():
                if running_mean is not None:
                    rm = running_mean._data
                    rm *= 1 - momentum
                    rm += (momentum * mean.reshape(C)).astype(rm.dtype, copy=False)
                    running_mean._version[0] += 1
                if running_var is not None:
                    rv = running_var._data
                    rv *= 1 - momentum
                    rv += (momentum * n / (n - 1) * var.reshape(C)).astype(rv.dtype, copy=False)
                    running_var._version[0] += 1
        if weight is not None:
            y = y * weight.reshape(bshape)
        if bias is not None:
            y = y + bias.reshape(bshape)
        return y
    if running_mean is None or running_var is None:
        raise RuntimeError("batch_norm: running_mean and running_var must be given when training=False")
    scale = _ops.rsqrt(running_var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -running_mean * scale
    if bias is not None:
        shift = shift + bias
    return input * scale.reshape(bshape) + shift.reshape(bshape)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalize over the last ``len(normalized_shape)`` dims.

    Shapes: input ``[*, *normalized_shape]``; weight, bias ``normalized_shape`` (or None);
    output like input."""
    _float_check(input, "layer_norm")
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (normalized_shape,)
    ns_ = tuple(normalized_shape)
    k = len(ns_)
    if k == 0 or tuple(input.shape[input.ndim - k:]) != ns_ or input.ndim < k:
        raise RuntimeError(f"layer_norm: expected input with shape [*, {', '.join(map(str, ns_))}], "
                           f"but got input of size {list(input.shape)}")
    y = _standardize_over(input, tuple(range(input.ndim - k, input.ndim)), eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalize over groups of channels (and all spatial dims).

    Shapes: input ``[N, C, *]`` with C divisible by num_groups; weight, bias ``[C]``; output
    like input."""
    _float_check(input, "group_norm")
    if input.ndim < 2:
        raise RuntimeError(f"group_norm: expected input [N, C, *], got {list(input.shape)}")
    N, C = input.shape[0], input.shape[1]
    if C % num_groups:
        raise RuntimeError(f"group_norm: expected number of channels in input ({C}) to be divisible "
                           f"by num_groups ({num_groups})")
    per_group = C // num_groups
    for s in input.shape[2:]:
        per_group *= s
    x = input.reshape((N, num_groups, per_group))
    y = _standardize_over(x, (2,), eps).reshape(input.shape)
    bshape = (1, C) + (1,) * (input.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(bshape)
    if bias is not None:
        y = y + bias.reshape(bshape)
    return y


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Normalize each channel of each sample over its spatial dims. Shapes: input ``[N, C, *]``;
    weight, bias ``[C]``; output like input (running stats are not supported)."""
    _float_check(input, "instance_norm")
    if running_mean is not None or running_var is not None or not use_input_stats:
        raise NotImplementedError("instance_norm: running statistics are not supported")
    y = _standardize_over(input, tuple(range(2, input.ndim)), eps)
    bshape = (1, input.shape[1]) + (1,) * (input.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(bshape)
    if bias is not None:
        y = y + bias.reshape(bshape)
    return y


def normalize(input, p=2.0, dim=1, eps=1e-12):
    """``x / max(||x||_p, eps)`` along ``dim``. Shape: like input."""
    check_tensor(input, "normalize")
    nrm = _ops.vector_norm(input, p, dim, keepdim=True)
    return input / _ops.clamp(nrm, eps)


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalization across channels. Shapes: input ``[N, C, *]``; output like input."""
    from .linear import pad
    sq = input * input
    c = input.shape[1]
    padded = pad(sq.unsqueeze(1), (0, 0) * (input.ndim - 2) + (size // 2, (size - 1) // 2))
    windows = _ops.stack([padded[:, 0, i:i + c] for i in range(size)], 0).sum(0)
    return input / (k + alpha / size * windows) ** beta
