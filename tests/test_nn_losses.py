"""Losses (``diffsim.nn.functional`` and the loss modules): values and gradients against
``torch.nn.functional`` (where installed) and against hand-written numpy references, every
reduction, gradcheck / gradgradcheck in float64, PyTorch's weight / ignore_index / label
smoothing semantics, K-dimensional cross entropy, stability at huge logits, error messages."""
from __future__ import annotations

import numpy as np
import pytest

import diffsim as ds
import diffsim.nn as nn
import diffsim.nn.functional as F
from diffsim.testing import assert_close, gradcheck, gradgradcheck

REDUCTIONS = ["mean", "sum", "none"]

# PyTorch's own notice about kl_div(reduction='mean')
pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss:UserWarning")


def _rng(seed=0):
    return np.random.default_rng(seed)


def _probs(rng, shape, axis=1):
    p = rng.random(shape) + 0.05
    return p / p.sum(axis=axis, keepdims=True)


def _leaf(a, grad=True):
    return ds.tensor(np.array(a), requires_grad=grad)


# --------------------------------------------------------------------------- the case table
# name -> (diffsim call, torch call, inputs(rng) -> list of arrays, which inputs get a gradient)
# calls take (F, *tensors, reduction) so the same lambda serves both libraries

def _w(lib, a):
    return lib.tensor(np.asarray(a))


def _cases():
    C = 4
    t = np.array([0, 3, -100, 2, 1, 3])           # one ignored target
    wt = np.array([0.5, 2.0, 1.0, 1.5])
    tk = np.array([[[0, 1], [2, 3], [1, 1]], [[3, 0], [-100, 2], [0, 0]]])   # [2, 3, 2]
    q = lambda r: _probs(r, (6, C))  # noqa: E731
    return {
        "mse": (lambda f, lib, x, y, red: f.mse_loss(x, y, reduction=red),
                lambda r: [r.standard_normal((3, 5)), r.standard_normal((3, 5))], (0, 1)),
        "l1": (lambda f, lib, x, y, red: f.l1_loss(x, y, reduction=red),
               lambda r: [r.standard_normal((3, 5)), r.standard_normal((3, 5))], (0, 1)),
        "smooth_l1": (lambda f, lib, x, y, red: f.smooth_l1_loss(x, y, reduction=red, beta=0.6),
                      lambda r: [r.standard_normal((3, 5)), r.standard_normal((3, 5))], (0, 1)),
        "smooth_l1_beta0": (lambda f, lib, x, y, red: f.smooth_l1_loss(x, y, reduction=red, beta=0.0),
                            lambda r: [r.standard_normal((3, 5)), r.standard_normal((3, 5))], (0, 1)),
        "huber": (lambda f, lib, x, y, red: f.huber_loss(x, y, reduction=red, delta=0.7),
                  lambda r: [2 * r.standard_normal((3, 5)), r.standard_normal((3, 5))], (0, 1)),
        "ce": (lambda f, lib, x, red: f.cross_entropy(x, _w(lib, t), reduction=red),
               lambda r: [r.standard_normal((6, C))], (0,)),
        "ce_weight_ls": (lambda f, lib, x, red: f.cross_entropy(x, _w(lib, t), weight=_w(lib, wt),
                                                                reduction=red, label_smoothing=0.15),
                         lambda r: [r.standard_normal((6, C))], (0,)),
        "ce_kdim": (lambda f, lib, x, red: f.cross_entropy(x, _w(lib, tk), weight=_w(lib, wt),
                                                           reduction=red, label_smoothing=0.1),
                    lambda r: [r.standard_normal((2, C, 3, 2))], (0,)),
        "ce_ignore3": (lambda f, lib, x, red: f.cross_entropy(x, _w(lib, np.where(t < 0, 3, t)),
                                                              ignore_index=3, reduction=red),
                       lambda r: [r.standard_normal((6, C))], (0,)),
        "ce_1d": (lambda f, lib, x, red: f.cross_entropy(x, _w(lib, np.array(2)), reduction=red),
                  lambda r: [r.standard_normal(C)], (0,)),
        "ce_probs": (lambda f, lib, x, y, red: f.cross_entropy(x, y, weight=_w(lib, wt), reduction=red,
                                                               label_smoothing=0.2),
                     lambda r: [r.standard_normal((6, C)), q(r)], (0, 1)),
        "ce_probs_kdim": (lambda f, lib, x, y, red: f.cross_entropy(x, y, reduction=red),
                          lambda r: [r.standard_normal((2, C, 3)), _probs(r, (2, C, 3))], (0, 1)),
        "nll": (lambda f, lib, x, red: f.nll_loss(x, _w(lib, t), weight=_w(lib, wt), reduction=red),
                lambda r: [np.log(q(r))], (0,)),
        "nll_kdim": (lambda f, lib, x, red: f.nll_loss(x, _w(lib, tk), reduction=red),
                     lambda r: [np.log(_probs(r, (2, C, 3, 2)))], (0,)),
        "bce": (lambda f, lib, x, y, red: f.binary_cross_entropy(x, y, weight=_w(lib, wt), reduction=red),
                lambda r: [0.05 + 0.9 * r.random((3, C)), r.random((3, C))], (0, 1)),
        "bce_logits": (lambda f, lib, x, y, red: f.binary_cross_entropy_with_logits(x, y, reduction=red),
                       lambda r: [3 * r.standard_normal((3, C)), r.random((3, C))], (0, 1)),
        "bce_logits_w": (lambda f, lib, x, y, red: f.binary_cross_entropy_with_logits(
            x, y, weight=_w(lib, wt), pos_weight=_w(lib, wt[::-1].copy()), reduction=red),
            lambda r: [3 * r.standard_normal((3, C)), r.random((3, C))], (0, 1)),
        "kl_div": (lambda f, lib, x, y, red: f.kl_div(x, y, reduction=red),
                   lambda r: [np.log(q(r)), q(r)], (0, 1)),
        "kl_div_log_target": (lambda f, lib, x, y, red: f.kl_div(x, y, reduction=red, log_target=True),
                              lambda r: [np.log(q(r)), np.log(q(r))], (0, 1)),
    }


