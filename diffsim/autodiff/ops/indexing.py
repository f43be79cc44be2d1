"""Indexing: ``x[idx]`` and ``x[idx] = v`` (differentiable), the gather/scatter family, segment sums.

PyTorch's names, signatures and semantics: ``gather``, ``scatter``, ``scatter_add``,
``index_select``, ``index_add``, ``index_copy``, ``index_fill``, ``index_put``,
``take``, ``take_along_dim``, ``masked_fill``, ``masked_select``, ``nonzero``/``argwhere``,
their Tensor methods and in-place forms (``scatter_``, ``index_add_`` ...), plus
``segment_sum(data, segment_ids, num_segments)``, the scatter-add that particle codes need
(forces on particles from forces on springs/contacts).

Index tensors are ordinary (non-differentiable) inputs of the ops, so a tracer sees them.
Every backward is written with ``ns`` functions (``ns.gather``, ``ns.scatter_add_into``,
``ns.index_select``, ``ns.segment_sum``, ``ns.scatter``, ``ns.index_put_into``), so
gradients of gradients work. On the CPU the scatter-adds use ``np.bincount`` (much faster
than ``np.add.at``) for floating dtypes.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..backend import get_xp
from ..function import apply, defop
from ..grad_mode import STATE
from ..tensor import Tensor
from ._util import check_tensor, method, norm_dim
from .shape import _basic_view


# ====================================================================== x[idx], x[idx] = v

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
                if it.ndim == 0:            # numpy's scalar-bool index: a new dim of size 1 or 0
                    out.append(it)
                    continue
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


def _index_error(x, index, e, opname="getitem"):
    return IndexError(f"{opname}: {e} (tensor shape {list(x.shape)}, index {index!r})")


_getitem_view = defop("getitem", lambda x, index, in_shape, unique: _basic_view(x, index), view=True)
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
    if not basic and x.ndim and _is_rows_index(idx):
        return _take_rows(x, idx[0])
    try:
        return apply(_getitem_view if basic else _getitem_copy, (x,),
                     {"index": idx, "in_shape": x.shape, "unique": unique})
    except IndexError as e:
        raise _index_error(x, index, e) from None


def _is_rows_index(idx):
    """``x[ids]`` / ``x[ids, :, ...]`` with one integer array on dim 0: the gather of particle
    codes, whose backward is a segment sum (bincount) instead of ``add.at``."""
    first = idx[0] if idx else None
    if not (hasattr(first, "dtype") and not isinstance(first, np.generic) and first.dtype.kind in "iu"
            and first.ndim >= 1):
        return False
    return all(it is Ellipsis or (isinstance(it, slice) and it == slice(None)) for it in idx[1:])


def _take_rows(x, ids):
    n = x.shape[0]
    neg = _check_range(ids, n, "getitem", 0, x, negative=True)
    flat = ids.reshape(-1)
    if neg:
        flat = get_xp(flat).where(flat < 0, flat + n, flat)
    out = apply(_index_select, (x, Tensor._make(flat, False, None, 0)), {"dim": 0, "size": n})
    if ids.ndim != 1:
        from .shape import reshape
        out = reshape(out, ids.shape + x.shape[1:])
    return out


def _index_put_fwd(x, v, index, v_shape, accumulate):
    out = x.copy()
    if accumulate:
        _add_at(out, index, v)
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
        raise _index_error(x, index, e, "setitem") from None
    x._become(res, "setitem")


def index_put(input, indices, values, accumulate=False):  # noqa: A002
    """Out-of-place ``input[indices] = values`` (``accumulate=True`` adds, repeated indices
    too). ``indices``: a tuple of index tensors (or ints/slices), as in ``x[indices]``."""
    x = check_tensor(input, "index_put")
    if not isinstance(indices, (tuple, list)):
        raise TypeError(f"index_put: indices must be a tuple of tensors, got {type(indices).__name__}")
    try:
        idx, _, _ = _convert_index(x, tuple(indices))
    except IndexError as e:
        raise IndexError(str(e).replace("getitem:", "index_put:", 1)) from None
    if isinstance(values, Tensor):
        if type(values._data) is not type(x._data):
            raise RuntimeError(f"index_put: values are on {values.device} but the tensor is on {x.device}")
        if values._data.dtype != x._data.dtype:
            from .elementwise import astype
            values = astype(values, x._data.dtype)
    else:
        values = Tensor._make(get_xp(x._data).asarray(values, dtype=x._data.dtype), False, None, 0)
    try:
        target = x._data[idx].shape
    except IndexError as e:
        raise _index_error(x, tuple(indices), e, "index_put") from None
    try:
        np.broadcast_shapes(values.shape, target)
    except ValueError:
        raise RuntimeError(f"index_put: shape mismatch: values of shape {list(values.shape)} cannot be "
                           f"broadcast to indexing result of shape {list(target)}") from None
    return apply(_index_put, (x, values), {"index": idx, "v_shape": values.shape,
                                           "accumulate": bool(accumulate)})


Tensor.__getitem__ = getitem
Tensor.__setitem__ = setitem
Tensor.index_put = index_put


# ====================================================================== raw-array kernels

def _coords(index, dim):
    """The full coordinate tuple that puts ``index`` at ``dim`` (gather/scatter addressing)."""
    xp = get_xp(index)
    nd = index.ndim
    return tuple(index if k == dim else xp.arange(n).reshape((1,) * k + (n,) + (1,) * (nd - k - 1))
                 for k, n in enumerate(index.shape))


# dtypes cupy's add.at (an atomicAdd kernel) takes as they are; others go through a buffer
_CUPY_ADD_AT_DTYPES = frozenset(np.dtype(t) for t in ("int32", "uint32", "uint64", "float16",
                                                        "float32", "float64"))


def _add_at(out, index, values):
    """Unbuffered ``out[index] += values`` (repeated indices accumulate), numpy or cupy.

    cupy's ``add.at`` only takes int32, uint32, uint64, float16/32/64 (and int64 from cupy 14 on;
    it raises TypeError for bool, the small integers and complex): the others accumulate into a
    zero buffer of a supported dtype that is then added to ``out``, with numpy's results
    (integers wrap around, bool adds as logical or, complex adds its real and imaginary parts)."""
    if type(out) is np.ndarray:
        np.add.at(out, index, values)
        return
    import cupy as cp  # noqa: PLC0415 - only reached with cupy arrays
    dt = out.dtype
    values = cp.asarray(values)
    if dt in _CUPY_ADD_AT_DTYPES:
        cp.add.at(out, index, values.astype(dt, copy=False))
    elif dt.kind == "c":
        part = np.dtype(f"f{dt.itemsize // 2}")
        re, im = cp.zeros(out.shape, part), cp.zeros(out.shape, part)
        values = values.astype(dt, copy=False)
        cp.add.at(re, index, cp.ascontiguousarray(values.real))
        cp.add.at(im, index, cp.ascontiguousarray(values.imag))
        out += re + 1j * im
    elif dt.kind == "b":
        hits = cp.zeros(out.shape, cp.uint32)
        cp.add.at(hits, index, values.astype(cp.bool_, copy=False).astype(cp.uint32))
        out |= hits > 0
    elif dt.kind in "iu":
        # two's-complement sums mod 2**64 in a uint64 buffer, exact for every integer dtype
        acc = cp.zeros(out.shape, cp.uint64)
        cp.add.at(acc, index, cp.ascontiguousarray(values.astype(dt, copy=False).astype(cp.int64))
                  .view(cp.uint64))
        out += acc.view(cp.int64).astype(dt)
    else:
        raise TypeError(f"scatter-add: unsupported dtype {dt} on the GPU")


def _leading(a, shape):
    """``a[:shape[0], :shape[1], ...]`` (no copy when the shapes already agree)."""
    if a.shape == tuple(shape):
        return a
    return a[tuple(slice(0, s) for s in shape)]


def _bincount(keys, weights, n, dtype):
    """``out[k] += w`` for every (k, w) into ``n`` bins, by ``np.bincount`` (CPU, floating)."""
    if np.dtype(dtype).kind == "c":
        re = np.bincount(keys, weights.real, minlength=n)
        im = np.bincount(keys, weights.imag, minlength=n)
        out = re + 1j * im
    else:
        out = np.bincount(keys, weights, minlength=n)
    if out.shape[0] != n:           # only reachable by a raw call with unchecked indices
        raise IndexError(f"scatter-add: index {out.shape[0] - 1} is out of bounds for {n} entries")
    return out.astype(dtype, copy=False)


def _intp(index):
    return index if index.dtype == np.intp else index.astype(np.intp)


def _gather_array(x, dim, index):
    """PyTorch's gather on arrays: ``out[i][j] = x[index[i][j]][j]`` (for dim 0); ``index`` may be
    smaller than ``x`` in the other dims; the output has ``index``'s shape."""
    if index.ndim == 0:
        return _gather_array(x.reshape(1), 0, index.reshape(1)).reshape(())
    if x.ndim == 0:
        x = x.reshape(1)
    sl = tuple(slice(None) if d == dim else slice(0, index.shape[d]) for d in range(x.ndim))
    if any(index.shape[d] != x.shape[d] for d in range(x.ndim) if d != dim):
        x = x[sl]
    return np.take_along_axis(x, index, axis=dim)


