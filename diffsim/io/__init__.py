"""``diffsim.io``: saving and loading in HDF5 (h5py), never with pickle.

- ``save(obj, path)`` / ``load(path, map_location=None)``: checkpoints of tensors, numpy
  arrays, numbers, strings and nested dicts/lists/tuples (module and optimizer
  ``state_dict()`` s). Atomic writes; every dataset carries a CRC-32 that ``load`` checks.
  File layout: ``diffsim.io.serialization``.
- ``TrajectoryWriter`` / ``TrajectoryReader`` / ``read_trajectory``: simulation states
  appended step by step with bounded memory, read back by slices. File layout:
  ``diffsim.io.trajectory``.
- ``LoadError``: raised for truncated, corrupted, foreign or newer files.
"""
from ._common import LoadError
from .serialization import FORMAT_VERSION, load, save
from .trajectory import TrajectoryField, TrajectoryReader, TrajectoryWriter, read_trajectory

__all__ = ["save", "load", "LoadError", "FORMAT_VERSION", "TrajectoryWriter", "TrajectoryReader",
           "TrajectoryField", "read_trajectory"]
