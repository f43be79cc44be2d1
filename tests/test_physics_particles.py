"""Particles with pairwise forces: the gravity op, the cell list, LJ and user pair potentials."""
import importlib.util
import pathlib
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import diffsim as ds
from diffsim import physics
from diffsim.physics.neighbors import brute_force_pairs, neighbor_pairs
from diffsim.testing import gradcheck, gradgradcheck

ROOT = pathlib.Path(__file__).resolve().parents[1]
F64 = ds.float64


def T(a, rg=False):
    return ds.tensor(np.asarray(a, dtype=np.float64), dtype=F64, requires_grad=rg)


def lattice(n_side, dim=3, spacing=1.1, jitter=0.1, seed=0):
    """Jittered lattice points [n_side**dim, dim]: no two closer than spacing - 2 * jitter."""
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.arange(n_side)] * dim, indexing="ij"), -1).reshape(-1, dim)
    return g * spacing + rng.uniform(-jitter, jitter, g.shape)


def dense_gravity(x, m, G, eps):
    d = x[None, :, :] - x[:, None, :]
    k = ((d ** 2).sum(-1) + eps ** 2) ** -1.5
    np.fill_diagonal(k, 0.0)
    return G * np.einsum("ij,j,ijd->id", k, m, d)


def pair_set(i, j):
    return set(zip(np.asarray(i).tolist(), np.asarray(j).tolist()))


# ---------------------------------------------------------------- the gravity op

@pytest.mark.parametrize("chunk", [None, 1, 3, 50])
def test_gravity_matches_dense_reference(chunk):
    rng = np.random.default_rng(1)
    x, m = rng.standard_normal((23, 3)), rng.uniform(0.5, 2.0, 23)
    a = physics.gravity_acceleration(T(x), T(m), 1.7, 0.05, chunk=chunk)
    np.testing.assert_allclose(a.numpy(), dense_gravity(x, m, 1.7, 0.05), rtol=1e-12, atol=1e-12)


def test_gravity_close_pair_is_accurate():
    """Direct differences: a pair 1e-9 apart far from the origin keeps its exact force."""
    x = np.array([[1e4, 0.0, 0.0], [1e4 + 1e-5, 0.0, 0.0]])
    a = physics.gravity_acceleration(T(x), T([1.0, 1.0]), 1.0, 0.0).numpy()
    d = x[1, 0] - x[0, 0]           # the exactly representable difference
    np.testing.assert_allclose(a[0, 0], 1.0 / d ** 2, rtol=1e-12)


@pytest.mark.parametrize("chunk", [None, 2])
def test_gravity_gradcheck(chunk):
    rng = np.random.default_rng(2)
    inputs = (T(rng.standard_normal((6, 3)), True), T(rng.uniform(0.5, 2, 6), True), T(1.3, True), T(0.3, True))
    assert gradcheck(lambda x, m, G, e: physics.gravity_acceleration(x, m, G, e, chunk=chunk), inputs)
    # one scalar mass for all particles, 2-D
    inputs = (T(rng.standard_normal((5, 2)), True), T(0.7, True))
    assert gradcheck(lambda x, m: physics.gravity_acceleration(x, m, 1.0, 0.1), inputs)


def test_gravity_second_derivative_raises_clearly():
    x = T(np.random.default_rng(0).standard_normal((4, 3)), True)
    a = physics.gravity_acceleration(x, 1.0, 1.0, 0.1)
    (g,) = ds.autograd.grad((a ** 2).sum(), [x], create_graph=True)
    with pytest.raises(RuntimeError, match="second derivatives"):
        g.sum().backward()


# ---------------------------------------------------------------- neighbour search

