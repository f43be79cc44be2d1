"""``pair_scatter``: add equal and opposite per-pair vectors onto particles.

``F[a_e] += f_e`` and ``F[b_e] -= f_e`` for pairs ``e`` (springs, interacting particles) is
the scatter at the heart of the spring and pair-force ops. On CPU floating arrays it is one
``np.bincount`` over flattened (particle, component) ids; elsewhere (cupy, or Tensors under
``create_graph``) it is ``segment_sum``.
"""
from __future__ import annotations

import numpy as np

from ..autodiff.rawops import RAW_NS

_FLAT_IDS = {}


def _flat_ids(ab, D, cache):
    """``ab * D + component`` for every (pair end, component), ``[2E * D]``; cached per index
    array when ``cache`` (constant structures such as springs)."""
    if not cache:
        return (ab[:, None] * D + np.arange(D)).ravel()
    key = (id(ab), D)
    hit = _FLAT_IDS.get(key)
    if hit is None or hit[0] is not ab:
        if len(_FLAT_IDS) > 64:
            _FLAT_IDS.clear()
        hit = _FLAT_IDS[key] = (ab, (ab[:, None] * D + np.arange(D)).ravel())
    return hit[1]


def pair_scatter(ns, f, ab, P, cache=True):
    """``F [P, D]`` with ``F[a] += f`` and ``F[b] -= f``: ``f`` is ``[E, D]`` and ``ab`` the
    concatenated pair ends ``[a; b]`` (``[2E]`` integers). ``ns``: the backward namespace (raw
    arrays or Tensors); ``cache``: keep the flattened ids of ``ab`` (pass False for index
    arrays that change every call, such as neighbour lists)."""
    if ns is RAW_NS and type(f) is np.ndarray and f.dtype.kind == "f":
        D = f.shape[1]
        w = np.concatenate([f, -f]).ravel()
        out = np.bincount(_flat_ids(ab, D, cache), w, minlength=P * D)
        return out.reshape(P, D).astype(f.dtype, copy=False)
    return ns.segment_sum(ns.cat([f, -f]), ab, P)
