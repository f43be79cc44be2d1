"""Projectile: find the launch velocity that lands a ball, after one bounce, on a target.

A ball (a disc in the vertical x-y plane, y up) is thrown from a height with velocity
``v0 [2]``; it feels gravity and quadratic air drag ``F = -k |v| v``, bounces off the
ground with restitution ``e`` (an impulse with the time-of-impact correction of
``diffsim.physics.ImpulseCollisions``, so the landing point is a smooth function of
``v0``), and must touch down for the second time on the target: the loss is
``(x_land - target)^2`` with ``x_land`` the point of the second touchdown, minimised with
L-BFGS through the whole rollout.

    python examples/projectile_target.py                       # saves a plot
    python examples/projectile_target.py --steps 200 --plot none

The plot (examples/output/projectile_target.png: the arcs of the first guess and of the
optimized throw) needs matplotlib; without it the script says so and carries on.
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
DEFAULT_PLOT = os.path.join(HERE, "output", "projectile_target.png")
DTYPE = ds.float64
RADIUS, MASS = 0.05, 0.1
START = (0.0, 1.0)


def make_ball(air_drag=0.002, restitution=0.6):
    """One ball with gravity, quadratic air drag and a bouncy ground at y = 0."""
    return physics.RigidBodies2D.discs(
        ds.tensor([RADIUS], dtype=DTYPE), mass=ds.tensor([MASS], dtype=DTYPE), air_drag=air_drag,
        impulses=physics.ImpulseCollisions(planes=[((0.0, 1.0), 0.0)], restitution=restitution))


def throw(ball, v0, steps, dt, record="final"):
    """Simulate from the launch velocity ``v0 [2]``: final State or Trajectory."""
    s0 = ball.initial_state(ds.tensor([START], dtype=DTYPE), v=v0.unsqueeze(0))
    return physics.simulate(ball, s0, steps, dt, record=record)


def bounce_steps(traj):
    """Record indices right after each ground contact (vertical velocity turned from down to up)."""
    vy = traj.v.detach().numpy()[:, 0, 1]
    return np.flatnonzero((vy[:-1] < 0) & (vy[1:] > 0)) + 1


def landing_x(traj, bounce=2):
    """x where the ball touches the ground for the ``bounce``-th time (a 0-d Tensor): the
    last state before that contact, moved on linearly to ``y = r`` (the contact step itself is
    found without gradient; the point is differentiable)."""
    hits = bounce_steps(traj)
    if len(hits) < bounce:
        raise RuntimeError(f"projectile_target: the ball touched the ground {len(hits)} time(s) in the "
                           f"simulated time; increase --time")
    before = traj[int(hits[bounce - 1]) - 1]
    x, v = before.x[0], before.v[0]
    return x[0] + v[0] * (x[1] - RADIUS) / (-v[1])


def optimize(target=6.0, duration=3.0, steps=600, iters=30, v_guess=(2.5, 5.0), log=print):
    """Returns a dict: losses, v_init, v0 (numpy [2]), miss (m), landing x, dt, steps, target."""
    dt = duration / steps
    ball = make_ball()
    v0 = ds.tensor(v_guess, dtype=DTYPE, requires_grad=True)
    losses = []

    def closure():
        opt.zero_grad()
        loss = (landing_x(throw(ball, v0, steps, dt, record="all")) - target) ** 2
        loss.backward()
        losses.append(loss.item())
        return loss

    opt = ds.optim.LBFGS([v0], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe",
                         tolerance_grad=1e-12, tolerance_change=1e-14)
    opt.step(closure)
    with ds.no_grad():
        land = float(landing_x(throw(ball, v0.detach(), steps, dt, record="all")))
    vo = v0.detach().numpy().copy()
    log(f"L-BFGS: {len(losses)} rollouts with gradients; launch velocity ({vo[0]:.4f}, {vo[1]:.4f}) m/s")
    return {"losses": losses, "v_init": np.array(v_guess), "v0": vo, "miss": abs(land - target),
            "landing": land, "dt": dt, "steps": steps, "target": target}


def save_plot(res, filename):
    """The arcs of the first guess and the optimized throw, and the loss; False without
    matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ball = make_ball()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [2.5, 1]})
    for v, style, label in ((res["v_init"], "--", "first guess"), (res["v0"], "-", "optimized")):
        with ds.no_grad():
            x = throw(ball, ds.tensor(v, dtype=DTYPE), res["steps"], res["dt"], record="all").x.numpy()[:, 0]
        ax1.plot(x[:, 0], x[:, 1], style, label=f"{label}: v0 = ({v[0]:.2f}, {v[1]:.2f}) m/s")
    ax1.axhline(0.0, color="k", lw=1)
    ax1.plot(res["target"], 0.0, "rv", ms=12, label="target")
    ax1.set(xlabel="x (m)", ylabel="y (m)", title="throw with drag and one bounce", aspect="equal")
    ax1.legend(fontsize=8)
    ax2.semilogy(np.sqrt(res["losses"]))
    ax2.set(title="miss distance", xlabel="loss evaluation", ylabel="m")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
    fig.savefig(filename, dpi=100)
    plt.close(fig)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", type=float, default=6.0, help="x of the target on the ground (m)")
    p.add_argument("--time", type=float, default=3.0, help="simulated time (s); must cover two touchdowns")
    p.add_argument("--steps", type=int, default=600, help="time steps")
    p.add_argument("--iters", type=int, default=30, help="L-BFGS iterations")
    p.add_argument("--plot", default=DEFAULT_PLOT, help="where to save the plot ('none': no plot)")
    a = p.parse_args(argv)
    res = optimize(a.target, a.time, a.steps, a.iters)
    print(f"miss distance: {res['miss']:.2e} m (lands at x = {res['landing']:.4f} m after one bounce; "
          f"first guess missed by {np.sqrt(res['losses'][0]):.3f} m)")
    if a.plot.lower() != "none":
        if save_plot(res, a.plot):
            print(f"plot saved to {a.plot}")
        else:
            print("(matplotlib is not installed: no plot; pip install matplotlib)")
    return res


if __name__ == "__main__":
    main()
