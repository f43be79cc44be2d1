"""Gradient checkpointing: recompute instead of store (``torch.utils.checkpoint``).

``ds.checkpoint(fn, *args, **kwargs)`` runs ``fn`` without recording its graph and records one
node instead; its backward runs ``fn`` again (with the graph) from the saved inputs and
backpropagates through that. ``ds.checkpoint_sequential(step_fn, n_steps, state, segments)``
does the same for a time-stepping loop, keeping only about ``segments`` states of the rollout
and recomputing one segment at a time during backward: a rollout of T steps then needs
memory for about T/segments + segments steps instead of T (``segments ~ sqrt(T)`` is a good
choice and the default), for about one extra forward pass of compute.

What gets gradients:

* Tensor arguments (anywhere in ``args``/``kwargs``, also inside tuples, lists and dicts) and,
  for ``checkpoint_sequential``, the Tensors of the initial ``state``.
* Tensors that ``fn`` closes over (parameters such as stiffnesses, masses, network weights) that
  require grad, leaves or not: they are found automatically while the forward runs (every
  Tensor that requires grad and reaches an op inside ``fn`` is one), and the checkpoint node
  gets an edge to each, so ``loss.backward()`` and ``ds.autograd.grad(loss, [k])`` both see
  them. A closed-over tensor that only reaches ``fn`` as raw array data inside a custom
  ``Function``'s forward is not seen; backward then raises instead of dropping its gradient
  (pass such tensors as arguments).
* Double backward (``create_graph=True``, also inside ``ds.func`` transforms): supported;
  ``checkpoint_sequential`` then recomputes the whole rollout with the graph (no memory
  saving for that backward).
* Memory: ``checkpoint_sequential`` keeps the segment boundaries and, during backward, about
  two segments of recomputed graph (each node is freed as soon as it has run).

Exactness: the recomputation runs the same ops on the same values, so the gradients are
the same numbers as without checkpointing, and in the usual case the same bits.
``checkpoint_sequential`` runs its backward as one engine loop over the whole rollout,
recomputing segments lazily and splicing them together, and starts it from the final-state
components in the order the engine reached them, so the nodes run in the order the engine
uses on the plain graph and every gradient sum is formed in the same order. Gradients are
then bitwise identical to the plain rollout's (W2 of shared/benchmarks.md is tested), with
two exceptions where they agree to rounding (a few ulps): a parameter also used outside the
rollout, and a final-state component that the last step also feeds into another component
(e.g. an energy accumulator ``e = e + f(x)``) when the loss reaches that other component
first. ``checkpoint`` hands the gradient of each input or closed-over tensor to the outer
graph as one sum over its uses inside ``fn``, so a tensor used both inside and outside
``fn`` may get its contributions added in a different order (also equal to rounding).

Rules for ``fn`` / ``step_fn``: it is run twice, so it must compute the same thing both times
(no side effects that change its result; random ops are fine: the CPU state of the default
generator is saved and restored, ``preserve_rng_state=True``; CUDA random streams and
user-created generators are not restored). It must not modify its inputs in place (that is
detected and reported at backward). Calling ``register_hook`` on intermediates inside ``fn``
needs a guard ``if t.requires_grad:`` (the first run is under ``no_grad``); such hooks fire
during the recomputation. Outputs must be Tensors (or tuples/lists/dicts of Tensors).

``use_reentrant`` is accepted for PyTorch compatibility and ignored: there is one
implementation, which supports ``autograd.grad``, closures and inputs that do not require
grad (like PyTorch's ``use_reentrant=False``).
"""
from __future__ import annotations

import math
import numbers
import sys
import types
import weakref

from . import engine as _engine
from .function import _FREED, AccumulateGrad, CustomNode, FunctionCtx, OpDef, apply, check_versions, edge_of
from .func import tree_flatten, tree_unflatten
from .grad_mode import STATE, enable_grad, no_grad
from .tensor import Tensor

__all__ = ["checkpoint", "checkpoint_sequential", "checkpoint_binomial"]

_CKPT_OP = OpDef("checkpoint", None)

# Leaves that a checkpointed function creates for its own use (e.g. a detached copy of the
# positions made to take a force as the gradient of an energy): the recomputed graph may
# reach them, and nobody wants their gradient, so the closure check skips them.
_SCRATCH = weakref.WeakSet()


def scratch_leaf(t):
    """Mark a leaf Tensor that requires grad as internal to the function that made it, so that
    checkpointing does not report it as a closed-over tensor whose gradient would be lost.
    Returns ``t``."""
    _SCRATCH.add(edge_of(t)[0])
    return t
