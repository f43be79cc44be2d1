"""Trajectories: simulation states appended step by step to an HDF5 file, read back lazily.

``TrajectoryWriter`` appends one state per step (``writer.append(x=x, v=v, t=t)``) into one
resizable dataset per field, of shape ``[T, *field_shape]``. It copies each step into a
small per-field buffer of ``chunk_steps`` steps and writes whole chunks, so memory stays
bounded by one chunk per field however long the rollout, and it keeps no reference to the
appended tensors. ``TrajectoryReader`` opens such a file and reads any slice of any field
without loading the rest.

File format (version 1)
-----------------------
Root group attributes::

    diffsim_format          "diffsim.trajectory"
    diffsim_format_version  1
    diffsim_fields          array of UTF-8 field names, in the order they were first given
    diffsim_n_steps         number of steps written (int64)
    diffsim_complete        1 if the writer was closed normally, 0 if the ``with`` block
                            ended with an exception (the file then holds the steps
                            appended before it), plus ``diffsim_error``: the exception
    dt, ...                 user metadata (``dt=`` and ``attrs=``): any attribute whose
                            name does not start with ``diffsim_``

One dataset per field at the root, ``/<name>``, of shape ``[n_steps, *field_shape]``, dtype
the field's dtype (bool as uint8), attribute ``dtype`` (numpy name). Datasets are chunked
along time (``chunk_steps`` steps per chunk, fewer for steps above 1 MiB), compressed
(gzip by default) and protected by HDF5's Fletcher-32 checksum filter, which HDF5 checks on
every chunk it reads (a damaged chunk raises ``LoadError``). Python floats and ints given
as fields are stored as float64 and int64 datasets of shape ``[n_steps]``.

Atomicity
---------
The writer writes a temporary file ``.<name>.<random>.tmp`` in the target directory and
renames it to ``path`` on ``close()``. If the ``with`` block raises, the behaviour is chosen
by ``on_error``: ``"keep"`` (the default; a long rollout that fails at step 9000 still has
8999 useful steps) finishes the file with ``diffsim_complete = 0`` and renames it to
``path``; readers warn when they open such a file. ``"discard"`` deletes the temporary
file and leaves whatever was at ``path`` before untouched. A writer garbage-collected
without ``close()`` discards its temporary file. A hard kill can leave a stray ``.tmp``.
"""
from __future__ import annotations

import collections
import numbers
import os
import warnings

import h5py
import numpy as np

from ..autodiff import backend
from ..autodiff.backend import Device
from ..autodiff.tensor import Tensor
from ._common import (compression_kwargs, LIBVER, LoadError, commit_temp, create_temp, describe_path, open_for_read,
                      remove_quietly)

FORMAT_NAME = "diffsim.trajectory"
#: Version of the trajectory file format written by this diffsim.
FORMAT_VERSION = 1
_CHUNK_BYTES = 1 << 20          # a chunk holds at most this many bytes (or a single step)
_STR = h5py.string_dtype("utf-8")
_RESERVED = "diffsim_"


def _as_step_array(name, value):
    """One step of a field as a numpy array (a copy is made later, into the buffer)."""
    if isinstance(value, Tensor):
        return backend.to_numpy(value._data)
    if isinstance(value, (np.ndarray, np.generic)):     # numpy scalars keep their dtype
        a = np.asarray(value)
    elif isinstance(value, bool):
        a = np.asarray(value, dtype=np.bool_)
    elif isinstance(value, numbers.Integral):
        a = np.asarray(value, dtype=np.int64)
    elif isinstance(value, numbers.Real):
        a = np.asarray(value, dtype=np.float64)
    else:
        raise TypeError(f"TrajectoryWriter.append: field {name!r} is a {type(value).__name__}; expected a "
                        "Tensor, numpy array or number")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"TrajectoryWriter.append: field {name!r} has dtype {a.dtype}; expected a bool, "
                        "integer or floating dtype")
    return a


