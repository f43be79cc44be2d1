"""GPU tests: every op checked on ``device="cuda"`` against the CPU reference.

Tests marked ``cuda`` are skipped by conftest.py where no GPU with cupy is present. The
op table runs each op forward and backward (with a random upstream gradient) once on the
CPU and once on the GPU, from the same float64 inputs, and compares outputs and input
gradients. The last tests run everywhere: on a machine without a GPU, asking for one must
fail early and say what to install.
"""
import numpy as np
import pytest

import diffsim as ds

DEVICE = "cuda"
RTOL, ATOL = 1e-9, 1e-12

cuda = pytest.mark.cuda


# ------------------------------------------------------------------ inputs

def F(*shape, lo=-1.0, hi=1.0):
    """A float64 input that requires grad, uniform on [lo, hi)."""
    return ("f", shape, lo, hi)


def I(high, *shape, unique=False):  # noqa: E743
    """An int64 index input in [0, high) (no grad); ``unique`` draws without repeats."""
    return ("i", shape, high, unique)


def B(*shape):
    """A bool mask input."""
    return ("b", shape)


def _make(spec, rng):
    kind = spec[0]
    if kind == "f":
        _, shape, lo, hi = spec
        return rng.uniform(lo, hi, shape)
    if kind == "i":
        _, shape, high, unique = spec
        n = int(np.prod(shape))
        v = rng.permutation(high)[:n] if unique else rng.integers(0, high, n)
        return v.reshape(shape).astype(np.int64)
    return rng.random(spec[1]) < 0.5


def _run(fn, specs, arrays, device):
    """Forward ``fn`` on ``device``, backward with a seeded upstream gradient; numpy results."""
    ts = [ds.tensor(a, device=device, requires_grad=s[0] == "f") for s, a in zip(specs, arrays)]
    out = fn(*ts)
    assert out.device == ds.device(device), f"output on {out.device}, expected {device}"
    w = np.random.default_rng(1).standard_normal(out.shape)
    if out.dtype.kind == "f" and out.requires_grad:
        out.backward(ds.tensor(w, dtype=out.dtype, device=device))
    grads = [None if t.grad is None else t.grad for t in ts]
    for g in grads:
        if g is not None:
            assert g.device == ds.device(device), f"gradient on {g.device}, expected {device}"
    return out.detach().cpu().numpy(), [None if g is None else g.cpu().numpy() for g in grads]


def check_matches_cpu(fn, specs, device=None, seed=0, rtol=RTOL, atol=ATOL):
    device = device or DEVICE
    rng = np.random.default_rng(seed)
    arrays = [_make(s, rng) for s in specs]
    out_cpu, g_cpu = _run(fn, specs, arrays, "cpu")
    out_dev, g_dev = _run(fn, specs, arrays, device)
    assert out_dev.shape == out_cpu.shape and out_dev.dtype == out_cpu.dtype
    for i, s in enumerate(specs):
        assert (g_cpu[i] is not None) == (s[0] == "f"), f"input {i}: gradient expected iff float"
    np.testing.assert_allclose(out_dev, out_cpu, rtol=rtol, atol=atol, err_msg="forward")
    for i, (a, b) in enumerate(zip(g_dev, g_cpu)):
        assert (a is None) == (b is None), f"input {i}: gradient present on one device only"
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}")


# ------------------------------------------------------------------ the op table

POS = dict(lo=0.5, hi=2.0)

