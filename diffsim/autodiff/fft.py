"""``ds.fft``: differentiable discrete Fourier transforms (``rfftn``, ``irfftn``, ``fftn``, ``ifftn``).

diffsim Tensors are real, so a complex array is stored as a real Tensor with a trailing
dimension of size 2 holding (real, imaginary) parts, as ``torch.view_as_real`` lays it out:

* ``rfftn(x [*S], dim)``            -> ``X [*S', 2]`` (last transformed dim halved: ``n // 2 + 1``)
* ``irfftn(X [*S', 2], s, dim)``    -> ``x [*S]`` (real)
* ``fftn(z [*S, 2], dim)``          -> ``Z [*S, 2]``
* ``ifftn(Z [*S, 2], dim)``         -> ``z [*S, 2]``
* one-dimensional ``rfft``, ``irfft``, ``fft``, ``ifft`` over ``dim`` (default the last)

Normalization is numpy's ``"backward"`` (``ifftn`` / ``irfftn`` divide by the number of
points). ``dim`` counts the dimensions of the real array (negative values index from the
end, excluding the trailing (re, im) dimension of complex inputs). Backward rules are the
adjoint transforms, written with these same ops, so gradients of any order work:

* ``rfftn``: ``grad_x = N * irfftn(G / c)``; ``irfftn``: ``grad_X = (c / N) * rfftn(g)``,
  where ``c`` is 1 on the DC (and Nyquist) bins of the halved dim and 2 elsewhere;
* ``fftn``: ``grad = N * ifftn(G)``; ``ifftn``: ``grad = fftn(G) / N``.
"""
from __future__ import annotations

import math

import numpy as np

from .backend import get_xp
from .function import call_op, defop

__all__ = ["rfftn", "irfftn", "fftn", "ifftn", "rfft", "irfft", "fft", "ifft"]


def _fftmod(x):
    xp = get_xp(x)
    return xp.fft


def _to_complex(a):
    return a[..., 0] + 1j * a[..., 1]


def _to_real(z, dtype):
    xp = get_xp(z)
    return xp.stack([z.real, z.imag], -1).astype(dtype, copy=False)


