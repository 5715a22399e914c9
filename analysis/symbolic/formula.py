r"""A loss written as a formula: reading it safely, checking it, and deriving its derivatives.

A formula is a scalar expression in the factors ``U`` (m×k) and ``V`` (n×k), the target ``Sigma``
(m×n) and its pieces (``Phi``, ``Psi``, ``Sigma_star``, ``Phi_perp``, ``Psi_perp``), the sizes
``m``, ``n``, ``k``, ``r``, the catalogue quantities (``imbalance``, ``UtU``, ...), scalar
parameters named by the caller (``lam``, ``mu``, ``λ``, ...) and, with a measurement operator, ``A(X)``
(𝒜(X), a p×1 column), ``A_adjoint(z)`` and the measurements ``y`` (p×1). Strings are read by the safe
parser of :mod:`.parsing` (Python's syntax tree, interpreted node by node; nothing is evaluated).

:func:`read_formula` returns a :class:`Formula`: the sympy loss with its parameters, or a
:class:`FormulaError` naming what is wrong. Its derivatives come from the package's own calculus:
the gradient (:func:`.calculus.gradient_of`), the Hessian-vector product D∇f[Δ] and the third
derivative D(D∇f[Δ])[Β] (:func:`.calculus.directional`), each derived once per formula.
"""

from __future__ import annotations

import ast
import difflib
import functools
import math
import numbers
from dataclasses import dataclass

import sympy as sp
from sympy import MatrixExpr, MatrixSymbol

from ...flows.base import ProblemError
from .calculus import directional, gradient_of
from .catalogue import QUANTITIES
from .parsing import (ClaimError, ClaimShapeError, ClaimSyntaxError, Interpreter, _interpret, _span, base_functions,
                      base_names, syntax_tree)
from .sensing import A, A_adjoint, p, uses_operator, y
from .spectral import FroNorm
from .vocabulary import DIMS, PERTURBATIONS, STATE, TARGET, NotPolynomial, ShapeError, U, V, format_shape, shape_of


class FormulaError(ClaimError, ProblemError):
    """A formula that cannot be a loss: malformed, an unknown name, a parameter without a value (or a
    value without a parameter), a non-scalar, a formula without U or V, one with no symbolic
    gradient. The message names the symbol and, for a string, underlines it."""


class FormulaSyntaxError(FormulaError, ClaimSyntaxError):
    """Text that is not an expression of the language (never evaluated)."""


class FormulaShapeError(FormulaError, ClaimShapeError):
    """Matrix shapes that do not conform; the message names the subexpression."""


MATRICES = {s.name: s for s in STATE + TARGET + (y,)}
"""The matrices a formula may use."""

SIZES = {d.name: d for d in DIMS + (p,)}

_REFUSED = {**{e.name: "a perturbation of the perturbed flow, not part of a loss" for e in PERTURBATIONS},
            "eta": "the GD step size, which a loss does not depend on", "t": "time, which a loss does not depend on"}


def _functions(operator: bool) -> dict:
    table = dict(base_functions())
    if operator:
        table.update({"A": (A, (1, 1)), "A_adjoint": (A_adjoint, (1, 1))})
    return table


def _known(params, operator: bool) -> str:
    matrices = [name for name in MATRICES if operator or name != "y"]
    sizes = [name for name in SIZES if operator or name != "p"]
    text = f"matrices {', '.join(matrices)}; sizes {', '.join(sizes)}"
    if operator:
        text += "; the operator A(X) and its adjoint A_adjoint(z)"
    text += f"; parameters {', '.join(params) if params else '(none given)'}; the catalogue quantities"
    return text


