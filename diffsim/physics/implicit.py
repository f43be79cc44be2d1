"""Implicit differentiation: Newton's method for ``F(x, theta) = 0`` with gradients by the implicit
function theorem.

``root(F, x0, theta)`` finds ``x*`` with ``F(x*, theta) = 0`` by Newton's method, run without
recording a graph. Its gradient does not go through the iterations: at the solution,
``dx*/dtheta = -(dF/dx)^-1 dF/dtheta``, so for an incoming gradient ``g = dL/dx*`` one
adjoint solve ``(dF/dx)^T mu = g`` gives ``dL/dtheta = -mu^T dF/dtheta``. The solve is done
by a custom ``Function`` whose backward sends ``-mu`` into the residual ``F(x*, theta)``
(evaluated once more, with a graph, at the solution); the engine's VJP through ``F`` then
delivers ``-mu^T dF/dtheta`` to every Tensor of ``theta`` -- and to any other Tensor that
``F`` closes over.
"""
from __future__ import annotations

import numpy as np

from ..autodiff import func
from ..autodiff.backend import get_xp, to_numpy
from ..autodiff.function import Function
from ..autodiff.grad_mode import STATE, enable_grad, no_grad
from ..autodiff.tensor import Tensor

__all__ = ["root"]

SOLVERS = ("dense", "sparse", "gmres")


def _detached(theta):
    if isinstance(theta, Tensor):
        return theta.detach()
    if isinstance(theta, (tuple, list)):
        return type(theta)(_detached(t) for t in theta)
    return theta


def _raw(t):
    return t._data if isinstance(t, Tensor) else t


class _Linear:
    """Solves with ``J = dF/dx`` at one point: ``solve(r)`` for ``J d = r``, ``solve_t(g)`` for
    ``J^T mu = g`` (flat raw arrays ``[n]``)."""

    def __init__(self, F, x, theta, solver, jacobian, opname, lin_tol):
        self.F, self.x, self.theta, self.solver = F, x, theta, solver
        self.jacobian, self.opname, self.lin_tol = jacobian, opname, lin_tol
        n = x.numel()
        self.n = n
        if solver == "dense":
            if jacobian is not None:
                with no_grad():
                    J = jacobian(x, theta)
                if not isinstance(J, Tensor):
                    raise TypeError(f"{opname}: jacobian(x, theta) must return a Tensor [n, n] for "
                                    f"solver='dense', got {type(J).__name__}")
            else:
                J = func.jacobian(lambda z: F(z, theta))(x)
            self.J = _raw(J).reshape(n, n)
        elif solver == "sparse":
            from ..sparse import SparseTensor
            with no_grad():
                J = jacobian(x, theta)
            if not isinstance(J, SparseTensor) or J.shape != (n, n):
                raise TypeError(f"{opname}: jacobian(x, theta) must return a SparseTensor [{n}, {n}] for "
                                f"solver='sparse', got {J!r}")
            if get_xp(J._values._data) is np:
                import scipy.sparse.linalg as sla
            else:
                import cupyx.scipy.sparse.linalg as sla
            try:
                self.lu = sla.splu(J._pattern.matrix(J._values._data).tocsc())
            except RuntimeError as e:
                raise _singular(opname, n, e) from None
        else:
            self._F0 = None

    def solve(self, r, trans=False):
        xp = get_xp(r)
        if self.solver == "dense":
            J = self.J.T if trans else self.J
            try:
                d = xp.linalg.solve(J, r)
            except np.linalg.LinAlgError as e:
                raise _singular(self.opname, self.n, e) from None
        elif self.solver == "sparse":
            d = self.lu.solve(r, trans="T" if trans else "N")
        else:
            d = self._gmres(r, trans)
        if not bool(xp.all(xp.isfinite(d))):
            raise _singular(self.opname, self.n, "non-finite Newton step")
        return d

    def _gmres(self, r, trans):
        import scipy.sparse.linalg as sla
        x, theta, F, shape = self.x, self.theta, self.F, self.x.shape
        if trans:
            if self._F0 is None:
                self._F0 = func.vjp(lambda z: F(z, theta), x)[1]
            vjp_fn = self._F0

            def mv(v):
                return to_numpy(vjp_fn(Tensor._make(np.asarray(v, x._data.dtype).reshape(shape), False, None,
                                                    0))[0]._data).reshape(-1)
        else:
            def mv(v):
                t = Tensor._make(np.asarray(v, x._data.dtype).reshape(shape), False, None, 0)
                return to_numpy(func.jvp(lambda z: F(z, theta), (x,), (t,))[1]._data).reshape(-1)
        op = sla.LinearOperator((self.n, self.n), matvec=mv, dtype=x._data.dtype)
        d, info = sla.gmres(op, to_numpy(r), rtol=self.lin_tol, atol=0.0, restart=min(self.n, 50),
                            maxiter=max(10, self.n))
        if info != 0:
            raise RuntimeError(f"{self.opname}: the GMRES solve with dF/dx (size {self.n}) did not converge "
                               f"(info={info}); use solver='dense' or 'sparse'")
        return d.astype(x._data.dtype)


def _singular(opname, n, e):
    return RuntimeError(f"{opname}: the Jacobian dF/dx ({n} x {n}) is singular at the current point "
                        f"({e}); Newton's method cannot continue and the implicit function theorem does "
                        "not apply there (a different x0, or a well-posed F, is needed)")


class _ImplicitAdjoint(Function):
    """Passes ``x*`` through; backward sends ``-(dF/dx)^-T g`` into the residual input."""

    @staticmethod
    def forward(ctx, residual, x, adjoint):
        ctx.adjoint = adjoint
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        if STATE.grad_enabled:
            raise RuntimeError("physics.implicit.root: second derivatives (create_graph=True through root) "
                               "are not supported; differentiate root's solution once")
        return ctx.adjoint(g), None, None


