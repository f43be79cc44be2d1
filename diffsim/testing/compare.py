"""``assert_close``: compare Tensors, arrays and numbers with dtype-aware tolerances."""
from __future__ import annotations

import numpy as np

from ..autodiff import backend
from ..autodiff.tensor import Tensor

# PyTorch's defaults (torch.testing.assert_close)
_TOL = {np.dtype("float16"): (1e-3, 1e-5), np.dtype("float32"): (1.3e-6, 1e-5),
        np.dtype("float64"): (1e-7, 1e-7)}


def _as_array(x):
    if isinstance(x, Tensor):
        return backend.to_numpy(x._data)
    return np.asarray(x)


def assert_close(actual, expected, *, rtol=None, atol=None, equal_nan=True, check_dtype=True,
                 msg=""):
    """Assert ``actual`` and ``expected`` (Tensors, arrays or numbers) have the same shape,
    the same dtype (``check_dtype``) and close values: ``|a - e| <= atol + rtol * |e|``.

    Default tolerances follow ``torch.testing.assert_close`` for the less precise of the two
    dtypes (exact for integer and bool results). NaNs compare equal when ``equal_nan``.

    >>> import diffsim as ds, numpy as np
    >>> from diffsim.testing import assert_close
    >>> assert_close(ds.tensor([1.0, 2.0]).exp(), np.exp(np.float32([1.0, 2.0])))
    """
    a, e = _as_array(actual), _as_array(expected)
    prefix = f"{msg}: " if msg else ""
    if a.shape != e.shape:
        raise AssertionError(f"{prefix}shape mismatch: actual {list(a.shape)}, expected {list(e.shape)}")
    if check_dtype and a.dtype != e.dtype:
        raise AssertionError(f"{prefix}dtype mismatch: actual {a.dtype}, expected {e.dtype}")
    if rtol is None or atol is None:
        tols = [_TOL.get(d, (0.0, 0.0)) for d in (a.dtype, e.dtype)]
        r, t = max(tols)
        rtol = r if rtol is None else rtol
        atol = t if atol is None else atol
    if a.dtype.kind in "biu" and e.dtype.kind in "biu":
        bad = a != e
    else:
        a64, e64 = a.astype(np.float64), e.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(a64 - e64)
            bad = ~(diff <= atol + rtol * np.abs(e64))
        # infinities must match exactly (rtol * inf would accept anything)
        inf = np.isinf(a64) | np.isinf(e64)
        bad = np.where(inf, a64 != e64, bad)
        if equal_nan:
            bad &= ~(np.isnan(a64) & np.isnan(e64))
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        n = int(np.count_nonzero(bad))
        raise AssertionError(f"{prefix}{n} of {a.size} elements differ (rtol={rtol}, atol={atol}); "
                             f"first at index {idx}: actual {a[idx]!r}, expected {e[idx]!r}")