_SEQ_OP = OpDef("checkpoint_sequential", None)
_MAIN_OPS = {"checkpoint": OpDef("checkpoint_recompute", None),
             "checkpoint_sequential": OpDef("checkpoint_sequential_recompute", None)}


# ------------------------------------------------------------------ helpers

class _Recorder:
    """While active (and under no_grad), remembers every Tensor that requires grad and is an
    argument of a primitive op: exactly the tensors from outside that the function uses.

    A function may switch grad mode back on inside (e.g. to take a force as the gradient of
    an energy); tensors it makes there (scratch leaves, and outputs of ops it records) are
    its own, not closed-over ones, and are skipped (nor kept alive)."""

    def __init__(self):
        self.found = {}

    def __enter__(self):
        prev = self.prev = STATE.tracer
        found = self.found
        made = weakref.WeakSet()            # graph nodes created inside the function

        def tracer(op, args, attrs):
            for a in args:
                if isinstance(a, Tensor) and a._rg and id(a) not in found:
                    n = a.grad_fn
                    if n is None:
                        if edge_of(a)[0] in _SCRATCH:
                            continue
                    elif n in made:
                        continue
                    found[id(a)] = a
            STATE.tracer = prev
            try:
                out = apply(op, args, attrs)
            finally:
                STATE.tracer = tracer
            if STATE.grad_enabled:
                for o in (out if isinstance(out, tuple) else (out,)):
                    if isinstance(o, Tensor) and o.grad_fn is not None:
                        made.add(o.grad_fn)
            return out
        STATE.tracer = tracer
        return self

    def __exit__(self, *exc):
        STATE.tracer = self.prev
        return False


class _RNG:
    """Save / restore the CPU state of the default generator around a recomputation."""

    @staticmethod
    def get():
        from .random import default_generator
        return default_generator.get_state()

    def __init__(self, state):
        self.state = state

    def __enter__(self):
        if self.state is not None:
            from .random import default_generator
            self.cur = default_generator.get_state()
            default_generator.set_state(self.state)

    def __exit__(self, *exc):
        if self.state is not None:
            from .random import default_generator
            default_generator.set_state(self.cur)
        return False


def _output_leaves(out, opname, what="fn"):
    leaves, spec = tree_flatten(out)
    bad = _first_const(spec)
    if bad is not None:
        raise TypeError(f"{opname}: {what} must return a Tensor or a (nested) tuple/list/dict of Tensors, "
                        f"but its output contains a {type(bad[1]).__name__} ({bad[1]!r:.60}); return only "
                        "Tensors from the checkpointed function (compute other values outside it)")
    return leaves, spec


def _first_const(spec):
    if spec[0] == "const":
        return spec
    if spec == ("T",):
        return None
    for c in spec[-1]:
        r = _first_const(c)
        if r is not None:
            return r
    return None


class _Backward:
    """``fn_cls`` of a checkpoint node: the engine calls ``backward(ctx, *grads)``."""

    @staticmethod
    def backward(ctx, *grads):
        order = list(ctx.order)
        ctx.order.clear()
        return ctx.impl(ctx, grads, order)


class _OutBackward:
    """``fn_cls`` of the identity node in front of each output: passes the gradient on and
    notes when the engine ran it, so the recomputation can start from the outputs in the
    order the engine would have reached them on the plain graph."""

    @staticmethod
    def backward(ctx, g):
        ctx.order.append(ctx.index)
        return (g,)


def _custom_node(op, edges, fn_cls, out_meta, saved=()):
    node = CustomNode(op, edges, {})
    ctx = FunctionCtx()
    ctx.materialize_grads = False
    ctx.needs_input_grad = (True,) * len(edges)
    ctx._node = node
    node.fn_cls, node.ctx, node.saved_now = fn_cls, ctx, None
    node.saved = tuple(saved)
    node.versions = tuple(t._version[0] for t in saved)
    node.out_meta = out_meta
    if STATE.anomaly:
        import traceback
        node.trace = "".join(traceback.format_stack()[:-3])
    return node, ctx


def _make_node(op, inputs, closures, outs, saved, impl):
    """A custom-function node with edges to ``inputs + closures`` (all require grad), whose
    backward is ``impl(ctx, grads, order)`` (``order``: the indices of the outputs whose
    gradients arrived, in the order the engine ran them); returns the output Tensors (each
    behind an identity node named after ``op``)."""
    edges = tuple(edge_of(t) for t in inputs) + tuple(edge_of(t) for t in closures)
    meta = tuple((o.shape, o.dtype) for o in outs)
    node, ctx = _custom_node(_MAIN_OPS[op.name], edges, _Backward, meta, saved)
    ctx.impl, ctx.order = impl, []
    res = []
    for i, o in enumerate(outs):
        if o.dtype.kind == "f":
            out_node, octx = _custom_node(op, ((node, i),), _OutBackward, (meta[i],))
            octx.order, octx.index = ctx.order, i
            res.append(Tensor._make(o._data, True, out_node, 0))
        else:
            res.append(Tensor._make(o._data, False, None, 0))
    return ctx, res