def _last_weights(xp, n, dtype):
    """c: 1 on the DC and Nyquist bins of a halved dim of length ``n``, 2 elsewhere; [n//2+1]."""
    c = np.full(n // 2 + 1, 2.0)
    c[0] = 1.0
    if n % 2 == 0:
        c[-1] = 1.0
    return xp.asarray(c.astype(dtype))


def _bcast(c, axis, ndim):
    shape = [1] * ndim
    shape[axis] = c.shape[0]
    return c.reshape(shape)


def _rfftn_fwd(x, axes, _s):
    return _to_real(_fftmod(x).rfftn(x, axes=axes), x.dtype)


def _irfftn_fwd(X, s, axes):
    return _fftmod(X).irfftn(_to_complex(X), s=s, axes=axes).astype(X.dtype, copy=False)


def _fftn_fwd(z, axes):
    return _to_real(_fftmod(z).fftn(_to_complex(z), axes=axes), z.dtype)


def _ifftn_fwd(z, axes):
    return _to_real(_fftmod(z).ifftn(_to_complex(z), axes=axes), z.dtype)


_rfftn = defop("fft_rfftn", _rfftn_fwd)
_irfftn = defop("fft_irfftn", _irfftn_fwd)
_fftn = defop("fft_fftn", _fftn_fwd)
_ifftn = defop("fft_ifftn", _ifftn_fwd)


def _weights(ns, g, s, axis, ndim):
    """The c weights as a constant shaped to broadcast against the (re, im) array ``g``."""
    from .rawops import RAW_NS
    raw = g if ns is RAW_NS else g._data
    c = _bcast(_last_weights(get_xp(raw), s[-1], raw.dtype), axis, ndim)[..., None]
    if ns is RAW_NS:
        return c
    from .creation import as_tensor
    return as_tensor(c, device=g.device)


@_rfftn.defvjp
def _(ns, node, g, *saved):
    axes, s = node.attrs["axes"], node.attrs["_s"]
    c = _weights(ns, g, s, axes[-1], g.ndim - 1)
    return (call_op(ns, _irfftn, g / c, s=s, axes=axes) * math.prod(s),)


@_irfftn.defvjp
def _(ns, node, g, *saved):
    axes, s = node.attrs["axes"], node.attrs["s"]
    c = _weights(ns, g, s, axes[-1], g.ndim)
    return (call_op(ns, _rfftn, g, axes=axes, _s=s) * (c / math.prod(s)),)


@_fftn.defvjp
def _(ns, node, g, *saved):
    axes = node.attrs["axes"]
    N = math.prod(g.shape[a] for a in axes)
    return (call_op(ns, _ifftn, g, axes=axes) * N,)


@_ifftn.defvjp
def _(ns, node, g, *saved):
    axes = node.attrs["axes"]
    N = math.prod(g.shape[a] for a in axes)
    return (call_op(ns, _fftn, g, axes=axes) / N,)


def _axes(ndim, dim, opname):
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, int):
        dim = (dim,)
    out = []
    for d in dim:
        if not -ndim <= d < ndim:
            raise IndexError(f"{opname}: dim {d} is out of range for a {ndim}-d array")
        out.append(d % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{opname}: repeated dims in {tuple(dim)}")
    return tuple(out)


def _check_complex(z, opname):
    if z.ndim < 1 or z.shape[-1] != 2:
        raise RuntimeError(f"{opname}: expected a complex array stored as [..., 2] (real, imag), got "
                           f"shape {list(z.shape)}")


def rfftn(x, dim=None):
    """n-d FFT of a real Tensor ``x [*S]`` over ``dim`` (default all) -> ``[*S', 2]`` (re, im),
    where the last transformed dim has ``n // 2 + 1`` entries (``numpy.fft.rfftn``)."""
    axes = _axes(x.ndim, dim, "fft.rfftn")
    s = tuple(x.shape[a] for a in axes)
    return _rfftn(x, axes=axes, _s=s)


def irfftn(X, s=None, dim=None):
    """Inverse of ``rfftn``: ``X [*S', 2]`` -> real ``x [*S]``; ``s`` gives the output sizes of the
    transformed dims (default: ``2 * (m - 1)`` for the halved last one)."""
    _check_complex(X, "fft.irfftn")
    axes = _axes(X.ndim - 1, dim, "fft.irfftn")
    if s is None:
        s = tuple(X.shape[a] for a in axes[:-1]) + (2 * (X.shape[axes[-1]] - 1),)
    s = tuple(int(v) for v in s)
    if len(s) != len(axes):
        raise ValueError(f"fft.irfftn: s has {len(s)} entries for {len(axes)} dims")
    return _irfftn(X, s=s, axes=axes)


def fftn(z, dim=None):
    """n-d FFT of a complex Tensor stored as ``z [*S, 2]`` -> ``[*S, 2]``."""
    _check_complex(z, "fft.fftn")
    return _fftn(z, axes=_axes(z.ndim - 1, dim, "fft.fftn"))


def ifftn(Z, dim=None):
    """n-d inverse FFT (divides by the number of points) of ``Z [*S, 2]`` -> ``[*S, 2]``."""
    _check_complex(Z, "fft.ifftn")
    return _ifftn(Z, axes=_axes(Z.ndim - 1, dim, "fft.ifftn"))


def rfft(x, dim=-1):
    """1-D ``rfftn`` over ``dim``: ``x [*S] -> [*S', 2]``."""
    return rfftn(x, dim=(dim,))


def irfft(X, n=None, dim=-1):
    """1-D ``irfftn`` over ``dim``: ``X [*S', 2] -> x [*S]`` (``n``: output length)."""
    return irfftn(X, s=None if n is None else (n,), dim=(dim,))


def fft(z, dim=-1):
    """1-D ``fftn`` over ``dim`` of ``z [*S, 2]``."""
    return fftn(z, dim=(dim,))


def ifft(Z, dim=-1):
    """1-D ``ifftn`` over ``dim`` of ``Z [*S, 2]``."""
    return ifftn(Z, dim=(dim,))
