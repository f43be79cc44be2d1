"""physics.fem: meshes, linear / Neo-Hookean elasticity, static solves, implicit Euler, gradients.

Checked against physics (patch test, Euler-Bernoulli cantilever, uniaxial tension), the
analytic SIMP sensitivity, autodiff Jacobians and central finite differences."""
import importlib.util
import pathlib
import sys

import numpy as np
import pytest

import diffsim as ds
from diffsim import physics
from diffsim.physics import fem
from diffsim.testing import gradcheck

ROOT = pathlib.Path(__file__).resolve().parents[1]
F64 = ds.float64


def distorted(mesh, amount, seed=0):
    """The mesh with interior nodes moved randomly by up to ``amount`` per coordinate."""
    X = mesh.nodes.numpy().copy()
    lo, hi = X.min(0), X.max(0)
    inner = ((X > lo + 1e-9) & (X < hi - 1e-9)).all(1)
    X[inner] += np.random.default_rng(seed).uniform(-amount, amount, (inner.sum(), X.shape[1]))
    return fem.Mesh(ds.tensor(X, dtype=F64), mesh.elements, mesh.kind), inner


# ------------------------------------------------------------------ meshes

def test_mesh_generators_shapes_and_orientation():
    m = fem.rectangle_mesh(4, 3, 2.0, 1.0, dtype=F64)
    assert m.nodes.shape == (20, 2) and m.elements.shape == (24, 3) and m.kind == "tri"
    q = fem.rectangle_mesh(4, 3, 2.0, 1.0, element="quad", dtype=F64)
    assert q.elements.shape == (12, 4)
    b = fem.box_mesh(2, 3, 4, 1.0, 2.0, 3.0, dtype=F64)
    assert b.nodes.shape == (3 * 4 * 5, 3) and b.elements.shape == (6 * 24, 4)
    for mesh, total in ((m, 2.0), (q, 2.0), (b, 6.0)):
        vol = fem.Elasticity(mesh).element_volumes().numpy()
        assert np.all(vol > 0)                          # positively oriented
        np.testing.assert_allclose(vol.sum(), total, rtol=1e-12)
    assert sorted(m.nodes_on("left").tolist()) == [0, 5, 10, 15]
    assert len(b.facets_on("front")) == 2 * 2 * 3


# ------------------------------------------------------------------ linear elasticity against physics

@pytest.mark.parametrize("kind", ["tri", "quad", "tet"])
def test_patch_test_uniform_strain_is_exact_on_a_distorted_mesh(kind):
    if kind == "tet":
        mesh, inner = distorted(fem.box_mesh(3, 3, 3, dtype=F64), 0.08)
    else:
        mesh, inner = distorted(fem.rectangle_mesh(5, 4, 2.0, 1.0, element=kind, dtype=F64), 0.1)
    d = mesh.dim
    rng = np.random.default_rng(1)
    A, c = rng.normal(size=(d, d)) * 1e-3, rng.normal(size=d) * 1e-2
    X = mesh.nodes.numpy()
    exact = X @ A.T + c                                     # uniform strain + rigid motion
    model = fem.Elasticity(mesh, E=2.5, nu=0.3,              # one material: uniform strain -> uniform stress
                           fixed=fem.fixed_dofs(mesh, np.nonzero(~inner)[0]), fixed_values=exact)
    u = model.solve().numpy()
    assert inner.sum() >= 1
    np.testing.assert_allclose(u, exact, rtol=0, atol=1e-13)
    # the internal forces of a uniform stress field cancel at interior nodes
    fi = model.internal_forces(ds.tensor(exact, dtype=F64)).numpy()
    assert np.abs(fi[inner]).max() < 1e-12


def test_stiffness_is_symmetric_and_annihilates_rigid_motions():
    mesh, _ = distorted(fem.rectangle_mesh(3, 3, element="quad", dtype=F64), 0.1)
    model = fem.Elasticity(mesh, E=2.0, nu=0.25)
    K = model.stiffness_matrix().to_dense().numpy()
    np.testing.assert_allclose(K, K.T, atol=1e-13)
    X = mesh.nodes.numpy()
    for rigid in (np.tile([1.0, 0.0], (len(X), 1)), np.tile([0.0, 1.0], (len(X), 1)),
                  np.stack([-X[:, 1], X[:, 0]], 1)):
        assert np.abs(K @ rigid.reshape(-1)).max() < 1e-12
    assert np.linalg.matrix_rank(K) == K.shape[0] - 3


