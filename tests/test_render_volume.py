"""Volume rendering: trilinear lookup against grid_sample, Beer-Lambert, gradients, sampling, errors."""
import math

import numpy as np
import pytest

import diffsim as ds
import diffsim.nn as nn
from diffsim.render import PerspectiveCamera, look_at, render_volume, trilinear_interpolate
from diffsim.testing import gradcheck

F64 = ds.float64


def _ray(o, d):
    return ds.tensor([o], dtype=F64), ds.tensor([d], dtype=F64)


def test_trilinear_matches_grid_sample_align_corners():
    rng = np.random.default_rng(0)
    g = ds.tensor(rng.random((3, 4, 5, 2)), dtype=F64)
    lo, hi = np.array([-1.0, 0.0, 2.0]), np.array([1.0, 3.0, 2.5])
    p = lo + (hi - lo) * rng.random((20, 3))
    out = trilinear_interpolate(g, ds.tensor(p, dtype=F64), (lo, hi)).numpy()
    # independent reference: nn.functional.grid_sample on [1, C, D, H, W] with align_corners=True
    grid = ds.tensor(2.0 * (p - lo) / (hi - lo) - 1.0, dtype=F64).reshape(1, 20, 1, 1, 3)
    ref = nn.functional.grid_sample(g.permute(3, 0, 1, 2)[None], grid, align_corners=True)
    np.testing.assert_allclose(out, ref.numpy()[0, :, :, 0, 0].T, atol=1e-12)
    # nodes are on the box corners; outside the box: 0
    corner = trilinear_interpolate(g, ds.tensor([hi, lo, hi + 0.01], dtype=F64), (lo, hi)).numpy()
    np.testing.assert_allclose(corner[:2], [g.numpy()[-1, -1, -1], g.numpy()[0, 0, 0]])
    assert (corner[2] == 0).all()
    assert trilinear_interpolate(g[..., 0], ds.tensor(p, dtype=F64), (lo, hi)).shape == (20,)


def test_trilinear_gradcheck():
    g = ds.rand(3, 4, 2, 2, dtype=F64, requires_grad=True)
    p = (ds.rand(6, 3, dtype=F64) * 1.8 - 0.9).requires_grad_()
    assert gradcheck(lambda a, b: trilinear_interpolate(a, b), (g, p))


@pytest.mark.parametrize("n", [1, 7, 64])
def test_uniform_slab_beer_lambert_exact(n):
    sigma = 0.8
    dens = ds.full((3, 3, 3), sigma, dtype=F64)
    col = ds.full((3, 3, 3, 3), 0.5, dtype=F64)
    o, d = _ray([0.2, -0.1, -3.0], [0.0, 0.0, 1.0])
    r = render_volume(dens, col, rays=(o, d), near=2.0, far=4.0, n_samples=n, background=1.0)
    T = math.exp(-sigma * 2.0)                       # all samples inside the box: exact
    assert r.opacity.item() == pytest.approx(1 - T, rel=1e-12)
    assert r.weights.sum().item() == pytest.approx(1 - T, rel=1e-12)
    np.testing.assert_allclose(r.rgb.numpy(), [[0.5 * (1 - T) + T] * 3], rtol=1e-12)
    # directions need not be unit length: the world-length of a bin is dt * |d|
    r2 = render_volume(dens, rays=(o, 2 * d), near=1.0, far=2.0, n_samples=n)
    assert r2.opacity.item() == pytest.approx(1 - T, rel=1e-12)
    assert r2.rgb is None


