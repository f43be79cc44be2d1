"""Physics on the GPU vs the CPU, in the same process: W2 cloth (``physics.MassSpring``) and
N-body (``physics.Particles`` + ``Gravity``), forward + backward.

* W2 of shared/benchmarks.md (N = 32, T = 200) and a larger cloth (N = 128, 16 129 particles,
  64 008 springs) to show where the GPU starts to pay off;
* N-body with 2 000 and 4 000 particles, 5 steps of semi-implicit Euler (on the GPU the
  gravity op runs as the hand-written CUDA kernels of ``physics/_cuda_gravity.py``);
* the gravity op alone (``gravity_acceleration``, forward + backward w.r.t. ``x`` and the
  masses) at N = 4 000, and at N = 16 000 on the GPU only: its CPU time there is the
  N = 4 000 CPU time scaled by (16 000 / 4 000)^2 (the op is all-pairs), marked in the note.

The ratio is GPU time / CPU time (below 1: the GPU is faster). Needs cupy and a GPU.

    python benchmarks/gpu_physics.py
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import diffsim as ds  # noqa: E402
from diffsim import physics  # noqa: E402


def _sync(dev):
    if dev == "cuda":
        import cupy
        cupy.cuda.Device().synchronize()


def _median(fn, dev, repeats):
    fn()
    _sync(dev)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(dev)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def cloth_program(n, steps, dev):
    ref = physics.MassSpring.cloth(n, dtype=ds.float64)
    x0 = ref.rest_state().x.numpy()
    springs = np.stack([np.asarray(ref._a), np.asarray(ref._b)], 1)
    target = x0 + np.array([0.0, -0.1, 0.0])

    def run():
        k = ds.tensor(np.full(len(springs), 500.0), device=dev, requires_grad=True)
        ms = physics.MassSpring(ds.tensor(x0, device=dev), springs, stiffness=k, mass=0.01, drag=1.0,
                                pinned=np.flatnonzero(np.arange(n * n) % n == 0)).to(dev)
        v0 = ds.zeros(x0.shape, dtype=ds.float64, device=dev, requires_grad=True)
        s = physics.simulate(ms, ms.initial_state(v=v0), steps, 1e-3)
        loss = ((s.x - ds.tensor(target, device=dev)) ** 2).sum(-1).mean()
        loss.backward()
        return float(loss)
    return run


def nbody_program(n, steps, dev):
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((n, 3))

    def run():
        m = ds.tensor(np.full(n, 1.0 / n), device=dev, requires_grad=True)
        p = physics.Particles(mass=m, forces=[physics.Gravity(G=1.0, softening=0.05)]).to(dev)
        v0 = ds.zeros((n, 3), dtype=ds.float64, device=dev, requires_grad=True)
        s = physics.simulate(p, physics.State(x=ds.tensor(x0, device=dev), v=v0), steps, 1e-3)
        loss = (s.x ** 2).sum()
        loss.backward()
        return float(loss)
    return run


def gravity_op_program(n, dev):
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((n, 3))
    m0 = np.full(n, 1.0 / n)
    w = rng.standard_normal((n, 3))

    def run():
        x = ds.tensor(x0, device=dev, requires_grad=True)
        m = ds.tensor(m0, device=dev, requires_grad=True)
        loss = (physics.gravity_acceleration(x, m, 1.0, 0.05) * ds.tensor(w, device=dev)).sum()
        loss.backward()
        return float(loss)
    return run


def run(repeats=3):
    rows = []
    for name, make, sizes in (("W2 cloth fwd+bwd", cloth_program, [(32, 200), (128, 50)]),
                              ("N-body fwd+bwd", nbody_program, [(2000, 5), (4000, 5)])):
        for n, steps in sizes:
            cpu, gpu = make(n, steps, "cpu"), make(n, steps, "cuda")
            lc, lg = cpu(), gpu()
            assert abs(lc - lg) <= 1e-9 * max(1.0, abs(lc)), (lc, lg)
            tc = _median(cpu, "cpu", repeats)
            tg = _median(gpu, "cuda", repeats)
            rows.append(dict(workload=f"{name} N={n} T={steps}", diffsim_s=tg, baseline_s=tc,
                             baseline="diffsim on the CPU", ratio=tg / tc, note="cuda"))
    cpu, gpu = gravity_op_program(4000, "cpu"), gravity_op_program(4000, "cuda")
    lc, lg = cpu(), gpu()
    assert abs(lc - lg) <= 1e-9 * max(1.0, abs(lc)), (lc, lg)
    tc = _median(cpu, "cpu", repeats)
    tg = _median(gpu, "cuda", repeats)
    rows.append(dict(workload="gravity op fwd+bwd N=4000", diffsim_s=tg, baseline_s=tc,
                     baseline="diffsim on the CPU", ratio=tg / tc, note="cuda"))
    tg16 = _median(gravity_op_program(16000, "cuda"), "cuda", repeats)
    tc16 = tc * (16000 / 4000) ** 2
    rows.append(dict(workload="gravity op fwd+bwd N=16000", diffsim_s=tg16, baseline_s=tc16,
                     baseline="diffsim on the CPU at N=4000 x 16", ratio=tg16 / tc16,
                     note="cuda; cpu time scaled, not measured"))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    if not ds.cuda.is_available():
        print("no CUDA GPU with cupy: nothing to run")
        return []
    rows = run(a.repeats)
    for r in rows:
        print(f"{r['workload']:<34} gpu {r['diffsim_s'] * 1e3:9.2f} ms  cpu {r['baseline_s'] * 1e3:9.2f} ms"
              f"  ratio {r['ratio']:.3f}" + ("  (cpu scaled)" if "scaled" in r["note"] else ""))
    return rows


if __name__ == "__main__":
    main()
