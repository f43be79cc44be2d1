"""physics on the GPU: every system rolled out on ``device="cuda"`` matches the CPU run, values
and gradients. Skipped (by conftest.py) where no GPU with cupy is present."""
import numpy as np
import pytest

import diffsim as ds
from diffsim import physics
from diffsim.physics import State, simulate

pytestmark = pytest.mark.cuda
DEVICE = "cuda"


def T(a, device="cpu", rg=False):
    return ds.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=rg)


def close(a, b, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(np.asarray(a.detach().cpu().numpy()), np.asarray(b.detach().cpu().numpy()),
                               rtol=rtol, atol=atol)


def check_cpu_and_gpu_agree(build):
    """Run ``build(device)`` -> (loss, [tensors]) on CPU and GPU; compare loss and gradients."""
    out = []
    for dev in ("cpu", DEVICE):
        loss, params = build(dev)
        assert loss.device.type == dev
        out.append((loss, ds.autograd.grad(loss, params, allow_unused=True)))
    (loss_c, grads_c), (loss_g, grads_g) = out
    close(loss_g, loss_c)
    for gc, gg in zip(grads_c, grads_g):
        assert (gc is None) == (gg is None)
        if gc is not None:
            assert gg.device.type == DEVICE
            close(gg, gc, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("checkpoint", [None, 5, "binomial"])
def test_potential_system_on_gpu(checkpoint):
    def build(dev):
        k = T(3.0, dev, True)
        sys_ = physics.PotentialSystem(lambda x: 0.5 * k * (x ** 2).sum()).to(dev)
        v0 = T([0.1, -0.2, 0.3], dev, True)
        s = simulate(sys_, State(x=T([1.0, 0.5, -0.5], dev), v=v0), 40, 0.05,
                     integrator="velocity_verlet", checkpoint=checkpoint)
        return (s.x ** 2).sum(), [k, v0]
    check_cpu_and_gpu_agree(build)


@pytest.mark.parametrize("integrator", ["semi_implicit_euler", "rk4"])
def test_mass_spring_cloth_on_gpu(integrator):
    ref = physics.MassSpring.cloth(6, dtype=ds.float64)
    x0 = ref.initial_state().x.numpy()
    springs = np.stack([np.asarray(ref._a), np.asarray(ref._b)], 1)

    def build(dev):
        k = T(np.full(len(springs), 300.0), dev, True)
        ms = physics.MassSpring(T(x0, dev), springs, stiffness=k, damping=0.05, mass=0.02, drag=0.5,
                                pinned=[0, 5], colliders=[physics.GroundPlane(offset=-0.3)]).to(dev)
        v0 = ds.zeros(x0.shape, dtype=ds.float64, device=dev, requires_grad=True)
        s = simulate(ms, ms.initial_state(v=v0), 50, 1e-3, integrator=integrator)
        return ((s.x - T(x0, dev)) ** 2).mean(), [k, v0]
    check_cpu_and_gpu_agree(build)


def test_particles_gravity_and_lennard_jones_on_gpu():
    rng = np.random.default_rng(0)
    xg = rng.standard_normal((64, 3))
    side = 5
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3) * 1.12
    xl = grid + 0.01 * rng.standard_normal(grid.shape)

    def build(dev):
        m = T(rng.random(64) * 0 + 0.5, dev, True)
        grav = physics.Particles(mass=m, forces=[physics.Gravity(G=1.0, softening=0.05)]).to(dev)
        s = simulate(grav, State(x=T(xg, dev), v=T(np.zeros((64, 3)), dev)), 10, 1e-3)
        eps = T(1.0, dev, True)
        lj = physics.Particles(mass=1.0, forces=[physics.LennardJones(epsilon=eps, sigma=1.0)]).to(dev)
        s2 = simulate(lj, State(x=T(xl, dev), v=T(np.zeros(xl.shape), dev)), 10, 1e-3,
                      integrator="velocity_verlet")
        return (s.x ** 2).sum() + (s2.x ** 2).sum(), [m, eps]
    check_cpu_and_gpu_agree(build)


def test_rigid_spheres_with_ground_contact_on_gpu():
    def build(dev):
        v0 = T([[0.5, 0.0, 0.0], [0.0, 0.3, 0.0]], dev, True)
        bodies = physics.RigidBodies3D.spheres(T([0.1, 0.2], dev), mass=T([1.0, 2.0], dev),
                                               contacts=[physics.PenaltyGround(stiffness=1e4, damping=10.0,
                                                                               friction=0.5)]).to(dev)
        s0 = bodies.initial_state(T([[0.0, 0.0, 0.15], [1.0, 0.0, 0.25]], dev), v=v0,
                                  w=T([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dev))
        s = simulate(bodies, s0, 40, 1e-3, integrator="semi_implicit_euler")
        return (s.x ** 2).sum() + (s.q[:, 1:] ** 2).sum(), [v0]
    check_cpu_and_gpu_agree(build)


# ---------------------------------------------------------------- the gravity op's CUDA kernels

def _gravity_case(n, dim, scalar_mass, seed=0):
    rng = np.random.default_rng(seed + 7 * n + dim)
    x = 2.0 * rng.standard_normal((n, dim))
    m = np.asarray(0.7) if scalar_mass else rng.uniform(0.5, 2.0, n)
    w = rng.standard_normal((n, dim))
    return x, m, w


def _gravity_run(dev, x, m, w, G, eps, np_dtype, chunk=None, create_graph=False):
    """Acceleration and the gradients of ``sum(w * a)`` w.r.t. x, m, G, eps (numpy arrays)."""
    dt = ds.float64 if np_dtype == np.float64 else ds.float32

    def t(a, rg=True):
        return ds.tensor(np.asarray(a, dtype=np_dtype), dtype=dt, device=dev, requires_grad=rg)
    xt, mt, Gt, et = t(x), t(m), t(G), t(eps)
    a = physics.gravity_acceleration(xt, mt, Gt, et, chunk=chunk)
    assert a.dtype == dt and a.device.type == dev
    loss = (a * t(w, False)).sum()
    grads = ds.autograd.grad(loss, [xt, mt, Gt, et], create_graph=create_graph)
    for gr, p in zip(grads, (xt, mt, Gt, et)):
        assert gr.dtype == dt and tuple(gr.shape) == tuple(p.shape) and gr.device.type == dev
    return [a.detach().cpu().numpy()] + [gr.detach().cpu().numpy() for gr in grads]


def _assert_gravity_close(got, ref, np_dtype):
    """float64: GPU == CPU to ~1e-11 of each array's scale. float32: ``ref`` is the pair (CPU
    float32 run, CPU float64 run on the same rounded inputs); the GPU's float32 error is at most
    10x the numpy float32 path's (plus 1e-5 of the scale), so summation order cannot flake it."""
    names = ("a", "dx", "dm", "dG", "deps")
    if np_dtype == np.float64:
        for name, g, r in zip(names, got, ref):
            scale = max(float(np.max(np.abs(r))) if np.size(r) else 0.0, 1e-30)
            np.testing.assert_allclose(g, r, rtol=1e-11, atol=1e-11 * scale, err_msg=name)
        return
    cpu32, ref64 = ref
    for name, g, c, r in zip(names, got, cpu32, ref64):
        assert np.shape(g) == np.shape(r), name
        if not np.size(r):
            continue
        scale = max(float(np.max(np.abs(r))), 1e-30)
        err_gpu = float(np.max(np.abs(g.astype(np.float64) - r)))
        err_cpu = float(np.max(np.abs(c.astype(np.float64) - r)))
        assert err_gpu <= 10.0 * err_cpu + 1e-5 * scale, (name, err_gpu, err_cpu, scale)


def _gravity_ref(x, m, w, G, eps, np_dtype, **kw):
    """The CPU reference for ``_assert_gravity_close``."""
    if np_dtype == np.float64:
        return _gravity_run("cpu", x, m, w, G, eps, np.float64, **kw)
    r = [np.asarray(v, np.float32).astype(np.float64) for v in (x, m, w, G, eps)]
    return (_gravity_run("cpu", x, m, w, G, eps, np.float32, **kw),
            _gravity_run("cpu", *r, np.float64, **kw))


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts calls of the CUDA kernels' entry points (to check they are the path taken)."""
    from diffsim.physics import _cuda_gravity
    calls = {"fwd": 0, "vjp": 0}
    fwd, vjp = _cuda_gravity.gravity_forward, _cuda_gravity.gravity_vjp

    def cfwd(*a):
        calls["fwd"] += 1
        return fwd(*a)

    def cvjp(*a):
        calls["vjp"] += 1
        return vjp(*a)
    monkeypatch.setattr(_cuda_gravity, "gravity_forward", cfwd)
    monkeypatch.setattr(_cuda_gravity, "gravity_vjp", cvjp)
    return calls


@pytest.mark.parametrize("np_dtype", [np.float64, np.float32])
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("n", [1, 2, 67, 257])
@pytest.mark.parametrize("scalar_mass", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_gravity_kernel_matches_cpu(np_dtype, dim, n, scalar_mass, eps, kernel_calls):
    x, m, w = _gravity_case(n, dim, scalar_mass)
    ref = _gravity_ref(x, m, w, 1.3, eps, np_dtype)
    got = _gravity_run(DEVICE, x, m, w, 1.3, eps, np_dtype)
    assert kernel_calls == {"fwd": 1, "vjp": 1}
    _assert_gravity_close(got, ref, np_dtype)
    if n == 1:
        assert not np.any(got[0]) and not np.any(got[1])     # a lone particle feels nothing


@pytest.mark.parametrize("block", [32, 64, 128, 256])
@pytest.mark.parametrize("np_dtype", [np.float64, np.float32])
def test_gravity_kernel_every_block_size(block, np_dtype, monkeypatch, kernel_calls):
    """N not a multiple of any tile size, several tiles, each block size the launcher may pick."""
    from diffsim.physics import _cuda_gravity
    monkeypatch.setattr(_cuda_gravity, "_launch_shape", lambda cp, dev, n: ((n + block - 1) // block, block))
    x, m, w = _gravity_case(613, 3, False, seed=1)
    ref = _gravity_ref(x, m, w, 0.9, 0.05, np_dtype)
    got = _gravity_run(DEVICE, x, m, w, 0.9, 0.05, np_dtype)
    assert kernel_calls == {"fwd": 1, "vjp": 1}
    _assert_gravity_close(got, ref, np_dtype)


def test_gravity_kernel_larger_n_default_launch():
    x, m, w = _gravity_case(2501, 3, False, seed=2)
    _assert_gravity_close(_gravity_run(DEVICE, x, m, w, 1.0, 0.05, np.float64),
                          _gravity_run("cpu", x, m, w, 1.0, 0.05, np.float64), np.float64)


def test_gravity_kernel_python_scalars_and_noncontiguous_x(kernel_calls):
    """G, softening and the mass as Python numbers (as ``Gravity`` passes them), and positions
    that are a non-contiguous view."""
    rng = np.random.default_rng(3)
    big = rng.standard_normal((5, 101))
    w = rng.standard_normal((101, 3))
    out = []
    for dev in ("cpu", DEVICE):
        xb = ds.tensor(big, device=dev, requires_grad=True)
        x = xb[1:4].transpose(0, 1)              # [101, 3], not contiguous
        a = physics.gravity_acceleration(x, 0.3, 2.0, 0.01)
        (gx,) = ds.autograd.grad((a * ds.tensor(w, device=dev)).sum(), [xb])
        out.append((a.detach().cpu().numpy(), gx.cpu().numpy()))
    assert kernel_calls == {"fwd": 1, "vjp": 1}
    _assert_gravity_close(out[1], out[0], np.float64)


def test_gravity_kernel_eps_zero_matches_cpu_self_pair_semantics():
    """eps = 0: the self pair is skipped by index (not NaN), a close pair keeps its exact force."""
    x = np.array([[1e4, 0.0, 0.0], [1e4 + 1e-5, 0.0, 0.0], [0.0, 1.0, 0.0]])
    for dev in ("cpu", DEVICE):
        a = physics.gravity_acceleration(T(x, dev), T([1.0, 1.0, 2.0], dev), 1.0, 0.0).cpu().numpy()
        assert np.isfinite(a).all()
        if dev == "cpu":
            ref = a
    np.testing.assert_allclose(a, ref, rtol=1e-12)


def test_gravity_kernel_create_graph_first_derivatives_and_second_raises():
    """Under create_graph the recorded gravity_vjp op is used (same values); its backward still
    raises clearly, as on the CPU."""
    x, m, w = _gravity_case(67, 3, False, seed=4)
    ref = _gravity_run("cpu", x, m, w, 1.1, 0.2, np.float64)
    got = _gravity_run(DEVICE, x, m, w, 1.1, 0.2, np.float64, create_graph=True)
    _assert_gravity_close(got, ref, np.float64)
    xt = T(x, DEVICE, True)
    a = physics.gravity_acceleration(xt, 1.0, 1.0, 0.1)
    (g,) = ds.autograd.grad((a ** 2).sum(), [xt], create_graph=True)
    with pytest.raises(RuntimeError, match="second derivatives"):
        g.sum().backward()


def test_gravity_kernel_used_in_nbody_rollout(kernel_calls):
    rng = np.random.default_rng(5)
    x0 = rng.standard_normal((300, 3))

    def build(dev):
        m = T(np.full(300, 1.0 / 300), dev, True)
        p = physics.Particles(mass=m, forces=[physics.Gravity(G=1.0, softening=0.05)]).to(dev)
        v0 = T(np.zeros((300, 3)), dev, True)
        s = simulate(p, State(x=T(x0, dev), v=v0), 5, 1e-3)
        return (s.x ** 2).sum(), [m, v0]
    check_cpu_and_gpu_agree(build)
    assert kernel_calls["fwd"] >= 5 and kernel_calls["vjp"] >= 5
