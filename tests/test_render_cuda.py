"""diffsim.render on the GPU: every op run on ``DEVICE`` matches the CPU run, values and gradients.
Skipped (by conftest.py) where no GPU with cupy is present. ``DEVICE`` is a module constant so
the file can be checked on a CPU-only machine by running it with DEVICE = "cpu"."""
import numpy as np
import pytest

import diffsim as ds
import diffsim.render as R

pytestmark = pytest.mark.cuda
DEVICE = "cuda"
f64 = ds.float64


def T(a, device="cpu", rg=False):
    return ds.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=rg)


def close(a, b, rtol=1e-9, atol=1e-11):
    np.testing.assert_allclose(np.asarray(a.detach().cpu().numpy()), np.asarray(b.detach().cpu().numpy()),
                               rtol=rtol, atol=atol)


def check_cpu_and_gpu_agree(build, atol=1e-11, grad_atol=1e-10):
    """``build(device)`` -> (output Tensor, [leaf tensors]) on the CPU and on DEVICE; the outputs,
    a weighted scalar loss of them and its gradients must agree (and live on DEVICE)."""
    res = []
    for dev in ("cpu", DEVICE):
        out, params = build(dev)
        assert out.device.type == dev
        w = ds.tensor(np.random.default_rng(0).uniform(0.5, 1.5, size=out.shape), dtype=out.dtype,
                      device=out.device)
        loss = (out * w).sum()
        grads = ds.autograd.grad(loss, params, allow_unused=True)
        res.append((out, grads))
    (oc, gcs), (og, ggs) = res
    close(og, oc, atol=atol)
    for gc, gg in zip(gcs, ggs):
        assert (gc is None) == (gg is None)
        if gc is not None:
            assert gg.device.type == DEVICE
            close(gg, gc, rtol=1e-8, atol=grad_atol)


VERTS = [[-0.5, -0.5, 2.0], [0.6, -0.4, 2.5], [0.0, 0.7, 3.0], [0.2, 0.2, 1.5], [-0.7, 0.3, 2.2]]
FACES = [[0, 1, 2], [1, 3, 2], [0, 2, 4]]


def _cam(dev, size=12, batch=False, ortho=False):
    eye = T([[0.4, 0.3, -3.0], [-0.5, 0.2, -2.8]] if batch else [0.4, 0.3, -3.0], dev)
    Rm, Tv = R.look_at(eye)
    if ortho:
        return R.OrthographicCamera(Rm, Tv, image_size=size, scale=1.3)
    return R.PerspectiveCamera(Rm, Tv, image_size=size, fov=50.0)


@pytest.mark.parametrize("tile", [4, 8])
def test_soft_silhouette(tile):
    def build(dev):
        v = T(VERTS, dev, True)
        return R.soft_rasterize(v, FACES, (10, 13), sigma=2e-3, tile=tile), [v]
    check_cpu_and_gpu_agree(build)


@pytest.mark.parametrize("per_vertex", [True, False])
def test_soft_rgba_batched(per_vertex):
    def build(dev):
        v = T(np.stack([VERTS, np.asarray(VERTS) * [1.1, 0.9, 1.0]]), dev, True)
        rng = np.random.default_rng(1)
        c = T(rng.uniform(size=(5 if per_vertex else 3, 3)), dev, True)
        kw = dict(colors=c) if per_vertex else dict(face_colors=c)
        out = R.soft_rasterize(v, FACES, 11, sigma=3e-3, gamma=0.05, background=(0.1, 0.2, 0.3), **kw)
        return out, [v, c]
    check_cpu_and_gpu_agree(build)


def test_rasterize_and_interpolate():
    def build(dev):
        v = T(VERTS, dev)
        frags = R.rasterize(v, FACES, (9, 14), perspective_correct=True)
        assert frags.face_index.device.type == v.device.type
        a = T(np.random.default_rng(2).normal(size=(5, 4)), dev, True)
        fidx = frags.face_index.to(f64)
        out = ds.cat([R.interpolate(a, ds.tensor(np.asarray(FACES), device=dev), frags),
                      fidx[..., None], frags.depth[..., None], frags.bary], -1)
        return out, [a]
    check_cpu_and_gpu_agree(build)


