"""conv1d/2d/3d, conv_transpose1d/2d/3d (im2col via stride tricks + BLAS matmul).

Three custom ops, each the others' adjoint, so every backward is written in terms of the
other two and gradients of gradients come free:

* ``conv``    y  = conv(x, w) (+ b)                 (cross-correlation, PyTorch semantics)
* ``conv_t``  x' = conv_t(g, w)   the adjoint of conv in its input (= conv_transpose)
* ``conv_w``  w' = conv_w(x, g)   the adjoint of conv in its weight

Forward: the zero-padded input's windows are a strided view ``[N, G, *k, Cg, *out]`` (no
copy; ``xp.lib.stride_tricks.as_strided``), one copy makes the im2col matrix
``[N, G, K*Cg, out]``, and one batched matmul with the weight ``[G, Og, K*Cg]`` gives the
output ``[N, O, *out]`` (contiguous). ``conv_t`` multiplies by the transposed weight and
adds the patch gradients back with one strided slice-add per kernel offset (col2im);
``conv_w`` is a matmul of the output gradient with the im2col matrix. numpy or cupy arrays.
"""
from __future__ import annotations

import itertools
import math
import numbers

from ...autodiff.backend import get_xp
from ...autodiff.function import apply, call_op, defop
from ...autodiff.tensor import Tensor
from ._util import int_tuple

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]


# ====================================================================== array kernels

def _pad(x, pads):
    """Zero-pad the spatial dims of [N, C, *S] (no copy when there is no padding)."""
    if not any(lo or hi for lo, hi in pads):
        return x
    xp = get_xp(x)
    S = x.shape[2:]
    out = xp.zeros(x.shape[:2] + tuple(s + lo + hi for s, (lo, hi) in zip(S, pads)), x.dtype)
    out[(slice(None), slice(None)) + tuple(slice(lo, lo + s) for s, (lo, _) in zip(S, pads))] = x
    return out


def _out_sizes(S, k, stride, pads, dil):
    return tuple((s + lo + hi - d * (kk - 1) - 1) // st + 1
                 for s, kk, st, (lo, hi), d in zip(S, k, stride, pads, dil))


