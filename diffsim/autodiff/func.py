"""Functional transforms, as ``torch.func`` / JAX: ``grad``, ``value_and_grad``, ``vjp``, ``jvp``,
``jacobian`` (``jacrev``, ``jacfwd``), ``hessian``, ``hvp``.

Each transform takes a function of Tensors and returns a function (or, for ``vjp``, ``jvp``
and ``hvp``, evaluates at given points)::

    df = ds.func.grad(lambda x: (x ** 3).sum())       # df(x) == 3 * x ** 2
    H = ds.func.hessian(f)(x)                          # [n, n] for x [n] and scalar f
    out, vjp_fn = ds.func.vjp(f, x); (gx,) = vjp_fn(ct)

Semantics:

* **Pytrees.** Arguments and outputs may be Tensors or (nested) tuples, lists, dicts and
  namedtuples of Tensors. The gradient w.r.t. an argument has the argument's structure;
  non-Tensor leaves (numbers, None ...) inside a differentiated argument get ``None``.
* **argnums** is an int or a tuple of ints (negative counts from the end). With an int the
  transform returns the result for that argument; with a tuple, a tuple of results.
* **Inputs that do not require grad** are fine: the transform differentiates w.r.t. fresh
  leaves holding the same values. An input that already requires grad (for instance an input
  of an outer transform) is used through a differentiable identity, so the result stays
  connected to the outer graph.
* **Composition.** ``grad(grad(f))``, ``jacobian(jacobian(f))``, ``vjp`` of a ``grad``, ...
  work: when grad mode is on and the function's result depends on tensors of an outer graph
  (an outer transform's inputs, or closed-over tensors that require grad), the inner
  derivatives are built with ``create_graph=True``, so they can be differentiated again.
  Otherwise results come back detached (no graph is kept), like ``torch.func`` at top level.
  Transforms record the function's graph even inside ``ds.no_grad()`` (as ``torch.func``
  does); ``no_grad`` used *inside* the function is respected.
* Forward mode (``jvp``, ``jacobian(mode="forward")``) uses the exact double-vjp trick: with
  ``g(u) = J^T u`` built with ``create_graph=True`` for a dummy cotangent ``u``, ``J t`` is the
  vjp of ``g`` w.r.t. ``u`` in direction ``t``. This is exact (no finite differences) and costs
  about three backward passes; it needs every backward on the path to be differentiable
  (a custom Function wrapped in ``once_differentiable`` is not).
"""
from __future__ import annotations

import numbers

from . import backend
from . import engine as _engine
from .function import AccumulateGrad, edge_of
from .grad_mode import STATE, enable_grad
from .tensor import Tensor

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "jacobian", "jacrev", "jacfwd", "hessian", "hvp",
           "tree_flatten", "tree_unflatten", "tree_map"]


# ------------------------------------------------------------------ pytrees

_T = ("T",)     # spec of a Tensor leaf


def tree_flatten(tree):
    """Flatten a pytree (Tensors inside nested tuples, lists, dicts, namedtuples) into its
    Tensor leaves (depth first, dicts in insertion order) and a spec for ``tree_unflatten``.
    Non-Tensor leaves are kept in the spec as constants."""
    leaves = []
    return leaves, _flatten(tree, leaves)


def _flatten(t, leaves):
    if isinstance(t, Tensor):
        leaves.append(t)
        return _T
    if isinstance(t, tuple) and hasattr(t, "_fields"):
        return ("namedtuple", type(t), tuple(_flatten(c, leaves) for c in t))
    if isinstance(t, (tuple, list)):
        return (type(t), tuple(_flatten(c, leaves) for c in t))
    if isinstance(t, dict):
        return ("dict", type(t), tuple(t.keys()), tuple(_flatten(v, leaves) for v in t.values()))
    return ("const", t)


def tree_unflatten(spec, leaves):
    """Rebuild the pytree described by ``spec`` with ``leaves`` in place of its Tensor leaves."""
    it = iter(leaves)
    out = _unflatten(spec, it)
    return out


def _unflatten(spec, it, const_as_none=False):
    if spec is _T:
        return next(it)
    kind = spec[0]
    if kind == "const":
        return None if const_as_none else spec[1]
    if kind == "namedtuple":
        return spec[1](*(_unflatten(s, it, const_as_none) for s in spec[2]))
    if kind == "dict":
        return spec[1](zip(spec[2], (_unflatten(s, it, const_as_none) for s in spec[3])))
    return spec[0](_unflatten(s, it, const_as_none) for s in spec[1])


