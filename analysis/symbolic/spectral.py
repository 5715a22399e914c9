"""Spectral functions of matrices: scalar functions with a derivative rule and a numpy kernel.

``norm`` (spectral norm), ``fro``, ``sigma_min``, ``sigma_max``, ``lambda_min``, ``lambda_max`` (of
the symmetric part), ``nuclear_norm`` (sum of the singular values) and ``top_sum(X, s)`` (sum of the
s largest singular values, the Ky Fan s-norm). Their time derivatives are *right*-derivatives,
correct at repeated singular values or eigenvalues and at zero (:mod:`.spectral_rates`); the rate
kernels also report where the state is such a nonsmooth point (``flags``).
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from sympy import MatrixExpr

from . import spectral_rates as sr
from .vocabulary import ShapeError, _check_square, same_dim


def _safe(x):
    """An argument as sympy, a string through the safe parser (never sympy's ``eval``)."""
    if isinstance(x, sp.Basic):
        return x
    from .parsing import as_sympy  # parsing builds its function table from this module

    return as_sympy(x)


def _col(x):
    return np.asarray(x)[..., None, None]


def _scalar(x) -> np.ndarray:
    """A scalar operand of a kernel (a number, or an array carried as (..., 1, 1)) as shape (...)."""
    x = np.asarray(x, dtype=float)
    return x[..., 0, 0] if x.ndim >= 2 else x


class MatrixFunction(sp.Function):
    """Base of the spectral functions: commutative real scalars of matrix arguments.

    Subclasses define ``label`` (the name in the claim language), ``kernel`` (numpy, batched over
    leading axes, returning shape (...)) and, if differentiable, ``rate(dX)`` (the derivative along
    Ẋ = dX, a sympy expression). Rate functions also define ``flags`` (same arguments as ``kernel``,
    returning a boolean array (...) that is True at nonsmooth points). The first ``matrix_args``
    arguments are matrices.
    """

    is_commutative = True
    is_real = True
    square = False
    matrix_args = 1
    flags = None

    def __new__(cls, *args, **options):
        # sympy would sympify (eval) a string argument: parse it safely instead
        args = tuple(_safe(a) for a in args)
        for a in args[:cls.matrix_args]:
            if not isinstance(a, MatrixExpr):
                raise ShapeError(f"{cls.label}() needs a matrix argument, got the scalar {a}")
        return super().__new__(cls, *args, **options)

    def check_args(self) -> None:
        if self.square:
            _check_square(self.args[0], f"{self.label}()")
        if self.matrix_args == 2 and not all(map(same_dim, self.args[0].shape, self.args[1].shape)):
            raise ShapeError(f"{self}: a matrix and its derivative must have the same shape")

    def _sympystr(self, printer):
        return f"{self.label}({', '.join(printer.doprint(a) for a in self.args)})"


class _SingularValue(MatrixFunction):
    """σ_which(X) (0: largest, −1: the min(rows, cols)-th)."""
    nargs = 1
    which = 0

    @classmethod
    def kernel(cls, X):
        if 0 in X.shape[-2:]:
            return np.zeros(X.shape[:-2])
        return np.linalg.svd(X, compute_uv=False)[..., cls.which]

    def rate(self, dX):
        return SingularRate(self.args[0], dX, sp.Integer(self.which), magnitude(self.args[0]), magnitude(dX))


class OpNorm(_SingularValue):
    """‖X‖, the spectral norm (largest singular value)."""
    label, which = "norm", 0


class SigmaMin(_SingularValue):
    """σ_min(X), the min(rows, cols)-th singular value."""
    label, which = "sigma_min", -1


class NuclearNorm(MatrixFunction):
    """‖X‖_*, the sum of the singular values."""
    label = "nuclear_norm"
    nargs = 1

    @staticmethod
    def kernel(X):
        if 0 in X.shape[-2:]:
            return np.zeros(X.shape[:-2])
        return np.sum(np.linalg.svd(X, compute_uv=False), axis=-1)

    def rate(self, dX):
        return NuclearRate(self.args[0], dX, magnitude(self.args[0]), magnitude(dX))


class TopSum(MatrixFunction):
    """The sum of the s largest singular values of X (the Ky Fan s-norm; s = 1: ``norm``)."""
    label = "top_sum"
    nargs = 2

    def check_args(self) -> None:
        s = self.args[1]
        if not (s.is_Integer and s >= 1):
            raise ShapeError(f"top_sum(X, s) needs a positive integer s, got {s}")

    @staticmethod
    def kernel(X, s):
        s = _count(X, s)
        return np.sum(np.linalg.svd(X, compute_uv=False)[..., :s], axis=-1) if s else np.zeros(X.shape[:-2])

    def rate(self, dX):
        return TopSumRate(self.args[0], dX, self.args[1], magnitude(self.args[0]), magnitude(dX))


def _count(X, s) -> int:
    s, q = int(np.asarray(s).reshape(-1)[0]), min(X.shape[-2:])
    if not 1 <= s <= q:
        raise ValueError(f"top_sum(X, s) needs 1 <= s <= min(rows, cols) = {q}, got s = {s}")
    return s


class _Eigenvalue(MatrixFunction):
    """λ_which of the symmetric part (X + Xᵀ)/2 (= X for symmetric X)."""
    nargs = 1
    square = True
    which = 0

    @classmethod
    def kernel(cls, X):
        return np.linalg.eigvalsh(sr.sym(X))[..., cls.which]

    def rate(self, dX):
        return EigenRate(self.args[0], dX, sp.Integer(self.which), magnitude(self.args[0]), magnitude(dX))


class LambdaMin(_Eigenvalue):
    """λ_min of the symmetric part."""
    label, which = "lambda_min", 0


class LambdaMax(_Eigenvalue):
    """λ_max of the symmetric part."""
    label, which = "lambda_max", -1


class FroNorm(MatrixFunction):
    """‖X‖_F. Evaluated as a norm, never as √tr(XᵀX), which rounding can make the square root of a
    negative number when X is the difference of nearly equal terms."""
    label = "fro"
    nargs = 1

    @staticmethod
    def kernel(X):
        return np.linalg.norm(X, axis=(-2, -1)) if 0 not in X.shape[-2:] else np.zeros(X.shape[:-2])

    def rate(self, dX):
        return FroRate(self.args[0], dX, magnitude(self.args[0]), magnitude(dX))


# ----------------------------------------------------------------------------------------------
# rates: right-derivatives, with the nonsmooth points flagged
# ----------------------------------------------------------------------------------------------

class SingularRate(MatrixFunction):
    """d⁺/dt σ_i(X) along Ẋ (i = 0: largest, −1: smallest): u_iᵀẊv_i where σ_i is simple and
    positive, the one-sided cluster rule where it is repeated or zero (:mod:`.spectral_rates`)."""
    label = "singular_rate"
    nargs = 5
    matrix_args = 2

    @staticmethod
    def kernel(X, dX, which, scale, dscale):
        rates, _, _ = sr.singular_rates(X, dX, _scalar(scale), _scalar(dscale))
        if rates.shape[-1] == 0:
            return np.zeros(rates.shape[:-1])
        return rates[..., int(which) % rates.shape[-1]]

    @staticmethod
    def flags(X, dX, which, scale, dscale):
        _, s, tol = sr.singular_rates(X, np.zeros_like(X), _scalar(scale))
        return sr.clustered(s, tol, int(which), zero_kink=True)


class EigenRate(MatrixFunction):
    """d⁺/dt λ_i(sym X) along Ẋ (i = 0: smallest, −1: largest): w_iᵀ sym(Ẋ) w_i where λ_i is
    simple, λ_{min/max} of the projected block over the eigenspace where it is repeated."""
    label = "eigen_rate"
    nargs = 5
    matrix_args = 2

    @staticmethod
    def kernel(X, dX, which, scale, dscale):
        return sr.eigen_rates(X, dX, _scalar(scale))[0][..., int(which)]

    @staticmethod
    def flags(X, dX, which, scale, dscale):
        _, w, tol = sr.eigen_rates(X, np.zeros_like(X), _scalar(scale))
        return sr.clustered(w, tol, int(which), zero_kink=False)


class NuclearRate(MatrixFunction):
    """d⁺/dt ‖X‖_* along Ẋ: Σ u_jᵀẊv_j over the positive singular values, plus the nuclear norm of
    U₀ᵀẊV₀ over the null spaces (nonsmooth where X is rank-deficient)."""
    label = "nuclear_rate"
    nargs = 4
    matrix_args = 2

    @staticmethod
    def kernel(X, dX, scale, dscale):
        return np.sum(sr.singular_rates(X, dX, _scalar(scale), _scalar(dscale))[0], axis=-1)

    @staticmethod
    def flags(X, dX, scale, dscale):
        _, s, tol = sr.singular_rates(X, np.zeros_like(X), _scalar(scale))
        return np.any(s <= tol[..., None], axis=-1) if s.shape[-1] else np.zeros(s.shape[:-1], dtype=bool)


class TopSumRate(MatrixFunction):
    """d⁺/dt of the sum of the s largest singular values (nonsmooth where σ_s = σ_{s+1} or σ_s = 0)."""
    label = "top_sum_rate"
    nargs = 5
    matrix_args = 2

    @staticmethod
    def kernel(X, dX, s, scale, dscale):
        s = _count(X, s)
        return np.sum(sr.singular_rates(X, dX, _scalar(scale), _scalar(dscale))[0][..., :s], axis=-1)

    @staticmethod
    def flags(X, dX, s, scale, dscale):
        s = _count(X, s)
        _, values, tol = sr.singular_rates(X, np.zeros_like(X), _scalar(scale))
        out = values[..., s - 1] <= tol
        if s < values.shape[-1]:
            out |= values[..., s - 1] - values[..., s] <= tol
        return out


class FroRate(MatrixFunction):
    """d⁺/dt ‖X‖_F along Ẋ: tr(XᵀẊ)/‖X‖_F, and ‖Ẋ‖_F where X = 0 (to rounding: ‖X‖_F ≤
    ZERO_RTOL·scale; and 0 where Ẋ is itself rounding, ‖Ẋ‖_F ≤ ZERO_RTOL·dscale)."""
    label = "fro_rate"
    nargs = 4
    matrix_args = 2

    @staticmethod
    def _zero(X, scale):
        X = np.asarray(X, dtype=float)
        size = np.linalg.norm(X, axis=(-2, -1)) if 0 not in X.shape[-2:] else np.zeros(X.shape[:-2])
        return size, size <= sr.ZERO_RTOL * np.abs(_scalar(scale))

    @classmethod
    def kernel(cls, X, dX, scale, dscale):
        X, dX = np.broadcast_arrays(np.asarray(X, dtype=float), np.asarray(dX, dtype=float))
        size, zero = cls._zero(X, scale)
        if 0 in X.shape[-2:]:
            return np.zeros(X.shape[:-2])
        with np.errstate(divide="ignore", invalid="ignore"):
            smooth = np.sum(X * dX, axis=(-2, -1)) / size
        step = np.linalg.norm(dX, axis=(-2, -1))
        return np.where(zero, np.where(step > sr.ZERO_RTOL * np.abs(_scalar(dscale)), step, 0.0), smooth)

    @classmethod
    def flags(cls, X, dX, scale, dscale):
        return cls._zero(X, scale)[1]


class AbsRate(MatrixFunction):
    """d⁺/dt |x| along ẋ: sign(x)ẋ, and |ẋ| where x = 0 (to rounding: |x| ≤ ZERO_RTOL·scale)."""
    label = "abs_rate"
    nargs = 4
    matrix_args = 0

    @staticmethod
    def kernel(x, dx, scale, dscale):
        x, dx, scale, dscale = np.broadcast_arrays(_scalar(x), _scalar(dx), _scalar(scale), _scalar(dscale))
        step = np.where(np.abs(dx) > sr.ZERO_RTOL * np.abs(dscale), np.abs(dx), 0.0)
        return np.where(np.abs(x) > sr.ZERO_RTOL * np.abs(scale), np.sign(x) * dx, step)

    @staticmethod
    def flags(x, dx, scale, dscale):
        x, dx, scale = np.broadcast_arrays(_scalar(x), _scalar(dx), _scalar(scale))
        return np.abs(x) <= sr.ZERO_RTOL * np.abs(scale)


RATES = (SingularRate, EigenRate, NuclearRate, TopSumRate, FroRate, AbsRate)
"""The rate functions; their ``flags`` mark nonsmooth points."""


def magnitude(e) -> sp.Expr:
    """A scalar expression bounding the size of the terms ``e`` is computed from.

    Sums add the magnitudes of their terms, products multiply them, a matrix leaf is its Frobenius
    norm. Rounding leaves ``e`` wrong by about ε·magnitude(e), so a value of ``e`` below
    ZERO_RTOL·magnitude(e) is indistinguishable from 0 (UᵀU − VᵀV at a balanced state).
    """
    if isinstance(e, MatrixExpr):
        if isinstance(e, sp.MatAdd):
            return sp.Add(*[magnitude(a) for a in e.args])
        if isinstance(e, sp.MatMul):
            coeff, mats = e.as_coeff_matrices()
            return magnitude(coeff) * sp.Mul(*[magnitude(a) for a in mats])
        if isinstance(e, sp.Transpose):
            return magnitude(e.arg)
        if isinstance(e, sp.ZeroMatrix):
            return sp.Integer(0)
        if isinstance(e, sp.Identity):
            return sp.Integer(1)
        if isinstance(e, sp.MatPow) and e.exp.is_Integer and e.exp > 0:
            return magnitude(e.base) ** int(e.exp)
        return FroNorm(e)
    if e.is_Number:
        return abs(e)
    if isinstance(e, sp.Add):
        return sp.Add(*[magnitude(a) for a in e.args])
    if isinstance(e, sp.Mul):
        return sp.Mul(*[magnitude(a) for a in e.args])
    if isinstance(e, sp.Trace):
        return magnitude(e.arg)
    if isinstance(e, sp.Pow) and e.exp.is_Integer and e.exp > 0:
        return magnitude(e.base) ** int(e.exp)
    return sp.Abs(e)


def norm(X) -> sp.Expr:
    """Spectral norm ‖X‖ (for a scalar: |x|)."""
    X = _safe(X)
    return sp.Abs(X) if not isinstance(X, MatrixExpr) else OpNorm(X)


def fro(X) -> sp.Expr:
    """Frobenius norm ‖X‖_F (for a scalar: |x|)."""
    X = _safe(X)
    return sp.Abs(X) if not isinstance(X, MatrixExpr) else FroNorm(X)


def lambda_min(X) -> sp.Expr:
    """Smallest eigenvalue of the symmetric part of a square matrix."""
    X = _safe(X)
    f = LambdaMin(X)
    f.check_args()
    return f


def lambda_max(X) -> sp.Expr:
    """Largest eigenvalue of the symmetric part of a square matrix."""
    X = _safe(X)
    f = LambdaMax(X)
    f.check_args()
    return f


def sigma_min(X) -> sp.Expr:
    """Smallest singular value σ_min(X) (the min(rows, cols)-th)."""
    X = _safe(X)
    return SigmaMin(X)


def sigma_max(X) -> sp.Expr:
    """Largest singular value = spectral norm."""
    X = _safe(X)
    return OpNorm(X)


def nuclear_norm(X) -> sp.Expr:
    """Nuclear norm ‖X‖_* (sum of the singular values; for a scalar: |x|)."""
    X = _safe(X)
    return sp.Abs(X) if not isinstance(X, MatrixExpr) else NuclearNorm(X)


def top_sum(X, s) -> sp.Expr:
    """Sum of the ``s`` largest singular values of X (s a positive integer constant)."""
    X = _safe(X)
    if isinstance(s, bool) or not (isinstance(s, int) or (isinstance(s, sp.Basic) and s.is_Integer)):
        raise ShapeError(f"top_sum(X, s) needs a positive integer constant s, got {s}")
    f = TopSum(X, sp.Integer(int(s)))
    f.check_args()
    return f
