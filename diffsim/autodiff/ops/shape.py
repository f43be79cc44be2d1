"""Shape ops: reshape, transpose, expand, cat/stack/split, flip/roll, tril/triu, diagonal ...

Ops whose numpy result is a view of the input are declared ``view=True`` so that the view
and its base share a version counter."""
from __future__ import annotations

import builtins
import numbers

import numpy as np

from ..backend import get_xp
from ..function import apply, defop
from ..tensor import Tensor
from ._util import check_tensor, method, norm_dim

_bint = builtins.int


def _shape_arg(shape, opname):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for s in shape:
        if not isinstance(s, numbers.Integral) or isinstance(s, bool):
            raise TypeError(f"{opname}: shape entries must be ints, got {type(s).__name__} {s!r} "
                            f"in {tuple(shape)}")
    return tuple(_bint(s) for s in shape)


def _infer_shape(shape, numel, in_shape, opname):
    neg = [i for i, s in enumerate(shape) if s == -1]
    if len(neg) > 1:
        raise RuntimeError(f"{opname}: only one dimension can be inferred, got shape {list(shape)}")
    known = 1
    for s in shape:
        if s != -1:
            if s < 0:
                raise RuntimeError(f"{opname}: invalid shape dimension {s} in {list(shape)}")
            known *= s
    if neg:
        if known == 0 or numel % known:
            raise RuntimeError(f"{opname}: shape {list(shape)} is invalid for input of size {numel} "
                               f"(shape {list(in_shape)})")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise RuntimeError(f"{opname}: shape {list(shape)} is invalid for input of size {numel} "
                           f"(shape {list(in_shape)})")
    return shape


_reshape = defop("reshape", lambda x, shape, in_shape: x.reshape(shape), view=True)
_reshape.defvjp(lambda ns, n, g: (ns.reshape(g, n.attrs["in_shape"]),))


def reshape(input, *shape):  # noqa: A002
    """Same values in a new shape (one dim may be -1). Shape: ``numel`` preserved."""
    x = check_tensor(input, "reshape")
    shape = _infer_shape(_shape_arg(shape, "reshape"), x._data.size, x.shape, "reshape")
    if shape == x.shape:
        return apply(_reshape, (x,), {"shape": shape, "in_shape": x.shape}) if x._rg else \
            _alias(x)
    return apply(_reshape, (x,), {"shape": shape, "in_shape": x.shape})


def _alias(x):
    t = Tensor._make(x._data, False, None, 0)
    t._version, t._base = x._version, x._base if x._base is not None else x
    return t


Tensor.reshape = reshape
Tensor.view = reshape


def view(input, *shape):  # noqa: A002
    return reshape(input, *shape)


@method()
def reshape_as(input, other):  # noqa: A002
    return reshape(input, other.shape)


Tensor.view_as = reshape_as


@method()
def flatten(input, start_dim=0, end_dim=-1):  # noqa: A002
    """Merge dims ``start_dim..end_dim`` into one."""
    x = check_tensor(input, "flatten")
    if x.ndim == 0:
        return reshape(x, 1)
    s, e = norm_dim(start_dim, x.ndim, "flatten"), norm_dim(end_dim, x.ndim, "flatten")
    if s > e:
        raise RuntimeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shp = x.shape
    n = 1
    for k in shp[s:e + 1]:
        n *= k
    return reshape(x, shp[:s] + (n,) + shp[e + 1:])


@method()
def unflatten(input, dim, sizes):  # noqa: A002
    """Split dim ``dim`` into ``sizes`` (one may be -1)."""
    x = check_tensor(input, "unflatten")
    d = norm_dim(dim, x.ndim, "unflatten")
    # resolve -1 against the size of dim d alone (the whole tensor may be empty)
    sizes = _infer_shape(_shape_arg(tuple(sizes), "unflatten"), x.shape[d], (x.shape[d],), "unflatten")
    return reshape(x, x.shape[:d] + sizes + x.shape[d + 1:])


@method()
def squeeze(input, dim=None):  # noqa: A002
    """Remove size-1 dims (all, or those in ``dim``; others are left as they are)."""
    x = check_tensor(input, "squeeze")
    if dim is None:
        dims = {i for i, s in enumerate(x.shape) if s == 1}
    else:
        dims = {norm_dim(d, x.ndim, "squeeze") for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1)))