def _scatter_add_array(shape, dim, index, src):
    """Zeros of ``shape`` with ``src`` (its leading ``index.shape`` block) added at ``index`` along
    ``dim``: the adjoint of ``_gather_array``. Repeated indices accumulate."""
    shape = tuple(shape)
    xp = get_xp(src)
    if index.ndim == 0:
        r = _scatter_add_array((1,), 0, index.reshape(1), xp.asarray(src).reshape(1))
        return r.reshape(shape)
    src = _leading(src, index.shape)
    if index.size == 0:
        return xp.zeros(shape, src.dtype)
    if xp is np and src.dtype.kind in "fc":
        strides = [1] * len(shape)
        for d in range(len(shape) - 2, -1, -1):
            strides[d] = strides[d + 1] * shape[d + 1]
        keys = _intp(index) * strides[dim]
        for d in range(index.ndim):
            if d != dim and index.shape[d] > 1:
                r = np.arange(index.shape[d]) * strides[d]
                keys = keys + r.reshape((-1,) + (1,) * (index.ndim - d - 1))
        out = _bincount(keys.ravel(), src.ravel(), math.prod(shape), src.dtype)
        return out.reshape(shape)
    out = xp.zeros(shape, src.dtype)
    _add_at(out, _coords(index, dim), src)
    return out