@pytest.mark.parametrize("kind", ["quad", "tet"])
def test_uniaxial_tension_gives_young_modulus_and_poisson_ratio(kind):
    E, nu, s = 7.0, 0.3, 0.01
    mesh = fem.rectangle_mesh(4, 2, 2.0, 1.0, element=kind, dtype=F64) if kind == "quad" else \
        fem.box_mesh(3, 2, 2, 2.0, 1.0, 1.0, dtype=F64)
    d = mesh.dim
    fixed = fem.fixed_dofs(mesh, mesh.nodes_on("left"), 0) | fem.fixed_dofs(mesh, mesh.nodes_on("bottom"), 1)
    if d == 3:
        fixed |= fem.fixed_dofs(mesh, mesh.nodes_on("back"), 2)
    model = fem.Elasticity(mesh, E=E, nu=nu, plane="stress", fixed=fixed)
    u = model.solve(model.surface_load("right", [s] + [0.0] * (d - 1))).numpy()
    X = mesh.nodes.numpy()
    np.testing.assert_allclose(u[:, 0], s / E * X[:, 0], atol=1e-13)        # plane stress / 3-D: eps = s/E
    np.testing.assert_allclose(u[:, 1], -nu * s / E * X[:, 1], atol=1e-13)


def cantilever_tip_ratio(kind, nx, ny, L=10.0, h=1.0, E=1000.0, P=-1.0):
    mesh = fem.rectangle_mesh(nx, ny, L, h, element=kind, dtype=F64)
    model = fem.Elasticity(mesh, E=E, nu=0.3, fixed=fem.fixed_dofs(mesh, mesh.nodes_on("left")))
    u = model.solve(model.surface_load("right", [0.0, P / h]))
    tip = u.numpy()[mesh.nodes_on("right"), 1].mean()
    return tip / (P * L ** 3 / (3 * E * h ** 3 / 12))          # Euler-Bernoulli: P L^3 / (3 E I)


@pytest.mark.parametrize("kind", ["quad", "tri"])
def test_cantilever_tip_deflection_matches_euler_bernoulli_on_a_fine_mesh(kind):
    # L/h = 10: shear deformation (Timoshenko) adds ~0.8%, the clamp removes a little
    assert abs(cantilever_tip_ratio(kind, 160, 16) - 1.0) < 0.02


def test_cantilever_coarse_mesh_is_stiffer_and_converges():
    coarse, fine = cantilever_tip_ratio("quad", 20, 2), cantilever_tip_ratio("quad", 40, 4)
    assert 0.8 < coarse < fine < 1.02
    assert abs(fine - 1.0) < 0.05


def test_cg_and_direct_agree_and_reduced_matrix_and_to_device():
    mesh = fem.rectangle_mesh(6, 3, 3.0, 1.0, element="quad", dtype=F64)
    model = fem.Elasticity(mesh, E=5.0, nu=0.3, fixed=fem.fixed_dofs(mesh, mesh.nodes_on("left")))
    f = model.surface_load("right", [0.3, -1.0])
    np.testing.assert_allclose(model.solve(f, method="cg").numpy(), model.solve(f).numpy(), atol=1e-9)
    Kr = model.stiffness_matrix(reduced=True).to_dense().numpy()
    K = model.stiffness_matrix().to_dense().numpy()
    np.testing.assert_allclose(Kr, K[np.ix_(model.free_idx, model.free_idx)], atol=1e-13)
    moved = model.to("cpu")
    np.testing.assert_allclose(moved.solve(f).numpy(), model.solve(f).numpy(), atol=1e-14)


# ------------------------------------------------------------------ gradients

def tiny(kind="quad"):
    mesh = fem.rectangle_mesh(3, 2, 3.0, 1.0, element=kind, dtype=F64)
    fixed = fem.fixed_dofs(mesh, mesh.nodes_on("left"))
    rng = np.random.default_rng(0)
    loads = np.zeros((mesh.n_nodes, 2))
    loads[mesh.nodes_on("right"), 1] = -0.05
    loads += 0.01 * rng.normal(size=loads.shape)
    return mesh, fixed, rng, loads


