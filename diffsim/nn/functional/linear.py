"""linear, bilinear, embedding, dropout, one_hot, pad, and scaled_dot_product_attention."""
from __future__ import annotations

import math

import numpy as np

from ...autodiff import ops as _ops
from ...autodiff import random as _random
from ...autodiff.backend import get_xp, move
from ...autodiff.function import apply, defop
from ...autodiff.grad_mode import no_grad
from ...autodiff.ops._util import check_tensor
from ...autodiff.tensor import Tensor

__all__ = ["linear", "bilinear", "embedding", "dropout", "dropout1d", "dropout2d", "dropout3d",
           "alpha_dropout", "one_hot", "pad", "scaled_dot_product_attention"]


# ------------------------------------------------------------------ linear

def _linear_fwd(x, w, b=None):
    y = x @ w.T
    if b is not None:
        y += b
    return y


def _linear_save(edges, args):
    # x is needed only for dW, W only for dx
    return (0 if edges[1] is not None else -1, 1 if edges[0] is not None else -1)


_linear = defop("linear", _linear_fwd, save=_linear_save)


@_linear.defvjp
def _(ns, n, g, x, w):
    e = n.edges
    gx = gw = gb = None
    if e[0] is not None:
        gx = ns.matmul(g, w)
    if e[1] is not None or (len(e) > 2 and e[2] is not None):
        g2 = g if g.ndim == 2 else ns.reshape(g, (-1, g.shape[-1]))
        if e[1] is not None:
            x2 = x if x.ndim == 2 else ns.reshape(x, (-1, x.shape[-1]))
            gw = ns.matmul(ns.mT(g2), x2)
        if len(e) > 2 and e[2] is not None:
            gb = ns.sum(g2, 0)
    return (gx, gw) if len(e) == 2 else (gx, gw, gb)


def linear(input, weight, bias=None):
    """``input @ weight.T + bias``.

    Shapes: input ``[*, in_features]``, weight ``[out_features, in_features]``, bias
    ``[out_features]`` or None; output ``[*, out_features]``."""
    check_tensor(input, "linear")
    check_tensor(weight, "linear", "weight")
    if weight.ndim != 2 or input.ndim < 1 or input.shape[-1] != weight.shape[1]:
        raise RuntimeError(f"linear: input shape {list(input.shape)} and weight shape "
                           f"{list(weight.shape)} don't match (expected input [*, {weight.shape[-1]}] "
                           "and weight [out_features, in_features])")
    if bias is not None and tuple(bias.shape) not in ((weight.shape[0],), ()):
        raise RuntimeError(f"linear: bias shape {list(bias.shape)} doesn't match out_features "
                           f"{weight.shape[0]}")
    dt = input._data.dtype
    if weight._data.dtype != dt or (bias is not None and bias._data.dtype != dt):
        raise RuntimeError(f"linear: expected input, weight and bias of the same dtype, got "
                           f"{dt}, {weight.dtype}" + (f", {bias.dtype}" if bias is not None else "")
                           + "; convert the module with .to(dtype) or the input with .to(dtype)")
    if input.ndim == 1 or bias is not None and bias.ndim == 0:
        out = input.unsqueeze(0) @ weight.mT
        out = out[0] if input.ndim == 1 else out
        return out if bias is None else out + bias
    return apply(_linear, (input, weight) if bias is None else (input, weight, bias))


def bilinear(input1, input2, weight, bias=None):
    """``y_k = x1^T A_k x2 + b_k``.

    Shapes: input1 ``[*, in1]``, input2 ``[*, in2]`` (same leading dims), weight
    ``[out, in1, in2]``, bias ``[out]``; output ``[*, out]``."""
    if weight.ndim != 3 or input1.shape[-1] != weight.shape[1] or input2.shape[-1] != weight.shape[2]:
        raise RuntimeError(f"bilinear: input1 {list(input1.shape)}, input2 {list(input2.shape)} and "
                           f"weight {list(weight.shape)} don't match (weight is [out, in1, in2])")
    if tuple(input1.shape[:-1]) != tuple(input2.shape[:-1]):
        raise RuntimeError(f"bilinear: input1 and input2 must have the same leading dimensions, got "
                           f"{list(input1.shape)} and {list(input2.shape)}")
    t = _ops.einsum("...i,oij->...oj", input1, weight)
    out = (t * input2.unsqueeze(-2)).sum(-1)
    return out if bias is None else out + bias


# ------------------------------------------------------------------ embedding

_embedding = defop("embedding", lambda w, idx, padding_idx, num: w[idx], save=(1,))


