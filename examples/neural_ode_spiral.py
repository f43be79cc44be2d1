"""Fit a neural ODE to a spiral with the adjoint method (after torchdiffeq's ode_demo).

The data is one trajectory of the cubic spiral ``dy/dt = y**3 @ A`` with
``A = [[-0.1, 2.0], [-2.0, -0.1]]`` from ``y0 = [2, 0]`` over ``t in [0, 25]``. The model is
``dy/dt = MLP(y**3)`` (2 -> 50 -> 2, tanh), integrated with ``diffsim.physics.odeint``
(dopri5) and trained with Adam (cosine learning-rate decay) on mini-batches of short
subsequences (random start points, ``--batch-time`` consecutive samples each). Gradients come from the adjoint method
(``adjoint=True``): the backward pass integrates the adjoint ODE backward in time, so memory
does not grow with the number of solver steps.

    python examples/neural_ode_spiral.py                     # 300 iterations, saves a plot
    python examples/neural_ode_spiral.py --iters 40 --plot none

The plot (examples/output/neural_ode_spiral.png: true vs fitted trajectory) needs
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
import diffsim.nn as nn
from diffsim.physics import odeint

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PLOT = os.path.join(HERE, "output", "neural_ode_spiral.png")
DTYPE = ds.float64
TRUE_A = [[-0.1, 2.0], [-2.0, -0.1]]


class Lambda:
    """The true dynamics: dy/dt = y**3 @ A."""

    def __init__(self):
        self.A = ds.tensor(TRUE_A, dtype=DTYPE)

    def __call__(self, t, y):
        return (y ** 3) @ self.A


class ODEFunc(nn.Module):
    """The model: dy/dt = MLP(y**3); y [..., 2] -> [..., 2]."""

    def __init__(self, hidden=50):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 2))
        for m in self.net.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=0.1)
                nn.init.zeros_(m.bias)

    def forward(self, t, y):
        return self.net(y ** 3)


def make_data(data_size, t_end=25.0):
    """The true trajectory: t [N], y [N, 1, 2]."""
    t = ds.linspace(0.0, t_end, data_size, dtype=DTYPE)
    y0 = ds.tensor([[2.0, 0.0]], dtype=DTYPE)
    with ds.no_grad():
        y = odeint(Lambda(), y0, t, method="dopri5", rtol=1e-8, atol=1e-10)
    return t, y0, y


def get_batch(rng, t, y, batch_time, batch_size):
    """Random subsequences: y0 [M, 1, 2], t [batch_time], y [batch_time, M, 1, 2]."""
    n = t.shape[0]
    s = rng.choice(np.arange(n - batch_time), size=batch_size, replace=False)
    idx = ds.tensor(s, dtype=ds.int64)
    batch_y0 = y[idx]
    batch_t = t[:batch_time]
    batch_y = ds.stack([y[idx + i] for i in range(batch_time)], dim=0)
    return batch_y0, batch_t, batch_y


def train(iters=300, data_size=1000, batch_time=10, batch_size=20, lr=1e-2, rtol=1e-6, atol=1e-8,
          eval_every=50, seed=0, log=print):
    """Returns (losses per iteration, model, (t, true_y, y0))."""
    ds.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t, y0, true_y = make_data(data_size)
    func = ODEFunc().to(DTYPE)
    opt = ds.optim.Adam(func.parameters(), lr=lr)
    sched = ds.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iters, eta_min=lr * 0.05)
    losses = []
    start = time.time()
    for it in range(1, iters + 1):
        opt.zero_grad()
        by0, bt, by = get_batch(rng, t, true_y, batch_time, batch_size)
        pred = odeint(func, by0, bt, method="dopri5", rtol=rtol, atol=atol, adjoint=True)
        loss = (pred - by).abs().mean()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if it % eval_every == 0 or it == 1 or it == iters:
            with ds.no_grad():
                full = odeint(func, y0, t, method="dopri5", rtol=rtol, atol=atol)
                full_loss = (full - true_y).abs().mean().item()
            log(f"iter {it:5d}  batch loss {loss.item():.4f}  full-trajectory loss {full_loss:.4f}  "
                f"({time.time() - start:.1f} s)")
    return losses, func, (t, true_y, y0)


def save_plot(func, data, losses, filename):
    """True vs fitted trajectory (phase plane and time series) and the loss; False without
    matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    t, true_y, y0 = data
    with ds.no_grad():
        fit = odeint(func, y0, t, method="dopri5", rtol=1e-6, atol=1e-8)
    tn, ty, fy = t.numpy(), true_y.numpy()[:, 0], fit.numpy()[:, 0]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.5))
    ax1.plot(ty[:, 0], ty[:, 1], "g-", label="true")
    ax1.plot(fy[:, 0], fy[:, 1], "b--", label="neural ODE")
    ax1.set(title="phase portrait", xlabel="x", ylabel="y")
    ax1.legend()
    for j, (name, colour) in enumerate(zip("xy", ("tab:green", "tab:orange"))):
        ax2.plot(tn, ty[:, j], "-", color=colour, label=f"true {name}")
        ax2.plot(tn, fy[:, j], "--", color=colour, alpha=0.8, label=f"fit {name}")
    ax2.set(title="trajectories", xlabel="t")
    ax2.legend()
    ax3.semilogy(losses)
    ax3.set(title="training loss (L1, mini-batches)", xlabel="iteration")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
    fig.savefig(filename, dpi=100)
    plt.close(fig)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=300, help="training iterations")
    p.add_argument("--data-size", type=int, default=1000, help="samples of the true trajectory")
    p.add_argument("--batch-time", type=int, default=10, help="length of each subsequence")
    p.add_argument("--batch-size", type=int, default=20, help="subsequences per mini-batch")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    p.add_argument("--eval-every", type=int, default=50, help="print the full-trajectory loss this often")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default=DEFAULT_PLOT, help="where to save the plot ('none': no plot)")
    a = p.parse_args(argv)
    losses, func, data = train(a.iters, a.data_size, a.batch_time, a.batch_size, a.lr,
                               eval_every=a.eval_every, seed=a.seed)
    print(f"mean batch loss: first 10 iterations {np.mean(losses[:10]):.4f}, "
          f"last 10 {np.mean(losses[-10:]):.4f}")
    if a.plot.lower() != "none":
        if save_plot(func, data, losses, a.plot):
            print(f"plot saved to {a.plot}")
        else:
            print("(matplotlib is not installed: no plot; pip install matplotlib)")
    return losses


if __name__ == "__main__":
    main()
