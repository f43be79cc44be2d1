"""Datasets: ``Dataset``, ``IterableDataset``, ``TensorDataset``, ``Subset``, ``ConcatDataset``,
``ChainDataset`` and ``random_split``, with PyTorch's semantics (``torch.utils.data``).

A map-style dataset implements ``__getitem__(index)`` (and usually ``__len__``); an iterable
dataset implements ``__iter__``. Both can be handed to ``diffsim.data.DataLoader``.
"""
from __future__ import annotations

import bisect
import itertools
import math
import numbers
import warnings

from ..autodiff.tensor import Tensor
from ..autodiff import random as _random


class Dataset:
    """A map-style dataset: ``dataset[i]`` returns sample ``i``.

    Subclasses implement ``__getitem__(index)`` and, for samplers that need it, ``__len__()``.
    They may implement ``__getitems__(indices) -> list of samples`` to fetch a whole batch at
    once; the ``DataLoader`` then calls it with the list of a batch's indices.
    ``a + b`` concatenates two datasets (a ``ConcatDataset``).
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __add__(self, other):
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """A dataset that is a stream: ``iter(dataset)`` yields samples.

    With ``DataLoader(num_workers=N)``, every worker process iterates its own copy of the
    dataset, so each sample would appear ``N`` times unless ``__iter__`` shards the stream:
    call ``diffsim.data.get_worker_info()`` inside ``__iter__`` (``None`` in the main process;
    otherwise it has ``id`` and ``num_workers``) and yield only that worker's share.
    ``a + b`` chains two iterable datasets (a ``ChainDataset``).
    """

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")

    def __add__(self, other):
        return ChainDataset([self, other])


class TensorDataset(Dataset):
    """Samples are slices of tensors along their first dimension.

    ``TensorDataset(x, y)`` with ``x`` [N, ...] and ``y`` [N, ...] gives ``dataset[i] ==
    (x[i], y[i])`` and ``len(dataset) == N``. All tensors must have the same first dimension.
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: expected at least one tensor")
        for i, t in enumerate(tensors):
            if not isinstance(t, Tensor):
                raise TypeError(f"TensorDataset: argument {i} must be a Tensor, got {type(t).__name__}")
            if t.ndim == 0:
                raise ValueError(f"TensorDataset: argument {i} is a 0-d tensor; every tensor needs a "
                                 "first (sample) dimension")
        sizes = [t.shape[0] for t in tensors]
        if any(s != sizes[0] for s in sizes):
            raise ValueError(f"TensorDataset: size mismatch between tensors; first dimensions are {sizes}")
        self.tensors = tuple(tensors)

    def __getitem__(self, index):
        if isinstance(index, numbers.Integral) and not isinstance(index, bool):
            # a row of a tensor that does not require grad: a plain view, no graph node
            return tuple(Tensor._make(t._data[index, ...], False, None, 0) if not t.requires_grad
                         else t[index] for t in self.tensors)
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices`` (a sequence of ints): ``subset[i] ==
    dataset[indices[i]]``, ``len(subset) == len(indices)``."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices):
        inner = getattr(self.dataset, "__getitems__", None)
        if callable(inner):
            return inner([self.indices[i] for i in indices])
        return [self.dataset[self.indices[i]] for i in indices]

    def __len__(self):
        return len(self.indices)


class ConcatDataset(Dataset):
    """The concatenation of map-style datasets: indices ``0 .. len(a)-1`` are ``a``'s, then
    ``b``'s, and so on. Negative indices count from the end. ``cumulative_sizes`` holds the
    running lengths."""

    @staticmethod
    def cumsum(sequence):
        r, s = [], 0
        for e in sequence:
            s += len(e)
            r.append(s)
        return r

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise TypeError("ConcatDataset does not support IterableDataset; use ChainDataset")
        self.cumulative_sizes = self.cumsum(self.datasets)

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx):
        n = len(self)
        if not isinstance(idx, numbers.Integral) or isinstance(idx, bool):
            raise TypeError(f"ConcatDataset: index must be an int, got {type(idx).__name__}")
        idx = int(idx)
        if idx < 0:
            if -idx > n:
                raise IndexError(f"ConcatDataset: index {idx} is out of range for length {n}")
            idx += n
        if idx >= n:
            raise IndexError(f"ConcatDataset: index {idx} is out of range for length {n}")
        d = bisect.bisect_right(self.cumulative_sizes, idx)
        sample_idx = idx if d == 0 else idx - self.cumulative_sizes[d - 1]
        return self.datasets[d][sample_idx]


class ChainDataset(IterableDataset):
    """Iterable datasets one after another (``iter`` yields all of the first, then the second...)."""

    def __init__(self, datasets):
        self.datasets = datasets

    def __iter__(self):
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise TypeError("ChainDataset only supports IterableDataset")
            yield from d

    def __len__(self):
        total = 0
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise TypeError("ChainDataset only supports IterableDataset")
            total += len(d)
        return total


def random_split(dataset, lengths, generator=None):
    """Split ``dataset`` into non-overlapping random ``Subset``s of the given ``lengths``.

    ``lengths`` are ints summing to ``len(dataset)``, or fractions summing to 1: then each
    part gets ``floor(frac * len(dataset))`` samples and the remainder is dealt one by one to
    the parts in order (as PyTorch does). ``generator`` (a ``ds.Generator``; default the
    global one, see ``ds.manual_seed``) fixes the permutation.
    """
    lengths = list(lengths)
    n = len(dataset)
    if lengths and math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        subset_lengths = []
        for i, frac in enumerate(lengths):
            if frac < 0 or frac > 1:
                raise ValueError(f"random_split: fraction at index {i} is not between 0 and 1: {frac}")
            subset_lengths.append(int(math.floor(n * frac)))
        remainder = n - sum(subset_lengths)
        for i in range(remainder):
            subset_lengths[i % len(subset_lengths)] += 1
        lengths = subset_lengths
        for i, length in enumerate(lengths):
            if length == 0:
                warnings.warn(f"random_split: length of split at index {i} is 0; this might result "
                              "in an empty dataset", stacklevel=2)
    for i, length in enumerate(lengths):
        if not isinstance(length, numbers.Integral) or length < 0:
            raise ValueError(f"random_split: lengths must be non-negative ints or fractions summing "
                             f"to 1, got {length!r} at index {i}")
    if sum(lengths) != n:
        raise ValueError(f"random_split: sum of input lengths ({sum(lengths)}) does not equal the "
                         f"length of the input dataset ({n})")
    indices = _random.randperm(sum(lengths), generator=generator).tolist()
    return [Subset(dataset, indices[offset - length:offset])
            for offset, length in zip(itertools.accumulate(lengths), lengths)]
