"""physics.implicit.root: Newton solves of F(x, theta) = 0 whose gradients (implicit function
theorem) equal unrolled-Newton gradients, analytic derivatives and finite differences."""
import numpy as np
import pytest

import diffsim as ds
import diffsim.sparse as sp
from diffsim.physics import implicit
from diffsim.testing import gradcheck


def N(t):
    return t.detach().numpy()


def cubic(x, theta):
    return x ** 3 + theta * x - 1.0


def unrolled_newton(F, dFdx, x, theta, iters=30):
    for _ in range(iters):
        x = x - F(x, theta) / dFdx(x, theta)
    return x


@pytest.mark.parametrize("solver", ["dense", "gmres"])
def test_cubic_root_gradients(solver):
    theta = ds.tensor([0.5, 1.0, 2.0, 3.0, 0.1], dtype=ds.float64, requires_grad=True)
    x0 = ds.ones(5, dtype=ds.float64)
    x = implicit.root(cubic, x0, theta, solver=solver)
    np.testing.assert_allclose(N(cubic(x, theta)), 0, atol=1e-10)
    w = ds.tensor([1.0, -2.0, 0.5, 3.0, 1.5], dtype=ds.float64)
    (x * w).sum().backward()
    xs = N(x)
    np.testing.assert_allclose(N(theta.grad), -N(w) * xs / (3 * xs ** 2 + N(theta)), rtol=1e-8)

    th2 = ds.tensor(N(theta), dtype=ds.float64, requires_grad=True)
    xu = unrolled_newton(cubic, lambda x, t: 3 * x ** 2 + t, x0, th2)
    (xu * w).sum().backward()
    np.testing.assert_allclose(N(theta.grad), N(th2.grad), rtol=1e-8)
    gradcheck(lambda t: implicit.root(cubic, x0, t, solver=solver), (theta,))


def test_tuple_theta_closure_and_user_jacobians():
    a = ds.tensor([1.0, 2.0, 0.5], dtype=ds.float64, requires_grad=True)
    b = ds.tensor(0.3, dtype=ds.float64, requires_grad=True)
    c = ds.tensor([1.0, 1.5, 0.7], dtype=ds.float64, requires_grad=True)    # closed over

    def F(x, th):
        a, b = th
        return x ** 3 + a * x + b * x.sum() - c

    x0 = ds.zeros(3, dtype=ds.float64)
    results = []
    for solver, jac in [("dense", None),
                        ("dense", lambda x, th: ds.diag(3 * x ** 2 + th[0]) + th[1]),
                        ("sparse", lambda x, th: sp.to_sparse(ds.diag(3 * x ** 2 + th[0]) + th[1])),
                        ("gmres", None)]:
        x = implicit.root(F, x0, (a, b), solver=solver, jacobian=jac)
        g = ds.autograd.grad((x * x).sum(), (a, b, c))
        results.append([N(t) for t in g])
    for r in results[1:]:
        for u, v in zip(r, results[0]):
            np.testing.assert_allclose(u, v, rtol=1e-7, atol=1e-10)
    gradcheck(lambda a, b, c: implicit.root(lambda x, th: x ** 3 + th[0] * x + th[1] * x.sum() - c,
                                            x0, (a, b)), (a, b, c))


