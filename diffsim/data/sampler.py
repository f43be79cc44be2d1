"""Samplers: iterables of dataset indices (or of lists of indices, for ``BatchSampler``), with
PyTorch's semantics (``torch.utils.data.sampler``).

Random samplers draw from a ``ds.Generator``; without one they draw from the global generator
(``ds.manual_seed``), so a seeded program gets the same order every run.
"""
from __future__ import annotations

import numbers

from ..autodiff import random as _random
from ..autodiff.creation import as_tensor
from ..autodiff.tensor import Tensor
from ..autodiff import dtypes


class Sampler:
    """Base class: ``__iter__`` yields indices; ``__len__`` (optional) gives how many."""

    def __init__(self, data_source=None):
        pass

    def __iter__(self):
        raise NotImplementedError


class SequentialSampler(Sampler):
    """Yields ``0, 1, ..., len(data_source) - 1``."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


def _check_generator(generator, who):
    if generator is not None and not isinstance(generator, _random.Generator):
        raise TypeError(f"{who}: generator must be a ds.Generator or None, got {type(generator).__name__}")


class RandomSampler(Sampler):
    """Random indices of ``data_source``.

    Without ``replacement``: a fresh permutation of ``range(n)`` each epoch (``num_samples`` >
    n chains several permutations, the last one cut short). With ``replacement``:
    ``num_samples`` (default n) independent uniform draws from ``range(n)``. Without a
    ``generator``, each ``iter()`` draws a seed from the global generator.
    """

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        if not isinstance(replacement, bool):
            raise TypeError(f"RandomSampler: replacement should be a bool, got {replacement!r}")
        if num_samples is not None and (not isinstance(num_samples, numbers.Integral)
                                        or isinstance(num_samples, bool) or num_samples <= 0):
            raise ValueError(f"RandomSampler: num_samples should be a positive integer, got {num_samples!r}")
        _check_generator(generator, "RandomSampler")

    @property
    def num_samples(self):
        return len(self.data_source) if self._num_samples is None else int(self._num_samples)

    def __iter__(self):
        n = len(self.data_source)
        if self.generator is None:
            seed = int(_random.randint(0, 2**62, (1,)).tolist()[0])
            generator = _random.Generator().manual_seed(seed)
        else:
            generator = self.generator
        if n == 0:
            if self.replacement and self.num_samples > 0:
                raise ValueError(f"RandomSampler: cannot draw {self.num_samples} samples with "
                                 "replacement from an empty data_source")
            return          # an empty dataset: an empty epoch, as with SequentialSampler
        if self.replacement:
            for _ in range(self.num_samples // 32):
                yield from _random.randint(0, n, (32,), generator=generator).tolist()
            rest = self.num_samples % 32
            if rest:
                yield from _random.randint(0, n, (rest,), generator=generator).tolist()
        else:
            for _ in range(self.num_samples // n):
                yield from _random.randperm(n, generator=generator).tolist()
            rest = self.num_samples % n
            if rest:
                yield from _random.randperm(n, generator=generator).tolist()[:rest]

    def __len__(self):
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given ``indices`` in a random order (a new permutation each epoch)."""

    def __init__(self, indices, generator=None):
        _check_generator(generator, "SubsetRandomSampler")
        self.indices = indices
        self.generator = generator

    def __iter__(self):
        for i in _random.randperm(len(self.indices), generator=self.generator).tolist():
            yield self.indices[i]

    def __len__(self):
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """``num_samples`` indices in ``range(len(weights))`` drawn with probability proportional to
    ``weights`` (a 1-d sequence or Tensor of non-negative numbers), with or without
    ``replacement``."""

    def __init__(self, weights, num_samples, replacement=True, generator=None):
        if (not isinstance(num_samples, numbers.Integral) or isinstance(num_samples, bool)
                or num_samples <= 0):
            raise ValueError(f"WeightedRandomSampler: num_samples should be a positive integer, "
                             f"got {num_samples!r}")
        if not isinstance(replacement, bool):
            raise ValueError(f"WeightedRandomSampler: replacement should be a bool, got {replacement!r}")
        _check_generator(generator, "WeightedRandomSampler")
        w = weights if isinstance(weights, Tensor) else as_tensor(weights)
        w = w.to(dtype=dtypes.float64)
        if w.ndim != 1:
            raise ValueError(f"WeightedRandomSampler: weights should be a 1-d sequence, got shape "
                             f"{list(w.shape)}")
        if (w.numpy() < 0).any() or not (w.numpy() > 0).any():
            raise ValueError("WeightedRandomSampler: weights must be non-negative with a positive sum")
        if not replacement and num_samples > int((w.numpy() > 0).sum()):
            raise ValueError(f"WeightedRandomSampler: cannot draw {num_samples} samples without "
                             f"replacement from {int((w.numpy() > 0).sum())} non-zero weights")
        self.weights = w
        self.num_samples = int(num_samples)
        self.replacement = replacement
        self.generator = generator

    def __iter__(self):
        rand = _random.multinomial(self.weights, self.num_samples, self.replacement,
                                   generator=self.generator)
        yield from rand.tolist()

    def __len__(self):
        return self.num_samples


class BatchSampler(Sampler):
    """Groups the indices of ``sampler`` into lists of ``batch_size``; the last, shorter batch
    is dropped when ``drop_last``. ``len`` is ``len(sampler) // batch_size`` with
    ``drop_last``, else the ceiling."""

    def __init__(self, sampler, batch_size, drop_last):
        if (not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool)
                or batch_size <= 0):
            raise ValueError(f"BatchSampler: batch_size should be a positive integer, got {batch_size!r}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"BatchSampler: drop_last should be a bool, got {drop_last!r}")
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = drop_last

    def __iter__(self):
        batch = []
        for idx in self.sampler:
            batch.append(idx)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self):
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size
