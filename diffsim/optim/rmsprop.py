"""RMSprop, plain or centered, with optional momentum."""
from __future__ import annotations

from ..autodiff.backend import get_xp
from .adam import _lerp_
from .optimizer import Optimizer, _directed_grad, _eval_closure, _check_number, _grad_array, _scalar, _zeros_like_param

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop (Hinton), as ``torch.optim.RMSprop``.

    For each parameter ``p`` with gradient ``g`` (negated if ``maximize``)::

        g = g + weight_decay * p
        s = alpha * s + (1 - alpha) * g * g
        if centered:  a = alpha * a + (1 - alpha) * g;  avg = sqrt(s - a * a) + eps
        else:         avg = sqrt(s) + eps
        if momentum > 0:  b = momentum * b + g / avg;  p = p - lr * b
        else:             p = p - lr * g / avg

    Args:
        params: iterable of Tensors or of parameter-group dicts.
        lr (float): learning rate (default 1e-2).
        alpha (float): smoothing constant (default 0.99).
        eps (float): added to the denominator (default 1e-8).
        weight_decay (float): L2 penalty (default 0).
        momentum (float): momentum factor (default 0).
        centered (bool): normalize by the estimated variance instead of the second moment.
        maximize (bool): ascend instead of descend.

    State per parameter: ``step`` (int), ``square_avg``; ``momentum_buffer`` when
    ``momentum > 0``; ``grad_avg`` when ``centered`` (Tensors of the parameter's shape).
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, *, maximize=False):
        _check_number("RMSprop", "learning rate", lr)
        _check_number("RMSprop", "epsilon value", eps)
        _check_number("RMSprop", "momentum value", momentum)
        _check_number("RMSprop", "weight_decay value", weight_decay)
        _check_number("RMSprop", "alpha value", alpha)
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """One RMSprop step for every parameter with a gradient. ``closure`` (optional)
        re-evaluates the loss with gradients enabled; its value is returned."""
        loss = _eval_closure(closure)
        state = self.state
        for group in self.param_groups:
            lr = _scalar(group["lr"])
            alpha = group["alpha"]
            eps = group["eps"]
            wd = group["weight_decay"]
            momentum = group["momentum"]
            centered = group["centered"]
            maximize = group["maximize"]
            for p in group["params"]:
                g = _grad_array(p, "RMSprop")
                if g is None:
                    continue
                d = p._data
                xp = get_xp(d)
                st = state[p]
                if len(st) == 0:
                    st["step"] = 0
                    st["square_avg"] = _zeros_like_param(p)
                    if momentum > 0:
                        st["momentum_buffer"] = _zeros_like_param(p)
                    if centered:
                        st["grad_avg"] = _zeros_like_param(p)
                st["step"] += 1
                g = _directed_grad(g, d, xp, maximize, wd)
                s = st["square_avg"]._data
                tmp = xp.multiply(g, 1 - alpha)              # s = alpha * s + (1 - alpha) * g * g
                tmp *= g
                s *= alpha
                s += tmp
                if centered:
                    if "grad_avg" not in st:
                        st["grad_avg"] = _zeros_like_param(p)
                    a = st["grad_avg"]._data
                    _lerp_(xp, a, g, 1 - alpha, tmp)         # a = lerp(a, g, 1 - alpha)
                    xp.multiply(a, a, out=tmp)               # avg = sqrt(s - a * a)
                    xp.subtract(s, tmp, out=tmp)
                    xp.sqrt(tmp, out=tmp)
                else:
                    xp.sqrt(s, out=tmp)
                tmp += eps
                if momentum > 0:
                    if "momentum_buffer" not in st:
                        st["momentum_buffer"] = _zeros_like_param(p)
                    b = st["momentum_buffer"]._data
                    b *= momentum                            # b = momentum * b + g / avg
                    xp.divide(g, tmp, out=tmp)
                    b += tmp
                    xp.multiply(b, -lr, out=tmp)             # p += -lr * b
                    d += tmp
                else:
                    u = xp.multiply(g, -lr)                  # p += (-lr * g) / avg
                    u /= tmp
                    d += u
                p._version[0] += 1
        return loss
