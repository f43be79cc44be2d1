"""Pooling: max_pool1d/2d/3d, avg_pool1d/2d/3d, adaptive_avg_pool1d/2d/3d, adaptive_max_pool1d/2d.

Vectorized over strided windows: one pass per kernel offset (``prod(kernel_size)`` slice
ops over the whole batch), never a Python loop over pixels.

* max pooling finds, per output, the flat index (into the input's spatial dims, PyTorch's
  ``return_indices`` format) of the window's first maximum (NaN wins, as in PyTorch); the
  values are then one differentiable op ``pool_pick`` (a gather along the flattened spatial
  dims) whose backward is ``pool_scatter`` (a scatter-add) and vice versa, so double
  backward works.
* average pooling is the linear op ``avg_pool`` with its adjoint ``avg_pool_t``.
* adaptive average pooling is two matmuls with constant averaging matrices (PyTorch's
  ``start = floor(i*S/out)``, ``end = ceil((i+1)*S/out)``).
"""
from __future__ import annotations

import itertools
import math
import numbers

import numpy as np

from ...autodiff.backend import get_xp
from ...autodiff.function import apply, call_op, defop
from ...autodiff.tensor import Tensor
from ._util import int_tuple

__all__ = ["max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
           "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
           "adaptive_max_pool1d", "adaptive_max_pool2d"]


# ====================================================================== gather / scatter pair

def _pick_fwd(x, idx, in_shape=None, unique=False):
    """x [N, C, *S], idx [N, C, *out] flat spatial indices -> x at idx, [N, C, *out]."""
    N, C = x.shape[:2]
    flat = x.reshape(N, C, math.prod(x.shape[2:]))
    nout = math.prod(idx.shape[2:])
    return get_xp(x).take_along_axis(flat, idx.reshape(N, C, nout), axis=2).reshape(idx.shape)


def _scatter_fwd(g, idx, in_shape, unique=False):
    """Zeros of ``in_shape`` with g added at idx (the adjoint of ``_pick_fwd``); ``unique``:
    no index repeats (non-overlapping windows), so a plain put does."""
    from ...autodiff.ops.indexing import _scatter_add_array
    N, C = in_shape[:2]
    S = math.prod(in_shape[2:])
    xp = get_xp(g)
    nout = math.prod(idx.shape[2:])
    if unique and xp is np:
        out = xp.zeros((N, C, S), g.dtype)
        xp.put_along_axis(out, idx.reshape(N, C, nout), g.reshape(N, C, nout), axis=2)
    else:
        out = _scatter_add_array((N, C, S), 2, idx.reshape(N, C, nout), g.reshape(N, C, nout))
    return out.reshape(in_shape)


_pick = defop("pool_pick", _pick_fwd, save=(1,))
_scatter = defop("pool_scatter", _scatter_fwd, save=(1,))


@_pick.defvjp
def _(ns, node, g, idx):
    return call_op(ns, _scatter, g, idx, **node.attrs), None


@_scatter.defvjp
def _(ns, node, g, idx):
    return call_op(ns, _pick, g, idx, **node.attrs), None


# ====================================================================== argument handling

def _check_input(opname, input, nd):  # noqa: A002
    if not isinstance(input, Tensor):
        raise TypeError(f"{opname}: input must be a Tensor, got {type(input).__name__}")
    names = {1: "[N, C, L]", 2: "[N, C, H, W]", 3: "[N, C, D, H, W]"}[nd]
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{opname}: expected a {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input "
                           f"{names}, got input of shape {list(input.shape)}")
    if input.dtype.kind != "f":
        raise RuntimeError(f"{opname}: input must be floating point, got dtype {input.dtype}")
    if any(s == 0 for s in input.shape[-nd:]):
        raise RuntimeError(f"{opname}: input has an empty spatial dim (shape {list(input.shape)})")
    unbatched = input.ndim == nd + 1
    return (input.unsqueeze(0) if unbatched else input), unbatched


