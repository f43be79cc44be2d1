"""physics.ImplicitEuler: backward Euler by Newton (generic, implicit-function-theorem gradients)
and Baraff-Witkin linearized sparse steps for MassSpring; MassSpring.force_jacobian."""
import numpy as np
import pytest

import diffsim as ds
from diffsim import physics
from diffsim.physics import ImplicitEuler, MassSpring, PotentialSystem, SemiImplicitEuler, State, simulate
from diffsim.physics.integrators import get_integrator
from diffsim.testing import gradcheck

F64 = ds.float64


def T(a, rg=False):
    return ds.tensor(np.asarray(a, dtype=np.float64), dtype=F64, requires_grad=rg)


def small_cloth(n=4, **kw):
    kw.setdefault("stiffness", 200.0)
    kw.setdefault("damping", 0.05)
    kw.setdefault("mass", 0.01)
    kw.setdefault("drag", 0.5)
    return MassSpring.cloth(n, pinned="top-row", hanging=True, dtype=F64, **kw)


def perturbed(system, scale=0.1, seed=0):
    rng = np.random.default_rng(seed)
    s = system.initial_state()
    v = T(rng.normal(size=tuple(s.v.shape)) * scale)
    return s.replace(v=system.constrain("v", v))


# ------------------------------------------------------------------ force Jacobian

@pytest.mark.parametrize("D", [2, 3])
def test_force_jacobian_equals_dense_autodiff_jacobian(D):
    rng = np.random.default_rng(D)
    P = 6
    springs = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [0, 5], [1, 4], [2, 5]])
    S = len(springs)
    ms = MassSpring(rng.normal(size=(P, D)), springs, stiffness=rng.uniform(1, 3, S),
                    damping=rng.uniform(0.1, 1, S), rest_length=rng.uniform(0.5, 2, S), dtype=np.float64,
                    actuators=[0, 3], actuation=0.2)
    x, v = T(rng.normal(size=(P, D))), T(rng.normal(size=(P, D)))
    u = T([0.3, -0.5])
    Jx, Jv = ms.force_jacobian(State(x=x, v=v), control=u)
    assert Jx.shape == (P * D, P * D) and Jv.shape == (P * D, P * D)
    Dx = ds.func.jacobian(lambda z: ms.spring_force(z, v, u))(x).numpy().reshape(P * D, P * D)
    Dv = ds.func.jacobian(lambda z: ms.spring_force(x, z, u))(v).numpy().reshape(P * D, P * D)
    np.testing.assert_allclose(Jx.to_dense().numpy(), Dx, atol=1e-12)
    np.testing.assert_allclose(Jv.to_dense().numpy(), Dv, atol=1e-12)
    # symmetric=True drops only the dashpot's position term: symmetric, equal without damping
    Js, _ = ms.force_jacobian(State(x=x, v=v), control=u, symmetric=True)
    Jd = Js.to_dense().numpy()
    np.testing.assert_allclose(Jd, Jd.T, atol=1e-12)
    ms0 = MassSpring(rng.normal(size=(P, D)), springs, stiffness=2.0, dtype=np.float64)
    J0, _ = ms0.force_jacobian(State(x=x, v=v), symmetric=True)
    D0 = ds.func.jacobian(lambda z: ms0.spring_force(z, v))(x).numpy().reshape(P * D, P * D)
    np.testing.assert_allclose(J0.to_dense().numpy(), D0, atol=1e-12)


def test_force_jacobian_values_are_differentiable():
    ms = small_cloth(3)
    ms.stiffness.requires_grad_()
    s = perturbed(ms)
    Jx, _ = ms.force_jacobian(s)
    Jx.values().sum().backward()
    assert ms.stiffness.grad is not None and np.isfinite(ms.stiffness.grad.numpy()).all()


# ------------------------------------------------------------------ API

def test_names_repr_and_bad_arguments():
    for name in ("implicit_euler", "backward_euler", "Implicit_Euler"):
        assert isinstance(get_integrator(name), ImplicitEuler)
    assert ImplicitEuler.order == 1 and "ImplicitEuler" in repr(ImplicitEuler())
    with pytest.raises(ValueError, match="solver"):
        ImplicitEuler(solver="lu")
    with pytest.raises(ValueError, match="jacobian"):
        ImplicitEuler(jacobian="sparse")
    with pytest.raises(ValueError, match="newton_iters"):
        ImplicitEuler(newton_iters=0)
    assert ImplicitEuler().uses_sparse_path(small_cloth(3))
    assert not ImplicitEuler(jacobian="dense").uses_sparse_path(small_cloth(3))
    assert not ImplicitEuler().uses_sparse_path(PotentialSystem(lambda x: (x ** 2).sum()))


# ------------------------------------------------------------------ accuracy

