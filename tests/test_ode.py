"""diffsim.physics.odeint: accuracy, convergence orders, step control, gradients (backprop and
adjoint), memory of the adjoint, errors, and the neural-ODE example."""
import importlib.util
import math
import pathlib

import numpy as np
import pytest

import diffsim as ds
import diffsim.nn as nn
from diffsim.physics import odeint, odeint_adjoint
from diffsim.testing import gradcheck

F64 = ds.float64
ROOT = pathlib.Path(__file__).resolve().parents[1]


def T(x, rg=False):
    return ds.tensor(x, dtype=F64, requires_grad=rg)


def forced_decay(t, y):                       # y' = -y + sin t, y(0) = 1
    return -y + t.sin()


def forced_decay_exact(t):
    t = np.asarray(t, dtype=np.float64)
    return 1.5 * np.exp(-t) + 0.5 * (np.sin(t) - np.cos(t))


def graph_size(t):
    """Number of graph nodes reachable from ``t.grad_fn``."""
    seen, stack = set(), [t.grad_fn]
    while stack:
        n = stack.pop()
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        stack.extend(e[0] for e in getattr(n, "edges", ()) if e is not None)
    return len(seen)


# ---------------------------------------------------------------- accuracy and orders

@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_fixed_step_convergence_order(method, order):
    t = T([0.0, 1.0, 3.0])
    hs = [0.2, 0.1, 0.05, 0.025]
    errs = []
    for h in hs:
        sol, stats = odeint(forced_decay, T(1.0), t, method=method, options={"step_size": h},
                            return_stats=True)
        assert stats["n_steps"] == round(3.0 / h)
        assert stats["grid"][0] == 0.0 and stats["grid"][-1] == pytest.approx(3.0)
        errs.append(np.abs(sol.numpy() - forced_decay_exact(t.numpy())).max())
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.25, (slope, errs)


def test_fixed_step_default_grid_is_t():
    t = T([0.0, 0.3, 0.4, 1.0])
    _, stats = odeint(forced_decay, T(1.0), t, method="rk4", return_stats=True)
    assert stats["grid"] == pytest.approx([0.0, 0.3, 0.4, 1.0])
    # with a step size each interval is split into equal steps no longer than it
    _, stats = odeint(forced_decay, T(1.0), t, method="rk4", options={"step_size": 0.25},
                      return_stats=True)
    assert stats["grid"] == pytest.approx([0.0, 0.15, 0.3, 0.4, 0.6, 0.8, 1.0])


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
@pytest.mark.parametrize("rtol", [1e-4, 1e-7])
def test_adaptive_meets_tolerance_exponential_decay(method, rtol):
    t = ds.linspace(0, 5, 11, dtype=F64)
    y0 = T([1.0, -2.0, 0.5])
    k = T([0.5, 1.0, 2.0])
    sol = odeint(lambda s, y: -k * y, y0, t, method=method, rtol=rtol, atol=rtol * 1e-2)
    exact = np.exp(-np.outer(t.numpy(), k.numpy())) * y0.numpy()
    err = np.abs(sol.numpy() - exact)
    # global error is a modest multiple of the local tolerance
    assert np.all(err <= 20 * (rtol * np.abs(exact) + rtol * 1e-2)), err.max()


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_adaptive_harmonic_oscillator_and_fewer_steps_when_loose(method):
    t = ds.linspace(0, 10, 21, dtype=F64)
    y0 = T([1.0, 0.0])
    f = lambda s, y: ds.stack([y[1], -y[0]])   # noqa: E731
    steps = {}
    for rtol in (1e-3, 1e-6, 1e-9):
        sol, stats = odeint(f, y0, t, method=method, rtol=rtol, atol=rtol * 1e-2, return_stats=True)
        steps[rtol] = stats["n_steps"]
        exact = np.stack([np.cos(t.numpy()), -np.sin(t.numpy())], 1)
        assert np.abs(sol.numpy() - exact).max() < 100 * rtol
        # energy y0^2 + y1^2 = 1 to about the tolerance
        assert np.abs((sol.numpy() ** 2).sum(1) - 1).max() < 100 * rtol
    assert steps[1e-3] < steps[1e-6] < steps[1e-9]


