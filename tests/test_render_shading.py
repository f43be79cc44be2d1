import numpy as np
import pytest

import diffsim as ds
import diffsim.render as R
from diffsim.testing import gradcheck

f64 = ds.float64


def _t(x, rg=False):
    return ds.tensor(np.asarray(x, float), dtype=f64, requires_grad=rg)


def _top_camera(size=32, ortho=True, height=3.0):
    """Looking straight down -y at the plane y = 0 (image up = world +z)."""
    Rm, T = R.look_at(_t([0.0, height, 0.0]), up=_t([0.0, 0.0, 1.0]))
    if ortho:
        return R.OrthographicCamera(Rm, T, image_size=size, scale=1.0)
    return R.PerspectiveCamera(Rm, T, image_size=size, fov=60.0)


def test_lambertian_function_matches_n_dot_l():
    rng = np.random.default_rng(0)
    n = rng.normal(size=(50, 3))
    d = np.array([0.3, -0.5, 0.8])
    alb = rng.uniform(size=(50, 3))
    out = R.lambertian(_t(n), _t(alb), R.DirectionalLight(_t(d), color=(1.0, 0.5, 0.25), intensity=2.0)).numpy()
    ndl = np.maximum(0, (n / np.linalg.norm(n, axis=1, keepdims=True)) @ (d / np.linalg.norm(d)))
    assert np.allclose(out, alb * ndl[:, None] * [2.0, 1.0, 0.5])


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_lambertian_brightness_on_plane(mode):
    m = R.plane(size=4.0, subdivisions=2, dtype=f64)                 # normal +y, covers the view
    m = m.with_verts(m.verts + _t([0.013, 0.0, 0.0]))              # no edge through a pixel centre
    cam = _top_camera(16)
    for d in ([0.0, 1.0, 0.0], [1.0, 1.0, 0.5], [0.3, -1.0, 0.0]):
        dd = np.asarray(d) / np.linalg.norm(d)
        img = R.shade_mesh(m, cam, [R.DirectionalLight(_t(d))], mode=mode, shading="lambertian",
                           sigma=1e-6).numpy()
        assert img.shape == (16, 16, 4)
        assert np.allclose(img[..., 3], 1.0, atol=1e-6)
        assert np.allclose(img[..., :3], max(0.0, dd[1]), atol=1e-6)
    img = R.shade_mesh(m, cam, [R.AmbientLight(intensity=0.25), R.DirectionalLight(_t([0.0, 1.0, 1.0]))],
                       mode=mode, shading="lambertian", colors=_t(np.tile([1.0, 0.5, 0.0], (9, 1))),
                       sigma=1e-6).numpy()
    assert np.allclose(img[..., :3], (0.25 + np.sqrt(0.5)) * np.array([1.0, 0.5, 0.0]), atol=1e-6)


def test_blinn_phong_highlight_at_mirror_point():
    m = R.plane(size=4.0, subdivisions=32, dtype=f64)
    cam = _top_camera(64, ortho=False)
    eye = np.array([0.0, 3.0, 0.0])
    light = np.array([1.5, 2.0, -0.5])
    # mirror point on y = 0 between the eye and the light: weights by the other's height
    P = (eye * light[1] + light * eye[1]) / (eye[1] + light[1])
    P[1] = 0.0
    mat = R.Material(diffuse=(0.0, 0.0, 0.0), ambient=(0.0, 0.0, 0.0), specular=(1.0, 1.0, 1.0), shininess=200.0)
    img = R.shade_mesh(m, cam, [R.PointLight(_t(light))], mat, mode="hard").numpy()
    i, j = np.unravel_index(img[..., 0].argmax(), img.shape[:2])
    (u, v), = cam.project(_t(P[None]))[0].numpy()
    assert abs(j + 0.5 - u) <= 1.0 and abs(i + 0.5 - v) <= 1.0
    assert img[..., 0].max() > 0.95 and np.median(img[..., 0]) < 0.05
    # the specular term against numpy at one point
    n, p = np.array([0.0, 1.0, 0.0]), np.array([0.2, 0.0, 0.1])
    l, e = light - p, eye - p
    h = l / np.linalg.norm(l) + e / np.linalg.norm(e)
    ref = (n @ h / np.linalg.norm(h)) ** 200
    out = R.blinn_phong(_t(n), _t(p), _t(eye), None, [R.PointLight(_t(light))], mat).numpy()
    assert np.allclose(out, ref)


