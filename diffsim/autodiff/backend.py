"""Array backends: numpy on the CPU, cupy on NVIDIA GPUs.

This is the one place that knows which array module serves a device. Everything
else asks an array for its module (``get_xp``) or a device for its module
(``Device.xp``). cupy is imported lazily, on the first use of a CUDA device, so
the library imports and runs with no GPU and no cupy installed.
"""
from __future__ import annotations

import numpy as np

_cupy = None          # the cupy module once imported, False if unavailable
_cupy_error = None


def _import_cupy():
    global _cupy, _cupy_error
    if _cupy is None:
        try:
            import cupy  # noqa: PLC0415 - lazy on purpose
            cupy.cuda.runtime.getDeviceCount()
            _cupy = cupy
        except Exception as e:  # ImportError, CUDARuntimeError, ...
            _cupy, _cupy_error = False, e
    return _cupy


def cupy_or_raise():
    cp = _import_cupy()
    if not cp:
        raise RuntimeError(
            "CUDA device requested but cupy with a working GPU is not available "
            f"({_cupy_error!r}); install the 'cuda' extra (pip install diffsim[cuda]) "
            "on a machine with an NVIDIA GPU, or use device='cpu'")
    return cp


class Device:
    """A device: ``Device("cpu")``, ``Device("cuda")`` or ``Device("cuda:1")``.

    Compares equal to its string form, so ``x.device == "cpu"`` works.
    """
    __slots__ = ("type", "index")

    def __init__(self, type_or_str="cpu", index=None):
        if isinstance(type_or_str, Device):
            self.type, self.index = type_or_str.type, type_or_str.index
            return
        if not isinstance(type_or_str, str):
            raise TypeError(f"device: expected a str or Device, got {type(type_or_str).__name__}")
        kind, _, idx = type_or_str.partition(":")
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"device: unknown device type {type_or_str!r}; expected 'cpu', 'cuda' or 'cuda:N'")
        if idx:
            if index is not None:
                raise ValueError(f"device: index given twice in {type_or_str!r}")
            index = int(idx)
        if kind == "cpu":
            index = None
        elif index is None:
            index = 0
        self.type, self.index = kind, index

    @property
    def xp(self):
        """The array module (numpy or cupy) that holds arrays on this device."""
        return np if self.type == "cpu" else cupy_or_raise()

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"

    def __eq__(self, other):
        if isinstance(other, str):
            other = Device(other)
        return isinstance(other, Device) and self.type == other.type and self.index == other.index

    def __hash__(self):
        return hash((self.type, self.index))


CPU = Device("cpu")
_cuda_devices = {}


def device_of(array) -> Device:
    """The Device that holds ``array`` (numpy -> cpu, cupy -> cuda:N)."""
    if isinstance(array, (np.ndarray, np.generic)):
        return CPU
    idx = array.device.id
    d = _cuda_devices.get(idx)
    if d is None:
        d = _cuda_devices[idx] = Device("cuda", idx)
    return d


def get_xp(array):
    """The array module of ``array``: numpy for numpy arrays, cupy for cupy arrays."""
    if type(array) is np.ndarray:
        return np
    cp = _import_cupy()
    if cp and isinstance(array, cp.ndarray):
        return cp
    return np


def is_array(obj) -> bool:
    """True for a numpy or cupy ndarray."""
    if type(obj) is np.ndarray:
        return True
    if _cupy is None and type(obj).__module__.split(".", 1)[0] == "cupy":
        _import_cupy()      # a cupy array before any CUDA use here: import cupy now (lazily)
    return bool(_cupy) and isinstance(obj, _cupy.ndarray)


def move(array, device: Device):
    """Copy ``array`` to ``device`` (no copy if it is already there)."""
    if device.type == "cpu":
        if type(array) is np.ndarray:
            return array
        return array.get()
    cp = cupy_or_raise()
    with cp.cuda.Device(device.index):
        if isinstance(array, cp.ndarray) and array.device.id == device.index:
            return array
        return cp.asarray(array)


def to_numpy(array):
    return array if type(array) is np.ndarray else array.get()


class _CudaNamespace:
    """``ds.cuda``: queries about CUDA devices that never fail on a CPU-only machine."""

    @staticmethod
    def is_available() -> bool:
        return bool(_import_cupy())

    @staticmethod
    def device_count() -> int:
        cp = _import_cupy()
        return cp.cuda.runtime.getDeviceCount() if cp else 0

    @staticmethod
    def synchronize():
        cp = _import_cupy()
        if cp:
            cp.cuda.Device().synchronize()


cuda = _CudaNamespace()
