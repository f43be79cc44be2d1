"""Resampling: interpolate (upsample), grid_sample, affine_grid.

* ``interpolate`` is separable: one linear map per spatial dim with PyTorch's source-index
  conventions (2 taps for the linear modes, 4 for bicubic, 1 for nearest). For sizes up to
  ``_DENSE_MAX`` the map is a matmul with a dense [out, in] interpolation matrix (BLAS);
  beyond, ``index_select`` gathers blended with weights. Both are compositions of
  differentiable diffsim ops, so gradients of any order come free.
* ``grid_sample`` bilinear/trilinear is one custom op: the 4 (2-D) or 8 (3-D) corners of
  every sample point are gathered from the channels-last input ``[N*S + 1, C]`` (invalid
  corners read a zero row) and blended; the hand-written backward scatter-adds into the
  input with ``np.bincount`` and forms the grid gradient from the corner values. Under
  ``create_graph`` the backward differentiates the composite formulation
  (``_grid_sample_composite``, diffsim ops only), so double backward works. ``nearest`` uses
  the composite directly. Index arithmetic (floors, clamps, masks) is not differentiated,
  exactly as in PyTorch's kernels.
"""
from __future__ import annotations

import itertools
import math
import numbers

import numpy as np

from ...autodiff.backend import get_xp
from ...autodiff.function import apply, defop
from ...autodiff.rawops import RAW_NS
from ...autodiff.tensor import Tensor

__all__ = ["interpolate", "upsample", "upsample_nearest", "upsample_bilinear", "grid_sample",
           "affine_grid"]

_CUBIC_A = -0.75


def _const(arr, like):
    """A constant (non-differentiable) Tensor of ``like``'s dtype and device."""
    from ...autodiff.creation import as_tensor
    return as_tensor(np.asarray(arr).astype(like.dtype), device=like.device)


def _bshape(n, dim, ndim):
    shape = [1] * ndim
    shape[dim] = n
    return tuple(shape)


# ====================================================================== interpolate

