"""nn.functional spatial ops: conv*, conv_transpose*, pooling, interpolate, grid_sample, affine_grid.

Forward against independent naive numpy references (loops) and against torch where
installed; gradients (and some second derivatives) against finite differences in float64;
error messages."""
import itertools

import numpy as np
import pytest

import diffsim as ds
import diffsim.nn.functional as F
from diffsim.testing import gradcheck, gradgradcheck

RNG = np.random.default_rng(1234)


def _leaf(a):
    return ds.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def _randn(*shape):
    return RNG.standard_normal(shape)


def _np(t):
    return t.detach().numpy()


# ====================================================================== naive references

def ref_conv2d(x, w, b, stride, padding, dilation, groups):
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    xp[:, :, ph:ph + H, pw:pw + W] = x
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((N, O, Ho, Wo))
    Og = O // groups
    for n, o, i, j in itertools.product(range(N), range(O), range(Ho), range(Wo)):
        g = o // Og
        s = 0.0
        for c, a, bb in itertools.product(range(Cg), range(kh), range(kw)):
            s += w[o, c, a, bb] * xp[n, g * Cg + c, i * sh + a * dh, j * sw + bb * dw]
        out[n, o, i, j] = s + (b[o] if b is not None else 0.0)
    return out


def ref_conv_transpose2d(x, w, stride, padding, output_padding, dilation, groups):
    """Scatter form: every input pixel adds w * x[n, c, i, j] into the output."""
    N, Cin, H, W = x.shape
    _, Cog, kh, kw = w.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    Ho = (H - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    Wo = (W - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    full = np.zeros((N, Cog * groups, Ho + 2 * ph + sh + dh * kh, Wo + 2 * pw + sw + dw * kw))
    Cig = Cin // groups
    for n, c, i, j in itertools.product(range(N), range(Cin), range(H), range(W)):
        g = c // Cig
        for o, a, bb in itertools.product(range(Cog), range(kh), range(kw)):
            full[n, g * Cog + o, i * sh + a * dh, j * sw + bb * dw] += x[n, c, i, j] * w[c, o, a, bb]
    return full[:, :, ph:ph + Ho, pw:pw + Wo]


def ref_max_pool2d(x, k, s, p):
    N, C, H, W = x.shape
    Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    out = np.full((N, C, Ho, Wo), -np.inf)
    for n, c, i, j in itertools.product(range(N), range(C), range(Ho), range(Wo)):
        for a, b in itertools.product(range(k), range(k)):
            h, w_ = i * s + a - p, j * s + b - p
            if 0 <= h < H and 0 <= w_ < W:
                out[n, c, i, j] = max(out[n, c, i, j], x[n, c, h, w_])
    return out


def ref_avg_pool2d(x, k, s, p, count_include_pad):
    N, C, H, W = x.shape
    Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    out = np.zeros((N, C, Ho, Wo))
    for n, c, i, j in itertools.product(range(N), range(C), range(Ho), range(Wo)):
        tot, cnt = 0.0, 0
        for a, b in itertools.product(range(k), range(k)):
            h, w_ = i * s + a - p, j * s + b - p
            if 0 <= h < H and 0 <= w_ < W:
                tot += x[n, c, h, w_]
                cnt += 1
        out[n, c, i, j] = tot / (k * k if count_include_pad else cnt)
    return out


def ref_adaptive_avg_pool2d(x, oh, ow):
    N, C, H, W = x.shape
    out = np.zeros((N, C, oh, ow))
    for i, j in itertools.product(range(oh), range(ow)):
        h0, h1 = (i * H) // oh, -(-((i + 1) * H) // oh)
        w0, w1 = (j * W) // ow, -(-((j + 1) * W) // ow)
        out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return out


def ref_bilinear_resize(x, oh, ow, align_corners):
    N, C, H, W = x.shape
    out = np.zeros((N, C, oh, ow))

    def src(d, n_in, n_out):
        if align_corners:
            return d * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        return max((d + 0.5) * n_in / n_out - 0.5, 0.0)
    for i, j in itertools.product(range(oh), range(ow)):
        y, xx = src(i, H, oh), src(j, W, ow)
        y0, x0 = min(int(np.floor(y)), H - 1), min(int(np.floor(xx)), W - 1)
        y1, x1 = min(y0 + 1, H - 1), min(x0 + 1, W - 1)
        ty, tx = y - y0, xx - x0
        out[:, :, i, j] = ((1 - ty) * (1 - tx) * x[:, :, y0, x0] + (1 - ty) * tx * x[:, :, y0, x1]
                           + ty * (1 - tx) * x[:, :, y1, x0] + ty * tx * x[:, :, y1, x1])
    return out


def ref_grid_sample_bilinear_zeros(x, grid, align_corners):
    N, C, H, W = x.shape
    _, Ho, Wo, _ = grid.shape
    out = np.zeros((N, C, Ho, Wo))

    def pix(n, yy, xx):
        if 0 <= yy < H and 0 <= xx < W:
            return x[n, :, yy, xx]
        return np.zeros(C)
    for n, i, j in itertools.product(range(N), range(Ho), range(Wo)):
        gx, gy = grid[n, i, j]
        if align_corners:
            px, py = (gx + 1) / 2 * (W - 1), (gy + 1) / 2 * (H - 1)
        else:
            px, py = ((gx + 1) * W - 1) / 2, ((gy + 1) * H - 1) / 2
        x0, y0 = int(np.floor(px)), int(np.floor(py))
        tx, ty = px - x0, py - y0
        out[n, :, i, j] = ((1 - tx) * (1 - ty) * pix(n, y0, x0) + tx * (1 - ty) * pix(n, y0, x0 + 1)
                           + (1 - tx) * ty * pix(n, y0 + 1, x0) + tx * ty * pix(n, y0 + 1, x0 + 1))
    return out


# ====================================================================== conv

CONV_CASES = [  # (C, O, H, W, k, stride, padding, dilation, groups)
    (3, 4, 6, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (4, 6, 7, 6, (3, 2), (2, 1), (1, 0), (1, 2), 2),
    (4, 4, 6, 6, (2, 2), (2, 2), (0, 1), (2, 1), 4),
    (2, 3, 5, 4, (1, 1), (1, 2), (0, 0), (1, 1), 1),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_naive_reference(case):
    C, O, H, W, k, s, p, d, g = case
    x, w, b = _randn(2, C, H, W), _randn(O, C // g, *k), _randn(O)
    y = F.conv2d(ds.tensor(x), ds.tensor(w), ds.tensor(b), s, p, d, g)
    np.testing.assert_allclose(y.numpy(), ref_conv2d(x, w, b, s, p, d, g), atol=1e-12)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_gradcheck(case):
    C, O, H, W, k, s, p, d, g = case
    x, w, b = _leaf(_randn(1, C, H, W)), _leaf(_randn(O, C // g, *k)), _leaf(_randn(O))
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, s, p, d, g), (x, w, b))


def test_conv2d_gradgradcheck():
    x, w, b = _leaf(_randn(1, 4, 5, 4)), _leaf(_randn(4, 2, 3, 2)), _leaf(_randn(4))
    gradgradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2), groups=2),
                  (x, w, b))


def test_conv_same_valid_padding():
    x, w = _randn(1, 2, 7, 6), _randn(3, 2, 4, 3)
    y = F.conv2d(ds.tensor(x), ds.tensor(w), padding="same")
    assert y.shape == (1, 3, 7, 6)
    # 'same' with an even kernel pads one more on the high side, as PyTorch
    xp = np.pad(x, ((0, 0), (0, 0), (1, 2), (1, 1)))
    np.testing.assert_allclose(y.numpy(), ref_conv2d(xp, w, None, (1, 1), (0, 0), (1, 1), 1), atol=1e-12)
    y = F.conv2d(ds.tensor(x), ds.tensor(w), padding="valid")
    assert y.shape == (1, 3, 4, 4)
    gradcheck(lambda x, w: F.conv2d(x, w, padding="same", dilation=2), (_leaf(x[:, :, :5, :5]), _leaf(w)))


def test_conv1d_conv3d_gradcheck_and_unbatched():
    x, w, b = _leaf(_randn(2, 4, 7)), _leaf(_randn(2, 2, 3)), _leaf(_randn(2))
    gradcheck(lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1, dilation=1, groups=2), (x, w, b))
    x3, w3 = _leaf(_randn(1, 2, 4, 3, 4)), _leaf(_randn(2, 2, 2, 2, 3))
    gradcheck(lambda x, w: F.conv3d(x, w, stride=(1, 2, 1), padding=(1, 0, 1)), (x3, w3))
    xb = _randn(3, 6, 5)
    y = F.conv2d(ds.tensor(xb), ds.tensor(_randn(2, 3, 3, 3)), padding=1)
    assert y.shape == (2, 6, 5)


@pytest.mark.parametrize("case", [  # (Cin, Cout, H, W, k, stride, padding, output_padding, dilation, groups)
    (3, 2, 3, 4, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 1),
    (4, 6, 3, 3, (2, 3), (1, 2), (0, 1), (0, 1), (2, 1), 2),
    (2, 2, 2, 3, (3, 2), (3, 1), (0, 0), (2, 0), (1, 1), 1),
])
def test_conv_transpose2d_reference_and_gradcheck(case):
    Cin, Cout, H, W, k, s, p, op, d, g = case
    x, w, b = _randn(2, Cin, H, W), _randn(Cin, Cout // g, *k), _randn(Cout)
    y = F.conv_transpose2d(ds.tensor(x), ds.tensor(w), ds.tensor(b), s, p, op, g, d)
    ref = ref_conv_transpose2d(x, w, s, p, op, d, g) + b[None, :, None, None]
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-12)
    gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, s, p, op, g, d), (_leaf(x[:1]), _leaf(w), _leaf(b)))