def test_orthographic_specular_uses_view_direction():
    m = R.plane(size=4.0, subdivisions=2, dtype=f64)
    m = m.with_verts(m.verts + _t([0.013, 0.0, 0.0]))
    mat = R.Material(ambient=(0.0, 0.0, 0.0), diffuse=(0.0, 0.0, 0.0), specular=(0.5, 0.5, 0.5), shininess=50.0)
    for mode in ("hard", "soft"):
        img = R.shade_mesh(m, _top_camera(8), [R.DirectionalLight(_t([0.0, 1.0, 0.0]))], mat, mode=mode,
                           sigma=1e-6).numpy()
        assert np.allclose(img[..., :3], 0.5, atol=1e-6)              # h = n everywhere


def test_translated_mesh_shifts_image():
    m = R.icosphere(2, dtype=f64, radius=0.5)
    Rm, T = R.look_at(_t([0.0, 0.0, -3.0]))
    cam = R.OrthographicCamera(Rm, T, image_size=32, scale=2.0)      # 8 pixels per world unit
    lights = [R.DirectionalLight(_t([0.0, 0.0, -1.0]))]
    for mode in ("hard", "soft"):
        a = R.shade_mesh(m, cam, lights, mode=mode, sigma=1e-5).numpy()
        b = R.shade_mesh(m.with_verts(m.verts + _t([0.375, -0.25, 0.0])), cam, lights, mode=mode,
                         sigma=1e-5).numpy()
        # look_at from -z: world +x is image right; 3 pixels right, 2 down
        assert np.abs(b[2:, 3:] - a[:-2, :-3]).max() < 1e-6
        assert np.abs(b - a).max() > 0.5


def test_gradcheck_soft_shading_params():
    v = _t([[-0.6, -0.5, 0.0], [0.7, -0.4, 0.2], [0.0, 0.6, -0.1], [0.5, 0.5, 0.3]])
    faces = [[0, 1, 2], [1, 3, 2]]
    rng = np.random.default_rng(0)
    col = _t(rng.uniform(0.2, 1, size=(4, 3)), True)
    ldir = _t([0.3, 0.4, -1.0], True)
    lcol = _t([1.0, 0.8, 0.6], True)
    ppos = _t([0.5, 1.0, -2.0], True)
    spec = _t([0.5, 0.5, 0.5], True)
    shin = _t(8.0, True)
    Rm, T = R.look_at(_t([0.0, 0.0, -3.0]))

    def f(v, col, ldir, lcol, ppos, spec, shin, T):
        cam = R.PerspectiveCamera(Rm, T, image_size=(6, 5), fx=5.0, near=1.0, far=5.0)
        lights = [R.AmbientLight(intensity=0.1), R.DirectionalLight(ldir, lcol, 0.7), R.PointLight(ppos)]
        return R.shade_mesh(R.Mesh(v, faces), cam, lights, R.Material(specular=spec, shininess=shin),
                            colors=col, sigma=0.02, gamma=0.1, tile=3)

    Tt = _t(T.numpy(), True)
    vv = _t(v.numpy(), True)
    assert gradcheck(f, (vv, col, ldir, lcol, ppos, spec, shin, Tt))


def test_gradcheck_hard_shading_params():
    m = R.plane(size=2.0, subdivisions=1, dtype=f64)
    cam = _top_camera(5, ortho=False)
    col = _t(np.random.default_rng(1).uniform(size=(4, 3)), True)
    ldir = _t([0.3, 1.0, 0.2], True)
    shin = _t(5.0, True)
    f = lambda col, ldir, shin: R.shade_mesh(  # noqa: E731
        m, cam, [R.DirectionalLight(ldir)], R.Material(specular=(0.5, 0.5, 0.5), shininess=shin),
        mode="hard", colors=col)
    assert gradcheck(f, (col, ldir, shin))


def test_sample_texture_values_and_gradcheck():
    tex = np.arange(12, dtype=float).reshape(2, 3, 2)                # Ht=2, Wt=3, C=2
    T = _t(tex)
    # texel (i, j) centre at ((j + .5) / 3, 1 - (i + .5) / 2)
    for i in range(2):
        for j in range(3):
            out = R.sample_texture(T, _t([(j + 0.5) / 3, 1 - (i + 0.5) / 2])).numpy()
            assert np.allclose(out, tex[i, j])
    mid = R.sample_texture(T, _t([[1.0 / 3, 0.75]])).numpy()        # between texels (0,0) and (0,1)
    assert np.allclose(mid, [0.5 * (tex[0, 0] + tex[0, 1])])
    assert np.allclose(R.sample_texture(T, _t([-1.0, 2.0])).numpy(), tex[0, 0])            # clamp
    assert np.allclose(R.sample_texture(T, _t([1.0 + 0.5 / 3, 0.75]), wrap="repeat").numpy(), tex[0, 0])
    rng = np.random.default_rng(0)
    Tg = _t(rng.normal(size=(4, 5, 3)), True)
    uv = _t(rng.uniform(0.05, 0.95, size=(2, 3, 2)), True)
    assert R.sample_texture(Tg, uv).shape == (2, 3, 3)
    assert gradcheck(lambda t, uv: R.sample_texture(t, uv), (Tg, uv))
    assert gradcheck(lambda t, uv: R.sample_texture(t, uv, wrap="repeat"), (Tg, uv * 3 - 1))


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_textured_mesh_gradients_reach_texture(mode):
    m0 = R.plane(size=4.0, subdivisions=2, dtype=f64)
    uvs = m0.verts.numpy()[:, [0, 2]] / 4 + 0.5
    tex = _t(np.random.default_rng(0).uniform(size=(4, 4, 3)), True)
    m = R.Mesh(m0.verts, m0.faces_np, uvs=uvs, texture=tex)
    assert m.with_verts(m.verts).texture is tex
    img = R.shade_mesh(m, _top_camera(8), [R.AmbientLight()], mode=mode, sigma=1e-5)
    img[..., :3].sum().backward()
    assert tex.grad is not None and np.abs(tex.grad.numpy()).sum() > 0