def _scale(in_size, out_size, sf, align_corners):
    """PyTorch's area_pixel_compute_scale."""
    if align_corners:
        return (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    return 1.0 / sf if sf is not None and sf > 0 else in_size / out_size


_DENSE_MAX = 256   # up to this input size a dense [out, in] matmul (BLAS) beats gathers


def _gather_blend(x, dim, idx_list, w_list):
    """sum_j x.index_select(dim, idx_j) * w_j (weights broadcast along ``dim``); for small
    sizes the same linear map as one matmul with a dense [out, in] interpolation matrix."""
    from ... import autodiff as ad
    n_in = x.shape[dim]
    if w_list[0] is not None and n_in <= _DENSE_MAX:
        n_out = len(idx_list[0])
        m = np.zeros((n_out, n_in))
        rows = np.arange(n_out)
        for idx, w in zip(idx_list, w_list):
            np.add.at(m, (rows, idx), w)
        if dim == x.ndim - 1:
            return x @ _const(m.T, x)
        shp = x.shape
        rest = math.prod(shp[dim + 1:])
        y = _const(m, x) @ x.reshape((-1, n_in, rest))            # [prefix, out, rest]
        return y.reshape(shp[:dim] + (n_out,) + shp[dim + 1:])
    y = None
    for idx, w in zip(idx_list, w_list):
        term = ad.index_select(x, dim, _const_index(idx, x))
        if w is not None:
            term = term * _const(w.reshape(_bshape(len(w), dim, x.ndim)), x)
        y = term if y is None else y + term
    return y


def _const_index(idx, like):
    xp = get_xp(like._data)
    return Tensor._make(xp.asarray(idx.astype(np.int64)), False, None, 0)


def _interp_dim(x, dim, out_size, sf, mode, align_corners):
    in_size = x.shape[dim]
    dst = np.arange(out_size)
    if mode in ("nearest", "nearest-exact"):
        if out_size == in_size:
            return x
        # PyTorch computes nearest indices in float32
        scale = np.float32(1.0 / sf if sf is not None and sf > 0 else in_size / out_size)
        off = np.float32(0.5) if mode == "nearest-exact" else np.float32(0.0)
        src = np.floor((dst.astype(np.float32) + off) * scale).astype(np.int64)
        return _gather_blend(x, dim, [np.minimum(src, in_size - 1)], [None])
    scale = _scale(in_size, out_size, sf, align_corners)
    if align_corners:
        src = dst * scale
    else:
        src = scale * (dst + 0.5) - 0.5
    if mode == "cubic":
        i = np.floor(src)
        t = src - i
        i = i.astype(np.int64)
        A = _CUBIC_A

        def cc1(v):
            return ((A + 2) * v - (A + 3)) * v * v + 1

        def cc2(v):
            return ((A * v - 5 * A) * v + 8 * A) * v - 4 * A
        ws = [cc2(t + 1), cc1(t), cc1(1 - t), cc2(2 - t)]
        idx = [np.clip(i + j, 0, in_size - 1) for j in (-1, 0, 1, 2)]
        return _gather_blend(x, dim, idx, ws)
    src = np.maximum(src, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i0 = np.minimum(i0, in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    l1 = src - i0
    return _gather_blend(x, dim, [i0, i1], [1.0 - l1, l1])


_MODE_DIMS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,  # noqa: A002
                recompute_scale_factor=None, antialias=False):
    """Resize [N, C, *S] (1 to 3 spatial dims) to ``size`` or by ``scale_factor``, as
    ``torch.nn.functional.interpolate``.

    ``mode``: 'nearest' (source index ``floor(dst * in/out)``), 'nearest-exact', 'linear'
    (3-D input), 'bilinear' / 'bicubic' (4-D), 'trilinear' (5-D), or 'area' (adaptive average
    pooling). ``align_corners`` (linear modes only): True maps corner pixel centres onto each
    other (``src = dst * (in-1)/(out-1)``); False (default) uses half-pixel centres
    (``src = (dst+0.5)*in/out - 0.5``, clamped at 0). With ``scale_factor`` the output size is
    ``floor(in * scale_factor)`` and the coordinate scale is ``1/scale_factor`` unless
    ``recompute_scale_factor=True``."""
    from .pooling import adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d
    if not isinstance(input, Tensor):
        raise TypeError(f"interpolate: input must be a Tensor, got {type(input).__name__}")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported")
    nd = input.ndim - 2
    if nd < 1 or nd > 3:
        raise RuntimeError(f"interpolate: expected a 3-D, 4-D or 5-D input [N, C, *spatial], got input of "
                           f"shape {list(input.shape)}")
    modes = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")
    if mode not in modes:
        raise ValueError(f"interpolate: mode must be one of {modes}, got {mode!r}")
    if mode in _MODE_DIMS and _MODE_DIMS[mode] != nd:
        raise RuntimeError(f"interpolate: got {input.ndim}-D input (shape {list(input.shape)}), but mode "
                           f"{mode!r} needs {_MODE_DIMS[mode] + 2}-D input")
    if align_corners is not None and mode not in _MODE_DIMS:
        raise ValueError(f"interpolate: align_corners can only be set with the interpolating modes "
                         f"linear | bilinear | bicubic | trilinear, not mode={mode!r}")
    if input.dtype.kind != "f":
        raise RuntimeError(f"interpolate: input must be floating point, got dtype {input.dtype}")
    align_corners = bool(align_corners)
    S = input.shape[2:]
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: exactly one of size and scale_factor must be given")
    if size is not None:
        sizes = (size,) * nd if isinstance(size, numbers.Integral) else tuple(size)
        if len(sizes) != nd:
            raise ValueError(f"interpolate: size {size!r} must have {nd} entries for input of shape "
                             f"{list(input.shape)}")
        sizes = tuple(int(s) for s in sizes)
        sfs = (None,) * nd
    else:
        sfs = (scale_factor,) * nd if isinstance(scale_factor, numbers.Number) else tuple(scale_factor)
        if len(sfs) != nd:
            raise ValueError(f"interpolate: scale_factor {scale_factor!r} must have {nd} entries for input "
                             f"of shape {list(input.shape)}")
        sfs = tuple(float(f) for f in sfs)
        sizes = tuple(int(math.floor(s * f)) for s, f in zip(S, sfs))
        if recompute_scale_factor:
            sfs = (None,) * nd
    if any(s < 1 for s in sizes):
        raise RuntimeError(f"interpolate: output size {sizes} must be positive (input shape "
                           f"{list(input.shape)})")
    if any(s == 0 for s in S):
        raise RuntimeError(f"interpolate: input has an empty spatial dim (shape {list(input.shape)})")
    if mode == "area":
        return (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d)[nd - 1](input, sizes)
    kind = "cubic" if mode == "bicubic" else ("linear" if mode in _MODE_DIMS else mode)
    y = input
    for i in range(nd):
        if kind in ("nearest", "nearest-exact") and sizes[i] == S[i]:
            continue
        y = _interp_dim(y, 2 + i, sizes[i], sfs[i], kind, align_corners)
    return y


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):  # noqa: A002
    """Alias of ``interpolate`` (PyTorch's deprecated ``F.upsample``)."""
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input, size=None, scale_factor=None):  # noqa: A002
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input, size=None, scale_factor=None):  # noqa: A002
    """Bilinear upsampling with ``align_corners=True`` (as PyTorch's ``F.upsample_bilinear``)."""
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


