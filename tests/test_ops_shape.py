"""Shape ops: forward against numpy (exact), gradients against central finite differences
(gradcheck, float64), PyTorch's semantics on 0-d, size-1 and empty dims, and views that share
memory with their base.

Generated from a table: one row per op, with a strategy that draws the op's arguments from
the input's shape (a valid new shape for ``reshape``, a permutation for ``permute``, section
sizes for ``split`` ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import diffsim as ds
from diffsim.testing import assert_close, gradcheck
from diffsim.testing import strategies as dst

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.filter_too_much,
                                                      HealthCheck.data_too_large])
FAST = settings(max_examples=20, **SETTINGS)
GRAD = settings(max_examples=10, **SETTINGS)

R = dst.floats(-3, 3)


# ------------------------------------------------------------------ argument strategies

def _dim(ndim, extra=0):
    """A dim in ``[-n, n-1]`` with n = max(ndim + extra, 1) (0-d tensors accept 0 and -1)."""
    n = max(ndim + extra, 1)
    return st.integers(-n, n - 1)


def _dims_perm(ndim):
    return st.permutations(range(ndim)).flatmap(
        lambda p: st.tuples(*[st.sampled_from([d, d - ndim]) for d in p]))


@st.composite
def _new_shape(draw, shape):
    """A shape with the same number of elements: dims permuted, neighbours merged, 1s inserted,
    maybe one -1."""
    dims = list(draw(st.permutations(shape)))
    i = 0
    while i + 1 < len(dims):
        if draw(st.booleans()):
            dims[i:i + 2] = [dims[i] * dims[i + 1]]
        else:
            i += 1
    for _ in range(draw(st.integers(0, 2))):
        dims.insert(draw(st.integers(0, len(dims))), 1)
    if dims and 0 not in dims and draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    return tuple(dims)


def _flatten_args(shape):
    nd = len(shape)
    if nd == 0:
        return st.just(())
    return st.tuples(_dim(nd), _dim(nd)).filter(lambda se: se[0] % nd <= se[1] % nd)


def _np_flatten(a, start=0, end=-1):
    if a.ndim == 0:
        return a.reshape(1)
    s, e = start % a.ndim, end % a.ndim
    return a.reshape(a.shape[:s] + (-1 if a.size else 0,) + a.shape[e + 1:]) if a.size else \
        a.reshape(a.shape[:s] + (math.prod(a.shape[s:e + 1]),) + a.shape[e + 1:])


@st.composite
def _unflatten_args(draw, shape):
    d = draw(_dim(len(shape)))
    n = shape[d]
    if n == 0:
        sizes = draw(st.sampled_from([(0,), (0, 1), (1, 0, 2)]))
    else:
        divs = [k for k in range(1, n + 1) if n % k == 0]
        k = draw(st.sampled_from(divs))
        sizes = [k, n // k]
        if draw(st.booleans()):
            sizes[draw(st.integers(0, 1))] = -1
        sizes = tuple(sizes)
    return d, sizes


def _np_unflatten(a, d, sizes):
    d %= a.ndim
    known = math.prod(s for s in sizes if s != -1)
    sizes = tuple(a.shape[d] // known if s == -1 else s for s in sizes)   # -1 from dim d alone
    return a.reshape(a.shape[:d] + sizes + a.shape[d + 1:])


def _squeeze_args(shape):
    nd = len(shape)
    return st.one_of(st.just(()), _dim(nd).map(lambda d: (d,)),
                     st.sets(st.integers(0, max(nd, 1) - 1), max_size=max(nd, 1)).map(
                         lambda s: (tuple(s),)))


def _np_squeeze(a, dim=None):
    if dim is None:
        return np.squeeze(a)
    dims = dim if isinstance(dim, tuple) else (dim,)
    nd = max(a.ndim, 1)
    dims = {d % nd for d in dims}
    return a.reshape(tuple(s for i, s in enumerate(a.shape) if not (i in dims and s == 1)))


@st.composite
def _expand_args(draw, shape):
    lead = tuple(draw(st.lists(st.integers(0, 3), max_size=2)))
    rest = tuple(draw(st.sampled_from([-1, 1, 2, 0]) if s == 1 else st.sampled_from([-1, s]))
                 for s in shape)
    return lead + rest


def _resolve_expand(shape, sizes):
    lead = len(sizes) - len(shape)
    return tuple(shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))


@st.composite
def _movedim_args(draw, shape):
    nd = len(shape)
    if nd == 0:
        return (0, 0)
    k = draw(st.integers(1, nd))
    src = draw(st.permutations(range(nd)))[:k]
    dst_ = draw(st.permutations(range(nd)))[:k]
    if k == 1 and draw(st.booleans()):
        return (src[0] - nd, dst_[0])
    return (tuple(src), tuple(dst_))


@st.composite
def _split_args(draw, shape):
    nd = max(len(shape), 1)
    d = draw(st.integers(-nd, nd - 1))
    n = shape[d]
    if draw(st.booleans()) or n == 0:
        return (draw(st.integers(1, 4)), d)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
    sections = [b - a for a, b in zip([0] + cuts, cuts + [n])]
    return (sections, d)


def _np_split(a, size_or_sections, dim=0):
    n = a.shape[dim]
    if isinstance(size_or_sections, int):
        if n == 0:
            return [a]
        idx = list(range(size_or_sections, n, size_or_sections))
    else:
        idx = list(np.cumsum(size_or_sections)[:-1])
    return np.split(a, idx, axis=dim)


def _np_chunk(a, chunks, dim=0):
    n = a.shape[dim]
    if n == 0:
        return [a] * chunks
    size = -(-n // chunks)
    return np.split(a, list(range(size, n, size)), axis=dim)


@st.composite
def _roll_args(draw, shape):
    nd = len(shape)
    if nd == 0 or draw(st.booleans()):
        return (draw(st.integers(-5, 5)),)          # flattened
    k = draw(st.integers(1, nd))
    dims = tuple(draw(st.permutations(range(nd)))[:k])
    shifts = tuple(draw(st.integers(-5, 5)) for _ in dims)
    if k == 1:
        return (shifts[0], dims[0] - nd if draw(st.booleans()) else dims[0])
    return (shifts, dims)


def _np_roll(a, shifts, dims=None):
    return np.roll(a, shifts, axis=dims)


def _repeat_args(shape):
    return st.lists(st.integers(0, 3), min_size=len(shape), max_size=len(shape) + 2).map(tuple)


def _np_repeat(a, sizes):
    return np.tile(a, sizes)


def _tile_args(shape):
    return st.lists(st.integers(0, 3), max_size=len(shape) + 1).map(lambda s: (tuple(s),))


@st.composite
def _narrow_args(draw, shape):
    d = draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[d]
    start = draw(st.integers(0, n))
    length = draw(st.integers(0, n - start))
    if start and draw(st.booleans()):
        start -= n                                     # negative start
    return (d, start, length)


def _np_narrow(a, dim, start, length):
    start %= max(a.shape[dim], 1) if start < 0 else a.shape[dim] + 1
    idx = [slice(None)] * a.ndim
    idx[dim] = slice(start, start + length)
    return a[tuple(idx)]


@st.composite
def _diagonal_args(draw, shape):
    nd = len(shape)
    d1, d2 = draw(st.permutations(range(nd)))[:2]
    return (draw(st.integers(-3, 3)), d1 - nd if draw(st.booleans()) else d1, d2)


# ------------------------------------------------------------------ the table

def _shapes(min_dims=0, max_dims=4, max_side=4, min_side=0):
    return dst.shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


@dataclass
class ShapeOp:
    """``fn(x, *args)`` against ``ref(array, *args)``; ``args(shape)`` draws the arguments."""
    name: str
    fn: Callable
    ref: Callable
    args: Callable = lambda shape: st.just(())
    shapes: object = None

    def __repr__(self):
        return self.name


SHAPE_OPS = [
    ShapeOp("reshape", lambda x, s: ds.reshape(x, s), np.reshape, lambda shp: _new_shape(shp).map(
        lambda s: (s,))),
    ShapeOp("view", lambda x, s: x.view(*s), np.reshape, lambda shp: _new_shape(shp).map(lambda s: (s,))),
    ShapeOp("flatten", ds.flatten, _np_flatten, _flatten_args),
    ShapeOp("flatten_default", lambda x: x.flatten(), lambda a: a.reshape(-1)),
    ShapeOp("unflatten", ds.unflatten, _np_unflatten, _unflatten_args, _shapes(min_dims=1)),
    ShapeOp("squeeze", ds.squeeze, _np_squeeze, _squeeze_args),
    ShapeOp("unsqueeze", ds.unsqueeze, lambda a, d: np.expand_dims(a, d % (a.ndim + 1)),
            lambda shp: _dim(len(shp), 1).map(lambda d: (d,))),
    ShapeOp("transpose", ds.transpose, lambda a, d0, d1: a if a.ndim == 0 else np.swapaxes(a, d0, d1),
            lambda shp: st.tuples(_dim(len(shp)), _dim(len(shp)))),
    ShapeOp("permute", lambda x, dims: x.permute(*dims), lambda a, dims: np.transpose(a, [
        d % a.ndim for d in dims]), lambda shp: _dims_perm(len(shp)).map(lambda p: (p,))),
    ShapeOp("movedim", ds.movedim, lambda a, s, d: a if a.ndim == 0 else np.moveaxis(a, s, d),
            _movedim_args),
    ShapeOp("expand", lambda x, sizes: x.expand(*sizes), lambda a, sizes: np.broadcast_to(
        a, _resolve_expand(a.shape, sizes)), lambda shp: _expand_args(shp).map(lambda s: (s,))),
    ShapeOp("broadcast_to", lambda x, sizes: ds.broadcast_to(x, _resolve_expand(x.shape, sizes)),
            lambda a, sizes: np.broadcast_to(a, _resolve_expand(a.shape, sizes)),
            lambda shp: _expand_args(shp).map(lambda s: (s,))),
    ShapeOp("expand_as", lambda x, sizes: x.expand_as(ds.zeros(_resolve_expand(x.shape, sizes))),
            lambda a, sizes: np.broadcast_to(a, _resolve_expand(a.shape, sizes)),
            lambda shp: _expand_args(shp).map(lambda s: (s,))),
    ShapeOp("split", ds.split, _np_split, _split_args, _shapes(min_dims=1)),
    ShapeOp("chunk", ds.chunk, _np_chunk, lambda shp: st.tuples(st.integers(1, 4), _dim(len(shp))),
            _shapes(min_dims=1)),
    ShapeOp("unbind", ds.unbind, lambda a, d: [np.take(a, i, axis=d) for i in range(a.shape[d])],
            lambda shp: _dim(len(shp)).map(lambda d: (d,)), _shapes(min_dims=1)),
    ShapeOp("flip", lambda x, dims: x.flip(*dims),
            lambda a, dims: np.flip(a, [d % a.ndim for d in dims]) if a.ndim else a.copy(),
            lambda shp: st.sets(st.integers(0, max(len(shp), 1) - 1), min_size=1).map(
                lambda s: (tuple(s),))),
    ShapeOp("roll", ds.roll, _np_roll, _roll_args),
    ShapeOp("repeat", lambda x, sizes: x.repeat(*sizes), _np_repeat,
            lambda shp: _repeat_args(shp).map(lambda s: (s,))),
    ShapeOp("tile", ds.tile, lambda a, dims: np.tile(a, dims), _tile_args),
    ShapeOp("narrow", ds.narrow, _np_narrow, _narrow_args, _shapes(min_dims=1)),
    ShapeOp("tril", ds.tril, lambda a, k: np.tril(a, k), lambda shp: st.integers(-3, 3).map(lambda k: (k,)),
            _shapes(min_dims=2)),
    ShapeOp("triu", ds.triu, lambda a, k: np.triu(a, k), lambda shp: st.integers(-3, 3).map(lambda k: (k,)),
            _shapes(min_dims=2)),
    ShapeOp("diagonal", ds.diagonal, lambda a, off, d1, d2: np.diagonal(a, off, d1, d2), _diagonal_args,
            _shapes(min_dims=2)),
    ShapeOp("diag", ds.diag, lambda a, k: np.diag(a, k), lambda shp: st.integers(-3, 3).map(lambda k: (k,)),
            _shapes(min_dims=1, max_dims=2)),
    ShapeOp("T", lambda x: x.T, lambda a: a.T),
    ShapeOp("mT", lambda x: x.mT, lambda a: np.swapaxes(a, -1, -2), shapes=_shapes(min_dims=2)),
    ShapeOp("t", ds.t, lambda a: a.T, shapes=_shapes(max_dims=2)),
]


def draw_case(data, op, dtype=ds.float64, requires_grad=False, max_side=4, max_dims=4):
    shapes = op.shapes if op.shapes is not None else _shapes()
    shape = data.draw(shapes.filter(lambda s: len(s) <= max_dims and all(d <= max_side for d in s)),
                      label="shape")
    if dtype == ds.int64:
        x = data.draw(dst.tensors(shape=shape, dtype=dtype))
    else:
        x = data.draw(dst.tensors(shape=shape, dtype=dtype, elements=R, requires_grad=requires_grad))
    args = data.draw(op.args(shape), label="args")
    return x, args


def _as_list(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


@pytest.mark.parametrize("op", SHAPE_OPS, ids=repr)
@pytest.mark.parametrize("dtype", [ds.float32, ds.int64], ids=str)
@FAST
@given(data=st.data())
def test_shape_forward(op, dtype, data):
    x, args = draw_case(data, op, dtype)
    out = op.fn(x, *args)
    expected = op.ref(x.numpy(), *args)
    outs, exps = _as_list(out), _as_list(expected)
    assert len(outs) == len(exps), f"{op.name}{args}: {len(outs)} outputs, expected {len(exps)}"
    for o, e in zip(outs, exps):
        assert isinstance(o, ds.Tensor) and o.dtype == dtype
        assert_close(o, np.asarray(e), rtol=0, atol=0, msg=f"{op.name}{args}")


@pytest.mark.parametrize("op", SHAPE_OPS, ids=repr)
@GRAD
@given(data=st.data())
def test_shape_gradcheck(op, data):
    x, args = draw_case(data, op, requires_grad=True, max_side=3, max_dims=3)
    if not _as_list(op.fn(x, *args)):        # e.g. unbind along an empty dim: nothing to check
        return
    assert gradcheck(lambda t: op.fn(t, *args), (x,))


# ------------------------------------------------------------------ several inputs

@FAST
@given(data=st.data())
def test_cat_and_stack(data):
    shape = data.draw(_shapes(min_dims=1, max_dims=3, max_side=3), label="shape")
    d = data.draw(_dim(len(shape)), label="dim")
    n = data.draw(st.integers(1, 3), label="n")
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n), label="sizes")
    xs = []
    for s in sizes:
        shp = list(shape)
        shp[d] = s
        xs.append(data.draw(dst.tensors(shape=tuple(shp), elements=R, requires_grad=True)))
    arrays = [x.detach().numpy() for x in xs]
    assert_close(ds.cat(xs, d), np.concatenate(arrays, axis=d))
    assert gradcheck(lambda *ts: ds.cat(ts, d), xs)
    same = [data.draw(dst.tensors(shape=shape, elements=R, requires_grad=True)) for _ in range(n)]
    sd = data.draw(_dim(len(shape), 1), label="stack dim")
    assert_close(ds.stack(same, sd), np.stack([x.detach().numpy() for x in same], axis=sd))
    assert gradcheck(lambda *ts: ds.stack(ts, sd), same)


def test_cat_promotes_and_skips_legacy_empty_1d():
    a = ds.ones(2, 3, dtype=ds.float32)
    b = ds.zeros(1, 3, dtype=ds.float64)
    assert ds.cat([a, b]).dtype == ds.float64
    assert ds.cat([a, ds.zeros(0)], 0).shape == (2, 3)           # PyTorch allows this
    assert ds.stack([ds.tensor(1.0), ds.tensor(2.0)]).shape == (2,)
    with pytest.raises(RuntimeError, match="cat"):
        ds.cat([a, ds.ones(2, 4)], 0)
    with pytest.raises(RuntimeError, match="stack"):
        ds.stack([a, ds.ones(3, 2)])


@FAST
@given(data=st.data())
def test_broadcast_tensors(data):
    s = data.draw(dst.mutually_broadcastable_shapes(3, max_dims=3, min_side=0, max_side=3))
    xs = [data.draw(dst.tensors(shape=shp, elements=R, requires_grad=True)) for shp in s.input_shapes]
    outs = ds.broadcast_tensors(*xs)
    exps = np.broadcast_arrays(*[x.detach().numpy() for x in xs])
    for o, e in zip(outs, exps):
        assert o.shape == s.result_shape
        assert_close(o, e)
    assert gradcheck(lambda *ts: ds.broadcast_tensors(*ts), xs)
    assert ds.broadcast_shapes(*s.input_shapes) == s.result_shape


# ------------------------------------------------------------------ semantics and errors

def test_pytorch_edge_semantics():
    assert ds.chunk(ds.ones(5), 3)[-1].shape == (1,)
    assert [c.shape for c in ds.chunk(ds.ones(6), 4)] == [(2,), (2,), (2,)]
    assert [c.shape for c in ds.chunk(ds.ones(0), 3)] == [(0,)] * 3
    assert [c.shape for c in ds.split(ds.ones(0), 2)] == [(0,)]
    assert ds.unbind(ds.ones(0, 2), 0) == ()
    assert ds.ones(1, 3).squeeze(1).shape == (1, 3)              # not size 1: left alone
    assert ds.tensor(1.0).squeeze(0).shape == ()
    assert ds.tensor(1.0).flatten().shape == (1,)
    assert ds.ones(2, 0, 3).flatten(1).shape == (2, 0)
    assert ds.ones(2, 3, 4).T.shape == (4, 3, 2)
    assert ds.tensor(1.0).T.shape == ()
    assert ds.diag(ds.ones(3), -4).shape == (7, 7)
    assert ds.diagonal(ds.ones(2, 3), 5).shape == (0,)
    assert ds.ones(2, 3).repeat(2, 0, 1).shape == (2, 0, 3)
    assert ds.tensor(1.0).repeat(2, 3).shape == (2, 3)
    assert ds.tile(ds.ones(2, 3), (2,)).shape == (2, 6)
    assert ds.roll(ds.tensor(1.0), 1).shape == ()


def test_shape_errors_name_the_op():
    x = ds.ones(2, 3)
    with pytest.raises(RuntimeError, match="reshape"):
        x.reshape(4, 2)
    with pytest.raises(RuntimeError, match="reshape"):
        x.reshape(-1, -1)
    with pytest.raises(RuntimeError, match="expand"):
        x.expand(3, 3)
    with pytest.raises(RuntimeError, match="permute"):
        x.permute(0, 0)
    with pytest.raises(IndexError, match="transpose"):
        x.transpose(0, 2)
    with pytest.raises(IndexError, match="narrow"):
        x.narrow(1, 2, 2)
    with pytest.raises(RuntimeError, match="split"):
        ds.split(x, [1, 1], 1)
    with pytest.raises(RuntimeError, match="repeat"):
        x.repeat(2)
    with pytest.raises(RuntimeError, match="tril"):
        ds.tril(ds.ones(3))
    with pytest.raises(RuntimeError, match="broadcast"):
        ds.broadcast_tensors(ds.ones(2), ds.ones(3))


@pytest.mark.parametrize("make_view", [
    lambda b: b.reshape(6), lambda b: b.view(3, 2), lambda b: b.transpose(0, 1), lambda b: b.T,
    lambda b: b.permute(1, 0), lambda b: b.mT, lambda b: b.narrow(1, 1, 2), lambda b: b.diagonal(),
    lambda b: b.unsqueeze(0), lambda b: b[None].squeeze(0), lambda b: b.unbind(0)[1],
    lambda b: b.split(1, 0)[0], lambda b: b.flatten(), lambda b: b.movedim(0, 1),
], ids=["reshape", "view", "transpose", "T", "permute", "mT", "narrow", "diagonal", "unsqueeze",
        "squeeze", "unbind", "split", "flatten", "movedim"])
def test_views_share_memory_and_version_with_base(make_view):
    base = ds.arange(6, dtype=ds.float64).reshape(2, 3)
    v = make_view(base)
    before = v.numpy().copy()
    base.add_(10.0)
    assert_close(v, before + 10.0)
    assert v._version_count == base._version_count


@pytest.mark.parametrize("grad", [False, True])
def test_inplace_into_expanded_view_is_rejected(grad):
    """Expanded tensors alias memory; PyTorch refuses in-place writes into them."""
    x = ds.ones(1, 3, dtype=ds.float64, requires_grad=grad)
    e = (x * 1).expand(2, 3)
    with pytest.raises(RuntimeError, match="add_"):
        e.add_(1.0)


# ------------------------------------------------------------------ against PyTorch

TORCH_SUBSET = ["reshape", "flatten", "unflatten", "squeeze", "permute", "movedim", "expand", "split",
                "chunk", "unbind", "flip", "roll", "repeat", "tile", "narrow", "tril", "diagonal", "diag",
                "T", "mT"]


def _torch_call(torch, name, t, args):
    if name in ("reshape", "permute", "expand", "repeat"):
        return getattr(t, name)(args[0])
    if name == "squeeze":
        return t.squeeze(*args)
    if name == "flip":
        return torch.flip(t, args[0])
    if name in ("T", "mT"):
        return getattr(t, name)
    if name == "tile":
        return torch.tile(t, args[0])
    return getattr(torch, name)(t, *args)


@pytest.mark.parametrize("name", TORCH_SUBSET)
@pytest.mark.filterwarnings("ignore::UserWarning")
@GRAD
@given(data=st.data())
def test_against_torch(name, data):
    torch = pytest.importorskip("torch")
    op = {o.name: o for o in SHAPE_OPS}[name]
    x, args = draw_case(data, op, requires_grad=True, max_side=3, max_dims=3)
    t = torch.tensor(x.detach().numpy(), requires_grad=True)
    outs, touts = _as_list(op.fn(x, *args)), _as_list(_torch_call(torch, name, t, args))
    assert len(outs) == len(touts)
    rng = np.random.default_rng(0)
    vs = [rng.standard_normal(o.shape) for o in outs]
    for o, to in zip(outs, touts):
        assert_close(o, to.detach().numpy())
    if not outs:
        return
    (g,) = ds.autograd.grad(outs, [x], [ds.tensor(v) for v in vs], allow_unused=True)
    (tg,) = torch.autograd.grad(touts, [t], [torch.tensor(v) for v in vs], allow_unused=True)
    g = np.zeros(x.shape) if g is None else g.numpy()
    tg = np.zeros(x.shape) if tg is None else tg.numpy()
    assert_close(g, tg, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ regressions (review)

@pytest.mark.parametrize("make", [lambda x: ds.cat([x]), lambda x: ds.stack([x]),
                                  lambda x: ds.cat([x, ds.zeros(0)])])
def test_cat_and_stack_of_one_tensor_return_a_new_tensor(make):
    x = ds.zeros(3)
    y = make(x)
    y += 1
    assert x.tolist() == [0.0, 0.0, 0.0]


def test_flip_returns_a_copy_not_a_silent_view():
    x = ds.tensor([1.0, 2.0, 3.0])
    w = ds.ones(3, dtype=ds.float32, requires_grad=True)
    y = x.flip(0)
    loss = (y * w).sum()
    x.add_(10.0)                   # must not change y (PyTorch's flip copies)
    loss.backward()
    assert y.tolist() == [3.0, 2.0, 1.0] and w.grad.tolist() == [3.0, 2.0, 1.0]


def test_diagonal_is_a_writable_view():
    A = ds.zeros(3, 3)
    A.diagonal().add_(1.0)         # the regularization idiom A.diagonal().add_(eps)
    A.diagonal(1).fill_(2.0)
    A.diagonal()[0] = 5.0
    assert A.tolist() == [[5.0, 2.0, 0.0], [0.0, 1.0, 2.0], [0.0, 0.0, 1.0]]
    B = ds.ones(3).expand(3, 3)    # a read-only base stays read-only
    with pytest.raises(RuntimeError):
        B.diagonal().add_(1.0)


def test_contiguous():
    x = ds.arange(6.0, dtype=ds.float64).reshape(2, 3).requires_grad_()
    assert x.is_contiguous() and x.contiguous() is x
    t = x.T
    assert not t.is_contiguous()
    c = t.contiguous()
    assert c.is_contiguous() and np.array_equal(c.detach().numpy(), t.detach().numpy())
    (c * ds.arange(6.0, dtype=ds.float64).reshape(3, 2)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.arange(6.0).reshape(3, 2).T)
