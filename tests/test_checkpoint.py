"""ds.checkpoint and ds.checkpoint_sequential: gradients identical to the plain computation."""
import importlib
import pathlib
import sys

import numpy as np
import pytest

import diffsim as ds
from diffsim.checkpoint import checkpoint, checkpoint_sequential


def T(a, rg=False):
    return ds.tensor(np.asarray(a, dtype=np.float64), requires_grad=rg)


def grads_of(loss_fn, *leaves):
    for t in leaves:
        t.grad = None
    loss = loss_fn()
    loss.backward()
    return [t.grad.numpy().copy() if t.grad is not None else None for t in leaves]


def assert_identical(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x is None) == (y is None)
        if x is not None:
            assert np.array_equal(x, y), f"max diff {np.abs(x - y).max()}"


@pytest.fixture
def rng():
    return np.random.default_rng(1)


# ------------------------------------------------------------------ checkpoint

def test_module_is_callable_and_exported():
    assert ds.checkpoint.checkpoint is checkpoint and ds.checkpoint_sequential is checkpoint_sequential
    assert ds.autograd is not None and callable(ds.checkpoint)
    x = T([1.0, 2.0], rg=True)
    y = ds.checkpoint(lambda x: x * 3, x)
    assert y.grad_fn is not None and "Checkpoint" in repr(y.grad_fn)


def test_checkpoint_gradients_identical_args_and_closures(rng):
    x = T(rng.normal(size=(4, 3)), rg=True)
    k = T(rng.normal(size=3), rg=True)
    c = T(rng.normal(size=3))                           # a constant closure

    def fn(x, scale=1.0):
        h = ds.tanh(x * k + c)
        return (h * h).sum(1) * scale, h.mean(0)

    def loss(use):
        a, b = (checkpoint(fn, x, scale=2.0) if use else fn(x, scale=2.0))
        return (a ** 2).sum() + (b * k).sum()
    assert_identical(grads_of(lambda: loss(True), x, k), grads_of(lambda: loss(False), x, k))


def test_checkpoint_autograd_grad_and_nested_args(rng):
    x, y = T(rng.normal(size=3), rg=True), T(rng.normal(size=3), rg=True)
    w = T(rng.normal(size=3), rg=True)
    idx = ds.tensor([2, 0])

    def fn(pair, d):
        a, b = pair
        return {"out": ds.sin(a * w)[d["i"]] * b[d["i"]]}
    out_c = checkpoint(fn, (x, y), {"i": idx})["out"].sum()
    out_p = fn((x, y), {"i": idx})["out"].sum()
    gc = ds.autograd.grad(out_c, [x, y, w])
    gp = ds.autograd.grad(out_p, [x, y, w])
    assert_identical([g.numpy() for g in gc], [g.numpy() for g in gp])
    assert x.grad is None and w.grad is None


def test_checkpoint_non_leaf_closure(rng):
    raw = T(rng.normal(size=3), rg=True)
    x = T(rng.normal(size=3), rg=True)

    def loss(use):
        k = ds.log1p(ds.exp(raw))                       # softplus: a non-leaf closure
        f = lambda x: ds.sin(x) * k  # noqa: E731
        return ((checkpoint(f, x) if use else f(x)) ** 2).sum()
    assert_identical(grads_of(lambda: loss(True), x, raw), grads_of(lambda: loss(False), x, raw))
    k = ds.log1p(ds.exp(raw))
    gk_c = ds.autograd.grad((checkpoint(lambda x: ds.sin(x) * k, x) ** 2).sum(), k)[0]
    gk_p = ds.autograd.grad(((ds.sin(x) * k) ** 2).sum(), k)[0]
    assert np.array_equal(gk_c.numpy(), gk_p.numpy())


def test_checkpoint_inputs_without_grad_and_no_grad_mode():
    x = T([1.0, 2.0])
    y = checkpoint(lambda x: x * 2, x)                  # nothing requires grad: plain result
    assert not y.requires_grad and np.array_equal(y.numpy(), [2.0, 4.0])
    xr = T([1.0, 2.0], rg=True)
    with ds.no_grad():
        y = checkpoint(lambda x: x * 2, xr)
    assert not y.requires_grad