CASES = _cases()


def _run(case, lib, F_, arrays, red, rg):
    call, _, grads = CASES[case]
    ts = [lib.tensor(a, requires_grad=(i in grads and rg)) for i, a in enumerate(arrays)]
    return call(F_, lib, *ts, red), ts


@pytest.mark.parametrize("red", REDUCTIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_against_torch(case, red):
    torch = pytest.importorskip("torch")
    TF = torch.nn.functional
    rng = _rng(1)
    arrays = CASES[case][1](rng)
    out, ts = _run(case, ds, F, arrays, red, True)
    out_t, ts_t = _run(case, torch, TF, arrays, red, True)
    assert out.shape == tuple(out_t.shape)
    assert_close(out.detach(), out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(out.shape)
    out.backward(ds.tensor(g))
    out_t.backward(torch.tensor(g))
    for a, b in zip(ts, ts_t):
        if b.requires_grad:
            assert_close(a.grad, b.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_kl_div_batchmean_against_torch():
    torch = pytest.importorskip("torch")
    rng = _rng(2)
    lp, q = np.log(_probs(rng, (5, 3))), _probs(rng, (5, 3))
    for lt in (False, True):
        qq = np.log(q) if lt else q
        a = F.kl_div(ds.tensor(lp), ds.tensor(qq), reduction="batchmean", log_target=lt)
        b = torch.nn.functional.kl_div(torch.tensor(lp), torch.tensor(qq), reduction="batchmean",
                                       log_target=lt)
        assert_close(a, b.numpy(), rtol=1e-12, atol=1e-14)


def test_distances_against_torch():
    torch = pytest.importorskip("torch")
    rng = _rng(3)
    a, b = rng.standard_normal((4, 5)), rng.standard_normal((1, 5))
    assert_close(F.cosine_similarity(ds.tensor(a), ds.tensor(b)),
                 torch.nn.functional.cosine_similarity(torch.tensor(a), torch.tensor(b)).numpy())
    assert_close(F.cosine_similarity(ds.tensor(a), ds.tensor(b), dim=0),
                 torch.nn.functional.cosine_similarity(torch.tensor(a), torch.tensor(b), dim=0).numpy())
    for p in (1, 2, 3):
        assert_close(F.pairwise_distance(ds.tensor(a), ds.tensor(b), p=p),
                     torch.nn.functional.pairwise_distance(torch.tensor(a), torch.tensor(b), p=p).numpy())


def test_float32_against_torch():
    torch = pytest.importorskip("torch")
    rng = _rng(4)
    x = rng.standard_normal((8, 10)).astype(np.float32)
    t = rng.integers(0, 10, 8)
    a = ds.tensor(x, requires_grad=True)
    b = torch.tensor(x, requires_grad=True)
    la = F.cross_entropy(a, ds.tensor(t), label_smoothing=0.1)
    lb = torch.nn.functional.cross_entropy(b, torch.tensor(t), label_smoothing=0.1)
    assert la.dtype == ds.float32
    la.backward()
    lb.backward()
    assert_close(la.detach(), lb.detach().numpy())
    assert_close(a.grad, b.grad.numpy())


# --------------------------------------------------------------------------- numpy references

def _np_log_softmax(x, axis=1):
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def _np_reduce(loss, red, denom=None):
    if red == "none":
        return loss
    if red == "sum":
        return loss.sum()
    return loss.sum() / (loss.size if denom is None else denom)


@pytest.mark.parametrize("red", REDUCTIONS)
def test_cross_entropy_numpy_reference(red):
    rng = _rng(5)
    N, C, ls = 7, 5, 0.2
    x = rng.standard_normal((N, C))
    t = rng.integers(0, C, N)
    t[2] = -100
    w = rng.random(C) + 0.5
    lp = _np_log_softmax(x)
    valid = t != -100
    tt = np.where(valid, t, 0)
    wt = w[tt] * valid
    nll = -lp[np.arange(N), tt] * wt
    smooth = -(lp * w).sum(1) * valid
    loss = (1 - ls) * nll + ls / C * smooth
    expected = _np_reduce(loss, red, wt.sum())
    xt = _leaf(x)
    out = F.cross_entropy(xt, ds.tensor(t), weight=ds.tensor(w), reduction=red, label_smoothing=ls)
    assert_close(out.detach(), expected, rtol=1e-12, atol=1e-14)
    # gradient of the sum of the unreduced loss: ((1-ls) w_t + ls/C sum(w)) p - (1-ls) w_t onehot - ls/C w
    p = np.exp(lp)
    onehot = np.eye(C)[tt]
    grad = (((1 - ls) * wt + ls / C * w.sum() * valid)[:, None] * p - (1 - ls) * wt[:, None] * onehot
            - ls / C * w[None] * valid[:, None])
    if red == "mean":
        grad = grad / wt.sum()
    out.sum().backward()
    assert_close(xt.grad, grad, rtol=1e-10, atol=1e-12)


def test_nll_and_mse_numpy_reference():
    rng = _rng(6)
    lp = _np_log_softmax(rng.standard_normal((5, 3)))
    t = np.array([0, 2, 1, 1, 0])
    w = np.array([1.0, 3.0, 0.5])
    out = F.nll_loss(ds.tensor(lp), ds.tensor(t), weight=ds.tensor(w))
    assert_close(out, -(lp[np.arange(5), t] * w[t]).sum() / w[t].sum(), rtol=1e-12)
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    xt = _leaf(x)
    F.mse_loss(xt, ds.tensor(y)).backward()
    assert_close(xt.grad, 2 * (x - y) / x.size, rtol=1e-12)
    assert_close(F.mse_loss(ds.tensor(x), ds.tensor(y), reduction="sum"), ((x - y) ** 2).sum())


def test_bce_numpy_reference():
    rng = _rng(7)
    x = rng.standard_normal((4, 3)) * 4
    y = rng.random((4, 3))
    pw = np.array([0.5, 2.0, 3.0])
    w = rng.random((4, 3))
    sig = 1 / (1 + np.exp(-x))
    expected = -w * (pw * y * np.log(sig) + (1 - y) * np.log(1 - sig))
    xt, yt = _leaf(x), _leaf(y)
    out = F.binary_cross_entropy_with_logits(xt, yt, weight=ds.tensor(w), pos_weight=ds.tensor(pw),
                                             reduction="none")
    assert_close(out.detach(), expected, rtol=1e-10)
    out.sum().backward()
    assert_close(xt.grad, w * ((1 - y) * sig - pw * y * (1 - sig)), rtol=1e-10, atol=1e-14)
    assert_close(yt.grad, w * (-pw * np.log(sig) + np.log(1 - sig)), rtol=1e-10)
    p = sig
    out = F.binary_cross_entropy(ds.tensor(p), ds.tensor(y), reduction="mean")
    assert_close(out, np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))), rtol=1e-10)


