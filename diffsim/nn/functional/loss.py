"""Loss functions with reduction (PyTorch's names, signatures and semantics).

``cross_entropy``/``nll_loss`` with class indices, ``mse_loss``, ``binary_cross_entropy`` and
``binary_cross_entropy_with_logits`` are single primitive ops (a fused numpy forward and a
backward written with ``ns``, so they are differentiable twice); the others are compositions
of diffsim ops.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np

from ...autodiff import ops as _ops
from ...autodiff.backend import get_xp
from ...autodiff.function import apply, defop
from ...autodiff.tensor import Tensor

__all__ = ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "cross_entropy", "nll_loss",
           "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div",
           "cosine_similarity", "pairwise_distance"]

_REDUCTIONS = ("mean", "sum", "none")


# ------------------------------------------------------------------ helpers

def _check_reduction(reduction, name, extra=()):
    if reduction not in _REDUCTIONS + tuple(extra):
        allowed = ", ".join(repr(r) for r in _REDUCTIONS + tuple(extra))
        raise ValueError(f"{name}: reduction must be one of {allowed}, got {reduction!r}")


def _reduction_arg(size_average, reduce, reduction, opname, extra=()):
    """The checked ``reduction`` of loss ``opname``, with PyTorch's deprecated
    ``size_average``/``reduce`` arguments translated to it."""
    if size_average is not None or reduce is not None:
        warnings.warn("size_average and reduce args will be deprecated, please use reduction= instead",
                      UserWarning, stacklevel=3)
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else ("mean" if size_average else "sum")
    _check_reduction(reduction, opname, extra=extra)
    return reduction


def _tensor(x, name, argname, like=None):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (numbers.Number, np.ndarray, np.generic, list, tuple)):
        from ...autodiff.creation import as_tensor
        dtype = like.dtype if like is not None and isinstance(x, numbers.Number) else None
        return as_tensor(x, dtype=dtype, device=None if like is None else like.device)
    raise TypeError(f"{name}: argument '{argname}' must be a Tensor, got {type(x).__name__}")


def _float(x, name, argname):
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: {argname} must be a floating-point Tensor, got dtype {x.dtype} "
                        f"(shape {list(x.shape)}); convert it with .float() / .double()")
    return x


def _reduce(loss, reduction):
    if reduction == "mean":
        return _ops.mean(loss)
    if reduction == "sum":
        return _ops.sum(loss)
    return loss


def _same_shape_or_warn(input, target, name):  # noqa: A002
    if input.shape != target.shape:
        try:
            np.broadcast_shapes(input.shape, target.shape)
        except ValueError:
            raise ValueError(f"{name}: target of shape {list(target.shape)} cannot be broadcast to "
                             f"the input's shape {list(input.shape)}; they should have the same "
                             "shape") from None
        warnings.warn(f"{name}: using a target size ({list(target.shape)}) that is different to the "
                      f"input size ({list(input.shape)}). This will likely lead to incorrect results "
                      "due to broadcasting. Please ensure they have the same size.",
                      UserWarning, stacklevel=3)


def _require_same_shape(input, target, name, argname="target"):  # noqa: A002
    if input.shape != target.shape:
        raise ValueError(f"{name}: using a {argname} of shape {list(target.shape)} that is different "
                         f"to the input's shape {list(input.shape)}; please ensure they have the same "
                         "shape")


def _is_graph(*xs):
    """True inside a backward run with ``create_graph`` (the ``ns`` arguments are Tensors)."""
    return any(isinstance(x, Tensor) for x in xs)


def _raw(x):
    return x._data if isinstance(x, Tensor) else x


def _const(arr, graph):
    return Tensor._make(arr, False, None, 0) if graph else arr


def _ns_softmax(ns, x, dim):
    """softmax(x) along ``dim`` with ``ns`` ops; the max shift is a constant."""
    m = _const(_raw(x).max(axis=dim, keepdims=True), isinstance(x, Tensor))
    e = ns.exp(x - m)
    return e / ns.sum(e, dim, True)


def _ns_softplus_neg(ns, x):
    """softplus(-x) = log(1 + exp(-x)), stably, with ``ns`` ops."""
    return ns.log1p(ns.exp(-ns.abs(x))) + ns.maximum(-x, 0)


def _ns_sigmoid(ns, x):
    return (ns.tanh(x * 0.5) + 1) * 0.5


def _red_fwd(loss, reduction):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.mean()


# ------------------------------------------------------------------ regression losses

def _mse_fwd(x, y, reduction):
    d = x - y
    return _red_fwd(d * d, reduction)


_mse = defop("mse_loss", _mse_fwd, save=(0, 1), broadcast=True)


@_mse.defvjp
def _(ns, node, g, x, y):
    d = x - y
    scale = 2.0 / max(_raw(d).size, 1) if node.attrs["reduction"] == "mean" else 2.0
    gd = d * (g * scale)
    need = node.needs_input_grad
    return (gd if need[0] else None, -gd if need[1] else None)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean"):  # noqa: A002
    """Mean squared error ``(input - target)^2`` with ``reduction`` ('mean' | 'sum' | 'none')."""
    reduction = _reduction_arg(size_average, reduce, reduction, "mse_loss")
    input = _tensor(input, "mse_loss", "input")  # noqa: A001
    target = _tensor(target, "mse_loss", "target", like=input)
    _same_shape_or_warn(input, target, "mse_loss")
    return apply(_mse, (input, target), {"reduction": reduction})


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean"):  # noqa: A002
    """Mean absolute error ``|input - target|`` (gradient 0 where they are equal, as PyTorch)."""
    reduction = _reduction_arg(size_average, reduce, reduction, "l1_loss")
    input = _tensor(input, "l1_loss", "input")  # noqa: A001
    target = _tensor(target, "l1_loss", "target", like=input)
    _same_shape_or_warn(input, target, "l1_loss")
    return _reduce(_ops.abs(input - target), reduction)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):  # noqa: A002
    """``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (``d = input - target``);
    ``beta = 0`` is the L1 loss."""
    reduction = _reduction_arg(size_average, reduce, reduction, "smooth_l1_loss")
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    input = _tensor(input, "smooth_l1_loss", "input")  # noqa: A001
    target = _tensor(target, "smooth_l1_loss", "target", like=input)
    _same_shape_or_warn(input, target, "smooth_l1_loss")
    d = input - target
    a = _ops.abs(d)
    if beta == 0:
        return _reduce(a, reduction)
    loss = _ops.where(a < beta, (0.5 / beta) * d * d, a - 0.5 * beta)
    return _reduce(loss, reduction)


def huber_loss(input, target, reduction="mean", delta=1.0):  # noqa: A002
    """``0.5 d^2`` where ``|d| < delta``, else ``delta (|d| - 0.5 delta)``."""
    _check_reduction(reduction, "huber_loss")
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    input = _tensor(input, "huber_loss", "input")  # noqa: A001
    target = _tensor(target, "huber_loss", "target", like=input)
    _same_shape_or_warn(input, target, "huber_loss")
    d = input - target
    a = _ops.abs(d)
    loss = _ops.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta))
    return _reduce(loss, reduction)


# ------------------------------------------------------------------ classification: class indices

def _pick(a, tt):
    """``a[n, tt[n, ...], ...]``: the entries of [N, C, *] at the class indices [N, *]."""
    if a.ndim == 2:
        xp = get_xp(a)
        return a.reshape(-1)[xp.arange(a.shape[0]) * a.shape[1] + tt]
    return np.take_along_axis(a, np.expand_dims(tt, 1), axis=1).squeeze(1)


def _targets(t, w, ignore_index, dtype):
    """(valid mask or None when all are valid, safe indices, per-sample weights or None)."""
    valid = t != ignore_index
    if valid.all():
        return None, t, (None if w is None else w[t])
    tt = np.where(valid, t, 0)
    wt = valid.astype(dtype) if w is None else w[tt] * valid
    return valid, tt, wt


def _cls_fwd(x, t, w, ignore_index, reduction, ls, logits):
    """x: [N, C, *] logits (``logits``) or log-probabilities; t: [N, *] class indices."""
    C = x.shape[1]
    valid, tt, wt = _targets(t, w, ignore_index, x.dtype)
    if logits:
        s = x - x.max(axis=1, keepdims=True)
        lse = np.log(np.exp(s).sum(axis=1))
        loss = lse - _pick(s, tt)                      # -log p[target]
    else:
        s, lse = x, None
        loss = -_pick(x, tt)
    if wt is not None:
        loss = loss * wt
    if ls:
        # -sum_c w_c log p_c  (with log p = s - lse)
        sm = -(s.sum(axis=1) if w is None else
               (s * w.reshape((1, C) + (1,) * (x.ndim - 2))).sum(axis=1))
        if lse is not None:
            sm = sm + (C if w is None else w.sum()) * lse
        if valid is not None:
            sm = sm * valid
        loss = (1 - ls) * loss + (ls / C) * sm
    if reduction == "none":
        return loss.astype(x.dtype, copy=False)
    total = loss.sum()
    if reduction == "sum":
        return total.astype(x.dtype, copy=False)
    denom = loss.size if wt is None else wt.sum()
    if denom:
        return (total / denom).astype(x.dtype, copy=False)
    return get_xp(x).asarray(np.nan, dtype=x.dtype)     # no (weighted) target at all: 0/0


def _cls_bwd(ns, node, g, x, t, w):
    if _is_graph(g, x):
        return _cls_bwd_ns(ns, node, g, x, t, w)
    # plain backward: one fused numpy pass, the gradient (softmax - onehot) * weights built in place
    a = node.attrs
    ls, reduction = a["ls"], a["reduction"]
    C = x.shape[1]
    xp = get_xp(x)
    valid, tt, wt = _targets(t, w, a["ignore_index"], x.dtype)
    if reduction == "mean":
        denom = t.size if wt is None else wt.sum()
        gs = g / denom if denom else g * np.nan
    else:
        gs = g                                          # scalar, or [N, *] for 'none'
    hot = gs * (1 - ls) if wt is None else gs * (1 - ls) * wt  # at the target class
    if node.op is _ce_op:
        grad = np.exp(x - x.max(axis=1, keepdims=True))
        coef = hot
        if ls:
            W = C if w is None else w.sum()
            coef = coef + (gs * (ls / C) * W if valid is None else gs * (ls / C) * W * valid)
        coef = xp.asarray(coef, dtype=x.dtype)
        grad *= (coef[:, None] if coef.ndim else coef) / grad.sum(axis=1, keepdims=True)
    else:
        grad = xp.zeros(x.shape, x.dtype)
    if x.ndim == 2 and grad.flags.c_contiguous:
        flat = grad.reshape(-1)
        flat[xp.arange(x.shape[0]) * C + tt] -= hot
    else:                   # grad[n, t[n, d...], d...] -= hot (each element addressed once)
        ix = xp.ogrid[tuple(slice(0, n) for n in tt.shape)] if tt.ndim > 1 else [xp.arange(tt.shape[0])]
        grad[(ix[0], tt) + tuple(ix[1:])] -= hot
    if ls:
        gsb = xp.asarray(gs, dtype=x.dtype)
        if gsb.ndim:
            gsb = np.expand_dims(gsb, 1)
        sm = (ls / C) * gsb
        if w is not None:
            sm = sm * w.reshape((1, C) + (1,) * (x.ndim - 2))
        if valid is not None:
            sm = sm * np.expand_dims(valid, 1)
        grad -= sm
    return (grad, None, None)


def _cls_bwd_ns(ns, node, g, x, t, w):
    a = node.attrs
    graph = _is_graph(g, x)
    xr, tr = _raw(x), _raw(t)
    wr = _raw(w)
    N, C = xr.shape[0], xr.shape[1]
    xp = get_xp(xr)
    ls, reduction = a["ls"], a["reduction"]
    valid = tr != a["ignore_index"]
    all_valid = bool(valid.all())
    tt = tr if all_valid else xp.where(valid, tr, 0)
    if wr is None:
        wt = None if all_valid else valid.astype(xr.dtype)
    else:
        wt = wr[tt].astype(xr.dtype, copy=False)
        if not all_valid:
            wt = wt * valid
    # the incoming gradient per sample: g (scalar for 'sum', 'mean' divides by the weight sum)
    if reduction == "mean":
        denom = tr.size if wt is None else wt.sum()
        gs = g / _const(xp.asarray(denom, dtype=xr.dtype), graph)
    else:
        gs = g
    if reduction == "none":
        gs = ns.unsqueeze(gs, 1)                              # [N, 1, *]
    ndim = xr.ndim
    tt1 = xp.expand_dims(tt, 1)
    one_w = (1 - ls) if wt is None else (1 - ls) * xp.expand_dims(wt, 1)   # [N,1,*] or scalar
    # the one-hot part: -(1 - ls) * w[t] * gs at the target class
    src = gs * _const(xp.asarray(one_w, dtype=xr.dtype), graph) if not np.isscalar(one_w) else gs * one_w
    if src.shape != tt1.shape:
        src = ns.broadcast_to(src, tt1.shape)
    grad = -ns.scatter_add_into(xr.shape, 1, _const(tt1, graph), src)
    if ls:
        wb = (xp.ones((1, C) + (1,) * (ndim - 2), xr.dtype) if wr is None else
              wr.reshape((1, C) + (1,) * (ndim - 2)).astype(xr.dtype, copy=False))
        vb = 1.0 if all_valid else xp.expand_dims(valid, 1).astype(xr.dtype)
        grad = grad - gs * _const(xp.asarray((ls / C) * wb * vb, dtype=xr.dtype), graph)
    if node.op is _ce_op:
        # the softmax part: p * gs * ((1 - ls) w[t] + ls/C * valid * sum(w))
        coef = xp.zeros((N, 1) + tr.shape[1:], xr.dtype) + one_w
        if ls:
            W = C if wr is None else float(wr.sum())
            coef = coef + (ls / C) * W * (1.0 if all_valid else xp.expand_dims(valid, 1))
        p = _ns_softmax(ns, x, 1)
        grad = grad + p * (gs * _const(coef.astype(xr.dtype, copy=False), graph))
    return (grad, None, None)


_ce_op = defop("cross_entropy", lambda x, t, w, **a: _cls_fwd(x, t, w, logits=True, **a),
               save=(0, 1, 2))
_ce_op.defvjp(_cls_bwd)
_nll_op = defop("nll_loss", lambda x, t, w, **a: _cls_fwd(x, t, w, logits=False, **a),
                save=(0, 1, 2))
_nll_op.defvjp(_cls_bwd)


def _class_weight(weight, input, C, name):  # noqa: A002
    if weight is None:
        return None
    weight = _tensor(weight, name, "weight", like=input)
    if weight.shape != (C,):
        raise ValueError(f"{name}: weight should be a 1-D Tensor with one entry per class, i.e. "
                         f"shape [{C}], got shape {list(weight.shape)} (input shape {list(input.shape)})")
    if weight.device != input.device:
        raise RuntimeError(f"{name}: weight is on {weight.device} but input is on {input.device}")
    return weight._data.astype(input.dtype, copy=False)


def _check_indices(input, target, name, ignore_index, C):  # noqa: A002
    """Shape, dtype and range checks of a class-index target for input [N, C, *] or [C]."""
    if target.dtype.kind not in "iu":
        raise TypeError(f"{name}: target must hold class indices as an integer Tensor (int64), got "
                        f"dtype {target.dtype} (target shape {list(target.shape)}, input shape "
                        f"{list(input.shape)})" + ("; for class probabilities pass a floating target "
                                                  "of the input's shape" if name == "cross_entropy"
                                                  and target.dtype.kind == "b" else ""))
    expected = (input.shape[0],) + input.shape[2:] if input.ndim >= 2 else ()
    if target.shape != expected:
        raise ValueError(f"{name}: expected target of shape {list(expected)} for input of shape "
                         f"{list(input.shape)} (input is [N, C, d1, ...] or [C]; target [N, d1, ...] "
                         f"or []), got target of shape {list(target.shape)}")
    if target.device != input.device:
        raise RuntimeError(f"{name}: target is on {target.device} but input is on {input.device}")
    tr = target._data
    if tr.size and (int(tr.min()) < 0 or int(tr.max()) >= C):
        bad = ((tr < 0) | (tr >= C)) & (tr != ignore_index)
        if bool(bad.any()):
            v = int(tr[bad].ravel()[0])
            raise IndexError(f"{name}: target value {v} is out of bounds for {C} classes (class "
                             f"indices must be in [0, {C - 1}], or equal ignore_index={ignore_index})")


def _class_loss(op, name, input, target, weight, ignore_index, reduction, ls):  # noqa: A002
    C = input.shape[1] if input.ndim >= 2 else input.shape[0]
    _check_indices(input, target, name, ignore_index, C)
    w = _class_weight(weight, input, C, name)
    attrs = {"ignore_index": int(ignore_index), "reduction": reduction, "ls": float(ls)}
    if input.ndim == 1:
        out = apply(op, (_ops.unsqueeze(input, 0), _ops.unsqueeze(target, 0), w), attrs)
        return _ops.squeeze(out, 0) if reduction == "none" else out
    return apply(op, (input, target, w), attrs)


def _check_input(input, name):  # noqa: A002
    input = _float(_tensor(input, name, "input"), name, "input")  # noqa: A001
    if input.ndim == 0:
        raise ValueError(f"{name}: input must be [C] or [N, C, d1, ...] (class scores), got a 0-d Tensor")
    if (input.shape[1] if input.ndim >= 2 else input.shape[0]) == 0:
        raise ValueError(f"{name}: input of shape {list(input.shape)} has no classes")
    return input


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,  # noqa: A002
                  reduce=None, reduction="mean", label_smoothing=0.0):
    """Cross entropy between logits ``input`` ([N, C], [N, C, d1, ...] or [C]) and ``target``:
    class indices (integer, [N] / [N, d1, ...] / []) or class probabilities (floating, the
    input's shape). ``weight`` [C] rescales classes; ``'mean'`` with class indices divides by
    the summed weights of the non-ignored targets (PyTorch's weighted mean); ``ignore_index``
    targets contribute nothing; ``label_smoothing`` mixes the target with the uniform
    distribution. Computed as one fused, max-shifted log-softmax op (stable at any scale)."""
    reduction = _reduction_arg(size_average, reduce, reduction, "cross_entropy")
    input = _check_input(input, "cross_entropy")  # noqa: A001
    target = _tensor(target, "cross_entropy", "target")
    ls = float(label_smoothing)
    if not 0.0 <= ls <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got {ls}")
    if target.dtype.kind == "f" and target.shape == input.shape:
        return _soft_cross_entropy(input, target, weight, reduction, ls)
    if target.dtype.kind == "f":
        expected = (input.shape[0],) + input.shape[2:] if input.ndim >= 2 else ()
        raise ValueError(f"cross_entropy: a floating target is read as class probabilities and must "
                         f"have the input's shape {list(input.shape)}, got {list(target.shape)}; "
                         f"class indices must be an integer (int64) Tensor of shape {list(expected)}")
    return _class_loss(_ce_op, "cross_entropy", input, target, weight, ignore_index, reduction, ls)


def _soft_cross_entropy(input, target, weight, reduction, ls):  # noqa: A002
    dim = 1 if input.ndim >= 2 else 0
    C = input.shape[dim]
    if ls:
        target = target * (1 - ls) + ls / C
    logp = _ops.log_softmax(input, dim)
    prod = logp * target
    if weight is not None:
        w = _class_weight(weight, input, C, "cross_entropy")
        prod = prod * Tensor._make(w.reshape((C,) + (1,) * (input.ndim - 2)), False, None, 0)
    loss = -_ops.sum(prod, dim)
    if reduction == "none":
        return loss
    total = _ops.sum(loss)
    if reduction == "sum":
        return total
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / (input._data.size // C)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,  # noqa: A002
             reduction="mean"):
    """Negative log-likelihood of log-probabilities ``input`` ([N, C], [N, C, d1, ...] or [C]) at
    class indices ``target``, with ``weight``, ``ignore_index`` and PyTorch's weighted mean."""
    reduction = _reduction_arg(size_average, reduce, reduction, "nll_loss")
    input = _check_input(input, "nll_loss")  # noqa: A001
    target = _tensor(target, "nll_loss", "target")
    return _class_loss(_nll_op, "nll_loss", input, target, weight, ignore_index, reduction, 0.0)


# ------------------------------------------------------------------ binary cross entropy

def _bce_fwd(x, y, w, reduction):
    with np.errstate(divide="ignore"):
        lx = np.maximum(np.log(x), -100)
        l1x = np.maximum(np.log1p(-x), -100)
    loss = -(y * lx + (1 - y) * l1x)
    if w is not None:
        loss = loss * w
    return _red_fwd(loss, reduction).astype(x.dtype, copy=False)


_bce = defop("binary_cross_entropy", _bce_fwd, save=(0, 1, 2), broadcast=True)


@_bce.defvjp
def _(ns, node, g, x, y, w):
    if node.attrs["reduction"] == "mean":
        g = g * (1.0 / max(_raw(x).size, 1))
    if w is not None:
        g = g * w
    need = node.needs_input_grad
    gx = gy = None
    if need[0]:
        gx = g * (x - y) / ns.maximum((1 - x) * x, 1e-12)
    if need[1]:
        with np.errstate(divide="ignore"):
            gy = g * (ns.maximum(ns.log1p(-x), -100) - ns.maximum(ns.log(x), -100))
    return (gx, gy, None)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,  # noqa: A002
                         reduction="mean"):
    """``-w (y log x + (1 - y) log(1 - x))`` for probabilities ``input`` in [0, 1]; the logs
    are clamped to >= -100, as PyTorch does, so the loss stays finite."""
    reduction = _reduction_arg(size_average, reduce, reduction, "binary_cross_entropy")
    name = "binary_cross_entropy"
    input = _float(_tensor(input, name, "input"), name, "input")  # noqa: A001
    target = _tensor(target, name, "target", like=input)
    _require_same_shape(input, target, name)
    if target.dtype.kind != "f":
        target = target.to(input.dtype)
    xr = input._data
    if xr.size and not (float(xr.min()) >= 0 and float(xr.max()) <= 1):
        bad = xr[~((xr >= 0) & (xr <= 1))].ravel()
        raise ValueError(f"{name}: all elements of input should be between 0 and 1 (probabilities; "
                         f"use binary_cross_entropy_with_logits for logits), found {float(bad[0])!r}")
    w = None
    if weight is not None:
        weight = _tensor(weight, name, "weight", like=input)
        try:
            if np.broadcast_shapes(weight.shape, input.shape) != input.shape:
                raise ValueError
        except ValueError:
            raise ValueError(f"{name}: weight of shape {list(weight.shape)} cannot be broadcast to the "
                             f"input's shape {list(input.shape)}") from None
        w = weight.detach()
    return apply(_bce, (input, target, w), {"reduction": reduction})


def _bcel_fwd(x, y, w, pw, reduction):
    sp = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)        # softplus(-x)
    if pw is None:
        loss = (1 - y) * x + sp
    else:
        loss = (1 - y) * x + ((pw - 1) * y + 1) * sp
    if w is not None:
        loss = loss * w
    return _red_fwd(loss, reduction).astype(x.dtype, copy=False)


