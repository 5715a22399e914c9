"""The claim language: names, functions and the ``derivative()``/``initial()`` markers.

Claims are parsed by the one interpreter over Python's syntax tree,
:mod:`pgflow.analysis.symbolic.parsing`, with this module's extra names (``E_bound``, ``sigma_1``,
``sigma_r``, ``kappa``) and functions (``derivative``, ``initial``). Never ``eval``: a claim is a
string of data, so a claim file cannot run code. See :mod:`pgflow.analysis.bounds` for the language
and ``docs/math/claims.md`` for its mathematics.
"""

from __future__ import annotations

import sympy as sp
from sympy import MatrixExpr

from .. import symbolic as S
from ..symbolic.parsing import MAX_EXPONENT, ClaimError, ClaimSyntaxError


class _ScalarMarker(sp.Function):
    """A marker around a scalar expression, resolved per run."""
    is_commutative = True
    is_real = True
    nargs = 1


class _MatrixMarker(MatrixExpr):
    """A marker around a matrix expression, resolved per run; it keeps the expression's shape."""

    def __new__(cls, X):
        return sp.Basic.__new__(cls, X)

    @property
    def shape(self):
        return self.args[0].shape


class Rate(_ScalarMarker):
    """d/dt of a scalar expression, resolved per dynamics by :func:`rate`."""


class MatrixRate(_MatrixMarker):
    """d/dt of a matrix expression, resolved per dynamics by :func:`rate`."""


class Initial(_ScalarMarker):
    """A scalar expression at the run's first saved state."""


class MatrixInitial(_MatrixMarker):
    """A matrix expression at the run's first saved state."""


E_bound = sp.Symbol("E_bound", real=True)
sigma_1, sigma_r, kappa = sp.symbols("sigma_1 sigma_r kappa", positive=True)
TIME_VARYING = (*S.PERTURBATIONS, E_bound)


def _marked(q, scalar, matrix):
    q = S.as_expr(q)
    S.shape_of(q)  # a malformed q is reported here, where the claim names it
    return matrix(q) if isinstance(q, MatrixExpr) else scalar(q)


def derivative(q):
    """Marker for d/dt q (the one-step rate on GD), resolved when the claim is checked on a run."""
    q = S.as_expr(q)
    for p in TIME_VARYING:
        if q.has(p):
            raise ValueError(f"derivative() of an expression containing {p}: pgflow does not model d{p}/dt")
    return _marked(q, Rate, MatrixRate)


def initial(q):
    """Marker for q at the run's first saved state."""
    return _marked(q, Initial, MatrixInitial)


FUNCTIONS = {
    "derivative": derivative, "initial": initial,
    **{name: fn for name, (fn, _) in S.parsing.base_functions().items()},
}
"""Functions of the claim language: name -> the callable that builds its sympy expression."""

_TABLE = {"derivative": (derivative, (1, 1)), "initial": (initial, (1, 1)), **S.parsing.base_functions()}


def vocabulary() -> dict:
    """Names of the claim language -> sympy objects (matrices, quantities, scalars)."""
    names = S.parsing.base_names()
    names.update({s.name: s for s in (E_bound, sigma_1, sigma_r, kappa)})
    return names


def parse_expression(text: str, names: dict, claim_name: str = ""):
    """Parse one expression of the claim language (no comparison) into sympy: (expression, text)."""
    return S.parsing.parse_expression(text, names, claim_name, functions=_TABLE, quoted=("derivative", "initial"))


def parse_claim(text: str, names: dict, claim_name: str = ""):
    """Parse ``lhs OP rhs`` into (lhs, op, rhs, text) with sympy scalar sides; errors point into ``text``."""
    return S.parsing.parse_comparison(text, names, _TABLE, claim_name, quoted=("derivative", "initial"))
