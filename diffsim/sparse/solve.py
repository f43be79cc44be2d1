"""Differentiable sparse linear solves: ``sparse.solve`` (direct or Krylov) and the matrix-free
``sparse.cg``.

Both are differentiated by one adjoint solve instead of through the solver's iterations.
For ``x = A^-1 b`` and an incoming gradient ``g = dL/dx``::

    lambda = A^-T g,    dL/db = lambda,    dL/dA[row_k, col_k] = -lambda[row_k] . x[col_k]

(the last only at the stored entries: the structure of ``A`` is constant). ``solve``
reuses its factorization for the adjoint: ``splu``'s LU (or ``spilu``'s incomplete LU as a
preconditioner) solves with ``A^T`` through ``trans='T'``.

The matrix-free ``cg(matvec, b)`` gets its gradient w.r.t. ``b`` and every Tensor that
``matvec`` uses from the residual ``r = b - matvec(x*)`` at the solution: the adjoint vector
``lambda = A^-1 g`` (``A`` symmetric) is pulled back through ``r`` by the engine, which is a
VJP of ``matvec`` at ``x*`` with ``-lambda``.
"""
from __future__ import annotations

import numpy as np

from ..autodiff.backend import get_xp
from ..autodiff.function import Function, apply, call_op, defop
from ..autodiff.grad_mode import STATE, enable_grad, no_grad
from ..autodiff.rawops import RAW_NS
from ..autodiff.tensor import Tensor
from .tensor import SparseTensor, _dense_operand

__all__ = ["solve", "cg"]

METHODS = ("direct", "cg", "bicgstab", "gmres")
PRECONDITIONERS = (None, "jacobi", "ilu")


def _linalg(array):
    if get_xp(array) is np:
        import scipy.sparse.linalg as sla
    else:
        import cupyx.scipy.sparse.linalg as sla
    return sla


class _Factor:
    """What the forward solve keeps for the adjoint solve (held by the graph node)."""
    __slots__ = ("lu", "M", "precond")

    def __init__(self):
        self.lu = self.M = self.precond = None


def _singular_error(shape, detail=""):
    return RuntimeError(f"sparse.solve: the matrix of shape {list(shape)} is singular (or numerically "
                        f"singular){detail}, so A x = b has no unique solution; check the boundary "
                        "conditions (a free body or an unconstrained node makes a stiffness matrix "
                        "singular)")


def _direct(values, b, pattern, factor, trans):
    sla = _linalg(values)
    if factor.lu is None:
        M = pattern.matrix(values).tocsc()
        try:
            factor.lu = sla.splu(M)
        except RuntimeError as e:
            raise _singular_error(pattern.shape, f" ({e})") from None
    x = factor.lu.solve(b, trans="T" if trans else "N")
    if not bool(get_xp(x).all(get_xp(x).isfinite(x))):
        raise _singular_error(pattern.shape, " (the solution is not finite)")
    return x


def _preconditioner(M, kind, method, values):
    """A LinearOperator for ``M^-1``'s approximation, and one for the transpose."""
    sla = _linalg(values)
    n = M.shape[0]
    if kind == "jacobi":
        d = M.diagonal()
        xp = get_xp(d)
        if bool(xp.any(d == 0)):
            k = int(xp.nonzero(d == 0)[0][0])
            raise RuntimeError(f"sparse.solve: the Jacobi preconditioner needs a nonzero diagonal, but "
                               f"A[{k}, {k}] = 0 (shape {list(M.shape)}); use preconditioner='ilu' or None")
        inv = 1.0 / d

        def apply_d(r):
            return (inv.reshape((-1,) + (1,) * (r.ndim - 1)) * r)
        op = sla.LinearOperator((n, n), matvec=apply_d, dtype=M.dtype)
        return op, op
    if kind == "ilu":
        # for cg the preconditioner must be symmetric: no pivoting and a symmetric ordering make
        # the incomplete factors L and U = D L^T (SuperLU's "symmetric mode")
        kw = ({"diag_pivot_thresh": 0.0, "permc_spec": "MMD_AT_PLUS_A", "options": {"SymmetricMode": True}}
              if method == "cg" and get_xp(values) is np else {})
        try:
            ilu = sla.spilu(M.tocsc(), **kw)
        except RuntimeError as e:
            raise _singular_error(M.shape, f" (incomplete LU failed: {e})") from None
        fwd = sla.LinearOperator((n, n), matvec=lambda r: ilu.solve(r), dtype=M.dtype)
        adj = sla.LinearOperator((n, n), matvec=lambda r: ilu.solve(r, trans="T"), dtype=M.dtype)
        return fwd, adj
    return None, None


