"""Teach a 2-D mass-spring robot to walk to the right (after DiffTaichi's mass_spring.py).

The robot is a small lattice (``physics.MassSpring.lattice`` with a mask that leaves two
legs) standing on a frictional ground (``physics.GroundPlane``: smooth penalty contact with
regularized Coulomb friction). Every spring is a muscle: its rest length is
``L (1 + 0.25 u_j(t))``. The controller is DiffTaichi's open-loop oscillator, a small
``nn`` module: ``u(t) = tanh(W [sin(w t + 2 pi i / n)]_i + b)``, passed to ``simulate``
as ``controls=policy``. Adam maximizes the distance the robot's centre of mass travels to
the right in ``--steps`` steps (loss = minus that displacement), with gradients by reverse
mode through the whole rollout (contact and friction included).

Training follows DiffTaichi's recipe for a stable descent. Gradients through a 500-step
rollout with ground contact are spiky (their norm varies by orders of magnitude between
neighbouring policies), so the gradient is normalized to unit norm before every Adam step
and the learning rate is small (0.015, annealed to 0.001 on a cosine schedule): each update
then moves the weights by about ``lr``, whatever the size of the raw gradient, and the late
updates are too small to throw away a gait already found. With clipping to norm 1 and a
constant lr 0.03 instead, the walked distance rose and then fell back as updates overshot.
The policy that walked furthest is kept. ``DT`` = 2 ms resolves the stiffest oscillation (ground contact, k = 2000
on 0.1 kg nodes: omega dt ~ 0.3, well inside symplectic Euler's limit of 2).

    python examples/mass_spring_robot.py                          # 40 iterations (~30 s), GIF
    python examples/mass_spring_robot.py --iters 5 --steps 200 --gif none

The GIF (examples/output/mass_spring_robot.gif) needs pillow; without it the script says
so and carries on.
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
import diffsim.nn as nn
from diffsim import physics

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_GIF = os.path.join(HERE, "output", "mass_spring_robot.gif")
DTYPE = ds.float64
DT = 2e-3


def make_robot():
    """A 5x3 lattice (spacing 0.1) without the middle bottom node: a body on two legs. Every
    spring is an actuator."""
    mask = np.ones((5, 3), bool)
    mask[2, 0] = False
    ground = physics.GroundPlane((0.0, 1.0), offset=0.0, stiffness=2000.0, damping=10.0, friction=1.0,
                                 smoothing=2e-3, slip=0.05, dtype=DTYPE)
    probe = physics.MassSpring.lattice((5, 3), spacing=0.1, mask=mask)
    return physics.MassSpring.lattice((5, 3), spacing=0.1, origin=(0.0, 0.01), mask=mask, stiffness=300.0,
                                      damping=0.5, mass=0.1, colliders=[ground],
                                      actuators=np.arange(probe.n_springs), actuation=0.25, dtype=DTYPE)


class Oscillator(nn.Module):
    """Open-loop controller ``u(t) = tanh(Linear(sin(omega t + 2 pi i / n_sin)))``: [n_act]."""

    def __init__(self, n_act, n_sin=4, omega=2 * math.pi * 2.5):
        super().__init__()
        self.omega, self.n_sin = omega, n_sin
        self.phases = np.arange(n_sin) * 2 * math.pi / n_sin
        self.linear = nn.Linear(n_sin, n_act)
        nn.init.normal_(self.linear.weight, std=0.3)
        nn.init.zeros_(self.linear.bias)

    def forward(self, t, state=None):
        feats = ds.tensor(np.sin(self.omega * t + self.phases), dtype=self.linear.weight.dtype)
        return self.linear(feats).tanh()


def distance(robot, final):
    """How far the centre of mass moved to the right (0-d Tensor)."""
    return final.x[:, 0].mean() - robot.positions[:, 0].mean()


def normalize_grads(params, eps=1e-12):
    """Scale the gradients of ``params`` to unit total norm; returns the norm before."""
    params = [p for p in params if p.grad is not None]
    norm = math.sqrt(sum(float((p.grad * p.grad).sum()) for p in params))
    if math.isfinite(norm):
        for p in params:
            p.grad = p.grad / (norm + eps)
    else:                       # a diverged rollout: skip this update
        for p in params:
            p.grad = None
    return norm


def train(iters=40, steps=500, lr=0.015, seed=0, log=print, lr_min=1e-3):
    """Returns (distances per iteration (before each update), robot, policy). Gradients are
    normalized to unit norm (contact makes long-rollout gradients spiky; see the module
    docstring), the learning rate is annealed from ``lr`` to ``lr_min`` (cosine), and the policy
    that walked furthest is kept."""
    ds.manual_seed(seed)
    robot = make_robot()
    policy = Oscillator(robot.n_springs).to(DTYPE)
    opt = ds.optim.Adam(policy.parameters(), lr=lr)
    sched = ds.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(iters, 1), eta_min=min(lr_min, lr))
    dists = []
    best = (-math.inf, None)
    start = time.time()
    for it in range(iters):
        opt.zero_grad()
        final = physics.simulate(robot, robot.rest_state(), steps, DT, controls=policy)
        d = distance(robot, final)
        (-d).backward()
        dists.append(d.item())
        if dists[-1] > best[0]:
            best = (dists[-1], {k: v.detach().clone() for k, v in policy.state_dict().items()})
        normalize_grads(policy.parameters())
        opt.step()
        sched.step()
        if it % 5 == 0 or it == iters - 1:
            log(f"iter {it:4d}  distance {dists[-1]:+.4f} m  ({time.time() - start:.1f} s)")
    policy.load_state_dict(best[1])
    return dists, robot, policy


def save_gif(robot, policy, steps, filename, every=10, size=(480, 240), scale=400.0):
    """Render the gait with pillow; False if pillow is missing."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return False
    with ds.no_grad():
        traj = physics.simulate(robot, robot.rest_state(), steps, DT, controls=policy, record=every)
    xs = traj.x.numpy()
    w, h = size
    frames = []
    for x in xs:
        img = Image.new("RGB", size, "white")
        dr = ImageDraw.Draw(img)
        cx = x[:, 0].mean()
        to_px = lambda p: (w / 2 + (p[0] - cx) * scale, h - 30 - p[1] * scale)  # noqa: E731
        dr.line([(0, h - 30), (w, h - 30)], fill="black", width=2)
        for m in np.arange(math.floor(cx - 1), cx + 1, 0.1):       # ground marks move with the camera
            px = w / 2 + (m - cx) * scale
            dr.line([(px, h - 30), (px - 8, h - 20)], fill="gray")
        for a, b in robot.springs:
            dr.line([to_px(x[a]), to_px(x[b])], fill=(40, 90, 200), width=2)
        for p in x:
            q = to_px(p)
            dr.ellipse([q[0] - 3, q[1] - 3, q[0] + 3, q[1] + 3], fill=(200, 60, 40))
        frames.append(img)
    os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
    frames[0].save(filename, save_all=True, append_images=frames[1:], duration=40, loop=0)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=40, help="Adam iterations")
    p.add_argument("--steps", type=int, default=500, help=f"simulated steps per episode (dt = {DT})")
    p.add_argument("--lr", type=float, default=0.015,
                   help="initial Adam learning rate (gradients are normalized; cosine decay to 0.001)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gif", default=DEFAULT_GIF, help="where to save the gait GIF ('none': no GIF)")
    a = p.parse_args(argv)
    dists, robot, policy = train(a.iters, a.steps, a.lr, a.seed)
    with ds.no_grad():
        final = distance(robot, physics.simulate(robot, robot.rest_state(), a.steps, DT, controls=policy)).item()
    print(f"distance walked in {a.steps * DT:.2f} s: first iteration {dists[0]:+.4f} m, after training {final:+.4f} m")
    if a.gif.lower() != "none":
        if save_gif(robot, policy, a.steps, a.gif):
            print(f"GIF saved to {a.gif}")
        else:
            print("(pillow is not installed: no GIF; pip install pillow)")
    return dict(distances=dists, final_distance=final)


if __name__ == "__main__":
    main()