def _check_closed(opname, outs, known):
    """Raise if the recomputed graph reaches a tensor that requires grad that the forward did
    not see (its gradient would be lost)."""
    seen = set()
    stack = []
    for o in outs:
        n = edge_of(o)[0]
        if n not in known and n not in seen:
            seen.add(n)
            stack.append(n)
    while stack:
        node = stack.pop()
        if type(node) is AccumulateGrad:
            leaf = node.leaf()
            shape = list(leaf.shape) if leaf is not None else "?"
            if node in _SCRATCH:
                continue
            raise RuntimeError(
                f"{opname} backward: the recomputed function uses a tensor that requires grad (shape "
                f"{shape}) that was not seen when the forward ran (e.g. it only reached a custom "
                "Function as raw data, or it was created inside the function with requires_grad=True); "
                "its gradient would be lost. Pass it as an argument to the checkpointed function")
        for e in node.edges:
            if e is None:
                continue
            n = e[0]
            if n not in known and n not in seen:
                seen.add(n)
                stack.append(n)


def _capture(opname, outs, grads, targets, create, order=None):
    """Gradients of ``outs`` (with ``grads``; None entries and outputs that do not require grad
    are skipped) w.r.t. ``targets`` (None where unused). ``order``: output indices in the order
    the engine reached them (the first becomes the last root, which the engine runs first)."""
    idx = _root_order(order, len(outs))
    pairs = [(outs[i], grads[i]) for i in idx if grads[i] is not None and outs[i]._rg]
    if not pairs:
        return [None] * len(targets)
    known = {edge_of(t)[0] for t in targets}
    _check_closed(opname, [p[0] for p in pairs], known)
    return list(_engine.grad([p[0] for p in pairs], targets, [p[1] for p in pairs], retain_graph=True,
                             create_graph=create, allow_unused=True))


def _root_order(order, n):
    """Output indices arranged so that the engine's LIFO stack runs them in ``order``."""
    if not order:
        return list(range(n))
    rest = [i for i in range(n) if i not in order]
    return rest + list(reversed(order))


def _check_meta(opname, outs, meta):
    for i, (o, (shape, dtype)) in enumerate(zip(outs, meta)):
        if o.shape != shape or o.dtype != dtype:
            raise RuntimeError(
                f"{opname} backward: recomputing gave output {i} of shape {list(o.shape)} and dtype "
                f"{o.dtype}, but the forward gave shape {list(shape)} and dtype {dtype}; the "
                "checkpointed function must compute the same thing each time it runs")


# ------------------------------------------------------------------ checkpoint

def checkpoint(function, *args, use_reentrant=None, preserve_rng_state=True, **kwargs):
    """``function(*args, **kwargs)`` without storing its intermediates; they are recomputed in
    backward. Returns what ``function`` returns (Tensors, or tuples/lists/dicts of Tensors),
    with the same shapes; gradients flow to Tensor arguments and to closed-over tensors that
    require grad (see the module docstring). Under ``no_grad`` it simply calls ``function``.

    Memory: the graph inside ``function`` is not kept, only its inputs. Time: ``function``
    runs twice (forward, and again at backward).
    """
    if not callable(function):
        raise TypeError(f"checkpoint: the first argument must be a callable, got {type(function).__name__}")
    if not STATE.grad_enabled:
        return function(*args, **kwargs)
    leaves, spec = tree_flatten((args, kwargs))
    uniq = list({id(t): t for t in leaves}.values())
    det = {id(t): t.detach() for t in uniq}
    rng = _RNG.get() if preserve_rng_state else None
    fargs, fkwargs = tree_unflatten(spec, [det[id(t)] for t in leaves])
    with no_grad(), _Recorder() as rec:
        out = function(*fargs, **fkwargs)
    out_leaves, out_spec = _output_leaves(out, "checkpoint")
    closures = list(rec.found.values())
    inputs = [t for t in uniq if t._rg]
    if not inputs and not closures:
        return out
    rg_pos = [i for i, t in enumerate(uniq) if t._rg]

    def impl(ctx, grads, order):
        saved = ctx.saved_tensors              # checks that nothing was modified in place
        vals = saved[:len(uniq)]
        graph = STATE.grad_enabled             # True under create_graph
        with enable_grad():
            fresh = list(vals)
            for i in rg_pos:
                v = vals[i]
                fresh[i] = v.view_as(v) if graph else v.requires_grad_(True)
            by_id = {id(t): f for t, f in zip(uniq, fresh)}
            a2, k2 = tree_unflatten(spec, [by_id[id(t)] for t in leaves])
            with _RNG(rng):
                res = function(*a2, **k2)
            outs, _ = _output_leaves(res, "checkpoint")
        if len(outs) != len(ctx._node.out_meta):
            raise RuntimeError(f"checkpoint backward: recomputing gave {len(outs)} outputs, the forward "
                               f"gave {len(ctx._node.out_meta)}; the function must compute the same thing "
                               "each time it runs")
        _check_meta("checkpoint", outs, ctx._node.out_meta)
        targets = [fresh[i] for i in rg_pos] + closures
        return tuple(_capture("checkpoint", outs, grads, targets, graph, order))

    saved = uniq + closures
    _, res = _make_node(_CKPT_OP, inputs, closures, out_leaves, saved, impl)
    return tree_unflatten(out_spec, res)


