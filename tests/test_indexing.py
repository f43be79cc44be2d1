"""Indexing and the gather/scatter family: forward against numpy (and torch where installed),
gradients and double gradients against finite differences, hypothesis-chosen shapes and
indices, in-place forms, and errors."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import diffsim as ds
from diffsim.testing import gradcheck, gradgradcheck

# DS_HYP_EXAMPLES=2000 for a long local sweep; the default keeps this file at a few seconds
HYP = settings(max_examples=int(os.environ.get("DS_HYP_EXAMPLES", 60)), deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _leaf(a):
    return ds.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


# ---------------------------------------------------------------- numpy references (loops)

def np_gather(x, d, idx):
    out = np.empty(idx.shape, x.dtype)
    for i in np.ndindex(*idx.shape):
        j = list(i)
        j[d] = idx[i]
        out[i] = x[tuple(j)]
    return out


def np_scatter_add(x, d, idx, src):
    out = x.copy()
    for i in np.ndindex(*idx.shape):
        j = list(i)
        j[d] = idx[i]
        out[tuple(j)] += src[i]
    return out


def np_scatter(x, d, idx, src):
    out = x.copy()
    for i in np.ndindex(*idx.shape):
        j = list(i)
        j[d] = idx[i]
        out[tuple(j)] = src[i] if np.ndim(src) else src
    return out


def np_segment_sum(data, ids, n):
    out = np.zeros((n,) + data.shape[1:], data.dtype)
    for i, s in enumerate(ids):
        out[s] += data[i]
    return out


# ---------------------------------------------------------------- hypothesis strategies

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


@st.composite
def gather_case(draw, allow_empty=False):
    """(x shape, dim, index array) with PyTorch's gather rule: index no larger outside dim."""
    lo = 0 if allow_empty else 1
    shape = draw(st.lists(st.integers(lo, 4), min_size=1, max_size=3).map(tuple))
    d = draw(st.integers(0, len(shape) - 1))
    ishape = tuple(draw(st.integers(0 if allow_empty else 1, 4)) if k == d else
                   draw(st.integers(lo, shape[k])) for k in range(len(shape)))
    if shape[d] == 0:
        ishape = ishape[:d] + (0,) + ishape[d + 1:]
    n = int(np.prod(ishape))
    vals = draw(st.lists(st.integers(0, max(shape[d] - 1, 0)), min_size=n, max_size=n))
    return shape, d, np.array(vals, dtype=np.int64).reshape(ishape)


@st.composite
def segment_case(draw):
    n = draw(st.integers(0, 8))
    tail = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple))
    nseg = draw(st.integers(1, 5))
    ids = np.array(draw(st.lists(st.integers(0, nseg - 1), min_size=n, max_size=n)), dtype=np.int64)
    return (n,) + tail, ids, nseg


@st.composite
def index_case(draw, unique=False):
    """A shape and an index mixing ints, slices, None, Ellipsis and one advanced component
    (an integer array or a bool mask). ``unique``: the integer array has no repeats."""
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple))
    per_dim = []
    adv_used = False
    for n in shape:
        kind = draw(st.sampled_from(["int", "slice", "array", "mask", "none", "full"]))
        if kind in ("array", "mask") and adv_used:
            kind = "slice"
        if kind == "int":
            per_dim.append([draw(st.integers(-n, n - 1))])
        elif kind == "slice":
            a = draw(st.integers(-n, n))
            b = draw(st.integers(-n, n))
            step = draw(st.sampled_from([1, 2, -1]))
            per_dim.append([slice(a, b, step)])
        elif kind == "array":
            adv_used = True
            if unique:
                m = draw(st.integers(1, n))
                arr = np.array(draw(st.permutations(range(n)))[:m], dtype=np.int64)
            else:
                m = draw(st.integers(1, 5))
                arr = np.array(draw(st.lists(st.integers(-n, n - 1), min_size=m, max_size=m)),
                               dtype=np.int64)
            per_dim.append([arr])
        elif kind == "mask":
            adv_used = True
            per_dim.append([np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)])
        elif kind == "none":
            per_dim.append([None, slice(None)])
        else:
            per_dim.append([slice(None)])
    if draw(st.booleans()):          # an Ellipsis standing for dims a..b-1
        a = draw(st.integers(0, len(shape)))
        b = draw(st.integers(a, len(shape)))
        groups = per_dim[:a] + [[Ellipsis]] + per_dim[b:]
    else:
        groups = per_dim[:draw(st.integers(0, len(shape)))]     # trailing dims left out
    items = [it for grp in groups for it in grp]
    if draw(st.booleans()):
        items.insert(draw(st.integers(0, len(items))), None)
    return shape, tuple(items)


def _ds_index(index):
    return tuple(ds.tensor(i) if isinstance(i, np.ndarray) else i for i in index)


# ---------------------------------------------------------------- forward vs numpy (hypothesis)