def _spring_problem():
    """Three free nodes in 2-D hung by springs between two fixed anchors, under gravity.
    theta = (stiffness [5], load [3, 2]); x = free node positions [3, 2]."""
    anchors = ds.tensor([[0.0, 0.0], [4.0, 0.0]], dtype=ds.float64)
    # springs: anchor0-n0, n0-n1, n1-n2, n2-anchor1, n0-n2 (nodes 0..2 free, 3..4 anchors)
    ends = np.array([[3, 0], [0, 1], [1, 2], [2, 4], [0, 2]])
    rest = ds.tensor([1.0, 1.0, 1.0, 1.0, 2.0], dtype=ds.float64)

    def F(x, theta):
        k, load = theta
        p = ds.cat([x, anchors], 0)
        d = p[ends[:, 1]] - p[ends[:, 0]]
        length = (d * d).sum(1, keepdim=True).sqrt()
        f = (k * (length[:, 0] - rest))[:, None] * d / length         # force on end 0, towards end 1
        node_f = ds.segment_sum(f, ends[:, 0], 5) - ds.segment_sum(f, ends[:, 1], 5)
        return node_f[:3] + load

    k = ds.tensor([50.0, 40.0, 45.0, 55.0, 30.0], dtype=ds.float64, requires_grad=True)
    load = ds.tensor([[0.0, -1.0], [0.2, -2.0], [0.0, -1.5]], dtype=ds.float64, requires_grad=True)
    x0 = ds.tensor([[1.0, -0.2], [2.0, -0.3], [3.0, -0.2]], dtype=ds.float64)
    return F, x0, k, load


def test_spring_equilibrium_gradients_match_unrolled_newton_and_fd():
    F, x0, k, load = _spring_problem()
    x = implicit.root(F, x0, (k, load))
    assert x.shape == (3, 2)
    np.testing.assert_allclose(N(F(x, (k, load))), 0, atol=1e-9)
    loss = lambda x: (x[:, 1] ** 2).sum() + x[1, 0]  # noqa: E731
    gk, gl = ds.autograd.grad(loss(x), (k, load))

    # unrolled Newton from the same x0 with a dense autodiff Jacobian, differentiated through
    k2 = ds.tensor(N(k), dtype=ds.float64, requires_grad=True)
    l2 = ds.tensor(N(load), dtype=ds.float64, requires_grad=True)
    xu = x0
    for _ in range(12):
        J = ds.func.jacobian(lambda z: F(z, (k2, l2)))(xu).reshape(6, 6)
        xu = xu - ds.linalg.solve(J, F(xu, (k2, l2)).reshape(6)).reshape(3, 2)
    np.testing.assert_allclose(N(xu), N(x), atol=1e-9)
    gk2, gl2 = ds.autograd.grad(loss(xu), (k2, l2))
    np.testing.assert_allclose(N(gk), N(gk2), rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(N(gl), N(gl2), rtol=1e-6, atol=1e-10)
    gradcheck(lambda k, load: implicit.root(F, x0, (k, load)), (k, load))


def test_non_convergence_and_bad_inputs_raise():
    x0 = ds.ones(2, dtype=ds.float64)
    th = ds.tensor(1.0, dtype=ds.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="physics.implicit.root: Newton's method did not converge in 5"):
        implicit.root(lambda x, t: x * x + t, x0 * 5, th, maxiter=5)        # no real root
    with pytest.raises(RuntimeError, match=r"must return a Tensor of x's shape \[2\]"):
        implicit.root(lambda x, t: x.sum() - t, x0, th)
    with pytest.raises(RuntimeError, match="Jacobian dF/dx .* is singular"):
        implicit.root(lambda x, t: (x - x) + t, x0, th)
    with pytest.raises(ValueError, match="solver='sparse' needs jacobian"):
        implicit.root(cubic, x0, th, solver="sparse")
    x = implicit.root(cubic, x0, th)
    g, = ds.autograd.grad(x.sum(), th, create_graph=False)
    y = implicit.root(cubic, x0, th)
    with pytest.raises(RuntimeError, match="second derivatives"):
        ds.autograd.grad(y.sum(), th, create_graph=True)


def test_no_grad_returns_plain_solution():
    th = ds.tensor([2.0], dtype=ds.float64, requires_grad=True)
    with ds.no_grad():
        x = implicit.root(cubic, ds.ones(1, dtype=ds.float64), th)
    assert not x.requires_grad
    np.testing.assert_allclose(N(cubic(x, th)), 0, atol=1e-10)
