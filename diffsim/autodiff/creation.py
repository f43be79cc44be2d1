"""Tensor creation: ``tensor``, ``as_tensor``, ``from_numpy``, ``zeros`` ... and ``*_like``.

Shapes may be given as ``zeros(2, 3)`` or ``zeros((2, 3))``. ``device`` is ``"cpu"``,
``"cuda"``, ``"cuda:N"`` or a ``Device``; ``dtype`` defaults as in PyTorch (Python floats ->
the default float dtype, ints -> int64, bools -> bool; numpy arrays keep their dtype).
"""
from __future__ import annotations

import numbers

import numpy as np

from . import backend, dtypes
from .backend import Device, is_array
from .tensor import Tensor


def _resolve_device(device):
    return backend.CPU if device is None else Device(device)


def _infer_float(data):
    """True if ``data`` (not an array) holds Python floats, so the default dtype applies."""
    if isinstance(data, (bool, np.generic)):      # np.float64 is a float subclass: keep its dtype
        return False
    if isinstance(data, float):
        return True
    if isinstance(data, (list, tuple)):
        return any(_infer_float(d) for d in data)
    return False


def _to_array(data, dtype=None, device=None, copy=True):
    """Make an array on ``device`` with ``dtype`` from Tensors, arrays, scalars or nested lists."""
    dtype = dtypes.as_dtype(dtype)
    if isinstance(data, Tensor):
        arr = data._data
        dev = Device(device) if device is not None else data.device
    elif is_array(data):
        arr = data
        dev = Device(device) if device is not None else backend.device_of(data)
    else:
        dev = _resolve_device(device)
        if isinstance(data, (list, tuple)) and any(isinstance(d, Tensor) for d in _flat(data)):
            data = _nested_tensors_to_numpy(data)
        try:
            arr = np.asarray(data)
        except ValueError as e:
            raise ValueError(f"tensor: could not build a tensor from the data ({e}); nested lists "
                             "must be rectangular") from None
        if arr.dtype == object:
            raise TypeError(f"tensor: could not infer the dtype of {type(data).__name__} data; "
                            "use numbers, bools, nested lists of them, or arrays")
        if dtype is None:
            if arr.dtype.kind == "f" and not isinstance(data, (np.ndarray, np.generic)):
                dtype = dtypes.get_default_dtype()
            elif arr.dtype.kind in "iu" and not isinstance(data, (np.ndarray, np.generic)):
                dtype = dtypes.int64
            elif arr.dtype.kind == "f" and _infer_float(data):
                dtype = dtypes.get_default_dtype()
        if arr.size == 0 and dtype is None and arr.dtype.kind == "f" and isinstance(data, (list, tuple)):
            dtype = dtypes.get_default_dtype()
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
        copy = False
    elif arr.dtype not in dtypes.SUPPORTED:
        native = arr.dtype.newbyteorder("=")
        if native in dtypes.SUPPORTED:               # non-native byte order: same type, native order
            arr = arr.astype(native)
        elif arr.dtype.kind == "f":
            arr = arr.astype(dtypes.float64 if arr.itemsize > 8 else dtypes.float32)
        elif arr.dtype.kind in "iu":
            arr = arr.astype(dtypes.int64)
        else:
            raise TypeError(f"tensor: unsupported dtype {arr.dtype}")
        copy = False
    moved = backend.move(arr, dev)
    if moved is not arr:
        return moved
    return arr.copy() if copy else arr


def _flat(seq):
    for s in seq:
        if isinstance(s, (list, tuple)):
            yield from _flat(s)
        else:
            yield s