def _attr_values(attrs):
    """Check user metadata and convert it to values HDF5 attributes hold: str, bool, int,
    float, numpy numeric scalars and arrays, and lists/tuples of numbers."""
    out = {}
    for k, v in attrs.items():
        if not isinstance(k, str) or not k or k.startswith(_RESERVED):
            raise ValueError(f"TrajectoryWriter: attribute names must be non-empty str not starting "
                             f"with {_RESERVED!r}, got {k!r}")
        if isinstance(v, (str, bool, np.bool_)):
            out[k] = v
            continue
        if isinstance(v, Tensor):
            v = backend.to_numpy(v._data)
        a = np.asarray(v) if isinstance(v, (numbers.Number, np.generic, np.ndarray, list, tuple)) else None
        if a is None or a.dtype.kind not in "biuf":
            raise TypeError(f"TrajectoryWriter: attribute {k!r} is a {type(v).__name__}; attributes must be "
                            "str, bool, numbers, or numeric arrays/lists")
        out[k] = a
    return out


def _check_field_name(name):
    if not isinstance(name, str) or not name or "/" in name or name in (".", "..") \
            or name.startswith(_RESERVED):
        raise ValueError(f"TrajectoryWriter: invalid field name {name!r}; use a non-empty string without "
                         f"'/' that does not start with {_RESERVED!r}")