@HYP
@given(gather_case(allow_empty=True), st.integers(0, 2 ** 31))
def test_gather_matches_numpy(case, seed):
    shape, d, idx = case
    x = np.random.default_rng(seed).standard_normal(shape)
    out = ds.gather(ds.tensor(x), d, ds.tensor(idx))
    assert out.shape == idx.shape and out.dtype == ds.float64
    np.testing.assert_array_equal(out.numpy(), np_gather(x, d, idx))
    np.testing.assert_array_equal(ds.tensor(x).gather(d - len(shape), ds.tensor(idx)).numpy(),
                                  out.numpy())


@HYP
@given(gather_case(allow_empty=True), st.integers(0, 2 ** 31))
def test_scatter_add_and_scatter_match_numpy(case, seed):
    shape, d, idx = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    src = rng.standard_normal(tuple(s + 1 for s in idx.shape))   # src may be larger than index
    out = ds.scatter_add(ds.tensor(x), d, ds.tensor(idx), ds.tensor(src))
    np.testing.assert_allclose(out.numpy(), np_scatter_add(x, d, idx, src), rtol=1e-12, atol=1e-12)
    out32 = ds.scatter_add(ds.tensor(x, dtype=ds.float32), d, ds.tensor(idx), ds.tensor(src, dtype=ds.float32))
    assert out32.dtype == ds.float32
    np.testing.assert_allclose(out32.numpy(), np_scatter_add(x, d, idx, src), rtol=1e-5, atol=1e-5)
    # scatter with unique targets (duplicates are unspecified, as in PyTorch)
    flat = idx.reshape(-1)
    if len(set(np.ndindex(*idx.shape))) == flat.size:
        uniq = _dedupe(idx, d)
        if uniq is not None:
            out = ds.scatter(ds.tensor(x), d, ds.tensor(uniq), ds.tensor(src))
            np.testing.assert_array_equal(out.numpy(), np_scatter(x, d, uniq, src))
    val = ds.scatter(ds.tensor(x), d, ds.tensor(idx), 2.5)
    np.testing.assert_array_equal(val.numpy(), np_scatter(x, d, idx, 2.5))


def _dedupe(idx, d):
    """``idx`` if no two entries address the same target along ``d``, else None."""
    seen = set()
    for i in np.ndindex(*idx.shape):
        j = list(i)
        j[d] = int(idx[i])
        if tuple(j) in seen:
            return None
        seen.add(tuple(j))
    return idx


@HYP
@given(shapes, st.data())
def test_index_select_matches_numpy(shape, data):
    d = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[d]
    idx = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=0, max_size=6)), dtype=np.int64)
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    out = ds.index_select(ds.tensor(x), d, ds.tensor(idx))
    np.testing.assert_array_equal(out.numpy(), np.take(x, idx, axis=d))


@HYP
@given(segment_case(), st.integers(0, 2 ** 31))
def test_segment_sum_matches_numpy(case, seed):
    shape, ids, nseg = case
    x = np.random.default_rng(seed).standard_normal(shape)
    out = ds.segment_sum(ds.tensor(x), ds.tensor(ids), nseg)
    assert out.shape == (nseg,) + shape[1:]
    np.testing.assert_allclose(out.numpy(), np_segment_sum(x, ids, nseg), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [1, 3, 8, 9, 20])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32])
def test_segment_sum_dtypes_and_widths(k, dtype):
    rng = np.random.default_rng(k)
    n, nseg = 50, 7
    x = (rng.standard_normal((n, k)) * 10).astype(dtype)
    ids = rng.integers(0, nseg, n)
    out = ds.segment_sum(ds.tensor(x), ds.tensor(ids), nseg)
    assert out.dtype == np.dtype(dtype)
    ref = np_segment_sum(x.astype(np.float64), ids, nseg)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out.numpy(), ref.astype(dtype), rtol=tol, atol=tol)
    # a 3-d tail and int32 / uint8 ids
    y = x.reshape(n, 1, k)
    out3 = ds.segment_sum(ds.tensor(y), ds.tensor(ids.astype(np.uint8)), nseg)
    assert out3.shape == (nseg, 1, k)
    np.testing.assert_allclose(out3.numpy()[:, 0], out.numpy(), rtol=tol, atol=tol)


def test_segment_sum_large_ids_exact():
    ids = np.array([0, 3, 3, 1])
    x = np.array([2 ** 60, 1, 2, 3], dtype=np.int64)
    out = ds.segment_sum(ds.tensor(x), ds.tensor(ids), 5)
    np.testing.assert_array_equal(out.numpy(), [2 ** 60, 3, 0, 3, 0])


