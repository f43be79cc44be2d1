"""Adagrad: per-element learning rates from the running sum of squared gradients."""
from __future__ import annotations

from ..autodiff.backend import get_xp
from .optimizer import Optimizer, _directed_grad, _eval_closure, _check_number, _grad_array, _scalar, _zeros_like_param

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    r"""Adagrad (Duchi et al., 2011), as ``torch.optim.Adagrad``.

    For each parameter ``p`` with gradient ``g`` (negated if ``maximize``), at step ``t``::

        g = g + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        s = s + g * g                        (s starts at initial_accumulator_value)
        p = p - clr * g / (sqrt(s) + eps)

    Args:
        params: iterable of Tensors or of parameter-group dicts.
        lr (float): learning rate (default 1e-2).
        lr_decay (float): learning-rate decay (default 0).
        weight_decay (float): L2 penalty (default 0).
        initial_accumulator_value (float): starting value of ``s`` (default 0).
        eps (float): added to the denominator (default 1e-10).
        maximize (bool): ascend instead of descend.

    State per parameter (created with the optimizer, as in PyTorch): ``step`` (int) and
    ``sum`` (Tensor of the parameter's shape).
    """

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10, *, maximize=False):
        _check_number("Adagrad", "learning rate", lr)
        _check_number("Adagrad", "lr_decay value", lr_decay)
        _check_number("Adagrad", "weight_decay value", weight_decay)
        _check_number("Adagrad", "initial_accumulator_value", initial_accumulator_value)
        _check_number("Adagrad", "epsilon value", eps)
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, maximize=maximize)
        super().__init__(params, defaults)

    def _init_group_state(self, group):
        init = group["initial_accumulator_value"]
        for p in group["params"]:
            st = self.state[p]
            if not st:
                st["step"] = 0
                st["sum"] = _zeros_like_param(p, init)

    def step(self, closure=None):
        """One Adagrad step for every parameter with a gradient. ``closure`` (optional)
        re-evaluates the loss with gradients enabled; its value is returned."""
        loss = _eval_closure(closure)
        state = self.state
        for group in self.param_groups:
            lr = _scalar(group["lr"])
            lr_decay = group["lr_decay"]
            wd = group["weight_decay"]
            eps = group["eps"]
            maximize = group["maximize"]
            for p in group["params"]:
                g = _grad_array(p, "Adagrad")
                if g is None:
                    continue
                d = p._data
                xp = get_xp(d)
                st = state[p]
                if "sum" not in st:
                    st["step"] = 0
                    st["sum"] = _zeros_like_param(p, group["initial_accumulator_value"])
                step = st["step"] = st["step"] + 1
                g = _directed_grad(g, d, xp, maximize, wd)
                clr = lr / (1 + (step - 1) * lr_decay)
                s = st["sum"]._data
                tmp = xp.multiply(g, g)                  # s += g * g
                s += tmp
                xp.sqrt(s, out=tmp)                      # std = sqrt(s) + eps
                tmp += eps
                u = xp.multiply(g, -clr)                 # p += (-clr * g) / std
                u /= tmp
                d += u
                p._version[0] += 1
        return loss