def _scatter_array(x, dim, index, src):
    """PyTorch's scatter on arrays: a copy of ``x`` with ``src`` (an array, its leading
    ``index.shape`` block, or a scalar) written at ``index`` along ``dim``."""
    if index.ndim == 0:
        s = src.reshape(1) if hasattr(src, "ndim") else src
        return _scatter_array(x.reshape(1), 0, index.reshape(1), s).reshape(x.shape)
    out = x.copy()
    if hasattr(src, "ndim") and src.ndim:
        src = _leading(src, index.shape)
    out[_coords(index, dim)] = src
    return out


_COLUMN_LIMIT = 8   # up to this many columns one bincount per column beats one over all pairs


def _segment_sum_array(data, segment_ids, num_segments):
    """Sum rows of ``data`` [N, ...] into ``num_segments`` bins by ``segment_ids`` [N] (raw arrays;
    ids must lie in ``[0, num_segments)``). CPU floating data uses ``np.bincount``."""
    xp = get_xp(data)
    tail = data.shape[1:]
    if xp is not np or data.dtype.kind not in "fc":
        out = xp.zeros((num_segments,) + tail, data.dtype)
        if segment_ids.size:
            _add_at(out, segment_ids, data)
        return out
    ids = _intp(segment_ids)
    k = math.prod(tail)
    flat = data.reshape(data.shape[0], k)
    if k == 1:
        out = _bincount(ids, flat[:, 0], num_segments, data.dtype)
    elif k <= _COLUMN_LIMIT:
        out = np.empty((num_segments, k), data.dtype)
        for j in range(k):
            out[:, j] = _bincount(ids, flat[:, j], num_segments, data.dtype)
    else:
        # one bincount over (segment, column) pairs: vectorized, no np.add.at
        keys = (ids[:, None] * k + np.arange(k)).ravel()
        out = _bincount(keys, flat.ravel(), num_segments * k, data.dtype)
    return out.reshape((num_segments,) + tail)


# ====================================================================== argument checks

def _as_index(index, x, opname, argname="index"):
    """An integer index (Tensor, list, array or int) -> an integer Tensor on ``x``'s device."""
    if isinstance(index, Tensor):
        if type(index._data) is not type(x._data):
            raise RuntimeError(f"{opname}: {argname} is on {index.device} but input is on {x.device}; "
                               "move it with .to(device)")
        t = index
    elif isinstance(index, (list, tuple, numbers.Integral, np.ndarray, np.generic)) or hasattr(
            index, "__cuda_array_interface__"):
        arr = get_xp(x._data).asarray(index)
        if arr.size == 0 and arr.dtype.kind == "f":
            arr = arr.astype(np.int64)
        t = Tensor._make(arr, False, None, 0)
    else:
        raise TypeError(f"{opname}: {argname} must be an integer Tensor, got {type(index).__name__}")
    if t._data.dtype.kind not in "iu":
        raise TypeError(f"{opname}: expected an integer (int64 or int32) tensor for {argname}, got "
                        f"dtype {t.dtype} (shape {list(t.shape)}); convert it with .long()")
    return t


def _check_range(idx, size, opname, dim, x, negative=False):
    """Raise IndexError naming ``opname`` if an entry of ``idx`` (array) is outside the valid range."""
    if idx.size == 0:
        return False
    lo, hi = int(idx.min()), int(idx.max())
    low = -size if negative else 0
    if lo < low or hi >= size:
        bad = lo if lo < low else hi
        raise IndexError(f"{opname}: index {bad} is out of bounds for dimension {dim} with size {size} "
                         f"(input shape {list(x.shape)})")
    return lo < 0


