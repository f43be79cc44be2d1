"""ds.sample_grid: multilinear grid sampling (the op behind physics.grid.sample and
render.volume.trilinear_interpolate) against a dense numpy reference, gradients, edges, errors."""

import numpy as np
import pytest

import diffsim as ds
from diffsim.physics import grid as G
from diffsim.render import trilinear_interpolate
from diffsim.testing import gradcheck, gradgradcheck

F64 = ds.float64
SHAPES = {1: (5,), 2: (4, 5), 3: (3, 4, 5)}
MODES = ("clamp", "zero", "wrap")


def dense_reference(values, coords, modes):
    """Dense hat-function weights over every node: out[p] = sum_j v[j] prod_a hat(p_a - j_a),
    after clamping ("clamp"), reducing modulo n with periodic images ("wrap"), and zeroing
    points outside [0, n - 1] ("zero"). values [*S, C], coords [P, d] -> [P, C]."""
    S = values.shape[:-1]
    d = len(S)
    P = coords.shape[0]
    W = np.ones((P,) + S)
    keep = np.ones(P)
    for a in range(d):
        n, p = S[a], coords[:, a].astype(np.float64)
        j = np.arange(n, dtype=np.float64)
        if modes[a] == "wrap":
            pm = np.mod(p, n)
            x = pm[:, None] - j[None, :]
            h = sum(np.maximum(0.0, 1 - np.abs(x + k * n)) for k in (-1, 0, 1))
        else:
            if modes[a] == "zero":
                keep = keep * ((p >= 0) & (p <= n - 1))
            pc = np.clip(p, 0, n - 1)
            h = np.maximum(0.0, 1 - np.abs(pc[:, None] - j[None, :]))
        shape = [P] + [1] * d
        shape[1 + a] = n
        W = W * h.reshape(shape)
    W = W.reshape(P, -1) * keep[:, None]
    return W @ values.reshape(-1, values.shape[-1])


def _coords(rng, S, P, lo=-1.5, hi=1.5):
    return np.stack([rng.uniform(lo, n - 1 + hi, P) for n in S], -1)


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("C", [None, 3])
def test_forward_matches_dense_reference(d, mode, C):
    rng = np.random.default_rng(d * 10 + len(mode))
    S = SHAPES[d]
    v = rng.standard_normal(S + ((C,) if C else ()))
    c = _coords(rng, S, 40)
    out = ds.sample_grid(ds.tensor(v, dtype=F64), ds.tensor(c.reshape(5, 8, d), dtype=F64), mode)
    ref = dense_reference(v if C else v[..., None], c, (mode,) * d)
    assert tuple(out.shape) == (5, 8) + ((C,) if C else ())
    np.testing.assert_allclose(out.numpy().reshape(40, -1), ref, rtol=1e-12, atol=1e-12)


def test_per_axis_modes_size_one_axes_and_channelwise():
    rng = np.random.default_rng(1)
    for S, modes in [((4, 5), ("clamp", "wrap")), ((1, 5, 3), ("wrap", "zero", "clamp")),
                     ((3, 1), ("clamp", "clamp")), ((6,), ("wrap",))]:
        v = rng.standard_normal(S + (2,))
        c = _coords(rng, S, 30)
        out = ds.sample_grid(ds.tensor(v), ds.tensor(c), modes)
        np.testing.assert_allclose(out.numpy(), dense_reference(v, c, modes), atol=1e-12)
    # channelwise: channel k read at its own point
    v = rng.standard_normal((4, 5, 3))
    c = _coords(rng, (4, 5), 7 * 3).reshape(7, 3, 2)
    out = ds.sample_grid(ds.tensor(v), ds.tensor(c), "wrap", channelwise=True).numpy()
    for k in range(3):
        np.testing.assert_allclose(out[:, k], dense_reference(v[..., k:k + 1], c[:, k], ("wrap",) * 2)[:, 0],
                                   atol=1e-12)