def _unflatten_grads(spec, leaves):
    """Like ``tree_unflatten`` but non-Tensor leaves become None (they have no gradient)."""
    return _unflatten(spec, iter(leaves), const_as_none=True)


def tree_map(fn, tree):
    """Apply ``fn`` to each Tensor leaf of ``tree``; other leaves are kept."""
    leaves, spec = tree_flatten(tree)
    return tree_unflatten(spec, [fn(t) for t in leaves])


def _flatten_like(tree, spec, opname, what, like):
    """The entries of ``tree`` at the Tensor-leaf positions of ``spec`` (a list aligned with that
    spec's leaves; entries may be None or array-likes), checking that the structures match."""
    res = []

    def bad():
        return RuntimeError(f"{opname}: {what} must have the same structure as the {like} "
                            f"(Tensors in the same tuples/lists/dicts), got {type(tree).__name__}")

    def walk(t, s):
        if s is _T:
            res.append(t)
            return
        kind = s[0]
        if kind == "const":
            return
        if kind == "dict":
            if not isinstance(t, dict) or set(t.keys()) != set(s[2]):
                raise bad()
            for k, cs in zip(s[2], s[3]):
                walk(t[k], cs)
            return
        if not isinstance(t, (tuple, list)) or len(t) != len(s[-1]):
            raise bad()
        for c, cs in zip(t, s[-1]):
            walk(c, cs)
    walk(tree, spec)
    return res


def _detach(t):
    return t.detach()


# ------------------------------------------------------------------ shared machinery

def _norm_argnums(argnums, nargs, opname):
    single = isinstance(argnums, numbers.Integral) and not isinstance(argnums, bool)
    nums = (argnums,) if single else argnums
    if not isinstance(nums, tuple) or not nums or not all(
            isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in nums):
        raise TypeError(f"{opname}: argnums must be an int or a non-empty tuple of ints, got {argnums!r}")
    out = []
    for a in nums:
        if not -nargs <= a < nargs:
            raise ValueError(f"{opname}: argnums {argnums!r} is out of range for a call with {nargs} "
                             "positional argument(s)")
        a = int(a) % nargs
        if a in out:
            raise ValueError(f"{opname}: argnums {argnums!r} contains argument {a} twice")
        out.append(a)
    return tuple(out), single


class _Inputs:
    """The differentiated arguments of one transform call: each Tensor leaf replaced by a fresh
    tensor that requires grad (an identity view of the original when the original is already
    part of a graph and grad mode is on, else a new leaf)."""

    def __init__(self, args, argnums, outer, opname):
        self.argnums, self.single = _norm_argnums(argnums, len(args), opname)
        args = list(args)
        self.specs, self.counts, self.flat = [], [], []
        self.aliased = False
        for a in self.argnums:
            leaves, spec = tree_flatten(args[a])
            if spec[0] == "const":
                raise TypeError(f"{opname}: argument {a} must be a Tensor or a (nested) tuple/list/dict "
                                f"of Tensors to be differentiated, got {type(args[a]).__name__}")
            new = []
            for x in leaves:
                if x.dtype.kind != "f":
                    raise TypeError(
                        f"{opname}: argument {a} contains a tensor of dtype {x.dtype} (shape "
                        f"{list(x.shape)}); only floating-point tensors can be differentiated. "
                        "Convert it with .double() or move it out of argnums")
                if outer and x._rg:
                    new.append(x.view_as(x))       # differentiable identity: stays connected
                    self.aliased = True
                else:
                    new.append(x.detach().requires_grad_(True))
            self.specs.append(spec)
            self.counts.append(len(new))
            self.flat.extend(new)
            args[a] = tree_unflatten(spec, new)
        self.args = tuple(args)

    def structure(self, flat):
        """Per-argnum pytrees (or the one pytree when argnums was an int) from a flat list."""
        res, i = [], 0
        for spec, n in zip(self.specs, self.counts):
            res.append(_unflatten_grads(spec, flat[i:i + n]))
            i += n
        return res[0] if self.single else tuple(res)


