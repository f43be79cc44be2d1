"""diffsim.sparse: SparseTensor construction/conversion, products and differentiable solves,
checked against dense ops (ds.linalg.solve, matmul) and central finite differences."""
import numpy as np
import pytest

import diffsim as ds
import diffsim.sparse as sp
from diffsim.testing import gradcheck


def N(t):
    return t.detach().numpy()


def _random_pattern(n, m=None, density=0.4, seed=0, diag=0.0):
    rng = np.random.default_rng(seed)
    m = n if m is None else m
    D = rng.standard_normal((n, m)) * (rng.random((n, m)) < density)
    if diag:
        D = D + diag * np.eye(n, m)
    r, c = np.nonzero(D)
    return D, r, c


def _spd(n, seed=1):
    """A sparse SPD matrix: a 1-D Laplacian plus a random sparse symmetric part, diagonally dominant."""
    rng = np.random.default_rng(seed)
    D = 2.5 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    S = rng.standard_normal((n, n)) * (rng.random((n, n)) < 0.15) * 0.2
    D = D + S + S.T
    D += np.diag(np.abs(D).sum(1) - np.abs(np.diag(D)) + 0.5 - np.diag(D) + np.diag(D))
    r, c = np.nonzero(D)
    return D, r, c


def _coo(D, r, c, requires_grad=True):
    v = ds.tensor(D[r, c], dtype=ds.float64, requires_grad=requires_grad)
    return sp.coo_tensor(np.stack([r, c]), v, D.shape), v


# ------------------------------------------------------------------ construction / conversion

def test_coo_to_dense_transpose_and_csr_agree_with_dense():
    D, r, c = _random_pattern(5, 7, seed=3)
    A, _ = _coo(D, r, c)
    assert A.shape == (5, 7) and A.nnz == len(r) and A.layout == "coo"
    np.testing.assert_allclose(N(A.to_dense()), D)
    np.testing.assert_allclose(N(A.t().to_dense()), D.T)
    np.testing.assert_allclose(N(A.transpose(0, 1).to_dense()), D.T)
    C = A.to_sparse_csr()
    assert C.layout == "csr"
    np.testing.assert_allclose(N(C.to_dense()), D)
    np.testing.assert_allclose(N(C.t().to_dense()), D.T)
    assert C.t().layout == "csr"
    np.testing.assert_array_equal(N(C.crow_indices()), np.r_[0, np.cumsum((D != 0).sum(1))])
    C2 = sp.csr_tensor(C.crow_indices(), C.col_indices(), C.values(), (5, 7))
    np.testing.assert_allclose(N(C2.to_dense()), D)
    np.testing.assert_allclose(N(sp.to_sparse(ds.tensor(D)).to_dense()), D)


def test_coalesce_sums_duplicates_and_is_differentiable():
    idx = np.array([[0, 2, 0, 1, 2], [1, 0, 1, 1, 0]])
    v = ds.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=ds.float64, requires_grad=True)
    A = sp.coo_tensor(idx, v, (3, 2))
    C = A.coalesce()
    assert C.is_coalesced() and C.nnz == 3
    np.testing.assert_array_equal(N(C.indices()), [[0, 1, 2], [1, 1, 0]])
    np.testing.assert_allclose(N(C.values()), [4.0, 4.0, 7.0])
    np.testing.assert_allclose(N(C.to_dense()), N(A.to_dense()))
    (C.values() * ds.tensor([1.0, 10.0, 100.0], dtype=ds.float64)).sum().backward()
    np.testing.assert_allclose(N(v.grad), [1.0, 100.0, 1.0, 10.0, 100.0])
    gradcheck(lambda v: sp.coo_tensor(idx, v, (3, 2)).coalesce().values(), (v,))
    gradcheck(lambda v: sp.coo_tensor(idx, v, (3, 2)).to_dense(), (v,))


