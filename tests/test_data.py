"""diffsim.data: datasets, samplers, collation, and the DataLoader with worker processes."""
import collections
import gc
import multiprocessing
import os
import random
import signal
import time

import numpy as np
import pytest

import diffsim as ds
from diffsim.data import (BatchSampler, ChainDataset, ConcatDataset, DataLoader, Dataset,
                          IterableDataset, RandomSampler, SequentialSampler, Subset,
                          SubsetRandomSampler, TensorDataset, WeightedRandomSampler,
                          default_collate, default_convert, get_worker_info, random_split)


# ------------------------------------------------------------------ datasets used below
# (module level, so that they and their exceptions can cross process boundaries)

class Range(Dataset):
    """Sample i: (float64 array [2] = [i, -i], int i)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return np.array([i, -i], dtype=np.float64), i


class Stream(IterableDataset):
    """0 .. n-1, sharded between workers: worker k of N yields k, k+N, k+2N, ..."""

    def __init__(self, n, with_len=True):
        self.n, self.with_len = n, with_len

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))

    def __len__(self):
        if not self.with_len:
            raise TypeError("Stream without len")
        return self.n


class NoLenStream(IterableDataset):
    def __iter__(self):
        return iter(range(5))


class Failing(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 5:
            raise_from_deep_inside(i)
        return i


def raise_from_deep_inside(i):
    raise ValueError(f"sample {i} is broken")


class CustomError(Exception):
    def __init__(self, a, b):           # cannot be rebuilt from one message
        super().__init__(a, b)


class FailingCustom(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        raise CustomError("x", i)


class Slow(Dataset):
    def __init__(self, delay):
        self.delay = delay

    def __len__(self):
        return 100

    def __getitem__(self, i):
        time.sleep(self.delay)
        return i


class Suicidal(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 3 and get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return i


class WorkerRandom(Dataset):
    """Returns the worker's id and seed and a draw from each RNG the loader seeds."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        info = get_worker_info()
        return dict(worker=info.id, seed=info.seed, np=np.random.rand(), py=random.random(),
                    ds=ds.rand(()).item())


class GradTensors(Dataset):
    def __init__(self):
        self.w = ds.ones(3, dtype=ds.float64, requires_grad=True)

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return self.w * i


Pair = collections.namedtuple("Pair", "a b")


class Nested(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return {"p": Pair(np.float32(i), f"s{i}"), "t": (ds.tensor([i]), [i, 2.0])}


def _children_alive(pids):
    alive = {p.pid for p in multiprocessing.active_children()}
    return [p for p in pids if p in alive]


# ------------------------------------------------------------------ collation

def test_collate_tensors_arrays_numbers():
    b = default_collate([ds.tensor([1.0, 2.0]), ds.tensor([3.0, 4.0])])
    assert isinstance(b, ds.Tensor) and b.shape == (2, 2) and b.dtype == ds.float32
    a = default_collate([np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32)])
    assert isinstance(a, ds.Tensor) and a.shape == (2, 2, 3) and a.dtype == ds.float32
    np.testing.assert_array_equal(a.numpy()[1], 1)
    s = default_collate([np.float32(1.5), np.float32(2.5)])
    assert s.dtype == ds.float32 and s.tolist() == [1.5, 2.5]
    f = default_collate([1.0, 2.5])
    assert f.dtype == ds.float64 and f.tolist() == [1.0, 2.5]
    i = default_collate([1, 2, 3])
    assert i.dtype == ds.int64 and i.tolist() == [1, 2, 3]
    t = default_collate([True, False])
    assert t.dtype == ds.bool and t.tolist() == [True, False]


