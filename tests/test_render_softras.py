import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import diffsim as ds
import diffsim.render as R
from diffsim.testing import gradcheck

f64 = ds.float64
TRI = [[-0.5, -0.5, 2.0], [0.6, -0.4, 2.5], [0.0, 0.7, 3.0], [0.2, 0.2, 1.5]]
FACES = [[0, 1, 2], [1, 3, 2]]


def _t(x, rg=False):
    return ds.tensor(np.asarray(x, float), dtype=f64, requires_grad=rg)


def dense_silhouette(v, faces, H, W, sigma):
    """Independent dense numpy reference of W4's definition: [P, F] arrays, no culling."""
    xs = -1 + (2 * np.arange(W) + 1) / W
    ys = 1 - (2 * np.arange(H) + 1) / H
    PY, PX = np.meshgrid(ys, xs, indexing="ij")
    p = np.stack([PX.ravel(), PY.ravel()], -1)[:, None, None, :]            # [P, 1, 1, 2]
    a = v[faces][None, :, :, :2]
    b = np.roll(a, -1, axis=2)
    e = b - a
    ap = p - a
    t = np.clip((ap * e).sum(-1) / (e * e).sum(-1), 0, 1)
    r = ap - t[..., None] * e
    d2 = (r * r).sum(-1).min(-1)
    cr = e[..., 0] * ap[..., 1] - e[..., 1] * ap[..., 0]
    inside = (cr > 0).all(-1) | (cr < 0).all(-1)
    with np.errstate(over="ignore"):
        D = 1 / (1 + np.exp(-np.where(inside, 1, -1) * d2 / sigma))
    return (1 - np.exp(np.log(1 - D + 1e-8).sum(1))).reshape(H, W)


def test_matches_dense_reference_with_culling():
    m = R.icosphere(1, dtype=f64)
    Rm, T = R.look_at(_t([0.3, 0.2, -3.0]))
    cam = R.PerspectiveCamera(Rm, T, image_size=40, fx=30.0)
    scr = cam.to_ndc(m.verts)
    for sigma in (1e-4, 3e-3):
        img = R.soft_rasterize(scr, m.faces_np, 40, sigma=sigma, tile=8).numpy()
        ref = dense_silhouette(scr.numpy(), m.faces_np, 40, 40, sigma)
        assert np.abs(img - ref).max() < 1e-6


@pytest.mark.parametrize("tile", [2, 4, 16])
def test_gradcheck_silhouette(tile):
    v = _t(TRI, True)
    assert gradcheck(lambda v: R.soft_rasterize(v, FACES, 6, sigma=0.05, tile=tile), (v,))


@pytest.mark.parametrize("per_vertex", [True, False])
def test_gradcheck_rgba_batched_nonsquare(per_vertex):
    rng = np.random.default_rng(0)
    v = _t(np.stack([np.asarray(TRI), np.asarray(TRI) + [0.1, -0.05, 0.3]]), True)
    c = _t(rng.uniform(size=(2, 4 if per_vertex else 2, 3)), True)
    key = "colors" if per_vertex else "face_colors"
    fn = lambda v, c: R.soft_rasterize(v, FACES, (6, 5), sigma=0.05, gamma=0.1, tile=4,  # noqa: E731
                                       background=(0.2, 0.3, 0.4), near=1.0, far=4.0, **{key: c})
    out = fn(v, c)
    assert out.shape == (2, 6, 5, 4)
    assert gradcheck(fn, (v, c))


def test_gradcheck_rgba_depth_dominated():
    # small gamma: the depth softmax decides the colour where the two faces overlap
    rng = np.random.default_rng(1)
    v = _t(np.asarray(TRI) + rng.normal(scale=0.05, size=(4, 3)), True)
    c = _t(rng.uniform(size=(4, 2)), True)
    fn = lambda v, c: R.soft_rasterize(v, FACES, 7, sigma=0.02, gamma=0.05, colors=c, tile=3,  # noqa: E731
                                       near=1.0, far=4.0)
    assert gradcheck(fn, (v, c))