def _wrap_negative(t, size, has_negative):
    if not has_negative:
        return t
    d = t._data
    return Tensor._make(get_xp(d).where(d < 0, d + size, d), False, None, 0)


def _same_dtype(x, src, opname):
    if not isinstance(src, Tensor):
        raise TypeError(f"{opname}: src must be a Tensor, got {type(src).__name__}")
    if type(src._data) is not type(x._data):
        raise RuntimeError(f"{opname}: src is on {src.device} but input is on {x.device}")
    if src._data.dtype != x._data.dtype:
        raise RuntimeError(f"{opname}: expected self.dtype to be equal to src.dtype, got {x.dtype} and "
                           f"{src.dtype}; cast one of them with .to(dtype)")


def _check_gather_shapes(x, d, index, opname, src=None):
    """PyTorch's rule: same ndim; index no larger than input (except at dim) and than src."""
    if index.ndim != max(x.ndim, 1) and not (x.ndim == 0 and index.ndim == 0):
        raise RuntimeError(f"{opname}: index tensor must have the same number of dimensions as input "
                           f"tensor, got index shape {list(index.shape)} and input shape {list(x.shape)}")
    for k in range(x.ndim):
        if k != d and index.shape[k] > x.shape[k]:
            raise RuntimeError(f"{opname}: size does not match at dimension {k}: expected index "
                               f"{list(index.shape)} to be smaller than self {list(x.shape)} apart from "
                               f"dimension {d}")
    if src is not None:
        if src.ndim != index.ndim:
            raise RuntimeError(f"{opname}: index tensor must have the same number of dimensions as src "
                               f"tensor, got index shape {list(index.shape)} and src shape {list(src.shape)}")
        for k in range(index.ndim):
            if index.shape[k] > src.shape[k]:
                raise RuntimeError(f"{opname}: size does not match at dimension {k}: expected index "
                                   f"{list(index.shape)} to be smaller than src {list(src.shape)}")


def _pad_to(ns, t, shape):
    """``t`` placed in the leading block of zeros of ``shape`` (adjoint of ``_leading``)."""
    if tuple(t.shape) == tuple(shape):
        return t
    return ns.index_put_into(tuple(shape), tuple(slice(0, s) for s in t.shape), t, False)


# ====================================================================== gather / scatter

_gather = defop("gather", lambda x, index, dim, in_shape: _gather_array(x, dim, index), save=(1,))


@_gather.defvjp
def _(ns, n, g, index):
    return ns.scatter_add_into(n.attrs["in_shape"], n.attrs["dim"], index, g), None


@method()
def gather(input, dim, index, *, sparse_grad=False):  # noqa: A002
    """Values of ``input`` along ``dim`` at ``index``: ``out[i][j][k] = input[index[i][j][k]][j][k]``
    for dim 0 (PyTorch's gather). ``index`` has ``input``'s number of dims and is no larger in
    the other dims; the output has ``index``'s shape. The gradient is a scatter-add
    (``sparse_grad`` is accepted for compatibility; gradients are dense)."""
    x = check_tensor(input, "gather")
    d = norm_dim(dim, x.ndim, "gather")
    idx = _as_index(index, x, "gather")
    _check_gather_shapes(x, d, idx, "gather")
    _check_range(idx._data, x.shape[d] if x.ndim else 1, "gather", d, x)
    return apply(_gather, (x, idx), {"dim": d, "in_shape": x.shape})


_scatter = defop("scatter", lambda x, index, src, dim, src_shape: _scatter_array(x, dim, index, src),
                 save=(1,))


@_scatter.defvjp
def _(ns, n, g, index):
    a = n.attrs
    e = n.edges
    gx = ns.scatter(g, a["dim"], index, 0) if e[0] is not None else None
    gs = _pad_to(ns, ns.gather(g, a["dim"], index), a["src_shape"]) if e[2] is not None else None
    return gx, None, gs


_scatter_value = defop("scatter_value", lambda x, index, dim, value: _scatter_array(x, dim, index, value),
                       save=(1,))
_scatter_value.defvjp(lambda ns, n, g, index: (ns.scatter(g, n.attrs["dim"], index, 0), None))

_scatter_add = defop("scatter_add", lambda x, index, src, dim, src_shape:
                     x + _scatter_add_array(x.shape, dim, index, src) if x.dtype.kind in "fc"
                     else _scatter_add_exact(x, dim, index, src), save=(1,))


