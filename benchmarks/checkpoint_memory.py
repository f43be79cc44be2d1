"""W2-long: peak memory and time of a cloth rollout, plain vs ``ds.checkpoint_sequential``.

Workload W2 of shared/benchmarks.md (cloth mass-spring, BPTT, float64, N=32 grid, 3906
structural + shear springs), written op by op with diffsim ops, with T steps (W2-long:
T = 5000). Gradients of the loss w.r.t. the spring stiffnesses k [S] and the initial
velocity v0 [P, 3].

* baseline: the plain rollout (every step's graph kept until backward);
* diffsim: the same step function under ``ds.checkpoint_sequential`` with ``segments``
  (default round(sqrt(T))) segments.

Peak memory is the tracemalloc peak during forward + backward (numpy reports its array
allocations to tracemalloc; Python objects count too), measured in separate runs from the
timings (tracemalloc slows Python down). Timings are medians over ``repeats`` interleaved
runs after a short warm-up. The gradients of the two must be identical (np.array_equal).

Criteria (W2-long, T=5000): checkpointed peak < 15% of the plain peak, time < 2.2x.

    python benchmarks/checkpoint_memory.py              # T=5000, about a minute or two
    python benchmarks/checkpoint_memory.py --steps 500  # smaller
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import tracemalloc

import numpy as np

import diffsim as ds

N = 32
DT = 1e-3
MASS = 0.01
K0 = 500.0
DAMP = math.exp(-DT * 1.0)
MEM_LIMIT, TIME_LIMIT = 0.15, 2.2


def make_cloth(n=N):
    """The W2 setup as numpy arrays: x0 [P,3], springs a, b [S], rest lengths L [S,1],
    free mask [P,1], target [P,3]."""
    h = 1.0 / (n - 1)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    x0 = np.stack([i * h, np.zeros_like(i, dtype=float), j * h], -1).reshape(-1, 3).astype(np.float64)
    idx = lambda i, j: i * n + j  # noqa: E731
    a, b = [], []
    for ii in range(n):
        for jj in range(n):
            if ii + 1 < n:
                a.append(idx(ii, jj)); b.append(idx(ii + 1, jj))          # noqa: E702
            if jj + 1 < n:
                a.append(idx(ii, jj)); b.append(idx(ii, jj + 1))          # noqa: E702
            if ii + 1 < n and jj + 1 < n:
                a.append(idx(ii, jj)); b.append(idx(ii + 1, jj + 1))      # noqa: E702
                a.append(idx(ii + 1, jj)); b.append(idx(ii, jj + 1))      # noqa: E702
    a, b = np.array(a, np.int64), np.array(b, np.int64)
    L = np.linalg.norm(x0[b] - x0[a], axis=1, keepdims=True)
    free = (j.reshape(-1) != 0).astype(np.float64)[:, None]
    target = x0 + np.array([0.0, -0.1, 0.0])
    return dict(x0=x0, a=a, b=b, L=L, free=free, target=target, P=n * n, S=len(a))


def make_problem(n=N):
    """Tensors for one run: parameters k [S] and v0 [P,3] (require grad), the step function
    (closes over k and the constants) and the loss."""
    c = make_cloth(n)
    P = c["P"]
    k = ds.full((c["S"],), K0, dtype=ds.float64, requires_grad=True)
    v0 = ds.zeros((P, 3), dtype=ds.float64, requires_grad=True)
    x0 = ds.tensor(c["x0"])
    L, free, target = ds.tensor(c["L"]), ds.tensor(c["free"]), ds.tensor(c["target"])
    a, b = ds.tensor(c["a"]), ds.tensor(c["b"])
    ab = ds.tensor(np.concatenate([c["a"], c["b"]]))
    mg = ds.tensor(np.array([0.0, -9.8, 0.0]) * MASS)
    has_segment_sum = hasattr(ds, "segment_sum")

    def step(state):
        x, v = state
        d = x[b] - x[a]                                   # [S,3]
        l = (d * d).sum(-1, keepdim=True).sqrt()          # [S,1]  noqa: E741
        f = k.unsqueeze(1) * (l - L) / l * d              # [S,3] force on a
        if has_segment_sum:                               # F[a] += f; F[b] -= f
            F = ds.segment_sum(ds.cat([f, -f]), ab, P)
        else:
            F = ds.zeros((P, 3), dtype=ds.float64).index_put((ab,), ds.cat([f, -f]), accumulate=True)
        F = F + mg
        v = (v * DAMP + DT * F / MASS) * free
        x = x + DT * v
        return x, v

    def loss_fn(x):
        return ((x - target) ** 2).sum(-1).mean()
    return dict(k=k, v0=v0, x0=x0, step=step, loss=loss_fn, cloth=c)


def plain_rollout(prob, steps):
    """Forward + backward with the whole graph kept; returns (loss, dk, dv0) as numpy."""
    k, v0 = prob["k"], prob["v0"]
    k.grad = v0.grad = None
    state = (prob["x0"], v0)
    for _ in range(steps):
        state = prob["step"](state)
    loss = prob["loss"](state[0])
    loss.backward()
    return loss.item(), k.grad.numpy(), v0.grad.numpy()


def checkpointed_rollout(prob, steps, segments=None):
    """The same with ``ds.checkpoint_sequential``."""
    k, v0 = prob["k"], prob["v0"]
    k.grad = v0.grad = None
    x, _ = ds.checkpoint_sequential(prob["step"], steps, (prob["x0"], v0), segments)
    loss = prob["loss"](x)
    loss.backward()
    return loss.item(), k.grad.numpy(), v0.grad.numpy()


def _peak_bytes(fn):
    """tracemalloc peak (bytes above what was allocated before) while ``fn()`` runs."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak, out


