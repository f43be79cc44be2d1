import numpy as np
import pytest

import diffsim as ds
import diffsim.render as R
from diffsim.testing import gradcheck

f64 = ds.float64


def _t(x, rg=False):
    return ds.tensor(np.asarray(x, float), dtype=f64, requires_grad=rg)


def _cam(**kw):
    Rm, T = R.look_at(_t([1.0, 2.0, -4.0]), _t([0.1, -0.2, 0.3]))
    return R.PerspectiveCamera(Rm, T, image_size=(48, 64), fx=50.0, fy=55.0, cx=30.0, cy=25.0, **kw)


def test_look_at_orthonormal_and_centres_target():
    eye, at = _t([[1.0, 2.0, -4.0], [3.0, -1.0, 2.0]]), _t([[0.1, -0.2, 0.3], [0.0, 0.0, 0.0]])
    Rm, T = R.look_at(eye, at)
    Rn = Rm.numpy()
    assert np.allclose(Rn @ np.swapaxes(Rn, 1, 2), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(Rn), 1.0)
    view_at = np.einsum("bij,bj->bi", Rn, at.numpy()) + T.numpy()
    assert np.allclose(view_at[:, :2], 0, atol=1e-12) and (view_at[:, 2] > 0).all()
    view_eye = np.einsum("bij,bj->bi", Rn, eye.numpy()) + T.numpy()
    assert np.allclose(view_eye, 0, atol=1e-12)
    # the world up vector projects to +y in view space
    assert (Rn[:, 1, 1] > 0).all()


def test_look_at_parallel_up_raises():
    with pytest.raises(ValueError, match="look_at: up is parallel"):
        R.look_at(_t([0.0, 3.0, 0.0]), _t([0.0, 0.0, 0.0]), _t([0.0, 1.0, 0.0]))


@pytest.mark.parametrize("cls", [R.PerspectiveCamera, R.OrthographicCamera])
def test_project_unproject_round_trip(cls):
    Rm, T = R.look_at(_t([1.0, 2.0, -4.0]), _t([0.1, -0.2, 0.3]))
    cam = cls(Rm, T, image_size=(48, 64), fx=50.0, fy=55.0, cx=30.0, cy=25.0)
    p = _t(np.random.default_rng(0).uniform(-1, 1, (10, 3)))
    pix, z = cam.project(p)
    assert pix.shape == (10, 2) and z.shape == (10,)
    assert np.allclose(cam.unproject(pix, z).numpy(), p.numpy(), atol=1e-12)


def test_project_matches_w4_and_ndc():
    Rm, T = R.look_at(_t([0.0, 0.0, -3.0]))
    cam = R.PerspectiveCamera(Rm, T, image_size=64, fx=48.0)        # f_ndc = 48 / 32 = 1.5
    p = _t([[0.5, 0.2, 0.1], [-0.3, 0.4, -0.5]])
    ndc = cam.to_ndc(p).numpy()
    X, Y, Z = p.numpy().T
    assert np.allclose(ndc[:, 0], 1.5 * X / (Z + 3)) and np.allclose(ndc[:, 1], 1.5 * Y / (Z + 3))
    assert np.allclose(ndc[:, 2], Z + 3)


def test_fov_intrinsics():
    cam = R.PerspectiveCamera(image_size=(100, 80), fov=90.0, dtype=f64)
    assert np.isclose(cam.fx.item(), 50.0) and np.isclose(cam.cx.item(), 40.0) and np.isclose(cam.cy.item(), 50.0)
    with pytest.raises(ValueError, match="fov"):
        R.PerspectiveCamera(fov=200.0)
    with pytest.raises(ValueError, match="near < far"):
        R.PerspectiveCamera(near=2.0, far=1.0)


def test_rays_pass_through_unprojected_pixels():
    cam = _cam()
    o, d = cam.rays()
    assert o.shape == (48, 64, 3) and d.shape == (48, 64, 3)
    assert np.allclose(np.linalg.norm(d.numpy(), axis=-1), 1.0)
    i, j = 7, 41
    pix = _t([[j + 0.5, i + 0.5]])
    pt = cam.unproject(pix, _t([2.5])).numpy()[0]
    v = pt - o.numpy()[i, j]
    assert np.allclose(v / np.linalg.norm(v), d.numpy()[i, j], atol=1e-12)
    assert np.allclose(o.numpy()[i, j], cam.center.numpy())


