"""Matrix and tensor products: matmul/mm/bmm/mv, dot/vdot/outer/inner, tensordot, einsum, kron,
cross. (``ds.linalg`` decompositions and solvers live in ``autodiff/linalg.py``.)"""
from __future__ import annotations

import numbers
import string

from ..backend import get_xp
from ..function import apply, defop
from ..tensor import Tensor
from ._util import check_tensor, method, norm_dim

_matmul = defop("matmul", lambda a, b: a @ b, broadcast=True, save=lambda e, a: (
    0 if e[1] is not None else -1, 1 if e[0] is not None else -1))


@_matmul.defvjp
def _(ns, n, g, a, b):
    return (None if b is None else ns.matmul(g, ns.mT(b)),
            None if a is None else ns.matmul(ns.mT(a), g))


def _promote_pair(a, b, opname):
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"{opname}: expected Tensors, got {type(a).__name__} and {type(b).__name__}")
    if a._data.dtype != b._data.dtype:
        from .. import dtypes
        from .elementwise import astype
        rt = dtypes.result_type(a, b)
        a, b = astype(a, rt), astype(b, rt)
    return a, b


def matmul(input, other):  # noqa: A002
    """Matrix product with PyTorch's rules: 1-d operands are vectors, leading dims broadcast.
    Shapes: ``[..., n, k] @ [..., k, m] -> [..., n, m]``."""
    a, b = _promote_pair(input, other, "matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"matmul: both arguments need at least 1 dimension, got shapes "
                           f"{list(a.shape)} and {list(b.shape)}")
    ka = a.shape[-1]
    kb = b.shape[-2] if b.ndim > 1 else b.shape[0]
    if ka != kb:
        raise RuntimeError(f"matmul: shapes {list(a.shape)} and {list(b.shape)} cannot be multiplied "
                           f"(inner dimensions {ka} and {kb} differ)")
    if a.ndim >= 2 and b.ndim >= 2:
        try:
            return apply(_matmul, (a, b))
        except ValueError as e:
            raise RuntimeError(f"matmul: batch dimensions of {list(a.shape)} and {list(b.shape)} "
                               f"cannot be broadcast ({e})") from None
    sa, sb = a.ndim == 1, b.ndim == 1
    a2 = a.unsqueeze(0) if sa else a
    b2 = b.unsqueeze(-1) if sb else b
    out = apply(_matmul, (a2, b2))
    if sa:                  # squeeze the row dim first: [1, 1] -> [1] -> [] for vector @ vector
        out = out.squeeze(-2)
    if sb:
        out = out.squeeze(-1)
    return out


Tensor.matmul = matmul
Tensor.__matmul__ = matmul
Tensor.__rmatmul__ = lambda self, other: matmul(other, self)


@method()
def mm(input, mat2):  # noqa: A002
    """2-d matrix product ``[n, k] @ [k, m]``."""
    a, b = check_tensor(input, "mm"), check_tensor(mat2, "mm")
    if a.ndim != 2 or b.ndim != 2:
        raise RuntimeError(f"mm: expected 2-d tensors, got shapes {list(a.shape)} and {list(b.shape)}")
    return matmul(a, b)


@method()
def bmm(input, mat2):  # noqa: A002
    """Batched product ``[B, n, k] @ [B, k, m]`` (no broadcasting)."""
    a, b = check_tensor(input, "bmm"), check_tensor(mat2, "bmm")
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0]:
        raise RuntimeError(f"bmm: expected 3-d tensors with equal batch size, got shapes "
                           f"{list(a.shape)} and {list(b.shape)}")
    return matmul(a, b)


@method()
def mv(input, vec):  # noqa: A002
    """Matrix-vector product ``[n, k] @ [k]``."""
    return matmul(input, vec)


# ------------------------------------------------------------------ vector products

def _check_1d(a, b, opname):
    if a.ndim != 1 or b.ndim != 1:
        raise RuntimeError(f"{opname}: expected 1-d tensors, got shapes {list(a.shape)} and "
                           f"{list(b.shape)}")