def test_collate_strings_dicts_sequences_namedtuples():
    assert default_collate(["a", "b"]) == ["a", "b"]
    assert default_collate([b"a", b"b"]) == [b"a", b"b"]
    d = default_collate([{"x": 1.0, "name": "p", "v": np.arange(2)},
                         {"x": 2.0, "name": "q", "v": np.arange(2) + 2}])
    assert set(d) == {"x", "name", "v"}
    assert d["x"].tolist() == [1.0, 2.0] and d["name"] == ["p", "q"]
    assert d["v"].tolist() == [[0, 1], [2, 3]]
    tup = default_collate([(ds.tensor([1.0]), 0), (ds.tensor([2.0]), 1)])
    assert isinstance(tup, list) and tup[0].shape == (2, 1) and tup[1].tolist() == [0, 1]
    lst = default_collate([[1, 2.0], [3, 4.0]])
    assert isinstance(lst, list) and lst[0].tolist() == [1, 3] and lst[1].dtype == ds.float64
    Point = collections.namedtuple("Point", "x y")
    p = default_collate([Point(1.0, np.zeros(2)), Point(2.0, np.ones(2))])
    assert type(p) is Point and p.x.tolist() == [1.0, 2.0] and p.y.shape == (2, 2)
    nested = default_collate([{"a": (1, {"b": [1.0, 2.0]})}, {"a": (2, {"b": [3.0, 4.0]})}])
    assert nested["a"][0].tolist() == [1, 2]
    assert nested["a"][1]["b"][0].tolist() == [1.0, 3.0]


def test_collate_errors_name_the_type():
    with pytest.raises(TypeError, match="NoneType"):
        default_collate([None, None])
    with pytest.raises(TypeError, match="object"):
        default_collate([np.array([object()]), np.array([object()])])
    with pytest.raises(TypeError, match="set"):
        default_collate([{1}, {2}])
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError, match="sample 1"):
        default_collate([ds.tensor(1.0), 2.0])


def test_default_convert():
    c = default_convert({"a": np.arange(3), "b": (np.float32(1), "s"), "c": 5})
    assert isinstance(c["a"], ds.Tensor) and c["a"].tolist() == [0, 1, 2]
    assert isinstance(c["b"], list) and c["b"][0].dtype == ds.float32 and c["b"][1] == "s"
    assert c["c"] == 5


# ------------------------------------------------------------------ datasets

def test_tensor_dataset_subset_concat():
    x, y = ds.arange(10).double().reshape(5, 2), ds.arange(5)
    td = TensorDataset(x, y)
    assert len(td) == 5 and td[2][0].tolist() == [4.0, 5.0] and td[2][1].item() == 2
    with pytest.raises(ValueError, match="size mismatch"):
        TensorDataset(x, ds.arange(4))
    sub = Subset(td, [4, 0])
    assert len(sub) == 2 and sub[0][1].item() == 4 and sub[1][1].item() == 0
    cat = ConcatDataset([Range(3), Range(2)])
    assert len(cat) == 5 and cat.cumulative_sizes == [3, 5]
    assert [cat[i][1] for i in range(5)] == [0, 1, 2, 0, 1]
    assert cat[-1][1] == 1 and cat[-5][1] == 0
    with pytest.raises(IndexError):
        cat[5]
    with pytest.raises(IndexError):
        cat[-6]
    assert len(Range(3) + Range(4)) == 7
    with pytest.raises(TypeError, match="IterableDataset"):
        ConcatDataset([Stream(3)])
    assert list(ChainDataset([Stream(2), Stream(3)])) == [0, 1, 0, 1, 2]


def test_random_split_ints_fractions_and_generator():
    data = Range(10)
    a, b = random_split(data, [7, 3], generator=ds.Generator().manual_seed(1))
    got = sorted(a.indices + b.indices)
    assert len(a) == 7 and len(b) == 3 and got == list(range(10))
    a2, b2 = random_split(data, [7, 3], generator=ds.Generator().manual_seed(1))
    assert a2.indices == a.indices and b2.indices == b.indices
    parts = random_split(data, [0.5, 0.3, 0.2])
    assert [len(p) for p in parts] == [5, 3, 2]
    parts = random_split(Range(11), [0.5, 0.5])            # remainder dealt round-robin
    assert [len(p) for p in parts] == [6, 5]
    ds.manual_seed(3)
    s1 = [p.indices for p in random_split(data, [5, 5])]
    ds.manual_seed(3)
    assert [p.indices for p in random_split(data, [5, 5])] == s1
    with pytest.raises(ValueError, match="does not equal"):
        random_split(data, [5, 6])


# ------------------------------------------------------------------ samplers