# ------------------------------------------------------------------ checkpoint_sequential

def _as_state(state, opname, what="state"):
    if isinstance(state, Tensor):
        return (state,), True
    if isinstance(state, (tuple, list)) and state and all(isinstance(t, Tensor) for t in state):
        return tuple(state), False
    raise TypeError(f"{opname}: {what} must be a Tensor or a non-empty tuple/list of Tensors, got "
                    f"{type(state).__name__}" + (f" containing {[type(t).__name__ for t in state]}"
                                                 if isinstance(state, (tuple, list)) else ""))


def _stepper(step_fn, single, n_state, opname):
    def step(cur):
        res = step_fn(cur[0] if single else cur)
        nxt, s = _as_state(res, opname, "step_fn's result")
        if s != single or len(nxt) != n_state:
            raise TypeError(f"{opname}: step_fn must return a state of the same form as it gets "
                            f"({'a Tensor' if single else f'a tuple of {n_state} Tensors'}), got "
                            f"{'a Tensor' if s else f'a tuple of {len(nxt)} Tensors'}")
        return nxt
    return step


def _segment_sizes(n_steps, segments):
    base, extra = divmod(n_steps, segments)
    return [base + (1 if i < extra else 0) for i in range(segments)]


class _Rollout:
    """Backward of a checkpointed rollout in the order the engine would use on the plain graph.

    The engine runs nodes from a LIFO stack as their gradients complete; on the plain rollout
    that order interleaves neighbouring steps (a boundary state can become ready, and the
    walk descend into the previous segment, before the rest of the later segment has run).
    To reproduce it exactly (so parameter gradients are summed in the same order and come out
    bitwise equal), this runs one engine loop over the whole rollout: segments are recomputed
    lazily (segment s-1 when the first gradient reaches a boundary leaf of segment s), and
    each boundary leaf of segment s is spliced onto the matching output of segment s-1 (its
    pending dependency count moved there), so the virtual graph is the plain one. Recomputed
    nodes free their saved values as they run, so about two segments are alive at a time.
    Closed-over tensors are terminal: their gradients are summed here and returned.
    """

    def __init__(self, opname, build, nseg, closures):
        self.opname, self.build_fn, self.nseg = opname, build, nseg
        self.stop = {}
        for k in closures:
            self.stop.setdefault(edge_of(k)[0], None)
        self.closure_edges = [edge_of(k) for k in closures]
        self.deps, self.buffers = {}, {}
        self.owner, self.alias = {}, {}         # boundary leaf node -> segment; -> (node, nr) or None
        self.reached = {}                      # segment -> its boundary leaf nodes reached
        self.outs = {}
        self.first = None                      # segment 0's leaves (the initial state)

    def _collect(self, roots, leaves):
        """Count dependencies in a newly built segment graph, from ``roots``; returns the leaf
        nodes of ``leaves`` that were reached."""
        deps, stop = self.deps, self.stop
        seen = set(roots)
        stack = list(roots)
        reached = []
        while stack:
            node = stack.pop()
            if type(node) is AccumulateGrad:
                if node in leaves:
                    reached.append(node)
                    continue
                if node in _SCRATCH:
                    continue
                leaf = node.leaf()
                raise RuntimeError(
                    f"{self.opname} backward: the recomputed step uses a tensor that requires grad (shape "
                    f"{list(leaf.shape) if leaf is not None else '?'}) that was not seen when the forward "
                    "ran (e.g. it only reached a custom Function as raw data, or it was created inside "
                    "the step with requires_grad=True); its gradient would be lost. Make it part of the "
                    "state, or use it through diffsim ops")
            for e in node.edges:
                if e is None:
                    continue
                nxt = e[0]
                deps[nxt] = deps.get(nxt, 0) + 1
                if nxt not in seen and nxt not in stop:
                    seen.add(nxt)
                    stack.append(nxt)
        return reached

    def _build(self, s):
        fresh, outs = self.build_fn(s)
        leaves = {}
        for i, f in enumerate(fresh):
            if f is not None:
                leaves.setdefault(edge_of(f)[0], []).append(i)
        if s == 0:
            self.first = [(edge_of(f)[0] if f is not None else None) for f in fresh]
        else:
            for n in leaves:
                self.owner[n] = s
        self.outs[s] = outs
        return leaves

    def _splice(self, s):
        """Build segment ``s`` and splice the reached boundary leaves of segment s+1 onto it."""
        leaves = self._build(s)
        outs = self.outs.pop(s)
        deps, alias = self.deps, self.alias
        reached = self.reached.pop(s + 1)
        roots = []
        targets = []
        for leaf_node, comps in reached:
            tgt = None
            for i in comps:
                o = outs[i]
                if o._rg:
                    tgt = edge_of(o)
            alias[leaf_node] = tgt
            targets.append((leaf_node, tgt))
            if tgt is not None and tgt[0] not in self.stop and tgt[0] not in roots:
                roots.append(tgt[0])
        got = self._collect([r for r in roots if type(r) is not AccumulateGrad or r not in leaves],
                            leaves)
        got += [r for r in roots if type(r) is AccumulateGrad and r in leaves]
        self.reached[s] = [(n, leaves[n]) for n in dict.fromkeys(got)]
        for leaf_node, tgt in targets:
            left = deps.pop(leaf_node, 0)
            if tgt is not None and tgt[0] not in self.stop:
                deps[tgt[0]] = deps.get(tgt[0], 0) + left

    def _resolve(self, node, nr):
        owner, alias = self.owner, self.alias
        while node in owner:
            if node not in alias:
                self._splice(owner[node] - 1)
            tgt = alias[node]
            if tgt is None:
                return None
            node, nr = tgt
        return node, nr

    def run(self, grads, order=None):
        """``grads``: gradients (Tensors or None) of the final state, ``order``: the indices of
        the components whose gradients arrived, in the order the engine reached them. Returns
        (gradients of the initial state's components, gradients of the closed-over tensors)."""
        ns = _engine._namespaces()["raw"]
        last = self.nseg - 1
        leaves = self._build(last)
        outs = self.outs.pop(last)
        buffers, deps, stop = self.buffers, self.deps, self.stop
        root_edges = [edge_of(outs[i]) + (grads[i],) for i in _root_order(order, len(outs))
                      if grads[i] is not None and outs[i]._rg]
        del outs
        starts = list(dict.fromkeys(n for n, _, _ in root_edges if n not in stop and n not in leaves))
        got = self._collect(starts, leaves)
        got += [n for n, _, _ in root_edges if n in leaves]
        self.reached[last] = [(n, leaves[n]) for n in dict.fromkeys(got)]
        roots = []
        for n, nr, g in root_edges:
            if n in self.owner:
                t = self._resolve(n, nr)
                if t is None:
                    continue
                n, nr = t
            _engine._add(buffers, n, nr, g._data)
            if n not in stop and n not in roots:
                roots.append(n)
        ready = [n for n in roots if deps.get(n, 0) == 0]
        anomaly = STATE.anomaly
        resolve, owner = self._resolve, self.owner
        prev = STATE.grad_enabled
        STATE.grad_enabled = False
        try:
            while ready:
                node = ready.pop()
                deps.pop(node, None)
                grads_n = buffers.pop(node, None)
                if node.hooks:
                    grads_n = _engine._run_hooks(node, node.hooks, grads_n, False)
                if type(node) is AccumulateGrad:        # a leaf of the initial state
                    if grads_n is not None:
                        _engine._add(buffers, node, 0, grads_n)
                    continue
                if grads_n is None:
                    in_grads = None
                elif type(node) is CustomNode:
                    in_grads = _engine._call_custom(node, grads_n, False)
                else:
                    saved = node.saved
                    if node.versions or node.out_data is not None:
                        check_versions(node)
                    if type(grads_n) is list:
                        grads_n = _engine._fill_missing(node, grads_n, ns)
                    args = [t._data if isinstance(t, Tensor) else t for t in saved] if saved else []
                    op = node.op
                    if op.save_output:
                        od = node.out_data
                        args.append(od[0] if op.n_out == 1 else tuple(o[0] for o in od))
                    in_grads = op.bwd(ns, node, grads_n, *args)
                if anomaly and in_grads is not None:
                    _engine._check_anomaly(node, in_grads)
                bshapes = node.bshapes
                for i, e in enumerate(node.edges):
                    if e is None:
                        continue
                    nxt, nr = e
                    if nxt in owner:
                        t = resolve(nxt, nr)
                        if t is None:
                            continue
                        nxt, nr = t
                    if in_grads is not None:
                        g = in_grads[i]
                        if g is not None:
                            if bshapes is not None and bshapes[i] is not None and g.shape != bshapes[i]:
                                g = ns.sum_to(g, bshapes[i])
                            _engine._add(buffers, nxt, nr, g)
                    if nxt in stop:
                        continue
                    d = deps[nxt] - 1
                    deps[nxt] = d
                    if d == 0:
                        ready.append(nxt)
                node.saved = _FREED               # a recomputed node: free it as the engine does,
                node.out_data = None              # and cut it loose so that processed segments
                node.edges = ()                   # can be collected (the alias map holds a few)
        finally:
            STATE.grad_enabled = prev
        if self.first is None:                 # the gradient never reached the first segment
            first = [None] * len(grads)
        else:
            first = [self._take(n, 0) if n is not None else None for n in self.first]
        return first, [self._take(n, nr) for n, nr in self.closure_edges]

    def _take(self, node, nr):
        b = self.buffers.get(node)
        if type(b) is list:
            b = b[nr]
        return None if b is None else _engine._wrap(b)


