"""Recover a spatially varying conductivity from temperature measurements (inverse heat problem).

A square plate (``--n`` x ``--n`` cells, unit size, walls held at 0 degrees: Dirichlet) has an
unknown conductivity ``k(x, y)``: a background of 1 with a conductive disc (k = 3) and a
less conductive band (k = 0.4). Two experiments start from different hot spots and evolve by
``du/dt = div(k grad u)`` (``physics.grid.HeatEquation``, Crank-Nicolson, one
``sparse.solve`` per step); the temperature of every cell is measured after each of
``--steps`` steps, with 0.2% noise.

The conductivity is recovered from the measurements alone: ``k = exp(theta)`` per cell, from
``k = 1`` everywhere, minimizing the misfit plus a small smoothness penalty
``|grad theta|^2`` with Adam. Gradients w.r.t. all ``n^2`` values of ``theta`` come from
reverse mode through the Crank-Nicolson steps, whose sparse solves are differentiated by
adjoint solves (``diffsim.sparse``), and through the matrix assembly.

    python examples/heat_inverse.py                 # 24 x 24, 150 iterations, saves a plot
    python examples/heat_inverse.py --n 12 --iters 30 --plot none

The plot (examples/output/heat_inverse.png: true, recovered, error, loss) needs
matplotlib; without it the script says so and carries on.
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
from diffsim.physics import grid as G

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PLOT = os.path.join(HERE, "output", "heat_inverse.png")
DTYPE = ds.float64


def true_conductivity(grid):
    """k [n, n]: background 1, a disc of 3, a band of 0.4."""
    X = grid.centers().numpy()
    x, y = X[..., 0], X[..., 1]
    k = np.ones(grid.shape)
    k[(x - 0.35) ** 2 + (y - 0.6) ** 2 < 0.15 ** 2] = 3.0
    k[(x > 0.6) & (x < 0.75) & (y > 0.15) & (y < 0.8)] = 0.4
    return k


def initial_temperatures(grid):
    """Two experiments: hot spots in different places, [2, n, n]."""
    X = grid.centers().numpy()
    x, y = X[..., 0], X[..., 1]
    a = np.exp(-((x - 0.3) ** 2 + (y - 0.3) ** 2) / 0.05)
    b = np.exp(-((x - 0.7) ** 2 + (y - 0.65) ** 2) / 0.05) + 0.5 * np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.2)
    return np.stack([a, b])


def simulate(grid, k, u0s, dt, steps):
    """Temperatures after each step of each experiment: a list of Tensors [n, n]."""
    heat = G.HeatEquation(grid, k, bc="dirichlet", method="crank_nicolson")
    return [u for u0 in u0s for u in heat.rollout(u0, dt, steps, trajectory=True)]


def recover(n=24, steps=6, dt=0.004, iters=150, lr=0.1, smooth=1e-6, noise=2e-3, seed=0, log=print):
    """Returns dict(losses, k_true [n,n], k_fit [n,n], rel_err_initial, rel_err_final)."""
    rng = np.random.default_rng(seed)
    grid = G.Grid((n, n), spacing=1.0 / n)
    k_true = true_conductivity(grid)
    u0s = [ds.tensor(u, dtype=DTYPE) for u in initial_temperatures(grid)]
    with ds.no_grad():
        clean = simulate(grid, ds.tensor(k_true, dtype=DTYPE), u0s, dt, steps)
    data = [m + ds.tensor(noise * rng.standard_normal(grid.shape), dtype=DTYPE) for m in clean]
    theta = ds.zeros(n, n, dtype=DTYPE, requires_grad=True)          # k = exp(theta) = 1
    opt = ds.optim.Adam([theta], lr=lr)
    losses = []
    start = time.time()
    for it in range(1, iters + 1):
        opt.zero_grad()
        pred = simulate(grid, theta.exp(), u0s, dt, steps)
        misfit = sum(((p - d) ** 2).mean() for p, d in zip(pred, data)) / len(data)
        gt = G.gradient(theta, grid, "neumann", scheme="forward")
        loss = misfit + smooth * (gt ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if it == 1 or it % max(1, iters // 6) == 0 or it == iters:
            log(f"iter {it:4d}  loss {loss.item():.3e}  misfit {misfit.item():.3e}  ({time.time() - start:.1f} s)")
    k_fit = np.exp(theta.detach().numpy())
    rel = lambda k: float(np.linalg.norm(k - k_true) / np.linalg.norm(k_true))  # noqa: E731
    return dict(losses=losses, k_true=k_true, k_fit=k_fit, rel_err_initial=rel(np.ones_like(k_true)),
                rel_err_final=rel(k_fit))


def save_plot(res, filename):
    """True / recovered conductivity, error and loss; False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(1, 4, figsize=(17, 4))
    vmin, vmax = res["k_true"].min(), res["k_true"].max()
    for a, img, title in ((ax[0], res["k_true"], "true conductivity"), (ax[1], res["k_fit"], "recovered")):
        im = a.imshow(img.T, origin="lower", vmin=vmin, vmax=vmax, cmap="viridis")
        a.set_title(title)
        fig.colorbar(im, ax=a)
    im = ax[2].imshow(np.abs(res["k_fit"] - res["k_true"]).T, origin="lower", cmap="magma")
    ax[2].set_title("|error|")
    fig.colorbar(im, ax=ax[2])
    ax[3].semilogy(res["losses"])
    ax[3].set(title="loss", xlabel="Adam iteration")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
    fig.savefig(filename, dpi=90)
    plt.close(fig)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=24, help="cells per side")
    p.add_argument("--steps", type=int, default=6, help="Crank-Nicolson steps (measurements) per experiment")
    p.add_argument("--dt", type=float, default=0.004)
    p.add_argument("--iters", type=int, default=150, help="Adam iterations")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--smooth", type=float, default=1e-6, help="weight of the smoothness penalty")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default=DEFAULT_PLOT, help="where to save the plot ('none': no plot)")
    a = p.parse_args(argv)
    res = recover(a.n, a.steps, a.dt, a.iters, a.lr, a.smooth, seed=a.seed)
    print(f"relative conductivity error: initial guess {res['rel_err_initial']:.3f} -> "
          f"recovered {res['rel_err_final']:.3f}; loss {res['losses'][0]:.3e} -> {res['losses'][-1]:.3e}")
    if a.plot.lower() != "none":
        if save_plot(res, a.plot):
            print(f"plot saved to {a.plot}")
        else:
            print("(matplotlib is not installed: no plot; pip install matplotlib)")
    return res


if __name__ == "__main__":
    main()
