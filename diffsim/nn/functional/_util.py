"""Argument helpers shared by the spatial functional ops (conv, pooling)."""
from __future__ import annotations

import numbers


def int_tuple(v, nd, name, opname):
    """An int or a sequence of 1 or ``nd`` ints -> a tuple of ``nd`` ints (error names the op)."""
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return (int(v),) * nd
    if isinstance(v, (tuple, list)) and all(isinstance(e, numbers.Integral) and not isinstance(e, bool)
                                            for e in v):
        if len(v) == 1:
            return (int(v[0]),) * nd
        if len(v) == nd:
            return tuple(int(e) for e in v)
    raise TypeError(f"{opname}: {name} must be an int or a tuple of {nd} ints, got {v!r}")
