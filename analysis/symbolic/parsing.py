"""The one parser of expression strings: a small interpreter over Python's syntax tree.

Every public function of :mod:`pgflow.analysis.symbolic` that accepts an expression as a string
(``compile_expr``, ``explicit``, ``vanishes``, ``shape_of``, ``directional``, ``Componentwise``,
``verify``, ...) and the claim language of :mod:`pgflow.analysis.bounds` read it here. Nothing is
passed to ``eval``, ``exec`` or sympy's string parser (which is ``eval``): the text is parsed by
:func:`ast.parse` into a tree of data, and the interpreter below builds sympy objects node by node
from a fixed vocabulary of names and functions. Attributes other than ``.T``, subscripts, lambdas,
comprehensions, names that start with an underscore (dunders) and calls of anything but the
language's functions are :class:`ClaimSyntaxError`, with the offending part underlined.

Matrix names carry their shapes (``U`` is m×k, ``V`` is n×k, ...), so ``"U*V.T"`` is the m×n matrix
product and ``"U*V"`` is a shape error, not a product of two scalars.
"""

from __future__ import annotations

import ast
import difflib
import math
import numbers

import sympy as sp
from sympy import MatrixExpr

from .vocabulary import DIMS, SYMBOLS, NotPolynomial, ShapeError, format_shape, same_dim

MAX_EXPONENT = 64
"""Largest |n| of an integer exponent x**n (scalar or matrix power): sympy expands integer powers
exactly, so 9**9**9 would never finish."""

MAX_LENGTH = 20_000
"""Longest expression string accepted (characters)."""

_AST_OPS = {ast.LtE: "<=", ast.GtE: ">=", ast.Eq: "=="}


