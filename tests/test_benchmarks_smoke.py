"""The benchmarks run at tiny sizes and their gradients are right. Never asserts on time."""
import importlib
import pathlib
import sys

import numpy as np
import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        yield lambda name: importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


def _check_rows(rows):
    assert rows
    for r in rows:
        assert r["workload"] and r["baseline"]
        assert r["diffsim_s"] > 0 and r["baseline_s"] > 0
        assert r["ratio"] > 0


# ------------------------------------------------------------------ W1 opchain

def test_opchain_runs_and_gradients_agree(bench):
    oc = bench("opchain")
    rows = oc.run(n_iter=20, repeats=1, warmup=0)    # raises if the gradients disagree
    _check_rows(rows)
    assert {r["baseline"] for r in rows} >= {"numpy by hand"}


def test_opchain_gradient_matches_the_chain_rule(bench):
    oc = bench("opchain")
    n = 25
    _, _, g = oc.diffsim_program(n)()
    x = np.array(oc.X0)
    expect = np.ones_like(x)
    for _ in range(n):                     # d/dx of sin(x)*c + d is c*cos(x)
        expect = expect * oc.SCALE * np.cos(x)
        x = np.sin(x) * oc.SCALE + oc.SHIFT
    np.testing.assert_allclose(g, expect, rtol=1e-13)


def test_opchain_without_torch(bench, monkeypatch):
    oc = bench("opchain")
    monkeypatch.setattr(oc, "torch", None)
    rows = oc.run(n_iter=5, repeats=1, warmup=0)
    assert {r["baseline"] for r in rows} == {"numpy by hand"}


def test_opchain_torch_gradient(bench):
    pytest.importorskip("torch")
    oc = bench("opchain")
    _, _, gt = oc.torch_program(30)()
    _, _, gd = oc.diffsim_program(30)()
    np.testing.assert_allclose(gd, gt, rtol=1e-12)


# ------------------------------------------------------------------ large arrays

def test_large_arrays_runs_and_gradients_agree(bench):
    la = bench("large_arrays")
    rows = la.run(n=1000, repeats=1, warmup=0)       # raises if loss or gradients disagree
    _check_rows(rows)


def test_large_arrays_numpy_gradient_is_right(bench):
    """The hand-written baseline gradient against central finite differences (the loss is a
    sum of elementwise terms, so one perturbation of all elements gives every derivative)."""
    la = bench("large_arrays")
    x = la.make_input(500, seed=1)

    def terms(x):
        v = np.sin(x) * la.A + la.B
        return np.tanh(np.sqrt(np.log1p(np.exp(-v * v))))
    h = 1e-6
    fd = (terms(x + h) - terms(x - h)) / (2 * h)
    _, _, _, g = la.numpy_program(x)()
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
    _, _, _, gd = la.diffsim_program(x)()
    np.testing.assert_allclose(gd, g, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------ the runner

def test_runner_table(bench):
    run = bench("run")
    rows = [dict(workload="w", diffsim_s=2e-3, baseline_s=1e-3, baseline="numpy", ratio=2.0),
            ("t", 1.5, 1.0, "torch", 1.5),
            dict(workload="m", diffsim=10.0, baseline_value=40.0, unit="MiB", baseline="naive")]
    table = run.format_table(rows)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["workload", "diffsim", "baseline"]
    assert "2.00 ms" in table and "1.50 s" in table and "10 MiB" in table and "0.25" in table


def test_runner_quick(bench, capsys):
    run = bench("run")
    rows = run.main(["--quick", "--only", "opchain", "large_arrays"])
    assert rows
    out = capsys.readouterr().out
    assert "W1 opchain" in out and "large 10-op chain" in out and "ratio" in out


def test_runner_quick_checkpoint_memory_when_present(bench, capsys):
    if not (BENCH / "checkpoint_memory.py").exists():
        pytest.skip("benchmarks/checkpoint_memory.py not present")
    run = bench("run")
    rows = run.main(["--quick", "--only", "checkpoint_memory"])
    assert rows
    for r in rows:
        run.normalize(r)


# ------------------------------------------------------------------ data loading

def test_data_loading_runs_and_loses_no_samples(bench):
    dl = bench("data_loading")
    rows = dl.run(n_batches=4, item_ms=0.0, with_torch=False)   # raises if a sample is lost
    _check_rows(rows)
    assert rows[0]["baseline"] == "diffsim num_workers=0"
    it = iter(dl.DataLoader(dl.SlowDataset(3 * dl.BATCH, item_ms=0.0), batch_size=dl.BATCH,
                            num_workers=2))
    x, y = next(it)
    assert x.shape == (dl.BATCH, dl.FEATURES) and y.tolist() == [i % 10 for i in range(dl.BATCH)]


# ------------------------------------------------------------------ W3 mlp and the CNN step

def test_mlp_diffsim_matches_hand_written_numpy(bench):
    mlp = bench("mlp")
    X, Y, params = mlp.make_data()
    _, loss_ds = mlp.run_diffsim(X, Y, params, 5)
    _, loss_np = mlp.run_numpy(X, Y, params, 5)
    assert abs(loss_ds - loss_np) < 1e-5 * max(1.0, abs(loss_np))


def test_mlp_and_cnn_rows(bench):
    rows = bench("mlp").run(steps=3, repeats=1)     # raises if the final losses disagree
    _check_rows(rows)
    rows = bench("cnn_step").run(batch=4, steps=1)  # raises if torch's first loss disagrees
    assert rows and rows[0]["diffsim_s"] > 0


def test_runner_quick_physics_workloads(bench, capsys):
    run = bench("run")
    rows = run.main(["--quick", "--only", "cloth", "nbody", "long_rollout"])
    assert len(rows) >= 2
    for r in rows:
        run.normalize(r)
    out = capsys.readouterr().out
    assert "W2" in out and "nbody N=300" in out and "rope T=150 binomial" in out
