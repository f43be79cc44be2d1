import numpy as np
import pytest

import diffsim as ds
import diffsim.render as R
from diffsim.testing import gradcheck

f64 = ds.float64


def _closed():
    return [R.icosphere(2, dtype=f64), R.icosphere(0, radius=2.0, dtype=f64), R.uv_sphere(6, 8, dtype=f64),
            R.box((1.0, 2.0, 3.0), dtype=f64), R.cylinder(0.5, 2.0, 7, dtype=f64)]


def test_icosphere_counts_w4():
    m = R.icosphere(2, dtype=f64)
    assert (m.num_verts, m.num_faces) == (162, 320)
    assert np.allclose(np.linalg.norm(m.verts.numpy(), axis=1), 1.0)
    for s in range(4):
        m = R.icosphere(s)
        assert (m.num_verts, m.num_faces) == (10 * 4 ** s + 2, 20 * 4 ** s)


def test_primitive_counts():
    assert (R.uv_sphere(6, 8).num_verts, R.uv_sphere(6, 8).num_faces) == (42, 80)
    assert (R.box().num_verts, R.box().num_faces) == (8, 12)
    assert (R.plane(subdivisions=3).num_verts, R.plane(subdivisions=3).num_faces) == (16, 18)
    assert (R.cylinder(segments=7).num_verts, R.cylinder(segments=7).num_faces) == (16, 28)


@pytest.mark.parametrize("i", range(5))
def test_closed_meshes_euler_and_outward_normals(i):
    m = _closed()[i]
    E = len(m.topology()["edges"])
    assert m.num_verts - E + m.num_faces == 2
    assert len(m.topology()["edge_faces"]) == E               # every edge has two faces
    n = m.face_normals().numpy()
    c = m.face_verts().numpy().mean(1)
    assert ((n * c).sum(1) > 0).all()
    vn = m.vertex_normals().numpy()
    assert np.allclose(np.linalg.norm(vn, axis=1), 1.0)
    assert ((vn * m.verts.numpy()).sum(1) > 0).all()
    # divergence theorem: volume = 1/6 sum over faces of v0 . (v1 x v2) > 0 for outward faces
    fv = m.face_verts().numpy()
    assert np.einsum("fi,fi->f", fv[:, 0], np.cross(fv[:, 1], fv[:, 2])).sum() > 0


def test_box_volume_and_plane_normal():
    fv = R.box((1.0, 2.0, 3.0), dtype=f64).face_verts().numpy()
    assert np.isclose(np.einsum("fi,fi->f", fv[:, 0], np.cross(fv[:, 1], fv[:, 2])).sum() / 6, 6.0)
    assert np.allclose(R.plane(subdivisions=2, dtype=f64).face_normals().numpy(), [0, 1, 0])


def test_mesh_validation_errors():
    v = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"Mesh: faces \[1, 3\] index vertices in \[0, 4\] but verts has "
                                         r"shape \[4, 3\]"):
        R.Mesh(v, [[0, 1, 4]])
    with pytest.raises(ValueError, match="Mesh: faces must have shape"):
        R.Mesh(v, np.zeros((0, 3), int))
    with pytest.raises(ValueError, match=r"Mesh: verts must have shape \[V, 3\] with V > 0, got \[0, 3\]"):
        R.Mesh(np.zeros((0, 3)), [[0, 1, 2]])
    bad = v.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        R.Mesh(bad, [[0, 1, 2]])
    with pytest.raises(ValueError, match="Mesh: colors"):
        R.Mesh(v, [[0, 1, 2]], colors=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="faces must be integers"):
        R.Mesh(v, [[0.0, 1.0, 2.0]])


def test_regularizer_values():
    sph = R.icosphere(3, dtype=f64)
    # Laplace-Beltrami of the unit sphere: |Δv| = 2
    assert abs(R.cotangent_laplacian_loss(sph).item() - 4.0) < 0.05
    big = R.icosphere(3, radius=2.0, dtype=f64)
    assert abs(R.cotangent_laplacian_loss(big).item() - 1.0) < 0.02
    pl = R.plane(subdivisions=4, dtype=f64)
    assert R.normal_consistency_loss(pl).item() == pytest.approx(0.0, abs=1e-12)
    b = R.box(dtype=f64)
    e = b.topology()["edges"]
    L = np.linalg.norm(b.verts.numpy()[e[:, 0]] - b.verts.numpy()[e[:, 1]], axis=1)
    assert np.isclose(R.edge_length_loss(b).item(), (L ** 2).mean())
    assert np.isclose(R.edge_length_loss(b, target=1.0).item(), ((L - 1) ** 2).mean())
    # interior vertices of a regular planar grid have zero uniform Laplacian
    assert R.laplacian_smoothing_loss(sph).item() < R.laplacian_smoothing_loss(b).item()


def _jitter(m, seed=0):
    rng = np.random.default_rng(seed)
    return ds.tensor(m.verts.numpy() + 0.05 * rng.standard_normal(m.verts.shape), dtype=f64, requires_grad=True)


@pytest.mark.parametrize("fn", [R.laplacian_smoothing_loss, R.cotangent_laplacian_loss, R.edge_length_loss,
                                R.normal_consistency_loss,
                                lambda m, v: R.edge_length_loss(m, v, target=0.7)])
def test_gradcheck_regularizers(fn):
    m = R.icosphere(0, dtype=f64)
    assert gradcheck(lambda v: fn(m, v), (_jitter(m),))


def test_gradcheck_normals():
    m = R.box(dtype=f64)
    f = m.faces
    assert gradcheck(lambda v: R.face_normals(v, f), (_jitter(m, 1),))
    assert gradcheck(lambda v: R.vertex_normals(v, f), (_jitter(m, 2),))


def test_regularizer_rejects_non_mesh():
    with pytest.raises(TypeError, match="laplacian_smoothing_loss: expected a Mesh"):
        R.laplacian_smoothing_loss(np.zeros((3, 3)))