@pytest.mark.parametrize("kind", ["tri", "quad"])
def test_linear_compliance_gradcheck_wrt_E_loads_rest_shape_and_prescribed_values(kind):
    mesh, fixed, rng, f0 = tiny(kind)
    E = ds.tensor(rng.uniform(1, 2, mesh.n_elements), dtype=F64, requires_grad=True)
    loads = ds.tensor(f0, dtype=F64, requires_grad=True)
    X = ds.tensor(mesh.nodes.numpy(), dtype=F64, requires_grad=True)
    uc = ds.tensor(rng.normal(size=(mesh.n_nodes, 2)) * 0.01, dtype=F64, requires_grad=True)

    def compliance(E, loads, X, uc):
        model = fem.Elasticity(fem.Mesh(X, mesh.elements, kind), E=E, nu=0.3, fixed=fixed, fixed_values=uc)
        u = model.solve(loads)
        return model.compliance(u, loads) + (u ** 2).sum()
    assert gradcheck(compliance, (E, loads, X, uc))


def test_compliance_gradient_equals_the_analytic_simp_sensitivity():
    mesh = fem.rectangle_mesh(6, 3, 6.0, 3.0, element="quad", dtype=F64)
    fixed = fem.fixed_dofs(mesh, mesh.nodes_on("left"))
    rng = np.random.default_rng(2)
    p, E0, Emin = 3.0, 1.0, 1e-3
    x = ds.tensor(rng.uniform(0.2, 1.0, mesh.n_elements), dtype=F64, requires_grad=True)
    model = fem.Elasticity(mesh, nu=0.3, fixed=fixed)
    model.E = Emin + x ** p * (E0 - Emin)
    f = model.surface_load("right", [0.0, -1.0])
    u = model.solve(f)
    model.compliance(u, f).backward()
    with ds.no_grad():
        k0 = model.unit_element_stiffness().numpy()
    ue = u.detach().numpy().reshape(-1)[model.edofs]
    analytic = -p * x.detach().numpy() ** (p - 1) * (E0 - Emin) * np.einsum("ei,eij,ej->e", ue, k0, ue)
    np.testing.assert_allclose(x.grad.numpy(), analytic, rtol=1e-10, atol=1e-14)


def test_neo_hookean_gradcheck_through_newton():
    mesh = fem.rectangle_mesh(2, 1, 2.0, 1.0, element="quad", dtype=F64)
    fixed = fem.fixed_dofs(mesh, mesh.nodes_on("left"))
    rng = np.random.default_rng(3)
    E = ds.tensor(rng.uniform(50, 100, 2), dtype=F64, requires_grad=True)
    loads = ds.tensor(rng.normal(size=(mesh.n_nodes, 2)) * 0.2, dtype=F64, requires_grad=True)
    X = ds.tensor(mesh.nodes.numpy(), dtype=F64, requires_grad=True)

    def fn(E, loads, X):
        model = fem.Elasticity(fem.Mesh(X, mesh.elements, "quad"), E=E, nu=0.3, material="neo-hookean",
                               fixed=fixed)
        return (model.solve(loads) ** 2).sum()
    assert gradcheck(fn, (E, loads, X))


# ------------------------------------------------------------------ Neo-Hookean

@pytest.mark.parametrize("kind", ["tri", "quad", "tet"])
def test_neo_hookean_reduces_to_linear_at_small_strain(kind):
    mesh = fem.box_mesh(4, 1, 1, 4.0, 1.0, 1.0, dtype=F64) if kind == "tet" else \
        fem.rectangle_mesh(8, 2, 4.0, 1.0, element=kind, dtype=F64)
    fixed = fem.fixed_dofs(mesh, mesh.nodes_on("left"))
    lin = fem.Elasticity(mesh, E=100.0, nu=0.3, fixed=fixed)
    nh = fem.Elasticity(mesh, E=100.0, nu=0.3, fixed=fixed, material="neo-hookean")
    t = [0.0, -1.0] + [0.0] * (mesh.dim - 2)
    rel = []
    for s in (1e-4, 1e-2):
        f = lin.surface_load("right", [s * v for v in t])
        ul, un = lin.solve(f).numpy(), nh.solve(f).numpy()
        rel.append(np.abs(ul - un).max() / np.abs(ul).max())
    assert rel[0] < 1e-3                                  # the difference is first order in the strain
    assert 30 < rel[1] / rel[0] < 300                     # (100x the load: ~100x the relative difference)
    # at the rest shape the tangent is the linear stiffness
    np.testing.assert_allclose(nh.stiffness_matrix(ds.zeros((mesh.n_nodes, mesh.dim), dtype=F64)).to_dense().numpy(),
                               lin.stiffness_matrix().to_dense().numpy(), atol=1e-10)


