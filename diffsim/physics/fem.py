"""Finite-element elasticity: meshes, linear and Neo-Hookean materials, static equilibrium and
implicit-Euler dynamics, differentiable w.r.t. per-element Young's modulus, loads and rest shape.

* meshes: ``Mesh(nodes [n_nodes, d], elements [n_elem, k], kind)`` with ``kind`` ``"tri"``
  (P1 triangles, 2-D, 1 quadrature point), ``"quad"`` (Q4 bilinear quadrilaterals, 2-D, 2x2
  Gauss points) or ``"tet"`` (P1 tetrahedra, 3-D); generators ``rectangle_mesh`` and
  ``box_mesh``; ``Mesh.nodes_on(side)`` and ``fixed_dofs`` for boundary conditions.
* ``Elasticity(mesh, E, nu, material="linear" | "neo-hookean", plane="stress" | "strain",
  fixed=..., fixed_values=..., density=..., gravity=...)``: a ``System`` (fields ``x``, ``v``:
  deformed positions and velocities ``[n_nodes, d]``) with

  - ``element_stiffness()`` ``[n_elem, k d, k d]`` (batched einsum), ``stiffness_matrix(u)``
    (sparse, assembled with ``sparse.assemble``; the tangent at ``u`` for Neo-Hookean). The
    solvers assemble the free-DOF matrix with a structure computed once per model (sorted
    CSR pattern + each entry's slot) so that each assembly is one ``segment_sum``; the unit
    element stiffness is cached while the rest shape is constant,
  - ``internal_forces(u)``, ``energy(u)``, ``surface_load(side, traction)``,
  - ``solve(loads)``: static equilibrium. Linear: one ``sparse.solve`` on the free DOFs
    (direct LU; its factorization is reused for the adjoint). Neo-Hookean: Newton by
    ``physics.implicit.root`` with the sparse tangent stiffness as Jacobian. Either way the
    gradient w.r.t. ``E``, the loads, prescribed displacements and the rest shape
    ``mesh.nodes`` comes from one adjoint solve (implicit differentiation),
  - ``step_implicit(state, dt, loads)``: one backward-Euler step (Newton on
    ``M (u' - u - dt v) / dt^2 + f_int(u') = f_ext``, also via ``implicit.root``); the
    integrator ``ImplicitEulerFEM`` wraps it for ``physics.simulate``. Explicit integrators
    work too (``acceleration`` is defined), with the usual stability limit.

Conventions: DOF ``n * d + i`` is component ``i`` of node ``n``; displacements ``u`` and loads
are ``[n_nodes, d]``; ``E`` is ``[n_elem]`` (a number is broadcast); 2-D problems have a
``thickness`` (default 1). Dirichlet conditions fix chosen DOFs to given values, Neumann
conditions are nodal loads (``surface_load`` turns a uniform traction on a side of the
bounding box into consistent nodal loads).
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import autodiff as ds
from ..autodiff import Tensor
from ..autodiff.backend import get_xp, to_numpy
from .integrators import Integrator
from .state import State
from .system import System

__all__ = ["Mesh", "rectangle_mesh", "box_mesh", "fixed_dofs", "Elasticity", "ImplicitEulerFEM",
           "lame_parameters"]

# ------------------------------------------------------------------ reference elements

_G = 1.0 / np.sqrt(3.0)


def _reference(kind):
    """(dN/dxi [Q, k, dim], weights [Q]) of a reference element."""
    if kind == "tri":
        return np.array([[[-1.0, -1.0], [1.0, 0.0], [0.0, 1.0]]]), np.array([0.5])
    if kind == "tet":
        return np.array([[[-1.0, -1.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]), \
            np.array([1.0 / 6.0])
    if kind == "quad":
        corners = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
        pts = np.array([[-_G, -_G], [_G, -_G], [_G, _G], [-_G, _G]])
        dN = np.empty((4, 4, 2))
        for q, (xi, eta) in enumerate(pts):
            dN[q, :, 0] = corners[:, 0] * (1 + eta * corners[:, 1]) / 4
            dN[q, :, 1] = corners[:, 1] * (1 + xi * corners[:, 0]) / 4
        return dN, np.ones(4)
    raise ValueError(f"fem: element kind must be 'tri', 'quad' or 'tet', got {kind!r}")


def _np(t):
    """A Tensor's values as a numpy array (copied from the GPU if needed), no graph."""
    return to_numpy(t.detach()._data)


_KINDS = {"tri": (2, 3), "quad": (2, 4), "tet": (3, 4)}     # kind -> (dim, nodes per element)
# boundary facets (local node tuples) of each element kind
_FACETS = {"tri": [(0, 1), (1, 2), (2, 0)], "quad": [(0, 1), (1, 2), (2, 3), (3, 0)],
           "tet": [(0, 2, 1), (0, 1, 3), (1, 2, 3), (0, 3, 2)]}


# ------------------------------------------------------------------ meshes