def _connected(outer, inputs, tensors):
    """Whether results must keep a graph: grad mode is on and ``tensors`` depend on tensors of an
    outer graph (aliased inputs, or closed-over tensors that require grad)."""
    if not outer:
        return False
    if inputs.aliased:
        return True
    own = set()
    for d in inputs.flat:
        e = edge_of(d)
        if e is not None:
            own.add(e[0])
    seen = set()
    stack = []
    for t in tensors:
        if not t._rg:
            continue
        n = edge_of(t)[0]
        if n in own:
            continue
        if type(n) is AccumulateGrad:
            return True             # a closed-over leaf returned as is
        if n not in seen:
            seen.add(n)
            stack.append(n)
    while stack:
        node = stack.pop()
        for e in node.edges:
            if e is None:
                continue
            n = e[0]
            if n in own or n in seen:
                continue
            if type(n) is AccumulateGrad:
                return True
            seen.add(n)
            stack.append(n)
    return False


def _split_aux(res, has_aux, opname):
    if not has_aux:
        return res, None
    if not (isinstance(res, (tuple, list)) and len(res) == 2):
        raise TypeError(f"{opname}(..., has_aux=True): the function must return a pair (output, aux), "
                        f"got {type(res).__name__}")
    return res[0], res[1]


def _aux_leaves(aux):
    return tree_flatten(aux)[0] if aux is not None else []


def _as_tangent(t, like, opname, what):
    """Check/convert a cotangent or tangent ``t`` for the tensor ``like``."""
    if t is None:
        return None
    if not isinstance(t, Tensor):
        from .creation import as_tensor
        t = as_tensor(t, dtype=like.dtype, device=like.device)
    if t.shape != like.shape:
        raise RuntimeError(f"{opname}: {what} has shape {list(t.shape)} but the tensor it pairs with has "
                           f"shape {list(like.shape)}; they must match")
    if type(t._data) is not type(like._data):
        raise RuntimeError(f"{opname}: {what} is on {t.device} but the tensor it pairs with is on "
                           f"{like.device}")
    if t.dtype != like.dtype:
        t = t.to(like.dtype)
    return t


def _zeros(like, shape=None):
    from .creation import zeros
    dt = like.dtype if like.dtype.kind == "f" else None
    return zeros(like.shape if shape is None else shape, dtype=dt, device=like.device)


def _check_out_tensors(leaves, spec, opname):
    if spec[0] == "const" and not leaves:
        raise TypeError(f"{opname}: the function must return a Tensor or a (nested) tuple/list/dict of "
                        f"Tensors, got {type(spec[1]).__name__}")


def _vjp_core(outs, diff, cts, create):
    """Gradients of ``outs`` (flat Tensors) w.r.t. ``diff`` (flat) with cotangents ``cts`` (None
    = zero); zeros for inputs that do not influence the outputs."""
    pairs = [(o, c) for o, c in zip(outs, cts) if c is not None and o._rg]
    if not pairs:
        return tuple(_zeros(d) for d in diff)
    return _engine.grad([p[0] for p in pairs], diff, [p[1] for p in pairs], retain_graph=True,
                        create_graph=create, allow_unused=True, materialize_grads=True)


class _Linearized:
    """``u -> J^T u`` built with ``create_graph`` for dummy cotangents ``u``, so that
    ``J t`` = the vjp of that map w.r.t. ``u`` in direction ``t`` (forward mode, exactly)."""

    def __init__(self, outs, diff):
        self.outs = outs
        self.sel = [i for i, o in enumerate(outs) if o._rg]
        self.us = [_zeros(outs[i]).requires_grad_(True) for i in self.sel]
        self.gs = []
        if self.sel:
            gs = _engine.grad([outs[i] for i in self.sel], diff, self.us, retain_graph=True,
                              create_graph=True, allow_unused=True)
            self.gs = [(j, g) for j, g in enumerate(gs) if g is not None and g._rg]

    def apply(self, tangents, create):
        """``J @ tangents`` for the flat tangents (None = zero), one Tensor per output leaf."""
        pairs = [(g, tangents[j]) for j, g in self.gs if tangents[j] is not None]
        res = [None] * len(self.outs)
        if pairs:
            got = _engine.grad([p[0] for p in pairs], self.us, [p[1] for p in pairs], retain_graph=True,
                               create_graph=create, allow_unused=True, materialize_grads=True)
            for i, g in zip(self.sel, got):
                res[i] = g
        return [r if r is not None else _zeros(o) for r, o in zip(res, self.outs)]


def _finish(connected, tree):
    return tree if connected or tree is None else tree_map(_detach, tree)


# ------------------------------------------------------------------ grad, value_and_grad

