"""MLS-MPM: transfers conserve mass and momentum, gradients match finite differences,
physical behaviour (a bouncing block, a spreading fluid column), clear errors, the example."""
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

import diffsim as ds
from diffsim import physics
from diffsim.physics.mpm import g2p, p2g
from diffsim.testing import gradcheck, gradgradcheck

ROOT = Path(__file__).resolve().parents[1]
F64 = ds.float64


def t64(a, rg=False):
    return ds.tensor(np.asarray(a, dtype=np.float64), dtype=F64, requires_grad=rg)


def particles(P=20, D=2, lo=0.35, hi=0.6, seed=0):
    rng = np.random.default_rng(seed)
    return lo + (hi - lo) * rng.random((P, D))


def block(n=6, lo=(0.4, 0.4), size=0.12):
    """An n x n block of particles."""
    g = (np.arange(n) + 0.5) / n * size
    X, Y = np.meshgrid(g + lo[0], g + lo[1], indexing="ij")
    return np.stack([X.ravel(), Y.ravel()], 1)


# ---------------------------------------------------------------- transfers

@pytest.mark.parametrize("D", [2, 3])
def test_p2g_conserves_mass_momentum_and_angular_momentum(D):
    rng = np.random.default_rng(1)
    P, n, dx = 30, 10, 0.1
    x = t64(particles(P, D))
    m = t64(rng.random(P) + 0.5)
    v = t64(rng.standard_normal((P, D)))
    C = t64(rng.standard_normal((P, D, D)))
    gmv, gm = p2g(x, m, v * m[:, None], C * m[:, None, None], n, dx)
    assert gm.shape == (n ** D,) and gmv.shape == (n ** D, D)
    assert np.isclose(gm.sum().item(), m.sum().item(), rtol=1e-13)
    np.testing.assert_allclose(gmv.sum(0).numpy(), (m[:, None] * v).sum(0).numpy(), rtol=1e-12, atol=1e-12)
    if D == 2:
        # APIC: grid angular momentum = sum_p m (x x v + dx^2/4 (C10 - C01)), exactly
        xi = np.stack(np.unravel_index(np.arange(n ** D), (n,) * D), -1) * dx
        Lg = (xi[:, 0] * gmv.numpy()[:, 1] - xi[:, 1] * gmv.numpy()[:, 0]).sum()
        xn, vn, Cn, mn = x.numpy(), v.numpy(), C.numpy(), m.numpy()
        Lp = (mn * (xn[:, 0] * vn[:, 1] - xn[:, 1] * vn[:, 0] + dx ** 2 / 4 * (Cn[:, 1, 0] - Cn[:, 0, 1]))).sum()
        assert np.isclose(Lg, Lp, rtol=1e-12)


def test_g2p_round_trip_conserves_momentum_and_angular_momentum_and_is_exact_for_affine_fields():
    rng = np.random.default_rng(2)
    P, n, dx = 40, 12, 1.0 / 12
    x = t64(particles(P))
    m = t64(rng.random(P) + 0.5)
    v = t64(rng.standard_normal((P, 2)))
    C = t64(rng.standard_normal((P, 2, 2)))
    gmv, gm = p2g(x, m, v * m[:, None], C * m[:, None, None], n, dx)
    gv = gmv / ds.where(gm > 0, gm, 1.0)[:, None]
    v2, C2 = g2p(x, gv, n, dx)
    np.testing.assert_allclose((m[:, None] * v2).sum(0).numpy(), gmv.sum(0).numpy(), rtol=1e-12, atol=1e-12)
    xi = np.stack(np.unravel_index(np.arange(n * n), (n, n)), -1) * dx
    Lg = (xi[:, 0] * gmv.numpy()[:, 1] - xi[:, 1] * gmv.numpy()[:, 0]).sum()
    xn, vn, Cn, mn = x.numpy(), v2.numpy(), C2.numpy(), m.numpy()
    Lp = (mn * (xn[:, 0] * vn[:, 1] - xn[:, 1] * vn[:, 0] + dx ** 2 / 4 * (Cn[:, 1, 0] - Cn[:, 0, 1]))).sum()
    assert np.isclose(Lg, Lp, rtol=1e-11)
    # a linear velocity field u(y) = b + M y is reproduced exactly: v = u(x_p), C = M
    b, M = np.array([0.3, -0.2]), np.array([[0.5, -1.0], [2.0, 0.1]])
    uf = t64(b + xi @ M.T)
    v3, C3 = g2p(x, uf, n, dx)
    np.testing.assert_allclose(v3.numpy(), b + x.numpy() @ M.T, atol=1e-12)
    np.testing.assert_allclose(C3.numpy(), np.broadcast_to(M, (P, 2, 2)), atol=1e-11)