def test_conv_transpose_is_adjoint_of_conv():
    x, w = _randn(2, 4, 7, 6), _randn(6, 2, 3, 3)
    y = _randn(2, 6, 4, 3)
    cx = F.conv2d(ds.tensor(x), ds.tensor(w), stride=2, padding=1, groups=2).numpy()
    ty = F.conv_transpose2d(ds.tensor(y), ds.tensor(w), stride=2, padding=1, output_padding=(0, 1),
                            groups=2).numpy()
    assert ty.shape == x.shape
    np.testing.assert_allclose((cx * y).sum(), (x * ty).sum(), rtol=1e-12)


def test_conv_transpose_gradgradcheck_and_1d_3d():
    x, w = _leaf(_randn(1, 2, 3, 3)), _leaf(_randn(2, 3, 2, 2))
    gradgradcheck(lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1), (x, w))
    gradcheck(lambda x, w: F.conv_transpose1d(x, w, stride=2, padding=1, output_padding=1),
              (_leaf(_randn(2, 2, 4)), _leaf(_randn(2, 3, 3))))
    gradcheck(lambda x, w: F.conv_transpose3d(x, w, stride=2),
              (_leaf(_randn(1, 2, 2, 2, 2)), _leaf(_randn(2, 1, 2, 2, 2))))