class Mesh:
    """A finite-element mesh (``physics.fem.Mesh``: nodes and volume elements; not to be confused
    with ``diffsim.render.Mesh``, a triangle surface ``verts [V, 3]`` / ``faces [F, 3]`` for
    rendering -- the boundary of a ``box_mesh`` can be rendered by building one from ``nodes``
    and the outer faces).

    ``nodes``: rest positions, a floating Tensor ``[n_nodes, d]`` (may require grad: the rest
    shape is a differentiable parameter); ``elements``: integer array ``[n_elem, k]`` of node
    indices, counter-clockwise (2-D) / positively oriented (3-D); ``kind``: ``"tri"``,
    ``"quad"`` or ``"tet"``.
    """

    def __init__(self, nodes, elements, kind):
        opname = "fem.Mesh"
        if kind not in _KINDS:
            raise ValueError(f"{opname}: kind must be 'tri', 'quad' or 'tet', got {kind!r}")
        dim, k = _KINDS[kind]
        if not isinstance(nodes, Tensor):
            nodes = ds.tensor(np.asarray(nodes, dtype=float), dtype=ds.get_default_dtype())
        if nodes.ndim != 2 or nodes.shape[1] != dim or nodes._data.dtype.kind != "f":
            raise ValueError(f"{opname}: nodes must be a floating [n_nodes, {dim}] Tensor for kind {kind!r}, "
                             f"got shape {list(nodes.shape)} dtype {nodes.dtype}")
        el = np.asarray(elements)
        if el.ndim != 2 or el.shape[1] != k or el.dtype.kind not in "iu":
            raise ValueError(f"{opname}: elements must be an integer array [n_elem, {k}] for kind {kind!r}, "
                             f"got shape {list(el.shape)} dtype {el.dtype}")
        if el.size and (el.min() < 0 or el.max() >= nodes.shape[0]):
            raise ValueError(f"{opname}: element node indices must lie in [0, {nodes.shape[0]}), got "
                             f"range [{el.min()}, {el.max()}]")
        self.nodes, self.elements, self.kind, self.dim = nodes, el.astype(np.int64), kind, dim

    @property
    def n_nodes(self):
        return self.nodes.shape[0]

    @property
    def n_elements(self):
        return self.elements.shape[0]

    def __repr__(self):
        return f"Mesh(kind={self.kind!r}, n_nodes={self.n_nodes}, n_elements={self.n_elements})"

    def nodes_on(self, side, tol=1e-9):
        """Indices (int array) of the nodes on one side of the bounding box: ``"left"`` /
        ``"right"`` (min / max x), ``"bottom"`` / ``"top"`` (y), ``"back"`` / ``"front"`` (z,
        3-D only)."""
        axis, end = _side(side, self.dim)
        X = _np(self.nodes)
        ref = X[:, axis].max() if end else X[:, axis].min()
        scale = max(float(np.ptp(X)), 1.0)
        return np.nonzero(np.abs(X[:, axis] - ref) <= tol * scale)[0]

    def facets_on(self, side, tol=1e-9):
        """Boundary facets (edges in 2-D, triangles in 3-D) on a side of the bounding box, an
        int array ``[n_facets, d]`` of node indices."""
        on = np.zeros(self.n_nodes, bool)
        on[self.nodes_on(side, tol)] = True
        facets = np.concatenate([self.elements[:, list(f)] for f in _FACETS[self.kind]])
        return facets[on[facets].all(1)]


def _side(side, dim):
    names = {"left": (0, 0), "right": (0, 1), "bottom": (1, 0), "top": (1, 1), "back": (2, 0), "front": (2, 1)}
    if side not in names or names[side][0] >= dim:
        ok = [n for n, (a, _) in names.items() if a < dim]
        raise ValueError(f"fem: side must be one of {ok} for a {dim}-D mesh, got {side!r}")
    return names[side]


def rectangle_mesh(nx, ny, width=1.0, height=1.0, element="tri", origin=(0.0, 0.0), dtype=None,
                   requires_grad=False):
    """A structured mesh of the rectangle ``[x0, x0 + width] x [y0, y0 + height]``.

    ``nx x ny`` cells; ``element="tri"``: each cell split into two P1 triangles (``2 nx ny``
    elements), ``"quad"``: one Q4 element per cell. Node ``j (nx + 1) + i`` sits at
    ``(x0 + i width / nx, y0 + j height / ny)``. Returns a ``Mesh`` with nodes
    ``[(nx + 1)(ny + 1), 2]`` of ``dtype`` (default dtype if None).
    """
    nx, ny = _count(nx, "nx", "rectangle_mesh"), _count(ny, "ny", "rectangle_mesh")
    if element not in ("tri", "quad"):
        raise ValueError(f"fem.rectangle_mesh: element must be 'tri' or 'quad', got {element!r}")
    xs = origin[0] + np.linspace(0.0, width, nx + 1)
    ys = origin[1] + np.linspace(0.0, height, ny + 1)
    X, Y = np.meshgrid(xs, ys)
    nodes = np.stack([X.ravel(), Y.ravel()], 1)
    i, j = np.meshgrid(np.arange(nx), np.arange(ny))
    n00 = (j * (nx + 1) + i).ravel()
    n10, n01, n11 = n00 + 1, n00 + nx + 1, n00 + nx + 2
    if element == "quad":
        el = np.stack([n00, n10, n11, n01], 1)
    else:
        el = np.concatenate([np.stack([n00, n10, n11], 1), np.stack([n00, n11, n01], 1)])
    return Mesh(ds.tensor(nodes, dtype=dtype or ds.get_default_dtype(), requires_grad=requires_grad), el,
                element)


def box_mesh(nx, ny, nz, width=1.0, height=1.0, depth=1.0, origin=(0.0, 0.0, 0.0), dtype=None,
             requires_grad=False):
    """A structured tetrahedral mesh of the box ``[0, width] x [0, height] x [0, depth]`` (shifted by
    ``origin``): ``nx x ny x nz`` cubes, each split into 6 tetrahedra along its main diagonal
    (Kuhn triangulation, conforming). Node ``(k (ny + 1) + j)(nx + 1) + i``. Returns a ``Mesh``
    with nodes ``[(nx+1)(ny+1)(nz+1), 3]`` and ``6 nx ny nz`` elements."""
    nx, ny, nz = (_count(n, name, "box_mesh") for n, name in ((nx, "nx"), (ny, "ny"), (nz, "nz")))
    xs, ys, zs = (o + np.linspace(0.0, s, n + 1) for o, s, n in zip(origin, (width, height, depth), (nx, ny, nz)))
    Z, Y, X = np.meshgrid(zs, ys, xs, indexing="ij")
    nodes = np.stack([X.ravel(), Y.ravel(), Z.ravel()], 1)
    k, j, i = (a.ravel() for a in np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij"))

    def nid(di, dj, dk):
        return ((k + dk) * (ny + 1) + (j + dj)) * (nx + 1) + (i + di)
    tets = []
    for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        c = [0, 0, 0]
        path = [nid(0, 0, 0)]
        for ax in perm:
            c[ax] = 1
            path.append(nid(*c))
        t = np.stack(path, 1)
        e = nodes[t[0]]
        if np.linalg.det((e[1:] - e[0]).T) < 0:
            t = t[:, [0, 2, 1, 3]]
        tets.append(t)
    return Mesh(ds.tensor(nodes, dtype=dtype or ds.get_default_dtype(), requires_grad=requires_grad),
                np.concatenate(tets), "tet")


def _count(n, name, opname):
    if not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"fem.{opname}: {name} must be a positive integer, got {n!r}")
    return int(n)