def test_checkpoint_rejects_non_tensor_outputs_and_non_callables():
    x = T([1.0], rg=True)
    with pytest.raises(TypeError, match="must return a Tensor.*float"):
        checkpoint(lambda x: (x * 2, 3.0), x)
    with pytest.raises(TypeError, match="must return a Tensor"):
        checkpoint(lambda x: None, x)
    with pytest.raises(TypeError, match="callable"):
        checkpoint(x, x)


def test_checkpoint_detects_in_place_change_of_input():
    x = T([1.0, 2.0], rg=True)
    a = x * 1.0
    y = checkpoint(lambda a: a ** 2, a)
    with ds.no_grad():
        a.mul_(2.0) if hasattr(a, "mul_") else a.__imul__(2.0)
    with pytest.raises(RuntimeError, match="in-place"):
        y.sum().backward()


def test_checkpoint_backward_twice_needs_retain_graph():
    x = T([1.0, 2.0], rg=True)
    y = checkpoint(lambda x: ds.exp(x), x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), 2 * np.exp([1.0, 2.0]))
    y = checkpoint(lambda x: ds.exp(x), x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_checkpoint_with_hooks(rng):
    x = T(rng.normal(size=3), rg=True)
    seen = []

    def fn(x):
        h = ds.sin(x)
        if h.requires_grad:                             # only in the recomputation
            h.register_hook(lambda g: g * 2)
        return h * x

    def run(use):
        x.grad = None
        seen.clear()
        xx = x * 1.0
        xx.register_hook(lambda g: seen.append(g.numpy().copy()))
        y = checkpoint(fn, xx) if use else fn(xx)
        y.register_hook(lambda g: g * 3)
        y.sum().backward()
        return x.grad.numpy().copy(), seen[0]
    gc, sc = run(True)
    gp, sp = run(False)
    assert np.array_equal(gc, gp) and np.array_equal(sc, sp)
    xs = x.detach().numpy()
    np.testing.assert_allclose(gp, 3 * (2 * np.cos(xs) * xs + np.sin(xs)))


def test_checkpoint_preserves_rng_state():
    x = T([0.5, 1.5, -1.0], rg=True)

    def fn(x):
        return x * ds.rand(3, dtype=ds.float64)

    ds.manual_seed(7)
    gp = grads_of(lambda: fn(x).sum() * 1.0, x)
    after_plain = ds.rand(1).item()
    ds.manual_seed(7)
    x.grad = None
    y = checkpoint(fn, x).sum()
    after_ckpt = ds.rand(1).item()
    y.backward()
    assert np.array_equal(x.grad.numpy(), gp[0]) and after_ckpt == after_plain
    assert ds.rand(1).item() != after_ckpt             # backward left the generator alone


def test_checkpoint_double_backward(rng):
    x = T(rng.normal(size=3), rg=True)
    w = T(rng.normal(size=3), rg=True)
    f = lambda x: ds.sin(x * w) * x  # noqa: E731

    def gg(use):
        y = (checkpoint(f, x) if use else f(x)).sum()
        (g,) = ds.autograd.grad(y, x, create_graph=True)
        return ds.autograd.grad((g ** 2).sum(), [x, w])
    a, b = gg(True), gg(False)
    for p, q in zip(a, b):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-14)


def test_func_grad_through_checkpoint(rng):
    x = T(rng.normal(size=4))
    f = lambda x: (ds.tanh(x) ** 2).sum()  # noqa: E731
    g1 = ds.func.grad(lambda x: checkpoint(f, x))(x)
    assert np.array_equal(g1.numpy(), ds.func.grad(f)(x).numpy())
    h1 = ds.func.hessian(lambda x: checkpoint(f, x))(x)
    np.testing.assert_allclose(h1.numpy(), ds.func.hessian(f)(x).numpy(), rtol=1e-13)


def test_checkpoint_unseen_closure_raises_instead_of_dropping_gradient():
    k = T([2.0, 3.0], rg=True)

    class Scale(ds.Function):
        @staticmethod
        def forward(ctx, x, k):
            ctx.save_for_backward(x, k)
            return x * k.detach()                       # k's values only: invisible to the recorder

        @staticmethod
        def backward(ctx, g):
            x, k = ctx.saved_tensors
            return g * k, g * x
    x = T([1.0, 1.0], rg=True)
    y = checkpoint(lambda x: Scale.apply(x, k), x).sum()
    with pytest.raises(RuntimeError, match="not seen"):
        y.backward()


# ------------------------------------------------------------------ checkpoint_sequential

