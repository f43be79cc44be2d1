"""``DataLoader``: batches from a dataset, in the main process or in background worker
processes, with PyTorch's semantics (``torch.utils.data.DataLoader``).

With ``num_workers > 0`` each epoch's iterator starts ``num_workers`` processes (``fork``
where the platform has it, else ``spawn``). The main process deals batches of indices to the
workers round-robin, keeping ``prefetch_factor`` batches per worker in flight, and hands the
results back in sampler order. Tensors cross the process boundary as numpy arrays, so batches
from workers are fresh CPU tensors that never require grad.

Workers end when the iterator is exhausted (unless ``persistent_workers``), when it is
garbage collected (e.g. after ``break``), when the loader holding a persistent iterator is
dropped, and at interpreter exit. A worker that dies is detected and raises instead of hanging.
"""
from __future__ import annotations

import itertools
import multiprocessing
import numbers
import os
import pickle
import queue
import time
import weakref

from ..autodiff import random as _random
from . import _worker
from .collate import default_collate, default_convert
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

# Seconds to wait for workers to exit before terminating them. A worker busy with a batch that
# nobody will read any more is killed after this grace period; that is safe because the
# queues it shares are closed with it.
SHUTDOWN_JOIN_TIMEOUT = 1.0


class _InfiniteConstantSampler(Sampler):
    """Yields ``None`` forever: the 'indices' of an IterableDataset."""

    def __iter__(self):
        while True:
            yield None


def _default_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


