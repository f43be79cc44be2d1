"""``ds.save`` / ``ds.load``: checkpoints of tensors and nested Python structures in HDF5.

Nothing is ever pickled: every value becomes a plain HDF5 dataset or group with plain
attributes, so a file can be read by any HDF5 tool, and loading a file cannot run code.

What can be saved
-----------------
``Tensor`` (any subclass, e.g. ``nn.Parameter``; saved as its values), numpy arrays (bool,
integer, unsigned, floating and complex dtypes) and numpy scalars, ``None``, ``bool``,
``int`` (any size), ``float``, ``str``, ``bytes``, and ``dict`` / ``OrderedDict`` / ``list`` /
``tuple`` nesting them. Dict keys may be ``str``, ``int``, ``bool``, ``float`` or ``None``; key
types and key order are preserved, so module and optimizer ``state_dict()`` s (OrderedDicts
of tensors; optimizer state keyed by int) round-trip exactly. Dict subclasses other than
OrderedDict load as ``dict``; tuple subclasses (namedtuples) load as ``tuple``.

An object referenced more than once (the same Tensor, array, dict or list) is stored once
and loads as one object, so identity and sharing are preserved; two different Tensors over
the same array object (``t`` and ``t.detach()``) are stored once and load as two Tensors
sharing memory. Views that share only part of a storage are stored separately. Cyclic
structures are refused with a ``ValueError``.

``load`` returns plain tensors that do not require grad and have no ``.grad`` (as
``torch.load`` of a ``state_dict``); gradients and autograd history are not saved.

File format (version 1)
-----------------------
Root group attributes::

    diffsim_format          "diffsim"            (UTF-8 string)
    diffsim_format_version  1                    (int64)
    diffsim_version         e.g. "0.1.0"         (writer's library version, informational)

The saved object is the node ``/root``. Every node carries a ``kind`` attribute (UTF-8
string) that says how to read it::

    kind            HDF5     content and attributes
    --------------  -------  ---------------------------------------------------------------
    tensor          dataset  the values; attrs dtype (numpy name: "float32", "bool", ...),
                             shape (int64 array, empty for 0-d), device ("cpu", "cuda:0"),
                             crc32
    ndarray         dataset  a numpy array; attrs dtype, shape, crc32
    npscalar        dataset  a numpy scalar, 0-d; attrs dtype, shape, crc32
    int             dataset  0-d int64; attr crc32
    float           dataset  0-d float64; attr crc32
    bool            dataset  0-d uint8 (0 or 1); attr crc32
    bytes           dataset  1-d uint8; attr crc32
    float_list      dataset  a non-empty list of only Python floats: 1-d float64; attr crc32
    int_list        dataset  ... of only ints within int64: 1-d int64; attr crc32
    bool_list       dataset  ... of only bools: 1-d uint8; attr crc32
    float_tuple, int_tuple, bool_tuple: the same for tuples
    bigint          group    attr value: decimal string of an int outside int64
    str             group    attr value: the string (UTF-8)
    none            group    (no content)
    list, tuple     group    attr length; the items are children named "0", "1", ...
    dict,           group    attr length; the values are children "0", "1", ... in key
    OrderedDict              order; attrs keys (array of UTF-8 strings: str(key), repr for
                             floats) and key_types (array of "str", "int", "bool", "float",
                             "none") in the same order
    tensor_alias    group    attr target: absolute path of a tensor node whose array this
                             tensor shares

A second reference to an already-written object is an HDF5 soft link to its first node.
Bool arrays are stored as uint8 (0/1) with ``dtype="bool"``. Arrays are written in native
byte order; ``crc32`` is ``zlib.crc32`` of the values as little-endian, C-order bytes (the
empty array's is 0). Arrays larger than ``CHUNK_THRESHOLD`` bytes (64 KiB) are chunked and
compressed (gzip level 1 by default; shuffle filter on); smaller ones are contiguous.

Integrity
---------
``load`` checks the root attributes, every node's kind, dtype and shape against its dataset,
and every dataset's CRC-32, and raises ``LoadError`` (naming the file and the node) on any
mismatch, on truncated or non-HDF5 files, on foreign HDF5 files (no ``diffsim_format``) and
on files with a newer format version. The checksum costs one extra pass over the data on
save and on load (roughly 1 GB/s per core), small next to the HDF5 I/O itself.

Cost
----
Each stored node (tensor, scalar, string, container) costs roughly 0.1-0.3 ms of HDF5
metadata work on save and on load, so a state_dict plus Adam state of a few hundred
tensors takes well under a second; lists of plain numbers (a loss history) are packed into
one dataset. Compression of large arrays runs at tens of MB/s (``compression=None``: ~1 GB/s).

Atomicity
---------
``save`` to a path writes a temporary file ``.<name>.<random>.tmp`` in the same directory,
closes and fsyncs it, then renames it over ``path`` with ``os.replace`` (and fsyncs the
directory). An exception during the save removes the temporary file and leaves any old
file at ``path`` untouched; a hard kill (SIGKILL, power loss) can leave a stray ``.tmp``
file behind but never a half-written ``path``.
"""
from __future__ import annotations

