"""The normal-modes and cloth-checkpoint examples run at small sizes and get their answers."""
import importlib.util
import math
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_normal_modes_match_analytic_and_gradient_matches_fd(tmp_path):
    mod = load("normal_modes")
    omega, kgrad, fd = mod.main(["--n", "6", "--plot", str(tmp_path / "modes.png")])
    analytic = [4 * math.sin(j * math.pi / 14) for j in range(1, 7)]
    assert max(abs(a - b) for a, b in zip(omega.tolist(), analytic)) < 1e-10
    assert abs(kgrad[1].item() - fd) < 1e-6 * max(1.0, abs(fd))
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "modes.png").stat().st_size > 0


def test_cloth_checkpoint_recovers_stiffness(tmp_path):
    mod = load("cloth_checkpoint")
    losses, k = mod.main(["--n", "5", "--steps", "60", "--iters", "8", "--plot", "none"])
    assert losses[-1] < 1e-3 * losses[0]
    assert abs(k - 800.0) < 40.0


def test_cloth_checkpointed_gradient_matches_finite_differences():
    import diffsim as ds
    mod = load("cloth_checkpoint")
    cloth = mod.make_cloth(4)
    log_k = ds.tensor(math.log(300.0), dtype=ds.float64, requires_grad=True)
    (mod.rollout(log_k, cloth, 40, segments=5) ** 2).sum().backward()
    h = 1e-6
    with ds.no_grad():
        f = [(mod.rollout(ds.tensor(math.log(300.0) + s, dtype=ds.float64), cloth, 40) ** 2).sum().item()
             for s in (h, -h)]
    assert log_k.grad.item() == pytest.approx((f[0] - f[1]) / (2 * h), rel=1e-6)


def test_property_testing_example_runs(capsys):
    pytest.importorskip("hypothesis")
    mod = load("property_testing")
    mod.main(["--examples", "2"])
    assert capsys.readouterr().out.count("ok ") == 3


def test_energy_property_fails_for_a_non_symplectic_integrator():
    pytest.importorskip("hypothesis")
    import diffsim as ds
    mod = load("property_testing")

    def explicit_euler(q, p, k, steps):     # energy drifts at O(dt)
        for _ in range(steps):
            q, p = q + mod.DT * p, p + mod.DT * mod.force(q.detach().requires_grad_(), k)
        return q, p
    q0 = ds.tensor([0.5, -0.3, 0.8], dtype=ds.float64)
    p0 = ds.tensor([0.2, 0.0, -0.4], dtype=ds.float64)
    drift, bound = mod.energy_drift(q0, p0, 2.0, 400)
    assert drift < bound
    drift, bound = mod.energy_drift(q0, p0, 2.0, 400, integrator=explicit_euler)
    assert drift > bound
