"""``nn.utils``: gradient clipping and flattening parameters to one vector."""
from __future__ import annotations

import math

from ..autodiff.creation import tensor as _tensor
from ..autodiff.grad_mode import no_grad
from ..autodiff.ops import cat
from ..autodiff.tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters"]


def _params(parameters):
    if isinstance(parameters, Tensor):
        return [parameters]
    return list(parameters)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients in place so that their joint ``norm_type``-norm is at most
    ``max_norm``. Returns the total norm before clipping (a 0-d Tensor)."""
    grads = [p.grad for p in _params(parameters) if p.grad is not None]
    if not grads:
        return _tensor(0.0)
    norm_type = float(norm_type)
    with no_grad():
        if norm_type == math.inf:
            total = max(float(abs(g._data).max()) if g.numel() else 0.0 for g in grads)
        else:
            total = sum(float((abs(g._data) ** norm_type).sum()) for g in grads) ** (1.0 / norm_type)
        if error_if_nonfinite and not math.isfinite(total):
            raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients "
                               "is non-finite; set error_if_nonfinite=False to clip anyway")
        coef = max_norm / (total + 1e-6)
        if not coef >= 1:          # also when the norm is NaN: gradients become NaN, as in PyTorch
            for g in grads:
                g._data *= coef
                g._version[0] += 1
    return _tensor(total, dtype=grads[0].dtype)


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient element to ``[-clip_value, clip_value]`` in place."""
    with no_grad():
        for p in _params(parameters):
            if p.grad is not None:
                p.grad.clamp_(-clip_value, clip_value)


def parameters_to_vector(parameters):
    """All parameters flattened and concatenated into one 1-d Tensor (differentiable)."""
    return cat([p.reshape(-1) for p in _params(parameters)])


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of the 1-d ``vec`` into the parameters (in place, no graph)."""
    if not isinstance(vec, Tensor) or vec.ndim != 1:
        raise TypeError(f"vector_to_parameters: expected a 1-d Tensor, got "
                        f"{type(vec).__name__} of shape {list(getattr(vec, 'shape', []))}")
    params = _params(parameters)
    total = sum(p.numel() for p in params)
    if vec.numel() != total:
        raise RuntimeError(f"vector_to_parameters: vector has {vec.numel()} elements but the "
                           f"parameters have {total}")
    i = 0
    with no_grad():
        for p in params:
            n = p.numel()
            p._data[...] = vec._data[i:i + n].reshape(p.shape)
            p._version[0] += 1
            i += n