import collections
import numbers
import os

import h5py
import numpy as np

from ..autodiff import backend, dtypes
from ..autodiff.backend import Device
from ..autodiff.tensor import Tensor
from ._common import (compression_kwargs, LIBVER, LoadError, commit_temp, crc32_of, create_temp, describe_path,
                      is_filelike, open_for_read, remove_quietly)

FORMAT_NAME = "diffsim"
#: The version of the ``ds.save`` file format written by this diffsim; ``load`` reads files
#: with versions 1..FORMAT_VERSION.
FORMAT_VERSION = 1
#: Arrays with more bytes than this are stored chunked and compressed.
CHUNK_THRESHOLD = 64 * 1024

_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_ARRAY_KINDS = "biufc"
_STR = h5py.string_dtype("utf-8")


def _library_version():
    try:
        from .. import __version__
        return str(__version__)
    except Exception:
        return "unknown"


def _packed_kind(seq):
    """For a non-empty list/tuple whose items all are Python floats, all bools or all ints
    within int64, the (kind, dtype) of the 1-d dataset that stores it in one piece."""
    if not seq:
        return None
    first = type(seq[0])
    if first not in (float, int, bool) or any(type(v) is not first for v in seq):
        return None
    if first is int and not all(_INT64_MIN <= v <= _INT64_MAX for v in seq):
        return None
    suffix = "tuple" if isinstance(seq, tuple) else "list"
    return {float: (f"float_{suffix}", np.float64), int: (f"int_{suffix}", np.int64),
            bool: (f"bool_{suffix}", np.uint8)}[first]


