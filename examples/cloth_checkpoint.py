"""Fit a cloth's stiffness through a long rollout, storing only checkpoints.

A 2-D grid of particles joined by structural and shear springs hangs from one edge and
falls under gravity (workload W2 of the project's benchmarks: semi-implicit Euler, the
spring forces scattered onto particles with ``ds.segment_sum``). We know where the cloth is
after T steps for an unknown stiffness, and recover that stiffness by gradient descent on
log(k), differentiating through all T steps. ``ds.checkpoint_sequential`` keeps only about
sqrt(T) states and recomputes segments during backward, so memory does not grow with T.

    python examples/cloth_checkpoint.py                # N=12 grid, 300 steps, 12 iterations
    python examples/cloth_checkpoint.py --steps 100 --iters 3 --plot none
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
DEFAULT_PLOT = os.path.join(HERE, "output", "cloth_checkpoint.png")


def make_cloth(n):
    """Rest positions x0 [P, 3] of an n x n grid in the x-z plane, spring ends a, b [S]
    (int64), rest lengths L [S], and free_mask [P, 1] (0 on the pinned edge j == 0)."""
    h = 1.0 / (n - 1)
    ii, jj = ds.meshgrid(ds.arange(n), ds.arange(n), indexing="ij")
    x0 = ds.stack([ii.double() * h, ds.zeros(n, n, dtype=ds.float64), jj.double() * h], -1).reshape(-1, 3)
    idx = ds.arange(n * n).reshape(n, n)
    pairs = [(idx[:-1, :], idx[1:, :]), (idx[:, :-1], idx[:, 1:]),        # structural
             (idx[:-1, :-1], idx[1:, 1:]), (idx[1:, :-1], idx[:-1, 1:])]  # shear
    a = ds.cat([p.reshape(-1) for p, _ in pairs])
    b = ds.cat([q.reshape(-1) for _, q in pairs])
    L = (x0[b] - x0[a]).norm(dim=1)
    free = (jj.reshape(-1, 1) != 0).double()
    return x0, a, b, L, free


def rollout(log_k, cloth, steps, dt=1e-3, mass=0.01, segments=None):
    """Final positions [P, 3] after ``steps`` steps with stiffness exp(log_k) on every spring."""
    x0, a, b, L, free = cloth
    P = x0.shape[0]
    k = log_k.exp()
    gravity = ds.tensor([0.0, -9.8, 0.0], dtype=ds.float64)
    damp = math.exp(-dt * 1.0)
    ab = ds.cat([a, b])

    def step(state):
        x, v = state
        d = x[b] - x[a]                                  # [S, 3]
        l = d.norm(dim=1, keepdim=True)                  # [S, 1]
        f = k * (l - L.unsqueeze(1)) / l * d             # force on a, [S, 3]
        F = ds.segment_sum(ds.cat([f, -f]), ab, P) + mass * gravity
        v = (v * damp + dt * F / mass) * free
        return x + dt * v, v

    x, _ = ds.checkpoint_sequential(step, steps, (x0, ds.zeros_like(x0)), segments)
    return x


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=12, help="grid size")
    p.add_argument("--steps", type=int, default=300, help="time steps per rollout")
    p.add_argument("--iters", type=int, default=12, help="gradient-descent iterations")
    p.add_argument("--plot", default=DEFAULT_PLOT, help="output PNG path, or 'none'")
    args = p.parse_args(argv)

    cloth = make_cloth(args.n)
    true_k = 800.0
    with ds.no_grad():
        target = rollout(ds.tensor(math.log(true_k), dtype=ds.float64), cloth, args.steps)

    def loss_of(x):
        return ((x - target) ** 2).sum(dim=1).mean()

    # gradient descent on log k with a backtracking (Armijo) line search
    log_k = ds.tensor(math.log(200.0), dtype=ds.float64, requires_grad=True)
    losses, ks = [], [200.0]
    step = None
    for it in range(args.iters):
        loss = loss_of(rollout(log_k, cloth, args.steps))
        loss.backward()                       # through all steps, recomputing segments
        g = log_k.grad.item()
        log_k.grad = None
        losses.append(loss.item())
        if step is None:
            step = 0.5 / abs(g)               # first trial moves log k by 0.5
        with ds.no_grad():
            while step * abs(g) > 1e-8:
                trial = log_k - step * g
                if loss_of(rollout(trial, cloth, args.steps)).item() <= losses[-1] - 1e-4 * step * g * g:
                    log_k.copy_(trial)
                    step *= 1.5
                    break
                step *= 0.5
        ks.append(math.exp(log_k.item()))
    print(f"stiffness: start {ks[0]:.1f}, fitted {math.exp(log_k.item()):.1f}, true {true_k:.1f}")
    print(f"loss {losses[0]:.3e} -> {losses[-1]:.3e} over {args.iters} iterations of {args.steps} steps")

    if args.plot != "none":
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed: no plot (pip install diffsim[viz])")
            return losses, math.exp(log_k.item())
        os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
        with ds.no_grad():
            final = rollout(log_k, cloth, args.steps).numpy()
            start = rollout(ds.tensor(math.log(200.0), dtype=ds.float64), cloth, args.steps).numpy()
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        a1.semilogy(losses, "o-")
        a1.set_xlabel("iteration")
        a1.set_ylabel("loss (mean squared distance to target)")
        mid = [(args.n // 2) * args.n + j for j in range(args.n)]   # a line away from the pin
        for pts, style, label in ((target.numpy(), "o-", f"target (k={true_k:.0f})"),
                                  (start, "s--", "initial guess (k=200)"),
                                  (final, "x:", f"fitted (k={ks[-1]:.0f})")):
            a2.plot(pts[mid, 2], pts[mid, 1], style, label=label)
        a2.set_xlabel("distance from the pinned edge (z)")
        a2.set_ylabel("height (y)")
        a2.set_title(f"middle line of the cloth after {args.steps} steps")
        a2.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"saved {args.plot}")
    return losses, math.exp(log_k.item())


if __name__ == "__main__":
    main()