@_embedding.defvjp
def _(ns, n, g, idx):
    num, dim = n.attrs["num"], g.shape[-1]
    gf = ns.reshape(g, (-1, dim))
    ids = ns.reshape(idx, (-1,))
    p = n.attrs["padding_idx"]
    if p is not None:
        gf = gf * ns.unsqueeze(ns.astype(ids != p, gf.dtype), -1)
    return ns.segment_sum(gf, ids, num), None


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False):
    """Rows of ``weight`` looked up by the integer indices ``input``.

    Shapes: input ``[*]`` (integers), weight ``[num_embeddings, embedding_dim]``; output
    ``[*, embedding_dim]``. The row ``padding_idx`` gets no gradient. With ``max_norm``, the
    looked-up rows whose ``norm_type``-norm exceeds it are renormalized in place in ``weight``
    (as PyTorch does)."""
    check_tensor(input, "embedding")
    if input._data.dtype.kind not in "iu":
        raise TypeError(f"embedding: input must hold integer indices, got dtype {input.dtype}")
    if scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: scale_grad_by_freq and sparse are not supported")
    num = weight.shape[0]
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError(f"embedding: padding_idx {padding_idx} must be within the number of "
                             f"embeddings {num}")
        padding_idx = padding_idx % num
    idx = input._data
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= num:
            raise IndexError(f"embedding: index out of range: indices must be in [0, {num}), got "
                             f"min {lo}, max {hi}")
    if max_norm is not None:
        with no_grad():
            xp = get_xp(idx)
            rows = xp.unique(idx.reshape(-1))
            w = weight._data
            norms = xp.linalg.norm(w[rows], ord=norm_type, axis=1) if norm_type != 2 else \
                xp.sqrt((w[rows] ** 2).sum(1))
            scale = xp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(w.dtype)
            w[rows] *= scale[:, None]
            weight._version[0] += 1
    return apply(_embedding, (weight, input), {"padding_idx": padding_idx, "num": num})


# ------------------------------------------------------------------ dropout

def _check_p(p, name):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: dropout probability has to be between 0 and 1, but got {p}")


def _dropout_mask(input, p, shape):
    u = _random.default_generator._for(input.device).random(shape)
    keep = u >= p
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    # asarray: for a 0-d input numpy's arithmetic gives a scalar, not an array
    return Tensor._make(get_xp(u).asarray((keep * scale).astype(input._data.dtype)), False, None, 0)


def _apply_dropout(input, p, training, inplace, shape, name):
    check_tensor(input, name)
    _check_p(p, name)
    if not training or p == 0.0:
        return input
    mask = _dropout_mask(input, p, shape)
    if inplace:
        from .activation import _finish, _src
        return _finish(input, _src(input, True) * mask, True, name + "_")
    return input * mask


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability ``p`` and scale the kept ones by ``1/(1-p)`` (in
    training; the identity otherwise). Draws from ``ds``'s default generator. Shape: any."""
    return _apply_dropout(input, p, training, inplace, input.shape, "dropout")


def _channel_shape(input, spatial, name):
    if input.ndim not in (spatial + 1, spatial + 2):
        raise RuntimeError(f"{name}: expected a {spatial + 1}-d (unbatched) or {spatial + 2}-d "
                           f"(batched) input, got shape {list(input.shape)}")
    lead = input.ndim - spatial
    return tuple(input.shape[:lead]) + (1,) * spatial


def dropout1d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels: input ``[N, C, L]`` or ``[C, L]``."""
    return _apply_dropout(input, p, training, inplace, _channel_shape(input, 1, "dropout1d"), "dropout1d")


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels: input ``[N, C, H, W]`` or ``[C, H, W]``."""
    return _apply_dropout(input, p, training, inplace, _channel_shape(input, 2, "dropout2d"), "dropout2d")


def dropout3d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels: input ``[N, C, D, H, W]`` or ``[C, D, H, W]``."""
    return _apply_dropout(input, p, training, inplace, _channel_shape(input, 3, "dropout3d"), "dropout3d")


def alpha_dropout(input, p=0.5, training=False, inplace=False):
    """Dropout that keeps SELU's self-normalization (Klambauer et al. 2017). Shape: any."""
    _check_p(p, "alpha_dropout")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    alpha_p = -1.7580993408473766
    u = _random.default_generator._for(input.device).random(input.shape)
    keep = get_xp(u).asarray((u >= p).astype(input._data.dtype))      # an array also when 0-d
    a = ((1 - p) * (1 + p * alpha_p ** 2)) ** -0.5
    b = -a * alpha_p * p
    kt = Tensor._make(keep, False, None, 0)
    out = (input * kt + alpha_p * (1 - kt)) * a + b
    if inplace:
        from .activation import _finish
        return _finish(input, out, True, "alpha_dropout_")
    return out


# ------------------------------------------------------------------ one_hot, pad

def one_hot(tensor, num_classes=-1):
    """Integer class indices ``[*]`` -> int64 one-hot ``[*, num_classes]`` (``num_classes=-1``:
    one more than the largest index)."""
    check_tensor(tensor, "one_hot")
    idx = tensor._data
    if idx.dtype.kind not in "iu":
        raise RuntimeError(f"one_hot: expected an integer tensor of class indices, got {tensor.dtype}")
    xp = get_xp(idx)
    if num_classes == -1:
        num_classes = int(idx.max()) + 1 if idx.size else 0
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= num_classes):
        raise RuntimeError(f"one_hot: class values must be in [0, {num_classes}), got min "
                           f"{int(idx.min())}, max {int(idx.max())}")
    out = (idx[..., None] == xp.arange(num_classes)).astype(np.int64)
    return Tensor._make(out, False, None, 0)