def _smooth_coords(rng, S, P, mode):
    """Points away from the kinks (integer coords, the 'zero' cut) where finite differences hold."""
    lo, hi = (0, 0) if mode == "zero" else (-2, 2)
    base = np.stack([rng.integers(lo, n - 1 + hi if n > 1 else 1, P) for n in S], -1).astype(float)
    c = base + rng.uniform(0.15, 0.85, base.shape)
    if mode == "zero":      # a few points well outside, which read 0
        c[:2] = -1.5
    return c


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("C", [None, 2])
def test_gradcheck_and_gradgradcheck(d, mode, C):
    rng = np.random.default_rng(100 + d)
    S = SHAPES[d] if d < 3 else (2, 3, 3)
    v = ds.tensor(rng.standard_normal(S + ((C,) if C else ())), dtype=F64, requires_grad=True)
    c = ds.tensor(_smooth_coords(rng, S, 6, mode), dtype=F64, requires_grad=True)
    fn = (lambda a, b: ds.sample_grid(a, b, mode))
    assert gradcheck(fn, (v, c))
    assert gradgradcheck(fn, (v, c))


def test_channelwise_gradcheck_and_gradgradcheck():
    rng = np.random.default_rng(7)
    v = ds.tensor(rng.standard_normal((4, 5, 2)), dtype=F64, requires_grad=True)
    c = ds.tensor(_smooth_coords(rng, (4, 5), 8, "clamp").reshape(4, 2, 2), dtype=F64, requires_grad=True)
    fn = (lambda a, b: ds.sample_grid(a, b, ("clamp", "wrap"), channelwise=True))
    assert gradcheck(fn, (v, c))
    assert gradgradcheck(fn, (v, c))


def test_former_ops_gain_double_backward():
    rng = np.random.default_rng(3)
    g = ds.tensor(rng.random((3, 4, 2, 2)), dtype=F64, requires_grad=True)
    p = ds.tensor(rng.uniform(-0.9, 0.9, (6, 3)), dtype=F64, requires_grad=True)
    assert gradgradcheck(lambda a, b: trilinear_interpolate(a, b), (g, p))
    grid = G.Grid((5, 4), spacing=0.5, origin=(-1.0, 0.0))
    f = ds.tensor(rng.standard_normal((5, 4, 2)), dtype=F64, requires_grad=True)
    pts = ds.tensor(rng.uniform(-0.9, 1.4, (5, 2)) * [1.0, 1.0] + [0.0, 0.4], dtype=F64, requires_grad=True)
    assert gradgradcheck(lambda a, b: G.sample(a, b, grid, "periodic"), (f, pts))


def test_points_on_nodes_and_edges():
    rng = np.random.default_rng(5)
    v = rng.standard_normal((4, 5, 2))
    nodes = np.stack(np.meshgrid(np.arange(4.0), np.arange(5.0), indexing="ij"), -1).reshape(-1, 2)
    for mode in MODES:
        out = ds.sample_grid(ds.tensor(v), ds.tensor(nodes), mode).numpy()
        np.testing.assert_array_equal(out, v.reshape(-1, 2))       # exactly the node values
    # the outermost nodes are inside for "zero"; just past them reads 0
    edge = ds.tensor([[3.0, 4.0], [0.0, 0.0], [3.0 + 1e-9, 2.0], [-1e-9, 2.0]], dtype=F64)
    out = ds.sample_grid(ds.tensor(v), edge, "zero").numpy()
    np.testing.assert_array_equal(out[:2], v[[3, 0], [4, 0]])
    assert (out[2:] == 0).all()
    # wrap: coordinate n is node 0, halfway past the last node mixes it with node 0
    out = ds.sample_grid(ds.tensor(v), ds.tensor([[4.0, 5.0], [3.5, 0.0]], dtype=F64), "wrap").numpy()
    np.testing.assert_allclose(out, [v[0, 0], 0.5 * (v[3, 0] + v[0, 0])], atol=1e-15)
    # coordinate gradient on a node: the slope of the upper cell (of the last cell at the last node)
    v1 = ds.tensor([0.0, 1.0, 3.0, 6.0], dtype=F64)
    for mode in ("clamp", "zero"):
        x = ds.tensor([[0.0], [1.0], [3.0]], dtype=F64, requires_grad=True)
        ds.sample_grid(v1, x, mode).sum().backward()
        np.testing.assert_allclose(x.grad.numpy()[:, 0], [1.0, 2.0, 3.0])
    # clamp: no coordinate gradient outside, values' gradient goes to the edge node
    x = ds.tensor([[-2.0], [5.0]], dtype=F64, requires_grad=True)
    vv = ds.tensor([0.0, 1.0, 3.0, 6.0], dtype=F64, requires_grad=True)
    ds.sample_grid(vv, x, "clamp").sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 0)
    np.testing.assert_array_equal(vv.grad.numpy(), [1, 0, 0, 1])


