"""Grad-mode switches: ``no_grad``, ``enable_grad``, ``set_grad_enabled``, ``inference_mode``.

Each is a context manager and a decorator, as in PyTorch. The state lives in one
slotted object read on every op (``STATE.grad_enabled``).
"""
from __future__ import annotations

import functools


class _State:
    __slots__ = ("grad_enabled", "anomaly", "tracer")

    def __init__(self):
        self.grad_enabled = True
        self.anomaly = False
        self.tracer = None      # a hook for the trace/compile mode: called by dispatch


STATE = _State()


def is_grad_enabled() -> bool:
    return STATE.grad_enabled


class _GradSwitch:
    """Base: sets grad mode to ``self.mode`` inside ``with`` or a decorated function."""
    mode = True

    def __new__(cls, *args, **kwargs):
        # ``@no_grad`` / ``@inference_mode`` without parentheses decorate directly, as in PyTorch
        if cls in (no_grad, enable_grad, inference_mode) and len(args) == 1 and callable(args[0]) \
                and not kwargs:
            switch = super().__new__(cls)
            switch.__init__()
            return switch(args[0])
        return super().__new__(cls)

    def __enter__(self):
        self._prev = STATE.grad_enabled
        STATE.grad_enabled = self.mode

    def __exit__(self, *exc):
        STATE.grad_enabled = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self._clone():
                return fn(*args, **kwargs)
        return wrapper

    def _clone(self):
        c = self.__class__.__new__(self.__class__)
        c.__dict__.update(self.__dict__)
        return c


class no_grad(_GradSwitch):
    """Disable graph recording: ops inside return tensors with ``requires_grad=False``."""
    mode = False


class enable_grad(_GradSwitch):
    """Enable graph recording inside a ``no_grad`` region."""
    mode = True


class inference_mode(_GradSwitch):
    """Like ``no_grad`` (diffsim has no separate inference tensors); ``inference_mode(False)`` is a no-op."""

    def __init__(self, mode: bool = True):
        self.enabled = bool(mode)

    def __enter__(self):
        self._prev = STATE.grad_enabled
        if self.enabled:
            STATE.grad_enabled = False


class set_grad_enabled(_GradSwitch):
    """``set_grad_enabled(b)``: sets grad mode now (like PyTorch) and restores it on ``with`` exit."""

    def __init__(self, mode: bool):
        if not isinstance(mode, bool):
            raise TypeError(f"set_grad_enabled: expected a bool, got {type(mode).__name__}")
        self._prev = STATE.grad_enabled
        self.mode = mode
        STATE.grad_enabled = mode

    def __enter__(self):
        STATE.grad_enabled = self.mode

    def __call__(self, fn):
        # as a decorator it sets the mode only while ``fn`` runs, not from the decoration on
        STATE.grad_enabled = self._prev
        return super().__call__(fn)

    def _clone(self):
        # each call of the decorated function restores the mode it was called in
        return set_grad_enabled(self.mode)