def test_assemble_sums_duplicates_like_fem():
    # two 1-D linear elements on nodes 0-1-2 with stiffness k_e: K = sum_e k_e [[1,-1],[-1,1]]
    k = ds.tensor([2.0, 3.0], dtype=ds.float64, requires_grad=True)
    conn = np.array([[0, 1], [1, 2]])
    rows = np.repeat(conn[:, :, None], 2, axis=2)
    cols = np.repeat(conn[:, None, :], 2, axis=1)
    local = ds.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=ds.float64)
    K = sp.assemble(rows, cols, k.reshape(2, 1, 1) * local, (3, 3))
    assert K.layout == "csr" and K.nnz == 7
    np.testing.assert_allclose(N(K.to_dense()), [[2, -2, 0], [-2, 5, -3], [0, -3, 3]])
    gradcheck(lambda k: sp.assemble(rows, cols, k.reshape(2, 1, 1) * local, (3, 3)).to_dense(), (k,))
    with pytest.raises(RuntimeError, match="same shape"):
        sp.assemble(rows[:1], cols, k.reshape(2, 1, 1) * local, (3, 3))


def test_add_scale_and_diagonal():
    D, r, c = _random_pattern(5, seed=4, diag=1.0)
    E, r2, c2 = _random_pattern(5, seed=5)
    A, _ = _coo(D, r, c)
    B, _ = _coo(E, r2, c2)
    np.testing.assert_allclose(N((A + B).to_dense()), D + E)
    np.testing.assert_allclose(N((A - 2.0 * B).to_dense()), D - 2 * E)
    np.testing.assert_allclose(N(A.diagonal()), np.diag(D))


# ------------------------------------------------------------------ products

@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize("k", [None, 3])
def test_spmv_spmm_match_dense_and_gradcheck(layout, k):
    D, r, c = _random_pattern(6, 4, seed=7)
    rng = np.random.default_rng(8)
    x = ds.tensor(rng.standard_normal((4,) if k is None else (4, k)), dtype=ds.float64, requires_grad=True)
    idx = np.stack([r, c])

    def f(v, x):
        A = sp.coo_tensor(idx, v, (6, 4))
        if layout == "csr":
            A = A.to_sparse_csr()
        return A @ x
    v = ds.tensor(D[r, c], dtype=ds.float64, requires_grad=True)
    np.testing.assert_allclose(N(f(v, x)), D @ N(x))
    gradcheck(f, (v, x))
    y = ds.tensor(rng.standard_normal((6,) if k is None else (6, k)), dtype=ds.float64, requires_grad=True)

    def ft(v, y):                        # the transpose (for CSR: permuted values)
        A = sp.coo_tensor(idx, v, (6, 4))
        return (A.to_sparse_csr() if layout == "csr" else A).t() @ y
    np.testing.assert_allclose(N(ft(v, y)), D.T @ N(y))
    gradcheck(ft, (v, y))


def test_spmv_double_backward():
    D, r, c = _random_pattern(5, seed=9)
    idx = np.stack([r, c])
    v = ds.tensor(D[r, c], dtype=ds.float64, requires_grad=True)
    x = ds.tensor(np.arange(5.0), dtype=ds.float64, requires_grad=True)
    from diffsim.testing import gradgradcheck
    gradgradcheck(lambda v, x: sp.coo_tensor(idx, v, (5, 5)) @ x, (v, x))


# ------------------------------------------------------------------ solve

CASES = [("direct", None), ("bicgstab", None), ("bicgstab", "jacobi"), ("bicgstab", "ilu"),
         ("gmres", None), ("gmres", "jacobi"), ("gmres", "ilu")]