def _dot(input, other, opname):  # noqa: A002
    a, b = _promote_pair(input, other, opname)
    _check_1d(a, b, opname)
    if a.shape[0] != b.shape[0]:
        raise RuntimeError(f"{opname}: inconsistent tensor sizes, got shapes {list(a.shape)} and "
                           f"{list(b.shape)}")
    return matmul(a, b)


@method()
def dot(input, other):  # noqa: A002
    """Inner product of two 1-d tensors of the same length: ``[n], [n] -> []``."""
    return _dot(input, other, "dot")


@method()
def vdot(input, other):  # noqa: A002
    """``dot`` with the first argument conjugated (the same as ``dot`` for real tensors)."""
    return _dot(input, other, "vdot")


@method("outer", "ger")
def outer(input, vec2):  # noqa: A002
    """Outer product of two 1-d tensors: ``[n], [m] -> [n, m]``."""
    a, b = _promote_pair(input, vec2, "outer")
    _check_1d(a, b, "outer")
    return a.unsqueeze(-1) * b.unsqueeze(0)


ger = outer


def _prod(shape):
    p = 1
    for s in shape:
        p *= s
    return p


def _dims_list(d, ndim, opname):
    items = list(d) if isinstance(d, (list, tuple)) else [d]
    out = []
    for x in items:
        if not isinstance(x, numbers.Integral) or isinstance(x, bool):
            raise TypeError(f"{opname}: dims must be ints or lists of ints, got {x!r}")
        out.append(norm_dim(int(x), ndim, opname))
    if len(set(out)) != len(out):
        raise RuntimeError(f"{opname}: dim {out} appears multiple times in the list of dims")
    return out


def tensordot(a, b, dims=2):
    """Contract dims ``dims[0]`` of ``a`` with dims ``dims[1]`` of ``b`` (an int ``d`` means the
    last ``d`` dims of ``a`` with the first ``d`` of ``b``). Shape: free dims of ``a`` then of ``b``."""
    a, b = _promote_pair(a, b, "tensordot")
    if isinstance(dims, numbers.Integral) and not isinstance(dims, bool):
        d = int(dims)
        if d < 0:
            raise RuntimeError(f"tensordot: expects dims >= 0, but got dims={d}")
        if d > a.ndim or d > b.ndim:
            raise RuntimeError(f"tensordot: dims={d} is larger than the number of dims of the inputs "
                               f"(shapes {list(a.shape)} and {list(b.shape)})")
        da, db = list(range(a.ndim - d, a.ndim)), list(range(d))
    else:
        if not isinstance(dims, (list, tuple)) or len(dims) != 2:
            raise TypeError(f"tensordot: dims must be an int or a pair of lists of dims, got {dims!r}")
        da, db = _dims_list(dims[0], a.ndim, "tensordot"), _dims_list(dims[1], b.ndim, "tensordot")
        if len(da) != len(db):
            raise RuntimeError(f"tensordot: both dimension lists should have the same length, got "
                               f"{da} and {db}")
    for i, j in zip(da, db):
        if a.shape[i] != b.shape[j]:
            raise RuntimeError(f"tensordot: contracted dimensions need to match, but first has size "
                               f"{a.shape[i]} in dim {i} (shape {list(a.shape)}) and second has size "
                               f"{b.shape[j]} in dim {j} (shape {list(b.shape)})")
    fa = [i for i in range(a.ndim) if i not in da]
    fb = [j for j in range(b.ndim) if j not in db]
    sa, sb = tuple(a.shape[i] for i in fa), tuple(b.shape[j] for j in fb)
    k = _prod(a.shape[i] for i in da)
    a2 = (a.permute(fa + da) if a.ndim > 1 else a).reshape(_prod(sa), k)
    b2 = (b.permute(db + fb) if b.ndim > 1 else b).reshape(k, _prod(sb))
    return matmul(a2, b2).reshape(sa + sb)


