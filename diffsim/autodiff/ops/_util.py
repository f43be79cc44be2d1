"""Helpers shared by the op modules: argument checks and Tensor-method binding."""
from __future__ import annotations

import numbers

import numpy as np

from .. import dtypes
from ..tensor import Tensor, _dim



def method(*names):
    """Decorator: also expose the function as Tensor method(s) ``names`` (default: its name)."""
    def deco(fn):
        for n in names or (fn.__name__,):
            setattr(Tensor, n, fn)
        return fn
    return deco


def as_tensor_arg(x, opname, like=None):
    """Tensors pass through; arrays, lists and scalars become Tensors (on ``like``'s device)."""
    if isinstance(x, Tensor):
        return x
    from ..creation import as_tensor
    if isinstance(x, (list, tuple, np.ndarray, numbers.Number, np.generic)) or hasattr(x, "__array__"):
        return as_tensor(x, device=None if like is None else like.device)
    raise TypeError(f"{opname}: expected a Tensor, got {type(x).__name__}")


def check_tensor(x, opname, argname="input"):
    if not isinstance(x, Tensor):
        raise TypeError(f"{opname}: argument '{argname}' must be a Tensor, got {type(x).__name__}")
    return x


def norm_dim(dim, ndim, opname):
    return _dim(dim, ndim, opname)


def norm_dims(dim, ndim, opname):
    """``dim`` (None, int, or tuple/list of ints) -> sorted tuple of non-negative dims, or None."""
    if dim is None:
        return None
    if isinstance(dim, (tuple, list)):
        out = tuple(sorted({_dim(d, ndim, opname) for d in dim}))
        if len(out) != len(dim):
            raise RuntimeError(f"{opname}: dim {tuple(dim)} appears multiple times in the list of dims")
        return out
    if isinstance(dim, Tensor) or not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TypeError(f"{opname}: dim must be an int or a tuple of ints, got "
                        f"{type(dim).__name__} {dim!r}")
    return (_dim(dim, ndim, opname),)


def float_result(x):
    """Cast integer/bool tensors to the default float dtype (for ops like sin on ints)."""
    if x._data.dtype.kind != "f":
        from .elementwise import astype
        return astype(x, dtypes.get_default_dtype())
    return x
