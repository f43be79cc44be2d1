"""Differentiable MLS-MPM (moving least squares material point method) in 2-D and 3-D.

::

    body = physics.MPM(x0, n_grid=64, E=400.0, nu=0.2, density=1.0)      # x0 [P, 2] in [0, 1]^2
    body.E.requires_grad_()
    final = physics.simulate(body, body.initial_state(), 200, 2e-4, integrator=physics.MPMIntegrator())
    loss = final.x[:, 0].mean(); loss.backward()                         # body.E.grad [P] or 0-d

The algorithm is Hu et al. 2018/2019 (MLS-MPM as in DiffTaichi's diffmpm / mpm88) on a
regular grid of ``n_grid`` nodes per axis with spacing ``dx`` (domain ``[0, n_grid dx]^D``),
quadratic B-spline weights over a ``3^D`` stencil. One step ``(x, v, C, F) -> (x', v', C', F')``:

1. ``F' = (I + dt C) F``; fluid particles keep only the volume change, ``F' = J^(1/D) I``.
2. Kirchhoff stress ``tau = mu (F' F'^T - I) + lambda log(J) I`` (Neo-Hookean; ``mu = 0`` for
   fluid, i.e. a pressure from ``J`` only) plus actuation ``a s (F' d)(F' d)^T`` (diffmpm's
   muscle stress along the direction ``d``, ``a`` the control of the particle's group, ``s``
   the strength).
3. **P2G** (custom op ``mpm_p2g``): ``m_i = sum_p w_ip m_p``,
   ``(mv)_i = sum_p w_ip (m_p v_p + A_p (x_i - x_p))`` with the affine momentum
   ``A_p = m_p C_p - dt V_p (4 / dx^2) tau_p``.
4. grid update: ``v_i = (mv)_i / m_i + dt g``, then boundary conditions on the ``bound``
   outermost node layers of every wall: ``"sticky"`` (a node moving into a wall stops),
   ``"slip"`` (its normal velocity into the wall is removed) or ``"friction"`` (normal removed,
   tangential reduced by Coulomb friction ``friction * |v_n|``).
5. **G2P** (custom op ``mpm_g2p``): ``v'_p = sum_i w_ip v_i``,
   ``C'_p = (4 / dx^2) sum_i w_ip v_i (x_i - x_p)^T``; then ``x' = x + dt v'``.

P2G and G2P are single ops with hand-written vectorized backward (gathers with
``index_select`` and scatter-adds with ``segment_sum`` over the flattened grid index; no
Python loop over particles), written with ``ns`` functions so the backward is fast on raw
arrays and differentiable again under ``create_graph``. The rest is ordinary diffsim ops, so
one step is differentiable w.r.t. the state ``x, v, C, F``, the material parameters ``E``,
``nu``, ``density`` (per particle or shared), gravity and the actuation.

**Design: why ``MPM`` is a ``System`` with its own integrator.** An MPM step is not the
second-order ODE ``dv/dt = a(x, v)`` that the generic integrators (``SemiImplicitEuler`` ...)
combine: the transfers, the grid update and the deformation-gradient update *are* the
time discretization. So ``MPM.step(state, dt, actuation)`` holds the whole step, and
``MPMIntegrator`` is an ``Integrator`` whose ``step`` calls it. ``MPM`` subclasses
``System`` only so that ``physics.simulate`` (controls, ``record``, checkpointing, gradient
hooks) accepts it: ``simulate(mpm, state, steps, dt, integrator=physics.MPMIntegrator())``.
Its ``acceleration`` raises a clear error pointing at ``MPMIntegrator`` if another
integrator is used.

**Checks (choices).** Each step raises ``ValueError`` if a particle's stencil leaves the grid
(keep particles ``bound`` cells away from the walls), if ``dt`` exceeds the elastic-wave
limit ``dt_max = cfl * dx / c`` with ``c = sqrt((lambda + 2 mu) / rho)`` (explicit MPM is
unstable beyond it; ``cfl=1`` by default), or if a deformation gradient inverts
(``det F <= 0``). A particle that moves more than one cell in a step (``|v| dt > dx``) gives a
``RuntimeWarning`` (the result is still defined, but inaccurate). ``check=False`` skips them.
"""
from __future__ import annotations

import itertools
import math
import numbers
import warnings

import numpy as np

from ..autodiff import Tensor, as_tensor, cat, eye, where, zeros
from ..autodiff.backend import get_xp
from ..autodiff.function import defop
from ..autodiff.rawops import RAW_NS
from .integrators import Integrator
from .state import State
from .system import System, as_param, as_positions, check_positive

__all__ = ["MPM", "MPMIntegrator", "p2g", "g2p", "neo_hookean_tau"]

ELASTIC, FLUID = 0, 1


# ====================================================================== stencil

def _check_inside(xd, inv_dx, n_grid, opname):
    """Raise ValueError if a particle's ``3^D`` stencil (raw positions ``xd [P, D]``) leaves the
    grid, i.e. unless ``0.5 dx <= x < (n_grid - 1.5) dx`` on every axis."""
    if not xd.size:
        return
    s = xd * inv_dx - 0.5
    hi = np.asarray(n_grid, dtype=np.float64) - 2.0
    xp = get_xp(xd)
    # whole-array reductions (a NaN fails the min); per-axis min/max of [P, D] is much slower
    lo_ok = bool(s.min() >= 0)
    hi_ok = lo_ok and not bool((s >= xp.asarray(hi, dtype=s.dtype)).any())
    if lo_ok and hi_ok:
        return
    bad = ((s < 0) | (s >= xp.asarray(hi)) | ~xp.isfinite(s)).any(1)
    p = int(np.flatnonzero(np.asarray(bad.tolist()))[0])
    dx = 1.0 / inv_dx
    raise ValueError(
        f"{opname}: particle {p} at {np.asarray(xd[p].tolist()).tolist()} is outside the grid: its 3^{xd.shape[1]} "
        f"stencil fits grid {list(n_grid)} (dx={dx:g}) only for positions in [0.5 dx, (n_grid - 1.5) dx) = "
        f"[{0.5 * dx:g}, {(n_grid[0] - 1.5) * dx:g}) per axis (x {list(xd.shape)}); keep particles away from "
        "the walls")


