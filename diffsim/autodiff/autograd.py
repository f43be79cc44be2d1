"""``ds.autograd``: ``backward``, ``grad``, ``Function``, anomaly detection, grad-mode switches."""
from __future__ import annotations

from .engine import backward, grad
from .function import Function, FunctionCtx, once_differentiable
from .grad_mode import STATE, enable_grad, inference_mode, no_grad, set_grad_enabled


class detect_anomaly:
    """Context manager/decorator: record where each op was created and raise, naming the op and
    showing that place, when a backward produces NaN or Inf."""

    def __init__(self, check_nan: bool = True):
        self.check_nan = check_nan

    def __enter__(self):
        self._prev = STATE.anomaly
        STATE.anomaly = self.check_nan

    def __exit__(self, *exc):
        STATE.anomaly = self._prev
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*a, **k):
            with detect_anomaly(self.check_nan):
                return fn(*a, **k)
        return wrapper


def set_detect_anomaly(mode: bool):
    STATE.anomaly = bool(mode)


def is_anomaly_enabled() -> bool:
    return STATE.anomaly


__all__ = ["backward", "grad", "Function", "FunctionCtx", "once_differentiable", "detect_anomaly",
           "set_detect_anomaly", "is_anomaly_enabled", "no_grad", "enable_grad", "set_grad_enabled",
           "inference_mode"]
