"""``ds.linalg``: solvers, inverses, determinants, decompositions and norms, as ``torch.linalg``.

Every function takes batches of matrices (``[..., m, n]``, leading dims broadcast where two
operands meet), works on float32 and float64, on numpy (CPU) and cupy (GPU) arrays, and is
differentiable twice: each backward rule is written with the ``ns`` namespace, so under
``create_graph=True`` it records a graph of its own.

Backward rules (Giles, "Collected matrix derivative results"; Seeger et al. for Cholesky;
Walter/Townsend and PyTorch's FunctionsManual for the SVD)::

    solve      X = A^-1 B:      gB = A^-T g,  gA = -gB X^T
    inv        X = A^-1:        gA = -X^T g X^T
    det        d = det A:       gA = g d A^-T  (the cofactor matrix, from the SVD if A is singular)
    slogdet    l = log|det A|:  gA = g A^-T
    cholesky   A = L L^T:       gA = sym(L^-T Phi(L^T g) L^-1), Phi = lower triangle, diagonal halved
    qr         A = Q R:         gA = (gQ + Q copyutl(gR R^T - Q^T gQ)) R^-T  (m >= n; m < n by blocks)
    eigh       A = V diag(l) V^T: gA = sym(V (diag(gl) + F o V^T gV) V^T),  F_ij = 1/(l_j - l_i)
    svd        A = U diag(s) Vh: F_ij = 1/(s_j^2 - s_i^2), plus the terms of the complements
    pinv       Golub & Pereyra's derivative of the pseudo-inverse (constant rank)

Eigenvector and singular-vector gradients exist only where the eigen/singular values are
distinct; functions of the values alone (``eigvalsh``, ``svdvals``, nuclear and spectral
norms) have gradients everywhere. ``eigh``/``cholesky`` read one triangle of ``A`` and return
the symmetrized gradient, the gradient on symmetric matrices.
"""
from __future__ import annotations

import collections
import numbers

import numpy as np

from .backend import get_xp
from .function import apply, defop
from .grad_mode import STATE
from .tensor import Tensor
from .ops import reduction as _red
from .ops import shape as _sh
from .ops.linalg import _promote_pair, cross as _cross, matmul
from .ops._util import method, norm_dim

__all__ = ["solve", "solve_triangular", "inv", "det", "slogdet", "norm", "vector_norm",
           "matrix_norm", "cholesky", "qr", "eigh", "eigvalsh", "svd", "svdvals", "lstsq", "pinv",
           "matrix_power", "matrix_rank", "cond", "multi_dot", "vecdot", "cross", "matmul",
           "diagonal"]

SlogdetResult = collections.namedtuple("SlogdetResult", ["sign", "logabsdet"])
QRResult = collections.namedtuple("QRResult", ["Q", "R"])
EighResult = collections.namedtuple("EighResult", ["eigenvalues", "eigenvectors"])
SVDResult = collections.namedtuple("SVDResult", ["U", "S", "Vh"])
LstsqResult = collections.namedtuple("LstsqResult", ["solution", "residuals", "rank", "singular_values"])

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ------------------------------------------------------------------ argument checks

def _float_arg(A, opname, argname="A"):
    if not isinstance(A, Tensor):
        raise TypeError(f"{opname}: argument '{argname}' must be a Tensor, got {type(A).__name__}")
    if A._data.dtype not in _FLOAT_DTYPES:
        raise RuntimeError(f"{opname}: expected a float32 or float64 tensor as {argname}, got dtype "
                           f"{A._data.dtype} (shape {list(A.shape)}); convert it with .double() or "
                           ".float() first")
    return A


def _matrix(A, opname, argname="A"):
    A = _float_arg(A, opname, argname)
    if A.ndim < 2:
        raise RuntimeError(f"{opname}: {argname} must have at least 2 dimensions (a matrix or a batch "
                           f"of matrices), got shape {list(A.shape)}")
    return A


def _square(A, opname, argname="A"):
    A = _matrix(A, opname, argname)
    if A.shape[-1] != A.shape[-2]:
        raise RuntimeError(f"{opname}: {argname} must be batches of square matrices, but they are "
                           f"{A.shape[-2]} by {A.shape[-1]} matrices (shape {list(A.shape)})")
    return A


def _float_pair(A, B, opname):
    _float_arg(A, opname, "A")
    _float_arg(B, opname, "B")
    return _promote_pair(A, B, opname)


def _batch_shape(sa, sb, opname, A, B):
    try:
        return tuple(np.broadcast_shapes(sa, sb))
    except ValueError:
        raise RuntimeError(f"{opname}: the batch dimensions of A (shape {list(A.shape)}) and B (shape "
                           f"{list(B.shape)}) cannot be broadcast together") from None


def _lapack_error(opname, shape, e, what=None):
    batch = " (at least one matrix of the batch)" if len(shape) > 2 else ""
    text = what or f"failed ({e})"
    return RuntimeError(f"{opname}: the input of shape {list(shape)}{batch} {text}")


