"""diffsim quickstart: tensors, gradients, and fitting a parameter of a simulation.

Part 1 builds a small op chain, runs backward and prints the gradient next to the
analytic one. Part 2 simulates a projectile with quadratic air drag by time stepping
(semi-implicit Euler, written with ordinary diffsim ops, stopping when the ball lands) and
fits the launch angle with plain gradient descent so that it lands on a target. The
gradient flows through every time step and through the landing-point interpolation.

    python examples/quickstart.py                 # 20 gradient-descent steps, saves a plot
    python examples/quickstart.py --steps 5 --plot none

The plot (examples/output/quickstart.png) needs matplotlib; without it the script says so
and carries on.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

try:
    import diffsim as ds
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import diffsim as ds

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PLOT = os.path.join(HERE, "output", "quickstart.png")


# ---------------------------------------------------------------- part 1: an op chain

def op_chain_demo():
    x = ds.tensor([0.5, 1.0, 2.0], dtype=ds.float64, requires_grad=True)
    y = (x.sin() * x).sum()                 # y = sum_i x_i sin(x_i)
    y.backward()                            # dy/dx_i = sin(x_i) + x_i cos(x_i)
    print("part 1: y = sum(x * sin(x)) at x =", x.tolist())
    print("  y        =", round(y.item(), 6))
    print("  x.grad   =", x.grad)
    print("  analytic =", [round(math.sin(v) + v * math.cos(v), 6) for v in x.tolist()])


# ---------------------------------------------------------------- part 2: a simulation

def simulate(theta, v0=20.0, drag=0.02, g=9.81, dt=0.01, max_steps=10_000):
    """Fly a projectile launched at angle ``theta`` (0-d tensor, radians) with speed ``v0``
    under gravity and quadratic drag (acceleration ``-drag * |v| * v``) until it lands.

    Returns (landing distance as a 0-d tensor, trajectory as a list of (x, y) floats)."""
    x = ds.zeros((), dtype=theta.dtype)
    y = ds.zeros((), dtype=theta.dtype)
    vx, vy = v0 * ds.cos(theta), v0 * ds.sin(theta)
    path = [(0.0, 0.0)]
    for _ in range(max_steps):
        speed = ds.sqrt(vx * vx + vy * vy)
        vx = vx - dt * drag * speed * vx    # velocity first (semi-implicit Euler) ...
        vy = vy - dt * (g + drag * speed * vy)
        x_prev, y_prev = x, y
        x = x + dt * vx                     # ... then position with the new velocity
        y = y + dt * vy
        path.append((x.item(), y.item()))
        if y.item() < 0:                    # ordinary Python control flow: it landed
            break
    else:
        raise RuntimeError("simulate: the projectile did not land; raise max_steps")
    # where the last step crossed y = 0 (linear interpolation, differentiable)
    landing = x_prev + (x - x_prev) * y_prev / (y_prev - y)
    return landing, path


def fit_angle(target=20.0, theta0=0.2, lr=0.1, steps=30):
    """Plain gradient descent on the launch angle so that the projectile lands at ``target``.
    Returns a dict with the history and the first and last trajectories."""
    theta = ds.tensor(theta0, dtype=ds.float64, requires_grad=True)
    history = []
    first_path = None
    for step in range(steps + 1):
        landing, path = simulate(theta)
        loss = ((landing - target) / target) ** 2
        history.append((theta.item(), landing.item(), loss.item()))
        if first_path is None:
            first_path = path
        if step == steps:
            break
        theta.grad = None
        loss.backward()
        with ds.no_grad():
            theta -= lr * theta.grad        # the update itself is not recorded
    return dict(target=target, history=history, first_path=first_path, last_path=path)


def save_plot(result, filename):
    """Trajectories before and after fitting, and the loss curve; False if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    hist = result["history"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for path, label in ((result["first_path"], f"initial, angle {math.degrees(hist[0][0]):.1f} deg"),
                        (result["last_path"], f"fitted, angle {math.degrees(hist[-1][0]):.1f} deg")):
        ax1.plot([p[0] for p in path], [p[1] for p in path], label=label)
    ax1.axvline(result["target"], color="k", ls="--", lw=1, label="target")
    ax1.set(xlabel="x [m]", ylabel="y [m]", title="projectile with drag")
    ax1.set_ylim(bottom=0)
    ax1.legend()
    ax2.semilogy([h[2] for h in hist])
    ax2.set(xlabel="gradient-descent step", ylabel="loss", title="fitting the launch angle")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
    fig.savefig(filename, dpi=100)
    plt.close(fig)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="gradient-descent steps (default 20)")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate")
    p.add_argument("--target", type=float, default=20.0, help="target landing distance [m]")
    p.add_argument("--plot", default=DEFAULT_PLOT, help="where to save the plot ('none': no plot)")
    a = p.parse_args(argv)

    op_chain_demo()

    print(f"\npart 2: fit the launch angle so that the projectile lands at {a.target} m")
    res = fit_angle(target=a.target, lr=a.lr, steps=a.steps)
    hist = res["history"]
    for i, (theta, landing, loss) in enumerate(hist):
        if i % max(1, a.steps // 10) == 0 or i == len(hist) - 1:
            print(f"  step {i:3d}: angle {math.degrees(theta):6.2f} deg, lands at {landing:7.3f} m, "
                  f"loss {loss:.3e}")
    print(f"  loss {hist[0][2]:.3e} -> {hist[-1][2]:.3e}")

    if a.plot.lower() != "none":
        if save_plot(res, a.plot):
            print(f"  plot saved to {a.plot}")
        else:
            print("  (matplotlib is not installed: no plot; pip install matplotlib)")
    return res


if __name__ == "__main__":
    main()