def test_conv_float32_and_noncontiguous_input():
    x = ds.tensor(_randn(2, 8, 8, 3).astype(np.float32)).permute(0, 3, 1, 2)   # non-contiguous
    w = ds.tensor(_randn(4, 3, 3, 3).astype(np.float32))
    y = F.conv2d(x, w, padding=1)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), ref_conv2d(x.numpy().astype(np.float64), w.numpy().astype(np.float64),
                                                     None, (1, 1), (1, 1), (1, 1), 1), rtol=1e-4, atol=1e-4)


def test_conv_errors():
    x, w = ds.randn(2, 3, 8, 8), ds.randn(4, 3, 3, 3)
    with pytest.raises(RuntimeError, match=r"conv2d: input has 5 channels .*\[2, 5, 8, 8\].*\[4, 3, 3, 3\]"):
        F.conv2d(ds.randn(2, 5, 8, 8), w)
    with pytest.raises(RuntimeError, match=r"conv2d: expected a 3-D .* or 4-D .*shape \[8, 8\]"):
        F.conv2d(ds.randn(8, 8), w)
    with pytest.raises(RuntimeError, match=r"conv2d: weight must be 4-D, got weight of shape \[4, 3, 3\]"):
        F.conv2d(x, ds.randn(4, 3, 3))
    with pytest.raises(RuntimeError, match=r"bias must have shape \[4\]"):
        F.conv2d(x, w, ds.randn(3))
    with pytest.raises(RuntimeError, match=r"divisible by groups=2"):
        F.conv2d(ds.randn(2, 6, 8, 8), ds.randn(3, 3, 3, 3), groups=2)
    with pytest.raises(RuntimeError, match="same dtype"):
        F.conv2d(x, w.double())
    with pytest.raises(RuntimeError, match="larger than the padded input"):
        F.conv2d(ds.randn(1, 3, 2, 2), w)
    with pytest.raises(RuntimeError, match="'same' is not supported for strided"):
        F.conv2d(x, w, padding="same", stride=2)
    with pytest.raises(RuntimeError, match="conv_transpose2d: input has 4 channels"):
        F.conv_transpose2d(ds.randn(1, 4, 3, 3), ds.randn(3, 2, 3, 3))
    with pytest.raises(RuntimeError, match="output_padding"):
        F.conv_transpose2d(ds.randn(1, 3, 3, 3), ds.randn(3, 2, 3, 3), stride=2, output_padding=2)


