"""physics core: State, integrators, simulate (recording, checkpointing, gradient hooks),
check_gradients, and errors; systems are the generic PotentialSystem."""
import math
import tracemalloc

import numpy as np
import pytest

import diffsim as ds
from diffsim import physics
from diffsim.physics import PotentialSystem, State, simulate
from diffsim.autodiff.checkpoint import binomial_capacity as _beta, binomial_split as _binomial_split
from diffsim.testing import gradcheck

INTEGRATORS = ["explicit_euler", "semi_implicit_euler", "velocity_verlet", "rk4"]


def T(a, rg=False):
    return ds.tensor(np.asarray(a, dtype=np.float64), requires_grad=rg)


def oscillator(k=1.0, mass=1.0, **kw):
    k = k if isinstance(k, ds.Tensor) else T(k)
    return PotentialSystem(lambda x: 0.5 * k * (x ** 2).sum(), mass=mass, **kw)


def kepler():
    """A unit-mass test body around a unit central mass (GM = 1)."""
    return PotentialSystem(lambda x: -1.0 / (x ** 2).sum().sqrt(), mass=1.0)


# ------------------------------------------------------------------ State

def test_state_is_an_immutable_record():
    s = State(x=T([1.0, 2.0]), v=[0.0, 0.0])
    assert s.fields == ("x", "v") and isinstance(s.v, ds.Tensor)
    assert s["x"] is s.x and "x" in s and len(s) == 2
    s2 = s.replace(v=T([1.0, 1.0]))
    assert s2.v.numpy().tolist() == [1.0, 1.0] and s.v.numpy().tolist() == [0.0, 0.0]
    with pytest.raises(AttributeError, match="immutable"):
        s.x = T([0.0])
    with pytest.raises(AttributeError, match="no field 'q'"):
        s.q
    assert "State(x=Tensor[2], v=Tensor[2])" == repr(s)
    assert s.detach().x.requires_grad is False


# ------------------------------------------------------------------ accuracy

@pytest.mark.parametrize("integrator,order", [("explicit_euler", 1), ("semi_implicit_euler", 1),
                                              ("velocity_verlet", 2), ("rk4", 4)])
def test_convergence_order_on_the_harmonic_oscillator(integrator, order):
    """Global error at t = 1 of x'' = -x, x(0) = 1, v(0) = 0 (x = cos t) halves like dt**order."""
    sys_ = oscillator()
    errs = []
    dts = [0.1, 0.05, 0.025]
    with ds.no_grad():
        for dt in dts:
            s = simulate(sys_, State(x=T([1.0]), v=T([0.0])), round(1.0 / dt), dt, integrator=integrator)
            errs.append(abs(float(s.x) - math.cos(1.0)) + abs(float(s.v) + math.sin(1.0)))
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(len(errs) - 1)]
    assert all(abs(r - order) < 0.25 for r in rates), (errs, rates)


def _energy_series(sys_, state, steps, dt, integrator, every=100):
    with ds.no_grad():
        traj = simulate(sys_, state, steps, dt, integrator=integrator, record=every)
        return np.array([float(sys_.energy(s)) for s in traj])


@pytest.mark.parametrize("integrator", ["semi_implicit_euler", "velocity_verlet"])
def test_symplectic_energy_error_stays_bounded_on_the_oscillator(integrator):
    sys_ = oscillator(k=4.0)
    e = _energy_series(sys_, State(x=T([1.0, 0.0]), v=T([0.0, 1.0])), 10_000, 0.01, integrator)
    drift = np.abs(e - e[0]) / e[0]
    assert drift.max() < 0.03
    # bounded, not growing: the last tenth is no worse than the first tenth
    assert drift[-10:].max() < 1.5 * drift[:10].max() + 1e-12


def test_explicit_euler_energy_grows_on_the_oscillator():
    sys_ = oscillator(k=4.0)
    e = _energy_series(sys_, State(x=T([1.0, 0.0]), v=T([0.0, 1.0])), 10_000, 0.01, "explicit_euler")
    assert e[-1] > 40 * e[0]                        # (1 + k dt^2) ** steps = e**4 = 54.6
    assert np.all(np.diff(e) > 0)