@pytest.mark.parametrize("kind", ["tri", "quad", "tet"])
def test_neo_hookean_forces_and_tangent_are_derivatives_of_the_energy(kind):
    mesh = fem.box_mesh(1, 1, 1, dtype=F64) if kind == "tet" else \
        fem.rectangle_mesh(2, 1, element=kind, dtype=F64)
    model = fem.Elasticity(mesh, E=ds.tensor(np.linspace(1, 2, mesh.n_elements), dtype=F64), nu=0.3,
                           material="neo-hookean")
    u = ds.tensor(np.random.default_rng(4).normal(size=(mesh.n_nodes, mesh.dim)) * 0.05, dtype=F64)
    np.testing.assert_allclose(ds.func.grad(model.energy)(u).numpy(), model.internal_forces(u).numpy(),
                               atol=1e-13)
    J = ds.func.jacobian(lambda z: model.internal_forces(z.reshape(u.shape)).reshape(-1))(u.reshape(-1))
    np.testing.assert_allclose(model.stiffness_matrix(u).to_dense().numpy(), J.numpy(), atol=1e-12)


def test_neo_hookean_large_load_with_load_steps():
    mesh = fem.rectangle_mesh(8, 2, 4.0, 1.0, element="quad", dtype=F64)
    model = fem.Elasticity(mesh, E=10.0, nu=0.3, material="neo-hookean",
                           fixed=fem.fixed_dofs(mesh, mesh.nodes_on("left")))
    f = model.surface_load("right", [0.0, -0.5])
    u = model.solve(f, load_steps=4)
    r = model.internal_forces(u) - f
    assert np.abs(r.numpy()[~model.fixed]).max() < 1e-9
    tip = u.numpy()[mesh.nodes_on("right"), 1].mean()
    lin = fem.Elasticity(mesh, E=10.0, nu=0.3, fixed=model.fixed).solve(f).numpy()[mesh.nodes_on("right"), 1].mean()
    assert -4.0 < tip < 0 and abs(tip) < abs(lin)                  # large deflection stiffens


# ------------------------------------------------------------------ dynamics

def beam_model(material="linear", E=1e4):
    mesh = fem.rectangle_mesh(4, 1, 4.0, 1.0, element="quad", dtype=F64)
    return fem.Elasticity(mesh, E=E, nu=0.3, material=material, fixed=fem.fixed_dofs(mesh, mesh.nodes_on("left")),
                          density=1.0, gravity=(0.0, -1.0))


@pytest.mark.parametrize("material", ["linear", "neo-hookean"])
def test_implicit_euler_matches_explicit_at_small_dt_and_reaches_static_equilibrium(material):
    model = beam_model(material)
    s0 = model.initial_state()
    T = 0.05
    ref = physics.simulate(model, s0, int(round(T / 5e-5)), 5e-5)         # semi-implicit Euler, tiny dt
    scale = np.abs(ref.x.numpy() - model.mesh.nodes.numpy()).max()
    err = []
    for dt in (1e-3, 5e-4):
        s = s0
        for _ in range(int(round(T / dt))):
            s = model.step_implicit(s, dt)
        err.append(np.abs(s.x.numpy() - ref.x.numpy()).max() / scale)
    assert err[1] < 0.02 and 1.7 < err[0] / err[1] < 2.3                  # first order in dt
    # unconditionally stable: huge steps damp out to the static solution under gravity
    s = s0
    for _ in range(5):
        s = model.step_implicit(s, 10.0)
    static = model.solve()
    np.testing.assert_allclose(s.x.numpy() - model.mesh.nodes.numpy(), static.numpy(),
                               atol=1e-4 * np.abs(static.numpy()).max())