def test_conv_matches_torch():
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    for (C, O, H, W, k, s, p, d, g) in CONV_CASES:
        x, w, b = _randn(2, C, H, W), _randn(O, C // g, *k), _randn(O)
        X, Wt, B = _leaf(x), _leaf(w), _leaf(b)
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        y = F.conv2d(X, Wt, B, s, p, d, g)
        ty = tF.conv2d(tx, tw, tb, s, p, d, g)
        np.testing.assert_allclose(_np(y), ty.detach().numpy(), atol=1e-12)
        gy = _randn(*y.shape)
        y.backward(ds.tensor(gy))
        ty.backward(torch.tensor(gy))
        for a, t in ((X, tx), (Wt, tw), (B, tb)):
            np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), atol=1e-11)
    x, w = _randn(2, 4, 5, 4), _randn(4, 3, 3, 2)
    y = F.conv_transpose2d(ds.tensor(x), ds.tensor(w), None, (2, 3), (1, 0), (1, 2), 2, (1, 2))
    ty = tF.conv_transpose2d(torch.tensor(x), torch.tensor(w), None, (2, 3), (1, 0), (1, 2), 2, (1, 2))
    np.testing.assert_allclose(y.numpy(), ty.numpy(), atol=1e-12)
    x3, w3 = _randn(1, 4, 4, 5, 3), _randn(2, 2, 2, 3, 2)
    np.testing.assert_allclose(F.conv3d(ds.tensor(x3), ds.tensor(w3), None, (2, 1, 1), 1, 1, 2).numpy(),
                               tF.conv3d(torch.tensor(x3), torch.tensor(w3), None, (2, 1, 1), 1, 1, 2).numpy(),
                               atol=1e-12)
    x1, w1 = _randn(2, 3, 9), _randn(4, 3, 4)
    np.testing.assert_allclose(F.conv1d(ds.tensor(x1), ds.tensor(w1), padding="same", dilation=2).numpy(),
                               tF.conv1d(torch.tensor(x1), torch.tensor(w1), padding="same", dilation=2).numpy(),
                               atol=1e-12)


