"""What runs inside a DataLoader worker process, and what crosses the process boundary.

A worker gets tasks ``(send_idx, indices)`` from its own index queue, fetches and collates
the batch, converts every Tensor in it to a numpy array (``_TensorBox``) and puts
``(send_idx, batch)`` on the shared result queue. ``None`` on the index queue means "exit";
``_ResumeIteration`` means "start a new epoch" (persistent workers). Exceptions travel as an
``ExceptionWrapper`` holding the worker's traceback text.
"""
from __future__ import annotations

import collections.abc
import os
import pickle
import queue
import random
import sys
import traceback

import numpy as np

from ..autodiff import backend
from ..autodiff import random as _random
from ..autodiff.tensor import Tensor

STATUS_CHECK_INTERVAL = 0.5     # seconds between liveness checks while waiting on a queue


class WorkerInfo:
    """What ``get_worker_info()`` returns inside a worker process.

    Attributes: ``id`` (0 .. num_workers-1), ``num_workers``, ``seed`` (this worker's seed,
    ``base_seed + id``; numpy's global RNG, Python's ``random`` and diffsim's default generator
    were seeded from it) and ``dataset`` (this process's copy of the dataset).
    """
    __slots__ = ("id", "num_workers", "seed", "dataset")

    def __init__(self, id, num_workers, seed, dataset):  # noqa: A002
        self.id, self.num_workers, self.seed, self.dataset = id, num_workers, seed, dataset

    def __setattr__(self, key, value):
        if hasattr(self, key):
            raise RuntimeError(f"WorkerInfo: cannot assign attribute {key!r}; it is read-only")
        object.__setattr__(self, key, value)

    def __repr__(self):
        return (f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed}, "
                f"dataset={type(self.dataset).__name__})")


_worker_info = None


def get_worker_info():
    """Inside a DataLoader worker process: its ``WorkerInfo`` (``id``, ``num_workers``, ``seed``,
    ``dataset``); in the main process: ``None``. Use it in ``IterableDataset.__iter__`` to
    shard the stream between workers, or in ``worker_init_fn`` to configure each copy."""
    return _worker_info


class ExceptionWrapper:
    """An exception caught in a worker: its type (when picklable), name and traceback text."""

    def __init__(self, exc_info, where):
        exc_type = exc_info[0]
        self.type_name = exc_type.__name__
        self.msg = "".join(traceback.format_exception(*exc_info))
        self.where = where
        try:                                  # the type itself only if the parent can load it
            pickle.loads(pickle.dumps(exc_type))
            self.exc_type = exc_type
        except Exception:
            self.exc_type = None

    def reraise(self):
        """Raise in the main process an exception of the original type (``RuntimeError`` when that
        type cannot be rebuilt from a message) whose message holds the worker's traceback."""
        msg = f"Caught {self.type_name} {self.where}.\nOriginal {self.msg}"
        if self.exc_type is KeyError:
            msg = _KeyErrorMessage(msg)
        exc = None
        if self.exc_type is not None:
            try:
                exc = self.exc_type(msg)
            except Exception:
                exc = None
        if exc is None or str(exc) != str(msg):
            raise RuntimeError(msg) from None
        raise exc


class _KeyErrorMessage(str):
    """KeyError quotes its message; this keeps the traceback readable."""

    def __repr__(self):
        return str(self)


class _IterableDatasetStopIteration:
    def __init__(self, worker_id):
        self.worker_id = worker_id


class _ResumeIteration:
    """Sent to persistent workers at the start of a new epoch; echoed back as acknowledgement."""


class _TensorBox:
    """A Tensor's values as a numpy array, for the trip from a worker to the main process."""
    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array

    def __reduce__(self):
        return (_TensorBox, (self.array,))


def pack(data):
    """Replace every Tensor in ``data`` (recursing into dicts, namedtuples, tuples, lists) by a
    ``_TensorBox`` of its numpy values (detached, on the CPU)."""
    if isinstance(data, Tensor):
        return _TensorBox(np.ascontiguousarray(backend.to_numpy(data._data)))
    return _map_containers(data, pack)


def unpack(data):
    """The inverse of ``pack`` in the main process: boxes become CPU Tensors (never requiring
    grad); numpy arrays and other objects stay as they are."""
    if isinstance(data, _TensorBox):
        return Tensor._make(data.array, False, None, 0)
    return _map_containers(data, unpack)


def _map_containers(data, fn):
    if isinstance(data, (str, bytes, np.ndarray)):
        return data
    if isinstance(data, collections.abc.Mapping):
        items = {k: fn(v) for k, v in data.items()}
        try:
            return type(data)(items)
        except TypeError:
            return items
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(fn(d) for d in data))
    if isinstance(data, (tuple, list)):
        try:
            return type(data)(fn(d) for d in data)
        except TypeError:
            return [fn(d) for d in data]
    return data


