"""physics.grid: finite-difference operators, heat / wave / advection steppers, Poisson, ds.fft."""
import numpy as np
import pytest

import diffsim as ds
from diffsim.physics import grid as G
from diffsim.testing import gradcheck, gradgradcheck

F64 = ds.float64
BCS = ["periodic", "neumann", "dirichlet"]


def t64(a, grad=False):
    return ds.tensor(np.asarray(a, dtype=np.float64), dtype=F64, requires_grad=grad)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ---------------------------------------------------------------- grid and operators

def test_grid_geometry():
    g = G.Grid((4, 2), spacing=(0.5, 1.0), origin=(-1.0, 0.0))
    c = g.centers().numpy()
    assert c.shape == (4, 2, 2)
    assert np.allclose(c[0, 0], [-0.75, 0.5]) and np.allclose(c[3, 1], [0.75, 1.5])
    assert g.extent == (2.0, 2.0) and g.numel == 8 and g.ndim == 2
    with pytest.raises(ValueError, match="spacing"):
        G.Grid((3, 3), spacing=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="shape"):
        G.Grid((2, 2, 2, 2))


@pytest.mark.parametrize("bc", BCS)
@pytest.mark.parametrize("shape", [(9,), (7, 6), (6, 7, 6)])
def test_div_grad_is_laplacian_and_curl_grad_is_zero(bc, shape, rng):
    g = G.Grid(shape, spacing=[0.3, 0.5, 0.4][:len(shape)])
    u = t64(rng.standard_normal(shape))
    dg = G.divergence(G.gradient(u, g, bc, scheme="forward"), g, bc, scheme="backward")
    lap = G.laplacian(u, g, bc)
    inner = (slice(1, -1),) * len(shape)
    np.testing.assert_allclose(dg.numpy()[inner], lap.numpy()[inner], atol=1e-10)
    if bc == "periodic":                  # no boundary: the identity holds everywhere
        np.testing.assert_allclose(dg.numpy(), lap.numpy(), atol=1e-10)
    if len(shape) >= 2:
        c = G.curl(G.gradient(u, g, bc), g, bc).numpy()
        inner2 = (slice(2, -2),) * len(shape)
        assert np.abs(c[inner2]).max() < 1e-10
        if bc == "periodic":
            assert np.abs(c).max() < 1e-10


def test_operators_second_order_on_smooth_field():
    errs = []
    for n in (16, 32):
        g = G.Grid((n, n), spacing=1.0 / n)
        X = g.centers().numpy()
        u = t64(np.sin(2 * np.pi * X[..., 0]) * np.cos(2 * np.pi * X[..., 1]))
        lap = G.laplacian(u, g, "periodic").numpy()
        errs.append(np.abs(lap + 8 * np.pi ** 2 * u.numpy()).max())
    assert 3.5 < errs[0] / errs[1] < 4.5


@pytest.mark.parametrize("bc", BCS)
def test_laplacian_matrix_matches_stencil_with_conductivity(bc, rng):
    g = G.Grid((6, 5), spacing=(0.2, 0.3))
    u, k = t64(rng.standard_normal((6, 5))), t64(rng.random((6, 5)) + 0.5)
    L = G.laplacian_matrix(g, bc, conductivity=k)
    b = G.laplacian(ds.zeros(6, 5, dtype=F64), g, bc, 0.7, conductivity=k)
    ref = G.laplacian(u, g, bc, 0.7, conductivity=k)
    np.testing.assert_allclose(((L @ u.reshape(-1)).reshape(6, 5) + b).numpy(), ref.numpy(), atol=1e-10)
    dense = L.to_dense().numpy()
    np.testing.assert_allclose(dense, dense.T, atol=1e-12)      # symmetric: CG applies


