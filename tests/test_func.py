"""ds.func: grad, value_and_grad, vjp, jvp, jacobian (jacrev/jacfwd), hessian, hvp."""
import collections

import numpy as np
import pytest

import diffsim as ds
from diffsim import func as F


def T(a, rg=False):
    return ds.tensor(np.asarray(a, dtype=np.float64), requires_grad=rg)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ------------------------------------------------------------------ grad

def test_grad_of_cube_sum():
    x = T([1.0, -2.0, 0.5, 3.0])
    g = F.grad(lambda x: (x ** 3).sum())(x)
    np.testing.assert_allclose(g.numpy(), 3 * x.numpy() ** 2, rtol=1e-15)
    assert not g.requires_grad and x.grad is None and not x.requires_grad


def test_grad_argnums_tuple_and_negative(rng):
    x, y = T(rng.normal(size=4)), T(rng.normal(size=4))
    f = lambda x, y: (x * y ** 2).sum()  # noqa: E731
    gx, gy = F.grad(f, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx.numpy(), y.numpy() ** 2)
    np.testing.assert_allclose(gy.numpy(), 2 * x.numpy() * y.numpy())
    np.testing.assert_allclose(F.grad(f, argnums=-1)(x, y).numpy(), gy.numpy())
    with pytest.raises(ValueError, match="out of range"):
        F.grad(f, argnums=2)(x, y)
    with pytest.raises(TypeError, match="argnums"):
        F.grad(f, argnums=[0, 1])(x, y)


def test_grad_kwargs_are_not_differentiated():
    x = T([1.0, 2.0])
    g = F.grad(lambda x, scale=1.0: (scale * x ** 2).sum())(x, scale=3.0)
    np.testing.assert_allclose(g.numpy(), 6 * x.numpy())


def test_grad_needs_scalar_output():
    with pytest.raises(RuntimeError, match=r"scalar \(0-d\).*shape \[3\]"):
        F.grad(lambda x: x * 2)(T([1.0, 2.0, 3.0]))
    with pytest.raises(TypeError, match="scalar Tensor"):
        F.grad(lambda x: 1.0)(T([1.0]))


def test_grad_rejects_integer_inputs():
    with pytest.raises(TypeError, match="floating-point"):
        F.grad(lambda x: x.sum())(ds.tensor([1, 2]))


def test_value_and_grad_and_has_aux():
    x = T([1.0, 2.0, 3.0])
    v, g = F.value_and_grad(lambda x: (x ** 2).sum())(x)
    assert v.item() == 14.0 and np.array_equal(g.numpy(), 2 * x.numpy())
    (v, aux), g = F.value_and_grad(lambda x: ((x ** 2).sum(), {"m": x.mean()}), has_aux=True)(x)
    assert v.item() == 14.0 and aux["m"].item() == 2.0 and not aux["m"].requires_grad
    g2, aux2 = F.grad(lambda x: ((x ** 2).sum(), x * 2), has_aux=True)(x)
    assert np.array_equal(g2.numpy(), g.numpy()) and np.array_equal(aux2.numpy(), 2 * x.numpy())
    with pytest.raises(TypeError, match="pair"):
        F.grad(lambda x: (x ** 2).sum(), has_aux=True)(x)


def test_grad_of_unused_and_constant_inputs_is_zero():
    x, y = T([1.0, 2.0]), T([3.0])
    gx, gy = F.grad(lambda x, y: (x ** 2).sum(), argnums=(0, 1))(x, y)
    assert np.array_equal(gy.numpy(), [0.0]) and np.array_equal(gx.numpy(), [2.0, 4.0])
    g = F.grad(lambda x: ds.tensor(5.0, dtype=ds.float64))(x)
    assert np.array_equal(g.numpy(), [0.0, 0.0])


def test_grad_composes():
    x = T(0.7)
    f = lambda x: ds.sin(x) * x ** 2  # noqa: E731
    d1 = F.grad(f)
    d2 = F.grad(d1)
    d3 = F.grad(d2)
    s, c, xv = np.sin(0.7), np.cos(0.7), 0.7
    np.testing.assert_allclose(d1(x).item(), c * xv ** 2 + 2 * xv * s, rtol=1e-14)
    np.testing.assert_allclose(d2(x).item(), -s * xv ** 2 + 4 * xv * c + 2 * s, rtol=1e-14)
    np.testing.assert_allclose(d3(x).item(), -c * xv ** 2 - 6 * xv * s + 6 * c, rtol=1e-13)


def test_grad_of_grad_on_vectors():
    x = T([0.3, -1.2, 2.0])
    # d/dx sum(grad(sum x^4)) = d/dx sum(4 x^3) = 12 x^2
    g = F.grad(lambda x: F.grad(lambda y: (y ** 4).sum())(x).sum())(x)
    np.testing.assert_allclose(g.numpy(), 12 * x.numpy() ** 2, rtol=1e-14)