class ClaimError(ValueError):
    """A malformed expression or claim: the message quotes it and underlines the offending part.

    Attributes
    ----------
    text : str
        The expression (whitespace normalized).
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


class ClaimSyntaxError(ClaimError):
    """Text that is not an expression of the language (an attribute other than ``.T``, a subscript,
    lambda, import, dunder name, unknown function, ...): never evaluated; ``span`` names the position."""


class ClaimShapeError(ClaimError, ShapeError):
    """Matrix shapes that do not fit (a product, sum, power or function argument): both a
    :class:`ClaimError` pointing into the text and a :class:`~.vocabulary.ShapeError`."""


def _span(text: str, node) -> tuple[int, int]:
    # ast offsets count UTF-8 bytes; the caret must count characters
    raw = text.encode()
    start = len(raw[:node.col_offset].decode(errors="ignore"))
    end = len(raw[:node.end_col_offset].decode(errors="ignore"))
    return start, end


def _scalar_only(name, fn):
    def apply(x):
        if isinstance(x, MatrixExpr):
            raise ShapeError(f"{name}() takes a scalar; {x} is an {format_shape(x.shape)} matrix "
                             f"(use norm(), fro(), trace() or lambda_max() to make a scalar)")
        return fn(x)
    return apply


def _extremum(fn):
    def apply(*args):
        if len(args) < 2:
            raise TypeError(f"{fn.__name__.lower()}() needs at least two arguments")
        for a in args:
            if isinstance(a, MatrixExpr):
                raise ShapeError(f"{fn.__name__.lower()}() takes scalars; {a} is a matrix")
        return fn(*args)
    return apply


def base_functions() -> dict:
    """The functions every expression may call: name -> (callable, (min args, max args or None))."""
    from . import spectral as sf  # spectral imports vocabulary only; imported here to keep one table

    return {
        "norm": (sf.norm, (1, 1)), "fro": (sf.fro, (1, 1)), "trace": (_trace, (1, 1)),
        "lambda_min": (sf.lambda_min, (1, 1)), "lambda_max": (sf.lambda_max, (1, 1)),
        "sigma_min": (sf.sigma_min, (1, 1)), "sigma_max": (sf.sigma_max, (1, 1)),
        "nuclear_norm": (sf.nuclear_norm, (1, 1)), "top_sum": (sf.top_sum, (2, 2)),
        "sqrt": (_scalar_only("sqrt", sp.sqrt), (1, 1)), "abs": (_scalar_only("abs", sp.Abs), (1, 1)),
        "exp": (_scalar_only("exp", sp.exp), (1, 1)), "log": (_scalar_only("log", sp.log), (1, 1)),
        "max": (_extremum(sp.Max), (2, None)), "min": (_extremum(sp.Min), (2, None)),
    }


def _trace(X):
    from .vocabulary import trace
    return trace(X)


def base_names() -> dict:
    """Names every expression may use: the matrices and scalars of :data:`SYMBOLS`, the sizes, and the
    catalogue quantities (loss, G_U, imbalance, ...)."""
    from .catalogue import QUANTITIES

    names = {name: q.expr for name, q in QUANTITIES.items()}
    names.update(SYMBOLS)
    names.update({d.name: d for d in DIMS})
    return names


class Interpreter:
    """Build sympy from a parsed expression, node by node, with errors tied to nodes.

    Parameters
    ----------
    text : str
        The (normalized) expression, for error messages.
    names : dict
        Name -> sympy object.
    functions : dict
        Name -> (callable, (min args, max args or None)).
    claim_name : str
        Label for error messages.
    quoted : collection of str
        Functions whose single argument may be a quoted name (``derivative("loss")``).
    """

    def __init__(self, text: str, names: dict, functions: dict, claim_name: str = "", quoted=()):
        self.text, self.names, self.functions, self.claim_name = text, names, functions, claim_name
        self.quoted = frozenset(quoted)

    def fail(self, node, reason: str, syntax: bool = False, shape: bool = False):
        cls = ClaimSyntaxError if syntax else ClaimShapeError if shape else ClaimError
        raise cls(reason, self.text, _span(self.text, node) if node is not None else None, self.claim_name)

    def unknown(self, node, name: str):
        from .catalogue import renamed_hint

        close = difflib.get_close_matches(name, list(self.names) + list(self.functions), n=3)
        hint = renamed_hint(name) or (f" (did you mean {', '.join(close)}?)" if close else "")
        self.fail(node, f"unknown name '{name}'{hint}; declare constants in the claim's params")

    def src(self, node) -> str:
        start, end = _span(self.text, node)
        return self.text[start:end]

    def describe(self, node, value) -> str:
        kind = f"{format_shape(value.shape)} matrix" if isinstance(value, MatrixExpr) else "scalar"
        return f"'{self.src(node)}' ({kind})"

    def visit(self, node):
        """The sympy value of ``node``; every failure is a :class:`ClaimError` pointing at a node."""
        try:
            value = self._visit(node)
        except ClaimError:
            raise
        except ShapeError as exc:
            self.fail(node, str(exc).strip("'\""), shape=True)
        except (NotPolynomial, TypeError, ValueError, KeyError) as exc:
            self.fail(node, str(exc).strip("'\""))
        if not isinstance(value, MatrixExpr) and value.is_number:
            self.check_number(node, value)
        return value

    def check_number(self, node, value) -> None:
        """Refuse a constant that is not a finite real float (1/0, log(0), sqrt(-1), 1e400, 10**400).

        The numeric code evaluates in float64, where such a constant has no value; caught here, the
        error points at the sub-expression instead of failing later.
        """
        try:
            ok = value.is_real is not False and math.isfinite(float(value))
        except (TypeError, OverflowError):  # complex, zoo, or too large for a float
            ok = False
        if not ok:
            self.fail(node, f"'{self.src(node)}' is {value if len(str(value)) < 40 else 'huge'}, not a finite "
                            f"real number")

    def _visit(self, node):
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (numbers.Real, str)):
                self.fail(node, f"unsupported constant {node.value!r}", syntax=True)
            if isinstance(node.value, str):
                self.fail(node, "a string is only allowed as the quantity name in derivative(\"...\") or "
                                "initial(\"...\")", syntax=True)
            return sp.Float(node.value) if isinstance(node.value, float) else sp.Integer(node.value)
        if isinstance(node, ast.Name):
            if node.id.startswith("_"):  # dunders (__import__, __class__, ...) are never names of the language
                self.fail(node, f"'{node.id}': names starting with an underscore are not part of the language",
                          syntax=True)
            if node.id in self.names:
                return self.names[node.id]
            if node.id in self.functions:
                self.fail(node, f"{node.id} is a function: call it, e.g. {node.id}(...)")
            self.unknown(node, node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.visit(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Attribute):
            if node.attr != "T":
                self.fail(node, f"unknown attribute .{node.attr} (only .T, the transpose, is allowed)", syntax=True)
            value = self.visit(node.value)
            if not isinstance(value, MatrixExpr):
                self.fail(node, f"{self.describe(node.value, value)} has no transpose", shape=True)
            return value.T
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Compare):
            self.fail(node, "a comparison can only appear once, at the top of the claim", syntax=True)
        self.fail(node, f"unsupported syntax ({type(node).__name__}); an expression uses names, numbers, "
                        f"+ - * / ** @, .T and function calls", syntax=True)

    def binop(self, node):
        a, b = self.visit(node.left), self.visit(node.right)
        la, lb = self.describe(node.left, a), self.describe(node.right, b)
        ma, mb = isinstance(a, MatrixExpr), isinstance(b, MatrixExpr)
        op = node.op
        if isinstance(op, (ast.Add, ast.Sub)):
            if ma != mb:
                self.fail(node, f"cannot add {la} and {lb}", shape=True)
            if ma and not (same_dim(a.shape[0], b.shape[0]) and same_dim(a.shape[1], b.shape[1])):
                self.fail(node, f"cannot add {la} and {lb}: shapes differ", shape=True)
            return a + b if isinstance(op, ast.Add) else a - b
        if isinstance(op, (ast.Mult, ast.MatMult)):
            if ma and mb and not same_dim(a.shape[1], b.shape[0]):
                self.fail(node, f"cannot multiply {la} by {lb}: inner sizes {a.shape[1]} and {b.shape[0]} differ",
                          shape=True)
            return a * b
        if isinstance(op, ast.Div):
            if mb:
                self.fail(node, f"cannot divide by {lb}", shape=True)
            return a / b
        if isinstance(op, ast.Pow):
            if mb:
                self.fail(node, f"the exponent {lb} must be a scalar", shape=True)
            if b.is_Integer and abs(b) > MAX_EXPONENT:
                self.fail(node.right, f"the exponent {self.src(node.right)} exceeds {MAX_EXPONENT} in absolute value")
            if ma:
                if not (b.is_Integer and b >= 1):
                    self.fail(node, f"a matrix power needs a positive integer exponent, got {self.src(node.right)}")
                if not same_dim(*a.shape):
                    self.fail(node, f"only a square matrix has powers; {la}", shape=True)
            return a ** b
        self.fail(node, f"unsupported operator {type(op).__name__}", syntax=True)

    def call(self, node):
        if not isinstance(node.func, ast.Name) or node.func.id not in self.functions:
            label = node.func.id if isinstance(node.func, ast.Name) else self.src(node.func)
            close = difflib.get_close_matches(label, list(self.functions), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            self.fail(node.func, f"unknown function '{label}'{hint}; known: {', '.join(self.functions)}",
                      syntax=True)
        name = node.func.id
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            self.fail(node, f"{name}() takes no keyword or starred arguments", syntax=True)
        fn, (low, high) = self.functions[name]
        quoted = [a for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if name in self.quoted and len(node.args) == 1 and quoted:  # derivative("noise_U_sq")
            if quoted[0].value not in self.names:
                self.unknown(quoted[0], quoted[0].value)
            args = [self.names[quoted[0].value]]
        else:
            args = [self.visit(a) for a in node.args]
        if len(args) < low or (high is not None and len(args) > high):
            count = f"exactly {low}" if low == high else f"at least {low}"
            self.fail(node, f"{name}() takes {count} argument{'s' if low != 1 else ''}, got {len(args)}")
        return fn(*args)


def normalize(text: str) -> str:
    """Whitespace collapsed to single spaces (error carets then point into one line)."""
    return " ".join(text.split())


def syntax_tree(text, claim_name: str = ""):
    """(normalized text, body of its Python expression tree); a syntax error points into the text."""
    if not isinstance(text, str):
        raise TypeError(f"an expression string is needed, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ClaimSyntaxError(f"the expression has {len(text)} characters; at most {MAX_LENGTH} are accepted",
                               name=claim_name)
    text = normalize(text)
    try:
        return text, ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        col = (exc.offset or 1) - 1
        raise ClaimSyntaxError(f"syntax error: {exc.msg}", text, (col, col + 1), claim_name) from None
    except (ValueError, MemoryError, RecursionError) as exc:  # null bytes, too deep, too long a number
        raise ClaimSyntaxError(f"cannot parse the expression: {exc}", text, None, claim_name) from None


def _interpret(interp: Interpreter, node):
    try:
        return interp.visit(node)
    except RecursionError:
        raise ClaimSyntaxError("the expression is nested too deeply", interp.text, None, interp.claim_name) from None


def parse_expression(text: str, names: dict | None = None, claim_name: str = "", *, functions: dict | None = None,
                     quoted=()):
    """Parse one expression (no comparison) into sympy.

    Parameters
    ----------
    text : str
    names : dict, optional
        Name -> sympy object (default :func:`base_names`).
    claim_name : str
        Label for error messages.
    functions : dict, optional
        Name -> (callable, (min args, max args)) (default :func:`base_functions`).
    quoted : collection of str
        Functions that take a quoted quantity name.

    Returns
    -------
    (sympy expression, normalized text)

    Raises
    ------
    ClaimSyntaxError
        Not an expression of the language; nothing was evaluated.
    ClaimError
        Unknown names, shape mismatches, non-finite constants.

    Examples
    --------
    >>> expr, _ = parse_expression("U*V.T")
    >>> expr.shape
    (m, n)
    """
    text, body = syntax_tree(text, claim_name)
    interp = Interpreter(text, base_names() if names is None else names,
                         base_functions() if functions is None else functions, claim_name, quoted)
    return _interpret(interp, body), text


def parse_comparison(text: str, names: dict, functions: dict, claim_name: str = "", quoted=()):
    """Parse ``lhs OP rhs`` into (lhs, op, rhs, text) with sympy scalar sides; errors point into ``text``."""
    text, body = syntax_tree(text, claim_name)
    interp = Interpreter(text, names, functions, claim_name, quoted)
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
        value = _interpret(interp, node)
        if isinstance(value, MatrixExpr):
            interp.fail(node, f"the {side} side {interp.describe(node, value)} is not a scalar; wrap it in fro(), "
                              f"norm(), trace(), lambda_max() or lambda_min()")
        sides.append(value)
    return sides[0], _AST_OPS[type(body.ops[0])], sides[1], text


def as_sympy(expr, what: str = "expr"):
    """A sympy object from a sympy object, a Python number or an expression string (parsed here).

    Never sympy's string parser: a string goes through :func:`parse_expression`.
    """
    if isinstance(expr, sp.Basic):
        return expr
    if isinstance(expr, str):
        return parse_expression(expr)[0]
    if isinstance(expr, bool):
        raise TypeError(f"{what} must be a sympy expression, a number or an expression string, got a bool")
    if isinstance(expr, numbers.Integral):
        return sp.Integer(int(expr))
    if isinstance(expr, numbers.Rational):
        return sp.Rational(int(expr.numerator), int(expr.denominator))
    if isinstance(expr, numbers.Real):
        return sp.Float(float(expr))
    raise TypeError(f"{what} must be a sympy expression, a number or an expression string, got "
                    f"{type(expr).__name__}")