def test_oblique_box_chord_beer_lambert():
    sigma = 1.3
    dens = ds.full((2, 2, 2), sigma, dtype=F64)
    d = np.array([0.3, 0.2, 1.0])
    d /= np.linalg.norm(d)
    o = np.array([-0.4, -0.5, -3.0])
    # analytic chord through [-1, 1]^3 (slab method)
    t1, t2 = (-1 - o) / d, (1 - o) / d
    L = np.minimum(t1, t2).max(), np.maximum(t1, t2).min()
    chord = L[1] - L[0]
    r = render_volume(dens, rays=_ray(o, d), near=0.5, far=6.0, n_samples=4000)
    assert r.opacity.item() == pytest.approx(1 - math.exp(-sigma * chord), abs=2e-3)
    # expected depth of a homogeneous chord: sum w t -> integral over the chord
    lo = L[0]
    ref = (1 / sigma) * ((1 - math.exp(-sigma * chord)) - sigma * chord * math.exp(-sigma * chord)) \
        + lo * (1 - math.exp(-sigma * chord))
    assert r.depth.item() == pytest.approx(ref, abs=5e-3)


def test_two_piece_density_is_piecewise_exact():
    # density 0 for the first half of the ray's samples and sigma after: Beer-Lambert over the second half
    sigma = 2.0
    dens = ds.zeros(5, 2, 2, dtype=F64)
    dens[3:] = sigma        # nodes z = 0.5, 1 -> constant sigma on z in [0.5, 1]
    o, d = _ray([0.0, 0.0, 0.0], [0.0, 0.0, 1.0])
    r = render_volume(dens, rays=(o, d), near=0.5, far=1.0, n_samples=10)
    assert r.opacity.item() == pytest.approx(1 - math.exp(-sigma * 0.5), rel=1e-12)


def _tiny_scene(dtype=F64):
    rng = np.random.default_rng(1)
    dens = ds.tensor(rng.random((3, 3, 3)) * 2, dtype=dtype, requires_grad=True)
    col = ds.tensor(rng.random((3, 3, 3, 3)), dtype=dtype, requires_grad=True)
    return dens, col


def test_gradcheck_wrt_grids():
    dens, col = _tiny_scene()
    o = ds.tensor([[0.1, 0.2, -3.0], [-0.3, 0.1, -3.0]], dtype=F64)
    d = ds.tensor([[0.05, -0.02, 1.0], [0.1, 0.03, 1.0]], dtype=F64)

    def f(a, c):
        r = render_volume(a, c, rays=(o, d), near=2.2, far=3.8, n_samples=6, background=(0.2, 0.3, 0.4))
        return ds.cat([r.rgb.reshape(-1), r.opacity, r.depth])
    assert gradcheck(f, (dens, col))


def test_gradcheck_wrt_camera_pose():
    dens, col = _tiny_scene()
    dens, col = dens.detach(), col.detach()
    eye = ds.tensor([0.3, 0.4, -3.0], dtype=F64, requires_grad=True)

    def f(e):
        R, T = look_at(e, dtype=F64)
        cam = PerspectiveCamera(R=R, T=T, image_size=3, fov=20.0, dtype=F64)
        r = render_volume(dens, col, bounds=((-1.5,) * 3, (1.5,) * 3), camera=cam, near=2.3, far=3.7,
                          n_samples=5)
        return ds.cat([r.rgb.reshape(-1), r.depth.reshape(-1)])
    assert gradcheck(f, (eye,))
    R, T = look_at(eye.detach(), dtype=F64)
    cam = PerspectiveCamera(R=R, T=T, image_size=(3, 4), dtype=F64)
    out = render_volume(dens, col, camera=cam, near=2.0, far=4.0, n_samples=4)
    assert out.rgb.shape == (3, 4, 3) and out.opacity.shape == (3, 4) and out.weights.shape == (3, 4, 4)


def test_stratified_reproducible_with_generator():
    dens, col = _tiny_scene()
    o, d = _ray([0.1, 0.0, -3.0], [0.0, 0.1, 1.0])

    def run(seed):
        g = ds.Generator().manual_seed(seed)
        return render_volume(dens, col, rays=(o, d), near=2.0, far=4.0, n_samples=16, stratified=True,
                             generator=g)
    a, b, c = run(3), run(3), run(4)
    np.testing.assert_array_equal(a.t.numpy(), b.t.numpy())
    np.testing.assert_array_equal(a.rgb.detach().numpy(), b.rgb.detach().numpy())
    assert not np.array_equal(a.t.numpy(), c.t.numpy())
    t = a.t.numpy()[0]
    edges = np.linspace(2.0, 4.0, 17)
    assert ((t >= edges[:-1]) & (t <= edges[1:])).all()         # one sample per bin
    mid = render_volume(dens, col, rays=(o, d), near=2.0, far=4.0, n_samples=16)
    np.testing.assert_allclose(mid.t.numpy(), 0.5 * (edges[:-1] + edges[1:]))