def test_cpu_scatter_adds_do_not_use_add_at(monkeypatch):
    """segment_sum / scatter_add / index_add / gather's backward run on np.bincount on the CPU."""
    class NoAt:
        def __init__(self, f):
            self.f = f

        def __call__(self, *a, **k):
            return self.f(*a, **k)

        def __getattr__(self, name):
            if name == "at":
                raise AssertionError("np.add.at was called")
            return getattr(self.f, name)

    rng = np.random.default_rng(0)
    data = _leaf(rng.standard_normal((40, 3)))
    ids = ds.tensor(rng.integers(0, 6, 40))
    x = _leaf(rng.standard_normal((6, 3)))
    monkeypatch.setattr(np, "add", NoAt(np.add))
    out = ds.segment_sum(data, ids, 6)
    out2 = ds.scatter_add(x, 0, ids.reshape(40, 1).expand(40, 3), data)
    out3 = ds.index_add(x, 0, ids, data)
    g = ds.gather(data, 0, ids.reshape(40, 1).expand(40, 3) % 6)
    (out.sum() + out2.sum() + out3.sum() + g.sum() + ds.index_select(data, 0, ids).sum()).backward()
    monkeypatch.undo()
    np.testing.assert_allclose(out.detach().numpy(), np_segment_sum(data.detach().numpy(), ids.numpy(), 6))


# ---------------------------------------------------------------- getitem / setitem (hypothesis)

@HYP
@given(index_case(), st.integers(0, 2 ** 31))
def test_getitem_matches_numpy_and_gradcheck(case, seed):
    shape, index = case
    x = np.random.default_rng(seed).standard_normal(shape)
    ref = x[index]
    t = _leaf(x)
    out = t[_ds_index(index)]
    assert out.shape == ref.shape
    np.testing.assert_array_equal(out.detach().numpy(), ref)
    if ref.size:
        gradcheck(lambda t: t[_ds_index(index)], (t,))
        # gradient of the sum counts how often each element is read
        t.grad = None
        t[_ds_index(index)].sum().backward()
        counts = np.zeros(shape)
        np.add.at(counts, index, 1.0)
        np.testing.assert_array_equal(t.grad.numpy(), counts)


@HYP
@given(index_case(unique=True), st.integers(0, 2 ** 31), st.booleans())
def test_setitem_gradients(case, seed, scalar_value):
    shape, index = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    target = x[index].shape
    vshape = () if scalar_value else target
    v = rng.standard_normal(vshape)
    ref = x.copy()
    ref[index] = v
    xt, vt = _leaf(x), _leaf(v)

    def f(xt, vt):
        y = xt * 1.0
        y[_ds_index(index)] = vt
        return y

    out = f(xt, vt)
    np.testing.assert_array_equal(out.detach().numpy(), ref)
    if out.numel():
        gradcheck(f, (xt, vt))
        out.sum().backward()
        written = np.zeros(shape, bool)
        written[index] = True
        np.testing.assert_array_equal(xt.grad.numpy(), np.where(written, 0.0, 1.0))
        np.testing.assert_allclose(vt.grad.numpy(), np.full(vshape, np.prod(target) / max(np.prod(vshape), 1)))


def test_getitem_special_forms():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5))
    t = _leaf(x)
    cases = [
        (Ellipsis, 1), (None, Ellipsis, None), (slice(None, None, -1), None, 2),
        (np.array([[0, 2], [1, 1]]), np.array([3, 0])),                  # two int arrays broadcast
        (slice(None), np.array([1, 1, 3]), np.array([0, 4, 4])),          # adjacent arrays
        (np.array([0, 2]), slice(1, 3), np.array([4, 4])),                # separated arrays
        (x[:, :, 0] > 0,),                                                # 2-d bool mask
        (x > 0.5,),                                                       # full bool mask
        (np.array(True),), (np.array(False),), (1, 2, 3), (-1,),
    ]
    for idx in cases:
        ref = x[idx]
        out = t[_ds_index(idx)]
        assert out.shape == ref.shape, idx
        np.testing.assert_array_equal(out.detach().numpy(), ref)
        if ref.size:
            assert gradcheck(lambda t: t[_ds_index(idx)] * 1.0, (t,))
    # lists and tensors as indices
    np.testing.assert_array_equal(t[[0, 2]].detach().numpy(), x[[0, 2]])
    assert gradgradcheck(lambda t: t[ds.tensor([0, 0, 2]), 1:3] ** 2, (t,))
    # rows of a tensor by integer ids (the particle-code gather; its backward is a segment sum)
    for ids in ([2, -1, 2], [[0, 1], [2, 2]]):
        i = ds.tensor(ids)
        np.testing.assert_array_equal(t[i].detach().numpy(), x[np.array(ids)])
        np.testing.assert_array_equal(t[i, ...].detach().numpy(), x[np.array(ids)])
        assert gradgradcheck(lambda t: t[i, :] ** 2, (t,))


def test_setitem_broadcast_and_masks():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3))
    xt, vt = _leaf(x), _leaf(rng.standard_normal(3))
    mask = x[:, 0] > 0

    def f(xt, vt):
        y = xt * 2.0
        y[ds.tensor(mask)] = vt           # a row vector broadcast into the masked rows
        y[:, 1] = 0.0                      # a number
        return y

    ref = 2 * x
    ref[mask] = vt.detach().numpy()
    ref[:, 1] = 0.0
    np.testing.assert_allclose(f(xt, vt).detach().numpy(), ref)
    assert gradcheck(f, (xt, vt))
    assert gradgradcheck(lambda xt, vt: f(xt, vt) ** 2, (xt, vt))


# ---------------------------------------------------------------- gradients (hypothesis)

