"""A 100 000-step differentiable rollout with binomial checkpointing, on a laptop.

A swinging rope (``physics.MassSpring.rope``, 32 particles, float64, semi-implicit Euler,
dt = 1e-4) is rolled out for T steps and the gradient of a loss on the final positions is
taken w.r.t. the per-spring stiffness and the initial velocity, with
``simulate(..., checkpoint="binomial")`` (revolve with ceil(log2 T) snapshots).

Reported, in the same process: time and tracemalloc peak memory of the binomial rollout,
and of the plain rollout at a shorter length ``T_plain``; the plain peak grows linearly with
T, so it is extrapolated to T (``plain peak * T / T_plain``) for the ratio. The gradients
of the two modes are compared at ``T_plain``.

    python benchmarks/long_rollout.py                 # T = 100 000 (a few minutes)
    python benchmarks/long_rollout.py --steps 20000
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import diffsim as ds  # noqa: E402
from diffsim import physics  # noqa: E402

N = 32
DT = 1e-4


def program(steps, checkpoint):
    rope0 = physics.MassSpring.rope(N, length=1.0, dtype=ds.float64)
    k = ds.tensor(np.full(N - 1, 2000.0), requires_grad=True)
    rope = physics.MassSpring(rope0.initial_state().x, np.stack([np.asarray(rope0._a), np.asarray(rope0._b)], 1),
                              stiffness=k, damping=0.01, mass=0.01, drag=0.1, pinned=[0])
    v0 = ds.zeros(N, 3, dtype=ds.float64, requires_grad=True)

    def run():
        s = physics.simulate(rope, rope.initial_state(v=v0), steps, DT, checkpoint=checkpoint)
        loss = (s.x[:, 1] ** 2).mean()
        return ds.autograd.grad(loss, [k, v0]), float(loss)
    return run


def measure(steps, checkpoint):
    run = program(steps, checkpoint)
    t = time.perf_counter()
    grads, loss = run()
    elapsed = time.perf_counter() - t
    tracemalloc.start()
    try:
        program(steps, checkpoint)()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return elapsed, peak, grads, loss


def run(steps=100_000, plain_steps=5_000):
    tb, pb, _, loss = measure(steps, "binomial")
    tp, pp, gp, _ = measure(plain_steps, None)
    _, _, gb_short, _ = measure(plain_steps, "binomial")
    for a, b in zip(gp, gb_short):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-14)
    plain_peak = pp * steps / plain_steps
    return [dict(workload=f"rope T={steps} binomial, peak memory", diffsim=pb / 2**20,
                 baseline_value=plain_peak / 2**20, unit="MiB", baseline=f"plain (extrapolated from T={plain_steps})",
                 ratio=pb / plain_peak, note=f"loss {loss:.6g}"),
            dict(workload=f"rope T={steps} binomial, time", diffsim_s=tb, baseline_s=tp * steps / plain_steps,
                 baseline=f"plain (extrapolated from T={plain_steps})", ratio=tb / (tp * steps / plain_steps),
                 note="forward + backward")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--plain-steps", type=int, default=5_000)
    a = p.parse_args(argv)
    rows = run(a.steps, a.plain_steps)
    for r in rows:
        print(r)
    return rows


if __name__ == "__main__":
    main()