def _singular(opname, shape, e):
    return _lapack_error(opname, shape, e, "is singular, so it has no inverse and the system no unique "
                         "solution; use ds.linalg.lstsq or ds.linalg.pinv for singular or "
                         "least-squares problems")


# ------------------------------------------------------------------ helpers for backward rules

def _eye(ns, ref, n, dtype):
    return ns.diag_embed(ns.zeros_meta(ref, (n,), dtype) + 1)


def _col(ns, x):
    """``x[..., None, None]`` on either namespace."""
    return ns.unsqueeze(ns.unsqueeze(x, -1), -1)


def _const_zero(x):
    """True if ``x`` is all zeros and carries no graph (a zero-filled gradient)."""
    if isinstance(x, Tensor):
        if x.requires_grad:
            return False
        x = x._data
    return not bool(get_xp(x).any(x))


def _data(x):
    return x._data if isinstance(x, Tensor) else x


def _solve_mT(ns, a, g):
    """``A^-T g`` with A's batch broadcast to g's (cupy's solve does not broadcast)."""
    at = ns.mT(a)
    shape = tuple(g.shape[:-2]) + tuple(a.shape[-2:])
    if tuple(at.shape) != shape:
        at = ns.broadcast_to(at, shape)
    return ns.solve(at, g)


# ------------------------------------------------------------------ solve / inv

def _solve_fwd(a, b):
    xp = get_xp(a)
    batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    if a.shape[:-2] != batch:
        a = xp.broadcast_to(a, batch + a.shape[-2:])
    if b.shape[:-2] != batch:
        b = xp.broadcast_to(b, batch + b.shape[-2:])
    try:
        return xp.linalg.solve(a, b)
    except np.linalg.LinAlgError as e:
        raise _singular("linalg.solve", a.shape, e) from None


_solve = defop("linalg_solve", _solve_fwd, save=(0,), save_output=True, broadcast=True)


@_solve.defvjp
def _(ns, n, g, a, x):
    gb = _solve_mT(ns, a, g)
    ga = -ns.matmul(gb, ns.mT(x)) if n.edges[0] is not None else None
    return ga, gb


def _ns_solve(a, b):
    """The Tensor twin of ``rawops.solve`` (numpy's rule: ``b`` is a vector only if 1-d)."""
    if b.ndim == 1:
        return _sh.squeeze(apply(_solve, (a, _sh.unsqueeze(b, -1))), -1)
    return apply(_solve, (a, b))


def _ns_cholesky_solve(b, L):
    """The Tensor twin of ``rawops.cholesky_solve``: ``(L L^T)^-1 b``."""
    return _ns_solve(L.mT, _ns_solve(L, b))


def solve(A, B, *, left=True):
    """The solution ``X`` of ``A X = B`` (``X A = B`` with ``left=False``).

    Shapes: ``A [*, n, n]``; ``B [*, n, k]`` (matrices) or ``B [*, n]`` (vectors: when ``B`` is
    1-d or ``B.shape == A.shape[:-1]``); batch dims broadcast. Raises RuntimeError if ``A`` is
    singular."""
    A, B = _float_pair(A, B, "linalg.solve")
    _square(A, "linalg.solve")
    n = A.shape[-1]
    if not left:
        if B.ndim < 2 or B.shape[-1] != n:
            raise RuntimeError(f"linalg.solve: incompatible shapes of A {list(A.shape)} and B "
                               f"{list(B.shape)}: with left=False B must have shape [..., k, {n}]")
        return solve(A.mT, B.mT).mT
    vector = B.ndim == 1 or (B.ndim == A.ndim - 1 and tuple(B.shape) == tuple(A.shape[:-1]))
    B2 = _sh.unsqueeze(B, -1) if vector else B
    if B2.ndim < 2 or B2.shape[-2] != n:
        raise RuntimeError(f"linalg.solve: incompatible shapes of A {list(A.shape)} and B "
                           f"{list(B.shape)}: B must have shape [..., {n}] (vectors) or [..., {n}, k] "
                           "(matrices)")
    _batch_shape(A.shape[:-2], B2.shape[:-2], "linalg.solve", A, B)
    X = apply(_solve, (A, B2))
    return _sh.squeeze(X, -1) if vector else X


def solve_triangular(A, B, *, upper, left=True, unitriangular=False):
    """Solve ``A X = B`` (``X A = B`` with ``left=False``) using only the upper or lower triangle of
    ``A`` (the diagonal taken as ones with ``unitriangular=True``). Shapes as ``solve`` with
    matrix ``B``."""
    A, B = _float_pair(A, B, "linalg.solve_triangular")
    _square(A, "linalg.solve_triangular")
    T = _sh.triu(A) if upper else _sh.tril(A)
    if unitriangular:
        T = T - _sh.diag_embed(_sh.diagonal(T, 0, -2, -1)) + _eye_like(A)
    if B.ndim < 2:
        raise RuntimeError(f"linalg.solve_triangular: B must be a matrix or a batch of matrices, got "
                           f"shape {list(B.shape)}")
    return solve(T, B, left=left)


