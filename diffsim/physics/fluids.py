"""Stable fluids (smoke) on 2-D and 3-D grids, differentiable end to end.

``StableFluids(grid, ...)`` advances an incompressible velocity field and a passive density
(smoke) with Stam's splitting: advection (semi-Lagrangian or MacCormack, on the
differentiable multilinear sampler ``grid.sample_index``), body forces (buoyancy, vorticity
confinement, user forces), and a pressure projection (Jacobi, CG or FFT) that makes the
velocity discretely divergence free.

Layout (a MAC grid kept in one array): ``velocity [*shape, d]``, where component ``a`` of
cell ``i`` lives on the cell's upper face along axis ``a`` (position ``(i + 0.5 e_a + 0.5)
h`` in physical units, i.e. index ``i + 0.5 e_a``); ``density [*shape]`` is cell-centred.
With ``boundary="closed"`` along an axis the domain has walls there: the lower wall's face
is implicit (zero) and the last layer of that component is the upper wall (kept zero).
``obstacle`` is a boolean mask ``[*shape]`` of solid cells; faces touching one carry no
flow. The discrete divergence is ``div u = sum_a (u_a[i] - u_a[i - e_a]) / h_a`` (see
``StableFluids.divergence``); after ``project`` it is zero up to the solver tolerance.
"""
from __future__ import annotations


import numpy as np

from .. import sparse
from ..autodiff.backend import to_numpy
from ..autodiff import fft as _fft
from ..autodiff import ops as _ops
from ..autodiff.backend import get_xp
from ..autodiff.creation import as_tensor, zeros_like
from ..autodiff.function import apply, defop
from ..autodiff.tensor import Tensor
from .grid import Grid, _laplacian_eigenvalues, _neighbour_range, _trig_poisson_op, sample_index

__all__ = ["StableFluids"]

PROJECTIONS = ("jacobi", "cg", "fft")
ADVECTIONS = ("semi_lagrangian", "maccormack")


# ============================================================ Jacobi pressure solve (custom op)

def _jacobi_raw(r, open_faces, inv_h2, inv_diag, iterations, omega):
    """``iterations`` damped Jacobi sweeps for ``D F G p = r`` from ``p = 0`` (raw arrays).

    ``p <- (1 - omega) p + omega (N p - r) / diag`` with ``N`` the open-face neighbour sum. The
    map ``r -> p`` is linear and symmetric (a palindromic product of symmetric matrices), so
    its vector-Jacobian product is the same sweep applied to the incoming gradient."""
    xp = get_xp(r)
    d = r.ndim
    # neighbour weights folded with omega / diag: up[a][i] multiplies p[i + e_a], down[a][i] p[i - e_a]
    up = [omega * open_faces[a] * inv_h2[a] * inv_diag for a in range(d)]
    down = [omega * xp.roll(open_faces[a], 1, a) * inv_h2[a] * inv_diag for a in range(d)]
    rr = -omega * r * inv_diag
    p = rr.copy()
    q = xp.empty_like(p)
    tmp = xp.empty_like(p)
    full = (slice(None),) * d

    def sl(a, s):
        out = list(full)
        out[a] = s
        return tuple(out)
    for _ in range(iterations - 1):
        if omega != 1.0:
            xp.multiply(p, 1.0 - omega, out=q)
            q += rr
        else:
            q[...] = rr
        for a in range(d):
            lo, hi, first, last = sl(a, slice(None, -1)), sl(a, slice(1, None)), sl(a, slice(0, 1)), sl(a, slice(-1, None))
            # q[i] += up[i] * p[i+1]  (and the wrap-around face, zero weight for walls)
            xp.multiply(up[a][lo], p[hi], out=tmp[lo])
            q[lo] += tmp[lo]
            q[last] += up[a][last] * p[first]
            # q[i] += down[i] * p[i-1]
            xp.multiply(down[a][hi], p[lo], out=tmp[hi])
            q[hi] += tmp[hi]
            q[first] += down[a][first] * p[last]
        p, q = q, p
    return p