# ====================================================================== pooling

def test_pool_reference():
    x = _randn(2, 3, 7, 6)
    np.testing.assert_allclose(F.max_pool2d(ds.tensor(x), 3, 2, 1).numpy(), ref_max_pool2d(x, 3, 2, 1))
    np.testing.assert_allclose(F.max_pool2d(ds.tensor(x), 2).numpy(), ref_max_pool2d(x, 2, 2, 0))
    for cip in (True, False):
        np.testing.assert_allclose(F.avg_pool2d(ds.tensor(x), 3, 2, 1, count_include_pad=cip).numpy(),
                                   ref_avg_pool2d(x, 3, 2, 1, cip), atol=1e-12)
    for o in ((3, 4), (7, 6), (4, 5), (1, 1)):
        np.testing.assert_allclose(F.adaptive_avg_pool2d(ds.tensor(x), o).numpy(),
                                   ref_adaptive_avg_pool2d(x, *o), atol=1e-12)


def test_max_pool_ties_route_to_first_and_indices():
    x = ds.tensor(np.ones((1, 1, 4, 4)), requires_grad=True)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(idx.numpy()[0, 0], [[0, 2], [8, 10]])
    y.sum().backward()
    g = np.zeros((4, 4))
    g[::2, ::2] = 1
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], g)


MAXPOOL_CASES = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                 dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=(2, 3), stride=1, dilation=(2, 1)),
                 dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)]


@pytest.mark.parametrize("kw", MAXPOOL_CASES)
def test_max_pool2d_gradcheck(kw):
    x = _leaf(RNG.permutation(70).reshape(1, 2, 5, 7) / 7.0)   # distinct values: no ties
    gradcheck(lambda x: F.max_pool2d(x, **kw), (x,))


def test_max_pool_1d_3d_adaptive_max_gradcheck_and_gradgrad():
    gradcheck(lambda x: F.max_pool1d(x, 3, 2, 1, ceil_mode=True), (_leaf(RNG.permutation(18).reshape(2, 1, 9)),))
    gradcheck(lambda x: F.max_pool3d(x, 2, 1), (_leaf(RNG.permutation(48).reshape(1, 2, 3, 4, 2)),))
    gradcheck(lambda x: F.adaptive_max_pool2d(x, (3, 4)), (_leaf(RNG.permutation(70).reshape(1, 2, 5, 7)),))
    gradgradcheck(lambda x: F.max_pool2d(x, 2, 1) ** 2, (_leaf(RNG.permutation(24).reshape(1, 1, 4, 6) / 5),))


AVGPOOL_CASES = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                 dict(kernel_size=3, stride=2, padding=1, count_include_pad=False, ceil_mode=True),
                 dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), divisor_override=4)]


@pytest.mark.parametrize("kw", AVGPOOL_CASES)
def test_avg_pool2d_gradcheck(kw):
    gradcheck(lambda x: F.avg_pool2d(x, **kw), (_leaf(_randn(1, 2, 5, 7)),))


def test_avg_adaptive_pool_gradcheck_and_gradgrad():
    gradcheck(lambda x: F.avg_pool1d(x, 3, 2, 1), (_leaf(_randn(2, 2, 7)),))
    gradcheck(lambda x: F.adaptive_avg_pool2d(x, (3, 2)), (_leaf(_randn(1, 2, 5, 7)),))
    gradgradcheck(lambda x: F.avg_pool2d(x, 2, 1) ** 2, (_leaf(_randn(1, 1, 3, 4)),))


