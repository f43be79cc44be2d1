"""The op registry, the one dispatch point, graph nodes, and custom ``Function``.

How an op is defined (see ``ops/elementwise.py`` for many examples)::

    sin = defop("sin", lambda x: np.sin(x), save=(0,))

    @sin.defvjp
    def _(ns, node, g, x):          # x: the saved input (array, or Tensor under create_graph)
        return (g * ns.cos(x),)     # one gradient (or None) per input

* The forward takes arrays (numpy or cupy; Python scalars pass through) and returns an
  array, or a tuple of arrays when ``n_out > 1``. numpy functions dispatch to cupy through
  the array protocols; an op that needs its module calls ``get_xp(x)``.
* ``save`` lists the input positions the backward needs (or is a function
  ``save(edges, args) -> positions`` when that depends on which inputs need a gradient);
  ``save_output=True`` also hands it the output(s). Only those are kept alive by the graph.
* ``view=True`` marks an op whose output shares memory with its first input (reshape,
  transpose, basic indexing): the two share a version counter, so in-place changes through
  either are seen by autograd's checks.
* The backward ``bwd(ns, node, g, *saved)`` gets ``ns``, a namespace of array functions
  with diffsim names and semantics (``ns.sum(x, dim, keepdim)``, ``ns.sum_to(g, shape)`` ...).
  In a plain backward ``ns`` works on raw arrays (fast); under ``create_graph=True`` it is
  the Tensor-op namespace, so the same rule builds a differentiable graph and gradients of
  gradients come free. ``node.attrs`` holds the op's keyword attributes and
  ``node.needs_input_grad`` which inputs want a gradient.
* ``broadcast=True`` makes the engine reduce each input's gradient back to its shape.
* A GPU kernel can replace the cupy forward of one op: ``op.cuda_fwd = kernel``.
* A backward that is itself another registered op (conv's input gradient is a transposed
  conv) calls it with ``call_op(ns, op, *args, **attrs)``: on raw arrays in a plain
  backward, recorded in the graph under ``create_graph``.

Every differentiable primitive goes through ``apply``, which a tracer can hook
(``STATE.tracer``).
"""
from __future__ import annotations

import traceback
import weakref

import numpy as np

from . import backend
from .grad_mode import STATE

REGISTRY: dict[str, "OpDef"] = {}
_EMPTY = {}


class OpDef:
    """One primitive op: name, forward, backward, and what the backward needs."""
    __slots__ = ("name", "fwd", "bwd", "save", "save_output", "broadcast", "n_out",
                 "differentiable", "view", "cuda_fwd", "__weakref__")

    def __init__(self, name, fwd, save=(), save_output=False, broadcast=False, n_out=1,
                 differentiable=True, view=False):
        self.name, self.fwd, self.bwd = name, fwd, None
        self.save = save if callable(save) else tuple(save)
        self.save_output, self.broadcast, self.view = save_output, broadcast, view
        self.n_out, self.differentiable, self.cuda_fwd = n_out, differentiable, None

    def defvjp(self, bwd):
        self.bwd = bwd
        return bwd

    def __call__(self, *args, **attrs):
        return apply(self, args, attrs)

    def __repr__(self):
        return f"<op {self.name}>"


def defop(name, fwd, **kw) -> OpDef:
    """Register a primitive op under ``name`` (see the module docstring)."""
    if name in REGISTRY:
        raise ValueError(f"defop: op {name!r} is already registered")
    op = REGISTRY[name] = OpDef(name, fwd, **kw)
    return op


_FREED = object()


class Node:
    """A recorded op application: a node of the backward graph (``tensor.grad_fn``)."""
    __slots__ = ("op", "edges", "saved", "versions", "out_data", "attrs", "bshapes",
                 "out_meta", "hooks", "trace", "topo", "__weakref__")

    def __init__(self, op, edges, attrs):
        self.op, self.edges, self.attrs = op, edges, attrs
        # topological number: 1 + the longest path to a leaf (leaves are 0). A node can only
        # reach nodes with smaller numbers, so ``autograd.grad`` need not look below its
        # inputs' numbers (a force taken as the gradient of an energy inside a long rollout
        # then walks the energy's graph, not the whole history)
        t = 0
        for e in edges:
            if e is not None:
                n = e[0].topo
                if n > t:
                    t = n
        self.topo = t + 1
        self.saved = ()
        self.versions = ()
        self.out_data = None
        self.bshapes = None
        self.out_meta = None
        self.hooks = None
        self.trace = None

    def name(self):
        return self.op.name

    @property
    def needs_input_grad(self):
        return tuple(e is not None for e in self.edges)

    @property
    def next_functions(self):
        return tuple((e[0], e[1]) if e is not None else (None, 0) for e in self.edges)

    def __repr__(self):
        return f"<{_backward_name(self.op.name)} object>"


