"""dtypes and PyTorch's type-promotion rules.

diffsim dtypes are numpy dtype objects (``ds.float32 == np.dtype("float32")``).
Promotion follows PyTorch: operands are ranked dimensioned tensors > zero-dim
tensors > Python scalars, and a lower-ranked operand only changes the result when
it is of a higher category (bool < integer < floating). So ``float32_tensor * 2.0``
stays float32 and ``int32_tensor * 2.5`` becomes the default float dtype.
"""
from __future__ import annotations

import numpy as np

bool_ = np.dtype("bool")
uint8 = np.dtype("uint8")
int8 = np.dtype("int8")
int16 = np.dtype("int16")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
half, float, double, int, long = float16, float32, float64, int32, int64  # noqa: A001

SUPPORTED = (bool_, uint8, int8, int16, int32, int64, float16, float32, float64)
_BY_NAME = {d.name: d for d in SUPPORTED}
_BY_NAME.update({"bool": bool_, "half": float16, "float": float32, "double": float64,
                 "int": int32, "long": int64})

_default_float = float32


def get_default_dtype():
    """The dtype of floating tensors created from Python floats (float32 unless changed)."""
    return _default_float


def set_default_dtype(dtype):
    """Set the default floating dtype (float16, float32 or float64)."""
    global _default_float
    d = as_dtype(dtype)
    if d.kind != "f":
        raise TypeError(f"set_default_dtype: only floating dtypes can be the default, got {d}")
    _default_float = d


def as_dtype(dtype):
    """Normalize a dtype given as np.dtype, numpy type, Python type or name."""
    if dtype is None:
        return None
    if dtype is bool:
        return bool_
    if dtype is builtins_float:
        return _default_float
    if dtype is builtins_int:
        return int64
    if isinstance(dtype, str):
        d = _BY_NAME.get(dtype.replace("torch.", "").replace("diffsim.", ""))
        if d is None:
            raise TypeError(f"unknown dtype {dtype!r}; expected one of {sorted(_BY_NAME)}")
        return d
    try:
        d = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"expected a dtype, got {dtype!r} of type {type(dtype).__name__}") from None
    if d not in SUPPORTED:
        raise TypeError(f"dtype {d} is not supported; supported: {[s.name for s in SUPPORTED]}")
    return d


import builtins as _b  # noqa: E402
builtins_float, builtins_int = _b.float, _b.int


def is_floating(dtype) -> bool:
    return dtype.kind == "f"


def category(dtype) -> int:
    """0 bool, 1 integer, 2 floating."""
    k = dtype.kind
    return 2 if k == "f" else (0 if k == "b" else 1)


def _scalar_category(x) -> int:
    if isinstance(x, (bool, np.bool_)):
        return 0
    if isinstance(x, (builtins_int, np.integer)):
        return 1
    return 2


def _scalar_dtype(cat):
    return (bool_, int64, _default_float)[cat]


def promote_types(a, b):
    """PyTorch's promotion of two tensor dtypes: a higher category wins outright
    (float16 + int64 -> float16); within a category, the wider type."""
    ca, cb = category(a), category(b)
    if ca != cb:
        return a if ca > cb else b
    return np.promote_types(a, b)


def result_type(*operands):
    """PyTorch's result dtype for operands that are Tensors/arrays or Python scalars."""
    dims, zeros, scalars = [], [], []
    for x in operands:
        dt = getattr(x, "dtype", None)
        if dt is None or not hasattr(x, "ndim"):
            scalars.append(_scalar_category(x))
        elif x.ndim == 0:
            zeros.append(dt)
        else:
            dims.append(dt)
    result = None
    for group in (dims, zeros):
        if not group:
            continue
        d = group[0]
        for other in group[1:]:
            d = promote_types(d, other)
        if result is None or category(d) > category(result):
            result = d
    if scalars:
        cat = max(scalars)
        if result is None or cat > category(result):
            result = _scalar_dtype(cat)
    return result
