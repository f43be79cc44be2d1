"""Random numbers: ``manual_seed``, ``Generator``, and the random creation functions.

Each ``Generator`` holds a numpy ``PCG64`` generator for the CPU and, created on first use,
a cupy generator for CUDA devices, both seeded from the same seed, so a seeded program is
reproducible on each device.
"""
from __future__ import annotations

import numpy as np

from . import backend, dtypes
from .creation import _resolve_device, _size
from .tensor import Tensor


class Generator:
    """A seeded source of random numbers (``ds.Generator(device="cpu").manual_seed(0)``)."""

    def __init__(self, device="cpu"):
        self.device = backend.Device(device)
        self._seed = int(np.random.SeedSequence().entropy % (2**63))
        self._reset()

    def _reset(self):
        self._np = np.random.Generator(np.random.PCG64(self._seed))
        self._cp = None

    def manual_seed(self, seed):
        """Reseed; returns self."""
        if not isinstance(seed, (int, np.integer)):
            raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
        self._seed = int(seed) % (2**63)
        self._reset()
        return self

    seed = manual_seed

    def initial_seed(self):
        return self._seed

    def get_state(self):
        """The CPU generator state (a dict), for ``set_state``."""
        return dict(seed=self._seed, bit_generator=self._np.bit_generator.state)

    def set_state(self, state):
        self._seed = state["seed"]
        self._np.bit_generator.state = state["bit_generator"]

    def _for(self, device):
        if device.type == "cpu":
            return self._np
        if self._cp is None:
            cp = backend.cupy_or_raise()
            self._cp = cp.random.Generator(cp.random.XORWOW(self._seed))
        return self._cp


default_generator = Generator()


def manual_seed(seed):
    """Seed the default generator (CPU and CUDA); returns it."""
    return default_generator.manual_seed(seed)


def seed():
    """Seed the default generator from fresh entropy; returns the seed."""
    s = int(np.random.SeedSequence().entropy % (2**63))
    default_generator.manual_seed(s)
    return s


def initial_seed():
    return default_generator.initial_seed()


def _random(opname, size, draw, dtype, device, requires_grad, generator, float_only=True):
    size = _size(size, opname)
    dev = _resolve_device(device)
    dtype = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
    if float_only and dtype.kind != "f":
        raise TypeError(f"{opname}: dtype must be floating point, got {dtype}")
    gen = (generator or default_generator)._for(dev)
    arr = draw(gen, size, dtype)
    t = Tensor._make(arr, False, None, 0)
    if requires_grad:
        t.requires_grad = True
    return t


def _uniform(gen, size, dtype):
    d = dtype if dtype in (dtypes.float32, dtypes.float64) else dtypes.float64
    return gen.random(size, dtype=d).astype(dtype, copy=False)


def _normal(gen, size, dtype):
    d = dtype if dtype in (dtypes.float32, dtypes.float64) else dtypes.float64
    return gen.standard_normal(size, dtype=d).astype(dtype, copy=False)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """Uniform samples on [0, 1) of shape ``size``."""
    return _random("rand", size, _uniform, dtype, device, requires_grad, generator)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """Standard normal samples of shape ``size``."""
    return _random("randn", size, _normal, dtype, device, requires_grad, generator)


def randint(low, high=None, size=None, generator=None, dtype=None, device=None):
    """Integers uniform on ``[low, high)`` of shape ``size`` (``randint(high, size)`` also works)."""
    if size is None and isinstance(high, (tuple, list)):
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint: size must be given")
    if high <= low:
        raise RuntimeError(f"randint: expected low < high, got low={low}, high={high}")
    dt = dtypes.as_dtype(dtype) or dtypes.int64

    def draw(gen, shape, _):
        return gen.integers(low, high, shape).astype(dt, copy=False)
    return _random("randint", (tuple(size),), draw, dt, device, False, generator, float_only=False)


def randperm(n, generator=None, dtype=None, device=None):
    """A random permutation of ``0..n-1`` (int64)."""
    dev = _resolve_device(device)
    gen = (generator or default_generator)._for(dev)
    arr = gen.permutation(n).astype(dtypes.as_dtype(dtype) or dtypes.int64)
    return Tensor._make(arr, False, None, 0)


def _like(fn, x, kw):
    kw.setdefault("dtype", x.dtype)
    kw.setdefault("device", x.device)
    return fn(x.shape, **kw)


def rand_like(input, **kw):  # noqa: A002
    return _like(rand, input, kw)


def randn_like(input, **kw):  # noqa: A002
    return _like(randn, input, kw)


def randint_like(input, low, high=None, **kw):  # noqa: A002
    kw.setdefault("dtype", input.dtype)
    kw.setdefault("device", input.device)
    return randint(low, high, input.shape, **kw)


def normal(mean=0.0, std=1.0, size=None, generator=None, dtype=None, device=None):
    """Normal samples ``mean + std * randn`` (``mean``/``std`` numbers or Tensors; differentiable)."""
    if size is None:
        ref = mean if isinstance(mean, Tensor) else std
        size = ref.shape
        dtype = dtype or ref.dtype
        device = device or ref.device
    return mean + std * randn(size, generator=generator, dtype=dtype, device=device)


def bernoulli(p, generator=None):
    """0/1 samples with probabilities ``p`` (a Tensor), same dtype as ``p``."""
    u = rand(p.shape, generator=generator, dtype=p.dtype, device=p.device)
    return Tensor._make((u._data < p._data).astype(p._data.dtype), False, None, 0)


def multinomial(probs, num_samples, replacement=False, generator=None):
    """Indices sampled from the rows of ``probs`` [K] or [N, K] (CPU sampling)."""
    p = backend.to_numpy(probs._data).astype(np.float64)
    single = p.ndim == 1
    p = np.atleast_2d(p)
    gen = (generator or default_generator)._np
    out = []
    for row in p:
        row = row / row.sum()
        out.append(gen.choice(len(row), size=num_samples, replace=replacement, p=row))
    arr = np.asarray(out, dtype=np.int64)
    arr = arr[0] if single else arr
    return Tensor._make(backend.move(arr, probs.device), False, None, 0)
