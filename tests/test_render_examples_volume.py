"""examples/volume_reconstruction.py runs at a small size and does what it claims."""
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_volume_reconstruction_small(tmp_path):
    mod = load("volume_reconstruction")
    out = tmp_path / "v.png"
    res = mod.main(["--grid", "8", "--res", "10", "--views", "6", "--test-views", "2", "--samples", "16",
                    "--iters", "30", "--field-iters", "15", "--batch", "128", "--out", str(out)],
                   log=lambda *a: None)
    assert res["grid_losses"][-1] < 0.3 * res["grid_losses"][0]
    assert res["grid_psnr"] > res["grid_psnr_before"] + 5.0          # held-out views, dB
    assert res["field_losses"][-1] < res["field_losses"][0]
    assert res["field_psnr"] > res["field_psnr_before"]
    if importlib.util.find_spec("PIL"):
        assert out.stat().st_size > 0
