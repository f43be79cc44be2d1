"""diffsim.sparse: sparse matrices with differentiable values, and differentiable sparse solves.

* ``SparseTensor`` (layouts ``"coo"`` and ``"csr"``): constant integer structure, values a
  Tensor ``[nnz]`` that may require grad; ``to_dense``, ``t``, ``coalesce``, ``A @ x``
  (spmv ``[n]`` / spmm ``[n, k]``), ``+``, ``-``, scaling
* construction: ``coo_tensor(indices [2, nnz], values [nnz], size)``,
  ``csr_tensor(crow [m + 1], col [nnz], values [nnz], size)``, ``assemble(rows, cols, values,
  size)`` (scatter-add, duplicates summed, as finite elements need), ``to_sparse(dense)``
* ``solve(A, b, method="direct" | "cg" | "bicgstab" | "gmres", preconditioner=None |
  "jacobi" | "ilu")``: gradients w.r.t. ``A.values()`` and ``b`` by one adjoint solve
* ``cg(matvec, b)``: matrix-free conjugate gradients, gradients by an adjoint CG solve

Products and solves run on ``scipy.sparse`` (CPU) and ``cupyx.scipy.sparse`` (GPU); both
are imported on first use. See ``diffsim.physics.implicit`` for Newton solves of
``F(x, theta) = 0`` differentiated by the implicit function theorem.
"""
from .solve import cg, solve  # noqa: F401
from .tensor import SparseTensor, assemble, coo_tensor, csr_tensor, is_sparse, matmul, to_sparse  # noqa: F401

__all__ = ["SparseTensor", "coo_tensor", "csr_tensor", "assemble", "to_sparse", "is_sparse", "matmul",
           "solve", "cg"]
