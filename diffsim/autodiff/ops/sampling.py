"""Sampling a regular grid at arbitrary points: multilinear (linear, bilinear, trilinear)
interpolation, one op differentiable w.r.t. both the grid values and the points.

``sample_grid(values, coords, boundary)`` is the one implementation behind
``physics.grid.sample`` / ``sample_index`` and ``render.volume.trilinear_interpolate``.
Coordinates are in *index units*: along an axis of size ``n`` the node ``j`` sits at
coordinate ``j`` (``0 .. n - 1``). The forward and the backward are vectorized over the
points (2^d corner gathers; the values' gradient is one ``bincount``); under
``create_graph=True`` the backward differentiates a composite formulation built from diffsim
ops (same values), so gradients of gradients work w.r.t. values and coords.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from ..backend import get_xp
from ..function import apply, defop
from ..rawops import RAW_NS
from ..tensor import Tensor

BOUNDARY_MODES = ("clamp", "zero", "wrap")

_CHANNELS = {}


def _channel_offsets(xp, M, C):
    """``[0, 1, ..., C-1]`` repeated to length M (memoized: broadcasting over a tiny last dim is slow)."""
    key = (xp.__name__, M, C)
    arr = _CHANNELS.get(key)
    if arr is None:
        if len(_CHANNELS) > 64:
            _CHANNELS.clear()
        arr = _CHANNELS[key] = xp.tile(xp.arange(C, dtype=np.int64), M // C)
    return arr


def _corners(xp, pos, shape, modes, C=1, channelwise=True):
    """Multilinear corners of index-space points ``pos [M, d]`` (raw array) in a field
    ``[*shape, C]``. ``channelwise``: M = P * C points, channel fastest, and the corner indices
    are flat indices into the field (channel offset included); otherwise they index the rows
    ``[prod(shape), C]``. Returns ``(idx, t, mask, inside, bits)``: per corner the index, per
    axis the fractional part ``t`` and the coordinate-gradient mask (None: no clamping), the
    inside mask of ``"zero"`` axes (None: all inside) and the corner bit patterns."""
    d = len(shape)
    unit = C if channelwise else 1
    strides = [math.prod(shape[a + 1:]) * unit for a in range(d)]
    cols = xp.ascontiguousarray(pos.T) if d > 1 else pos.reshape(1, -1)
    base, delta, t, mask, inside = None, [], [], [], None
    for a in range(d):
        p, n, mode = cols[a], shape[a], modes[a]
        if mode == "wrap":
            f = xp.floor(p)
            ta = p - f
            ia = f.astype(np.int64) % n
            da = xp.where(ia == n - 1, (1 - n) * strides[a], strides[a])
            ma = None
        elif n == 1:
            ia = xp.zeros(p.shape, np.int64)
            ta = xp.zeros_like(p)
            da = 0
            ma = xp.zeros(p.shape, bool)
            if mode == "zero":
                ok = p == 0
                inside = ok if inside is None else inside & ok
        else:
            pc = xp.clip(p, 0, n - 1)
            f = xp.floor(pc)
            xp.minimum(f, n - 2, out=f)
            ta = pc - f
            ia = f.astype(np.int64)
            da = strides[a]
            ok = pc == p
            ma = None if bool(xp.all(ok)) else ok
            if mode == "zero":
                if ma is not None:
                    inside = ma if inside is None else inside & ma
                ma = None
        if strides[a] != 1:
            ia *= strides[a]
        base = ia if base is None else xp.add(base, ia, out=base)
        delta.append(da)
        t.append(ta)
        mask.append(ma)
    if channelwise and C > 1:
        base += _channel_offsets(xp, base.shape[0], C)
    bits_all = list(itertools.product((0, 1), repeat=d))
    idx = []
    for bits in bits_all:
        f = base
        for a in range(d):
            if bits[a]:
                f = f + delta[a]
        idx.append(f)
    return idx, t, mask, inside, bits_all


def _weight(t, bits, skip=None):
    w = None
    for a, b in enumerate(bits):
        if a == skip:
            continue
        v = t[a] if b else 1 - t[a]
        w = v if w is None else w * v
    return w


class _SampleCache:
    """Corner indices and weights computed by the forward, reused by the backward (held by the
    graph node)."""
    __slots__ = ("setup",)

    def __init__(self):
        self.setup = None


def _flat(C, channelwise):
    return channelwise or C == 1


def _setup(xp, f, pos, modes, channelwise, cache):
    if cache is not None and cache.setup is not None:
        return cache.setup
    S, C = f.shape[:-1], f.shape[-1]
    flat = _flat(C, channelwise)
    p = pos.reshape(-1, len(S))
    idx, t, mask, inside, bits_all = _corners(xp, p, S, modes, C, flat)
    w = [_weight(t, bits) for bits in bits_all]
    if inside is not None:
        w = [wk * inside for wk in w]
    out = (idx, t, mask, inside, bits_all, w)
    if cache is not None:
        cache.setup = out
    return out


def _out_shape(f, pos, channelwise):
    return tuple(pos.shape[:-1]) if channelwise else tuple(pos.shape[:-1]) + (f.shape[-1],)


def _sample_fwd(f, pos, modes, channelwise, cache=None):
    """f [*S, C], pos [..., d] (or [..., C, d] channelwise) -> [..., C]."""
    xp = get_xp(f)
    idx, _, _, _, _, w = _setup(xp, f, pos, modes, channelwise, cache)
    C = f.shape[-1]
    out = None
    if _flat(C, channelwise):
        table = f.reshape(-1)
        for k in range(len(idx)):
            v = xp.take(table, idx[k])
            v *= w[k]
            out = v if out is None else xp.add(out, v, out=out)
    else:
        table = f.reshape(-1, C)
        for k in range(len(idx)):
            v = xp.take(table, idx[k], axis=0)
            v *= w[k][:, None]
            out = v if out is None else xp.add(out, v, out=out)
    return out.reshape(_out_shape(f, pos, channelwise))


def _sample_bwd_raw(g, f, pos, modes, channelwise, need, cache=None):
    xp = get_xp(f)
    S, C = f.shape[:-1], f.shape[-1]
    d = len(S)
    flat = _flat(C, channelwise)
    idx, t, mask, inside, bits_all, w = _setup(xp, f, pos, modes, channelwise, cache)
    gl = g.reshape(-1) if flat else g.reshape(-1, C)
    gf = gp = None
    if need[0]:
        M = gl.size
        data = xp.empty(len(w) * M, np.float64)          # bincount accumulates in float64 anyway
        for k, wk in enumerate(w):
            xp.multiply(gl, wk if flat else wk[:, None], out=data[k * M:(k + 1) * M].reshape(gl.shape))
        if flat:
            where = xp.concatenate(idx)
        else:
            offs = xp.arange(C, dtype=np.int64)
            where = xp.concatenate([(ik * C)[:, None] + offs for ik in idx]).reshape(-1)
        gf = xp.bincount(where, weights=data, minlength=f.size).astype(f.dtype, copy=False)
        gf = gf.reshape(f.shape)
    if need[1]:
        table = f.reshape(-1) if flat else f.reshape(-1, C)
        n_pts = gl.shape[0]
        cols = [xp.zeros(n_pts, dtype=pos.dtype) for _ in range(d)]
        for k, bits in enumerate(bits_all):
            if flat:
                gv = xp.take(table, idx[k])
                gv *= gl
            else:
                gv = xp.einsum("pc,pc->p", xp.take(table, idx[k], axis=0), gl)
            for a in range(d):
                wa = gv if d == 1 else gv * _weight(t, bits, skip=a)
                if bits[a]:
                    cols[a] += wa
                else:
                    cols[a] -= wa
        for a in range(d):
            if mask[a] is not None:
                cols[a] *= mask[a]
            if inside is not None:
                cols[a] *= inside
        gp = xp.stack(cols, -1).reshape(pos.shape)
    return gf, gp


def _sample_composite(f, pos, modes, channelwise):
    """The same interpolation written with diffsim ops (used under ``create_graph``)."""
    from ..creation import as_tensor
    xp = get_xp(f._data)
    S, C = f.shape[:-1], f.shape[-1]
    d = len(S)
    flat = _flat(C, channelwise)
    p = pos.reshape(-1, d)
    idx, _, _, inside, bits_all = _corners(xp, p._data, S, modes, C, flat)
    t = []
    for a in range(d):
        pa, n = p[:, a], S[a]
        if modes[a] == "wrap":
            t.append(pa - xp.floor(pa._data))
        elif n == 1:
            t.append(pa * 0)
        else:
            pc = pa.clamp(0, n - 1)
            t.append(pc - xp.minimum(xp.floor(pc._data), n - 2))
    ins = None if inside is None else as_tensor(inside.astype(f._data.dtype), device=f.device)
    table = f.reshape(-1) if flat else f.reshape(-1, C)
    out = None
    for k, bits in enumerate(bits_all):
        wk = _weight(t, bits)
        if ins is not None:
            wk = wk * ins
        v = table[idx[k]] * (wk if flat else wk.unsqueeze(-1))
        out = v if out is None else out + v
    return out.reshape(_out_shape(f, pos, channelwise))


_sample_op = defop("sample_grid", _sample_fwd, save=(0, 1))


@_sample_op.defvjp
def _(ns, node, g, f, pos):
    need = node.needs_input_grad
    a = node.attrs
    if ns is RAW_NS:
        return _sample_bwd_raw(g, f, pos, a["modes"], a["channelwise"], need, a.get("cache"))
    # create_graph: differentiate the composite formulation (same values), which records a graph
    from ..engine import grad as _grad
    from ..grad_mode import enable_grad
    with enable_grad():
        y = _sample_composite(f, pos, a["modes"], a["channelwise"])
        wrt = [x for x, n in zip((f, pos), need) if n]
        gs = list(_grad(y, wrt, g, create_graph=True, allow_unused=True, materialize_grads=True))
    return tuple(gs.pop(0) if n else None for n in need)


def _describe(x):
    return f"{list(x.shape)} ({x.dtype})" if isinstance(x, Tensor) else type(x).__name__


def _modes(boundary, d):
    op = "sample_grid"
    modes = (boundary,) * d if isinstance(boundary, str) else tuple(boundary)
    if len(modes) != d:
        raise ValueError(f"{op}: boundary needs 1 or {d} entries for {d}-D coords, got {boundary!r}")
    for m in modes:
        if m not in BOUNDARY_MODES:
            raise ValueError(f"{op}: unknown boundary mode {m!r}; use one of {BOUNDARY_MODES}")
    return modes


def sample_grid(values, coords, boundary="clamp", channelwise=False):
    """Multilinear (linear / bilinear / trilinear) interpolation of a regular grid at points.

    Shapes (``d = coords.shape[-1]``, 1 to 3 spatial axes):

    * ``values [*S]`` (``S = (n_0, ..., n_{d-1})``, every ``n_a >= 1``), ``coords [..., d]``
      -> ``[...]``;
    * ``values [*S, C]`` (channels last), ``coords [..., d]`` -> ``[..., C]`` (every channel
      read at the same point);
    * ``channelwise=True``: ``values [*S, C]``, ``coords [..., C, d]`` -> ``[..., C]`` (channel
      ``c`` read at ``coords[..., c, :]``).

    ``coords`` are in index units: along axis ``a`` the node ``j`` (``values[..., j, ...]``)
    sits at coordinate ``j``, so ``0 <= coords[..., a] <= n_a - 1`` spans the grid and integer
    coords return node values exactly. ``boundary`` (one name, or one per axis) says what
    happens outside ``[0, n_a - 1]``:

    * ``"clamp"``: the coordinate is clamped to the edge (the field extends constantly; no
      coordinate gradient along that axis outside),
    * ``"zero"``: the point reads 0 (and gets no gradient) if it lies outside on any
      ``"zero"`` axis (a hard cut at the outermost nodes; points on them are inside),
    * ``"wrap"``: periodic with period ``n_a`` (node ``n_a - 1`` interpolates to node 0).

    ``values`` and ``coords`` are floating Tensors of one dtype on one device. Differentiable
    w.r.t. both (hand-written vectorized backward; gradients of gradients through a composite
    formulation under ``create_graph``). The gradient w.r.t. coords is the (one-sided, upper
    cell at a node) derivative of the piecewise-multilinear interpolant."""
    op = "sample_grid"
    if not isinstance(values, Tensor) or not isinstance(coords, Tensor):
        raise TypeError(f"{op}: values and coords must be Tensors, got {_describe(values)} and {_describe(coords)}")
    if coords.ndim < 1 or not 1 <= coords.shape[-1] <= 3:
        raise ValueError(f"{op}: coords must be [..., d] with d = 1, 2 or 3 spatial axes, got coords "
                         f"{list(coords.shape)} (values {list(values.shape)})")
    d = coords.shape[-1]
    if values.ndim not in ((d + 1,) if channelwise else (d, d + 1)):
        want = f"[*S, C] ({d + 1} dims)" if channelwise else f"[*S] or [*S, C] ({d} or {d + 1} dims)"
        raise ValueError(f"{op}: values {list(values.shape)} do not fit coords {list(coords.shape)}: "
                         f"for d = {d} values must be {want}")
    if 0 in tuple(values.shape):
        raise ValueError(f"{op}: values {list(values.shape)} must have no empty axis (coords {list(coords.shape)})")
    if channelwise and (coords.ndim < 2 or coords.shape[-2] != values.shape[-1]):
        raise ValueError(f"{op}: channelwise coords must be [..., C, {d}] with C = {values.shape[-1]} channels "
                         f"of values {list(values.shape)}, got {list(coords.shape)}")
    if not values.is_floating_point() or coords.dtype != values.dtype:
        raise ValueError(f"{op}: values ({values.dtype}) and coords ({coords.dtype}) must share one floating dtype")
    if values.device != coords.device:
        raise ValueError(f"{op}: values ({values.device}) and coords ({coords.device}) must be on one device")
    modes = _modes(boundary, d)
    scalar = values.ndim == d
    f = values.unsqueeze(-1) if scalar else values
    out = apply(_sample_op, (f, coords), {"modes": modes, "channelwise": bool(channelwise),
                                           "cache": _SampleCache()})
    return out.squeeze(-1) if scalar else out