def test_implicit_euler_is_stable_far_beyond_the_explicit_limit_and_works_in_simulate():
    model = beam_model("linear", E=1e4)
    s0 = model.initial_state()
    traj = physics.simulate(model, s0, 40, 0.05, integrator=fem.ImplicitEulerFEM(), record="all")
    weight = model.lumped_mass().reshape(-1, 1) * ds.tensor([0.0, -1.0], dtype=F64)
    e = [model.energy(physics.State(x=traj.x[i], v=traj.v[i])).item()      # elastic + kinetic
         - (weight * (traj.x[i] - model.mesh.nodes)).sum().item()          # + gravity's potential
         for i in range(traj.x.shape[0])]
    assert all(np.isfinite(e)) and max(e) <= e[0] + 1e-12           # total energy never grows
    with pytest.raises(TypeError, match="Elasticity"):
        fem.ImplicitEulerFEM().step(physics.MassSpring.rope(3), None, 0.0, 0.1)


@pytest.mark.parametrize("material", ["linear", "neo-hookean"])
def test_implicit_euler_gradcheck(material):
    mesh = fem.rectangle_mesh(2, 1, 2.0, 1.0, element="quad", dtype=F64)
    fixed = fem.fixed_dofs(mesh, mesh.nodes_on("left"))
    E = ds.tensor([60.0, 90.0], dtype=F64, requires_grad=True)
    v0 = ds.tensor(np.random.default_rng(5).normal(size=(mesh.n_nodes, 2)) * 0.1 * ~fixed, dtype=F64,
                   requires_grad=True)
    rho = ds.tensor(1.3, dtype=F64, requires_grad=True)

    def fn(E, v0, rho):
        model = fem.Elasticity(mesh, E=E, nu=0.3, material=material, fixed=fixed, density=rho, gravity=(0.0, -1.0))
        s = physics.State(x=mesh.nodes, v=v0)
        for _ in range(3):
            s = model.step_implicit(s, 0.05)
        return (s.x ** 2).sum() + (s.v ** 2).sum()
    assert gradcheck(fn, (E, v0, rho))


# ------------------------------------------------------------------ errors

def test_inverted_elements_raise_clear_errors():
    mesh = fem.rectangle_mesh(2, 1, dtype=F64)
    el = mesh.elements.copy()
    el[1] = el[1][[0, 2, 1]]
    with pytest.raises(ValueError, match=r"inverted.*first element 1"):
        fem.Elasticity(fem.Mesh(mesh.nodes, el, "tri")).stiffness_matrix()
    model = fem.Elasticity(mesh, material="neo-hookean", fixed=fem.fixed_dofs(mesh, mesh.nodes_on("left")))
    u = ds.zeros((mesh.n_nodes, 2), dtype=F64)
    u = u + ds.tensor(np.where(mesh.nodes.numpy()[:, :1] > 0.9, [[-2.0, 0.0]], 0.0), dtype=F64)   # push through
    with pytest.raises(RuntimeError, match=r"inverted in the deformed shape"):
        model.internal_forces(u)
    with pytest.raises(RuntimeError, match="inverted"):
        model.energy(u)