@method()
def unsqueeze(input, dim):  # noqa: A002
    """Insert a size-1 dim at ``dim`` (in ``[-ndim-1, ndim]``)."""
    x = check_tensor(input, "unsqueeze")
    d = norm_dim(dim, x.ndim + 1, "unsqueeze")
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])


_permute = defop("permute", lambda x, dims, inv: x.transpose(dims), view=True)
_permute.defvjp(lambda ns, n, g: (ns.permute(g, n.attrs["inv"]),))


def permute(input, *dims):  # noqa: A002
    """Reorder dims: output dim i is input dim ``dims[i]``."""
    x = check_tensor(input, "permute")
    dims = _shape_arg(dims, "permute")
    if len(dims) != x.ndim:
        raise RuntimeError(f"permute: number of dims {len(dims)} doesn't match the input's {x.ndim} "
                           f"(shape {list(x.shape)})")
    dims = tuple(norm_dim(d, x.ndim, "permute") for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise RuntimeError(f"permute: dims {dims} are not a permutation of 0..{x.ndim - 1}")
    return apply(_permute, (x,), {"dims": dims, "inv": tuple(np.argsort(dims).tolist())})


Tensor.permute = permute


@method("transpose", "swapaxes", "swapdims")
def transpose(input, dim0, dim1):  # noqa: A002
    """Swap dims ``dim0`` and ``dim1``."""
    x = check_tensor(input, "transpose")
    if x.ndim < 2 and dim0 in (0, -1) and dim1 in (0, -1):
        return x
    a, b = norm_dim(dim0, x.ndim, "transpose"), norm_dim(dim1, x.ndim, "transpose")
    dims = list(range(x.ndim))
    dims[a], dims[b] = dims[b], dims[a]
    return permute(x, dims)


swapaxes = swapdims = transpose


@method()
def t(input):  # noqa: A002
    """Transpose a matrix (0-d and 1-d tensors are returned as they are)."""
    x = check_tensor(input, "t")
    if x.ndim > 2:
        raise RuntimeError(f"t: expects a tensor with <= 2 dimensions, got {x.ndim} (shape {list(x.shape)})")
    return x if x.ndim < 2 else transpose(x, 0, 1)


Tensor.T = property(lambda self: self if self.ndim < 2 else permute(self, tuple(range(self.ndim))[::-1]))
Tensor.mT = property(lambda self: transpose(self, -2, -1))
Tensor.H = Tensor.T
Tensor.mH = Tensor.mT


@method("movedim", "moveaxis")
def movedim(input, source, destination):  # noqa: A002
    """Move dims ``source`` to positions ``destination`` (ints or tuples)."""
    x = check_tensor(input, "movedim")
    src = source if isinstance(source, (tuple, list)) else (source,)
    dst = destination if isinstance(destination, (tuple, list)) else (destination,)
    if len(src) != len(dst):
        raise RuntimeError(f"movedim: source {src} and destination {dst} must have the same length")
    src = [norm_dim(s, x.ndim, "movedim") for s in src]
    dst = [norm_dim(d, x.ndim, "movedim") for d in dst]
    if x.ndim == 0:                  # dims 0 / -1 of a 0-d tensor: nothing moves
        return permute(x, ())
    order = [i for i in range(x.ndim) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return permute(x, order)


moveaxis = movedim

_expand = defop("expand", lambda x, shape, in_shape: np.broadcast_to(x, shape), view=True)
_expand.defvjp(lambda ns, n, g: (ns.sum_to(g, n.attrs["in_shape"]),))


def _broadcast_shape(shapes, opname):
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise RuntimeError(f"{opname}: shapes {[list(s) for s in shapes]} cannot be broadcast "
                           "together") from None


def expand(input, *sizes):  # noqa: A002
    """Broadcast to ``sizes`` without copying (-1 keeps a dim)."""
    x = check_tensor(input, "expand")
    sizes = _shape_arg(sizes, "expand")
    if len(sizes) < x.ndim:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or "
                           f"equal to the number of dimensions in the tensor ({x.ndim}, shape "
                           f"{list(x.shape)})")
    lead = len(sizes) - x.ndim
    shape = tuple(x.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
    for i in range(x.ndim):
        if x.shape[i] != 1 and x.shape[i] != shape[i + lead]:
            raise RuntimeError(f"expand: the expanded size of the tensor ({shape[i + lead]}) must match "
                               f"the existing size ({x.shape[i]}) at non-singleton dimension {i}; "
                               f"target sizes {list(sizes)}, tensor shape {list(x.shape)}")
    if shape == x.shape:
        return x
    return apply(_expand, (x,), {"shape": shape, "in_shape": x.shape})


Tensor.expand = expand


@method()
def expand_as(input, other):  # noqa: A002
    return expand(input, other.shape)


def broadcast_to(input, shape):  # noqa: A002
    """Broadcast ``input`` to ``shape`` (numpy's rules)."""
    x = check_tensor(input, "broadcast_to")
    shape = _shape_arg(tuple(shape), "broadcast_to")
    _broadcast_shape([x.shape, shape], "broadcast_to")
    return expand(x, shape)


Tensor.broadcast_to = broadcast_to


def broadcast_tensors(*tensors):
    """Broadcast all inputs to their common shape."""
    shape = _broadcast_shape([t.shape for t in tensors], "broadcast_tensors")
    return tuple(expand(t, shape) for t in tensors)


def broadcast_shapes(*shapes):
    return _broadcast_shape(shapes, "broadcast_shapes")


# ------------------------------------------------------------------ cat / stack / split

def _cat_fwd(*arrays, dim, sizes):
    return get_xp(arrays[0]).concatenate(arrays, axis=dim)


_cat = defop("cat", _cat_fwd)


@_cat.defvjp
def _(ns, n, g):
    dim, sizes = n.attrs["dim"], n.attrs["sizes"]
    out, start = [], 0
    for s, e in zip(sizes, n.edges):
        out.append(None if e is None else ns.getitem(g, (slice(None),) * dim + (slice(start, start + s),)))
        start += s
    return tuple(out)


def _same(tensors, opname):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError(f"{opname}: expected a non-empty list of Tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{opname}: expected a sequence of Tensors, element {i} is {type(t).__name__}")
    dt = tensors[0]._data.dtype
    if any(t._data.dtype != dt for t in tensors):
        from .. import dtypes
        from .elementwise import astype
        rt = dtypes.result_type(*tensors)
        tensors = [astype(t, rt) for t in tensors]
    return tensors


def cat(tensors, dim=0):
    """Concatenate along an existing dim; all other dims must match."""
    tensors = _same(tensors, "cat")
    tensors = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)] or tensors[:1]
    ref = tensors[0]
    d = norm_dim(dim, ref.ndim, "cat")
    for t in tensors:
        if t.ndim != ref.ndim or t.shape[:d] + t.shape[d + 1:] != ref.shape[:d] + ref.shape[d + 1:]:
            raise RuntimeError(f"cat: sizes of tensors must match except in dimension {d}; got shapes "
                               f"{[list(u.shape) for u in tensors]}")
    if len(tensors) == 1:            # a new tensor, as in PyTorch (not an alias of the input)
        from .elementwise import clone
        return clone(tensors[0])
    return apply(_cat, tuple(tensors), {"dim": d, "sizes": tuple(t.shape[d] for t in tensors)})


