"""The README's code blocks run as written."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def block(marker):
    """The README code block containing ``marker``."""
    found = [b for b in BLOCKS if marker in b]
    assert len(found) == 1, marker
    return found[0]


def test_readme_has_quickstart():
    assert BLOCKS and "backward()" in BLOCKS[0]


def test_quickstart_runs(capsys):
    exec(compile(block("k.grad"), "README-quickstart", "exec"), {})
    out = capsys.readouterr().out
    assert "tensor(" in out


def test_adding_an_op_example_runs():
    import diffsim as ds
    from diffsim.testing import gradcheck
    ns = {"x": ds.tensor([0.5, -1.0], dtype=ds.float64, requires_grad=True)}
    code = block("defvjp").replace('defop("softplus"', 'defop("softplus_readme_example"')
    exec(compile(code, "README-op", "exec"), ns)
    assert gradcheck(lambda t: ns["apply"](ns["softplus"], (t,)), (ns["x"],))


def test_property_test_example_runs():
    pytest.importorskip("hypothesis")
    ns = {}
    exec(compile(block("@given"), "README-hypothesis", "exec"), ns)
    check_energy_gradient = ns["test_energy_gradient"]     # asserts gradcheck on each example
    check_energy_gradient()


def test_training_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = {}
    exec(compile(block("DataLoader"), "README-training", "exec"), ns)
    assert ns["loss"].item() < 0.05 and (tmp_path / "ckpt.h5").exists()


def test_simulating_example_runs(capsys):
    exec(compile(block("physics.check_gradients"), "README-physics", "exec"), {})
    out = capsys.readouterr().out
    assert "random dir" in out and "MISMATCH" not in out


def test_rendering_example_runs(capsys):
    exec(compile(block("render.silhouette"), "README-render", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("tensor([-")                 # d loss / d offset_x < 0


def test_sparse_and_fem_example_runs(capsys):
    exec(compile(block("sparse.solve(A, b)"), "README-sparse", "exec"), {})
    assert capsys.readouterr().out.strip() == "(148,) True"