def _oscillator(k, c):
    def step(state):
        x, v = state
        a = -k * ds.tanh(x) - c * v * v.abs()
        v = v + 0.01 * a
        return x + 0.01 * v, v
    return step


@pytest.mark.parametrize("n_steps,segments", [(60, 7), (60, 1), (60, 60), (61, None), (5, 100)])
def test_checkpoint_sequential_identical(rng, n_steps, segments):
    k = T(rng.uniform(1, 2, size=8), rg=True)
    c = T(rng.uniform(0, 0.5, size=8), rg=True)
    x0, v0 = T(rng.normal(size=8), rg=True), T(rng.normal(size=8), rg=True)
    step = _oscillator(k, c)

    def loss(use):
        if use:
            x, v = checkpoint_sequential(step, n_steps, (x0, v0), segments)
        else:
            x, v = x0, v0
            for _ in range(n_steps):
                x, v = step((x, v))
        return (x ** 2).sum() + (v * x).mean()
    assert_identical(grads_of(lambda: loss(True), x0, v0, k, c), grads_of(lambda: loss(False), x0, v0, k, c))


def _variant(kind, k, c, w):
    def step(s):
        x, v, e = s
        if kind == "coupled":
            a = -(w @ x) * k + c.exp() * ds.sin(v)
            v2 = v * 0.99 + 0.01 * a
            return x + 0.01 * v, v2, e * 0.5 + (x * k).mean()
        if kind == "tanh":
            x2 = ds.tanh(x * k + v * c)
            v2 = v + x2 * k
            return x2, v2, e + x2.sum() * v2.sum() * 1e-3
        if kind == "shared":
            h = k * x
            return h + h * v * 0.01, v + 0.01 * (h - c * v), e + (h * h).sum() * 1e-3
        return v, x * k * 0.9, e + (x * c).sum()            # "swap"
    return step


@pytest.mark.parametrize("kind", ["coupled", "tanh", "shared", "swap"])
@pytest.mark.parametrize("loss_kind", ["x", "v+e", "all"])
@pytest.mark.parametrize("n_steps,segments", [(23, 5), (9, 9), (16, 1)])
def test_checkpoint_sequential_identical_variants(rng, kind, loss_kind, n_steps, segments):
    k, c = T(rng.uniform(0.5, 1.5, 4), rg=True), T(rng.uniform(0, 0.3, 4), rg=True)
    w = T(rng.normal(size=(4, 4)) * 0.2, rg=True)
    x0, v0, e0 = T(rng.normal(size=4), rg=True), T(rng.normal(size=4), rg=True), T(0.0)
    step = _variant(kind, k, c, w)

    def loss(use):
        if use:
            x, v, e = checkpoint_sequential(step, n_steps, (x0, v0, e0), segments)
        else:
            x, v, e = x0, v0, e0
            for _ in range(n_steps):
                x, v, e = step((x, v, e))
        if loss_kind == "x":
            return ((x - 1) ** 2).sum()
        if loss_kind == "v+e":
            return e * 1.0 + v.sum()
        return e + (x ** 2).sum() + (v * x).mean()
    a = grads_of(lambda: loss(True), x0, v0, k, c, w)
    b = grads_of(lambda: loss(False), x0, v0, k, c, w)
    if kind == "coupled" and loss_kind == "all":
        # the loss reaches e_T (which the last step computes from x_T) before x_T: the engine
        # adds x_T's gradient contributions in an order the checkpoint node cannot see
        for p, q in zip(a, b):
            np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-15)
    else:
        assert_identical(a, b)


def test_checkpoint_sequential_tensor_state_and_autograd_grad(rng):
    k = T(rng.normal(size=5), rg=True)
    s0 = T(rng.normal(size=5))                          # the state itself needs no gradient
    step = lambda s: ds.sin(s) * k + s  # noqa: E731
    out = checkpoint_sequential(step, 30, s0, 5)
    assert isinstance(out, ds.Tensor)
    (gk,) = ds.autograd.grad((out ** 2).sum(), [k])
    s = s0
    for _ in range(30):
        s = step(s)
    (gk2,) = ds.autograd.grad((s ** 2).sum(), [k])
    assert np.array_equal(gk.numpy(), gk2.numpy())
    assert np.array_equal(out.detach().numpy(), s.detach().numpy())