@HYP
@given(gather_case(), st.integers(0, 2 ** 31))
def test_gather_scatter_add_gradcheck(case, seed):
    shape, d, idx = case
    rng = np.random.default_rng(seed)
    x = _leaf(rng.standard_normal(shape))
    i = ds.tensor(idx)
    assert gradcheck(lambda x: ds.gather(x, d, i), (x,))
    src = _leaf(rng.standard_normal(tuple(s + 1 for s in idx.shape)))
    assert gradcheck(lambda x, s: ds.scatter_add(x, d, i, s), (x, src))


@HYP
@given(shapes, st.data())
def test_index_select_gradcheck(shape, data):
    d = data.draw(st.integers(0, len(shape) - 1))
    idx = np.array(data.draw(st.lists(st.integers(0, shape[d] - 1), min_size=1, max_size=5)))
    x = _leaf(np.random.default_rng(len(idx)).standard_normal(shape))
    assert gradcheck(lambda x: ds.index_select(x, d, ds.tensor(idx)), (x,))


@HYP
@given(segment_case(), st.integers(0, 2 ** 31))
def test_segment_sum_gradcheck(case, seed):
    shape, ids, nseg = case
    if shape[0] == 0:
        return
    x = _leaf(np.random.default_rng(seed).standard_normal(shape))
    assert gradcheck(lambda x: ds.segment_sum(x, ds.tensor(ids), nseg), (x,))


# ---------------------------------------------------------------- every op: gradcheck + gradgradcheck

_I = np.array


def _cases():
    """(name, fn(lib, *inputs), input shapes): fn works with lib = diffsim or torch."""
    g_idx = _I([[0, 2, 2], [1, 0, 1]])
    s_idx = _I([[0, 1, 2, 0], [2, 2, 1, 0]])
    u_idx = _I([[0, 1, 2, 0], [2, 0, 1, 1]])       # unique targets along dim 0 per column
    return [
        ("gather", lambda L, x: L.gather(x, 1, L.tensor(g_idx)), [(2, 4)]),
        ("gather_dim0", lambda L, x: L.gather(x, 0, L.tensor(s_idx[:, :3])), [(3, 4)]),
        ("scatter", lambda L, x, s: L.scatter(x, 0, L.tensor(u_idx), s), [(3, 4), (2, 4)]),
        ("scatter_bigsrc", lambda L, x, s: L.scatter(x, 0, L.tensor(u_idx[:, :3]), s), [(3, 4), (3, 5)]),
        ("scatter_value", lambda L, x: L.scatter(x, 1, L.tensor(g_idx), 1.5), [(2, 4)]),
        ("scatter_add", lambda L, x, s: L.scatter_add(x, 0, L.tensor(s_idx), s), [(3, 4), (2, 4)]),
        ("scatter_add_bigsrc", lambda L, x, s: L.scatter_add(x, 1, L.tensor(g_idx), s), [(2, 4), (3, 3)]),
        ("index_select", lambda L, x: L.index_select(x, 1, L.tensor([3, 0, 0])), [(2, 4)]),
        ("index_select_dim0", lambda L, x: L.index_select(x, 0, L.tensor([1, 1])), [(2, 3, 2)]),
        ("index_add", lambda L, x, s: L.index_add(x, 1, L.tensor([0, 2, 0]), s, alpha=-2.0),
         [(2, 4), (2, 3)]),
        ("index_add_dim0", lambda L, x, s: x.index_add(0, L.tensor([1, 1]), s), [(2, 3), (2, 3)]),
        ("index_copy", lambda L, x, s: x.index_copy(1, L.tensor([3, 0]), s), [(2, 4), (2, 2)]),
        ("index_fill", lambda L, x: x.index_fill(1, L.tensor([-1, 1]), -3.0), [(2, 4)]),
        ("index_fill_tensor", lambda L, x, v: x.index_fill(0, L.tensor([0]), v), [(2, 4), ()]),
        ("index_put", lambda L, x, v: x.index_put((L.tensor([0, 2]), L.tensor([1, 1])), v),
         [(3, 4), (2,)]),
        ("index_put_acc", lambda L, x, v: x.index_put((L.tensor([0, 0, 2]),), v, accumulate=True),
         [(3, 4), (3, 4)]),
        ("take", lambda L, x: L.take(x, L.tensor([[0, -1], [5, 5]])), [(2, 3)]),
        ("take_along_dim", lambda L, x: L.take_along_dim(x, L.tensor([[0], [2], [-1]]), 1), [(3, 4)]),
        ("take_along_dim_bcast", lambda L, x: L.take_along_dim(x, L.tensor([[[1, 0]]]), 2), [(2, 3, 2)]),
        ("take_along_dim_none", lambda L, x: L.take_along_dim(x, L.tensor([5, 0, 0])), [(2, 3)]),
        ("masked_fill", lambda L, x: x.masked_fill(L.tensor([True, False, True]), 2.0), [(2, 3)]),
        ("masked_fill_tensor", lambda L, x, v: L.masked_fill(x, L.tensor([[True], [False]]), v),
         [(2, 3), ()]),
        ("masked_select", lambda L, x: L.masked_select(x, L.tensor([[True, False, True]])), [(2, 3)]),
        ("masked_select_bcast", lambda L, x: x.masked_select(L.tensor([[True], [False], [True]])),
         [(3,)]),
    ]


