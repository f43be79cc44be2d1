"""Indexing: ``x[idx]`` and ``x[idx] = v`` (differentiable), gather/scatter family, segment sums."""
from __future__ import annotations

import numbers

import numpy as np

from ..backend import get_xp
from ..function import apply, defop
from ..grad_mode import STATE
from ..tensor import Tensor
from ._util import check_tensor, method


def _convert_index(x, index):
    """Tensor/list index -> arrays; bool masks -> their nonzero() components.
    Returns (index, basic, unique) where basic means numpy returns a view and unique means no
    element can be addressed twice (so the adjoint needs no accumulation)."""
    items = index if isinstance(index, tuple) else (index,)
    out = []
    basic = True
    unique = True
    n_adv = 0
    xp = get_xp(x._data)
    for it in items:
        if isinstance(it, Tensor):
            if type(it._data) is not type(x._data):
                raise RuntimeError(f"getitem: indices are on {it.device} but the tensor is on {x.device}")
            it = it._data
        elif isinstance(it, list):
            it = xp.asarray(it)
            if it.size == 0:
                it = it.astype(np.int64)
        elif isinstance(it, np.ndarray) and xp is not np:
            it = xp.asarray(it)
        if hasattr(it, "dtype") and not isinstance(it, np.generic):
            basic = False
            if it.dtype.kind == "b":
                out.extend(it.nonzero())
                continue
            if it.dtype.kind not in "iu":
                raise IndexError(f"getitem: tensors used as indices must be long, int or bool, got "
                                 f"dtype {it.dtype}")
            n_adv += 1
            unique = False
            out.append(it)
        elif it is None or it is Ellipsis or isinstance(it, (slice, numbers.Integral)):
            if isinstance(it, bool):
                basic, unique = False, False
            out.append(it)
        else:
            raise IndexError(f"getitem: unsupported index of type {type(it).__name__}: {it!r}; use ints, "
                             "slices, None, Ellipsis, integer or bool tensors")
    return tuple(out), basic, unique


def _index_error(x, index, e):
    return IndexError(f"getitem: {e} (tensor shape {list(x.shape)}, index {index!r})")


_getitem_view = defop("getitem", lambda x, index, in_shape, unique: x[index], view=True)
_getitem_copy = defop("index", lambda x, index, in_shape, unique: x[index])


def _getitem_bwd(ns, n, g):
    a = n.attrs
    return (ns.index_put_into(a["in_shape"], a["index"], g, not a["unique"]),)


_getitem_view.defvjp(_getitem_bwd)
_getitem_copy.defvjp(_getitem_bwd)


def getitem(x, index):
    """``x[index]``: basic indexing gives a view, integer/bool tensors give a copy; both are
    differentiable (repeated integer indices accumulate their gradients)."""
    idx, basic, unique = _convert_index(x, index)
    try:
        return apply(_getitem_view if basic else _getitem_copy, (x,),
                     {"index": idx, "in_shape": x.shape, "unique": unique})
    except IndexError as e:
        raise _index_error(x, index, e) from None


def _index_put_fwd(x, v, index, v_shape, accumulate):
    out = x.copy()
    if accumulate:
        get_xp(x).add.at(out, index, v)
    else:
        out[index] = v
    return out


_index_put = defop("index_put", _index_put_fwd)


@_index_put.defvjp
def _(ns, n, g):
    a = n.attrs
    index = a["index"]
    gsel = ns.getitem(g, index)
    gx = g if a["accumulate"] else g - ns.index_put_into(g.shape, index, gsel, False)
    gv = None
    if n.edges[1] is not None:
        gv = ns.sum_to(gsel, a["v_shape"]) if gsel.shape != a["v_shape"] else gsel
    return gx, gv


def setitem(x, index, value):
    """``x[index] = value`` in place; differentiable w.r.t. ``x``'s other entries and ``value``."""
    idx, basic, unique = _convert_index(x, index)
    x._check_inplace("setitem")
    if isinstance(value, Tensor):
        if type(value._data) is not type(x._data):
            raise RuntimeError(f"setitem: value is on {value.device} but the tensor is on {x.device}")
        if value._data.dtype != x._data.dtype:
            from .elementwise import astype
            value = astype(value, x._data.dtype)
    needs_graph = STATE.grad_enabled and (x._rg or (isinstance(value, Tensor) and value._rg))
    try:
        if not needs_graph:
            x._data[idx] = value._data if isinstance(value, Tensor) else value
            x._version[0] += 1
            return
        if not isinstance(value, Tensor):
            value = Tensor._make(get_xp(x._data).asarray(value, dtype=x._data.dtype), False, None, 0)
        try:
            np.broadcast_shapes(value.shape, x._data[idx].shape)
        except ValueError:
            raise RuntimeError(f"setitem: shape mismatch: value of shape {list(value.shape)} cannot be "
                               f"broadcast to indexing result of shape {list(x._data[idx].shape)}") from None
        res = apply(_index_put, (x, value), {"index": idx, "v_shape": value.shape, "accumulate": False})
    except IndexError as e:
        raise _index_error(x, index, e) from None
    x._become(res, "setitem")


def index_put(x, indices, values, accumulate=False):
    """Out-of-place ``x[indices] = values`` (``accumulate=True`` adds, repeated indices too)."""
    idx, _, _ = _convert_index(x, tuple(indices))
    if not isinstance(values, Tensor):
        values = Tensor._make(get_xp(x._data).asarray(values, dtype=x._data.dtype), False, None, 0)
    return apply(_index_put, (x, values), {"index": idx, "v_shape": values.shape, "accumulate": accumulate})


Tensor.__getitem__ = getitem
Tensor.__setitem__ = setitem
Tensor.index_put = index_put


def segment_sum_array(data, segment_ids, num_segments):
    """Sum rows of ``data`` [N, ...] into ``num_segments`` bins by ``segment_ids`` [N] (raw arrays)."""
    xp = get_xp(data)
    flat = data.reshape(data.shape[0], -1)
    if xp is np:
        if flat.shape[1] == 1 or flat.dtype.kind != "f":
            out = np.zeros((num_segments, flat.shape[1]), flat.dtype)
            for j in range(flat.shape[1]):
                out[:, j] = np.bincount(segment_ids, flat[:, j], minlength=num_segments)[:num_segments]
            return out.reshape((num_segments,) + data.shape[1:]).astype(data.dtype, copy=False)
        # one bincount over (segment, column) pairs: vectorized, no np.add.at
        k = flat.shape[1]
        keys = (segment_ids[:, None] * k + np.arange(k)).ravel()
        out = np.bincount(keys, flat.ravel(), minlength=num_segments * k)[:num_segments * k]
        return out.reshape((num_segments,) + data.shape[1:]).astype(data.dtype, copy=False)
    out = xp.zeros((num_segments,) + data.shape[1:], data.dtype)
    xp.add.at(out, segment_ids, data)
    return out