@pytest.mark.parametrize("mode", ["soft", "hard"])
@pytest.mark.parametrize("ortho", [False, True])
def test_shade_mesh(mode, ortho):
    def build(dev):
        m = R.icosphere(1, dtype=f64, device=dev)
        v = (m.verts * 1.0).detach().requires_grad_()
        col = T(np.random.default_rng(3).uniform(size=(m.num_verts, 3)), dev, True)
        mesh = R.Mesh(v, m.faces_np, colors=col)
        lights = [R.AmbientLight(intensity=0.2), R.DirectionalLight((0.3, 1.0, -1.0)),
                  R.PointLight((1.0, 1.0, -3.0), quadratic=0.1)]
        mat = R.Material(specular=(0.3, 0.3, 0.3), shininess=8.0)
        out = R.shade_mesh(mesh, _cam(dev, 10, batch=True, ortho=ortho), lights, mat, mode=mode, sigma=1e-3,
                           gamma=0.05)
        return out, [v, col]
    # soft mode drops a face from a pixel's colour softmax where D < 1e-8 (and culls it from a
    # tile beyond the same level): a face at that threshold can fall on either side on the two
    # devices, moving a pixel by about 1e-8 times its depth weight (up to 5e-7 was seen on an H100)
    check_cpu_and_gpu_agree(build, atol=2e-6, grad_atol=2e-5) if mode == "soft" else check_cpu_and_gpu_agree(build)


def test_sample_texture():
    def build(dev):
        rng = np.random.default_rng(4)
        tex = T(rng.normal(size=(5, 6, 3)), dev, True)
        uv = T(rng.uniform(-0.1, 1.1, size=(4, 7, 2)), dev, True)
        return ds.cat([R.sample_texture(tex, uv), R.sample_texture(tex, uv, wrap="repeat")], -1), [tex, uv]
    check_cpu_and_gpu_agree(build)


def test_render_volume_grid():
    def build(dev):
        rng = np.random.default_rng(5)
        dens = T(rng.uniform(0, 2, size=(4, 5, 6)), dev, True)
        col = T(rng.uniform(size=(4, 5, 6, 3)), dev, True)
        eye = T([0.3, 0.4, -3.0], dev, True)
        Rm, Tv = R.look_at(eye)
        cam = R.PerspectiveCamera(Rm, Tv, image_size=6, fov=40.0)
        r = R.render_volume(dens, col, camera=cam, near=1.5, far=4.5, n_samples=16, background=0.5)
        return ds.cat([r.rgb, r.opacity[..., None], r.depth[..., None]], -1), [dens, col, eye]
    check_cpu_and_gpu_agree(build)


def test_render_volume_callable_field():
    def build(dev):
        rng = np.random.default_rng(6)
        w = T(rng.normal(size=(3, 4)), dev, True)

        def field(p):                                  # [N, 3] -> (density [N], colour [N, 3])
            h = (p @ w).sin()
            return ds.relu(h[:, 0]) * 2.0, ds.sigmoid(h[:, 1:])
        o = T(rng.normal(size=(5, 3)) * 0.1 + [0.0, 0.0, -2.0], dev)
        d = T(np.tile([0.0, 0.0, 1.0], (5, 1)) + rng.normal(size=(5, 3)) * 0.1, dev)
        r = R.render_volume(field, rays=(o, d), near=0.5, far=3.5, n_samples=12)
        return ds.cat([r.rgb, r.opacity[..., None]], -1), [w]
    check_cpu_and_gpu_agree(build)


@pytest.mark.parametrize("ortho", [False, True])
def test_camera_projection_and_rays(ortho):
    def build(dev):
        eye = T([[0.4, 0.3, -3.0], [-0.5, 0.2, -2.8]], dev, True)
        fx = T([9.0, 10.0], dev, True)
        Rm, Tv = R.look_at(eye)
        cam = (R.OrthographicCamera(Rm, Tv, image_size=(5, 7), fx=fx, fy=fx) if ortho
               else R.PerspectiveCamera(Rm, Tv, image_size=(5, 7), fx=fx, fy=fx))
        pts = T(np.random.default_rng(7).normal(size=(6, 3)), dev, True)
        pix, z = cam.project(pts)
        o, d = cam.rays()
        out = ds.cat([pix.reshape(2, -1), z.reshape(2, -1), cam.to_ndc(pts).reshape(2, -1),
                      o.reshape(2, -1), d.reshape(2, -1)], -1)
        return out, [eye, fx, pts]
    check_cpu_and_gpu_agree(build)
