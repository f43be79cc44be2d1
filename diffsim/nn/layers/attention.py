"""MultiheadAttention (PyTorch's parameter layout, so state_dicts map 1:1)."""
from __future__ import annotations

import math

import numpy as np

from ...autodiff import creation as _creation
from ...autodiff import ops as _ops
from ...autodiff.backend import get_xp
from ...autodiff.tensor import Tensor
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter
from .linear import Linear

__all__ = ["MultiheadAttention"]


class NonDynamicallyQuantizableLinear(Linear):
    """A Linear (the name PyTorch gives ``MultiheadAttention.out_proj``, kept for equal reprs)."""


def _float_mask(mask, dtype, name):
    """bool mask (True = masked out) -> additive float mask with -inf; float masks pass."""
    if mask is None:
        return None
    if mask.dtype == np.bool_:
        xp = get_xp(mask._data)
        out = xp.where(mask._data, -np.inf, 0.0)
        return Tensor._make(out.astype(dtype), False, None, 0)
    if mask.dtype.kind != "f":
        raise TypeError(f"MultiheadAttention: only bool and floating types of {name} are supported, "
                        f"got {mask.dtype}")
    return mask.to(dtype) if mask.dtype != dtype else mask


class MultiheadAttention(Module):
    """Multi-head attention (Vaswani et al. 2017) as ``torch.nn.MultiheadAttention``.

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (output, weights)``.

    Shapes (``batch_first=False``): query ``[L, N, E]``, key ``[S, N, kdim]``, value
    ``[S, N, vdim]`` (``[N, L, E]`` ... with ``batch_first=True``; ``[L, E]`` ... unbatched);
    output ``[L, N, E]``; weights ``[N, L, S]`` averaged over heads (``[N, heads, L, S]``
    with ``average_attn_weights=False``) or None unless ``need_weights``.
    ``key_padding_mask`` ``[N, S]``: True (or -inf) marks keys to ignore. ``attn_mask``
    ``[L, S]`` or ``[N*heads, L, S]``: True marks pairs NOT allowed to attend; a float mask is
    added to the scores. Parameters: ``in_proj_weight`` ``[3E, E]`` (xavier-uniform) or
    ``q/k/v_proj_weight`` when kdim/vdim differ from E, ``in_proj_bias`` ``[3E]`` (zeros),
    ``out_proj`` (Linear, bias zeros), ``bias_k``/``bias_v`` ``[1, 1, E]`` with
    ``add_bias_kv``. Dropout acts on the attention weights in training."""

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
                 add_zero_attn=False, kdim=None, vdim=None, batch_first=False, device=None, dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got embed_dim={embed_dim} "
                             f"and num_heads={num_heads} instead")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads, self.dropout, self.batch_first = num_heads, dropout, batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise AssertionError("embed_dim must be divisible by num_heads")
        kw = dict(device=device, dtype=dtype)
        if not self._qkv_same_embed_dim:
            self.q_proj_weight = Parameter(_creation.empty((embed_dim, embed_dim), **kw))
            self.k_proj_weight = Parameter(_creation.empty((embed_dim, self.kdim), **kw))
            self.v_proj_weight = Parameter(_creation.empty((embed_dim, self.vdim), **kw))
            self.register_parameter("in_proj_weight", None)
        else:
            self.in_proj_weight = Parameter(_creation.empty((3 * embed_dim, embed_dim), **kw))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(_creation.empty((3 * embed_dim,), **kw))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, **kw)
        if add_bias_kv:
            self.bias_k = Parameter(_creation.empty((1, 1, embed_dim), **kw))
            self.bias_v = Parameter(_creation.empty((1, 1, embed_dim), **kw))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self):
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
        if self.bias_v is not None:
            init.xavier_normal_(self.bias_v)

    def _project(self, query, key, value):
        E = self.embed_dim
        b = self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:E], b[E:2 * E], b[2 * E:])
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            if key is query and value is query:
                q, k, v = _ops.chunk(F.linear(query, w, b), 3, -1)
                return q, k, v
            wq, wk, wv = w[:E], w[E:2 * E], w[2 * E:]
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        batched = query.ndim == 3
        if not batched:
            if query.ndim != 2:
                raise RuntimeError(f"MultiheadAttention: query should be unbatched 2D or batched 3D, "
                                   f"got {query.ndim}D (shape {list(query.shape)})")
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            same_kv = key is value
            same_q = query is key
            query = query.transpose(0, 1)
            key = query if same_q else key.transpose(0, 1)
            value = key if same_kv else value.transpose(0, 1)
        L, N, E = query.shape
        if E != self.embed_dim:
            raise RuntimeError(f"MultiheadAttention: was expecting embedding dimension of "
                               f"{self.embed_dim}, but got {E}")
        S = key.shape[0]
        if key.shape[:2] != value.shape[:2]:
            raise RuntimeError(f"MultiheadAttention: key shape {list(key.shape)} does not match value "
                               f"shape {list(value.shape)}")
        H, hd = self.num_heads, self.head_dim
        dt = query.dtype
        if is_causal and attn_mask is None:
            attn_mask = Tensor._make(np.triu(np.ones((L, S), dtype=bool), 1), False, None, 0)
            if query.device.type != "cpu":
                attn_mask = attn_mask.to(query.device)
        attn_mask = _float_mask(attn_mask, dt, "attn_mask")
        key_padding_mask = _float_mask(key_padding_mask, dt, "key_padding_mask")
        if attn_mask is not None:
            if attn_mask.ndim == 2:
                if tuple(attn_mask.shape) != (L, S):
                    raise RuntimeError(f"MultiheadAttention: the shape of the 2D attn_mask is "
                                       f"{list(attn_mask.shape)}, but should be {[L, S]}")
                attn_mask = attn_mask.unsqueeze(0)
            elif tuple(attn_mask.shape) != (N * H, L, S):
                raise RuntimeError(f"MultiheadAttention: the shape of the 3D attn_mask is "
                                   f"{list(attn_mask.shape)}, but should be {[N * H, L, S]}")

        q, k, v = self._project(query, key, value)            # [L, N, E], [S, N, E]
        if self.bias_k is not None:
            k = _ops.cat([k, self.bias_k.expand(1, N, E)], 0)
            v = _ops.cat([v, self.bias_v.expand(1, N, E)], 0)
            if attn_mask is not None:
                attn_mask = F.pad(attn_mask, (0, 1))
            if key_padding_mask is not None:
                key_padding_mask = F.pad(key_padding_mask, (0, 1))
        q = q.reshape(L, N * H, hd).transpose(0, 1)           # [N*H, L, hd]
        k = k.reshape(k.shape[0], N * H, hd).transpose(0, 1)  # [N*H, S, hd]
        v = v.reshape(v.shape[0], N * H, hd).transpose(0, 1)
        if self.add_zero_attn:
            z = _creation.zeros((N * H, 1, hd), dtype=dt, device=q.device)
            k = _ops.cat([k, z], 1)
            v = _ops.cat([v, z], 1)
            if attn_mask is not None:
                attn_mask = F.pad(attn_mask, (0, 1))
            if key_padding_mask is not None:
                key_padding_mask = F.pad(key_padding_mask, (0, 1))
        S2 = k.shape[1]
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (N, S2):
                raise RuntimeError(f"MultiheadAttention: expecting key_padding_mask shape of "
                                   f"{[N, S]}, but got {list(key_padding_mask.shape)}")
            kpm = key_padding_mask.reshape(N, 1, 1, S2).expand(N, H, 1, S2).reshape(N * H, 1, S2)
            attn_mask = kpm if attn_mask is None else attn_mask + kpm

        scores = (q * (1.0 / math.sqrt(hd))) @ k.mT         # [N*H, L, S]
        if attn_mask is not None:
            scores = scores + attn_mask
        w = _ops.softmax(scores, -1)
        if self.training and self.dropout > 0.0:
            w = F.dropout(w, self.dropout, True)
        out = w @ v                                           # [N*H, L, hd]
        out = out.transpose(0, 1).reshape(L * N, E)
        out = self.out_proj(out).reshape(L, N, E)
        if self.batch_first and batched:
            out = out.transpose(0, 1)
        weights = None
        if need_weights:
            weights = w.reshape(N, H, L, S2)
            if average_attn_weights:
                weights = weights.mean(1)
            if not batched:
                weights = weights[0]
        if not batched:
            out = out[:, 0]
        return out, weights