OPS = {
    # elementwise (with broadcasting)
    "add_broadcast": (lambda a, b: a + b, [F(3, 4), F(4)]),
    "sub_scalar": (lambda a: 2.5 - a, [F(5)]),
    "mul_broadcast": (lambda a, b: a * b, [F(2, 3, 4), F(3, 1)]),
    "div": (lambda a, b: a / b, [F(3, 4), F(3, 4, **POS)]),
    "pow": (lambda a, b: a ** b, [F(6, **POS), F(6)]),
    "pow_scalar": (lambda a: a ** 3, [F(6)]),
    "neg_abs": (lambda a: (-a).abs(), [F(7)]),
    "sin_cos": (lambda a: ds.sin(a) * ds.cos(a), [F(3, 5)]),
    "exp_log": (lambda a: ds.exp(a) + ds.log(a), [F(8, **POS)]),
    "sqrt_rsqrt": (lambda a: ds.sqrt(a) + ds.rsqrt(a), [F(8, **POS)]),
    "tanh_sigmoid": (lambda a: ds.tanh(a) * ds.sigmoid(3 * a), [F(9, lo=-3, hi=3)]),
    "relu": (lambda a: ds.relu(a), [F(10)]),
    "log1p_expm1": (lambda a: ds.log1p(a) + ds.expm1(a), [F(6, **POS)]),
    "erf": (lambda a: ds.erf(a), [F(6)]),
    "atan2": (lambda a, b: ds.atan2(a, b), [F(6), F(6, **POS)]),
    "maximum": (lambda a, b: ds.maximum(a, b), [F(3, 4), F(4)]),
    "clamp": (lambda a: ds.clamp(a, -0.5, 0.5), [F(12)]),
    "where": (lambda c, a, b: ds.where(c, a, b), [B(4, 5), F(4, 5), F(5)]),
    "lerp": (lambda a, b, w: ds.lerp(a, b, w), [F(5), F(5), F(5)]),
    "square_reciprocal": (lambda a: ds.square(a) + ds.reciprocal(a), [F(5, **POS)]),
    # reductions
    "sum_all": (lambda a: a.sum(), [F(3, 4)]),
    "sum_dim": (lambda a: a.sum(dim=1), [F(3, 4, 5)]),
    "sum_dims_keepdim": (lambda a: a.sum(dim=(0, 2), keepdim=True), [F(3, 4, 5)]),
    "mean": (lambda a: a.mean(dim=-1), [F(3, 4)]),
    "prod": (lambda a: a.prod(dim=0), [F(4, 3)]),
    "max_dim": (lambda a: ds.max(a, dim=1).values, [F(4, 6)]),
    "amax": (lambda a: ds.amax(a, dim=0), [F(4, 6)]),
    "var_std": (lambda a: ds.var(a, dim=1) + ds.std(a, dim=1), [F(3, 6)]),
    "norm": (lambda a: ds.norm(a, dim=1), [F(3, 6)]),
    "logsumexp": (lambda a: ds.logsumexp(a, dim=1), [F(3, 6)]),
    "softmax": (lambda a: ds.softmax(a, dim=-1), [F(3, 6)]),
    "log_softmax": (lambda a: ds.log_softmax(a, dim=0), [F(3, 6)]),
    "cumsum": (lambda a: ds.cumsum(a, dim=1), [F(3, 6)]),
    "cumprod": (lambda a: ds.cumprod(a, dim=1), [F(3, 6)]),
    # shape
    "reshape": (lambda a: a.reshape(6, 4) * 2, [F(2, 3, 4)]),
    "permute": (lambda a: a.permute(2, 0, 1) * 2, [F(2, 3, 4)]),
    "transpose": (lambda a: a.transpose(0, 1) * 2, [F(3, 5)]),
    "unsqueeze_squeeze": (lambda a: a.unsqueeze(1).squeeze(1) * 2, [F(3, 5)]),
    "expand": (lambda a: a.expand(4, 3) * 2, [F(1, 3)]),
    "cat": (lambda a, b: ds.cat([a, b], dim=1), [F(3, 2), F(3, 4)]),
    "stack": (lambda a, b: ds.stack([a, b], dim=0), [F(3, 2), F(3, 2)]),
    "split": (lambda a: ds.split(a, [1, 3], dim=1)[1] * 2, [F(3, 4)]),
    "flip": (lambda a: ds.flip(a, (0,)) * 2, [F(4, 3)]),
    "roll": (lambda a: ds.roll(a, 2, 1) * 2, [F(3, 5)]),
    "repeat": (lambda a: a.repeat(2, 3) * 2, [F(2, 3)]),
    "tril": (lambda a: ds.tril(a), [F(4, 4)]),
    "diagonal": (lambda a: ds.diagonal(a) * 2, [F(4, 4)]),
    "diag_embed": (lambda a: ds.diag_embed(a), [F(2, 3)]),
    # matmul
    "matmul_2d": (lambda a, b: a @ b, [F(3, 4), F(4, 5)]),
    "matmul_batched_broadcast": (lambda a, b: ds.matmul(a, b), [F(2, 3, 4), F(4, 5)]),
    "matmul_vec": (lambda a, b: a @ b, [F(3, 4), F(4)]),
    "bmm": (lambda a, b: ds.bmm(a, b), [F(2, 3, 4), F(2, 4, 2)]),
    "mv": (lambda a, b: ds.mv(a, b), [F(3, 4), F(4)]),
    # indexing
    "getitem_slice": (lambda a: a[1:, ::2] * 2, [F(4, 6)]),
    "getitem_int": (lambda a: a[2] * 2, [F(4, 6)]),
    "getitem_repeated_index": (lambda a, i: a[i] * 2, [F(5, 3), I(5, 12)]),
    "getitem_mask": (lambda a, m: a[m] * 2, [F(4, 5), B(4, 5)]),
    "gather": (lambda a, i: ds.gather(a, 1, i), [F(3, 5), I(5, 3, 7)]),
    "index_select": (lambda a, i: ds.index_select(a, 0, i), [F(5, 3), I(5, 9)]),
    "take_along_dim": (lambda a, i: ds.take_along_dim(a, i, dim=1), [F(3, 5), I(5, 3, 4)]),
    "scatter_add": (lambda a, i, s: ds.scatter_add(a, 1, i, s), [F(3, 5), I(5, 3, 6), F(3, 6)]),
    "index_put_accumulate": (lambda a, i, v: ds.index_put(a, (i,), v, accumulate=True),
                             [F(6, 2), I(6, 10), F(10, 2)]),
    "index_put_unique": (lambda a, i, v: ds.index_put(a, (i,), v), [F(6, 2), I(6, 4, unique=True),
                                                                     F(4, 2)]),
    "masked_fill": (lambda a, m: ds.masked_fill(a, m, 0.5), [F(4, 5), B(4, 5)]),
    "segment_sum": (lambda d, s: ds.segment_sum(d, s, 6), [F(20, 3), I(6, 20)]),
}