def _backward_name(name):
    return "".join(p.capitalize() for p in name.split("_")) + "Backward"


class AccumulateGrad:
    """The graph node of a leaf that requires grad: adds incoming gradients to ``leaf.grad``."""
    __slots__ = ("leaf", "hooks", "__weakref__")
    op = None
    topo = 0
    edges = ()
    out_meta = None

    def __init__(self, leaf):
        self.leaf = weakref.ref(leaf)
        self.hooks = None

    def name(self):
        return "AccumulateGrad"

    def __repr__(self):
        return "<AccumulateGrad object>"


def edge_of(t):
    """The (node, output_nr) edge into which gradients for tensor ``t`` flow, or None."""
    fn = t.grad_fn
    if fn is not None:
        return (fn, t._nr)
    if t._rg:
        acc = t._accum
        if acc is None:
            acc = t._accum = AccumulateGrad(t)
        return (acc, 0)
    return None


def _device_error(op, args):
    devs = [str(a.device) for a in args if isinstance(a, Tensor)]
    return RuntimeError(f"{op.name}: expected all tensors on the same device, got devices {devs}; "
                        "move them with .to(device) first")


def _with_cpu_scalars_moved(op, args):
    """As in PyTorch, 0-d CPU tensors may join GPU tensors in an op: they are moved there by a
    recorded ``to`` (so their gradient comes back to the CPU). Anything else on mixed
    devices is an error."""
    gpu = next((a for a in args if isinstance(a, Tensor) and type(a._data) is not np.ndarray), None)
    if gpu is None or any(isinstance(a, Tensor) and type(a._data) is np.ndarray and a._data.ndim
                          for a in args):
        raise _device_error(op, args)
    dev = gpu.device
    return tuple(a.to(dev) if isinstance(a, Tensor) and type(a._data) is np.ndarray else a for a in args)


def apply(op, args, attrs=_EMPTY):
    """Run ``op`` on ``args`` (Tensors or Python scalars) and record it in the graph."""
    if STATE.tracer is not None:
        return STATE.tracer(op, args, attrs)
    arrays = []
    requires = False
    atype = None
    for a in args:
        if isinstance(a, Tensor):
            d = a._data
            t = type(d)
            if atype is None:
                atype = t
            elif t is not atype:
                return apply(op, _with_cpu_scalars_moved(op, args), attrs)
            requires = requires or a._rg
            arrays.append(d)
        else:
            arrays.append(a)
    try:
        if atype is np.ndarray or atype is None:
            out = op.fwd(*arrays, **attrs)
            if type(out) is not np.ndarray:       # numpy returns scalars for 0-d results
                out = _scalars_to_arrays(out, op.n_out)
        else:
            _check_same_gpu(op, args)
            out = (op.cuda_fwd or op.fwd)(*arrays, **attrs)
    except (ValueError, TypeError, OverflowError) as e:
        raise _input_error(op, args, e) from e
    if not (requires and STATE.grad_enabled and op.differentiable):
        if op.n_out == 1:
            res = Tensor._make(out, False, None, 0)
            if op.view:
                _share_base(res, args[0])
            return res
        return tuple(Tensor._make(o, False, None, 0) for o in out)
    edges = []
    for a in args:
        if isinstance(a, Tensor):
            fn = a.grad_fn
            if fn is not None:
                edges.append((fn, a._nr))
            elif a._rg:
                acc = a._accum
                if acc is None:
                    acc = a._accum = AccumulateGrad(a)
                edges.append((acc, 0))
            else:
                edges.append(None)
        else:
            edges.append(None)
    node = Node(op, edges, attrs)
    save = op.save
    if save:
        if type(save) is not tuple:
            save = save(edges, args)
        saved = []
        versions = []
        for i in save:
            s_ = args[i] if i >= 0 else None
            saved.append(s_)
            versions.append(s_._version[0] if isinstance(s_, Tensor) else 0)
        node.saved = saved
        node.versions = versions
    if op.broadcast:
        oshape = out.shape
        for a in args:
            if isinstance(a, Tensor) and a._data.shape != oshape:
                node.bshapes = tuple(a.shape if isinstance(a, Tensor) else None for a in args)
                break
    if STATE.anomaly:
        node.trace = "".join(traceback.format_stack()[:-2])
    if op.n_out == 1:
        res = Tensor._make(out, out.dtype.kind == "f", node, 0)
        if res._rg is False:
            res.grad_fn = None
        elif op.save_output:
            node.out_data = (out, res._version, 0)
        if op.view:
            _share_base(res, args[0])
        return res
    outs = tuple(Tensor._make(o, True, node, i) if o.dtype.kind == "f" else
                 Tensor._make(o, False, None, 0) for i, o in enumerate(out))
    node.out_meta = tuple((o.shape, o.dtype) for o in out)
    if op.save_output:
        node.out_data = tuple((o, t._version, 0) for o, t in zip(out, outs))
    if op.view:
        for t in outs:
            _share_base(t, args[0])
    return outs