def _eye_like(A):
    from .creation import eye
    return eye(A.shape[-1], dtype=A.dtype, device=A.device)


def _inv_fwd(a):
    try:
        return get_xp(a).linalg.inv(a)
    except np.linalg.LinAlgError as e:
        raise _singular("linalg.inv", a.shape, e) from None


_inv = defop("linalg_inv", _inv_fwd, save_output=True)
_inv.defvjp(lambda ns, n, g, x: (-ns.matmul(ns.mT(x), ns.matmul(g, ns.mT(x))),))


@method("inverse")
def inv(A):
    """The inverse of square matrices ``A [*, n, n]``. Raises RuntimeError if ``A`` is singular."""
    return apply(_inv, (_square(A, "linalg.inv"),))


# ------------------------------------------------------------------ det / slogdet

_det = defop("linalg_det", lambda a: get_xp(a).linalg.det(a), save=(0,), save_output=True)


@_det.defvjp
def _(ns, n, g, a, d):
    if _near_singular(a, d):
        cof = _cofactor_svd(ns, a)
    else:
        cof = _solve_mT(ns, a, _eye(ns, g, a.shape[-1], g.dtype) * _col(ns, d))   # d A^-T
    return (_col(ns, g) * cof,)


def _near_singular(a, d):
    """True if some ``|det A|`` is tiny against Hadamard's bound ``prod_j |a_j|``, where
    ``det(A) A^-T`` from an LU solve loses its accuracy (the SVD formula keeps it)."""
    a, d = _data(a), _data(d)
    xp = get_xp(a)
    bound = xp.prod(xp.sqrt((a * a).sum(axis=-2)), axis=-1)
    tol = float(np.sqrt(np.finfo(a.dtype).eps))
    return bool(xp.any(xp.abs(d) <= tol * bound))


def _cofactor_svd(ns, a):
    """The cofactor matrix ``det(A) A^-T`` of possibly singular ``A``, from ``A = U S Vh``:
    ``det(U) det(Vh) U diag(prod_{j != i} s_j) Vh``."""
    if isinstance(a, Tensor):
        U, S, Vh = svd(a)
    else:
        U, S, Vh = get_xp(a).linalg.svd(a)
    xp = get_xp(_data(U))
    sign = xp.linalg.det(_data(U)) * xp.linalg.det(_data(Vh))
    if isinstance(a, Tensor):
        sign = Tensor._make(xp.asarray(sign), False, None, 0)
    ones = ns.ones_like(ns.getitem(S, (Ellipsis, slice(0, 1))))
    before = ns.cumprod(ns.cat([ones, ns.getitem(S, (Ellipsis, slice(0, -1)))], -1), -1)
    after = ns.flip(ns.cumprod(ns.flip(ns.cat([ns.getitem(S, (Ellipsis, slice(1, None))), ones], -1),
                                       (-1,)), -1), (-1,))
    p = before * after
    return _col(ns, sign) * ns.matmul(U * ns.unsqueeze(p, -2), Vh)


@method()
def det(A):
    """Determinants of square matrices ``A [*, n, n] -> [*]``. The gradient is the cofactor
    matrix, also where ``A`` is singular."""
    return apply(_det, (_square(A, "linalg.det"),))


def _slogdet_fwd(a):
    s, l = get_xp(a).linalg.slogdet(a)
    return s, l


_slogdet = defop("linalg_slogdet", _slogdet_fwd, save=(0,), n_out=2)


@_slogdet.defvjp
def _(ns, n, g, a):
    gl = g[1]
    try:
        return (_solve_mT(ns, a, _eye(ns, gl, a.shape[-1], gl.dtype) * _col(ns, gl)),)
    except np.linalg.LinAlgError as e:
        raise RuntimeError(f"linalg.slogdet backward: the input (shape {list(a.shape)}) is singular, "
                           "where log|det| has no finite gradient") from e


@method()
def slogdet(A):
    """``(sign, logabsdet)`` of square matrices ``A [*, n, n]``: ``det = sign * exp(logabsdet)``,
    without overflow. Both have shape ``[*]``; the gradient flows through ``logabsdet``."""
    s, l = apply(_slogdet, (_square(A, "linalg.slogdet"),))
    s = Tensor._make(s._data, False, None, 0)
    return SlogdetResult(s, l)


# ------------------------------------------------------------------ cholesky

def _cholesky_fwd(a):
    try:
        return get_xp(a).linalg.cholesky(a)
    except np.linalg.LinAlgError as e:
        raise _lapack_error("linalg.cholesky", a.shape, e, "is not positive-definite (the Cholesky "
                            "factorization needs a symmetric positive-definite matrix)") from None


_cholesky = defop("linalg_cholesky", _cholesky_fwd, save_output=True)


@_cholesky.defvjp
def _(ns, n, g, L):
    M = ns.matmul(ns.mT(L), g)
    P = ns.tril(M, -1) + 0.5 * ns.diag_embed(ns.diagonal(M, 0, -2, -1))
    Lt = ns.mT(L)
    Y = ns.solve(Lt, P)                                    # L^-T P
    gA = ns.mT(ns.solve(Lt, ns.mT(Y)))                     # L^-T P L^-1
    return (0.5 * (gA + ns.mT(gA)),)