def save(obj, f, *, compression="gzip"):
    """Save ``obj`` (tensors, numpy arrays, numbers, strings, None and dicts/lists/tuples of
    them, e.g. a module's or optimizer's ``state_dict()``) to the HDF5 file ``f``.

    ``f`` is a path (str or ``os.PathLike``) or a binary file-like object opened for
    writing and reading (e.g. ``io.BytesIO``). Saving to a path is atomic: the file is
    written to a temporary file in the same directory and renamed over ``f`` only once it
    is complete, so an exception or crash mid-save leaves an old file at ``f`` intact.

    ``compression`` applies to arrays larger than 64 KiB: ``"gzip"`` (level 1 with the
    shuffle filter; portable; the default), ``"lzf"`` (a little faster, but readable only
    where h5py's lzf filter is installed), an int gzip level 0-9, or ``None``. Trained
    weights are nearly incompressible (ratio ~0.9) and compression is the slowest part of a
    save (tens of MB/s against ~1 GB/s uncompressed), so pass ``compression=None`` for big
    checkpoints when speed matters more than size.

    Nothing is pickled; see this module's docstring for the file layout. Raises
    ``TypeError`` (naming where in ``obj``) for values of unsupported types and
    ``ValueError`` for cyclic structures.
    """
    comp = compression_kwargs(compression, "save")
    if is_filelike(f):
        with h5py.File(f, "w", libver=LIBVER) as h5:
            _write_file(h5, obj, comp)
        return
    path = os.fspath(f)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"save: {path!r} is a directory; give a file name")
    tmp = create_temp(path)
    try:
        with h5py.File(tmp, "w", libver=LIBVER) as h5:
            _write_file(h5, obj, comp)
        commit_temp(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise


def _write_file(h5, obj, comp):
    h5.attrs["diffsim_format"] = FORMAT_NAME
    h5.attrs["diffsim_format_version"] = np.int64(FORMAT_VERSION)
    h5.attrs["diffsim_version"] = _library_version()
    _Writer(comp).write(h5, "root", obj, "obj")


class _Writer:
    def __init__(self, comp):
        self.comp = comp
        self.memo = {}        # id(obj) -> HDF5 path of its node
        self.data_memo = {}   # id(tensor._data) -> HDF5 path of the tensor node holding it
        self.keep = []        # keeps memoized objects alive so their ids stay unique
        self.active = set()   # ids of containers being written (cycle detection)

    def write(self, group, name, obj, where):
        oid = id(obj)
        if oid in self.memo:
            group[name] = h5py.SoftLink(self.memo[oid])
            return
        if oid in self.active:
            raise ValueError(f"save: {where} contains itself; cyclic structures cannot be saved")
        if isinstance(obj, Tensor):
            self._write_tensor(group, name, obj, where)
        elif isinstance(obj, np.ndarray):
            self._check_array_dtype(obj.dtype, where)
            self._write_array(group, name, obj, "ndarray", where)
            self._remember(obj, group[name].name)
        elif isinstance(obj, np.generic):
            self._check_array_dtype(obj.dtype, where)
            self._write_array(group, name, np.asarray(obj), "npscalar", where)
        elif obj is None:
            group.create_group(name).attrs["kind"] = "none"
        elif isinstance(obj, bool):
            self._write_scalar(group, name, np.uint8(obj), "bool")
        elif isinstance(obj, numbers.Integral) and isinstance(obj, int):
            if _INT64_MIN <= obj <= _INT64_MAX:
                self._write_scalar(group, name, np.int64(obj), "int")
            else:
                g = group.create_group(name)
                g.attrs["kind"] = "bigint"
                g.attrs["value"] = str(int(obj))
        elif isinstance(obj, float):
            self._write_scalar(group, name, np.float64(obj), "float")
        elif isinstance(obj, str):
            g = group.create_group(name)
            g.attrs["kind"] = "str"
            g.attrs["value"] = obj
        elif isinstance(obj, (bytes, bytearray)):
            self._write_array(group, name, np.frombuffer(bytes(obj), np.uint8), "bytes", where)
        elif isinstance(obj, dict):
            self._write_dict(group, name, obj, where)
        elif isinstance(obj, (list, tuple)):
            packed = _packed_kind(obj)
            if packed is None:
                self._write_seq(group, name, obj, where)
            else:
                kind, dtype = packed
                self._write_scalar(group, name, np.array(obj, dtype=dtype), kind)
                self._remember(obj, group[name].name)
        else:
            raise TypeError(
                f"save: {where} is a {type(obj).__module__}.{type(obj).__qualname__}, which ds.save "
                "cannot store (it never pickles); supported: Tensor, numpy arrays and scalars, None, "
                "bool, int, float, str, bytes, and dict/list/tuple of these. Save its state_dict() "
                "or convert it to one of these types")

    def _remember(self, obj, path):
        self.memo[id(obj)] = path
        self.keep.append(obj)

    @staticmethod
    def _check_array_dtype(dtype, where):
        if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None:
            raise TypeError(f"save: {where} is a numpy array/scalar of dtype {dtype}, which ds.save "
                            "cannot store; supported dtype kinds: bool, int, uint, float, complex")

    def _write_scalar(self, group, name, value, kind):
        a = np.asarray(value)
        ds = group.create_dataset(name, data=a)
        ds.attrs["kind"] = kind
        ds.attrs["crc32"] = np.int64(crc32_of(a))

    def _write_array(self, group, name, arr, kind, where):
        a = np.asarray(arr, order="C")     # (np.ascontiguousarray would make 0-d arrays 1-d)
        if a.dtype.byteorder not in "=|" and a.dtype.byteorder != ("<" if np.little_endian else ">"):
            a = a.astype(a.dtype.newbyteorder("="))
        store = a.view(np.uint8) if a.dtype == np.bool_ else a
        kw = {}
        if store.nbytes > CHUNK_THRESHOLD and store.ndim > 0:
            kw = dict(chunks=True, **self.comp)
        ds = group.create_dataset(name, data=store, **kw)
        ds.attrs["kind"] = kind
        if kind != "bytes":
            ds.attrs["dtype"] = a.dtype.name
            ds.attrs["shape"] = np.asarray(a.shape, dtype=np.int64)
        ds.attrs["crc32"] = np.int64(crc32_of(store))
        return ds

    def _write_tensor(self, group, name, t, where):
        data = t._data
        alias = self.data_memo.get(id(data))
        if alias is not None:
            g = group.create_group(name)
            g.attrs["kind"] = "tensor_alias"
            g.attrs["target"] = alias
            self._remember(t, g.name)
            return
        arr = backend.to_numpy(data)
        ds = self._write_array(group, name, arr, "tensor", where)
        ds.attrs["device"] = str(t.device)
        self._remember(t, ds.name)
        self.data_memo[id(data)] = ds.name
        self.keep.append(data)

    def _write_dict(self, group, name, d, where):
        g = group.create_group(name)
        g.attrs["kind"] = "OrderedDict" if isinstance(d, collections.OrderedDict) else "dict"
        g.attrs["length"] = np.int64(len(d))
        keys, key_types = [], []
        for k in d:
            if isinstance(k, str):
                keys.append(k), key_types.append("str")
            elif isinstance(k, (bool, np.bool_)):
                keys.append(str(bool(k))), key_types.append("bool")
            elif isinstance(k, numbers.Integral):
                keys.append(str(int(k))), key_types.append("int")
            elif isinstance(k, (float, np.floating)):
                keys.append(repr(float(k))), key_types.append("float")
            elif k is None:
                keys.append("None"), key_types.append("none")
            else:
                raise TypeError(f"save: {where} has a key {k!r} of type {type(k).__name__}; dict keys "
                                "must be str, int, bool, float or None")
        g.attrs["keys"] = np.array(keys, dtype=_STR)
        g.attrs["key_types"] = np.array(key_types, dtype=_STR)
        self.active.add(id(d))
        try:
            for i, (k, v) in enumerate(d.items()):
                self.write(g, str(i), v, f"{where}[{k!r}]")
        finally:
            self.active.discard(id(d))
        self._remember(d, g.name)

    def _write_seq(self, group, name, seq, where):
        g = group.create_group(name)
        g.attrs["kind"] = "tuple" if isinstance(seq, tuple) else "list"
        g.attrs["length"] = np.int64(len(seq))
        self.active.add(id(seq))
        try:
            for i, v in enumerate(seq):
                self.write(g, str(i), v, f"{where}[{i}]")
        finally:
            self.active.discard(id(seq))
        self._remember(seq, g.name)


# ============================================================================ load
_PACKED = {f"{n}_{c}": (dt, item, cont) for n, dt, item in (("float", np.float64, float),
                                                             ("int", np.int64, int),
                                                             ("bool", np.uint8, bool))
           for c, cont in (("list", list), ("tuple", tuple))}


class _DeviceError(Exception):
    """Wraps an error from moving a tensor to its device so it is not reported as LoadError."""

    def __init__(self, inner):
        super().__init__(str(inner))
        self.inner = inner


def load(f, map_location=None):
    """Load an object saved with ``ds.save`` from the path or file-like object ``f``.

    Tensors are restored on the device they were saved from unless ``map_location`` says
    otherwise (as in ``torch.load``):

    - ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``Device``: every tensor goes there;
    - a dict mapping saved device names to devices, e.g. ``{"cuda:0": "cpu"}``; devices
      not in it are kept;
    - a callable ``fn(tensor, location)`` receiving each tensor on the CPU and the saved
      device's name (``"cuda:0"``); it returns the tensor to use, or ``None`` for the
      default (the saved device).

    Loaded tensors are plain leaves (``requires_grad=False``, no ``.grad``). numpy arrays
    load as numpy arrays. Loading a tensor saved on a GPU with no GPU here raises
    ``RuntimeError`` suggesting ``map_location="cpu"``.

    Raises ``FileNotFoundError`` for a missing file and ``LoadError`` (naming the file and
    the problem) for a file that is not HDF5, truncated, corrupted (a failed checksum, or
    dtype/shape metadata that do not match the data), not written by ``ds.save``, or
    written in a newer format version.
    """
    _check_map_location(map_location)
    where = describe_path(f)
    h5, version = open_for_read(f, FORMAT_NAME, FORMAT_VERSION, "load")
    try:
        with h5:
            if "root" not in h5:
                raise LoadError(f"load: {where!r} has no '/root' object; the file is incomplete")
            reader = _Reader(h5, where, map_location)
            return reader.read_child(h5, "root")
    except _DeviceError as e:
        raise e.inner from None
    except LoadError:
        raise
    except Exception as e:  # h5py / HDF5 errors on damaged files
        raise LoadError(f"load: {where!r} could not be read (the file is damaged): {e!r}") from e


def _check_map_location(ml):
    if ml is None or callable(ml):
        return
    if isinstance(ml, (str, Device)):
        Device(ml)
        return
    if isinstance(ml, dict):
        for k, v in ml.items():
            Device(k), Device(v)
        return
    raise TypeError(f"load: map_location must be None, a device name, a Device, a dict or a "
                    f"callable, got {type(ml).__name__}")


def _attr_str(node, name, where):
    try:
        v = node.attrs[name]
    except KeyError:
        raise LoadError(f"load: {where!r}: node {node.name!r} lacks its {name!r} attribute") from None
    if isinstance(v, bytes):
        v = v.decode("utf-8")
    if not isinstance(v, str):
        raise LoadError(f"load: {where!r}: attribute {name!r} of node {node.name!r} is not a string")
    return v


def _attr_int(node, name, where):
    try:
        v = node.attrs[name]
        if np.ndim(v) != 0:
            raise ValueError("not a scalar")
        return int(v)
    except (KeyError, ValueError, TypeError):
        raise LoadError(f"load: {where!r}: node {node.name!r} lacks a valid integer {name!r} "
                        "attribute") from None


class _Reader:
    def __init__(self, h5, where, map_location):
        self.h5, self.where, self.ml = h5, where, map_location
        self.memo = {}         # HDF5 path -> loaded object
        self.active = set()

    def fail(self, node_name, msg):
        return LoadError(f"load: {self.where!r}: node {node_name!r}: {msg}")

    def read_child(self, group, name):
        link = group.get(name, getlink=True)
        if link is None:
            raise self.fail(f"{group.name.rstrip('/')}/{name}", "is missing; the file is incomplete")
        if isinstance(link, h5py.SoftLink):
            target = link.path
            if target in self.memo:
                return self.memo[target]
            node = self.h5.get(target)
            if node is None:
                raise self.fail(f"{group.name.rstrip('/')}/{name}", f"links to missing node {target!r}")
            return self.read_node(node, target)
        if isinstance(link, h5py.ExternalLink):
            raise self.fail(f"{group.name.rstrip('/')}/{name}", "is an external link, which "
                            "diffsim files never contain")
        node = group[name]
        return self.read_node(node, node.name)

    def read_node(self, node, path):
        if path in self.memo:
            return self.memo[path]
        if path in self.active:
            raise self.fail(path, "is part of a cycle of links")
        self.active.add(path)
        try:
            obj = self._read_node(node, path)
        finally:
            self.active.discard(path)
        self.memo[path] = obj
        return obj

    def _read_node(self, node, path):
        kind = _attr_str(node, "kind", self.where)
        if isinstance(node, h5py.Dataset):
            if kind == "tensor":
                return self._read_tensor(node, path)
            if kind == "ndarray":
                return self._read_array(node, path, any_dtype=True)
            if kind == "npscalar":
                return self._read_array(node, path, any_dtype=True)[()]
            if kind in ("int", "float", "bool"):
                a = self._read_raw(node, path, {"int": np.int64, "float": np.float64, "bool": np.uint8}[kind], ())
                v = a[()]
                if kind == "bool":
                    if v not in (0, 1):
                        raise self.fail(path, f"bool value {v} is not 0 or 1")
                    return bool(v)
                return int(v) if kind == "int" else float(v)
            if kind in _PACKED:
                dtype, item, container = _PACKED[kind]
                a = self._read_raw(node, path, dtype, node.shape if node.ndim == 1 else None)
                if item is bool and a.size and a.max() > 1:
                    raise self.fail(path, "bool values other than 0 and 1")
                return container(map(item, a.tolist()))
            if kind == "bytes":
                return self._read_raw(node, path, np.uint8, node.shape if node.ndim == 1 else None).tobytes()
            raise self.fail(path, f"unknown dataset kind {kind!r}")
        if kind == "none":
            return None
        if kind == "str":
            return _attr_str(node, "value", self.where)
        if kind == "bigint":
            try:
                return int(_attr_str(node, "value", self.where))
            except ValueError:
                raise self.fail(path, "bigint value is not a decimal integer") from None
        if kind in ("list", "tuple"):
            n = self._length(node, path)
            items = [self.read_child(node, str(i)) for i in range(n)]
            return tuple(items) if kind == "tuple" else items
        if kind in ("dict", "OrderedDict"):
            return self._read_dict(node, path, kind)
        if kind == "tensor_alias":
            target = _attr_str(node, "target", self.where)
            base = self.memo.get(target)
            if base is None:
                tnode = self.h5.get(target)
                if tnode is None:
                    raise self.fail(path, f"aliases missing tensor {target!r}")
                base = self.read_node(tnode, target)
            if not isinstance(base, Tensor):
                raise self.fail(path, f"aliases {target!r}, which is not a tensor")
            return Tensor._make(base._data, False, None, 0)
        raise self.fail(path, f"unknown group kind {kind!r}")

    def _length(self, node, path):
        n = _attr_int(node, "length", self.where)
        if n < 0 or len(node) != n:
            raise self.fail(path, f"has {len(node)} members but its length attribute says {n}; "
                            "the file is incomplete or damaged")
        return n

    def _read_dict(self, node, path, kind):
        n = self._length(node, path)
        try:
            keys = [k.decode("utf-8") if isinstance(k, bytes) else str(k) for k in node.attrs["keys"]]
            types = [k.decode("utf-8") if isinstance(k, bytes) else str(k) for k in node.attrs["key_types"]]
        except KeyError:
            raise self.fail(path, "dict lacks its 'keys'/'key_types' attributes") from None
        if len(keys) != n or len(types) != n:
            raise self.fail(path, f"has {n} values but {len(keys)} keys and {len(types)} key types")
        out = collections.OrderedDict() if kind == "OrderedDict" else {}
        for i, (k, t) in enumerate(zip(keys, types)):
            try:
                if t == "str":
                    key = k
                elif t == "int":
                    key = int(k)
                elif t == "bool":
                    key = {"True": True, "False": False}[k]
                elif t == "float":
                    key = float(k)
                elif t == "none":
                    key = None
                else:
                    raise ValueError(t)
            except (ValueError, KeyError):
                raise self.fail(path, f"key {k!r} of type {t!r} is invalid") from None
            out[key] = self.read_child(node, str(i))
        if len(out) != n:
            raise self.fail(path, "has duplicate keys")
        return out

    def _read_raw(self, ds, path, storage_dtype, shape):
        """Read dataset ``ds`` into a new native array of ``storage_dtype`` and ``shape`` after
        checking the dataset's own shape and type, then verify the CRC."""
        storage_dtype = np.dtype(storage_dtype)
        if shape is None or tuple(ds.shape) != tuple(shape):
            raise self.fail(path, f"has shape {ds.shape}, but its metadata says {shape}")
        dt = ds.dtype
        if dt.kind != storage_dtype.kind or dt.itemsize != storage_dtype.itemsize:
            raise self.fail(path, f"stores dtype {dt}, but its metadata says {storage_dtype}")
        arr = np.empty(shape, dtype=storage_dtype)
        if arr.size:
            ds.read_direct(arr)
        crc = _attr_int(ds, "crc32", self.where)
        actual = crc32_of(arr)
        if actual != crc:
            raise self.fail(path, f"data fails its checksum (crc32 {actual:#010x}, stored "
                            f"{crc & 0xFFFFFFFF:#010x}); the file is corrupted")
        return arr

    def _read_array(self, ds, path, any_dtype):
        name = _attr_str(ds, "dtype", self.where)
        try:
            dtype = np.dtype(name)
        except TypeError:
            raise self.fail(path, f"has unknown dtype {name!r}") from None
        if any_dtype:
            if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None:
                raise self.fail(path, f"has unsupported dtype {name!r}")
        elif dtype not in dtypes.SUPPORTED:
            raise self.fail(path, f"has dtype {name!r}, which is not a diffsim tensor dtype")
        try:
            shape = tuple(int(s) for s in np.asarray(ds.attrs["shape"]).reshape(-1))
        except KeyError:
            raise self.fail(path, "lacks its 'shape' attribute") from None
        storage = np.dtype(np.uint8) if dtype == np.bool_ else dtype
        arr = self._read_raw(ds, path, storage, shape)
        if dtype == np.bool_:
            if arr.size and arr.max() > 1:
                raise self.fail(path, "bool data holds values other than 0 and 1")
            arr = arr.view(np.bool_)
        return arr

    def _read_tensor(self, ds, path):
        arr = self._read_array(ds, path, any_dtype=False)
        saved = _attr_str(ds, "device", self.where)
        try:
            saved_dev = Device(saved)
        except (ValueError, TypeError):
            raise self.fail(path, f"has an invalid device {saved!r}") from None
        try:
            return self._place(arr, saved_dev, path)
        except Exception as e:
            raise _DeviceError(e) from e

    def _place(self, arr, saved_dev, path):
        ml = self.ml
        cpu = Tensor._make(arr, False, None, 0)
        if callable(ml) and not isinstance(ml, (str, Device, dict)):
            out = ml(cpu, str(saved_dev))
            if out is not None:
                if not isinstance(out, Tensor):
                    raise TypeError(f"load: map_location returned a {type(out).__name__} for tensor "
                                    f"{path!r}; it must return a Tensor or None")
                return out
            target = saved_dev
        elif ml is None:
            target = saved_dev
        elif isinstance(ml, dict):
            m = ml.get(str(saved_dev))
            if m is None and saved_dev.type == "cuda" and saved_dev.index == 0:
                m = ml.get("cuda")
            if m is None:
                m = ml.get(saved_dev)
            target = saved_dev if m is None else Device(m)
        else:
            target = Device(ml)
        if target.type == "cpu":
            return cpu
        try:
            return Tensor._make(backend.move(arr, target), False, None, 0)
        except RuntimeError as e:
            raise RuntimeError(f"load: tensor {path!r} in {self.where!r} was saved on {saved_dev} "
                               f"and cannot be placed on {target}: {e}. Pass map_location='cpu' to "
                               "load it onto the CPU") from e