def test_pool_matches_torch():
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    x = np.round(_randn(2, 3, 9, 8) * 2)      # many ties
    for kw in MAXPOOL_CASES + [dict(kernel_size=3, stride=1, padding=1, return_indices=True)]:
        X, tx = _leaf(x), torch.tensor(x, requires_grad=True)
        y, ty = F.max_pool2d(X, **kw), tF.max_pool2d(tx, **kw)
        if isinstance(y, tuple):
            np.testing.assert_array_equal(y[1].numpy(), ty[1].numpy())
            y, ty = y[0], ty[0]
        np.testing.assert_allclose(_np(y), ty.detach().numpy())
        g = _randn(*y.shape)
        y.backward(ds.tensor(g))
        ty.backward(torch.tensor(g))
        np.testing.assert_allclose(X.grad.numpy(), tx.grad.numpy(), atol=1e-12)
    x = _randn(2, 3, 9, 8)
    for kw in AVGPOOL_CASES + [dict(kernel_size=3, stride=2, ceil_mode=True)]:
        np.testing.assert_allclose(F.avg_pool2d(ds.tensor(x), **kw).numpy(),
                                   tF.avg_pool2d(torch.tensor(x), **kw).numpy(), atol=1e-12)
    for o in ((4, 3), (5, None), 1, (10, 11)):
        np.testing.assert_allclose(F.adaptive_avg_pool2d(ds.tensor(x), o).numpy(),
                                   tF.adaptive_avg_pool2d(torch.tensor(x), o).numpy(), atol=1e-12)
        a, ai = F.adaptive_max_pool2d(ds.tensor(x), o, return_indices=True)
        b, bi = tF.adaptive_max_pool2d(torch.tensor(x), o, return_indices=True)
        np.testing.assert_allclose(a.numpy(), b.numpy())
        np.testing.assert_array_equal(ai.numpy(), bi.numpy())


def test_pool_errors():
    with pytest.raises(RuntimeError, match=r"max_pool2d: expected a 3-D .* or 4-D .*shape \[4, 4\]"):
        F.max_pool2d(ds.randn(4, 4), 2)
    with pytest.raises(RuntimeError, match="at most half of the kernel"):
        F.max_pool2d(ds.randn(1, 1, 4, 4), 2, padding=2)
    with pytest.raises(RuntimeError, match="too small"):
        F.avg_pool2d(ds.randn(1, 1, 2, 2), 3)


# ====================================================================== interpolate

def test_interpolate_reference():
    x = _randn(2, 3, 4, 5)
    for oh, ow, ac in ((7, 9, False), (7, 9, True), (3, 2, False), (1, 1, True)):
        y = F.interpolate(ds.tensor(x), size=(oh, ow), mode="bilinear", align_corners=ac)
        np.testing.assert_allclose(y.numpy(), ref_bilinear_resize(x, oh, ow, ac), atol=1e-12)
    y = F.interpolate(ds.tensor(x), scale_factor=2, mode="nearest").numpy()
    np.testing.assert_array_equal(y, x.repeat(2, axis=2).repeat(2, axis=3))
    y = F.interpolate(ds.tensor(x), size=(3, 2), mode="nearest").numpy()     # floor(dst * in/out)
    np.testing.assert_array_equal(y, x[:, :, [0, 1, 2]][:, :, :, [0, 2]])


INTERP_CASES = [dict(size=(5, 7), mode="nearest"), dict(scale_factor=(1.5, 0.6), mode="nearest-exact"),
                dict(size=(6, 3), mode="bilinear", align_corners=False),
                dict(scale_factor=2, mode="bilinear", align_corners=True),
                dict(size=(5, 6), mode="bicubic", align_corners=False), dict(size=(2, 3), mode="area")]


@pytest.mark.parametrize("kw", INTERP_CASES)
def test_interpolate_gradcheck(kw):
    gradcheck(lambda x: F.interpolate(x, **kw), (_leaf(_randn(1, 2, 3, 4)),))


def test_interpolate_1d_3d_gradcheck():
    gradcheck(lambda x: F.interpolate(x, size=7, mode="linear"), (_leaf(_randn(2, 2, 4)),))
    gradcheck(lambda x: F.interpolate(x, size=(3, 2, 4), mode="trilinear", align_corners=True),
              (_leaf(_randn(1, 1, 2, 3, 2)),))
    gradcheck(lambda x: F.upsample(x, scale_factor=2), (_leaf(_randn(1, 1, 2, 2, 2)),))