def _scatter_add_exact(x, dim, index, src):
    """Integer/bool scatter-add (exact, by ``add.at``)."""
    out = x.copy()
    if index.ndim == 0:
        return _scatter_add_exact(out.reshape(1), 0, index.reshape(1), src.reshape(1)).reshape(x.shape)
    _add_at(out, _coords(index, dim), _leading(src, index.shape))
    return out


@_scatter_add.defvjp
def _(ns, n, g, index):
    a = n.attrs
    gs = _pad_to(ns, ns.gather(g, a["dim"], index), a["src_shape"]) if n.edges[2] is not None else None
    return g, None, gs


def _scatter_args(x, dim, index, opname, src=None):
    d = norm_dim(dim, x.ndim, opname)
    idx = _as_index(index, x, opname)
    _check_gather_shapes(x, d, idx, opname, src)
    _check_range(idx._data, x.shape[d] if x.ndim else 1, opname, d, x)
    return d, idx


@method()
def scatter(input, dim, index, src=None, *, value=None, reduce=None):  # noqa: A002
    """A copy of ``input`` with ``src`` (a Tensor, or a number ``value``) written at ``index``
    along ``dim``: ``out[index[i][j]][j] = src[i][j]`` for dim 0 (PyTorch's scatter; with
    repeated indices one of the writes wins). Gradients: zero for ``input`` at the written
    positions, ``grad.gather(dim, index)`` for ``src``. ``reduce='add'`` is ``scatter_add``."""
    x = check_tensor(input, "scatter")
    if src is not None and value is not None:
        raise TypeError("scatter: give either src or value, not both")
    if src is None and value is None:
        raise TypeError("scatter: missing src (a Tensor) or value (a number)")
    if src is not None and not isinstance(src, Tensor):
        src, value = None, src
    if reduce is not None:
        if reduce == "add" and src is not None:
            return scatter_add(x, dim, index, src)
        raise NotImplementedError(f"scatter: reduce={reduce!r} is not supported; use scatter_add for "
                                  "reduce='add' with a src tensor")
    if src is None:
        if isinstance(value, Tensor) or not isinstance(value, (numbers.Number, np.generic)):
            raise TypeError(f"scatter: value must be a number, got {type(value).__name__}")
        d, idx = _scatter_args(x, dim, index, "scatter")
        return apply(_scatter_value, (x, idx), {"dim": d, "value": value})
    _same_dtype(x, src, "scatter")
    d, idx = _scatter_args(x, dim, index, "scatter", src)
    return apply(_scatter, (x, idx, src), {"dim": d, "src_shape": src.shape})


@method()
def scatter_add(input, dim, index, src):  # noqa: A002
    """A copy of ``input`` with ``src`` added at ``index`` along ``dim``; repeated indices
    accumulate: ``out[index[i][j]][j] += src[i][j]`` for dim 0 (PyTorch's scatter_add)."""
    x = check_tensor(input, "scatter_add")
    _same_dtype(x, src, "scatter_add")
    d, idx = _scatter_args(x, dim, index, "scatter_add", src)
    return apply(_scatter_add, (x, idx, src), {"dim": d, "src_shape": src.shape})


def _scatter_add_into(shape, dim, index, src):
    """Zeros of ``shape`` with ``src`` added at ``index`` along ``dim`` (the Tensor twin of
    ``rawops.scatter_add_into``; ``index`` a Tensor or an array)."""
    from ..creation import zeros
    base = zeros(tuple(shape), dtype=src.dtype, device=src.device)
    return scatter_add(base, dim, index, src)


# ====================================================================== index_select / index_add

def _vector_index(index, x, opname, d, negative=False):
    idx = _as_index(index, x, opname)
    if idx.ndim > 1:
        raise IndexError(f"{opname}: index is supposed to be a vector, got shape {list(idx.shape)}")
    if idx.ndim == 0:
        idx = Tensor._make(idx._data.reshape(1), False, None, 0)
    size = x.shape[d] if x.ndim else 1
    neg = _check_range(idx._data, size, opname, d, x, negative)
    return _wrap_negative(idx, size, neg)


_index_select = defop("index_select", lambda x, index, dim, size: get_xp(x).take(x, index, axis=dim),
                      save=(1,))


@_index_select.defvjp
def _(ns, n, g, index):
    d = n.attrs["dim"]
    if d == 0:
        return ns.segment_sum(g, index, n.attrs["size"]), None
    r = ns.segment_sum(ns.transpose(g, 0, d), index, n.attrs["size"])
    return ns.transpose(r, 0, d), None