@pytest.mark.parametrize("method,pc", CASES + [("cg", None), ("cg", "jacobi"), ("cg", "ilu")])
def test_solve_gradients_match_dense_solve_and_finite_differences(method, pc):
    if method == "cg":
        D, r, c = _spd(8)
    else:
        D, r, c = _random_pattern(8, seed=11, diag=4.0)
    idx = np.stack([r, c])
    rng = np.random.default_rng(12)
    for shape in [(8,), (8, 2)]:
        b = ds.tensor(rng.standard_normal(shape), dtype=ds.float64, requires_grad=True)
        v = ds.tensor(D[r, c], dtype=ds.float64, requires_grad=True)
        w = ds.tensor(rng.standard_normal(shape), dtype=ds.float64)

        x = sp.solve(sp.coo_tensor(idx, v, (8, 8)), b, method=method, preconditioner=pc, tol=1e-13)
        np.testing.assert_allclose(N(x), np.linalg.solve(D, N(b)), atol=1e-10)
        (x * w).sum().backward()

        Dd = ds.tensor(D, dtype=ds.float64, requires_grad=True)
        bd = ds.tensor(N(b), dtype=ds.float64, requires_grad=True)
        (ds.linalg.solve(Dd, bd) * w).sum().backward()
        np.testing.assert_allclose(N(b.grad), N(bd.grad), atol=1e-9)
        np.testing.assert_allclose(N(v.grad), N(Dd.grad)[r, c], atol=1e-9)

    v = ds.tensor(D[r, c], dtype=ds.float64, requires_grad=True)
    b = ds.tensor(rng.standard_normal(8), dtype=ds.float64, requires_grad=True)
    if method == "cg":     # keep A symmetric under the perturbations: parameterize by the upper triangle
        iu = np.nonzero(r <= c)[0]
        pos = {(i, j): k for k, (i, j) in enumerate(zip(r[iu], c[iu]))}
        sel = np.array([pos[(min(i, j), max(i, j))] for i, j in zip(r, c)])
        vu = ds.tensor(D[r[iu], c[iu]], dtype=ds.float64, requires_grad=True)
        gradcheck(lambda vu, b: sp.solve(sp.coo_tensor(idx, vu[sel], (8, 8)), b, method=method,
                                          preconditioner=pc, tol=1e-13), (vu, b))
    else:
        gradcheck(lambda v, b: sp.solve(sp.coo_tensor(idx, v, (8, 8)), b, method=method,
                                        preconditioner=pc, tol=1e-13), (v, b))


def test_solve_double_backward_direct():
    from diffsim.testing import gradgradcheck
    D, r, c = _random_pattern(5, seed=13, diag=3.0)
    idx = np.stack([r, c])
    v = ds.tensor(D[r, c], dtype=ds.float64, requires_grad=True)
    b = ds.tensor(np.linspace(-1, 1, 5), dtype=ds.float64, requires_grad=True)
    gradgradcheck(lambda v, b: sp.solve(sp.coo_tensor(idx, v, (5, 5)), b), (v, b))


def test_solve_csr_and_assembled_matrix_with_duplicates():
    D, r, c = _random_pattern(6, seed=14, diag=3.0)
    # split each value into two duplicate entries
    rr, cc = np.r_[r, r], np.r_[c, c]
    v = ds.tensor(np.r_[0.3 * D[r, c], 0.7 * D[r, c]], dtype=ds.float64, requires_grad=True)
    b = ds.tensor(np.ones(6), dtype=ds.float64)
    x = sp.solve(sp.coo_tensor(np.stack([rr, cc]), v, (6, 6)), b)
    np.testing.assert_allclose(N(x), np.linalg.solve(D, np.ones(6)), atol=1e-12)
    gradcheck(lambda v: sp.solve(sp.coo_tensor(np.stack([rr, cc]), v, (6, 6)), b), (v,))
    gradcheck(lambda v: sp.solve(sp.assemble(rr, cc, v, (6, 6)), b, method="gmres", tol=1e-13), (v,))