class DataLoader:
    """Iterate over ``dataset`` in batches.

    Arguments (as in PyTorch):

    - ``dataset``: a map-style ``Dataset`` (``__getitem__``/``__len__``) or an ``IterableDataset``.
    - ``batch_size`` (default 1): samples per batch; ``None`` turns batching off (each item is
      passed through ``collate_fn``, by default ``default_convert``).
    - ``shuffle``: a new random order each epoch (a ``RandomSampler`` drawing from
      ``generator``, default the global generator seeded by ``ds.manual_seed``).
    - ``sampler`` / ``batch_sampler``: custom index order / custom batches of indices;
      ``batch_sampler`` excludes ``batch_size``, ``shuffle``, ``sampler`` and ``drop_last``.
    - ``num_workers`` (default 0): background worker processes; 0 loads in the main process.
    - ``collate_fn``: merges a list of samples into a batch (default ``default_collate``:
      tensors/arrays [B, ...] stacked, numbers -> tensors, dicts/tuples recursively).
    - ``pin_memory``: accepted for compatibility; a no-op (CPU arrays).
    - ``drop_last``: drop the last, incomplete batch.
    - ``timeout``: seconds to wait for a batch from the workers before raising
      ``RuntimeError`` (0 waits forever; needs ``num_workers > 0``).
    - ``worker_init_fn(worker_id)``: called in each worker after seeding, before loading.
    - ``generator``: a ``ds.Generator`` for the shuffle order and the workers' base seed.
    - ``prefetch_factor`` (default 2): batches in flight per worker.
    - ``persistent_workers``: keep the workers alive between epochs.
    - ``multiprocessing_context``: a start-method name or context (default ``fork`` if
      available, else ``spawn``).

    Seeding: each ``iter(loader)`` draws a base seed from ``generator`` (or the global
    generator); worker ``i`` gets ``base_seed + i`` and seeds Python's ``random``, numpy's
    global RNG and diffsim's default generator with it (see ``get_worker_info()``). So
    ``ds.manual_seed(s)`` makes shuffle order and worker randomness reproducible, and a loader
    with workers yields the same batches in the same order as with ``num_workers=0`` (for
    datasets that do not draw random numbers).

    ``len(loader)`` is the number of batches: ``len(batch_sampler)``, or for an
    IterableDataset ``len(dataset)`` divided by ``batch_size`` (floor with ``drop_last``,
    else ceiling), ``TypeError`` if the dataset has no ``__len__``.
    """

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor=2, persistent_workers=False, pin_memory_device=""):
        if not isinstance(num_workers, numbers.Integral) or isinstance(num_workers, bool) or num_workers < 0:
            raise ValueError(f"DataLoader: num_workers option should be a non-negative integer, got "
                             f"{num_workers!r}; use num_workers=0 to disable multiprocessing")
        if timeout < 0:
            raise ValueError(f"DataLoader: timeout option should be non-negative, got {timeout!r}")
        if timeout > 0 and num_workers == 0:
            raise ValueError("DataLoader: timeout applies to waiting for worker processes; it needs "
                             "num_workers > 0")
        if prefetch_factor is None:
            prefetch_factor = 2
        if (not isinstance(prefetch_factor, numbers.Integral) or isinstance(prefetch_factor, bool)
                or prefetch_factor < 1):
            raise ValueError(f"DataLoader: prefetch_factor should be a positive integer, got "
                             f"{prefetch_factor!r}")
        if persistent_workers and num_workers == 0:
            raise ValueError("DataLoader: persistent_workers option needs num_workers > 0")
        if generator is not None and not isinstance(generator, _random.Generator):
            raise TypeError(f"DataLoader: generator must be a ds.Generator or None, got "
                            f"{type(generator).__name__}")

        self.dataset = dataset
        self.num_workers = int(num_workers)
        self.prefetch_factor = int(prefetch_factor)
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.generator = generator
        self.persistent_workers = persistent_workers
        self.multiprocessing_context = multiprocessing_context

        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            if shuffle not in (None, False):
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle "
                                 f"option, but got shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler "
                                 f"option, but got sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified "
                                 f"batch_sampler option, but got batch_sampler={batch_sampler}")
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("DataLoader: batch_sampler option is mutually exclusive with "
                                 "batch_size, shuffle, sampler, and drop_last")
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError("DataLoader: batch_size=None option disables auto-batching and is "
                             "mutually exclusive with drop_last")

        if sampler is None:
            if self._iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn
        self._iterator = None

    @property
    def _auto_collation(self):
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def _context(self):
        ctx = self.multiprocessing_context
        if ctx is None:
            return _default_context()
        if isinstance(ctx, str):
            return multiprocessing.get_context(ctx)
        return ctx

    def __iter__(self):
        """A new iterator over the batches (with ``persistent_workers``, the same workers are
        reused from epoch to epoch)."""
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        if self.persistent_workers:
            if self._iterator is None or self._iterator._state.shutdown:
                self._iterator = _MultiProcessIter(self)
            else:
                self._iterator._reset(self, first_iter=False)
            return self._iterator
        return _MultiProcessIter(self)

    def __len__(self):
        if self._iterable:
            length = len(self.dataset)          # TypeError if the dataset has no __len__
            if self.batch_size is not None:
                if self.drop_last:
                    return length // self.batch_size
                return -(-length // self.batch_size)
            return length
        return len(self._index_sampler)


def _draw_base_seed(generator):
    return int(_random.randint(0, 2**62, (1,), generator=generator).tolist()[0])


class _BaseIter:
    def __init__(self, loader):
        self._dataset = loader.dataset
        self._iterable = loader._iterable
        self._auto_collation = loader._auto_collation
        self._drop_last = loader.drop_last
        self._index_sampler = loader._index_sampler
        self._collate_fn = loader.collate_fn
        self._generator = loader.generator
        self._base_seed = _draw_base_seed(loader.generator)
        self._sampler_iter = iter(self._index_sampler)
        self._num_yielded = 0
        self._len = None
        try:
            self._len = len(loader)
        except Exception:               # no len (e.g. an IterableDataset without __len__)
            pass

    def __iter__(self):
        return self

    def _next_index(self):
        return next(self._sampler_iter)

    def __len__(self):
        if self._len is None:
            raise TypeError("DataLoader iterator: the dataset has no len()")
        return self._len


class _SingleProcessIter(_BaseIter):
    """Loads each batch in the main process when it is asked for."""

    def __init__(self, loader):
        super().__init__(loader)
        self._fetcher = _worker.make_fetcher(self._iterable, self._dataset, self._auto_collation,
                                             self._collate_fn, self._drop_last)

    def __next__(self):
        index = self._next_index()
        data = self._fetcher.fetch(index)
        self._num_yielded += 1
        return data


class _WorkerState:
    """The resources of one set of workers, kept apart from the iterator so that a
    ``weakref.finalize`` on the iterator can shut them down without keeping it alive."""

    def __init__(self):
        self.workers = []
        self.index_queues = []
        self.data_queue = None
        self.done_event = None
        self.shutdown = False


def _shutdown_workers(state):
    """Stop the workers: set the done event, send each the final signal, join them with a
    deadline and terminate any that are still alive. Safe to call more than once."""
    if state.shutdown:
        return
    state.shutdown = True
    try:
        if state.done_event is not None:
            state.done_event.set()
        for q in state.index_queues:
            try:
                q.put(None)
            except Exception:
                pass
        deadline = time.monotonic() + SHUTDOWN_JOIN_TIMEOUT
        for w in state.workers:
            w.join(timeout=max(0.0, deadline - time.monotonic()))
        for q in state.index_queues:
            try:
                q.cancel_join_thread()
                q.close()
            except Exception:
                pass
    finally:
        for w in state.workers:
            if w.is_alive():
                w.terminate()
                w.join(timeout=1.0)
        if state.data_queue is not None:
            try:
                state.data_queue.cancel_join_thread()
                state.data_queue.close()
            except Exception:
                pass


class _MultiProcessIter(_BaseIter):
    """Loads batches in worker processes, ``prefetch_factor`` per worker ahead, and returns them
    in sampler order."""

    def __init__(self, loader):
        super().__init__(loader)
        self._num_workers = loader.num_workers
        self._prefetch_factor = loader.prefetch_factor
        self._timeout = loader.timeout
        self._persistent = loader.persistent_workers
        ctx = loader._context()
        state = self._state = _WorkerState()
        state.data_queue = ctx.Queue()
        state.done_event = ctx.Event()
        # the finalizer must not reference self (it would keep the iterator alive)
        self._finalizer = weakref.finalize(self, _shutdown_workers, state)
        parent_pid = os.getpid()
        try:
            for i in range(self._num_workers):
                iq = ctx.Queue()
                iq.cancel_join_thread()         # never block the main process's exit on it
                w = ctx.Process(
                    target=_worker.worker_loop,
                    args=(self._iterable, self._dataset, iq, state.data_queue, state.done_event,
                          self._auto_collation, self._collate_fn, self._drop_last,
                          self._base_seed, loader.worker_init_fn, i, self._num_workers,
                          parent_pid),
                    daemon=True, name=f"diffsim-data-worker-{i}")
                w.start()
                state.index_queues.append(iq)
                state.workers.append(w)
        except BaseException:
            self._finalizer()
            raise
        self._reset(loader, first_iter=True)

    # ------------------------------------------------------------ epochs
    def _reset(self, loader, first_iter=False):
        self._sampler_iter = iter(self._index_sampler)
        self._num_yielded = 0
        self._send_idx = 0          # next task id to send
        self._rcvd_idx = 0          # next task id to return
        self._task_info = {}        # task id -> (worker,) or (worker, data) when out of order
        self._tasks_outstanding = 0
        self._workers_status = [True] * self._num_workers
        self._worker_cycle = itertools.cycle(range(self._num_workers))
        if not first_iter:          # persistent workers: start a new epoch in each
            for q in self._state.index_queues:
                q.put(_worker._ResumeIteration())
            remaining = self._num_workers
            while remaining > 0:
                idx, _ = self._get_data()
                if isinstance(idx, _worker._ResumeIteration):
                    remaining -= 1              # anything else is left over from the last epoch
        for _ in range(self._prefetch_factor * self._num_workers):
            self._try_put_index()

    def _try_put_index(self):
        try:
            index = self._next_index()
        except StopIteration:
            return
        for _ in range(self._num_workers):
            w = next(self._worker_cycle)
            if self._workers_status[w]:
                break
        else:
            return                              # no active worker
        self._state.index_queues[w].put((self._send_idx, index))
        self._task_info[self._send_idx] = (w,)
        self._tasks_outstanding += 1
        self._send_idx += 1

    # ------------------------------------------------------------ receiving
    def _dead_workers(self):
        return [w for w in self._state.workers if not w.is_alive()]

    def _get_data(self):
        """The next ``(task id, data)`` from any worker; raises if the timeout passes or a worker
        died."""
        st = self._state
        deadline = time.monotonic() + self._timeout if self._timeout > 0 else None
        while True:
            wait = _worker.STATUS_CHECK_INTERVAL
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            try:
                buf = st.data_queue.get(timeout=wait)
                return pickle.loads(buf)
            except queue.Empty:
                pass
            dead = self._dead_workers()
            if dead:
                # results a worker sent before it died may still be in the pipe
                try:
                    return pickle.loads(st.data_queue.get(timeout=0.05))
                except queue.Empty:
                    pass
                info = ", ".join(f"pid {w.pid} (exit code {w.exitcode})" for w in dead)
                _shutdown_workers(st)
                raise RuntimeError(f"DataLoader worker(s) exited unexpectedly: {info}. A worker may "
                                   "have been killed (e.g. out of memory) or crashed in native code; "
                                   "try num_workers=0 to see the error in the main process")
            if deadline is not None and time.monotonic() >= deadline:
                raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds waiting for "
                                   "a batch from its worker processes")

    def __next__(self):
        while True:
            # skip tasks of workers whose IterableDataset has ended
            while self._rcvd_idx < self._send_idx:
                info = self._task_info[self._rcvd_idx]
                if len(info) == 2 or self._workers_status[info[0]]:
                    break
                del self._task_info[self._rcvd_idx]
                self._rcvd_idx += 1
            else:
                if not self._persistent:
                    self._finalizer()
                raise StopIteration
            if self._state.shutdown:
                raise RuntimeError("DataLoader iterator: its workers were shut down")
            if len(self._task_info[self._rcvd_idx]) == 2:   # arrived earlier, out of order
                data = self._task_info.pop(self._rcvd_idx)[1]
                return self._process(data)
            idx, data = self._get_data()
            if isinstance(idx, _worker._ResumeIteration):
                continue
            self._tasks_outstanding -= 1
            if isinstance(data, _worker._IterableDatasetStopIteration):
                self._workers_status[data.worker_id] = False
                self._try_put_index()
                continue
            if idx not in self._task_info:                 # stale (should not happen)
                continue
            if idx != self._rcvd_idx:
                self._task_info[idx] += (data,)
            else:
                del self._task_info[idx]
                return self._process(data)

    def _process(self, data):
        self._rcvd_idx += 1
        self._try_put_index()
        if isinstance(data, _worker.ExceptionWrapper):
            data.reraise()
        self._num_yielded += 1
        return _worker.unpack(data)

    def _shutdown(self):
        """Stop the workers now (also done automatically; see the module docstring)."""
        self._finalizer()

    @property
    def _workers(self):
        return list(self._state.workers)