def root(F, x0, theta=(), tol=1e-10, maxiter=50, solver="dense", jacobian=None, line_search=True,
         linear_tol=None):
    """Solve ``F(x, theta) = 0`` for ``x`` by Newton's method, differentiable w.r.t. ``theta`` by the
    implicit function theorem.

    Args:
        F: ``F(x, theta) -> Tensor`` of ``x``'s shape ``[*]``, written with diffsim ops. ``theta``
            is passed exactly as given (a Tensor, or a tuple of Tensors); ``F`` may also close
            over Tensors, which get gradients too.
        x0: initial guess, a Tensor ``[*]`` (not differentiated: the solution does not depend on it).
        theta: parameters, a Tensor or a tuple/list of Tensors (any shapes).
        tol: stop when ``max |F(x, theta)| <= tol``.
        maxiter: Newton iterations allowed.
        solver: how ``dF/dx`` (``[n, n]``, ``n = x0.numel()``) is handled, in the Newton steps and
            in the adjoint solve ``(dF/dx)^T mu = g``:
            ``"dense"``: the full Jacobian, from ``jacobian(x, theta) -> Tensor [n, n]`` if given,
            else by autodiff (``ds.func.jacobian``, ``n`` VJPs: for small problems);
            ``"sparse"``: ``jacobian(x, theta) -> SparseTensor [n, n]`` (required), factorized by
            sparse LU, the factorization reused for the adjoint solve;
            ``"gmres"``: matrix-free, Jacobian-vector products (``ds.func.jvp``) for Newton and
            vector-Jacobian products for the adjoint, solved by GMRES to ``linear_tol``.
        jacobian: see ``solver``; called as ``jacobian(x, theta)`` without a graph.
        line_search: halve the Newton step (up to 30 times) until ``|F|`` decreases.
        linear_tol: relative tolerance of the GMRES solves (default ``tol``-driven 1e-12).

    Returns:
        ``x*`` of ``x0``'s shape ``[*]``, a Tensor whose gradient w.r.t. ``theta`` (and
        Tensors ``F`` closes over) is ``-(dF/dx)^-T``-weighted ``dF/dtheta``: one adjoint solve
        per backward, no graph of the iterations. First derivatives only.

    Raises RuntimeError if Newton does not reach ``tol`` in ``maxiter`` iterations or
    ``dF/dx`` is singular, and TypeError/RuntimeError for malformed ``F``, ``x0`` or ``jacobian``.
    """
    opname = "physics.implicit.root"
    if not callable(F):
        raise TypeError(f"{opname}: F must be a function F(x, theta), got {type(F).__name__}")
    if not isinstance(x0, Tensor) or x0._data.dtype.kind != "f":
        raise TypeError(f"{opname}: x0 must be a floating-point Tensor, got "
                        f"{getattr(x0, 'dtype', type(x0).__name__)}")
    if solver not in SOLVERS:
        raise ValueError(f"{opname}: solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "sparse" and jacobian is None:
        raise ValueError(f"{opname}: solver='sparse' needs jacobian(x, theta) returning a SparseTensor")
    if solver == "gmres" and get_xp(x0._data) is not np:
        raise RuntimeError(f"{opname}: solver='gmres' runs on the CPU only; use 'dense' or 'sparse'")
    if linear_tol is None:
        linear_tol = 1e-12 if x0._data.dtype == np.float64 else 1e-6
    theta_c = _detached(theta)
    shape = x0.shape
    xp = get_xp(x0._data)

    def residual(x):
        with no_grad():
            f = F(x, theta_c)
        if not isinstance(f, Tensor) or tuple(f.shape) != tuple(shape):
            raise RuntimeError(f"{opname}: F(x, theta) must return a Tensor of x's shape {list(shape)}, got "
                               f"{getattr(f, 'shape', type(f).__name__)}")
        return f._data

    x = x0.detach().clone()
    f = residual(x)
    fnorm = float(xp.max(xp.abs(f))) if f.size else 0.0
    it = 0
    while not fnorm <= tol:
        if it >= maxiter or not np.isfinite(fnorm):
            raise RuntimeError(f"{opname}: Newton's method did not converge in {it} iterations: max |F| = "
                               f"{fnorm:.3e} > tol = {tol:.1e} (x of shape {list(shape)}); try a better x0, "
                               "more maxiter or a looser tol")
        lin = _Linear(F, x, theta_c, solver, jacobian, opname, linear_tol)
        d = lin.solve(-f.reshape(-1)).reshape(shape)
        step = 1.0
        for _ in range(30 if line_search else 0):
            f_new = residual(Tensor._make(x._data + step * d, False, None, 0))
            n_new = float(xp.max(xp.abs(f_new))) if f_new.size else 0.0
            if n_new < fnorm:
                break
            step *= 0.5
        x = Tensor._make(x._data + step * d, False, None, 0)
        f = residual(x)
        fnorm = float(xp.max(xp.abs(f))) if f.size else 0.0
        it += 1
    if not STATE.grad_enabled:
        return x
    with enable_grad():
        r = F(x, theta)                 # zero in value; its graph reaches theta and F's closures
    if not isinstance(r, Tensor) or not r.requires_grad:
        return x

    def adjoint(g):
        lin = _Linear(F, x, theta_c, solver, jacobian, opname, linear_tol)
        gd = g._data if isinstance(g, Tensor) else g
        mu = lin.solve(gd.reshape(-1), trans=True).reshape(shape)
        return Tensor._make(xp.asarray(-mu, dtype=gd.dtype), False, None, 0)
    return _ImplicitAdjoint.apply(r, x, adjoint)
