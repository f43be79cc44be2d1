"""Images (save, grid, GIF, turntable), metrics, and mesh files through trimesh."""
import importlib.util
import math
import os

import numpy as np
import pytest

import diffsim as ds
from diffsim.render import (Mesh, icosphere, image_grid, iou, load_mesh, psnr, save_gif, save_image, save_mesh,
                            to_uint8, turntable)
from diffsim.testing import gradcheck

F64 = ds.float64
HAS_PIL = importlib.util.find_spec("PIL") is not None
needs_pil = pytest.mark.skipif(not HAS_PIL, reason="pillow is not installed (the viz extra)")


def _img(h=5, w=7, c=3, seed=0):
    return np.random.default_rng(seed).random((h, w, c))


@needs_pil
@pytest.mark.parametrize("c", [1, 3, 4])
def test_save_image_roundtrip_png(tmp_path, c):
    from PIL import Image
    img = _img(c=c)
    p = save_image(ds.tensor(img), tmp_path / "sub" / "a.png")
    back = np.asarray(Image.open(p))
    np.testing.assert_array_equal(back.reshape(img.shape), to_uint8(img).reshape(img.shape))
    assert [f for f in os.listdir(tmp_path / "sub")] == ["a.png"]       # no temporary file left
    assert to_uint8(np.array([[-1.0, 2.0]])).tolist() == [[0, 255]]     # clipped


@needs_pil
def test_save_image_errors(tmp_path):
    with pytest.raises(ValueError, match=r"save_image: an image must be \[H, W\] or \[H, W, C\]"):
        save_image(np.zeros((2, 3, 5)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="NaN"):
        save_image(np.full((2, 2), np.nan), tmp_path / "x.png")
    with pytest.raises(ValueError, match="format"):
        save_image(np.zeros((2, 2)), tmp_path / "x.unknownext")
    assert not os.listdir(tmp_path)


def test_missing_pillow_message(monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("no PIL")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match="save_image needs pillow.*pip install"):
        save_image(np.zeros((2, 2)), "never.png")


@needs_pil
def test_gif_and_turntable(tmp_path):
    from PIL import Image
    calls = []

    def render(az):
        calls.append(az)
        img = np.zeros((4, 6, 3))
        img[..., 0] = az / (2 * math.pi)          # distinct frames (pillow merges equal neighbours)
        return ds.tensor(img)
    frames = turntable(render, n_frames=5, path=tmp_path / "t.gif", fps=10)
    assert frames.shape == (5, 4, 6, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(calls, 2 * np.pi * np.arange(5) / 5)
    im = Image.open(tmp_path / "t.gif")
    assert im.n_frames == 5 and im.size == (6, 4)
    save_gif([_img(seed=s) for s in range(3)], tmp_path / "g.gif", fps=4)
    assert Image.open(tmp_path / "g.gif").n_frames == 3
    with pytest.raises(ValueError, match="save_gif: all frames must have one shape"):
        save_gif([_img(), _img(h=3)], tmp_path / "bad.gif")
    assert sorted(os.listdir(tmp_path)) == ["g.gif", "t.gif"]


def test_image_grid_numpy_and_tensor():
    imgs = np.arange(5 * 2 * 3 * 1, dtype=float).reshape(5, 2, 3, 1)
    g = image_grid(imgs, nrow=2, padding=1, pad_value=-1)
    assert g.shape == (3 * 3, 2 * 4, 1)
    np.testing.assert_array_equal(g[0:2, 4:7], imgs[1])
    np.testing.assert_array_equal(g[6:8, 0:3], imgs[4])
    assert (g[6:, 4:] == -1).all() and (g[2, :] == -1).all()
    t = ds.tensor(imgs, dtype=F64, requires_grad=True)
    gt = image_grid(t, nrow=2, padding=1, pad_value=-1)
    np.testing.assert_array_equal(gt.detach().numpy(), g)
    gt.sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), np.ones_like(imgs))
    assert image_grid(imgs[..., 0], nrow=5).shape == (2, 15)