def _windows(xp_, out, k, stride, dil, groups):
    """Strided view [N, G, *k, Cg, *out] of the padded ``xp_`` [N, C, *Sp] (no copy)."""
    st = xp_.strides
    nd = len(out)
    N, C = xp_.shape[:2]
    shape = (N, groups) + tuple(k) + (C // groups,) + tuple(out)
    strides = ((st[0], st[1] * (C // groups)) + tuple(st[2 + i] * dil[i] for i in range(nd)) + (st[1],)
               + tuple(st[2 + i] * stride[i] for i in range(nd)))
    return get_xp(xp_).lib.stride_tricks.as_strided(xp_, shape, strides)


def _cols(x, k, stride, pads, dil, groups):
    """im2col of x [N, C, *S] -> [N, G, K*Cg, out] (rows ordered (kernel offset, channel); one
    copy), and the output sizes."""
    xp = get_xp(x)
    out = _out_sizes(x.shape[2:], k, stride, pads, dil)
    win = _windows(_pad(x, pads), out, k, stride, dil, groups)
    N, C = x.shape[:2]
    return xp.ascontiguousarray(win).reshape(N, groups, (C // groups) * math.prod(k), math.prod(out)), out


def _w2(w, groups):
    """Weight [O, Cg, *k] -> [G, Og, K*Cg] with columns ordered (kernel offset, channel)."""
    O, Cg = w.shape[:2]
    nd = w.ndim - 2
    wt = w.transpose((0,) + tuple(range(2, 2 + nd)) + (1,))          # [O, *k, Cg]
    return get_xp(w).ascontiguousarray(wt).reshape(groups, O // groups, Cg * math.prod(w.shape[2:]))


def _conv_fwd(x, w, b, stride, pads, dil, groups):
    N, O = x.shape[0], w.shape[0]
    cols, out = _cols(x, w.shape[2:], stride, pads, dil, groups)
    y = _w2(w, groups) @ cols                                  # [N, G, Og, out]
    y = y.reshape((N, O) + out)
    if b is not None:
        y += b.reshape((O,) + (1,) * len(out))
    return y


def _conv_t_fwd(g, w, in_spatial, stride, pads, dil, groups):
    """The input gradient of conv (col2im of w^T g): [N, C, *in_spatial]."""
    xp = get_xp(g)
    N, O = g.shape[:2]
    out = tuple(g.shape[2:])
    k = tuple(w.shape[2:])
    nd = len(k)
    Cg = w.shape[1]
    g = xp.ascontiguousarray(g)             # matmul takes the BLAS path only on well-strided arrays
    cols = _w2(w, groups).transpose(0, 2, 1) @ g.reshape(N, groups, O // groups, math.prod(out))   # [N, G, K*Cg, out]
    cols = cols.reshape((N, groups, math.prod(k), Cg) + out)
    Sp = tuple(s + lo + hi for s, (lo, hi) in zip(in_spatial, pads))
    gx = xp.zeros((N, groups, Cg) + Sp, cols.dtype)
    for j, kk in enumerate(itertools.product(*(range(n) for n in k))):
        dst = (slice(None),) * 3 + tuple(
            slice(kk[i] * dil[i], kk[i] * dil[i] + stride[i] * (out[i] - 1) + 1, stride[i]) for i in range(nd))
        gx[dst] += cols[:, :, j]
    gx = gx.reshape((N, groups * Cg) + Sp)
    if any(lo or hi for lo, hi in pads):
        gx = gx[(slice(None), slice(None)) + tuple(slice(lo, lo + s) for s, (lo, _) in zip(in_spatial, pads))]
    return gx


def _conv_w_fwd(x, g, kshape, stride, pads, dil, groups):
    """The weight gradient of conv: [O, C/G, *k]."""
    xp = get_xp(x)
    N, O = g.shape[:2]
    Cg = x.shape[1] // groups
    nd = len(kshape)
    cols, _ = _cols(x, kshape, stride, pads, dil, groups)      # [N, G, K*Cg, out]
    g2 = xp.ascontiguousarray(g).reshape(N, groups, O // groups, math.prod(g.shape[2:]))   # [N, G, Og, out]
    gw = (g2 @ cols.swapaxes(-1, -2)).sum(0)                     # [G, Og, K*Cg]
    gw = gw.reshape((O,) + tuple(kshape) + (Cg,))
    return xp.ascontiguousarray(gw.transpose((0, nd + 1) + tuple(range(1, nd + 1))))


# ====================================================================== ops

_conv = defop("conv", _conv_fwd, save=(0, 1))
_conv_t = defop("conv_t", _conv_t_fwd, save=(0, 1))
_conv_w = defop("conv_w", _conv_w_fwd, save=(0, 1))


def _geom(a):
    return dict(stride=a["stride"], pads=a["pads"], dil=a["dil"], groups=a["groups"])


@_conv.defvjp
def _(ns, node, g, x, w):
    a = node.attrs
    need = node.needs_input_grad
    gx = call_op(ns, _conv_t, g, w, in_spatial=tuple(x.shape[2:]), **_geom(a)) if need[0] else None
    gw = call_op(ns, _conv_w, x, g, kshape=tuple(w.shape[2:]), **_geom(a)) if need[1] else None
    gb = ns.sum(g, (0,) + tuple(range(2, g.ndim))) if len(need) > 2 and need[2] else None
    return gx, gw, gb


@_conv_t.defvjp
def _(ns, node, h, g, w):
    a = node.attrs
    need = node.needs_input_grad
    dg = call_op(ns, _conv, h, w, None, **_geom(a)) if need[0] else None
    dw = call_op(ns, _conv_w, h, g, kshape=tuple(w.shape[2:]), **_geom(a)) if need[1] else None
    return dg, dw


@_conv_w.defvjp
def _(ns, node, v, x, g):
    a = node.attrs
    need = node.needs_input_grad
    dx = call_op(ns, _conv_t, g, v, in_spatial=tuple(x.shape[2:]), **_geom(a)) if need[0] else None
    dg = call_op(ns, _conv, x, v, None, **_geom(a)) if need[1] else None
    return dx, dg


# ====================================================================== argument handling

def _shape(t):
    return list(t.shape)


def _check_common(opname, input, weight, bias, nd):  # noqa: A002
    names = {1: "[N, C, L]", 2: "[N, C, H, W]", 3: "[N, C, D, H, W]"}[nd]
    if not isinstance(input, Tensor):
        raise TypeError(f"{opname}: input must be a Tensor, got {type(input).__name__}")
    if not isinstance(weight, Tensor):
        raise TypeError(f"{opname}: weight must be a Tensor, got {type(weight).__name__}")
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{opname}: expected a {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input "
                           f"{names}, got input of shape {_shape(input)}")
    if weight.ndim != nd + 2:
        raise RuntimeError(f"{opname}: weight must be {nd + 2}-D, got weight of shape {_shape(weight)}")
    for t, nm in ((input, "input"), (weight, "weight"), (bias, "bias")):
        if t is not None and t.dtype.kind != "f":
            raise RuntimeError(f"{opname}: {nm} must be floating point, got dtype {t.dtype}")
    if input.dtype != weight.dtype or (bias is not None and bias.dtype != input.dtype):
        raise RuntimeError(f"{opname}: input ({input.dtype}), weight ({weight.dtype})"
                           + (f" and bias ({bias.dtype})" if bias is not None else "")
                           + " must have the same dtype; convert with .to(dtype)")
    if bias is not None and not isinstance(bias, Tensor):
        raise TypeError(f"{opname}: bias must be a Tensor or None, got {type(bias).__name__}")


def _conv_nd(nd, opname, input, weight, bias, stride, padding, dilation, groups):  # noqa: A002
    _check_common(opname, input, weight, bias, nd)
    unbatched = input.ndim == nd + 1
    x = input.unsqueeze(0) if unbatched else input
    stride = int_tuple(stride, nd, "stride", opname)
    dil = int_tuple(dilation, nd, "dilation", opname)
    if not isinstance(groups, numbers.Integral) or groups < 1:
        raise RuntimeError(f"{opname}: groups must be a positive int, got {groups!r}")
    groups = int(groups)
    if any(s < 1 for s in stride) or any(d < 1 for d in dil):
        raise RuntimeError(f"{opname}: stride {stride} and dilation {dil} must be positive")
    O, Cg = weight.shape[:2]
    k = tuple(weight.shape[2:])
    C = x.shape[1]
    if O % groups:
        raise RuntimeError(f"{opname}: out_channels {O} (weight shape {_shape(weight)}) must be divisible "
                           f"by groups={groups}")
    if C != Cg * groups:
        raise RuntimeError(f"{opname}: input has {C} channels (input shape {_shape(input)}) but weight of "
                           f"shape {_shape(weight)} with groups={groups} expects {Cg * groups} "
                           f"(= weight.shape[1] * groups)")
    if bias is not None and tuple(bias.shape) != (O,):
        raise RuntimeError(f"{opname}: bias must have shape [{O}] (out_channels), got {_shape(bias)}")
    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0),) * nd
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise RuntimeError(f"{opname}: padding='same' is not supported for strided convolutions "
                                   f"(stride={stride})")
            pads = tuple((d * (kk - 1) // 2, d * (kk - 1) - d * (kk - 1) // 2) for d, kk in zip(dil, k))
        else:
            raise ValueError(f"{opname}: padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
    else:
        p = int_tuple(padding, nd, "padding", opname)
        if any(v < 0 for v in p):
            raise RuntimeError(f"{opname}: padding {p} must be non-negative")
        pads = tuple((v, v) for v in p)
    S = x.shape[2:]
    for i in range(nd):
        span = dil[i] * (k[i] - 1) + 1
        if S[i] + pads[i][0] + pads[i][1] < span:
            raise RuntimeError(f"{opname}: kernel size {k} (dilation {dil}) is larger than the padded "
                               f"input (input shape {_shape(input)}, padding {padding!r})")
    y = apply(_conv, (x, weight, bias), dict(stride=stride, pads=pads, dil=dil, groups=groups))
    return y.squeeze(0) if unbatched else y


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """1-D convolution (cross-correlation): input [N, C_in, L], weight [C_out, C_in/groups, k]."""
    return _conv_nd(1, "conv1d", input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """2-D convolution (cross-correlation), as ``torch.nn.functional.conv2d``.

    input [N, C_in, H, W] (or unbatched [C_in, H, W]), weight [C_out, C_in/groups, kH, kW],
    bias [C_out] or None; ``stride``, ``padding`` (int, tuple, 'same' or 'valid'),
    ``dilation``, ``groups``. Output [N, C_out, H_out, W_out] with
    ``H_out = (H + 2*pad - dilation*(kH-1) - 1) // stride + 1``."""
    return _conv_nd(2, "conv2d", input, weight, bias, stride, padding, dilation, groups)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """3-D convolution (cross-correlation): input [N, C_in, D, H, W], weight [C_out, C_in/groups, kD, kH, kW]."""
    return _conv_nd(3, "conv3d", input, weight, bias, stride, padding, dilation, groups)


def _conv_transpose_nd(nd, opname, input, weight, bias, stride, padding, output_padding, groups,  # noqa: A002
                       dilation, output_size=None):
    _check_common(opname, input, weight, bias, nd)
    unbatched = input.ndim == nd + 1
    x = input.unsqueeze(0) if unbatched else input
    stride = int_tuple(stride, nd, "stride", opname)
    dil = int_tuple(dilation, nd, "dilation", opname)
    if isinstance(padding, str):
        raise ValueError(f"{opname}: padding must be an int or a tuple of ints, got {padding!r}")
    pad = int_tuple(padding, nd, "padding", opname)
    opad = int_tuple(output_padding, nd, "output_padding", opname)
    if not isinstance(groups, numbers.Integral) or groups < 1:
        raise RuntimeError(f"{opname}: groups must be a positive int, got {groups!r}")
    groups = int(groups)
    if any(s < 1 for s in stride) or any(d < 1 for d in dil) or any(p < 0 for p in pad):
        raise RuntimeError(f"{opname}: stride {stride} and dilation {dil} must be positive, padding {pad} "
                           "non-negative")
    for op_, s, d in zip(opad, stride, dil):
        if not (0 <= op_ < max(s, d)):
            raise RuntimeError(f"{opname}: output_padding {opad} must be smaller than either stride {stride} "
                               f"or dilation {dil}")
    Cin, Cg = weight.shape[:2]
    k = tuple(weight.shape[2:])
    if x.shape[1] != Cin:
        raise RuntimeError(f"{opname}: input has {x.shape[1]} channels (input shape {_shape(input)}) but "
                           f"weight of shape {_shape(weight)} expects {Cin} (= weight.shape[0])")
    if Cin % groups:
        raise RuntimeError(f"{opname}: in_channels {Cin} (weight shape {_shape(weight)}) must be divisible "
                           f"by groups={groups}")
    Cout = Cg * groups
    if bias is not None and tuple(bias.shape) != (Cout,):
        raise RuntimeError(f"{opname}: bias must have shape [{Cout}] (out_channels), got {_shape(bias)}")
    S = x.shape[2:]
    out = tuple((S[i] - 1) * stride[i] - 2 * pad[i] + dil[i] * (k[i] - 1) + opad[i] + 1 for i in range(nd))
    if output_size is not None:
        want = tuple(output_size)[-nd:]
        extra = tuple(w_ - o for w_, o in zip(want, out))
        if any(not (0 <= e < max(s, d)) for e, s, d in zip(extra, stride, dil)):
            raise RuntimeError(f"{opname}: requested output_size {tuple(want)} is not reachable from input "
                               f"shape {_shape(input)} (minimum {out})")
        out = want
    if any(o < 1 for o in out):
        raise RuntimeError(f"{opname}: output size {out} is not positive (input shape {_shape(input)}, "
                           f"weight shape {_shape(weight)}, stride {stride}, padding {pad})")
    y = apply(_conv_t, (x, weight), dict(in_spatial=out, stride=stride, pads=tuple((p, p) for p in pad),
                                         dil=dil, groups=groups))
    if bias is not None:
        y = y + bias.reshape((1, Cout) + (1,) * nd)
    return y.squeeze(0) if unbatched else y


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,  # noqa: A002
                     dilation=1):
    """1-D transposed convolution: input [N, C_in, L], weight [C_in, C_out/groups, k]."""
    return _conv_transpose_nd(1, "conv_transpose1d", input, weight, bias, stride, padding, output_padding,
                              groups, dilation)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,  # noqa: A002
                     dilation=1):
    """2-D transposed convolution (the adjoint of conv2d in its input), as
    ``torch.nn.functional.conv_transpose2d``: input [N, C_in, H, W], weight
    [C_in, C_out/groups, kH, kW], output ``H_out = (H-1)*stride - 2*padding +
    dilation*(kH-1) + output_padding + 1``."""
    return _conv_transpose_nd(2, "conv_transpose2d", input, weight, bias, stride, padding, output_padding,
                              groups, dilation)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,  # noqa: A002
                     dilation=1):
    """3-D transposed convolution: input [N, C_in, D, H, W], weight [C_in, C_out/groups, kD, kH, kW]."""
    return _conv_transpose_nd(3, "conv_transpose3d", input, weight, bias, stride, padding, output_padding,
                              groups, dilation)
