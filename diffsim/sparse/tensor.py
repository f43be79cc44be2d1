"""``SparseTensor``: a sparse matrix with a constant integer structure and differentiable values.

A ``SparseTensor`` is a ``[m, n]`` matrix stored as its ``nnz`` stored entries: the structure
(row and column indices, integer arrays that never carry a gradient) and ``values()``, an
ordinary Tensor ``[nnz]`` that may require grad. Everything computed from it (``to_dense``,
``coalesce``, products, ``sparse.solve``) is differentiable w.r.t. the values, and the
gradient of a value is only ever taken at a stored entry (the structure is fixed).

Two layouts, as in PyTorch: ``"coo"`` (``indices() [2, nnz]``; entries in any order,
duplicates allowed and summed) and ``"csr"`` (``crow_indices() [m + 1]``, ``col_indices()
[nnz]``; entries sorted by row). Products run on ``scipy.sparse`` on the CPU and on
``cupyx.scipy.sparse`` on the GPU (both imported on first use, so ``import diffsim.sparse``
stays cheap).

The product rule (``y = A x`` with ``A[row_k, col_k] += v_k``)::

    grad_x = A^T g,   grad_v_k = sum_j g[row_k, j] x[col_k, j]

is written with the backward namespace ``ns``, so gradients of gradients work.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..autodiff.backend import get_xp
from ..autodiff.function import apply, call_op, defop
from ..autodiff.tensor import Tensor

__all__ = ["SparseTensor", "coo_tensor", "csr_tensor", "assemble", "matmul", "is_sparse"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# ================================================================ the structure

class Pattern:
    """The constant structure of a sparse matrix: ``row``, ``col`` (int64 arrays ``[nnz]`` on the
    values' device) and ``shape = (m, n)``; caches the CSR arrays scipy needs.

    ``csr()`` returns ``(perm, indptr, indices)``: the entries in CSR order are
    ``values[perm]`` (``perm`` is None when they already are in that order)."""
    __slots__ = ("row", "col", "shape", "_csr", "_t")

    def __init__(self, row, col, shape, csr=None):
        self.row, self.col, self.shape = row, col, (int(shape[0]), int(shape[1]))
        self._csr = csr
        self._t = None

    @property
    def nnz(self):
        return int(self.row.shape[0])

    def csr(self):
        if self._csr is None:
            xp = get_xp(self.row)
            m = self.shape[0]
            perm = xp.lexsort(xp.stack([self.col, self.row]))
            indptr = xp.zeros(m + 1, np.int64)
            if self.nnz:
                indptr[1:] = xp.cumsum(xp.bincount(self.row, minlength=m))
            sorted_already = bool(xp.all(perm == xp.arange(self.nnz)))
            self._csr = (None if sorted_already else perm, indptr, self.col[perm])
        return self._csr

    def t(self):
        """The pattern of the transpose (same entry order, rows and columns swapped)."""
        if self._t is None:
            self._t = Pattern(self.col, self.row, (self.shape[1], self.shape[0]))
            self._t._t = self
        return self._t

    def matrix(self, values):
        """A ``scipy.sparse`` (or ``cupyx.scipy.sparse``) CSR matrix holding raw ``values``."""
        sp = scipy_sparse(values)
        perm, indptr, indices = self.csr()
        data = values if perm is None else values[perm]
        return sp.csr_matrix((data, indices, indptr), shape=self.shape)

    def keys(self):
        """``row * n + col``: one integer per entry, equal for duplicates."""
        return self.row * self.shape[1] + self.col


def scipy_sparse(array):
    """``scipy.sparse`` for a numpy array, ``cupyx.scipy.sparse`` for a cupy array."""
    if get_xp(array) is np:
        import scipy.sparse as sp
    else:
        import cupyx.scipy.sparse as sp
    return sp


# ================================================================ the product op

def _matmul_fwd(values, x, pattern, trans):
    M = pattern.matrix(values)
    if trans:
        M = M.T
    y = M @ x
    return y.astype(np.result_type(values.dtype, x.dtype), copy=False)


_matmul = defop("sparse_matmul", _matmul_fwd, save=(0, 1))


@_matmul.defvjp
def _(ns, n, g, values, x):
    p, trans = n.attrs["pattern"], n.attrs["trans"]
    out_idx, in_idx = (p.col, p.row) if trans else (p.row, p.col)
    gv = gx = None
    if n.edges[0] is not None:
        gv = ns.index_select(g, 0, out_idx) * ns.index_select(x, 0, in_idx)
        if gv.ndim > 1:
            gv = ns.sum(gv, 1)
    if n.edges[1] is not None:
        gx = call_op(ns, _matmul, values, g, pattern=p, trans=not trans)
    return gv, gx


# ================================================================ SparseTensor

class SparseTensor:
    """A sparse ``[m, n]`` matrix: constant integer structure, differentiable ``values()``.

    Build one with ``sparse.coo_tensor``, ``sparse.csr_tensor`` or ``sparse.assemble`` (or
    ``to_sparse`` of a dense Tensor). ``A @ x`` with ``x [n]`` or ``[n, k]`` gives ``[m]`` or
    ``[m, k]``. (A dense ``x @ A`` is ``(A.t() @ x.mT).mT``: the Tensor's ``@`` does not hand
    over to sparse operands.)
    """
    __slots__ = ("_pattern", "_values", "layout", "_coalesced")

    def __init__(self, pattern, values, layout="coo", coalesced=False):
        self._pattern, self._values, self.layout = pattern, values, layout
        self._coalesced = coalesced

    # ------------------------------------------------------------ properties
    @property
    def shape(self):
        return self._pattern.shape

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    @property
    def ndim(self):
        return 2

    def dim(self):
        return 2

    @property
    def nnz(self):
        return self._pattern.nnz

    def _nnz(self):
        return self.nnz

    @property
    def dtype(self):
        return self._values.dtype

    @property
    def device(self):
        return self._values.device

    @property
    def requires_grad(self):
        return self._values.requires_grad

    @property
    def is_sparse(self):
        return True

    def values(self):
        """The stored values, a Tensor ``[nnz]`` (differentiable; in this layout's entry order)."""
        return self._values

    def indices(self):
        """Row and column of each stored entry, an int64 Tensor ``[2, nnz]`` (COO view)."""
        p = self._pattern
        return Tensor._make(get_xp(p.row).stack([p.row, p.col]), False, None, 0)

    def crow_indices(self):
        """CSR row pointers, int64 ``[m + 1]`` (only for layout ``"csr"``)."""
        self._need_csr("crow_indices")
        return Tensor._make(self._pattern.csr()[1], False, None, 0)

    def col_indices(self):
        """CSR column indices, int64 ``[nnz]`` (only for layout ``"csr"``)."""
        self._need_csr("col_indices")
        return Tensor._make(self._pattern.col, False, None, 0)

    def _need_csr(self, name):
        if self.layout != "csr":
            raise RuntimeError(f"SparseTensor.{name}: only defined for layout 'csr', this tensor is "
                               f"'{self.layout}'; convert it with .to_sparse_csr()")

    def is_coalesced(self):
        """True if no entry is stored twice and entries are sorted by (row, col)."""
        return self._coalesced

    def __repr__(self):
        return (f"SparseTensor(shape={list(self.shape)}, nnz={self.nnz}, layout={self.layout}, "
                f"dtype={self.dtype}, device={self.device}"
                + (", requires_grad=True" if self.requires_grad else "") + ")")

    def __len__(self):
        return self.shape[0]

    # ------------------------------------------------------------ conversions
    def to_dense(self):
        """The dense Tensor ``[m, n]`` (duplicates summed); differentiable w.r.t. ``values()``."""
        from ..autodiff.ops.indexing import segment_sum
        m, n = self.shape
        return segment_sum(self._values, self._pattern.keys(), m * n).reshape(m, n)

    def coalesce(self):
        """The same matrix with duplicates summed and entries sorted by (row, col), as a COO
        tensor (a CSR tensor stays CSR). Differentiable: each new value is a sum of old ones."""
        if self._coalesced:
            return self
        from ..autodiff.ops.indexing import segment_sum
        p = self._pattern
        xp = get_xp(p.row)
        keys = p.keys()
        uniq, inverse = xp.unique(keys, return_inverse=True)
        n = p.shape[1]
        row, col = uniq // n, uniq % n
        vals = segment_sum(self._values, inverse.reshape(-1), int(uniq.shape[0]))
        return _from_sorted(row, col, vals, p.shape, self.layout)

    def to_sparse_coo(self):
        """The same matrix in layout ``"coo"`` (same entries and order)."""
        if self.layout == "coo":
            return self
        return SparseTensor(self._pattern, self._values, "coo", self._coalesced)

    def to_sparse_csr(self):
        """The same matrix in layout ``"csr"`` (duplicates summed; differentiable)."""
        if self.layout == "csr":
            return self
        return self.coalesce()._as_layout("csr")

    def _as_layout(self, layout):
        return SparseTensor(self._pattern, self._values, layout, self._coalesced)

    def t(self):
        """The transpose ``[n, m]`` (differentiable; same layout)."""
        p = self._pattern.t()
        if self.layout == "coo":
            return SparseTensor(p, self._values, "coo", False)
        from ..autodiff.ops.indexing import index_select
        perm, indptr, indices = p.csr()
        vals = self._values if perm is None else index_select(self._values, 0, perm)
        row = p.row if perm is None else p.row[perm]
        pat = Pattern(row, indices, p.shape, csr=(None, indptr, indices))
        return SparseTensor(pat, vals, "csr", self._coalesced)

    @property
    def T(self):  # noqa: N802
        return self.t()

    @property
    def mT(self):  # noqa: N802
        return self.t()

    def transpose(self, dim0, dim1):
        """``transpose(0, 1)`` is ``t()``; ``transpose(d, d)`` is the matrix itself."""
        d0, d1 = (_norm_dim(d, "transpose") for d in (dim0, dim1))
        return self if d0 == d1 else self.t()

    def detach(self):
        """The same structure with ``values().detach()``."""
        return SparseTensor(self._pattern, self._values.detach(), self.layout, self._coalesced)

    def to(self, *args, **kwargs):
        """Move or cast the values as ``Tensor.to`` does (indices follow to the new device)."""
        vals = self._values.to(*args, **kwargs)
        if vals.device == self.device:
            return SparseTensor(self._pattern, vals, self.layout, self._coalesced)
        from ..autodiff import backend
        p = self._pattern
        mv = lambda a: backend.move(a, vals.device)  # noqa: E731
        csr = None if p._csr is None else tuple(None if a is None else mv(a) for a in p._csr)
        return SparseTensor(Pattern(mv(p.row), mv(p.col), p.shape, csr), vals, self.layout,
                            self._coalesced)

    def double(self):
        return SparseTensor(self._pattern, self._values.double(), self.layout, self._coalesced)

    def float(self):  # noqa: A003
        return SparseTensor(self._pattern, self._values.float(), self.layout, self._coalesced)

    def diagonal(self):
        """The main diagonal, a dense Tensor ``[min(m, n)]`` (duplicates summed; differentiable)."""
        from ..autodiff.ops.indexing import index_select, segment_sum
        p = self._pattern
        xp = get_xp(p.row)
        on = xp.nonzero(p.row == p.col)[0]
        return segment_sum(index_select(self._values, 0, on), p.row[on], min(p.shape))

    # ------------------------------------------------------------ arithmetic
    def matmul(self, other):
        return matmul(self, other)

    def __matmul__(self, other):
        return matmul(self, other)

    def __mul__(self, s):
        if isinstance(s, SparseTensor):
            raise TypeError("SparseTensor * SparseTensor is not supported; use (A.to_dense() * B.to_dense())")
        if isinstance(s, Tensor) and s.ndim != 0:
            raise RuntimeError(f"SparseTensor * Tensor: only a scalar (0-d) Tensor may scale a sparse "
                               f"matrix, got shape {list(s.shape)}")
        return SparseTensor(self._pattern, self._values * s, self.layout, self._coalesced)

    __rmul__ = __mul__

    def __truediv__(self, s):
        return self * (1.0 / s)

    def __neg__(self):
        return SparseTensor(self._pattern, -self._values, self.layout, self._coalesced)

    def __add__(self, other):
        if not isinstance(other, SparseTensor):
            return NotImplemented
        if other.shape != self.shape:
            raise RuntimeError(f"sparse add: shapes {list(self.shape)} and {list(other.shape)} differ")
        if other.device != self.device:
            raise RuntimeError(f"sparse add: tensors on {self.device} and {other.device}")
        from ..autodiff.ops.shape import cat
        xp = get_xp(self._pattern.row)
        a, b = self._pattern, other._pattern
        if a is b:
            return SparseTensor(a, self._values + other._values, self.layout, self._coalesced)
        p = Pattern(xp.concatenate([a.row, b.row]), xp.concatenate([a.col, b.col]), a.shape)
        out = SparseTensor(p, cat([self._values, other._values.to(self._values.dtype)]), "coo")
        return out.coalesce()._as_layout(self.layout)

    def __sub__(self, other):
        if not isinstance(other, SparseTensor):
            return NotImplemented
        return self + (-other)


def _norm_dim(d, opname):
    if not isinstance(d, numbers.Integral) or not -2 <= d < 2:
        raise IndexError(f"SparseTensor.{opname}: dimension {d!r} out of range for a 2-d sparse tensor")
    return int(d) % 2


def _from_sorted(row, col, values, shape, layout):
    """A coalesced tensor from entries sorted by (row, col) without duplicates."""
    xp = get_xp(row)
    m = shape[0]
    indptr = xp.zeros(m + 1, np.int64)
    if row.shape[0]:
        indptr[1:] = xp.cumsum(xp.bincount(row, minlength=m))
    pat = Pattern(row.astype(np.int64, copy=False), col.astype(np.int64, copy=False), shape,
                  csr=(None, indptr, col.astype(np.int64, copy=False)))
    return SparseTensor(pat, values, layout, True)


def is_sparse(x):
    """True for a ``SparseTensor``."""
    return isinstance(x, SparseTensor)


# ================================================================ construction

def _as_values(values, opname, device=None, dtype=None):
    from ..autodiff.creation import as_tensor
    if not isinstance(values, Tensor):
        values = as_tensor(values, dtype=dtype, device=device)
        if values._data.dtype.kind in "iub":
            from ..autodiff.dtypes import get_default_dtype
            values = values.to(get_default_dtype())
    elif dtype is not None:
        values = values.to(dtype)
    if values._data.dtype not in _FLOATS:
        raise RuntimeError(f"{opname}: values must be float32 or float64, got dtype {values.dtype} "
                           f"(shape {list(values.shape)}); convert with .double() or .float()")
    return values


def _as_int_array(a, like, opname, name):
    """An index (Tensor, array, list) -> a 1-d int64 array on ``like``'s device (raw)."""
    from ..autodiff import backend
    if isinstance(a, Tensor):
        a = a._data
    xp = get_xp(like._data)
    if not backend.is_array(a):
        a = np.asarray(a)
        if a.size == 0:
            a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise RuntimeError(f"{opname}: {name} must be integers, got dtype {a.dtype}")
    if get_xp(a) is not xp:
        a = backend.move(a, like.device)
    return a.astype(np.int64, copy=False)


def _check_shape(shape, opname):
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{opname}: shape must be a pair of ints (m, n), got {shape!r}") from None
    if len(shape) != 2 or min(shape) < 0:
        raise RuntimeError(f"{opname}: shape must be two non-negative sizes (m, n), got {list(shape)}")
    return shape


def _check_range(idx, size, opname, name, shape):
    if idx.shape[0]:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= size:
            bad = lo if lo < 0 else hi
            raise IndexError(f"{opname}: {name} index {bad} is out of range for a matrix of shape "
                             f"{list(shape)} (valid: 0 .. {size - 1})")


def coo_tensor(indices, values, size, *, dtype=None, device=None, check=True):
    """A COO ``SparseTensor`` ``[m, n]`` from ``indices [2, nnz]`` (rows, columns; integers) and
    ``values [nnz]`` (a Tensor that may require grad; arrays/lists are converted).

    ``size`` is ``(m, n)``. Entries may be in any order and repeat (duplicates are summed by
    every operation; ``coalesce()`` sums them explicitly). Raises IndexError for an index
    outside the shape and RuntimeError for mismatched sizes."""
    opname = "sparse.coo_tensor"
    shape = _check_shape(size, opname)
    values = _as_values(values, opname, device, dtype)
    if values.ndim != 1:
        raise RuntimeError(f"{opname}: values must be a vector [nnz], got shape {list(values.shape)}")
    idx = indices._data if isinstance(indices, Tensor) else indices
    from ..autodiff import backend
    if not backend.is_array(idx):
        idx = np.asarray(idx, dtype=np.int64) if len(idx) else np.zeros((2, 0), np.int64)
    if idx.ndim != 2 or idx.shape[0] != 2 or idx.shape[1] != values.shape[0]:
        raise RuntimeError(f"{opname}: indices must have shape [2, nnz] = [2, {values.shape[0]}] to match "
                           f"values of shape {list(values.shape)}, got {list(idx.shape)}")
    row = _as_int_array(idx[0], values, opname, "indices")
    col = _as_int_array(idx[1], values, opname, "indices")
    if check:
        _check_range(row, shape[0], opname, "row", shape)
        _check_range(col, shape[1], opname, "column", shape)
    return SparseTensor(Pattern(row, col, shape), values, "coo", False)


def csr_tensor(crow_indices, col_indices, values, size, *, dtype=None, device=None, check=True):
    """A CSR ``SparseTensor`` ``[m, n]``: row ``i`` holds entries ``crow_indices[i] ..
    crow_indices[i + 1] - 1`` of ``col_indices [nnz]`` and ``values [nnz]``; ``crow_indices``
    is ``[m + 1]``, starts at 0, never decreases and ends at ``nnz``. ``values`` may require
    grad. Raises IndexError / RuntimeError for inconsistent inputs."""
    opname = "sparse.csr_tensor"
    shape = _check_shape(size, opname)
    values = _as_values(values, opname, device, dtype)
    if values.ndim != 1:
        raise RuntimeError(f"{opname}: values must be a vector [nnz], got shape {list(values.shape)}")
    crow = _as_int_array(crow_indices, values, opname, "crow_indices")
    col = _as_int_array(col_indices, values, opname, "col_indices")
    nnz = values.shape[0]
    xp = get_xp(crow)
    if crow.ndim != 1 or crow.shape[0] != shape[0] + 1:
        raise RuntimeError(f"{opname}: crow_indices must have shape [m + 1] = [{shape[0] + 1}] for shape "
                           f"{list(shape)}, got {list(crow.shape)}")
    if col.ndim != 1 or col.shape[0] != nnz:
        raise RuntimeError(f"{opname}: col_indices must have shape [nnz] = [{nnz}] to match values, got "
                           f"{list(col.shape)}")
    if check:
        if int(crow[0]) != 0 or int(crow[-1]) != nnz or bool(xp.any(xp.diff(crow) < 0)):
            raise RuntimeError(f"{opname}: crow_indices must start at 0, never decrease and end at nnz={nnz}, "
                               f"got first {int(crow[0])}, last {int(crow[-1])}")
        _check_range(col, shape[1], opname, "column", shape)
    row = xp.repeat(xp.arange(shape[0], dtype=np.int64), xp.diff(crow).tolist() if xp is not np
                    else xp.diff(crow))
    pat = Pattern(row, col, shape, csr=(None, crow, col))
    return SparseTensor(pat, values, "csr", False)


def assemble(rows, cols, values, size, *, layout="csr"):
    """Scatter-add assembly, as finite elements need: ``A[rows[k], cols[k]] += values[k]``.

    ``rows``, ``cols`` (integers) and ``values`` (a Tensor that may require grad) have one
    common shape ``[*]`` (e.g. ``[n_elements, 3, 3]`` element matrices with their global
    indices); ``size`` is ``(m, n)``. Returns a coalesced ``SparseTensor`` ``[m, n]``
    (duplicates summed; the gradient of each value is the gradient of its summed entry) in
    ``layout`` ``"csr"`` (default) or ``"coo"``."""
    opname = "sparse.assemble"
    values = _as_values(values, opname)
    r = rows._data if isinstance(rows, Tensor) else np.asarray(rows) if not hasattr(rows, "shape") else rows
    c = cols._data if isinstance(cols, Tensor) else np.asarray(cols) if not hasattr(cols, "shape") else cols
    if tuple(r.shape) != tuple(values.shape) or tuple(c.shape) != tuple(values.shape):
        raise RuntimeError(f"{opname}: rows, cols and values must have the same shape, got rows "
                           f"{list(r.shape)}, cols {list(c.shape)}, values {list(values.shape)}")
    if layout not in ("csr", "coo"):
        raise ValueError(f"{opname}: layout must be 'csr' or 'coo', got {layout!r}")
    r = _as_int_array(r.reshape(-1), values, opname, "rows")
    c = _as_int_array(c.reshape(-1), values, opname, "cols")
    xp = get_xp(r)
    A = coo_tensor(xp.stack([r, c]), values.reshape(-1), size)
    return A.coalesce()._as_layout(layout)


def to_sparse(dense, layout="coo"):
    """The nonzero entries of a dense ``[m, n]`` Tensor as a ``SparseTensor`` (differentiable
    w.r.t. the dense tensor at those entries)."""
    if not isinstance(dense, Tensor) or dense.ndim != 2:
        raise RuntimeError(f"sparse.to_sparse: expected a 2-d Tensor, got "
                           f"{getattr(dense, 'shape', type(dense).__name__)}")
    xp = get_xp(dense._data)
    r, c = xp.nonzero(dense._data)
    vals = dense[Tensor._make(r, False, None, 0), Tensor._make(c, False, None, 0)]
    return _from_sorted(r.astype(np.int64), c.astype(np.int64), vals, dense.shape, "coo")._as_layout(layout)


# ================================================================ products

def _dense_operand(x, A, opname):
    if not isinstance(x, Tensor):
        raise TypeError(f"{opname}: the dense operand must be a Tensor, got {type(x).__name__}")
    if x._data.dtype != A._values._data.dtype:
        raise RuntimeError(f"{opname}: dtype mismatch: sparse values are {A.dtype} but the dense operand "
                           f"is {x.dtype} (shape {list(x.shape)}); convert one with .to(dtype)")
    if type(x._data) is not type(A._values._data):
        raise RuntimeError(f"{opname}: the sparse matrix is on {A.device} but the dense operand is on "
                           f"{x.device}; move one with .to(device)")
    return x


def matmul(A, x):
    """Sparse-dense product ``A @ x``: ``A`` a ``SparseTensor [m, n]``, ``x`` a Tensor ``[n]``
    (spmv, result ``[m]``) or ``[n, k]`` (spmm, result ``[m, k]``). Differentiable w.r.t.
    ``A.values()`` and ``x``."""
    opname = "sparse.matmul"
    if not isinstance(A, SparseTensor):
        raise TypeError(f"{opname}: first argument must be a SparseTensor, got {type(A).__name__}")
    if isinstance(x, SparseTensor):
        raise TypeError(f"{opname}: sparse @ sparse is not supported; use A @ B.to_dense()")
    x = _dense_operand(x, A, opname)
    m, n = A.shape
    if x.ndim not in (1, 2) or x.shape[0] != n:
        raise RuntimeError(f"{opname}: cannot multiply a sparse matrix of shape {list(A.shape)} with a "
                           f"tensor of shape {list(x.shape)}: expected [{n}] or [{n}, k]")
    return apply(_matmul, (A._values, x), {"pattern": A._pattern, "trans": False})