def _pool_geometry(opname, x, nd, kernel_size, stride, padding, dilation, ceil_mode):
    k = int_tuple(kernel_size, nd, "kernel_size", opname)
    s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else \
        int_tuple(stride, nd, "stride", opname)
    p = int_tuple(padding, nd, "padding", opname)
    d = int_tuple(dilation, nd, "dilation", opname)
    if any(v <= 0 for v in k + s + d):
        raise RuntimeError(f"{opname}: kernel_size {k}, stride {s} and dilation {d} must be positive")
    if any(pp < 0 or pp > kk // 2 for pp, kk in zip(p, k)):
        raise RuntimeError(f"{opname}: padding {p} should be non-negative and at most half of the kernel "
                           f"size {k}")
    S = x.shape[2:]
    out = []
    for i in range(nd):
        num = S[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1
        o = (-(-num // s[i]) if ceil_mode else num // s[i]) + 1
        if ceil_mode and (o - 1) * s[i] >= S[i] + p[i]:
            o -= 1
        if o < 1:
            raise RuntimeError(f"{opname}: output size would be {o} along spatial dim {i} (input shape "
                               f"{list(x.shape)}, kernel_size {k}, stride {s}, padding {p}, dilation {d}); "
                               "the input is too small")
        out.append(o)
    return k, s, p, d, tuple(out)


def _padded(x, p, k, s, d, out, value):
    """x padded by p on the low side and enough on the high side to hold every window."""
    xp = get_xp(x)
    S = x.shape[2:]
    need = tuple(max(S[i] + 2 * p[i], (out[i] - 1) * s[i] + d[i] * (k[i] - 1) + 1) for i in range(len(S)))
    if need == S and not any(p):
        return x
    buf = xp.full(x.shape[:2] + need, value, x.dtype)
    buf[(slice(None), slice(None)) + tuple(slice(p[i], p[i] + S[i]) for i in range(len(S)))] = x
    return buf


def _win_slice(kk, s, d, out):
    return (slice(None), slice(None)) + tuple(
        slice(kk[i] * d[i], kk[i] * d[i] + s[i] * (out[i] - 1) + 1, s[i]) for i in range(len(out)))


# ====================================================================== max pooling

def _max_indices(xd, k, s, p, d, out):
    """Flat spatial indices (into the unpadded input) of each window's first maximum (the
    last NaN where a window holds NaNs, as PyTorch's ``val > max || isnan(val)`` scan)."""
    xp = get_xp(xd)
    S = xd.shape[2:]
    nd = len(k)
    buf = _padded(xd, p, k, s, d, out, -np.inf)
    offsets = list(itertools.product(*(range(n) for n in k)))
    views = [buf[_win_slice(kk, s, d, out)] for kk in offsets]
    K = len(views)
    if K == 1:
        arg = xp.zeros(views[0].shape, np.int8)
    else:
        best = xp.maximum(views[0], views[1])
        for v in views[2:]:
            xp.maximum(best, v, out=best)
        arg = xp.full(best.shape, K - 1, np.int8 if K < 128 else np.int32)
        for j in range(K - 2, -1, -1):          # backwards: the first maximum wins
            xp.copyto(arg, j, where=(views[j] == best))
        nan = xp.isnan(best)
        if nan.any():
            for j in range(K):                   # forwards: the last NaN wins
                xp.copyto(arg, j, where=xp.isnan(views[j]))
    if not any(p):
        # every window lies inside the input: flat = window origin + offset delta
        in_strides = [math.prod(S[i + 1:]) for i in range(nd)]
        origin = None
        for i in range(nd):
            o = (xp.arange(out[i]) * (s[i] * in_strides[i])).reshape((-1,) + (1,) * (nd - 1 - i))
            origin = o if origin is None else origin + o
        delta = xp.asarray([sum(kk[i] * d[i] * in_strides[i] for i in range(nd)) for kk in offsets],
                           dtype=np.int64)
        flat = origin + xp.take(delta, arg)
        # (a ceil_mode window may reach past the input's end: then take the clamping path)
        if all((out[i] - 1) * s[i] + d[i] * (k[i] - 1) < S[i] for i in range(nd)):
            return flat
    # general path (padding or ceil_mode overhang): per-dim coordinates, clamped into the input
    flat = None
    rem = arg.astype(np.int64)
    kidx = []
    for i in range(nd - 1, -1, -1):
        kidx.append(rem % k[i])
        rem = rem // k[i]
    kidx = kidx[::-1]
    for i in range(nd):
        pos = xp.arange(out[i]).reshape((-1,) + (1,) * (nd - 1 - i)) * s[i] - p[i] + kidx[i] * d[i]
        pos = xp.clip(pos, 0, S[i] - 1)
        flat = pos if flat is None else flat * S[i] + pos
    return flat


def _max_pool_nd(nd, opname, input, kernel_size, stride, padding, dilation, ceil_mode,  # noqa: A002
                 return_indices):
    x, unbatched = _check_input(opname, input, nd)
    k, s, p, d, out = _pool_geometry(opname, x, nd, kernel_size, stride, padding, dilation, ceil_mode)
    idx = _max_indices(x._data, k, s, p, d, out)
    it = Tensor._make(idx, False, None, 0)
    unique = all(si >= di * (ki - 1) + 1 for si, di, ki in zip(s, d, k))    # windows don't overlap
    y = apply(_pick, (x, it), {"in_shape": tuple(x.shape), "unique": unique})
    if unbatched:
        y, it = y.squeeze(0), it.squeeze(0)
    return (y, it) if return_indices else y


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,  # noqa: A002
               return_indices=False):
    """1-D max pooling over [N, C, L] (as ``torch.nn.functional.max_pool1d``)."""
    return _max_pool_nd(1, "max_pool1d", input, kernel_size, stride, padding, dilation, ceil_mode,
                        return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,  # noqa: A002
               return_indices=False):
    """2-D max pooling over [N, C, H, W] (as ``torch.nn.functional.max_pool2d``): ``stride``
    defaults to ``kernel_size``; padding is -inf and at most half the kernel; ``ceil_mode``
    keeps a last partial window that starts inside the input or left padding;
    ``return_indices`` also returns the flat ``h * W + w`` index of each maximum. The
    gradient goes to the first maximum of each window."""
    return _max_pool_nd(2, "max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode,
                        return_indices)


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,  # noqa: A002
               return_indices=False):
    """3-D max pooling over [N, C, D, H, W]."""
    return _max_pool_nd(3, "max_pool3d", input, kernel_size, stride, padding, dilation, ceil_mode,
                        return_indices)


# ====================================================================== average pooling

def _divisor(S, k, s, p, out, count_include_pad, divisor_override, xp, dtype):
    if divisor_override:
        return divisor_override
    div = None
    nd = len(S)
    for i in range(nd):
        start = np.arange(out[i]) * s[i] - p[i]
        end = np.minimum(start + k[i], S[i] + p[i])
        if count_include_pad:
            n = end - start
        else:
            n = np.minimum(end, S[i]) - np.maximum(start, 0)
        n = n.reshape((-1,) + (1,) * (nd - 1 - i))
        div = n if div is None else div * n
    return xp.asarray(div.astype(dtype))


def _avg_fwd(x, k, s, p, out, div):
    xp = get_xp(x)
    d = (1,) * len(k)
    buf = _padded(x, p, k, s, d, out, 0)
    acc = None
    for kk in itertools.product(*(range(n) for n in k)):
        v = buf[_win_slice(kk, s, d, out)]
        acc = v.copy() if acc is None else xp.add(acc, v, out=acc)
    acc /= div
    return acc


def _avg_t_fwd(g, in_shape, k, s, p, out, div):
    xp = get_xp(g)
    S = in_shape[2:]
    nd = len(S)
    d = (1,) * nd
    need = tuple(max(S[i] + 2 * p[i], (out[i] - 1) * s[i] + k[i]) for i in range(nd))
    buf = xp.zeros(tuple(in_shape[:2]) + need, g.dtype)
    gd = g / div
    for kk in itertools.product(*(range(n) for n in k)):
        buf[_win_slice(kk, s, d, out)] += gd
    return buf[(slice(None), slice(None)) + tuple(slice(p[i], p[i] + S[i]) for i in range(nd))]


_avg = defop("avg_pool", lambda x, in_shape, k, s, p, out, div: _avg_fwd(x, k, s, p, out, div))
_avg_t = defop("avg_pool_t", _avg_t_fwd)


@_avg.defvjp
def _(ns, node, g):
    return (call_op(ns, _avg_t, g, **node.attrs),)


@_avg_t.defvjp
def _(ns, node, g):
    return (call_op(ns, _avg, g, **node.attrs),)


def _avg_pool_nd(nd, opname, input, kernel_size, stride, padding, ceil_mode, count_include_pad,  # noqa: A002
                 divisor_override):
    x, unbatched = _check_input(opname, input, nd)
    k, s, p, _, out = _pool_geometry(opname, x, nd, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and (not isinstance(divisor_override, numbers.Number)
                                         or divisor_override == 0):
        raise RuntimeError(f"{opname}: divisor_override must be a non-zero number, got {divisor_override!r}")
    div = _divisor(x.shape[2:], k, s, p, out, count_include_pad, divisor_override, get_xp(x._data),
                   x.dtype)
    y = apply(_avg, (x,), dict(in_shape=tuple(x.shape), k=k, s=s, p=p, out=out, div=div))
    return y.squeeze(0) if unbatched else y


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,  # noqa: A002
               count_include_pad=True):
    """1-D average pooling over [N, C, L] (as ``torch.nn.functional.avg_pool1d``)."""
    return _avg_pool_nd(1, "avg_pool1d", input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                        None)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,  # noqa: A002
               count_include_pad=True, divisor_override=None):
    """2-D average pooling over [N, C, H, W] (as ``torch.nn.functional.avg_pool2d``): zero
    padding, counted in the divisor unless ``count_include_pad=False``; ``divisor_override``
    replaces the divisor."""
    return _avg_pool_nd(2, "avg_pool2d", input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                        divisor_override)


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False,  # noqa: A002
               count_include_pad=True, divisor_override=None):
    """3-D average pooling over [N, C, D, H, W]."""
    return _avg_pool_nd(3, "avg_pool3d", input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                        divisor_override)