def _scalars_to_arrays(out, n_out):
    """numpy scalars -> 0-d arrays; arrays pass through (a cupy one too: ``to_device`` makes a
    GPU array from a CPU input, and ``np.asarray`` on a cupy array raises)."""
    if n_out == 1:
        return out if backend.is_array(out) else np.asarray(out)
    return tuple(o if backend.is_array(o) else np.asarray(o) for o in out)


def call_op(ns, op, *args, **attrs):
    """Run ``op`` inside a backward rule: its forward on raw arrays when ``ns`` is the raw
    namespace (plain backward), else through ``apply`` on Tensors (``create_graph``)."""
    from .rawops import RAW_NS
    if ns is RAW_NS:
        return op.fwd(*args, **attrs)
    return apply(op, args, attrs)


def _share_base(view, base):
    view._version = base._version
    view._base = base._base if base._base is not None else base


def _describe(args):
    parts = []
    for a in args:
        if isinstance(a, Tensor):
            parts.append(f"Tensor(shape={list(a.shape)}, dtype={a.dtype}, device={a.device})")
        else:
            parts.append(repr(a) if not hasattr(a, "shape") else f"array(shape={list(a.shape)})")
    return ", ".join(parts)


def _input_error(op, args, e):
    """An error naming the op and its operands' shapes/dtypes/devices."""
    msg = str(e)
    if "broadcast" in msg:
        shapes = " and ".join(str(list(a.shape)) for a in args if isinstance(a, Tensor))
        text = f"{op.name}: shapes {shapes} cannot be broadcast together"
    else:
        text = f"{op.name}: {msg}"
    cls = TypeError if isinstance(e, TypeError) else RuntimeError
    return cls(f"{text} (inputs: {_describe(args)})")


def _check_same_gpu(op, args):
    ids = {a._data.device.id for a in args if isinstance(a, Tensor)}
    if len(ids) > 1:
        raise _device_error(op, args)


# ---------------------------------------------------------------- custom Functions

class FunctionCtx:
    """The ``ctx`` of a custom ``Function``: saves tensors and flags for its backward."""

    def __init__(self):
        self.to_save = ()
        self.non_differentiable = ()
        self.needs_input_grad = ()
        self.materialize_grads = True
        self._node_ref = None

    # the node holds the ctx; the ctx refers back to it weakly, so that no reference cycle keeps
    # a graph (and the arrays it saved) alive until the cycle collector runs
    @property
    def _node(self):
        ref = self._node_ref
        return ref() if ref is not None else None

    @_node.setter
    def _node(self, node):
        self._node_ref = weakref.ref(node)

    def save_for_backward(self, *tensors):
        self.to_save = tensors

    def mark_non_differentiable(self, *tensors):
        self.non_differentiable = tensors

    def set_materialize_grads(self, value: bool):
        self.materialize_grads = value

    @property
    def saved_tensors(self):
        node = self._node
        if node is None:
            raise RuntimeError("saved_tensors: only available in backward, for a Function application "
                               "that recorded a graph node")
        if node.saved is _FREED:
            raise RuntimeError(_freed_message(node))
        check_versions(node)
        return node.saved_now


def once_differentiable(backward):
    """Mark a custom ``backward`` as not differentiable itself: under ``create_graph`` it runs
    without recording a graph, on detached gradients."""
    import functools

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        from .grad_mode import no_grad
        with no_grad():
            return backward(ctx, *[g.detach() if isinstance(g, Tensor) else g for g in grads])
    return wrapper