def fixed_dofs(mesh, nodes, dims=None):
    """A boolean mask ``[n_nodes, d]`` that fixes components ``dims`` (default: all) of ``nodes``
    (int indices or a boolean mask ``[n_nodes]``); combine masks with ``|``."""
    m = np.zeros((mesh.n_nodes, mesh.dim), bool)
    idx = np.asarray(nodes)
    dims = range(mesh.dim) if dims is None else ([dims] if isinstance(dims, numbers.Integral) else dims)
    for d in dims:
        m[idx, d] = True
    return m


def lame_parameters(E, nu, dim=3, plane="stress"):
    """Lame parameters ``(lam, mu)`` from Young's modulus ``E`` (number or Tensor ``[*]``) and
    Poisson's ratio ``nu``; in 2-D, ``plane="stress"`` gives the plane-stress ``lam* = E nu /
    (1 - nu^2)``, ``"strain"`` the 3-D value ``E nu / ((1 + nu)(1 - 2 nu))``."""
    lam_hat, mu_hat = _lame_hat(nu, dim, plane)
    return E * lam_hat, E * mu_hat


def _lame_hat(nu, dim, plane):
    if not -1.0 < nu < 0.5:
        raise ValueError(f"fem: Poisson's ratio nu must lie in (-1, 0.5), got {nu}")
    if plane not in ("stress", "strain"):
        raise ValueError(f"fem: plane must be 'stress' or 'strain', got {plane!r}")
    mu = 1.0 / (2.0 * (1.0 + nu))
    if dim == 2 and plane == "stress":
        return nu / (1.0 - nu * nu), mu
    return nu / ((1.0 + nu) * (1.0 - 2.0 * nu)), mu


# ------------------------------------------------------------------ the model