def _stencil_index(xd, inv_dx, n_grid, opname):
    """From raw positions ``xd [P, D]``: ``base [P, D]`` (float, lower stencil node per axis) and
    the flat grid index of every stencil node ``[P, 3^D]``; raises if a stencil leaves the grid."""
    xp = get_xp(xd)
    D = xd.shape[1]
    base = xp.floor(xd * inv_dx - 0.5)
    if base.size:
        lim = xp.asarray(np.asarray(n_grid, dtype=np.float64) - 3, dtype=base.dtype)
        if not (bool(base.min() >= 0) and not bool((base > lim).any())):
            _check_inside(xd, inv_dx, n_grid, opname)
    strides = _strides(n_grid)
    offs = _offsets(D)
    bi = base.astype(np.int64)
    cell = bi[:, 0] * int(strides[0])
    for d in range(1, D):
        cell = cell + bi[:, d] * int(strides[d])
    flat = cell[:, None] + xp.asarray(offs @ strides)[None, :]
    return base, flat


def _strides(n_grid):
    s = np.ones(len(n_grid), np.int64)
    for d in range(len(n_grid) - 2, -1, -1):
        s[d] = s[d + 1] * n_grid[d + 1]
    return s


_OFFS = {}


def _offsets(D):
    """The ``3^D`` stencil offsets ``[S, D]`` in row-major order (last axis fastest)."""
    if D not in _OFFS:
        _OFFS[D] = np.array(list(itertools.product(range(3), repeat=D)), np.int64)
    return _OFFS[D]


def _outer(ns, facs, P):
    """Row-wise outer product of ``D`` factors ``[P, 3]`` -> ``[P, 3^D]`` (row-major)."""
    w = facs[0]
    for f in facs[1:]:
        w = ns.reshape(ns.unsqueeze(w, -1) * ns.unsqueeze(f, 1), (P, -1))
    return w


def _weights(ns, x, base, inv_dx, grad):
    """Quadratic B-spline weights of each particle's stencil.

    Returns ``w [P, S]``, ``dpos [P, S, D]`` (``x_i - x_p`` in world units) and, with ``grad``,
    ``gw [P, S, D]`` = ``dw/dx_p`` (world units). ``x`` is a raw array or (under
    ``create_graph``) a Tensor; ``base`` is a raw array (piecewise constant in ``x``)."""
    P, D = x.shape
    fx = x * inv_dx - base                                       # in [0.5, 1.5)
    cols = [fx[:, d] for d in range(D)]
    W = [ns.stack([0.5 * (1.5 - f) ** 2, 0.75 - (f - 1.0) ** 2, 0.5 * (f - 0.5) ** 2], 1) for f in cols]
    w = _outer(ns, W, P)
    offs = get_xp(base).asarray(_offsets(D), dtype=base.dtype)
    dpos = (offs[None] - ns.unsqueeze(fx, 1)) * (1.0 / inv_dx)
    if not grad:
        return w, dpos, None
    dW = [ns.stack([f - 1.5, (1.0 - f) * 2.0, f - 0.5], 1) * inv_dx for f in cols]
    gw = ns.stack([_outer(ns, [dW[e] if e == d else W[e] for e in range(D)], P) for d in range(D)], -1)
    return w, dpos, gw


def _raw(t):
    return t.detach()._data if isinstance(t, Tensor) else t


def _mv(ns, A, dpos):
    """``A_p dpos_ps`` for ``A [P, D, D]``, ``dpos [P, S, D]`` -> ``[P, S, D]`` (a short loop over
    D of broadcast products: much faster than einsum for 2x2 / 3x3 blocks)."""
    if ns is RAW_NS and type(A) is np.ndarray:
        return dpos @ A.transpose(0, 2, 1)                               # batched gufunc, no temporaries
    D = A.shape[-1]
    out = ns.unsqueeze(A[:, :, 0], 1) * dpos[:, :, 0:1]
    for b in range(1, D):
        out = out + ns.unsqueeze(A[:, :, b], 1) * dpos[:, :, b:b + 1]
    return out


_SUMMERS = {}


def _ssum(ns, t):
    """``sum_s t[:, s]`` for ``t [P, S, D]`` -> ``[P, D]``, or ``[P, S]`` -> ``[P]``. On raw CPU
    arrays a small matrix product (``t.reshape(P, S*D) @ tile(I_D)``), much faster than numpy's
    reduction over a middle axis; under ``create_graph`` an ordinary sum."""
    if ns is not RAW_NS or type(t) is not np.ndarray:
        return ns.sum(t, 1)
    P, S = t.shape[:2]
    D = t.shape[2] if t.ndim == 3 else 1
    key = (S, D, t.dtype.str)
    M = _SUMMERS.get(key)
    if M is None:
        M = _SUMMERS[key] = np.tile(np.eye(D, dtype=t.dtype), (S, 1))
    out = t.reshape(P, S * D) @ M
    return out if t.ndim == 3 else out[:, 0]


def _dot(ns, a, b):
    """``sum_d a[..., d] b[..., d]`` over a short last axis (an unrolled loop)."""
    out = a[..., 0] * b[..., 0]
    for d in range(1, a.shape[-1]):
        out = out + a[..., d] * b[..., d]
    return out


def _outer_sum(ns, a, b):
    """``sum_s a_ps b_ps^T`` for ``a, b [P, S, D]`` -> ``[P, D, D]``."""
    D = b.shape[-1]
    return ns.stack([_ssum(ns, a * b[:, :, j:j + 1]) for j in range(D)], -1)


def _wsum(ns, q, t):
    """``sum_s q_ps t_ps`` for ``q [P, S]``, ``t [P, S, D]`` -> ``[P, D]``."""
    return _ssum(ns, ns.unsqueeze(q, -1) * t)


# ====================================================================== fast CPU path

# On numpy arrays (the forward, and a plain backward) the transfers use a "moment" form that
# never builds ``dpos [P, S, D]``: with ``dpos_ps = dx (o_s - f_p)`` (``o_s`` the integer stencil
# offset, ``f_p`` the particle's position in its base cell),
#   ``sum_s w_ps t_ps dpos_ps^T = dx (T_p O - (sum_s w_ps t_ps) f_p^T)``,  ``T_p O`` one matrix
# product of the ``[P*D, S]`` block with ``[1 | O] [S, 1+D]``; and ``A_p dpos_ps`` is the matrix
# product ``A O^T`` plus a per-particle term. Data are laid out ``[P, D(+1), S]`` and the
# scatter is one ``np.bincount`` over ``(component, node)`` ids; the gathers are one ``take``.
# The stencil (ids, weights, weight gradients) is shared by P2G and G2P within a step through a
# one-entry cache keyed on the identity of the raw position array (``_FastStencil``); the
# public ``p2g`` / ``g2p`` and ``MPM.step`` clear it first, and a backward is only run on saved
# arrays that the engine's version check guards against in-place changes.

class _FastStencil:
    __slots__ = ("x", "key", "fx", "W", "w", "ids", "idsD", "gw", "O", "Q")


