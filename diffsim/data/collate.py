"""``default_collate`` (a list of samples -> one batch) and ``default_convert`` (numpy -> Tensor
without batching), with PyTorch's rules.

=====================================  ==============================================
sample element (each of the B samples)  batch element
=====================================  ==============================================
Tensor of shape S                       Tensor [B, *S] (``ds.stack``)
numpy array of shape S                  Tensor [B, *S], same dtype
numpy scalar (``np.float32(1)``)        Tensor [B], same dtype
Python float / int / bool               Tensor [B] float64 / int64 / bool
str or bytes                            list of B strings
dict (Mapping)                          dict of the collated values, same keys
namedtuple                              the same namedtuple of collated fields
tuple / list (equal lengths)            list of collated columns (tuples become lists)
=====================================  ==============================================
"""
from __future__ import annotations

import collections.abc
import numbers

import numpy as np

from ..autodiff import dtypes
from ..autodiff.backend import get_xp
from ..autodiff.creation import as_tensor, tensor
from ..autodiff.ops import stack
from ..autodiff.tensor import Tensor

_ERR = ("default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
        "found {}")


def _is_numpy_numeric(arr):
    return arr.dtype.kind not in "OSUVMm"


def _stack_tensors(batch):
    """``ds.stack(batch, 0)``; when no tensor requires grad (the usual case for data) the arrays
    are stacked directly, which skips building B graph nodes."""
    first = batch[0]
    if (not any(b._rg for b in batch) and all(b._data.dtype == first._data.dtype for b in batch)
            and len({b.device for b in batch}) == 1):
        shape = first.shape
        if any(b.shape != shape for b in batch):
            raise RuntimeError(f"default_collate: tensors in a batch must have equal shapes to be "
                               f"stacked, got {[list(b.shape) for b in batch]}; pass a collate_fn "
                               "that pads them or returns a list")
        xp = get_xp(first._data)
        return Tensor._make(xp.stack([b._data for b in batch], 0), False, None, 0)
    return stack(batch, 0)


def default_convert(data):
    """Convert numpy arrays and numpy scalars inside ``data`` to Tensors, recursing into dicts,
    namedtuples, tuples and lists (tuples become lists), leaving everything else alone. The
    ``collate_fn`` of a ``DataLoader`` with ``batch_size=None``."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, (np.ndarray, np.generic)) and not isinstance(data, (np.str_, np.bytes_)):
        if isinstance(data, np.ndarray) and not _is_numpy_numeric(data):
            return data
        return as_tensor(np.asarray(data))
    if isinstance(data, collections.abc.Mapping):
        try:
            return type(data)({k: default_convert(v) for k, v in data.items()})
        except TypeError:
            return {k: default_convert(v) for k, v in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        try:
            return type(data)([default_convert(d) for d in data])
        except TypeError:
            return [default_convert(d) for d in data]
    return data


def default_collate(batch):
    """Merge a list of ``B`` samples into a batch (rules in the module docstring).

    Raises ``TypeError`` naming the element type it cannot collate (e.g. ``None`` or an object
    array), and ``RuntimeError`` when list/tuple samples have different lengths. Tensors of
    different shapes fail in ``ds.stack`` with the shapes named.
    """
    if not isinstance(batch, collections.abc.Sequence) or isinstance(batch, (str, bytes)):
        batch = list(batch)
    if len(batch) == 0:
        raise ValueError("default_collate: got an empty batch")
    elem = batch[0]
    elem_type = type(elem)
    if isinstance(elem, Tensor):
        for i, b in enumerate(batch):
            if not isinstance(b, Tensor):
                raise TypeError(f"default_collate: sample 0 is a Tensor but sample {i} is a "
                                f"{type(b).__name__}")
        return _stack_tensors(batch)
    if isinstance(elem, (np.ndarray, np.generic)) and not isinstance(elem, (np.str_, np.bytes_)):
        if isinstance(elem, np.ndarray):
            if not _is_numpy_numeric(elem):
                raise TypeError(_ERR.format(f"numpy array of dtype {elem.dtype}"))
            return default_collate([as_tensor(np.asarray(b)) for b in batch])
        return as_tensor(np.asarray(batch))               # numpy scalars keep their dtype
    if isinstance(elem, bool):
        return tensor(batch, dtype=dtypes.bool_)
    if isinstance(elem, float):
        return tensor(batch, dtype=dtypes.float64)
    if isinstance(elem, numbers.Integral):
        return tensor(batch, dtype=dtypes.int64)
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, collections.abc.Mapping):
        out = {key: default_collate([d[key] for d in batch]) for key in elem}
        try:
            return elem_type(out)
        except TypeError:
            return out
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):        # namedtuple
        return elem_type(*(default_collate(list(samples)) for samples in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if not all(len(e) == size for e in batch):
            raise RuntimeError("default_collate: each element in list of batch should be of equal "
                               f"size; got lengths {[len(e) for e in batch]}")
        columns = [default_collate(list(samples)) for samples in zip(*batch)]
        if isinstance(elem, tuple):
            return columns                                  # as PyTorch: tuples become lists
        try:
            return elem_type(columns)
        except TypeError:
            return columns
    raise TypeError(_ERR.format(elem_type.__name__ if elem is not None else "NoneType"))