_bcel = defop("binary_cross_entropy_with_logits", _bcel_fwd, save=(0, 1, 2, 3), broadcast=True)


@_bcel.defvjp
def _(ns, node, g, x, y, w, pw):
    if node.attrs["reduction"] == "mean":
        n = int(np.prod(np.broadcast_shapes(*[_raw(a).shape for a in (x, y, w, pw) if a is not None])))
        g = g * (1.0 / max(n, 1))
    if w is not None:
        g = g * w
    need = node.needs_input_grad
    gx = gy = None
    if need[0]:
        s = _ns_sigmoid(ns, x)
        if pw is None:
            gx = g * (s - y)
        else:
            lw = (pw - 1) * y + 1
            gx = g * ((1 - y) - lw * (1 - s))
    if need[1]:
        gy = -x if pw is None else (pw - 1) * _ns_softplus_neg(ns, x) - x
        gy = g * gy
    return (gx, gy, None, None)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,  # noqa: A002
                                     reduce=None, reduction="mean", pos_weight=None):
    """``binary_cross_entropy(sigmoid(input), target)`` in the stable log-sum-exp form
    ``(1 - y) x + (1 + (pos_weight - 1) y) log(1 + exp(-x))``; ``pos_weight`` (broadcast along
    the last, class dim) weighs the positive examples."""
    name = "binary_cross_entropy_with_logits"
    reduction = _reduction_arg(size_average, reduce, reduction, name)
    input = _float(_tensor(input, name, "input"), name, "input")  # noqa: A001
    target = _tensor(target, name, "target", like=input)
    _require_same_shape(input, target, name)
    if target.dtype.kind != "f":
        target = target.to(input.dtype)
    consts = []
    for arg, val in (("weight", weight), ("pos_weight", pos_weight)):
        if val is None:
            consts.append(None)
            continue
        val = _tensor(val, name, arg, like=input)
        try:
            if np.broadcast_shapes(val.shape, input.shape) != input.shape:
                raise ValueError
        except ValueError:
            raise ValueError(f"{name}: {arg} of shape {list(val.shape)} cannot be broadcast to the "
                             f"input's shape {list(input.shape)}"
                             + (" (pos_weight has one entry per class, the last dim)"
                                if arg == "pos_weight" else "")) from None
        consts.append(val.detach())
    return apply(_bcel, (input, target, consts[0], consts[1]), {"reduction": reduction})