def test_checkpoint_sequential_state_with_non_float_and_unused_parts(rng):
    k = T(rng.normal(size=4), rg=True)
    x0 = T(rng.normal(size=4), rg=True)

    def step(state):
        x, n, m = state
        return ds.tanh(x * k), n + 1, m                 # an int counter, an untouched tensor
    m0 = T(np.ones(4))
    x, n, m = checkpoint_sequential(step, 20, (x0, ds.tensor(0), m0), 4)
    assert n.item() == 20 and not n.requires_grad
    gc = ds.autograd.grad(x.sum(), [x0, k])
    xp = x0
    for _ in range(20):
        xp = ds.tanh(xp * k)
    gp = ds.autograd.grad(xp.sum(), [x0, k])
    assert_identical([g.numpy() for g in gc], [g.numpy() for g in gp])


def test_checkpoint_sequential_double_backward(rng):
    k = T(rng.uniform(1, 2, size=3), rg=True)
    x0 = T(rng.normal(size=3), rg=True)
    step = lambda x: x - 0.1 * k * ds.sin(x)  # noqa: E731

    def gg(use):
        if use:
            x = checkpoint_sequential(step, 12, x0, 3)
        else:
            x = x0
            for _ in range(12):
                x = step(x)
        (g,) = ds.autograd.grad((x ** 2).sum(), x0, create_graph=True)
        return ds.autograd.grad(g.sum(), [x0, k])
    for p, q in zip(gg(True), gg(False)):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-13)


def test_checkpoint_sequential_hooks_and_edge_cases(rng):
    k = T(rng.normal(size=3), rg=True)
    x0 = T(rng.normal(size=3), rg=True)
    step = lambda x: ds.tanh(x + k)  # noqa: E731
    got = []
    x0.register_hook(lambda g: got.append(g.numpy().copy()))
    x = checkpoint_sequential(step, 10, x0, 3)
    x.register_hook(lambda g: g * 0.5)
    x.sum().backward()
    assert len(got) == 1
    np.testing.assert_array_equal(got[0], x0.grad.numpy())
    assert checkpoint_sequential(step, 0, x0) is x0
    with ds.no_grad():
        y = checkpoint_sequential(step, 4, x0, 2)
    assert not y.requires_grad


def test_checkpoint_sequential_errors():
    x0 = T([1.0, 2.0], rg=True)
    with pytest.raises(TypeError, match="same form"):
        checkpoint_sequential(lambda s: (s, s), 3, x0)
    with pytest.raises(TypeError, match="Tensor or a non-empty tuple"):
        checkpoint_sequential(lambda s: s, 3, [1.0, 2.0])
    with pytest.raises(ValueError, match="n_steps"):
        checkpoint_sequential(lambda s: s, -1, x0)
    with pytest.raises(ValueError, match="segments"):
        checkpoint_sequential(lambda s: s * 2, 4, x0, 0)

    def bad(s):
        s.add_(1.0) if hasattr(s, "add_") else s.__iadd__(1.0)  # modifies a stored boundary
        return s * 1.0
    y = checkpoint_sequential(bad, 4, x0 * 1.0, 2)
    with pytest.raises(RuntimeError, match="in-place"):
        y.sum().backward()


# ------------------------------------------------------------------ the W2 benchmark, tiny

@pytest.fixture(scope="module")
def ckpt_bench():
    path = str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, path)
    try:
        yield importlib.import_module("checkpoint_memory")
    finally:
        sys.path.remove(path)


def test_benchmark_checkpoint_memory_smoke(ckpt_bench):
    m = ckpt_bench.measure(steps=50, repeats=1, warmup=False)
    assert m["identical"] and m["segments"] == 7
    assert np.isfinite(m["grad_k"]).all() and np.abs(m["grad_v0"]).sum() > 0
    rows = ckpt_bench.rows_from(m)
    assert len(rows) == 2 and all(r["ratio"] > 0 for r in rows)
    assert rows[1]["unit"] == "MiB" and rows[0]["diffsim_s"] > 0