def test_vertex_colours_interpolate_barycentrically():
    v = _t([[-0.9, -0.9, 2.0], [0.9, -0.9, 2.0], [0.0, 0.9, 2.0]])
    c = _t(np.eye(3))
    img = R.soft_rasterize(v, [[0, 1, 2]], 8, sigma=1e-5, gamma=1e-4, colors=c).numpy()
    for i, j in ((4, 4), (6, 2), (5, 5), (3, 4)):
        x, y = -1 + (2 * j + 1) / 8, 1 - (2 * i + 1) / 8
        T = np.array([[-0.9, 0.9, 0.0], [-0.9, -0.9, 0.9], [1, 1, 1]])
        lam = np.linalg.solve(T, [x, y, 1.0])
        assert (lam > 0).all()
        assert np.allclose(img[i, j, :3], lam, atol=1e-6) and np.isclose(img[i, j, 3], 1.0)


def test_gradcheck_through_camera_pose():
    m = R.icosphere(0, dtype=f64)

    def f(aa, t):
        cam = R.PerspectiveCamera.from_pose(aa, t, image_size=6, fx=4.0)
        return R.silhouette(m, cam, sigma=0.02)

    assert gradcheck(f, (_t([0.1, 0.2, 0.0], True), _t([0.1, 0.0, 3.0], True)))


def test_create_graph_first_order_and_double_backward_raises():
    v = _t(TRI, True)
    out = R.soft_rasterize(v, FACES, 6, sigma=0.05)
    (g,) = ds.autograd.grad(out.sum(), [v], create_graph=True)
    out2 = R.soft_rasterize(v, FACES, 6, sigma=0.05)
    out2.sum().backward()
    assert np.allclose(g.detach().numpy(), v.grad.numpy())
    with pytest.raises(NotImplementedError, match="soft_rasterize: second derivatives"):
        ds.autograd.grad((g * g).sum(), [v])
    c = _t(np.random.default_rng(0).uniform(size=(4, 3)), True)
    out = R.soft_rasterize(v, FACES, 6, sigma=0.05, gamma=0.1, colors=c, near=1.0, far=4.0)
    gv, gc = ds.autograd.grad(out.sum(), [v, c], create_graph=True)
    gv2, gc2 = ds.autograd.grad(R.soft_rasterize(v, FACES, 6, sigma=0.05, gamma=0.1, colors=c, near=1.0,
                                                 far=4.0).sum(), [v, c])
    assert np.allclose(gv.detach().numpy(), gv2.numpy()) and np.allclose(gc.detach().numpy(), gc2.numpy())


def _sphere_screen(offset=(0.0, 0.0, 0.0), sub=2):
    m = R.icosphere(sub, dtype=f64)
    Rm, T = R.look_at(_t([0.0, 0.0, -3.0]))
    cam = R.PerspectiveCamera(Rm, T, image_size=64, fx=48.0)
    return m, cam, cam.to_ndc(m.verts + _t(offset))


def test_translated_mesh_shifts_image():
    m = R.icosphere(2, dtype=f64)
    Rm, T = R.look_at(_t([0.0, 0.0, -3.0]))
    cam = R.OrthographicCamera(Rm, T, image_size=32, scale=2.0)       # 8 pixels per world unit
    a = R.silhouette(m, cam, sigma=1e-3).numpy()
    b = R.silhouette(m.with_verts(m.verts + _t([0.375, -0.25, 0.0])), cam, sigma=1e-3).numpy()   # 3 right, 2 down
    assert np.abs(b[2:, 3:] - a[:-2, :-3]).max() < 1e-6
    assert np.abs(b - a).max() > 0.5


def test_icosphere_silhouette_matches_analytic_disc():
    m, cam, scr = _sphere_screen(sub=3)
    img = R.soft_rasterize(scr, m.faces_np, 64, sigma=1e-5).numpy()
    xs = -1 + (2 * np.arange(64) + 1) / 64
    X, Y = np.meshgrid(xs, -xs)
    disc = X ** 2 + Y ** 2 < (1.5 / np.sqrt(8)) ** 2                 # sphere r=1 at distance 3, f = 1.5
    hard = img > 0.5
    assert (disc & hard).sum() / (disc | hard).sum() > 0.95
    assert img.min() >= 0 and img.max() <= 1


