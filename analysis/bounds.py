r"""Check claimed inequalities on trajectories: both sides on every saved state of every run.

A *claim* is one comparison between scalar expressions of the state, written as a string::

    derivative(noise_U) <= -2*lambda_min(VtV)*noise_U + 2*sqrt(noise_U)*norm(E)*fro(V)

The claim language
------------------
Python expression syntax, evaluated by a small interpreter over the syntax tree (never ``eval``:
a claim file cannot run code) into sympy expressions of :mod:`analysis.symbolic`.

* Matrices: ``U`` (m×k), ``V`` (n×k), ``Sigma`` (m×n), ``Phi``, ``Psi`` (singular vectors, m×r,
  n×r), ``Phi_perp``, ``Psi_perp`` (complements), ``Sigma_star`` (diag σ, r×r), the perturbation
  ``E`` (m×n, residual-form PGF) or ``E_U``, ``E_V`` (additive form); every quantity of
  :data:`analysis.symbolic.QUANTITIES` by name (``loss``, ``R``, ``G_U``, ``VtV``, ``imbalance``,
  ``noise_U``, ``A``, ``B``, ``J``, ``K``, …).
* Scalars: numbers, ``t``, ``eta`` (GD step / modified flow), ``sigma_1``, ``sigma_r``, ``kappa``,
  the sizes ``m``, ``n``, ``k``, ``r``, ``E_bound`` (the perturbation model's own ``bound(t, x)``),
  and the claim's parameters.
* Operators: ``+ - * / **`` (``*`` and ``@`` are matrix products), ``X.T``; an integer exponent is
  at most 64 in absolute value, and every constant sub-expression must be a finite real number
  (``1/0``, ``log(0)``, ``sqrt(-1)``, ``1e400`` are errors).
* Functions: ``norm`` (spectral), ``fro`` (Frobenius), ``trace``, ``lambda_min``, ``lambda_max``
  (of the symmetric part), ``sigma_min``, ``sigma_max``, ``sqrt``, ``abs``, ``exp``, ``log``, ``max``,
  ``min``; ``derivative(q)`` and ``initial(q)`` (q at the run's first saved state).
* Comparisons: exactly one of ``<=``, ``>=``, ``==``, between scalars. A Loewner order
  AAᵀ ⪯ 2Σ* is written ``lambda_max(A*A.T - 2*Sigma_star) <= 0``.

``derivative(q)`` is exact, through the symbolic chain rule along the run's own dynamics
(:func:`analysis.symbolic.time_derivative`), never a difference of saved states. On a gradient
descent run it is the one-step difference quotient (q(x₊) − q(x))/η with x₊ = x − η∇f(x) the
*exact* next iterate of the saved state (so it does not depend on ``record_every``): for polynomial
q from the exact η-polynomial of :func:`analysis.symbolic.gd_step` (no cancellation), otherwise by
evaluating q at x₊. The discrete claim "Δq/η ≤ b" is the Euler analogue of "dq/dt ≤ b" and tends to
it as η → 0. Spectral functions are differentiated where their singular value or eigenvalue is
simple (u₁ᵀẊv₁ for ``norm``).

A claim holds on a state when lhs ≤ rhs + tol (``<=``), lhs + tol ≥ rhs (``>=``) or
|lhs − rhs| ≤ tol (``==``); ``tol`` is itself an expression (default 0), plus ``rtol``·(|lhs| + |rhs|)
for bounds that are attained. Non-finite values count as violations.

Errors in a claim (:class:`ClaimError`) quote it and underline the offending sub-expression.
"""

from __future__ import annotations

import ast
import difflib
import math
import numbers
import textwrap
import types
from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np
import sympy as sp
from sympy import MatrixExpr

from . import symbolic as S

_AST_OPS = {ast.LtE: "<=", ast.GtE: ">=", ast.Eq: "=="}
MAX_EXPONENT = 64
"""Largest |n| of an integer exponent x**n in a claim (scalar or matrix power)."""


# ---------------------------------------------------------------------------------------------
# Markers: derivative(q) and initial(q), resolved per run
# ---------------------------------------------------------------------------------------------

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
    q = S._as_expr(q)
    S.shape_of(q)  # a malformed q is reported here, where the claim names it
    return matrix(q) if isinstance(q, MatrixExpr) else scalar(q)


def derivative(q):
    """Marker for d/dt q (the one-step rate on GD), resolved when the claim is checked on a run."""
    q = S._as_expr(q)
    for p in TIME_VARYING:
        if q.has(p):
            raise S.ShapeError(f"derivative() of an expression containing {p}: pgflow does not model d{p}/dt")
    return _marked(q, Rate, MatrixRate)


def initial(q):
    """Marker for q at the run's first saved state."""
    return _marked(q, Initial, MatrixInitial)


def _scalar_only(name, fn):
    def apply(x):
        if isinstance(x, MatrixExpr):
            raise S.ShapeError(f"{name}() takes a scalar; {x} is an {S.format_shape(x.shape)} matrix "
                               f"(use norm(), fro(), trace() or lambda_max() to make a scalar)")
        return fn(x)
    return apply


def _extremum(fn):
    def apply(*args):
        if len(args) < 2:
            raise TypeError(f"{fn.__name__.lower()}() needs at least two arguments")
        for a in args:
            if isinstance(a, MatrixExpr):
                raise S.ShapeError(f"{fn.__name__.lower()}() takes scalars; {a} is a matrix")
        return fn(*args)
    return apply