def test_interpolate_matches_torch():
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    x = _randn(2, 3, 5, 7)
    cases = INTERP_CASES + [dict(scale_factor=1.7, mode="nearest"), dict(scale_factor=(2.3, 0.7), mode="bilinear"),
                            dict(scale_factor=(2.3, 0.7), mode="bilinear", recompute_scale_factor=True),
                            dict(size=(9, 4), mode="bicubic", align_corners=True)]
    for kw in cases:
        X, tx = _leaf(x), torch.tensor(x, requires_grad=True)
        y, ty = F.interpolate(X, **kw), tF.interpolate(tx, **kw)
        np.testing.assert_allclose(_np(y), ty.detach().numpy(), atol=1e-12)
        g = _randn(*y.shape)
        y.backward(ds.tensor(g))
        ty.backward(torch.tensor(g))
        np.testing.assert_allclose(X.grad.numpy(), tx.grad.numpy(), atol=1e-11)
    x3 = _randn(1, 2, 3, 4, 5)
    for kw in (dict(size=(4, 7, 3), mode="trilinear"), dict(scale_factor=2, mode="nearest")):
        np.testing.assert_allclose(F.interpolate(ds.tensor(x3), **kw).numpy(),
                                   tF.interpolate(torch.tensor(x3), **kw).numpy(), atol=1e-12)


def test_interpolate_errors():
    x = ds.randn(1, 2, 4, 4)
    with pytest.raises(RuntimeError, match="mode 'trilinear' needs 5-D input"):
        F.interpolate(x, scale_factor=2, mode="trilinear")
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        F.interpolate(x)
    with pytest.raises(ValueError, match="align_corners can only be set"):
        F.interpolate(x, scale_factor=2, align_corners=True)


# ====================================================================== grid_sample

def test_grid_sample_reference():
    x = _randn(2, 3, 4, 5)
    grid = RNG.uniform(-1.3, 1.3, (2, 3, 6, 2))
    for ac in (False, True):
        y = F.grid_sample(ds.tensor(x), ds.tensor(grid), align_corners=ac)
        np.testing.assert_allclose(y.numpy(), ref_grid_sample_bilinear_zeros(x, grid, ac), atol=1e-12)


def test_grid_sample_identity_grid_reproduces_input():
    x = _randn(1, 2, 5, 6)
    theta = ds.tensor(np.array([[[1.0, 0, 0], [0, 1.0, 0]]]))
    for ac in (False, True):
        grid = F.affine_grid(theta, (1, 2, 5, 6), align_corners=ac)
        for mode in ("bilinear", "nearest"):
            y = F.grid_sample(ds.tensor(x), grid, mode=mode, align_corners=ac)
            np.testing.assert_allclose(y.numpy(), x, atol=1e-12)


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_sample_gradcheck_2d(padding_mode, align_corners):
    x = _leaf(_randn(1, 2, 3, 4))
    # keep sample points away from pixel-grid lines, where the bilinear kink defeats finite differences
    g = RNG.uniform(-1.4, 1.4, (1, 3, 2, 2))
    g = _leaf(g)
    gradcheck(lambda x, g: F.grid_sample(x, g, "bilinear", padding_mode, align_corners), (x, g),
              eps=1e-7, atol=1e-5)
    gradcheck(lambda x: F.grid_sample(x, g.detach(), "nearest", padding_mode, align_corners), (x,))


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_grid_sample_gradcheck_3d(padding_mode):
    x = _leaf(_randn(1, 2, 2, 3, 3))
    g = _leaf(RNG.uniform(-1.3, 1.3, (1, 2, 2, 1, 3)))
    gradcheck(lambda x, g: F.grid_sample(x, g, "bilinear", padding_mode, False), (x, g), eps=1e-7)