CASES = _cases()


def _inputs(shapes_, seed=0):
    rng = np.random.default_rng(seed)
    return [_leaf(rng.standard_normal(s)) for s in shapes_]


@pytest.mark.parametrize("name,fn,shp", CASES, ids=[c[0] for c in CASES])
def test_gradcheck_and_gradgradcheck(name, fn, shp):
    ins = _inputs(shp)
    assert gradcheck(lambda *a: fn(ds, *a), tuple(ins))
    assert gradgradcheck(lambda *a: fn(ds, *a) ** 2, tuple(ins))


def test_segment_sum_gradgradcheck():
    x = _leaf(np.random.default_rng(3).standard_normal((6, 2)))
    ids = ds.tensor([0, 2, 2, 1, 0, 4])
    assert gradgradcheck(lambda x: ds.segment_sum(x, ids, 5) ** 2, (x,))
    # the backward gathers rows by segment id
    g = np.random.default_rng(4).standard_normal((5, 2))
    ds.segment_sum(x, ids, 5).backward(ds.tensor(g))
    np.testing.assert_array_equal(x.grad.numpy(), g[ids.numpy()])


def test_zero_dim_inputs():
    x = _leaf(2.0)
    assert ds.gather(x, 0, ds.tensor(0)).item() == 2.0
    assert ds.index_select(x, 0, ds.tensor([0])).shape == ()
    assert ds.take(x, ds.tensor([0, 0])).tolist() == [2.0, 2.0]
    assert ds.masked_select(x, ds.tensor(True)).tolist() == [2.0]
    assert gradcheck(lambda x: ds.gather(x, 0, ds.tensor(0)) * ds.take(x, ds.tensor([0, -1])), (x,))
    assert gradcheck(lambda x: ds.scatter_add(x, 0, ds.tensor(0), x * 3.0), (x,))
    assert gradcheck(lambda x: x.index_fill(0, ds.tensor([0]), 1.0) + x, (x,))


# ---------------------------------------------------------------- nonzero / masked / in-place

def test_nonzero_and_argwhere():
    x = np.array([[0, 1.5, 0], [2, 0, -1]])
    out = ds.nonzero(ds.tensor(x))
    assert out.dtype == ds.int64 and not out.requires_grad
    np.testing.assert_array_equal(out.numpy(), np.argwhere(x))
    tup = ds.tensor(x).nonzero(as_tuple=True)
    assert len(tup) == 2
    for a, b in zip(tup, np.nonzero(x)):
        assert a.dtype == ds.int64
        np.testing.assert_array_equal(a.numpy(), b)
    np.testing.assert_array_equal(ds.argwhere(ds.tensor(x)).numpy(), np.argwhere(x))
    assert ds.nonzero(ds.tensor(3.0)).shape == (1, 0)
    assert ds.nonzero(ds.tensor(0.0)).shape == (0, 0)
    assert [t.tolist() for t in ds.nonzero(ds.tensor(3.0), as_tuple=True)] == [[0]]
    assert ds.nonzero(ds.zeros(0, 3)).shape == (0, 2)
    w = ds.where(ds.tensor(x) > 0)
    np.testing.assert_array_equal(w[1].numpy(), np.nonzero(x > 0)[1])
    xt = _leaf(x)
    assert not ds.nonzero(xt).requires_grad


def test_masked_fill_dtypes_and_values():
    m = ds.tensor([True, False, True])
    xi = ds.tensor([1, 2, 3])
    out = xi.masked_fill(m, 7.9)
    assert out.dtype == ds.int64 and out.tolist() == [7, 2, 7]
    x32 = ds.tensor([1.0, 2.0, 3.0], dtype=ds.float32)
    v = _leaf(5.0)
    out = x32.masked_fill(m, v)
    assert out.dtype == ds.float32 and out.tolist() == [5.0, 2.0, 5.0]
    out.sum().backward()
    assert v.grad.item() == 2.0
    np.testing.assert_array_equal(ds.masked_fill(ds.ones(2, 3), np.array([False, True, False]), 0.0).numpy(),
                                  [[1, 0, 1], [1, 0, 1]])