def checkpoint_sequential(step_fn, n_steps, state, segments=None, preserve_rng_state=True,
                          use_reentrant=None):
    """Run ``state = step_fn(state)`` ``n_steps`` times, storing only segment boundaries.

    ``state`` is a Tensor or a tuple of Tensors (e.g. ``(x [P, 3], v [P, 3])``); ``step_fn``
    returns a state of the same form. The rollout is cut into ``segments`` segments
    (default ``round(sqrt(n_steps))``) of nearly equal length; the forward runs under
    ``no_grad`` and keeps the state at the start of each segment; backward recomputes one
    segment at a time (last first) and backpropagates through it. Returns the final state
    (same form as ``state``), attached to one graph node whose gradients reach the initial
    state and every closed-over tensor that requires grad (parameters).

    Peak memory ~ 2 * (n_steps / segments) steps of graph + ``segments`` states, instead of
    n_steps steps of graph; time ~ one extra forward pass. Gradients equal the plain
    rollout's, bitwise in the usual case (see the module docstring). ``step_fn`` runs again
    during backward, so it must be a pure function of the state and the tensors it closes
    over (carry a time or step counter in the state if it needs one).

    Example (W2, the cloth of shared/benchmarks.md; ``k`` [S] requires grad)::

        x, v = ds.checkpoint_sequential(lambda s: cloth_step(s, k), 5000, (x0, v0), segments=71)
        loss = ((x - target) ** 2).sum(-1).mean(); loss.backward()   # k.grad, v0.grad
    """
    opname = "checkpoint_sequential"
    if not callable(step_fn):
        raise TypeError(f"{opname}: step_fn must be callable, got {type(step_fn).__name__}")
    if not isinstance(n_steps, numbers.Integral) or isinstance(n_steps, bool) or n_steps < 0:
        raise ValueError(f"{opname}: n_steps must be a non-negative int, got {n_steps!r}")
    n_steps = int(n_steps)
    st, single = _as_state(state, opname)
    if segments is None:
        segments = max(1, round(math.sqrt(n_steps)))
    if not isinstance(segments, numbers.Integral) or isinstance(segments, bool) or segments < 1:
        raise ValueError(f"{opname}: segments must be a positive int, got {segments!r}")
    segments = max(1, min(int(segments), n_steps))
    step = _stepper(step_fn, single, len(st), opname)
    if n_steps == 0:
        return state
    if not STATE.grad_enabled:
        cur = st
        for _ in range(n_steps):
            cur = step(cur)
        return cur[0] if single else cur

    sizes = _segment_sizes(n_steps, segments)
    bounds, rngs = [], []
    cur = tuple(t.detach() for t in st)
    with no_grad(), _Recorder() as rec:
        for size in sizes:
            bounds.append(cur)
            rngs.append(_RNG.get() if preserve_rng_state else None)
            for _ in range(size):
                cur = step(cur)
    closures = list(rec.found.values())
    rg0 = [i for i, t in enumerate(st) if t._rg]
    if not rg0 and not closures:
        return cur[0] if single else cur
    ns = len(st)
    nb = len(bounds)

    def impl(ctx, grads, order):
        saved = ctx.saved_tensors               # checks that nothing was modified in place
        graph = STATE.grad_enabled
        node = ctx._node
        if graph:                                # double backward: one recompute with the graph
            with enable_grad():
                first = [saved[i].view_as(saved[i]) if i in rg0 else saved[i] for i in range(ns)]
                c = tuple(first)
                with _RNG(rngs[0]):
                    for _ in range(n_steps):
                        c = step(c)
            _check_meta(opname, c, node.out_meta)
            targets = [first[i] for i in rg0] + closures
            return tuple(_capture(opname, c, grads, targets, True, order))
        bnd = [saved[s * ns:(s + 1) * ns] for s in range(nb)]

        def build(s):
            """Recompute segment ``s`` with the graph: (fresh boundary leaves, outputs)."""
            fresh = list(bnd[s])
            for i, t in enumerate(fresh):
                if t.dtype.kind == "f" and (s > 0 or i in rg0):
                    fresh[i] = t.requires_grad_(True)
            with enable_grad(), _RNG(rngs[s]):
                c = tuple(fresh)
                for _ in range(sizes[s]):
                    c = step(c)
            if s == nb - 1:
                _check_meta(opname, c, node.out_meta)
            return [f if f._rg else None for f in fresh], c

        got = _Rollout(opname, build, nb, closures).run(grads, order)
        return tuple(got[0][i] for i in rg0) + tuple(got[1])

    saved = list(st) + [t for b in bounds[1:] for t in b] + closures
    _, res = _make_node(_SEQ_OP, [st[i] for i in rg0], closures, cur, saved, impl)
    return res[0] if single else tuple(res)