def _krylov(values, b, pattern, factor, trans, method, precond, tol, maxiter):
    sla = _linalg(values)
    if factor.M is None:
        factor.M = pattern.matrix(values)
        factor.precond = _preconditioner(factor.M, precond, method, values)
    M = factor.M.T.tocsr() if trans else factor.M
    P = factor.precond[1 if trans else 0]
    try:
        solver = getattr(sla, method)
    except AttributeError:
        raise RuntimeError(f"sparse.solve: method={method!r} is not available on this device "
                           f"({type(values).__module__}); use 'cg', 'gmres' or 'direct'") from None
    kw = {"rtol": tol, "atol": 0.0, "maxiter": maxiter, "M": P}
    if method == "gmres":
        kw["restart"] = min(M.shape[0], 50)
    cols = b.reshape(b.shape[0], -1)
    xp = get_xp(b)
    out = xp.empty_like(cols)
    for j in range(cols.shape[1]):
        rhs = cols[:, j]
        x, info = solver(M, rhs, **kw)
        if info != 0:
            res = float(xp.linalg.norm(rhs - M @ x))
            what = (f"did not converge in {info} iterations" if info > 0 else "broke down")
            raise RuntimeError(
                f"sparse.solve: method={method!r} {what} for the {'adjoint ' if trans else ''}system of "
                f"shape {list(pattern.shape)}: residual norm {res:.3e} against {tol:.1e} * |b| = "
                f"{tol * float(xp.linalg.norm(rhs)):.3e}; raise maxiter, loosen tol, add a preconditioner "
                f"or use method='direct'" + (" (cg needs a symmetric positive definite A)" if method == "cg" else ""))
        if not bool(xp.all(xp.isfinite(x))):
            raise _singular_error(pattern.shape, f" ({method} produced non-finite values)")
        out[:, j] = x
    return out.reshape(b.shape)


def _solve_fwd(values, b, pattern, method, preconditioner, tol, maxiter, factor, trans):
    precond = preconditioner
    dtype = np.result_type(values.dtype, b.dtype)
    if method == "direct":
        x = _direct(values, b, pattern, factor, trans)
    else:
        x = _krylov(values, b, pattern, factor, trans, method, precond, tol, maxiter)
    return x.astype(dtype, copy=False)


_solve = defop("sparse_solve", _solve_fwd, save=(0,), save_output=True)


@_solve.defvjp
def _(ns, n, g, values, x):
    a = n.attrs
    p, trans = a["pattern"], a["trans"]
    if ns is RAW_NS:
        # plain backward: reuse the forward's factorization for A^T lambda = g
        lam = _solve_fwd(values, g, p, a["method"], a["preconditioner"], a["tol"], a["maxiter"],
                         a["factor"], not trans)
    else:
        # create_graph: a recorded (differentiable) solve with the transpose
        lam = call_op(ns, _solve, values, g, pattern=p, method=a["method"],
                      preconditioner=a["preconditioner"], tol=a["tol"], maxiter=a["maxiter"],
                      factor=_Factor(), trans=not trans)
    gv = None
    if n.edges[0] is not None:
        r_idx, c_idx = (p.col, p.row) if trans else (p.row, p.col)
        gv = -(ns.index_select(lam, 0, r_idx) * ns.index_select(x, 0, c_idx))
        if gv.ndim > 1:
            gv = ns.sum(gv, 1)
    return gv, (lam if n.edges[1] is not None else None)