def test_dopri5_dense_output_hits_every_time():
    # many output times inside few steps: dense output, not step truncation
    t = ds.linspace(0, 2, 201, dtype=F64)
    sol, stats = odeint(forced_decay, T(1.0), t, rtol=1e-8, atol=1e-10, return_stats=True)
    assert stats["n_accepted"] < 100
    assert np.abs(sol.numpy() - forced_decay_exact(t.numpy())).max() < 1e-7


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "rk4", "midpoint", "euler"])
def test_decreasing_t(method):
    t = T([2.0, 1.5, 1.0, 0.0])
    y2 = forced_decay_exact(2.0)
    opts = {"step_size": 0.001} if method in ("euler", "midpoint", "rk4") else None
    sol = odeint(forced_decay, T(y2), t, method=method, rtol=1e-9, atol=1e-11, options=opts)
    tol = 1e-2 if method == "euler" else 1e-6
    assert np.abs(sol.numpy() - forced_decay_exact(t.numpy())).max() < tol


def test_tuple_state_and_single_time():
    y0 = (T(1.0), T([0.0, 0.0]))       # x and a vector of two copies of v: x' = v, v' = -x
    f = lambda s, st: (st[1][0], ds.stack([-st[0], -st[0]]))   # noqa: E731
    t = ds.linspace(0, 3, 7, dtype=F64)
    x, v = odeint(f, y0, t, rtol=1e-10, atol=1e-12)
    assert x.shape == (7,) and v.shape == (7, 2)
    assert np.abs(x.numpy() - np.cos(t.numpy())).max() < 1e-8
    assert np.abs(v.numpy() - (-np.sin(t.numpy()))[:, None]).max() < 1e-8
    one = odeint(forced_decay, T([1.0, 2.0]), T([0.5]))
    assert one.shape == (1, 2) and one.numpy().tolist() == [[1.0, 2.0]]


# ---------------------------------------------------------------- gradients through the solver

def test_gradcheck_rk4_y0_params_t():
    def fn(y0, k, t):
        return odeint(lambda s, y: -k * y + (s * k).sin(), y0, t, method="rk4",
                      options={"step_size": 0.1})
    assert gradcheck(fn, (T([1.0, -0.5], True), T([0.7, 1.3], True), T([0.0, 0.35, 0.6], True)))


def test_gradcheck_dopri5_y0_params():
    def fn(y0, k):
        return odeint(lambda s, y: -k * y.sin(), y0, T([0.0, 0.5, 1.0]), rtol=1e-10, atol=1e-12)
    assert gradcheck(fn, (T([1.0, -0.5], True), T([0.7, 1.3], True)), atol=1e-6)


def test_gradient_matches_analytic_linear():
    # y' = -k y: y(t) = y0 exp(-k t); d y(T)/dk = -T y0 exp(-kT), d y(T)/dT = -k y(T)
    k, y0, t = T(0.8, True), T(1.5, True), T([0.0, 2.0], True)
    y = odeint(lambda s, y: -k * y, y0, t, rtol=1e-11, atol=1e-13)[-1]
    y.backward()
    e = math.exp(-1.6)
    assert k.grad.item() == pytest.approx(-2 * 1.5 * e, rel=1e-8)
    assert y0.grad.item() == pytest.approx(e, rel=1e-8)
    assert t.grad.numpy() == pytest.approx([0.8 * 1.5 * e, -0.8 * 1.5 * e], rel=1e-6)


# ---------------------------------------------------------------- adjoint

