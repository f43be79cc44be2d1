"""``Parameter``: a Tensor that a Module registers as one of its parameters."""
from __future__ import annotations

from ..autodiff.creation import _to_array
from ..autodiff.tensor import Tensor


class Parameter(Tensor):
    """A leaf Tensor that, assigned as a Module attribute, is registered in ``parameters()``.

    ``Parameter(data, requires_grad=True)``: ``data`` is a Tensor (its memory is shared), an
    array, or nested lists. Ops on a Parameter return plain Tensors.
    """
    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = []
        arr = data._data if isinstance(data, Tensor) else _to_array(data, None, None, copy=False)
        self._data = arr
        self._rg = False
        self.grad = None
        self.grad_fn = None
        self._nr = 0
        self._version = data._version if isinstance(data, Tensor) else [0]
        self._accum = None
        self._retains = False
        self._base = None
        if requires_grad:
            self.requires_grad = True

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __deepcopy__(self, memo):
        # as torch.nn.Parameter: a Parameter over a copy of the values (no .grad), so that
        # ``copy.deepcopy(module)`` works although Parameters are not picklable
        if id(self) in memo:
            return memo[id(self)]
        result = type(self)(self._data.copy(), self.requires_grad)
        memo[id(self)] = result
        return result

    def __reduce_ex__(self, protocol):
        raise TypeError("Parameter: pickling is not supported; save state_dicts with ds.save")
