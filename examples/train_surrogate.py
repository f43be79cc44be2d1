"""Train a neural surrogate of a simulation, checkpoint it, and invert it with its gradients.

1. Data: a damped pendulum, theta'' = -(g/L) sin(theta) - c theta', stepped with
   semi-implicit Euler in diffsim ops, vectorized over a batch of parameters
   (theta0, c) -> final state (theta(T), omega(T)).
2. Training: an MLP (2 -> 64 -> 64 -> 2, SiLU) fitted with a DataLoader, Adam and a cosine
   learning-rate schedule.
3. Checkpoint: model and optimizer state saved with ``ds.save`` (HDF5), reloaded into a
   fresh model that must predict exactly the same.
4. Inverse problem: given an observed final state, find (theta0, c) by gradient descent on
   the *surrogate's* input gradients, then check the answer with the true simulation.

    python examples/train_surrogate.py                       # about 10 s
    python examples/train_surrogate.py --samples 256 --epochs 3 --plot none
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

try:
    import diffsim as ds
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import diffsim as ds
import diffsim.nn as nn
import diffsim.optim as optim
from diffsim.data import DataLoader, TensorDataset, random_split

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PLOT = os.path.join(HERE, "output", "train_surrogate.png")
LOW = ds.tensor([-2.5, 0.05])      # parameter box: theta0 [rad], damping c [1/s]
HIGH = ds.tensor([2.5, 1.0])


def simulate(params, T=2.0, dt=0.01, g_over_l=9.81):
    """Final (theta, omega) [B, 2] of damped pendulums with params [B, 2] = (theta0, c)."""
    theta, c = params[:, 0], params[:, 1]
    omega = ds.zeros_like(theta)
    for _ in range(int(round(T / dt))):
        omega = omega + dt * (-g_over_l * theta.sin() - c * omega)
        theta = theta + dt * omega
    return ds.stack([theta, omega], dim=1)


def make_model():
    return nn.Sequential(nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 2))


def normalize(p):
    return 2 * (p - LOW) / (HIGH - LOW) - 1


def train(model, loader, epochs, lr=3e-3):
    opt = optim.Adam(model.parameters(), lr=lr)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(loader))
    loss_fn = nn.MSELoss()
    history = []
    for _ in range(epochs):
        total, n = 0.0, 0
        for p, y in loader:
            opt.zero_grad()
            loss = loss_fn(model(normalize(p)), y)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(p)
            n += len(p)
        history.append(total / n)
    return opt, history


def evaluate(model, p, y):
    """Test MSE and predictions [B, 2] for parameters ``p`` [B, 2] with true final states ``y``."""
    with ds.no_grad():
        pred = model(normalize(p))
        return ((pred - y) ** 2).mean().item(), pred


def invert(model, observed, steps=300, lr=0.05):
    """Parameters whose surrogate prediction matches ``observed`` [2] (gradient descent on
    the normalized parameters, kept inside the training box)."""
    z = ds.zeros(2, requires_grad=True)                  # the box centre, normalized
    opt = optim.Adam([z], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        pred = model(z.unsqueeze(0))[0]
        loss = ((pred - observed) ** 2).sum()
        loss.backward()
        opt.step()
        with ds.no_grad():
            z.clamp_(-1, 1)
    return LOW + (z.detach() + 1) / 2 * (HIGH - LOW)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=4096)
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    ap.add_argument("--plot", default=DEFAULT_PLOT, help="output PNG path, or 'none'")
    args = ap.parse_args(argv)

    ds.manual_seed(0)
    params = LOW + ds.rand(args.samples, 2) * (HIGH - LOW)
    with ds.no_grad():
        final = simulate(params)
    train_set, test_set = random_split(TensorDataset(params, final), [0.8, 0.2],
                                       generator=ds.Generator().manual_seed(0))
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                        num_workers=args.workers, generator=ds.Generator().manual_seed(1))

    test_idx = ds.tensor(list(test_set.indices))
    p_test, y_test = params[test_idx], final[test_idx]
    model = make_model()
    test_before = evaluate(model, p_test, y_test)[0]
    opt, history = train(model, loader, args.epochs)
    test_mse, y_pred = evaluate(model, p_test, y_test)
    print(f"surrogate test MSE: {test_before:.4f} before training -> {test_mse:.5f} after "
          f"{args.epochs} epochs")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "surrogate.h5")
        ds.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epochs": args.epochs},
                path)
        ckpt = ds.load(path)
    reloaded = make_model()
    reloaded.load_state_dict(ckpt["model"])
    probe = normalize(p_test[:8])
    same = ds.equal(reloaded(probe), model(probe))
    print(f"checkpoint reloaded: predictions identical = {same}")

    true_params = ds.tensor([1.2, 0.3])
    with ds.no_grad():
        observed = simulate(true_params.unsqueeze(0))[0]
    guess = invert(model, observed)
    with ds.no_grad():
        reached = simulate(guess.unsqueeze(0))[0]
    mismatch = ((reached - observed) ** 2).sum().sqrt().item()
    start_mismatch = ((simulate(((LOW + HIGH) / 2).unsqueeze(0))[0] - observed) ** 2).sum().sqrt().item()
    print(f"inverse problem: true (theta0, c) = {[round(v, 3) for v in true_params.tolist()]}, found "
          f"{[round(v, 3) for v in guess.tolist()]}; true simulation at the answer misses the "
          f"observed state by {mismatch:.4f} (box centre: {start_mismatch:.4f})")

    if args.plot != "none":
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed: no plot (pip install diffsim[viz])")
        else:
            os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
            fig, axes = plt.subplots(1, 3, figsize=(14, 4))
            axes[0].semilogy(history, "o-")
            axes[0].set_xlabel("epoch")
            axes[0].set_ylabel("training MSE")
            for j, name in enumerate(("final angle", "final angular velocity")):
                axes[j + 1].plot(y_test[:, j].tolist(), y_pred[:, j].tolist(), ".", ms=3)
                lo, hi = float(y_test[:, j].min()), float(y_test[:, j].max())
                axes[j + 1].plot([lo, hi], [lo, hi], "k--", lw=1)
                axes[j + 1].set_xlabel(f"simulated {name}")
                axes[j + 1].set_ylabel(f"surrogate {name}")
            fig.tight_layout()
            fig.savefig(args.plot, dpi=100)
            print(f"saved {args.plot}")
    return dict(history=history, test_before=test_before, test_mse=test_mse, same=same,
                mismatch=mismatch, start_mismatch=start_mismatch)


if __name__ == "__main__":
    main()