@pytest.mark.parametrize("periodic", [False, True])
def test_cell_list_equals_brute_force(periodic):
    rng = np.random.default_rng(3)
    for trial in range(30):
        dim = int(rng.integers(1, 4))
        n = int(rng.integers(0, 150))
        rc = float(rng.uniform(0.2, 1.5))
        x = rng.uniform(-2, 2, (n, dim)) * rng.uniform(0.2, 3)
        box = rng.uniform(2 * rc, 8, dim) if periodic else None
        i, j, sh = neighbor_pairs(x, rc, box)
        bi, bj, bsh = brute_force_pairs(x, rc, box)
        assert pair_set(i, j) == pair_set(bi, bj), trial
        assert (i < j).all()
        if periodic:
            d = x[j] - x[i] - sh
            assert (np.abs(d) <= box / 2 + 1e-12).all()


def test_cell_list_errors():
    with pytest.raises(ValueError, match="min"):
        neighbor_pairs(np.zeros((3, 3)), 2.0, box=[3.0, 3.0, 3.0])
    with pytest.raises(ValueError, match="cutoff"):
        neighbor_pairs(np.zeros((3, 3)), -1.0)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        neighbor_pairs(np.zeros(3), 1.0)


# ---------------------------------------------------------------- pair potentials

def lj_formula(eps, s):
    return lambda r: 4 * eps * ((s / r) ** 12 - (s / r) ** 6)


@pytest.mark.parametrize("box", [None, [3.4, 3.4, 3.4]])
@pytest.mark.parametrize("shift", ["force", "energy", None])
def test_pair_potential_with_lj_formula_equals_lennard_jones(box, shift):
    eps, s = T(1.2, True), T(0.9, True)
    x = T(lattice(3), True)
    lj = physics.LennardJones(eps, s, cutoff=1.7, shift=shift)
    pp = physics.PairPotential(lj_formula(eps, s), cutoff=1.7, shift=shift)
    one = T(1.0)
    f1, f2 = lj.force(x, one, box), pp.force(x, one, box)
    np.testing.assert_allclose(f1.detach().numpy(), f2.detach().numpy(), rtol=1e-12, atol=1e-12)
    e1, e2 = lj.energy(x, one, box), pp.energy(x, one, box)
    np.testing.assert_allclose(float(e1), float(e2), rtol=1e-12)
    g1 = ds.autograd.grad((f1 ** 2).sum(), [x, eps, s])
    g2 = ds.autograd.grad((f2 ** 2).sum(), [x, eps, s])
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-10)
    # forces are minus the gradient of the energy
    (ge,) = ds.autograd.grad(pp.energy(x, one, box), [x])
    np.testing.assert_allclose(-ge.numpy(), f2.detach().numpy(), rtol=1e-10, atol=1e-10)


def test_shifted_force_is_continuous_at_cutoff():
    lj = physics.LennardJones(1.0, 1.0, cutoff=2.5)
    one = T(1.0)
    for r in (2.5 - 1e-9, 2.5 + 1e-9):
        x = T([[0.0, 0.0], [r, 0.0]])
        assert abs(float(lj.energy(x, one, None))) < 1e-10
        assert np.abs(lj.force(x, one, None).numpy()).max() < 1e-8


@pytest.mark.parametrize("which", ["lj", "user", "user_nocut"])
def test_pair_force_gradcheck(which):
    eps, s = T(1.0, True), T(0.9, True)
    x = T(lattice(2, jitter=0.15), True)
    one = T(1.0)
    if which == "lj":
        term = physics.LennardJones(eps, s, cutoff=1.7)
    elif which == "user":
        term = physics.PairPotential(lj_formula(eps, s), cutoff=1.7)
    else:
        term = physics.PairPotential(lambda r: eps * (r - s) ** 2 * (-r).exp())
    assert gradcheck(lambda x, e, s: term.force(x, one, None), (x, eps, s))
    if which == "lj":
        assert gradgradcheck(lambda x, e, s: term.force(x, one, None), (x, eps, s))


