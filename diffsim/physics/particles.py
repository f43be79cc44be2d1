"""Particles with pairwise forces: softened gravity (all pairs), Lennard-Jones and user-defined pair
potentials (cell-list neighbour search, optional periodic box).

A ``Particles`` system composes force terms::

    lj = physics.LennardJones(epsilon=eps, sigma=1.0, cutoff=2.5)
    soft = physics.PairPotential(lambda r: 4 * eps * ((s / r) ** 12 - (s / r) ** 6), cutoff=2.5)
    sys = physics.Particles(mass=1.0, forces=[lj], box=[10.0, 10.0, 10.0])
    final = physics.simulate(sys, physics.State(x=x0, v=v0), steps=100, dt=1e-3,
                             integrator="velocity_verlet")

Every parameter (masses, ``G``, softening, ``epsilon``, ``sigma``, tensors closed over by a
user potential) may be a Tensor that requires grad; gradients flow through the rollout.

How the forces are computed:

* ``Gravity``: one custom op, ``a_i = G sum_j m_j (x_j - x_i) / (|x_j - x_i|^2 + eps^2)^{3/2}``,
  evaluated in blocks of rows (memory O(N * chunk), never an [N, N] graph), with a
  hand-written vectorized backward (gradients w.r.t. ``x``, ``m``, ``G`` and ``eps``) that
  recomputes the same blocks. Direct differences only (no ``|x|^2`` expansion), so close
  pairs lose no accuracy. On the GPU (cupy arrays, float32/float64, D = 2 or 3) the forward
  and the plain (not ``create_graph``) backward are hand-written CUDA kernels instead
  (``_cuda_gravity.py``: one thread per particle, source tiles in shared memory).
* Pair potentials (``PairPotential``, ``LennardJones``): the pair list (``i < j``, integer
  data from ``neighbors.neighbor_pairs``) is recomputed from the detached positions on every
  force evaluation; displacements ``d = x_j - x_i`` (minimum image in a box) and distances
  ``r`` are diffsim ops; ``c = phi'(r) / r`` comes from autodiff of ``phi`` (``create_graph``
  when grad mode is on, so forces stay differentiable) or, for ``LennardJones``, from the
  closed form; one fused op ``pair_force`` scatters ``+c d`` onto ``i`` and ``-c d`` onto
  ``j`` (``_scatter.pair_scatter``, shared with the spring op: one ``bincount``) with a
  backward written against ``ns`` (so gradients of gradients work too).
* Cutoff: by default a potential with a cutoff is *shifted-force*:
  ``phi_sf(r) = phi(r) - phi(rc) - (r - rc) phi'(rc)`` for ``r < rc`` and 0 beyond, so both the
  energy and the force go continuously to zero at ``rc`` (energy is conserved by symplectic
  integrators, and gradients see no jump when a pair crosses the cutoff). The price is a
  small change of the potential inside the cutoff (``-(r - rc) phi'(rc)``); ``shift="energy"``
  (only ``phi(r) - phi(rc)``: force jumps at ``rc``) and ``shift=None`` (plain truncation)
  are available.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..autodiff import Tensor, as_tensor, autograd, enable_grad, no_grad, where
from ..autodiff.backend import get_xp
from ..autodiff.checkpoint import scratch_leaf
from ..autodiff.function import call_op, defop
from ..autodiff.grad_mode import STATE
from ..autodiff.rawops import RAW_NS
from . import _cuda_gravity
from ._scatter import pair_scatter
from .neighbors import all_pairs, neighbor_pairs
from .system import Movable, System, as_param, check_positive

__all__ = ["Particles", "Gravity", "PairPotential", "LennardJones", "gravity_acceleration", "pair_force"]

DEFAULT_CHUNK_ELEMENTS = 1 << 16     # entries of one [chunk, N] block of the gravity op


# ====================================================================== the gravity op

def _as_dtype(t, dtype):
    return t if t.dtype == dtype else t.to(dtype)


def _chunk_rows(n, chunk):
    c = chunk if chunk else max(1, DEFAULT_CHUNK_ELEMENTS // max(n, 1))
    return range(0, n, c), c


def _block(x, s, e, e2):
    """Differences ``d[k] = x[:, k] - x[s:e, k]`` ([c, N] each), ``1 / r_e^2`` and ``1 / r_e^3``
    with ``r_e^2 = |d|^2 + eps^2``; the self-pair entries are 0."""
    d = [x[None, :, k] - x[s:e, k, None] for k in range(x.shape[1])]
    r2 = d[0] * d[0]
    for dk in d[1:]:
        r2 += dk * dk
    r2 += e2
    rows = np.arange(e - s)
    r2[rows, rows + s] = 1.0             # self pairs: finite here, zeroed below
    inv2 = 1.0 / r2
    inv3 = inv2 * np.sqrt(inv2)
    inv3[rows, rows + s] = 0.0
    return d, inv2, inv3


def _gravity_fwd(x, m, G, eps, chunk):
    xp = get_xp(x)
    n = x.shape[0]
    out = xp.empty_like(x)
    e2 = eps * eps
    starts, c = _chunk_rows(n, chunk)
    for s in starts:
        e = min(n, s + c)
        d, _, inv3 = _block(x, s, e, e2)
        w = inv3 * m                                    # m_j / r_e^3
        for k, dk in enumerate(d):
            out[s:e, k] = xp.einsum("ij,ij->i", w, dk)
    return out * G


_gravity = defop("gravity", _gravity_fwd, save=(0, 1, 2, 3))


def _gravity_fwd_cuda(x, m, G, eps, chunk):
    """The forward on cupy arrays: the hand-written kernel (``_cuda_gravity``) where it applies
    (float32/float64, D = 2 or 3), else the chunked cupy path; ``chunk`` does not matter to
    the kernel."""
    if _cuda_gravity.supports(x):
        return _cuda_gravity.gravity_forward(x, m, G, eps)
    return _gravity_fwd(x, m, G, eps, chunk)


_gravity.cuda_fwd = _gravity_fwd_cuda


def _gravity_vjp_fwd(g, x, m, G, eps, chunk):
    """Gradients of ``sum(g * a)`` w.r.t. ``x``, ``m``, ``G``, ``eps`` (see ``_gravity``), in the
    same row blocks as the forward: for a pair with ``d = x_j - x_i``, ``k = r_e^-3``,
    ``q = r_e^-5``, ``s = g_i . d``: ``dm_j += G k s``, ``dG += m_j k s``,
    ``deps += -3 eps G m_j q s`` and ``v = G m_j (k g_i - 3 q s d)`` goes to ``x_j`` (+) and
    ``x_i`` (-)."""
    xp = get_xp(x)
    n, dim = x.shape
    gx = xp.zeros_like(x)
    gm = xp.zeros(n, x.dtype)
    sG = 0.0
    seps = 0.0
    e2 = eps * eps
    starts, c = _chunk_rows(n, chunk)
    for s in starts:
        e = min(n, s + c)
        d, inv2, inv3 = _block(x, s, e, e2)
        gb = g[s:e]
        sp = gb[:, 0, None] * d[0]
        for k in range(1, dim):
            sp += gb[:, k, None] * d[k]                  # s_ij = g_i . d_ij
        ks = inv3 * sp
        gm += ks.sum(0)
        mks = ks * m
        sG += mks.sum()
        mqs = mks * inv2                                 # m_j q s
        seps += mqs.sum()
        mk = inv3 * m
        rowsum_mk = mk.sum(1)
        for k in range(dim):
            t = mqs * d[k]
            gx[s:e, k] -= gb[:, k] * rowsum_mk - 3.0 * t.sum(1)
            gx[:, k] += gb[:, k] @ mk - 3.0 * t.sum(0)
    gx *= G
    gm *= G
    if m.ndim == 0:                                      # one mass shared by all particles
        gm = gm.sum()
    gG = xp.asarray(sG, dtype=x.dtype)
    geps = xp.asarray(-3.0 * eps * G * seps, dtype=x.dtype)
    return gx, gm, gG, geps


_gravity_vjp = defop("gravity_vjp", _gravity_vjp_fwd, n_out=4)


@_gravity.defvjp
def _(ns, node, g, x, m, G, eps):
    if ns is RAW_NS and type(x) is not np.ndarray and _cuda_gravity.supports(x):
        # a plain backward on the GPU: the hand-written kernel (under create_graph the
        # gravity_vjp op below is recorded, so that its backward can raise clearly)
        return _cuda_gravity.gravity_vjp(g, x, m, G, eps)
    gx, gm, gG, geps = call_op(ns, _gravity_vjp, g, x, m, G, eps, chunk=node.attrs["chunk"])
    return gx, gm, gG, geps


@_gravity_vjp.defvjp
def _(ns, node, g, *saved):
    raise RuntimeError("gravity: second derivatives (backward of the gravity op's backward, "
                       "create_graph=True) are not implemented; differentiate the rollout once, "
                       "or write the potential with PairPotential to get higher derivatives")


def gravity_acceleration(x, mass, G=1.0, softening=0.0, chunk=None):
    """Softened Newtonian accelerations of all particles on each other.

    ``a_i = G sum_{j != i} m_j (x_j - x_i) / (|x_j - x_i|^2 + softening^2)^{3/2}``.

    Args:
        x: positions [N, D] (floating Tensor).
        mass: masses [N], or one mass for all (a number or 0-d Tensor).
        G, softening: numbers or 0-d Tensors (gradients flow to Tensors).
        chunk: rows per block (default: about 65 536 / N); memory is O(N * chunk).

    Returns: accelerations [N, D]. Differentiable w.r.t. ``x``, ``mass``, ``G``, ``softening``
    (first derivatives).
    """
    if not isinstance(x, Tensor) or x.ndim != 2:
        raise ValueError(f"gravity_acceleration: x must be a Tensor [N, D], got "
                         f"{type(x).__name__}{list(x.shape) if isinstance(x, Tensor) else ''}")
    n = x.shape[0]
    m = _as_dtype(as_param(mass, "mass", "gravity_acceleration", dtype=x.dtype), x.dtype)
    if m.ndim == 1 and m.shape[0] == 1:
        m = m.reshape(())
    if m.ndim != 0 and tuple(m.shape) != (n,):
        raise ValueError(f"gravity_acceleration: mass must be [N] = [{n}] or a scalar, got {list(m.shape)}")
    G = G if isinstance(G, Tensor) else float(G)
    eps = softening if isinstance(softening, Tensor) else float(softening)
    for name, p in (("G", G), ("softening", eps)):
        if isinstance(p, Tensor) and p.numel() != 1:
            raise ValueError(f"gravity_acceleration: {name} must be a scalar, got shape {list(p.shape)}")
    G = _as_dtype(G.reshape(()) if G.ndim else G, x.dtype) if isinstance(G, Tensor) else G
    eps = _as_dtype(eps.reshape(()) if eps.ndim else eps, x.dtype) if isinstance(eps, Tensor) else eps
    if chunk is not None and (not isinstance(chunk, numbers.Integral) or chunk < 1):
        raise ValueError(f"gravity_acceleration: chunk must be a positive int, got {chunk!r}")
    return _gravity(x, m, G, eps, chunk=None if chunk is None else int(chunk))


# ====================================================================== the pair-force scatter

def _pair_force_fwd(d, c, i, j, n):
    return pair_scatter(RAW_NS, d * c[:, None], get_xp(i).concatenate([i, j]), n, cache=False)


_pair_force = defop("pair_force", _pair_force_fwd, save=(0, 1, 2, 3))


@_pair_force.defvjp
def _(ns, node, g, d, c, i, j):
    gd = ns.index_select(g, 0, i) - ns.index_select(g, 0, j)      # [E, D]
    need = node.needs_input_grad
    grad_d = gd * ns.unsqueeze(c, -1) if need[0] else None
    grad_c = ns.sum(gd * d, -1) if need[1] else None
    return grad_d, grad_c, None, None


def pair_force(d, c, i, j, n):
    """Scatter pair forces onto particles: ``F[i_e] += c_e d_e`` and ``F[j_e] -= c_e d_e``.

    Args:
        d: pair displacements [E, D] (``x_j - x_i``).
        c: pair coefficients [E] (``phi'(r) / r`` for a pair potential ``phi``).
        i, j: particle indices [E] (integer numpy arrays).
        n: number of particles.

    Returns: forces [n, D]; differentiable w.r.t. ``d`` and ``c`` (to any order).
    """
    return _pair_force(d, c, np.asarray(i, np.intp), np.asarray(j, np.intp), n=int(n))


# ====================================================================== force terms

class ForceTerm(Movable):
    """A force acting within a ``Particles`` system. ``force(x, mass, box)`` -> forces [N, D]
    (or ``acceleration(...)`` for terms where that is natural); ``energy(x, mass, box)`` -> 0-d."""
    gives = "force"          # or "acceleration"

    def parameters(self):
        out = []
        for v in vars(self).values():
            if isinstance(v, Tensor) and v.requires_grad:
                out.append(v)
        return out

    def check(self, particles):
        """Raise if the term cannot act in ``particles`` (e.g. needs no box)."""


class Gravity(ForceTerm):
    """Softened Newtonian gravity between all pairs of particles (see ``gravity_acceleration``).

    ``Gravity(G=1.0, softening=0.0, chunk=None)``: ``G`` and ``softening`` are numbers or 0-d
    Tensors (optimizable). Potential energy
    ``U = -G sum_{i<j} m_i m_j / sqrt(|x_j - x_i|^2 + softening^2)``. Not for periodic boxes.
    """
    gives = "acceleration"

    def __init__(self, G=1.0, softening=0.0, chunk=None):
        self.G = as_param(G, "G", "Gravity")
        self.softening = as_param(softening, "softening", "Gravity")
        for name, p in (("G", self.G), ("softening", self.softening)):
            if p.numel() != 1:
                raise ValueError(f"Gravity: {name} must be a scalar, got shape {list(p.shape)}")
        check_positive(self.G, "G", "Gravity", allow_zero=True)
        check_positive(self.softening, "softening", "Gravity", allow_zero=True)
        if self.G.ndim:
            self.G = self.G.reshape(())
        if self.softening.ndim:
            self.softening = self.softening.reshape(())
        self.chunk = chunk

    def check(self, particles):
        if particles.box is not None:
            raise ValueError("Gravity: long-range gravity in a periodic box is not supported "
                             "(it needs Ewald summation); use box=None")

    def _params(self, x):
        return _as_dtype(self.G, x.dtype), _as_dtype(self.softening, x.dtype)

    def acceleration(self, x, mass, box):
        G, eps = self._params(x)
        return gravity_acceleration(x, mass, G, eps, self.chunk)

    def energy(self, x, mass, box):
        G, eps = self._params(x)
        n = x.shape[0]
        m = mass.expand(n) if mass.ndim == 0 else mass
        i, j, _ = all_pairs(n)
        d = x.index_select(0, j) - x.index_select(0, i)
        inv = ((d * d).sum(-1) + eps * eps).rsqrt()
        return -G * (m.index_select(0, i) * m.index_select(0, j) * inv).sum()

    def __repr__(self):
        return f"Gravity(G={float(self.G):g}, softening={float(self.softening):g})"


class PairPotential(ForceTerm):
    """A pair potential ``phi(r)`` between all particle pairs closer than ``cutoff``; forces by
    autodiff of the potential energy. A user potential is one line::

        eps = ds.tensor(1.0, requires_grad=True); s = 1.0
        lj = physics.PairPotential(lambda r: 4 * eps * ((s / r) ** 12 - (s / r) ** 6), cutoff=2.5)

    Args:
        phi: ``phi(r) -> Tensor [E]``, any differentiable diffsim function of the pair
            distances ``r`` [E]; it may close over Tensors that require grad (they get
            gradients through the rollout).
        cutoff: interaction range (number > 0); pairs are found with a cell list
            (``neighbors.neighbor_pairs``). None: all pairs (O(N^2), small N only).
        shift: "force" (default; shifted-force potential, continuous energy and force at
            the cutoff), "energy" (``phi(r) - phi(rc)``) or None (plain truncation); ignored
            without a cutoff.
        dphi: optional closed form ``phi'(r)`` (diffsim ops), used instead of autodiff.

    Forces: ``F_i = sum_j phi'(r_ij) (x_j - x_i) / r_ij`` with ``phi`` the shifted potential.
    """

    def __init__(self, phi, cutoff=None, shift="force", dphi=None):
        if not callable(phi):
            raise TypeError(f"PairPotential: phi must be callable, got {type(phi).__name__}")
        if dphi is not None and not callable(dphi):
            raise TypeError(f"PairPotential: dphi must be callable or None, got {type(dphi).__name__}")
        if cutoff is not None:
            if isinstance(cutoff, Tensor):
                cutoff = float(cutoff)
            if not isinstance(cutoff, numbers.Real) or not (math.isfinite(cutoff) and cutoff > 0):
                raise ValueError(f"PairPotential: cutoff must be a number > 0 or None, got {cutoff!r}")
            cutoff = float(cutoff)
        if shift not in ("force", "energy", None):
            raise ValueError(f"PairPotential: shift must be 'force', 'energy' or None, got {shift!r}")
        self.phi = phi
        self.cutoff = cutoff
        self.shift = shift if cutoff is not None else None
        self._dphi_fn = dphi

    # ------------------------------------------------------------ pieces
    def pairs(self, x, box):
        """``(i, j, shift)`` for the positions ``x`` (a Tensor; detached numpy is used)."""
        xa = x.detach().cpu().numpy()
        if self.cutoff is None:
            return all_pairs(x.shape[0], xa, box)
        return neighbor_pairs(xa, self.cutoff, box)

    @staticmethod
    def displacements(x, i, j, shift):
        """``d = x_j - x_i - shift`` [E, D] and ``r = |d|`` [E] as diffsim ops. Coincident
        pairs get ``r = 0`` with a zero (not NaN) derivative w.r.t. ``d``."""
        d = x.index_select(0, as_tensor(j, device=x.device)) - x.index_select(0, as_tensor(i, device=x.device))
        if shift is not None:
            d = d - as_tensor(shift, dtype=x.dtype, device=x.device)
        r2 = (d * d).sum(-1)
        pos = (r2 > 0).detach()
        if bool(pos.all()):
            return d, r2.sqrt()
        return d, where(pos, where(pos, r2, r2 * 0.0 + 1.0).sqrt(), r2 * 0.0)

    def _derivative(self, r, graph):
        """``phi'(r)`` (a Tensor like ``r``): closed form, or autodiff of ``phi``."""
        if self._dphi_fn is not None:
            return self._dphi_fn(r)
        with enable_grad():
            rin = r if r.requires_grad else scratch_leaf(r.detach().requires_grad_(True))
            u = self.phi(rin)
            if not isinstance(u, Tensor) or tuple(u.shape) != tuple(rin.shape):
                raise ValueError("PairPotential: phi(r) must return a Tensor shaped like r "
                                 f"{list(rin.shape)}, got {type(u).__name__}"
                                 f"{list(u.shape) if isinstance(u, Tensor) else ''}")
            (g,) = autograd.grad(u.sum(), [rin], create_graph=graph, allow_unused=True)
        if g is None:
            return r * 0.0
        return g

    def _at_cutoff(self, like, graph):
        """``(phi(rc), phi'(rc))`` as 0-d Tensors (differentiable w.r.t. ``phi``'s parameters)."""
        rc = as_tensor(np.array([self.cutoff]), dtype=like.dtype, device=like.device)
        with enable_grad() if graph else no_grad():
            prc = self.phi(rc)
            dprc = self._derivative(rc, graph) if self.shift == "force" else None
        return prc, dprc

    # ------------------------------------------------------------ force and energy
    def force(self, x, mass, box):
        n = x.shape[0]
        i, j, shift = self.pairs(x, box)
        d, r = self.displacements(x, i, j, shift)
        graph = STATE.grad_enabled
        dphi = self._derivative(r, graph)
        if self.shift == "force":
            dphi = dphi - self._at_cutoff(r, graph)[1]
        pos = (r > 0).detach()
        if bool(pos.all()):
            return pair_force(d, dphi / r, i, j, n)
        # coincident particles (possible with a bounded potential): no force along d = 0
        return pair_force(d, where(pos, dphi / where(pos, r, r * 0.0 + 1.0), r * 0.0), i, j, n)

    def energy(self, x, mass, box):
        i, j, shift = self.pairs(x, box)
        _, r = self.displacements(x, i, j, shift)
        u = self.phi(r)
        if self.shift is not None:
            prc, dprc = self._at_cutoff(r, STATE.grad_enabled)
            u = u - prc
            if self.shift == "force":
                u = u - (r - self.cutoff) * dprc
        return u.sum()

    def __repr__(self):
        return f"{type(self).__name__}(cutoff={self.cutoff}, shift={self.shift!r})"


class LennardJones(PairPotential):
    """Lennard-Jones, ``phi(r) = 4 epsilon ((sigma / r)^12 - (sigma / r)^6)``, with a cutoff and a
    cell-list neighbour search (N = 10 000 and more), optionally in a periodic box.

    Args:
        epsilon, sigma: well depth and size (numbers or 0-d Tensors, > 0; optimizable).
        cutoff: interaction range (default ``2.5 * sigma``, from sigma's value at construction).
        shift: as ``PairPotential`` (default "force": shifted-force LJ).

    The same pair machinery as ``PairPotential`` with the closed-form
    ``phi'(r) = (24 epsilon / r) ((sigma/r)^6 - 2 (sigma/r)^12)`` instead of autodiff.
    """

    def __init__(self, epsilon=1.0, sigma=1.0, cutoff=None, shift="force"):
        self.epsilon = as_param(epsilon, "epsilon", "LennardJones")
        self.sigma = as_param(sigma, "sigma", "LennardJones")
        for name, p in (("epsilon", self.epsilon), ("sigma", self.sigma)):
            if p.numel() != 1:
                raise ValueError(f"LennardJones: {name} must be a scalar, got shape {list(p.shape)}")
            check_positive(p, name, "LennardJones")
        self.epsilon = self.epsilon.reshape(()) if self.epsilon.ndim else self.epsilon
        self.sigma = self.sigma.reshape(()) if self.sigma.ndim else self.sigma
        if cutoff is None:
            cutoff = 2.5 * float(self.sigma)
        super().__init__(self._phi, cutoff=cutoff, shift=shift, dphi=self._dphi)

    def _sr6(self, r):
        s = _as_dtype(self.sigma, r.dtype)
        sr2 = (s * s) / (r * r)
        return sr2 * sr2 * sr2

    def _phi(self, r):
        sr6 = self._sr6(r)
        return 4.0 * _as_dtype(self.epsilon, r.dtype) * (sr6 * sr6 - sr6)

    def _dphi(self, r):
        sr6 = self._sr6(r)
        return (24.0 * _as_dtype(self.epsilon, r.dtype)) * (sr6 - 2.0 * sr6 * sr6) / r

    def __repr__(self):
        return (f"LennardJones(epsilon={float(self.epsilon):g}, sigma={float(self.sigma):g}, "
                f"cutoff={self.cutoff:g}, shift={self.shift!r})")


# ====================================================================== the system

class Particles(System):
    """Point particles with pairwise force terms.

    Args:
        mass: a number, or masses [P] (> 0; a Tensor is optimizable).
        forces: a list of force terms (``Gravity``, ``LennardJones``, ``PairPotential``).
        box: None, or periodic box lengths (a number or [D]); pair terms then use the
            minimum image convention (positions are not wrapped; the neighbour search wraps
            them internally).
        gravity: None, or a uniform acceleration [D] (e.g. ``[0, -9.81, 0]``); not to be
            confused with the N-body ``Gravity`` force term.
        drag: linear drag coefficient ``c`` (``dv/dt = ... - c v``), a number or Tensor.

    State fields: ``x`` [P, D] and ``v`` [P, D]; ``initial_state(x, v=None)`` builds one.
    ``acceleration = (sum of pair forces) / m + (N-body gravity) + gravity``.
    ``energy(state)``: kinetic + potential (a 0-d Tensor), for conservation checks.
    """

    def __init__(self, mass=1.0, forces=(), box=None, gravity=None, drag=None):
        self.mass = as_param(mass, "mass", "Particles")
        if self.mass.ndim > 1:
            raise ValueError(f"Particles: mass must be a scalar or a vector [P], got shape {list(self.mass.shape)}")
        check_positive(self.mass, "mass", "Particles")
        if isinstance(forces, ForceTerm):
            forces = [forces]
        forces = list(forces)
        for f in forces:
            if not isinstance(f, ForceTerm):
                raise TypeError(f"Particles: forces must be force terms (Gravity, LennardJones, "
                                f"PairPotential), got {type(f).__name__}")
        self.forces = forces
        if box is not None:
            b = np.asarray(box.detach().cpu().numpy() if isinstance(box, Tensor) else box, dtype=np.float64)
            if b.ndim > 1 or not (np.isfinite(b).all() and (b > 0).all()):
                raise ValueError(f"Particles: box must be a number or lengths [D], all > 0, got {b.tolist()}")
            box = b
        self.box = box
        self.gravity = None if gravity is None else as_param(gravity, "gravity", "Particles")
        if self.gravity is not None and self.gravity.ndim != 1:
            raise ValueError(f"Particles: gravity must be a vector [D], got shape {list(self.gravity.shape)}")
        self._drag = None if drag is None else as_param(drag, "drag", "Particles")
        if self._drag is not None:
            check_positive(self._drag, "drag", "Particles", allow_zero=True)
        for f in forces:
            f.check(self)

    @property
    def drag(self):
        return {} if self._drag is None else {"v": self._drag}

    def parameters(self):
        out, seen = [], set()
        for t in super().parameters() + [p for f in self.forces for p in f.parameters()]:
            if id(t) not in seen:
                seen.add(id(t))
                out.append(t)
        return out

    def _box(self, dim):
        if self.box is None:
            return None
        return np.broadcast_to(self.box, (dim,))

    def _mass(self, x):
        return _as_dtype(self.mass, x.dtype)

    def acceleration(self, state, t, control=None):
        x = state.x
        box = self._box(x.shape[1])
        m = self._mass(x)
        force = acc = None
        for term in self.forces:
            if term.gives == "acceleration":
                a = term.acceleration(x, m, box)
                acc = a if acc is None else acc + a
            else:
                f = term.force(x, m, box)
                force = f if force is None else force + f
        if force is not None:
            a = force / (m.unsqueeze(-1) if m.ndim else m)
            acc = a if acc is None else acc + a
        if self.gravity is not None:
            g = _as_dtype(self.gravity, x.dtype)
            acc = g if acc is None else acc + g
        if acc is None or tuple(acc.shape) != tuple(x.shape):
            acc = (x * 0.0) if acc is None else acc + x * 0.0
        return {"v": acc}

    def potential_energy(self, x):
        """Potential energy of positions ``x`` [P, D] (0-d): the force terms plus the uniform
        ``gravity`` field (``-m g . x``)."""
        m = self._mass(x)
        box = self._box(x.shape[1])
        u = (x * 0.0).sum()
        for term in self.forces:
            u = u + term.energy(x, m, box)
        if self.gravity is not None:
            mm = m.unsqueeze(-1) if m.ndim else m
            u = u - (mm * x * _as_dtype(self.gravity, x.dtype)).sum()
        return u

    def energy(self, state):
        """Kinetic plus potential energy, a 0-d Tensor."""
        m = self._mass(state.v)
        mm = m.unsqueeze(-1) if m.ndim else m
        return 0.5 * (mm * state.v * state.v).sum() + self.potential_energy(state.x)

    def state_shapes(self):
        return {"x": None, "v": None}

    def check_state(self, state, opname="simulate"):
        super().check_state(state, opname)
        x, v = state.x, state.v
        if x.ndim != 2:
            raise ValueError(f"{opname}: Particles needs positions x of shape [P, D], got {list(x.shape)}")
        if tuple(v.shape) != tuple(x.shape):
            raise ValueError(f"{opname}: state fields x {list(x.shape)} and v {list(v.shape)} must have "
                             "the same shape")
        if self.mass.ndim == 1 and self.mass.shape[0] != x.shape[0]:
            raise ValueError(f"{opname}: Particles has {self.mass.shape[0]} masses but the state has "
                             f"{x.shape[0]} particles (x {list(x.shape)})")
        dim = x.shape[1]
        if self.gravity is not None and self.gravity.shape[0] != dim:
            raise ValueError(f"{opname}: gravity has {self.gravity.shape[0]} components but positions are "
                             f"{dim}-dimensional (x {list(x.shape)})")
        if self.box is not None and self.box.ndim == 1 and self.box.shape[0] != dim:
            raise ValueError(f"{opname}: box has {self.box.shape[0]} lengths but positions are "
                             f"{dim}-dimensional (x {list(x.shape)})")
        if self.box is not None:
            for term in self.forces:
                rc = getattr(term, "cutoff", None)
                if rc is not None and 2 * rc > float(np.min(self.box)):
                    raise ValueError(f"{opname}: {term!r} has cutoff {rc} > half the box "
                                     f"{np.broadcast_to(self.box, (dim,)).tolist()} (minimum image)")
