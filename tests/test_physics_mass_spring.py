"""Mass-spring systems (physics.MassSpring), the spring_forces op and the contact colliders."""
import math
import os
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import diffsim as ds
from diffsim import physics
from diffsim.physics import GroundPlane, MassSpring, Sphere, State, simulate, spring_forces
from diffsim.testing import gradcheck, gradgradcheck

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
F64 = ds.float64


def T(a, rg=False):
    return ds.tensor(np.asarray(a, dtype=np.float64), dtype=F64, requires_grad=rg)


def random_network(rng, P=6, S=9, D=3):
    a = rng.integers(0, P, S)
    b = (a + rng.integers(1, P, S)) % P
    return a, b


# ------------------------------------------------------------------ W2 equivalence

def test_w2_reproduced_exactly_by_massspring_and_simulate():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        from checkpoint_memory import make_problem, plain_rollout
    finally:
        sys.path.pop(0)
    prob = make_problem()
    loss_ref, gk_ref, gv_ref = plain_rollout(prob, 200)
    c = prob["cloth"]
    cloth = MassSpring.cloth(32, stiffness=ds.full((c["S"],), 500.0, dtype=F64, requires_grad=True),
                             mass=0.01, drag=1.0, pinned="top-row", dtype=F64)
    assert np.array_equal(cloth.springs, np.stack([c["a"], c["b"]], 1))
    v0 = ds.zeros((c["P"], 3), dtype=F64, requires_grad=True)
    final = simulate(cloth, State(x=T(c["x0"]), v=v0), 200, 1e-3, integrator="semi_implicit_euler")
    loss = ((final.x - T(c["target"])) ** 2).sum(-1).mean()
    loss.backward()
    assert abs(loss.item() - loss_ref) <= 1e-12 * abs(loss_ref)
    for got, ref in ((cloth.stiffness.grad.numpy(), gk_ref), (v0.grad.numpy(), gv_ref)):
        assert np.abs(got - ref).max() <= 1e-12 * np.abs(ref).max()


# ------------------------------------------------------------------ the op

@pytest.mark.parametrize("D", [2, 3])
def test_spring_forces_gradcheck_and_gradgradcheck_all_inputs(D):
    rng = np.random.default_rng(D)
    P, S = 5, 8
    a, b = random_network(rng, P, S)
    x, v = T(rng.normal(size=(P, D)), True), T(rng.normal(size=(P, D)), True)
    k, c, L = (T(rng.uniform(lo, hi, S), True) for lo, hi in ((1, 2), (0.1, 1), (0.3, 1)))
    f = lambda *args: spring_forces(*args, a, b)  # noqa: E731
    assert gradcheck(f, (x, v, k, c, L))
    assert gradgradcheck(f, (x, v, k, c, L))


def test_spring_forces_broadcast_params_and_no_damping():
    rng = np.random.default_rng(1)
    a, b = random_network(rng, 4, 6)
    x = T(rng.normal(size=(4, 3)), True)
    v = T(rng.normal(size=(4, 3)))
    k, c, L = T(1.3, True), T(0.4, True), T(0.7, True)
    assert gradcheck(lambda x, k, c, L: spring_forces(x, v, k, c, L, a, b), (x, k, c, L))
    assert gradgradcheck(lambda x, k, L: spring_forces(x, v, k, None, L, a, b), (x, k, L))


def test_spring_forces_matches_op_by_op_formula():
    rng = np.random.default_rng(2)
    a, b = random_network(rng, 7, 12)
    x, v = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    k, c, L = rng.uniform(1, 2, 12), rng.uniform(0, 1, 12), rng.uniform(0.5, 1, 12)
    d = x[b] - x[a]
    l = np.linalg.norm(d, axis=1)  # noqa: E741
    n = d / l[:, None]
    fs = k * (l - L) + c * ((v[b] - v[a]) * n).sum(1)
    ref = np.zeros_like(x)
    np.add.at(ref, a, fs[:, None] * n)
    np.add.at(ref, b, -fs[:, None] * n)
    got = spring_forces(T(x), T(v), T(k), T(c), T(L), a, b).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ one step, every integrator

