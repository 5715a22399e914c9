"""The claim language: names, functions and the ``derivative()``/``initial()`` markers, parsed by a
small interpreter over Python's syntax tree into sympy expressions of :mod:`pgflow.analysis.symbolic`.

Never ``eval``: a claim is a string of data, so a claim file cannot run code. See
:mod:`pgflow.analysis.bounds` for the language and ``docs/math/claims.md`` for its mathematics.
"""

from __future__ import annotations

import ast
import difflib
import math
import numbers

import sympy as sp
from sympy import MatrixExpr

from .. import symbolic as S

_AST_OPS = {ast.LtE: "<=", ast.GtE: ">=", ast.Eq: "=="}
MAX_EXPONENT = 64
"""Largest |n| of an integer exponent x**n in a claim (scalar or matrix power)."""



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
        hint = S.catalogue.renamed_hint(name) or (f" (did you mean {', '.join(close)}?)" if close else "")
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
            if ma and not (S.same_dim(a.shape[0], b.shape[0]) and S.same_dim(a.shape[1], b.shape[1])):
                self.fail(node, f"cannot add {la} and {lb}: shapes differ")
            return a + b if isinstance(op, ast.Add) else a - b
        if isinstance(op, (ast.Mult, ast.MatMult)):
            if ma and mb and not S.same_dim(a.shape[1], b.shape[0]):
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
                if not S.same_dim(*a.shape):
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
