"""Data loading: background workers against loading in the main process.

A map-style dataset whose ``__getitem__`` costs ``item_ms`` milliseconds (``time.sleep`` plus a
small numpy array [32] float32 and an int label), batch_size 16. Measures seconds per batch
over ``n_batches`` batches with ``DataLoader(num_workers=0)`` and with ``num_workers=2``
(each timed after the iterator has been created and its first batch received, so process
start-up is reported separately in the note), and, when PyTorch is importable, the same with
``torch.utils.data.DataLoader(num_workers=2)``. Target: 2 workers give at least 1.7x the
batches per second of 0 workers.

    python benchmarks/data_loading.py [--batches 300] [--workers 2] [--quick]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from diffsim.data import DataLoader, Dataset

try:  # the benchmark, never the library, may use torch
    import torch
    import torch.utils.data as tud
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

BATCH = 16
FEATURES = 32


class SlowDataset(Dataset):
    """Sample ``i``: (float32 array [FEATURES] filled with i, int label i % 10), after sleeping
    ``item_ms`` milliseconds (standing in for reading and decoding a file)."""

    def __init__(self, n, item_ms=2.0):
        self.n, self.item_s = n, item_ms / 1000.0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if self.item_s:
            time.sleep(self.item_s)
        return np.full(FEATURES, i, dtype=np.float32), i % 10


if torch is not None:
    class TorchSlowDataset(tud.Dataset):
        def __init__(self, n, item_ms=2.0):
            self.inner = SlowDataset(n, item_ms)

        def __len__(self):
            return len(self.inner)

        def __getitem__(self, i):
            return self.inner[i]


def time_loader(loader, n_batches):
    """(startup_s, per_batch_s, checksum): first batch (process start-up) timed apart from
    the rest; the checksum (sum of all features) shows every sample arrived once."""
    t0 = time.perf_counter()
    it = iter(loader)
    x, _ = next(it)
    t1 = time.perf_counter()
    total = float(np.asarray(x).sum())
    count = 1
    for x, _ in it:
        total += float(np.asarray(x).sum())
        count += 1
    t2 = time.perf_counter()
    del it
    if count != n_batches:
        raise AssertionError(f"expected {n_batches} batches, got {count}")
    return t1 - t0, (t2 - t1) / max(1, count - 1), total


def expected_checksum(n):
    return float(FEATURES * (n * (n - 1) // 2))


def run(quick=False, n_batches=None, workers=2, item_ms=2.0, with_torch=True):
    """Returns rows (dicts: workload, diffsim_s, baseline_s, baseline, ratio, note); times are
    seconds per batch; ratio < 1 means the workers are faster. Raises if a loader loses or
    repeats samples."""
    if n_batches is None:
        n_batches = 40 if quick else 300
    n = n_batches * BATCH
    data = SlowDataset(n, item_ms)
    want = expected_checksum(n)
    res = {}
    for name, nw in (("0 workers", 0), (f"{workers} workers", workers)):
        loader = DataLoader(data, batch_size=BATCH, num_workers=nw)
        res[name] = time_loader(loader, n_batches)
        if abs(res[name][2] - want) > 1e-6 * want:
            raise AssertionError(f"{name}: checksum {res[name][2]} != {want}")
    base = res["0 workers"][1]
    mine = res[f"{workers} workers"][1]
    speedup = base / mine
    rows = [dict(workload=f"data loading {workers} workers vs 0 ({item_ms:g} ms/item, batch {BATCH})",
                 diffsim_s=mine, baseline_s=base, baseline="diffsim num_workers=0", ratio=mine / base,
                 note=f"{speedup:.2f}x batches/s (target >= 1.7x); start-up "
                      f"{res[f'{workers} workers'][0] * 1e3:.0f} ms; {n_batches} batches")]
    if with_torch and torch is not None:
        tl = tud.DataLoader(TorchSlowDataset(n, item_ms), batch_size=BATCH, num_workers=workers)
        t_start, t_batch, t_sum = time_loader(tl, n_batches)
        if abs(t_sum - want) > 1e-6 * want:
            raise AssertionError(f"torch: checksum {t_sum} != {want}")
        rows.append(dict(workload=f"data loading {workers} workers ({item_ms:g} ms/item, batch {BATCH})",
                         diffsim_s=mine, baseline_s=t_batch, baseline="torch DataLoader", ratio=mine / t_batch,
                         note=f"torch start-up {t_start * 1e3:.0f} ms"))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, default=300)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--item-ms", type=float, default=2.0)
    p.add_argument("--quick", action="store_true", help="40 batches")
    a = p.parse_args(argv)
    rows = run(quick=a.quick, n_batches=40 if a.quick else a.batches, workers=a.workers,
               item_ms=a.item_ms)
    for r in rows:
        print(f"{r['workload']}: {r['diffsim_s'] * 1e3:.2f} ms/batch vs {r['baseline']} "
              f"{r['baseline_s'] * 1e3:.2f} ms/batch; ratio {r['ratio']:.3f}; {r['note']}")
    r = rows[0]
    print(f"batches/s: 0 workers {1 / r['baseline_s']:.1f}, {a.workers} workers {1 / r['diffsim_s']:.1f}; "
          f"speedup {r['baseline_s'] / r['diffsim_s']:.2f}x (target >= 1.7x)")
    return rows


if __name__ == "__main__":
    main()