def small_system(D=2, **kw):
    """A 2x3 lattice with damping, drag, a pin, gravity and a frictional ground touching it."""
    ms = MassSpring.lattice((3, 2), spacing=0.5, origin=(0.0, 0.01)[:D] if D == 2 else None,
                            stiffness=T(np.linspace(20, 30, 11), True), damping=T(0.3, True),
                            mass=T(np.linspace(1, 2, 6), True), drag=T(0.2, True), pinned=[5],
                            colliders=[GroundPlane((0.0, 1.0), offset=T(0.0, True), stiffness=T(50.0, True),
                                                   damping=1.0, friction=T(0.5, True), smoothing=0.05,
                                                   slip=0.1, dtype=F64)],
                            dtype=F64, **kw)
    ms.rest_length.requires_grad_(True)
    return ms


@pytest.mark.parametrize("integrator", ["explicit_euler", "semi_implicit_euler", "velocity_verlet", "rk4"])
def test_one_step_gradcheck_every_integrator(integrator):
    ms = small_system()
    rng = np.random.default_rng(3)
    x0 = T(ms.positions.numpy() + 0.05 * rng.normal(size=(6, 2)), True)
    v0 = T(rng.normal(size=(6, 2)), True)
    params = [ms.stiffness, ms.damping, ms.rest_length, ms.mass, ms.drag_coefficient,
              ms.colliders[0].offset, ms.colliders[0].stiffness, ms.colliders[0].friction]

    def fn(x0, v0, *ps):
        s = simulate(ms, State(x=x0, v=v0), 1, 0.01, integrator=integrator)
        return ds.cat([s.x, s.v])
    assert gradcheck(fn, (x0, v0, *params))


def test_short_rollout_gradients_match_finite_differences():
    ms = small_system()
    rng = np.random.default_rng(4)
    x0 = T(ms.positions.numpy() + 0.05 * rng.normal(size=(6, 2)), True)
    v0 = T(rng.normal(size=(6, 2)), True)
    target = T(rng.normal(size=(6, 2)))

    def loss():
        return ((simulate(ms, State(x=x0, v=v0), 20, 0.01).x - target) ** 2).sum()
    report = physics.check_gradients(loss, [ms.stiffness, ms.rest_length, ms.mass, x0, v0,
                                            ms.colliders[0].offset], verbose=False)
    assert report.ok, str(report)


def test_actuated_rollout_gradient_wrt_controls_and_actuation():
    ms = MassSpring.rope(4, length=0.6, start=(0.0, 0.0), direction=(1.0, 0.0), pinned=None, gravity=None,
                         stiffness=30.0, damping=0.2, actuators=[0, 2], actuation=T([0.2, 0.3], True),
                         dtype=F64)
    u = T(np.random.default_rng(5).uniform(-1, 1, (15, 2)), True)

    def loss():
        s = simulate(ms, ms.initial_state(), 15, 0.01, controls=u)
        return (s.x[:, 0] * T([1.0, -2.0, 0.5, 3.0])).sum()
    assert physics.check_gradients(loss, [u, ms.actuation], verbose=False).ok


# ------------------------------------------------------------------ properties of random networks