@method()
def index_select(input, dim, index):  # noqa: A002
    """The entries of ``input`` at positions ``index`` (a vector) along ``dim``; repeated indices
    repeat entries (and accumulate gradients)."""
    x = check_tensor(input, "index_select")
    if x.ndim == 0:
        from .shape import reshape
        idx = _vector_index(index, x, "index_select", 0)
        if idx.shape[0] != 1:
            raise IndexError(f"index_select: index to a 0-d tensor can have only 1 value, got "
                             f"{idx.shape[0]}")
        norm_dim(dim, 0, "index_select")
        return reshape(index_select(reshape(x, (1,)), 0, idx), ())
    d = norm_dim(dim, x.ndim, "index_select")
    idx = _vector_index(index, x, "index_select", d)
    return apply(_index_select, (x, idx), {"dim": d, "size": x.shape[d]})


def _index_add_fwd(x, index, src, dim, alpha):
    if x.dtype.kind not in "fc":
        out = x.copy()
        sl = (slice(None),) * dim + (index,)
        _add_at(out, sl, src if alpha == 1 else src * alpha)
        return out
    moved = src if dim == 0 else np.swapaxes(src, 0, dim)
    add = _segment_sum_array(moved, index, x.shape[dim])
    if dim:
        add = np.swapaxes(add, 0, dim)
    return x + add if alpha == 1 else (x + alpha * add).astype(x.dtype, copy=False)


_index_add = defop("index_add", _index_add_fwd, save=(1,))


@_index_add.defvjp
def _(ns, n, g, index):
    a = n.attrs
    gs = None
    if n.edges[2] is not None:
        gs = ns.index_select(g, a["dim"], index)
        if a["alpha"] != 1:
            gs = gs * a["alpha"]
    return g, None, gs


def _check_source(x, d, idx, source, opname):
    _same_dtype(x, source, opname)
    want = x.shape[:d] + (idx.shape[0],) + x.shape[d + 1:]
    if source.shape != want:
        raise RuntimeError(f"{opname}: source must have shape {list(want)} (input shape "
                           f"{list(x.shape)} with dim {d} of size len(index) = {idx.shape[0]}), got "
                           f"{list(source.shape)}")


def _zero_d(fn, x, dim, index, *rest, **kw):
    """Run a dim-wise op on a 0-d input as on its 1-element reshape."""
    from .shape import reshape
    norm_dim(dim, 0, fn.__name__)
    rest = tuple(reshape(r, (1,)) if isinstance(r, Tensor) and r.ndim == 0 else r for r in rest)
    return reshape(fn(reshape(x, (1,)), 0, index, *rest, **kw), ())


@method()
def index_add(input, dim, index, source, *, alpha=1):  # noqa: A002
    """A copy of ``input`` with ``alpha * source`` added at positions ``index`` along ``dim``;
    repeated indices accumulate (PyTorch's index_add)."""
    x = check_tensor(input, "index_add")
    if x.ndim == 0:
        return _zero_d(index_add, x, dim, index, source, alpha=alpha)
    d = norm_dim(dim, x.ndim, "index_add")
    idx = _vector_index(index, x, "index_add", d)
    _check_source(x, d, idx, source, "index_add")
    return apply(_index_add, (x, idx, source), {"dim": d, "alpha": alpha})


@method()
def index_copy(input, dim, index, source):  # noqa: A002
    """A copy of ``input`` with the slices of ``source`` written at positions ``index`` along
    ``dim`` (PyTorch's index_copy)."""
    x = check_tensor(input, "index_copy")
    if x.ndim == 0:
        return _zero_d(index_copy, x, dim, index, source)
    d = norm_dim(dim, x.ndim, "index_copy")
    idx = _vector_index(index, x, "index_copy", d)
    _check_source(x, d, idx, source, "index_copy")
    return index_put(x, (slice(None),) * d + (idx,), source)


@method()
def index_fill(input, dim, index, value):  # noqa: A002
    """A copy of ``input`` with ``value`` (a number, or a 0-d Tensor that receives the gradient)
    at positions ``index`` along ``dim``; negative indices count from the end."""
    x = check_tensor(input, "index_fill")
    if x.ndim == 0:
        return _zero_d(index_fill, x, dim, index, value)
    d = norm_dim(dim, x.ndim, "index_fill")
    idx = _vector_index(index, x, "index_fill", d, negative=True)
    xp = get_xp(x._data)
    m = xp.zeros(x.shape[d], dtype=bool)
    m[idx._data] = True
    m = m.reshape((x.shape[d],) + (1,) * (x.ndim - d - 1))
    return masked_fill(x, Tensor._make(m, False, None, 0), value)


# ====================================================================== masks