def test_pair_force_op_gradcheck():
    rng = np.random.default_rng(4)
    d, c = T(rng.standard_normal((7, 3)), True), T(rng.standard_normal(7), True)
    i, j = np.array([0, 0, 1, 2, 3, 1, 4]), np.array([1, 2, 3, 4, 4, 4, 2])
    assert gradcheck(lambda d, c: physics.pair_force(d, c, i, j, 5), (d, c))
    assert gradgradcheck(lambda d, c: physics.pair_force(d, c, i, j, 5), (d, c))


# ---------------------------------------------------------------- the system, integrators, rollouts

def small_system(seed=0):
    eps, s, G, m = T(1.0, True), T(0.9, True), T(0.5, True), T([1.0, 1.5, 0.8, 1.2, 0.9], True)
    sysm = physics.Particles(mass=m, forces=[physics.LennardJones(eps, s, cutoff=1.6),
                                             physics.Gravity(G, softening=0.1)])
    x = lattice(2, jitter=0.1, seed=seed)[:5]
    v = np.random.default_rng(seed).standard_normal((5, 3)) * 0.1
    return sysm, T(x, True), T(v, True), (eps, s, G, m)


@pytest.mark.parametrize("integ", ["explicit_euler", "semi_implicit_euler", "velocity_verlet", "rk4"])
def test_one_step_gradcheck_every_integrator(integ):
    sysm, x, v, params = small_system()

    def step(x, v, *params):
        out = physics.simulate(sysm, physics.State(x=x, v=v), 1, 0.01, integrator=integ)
        return out.x, out.v
    assert gradcheck(step, (x, v) + params)


def test_short_rollout_gradcheck_and_checkpoint():
    sysm, x, v, params = small_system(1)

    def roll(x, v, *params, checkpoint=None):
        out = physics.simulate(sysm, physics.State(x=x, v=v), 6, 0.02, integrator="velocity_verlet",
                               checkpoint=checkpoint)
        return (out.x ** 2).sum() + (out.v ** 2).sum()
    assert gradcheck(roll, (x, v) + params)
    g1 = ds.autograd.grad(roll(x, v, *params), [x, v, *params])
    g2 = ds.autograd.grad(roll(x, v, *params, checkpoint=2), [x, v, *params])
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-14)


def test_user_potential_rollout_gradient_matches_finite_differences():
    k = T(2.0, True)
    sysm = physics.Particles(1.0, forces=[physics.PairPotential(lambda r: k * (r - 1.0) ** 2, cutoff=1.8)],
                             box=[4.0, 4.0])
    x0 = T(lattice(2, dim=2, spacing=1.2, seed=5))
    v0 = T(np.zeros((4, 2)))

    def loss():
        out = physics.simulate(sysm, physics.State(x=x0, v=v0), 20, 0.05, integrator="velocity_verlet")
        return (out.x[:, 0] ** 2).sum()
    report = physics.check_gradients(loss, [k])
    assert report.ok, str(report)


def momenta(sysm, s):
    m = sysm.mass.detach().numpy()
    m = np.broadcast_to(m, s.x.shape[:1])[:, None]
    p = (m * s.v.numpy()).sum(0)
    L = (m * np.cross(s.x.numpy(), s.v.numpy())).sum(0)
    return p, L


@pytest.mark.parametrize("term", ["gravity", "lj"])
def test_momentum_conserved_under_internal_forces(term):
    rng = np.random.default_rng(6)
    if term == "gravity":
        sysm = physics.Particles(mass=T(rng.uniform(0.5, 2, 20)), forces=[physics.Gravity(1.0, 0.05)])
        x = rng.standard_normal((20, 3)) * 2
    else:
        sysm = physics.Particles(mass=T(rng.uniform(0.5, 2, 27)), forces=[physics.LennardJones(1.0, 1.0)])
        x = lattice(3, spacing=1.15)
    s0 = physics.State(x=T(x), v=T(rng.standard_normal(x.shape) * 0.2))
    with ds.no_grad():
        s1 = physics.simulate(sysm, s0, 200, 1e-3, integrator="velocity_verlet")
    p0, L0 = momenta(sysm, s0)
    p1, L1 = momenta(sysm, s1)
    np.testing.assert_allclose(p1, p0, atol=1e-12)
    np.testing.assert_allclose(L1, L0, atol=1e-11)


