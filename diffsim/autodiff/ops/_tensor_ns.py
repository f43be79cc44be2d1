"""The backward namespace on Tensors (``ns`` under ``create_graph=True``).

Same names and signatures as ``rawops``; every function is a differentiable Tensor op, so a
backward rule run with this namespace records a graph (gradients of gradients)."""
from __future__ import annotations

import types

from .. import creation, rawops
from ..tensor import Tensor


def _build():
    from .. import ops
    from . import elementwise as ew
    from . import reduction as red
    from . import shape as sh
    from . import indexing as ix

    def sum_to(g, shape):
        if g.shape == tuple(shape):
            return g
        lead = g.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape)
                                          if s == 1 and g.shape[i + lead] != 1)
        out = red.sum(g, axes, keepdim=True) if axes else g
        return sh.reshape(out, tuple(shape))

    def zeros_meta(ref, shape, dtype):
        return creation.zeros(shape, dtype=dtype, device=ref.device)

    def index_put_into(shape, index, values, accumulate=True):
        base = creation.zeros(shape, dtype=values.dtype, device=values.device)
        return ix.index_put(base, _index_tensors(index), values, accumulate=accumulate)

    def getitem(x, index):
        return ix.getitem(x, index)

    def pad_dim(x, dim, before, after):
        parts = []
        shp = list(x.shape)
        if before:
            shp[dim] = before
            parts.append(creation.zeros(tuple(shp), dtype=x.dtype, device=x.device))
        parts.append(x)
        if after:
            shp[dim] = after
            parts.append(creation.zeros(tuple(shp), dtype=x.dtype, device=x.device))
        return sh.cat(parts, dim)

    def flip(x, dims):
        return sh.flip(x, tuple(dims))

    def mask_fill(g, mask, value):
        return ew.where(mask, value, g)

    def to_device(x, device):
        return ew.to_device(x, device)

    def solve(a, b):
        from ..linalg import _ns_solve
        return _ns_solve(a, b)

    def cholesky_solve(b, L):
        from ..linalg import _ns_cholesky_solve
        return _ns_cholesky_solve(b, L)

    table = dict(
        sum_to=sum_to, zeros_meta=zeros_meta, index_put_into=index_put_into, getitem=getitem,
        pad_dim=pad_dim, flip=flip, mask_fill=mask_fill, to_device=to_device,
        solve=solve, cholesky_solve=cholesky_solve,
        sum=red.sum, reshape=sh.reshape, broadcast_to=sh.broadcast_to, unsqueeze=sh.unsqueeze,
        permute=lambda x, dims: sh.permute(x, tuple(dims)), transpose=sh.transpose,
        mT=lambda x: sh.transpose(x, -2, -1), matmul=ops.linalg.matmul,
        zeros_like=creation.zeros_like, ones_like=creation.ones_like, astype=ew.astype,
        where=ew.where, cat=sh.cat, stack=sh.stack, roll=sh.roll, cumsum=red.cumsum,
        cumprod=red.cumprod, tril=sh.tril, triu=sh.triu, diagonal=sh.diagonal,
        diag_embed=sh.diag_embed, arctan2=ew.atan2, reciprocal=ew.reciprocal,
        scatter_add_into=ix._scatter_add_into,
    )
    for name in rawops.NAMES:
        if name not in table:
            fn = getattr(ops, name, None)
            if fn is not None:
                table[name] = fn
    return types.SimpleNamespace(**table)


def _index_tensors(index):
    """Raw index arrays -> Tensors (so index_put gets a valid index)."""
    items = index if isinstance(index, tuple) else (index,)
    return tuple(Tensor._make(it, False, None, 0) if hasattr(it, "dtype") and not isinstance(it, Tensor)
                 else it for it in items)


def missing_names():
    """Names the raw namespace has but the Tensor namespace lacks (should be empty)."""
    return sorted(set(rawops.NAMES) - set(vars(TENSOR_NS)))


TENSOR_NS = None