@method()
def inner(input, other):  # noqa: A002
    """Sum over the last dims of both (a scalar operand multiplies).
    Shape: ``[*a, n], [*b, n] -> [*a, *b]``."""
    a, b = _promote_pair(input, other, "inner")
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if a.shape[-1] != b.shape[-1]:
        raise RuntimeError(f"inner: last dimensions must match, got shapes {list(a.shape)} and "
                           f"{list(b.shape)}")
    return tensordot(a, b, ([-1], [-1]))


@method()
def kron(input, other):  # noqa: A002
    """Kronecker product; the operand with fewer dims gets leading size-1 dims.
    Shape: ``[a0, a1, ...], [b0, b1, ...] -> [a0*b0, a1*b1, ...]``."""
    a, b = _promote_pair(input, other, "kron")
    nd = max(a.ndim, b.ndim)
    sa = (1,) * (nd - a.ndim) + tuple(a.shape)
    sb = (1,) * (nd - b.ndim) + tuple(b.shape)
    ia = tuple(x for s in sa for x in (s, 1))
    ib = tuple(x for s in sb for x in (1, s))
    out = a.reshape(ia) * b.reshape(ib)
    return out.reshape(tuple(x * y for x, y in zip(sa, sb)))


@method()
def cross(input, other, dim=-1):  # noqa: A002
    """Cross product of 3-vectors along ``dim`` (``torch.linalg.cross``: inputs broadcast)."""
    from .shape import _broadcast_shape, broadcast_to, roll
    a, b = _promote_pair(input, other, "cross")
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"cross: expected tensors with at least 1 dimension, got shapes "
                           f"{list(a.shape)} and {list(b.shape)}")
    shape = _broadcast_shape([a.shape, b.shape], "cross")
    d = norm_dim(dim, len(shape), "cross")
    da, db = d - (len(shape) - a.ndim), d - (len(shape) - b.ndim)
    if da < 0 or db < 0 or a.shape[da] != 3 or b.shape[db] != 3:
        raise RuntimeError(f"cross: inputs dimension {dim} must have length 3, got shapes "
                           f"{list(a.shape)} and {list(b.shape)}")
    a, b = broadcast_to(a, shape), broadcast_to(b, shape)
    return roll(a, -1, d) * roll(b, -2, d) - roll(a, -2, d) * roll(b, -1, d)


# ------------------------------------------------------------------ einsum

_LETTERS = string.ascii_uppercase + string.ascii_lowercase