def _as_mask(mask, x, opname):
    if isinstance(mask, Tensor):
        if type(mask._data) is not type(x._data):
            raise RuntimeError(f"{opname}: mask is on {mask.device} but input is on {x.device}")
    elif isinstance(mask, (np.ndarray, list, bool, np.bool_)) or hasattr(mask, "__cuda_array_interface__"):
        mask = Tensor._make(get_xp(x._data).asarray(mask), False, None, 0)
    else:
        raise TypeError(f"{opname}: mask must be a bool Tensor, got {type(mask).__name__}")
    if mask._data.dtype.kind != "b":
        raise TypeError(f"{opname}: only boolean masks are supported, got mask with dtype {mask.dtype}; "
                        "compare it (mask != 0) or convert it with .bool()")
    return mask


@method()
def masked_fill(input, mask, value):  # noqa: A002
    """A copy of ``input`` with ``value`` where ``mask`` (bool, broadcastable to ``input``) is
    True. ``value``: a number, or a 0-d Tensor (which then receives the summed gradient)."""
    from .elementwise import astype, where
    x = check_tensor(input, "masked_fill")
    m = _as_mask(mask, x, "masked_fill")
    try:
        ok = np.broadcast_shapes(m.shape, x.shape) == x.shape
    except ValueError:
        ok = False
    if not ok:
        raise RuntimeError(f"masked_fill: mask of shape {list(m.shape)} is not broadcastable to the input "
                           f"shape {list(x.shape)}")
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(f"masked_fill: only supports a 0-dimensional value tensor, but got tensor "
                               f"with {value.ndim} dimension(s) (shape {list(value.shape)})")
        if type(value._data) is not type(x._data):
            raise RuntimeError(f"masked_fill: value is on {value.device} but input is on {x.device}")
        v = astype(value, x.dtype) if value._data.dtype != x._data.dtype else value
    elif isinstance(value, (numbers.Number, np.generic)):
        v = Tensor._make(get_xp(x._data).asarray(value).astype(x.dtype), False, None, 0)
    else:
        raise TypeError(f"masked_fill: value must be a number or a 0-d Tensor, got {type(value).__name__}")
    return where(m, v, x)


@method()
def masked_select(input, mask):  # noqa: A002
    """The entries of ``input`` where ``mask`` is True, as a 1-d tensor (``input`` and ``mask``
    broadcast together first)."""
    from .shape import broadcast_to
    x = check_tensor(input, "masked_select")
    m = _as_mask(mask, x, "masked_select")
    try:
        shape = np.broadcast_shapes(m.shape, x.shape)
    except ValueError:
        raise RuntimeError(f"masked_select: the shapes of the mask {list(m.shape)} and of the input "
                           f"{list(x.shape)} can't be broadcast together") from None
    xb = broadcast_to(x, shape) if x.shape != shape else x
    md = m._data if m.shape == shape else get_xp(m._data).broadcast_to(m._data, shape)
    if xb.ndim == 0:
        from .shape import reshape
        xb, md = reshape(xb, (1,)), md.reshape(1)
    return getitem(xb, Tensor._make(md, False, None, 0))


@method()
def nonzero(input, *, as_tuple=False):  # noqa: A002
    """Indices of the non-zero entries: an int64 tensor [n, ndim], or with ``as_tuple=True`` one
    int64 vector per dim. Not differentiable."""
    x = check_tensor(input, "nonzero")
    xp = get_xp(x._data)
    if as_tuple:
        d = x._data if x.ndim else x._data.reshape(1)
        return tuple(Tensor._make(i.astype(np.int64, copy=False), False, None, 0) for i in d.nonzero())
    out = xp.argwhere(x._data).astype(np.int64, copy=False)
    return Tensor._make(out, False, None, 0)


@method()
def argwhere(input):  # noqa: A002
    """``nonzero(input)``: the [n, ndim] int64 indices of the non-zero entries."""
    return nonzero(input)


# ====================================================================== take / take_along_dim

@method()
def take(input, index):  # noqa: A002
    """``input`` read as a flat vector at ``index`` (any shape; negative entries count from the
    end); the output has ``index``'s shape."""
    from .shape import reshape
    x = check_tensor(input, "take")
    idx = _as_index(index, x, "take")
    n = x._data.size
    d = idx._data
    if d.size:
        lo, hi = int(d.min()), int(d.max())
        if lo < -n or hi >= n:
            bad = lo if lo < -n else hi
            raise IndexError(f"take: index {bad} is out of range for a tensor of {n} elements "
                             f"(shape {list(x.shape)})")
        if lo < 0:
            d = get_xp(d).where(d < 0, d + n, d)
    flat = Tensor._make(d.reshape(-1), False, None, 0)
    return reshape(index_select(reshape(x, (-1,)), 0, flat), idx.shape)