def test_kl_div_and_robust_numpy_reference():
    rng = _rng(8)
    lp = _np_log_softmax(rng.standard_normal((3, 4)))
    q = _probs(rng, (3, 4))
    q[0, 1] = 0.0                                      # 0 log 0 = 0
    out = F.kl_div(ds.tensor(lp), ds.tensor(q), reduction="sum")
    ref = np.where(q > 0, q * np.log(np.where(q > 0, q, 1)), 0) - q * lp
    assert_close(out, ref.sum(), rtol=1e-12)
    assert_close(F.kl_div(ds.tensor(lp), ds.tensor(q), reduction="batchmean"), ref.sum() / 3, rtol=1e-12)
    d = rng.standard_normal(10) * 2
    b, dl = 0.8, 1.3
    ad = np.abs(d)
    assert_close(F.smooth_l1_loss(ds.tensor(d), ds.zeros(10, dtype=ds.float64), reduction="none", beta=b),
                 np.where(ad < b, 0.5 * d ** 2 / b, ad - 0.5 * b), rtol=1e-12)
    assert_close(F.huber_loss(ds.tensor(d), ds.zeros(10, dtype=ds.float64), reduction="none", delta=dl),
                 np.where(ad < dl, 0.5 * d ** 2, dl * (ad - 0.5 * dl)), rtol=1e-12)


