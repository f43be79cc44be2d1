"""Fields on regular grids: finite-difference operators and PDE steppers, all differentiable.

A ``Grid(shape, spacing, origin)`` is cell-centred: ``shape = (n_0, ..., n_{d-1})`` cells
(d = 1, 2 or 3) of size ``spacing`` covering ``[origin, origin + shape * spacing]``; cell
``i`` sits at ``origin + (i + 0.5) * spacing``. A scalar field is a Tensor ``[*shape]``, a
vector field ``[*shape, d]`` (components last); operators that act per component also take
``[*shape, C]``.

Boundary conditions (``bc``: one name, or one per axis) live on the faces of the domain and
are imposed with one ghost layer built by slicing and concatenation (no loops over cells):

* ``"dirichlet"``: the field equals ``value`` on the boundary face (ghost ``2 value - u``),
* ``"neumann"``: zero normal flux (ghost ``u``),
* ``"periodic"``: the grid wraps around.

Operators: ``gradient``, ``divergence``, ``laplacian`` (optionally ``div(k grad u)`` with a
spatially varying conductivity ``k``), ``curl``; ``laplacian_matrix`` assembles the same
operator as a ``diffsim.sparse`` matrix whose values are differentiable in ``k``.

Steppers: ``heat_step`` / ``HeatEquation`` (explicit FTCS with a stability check, backward
Euler and Crank-Nicolson through ``sparse.solve``), ``wave_step`` (leapfrog), ``advect``
(upwind, semi-Lagrangian, MacCormack), ``advection_diffusion_step``, and ``poisson``
(FFT, sparse direct, matrix-free CG or Jacobi). ``sample`` interpolates a field at arbitrary
points (multilinear, one custom op with a hand-written backward w.r.t. both the field and
the points: the autodiff layer's ``ds.sample_grid``); semi-Lagrangian advection is built on it.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import sparse
from ..autodiff import fft as _fft
from ..autodiff.backend import get_xp
from ..autodiff.creation import as_tensor, zeros_like
from ..autodiff.function import apply, defop
from ..autodiff.ops.sampling import _corners, sample_grid
from ..autodiff.tensor import Tensor
from ..autodiff import ops as _ops

__all__ = ["Grid", "BOUNDARY_CONDITIONS", "gradient", "divergence", "laplacian", "curl", "laplacian_matrix",
           "sample", "heat_step", "HeatEquation", "explicit_stability_limit", "wave_step", "advect",
           "advection_diffusion_step", "poisson"]

BOUNDARY_CONDITIONS = ("dirichlet", "neumann", "periodic")


# ============================================================================ the grid

class Grid:
    """A regular, cell-centred 1-, 2- or 3-D grid.

    ``shape``: cells per axis ``(n_0, ..., n_{d-1})``; ``spacing``: cell size ``h`` (a number or
    one per axis); ``origin``: the lower corner of the domain (a number or one per axis).
    Cell ``i`` is centred at ``origin + (i + 0.5) * spacing``.
    """

    def __init__(self, shape, spacing=1.0, origin=0.0):
        if isinstance(shape, numbers.Integral):
            shape = (int(shape),)
        shape = tuple(int(n) for n in shape)
        if not 1 <= len(shape) <= 3 or any(n < 1 for n in shape):
            raise ValueError(f"Grid: shape must have 1 to 3 positive sizes, got {shape}")
        self.shape = shape
        self.spacing = self._per_axis(spacing, "spacing")
        self.origin = self._per_axis(origin, "origin", positive=False)

    def _per_axis(self, v, name, positive=True):
        d = len(self.shape)
        v = (float(v),) * d if isinstance(v, numbers.Real) else tuple(float(x) for x in v)
        if len(v) != d:
            raise ValueError(f"Grid: {name} needs 1 or {d} values for a {d}-D grid, got {len(v)}")
        if positive and any(not x > 0 for x in v):
            raise ValueError(f"Grid: {name} must be positive, got {v}")
        return v

    @property
    def ndim(self):
        """Number of spatial dimensions d."""
        return len(self.shape)

    @property
    def numel(self):
        """Number of cells."""
        return math.prod(self.shape)

    @property
    def extent(self):
        """Domain size per axis, ``shape * spacing``."""
        return tuple(n * h for n, h in zip(self.shape, self.spacing))

    @property
    def cell_volume(self):
        return math.prod(self.spacing)

    def axes(self, dtype=None, device=None):
        """Cell-centre coordinates per axis: a list of d Tensors ``[n_a]``."""
        from ..autodiff import float64
        return [as_tensor(o + (np.arange(n) + 0.5) * h, dtype=dtype or float64, device=device)
                for n, h, o in zip(self.shape, self.spacing, self.origin)]

    def centers(self, dtype=None, device=None):
        """Cell-centre coordinates ``[*shape, d]``."""
        from ..autodiff import float64
        mesh = np.meshgrid(*[o + (np.arange(n) + 0.5) * h for n, h, o in
                             zip(self.shape, self.spacing, self.origin)], indexing="ij")
        return as_tensor(np.stack(mesh, -1), dtype=dtype or float64, device=device)

    def __eq__(self, other):
        return (isinstance(other, Grid) and self.shape == other.shape and self.spacing == other.spacing
                and self.origin == other.origin)

    def __hash__(self):
        return hash((self.shape, self.spacing, self.origin))

    def __repr__(self):
        return f"Grid(shape={self.shape}, spacing={self.spacing}, origin={self.origin})"

    # ---- checks
    def check_scalar(self, u, opname, allow_channels=False):
        """Raise unless ``u`` is a Tensor ``[*shape]`` (or ``[*shape, C]`` if allowed)."""
        if not isinstance(u, Tensor):
            raise TypeError(f"{opname}: expected a Tensor field, got {type(u).__name__}")
        s = tuple(u.shape)
        if s == self.shape or (allow_channels and len(s) == self.ndim + 1 and s[:-1] == self.shape):
            return
        want = f"{list(self.shape)}" + (f" or {list(self.shape) + ['C']}" if allow_channels else "")
        raise ValueError(f"{opname}: field of shape {list(s)} does not match the grid: expected {want} "
                         f"for {self!r}")

    def check_vector(self, v, opname):
        """Raise unless ``v`` is a Tensor ``[*shape, d]``."""
        if not isinstance(v, Tensor):
            raise TypeError(f"{opname}: expected a Tensor vector field, got {type(v).__name__}")
        want = self.shape + (self.ndim,)
        if tuple(v.shape) != want:
            raise ValueError(f"{opname}: vector field of shape {list(v.shape)} does not match the grid: "
                             f"expected {list(want)} (components last) for {self!r}")


def _bcs(bc, grid, opname):
    bcs = (bc,) * grid.ndim if isinstance(bc, str) else tuple(bc)
    if len(bcs) != grid.ndim:
        raise ValueError(f"{opname}: bc needs 1 or {grid.ndim} entries for a {grid.ndim}-D grid, got {bc!r}")
    for b in bcs:
        if b not in BOUNDARY_CONDITIONS:
            raise ValueError(f"{opname}: unknown boundary condition {b!r}; use one of {BOUNDARY_CONDITIONS}")
    return bcs


# ============================================================================ stencils

def _sl(u, axis, start, stop):
    return u[(slice(None),) * axis + (slice(start, stop),)]


def _pad(u, axis, bc, value=0.0):
    """One ghost layer on each side of ``axis``."""
    lo, hi = _sl(u, axis, 0, 1), _sl(u, axis, -1, None)
    if bc == "periodic":
        glo, ghi = hi, lo
    elif bc == "neumann":
        glo, ghi = lo, hi
    else:
        glo, ghi = 2 * value - lo, 2 * value - hi
    return _ops.cat([glo, u, ghi], dim=axis)


def _diff(u, axis, h, bc, value, scheme):
    P = _pad(u, axis, bc, value)
    if scheme == "central":
        return (_sl(P, axis, 2, None) - _sl(P, axis, None, -2)) * (0.5 / h)
    if scheme == "forward":
        return (_sl(P, axis, 2, None) - _sl(P, axis, 1, -1)) * (1.0 / h)
    if scheme == "backward":
        return (_sl(P, axis, 1, -1) - _sl(P, axis, None, -2)) * (1.0 / h)
    raise ValueError(f"unknown difference scheme {scheme!r}; use 'central', 'forward' or 'backward'")


def gradient(u, grid, bc="neumann", value=0.0, scheme="central"):
    """Finite-difference gradient: ``u [*shape] -> [*shape, d]``.

    ``scheme``: ``"central"`` (second order), ``"forward"`` or ``"backward"`` (first order;
    ``divergence(gradient(u, scheme="forward"), scheme="backward") == laplacian(u)``)."""
    grid.check_scalar(u, "grid.gradient")
    bcs = _bcs(bc, grid, "grid.gradient")
    return _ops.stack([_diff(u, a, grid.spacing[a], bcs[a], value, scheme) for a in range(grid.ndim)], -1)


def divergence(v, grid, bc="neumann", value=0.0, scheme="central"):
    """Finite-difference divergence: ``v [*shape, d] -> [*shape]`` (``bc`` applies to each
    component along its own axis; ``"dirichlet"`` with value 0 is a no-penetration wall)."""
    grid.check_vector(v, "grid.divergence")
    bcs = _bcs(bc, grid, "grid.divergence")
    out = None
    for a in range(grid.ndim):
        t = _diff(v[..., a], a, grid.spacing[a], bcs[a], value, scheme)
        out = t if out is None else out + t
    return out


def _face_conductivity(k, axis, bc):
    """Conductivity on the n + 1 faces along ``axis`` (arithmetic mean of the two cells)."""
    K = _pad(k, axis, "periodic" if bc == "periodic" else "neumann")
    return 0.5 * (_sl(K, axis, 1, None) + _sl(K, axis, None, -1))


def laplacian(u, grid, bc="neumann", value=0.0, conductivity=None):
    """Five/seven-point Laplacian ``u [*shape] or [*shape, C] -> same shape``; with
    ``conductivity`` (a Tensor ``[*shape]``, e.g. a spatially varying diffusivity) the flux
    form ``div(k grad u)`` with face values ``(k_i + k_{i+1}) / 2``."""
    grid.check_scalar(u, "grid.laplacian", allow_channels=True)
    bcs = _bcs(bc, grid, "grid.laplacian")
    if conductivity is not None:
        grid.check_scalar(conductivity, "grid.laplacian (conductivity)")
        if u.ndim > grid.ndim:
            conductivity = conductivity.unsqueeze(-1)
    out = None
    for a in range(grid.ndim):
        h = grid.spacing[a]
        P = _pad(u, a, bcs[a], value)
        if conductivity is None:
            t = (_sl(P, a, 2, None) - 2 * _sl(P, a, 1, -1) + _sl(P, a, None, -2)) * (1.0 / h ** 2)
        else:
            flux = _face_conductivity(conductivity, a, bcs[a]) * (_sl(P, a, 1, None) - _sl(P, a, None, -1))
            t = (_sl(flux, a, 1, None) - _sl(flux, a, None, -1)) * (1.0 / h ** 2)
        out = t if out is None else out + t
    return out


def curl(v, grid, bc="neumann", value=0.0):
    """Curl by central differences: 2-D ``v [*shape, 2] -> [*shape]`` (``dv_y/dx - dv_x/dy``),
    3-D ``v [*shape, 3] -> [*shape, 3]``."""
    grid.check_vector(v, "grid.curl")
    if grid.ndim not in (2, 3):
        raise ValueError(f"grid.curl: needs a 2-D or 3-D grid, got {grid!r}")
    bcs = _bcs(bc, grid, "grid.curl")

    def D(comp, axis):
        return _diff(v[..., comp], axis, grid.spacing[axis], bcs[axis], value, "central")
    if grid.ndim == 2:
        return D(1, 0) - D(0, 1)
    return _ops.stack([D(2, 1) - D(1, 2), D(0, 2) - D(2, 0), D(1, 0) - D(0, 1)], -1)


def laplacian_matrix(grid, bc="neumann", conductivity=None, dtype=None, device=None, _pin=False):
    """The operator of ``laplacian(u, grid, bc, 0, conductivity)`` as a ``diffsim.sparse``
    CSR matrix ``[N, N]`` (N = cells, C order), so ``laplacian(u) == (L @ u.reshape(-1)) + b``
    with ``b = laplacian(zeros, grid, bc, value, conductivity)`` carrying a Dirichlet value.
    The values are differentiable w.r.t. ``conductivity [*shape]``."""
    bcs = _bcs(bc, grid, "grid.laplacian_matrix")
    from ..autodiff import float64
    if conductivity is None:
        conductivity = as_tensor(np.ones(grid.shape), dtype=dtype or float64, device=device)
    else:
        grid.check_scalar(conductivity, "grid.laplacian_matrix (conductivity)")
    idx = np.arange(grid.numel).reshape(grid.shape)
    rows, cols, vals = [], [], []
    for a in range(grid.ndim):
        n, h = grid.shape[a], grid.spacing[a]
        kf = _face_conductivity(conductivity, a, bcs[a]) * (1.0 / h ** 2)     # faces 0..n
        if n > 1:
            w = _sl(kf, a, 1, -1).reshape(-1)
            L, R = _sl(idx, a, 0, -1).reshape(-1), _sl(idx, a, 1, None).reshape(-1)
            rows += [L, R, L, R]
            cols += [L, R, R, L]
            vals += [-w, -w, w, w]
        if bcs[a] == "periodic" and n > 1:
            w = _sl(kf, a, 0, 1).reshape(-1)
            L, R = _sl(idx, a, -1, None).reshape(-1), _sl(idx, a, 0, 1).reshape(-1)
            rows += [L, R, L, R]
            cols += [L, R, R, L]
            vals += [-w, -w, w, w]
        elif bcs[a] == "dirichlet":
            for face, cells in ((_sl(kf, a, 0, 1), _sl(idx, a, 0, 1)), (_sl(kf, a, -1, None), _sl(idx, a, -1, None))):
                c = cells.reshape(-1)
                rows.append(c)
                cols.append(c)
                vals.append(-2 * face.reshape(-1))
    if not rows:    # a single cell with periodic / Neumann boundaries: the zero operator
        rows, cols = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)]
        vals = [conductivity.reshape(-1) * 0.0]
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    values = _ops.cat(vals)
    if _pin:        # singular (periodic / Neumann) operator: replace row and column 0 by the identity
        keep = np.nonzero((rows != 0) & (cols != 0))[0]
        rows, cols = np.concatenate([rows[keep], [0]]), np.concatenate([cols[keep], [0]])
        values = _ops.cat([values[keep], as_tensor(np.ones(1), dtype=values.dtype, device=values.device)])
    xp = get_xp(values._data)
    return sparse.assemble(xp.asarray(rows), xp.asarray(cols), values, (grid.numel, grid.numel))


# ============================================================================ sampling
# one op in the autodiff layer (``ds.sample_grid``); these are thin wrappers over it


def _modes(wrap):
    return tuple("wrap" if w else "clamp" for w in wrap)


def sample_index(field, positions, wrap):
    """Multilinear interpolation in index space, one position per output channel.

    ``field [*S, C]``, ``positions [*P, C, d]`` (channel ``c`` is read at ``positions[..., c, :]``,
    in units of cells with cell ``j`` at ``j``) -> ``[*P, C]``. ``wrap``: per axis, True to wrap
    periodically, False to clamp to the edge cells. Differentiable w.r.t. the field and the
    positions (hand-written backward; double backward through a composite formulation)."""
    return sample_grid(field, positions, _modes(wrap), channelwise=True)


def sample(field, points, grid, bc="neumann"):
    """Interpolate a grid field at arbitrary points (multilinear: linear, bilinear, trilinear).

    ``field [*shape]`` or ``[*shape, C]``; ``points [*P, d]`` in physical coordinates ->
    ``[*P]`` or ``[*P, C]``. Outside the grid the field is clamped to its edge cells
    (``bc`` "neumann"/"dirichlet") or wrapped (``"periodic"``). Differentiable w.r.t. the
    field and the points."""
    grid.check_scalar(field, "grid.sample", allow_channels=True)
    bcs = _bcs(bc, grid, "grid.sample")
    d = grid.ndim
    if points.shape[-1] != d:
        raise ValueError(f"grid.sample: points must be [*P, {d}] for a {d}-D grid, got {list(points.shape)}")
    org = as_tensor(np.asarray(grid.origin), dtype=points.dtype, device=points.device)
    hh = as_tensor(np.asarray(grid.spacing), dtype=points.dtype, device=points.device)
    idx = (points - org) / hh - 0.5
    return sample_grid(field, idx, _modes([b == "periodic" for b in bcs]))


# ============================================================================ heat

def _max_value(k):
    if k is None:
        return 1.0
    if isinstance(k, Tensor):
        return float(get_xp(k._data).max(k._data))
    return float(k)


def explicit_stability_limit(grid, diffusivity=1.0):
    """Largest stable FTCS time step ``1 / (2 D sum_a 1/h_a^2)`` (``h^2 / (2 D d)`` on a square
    grid); ``diffusivity`` a number or a Tensor (its maximum is used)."""
    D = _max_value(diffusivity)
    if D < 0:
        raise ValueError(f"explicit_stability_limit: diffusivity must be non-negative, got max {D}")
    return math.inf if D == 0 else 1.0 / (2 * D * sum(1.0 / h ** 2 for h in grid.spacing))


def _conductivity(diffusivity, grid, u, opname):
    if isinstance(diffusivity, Tensor):
        if diffusivity.ndim == 0:
            return None, diffusivity
        grid.check_scalar(diffusivity, f"{opname} (diffusivity)")
        return diffusivity, 1.0
    return None, float(diffusivity)


HEAT_METHODS = ("explicit", "backward_euler", "crank_nicolson")


class HeatEquation:
    """``du/dt = div(k grad u) + source`` on a grid.

    ``diffusivity``: a number, a 0-d Tensor or a Tensor ``[*shape]`` (spatially varying
    conductivity ``k``; any of them may require grad). ``bc``/``value``: boundary conditions
    (see the module docstring). ``method``: ``"explicit"`` (FTCS; raises above the stability
    limit), ``"backward_euler"`` or ``"crank_nicolson"`` (one ``diffsim.sparse.solve`` per
    step with the matrix ``I - theta dt L(k)``; ``solver`` is its ``method``: ``"direct"`` or
    ``"cg"``). Gradients reach the initial field, ``k`` and the source.
    """

    def __init__(self, grid, diffusivity=1.0, bc="dirichlet", value=0.0, method="crank_nicolson",
                 solver="direct"):
        if method not in HEAT_METHODS:
            raise ValueError(f"HeatEquation: method must be one of {HEAT_METHODS}, got {method!r}")
        self.grid, self.diffusivity, self.bc, self.value = grid, diffusivity, bc, value
        self.method, self.solver = method, solver
        _bcs(bc, grid, "HeatEquation")

    def rhs(self, u):
        """``div(k grad u)`` : ``[*shape] -> [*shape]``."""
        k, s = _conductivity(self.diffusivity, self.grid, u, "HeatEquation")
        lap = laplacian(u, self.grid, self.bc, self.value, conductivity=k)
        return lap if k is not None else lap * s

    def _matrix(self, dt, theta, u):
        k, s = _conductivity(self.diffusivity, self.grid, u, "HeatEquation")
        L = laplacian_matrix(self.grid, self.bc, conductivity=k, dtype=u.dtype, device=u.device)
        n = self.grid.numel
        eye = sparse.assemble(np.arange(n), np.arange(n),
                              as_tensor(np.ones(n), dtype=u.dtype, device=u.device), (n, n))
        return eye - L * (s * (theta * dt))

    def _boundary(self, u):
        if self.value == 0 or all(b != "dirichlet" for b in _bcs(self.bc, self.grid, "HeatEquation")):
            return None
        return self.rhs(zeros_like(u))

    def step(self, u, dt, source=None, _A=None):
        """One step: ``u [*shape] -> [*shape]`` (``source`` ``[*shape]`` or None)."""
        self.grid.check_scalar(u, "HeatEquation.step")
        if not dt > 0:
            raise ValueError(f"HeatEquation.step: dt must be positive, got {dt}")
        if self.method == "explicit":
            limit = explicit_stability_limit(self.grid, self.diffusivity)
            if dt > limit * (1 + 1e-12):
                raise ValueError(f"HeatEquation.step: explicit (FTCS) step dt={dt:g} is above the stability "
                                 f"limit dt <= h^2/(2 D d) = {limit:g} for {self.grid!r} and max diffusivity "
                                 f"{_max_value(self.diffusivity):g}; reduce dt or use method='backward_euler' "
                                 "or 'crank_nicolson'")
            out = u + dt * self.rhs(u)
            return out if source is None else out + dt * source
        theta = 1.0 if self.method == "backward_euler" else 0.5
        A = _A if _A is not None else self._matrix(dt, theta, u)
        b = u if theta == 1.0 else u + ((1 - theta) * dt) * self.rhs(u)
        bnd = self._boundary(u)
        if bnd is not None:
            b = b + (theta * dt) * bnd
        if source is not None:
            b = b + dt * source
        x = sparse.solve(A, b.reshape(-1), method=self.solver)
        return x.reshape(self.grid.shape)

    def rollout(self, u0, dt, steps, sources=None, trajectory=False):
        """``steps`` steps from ``u0 [*shape]``; returns the final field ``[*shape]``, or with
        ``trajectory=True`` the list of the ``steps`` fields after each step. The implicit matrix
        is assembled once. ``sources``: None or a list of ``steps`` fields."""
        A = None
        if self.method != "explicit":
            A = self._matrix(dt, 1.0 if self.method == "backward_euler" else 0.5, u0)
        u, out = u0, []
        for i in range(steps):
            u = self.step(u, dt, None if sources is None else sources[i], _A=A)
            if trajectory:
                out.append(u)
        return out if trajectory else u


def heat_step(u, grid, dt, diffusivity=1.0, method="explicit", bc="dirichlet", value=0.0, source=None,
              solver="direct"):
    """One step of ``du/dt = div(k grad u) + source``: ``u [*shape] -> [*shape]``. See
    ``HeatEquation`` for the arguments; ``method="explicit"`` raises ValueError above
    ``dt = h^2 / (2 D d)``."""
    return HeatEquation(grid, diffusivity, bc, value, method, solver).step(u, dt, source)


# ============================================================================ waves, advection

def wave_step(u, u_prev, grid, dt, speed=1.0, bc="dirichlet", value=0.0, damping=0.0):
    """Leapfrog step of ``u_tt = c^2 lap u - damping u_t``: ``(u [*shape], u_prev [*shape]) ->
    u_next [*shape]``. ``speed``: a number or a Tensor (0-d or ``[*shape]``). Raises above
    the CFL limit ``c dt sqrt(sum 1/h^2) <= 1``."""
    grid.check_scalar(u, "grid.wave_step")
    grid.check_scalar(u_prev, "grid.wave_step (u_prev)")
    c = _max_value(speed)
    cfl = c * dt * math.sqrt(sum(1.0 / h ** 2 for h in grid.spacing))
    if cfl > 1 + 1e-12:
        raise ValueError(f"grid.wave_step: CFL number c dt sqrt(sum 1/h^2) = {cfl:.3g} > 1 (c={c:g}, dt={dt:g}) "
                         f"for {grid!r}; reduce dt")
    acc = laplacian(u, grid, bc, value) * (speed * speed if isinstance(speed, Tensor) else speed ** 2)
    if damping:
        a = 0.5 * damping * dt
        return (2 * u - (1 - a) * u_prev + dt * dt * acc) / (1 + a)
    return 2 * u - u_prev + (dt * dt) * acc


ADVECTION_METHODS = ("upwind", "semi_lagrangian", "maccormack")


def _backtrace_positions(velocity, grid, dt, C):
    """Departure points of the cell centres in index space, ``[*shape, C, d]``."""
    d = grid.ndim
    idx = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in grid.shape], indexing="ij"), -1)
    inv_h = as_tensor(np.asarray([dt / h for h in grid.spacing]), dtype=velocity.dtype, device=velocity.device)
    pos = as_tensor(idx, dtype=velocity.dtype, device=velocity.device) - velocity * inv_h
    return pos.unsqueeze(-2).expand(*grid.shape, C, d)


def _semi_lagrangian(q, pos, wrap):
    scalar = q.ndim == pos.ndim - 2
    f = q.unsqueeze(-1) if scalar else q
    out = sample_index(f, pos, wrap)
    return out.squeeze(-1) if scalar else out


def advect(q, velocity, grid, dt, method="semi_lagrangian", bc="neumann", value=0.0):
    """Transport ``q [*shape] or [*shape, C]`` by the cell-centred ``velocity [*shape, d]`` over
    ``dt``: ``"upwind"`` (first order, raises above CFL 1), ``"semi_lagrangian"`` (backtrace
    and multilinear sampling; unconditionally stable) or ``"maccormack"`` (forward/backward
    semi-Lagrangian with error correction, reverting to semi-Lagrangian where the corrected
    value leaves the range of the interpolated neighbours). Differentiable w.r.t. ``q`` and
    ``velocity``."""
    grid.check_scalar(q, "grid.advect", allow_channels=True)
    grid.check_vector(velocity, "grid.advect (velocity)")
    bcs = _bcs(bc, grid, "grid.advect")
    if method not in ADVECTION_METHODS:
        raise ValueError(f"grid.advect: method must be one of {ADVECTION_METHODS}, got {method!r}")
    if method == "upwind":
        vmax = get_xp(velocity._data).abs(velocity._data).reshape(-1, grid.ndim).max(0) if grid.numel else 0
        cfl = float(sum(float(vmax[a]) * dt / grid.spacing[a] for a in range(grid.ndim)))
        if cfl > 1 + 1e-12:
            raise ValueError(f"grid.advect: upwind CFL number sum |v| dt / h = {cfl:.3g} > 1; reduce dt or use "
                             "method='semi_lagrangian'")
        out = q
        for a in range(grid.ndim):
            va = velocity[..., a]
            if q.ndim > grid.ndim:
                va = va.unsqueeze(-1)
            back = _diff(q, a, grid.spacing[a], bcs[a], value, "backward")
            fwd = _diff(q, a, grid.spacing[a], bcs[a], value, "forward")
            out = out - dt * (_ops.clamp(va, min=0) * back + _ops.clamp(va, max=0) * fwd)
        return out
    wrap = [b == "periodic" for b in bcs]
    C = 1 if q.ndim == grid.ndim else q.shape[-1]
    pos = _backtrace_positions(velocity, grid, dt, C)
    q1 = _semi_lagrangian(q, pos, wrap)
    if method == "semi_lagrangian":
        return q1
    pos_b = _backtrace_positions(velocity, grid, -dt, C)
    q0 = _semi_lagrangian(q1, pos_b, wrap)
    corrected = q1 + 0.5 * (q - q0)
    lo, hi = _neighbour_range(q._data, pos._data, wrap, scalar=q.ndim == grid.ndim)
    ok = (corrected._data >= lo) & (corrected._data <= hi)
    return _ops.where(as_tensor(ok, device=q.device), corrected, q1)


def _neighbour_range(q, pos, wrap, scalar):
    """Min and max of ``q`` over the interpolation corners of ``pos`` (raw arrays, constants)."""
    xp = get_xp(q)
    f = q[..., None] if scalar else q
    S, C = f.shape[:-1], f.shape[-1]
    p = pos.reshape(-1, len(S))
    flat = _corners(xp, p, S, _modes(wrap), C)[0]
    table = f.reshape(-1)
    vals = xp.stack([table[fl] for fl in flat])
    shape = pos.shape[:-2] if scalar else pos.shape[:-1]
    return vals.min(0).reshape(shape), vals.max(0).reshape(shape)


def advection_diffusion_step(q, velocity, grid, dt, diffusivity=0.0, method="semi_lagrangian", bc="neumann",
                             value=0.0):
    """``dq/dt + v . grad q = D lap q`` by operator splitting: ``advect`` then one explicit
    diffusion step (raises above the diffusion stability limit). ``q [*shape] -> [*shape]``."""
    q = advect(q, velocity, grid, dt, method, bc, value)
    if isinstance(diffusivity, Tensor) or diffusivity:
        limit = explicit_stability_limit(grid, diffusivity)
        if dt > limit * (1 + 1e-12):
            raise ValueError(f"grid.advection_diffusion_step: diffusion step dt={dt:g} is above the explicit "
                             f"stability limit {limit:g}; reduce dt")
        k, s = _conductivity(diffusivity, grid, q, "grid.advection_diffusion_step")
        lap = laplacian(q, grid, bc, value, conductivity=k)
        q = q + dt * (lap if k is not None else lap * s)
    return q


# ============================================================================ Poisson

POISSON_METHODS = ("fft", "direct", "cg", "jacobi")


def _laplacian_eigenvalues(grid):
    """Eigenvalues of the periodic Laplacian on the rfftn frequencies, ``[*shape']``."""
    lam = 0
    for a, (n, h) in enumerate(zip(grid.shape, grid.spacing)):
        k = np.arange(n // 2 + 1 if a == grid.ndim - 1 else n)
        e = -(4.0 / h ** 2) * np.sin(np.pi * k / n) ** 2
        shape = [1] * grid.ndim
        shape[a] = e.size
        lam = lam + e.reshape(shape)
    return lam


def _trig_poisson_fwd(r, grid, bcs):
    """``u = T^T diag(1 / lambda) T r`` with ``T`` the orthonormal DCT-II (Neumann) / DST-II
    (Dirichlet) per axis; symmetric in ``r``, so the backward is the same solve."""
    if get_xp(r) is np:
        import scipy.fft as sfft
    else:  # pragma: no cover - GPU
        import cupyx.scipy.fft as sfft
    lam = 0
    X = r
    for a, (n, h) in enumerate(zip(grid.shape, grid.spacing)):
        k = np.arange(n) + (1 if bcs[a] == "dirichlet" else 0)
        e = -(4.0 / h ** 2) * np.sin(np.pi * k / (2 * n)) ** 2
        shape = [1] * grid.ndim
        shape[a] = n
        lam = lam + e.reshape(shape)
        X = (sfft.dst if bcs[a] == "dirichlet" else sfft.dct)(X, type=2, axis=a, norm="ortho")
    inv = np.zeros_like(lam)
    np.divide(1.0, lam, out=inv, where=lam != 0)
    X = X * get_xp(r).asarray(inv.astype(r.dtype))
    for a in range(grid.ndim):
        X = (sfft.dst if bcs[a] == "dirichlet" else sfft.dct)(X, type=3, axis=a, norm="ortho")
    return X.astype(r.dtype, copy=False)


_trig_poisson_op = defop("grid_poisson_trig", _trig_poisson_fwd)


@_trig_poisson_op.defvjp
def _(ns, node, g):
    from ..autodiff.function import call_op
    return (call_op(ns, _trig_poisson_op, g, **node.attrs),)


def _jacobi_diagonal(grid, bcs):
    diag = np.zeros(grid.shape)
    for a, (n, h) in enumerate(zip(grid.shape, grid.spacing)):
        diag += 2.0 / h ** 2
        if bcs[a] == "periodic":
            continue
        adj = 1.0 / h ** 2 if bcs[a] == "dirichlet" else -1.0 / h ** 2
        for s in (slice(0, 1), slice(n - 1, n)):
            diag[(slice(None),) * a + (s,)] += adj
    return np.where(diag == 0, 1.0, diag)


def poisson(f, grid, bc="periodic", value=0.0, method=None, tol=None, maxiter=None, iterations=500):
    """Solve ``laplacian(u, grid, bc, value) == f`` for ``u``: ``f [*shape] -> u [*shape]``.

    ``method``: ``"fft"`` (exact; FFT when every axis is periodic, orthonormal DCT-II / DST-II
    per axis when every axis is Neumann or Dirichlet), ``"direct"`` (sparse LU via
    ``diffsim.sparse.solve``), ``"cg"`` (matrix-free ``diffsim.sparse.cg``) or ``"jacobi"``
    (``iterations`` Jacobi sweeps, damped with omega = 2/3 when the problem is singular,
    differentiated through the sweeps). Default: fft for
    periodic, direct otherwise. With periodic or Neumann boundaries on every axis the
    solution is defined up to a constant: the mean of ``f`` is removed and ``u`` has zero
    mean. Gradients w.r.t. ``f`` (and ``value``) come from adjoint solves."""
    grid.check_scalar(f, "grid.poisson")
    bcs = _bcs(bc, grid, "grid.poisson")
    if method is None:
        method = "fft" if all(b == "periodic" for b in bcs) else "direct"
    if method not in POISSON_METHODS:
        raise ValueError(f"grid.poisson: method must be one of {POISSON_METHODS}, got {method!r}")
    singular = all(b != "dirichlet" for b in bcs)
    if singular:
        f = f - f.mean()
    if method == "fft" and all(b == "periodic" for b in bcs):
        lam = _laplacian_eigenvalues(grid)
        inv = np.zeros_like(lam)
        np.divide(1.0, lam, out=inv, where=lam != 0)
        inv = as_tensor(inv[..., None], dtype=f.dtype, device=f.device)
        return _fft.irfftn(_fft.rfftn(f) * inv, s=grid.shape)
    if method == "fft" and any(b == "periodic" for b in bcs):
        raise ValueError(f"grid.poisson: method='fft' needs periodic boundaries on every axis or on none "
                         f"(then cosine/sine transforms are used), got bc={bc!r}; use method='direct' or 'cg'")
    bnd = None
    if any(b == "dirichlet" for b in bcs) and not (isinstance(value, numbers.Real) and value == 0):
        bnd = laplacian(zeros_like(f), grid, bc, value)
    rhs = f if bnd is None else f - bnd
    if method == "fft":          # Neumann / Dirichlet per axis: DCT-II / DST-II diagonalize the operator
        return apply(_trig_poisson_op, (rhs,), {"grid": grid, "bcs": bcs})
    if method == "direct":
        L = laplacian_matrix(grid, bc, dtype=f.dtype, device=f.device, _pin=singular)
        b = rhs.reshape(-1)
        if singular:
            b = _ops.cat([b[:1] * 0, b[1:]])
        u = sparse.solve(L, b).reshape(grid.shape)
        return u - u.mean() if singular else u
    if method == "cg":
        def matvec(x):
            y = -laplacian(x.reshape(grid.shape), grid, bc, 0.0).reshape(-1)
            return y + x.mean() if singular else y
        u = sparse.cg(matvec, -rhs.reshape(-1), tol=tol, maxiter=maxiter).reshape(grid.shape)
        return u
    # plain Jacobi oscillates on the checkerboard mode of a singular (all periodic / Neumann)
    # grid, where the iteration matrix has eigenvalue -1: damp it there (omega = 2/3)
    omega = 2.0 / 3.0 if singular else 1.0
    diag = as_tensor(_jacobi_diagonal(grid, bcs) / omega, dtype=f.dtype, device=f.device)
    u = zeros_like(f)
    for _ in range(iterations):
        u = u + (laplacian(u, grid, bc, 0.0) - rhs) / diag
    return u - u.mean() if singular else u