def test_grad_result_stays_connected_to_outer_graph():
    x = T([0.5, 1.5], rg=True)
    g = F.grad(lambda x: (x ** 3).sum())(x)           # 3 x^2, differentiable in x
    assert g.requires_grad and x.grad is None
    g.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * x.detach().numpy())


def test_grad_through_closed_over_parameter():
    w = T([2.0, -1.0], rg=True)
    x = T([0.5, 3.0])
    g = F.grad(lambda x: (w * x ** 2).sum())(x)        # 2 w x, depends on w
    np.testing.assert_allclose(g.detach().numpy(), 2 * w.detach().numpy() * x.numpy())
    g.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), 2 * x.numpy())


def test_grad_inside_no_grad_and_no_grad_inside():
    x = T([1.0, 2.0])
    with ds.no_grad():
        g = F.grad(lambda x: (x ** 2).sum())(x)
    assert np.array_equal(g.numpy(), [2.0, 4.0]) and not g.requires_grad
    with ds.no_grad():
        x2 = T([1.0, 2.0], rg=True)
        g = F.grad(lambda x: (x ** 2).sum())(x2)       # outer mode off: detached result
    assert not g.requires_grad

    def f(x):
        with ds.no_grad():
            c = (x * 10).sum()                          # a constant for the gradient
        return (x ** 2).sum() + c
    assert np.array_equal(F.grad(f)(x).numpy(), [2.0, 4.0])


def test_grad_pytree_inputs():
    x, y, z = T([1.0, 2.0]), T([[3.0]]), T(4.0)
    Point = collections.namedtuple("Point", "p q")

    def f(params, pt):
        return (params["a"] ** 2).sum() + (params["b"][0] * params["b"][1]).sum() + (pt.p * pt.q).sum()
    params = {"a": x, "b": (y, z), "note": "not a tensor"}
    pt = Point(T([1.0, 2.0]), T([5.0, 6.0]))
    gp, gpt = F.grad(f, argnums=(0, 1))(params, pt)
    assert set(gp) == {"a", "b", "note"} and gp["note"] is None
    np.testing.assert_allclose(gp["a"].numpy(), [2.0, 4.0])
    np.testing.assert_allclose(gp["b"][0].numpy(), [[4.0]])
    np.testing.assert_allclose(gp["b"][1].numpy(), 3.0)
    assert isinstance(gpt, Point) and np.array_equal(gpt.p.numpy(), [5.0, 6.0])
    with pytest.raises(TypeError, match="must be a Tensor"):
        F.grad(lambda s: s)(3.0)


# ------------------------------------------------------------------ jacobian