@method()
def cholesky(A, upper=False):
    """The Cholesky factor ``L`` (lower triangular, ``A = L L^T``) of symmetric positive-definite
    ``A [*, n, n]``, or ``U = L^T`` with ``upper=True``. Only the lower triangle of ``A`` is read.
    Raises RuntimeError if ``A`` is not positive-definite."""
    L = apply(_cholesky, (_square(A, "linalg.cholesky"),))
    return L.mT if upper else L


# ------------------------------------------------------------------ qr

def _qr_fwd(a, mode):
    try:
        q, r = get_xp(a).linalg.qr(a, mode="complete" if mode == "complete" else "reduced")
    except np.linalg.LinAlgError as e:
        raise _lapack_error("linalg.qr", a.shape, e) from None
    return q, r


_qr = defop("linalg_qr", _qr_fwd, n_out=2, save_output=True)


def _qr_bwd_tall(ns, gQ, gR, Q, R):
    """Gradient of A = Q R with m >= n (R square)."""
    M = ns.matmul(gR, ns.mT(R)) - ns.matmul(ns.mT(Q), gQ)
    N = ns.triu(M) + ns.mT(ns.triu(M, 1))
    b = gQ + ns.matmul(Q, N)
    return ns.mT(ns.solve(R, ns.mT(b)))                    # b R^-T


@_qr.defvjp
def _(ns, n, g, out):
    gQ, gR = g
    Q, R = out
    m, cols = Q.shape[-2], R.shape[-1]
    if n.attrs["mode"] == "complete" and m > cols:
        raise RuntimeError(f"linalg.qr backward: the QR decomposition is not differentiable when "
                           f"mode='complete' and the input has more rows than columns (shape "
                           f"[..., {m}, {cols}]); use mode='reduced'")
    if m >= cols:
        return (_qr_bwd_tall(ns, gQ, gR, Q, R),)
    # wide: A = [X | Y] with X = Q R1 square and Y = Q R2
    left, right = (Ellipsis, slice(None), slice(0, m)), (Ellipsis, slice(None), slice(m, None))
    R1, R2 = ns.getitem(R, left), ns.getitem(R, right)
    gR1, gR2 = ns.getitem(gR, left), ns.getitem(gR, right)
    Y = ns.matmul(Q, R2)
    gX = _qr_bwd_tall(ns, gQ + ns.matmul(Y, ns.mT(gR2)), gR1, Q, R1)
    return (ns.cat([gX, ns.matmul(Q, gR2)], -1),)


def qr(A, mode="reduced"):
    """QR decomposition ``A = Q R`` of ``A [*, m, n]`` (k = min(m, n)).

    ``mode="reduced"``: ``Q [*, m, k]``, ``R [*, k, n]``; ``"complete"``: ``Q [*, m, m]``,
    ``R [*, m, n]``; ``"r"``: ``Q`` is empty and only ``R`` is computed (still differentiable).
    Signs follow LAPACK (the diagonal of ``R`` may be negative)."""
    if mode not in ("reduced", "complete", "r"):
        raise RuntimeError(f"linalg.qr: qr received unrecognized mode {mode!r} but expected one of "
                           "'reduced' (default), 'r', or 'complete'")
    A = _matrix(A, "linalg.qr")
    Q, R = apply(_qr, (A,), {"mode": "reduced" if mode == "r" else mode})
    if mode == "r":
        from .creation import zeros
        Q = zeros(0, dtype=A.dtype, device=A.device)
    return QRResult(Q, R)


# ------------------------------------------------------------------ eigh

def _eigh_fwd(a, UPLO):
    try:
        w, v = get_xp(a).linalg.eigh(a, UPLO=UPLO)
    except np.linalg.LinAlgError as e:
        raise _lapack_error("linalg.eigh", a.shape, e, "did not converge (the eigenvalue algorithm "
                            "failed; the input may contain NaN or Inf)") from None
    return w, v


_eigh = defop("linalg_eigh", _eigh_fwd, n_out=2, save_output=True)


@_eigh.defvjp
def _(ns, n, g, out):
    gL, gV = g
    L, V = out
    inner = ns.diag_embed(gL)
    if not _const_zero(gV):
        eye = _eye(ns, gL, L.shape[-1], gL.dtype)
        E = ns.unsqueeze(L, -2) - ns.unsqueeze(L, -1) + eye     # E_ij = l_j - l_i, 1 on the diagonal
        inner = inner + ns.matmul(ns.mT(V), gV) * (1 - eye) / E
    gA = ns.matmul(V, ns.matmul(inner, ns.mT(V)))
    return (0.5 * (gA + ns.mT(gA)),)


def _check_uplo(UPLO, opname):
    if UPLO not in ("L", "U"):
        raise RuntimeError(f"{opname}: UPLO must be 'L' or 'U', got {UPLO!r}")