def _value_and_grad(f, argnums, has_aux, args, kwargs, opname):
    outer = STATE.grad_enabled
    with enable_grad():
        inp = _Inputs(args, argnums, outer, opname)
        res = f(*inp.args, **kwargs)
    out, aux = _split_aux(res, has_aux, opname)
    if not isinstance(out, Tensor):
        where = " (as the first element of (output, aux))" if has_aux else ""
        raise TypeError(f"{opname}: the function must return a scalar Tensor{where}, got "
                        f"{type(out).__name__}")
    if out.ndim != 0:
        raise RuntimeError(
            f"{opname}: the function must return a scalar (0-d) Tensor, got one of shape {list(out.shape)}; "
            "reduce it first (e.g. .sum() or .mean()), or use ds.func.vjp / ds.func.jacobian for "
            "non-scalar outputs")
    connected = _connected(outer, inp, [out] + _aux_leaves(aux))
    if out._rg:
        grads = _engine.grad((out,), inp.flat, retain_graph=connected, create_graph=connected,
                             allow_unused=True, materialize_grads=True)
    else:
        grads = tuple(_zeros(d) for d in inp.flat)
    return _finish(connected, out), _finish(connected, aux), inp.structure(list(grads))


def grad(f, argnums=0, has_aux=False):
    """The gradient of a scalar function: ``grad(f)(*args) == df/d args[argnums]``.

    ``f(*args, **kwargs)`` must return a 0-d Tensor (or ``(scalar, aux)`` with
    ``has_aux=True``). The gradient has the structure and shapes of ``args[argnums]`` (a
    Tensor [*s] gives a Tensor [*s]; a tuple of argnums gives a tuple of gradients). With
    ``has_aux=True`` the transformed function returns ``(gradient, aux)``.

    ``grad(grad(f))`` and other compositions work (see the module docstring).
    """
    def grad_f(*args, **kwargs):
        _, aux, g = _value_and_grad(f, argnums, has_aux, args, kwargs, "grad")
        return (g, aux) if has_aux else g
    grad_f.__name__ = f"grad_{getattr(f, '__name__', 'f')}"
    return grad_f


def value_and_grad(f, argnums=0, has_aux=False):
    """Like ``grad`` but returns ``(value, gradient)``: value is ``f(*args)`` (a 0-d Tensor), the
    gradient as for ``grad``. With ``has_aux=True`` returns ``((value, aux), gradient)`` (JAX's
    convention)."""
    def value_and_grad_f(*args, **kwargs):
        out, aux, g = _value_and_grad(f, argnums, has_aux, args, kwargs, "value_and_grad")
        return ((out, aux), g) if has_aux else (out, g)
    value_and_grad_f.__name__ = f"value_and_grad_{getattr(f, '__name__', 'f')}"
    return value_and_grad_f


# ------------------------------------------------------------------ vjp, jvp

def vjp(f, *primals, has_aux=False):
    """Evaluate ``f(*primals)`` and return ``(output, vjp_fn)`` (``(output, vjp_fn, aux)`` with
    ``has_aux=True``).

    ``vjp_fn(cotangents)`` takes one cotangent pytree with the structure and shapes of
    ``output`` (a Tensor [*o] for a Tensor output [*o]; ``None`` leaves count as zero) and
    returns a tuple with one entry per primal, each with that primal's structure and shapes:
    ``cotangents^T @ d output / d primal``. It may be called many times. Every primal is
    differentiated (pass constants through a closure).
    """
    outer = STATE.grad_enabled
    with enable_grad():
        inp = _Inputs(primals, tuple(range(len(primals))), outer, "vjp") if primals else None
        if inp is None:
            raise TypeError("vjp: expected at least one primal, got none")
        res = f(*inp.args)
    out, aux = _split_aux(res, has_aux, "vjp")
    out_leaves, out_spec = tree_flatten(out)
    _check_out_tensors(out_leaves, out_spec, "vjp")
    connected = _connected(outer, inp, out_leaves + _aux_leaves(aux))
    inp.single = False

    def vjp_fn(cotangents):
        """``cotangents`` (structure of the output) -> tuple of gradients, one per primal."""
        cts = [_as_tangent(c, o, "vjp_fn", f"cotangent {i}") for i, (c, o) in
               enumerate(zip(_flatten_like(cotangents, out_spec, "vjp_fn", "the cotangents", "output"),
                             out_leaves))]
        create = STATE.grad_enabled and (connected or any(c._rg for c in cts if c is not None))
        grads = _vjp_core(out_leaves, inp.flat, cts, create)
        return inp.structure(list(grads))

    ret = _finish(connected, out)
    return (ret, vjp_fn, _finish(connected, aux)) if has_aux else (ret, vjp_fn)