@st.composite
def spring_networks(draw, max_particles=7):
    P = draw(st.integers(2, max_particles))
    D = draw(st.sampled_from([2, 3]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    S = draw(st.integers(1, 2 * P))
    a, b = random_network(rng, P, S)
    x = rng.uniform(-1, 1, (P, D))
    return dict(x=x, v=rng.normal(size=(P, D)), a=a, b=b, k=rng.uniform(0.5, 5, S),
                c=rng.uniform(0, 1, S), L=rng.uniform(0.1, 1, S), shift=rng.uniform(-3, 3, D))


@settings(max_examples=25, deadline=None)
@given(spring_networks())
def test_internal_forces_sum_to_zero_and_are_translation_invariant(net):
    args = [T(net[n]) for n in ("v", "k", "c", "L")]
    F = spring_forces(T(net["x"]), *args, net["a"], net["b"]).numpy()
    scale = np.abs(F).max() + 1.0
    assert np.abs(F.sum(0)).max() <= 1e-12 * scale * len(net["a"])
    F2 = spring_forces(T(net["x"] + net["shift"]), *args, net["a"], net["b"]).numpy()
    np.testing.assert_allclose(F2, F, atol=1e-10 * scale)
    # torque-free too: sum x x F = 0 for central forces (2-D: the z component)
    x = net["x"]
    tau = np.cross(x, F) if x.shape[1] == 3 else x[:, 0] * F[:, 1] - x[:, 1] * F[:, 0]
    assert np.abs(tau.sum(0)).max() <= 1e-10 * scale * len(net["a"])


@settings(max_examples=10, deadline=None)
@given(spring_networks(max_particles=5))
def test_stiffness_gradient_of_rollout_matches_finite_differences(net):
    P, D = net["x"].shape
    ms = MassSpring(net["x"], np.stack([net["a"], net["b"]], 1), stiffness=T(net["k"], True),
                    damping=net["c"], rest_length=net["L"], gravity=None, dtype=F64)
    s0 = State(x=T(net["x"]), v=T(net["v"]))
    w = T(np.random.default_rng(0).normal(size=(P, D)))
    report = physics.check_gradients(lambda: (simulate(ms, s0, 10, 0.01).x * w).sum(), [ms.stiffness],
                                     verbose=False)
    assert report.ok, str(report)


# ------------------------------------------------------------------ conservation

@pytest.mark.parametrize("D", [2, 3])
def test_momentum_conserved_with_internal_forces(D):
    rng = np.random.default_rng(6)
    ms = MassSpring.lattice((3, 3) if D == 2 else (2, 2, 2), spacing=0.3, stiffness=rng.uniform(50, 100, 1),
                            damping=0.5, mass=rng.uniform(0.5, 2.0, 9 if D == 2 else 8), gravity=None, dtype=F64)
    P = ms.n_particles
    x0 = ms.positions.numpy() + 0.05 * rng.normal(size=(P, D))
    v0 = rng.normal(size=(P, D))
    m = ms.mass.numpy()[:, None]

    def momenta(s):
        x, v = s.x.numpy(), s.v.numpy()
        p = (m * v).sum(0)
        ang = np.cross(x, m * v) if D == 3 else x[:, 0] * m[:, 0] * v[:, 1] - x[:, 1] * m[:, 0] * v[:, 0]
        return p, ang.sum(0)
    s = State(x=T(x0), v=T(v0))
    p0, l0 = momenta(s)
    s1 = simulate(ms, s, 300, 1e-3)
    p1, l1 = momenta(s1)
    assert np.abs(s1.x.numpy() - x0).max() > 1e-2            # it did move
    np.testing.assert_allclose(p1, p0, atol=1e-12)
    np.testing.assert_allclose(l1, l0, atol=1e-12)


def test_energy_bounded_under_symplectic_euler_and_grows_under_explicit_euler():
    ms = MassSpring([[0.0, 0.0], [1.0, 0.0]], [[0, 1]], stiffness=100.0, mass=1.0, gravity=None, dtype=F64)
    s0 = State(x=T([[0.0, 0.0], [1.2, 0.1]]), v=T([[0.0, 0.3], [0.0, -0.3]]))
    e0 = ms.energy(s0).item()
    tr = simulate(ms, s0, 3000, 1e-2, record=50)
    es = np.array([ms.energy(s).item() for s in tr])
    assert np.abs(es - e0).max() < 0.1 * e0
    final = simulate(ms, s0, 3000, 1e-2, integrator="explicit_euler", check=False)
    assert ms.energy(final).item() > 10 * e0


def test_energy_gradient_is_minus_the_force():
    ms = MassSpring.cloth(3, stiffness=T(np.linspace(5, 9, 20)), mass=T(np.linspace(1, 2, 9)), dtype=F64,
                          pinned=None)
    x = T(ms.positions.numpy() + 0.1 * np.random.default_rng(7).normal(size=(9, 3)), True)
    s = State(x=x, v=T(np.zeros((9, 3))))
    ms.energy(s).backward()
    F = ms.forces(s) + ms.mass.unsqueeze(-1) * ms.gravity
    np.testing.assert_allclose(-x.grad.numpy(), F.detach().numpy(), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ constructors

def test_constructors_counts_and_rest_state():
    c = MassSpring.cloth(4, 3, bending=True)
    assert c.n_particles == 12 and c.dim == 3
    assert c.n_springs == (3 * 3 + 4 * 2) + 2 * 3 * 2 + (2 * 3 + 4 * 1)
    assert list(c.pinned) == [0, 3, 6, 9]
    hang = MassSpring.cloth(3, hanging=True, pinned="corners")
    assert hang.positions.numpy()[:, 1].max() == 0 and list(hang.pinned) == [0, 6]
    r = MassSpring.rope(5, length=2.0, start=(0.0, 1.0), direction=(0.0, -1.0), bending=True)
    assert r.dim == 2 and r.n_springs == 4 + 3
    np.testing.assert_allclose(r.rest_length.numpy()[:4], 0.5)
    lat = MassSpring.lattice((4, 3), spacing=0.1)
    assert lat.n_springs == 3 * 3 + 4 * 2 + 2 * 3 * 2
    lat3 = MassSpring.lattice((2, 2, 2), spacing=0.1)
    assert lat3.n_springs == 28                    # a cube: all pairs of its 8 corners
    masked = MassSpring.lattice((3, 2), mask=[[True, True], [False, True], [True, True]])
    assert masked.n_particles == 5 and masked.springs.max() == 4
    s = lat.initial_state()
    assert s.x.shape == (12, 2) and float(s.v.abs().sum()) == 0.0


def test_lattice_with_diagonals_keeps_its_shape_under_load():
    def sag(diagonals):
        ms = MassSpring.lattice((4, 3), spacing=0.1, diagonals=diagonals, stiffness=2000.0, damping=2.0,
                                mass=0.05, pinned=[0, 1, 2], dtype=F64)
        s = simulate(ms, ms.initial_state(), 400, 1e-3)
        return np.abs(s.x.numpy() - ms.positions.numpy()).max()
    assert sag(True) < 0.02 < sag(False)


# ------------------------------------------------------------------ colliders

def test_rope_dropped_on_ground_rests_on_it():
    ground = GroundPlane((0.0, 1.0, 0.0), offset=0.0, stiffness=3000.0, damping=5.0, friction=0.5, smoothing=1e-3)
    rope = MassSpring.rope(10, length=1.0, start=(0.0, 0.3, 0.0), pinned=None, stiffness=500.0, damping=0.5,
                           mass=0.1, colliders=[ground], dtype=F64)
    tr = simulate(rope, rope.initial_state(), 1500, 1e-3, record=10)
    y = tr.x.numpy()[..., 1]
    assert y.min() > -0.01                       # never passed through
    assert np.abs(tr.final.x.numpy()[:, 1]).max() < 0.01 and np.abs(tr.final.v.numpy()).max() < 0.1


def test_cloth_dropped_on_sphere_stays_outside():
    ball = Sphere((0.5, -0.4, 0.5), 0.3, stiffness=1000.0, damping=1.0, friction=0.3, smoothing=1e-3)
    cloth = MassSpring.cloth(8, pinned=None, stiffness=200.0, damping=0.05, mass=0.01, colliders=[ball], dtype=F64)
    tr = simulate(cloth, cloth.initial_state(), 600, 1e-3, record=20)
    x = tr.x.numpy()
    dist = np.linalg.norm(x - np.array([0.5, -0.4, 0.5]), axis=-1)
    assert dist.min() > 0.3 - 0.01
    centre = 4 * 8 + 4                           # a particle near the middle rests on the ball
    assert x[-1, centre, 1] > -0.15 and x[-1].min(0)[1] < -0.2    # while the edges drape down


def test_friction_slows_sliding():
    def slide(mu):
        g = GroundPlane((0.0, 1.0), offset=0.0, stiffness=2000.0, damping=5.0, friction=mu)
        block = MassSpring.lattice((2, 2), spacing=0.1, origin=(0.0, 0.005), stiffness=1000.0, damping=1.0,
                                   mass=0.1, colliders=[g], dtype=F64)
        s = simulate(block, block.initial_state(v=T(np.tile([2.0, 0.0], (4, 1)))), 500, 1e-3)
        return s.x.numpy()[:, 0].mean(), np.abs(s.v.numpy()[:, 0]).mean()
    (x0, v0), (x1, v1) = slide(0.0), slide(0.8)
    assert x1 < x0 - 0.2 and v1 < 0.1 * v0


def test_collider_parameter_gradients():
    ball_r = T(0.3, True)
    ball = Sphere(T([0.0, -0.35], True), ball_r, stiffness=500.0, friction=0.2, smoothing=0.01, dtype=F64)
    ms = MassSpring.rope(3, length=0.4, start=(-0.2, 0.0), direction=(1.0, 0.0), pinned=None,
                         stiffness=100.0, mass=0.1, colliders=[ball], dtype=F64)
    report = physics.check_gradients(lambda: simulate(ms, ms.initial_state(), 30, 2e-3).x[:, 1].sum(),
                                     [ball.centre, ball_r], verbose=False)
    assert report.ok, str(report)


# ------------------------------------------------------------------ actuators, user forces, pins

def test_actuated_springs_follow_the_control():
    ms = MassSpring([[0.0, 0.0], [1.0, 0.0]], [[0, 1]], stiffness=200.0, damping=5.0, mass=1.0, gravity=None,
                    actuators=[0], actuation=0.5, dtype=F64)

    def length(u):
        ctrl = T(np.full((600, 1), u))
        s = simulate(ms, ms.initial_state(), 600, 1e-2, controls=ctrl)
        return float(np.linalg.norm(s.x.numpy()[1] - s.x.numpy()[0]))
    assert abs(length(0.0) - 1.0) < 1e-6
    assert abs(length(0.5) - 1.25) < 1e-3 and abs(length(-1.0) - 0.5) < 1e-3
    policy = lambda t, state: ds.tensor([0.5], dtype=F64)  # noqa: E731
    s = simulate(ms, ms.initial_state(), 600, 1e-2, controls=policy)
    assert abs(float(np.linalg.norm(np.diff(s.x.numpy(), axis=0))) - 1.25) < 1e-3


def test_user_force_and_pins():
    push = lambda x, v, t, u: ds.ones_like(x) * T([1.0, 0.0, 0.0])  # noqa: E731
    ms = MassSpring.rope(4, pinned=[0], force=push, gravity=None, stiffness=100.0, dtype=F64)
    s = simulate(ms, ms.initial_state(), 100, 1e-3)
    assert np.array_equal(s.x.numpy()[0], ms.positions.numpy()[0])
    assert s.x.numpy()[3, 0] > ms.positions.numpy()[3, 0]


# ------------------------------------------------------------------ checkpointing

def test_checkpointed_rollouts_give_identical_gradients():
    def grads(ck):
        ms = MassSpring.cloth(5, stiffness=T(np.full(72, 300.0), True), damping=0.1, mass=0.02, drag=0.5, dtype=F64)
        v0 = T(np.zeros((25, 3)), True)
        s = simulate(ms, ms.initial_state(v=v0), 60, 1e-3, checkpoint=ck)
        (s.x ** 2).sum().backward()
        return ms.stiffness.grad.numpy(), v0.grad.numpy()
    ref = grads(None)
    for ck in (7, "binomial"):
        got = grads(ck)
        for g, r in zip(got, ref):      # same ops on the same values; only the order in which
            # per-segment gradient contributions are summed differs (round-off)
            assert np.abs(g - r).max() <= 1e-13 * np.abs(r).max(), ck


# ------------------------------------------------------------------ bad input

def test_bad_inputs_raise_clear_errors():
    x = np.zeros((3, 3))
    x[:, 0] = [0, 1, 2]
    with pytest.raises(ValueError, match=r"MassSpring: mass must be > 0, got -1"):
        MassSpring(x, [[0, 1]], mass=-1.0)
    with pytest.raises(IndexError, match=r"MassSpring: spring 1 = \[1, 3\].*out of range \[0, 3\)"):
        MassSpring(x, [[0, 1], [1, 3]])
    with pytest.raises(ValueError, match=r"MassSpring: stiffness must be a number or have shape \[2\], got \[3\]"):
        MassSpring(x, [[0, 1], [1, 2]], stiffness=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"springs must be an integer array \[S, 2\]"):
        MassSpring(x, [0, 1, 2])
    with pytest.raises(ValueError, match=r"positions must be \[P, 2\] or \[P, 3\]"):
        MassSpring(np.zeros((3, 4)), [[0, 1]])
    with pytest.raises(ValueError, match=r"joins particle 1 to itself"):
        MassSpring(x, [[1, 1]])
    with pytest.raises(ValueError, match=r"gravity must have shape \[3\]"):
        MassSpring(x, [[0, 1]], gravity=(0.0, -9.8))
    with pytest.raises(ValueError, match=r"MassSpring: stiffness must be > 0"):
        MassSpring(x, [[0, 1]], stiffness=0.0)
    with pytest.raises(IndexError, match=r"pinned index out of range"):
        MassSpring(x, [[0, 1]], pinned=[5])
    ms = MassSpring(x, [[0, 1], [1, 2]], actuators=[1], dtype=F64)
    with pytest.raises(ValueError, match=r"control must have shape \[1\]"):
        simulate(ms, ms.initial_state(), 2, 1e-3, controls=T(np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"state field 'x' has shape \[2, 3\]"):
        simulate(ms, State(x=T(np.zeros((2, 3))), v=T(np.zeros((2, 3)))), 2, 1e-3)
    with pytest.raises(ValueError, match=r"dt must be a positive"):
        simulate(ms, ms.initial_state(), 2, 0.0)
    with pytest.raises(ValueError, match=r"contains NaN"):
        simulate(ms, State(x=T(np.full((3, 3), np.nan)), v=T(np.zeros((3, 3)))), 2, 1e-3)
    with pytest.raises(ValueError, match=r"Sphere: radius must be > 0"):
        Sphere((0.0, 0.0), -1.0)
    with pytest.raises(ValueError, match=r"GroundPlane: points must be \[P, 2\]"):
        GroundPlane((0.0, 1.0)).force(T(np.zeros((3, 3))), T(np.zeros((3, 3))))


def test_float32_runs():
    ms = MassSpring.cloth(4, stiffness=100.0, mass=0.01, dtype=ds.float32)
    s = simulate(ms, ms.initial_state(), 10, 1e-3)
    assert s.x.dtype == ds.float32 and math.isfinite(float(s.x.sum()))


def test_cloth_benchmark_runs_small():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import cloth as bench
    finally:
        sys.path.pop(0)
    rows = bench.run(steps=5, long_steps=40, repeats=1)
    assert {r["baseline"] for r in rows} >= {"diffsim op-by-op", "plain simulate"}
    assert all(r["ratio"] > 0 for r in rows)


# ---------------------------------------------------------------- review: odd cases

def test_zero_length_spring_with_coincident_ends_gives_finite_force_and_gradient():
    # a zero-rest-length spring (an attachment) whose ends coincide: the force k (x_b - x_a)
    # is 0 and its derivative k I is finite; the spring law must not produce NaN
    x = T([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], rg=True)
    v = T([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], rg=True)
    k = T([10.0, 3.0], rg=True)
    c = T([0.5, 0.2], rg=True)
    L = T([0.0, 0.5], rg=True)
    a, b = np.array([0, 1]), np.array([1, 2])
    f = spring_forces(x, v, k, c, L, a, b)
    assert np.isfinite(f.detach().numpy()).all()
    np.testing.assert_allclose(f.detach().numpy()[0], 0.0, atol=1e-12)
    (gx, gv, gk, gc, gL) = ds.autograd.grad((f * T(np.arange(9.0).reshape(3, 3))).sum(), [x, v, k, c, L])
    for g in (gx, gv, gk, gc, gL):
        assert np.isfinite(g.numpy()).all()
    # a rest-length-0 spring through a whole rollout from coincident particles
    ms = MassSpring(np.zeros((2, 3)), [[0, 1]], stiffness=5.0, rest_length=0.0, gravity=None, dtype=F64)
    ms.stiffness.requires_grad_()
    out = simulate(ms, ms.initial_state(), 5, 1e-2)
    (out.x ** 2).sum().backward()
    assert np.isfinite(ms.stiffness.grad.numpy()).all()


def test_physics_does_not_import_nn_or_render():
    # DESIGN.md: physics, render and nn do not import each other
    import ast
    import pathlib
    root = pathlib.Path(physics.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                assert "nn" not in parts and "render" not in parts, f"{path.name} imports {node.module}"


def test_colliders_keep_float64_precision_and_serve_float32_simulations():
    ground = physics.Sphere(centre=(0.1, 0.2, 0.3), radius=0.7, friction=0.3)
    assert ground.centre.dtype == ds.float64 and float(ground.friction) == 0.3
    x64 = ds.tensor([[0.1, 0.2, 1.0]], dtype=ds.float64)
    x32 = x64.to(ds.float32)
    v = ds.zeros(1, 3, dtype=ds.float64)
    assert ground.force(x64, v).dtype == ds.float64
    assert ground.force(x32, v.to(ds.float32)).dtype == ds.float32
    phi, _ = ground.signed_distance(x64)
    assert abs(float(phi) - 0.0) < 1e-15