def test_all_solution_paths_agree_and_pins_hold():
    cloth = small_cloth(3)
    s0 = perturbed(cloth)
    ref = None
    for integ in (ImplicitEuler(linearize=False), ImplicitEuler(jacobian="dense"),
                  ImplicitEuler(solver="cg", linearize=False)):
        with ds.no_grad():
            f = simulate(cloth, s0, 5, 2e-3, integrator=integ)
        if ref is None:
            ref = f
            pins = cloth.pinned
            np.testing.assert_array_equal(f.x.numpy()[pins], s0.x.numpy()[pins])
            assert np.all(f.v.numpy()[pins] == 0)
        else:   # the nonlinear solves agree to Newton's tolerance
            np.testing.assert_allclose(f.x.numpy(), ref.x.numpy(), atol=1e-9)
    for integ in (ImplicitEuler(), ImplicitEuler(solver="cg")):   # linearized: O(dt^2) per step
        with ds.no_grad():
            f = simulate(cloth, s0, 5, 2e-3, integrator=integ)
        assert np.abs(f.x.numpy() - ref.x.numpy()).max() < 1e-4


@pytest.mark.parametrize("kw", [{}, {"solver": "cg"}])
def test_implicit_euler_cloth_matches_semi_implicit_at_small_dt(kw):
    cloth = small_cloth(5)
    s0 = perturbed(cloth)
    Tend = 0.02
    diffs = []
    for dt in (4e-4, 2e-4, 1e-4):
        n = int(round(Tend / dt))
        with ds.no_grad():
            a = simulate(cloth, s0, n, dt, integrator=ImplicitEuler(**kw))
            b = simulate(cloth, s0, n, dt, integrator=SemiImplicitEuler())
        diffs.append(np.abs(a.x.numpy() - b.x.numpy()).max())
    diffs = np.array(diffs)
    moved = np.abs(b.x.numpy() - s0.x.numpy()).max()
    assert diffs[0] < 0.05 * moved, (diffs, moved)      # same motion
    ratios = diffs[:-1] / diffs[1:]
    assert np.all((ratios > 1.7) & (ratios < 2.4)), ratios    # the difference is O(dt)


def test_convergence_order_one_harmonic_oscillator_generic_and_sparse():
    k, m, A, Tend = 4.0, 1.0, 0.1, 1.0
    omega = np.sqrt(k / m)
    pot = PotentialSystem(lambda x: 0.5 * k * (x ** 2).sum(), mass=m)
    # a single spring, one end pinned, no gravity: the free end is a linear oscillator
    spring = MassSpring(np.array([[0.0, 0.0], [1.0, 0.0]]), [[0, 1]], stiffness=k, mass=m, gravity=None,
                        pinned=[0], dtype=np.float64)
    for name, system, x0, exact, get in (
            ("generic", pot, [A], lambda t: A * np.cos(omega * t), lambda s: s.x.numpy()[0]),
            ("sparse", spring, [[0.0, 0.0], [1.0 + A, 0.0]], lambda t: 1.0 + A * np.cos(omega * t),
             lambda s: s.x.numpy()[1, 0])):
        errs = []
        for dt in (0.02, 0.01, 0.005):
            n = int(round(Tend / dt))
            st = system.initial_state(T(x0))
            with ds.no_grad():
                f = simulate(system, st, n, dt, integrator=ImplicitEuler())
            errs.append(abs(get(f) - exact(Tend)))
        orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
        assert np.all(np.abs(orders - 1.0) < 0.15), (name, orders, errs)


# ------------------------------------------------------------------ stability

def _explicit_limit(cloth):
    """2 / omega_max of the linearized free DOFs at rest (symplectic Euler's stability limit)."""
    Jx, _ = cloth.force_jacobian(cloth.initial_state())
    K = -Jx.to_dense().numpy()
    free = np.repeat(cloth.free_mask.numpy()[:, 0] > 0, cloth.dim)
    m = np.repeat(np.broadcast_to(cloth.mass.numpy(), (cloth.n_particles,)), cloth.dim)
    Kf = K[np.ix_(free, free)] / np.sqrt(np.outer(m[free], m[free]))
    return 2.0 / np.sqrt(np.linalg.eigvalsh(Kf).max())


def _run(cloth, s, integ, dt, steps):
    E = [float(cloth.energy(s))]
    vmax = 0.0
    with ds.no_grad(), np.errstate(all="ignore"):
        for _ in range(steps):
            s = integ.step(cloth, s, 0.0, dt)
            E.append(float(cloth.energy(s)))
            vmax = max(vmax, float(np.abs(s.v.numpy()).max()))
            if not np.isfinite(vmax) or vmax > 1e6:
                return np.array(E), np.inf
    return np.array(E), vmax