def _tuple_primals(primals, tangents, opname):
    single = isinstance(primals, Tensor)
    if single:
        primals, tangents = (primals,), (tangents,)
    if not isinstance(primals, (tuple, list)):
        raise TypeError(f"{opname}: primals must be a tuple of Tensors (or pytrees), got "
                        f"{type(primals).__name__}")
    if not isinstance(tangents, (tuple, list)) or len(tangents) != len(primals):
        n = f" of length {len(tangents)}" if isinstance(tangents, (tuple, list)) else ""
        raise RuntimeError(f"{opname}: tangents must be a tuple with one entry per primal "
                           f"({len(primals)}), got {type(tangents).__name__}{n}")
    return tuple(primals), tuple(tangents), single


def _flat_tangents(inp, tangents, opname):
    flat = []
    for a, t in zip(inp.argnums, tangents):
        flat.extend(_flatten_like(t, inp.specs[a], opname, f"tangent {a}", f"primal {a}"))
    return [_as_tangent(t, d, opname, f"tangent {i}") for i, (t, d) in enumerate(zip(flat, inp.flat))]


def jvp(f, primals, tangents, has_aux=False):
    """Forward-mode product: returns ``(f(*primals), J @ tangents)`` (plus ``aux`` with
    ``has_aux=True``).

    ``primals`` is a tuple of arguments (Tensors or pytrees; a single Tensor is accepted too)
    and ``tangents`` a tuple of the same structure and shapes. The second result has the
    structure and shapes of the output: ``sum_i d output / d primal_i @ tangent_i``.
    Computed exactly with the double-vjp trick (see the module docstring).
    """
    primals, tangents, _ = _tuple_primals(primals, tangents, "jvp")
    outer = STATE.grad_enabled
    with enable_grad():
        inp = _Inputs(primals, tuple(range(len(primals))), outer, "jvp")
        ts = _flat_tangents(inp, tangents, "jvp")
        res = f(*inp.args)
        out, aux = _split_aux(res, has_aux, "jvp")
        out_leaves, out_spec = tree_flatten(out)
        _check_out_tensors(out_leaves, out_spec, "jvp")
        connected = _connected(outer, inp, out_leaves + _aux_leaves(aux))
        create = outer and (connected or any(t._rg for t in ts))
        lin = _Linearized(out_leaves, inp.flat)
    jv = lin.apply(ts, create)
    ret = (_finish(connected, out), tree_unflatten(out_spec, jv))
    return ret + (_finish(connected, aux),) if has_aux else ret


# ------------------------------------------------------------------ jacobian, hessian, hvp

def _onehot(like, e):
    xp = backend.get_xp(like._data)
    a = xp.zeros(like._data.size, dtype=like.dtype)
    a[e] = 1
    return Tensor._make(a.reshape(like.shape), False, None, 0)


def _stack_rows(rows, shape, dim):
    from .ops import stack
    return stack(rows, dim=dim).reshape(shape)


def jacobian(f, argnums=0, has_aux=False, vectorize=False, mode="reverse"):
    """The Jacobian of ``f`` w.r.t. ``args[argnums]``: ``jacobian(f)(*args)``.

    For an output Tensor [*o] and an input Tensor [*i] the Jacobian has shape [*o, *i]
    (``J[o..., i...] = d out[o...] / d in[i...]``). With pytree outputs the result has the
    output's structure, each leaf holding the Jacobians w.r.t. ``args[argnums]`` (in that
    argument's structure; a tuple over argnums when argnums is a tuple). With
    ``has_aux=True`` returns ``(jacobian, aux)``.

    ``mode="reverse"`` does one vjp per output element (best when outputs are few),
    ``mode="forward"`` one jvp per input element (best when inputs are few); both give the
    same numbers. ``vectorize`` is accepted for torch.autograd.functional compatibility; rows
    are computed one at a time either way (the graph of ``f`` is built once and reused).
    """
    if mode not in ("reverse", "forward"):
        raise ValueError(f"jacobian: mode must be 'reverse' or 'forward', got {mode!r}")
    opname = "jacrev" if mode == "reverse" else "jacfwd"

    def jacobian_f(*args, **kwargs):
        outer = STATE.grad_enabled
        with enable_grad():
            inp = _Inputs(args, argnums, outer, opname)
            res = f(*inp.args, **kwargs)
            out, aux = _split_aux(res, has_aux, opname)
            out_leaves, out_spec = tree_flatten(out)
            _check_out_tensors(out_leaves, out_spec, opname)
            connected = _connected(outer, inp, out_leaves + _aux_leaves(aux))
            diff = inp.flat
            jac = [[None] * len(diff) for _ in out_leaves]
            if mode == "reverse":
                for k, o in enumerate(out_leaves):
                    if not o._rg or o.numel() == 0:
                        continue
                    rows = [_vjp_core([o], diff, [_onehot(o, e)], connected) for e in range(o.numel())]
                    for j, d in enumerate(diff):
                        jac[k][j] = _stack_rows([r[j] for r in rows], o.shape + d.shape, 0)
            else:
                lin = _Linearized(out_leaves, diff)
                for j, d in enumerate(diff):
                    if d.numel() == 0:
                        continue
                    cols = []
                    for e in range(d.numel()):
                        ts = [None] * len(diff)
                        ts[j] = _onehot(d, e)
                        cols.append(lin.apply(ts, connected))
                    for k, o in enumerate(out_leaves):
                        jac[k][j] = _stack_rows([c[k] for c in cols], o.shape + d.shape, -1)
        for k, o in enumerate(out_leaves):
            for j, d in enumerate(diff):
                if jac[k][j] is None:
                    jac[k][j] = _zeros(d, o.shape + d.shape)
        result = tree_unflatten(out_spec, [inp.structure(row) for row in jac])
        return (result, _finish(connected, aux)) if has_aux else result
    jacobian_f.__name__ = f"{opname}_{getattr(f, '__name__', 'f')}"
    return jacobian_f