FUNCTIONS = {
    "derivative": derivative, "initial": initial,
    "norm": S.norm, "fro": S.fro, "trace": S.trace, "lambda_min": S.lambda_min, "lambda_max": S.lambda_max,
    "sigma_min": S.sigma_min, "sigma_max": S.sigma_max,
    "sqrt": _scalar_only("sqrt", sp.sqrt), "abs": _scalar_only("abs", sp.Abs), "exp": _scalar_only("exp", sp.exp),
    "log": _scalar_only("log", sp.log), "max": _extremum(sp.Max), "min": _extremum(sp.Min),
}
"""Functions of the claim language."""


def vocabulary() -> dict:
    """Names of the claim language -> sympy objects (matrices, quantities, scalars)."""
    names = {name: q.expr for name, q in S.QUANTITIES.items()}
    names.update(S.SYMBOLS)
    names.update({s.name: s for s in (*S.DIMS, E_bound, sigma_1, sigma_r, kappa)})
    return names


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------

class ClaimError(ValueError):
    """A malformed claim: the message quotes the claim and underlines the offending part.

    Attributes
    ----------
    text : str
        The claim (whitespace normalized).
    span : tuple of int or None
        (start, end) character offsets of the offending part.
    reason : str
    """

    def __init__(self, reason: str, text: str = "", span: tuple | None = None, name: str = ""):
        self.text, self.span, self.reason, self.name = text, span, reason, name
        where = f"in claim {name!r}: " if name else ""
        message = f"{where}{reason}"
        if text:
            message += f"\n    {text}"
            if span is not None:
                start, end = span
                message += "\n    " + " " * start + "^" * max(1, end - start)
        super().__init__(message)


def _span(text: str, node) -> tuple[int, int]:
    # ast offsets count UTF-8 bytes; the caret must count characters
    raw = text.encode()
    start = len(raw[:node.col_offset].decode(errors="ignore"))
    end = len(raw[:node.end_col_offset].decode(errors="ignore"))
    return start, end