# --------------------------------------------------------------------------- gradcheck

@pytest.mark.parametrize("case", sorted(CASES))
def test_gradcheck(case):
    call, make, grads = CASES[case]
    arrays = make(_rng(9))
    for red in ("mean", "none"):
        ts = [ds.tensor(a, requires_grad=i in grads) for i, a in enumerate(arrays)]
        assert gradcheck(lambda *a: call(F, ds, *a, red), tuple(ts))


@pytest.mark.parametrize("case", ["mse", "ce", "ce_weight_ls", "ce_kdim", "ce_probs", "nll",
                                  "bce_logits", "bce_logits_w", "bce"])
def test_gradgradcheck(case):
    call, make, grads = CASES[case]
    arrays = make(_rng(10))
    for red in ("mean", "none"):
        ts = [ds.tensor(a, requires_grad=i in grads) for i, a in enumerate(arrays)]
        assert gradgradcheck(lambda *a: call(F, ds, *a, red), tuple(ts))


def test_distances_gradcheck():
    rng = _rng(11)
    a, b = _leaf(rng.standard_normal((3, 4))), _leaf(rng.standard_normal((3, 4)))
    assert gradcheck(lambda u, v: F.cosine_similarity(u, v), (a, b))
    assert gradcheck(lambda u, v: F.pairwise_distance(u, v), (a, b))


# --------------------------------------------------------------------------- semantics

def test_weighted_mean_and_ignore_index():
    rng = _rng(12)
    x = rng.standard_normal((6, 3))
    t = np.array([0, 1, 2, -100, 1, 7])
    w = np.array([1.0, 2.0, 4.0])
    xt = _leaf(x)
    # 7 is out of range unless it is the ignore_index
    loss = F.cross_entropy(xt, ds.tensor(np.where(t == -100, 0, t)), weight=ds.tensor(w),
                           ignore_index=7, reduction="none")
    assert loss.detach().numpy()[5] == 0.0
    with pytest.raises(IndexError, match="target value 7"):
        F.cross_entropy(xt, ds.tensor(t), weight=ds.tensor(w))
    t2 = np.array([0, 1, 2, -100, 1, -100])
    mean = F.cross_entropy(xt, ds.tensor(t2), weight=ds.tensor(w))
    per = F.cross_entropy(xt, ds.tensor(t2), weight=ds.tensor(w), reduction="none").detach().numpy()
    valid = t2 != -100
    assert_close(mean.detach(), per.sum() / w[t2[valid]].sum(), rtol=1e-12)
    mean.backward()
    assert np.all(xt.grad.numpy()[~valid] == 0)
    # every target ignored: 'mean' is 0/0 = nan (as PyTorch), 'sum' is 0, the gradient is finite-free
    all_ign = ds.full((6,), -100, dtype=ds.int64)
    assert np.isnan(F.cross_entropy(ds.tensor(x), all_ign).item())
    assert F.cross_entropy(ds.tensor(x), all_ign, reduction="sum").item() == 0.0
    assert F.nll_loss(ds.tensor(x), all_ign, reduction="sum").item() == 0.0


