"""diffsim.data: datasets, samplers and the ``DataLoader`` (PyTorch's ``torch.utils.data``).

``DataLoader(dataset, batch_size=16, shuffle=True, num_workers=2)`` yields batches collated by
``default_collate`` (tensors [B, ...]), loading them in background worker processes when
``num_workers > 0``; ``ds.manual_seed`` or ``generator=`` makes the order reproducible.
"""
from ._worker import WorkerInfo, get_worker_info
from .collate import default_collate, default_convert
from .dataloader import DataLoader
from .dataset import (ChainDataset, ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset,
                      random_split)
from .sampler import (BatchSampler, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler,
                      WeightedRandomSampler)

__all__ = ["BatchSampler", "ChainDataset", "ConcatDataset", "DataLoader", "Dataset",
           "IterableDataset", "RandomSampler", "Sampler", "SequentialSampler", "Subset",
           "SubsetRandomSampler", "TensorDataset", "WeightedRandomSampler", "WorkerInfo",
           "default_collate", "default_convert", "get_worker_info", "random_split"]