def _grads(run):
    return [g.numpy() for g in run()]


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_adjoint_matches_backprop_linear(method):
    A = T([[-0.1, 2.0], [-2.0, -0.1]], True)
    tv = [0.0, 0.4, 1.1, 2.0]

    def run(adjoint):
        y0, t = T([2.0, 0.5], True), T(tv, True)
        A.grad = None
        f = lambda s, y: (y @ A) * (1 + 0.1 * s.sin())   # noqa: E731  (time-dependent)
        tol = dict(rtol=1e-11, atol=1e-12) if method == "dopri5" else dict(rtol=1e-9, atol=1e-11)
        ys = odeint(f, y0, t, method=method, adjoint=adjoint, params=[A], **tol)
        ((ys ** 2).sum() + 3 * ys[2, 0]).backward()
        return y0.grad, t.grad, A.grad

    bp, adj = _grads(lambda: run(False)), _grads(lambda: run(True))
    for b, a in zip(bp, adj):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_adjoint_known_answer_linear():
    # y' = -k y, L = y(T): dL/dy0 = exp(-kT), dL/dk = -T y0 exp(-kT), dL/dT = -k y(T)
    k, y0, t = T(0.8, True), T(1.5, True), T([0.0, 2.0], True)
    odeint_adjoint(lambda s, y: -k * y, y0, t, rtol=1e-11, atol=1e-13, params=[k])[-1].backward()
    e = math.exp(-1.6)
    assert y0.grad.item() == pytest.approx(e, rel=1e-8)
    assert k.grad.item() == pytest.approx(-2 * 1.5 * e, rel=1e-7)
    assert t.grad.numpy() == pytest.approx([0.8 * 1.5 * e, -0.8 * 1.5 * e], rel=1e-7)


class ODEFunc(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))

    def forward(self, t, y):
        return self.net(y ** 3)


@pytest.mark.parametrize("decreasing", [False, True])
def test_adjoint_matches_backprop_neural_net(decreasing):
    func = ODEFunc().double()
    tv = [0.0, 0.3, 0.7, 1.0]
    if decreasing:
        tv = tv[::-1]

    def run(adjoint):
        func.zero_grad()
        y0, t = T([[1.0, 0.0], [0.5, -0.8], [0.2, 0.3]], True), T(tv, True)
        ys = odeint(func, y0, t, rtol=1e-11, atol=1e-12, adjoint=adjoint)
        (ys ** 2).mean().backward()
        return [y0.grad, t.grad] + [p.grad for p in func.parameters()]

    bp, adj = _grads(lambda: run(False)), _grads(lambda: run(True))
    worst = max(np.abs(a - b).max() for a, b in zip(adj, bp))
    assert worst < 1e-6, worst