# ====================================================================== grid_sample

def _unnormalize(coord, size, align_corners):
    if align_corners:
        return (coord + 1) * ((size - 1) / 2)
    return ((coord + 1) * size - 1) / 2


def _reflect(coord, twice_low, twice_high):
    """PyTorch's reflect_coordinates on Tensors (differentiable)."""
    from ... import autodiff as ad
    if twice_low == twice_high:
        return coord * 0
    mn = twice_low / 2
    span = (twice_high - twice_low) / 2
    c = ad.abs(coord - mn)
    extra = ad.remainder(c, span)
    flips = np.floor(c._data / span)
    even = _const((flips % 2) == 0, c)
    return even * (extra + mn) + (1 - even) * (span - extra + mn)


def _source_coord(coord, size, padding_mode, align_corners):
    from ... import autodiff as ad
    c = _unnormalize(coord, size, align_corners)
    if padding_mode == "border":
        c = ad.clamp(c, 0, size - 1)
    elif padding_mode == "reflection":
        c = _reflect(c, 0, 2 * (size - 1)) if align_corners else _reflect(c, -1, 2 * size - 1)
        c = ad.clamp(c, 0, size - 1)
    return c


def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=None):  # noqa: A002
    """Sample ``input`` at the points of ``grid``, as ``torch.nn.functional.grid_sample``.

    2-D: input [N, C, H, W], grid [N, Ho, Wo, 2] -> [N, C, Ho, Wo]; 3-D: input
    [N, C, D, H, W], grid [N, Do, Ho, Wo, 3] -> [N, C, Do, Ho, Wo]. Grid values are
    normalized coordinates in [-1, 1], last dim ordered (x, y[, z]) = (width, height[,
    depth]). ``mode``: 'bilinear' (trilinear for 3-D) or 'nearest'; ``padding_mode``:
    'zeros', 'border' or 'reflection'; ``align_corners`` (default False): whether -1 and 1
    are the centres (True) or the outer edges (False) of the corner pixels.
    Differentiable w.r.t. ``input`` and (bilinear) ``grid``."""
    if not isinstance(input, Tensor) or not isinstance(grid, Tensor):
        raise TypeError("grid_sample: input and grid must be Tensors, got "
                        f"{type(input).__name__} and {type(grid).__name__}")
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"grid_sample: mode must be 'bilinear' or 'nearest', got {mode!r}")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(f"grid_sample: padding_mode must be 'zeros', 'border' or 'reflection', got "
                         f"{padding_mode!r}")
    if input.ndim not in (4, 5):
        raise RuntimeError(f"grid_sample: expected a 4-D [N, C, H, W] or 5-D [N, C, D, H, W] input, got "
                           f"input of shape {list(input.shape)}")
    nd = input.ndim - 2
    if grid.ndim != input.ndim or grid.shape[-1] != nd:
        raise RuntimeError(f"grid_sample: for a {input.ndim}-D input (shape {list(input.shape)}) grid must "
                           f"be {input.ndim}-D with last dim {nd}, [N, {', '.join(['*'] * nd)}, {nd}], got "
                           f"grid of shape {list(grid.shape)}")
    if grid.shape[0] != input.shape[0]:
        raise RuntimeError(f"grid_sample: input and grid must have the same batch size, got input "
                           f"{list(input.shape)} and grid {list(grid.shape)}")
    if input.dtype.kind != "f" or grid.dtype != input.dtype:
        raise RuntimeError(f"grid_sample: input ({input.dtype}) and grid ({grid.dtype}) must have the same "
                           "floating dtype")
    if any(s == 0 for s in input.shape[2:]):
        raise RuntimeError(f"grid_sample: input has an empty spatial dim (shape {list(input.shape)})")
    align_corners = bool(align_corners)
    if mode == "bilinear":
        return apply(_gs_op, (input, grid), dict(padding_mode=padding_mode, align_corners=align_corners))
    return _grid_sample_composite(input, grid, mode, padding_mode, align_corners)