_FAST = [None]


def _fast_ok(*arrays):
    return all(type(a) is np.ndarray for a in arrays)


def _clear_fast():
    _FAST[0] = None


def _fast_stencil(x, inv_dx, n_grid, grad, opname):
    """The stencil of raw numpy positions ``x [P, D]`` (cached for the same array object)."""
    key = (inv_dx, n_grid)
    st = _FAST[0]
    if st is not None and st.x is x and st.key == key:
        if grad and st.gw is None:
            st.gw = _fast_gw(st)
        return st
    P, D = x.shape
    base, flat = _stencil_index(x, inv_dx, n_grid, opname)
    st = _FastStencil()
    st.x, st.key = x, key
    fx = x * inv_dx - base                                               # in [0.5, 1.5)
    st.fx = fx
    W = np.empty((P, D, 3), x.dtype)
    W[:, :, 0] = 0.5 * (1.5 - fx) ** 2
    W[:, :, 1] = 0.75 - (fx - 1.0) ** 2
    W[:, :, 2] = 0.5 * (fx - 0.5) ** 2
    st.W = W
    st.w = _fast_outer([W[:, d] for d in range(D)], P)
    G = int(np.prod(n_grid))
    ids = flat[:, None, :] + (np.arange(D + 1, dtype=flat.dtype) * G)[None, :, None]   # [P, D+1, S]
    st.ids = ids.astype(np.intp, copy=False)
    st.idsD = np.ascontiguousarray(st.ids[:, :D])
    offs = _offsets(D).astype(x.dtype)
    st.O = np.ascontiguousarray(offs.T)                                  # [D, S]
    st.Q = np.concatenate([np.ones((offs.shape[0], 1), x.dtype), offs], 1)   # [S, 1+D]
    st.gw = None
    st.gw = _fast_gw(st) if grad else None
    _FAST[0] = st
    return st


def _fast_outer(facs, P):
    w = facs[0]
    for f in facs[1:]:
        w = np.einsum("pi,pj->pij", w, f).reshape(P, -1)
    return w


def _fast_gw(st):
    """``dw/dx_p`` as ``[P, D, S]``."""
    fx, W = st.fx, st.W
    P, D = fx.shape
    inv_dx = st.key[0]
    dW = np.empty_like(W)
    dW[:, :, 0] = (fx - 1.5) * inv_dx
    dW[:, :, 1] = (1.0 - fx) * (2.0 * inv_dx)
    dW[:, :, 2] = (fx - 0.5) * inv_dx
    gw = np.empty((P, D, W.shape[2] ** D), fx.dtype)
    for d in range(D):
        gw[:, d] = _fast_outer([dW[:, e] if e == d else W[:, e] for e in range(D)], P)
    return gw


def _fast_moments(t, st):
    """``sum_s t_pds [1, o_s]`` for ``t [P, D, S]`` -> ``[P, D, 1+D]``."""
    P, D, S = t.shape
    return (t.reshape(P * D, S) @ st.Q).reshape(P, D, D + 1)


def _fast_mom(mv, A, st, h):
    """``mv_p + A_p dpos_ps`` as ``[P, D, S]``."""
    P, D = mv.shape
    c = mv - h * np.einsum("pab,pb->pa", A, st.fx)
    mom = (A.reshape(P * D, D) @ (st.O * h)).reshape(P, D, -1)
    mom += c[:, :, None]
    return mom


def _fast_scatter(data, ids, n):
    out = np.bincount(ids.reshape(-1), data.reshape(-1), minlength=n)
    if out.shape[0] != n:
        raise IndexError(f"mpm scatter: index {out.shape[0] - 1} is out of bounds for {n} entries")
    return out.astype(data.dtype, copy=False)


def _fast_p2g_fwd(x, m, mv, A, inv_dx, n_grid, n_nodes):
    P, D = x.shape
    st = _fast_stencil(x, inv_dx, n_grid, False, "mpm_p2g")
    h = 1.0 / inv_dx
    data = np.empty((P, D + 1, st.w.shape[1]), np.result_type(x, m, mv, A))
    data[:, :D] = _fast_mom(mv, A, st, h)
    data[:, :D] *= st.w[:, None, :]
    np.multiply(st.w, m[:, None], out=data[:, D])
    out = _fast_scatter(data, st.ids, (D + 1) * n_nodes).reshape(D + 1, n_nodes)
    return np.ascontiguousarray(out[:D].T), out[D].copy()


def _fast_p2g_bwd(node, g, x, m, mv, A):
    inv_dx = node.attrs["inv_dx"]
    h = 1.0 / inv_dx
    g_mv, g_m = g
    P, D = x.shape
    need = node.needs_input_grad
    st = _fast_stencil(x, inv_dx, node.attrs["n_grid"], need[0], "mpm_p2g backward")
    gcat = np.concatenate([np.asarray(g_mv).T, np.asarray(g_m)[None]], 0).reshape(-1)
    gg = np.take(gcat, st.ids)                                            # [P, D+1, S]
    gmv, gm = gg[:, :D], gg[:, D]
    w = st.w
    gx = g_mass = g_mom = gA = None
    if need[1]:
        g_mass = np.einsum("ps,ps->p", w, gm)
    if need[0] or need[2] or need[3]:
        r = _fast_moments(gmv * w[:, None, :], st)                        # [P, D, 1+D]
        g_mom = r[:, :, 0]
        if need[3]:
            gA = h * (r[:, :, 1:] - g_mom[:, :, None] * st.fx[:, None, :])
    if need[0]:
        mom = _fast_mom(mv, A, st, h)
        q = np.einsum("pds,pds->ps", gmv, mom) + gm * m[:, None]           # dL/dw  [P, S]
        gx = np.einsum("pds,ps->pd", st.gw, q) - np.einsum("pab,pa->pb", A, g_mom)
    return gx, g_mass, (np.ascontiguousarray(g_mom) if need[2] else None), gA


def _fast_g2p_fwd(x, gv, inv_dx, n_grid):
    P, D = x.shape
    st = _fast_stencil(x, inv_dx, n_grid, False, "mpm_g2p")
    k = 4.0 * inv_dx * inv_dx
    vs = np.take(np.ascontiguousarray(gv.T).reshape(-1), st.idsD)          # [P, D, S]
    vs *= st.w[:, None, :]
    r = _fast_moments(vs, st)
    v = np.ascontiguousarray(r[:, :, 0])
    C = (k / inv_dx) * (r[:, :, 1:] - v[:, :, None] * st.fx[:, None, :])
    return v, C