def solve(A, b, method="direct", preconditioner=None, tol=None, maxiter=None):
    """The solution ``x`` of ``A x = b`` for a square ``SparseTensor`` ``A [n, n]``.

    ``b`` is a Tensor ``[n]`` (result ``[n]``) or ``[n, k]`` (``k`` right-hand sides, result
    ``[n, k]``), of ``A``'s dtype and device. Differentiable w.r.t. ``A.values()`` and ``b`` by
    one adjoint solve (``A^T lambda = grad``), not through the solver's iterations.

    ``method``: ``"direct"`` (sparse LU, ``scipy.sparse.linalg.splu``; the factorization is
    reused for the adjoint solve), ``"cg"`` (``A`` must be symmetric positive definite),
    ``"bicgstab"`` or ``"gmres"`` (general ``A``). ``preconditioner`` (Krylov methods):
    ``None``, ``"jacobi"`` (diagonal) or ``"ilu"`` (incomplete LU, ``spilu``, in SuperLU's
    symmetric mode for ``cg``; its transpose preconditions the adjoint solve). ``tol`` is the relative residual ``|b - A x| <= tol |b|``
    of the Krylov methods (default 1e-10 for float64, 1e-5 for float32; the gradient is as
    accurate as the adjoint solve, so keep it tight), ``maxiter`` their iteration limit.

    Raises RuntimeError for a non-square or singular ``A``, a ``b`` of the wrong shape, dtype
    or device, and a Krylov method that does not converge.
    """
    opname = "sparse.solve"
    if not isinstance(A, SparseTensor):
        raise TypeError(f"{opname}: A must be a SparseTensor, got {type(A).__name__}; for dense matrices "
                        "use ds.linalg.solve")
    if not isinstance(b, Tensor):
        raise TypeError(f"{opname}: b must be a Tensor, got {type(b).__name__}")
    m, n = A.shape
    if m != n:
        raise RuntimeError(f"{opname}: A must be square, got shape {list(A.shape)}; for least squares use "
                           "ds.linalg.lstsq on A.to_dense()")
    b = _dense_operand(b, A, opname)
    if b.ndim not in (1, 2) or b.shape[0] != n:
        raise RuntimeError(f"{opname}: b must have shape [{n}] or [{n}, k] to match A of shape "
                           f"{list(A.shape)}, got {list(b.shape)}")
    if method not in METHODS:
        raise ValueError(f"{opname}: method must be one of {METHODS}, got {method!r}")
    if preconditioner not in PRECONDITIONERS:
        raise ValueError(f"{opname}: preconditioner must be one of {PRECONDITIONERS}, got {preconditioner!r}")
    if method == "direct" and preconditioner is not None:
        raise ValueError(f"{opname}: preconditioner={preconditioner!r} applies to the Krylov methods "
                         "('cg', 'bicgstab', 'gmres'), not to method='direct'")
    if tol is None:
        tol = 1e-10 if b._data.dtype == np.float64 else 1e-5
    if maxiter is None:
        maxiter = 10 * n if method != "gmres" else max(10, n)
    attrs = {"pattern": A._pattern, "method": method, "preconditioner": preconditioner,
             "tol": float(tol), "maxiter": int(maxiter), "factor": _Factor(), "trans": False}
    return apply(_solve, (A._values, b), attrs)


# ================================================================ matrix-free CG

def _cg_arrays(apply_A, b, x0, tol, maxiter, apply_M=None):
    """Conjugate gradients on raw arrays, all columns of ``b [n]`` / ``[n, k]`` at once (each with
    its own step sizes). Returns ``(x, iterations, relative residuals)``."""
    xp = get_xp(b)
    x = xp.zeros_like(b) if x0 is None else x0.copy()
    r = b - apply_A(x) if x0 is not None else b.copy()
    z = r if apply_M is None else apply_M(r)
    p = z.copy()
    rz = (r * z).sum(axis=0)
    bnorm = xp.sqrt((b * b).sum(axis=0))
    target = tol * xp.where(bnorm > 0, bnorm, 1.0)
    it = 0
    while True:
        rnorm = xp.sqrt((r * r).sum(axis=0))
        if bool(xp.all(rnorm <= target)) or it >= maxiter:
            return x, it, rnorm / xp.where(bnorm > 0, bnorm, 1.0)
        Ap = apply_A(p)
        pAp = (p * Ap).sum(axis=0)
        active = rnorm > target
        if bool(xp.any(active & (pAp <= 0))):
            raise RuntimeError("sparse.cg: p^T A p <= 0: the operator is not symmetric positive definite; "
                               "use sparse.solve with method='gmres' or 'bicgstab' on an assembled matrix")
        alpha = xp.where(active, rz / xp.where(pAp > 0, pAp, 1.0), 0.0)
        x = x + alpha * p
        r = r - alpha * Ap
        z = r if apply_M is None else apply_M(r)
        rz_new = (r * z).sum(axis=0)
        beta = xp.where(active, rz_new / xp.where(rz != 0, rz, 1.0), 0.0)
        p = z + beta * p
        rz = rz_new
        it += 1


def _raw_operator(fn, like):
    def apply_A(v):
        with no_grad():
            out = fn(Tensor._make(v, False, None, 0))
        if not isinstance(out, Tensor) or tuple(out.shape) != tuple(v.shape):
            raise RuntimeError(f"sparse.cg: matvec must return a Tensor of its input's shape "
                               f"{list(v.shape)}, got {getattr(out, 'shape', type(out).__name__)}")
        return out._data
    return apply_A