@pytest.mark.parametrize("bc", BCS)
def test_gradcheck_operators(bc, rng):
    g = G.Grid((5, 4), spacing=(0.5, 0.7))
    u, k = t64(rng.random((5, 4)), True), t64(rng.random((5, 4)) + 0.5, True)
    v = t64(rng.standard_normal((5, 4, 2)), True)
    assert gradcheck(lambda u: G.gradient(u, g, bc, 0.3), (u,))
    assert gradcheck(lambda v: G.divergence(v, g, bc), (v,))
    assert gradcheck(lambda v: G.curl(v, g, bc), (v,))
    assert gradcheck(lambda u, k: G.laplacian(u, g, bc, 0.3, conductivity=k), (u, k))
    g3 = G.Grid((3, 4, 3), spacing=0.5)
    v3 = t64(rng.standard_normal((3, 4, 3, 3)), True)
    assert gradcheck(lambda v: G.curl(v, g3, bc), (v3,))


def test_sample_matches_linear_field_and_gradchecks(rng):
    g = G.Grid((6, 5), spacing=(0.5, 0.25), origin=(1.0, -1.0))
    X = g.centers().numpy()
    f = t64(2 * X[..., 0] - 3 * X[..., 1] + 1)
    pts = t64(np.stack([rng.uniform(1.3, 3.7, 20), rng.uniform(-0.85, 0.1, 20)], -1))
    np.testing.assert_allclose(G.sample(f, pts, g).numpy(), 2 * pts.numpy()[:, 0] - 3 * pts.numpy()[:, 1] + 1,
                               atol=1e-12)
    fv = t64(rng.standard_normal((6, 5, 3)), True)
    p = t64(np.stack([rng.uniform(0.5, 4.5, 7), rng.uniform(-1.5, 0.5, 7)], -1), True)  # some outside: clamped
    assert gradcheck(lambda f, p: G.sample(f, p, g), (fv, p))
    assert gradcheck(lambda f, p: G.sample(f, p, g, "periodic"), (fv, p))
    assert gradgradcheck(lambda f, p: G.sample(f, p, g), (fv, p))


# ---------------------------------------------------------------- heat

D, T0, T = 0.5, 0.01, 0.01


def _gauss(x, t):
    return np.sqrt(T0 / (T0 + t)) * np.exp(-x ** 2 / (4 * D * (T0 + t)))


def test_heat_explicit_spatial_convergence_order():
    errs = []
    for n in (64, 128, 256):
        g = G.Grid(n, spacing=2.0 / n, origin=-1.0)
        x = g.axes()[0].numpy()
        h = 2.0 / n
        steps = int(np.ceil(T / (0.25 * h * h / D)))
        u = G.HeatEquation(g, D, bc="dirichlet", method="explicit").rollout(t64(_gauss(x, 0)), T / steps, steps)
        errs.append(np.abs(u.numpy() - _gauss(x, T)).max())
    order = np.log2(np.array(errs[:-1]) / errs[1:])
    assert errs[-1] < 1e-3
    assert np.all(order > 1.7), (errs, order)


@pytest.mark.parametrize("method,expected", [("backward_euler", 1.0), ("crank_nicolson", 2.0)])
def test_heat_implicit_temporal_convergence_order(method, expected):
    g = G.Grid(2000, spacing=2.0 / 2000, origin=-1.0)
    x = g.axes()[0].numpy()
    errs = []
    for steps in (4, 8, 16):
        u = G.HeatEquation(g, D, bc="dirichlet", method=method).rollout(t64(_gauss(x, 0)), T / steps, steps)
        errs.append(np.abs(u.numpy() - _gauss(x, T)).max())
    order = np.log2(np.array(errs[:-1]) / errs[1:])
    assert np.all(np.abs(order - expected) < 0.2), (errs, order)


def test_heat_2d_gaussian_and_solvers_agree():
    n = 48
    g = G.Grid((n, n), spacing=2.0 / n, origin=-1.0)
    X = g.centers().numpy()
    r2 = (X ** 2).sum(-1)
    u0 = t64(np.exp(-r2 / (4 * D * T0)))
    exact = (T0 / (T0 + T)) * np.exp(-r2 / (4 * D * (T0 + T)))
    cn = G.HeatEquation(g, D, method="crank_nicolson").rollout(u0, T / 10, 10)
    cg = G.HeatEquation(g, D, method="crank_nicolson", solver="cg").rollout(u0, T / 10, 10)
    assert np.abs(cn.numpy() - exact).max() < 5e-3
    np.testing.assert_allclose(cg.numpy(), cn.numpy(), atol=1e-8)