def _jacobi_fwd(r, open_faces, inv_h2, inv_diag, iterations, omega):
    return _jacobi_raw(r, open_faces, inv_h2, inv_diag, iterations, omega)


_jacobi_op = defop("fluids_jacobi_pressure", _jacobi_fwd)


@_jacobi_op.defvjp
def _(ns, node, g):
    from ..autodiff.function import call_op
    a = node.attrs
    return (call_op(ns, _jacobi_op, g, **a),)


# ============================================================ the solver

class StableFluids:
    """Incompressible smoke on a ``Grid`` (2-D or 3-D).

    Arguments (all optional but ``grid``):

    * ``boundary``: ``"closed"`` (solid walls, free slip) or ``"periodic"``, one for all axes
      or one per axis;
    * ``buoyancy``: a number or a 0-d Tensor ``b``; adds ``dt * b * density`` to the velocity
      along ``up_axis`` (default: the last axis);
    * ``vorticity``: vorticity-confinement strength ``epsilon`` (0: off);
    * ``projection``: ``"jacobi"`` (``iterations`` damped sweeps with ``omega``; gradient by the
      same sweeps, exact for the truncated solve), ``"cg"`` (``diffsim.sparse.cg`` to ``tol``,
      adjoint gradient) or ``"fft"`` (no obstacle; exact: FFT via ``ds.fft`` when every axis is
      periodic, a cosine transform when every axis is closed);
    * ``advection``: ``"semi_lagrangian"`` or ``"maccormack"``;
    * ``obstacle``: a boolean mask ``[*shape]`` of solid cells (or None).

    ``step(velocity [*shape, d], density [*shape], dt, forces=None, source=None)`` returns the
    new ``(velocity, density)``; ``forces`` (``[*shape, d]`` on the velocity faces, or
    broadcastable) and ``source`` (density added per unit time, ``[*shape]``) are optional.
    Gradients reach the initial fields, the forces, the sources and ``buoyancy``.
    """

    def __init__(self, grid, boundary="closed", buoyancy=0.0, up_axis=-1, vorticity=0.0, projection="jacobi",
                 iterations=80, omega=1.0, tol=None, maxiter=None, advection="semi_lagrangian", obstacle=None):
        if not isinstance(grid, Grid):
            raise TypeError(f"StableFluids: grid must be a physics.grid.Grid, got {type(grid).__name__}")
        if grid.ndim not in (2, 3):
            raise ValueError(f"StableFluids: needs a 2-D or 3-D grid, got {grid!r}")
        d = grid.ndim
        bnd = (boundary,) * d if isinstance(boundary, str) else tuple(boundary)
        if len(bnd) != d or any(b not in ("closed", "periodic") for b in bnd):
            raise ValueError(f"StableFluids: boundary must be 'closed' or 'periodic' (or one per axis), got "
                             f"{boundary!r}")
        if projection not in PROJECTIONS:
            raise ValueError(f"StableFluids: projection must be one of {PROJECTIONS}, got {projection!r}")
        if advection not in ADVECTIONS:
            raise ValueError(f"StableFluids: advection must be one of {ADVECTIONS}, got {advection!r}")
        self.grid, self.boundary = grid, bnd
        self.wrap = [b == "periodic" for b in bnd]
        self.buoyancy, self.up_axis, self.vorticity = buoyancy, up_axis % d, vorticity
        self.projection, self.iterations, self.omega = projection, int(iterations), float(omega)
        self.tol, self.maxiter, self.advection = tol, maxiter, advection
        if obstacle is not None:
            obstacle = to_numpy(obstacle._data if isinstance(obstacle, Tensor) else obstacle).astype(bool)
            if obstacle.shape != grid.shape:
                raise ValueError(f"StableFluids: obstacle mask of shape {list(obstacle.shape)} does not match the "
                                 f"grid shape {list(grid.shape)}")
        self.obstacle = obstacle
        if projection == "fft" and ((any(self.wrap) and not all(self.wrap)) or
                                    (obstacle is not None and obstacle.any())):
            raise ValueError("StableFluids: projection='fft' needs the same boundary on every axis (all "
                             "periodic: FFT; all closed: cosine transform) and no obstacle; use "
                             "projection='cg' or 'jacobi'")
        # open faces F[..., a]: 1 where fluid may cross the upper face of cell i along a
        solid = obstacle if obstacle is not None else np.zeros(grid.shape, bool)
        F = np.ones(grid.shape + (d,))
        for a in range(d):
            Fa = F[..., a]
            if not self.wrap[a]:
                Fa[(slice(None),) * a + (slice(-1, None),)] = 0
            Fa[solid | np.roll(solid, -1, a)] = 0
        self._F = F
        self._solid = solid
        inv_h2 = [1.0 / h ** 2 for h in grid.spacing]
        diag = sum((F[..., a] + np.roll(F[..., a], 1, a)) * inv_h2[a] for a in range(d))
        self._inv_diag = np.where(diag > 0, 1.0 / np.where(diag > 0, diag, 1.0), 0.0)
        self._inv_h2 = tuple(inv_h2)
        self._idx = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in grid.shape],
                                         indexing="ij"), -1)                    # [*shape, d]
        self._off = 0.5 * np.eye(d)                                             # face offsets [d, d]
        self._const = {}

    # ---- constants in the fields' dtype / device
    def _c(self, name, like):
        key = (name, str(like.dtype), str(like.device))
        if key not in self._const:
            arr = {"F": self._F, "idx": self._idx, "off": self._off, "inv_diag": self._inv_diag,
                   "inv_h": np.asarray([1.0 / h for h in self.grid.spacing]),
                   "fluid": (~self._solid).astype(np.float64), "solid": self._solid.astype(np.float64)}[name]
            self._const[key] = as_tensor(arr, dtype=like.dtype, device=like.device)
        return self._const[key]

    def _check(self, velocity, density, opname):
        g = self.grid
        g.check_vector(velocity, opname + " (velocity)")
        if density is not None:
            g.check_scalar(density, opname + " (density)")

    # ---- discrete operators on the MAC layout
    def divergence(self, velocity):
        """Discrete divergence of the face velocity (walls and obstacles closed): ``[*shape, d] ->
        [*shape]``."""
        self._check(velocity, None, "StableFluids.divergence")
        u = velocity * self._c("F", velocity)
        out = None
        for a in range(self.grid.ndim):
            ua = u[..., a]
            t = (ua - _ops.roll(ua, 1, a)) * (1.0 / self.grid.spacing[a])
            out = t if out is None else out + t
        return out

    def _pressure_gradient(self, p):
        comps = [(_ops.roll(p, -1, a) - p) * (1.0 / self.grid.spacing[a]) for a in range(self.grid.ndim)]
        return _ops.stack(comps, -1)

    def _apply_A(self, p):
        """``D F G p`` (negative semi-definite), ``[*shape] -> [*shape]``."""
        return self.divergence(self._pressure_gradient(p))

    def pressure(self, div):
        """Solve ``D F G p = div`` with the configured method: ``[*shape] -> [*shape]``."""
        g = self.grid
        if self.projection == "fft" and not all(self.wrap):     # closed box: the Neumann Laplacian, DCT-II
            return apply(_trig_poisson_op, (div,), {"grid": g, "bcs": ("neumann",) * g.ndim})
        if self.projection == "fft":
            lam = _laplacian_eigenvalues(g)
            inv = np.zeros_like(lam)
            np.divide(1.0, lam, out=inv, where=lam != 0)
            inv = as_tensor(inv[..., None], dtype=div.dtype, device=div.device)
            return _fft.irfftn(_fft.rfftn(div) * inv, s=g.shape)
        if self.projection == "jacobi":
            xp = get_xp(div._data)
            F = xp.asarray(self._F.astype(div._data.dtype))
            attrs = {"open_faces": tuple(F[..., a] for a in range(g.ndim)), "inv_h2": self._inv_h2,
                     "inv_diag": xp.asarray(self._inv_diag.astype(div._data.dtype)),
                     "iterations": self.iterations, "omega": self.omega}
            return apply(_jacobi_op, (div,), attrs)
        fluid, solid = self._c("fluid", div), self._c("solid", div)
        n_fluid = max(float((~self._solid).sum()), 1.0)

        def matvec(x):
            X = x.reshape(g.shape)
            y = -self._apply_A(X) + solid * X + fluid * ((X * fluid).sum() / n_fluid)
            return y.reshape(-1)
        tol = self.tol if self.tol is not None else (1e-10 if div._data.dtype == np.float64 else 1e-5)
        return sparse.cg(matvec, -div.reshape(-1), tol=tol, maxiter=self.maxiter).reshape(g.shape)

    def project(self, velocity):
        """Pressure projection: ``velocity [*shape, d] -> (divergence-free velocity [*shape, d],
        pressure [*shape])``."""
        self._check(velocity, None, "StableFluids.project")
        p = self.pressure(self.divergence(velocity))
        return (velocity - self._pressure_gradient(p)) * self._c("F", velocity), p

    # ---- sampling helpers
    def velocity_at(self, velocity, points):
        """Velocity at index-space points ``[*P, d]`` (cell ``i`` centred at ``i``) -> ``[*P, d]``."""
        off = self._c("off", velocity)
        pos = points.unsqueeze(-2) - off                  # [*P, d(component), d]
        return sample_index(velocity, pos, self.wrap)

    def _advect_density(self, q, velocity, dt):
        idx = self._c("idx", q)
        vel = self.velocity_at(velocity, idx)
        pos = (idx - vel * (dt * self._c("inv_h", q))).unsqueeze(-2)      # [*shape, 1, d]
        return sample_index(q.unsqueeze(-1), pos, self.wrap).squeeze(-1), pos

    def _advect_velocity(self, u, velocity, dt):
        idx, off = self._c("idx", u), self._c("off", u)
        faces = idx.unsqueeze(-2) + off                   # [*shape, d(a), d]: face a of each cell
        vel = self.velocity_at(velocity, faces)           # [*shape, d(a), d(b)]
        pos = faces - vel * (dt * self._c("inv_h", u)) - off
        return sample_index(u, pos, self.wrap), pos

    def _advect(self, q, velocity, dt, is_velocity):
        adv = self._advect_velocity if is_velocity else self._advect_density
        q1, pos = adv(q, velocity, dt)
        if self.advection == "semi_lagrangian":
            return q1
        q0, _ = adv(q1, velocity, -dt)
        corrected = q1 + 0.5 * (q - q0)
        if is_velocity:
            lo, hi = _neighbour_range(q._data, pos._data, self.wrap, scalar=False)
        else:
            lo, hi = _neighbour_range(q._data[..., None], pos._data, self.wrap, scalar=False)
            lo, hi = lo[..., 0], hi[..., 0]
        ok = (corrected._data >= lo) & (corrected._data <= hi)
        return _ops.where(as_tensor(ok, device=q.device), corrected, q1)

    # ---- forces
    def _centred(self, velocity):
        """Face velocity averaged to cell centres, ``[*shape, d]``."""
        u = velocity * self._c("F", velocity)
        return _ops.stack([0.5 * (u[..., a] + _ops.roll(u[..., a], 1, a)) for a in range(self.grid.ndim)], -1)

    def _to_faces(self, f):
        """A cell-centred vector field ``[*shape, d]`` averaged to the faces."""
        return _ops.stack([0.5 * (f[..., a] + _ops.roll(f[..., a], -1, a)) for a in range(self.grid.ndim)], -1)

    def _vorticity_force(self, velocity):
        from .grid import curl, gradient
        g = self.grid
        bc = tuple("periodic" if w else "neumann" for w in self.wrap)
        uc = self._centred(velocity)
        w = curl(uc, g, bc)
        mag = (w * w + 1e-12).sqrt() if g.ndim == 2 else ((w * w).sum(-1) + 1e-12).sqrt()
        gm = gradient(mag, g, bc)
        N = gm / ((gm * gm).sum(-1, keepdim=True) + 1e-12).sqrt()
        h = min(g.spacing)
        if g.ndim == 2:
            f = _ops.stack([N[..., 1] * w, -N[..., 0] * w], -1)
        else:
            f = _ops.stack([N[..., 1] * w[..., 2] - N[..., 2] * w[..., 1],
                            N[..., 2] * w[..., 0] - N[..., 0] * w[..., 2],
                            N[..., 0] * w[..., 1] - N[..., 1] * w[..., 0]], -1)
        return self._to_faces(f * (self.vorticity * h))

    def _buoyancy_force(self, density):
        a = self.up_axis
        rho_face = 0.5 * (density + _ops.roll(density, -1, a))
        zeros = zeros_like(density)
        comps = [rho_face * self.buoyancy if b == a else zeros for b in range(self.grid.ndim)]
        return _ops.stack(comps, -1)

    # ---- the step
    def step(self, velocity, density, dt, forces=None, source=None):
        """One time step: ``(velocity [*shape, d], density [*shape]) -> (velocity, density)``."""
        self._check(velocity, density, "StableFluids.step")
        if not dt > 0:
            raise ValueError(f"StableFluids.step: dt must be positive, got {dt}")
        density = self._advect(density, velocity, dt, False)
        if source is not None:
            density = density + dt * source
        u = self._advect(velocity, velocity, dt, True)
        acc = None
        if isinstance(self.buoyancy, Tensor) or self.buoyancy:
            acc = self._buoyancy_force(density)
        if self.vorticity:
            fv = self._vorticity_force(u)
            acc = fv if acc is None else acc + fv
        if forces is not None:
            acc = forces if acc is None else acc + forces
        if acc is not None:
            u = u + dt * acc
        u, _ = self.project(u)
        return u, density

    def rollout(self, velocity, density, dt, steps, forces=None, sources=None, checkpoint=False):
        """``steps`` steps; ``forces``/``sources``: None, one field for every step, or a list per step.
        ``checkpoint=True`` recomputes each step in the backward pass (``ds.checkpoint``) instead
        of storing its graph. Returns the final ``(velocity, density)``."""
        from ..autodiff.checkpoint import checkpoint as _ckpt

        def pick(x, i):
            return x[i] if isinstance(x, (list, tuple)) else x
        for i in range(steps):
            f, s = pick(forces, i), pick(sources, i)
            if checkpoint:
                args = [velocity, density] + [t for t in (f, s) if t is not None]
                has_f, has_s = f is not None, s is not None

                def fn(v, d, *rest, _hf=has_f, _hs=has_s):
                    rest = list(rest)
                    ff = rest.pop(0) if _hf else None
                    ss = rest.pop(0) if _hs else None
                    return self.step(v, d, dt, ff, ss)
                velocity, density = _ckpt(fn, *args)
            else:
                velocity, density = self.step(velocity, density, dt, f, s)
        return velocity, density

    def zeros(self, dtype=None, device=None):
        """Zero ``(velocity [*shape, d], density [*shape])``."""
        from ..autodiff import float32
        from ..autodiff.creation import zeros
        g = self.grid
        return (zeros(*g.shape, g.ndim, dtype=dtype or float32, device=device),
                zeros(*g.shape, dtype=dtype or float32, device=device))