def test_silhouette_convenience_equals_manual():
    m, cam, scr = _sphere_screen()
    a = R.silhouette(m, cam, sigma=1e-4).numpy()
    b = R.soft_rasterize(scr, m.faces_np, 64, sigma=1e-4, near=cam.near, far=cam.far).numpy()
    assert np.array_equal(a, b)


def test_rgba_front_face_wins_and_background():
    v = _t([[-0.8, -0.8, 2.0], [0.8, -0.8, 2.0], [0.0, 0.8, 2.0],
            [-0.8, -0.8, 5.0], [0.8, -0.8, 5.0], [0.0, 0.8, 5.0]])
    c = _t([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    for faces, front in (([[0, 1, 2], [3, 4, 5]], 0), ([[3, 4, 5], [0, 1, 2]], 1)):
        img = R.soft_rasterize(v, faces, 16, sigma=1e-4, gamma=1e-3, face_colors=c if front == 0 else c.flip(0),
                               background=(0.0, 1.0, 0.0), near=1.0, far=10.0).numpy()
        assert img.shape == (16, 16, 4)
        assert np.allclose(img[8, 8], [1.0, 0.0, 0.0, 1.0], atol=1e-6)          # red front face
        assert np.allclose(img[0, 0], [0.0, 1.0, 0.0, 0.0], atol=1e-6)          # background
    # render_rgba uses the mesh's vertex colours
    m = R.Mesh(v, [[0, 1, 2]], colors=np.tile([0.2, 0.4, 0.6], (6, 1)))
    cam = R.PerspectiveCamera(image_size=8, fx=4.0, dtype=f64)
    out = R.render_rgba(m, cam, sigma=1e-4).numpy()
    assert out.shape == (8, 8, 4) and np.allclose(out[4, 4], [0.2, 0.4, 0.6, 1.0], atol=1e-6)


def test_silhouette_gradient_moves_towards_target():
    m, cam, _ = _sphere_screen(sub=1)
    target = R.silhouette(m.with_verts(m.verts + _t([0.2, 0.0, 0.0])), cam, image_size=32, sigma=1e-3).detach()
    off = _t([0.0, 0.0, 0.0], True)
    loss = ((R.silhouette(m.with_verts(m.verts + off), cam, image_size=32, sigma=1e-3) - target) ** 2).mean()
    loss.backward()
    assert off.grad.numpy()[0] < 0            # increasing x reduces the loss: gradient negative


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1.5, 1.5), min_size=9, max_size=9), st.floats(1e-4, 1e-1),
       st.integers(1, 8), st.sampled_from([None, "face_colors", "colors"]))
def test_property_random_triangle(coords, sigma, tile, colour):
    v = ds.tensor(np.asarray(coords).reshape(3, 3) + [0, 0, 3.0], dtype=f64, requires_grad=True)
    c = ds.tensor(np.array([[0.3, 0.6, 0.9]] * (3 if colour == "colors" else 1)), dtype=f64, requires_grad=True)
    kw = {} if colour is None else {colour: c}
    out = R.soft_rasterize(v, [[0, 1, 2]], (5, 7), sigma=sigma, tile=tile, gamma=1e-2, near=1.0, far=10.0, **kw)
    a = out.detach().numpy()
    assert np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1 + 1e-12
    out.sum().backward()
    assert np.isfinite(v.grad.numpy()).all()
    if colour:
        assert np.isfinite(c.grad.numpy()).all()


