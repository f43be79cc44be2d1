"""Steer smoke into a target shape by optimizing the forces that drive it (stable fluids).

A closed 2-D box (``--n`` x ``--n`` cells) holds a blob of smoke near the bottom left. The
smoke is carried by an incompressible flow (``physics.StableFluids``: semi-Lagrangian
advection, mild buoyancy, Jacobi pressure projection). A time-constant control force field
``f [n, n, 2]`` (one vector per velocity face) and the initial velocity ``v0 [n, n, 2]`` are
optimized with Adam so that after ``--steps`` steps the density matches a target blob in the
upper right. Each step is checkpointed (``ds.checkpoint``): its graph is recomputed in the
backward pass instead of stored. Gradients reach ``f`` and ``v0`` through every advection
(the sampler's hand-written backward w.r.t. both the field and the sample points) and every
pressure solve.

    python examples/smoke_control.py                   # 32 x 32, 20 steps, 40 iterations, saves a plot
    python examples/smoke_control.py --n 16 --steps 8 --iters 10 --plot none

The plot (examples/output/smoke_control.png: start, target, uncontrolled, controlled, loss)
needs matplotlib; without it the script says so and carries on.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

try:
    import diffsim as ds
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import diffsim as ds
from diffsim import physics
from diffsim.physics.grid import Grid

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PLOT = os.path.join(HERE, "output", "smoke_control.png")
DTYPE = ds.float64


def blob(grid, cx, cy, r):
    X = grid.centers().numpy()
    return np.exp(-((X[..., 0] - cx) ** 2 + (X[..., 1] - cy) ** 2) / r ** 2)


def optimize(n=32, steps=20, dt=0.05, iters=40, lr=0.1, seed=0, log=print):
    """Returns dict(losses, rho0, target, rho_uncontrolled, rho_controlled [n, n], reduction)."""
    ds.manual_seed(seed)
    grid = Grid((n, n), spacing=1.0 / n)
    sim = physics.StableFluids(grid, buoyancy=0.2, projection="jacobi", iterations=30)
    rho0 = ds.tensor(blob(grid, 0.3, 0.3, 0.12), dtype=DTYPE)
    target = ds.tensor(blob(grid, 0.65, 0.62, 0.12), dtype=DTYPE)
    force = ds.zeros(n, n, 2, dtype=DTYPE, requires_grad=True)
    v0 = ds.zeros(n, n, 2, dtype=DTYPE, requires_grad=True)

    def run(v0, force):
        _, rho = sim.rollout(v0, rho0, dt, steps, forces=force, checkpoint=True)
        return rho

    def loss_of(rho):
        return ((rho - target) ** 2).sum() / n ** 2 * 100

    with ds.no_grad():
        rho_free = run(v0, force)
    opt = ds.optim.Adam([force, v0], lr=lr)
    losses = []
    start = time.time()
    for it in range(1, iters + 1):
        opt.zero_grad()
        loss = loss_of(run(v0, force))
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if it == 1 or it % max(1, iters // 6) == 0 or it == iters:
            log(f"iter {it:4d}  loss {loss.item():.4f}  ({time.time() - start:.1f} s)")
    with ds.no_grad():
        rho_ctl = run(v0, force)
        final = loss_of(rho_ctl).item()
    return dict(losses=losses + [final], rho0=rho0.numpy(), target=target.numpy(), rho_uncontrolled=rho_free.numpy(),
                rho_controlled=rho_ctl.numpy(), reduction=final / losses[0])


def save_plot(res, filename):
    """Start, target, uncontrolled and controlled smoke, and the loss; False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(1, 5, figsize=(20, 4))
    for a, key, title in zip(ax, ("rho0", "target", "rho_uncontrolled", "rho_controlled"),
                             ("start", "target", "no control", "optimized control")):
        a.imshow(res[key].T, origin="lower", cmap="gray_r", vmin=0, vmax=1)
        a.set_title(title)
        a.set_xticks([])
        a.set_yticks([])
    ax[4].semilogy(res["losses"])
    ax[4].set(title="loss", xlabel="Adam iteration")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
    fig.savefig(filename, dpi=90)
    plt.close(fig)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=32, help="cells per side")
    p.add_argument("--steps", type=int, default=20, help="simulation steps")
    p.add_argument("--dt", type=float, default=0.05)
    p.add_argument("--iters", type=int, default=40, help="Adam iterations")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default=DEFAULT_PLOT, help="where to save the plot ('none': no plot)")
    a = p.parse_args(argv)
    res = optimize(a.n, a.steps, a.dt, a.iters, a.lr, a.seed)
    print(f"loss {res['losses'][0]:.4f} -> {res['losses'][-1]:.4f} (x{res['reduction']:.3f})")
    if a.plot.lower() != "none":
        if save_plot(res, a.plot):
            print(f"plot saved to {a.plot}")
        else:
            print("(matplotlib is not installed: no plot; pip install matplotlib)")
    return res


if __name__ == "__main__":
    main()