concat = concatenate = cat


def stack(tensors, dim=0):
    """Stack equal-shaped tensors along a new dim."""
    tensors = _same(tensors, "stack")
    shp = tensors[0].shape
    for t in tensors:
        if t.shape != shp:
            raise RuntimeError(f"stack: expects each tensor to be equal size, got shapes "
                               f"{[list(u.shape) for u in tensors]}")
    d = norm_dim(dim, len(shp) + 1, "stack")
    return apply(_stack, tuple(tensors), {"dim": d})


_stack = defop("stack", lambda *arrays, dim: get_xp(arrays[0]).stack(arrays, axis=dim))


@_stack.defvjp
def _(ns, n, g):
    lead = (slice(None),) * n.attrs["dim"]
    return tuple(None if e is None else ns.getitem(g, lead + (i,)) for i, e in enumerate(n.edges))


def hstack(tensors):
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors):
    return cat([t if t.ndim > 1 else unsqueeze(t, 0) for t in tensors], 0)


_slice = defop("slice", lambda x, index, in_shape: x[index], view=True)
_slice.defvjp(lambda ns, n, g: (ns.index_put_into(n.attrs["in_shape"], n.attrs["index"], g, False),))


def _slice_dim(x, d, start, stop):
    index = (slice(None),) * d + (slice(start, stop),)
    return apply(_slice, (x,), {"index": index, "in_shape": x.shape})