@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_jacobian_of_linear_map_is_the_matrix(rng, mode):
    A = T(rng.normal(size=(3, 5)))
    x = T(rng.normal(size=5))
    J = F.jacobian(lambda x: A @ x, mode=mode)(x)
    assert J.shape == (3, 5)
    np.testing.assert_allclose(J.numpy(), A.numpy(), rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("jac", [F.jacrev, F.jacfwd])
def test_jacobian_shapes_with_matrix_input(rng, jac):
    X = T(rng.normal(size=(2, 3)))
    v = T(rng.normal(size=3))
    J = jac(lambda X: X @ v)(X)                         # out [2], in [2,3] -> [2, 2, 3]
    assert J.shape == (2, 2, 3)
    expect = np.zeros((2, 2, 3))
    expect[0, 0], expect[1, 1] = v.numpy(), v.numpy()
    np.testing.assert_allclose(J.numpy(), expect)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_jacobian_nonlinear_pytree_and_argnums(rng, mode):
    x, y = T(rng.normal(size=3)), T(rng.normal(size=2))

    def f(x, y):
        return {"u": ds.sin(x) * y.sum(), "w": (x[:2] * ds.exp(y))}
    J = F.jacobian(f, argnums=(0, 1), mode=mode)(x, y)
    xs, ys = x.numpy(), y.numpy()
    np.testing.assert_allclose(J["u"][0].numpy(), np.diag(np.cos(xs) * ys.sum()), rtol=1e-14)
    np.testing.assert_allclose(J["u"][1].numpy(), np.outer(np.sin(xs), np.ones(2)), rtol=1e-14)
    e = np.zeros((2, 3))
    e[0, 0], e[1, 1] = np.exp(ys)
    np.testing.assert_allclose(J["w"][0].numpy(), e, rtol=1e-14)
    np.testing.assert_allclose(J["w"][1].numpy(), np.diag(xs[:2] * np.exp(ys)), rtol=1e-14)


def test_jacobian_modes_agree_and_bad_mode(rng):
    x = T(rng.normal(size=4))
    f = lambda x: ds.tanh(x[None, :] * x[:, None]).sum(0)  # noqa: E731
    np.testing.assert_allclose(F.jacrev(f)(x).numpy(), F.jacfwd(f)(x).numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(F.jacobian(f, vectorize=True)(x).numpy(), F.jacrev(f)(x).numpy())
    with pytest.raises(ValueError, match="mode"):
        F.jacobian(f, mode="sideways")


def test_jacobian_of_output_independent_of_input():
    x = T([1.0, 2.0])
    J = F.jacrev(lambda x: ds.ones(3, dtype=ds.float64))(x)
    assert J.shape == (3, 2) and not J.numpy().any()


# ------------------------------------------------------------------ hessian, hvp

def test_hessian_of_quadratic_form(rng):
    A = T(rng.normal(size=(4, 4)))
    x = T(rng.normal(size=4))
    H = F.hessian(lambda x: x @ (A @ x))(x)
    assert H.shape == (4, 4)
    np.testing.assert_allclose(H.numpy(), A.numpy() + A.numpy().T, rtol=1e-14, atol=1e-14)


def test_hessian_blocks_with_argnums_tuple(rng):
    x, y = T(rng.normal(size=2)), T(rng.normal(size=3))
    B = T(rng.normal(size=(2, 3)))
    H = F.hessian(lambda x, y: x @ (B @ y) + (x ** 2).sum() * 0.5, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(H[0][0].numpy(), np.eye(2), atol=1e-15)
    np.testing.assert_allclose(H[0][1].numpy(), B.numpy(), rtol=1e-15)
    np.testing.assert_allclose(H[1][0].numpy(), B.numpy().T, rtol=1e-15)
    np.testing.assert_allclose(H[1][1].numpy(), np.zeros((3, 3)))


def test_hessian_nonlinear_matches_analytic():
    x = T([0.3, -0.8])
    # f = sin(x0) * x1^2: H = [[-sin x0 x1^2, 2 cos x0 x1], [2 cos x0 x1, 2 sin x0]]
    H = F.hessian(lambda x: ds.sin(x[0]) * x[1] ** 2)(x)
    a, b = 0.3, -0.8
    expect = [[-np.sin(a) * b * b, 2 * np.cos(a) * b], [2 * np.cos(a) * b, 2 * np.sin(a)]]
    np.testing.assert_allclose(H.numpy(), expect, rtol=1e-14)


def test_hvp(rng):
    A = T(rng.normal(size=(5, 5)))
    x, v = T(rng.normal(size=5)), T(rng.normal(size=5))
    out, hv = F.hvp(lambda x: x @ (A @ x), (x,), (v,))
    np.testing.assert_allclose(out.item(), x.numpy() @ A.numpy() @ x.numpy())
    assert isinstance(hv, tuple) and len(hv) == 1
    np.testing.assert_allclose(hv[0].numpy(), (A.numpy() + A.numpy().T) @ v.numpy(), rtol=1e-14)
    _, hv1 = F.hvp(lambda x: ds.exp(x).sum(), x, v)     # single Tensor in, single out
    np.testing.assert_allclose(hv1.numpy(), np.exp(x.numpy()) * v.numpy(), rtol=1e-14)


def test_hvp_equals_hessian_times_vector(rng):
    x, v = T(rng.normal(size=3)), T(rng.normal(size=3))
    f = lambda x: (ds.tanh(x) * x.roll(1)).sum() ** 2  # noqa: E731
    H = F.hessian(f)(x).numpy()
    np.testing.assert_allclose(F.hvp(f, (x,), (v,))[1][0].numpy(), H @ v.numpy(), rtol=1e-12)


# ------------------------------------------------------------------ vjp, jvp

def test_vjp_matches_jacobian_transpose(rng):
    x = T(rng.normal(size=4))
    f = lambda x: ds.stack([ds.sin(x).sum(), (x ** 2).prod(), x[0] * x[3]])  # noqa: E731
    out, vjp_fn = F.vjp(f, x)
    np.testing.assert_allclose(out.numpy(), f(x).numpy())
    J = F.jacrev(f)(x).numpy()
    for _ in range(2):                                  # may be called repeatedly
        ct = rng.normal(size=3)
        (g,) = vjp_fn(T(ct))
        np.testing.assert_allclose(g.numpy(), J.T @ ct, rtol=1e-13)
    with pytest.raises(RuntimeError, match="shape"):
        vjp_fn(T([1.0, 2.0]))


def test_vjp_pytrees_and_aux(rng):
    x, y = T(rng.normal(size=2)), T(rng.normal(size=2))
    out, vjp_fn, aux = F.vjp(lambda p, y: ((p["a"] * y, p["a"].sum()), "hello"), {"a": x}, y, has_aux=True)
    assert aux == "hello"
    (gp, gy) = vjp_fn((T([1.0, 0.0]), T(2.0)))
    np.testing.assert_allclose(gp["a"].numpy(), np.array([1.0, 0.0]) * y.numpy() + 2.0)
    np.testing.assert_allclose(gy.numpy(), np.array([1.0, 0.0]) * x.numpy())
    (gp, gy) = vjp_fn((None, T(1.0)))                   # None cotangent = zero
    np.testing.assert_allclose(gp["a"].numpy(), [1.0, 1.0])
    assert not gy.numpy().any()
    with pytest.raises(RuntimeError, match="structure"):
        vjp_fn(T([1.0, 0.0]))


def test_jvp_linear_map_exact(rng):
    A = T(rng.normal(size=(3, 4)))
    x, t = T(rng.normal(size=4)), T(rng.normal(size=4))
    out, jv = F.jvp(lambda x: A @ x, (x,), (t,))
    np.testing.assert_allclose(out.numpy(), A.numpy() @ x.numpy())
    np.testing.assert_allclose(jv.numpy(), A.numpy() @ t.numpy(), rtol=1e-14)


def test_jvp_vs_finite_differences(rng):
    x, y = T(rng.normal(size=5)), T(rng.normal(size=5))
    tx, ty = T(rng.normal(size=5)), T(rng.normal(size=5))

    def f(x, y):
        return (ds.sin(x) * ds.exp(y), (x * y).sum())
    (o1, o2), (j1, j2) = F.jvp(f, (x, y), (tx, ty))
    h = 1e-6
    fp = f(T(x.numpy() + h * tx.numpy()), T(y.numpy() + h * ty.numpy()))
    fm = f(T(x.numpy() - h * tx.numpy()), T(y.numpy() - h * ty.numpy()))
    np.testing.assert_allclose(j1.numpy(), (fp[0].numpy() - fm[0].numpy()) / (2 * h), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(j2.numpy(), (fp[1].numpy() - fm[1].numpy()) / (2 * h), rtol=1e-7, atol=1e-9)
    assert not j1.requires_grad


def test_jvp_errors_and_zero_tangent_paths():
    x = T([1.0, 2.0])
    with pytest.raises(RuntimeError, match="tangents"):
        F.jvp(lambda x: x * 2, (x,), ())
    with pytest.raises(RuntimeError, match="shape"):
        F.jvp(lambda x: x * 2, (x,), (T([1.0]),))
    _, jv = F.jvp(lambda x: ds.ones(2, dtype=ds.float64), (x,), (T([1.0, 1.0]),))
    assert not jv.numpy().any()


def test_jvp_of_grad_is_hvp(rng):
    x, v = T(rng.normal(size=3)), T(rng.normal(size=3))
    f = lambda x: (x ** 3).sum() + x[0] * x[1]  # noqa: E731
    _, hv = F.jvp(F.grad(f), (x,), (v,))
    H = F.hessian(f)(x).numpy()
    np.testing.assert_allclose(hv.numpy(), H @ v.numpy(), rtol=1e-13)


def test_grad_of_jvp_and_vjp_compose(rng):
    x, t = T(rng.normal(size=3)), T(rng.normal(size=3))
    # f = x^3 elementwise: J t = J^T t = 3 x^2 t; d/dx sum(3 x^2 t) = 6 x t
    g = F.grad(lambda x: F.jvp(lambda z: z ** 3, (x,), (t,))[1].sum())(x)
    np.testing.assert_allclose(g.numpy(), 6 * x.numpy() * t.numpy(), rtol=1e-14)
    g2 = F.grad(lambda x: F.vjp(lambda z: z ** 3, x)[1](t)[0].sum())(x)
    np.testing.assert_allclose(g2.numpy(), 6 * x.numpy() * t.numpy(), rtol=1e-14)


def test_against_torch_func(rng):
    torch = pytest.importorskip("torch")
    xn = rng.normal(size=4)

    def f_ds(x):
        return (ds.tanh(x) * ds.exp(-x * x.roll(1))).sum()

    def f_t(x):
        return (torch.tanh(x) * torch.exp(-x * x.roll(1))).sum()
    xt = torch.tensor(xn)
    np.testing.assert_allclose(F.grad(f_ds)(T(xn)).numpy(), torch.func.grad(f_t)(xt).numpy(), rtol=1e-13)
    np.testing.assert_allclose(F.hessian(f_ds)(T(xn)).numpy(), torch.func.hessian(f_t)(xt).numpy(),
                               rtol=1e-12, atol=1e-14)