def _parse_einsum(equation, shapes):
    """Parse ``equation`` for operands of ``shapes``: ellipses become explicit letters and the
    output is made explicit. Returns (input terms, output term, size of each letter)."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise RuntimeError(f"einsum: the equation {equation!r} has {len(terms)} operand(s) but "
                           f"{len(shapes)} were given")
    for t in terms + [rhs]:
        rest = t.replace("...", "", 1)
        bad = [c for c in rest if c not in _LETTERS]
        if bad:
            raise RuntimeError(f"einsum: invalid subscript {bad[0]!r} in equation {equation!r}; "
                               "subscripts must be letters, with at most one '...' per operand")
    used = set(c for c in eq if c in _LETTERS)
    free = [c for c in _LETTERS if c not in used]
    n_ell = []
    for t, s in zip(terms, shapes):
        n = len(t.replace("...", ""))
        if "..." in t:
            if len(s) < n:
                raise RuntimeError(f"einsum: operand with subscripts {t!r} needs at least {n} dims, got "
                                   f"shape {list(s)}")
            n_ell.append(len(s) - n)
        else:
            if len(s) != n:
                raise RuntimeError(f"einsum: the number of subscripts in {t!r} ({n}) does not match the "
                                   f"number of dimensions of the operand (shape {list(s)})")
            n_ell.append(0)
    E = max(n_ell, default=0)
    if E > len(free):
        raise RuntimeError(f"einsum: too many dimensions under '...' in {equation!r}")
    ell = "".join(free[:E])
    terms = [t.replace("...", ell[E - k:]) for t, k in zip(terms, n_ell)]
    if arrow:
        out = rhs.replace("...", ell)
        if len(set(out)) != len(out):
            raise RuntimeError(f"einsum: output subscript appears more than once in {equation!r}")
        for c in out:
            if not any(c in t for t in terms):
                raise RuntimeError(f"einsum: output subscript {c!r} does not appear in the inputs of "
                                   f"{equation!r}")
    else:
        counts = {}
        for t in terms:
            for c in t:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    sizes = {}
    for t, s in zip(terms, shapes):
        for c, n in zip(t, s):
            old = sizes.get(c)
            if old is None or old == 1:
                sizes[c] = n
            elif n != 1 and n != old:
                raise RuntimeError(f"einsum: subscript {c!r} has size {n} for an operand of shape "
                                   f"{list(s)}, which does not match the size {old} it has elsewhere "
                                   f"(equation {equation!r}, shapes {[list(x) for x in shapes]})")
    return terms, out, sizes


def _einsum_fwd(*ops, equation, shapes):
    xp = get_xp(ops[0])
    out = xp.einsum(equation, *ops, optimize=len(ops) > 2)
    if len(ops) == 1 and xp.may_share_memory(out, ops[0]):
        # numpy gives a view for a pure transpose/diagonal ("ij->ji", "ii->i"); untracked, an
        # in-place change of the input would silently alter it (and a saved copy of it)
        out = out.copy()
    return out


def _einsum_save(edges, args):
    n = len(args)
    return tuple(j if any(edges[i] is not None for i in range(n) if i != j) else -1 for j in range(n))


_einsum = defop("einsum", _einsum_fwd, save=_einsum_save)


@_einsum.defvjp
def _(ns, n, g, *ops):
    lhs, out = n.attrs["equation"].split("->")
    terms = lhs.split(",")
    used = set(n.attrs["equation"])
    fresh = iter(c for c in _LETTERS if c not in used)
    res = []
    for i, t in enumerate(terms):
        if n.edges[i] is None:
            res.append(None)
            continue
        others = [j for j in range(len(terms)) if j != i]
        subs, operands = [out] + [terms[j] for j in others], [g] + [ops[j] for j in others]
        seen, target = set(), ""
        for pos, c in enumerate(t):
            size = n.attrs["shapes"][i][pos]
            if c in seen:                       # repeated subscript: a diagonal, tie with identity
                k = next(fresh)
                subs.append(c + k)
                operands.append(ns.diag_embed(ns.zeros_meta(g, (size,), g.dtype) + 1))
                target += k
                continue
            seen.add(c)
            target += c
            if c not in out and not any(c in terms[j] for j in others):
                subs.append(c)                  # summed only within this operand: broadcast back
                operands.append(ns.zeros_meta(g, (size,), g.dtype) + 1)
        res.append(ns.einsum(",".join(subs) + "->" + target, *operands))
    return tuple(res)


def einsum(equation, *operands):
    """Einstein summation, as ``torch.einsum``: ``einsum("ij,jk->ik", a, b)``; ``...`` stands for
    broadcast dims; without ``->`` the output has the subscripts that appear once, in
    alphabetical order. Operands may also be passed as one list. Differentiable w.r.t. every
    operand (repeated subscripts/diagonals included)."""
    if not isinstance(equation, str):
        raise TypeError(f"einsum: the first argument must be the equation string, got "
                        f"{type(equation).__name__}")
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands:
        raise RuntimeError("einsum: must provide at least one operand")
    ts = []
    for k, x in enumerate(operands):
        if not isinstance(x, Tensor):
            raise TypeError(f"einsum: operand {k} must be a Tensor, got {type(x).__name__}")
        ts.append(x)
    if len({t._data.dtype for t in ts}) > 1:
        from .. import dtypes
        from .elementwise import astype
        rt = dtypes.result_type(*ts)
        ts = [astype(t, rt) for t in ts]
    terms, out, sizes = _parse_einsum(equation, [t.shape for t in ts])
    for k, (t, x) in enumerate(zip(terms, ts)):
        full = tuple(sizes[c] for c in t)
        if full != x.shape:                     # size-1 dims broadcast against the others
            ts[k] = x.expand(full)
    eq = ",".join(terms) + "->" + out
    return apply(_einsum, tuple(ts), {"equation": eq,
                                      "shapes": tuple(tuple(t.shape) for t in ts)})
