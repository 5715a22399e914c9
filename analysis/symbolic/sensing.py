r"""The sensing vocabulary: a linear measurement operator 𝒜: ℝ^{m×n} → ℝ^p and its measurements y.

``A(X)`` is 𝒜(X), a p×1 column (so that ½‖𝒜(UVᵀ) − y‖² is ``fro(A(U*V.T) - y)**2 / 2`` like any
other Frobenius norm), ``y`` the p×1 measurements and ``A_adjoint(z)`` the adjoint 𝒜*(z), an m×n
matrix. Both maps are linear, which is all the calculus needs to know about them:

* D[𝒜(X)][Δ] = 𝒜(DX[Δ]) and D[𝒜*(z)][Δ] = 𝒜*(Dz[Δ]) (:func:`.calculus.directional`);
* ⟨z, 𝒜(W)⟩ = ⟨𝒜*(z), W⟩, so the gradient of tr(zᵀ𝒜(W)) in a factor of W is read off
  tr(𝒜*(z)ᵀW) (:func:`.calculus.gradient_of`): ∇_U ½‖𝒜(UVᵀ) − y‖² = 𝒜*(𝒜(UVᵀ) − y)V.

Numerically the operator is an object with the protocol of :mod:`pgflow.flows.operators`, passed by
the name ``A``: 𝒜(UVᵀ) compiles to ``A.apply_factored(U, V)`` and 𝒜*(z)V, 𝒜*(z)ᵀU to one call of
``A.adjoint_products(z, U, V)`` (:mod:`.factored`), so an operator that avoids the m×n product does.
"""

from __future__ import annotations

import sympy as sp
from sympy import Basic, MatrixExpr, MatrixSymbol

from .vocabulary import ShapeError, format_shape, m, n, same_dim

p = sp.Symbol("p", integer=True, positive=True)
"""The number of measurements."""

y = MatrixSymbol("y", p, 1)
"""The measurements, a p×1 column."""

OPERATOR = "A"
"""The name by which the operator object is passed to a compiled program."""


class LinearImage(MatrixExpr):
    """The image of a matrix expression under one of the operator's linear maps (a base class).

    Subclasses fix ``domain`` (the argument's shape), ``shape`` and ``label``; ``is_linear_map``
    tells the calculus that D[L(X)] = L(DX) and that L distributes over sums.
    """

    is_commutative = False
    is_linear_map = True
    domain: tuple = ()
    label = ""

    def __new__(cls, X):
        if not isinstance(X, MatrixExpr):
            raise ShapeError(f"{cls.label}() needs a matrix argument of shape {format_shape(cls.domain)}, "
                             f"got the scalar {X}")
        return Basic.__new__(cls, X)

    @property
    def arg(self):
        return self.args[0]

    def check_args(self) -> None:
        """The argument must have the map's domain shape (called by :func:`.vocabulary.shape_of`)."""
        if not all(map(same_dim, self.arg.shape, self.domain)):
            raise ShapeError(f"{self}: {self.label}() maps {format_shape(self.domain)} matrices, got {self.arg} "
                             f"of shape {format_shape(self.arg.shape)}")

    def _sympystr(self, printer):
        return f"{self.label}({printer.doprint(self.arg)})"


class Measure(LinearImage):
    """𝒜(X): the p measurements of an m×n matrix X, as a p×1 column."""

    domain = (m, n)
    label = "A"

    @property
    def shape(self):
        return (p, sp.Integer(1))


class AdjointMeasure(LinearImage):
    """𝒜*(z): the m×n matrix of the adjoint applied to a p×1 column z."""

    domain = (p, sp.Integer(1))
    label = "A_adjoint"

    @property
    def shape(self):
        return (m, n)


def A(X) -> Measure:
    """𝒜(X) for an m×n matrix expression X (shape-checked), a p×1 column.

    Examples
    --------
    >>> from pgflow.analysis.symbolic import U, V
    >>> A(U*V.T).shape
    (p, 1)
    """
    if isinstance(X, MatrixExpr) and not all(map(same_dim, X.shape, Measure.domain)):
        raise ShapeError(f"A() maps m×n matrices, got {X} of shape {format_shape(X.shape)}")
    return Measure(X)


def A_adjoint(z) -> AdjointMeasure:
    """𝒜*(z) for a p×1 column expression z (shape-checked), an m×n matrix."""
    if isinstance(z, MatrixExpr) and not all(map(same_dim, z.shape, AdjointMeasure.domain)):
        raise ShapeError(f"A_adjoint() takes a p×1 column, got {z} of shape {format_shape(z.shape)}")
    return AdjointMeasure(z)


def is_adjoint_factor(f) -> bool:
    """Whether a factor of a product is 𝒜*(z) or its transpose (multiplied through the operator)."""
    return isinstance(f, AdjointMeasure) or (isinstance(f, sp.Transpose) and isinstance(f.arg, AdjointMeasure))


def uses_operator(expr) -> bool:
    """Whether an expression applies 𝒜 or 𝒜* anywhere."""
    return expr.has(Measure, AdjointMeasure)