def test_callable_field_matches_grid_and_trains():
    dens, col = _tiny_scene()
    o, d = _ray([0.1, 0.0, -3.0], [0.0, 0.1, 1.0])
    field = (lambda p: (trilinear_interpolate(dens, p), trilinear_interpolate(col, p)))
    a = render_volume(field, rays=(o, d), near=2.0, far=4.0, n_samples=8)
    b = render_volume(dens, col, rays=(o, d), near=2.0, far=4.0, n_samples=8)
    np.testing.assert_allclose(a.rgb.detach().numpy(), b.rgb.detach().numpy(), rtol=1e-12)

    class Field(nn.Module):
        def __init__(self):
            super().__init__()
            self.ff = nn.FourierFeatures(3, mapping_size=8, scale=1.0)
            self.mlp = nn.Sequential(nn.Linear(self.ff.out_features, 16), nn.Tanh(), nn.Linear(16, 4))

        def forward(self, p):
            return self.mlp(self.ff(p))                            # [N, 1 + 3]
    ds.manual_seed(0)
    net = Field().to(F64)
    out = render_volume(net, rays=(o, d), near=2.0, far=4.0, n_samples=8)
    assert out.rgb.shape == (1, 3)
    (out.rgb.sum() + out.opacity.sum()).backward()
    assert all(p.grad is not None and np.isfinite(p.grad.numpy()).all() for p in net.parameters())


def test_bad_inputs():
    dens, col = _tiny_scene()
    rays = _ray([0.0, 0.0, -3.0], [0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"render_volume: color grid must be \[D, H, W, C\]"):
        render_volume(dens, col[:2], rays=rays, near=2.0, far=4.0)
    with pytest.raises(ValueError, match="n_samples must be a positive int"):
        render_volume(dens, col, rays=rays, near=2.0, far=4.0, n_samples=0)
    with pytest.raises(ValueError, match="n_samples must be a positive int"):
        render_volume(dens, col, rays=rays, near=2.0, far=4.0, n_samples=-3)
    with pytest.raises(ValueError, match="near < far"):
        render_volume(dens, col, rays=rays, near=4.0, far=4.0)
    with pytest.raises(ValueError, match="near < far"):
        render_volume(dens, col, rays=rays, near=5.0, far=4.0)
    with pytest.raises(ValueError, match="exactly one of camera"):
        render_volume(dens, col, near=2.0, far=4.0)
    with pytest.raises(ValueError, match=r"density must be a grid Tensor \[D, H, W\]"):
        render_volume(dens[0], rays=rays, near=2.0, far=4.0)
    with pytest.raises(ValueError, match="bounds must be"):
        render_volume(dens, rays=rays, near=2.0, far=4.0, bounds=((0, 0, 0), (1, -1, 1)))
    with pytest.raises(ValueError, match=r"origins \[2, 3\] and directions \[3, 3\] do not broadcast"):
        render_volume(dens, rays=(ds.zeros(2, 3, dtype=F64), ds.ones(3, 3, dtype=F64)), near=2.0, far=4.0)
    with pytest.raises(ValueError, match="same dtype"):
        render_volume(dens.float(), rays=rays, near=2.0, far=4.0)
    with pytest.raises(ValueError, match=r"returned density"):
        render_volume(lambda p: (p[:, 0:2], p), rays=rays, near=2.0, far=4.0)
    with pytest.raises(ValueError, match="trilinear_interpolate: points must be a Tensor"):
        trilinear_interpolate(dens, ds.zeros(4, 2, dtype=F64))
