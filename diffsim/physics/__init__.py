"""diffsim.physics: differentiable simulation built on ``diffsim.autodiff``.

ODEs: ``odeint`` / ``odeint_adjoint`` (dopri5, bosh3, rk4, midpoint, euler; gradients by
backpropagation through the solver or by the adjoint method).
"""
from .ode import odeint, odeint_adjoint  # noqa: F401

__all__ = ["odeint", "odeint_adjoint"]