def test_heat_unstable_explicit_step_raises():
    g = G.Grid((10, 10), spacing=0.1)
    limit = G.explicit_stability_limit(g, 2.0)
    assert np.isclose(limit, 0.1 ** 2 / (2 * 2.0 * 2))
    u = ds.zeros(10, 10, dtype=F64)
    G.heat_step(u, g, limit, 2.0)                                  # at the limit: fine
    with pytest.raises(ValueError, match="stability limit"):
        G.heat_step(u, g, 1.01 * limit, 2.0)
    k = np.ones((10, 10))
    k[3, 3] = 4.0                                                  # the maximum conductivity sets the limit
    with pytest.raises(ValueError, match="stability limit"):
        G.heat_step(u, g, 0.6 * limit, t64(k))


def test_mismatched_grid_and_bad_bc_raise():
    g = G.Grid((8, 6))
    with pytest.raises(ValueError, match=r"does not match the grid"):
        G.laplacian(ds.zeros(6, 8, dtype=F64), g)
    with pytest.raises(ValueError, match=r"does not match the grid"):
        G.divergence(ds.zeros(8, 6, 3, dtype=F64), g)
    with pytest.raises(ValueError, match="does not match the grid"):
        G.HeatEquation(g, t64(np.ones((8, 5))), method="explicit").step(ds.zeros(8, 6, dtype=F64), 0.01)
    with pytest.raises(ValueError, match="unknown boundary condition"):
        G.gradient(ds.zeros(8, 6, dtype=F64), g, bc="robin")
    with pytest.raises(ValueError, match="fft"):
        G.poisson(ds.zeros(8, 6, dtype=F64), g, bc=("periodic", "dirichlet"), method="fft")


@pytest.mark.parametrize("method", ["explicit", "backward_euler", "crank_nicolson"])
def test_heat_gradcheck_with_varying_conductivity(method, rng):
    g = G.Grid((5, 4), spacing=(0.5, 0.7))
    u, k = t64(rng.random((5, 4)), True), t64(rng.random((5, 4)) + 0.5, True)
    s = t64(rng.random((5, 4)), True)
    assert gradcheck(lambda u, k, s: G.heat_step(u, g, 0.05, k, method=method, value=0.2, source=s), (u, k, s))
    assert gradcheck(lambda u, k: G.heat_step(u, g, 0.05, k, method=method, bc="periodic"), (u, k))


# ---------------------------------------------------------------- wave, advection

def test_wave_leapfrog_standing_wave_and_cfl():
    n = 64
    g = G.Grid(n, spacing=1.0 / n)
    x = g.axes()[0].numpy()
    c, dt, steps = 1.0, 0.5 / n, 2 * n            # one period of sin(2 pi x) at c = 1
    u_prev = t64(np.sin(2 * np.pi * x) * np.cos(2 * np.pi * c * -dt))
    u = t64(np.sin(2 * np.pi * x))
    for _ in range(steps):
        u, u_prev = G.wave_step(u, u_prev, g, dt, c, bc="periodic"), u
    assert np.abs(u.numpy() - np.sin(2 * np.pi * x) * np.cos(2 * np.pi * c * steps * dt)).max() < 5e-3
    with pytest.raises(ValueError, match="CFL"):
        G.wave_step(u, u_prev, g, 1.5 / n, c)