def jacrev(f, argnums=0, has_aux=False):
    """``jacobian(f, argnums, mode="reverse")``: Jacobian [*out, *in] by one vjp per output element."""
    return jacobian(f, argnums, has_aux=has_aux, mode="reverse")


def jacfwd(f, argnums=0, has_aux=False):
    """``jacobian(f, argnums, mode="forward")``: Jacobian [*out, *in] by one jvp per input element."""
    return jacobian(f, argnums, has_aux=has_aux, mode="forward")


def _check_scalar(out, opname):
    if not isinstance(out, Tensor) or out.ndim != 0:
        got = f"shape {list(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
        raise RuntimeError(f"{opname}: the function must return a scalar (0-d) Tensor, got {got}; "
                           "reduce it first (e.g. .sum())")


def hessian(f, argnums=0):
    """The Hessian of a scalar function: for an input Tensor [*i], a Tensor [*i, *i]
    (``H[a..., b...] = d2 f / d x[a...] d x[b...]``). With a tuple of argnums, a nested tuple
    ``H[p][q]`` of blocks [*i_p, *i_q]. Reverse-over-reverse (the Jacobian of the gradient)."""
    opname = "hessian"

    def gradient(*args, **kwargs):
        out = f(*args, **kwargs)
        _check_scalar(out, opname)
        return out
    return jacobian(jacobian(gradient, argnums, mode="reverse"), argnums, mode="reverse")


def hvp(f, primals, tangents):
    """Hessian-vector product of a scalar function: returns ``(f(*primals), H @ tangents)``.

    ``primals`` is a tuple of arguments (Tensors or pytrees; a single Tensor is accepted and
    then the product is a single Tensor), ``tangents`` has the same structure and shapes; the
    product has that structure too: ``(H v)_p = sum_q d2 f / d primal_p d primal_q @ v_q``.
    Reverse-over-reverse: the gradient is built with ``create_graph=True`` and differentiated
    once more in direction ``v``.
    """
    primals, tangents, single = _tuple_primals(primals, tangents, "hvp")
    outer = STATE.grad_enabled
    with enable_grad():
        inp = _Inputs(primals, tuple(range(len(primals))), outer, "hvp")
        inp.single = False
        ts = _flat_tangents(inp, tangents, "hvp")
        out = f(*inp.args)
        _check_scalar(out, "hvp")
        connected = _connected(outer, inp, [out])
        create = outer and (connected or any(t._rg for t in ts))
        if out._rg:
            gs = _engine.grad((out,), inp.flat, retain_graph=True, create_graph=True, allow_unused=True)
        else:
            gs = [None] * len(inp.flat)
        pairs = [(g, t) for g, t in zip(gs, ts) if g is not None and g._rg]
    if pairs:
        hv = _engine.grad([p[0] for p in pairs], inp.flat, [p[1] for p in pairs], retain_graph=create,
                          create_graph=create, allow_unused=True, materialize_grads=True)
    else:
        hv = tuple(_zeros(d) for d in inp.flat)
    res = inp.structure(list(hv))
    return _finish(connected, out), (res[0] if single else res)
