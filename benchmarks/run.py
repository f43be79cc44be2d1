"""Run the reference workloads and print one table of ratios against baselines.

    python benchmarks/run.py            # full sizes (shared/benchmarks.md)
    python benchmarks/run.py --quick    # small sizes, a few seconds
    python benchmarks/run.py --only opchain large_arrays
    python benchmarks/run.py --steady-malloc   # fixed glibc mmap threshold (less page-fault noise)

Each benchmark module has ``run(...) -> list of rows``. A row is a dict with
``workload``, ``baseline`` (the baseline's name), ``ratio`` (diffsim / baseline; lower is
better for diffsim), an optional ``note``, and either ``diffsim_s`` / ``baseline_s``
(seconds) or ``diffsim`` / ``baseline_value`` with a ``unit`` (e.g. peak memory in MiB).
Tuples ``(workload, diffsim_s, baseline_s, baseline, ratio)`` are accepted too.

Timings are in-process medians after warm-up; the baselines are measured in the same run.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:            # run from a checkout without installing
    sys.path.insert(0, ROOT)

WORKLOADS = ("opchain", "large_arrays", "checkpoint_memory", "data_loading", "mlp", "cnn_step", "cloth",
             "nbody", "long_rollout", "softras", "mpm", "fluids", "fem")


def _run_opchain(mod, quick):
    return mod.run(n_iter=100, repeats=5, warmup=1) if quick else mod.run()


def _run_large(mod, quick):
    return mod.run(n=10_000, repeats=5, warmup=1) if quick else mod.run()


def _run_checkpoint(mod, quick):
    if quick:
        return mod.run(steps=200)
    p = inspect.signature(mod.run).parameters.get("steps")
    if p is not None and p.default is inspect.Parameter.empty:
        return mod.run(steps=5000)      # W2-long
    return mod.run()


def _run_data_loading(mod, quick):
    return mod.run(quick=quick)


def _run_mlp(mod, quick):
    return mod.run(steps=20, repeats=2) if quick else mod.run()


def _run_cnn(mod, quick):
    return mod.run(batch=8, steps=3) if quick else mod.run()


def _run_cloth(mod, quick):
    return mod.run(steps=50, long_steps=0, repeats=2) if quick else mod.run()


def _run_nbody(mod, quick):
    return mod.run(n=300, steps=3, repeats=2) if quick else mod.run()


def _run_long_rollout(mod, quick):
    return mod.run(steps=150, plain_steps=50) if quick else mod.run()


def _run_softras(mod, quick):
    return mod.run(size=16, subdivisions=1, repeats=2, big=0) if quick else mod.run()


def _run_mpm(mod, quick):
    return mod.run(n_particles=256, n_grid=32, steps=2, repeats=2) if quick else mod.run()


def _run_fluids(mod, quick):
    return mod.run(n=32, repeats=2) if quick else mod.run()


def _run_fem(mod, quick):
    return mod.run(n=10, repeats=2) if quick else mod.run()


RUNNERS = {"fluids": _run_fluids, "fem": _run_fem, "softras": _run_softras, "mpm": _run_mpm, "long_rollout": _run_long_rollout, "cloth": _run_cloth, "nbody": _run_nbody, "mlp": _run_mlp, "cnn_step": _run_cnn, "opchain": _run_opchain, "large_arrays": _run_large, "checkpoint_memory": _run_checkpoint,
           "data_loading": _run_data_loading}


def normalize(row):
    """Any accepted row form -> dict(workload, diffsim, baseline_value, unit, baseline, ratio, note)."""
    if isinstance(row, (tuple, list)):
        workload, d, b, name, ratio = row[:5]
        row = dict(workload=workload, diffsim_s=d, baseline_s=b, baseline=name, ratio=ratio)
    r = dict(row)
    if "diffsim_s" in r or "baseline_s" in r:
        d, b, unit = r.get("diffsim_s"), r.get("baseline_s"), "s"
    else:
        d, b, unit = r.get("diffsim"), r.get("baseline_value"), r.get("unit", "")
    ratio = r.get("ratio")
    if ratio is None and isinstance(d, (int, float)) and isinstance(b, (int, float)) and b:
        ratio = d / b
    return dict(workload=str(r.get("workload", "?")), diffsim=d, baseline_value=b, unit=unit,
                baseline=str(r.get("baseline", "")), ratio=ratio, note=str(r.get("note", "")))


def fmt_value(v, unit):
    if v is None:
        return "-"
    if not isinstance(v, (int, float)):
        return str(v)
    if unit == "s":
        if v < 1e-3:
            return f"{v * 1e6:.1f} us"
        return f"{v * 1e3:.2f} ms" if v < 1 else f"{v:.2f} s"
    return f"{v:.4g} {unit}".strip()


def format_table(rows):
    rows = [normalize(r) for r in rows]
    cols = ["workload", "diffsim", "baseline", "baseline name", "ratio", "note"]
    body = [[r["workload"], fmt_value(r["diffsim"], r["unit"]), fmt_value(r["baseline_value"], r["unit"]),
             r["baseline"], "-" if r["ratio"] is None else f"{r['ratio']:.2f}", r["note"]] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)]
    right = {1, 2, 4}

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [line(cols), line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    return "\n".join(out)


def environment():
    import numpy as np
    parts = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    try:
        import torch
        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    except ImportError:
        parts.append("torch not installed")
    parts.append(f"{os.cpu_count()} CPUs, {platform.machine()}")
    return ", ".join(parts)


def main(argv=None):
    p = argparse.ArgumentParser(description="Run the diffsim benchmarks and print one table.")
    p.add_argument("--quick", action="store_true", help="small sizes (seconds, for a smoke run)")
    p.add_argument("--only", nargs="+", choices=WORKLOADS, help="run only these workloads")
    p.add_argument("--steady-malloc", action="store_true",
                   help="fix glibc's mmap threshold first, so that page faults from the allocator's "
                        "history do not land on one side of a ratio (see large_arrays.steady_malloc)")
    a = p.parse_args(argv)
    rows = []
    malloc = ""
    if a.steady_malloc:
        from large_arrays import steady_malloc
        malloc = "; malloc: fixed mmap threshold" if steady_malloc() else "; malloc: mallopt unavailable"
    print(f"# diffsim benchmarks ({'quick' if a.quick else 'full'} sizes); {environment()}{malloc}")
    for name in a.only or WORKLOADS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            print(f"# {name}: not present, skipped")
            continue
        t0 = time.perf_counter()
        got = RUNNERS[name](mod, a.quick)
        rows += list(got)
        print(f"# {name}: done in {time.perf_counter() - t0:.1f} s")
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    main()