# ====================================================================== adaptive pooling

def _adaptive_ranges(S, o):
    start = (np.arange(o) * S) // o
    end = -((-(np.arange(o) + 1) * S) // o)
    return start, end


def _out_size(output_size, x, nd, opname):
    if isinstance(output_size, numbers.Integral) or output_size is None:
        output_size = (output_size,) * nd
    output_size = tuple(output_size)
    if len(output_size) == 1 and nd > 1:
        output_size = output_size * nd
    if len(output_size) != nd:
        raise TypeError(f"{opname}: output_size must be an int or a tuple of {nd} ints, got {output_size!r}")
    out = tuple(x.shape[2 + i] if o is None else int(o) for i, o in enumerate(output_size))
    if any(o < 1 for o in out):
        raise RuntimeError(f"{opname}: output_size {out} must be positive")
    return out


def _adaptive_avg_nd(nd, opname, input, output_size):  # noqa: A002
    from ...autodiff.creation import as_tensor
    x, unbatched = _check_input(opname, input, nd)
    out = _out_size(output_size, x, nd, opname)
    y = x
    for i in range(nd):
        S = x.shape[2 + i]
        if out[i] == S:
            continue
        start, end = _adaptive_ranges(S, out[i])
        cols = np.arange(S)
        m = ((cols >= start[:, None]) & (cols < end[:, None])) / (end - start)[:, None]   # [o, S]
        mt = as_tensor(m.T.astype(x.dtype), device=x.device)                                # [S, o]
        # contract spatial dim 2+i: move it last, matmul, move back
        y = (y.movedim(2 + i, -1) @ mt).movedim(-1, 2 + i)
    return y.squeeze(0) if unbatched else y


def adaptive_avg_pool1d(input, output_size):  # noqa: A002
    """Adaptive average pooling over [N, C, L] to ``output_size``."""
    return _adaptive_avg_nd(1, "adaptive_avg_pool1d", input, output_size)


def adaptive_avg_pool2d(input, output_size):  # noqa: A002
    """Adaptive average pooling over [N, C, H, W] to ``output_size`` (int, pair, None entries
    keep that size): output cell i averages ``[floor(i*H/Ho), ceil((i+1)*H/Ho))``."""
    return _adaptive_avg_nd(2, "adaptive_avg_pool2d", input, output_size)


def adaptive_avg_pool3d(input, output_size):  # noqa: A002
    """Adaptive average pooling over [N, C, D, H, W]."""
    return _adaptive_avg_nd(3, "adaptive_avg_pool3d", input, output_size)


def _adaptive_max_nd(nd, opname, input, output_size, return_indices):  # noqa: A002
    x, unbatched = _check_input(opname, input, nd)
    out = _out_size(output_size, x, nd, opname)
    xd = x._data
    xp = get_xp(xd)
    S = x.shape[2:]
    # per dim: index table [o, kmax] (clamped to the window's last element: a repeat never wins)
    tables = []
    for i in range(nd):
        start, end = _adaptive_ranges(S[i], out[i])
        kmax = int((end - start).max())
        t = np.minimum(start[:, None] + np.arange(kmax), (end - 1)[:, None])
        tables.append(t)
    # gather windows [N, C, o0, k0, o1, k1, ...]
    index = []
    for i, t in enumerate(tables):
        shape = [1] * (2 * nd)
        shape[2 * i], shape[2 * i + 1] = t.shape
        index.append(xp.asarray(t.reshape(shape)))
    win = xd[(slice(None), slice(None)) + tuple(index)]
    perm = (0, 1) + tuple(2 + 2 * i for i in range(nd)) + tuple(3 + 2 * i for i in range(nd))
    win = win.transpose(perm)
    win = win.reshape(win.shape[:2 + nd] + (math.prod(win.shape[2 + nd:]),))
    isn = xp.isnan(win)
    j = xp.where(isn.any(-1), xp.argmax(isn, -1), xp.argmax(win, -1))   # first max; NaN wins
    ks = [t.shape[1] for t in tables]
    flat = None
    rem = j
    kidx = []
    for i in range(nd - 1, -1, -1):
        kidx.append(rem % ks[i])
        rem = rem // ks[i]
    kidx = kidx[::-1]
    for i in range(nd):
        ti = xp.asarray(tables[i])
        oi = xp.arange(out[i]).reshape((-1,) + (1,) * (nd - 1 - i))
        pos = ti[oi, kidx[i]]
        flat = pos if flat is None else flat * S[i] + pos
    idx = flat.astype(np.int64)
    it = Tensor._make(idx, False, None, 0)
    y = apply(_pick, (x, it), {"in_shape": tuple(x.shape)})
    if unbatched:
        y, it = y.squeeze(0), it.squeeze(0)
    return (y, it) if return_indices else y


def adaptive_max_pool1d(input, output_size, return_indices=False):  # noqa: A002
    """Adaptive max pooling over [N, C, L]."""
    return _adaptive_max_nd(1, "adaptive_max_pool1d", input, output_size, return_indices)


def adaptive_max_pool2d(input, output_size, return_indices=False):  # noqa: A002
    """Adaptive max pooling over [N, C, H, W] (windows as in ``adaptive_avg_pool2d``)."""
    return _adaptive_max_nd(2, "adaptive_max_pool2d", input, output_size, return_indices)
