"""Recover the per-spring stiffness of a hanging cloth from a noisy observed trajectory (L-BFGS).

A square cloth (``physics.MassSpring.cloth``, structural + shear springs) hangs in the
xy-plane from its top row. Each spring has its own stiffness ``k_s``; the "true" ones are
log-normal around 60. Released with a known random initial velocity, the cloth swings and
stretches under gravity; we observe every ``--record``-th state of the positions with
Gaussian noise. Starting from a uniform guess, L-BFGS (``diffsim.optim.LBFGS``, strong-Wolfe
line search) fits ``log k`` (so stiffnesses stay positive and the problem is well scaled)
by minimizing the mean squared distance between simulated and observed positions;
gradients come from reverse mode through the whole rollout.

    python examples/fit_cloth_stiffness.py                 # 6x6 cloth, 110 springs, 10-30 s
    python examples/fit_cloth_stiffness.py --n 4 --steps 100 --iters 15 --plot none

The plot (examples/output/fit_cloth_stiffness.png: loss per iteration, fitted vs true
stiffness, the cloth) needs matplotlib; without it the script says so and carries on.
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

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PLOT = os.path.join(HERE, "output", "fit_cloth_stiffness.png")
DTYPE = ds.float64
K_MEAN = 60.0


def make_problem(n, steps, dt, record, noise, seed):
    """The cloth (stiffness to be set), initial state, true stiffness [S] and the noisy
    observed positions [R, P, 3] (R = steps // record + 1 records)."""
    rng = np.random.default_rng(seed)
    cloth = physics.MassSpring.cloth(n, size=0.5, hanging=True, pinned="top-row", stiffness=K_MEAN,
                                     damping=0.01, mass=0.01, drag=0.5, dtype=DTYPE)
    k_true = K_MEAN * np.exp(0.4 * rng.normal(size=cloth.n_springs))
    v0 = rng.normal(size=(cloth.n_particles, 3)) * 0.5
    v0[cloth.pinned] = 0.0
    state0 = cloth.initial_state(v=ds.tensor(v0, dtype=DTYPE))
    cloth.stiffness = ds.tensor(k_true, dtype=DTYPE)
    with ds.no_grad():
        traj = physics.simulate(cloth, state0, steps, dt, record=record)
    observed = traj.x.numpy() + noise * rng.normal(size=traj.x.shape)
    return cloth, state0, k_true, ds.tensor(observed, dtype=DTYPE)


def fit(n=6, steps=300, dt=2e-3, record=5, noise=5e-4, iters=60, seed=0, log=print):
    """Fit ``log k`` by L-BFGS. Returns a dict: losses (per closure evaluation), k_true,
    k_fit, k_init, error_init and error_fit (median relative error |k - k_true| / k_true),
    and what the plot needs."""
    cloth, state0, k_true, observed = make_problem(n, steps, dt, record, noise, seed)
    log_k = ds.full((cloth.n_springs,), float(np.log(K_MEAN)), dtype=DTYPE, requires_grad=True)
    opt = ds.optim.LBFGS([log_k], lr=1.0, max_iter=iters, history_size=20, line_search_fn="strong_wolfe",
                         tolerance_grad=1e-12, tolerance_change=1e-14)
    losses = []
    start = time.time()

    def closure():
        opt.zero_grad()
        cloth.stiffness = log_k.exp()
        traj = physics.simulate(cloth, state0, steps, dt, record=record)
        loss = ((traj.x - observed) ** 2).sum(-1).mean()
        loss.backward()
        losses.append(loss.item())
        if len(losses) % 10 == 1:
            log(f"eval {len(losses):4d}  loss {losses[-1]:.4e}  ({time.time() - start:.1f} s)")
        return loss
    opt.step(closure)
    k_fit = np.exp(log_k.detach().numpy())

    def err(k):
        return float(np.median(np.abs(k - k_true) / k_true))
    out = dict(losses=losses, k_true=k_true, k_fit=k_fit, k_init=np.full_like(k_true, K_MEAN),
               error_init=err(np.full_like(k_true, K_MEAN)), error_fit=err(k_fit), cloth=cloth, observed=observed,
               noise_floor=3 * noise ** 2, seconds=time.time() - start)
    log(f"{len(losses)} evaluations in {out['seconds']:.1f} s; loss {losses[0]:.3e} -> {losses[-1]:.3e} "
        f"(noise floor {out['noise_floor']:.1e})")
    log(f"median relative stiffness error: initial guess {out['error_init']:.3f} -> fitted {out['error_fit']:.3f}")
    return out


def save_plot(res, filename):
    """Loss, fitted vs true stiffness and the observed cloth; False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig = plt.figure(figsize=(15, 4.5))
    ax1 = fig.add_subplot(1, 3, 1)
    ax1.semilogy(res["losses"])
    ax1.axhline(res["noise_floor"], color="gray", ls=":", label="noise level")
    ax1.set(title="loss (L-BFGS evaluations)", xlabel="evaluation")
    ax1.legend()
    ax2 = fig.add_subplot(1, 3, 2)
    lo, hi = res["k_true"].min() * 0.9, res["k_true"].max() * 1.1
    ax2.plot([lo, hi], [lo, hi], "k:")
    ax2.scatter(res["k_true"], res["k_fit"], s=10, label="fitted")
    ax2.scatter(res["k_true"], res["k_init"], s=6, c="gray", alpha=0.5, label="initial guess")
    ax2.set(title="stiffness per spring", xlabel="true k", ylabel="k")
    ax2.legend()
    ax3 = fig.add_subplot(1, 3, 3, projection="3d")
    cloth, obs = res["cloth"], res["observed"].numpy()
    for frame, colour in ((0, "tab:gray"), (obs.shape[0] // 2, "tab:blue"), (obs.shape[0] - 1, "tab:red")):
        x = obs[frame]
        for a, b in cloth.springs[::2]:
            ax3.plot(*zip(x[a][[0, 2, 1]], x[b][[0, 2, 1]]), color=colour, lw=0.6)   # y drawn upward
    ax3.set(title="observed cloth (start, middle, end)", xlabel="x", ylabel="z", zlabel="y")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
    fig.savefig(filename, dpi=100)
    plt.close(fig)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=6, help="cloth of n x n particles")
    p.add_argument("--steps", type=int, default=300, help="simulated steps")
    p.add_argument("--dt", type=float, default=2e-3)
    p.add_argument("--record", type=int, default=5, help="observe every n-th state")
    p.add_argument("--noise", type=float, default=5e-4, help="std of the observation noise")
    p.add_argument("--iters", type=int, default=60, help="L-BFGS iterations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default=DEFAULT_PLOT, help="where to save the plot ('none': no plot)")
    a = p.parse_args(argv)
    res = fit(a.n, a.steps, a.dt, a.record, a.noise, a.iters, a.seed)
    if a.plot.lower() != "none":
        if save_plot(res, a.plot):
            print(f"plot saved to {a.plot}")
        else:
            print("(matplotlib is not installed: no plot; pip install matplotlib)")
    return res


if __name__ == "__main__":
    main()
