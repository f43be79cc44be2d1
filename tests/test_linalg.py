"""Linear algebra: products (dot ... einsum, kron, cross) and ``ds.linalg`` (solve, inv, det,
slogdet, norms, cholesky, qr, eigh, svd, lstsq, pinv, matrix_power).

Forward against numpy, gradients against finite differences (gradcheck, gradgradcheck) and
against PyTorch where it is installed. Decompositions with sign/gauge freedom are checked
through gauge-invariant functions of their factors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import diffsim as ds
from diffsim.testing import gradcheck, gradgradcheck

RNG = np.random.default_rng(1234)


def leaf(a, dtype=ds.float64):
    return ds.tensor(np.asarray(a), dtype=dtype, requires_grad=True)


def randn(*shape):
    return RNG.standard_normal(shape)


def well_conditioned(batch, n, lo=1.0, hi=3.0):
    """Q diag(d) Q^T + small noise: singular values near [lo, hi]."""
    q = np.linalg.qr(RNG.standard_normal(batch + (n, n)))[0]
    d = np.linspace(lo, hi, n)
    return q @ (d[:, None] * np.swapaxes(q, -1, -2)) + 0.1 * RNG.standard_normal(batch + (n, n))


def spread_symmetric(batch, n):
    """Symmetric with well-separated eigenvalues (distinct: eigenvector gradients exist)."""
    q = np.linalg.qr(RNG.standard_normal(batch + (n, n)))[0]
    d = np.arange(n) * 1.5 - n / 2
    return q @ (d[:, None] * np.swapaxes(q, -1, -2))


def sym(x):
    return (x + x.mT) / 2


def np_of(t):
    return t.detach().numpy()


def check_both(fn, *inputs, **kw):
    assert gradcheck(fn, inputs, **kw)
    assert gradgradcheck(fn, inputs, **kw)


# ====================================================================== products

def test_dot_vdot_outer_inner_forward_and_methods():
    a, b = randn(4), randn(4)
    ta, tb = ds.tensor(a), ds.tensor(b)
    np.testing.assert_allclose(ds.dot(ta, tb).numpy(), a @ b)
    np.testing.assert_allclose(ta.dot(tb).numpy(), a @ b)
    np.testing.assert_allclose(ds.vdot(ta, tb).numpy(), np.vdot(a, b))
    np.testing.assert_allclose(ds.outer(ta, tb[:3]).numpy(), np.outer(a, b[:3]))
    np.testing.assert_allclose(ta.ger(tb).numpy(), np.outer(a, b))
    x, y = randn(2, 3, 4), randn(5, 4)
    np.testing.assert_allclose(ds.inner(ds.tensor(x), ds.tensor(y)).numpy(), np.inner(x, y))
    np.testing.assert_allclose(ds.inner(ds.tensor(2.0), ds.tensor(y)).numpy(), 2 * y)
    assert ds.dot(ds.tensor([1.0, 2.0], dtype=ds.float32), ds.tensor([3, 4])).dtype == ds.float32
    assert ds.outer(ds.tensor([1, 2]), ds.tensor([1.0], dtype=ds.float64)).dtype == ds.float64


def test_vector_products_gradients():
    a, b = leaf(randn(4)), leaf(randn(4))
    check_both(lambda a, b: ds.dot(a, b) ** 2, a, b)
    check_both(lambda a, b: ds.outer(a, b) ** 2, a, b)
    x, y = leaf(randn(2, 3)), leaf(randn(4, 3))
    check_both(lambda x, y: ds.inner(x, y) ** 2, x, y)


@pytest.mark.parametrize("sa,sb,dims", [
    ((2, 3, 4), (3, 4, 5), 2), ((2, 3, 4), (4, 5), 1), ((3, 4), (4, 3), ([0, 1], [1, 0])),
    ((2, 3), (4,), 0), ((2, 3, 4), (4, 2), ([2, 0], [0, 1])), ((3,), (3,), 1)])
def test_tensordot(sa, sb, dims):
    a, b = randn(*sa), randn(*sb)
    np.testing.assert_allclose(ds.tensordot(ds.tensor(a), ds.tensor(b), dims).numpy(),
                               np.tensordot(a, b, dims), rtol=1e-12, atol=1e-12)
    check_both(lambda a, b: ds.tensordot(a, b, dims) ** 2, leaf(a), leaf(b))


@pytest.mark.parametrize("sa,sb", [((2, 3), (3, 2)), ((3,), (2, 2)), ((2, 1, 2), (3, 2))])
def test_kron(sa, sb):
    a, b = randn(*sa), randn(*sb)
    np.testing.assert_allclose(ds.kron(ds.tensor(a), ds.tensor(b)).numpy(), np.kron(a, b))
    check_both(lambda a, b: ds.kron(a, b) ** 2, leaf(a), leaf(b))


def test_cross_broadcasts_and_dims():
    a, b = randn(4, 1, 3), randn(5, 3)
    np.testing.assert_allclose(ds.cross(ds.tensor(a), ds.tensor(b)).numpy(), np.cross(a, b))
    c, d = randn(3, 2), randn(3, 2)
    np.testing.assert_allclose(ds.cross(ds.tensor(c), ds.tensor(d), dim=0).numpy(),
                               np.cross(c, d, axis=0))
    np.testing.assert_allclose(ds.linalg.cross(ds.tensor(c), ds.tensor(d), dim=0).numpy(),
                               np.cross(c, d, axis=0))
    np.testing.assert_allclose(ds.tensor(a).cross(ds.tensor(b)).numpy(), np.cross(a, b))
    check_both(lambda a, b: ds.cross(a, b) ** 2, leaf(a), leaf(b))


def test_product_errors():
    with pytest.raises(RuntimeError, match=r"dot.*\[3\].*\[4\]"):
        ds.dot(ds.ones(3), ds.ones(4))
    with pytest.raises(RuntimeError, match=r"dot: expected 1-d"):
        ds.dot(ds.ones(3, 1), ds.ones(3))
    with pytest.raises(RuntimeError, match=r"cross.*length 3.*\[4, 2\]"):
        ds.cross(ds.ones(4, 2), ds.ones(4, 2))
    with pytest.raises(RuntimeError, match=r"tensordot.*contracted dimensions"):
        ds.tensordot(ds.ones(2, 3), ds.ones(2, 3), 1)
    with pytest.raises(RuntimeError, match=r"inner.*\[2, 3\].*\[3, 2\]"):
        ds.inner(ds.ones(2, 3), ds.ones(3, 2))


# ====================================================================== einsum

EINSUM_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),                      # implicit output
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 2)]),
    ("ii->i", [(3, 3)]),                              # diagonal
    ("ii", [(3, 3)]),                                 # trace (implicit)
    ("iji->j", [(3, 2, 3)]),                          # repeated subscript around another
    ("ij->", [(3, 4)]),
    ("ij->j", [(3, 4)]),                              # a subscript summed within one operand
    ("ji", [(3, 4)]),                                 # implicit transpose
    ("i,j->ij", [(3,), (4,)]),
    ("i,i->", [(5,), (5,)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (4, 2)]),      # ellipsis broadcasting
    ("...i,...i", [(2, 1, 3), (4, 3)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),        # three operands
    ("bi,bi,b->b", [(3, 4), (3, 4), (3,)]),
    ("Ab,bA->A", [(2, 3), (3, 2)]),                   # upper-case subscripts
    ("ij,j->i", [(3, 4), (1,)]),                       # size-1 subscript broadcasts
]


@pytest.mark.parametrize("eq,shapes", EINSUM_CASES)
def test_einsum_forward_and_gradients(eq, shapes):
    arrays = [randn(*s) for s in shapes]
    out = ds.einsum(eq, *[ds.tensor(a) for a in arrays])
    np.testing.assert_allclose(out.numpy(), np.einsum(eq, *arrays), rtol=1e-12, atol=1e-12)
    check_both(lambda *xs: ds.einsum(eq, *xs) ** 2, *[leaf(a) for a in arrays])


def test_einsum_matches_torch_including_summed_ellipsis():
    torch = pytest.importorskip("torch")
    for eq, shapes in EINSUM_CASES + [("...ij->ij", [(2, 3, 4)]), ("b...,b...->b", [(2, 3), (2, 3)])]:
        arrays = [randn(*s) for s in shapes]
        xs = [leaf(a) for a in arrays]
        ts = [torch.tensor(a, requires_grad=True) for a in arrays]
        out, tout = ds.einsum(eq, *xs), torch.einsum(eq, *ts)
        np.testing.assert_allclose(np_of(out), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
        w = randn(*tout.shape)
        (out * ds.tensor(w)).sum().backward()
        (tout * torch.tensor(w)).sum().backward()
        for x, t in zip(xs, ts):
            np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_einsum_list_operands_and_promotion():
    a, b = randn(2, 3), randn(3)
    r = ds.einsum("ij,j->i", [ds.tensor(a, dtype=ds.float32), ds.tensor(b)])
    assert r.dtype == ds.float64
    np.testing.assert_allclose(r.numpy(), a @ b, rtol=1e-6)


def test_einsum_errors():
    with pytest.raises(RuntimeError, match=r"einsum.*2 operand.*1 were given"):
        ds.einsum("ij,jk", ds.ones(2, 2))
    with pytest.raises(RuntimeError, match=r"einsum: subscript .j. has size 5.*\[5, 2\].*size 4"):
        ds.einsum("ij,jk->ik", ds.ones(3, 4), ds.ones(5, 2))
    with pytest.raises(RuntimeError, match=r"einsum.*number of subscripts"):
        ds.einsum("ijk", ds.ones(2, 2))
    with pytest.raises(RuntimeError, match=r"einsum: invalid subscript"):
        ds.einsum("i1", ds.ones(2, 2))
    with pytest.raises(RuntimeError, match=r"einsum: output subscript 'k'"):
        ds.einsum("ij->k", ds.ones(2, 2))


@settings(max_examples=15, deadline=None)
@given(batch=st.lists(st.integers(1, 3), min_size=0, max_size=2), n=st.integers(1, 3),
       k=st.integers(1, 3))
def test_einsum_batched_matmul_property(batch, n, k):
    a, b = randn(*batch, n, k), randn(k, n)
    x, y = leaf(a), leaf(b)
    out = ds.einsum("...ij,jk->...ik", x, y)
    np.testing.assert_allclose(np_of(out), a @ b, rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda x, y: ds.einsum("...ij,jk->...ik", x, y), (x, y))


# ====================================================================== solve / inv / det

def test_ds_linalg_is_wired():
    import diffsim
    assert diffsim.linalg.solve is ds.linalg.solve
    from diffsim.autodiff.ops import _tensor_ns
    missing = _tensor_ns.missing_names()
    assert not {"solve", "cholesky_solve", "einsum"} & set(missing)


def test_solve_forward_vector_and_matrix_cases():
    A = well_conditioned((2,), 3)
    B = randn(2, 3, 4)
    np.testing.assert_allclose(ds.linalg.solve(ds.tensor(A), ds.tensor(B)).numpy(),
                               np.linalg.solve(A, B))
    b = randn(2, 3)                                   # B.shape == A.shape[:-1]: a batch of vectors
    x = ds.linalg.solve(ds.tensor(A), ds.tensor(b))
    assert x.shape == (2, 3)
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(A, b[..., None])[..., 0])
    v = randn(3)                                      # one vector, broadcast over the batch
    np.testing.assert_allclose(ds.linalg.solve(ds.tensor(A), ds.tensor(v)).numpy(),
                               np.linalg.solve(A, v[None, :, None])[..., 0])
    Bl = randn(2, 5, 3)                               # left=False: X A = B
    X = ds.linalg.solve(ds.tensor(A), ds.tensor(Bl), left=False)
    np.testing.assert_allclose(X.numpy() @ A, Bl, atol=1e-12)


def test_solve_inv_det_slogdet_gradients():
    A = leaf(well_conditioned((2,), 3))
    B, b = leaf(randn(2, 3, 2)), leaf(randn(3))
    check_both(ds.linalg.solve, A, B)
    check_both(ds.linalg.solve, A, b)
    check_both(lambda A, B: ds.linalg.solve(A, B.mT, left=False), A, B)
    check_both(ds.linalg.inv, A)
    check_both(ds.linalg.det, A)
    check_both(lambda A: ds.linalg.slogdet(A).logabsdet, A)


def test_inv_det_slogdet_forward_and_methods():
    a = well_conditioned((3,), 4)
    a[0] *= -1
    A = ds.tensor(a)
    np.testing.assert_allclose(ds.linalg.inv(A).numpy(), np.linalg.inv(a), rtol=1e-10)
    np.testing.assert_allclose(A.inverse().numpy(), np.linalg.inv(a), rtol=1e-10)
    np.testing.assert_allclose(ds.linalg.det(A).numpy(), np.linalg.det(a), rtol=1e-10)
    np.testing.assert_allclose(A.det().numpy(), np.linalg.det(a), rtol=1e-10)
    sign, logabs = ds.linalg.slogdet(A)
    s_np, l_np = np.linalg.slogdet(a)
    np.testing.assert_allclose(sign.numpy(), s_np)
    np.testing.assert_allclose(logabs.numpy(), l_np, rtol=1e-10)
    assert not sign.requires_grad


@settings(max_examples=12, deadline=None)
@given(ba=st.lists(st.integers(1, 3), min_size=0, max_size=2),
       bb=st.lists(st.integers(1, 3), min_size=0, max_size=2),
       n=st.integers(1, 4), k=st.integers(1, 2))
def test_solve_broadcast_batches_property(ba, bb, n, k):
    # make the two batch shapes broadcastable: B's batch dims are 1 or A's (right-aligned)
    bb = [1 if (i < len(ba) and s != ba[-1 - i]) else s for i, s in enumerate(reversed(bb))][::-1]
    a = well_conditioned(tuple(ba), n)
    b = randn(*bb, n, k)
    A, B = leaf(a), leaf(b)
    X = ds.linalg.solve(A, B)
    full = np.broadcast_shapes(tuple(ba), tuple(bb))
    expect = np.linalg.solve(np.broadcast_to(a, full + (n, n)), np.broadcast_to(b, full + (n, k)))
    if b.shape == a.shape[:-1]:                     # PyTorch's rule: then B is a batch of vectors
        expect = np.linalg.solve(a, b[..., None])[..., 0]
    np.testing.assert_allclose(np_of(X), expect, rtol=1e-9, atol=1e-10)
    assert gradcheck(ds.linalg.solve, (A, B))


@settings(max_examples=12, deadline=None)
@given(batch=st.lists(st.integers(0, 3), min_size=0, max_size=2), n=st.integers(1, 4))
def test_inv_det_batched_property(batch, n):
    a = well_conditioned(tuple(batch), n)
    A = leaf(a)
    np.testing.assert_allclose(np_of(ds.linalg.inv(A)), np.linalg.inv(a), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(np_of(ds.linalg.det(A)), np.linalg.det(a), rtol=1e-9, atol=1e-12)
    if A.numel():
        assert gradcheck(lambda A: ds.linalg.inv(A), (A,))
        assert gradcheck(lambda A: ds.linalg.det(A), (A,))


def test_det_gradient_at_singular_matrices_matches_torch():
    torch = pytest.importorskip("torch")
    w = randn(3, 3)
    for m in (np.array([[1.0, 2, 3], [2, 4, 6], [1, 0, 1]]),    # rank 2
              np.array([[1.0, 2, 3], [2, 4, 6], [3, 6, 9]]),    # rank 1
              np.eye(3)):
        A = leaf(m)
        g, = ds.autograd.grad(ds.linalg.det(A), [A], create_graph=True)
        At = torch.tensor(m, requires_grad=True)
        gt, = torch.autograd.grad(torch.linalg.det(At), [At], create_graph=True)
        np.testing.assert_allclose(np_of(g), gt.detach().numpy(), atol=1e-12)
        if np.linalg.matrix_rank(m) >= 2:           # second order through the SVD (distinct values)
            h, = ds.autograd.grad((g * ds.tensor(w)).sum(), [A])
            ht, = torch.autograd.grad((gt * torch.tensor(w)).sum(), [At])
            np.testing.assert_allclose(h.numpy(), ht.numpy(), atol=1e-10)


def test_solve_inv_det_gradients_match_torch():
    torch = pytest.importorskip("torch")
    a, b = well_conditioned((2,), 3), randn(2, 3, 2)
    fns = [(lambda A, B: ds.linalg.solve(A, B), lambda A, B: torch.linalg.solve(A, B)),
           (lambda A, B: ds.linalg.inv(A) @ B, lambda A, B: torch.linalg.inv(A) @ B),
           (lambda A, B: ds.linalg.det(A) * B.sum(), lambda A, B: torch.linalg.det(A) * B.sum()),
           (lambda A, B: ds.linalg.slogdet(A)[1] * B.sum(),
            lambda A, B: torch.linalg.slogdet(A)[1] * B.sum())]
    for f, ft in fns:
        A, B = leaf(a), leaf(b)
        At, Bt = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        (f(A, B) ** 2).sum().backward()
        (ft(At, Bt) ** 2).sum().backward()
        np.testing.assert_allclose(A.grad.numpy(), At.grad.numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(B.grad.numpy(), Bt.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_solve_triangular():
    a, b = well_conditioned((), 4), randn(4, 2)
    for upper in (True, False):
        T = np.triu(a) if upper else np.tril(a)
        x = ds.linalg.solve_triangular(ds.tensor(a), ds.tensor(b), upper=upper)
        np.testing.assert_allclose(x.numpy(), np.linalg.solve(T, b), rtol=1e-10)
    check_both(lambda A, B: ds.linalg.solve_triangular(A, B, upper=False), leaf(a), leaf(b))


# ====================================================================== cholesky

def spd(x):
    return x @ x.mT + 3 * ds.eye(x.shape[-1], dtype=x.dtype)


def test_cholesky_forward_and_gradients():
    x = randn(2, 4, 4)
    a = x @ np.swapaxes(x, -1, -2) + 3 * np.eye(4)
    L = ds.linalg.cholesky(ds.tensor(a))
    np.testing.assert_allclose(L.numpy(), np.linalg.cholesky(a), rtol=1e-10)
    U = ds.linalg.cholesky(ds.tensor(a), upper=True)
    np.testing.assert_allclose(U.numpy(), np.swapaxes(np.linalg.cholesky(a), -1, -2), rtol=1e-10)
    X = leaf(randn(2, 3, 3))
    check_both(lambda X: ds.linalg.cholesky(spd(X)), X)
    check_both(lambda X: ds.linalg.cholesky(spd(X), upper=True), X)


def test_cholesky_gradient_matches_torch():
    torch = pytest.importorskip("torch")
    x, w = randn(3, 3), randn(3, 3)
    X = leaf(x)
    Xt = torch.tensor(x, requires_grad=True)
    (ds.linalg.cholesky(spd(X)) * ds.tensor(w)).sum().backward()
    (torch.linalg.cholesky(Xt @ Xt.mT + 3 * torch.eye(3, dtype=torch.float64)) *
     torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(X.grad.numpy(), Xt.grad.numpy(), rtol=1e-9, atol=1e-11)


# ====================================================================== qr

@pytest.mark.parametrize("shape", [(4, 3), (3, 3), (3, 5), (2, 4, 2), (2, 2, 3)])
def test_qr_forward_and_gradients(shape):
    a = randn(*shape)
    Q, R = ds.linalg.qr(ds.tensor(a))
    k = min(shape[-2:])
    assert Q.shape == shape[:-2] + (shape[-2], k) and R.shape == shape[:-2] + (k, shape[-1])
    np.testing.assert_allclose((Q @ R).numpy(), a, atol=1e-12)
    np.testing.assert_allclose((Q.mT @ Q).numpy(), np.broadcast_to(np.eye(k), shape[:-2] + (k, k)),
                               atol=1e-12)
    np.testing.assert_allclose(np.tril(R.numpy(), -1), 0)
    A = leaf(a)
    check_both(lambda A: ds.linalg.qr(A), A)
    check_both(lambda A: ds.linalg.qr(A, mode="r").R, A)
    if shape[-2] <= shape[-1]:
        check_both(lambda A: ds.linalg.qr(A, mode="complete"), A)


def test_qr_modes_and_torch():
    a = randn(5, 3)
    Q, R = ds.linalg.qr(ds.tensor(a), mode="complete")
    assert Q.shape == (5, 5) and R.shape == (5, 3)
    np.testing.assert_allclose((Q @ R).numpy(), a, atol=1e-12)
    Q, R = ds.linalg.qr(ds.tensor(a), mode="r")
    assert Q.numel() == 0 and R.shape == (3, 3)
    A = leaf(a)
    Qc, Rc = ds.linalg.qr(A, mode="complete")
    with pytest.raises(RuntimeError, match=r"linalg.qr backward.*complete"):
        Rc.sum().backward()
    torch = pytest.importorskip("torch")
    w1, w2 = randn(5, 3), randn(3, 3)
    A = leaf(a)
    At = torch.tensor(a, requires_grad=True)
    Q, R = ds.linalg.qr(A)
    Qt, Rt = torch.linalg.qr(At)
    np.testing.assert_allclose(np.abs(np_of(R)), np.abs(Rt.detach().numpy()), atol=1e-12)
    # fix the LAPACK sign convention so both factorizations are the same before comparing
    s, st_ = np.sign(np.diag(np_of(R))), np.sign(np.diag(Rt.detach().numpy()))
    ((Q * ds.tensor(s * w1[0])).sum() + (ds.tensor(s)[:, None] * R * ds.tensor(w2)).sum()).backward()
    ((Qt * torch.tensor(st_ * w1[0])).sum() + (torch.tensor(st_)[:, None] * Rt *
                                             torch.tensor(w2)).sum()).backward()
    np.testing.assert_allclose(A.grad.numpy(), At.grad.numpy(), rtol=1e-9, atol=1e-11)


# ====================================================================== eigh

def test_eigh_forward():
    a = spread_symmetric((2,), 4)
    L, V = ds.linalg.eigh(ds.tensor(a))
    Ln, _ = np.linalg.eigh(a)
    np.testing.assert_allclose(L.numpy(), Ln, atol=1e-12)
    np.testing.assert_allclose((V @ ds.diag_embed(L) @ V.mT).numpy(), a, atol=1e-12)
    np.testing.assert_allclose(ds.linalg.eigvalsh(ds.tensor(a)).numpy(), Ln, atol=1e-12)
    up = np.triu(a) + 7 * np.tril(np.ones((4, 4)), -1)      # only the upper triangle is read
    np.testing.assert_allclose(ds.linalg.eigh(ds.tensor(up), UPLO="U")[0].numpy(),
                               np.linalg.eigh(a)[0], atol=1e-12)


def test_eigh_gradients_gauge_invariant():
    E = leaf(spread_symmetric((2,), 4))
    check_both(lambda X: ds.linalg.eigh(sym(X))[0], E)
    check_both(lambda X: ds.linalg.eigvalsh(sym(X)), E)
    # f(A) = V diag(L^3) V^T and the projector onto one eigenvector: independent of signs
    check_both(lambda X: (lambda L, V: (V * L.unsqueeze(-2) ** 3) @ V.mT)(*ds.linalg.eigh(sym(X))), E)
    check_both(lambda X: (lambda L, V: V[..., :1] @ V[..., :1].mT)(*ds.linalg.eigh(sym(X))), E)


def test_eigvalsh_gradient_with_repeated_eigenvalues_is_finite():
    A = leaf(np.eye(3) * 2.0)
    ds.linalg.eigvalsh(A).sum().backward()
    np.testing.assert_allclose(A.grad.numpy(), np.eye(3), atol=1e-12)


def test_eigh_matches_torch():
    torch = pytest.importorskip("torch")
    a, w = spread_symmetric((), 4), randn(4, 4)
    X, Xt = leaf(a), torch.tensor(a, requires_grad=True)
    L, V = ds.linalg.eigh(sym(X))
    Lt, Vt = torch.linalg.eigh((Xt + Xt.mT) / 2)
    np.testing.assert_allclose(np_of(L), Lt.detach().numpy(), atol=1e-12)
    ((V * V * ds.tensor(w)).sum() + (L ** 2).sum()).backward()       # V*V: sign invariant
    ((Vt * Vt * torch.tensor(w)).sum() + (Lt ** 2).sum()).backward()
    np.testing.assert_allclose(X.grad.numpy(), Xt.grad.numpy(), rtol=1e-9, atol=1e-11)


# ====================================================================== svd

def _svd_fn(full):
    def f(X):
        U, S, Vh = ds.linalg.svd(X, full_matrices=full)
        k = S.shape[-1]
        U, Vh = U[..., :k], Vh[..., :k, :]
        return (U * (S ** 2 + S).unsqueeze(-2)) @ Vh, U[..., :1] @ U[..., :1].mT, Vh[..., :1, :].mT @ Vh[..., :1, :]
    return f


@pytest.mark.parametrize("shape", [(4, 3), (3, 3), (3, 5), (2, 4, 2)])
def test_svd_forward_and_gradients(shape):
    a = randn(*shape)
    U, S, Vh = ds.linalg.svd(ds.tensor(a))
    m, n = shape[-2:]
    k = min(m, n)
    assert U.shape == shape[:-2] + (m, m) and S.shape == shape[:-2] + (k,) and Vh.shape == shape[:-2] + (n, n)
    np.testing.assert_allclose(S.numpy(), np.linalg.svd(a, compute_uv=False), atol=1e-12)
    np.testing.assert_allclose(((U[..., :k] * S.unsqueeze(-2)) @ Vh[..., :k, :]).numpy(), a, atol=1e-12)
    np.testing.assert_allclose(ds.linalg.svdvals(ds.tensor(a)).numpy(), S.numpy(), atol=1e-12)
    A = leaf(a)
    check_both(_svd_fn(False), A)
    check_both(_svd_fn(True), A)
    check_both(ds.linalg.svdvals, A)


def test_svdvals_gradient_with_repeated_singular_values_is_finite():
    A = leaf(np.eye(3))
    ds.linalg.svdvals(A).sum().backward()
    np.testing.assert_allclose(A.grad.numpy(), np.eye(3), atol=1e-12)


def test_svd_matches_torch():
    torch = pytest.importorskip("torch")
    for shape in [(5, 3), (3, 5)]:
        a = randn(*shape)
        w = randn(*shape)
        X, Xt = leaf(a), torch.tensor(a, requires_grad=True)
        U, S, Vh = ds.linalg.svd(X, full_matrices=False)
        Ut, St, Vht = torch.linalg.svd(Xt, full_matrices=False)
        (((U * (S ** 3).unsqueeze(-2)) @ Vh * ds.tensor(w)).sum() + (U[:, :1] @ Vh[:1]).sum()).backward()
        (((Ut * (St ** 3).unsqueeze(-2)) @ Vht * torch.tensor(w)).sum() +
         (Ut[:, :1] @ Vht[:1]).sum()).backward()
        np.testing.assert_allclose(X.grad.numpy(), Xt.grad.numpy(), rtol=1e-9, atol=1e-11)


# ====================================================================== pinv / lstsq / matrix_power

@pytest.mark.parametrize("shape", [(5, 3), (3, 3), (2, 4), (2, 3, 2)])
def test_pinv(shape):
    a = randn(*shape)
    np.testing.assert_allclose(ds.linalg.pinv(ds.tensor(a)).numpy(), np.linalg.pinv(a), atol=1e-12)
    check_both(ds.linalg.pinv, leaf(a))


def test_pinv_rank_deficient_and_hermitian():
    a = randn(4, 2) @ randn(2, 5)                      # rank 2
    np.testing.assert_allclose(ds.linalg.pinv(ds.tensor(a)).numpy(), np.linalg.pinv(a), atol=1e-10)
    s = spread_symmetric((), 4)
    np.testing.assert_allclose(ds.linalg.pinv(ds.tensor(s), hermitian=True).numpy(), np.linalg.pinv(s),
                               atol=1e-10)
    assert gradcheck(lambda X: ds.linalg.pinv(sym(X), hermitian=True), (leaf(s),))


def test_pinv_matches_torch():
    torch = pytest.importorskip("torch")
    a, w = randn(5, 3), randn(3, 5)
    X, Xt = leaf(a), torch.tensor(a, requires_grad=True)
    (ds.linalg.pinv(X) * ds.tensor(w)).sum().backward()
    (torch.linalg.pinv(Xt) * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(X.grad.numpy(), Xt.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_lstsq():
    a, b = randn(6, 3), randn(6, 2)
    res = ds.linalg.lstsq(ds.tensor(a), ds.tensor(b))
    sol, resid, rank, sv = np.linalg.lstsq(a, b, rcond=None)
    np.testing.assert_allclose(res.solution.numpy(), sol, atol=1e-12)
    np.testing.assert_allclose(res.residuals.numpy(), resid, rtol=1e-10)
    assert int(res.rank.item()) == rank
    np.testing.assert_allclose(res.singular_values.numpy(), sv, atol=1e-12)
    v = randn(6)
    np.testing.assert_allclose(ds.linalg.lstsq(ds.tensor(a), ds.tensor(v)).solution.numpy(),
                               np.linalg.lstsq(a, v, rcond=None)[0], atol=1e-12)
    wide = randn(2, 4)                                   # minimum-norm solution
    np.testing.assert_allclose(ds.linalg.lstsq(ds.tensor(wide), ds.tensor(b[:2])).solution.numpy(),
                               np.linalg.lstsq(wide, b[:2], rcond=None)[0], atol=1e-12)
    check_both(lambda A, B: ds.linalg.lstsq(A, B).solution, leaf(a), leaf(b))
    check_both(lambda A, B: ds.linalg.lstsq(A, B).solution, leaf(wide), leaf(b[:2]))


def test_lstsq_matches_torch():
    torch = pytest.importorskip("torch")
    a, b = randn(2, 6, 3), randn(2, 6, 2)
    X, Y = leaf(a), leaf(b)
    Xt, Yt = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    s = ds.linalg.lstsq(X, Y).solution
    st_ = torch.linalg.lstsq(Xt, Yt).solution
    np.testing.assert_allclose(np_of(s), st_.detach().numpy(), atol=1e-12)
    (s ** 2).sum().backward()
    (st_ ** 2).sum().backward()
    np.testing.assert_allclose(X.grad.numpy(), Xt.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(Y.grad.numpy(), Yt.grad.numpy(), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("p", [0, 1, 2, 3, 5, -1, -3])
def test_matrix_power(p):
    a = well_conditioned((2,), 3)
    np.testing.assert_allclose(ds.linalg.matrix_power(ds.tensor(a), p).numpy(),
                               np.linalg.matrix_power(a, p), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ds.tensor(a).matrix_power(p).numpy(), np.linalg.matrix_power(a, p),
                               rtol=1e-10, atol=1e-12)
    if p:
        check_both(lambda A: ds.linalg.matrix_power(A, p), leaf(a))


def test_matrix_rank_cond_multi_dot_vecdot():
    a = randn(4, 2) @ randn(2, 5)
    assert ds.linalg.matrix_rank(ds.tensor(a)).item() == 2
    w = well_conditioned((), 3)
    np.testing.assert_allclose(ds.linalg.cond(ds.tensor(w)).numpy(), np.linalg.cond(w), rtol=1e-10)
    np.testing.assert_allclose(ds.linalg.cond(ds.tensor(w), "fro").numpy(), np.linalg.cond(w, "fro"),
                               rtol=1e-10)
    x, m1, m2, y = randn(3), randn(3, 4), randn(4, 2), randn(2)
    np.testing.assert_allclose(
        ds.linalg.multi_dot([ds.tensor(x), ds.tensor(m1), ds.tensor(m2), ds.tensor(y)]).numpy(),
        np.linalg.multi_dot([x, m1, m2, y]))
    np.testing.assert_allclose(ds.linalg.vecdot(ds.tensor(m1), ds.tensor(m1[0])).numpy(), m1 @ m1[0])


# ====================================================================== norms

NORM_CASES = [
    ((3, 4), None, None), ((2, 3, 4), None, None), ((4,), 1, None), ((4,), float("inf"), None),
    ((3, 4), "fro", None), ((3, 4), "nuc", None), ((3, 4), 2, None), ((3, 4), -2, None),
    ((3, 4), 1, None), ((3, 4), -1, None), ((3, 4), float("inf"), None),
    ((3, 4), -float("inf"), None), ((2, 3, 4), 2, (0, 2)), ((2, 3, 4), "nuc", (2, 1)),
    ((2, 3, 4), 1, (-1, 0)), ((2, 3, 4), 3, 1), ((2, 3, 4), None, (0, 1)), ((2, 3, 4), -float("inf"), (1, 2)),
]


@pytest.mark.parametrize("shape,ord,dim", NORM_CASES)
def test_norm_matches_torch(shape, ord, dim):
    torch = pytest.importorskip("torch")
    a = randn(*shape)
    for keepdim in (False, True):
        X, Xt = leaf(a), torch.tensor(a, requires_grad=True)
        r = ds.linalg.norm(X, ord, dim, keepdim)
        rt = torch.linalg.norm(Xt, ord, dim, keepdim)
        assert r.shape == tuple(rt.shape)
        np.testing.assert_allclose(np_of(r), rt.detach().numpy(), rtol=1e-10)
        w = randn(*rt.shape)
        (r * ds.tensor(w)).sum().backward()
        (rt * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(X.grad.numpy(), Xt.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_norm_forward_vs_numpy_and_gradients():
    a = randn(3, 4)
    for ord in (None, "fro", "nuc", 1, -1, 2, -2, np.inf, -np.inf):
        np.testing.assert_allclose(ds.linalg.norm(ds.tensor(a), ord).numpy(), np.linalg.norm(a, ord),
                                   rtol=1e-12)
        np.testing.assert_allclose(ds.linalg.matrix_norm(ds.tensor(a), "fro" if ord is None else ord).numpy(),
                                   np.linalg.norm(a, "fro" if ord is None else ord), rtol=1e-12)
    np.testing.assert_allclose(ds.linalg.vector_norm(ds.tensor(a), 3, dim=1).numpy(),
                               np.linalg.norm(a, 3, axis=1), rtol=1e-12)
    np.testing.assert_allclose(ds.tensor(a).norm("nuc").numpy(), np.linalg.norm(a, "nuc"), rtol=1e-12)
    A = leaf(a)
    for ord in ("fro", "nuc", 2, -2):
        check_both(lambda X: ds.linalg.matrix_norm(X, ord), A)
    check_both(lambda X: ds.linalg.vector_norm(X, 3, dim=(0, 1)), A)


def test_norm_dtype_argument():
    x = ds.randn(3, 3, dtype=ds.float32)
    assert ds.linalg.norm(x, dtype=ds.float64).dtype == ds.float64
    assert ds.linalg.matrix_norm(x, "nuc").dtype == ds.float32


# ====================================================================== float32, errors

def test_float32_forward_and_backward_stay_float32():
    a = well_conditioned((), 3).astype(np.float32)
    A = ds.tensor(a, requires_grad=True)
    outs = [ds.linalg.solve(A, A), ds.linalg.inv(A), ds.linalg.det(A), ds.linalg.slogdet(A)[1],
            ds.linalg.cholesky(A @ A.mT), ds.linalg.qr(A)[1], ds.linalg.eigh(sym(A))[0],
            ds.linalg.svd(A)[1], ds.linalg.pinv(A), ds.linalg.matrix_norm(A, "nuc")]
    for o in outs:
        assert o.dtype == ds.float32
    total = sum(o.sum() for o in outs)
    total.backward()
    assert A.grad.dtype == ds.float32 and np.all(np.isfinite(A.grad.numpy()))


def test_errors_non_square_and_dtype():
    for fn in (ds.linalg.inv, ds.linalg.det, ds.linalg.slogdet, ds.linalg.cholesky, ds.linalg.eigh,
               ds.linalg.eigvalsh):
        with pytest.raises(RuntimeError, match=r"linalg\.\w+: A must be batches of square matrices.*"
                                               r"2 by 3.*\[4, 2, 3\]"):
            fn(ds.ones(4, 2, 3, dtype=ds.float64))
    with pytest.raises(RuntimeError, match=r"linalg.inv: expected a float32 or float64.*int64"):
        ds.linalg.inv(ds.tensor([[1, 2], [3, 4]]))
    with pytest.raises(RuntimeError, match=r"linalg.svd: A must have at least 2 dimensions.*\[3\]"):
        ds.linalg.svd(ds.ones(3))


def test_errors_singular():
    sing = ds.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=ds.float64)
    with pytest.raises(RuntimeError, match=r"linalg.solve: .*\[2, 2\].*singular"):
        ds.linalg.solve(sing, ds.ones(2, dtype=ds.float64))
    with pytest.raises(RuntimeError, match=r"linalg.inv: .*\[2, 2\].*singular"):
        ds.linalg.inv(sing)
    with pytest.raises(RuntimeError, match=r"linalg.inv: .*\[3, 2, 2\] \(at least one matrix"):
        ds.linalg.inv(ds.stack([sing, sing, sing]))
    with pytest.raises(RuntimeError, match=r"linalg.cholesky: .*not positive-definite"):
        ds.linalg.cholesky(ds.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=ds.float64))


def test_errors_solve_shapes():
    A = ds.eye(3, dtype=ds.float64)
    with pytest.raises(RuntimeError, match=r"linalg.solve: incompatible shapes of A \[3, 3\] and B \[4, 2\]"):
        ds.linalg.solve(A, ds.ones(4, 2, dtype=ds.float64))
    with pytest.raises(RuntimeError, match=r"linalg.solve: the batch dimensions of A .*\[2, 3, 3\].*"
                                           r"\[4, 3, 1\]"):
        ds.linalg.solve(ds.ones(2, 3, 3, dtype=ds.float64) + A, ds.ones(4, 3, 1, dtype=ds.float64))
    with pytest.raises(RuntimeError, match=r"linalg.lstsq: incompatible shapes"):
        ds.linalg.lstsq(ds.ones(4, 3, dtype=ds.float64), ds.ones(3, 2, dtype=ds.float64))


def test_errors_norm_arguments():
    with pytest.raises(RuntimeError, match=r"linalg.norm: If dim is not specified but ord is.*3D"):
        ds.linalg.norm(ds.ones(2, 2, 2), 2)
    with pytest.raises(RuntimeError, match=r"linalg.matrix_norm: order 3"):
        ds.linalg.matrix_norm(ds.ones(2, 2), 3)
    with pytest.raises(RuntimeError, match=r"linalg.qr: .*unrecognized mode"):
        ds.linalg.qr(ds.ones(2, 2), mode="full")


def test_backward_namespace_twins_agree_with_raw():
    from diffsim.autodiff import rawops
    from diffsim.autodiff.ops import TENSOR_NS
    a = well_conditioned((2,), 3)
    L = np.linalg.cholesky(a @ np.swapaxes(a, -1, -2))
    for a, L, b in ((a, L, randn(2, 3, 2)), (a, L, randn(3, 1)), (a[0], L[0], randn(3))):
        np.testing.assert_allclose(TENSOR_NS.solve(ds.tensor(a), ds.tensor(b)).numpy(),
                                   rawops.solve(a, b), rtol=1e-12)
        np.testing.assert_allclose(TENSOR_NS.cholesky_solve(ds.tensor(b), ds.tensor(L)).numpy(),
                                   rawops.cholesky_solve(b, L), rtol=1e-10)
    x, y = randn(2, 3), randn(3)
    np.testing.assert_allclose(TENSOR_NS.einsum("ij,j->i", ds.tensor(x), ds.tensor(y)).numpy(),
                               rawops.einsum("ij,j->i", x, y))


# ------------------------------------------------------------------ regressions (review)

@pytest.mark.parametrize("eq", ["ii->i", "ij->ji", "ijk->ijk"])
def test_einsum_of_one_operand_is_not_a_silent_view(eq):
    A = ds.ones(3, 3) if eq != "ijk->ijk" else ds.ones(2, 2, 2)
    w = ds.ones(A.shape[:1] if eq == "ii->i" else A.shape, requires_grad=True)
    y = ds.einsum(eq, A)
    loss = (y * w).sum()
    A.add_(1.0)                  # must not change y, nor the value saved for w's gradient
    loss.backward()
    assert float(y.sum()) == y.numel() and float(w.grad.sum()) == w.numel()