def test_bad_inputs():
    v = _t(TRI)
    with pytest.raises(ValueError, match=r"soft_rasterize: faces \[1, 3\] index vertices in \[0, 4\] but verts "
                                         r"has shape \[4, 3\]"):
        R.soft_rasterize(v, [[0, 1, 4]], 8)
    with pytest.raises(ValueError, match="soft_rasterize: faces must have shape .* empty mesh"):
        R.soft_rasterize(v, np.zeros((0, 3), int), 8)
    bad = np.asarray(TRI)
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"soft_rasterize: verts \[4, 3\] contain NaN or inf"):
        R.soft_rasterize(_t(bad), FACES, 8)
    for size in (0, (8, -1), (8,), "8", (8.5, 8)):
        with pytest.raises(ValueError, match="soft_rasterize: image_size"):
            R.soft_rasterize(v, FACES, size)
    with pytest.raises(ValueError, match=r"soft_rasterize: verts must have shape"):
        R.soft_rasterize(_t(np.zeros((4, 2))), FACES, 8)
    with pytest.raises(ValueError, match="sigma and gamma"):
        R.soft_rasterize(v, FACES, 8, sigma=0.0)
    with pytest.raises(ValueError, match="mode"):
        R.soft_rasterize(v, FACES, 8, mode="depth")
    with pytest.raises(ValueError, match="needs colors"):
        R.soft_rasterize(v, FACES, 8, mode="rgba")
    with pytest.raises(ValueError, match=r"face_colors must be \[F=2, C\] or \[B=1, F, C\], got \[4, 3\]"):
        R.soft_rasterize(v, FACES, 8, face_colors=_t(np.zeros((4, 3))))
    with pytest.raises(ValueError, match=r"soft_rasterize: colors must be \[V=4, C\]"):
        R.soft_rasterize(v, FACES, 8, colors=_t(np.zeros((2, 3))))
    with pytest.raises(ValueError, match="background must be one float or C=3 floats"):
        R.soft_rasterize(v, FACES, 8, colors=_t(np.zeros((4, 3))), background=(0.0, 1.0))
    with pytest.raises(ValueError, match="not both"):
        R.soft_rasterize(v, FACES, 8, colors=_t(np.zeros((4, 3))), face_colors=_t(np.zeros((2, 3))))
    with pytest.raises(TypeError, match="soft_rasterize: verts must be a Tensor"):
        R.soft_rasterize(np.asarray(TRI), FACES, 8)


def test_batched_cameras_render_each_view():
    m = R.icosphere(1, dtype=f64)
    eye = _t([[0.0, 0.0, -3.0], [3.0, 0.5, 0.0]])
    Rm, T = R.look_at(eye)
    cam = R.PerspectiveCamera(Rm, T, image_size=(12, 10), fx=_t([8.0, 9.0]), dtype=f64)
    imgs = R.silhouette(m, cam, sigma=1e-3).numpy()
    assert imgs.shape == (2, 12, 10)
    for b in range(2):
        cb = R.PerspectiveCamera(Rm[b], T[b], image_size=(12, 10), fx=[8.0, 9.0][b])
        assert np.allclose(R.silhouette(m, cb, sigma=1e-3).numpy(), imgs[b], atol=1e-12)


# ---------------------------------------------------------------- robustness (review)

def _front_camera(size=16):
    """At the origin looking along +z (identity pose)."""
    return R.PerspectiveCamera(image_size=size, fov=90.0, dtype=f64)


def test_faces_behind_the_camera_are_not_drawn():
    cam = _front_camera()
    # a quad entirely behind the eye (z = -2): perspective division mirrors it into the image
    back = R.Mesh(_t([[-1, -1, -2], [1, -1, -2], [1, 1, -2], [-1, 1, -2]]), [[0, 1, 2], [0, 2, 3]],
                  colors=_t(np.ones((4, 3))))
    assert float(R.silhouette(back, cam).detach().numpy().max()) < 1e-6
    assert float(R.render_rgba(back, cam).detach().numpy()[..., 3].max()) < 1e-6
    img = R.shade_mesh(back, cam, lights=R.AmbientLight(), mode="soft").detach().numpy()
    assert float(img[..., 3].max()) < 1e-6
    # one corner behind the eye: the face crosses the near plane and is skipped, not mirrored
    cross = R.Mesh(_t([[-1, -1, 2], [1, -1, 2], [0, 0.5, -1]]), [[0, 1, 2]])
    v = cross.verts.detach().requires_grad_()
    s = R.silhouette(cross.with_verts(v), cam)
    assert float(s.detach().numpy().max()) < 1e-6
    s.sum().backward()
    assert np.isfinite(v.grad.numpy()).all()
    # in front of the camera the same quad is drawn
    front = R.Mesh(_t([[-1, -1, 2], [1, -1, 2], [1, 1, 2], [-1, 1, 2]]), [[0, 1, 2], [0, 2, 3]])
    assert float(R.silhouette(front, cam).detach().numpy().max()) > 0.99


