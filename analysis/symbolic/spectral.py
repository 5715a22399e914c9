"""Spectral functions of matrices: scalar functions with a derivative rule and a numpy kernel.

``norm`` (spectral norm), ``fro``, ``sigma_min``, ``sigma_max``, ``lambda_min``, ``lambda_max`` (of
the symmetric part). Their time derivative is taken where the singular value or eigenvalue is simple
(u₁ᵀẊv₁ for the spectral norm).
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from sympy import MatrixExpr, Trace

from .vocabulary import ShapeError, _check_square, same_dim

def _sym(X):
    return 0.5 * (X + np.swapaxes(X, -1, -2))


def _col(x):
    return x[..., None, None]


class MatrixFunction(sp.Function):
    """Base of the spectral functions: commutative real scalars of matrix arguments.

    Subclasses define ``label`` (the name in the claim language), ``kernel`` (numpy, batched over
    leading axes, returning shape (...)) and, if differentiable, ``rate(dX)`` (the derivative along
    Ẋ = dX, a sympy expression). The first ``matrix_args`` arguments are matrices.
    """

    is_commutative = True
    is_real = True
    square = False
    matrix_args = 1

    @classmethod
    def eval(cls, *args):
        for a in args[:cls.matrix_args]:
            if not isinstance(a, MatrixExpr):
                raise ShapeError(f"{cls.label}() needs a matrix argument, got the scalar {a}")
        return None

    def check_args(self) -> None:
        if self.square:
            _check_square(self.args[0], f"{self.label}()")
        if self.matrix_args == 2 and not all(map(same_dim, self.args[0].shape, self.args[1].shape)):
            raise ShapeError(f"{self}: a matrix and its derivative must have the same shape")

    def _sympystr(self, printer):
        return f"{self.label}({', '.join(printer.doprint(a) for a in self.args)})"


class _SingularValue(MatrixFunction):
    """σ_which(X) (0: largest, −1: the min(rows, cols)-th); its rate is uᵀẊv for its singular pair."""
    nargs = 1
    which = 0

    @classmethod
    def kernel(cls, X):
        if 0 in X.shape[-2:]:
            return np.zeros(X.shape[:-2])
        return np.linalg.svd(X, compute_uv=False)[..., cls.which]

    def rate(self, dX):
        return SingularRate(self.args[0], dX, sp.Integer(self.which))


class OpNorm(_SingularValue):
    """‖X‖, the spectral norm (largest singular value)."""
    label, which = "norm", 0


class SigmaMin(_SingularValue):
    """σ_min(X), the min(rows, cols)-th singular value."""
    label, which = "sigma_min", -1


class _Eigenvalue(MatrixFunction):
    """λ_which of the symmetric part (X + Xᵀ)/2 (= X for symmetric X); its rate is vᵀ sym(Ẋ) v."""
    nargs = 1
    square = True
    which = 0

    @classmethod
    def kernel(cls, X):
        return np.linalg.eigvalsh(_sym(X))[..., cls.which]

    def rate(self, dX):
        return EigenRate(self.args[0], dX, sp.Integer(self.which))


class LambdaMin(_Eigenvalue):
    """λ_min of the symmetric part."""
    label, which = "lambda_min", 0


class LambdaMax(_Eigenvalue):
    """λ_max of the symmetric part."""
    label, which = "lambda_max", -1


class FroNorm(MatrixFunction):
    """‖X‖_F; its rate is tr(XᵀẊ)/‖X‖_F. Evaluated as a norm, never as √tr(XᵀX), which rounding can
    make the square root of a negative number when X is the difference of nearly equal terms."""
    label = "fro"
    nargs = 1

    @staticmethod
    def kernel(X):
        return np.linalg.norm(X, axis=(-2, -1)) if 0 not in X.shape[-2:] else np.zeros(X.shape[:-2])

    def rate(self, dX):
        return Trace(self.args[0].T * dX) / self


class SingularRate(MatrixFunction):
    """d/dt σ_i(X) = u_iᵀ Ẋ v_i (i = 0: largest, −1: smallest), valid where σ_i is simple."""
    label = "singular_rate"
    nargs = 3
    matrix_args = 2

    @staticmethod
    def kernel(X, dX, which):
        if 0 in X.shape[-2:]:
            return np.zeros(np.broadcast_shapes(X.shape[:-2], dX.shape[:-2]))
        u, _, vt = np.linalg.svd(X)
        i = int(which) % min(X.shape[-2:])
        return np.einsum("...i,...ij,...j->...", u[..., :, i], dX, vt[..., i, :])


class EigenRate(MatrixFunction):
    """d/dt λ_i(sym X) = v_iᵀ sym(Ẋ) v_i (i = 0: smallest, −1: largest), valid where λ_i is simple."""
    label = "eigen_rate"
    nargs = 3
    matrix_args = 2

    @staticmethod
    def kernel(X, dX, which):
        v = np.linalg.eigh(_sym(X))[1][..., :, int(which)]
        return np.einsum("...i,...ij,...j->...", v, _sym(dX), v)


def norm(X) -> sp.Expr:
    """Spectral norm ‖X‖ (for a scalar: |x|)."""
    return sp.Abs(X) if not isinstance(X, MatrixExpr) else OpNorm(X)


def fro(X) -> sp.Expr:
    """Frobenius norm ‖X‖_F (for a scalar: |x|)."""
    return sp.Abs(X) if not isinstance(X, MatrixExpr) else FroNorm(X)


def lambda_min(X) -> sp.Expr:
    """Smallest eigenvalue of the symmetric part of a square matrix."""
    f = LambdaMin(X)
    f.check_args()
    return f


def lambda_max(X) -> sp.Expr:
    """Largest eigenvalue of the symmetric part of a square matrix."""
    f = LambdaMax(X)
    f.check_args()
    return f


def sigma_min(X) -> sp.Expr:
    """Smallest singular value σ_min(X) (the min(rows, cols)-th)."""
    return SigmaMin(X)


def sigma_max(X) -> sp.Expr:
    """Largest singular value = spectral norm."""
    return OpNorm(X)
