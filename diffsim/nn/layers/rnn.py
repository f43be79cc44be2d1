"""RNNCell, GRUCell, LSTMCell, and the sequence modules RNN, GRU, LSTM built on them.

Parameter names, shapes, gate order and initialization are PyTorch's, so state_dicts map
1:1: ``weight_ih`` ``[G*hidden, input]``, ``weight_hh`` ``[G*hidden, hidden]``, ``bias_ih``,
``bias_hh`` ``[G*hidden]`` with G = 1 (RNN), 3 (GRU: r, z, n), 4 (LSTM: i, f, g, o), all
U(-1/sqrt(hidden), 1/sqrt(hidden)).
"""
from __future__ import annotations

import math

from ...autodiff import creation as _creation
from ...autodiff import ops as _ops
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter

__all__ = ["RNNCell", "GRUCell", "LSTMCell", "RNN", "GRU", "LSTM"]



def _uniform_by_hidden_size(module):
    """PyTorch's RNN init: every parameter U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
    stdv = 1.0 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0
    for w in module.parameters():
        init.uniform_(w, -stdv, stdv)

class _CellBase(Module):
    _gates = 1

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        G = self._gates * hidden_size
        self.weight_ih = Parameter(_creation.empty((G, input_size), device=device, dtype=dtype))
        self.weight_hh = Parameter(_creation.empty((G, hidden_size), device=device, dtype=dtype))
        if bias:
            self.bias_ih = Parameter(_creation.empty((G,), device=device, dtype=dtype))
            self.bias_hh = Parameter(_creation.empty((G,), device=device, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        _uniform_by_hidden_size(self)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        nl = getattr(self, "nonlinearity", "tanh")
        if nl != "tanh":
            s += f", nonlinearity={nl}"
        return s

    def _prep(self, input, hx):
        if input.ndim not in (1, 2):
            raise ValueError(f"{type(self).__name__}: expected input to be 1D or 2D, got "
                             f"{input.ndim}D (shape {list(input.shape)})")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"{type(self).__name__}: input has {input.shape[-1]} features, "
                               f"expected input_size={self.input_size}")
        batched = input.ndim == 2
        if not batched:
            input = input.unsqueeze(0)
        return input, batched

    def _zeros(self, input):
        return _creation.zeros((input.shape[0], self.hidden_size), dtype=input.dtype, device=input.device)

    def _gates_of(self, input, hx):
        gi = F.linear(input, self.weight_ih, self.bias_ih)
        gh = F.linear(hx, self.weight_hh, self.bias_hh)
        return gi, gh


class RNNCell(_CellBase):
    """``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)`` with act = tanh or relu.

    Shapes: input ``[N, input_size]`` or ``[input_size]``; hx like it with ``hidden_size``
    (zeros if None); output ``[N, hidden_size]`` (or ``[hidden_size]``)."""
    _gates = 1

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: unknown nonlinearity {nonlinearity!r} (use 'tanh' or 'relu')")
        self.__dict__["nonlinearity"] = nonlinearity
        super().__init__(input_size, hidden_size, bias, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        input, batched = self._prep(input, hx)
        hx = self._zeros(input) if hx is None else (hx if batched else hx.unsqueeze(0))
        gi, gh = self._gates_of(input, hx)
        pre = gi + gh
        h = _ops.tanh(pre) if self.nonlinearity == "tanh" else _ops.relu(pre)
        return h if batched else h[0]


class GRUCell(_CellBase):
    """Gated recurrent unit, PyTorch's gate order (r, z, n)::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    Shapes as ``RNNCell``."""
    _gates = 3

    def forward(self, input, hx=None):
        input, batched = self._prep(input, hx)
        hx = self._zeros(input) if hx is None else (hx if batched else hx.unsqueeze(0))
        gi, gh = self._gates_of(input, hx)
        H = self.hidden_size
        rz = _ops.sigmoid(gi[:, :2 * H] + gh[:, :2 * H])
        r, z = rz[:, :H], rz[:, H:]
        n = _ops.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        h = n + z * (hx - n)
        return h if batched else h[0]