def test_label_smoothing_equals_smoothed_probabilities():
    rng = _rng(13)
    x = rng.standard_normal((5, 4))
    t = rng.integers(0, 4, 5)
    ls = 0.3
    q = np.eye(4)[t] * (1 - ls) + ls / 4
    a = F.cross_entropy(ds.tensor(x), ds.tensor(t), label_smoothing=ls)
    b = F.cross_entropy(ds.tensor(x), ds.tensor(q))
    assert_close(a, b, rtol=1e-12)
    # and probabilities with smoothing smooth the probabilities
    c = F.cross_entropy(ds.tensor(x), ds.tensor(np.eye(4)[t]), label_smoothing=ls)
    assert_close(c, b, rtol=1e-12)


def test_kdim_cross_entropy_equals_flattened():
    rng = _rng(14)
    x = rng.standard_normal((2, 3, 4, 5))
    t = rng.integers(0, 3, (2, 4, 5))
    t[0, 1, 2] = -100
    w = np.array([0.3, 1.0, 2.0])
    flat_x = np.moveaxis(x, 1, -1).reshape(-1, 3)
    for red in ("mean", "sum"):
        a = F.cross_entropy(ds.tensor(x), ds.tensor(t), weight=ds.tensor(w), reduction=red,
                            label_smoothing=0.1)
        b = F.cross_entropy(ds.tensor(flat_x), ds.tensor(t.reshape(-1)), weight=ds.tensor(w),
                            reduction=red, label_smoothing=0.1)
        assert_close(a, b, rtol=1e-12)
    none = F.cross_entropy(ds.tensor(x), ds.tensor(t), reduction="none")
    assert none.shape == (2, 4, 5)


def test_cross_entropy_equals_log_softmax_nll():
    rng = _rng(15)
    x = _leaf(rng.standard_normal((6, 5)))
    t = ds.tensor(rng.integers(0, 5, 6))
    a = F.cross_entropy(x, t)
    (ga,) = ds.autograd.grad(a, x)
    b = F.nll_loss(ds.log_softmax(x, 1), t)
    (gb,) = ds.autograd.grad(b, x)
    assert_close(a, b, rtol=1e-12)
    assert_close(ga, gb, rtol=1e-12)


def test_stability_at_huge_logits():
    x = _leaf([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 0.0], [0.0, 0.0, 0.0]])
    t = ds.tensor([0, 0, 2])
    loss = F.cross_entropy(x, t, reduction="none")
    assert_close(loss.detach(), [0.0, 2000.0, np.log(3)], rtol=1e-12)
    loss.sum().backward()
    g = x.grad.numpy()
    assert np.all(np.isfinite(g))
    assert_close(g[1], [-1.0, 1.0, 0.0], atol=1e-12)
    x32 = ds.tensor([[1000.0, -1000.0], [-1000.0, 1000.0]], dtype=ds.float32, requires_grad=True)
    l32 = F.cross_entropy(x32, ds.tensor([1, 1]), label_smoothing=0.1)
    l32.backward()
    assert np.isfinite(l32.item()) and np.all(np.isfinite(x32.grad.numpy()))
    z = _leaf([1000.0, -1000.0, 1000.0, -1000.0, 0.0])
    y = ds.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    out = F.binary_cross_entropy_with_logits(z, y, pos_weight=ds.tensor(2.0), reduction="none")
    assert_close(out.detach(), [1000.0, 2000.0, 0.0, 0.0, 2 * np.log(2)], rtol=1e-12, atol=1e-12)
    out.sum().backward()
    assert_close(z.grad, [1.0, -2.0, 0.0, 0.0, -1.0], atol=1e-12)
    # binary_cross_entropy clamps its logs to >= -100: a certain wrong answer costs 100
    p = _leaf([0.0, 1.0, 0.0, 1.0])
    out = F.binary_cross_entropy(p, ds.tensor([1.0, 0.0, 0.0, 1.0]), reduction="none")
    assert_close(out.detach(), [100.0, 100.0, 0.0, 0.0])
    out.sum().backward()
    assert np.all(np.isfinite(p.grad.numpy()))


