"""Reverse-mode engine: walks the recorded graph from outputs to leaves.

Iterative (no recursion, so a 100 000-op chain is fine): dependencies are counted with
an explicit stack, then nodes run when all their gradients have arrived. Gradients are
raw arrays in a plain backward (fast) and Tensors under ``create_graph=True``, in which
case the same backward rules record a graph of their own.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .function import (_FREED, AccumulateGrad, CustomNode, check_versions, edge_of, _freed_message,
                       run_custom_backward)
from .grad_mode import STATE
from .tensor import Tensor

_NS = {}


def _namespaces():
    if not _NS:
        from . import rawops
        from .ops import TENSOR_NS
        _NS["raw"], _NS["tensor"] = rawops.RAW_NS, TENSOR_NS
    return _NS


def _root_grads(outputs, grad_outputs, create_graph, opname):
    grads = []
    for i, t in enumerate(outputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"{opname}: outputs must be Tensors, got {type(t).__name__}")
        if not t._rg:
            raise RuntimeError(
                f"{opname}: element {i} of tensors does not require grad and does not have a grad_fn "
                "(did you call it inside no_grad(), or forget requires_grad=True on the inputs?)")
        g = None if grad_outputs is None else grad_outputs[i]
        if g is None:
            if t._data.size != 1:
                raise RuntimeError(
                    f"{opname}: grad can be implicitly created only for scalar outputs, but the output "
                    f"has shape {list(t.shape)}; pass gradient= (a tensor of that shape) or reduce "
                    "the output first (e.g. .sum())")
            g = np.ones_like(t._data)
            grads.append(Tensor._make(g, False, None, 0) if create_graph else g)
            continue
        if not isinstance(g, Tensor):
            from .creation import as_tensor
            g = as_tensor(g, dtype=t.dtype, device=t.device)
        if g.shape != t.shape:
            raise RuntimeError(f"{opname}: gradient has shape {list(g.shape)} but the output has shape "
                               f"{list(t.shape)}; they must match")
        if type(g._data) is not type(t._data):
            raise RuntimeError(f"{opname}: gradient is on {g.device} but the output is on {t.device}")
        grads.append(g if create_graph else g._data)
    return grads


def _collect(root_nodes, min_topo=0):
    """Count, for each node reachable from the roots, how many edges lead into it. Nodes
    numbered below ``min_topo`` (they cannot reach any input of ``autograd.grad``) are
    counted but not expanded."""
    deps = {}
    seen = set()
    stack = list(root_nodes)
    for n in root_nodes:
        seen.add(n)
    while stack:
        node = stack.pop()
        for e in node.edges:
            if e is None:
                continue
            nxt = e[0]
            deps[nxt] = deps.get(nxt, 0) + 1
            if nxt not in seen:
                seen.add(nxt)
                if nxt.topo >= min_topo:
                    stack.append(nxt)
    return deps, seen


def _needed(seen, targets):
    """Nodes from which some target node can be reached along at least one edge (only those
    must run their backward; a target that is not such a node is only captured, so that
    ``autograd.grad`` w.r.t. a non-leaf neither runs nor frees that tensor's ``grad_fn``)."""
    parents = {}
    for node in seen:
        for e in node.edges:
            if e is not None:
                parents.setdefault(e[0], []).append(node)
    need = set()
    stack = [t for t in targets if t in seen]
    while stack:
        n = stack.pop()
        for p in parents.get(n, ()):
            if p not in need:
                need.add(p)
                stack.append(p)
    return need


def run(outputs, grad_outputs, retain_graph, create_graph, capture=None, accumulate=True,
        opname="backward"):
    """The engine. ``capture`` maps (node, output_nr) -> slot for ``autograd.grad``."""
    graph_mode = bool(create_graph)
    if retain_graph is None:
        retain_graph = graph_mode
    grads0 = _root_grads(outputs, grad_outputs, graph_mode, opname)
    ns = _namespaces()["tensor" if graph_mode else "raw"]

    buffers = {}
    roots = []
    for t, g in zip(outputs, grads0):
        node, nr = edge_of(t)
        _add(buffers, node, nr, g)
        if node not in roots:
            roots.append(node)
    min_topo = min((k[0].topo for k in capture), default=0) if capture is not None else 0
    deps, seen = _collect(roots, min_topo)
    need = None
    captured = None
    targets = ()
    if capture is not None:
        captured = [None] * len(set(capture.values()))
        targets = {k[0] for k in capture}
        need = _needed(seen, targets)

    prev = STATE.grad_enabled
    STATE.grad_enabled = graph_mode
    anomaly = STATE.anomaly
    try:
        ready = [n for n in roots if deps.get(n, 0) == 0]
        pop, push = ready.pop, ready.append
        while ready:
            node = pop()
            grads = buffers.pop(node, None)
            if need is not None and node not in need and node not in targets:
                _release(node, deps, ready)
                continue
            if node.hooks:
                grads = _run_hooks(node, node.hooks, grads, graph_mode)
            if capture is not None:
                for nr, g in _items(grads):
                    slot = capture.get((node, nr))
                    if slot is not None and g is not None:
                        captured[slot] = g if captured[slot] is None else captured[slot] + g
            if type(node) is AccumulateGrad:
                if accumulate and grads is not None:
                    _accumulate(node, grads, graph_mode)
                continue
            if grads is None or (need is not None and node not in need):
                _release(node, deps, ready)
                continue
            # ---- run the node's backward rule
            saved = node.saved
            if saved is _FREED:
                raise RuntimeError(_freed_message(node))
            op = node.op
            if type(node) is CustomNode:
                in_grads = _call_custom(node, grads, graph_mode)
            else:
                if node.versions or node.out_data is not None:
                    check_versions(node)
                if type(grads) is list:
                    grads = _fill_missing(node, grads, ns)
                if graph_mode:
                    args = tuple(saved)
                    if op.save_output:
                        args += (_output_tensors(node),)
                else:
                    args = [s._data if isinstance(s, Tensor) else s for s in saved] if saved else []
                    if op.save_output:
                        od = node.out_data
                        args.append(od[0] if op.n_out == 1 else tuple(o[0] for o in od))
                in_grads = op.bwd(ns, node, grads, *args)
            if anomaly:
                _check_anomaly(node, in_grads)
            # ---- send gradients along the edges
            bshapes = node.bshapes
            i = 0
            for e in node.edges:
                if e is not None:
                    nxt = e[0]
                    g = in_grads[i]
                    if g is not None:
                        if bshapes is not None and bshapes[i] is not None and g.shape != bshapes[i]:
                            g = ns.sum_to(g, bshapes[i])
                        if nxt.out_meta is None:
                            old = buffers.get(nxt)
                            buffers[nxt] = g if old is None else old + g
                        else:
                            _add(buffers, nxt, e[1], g)
                    d = deps[nxt] - 1
                    deps[nxt] = d
                    if d == 0:
                        push(nxt)
                i += 1
            if not retain_graph and (saved or node.out_data is not None):
                node.saved = _FREED
                node.out_data = None
    finally:
        STATE.grad_enabled = prev
    return captured


def _release(node, deps, ready):
    for e in node.edges:
        if e is not None:
            nxt = e[0]
            if nxt not in deps:                # below the part of the graph that was walked
                continue
            d = deps[nxt] - 1
            deps[nxt] = d
            if d == 0:
                ready.append(nxt)


def _add(buffers, node, nr, g):
    """Add gradient ``g`` for output ``nr`` of ``node`` into the buffers."""
    if node.out_meta is None:
        old = buffers.get(node)
        buffers[node] = g if old is None else old + g
    else:
        lst = buffers.get(node)
        if lst is None:
            lst = buffers[node] = [None] * len(node.out_meta)
        lst[nr] = g if lst[nr] is None else lst[nr] + g


def _items(grads):
    if type(grads) is list:
        return enumerate(grads)
    return ((0, grads),)


def _wrap(g):
    """A raw gradient as a Tensor (numpy scalars become 0-d arrays)."""
    if isinstance(g, Tensor):
        return g
    return Tensor._make(np.asarray(g) if isinstance(g, np.generic) else g, False, None, 0)


def _run_hooks(node, hooks, grads, graph_mode):
    multi = type(grads) is list
    gl = grads if multi else [grads]
    for nr, fns in hooks.items():
        if nr >= len(gl) or gl[nr] is None:
            continue
        for fn in list(fns):
            res = fn(_wrap(gl[nr]))
            if res is not None:
                gl[nr] = res if graph_mode else res._data
    return gl if multi else gl[0]


def _accumulate(acc, g, graph_mode):
    if type(g) is list:
        g = g[0]
    leaf = acc.leaf()
    if leaf is None:
        return
    if graph_mode:
        if g.dtype != leaf.dtype:
            g = g.to(leaf.dtype)
        leaf.grad = g if leaf.grad is None else leaf.grad + g
        return
    if isinstance(g, np.generic):
        g = np.asarray(g)
    if g.dtype != leaf._data.dtype:
        g = g.astype(leaf._data.dtype)
    if g.shape != leaf._data.shape:
        g = g.reshape(leaf._data.shape) if g.size == leaf._data.size else np.broadcast_to(
            g, leaf._data.shape)
    if leaf.grad is None:
        leaf.grad = Tensor._make(g.copy(), False, None, 0)
    else:
        leaf.grad = Tensor._make(leaf.grad._data + g, False, None, 0)


def _output_tensors(node):
    od = node.out_data
    if node.op.n_out == 1:
        t = Tensor._make(od[0], True, node, 0)
        t._version = od[1]
        return t
    return tuple(Tensor._make(o[0], True, node, i) for i, o in enumerate(od))


def _fill_missing(node, grads, ns):
    ref = next(g for g in grads if g is not None)
    return tuple(g if g is not None else ns.zeros_meta(ref, shape, dtype)
                 for g, (shape, dtype) in zip(grads, node.out_meta))


def _call_custom(node, grads, graph_mode):
    gl = grads if type(grads) is list else [grads]
    if node.ctx.materialize_grads:
        ref = next(g for g in gl if g is not None)
        xp = backend.get_xp(ref._data if isinstance(ref, Tensor) else ref)
        gl = [g if g is not None else xp.zeros(s, d) for g, (s, d) in zip(gl, node.out_meta)]
    gt = [None if g is None else _wrap(g) for g in gl]
    res = run_custom_backward(node, gt, graph_mode)
    n_in = len(node.edges)
    if len(res) > n_in and any(r is not None for r in res[n_in:]):
        raise RuntimeError(f"{node.op.name}.backward returned {len(res)} gradients, but forward got "
                           f"{n_in} inputs; return one gradient (or None) per input of forward")
    if len(res) < n_in:
        res = res + (None,) * (n_in - len(res))
    shapes = node.bshapes
    out = []
    for i, (r, e) in enumerate(zip(res, node.edges)):
        if r is None or e is None:
            out.append(None)
            continue
        if not isinstance(r, Tensor):
            from .creation import as_tensor
            r = as_tensor(r)
        if shapes is not None and shapes[i] is not None and r.shape != shapes[i]:
            _check_grad_shape(node, i, r.shape, shapes[i])
        out.append(r if graph_mode else r._data)
    return tuple(out)


def _check_grad_shape(node, i, got, want):
    """A custom backward's gradient must have its input's shape, or one that the input broadcasts
    to (the engine then sums it down, as PyTorch does); anything else is an error."""
    try:
        ok = tuple(np.broadcast_shapes(tuple(want), tuple(got))) == tuple(got)
    except ValueError:
        ok = False
    if not ok:
        raise RuntimeError(f"{node.op.name}.backward returned an invalid gradient for input {i}: got "
                           f"shape {list(got)}, but the input has shape {list(want)} (the gradient must "
                           "have the input's shape)")


def _check_anomaly(node, grads):
    for i, g in enumerate(grads):
        if g is None:
            continue
        a = g._data if isinstance(g, Tensor) else g
        if a.dtype.kind == "f" and not bool(backend.get_xp(a).isfinite(a).all()):
            where = node.trace or "(enable detect_anomaly before the forward pass to see where)\n"
            raise RuntimeError(
                f"detect_anomaly: function '{node.op.name}' returned NaN or Inf values in its "
                f"gradient for input {i} (shape {list(a.shape)}). The op was created here:\n{where}")


# ------------------------------------------------------------------ public entry points

def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """``ds.autograd.backward``: accumulate gradients of ``tensors`` into the leaves' ``.grad``."""
    if isinstance(tensors, Tensor):
        tensors = (tensors,)
    if isinstance(grad_tensors, Tensor):
        grad_tensors = (grad_tensors,)
    tensors = tuple(tensors)
    if grad_tensors is not None and len(grad_tensors) != len(tensors):
        raise RuntimeError(f"backward: got {len(grad_tensors)} gradients for {len(tensors)} tensors")
    if inputs is not None:
        inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
        res = grad(tensors, inputs, grad_tensors, retain_graph, create_graph, allow_unused=True)
        for t, g in zip(inputs, res):
            if g is not None:
                if not create_graph:
                    # a copy, as AccumulateGrad makes: the captured gradient may be the caller's
                    # gradient tensor or shared by several inputs (x + w)
                    g = Tensor._make(g._data.copy(), False, None, 0)
                t.grad = g if t.grad is None else t.grad + g
        return
    run(tensors, grad_tensors, retain_graph, create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False, materialize_grads=False):
    """``ds.autograd.grad``: the gradients of ``outputs`` w.r.t. ``inputs``, returned as a tuple
    (leaves' ``.grad`` are not touched)."""
    single_out = isinstance(outputs, Tensor)
    outputs = (outputs,) if single_out else tuple(outputs)
    if isinstance(grad_outputs, Tensor):
        grad_outputs = (grad_outputs,)
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    capture = {}
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"autograd.grad: inputs must be Tensors, got {type(t).__name__}")
        if not t._rg:
            raise RuntimeError(f"autograd.grad: input {i} (shape {list(t.shape)}) does not require grad")
        e = edge_of(t)
        capture.setdefault(e, len(set(capture.values())))
    slots = [capture[edge_of(t)] for t in inputs]
    captured = run(outputs, grad_outputs, retain_graph, create_graph, capture=capture,
                   accumulate=False, opname="autograd.grad")
    result = []
    for i, (t, s) in enumerate(zip(inputs, slots)):
        g = captured[s]
        if g is None:
            if materialize_grads:
                from .creation import zeros_like
                result.append(zeros_like(t))
                continue
            if not allow_unused:
                raise RuntimeError(
                    f"autograd.grad: input {i} (shape {list(t.shape)}) was not used to compute the "
                    "outputs; pass allow_unused=True if this is intended")
            result.append(None)
            continue
        result.append(_wrap(g))
    return tuple(result)
