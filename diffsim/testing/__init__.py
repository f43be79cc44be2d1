"""Testing kit: gradient checks and hypothesis strategies for property-based tests of
differentiable code (your own simulations included)."""
from .gradcheck import GradcheckError, gradcheck, gradgradcheck

__all__ = ["gradcheck", "gradgradcheck", "GradcheckError"]