def test_kepler_orbit_energy_bounded_for_verlet_but_not_for_euler():
    sys_ = kepler()
    s0 = State(x=T([1.0, 0.0]), v=T([0.0, 1.2]))     # eccentric orbit (e = 0.44), period ~ 11
    ev = _energy_series(sys_, s0, 10_000, 5e-3, "velocity_verlet")
    ee = _energy_series(sys_, s0, 10_000, 5e-3, "explicit_euler")
    dv = np.abs(ev - ev[0]).max()
    de = np.abs(ee - ee[0])
    assert dv < 1e-3, dv
    assert de[-1] > 20 * dv and de[-1] > de[len(de) // 4]          # Euler drifts, and keeps drifting


def test_rk4_matches_the_closed_form_solution_with_drag():
    """x'' = -k x - c x' (underdamped), RK4 vs the analytic solution."""
    k, c = 4.0, 0.3
    sys_ = oscillator(k=k, drag=c)
    with ds.no_grad():
        s = simulate(sys_, State(x=T([1.0]), v=T([0.0])), 200, 0.01, integrator="rk4")
    wd = math.sqrt(k - c * c / 4)
    t = 2.0
    x = math.exp(-c * t / 2) * (math.cos(wd * t) + c / (2 * wd) * math.sin(wd * t))
    assert abs(float(s.x) - x) < 1e-8


def test_symplectic_drag_is_applied_exactly():
    """With no force, the semi-implicit step multiplies v by exp(-c dt) exactly."""
    sys_ = PotentialSystem(lambda x: (x * 0.0).sum(), drag=2.0)
    s = simulate(sys_, State(x=T([0.0]), v=T([1.0])), 10, 0.1)
    assert abs(float(s.v) - math.exp(-2.0)) < 1e-14


# ------------------------------------------------------------------ gradients

@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_gradcheck_one_step_and_a_short_rollout(integrator):
    k = T(3.0, rg=True)
    sys_ = oscillator(k=k, drag=0.2)

    def run(x0, v0, steps):
        return simulate(sys_, State(x=x0, v=v0), steps, 0.05, integrator=integrator).x

    x0, v0 = T([0.7, -0.2], rg=True), T([0.1, 0.4], rg=True)
    assert gradcheck(lambda a, b, kk: run(a, b, 1), (x0, v0, k))
    assert gradcheck(lambda a, b, kk: run(a, b, 12), (x0, v0, k))


@pytest.mark.parametrize("integrator", INTEGRATORS)
@pytest.mark.parametrize("checkpoint", [5, 64, "binomial", ("binomial", 2)])
def test_checkpointed_rollouts_give_the_same_gradients(integrator, checkpoint):
    k = T(3.0, rg=True)
    sys_ = oscillator(k=k)
    x0, v0 = T([0.7, -0.2], rg=True), T([0.1, 0.4], rg=True)

    def grads(ck):
        traj = simulate(sys_, State(x=x0, v=v0), 37, 0.05, integrator=integrator, checkpoint=ck, record=4)
        loss = (traj.x ** 2).sum() + traj.final.v.sum()
        return [g.numpy() for g in ds.autograd.grad(loss, [k, x0, v0])]

    for a, b in zip(grads(None), grads(checkpoint)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_binomial_split_keeps_recomputations_at_the_minimum():
    """Count how often each step runs in forward + backward: never more than r + 2 times
    (the forward, at most r re-advances, and the run that records its graph), with r the
    binomial minimum, as in Griewank's revolve."""
    calls = {}

    class Counting(PotentialSystem):
        def acceleration(self, state, t, control=None):
            calls[t] = calls.get(t, 0) + 1
            return super().acceleration(state, t, control)

    sys_ = Counting(lambda x: 0.5 * (x ** 2).sum())
    steps, snaps = 300, 4
    x0 = T([1.0], rg=True)
    s = simulate(sys_, State(x=x0, v=T([0.0])), steps, 0.01, checkpoint=("binomial", snaps))
    s.x.sum().backward()
    r = next(r for r in range(50) if _beta(snaps, r) >= steps)
    assert len(calls) == steps and max(calls.values()) <= r + 2, (r, max(calls.values()))
    # and the split is always a proper split
    for n in range(2, 400):
        for sn in range(1, 6):
            assert 1 <= _binomial_split(n, sn) <= n - 1


def _peak_mib(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2 ** 20
    finally:
        tracemalloc.stop()


def test_checkpointing_bounds_memory():
    k = T(2.0, rg=True)
    sys_ = oscillator(k=k)
    x0 = ds.tensor(np.random.default_rng(0).standard_normal((2000, 3)), requires_grad=True)
    steps = 150

    def run(ck):
        def go():
            s = simulate(sys_, State(x=x0, v=ds.zeros_like(x0)), steps, 1e-3, checkpoint=ck)
            (s.x ** 2).sum().backward()
        return go
    plain = _peak_mib(run(None))
    seg = _peak_mib(run(10))
    binom = _peak_mib(run("binomial"))
    assert seg < 0.25 * plain, (seg, plain)
    assert binom < 0.25 * plain, (binom, plain)


def test_trajectory_records_and_gradient_norms():
    sys_ = oscillator()
    x0 = T([1.0, 0.5], rg=True)
    traj = simulate(sys_, State(x=x0, v=T([0.0, 0.0])), 10, 0.1, record=3, t0=1.0)
    assert len(traj) == 4 and traj.steps.tolist() == [0, 3, 6, 9]
    np.testing.assert_allclose(traj.times, [1.0, 1.3, 1.6, 1.9])
    assert traj.x.shape == (4, 2) and traj[0].x is x0
    assert traj.final.x.shape == (2,) and "Trajectory(4 states of 10 steps" in repr(traj)
    xT = traj.final.x
    xT.retain_grad()
    loss = (traj.final.x ** 2).sum()
    loss.backward()
    assert traj.grad_norms.shape == (10,)
    assert abs(traj.field_grad_norms["x"][-1] - float(xT.grad.norm())) < 1e-12
    assert np.all(traj.grad_norms > 0)
    assert set(traj.field_grad_norms) == {"x", "v"}
    all_traj = simulate(sys_, State(x=x0, v=T([0.0, 0.0])), 5, 0.1, record="all")
    assert len(all_traj) == 6


def test_clip_gradient_through_time():
    """An unstable rollout (explicit Euler, large dt): per-step gradient norms explode; with
    clipping every per-field gradient is at most max_norm, and a huge max_norm changes nothing."""
    k = T(50.0, rg=True)
    sys_ = oscillator(k=k)
    x0 = T([1.0], rg=True)

    def run(hooks):
        traj = simulate(sys_, State(x=x0, v=T([0.0])), 60, 0.2, integrator="explicit_euler",
                        record="all", grad_hooks=hooks)
        g = ds.autograd.grad(traj.final.x.sum(), [x0])[0]
        return traj, float(g)
    traj, g_plain = run(None)
    assert traj.grad_norms.max() > 1e10
    traj_c, g_clip = run([physics.clip_gradient_through_time(1.0)])
    for norms in traj_c.field_grad_norms.values():
        assert norms.max() <= 1.0 + 1e-12
    assert abs(g_clip) < abs(g_plain)
    _, g_same = run(physics.clip_gradient_through_time(1e300))
    assert g_same == g_plain
    with pytest.raises(ValueError, match="max_norm"):
        physics.clip_gradient_through_time(0.0)


def test_controls_tensor_and_callable_get_gradients():
    def force(x, v, t, u):
        return u if u is not None else ds.zeros_like(x)
    sys_ = PotentialSystem(lambda x: 0.5 * (x ** 2).sum(), force=force)
    u = T(np.linspace(0.0, 1.0, 8).reshape(8, 1), rg=True)
    x0 = T([0.3])

    def final_x(uu):
        return simulate(sys_, State(x=x0, v=T([0.0])), 8, 0.1, controls=uu).x

    assert gradcheck(final_x, (u,))
    gain = T(2.0, rg=True)
    s = simulate(sys_, State(x=x0, v=T([0.0])), 8, 0.1, controls=lambda t, st: -gain * st.v)
    (g,) = ds.autograd.grad(s.x.sum(), [gain])
    assert np.isfinite(float(g)) and float(g) != 0.0


def test_dtype_is_kept_and_progress_bar_runs():
    sys_ = oscillator()
    s32 = simulate(sys_, State(x=ds.tensor([1.0]), v=ds.tensor([0.0])), 3, 0.1, progress=True)
    assert s32.x.dtype == ds.float32        # a 0-d float64 k does not promote (as in PyTorch)
    sys32 = PotentialSystem(lambda x: 0.5 * (x ** 2).sum())
    assert simulate(sys32, State(x=ds.tensor([1.0]), v=ds.tensor([0.0])), 3, 0.1).x.dtype == ds.float32
    assert simulate(sys32, State(x=T([1.0]), v=T([0.0])), 3, 0.1).x.dtype == ds.float64


def test_check_gradients_reports_agreement_and_mismatch(capsys):
    k = T(3.0, rg=True)
    v0 = T([0.1, -0.3], rg=True)
    sys_ = oscillator(k=k)

    def loss():
        return (simulate(sys_, State(x=T([1.0, 0.0]), v=v0), 20, 0.05).x ** 2).sum()
    rep = physics.check_gradients(loss, [k, v0], names=["k", "v0"])
    assert rep.ok and rep.max_rel_error < 1e-6
    out = capsys.readouterr().out
    assert "k[]" in out and "v0[2]" in out and "random dir" in out

    class Wrong(ds.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0

        @staticmethod
        def backward(ctx, g):
            return g * 3.0
    a = T([1.0, 2.0], rg=True)
    bad = physics.check_gradients(lambda: Wrong.apply(a).sum(), [a], verbose=False)
    assert not bad.ok and "MISMATCH" in str(bad)


# ------------------------------------------------------------------ errors

@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_bad_input_raises_clear_errors():
    sys_ = oscillator()
    s = State(x=T([1.0]), v=T([0.0]))
    with pytest.raises(ValueError, match="dt must be a positive"):
        simulate(sys_, s, 10, 0.0)
    with pytest.raises(ValueError, match="dt must be a positive"):
        simulate(sys_, s, 10, -1e-3)
    with pytest.raises(ValueError, match="steps must be a non-negative int"):
        simulate(sys_, s, -1, 0.1)
    with pytest.raises(ValueError, match="lacks \\['v'\\]"):
        simulate(sys_, State(x=T([1.0])), 10, 0.1)
    with pytest.raises(ValueError, match="x \\[1\\] and v \\[2\\]"):
        simulate(sys_, State(x=T([1.0]), v=T([0.0, 0.0])), 10, 0.1)
    with pytest.raises(ValueError, match="'x' contains NaN"):
        simulate(sys_, State(x=T([np.nan]), v=T([0.0])), 10, 0.1)
    with pytest.raises(ValueError, match="diverged"):
        simulate(oscillator(k=1e4), s, 400, 0.1, integrator="explicit_euler")
    with pytest.raises(ValueError, match="mass must be > 0, got -1.0"):
        PotentialSystem(lambda x: x.sum(), mass=-1.0)
    with pytest.raises(ValueError, match="record must be"):
        simulate(sys_, s, 10, 0.1, record="some")
    with pytest.raises(ValueError, match="checkpoint must be"):
        simulate(sys_, s, 10, 0.1, checkpoint=0)
    with pytest.raises(ValueError, match="controls must be a Tensor \\[steps"):
        simulate(sys_, s, 10, 0.1, controls=T(np.zeros((3, 1))))
    with pytest.raises(ValueError, match="unknown integrator 'leapfrog2'"):
        simulate(sys_, s, 10, 0.1, integrator="leapfrog2")
    with pytest.raises(TypeError, match="system must be a physics.System"):
        simulate(object(), s, 10, 0.1)
    with pytest.raises(TypeError, match="state must be a physics.State"):
        simulate(sys_, {"x": T([1.0])}, 10, 0.1)
    with pytest.raises(TypeError, match="must be floating point"):
        simulate(sys_, State(x=ds.tensor([1]), v=ds.tensor([0])), 10, 0.1)


# ---------------------------------------------------------------- review: one API across systems

def test_every_system_builds_its_initial_state_the_same_way():
    x2 = T([[0.0, 1.0], [1.0, 1.0]])
    systems = {
        "potential": (physics.PotentialSystem(lambda x: (x ** 2).sum()), x2),
        "particles": (physics.Particles(mass=1.0), x2),
        "mass_spring": (physics.MassSpring(x2, [[0, 1]], dtype=ds.float64), x2),
        "rigid2d": (physics.RigidBodies2D.discs(T([0.1, 0.1]), mass=1.0), x2),
    }
    for name, (sys_, x) in systems.items():
        s = sys_.initial_state(x)
        sys_.check_state(s)
        assert set(sys_.fields) <= set(s.fields), name
        assert np.array_equal(s.x.detach().numpy(), x.numpy()), name
        assert float((s.v.detach() ** 2).sum()) == 0.0, name
        v = T([[0.5, 0.0], [0.0, 0.0]])
        assert np.array_equal(sys_.initial_state(x, v=v).v.detach().numpy(), v.numpy()), name
    # MassSpring: positions default to the rest positions; rest_state stays as an alias
    ms = systems["mass_spring"][0]
    assert np.array_equal(ms.initial_state().x.detach().numpy(), ms.rest_state().x.detach().numpy())


def test_system_to_device_moves_tensors_and_keeps_gradients_flowing():
    k = T(2.0, rg=True)
    sys_ = oscillator(k=k, drag=0.1)
    moved = sys_.to("cpu")
    assert moved is not sys_ and moved.mass is sys_.mass       # already there: same tensors
    s = simulate(moved, State(x=T([1.0]), v=T([0.0])), 5, 0.1)
    (g,) = ds.autograd.grad(s.x.sum(), [k])
    assert float(g) != 0.0