def _fast_g2p_bwd(node, g, x, gv):
    inv_dx = node.attrs["inv_dx"]
    kh = 4.0 * inv_dx
    g_v, g_C = g
    P, D = x.shape
    G = gv.shape[0]
    need = node.needs_input_grad
    st = _fast_stencil(x, inv_dx, node.attrs["n_grid"], need[0], "mpm_g2p backward")
    # dL/d v_i per stencil entry: u = g_v + k g_C dpos  [P, D, S]
    u = (g_C.reshape(P * D, D) @ (st.O * kh)).reshape(P, D, -1)
    u += (g_v - kh * np.einsum("pab,pb->pa", g_C, st.fx))[:, :, None]
    gx = ggv = None
    if need[1]:
        ggv = np.ascontiguousarray(_fast_scatter(u * st.w[:, None, :], st.idsD, D * G).reshape(D, G).T)
    if need[0]:
        vs = np.take(np.ascontiguousarray(gv.T).reshape(-1), st.idsD)      # [P, D, S]
        q = np.einsum("pds,pds->ps", vs, u)
        vp = np.einsum("pds,ps->pd", vs, st.w)
        gx = np.einsum("pds,ps->pd", st.gw, q) - (kh * inv_dx) * np.einsum("pab,pa->pb", g_C, vp)
    return gx, ggv


# ====================================================================== P2G

def _p2g_fwd(x, m, mv, A, *, inv_dx, n_grid, n_nodes):
    if _fast_ok(x, m, mv, A):
        return _fast_p2g_fwd(x, m, mv, A, inv_dx, n_grid, n_nodes)
    xp = get_xp(x)
    P, D = x.shape
    base, flat = _stencil_index(x, inv_dx, n_grid, "mpm_p2g")
    w, dpos, _ = _weights(RAW_NS, x, base, inv_dx, False)
    mom = mv[:, None, :] + _mv(RAW_NS, A, dpos)                          # [P, S, D]
    data = xp.concatenate([mom * w[..., None], (w * m[:, None])[..., None]], -1)
    out = RAW_NS.segment_sum(data.reshape(-1, D + 1), flat.reshape(-1), n_nodes)
    return xp.ascontiguousarray(out[:, :D]), xp.ascontiguousarray(out[:, D])


_p2g_op = defop("mpm_p2g", _p2g_fwd, save=(0, 1, 2, 3), n_out=2)


@_p2g_op.defvjp
def _p2g_bwd(ns, node, g, x, m, mv, A):
    if ns is RAW_NS and _fast_ok(x, m, mv, A, *g):
        return _fast_p2g_bwd(node, g, x, m, mv, A)
    at = node.attrs
    inv_dx = at["inv_dx"]
    g_mv, g_m = g
    P, D = x.shape
    need = node.needs_input_grad
    base, flat = _stencil_index(_raw(x), inv_dx, at["n_grid"], "mpm_p2g backward")
    S = flat.shape[1]
    w, dpos, gw = _weights(ns, x, base, inv_dx, need[0])
    ids = flat.reshape(-1)
    gmv = ns.reshape(ns.index_select(g_mv, 0, ids), (P, S, D))            # dL/d(mv)_i per stencil node
    gm = ns.reshape(ns.index_select(g_m, 0, ids), (P, S))
    wg = gmv * ns.unsqueeze(w, -1)                                        # [P, S, D]
    gx = g_mass = g_mom = gA = None
    if need[1]:
        g_mass = _ssum(ns, w * gm)
    if need[2] or need[0]:
        g_mom = _ssum(ns, wg)
    if need[3]:
        gA = _outer_sum(ns, wg, dpos)
    if need[0]:
        mom = ns.unsqueeze(mv, 1) + _mv(ns, A, dpos)
        q = _dot(ns, gmv, mom) + gm * ns.unsqueeze(m, 1)                # dL/dw  [P, S]
        gx = _wsum(ns, q, gw) - ns.sum(ns.unsqueeze(g_mom, -1) * A, 1)   # through w, and dpos = x_i - x
    return gx, g_mass, (g_mom if need[2] else None), gA


def p2g(x, mass, momentum, affine, n_grid, dx):
    """Particle-to-grid transfer (MLS-MPM / APIC), one op with a hand-written backward.

    Args:
        x: particle positions ``[P, D]`` (D = 2 or 3) inside the grid.
        mass: ``[P]`` particle masses.
        momentum: ``[P, D]`` particle momenta ``m_p v_p``.
        affine: ``[P, D, D]`` affine momentum ``A_p`` (``m_p C_p`` minus the stress term).
        n_grid: nodes per axis, an int or a tuple of D ints; dx: node spacing.

    Returns:
        ``(grid_momentum [G, D], grid_mass [G])`` with ``G = prod(n_grid)`` nodes in row-major
        order: ``m_i = sum_p w_ip m_p``, ``(mv)_i = sum_p w_ip (momentum_p + A_p (x_i - x_p))``.
        Differentiable w.r.t. all four inputs (also twice).
    """
    D = x.shape[-1] if x.ndim == 2 else None
    ng = _grid_tuple(n_grid, D, "p2g")
    _check_shapes("p2g", x, mass=(mass, (x.shape[0],)), momentum=(momentum, tuple(x.shape)),
                  affine=(affine, (x.shape[0], x.shape[1], x.shape[1])))
    _check_inside(_raw(x), 1.0 / float(dx), ng, "p2g")
    _clear_fast()
    return _p2g_op(x, mass, momentum, affine, inv_dx=1.0 / float(dx), n_grid=ng, n_nodes=int(np.prod(ng)))


# ====================================================================== G2P

def _g2p_fwd(x, gv, *, inv_dx, n_grid):
    if _fast_ok(x, gv):
        return _fast_g2p_fwd(x, gv, inv_dx, n_grid)
    xp = get_xp(x)
    P, D = x.shape
    base, flat = _stencil_index(x, inv_dx, n_grid, "mpm_g2p")
    w, dpos, _ = _weights(RAW_NS, x, base, inv_dx, False)
    vs = xp.take(gv, flat, axis=0)                                        # [P, S, D]
    wv = vs * w[..., None]
    v = _ssum(RAW_NS, wv)
    C = _outer_sum(RAW_NS, wv, dpos) * (4.0 * inv_dx * inv_dx)
    return v, C


_g2p_op = defop("mpm_g2p", _g2p_fwd, save=(0, 1), n_out=2)


