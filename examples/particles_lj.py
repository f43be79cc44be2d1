"""Recover a Lennard-Jones epsilon and sigma from an observed trajectory of a small 2-D cluster.

A user-defined pair potential is one line: the model's potential is

    physics.PairPotential(lambda r: 4 * eps * ((sigma / r) ** 12 - (sigma / r) ** 6), cutoff=2.2)

with ``eps`` and ``sigma`` Tensors that require grad; forces come from autodiff of ``phi`` and
gradients of the loss reach ``eps`` and ``sigma`` through the whole rollout. The "observed"
trajectory is simulated with the built-in ``physics.LennardJones`` at the true parameters
(16 particles in a periodic box, velocity Verlet) plus a little noise. The fit minimizes the
mean squared position error over the recorded frames with Adam.

    python examples/particles_lj.py                     # saves examples/output/particles_lj.png
    python examples/particles_lj.py --iters 20 --steps 60 --plot none

The plot (loss per iteration, and observed vs fitted particle paths) needs matplotlib;
without it the script says so and carries on.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

try:
    import diffsim as ds
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import diffsim as ds
from diffsim import physics

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PLOT = os.path.join(HERE, "output", "particles_lj.png")
DTYPE = ds.float64
TRUE_EPS, TRUE_SIGMA = 1.0, 1.0
SIDE, SPACING, CUTOFF = 4, 1.2, 2.2


def initial_state(seed=0):
    """A jittered 4 x 4 lattice with random velocities; returns the State and the box [2]."""
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(np.arange(SIDE), np.arange(SIDE), indexing="ij"), -1).reshape(-1, 2)
    x = g * SPACING + rng.uniform(-0.08, 0.08, g.shape)
    v = rng.standard_normal(x.shape) * 0.5
    v -= v.mean(0)
    return physics.State(x=ds.tensor(x, dtype=DTYPE), v=ds.tensor(v, dtype=DTYPE)), [SIDE * SPACING] * 2


def rollout(system, state, steps, dt, every):
    """Positions at every ``every``-th step, a Tensor [frames, P, 2]."""
    return physics.simulate(system, state, steps, dt, integrator="velocity_verlet", record=every).x


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=60, help="Adam iterations")
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--dt", type=float, default=5e-3)
    p.add_argument("--every", type=int, default=10, help="record every n-th step")
    p.add_argument("--noise", type=float, default=1e-3, help="observation noise (std)")
    p.add_argument("--plot", default=DEFAULT_PLOT, help="output image, or 'none'")
    args = p.parse_args(argv)

    state, box = initial_state()
    truth = physics.Particles(1.0, forces=[physics.LennardJones(TRUE_EPS, TRUE_SIGMA, cutoff=CUTOFF)], box=box)
    with ds.no_grad():
        clean = rollout(truth, state, args.steps, args.dt, args.every)
    rng = np.random.default_rng(1)
    observed = clean + ds.tensor(rng.standard_normal(clean.shape) * args.noise, dtype=DTYPE)

    # the model: a user-defined pair potential, one line, with trainable parameters
    eps = ds.tensor(0.6, dtype=DTYPE, requires_grad=True)
    sigma = ds.tensor(0.95, dtype=DTYPE, requires_grad=True)
    lj = physics.PairPotential(lambda r: 4 * eps * ((sigma / r) ** 12 - (sigma / r) ** 6), cutoff=CUTOFF)
    model = physics.Particles(1.0, forces=[lj], box=box)

    opt = ds.optim.Adam([eps, sigma], lr=args.lr)
    losses = []
    for it in range(args.iters):
        opt.zero_grad()
        loss = ((rollout(model, state, args.steps, args.dt, args.every) - observed) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss))
        if it % 5 == 0 or it == args.iters - 1:
            print(f"iter {it:3d}  loss {losses[-1]:.3e}  epsilon {float(eps):.4f}  sigma {float(sigma):.4f}")
    print(f"epsilon {float(eps):.4f} (true {TRUE_EPS}), sigma {float(sigma):.4f} (true {TRUE_SIGMA}); "
          f"relative errors {abs(float(eps) - TRUE_EPS) / TRUE_EPS:.2e}, "
          f"{abs(float(sigma) - TRUE_SIGMA) / TRUE_SIGMA:.2e}")

    if args.plot != "none":
        with ds.no_grad():
            fitted = rollout(model, state, args.steps, args.dt, args.every)
        save_plot(args.plot, losses, observed.numpy(), fitted.numpy())
    return {"losses": losses, "epsilon": float(eps), "sigma": float(sigma),
            "true_epsilon": TRUE_EPS, "true_sigma": TRUE_SIGMA}


def save_plot(path, losses, observed, fitted):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed; no plot saved")
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.5))
    a.semilogy(losses)
    a.set_xlabel("Adam iteration")
    a.set_ylabel("trajectory MSE")
    a.set_title("fit of LJ epsilon, sigma")
    for k in range(observed.shape[1]):
        b.plot(observed[:, k, 0], observed[:, k, 1], "k.", ms=3, label="observed" if k == 0 else None)
        b.plot(fitted[:, k, 0], fitted[:, k, 1], "r-", lw=1, label="fitted" if k == 0 else None)
    b.set_aspect("equal")
    b.legend()
    b.set_title("particle paths (unwrapped)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