def test_benchmark_w2_matches_torch(ckpt_bench):
    torch = pytest.importorskip("torch")
    steps = 15
    prob = ckpt_bench.make_problem()
    loss, gk, gv = ckpt_bench.checkpointed_rollout(prob, steps, 4)
    c = prob["cloth"]
    k = torch.full((c["S"],), ckpt_bench.K0, dtype=torch.float64, requires_grad=True)
    v = torch.zeros((c["P"], 3), dtype=torch.float64, requires_grad=True)
    x = torch.tensor(c["x0"])
    a, b = torch.tensor(c["a"]), torch.tensor(c["b"])
    L, free = torch.tensor(c["L"]), torch.tensor(c["free"])
    vv = v
    for _ in range(steps):
        d = x[b] - x[a]
        l = d.norm(dim=1, keepdim=True)  # noqa: E741
        f = k[:, None] * (l - L) / l * d
        Fo = torch.zeros_like(x).index_add(0, a, f).index_add(0, b, -f)
        Fo = Fo + ckpt_bench.MASS * torch.tensor([0.0, -9.8, 0.0], dtype=torch.float64)
        vv = (vv * ckpt_bench.DAMP + ckpt_bench.DT * Fo / ckpt_bench.MASS) * free
        x = x + ckpt_bench.DT * vv
    lt = ((x - torch.tensor(c["target"])) ** 2).sum(-1).mean()
    lt.backward()
    np.testing.assert_allclose(loss, lt.item(), rtol=1e-12)
    np.testing.assert_allclose(gk, k.grad.numpy(), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(gv, v.grad.numpy(), rtol=1e-8, atol=1e-14)


# ------------------------------------------------------------------ checkpoint_binomial

def _decaying_rollout(n_steps, k, x0, v0, mode, snapshots=None):
    def step(s):
        x, v = s
        v = v * 0.99 - 0.01 * k * x.sin()
        return x + 0.01 * v, v
    if mode == "plain":
        s = (x0, v0)
        for _ in range(n_steps):
            s = step(s)
        return s
    return ds.checkpoint_binomial(step, n_steps, (x0, v0), snapshots=snapshots)


@pytest.mark.parametrize("snapshots", [None, 1, 2, 5])
def test_checkpoint_binomial_matches_plain_gradients(snapshots):
    rng = np.random.default_rng(0)
    k, x0, v0 = T(rng.random(5) + 1, True), T(rng.standard_normal(5), True), T(np.zeros(5), True)

    def loss(mode):
        x, v = _decaying_rollout(60, k, x0, v0, mode, snapshots)
        return (x ** 2).sum() + v.sum()
    plain = grads_of(lambda: loss("plain"), k, x0, v0)
    binom = grads_of(lambda: loss("binomial"), k, x0, v0)
    for a, b in zip(plain, binom):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_checkpoint_binomial_single_tensor_random_ops_and_double_backward():
    w = T([0.5, -0.2], True)

    def step(x):
        return x + 0.1 * (w * x).tanh() + 0.01 * ds.randn(2, dtype=ds.float64)
    ds.manual_seed(3)
    ref = (ds.checkpoint_sequential(step, 20, T([1.0, 2.0]), segments=1) ** 2).sum()
    (g_ref,) = ds.autograd.grad(ref, [w], create_graph=True)
    ds.manual_seed(3)
    out = (ds.checkpoint_binomial(step, 20, T([1.0, 2.0]), snapshots=3) ** 2).sum()
    assert abs(float(out) - float(ref)) < 1e-14
    (g,) = ds.autograd.grad(out, [w], create_graph=True)
    np.testing.assert_allclose(g.detach().numpy(), g_ref.detach().numpy(), rtol=1e-12)
    (gg,) = ds.autograd.grad(g.sum(), [w])
    (gg_ref,) = ds.autograd.grad(g_ref.sum(), [w])
    np.testing.assert_allclose(gg.numpy(), gg_ref.numpy(), rtol=1e-10)


def test_checkpoint_binomial_errors_and_no_grad():
    with pytest.raises(ValueError, match="snapshots must be a positive int"):
        ds.checkpoint_binomial(lambda s: s, 3, T([1.0], True), snapshots=0)
    with pytest.raises(ValueError, match="n_steps must be a non-negative int"):
        ds.checkpoint_binomial(lambda s: s, -1, T([1.0], True))
    with pytest.raises(TypeError, match="same form"):
        ds.checkpoint_binomial(lambda s: (s, s), 3, T([1.0], True)).sum().backward()
    with ds.no_grad():
        out = ds.checkpoint_binomial(lambda s: s * 2.0, 3, T([1.0], True))
    assert float(out) == 8.0 and not out.requires_grad