def test_batched_cameras_and_errors():
    m = R.icosphere(1, dtype=f64)
    Rm, T = R.look_at(_t([[0.0, 0.0, -3.0], [3.0, 0.0, 0.0]]))
    cam = R.PerspectiveCamera(Rm, T, image_size=12)
    lights = R.PointLight(_t([0.0, 2.0, -2.0]))
    for mode in ("soft", "hard"):
        img = R.shade_mesh(m, cam, lights, R.Material(specular=(0.3, 0.3, 0.3)), mode=mode)
        assert img.shape == (2, 12, 12, 4) and np.isfinite(img.numpy()).all()
    with pytest.raises(ValueError, match="shade_mesh: mode"):
        R.shade_mesh(m, cam, lights, mode="fuzzy")
    with pytest.raises(TypeError, match="shade_mesh: expected a Mesh"):
        R.shade_mesh(None, cam, lights)
    with pytest.raises(TypeError, match="lights must be"):
        R.shade_mesh(m, cam, ["sun"])
    with pytest.raises(ValueError, match="Mesh: uvs must have shape"):
        R.Mesh(m.verts, m.faces_np, uvs=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="Mesh: a texture needs"):
        R.Mesh(m.verts, m.faces_np, texture=np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match=r"sample_texture: uv must be a Tensor \[..., 2\]"):
        R.sample_texture(_t(np.zeros((2, 2, 3))), _t([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="DirectionalLight: direction"):
        R.DirectionalLight((1.0, 0.0))


def test_gradcheck_soft_textured_mesh_wrt_texture_and_uvs():
    m0 = R.plane(size=1.6, subdivisions=1, dtype=f64)
    tex = _t(np.random.default_rng(3).uniform(size=(3, 4, 3)), True)
    uvs = _t(m0.verts.numpy()[:, [0, 2]] / 2 + 0.5 + [0.03, -0.02], True)
    cam = _top_camera(5, ortho=False)
    f = lambda tex, uvs: R.shade_mesh(R.Mesh(m0.verts, m0.faces_np, uvs=uvs, texture=tex), cam,  # noqa: E731
                                      [R.AmbientLight(intensity=0.3), R.DirectionalLight(_t([0.2, 1.0, 0.1]))],
                                      sigma=0.01, gamma=0.1, tile=3)
    assert gradcheck(f, (tex, uvs))


def test_hard_textured_plane_reproduces_texture():
    # plane [-1, 1]^2 seen from above by an orthographic camera spanning exactly that square:
    # pixel (i, j) sees uv ((j + .5) / W, 1 - (i + .5) / H), the centre of texel (i, j)
    m0 = R.plane(size=2.0, subdivisions=3, dtype=f64)
    uvs = m0.verts.numpy()[:, [0, 2]] / 2 + 0.5
    tex = np.random.default_rng(2).uniform(size=(8, 8, 3))
    m = R.Mesh(m0.verts, m0.faces_np, uvs=uvs, texture=tex)
    img = R.shade_mesh(m, _top_camera(8), [R.AmbientLight()], mode="hard").numpy()
    assert np.allclose(img[..., :3], tex) and np.allclose(img[..., 3], 1.0)


def test_sample_texture_stays_on_the_device(monkeypatch):
    rng = np.random.default_rng(1)
    tex, uv = _t(rng.normal(size=(4, 5, 3))), _t(rng.uniform(-0.2, 1.2, size=(7, 2)))
    ref = {w: R.sample_texture(tex, uv, wrap=w).detach()._data for w in ("clamp", "repeat")}

    def boom(self):
        raise AssertionError("host round-trip (.numpy()) in sample_texture")
    monkeypatch.setattr(ds.Tensor, "numpy", boom)
    for w in ("clamp", "repeat"):
        assert np.array_equal(R.sample_texture(tex, uv, wrap=w).detach()._data, ref[w])