@cuda
@pytest.mark.parametrize("name", sorted(OPS))
def test_op_matches_cpu(name):
    fn, specs = OPS[name]
    check_matches_cpu(fn, specs)


@cuda
def test_float32_matches_cpu():
    x = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    res = []
    for dev in ("cpu", DEVICE):
        t = ds.tensor(x, device=dev, requires_grad=True)
        y = (ds.tanh(t @ t.T) * 0.5).sum()
        y.backward()
        assert y.dtype == ds.float32 and t.grad.dtype == ds.float32
        res.append((y.item(), t.grad.cpu().numpy()))
    assert res[1][0] == pytest.approx(res[0][0], rel=1e-4)
    np.testing.assert_allclose(res[1][1], res[0][1], rtol=1e-4, atol=1e-5)


@cuda
def test_simulation_loop_matches_cpu():
    """A small time-stepping loop (many ops, fan-out, broadcasting) forward and backward."""
    def loss_of(device):
        k = ds.tensor([2.0, 3.0], dtype=ds.float64, device=device, requires_grad=True)
        x = ds.linspace(0.1, 1.0, 16, dtype=ds.float64, device=device).reshape(8, 2)
        v = ds.zeros(8, 2, dtype=ds.float64, device=device)
        for _ in range(50):
            v = v - 0.01 * k * ds.sin(x)
            x = x + 0.01 * v
        loss = (x ** 2).mean()
        loss.backward()
        return loss.item(), k.grad.cpu().numpy()
    (lc, gc), (lg, gg) = loss_of("cpu"), loss_of(DEVICE)
    assert lg == pytest.approx(lc, rel=1e-12)
    np.testing.assert_allclose(gg, gc, rtol=1e-10)