def test_empty_batch_and_1d_input():
    out = F.cross_entropy(ds.zeros(0, 3, dtype=ds.float64), ds.zeros(0, dtype=ds.int64))
    assert np.isnan(out.item())
    assert F.cross_entropy(ds.zeros(0, 3), ds.zeros(0, dtype=ds.int64), reduction="none").shape == (0,)
    x = _leaf([1.0, 2.0, 3.0])
    out = F.cross_entropy(x, ds.tensor(1), reduction="none")
    assert out.shape == ()
    assert_close(out.detach(), -_np_log_softmax(np.array([1.0, 2.0, 3.0]), 0)[1], rtol=1e-12)
    assert gradcheck(lambda a: F.cross_entropy(a, ds.tensor(1)), (x,))


def test_mse_broadcast_warns():
    x = _leaf(np.ones((2, 3)))
    with pytest.warns(UserWarning, match="mse_loss: using a target size"):
        out = F.mse_loss(x, ds.zeros(3, dtype=ds.float64))
    assert_close(out.detach(), 1.0)


# --------------------------------------------------------------------------- errors

def test_errors():
    x = ds.randn(4, 3)
    with pytest.raises(IndexError, match=r"cross_entropy: target value 5 is out of bounds for 3 classes"):
        F.cross_entropy(x, ds.tensor([0, 1, 5, 1]))
    with pytest.raises(IndexError, match=r"nll_loss: target value -1"):
        F.nll_loss(x, ds.tensor([0, 1, -1, 1]))
    with pytest.raises(ValueError, match=r"cross_entropy: expected target of shape \[4\] for input of "
                                         r"shape \[4, 3\].*got target of shape \[3\]"):
        F.cross_entropy(x, ds.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"cross_entropy: a floating target.*\[4, 3\], got \[4\]"):
        F.cross_entropy(x, ds.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(TypeError, match=r"cross_entropy: target must hold class indices.*bool"):
        F.cross_entropy(x, ds.tensor([True, False, True, True]))
    with pytest.raises(TypeError, match=r"nll_loss: target must hold class indices.*float32"):
        F.nll_loss(x, ds.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"cross_entropy: weight should be .*shape \[3\], got shape \[4\]"):
        F.cross_entropy(x, ds.tensor([0, 1, 2, 1]), weight=ds.ones(4))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, ds.tensor([0, 1, 2, 1]), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"cross_entropy: reduction must be one of"):
        F.cross_entropy(x, ds.tensor([0, 1, 2, 1]), reduction="avg")
    with pytest.raises(ValueError, match=r"kl_div: reduction must be one of .*'batchmean'"):
        F.kl_div(x, x, reduction="batch")
    with pytest.raises(TypeError, match=r"cross_entropy: input must be a floating-point Tensor"):
        F.cross_entropy(ds.tensor([[1, 2]]), ds.tensor([0]))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: all elements of input should be "
                                         r"between 0 and 1"):
        F.binary_cross_entropy(ds.tensor([0.5, 1.5]), ds.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: .*target of shape \[3\].*\[2\]"):
        F.binary_cross_entropy(ds.tensor([0.5, 0.2]), ds.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: pos_weight of shape \[4\]"):
        F.binary_cross_entropy_with_logits(x, ds.ones(4, 3), pos_weight=ds.ones(4))
    with pytest.raises(ValueError, match=r"mse_loss: target of shape \[5\] cannot be broadcast"):
        F.mse_loss(x, ds.ones(5))
    with pytest.raises(ValueError, match="HuberLoss|huber_loss"):
        F.huber_loss(x, x, delta=0)


# --------------------------------------------------------------------------- modules

MODULES = [
    (nn.MSELoss, {}, "mse"), (nn.L1Loss, {}, "l1"), (nn.SmoothL1Loss, {"beta": 0.6}, "smooth_l1"),
    (nn.HuberLoss, {"delta": 0.7}, "huber"), (nn.KLDivLoss, {}, "kl_div"),
    (nn.KLDivLoss, {"log_target": True}, "kl_div_log_target"),
    (nn.BCEWithLogitsLoss, {}, "bce_logits"),
]


@pytest.mark.parametrize("cls,kw,case", MODULES)
def test_modules_match_functional(cls, kw, case):
    call, make, _ = CASES[case]
    arrays = [ds.tensor(a) for a in make(_rng(16))]
    for red in REDUCTIONS:
        m = cls(reduction=red, **kw)
        assert_close(m(*arrays), call(F, ds, *arrays, red))


def test_weighted_modules():
    rng = _rng(17)
    x = ds.tensor(rng.standard_normal((5, 3)))
    t = ds.tensor(np.array([0, 2, -100, 1, 1]))
    w = ds.tensor([0.2, 1.0, 3.0], dtype=ds.float64)
    m = nn.CrossEntropyLoss(weight=w, label_smoothing=0.1, reduction="sum")
    assert_close(m(x, t), F.cross_entropy(x, t, weight=w, label_smoothing=0.1, reduction="sum"))
    assert [n for n, _ in m.named_buffers()] == ["weight"] and list(m.parameters()) == []
    assert list(m.state_dict()) == ["weight"]
    assert repr(m) == "CrossEntropyLoss(weight=[3], reduction='sum', label_smoothing=0.1)"
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"
    assert repr(nn.KLDivLoss(reduction="batchmean")) == "KLDivLoss(reduction='batchmean')"
    assert repr(nn.NLLLoss(ignore_index=0)) == "NLLLoss(ignore_index=0)"
    m.to(ds.float32)
    assert m.weight.dtype == ds.float32
    nll = nn.NLLLoss(weight=w)
    lp = ds.log_softmax(x, 1)
    assert_close(nll(lp, t), F.nll_loss(lp, t, weight=w))
    p = ds.sigmoid(x)
    y = ds.tensor(rng.random((5, 3)))
    assert_close(nn.BCELoss(weight=w)(p, y), F.binary_cross_entropy(p, y, weight=w))
    bl = nn.BCEWithLogitsLoss(weight=w, pos_weight=ds.tensor([1.0, 2.0, 3.0], dtype=ds.float64))
    assert sorted(bl.state_dict()) == ["pos_weight", "weight"]
    assert_close(bl(x, y), F.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=bl.pos_weight))
    assert repr(bl) == "BCEWithLogitsLoss(weight=[3], pos_weight=[3])"
    with pytest.raises(ValueError, match="MSELoss: reduction must be one of"):
        nn.MSELoss(reduction="avg")
    with pytest.warns(UserWarning, match="size_average"):
        assert nn.MSELoss(size_average=False).reduction == "sum"


def test_module_against_torch_training_step():
    torch = pytest.importorskip("torch")
    rng = _rng(18)
    x = rng.standard_normal((8, 5, 3))
    t = rng.integers(0, 5, (8, 3))
    w = rng.random(5) + 0.5
    a = ds.tensor(x, requires_grad=True)
    b = torch.tensor(x, requires_grad=True)
    la = nn.CrossEntropyLoss(weight=ds.tensor(w), ignore_index=1, label_smoothing=0.05)(a, ds.tensor(t))
    lb = torch.nn.CrossEntropyLoss(weight=torch.tensor(w), ignore_index=1, label_smoothing=0.05)(
        b, torch.tensor(t))
    la.backward()
    lb.backward()
    assert_close(la.detach(), lb.detach().numpy(), rtol=1e-12)
    assert_close(a.grad, b.grad.numpy(), rtol=1e-10, atol=1e-14)
