"""Matrix products. (``ds.linalg`` decompositions live in ``autodiff/linalg.py``.)"""
from __future__ import annotations

from ..function import apply, defop
from ..tensor import Tensor
from ._util import check_tensor, method

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
    if sb:
        out = out.squeeze(-1)
    if sa:
        out = out.squeeze(-2)
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
