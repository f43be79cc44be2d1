import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import diffsim as ds
import diffsim.render as R
from diffsim.testing import gradcheck

f64 = ds.float64


def _t(x, rg=False):
    return ds.tensor(np.asarray(x, float), dtype=f64, requires_grad=rg)


def _sphere_view(size=64, eye=(0.3, 0.2, -3.0), ortho=False):
    m = R.icosphere(2, dtype=f64)
    Rm, T = R.look_at(_t(eye))
    cam = (R.OrthographicCamera(Rm, T, image_size=size, scale=1.5) if ortho
           else R.PerspectiveCamera(Rm, T, image_size=size, fx=size * 0.9))
    return m, cam


def _pixel_centres(H, W):
    v, u = np.meshgrid(np.arange(H) + 0.5, np.arange(W) + 0.5, indexing="ij")
    return u, v


def test_hard_matches_soft_silhouette_as_sigma_goes_to_zero():
    m, cam = _sphere_view(64)
    scr = cam.to_ndc(m.verts)
    hard = R.rasterize(scr, m.faces_np, 64).mask.numpy()[0]
    soft = R.soft_rasterize(scr, m.faces_np, 64, sigma=1e-6).numpy() > 0.5
    iou = (hard & soft).sum() / (hard | soft).sum()
    assert iou > 0.99
    assert hard.sum() > 500


def test_depth_test_picks_nearest_face_in_either_order():
    near_tri = [[-0.8, -0.8, 2.0], [0.8, -0.8, 2.0], [0.0, 0.8, 2.0]]
    far_tri = [[-0.9, 0.9, 5.0], [0.9, 0.9, 5.0], [0.0, -0.9, 5.0]]
    v = _t(near_tri + far_tri)
    for faces, near_id in (([[0, 1, 2], [3, 4, 5]], 0), ([[3, 4, 5], [0, 1, 2]], 1)):
        fr = R.rasterize(v, faces, 16)
        fi, d = fr.face_index.numpy()[0], fr.depth.numpy()[0]
        both = fi >= 0
        assert (fi[fr.mask.numpy()[0]] >= 0).all()
        xs = -1 + (2 * np.arange(16) + 1) / 16
        X, Y = np.meshgrid(xs, -xs)
        in_near = (Y > -0.8) & (Y < 0.8 - 2 * np.abs(X)) & (np.abs(X) < 0.8)
        assert (fi[in_near] == near_id).all() and np.allclose(d[in_near], 2.0)
        far_only = both & ~in_near
        assert far_only.sum() > 0 and (fi[far_only] == 1 - near_id).all() and np.allclose(d[far_only], 5.0)
    # a face behind the near plane is discarded, revealing the one behind it
    fr = R.rasterize(v, [[0, 1, 2], [3, 4, 5]], 16, near=3.0)
    assert set(np.unique(fr.face_index.numpy())) <= {-1, 1}


def test_barycentrics_sum_to_one_and_reproduce_positions_perspective():
    m, cam = _sphere_view(48)
    fr = R.rasterize(cam.to_ndc(m.verts), m.faces_np, 48, perspective_correct=True)
    mask = fr.mask.numpy()[0]
    b = fr.bary.numpy()[0]
    assert np.allclose(b[mask].sum(-1), 1.0) and (b[mask] >= -1e-12).all()
    assert (b[~mask] == 0).all() and (fr.depth.numpy()[0][~mask] == -1).all()
    P = R.interpolate(m.verts, m.faces, fr)                          # world points seen through pixels
    assert P.shape == (1, 48, 48, 3)
    pix, z = cam.project(P.reshape(-1, 3))
    u, v = _pixel_centres(48, 48)
    mk = mask.ravel()
    assert np.abs(pix.numpy()[mk, 0] - u.ravel()[mk]).max() < 1e-9
    assert np.abs(pix.numpy()[mk, 1] - v.ravel()[mk]).max() < 1e-9
    assert np.abs(z.numpy()[mk] - fr.depth.numpy()[0].ravel()[mk]).max() < 1e-9
    # the points lie on the sphere (up to the flat faces' sag) and are the front ones
    r = np.linalg.norm(P.numpy()[0][mask], axis=-1)
    assert r.max() <= 1 + 1e-9 and r.min() > 0.95


def test_screen_space_barycentrics_orthographic():
    m, cam = _sphere_view(32, ortho=True)
    fr = R.rasterize(cam.to_ndc(m.verts), m.faces_np, 32)
    P = R.interpolate(m.verts, m.faces_np, fr)
    mask = fr.mask.numpy()[0].ravel()
    pix, _ = cam.project(P.reshape(-1, 3))
    u, v = _pixel_centres(32, 32)
    assert np.abs(pix.numpy()[mask] - np.stack([u.ravel(), v.ravel()], -1)[mask]).max() < 1e-9


def test_batched_verts_and_attributes():
    m, cam = _sphere_view(16)
    scr = cam.to_ndc(m.verts)
    scr2 = ds.stack([scr, scr + _t([0.25, 0.0, 0.0])])
    fr = R.rasterize(scr2, m.faces_np, 16)
    assert fr.face_index.shape == (2, 16, 16)
    a = R.rasterize(scr, m.faces_np, 16).face_index.numpy()[0]
    assert (fr.face_index.numpy()[0] == a).all()
    assert (fr.face_index.numpy()[1][:, 2:] == a[:, :-2]).all()     # 0.25 NDC = 2 pixels right
    col = ds.stack([m.verts, -m.verts])
    out = R.interpolate(col, m.faces_np, fr)
    single = R.interpolate(-m.verts, m.faces_np, fr)
    assert np.allclose(out.numpy()[1], single.numpy()[1])


