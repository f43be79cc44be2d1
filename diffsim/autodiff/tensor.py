"""The Tensor: an n-d array (numpy or cupy) plus what autograd needs to know about it.

Math methods and operators (``x.sin()``, ``x + y``) are attached by the op modules
(``ops/*.py``), so each op is defined in one place; this file holds the state and the
non-math methods.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import backend, dtypes
from .grad_mode import STATE


class Tensor:
    """An n-dimensional array on a device that can record the ops applied to it.

    Create one with ``ds.tensor(data, dtype=None, device=None, requires_grad=False)``;
    ``Tensor(data, ...)`` takes the same arguments.
    """
    __slots__ = ("_data", "_rg", "grad", "grad_fn", "_nr", "_version", "_accum", "_retains",
                 "_base", "__weakref__")
    __array_priority__ = 1000   # numpy scalars and arrays defer binary operators to Tensor

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        from .creation import _to_array
        self._data = _to_array(data, dtype, device)
        self._rg = False
        self.grad = None
        self.grad_fn = None
        self._nr = 0
        self._version = [0]
        self._accum = None
        self._retains = False
        self._base = None
        if requires_grad:
            self.requires_grad = True

    @staticmethod
    def _make(data, rg, fn, nr):
        t = _new(Tensor)
        t._data, t._rg, t.grad, t.grad_fn, t._nr = data, rg, None, fn, nr
        t._version, t._accum, t._retains, t._base = [0], None, False, None
        return t

    # ------------------------------------------------------------ metadata
    @property
    def shape(self):
        return self._data.shape

    def size(self, dim=None):
        """The shape, or the length of dimension ``dim``."""
        if dim is None:
            return self._data.shape
        return self._data.shape[_dim(dim, self.ndim, "size")]

    @property
    def ndim(self):
        return self._data.ndim

    def dim(self):
        return self._data.ndim

    def numel(self):
        return int(self._data.size)

    nelement = numel

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def device(self):
        return backend.device_of(self._data)

    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    def is_floating_point(self):
        return self._data.dtype.kind == "f"

    @property
    def requires_grad(self):
        return self._rg

    @requires_grad.setter
    def requires_grad(self, value):
        value = bool(value)
        if value and self._data.dtype.kind != "f":
            raise RuntimeError(
                f"requires_grad: only floating-point tensors can require gradients, got dtype "
                f"{self._data.dtype} (shape {list(self.shape)}); convert with .float() or .double() first")
        if not value and self.grad_fn is not None:
            raise RuntimeError("requires_grad: cannot set requires_grad=False on a non-leaf tensor; "
                               "use .detach() to get a tensor outside the graph")
        self._rg = value

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def output_nr(self):
        return self._nr

    @property
    def data(self):
        """A tensor sharing this one's storage, outside the graph. Unlike ``detach()`` (and as in
        PyTorch) it has its own version counter: in-place changes through ``.data`` are not
        tracked by autograd's checks."""
        return Tensor._make(self._data, False, None, 0)

    @data.setter
    def data(self, value):
        self._data = value._data if isinstance(value, Tensor) else value

    @property
    def _version_count(self):
        return self._version[0]

    # ------------------------------------------------------------ conversion
    def numpy(self):
        """The values as a numpy array (shares memory for CPU tensors that do not require grad)."""
        if self._rg:
            raise RuntimeError("numpy: can't call numpy() on a tensor that requires grad; "
                               "use tensor.detach().numpy()")
        return backend.to_numpy(self._data)

    def __array__(self, dtype=None, copy=None):
        a = backend.to_numpy(self._data)
        return a if dtype is None else a.astype(dtype, copy=False)

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self._data.size != 1:
            raise RuntimeError(f"item: a Tensor with {self._data.size} elements (shape {list(self.shape)}) "
                               "cannot be converted to a Python scalar; index it or reduce it first")
        return self._data.reshape(()).item() if type(self._data) is np.ndarray else \
            backend.to_numpy(self._data).reshape(()).item()

    def tolist(self):
        return backend.to_numpy(self._data).tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self._data.dtype.kind not in "iub":
            raise TypeError(f"only integer tensors can be used as an index, got dtype {self.dtype}")
        return int(self.item())

    def __bool__(self):
        if self._data.size != 1:
            raise RuntimeError(f"bool: the truth value of a Tensor with {self._data.size} elements "
                               f"(shape {list(self.shape)}) is ambiguous; use .any() or .all()")
        return bool(self.item())

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    def __hash__(self):
        return id(self)

    def __dlpack__(self, stream=None, **kwargs):
        if self._rg:
            raise RuntimeError("__dlpack__: can't export a tensor that requires grad; detach() it first")
        if stream is None:
            return self._data.__dlpack__(**kwargs)
        return self._data.__dlpack__(stream=stream, **kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    def detach(self):
        """A tensor sharing storage (and version counter) with this one, outside the graph."""
        t = Tensor._make(self._data, False, None, 0)
        t._version = self._version
        return t

    def detach_(self):
        if self._base is not None and self._base.requires_grad:
            raise RuntimeError("detach_: can't detach a view in place; use detach()")
        self.grad_fn, self._rg, self._nr = None, False, 0
        return self

    def to(self, *args, dtype=None, device=None, copy=False):
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)`` or ``to(other_tensor)``;
        differentiable; returns ``self`` when nothing changes and ``copy`` is False."""
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif isinstance(a, (str, backend.Device)):
                device = a
            else:
                dtype = a
        out = self
        if device is not None:
            device = backend.Device(device)
            if device != self.device:
                from .ops.elementwise import to_device
                out = to_device(out, device=device)
        if dtype is not None:
            dtype = dtypes.as_dtype(dtype)
            if dtype != out.dtype:
                out = out.astype(dtype)
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to(backend.Device("cuda", device if isinstance(device, int) else None)
                       if not isinstance(device, (str, backend.Device)) else device)

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def half(self):
        return self.to(dtypes.float16)

    def int(self):
        return self.to(dtypes.int32)

    def long(self):
        return self.to(dtypes.int64)

    def bool(self):
        return self.to(dtypes.bool_)

    def type(self, dtype=None):
        if dtype is None:
            return f"diffsim.{self.dtype.name}"
        return self.to(dtypes.as_dtype(dtype))

    # ------------------------------------------------------------ autograd
    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        ``gradient`` is required for non-scalar tensors (the vector in the vector-Jacobian
        product); ``retain_graph`` keeps saved values for another backward; ``create_graph``
        records the backward itself so that gradients can be differentiated again.
        """
        from .engine import backward
        backward((self,), None if gradient is None else (gradient,), retain_graph, create_graph,
                 inputs=inputs)

    def register_hook(self, hook):
        """Call ``hook(grad)`` when the gradient w.r.t. this tensor is computed; if it returns a
        Tensor, that replaces the gradient. Returns a handle with ``remove()``."""
        from .function import edge_of
        if not self._rg:
            raise RuntimeError("register_hook: cannot register a hook on a tensor that doesn't require grad")
        node, nr = edge_of(self)
        if node.hooks is None:
            node.hooks = {}
        hooks = node.hooks.setdefault(nr, [])
        # as in PyTorch, the retain_grad hook runs after every other hook: keep it last
        i = len(hooks)
        while i and getattr(hooks[i - 1], "_retains_grad", False):
            i -= 1
        hooks.insert(i, hook)
        return _HookHandle(hooks, hook)

    def retain_grad(self):
        """Keep ``.grad`` for this non-leaf tensor after backward."""
        if not self._rg:
            raise RuntimeError("retain_grad: can't retain_grad on a tensor that doesn't require grad")
        if self.grad_fn is None or self._retains:
            return
        import weakref
        ref = weakref.ref(self)

        def _keep(g):
            t = ref()
            if t is not None:
                t.grad = g.detach() if t.grad is None else (t.grad + g).detach()
        _keep._retains_grad = True       # register_hook keeps it after hooks added later
        self._retains = True
        self.register_hook(_keep)

    @property
    def retains_grad(self):
        return self._retains

    # ------------------------------------------------------------ in-place support
    def _check_inplace(self, opname):
        if STATE.grad_enabled:
            if self._rg and self.grad_fn is None:
                raise RuntimeError(
                    f"{opname}: a leaf Variable that requires grad (shape {list(self.shape)}) is being "
                    "used in an in-place operation; wrap the update in `with ds.no_grad():` "
                    "or use an out-of-place op")
            base = self._base
            if base is not None and base._rg:
                raise RuntimeError(
                    f"{opname}: in-place operation on a view of a tensor that requires grad is not "
                    "supported; modify the base tensor with indexing assignment (x[idx] = v) or "
                    "clone() the view first")

    def _become(self, result, opname):
        """Make ``self`` hold ``result``'s values (written into self's memory) and graph identity."""
        data = result._data
        if data.dtype != self._data.dtype:
            if dtypes.category(data.dtype) > dtypes.category(self._data.dtype):
                raise RuntimeError(f"{opname}: result type {data.dtype} can't be cast to the desired "
                                   f"output type {self._data.dtype}")
        if data.shape != self._data.shape:
            raise RuntimeError(f"{opname}: output with shape {list(self.shape)} doesn't match the "
                               f"broadcast shape {list(data.shape)}")
        if result.grad_fn is not None and self._base is not None:
            raise RuntimeError(
                f"{opname}: in-place operation on a view (shape {list(self.shape)}) with a value that "
                "requires grad is not supported, because the base tensor would not see the gradient; "
                "assign through the base (base[idx] = value) or work on a clone()")
        self._data[...] = data
        self._version[0] += 1
        if result.grad_fn is not None:
            self.grad_fn, self._nr, self._rg = result.grad_fn, result._nr, True
            node = result.grad_fn
            if node.out_data is not None and node.op.n_out == 1:
                node.out_data = (self._data, self._version, self._version[0])
        return self

    # ------------------------------------------------------------ repr
    def __repr__(self):
        a = backend.to_numpy(self._data)
        fixed = a.dtype.kind == "f" and a.size and not np.all(np.isfinite(a) & (a == np.round(a))
                                                            | ~np.isfinite(a))
        body = np.array2string(a, separator=", ", prefix="tensor(", precision=4,
                               floatmode="fixed" if fixed else "maxprec_equal",
                               threshold=1000, edgeitems=3, max_line_width=88)
        extra = [f"dtype={self.dtype.name}", f"device='{self.device}'"]
        if self.grad_fn is not None:
            extra.append(f"grad_fn=<{_bw(self.grad_fn)}>")
        elif self._rg:
            extra.append("requires_grad=True")
        return f"tensor({body}, " + ", ".join(extra) + ")"

    __str__ = __repr__


def _bw(node):
    from .function import _backward_name
    return _backward_name(node.op.name)


_new = object.__new__


class _HookHandle:
    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def _dim(dim, ndim, opname):
    """Normalize a possibly negative dim; raise an error naming ``opname`` if out of range."""
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TypeError(f"{opname}: dim must be an int, got {type(dim).__name__} {dim!r}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{opname}: dimension out of range (expected to be in range of "
                         f"[{-n}, {n - 1}], but got {dim})")
    return dim + n if dim < 0 else dim