class _FormulaInterpreter(Interpreter):
    """The safe parser's interpreter with errors worded for a loss (:class:`FormulaError` subclasses)."""

    def __init__(self, text: str, names: dict, functions: dict, params, operator: bool):
        super().__init__(text, names, functions)
        self.params, self.operator = tuple(params), operator

    def fail(self, node, reason: str, syntax: bool = False, shape: bool = False):
        cls = FormulaSyntaxError if syntax else FormulaShapeError if shape else FormulaError
        raise cls(reason, self.text, _span(self.text, node) if node is not None else None)

    def unknown(self, node, name: str):
        if name in _REFUSED:
            self.fail(node, f"'{name}' is {_REFUSED[name]}")
        if name in ("y", "p") and not self.operator:
            self.fail(node, f"'{name}' belongs to sensing: pass operator= (and measurements=) to use it")
        close = difflib.get_close_matches(name, list(self.names) + list(self.functions), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        self.fail(node, f"unknown symbol '{name}'{hint}; if it is a parameter, give its value in "
                        f"params={{'{name}': ...}}. Known: {_known(self.params, self.operator)}")

    def call(self, node):
        if isinstance(node.func, ast.Name) and node.func.id in ("A", "A_adjoint") and not self.operator:
            self.fail(node.func, f"{node.func.id}() is the measurement operator: pass operator= to use it")
        return super().call(node)


@dataclass(frozen=True)
class Formula:
    """A checked loss.

    Attributes
    ----------
    text : str
        The formula as written (normalized whitespace), or sympy's rendering of an expression.
    expr : sympy expression
        The scalar loss, with ``fro(X)`` written as √tr(XᵀX) (so that it has a symbolic gradient).
    params : tuple of str
        The parameters' names, sorted.
    operator : bool
        Whether the loss applies the measurement operator (then ``y`` and p may appear).
    """

    text: str
    expr: sp.Basic
    params: tuple
    operator: bool

    def gradient(self) -> tuple:
        """(∇_U f, ∇_V f) as matrix expressions."""
        return _gradient(self.expr)

    def hvp(self) -> tuple:
        """(H_U, H_V) = D∇f[Δ] with Δ = (dU, dV) (:data:`DIRECTIONS`)."""
        return _hvp(self.expr)

    def third(self) -> tuple:
        """D(D∇f[Δ])[Β] with Δ = (dU, dV), Β = (bU, bV): ∇³f[Δ, Β]."""
        return _third(self.expr)


dU, dV = MatrixSymbol("dU", *U.shape), MatrixSymbol("dV", *V.shape)
bU, bV = MatrixSymbol("bU", *U.shape), MatrixSymbol("bV", *V.shape)
DIRECTIONS = (dU, dV, bU, bV)
"""The directions of the Hessian-vector product (dU, dV) and of the third derivative (bU, bV)."""


def _no_gradient(expr, exc) -> FormulaError:
    return FormulaError(f"the loss {expr} has no symbolic gradient: {exc}. Spectral functions (norm, sigma_min, "
                        f"lambda_min, nuclear_norm, ...), abs, max and min only have one-sided derivatives; "
                        f"write the loss with traces, fro(), sums, products, powers, sqrt, exp and log")


@functools.lru_cache(maxsize=64)
def _gradient(expr) -> tuple:
    try:
        return gradient_of(expr, U), gradient_of(expr, V)
    except (NotPolynomial, TypeError) as exc:
        raise _no_gradient(expr, exc) from None


# the derivatives of the gradient are built flat (canonical=False): they are compiled, not read, and
# sympy's canonicalization of every partial sum costs seconds on the third derivative of a quartic

@functools.lru_cache(maxsize=64)
def _hvp(expr) -> tuple:
    return tuple(directional(G, {U: dU, V: dV}, canonical=False) for G in _gradient(expr))


@functools.lru_cache(maxsize=64)
def _third(expr) -> tuple:
    return tuple(directional(H, {U: bU, V: bV}, canonical=False) for H in _hvp(expr))


def _frobenius_as_traces(e):
    """``fro(X)**(2j)`` as tr(XᵀX)^j and any other ``fro(X)`` as √tr(XᵀX): a trace has a symbolic
    gradient, the Frobenius norm only a one-sided rate (at X = 0)."""
    if not e.args or isinstance(e, (MatrixSymbol, sp.Symbol)):
        return e
    if isinstance(e, sp.Pow) and isinstance(e.base, FroNorm) and e.exp.is_Integer and e.exp % 2 == 0:
        X = _frobenius_as_traces(e.base.args[0])
        return sp.Trace(X.T * X) ** (e.exp // 2)
    if isinstance(e, FroNorm):
        X = _frobenius_as_traces(e.args[0])
        return sp.sqrt(sp.Trace(X.T * X))
    args = [_frobenius_as_traces(a) for a in e.args]
    return e if all(a is b for a, b in zip(args, e.args)) else e.func(*args)


def _check_params(params) -> dict:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of name -> number, got {type(params).__name__}")
    out = {}
    for name, value in params.items():
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise FormulaError(f"parameter names must be identifiers such as 'lam', got {name!r}")
        if name in MATRICES or name in SIZES or name in _REFUSED or name in ("A", "A_adjoint"):
            raise FormulaError(f"parameter '{name}' is already a name of the vocabulary; call it something else")
        if name in QUANTITIES:
            raise FormulaError(f"parameter '{name}' is the name of the catalogue quantity {name} "
                               f"({QUANTITIES[name].description}); call it something else")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            raise FormulaError(f"params['{name}'] must be a finite real number, got {value!r}")
        out[name] = float(value)
    return out


def read_formula(loss, params=None, *, operator: bool = False) -> tuple[Formula, dict]:
    """Read and check a loss.

    Parameters
    ----------
    loss : str or sympy expression
        E.g. ``"fro(U*V.T - Sigma)**2/2 + lam/8*fro(U.T*U - V.T*V)**2"``.
    params : dict, optional
        Parameter name -> value, one for every name of the formula outside the vocabulary.
    operator : bool
        Whether a measurement operator is given (``A``, ``A_adjoint``, ``y`` and p are then known).

    Returns
    -------
    (Formula, dict of parameter name -> float)

    Raises
    ------
    FormulaError
        Naming the offending symbol or subexpression (:class:`FormulaSyntaxError`,
        :class:`FormulaShapeError` for syntax and shapes).

    Examples
    --------
    >>> formula, values = read_formula("fro(U*V.T - Sigma)**2/2 + lam/2*(fro(U)**2 + fro(V)**2)", {"lam": 0.1})
    >>> formula.params, values
    (('lam',), {'lam': 0.1})
    """
    values = _check_params(params)
    if isinstance(loss, str):
        expr, text = _parse(loss, values, operator)
    elif isinstance(loss, sp.Basic):
        expr, text = loss, str(loss)
        _check_leaves(expr, values, operator)
        # one symbol per parameter name, as the parser makes them (and the claim language: lam in a
        # claim about this problem's runs is the same leaf)
        expr = expr.xreplace({s: sp.Symbol(s.name, real=True) for s in expr.free_symbols
                              if isinstance(s, sp.Symbol) and s.name in values})
        try:
            shape_of(expr)
        except ShapeError as exc:
            raise FormulaShapeError(str(exc).strip("'\""), text) from None
    else:
        raise TypeError(f"loss must be a formula string or a sympy expression, got {type(loss).__name__}")
    if isinstance(expr, MatrixExpr):
        raise FormulaError(f"the loss must be a scalar; it is an {format_shape(expr.shape)} matrix (a loss of a "
                           f"matrix X is e.g. fro(X)**2/2 or trace(X))", text)
    if not expr.has(U, V):
        raise FormulaError("the loss does not involve the factors U or V, so it has no gradient to follow", text)
    unused = sorted(set(values) - {s.name for s in expr.free_symbols})
    if unused:
        raise FormulaError(f"params gives a value for {', '.join(map(repr, unused))}, which the loss does not "
                           f"mention", text)
    uses = uses_operator(expr) or expr.has(y)
    if operator and not uses:
        raise FormulaError("an operator was given but the loss does not apply it: write A(X) (and y) in the loss",
                           text)
    formula = Formula(text, _frobenius_as_traces(expr), tuple(sorted(values)), uses)
    formula.gradient()  # a loss without a symbolic gradient is refused here, not at its first use
    return formula, values


def _parse(text: str, values: dict, operator: bool):
    names = {name: value for name, value in base_names().items() if name not in _REFUSED}
    if not operator:
        names = {name: value for name, value in names.items() if name not in ("y", "p")}
    else:
        names.update(y=y, p=p)
    names.update({name: sp.Symbol(name, real=True) for name in values})
    try:
        normalized, body = syntax_tree(text)
        interp = _FormulaInterpreter(normalized, names, _functions(operator), sorted(values), operator)
        return _interpret(interp, body), normalized
    except ClaimError as exc:
        if isinstance(exc, FormulaError):
            raise
        # syntax_tree and the recursion guard raise the parser's own errors: word them for a loss
        cls = FormulaSyntaxError if isinstance(exc, ClaimSyntaxError) else FormulaError
        raise cls(exc.reason, exc.text, exc.span) from None


def _check_leaves(expr, values: dict, operator: bool) -> None:
    """The leaves of a sympy loss: vocabulary matrices, sizes and the parameters given, nothing else."""
    for M in sorted(expr.atoms(MatrixSymbol), key=str):
        if M.name in _REFUSED:
            raise FormulaError(f"'{M.name}' is {_REFUSED[M.name]}", str(expr))
        if MATRICES.get(M.name) != M or (M.name == "y" and not operator):
            raise FormulaError(f"unknown matrix '{M.name}' of shape {format_shape(M.shape)}; known: "
                               f"{_known(sorted(values), operator)}", str(expr))
    if uses_operator(expr) and not operator:
        raise FormulaError("the loss applies the measurement operator A: pass operator=", str(expr))
    for s in sorted(expr.free_symbols - set(expr.atoms(MatrixSymbol)), key=str):
        if s.name in _REFUSED:
            raise FormulaError(f"'{s.name}' is {_REFUSED[s.name]}", str(expr))
        if s.name in SIZES or s.name in values:
            continue
        raise FormulaError(f"the parameter '{s.name}' has no value: give it in params={{'{s.name}': ...}}",
                           str(expr))


__all__ = ["DIRECTIONS", "Formula", "FormulaError", "FormulaShapeError", "FormulaSyntaxError", "read_formula"]
