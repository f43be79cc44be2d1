"""Adam and AdamW (decoupled weight decay), with AMSGrad."""
from __future__ import annotations

from ..autodiff.backend import get_xp
from .optimizer import Optimizer, _directed_grad, _eval_closure, _check_number, _grad_array, _scalar, _zeros_like_param

__all__ = ["Adam", "AdamW"]


def _lerp_(xp, a, b, w, tmp):
    """``a <- a + w * (b - a)`` with PyTorch's formula (its rounding), using ``tmp`` as scratch."""
    xp.subtract(b, a, out=tmp)
    if abs(w) < 0.5:
        tmp *= w
        a += tmp
    else:
        tmp *= 1 - w
        xp.subtract(b, tmp, out=a)


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2014), as ``torch.optim.Adam``.

    For each parameter ``p`` with gradient ``g`` (negated if ``maximize``), at step ``t``::

        g = g + weight_decay * p             (L2; or p *= 1 - lr * weight_decay if decoupled)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                (amsgrad; v_max replaces v below)
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Args:
        params: iterable of Tensors or of parameter-group dicts.
        lr (float): learning rate (default 1e-3).
        betas (tuple[float, float]): decay rates of the first and second moments (0.9, 0.999).
        eps (float): added to the denominator (default 1e-8).
        weight_decay (float): L2 penalty (default 0).
        amsgrad (bool): use the AMSGrad variant (default False).
        maximize (bool): ascend instead of descend.
        decoupled_weight_decay (bool): AdamW's weight decay (default False).

    State per parameter: ``step`` (int), ``exp_avg`` and ``exp_avg_sq`` (Tensors of the
    parameter's shape and dtype), and ``max_exp_avg_sq`` with ``amsgrad``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False):
        name = type(self).__name__
        _check_number(name, "learning rate", lr)
        _check_number(name, "epsilon value", eps)
        _check_number(name, "weight_decay value", weight_decay)
        betas = tuple(betas)
        if len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        for i, b in enumerate(betas):
            if not 0.0 <= float(b) < 1.0:
                raise ValueError(f"{name}: invalid beta parameter at index {i}: {b} (must be in [0, 1))")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """One Adam step for every parameter with a gradient. ``closure`` (optional) re-evaluates
        the loss with gradients enabled; its value is returned."""
        loss = _eval_closure(closure)
        state = self.state
        for group in self.param_groups:
            lr = _scalar(group["lr"])
            beta1, beta2 = (float(b) for b in group["betas"])
            eps = group["eps"]
            wd = group["weight_decay"]
            amsgrad = group["amsgrad"]
            maximize = group["maximize"]
            decoupled = group.get("decoupled_weight_decay", False)
            w1, w2 = 1 - beta1, 1 - beta2
            for p in group["params"]:
                g = _grad_array(p, type(self).__name__)
                if g is None:
                    continue
                d = p._data
                xp = get_xp(d)
                st = state[p]
                if len(st) == 0:
                    st["step"] = 0
                    st["exp_avg"] = _zeros_like_param(p)
                    st["exp_avg_sq"] = _zeros_like_param(p)
                    if amsgrad:
                        st["max_exp_avg_sq"] = _zeros_like_param(p)
                step = st["step"] = st["step"] + 1
                if decoupled and wd != 0:
                    xp.multiply(d, 1 - lr * wd, out=d)
                g = _directed_grad(g, d, xp, maximize, 0 if decoupled else wd)
                m = st["exp_avg"]._data
                v = st["exp_avg_sq"]._data
                tmp = xp.empty_like(d)
                _lerp_(xp, m, g, w1, tmp)                 # m = lerp(m, g, 1 - beta1)
                v *= beta2                               # v = beta2 * v + (1 - beta2) * g * g
                xp.multiply(g, w2, out=tmp)
                tmp *= g
                v += tmp
                bias_correction1 = 1 - beta1 ** step
                bias_correction2 = 1 - beta2 ** step
                step_size = lr / bias_correction1
                bc2_sqrt = bias_correction2 ** 0.5
                if amsgrad:
                    vmax = st.get("max_exp_avg_sq")
                    if vmax is None:        # amsgrad switched on after the first step
                        vmax = st["max_exp_avg_sq"] = _zeros_like_param(p)
                    xp.maximum(vmax._data, v, out=vmax._data)
                    v = vmax._data
                xp.sqrt(v, out=tmp)                       # denom = sqrt(v) / sqrt(bc2) + eps
                tmp /= bc2_sqrt
                tmp += eps
                u = xp.multiply(m, -step_size)            # p += (-step_size * m) / denom
                u /= tmp
                d += u
                p._version[0] += 1
        return loss


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``:
    each step first shrinks ``p *= 1 - lr * weight_decay``, then applies the Adam update
    (see :class:`Adam`). Same arguments as :class:`Adam`; ``weight_decay`` defaults to 1e-2.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, decoupled_weight_decay=True)