def test_samplers():
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3]
    g = ds.Generator().manual_seed(0)
    perm = list(RandomSampler(range(6), generator=g))
    assert sorted(perm) == list(range(6))
    long = list(RandomSampler(range(4), num_samples=10, generator=g))
    assert len(long) == 10 and sorted(long[:4]) == [0, 1, 2, 3] and sorted(long[4:8]) == [0, 1, 2, 3]
    rep = list(RandomSampler(range(3), replacement=True, num_samples=50, generator=g))
    assert len(rep) == 50 and set(rep) <= {0, 1, 2}
    sub = list(SubsetRandomSampler([10, 20, 30], generator=g))
    assert sorted(sub) == [10, 20, 30]
    w = list(WeightedRandomSampler([0.0, 1.0, 3.0], 200, generator=g))
    assert len(w) == 200 and 0 not in w and w.count(2) > w.count(1)
    w = list(WeightedRandomSampler([1.0, 1.0, 1.0, 0.0], 3, replacement=False, generator=g))
    assert sorted(w) == [0, 1, 2]
    bs = BatchSampler(SequentialSampler(range(7)), 3, drop_last=False)
    assert list(bs) == [[0, 1, 2], [3, 4, 5], [6]] and len(bs) == 3
    bs = BatchSampler(SequentialSampler(range(7)), 3, drop_last=True)
    assert list(bs) == [[0, 1, 2], [3, 4, 5]] and len(bs) == 2
    with pytest.raises(ValueError):
        BatchSampler(range(3), 0, False)
    with pytest.raises(ValueError):
        RandomSampler(range(3), num_samples=0)


# ------------------------------------------------------------------ DataLoader, main process

def test_order_len_and_drop_last():
    dl = DataLoader(Range(10), batch_size=4)
    batches = list(dl)
    assert len(dl) == 3 and len(batches) == 3
    x, i = batches[0]
    assert x.shape == (4, 2) and x.dtype == ds.float64 and i.tolist() == [0, 1, 2, 3]
    assert batches[2][1].tolist() == [8, 9]
    dl = DataLoader(Range(10), batch_size=4, drop_last=True)
    assert len(dl) == 2 and [b[1].tolist() for b in dl] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    dl = DataLoader(Range(3), batch_size=None)
    items = list(dl)
    assert len(dl) == 3 and items[1][1] == 1 and isinstance(items[1][0], ds.Tensor)
    dl = DataLoader(Range(6), batch_sampler=[[5, 0], [2]])
    assert [b[1].tolist() for b in dl] == [[5, 0], [2]]
    assert len(DataLoader(Stream(10), batch_size=4)) == 3
    assert len(DataLoader(Stream(10), batch_size=4, drop_last=True)) == 2
    assert [b.tolist() for b in DataLoader(Stream(5), batch_size=2)] == [[0, 1], [2, 3], [4]]
    assert [b.tolist() for b in DataLoader(Stream(5), batch_size=2, drop_last=True)] == [[0, 1], [2, 3]]
    with pytest.raises(TypeError):
        len(DataLoader(NoLenStream(), batch_size=2))
    assert len(list(DataLoader(NoLenStream(), batch_size=2))) == 3


def test_option_errors():
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(Range(4), batch_sampler=[[0]], batch_size=2)
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(Range(4), sampler=SequentialSampler(range(4)), shuffle=True)
    with pytest.raises(ValueError, match="shuffle"):
        DataLoader(Stream(4), shuffle=True)
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(Range(4), num_workers=-1)
    with pytest.raises(ValueError, match="persistent_workers"):
        DataLoader(Range(4), persistent_workers=True)
    with pytest.raises(ValueError, match="timeout"):
        DataLoader(Range(4), timeout=-1)


def test_shuffle_is_a_permutation_and_seeded():
    dl = DataLoader(Range(20), batch_size=5, shuffle=True)
    ds.manual_seed(7)
    e1 = [i for _, b in dl for i in b.tolist()]
    e2 = [i for _, b in dl for i in b.tolist()]
    assert sorted(e1) == list(range(20)) and e1 != list(range(20)) and e1 != e2
    ds.manual_seed(7)
    assert [i for _, b in dl for i in b.tolist()] == e1
    g = ds.Generator().manual_seed(5)
    dg = DataLoader(Range(20), batch_size=5, shuffle=True, generator=g)
    o1 = [i for _, b in dg for i in b.tolist()]
    g.manual_seed(5)
    ds.manual_seed(123)                     # the global generator does not matter with generator=
    assert [i for _, b in dg for i in b.tolist()] == o1