def eigh(A, UPLO="L"):
    """Eigen-decomposition of symmetric ``A [*, n, n]``: ``(eigenvalues [*, n] ascending,
    eigenvectors [*, n, n] as columns)``, ``A = V diag(L) V^T``. Only the ``UPLO`` triangle is
    read. Eigenvectors have arbitrary signs; their gradient needs distinct eigenvalues."""
    _check_uplo(UPLO, "linalg.eigh")
    L, V = apply(_eigh, (_square(A, "linalg.eigh"),), {"UPLO": UPLO})
    return EighResult(L, V)


_eigvalsh_nd = defop("linalg_eigvalsh", lambda a, UPLO: _eigh_fwd(a, UPLO)[0], differentiable=False)


def eigvalsh(A, UPLO="L"):
    """Eigenvalues ``[*, n]`` (ascending) of symmetric ``A [*, n, n]``; differentiable everywhere
    (gradient ``V diag(g) V^T``)."""
    _check_uplo(UPLO, "linalg.eigvalsh")
    A = _square(A, "linalg.eigvalsh")
    if A.requires_grad and STATE.grad_enabled:
        return eigh(A, UPLO)[0]
    return apply(_eigvalsh_nd, (A,), {"UPLO": UPLO})


# ------------------------------------------------------------------ svd

def _svd_fwd(a, full_matrices):
    try:
        u, s, vh = get_xp(a).linalg.svd(a, full_matrices=full_matrices)
    except np.linalg.LinAlgError as e:
        raise _lapack_error("linalg.svd", a.shape, e, "did not converge (the input may contain NaN "
                            "or Inf)") from None
    return u, s, vh


_svd = defop("linalg_svd", _svd_fwd, n_out=3, save_output=True)


@_svd.defvjp
def _(ns, n, g, out):
    gU, gS, gVh = g
    U, S, Vh = out
    k = S.shape[-1]
    if U.shape[-1] != k:                 # full_matrices: the extra columns carry no gradient
        U, gU = ns.getitem(U, (Ellipsis, slice(0, k))), ns.getitem(gU, (Ellipsis, slice(0, k)))
    if Vh.shape[-2] != k:
        sl = (Ellipsis, slice(0, k), slice(None))
        Vh, gVh = ns.getitem(Vh, sl), ns.getitem(gVh, sl)
    m, cols = U.shape[-2], Vh.shape[-1]
    zu, zv = _const_zero(gU), _const_zero(gVh)
    if zu and zv:
        return (ns.matmul(U * ns.unsqueeze(gS, -2), Vh),)
    eye = _eye(ns, gS, k, gS.dtype)
    S2 = S * S
    E = ns.unsqueeze(S2, -2) - ns.unsqueeze(S2, -1) + eye       # E_ij = s_j^2 - s_i^2, 1 on diag
    Sj, Si = ns.unsqueeze(S, -2), ns.unsqueeze(S, -1)
    inner = ns.diag_embed(gS)
    if not zu:
        K = ns.matmul(ns.mT(U), gU)
        inner = inner + (K - ns.mT(K)) * Sj / E
    if not zv:
        K = ns.matmul(Vh, ns.mT(gVh))
        inner = inner + Si * (K - ns.mT(K)) / E
    if m > cols and not zu:
        gUS = gU / Sj
        left = ns.matmul(U, inner) + gUS - ns.matmul(U, ns.matmul(ns.mT(U), gUS))
        return (ns.matmul(left, Vh),)
    if m < cols and not zv:
        SgVh = gVh / Si
        right = ns.matmul(inner, Vh) + SgVh - ns.matmul(ns.matmul(SgVh, ns.mT(Vh)), Vh)
        return (ns.matmul(U, right),)
    return (ns.matmul(ns.matmul(U, inner), Vh),)


def svd(A, full_matrices=True):
    """Singular value decomposition ``A = U diag(S) Vh`` of ``A [*, m, n]`` (k = min(m, n)):
    ``U [*, m, m]``, ``S [*, k]`` (descending), ``Vh [*, n, n]``; with ``full_matrices=False``
    ``U [*, m, k]`` and ``Vh [*, k, n]``. Singular vectors have arbitrary signs; their gradient
    needs distinct (and, for m != n, non-zero) singular values. The extra columns of the
    ``full_matrices`` factors get no gradient."""
    A = _matrix(A, "linalg.svd")
    U, S, Vh = apply(_svd, (A,), {"full_matrices": bool(full_matrices)})
    return SVDResult(U, S, Vh)


def _svdvals_fwd(a):
    try:
        return get_xp(a).linalg.svd(a, compute_uv=False)
    except np.linalg.LinAlgError as e:
        raise _lapack_error("linalg.svdvals", a.shape, e, "did not converge (the input may contain "
                            "NaN or Inf)") from None


_svdvals_nd = defop("linalg_svdvals", _svdvals_fwd, differentiable=False)


def svdvals(A):
    """Singular values ``[*, k]`` (descending) of ``A [*, m, n]``; differentiable everywhere
    (gradient ``U diag(g) Vh``)."""
    A = _matrix(A, "linalg.svdvals")
    if A.requires_grad and STATE.grad_enabled:
        return svd(A, full_matrices=False)[1]
    return apply(_svdvals_nd, (A,))