def test_bad_input_raises_clear_errors():
    mesh = fem.rectangle_mesh(2, 2, dtype=F64)
    fixed = fem.fixed_dofs(mesh, mesh.nodes_on("left"))
    with pytest.raises(ValueError, match=r"E must be .*\[8\].*\[5\]"):
        fem.Elasticity(mesh, E=ds.ones(5, dtype=F64))
    with pytest.raises(ValueError, match=r"> 0.*E\[3\]"):
        fem.Elasticity(mesh, E=np.where(np.arange(8) == 3, -1.0, 1.0))
    with pytest.raises(ValueError, match=r"density must be a positive number or Tensor \[n_elem\] = \[8\]"):
        fem.Elasticity(mesh, density=np.ones(3))
    with pytest.raises(ValueError, match="Poisson"):
        fem.Elasticity(mesh, nu=0.5)
    with pytest.raises(ValueError, match=r"fixed must be a boolean mask \[n_nodes, d\] = \[9, 2\]"):
        fem.Elasticity(mesh, fixed=np.zeros((9, 3), bool))
    with pytest.raises(ValueError, match=r"fixed_values must have shape"):
        fem.Elasticity(mesh, fixed=fixed, fixed_values=np.zeros((3, 2)))
    with pytest.raises(RuntimeError, match="no Dirichlet DOFs"):
        fem.Elasticity(mesh).solve(ds.ones((9, 2), dtype=F64))
    model = fem.Elasticity(mesh, fixed=fixed)
    with pytest.raises(ValueError, match=r"loads must be a Tensor \[n_nodes, d\] = \[9, 2\], got \[9, 3\]"):
        model.solve(ds.ones((9, 3), dtype=F64))
    with pytest.raises(RuntimeError, match="singular"):       # only one node fixed: rotation is free
        fem.Elasticity(mesh, fixed=fem.fixed_dofs(mesh, [0])).solve(ds.ones((9, 2), dtype=F64))
    with pytest.raises(ValueError, match="kind"):
        fem.Mesh(mesh.nodes, mesh.elements, "hex")
    with pytest.raises(ValueError, match=r"elements must be an integer array \[n_elem, 4\]"):
        fem.Mesh(mesh.nodes, mesh.elements, "quad")
    with pytest.raises(ValueError, match=r"node indices"):
        fem.Mesh(mesh.nodes, mesh.elements + 5, "tri")
    with pytest.raises(ValueError, match="positive integer"):
        fem.rectangle_mesh(0, 2)
    with pytest.raises(ValueError, match="side"):
        mesh.nodes_on("front")
    with pytest.raises(ValueError, match="displacement"):
        model.internal_forces(ds.zeros(9, dtype=F64))
    with pytest.raises(ValueError, match="dt must be > 0"):
        model.step_implicit(model.initial_state(), 0.0)


# ------------------------------------------------------------------ example and benchmark