def test_degenerate_triangles_give_finite_values_and_gradients():
    # zero-area faces: collinear corners and a repeated corner, next to a good face
    v = _t([[-0.5, -0.5, 2.0], [0.5, 0.5, 2.0], [0.0, 0.0, 2.0], [0.3, -0.6, 2.0], [0.6, 0.4, 2.5]], True)
    faces = [[0, 1, 2], [3, 3, 4], [0, 3, 4]]
    for mode in ("silhouette", "rgba"):
        kw = dict(colors=_t(np.linspace(0, 1, 15).reshape(5, 3))) if mode == "rgba" else {}
        out = R.soft_rasterize(v, faces, 12, sigma=1e-3, **kw)
        assert np.isfinite(out.detach().numpy()).all()
        assert out.detach().numpy().min() >= -1e-12 and out.detach().numpy().max() <= 1 + 1e-12
        (g,) = ds.autograd.grad(out.sum(), [v])
        assert np.isfinite(g.numpy()).all()
    frags = R.rasterize(v.detach(), faces, 12)
    assert set(np.unique(frags.face_index.numpy())) <= {-1, 2}              # degenerate faces cover nothing


@pytest.mark.parametrize("sigma", [1e-9, 1e-12])
def test_tiny_sigma_is_stable_and_matches_hard(sigma):
    v = _t([[-0.6, -0.5, 2.0], [0.7, -0.3, 2.0], [0.1, 0.8, 2.0]], True)
    s = R.soft_rasterize(v, [[0, 1, 2]], 16, sigma=sigma)
    hard = R.rasterize(v.detach(), [[0, 1, 2]], 16).mask.numpy()[0]
    assert np.isfinite(s.detach().numpy()).all()
    assert R.iou(s.detach(), ds.tensor(hard.astype(float))) > 0.99
    (g,) = ds.autograd.grad(s.sum(), [v])
    assert np.isfinite(g.numpy()).all()


def test_float32_inputs_stay_float32():
    v = ds.tensor(np.asarray(TRI, np.float32), requires_grad=True)
    c = ds.tensor(np.linspace(0, 1, 12, dtype=np.float32).reshape(4, 3), requires_grad=True)
    out = R.soft_rasterize(v, FACES, 12, sigma=1e-3, colors=c)
    assert out.dtype == ds.float32
    ref = R.soft_rasterize(_t(TRI), FACES, 12, sigma=1e-3, colors=_t(c.detach().numpy()))
    assert np.allclose(out.detach().numpy(), ref.numpy(), atol=1e-5)
    gv, gc = ds.autograd.grad(out.sum(), [v, c])
    assert gv.dtype == ds.float32 and gc.dtype == ds.float32
    assert np.isfinite(gv.numpy()).all()


def test_empty_image_no_face_in_view():
    v = _t([[5.0, 5.0, 2.0], [6.0, 5.0, 2.0], [5.0, 6.0, 2.0]], True)
    s = R.soft_rasterize(v, [[0, 1, 2]], 8)
    assert s.shape == (8, 8) and float(abs(s.detach().numpy()).max()) == 0.0
    rgba = R.soft_rasterize(v, [[0, 1, 2]], 8, colors=_t(np.ones((3, 3))), background=(0.2, 0.3, 0.4))
    assert np.allclose(rgba.detach().numpy()[..., :3], [0.2, 0.3, 0.4]) and np.allclose(rgba.detach().numpy()[..., 3], 0)
    (g,) = ds.autograd.grad(s.sum() + rgba.sum(), [v])
    assert np.allclose(g.numpy(), 0)
