"""Property-based tests of a simulation with diffsim's testing kit.

A chain of pendulums coupled by springs is stepped with the symplectic leapfrog
(velocity Verlet) integrator, written with ordinary diffsim ops. Three properties are
checked for hypothesis-chosen initial states, chain lengths and stiffnesses:

1. the rollout's gradient w.r.t. the initial state and the stiffness matches central finite
   differences (``diffsim.testing.gradcheck``), and so does its second derivative
   (``gradgradcheck``);
2. energy is conserved to O(dt^2) over the rollout (a property of the integrator);
3. the force, obtained by autodiff of the potential energy, is translation invariant:
   moving every pendulum by the same angle changes nothing but gravity's part.

    python examples/property_testing.py                  # 25 examples per property
    python examples/property_testing.py --examples 5

Failures print hypothesis's minimal counterexample, as a pytest run would.
"""
from __future__ import annotations

import argparse
import os
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

try:
    import diffsim as ds
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import diffsim as ds
from diffsim.testing import gradcheck, gradgradcheck
from diffsim.testing import strategies as dst

G, DT = 9.81, 1e-3


def potential(q, k):
    """Gravity (pendulums of unit length and mass) plus springs between neighbours. q [N]."""
    return (G * (1 - q.cos())).sum() + 0.5 * k * ((q[1:] - q[:-1]) ** 2).sum()


def force(q, k):
    """-dV/dq, by autodiff of the potential (kept in the graph for gradients through it)."""
    (dv,) = ds.autograd.grad(potential(q, k), q, create_graph=True)
    return -dv


def rollout(q, p, k, steps):
    """Leapfrog: half kick, drift, half kick. Returns the final (q, p)."""
    if not q.requires_grad:
        q = q.detach().requires_grad_()
    f = force(q, k)
    for _ in range(steps):
        p = p + 0.5 * DT * f
        q = q + DT * p
        f = force(q, k)
        p = p + 0.5 * DT * f
    return q, p


def energy(q, p, k):
    return potential(q, k) + 0.5 * (p * p).sum()


chains = st.integers(2, 5)
angles = dst.floats(-1.0, 1.0)
stiffness = dst.floats(0.5, 5.0)


def check_gradients(n_examples):
    @settings(max_examples=n_examples, deadline=None)
    @given(st.data())
    def prop(data):
        n = data.draw(chains)
        q0 = data.draw(dst.tensors(shape=(n,), elements=angles, requires_grad=True))
        p0 = data.draw(dst.tensors(shape=(n,), elements=angles, requires_grad=True))
        k = ds.tensor(data.draw(stiffness), dtype=ds.float64, requires_grad=True)

        def final_state(q, p, k_):
            return ds.cat(rollout(q, p, k_, steps=5))
        assert gradcheck(final_state, (q0, p0, k))
        assert gradgradcheck(lambda q, k_: rollout(q, p0.detach(), k_, steps=1)[0], (q0, k))
    prop()


def energy_drift(q0, p0, k, steps, integrator=None):
    """|E(T) - E(0)| and the O(dt^2) bound allowed for it."""
    e0 = energy(q0, p0, k).item()
    q, p = (integrator or rollout)(q0, p0, k, steps)
    return abs(energy(q.detach(), p.detach(), k).item() - e0), 50 * DT ** 2 * (1 + abs(e0))


def check_energy(n_examples, steps=400):
    @settings(max_examples=n_examples, deadline=None)
    @given(st.data())
    def prop(data):
        n = data.draw(chains)
        q0 = data.draw(dst.tensors(shape=(n,), elements=angles))
        p0 = data.draw(dst.tensors(shape=(n,), elements=angles))
        drift, bound = energy_drift(q0, p0, data.draw(stiffness), steps)
        assert drift < bound, (drift, bound)
    prop()


def check_spring_invariance(n_examples):
    @settings(max_examples=n_examples, deadline=None)
    @given(st.data())
    def prop(data):
        n = data.draw(chains)
        q = data.draw(dst.tensors(shape=(n,), elements=angles, requires_grad=True))
        shift = data.draw(dst.floats(-0.5, 0.5))
        k = data.draw(stiffness)
        spring_only = force(q, k) + G * q.sin()       # remove gravity's part
        q2 = (q.detach() + shift).requires_grad_()
        spring_shifted = force(q2, k) + G * q2.sin()
        assert ds.allclose(spring_only, spring_shifted, atol=1e-12)
    prop()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=25, help="hypothesis examples per property")
    args = p.parse_args(argv)
    for name, check in (("gradients match finite differences", check_gradients),
                        ("leapfrog conserves energy to O(dt^2)", check_energy),
                        ("spring forces are translation invariant", check_spring_invariance)):
        check(args.examples)
        print(f"ok  {name}  ({args.examples} examples)")


if __name__ == "__main__":
    main()