# ------------------------------------------------------------------ DataLoader with workers

def test_workers_give_the_same_batches_in_the_same_order():
    for shuffle in (False, True):
        ds.manual_seed(11)
        ref = [(x.numpy().copy(), i.tolist())
               for x, i in DataLoader(Range(23), batch_size=4, shuffle=shuffle)]
        ds.manual_seed(11)
        got = [(x.numpy(), i.tolist())
               for x, i in DataLoader(Range(23), batch_size=4, shuffle=shuffle, num_workers=2,
                                      prefetch_factor=3)]
        assert [g[1] for g in got] == [r[1] for r in ref]
        for (gx, _), (rx, _) in zip(got, ref):
            np.testing.assert_array_equal(gx, rx)
    assert [i for _, i in DataLoader(Range(5), batch_size=None, num_workers=2)] == list(range(5))


def test_worker_seeds_are_distinct_and_reproducible():
    def draws():
        ds.manual_seed(42)
        out = list(DataLoader(WorkerRandom(), batch_size=None, num_workers=2,
                              worker_init_fn=_init_fn))
        return [(d["worker"], d["seed"], d["np"], d["py"], d["ds"]) for d in out]
    a, b = draws(), draws()
    assert a == b
    assert [r[0] for r in a] == [0, 1, 0, 1]                  # round-robin
    assert a[1][1] == a[0][1] + 1                              # base_seed + worker_id
    assert a[0][2:] != a[1][2:]                                # different streams per worker
    ds.manual_seed(43)
    c = list(DataLoader(WorkerRandom(), batch_size=None, num_workers=2))
    assert c[0]["seed"] != a[0][1]


def _init_fn(worker_id):
    info = get_worker_info()
    assert info is not None and info.id == worker_id and info.num_workers == 2


def test_iterable_dataset_sharding():
    assert get_worker_info() is None
    dl = DataLoader(Stream(11), batch_size=2, num_workers=2)
    got = [b.tolist() for b in dl]
    # worker 0 has 0,2,4,..,10; worker 1 has 1,3,..,9; batches alternate between workers
    assert got == [[0, 2], [1, 3], [4, 6], [5, 7], [8, 10], [9]]
    flat = sorted(i for b in got for i in b)
    assert flat == list(range(11))
    dl = DataLoader(Stream(11), batch_size=2, num_workers=2, drop_last=True)
    assert sorted(i for b in dl for i in b.tolist()) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10]


def test_tensors_from_workers_do_not_require_grad_and_arrays_stay_arrays():
    batches = list(DataLoader(GradTensors(), batch_size=2, num_workers=2))
    assert all(isinstance(b, ds.Tensor) and not b.requires_grad for b in batches)
    assert batches[1].tolist() == [[2.0] * 3, [3.0] * 3]
    raw = list(DataLoader(Range(4), batch_size=2, num_workers=1,
                          collate_fn=lambda items: np.stack([x for x, _ in items])))
    assert isinstance(raw[0], np.ndarray) and raw[1][1].tolist() == [3.0, -3.0]


def test_nested_batches_cross_the_process_boundary():
    ref = list(DataLoader(Nested(), batch_size=2))
    got = list(DataLoader(Nested(), batch_size=2, num_workers=2))
    for r, g in zip(ref, got):
        assert type(g["p"]) is Pair and g["p"].b == r["p"].b
        assert g["p"].a.dtype == ds.float32 and g["p"].a.tolist() == r["p"].a.tolist()
        assert g["t"][0].tolist() == r["t"][0].tolist()
        assert [c.tolist() for c in g["t"][1]] == [c.tolist() for c in r["t"][1]]
    assert [b.tolist() for b in DataLoader(Stream(1), batch_size=2, num_workers=2)] == [[0]]
    assert list(DataLoader(Stream(0), batch_size=2, num_workers=2)) == []


def test_worker_error_is_reraised_with_the_traceback():
    it = iter(DataLoader(Failing(), batch_size=2, num_workers=2))
    assert next(it).tolist() == [0, 1]
    assert next(it).tolist() == [2, 3]
    with pytest.raises(ValueError) as e:
        next(it)
    msg = str(e.value)
    assert "Caught ValueError in DataLoader worker process 0" in msg
    assert "raise_from_deep_inside" in msg and "sample 5 is broken" in msg and "Traceback" in msg
    del it
    with pytest.raises(RuntimeError, match="CustomError in DataLoader worker process"):
        list(DataLoader(FailingCustom(), batch_size=2, num_workers=1))