@method()
def narrow(input, dim, start, length):  # noqa: A002
    """The slice ``start:start+length`` of dim ``dim`` (a view)."""
    x = check_tensor(input, "narrow")
    d = norm_dim(dim, x.ndim, "narrow")
    n = x.shape[d]
    if start < 0:
        start += n
    if not (0 <= start <= n and 0 <= length and start + length <= n):
        raise IndexError(f"narrow: start ({start}) + length ({length}) exceeds dimension size ({n}) "
                         f"of dim {d} (shape {list(x.shape)})")
    return _slice_dim(x, d, start, start + length)


@method()
def split(tensor, split_size_or_sections, dim=0):
    """Split into chunks of ``split_size`` (last may be smaller) or of the given section sizes."""
    x = check_tensor(tensor, "split")
    d = norm_dim(dim, x.ndim, "split")
    n = x.shape[d]
    if isinstance(split_size_or_sections, numbers.Integral):
        s = _bint(split_size_or_sections)
        if s <= 0:
            raise RuntimeError(f"split: split_size must be positive, got {s}")
        sizes = [s] * (n // s) + ([n % s] if n % s else []) or [0]   # empty dim: one empty piece
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise RuntimeError(f"split: split sizes {sizes} don't sum to the size {n} of dim {d} "
                               f"(shape {list(x.shape)})")
    out, start = [], 0
    for s in sizes:
        out.append(_slice_dim(x, d, start, start + s))
        start += s
    return tuple(out)


@method()
def chunk(input, chunks, dim=0):  # noqa: A002
    """Split into ``chunks`` nearly equal pieces (PyTorch's sizing)."""
    x = check_tensor(input, "chunk")
    if chunks <= 0:
        raise RuntimeError(f"chunk: chunks must be positive, got {chunks}")
    n = x.shape[norm_dim(dim, x.ndim, "chunk")]
    if n == 0:                       # PyTorch: ``chunks`` empty pieces
        return split(x, [0] * chunks, dim)
    return split(x, -(-n // chunks), dim)


def _basic_view(x, index):
    """``x[index]`` for a basic index, always a view: numpy gives a scalar (a copy) when every dim
    is indexed by an int, ``x[index + (...,)]`` a 0-d view (so ``x[0].fill_(1)`` writes into x)."""
    r = x[index]
    return r if type(r) is type(x) else x[index + (Ellipsis,)]


_select = defop("select", lambda x, index, in_shape: _basic_view(x, index), view=True)
_select.defvjp(lambda ns, n, g: (ns.index_put_into(n.attrs["in_shape"], n.attrs["index"], g, False),))


@method()
def select(input, dim, index):  # noqa: A002
    """``x[..., index, ...]`` along ``dim`` (removes the dim)."""
    x = check_tensor(input, "select")
    d = norm_dim(dim, x.ndim, "select")
    n = x.shape[d]
    if not -n <= index < n:
        raise IndexError(f"select: index {index} is out of bounds for dimension {d} with size {n}")
    return apply(_select, (x,), {"index": (slice(None),) * d + (index % n,), "in_shape": x.shape})


@method()
def unbind(input, dim=0):  # noqa: A002
    """Tuple of all slices along ``dim``."""
    x = check_tensor(input, "unbind")
    d = norm_dim(dim, x.ndim, "unbind")
    return tuple(select(x, d, i) for i in range(x.shape[d]))


# ------------------------------------------------------------------ flip / roll / repeat / tile

# a copy, as in PyTorch (np.flip is a view that an in-place change of x would silently alter)
_flip = defop("flip", lambda x, dims: np.flip(x, dims).copy())
_flip.defvjp(lambda ns, n, g: (ns.flip(g, n.attrs["dims"]),))


def flip(input, *dims):  # noqa: A002
    """Reverse the order of elements along ``dims``."""
    x = check_tensor(input, "flip")
    dims = _shape_arg(dims, "flip") if dims else ()
    dims = tuple(norm_dim(d, x.ndim, "flip") for d in dims)
    if x.ndim == 0 and dims:         # flipping a 0-d tensor: a copy, as in PyTorch
        from .elementwise import clone
        return clone(x)
    return apply(_flip, (x,), {"dims": dims}) if dims else x


Tensor.flip = flip


@method()
def fliplr(input):  # noqa: A002
    return flip(input, 1)


@method()
def flipud(input):  # noqa: A002
    return flip(input, 0)


_roll = defop("roll", lambda x, shifts, dims: np.roll(x, shifts, dims))
_roll.defvjp(lambda ns, n, g: (ns.roll(g, tuple(-s for s in n.attrs["shifts"]), n.attrs["dims"]),))


@method()
def roll(input, shifts, dims=None):  # noqa: A002
    """Roll elements along ``dims`` (flattened if None) by ``shifts``."""
    x = check_tensor(input, "roll")
    if dims is None:
        flat = flatten(x)
        return reshape(roll(flat, shifts, 0), x.shape)
    shifts = tuple(shifts) if isinstance(shifts, (tuple, list)) else (shifts,)
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    if len(shifts) != len(dims):
        raise RuntimeError(f"roll: shifts {shifts} and dims {dims} must have the same length")
    dims = tuple(norm_dim(d, x.ndim, "roll") for d in dims)
    return apply(_roll, (x,), {"shifts": shifts, "dims": dims})


@method()
def tile(input, dims):  # noqa: A002
    """Repeat the whole tensor ``dims[i]`` times along each dim (numpy's ``tile``)."""
    x = check_tensor(input, "tile")
    dims = tuple(dims)
    if len(dims) < x.ndim:
        dims = (1,) * (x.ndim - len(dims)) + dims
    x = reshape(x, (1,) * (len(dims) - x.ndim) + x.shape)
    # tile = expand over interleaved new dims, then merge: differentiable through expand/reshape
    inter = []
    for r, s in zip(dims, x.shape):
        inter += [1, s]
    y = reshape(x, inter)
    target = []
    for r, s in zip(dims, x.shape):
        target += [r, s]
    y = expand(y, target)
    return reshape(y, tuple(r * s for r, s in zip(dims, x.shape)))


def repeat(input, *sizes):  # noqa: A002
    """PyTorch's ``Tensor.repeat``: tile by ``sizes`` (at least ``ndim`` of them)."""
    x = check_tensor(input, "repeat")
    sizes = _shape_arg(sizes, "repeat")
    if len(sizes) < x.ndim:
        raise RuntimeError(f"repeat: number of repeat dims ({len(sizes)}) can not be smaller than the "
                           f"number of tensor dims ({x.ndim}, shape {list(x.shape)})")
    return tile(x, sizes)


Tensor.repeat = repeat


@method()
def repeat_interleave(input, repeats, dim=None):  # noqa: A002
    """Repeat each element ``repeats`` (int) times along ``dim`` (flattened if None)."""
    x = check_tensor(input, "repeat_interleave")
    if dim is None:
        x, dim = flatten(x), 0
    d = norm_dim(dim, x.ndim, "repeat_interleave")
    y = unsqueeze(x, d + 1)
    shape = list(y.shape)
    shape[d + 1] = repeats
    y = expand(y, shape)
    return flatten(y, d, d + 1)


# ------------------------------------------------------------------ triangles and diagonals

_tril = defop("tril", lambda x, diagonal: np.tril(x, diagonal))
_tril.defvjp(lambda ns, n, g: (ns.tril(g, n.attrs["diagonal"]),))
_triu = defop("triu", lambda x, diagonal: np.triu(x, diagonal))
_triu.defvjp(lambda ns, n, g: (ns.triu(g, n.attrs["diagonal"]),))


def _check_matrix(x, opname):
    if x.ndim < 2:
        raise RuntimeError(f"{opname}: input must have at least 2 dims, got shape {list(x.shape)}")


@method()
def tril(input, diagonal=0):  # noqa: A002
    """Lower triangle (entries above ``diagonal`` zeroed) of the last two dims."""
    x = check_tensor(input, "tril")
    _check_matrix(x, "tril")
    return apply(_tril, (x,), {"diagonal": diagonal})


@method()
def triu(input, diagonal=0):  # noqa: A002
    """Upper triangle (entries below ``diagonal`` zeroed) of the last two dims."""
    x = check_tensor(input, "triu")
    _check_matrix(x, "triu")
    return apply(_triu, (x,), {"diagonal": diagonal})


def _diagonal_fwd(x, offset, dim1, dim2, in_shape):
    d = np.diagonal(x, offset, dim1, dim2)
    if type(d) is np.ndarray and not d.flags.writeable and x.flags.writeable:
        d.flags.writeable = True     # a writable view, as in PyTorch (A.diagonal().add_(eps))
    return d


_diagonal = defop("diagonal", _diagonal_fwd, view=True)


@_diagonal.defvjp
def _(ns, n, g):
    a = n.attrs
    nd = len(a["in_shape"])
    emb = ns.diag_embed(g, a["offset"], -2, -1)
    # emb has the diagonal dims last; pad/crop to the input's sizes and move them back
    r, c = a["in_shape"][a["dim1"]], a["in_shape"][a["dim2"]]
    emb = _fit(ns, emb, r, c)
    rest = [i for i in range(nd) if i not in (a["dim1"], a["dim2"])]
    order = rest + [a["dim1"], a["dim2"]]
    inv = tuple(np.argsort(order).tolist())
    return (ns.permute(emb, inv),)


def _fit(ns, m, rows, cols):
    """Crop or zero-pad the last two dims of ``m`` to ``rows`` x ``cols``."""
    R, C = m.shape[-2], m.shape[-1]
    if R > rows:
        m = ns.getitem(m, (Ellipsis, slice(0, rows), slice(None)))
    elif R < rows:
        m = ns.pad_dim(m, m.ndim - 2, 0, rows - R)
    if C > cols:
        m = ns.getitem(m, (Ellipsis, slice(0, cols)))
    elif C < cols:
        m = ns.pad_dim(m, m.ndim - 1, 0, cols - C)
    return m


@method()
def diagonal(input, offset=0, dim1=0, dim2=1):  # noqa: A002
    """The diagonal of dims ``dim1``, ``dim2`` (appended as the last dim)."""
    x = check_tensor(input, "diagonal")
    _check_matrix(x, "diagonal")
    d1, d2 = norm_dim(dim1, x.ndim, "diagonal"), norm_dim(dim2, x.ndim, "diagonal")
    if d1 == d2:
        raise RuntimeError(f"diagonal: dim1 and dim2 must differ, both are {d1}")
    return apply(_diagonal, (x,), {"offset": offset, "dim1": d1, "dim2": d2, "in_shape": x.shape})


_diag_embed = defop("diag_embed", lambda x, offset, dim1, dim2: _raw_diag_embed(x, offset, dim1, dim2))
_diag_embed.defvjp(lambda ns, n, g: (ns.diagonal(g, n.attrs["offset"], n.attrs["dim1"], n.attrs["dim2"]),))


def _raw_diag_embed(x, offset, dim1, dim2):
    from ..rawops import diag_embed as raw
    return raw(x, offset, dim1, dim2)


@method()
def diag_embed(input, offset=0, dim1=-2, dim2=-1):  # noqa: A002
    """Matrices whose ``offset`` diagonal (in dims ``dim1``, ``dim2``) is the last dim of input."""
    x = check_tensor(input, "diag_embed")
    return apply(_diag_embed, (x,), {"offset": offset, "dim1": dim1, "dim2": dim2})


@method()
def diag(input, diagonal=0):  # noqa: A002
    """1-d input: a square matrix with it on diagonal ``diagonal``; 2-d input: that diagonal."""
    x = check_tensor(input, "diag")
    if x.ndim == 1:
        return diag_embed(x, diagonal)
    if x.ndim == 2:
        return globals()["diagonal"](x, diagonal)
    raise RuntimeError(f"diag: expected a 1-d or 2-d tensor, got shape {list(x.shape)}")


@method()
def contiguous(input):  # noqa: A002
    """``input`` itself if its memory is C-contiguous, else a contiguous copy (in the graph)."""
    x = check_tensor(input, "contiguous")
    if x._data.flags.c_contiguous:
        return x
    from .elementwise import clone
    return clone(x)


@method()
def is_contiguous(input):  # noqa: A002
    """True if the tensor's memory is C-contiguous."""
    return bool(check_tensor(input, "is_contiguous")._data.flags.c_contiguous)