# ------------------------------------------------------------------ binomial (revolve)

_BIN_OP = OpDef("checkpoint_binomial", None)
_MAIN_OPS["checkpoint_binomial"] = OpDef("checkpoint_binomial_recompute", None)


def binomial_capacity(snapshots, repetitions):
    """``C(s + r, s)``: the longest rollout that ``s`` snapshots reverse with every step run
    at most ``r`` times beyond the forward (Griewank 1992)."""
    return math.comb(snapshots + repetitions, snapshots)


def binomial_split(n, snapshots):
    """Revolve's next snapshot position for reversing ``n`` steps with ``snapshots``
    snapshots: advance ``m`` steps, reverse the last ``n - m`` with one snapshot fewer, then
    the first ``m`` with all of them. Any ``m`` with ``n - m <= C(s - 1 + r, s - 1)`` and
    ``m <= C(s + r - 1, s)`` keeps every step at the minimal ``r`` recomputations."""
    s = snapshots
    r = 0
    while binomial_capacity(s, r) < n:
        r += 1
    lo = max(1, n - binomial_capacity(s - 1, r))
    hi = min(n - 1, binomial_capacity(s, r - 1)) if r >= 1 else n - 1
    m = round(n * binomial_capacity(s, r - 1) / binomial_capacity(s, r)) if r >= 1 else n // 2
    return min(max(m, lo), max(lo, hi))