@pytest.mark.parametrize("D", [2, 3])
def test_gradcheck_p2g_and_g2p(D):
    rng = np.random.default_rng(3)
    P, n, dx = 6, 8, 0.125
    x = t64(particles(P, D, 0.3, 0.6), True)
    m = t64(rng.random(P) + 0.5, True)
    mv = t64(rng.standard_normal((P, D)), True)
    A = t64(rng.standard_normal((P, D, D)), True)
    gradcheck(lambda x, m, mv, A: p2g(x, m, mv, A, n, dx), (x, m, mv, A), atol=1e-6)
    gv = t64(rng.standard_normal((n ** D, D)), True)
    gradcheck(lambda x, gv: g2p(x, gv, n, dx), (x, gv), atol=1e-6)


def test_gradgradcheck_p2g_and_g2p():
    rng = np.random.default_rng(4)
    P, n, dx = 4, 8, 0.125
    x = t64(particles(P, 2, 0.3, 0.6), True)
    m = t64(rng.random(P) + 0.5, True)
    mv = t64(rng.standard_normal((P, 2)), True)
    A = t64(rng.standard_normal((P, 2, 2)), True)
    gradgradcheck(lambda x, m, mv, A: p2g(x, m, mv, A, n, dx), (x, m, mv, A), atol=1e-5)
    gv = t64(rng.standard_normal((n * n, 2)), True)
    gradgradcheck(lambda x, gv: g2p(x, gv, n, dx), (x, gv), atol=1e-5)


# ---------------------------------------------------------------- full steps

def robot_system(E=30.0, **kw):
    x0 = block(4, lo=(0.35, 0.2), size=0.1)
    act = (np.arange(len(x0)) % 2).astype(np.int64)
    return physics.MPM(t64(x0), n_grid=16, E=t64(E), nu=0.2, density=1.0, actuators=act,
                       actuation_strength=5.0, **kw)


def test_gradcheck_one_step_wrt_state_material_and_actuation():
    rng = np.random.default_rng(5)
    sys_ = robot_system(boundary="friction")
    P = sys_.n_particles
    x = t64(sys_.positions.numpy(), True)
    v = t64(0.3 * rng.standard_normal((P, 2)), True)
    C = t64(0.5 * rng.standard_normal((P, 2, 2)), True)
    F = t64(np.eye(2) + 0.05 * rng.standard_normal((P, 2, 2)), True)
    E = t64(np.full(P, 30.0) + rng.random(P), True)
    nu = t64(0.25, True)
    act = t64([0.3, -0.2], True)

    def one(x, v, C, F, E, nu, act):
        s = physics.MPM(x.detach(), n_grid=16, E=E, nu=nu, actuators=sys_.actuators.clip(max=1),
                        actuation_strength=5.0)
        out = s.step(physics.State(x=x, v=v, C=C, F=F), 2e-3, act)
        return out.x, out.v, out.C, out.F
    gradcheck(one, (x, v, C, F, E, nu, act), atol=1e-6, rtol=1e-4)