@cuda
@pytest.mark.parametrize("dtype", ["int64", "int32", "int16", "int8", "uint8", "bool", "float16"])
def test_scatter_add_of_every_dtype_matches_cpu(dtype):
    """Accumulating scatters of integer, bool and half tensors (cupy's add.at takes neither
    int64, bool nor the small integers); integer sums wrap around as on the CPU."""
    rng = np.random.default_rng(0)
    mk = (lambda *s: rng.random(s) < 0.4) if dtype == "bool" else (lambda *s: rng.integers(-100, 100, s))
    base, src, vals, data = (mk(4, 5).astype(dtype), mk(4, 7).astype(dtype), mk(9, 5).astype(dtype),
                             mk(9, 5).astype(dtype))
    idx, rows = rng.integers(0, 5, (4, 7)), rng.integers(0, 4, 9)
    ops = {
        "scatter_add": lambda d: ds.scatter_add(ds.tensor(base, device=d), 1, ds.tensor(idx, device=d),
                                                ds.tensor(src, device=d)),
        "index_put": lambda d: ds.index_put(ds.tensor(base, device=d), (ds.tensor(rows, device=d),),
                                            ds.tensor(vals, device=d), accumulate=True),
        "index_add": lambda d: ds.index_add(ds.tensor(base, device=d), 0, ds.tensor(rows, device=d),
                                            ds.tensor(vals, device=d)),
        "segment_sum": lambda d: ds.segment_sum(ds.tensor(data, device=d), ds.tensor(rows, device=d), 4),
    }
    for name, f in ops.items():
        c, g = f("cpu"), f(DEVICE)
        assert g.is_cuda and g.dtype == c.dtype, name
        np.testing.assert_array_equal(g.cpu().numpy(), c.numpy(), err_msg=name)


# ------------------------------------------------------------------ devices and moves

@cuda
def test_is_available_and_device_count():
    assert ds.cuda.is_available() is True
    assert ds.cuda.device_count() >= 1


@cuda
def test_device_moves():
    x = ds.tensor([1.0, 2.0, 3.0], dtype=ds.float64)
    assert x.device == "cpu" and not x.is_cuda
    for y in (x.cuda(), x.to("cuda"), x.to(ds.device("cuda")), x.to("cuda:0")):
        assert y.is_cuda and y.device == "cuda" and y.device == "cuda:0"
        assert y.dtype == ds.float64
        np.testing.assert_array_equal(y.cpu().numpy(), [1.0, 2.0, 3.0])
    y = x.cuda()
    assert y.to("cuda") is y                 # no move, no copy
    back = y.cpu()
    assert back.device == "cpu"
    back_dtype = y.to("cpu", ds.float32)
    assert back_dtype.device == "cpu" and back_dtype.dtype == ds.float32
    z = ds.zeros(2, 3, device="cuda")
    assert z.is_cuda and z.shape == (2, 3)
    assert ds.ones_like(z).is_cuda and ds.randn(4, device="cuda").is_cuda


@cuda
def test_gradient_flows_back_across_moves():
    x = ds.tensor([0.5, -1.0, 2.0], dtype=ds.float64, requires_grad=True)   # CPU leaf
    y = x.cuda()
    loss = (y * y).sum().cpu() * 3.0                                      # back to the CPU
    loss.backward()
    assert x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), 6 * np.array([0.5, -1.0, 2.0]))

    w = ds.tensor([1.0, 2.0], dtype=ds.float64, device="cuda", requires_grad=True)  # GPU leaf
    out = (w.to("cpu") ** 3).sum()
    out.backward()
    assert w.grad.is_cuda
    np.testing.assert_allclose(w.grad.cpu().numpy(), [3.0, 12.0])


@cuda
def test_double_backward_across_a_move():
    x = ds.tensor([0.3, 0.7], dtype=ds.float64, requires_grad=True)
    y = ds.sin(x.cuda()).sum()
    (g,) = ds.autograd.grad(y, x, create_graph=True)
    assert g.device == "cpu"
    g.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), -np.sin([0.3, 0.7]), rtol=1e-12)