def binomial_rollout(step, n_steps, state, snapshots, start=0, preserve_rng_state=True,
                     opname="checkpoint_binomial"):
    """``state = step(state, i)`` for ``i = start .. start + n_steps - 1`` (``state`` a tuple
    of Tensors), reversed in backward by binomial checkpointing; see ``checkpoint_binomial``."""
    st = tuple(state)
    if not STATE.grad_enabled or n_steps == 0:
        cur = st
        for i in range(start, start + n_steps):
            cur = step(cur, i)
        return cur
    cur = tuple(t.detach() for t in st)
    rng0 = _RNG.get() if preserve_rng_state else None
    with no_grad(), _Recorder() as rec:
        for i in range(start, start + n_steps):
            cur = step(cur, i)
    closures = list(rec.found.values())
    rg0 = [i for i, t in enumerate(st) if t._rg]
    if not rg0 and not closures:
        return cur
    nst = len(st)

    def impl(ctx, grads, order):
        saved = ctx.saved_tensors
        x0 = saved[:nst]
        node = ctx._node
        if STATE.grad_enabled:                  # double backward: one recompute with the graph
            with enable_grad():
                first = [x0[i].view_as(x0[i]) if i in rg0 else x0[i] for i in range(nst)]
                c = tuple(first)
                with _RNG(rng0):
                    for i in range(start, start + n_steps):
                        c = step(c, i)
            _check_meta(opname, c, node.out_meta)
            return tuple(_capture(opname, c, grads, [first[i] for i in rg0] + closures, True, order))
        total = [None] * len(closures)

        def advance(x, i0, n, rng):
            with no_grad(), _RNG(rng):
                for i in range(i0, i0 + n):
                    x = step(x, i)
                return x, (_RNG.get() if rng is not None else None)

        def reverse_steps(x, i0, n, rng, g_out):
            fresh = [t.requires_grad_(True) if t.dtype.kind == "f" else t for t in
                     (u.detach() for u in x)]
            with enable_grad(), _RNG(rng):
                c = tuple(fresh)
                for i in range(i0, i0 + n):
                    c = step(c, i)
            if i0 + n == start + n_steps:
                _check_meta(opname, c, node.out_meta)
            targets = [f for f in fresh if f._rg] + closures
            got = _capture(opname, c, list(g_out), targets, False)
            k = 0
            g_in = []
            for f in fresh:
                if f._rg:
                    g_in.append(got[k])
                    k += 1
                else:
                    g_in.append(None)
            for j, g in enumerate(got[k:]):
                if g is not None:
                    total[j] = g if total[j] is None else total[j] + g
            return g_in

        def reverse(x, i0, n, s, rng, g_out):
            """Gradient w.r.t. the state ``x`` at step ``i0`` from ``g_out`` at step ``i0 + n``;
            a loop over the first parts so that a frame holds one snapshot and one gradient."""
            while True:
                if all(g is None for g in g_out):
                    return [None] * nst
                if n <= 1 or s <= 0:
                    return reverse_steps(x, i0, n, rng, g_out)
                m = binomial_split(n, s)
                xm, rng_m = advance(x, i0, m, rng)
                g_out = reverse(xm, i0 + m, n - m, s - 1, rng_m, g_out)
                del xm
                n = m

        g0 = reverse(tuple(x0), start, n_steps, snapshots, rng0, grads)
        return tuple(g0[i] for i in rg0) + tuple(total)

    _, res = _make_node(_BIN_OP, [st[i] for i in rg0], closures, cur, list(st) + closures, impl)
    return tuple(res)