class CustomNode(Node):
    """Graph node of a custom ``Function`` application."""
    __slots__ = ("fn_cls", "ctx", "saved_now")


class Function:
    """Custom differentiable op, as ``torch.autograd.Function``::

        class Cube(Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x ** 3
            @staticmethod
            def backward(ctx, g):
                x, = ctx.saved_tensors
                return 3 * x ** 2 * g
        y = Cube.apply(x)

    ``forward`` runs without recording a graph; ``backward`` gets and returns Tensors (one
    gradient or None per forward input), and is itself differentiable under
    ``create_graph=True`` unless wrapped in ``once_differentiable``.
    """

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls._op = OpDef(cls.__name__, None)

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("Function subclasses must define forward(ctx, ...)")

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError("Function subclasses must define backward(ctx, *grads)")

    @classmethod
    def apply(cls, *args, **kwargs):
        from .grad_mode import no_grad
        ctx = FunctionCtx()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a._rg for a in args)
        with no_grad():
            out = cls.forward(ctx, *args, **kwargs)
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        for o in outs:
            if not isinstance(o, Tensor):
                raise TypeError(f"{cls.__name__}.forward must return Tensors, got {type(o).__name__}")
        if not (STATE.grad_enabled and any(ctx.needs_input_grad)):
            return out
        node = CustomNode(cls._op, tuple(edge_of(a) if isinstance(a, Tensor) else None for a in args),
                          _EMPTY)
        node.fn_cls, node.ctx, node.saved_now = cls, ctx, None
        node.saved = tuple(ctx.to_save)
        node.versions = tuple(t._version[0] if isinstance(t, Tensor) else 0 for t in ctx.to_save)
        ctx.to_save = ()                 # the node holds them now (and frees them after backward)
        node.out_meta = tuple((o.shape, o.dtype) for o in outs)
        # input shapes: the engine reduces a broadcast gradient to them and rejects other shapes
        node.bshapes = tuple(a.shape if isinstance(a, Tensor) else None for a in args)
        ctx._node = node
        if STATE.anomaly:
            node.trace = "".join(traceback.format_stack()[:-1])
        nondiff = {id(t) for t in ctx.non_differentiable}
        res = []
        for i, o in enumerate(outs):
            if id(o) in nondiff or o.dtype.kind != "f":
                t = Tensor._make(o._data, False, None, 0)
            else:
                t = Tensor._make(o._data, True, node, i)
            # same memory as ``o``, so the same version counter: an in-place change of the output
            # is seen by the check of a saved ``o`` (and of an input that forward returned)
            t._version = o._version
            base = o._base if o._base is not None else o
            if any(base is a for a in args):
                t._base = base
            res.append(t)
        return res[0] if single else tuple(res)


def run_custom_backward(node, grads, graph_mode):
    """Run a custom Function's backward on Tensors (engine helper); returns a tuple."""
    node.saved_now = node.saved if graph_mode else tuple(
        t.detach() if isinstance(t, Tensor) else t for t in node.saved)
    out = node.fn_cls.backward(node.ctx, *grads)
    node.saved_now = None
    return out if isinstance(out, tuple) else (out,)


def check_versions(node):
    """Raise if a tensor saved by ``node`` was changed in place after it was saved."""
    for s, v in zip(node.saved, node.versions):
        if isinstance(s, Tensor) and s._version[0] != v:
            raise RuntimeError(
                f"{node.op.name} backward: a tensor it saved (shape {list(s.shape)}, dtype {s.dtype}) "
                f"was modified by an in-place operation: it is at version {s._version[0]}, expected "
                f"version {v}. Use an out-of-place op (e.g. x = x + 1 instead of x += 1) or .clone() "
                "it before the in-place change.")
    out = node.out_data
    if out is not None:
        for data, counter, expected in ((out,) if node.op.n_out == 1 else out):
            if counter[0] != expected:
                raise RuntimeError(
                    f"{node.op.name} backward: its output (shape {list(data.shape)}) was modified by "
                    f"an in-place operation (version {counter[0]}, expected {expected}); clone() it "
                    "before modifying it.")


def _freed_message(node):
    return (f"{node.op.name if node.op else 'node'} backward: trying to backward through the graph a "
            "second time (or to access saved tensors after they were freed). Saved intermediate "
            "values are freed after .backward() or autograd.grad(); pass retain_graph=True the "
            "first time if you need to backward through the graph again.")


from .tensor import Tensor  # noqa: E402  (cycle: Tensor methods call apply)
