"""A claim: one comparison between scalar expressions of the state, with its slack, parameters and
the dynamics it is stated for."""

from __future__ import annotations

import math
import numbers
import types
from dataclasses import dataclass, field, replace
from typing import Mapping

import sympy as sp
from sympy import MatrixExpr

from ...flows.checks import renamed
from .. import symbolic as S
from ..symbolic.parsing import as_sympy
from .language import FUNCTIONS, ClaimError, parse_claim, parse_expression, vocabulary



@dataclass(frozen=True, eq=False)
class Claim:
    """An inequality between scalar expressions of the state, checked by :func:`check`.

    Parameters
    ----------
    statement : str or sympy relational
        ``"lhs <= rhs"``, ``">="`` or ``"=="`` in the claim language (module docstring), or a sympy
        ``LessThan`` / ``GreaterThan`` / ``Equality`` built from :mod:`pgflow.analysis.symbolic` and
        :func:`derivative`.
    name : str
    allowance : str or float
        How much the claim may fail by on a state, an expression of the state (default "0"): rounding
        in the terms an identity cancels, for example.
    rel_allowance : float
        How much it may fail by relative to the sides: the claim holds where it holds with
        allowance + rel_allowance·(|lhs| + |rhs|), for bounds that are attained (round-off then
        decides the sign).
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
    assume : str, sequence of str, or mapping of dynamics -> (str or sequence of str)
        Hypotheses: comparisons in the claim language (``"eta * norm(V)**2 <= 2"``,
        ``"initial(fro(U)) <= 0.1"``). The claim is stated, and checked, only on the saved states
        where every hypothesis holds; the others are reported as excluded. A hypothesis about the
        start is written with ``initial(...)``. A mapping states hypotheses for some dynamics only
        (``{"gd": "eta * norm(V)**2 <= 2"}``: the step-size condition of a GD statement).

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
    allowance: str = "0"
    rel_allowance: float = 0.0
    params: Mapping = field(default_factory=dict)
    dynamics: tuple | None = None
    expect: bool = True
    description: str = ""
    quantities: Mapping = field(default_factory=dict)
    assume: tuple = ()

    def __post_init__(self):
        label = self.name or (self.statement if isinstance(self.statement, str) else "")
        if isinstance(self.rel_allowance, bool) or not isinstance(self.rel_allowance, numbers.Real) \
                or not 0 <= self.rel_allowance < 1:
            raise ClaimError(f"rel_allowance must be a number in [0, 1), got {self.rel_allowance!r}", name=label)
        if not isinstance(self.expect, bool):  # a truthy string such as "false" must not read as True
            raise ClaimError(f"expect must be true or false, got {self.expect!r}", name=label)
        if isinstance(self.allowance, bool) or not isinstance(self.allowance, (str, numbers.Real)):
            raise ClaimError(f"allowance must be an expression string or a number, got {self.allowance!r}",
                             name=label)
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
        assume, hypotheses = _hypotheses(self.assume, names, label)
        object.__setattr__(self, "assume", assume)
        allowed, _ = parse_expression(self.allowance, names, f"{label}: allowance") \
            if isinstance(self.allowance, str) else (as_sympy(self.allowance, "allowance"), None)
        if isinstance(allowed, MatrixExpr):
            raise ClaimError(f"allowance must be a scalar, got a {S.format_shape(allowed.shape)} matrix",
                             self.allowance, name=label)
        object.__setattr__(self, "_parsed", (lhs, op, rhs, allowed, text, hypotheses))

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
    def allowance_expr(self):
        return self._parsed[3]

    @property
    def hypotheses(self) -> tuple:
        """The parsed ``assume`` comparisons: tuples (dynamics or None, lhs, op, rhs), sympy scalar sides."""
        return self._parsed[5]

    def hypotheses_for(self, dynamics: str) -> tuple:
        """The hypotheses (lhs, op, rhs) that apply on runs of ``dynamics``."""
        return tuple((a, op, b) for d, a, op, b in self.hypotheses if d is None or d == dynamics)

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


def _as_texts(value, label: str) -> tuple:
    texts = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(a, str) for a in texts):
        raise ClaimError(f"assume must hold comparison strings, got {value!r}", name=label)
    return texts


def _hypotheses(assume, names: dict, label: str):
    """(normalized assume, parsed hypotheses (dynamics or None, lhs, op, rhs))."""
    if isinstance(assume, Mapping):
        bad = [d for d in assume if d not in S.DYNAMICS]
        if bad:
            raise ClaimError(f"assume: dynamics must be among {S.DYNAMICS}, got {bad}", name=label)
        normalized = types.MappingProxyType({d: _as_texts(v, label) for d, v in assume.items()})
        pairs = [(d, text) for d, texts in normalized.items() for text in texts]
    else:
        normalized = _as_texts(assume, label)
        pairs = [(None, text) for text in normalized]
    return normalized, tuple((d, *parse_claim(text, names, f"{label}: assume")[:3]) for d, text in pairs)


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


# the old field names fail with the new names in the message (a claim file written for an older pgflow)
Claim.__init__ = renamed(tol="allowance", rtol="rel_allowance")(Claim.__init__)