class _Interpreter:
    """Evaluate a parsed claim expression into sympy, node by node, with errors tied to nodes."""

    def __init__(self, text: str, names: dict, name: str = ""):
        self.text, self.names, self.claim_name = text, names, name

    def fail(self, node, reason: str):
        raise ClaimError(reason, self.text, _span(self.text, node) if node is not None else None, self.claim_name)

    def unknown(self, node, name: str):
        close = difflib.get_close_matches(name, list(self.names) + list(FUNCTIONS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        self.fail(node, f"unknown name '{name}'{hint}; declare constants in the claim's params")

    def src(self, node) -> str:
        start, end = _span(self.text, node)
        return self.text[start:end]

    def describe(self, node, value) -> str:
        kind = f"{S.format_shape(value.shape)} matrix" if isinstance(value, MatrixExpr) else "scalar"
        return f"'{self.src(node)}' ({kind})"

    def eval(self, node):
        try:
            value = self._eval(node)
        except ClaimError:
            raise
        except (S.ShapeError, S.NotPolynomial, TypeError, ValueError, KeyError) as exc:
            self.fail(node, str(exc).strip("'\""))
        if not isinstance(value, MatrixExpr) and value.is_number:
            self.check_number(node, value)
        return value

    def check_number(self, node, value) -> None:
        """Refuse a constant that is not a finite real float (1/0, log(0), sqrt(-1), 1e400, 10**400).

        The numeric code evaluates in float64, where such a constant has no value; caught here, the
        error points at the sub-expression instead of failing later inside :func:`check`.
        """
        try:
            ok = value.is_real is not False and math.isfinite(float(value))
        except (TypeError, OverflowError):  # complex, zoo, or too large for a float
            ok = False
        if not ok:
            self.fail(node, f"'{self.src(node)}' is {value if len(str(value)) < 40 else 'huge'}, not a finite "
                            f"real number")

    def _eval(self, node):
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (numbers.Real, str)):
                self.fail(node, f"unsupported constant {node.value!r}")
            if isinstance(node.value, str):
                self.fail(node, "a string is only allowed as the quantity name in derivative(\"...\") or "
                                "initial(\"...\")")
            return sp.Float(node.value) if isinstance(node.value, float) else sp.Integer(node.value)
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return self.names[node.id]
            if node.id in FUNCTIONS:
                self.fail(node, f"{node.id} is a function: call it, e.g. {node.id}(...)")
            self.unknown(node, node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.eval(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Attribute):
            if node.attr != "T":
                self.fail(node, f"unknown attribute .{node.attr} (only .T, the transpose, is allowed)")
            value = self.eval(node.value)
            if not isinstance(value, MatrixExpr):
                self.fail(node, f"{self.describe(node.value, value)} has no transpose")
            return value.T
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Compare):
            self.fail(node, "a comparison can only appear once, at the top of the claim")
        self.fail(node, f"unsupported syntax ({type(node).__name__}); a claim uses names, numbers, + - * / ** @, "
                        f".T and function calls")

    def binop(self, node):
        a, b = self.eval(node.left), self.eval(node.right)
        la, lb = self.describe(node.left, a), self.describe(node.right, b)
        ma, mb = isinstance(a, MatrixExpr), isinstance(b, MatrixExpr)
        op = node.op
        if isinstance(op, (ast.Add, ast.Sub)):
            if ma != mb:
                self.fail(node, f"cannot add {la} and {lb}")
            if ma and not (S._same_dim(a.shape[0], b.shape[0]) and S._same_dim(a.shape[1], b.shape[1])):
                self.fail(node, f"cannot add {la} and {lb}: shapes differ")
            return a + b if isinstance(op, ast.Add) else a - b
        if isinstance(op, (ast.Mult, ast.MatMult)):
            if ma and mb and not S._same_dim(a.shape[1], b.shape[0]):
                self.fail(node, f"cannot multiply {la} by {lb}: inner sizes {a.shape[1]} and {b.shape[0]} differ")
            return a * b
        if isinstance(op, ast.Div):
            if mb:
                self.fail(node, f"cannot divide by {lb}")
            return a / b
        if isinstance(op, ast.Pow):
            if mb:
                self.fail(node, f"the exponent {lb} must be a scalar")
            if b.is_Integer and abs(b) > MAX_EXPONENT:  # sympy expands integer powers exactly: 9**9**9 never ends
                self.fail(node.right, f"the exponent {self.src(node.right)} exceeds {MAX_EXPONENT} in absolute value")
            if ma:
                if not (b.is_Integer and b >= 1):
                    self.fail(node, f"a matrix power needs a positive integer exponent, got {self.src(node.right)}")
                if not S._same_dim(*a.shape):
                    self.fail(node, f"only a square matrix has powers; {la}")
            return a ** b
        self.fail(node, f"unsupported operator {type(op).__name__}")

    def call(self, node):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            label = node.func.id if isinstance(node.func, ast.Name) else self.src(node.func)
            close = difflib.get_close_matches(label, list(FUNCTIONS), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            self.fail(node.func, f"unknown function '{label}'{hint}; known: {', '.join(FUNCTIONS)}")
        if node.keywords:
            self.fail(node, f"{node.func.id}() takes no keyword arguments")
        name = node.func.id
        quoted = [a for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if name in ("derivative", "initial") and len(node.args) == 1 and quoted:  # derivative("noise_U")
            if quoted[0].value not in self.names:
                self.unknown(quoted[0], quoted[0].value)
            args = [self.names[quoted[0].value]]
        else:
            args = [self.eval(a) for a in node.args]
        if name not in ("max", "min") and len(args) != 1:
            self.fail(node, f"{name}() takes exactly one argument, got {len(args)}")
        return FUNCTIONS[name](*args)


def _normalize(text: str) -> str:
    return " ".join(text.split())


def _syntax_tree(text: str, claim_name: str):
    """(normalized text, body of its Python expression tree); a syntax error points into the text."""
    text = _normalize(text)
    try:
        return text, ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        col = (exc.offset or 1) - 1
        raise ClaimError(f"syntax error: {exc.msg}", text, (col, col + 1), claim_name) from None


def parse_expression(text: str, names: dict, claim_name: str = ""):
    """Parse one expression of the claim language (no comparison) into sympy."""
    text, body = _syntax_tree(text, claim_name)
    return _Interpreter(text, names, claim_name).eval(body), text


def parse_claim(text: str, names: dict, claim_name: str = ""):
    """Parse ``lhs OP rhs`` into (lhs, op, rhs) sympy scalars; errors point into ``text``."""
    text, body = _syntax_tree(text, claim_name)
    interp = _Interpreter(text, names, claim_name)
    if not isinstance(body, ast.Compare):
        interp.fail(body, "a claim must be one comparison: 'lhs <= rhs', 'lhs >= rhs' or 'lhs == rhs'")
    if len(body.ops) != 1:
        interp.fail(body, "chained comparisons are not allowed: write one claim per comparison")
    if type(body.ops[0]) not in _AST_OPS:
        op_text = {ast.Lt: "<", ast.Gt: ">", ast.NotEq: "!="}.get(type(body.ops[0]), type(body.ops[0]).__name__)
        interp.fail(body, f"'{op_text}' is not allowed: use <=, >= or == (strictness cannot be checked in "
                          f"floating point)")
    sides = []
    for side, node in (("left", body.left), ("right", body.comparators[0])):
        value = interp.eval(node)
        if isinstance(value, MatrixExpr):
            interp.fail(node, f"the {side} side {interp.describe(node, value)} is not a scalar; wrap it in fro(), "
                              f"norm(), trace(), lambda_max() or lambda_min()")
        sides.append(value)
    return sides[0], _AST_OPS[type(body.ops[0])], sides[1], text


# ---------------------------------------------------------------------------------------------
# Claims
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Claim:
    """An inequality between scalar expressions of the state, checked by :func:`check`.

    Parameters
    ----------
    statement : str or sympy relational
        ``"lhs <= rhs"``, ``">="`` or ``"=="`` in the claim language (module docstring), or a sympy
        ``LessThan`` / ``GreaterThan`` / ``Equality`` built from :mod:`analysis.symbolic` and
        :func:`derivative`.
    name : str
    tol : str or float
        Allowed absolute slack, an expression of the state (default "0").
    rtol : float
        Allowed relative slack: the claim holds where it holds with tol + rtol·(|lhs| + |rhs|), for
        bounds that are attained (round-off then decides the sign).
    params : mapping of str -> float or None
        Constants the statement uses; None means "must be given before checking" (:meth:`with_params`).
    dynamics : tuple of str, optional
        The dynamics the claim is stated for ("gf", "pgf_residual", "pgf_additive", "modified",
        "gd"); :func:`check` refuses other runs. None: any.
    expect : bool
        False for a known counterexample: the claim is expected to be violated.
    description : str
        Where the claim comes from.
    quantities : mapping of str -> str
        Extra named quantities (expressions in the claim language) the statement may use.

    Raises
    ------
    ClaimError
        Unknown names, shape mismatches, non-scalar sides, unsupported syntax: the message quotes
        the statement and underlines the offending part.

    Examples
    --------
    >>> c = Claim("derivative(loss) <= 0", name="loss decreases", dynamics=("gf",))
    >>> c.op, c.lhs.func.__name__
    ('<=', 'Rate')
    """

    statement: object
    name: str = ""
    tol: str = "0"
    rtol: float = 0.0
    params: Mapping = field(default_factory=dict)
    dynamics: tuple | None = None
    expect: bool = True
    description: str = ""
    quantities: Mapping = field(default_factory=dict)

    def __post_init__(self):
        label = self.name or (self.statement if isinstance(self.statement, str) else "")
        if isinstance(self.rtol, bool) or not isinstance(self.rtol, numbers.Real) or not 0 <= self.rtol < 1:
            raise ClaimError(f"rtol must be a number in [0, 1), got {self.rtol!r}", name=label)
        if not isinstance(self.expect, bool):  # a truthy string such as "false" must not read as True
            raise ClaimError(f"expect must be true or false, got {self.expect!r}", name=label)
        if isinstance(self.tol, bool) or not isinstance(self.tol, (str, numbers.Real)):
            raise ClaimError(f"tol must be an expression string or a number, got {self.tol!r}", name=label)
        if not isinstance(self.quantities, Mapping):
            raise ClaimError(f"quantities must map names to expression strings, got {self.quantities!r}", name=label)
        for key, text in self.quantities.items():
            if not isinstance(text, str):
                raise ClaimError(f"quantity {key!r} must be an expression string, got {text!r}", name=label)
        params = dict(self.params)
        for key, value in params.items():
            if not (isinstance(key, str) and key.isidentifier()):
                raise ClaimError(f"parameter names must be identifiers, got {key!r}", name=label)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                                      or not math.isfinite(value)):
                raise ClaimError(f"parameter {key} must be a finite number or None, got {value!r}", name=label)
        object.__setattr__(self, "params", types.MappingProxyType(params))
        if self.dynamics is not None:
            dyn = (self.dynamics,) if isinstance(self.dynamics, str) else tuple(self.dynamics)
            bad = [d for d in dyn if d not in S.DYNAMICS]
            if bad:
                raise ClaimError(f"dynamics must be among {S.DYNAMICS}, got {bad}", name=label)
            object.__setattr__(self, "dynamics", dyn)
        names = vocabulary()
        for key in params:
            if key in names or key in FUNCTIONS:
                raise ClaimError(f"parameter {key!r} would shadow the built-in name {key!r}", name=label)
            names[key] = sp.Symbol(key, real=True)
        for key, text in dict(self.quantities).items():
            if key in names or key in FUNCTIONS or not key.isidentifier():
                raise ClaimError(f"quantity name {key!r} is not a new identifier", name=label)
            names[key] = parse_expression(text, names, f"{label}: quantity {key}")[0]
        object.__setattr__(self, "quantities", types.MappingProxyType(dict(self.quantities)))
        if isinstance(self.statement, str):
            lhs, op, rhs, text = parse_claim(self.statement, names, label)
        else:
            lhs, op, rhs, text = _from_relational(self.statement, names, label)
        tol_expr, _ = parse_expression(self.tol, names, f"{label}: tol") if isinstance(self.tol, str) \
            else (sp.sympify(self.tol), None)
        if isinstance(tol_expr, MatrixExpr):
            raise ClaimError(f"tol must be a scalar, got a {S.format_shape(tol_expr.shape)} matrix", self.tol,
                             name=label)
        object.__setattr__(self, "_parsed", (lhs, op, rhs, tol_expr, text))

    @property
    def lhs(self):
        return self._parsed[0]

    @property
    def op(self) -> str:
        return self._parsed[1]

    @property
    def rhs(self):
        return self._parsed[2]

    @property
    def tol_expr(self):
        return self._parsed[3]

    @property
    def text(self) -> str:
        """The statement, whitespace normalized."""
        return self._parsed[4]

    @property
    def label(self) -> str:
        return self.name or self.text

    def with_params(self, **values) -> "Claim":
        """A copy with parameter values set (only declared parameters)."""
        unknown = sorted(set(values) - set(self.params))
        if unknown:
            raise ClaimError(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not parameters of this "
                             f"claim; its parameters: {sorted(self.params) or 'none'}", name=self.label)
        return replace(self, params={**self.params, **values})


def _from_relational(rel, names: dict, label: str):
    kinds = {sp.LessThan: "<=", sp.GreaterThan: ">=", sp.Equality: "=="}
    if type(rel) not in kinds:
        raise ClaimError(f"statement must be a claim string or a sympy <=, >= or == relation, got {rel!r}", name=label)
    lhs, rhs = rel.lhs, rel.rhs
    known = set(names.values())
    for side, value in (("left", lhs), ("right", rhs)):
        try:
            shape = S.shape_of(value)
        except S.ShapeError as exc:
            raise ClaimError(f"{side} side: {exc}", str(rel), name=label) from None
        if shape is not None:
            raise ClaimError(f"the {side} side {value} is a {S.format_shape(shape)} matrix, not a scalar", str(rel),
                             name=label)
        leaves = value.atoms(sp.Symbol, sp.MatrixSymbol)
        unknown = sorted(str(s) for s in leaves if s not in known)
        if unknown:
            raise ClaimError(f"unknown symbol(s) {', '.join(unknown)} in the {side} side", str(rel), name=label)
    return lhs, kinds[type(rel)], rhs, str(rel)


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Run:
    """One trajectory with what a claim needs to evaluate on it.

    Parameters
    ----------
    problem : MatrixFactorization
        Supplies Σ and its singular vectors.
    trajectory : flows.Trajectory
    dynamics : {"gf", "pgf_residual", "pgf_additive", "modified", "gd"}
    perturbation : callable ``E(t, x)``, optional
        Required for PGF runs: an (m, n) matrix (residual form) or a flat (dim,) vector (additive
        form), e.g. a model of :mod:`flows.perturbations`; its ``bound(t, x)`` (if any) is ``E_bound``.
    step_size : float, optional
        η: required for "gd" and "modified".
    label : str
        Name in reports (default: dynamics and seed from the trajectory's provenance).
    """

    problem: object
    trajectory: object
    dynamics: str
    perturbation: object = None
    step_size: float | None = None
    label: str = ""

    def __post_init__(self):
        if self.dynamics not in S.DYNAMICS:
            raise ValueError(f"dynamics must be one of {S.DYNAMICS}, got {self.dynamics!r}")
        # Σ, its singular vectors and complements (two SVDs): checked here, reused by every claim
        object.__setattr__(self, "_problem_values", S.problem_values(self.problem))
        if tuple(map(tuple, self.trajectory.layout)) != tuple((a, tuple(b)) for a, b in self.problem.layout):
            raise ValueError(f"trajectory layout {self.trajectory.layout} does not match the problem's "
                             f"{self.problem.layout}")
        if self.dynamics.startswith("pgf") and not callable(self.perturbation):
            raise ValueError(f"a {self.dynamics} run needs its perturbation E(t, x)")
        if self.dynamics in ("gd", "modified"):
            if self.step_size is None or not self.step_size > 0:
                raise ValueError(f"a {self.dynamics} run needs its step_size η > 0, got {self.step_size!r}")
        if not self.label:
            seed = self.trajectory.meta.get("seed", self.trajectory.meta.get("init_seed"))
            object.__setattr__(self, "label", self.dynamics + ("" if seed is None else f" seed {seed}"))
        object.__setattr__(self, "_perturbation_memo", {})

    @classmethod
    def of(cls, trajectory, source, label: str = "") -> "Run":
        """A run from a trajectory and what made it: a flow object, or the problem for GD.

        GradientFlow -> "gf" (on a sensing problem: "pgf_residual" with E the sensing error
        (𝒜*𝒜 − I)(X* − UVᵀ) + 𝒜*ξ, MATH.md §2); PerturbedGradientFlow -> "pgf_<form>";
        ModifiedFlow -> "modified"; a problem with a trajectory from :func:`flows.gradient_descent`
        -> "gd" (simultaneous variant only).
        """
        from flows import GradientFlow, MatrixFactorization, ModifiedFlow, PerturbedGradientFlow, perturbations
        method = str(trajectory.meta.get("method", ""))
        problem = getattr(source, "problem", source)
        if method.startswith("gradient_descent"):
            variant = method.split("/", 1)[-1]
            if variant != "simultaneous" or type(problem) is not MatrixFactorization:
                raise ValueError(f"derivative claims on GD need simultaneous GD on a MatrixFactorization (the exact "
                                 f"step x₊ = x − η∇f is derived for that loss), got {method} on "
                                 f"{type(problem).__name__}")
            return cls(problem, trajectory, "gd", step_size=float(trajectory.meta["step_size"]), label=label)
        if isinstance(source, PerturbedGradientFlow):
            if type(problem) is not MatrixFactorization:
                raise ValueError(f"a PGF on {type(problem).__name__} is not a perturbation of the flow of "
                                 f"½‖UVᵀ − Σ‖²_F")
            return cls(problem, trajectory, f"pgf_{source.form}", perturbation=source.perturbation, label=label)
        if isinstance(source, ModifiedFlow):
            if source.variant != "simultaneous" or type(problem) is not MatrixFactorization:
                raise ValueError("only the modified flow of simultaneous GD on a MatrixFactorization is modelled")
            return cls(problem, trajectory, "modified", step_size=source.step_size, label=label)
        if isinstance(source, GradientFlow):
            if type(problem) is MatrixFactorization:
                return cls(problem, trajectory, "gf", label=label)
            if hasattr(problem, "operator"):
                noise = bool(np.any(problem.noise_vector))
                return cls(problem, trajectory, "pgf_residual", perturbation=perturbations.SensingError(problem, noise),
                           label=label)
        raise TypeError(f"cannot tell the dynamics of a trajectory made by {type(source).__name__}; build a Run "
                        f"with dynamics= explicitly")

    def values(self, needed: set, params: Mapping) -> dict:
        """Numeric values of the leaves ``needed`` on every saved state (time-first)."""
        traj, dyn = self.trajectory, self.dynamics
        env = {**self._problem_values, "U": traj.U, "V": traj.V, "t": np.asarray(traj.t, dtype=float)}
        sigma = np.asarray(self.problem.target.sigma)
        env.update(sigma_1=float(sigma[0]), sigma_r=float(sigma[-1]), kappa=float(sigma[0] / sigma[-1]))
        if "eta" in needed:
            if self.step_size is None:
                raise ValueError(f"eta is not defined on run {self.label!r} (dynamics {dyn!r}, no step size)")
            env["eta"] = float(self.step_size)
        if {"E", "E_U", "E_V", "E_bound"} & needed:
            env.update(self._perturbation_values(needed))
        for key in needed:
            if key not in env and key in params:
                if params[key] is None:
                    raise ValueError(f"parameter {key} has no value: set it with Claim.with_params({key}=...) or "
                                     f"check(..., params={{'{key}': ...}})")
                env[key] = float(params[key])
        return env

    def _perturbation_values(self, needed: set) -> dict:
        traj, dyn, p = self.trajectory, self.dynamics, self.problem
        m_, n_ = p.target.shape
        k_ = p.width
        out = {}
        residual_names, additive_names = {"E"} & needed, {"E_U", "E_V"} & needed
        if dyn == "gf":  # GF is the PGF with E ≡ 0
            out.update(E=np.zeros((m_, n_)), E_U=np.zeros((m_, k_)), E_V=np.zeros((p.target.n, k_)), E_bound=0.0)
            return out
        if (residual_names and dyn != "pgf_residual") or (additive_names and dyn != "pgf_additive") \
                or ("E_bound" in needed and not dyn.startswith("pgf")):
            name = sorted(residual_names | additive_names | ({"E_bound"} & needed))[0]
            raise ValueError(f"{name} is not defined on run {self.label!r} (dynamics {dyn!r})")
        memo = self._perturbation_memo  # E(t, x) on every state is the costly part: once per run
        if "E" not in memo:
            memo["E"] = np.stack([np.asarray(self.perturbation(ti, xi), dtype=float)
                                  for ti, xi in zip(traj.t, traj.x)])
        if dyn == "pgf_residual":
            out["E"] = memo["E"]
        else:
            out["E_U"], out["E_V"] = p.unpack(memo["E"])
        if "E_bound" in needed:
            if "E_bound" not in memo:
                bound = getattr(self.perturbation, "bound", None)
                memo["E_bound"] = np.array([float(bound(ti, xi)) if bound else np.nan
                                            for ti, xi in zip(traj.t, traj.x)])
            out["E_bound"] = memo["E_bound"]
        return out


# ---------------------------------------------------------------------------------------------
# Resolving derivative() per dynamics
# ---------------------------------------------------------------------------------------------

def _initial_leaves(expr, names: dict) -> dict:
    """Each initial(q) in ``expr`` -> a constant leaf standing for it.

    ``names`` maps initial(q) nodes to leaf names and is filled in, so one cache of names keeps a
    node's leaf the same across the sides of a claim.
    """
    leaves = {}
    for node in {n for n in sp.preorder_traversal(expr) if isinstance(n, (Initial, MatrixInitial))}:
        name = names.setdefault(node, f"initial__{len(names)}")
        inner = node.args[0]
        leaves[node] = sp.MatrixSymbol(name, *inner.shape) if isinstance(inner, MatrixExpr) else sp.Symbol(name)
    return leaves


def rate(q, dynamics: str):
    """The expression derivative(q) stands for on a run of ``dynamics``.

    Flows: :func:`analysis.symbolic.time_derivative`. GD: the one-step difference quotient
    (q(x₊) − q(x))/η, from :func:`analysis.symbolic.gd_step` when q is polynomial, else by
    evaluating q at x₊ = (U − ηG_U, V − ηG_V). ``initial(...)`` inside q is a constant.
    """
    # initial(q) is a number fixed by the first state; differentiating or shifting the U, V inside it
    # would treat it as a function of the current state, so it becomes an opaque leaf meanwhile.
    frozen = _initial_leaves(q, {})
    q = q.xreplace(frozen)
    if dynamics != "gd":
        out = S.time_derivative(q, dynamics)
    else:
        try:
            out = S.gd_step(q) / S.eta
        except S.NotPolynomial:
            G_U, G_V = S.QUANTITIES["G_U"].expr, S.QUANTITIES["G_V"].expr
            out = (q.xreplace({S.U: S.U - S.eta * G_U, S.V: S.V - S.eta * G_V, S.t: S.t + S.eta}) - q) / S.eta
    return out.xreplace({leaf: node for node, leaf in frozen.items()})


def _resolve(e, dynamics: str):
    if isinstance(e, (Rate, MatrixRate)):
        return rate(_resolve(e.args[0], dynamics), dynamics)
    if not e.args or isinstance(e, (sp.MatrixSymbol, sp.Symbol)) or not e.has(Rate, MatrixRate):
        return e
    return e.func(*[_resolve(a, dynamics) for a in e.args])


def _evaluate(expr, run: Run, params: Mapping, cache: dict) -> np.ndarray:
    """``expr`` (derivatives resolved) on every saved state of ``run``: shape (T,) or (T, rows, cols).

    ``initial(q)`` becomes a constant leaf holding q at the first saved state.
    """
    leaves = _initial_leaves(expr, cache.setdefault("initial names", {}))
    constants = {leaf.name: _evaluate(node.args[0], run, params, cache)[0] for node, leaf in leaves.items()}
    expr = expr.xreplace(leaves)
    fn = S.compile_expr(expr)
    needed = frozenset(fn.leaves) - set(constants) - {d.name for d in S.DIMS}
    key = ("values", run, needed)
    if key not in cache:
        cache[key] = run.values(set(needed), params)
    env = cache[key]
    missing = needed - set(env)
    if missing:
        raise ValueError(f"no value for {', '.join(sorted(missing))} on run {run.label!r}")
    values = {**{name: env[name] for name in needed}, **{d.name: env[d.name] for d in S.DIMS}, **constants}
    out = fn(**{name: v for name, v in values.items() if name in fn.leaves or name in {d.name for d in S.DIMS}})
    T = len(run.trajectory.t)
    return np.broadcast_to(out, (T,) + out.shape[out.ndim - (0 if fn.shape is None else 2):])


# ---------------------------------------------------------------------------------------------
# Checking and reporting
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Violation:
    """Where a claim first fails: run index and label, saved-state index, time, both sides."""

    run: int
    label: str
    index: int
    time: float
    lhs: float
    rhs: float


@dataclass(frozen=True, eq=False)
class Series:
    """Both sides of a claim on one run, time-first arrays of shape (T,)."""

    label: str
    dynamics: str
    t: np.ndarray
    lhs: np.ndarray
    rhs: np.ndarray
    tol: np.ndarray
    slack: np.ndarray


@dataclass(frozen=True, eq=False)
class Report:
    """The outcome of :func:`check`.

    Attributes
    ----------
    claim : Claim
    holds : bool
        Every side finite and slack ≥ 0 on every saved state of every run.
    min_slack : float
        Smallest slack: rhs + tol − lhs (``<=``), lhs + tol − rhs (``>=``), tol − |lhs − rhs| (``==``).
    worst_ratio : float
        How much of the bound is used, at the tightest state: the largest lo/hi with the claim read
        as lo ≤ hi without its tolerance (``==`` reads |lhs − rhs| ≤ tol). hi > 0: lo/hi;
        hi < 0: hi/lo if lo < 0, else ∞; undefined where hi = 0 (NaN if everywhere). ≤ 1 where the
        claim holds exactly; 1 means the bound is attained.
    first_violation : Violation or None
        The earliest violating saved state over all runs (ties: the lowest run index).
    n_states : int
    series : tuple of Series
        Per run, for :meth:`plot`.
    """

    claim: Claim
    holds: bool
    min_slack: float
    worst_ratio: float
    first_violation: Violation | None
    n_states: int
    series: tuple

    @property
    def as_expected(self) -> bool:
        return self.holds == self.claim.expect

    def summary(self) -> str:
        """One line: the verdict and the key numbers."""
        verdict = "holds" if self.holds else "VIOLATED"
        text = (f"{self.claim.label}: {verdict} on {len(self.series)} run(s), {self.n_states} states; "
                f"min slack {self.min_slack:.3g}, worst ratio {self.worst_ratio:.3g}")
        if self.first_violation is not None:
            v = self.first_violation
            text += f"; first violation at t = {v.time:.6g} on {v.label} (lhs {v.lhs:.6g}, rhs {v.rhs:.6g})"
        return text

    def plot(self, max_runs: int = 20):
        """Both sides over time (top) and the slack (bottom, symlog), one colour per dynamics.

        Returns
        -------
        matplotlib.figure.Figure
            Made without pyplot, so it works under any backend (Agg included) and is not kept alive
            by a global figure manager.
        """
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 6), layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True)
        colours = {d: f"C{i}" for i, d in enumerate(S.DYNAMICS)}
        # the tolerance moves the bound the way the claim allows: up for <=, down for >=
        sign, bound_label = {"<=": (1.0, "rhs + tol"), ">=": (-1.0, "rhs − tol"), "==": (0.0, "rhs")}[self.claim.op]
        seen = set()
        for s in self.series[:max_runs]:
            c = colours[s.dynamics]
            first = s.dynamics not in seen
            seen.add(s.dynamics)
            top.plot(s.t, s.lhs, "-", color=c, lw=1, alpha=0.8, label=f"lhs ({s.dynamics})" if first else None)
            top.plot(s.t, s.rhs + sign * s.tol, "--", color=c, lw=1, alpha=0.8, label=bound_label if first else None)
            bottom.plot(s.t, s.slack, color=c, lw=1, alpha=0.8)
        if self.first_violation is not None:
            v = self.first_violation
            top.plot([v.time], [v.lhs], "rx", ms=10, mew=2, label=f"first violation ({v.label})")
            bottom.plot([v.time], [self.series[v.run].slack[v.index]], "rx", ms=10, mew=2)
        bottom.axhline(0.0, color="k", lw=0.8)
        bottom.set_yscale("symlog", linthresh=max(1e-12, 1e-6 * max(1e-300, _max_abs(self.series, "slack"))))
        statement = textwrap.fill(self.claim.text, 100)
        top.set_title(f"{self.claim.name}\n{statement}" if self.claim.name else statement, fontsize=9)
        top.set_ylabel("both sides")
        bottom.set(xlabel="time t (GD: kη)", ylabel="slack (≥ 0: holds)")
        top.legend(fontsize=7, loc="best")
        return fig


