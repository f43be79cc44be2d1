"""Sparse solves, FEM and MPM on the GPU: values and gradients equal the CPU run's. Skipped (by
conftest.py) where no GPU with cupy is present."""
import numpy as np
import pytest

import diffsim as ds
import diffsim.sparse as sparse
from diffsim import physics
from diffsim.physics import fem

pytestmark = pytest.mark.cuda
DEVICE = "cuda"


def T(a, device="cpu", rg=False):
    return ds.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=rg)


def check_cpu_and_gpu_agree(build, rtol=1e-8):
    """Run ``build(device)`` -> (loss, params) on the CPU and the GPU; compare."""
    out = []
    for dev in ("cpu", DEVICE):
        loss, params = build(dev)
        assert loss.device.type == dev
        out.append((loss, ds.autograd.grad(loss, params)))
    (lc, gc), (lg, gg) = out
    np.testing.assert_allclose(float(lg), float(lc), rtol=1e-10)
    for a, b in zip(gc, gg):                 # each gradient lives where its parameter does
        np.testing.assert_allclose(b.cpu().numpy(), a.numpy(), rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("method", ["direct", "cg"])
def test_sparse_solve_on_gpu(method):
    n = 30
    rows = np.r_[np.arange(n), np.arange(n - 1), np.arange(1, n)]
    cols = np.r_[np.arange(n), np.arange(1, n), np.arange(n - 1)]
    vals = np.r_[np.full(n, 4.0), np.full(n - 1, -1.0), np.full(n - 1, -1.0)]
    rhs = np.sin(np.arange(n))

    def build(dev):
        v = T(vals, dev, True)
        b = T(rhs, dev, True)
        A = sparse.coo_tensor(T(np.stack([rows, cols]), dev).to(ds.int64), v, (n, n))
        x = sparse.solve(A, b, method=method, tol=1e-12)
        return (x ** 2).sum() + (A @ x).sum(), [v, b]
    check_cpu_and_gpu_agree(build, rtol=1e-7)


def test_fem_compliance_gradient_on_gpu():
    def build(dev):
        mesh = fem.rectangle_mesh(8, 4, 2.0, 1.0, element="quad", dtype=ds.float64)
        E = T(np.linspace(1.0, 2.0, mesh.n_elements), "cpu", True)
        model = fem.Elasticity(mesh, E=E, nu=0.3, fixed=fem.fixed_dofs(mesh, mesh.nodes_on("left"))).to(dev)
        f = model.surface_load("right", [0.0, -1.0])
        u = model.solve(f)
        return model.compliance(u, f), [E]
    check_cpu_and_gpu_agree(build)


def test_mpm_rollout_on_gpu():
    side = np.linspace(0.4, 0.5, 5)
    x0 = np.stack(np.meshgrid(side, side + 0.1, indexing="ij"), -1).reshape(-1, 2)

    def build(dev):
        E = T(30.0, dev, True)
        v0 = T(np.zeros_like(x0), dev, True)
        mpm = physics.MPM(T(x0, dev), n_grid=16, E=E, nu=0.2, density=1.0)
        s = physics.simulate(mpm, mpm.initial_state(v=v0), 10, 2e-3, integrator=physics.MPMIntegrator())
        return (s.x[:, 1] ** 2).sum(), [E, v0]
    check_cpu_and_gpu_agree(build)


@pytest.mark.parametrize("projection,boundary,advection", [
    ("jacobi", "closed", "semi_lagrangian"), ("cg", "closed", "maccormack"), ("fft", "periodic", "semi_lagrangian"),
    ("fft", "closed", "semi_lagrangian")])
def test_stable_fluids_steps_on_gpu(projection, boundary, advection):
    from diffsim.physics.grid import Grid
    g = Grid((12, 10), spacing=1.0 / 12)
    x = g.centers().numpy()
    rho0 = np.exp(-((x[..., 0] - 0.5) ** 2 + (x[..., 1] - 0.3) ** 2) / 0.02)
    v0 = 0.1 * np.stack([np.sin(3 * x[..., 1]), np.cos(2 * x[..., 0])], -1)

    def build(dev):
        sf = physics.StableFluids(g, buoyancy=1.0, vorticity=0.1, projection=projection, boundary=boundary,
                                  advection=advection)
        v = T(v0, dev, True)
        rho = T(rho0, dev, True)
        vv, rr = v, rho
        for _ in range(3):
            vv, rr = sf.step(vv, rr, 0.02)
        return (rr ** 2).sum() + (vv ** 2).sum(), [v, rho]
    check_cpu_and_gpu_agree(build, rtol=1e-6)