class Elasticity(System):
    """Elastic body discretized by finite elements (see the module docstring).

    Args:
        mesh: a ``Mesh`` (its ``nodes`` are the rest shape; a Tensor that may require grad).
        E: Young's modulus, a number or Tensor ``[n_elem]`` (per element; may require grad); > 0.
        nu: Poisson's ratio in (-1, 0.5).
        material: ``"linear"`` (small-strain) or ``"neo-hookean"`` (``psi = mu/2 (tr F^T F - d)
            - mu ln J + lam/2 ln^2 J``; reduces to the linear material at small strain).
        plane: 2-D only: ``"stress"`` (thin plate, default) or ``"strain"``. For Neo-Hookean in
            2-D, plane stress uses the plane-stress ``lam*``, so that the small-strain limit is
            the plane-stress linear material.
        thickness: 2-D out-of-plane thickness (scales stiffness, mass and surface loads).
        fixed: Dirichlet DOFs, a boolean mask ``[n_nodes, d]`` (see ``fixed_dofs``) or None.
            A static solve needs enough of them to remove rigid motions.
        fixed_values: prescribed displacements of the fixed DOFs, a Tensor/array ``[n_nodes, d]``
            (only the fixed entries are used; may require grad) or None for zeros.
        density: mass per volume (a number or Tensor ``[n_elem]``), for dynamics and gravity.
        gravity: body acceleration ``[d]`` (e.g. ``(0, -9.81)``) or None.
    """

    def __init__(self, mesh, E=1.0, nu=0.3, material="linear", plane="stress", thickness=1.0, fixed=None,
                 fixed_values=None, density=1.0, gravity=None):
        opname = "fem.Elasticity"
        if not isinstance(mesh, Mesh):
            raise TypeError(f"{opname}: mesh must be a fem.Mesh, got {type(mesh).__name__}")
        if material not in ("linear", "neo-hookean"):
            raise ValueError(f"{opname}: material must be 'linear' or 'neo-hookean', got {material!r}")
        self.mesh, self.material, self.plane = mesh, material, plane
        self.nu, self.thickness = float(nu), float(thickness)
        self._lam_hat, self._mu_hat = _lame_hat(self.nu, mesh.dim, plane)
        self.E = E
        dens = _np(density) if isinstance(density, Tensor) else np.asarray(density, float)
        if dens.ndim not in (0, 1) or (dens.ndim == 1 and dens.shape[0] != mesh.n_elements) \
                or not bool(np.all(dens > 0)):
            raise ValueError(f"{opname}: density must be a positive number or Tensor [n_elem] = "
                             f"[{mesh.n_elements}], got shape {list(dens.shape)} (min {float(np.min(dens))})")
        self.density = density
        dt = mesh.nodes.dtype
        self.gravity = None if gravity is None else \
            ds.tensor(np.asarray(gravity, float), dtype=dt, device=mesh.nodes.device)
        if self.gravity is not None and tuple(self.gravity.shape) != (mesh.dim,):
            raise ValueError(f"{opname}: gravity must have shape [{mesh.dim}], got {list(self.gravity.shape)}")
        n, d = mesh.n_nodes, mesh.dim
        if fixed is None:
            fixed = np.zeros((n, d), bool)
        fixed = np.asarray(fixed)
        if fixed.shape != (n, d) or fixed.dtype != bool:
            raise ValueError(f"{opname}: fixed must be a boolean mask [n_nodes, d] = [{n}, {d}] (see "
                             f"fem.fixed_dofs), got shape {list(fixed.shape)} dtype {fixed.dtype}")
        self.fixed = fixed
        if fixed_values is not None:
            if not isinstance(fixed_values, Tensor):
                fixed_values = ds.tensor(np.asarray(fixed_values, float), dtype=dt, device=mesh.nodes.device)
            if tuple(fixed_values.shape) != (n, d):
                raise ValueError(f"{opname}: fixed_values must have shape [n_nodes, d] = [{n}, {d}], got "
                                 f"{list(fixed_values.shape)}")
        self.fixed_values = fixed_values
        self._structure()
        self._geom_cache = None

    # ------------------------------------------------------------ parameters and structure
    @property
    def E(self):
        return self._E

    @E.setter
    def E(self, E):
        ne = self.mesh.n_elements
        if not isinstance(E, Tensor):
            dev = self.mesh.nodes.device
            E = ds.full((ne,), float(E), dtype=self.mesh.nodes.dtype, device=dev) if np.ndim(E) == 0 else \
                ds.tensor(np.asarray(E, float), dtype=self.mesh.nodes.dtype, device=dev)
        if E.ndim == 0:
            E = E * ds.ones((ne,), dtype=E.dtype, device=E.device)
        if tuple(E.shape) != (ne,):
            raise ValueError(f"fem.Elasticity: E must be a number or a Tensor [n_elem] = [{ne}], got shape "
                             f"{list(E.shape)}")
        Ev = _np(E)
        if not bool(np.all(Ev > 0)):
            bad = int(np.argmin(Ev))
            raise ValueError(f"fem.Elasticity: Young's modulus must be > 0 in every element, got E[{bad}] = "
                             f"{float(Ev[bad])}; for void regions (SIMP) use a small Emin > 0")
        self._E = E

    def _structure(self):
        mesh, d = self.mesh, self.mesh.dim
        el = mesh.elements
        self.n_dofs = mesh.n_nodes * d
        self.edofs = (el[:, :, None] * d + np.arange(d)).reshape(len(el), -1)     # [E, k d]
        free = ~self.fixed.reshape(-1)
        self.free_idx = np.nonzero(free)[0]
        self.fixed_idx = np.nonzero(~free)[0]
        self.n_free = len(self.free_idx)
        g2f = np.full(self.n_dofs, -1, np.int64)
        g2f[self.free_idx] = np.arange(self.n_free)
        g2c = np.full(self.n_dofs, -1, np.int64)
        g2c[self.fixed_idx] = np.arange(len(self.fixed_idx))
        # u_full = cat([u_free, u_fixed])[perm]
        self._perm = np.empty(self.n_dofs, np.int64)
        self._perm[self.free_idx] = np.arange(self.n_free)
        self._perm[self.fixed_idx] = self.n_free + np.arange(len(self.fixed_idx))
        kd = self.edofs.shape[1]
        rows = np.broadcast_to(self.edofs[:, :, None], (len(el), kd, kd)).reshape(-1)
        cols = np.broadcast_to(self.edofs[:, None, :], (len(el), kd, kd)).reshape(-1)
        fr, fc = free[rows], free[cols]
        ff = np.nonzero(fr & fc)[0]
        self._ff = (ff, g2f[rows[ff]], g2f[cols[ff]])
        fcx = np.nonzero(fr & ~fc)[0]
        self._fc = (fcx, g2f[rows[fcx]], g2c[cols[fcx]])
        self._rows, self._cols = rows, cols

    def to(self, device):
        """A copy on ``device`` (``"cpu"``, ``"cuda"``): the rest shape, ``E``, prescribed values,
        density and gravity moved with ``Tensor.to`` (recorded, so gradients reach the
        originals); index structures stay numpy and are re-uploaded on first use."""
        import copy
        new = copy.copy(self)
        new.mesh = Mesh(self.mesh.nodes.to(device), self.mesh.elements, self.mesh.kind)
        new._E = self._E.to(device)
        for name in ("fixed_values", "density", "gravity"):
            v = getattr(self, name)
            if isinstance(v, Tensor):
                setattr(new, name, v.to(device))
        new._geom_cache = None
        new.__dict__.pop("_k_cache", None)
        return new

    def _ix(self, name, array):
        """The int64 index array as a Tensor on the mesh's device (cached by name)."""
        cache = self.__dict__.setdefault("_ix_cache", {})
        dev = str(self.mesh.nodes.device)
        t = cache.get((name, dev))
        if t is None:
            t = cache[(name, dev)] = ds.tensor(np.asarray(array, np.int64), device=self.mesh.nodes.device)
        return t

    def _assembler(self, name, entries, r, c, shape):
        """Assembly with a precomputed structure: the element-matrix entries ``entries`` (flat
        indices into ``Ke.reshape(-1)``) go to ``(r, c)`` of a ``shape`` matrix. Returns
        ``(crow, col, slot)``: the CSR structure (duplicates merged, sorted) and each entry's
        slot in it, so that values are one ``segment_sum`` -- what ``sparse.assemble`` does,
        without sorting again on every call."""
        cache = self.__dict__.setdefault("_asm_cache", {})
        if name not in cache:
            keys = r.astype(np.int64) * shape[1] + c
            uniq, slot = np.unique(keys, return_inverse=True)
            row, col = uniq // shape[1], uniq % shape[1]
            crow = np.zeros(shape[0] + 1, np.int64)
            crow[1:] = np.cumsum(np.bincount(row, minlength=shape[0]))
            cache[name] = (crow, col, slot.reshape(-1), len(uniq))
        return cache[name]

    def _assemble(self, name, vals, entries, r, c, shape):
        from .. import sparse
        crow, col, slot, nnz = self._assembler(name, entries, r, c, shape)
        summed = ds.segment_sum(vals, self._ix(name + ".slot", slot), nnz)
        return sparse.csr_tensor(self._ix(name + ".crow", crow), self._ix(name + ".col", col), summed, shape,
                                 check=False)

    def _check_u(self, u, opname):
        shape = (self.mesh.n_nodes, self.mesh.dim)
        if not isinstance(u, Tensor) or tuple(u.shape) != shape:
            raise ValueError(f"{opname}: the displacement must be a Tensor [n_nodes, d] = {list(shape)}, got "
                             f"{getattr(u, 'shape', type(u).__name__)}")

    # ------------------------------------------------------------ geometry
    def geometry(self):
        """Shape-function gradients and quadrature volumes in the rest shape: ``(G [n_elem, Q, k,
        d], vol [n_elem, Q])`` with ``G[e, q, a, i] = dN_a/dX_i`` at quadrature point ``q``
        and ``vol`` = weight * det(dX/dxi) (* thickness in 2-D). Differentiable w.r.t.
        ``mesh.nodes``. Raises ValueError if an element is inverted or degenerate in the rest
        shape."""
        nodes = self.mesh.nodes
        constant = not (nodes.requires_grad and ds.is_grad_enabled())
        cache = self._geom_cache
        if constant and cache is not None and cache[0].shape == nodes._data.shape \
                and bool(get_xp(nodes._data).array_equal(cache[0], nodes._data)):
            return cache[1]                 # (compared by value: safe under in-place updates)
        dN, w = _reference(self.mesh.kind)
        d = self.mesh.dim
        dN_t = ds.tensor(dN, dtype=nodes.dtype, device=nodes.device)
        Xe = ds.index_select(nodes, 0, self._ix("elements", self.mesh.elements.reshape(-1))).reshape(
            self.mesh.n_elements, -1, d)                                      # [E, k, d]
        J = ds.einsum("eai,qaj->eqij", Xe, dN_t)                              # [E, Q, d, d]
        det = ds.linalg.det(J)
        detv = _np(det)
        if not bool(np.all(detv > 0)):
            bad = np.nonzero(~(detv > 0).all(1))[0]
            raise ValueError(f"fem: {len(bad)} of {self.mesh.n_elements} elements are inverted or degenerate in "
                             f"the rest shape (det dX/dxi <= 0), first element {int(bad[0])} with nodes "
                             f"{self.mesh.elements[bad[0]].tolist()}; order element nodes counter-clockwise "
                             "(2-D) / positively (3-D) and avoid collapsed elements")
        Jinv = ds.linalg.inv(J)
        G = ds.einsum("qaj,eqji->eqai", dN_t, Jinv)                           # [E, Q, k, d]
        scale = self.thickness if d == 2 else 1.0
        vol = det * ds.tensor(w * scale, dtype=nodes.dtype, device=nodes.device)     # [E, Q]
        if constant:        # (re)used while the rest shape is unchanged and no graph to it is recorded
            self._geom_cache = (nodes._data.copy(), (G.detach(), vol.detach()))
            return self._geom_cache[1]
        return G, vol

    def element_volumes(self):
        """Element areas (2-D, times thickness) or volumes (3-D), ``[n_elem]``."""
        return self.geometry()[1].sum(1)

    # ------------------------------------------------------------ linear elasticity
    def unit_element_stiffness(self):
        """Element stiffness matrices for ``E = 1``, ``[n_elem, k d, k d]`` (DOF order: node-major,
        ``a d + i``); linear in ``E``: ``K_e = E_e * unit_element_stiffness()[e]``."""
        nodes = self.mesh.nodes
        constant = not (nodes.requires_grad and ds.is_grad_enabled())
        geo = self.geometry()
        cache = getattr(self, "_k_cache", None)
        if constant and cache is not None and cache[0] is geo:
            return cache[1]
        G, vol = geo
        E_, Q, k, d = G.shape
        Gv = G * vol.reshape(E_, Q, 1, 1)
        lam_part = ds.einsum("eqai,eqbj->eaibj", Gv, G)
        gg = ds.einsum("eqak,eqbk->eab", Gv, G)
        eye = ds.eye(d, dtype=G.dtype, device=G.device)
        mu_part = gg.reshape(E_, k, 1, k, 1) * eye.reshape(1, 1, d, 1, d) + ds.einsum("eqaj,eqbi->eaibj", Gv, G)
        K = (self._lam_hat * lam_part + self._mu_hat * mu_part).reshape(E_, k * d, k * d)
        if constant:
            self._k_cache = (geo, K.detach())     # the geometry is unchanged: reuse (SIMP loops)
        return K

    def element_stiffness(self, u=None):
        """Element stiffness matrices ``[n_elem, k d, k d]``: ``E_e`` times the unit stiffness for the
        linear material; for Neo-Hookean the tangent ``d f_int / d u`` at displacement ``u``
        ``[n_nodes, d]`` (default: the rest shape, where it equals the linear stiffness)."""
        if self.material == "linear" or u is None:
            return self.E.reshape(-1, 1, 1) * self.unit_element_stiffness()
        return self._nh_tangent(u)

    def _assemble_ff(self, Ke, extra_diag=None):
        """The free-DOF stiffness ``[n_free, n_free]`` from element matrices ``Ke [n_elem, k d, k d]``,
        plus ``diag(extra_diag [n_free])`` if given (a CSR SparseTensor)."""
        idx, r, c = self._ff
        vals = ds.index_select(Ke.reshape(-1), 0, self._ix("ff", idx))
        name = "ff"
        if extra_diag is not None:
            ar = np.arange(self.n_free)
            r, c, name = np.concatenate([r, ar]), np.concatenate([c, ar]), "ff+diag"
            vals = ds.cat([vals, extra_diag])
        return self._assemble(name, vals, idx, r, c, (self.n_free, self.n_free))

    def stiffness_matrix(self, u=None, reduced=False):
        """The global stiffness matrix, a ``SparseTensor`` ``[n_dofs, n_dofs]`` (tangent at ``u`` for
        Neo-Hookean), assembled by ``sparse.assemble`` (values differentiable w.r.t. ``E`` and
        the rest shape). ``reduced=True``: only the free DOFs, ``[n_free, n_free]``."""
        from .. import sparse
        Ke = self.element_stiffness(u)
        if reduced:
            return self._assemble_ff(Ke)
        return sparse.assemble(self._rows, self._cols, Ke.reshape(-1), (self.n_dofs, self.n_dofs))

    # ------------------------------------------------------------ Neo-Hookean
    def _deformation_gradient(self, u, G):
        d = self.mesh.dim
        Ue = ds.index_select(u.reshape(-1), 0, self._ix("edofs", self.edofs.reshape(-1))).reshape(
            self.mesh.n_elements, -1, d)
        return ds.eye(d, dtype=u.dtype, device=u.device) + ds.einsum("eai,eqaj->eqij", Ue, G)    # [E, Q, d, d]

    def _check_inverted(self, Jd, opname):
        jv = _np(Jd)
        if not bool(np.all(jv > 0)):
            bad = np.nonzero(~(jv > 0).all(1))[0]
            raise RuntimeError(f"{opname}: {len(bad)} of {self.mesh.n_elements} elements are inverted in the "
                               f"deformed shape (det F <= 0), first element {int(bad[0])} (det F = "
                               f"{float(jv[bad[0]].min()):.3e}); the Neo-Hookean energy is undefined there: "
                               "reduce the load or use more load_steps / a smaller dt")

    def _lame_e(self):
        E = self.E.reshape(-1, 1)
        return E * self._lam_hat, E * self._mu_hat                              # [E, 1]

    def _pk1(self, F, opname, on_inverted="raise"):
        Jd = ds.linalg.det(F)
        if on_inverted == "raise":
            self._check_inverted(Jd, opname)
        elif not bool(np.all(_np(Jd) > 0)):
            return None, None, None
        Finv = ds.linalg.inv(F)
        FinvT = Finv.transpose(-1, -2)
        lam, mu = self._lame_e()
        lnJ = ds.log(Jd)
        P = mu.reshape(-1, 1, 1, 1) * (F - FinvT) + (lam * lnJ).reshape(*lnJ.shape, 1, 1) * FinvT
        return P, Finv, lnJ

    def _scatter(self, fe):
        out = ds.zeros((self.n_dofs,), dtype=fe.dtype, device=fe.device)
        return ds.index_add(out, 0, self._ix("edofs", self.edofs.reshape(-1)), fe.reshape(-1)).reshape(
            self.mesh.n_nodes, self.mesh.dim)

    def internal_forces(self, u, _on_inverted="raise"):
        """Internal (elastic) nodal forces ``f_int = dW/du`` ``[n_nodes, d]`` at displacement ``u``
        ``[n_nodes, d]``: ``K u`` for the linear material, ``sum_q vol P G`` (first
        Piola-Kirchhoff stress ``P``) for Neo-Hookean. Raises RuntimeError if an element is
        inverted (Neo-Hookean)."""
        opname = "fem.internal_forces"
        self._check_u(u, opname)
        E_ = self.mesh.n_elements
        Ue = ds.index_select(u.reshape(-1), 0, self._ix("edofs", self.edofs.reshape(-1))).reshape(E_, -1)
        if self.material == "linear":
            fe = ds.einsum("eij,ej->ei", self.element_stiffness(), Ue)
        else:
            G, vol = self.geometry()
            P, _, _ = self._pk1(self._deformation_gradient(u, G), opname, _on_inverted)
            if P is None:
                return None
            fe = ds.einsum("eqij,eqaj->eai", P * vol.reshape(*vol.shape, 1, 1), G)
        return self._scatter(fe)

    def _nh_tangent(self, u):
        G, vol = self.geometry()
        P, Finv, lnJ = self._pk1(self._deformation_gradient(u, G), "fem.stiffness_matrix")
        lam, mu = self._lame_e()
        d = self.mesh.dim
        E_, Q, k, _ = G.shape
        Gv = G * vol.reshape(E_, Q, 1, 1)
        # K[a i b k] = sum_q vol G_aj A_ijkl G_bl with
        # A_ijkl = mu d_ik d_jl + (mu - lam lnJ) Finv_li Finv_jk + lam Finv_ji Finv_lk
        c1 = (mu - lam * lnJ).reshape(E_, Q, 1, 1)
        GF = ds.einsum("eqaj,eqji->eqai", Gv, Finv)           # sum_j Gv_aj Finv_ji  -> [E,Q,k,d]
        HF = ds.einsum("eqbl,eqli->eqbi", G, Finv)            # sum_l G_bl Finv_li
        gg = ds.einsum("eqaj,eqbj->eab", Gv, G)
        eye = ds.eye(d, dtype=G.dtype, device=G.device)
        t1 = mu.reshape(E_, 1, 1, 1, 1) * gg.reshape(E_, k, 1, k, 1) * eye.reshape(1, 1, d, 1, d)
        # (mu - lam lnJ) * sum_jl Gv_aj Finv_jk G_bl Finv_li = c1 * GF[a,k] HF[b,i]
        t2 = ds.einsum("eqak,eqbi->eaibk", GF * c1, HF)
        # lam * sum_jl Gv_aj Finv_ji G_bl Finv_lk = lam * GF[a,i] HF[b,k]
        t3 = ds.einsum("eqai,eqbk->eaibk", GF * lam.reshape(E_, 1, 1, 1), HF)
        return (t1 + t2 + t3).reshape(E_, k * d, k * d)

    def energy(self, u):
        """Elastic energy ``W(u)`` (0-d Tensor) at displacement ``u`` ``[n_nodes, d]``:
        ``u^T K u / 2`` (linear) or ``sum vol psi(F)`` (Neo-Hookean). (As a ``System``,
        ``energy(state)`` also accepts a ``State``: elastic plus kinetic energy.)"""
        if isinstance(u, State):
            x, v = u.x, u.v
            m = self.lumped_mass().reshape(-1, 1)
            return self.energy(x - self.mesh.nodes) + 0.5 * (m * v * v).sum()
        self._check_u(u, "fem.energy")
        if self.material == "linear":
            return 0.5 * (self.internal_forces(u) * u).sum()
        G, vol = self.geometry()
        F = self._deformation_gradient(u, G)
        Jd = ds.linalg.det(F)
        self._check_inverted(Jd, "fem.energy")
        lam, mu = self._lame_e()
        lnJ = ds.log(Jd)
        psi = 0.5 * mu * ((F * F).sum((-1, -2)) - self.mesh.dim) - mu * lnJ + 0.5 * lam * lnJ * lnJ
        return (psi * vol).sum()

    # ------------------------------------------------------------ loads and mass
    def surface_load(self, side, traction):
        """Nodal loads ``[n_nodes, d]`` equivalent to a uniform traction ``[d]`` (force per
        area; per length times thickness in 2-D) on a side of the bounding box (see
        ``Mesh.nodes_on``): each boundary facet's measure is shared equally by its nodes
        (exact for linear facets under a uniform traction). ``traction`` may require grad; the
        facet measures are taken from the rest shape as constants (no gradient w.r.t.
        ``mesh.nodes`` through the load)."""
        facets = self.mesh.facets_on(side)
        nodes = self.mesh.nodes
        t = traction if isinstance(traction, Tensor) else \
            ds.tensor(np.asarray(traction, float), dtype=nodes.dtype, device=nodes.device)
        if tuple(t.shape) != (self.mesh.dim,):
            raise ValueError(f"fem.surface_load: traction must have shape [{self.mesh.dim}], got {list(t.shape)}")
        X = _np(nodes)
        P = X[facets]
        if self.mesh.dim == 2:
            meas = np.linalg.norm(P[:, 1] - P[:, 0], axis=1) * self.thickness
        else:
            meas = 0.5 * np.linalg.norm(np.cross(P[:, 1] - P[:, 0], P[:, 2] - P[:, 0]), axis=1)
        w = np.zeros(self.mesh.n_nodes)
        np.add.at(w, facets, (meas / facets.shape[1])[:, None])
        return ds.tensor(w, dtype=nodes.dtype, device=nodes.device).reshape(-1, 1) * t.reshape(1, -1)

    def lumped_mass(self):
        """Lumped nodal masses ``[n_nodes]``: each element's mass (density * volume) shared
        equally by its nodes."""
        vol = self.element_volumes()
        m_e = vol * self.density / self.mesh.elements.shape[1]
        idx = self._ix("elements", self.mesh.elements.reshape(-1))
        me = m_e.reshape(-1, 1).expand(self.mesh.n_elements, self.mesh.elements.shape[1]).reshape(-1)
        return ds.index_add(ds.zeros((self.mesh.n_nodes,), dtype=vol.dtype, device=vol.device), 0, idx, me)

    def external_forces(self, loads=None):
        """Nodal loads ``[n_nodes, d]`` plus gravity (lumped mass times ``gravity``)."""
        n, d = self.mesh.n_nodes, self.mesh.dim
        if loads is not None:
            if not isinstance(loads, Tensor):
                loads = ds.tensor(np.asarray(loads, float), dtype=self.mesh.nodes.dtype, device=self.mesh.nodes.device)
            if tuple(loads.shape) != (n, d):
                raise ValueError(f"fem: loads must be a Tensor [n_nodes, d] = [{n}, {d}], got {list(loads.shape)}")
        f = loads
        if self.gravity is not None:
            g = self.lumped_mass().reshape(-1, 1) * self.gravity.reshape(1, -1)
            f = g if f is None else f + g
        return ds.zeros((n, d), dtype=self.mesh.nodes.dtype, device=self.mesh.nodes.device) if f is None else f

    # ------------------------------------------------------------ static equilibrium
    def _fixed_part(self):
        """Prescribed values of the fixed DOFs ``[n_fixed]`` (a Tensor), or None if all zero."""
        if self.fixed_values is None or len(self.fixed_idx) == 0:
            return None
        return ds.index_select(self.fixed_values.reshape(-1), 0, self._ix("fixed", self.fixed_idx))

    def _full(self, u_free, u_fixed):
        if u_fixed is None:
            u_fixed = ds.zeros((len(self.fixed_idx),), dtype=u_free.dtype, device=u_free.device)
        return ds.index_select(ds.cat([u_free, u_fixed]), 0, self._ix("perm", self._perm)).reshape(
            self.mesh.n_nodes, self.mesh.dim)

    def _free(self, v):
        return ds.index_select(v.reshape(-1), 0, self._ix("free", self.free_idx))

    def _check_solvable(self, opname):
        if len(self.fixed_idx) == 0:
            raise RuntimeError(f"{opname}: no Dirichlet DOFs are fixed ({self.n_dofs} DOFs all free), so the "
                               "stiffness matrix is singular (rigid-body motions are free); pass "
                               "fixed=fem.fixed_dofs(mesh, nodes) to Elasticity")
        if self.n_free == 0:
            raise RuntimeError(f"{opname}: every DOF is fixed; nothing to solve")

    def solve(self, loads=None, method="direct", load_steps=1, tol=1e-10, maxiter=50):
        """Static equilibrium ``f_int(u) = f_ext`` with the Dirichlet conditions; returns the
        displacement ``u`` ``[n_nodes, d]``.

        ``loads``: nodal loads ``[n_nodes, d]`` (Tensor, may require grad) or None (gravity /
        prescribed displacements only). Linear material: one sparse solve ``K_ff u_f = f_f -
        K_fc u_c`` (``sparse.solve``; ``method`` ``"direct"`` or ``"cg"``). Neo-Hookean:
        Newton (``physics.implicit.root``, ``solver="sparse"`` with the assembled tangent
        stiffness), the load applied in ``load_steps`` increments (only the last solve is
        differentiated; ``tol``/``maxiter`` per Newton solve). Gradients w.r.t. ``E``,
        ``loads``, ``fixed_values``, ``density``/``gravity`` and ``mesh.nodes`` come from one
        adjoint solve.
        """
        from .. import sparse
        opname = "fem.solve"
        self._check_solvable(opname)
        f = self.external_forces(loads)
        uc = self._fixed_part()
        if self.material == "linear":
            Ke = self.element_stiffness()
            rhs = self._free(f)
            if uc is not None:
                idx, r, c = self._fc
                Kfc = self._assemble("fc", ds.index_select(Ke.reshape(-1), 0, self._ix("fc", idx)), idx, r, c,
                                     (self.n_free, len(self.fixed_idx)))
                rhs = rhs - Kfc @ uc
            K = self._assemble_ff(Ke)
            try:
                u_f = sparse.solve(K, rhs, method=method)
            except RuntimeError as e:
                raise RuntimeError(f"{opname}: {e} ({self.n_free} free DOFs; are the fixed DOFs enough to "
                                   "stop rigid-body motion?)") from None
            return self._full(u_f, uc)
        return self._newton(lambda uf, th: self._free(self._forces_or_inf(self._full(uf, uc))) - self._free(f),
                            f, uc, load_steps, tol, maxiter, opname)

    def _forces_or_inf(self, u):
        fi = self.internal_forces(u, _on_inverted="inf")
        if fi is None:
            return ds.full((self.mesh.n_nodes, self.mesh.dim), float("inf"), dtype=u.dtype, device=u.device)
        return fi

    def _newton(self, residual, f, uc, load_steps, tol, maxiter, opname, x0=None, extra_diag=None):
        """Newton (``implicit.root``, sparse tangent Jacobian ``K_t(u)_ff`` + ``diag(extra_diag)``) for
        ``residual(u_free) = 0``; the load ramp ``f * s / load_steps`` (s < load_steps) is run
        first without a graph. Returns the full displacement ``[n_nodes, d]``."""
        from . import implicit
        if not isinstance(load_steps, numbers.Integral) or load_steps < 1:
            raise ValueError(f"{opname}: load_steps must be a positive integer, got {load_steps!r}")

        def jac(x, theta, uc_=None):
            with ds.no_grad():
                Ke = self.element_stiffness(self._full(x, uc_ if uc_ is not None else uc))
                return self._assemble_ff(Ke, extra_diag)
        x = ds.zeros((self.n_free,), dtype=f.dtype, device=f.device) if x0 is None else x0.detach()
        with ds.no_grad():
            for s in range(1, load_steps):
                frac = s / load_steps
                fs, ucs = f.detach() * frac, None if uc is None else uc.detach() * frac

                def res(uf, th, fs=fs, ucs=ucs):
                    return self._free(self._forces_or_inf(self._full(uf, ucs))) - self._free(fs)
                x = implicit.root(res, x, (), tol=tol, maxiter=maxiter, solver="sparse",
                                  jacobian=lambda z, th, ucs=ucs: jac(z, th, ucs))
        u_f = implicit.root(residual, x, (), tol=tol, maxiter=maxiter, solver="sparse", jacobian=jac)
        return self._full(u_f, uc)

    def compliance(self, u, loads):
        """Compliance ``f^T u`` (0-d Tensor) of displacement ``u`` under nodal ``loads`` (both
        ``[n_nodes, d]``): twice the strain energy at a linear equilibrium with zero
        prescribed displacements."""
        return (loads * u).sum()

    # ------------------------------------------------------------ dynamics
    def initial_state(self, x=None, v=None):
        """``State(x, v)``: deformed positions (default: the rest shape plus the prescribed
        displacements) and velocities (default zero), both ``[n_nodes, d]``."""
        if x is None:
            x = self.mesh.nodes if self.fixed_values is None else \
                self.mesh.nodes + self._full(ds.zeros((self.n_free,), dtype=self.mesh.nodes.dtype,
                                                      device=self.mesh.nodes.device), self._fixed_part())
        return super().initial_state(x, v)

    def state_shapes(self):
        s = (self.mesh.n_nodes, self.mesh.dim)
        return {"x": s, "v": s}

    def constrain(self, name, v):
        """Zero the fixed DOFs of a velocity (or its rate)."""
        mask = ds.tensor((~self.fixed).astype(np.float64), dtype=v.dtype, device=v.device)
        return v * mask

    def acceleration(self, state, t=0.0, control=None):
        """``{"v": M^-1 (f_ext - f_int(x - X))}`` (lumped mass; fixed DOFs zero); ``control``:
        extra nodal loads ``[n_nodes, d]`` or None."""
        u = state.x - self.mesh.nodes
        f = self.external_forces(control) - self.internal_forces(u)
        return {"v": self.constrain("v", f / self.lumped_mass().reshape(-1, 1))}

    def step_implicit(self, state, dt, loads=None, tol=1e-10, maxiter=50):
        """One implicit (backward) Euler step of ``M a = f_ext - f_int``: finds ``u'`` with
        ``M (u' - u - dt v) / dt^2 + f_int(u') = f_ext`` on the free DOFs (Newton,
        ``implicit.root`` with the sparse Jacobian ``M / dt^2 + K_t(u')``; one step for the
        linear material), then ``v' = (u' - u) / dt``. ``state``: ``State(x, v)``,
        ``[n_nodes, d]`` each; ``loads``: nodal loads ``[n_nodes, d]`` or None. Returns the
        new State; differentiable w.r.t. the state, ``E``, loads, density and the rest shape
        by implicit differentiation. Unconditionally stable (and dissipative)."""
        opname = "fem.step_implicit"
        self.check_state(state, opname)
        if not dt > 0:
            raise ValueError(f"{opname}: dt must be > 0, got {dt}")
        if self.n_free == 0:
            return state
        f = self.external_forces(loads)
        u0 = state.x - self.mesh.nodes
        uc = self._fixed_part()
        m_f = self._free(self.lumped_mass().reshape(-1, 1).expand(self.mesh.n_nodes, self.mesh.dim))
        pred = self._free(u0) + dt * self._free(state.v)
        inertia = m_f / (dt * dt)

        def residual(uf, th):
            return inertia * (uf - pred) + self._free(self._forces_or_inf(self._full(uf, uc))) - self._free(f)
        with ds.no_grad():
            extra = (inertia.detach() if isinstance(inertia, Tensor) else inertia)
        u1 = self._newton(residual, f, uc, 1, tol, maxiter, opname, x0=self._free(u0).detach(),
                          extra_diag=extra)
        v1 = self.constrain("v", (u1 - u0) / dt)
        return State(x=self.mesh.nodes + u1, v=v1)


class ImplicitEulerFEM(Integrator):
    """Backward Euler for ``fem.Elasticity`` in ``physics.simulate``: each step is
    ``system.step_implicit(state, dt, loads=control)``."""

    def step(self, system, state, t, dt, control=None):
        if not isinstance(system, Elasticity):
            raise TypeError(f"ImplicitEulerFEM: the system must be a fem.Elasticity, got {type(system).__name__}")
        return system.step_implicit(state, dt, loads=control)