@pytest.mark.parametrize("method", ["upwind", "semi_lagrangian", "maccormack"])
def test_advection_translates_periodic_profile(method):
    n = 64
    g = G.Grid(n, spacing=1.0 / n)
    x = g.axes()[0].numpy()
    q = t64(np.exp(-((x - 0.3) / 0.08) ** 2))
    v = t64(np.full((n, 1), 0.5))
    dt = 0.4 / n / 0.5 if method == "upwind" else 2.5 / n
    steps = int(round(0.4 / (0.5 * dt)))
    for _ in range(steps):
        q = G.advect(q, v, g, dt, method, bc="periodic")
    exact = np.exp(-((x - 0.3 - 0.5 * steps * dt) / 0.08) ** 2)
    err = np.abs(q.numpy() - exact).max()
    assert err < {"upwind": 0.4, "semi_lagrangian": 0.3, "maccormack": 0.1}[method], err
    assert abs(q.numpy().sum() - exact.sum()) / exact.sum() < 0.02


@pytest.mark.parametrize("method", ["upwind", "semi_lagrangian", "maccormack"])
def test_advection_diffusion_gradcheck(method, rng):
    g = G.Grid((5, 4), spacing=(0.5, 0.7))
    q, v = t64(rng.random((5, 4)), True), t64(rng.standard_normal((5, 4, 2)) * 0.5, True)
    assert gradcheck(lambda q, v: G.advection_diffusion_step(q, v, g, 0.1, 0.3, method), (q, v))
    with pytest.raises(ValueError, match="CFL"):
        G.advect(q, v * 10, g, 0.5, "upwind")


# ---------------------------------------------------------------- Poisson

@pytest.mark.parametrize("method", ["fft", "direct", "cg", "jacobi"])
def test_poisson_dirichlet_manufactured_solution(method):
    errs = []
    for n in (16, 32):
        g = G.Grid((n, n), spacing=1.0 / n)
        X = g.centers().numpy()
        exact = np.sin(np.pi * X[..., 0]) * np.sin(2 * np.pi * X[..., 1]) + 1.0      # value 1 on the boundary
        f = t64(-5 * np.pi ** 2 * (exact - 1.0))
        u = G.poisson(f, g, "dirichlet", value=1.0, method=method, iterations=3000)
        errs.append(np.abs(u.numpy() - exact).max())
    assert errs[1] < 5e-3 and 3.3 < errs[0] / errs[1] < 4.7, errs      # second order


@pytest.mark.parametrize("bc,methods", [("periodic", ["fft", "direct", "cg"]), ("neumann", ["fft", "direct", "cg"])])
def test_poisson_singular_cases(bc, methods, rng):
    n = 32
    g = G.Grid((n, n), spacing=1.0 / n)
    X = g.centers().numpy()
    exact = np.cos(2 * np.pi * X[..., 0]) * np.cos(np.pi * X[..., 1]) if bc == "neumann" else \
        np.sin(2 * np.pi * X[..., 0]) * np.cos(4 * np.pi * X[..., 1])
    u_ref = t64(exact)
    f = G.laplacian(u_ref, g, bc)                 # discrete manufactured right-hand side
    for m in methods:
        u = G.poisson(f, g, bc, method=m)
        np.testing.assert_allclose(u.numpy(), exact - exact.mean(), atol=1e-7, err_msg=m)


@pytest.mark.parametrize("bc", ["neumann", "periodic", ("neumann", "periodic")])
def test_poisson_jacobi_converges_on_singular_problems(bc, rng):
    """Plain Jacobi oscillates forever on the checkerboard mode of a Neumann / even periodic
    grid (the iteration matrix has eigenvalue -1); the singular cases need damping."""
    g = G.Grid((6, 4), spacing=(0.5, 0.7))
    f = t64(rng.standard_normal((6, 4)))
    u = G.poisson(f, g, bc, method="jacobi", iterations=3000)
    ref = G.poisson(f, g, bc, method="direct")
    np.testing.assert_allclose(u.numpy(), ref.numpy(), atol=1e-8)