_pad_const = defop("pad_constant",
                   lambda x, widths, value: get_xp(x).pad(x, widths, constant_values=value))


@_pad_const.defvjp
def _(ns, n, g):
    sl = tuple(slice(b, g.shape[i] - a) for i, (b, a) in enumerate(n.attrs["widths"]))
    return (ns.getitem(g, sl),)


def _source_index(n, before, after, mode):
    i = np.arange(-before, n + after)
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    if mode == "circular":
        return i % n
    # reflect (edge not repeated)
    period = 2 * (n - 1)
    j = np.abs(i) % period if period else np.zeros_like(i)
    return np.where(j >= n, period - j, j)


def pad(input, pad, mode="constant", value=None):
    """Pad ``input`` as ``torch.nn.functional.pad``: ``pad`` = (last_dim_left, last_dim_right,
    second_last_left, ...); negative amounts crop. ``mode``: 'constant' (any dims, ``value``,
    default 0), 'reflect', 'replicate', 'circular' (the last 1-3 dims). Shape: each padded dim
    grows by its two amounts."""
    check_tensor(input, "pad")
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: padding length must be even and at most 2 * ndim ({2 * input.ndim}), "
                         f"got {len(pad)} for input shape {list(input.shape)}")
    nd = len(pad) // 2
    widths = [(0, 0)] * input.ndim
    for k in range(nd):
        widths[input.ndim - 1 - k] = (pad[2 * k], pad[2 * k + 1])
    x = input
    if mode == "constant":
        if any(b < 0 or a < 0 for b, a in widths):
            sl = tuple(slice(max(-b, 0), x.shape[i] - max(-a, 0)) for i, (b, a) in enumerate(widths))
            x = x[sl]
            widths = [(max(b, 0), max(a, 0)) for b, a in widths]
        if not any(b or a for b, a in widths):
            return x if x is not input else _ops.clone(x)
        return apply(_pad_const, (x,), {"widths": tuple(widths), "value": 0 if value is None else value})
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"pad: mode {mode!r} is not supported (use 'constant', 'reflect', "
                                  "'replicate' or 'circular')")
    if value not in (None, 0):
        raise ValueError(f"pad: padding mode {mode!r} doesn't take in a value argument")
    for d, (b, a) in enumerate(widths):
        if b == 0 and a == 0:
            continue
        n = x.shape[d]
        if mode == "reflect" and (b >= n or a >= n):
            raise RuntimeError(f"pad: padding size should be less than the corresponding input "
                               f"dimension, but got padding ({b}, {a}) at dimension {d} of input "
                               f"{list(input.shape)}")
        if mode == "circular" and (b > n or a > n):
            raise RuntimeError(f"pad: circular padding ({b}, {a}) can't be larger than dimension "
                               f"{d} of size {n}")
        if n == 0:
            raise RuntimeError(f"pad: can't {mode}-pad an empty dimension {d}")
        idx = _source_index(n, b, a, mode)
        x = _ops.index_select(x, d, Tensor._make(move(idx, x.device), False, None, 0))
    return x


# ------------------------------------------------------------------ attention

def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, enable_gqa=False):
    """``softmax(Q K^T * scale + mask) V`` with optional dropout on the attention weights.

    Shapes: query ``[*, L, E]``, key ``[*, S, E]``, value ``[*, S, Ev]``; output ``[*, L, Ev]``.
    ``attn_mask`` broadcasts to ``[*, L, S]``: bool (True = may attend) or float (added to the
    scores). ``is_causal`` masks out keys after each query (``attn_mask`` must be None).
    ``scale`` defaults to ``1/sqrt(E)``. Dropout (``dropout_p``) is always applied when > 0,
    as in PyTorch."""
    L, S = query.shape[-2], key.shape[-2]
    E = query.shape[-1]
    if key.shape[-1] != E:
        raise RuntimeError(f"scaled_dot_product_attention: query {list(query.shape)} and key "
                           f"{list(key.shape)} must have the same embedding size")
    if enable_gqa and query.ndim >= 3 and query.shape[-3] != key.shape[-3]:
        rep = query.shape[-3] // key.shape[-3]
        key = _ops.repeat_interleave(key, rep, dim=-3)
        value = _ops.repeat_interleave(value, rep, dim=-3)
    s = 1.0 / math.sqrt(E) if scale is None else scale
    scores = (query @ key.mT) * s
    if is_causal:
        if attn_mask is not None:
            raise RuntimeError("scaled_dot_product_attention: explicit attn_mask should not be set "
                               "when is_causal=True")
        xp = get_xp(query._data)
        attn_mask = Tensor._make(xp.tril(xp.ones((L, S), dtype=bool)), False, None, 0)
    if attn_mask is not None:
        if attn_mask.dtype == np.bool_:
            scores = _ops.masked_fill(scores, ~attn_mask, -math.inf)
        else:
            scores = scores + attn_mask
    w = _ops.softmax(scores, -1)
    if dropout_p > 0.0:
        w = dropout(w, dropout_p, True)
    return w @ value