def checkpoint_binomial(step_fn, n_steps, state, snapshots=None, preserve_rng_state=True):
    """Run ``state = step_fn(state)`` ``n_steps`` times, reversed in backward by binomial
    checkpointing (Griewank's revolve): memory for ``snapshots`` states, and each step run
    at most ``1 + r`` times in all, where ``r`` is the least number with
    ``C(snapshots + r, snapshots) >= n_steps``.

    The default ``snapshots = ceil(log2(n_steps))`` gives O(log T) memory and
    O(T log T) / log log T time: 100 000 steps take 17 snapshots and r = 6. ``state`` and
    ``step_fn`` are as for ``checkpoint_sequential`` (a Tensor or a tuple of Tensors;
    closed-over tensors that require grad get gradients; random ops see the same CPU
    random stream in each recomputation). Gradients equal the plain rollout's up to the
    order in which per-step contributions to a parameter's gradient are summed.

    Example::

        x, v = ds.checkpoint_binomial(lambda s: cloth_step(s, k), 100_000, (x0, v0))
    """
    opname = "checkpoint_binomial"
    if not callable(step_fn):
        raise TypeError(f"{opname}: step_fn must be callable, got {type(step_fn).__name__}")
    if not isinstance(n_steps, numbers.Integral) or isinstance(n_steps, bool) or n_steps < 0:
        raise ValueError(f"{opname}: n_steps must be a non-negative int, got {n_steps!r}")
    n_steps = int(n_steps)
    if snapshots is None:
        snapshots = max(1, math.ceil(math.log2(max(n_steps, 2))))
    if not isinstance(snapshots, numbers.Integral) or isinstance(snapshots, bool) or snapshots < 1:
        raise ValueError(f"{opname}: snapshots must be a positive int, got {snapshots!r}")
    st, single = _as_state(state, opname)
    step = _stepper(step_fn, single, len(st), opname)
    out = binomial_rollout(lambda cur, i: step(cur), n_steps, st, int(snapshots),
                           preserve_rng_state=preserve_rng_state)
    return out[0] if single else tuple(out)


# ``ds.checkpoint`` is this module and is callable: ``ds.checkpoint(fn, x)`` runs ``checkpoint``,
# and ``ds.checkpoint.checkpoint_sequential`` / ``from diffsim.checkpoint import ...`` work too.
class _CallableModule(types.ModuleType):
    def __call__(self, function, *args, **kwargs):
        return checkpoint(function, *args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
_pkg = __name__.rsplit(".", 2)[0]                      # "diffsim"
if _pkg != __name__.rsplit(".", 1)[0]:
    sys.modules.setdefault(_pkg + ".checkpoint", sys.modules[__name__])
