"""W2 cloth written with ``physics.MassSpring`` + ``physics.simulate``, against W2 op by op.

Workload W2 of shared/benchmarks.md (float64, N=32 cloth, 3906 structural + shear springs,
T=200 semi-implicit Euler steps, gradients of the loss w.r.t. the stiffnesses k [S] and the
initial velocity v0 [P, 3]) three ways, forward + backward, timed in the same process
(medians of interleaved runs after a warm-up):

* diffsim ``MassSpring.cloth(32, ...)`` rolled out by ``simulate`` (one ``spring_forces``
  op per step);
* diffsim op by op (``checkpoint_memory.make_problem``: about 15 primitive ops per step);
* PyTorch eager on the CPU (skipped if torch is not installed).

All three must agree (loss and gradients to 1e-10 relative). W2-long (T=5000): peak memory
(tracemalloc) of ``simulate(..., checkpoint=k)`` (k = round(sqrt(T))) against the plain
rollout; the criterion is a ratio under 0.15, with gradients equal to round-off.

    python benchmarks/cloth.py                       # W2 + W2-long (T=5000)
    python benchmarks/cloth.py --long-steps 0        # W2 only
    python benchmarks/cloth.py --steps 50 --long-steps 500 --repeats 3
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (HERE, os.path.dirname(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import diffsim as ds  # noqa: E402
from diffsim import physics  # noqa: E402
from checkpoint_memory import DT, K0, MASS, N, _peak_bytes, make_cloth, make_problem, plain_rollout  # noqa: E402

MEM_LIMIT = 0.15
AGREE_RTOL = 1e-10


def make_massspring(n=N):
    """The W2 cloth as a ``MassSpring``: (system, x0 Tensor, target Tensor, cloth dict)."""
    c = make_cloth(n)
    k = ds.full((c["S"],), K0, dtype=ds.float64, requires_grad=True)
    cloth = physics.MassSpring.cloth(n, stiffness=k, mass=MASS, drag=1.0, pinned="top-row", dtype=ds.float64)
    if not np.array_equal(cloth.springs, np.stack([c["a"], c["b"]], 1)):
        raise AssertionError("cloth: MassSpring.cloth's springs differ from W2's")
    return cloth, ds.tensor(c["x0"], dtype=ds.float64), ds.tensor(c["target"], dtype=ds.float64), c


def massspring_rollout(setup, steps, checkpoint=None):
    """Forward + backward of W2 with MassSpring + simulate; returns (loss, dk, dv0) as numpy."""
    cloth, x0, target, c = setup
    cloth.stiffness.grad = None
    v0 = ds.zeros((c["P"], 3), dtype=ds.float64, requires_grad=True)
    final = physics.simulate(cloth, physics.State(x=x0, v=v0), steps, DT, checkpoint=checkpoint)
    loss = ((final.x - target) ** 2).sum(-1).mean()
    loss.backward()
    return loss.item(), cloth.stiffness.grad.numpy(), v0.grad.numpy()


def make_torch(n=N):
    """W2 in PyTorch eager (CPU, float64); returns a function steps -> (loss, dk, dv0), or None."""
    try:
        import torch
    except ImportError:
        return None
    c = make_cloth(n)
    a, b = torch.from_numpy(c["a"]), torch.from_numpy(c["b"])
    L, free = torch.from_numpy(c["L"][:, 0]), torch.from_numpy(c["free"])
    x0, target = torch.from_numpy(c["x0"]), torch.from_numpy(c["target"])
    mg = torch.tensor([0.0, -9.8, 0.0], dtype=torch.float64) * MASS
    damp = math.exp(-DT * 1.0)

    def rollout(steps):
        k = torch.full((c["S"],), K0, dtype=torch.float64, requires_grad=True)
        v0 = torch.zeros((c["P"], 3), dtype=torch.float64, requires_grad=True)
        x, v = x0, v0
        for _ in range(steps):
            d = x[b] - x[a]
            l = torch.linalg.vector_norm(d, dim=1)  # noqa: E741
            f = (k * (l - L) / l).unsqueeze(1) * d
            F = torch.zeros_like(x).index_add(0, a, f).index_add(0, b, -f) + mg
            v = (v * damp + DT * F / MASS) * free
            x = x + DT * v
        loss = ((x - target) ** 2).sum(-1).mean()
        loss.backward()
        return loss.item(), k.grad.numpy(), v0.grad.numpy()
    rollout.threads = torch.get_num_threads()
    rollout.version = torch.__version__
    return rollout


def _agree(r, ref):
    ok = abs(r[0] - ref[0]) <= AGREE_RTOL * abs(ref[0])
    return ok and all(np.abs(g - h).max() <= AGREE_RTOL * np.abs(h).max() for g, h in zip(r[1:], ref[1:]))


def measure_w2(steps=200, repeats=5):
    """Time the three W2 variants; returns dict of medians (s) and the results. Raises if
    they disagree."""
    setup = make_massspring()
    prob = make_problem()
    torch_fn = make_torch()
    variants = {"massspring": lambda: massspring_rollout(setup, steps),
                "opbyop": lambda: plain_rollout(prob, steps)}
    if torch_fn is not None:
        variants["torch"] = lambda: torch_fn(steps)
    results, times = {}, {name: [] for name in variants}
    for name, fn in variants.items():          # warm-up (and the results to compare)
        results[name] = fn()
    for _ in range(repeats):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    ref = results["opbyop"]
    for name, r in results.items():
        if not _agree(r, ref):
            raise AssertionError(f"cloth: {name} disagrees with op-by-op W2: loss {r[0]!r} vs {ref[0]!r}, "
                                 f"max |dk| diff {np.abs(r[1] - ref[1]).max():.3e}")
    out = dict(steps=steps, loss=ref[0], times={k: statistics.median(v) for k, v in times.items()})
    if torch_fn is not None:
        out["torch_info"] = f"torch {torch_fn.version}, {torch_fn.threads} threads"
    return out


def measure_long(steps=5000, segment=None):
    """W2-long: tracemalloc peak of MassSpring + simulate with checkpoint=k vs plain."""
    setup = make_massspring()
    if segment is None:
        segment = max(1, round(math.sqrt(steps)))
    massspring_rollout(setup, min(steps, 20), checkpoint=max(1, round(math.sqrt(min(steps, 20)))))
    m_plain, rp = _peak_bytes(lambda: massspring_rollout(setup, steps))
    t0 = time.perf_counter()
    m_ckpt, rc = _peak_bytes(lambda: massspring_rollout(setup, steps, checkpoint=segment))
    t_ckpt = time.perf_counter() - t0
    if not _agree(rc, rp):
        raise AssertionError("cloth: checkpointed W2-long gradients differ from the plain rollout's")
    return dict(steps=steps, segment=segment, mem_plain=m_plain, mem_ckpt=m_ckpt, time_ckpt_traced=t_ckpt)


def rows_from(w2, long=None):
    t = w2["times"]
    w = f"W2 cloth MassSpring T={w2['steps']}"
    rows = [dict(workload=w, diffsim_s=t["massspring"], baseline_s=t["opbyop"], baseline="diffsim op-by-op",
                 ratio=t["massspring"] / t["opbyop"], note="physics.simulate; loss and grads agree")]
    if "torch" in t:
        rows.append(dict(workload=w, diffsim_s=t["massspring"], baseline_s=t["torch"], baseline="torch eager CPU",
                         ratio=t["massspring"] / t["torch"], note=w2.get("torch_info", "")))
    if long is not None:
        rows.append(dict(workload=f"W2-long cloth MassSpring T={long['steps']} peak memory",
                         diffsim=long["mem_ckpt"] / 2**20, baseline_value=long["mem_plain"] / 2**20, unit="MiB",
                         baseline="plain simulate", ratio=long["mem_ckpt"] / long["mem_plain"],
                         note=f"simulate(checkpoint={long['segment']}), tracemalloc peak"))
    return rows


def run(steps=200, long_steps=5000, repeats=5):
    """For ``benchmarks/run.py``: rows (MassSpring vs op-by-op, vs torch eager, and the W2-long
    peak memory with checkpointing vs plain; ``long_steps=0`` skips the latter)."""
    w2 = measure_w2(steps, repeats)
    return rows_from(w2, measure_long(long_steps) if long_steps else None)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200, help="W2 rollout length (200)")
    p.add_argument("--long-steps", type=int, default=5000, help="W2-long rollout length (5000; 0 skips it)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each variant (median)")
    a = p.parse_args(argv)
    w2 = measure_w2(a.steps, a.repeats)
    long = measure_long(a.long_steps) if a.long_steps else None
    rows = rows_from(w2, long)
    print(f"# W2 cloth, N={N} (P={N * N}), float64, forward + backward; loss {w2['loss']:.12g}")
    for name, s in w2["times"].items():
        print(f"{name:12s}{s * 1e3:10.1f} ms")
    for r in rows:
        unit = r.get("unit", "s")
        d = r.get("diffsim_s", r.get("diffsim"))
        b = r.get("baseline_s", r.get("baseline_value"))
        print(f"{r['workload']:45s} {d:10.4g} vs {b:10.4g} {unit:4s} ({r['baseline']}): ratio {r['ratio']:.3f}  "
              f"{r['note']}")
    ok = all(r["ratio"] < 1.0 for r in rows[:2]) and (long is None or rows[-1]["ratio"] < MEM_LIMIT)
    print("criteria (ratios < 1.0, W2-long memory ratio < 0.15):", "OK" if ok else "FAILED")
    return rows


if __name__ == "__main__":
    main()
