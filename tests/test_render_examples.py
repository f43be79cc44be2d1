"""The renderer's example scripts run at small sizes and do what they say."""
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _pillow():
    return importlib.util.find_spec("PIL") is not None


def test_fit_mesh_to_silhouettes_small(tmp_path, capsys):
    mod = load("fit_mesh_to_silhouettes")
    out = tmp_path / "fit.png"
    res = mod.main(["--size", "24", "--views", "8", "--iters", "15", "--lr", "0.03", "--subdivisions", "1",
                    "--save", str(out)])
    assert res["iou_after"] > 0.85 and res["iou_after"] > res["iou_before"] + 0.1
    assert res["losses"][-1] < 0.5 * res["losses"][0]
    text = capsys.readouterr().out
    assert "silhouette IoU" in text
    if _pillow():
        assert out.exists() and out.stat().st_size > 0
    else:
        assert "pillow is not installed" in text and not out.exists()


def test_camera_pose_small(tmp_path, capsys):
    mod = load("camera_pose")
    out = tmp_path / "pose.png"
    res = mod.main(["--size", "24", "--iters", "30", "--save", str(out)])
    assert res["rot_err_after"] < 0.3 * res["rot_err_before"]
    assert res["centre_err_after"] < res["centre_err_before"]
    text = capsys.readouterr().out
    assert "rotation error" in text
    if _pillow():
        assert out.exists() and out.stat().st_size > 0
    else:
        assert "pillow is not installed" in text and not out.exists()
