"""diffsim.nn layers, functional forms, Module API, init and utils.

Each layer's forward is checked against a numpy reference and (where installed) against
torch with the same weights, its gradients in float64 against finite differences
(``gradcheck``) and against torch's; train/eval behaviour (BatchNorm running stats over
several steps, Dropout), the Module API, nn.init distributions and nn.utils.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import erf as np_erf

import diffsim as ds
import diffsim.nn as nn
import diffsim.nn.functional as F
from diffsim.testing import gradcheck, gradgradcheck

RNG = np.random.default_rng(1234)


def t64(a, rg=False):
    return ds.tensor(np.asarray(a, dtype=np.float64), requires_grad=rg)


def npy(t):
    return t.detach().numpy()


def _flat(out):
    if isinstance(out, (tuple, list)):
        res = []
        for o in out:
            res.extend(_flat(o))
        return res
    return [] if out is None else [out]


def check_layer_gradcheck(m, *inputs, params=True, atol=1e-5):
    """gradcheck of a float64 module w.r.t. its floating inputs and its parameters."""
    m.double()
    ins = tuple(inputs)
    ps = tuple(p for p in m.parameters() if p.requires_grad) if params else ()
    n = len(ins)
    return gradcheck(lambda *a: m(*a[:n]), ins + ps, atol=atol)


def check_against_torch(m, tm, *inputs, atol=1e-9, grads=True, call=None, load=True):
    """Copy m's state into torch module tm (unless not ``load``); compare outputs, input grads
    and parameter grads."""
    torch = pytest.importorskip("torch")
    m.double()
    tm.double()
    m.zero_grad()
    tm.zero_grad()
    if load:
        tm.load_state_dict({k: torch.tensor(npy(v)) for k, v in m.state_dict().items()})
    call = call or (lambda mod, *xs: mod(*xs))
    xs = [x if not isinstance(x, np.ndarray) else t64(x, rg=x.dtype.kind == "f") for x in inputs]
    txs = []
    for x in xs:
        tx = torch.tensor(npy(x) if isinstance(x, ds.Tensor) else x)
        if isinstance(x, ds.Tensor) and x.requires_grad:
            tx.requires_grad_(True)
        txs.append(tx)
    out = _flat(call(m, *xs))
    tout = _flat(call(tm, *txs))
    assert len(out) == len(tout)
    for o, to in zip(out, tout):
        assert tuple(o.shape) == tuple(to.shape)
        np.testing.assert_allclose(npy(o), to.detach().numpy(), atol=atol, rtol=1e-7)
    if not grads:
        return out
    cot = [RNG.standard_normal(o.shape) for o in out]
    loss = sum((o * t64(c)).sum() for o, c in zip(out, cot) if o.requires_grad)
    tloss = sum((to * torch.tensor(c)).sum() for to, c in zip(tout, cot) if to.requires_grad)
    loss.backward()
    tloss.backward()
    for x, tx in zip(xs, txs):
        if isinstance(x, ds.Tensor) and x.requires_grad:
            np.testing.assert_allclose(npy(x.grad), tx.grad.numpy(), atol=atol, rtol=1e-7)
    tparams = dict(tm.named_parameters())
    for name, p in m.named_parameters():
        tg = tparams[name].grad
        if p.grad is None:
            assert tg is None or np.allclose(tg.numpy(), 0), name
        else:
            np.testing.assert_allclose(npy(p.grad), tg.numpy(), atol=atol, rtol=1e-7, err_msg=name)
    return out


# ====================================================================== activations

def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _np_softplus(x, beta=1.0, threshold=20.0):
    return np.where(beta * x > threshold, x, np.logaddexp(0, beta * x) / beta)


_A, _S = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
ACTS = [
    ("ReLU", (), lambda x: np.maximum(x, 0)),
    ("LeakyReLU", (0.2,), lambda x: np.where(x > 0, x, 0.2 * x)),
    ("ELU", (0.7,), lambda x: np.where(x > 0, x, 0.7 * np.expm1(x))),
    ("SELU", (), lambda x: _S * np.where(x > 0, x, _A * np.expm1(x))),
    ("CELU", (1.5,), lambda x: np.maximum(x, 0) + np.minimum(0, 1.5 * np.expm1(x / 1.5))),
    ("GELU", (), lambda x: 0.5 * x * (1 + np_erf(x / np.sqrt(2)))),
    ("GELU", ("tanh",), lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))),
    ("SiLU", (), lambda x: x * _np_sigmoid(x)),
    ("Mish", (), lambda x: x * np.tanh(np.logaddexp(0, x))),
    ("Softplus", (), _np_softplus),
    ("Softplus", (2.0, 1.0), lambda x: _np_softplus(x, 2.0, 1.0)),
    ("Sigmoid", (), _np_sigmoid),
    ("Tanh", (), np.tanh),
    ("Hardtanh", (-0.5, 0.8), lambda x: np.clip(x, -0.5, 0.8)),
    ("ReLU6", (), lambda x: np.clip(x, 0, 6)),
    ("Hardsigmoid", (), lambda x: np.clip(x + 3, 0, 6) / 6),
    ("Hardswish", (), lambda x: x * np.clip(x + 3, 0, 6) / 6),
    ("Softsign", (), lambda x: x / (1 + np.abs(x))),
    ("Tanhshrink", (), lambda x: x - np.tanh(x)),
    ("LogSigmoid", (), lambda x: -np.logaddexp(0, -x)),
    ("Softmax", (1,), lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    ("LogSoftmax", (1,), lambda x: x - np.log(np.exp(x).sum(1, keepdims=True))),
    ("Softmin", (1,), lambda x: np.exp(-x) / np.exp(-x).sum(1, keepdims=True)),
    ("GLU", (), lambda x: x[..., :3] * _np_sigmoid(x[..., 3:])),
    ("Threshold", (0.1, -2.0), lambda x: np.where(x > 0.1, x, -2.0)),
    ("Hardshrink", (0.3,), lambda x: np.where(np.abs(x) > 0.3, x, 0)),
    ("Softshrink", (0.3,), lambda x: np.where(x > 0.3, x - 0.3, np.where(x < -0.3, x + 0.3, 0))),
]


def _act_input():
    # values away from the kinks (0, +-3, 6, thresholds) so finite differences are clean
    x = RNG.uniform(-4, 7, size=(4, 6))
    for k in (0.0, -3.0, 3.0, 6.0, 0.1, 0.3, -0.3, -0.5, 0.8, 0.5, 1.0, -1.0):
        x = np.where(np.abs(x - k) < 0.05, x + 0.1, x)
    return x


@pytest.mark.parametrize("name,args,ref", ACTS, ids=[f"{a[0]}{a[1]}" for a in ACTS])
def test_activation_forward_grad(name, args, ref):
    x = _act_input()
    m = getattr(nn, name)(*args)
    y = m(t64(x))
    np.testing.assert_allclose(npy(y), ref(x), rtol=1e-10, atol=1e-12)
    assert gradcheck(m, (t64(x, True),))
    torch = pytest.importorskip("torch")
    check_against_torch(m, getattr(torch.nn, name)(*args), x)
    assert repr(m) == repr(getattr(torch.nn, name)(*args))


@pytest.mark.parametrize("fn", [F.gelu, lambda x: F.gelu(x, approximate="tanh"), F.silu, F.softplus,
                                F.elu, F.leaky_relu, F.selu, F.mish, F.logsigmoid])
def test_primitive_activations_double_backward(fn):
    assert gradgradcheck(fn, (t64(_act_input(), True),))


def test_activations_float32_dtype_and_stability():
    x = ds.tensor([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    for f in (F.softplus, F.logsigmoid, F.silu, F.gelu, F.elu, F.mish, F.selu):
        y = f(x)
        assert y.dtype == ds.float32 and np.all(np.isfinite(npy(y))), f
    np.testing.assert_allclose(npy(F.softplus(x)), [0, 1.9287e-22, math.log(2), 50, 1000], rtol=1e-4)
    np.testing.assert_allclose(npy(F.logsigmoid(x)), [-1000, -50, -math.log(2), -1.9287e-22, 0], rtol=1e-4)
    xg = ds.tensor([-1000.0, 1000.0], requires_grad=True)
    F.softplus(xg).sum().backward()
    np.testing.assert_allclose(npy(xg.grad), [0, 1])


def test_inplace_activations():
    x = t64([-1.0, 2.0, -3.0])
    y = F.relu(x, inplace=True)
    assert y is x and np.all(npy(x) == [0, 2, 0])
    x = t64([-1.0, 2.0])
    nn.LeakyReLU(0.5, inplace=True)(x)
    np.testing.assert_allclose(npy(x), [-0.5, 2])
    # in-place on a non-leaf keeps gradients right
    a = t64([-1.0, 2.0, 0.5], rg=True)
    b = a * 2
    F.elu(b, inplace=True)
    b.sum().backward()
    np.testing.assert_allclose(npy(a.grad), [2 * math.exp(-2), 2, 2])


def test_functional_activation_misc():
    x = t64(RNG.standard_normal((3, 4)))
    np.testing.assert_allclose(npy(F.relu6(x * 10)), np.clip(npy(x) * 10, 0, 6))
    np.testing.assert_allclose(npy(F.hardtanh(x)), np.clip(npy(x), -1, 1))
    np.testing.assert_allclose(npy(F.sine(x, 3.0)), np.sin(3 * npy(x)))
    with pytest.raises(RuntimeError, match="even"):
        F.glu(t64(np.ones((2, 3))))
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="erf")


def test_prelu_against_torch():
    torch = pytest.importorskip("torch")
    x = _act_input().reshape(2, 3, 4)
    m = nn.PReLU(3, init=0.1)
    check_against_torch(m, torch.nn.PReLU(3), x)
    check_layer_gradcheck(nn.PReLU(3), t64(x, True))


# ====================================================================== SIREN and Fourier features

def test_sine_and_siren():
    x = RNG.uniform(-1, 1, (5, 2))
    m = nn.Sine(w0=30.0)
    np.testing.assert_allclose(npy(m(t64(x))), np.sin(30 * x))
    assert repr(m) == "Sine(w0=30.0)"
    gradcheck(m, (t64(x, True),))
    first = nn.SirenLinear(2, 400, w0=30.0, is_first=True)
    hidden = nn.SirenLinear(400, 300, w0=30.0)
    w1, w2 = npy(first.linear.weight), npy(hidden.linear.weight)
    assert np.abs(w1).max() <= 1 / 2 and np.abs(w1).max() > 0.45
    b = math.sqrt(6 / 400) / 30
    assert np.abs(w2).max() <= b and np.abs(w2).max() > 0.95 * b
    np.testing.assert_allclose(w2.var(), b * b / 3, rtol=0.05)
    w = ds.empty(64, 32)
    nn.init.siren_uniform_(w, w0=10.0)
    assert np.abs(npy(w)).max() <= math.sqrt(6 / 32) / 10
    # SIREN keeps the pre-activations of a deep stack ~ unit-scale (the point of the init)
    net = nn.Sequential(nn.SirenLinear(2, 256, is_first=True), *[nn.SirenLinear(256, 256) for _ in range(4)])
    y = net(ds.rand(1000, 2) * 2 - 1)
    assert 0.5 < float(y.std()) < 0.9                        # arcsine law: std 1/sqrt(2)
    y = net.double()(t64(x))
    h = np.sin(30 * (x @ npy(net[0].linear.weight).T + npy(net[0].linear.bias)))
    for layer in list(net)[1:]:
        h = np.sin(30 * (h @ npy(layer.linear.weight).T + npy(layer.linear.bias)))
    np.testing.assert_allclose(npy(y), h, atol=1e-9)
    check_layer_gradcheck(nn.SirenLinear(2, 3, w0=2.0), t64(x, True))


def test_fourier_features():
    ds.manual_seed(3)
    m = nn.FourierFeatures(3, mapping_size=64, scale=10.0)
    assert m.out_features == 2 * 64 + 3
    assert "B" in dict(m.named_buffers()) and not list(m.parameters())
    assert list(m.state_dict()) == ["B"]
    B = npy(m.B)
    assert B.shape == (64, 3)
    assert 7 < B.std() < 13
    x = RNG.uniform(0, 1, (7, 3))
    y = m(t64(x) if m.B.dtype == np.float64 else ds.tensor(x.astype(np.float32)))
    proj = 2 * np.pi * x @ B.T
    np.testing.assert_allclose(npy(y), np.concatenate([x, np.sin(proj), np.cos(proj)], -1), atol=2e-3)
    m2 = nn.FourierFeatures(2, num_frequencies=5, scale=1.0, learnable=True, include_input=False)
    assert m2.out_features == 10 and [n for n, _ in m2.named_parameters()] == ["B"]
    check_layer_gradcheck(m2, t64(RNG.uniform(0, 1, (4, 2)), True))
    assert m2(t64(np.zeros((3, 2)))).shape == (3, 10)


# ====================================================================== linear family

def test_linear_forward_grad_init_torch():
    torch = pytest.importorskip("torch")
    m = nn.Linear(5, 3)
    w, b = npy(m.weight), npy(m.bias)
    assert np.abs(w).max() <= 1 / math.sqrt(5) and np.abs(b).max() <= 1 / math.sqrt(5)
    x = RNG.standard_normal((2, 4, 5))
    np.testing.assert_allclose(npy(m(ds.tensor(x.astype(np.float32)))), x @ w.T + b, rtol=1e-5, atol=1e-6)
    check_against_torch(m, torch.nn.Linear(5, 3), x)
    check_against_torch(nn.Linear(5, 3), torch.nn.Linear(5, 3), RNG.standard_normal(5))
    check_against_torch(nn.Linear(5, 3, bias=False), torch.nn.Linear(5, 3, bias=False), RNG.standard_normal((4, 5)))
    check_layer_gradcheck(nn.Linear(5, 3), t64(x, True))
    check_layer_gradcheck(nn.Linear(5, 3, bias=False), t64(x[0], True))
    assert gradgradcheck(lambda x, w, b: F.linear(x, w, b).tanh(), (t64(x, True), t64(w, True), t64(b, True)))
    assert repr(m) == repr(torch.nn.Linear(5, 3))


def test_lazy_linear():
    m = nn.LazyLinear(3)
    calls = []
    m.register_forward_hook(lambda mod, a, out: calls.append(out.shape))
    y = m(ds.randn(2, 5))
    assert type(m) is nn.Linear and m.in_features == 5 and m.weight.shape == (3, 5) and y.shape == (2, 3)
    assert calls == [(2, 3)] and np.abs(npy(m.weight)).max() <= 1 / math.sqrt(5)


def test_linear_errors():
    m = nn.Linear(4, 2)
    with pytest.raises(RuntimeError, match=r"linear: input shape \[3, 5\]"):
        m(ds.zeros(3, 5))
    with pytest.raises(RuntimeError, match="same dtype"):
        m(ds.zeros(3, 4, dtype=ds.float64))


def test_linear_default_init_statistics():
    ds.manual_seed(0)
    m = nn.Linear(400, 300)
    w = npy(m.weight)
    bound = 1 / math.sqrt(400)
    np.testing.assert_allclose(w.var(), bound ** 2 / 3, rtol=0.03)
    assert abs(w.mean()) < 0.01 * bound * 3


def test_bilinear_identity_flatten_unflatten():
    torch = pytest.importorskip("torch")
    m = nn.Bilinear(3, 4, 2)
    x1, x2 = RNG.standard_normal((5, 3)), RNG.standard_normal((5, 4))
    A, b = npy(m.weight).astype(np.float64), npy(m.bias)
    ref = np.einsum("ni,oij,nj->no", x1, A, x2) + b
    np.testing.assert_allclose(npy(m(ds.tensor(x1.astype(np.float32)), ds.tensor(x2.astype(np.float32)))),
                               ref, rtol=1e-4, atol=1e-5)
    assert np.abs(A).max() <= 1 / math.sqrt(3)
    check_against_torch(m, torch.nn.Bilinear(3, 4, 2), x1, x2)
    check_layer_gradcheck(nn.Bilinear(3, 4, 2), t64(x1, True), t64(x2, True))
    x = t64(RNG.standard_normal((2, 3, 4, 5)), True)
    assert nn.Identity(3, foo=1)(x) is x
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 2)(x).shape == (24, 5)
    assert nn.Unflatten(1, (2, 30))(nn.Flatten()(x)).shape == (2, 2, 30)
    check_against_torch(nn.Flatten(1, 2), torch.nn.Flatten(1, 2), npy(x))
    check_against_torch(nn.Unflatten(2, (2, 2)), torch.nn.Unflatten(2, (2, 2)), npy(x))
    assert repr(nn.Unflatten(2, (2, 2))) == repr(torch.nn.Unflatten(2, (2, 2)))


# ====================================================================== functional forms

def test_functional_linear_embedding_one_hot_against_torch():
    torch = pytest.importorskip("torch")
    TF = torch.nn.functional
    w = RNG.standard_normal((6, 3))
    idx = np.array([[0, 2, 5], [2, 2, 1]])
    W = t64(w, True)
    y = F.embedding(ds.tensor(idx), W, padding_idx=2)
    np.testing.assert_allclose(npy(y), w[idx])
    g = RNG.standard_normal(y.shape)
    (y * t64(g)).sum().backward()
    tw = torch.tensor(w, requires_grad=True)
    (TF.embedding(torch.tensor(idx), tw, padding_idx=2) * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(npy(W.grad), tw.grad.numpy())
    assert np.all(npy(W.grad)[2] == 0)
    # max_norm renormalizes the looked-up rows in place, as torch
    w2 = RNG.standard_normal((6, 3)) * 3
    W2, tw2 = t64(w2), torch.tensor(w2)
    F.embedding(ds.tensor(idx), W2, max_norm=1.0)
    TF.embedding(torch.tensor(idx), tw2, max_norm=1.0)
    np.testing.assert_allclose(npy(W2), tw2.numpy(), rtol=1e-6)
    oh = F.one_hot(ds.tensor([0, 3, 1]), 5)
    assert oh.dtype == ds.int64
    np.testing.assert_array_equal(npy(oh), TF.one_hot(torch.tensor([0, 3, 1]), 5).numpy())
    assert F.one_hot(ds.tensor([[0, 2]])).shape == (1, 2, 3)
    with pytest.raises(IndexError, match="out of range"):
        F.embedding(ds.tensor([6]), W)


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_pad_against_torch(mode):
    torch = pytest.importorskip("torch")
    cases = [((2, 3, 5), (1, 2)), ((2, 3, 4, 5), (2, 1, 0, 3)), ((1, 2, 3, 4, 5), (1, 1, 2, 0, 1, 2))]
    if mode == "constant":
        cases += [((2, 3, 4, 5), (1, -1, -2, 2)), ((2, 3, 4, 5), (0, 0, 0, 0, 1, 1)), ((3, 4), (1, 2, 3, 4))]
    for shape, pads in cases:
        x = RNG.standard_normal(shape)
        kw = {"value": 0.5} if mode == "constant" else {}
        y = F.pad(t64(x), pads, mode=mode, **kw)
        ty = torch.nn.functional.pad(torch.tensor(x), pads, mode=mode, **kw)
        np.testing.assert_allclose(npy(y), ty.numpy())
        gradcheck(lambda a: F.pad(a, pads, mode=mode, **kw), (t64(x[:1, :2], True),))


def test_sdpa_against_torch():
    torch = pytest.importorskip("torch")
    TF = torch.nn.functional
    q, k, v = RNG.standard_normal((2, 3, 4, 8)), RNG.standard_normal((2, 3, 5, 8)), RNG.standard_normal((2, 3, 5, 6))
    bmask = RNG.uniform(size=(4, 5)) > 0.3
    bmask[:, 0] = True
    fmask = RNG.standard_normal((4, 5))
    for kw, tkw in [({}, {}), ({"attn_mask": ds.tensor(bmask)}, {"attn_mask": torch.tensor(bmask)}),
                    ({"attn_mask": t64(fmask)}, {"attn_mask": torch.tensor(fmask)}),
                    ({"is_causal": True}, {"is_causal": True}), ({"scale": 0.3}, {"scale": 0.3})]:
        y = F.scaled_dot_product_attention(t64(q), t64(k), t64(v), **kw)
        ty = TF.scaled_dot_product_attention(torch.tensor(q), torch.tensor(k), torch.tensor(v), **tkw)
        np.testing.assert_allclose(npy(y), ty.numpy(), atol=1e-12)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(8)
    p = np.exp(s - s.max(-1, keepdims=True))
    np.testing.assert_allclose(npy(F.scaled_dot_product_attention(t64(q), t64(k), t64(v))),
                               (p / p.sum(-1, keepdims=True)) @ v, atol=1e-12)
    gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True),
              (t64(q[0, :1], True), t64(k[0, :1, :4], True), t64(v[0, :1, :4], True)))


def test_dropout_functional_and_module():
    ds.manual_seed(0)
    x = ds.ones(200, 100)
    y = F.dropout(x, 0.3)
    vals = np.unique(npy(y))
    np.testing.assert_allclose(vals, [0, 1 / 0.7], rtol=1e-6)
    assert abs((npy(y) == 0).mean() - 0.3) < 0.01
    assert F.dropout(x, 0.3, training=False) is x
    assert np.all(npy(F.dropout(x, 1.0)) == 0)
    ds.manual_seed(5)
    a = npy(F.dropout(x, 0.5))
    ds.manual_seed(5)
    assert np.array_equal(a, npy(F.dropout(x, 0.5)))           # default generator, seeded
    m = nn.Dropout(0.4)
    xr = t64(np.ones((50, 40)), True)
    y = m(xr)
    y.sum().backward()
    np.testing.assert_allclose(npy(xr.grad), npy(y))           # grad = mask / (1-p)
    m.eval()
    assert m(xr) is xr
    assert repr(m) == "Dropout(p=0.4, inplace=False)"
    y2 = F.dropout2d(ds.ones(8, 16, 3, 3), 0.5)
    per_channel = npy(y2).reshape(8, 16, 9)
    assert np.all(per_channel.min(-1) == per_channel.max(-1))
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


# ====================================================================== normalization

def _np_bn(x, w, b, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    m = x.mean(axes, keepdims=True)
    v = x.var(axes, keepdims=True)
    sh = (1, -1) + (1,) * (x.ndim - 2)
    return (x - m) / np.sqrt(v + eps) * w.reshape(sh) + b.reshape(sh)


@pytest.mark.parametrize("cls,shape,momentum", [("BatchNorm1d", (6, 3), 0.1), ("BatchNorm1d", (4, 3, 5), None),
                                                ("BatchNorm2d", (3, 3, 4, 2), 0.3)])
def test_batchnorm_train_eval_against_torch(cls, shape, momentum):
    torch = pytest.importorskip("torch")
    m = getattr(nn, cls)(3, momentum=momentum).double()
    tm = getattr(torch.nn, cls)(3, momentum=momentum).double()
    with ds.no_grad():
        m.weight.copy_(t64(RNG.uniform(0.5, 2, 3)))
        m.bias.copy_(t64(RNG.standard_normal(3)))
    tm.load_state_dict({k: torch.tensor(npy(v)) for k, v in m.state_dict().items()})
    rm_ref, rv_ref = np.zeros(3), np.ones(3)
    axes = (0,) + tuple(range(2, len(shape)))
    for step in range(4):
        x = RNG.standard_normal(shape) * 2 + 1
        f = momentum if momentum is not None else 1 / (step + 1)   # None: cumulative average
        rm_ref = (1 - f) * rm_ref + f * x.mean(axes)
        rv_ref = (1 - f) * rv_ref + f * x.var(axes, ddof=1)
        y, = check_against_torch(m, tm, x, load=False)         # each advances its running stats
        np.testing.assert_allclose(npy(y), _np_bn(x, npy(m.weight), npy(m.bias)), atol=1e-10)
        for k in ("running_mean", "running_var"):
            np.testing.assert_allclose(npy(getattr(m, k)), getattr(tm, k).numpy(), atol=1e-12)
    assert int(m.num_batches_tracked.item()) == int(tm.num_batches_tracked) == 4
    np.testing.assert_allclose(npy(m.running_mean), rm_ref, atol=1e-12)
    np.testing.assert_allclose(npy(m.running_var), rv_ref, atol=1e-12)
    m.eval()
    tm.eval()
    x = RNG.standard_normal(shape)
    rm, rv = npy(m.running_mean), npy(m.running_var)
    sh = (1, -1) + (1,) * (len(shape) - 2)
    ref = (x - rm.reshape(sh)) / np.sqrt(rv.reshape(sh) + 1e-5) * npy(m.weight).reshape(sh) + npy(m.bias).reshape(sh)
    np.testing.assert_allclose(npy(m(t64(x))), ref, atol=1e-10)
    check_against_torch(m, tm, x)
    np.testing.assert_allclose(npy(m.running_mean), rm)         # eval leaves the stats alone
    assert repr(m) == repr(tm)


def test_batchnorm_gradcheck_and_options():
    torch = pytest.importorskip("torch")
    x = t64(RNG.standard_normal((4, 3, 2)), True)
    m = nn.BatchNorm1d(3)
    with ds.no_grad():
        m.weight.copy_(ds.tensor([0.5, 1.5, 2.0]))
    check_layer_gradcheck(m, x)
    m.eval()
    check_layer_gradcheck(m, x)
    assert gradgradcheck(lambda a: F.batch_norm(a, None, None, training=True).sin(), (x,))
    m = nn.BatchNorm2d(3, affine=False, track_running_stats=False)
    assert list(m.state_dict()) == [] and m.running_mean is None
    check_against_torch(m, torch.nn.BatchNorm2d(3, affine=False, track_running_stats=False),
                        RNG.standard_normal((2, 3, 2, 2)))
    m.eval()                                                    # no running stats: batch stats in eval
    check_against_torch(m, torch.nn.BatchNorm2d(3, affine=False, track_running_stats=False).eval(),
                        RNG.standard_normal((2, 3, 2, 2)))
    with pytest.raises(ValueError, match="expected 4D input"):
        nn.BatchNorm2d(3)(ds.zeros(2, 3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(ds.zeros(1, 3))
    m = nn.BatchNorm1d(3).float()
    m(ds.randn(4, 3))
    assert m.running_mean.dtype == ds.float32 and m.num_batches_tracked.dtype == ds.int64


def test_layernorm_groupnorm_against_numpy_torch():
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((2, 4, 3, 5)) * 3 + 2
    m = nn.LayerNorm((3, 5))
    with ds.no_grad():
        m.weight.copy_(ds.tensor(RNG.uniform(0.5, 2, (3, 5))))
        m.bias.copy_(ds.tensor(RNG.standard_normal((3, 5))))
    mu = x.mean((2, 3), keepdims=True)
    ref = (x - mu) / np.sqrt(x.var((2, 3), keepdims=True) + 1e-5) * npy(m.weight) + npy(m.bias)
    np.testing.assert_allclose(npy(m.double()(t64(x))), ref, atol=1e-6)
    check_against_torch(m, torch.nn.LayerNorm((3, 5)), x)
    check_layer_gradcheck(m, t64(x[:1, :2], True))
    check_against_torch(nn.LayerNorm(5, elementwise_affine=False), torch.nn.LayerNorm(5, elementwise_affine=False), x)
    g = nn.GroupNorm(2, 4)
    xr = x.reshape(2, 2, 2 * 15)
    ref = ((xr - xr.mean(-1, keepdims=True)) / np.sqrt(xr.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
    np.testing.assert_allclose(npy(g.double()(t64(x))), ref, atol=1e-10)
    with ds.no_grad():
        g.weight.copy_(t64(RNG.uniform(0.5, 2, 4)))
    check_against_torch(g, torch.nn.GroupNorm(2, 4), x)
    check_layer_gradcheck(g, t64(x[:, :, :2, :2], True))
    assert repr(g) == repr(torch.nn.GroupNorm(2, 4))
    assert repr(nn.LayerNorm((3, 5))) == repr(torch.nn.LayerNorm((3, 5)))
    with pytest.raises(RuntimeError, match="layer_norm"):
        nn.LayerNorm(4)(ds.zeros(2, 3))
    check_against_torch(nn.InstanceNorm1d(4, affine=True), torch.nn.InstanceNorm1d(4, affine=True),
                        x[:, :, :, 0])


def test_functional_normalize_and_norms():
    torch = pytest.importorskip("torch")
    TF = torch.nn.functional
    x = RNG.standard_normal((3, 4, 2))
    for p, dim in [(2, 1), (1, -1), (3, 0)]:
        np.testing.assert_allclose(npy(F.normalize(t64(x), p, dim)), TF.normalize(torch.tensor(x), p, dim).numpy(),
                                   atol=1e-12)
    gradcheck(lambda a: F.normalize(a, dim=1), (t64(x, True),))
    np.testing.assert_allclose(npy(F.group_norm(t64(x), 2)), TF.group_norm(torch.tensor(x), 2).numpy(), atol=1e-12)
    np.testing.assert_allclose(npy(F.layer_norm(t64(x), (2,))), TF.layer_norm(torch.tensor(x), (2,)).numpy(),
                               atol=1e-10)
    x4 = RNG.standard_normal((2, 5, 3, 4))
    np.testing.assert_allclose(npy(F.instance_norm(t64(x4))), TF.instance_norm(torch.tensor(x4)).numpy(), atol=1e-10)
    for size in (2, 3):
        np.testing.assert_allclose(npy(F.local_response_norm(t64(x4), size)),
                                   TF.local_response_norm(torch.tensor(x4), size).numpy(), atol=1e-12)
    ds.manual_seed(0)
    z = F.alpha_dropout(ds.randn(400, 400, dtype=ds.float64), 0.2, training=True)
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.02       # keeps zero mean, unit variance


# ====================================================================== embedding

def test_embedding_module():
    torch = pytest.importorskip("torch")
    m = nn.Embedding(10, 3, padding_idx=-1)
    assert m.padding_idx == 9 and np.all(npy(m.weight)[9] == 0)
    idx = np.array([[1, 9, 4], [4, 4, 0]])
    np.testing.assert_allclose(npy(m(ds.tensor(idx))), npy(m.weight)[idx])
    out = check_against_torch(m, torch.nn.Embedding(10, 3, padding_idx=9), ds.tensor(idx))
    assert np.all(npy(m.weight.grad)[9] == 0) and out[0].shape == (2, 3, 3)
    W = npy(m.weight).copy()
    check_layer_gradcheck(nn.Embedding(5, 2), ds.tensor(np.array([0, 3, 3])))
    e = nn.Embedding.from_pretrained(t64(W))
    assert not e.weight.requires_grad and np.array_equal(npy(e(ds.tensor([2]))), W[[2]])
    assert nn.Embedding.from_pretrained(t64(W), freeze=False).weight.requires_grad
    assert repr(m) == repr(torch.nn.Embedding(10, 3, padding_idx=9))
    ds.manual_seed(0)
    big = npy(nn.Embedding(1000, 50).weight)
    assert abs(big.mean()) < 0.01 and abs(big.std() - 1) < 0.01


# ====================================================================== recurrent

def _np_lstm(x, h, c, wi, wh, bi, bh):
    gates = x @ wi.T + bi + h @ wh.T + bh
    i, f, g, o = np.split(gates, 4, -1)
    c2 = _np_sigmoid(f) * c + _np_sigmoid(i) * np.tanh(g)
    return _np_sigmoid(o) * np.tanh(c2), c2


def _np_gru(x, h, wi, wh, bi, bh):
    gi, gh = x @ wi.T + bi, h @ wh.T + bh
    H = h.shape[-1]
    r = _np_sigmoid(gi[:, :H] + gh[:, :H])
    z = _np_sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
    n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
    return (1 - z) * n + z * h


def test_rnn_cells_against_numpy_torch():
    torch = pytest.importorskip("torch")
    x, h, c = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 5)), RNG.standard_normal((3, 5))
    lstm = nn.LSTMCell(4, 5).double()
    P = {k: npy(v) for k, v in lstm.state_dict().items()}
    assert all(np.abs(v).max() <= 1 / math.sqrt(5) for v in P.values())
    hr, cr = _np_lstm(x, h, c, P["weight_ih"], P["weight_hh"], P["bias_ih"], P["bias_hh"])
    h2, c2 = lstm(t64(x), (t64(h), t64(c)))
    np.testing.assert_allclose(npy(h2), hr, atol=1e-12)
    np.testing.assert_allclose(npy(c2), cr, atol=1e-12)
    check_against_torch(lstm, torch.nn.LSTMCell(4, 5), x, h, c, call=lambda m, a, b, cc: m(a, (b, cc)))
    check_against_torch(lstm, torch.nn.LSTMCell(4, 5), x[0])                 # unbatched, zero state
    gru = nn.GRUCell(4, 5).double()
    P = {k: npy(v) for k, v in gru.state_dict().items()}
    np.testing.assert_allclose(npy(gru(t64(x), t64(h))),
                               _np_gru(x, h, P["weight_ih"], P["weight_hh"], P["bias_ih"], P["bias_hh"]), atol=1e-12)
    check_against_torch(gru, torch.nn.GRUCell(4, 5), x, h)
    for nl in ("tanh", "relu"):
        rnn = nn.RNNCell(4, 5, nonlinearity=nl).double()
        P = {k: npy(v) for k, v in rnn.state_dict().items()}
        pre = x @ P["weight_ih"].T + P["bias_ih"] + h @ P["weight_hh"].T + P["bias_hh"]
        np.testing.assert_allclose(npy(rnn(t64(x), t64(h))), np.tanh(pre) if nl == "tanh" else np.maximum(pre, 0))
        check_against_torch(rnn, torch.nn.RNNCell(4, 5, nonlinearity=nl), x, h)
    check_layer_gradcheck(nn.LSTMCell(2, 3), t64(x[:2, :2], True), params=True)
    check_layer_gradcheck(nn.GRUCell(2, 3, bias=False), t64(x[:2, :2], True), t64(h[:2, :3], True))
    check_layer_gradcheck(nn.RNNCell(2, 3), t64(x[:2, :2], True))
    assert repr(nn.RNNCell(4, 5, bias=False, nonlinearity="relu")) == \
        repr(torch.nn.RNNCell(4, 5, bias=False, nonlinearity="relu"))


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_sequence_rnns_against_torch(kind):
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((5, 2, 3))
    m = getattr(nn, kind)(3, 4, num_layers=2)
    tm = getattr(torch.nn, kind)(3, 4, num_layers=2)
    assert list(m.state_dict()) == list(tm.state_dict())
    check_against_torch(m, tm, x)
    mb = getattr(nn, kind)(3, 4, batch_first=True)
    check_against_torch(mb, getattr(torch.nn, kind)(3, 4, batch_first=True), x)
    check_against_torch(mb, getattr(torch.nn, kind)(3, 4, batch_first=True), x[0])    # unbatched
    check_layer_gradcheck(getattr(nn, kind)(2, 2), t64(x[:3, :1, :2], True))


# ====================================================================== attention

def _np_mha(q, k, v, W, b, Wo, bo, H, mask=None):
    E = q.shape[-1]
    hd = E // H
    Q, K, V = q @ W[:E].T + b[:E], k @ W[E:2 * E].T + b[E:2 * E], v @ W[2 * E:].T + b[2 * E:]
    L, N, _ = Q.shape
    S = K.shape[0]
    split = lambda a, n: a.reshape(n, N, H, hd).transpose(1, 2, 0, 3)       # noqa: E731
    s = split(Q, L) @ split(K, S).transpose(0, 1, 3, 2) / math.sqrt(hd)
    if mask is not None:
        s = s + mask
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    o = (p @ split(V, S)).transpose(2, 0, 1, 3).reshape(L, N, E)
    return o @ Wo.T + bo, p.mean(1)


def test_multihead_attention_against_numpy_torch():
    torch = pytest.importorskip("torch")
    m = nn.MultiheadAttention(8, 2).double()
    assert [n for n, _ in m.named_parameters()] == ["in_proj_weight", "in_proj_bias", "out_proj.weight",
                                                     "out_proj.bias"]
    assert np.all(npy(m.in_proj_bias) == 0) and np.abs(npy(m.in_proj_weight)).max() <= math.sqrt(6 / 32)
    with ds.no_grad():
        m.in_proj_bias.copy_(t64(RNG.standard_normal(24) * 0.1))
    q, k, v = RNG.standard_normal((3, 2, 8)), RNG.standard_normal((4, 2, 8)), RNG.standard_normal((4, 2, 8))
    mask = RNG.standard_normal((3, 4))
    P = {n: npy(p) for n, p in m.named_parameters()}
    o, w = m(t64(q), t64(k), t64(v), attn_mask=t64(mask))
    ro, rw = _np_mha(q, k, v, P["in_proj_weight"], P["in_proj_bias"], P["out_proj.weight"], P["out_proj.bias"], 2, mask)
    np.testing.assert_allclose(npy(o), ro, atol=1e-12)
    np.testing.assert_allclose(npy(w), rw, atol=1e-12)
    tm = torch.nn.MultiheadAttention(8, 2)
    kpm = np.zeros((2, 4), bool)
    kpm[1, 3] = True
    check_against_torch(m, tm, q, k, v, call=lambda mm, a, b, c: mm(a, b, c, key_padding_mask=(
        ds.tensor(kpm) if isinstance(a, ds.Tensor) else torch.tensor(kpm))))
    check_against_torch(m, tm, q, call=lambda mm, a: mm(a, a, a, need_weights=False))
    check_against_torch(m, tm, q, call=lambda mm, a: mm(a, a, a, average_attn_weights=False))
    bm = np.triu(np.ones((3, 4), bool), 2)
    check_against_torch(m, tm, q, k, v, call=lambda mm, a, b, c: mm(a, b, c, attn_mask=(
        ds.tensor(bm) if isinstance(a, ds.Tensor) else torch.tensor(bm))))
    mb = nn.MultiheadAttention(8, 4, batch_first=True, kdim=5, vdim=3)
    assert mb.in_proj_weight is None and mb.k_proj_weight.shape == (8, 5)
    check_against_torch(mb, torch.nn.MultiheadAttention(8, 4, batch_first=True, kdim=5, vdim=3),
                        RNG.standard_normal((2, 3, 8)), RNG.standard_normal((2, 4, 5)), RNG.standard_normal((2, 4, 3)))
    check_against_torch(m, tm, q[:, 0], k[:, 0], v[:, 0])                  # unbatched
    small = nn.MultiheadAttention(4, 2)
    check_layer_gradcheck(small, t64(q[:2, :1, :4], True), t64(k[:3, :1, :4], True), t64(v[:3, :1, :4], True))
    assert repr(m) == repr(tm)


# ====================================================================== conv and pooling

def _np_conv2d(x, w, b, stride=1, padding=0):
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = sliding_window_view(xp, w.shape[2:], axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,ocij->nohw", win, w) + b[None, :, None, None]


def test_conv_layers_against_numpy_torch():
    torch = pytest.importorskip("torch")
    m = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    w = npy(m.weight)
    bound = 1 / math.sqrt(3 * 9)
    assert w.shape == (4, 3, 3, 3) and np.abs(w).max() <= bound and np.abs(npy(m.bias)).max() <= bound
    x = RNG.standard_normal((2, 3, 7, 6))
    m.double()
    np.testing.assert_allclose(npy(m(t64(x))), _np_conv2d(x, npy(m.weight), npy(m.bias), 2, 1), atol=1e-12)
    check_against_torch(m, torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), x)
    for cls, args, kw, shape in [
            ("Conv1d", (2, 4, 3), {"padding": "same", "padding_mode": "reflect"}, (2, 2, 7)),
            ("Conv1d", (4, 4, 3), {"groups": 2, "dilation": 2, "padding_mode": "circular", "padding": 2}, (2, 4, 9)),
            ("Conv2d", (2, 3, (2, 3)), {"padding": (1, 0), "bias": False, "padding_mode": "replicate"}, (1, 2, 5, 5)),
            ("Conv3d", (2, 2, 2), {"stride": (1, 2, 1)}, (1, 2, 4, 5, 3)),
            ("ConvTranspose2d", (3, 2, 3), {"stride": 2, "padding": 1, "output_padding": 1}, (2, 3, 3, 4)),
            ("ConvTranspose1d", (2, 4, 3), {"groups": 2, "stride": 3}, (2, 2, 4))]:
        mm = getattr(nn, cls)(*args, **kw)
        tmm = getattr(torch.nn, cls)(*args, **kw)
        assert repr(mm) == repr(tmm)
        check_against_torch(mm, tmm, RNG.standard_normal(shape))
    ct = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    tct = torch.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    check_against_torch(ct, tct, RNG.standard_normal((1, 3, 3, 3)),
                        call=lambda mm, a: mm(a, output_size=[6, 6]))
    check_layer_gradcheck(nn.Conv2d(2, 2, 2, padding=1), t64(RNG.standard_normal((1, 2, 3, 3)), True))
    check_layer_gradcheck(nn.ConvTranspose2d(2, 1, 2, stride=2), t64(RNG.standard_normal((1, 2, 2, 2)), True))
    check_layer_gradcheck(nn.Conv1d(2, 2, 3, padding="same", padding_mode="reflect"),
                          t64(RNG.standard_normal((1, 2, 5)), True))


def test_pooling_layers_against_numpy_torch():
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((2, 3, 6, 7))
    win = sliding_window_view(x, (2, 2), axis=(2, 3))[:, :, ::2, ::2]
    np.testing.assert_allclose(npy(nn.MaxPool2d(2)(t64(x))), win.max((-1, -2)))
    np.testing.assert_allclose(npy(nn.AvgPool2d(2)(t64(x))), win.mean((-1, -2)))
    np.testing.assert_allclose(npy(nn.AdaptiveAvgPool2d(1)(t64(x))), x.mean((2, 3), keepdims=True))
    for cls, args, kw, xs in [("MaxPool2d", (3,), {"stride": 2, "padding": 1}, x),
                              ("MaxPool1d", (2,), {"ceil_mode": True}, x[:, :, 0]),
                              ("AvgPool1d", (3,), {"stride": 2, "padding": 1}, x[:, :, 0]),
                              ("AvgPool2d", (3,), {"stride": 2, "padding": 1, "count_include_pad": False}, x),
                              ("AdaptiveAvgPool2d", ((2, 3),), {}, x)]:
        m, tm = getattr(nn, cls)(*args, **kw), getattr(torch.nn, cls)(*args, **kw)
        assert repr(m) == repr(tm)
        check_against_torch(m, tm, xs)
        check_layer_gradcheck(m, t64(xs[:1, :1], True))
    if hasattr(F, "interpolate"):
        for kw in [{"scale_factor": 2}, {"size": (5, 9), "mode": "bilinear", "align_corners": False}]:
            m, tm = nn.Upsample(**kw), torch.nn.Upsample(**kw)
            assert repr(m) == repr(tm)
            check_against_torch(m, tm, x)


# ====================================================================== containers

def test_sequential_container():
    torch = pytest.importorskip("torch")
    s = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert len(s) == 3 and isinstance(s[0], nn.Linear) and isinstance(s[-1], nn.Linear)
    sub = s[1:]
    assert isinstance(sub, nn.Sequential) and len(sub) == 2 and sub[1] is s[2]
    assert [type(m).__name__ for m in s] == ["Linear", "ReLU", "Linear"]
    x = t64(RNG.standard_normal((5, 3)))
    s.double()
    np.testing.assert_allclose(npy(s(x)), npy(s[2](s[1](s[0](x)))))
    s.append(nn.Tanh())
    assert len(s) == 4 and list(s._modules) == ["0", "1", "2", "3"]
    del s[1]
    assert list(s._modules) == ["0", "1", "2"] and isinstance(s[1], nn.Linear)
    s.insert(1, nn.ReLU())
    assert isinstance(s[1], nn.ReLU) and len(s) == 4
    s[3] = nn.Sigmoid()
    assert isinstance(s[3], nn.Sigmoid)
    od = nn.Sequential(OrderedDict([("fc", nn.Linear(3, 4)), ("act", nn.GELU())]))
    assert od.fc is od[0] and list(dict(od.named_parameters())) == ["fc.weight", "fc.bias"]
    with pytest.raises(IndexError):
        s[10]
    ts = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    check_against_torch(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), ts, npy(x))
    assert len(s + od) == 6


def test_modulelist_moduledict():
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(ml) == 3 and len(list(ml.parameters())) == 6
    ml.append(nn.ReLU())
    ml.extend([nn.Tanh(), nn.Sigmoid()])
    ml.insert(0, nn.Identity())
    assert [type(m).__name__ for m in ml] == ["Identity", "Linear", "Linear", "Linear", "ReLU", "Tanh", "Sigmoid"]
    assert isinstance(ml[1:3], nn.ModuleList) and len(ml[1:3]) == 2 and ml[-1] is ml[6]
    del ml[0]
    assert isinstance(ml[0], nn.Linear) and list(ml._modules)[:2] == ["0", "1"]
    assert "(0-2): 3 x Linear(in_features=2, out_features=2, bias=True)" in repr(ml)
    with pytest.raises(TypeError):
        ml.extend(nn.Linear(1, 1))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 1)])
            self.heads = nn.ModuleDict({"a": nn.Linear(1, 1), "b": nn.Linear(1, 2)})

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return self.heads["b"](x)

    net = Net()
    assert [n for n, _ in net.named_parameters()][:3] == ["layers.0.weight", "layers.0.bias", "layers.1.weight"]
    assert "heads.b.bias" in net.state_dict()
    d = net.heads
    assert list(d.keys()) == ["a", "b"] and "a" in d and len(d) == 2
    d["c"] = nn.ReLU()
    d.update([("e", nn.Tanh())])
    assert list(d) == ["a", "b", "c", "e"]
    assert isinstance(d.pop("c"), nn.ReLU) and "c" not in d
    assert net(ds.zeros(3, 2)).shape == (3, 2)


# ====================================================================== Module API

class _Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(4, 2))
        self.scale = nn.Parameter(ds.ones(1))
        self.register_buffer("step", ds.zeros(()))
        self.register_buffer("tmp", ds.zeros(2), persistent=False)

    def forward(self, x):
        return self.head(self.bn(self.fc(x))) * self.scale


def test_module_traversal_and_modes():
    m = _Small()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["scale", "fc.weight", "fc.bias", "bn.weight", "bn.bias", "head.1.weight", "head.1.bias"]
    assert [n for n, _ in m.named_buffers()] == ["step", "tmp", "bn.running_mean", "bn.running_var",
                                                  "bn.num_batches_tracked"]
    assert [n for n, _ in m.named_children()] == ["fc", "bn", "head"]
    assert [n for n, _ in m.named_modules()] == ["", "fc", "bn", "head", "head.0", "head.1"]
    assert len(list(m.parameters(recurse=False))) == 1
    assert "tmp" not in m.state_dict() and "step" in m.state_dict()
    assert m.training and all(c.training for c in m.modules())
    m.eval()
    assert not any(c.training for c in m.modules())
    m.train()
    assert m.bn.training
    # shared parameters appear once
    shared = nn.Linear(2, 2)
    seq = nn.Sequential(shared, shared)
    assert len(list(seq.parameters())) == 2


def test_module_zero_grad_to_apply_hooks():
    m = _Small()
    y = m(ds.randn(5, 3)).sum()
    y.backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=False)
    assert all(np.all(npy(p.grad) == 0) for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    w = m.fc.weight
    m.to(ds.float64)
    assert m.fc.weight is w and w.dtype == ds.float64 and m.bn.running_mean.dtype == ds.float64
    assert m.bn.num_batches_tracked.dtype == ds.int64
    m.double()(t64(np.ones((2, 3))))
    m.float()
    assert m.fc.weight.dtype == ds.float32
    with pytest.raises(TypeError, match="floating point"):
        m.to(ds.int32)
    seen = []
    m.apply(lambda mod: seen.append(type(mod).__name__))
    assert seen == ["Linear", "BatchNorm1d", "ReLU", "Linear", "Sequential", "_Small"]

    def init_fn(mod):
        if isinstance(mod, nn.Linear):
            nn.init.zeros_(mod.weight)
    m.apply(init_fn)
    assert np.all(npy(m.fc.weight) == 0)
    calls = []
    h = m.fc.register_forward_hook(lambda mod, args, out: calls.append(out.shape))
    hp = m.fc.register_forward_pre_hook(lambda mod, args: (args[0] * 0,))
    h2 = m.head.register_forward_hook(lambda mod, args, out: out + 100)
    out = m(ds.randn(4, 3))
    assert calls == [(4, 4)] and np.all(npy(out) >= 50)
    h.remove()
    hp.remove()
    h2.remove()
    m(ds.randn(4, 3))
    assert len(calls) == 1


def test_state_dict_round_trip_and_errors():
    torch = pytest.importorskip("torch")
    a, b = _Small(), _Small()
    a(ds.randn(4, 3))                                        # move running stats
    res = b.load_state_dict(a.state_dict())
    assert res.missing_keys == [] and res.unexpected_keys == []
    x = ds.randn(4, 3)
    a.eval()
    b.eval()
    np.testing.assert_allclose(npy(a(x)), npy(b(x)))
    sd = a.state_dict()
    assert list(sd) == ["scale", "step", "fc.weight", "fc.bias", "bn.weight", "bn.bias", "bn.running_mean",
                        "bn.running_var", "bn.num_batches_tracked", "head.1.weight", "head.1.bias"]
    bad = OrderedDict(sd)
    del bad["fc.bias"]
    bad["extra.weight"] = ds.zeros(1)
    with pytest.raises(RuntimeError) as e:
        b.load_state_dict(bad)
    assert '"fc.bias"' in str(e.value) and '"extra.weight"' in str(e.value)
    assert "Missing key(s)" in str(e.value) and "Unexpected key(s)" in str(e.value)
    res = b.load_state_dict(bad, strict=False)
    assert res.missing_keys == ["fc.bias"] and res.unexpected_keys == ["extra.weight"]
    bad = OrderedDict(sd)
    bad["fc.weight"] = ds.zeros(3, 3)
    with pytest.raises(RuntimeError, match=r"size mismatch for fc.weight.*\[3, 3\].*\[4, 3\]"):
        b.load_state_dict(bad, strict=False)
    # state_dict keys match torch's layout
    t = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    d = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    assert list(t.state_dict()) == list(d.state_dict())
    t.load_state_dict({k: torch.tensor(npy(v)) for k, v in d.state_dict().items()})
    d2 = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    d2.load_state_dict({k: ds.tensor(v.numpy()) for k, v in t.state_dict().items()})
    np.testing.assert_array_equal(npy(d2[2].weight), npy(d[2].weight))


def test_repr_matches_torch():
    torch = pytest.importorskip("torch")
    d = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Dropout(0.2), nn.LayerNorm(4),
                      nn.Sequential(nn.Linear(4, 2, bias=False), nn.Softmax(dim=-1)), nn.BatchNorm1d(2, momentum=None),
                      nn.LeakyReLU(0.1), nn.ModuleList([nn.Tanh(), nn.Tanh(), nn.GELU("tanh")]),
                      nn.ModuleDict({"a": nn.Flatten()}), nn.Embedding(3, 2), nn.LSTMCell(2, 3), nn.Identity())
    t = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(inplace=True), torch.nn.Dropout(0.2),
                            torch.nn.LayerNorm(4),
                            torch.nn.Sequential(torch.nn.Linear(4, 2, bias=False), torch.nn.Softmax(dim=-1)),
                            torch.nn.BatchNorm1d(2, momentum=None), torch.nn.LeakyReLU(0.1),
                            torch.nn.ModuleList([torch.nn.Tanh(), torch.nn.Tanh(), torch.nn.GELU("tanh")]),
                            torch.nn.ModuleDict({"a": torch.nn.Flatten()}), torch.nn.Embedding(3, 2),
                            torch.nn.LSTMCell(2, 3), torch.nn.Identity())
    assert repr(d) == repr(t)


# ====================================================================== nn.init

def test_init_distributions():
    ds.manual_seed(0)
    w = ds.empty(300, 200)
    nn.init.uniform_(w, -2, 3)
    a = npy(w)
    assert a.min() >= -2 and a.max() < 3 and abs(a.mean() - 0.5) < 0.02 and abs(a.var() - 25 / 12) < 0.05
    nn.init.normal_(w, 1.0, 0.5)
    assert abs(npy(w).mean() - 1) < 0.01 and abs(npy(w).std() - 0.5) < 0.01
    nn.init.xavier_uniform_(w, gain=2.0)
    b = 2 * math.sqrt(6 / 500)
    assert np.abs(npy(w)).max() <= b and abs(npy(w).var() - b * b / 3) / (b * b / 3) < 0.03
    nn.init.xavier_normal_(w)
    assert abs(npy(w).std() - math.sqrt(2 / 500)) / math.sqrt(2 / 500) < 0.02
    c = ds.empty(16, 8, 3, 3)
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(c)
    assert (fan_in, fan_out) == (72, 144)
    nn.init.kaiming_normal_(c, mode="fan_out", nonlinearity="relu")
    assert abs(npy(c).std() - math.sqrt(2 / 144)) / math.sqrt(2 / 144) < 0.05
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    assert np.abs(npy(w)).max() <= 1 / math.sqrt(200)
    assert nn.init.calculate_gain("tanh") == 5 / 3 and nn.init.calculate_gain("relu") == math.sqrt(2)
    assert nn.init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    assert nn.init.calculate_gain("selu") == 0.75
    q = ds.empty(5, 12)
    nn.init.orthogonal_(q, gain=1.5)
    np.testing.assert_allclose(npy(q) @ npy(q).T, 2.25 * np.eye(5), atol=1e-5)
    q = ds.empty(12, 5)
    nn.init.orthogonal_(q)
    np.testing.assert_allclose(npy(q).T @ npy(q), np.eye(5), atol=1e-5)
    nn.init.trunc_normal_(w, std=1.0, a=-0.5, b=1.0)
    assert npy(w).min() >= -0.5 and npy(w).max() <= 1.0
    nn.init.eye_(q)
    np.testing.assert_array_equal(npy(q), np.eye(12, 5))
    nn.init.constant_(q, 0.3)
    assert np.all(npy(q) == np.float32(0.3))
    ds.manual_seed(7)
    a1 = npy(nn.Linear(4, 4).weight)
    ds.manual_seed(7)
    assert np.array_equal(a1, npy(nn.Linear(4, 4).weight))
    p = nn.Linear(3, 3).weight
    nn.init.normal_(p)
    assert p.requires_grad and p.grad_fn is None


# ====================================================================== nn.utils

def test_utils_clip_grad_and_vectors():
    torch = pytest.importorskip("torch")
    for norm_type in (2.0, 1.0, math.inf):
        m = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
        tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
        x = RNG.standard_normal((5, 3)) * 10
        check_against_torch(m, tm, x)
        total = nn.utils.clip_grad_norm_(m.parameters(), 0.5, norm_type)
        ttotal = torch.nn.utils.clip_grad_norm_(tm.parameters(), 0.5, norm_type)
        np.testing.assert_allclose(float(total), float(ttotal), rtol=1e-10)
        for p, tp in zip(m.parameters(), tm.parameters()):
            np.testing.assert_allclose(npy(p.grad), tp.grad.numpy(), rtol=1e-8, atol=1e-14)
    nn.utils.clip_grad_value_(m.parameters(), 0.01)
    assert all(np.abs(npy(p.grad)).max() <= 0.01 for p in m.parameters())
    v = nn.utils.parameters_to_vector(m.parameters())
    assert v.shape == (3 * 4 + 4 + 4 * 2 + 2,)
    np.testing.assert_array_equal(npy(v), torch.nn.utils.parameters_to_vector(
        [torch.tensor(npy(p)) for p in m.parameters()]).numpy())
    nn.utils.vector_to_parameters(v * 0 + 1, m.parameters())
    assert all(np.all(npy(p) == 1) for p in m.parameters())
    with pytest.raises(RuntimeError, match="elements"):
        nn.utils.vector_to_parameters(ds.zeros(3, dtype=ds.float64), m.parameters())


def test_small_training_loop_decreases_loss():
    ds.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 16), nn.SiLU(), nn.LayerNorm(16), nn.Linear(16, 1))
    x = ds.rand(64, 2)
    y = (x[:, :1] * 3).sin()
    losses = []
    for _ in range(60):
        net.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        with ds.no_grad():
            for p in net.parameters():
                p -= 0.05 * p.grad
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# ====================================================================== GPU (skipped without one)

@pytest.mark.cuda
def test_layers_on_cuda_match_cpu():
    ds.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.LayerNorm(8), nn.SiLU(), nn.Linear(8, 8), nn.Softplus(),
                        nn.BatchNorm1d(8), nn.ELU(), nn.LeakyReLU(), nn.Linear(8, 3)).double()
    mha = nn.MultiheadAttention(8, 2).double()
    emb = nn.Embedding(5, 4, padding_idx=0).double()
    x = RNG.standard_normal((6, 4))
    idx = np.array([0, 3, 4, 3])
    outs, grads = [], []
    for dev in ("cpu", "cuda"):
        net.to(dev)
        mha.to(dev)
        emb.to(dev)
        net.zero_grad()
        mha.zero_grad()
        emb.zero_grad()
        net[6].reset_running_stats()
        xt = ds.tensor(x, device=dev, requires_grad=True)
        h = net(xt + emb(ds.tensor(idx, device=dev)).sum())
        q = F.pad(xt, (0, 4), mode="replicate").reshape(6, 1, 8)
        o, w = mha(q, q, q)
        loss = (h ** 2).sum() + (o ** 2).sum() + w.sum()
        loss.backward()
        outs.append([npy(h.cpu()).copy(), npy(o.cpu()).copy(), npy(net[6].running_mean.cpu()).copy()])
        grads.append([npy(xt.grad.cpu()).copy()] + [npy(p.grad.cpu()).copy() for p in
                                             list(net.parameters()) + list(mha.parameters()) + list(emb.parameters())])
    for a, b in zip(outs[0] + grads[0], outs[1] + grads[1]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("make, shape, out_shape", [
    (lambda: nn.Conv1d(4, 2, 3, groups=2), (0, 4, 5), (0, 2, 3)),
    (lambda: nn.Conv2d(3, 2, 3), (0, 3, 5, 5), (0, 2, 3, 3)),
    (lambda: nn.ConvTranspose2d(3, 2, 3), (0, 3, 5, 5), (0, 2, 7, 7)),
    (lambda: nn.MaxPool1d(2), (0, 3, 4), (0, 3, 2)),
    (lambda: nn.MaxPool2d(2), (0, 3, 4, 4), (0, 3, 2, 2)),
    (lambda: nn.AdaptiveMaxPool2d(2), (0, 3, 4, 4), (0, 3, 2, 2)),
    (lambda: nn.GroupNorm(1, 3), (0, 3, 2), (0, 3, 2)),
    (lambda: nn.BatchNorm1d(3), (0, 3), (0, 3)),
    (lambda: nn.BatchNorm2d(3), (0, 3, 2, 2), (0, 3, 2, 2)),
])
def test_layers_accept_an_empty_batch(make, shape, out_shape):
    # as in PyTorch, a batch of 0 samples gives an empty output and zero parameter gradients
    m = make().double()
    x = ds.zeros(*shape, dtype=ds.float64, requires_grad=True)
    y = m(x)
    assert tuple(y.shape) == out_shape
    y.sum().backward()
    assert tuple(x.grad.shape) == shape
    for p in m.parameters():
        assert p.grad is not None and tuple(p.grad.shape) == tuple(p.shape)
        assert not npy(p.grad).any()


def test_deepcopy_of_a_module():
    # copy.deepcopy(model) (best-model snapshots, EMA/target networks) works as in PyTorch:
    # independent Parameters (shared ones stay shared), buffers copied, no .grad carried over
    import copy
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    b.weight = a.weight
    m = nn.Sequential(a, b, nn.BatchNorm1d(2))
    m(ds.randn(4, 2)).sum().backward()
    m2 = copy.deepcopy(m)
    assert isinstance(m2[0].weight, nn.Parameter) and m2[0].weight.requires_grad
    assert m2[0].weight is not m[0].weight and m2[0].weight is m2[1].weight
    assert m2[2].running_mean is not m[2].running_mean
    np.testing.assert_array_equal(npy(m2[2].running_mean), npy(m[2].running_mean))
    assert m2[0].weight.grad is None and len(list(m2.parameters())) == len(list(m.parameters()))
    before = npy(m[0].weight).copy()
    with ds.no_grad():
        m2[0].weight.fill_(3.0)
    np.testing.assert_array_equal(npy(m[0].weight), before)
    frozen = copy.deepcopy(nn.Parameter(ds.ones(2, dtype=ds.float64), requires_grad=False))
    assert isinstance(frozen, nn.Parameter) and frozen.dtype == ds.float64 and not frozen.requires_grad


def test_batchnorm_training_on_an_empty_batch_keeps_running_stats():
    m = nn.BatchNorm1d(3).double()
    m(ds.randn(5, 3, dtype=ds.float64))
    mean, var = npy(m.running_mean).copy(), npy(m.running_var).copy()
    assert tuple(m(ds.zeros(0, 3, dtype=ds.float64)).shape) == (0, 3)
    np.testing.assert_array_equal(npy(m.running_mean), mean)
    np.testing.assert_array_equal(npy(m.running_var), var)
    assert m.num_batches_tracked.item() == 2          # counted, as in PyTorch


def test_dropout_and_prelu_on_0d_inputs():
    # 0-d inputs keep their shape (dropout's mask was a numpy scalar, not an array, and
    # PReLU's [1]-shaped weight broadcast a 0-d input to [1]), as in PyTorch
    ds.manual_seed(0)
    for f in (lambda x: F.dropout(x, 0.5), lambda x: nn.Dropout(0.3)(x),
              lambda x: F.alpha_dropout(x, 0.5, True)):
        x = ds.tensor(2.0, dtype=ds.float64, requires_grad=True)
        y = f(x)
        assert y.shape == () and y.dtype == ds.float64
        y.backward()
        assert x.grad.shape == ()
    m = nn.PReLU()
    x = ds.tensor(-2.0, requires_grad=True)
    y = m(x)
    assert y.shape == () and y.item() == pytest.approx(-0.5)
    y.backward()
    assert m.weight.grad.shape == (1,) and m.weight.grad.tolist() == [-2.0]


def test_hard_activations_gradient_at_the_kinks():
    # PyTorch's hardtanh/relu6/hardsigmoid pass no gradient at the clamp ends (clamp does)
    x = ds.tensor([-3.0, -1.0, 0.0, 1.0, 3.0, 6.0], dtype=ds.float64, requires_grad=True)
    expected = {
        "hardtanh": [0, 0, 1, 0, 0, 0],
        "relu6": [0, 0, 0, 1, 1, 0],
        "hardsigmoid": [0, 1 / 6, 1 / 6, 1 / 6, 0, 0],
        "hardswish": [0, 1 / 6, 0.5, 5 / 6, 1, 1],
    }
    for name, want in expected.items():
        x.grad = None
        getattr(F, name)(x).sum().backward()
        np.testing.assert_allclose(npy(x.grad), want, err_msg=name)
    assert gradcheck(F.hardswish, (t64(RNG.normal(size=8) * 3, True),))


def test_linear_with_zero_in_features():
    # as PyTorch: kaiming init of a zero-element weight warns and is a no-op (it divided by 0)
    with pytest.warns(UserWarning, match="zero-element"):
        m = nn.Linear(0, 2)
    y = m(ds.zeros(4, 0))
    assert tuple(y.shape) == (4, 2) and not npy(y).any()
    with pytest.warns(UserWarning, match="zero-element"):
        nn.init.kaiming_normal_(ds.empty(0, 3))


def test_clip_grad_norm_with_nan_gradient_propagates_nan_like_torch():
    p = ds.nn.Parameter(ds.ones(3))
    p.grad = ds.tensor([1.0, float("nan"), 2.0])
    total = ds.nn.utils.clip_grad_norm_([p], 1.0)
    assert np.isnan(total.item()) and np.isnan(p.grad.numpy()).all()
    with pytest.raises(RuntimeError, match="non-finite"):
        p.grad = ds.tensor([1.0, float("nan"), 2.0])
        ds.nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