def measure(steps=5000, segments=None, repeats=1, warmup=True):
    """Run both variants; returns a dict of the measurements (raises if gradients differ)."""
    prob = make_problem()
    if segments is None:
        segments = max(1, round(math.sqrt(steps)))
    if warmup:
        w = min(steps, 20)
        plain_rollout(prob, w)
        checkpointed_rollout(prob, w, max(1, round(math.sqrt(w))))
    t_plain, t_ckpt = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rp = plain_rollout(prob, steps)
        t1 = time.perf_counter()
        rc = checkpointed_rollout(prob, steps, segments)
        t2 = time.perf_counter()
        t_plain.append(t1 - t0)
        t_ckpt.append(t2 - t1)
    m_plain, rp = _peak_bytes(lambda: plain_rollout(prob, steps))
    m_ckpt, rc2 = _peak_bytes(lambda: checkpointed_rollout(prob, steps, segments))
    same = (rp[0] == rc[0] and np.array_equal(rp[1], rc[1]) and np.array_equal(rp[2], rc[2])
            and np.array_equal(rc[1], rc2[1]) and np.array_equal(rc[2], rc2[2]))
    if not same:
        raise AssertionError(
            f"checkpoint_memory: checkpointed gradients differ from the plain rollout's (T={steps}): "
            f"max |dk| diff {np.abs(rp[1] - rc[1]).max():.3e}, max |dv0| diff "
            f"{np.abs(rp[2] - rc[2]).max():.3e}, loss {rp[0]!r} vs {rc[0]!r}")
    return dict(steps=steps, segments=segments, loss=rp[0], grad_k=rp[1], grad_v0=rp[2],
                time_plain=statistics.median(t_plain), time_ckpt=statistics.median(t_ckpt),
                mem_plain=m_plain, mem_ckpt=m_ckpt, identical=same)


def rows_from(m):
    w = f"W2-long cloth T={m['steps']}"
    note = f"checkpoint_sequential, {m['segments']} segments; gradients identical"
    return [
        dict(workload=f"{w} time", diffsim_s=m["time_ckpt"], baseline_s=m["time_plain"],
             baseline="plain rollout", ratio=m["time_ckpt"] / m["time_plain"], note=note),
        dict(workload=f"{w} peak memory", diffsim=m["mem_ckpt"] / 2**20,
             baseline_value=m["mem_plain"] / 2**20,
             unit="MiB", baseline="plain rollout", ratio=m["mem_ckpt"] / m["mem_plain"],
             note="tracemalloc peak, forward + backward"),
    ]


def run(steps=5000, segments=None, repeats=1):
    """For ``benchmarks/run.py``: rows (dicts: workload, diffsim_s/baseline_s or
    diffsim/baseline_value+unit, baseline, ratio, note) for time and peak memory, the
    baseline being the plain rollout. Raises if the gradients are not identical."""
    return rows_from(measure(steps, segments, repeats))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5000, help="rollout length T (W2-long: 5000)")
    p.add_argument("--segments", type=int, default=None, help="default round(sqrt(steps))")
    p.add_argument("--repeats", type=int, default=1, help="timed runs of each variant (median)")
    a = p.parse_args(argv)
    m = measure(a.steps, a.segments, a.repeats)
    rt, rm = m["time_ckpt"] / m["time_plain"], m["mem_ckpt"] / m["mem_plain"]
    print(f"# W2-long cloth, N={N} (P={N * N}), T={m['steps']}, "
          f"{m['segments']} segments, float64; loss {m['loss']:.12g}")
    print(f"{'':18s}{'plain':>14s}{'checkpointed':>14s}{'ratio':>8s}")
    print(f"{'time (s)':18s}{m['time_plain']:14.3f}{m['time_ckpt']:14.3f}{rt:8.3f}")
    print(f"{'peak memory (MiB)':18s}{m['mem_plain'] / 2**20:14.1f}{m['mem_ckpt'] / 2**20:14.1f}{rm:8.3f}")
    print(f"gradients identical (np.array_equal, dk and dv0): {m['identical']}")
    ok = rm < MEM_LIMIT and rt < TIME_LIMIT
    verdict = "OK" if ok else "FAILED"
    print(f"criteria (memory ratio < {MEM_LIMIT}, time ratio < {TIME_LIMIT}): {verdict}"
          + ("" if a.steps >= 5000 else "  (the criteria are set for T=5000)"))
    return 0 if ok or a.steps < 5000 else 1


if __name__ == "__main__":
    sys.exit(main())