# ------------------------------------------------------------------ KL divergence

def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):  # noqa: A002
    """KL divergence ``target * (log(target) - input)`` with ``input`` log-probabilities (and
    ``target`` log-probabilities too with ``log_target=True``). ``reduction='batchmean'`` divides
    the sum by the batch size (the mathematical KL divergence); ``'mean'`` averages over all
    elements, as PyTorch does."""
    reduction = _reduction_arg(size_average, reduce, reduction, "kl_div", extra=("batchmean",))
    input = _float(_tensor(input, "kl_div", "input"), "kl_div", "input")  # noqa: A001
    target = _tensor(target, "kl_div", "target", like=input)
    _same_shape_or_warn(input, target, "kl_div")
    if log_target:
        loss = _ops.exp(target) * (target - input)
    else:
        # target * log(target) with 0 where target == 0 (xlogy), without NaN gradients
        safe = _ops.where(target == 0, 1.0, target)
        loss = target * _ops.log(safe) - target * input
    if reduction == "batchmean":
        total = _ops.sum(loss)
        return total / loss.shape[0] if loss.ndim else total
    return _reduce(loss, reduction)


# ------------------------------------------------------------------ distances

def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """``sum(x1 * x2, dim) / (max(||x1||, eps) * max(||x2||, eps))`` (broadcasting)."""
    x1 = _tensor(x1, "cosine_similarity", "x1")
    x2 = _tensor(x2, "cosine_similarity", "x2", like=x1)
    try:
        shape = np.broadcast_shapes(x1.shape, x2.shape)
    except ValueError:
        raise ValueError(f"cosine_similarity: x1 of shape {list(x1.shape)} and x2 of shape "
                         f"{list(x2.shape)} cannot be broadcast together") from None
    if shape != x1.shape:
        x1 = _ops.broadcast_to(x1, shape)
    if shape != x2.shape:
        x2 = _ops.broadcast_to(x2, shape)
    n1 = _ops.clamp(_ops.vector_norm(x1, 2, dim, keepdim=True), min=eps)
    n2 = _ops.clamp(_ops.vector_norm(x2, 2, dim, keepdim=True), min=eps)
    return _ops.sum((x1 / n1) * (x2 / n2), dim)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """``||x1 - x2 + eps||_p`` over the last dim (broadcasting), as PyTorch."""
    x1 = _tensor(x1, "pairwise_distance", "x1")
    x2 = _tensor(x2, "pairwise_distance", "x2", like=x1)
    d = x1 - x2 + eps
    dim = -1 if d.ndim else None
    return _ops.vector_norm(d, p, dim, keepdim=keepdim)