class _Field:
    __slots__ = ("name", "shape", "dtype", "chunk", "buf", "n_buf", "ds")

    def __init__(self, name, h5, arr, chunk_steps, comp):
        self.name = name
        self.shape = arr.shape
        self.dtype = arr.dtype
        store = np.dtype(np.uint8) if arr.dtype == np.bool_ else arr.dtype
        step_bytes = max(1, int(np.prod(arr.shape, dtype=np.int64)) * store.itemsize)
        self.chunk = max(1, min(chunk_steps, _CHUNK_BYTES // step_bytes))
        self.buf = np.empty((self.chunk,) + arr.shape, dtype=store)
        self.n_buf = 0
        chunks = (self.chunk,) + tuple(max(1, s) for s in arr.shape)
        # HDF5 needs chunk dims <= fixed dims and > 0: a zero-size dim is made resizable
        maxshape = (None,) + tuple(s if s > 0 else None for s in arr.shape)
        self.ds = h5.create_dataset(name, shape=(0,) + arr.shape, maxshape=maxshape,
                                    dtype=store, chunks=chunks, fletcher32=True, **comp)
        self.ds.attrs["dtype"] = arr.dtype.name

    def push(self, arr):
        self.buf[self.n_buf] = arr.view(np.uint8) if arr.dtype == np.bool_ else arr
        self.n_buf += 1
        if self.n_buf == self.chunk:
            self.flush()

    def flush(self):
        if self.n_buf:
            n0 = self.ds.shape[0]
            self.ds.resize(n0 + self.n_buf, axis=0)
            self.ds[n0:n0 + self.n_buf] = self.buf[:self.n_buf]
            self.n_buf = 0


class TrajectoryWriter:
    """Append simulation states step by step to an HDF5 trajectory file.

    ``TrajectoryWriter(path, fields=None, chunk_steps=64, compression="gzip",
    overwrite=False, dt=None, attrs=None, on_error="keep")``

    - ``fields``: the field names, or ``None`` to take them from the first ``append``.
      Every ``append`` must then give exactly these fields, each with the shape and dtype
      it had at the first step.
    - ``chunk_steps``: steps per HDF5 chunk (and per in-memory buffer; fewer when a step is
      larger than 1 MiB).
    - ``compression``: ``"gzip"`` (level 1 with the shuffle filter, portable), ``"lzf"`` (faster; needs h5py's
      filter to read), a gzip level 0-9, or ``None``.
    - ``overwrite``: replace an existing file at ``path`` on close (else ``FileExistsError``).
    - ``dt`` and ``attrs`` (a dict of str -> number, str, bool or numeric array): metadata
      stored as root attributes; more can be added with ``writer.attrs[name] = value``
      before close.
    - ``on_error``: what closing after an exception in the ``with`` block does: ``"keep"``
      the steps written so far (file marked incomplete) or ``"discard"`` the file.

    Use as a context manager::

        with ds.io.TrajectoryWriter("run.h5", dt=1e-3) as w:
            for step in range(n):
                x, v = integrator(x, v)
                w.append(x=x, v=v, t=step * 1e-3)     # or w.append({"x": x, ...})

    The file appears at ``path`` only when the writer is closed (atomic rename); see the
    module docstring for the layout.
    """

    def __init__(self, path, fields=None, chunk_steps=64, compression="gzip", overwrite=False,
                 dt=None, attrs=None, on_error="keep"):
        path = os.fspath(path)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(chunk_steps, numbers.Integral) or chunk_steps < 1:
            raise ValueError(f"TrajectoryWriter: chunk_steps must be a positive int, got {chunk_steps!r}")
        if on_error not in ("keep", "discard"):
            raise ValueError(f"TrajectoryWriter: on_error must be 'keep' or 'discard', got {on_error!r}")
        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"TrajectoryWriter: {path!r} exists; pass overwrite=True to replace it")
        if fields is not None:
            fields = list(fields)
            for name in fields:
                _check_field_name(name)
            if len(set(fields)) != len(fields):
                raise ValueError(f"TrajectoryWriter: duplicate field names in {fields}")
        self.path = path
        self.overwrite = overwrite
        self.on_error = on_error
        self._names = fields
        self._comp = compression_kwargs(compression, "TrajectoryWriter")
        self._chunk_steps = int(chunk_steps)
        self._fields = None
        self._n = 0
        self.attrs = dict(attrs or {})
        if dt is not None:
            self.attrs["dt"] = float(dt)
        _attr_values(self.attrs)
        self._tmp = create_temp(path)
        try:
            self._h5 = h5py.File(self._tmp, "w", libver=LIBVER)
            self._h5.attrs["diffsim_format"] = FORMAT_NAME
            self._h5.attrs["diffsim_format_version"] = np.int64(FORMAT_VERSION)
            self._h5.attrs["diffsim_complete"] = np.int64(0)
            self._h5.attrs["diffsim_n_steps"] = np.int64(0)
        except BaseException:
            remove_quietly(self._tmp)
            raise
        self._closed = False

    # ------------------------------------------------------------------ writing
    def __len__(self):
        """Number of steps appended so far."""
        return self._n

    @property
    def closed(self):
        """True once ``close()`` or ``abort()`` has run."""
        return self._closed

    def append(self, state=None, **fields):
        """Append one step: ``append(x=x, v=v, t=t)`` or ``append({"x": x, ...})`` (both may
        be combined). Values are Tensors (any device; copied to host), numpy arrays or
        numbers. The data is copied, so the caller may reuse or drop its tensors."""
        if self._closed:
            raise ValueError("TrajectoryWriter.append: the writer is closed")
        if state is not None:
            if not isinstance(state, dict):
                raise TypeError(f"TrajectoryWriter.append: state must be a dict of field -> value, got "
                                f"{type(state).__name__}")
            dup = set(state) & set(fields)
            if dup:
                raise ValueError(f"TrajectoryWriter.append: field(s) {sorted(dup)} given twice")
            fields = {**state, **fields}
        if not fields:
            raise ValueError("TrajectoryWriter.append: no fields given")
        arrays = {k: _as_step_array(k, v) for k, v in fields.items()}
        if self._fields is None:
            self._start(arrays)
        else:
            if set(arrays) != set(self._fields):
                missing = [k for k in self._fields if k not in arrays]
                extra = [k for k in arrays if k not in self._fields]
                raise ValueError(f"TrajectoryWriter.append (step {self._n}): fields must be "
                                 f"{list(self._fields)}; missing {missing}, unexpected {extra}")
            for k, a in arrays.items():
                f = self._fields[k]
                if a.shape != f.shape:
                    raise ValueError(f"TrajectoryWriter.append (step {self._n}): field {k!r} has shape "
                                     f"{list(a.shape)}, but earlier steps had {list(f.shape)}")
                if a.dtype != f.dtype:
                    raise ValueError(f"TrajectoryWriter.append (step {self._n}): field {k!r} has dtype "
                                     f"{a.dtype}, but earlier steps had {f.dtype}")
        for k, a in arrays.items():
            self._fields[k].push(a)
        self._n += 1

    def _start(self, arrays):
        names = self._names
        if names is None:
            names = list(arrays)
            for k in names:
                _check_field_name(k)
        elif set(names) != set(arrays):
            missing = [k for k in names if k not in arrays]
            extra = [k for k in arrays if k not in names]
            raise ValueError(f"TrajectoryWriter.append: fields must be {names}; missing {missing}, "
                             f"unexpected {extra}")
        self._fields = collections.OrderedDict(
            (k, _Field(k, self._h5, arrays[k], self._chunk_steps, self._comp)) for k in names)
        self._h5.attrs["diffsim_fields"] = np.array(names, dtype=_STR)

    def flush(self):
        """Write buffered steps to the (temporary) file and flush HDF5's buffers."""
        if not self._closed:
            self._flush()

    def _flush(self):
        for f in (self._fields or {}).values():
            f.flush()
        self._h5.attrs["diffsim_n_steps"] = np.int64(self._n)
        self._h5.flush()

    def _finish(self, complete, error=None):
        self._flush()
        if self._fields is None:
            self._h5.attrs["diffsim_fields"] = np.array([], dtype=_STR)
        self._h5.attrs["diffsim_complete"] = np.int64(1 if complete else 0)
        if error is not None:
            self._h5.attrs["diffsim_error"] = f"{type(error).__name__}: {error}"
        for k, v in _attr_values(self.attrs).items():
            self._h5.attrs[k] = v
        self._h5.close()

    def close(self):
        """Write the remaining steps and metadata, and move the file to ``path``."""
        self._close(None)

    def abort(self):
        """Discard everything written: remove the temporary file, leave ``path`` untouched."""
        if self._closed:
            return
        self._closed = True
        try:
            self._h5.close()
        finally:
            remove_quietly(self._tmp)

    def _close(self, error):
        if self._closed:
            return
        if error is not None and self.on_error == "discard":
            self.abort()
            return
        if error is None:
            _attr_values(self.attrs)    # a bad attribute raises here; the writer stays open
        self._closed = True
        try:
            self._finish(error is None, error)
            if not self.overwrite and os.path.exists(self.path):
                raise FileExistsError(f"TrajectoryWriter.close: {self.path!r} appeared while writing; "
                                      "pass overwrite=True to replace it")
            commit_temp(self._tmp, self.path)
        except BaseException:
            try:
                self._h5.close()
            except Exception:
                pass
            remove_quietly(self._tmp)
            raise

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self._close(exc if exc_type is not None else None)
        return False

    def __del__(self):
        if getattr(self, "_closed", True) is False:
            try:
                warnings.warn(f"TrajectoryWriter for {self.path!r} was not closed; its data is discarded",
                              ResourceWarning, stacklevel=2)
            finally:
                try:
                    self.abort()
                except Exception:
                    pass

    def __repr__(self):
        state = "closed" if self._closed else "open"
        names = list(self._fields or self._names or [])
        return f"TrajectoryWriter({self.path!r}, steps={self._n}, fields={names}, {state})"


# ====================================================================== reading
class TrajectoryField:
    """One field of a trajectory, read lazily: ``field[10:20]`` reads only those steps.

    Indexing takes anything h5py takes along the steps (int, slice, index lists) plus
    trailing indices; it returns a Tensor (or a numpy array from ``field.numpy(index)``).
    ``len(field)``, ``field.shape`` (``[T, ...]``), ``field.dtype``.
    """

    def __init__(self, reader, name):
        self._reader, self.name = reader, name
        ds = reader._dataset(name)
        self._ds = ds
        self.dtype = reader._dtypes[name]
        self.shape = (reader._n,) + tuple(ds.shape[1:])

    def __len__(self):
        return self.shape[0]

    def numpy(self, index=slice(None)):
        """The values at ``index`` (all steps by default) as a numpy array."""
        n = self.shape[0]
        if not isinstance(index, tuple):
            index = (index,)
        first = index[0] if index else slice(None)
        if isinstance(first, slice):
            first = slice(*first.indices(n))
        elif isinstance(first, numbers.Integral):
            i = int(first)
            if not -n <= i < n:
                raise IndexError(f"TrajectoryField {self.name!r}: step {i} out of range for {n} steps")
            first = i % n
        index = (first,) + tuple(index[1:])
        try:
            a = self._ds[index]
        except OSError as e:
            raise LoadError(f"TrajectoryReader: {self._reader._where!r}: field {self.name!r} could not be "
                            f"read (a chunk is corrupted or the file is damaged): {e}") from e
        a = np.asarray(a)
        if self.dtype == np.bool_:
            a = a.view(np.bool_)
        return a

    def __getitem__(self, index):
        a = self.numpy(index)
        t = Tensor._make(np.asarray(a, order="C"), False, None, 0)
        dev = self._reader.device
        return t if dev is None or dev.type == "cpu" else t.to(dev)

    def __repr__(self):
        return f"TrajectoryField({self.name!r}, shape={list(self.shape)}, dtype={self.dtype})"


class TrajectoryReader:
    """Read a trajectory written by ``TrajectoryWriter``, lazily.

    ``TrajectoryReader(path, device=None)``; ``reader["x"]`` is a ``TrajectoryField`` that
    reads slices on demand (``reader["x"][10:20]`` -> Tensor ``[10, ...]``);
    ``reader[i]`` / ``reader[a:b]`` give a dict of all fields at those steps; ``len(reader)``
    is the number of steps; ``reader.fields`` the names; ``reader.attrs`` the user metadata
    (``dt`` ...); ``reader.dt``; ``reader.complete`` is False for a file whose writer ended
    with an exception (``reader.error`` says which; opening one warns). Tensors are put on
    ``device`` (CPU by default). Close with ``close()`` or use as a context manager.

    Raises ``LoadError`` for files that are not diffsim trajectories, damaged or newer.
    """

    def __init__(self, path, device=None):
        self._where = describe_path(path)
        self.device = None if device is None else Device(device)
        self._h5, self.version = open_for_read(path, FORMAT_NAME, FORMAT_VERSION, "TrajectoryReader")
        try:
            a = self._h5.attrs
            self.fields = [k.decode() if isinstance(k, bytes) else str(k) for k in a["diffsim_fields"]]
            self._n = int(a["diffsim_n_steps"])
            self.complete = bool(int(a["diffsim_complete"]))
            err = a.get("diffsim_error")
            self.error = err.decode() if isinstance(err, bytes) else err
            self.attrs = {k: (v.decode() if isinstance(v, bytes) else v)
                          for k, v in a.items() if not k.startswith(_RESERVED)}
            self._dtypes = {}
            for name in self.fields:
                ds = self._dataset(name)
                if ds.ndim < 1 or ds.shape[0] != self._n:
                    raise LoadError(f"TrajectoryReader: {self._where!r}: field {name!r} has shape "
                                    f"{ds.shape}, but the file says it holds {self._n} steps")
                dname = ds.attrs["dtype"]
                dname = dname.decode() if isinstance(dname, bytes) else str(dname)
                dt = np.dtype(dname)
                store = np.dtype(np.uint8) if dt == np.bool_ else dt
                if dt.kind not in "biuf" or ds.dtype.kind != store.kind or ds.dtype.itemsize != store.itemsize:
                    raise LoadError(f"TrajectoryReader: {self._where!r}: field {name!r} stores "
                                    f"{ds.dtype} but its metadata says {dname}")
                self._dtypes[name] = dt
        except LoadError:
            self._h5.close()
            raise
        except Exception as e:
            self._h5.close()
            raise LoadError(f"TrajectoryReader: {self._where!r}: malformed trajectory file: {e!r}") from e
        if not self.complete:
            warnings.warn(f"TrajectoryReader: {self._where!r} is incomplete: its writer stopped after "
                          f"{self._n} steps with an exception ({self.error})", RuntimeWarning, stacklevel=2)

    def _dataset(self, name):
        ds = self._h5.get(name)
        if not isinstance(ds, h5py.Dataset):
            raise LoadError(f"TrajectoryReader: {self._where!r}: field {name!r} is missing")
        return ds

    @property
    def dt(self):
        """The ``dt`` attribute given to the writer, or None."""
        return self.attrs.get("dt")

    def __len__(self):
        return self._n

    def __contains__(self, name):
        return name in self.fields

    def keys(self):
        """The field names, in the order they were written."""
        return list(self.fields)

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.fields:
                raise KeyError(f"TrajectoryReader: no field {key!r}; fields are {self.fields}")
            return TrajectoryField(self, key)
        return collections.OrderedDict((k, TrajectoryField(self, k)[key]) for k in self.fields)

    def read(self, fields=None):
        """All steps of ``fields`` (default all) as an OrderedDict of name -> Tensor."""
        names = self.fields if fields is None else list(fields)
        return collections.OrderedDict((k, self[k][:]) for k in names)

    def close(self):
        """Close the file; fields taken from this reader can no longer be read."""
        self._h5.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return f"TrajectoryReader({self._where!r}, steps={self._n}, fields={self.fields})"


def read_trajectory(path, fields=None, device=None):
    """Read a whole trajectory file: an OrderedDict of field name -> Tensor ``[T, ...]``.

    Use ``TrajectoryReader`` to read slices, metadata, or files too large for memory."""
    with TrajectoryReader(path, device=device) as r:
        return r.read(fields)
