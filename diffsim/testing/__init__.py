"""Testing kit: gradient checks and hypothesis strategies for property-based tests of
differentiable code (your own simulations included).

``strategies`` needs hypothesis (``pip install hypothesis``); it is imported on first use
of ``diffsim.testing.strategies``, so gradcheck works without hypothesis installed."""
from .compare import assert_close
from .gradcheck import GradcheckError, gradcheck, gradgradcheck

__all__ = ["gradcheck", "gradgradcheck", "GradcheckError", "assert_close", "strategies"]


def __getattr__(name):
    if name == "strategies":
        import importlib
        mod = importlib.import_module(".strategies", __name__)
        globals()["strategies"] = mod
        return mod
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