@_g2p_op.defvjp
def _g2p_bwd(ns, node, g, x, gv):
    if ns is RAW_NS and _fast_ok(x, gv, *g):
        return _fast_g2p_bwd(node, g, x, gv)
    at = node.attrs
    inv_dx = at["inv_dx"]
    k = 4.0 * inv_dx * inv_dx
    g_v, g_C = g
    P, D = x.shape
    G = gv.shape[0]
    need = node.needs_input_grad
    base, flat = _stencil_index(_raw(x), inv_dx, at["n_grid"], "mpm_g2p backward")
    S = flat.shape[1]
    w, dpos, gw = _weights(ns, x, base, inv_dx, need[0])
    ids = flat.reshape(-1)
    # dL/d v_i (per stencil entry) = w (g_v + k g_C dpos)
    u = ns.unsqueeze(g_v, 1) + _mv(ns, g_C, dpos) * k                      # [P, S, D]
    gx = ggv = None
    if need[1]:
        ggv = ns.segment_sum(ns.reshape(u * ns.unsqueeze(w, -1), (P * S, D)), ids, G)
    if need[0]:
        vs = ns.reshape(ns.index_select(gv, 0, ids), (P, S, D))
        q = _dot(ns, vs, u)                                               # dL/dw  [P, S]
        vp = _wsum(ns, w, vs)                                             # the forward's v  [P, D]
        gx = _wsum(ns, q, gw) - ns.sum(ns.unsqueeze(vp, -1) * g_C, 1) * k
    return gx, ggv


def g2p(x, grid_velocity, n_grid, dx):
    """Grid-to-particle transfer (MLS-MPM / APIC), one op with a hand-written backward.

    Args:
        x: particle positions ``[P, D]`` inside the grid.
        grid_velocity: ``[G, D]`` node velocities, ``G = prod(n_grid)`` in row-major order.
        n_grid: nodes per axis (int or tuple of D ints); dx: node spacing.

    Returns:
        ``(v [P, D], C [P, D, D])``: ``v_p = sum_i w_ip v_i`` and the affine velocity
        ``C_p = (4 / dx^2) sum_i w_ip v_i (x_i - x_p)^T``. Differentiable w.r.t. ``x`` and
        ``grid_velocity`` (also twice).
    """
    D = x.shape[-1] if x.ndim == 2 else None
    ng = _grid_tuple(n_grid, D, "g2p")
    _check_shapes("g2p", x, grid_velocity=(grid_velocity, (int(np.prod(ng)), x.shape[1])))
    _check_inside(_raw(x), 1.0 / float(dx), ng, "g2p")
    _clear_fast()
    return _g2p_op(x, grid_velocity, inv_dx=1.0 / float(dx), n_grid=ng)


# ====================================================================== checks

def _grid_tuple(n_grid, D, opname):
    if D not in (2, 3):
        raise ValueError(f"{opname}: particle positions must be [P, 2] or [P, 3]")
    if isinstance(n_grid, numbers.Integral):
        n_grid = (int(n_grid),) * D
    n_grid = tuple(int(n) for n in n_grid)
    if len(n_grid) != D or min(n_grid) < 3:
        raise ValueError(f"{opname}: n_grid must be an int >= 3 or {D} of them for {D}-D particles, got {n_grid}")
    return n_grid


