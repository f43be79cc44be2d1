"""The surrogate-training and CNN examples run at small sizes and do what they claim."""
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_train_surrogate_small(tmp_path):
    mod = load("train_surrogate")
    res = mod.main(["--samples", "512", "--epochs", "6", "--plot", str(tmp_path / "s.png")])
    assert res["test_mse"] < 0.2 * res["test_before"]
    assert res["history"][-1] < res["history"][0]
    assert res["same"]                                  # reloaded checkpoint predicts identically
    assert res["mismatch"] < res["start_mismatch"]      # the inverse problem made progress
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "s.png").stat().st_size > 0


def test_train_surrogate_with_worker_processes():
    mod = load("train_surrogate")
    res = mod.main(["--samples", "256", "--epochs", "2", "--workers", "2", "--plot", "none"])
    assert res["history"][-1] < res["history"][0]


def test_surrogate_simulation_gradient_matches_finite_differences():
    import diffsim as ds
    from diffsim.testing import gradcheck
    mod = load("train_surrogate")
    p = ds.tensor([[0.7, 0.2], [-1.0, 0.6]], dtype=ds.float64, requires_grad=True)
    assert gradcheck(lambda q: mod.simulate(q, T=0.2), (p,))


def test_train_cnn_small():
    mod = load("train_cnn")
    acc = mod.main(["--train", "1200", "--test", "300", "--epochs", "6", "--plot", "none"])
    assert acc > 0.6                                     # chance is 1/3