def test_inplace_forms():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4))
    src = rng.standard_normal((3, 4))
    i = _I([[0, 1, 2, 0], [2, 0, 1, 1]])
    cases = [
        ("scatter_", lambda y, s: y.scatter_(0, ds.tensor(i), s), lambda a, s: np_scatter(a, 0, i, s)),
        ("scatter_value", lambda y, s: y.scatter_(0, ds.tensor(i), 4.0), lambda a, s: np_scatter(a, 0, i, 4.0)),
        ("scatter_add_", lambda y, s: y.scatter_add_(0, ds.tensor(i), s), lambda a, s: np_scatter_add(a, 0, i, s)),
        ("index_add_", lambda y, s: y.index_add_(0, ds.tensor([2, 2, 0]), s, alpha=0.5),
         lambda a, s: a + np_segment_sum(0.5 * s, [2, 2, 0], 3)),
        ("index_copy_", lambda y, s: y.index_copy_(1, ds.tensor([1, 3]), s[:, :2]),
         lambda a, s: _set(a, (slice(None), [1, 3]), s[:, :2])),
        ("index_fill_", lambda y, s: y.index_fill_(1, ds.tensor([-1]), 0.0),
         lambda a, s: _set(a, (slice(None), -1), 0.0)),
        ("masked_fill_", lambda y, s: y.masked_fill_(ds.tensor([True, False, False, True]), -1.0),
         lambda a, s: _set(a, (slice(None), [0, 3]), -1.0)),
        ("index_put_", lambda y, s: y.index_put_((ds.tensor([1]),), s[0]),
         lambda a, s: _set(a, 1, s[0])),
    ]
    for name, op, ref in cases:
        # no graph: writes into the tensor's own memory and bumps its version
        y = ds.tensor(x.copy())
        mem = y.numpy()
        v0 = y._version_count
        res = op(y, ds.tensor(src))
        assert res is y, name
        np.testing.assert_allclose(mem, ref(x, src), err_msg=name)
        assert y._version_count > v0, name
        # with a graph: differentiable w.r.t. the original tensor and the source
        assert gradcheck(lambda xt, st_: op(xt * 1.0, st_), (_leaf(x), _leaf(src))), name
        # a leaf that requires grad can't be modified in place
        with pytest.raises(RuntimeError, match="leaf"):
            op(_leaf(x), ds.tensor(src))


def _set(a, idx, v):
    a = a.copy()
    a[idx] = v
    return a


def test_inplace_then_backward_sees_version():
    x = _leaf(np.arange(4.0))
    y = x * 1.0
    z = y.gather(0, ds.tensor([1, 1]))
    y.masked_fill_(ds.tensor([True, False, False, False]), 0.0)
    (z.sum() + y.sum()).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 3, 1, 1])


# ---------------------------------------------------------------- errors

OOR = [
    ("gather", lambda x: ds.gather(x, 1, ds.tensor([[0, 4]])), "4"),
    ("gather", lambda x: ds.gather(x, 0, ds.tensor([[-1, 0]])), "-1"),
    ("scatter", lambda x: ds.scatter(x, 1, ds.tensor([[5]]), 1.0), "5"),
    ("scatter", lambda x: x.scatter(0, ds.tensor([[3]]), ds.ones(1, 1, dtype=ds.float64)), "3"),
    ("scatter_add", lambda x: ds.scatter_add(x, 1, ds.tensor([[7]]), x), "7"),
    ("index_select", lambda x: ds.index_select(x, 1, ds.tensor([0, 4])), "4"),
    ("index_select", lambda x: ds.index_select(x, 0, ds.tensor([-1])), "-1"),
    ("index_add", lambda x: ds.index_add(x, 0, ds.tensor([3]), ds.ones(1, 4, dtype=ds.float64)), "3"),
    ("index_copy", lambda x: x.index_copy(0, ds.tensor([9]), ds.ones(1, 4, dtype=ds.float64)), "9"),
    ("index_fill", lambda x: x.index_fill(1, ds.tensor([-5]), 0.0), "-5"),
    ("take", lambda x: ds.take(x, ds.tensor([12])), "12"),
    ("take", lambda x: ds.take(x, ds.tensor([-13])), "-13"),
    ("take_along_dim", lambda x: ds.take_along_dim(x, ds.tensor([[4]]), 1), "4"),
    ("segment_sum", lambda x: ds.segment_sum(x, ds.tensor([0, 1, 3]), 3), "3"),
    ("segment_sum", lambda x: ds.segment_sum(x, ds.tensor([0, -1, 1]), 3), "-1"),
    ("getitem", lambda x: x[ds.tensor([0, 3])], "3"),
    ("getitem", lambda x: x[:, 6], "6"),
    ("setitem", lambda x: x.__setitem__(ds.tensor([5]), 1.0), "5"),
    ("index_put", lambda x: x.index_put((ds.tensor([8]),), ds.tensor(1.0, dtype=ds.float64)), "8"),
]


@pytest.mark.parametrize("op,fn,bad", OOR, ids=[f"{o}-{b}" for o, _, b in OOR])
def test_out_of_range_raises_index_error(op, fn, bad):
    x = ds.tensor(np.zeros((3, 4)))
    with pytest.raises(IndexError) as e:
        fn(x)
    msg = str(e.value)
    assert op in msg and bad in msg, msg
    assert "[3, 4]" in msg, msg       # the tensor's shape