@method()
def take_along_dim(input, indices, dim=None):  # noqa: A002
    """``gather`` after broadcasting ``input`` and ``indices`` in all dims but ``dim``; with
    ``dim=None`` both are flattened. Negative indices count from the end."""
    from .shape import broadcast_to, reshape
    x = check_tensor(input, "take_along_dim")
    idx = _as_index(indices, x, "take_along_dim", "indices")
    if dim is None:
        x = reshape(x, (-1,))
        idx = Tensor._make(idx._data.reshape(-1), False, None, 0)
        d = 0
    else:
        if x.ndim != idx.ndim:
            raise RuntimeError(f"take_along_dim: input and indices should have the same number of "
                               f"dimensions, but got {x.ndim} dimensions for input (shape "
                               f"{list(x.shape)}) and {idx.ndim} dimensions for indices (shape "
                               f"{list(idx.shape)})")
        if x.ndim == 0:
            x, idx = reshape(x, (1,)), Tensor._make(idx._data.reshape(1), False, None, 0)
            return reshape(take_along_dim(x, idx, 0), ())
        d = norm_dim(dim, x.ndim, "take_along_dim")
        xs, ids = list(x.shape), list(idx.shape)
        xs[d] = ids[d] = 1
        try:
            b = list(np.broadcast_shapes(tuple(xs), tuple(ids)))
        except ValueError:
            raise RuntimeError(f"take_along_dim: input of shape {list(x.shape)} and indices of shape "
                               f"{list(idx.shape)} can't be broadcast together outside dim {d}") from None
        bx, bi = list(b), list(b)
        bx[d], bi[d] = x.shape[d], idx.shape[d]
        if tuple(bx) != x.shape:
            x = broadcast_to(x, bx)
        if tuple(bi) != idx.shape:
            idx = Tensor._make(get_xp(idx._data).broadcast_to(idx._data, tuple(bi)), False, None, 0)
    size = x.shape[d]
    neg = _check_range(idx._data, size, "take_along_dim", d, x, negative=True)
    idx = _wrap_negative(idx, size, neg)
    return apply(_gather, (x, idx), {"dim": d, "in_shape": x.shape})


# ====================================================================== segment_sum

_segment_sum = defop("segment_sum", lambda data, ids, num_segments:
                     _segment_sum_array(data, ids, num_segments), save=(1,))


@_segment_sum.defvjp
def _(ns, n, g, ids):
    return ns.index_select(g, 0, ids), None


def segment_sum(data, segment_ids, num_segments):
    """Sum the rows of ``data`` [N, ...] into ``num_segments`` bins: ``out[s] = sum of data[i] with
    segment_ids[i] == s``; ``out`` is [num_segments, ...] (empty segments are zero).

    The scatter-add of particle codes (forces on particles from per-spring forces).
    Differentiable w.r.t. ``data`` (the backward gathers rows by ``segment_ids``). On the CPU
    it runs on ``np.bincount``; ids need not be sorted but must lie in ``[0, num_segments)``."""
    x = check_tensor(data, "segment_sum", "data")
    if x.ndim == 0:
        raise RuntimeError("segment_sum: data must have at least one dimension [N, ...], got a 0-d tensor")
    ids = _as_index(segment_ids, x, "segment_sum", "segment_ids")
    if ids.ndim != 1 or ids.shape[0] != x.shape[0]:
        raise RuntimeError(f"segment_sum: segment_ids must be a vector with one id per row of data, got "
                           f"segment_ids of shape {list(ids.shape)} for data of shape {list(x.shape)}")
    if isinstance(num_segments, Tensor):
        num_segments = int(num_segments)
    if not isinstance(num_segments, numbers.Integral) or isinstance(num_segments, bool) or num_segments < 0:
        raise TypeError(f"segment_sum: num_segments must be a non-negative int, got {num_segments!r}")
    num_segments = int(num_segments)
    d = ids._data
    if d.size:
        lo, hi = int(d.min()), int(d.max())
        if lo < 0 or hi >= num_segments:
            bad = lo if lo < 0 else hi
            raise IndexError(f"segment_sum: segment id {bad} is out of range for num_segments="
                             f"{num_segments} (data shape {list(x.shape)})")
    if x._data.dtype.kind == "b":
        from .elementwise import astype
        x = astype(x, np.int64)
    return apply(_segment_sum, (x, ids), {"num_segments": num_segments})


# ====================================================================== in-place forms

def _make_inplace(name, fn):
    def inplace(self, *args, **kwargs):
        self._check_inplace(name + "_")
        return self._become(fn(self, *args, **kwargs), name + "_")
    inplace.__name__ = name + "_"
    inplace.__doc__ = f"In-place ``{name}``."
    return inplace


for _n, _f in (("scatter", scatter), ("scatter_add", scatter_add), ("index_add", index_add),
               ("index_copy", index_copy), ("index_fill", index_fill), ("masked_fill", masked_fill),
               ("index_put", index_put)):
    setattr(Tensor, _n + "_", _make_inplace(_n, _f))