def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def top88_reference(nelx, nely, volfrac, penal, rmin, iters):
    """Andreassen et al.'s top88.m (density filter, ft=2) ported line by line to numpy/scipy, with its
    hand-derived sensitivities and MATLAB's column-major numbering: the compliance history."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as sla
    E0, Emin, nu = 1.0, 1e-9, 0.3
    A11 = np.array([[12, 3, -6, -3], [3, 12, 3, 0], [-6, 3, 12, -3], [-3, 0, -3, 12]])
    A12 = np.array([[-6, -3, 0, 3], [-3, -6, -3, -6], [0, -3, -6, 3], [3, -6, 3, -6]])
    B11 = np.array([[-4, 3, -2, 9], [3, -4, -9, 4], [-2, -9, -4, -3], [9, 4, -3, -4]])
    B12 = np.array([[2, -3, 4, -9], [-3, 2, 9, -2], [4, 9, 2, 3], [-9, -2, 3, 2]])
    KE = 1 / (1 - nu ** 2) / 24 * (np.block([[A11, A12], [A12.T, A11]]) + nu * np.block([[B11, B12], [B12.T, B11]]))
    nodenrs = np.arange(1, (1 + nelx) * (1 + nely) + 1).reshape(1 + nelx, 1 + nely).T
    edofVec = (2 * nodenrs[:-1, :-1] + 1).T.reshape(-1)
    edofMat = edofVec[:, None] + np.array([0, 1, 2 * nely + 2, 2 * nely + 3, 2 * nely, 2 * nely + 1, -2, -1]) - 1
    iK = np.kron(edofMat, np.ones((8, 1))).reshape(-1).astype(int)
    jK = np.kron(edofMat, np.ones((1, 8))).reshape(-1).astype(int)
    ndof = 2 * (nely + 1) * (nelx + 1)
    F = np.zeros(ndof)
    F[1] = -1
    free = np.setdiff1d(np.arange(ndof), np.union1d(np.arange(0, 2 * (nely + 1), 2), [ndof - 1]))
    iH, jH, sH = [], [], []
    R = int(np.ceil(rmin))
    for i1 in range(nelx):
        for j1 in range(nely):
            for i2 in range(max(i1 - R + 1, 0), min(i1 + R, nelx)):
                for j2 in range(max(j1 - R + 1, 0), min(j1 + R, nely)):
                    iH.append(i1 * nely + j1)
                    jH.append(i2 * nely + j2)
                    sH.append(max(0.0, rmin - np.hypot(i1 - i2, j1 - j2)))
    H = sp.coo_matrix((sH, (iH, jH)), shape=(nelx * nely,) * 2).tocsr()
    Hs = np.asarray(H.sum(1)).ravel()
    x = np.full(nelx * nely, volfrac)
    xPhys, hist = x.copy(), []
    for it in range(iters + 1):
        sK = (KE.reshape(-1)[None, :] * (Emin + xPhys[:, None] ** penal * (E0 - Emin))).reshape(-1)
        K = sp.coo_matrix((sK, (iK, jK)), shape=(ndof, ndof)).tocsc()
        U = np.zeros(ndof)
        U[free] = sla.spsolve(K[free][:, free], F[free])
        ce = np.einsum("ei,ij,ej->e", U[edofMat], KE, U[edofMat])
        hist.append(((Emin + xPhys ** penal * (E0 - Emin)) * ce).sum())
        if it == iters:
            return hist
        dc = H @ (-penal * (E0 - Emin) * xPhys ** (penal - 1) * ce / Hs)
        dv = H @ (np.ones(nelx * nely) / Hs)
        l1, l2, move = 0.0, 1e9, 0.2
        while (l2 - l1) / (l1 + l2) > 1e-3:
            lmid = 0.5 * (l2 + l1)
            xnew = np.maximum(0, np.maximum(x - move, np.minimum(1, np.minimum(x + move,
                                                                             x * np.sqrt(-dc / dv / lmid)))))
            xPhys = (H @ xnew) / Hs
            if xPhys.sum() > volfrac * nelx * nely:
                l1 = lmid
            else:
                l2 = lmid
        x = xnew


def test_topology_optimization_example_small_matches_the_88_line_reference(tmp_path):
    mod = _load(ROOT / "examples" / "topology_optimization.py", "topology_optimization")
    img = tmp_path / "mbb.png"
    res = mod.main(["--nelx", "30", "--nely", "10", "--iters", "20", "--image", str(img), "--quiet"])
    h = res["history"]
    assert res["iterations"] == 20 and len(h) == 20
    ref = top88_reference(30, 10, 0.5, 3.0, 1.5, 20)          # hand-derived sensitivities
    np.testing.assert_allclose(h + [res["compliance"]], ref, rtol=1e-8)
    assert res["compliance"] < 0.6 * h[0] and h[-1] < h[0]
    assert abs(res["volume"] - 0.5) < 2e-3
    x = res["xPhys"]
    assert x.shape == (10, 30) and x.min() >= 0 and x.max() <= 1
    assert x.max() > 0.99 and x.min() < 0.01                     # solid and void appear
    if res["image"] is not None:
        assert img.exists()


def test_fem_benchmark_runs_small():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        mod = _load(ROOT / "benchmarks" / "fem.py", "fem_bench")
        rows = mod.run(n=12, repeats=1)                 # raises if the gradients disagree
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert {r["workload"].split(": ")[-1] for r in rows} == {"assembly", "factorization+solve", "adjoint", "total"}
    assert all(r["diffsim_s"] > 0 and r["baseline_s"] > 0 and r["ratio"] > 0 for r in rows)


def test_cached_geometry_follows_in_place_changes_of_the_rest_shape():
    mesh = fem.rectangle_mesh(4, 2, 2.0, 1.0, element="quad", dtype=F64)
    model = fem.Elasticity(mesh, E=3.0, fixed=fem.fixed_dofs(mesh, mesh.nodes_on("left")))
    f = model.surface_load("right", [0.0, -1.0])
    u1 = model.solve(f).numpy()
    with ds.no_grad():
        mesh.nodes.mul_(ds.tensor([2.0, 1.0], dtype=F64))     # in place: the cache must notice
    u2 = model.solve(f).numpy()
    fresh = fem.Elasticity(fem.Mesh(mesh.nodes.detach().clone(), mesh.elements, "quad"), E=3.0, fixed=model.fixed)
    np.testing.assert_allclose(u2, fresh.solve(f).numpy(), rtol=1e-12)
    assert not np.allclose(u1, u2)