@pytest.mark.parametrize("batched", [False, True])
def test_gradcheck_interpolate(batched):
    v = _t([[-0.7, -0.6, 2.0], [0.8, -0.5, 2.5], [0.0, 0.7, 3.0], [0.6, 0.6, 1.5]])
    faces = [[0, 1, 2], [1, 3, 2]]
    fr = R.rasterize(ds.stack([v, v * 0.8]) if batched else v, faces, (5, 4))
    rng = np.random.default_rng(0)
    attr = _t(rng.normal(size=(2, 4, 3) if batched else (4, 3)), True)
    assert gradcheck(lambda a: R.interpolate(a, faces, fr), (attr,))
    assert R.interpolate(attr, faces, fr).shape == (2 if batched else 1, 5, 4, 3)


def test_bad_inputs():
    v = _t([[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [0.0, 0.5, 2.0]])
    with pytest.raises(ValueError, match="rasterize: faces .* index vertices"):
        R.rasterize(v, [[0, 1, 3]], 8)
    with pytest.raises(ValueError, match=r"rasterize: faces must have shape \[F, 3\]"):
        R.rasterize(v, np.zeros((0, 3), int), 8)
    with pytest.raises(ValueError, match="rasterize: verts .* NaN"):
        R.rasterize(_t([[np.nan, 0, 1], [1, 0, 1], [0, 1, 1]]), [[0, 1, 2]], 8)
    with pytest.raises(ValueError, match="rasterize: image_size"):
        R.rasterize(v, [[0, 1, 2]], (8, 0))
    with pytest.raises(ValueError, match=r"rasterize: verts must have shape"):
        R.rasterize(_t([[0.0, 1.0], [1.0, 0.0]]), [[0, 1, 1]], 8)
    fr = R.rasterize(v, [[0, 1, 2]], 8)
    with pytest.raises(ValueError, match=r"interpolate: attributes must be"):
        R.interpolate(_t(np.zeros((3, 3, 3, 1))), [[0, 1, 2]], fr)
    with pytest.raises(TypeError, match="interpolate: fragments"):
        R.interpolate(v, [[0, 1, 2]], None)


def _dense_reference(v, faces, H, W):
    """Independent per-pixel loop over faces (no tiling, no culling): nearest covering face."""
    xs = -1 + (2 * np.arange(W) + 1) / W
    ys = 1 - (2 * np.arange(H) + 1) / H
    fi = np.full((H, W), -1)
    dep = np.full((H, W), np.inf)
    for i in range(H):
        for j in range(W):
            p = np.array([xs[j], ys[i]])
            for k, f in enumerate(faces):
                a, b, c = v[f, :2]
                M = np.array([b - a, c - a]).T
                if abs(np.linalg.det(M)) < 1e-14:
                    continue
                l1, l2 = np.linalg.solve(M, p - a)
                lam = np.array([1 - l1 - l2, l1, l2])
                if (lam >= -1e-12).all():
                    d = lam @ v[f, 2]
                    if 0 < d < dep[i, j]:
                        fi[i, j], dep[i, j] = k, d
    return fi, np.where(np.isinf(dep), -1.0, dep)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6), st.sampled_from([1, 3, 16]))
def test_property_random_triangles_match_dense_reference(seed, n_faces, tile):
    rng = np.random.default_rng(seed)
    v = np.concatenate([rng.uniform(-1.2, 1.2, size=(3 * n_faces, 2)),
                        rng.uniform(0.5, 3, size=(3 * n_faces, 1))], 1)
    faces = np.arange(3 * n_faces).reshape(n_faces, 3)
    fr = R.rasterize(_t(v), faces, (9, 7), tile=tile)
    fi, dep = _dense_reference(v, faces, 9, 7)
    got = fr.face_index.numpy()[0]
    # ties (two faces at one depth) are measure-zero for random depths
    assert (got == fi).all()
    assert np.allclose(fr.depth.numpy()[0], dep)
    b = fr.bary.numpy()[0]
    assert np.allclose(b.sum(-1)[fi >= 0], 1.0) and (b[fi >= 0] >= -1e-9).all()


def _no_host_copies(monkeypatch):
    """Fail on any Tensor -> numpy copy (a device -> host sync on a GPU)."""
    def boom(self):
        raise AssertionError("host round-trip (.numpy()) inside a render hot path")
    monkeypatch.setattr(ds.Tensor, "numpy", boom)


def test_interpolate_stays_on_the_device(monkeypatch):
    m, cam = _sphere_view(16)
    frags = R.rasterize(cam.to_ndc(m.verts).detach(), m.faces_np, 16)
    ref = R.interpolate(m.verts, m.faces, frags)
    _no_host_copies(monkeypatch)
    out = R.interpolate(m.verts, m.faces, frags)                  # faces as a Tensor: no .numpy()
    assert out.shape == (1, 16, 16, 3)
    assert np.array_equal(out.detach()._data, ref.detach()._data)
