"""An actuated elastic MPM robot learns to move right (after DiffTaichi's diffmpm).

A soft 2-D body (a slab on two legs, Neo-Hookean, simulated with ``physics.MPM``) has four
actuator groups, one per half leg. Each group's muscle stress along the vertical axis
follows an open-loop controller

    u_a(t) = tanh(sum_j W[a, j] sin(omega t + 2 pi j / n_sin) + b[a])

and the weights ``W [A, n_sin]`` and biases ``b [A]`` are trained with Adam to maximize how
far the body's centre of mass moves to the right in ``--steps`` steps. The gradient flows
from the final particle positions back through every MLS-MPM step (P2G / G2P ops with
hand-written backward) to the controls, with ``physics.simulate(..., checkpoint=k)`` so the
rollout's memory stays at about ``steps / k + k`` states. The floor is sticky (a node moving
into it stops), which gives the legs grip.

    python examples/mpm_robot.py                                  # 64^2 grid, 30 iterations
    python examples/mpm_robot.py --iters 5 --steps 120 --n-grid 32 --out none

The animation of the trained gait is saved to examples/output/mpm_robot.gif (needs pillow;
without it the script says so and carries on).
"""
from __future__ import annotations

import argparse
import math
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

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "output", "mpm_robot.gif")
DTYPE = ds.float64


def make_robot(n_grid):
    """Particle positions ``[P, 2]`` (spacing dx / 2, four per cell) and actuator groups ``[P]``
    (-1: passive body, 0..3: half legs) of a slab on two legs standing on the floor."""
    dx = 1.0 / n_grid
    h = dx / 2
    floor = 3 * dx
    # (x0, y0, width, height, group) in the unit domain, relative to the robot's corner
    rects = [(0.0, 0.07, 0.24, 0.06, -1),
             (0.0, 0.0, 0.04, 0.07, 0), (0.04, 0.0, 0.04, 0.07, 1),
             (0.16, 0.0, 0.04, 0.07, 2), (0.20, 0.0, 0.04, 0.07, 3)]
    pos, grp = [], []
    for x0, y0, w, hh, g in rects:
        nx, ny = max(1, round(w / h)), max(1, round(hh / h))
        X, Y = np.meshgrid((np.arange(nx) + 0.5) * w / nx, (np.arange(ny) + 0.5) * hh / ny, indexing="ij")
        pos.append(np.stack([X.ravel() + x0 + 0.1, Y.ravel() + y0 + floor + 0.25 * dx], 1))
        grp.append(np.full(nx * ny, g))
    return np.concatenate(pos), np.concatenate(grp).astype(np.int64)


def controls_from(W, b, steps, dt, omega):
    """``u [steps, A] = tanh(sin(omega t + phase_j) @ W^T + b)``."""
    n_sin = W.shape[1]
    t = np.arange(steps)[:, None] * dt
    basis = ds.tensor(np.sin(omega * t + 2 * math.pi * np.arange(n_sin)[None, :] / n_sin), dtype=DTYPE)
    return (basis @ W.mT + b).tanh()


def train(iters=30, steps=400, n_grid=64, dt=1e-3, lr=0.1, n_sin=4, omega=40.0, E=10.0,
          strength=4.0, checkpoint=None, seed=0, log=print):
    """Returns a dict: distances per iteration (centre-of-mass x displacement), the trained
    W, b, and the system."""
    rng = np.random.default_rng(seed)
    x0, groups = make_robot(n_grid)
    A = int(groups.max()) + 1
    robot = physics.MPM(ds.tensor(x0, dtype=DTYPE), n_grid=n_grid, E=E, nu=0.25, density=1.0,
                        gravity=(0.0, -3.8), boundary="sticky", actuators=groups, actuation_strength=strength)
    W = ds.tensor(rng.standard_normal((A, n_sin)) * 0.01, dtype=DTYPE, requires_grad=True)
    b = ds.zeros((A,), dtype=DTYPE, requires_grad=True)
    opt = ds.optim.Adam([W, b], lr=lr)
    ck = checkpoint if checkpoint is not None else max(1, round(math.sqrt(steps)))
    state0 = robot.initial_state()
    start_x = float(x0[:, 0].mean())
    distances = []
    t_start = time.time()
    for it in range(iters):
        opt.zero_grad()
        u = controls_from(W, b, steps, dt, omega)
        final = physics.simulate(robot, state0, steps, dt, integrator=physics.MPMIntegrator(), controls=u,
                                 checkpoint=ck)
        dist = final.x[:, 0].mean() - start_x
        (-dist).backward()
        opt.step()
        distances.append(dist.item())
        log(f"iter {it:3d}  distance {dist.item():+.4f}  ({time.time() - t_start:.1f} s)")
    return dict(distances=distances, W=W, b=b, robot=robot, steps=steps, dt=dt, omega=omega, groups=groups)


def rollout_frames(res, every=10):
    """Particle positions ``[frames, P, 2]`` of the trained controller (no gradients)."""
    with ds.no_grad():
        u = controls_from(res["W"], res["b"], res["steps"], res["dt"], res["omega"])
        traj = physics.simulate(res["robot"], res["robot"].initial_state(), res["steps"], res["dt"],
                                integrator=physics.MPMIntegrator(), controls=u, record=every)
    return traj.x.numpy(), traj.final


def save_gif(frames, groups, filename, size=320):
    """Animate ``frames [T, P, 2]`` (unit domain) to a GIF; False without pillow."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return False
    colours = [(220, 80, 60), (240, 150, 50), (60, 120, 220), (60, 190, 200)]
    images = []
    for f in frames:
        im = Image.new("RGB", (size, size), (250, 250, 245))
        d = ImageDraw.Draw(im)
        for p, g in zip(f, groups):
            px, py = p[0] * size, (1 - p[1]) * size
            d.ellipse([px - 1.5, py - 1.5, px + 1.5, py + 1.5], fill=(90, 90, 90) if g < 0 else colours[g % 4])
        images.append(im)
    os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
    images[0].save(filename, save_all=True, append_images=images[1:], duration=40, loop=0)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=30, help="Adam iterations")
    p.add_argument("--steps", type=int, default=400, help="MPM steps per rollout")
    p.add_argument("--n-grid", type=int, default=64, help="grid nodes per axis (particles: 4 per cell)")
    p.add_argument("--dt", type=float, default=1e-3)
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate")
    p.add_argument("--checkpoint", type=int, default=None, help="segment length (default sqrt(steps))")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=DEFAULT_OUT, help="where to save the GIF ('none': no GIF)")
    a = p.parse_args(argv)
    res = train(a.iters, a.steps, a.n_grid, a.dt, a.lr, checkpoint=a.checkpoint, seed=a.seed)
    frames, final = rollout_frames(res)
    final_distance = float(final.x[:, 0].mean().item() - frames[0][:, 0].mean())
    print(f"{res['robot'].n_particles} particles, {a.n_grid}^2 grid: distance {res['distances'][0]:+.4f} "
          f"before training, {final_distance:+.4f} after {a.iters} iterations")
    saved = None
    if a.out.lower() != "none":
        if save_gif(frames, res["groups"], a.out):
            saved = a.out
            print(f"animation saved to {a.out}")
        else:
            print("(pillow is not installed: no GIF; pip install pillow)")
    return dict(distances=res["distances"], final_distance=final_distance, n_particles=res["robot"].n_particles,
                gif=saved)


if __name__ == "__main__":
    main()