def test_grid_sample_gradgradcheck():
    x = _leaf(_randn(1, 2, 3, 3))
    g = _leaf(RNG.uniform(-0.9, 0.9, (1, 2, 2, 2)))
    gradgradcheck(lambda x, g: F.grid_sample(x, g, align_corners=True), (x, g), eps=1e-7)


def test_affine_grid_gradcheck():
    gradcheck(lambda t: F.affine_grid(t, (2, 1, 3, 4)), (_leaf(_randn(2, 2, 3)),))
    gradcheck(lambda t: F.affine_grid(t, (1, 1, 2, 3, 2), align_corners=True), (_leaf(_randn(1, 3, 4)),))


def test_grid_sample_matches_torch():
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    for mode, pm, ac in itertools.product(("bilinear", "nearest"), ("zeros", "border", "reflection"),
                                          (False, True)):
        for xs, gs in (((2, 3, 5, 6), (2, 4, 3, 2)), ((1, 2, 3, 4, 5), (1, 2, 3, 2, 3))):
            x, g = _randn(*xs), RNG.uniform(-1.5, 1.5, gs)
            X, G = _leaf(x), _leaf(g)
            tx, tg = torch.tensor(x, requires_grad=True), torch.tensor(g, requires_grad=True)
            y, ty = F.grid_sample(X, G, mode, pm, ac), tF.grid_sample(tx, tg, mode, pm, ac)
            np.testing.assert_allclose(_np(y), ty.detach().numpy(), atol=1e-12)
            v = _randn(*y.shape)
            y.backward(ds.tensor(v))
            ty.backward(torch.tensor(v))
            np.testing.assert_allclose(X.grad.numpy(), tx.grad.numpy(), atol=1e-11)
            gg = G.grad.numpy() if G.grad is not None else np.zeros(g.shape)
            np.testing.assert_allclose(gg, tg.grad.numpy(), atol=1e-11)
    th = _randn(2, 2, 3)
    np.testing.assert_allclose(F.affine_grid(ds.tensor(th), (2, 1, 4, 5)).numpy(),
                               tF.affine_grid(torch.tensor(th), (2, 1, 4, 5), align_corners=False).numpy(),
                               atol=1e-12)


def test_grid_sample_errors():
    x = ds.randn(1, 2, 4, 4)
    with pytest.raises(RuntimeError, match=r"grid_sample: for a 4-D input .* got grid of shape \[1, 3, 3, 3\]"):
        F.grid_sample(x, ds.randn(1, 3, 3, 3))
    with pytest.raises(RuntimeError, match="same batch size"):
        F.grid_sample(x, ds.randn(2, 3, 3, 2))
    with pytest.raises(RuntimeError, match=r"expected a 4-D .* got input of shape \[2, 4, 4\]"):
        F.grid_sample(ds.randn(2, 4, 4), ds.randn(2, 3, 3, 2))
    with pytest.raises(ValueError, match="padding_mode"):
        F.grid_sample(x, ds.randn(1, 3, 3, 2), padding_mode="wrap")


def test_interpolate_gather_path_matches_dense_path(monkeypatch):
    """Large inputs blend by gathers instead of a dense interpolation matrix: same values
    and gradients."""
    from diffsim.nn.functional import sampling
    x = _randn(1, 2, 4, 5)
    cases = [dict(size=(7, 3), mode="bilinear"), dict(size=(6, 8), mode="bicubic", align_corners=True)]
    dense = [F.interpolate(ds.tensor(x), **kw).numpy() for kw in cases]
    monkeypatch.setattr(sampling, "_DENSE_MAX", 0)
    for kw, ref in zip(cases, dense):
        np.testing.assert_allclose(F.interpolate(ds.tensor(x), **kw).numpy(), ref, atol=1e-12)
        gradcheck(lambda x: F.interpolate(x, **kw), (_leaf(x),))
    gradcheck(lambda x: F.interpolate(x, size=(2, 3, 4), mode="trilinear"), (_leaf(_randn(1, 1, 3, 2, 2)),))