def test_kepler_energy_drift_verlet_bounded_euler_grows():
    """Eccentric (e = 0.5) two-body orbit, Particles + Gravity, 10 000 steps (~16 periods)."""
    v = np.sqrt(0.5 / 1.5)
    sysm = physics.Particles(mass=0.5, forces=[physics.Gravity(G=1.0)])
    s0 = physics.State(x=T([[-0.75, 0, 0], [0.75, 0, 0]]), v=T([[0, -v / 2, 0], [0, v / 2, 0]]))
    e0 = float(sysm.energy(s0))
    assert e0 == pytest.approx(-0.125)
    drift = {}
    for integ in ("velocity_verlet", "explicit_euler"):
        with ds.no_grad():
            tr = physics.simulate(sysm, s0, 10_000, 0.01, integrator=integ, record=500)
        e = np.array([float(sysm.energy(s)) for s in tr])
        drift[integ] = np.abs(e - e0) / abs(e0)
    assert drift["velocity_verlet"].max() < 1e-3
    assert drift["velocity_verlet"][-1] < 1e-5          # no secular drift
    assert drift["explicit_euler"][-1] > 0.3
    assert np.all(np.diff(drift["explicit_euler"][1:]) > 0)     # grows steadily


def test_lj_energy_conserved_in_periodic_box():
    box = 3 * 1.15
    sysm = physics.Particles(1.0, forces=[physics.LennardJones(1.0, 1.0, cutoff=1.7)], box=[box] * 3)
    s0 = physics.State(x=T(lattice(3, spacing=1.15)), v=T(np.random.default_rng(7).standard_normal((27, 3)) * 0.3))
    e0 = float(sysm.energy(s0))
    with ds.no_grad():
        tr = physics.simulate(sysm, s0, 300, 2e-3, integrator="velocity_verlet", record=50)
    e = np.array([float(sysm.energy(s)) for s in tr])
    assert np.abs(e - e0).max() < 1e-3 * max(1.0, abs(e0))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 12), dim=st.integers(2, 3), seed=st.integers(0, 10_000),
       shift=st.floats(-50, 50), periodic=st.booleans())
def test_forces_translation_invariant_and_sum_to_zero(n, dim, seed, shift, periodic):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 4, (n, dim))
    m = rng.uniform(0.5, 2, n)
    box = [8.0] * dim if periodic else None
    terms = [physics.LennardJones(0.5, 0.6, cutoff=2.0),
             physics.PairPotential(lambda r: (-r).exp() / r, cutoff=2.5)]
    if not periodic:
        terms.append(physics.Gravity(1.0, 0.2))
    sysm = physics.Particles(T(m), forces=terms, box=box)
    with ds.no_grad():
        a0 = sysm.acceleration(physics.State(x=T(x), v=T(x * 0)), 0.0)["v"].numpy()
        a1 = sysm.acceleration(physics.State(x=T(x + shift), v=T(x * 0)), 0.0)["v"].numpy()
    scale = np.abs(m[:, None] * a0).sum() + 1.0
    assert np.abs((m[:, None] * a0).sum(0)).max() < 1e-12 * scale
    np.testing.assert_allclose(a1, a0, rtol=1e-7, atol=1e-9 * scale)


def _lj_10k():
    n_side = 22
    x = lattice(n_side, spacing=1.12, jitter=0.05)[:10_000]
    box = n_side * 1.12
    eps = T(1.0, True)
    sysm = physics.Particles(1.0, forces=[physics.LennardJones(eps, 1.0, cutoff=2.5)], box=[box] * 3)
    return sysm, x, eps


