"""Normal modes of a spring chain from the Hessian of its potential energy.

A chain of N masses joined by N+1 springs (both ends fixed to walls) has the potential energy
V(u) = k/2 * sum_i (u_{i+1} - u_i)^2 in the displacements u [N]. Its Hessian, taken here with
``ds.func.hessian`` straight from the energy function, is the stiffness matrix K [N, N];
``ds.linalg.eigh(K / m)`` gives the squared angular frequencies and the mode shapes. They
are compared with the analytic answer omega_n = 2 sqrt(k/m) sin(n pi / (2 (N + 1))).

Then the gradient of the lowest frequency w.r.t. every spring's stiffness comes from
backward through ``eigh`` and the Hessian (a second derivative of the energy), and is
checked against finite differences.

    python examples/normal_modes.py              # N = 12, saves examples/output/normal_modes.png
    python examples/normal_modes.py --n 5 --plot none
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
DEFAULT_PLOT = os.path.join(HERE, "output", "normal_modes.png")


def potential(u, k):
    """Spring energy of displacements ``u`` [N] with stiffnesses ``k`` [N+1], walls at both ends."""
    padded = ds.cat([ds.zeros(1, dtype=u.dtype), u, ds.zeros(1, dtype=u.dtype)])
    stretch = padded[1:] - padded[:-1]          # [N+1]
    return 0.5 * (k * stretch * stretch).sum()


def modes(k, mass=1.0):
    """Angular frequencies [N] (ascending) and mode shapes [N, N] (columns) of the chain."""
    n = k.shape[0] - 1
    u0 = ds.zeros(n, dtype=k.dtype)
    stiffness = ds.func.hessian(lambda u: potential(u, k))(u0)     # [N, N], depends on k
    w2, vectors = ds.linalg.eigh(stiffness / mass)
    return ds.sqrt(w2), vectors


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=12, help="number of masses")
    p.add_argument("--plot", default=DEFAULT_PLOT, help="output PNG path, or 'none'")
    args = p.parse_args(argv)

    k = ds.full((args.n + 1,), 4.0, dtype=ds.float64, requires_grad=True)
    omega, shapes = modes(k)
    analytic = [2 * math.sqrt(4.0) * math.sin(j * math.pi / (2 * (args.n + 1))) for j in range(1, args.n + 1)]
    err = max(abs(a - b) for a, b in zip(omega.tolist(), analytic))
    print(f"lowest frequencies: {[round(w, 5) for w in omega.tolist()[:4]]}")
    print(f"analytic:           {[round(w, 5) for w in analytic[:4]]}")
    print(f"max frequency error: {err:.2e}")

    omega[0].backward()                          # d omega_1 / d k_i through eigh and the Hessian
    h = 1e-6
    i = 1
    with ds.no_grad():
        kp, km = k.detach().clone(), k.detach().clone()
        kp[i] += h
        km[i] -= h
        fd = (modes(kp)[0][0].item() - modes(km)[0][0].item()) / (2 * h)
    print(f"d omega_1 / d k_{i}: backward {k.grad[i].item():.8f}, finite differences {fd:.8f}")

    if args.plot != "none":
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed: no plot (pip install diffsim[viz])")
            return omega, k.grad, fd
        os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        a1.plot(range(1, args.n + 1), omega.tolist(), "o", label="eigh of ds.func.hessian")
        a1.plot(range(1, args.n + 1), analytic, "-", label="analytic")
        a1.set_xlabel("mode n")
        a1.set_ylabel("angular frequency")
        a1.legend()
        V = shapes.detach().numpy()
        for j in range(min(3, args.n)):
            a2.plot(range(1, args.n + 1), V[:, j], "o-", label=f"mode {j + 1}")
        a2.set_xlabel("mass index")
        a2.set_title("mode shapes")
        a2.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"saved {args.plot}")
    return omega, k.grad, fd


if __name__ == "__main__":
    main()
