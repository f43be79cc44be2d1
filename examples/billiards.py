"""Billiards: choose the cue ball's velocity so that the struck ball stops on a marked spot
(after DiffTaichi's billiards example).

Two discs on a table (no gravity in the table plane) with rolling friction modelled as
linear drag (``dv/dt = -c v``: a ball launched at speed ``s`` rolls ``s / c`` and stops) and
cushions. Collisions are elastic impulses resolved with the time-of-impact correction of
``diffsim.physics.ImpulseCollisions``, so the object ball's resting place is a smooth
function of the cue velocity and its gradient is right. L-BFGS (or Adam) tunes the cue velocity
``v0 [2]`` to minimise ``|x_object(T) - spot|^2``.

    python examples/billiards.py                    # 300 steps, L-BFGS, saves a plot
    python examples/billiards.py --steps 100 --iters 15 --optimizer adam --plot none

The plot (examples/output/billiards.png: both balls' paths before and after optimization,
and the loss) needs matplotlib; without it the script says so and carries on.
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
DEFAULT_PLOT = os.path.join(HERE, "output", "billiards.png")
DTYPE = ds.float64
TABLE = (2.0, 1.0)                  # width, height (m)
RADIUS = 0.03
CUE, OBJECT, SPOT = (0.4, 0.45), (1.0, 0.5), (1.6, 0.75)


def make_table(friction=0.8, restitution=1.0, cushion_restitution=0.8):
    """Two equal balls (cue 0, object 1) with rolling friction and four cushions."""
    W, H = TABLE
    cushions = [((1.0, 0.0), 0.0), ((-1.0, 0.0), -W), ((0.0, 1.0), 0.0), ((0.0, -1.0), -H)]
    return physics.RigidBodies2D.discs(
        ds.tensor([RADIUS, RADIUS], dtype=DTYPE), mass=ds.tensor([0.17, 0.17], dtype=DTYPE),
        gravity=(0.0, 0.0), linear_drag=friction,
        impulses=physics.ImpulseCollisions(restitution=restitution, planes=cushions,
                                           plane_restitution=cushion_restitution))


def rollout(table, v0, steps, dt, record="final"):
    """Simulate from the cue velocity ``v0 [2]``; returns the final State (or a Trajectory)."""
    x0 = ds.tensor([CUE, OBJECT], dtype=DTYPE)
    v = ds.stack([v0, ds.zeros(2, dtype=DTYPE)])
    return physics.simulate(table, table.initial_state(x0, v=v), steps, dt, record=record)


def optimize(steps=300, dt=0.01, iters=40, lr=0.03, optimizer="lbfgs", log=print):
    """Tune the cue velocity. ``optimizer``: "lbfgs" (L-BFGS with a strong-Wolfe line search,
    ``iters`` iterations) or "adam" (``iters`` steps of size ``lr``).

    Returns (losses per loss evaluation, initial v0, optimized v0 (numpy [2]), final distance
    of the object ball to the spot)."""
    table = make_table()
    spot = ds.tensor(SPOT, dtype=DTYPE)
    aim = np.subtract(OBJECT, CUE)
    v_init = 1.2 * aim / np.linalg.norm(aim)          # straight at the object ball
    v0 = ds.tensor(v_init, dtype=DTYPE, requires_grad=True)
    losses = []

    def closure():
        opt.zero_grad()
        final = rollout(table, v0, steps, dt)
        loss = ((final.x[1] - spot) ** 2).sum()
        loss.backward()
        losses.append(loss.item())
        return loss

    if optimizer == "lbfgs":
        opt = ds.optim.LBFGS([v0], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe",
                             tolerance_grad=1e-12, tolerance_change=1e-14)
        opt.step(closure)
    elif optimizer == "adam":
        opt = ds.optim.Adam([v0], lr=lr)
        for it in range(iters):
            opt.step(closure)
            if it % max(1, iters // 8) == 0 or it == iters - 1:
                log(f"iter {it:4d}  distance to the spot {np.sqrt(losses[-1]):.4f} m")
    else:
        raise ValueError(f"billiards: optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    with ds.no_grad():
        dist = float(((rollout(table, v0, steps, dt).x[1] - spot) ** 2).sum().sqrt())
    vo = v0.detach().numpy().copy()
    log(f"{optimizer}: {len(losses)} rollouts with gradients; cue velocity ({vo[0]:+.4f}, {vo[1]:+.4f}) m/s")
    return losses, v_init, vo, dist


def save_plot(v_init, v_opt, losses, steps, dt, filename):
    """Ball paths before/after optimization and the loss; False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    table = make_table()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), gridspec_kw={"width_ratios": [2, 2, 1.3]})
    for ax, v, title in ((axes[0], v_init, "initial shot"), (axes[1], v_opt, "optimized shot")):
        with ds.no_grad():
            x = rollout(table, ds.tensor(v, dtype=DTYPE), steps, dt, record="all").x.numpy()
        ax.plot(x[:, 0, 0], x[:, 0, 1], "-", color="0.4", label="cue ball")
        ax.plot(x[:, 1, 0], x[:, 1, 1], "-", color="tab:red", label="object ball")
        for k, c in ((0, "white"), (1, "tab:red")):
            ax.add_patch(plt.Circle(x[-1, k], RADIUS, facecolor=c, edgecolor="k"))
        ax.plot(*SPOT, "kx", ms=10, mew=2, label="spot")
        ax.set(xlim=(0, TABLE[0]), ylim=(0, TABLE[1]), aspect="equal", title=title)
        ax.set_facecolor("#2e7d32")
        ax.legend(loc="upper left", fontsize=8)
    axes[2].semilogy(np.sqrt(losses))
    axes[2].set(title="distance to the spot", xlabel="loss evaluation", ylabel="m")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
    fig.savefig(filename, dpi=100)
    plt.close(fig)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300, help="time steps per shot")
    p.add_argument("--dt", type=float, default=None, help="step size (default: 3 s / steps)")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    p.add_argument("--iters", type=int, default=40, help="L-BFGS iterations or Adam steps")
    p.add_argument("--lr", type=float, default=0.03, help="Adam learning rate")
    p.add_argument("--plot", default=DEFAULT_PLOT, help="where to save the plot ('none': no plot)")
    a = p.parse_args(argv)
    dt = a.dt if a.dt is not None else 3.0 / a.steps
    losses, v_init, v_opt, dist = optimize(a.steps, dt, a.iters, a.lr, a.optimizer)
    print(f"final distance of the object ball to the spot: {dist:.5f} m "
          f"(initial shot: {np.sqrt(losses[0]):.4f} m)")
    if a.plot.lower() != "none":
        if save_plot(v_init, v_opt, losses, a.steps, dt, a.plot):
            print(f"plot saved to {a.plot}")
        else:
            print("(matplotlib is not installed: no plot; pip install matplotlib)")
    return {"losses": losses, "v0": v_opt, "distance": dist}


if __name__ == "__main__":
    main()
