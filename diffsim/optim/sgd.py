"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay."""
from __future__ import annotations

from ..autodiff.backend import get_xp
from .optimizer import Optimizer, _directed_grad, _eval_closure, _buffer, _check_number, _grad_array, _scalar

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Stochastic gradient descent, as ``torch.optim.SGD``.

    For each parameter ``p`` with gradient ``g`` (negated if ``maximize``)::

        g = g + weight_decay * p
        if momentum != 0:
            b = g                                   (first step)
            b = momentum * b + (1 - dampening) * g  (later steps)
            g = g + momentum * b if nesterov else b
        p = p - lr * g

    Args:
        params: iterable of Tensors or of parameter-group dicts.
        lr (float): learning rate (default 1e-3).
        momentum (float): momentum factor (default 0).
        dampening (float): dampening of the momentum (default 0).
        weight_decay (float): L2 penalty coefficient (default 0).
        nesterov (bool): Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        maximize (bool): ascend instead of descend.

    State per parameter: ``momentum_buffer`` (Tensor of the parameter's shape) when
    ``momentum != 0``.
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, maximize=False):
        _check_number("SGD", "learning rate", lr)
        _check_number("SGD", "momentum value", momentum)
        _check_number("SGD", "weight_decay value", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum > 0 and zero dampening, got "
                             f"momentum={momentum}, dampening={dampening}")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """One SGD step for every parameter with a gradient. ``closure`` (optional) re-evaluates
        the loss with gradients enabled; its value is returned."""
        loss = _eval_closure(closure)
        state = self.state
        for group in self.param_groups:
            lr = _scalar(group["lr"])
            momentum = group["momentum"]
            dampening = group["dampening"]
            wd = group["weight_decay"]
            nesterov = group["nesterov"]
            maximize = group["maximize"]
            for p in group["params"]:
                g = _grad_array(p, "SGD")
                if g is None:
                    continue
                d = p._data
                xp = get_xp(d)
                g = _directed_grad(g, d, xp, maximize, wd)
                if momentum != 0:
                    st = state[p]
                    buf = st.get("momentum_buffer")
                    if buf is None:
                        st["momentum_buffer"] = buf = _buffer(g.copy())
                        b = buf._data
                    else:
                        b = buf._data
                        xp.multiply(b, momentum, out=b)
                        if dampening == 0:
                            b += g
                        else:
                            b += xp.multiply(g, 1 - dampening)
                        buf._version[0] += 1
                    if nesterov:
                        t = xp.multiply(b, momentum)
                        t += g
                        g = t
                    else:
                        g = b
                u = xp.multiply(g, -lr)
                d += u
                p._version[0] += 1
        return loss
