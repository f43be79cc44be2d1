"""Pieces shared by ``diffsim.io.serialization`` and ``diffsim.io.trajectory``: the error
type, checksums, atomic temporary files and the opening of files written by diffsim."""
from __future__ import annotations

import numbers
import os
import secrets
import zlib

import h5py
import numpy as np

#: HDF5 library-version bounds used for every file diffsim writes. ``v108`` (HDF5 >= 1.8)
#: gives version-2 superblocks and object headers, whose metadata HDF5 checksums itself.
LIBVER = ("v108", "latest")


class LoadError(RuntimeError):
    """A file could not be loaded: it is missing pieces, truncated, corrupted, not HDF5,
    not written by diffsim, written by a newer diffsim, or its data fails a checksum.

    The message names the path and the problem. diffsim never returns a tensor whose bytes
    failed verification.
    """


def describe_path(path):
    """A printable name for a path or file-like object."""
    if isinstance(path, (str, bytes, os.PathLike)):
        return os.fsdecode(path)
    return getattr(path, "name", None) or f"<{type(path).__name__}>"


def is_filelike(path):
    return hasattr(path, "read") and hasattr(path, "seek")


def crc32_of(array: np.ndarray) -> int:
    """CRC-32 (zlib) of the array's values as little-endian C-order bytes.

    Costs one pass over the data (about 1 GB/s on one core), on save and again on load.
    """
    a = np.ascontiguousarray(array)
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and np.little_endian is False):
        a = a.astype(a.dtype.newbyteorder("<"))
    if a.size == 0:
        return 0
    return zlib.crc32(a.reshape(-1).view(np.uint8)) & 0xFFFFFFFF


def temp_path_for(path: str) -> str:
    """A fresh, unused temporary name in the directory of ``path`` (same file system, so the
    final ``os.replace`` is atomic): ``<dir>/.<name>.<random>.tmp``."""
    d, name = os.path.split(os.path.abspath(path))
    return os.path.join(d, f".{name}.{secrets.token_hex(6)}.tmp")


def create_temp(path: str) -> str:
    """Create an empty temporary file next to ``path`` (with the permissions a normal
    ``open(path, "w")`` would give, i.e. 0o666 minus the umask) and return its name."""
    for _ in range(100):
        tmp = temp_path_for(path)
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"could not create a temporary file next to {path!r}")


def fsync_file(name: str):
    fd = os.open(name, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str):
    """fsync the directory holding ``path`` so that a rename survives a power loss
    (best effort: not possible on every platform)."""
    d = os.path.dirname(os.path.abspath(path))
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit_temp(tmp: str, path: str):
    """fsync ``tmp`` and atomically rename it to ``path``, replacing any old file."""
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path)


def remove_quietly(name: str):
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass


def open_for_read(path, expected_format: str, max_version: int, reader: str):
    """Open ``path`` with h5py for reading and check its root attributes.

    Raises ``FileNotFoundError`` when it does not exist and ``LoadError`` when it is not a
    readable HDF5 file, has no ``diffsim_format`` attribute, has another format (e.g. a
    trajectory given to ``load``), or a format version newer than ``max_version``.
    """
    where = describe_path(path)
    if not is_filelike(path):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{reader}: no such file: {where!r}")
        if os.path.isdir(path):
            raise IsADirectoryError(f"{reader}: {where!r} is a directory, not a file")
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise LoadError(f"{reader}: {where!r} is not a readable HDF5 file (it may be truncated, "
                        f"corrupted or of another format): {e}") from e
    try:
        attrs = f.attrs
        if "diffsim_format" not in attrs:
            raise LoadError(f"{reader}: {where!r} is an HDF5 file but was not written by diffsim "
                            f"(no 'diffsim_format' attribute on its root group)")
        fmt = attrs["diffsim_format"]
        if isinstance(fmt, bytes):
            fmt = fmt.decode("utf-8", "replace")
        if fmt != expected_format:
            hint = ""
            if fmt == "diffsim.trajectory":
                hint = "; it is a trajectory file: read it with ds.io.read_trajectory or TrajectoryReader"
            elif fmt == "diffsim":
                hint = "; it is a ds.save file: read it with ds.load"
            raise LoadError(f"{reader}: {where!r} has format {fmt!r}, expected {expected_format!r}{hint}")
        try:
            version = int(attrs["diffsim_format_version"])
        except Exception as e:  # missing or not a number
            raise LoadError(f"{reader}: {where!r} has no valid 'diffsim_format_version' attribute "
                            f"({e!r})") from e
        if version > max_version:
            raise LoadError(f"{reader}: {where!r} has format version {version}, newer than the "
                            f"versions this diffsim reads (up to {max_version}); upgrade diffsim")
        if version < 1:
            raise LoadError(f"{reader}: {where!r} has an invalid format version {version}")
    except LoadError:
        f.close()
        raise
    except Exception as e:  # h5py errors reading corrupted metadata
        f.close()
        raise LoadError(f"{reader}: {where!r} could not be read: {e!r}") from e
    return f, version


def compression_kwargs(compression, opname):
    """h5py dataset keywords for a ``compression`` argument: 'gzip' (level 1 with the shuffle
    filter), 'lzf', an int gzip level 0-9, or None."""
    if compression is None or compression is False:
        return {}
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 1, "shuffle": True}
    if compression == "lzf":
        return {"compression": "lzf", "shuffle": True}
    if isinstance(compression, numbers.Integral) and not isinstance(compression, bool) \
            and 0 <= compression <= 9:
        return {"compression": "gzip", "compression_opts": int(compression), "shuffle": True}
    raise ValueError(f"{opname}: compression must be 'gzip', 'lzf', a gzip level 0-9 or None, "
                     f"got {compression!r}")