@pytest.mark.parametrize("bc", BCS)
def test_poisson_and_laplacian_matrix_on_a_single_cell(bc):
    g = G.Grid((1,), spacing=0.5)
    L = G.laplacian_matrix(g, bc)
    assert L.shape == (1, 1)
    np.testing.assert_allclose(L.to_dense().numpy(), [[0.0 if bc != "dirichlet" else -16.0]])
    f = t64([2.0])
    u = G.poisson(f, g, bc, method="direct")
    np.testing.assert_allclose(u.numpy(), [0.0 if bc != "dirichlet" else -0.125])


@pytest.mark.parametrize("bc,method", [("periodic", "fft"), ("periodic", "cg"), ("neumann", "direct"),
                                       ("neumann", "fft"), (("dirichlet", "neumann"), "fft"),
                                       ("dirichlet", "direct"), ("dirichlet", "cg"), ("dirichlet", "jacobi")])
def test_poisson_gradcheck(bc, method, rng):
    g = G.Grid((5, 4), spacing=(0.5, 0.7))
    f = t64(rng.random((5, 4)), True)
    assert gradcheck(lambda f: G.poisson(f, g, bc, 0.5, method=method, iterations=20, tol=1e-13), (f,))


# ---------------------------------------------------------------- ds.fft

def test_fft_ops_roundtrip_and_gradcheck(rng):
    x = t64(rng.standard_normal((4, 5)), True)
    X = ds.fft.rfftn(x)
    np.testing.assert_allclose(X.detach().numpy()[..., 0] + 1j * X.detach().numpy()[..., 1], np.fft.rfftn(x.detach().numpy()), atol=1e-12)
    np.testing.assert_allclose(ds.fft.irfftn(X, s=(4, 5)).detach().numpy(), x.detach().numpy(), atol=1e-12)
    assert gradcheck(lambda x: ds.fft.rfftn(x), (x,))
    assert gradcheck(lambda x: ds.fft.rfftn(x, dim=0), (x,))
    for s in [(4, 4), (4, 5)]:
        Z = t64(rng.standard_normal((4, 3, 2)), True)
        assert gradcheck(lambda Z: ds.fft.irfftn(Z, s=s), (Z,))
    z = t64(rng.standard_normal((3, 4, 2)), True)
    assert gradcheck(ds.fft.fftn, (z,)) and gradcheck(ds.fft.ifftn, (z,))
    assert gradgradcheck(lambda x: (ds.fft.rfftn(x) ** 2).sum(), (x,))
    with pytest.raises(RuntimeError, match=r"\[..., 2\]"):
        ds.fft.fftn(t64(np.ones((3, 4))))


# ---------------------------------------------------------------- example

def _load_example(name):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_heat_inverse_example_recovers_conductivity(tmp_path):
    mod = _load_example("heat_inverse")
    plot = tmp_path / "heat.png"
    res = mod.main(["--n", "12", "--iters", "30", "--plot", str(plot)])
    assert res["losses"][-1] < 0.2 * res["losses"][0]
    assert res["rel_err_final"] < 0.5 * res["rel_err_initial"], (res["rel_err_initial"], res["rel_err_final"])
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert plot.exists() and plot.stat().st_size > 0


def test_fft_1d_wrappers(rng):
    x = t64(rng.standard_normal((3, 8)))
    X = ds.fft.rfft(x)
    np.testing.assert_allclose(X.numpy()[..., 0] + 1j * X.numpy()[..., 1], np.fft.rfft(x.numpy()), atol=1e-12)
    np.testing.assert_allclose(ds.fft.irfft(X, n=8).numpy(), x.numpy(), atol=1e-12)
    z = t64(rng.standard_normal((3, 8, 2)))
    Z = ds.fft.fft(z, dim=0)
    np.testing.assert_allclose(Z.numpy()[..., 0] + 1j * Z.numpy()[..., 1],
                               np.fft.fft(z.numpy()[..., 0] + 1j * z.numpy()[..., 1], axis=0), atol=1e-12)
    np.testing.assert_allclose(ds.fft.ifft(Z, dim=0).numpy(), z.numpy(), atol=1e-12)
