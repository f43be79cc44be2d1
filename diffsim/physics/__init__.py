"""diffsim.physics: differentiable simulation built on ``diffsim.autodiff``.

A simulation is three separate objects: a ``System`` (static description: masses, springs,
colliders, as Tensors that can require grad), a ``State`` (positions, velocities, ...) and
an ``Integrator``; ``simulate`` rolls them forward (optionally with checkpointing) and
everything is differentiable.

* ``State``, ``System``, ``PotentialSystem`` (forces by autodiff of an energy)
* integrators: ``ExplicitEuler``, ``SemiImplicitEuler``, ``VelocityVerlet`` (``Leapfrog``), ``RK4``
* ``simulate``, ``Trajectory``, ``clip_gradient_through_time``, ``check_gradients``
* ODEs: ``odeint`` / ``odeint_adjoint`` (dopri5, bosh3, rk4, midpoint, euler; gradients by
  backpropagation through the solver or by the adjoint method)
"""
from .gradients import GradientReport, check_gradients  # noqa: F401
from .integrators import RK4, ExplicitEuler, Integrator, Leapfrog, SemiImplicitEuler, VelocityVerlet  # noqa: F401
from .ode import odeint, odeint_adjoint  # noqa: F401
from .simulate import Trajectory, clip_gradient_through_time, simulate  # noqa: F401
from .state import State  # noqa: F401
from .system import PotentialSystem, System  # noqa: F401

__all__ = ["State", "System", "PotentialSystem", "Integrator", "ExplicitEuler", "SemiImplicitEuler",
           "VelocityVerlet", "Leapfrog", "RK4", "simulate", "Trajectory", "clip_gradient_through_time",
           "check_gradients", "GradientReport", "odeint", "odeint_adjoint"]