def test_solve_float32():
    D, r, c = _random_pattern(6, seed=15, diag=4.0)
    A = sp.coo_tensor(np.stack([r, c]), ds.tensor(D[r, c], dtype=ds.float32), (6, 6))
    b = ds.ones(6, dtype=ds.float32)
    for method in ("direct", "gmres"):
        x = sp.solve(A, b, method=method)
        assert x.dtype == ds.float32
        np.testing.assert_allclose(N(x), np.linalg.solve(D, np.ones(6)), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ errors

def test_errors_name_the_op_and_shapes():
    D, r, c = _random_pattern(4, 5, seed=16)
    with pytest.raises(IndexError, match=r"sparse.coo_tensor: column index 5 is out of range.*\[4, 5\]"):
        sp.coo_tensor(np.stack([r, np.where(c == c.max(), 5, c)]), ds.tensor(D[r, c]), (4, 5))
    with pytest.raises(IndexError, match="row index -1"):
        sp.coo_tensor([[-1], [0]], [1.0], (4, 5))
    with pytest.raises(RuntimeError, match=r"indices must have shape \[2, nnz\]"):
        sp.coo_tensor(np.stack([r, c])[:, :-1], ds.tensor(D[r, c]), (4, 5))
    with pytest.raises(RuntimeError, match="crow_indices must"):
        sp.csr_tensor([0, 2, 1, 3, 3], [0, 1, 2], [1.0, 2.0, 3.0], (4, 5))
    A, _ = _coo(D, r, c)
    with pytest.raises(RuntimeError, match=r"sparse.solve: A must be square, got shape \[4, 5\]"):
        sp.solve(A, ds.ones(4, dtype=ds.float64))
    B, _ = _coo(*_random_pattern(4, seed=17, diag=3.0))
    with pytest.raises(RuntimeError, match=r"sparse.solve: b must have shape \[4\] or \[4, k\].*got \[5\]"):
        sp.solve(B, ds.ones(5, dtype=ds.float64))
    with pytest.raises(RuntimeError, match="dtype mismatch"):
        sp.solve(B, ds.ones(4, dtype=ds.float32))
    with pytest.raises(RuntimeError, match=r"sparse.matmul: cannot multiply.*\[4, 5\].*\[4\]"):
        A @ ds.ones(4, dtype=ds.float64)
    with pytest.raises(ValueError, match="method must be one of"):
        sp.solve(B, ds.ones(4, dtype=ds.float64), method="lu")


def test_singular_and_nonconvergent_solves_raise():
    # rows 0 and 1 equal: singular
    idx = np.array([[0, 0, 1, 1, 2], [0, 1, 0, 1, 2]])
    A = sp.coo_tensor(idx, ds.tensor([1.0, 2.0, 1.0, 2.0, 1.0], dtype=ds.float64), (3, 3))
    b = ds.ones(3, dtype=ds.float64)
    with pytest.raises(RuntimeError, match=r"sparse.solve: the matrix of shape \[3, 3\] is singular"):
        sp.solve(A, b)
    D, r, c = _random_pattern(8, seed=18, diag=4.0)       # not symmetric: cg cannot converge
    N_ = sp.coo_tensor(np.stack([r, c]), ds.tensor(D[r, c], dtype=ds.float64), (8, 8))
    with pytest.raises(RuntimeError, match="method='cg' did not converge"):
        sp.solve(N_, ds.ones(8, dtype=ds.float64), method="cg", maxiter=3)
    Z = sp.coo_tensor([[0, 1], [1, 0]], ds.tensor([1.0, 1.0], dtype=ds.float64), (2, 2))
    with pytest.raises(RuntimeError, match="Jacobi preconditioner needs a nonzero diagonal"):
        sp.solve(Z, ds.ones(2, dtype=ds.float64), method="gmres", preconditioner="jacobi")


# ------------------------------------------------------------------ matrix-free cg

def test_matrix_free_cg_gradients_match_dense():
    D, r, c = _spd(7, seed=21)
    rng = np.random.default_rng(22)
    K = ds.tensor(D, dtype=ds.float64, requires_grad=True)
    s = ds.tensor(0.7, dtype=ds.float64, requires_grad=True)
    b = ds.tensor(rng.standard_normal(7), dtype=ds.float64, requires_grad=True)
    w = ds.tensor(rng.standard_normal(7), dtype=ds.float64)

    def matvec(v):                       # A = K + s I, with K and s closed over
        return K @ v + s * v
    x = sp.cg(matvec, b)
    np.testing.assert_allclose(N(x), np.linalg.solve(D + 0.7 * np.eye(7), N(b)), atol=1e-9)
    (x * w).sum().backward()

    K2 = ds.tensor(D, dtype=ds.float64, requires_grad=True)
    s2 = ds.tensor(0.7, dtype=ds.float64, requires_grad=True)
    b2 = ds.tensor(N(b), dtype=ds.float64, requires_grad=True)
    (ds.linalg.solve(K2 + s2 * ds.eye(7, dtype=ds.float64), b2) * w).sum().backward()
    np.testing.assert_allclose(N(b.grad), N(b2.grad), atol=1e-8)
    np.testing.assert_allclose(N(s.grad), N(s2.grad), atol=1e-8)
    np.testing.assert_allclose(N(K.grad), N(K2.grad), atol=1e-8)
    # the closed-over s, by finite differences (b as an input)
    gradcheck(lambda s, b: sp.cg(lambda v: K.detach() @ v + s * v, b), (s, b))


def test_matrix_free_cg_with_sparse_operator_and_multiple_rhs():
    D, r, c = _spd(9, seed=23)
    idx = np.stack([r, c])
    v = ds.tensor(D[r, c], dtype=ds.float64, requires_grad=True)
    B = ds.tensor(np.random.default_rng(24).standard_normal((9, 2)), dtype=ds.float64, requires_grad=True)
    x = sp.cg(lambda z: sp.coo_tensor(idx, v, (9, 9)) @ z, B)
    np.testing.assert_allclose(N(x), np.linalg.solve(D, N(B)), atol=1e-9)
    x.sum().backward()
    v2 = ds.tensor(D[r, c], dtype=ds.float64, requires_grad=True)
    B2 = ds.tensor(N(B), dtype=ds.float64, requires_grad=True)
    sp.solve(sp.coo_tensor(idx, v2, (9, 9)), B2).sum().backward()
    np.testing.assert_allclose(N(v.grad), N(v2.grad), atol=1e-8)
    np.testing.assert_allclose(N(B.grad), N(B2.grad), atol=1e-8)


def test_matrix_free_cg_double_backward_wrt_b_and_clear_error_through_matvec_parameters():
    """Second derivatives w.r.t. b are exact (x is linear in b); through Tensors that matvec
    closes over they would miss the dependence of x on them, so they raise instead of being
    silently wrong."""
    from diffsim.testing import gradgradcheck
    D, r, c = _spd(6, seed=31)
    rng = np.random.default_rng(32)
    Kc = ds.tensor(D, dtype=ds.float64)
    b = ds.tensor(rng.standard_normal(6), dtype=ds.float64, requires_grad=True)
    assert gradgradcheck(lambda b: (sp.cg(lambda v: Kc @ v, b) ** 3).sum(), (b,))
    K = ds.tensor(D, dtype=ds.float64, requires_grad=True)
    y = (sp.cg(lambda v: K @ v, b) ** 2).sum()
    with pytest.raises(RuntimeError, match="sparse.cg: second derivatives"):
        ds.autograd.grad(y, [K], create_graph=True)
    g, = ds.autograd.grad((sp.cg(lambda v: K @ v, b) ** 2).sum(), [K])      # first order still works
    K2 = ds.tensor(D, dtype=ds.float64, requires_grad=True)
    g2, = ds.autograd.grad((ds.linalg.solve(K2, b.detach()) ** 2).sum(), [K2])
    np.testing.assert_allclose(N(g), N(g2), atol=1e-8)


def test_matrix_free_cg_errors():
    b = ds.ones(4, dtype=ds.float64)
    with pytest.raises(RuntimeError, match="not symmetric positive definite"):
        sp.cg(lambda v: -v, b)
    with pytest.raises(RuntimeError, match="did not converge"):
        sp.cg(lambda v: v * ds.tensor([1.0, 10.0, 100.0, 1000.0], dtype=ds.float64), b, maxiter=2)
    with pytest.raises(RuntimeError, match="matvec must return a Tensor of its input's shape"):
        sp.cg(lambda v: v[:2], b)


def test_lazy_import():
    assert ds.sparse is sp