def test_float32():
    rng = np.random.default_rng(9)
    v = rng.standard_normal((6, 7, 3))
    c = _coords(rng, (6, 7), 50)
    for mode in MODES:
        v32 = ds.tensor(v, dtype=ds.float32, requires_grad=True)
        c32 = ds.tensor(c, dtype=ds.float32, requires_grad=True)
        out = ds.sample_grid(v32, c32, mode)
        assert out.dtype == ds.float32
        np.testing.assert_allclose(out.detach().numpy(), dense_reference(v, c.astype(np.float32), (mode,) * 2),
                                   rtol=1e-5, atol=1e-5)
        (out ** 2).sum().backward()
        assert v32.grad.dtype == ds.float32 and c32.grad.dtype == ds.float32
        v64, c64 = ds.tensor(v, dtype=F64, requires_grad=True), ds.tensor(c.astype(np.float32), dtype=F64,
                                                                          requires_grad=True)
        (ds.sample_grid(v64, c64, mode) ** 2).sum().backward()
        np.testing.assert_allclose(v32.grad.numpy(), v64.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(c32.grad.numpy(), c64.grad.numpy(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("C", [None, 2])
def test_empty_point_sets(C):
    v = ds.rand(3, 4, *((C,) if C else ()), dtype=F64, requires_grad=True)
    c = ds.zeros(0, 2, dtype=F64, requires_grad=True)
    for mode in MODES:
        out = ds.sample_grid(v, c, mode)
        assert tuple(out.shape) == (0,) + ((C,) if C else ())
        gv, gc = ds.autograd.grad(out.sum(), [v, c])
        assert tuple(gv.shape) == tuple(v.shape) and (gv.numpy() == 0).all()
        assert tuple(gc.shape) == (0, 2)
    out = ds.sample_grid(v, ds.zeros(2, 0, 2, dtype=F64))
    assert tuple(out.shape) == (2, 0) + ((C,) if C else ())


def test_errors_name_the_op_and_shapes():
    v = ds.rand(3, 4, dtype=F64)
    with pytest.raises(ValueError, match=r"sample_grid: coords must be \[\.\.\., d\].*\[5, 4\]"):
        ds.sample_grid(v, ds.zeros(5, 4, dtype=F64))
    with pytest.raises(ValueError, match=r"sample_grid: values \[3, 4\] do not fit coords \[5, 3\]"):
        ds.sample_grid(v, ds.zeros(5, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"sample_grid: values \[3\] do not fit coords \[5, 2\]"):
        ds.sample_grid(ds.rand(3, dtype=F64), ds.zeros(5, 2, dtype=F64))
    with pytest.raises(ValueError, match=r"sample_grid: values \[3, 0\] must have no empty axis"):
        ds.sample_grid(ds.rand(3, 0, dtype=F64), ds.zeros(5, 2, dtype=F64))
    with pytest.raises(ValueError, match=r"sample_grid: values \(float64\) and coords \(float32\)"):
        ds.sample_grid(v, ds.zeros(5, 2, dtype=ds.float32))
    with pytest.raises(ValueError, match=r"sample_grid: values \(int64\)"):
        ds.sample_grid(ds.zeros(3, 4, dtype=ds.int64), ds.zeros(5, 2, dtype=ds.int64))
    with pytest.raises(ValueError, match=r"sample_grid: unknown boundary mode 'reflect'"):
        ds.sample_grid(v, ds.zeros(5, 2, dtype=F64), "reflect")
    with pytest.raises(ValueError, match=r"sample_grid: boundary needs 1 or 2 entries"):
        ds.sample_grid(v, ds.zeros(5, 2, dtype=F64), ("clamp",) * 3)
    with pytest.raises(ValueError, match=r"sample_grid: channelwise coords must be \[\.\.\., C, 2\] with C = 3.*"
                                         r"\[3, 4, 3\], got \[5, 2, 2\]"):
        ds.sample_grid(ds.rand(3, 4, 3, dtype=F64), ds.zeros(5, 2, 2, dtype=F64), channelwise=True)
    with pytest.raises(TypeError, match=r"sample_grid: values and coords must be Tensors"):
        ds.sample_grid(np.zeros((3, 4)), ds.zeros(5, 2, dtype=F64))


def test_registered_and_exported():
    from diffsim.autodiff.function import REGISTRY
    assert "sample_grid" in REGISTRY
    assert ds.sample_grid is ds.autodiff.sample_grid
    assert "[*S, C]" in ds.sample_grid.__doc__