def test_iou_soft_thresholded_and_gradient():
    a = np.zeros((6, 6))
    b = np.zeros((6, 6))
    a[:4, :4] = 1
    b[2:, 2:] = 1
    assert iou(a, b).item() == pytest.approx(4 / 28)
    assert iou(a * 0.9, b * 0.8, threshold=0.5).item() == pytest.approx(4 / 28)
    assert iou(np.zeros(3), np.zeros(3)).item() == 1.0
    x = ds.tensor(np.random.default_rng(0).random((2, 3, 3)), dtype=F64, requires_grad=True)
    y = ds.tensor(np.random.default_rng(1).random((2, 3, 3)), dtype=F64)
    per = iou(x, y, dim=(-2, -1))
    assert per.shape == (2,)
    assert gradcheck(lambda z: iou(z, y, dim=(-2, -1)), (x,))
    with pytest.raises(ValueError, match=r"iou: a and b must have the same shape, got \[2, 3, 3\] and \[3\]"):
        iou(x, np.zeros(3))


def test_psnr_values_and_gradient():
    a = np.zeros((4, 4, 3))
    b = np.full((4, 4, 3), 0.1)
    assert psnr(a, b).item() == pytest.approx(20.0)                        # mse 0.01 -> 20 dB
    assert psnr(a * 255, b * 255, max_val=255).item() == pytest.approx(20.0)
    assert psnr(a, a).item() == math.inf
    x = ds.tensor(np.random.default_rng(0).random((2, 2, 2, 3)), dtype=F64, requires_grad=True)
    y = ds.tensor(np.random.default_rng(1).random((2, 2, 2, 3)), dtype=F64)
    assert psnr(x, y, dim=(1, 2, 3)).shape == (2,)
    assert gradcheck(lambda z: psnr(z, y), (x,))


# ---------------------------------------------------------------- mesh files (trimesh)

def _tm():
    return pytest.importorskip("trimesh", reason="trimesh is not installed (the mesh extra)")


@pytest.mark.parametrize("ext", ["obj", "ply", "off", "glb"])
def test_mesh_roundtrip(tmp_path, ext):
    _tm()
    m = icosphere(1, dtype=F64)
    p = save_mesh(m, tmp_path / f"m.{ext}")
    assert os.listdir(tmp_path) == [f"m.{ext}"]
    m2 = load_mesh(p, dtype=F64)
    assert m2.num_faces == m.num_faces and m2.num_verts == m.num_verts
    np.testing.assert_allclose(m2.verts.numpy(), m.verts.detach().numpy(), atol=1e-6)
    np.testing.assert_array_equal(m2.faces_np, m.faces_np)


def test_mesh_colours_and_stl_merge(tmp_path):
    _tm()
    verts = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    faces = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]
    cols = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]
    m = Mesh(verts, faces, colors=cols, dtype=F64)
    m2 = load_mesh(save_mesh(m, tmp_path / "c.ply"), dtype=F64)
    np.testing.assert_allclose(m2.colors.numpy(), cols)
    s = load_mesh(save_mesh(m, tmp_path / "c.stl"))
    assert s.num_verts == 12 and s.num_faces == 4                     # STL: three vertices per face
    assert load_mesh(tmp_path / "c.stl", merge_vertices=True).num_verts == 4


def test_mesh_file_errors(tmp_path):
    _tm()
    with pytest.raises(FileNotFoundError, match="load_mesh: no such file"):
        load_mesh(tmp_path / "missing.obj")
    m = icosphere(1)
    for ext in ("ply", "glb", "obj"):
        data = open(save_mesh(m, tmp_path / f"m.{ext}"), "rb").read()
        (tmp_path / f"t.{ext}").write_bytes(data[: len(data) // 3])
        with pytest.raises(ValueError, match=r"load_mesh: .*t\." + ext):
            load_mesh(tmp_path / f"t.{ext}")
    (tmp_path / "e.obj").write_text("")
    with pytest.raises(ValueError, match="holds no triangles"):
        load_mesh(tmp_path / "e.obj")
    (tmp_path / "x.xyzzy").write_text("1 2 3")
    with pytest.raises(ValueError, match="unsupported mesh file extension 'xyzzy'"):
        load_mesh(tmp_path / "x.xyzzy")
    with pytest.raises(TypeError, match="save_mesh: expected a Mesh"):
        save_mesh(np.zeros((3, 3)), tmp_path / "y.obj")


def test_missing_trimesh_message(monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "trimesh" or name.startswith("trimesh."):
            raise ImportError("no trimesh")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"load_mesh needs trimesh.*diffsim\[mesh\]"):
        load_mesh("whatever.obj")