def _grid_sample_composite(input, grid, mode, padding_mode, align_corners):  # noqa: A002
    """grid_sample as a composition of differentiable diffsim ops (nearest mode, and the
    double backward of the bilinear op)."""
    from ... import autodiff as ad
    xp = get_xp(input._data)
    nd = input.ndim - 2
    N, C = input.shape[:2]
    S = input.shape[2:]                      # (H, W) or (D, H, W)
    sizes = S[::-1]                          # per grid component: (W, H[, D])
    out_sp = grid.shape[1:-1]
    P = math.prod(out_sp)
    # source coordinates per component (Tensors, differentiable w.r.t. grid)
    coords = [_source_coord(grid[..., i], sizes[i], padding_mode, align_corners) for i in range(nd)]
    # element strides of the flattened channels-last input [N, *S] for components (x, y[, z])
    strides = []
    st = 1
    for s_ in sizes:
        strides.append(st)
        st *= s_
    base = (xp.arange(N) * math.prod(S)).reshape((N,) + (1,) * nd)
    table = input.movedim(1, -1).reshape(N * math.prod(S), C)       # [N*S, C]
    if mode == "nearest":
        flat = base
        valid = None
        for i in range(nd):
            r = xp.round(coords[i]._data)          # round half to even, like nearbyint
            ok = (r >= 0) & (r <= sizes[i] - 1)
            valid = ok if valid is None else valid & ok
            flat = flat + xp.clip(r, 0, sizes[i] - 1).astype(np.int64) * strides[i]
        vals = ad.index_select(table, 0, Tensor._make(flat.reshape(-1), False, None, 0))   # [N*P, C]
        if padding_mode == "zeros":
            vals = vals * _const(valid.reshape(-1, 1), input)
        out = vals.reshape((N,) + tuple(out_sp) + (C,))
        return out.movedim(-1, 1)
    # bilinear / trilinear: 2**nd corners
    lo, t, ok0, ok1 = [], [], [], []
    for i in range(nd):
        fl = xp.floor(coords[i]._data)
        t.append(coords[i] - _const(fl, coords[i]))                 # fractional part, carries d/dgrid
        f = xp.clip(fl, -2, sizes[i]).astype(np.int64)          # keeps both corners outside
        lo.append(f)
        ok0.append((f >= 0) & (f <= sizes[i] - 1))
        ok1.append((f + 1 >= 0) & (f + 1 <= sizes[i] - 1))
    idx_all, w_all = [], []
    for bits in itertools.product((0, 1), repeat=nd):
        flat = base
        valid = None
        w = None
        for i, b in enumerate(bits):
            ci = lo[i] + b
            ok = ok1[i] if b else ok0[i]
            valid = ok if valid is None else valid & ok
            flat = flat + xp.clip(ci, 0, sizes[i] - 1) * strides[i]
            wi = t[i] if b else 1 - t[i]
            w = wi if w is None else w * wi
        # (with border/reflection the +1 corner may still fall outside, with weight 0)
        w = w * _const(valid, w)
        idx_all.append(flat.reshape(-1))
        w_all.append(w.reshape(-1))
    K = len(idx_all)
    idx = Tensor._make(xp.concatenate(idx_all), False, None, 0)
    vals = ad.index_select(table, 0, idx).reshape(K, N * P, C)
    weights = ad.stack(w_all, 0).reshape(K, N * P, 1)
    out = (vals * weights).sum(0)                                     # [N*P, C]
    out = out.reshape((N,) + tuple(out_sp) + (C,))
    return out.movedim(-1, 1)



# ---------------------------------------------------------------- bilinear op (raw arrays)