# ------------------------------------------------------------------ pinv / lstsq

def _pinv_fwd(a, rtol, atol, hermitian):
    xp = get_xp(a)
    m, n = a.shape[-2], a.shape[-1]
    if m == 0 or n == 0:
        return xp.zeros(a.shape[:-2] + (n, m), a.dtype)
    if hermitian:
        w, v = xp.linalg.eigh(a)
        s = xp.abs(w)
    else:
        u, s, vh = xp.linalg.svd(a, full_matrices=False)
    cutoff = xp.maximum(atol, rtol * s.max(axis=-1, keepdims=True))
    keep = s > cutoff
    if hermitian:
        winv = xp.where(keep, 1 / xp.where(keep, w, 1), 0).astype(a.dtype)
        return (v * winv[..., None, :]) @ xp.swapaxes(v, -1, -2)
    sinv = xp.where(keep, 1 / xp.where(keep, s, 1), 0).astype(a.dtype)
    return (xp.swapaxes(vh, -1, -2) * sinv[..., None, :]) @ xp.swapaxes(u, -1, -2)


_pinv = defop("linalg_pinv", _pinv_fwd, save=(0,), save_output=True)


@_pinv.defvjp
def _(ns, n, g, a, p):
    # Golub & Pereyra: gA = -P^T g P^T + (I - A P) g^T P P^T + P^T P g^T (I - P A)
    Pt, Gt = ns.mT(p), ns.mT(g)
    t1 = -ns.matmul(Pt, ns.matmul(g, Pt))
    W = ns.matmul(ns.matmul(Gt, p), Pt)
    t2 = W - ns.matmul(a, ns.matmul(p, W))
    Z = ns.matmul(Pt, ns.matmul(p, Gt))
    t3 = Z - ns.matmul(ns.matmul(Z, p), a)
    return (t1 + t2 + t3,)


def _tolerances(A, atol, rtol, opname):
    for name, v in (("atol", atol), ("rtol", rtol)):
        if v is not None and not isinstance(v, numbers.Real):
            raise TypeError(f"{opname}: {name} must be a float or None, got {type(v).__name__}")
    if rtol is None:
        rtol = 0.0 if (atol is not None and atol > 0) else \
            float(np.finfo(A._data.dtype).eps) * max(A.shape[-2], A.shape[-1])
    return float(0.0 if atol is None else atol), float(rtol)


def pinv(A, *, atol=None, rtol=None, hermitian=False, rcond=None):
    """Moore-Penrose pseudo-inverse ``[*, n, m]`` of ``A [*, m, n]``: singular values at most
    ``max(atol, rtol * s_max)`` are treated as zero (default ``rtol = eps * max(m, n)``; ``rcond``
    is an alias of ``rtol``). ``hermitian=True`` uses an eigen-decomposition of symmetric ``A``.
    The gradient assumes the rank does not change near ``A``."""
    A = _matrix(A, "linalg.pinv")
    if rcond is not None:
        if rtol is not None:
            raise RuntimeError("linalg.pinv: pass rtol or rcond, not both")
        rtol = rcond
    if hermitian:
        _square(A, "linalg.pinv")
    atol, rtol = _tolerances(A, atol, rtol, "linalg.pinv")
    return apply(_pinv, (A,), {"rtol": rtol, "atol": atol, "hermitian": bool(hermitian)})


@method()
def pinverse(input, rcond=1e-15):  # noqa: A002
    """``torch.pinverse``: ``linalg.pinv(input, rtol=rcond)``."""
    return pinv(input, rtol=rcond)


def lstsq(A, B, rcond=None, *, driver=None):
    """Least-squares solution of ``A X = B`` (minimum-norm where ``A`` is rank-deficient).

    Shapes: ``A [*, m, n]``, ``B [*, m, k]`` or ``[*, m]``. Returns ``(solution [*, n, k],
    residuals, rank, singular_values)``: ``residuals`` are the squared residual norms per
    column (computed when m > n and ``A`` has full rank, else empty), ``rank`` is int64.
    Differentiable in ``A`` and ``B`` (through ``pinv``)."""
    if driver not in (None, "gels", "gelsy", "gelsd", "gelss"):
        raise RuntimeError(f"linalg.lstsq: parameter `driver` should be one of (gels, gelsy, gelsd, "
                           f"gelss), got {driver!r}")
    A, B = _float_pair(A, B, "linalg.lstsq")
    _matrix(A, "linalg.lstsq")
    m, n = A.shape[-2], A.shape[-1]
    vector = B.ndim == 1 or B.ndim == A.ndim - 1
    B2 = _sh.unsqueeze(B, -1) if vector else B
    if B2.ndim < 2 or B2.shape[-2] != m:
        raise RuntimeError(f"linalg.lstsq: incompatible shapes of A {list(A.shape)} and B "
                           f"{list(B.shape)}: B must have shape [..., {m}, k] or [..., {m}]")
    _batch_shape(A.shape[:-2], B2.shape[:-2], "linalg.lstsq", A, B)
    atol, rtol = _tolerances(A, None, rcond, "linalg.lstsq")
    X = matmul(apply(_pinv, (A,), {"rtol": rtol, "atol": atol, "hermitian": False}), B2)
    S = svdvals(A)
    sd = _data(S)
    xp = get_xp(sd)
    if sd.shape[-1]:
        rank_arr = xp.asarray((sd > rtol * sd.max(axis=-1, keepdims=True)).sum(axis=-1), np.int64)
    else:
        rank_arr = xp.zeros(sd.shape[:-1], np.int64)
    rank = Tensor._make(rank_arr, False, None, 0)
    if m > n and bool((rank_arr == n).all()):
        residuals = _red.sum((matmul(A, X) - B2) ** 2, -2)
        if vector:
            residuals = _sh.squeeze(residuals, -1)
    else:
        from .creation import zeros
        residuals = zeros(0, dtype=A.dtype, device=A.device)
    return LstsqResult(_sh.squeeze(X, -1) if vector else X, residuals, rank, S)