def test_lj_10000_particles_step_without_quadratic_memory():
    sysm, x, eps = _lj_10k()
    x0 = T(x, True)
    tracemalloc.start()
    try:
        out = physics.simulate(sysm, physics.State(x=x0, v=T(np.zeros_like(x))), 1, 1e-3,
                               integrator="velocity_verlet")
        (out.x ** 2).sum().backward()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.isfinite(x0.grad.numpy()).all() and eps.grad is not None
    assert peak < 400e6            # an [N, N] float64 array alone would be 800 MB


def test_lj_10000_particles_forward_step():
    sysm, x, _ = _lj_10k()
    with ds.no_grad():
        out = physics.simulate(sysm, physics.State(x=T(x), v=T(np.zeros_like(x))), 1, 1e-3,
                               integrator="semi_implicit_euler")
    assert np.isfinite(out.x.numpy()).all()


# ---------------------------------------------------------------- bad input

def test_bad_input_errors():
    lj = physics.LennardJones(1.0, 1.0)
    with pytest.raises(ValueError, match="mass must be > 0"):
        physics.Particles(mass=[1.0, -1.0], forces=[lj])
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        physics.LennardJones(-1.0, 1.0)
    with pytest.raises(TypeError, match="force terms"):
        physics.Particles(1.0, forces=[lambda x: x])
    with pytest.raises(ValueError, match="periodic box"):
        physics.Particles(1.0, forces=[physics.Gravity()], box=10.0)
    with pytest.raises(TypeError, match="callable"):
        physics.PairPotential(3.0)
    with pytest.raises(ValueError, match="cutoff"):
        physics.PairPotential(lambda r: r, cutoff=-1.0)
    sysm = physics.Particles(mass=[1.0, 2.0, 3.0], forces=[lj])
    x = T(lattice(2, dim=2))
    with pytest.raises(ValueError, match="3 masses but the state has 4"):
        physics.simulate(sysm, physics.State(x=x, v=x * 0), 1, 0.01)
    sysm = physics.Particles(1.0, forces=[lj])
    with pytest.raises(ValueError, match="same shape"):
        physics.simulate(sysm, physics.State(x=x, v=T(np.zeros((4, 3)))), 1, 0.01)
    bad = x.numpy().copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        physics.simulate(sysm, physics.State(x=T(bad), v=x * 0), 1, 0.01)
    with pytest.raises(ValueError, match="half the box"):
        physics.simulate(physics.Particles(1.0, forces=[lj], box=4.0), physics.State(x=x, v=x * 0), 1, 0.01)
    pp = physics.PairPotential(lambda r: r.sum(), cutoff=2.0)
    with pytest.raises(ValueError, match="shaped like r"):
        physics.simulate(physics.Particles(1.0, forces=[pp]), physics.State(x=x, v=x * 0), 1, 0.01)
    with pytest.raises(ValueError, match="mass must be"):
        physics.gravity_acceleration(x, T([1.0, 2.0]))


def test_parameters_and_repr():
    sysm, *_ = small_system()
    assert len(sysm.parameters()) == 4
    assert "Particles" in repr(sysm)


# ---------------------------------------------------------------- the example

def test_particles_lj_example_fit_improves(tmp_path):
    spec = importlib.util.spec_from_file_location("particles_lj", ROOT / "examples" / "particles_lj.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    result = mod.main(["--iters", "12", "--steps", "40", "--plot", "none"])
    assert min(result["losses"][-4:]) < 0.2 * result["losses"][0], result["losses"]
    assert abs(result["sigma"] - result["true_sigma"]) < 0.05 * result["true_sigma"]


# ---------------------------------------------------------------- review: odd cases

def test_soft_pair_potential_with_coincident_particles_is_finite():
    # a bounded (soft-core) potential: two particles on top of each other feel no force from
    # each other, and neither the force nor its gradient is NaN
    pp = physics.PairPotential(lambda r: (-(r * r)).exp(), cutoff=None)
    sysm = physics.Particles(mass=1.0, forces=[pp])
    x = T([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]], rg=True)
    a = sysm.acceleration(physics.State(x=x, v=T(np.zeros((3, 2)))), 0.0)["v"]
    an = a.detach().numpy()
    assert np.isfinite(an).all()
    # particle 2 is pulled by both others: F = 2 * phi'(1) * (x_j - x_i) / r = 2 * (-2 e^-1) * (-1, 0)
    np.testing.assert_allclose(an[2], [4.0 * np.exp(-1.0), 0.0], rtol=1e-12)
    np.testing.assert_allclose(an[0], [-2.0 * np.exp(-1.0), 0.0], rtol=1e-12)
    (g,) = ds.autograd.grad((a * a).sum(), [x])
    assert np.isfinite(g.numpy()).all()
    (ge,) = ds.autograd.grad(sysm.potential_energy(x), [x])
    assert np.isfinite(ge.numpy()).all()


