"""The vocabulary of the symbolic layer: matrix symbols with their shapes, the dynamics, and shape
checking.

The state is U (m×k) and V (n×k); the target Σ (m×n) = Φ Σ* Ψᵀ with Φ (m×r), Ψ (n×r), their
complements Φ⊥, Ψ⊥ and Σ* = diag(σ) (r×r); the perturbations E (m×n, residual form) or E_U, E_V
(additive form); the scalars η (``eta``) and t.
"""

from __future__ import annotations

import sympy as sp
from sympy import HadamardProduct, Inverse, MatAdd, MatMul, MatPow, MatrixExpr, MatrixSymbol, Trace

m, n, k, r = sp.symbols("m n k r", integer=True, positive=True)
DIMS = (m, n, k, r)

U = MatrixSymbol("U", m, k)
V = MatrixSymbol("V", n, k)
Sigma = MatrixSymbol("Sigma", m, n)
Phi = MatrixSymbol("Phi", m, r)
Psi = MatrixSymbol("Psi", n, r)
Phi_perp = MatrixSymbol("Phi_perp", m, m - r)
Psi_perp = MatrixSymbol("Psi_perp", n, n - r)
Sigma_star = MatrixSymbol("Sigma_star", r, r)
E = MatrixSymbol("E", m, n)
E_U = MatrixSymbol("E_U", m, k)
E_V = MatrixSymbol("E_V", n, k)
eta = sp.Symbol("eta", positive=True)
t = sp.Symbol("t", real=True)

STATE = (U, V)
TARGET = (Sigma, Phi, Psi, Phi_perp, Psi_perp, Sigma_star)
STRUCTURE = (Phi, Psi, Phi_perp, Psi_perp, Sigma_star)
PERTURBATIONS = (E, E_U, E_V)
SYMBOLS = {s.name: s for s in STATE + TARGET + PERTURBATIONS + (eta, t)}

DYNAMICS = ("gf", "pgf_residual", "pgf_additive", "modified", "gd")
"""Dynamics a derivative can be taken along; "gd" means the exact one-step change."""


class ShapeError(ValueError):
    """An expression whose matrix shapes do not fit; the message names the offending sub-expression."""


class NotPolynomial(ValueError):
    """The expression is not a polynomial in the requested matrices (so it has no exact GD polynomial)."""


def _safe(X):
    if isinstance(X, sp.Basic):
        return X
    from .parsing import as_sympy  # parsing builds on this module; a string never reaches sympify

    return as_sympy(X)


def trace(X) -> sp.Expr:
    """tr X for a square matrix expression (shape-checked)."""
    X = _safe(X)
    _check_square(X, "trace")
    return Trace(X)


def fro2(X) -> sp.Expr:
    """‖X‖²_F = tr(XᵀX)."""
    X = _safe(X)
    return Trace(X.T * X)


# Shapes

def format_shape(shape) -> str:
    """``(m, k)`` as ``m×k``; scalars as ``scalar``."""
    if shape is None:
        return "scalar"
    return "×".join(str(s) if isinstance(s, (int, sp.Symbol, sp.Integer)) else f"({s})" for s in shape)


def _dim(d):
    """A size as a sympy expression (ints become Integers; strings are refused, never parsed)."""
    if isinstance(d, sp.Basic):
        return d
    if isinstance(d, int) and not isinstance(d, bool):
        return sp.Integer(d)
    raise TypeError(f"a size must be an int or a sympy expression in m, n, k, r, got {d!r}")


def same_dim(a, b) -> bool:
    """Whether two sizes (ints or expressions in m, n, k, r) are the same for all sizes."""
    return a == b or sp.expand(_dim(a) - _dim(b)) == 0


def _check_square(X, what: str) -> None:
    if not isinstance(X, MatrixExpr):
        raise ShapeError(f"{what} needs a square matrix, got the scalar {X}")
    if not same_dim(*X.shape):
        raise ShapeError(f"{what} needs a square matrix, got {X} of shape {format_shape(X.shape)}")


def shape_of(expr):
    """The shape of ``expr`` (None for a scalar), checking every product, sum and trace inside it.

    sympy only rejects a product such as ``U*V`` when it can decide that the inner sizes differ,
    which with symbolic sizes (k against n) it cannot; this check compares the sizes structurally.

    Parameters
    ----------
    expr : sympy expression or str
        A string is parsed by the safe parser (:mod:`.parsing`): ``"U*V.T"`` is the m×n product.

    Raises
    ------
    ShapeError
        Naming the smallest offending sub-expression and the shapes involved.
    ClaimSyntaxError
        A string that is not an expression of the language (never evaluated).

    Examples
    --------
    >>> shape_of("U*V.T")
    (m, n)
    """
    from .parsing import as_sympy  # parsing builds on this module

    return _shape(as_sympy(expr), {})


def _shape(e, memo):
    if e in memo:
        return memo[e]
    if isinstance(e, MatrixExpr):
        if isinstance(e, MatMul):
            coeff, mats = e.as_coeff_matrices()
            if _shape(coeff, memo) is not None:
                raise ShapeError(f"{e}: the coefficient {coeff} is not a scalar")
            shapes = [_shape(a, memo) for a in mats]
            for (a, sa), (b, sb) in zip(zip(mats, shapes), zip(mats[1:], shapes[1:])):
                if not same_dim(sa[1], sb[0]):
                    raise ShapeError(f"{e}: cannot multiply {a} ({format_shape(sa)}) by {b} ({format_shape(sb)}); "
                                     f"inner sizes {sa[1]} and {sb[0]} differ")
        elif isinstance(e, (MatAdd, HadamardProduct)):
            shapes = [_shape(a, memo) for a in e.args]
            for a, sa in zip(e.args, shapes):
                if sa is None:
                    raise ShapeError(f"{e}: cannot add the scalar {a} to a matrix")
                if not (same_dim(sa[0], shapes[0][0]) and same_dim(sa[1], shapes[0][1])):
                    raise ShapeError(f"{e}: cannot add {e.args[0]} ({format_shape(shapes[0])}) and {a} "
                                     f"({format_shape(sa)})")
        elif isinstance(e, (MatPow, Inverse)):
            _shape(e.args[0], memo)
            _check_square(e.args[0], "a matrix power or inverse")
        else:
            for a in e.args:
                _shape(a, memo)
            if hasattr(e, "check_args"):  # a linear map of :mod:`.sensing` checks its argument's shape
                e.check_args()
        out = tuple(e.shape)
    else:
        if isinstance(e, Trace):
            _shape(e.arg, memo)
            _check_square(e.arg, "trace")
        elif hasattr(e, "check_args"):  # a spectral function (:mod:`.spectral`) checks its own arguments
            for a in e.args:
                _shape(a, memo)
            e.check_args()
        else:
            for a in e.args:
                if _shape(a, memo) is not None:
                    raise ShapeError(f"{e}: the matrix {a} appears where a scalar is needed")
        out = None
    memo[e] = out
    return out


def is_scalar(expr) -> bool:
    return shape_of(expr) is None
