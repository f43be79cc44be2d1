"""Neighbour search: every pair of points closer than a cutoff, by a cell list (numpy, vectorized).

``neighbor_pairs(x, cutoff, box=None) -> (i, j, shift)``:

* the points are binned into cubic-ish cells of side >= ``cutoff`` and sorted by cell;
* every point is paired with every point of its own and the adjacent cells (3**D cells, fewer
  where a periodic axis has only 1 or 2 cells), enumerated with ``np.repeat`` / ``cumsum``
  tricks so there is no Python loop over points or cells;
* candidates with ``i < j`` and ``|x_j - x_i - shift| < cutoff`` are kept.

Memory and time are O(N * points per neighbourhood), not O(N^2). With a periodic ``box``
(lengths [D]; every axis periodic) distances use the minimum image convention, which needs
``cutoff <= min(box) / 2``; ``shift`` [E, D] is the lattice vector to subtract from
``x_j - x_i`` (integer multiples of the box lengths). Without a box ``shift`` is None.

The pair list is integer data: it is recomputed from detached positions and never
differentiated (a pair entering or leaving the cutoff changes nothing when the force is
continuous at the cutoff).
"""
from __future__ import annotations

import numpy as np

__all__ = ["neighbor_pairs", "all_pairs", "brute_force_pairs"]

_MAX_CELLS = 1 << 21        # cap on the cell grid (sparse, widely spread points)


def _check(x, cutoff, box, opname):
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"{opname}: x must be [N, D] with D >= 1, got shape {list(x.shape)}")
    if x.size and not np.isfinite(x).all():
        raise ValueError(f"{opname}: x contains NaN or inf")
    if cutoff is not None and not (np.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"{opname}: cutoff must be a finite number > 0, got {cutoff!r}")
    if box is not None:
        box = np.broadcast_to(np.asarray(box, dtype=np.float64), (x.shape[1],)).copy()
        if not (np.isfinite(box).all() and (box > 0).all()):
            raise ValueError(f"{opname}: box lengths must be finite and > 0, got {box.tolist()}")
        if cutoff is not None and 2 * cutoff > box.min():
            raise ValueError(f"{opname}: the minimum image convention needs cutoff <= min(box)/2, "
                             f"got cutoff={cutoff} for box {box.tolist()}")
    return x, box


def _minimum_image(d, box):
    """The lattice shift [E, D] that maps displacements ``d`` to their minimum image."""
    return box * np.round(d / box)


def all_pairs(n, x=None, box=None):
    """All ``i < j`` pairs of ``n`` points: ``(i, j, shift)`` (``shift`` from ``x`` and ``box``
    by minimum image, None without a box). O(n^2) pairs: for small ``n`` or no cutoff."""
    i, j = np.triu_indices(n, 1)
    shift = None
    if box is not None:
        box = np.broadcast_to(np.asarray(box, dtype=np.float64), (x.shape[1],))
        shift = _minimum_image(x[j] - x[i], box)
    return i.astype(np.intp), j.astype(np.intp), shift


def brute_force_pairs(x, cutoff, box=None):
    """The reference: all ``i < j`` with (minimum image) distance < ``cutoff``, by O(N^2)
    enumeration. Returns ``(i, j, shift)`` like ``neighbor_pairs``."""
    x, box = _check(x, cutoff, box, "brute_force_pairs")
    i, j, shift = all_pairs(x.shape[0], x, box)
    d = x[j] - x[i]
    if shift is not None:
        d = d - shift
    keep = (d * d).sum(1) < cutoff * cutoff
    return i[keep], j[keep], None if shift is None else shift[keep]


def neighbor_pairs(x, cutoff, box=None):
    """All pairs ``i < j`` of rows of ``x`` [N, D] (numpy) closer than ``cutoff`` (see the module
    docstring). Returns ``i`` [E], ``j`` [E] (intp, sorted by neither) and ``shift`` [E, D] or
    None; ``x[j] - x[i] - shift`` is the minimum-image displacement."""
    x, box = _check(x, cutoff, box, "neighbor_pairs")
    n, dim = x.shape
    if n < 2:
        e = np.zeros(0, np.intp)
        return e, e, (None if box is None else np.zeros((0, dim)))
    # ---- cell grid
    if box is None:
        lo = x.min(0)
        ext = x.max(0) - lo
        ncell = np.maximum(1, np.floor(ext / cutoff).astype(np.int64))
        while np.prod(ncell.astype(float)) > _MAX_CELLS:
            ncell = np.maximum(1, ncell // 2)
        size = np.where(ncell > 1, ext / ncell, 1.0)
        size = np.maximum(size, cutoff)         # a cell is never smaller than the cutoff
        c = np.minimum(((x - lo) / size).astype(np.int64), ncell - 1)
    else:
        ncell = np.maximum(1, np.floor(box / cutoff).astype(np.int64))
        while np.prod(ncell.astype(float)) > _MAX_CELLS:
            ncell = np.maximum(1, ncell // 2)
        p = np.mod(x, box)
        c = np.minimum((p / (box / ncell)).astype(np.int64), ncell - 1)
    strides = np.cumprod(np.concatenate([[1], ncell[::-1][:-1]]))[::-1]     # C order
    cell = c @ strides
    order = np.argsort(cell, kind="stable")
    counts = np.bincount(cell, minlength=int(np.prod(ncell)))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # ---- neighbour-cell offsets: {-1, 0, 1} per axis, fewer on a periodic axis with < 3 cells
    axes = []
    for k in range(dim):
        if box is not None and ncell[k] < 3:
            axes.append(np.arange(ncell[k]))
        else:
            axes.append(np.array([-1, 0, 1]))
    offsets = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, dim)     # [K, D]
    nb = c[:, None, :] + offsets[None, :, :]                                        # [N, K, D]
    if box is None:
        valid = ((nb >= 0) & (nb < ncell)).all(-1)
    else:
        nb = np.mod(nb, ncell)
        valid = np.ones(nb.shape[:2], bool)
    nbcell = np.where(valid, nb @ strides, 0)
    cnt = np.where(valid, counts[nbcell], 0).ravel()                                # [N*K]
    # ---- expand (point, neighbour cell) into (point, candidate) pairs
    total = int(cnt.sum())
    ia = np.repeat(np.repeat(np.arange(n), offsets.shape[0]), cnt)
    first = np.repeat(starts[nbcell].ravel(), cnt)
    within = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    jb = order[first + within]
    keep = ia < jb
    ia, jb = ia[keep], jb[keep]
    d = x[jb] - x[ia]
    shift = None
    if box is not None:
        shift = _minimum_image(d, box)
        d = d - shift
    close = np.einsum("ij,ij->i", d, d) < cutoff * cutoff
    return ia[close], jb[close], None if shift is None else shift[close]