def test_adjoint_tuple_state_and_fixed_grid():
    k = T(1.3, True)

    def run(adjoint):
        k.grad = None
        x0, v0 = T(1.0, True), T([0.2], True)
        f = lambda s, st: (st[1][0], -k * st[0].reshape(1))   # noqa: E731
        x, v = odeint(f, (x0, v0), T([0.0, 0.5, 1.0]), method="rk4", options={"step_size": 0.002},
                      adjoint=adjoint, params=[k])
        (x.sum() + (v ** 2).sum()).backward()
        return x0.grad, v0.grad, k.grad

    for b, a in zip(_grads(lambda: run(False)), _grads(lambda: run(True))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_adjoint_keeps_no_graph_of_the_steps():
    func = ODEFunc().double()
    y0 = T([[1.0, 0.0]], True)
    t = T([0.0, 1.0])
    sizes = {}
    for adjoint in (False, True):
        for rtol in (1e-4, 1e-9):
            ys, st = odeint(func, y0, t, rtol=rtol, atol=rtol, adjoint=adjoint, return_stats=True)
            sizes[adjoint, rtol] = (graph_size(ys), st["n_steps"])
    assert sizes[False, 1e-9][1] > 2 * sizes[False, 1e-4][1]
    # backprop: the graph grows with the number of steps; adjoint: one node + the leaves
    assert sizes[False, 1e-9][0] > 1.5 * sizes[False, 1e-4][0]
    assert sizes[True, 1e-9][0] == sizes[True, 1e-4][0] <= 2 + len(list(func.parameters()))


def test_adjoint_retained_memory_does_not_grow_with_steps():
    import gc
    import tracemalloc
    func = ODEFunc().double()
    y0 = T(np.linspace(-1, 1, 200).reshape(100, 2), True)
    t = T([0.0, 1.0])
    kept = {}
    for adjoint in (False, True):
        for rtol in (1e-4, 1e-9):
            gc.collect()
            tracemalloc.start()
            ys, st = odeint(func, y0, t, rtol=rtol, atol=rtol, adjoint=adjoint, return_stats=True)
            gc.collect()
            kept[adjoint, rtol] = tracemalloc.get_traced_memory()[0]   # held by ys and its graph
            tracemalloc.stop()
            del ys
    assert kept[False, 1e-9] > 3 * kept[False, 1e-4]
    assert kept[True, 1e-9] < 1.2 * kept[True, 1e-4] + 20_000
    assert kept[True, 1e-9] < kept[False, 1e-4]


def test_adjoint_params_from_closure_must_be_passed():
    k = T(0.5, True)
    ys = odeint(lambda s, y: -k * y, T(1.0, True), T([0.0, 1.0]), adjoint=True)
    ys[-1].backward()
    assert k.grad is None     # documented: closures are invisible, pass params=[k]


# ---------------------------------------------------------------- errors

@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_errors():
    y0 = T([1.0, 2.0])
    t = T([0.0, 1.0])
    with pytest.raises(ValueError, match="unknown method"):
        odeint(forced_decay, y0, t, method="rk45")
    with pytest.raises(ValueError, match="1-d"):
        odeint(forced_decay, y0, T([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="strictly increasing or strictly decreasing"):
        odeint(forced_decay, y0, T([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="strictly"):
        odeint(forced_decay, y0, T([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \[3\].*shape \[2\]"):
        odeint(lambda s, y: ds.zeros(3, dtype=F64), y0, t)
    with pytest.raises(ValueError, match="tuple"):
        odeint(lambda s, y: y[0], (T(1.0), T(2.0)), t)
    with pytest.raises(RuntimeError, match="max_num_steps"):
        odeint(forced_decay, y0, T([0.0, 100.0]), rtol=1e-10, atol=1e-12, options={"max_num_steps": 20})
    with pytest.raises(RuntimeError, match="max_num_steps"):
        odeint(forced_decay, y0, t, method="rk4", options={"step_size": 1e-3, "max_num_steps": 20})
    with pytest.raises(ValueError, match="not understood"):
        odeint(forced_decay, y0, t, method="dopri5", options={"step_size": 0.1})
    with pytest.raises(FloatingPointError, match="not finite"):
        odeint(forced_decay, T([1.0, float("nan")]), t)
    with pytest.raises(FloatingPointError):
        odeint(lambda s, y: y * float("nan"), y0, t)
    with pytest.raises(FloatingPointError):       # blows up in finite time: y' = y^2, y(0)=1
        odeint(lambda s, y: y * y, y0, T([0.0, 2.0]))
    with pytest.raises(FloatingPointError, match="not finite"):
        odeint(lambda s, y: y.log(), T([-1.0]), t, method="euler")


# ---------------------------------------------------------------- the example

def test_neural_ode_spiral_example_loss_decreases():
    spec = importlib.util.spec_from_file_location("neural_ode_spiral",
                                                  ROOT / "examples" / "neural_ode_spiral.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    losses = mod.main(["--iters", "40", "--data-size", "200", "--plot", "none", "--eval-every", "20"])
    assert len(losses) == 40
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5]), losses


def test_float32_list_times_standard_controller_and_no_double_backward():
    y = odeint(lambda s, y: -y, ds.tensor([1.0, 2.0]), [0.0, 1.0], rtol=1e-5, atol=1e-6,
               options={"beta": 0.0, "safety": 0.8, "max_factor": 5.0})
    assert y.dtype == ds.float32
    assert np.abs(y.numpy()[-1] - np.exp(-1.0) * np.array([1.0, 2.0])).max() < 1e-5
    k = T(0.5, True)
    yy = odeint(lambda s, y: -k * y, T(1.0, True), T([0.0, 1.0]), adjoint=True, params=[k])
    with pytest.raises(RuntimeError, match="higher-order"):
        ds.autograd.grad(yy[-1], k, create_graph=True)