def _gs_coords(xp, grid, sizes, padding_mode, align_corners):
    """Per grid component: source pixel coordinate and its derivative w.r.t. the grid value
    (PyTorch's compute_coordinates with ..._set_grad)."""
    out = []
    for i, size in enumerate(sizes):
        g = grid[..., i]
        if align_corners:
            src, d = (g + 1) * ((size - 1) / 2), (size - 1) / 2
        else:
            src, d = ((g + 1) * size - 1) / 2, size / 2
        d = xp.full(src.shape, d, src.dtype)
        if padding_mode == "reflection":
            lo2, hi2 = (0, 2 * (size - 1)) if align_corners else (-1, 2 * size - 1)
            if lo2 == hi2:
                src = xp.zeros_like(src)
                d = xp.zeros_like(d)
            else:
                mn, span = lo2 / 2, (hi2 - lo2) / 2
                c = src - mn
                neg = c < 0
                c = xp.abs(c)
                extra = xp.fmod(c, span)
                odd = (xp.floor(c / span) % 2) == 1
                src = (xp.where(odd, span - extra, extra) + mn).astype(d.dtype, copy=False)
                d = d * xp.where(neg != odd, -1, 1).astype(d.dtype)
        if padding_mode in ("border", "reflection"):
            inside = (src > 0) & (src < size - 1)
            src = xp.clip(src, 0, size - 1)
            d = d * inside
        out.append((src, d))
    return out


def _gs_corners(xp, input_shape, coords):
    """Corner table rows [K][N*P] (invalid corners -> the zero row N*S), the per-dim
    fractional parts, and the corners' bit patterns."""
    N = input_shape[0]
    S = input_shape[2:]
    sizes = S[::-1]
    nd = len(S)
    nS = math.prod(S)
    itype = np.int32 if N * nS < 2 ** 31 - 1 else np.int64
    strides = [math.prod(sizes[:i]) for i in range(nd)]
    out_sp = coords[0][0].shape[1:]
    P = math.prod(out_sp)
    base = xp.repeat(xp.arange(N, dtype=itype) * nS, P)
    t, offs, oks = [], [], []
    for i, ((src, _), size) in enumerate(zip(coords, sizes)):
        src = src.reshape(-1)
        fl = xp.floor(src)
        t.append(src - fl)
        lo = xp.clip(fl, -2, size).astype(itype)
        ok0 = (lo >= 0) & (lo < size)
        ok1 = (lo >= -1) & (lo < size - 1)
        off0 = lo * itype(strides[i]) if strides[i] != 1 else lo
        offs.append((off0, off0 + itype(strides[i])))
        oks.append((ok0, ok1))
    idx = []
    bits_all = list(itertools.product((0, 1), repeat=nd))
    for bits in bits_all:
        flat = base + offs[0][bits[0]]
        valid = oks[0][bits[0]]
        for i in range(1, nd):
            flat += offs[i][bits[i]]
            valid = valid & oks[i][bits[i]]
        idx.append(xp.where(valid, flat, itype(N * nS)))
    return idx, t, bits_all


def _gs_weights(t, bits, skip=None):
    w = None
    for i, b in enumerate(bits):
        if i == skip:
            continue
        f = t[i] if b else 1 - t[i]
        w = f if w is None else w * f
    return w


def _gs_table(x):
    """[N, C, *S] -> channels-last rows [N*S + 1, C] with a zero last row."""
    xp = get_xp(x)
    N, C = x.shape[:2]
    nS = math.prod(x.shape[2:])
    table = xp.empty((N * nS + 1, C), x.dtype)
    table[:-1].reshape(N, nS, C)[...] = x.reshape(N, C, nS).transpose(0, 2, 1)
    table[-1] = 0
    return table


def _gs_fwd(x, grid, padding_mode, align_corners):
    xp = get_xp(x)
    N, C = x.shape[:2]
    sizes = x.shape[2:][::-1]
    coords = _gs_coords(xp, grid, sizes, padding_mode, align_corners)
    idx, t, bits_all = _gs_corners(xp, x.shape, coords)
    table = _gs_table(x)
    out = None
    for k, bits in enumerate(bits_all):
        v = xp.take(table, idx[k], axis=0)                      # [N*P, C]
        v *= _gs_weights(t, bits)[:, None]
        out = v if out is None else xp.add(out, v, out=out)
    out_sp = grid.shape[1:-1]
    return xp.moveaxis(out.reshape((N,) + tuple(out_sp) + (C,)), -1, 1)