def test_stable_at_50x_the_explicit_limit_for_stiff_cloth():
    cloth = MassSpring.cloth(5, stiffness=1e4, mass=0.01, pinned="top-row", hanging=True, dtype=F64)
    dtc = _explicit_limit(cloth)
    s0 = perturbed(cloth, scale=1.0)
    # the limit is sharp: semi-implicit Euler is stable just below it and diverges just above
    _, v_ok = _run(cloth, s0, SemiImplicitEuler(), 0.9 * dtc, 100)
    assert np.isfinite(v_ok) and v_ok < 10
    _, v_bad = _run(cloth, s0, SemiImplicitEuler(), 1.1 * dtc, 100)
    assert not np.isfinite(v_bad)
    dt = 50 * dtc
    _, v_bad = _run(cloth, s0, SemiImplicitEuler(), dt, 20)
    assert not np.isfinite(v_bad)
    # backward Euler (Newton) at 50x: bounded and the energy decreases every step
    E, vmax = _run(cloth, s0, ImplicitEuler(linearize=False), dt, 60)
    assert np.isfinite(vmax) and vmax < 10
    assert np.all(np.diff(E) <= 1e-9 * abs(E[0])), np.diff(E).max()
    assert E[-1] < E[0]
    # the linearized Baraff-Witkin step at 50x: bounded and dissipative overall
    E, vmax = _run(cloth, s0, ImplicitEuler(), dt, 60)
    assert np.isfinite(vmax) and vmax < 100
    assert E[-1] < E[0] and np.ptp(E[-10:]) < 1e-3 * abs(E[0])


# ------------------------------------------------------------------ gradients

def _tiny_rope():
    return MassSpring.rope(3, length=1.0, start=(0.0, 0.0), direction=(1.0, -0.5), pinned=[0],
                           stiffness=ds.tensor([30.0, 40.0], dtype=F64), damping=0.2, mass=0.1, drag=0.3,
                           dtype=F64)


@pytest.mark.parametrize("integ", [ImplicitEuler(jacobian="dense"), ImplicitEuler(),
                                   ImplicitEuler(solver="cg"), ImplicitEuler(linearize=False)],
                         ids=["generic", "bw-direct", "bw-cg", "bw-newton"])
@pytest.mark.parametrize("steps", [1, 3])
def test_gradcheck_step_and_rollout_wrt_stiffness_and_v0(integ, steps):
    rope = _tiny_rope()
    k = T([30.0, 40.0], True)
    rng = np.random.default_rng(1)
    v0 = T(rng.normal(size=(3, 2)) * 0.3, True)

    def f(k, v0):
        rope.stiffness = k
        s = State(x=rope.positions, v=v0)
        return simulate(rope, s, steps, 0.02, integrator=integ).x

    assert gradcheck(f, (k, v0), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradients_agree_between_paths_and_reach_mass_and_initial_state():
    grads = []
    for integ in (ImplicitEuler(jacobian="dense"), ImplicitEuler(linearize=False)):
        rope = _tiny_rope()
        rope.mass = T([0.1, 0.12, 0.08], True)
        rope.stiffness.requires_grad_()
        x0 = T(rope.positions.numpy(), True)
        f = simulate(rope, State(x=x0, v=ds.zeros_like(x0)), 3, 0.02, integrator=integ)
        (f.x ** 2).sum().backward()
        grads.append([rope.stiffness.grad.numpy(), rope.mass.grad.numpy(), x0.grad.numpy()])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_generic_path_on_potential_system_gradcheck():
    def f(k, v0):
        pot = PotentialSystem(lambda x: 0.5 * (k * x ** 2).sum() + 0.1 * (x ** 4).sum(), mass=1.3, drag=0.2)
        return simulate(pot, State(x=T([0.5, -0.3]), v=v0), 4, 0.1, integrator="backward_euler").x

    assert gradcheck(f, (T([2.0, 5.0], True), T([0.1, 0.2], True)), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("integ", [ImplicitEuler(), ImplicitEuler(jacobian="dense")], ids=["bw", "generic"])
def test_works_with_simulate_checkpointing(integ):
    out = {}
    for ck in (None, 2, "binomial"):
        rope = _tiny_rope()
        rope.stiffness.requires_grad_()
        v0 = T(np.full((3, 2), 0.1), True)
        f = simulate(rope, State(x=rope.positions, v=v0), 6, 0.02, integrator=integ, checkpoint=ck)
        (f.x ** 2).sum().backward()
        out[ck] = (f.x.detach().numpy(), rope.stiffness.grad.numpy(), v0.grad.numpy())
    for ck in (2, "binomial"):
        for a, b in zip(out[ck], out[None]):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_colliders_are_explicit_in_the_linearized_step_and_exact_with_newton():
    cloth = MassSpring.cloth(3, stiffness=100.0, mass=0.01, pinned=None, hanging=False, dtype=F64,
                             colliders=[physics.GroundPlane(offset=-0.01, stiffness=1e3)])
    s0 = cloth.initial_state()
    with ds.no_grad():
        a = simulate(cloth, s0, 20, 5e-3, integrator=ImplicitEuler())                 # explicit contact
        b = simulate(cloth, s0, 20, 5e-3, integrator=ImplicitEuler(linearize=False))  # -> dense generic
    assert not ImplicitEuler(linearize=False).uses_sparse_path(cloth)
    assert a.x.numpy()[:, 1].min() > -0.05 and b.x.numpy()[:, 1].min() > -0.05
    assert np.isfinite(a.v.numpy()).all() and np.isfinite(b.v.numpy()).all()