class LSTMCell(_CellBase):
    """Long short-term memory cell, PyTorch's gate order (i, f, g, o)::

        i, f, o = sigmoid(...), g = tanh(...)   from x W_ih^T + b_ih + h W_hh^T + b_hh
        c' = f * c + i * g,   h' = o * tanh(c')

    Shapes: input ``[N, input_size]`` or ``[input_size]``; hx = (h, c) each ``[N, hidden]``
    (zeros if None); returns ``(h', c')``."""
    _gates = 4

    def forward(self, input, hx=None):
        input, batched = self._prep(input, hx)
        if hx is None:
            h = c = self._zeros(input)
        else:
            h, c = hx
            if not batched:
                h, c = h.unsqueeze(0), c.unsqueeze(0)
        gi, gh = self._gates_of(input, h)
        gates = gi + gh
        H = self.hidden_size
        ifg = _ops.sigmoid(gates[:, :2 * H])
        i, f = ifg[:, :H], ifg[:, H:]
        g = _ops.tanh(gates[:, 2 * H:3 * H])
        o = _ops.sigmoid(gates[:, 3 * H:])
        c2 = f * c + i * g
        h2 = o * _ops.tanh(c2)
        return (h2, c2) if batched else (h2[0], c2[0])


class _RNNBase(Module):
    _cell = None

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, nonlinearity="tanh", device=None, dtype=None):
        super().__init__()
        if bidirectional:
            raise NotImplementedError(f"{type(self).__name__}: bidirectional is not supported")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional = False
        self.nonlinearity = nonlinearity
        G = {"RNN": 1, "GRU": 3, "LSTM": 4}[self._kind]
        for k in range(num_layers):
            ins = input_size if k == 0 else hidden_size
            setattr(self, f"weight_ih_l{k}", Parameter(_creation.empty((G * hidden_size, ins), device=device, dtype=dtype)))
            setattr(self, f"weight_hh_l{k}", Parameter(_creation.empty((G * hidden_size, hidden_size), device=device, dtype=dtype)))
            if bias:
                setattr(self, f"bias_ih_l{k}", Parameter(_creation.empty((G * hidden_size,), device=device, dtype=dtype)))
                setattr(self, f"bias_hh_l{k}", Parameter(_creation.empty((G * hidden_size,), device=device, dtype=dtype)))
        self.reset_parameters()

    def reset_parameters(self):
        _uniform_by_hidden_size(self)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        return s

    def _layer_cell(self, k):
        cell = _CellBase.__new__(self._cell)
        Module.__init__(cell)
        cell.input_size = self.input_size if k == 0 else self.hidden_size
        cell.hidden_size = self.hidden_size
        cell.__dict__["nonlinearity"] = self.nonlinearity
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            cell.__dict__["_parameters"][n] = getattr(self, f"{n}_l{k}", None)
        return cell

    def forward(self, input, hx=None):
        batched = input.ndim == 3
        x = input if batched else input.unsqueeze(1)
        if self.batch_first and batched:
            x = x.transpose(0, 1)                      # -> [T, N, F]
        T, N = x.shape[0], x.shape[1]
        lstm = self._kind == "LSTM"
        if hx is None:
            z = _creation.zeros((self.num_layers, N, self.hidden_size), dtype=x.dtype, device=x.device)
            hx = (z, z) if lstm else z
        elif not batched:
            hx = tuple(h.unsqueeze(1) for h in hx) if lstm else hx.unsqueeze(1)
        h_n, c_n = [], []
        for k in range(self.num_layers):
            cell = self._layer_cell(k)
            state = (hx[0][k], hx[1][k]) if lstm else hx[k]
            outs = []
            for t in range(T):
                state = cell(x[t], state)
                outs.append(state[0] if lstm else state)
            x = _ops.stack(outs, 0)
            if self.dropout and self.training and k < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
            if lstm:
                h_n.append(state[0])
                c_n.append(state[1])
            else:
                h_n.append(state)
        out = x
        if self.batch_first and batched:
            out = out.transpose(0, 1)
        hn = _ops.stack(h_n, 0)
        if not batched:
            out, hn = out[:, 0], hn[:, 0]
        if lstm:
            cn = _ops.stack(c_n, 0)
            return out, (hn, cn if batched else cn[:, 0])
        return out, hn


class RNN(_RNNBase):
    """Elman RNN over a sequence (``num_layers`` stacked ``RNNCell``s; not bidirectional).

    Shapes: input ``[T, N, input_size]`` (``[N, T, input_size]`` with ``batch_first``, or
    ``[T, input_size]`` unbatched); h_0 ``[num_layers, N, hidden]``; returns
    ``(output [T, N, hidden], h_n [num_layers, N, hidden])``. Parameters
    ``weight_ih_l{k}`` ... as PyTorch."""
    _kind, _cell = "RNN", RNNCell

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         nonlinearity, device, dtype)


class GRU(_RNNBase):
    """Multi-layer GRU over a sequence (see ``RNN`` for shapes; gate order r, z, n)."""
    _kind, _cell = "GRU", GRUCell


class LSTM(_RNNBase):
    """Multi-layer LSTM over a sequence (see ``RNN`` for shapes; gate order i, f, g, o);
    ``hx`` and the returned state are ``(h, c)``."""
    _kind, _cell = "LSTM", LSTMCell