# ------------------------------------------------------------------ powers, rank, cond, products

@method()
def matrix_power(A, n):
    """``A`` to the integer power ``n`` (``n < 0`` uses the inverse; ``n = 0`` the identity) for
    square ``A [*, m, m]``, by repeated squaring."""
    if not isinstance(n, numbers.Integral) or isinstance(n, bool):
        raise TypeError(f"linalg.matrix_power: n must be an int, got {type(n).__name__} {n!r}")
    A = _square(A, "linalg.matrix_power")
    n = int(n)
    if n == 0:
        return _sh.expand(_eye_like(A), A.shape)
    if n < 0:
        A, n = inv(A), -n
    result, base = None, A
    while n:
        if n & 1:
            result = base if result is None else matmul(result, base)
        n >>= 1
        if n:
            base = matmul(base, base)
    return result


def matrix_rank(A, *, atol=None, rtol=None, hermitian=False):
    """Numerical rank (int64, ``[*]``): the number of singular values above
    ``max(atol, rtol * s_max)`` (default ``rtol = eps * max(m, n)``). Not differentiable."""
    A = _matrix(A, "linalg.matrix_rank")
    atol, rtol = _tolerances(A, atol, rtol, "linalg.matrix_rank")
    if hermitian:
        s = get_xp(A._data).abs(_data(eigvalsh(A.detach())))
    else:
        s = _data(svdvals(A.detach()))
    xp = get_xp(s)
    if s.shape[-1] == 0:
        return Tensor._make(xp.zeros(s.shape[:-1], np.int64), False, None, 0)
    cutoff = xp.maximum(atol, rtol * s.max(axis=-1, keepdims=True))
    return Tensor._make(xp.asarray((s > cutoff).sum(axis=-1), np.int64), False, None, 0)


def cond(A, p=None):
    """Condition number of ``A`` in the ``p`` norm (``None``/2: ratio of the extreme singular
    values; -2 its inverse; 'fro', 'nuc', 1, -1, inf, -inf: ``norm(A, p) * norm(inv(A), p)``)."""
    A = _matrix(A, "linalg.cond")
    if p is None or p == 2 or p == -2:
        S = svdvals(A)
        hi, lo = _red.amax(S, -1), _red.amin(S, -1)
        return lo / hi if p == -2 else hi / lo
    _square(A, "linalg.cond")
    return matrix_norm(A, p) * matrix_norm(inv(A), p)


def multi_dot(tensors):
    """``tensors[0] @ tensors[1] @ ...``; the first may be 1-d (a row) and the last 1-d (a column)."""
    tensors = list(tensors)
    if len(tensors) < 2:
        raise RuntimeError(f"linalg.multi_dot: expected at least 2 tensors but got {len(tensors)}")
    for i, t in enumerate(tensors):
        nd = t.ndim
        if not (nd == 2 or (nd == 1 and i in (0, len(tensors) - 1))):
            raise RuntimeError(f"linalg.multi_dot: tensor {i} must be 2-d (the first and last may be "
                               f"1-d), got shape {list(t.shape)}")
    out = tensors[0]
    for t in tensors[1:]:
        out = matmul(out, t)
    return out


def vecdot(x, y, *, dim=-1):
    """Dot product of vectors along ``dim`` (inputs broadcast)."""
    x, y = _promote_pair(x, y, "linalg.vecdot")
    return _red.sum(x * y, dim)


def cross(input, other, *, dim=-1):  # noqa: A002
    """Cross product of 3-vectors along ``dim`` (inputs broadcast)."""
    return _cross(input, other, dim)


def diagonal(A, *, offset=0, dim1=-2, dim2=-1):
    """The ``offset`` diagonal of the matrices in dims ``dim1``, ``dim2`` (appended last)."""
    return _sh.diagonal(A, offset, dim1, dim2)


# ------------------------------------------------------------------ norms

_INF = float("inf")