def test_orthographic_rays_parallel():
    Rm, T = R.look_at(_t([0.0, 1.0, -3.0]))
    cam = R.OrthographicCamera(Rm, T, image_size=8, scale=2.0)
    o, d = cam.rays()
    assert np.allclose(d.numpy(), Rm.numpy()[2])
    pix, z = cam.project(o.reshape(-1, 3))
    u, v = np.meshgrid(np.arange(8) + 0.5, np.arange(8) + 0.5)
    assert np.allclose(pix.numpy()[:, 0], u.ravel()) and np.allclose(pix.numpy()[:, 1], v.ravel())
    assert np.allclose(z.numpy(), 0, atol=1e-12)


def test_batched_cameras():
    eye = _t([[0.0, 0.0, -3.0], [3.0, 0.0, 0.0]])
    Rm, T = R.look_at(eye)
    cam = R.PerspectiveCamera(Rm, T, image_size=16, fx=_t([10.0, 12.0]), dtype=f64)
    p = _t(np.random.default_rng(1).uniform(-0.5, 0.5, (5, 3)))
    pix, z = cam.project(p)
    assert pix.shape == (2, 5, 2) and z.shape == (2, 5)
    for b in range(2):
        cb = R.PerspectiveCamera(Rm[b], T[b], image_size=16, fx=[10.0, 12.0][b])
        pb, zb = cb.project(p)
        assert np.allclose(pb.numpy(), pix.numpy()[b]) and np.allclose(zb.numpy(), z.numpy()[b])
    o, d = cam.rays()
    assert o.shape == (2, 16, 16, 3) and d.shape == (2, 16, 16, 3)


@pytest.mark.parametrize("kind,n", [("axis_angle", 3), ("quaternion", 4), ("6d", 6)])
def test_rotation_parameterizations_orthonormal(kind, n):
    r = _t(np.random.default_rng(2).normal(size=(4, n)))
    M = R.rotation_from(r, kind).numpy()
    assert np.allclose(M @ np.swapaxes(M, 1, 2), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(M), 1.0)


def test_axis_angle_matches_quaternion_and_small_angle():
    w = np.array([0.3, -0.2, 0.5])
    th = np.linalg.norm(w)
    q = np.concatenate([[np.cos(th / 2)], np.sin(th / 2) * w / th])
    assert np.allclose(R.axis_angle_to_matrix(_t(w)).numpy(), R.quaternion_to_matrix(_t(q)).numpy())
    assert np.allclose(R.axis_angle_to_matrix(_t([0.0, 0.0, 0.0])).numpy(), np.eye(3))
    assert gradcheck(R.axis_angle_to_matrix, (_t([1e-5, 2e-5, -1e-5], True),))
    assert gradcheck(R.axis_angle_to_matrix, (_t([0.0, 0.0, 0.0], True),))


def test_gradcheck_pose_and_intrinsics():
    p = _t(np.random.default_rng(3).uniform(-0.5, 0.5, (4, 3)))

    def f(aa, t, fx, cx):
        cam = R.PerspectiveCamera.from_pose(aa, t, kind="axis_angle", image_size=32, fx=fx, fy=fx, cx=cx, cy=16.0)
        pix, z = cam.project(p)
        return pix, z

    assert gradcheck(f, (_t([0.1, 0.2, -0.1], True), _t([0.1, -0.2, 3.0], True), _t(30.0, True), _t(15.0, True)))


@pytest.mark.parametrize("kind,val", [("quaternion", [0.9, 0.1, -0.2, 0.3]), ("6d", [1.0, 0.1, 0.0, 0.2, 1.0, 0.1])])
def test_gradcheck_rotations_through_rays(kind, val):
    def f(r, fx):
        cam = R.PerspectiveCamera.from_pose(r, _t([0.0, 0.0, 3.0]), kind=kind, image_size=(3, 4), fx=fx)
        return cam.rays()

    assert gradcheck(f, (_t(val, True), _t(3.0, True)))


def test_gradcheck_look_at():
    assert gradcheck(lambda e, a: R.look_at(e, a), (_t([1.0, 2.0, -4.0], True), _t([0.1, -0.2, 0.3], True)))