@cuda
@pytest.mark.parametrize("op", ["add", "mul", "matmul", "cat", "where"])
def test_mixing_devices_raises_naming_both(op):
    a = ds.ones(3, 3, dtype=ds.float64)
    b = ds.ones(3, 3, dtype=ds.float64, device="cuda")
    f = {"add": lambda: a + b, "mul": lambda: b * a, "matmul": lambda: a @ b,
         "cat": lambda: ds.cat([a, b]), "where": lambda: ds.where(a > 0, a, b)}[op]
    with pytest.raises(RuntimeError) as e:
        f()
    msg = str(e.value)
    assert "cpu" in msg and "cuda" in msg


@cuda
def test_index_on_other_device_raises():
    a = ds.ones(5, dtype=ds.float64, device="cuda")
    with pytest.raises(RuntimeError, match="cpu"):
        a[ds.tensor([0, 1])]


@cuda
def test_manual_seed_reproducible_on_cuda():
    ds.manual_seed(1234)
    a, b = ds.rand(1000, device="cuda"), ds.randn(3, 4, device="cuda", dtype=ds.float64)
    ds.manual_seed(1234)
    a2, b2 = ds.rand(1000, device="cuda"), ds.randn(3, 4, device="cuda", dtype=ds.float64)
    assert a.is_cuda and b.is_cuda and b.dtype == ds.float64
    np.testing.assert_array_equal(a.cpu().numpy(), a2.cpu().numpy())
    np.testing.assert_array_equal(b.cpu().numpy(), b2.cpu().numpy())
    an = a.cpu().numpy()
    assert an.min() >= 0 and an.max() < 1 and 0.4 < an.mean() < 0.6
    ds.manual_seed(4321)
    assert not np.array_equal(ds.rand(1000, device="cuda").cpu().numpy(), an)


@cuda
def test_generator_on_cuda_reproducible():
    g1 = ds.Generator(device="cuda").manual_seed(7)
    g2 = ds.Generator(device="cuda").manual_seed(7)
    x1 = ds.randn(50, generator=g1, device="cuda")
    x2 = ds.randn(50, generator=g2, device="cuda")
    np.testing.assert_array_equal(x1.cpu().numpy(), x2.cpu().numpy())


# ------------------------------------------------------------------ without a GPU (runs everywhere)

def test_cuda_queries_never_fail():
    assert isinstance(ds.cuda.is_available(), bool)
    assert isinstance(ds.cuda.device_count(), int)
    ds.cuda.synchronize()


def test_no_gpu_gives_a_clear_error():
    if ds.cuda.is_available():
        pytest.skip("a GPU is present")
    assert ds.cuda.is_available() is False
    assert ds.cuda.device_count() == 0
    for make in (lambda: ds.zeros(2, device="cuda"),
                 lambda: ds.tensor([1.0, 2.0]).cuda(),
                 lambda: ds.randn(3, device="cuda")):
        with pytest.raises(RuntimeError, match="cupy") as e:
            make()
        assert "cpu" in str(e.value)          # says what to do instead


@cuda
def test_cpu_scalar_tensors_join_gpu_ops_and_get_their_gradient_back_on_the_cpu():
    k = ds.tensor(2.0, dtype=ds.float64, requires_grad=True)          # 0-d, on the CPU
    x = ds.tensor([1.0, 2.0, 3.0], dtype=ds.float64, device=DEVICE, requires_grad=True)
    y = (x * k + k).sum()
    assert y.device == ds.device(DEVICE)
    y.backward()
    assert k.grad.device == ds.device("cpu") and float(k.grad) == 9.0
    assert x.grad.device == ds.device(DEVICE) and x.grad.cpu().numpy().tolist() == [2.0, 2.0, 2.0]
    with pytest.raises(RuntimeError, match="expected all tensors on the same device"):
        x + ds.ones(3, dtype=ds.float64)                                # 1-d CPU tensors do not move