class _CGAdjoint(Function):
    """Passes the solution through; its backward sends ``A^-1 g`` to the residual input."""

    @staticmethod
    def forward(ctx, residual, x, solve_adjoint, through_matvec):
        ctx.solve_adjoint, ctx.through_matvec = solve_adjoint, through_matvec
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        if STATE.grad_enabled and ctx.through_matvec:
            # the VJP of matvec is taken at the constant solution x, so a recorded backward would
            # miss how x depends on matvec's Tensors: refuse rather than return a wrong Hessian
            raise RuntimeError("sparse.cg: second derivatives (create_graph=True) through Tensors that "
                               "matvec uses are not supported (only w.r.t. b); assemble the matrix and "
                               "use sparse.solve(A, b, method='direct'), whose backward is differentiable")
        return ctx.solve_adjoint(g), None, None, None


def cg(matvec, b, x0=None, tol=None, maxiter=None, M=None):
    """Matrix-free conjugate gradients: the ``x`` with ``matvec(x) = b``, for a symmetric
    positive definite linear operator.

    ``matvec(v)`` maps a Tensor of ``b``'s shape to one of the same shape, linearly
    (``A v``); it is an ordinary diffsim function and may close over Tensors that require
    grad (stiffnesses, a matrix ``K``, ...). ``b`` is ``[n]`` or ``[n, k]`` (then ``matvec``
    must accept ``[n, k]``: ``A`` applied to each column). ``x0``: initial guess, ``tol``:
    relative residual per column (default 1e-10 for float64, 1e-5 for float32), ``maxiter``
    (default ``10 n``), ``M``: an optional preconditioner, a function ``r -> M^-1 r``
    (symmetric positive definite; not differentiated).

    Gradients w.r.t. ``b`` and every Tensor ``matvec`` uses come from one adjoint CG solve
    ``A lambda = g`` (``A^T = A`` is assumed, not checked: for a non-symmetric operator the
    forward may converge but the gradient is wrong; use ``sparse.solve`` with ``"gmres"``) and a
    VJP of ``matvec`` at the solution with ``lambda`` -- never from the iterations. Second
    derivatives (``create_graph=True``) are exact w.r.t. ``b`` (the adjoint solve is itself a
    ``cg``); through Tensors that ``matvec`` uses they raise RuntimeError. Raises RuntimeError
    if CG does not converge or meets ``p^T A p <= 0``.
    """
    opname = "sparse.cg"
    if not callable(matvec):
        raise TypeError(f"{opname}: matvec must be a function v -> A v, got {type(matvec).__name__}")
    if not isinstance(b, Tensor):
        raise TypeError(f"{opname}: b must be a Tensor, got {type(b).__name__}")
    if b.ndim not in (1, 2):
        raise RuntimeError(f"{opname}: b must have shape [n] or [n, k], got {list(b.shape)}")
    if b._data.dtype.kind != "f":
        raise RuntimeError(f"{opname}: b must be floating point, got dtype {b.dtype}")
    n = b.shape[0]
    if tol is None:
        tol = 1e-10 if b._data.dtype == np.float64 else 1e-5
    if maxiter is None:
        maxiter = max(10 * n, 10)
    if x0 is not None and (not isinstance(x0, Tensor) or tuple(x0.shape) != tuple(b.shape)):
        raise RuntimeError(f"{opname}: x0 must be a Tensor of b's shape {list(b.shape)}, got "
                           f"{getattr(x0, 'shape', type(x0).__name__)}")
    apply_A = _raw_operator(matvec, b)
    apply_M = _raw_operator(M, b) if M is not None else None
    xs, it, rel = _cg_arrays(apply_A, b._data, None if x0 is None else x0._data, tol, maxiter, apply_M)
    xp = get_xp(xs)
    if not bool(xp.all(rel <= tol)) or not bool(xp.all(xp.isfinite(xs))):
        raise RuntimeError(f"{opname}: conjugate gradients did not converge in {maxiter} iterations "
                           f"(system [{n}]): relative residual {float(xp.max(rel)):.3e} > tol {tol:.1e}; "
                           "raise maxiter, loosen tol or pass a preconditioner M (matvec must be "
                           "symmetric positive definite)")
    x = Tensor._make(xs, False, None, 0)
    if not STATE.grad_enabled:
        return x
    with enable_grad():
        Ax = matvec(x)
        residual = b - Ax                 # zero in value; its graph reaches b and matvec's Tensors
    if not residual.requires_grad:
        return x

    def solve_adjoint(g):
        return cg(matvec, g, None, tol, maxiter, M)
    return _CGAdjoint.apply(residual, x, solve_adjoint, bool(Ax.requires_grad))