def test_nbody_gravity_force_is_minus_the_energy_gradient():
    m = T([1.0, 2.0, 3.0, 0.5])
    sysm = physics.Particles(mass=m, forces=[physics.Gravity(G=1.3, softening=0.1)], gravity=[0.0, -9.81, 0.0])
    x = T(np.random.RandomState(0).randn(4, 3), rg=True)
    (ge,) = ds.autograd.grad(sysm.potential_energy(x), [x])
    a = sysm.acceleration(physics.State(x=x, v=T(np.zeros((4, 3)))), 0.0)["v"]
    np.testing.assert_allclose(a.detach().numpy() * m.numpy()[:, None], -ge.numpy(), atol=1e-12)


# ---------------------------------------------------------------- the gravity op's CUDA kernels (CPU checks)

def test_gravity_cuda_module_imports_without_cupy():
    """The kernel module (and diffsim.physics) import with cupy unavailable; nothing is compiled
    at import time."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['cupy'] = None\n"
            "import diffsim.physics\n"
            "from diffsim.physics import _cuda_gravity as k\n"
            "assert k._modules == {}\n"
            "assert diffsim.physics.particles._gravity.cuda_fwd is not None\n"
            "assert 'gravity_fwd' in k.KERNEL_SOURCE and 'gravity_vjp' in k.KERNEL_SOURCE\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_gravity_cuda_sources_compile_with_nvcc(tmp_path):
    import shutil
    import subprocess
    from diffsim.physics import _cuda_gravity
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH")
    for name, src in _cuda_gravity.cuda_sources().items():
        f = tmp_path / name
        f.write_text(src)
        r = subprocess.run([nvcc, "-arch=sm_90", "-std=c++14", "-c", str(f), "-o", str(tmp_path / (name + ".o"))],
                           capture_output=True, text=True, timeout=300)
        if r.returncode and "Unsupported gpu architecture" in r.stderr:
            pytest.skip(f"this nvcc does not know sm_90: {r.stderr.strip()}")
        assert r.returncode == 0, f"{name}:\n{r.stderr}"


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("scalar_mass", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_gravity_cuda_kernel_algebra_matches_numpy_backward(dim, scalar_mass, eps):
    """The per-particle formulas the backward kernel evaluates (``reference_vjp``, a numpy
    transcription) equal the op's chunked numpy backward."""
    from diffsim.physics import _cuda_gravity
    from diffsim.physics.particles import _gravity_vjp_fwd
    rng = np.random.default_rng(dim + 2 * scalar_mass)
    n = 37
    x, g = rng.standard_normal((n, dim)), rng.standard_normal((n, dim))
    m = np.asarray(0.7) if scalar_mass else rng.uniform(0.5, 2.0, n)
    ref = _gravity_vjp_fwd(g, x, m, 1.3, eps, 5)
    got = _cuda_gravity.reference_vjp(g, x, m, 1.3, eps)
    for r, k in zip(ref, got):
        assert np.shape(r) == np.shape(k)
        np.testing.assert_allclose(k, r, rtol=1e-12, atol=1e-12 * max(1.0, float(np.max(np.abs(r)))))
