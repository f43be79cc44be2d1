"""Hypothesis strategies for property-based tests of differentiable code.

Built on ``hypothesis.extra.numpy``; every strategy draws plain shapes, dtypes or diffsim
Tensors, so the same tools serve the op test suite and your own simulations::

    import diffsim as ds
    from hypothesis import given, settings, strategies as st
    from diffsim.testing import gradcheck, strategies as dst

    @settings(max_examples=25, deadline=None)
    @given(dst.tensors(shape=dst.shapes(max_dims=2, max_side=4), requires_grad=True,
                       elements=dst.floats(0.1, 3.0)))
    def test_log_gradient(x):
        assert gradcheck(ds.log, (x,))

    @given(st.data())
    def test_add_broadcasts(data):
        shapes = data.draw(dst.mutually_broadcastable_shapes(2, max_dims=3))
        a, b = (data.draw(dst.tensors(shape=s)) for s in shapes.input_shapes)
        assert (a + b).shape == shapes.result_shape

* ``shapes``, ``broadcastable_shapes``, ``mutually_broadcastable_shapes``: array shapes,
  with 0-d and size-0/size-1 dims allowed where asked.
* ``tensors(shape, dtype, elements, requires_grad, device, unique)``: Tensors whose values
  come from ``elements`` (default: finite floats in [-10, 10]; small ints; bools).
* ``dtypes``: the supported diffsim dtypes, by kind.
* ``floats(lo, hi, away_from=...)``: finite floats that keep clear of kinks (``abs`` at 0,
  ``floor`` at integers ...), so that finite differences are meaningful.
* ``spaced_floats(lo, hi, spacing)``: floats on a grid; with ``unique=True`` in ``tensors``
  no two values are closer than ``spacing`` (no ties for ``max``, ``sort``, ``median``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ..autodiff import dtypes as _dt
from ..autodiff.creation import tensor as _tensor

__all__ = ["shapes", "broadcastable_shapes", "mutually_broadcastable_shapes", "tensors", "dtypes",
           "floats", "spaced_floats"]

_FLOATS = (_dt.float16, _dt.float32, _dt.float64)
_INTS = (_dt.uint8, _dt.int8, _dt.int16, _dt.int32, _dt.int64)


def shapes(min_dims=0, max_dims=4, min_side=0, max_side=5):
    """Array shapes with ``min_dims..max_dims`` dims of sizes ``min_side..max_side``.

    The defaults include 0-d shapes ``()`` and empty dims (size 0); pass ``min_side=1`` to
    rule those out.

    >>> from diffsim.testing import strategies as dst
    >>> dst.shapes(max_dims=2, max_side=3).example()  # doctest: +SKIP
    (3, 0)
    """
    if min_dims < 0 or max_dims < min_dims:
        raise ValueError(f"shapes: need 0 <= min_dims <= max_dims, got min_dims={min_dims}, "
                         f"max_dims={max_dims}")
    if min_side < 0 or max_side < min_side:
        raise ValueError(f"shapes: need 0 <= min_side <= max_side, got min_side={min_side}, "
                         f"max_side={max_side}")
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def broadcastable_shapes(shape, min_dims=0, max_dims=None, min_side=1, max_side=None):
    """Shapes that broadcast with ``shape`` (numpy's and PyTorch's rules).

    >>> dst.broadcastable_shapes((3, 1), max_dims=3).example()  # doctest: +SKIP
    (2, 1, 4)
    """
    return hnp.broadcastable_shapes(tuple(shape), min_dims=min_dims, max_dims=max_dims,
                                    min_side=min_side, max_side=max_side)


def mutually_broadcastable_shapes(num_shapes, base_shape=(), min_dims=0, max_dims=None, min_side=1,
                                  max_side=None):
    """``num_shapes`` shapes that broadcast together, as ``(input_shapes, result_shape)``.

    >>> s = dst.mutually_broadcastable_shapes(2, max_dims=3).example()  # doctest: +SKIP
    >>> s.input_shapes, s.result_shape                                   # doctest: +SKIP
    (((2, 1), (3,)), (2, 3))
    """
    return hnp.mutually_broadcastable_shapes(num_shapes=num_shapes, base_shape=tuple(base_shape),
                                             min_dims=min_dims, max_dims=max_dims,
                                             min_side=min_side, max_side=max_side)


def dtypes(floating=True, integer=True, boolean=True, half=False):
    """Supported diffsim dtypes of the chosen kinds (float16 only with ``half=True``).

    >>> dst.dtypes(integer=False, boolean=False).example()  # doctest: +SKIP
    dtype('float32')
    """
    choice = []
    if boolean:
        choice.append(_dt.bool_)
    if integer:
        choice.extend(_INTS)
    if floating:
        choice.extend(_FLOATS if half else _FLOATS[1:])
    if not choice:
        raise ValueError("dtypes: no kind selected; set at least one of floating, integer, boolean")
    return st.sampled_from(choice)


def floats(min_value=-10.0, max_value=10.0, away_from=(), margin=1e-2, width=64):
    """Finite floats in ``[min_value, max_value]`` at least ``margin`` from each point of
    ``away_from`` (the kinks of the function under test).

    >>> dst.floats(-3, 3, away_from=[0]).example()  # for abs, sign ...  # doctest: +SKIP
    -1.5
    """
    pts = tuple(float(p) for p in away_from)
    base = st.floats(min_value, max_value, allow_nan=False, allow_infinity=False,
                     allow_subnormal=False, width=width)
    if not pts:
        return base
    return base.filter(lambda v: all(abs(v - p) >= margin for p in pts))


def spaced_floats(min_value, max_value, spacing, offset=0.0):
    """Floats ``offset + k * spacing`` inside ``[min_value, max_value]``.

    Drawn with ``tensors(..., unique=True)``, any two values differ by at least ``spacing``,
    so ``max``/``argmax`` have no ties. An ``offset`` of half a spacing keeps every value
    ``spacing / 2`` clear of the grid points themselves (integers for ``floor`` ...).

    >>> dst.spaced_floats(-1, 1, 0.5, offset=0.25).example()  # doctest: +SKIP
    0.75
    """
    if spacing <= 0:
        raise ValueError(f"spaced_floats: spacing must be positive, got {spacing}")
    lo = math.ceil((min_value - offset) / spacing - 1e-9)
    hi = math.floor((max_value - offset) / spacing + 1e-9)
    if lo > hi:
        raise ValueError(f"spaced_floats: no grid point offset + k*{spacing} lies in "
                         f"[{min_value}, {max_value}]")
    return st.integers(lo, hi).map(lambda k: offset + k * spacing)


def _default_elements(dtype):
    if dtype.kind == "f":
        return st.floats(-10, 10, allow_nan=False, allow_infinity=False, allow_subnormal=False,
                         width=8 * dtype.itemsize)
    if dtype.kind == "b":
        return st.booleans()
    info = np.iinfo(dtype)
    return st.integers(max(int(info.min), -10), min(int(info.max), 10))


def _round_to(v, ftype, tiny):
    """``v`` rounded to a narrower float type; values that would become subnormal flush to 0."""
    r = float(ftype(v))
    return 0.0 if 0 < abs(r) < tiny else r


def _as_strategy(x):
    return x if isinstance(x, st.SearchStrategy) else st.just(x)


def tensors(shape=None, dtype=_dt.float64, elements=None, requires_grad=False, device="cpu",
            unique=False):
    """diffsim Tensors of ``shape`` and ``dtype`` (each a value or a strategy).

    ``shape``: a tuple, an int, or a strategy of shapes (default ``shapes()``, which includes
    0-d and empty tensors). ``dtype``: a diffsim dtype or a strategy such as ``dtypes()``
    (default float64, what ``gradcheck`` wants). ``elements``: a strategy of Python numbers
    (default: finite floats in [-10, 10], ints in [-10, 10] clipped to the dtype's range, or
    bools). ``requires_grad``: make floating tensors leaves that require grad (an error for a
    fixed non-floating dtype; with a dtype strategy only the floating draws require grad).
    ``device``: where the tensor lives (``"cpu"``, ``"cuda"``). ``unique``: no repeated values.
    Values from ``elements`` are rounded to a float16/float32 ``dtype`` (those that would be
    subnormal there become 0), so one float64 strategy serves every floating dtype.

    >>> import diffsim as ds
    >>> x = dst.tensors(shape=(2, 3), elements=dst.floats(0.1, 2.0),
    ...                 requires_grad=True).example()                     # doctest: +SKIP
    >>> x.shape, x.dtype, x.requires_grad                                  # doctest: +SKIP
    ((2, 3), dtype('float64'), True)
    """
    if shape is None:
        shape = shapes()
    elif isinstance(shape, int):
        shape = (shape,)
    elif isinstance(shape, Sequence):
        shape = tuple(int(s) for s in shape)
    if not isinstance(dtype, st.SearchStrategy):
        dtype = _dt.as_dtype(dtype)
        if requires_grad and dtype.kind != "f":
            raise ValueError(f"tensors: requires_grad=True needs a floating dtype, got {dtype}")
    shape_st, dtype_st = _as_strategy(shape), _as_strategy(dtype)

    @st.composite
    def _draw(draw):
        d = _dt.as_dtype(draw(dtype_st))
        shp = draw(shape_st)
        if elements is None:
            elems = _default_elements(d)
        elif d.kind == "f" and d.itemsize < 8:
            # round to the dtype, so float64 element strategies serve float32/float16 too
            elems = elements.map(lambda v, _t=d.type, _tiny=float(np.finfo(d).tiny): _round_to(v, _t, _tiny))
        else:
            elems = elements
        arr = draw(hnp.arrays(d, shp, elements=elems, unique=unique))
        return _tensor(arr, dtype=d, device=device, requires_grad=bool(requires_grad and d.kind == "f"))

    return _draw()
