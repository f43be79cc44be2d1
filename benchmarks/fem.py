"""FEM static solve with gradient: a 100x100 Q4 plate, compliance w.r.t. per-element E.

float64, ``n x n`` unit Q4 elements (plane stress, nu = 0.3; 2 (n+1)^2 DOFs, 20 402 for
n = 100), left edge clamped, a uniform downward traction on the right edge, per-element
Young's modulus ``E [n^2]`` (random in [0.5, 1.5]). Loss: the compliance ``c = f^T u``;
gradient ``dc/dE``. The time is split by phase:

* assembly: element stiffness ``E_e * k_e`` ``[n^2, 8, 8]`` (the unit matrices ``k_e``, a batched
  einsum over the geometry, are computed once and cached, as the baseline's are) and the
  free-DOF CSR matrix (``physics.fem``: structure computed once, values one ``segment_sum``);
* factorization + solve: the forward ``sparse.solve`` (``splu`` and one triangular solve);
* adjoint: the backward pass (the adjoint solve with the reused LU factors, then the
  gradient of the values through the assembly to ``E``).

The baseline is the same algorithm written by hand with numpy/scipy (``coo_matrix`` ->
CSC assembly, ``splu``, ``lu.solve(trans='T')`` and ``-lambda_e^T k_e u_e`` sensitivities),
timed phase by phase in the same process; the two gradients must agree (1e-8 relative).
Times are medians over ``repeats`` interleaved rounds after one warm-up.

    python benchmarks/fem.py [--n 100] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

try:
    import diffsim as ds
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import diffsim as ds
from diffsim import sparse  # noqa: E402
from diffsim.physics import fem  # noqa: E402

PHASES = ("assembly", "factorization+solve", "adjoint")


def make_problem(n):
    """(model, loads Tensor [n_nodes, 2], E0 array [n^2])."""
    mesh = fem.rectangle_mesh(n, n, 1.0, 1.0, element="quad", dtype=ds.float64)
    model = fem.Elasticity(mesh, E=1.0, nu=0.3, fixed=fem.fixed_dofs(mesh, mesh.nodes_on("left")))
    loads = model.surface_load("right", [0.0, -1.0])
    E0 = np.random.default_rng(0).uniform(0.5, 1.5, mesh.n_elements)
    return model, loads, E0


def diffsim_phases(problem):
    """One forward + backward with diffsim; returns ({phase: seconds}, dc/dE)."""
    model, loads, E0 = problem
    t0 = time.perf_counter()
    E = ds.tensor(E0, dtype=ds.float64, requires_grad=True)
    model.E = E
    Ke = model.element_stiffness()
    K = model._assemble_ff(Ke)          # the free-DOF stiffness, as Elasticity.solve builds it
    t1 = time.perf_counter()
    f = model._free(loads)
    u_f = sparse.solve(K, f)
    t2 = time.perf_counter()
    c = (f * u_f).sum()
    c.backward()
    t3 = time.perf_counter()
    return {"assembly": t1 - t0, "factorization+solve": t2 - t1, "adjoint": t3 - t2}, E.grad.numpy()


def numpy_phases(problem, ke_unit=None):
    """The same by hand with numpy/scipy; returns ({phase: seconds}, dc/dE, extra timings)."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as sla
    model, loads, E0 = problem
    if ke_unit is None:
        with ds.no_grad():
            ke_unit = model.unit_element_stiffness().numpy()
    ed = model.edofs
    g2f = np.full(model.n_dofs, -1)
    g2f[model.free_idx] = np.arange(model.n_free)
    f = loads.numpy().reshape(-1)[model.free_idx]
    t0 = time.perf_counter()
    Ke = E0[:, None, None] * ke_unit
    r = np.broadcast_to(g2f[ed][:, :, None], Ke.shape).reshape(-1)
    c_ = np.broadcast_to(g2f[ed][:, None, :], Ke.shape).reshape(-1)
    keep = (r >= 0) & (c_ >= 0)
    K = sp.coo_matrix((Ke.reshape(-1)[keep], (r[keep], c_[keep])), shape=(model.n_free,) * 2).tocsc()
    t1 = time.perf_counter()
    lu = sla.splu(K)
    t_fact = time.perf_counter()
    u_f = lu.solve(f)
    t2 = time.perf_counter()
    lam = lu.solve(f, trans="T")
    t_adj_solve = time.perf_counter()
    u = np.zeros(model.n_dofs)
    u[model.free_idx] = u_f
    lm = np.zeros(model.n_dofs)
    lm[model.free_idx] = lam
    grad = -np.einsum("ei,eij,ej->e", lm[ed], ke_unit, u[ed])
    t3 = time.perf_counter()
    return ({"assembly": t1 - t0, "factorization+solve": t2 - t1, "adjoint": t3 - t2}, grad,
            {"splu": t_fact - t1, "lu.solve": t2 - t_fact, "adjoint lu.solve": t_adj_solve - t2})


def _interleaved(fns, repeats):
    """Run each program once (warm-up), then ``repeats`` rounds of all of them in turn (so that
    load drifts on a shared machine hit both alike). Returns, per program, ({phase: median
    seconds}, last gradient, {extra: median seconds})."""
    for fn in fns:
        fn()
    runs = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            runs[i].append(fn())
    out = []
    for rs in runs:
        phases = {k: statistics.median(r[0][k] for r in rs) for k in PHASES}
        extra = {k: statistics.median(r[2][k] for r in rs) for k in rs[0][2]}
        out.append((phases, rs[-1][1], extra))
    return out


def run(n=100, repeats=5):
    """Rows (one per phase and one total): diffsim vs hand-written numpy/scipy."""
    problem = make_problem(n)
    with ds.no_grad():
        ke_unit = problem[0].unit_element_stiffness().numpy()
    (dphase, dgrad, _), (nphase, ngrad, extra) = _interleaved(
        [lambda: diffsim_phases(problem) + ({},), lambda: numpy_phases(problem, ke_unit)], repeats)
    err = float(np.abs(dgrad - ngrad).max() / np.abs(ngrad).max())
    if not err < 1e-8:
        raise AssertionError(f"fem benchmark: diffsim and numpy gradients differ (relative {err:.2e})")
    ndof = problem[0].n_free
    label = f"fem {n}x{n} Q4 static solve + dc/dE ({ndof} DOFs)"
    rows = []
    for k in PHASES:
        note = ""
        if k == "factorization+solve":
            note = f"numpy: splu {extra['splu']:.4f} s + lu.solve {extra['lu.solve']:.4f} s"
        if k == "adjoint":
            note = f"numpy: adjoint lu.solve {extra['adjoint lu.solve']:.4f} s; diffsim reuses the forward LU"
        rows.append(dict(workload=f"{label}: {k}", diffsim_s=dphase[k], baseline_s=nphase[k],
                         baseline="numpy/scipy by hand", ratio=dphase[k] / nphase[k], note=note))
    dt, nt = sum(dphase.values()), sum(nphase.values())
    rows.append(dict(workload=f"{label}: total", diffsim_s=dt, baseline_s=nt, baseline="numpy/scipy by hand",
                     ratio=dt / nt, note=f"gradients agree to {err:.1e}"))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    rows = run(a.n, a.repeats)
    print(f"{'workload':<70} {'diffsim s':>10} {'numpy s':>10} {'ratio':>7}  note")
    for r in rows:
        print(f"{r['workload']:<70} {r['diffsim_s']:>10.4f} {r['baseline_s']:>10.4f} {r['ratio']:>7.2f}  {r['note']}")
    return rows


if __name__ == "__main__":
    main()