def test_gradcheck_short_rollout_through_simulate_with_checkpointing():
    sys_ = robot_system()
    P = sys_.n_particles
    rng = np.random.default_rng(6)
    v0 = t64(0.2 * rng.standard_normal((P, 2)), True)
    u = t64(0.5 * rng.standard_normal((6, 2)), True)

    def roll(x0, v0, E, u, checkpoint=None):
        s = physics.MPM(x0.detach(), n_grid=16, E=E, actuators=sys_.actuators.clip(max=1), actuation_strength=5.0)
        st = s.initial_state(x0, v0)
        f = physics.simulate(s, st, 6, 2e-3, integrator=physics.MPMIntegrator(), controls=u,
                             checkpoint=checkpoint)
        return f.x
    x0 = t64(sys_.positions.numpy(), True)
    E = t64(30.0, True)
    gradcheck(lambda x0, v0, E, u: roll(x0, v0, E, u), (x0, v0, E, u), atol=1e-6, rtol=1e-4)
    # checkpointed rollout: identical gradients
    w = t64(rng.standard_normal((P, 2)))
    grads = []
    for ck in (None, 2):
        for t in (x0, v0, E, u):
            t.grad = None
        (roll(x0, v0, E, u, ck) * w).sum().backward()
        grads.append([t.grad.numpy().copy() for t in (x0, v0, E, u)])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- physics

def test_elastic_block_dropped_on_floor_bounces_and_settles_without_penetrating():
    n, dx, size = 32, 1.0 / 32, 0.16
    body = physics.MPM(block(8, lo=(0.4, 0.2), size=size), n_grid=n, E=300.0, nu=0.2, dtype=F64,
                       boundary="slip")
    traj = physics.simulate(body, body.initial_state(), 2000, 1e-3, integrator=physics.MPMIntegrator(),
                            record=50)
    y = traj.x.numpy()[..., 1]                         # [records, P]
    floor = body.bound * dx
    assert y.min() > floor - 0.5 * dx, y.min()         # never penetrates the wall layer
    vy = traj.v.numpy()[..., 1].mean(1)
    hit = int(np.argmin(vy))
    assert vy[hit] < -0.8                              # it fell ...
    assert vy[hit:].max() > 0.5                        # ... and bounced back up
    ke = 0.5 * (traj.v.numpy() ** 2).sum(-1).mean(1)
    assert ke[-5:].mean() < 0.25 * ke.max(), ke        # the bounces die down
    com = y[-10:].mean()                               # resting on the floor, not collapsed
    assert abs(com - (floor + size / 2)) < 0.03, com
    assert traj.x.numpy()[-1, :, 1].min() < floor + 2 * dx


