"""The example scripts run (at small sizes) and do what they say."""
import importlib.util
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_quickstart_fits_the_angle(tmp_path):
    plot = tmp_path / "quickstart.png"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), "--steps", "3",
                           "--plot", str(plot)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "x.grad" in out
    m = re.search(r"loss ([0-9.e+-]+) -> ([0-9.e+-]+)", out)
    assert m, out
    first, last = float(m.group(1)), float(m.group(2))
    assert last < 0.1 * first, out
    if importlib.util.find_spec("matplotlib") is not None:
        assert plot.exists() and plot.stat().st_size > 0
    else:
        assert "matplotlib is not installed" in out and not plot.exists()


def test_quickstart_gradient_matches_finite_differences():
    """The landing distance's derivative w.r.t. the angle, through every time step."""
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / "examples" / "quickstart.py")
    qs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(qs)
    import diffsim as ds
    theta = ds.tensor(0.4, dtype=ds.float64, requires_grad=True)
    landing, path = qs.simulate(theta)
    landing.backward()
    h = 1e-6

    def at(t):
        with ds.no_grad():
            return qs.simulate(ds.tensor(t, dtype=ds.float64))[0].item()
    fd = (at(0.4 + h) - at(0.4 - h)) / (2 * h)
    assert abs(theta.grad.item() - fd) < 1e-5 * abs(fd)
    assert abs(path[-1][0] - landing.item()) < 0.5 and path[-1][1] < 0