FLOAT_IDX = [
    ("gather", lambda x, f: ds.gather(x, 0, f)),
    ("scatter", lambda x, f: ds.scatter(x, 0, f, 1.0)),
    ("scatter_add", lambda x, f: ds.scatter_add(x, 0, f, x)),
    ("index_select", lambda x, f: ds.index_select(x, 0, f[0])),
    ("index_add", lambda x, f: ds.index_add(x, 0, f[0], x)),
    ("index_fill", lambda x, f: ds.index_fill(x, 0, f[0], 1.0)),
    ("index_copy", lambda x, f: ds.index_copy(x, 0, f[0], x)),
    ("take", lambda x, f: ds.take(x, f)),
    ("take_along_dim", lambda x, f: ds.take_along_dim(x, f, 0)),
    ("segment_sum", lambda x, f: ds.segment_sum(x, f[0, :3], 3)),
    ("masked_fill", lambda x, f: ds.masked_fill(x, f, 1.0)),
    ("masked_select", lambda x, f: ds.masked_select(x, f)),
]


@pytest.mark.parametrize("op,fn", FLOAT_IDX, ids=[o for o, _ in FLOAT_IDX])
def test_float_index_raises_type_error(op, fn):
    x = ds.tensor(np.zeros((3, 3)))
    f = ds.zeros(3, 3, dtype=ds.float64)
    with pytest.raises(TypeError, match=op):
        fn(x, f)
    with pytest.raises(TypeError, match=op):
        fn(x, ds.zeros(3, 3, dtype=ds.bool) if op not in ("masked_fill", "masked_select") else
           ds.zeros(3, 3, dtype=ds.int64))


def test_shape_and_argument_errors():
    x = ds.zeros(3, 4, dtype=ds.float64)
    with pytest.raises(RuntimeError, match="gather.*same number of dimensions"):
        ds.gather(x, 0, ds.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="gather.*size does not match at dimension 1"):
        ds.gather(x, 0, ds.zeros(1, 5, dtype=ds.int64))
    with pytest.raises(RuntimeError, match="scatter_add.*smaller than src"):
        ds.scatter_add(x, 0, ds.zeros(2, 2, dtype=ds.int64), ds.zeros(1, 2, dtype=ds.float64))
    with pytest.raises(RuntimeError, match="scatter.*dtype"):
        ds.scatter(x, 0, ds.zeros(1, 1, dtype=ds.int64), ds.zeros(1, 1, dtype=ds.float32))
    with pytest.raises(IndexError, match="gather: dimension out of range"):
        ds.gather(x, 2, ds.zeros(1, 1, dtype=ds.int64))
    with pytest.raises(IndexError, match="index_select.*vector"):
        ds.index_select(x, 0, ds.zeros(1, 1, dtype=ds.int64))
    with pytest.raises(RuntimeError, match=r"index_add: source must have shape \[2, 4\]"):
        ds.index_add(x, 0, ds.tensor([0, 1]), ds.zeros(2, 3, dtype=ds.float64))
    with pytest.raises(RuntimeError, match="masked_fill.*broadcastable"):
        ds.masked_fill(x, ds.zeros(3, dtype=ds.bool), 1.0)
    with pytest.raises(RuntimeError, match="masked_fill.*0-dimensional"):
        ds.masked_fill(x, ds.zeros(4, dtype=ds.bool), ds.ones(1))
    with pytest.raises(RuntimeError, match="masked_select.*broadcast"):
        ds.masked_select(x, ds.zeros(3, dtype=ds.bool))
    with pytest.raises(RuntimeError, match="take_along_dim.*same number of dimensions"):
        ds.take_along_dim(x, ds.tensor([0]), 0)
    with pytest.raises(RuntimeError, match="take_along_dim.*broadcast"):
        ds.take_along_dim(x, ds.zeros(1, 3, dtype=ds.int64), 0)
    with pytest.raises(RuntimeError, match="segment_sum.*one id per row"):
        ds.segment_sum(x, ds.tensor([0, 1]), 2)
    with pytest.raises(TypeError, match="segment_sum.*num_segments"):
        ds.segment_sum(x, ds.tensor([0, 1, 1]), -1)
    with pytest.raises(RuntimeError, match="setitem.*shape mismatch"):
        y = _leaf(np.zeros((3, 4))) * 1.0
        y[0] = ds.ones(3, dtype=ds.float64)
    with pytest.raises(IndexError, match="getitem.*long, int or bool"):
        x[ds.zeros(2, dtype=ds.float64)]


# ---------------------------------------------------------------- against torch