def _max_abs(series, attr) -> float:
    values = [np.nanmax(np.abs(getattr(s, attr))) for s in series if np.any(np.isfinite(getattr(s, attr)))]
    return float(max(values)) if values else 1.0


def _slack_and_ratio(op, lhs, rhs, tol):
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = {"<=": (lhs, rhs), ">=": (rhs, lhs), "==": (np.abs(lhs - rhs), tol)}[op]
        slack = (hi - lo) + (tol if op != "==" else 0.0)
        ratio = np.where(hi > 0, lo / hi, np.where(hi < 0, np.where(lo < 0, hi / lo, np.inf), np.nan))
    slack = np.where(np.isfinite(lhs) & np.isfinite(rhs) & np.isfinite(tol), slack, -np.inf)
    return slack, ratio


def _as_runs(runs) -> list:
    runs = [runs] if isinstance(runs, Run) else list(runs)
    if not runs:
        raise ValueError("runs must hold at least one Run")
    for i, r in enumerate(runs):
        if not isinstance(r, Run):
            raise TypeError(f"runs[{i}] must be a Run (see Run.of), got {type(r).__name__}")
    return runs


def check(claim, runs, *, params: Mapping | None = None) -> Report:
    """Evaluate a claim on every saved state of every run.

    Parameters
    ----------
    claim : Claim or str
    runs : Run or sequence of Run
        E.g. an ensemble over seeds, mixing dynamics (each must be among ``claim.dynamics``).
    params : mapping, optional
        Values for the claim's parameters (override ``claim.params``).

    Returns
    -------
    Report

    Examples
    --------
    >>> from flows import MatrixFactorization, GradientFlow, init, integrate
    >>> p = MatrixFactorization.random(m=5, n=4, rank=2, width=2, seed=0)
    >>> flow = GradientFlow(p)
    >>> traj = integrate(flow, init.gaussian(p, 0.1, seed=1), 5.0, t_eval=np.linspace(0, 5, 11))
    >>> check("derivative(loss) <= 0", Run.of(traj, flow)).holds
    True
    >>> check(Claim("derivative(loss) == -grad_sq", rtol=1e-10), Run.of(traj, flow)).holds
    True
    >>> check("derivative(loss) >= 0", Run.of(traj, flow)).first_violation.time
    0.0
    """
    claim = claim if isinstance(claim, Claim) else Claim(claim)
    runs = _as_runs(runs)
    values = dict(claim.params)
    if params:
        values.update(claim.with_params(**params).params)
    if claim.dynamics is not None:
        for i, run in enumerate(runs):
            if run.dynamics not in claim.dynamics:
                raise ValueError(f"claim {claim.label!r} is stated for {claim.dynamics}; run {i} ({run.label!r}) "
                                 f"is {run.dynamics!r}")
    series, cache = [], {}
    resolved: dict = {}
    for run in runs:
        if run.dynamics not in resolved:
            try:
                sides = (claim.lhs, claim.rhs, claim.tol_expr)
                resolved[run.dynamics] = tuple(_resolve(e, run.dynamics) for e in sides)
            except (ValueError, TypeError) as exc:
                raise ClaimError(f"cannot resolve the claim on {run.dynamics} runs: {exc}", claim.text,
                                 name=claim.label) from None
        lhs, rhs, tol = (np.array(_evaluate(e, run, values, cache), dtype=float) for e in resolved[run.dynamics])
        tol = tol + claim.rtol * (np.abs(lhs) + np.abs(rhs))
        slack, _ = _slack_and_ratio(claim.op, lhs, rhs, tol)
        series.append(Series(run.label, run.dynamics, np.asarray(run.trajectory.t, dtype=float), lhs, rhs, tol, slack))
    return _report(claim, series)