def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):  # noqa: A002
    """Vector ``ord``-norm over ``dim`` (all elements if None): ``ord`` in {2, 1, inf, -inf, 0,
    any p}. The gradient at a zero vector is zero (a subgradient)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"linalg.vector_norm: argument 'x' must be a Tensor, got {type(x).__name__}")
    if isinstance(ord, str) or not isinstance(ord, numbers.Real):
        raise RuntimeError(f"linalg.vector_norm: ord must be a number, got {ord!r}")
    if dtype is not None:
        x = x.to(dtype)
    return _red.vector_norm(x, ord, dim, keepdim)


def _unsqueeze_dims(r, dims):
    for d in sorted(dims):
        r = _sh.unsqueeze(r, d)
    return r


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None):  # noqa: A002
    """Matrix norm of the matrices in dims ``dim`` (2 ints) of ``A``: ``'fro'``, ``'nuc'``
    (sum of singular values), 2 / -2 (largest / smallest singular value), 1 / -1 (max / min
    column abs-sum), inf / -inf (max / min row abs-sum)."""
    if not isinstance(A, Tensor):
        raise TypeError(f"linalg.matrix_norm: argument 'A' must be a Tensor, got {type(A).__name__}")
    if dtype is not None:
        A = A.to(dtype)
    _float_arg(A, "linalg.matrix_norm")
    if A.ndim < 2:
        raise RuntimeError(f"linalg.matrix_norm: the input tensor A must have at least 2 dimensions, "
                           f"got shape {list(A.shape)}")
    if not isinstance(dim, (tuple, list)) or len(dim) != 2:
        raise RuntimeError(f"linalg.matrix_norm: dim must be a 2-tuple of ints, got {dim!r}")
    d0, d1 = norm_dim(dim[0], A.ndim, "linalg.matrix_norm"), norm_dim(dim[1], A.ndim, "linalg.matrix_norm")
    if d0 == d1:
        raise RuntimeError(f"linalg.matrix_norm: dims must be different, got {tuple(dim)}")
    if ord == "fro":
        return _red.vector_norm(A, 2, (d0, d1), keepdim)
    if ord == "nuc" or (not isinstance(ord, str) and ord in (2, -2)):
        S = svdvals(_sh.movedim(A, (d0, d1), (-2, -1)))
        if ord == "nuc":
            r = _red.sum(S, -1)
        else:
            r = _red.amax(S, -1) if ord == 2 else _red.amin(S, -1)
        return _unsqueeze_dims(r, (d0, d1)) if keepdim else r
    if not isinstance(ord, str) and ord in (1, -1, _INF, -_INF):
        dsum, dext = (d0, d1) if ord in (1, -1) else (d1, d0)
        s = _red.sum(A.abs(), dsum, keepdim=True)
        r = _red.amax(s, dext, keepdim=True) if ord > 0 else _red.amin(s, dext, keepdim=True)
        return r if keepdim else _sh.squeeze(r, tuple(sorted((d0, d1))))
    raise RuntimeError(f"linalg.matrix_norm: order {ord!r} not supported; use 'fro', 'nuc', 2, -2, 1, "
                       "-1, inf or -inf")


def norm(A, ord=None, dim=None, keepdim=False, *, dtype=None):  # noqa: A002
    """Vector or matrix norm, as ``torch.linalg.norm``: with ``dim`` an int (or ``ord`` None and
    ``dim`` None: all elements flattened) a vector norm; with ``dim`` a 2-tuple, or ``dim`` None
    and 2-d ``A`` with ``ord`` given, a matrix norm. If ``ord`` is given and ``dim`` is None,
    ``A`` must be 1-d or 2-d."""
    if not isinstance(A, Tensor):
        raise TypeError(f"linalg.norm: argument 'A' must be a Tensor, got {type(A).__name__}")
    if dim is not None:
        dims = (dim,) if isinstance(dim, numbers.Integral) else tuple(dim)
        if len(dims) not in (1, 2):
            raise RuntimeError(f"linalg.norm: If dim is specified, it must be of length 1 or 2. Got "
                               f"{list(dims)}")
    else:
        dims = None
        if ord is not None and A.ndim not in (1, 2):
            raise RuntimeError(f"linalg.norm: If dim is not specified but ord is, the input must be 1D "
                               f"or 2D. Got {A.ndim}D (shape {list(A.shape)}).")
    if isinstance(ord, str):
        if dims is not None and len(dims) != 2 or dims is None and A.ndim != 2:
            raise RuntimeError(f"linalg.norm: ord {ord!r} is a matrix norm and needs 2 dims, got "
                               f"dim={dim!r} for shape {list(A.shape)}")
        return matrix_norm(A, ord, dims if dims is not None else (0, 1), keepdim, dtype=dtype)
    if ord is not None and ((dims is not None and len(dims) == 2) or (dims is None and A.ndim == 2)):
        return matrix_norm(A, ord, dims if dims is not None else (0, 1), keepdim, dtype=dtype)
    return vector_norm(A, 2 if ord is None else ord, dims, keepdim, dtype=dtype)