def check_matches_torch(torch, fn, shapes_, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in shapes_]
    d_in = [_leaf(a) for a in arrays]
    t_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    d_out, t_out = fn(ds, *d_in), fn(torch, *t_in)
    np.testing.assert_allclose(d_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(tuple(t_out.shape))
    d_out.backward(ds.tensor(g))
    t_out.backward(torch.tensor(g))
    for a, b in zip(d_in, t_in):
        ga = np.zeros(a.shape) if a.grad is None else a.grad.numpy()
        gb = np.zeros(tuple(b.shape)) if b.grad is None else b.grad.numpy()
        np.testing.assert_allclose(ga, gb, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,fn,shp", CASES, ids=[c[0] for c in CASES])
def test_matches_torch(name, fn, shp):
    torch = pytest.importorskip("torch")
    if name.endswith("bigsrc"):
        pytest.skip("torch's own backward fails when src is larger than index (shape error)")
    check_matches_torch(torch, fn, shp)


@pytest.mark.parametrize("case", range(6))
def test_matches_torch_random(case):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(100 + case)
    shape = tuple(rng.integers(1, 5, 3))
    d = int(rng.integers(0, 3))
    ishape = tuple(int(rng.integers(1, shape[k] + 1)) if k != d else int(rng.integers(1, 6)) for k in range(3))
    idx = rng.integers(0, shape[d], ishape)
    sel = rng.integers(0, shape[d], 4)
    ids = rng.integers(0, 3, shape[0])
    check_matches_torch(torch, lambda L, x: L.gather(x, d, L.tensor(idx)), [shape], case)
    check_matches_torch(torch, lambda L, x, s: L.scatter_add(x, d, L.tensor(idx), s), [shape, ishape], case)
    check_matches_torch(torch, lambda L, x: L.index_select(x, d, L.tensor(sel)), [shape], case)
    # segment_sum is index_add into zeros in torch
    data = rng.standard_normal(shape)
    ref = torch.zeros((3,) + shape[1:], dtype=torch.float64).index_add(0, torch.tensor(ids), torch.tensor(data))
    np.testing.assert_allclose(ds.segment_sum(ds.tensor(data), ds.tensor(ids), 3).numpy(), ref.numpy(),
                               rtol=1e-12, atol=1e-12)
    mask = rng.random(shape) > 0.5
    np.testing.assert_array_equal(ds.nonzero(ds.tensor(mask)).numpy(), torch.nonzero(torch.tensor(mask)).numpy())
    check_matches_torch(torch, lambda L, x: L.masked_select(x, L.tensor(mask)), [shape], case)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    rng = np.random.default_rng(7)
    for name, fn, shp in CASES:
        arrays = [rng.standard_normal(s) for s in shp]
        outs, grads = [], []
        for dev in ("cpu", "cuda"):
            ins = [ds.tensor(a, device=dev, requires_grad=True) for a in arrays]
            lib = _OnDevice(dev)
            out = fn(lib, *ins)
            out.backward(ds.ones_like(out))
            outs.append(out.detach().cpu().numpy())
            grads.append([t.grad.cpu().numpy() if t.grad is not None else None for t in ins])
        np.testing.assert_allclose(outs[0], outs[1], rtol=1e-12, atol=1e-12, err_msg=name)
        for a, b in zip(*grads):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=name)
    ids = rng.integers(0, 50, 1000)
    data = rng.standard_normal((1000, 3))
    out = ds.segment_sum(ds.tensor(data, device="cuda"), ds.tensor(ids, device="cuda"), 50)
    np.testing.assert_allclose(out.cpu().numpy(), np_segment_sum(data, ids, 50), rtol=1e-10, atol=1e-10)


class _OnDevice:
    """``ds`` with ``tensor`` creating tensors on ``device`` (for the shared op table)."""

    def __init__(self, device):
        self.device = device

    def tensor(self, data, **kw):
        return ds.tensor(data, device=self.device, **kw)

    def __getattr__(self, name):
        return getattr(ds, name)


def test_namespaces_complete():
    from diffsim.autodiff import rawops
    from diffsim.autodiff.ops import TENSOR_NS
    for name in ("gather", "scatter", "scatter_add_into", "index_select", "segment_sum",
                 "index_put_into", "getitem"):
        assert hasattr(rawops.RAW_NS, name) and hasattr(TENSOR_NS, name), name
    for name in ("gather", "scatter", "scatter_", "scatter_add", "scatter_add_", "index_select",
                 "index_add", "index_add_", "index_copy", "index_copy_", "index_fill", "index_fill_",
                 "index_put", "index_put_", "masked_fill", "masked_fill_", "masked_select", "nonzero",
                 "take", "take_along_dim", "argwhere"):
        assert callable(getattr(ds.Tensor, name)), name
    for name in ("gather", "scatter", "scatter_add", "index_select", "index_add", "index_copy",
                 "index_fill", "index_put", "masked_fill", "masked_select", "nonzero", "take",
                 "take_along_dim", "segment_sum", "argwhere"):
        assert callable(getattr(ds, name)), name


# ------------------------------------------------------------------ regressions (review)

def test_integer_indexing_of_every_dim_is_a_view():
    x = ds.zeros(3)
    x[1].fill_(5.0)
    y = ds.zeros(2, 2)
    y[0, 1].add_(3.0)
    v = y[1, 0]
    y[1, 0] = 7.0
    s = x.select(0, 2)
    s.fill_(9.0)
    assert x.tolist() == [0.0, 5.0, 9.0] and y.tolist() == [[0.0, 3.0], [7.0, 0.0]]
    assert v.item() == 7.0 and v.ndim == 0
    assert [t.item() for t in ds.tensor([1.0, 2.0])] == [1.0, 2.0]
    z = ds.tensor([1.0, 2.0], dtype=ds.float64, requires_grad=True)
    assert gradcheck(lambda t: t[1] * t[0, ...], (z,))