def _report(claim: Claim, series: list) -> Report:
    first, min_slack, worst = None, np.inf, -np.inf
    for i, s in enumerate(series):
        _, ratio = _slack_and_ratio(claim.op, s.lhs, s.rhs, s.tol)
        min_slack = min(min_slack, float(np.min(s.slack)))
        if np.any(np.isfinite(ratio) | np.isinf(ratio)):
            worst = max(worst, float(np.nanmax(np.where(np.isnan(ratio), -np.inf, ratio))))
        bad = np.flatnonzero(~(s.slack >= 0))
        if bad.size and (first is None or s.t[bad[0]] < first.time):
            j = int(bad[0])
            first = Violation(i, s.label, j, float(s.t[j]), float(s.lhs[j]), float(s.rhs[j]))
    worst = float("nan") if worst == -np.inf else worst
    return Report(claim, first is None, min_slack, worst, first, sum(len(s.t) for s in series), tuple(series))


def check_all(claims, runs, *, params: Mapping | None = None) -> list[Report]:
    """:func:`check` for each claim, each on the runs whose dynamics it is stated for.

    Parameters
    ----------
    claims : sequence of Claim
    runs : sequence of Run
    params : mapping, optional
        Shared values for parameters (a claim file's ``[params]``): they fill in the parameters a
        claim declares without a value; a value the claim sets itself wins.
    """
    runs = _as_runs(runs)
    reports = []
    for claim in claims:
        mine = [r for r in runs if claim.dynamics is None or r.dynamics in claim.dynamics]
        if not mine:
            raise ValueError(f"no run has the dynamics {claim.dynamics} that claim {claim.label!r} is stated for")
        unset = {k: v for k, v in (params or {}).items() if k in claim.params and claim.params[k] is None}
        reports.append(check(claim, mine, params=unset))
    return reports


def table(reports) -> str:
    """A plain-text table of reports: one row per claim."""
    header = ("claim", "dynamics", "runs", "states", "holds", "expected", "min slack", "worst ratio", "first violation")
    rows = []
    for rep in reports:
        v = rep.first_violation
        where = "-" if v is None else f"t={v.time:.4g} ({v.label})"
        dyn = ",".join(sorted({s.dynamics for s in rep.series}))
        rows.append((rep.claim.label, dyn, str(len(rep.series)), str(rep.n_states), "yes" if rep.holds else "NO",
                     "yes" if rep.as_expected else "NO", f"{rep.min_slack:.3g}", f"{rep.worst_ratio:.3g}", where))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)
