"""Loss modules (MSELoss ... KLDivLoss): PyTorch's constructor arguments; ``weight`` and
``pos_weight`` are buffers (moved by ``.to()``, saved in ``state_dict``)."""
from __future__ import annotations

from ...autodiff.tensor import Tensor
from .. import functional as F
from ..functional.loss import _reduction_arg
from ..module import Module

__all__ = ["MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "CrossEntropyLoss", "NLLLoss",
           "BCELoss", "BCEWithLogitsLoss", "KLDivLoss"]


def _as_buffer(value, name, cls):
    if value is None or isinstance(value, Tensor):
        return value
    from ...autodiff.creation import as_tensor
    try:
        return as_tensor(value)
    except Exception as e:  # noqa: BLE001
        raise TypeError(f"{cls}: {name} must be a Tensor or None, got {type(value).__name__}") from e


class _Loss(Module):
    _extra_reductions = ()
    _defaults = {}                 # constructor arguments shown by extra_repr when not default

    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        self.reduction = _reduction_arg(size_average, reduce, reduction, type(self).__name__,
                                        self._extra_reductions)

    def _extra(self, **defaults):
        """``name=value`` for every attribute that differs from its default (PyTorch shows none)."""
        parts = [] if self.reduction == "mean" else [f"reduction={self.reduction!r}"]
        for k, d in defaults.items():
            v = getattr(self, k)
            if v != d:
                parts.append(f"{k}={v!r}")
        return ", ".join(parts)

    def extra_repr(self):
        return self._extra(**self._defaults)


class _WeightedLoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", _as_buffer(weight, "weight", type(self).__name__))

    def extra_repr(self):
        w = [] if self.weight is None else [f"weight={list(self.weight.shape)}"]
        return ", ".join(w + [p for p in (super().extra_repr(),) if p])


class MSELoss(_Loss):
    """Mean squared error; see ``F.mse_loss``."""

    def forward(self, input, target):  # noqa: A002
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Mean absolute error; see ``F.l1_loss``."""

    def forward(self, input, target):  # noqa: A002
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """Quadratic below ``beta``, linear above; see ``F.smooth_l1_loss``."""
    _defaults = {"beta": 1.0}

    def __init__(self, size_average=None, reduce=None, reduction="mean", beta=1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input, target):  # noqa: A002
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """Quadratic below ``delta``, ``delta``-scaled linear above; see ``F.huber_loss``."""
    _defaults = {"delta": 1.0}

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction=reduction)
        self.delta = delta

    def forward(self, input, target):  # noqa: A002
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class CrossEntropyLoss(_WeightedLoss):
    """Cross entropy of logits and class indices or probabilities; see ``F.cross_entropy``."""
    _defaults = {"ignore_index": -100, "label_smoothing": 0.0}

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean", label_smoothing=0.0):
        super().__init__(weight, size_average, reduce, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be between 0.0 and 1.0, got "
                             f"{label_smoothing}")
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):  # noqa: A002
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of log-probabilities; see ``F.nll_loss``."""
    _defaults = {"ignore_index": -100}

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):  # noqa: A002
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class BCELoss(_WeightedLoss):
    """Binary cross entropy of probabilities; see ``F.binary_cross_entropy``."""

    def forward(self, input, target):  # noqa: A002
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross entropy of logits (stable); see ``F.binary_cross_entropy_with_logits``."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean",
                 pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", _as_buffer(weight, "weight", "BCEWithLogitsLoss"))
        self.register_buffer("pos_weight", _as_buffer(pos_weight, "pos_weight", "BCEWithLogitsLoss"))

    def extra_repr(self):
        parts = [super().extra_repr()]
        for k in ("weight", "pos_weight"):
            v = getattr(self, k)
            if v is not None:
                parts.append(f"{k}={list(v.shape)}")
        return ", ".join(p for p in parts if p)

    def forward(self, input, target):  # noqa: A002
        return F.binary_cross_entropy_with_logits(input, target, weight=self.weight,
                                                  reduction=self.reduction, pos_weight=self.pos_weight)


class KLDivLoss(_Loss):
    """KL divergence of log-probabilities; see ``F.kl_div`` (``reduction='batchmean'`` is the
    mathematical KL divergence)."""
    _defaults = {"log_target": False}
    _extra_reductions = ("batchmean",)

    def __init__(self, size_average=None, reduce=None, reduction="mean", log_target=False):
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input, target):  # noqa: A002
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)
