import importlib
import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def softras_bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        yield importlib.import_module("softras")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_softras_benchmark_small_runs_and_agrees(softras_bench):
    rows = softras_bench.run(size=12, subdivisions=1, repeats=1, warmup=0, big=24, big_subdivisions=1, tile=4)
    names = {r["workload"] for r in rows}
    assert {"W4 softras fwd", "W4 softras bwd"} <= names
    for r in rows:
        if r.get("ratio") is not None:
            assert np.isfinite(r["ratio"]) and r["ratio"] > 0
    mem = [r for r in rows if r.get("unit") == "MiB"]
    assert len(mem) == 1 and mem[0]["diffsim"] < 2048


def test_softras_w4_render_matches_dense_exactly_unclamped(softras_bench):
    import diffsim as ds
    import diffsim.render as render
    m = render.icosphere(1, dtype=ds.float64)
    img = softras_bench.w4_render(m.verts, m.faces_np, 20, tile=4).numpy()
    dense = softras_bench.w4_dense(m.verts, m.faces_np, 20).numpy().reshape(20, 20)[::-1]
    assert np.abs(img - dense).max() < 1e-9