def _check_shapes(opname, x, **named):
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] not in (2, 3):
        raise ValueError(f"{opname}: x must be a Tensor [P, 2] or [P, 3], got "
                         f"{list(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    for name, (t, shape) in named.items():
        if not isinstance(t, Tensor) or tuple(t.shape) != tuple(shape):
            got = list(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{opname}: {name} must be a Tensor of shape {list(shape)} to match x "
                             f"{list(x.shape)}, got {got}")


def _det(F):
    """Determinants of ``[P, D, D]`` (D = 2, 3) by the explicit formula."""
    if F.shape[-1] == 2:
        return F[:, 0, 0] * F[:, 1, 1] - F[:, 0, 1] * F[:, 1, 0]
    a, b, c = F[:, 0], F[:, 1], F[:, 2]
    return (a[:, 0] * (b[:, 1] * c[:, 2] - b[:, 2] * c[:, 1]) - a[:, 1] * (b[:, 0] * c[:, 2] - b[:, 2] * c[:, 0])
            + a[:, 2] * (b[:, 0] * c[:, 1] - b[:, 1] * c[:, 0]))


# ====================================================================== Neo-Hookean stress

def _components(F):
    D = F.shape[-1]
    return [[F[:, i, j] for j in range(D)] for i in range(D)]


def _cofactor(f):
    """Cofactors ``dJ/dF_ij`` (lists of ``[P]`` arrays / Tensors) of a 2x2 or 3x3 matrix given
    by components ``f[i][j]``; ``J = sum_j f[0][j] cof[0][j]``."""
    if len(f) == 2:
        return [[f[1][1], -f[1][0]], [-f[0][1], f[0][0]]]
    return [[f[(i + 1) % 3][(j + 1) % 3] * f[(i + 2) % 3][(j + 2) % 3]
             - f[(i + 1) % 3][(j + 2) % 3] * f[(i + 2) % 3][(j + 1) % 3] for j in range(3)] for i in range(3)]


def _nh_fwd(F, mu, la):
    xp = get_xp(F)
    P, D = F.shape[0], F.shape[-1]
    f = _components(F)
    cof = _cofactor(f)
    J = f[0][0] * cof[0][0]
    for j in range(1, D):
        J = J + f[0][j] * cof[0][j]
    lt = la * xp.log(J)
    out = xp.empty((P, D, D), np.result_type(F, mu, la))
    for i in range(D):
        for j in range(i, D):
            s = f[i][0] * f[j][0]
            for k in range(1, D):
                s = s + f[i][k] * f[j][k]
            if i == j:
                out[:, i, i] = mu * (s - 1.0) + lt
            else:
                out[:, i, j] = out[:, j, i] = mu * s
    return out


_nh_op = defop("mpm_neo_hookean_tau", _nh_fwd, save=(0, 1, 2), broadcast=True)


@_nh_op.defvjp
def _nh_bwd(ns, node, g, F, mu, la):
    D = F.shape[-1]
    need = node.needs_input_grad
    f = _components(F)
    G = _components(g)
    cof = _cofactor(f)
    J = f[0][0] * cof[0][0]
    for j in range(1, D):
        J = J + f[0][j] * cof[0][j]
    tr = G[0][0]
    for i in range(1, D):
        tr = tr + G[i][i]
    gF = gmu = gla = None
    if need[0]:
        c = la * tr / J                                              # la tr(G) d(log J)/dF = c cof
        rows = []
        for i in range(D):
            for j in range(D):
                s = (G[i][0] + G[0][i]) * f[0][j]
                for k in range(1, D):
                    s = s + (G[i][k] + G[k][i]) * f[k][j]
                rows.append(mu * s + c * cof[i][j])
        gF = ns.reshape(ns.stack(rows, 1), tuple(F.shape))
    if need[1]:
        gmu = None
        for i in range(D):
            for j in range(D):
                s = f[i][0] * f[j][0]
                for k in range(1, D):
                    s = s + f[i][k] * f[j][k]
                t = G[i][j] * (s - 1.0 if i == j else s)
                gmu = t if gmu is None else gmu + t
    if need[2]:
        gla = tr * ns.log(J)
    return gF, gmu, gla


def neo_hookean_tau(F, mu, lam):
    """Kirchhoff stress ``tau = mu (F F^T - I) + lam log(det F) I`` of ``F [P, D, D]`` (D = 2, 3)
    with ``mu``, ``lam`` numbers-shaped or ``[P]``: one op (closed-form determinant and
    cofactors) with a hand-written backward (differentiable again)."""
    return _nh_op(F, mu, lam)


# ====================================================================== the simulator

class MPM(System):
    """An MLS-MPM continuum (elastic and/or fluid particles) on a regular grid (see the
    module docstring).

    Args:
        positions: initial particle positions ``[P, D]`` (D = 2 or 3), the default initial
            state; inside ``[bound dx, (n_grid - bound) dx]`` per axis.
        n_grid: grid nodes per axis (int or D ints), default 64; dx: node spacing (default
            ``1 / n_grid``, a unit domain).
        E: Young's modulus, a number or ``[P]``, > 0 (for fluid particles it sets the bulk
            stiffness ``lambda``). nu: Poisson's ratio, number or ``[P]``, in ``(-1, 0.5)``.
        density: number or ``[P]``, > 0; particle_volume: initial volume per particle (number
            or ``[P]``; default ``(dx / 2)^D``, four particles per cell in 2-D).
            Mass ``m_p = density * volume``.
        material: "elastic" (Neo-Hookean), "fluid" (``mu = 0`` and ``F`` reset to
            ``J^(1/D) I``: pressure from ``J`` only), or an integer array ``[P]`` of
            ``MPM.ELASTIC`` (0) / ``MPM.FLUID`` (1).
        gravity: ``[D]`` acceleration, default ``(0, -9.8)`` / ``(0, -9.8, 0)``; None for none.
        boundary: "sticky", "slip" or "friction" (see the module docstring), applied on the
            ``bound`` (default 3) outermost node layers of every wall; friction: the Coulomb
            coefficient for "friction".
        actuators: integer ``[P]``: the actuator group (``0 .. A-1``) of each particle, -1
            for none. The control of a step is ``[A]`` (``simulate(..., controls=[steps, A])``).
        actuation_direction: ``[D]`` or ``[P, D]``, the muscle direction ``d`` (default the
            vertical axis, as in diffmpm); actuation_strength: number or ``[P]``.
        cfl: the largest allowed ``dt / (dx / c)`` (see ``dt_max``).
        dtype: floating dtype of the parameters (default: that of ``positions``).

    Tensor arguments are kept as is, so their gradients arrive; numbers become Tensors
    (``mpm.E``, ``mpm.nu``, ``mpm.density``, ``mpm.gravity``, ...) on which
    ``requires_grad_()`` may be called.

    State fields: ``x [P, D]``, ``v [P, D]``, ``C [P, D, D]`` (affine velocity), ``F [P, D, D]``
    (deformation gradient); ``initial_state(x=None, v=None, C=None, F=None)`` builds one
    (defaults: the positions, at rest, ``C = 0``, ``F = I``).
    """
    ELASTIC, FLUID = ELASTIC, FLUID
    position_fields = ("x",)
    velocity_fields = ("v",)

    def __init__(self, positions, n_grid=64, dx=None, E=400.0, nu=0.2, density=1.0, particle_volume=None,
                 material="elastic", gravity="default", boundary="sticky", friction=0.5, bound=3,
                 actuators=None, actuation_direction=None, actuation_strength=1.0, cfl=1.0, dtype=None):
        op = "MPM"
        x = as_positions(positions, op, dtype)
        P, D = x.shape
        dt_ = x.dtype
        self.positions = x
        self.n_particles, self.dim = P, D
        self.n_grid = _grid_tuple(n_grid, D, op)
        self.n_nodes = int(np.prod(self.n_grid))
        self.dx = float(1.0 / self.n_grid[0] if dx is None else dx)
        if not self.dx > 0:
            raise ValueError(f"{op}: dx must be > 0, got {dx!r}")
        if not isinstance(bound, numbers.Integral) or bound < 1 or 2 * bound >= min(self.n_grid):
            raise ValueError(f"{op}: bound must be an int in [1, n_grid / 2), got {bound!r} (n_grid {self.n_grid})")
        self.bound = int(bound)
        if boundary not in ("sticky", "slip", "friction"):
            raise ValueError(f"{op}: boundary must be 'sticky', 'slip' or 'friction', got {boundary!r}")
        self.boundary = boundary
        self.friction = float(friction)
        if self.friction < 0:
            raise ValueError(f"{op}: friction must be >= 0, got {friction!r}")
        self.cfl = float(cfl)

        def param(value, name, allow_zero=False, positive=True):
            t = as_param(value, name, op, dtype=dt_, device=x.device)
            if t.ndim > 1 or tuple(t.shape) not in ((P,), (), (1,)):
                raise ValueError(f"{op}: {name} must be a number or have shape [{P}] (one per particle of "
                                 f"positions {list(x.shape)}), got {list(t.shape)}")
            if positive:
                check_positive(t, name, op, allow_zero=allow_zero)
            return t

        self.E = param(E, "E")
        self.nu = param(nu, "nu", positive=False)
        nd = self.nu.detach()
        if nd.numel() and not bool(((nd > -1.0) & (nd < 0.5)).all()):
            raise ValueError(f"{op}: nu (Poisson's ratio) must lie in (-1, 0.5), got values in "
                             f"[{float(nd.min())}, {float(nd.max())}]")
        self.density = param(density, "density")
        self.particle_volume = param((0.5 * self.dx) ** D if particle_volume is None else particle_volume,
                                     "particle_volume")
        # material codes
        if isinstance(material, str):
            if material not in ("elastic", "fluid"):
                raise ValueError(f"{op}: material must be 'elastic', 'fluid' or an int array [P], got {material!r}")
            mat = np.full(P, FLUID if material == "fluid" else ELASTIC, np.int64)
        else:
            mat = np.asarray(_raw(material) if isinstance(material, Tensor) else material)
            if mat.shape != (P,) or mat.dtype.kind not in "biu" or not np.isin(mat, (ELASTIC, FLUID)).all():
                raise ValueError(f"{op}: material array must be integers [{P}] of MPM.ELASTIC (0) / MPM.FLUID (1), "
                                 f"got shape {list(mat.shape)}, dtype {mat.dtype}")
            mat = mat.astype(np.int64)
        self.material = mat
        xp = get_xp(x._data)
        self._fluid = xp.asarray(mat == FLUID)
        self._has_fluid = bool((mat == FLUID).any())
        self._solid = as_tensor(xp.asarray((mat == ELASTIC).astype(np.float64)), dtype=dt_, device=x.device)
        if isinstance(gravity, str) and gravity == "default":
            gravity = (0.0, -9.8, 0.0)[:D]
        if gravity is None:
            self.gravity = None
        else:
            self.gravity = as_param(gravity, "gravity", op, dtype=dt_, device=x.device)
            if tuple(self.gravity.shape) != (D,):
                raise ValueError(f"{op}: gravity must have shape [{D}] to match positions {list(x.shape)}, "
                                 f"got {list(self.gravity.shape)}")
        # actuation
        if actuators is None:
            self.actuators, self.n_actuators = None, 0
        else:
            ac = np.asarray(_raw(actuators) if isinstance(actuators, Tensor) else actuators)
            if ac.shape != (P,) or ac.dtype.kind not in "iu":
                raise ValueError(f"{op}: actuators must be integers [{P}] (group per particle, -1 for none), "
                                 f"got shape {list(ac.shape)}, dtype {ac.dtype}")
            if ac.size and ac.min() < -1:
                raise ValueError(f"{op}: actuators entries must be >= -1, got {int(ac.min())}")
            self.n_actuators = int(ac.max()) + 1 if ac.size else 0
            self.actuators = xp.asarray(np.where(ac < 0, self.n_actuators, ac).astype(np.int64))
        if actuation_direction is None:
            actuation_direction = (0.0, 1.0, 0.0)[:D]
        self.actuation_direction = as_param(actuation_direction, "actuation_direction", op, dtype=dt_,
                                            device=x.device)
        if tuple(self.actuation_direction.shape) not in ((D,), (P, D)):
            raise ValueError(f"{op}: actuation_direction must be [{D}] or [{P}, {D}], got "
                             f"{list(self.actuation_direction.shape)}")
        self.actuation_strength = param(actuation_strength, "actuation_strength", allow_zero=True)
        # node coordinates (for the boundary conditions)
        idx = np.stack(np.unravel_index(np.arange(self.n_nodes), self.n_grid), -1)
        self._wall_lo = xp.asarray(idx < self.bound)
        self._wall_hi = xp.asarray(idx >= np.asarray(self.n_grid) - self.bound)

    # ------------------------------------------------------------ material
    def lame(self):
        """``(mu, lambda)`` from ``E`` and ``nu`` (each a number-shaped or ``[P]`` Tensor);
        ``mu`` is 0 for fluid particles."""
        E, nu = self.E, self.nu
        mu = E / ((1.0 + nu) * 2.0)
        la = E * nu / ((1.0 + nu) * (1.0 - 2.0 * nu))
        return mu, la

    @property
    def mass(self):
        """Particle masses ``density * particle_volume`` (number-shaped or ``[P]``)."""
        return self.density * self.particle_volume

    def dt_max(self, lame=None):
        """The largest stable step ``cfl * dx / c`` (a float), ``c = sqrt((lambda + 2 mu) / rho)``
        the fastest elastic wave speed over the particles (``lame``: ``(mu, lambda)`` if at hand)."""
        mu, la = self.lame() if lame is None else lame
        c2 = (la.detach() + mu.detach() * 2.0) / self.density.detach()
        c = math.sqrt(max(float(c2.max()), 1e-300))
        return self.cfl * self.dx / c

    # ------------------------------------------------------------ state
    @property
    def fields(self):
        return ("x", "v", "C", "F")

    def state_shapes(self):
        P, D = self.n_particles, self.dim
        return {"x": (P, D), "v": (P, D), "C": (P, D, D), "F": (P, D, D)}

    def initial_state(self, x=None, v=None, C=None, F=None):
        """A ``State(x, v, C, F)``: ``x [P, D]`` (default ``self.positions``, kept as is so a
        gradient reaches it), ``v [P, D]`` (default 0), ``C [P, D, D]`` (default 0),
        ``F [P, D, D]`` (default the identity)."""
        op = "MPM.initial_state"
        P, D = self.n_particles, self.dim
        x = self.positions if x is None else as_param(x, "x", op, dtype=self.positions.dtype)
        dt_ = x.dtype
        v = zeros((P, D), dtype=dt_, device=x.device) if v is None else as_param(v, "v", op, dtype=dt_)
        C = zeros((P, D, D), dtype=dt_, device=x.device) if C is None else as_param(C, "C", op, dtype=dt_)
        if F is None:
            F = (eye(D, dtype=dt_, device=x.device)[None] + zeros((P, D, D), dtype=dt_, device=x.device))
        else:
            F = as_param(F, "F", op, dtype=dt_)
        s = State(x=x, v=v, C=C, F=F)
        self.check_state(s, op)
        return s

    def check_state(self, state, opname="simulate"):
        """Fields, shapes and finiteness (``System.check_state``), and every particle inside the grid."""
        super().check_state(state, opname)
        _check_inside(_raw(state.x), 1.0 / self.dx, self.n_grid, opname)

    def acceleration(self, state, t, control=None):
        raise TypeError("MPM is not stepped by a generic ODE integrator: its transfers and grid update are the "
                        "time discretization. Use simulate(mpm, state, steps, dt, integrator=physics.MPMIntegrator()) "
                        "or mpm.step(state, dt, actuation)")

    # ------------------------------------------------------------ the step
    def step(self, state, dt, actuation=None, check=True):
        """One MLS-MPM step (see the module docstring).

        Args:
            state: ``State(x [P, D], v [P, D], C [P, D, D], F [P, D, D])``.
            dt: step size (a number > 0, at most ``dt_max()`` when ``check``).
            actuation: None or ``[A]`` (one value per actuator group; needs ``actuators``).
            check: run the checks of the module docstring (stencil inside the grid always).

        Returns:
            The next ``State`` (same fields and shapes); differentiable w.r.t. the state, the
            system's tensors and ``actuation``.
        """
        op = "MPM.step"
        if isinstance(dt, Tensor):
            dt = float(dt.detach())
        if not isinstance(dt, numbers.Real) or not math.isfinite(dt) or not dt > 0:
            raise ValueError(f"{op}: dt must be a positive finite number, got {dt!r}")
        P, D = self.n_particles, self.dim
        x, v, C, F = state["x"], state["v"], state["C"], state["F"]
        if tuple(x.shape) != (P, D):
            raise ValueError(f"{op}: state x has shape {list(x.shape)}, this MPM has {P} particles in {D}-D "
                             f"(expects [{P}, {D}])")
        lame = self.lame()
        if check:
            lim = self.dt_max(lame)
            if dt > lim:
                raise ValueError(f"{op}: dt={dt:g} exceeds the stability limit dt_max={lim:.4g} "
                                 f"(= cfl {self.cfl:g} * dx {self.dx:g} / elastic wave speed); reduce dt, E or "
                                 "refine less, or raise cfl at your own risk")
        inv_dx = 1.0 / self.dx
        _check_inside(_raw(x), inv_dx, self.n_grid, op)
        _clear_fast()
        Fn = F + (C @ F) * dt
        if self._has_fluid:
            eyeD = eye(D, dtype=x.dtype, device=x.device)
            J = _det(Fn)
            Jd = J.detach()
            if check and bool((Jd <= 0).any()):
                self._inverted(Jd, op)
            iso = (J.abs() ** (1.0 / D))[:, None, None] * eyeD
            Fn = where(as_tensor(self._fluid[:, None, None], device=x.device), iso, Fn)
        if check:
            Jd = _det(Fn.detach()._data)
            if bool((Jd <= 0).any()):
                self._inverted(as_tensor(Jd), op)
        mu, la = lame
        mu = mu * self._solid
        tau = _nh_op(Fn, mu, la)                        # mu (Fn Fn^T - I) + la log(J) I, one op
        if actuation is not None:
            tau = tau + self._actuation_stress(actuation, Fn, op)
        vol = self.particle_volume
        m = self.mass
        m1 = m if m.ndim else m + zeros((P,), dtype=x.dtype, device=x.device)
        vol3 = vol[:, None, None] if vol.ndim else vol
        A = tau * (vol3 * (-dt * 4.0 * inv_dx * inv_dx)) + C * m1[:, None, None]
        gmv, gm = _p2g_op(x, m1, v * m1[:, None], A, inv_dx=inv_dx, n_grid=self.n_grid, n_nodes=self.n_nodes)
        gv = self.grid_update(gmv, gm, dt)
        vn, Cn = _g2p_op(x, gv, inv_dx=inv_dx, n_grid=self.n_grid)
        xn = x + vn * dt
        if check:
            vmax = float(abs(_raw(vn)).max()) if P else 0.0
            if vmax * dt > self.dx:
                warnings.warn(f"{op}: a particle moves {vmax * dt / self.dx:.2f} cells in one step (|v| dt / dx "
                              f"with |v| = {vmax:.4g}, dt = {dt:g}); results are inaccurate, reduce dt",
                              RuntimeWarning, stacklevel=2)
        return State(x=xn, v=vn, C=Cn, F=Fn)

    def _inverted(self, J, op):
        p = int(np.flatnonzero(np.asarray(J.cpu().numpy()) <= 0)[0])
        raise ValueError(f"{op}: the deformation gradient of particle {p} inverted (det F = {float(J[p]):.4g} <= 0) "
                         "over this step; reduce dt or the velocities")

    def _actuation_stress(self, actuation, Fn, op):
        if self.actuators is None:
            raise ValueError(f"{op}: an actuation was given but this MPM has no actuators (pass actuators=[P] "
                             "group ids to MPM)")
        a = actuation if isinstance(actuation, Tensor) else as_tensor(np.asarray(actuation, dtype=np.float64),
                                                                      dtype=Fn.dtype)
        if tuple(a.shape) != (self.n_actuators,):
            raise ValueError(f"{op}: actuation must have shape [{self.n_actuators}] (one value per actuator "
                             f"group), got {list(a.shape)}")
        a = cat([a.to(Fn.dtype), zeros((1,), dtype=Fn.dtype, device=Fn.device)])[self.actuators]   # [P]
        s = self.actuation_strength
        a = a * s
        d = self.actuation_direction
        Fd = (Fn @ d[:, :, None])[..., 0] if d.ndim == 2 else Fn @ d                    # [P, D]
        return a[:, None, None] * (Fd[:, :, None] * Fd[:, None, :])

    def grid_update(self, grid_momentum, grid_mass, dt):
        """Node velocities ``[G, D]`` from momenta ``[G, D]`` and masses ``[G]``: ``mv / m + dt g``
        (0 on empty nodes), then the boundary conditions (``boundary``)."""
        has = grid_mass.detach()._data > 0
        msafe = where(as_tensor(has, device=grid_mass.device), grid_mass, 1.0)
        v = grid_momentum / msafe[:, None]
        if self.gravity is not None:
            v = v + self.gravity * dt
        vd = v.detach()._data
        into = (self._wall_lo & (vd < 0)) | (self._wall_hi & (vd > 0))         # [G, D]
        if self.boundary == "sticky":
            keep = ~into.any(1)
            return v * as_tensor(keep[:, None].astype(vd.dtype), device=v.device)
        keep = (~into).astype(vd.dtype)
        vs = v * as_tensor(keep, device=v.device)                               # normal into walls removed
        if self.boundary == "slip" or self.friction == 0:
            return vs
        # Coulomb friction on the tangential part, for nodes pushing into a wall
        hit = into.any(1)
        if not bool(hit.any()):
            return vs
        vn = (v * as_tensor(into.astype(vd.dtype), device=v.device)).abs().sum(1)         # |normal| [G]
        vt = ((vs * vs).sum(1) + 1e-30).sqrt()
        factor = (1.0 - vn * self.friction / vt).clamp(min=0.0)
        factor = where(as_tensor(hit, device=v.device), factor, 1.0)
        return vs * factor[:, None]


class MPMIntegrator(Integrator):
    """The MLS-MPM step as an ``Integrator``, so ``physics.simulate`` (controls, recording,
    checkpointing, gradient hooks) drives an ``MPM``::

        physics.simulate(mpm, state, steps, dt, integrator=physics.MPMIntegrator(), controls=u)

    ``step(system, state, t, dt, control)`` is ``system.step(state, dt, control, check)``;
    ``control`` (a row of simulate's controls, ``[A]``) is the actuation. ``check=False``
    skips the per-step checks (see ``mpm`` module docstring)."""
    order = 1
    name = "mpm"

    def __init__(self, check=True):
        self.check = bool(check)

    def step(self, system, state, t, dt, control=None):
        if not isinstance(system, MPM):
            raise TypeError(f"MPMIntegrator: the system must be a physics.MPM, got {type(system).__name__}")
        return system.step(state, dt, control, check=self.check)

    def __repr__(self):
        return f"MPMIntegrator(check={self.check})"

