"""diffsim.physics: differentiable simulation built on ``diffsim.autodiff``.

A simulation is three separate objects: a ``System`` (static description: masses, springs,
bodies, colliders, as Tensors that may require grad), a ``State`` (positions, velocities,
...) and an ``Integrator``; ``simulate`` rolls them forward (optionally with
checkpointing) and everything is differentiable.

* core: ``State``, ``System``, ``simulate``, ``Trajectory``, ``clip_gradient_through_time``,
  ``check_gradients``; integrators ``ExplicitEuler``, ``SemiImplicitEuler``,
  ``VelocityVerlet`` (``Leapfrog``), ``RK4``, ``ImplicitEuler`` (Newton / Baraff-Witkin)
* ``PotentialSystem``: forces by autodiff of an energy
* ``MassSpring`` (cloth, rope, lattice; pins, actuated springs) with the fused
  ``spring_forces`` op; colliders ``GroundPlane``, ``Sphere``
* ``Particles`` with pairwise forces ``Gravity`` (N-body), ``LennardJones`` (cell lists),
  ``PairPotential`` (any phi(r), forces by autodiff)
* ``RigidBodies2D``, ``RigidBodies3D`` with ``PenaltyGround``, ``PenaltySphereContact`` and
  ``ImpulseCollisions`` (time-of-impact corrected)
* ODEs: ``odeint`` / ``odeint_adjoint`` (dopri5, bosh3, rk4, midpoint, euler; gradients by
  backpropagation through the solver or by the adjoint method)
* ``implicit.root``: Newton's method for ``F(x, theta) = 0``, gradients by the implicit
  function theorem (one adjoint solve)
* fields and continua: ``grid`` (finite differences, heat, wave, advection, Poisson),
  ``StableFluids`` (smoke), ``fem`` (linear and Neo-Hookean elasticity), ``MPM`` (MLS-MPM)
"""
from . import fem, grid, implicit  # noqa: F401
from .contact import Collider, GroundPlane, Sphere, penalty_force  # noqa: F401
from .fluids import StableFluids  # noqa: F401
from .gradients import GradientReport, check_gradients  # noqa: F401
from .integrators import (RK4, ExplicitEuler, ImplicitEuler, Integrator, Leapfrog, SemiImplicitEuler,  # noqa: F401
                          VelocityVerlet)
from .mass_spring import MassSpring, spring_forces  # noqa: F401
from .mpm import MPM, MPMIntegrator  # noqa: F401
from .ode import odeint, odeint_adjoint  # noqa: F401
from .particles import Gravity, LennardJones, PairPotential, Particles, gravity_acceleration, pair_force  # noqa: F401
from .rigid import ImpulseCollisions, PenaltyGround, PenaltySphereContact, RigidBodies2D, RigidBodies3D  # noqa: F401
from .simulate import Trajectory, clip_gradient_through_time, simulate  # noqa: F401
from .state import State  # noqa: F401
from .system import PotentialSystem, System  # noqa: F401

__all__ = ["State", "System", "PotentialSystem", "Integrator", "ExplicitEuler", "SemiImplicitEuler",
           "VelocityVerlet", "Leapfrog", "RK4", "ImplicitEuler", "simulate", "Trajectory",
           "clip_gradient_through_time", "check_gradients", "GradientReport", "odeint", "odeint_adjoint",
           "MassSpring", "spring_forces", "Collider", "GroundPlane", "Sphere", "penalty_force",
           "RigidBodies2D", "RigidBodies3D", "PenaltyGround", "PenaltySphereContact", "ImpulseCollisions",
           "Particles", "Gravity", "LennardJones", "PairPotential", "gravity_acceleration", "pair_force",
           "MPM", "MPMIntegrator", "StableFluids", "fem", "grid", "implicit"]