def test_fluid_column_spreads():
    n = 32
    col = block(8, lo=(0.1, 0.1), size=0.15)
    fl = physics.MPM(col, n_grid=n, E=200.0, nu=0.3, material="fluid", dtype=F64, boundary="slip")
    f = physics.simulate(fl, fl.initial_state(), 400, 1e-3, integrator=physics.MPMIntegrator())
    x0, x1 = col, f.x.numpy()
    assert x1[:, 0].max() > x0[:, 0].max() + 0.1        # spread sideways
    assert x1[:, 1].max() < x0[:, 1].max() - 0.05       # and the column fell
    # an elastic block of the same size keeps its width
    el = physics.MPM(col, n_grid=n, E=200.0, nu=0.3, dtype=F64, boundary="slip")
    g = physics.simulate(el, el.initial_state(), 400, 1e-3, integrator=physics.MPMIntegrator())
    assert g.x.numpy()[:, 0].max() < x1[:, 0].max() - 0.05
    # fluid F stays isotropic
    Fn = f.F.numpy()
    np.testing.assert_allclose(Fn[:, 0, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(Fn[:, 0, 0], Fn[:, 1, 1], rtol=1e-12)


def test_mpm_3d_block_falls_and_float32_works():
    x0 = particles(27, 3, 0.4, 0.55)
    body = physics.MPM(x0.astype(np.float32), n_grid=12, E=50.0)
    assert body.positions.dtype == ds.float32
    f = physics.simulate(body, body.initial_state(), 30, 2e-3, integrator=physics.MPMIntegrator())
    assert f.x.dtype == ds.float32 and f.x.numpy()[:, 1].mean() < x0[:, 1].mean()
    assert np.isfinite(f.F.numpy()).all()


# ---------------------------------------------------------------- errors

def test_bad_input_raises_clear_errors():
    x0 = block(4)
    with pytest.raises(ValueError, match="E must be > 0"):
        physics.MPM(x0, E=-1.0)
    with pytest.raises(ValueError, match="density must be > 0"):
        physics.MPM(x0, density=np.full(len(x0), -1.0))
    with pytest.raises(ValueError, match=r"E must be a number or have shape \[16\]"):
        physics.MPM(x0, E=np.ones(5))
    with pytest.raises(ValueError, match="nu"):
        physics.MPM(x0, nu=0.5)
    with pytest.raises(ValueError, match="positions must be"):
        physics.MPM(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="boundary"):
        physics.MPM(x0, boundary="bouncy")
    body = physics.MPM(x0, n_grid=16, E=30.0, dtype=F64)
    st = body.initial_state()
    with pytest.raises(ValueError, match="outside the grid"):
        body.initial_state(x=x0 + 0.6)
    with pytest.raises(ValueError, match=r"state field 'v' has shape \[3, 2\]"):
        body.check_state(st.replace(v=ds.zeros((3, 2), dtype=F64)))
    with pytest.raises(ValueError, match="exceeds the stability limit"):
        body.step(st, 1.0)
    with pytest.raises(TypeError, match="MPMIntegrator"):
        physics.simulate(body, st, 2, 1e-3)
    with pytest.raises(ValueError, match="no actuators"):
        body.step(st, 1e-3, t64([1.0]))
    with pytest.raises(ValueError, match="outside the grid"):
        p2g(t64([[2.0, 0.5]]), t64([1.0]), t64([[0.0, 0.0]]), t64(np.zeros((1, 2, 2))), 8, 0.125)
    with pytest.raises(ValueError, match=r"p2g: mass must be a Tensor of shape \[1\]"):
        p2g(t64([[0.5, 0.5]]), t64([1.0, 2.0]), t64([[0.0, 0.0]]), t64(np.zeros((1, 2, 2))), 8, 0.125)
    with pytest.raises(ValueError, match=r"g2p: grid_velocity must be a Tensor of shape \[64, 2\]"):
        g2p(t64([[0.5, 0.5]]), t64(np.zeros((10, 2))), 8, 0.125)
    fast = st.replace(v=ds.full((16, 2), 100.0, dtype=F64))
    with pytest.warns(RuntimeWarning, match="cells in one step"):
        body.step(fast, 1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        body.step(st, 1e-3)


# ---------------------------------------------------------------- example

def test_mpm_robot_example_moves_right_after_training(tmp_path):
    spec = importlib.util.spec_from_file_location("mpm_robot", ROOT / "examples" / "mpm_robot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "robot.gif"
    res = mod.main(["--iters", "5", "--steps", "120", "--n-grid", "32", "--out", str(out)])
    d = res["distances"]
    assert len(d) == 5 and np.isfinite(d).all()
    assert res["final_distance"] > d[0] + 0.002, (d, res["final_distance"])
    assert sum(b > a for a, b in zip(d, d[1:])) >= 3, d
    try:
        import PIL  # noqa: F401,F811
    except ImportError:
        return
    assert out.exists() and out.stat().st_size > 0


# ---------------------------------------------------------------- benchmark

def test_mpm_benchmark_runs_small_and_agrees_with_torch_and_numpy():
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import mpm as bench
        rows = bench.run(n_particles=512, n_grid=32, steps=2, repeats=1)   # raises if the variants disagree
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert rows and all(r["ratio"] > 0 and r["diffsim_s"] > 0 and r["baseline_s"] > 0 for r in rows)
    assert "numpy forward only" in {r["baseline"] for r in rows}


# ---------------------------------------------------------------- fused ops / fast paths

@pytest.mark.parametrize("D", [2, 3])
def test_neo_hookean_tau_op_matches_composite_and_gradchecks(D):
    from diffsim.physics.mpm import _det, neo_hookean_tau
    rng = np.random.default_rng(7)
    P = 5
    F = t64(np.eye(D) + 0.2 * rng.standard_normal((P, D, D)), True)
    mu = t64(rng.random(P) + 0.5, True)
    la = t64(rng.random(P) + 0.5, True)
    la0 = t64(0.7, True)                                     # a shared (0-d) parameter broadcasts
    ref = mu[:, None, None] * (F @ F.mT - ds.eye(D, dtype=F64)) + (la * _det(F).log())[:, None, None] * ds.eye(D, dtype=F64)
    np.testing.assert_allclose(neo_hookean_tau(F, mu, la).detach().numpy(), ref.detach().numpy(), rtol=1e-13,
                               atol=1e-13)
    gradcheck(lambda F, mu, la: neo_hookean_tau(F, mu, la), (F, mu, la), atol=1e-6)
    gradcheck(lambda F, mu, la: neo_hookean_tau(F, mu, la), (F, mu, la0), atol=1e-6)
    gradgradcheck(lambda F, mu, la: neo_hookean_tau(F, mu, la), (F, mu, la), atol=1e-5)


@pytest.mark.parametrize("D", [2, 3])
def test_fast_transfer_path_matches_generic_path(D):
    """The numpy "moment" path of P2G / G2P (forward and plain backward) equals the generic
    ``ns`` path (used under create_graph and on cupy)."""
    from diffsim.autodiff.rawops import RAW_NS
    from diffsim.physics import mpm as M

    rng = np.random.default_rng(8)
    P, n, dx = 30, 10, 0.1
    ng = (n,) * D
    xs = particles(P, D)
    m, mv, A = rng.random(P) + 0.5, rng.standard_normal((P, D)), rng.standard_normal((P, D, D))
    gv = rng.standard_normal((n ** D, D))

    class Node:
        attrs = dict(inv_dx=1.0 / dx, n_grid=ng, n_nodes=n ** D)
        needs_input_grad = (True,) * 4

    M._clear_fast()
    fast = M._fast_p2g_fwd(xs, m, mv, A, 1.0 / dx, ng, n ** D)
    M._clear_fast()
    fast_g = M._fast_g2p_fwd(xs, gv, 1.0 / dx, ng)
    g_p = (rng.standard_normal((n ** D, D)), rng.standard_normal(n ** D))
    g_g = (rng.standard_normal((P, D)), rng.standard_normal((P, D, D)))
    M._clear_fast()
    fb = M._fast_p2g_bwd(Node, g_p, xs, m, mv, A)
    fgb = M._fast_g2p_bwd(Node, g_g, xs, gv)
    # the generic path: make the arrays non-numpy-ndarray subclasses so _fast_ok is False
    class Arr(np.ndarray):
        pass

    def v(a):
        return np.asarray(a).view(Arr)
    slow = M._p2g_fwd(v(xs), v(m), v(mv), v(A), inv_dx=1.0 / dx, n_grid=ng, n_nodes=n ** D)
    slow_g = M._g2p_fwd(v(xs), v(gv), inv_dx=1.0 / dx, n_grid=ng)
    sb = M._p2g_bwd(RAW_NS, Node, tuple(map(v, g_p)), v(xs), v(m), v(mv), v(A))
    sgb = M._g2p_bwd(RAW_NS, Node, tuple(map(v, g_g)), v(xs), v(gv))
    for a, b in zip(fast + fast_g + tuple(fb) + tuple(fgb), slow + slow_g + tuple(sb) + tuple(sgb)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-11, atol=1e-12)
