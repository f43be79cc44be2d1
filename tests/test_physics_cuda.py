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


def _both(build):
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
    _both(build)


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
    _both(build)


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
    _both(build)


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
    _both(build)