def _nested_tensors_to_numpy(data):
    if isinstance(data, Tensor):
        return backend.to_numpy(data._data)
    return [_nested_tensors_to_numpy(d) for d in data]


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new leaf tensor holding a copy of ``data`` (numbers, nested lists, arrays, Tensors)."""
    t = Tensor._make(_to_array(data, dtype, device, copy=True), False, None, 0)
    if requires_grad:
        t.requires_grad = True
    return t


def as_tensor(data, dtype=None, device=None):
    """Like ``tensor`` but shares memory with ``data`` (an array or Tensor) when it can."""
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if (device is not None or dtype is not None) else data
    return Tensor._make(_to_array(data, dtype, device, copy=False), False, None, 0)


asarray = as_tensor


def from_numpy(array):
    """A CPU tensor sharing memory with numpy ``array`` (changes are visible both ways)."""
    if type(array) is not np.ndarray:
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    if array.dtype not in dtypes.SUPPORTED:
        raise TypeError(f"from_numpy: dtype {array.dtype} is not supported; supported: "
                        f"{[d.name for d in dtypes.SUPPORTED]}")
    return Tensor._make(array, False, None, 0)


def from_dlpack(ext):
    """A tensor sharing memory with any DLPack-capable array (numpy, cupy, torch, jax ...)."""
    if isinstance(ext, Tensor):
        return ext
    dev_type = ext.__dlpack_device__()[0] if hasattr(ext, "__dlpack_device__") else 1
    if dev_type == 1:          # kDLCPU
        return Tensor._make(np.from_dlpack(ext), False, None, 0)
    cp = backend.cupy_or_raise()
    return Tensor._make(cp.from_dlpack(ext), False, None, 0)


def _size(size, opname):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for s in size:
        if not isinstance(s, numbers.Integral) or isinstance(s, bool):
            raise TypeError(f"{opname}: size must be ints, got {type(s).__name__} {s!r} in {tuple(size)}")
        if s < 0:
            raise RuntimeError(f"{opname}: negative dimension {s} in size {tuple(size)}")
    return tuple(int(s) for s in size)


def _filled(opname, fill, size, dtype, device, requires_grad):
    size = _size(size, opname)
    dtype = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
    xp = _resolve_device(device).xp
    dev = _resolve_device(device)
    if dev.type == "cuda":
        with xp.cuda.Device(dev.index):
            arr = xp.full(size, fill, dtype) if fill is not None else xp.empty(size, dtype)
    else:
        arr = xp.full(size, fill, dtype) if fill is not None else xp.empty(size, dtype)
    t = Tensor._make(arr, False, None, 0)
    if requires_grad:
        t.requires_grad = True
    return t


def zeros(*size, dtype=None, device=None, requires_grad=False):
    """A tensor of zeros of shape ``size``."""
    return _filled("zeros", 0, size, dtype, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    """A tensor of ones of shape ``size``."""
    return _filled("ones", 1, size, dtype, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    """An uninitialized tensor of shape ``size``."""
    return _filled("empty", None, size, dtype, device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    """A tensor of shape ``size`` filled with ``fill_value`` (dtype inferred from it if None)."""
    if dtype is None:
        dtype = dtypes.result_type(fill_value)
    return _filled("full", fill_value, (tuple(size),) if isinstance(size, (tuple, list)) else (size,),
                   dtype, device, requires_grad)


def _like(fn, x, dtype, device, requires_grad, *extra):
    return fn(x.shape, *extra, dtype=dtype or x.dtype, device=device or x.device,
              requires_grad=requires_grad)


def zeros_like(input, dtype=None, device=None, requires_grad=False):  # noqa: A002
    return _like(zeros, input, dtype, device, requires_grad)


def ones_like(input, dtype=None, device=None, requires_grad=False):  # noqa: A002
    return _like(ones, input, dtype, device, requires_grad)


def empty_like(input, dtype=None, device=None, requires_grad=False):  # noqa: A002
    return _like(empty, input, dtype, device, requires_grad)


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False):  # noqa: A002
    return full(input.shape, fill_value, dtype=dtype or input.dtype, device=device or input.device,
                requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """Values ``start, start+step, ...`` below ``end`` (int64 for integer args, else default float)."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if dtype is None:
        dtype = dtypes.result_type(start, end, step)
    xp = _resolve_device(device).xp
    t = Tensor._make(xp.arange(start, end, step).astype(dtypes.as_dtype(dtype)), False, None, 0)
    if requires_grad:
        t.requires_grad = True
    return t


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive."""
    xp = _resolve_device(device).xp
    t = Tensor._make(xp.linspace(start, end, steps).astype(dtypes.as_dtype(dtype) or
                                                           dtypes.get_default_dtype()), False, None, 0)
    if requires_grad:
        t.requires_grad = True
    return t


def logspace(start, end, steps, base=10.0, dtype=None, device=None, requires_grad=False):
    xp = _resolve_device(device).xp
    t = Tensor._make(xp.logspace(start, end, steps, base=base).astype(
        dtypes.as_dtype(dtype) or dtypes.get_default_dtype()), False, None, 0)
    if requires_grad:
        t.requires_grad = True
    return t


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    """The ``n`` x ``m`` identity matrix."""
    xp = _resolve_device(device).xp
    t = Tensor._make(xp.eye(n, m, dtype=dtypes.as_dtype(dtype) or dtypes.get_default_dtype()),
                     False, None, 0)
    if requires_grad:
        t.requires_grad = True
    return t


def meshgrid(*tensors, indexing="ij"):
    """Coordinate grids from 1-d tensors (differentiable through expand)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    ts = list(tensors)
    swap = indexing == "xy" and len(ts) >= 2
    if swap:
        ts[0], ts[1] = ts[1], ts[0]
    shape = tuple(t.shape[0] for t in ts)
    out = []
    for i, t in enumerate(ts):
        view = [1] * len(ts)
        view[i] = t.shape[0]
        out.append(t.reshape(view).expand(shape))
    if swap:
        out = [o.transpose(0, 1) for o in out]
        out[0], out[1] = out[1], out[0]
    return tuple(out)
