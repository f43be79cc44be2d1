"""The backward namespace on raw arrays (``ns`` in a plain backward).

Backward rules are written once against ``ns``. Under ``create_graph`` the engine passes
the Tensor-op namespace instead (``ops.TENSOR_NS``), which has exactly these names with the
same signatures, so every rule is differentiable again. Functions here use numpy calls
that dispatch to cupy through the array protocols, so one namespace serves both devices.
Add a function here only together with its Tensor twin (``ops/_tensor_ns.py``).
"""
from __future__ import annotations

import types

import numpy as np

from .backend import get_xp


def sum_to(g, shape):
    """Sum ``g`` over broadcast dimensions so that it has ``shape``."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape)
                                      if s == 1 and g.shape[i + lead] != 1)
    out = g.sum(axis=axes, keepdims=True) if axes else g
    if lead:
        out = out.reshape(out.shape[lead:])
    return out


def sum(x, dim=None, keepdim=False):  # noqa: A001
    return x.sum(axis=dim, keepdims=keepdim)


def reshape(x, shape):
    return x.reshape(shape)


def broadcast_to(x, shape):
    return np.broadcast_to(x, shape)


def unsqueeze(x, dim):
    return np.expand_dims(x, dim)


def permute(x, dims):
    return x.transpose(dims)


def transpose(x, dim0, dim1):
    return np.swapaxes(x, dim0, dim1)


def mT(x):
    return np.swapaxes(x, -1, -2)


def matmul(a, b):
    return a @ b


def zeros_like(x):
    return np.zeros_like(x)


def ones_like(x):
    return np.ones_like(x)


def zeros_meta(ref, shape, dtype):
    """Zeros of ``shape``/``dtype`` on the device of ``ref``."""
    return get_xp(ref).zeros(shape, dtype)


def astype(x, dtype):
    return x.astype(dtype, copy=False)


def to_device(x, device):
    from .backend import move
    return move(x, device)


def where(cond, a, b):
    return np.where(cond, a, b)


def getitem(x, index):
    return x[index]


def index_put_into(shape, index, values, accumulate=True):
    """Zeros of ``shape`` with ``values`` added at ``index`` (the adjoint of ``getitem``)."""
    out = get_xp(values).zeros(shape, values.dtype)
    if accumulate and _may_repeat(index):
        from .ops.indexing import _add_at
        _add_at(out, index, values)          # np.add.at, or cupy's add.at on the GPU
    else:
        out[index] = values
    return out


def _may_repeat(index):
    """True if an index may address one element twice (integer arrays do, slices don't)."""
    items = index if isinstance(index, tuple) else (index,)
    n_arrays = 0
    for it in items:
        if hasattr(it, "dtype") and it.dtype.kind in "iu":
            n_arrays += 1
        elif isinstance(it, (list, tuple)):
            n_arrays += 1
    return n_arrays > 0


def mask_fill(g, mask, value):
    """``g`` with ``value`` where ``mask`` is True (``mask`` broadcasts to ``g``)."""
    return np.where(mask, value, g)


def cat(arrays, dim=0):
    return np.concatenate(arrays, axis=dim)


def stack(arrays, dim=0):
    return np.stack(arrays, axis=dim)


def flip(x, dims):
    return np.flip(x, dims)


def roll(x, shifts, dims):
    return np.roll(x, shifts, dims)


def cumsum(x, dim):
    return np.cumsum(x, axis=dim)


def cumprod(x, dim):
    return np.cumprod(x, axis=dim)


def pad_dim(x, dim, before, after):
    """Zero-pad ``x`` along ``dim``."""
    widths = [(0, 0)] * x.ndim
    widths[dim] = (before, after)
    return np.pad(x, widths)


def tril(x, diagonal=0):
    return np.tril(x, diagonal)


def triu(x, diagonal=0):
    return np.triu(x, diagonal)


def diagonal(x, offset=0, dim1=0, dim2=1):
    return np.diagonal(x, offset, dim1, dim2)


def diag_embed(x, offset=0, dim1=-2, dim2=-1):
    """Place the last dim of ``x`` on the diagonal of new dims ``dim1``, ``dim2`` (PyTorch's)."""
    xp = get_xp(x)
    n = x.shape[-1] + abs(offset)
    out = xp.zeros(x.shape[:-1] + (n, n), x.dtype)
    idx = xp.arange(x.shape[-1])
    r, c = (idx, idx + offset) if offset >= 0 else (idx - offset, idx)
    out[..., r, c] = x
    nd = out.ndim
    d1, d2 = dim1 % nd, dim2 % nd
    if (d1, d2) != (nd - 2, nd - 1):
        out = np.moveaxis(out, (nd - 2, nd - 1), (d1, d2))
    return out


def einsum(eq, *operands):
    return np.einsum(eq, *operands, optimize=len(operands) > 2)


def gather(x, dim, index):
    """PyTorch's gather (``index`` may be smaller than ``x`` outside ``dim``)."""
    from .ops.indexing import _gather_array
    return _gather_array(x, dim, index)


def scatter_add_into(shape, dim, index, src):
    """Zeros of ``shape`` with ``src`` added at ``index`` along ``dim`` (adjoint of gather)."""
    from .ops.indexing import _scatter_add_array
    return _scatter_add_array(shape, dim, index, src)


def scatter(x, dim, index, src):
    """PyTorch's scatter: a copy of ``x`` with ``src`` (array or scalar) written at ``index``."""
    from .ops.indexing import _scatter_array
    return _scatter_array(x, dim, index, src)


def index_select(x, dim, index):
    return np.take(x, index, axis=dim)


def segment_sum(data, segment_ids, num_segments):
    """Rows of ``data`` summed into ``num_segments`` bins by ``segment_ids`` (the adjoint of
    ``index_select(., 0, segment_ids)``)."""
    from .ops.indexing import _segment_sum_array
    return _segment_sum_array(data, segment_ids, num_segments)


def solve(a, b):
    return get_xp(a).linalg.solve(a, b)


def cholesky_solve(b, L):
    xp = get_xp(b)
    y = xp.linalg.solve(L, b)
    return xp.linalg.solve(mT(L).conj(), y)


_UFUNC_NAMES = ["sin", "cos", "tan", "exp", "log", "sqrt", "abs", "sign", "square", "tanh",
                "cosh", "sinh", "reciprocal", "floor", "maximum", "minimum", "isfinite",
                "logical_and", "logical_or", "logical_not", "log1p", "expm1", "arctan2"]


def _build():
    ns = {name: getattr(np, name) for name in _UFUNC_NAMES}
    ns["reciprocal"] = lambda x: 1 / x
    for k, v in list(globals().items()):
        if callable(v) and not k.startswith("_") and k not in ("get_xp", "types", "annotations"):
            ns[k] = v
    ns.pop("np", None)
    return types.SimpleNamespace(**ns)


RAW_NS = _build()
NAMES = tuple(sorted(vars(RAW_NS)))