def _numpy_seed(seed):
    """numpy's legacy global RNG wants at most 32-bit words: spread ``seed`` over four of them."""
    return np.random.SeedSequence(int(seed)).generate_state(4)


def seed_worker(seed):
    """Seed Python's ``random``, numpy's global RNG and diffsim's default generator."""
    random.seed(seed)
    np.random.seed(_numpy_seed(seed))
    _random.manual_seed(seed)


class _MapFetcher:
    def __init__(self, dataset, auto_collation, collate_fn, drop_last):
        self.dataset, self.auto_collation = dataset, auto_collation
        self.collate_fn, self.drop_last = collate_fn, drop_last

    def fetch(self, index):
        if self.auto_collation:
            getitems = getattr(self.dataset, "__getitems__", None)
            if callable(getitems):
                data = getitems(index)
            else:
                data = [self.dataset[i] for i in index]
        else:
            data = self.dataset[index]
        return self.collate_fn(data)


class _IterableFetcher:
    def __init__(self, dataset, auto_collation, collate_fn, drop_last):
        self.dataset_iter = iter(dataset)
        self.auto_collation = auto_collation
        self.collate_fn, self.drop_last = collate_fn, drop_last
        self.ended = False

    def fetch(self, index):
        if self.ended:
            raise StopIteration
        if self.auto_collation:
            data = []
            for _ in index:
                try:
                    data.append(next(self.dataset_iter))
                except StopIteration:
                    self.ended = True
                    break
            if not data or (self.drop_last and len(data) < len(index)):
                raise StopIteration
        else:
            data = next(self.dataset_iter)
        return self.collate_fn(data)


def make_fetcher(iterable, dataset, auto_collation, collate_fn, drop_last):
    cls = _IterableFetcher if iterable else _MapFetcher
    return cls(dataset, auto_collation, collate_fn, drop_last)


def _put(data_queue, idx, data, where):
    """Pickle here (not in the queue's feeder thread), so that an unpicklable batch becomes an
    error the main process sees instead of a batch that never arrives."""
    try:
        buf = pickle.dumps((idx, data), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        buf = pickle.dumps((idx, ExceptionWrapper(sys.exc_info(), where)),
                           protocol=pickle.HIGHEST_PROTOCOL)
    data_queue.put(buf)


def worker_loop(iterable, dataset, index_queue, data_queue, done_event, auto_collation,
                collate_fn, drop_last, base_seed, init_fn, worker_id, num_workers, parent_pid):
    """The body of worker process ``worker_id`` (see the module docstring for the protocol)."""
    global _worker_info
    try:
        seed = base_seed + worker_id
        seed_worker(seed)
        _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed, dataset=dataset)
        where = f"in DataLoader worker process {worker_id}"
        init_exception = None
        fetcher = None
        try:
            if init_fn is not None:
                init_fn(worker_id)
            fetcher = make_fetcher(iterable, dataset, auto_collation, collate_fn, drop_last)
        except Exception:
            init_exception = ExceptionWrapper(sys.exc_info(), where)
        iteration_end = False
        while True:
            if os.getppid() != parent_pid:          # the main process died: nobody to serve
                break
            try:
                r = index_queue.get(timeout=STATUS_CHECK_INTERVAL)
            except queue.Empty:
                continue
            if isinstance(r, _ResumeIteration):
                _put(data_queue, r, None, where)
                iteration_end = False
                if init_exception is None:
                    try:
                        fetcher = make_fetcher(iterable, dataset, auto_collation, collate_fn, drop_last)
                    except Exception:
                        init_exception = ExceptionWrapper(sys.exc_info(), where)
                continue
            if r is None:                           # the final signal
                break
            if done_event.is_set() or iteration_end:
                continue                            # skip work; wait for the final signal
            idx, index = r
            if init_exception is not None:
                data = init_exception
            else:
                try:
                    data = pack(fetcher.fetch(index))
                except StopIteration:
                    if iterable:
                        data = _IterableDatasetStopIteration(worker_id)
                        iteration_end = True
                    else:
                        data = ExceptionWrapper(sys.exc_info(), where)
                except Exception:
                    data = ExceptionWrapper(sys.exc_info(), where)
            _put(data_queue, idx, data, where)
            del data, idx, index, r
    except KeyboardInterrupt:
        pass                                        # the main process handles Ctrl-C
    if done_event.is_set():
        data_queue.cancel_join_thread()             # do not block exit on unread results
        data_queue.close()
