"""examples/render_simulation.py: physical parameters recovered from rendered images alone."""
import importlib.util
from pathlib import Path

import numpy as np

import diffsim as ds
from diffsim import physics, render

ROOT = Path(__file__).resolve().parents[1]


def load():
    spec = importlib.util.spec_from_file_location("render_simulation", ROOT / "examples" / "render_simulation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_grid_faces_tile_the_cloth_with_consistent_normals():
    f = render.grid_faces(4, 3)
    assert f.shape == (2 * 3 * 2, 3) and f.dtype == np.int64
    assert f.min() == 0 and f.max() == 11
    assert np.array_equal(render.grid_faces(5), render.plane(subdivisions=4).faces_np)
    for hanging, normal in ((False, [0, 1, 0]), (True, [0, 0, 1])):
        cloth = physics.MassSpring.cloth(4, 3, hanging=hanging, dtype=ds.float64)
        mesh = render.Mesh(cloth.positions, f)
        n = mesh.face_normals().numpy()
        np.testing.assert_allclose(n, np.broadcast_to(normal, n.shape), atol=1e-12)
        area = 0.5 * np.linalg.norm(mesh.face_normals(normalize=False).numpy(), axis=1).sum()
        assert abs(area - 1.0) < 1e-12                       # the whole unit square, no overlap


def test_image_loss_gradient_matches_finite_differences():
    """d(image loss)/d(stiffness, wind) through renderer + simulator (checkpointed) vs central
    differences."""
    mod = load()
    scene = mod.Scene(n=4, image_size=16, n_cameras=2, steps=40, dt=2e-3, frames=2, sigma=(2 / 16) ** 2,
                      checkpoint=10)
    with ds.no_grad():
        target = scene.render(ds.tensor(30.0, dtype=ds.float64), ds.tensor([1.0, 0.0, -0.5], dtype=ds.float64))

    def loss(k, w):
        return ((scene.render(k, w) - target) ** 2).sum()

    k = ds.tensor(20.0, dtype=ds.float64, requires_grad=True)
    w = ds.tensor([0.3, 0.1, 0.2], dtype=ds.float64, requires_grad=True)
    loss(k, w).backward()
    g = np.concatenate([[k.grad.item()], w.grad.numpy()])
    p0 = np.array([20.0, 0.3, 0.1, 0.2])
    fd = []
    with ds.no_grad():
        for i, h in enumerate([1e-4, 1e-6, 1e-6, 1e-6]):
            e = np.zeros(4)
            e[i] = h
            vals = [loss(ds.tensor(p[0], dtype=ds.float64), ds.tensor(p[1:], dtype=ds.float64)).item()
                    for p in (p0 + e, p0 - e)]
            fd.append((vals[0] - vals[1]) / (2 * h))
    assert np.all(np.abs(g) > 1e-6), g
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-8)


def test_render_simulation_recovers_stiffness_and_wind(tmp_path, capsys):
    mod = load()
    plot = tmp_path / "render_simulation.png"
    res = mod.main(["--n", "5", "--size", "24", "--cameras", "3", "--steps", "100", "--frames", "3",
                    "--iters", "8", "--plot", str(plot)])
    assert res["error_init"] == 1.0                          # k = 10 vs 40 and no wind: both off by 100 %
    assert res["error_fit"] < 0.15 * res["error_init"], (res["error_init"], res["error_fit"])
    assert abs(res["k_fit"] - 40.0) / 40.0 < 0.1, res["k_fit"]
    assert res["losses"][-1] < 0.8 * res["losses"][0]          # the noise floor stays (5 % pixel noise)
    assert res["images"]["target"].shape == (3, 3, 24, 24)
    out = capsys.readouterr().out
    assert "relative parameter error" in out
    if importlib.util.find_spec("matplotlib") is not None:
        assert plot.exists() and plot.stat().st_size > 0
    else:
        assert "matplotlib is not installed" in out and not plot.exists()