def test_workers_end_after_break_exhaustion_and_loader_drop():
    it = iter(DataLoader(Range(200), batch_size=2, num_workers=2))
    next(it)
    pids = [w.pid for w in it._workers]
    assert len(_children_alive(pids)) == 2
    del it
    gc.collect()
    assert _children_alive(pids) == []

    loader = DataLoader(Range(200), batch_size=2, num_workers=2)
    for _ in loader:
        break
    gc.collect()
    assert multiprocessing.active_children() == []

    it = iter(DataLoader(Range(6), batch_size=2, num_workers=2))
    pids = [w.pid for w in it._workers]
    assert len(list(it)) == 3
    assert _children_alive(pids) == []

    loader = DataLoader(Range(10), batch_size=2, num_workers=2, persistent_workers=True)
    e1 = [i.tolist() for _, i in loader]
    pids = [w.pid for w in loader._iterator._workers]
    for _, i in loader:                               # a broken epoch leaves stale tasks behind
        break
    e2 = [i.tolist() for _, i in loader]
    assert e1 == e2 == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert [w.pid for w in loader._iterator._workers] == pids
    assert len(_children_alive(pids)) == 2                # persistent across epochs
    del loader
    gc.collect()
    assert _children_alive(pids) == []


def test_timeout_raises():
    dl = DataLoader(Slow(3.0), batch_size=1, num_workers=1, timeout=0.3)
    it = iter(dl)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="timed out after 0.3 seconds"):
        next(it)
    assert time.monotonic() - t0 < 2.5
    pids = [w.pid for w in it._workers]
    t0 = time.monotonic()
    del it                                  # the busy worker is stopped, not waited for
    gc.collect()
    assert time.monotonic() - t0 < 2.5 and _children_alive(pids) == []
    assert multiprocessing.active_children() == []


def test_dead_worker_is_detected():
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        list(DataLoader(Suicidal(), batch_size=1, num_workers=2))
    assert time.monotonic() - t0 < 10
    gc.collect()
    assert multiprocessing.active_children() == []


def _unpicklable_collate(items):
    return [lambda: i for i in items]


def test_unpicklable_batch_becomes_an_error_not_a_hang():
    with pytest.raises(Exception, match="in DataLoader worker process 0"):
        list(DataLoader(Range(4), batch_size=2, num_workers=1, collate_fn=_unpicklable_collate,
                        timeout=10))


def test_spawn_context():
    dl = DataLoader(Stream(7), batch_size=2, num_workers=2, multiprocessing_context="spawn")
    assert [b.tolist() for b in dl] == [[0, 2], [1, 3], [4, 6], [5]]
    gc.collect()
    assert multiprocessing.active_children() == []


def test_collate_keeps_the_graph_of_tensors_that_require_grad():
    w = ds.tensor([1.0, 2.0], dtype=ds.float64, requires_grad=True)
    b = default_collate([w * 2, w * 3])
    assert b.requires_grad and b.shape == (2, 2)
    b.sum().backward()
    assert w.grad.tolist() == [5.0, 5.0]
    with pytest.raises(RuntimeError, match=r"\[2\], \[3\]"):
        default_collate([ds.zeros(2), ds.zeros(3)])
    x = ds.arange(6, dtype=ds.float64).reshape(3, 2).requires_grad_()
    (xb,) = next(iter(DataLoader(TensorDataset(x), batch_size=3)))
    (xb * xb).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 2 * x.detach().numpy())


def test_shuffled_loader_over_an_empty_dataset():
    # shuffle=True over an empty dataset gives an empty epoch (as shuffle=False does), not a
    # ZeroDivisionError from the sampler
    empty = TensorDataset(ds.zeros(0, 2))
    for num_workers in (0, 2):
        loader = DataLoader(empty, batch_size=2, shuffle=True, num_workers=num_workers)
        assert len(loader) == 0 and list(loader) == []
    assert list(RandomSampler(empty)) == []
    with pytest.raises(ValueError, match="empty"):
        list(RandomSampler(empty, replacement=True, num_samples=3))
