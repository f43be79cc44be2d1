"""``check_gradients``: compare a rollout's autodiff gradient with central finite differences.

::

    def loss():
        return ((physics.simulate(cloth, state, 100, 1e-3).x - target) ** 2).mean()
    report = physics.check_gradients(loss, [cloth.stiffness, v0])
    # param             entry      autodiff   finite diff   rel. error
    # stiffness[3906]   [17]     -1.234e-03    -1.234e-03      2.1e-09   ok
    # ...
    assert report.ok

For each parameter it checks a few single entries (all of them for small parameters) and
one random direction (``g . u`` against ``(f(p + eps u) - f(p - eps u)) / 2 eps``), which
covers every entry at the cost of two more evaluations. Use float64 parameters: in float32
the finite differences themselves are only good to about 1e-3.
"""
from __future__ import annotations

import numpy as np

from ..autodiff import Tensor, autograd, no_grad

__all__ = ["check_gradients", "GradientReport"]


class GradientReport:
    """Result of ``check_gradients``: ``rows`` (dicts with param, entry, autodiff, fd,
    rel_error, ok), ``ok`` (all rows pass), ``max_rel_error``; ``str(report)`` is the table."""

    def __init__(self, rows):
        self.rows = rows

    @property
    def ok(self):
        return all(r["ok"] for r in self.rows)

    @property
    def max_rel_error(self):
        return max((r["rel_error"] for r in self.rows), default=0.0)

    def __str__(self):
        head = f"{'param':<22}{'entry':<14}{'autodiff':>13}{'finite diff':>14}{'rel. error':>12}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r['param']:<22}{r['entry']:<14}{r['autodiff']:>13.5e}{r['fd']:>14.5e}"
                         f"{r['rel_error']:>12.2e}   {'ok' if r['ok'] else 'MISMATCH'}")
        return "\n".join(lines)

    __repr__ = __str__


def check_gradients(fn, params, names=None, eps=1e-6, rtol=1e-4, atol=1e-8, entries=3, seed=0,
                    verbose=True):
    """Check ``d fn() / d params`` (autodiff) against central finite differences.

    Args:
        fn: a function of no arguments returning a scalar Tensor (e.g. a loss after a rollout)
            that uses ``params``.
        params: Tensors (leaves that require grad) whose gradients to check.
        names: labels for the table (default ``p0``, ``p1``, ...).
        eps: finite-difference step (relative to ``max(1, |p|)`` per entry).
        rtol, atol: an entry passes if ``|ad - fd| <= atol + rtol * max(|ad|, |fd|)``.
        entries: how many single entries per parameter (chosen at random; all if fewer),
            besides one random direction.
        verbose: print the table.

    Returns:
        A ``GradientReport``.
    """
    params = list(params)
    for i, p in enumerate(params):
        if not isinstance(p, Tensor) or not p.requires_grad:
            raise TypeError(f"check_gradients: params[{i}] must be a Tensor that requires grad")
    if names is None:
        names = [f"p{i}" for i in range(len(params))]
    names = [f"{n}{list(p.shape)}" for n, p in zip(names, params)]
    out = fn()
    if not isinstance(out, Tensor) or out.numel() != 1:
        raise ValueError("check_gradients: fn must return a scalar Tensor")
    grads = autograd.grad(out, params, allow_unused=True)
    rng = np.random.default_rng(seed)

    def evaluate():
        with no_grad():
            return float(fn())

    def fd_along(p, direction, h):
        base = p.detach().clone()
        with no_grad():
            p.copy_(base + direction * h)
            fp = evaluate()
            p.copy_(base - direction * h)
            fm = evaluate()
            p.copy_(base)
        return (fp - fm) / (2 * h)

    rows = []
    for p, g, name in zip(params, grads, names):
        gnp = np.zeros(p.shape) if g is None else np.asarray(g.detach().cpu().numpy(), dtype=np.float64)
        pnp = np.asarray(p.detach().cpu().numpy(), dtype=np.float64)
        n = p.numel()
        idx = np.arange(n) if n <= entries else np.sort(rng.choice(n, entries, replace=False))
        for j in idx:
            e = np.zeros(n)
            e[j] = 1.0
            h = eps * max(1.0, abs(pnp.reshape(-1)[j]))
            direction = _like(p, e.reshape(p.shape))
            fd = fd_along(p, direction, h)
            ad = float(gnp.reshape(-1)[j])
            rows.append(_row(name, str(list(np.unravel_index(j, p.shape))) if p.dim() else "[]", ad, fd,
                             rtol, atol))
        if n > 1:
            u = rng.standard_normal(n)
            u /= np.linalg.norm(u)
            h = eps * max(1.0, float(np.abs(pnp).max()))
            fd = fd_along(p, _like(p, u.reshape(p.shape)), h)
            rows.append(_row(name, "random dir", float(gnp.reshape(-1) @ u), fd, rtol, atol))
    report = GradientReport(rows)
    if verbose:
        print(report)
    return report


def _like(p, arr):
    from ..autodiff import as_tensor
    return as_tensor(arr, dtype=p.dtype, device=p.device)


def _row(name, entry, ad, fd, rtol, atol):
    err = abs(ad - fd)
    scale = max(abs(ad), abs(fd))
    rel = err / scale if scale > 0 else 0.0
    return {"param": name, "entry": entry, "autodiff": ad, "fd": fd, "rel_error": rel,
            "ok": bool(err <= atol + rtol * scale)}