def _gs_bwd_raw(g, x, grid, padding_mode, align_corners, need):
    from ...autodiff.ops.indexing import _segment_sum_array
    xp = get_xp(x)
    N, C = x.shape[:2]
    nd = x.ndim - 2
    nS = math.prod(x.shape[2:])
    sizes = x.shape[2:][::-1]
    coords = _gs_coords(xp, grid, sizes, padding_mode, align_corners)
    idx, t, bits_all = _gs_corners(xp, x.shape, coords)
    gcl = xp.moveaxis(g, 1, -1).reshape(-1, C)                   # [N*P, C]
    gx = ggrid = None
    if need[0]:
        data = xp.concatenate([gcl * _gs_weights(t, bits)[:, None] for bits in bits_all])
        tab = _segment_sum_array(data, xp.concatenate(idx), N * nS + 1)[:-1]
        gx = xp.ascontiguousarray(xp.moveaxis(tab.reshape((N,) + tuple(x.shape[2:]) + (C,)), -1, 1))
    if len(need) > 1 and need[1]:
        table = _gs_table(x)
        dsrc = [xp.zeros(gcl.shape[0], x.dtype) for _ in range(nd)]
        for k, bits in enumerate(bits_all):
            dot = xp.einsum("pc,pc->p", xp.take(table, idx[k], axis=0), gcl)   # [N*P]
            for i in range(nd):
                f = dot if nd == 1 else dot * _gs_weights(t, bits, skip=i)
                if bits[i]:
                    dsrc[i] += f
                else:
                    dsrc[i] -= f
        ggrid = xp.stack([dsrc[i].reshape(grid.shape[:-1]) * coords[i][1] for i in range(nd)], -1)
    return gx, ggrid


_gs_op = defop("grid_sample", _gs_fwd, save=(0, 1))


@_gs_op.defvjp
def _(ns, node, g, x, grid):
    a = node.attrs
    need = node.needs_input_grad
    if ns is RAW_NS:
        return _gs_bwd_raw(g, x, grid, a["padding_mode"], a["align_corners"], need)
    # create_graph: differentiate the composite formulation (same values), which records a graph
    from ...autodiff.engine import grad as _grad
    from ...autodiff.grad_mode import enable_grad
    with enable_grad():
        y = _grid_sample_composite(x, grid, "bilinear", a["padding_mode"], a["align_corners"])
        wrt = [t for t, n in zip((x, grid), need) if n]
        gs = list(_grad(y, wrt, g, create_graph=True, allow_unused=True, materialize_grads=True))
    return tuple(gs.pop(0) if n else None for n in need)


def affine_grid(theta, size, align_corners=None):
    """Sampling grid for ``grid_sample`` from affine matrices, as ``torch.nn.functional.affine_grid``:
    theta [N, 2, 3] and size (N, C, H, W) -> grid [N, H, W, 2]; theta [N, 3, 4] and size
    (N, C, D, H, W) -> grid [N, D, H, W, 3]. Differentiable w.r.t. ``theta``."""
    if not isinstance(theta, Tensor):
        raise TypeError(f"affine_grid: theta must be a Tensor, got {type(theta).__name__}")
    size = tuple(int(s) for s in size)
    nd = len(size) - 2
    if nd not in (2, 3) or theta.ndim != 3 or tuple(theta.shape[1:]) != (nd, nd + 1) or \
            theta.shape[0] != size[0]:
        raise RuntimeError(f"affine_grid: expected theta [N, 2, 3] with size (N, C, H, W) or theta [N, 3, 4] "
                           f"with size (N, C, D, H, W), got theta of shape {list(theta.shape)} and size {size}")
    if theta.dtype.kind != "f":
        raise RuntimeError(f"affine_grid: theta must be floating point, got dtype {theta.dtype}")

    def lin(n):
        if n <= 1:
            return np.zeros(max(n, 0))
        v = np.linspace(-1.0, 1.0, n)
        return v if align_corners else v * (n - 1) / n
    sp = size[2:][::-1]                                   # (W, H[, D])
    axes = [lin(n) for n in sp]
    mesh = np.meshgrid(*axes[::-1], indexing="ij")        # each [D?, H, W]
    comps = list(mesh[::-1]) + [np.ones_like(mesh[0])]    # x, y[, z], 1
    base = np.stack(comps, -1).reshape(-1, nd + 1)        # [P, nd+1]
    b = _const(base, theta)
    grid = b @ theta.transpose(1, 2)                      # [N, P, nd]
    return grid.reshape((size[0],) + tuple(size[2:]) + (nd,))
