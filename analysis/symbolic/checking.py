"""Checks of identities and derivations: exact evaluation at random points of generic sizes, and
numeric comparison with pgflow's own dynamics objects.

* :func:`vanishes` decides a polynomial identity exactly, by evaluation at random points with
  explicit numeric matrices in a prime field (:mod:`.modular`), at sizes larger than the
  expression's degree (where no matrix identity holds by accident), and at any sizes the caller
  names as well.
* :func:`verify` checks every derivation of a quantity twice: exactly (the symbolic derivative
  against forward-mode dual numbers along the symbolic field, at generic sizes) and numerically
  against :mod:`pgflow.flows` (the symbolic vector field against the flow objects and the GD step,
  and the derivative against differences of the quantity along the flow's own numeric field,
  :mod:`.numeric_checks`), so an error shared by the symbolic field and the symbolic derivative
  cannot hide.
* :class:`Componentwise` and :func:`explicit` write an expression out as explicit polynomial
  entries, for reading at small sizes (not a certificate: small sizes satisfy false identities).
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp
from sympy import Identity, MatAdd, MatMul, MatPow, MatrixExpr, MatrixSymbol, Trace, Transpose, ZeroMatrix

from . import derivatives as _derivatives
from . import modular, numeric_checks
from .catalogue import QUANTITIES, as_expr
from .derivatives import gd_increment, gd_step, gradient, time_derivative, vector_field
from .parsing import as_sympy
from .vocabulary import (DIMS, DYNAMICS, STRUCTURE, E, E_U, E_V, NotPolynomial, Phi, Phi_perp, Psi, Psi_perp, Sigma,
                         Sigma_star, U, V, eta, t)


def _size(d, sizes) -> int:
    return int(d.xreplace(sizes)) if isinstance(d, sp.Basic) else int(d)


class Componentwise:
    """Exact entrywise evaluation of polynomial expressions in sympy's sparse ring QQ[entries].

    Every matrix leaf becomes a numpy object array whose entries are generators of one polynomial
    ring (U[i,j], V[i,j], Sigma[i,j], E[i,j], ..., eta, t); products, sums, transposes and traces are
    done entry by entry, so equality of two results is exact polynomial identity. This is much
    faster than expanding explicit sympy matrices (the GD step of the loss at m=3, n=2, k=2 has
    about 15 600 terms).

    If the expressions mention the target's structure (Φ, Ψ, Φ⊥, Ψ⊥, Σ*), Σ is made explicit in the
    rotated frame Φ = [I_r; 0], Ψ = [I_r; 0], Φ⊥ = [0; I], Ψ⊥ = [0; I], Σ* = diag(s₁..s_r), Σ = ΦΣ*Ψᵀ
    (no loss of generality: the quantities are invariant under x ↦ (QU, Q'V), Σ ↦ QΣQ'ᵀ); otherwise Σ
    is a generic m×n matrix of symbols.

    Parameters
    ----------
    exprs : sequence of sympy expressions
        Everything that will be evaluated (fixes the leaves and whether the frame is rotated).
    m, n, k, r : int
        Concrete sizes; keep them small.
    """

    def __init__(self, exprs, m: int = 3, n: int = 2, k: int = 2, r: int = 1):
        if not (1 <= r <= min(m, n)):
            raise ValueError(f"r must lie in [1, min(m, n)] = [1, {min(m, n)}], got {r}")
        exprs = [as_sympy(e) for e in exprs]
        self.sizes = dict(zip(DIMS, (m, n, k, r)))
        structured = any(e.has(s_) for e in exprs for s_ in STRUCTURE)
        leaves = {U, V, Sigma, E, E_U, E_V} | {a for e in exprs for a in e.atoms(MatrixSymbol)}
        if structured:
            leaves -= {Sigma, *STRUCTURE}
        scalars = sorted({a for e in exprs for a in e.free_symbols if not isinstance(a, MatrixSymbol)}
                         - set(DIMS) | {eta, t}, key=str)
        shapes = {leaf: tuple(_size(d, self.sizes) for d in leaf.shape) for leaf in leaves}
        names = [sp.Symbol(f"{leaf.name}[{i},{j}]") for leaf in sorted(leaves, key=str)
                 for i in range(shapes[leaf][0]) for j in range(shapes[leaf][1])]
        names += [sp.Symbol(f"s[{i}]") for i in range(r)] if structured else []
        self.ring, *gens = sp.ring(names + scalars, sp.QQ)
        it = iter(gens)
        self.values = {leaf: np.array([[next(it) for _ in range(shapes[leaf][1])] for _ in range(shapes[leaf][0])],
                                      dtype=object).reshape(shapes[leaf])
                       for leaf in sorted(leaves, key=str)}
        if structured:
            s_diag = self._eye(r) * np.array([next(it) for _ in range(r)], dtype=object)
            self.values.update({Phi: self._eye(m, r), Psi: self._eye(n, r), Phi_perp: self._eye(m, m - r, r),
                                Psi_perp: self._eye(n, n - r, r), Sigma_star: s_diag})
            self.values[Sigma] = self.values[Phi] @ s_diag @ self.values[Psi].T
        self.values.update({s_: next(it) for s_ in scalars})
        self.values.update({d: self.ring(v) for d, v in self.sizes.items()})

    def _eye(self, a, b=None, offset=0):
        b = a if b is None else b
        return np.array([[self.ring(1 if i == j + offset else 0) for j in range(b)] for i in range(a)],
                        dtype=object).reshape(a, b)

    def __call__(self, expr, values: dict | None = None):
        """``expr`` evaluated exactly: a ring element (scalar) or an object array of them (matrix)."""
        env = self.values if values is None else {**self.values, **values}
        memo: dict = {}

        def ev(e):
            if e in memo:
                return memo[e]
            if e in env:
                out = env[e]
            elif isinstance(e, Identity):
                out = self._eye(_size(e.shape[0], self.sizes))
            elif isinstance(e, ZeroMatrix):
                shape = tuple(_size(d, self.sizes) for d in e.shape)
                out = np.full(shape, self.ring(0), dtype=object)
            elif isinstance(e, (MatAdd, sp.Add)):
                out = functools.reduce(lambda a, b: a + b, [ev(a) for a in e.args])
            elif isinstance(e, MatMul):
                coeff, mats = e.as_coeff_matrices()
                out = functools.reduce(lambda a, b: a @ b, [ev(a) for a in mats]) * ev(coeff)
            elif isinstance(e, sp.Mul):
                out = functools.reduce(lambda a, b: a * b, [ev(a) for a in e.args])
            elif isinstance(e, Transpose):
                out = ev(e.arg).T
            elif isinstance(e, Trace):
                out = sum(np.diagonal(ev(e.arg)), self.ring(0))
            elif isinstance(e, (MatPow, sp.Pow)) and e.exp.is_Integer and e.exp >= 0:
                base = ev(e.base)
                one = self._eye(base.shape[0]) if isinstance(e, MatPow) else self.ring(1)
                out = functools.reduce(lambda a, b: a @ b if isinstance(e, MatPow) else a * b,
                                       [base] * int(e.exp), one)
            elif e.is_Rational:
                out = self.ring(sp.QQ(int(e.p), int(e.q)))
            else:
                raise NotPolynomial(f"{e} is not a polynomial expression, so it has no exact componentwise form")
            memo[e] = out
            return out

        return ev(as_sympy(expr))

    def entries(self, value) -> list:
        """The entries of a result as a flat list (a scalar gives one entry)."""
        return list(np.ravel(np.asarray(value, dtype=object))) if isinstance(value, (np.ndarray, list)) else [value]

    def same(self, a, b) -> bool:
        """Exact equality of two results, entry by entry."""
        a, b = self.entries(a), self.entries(b)
        return len(a) == len(b) and all(x == y for x, y in zip(a, b))


def explicit(expr, m: int = 3, n: int = 2, k: int = 2, r: int = 1):
    """``expr`` with every matrix made an explicit matrix of scalar symbols (see :class:`Componentwise`).

    For reading an expression entry by entry at small sizes; to decide an identity use
    :func:`vanishes`, which tests at sizes where no identity holds by accident.

    Returns
    -------
    sympy ImmutableMatrix or scalar expression, expanded.
    """
    cw = Componentwise([expr], m, n, k, r)
    out = cw(expr)
    if isinstance(out, np.ndarray):
        return sp.ImmutableMatrix(out.shape[0], out.shape[1], [e.as_expr() for e in out.ravel()])
    return out.as_expr()



POINTS = 3
"""Random points per size set in the exact checks (each wrongly passes with probability ≤ D/p ≈ 1e-6)."""

_OLD_DEFAULTS = {"m": 3, "n": 2, "k": 2, "r": 1}


def _given_sizes(m, n, k, r) -> dict | None:
    """Sizes the caller named (missing ones at the old defaults 3, 2, 2, 1), or None."""
    given = {"m": m, "n": n, "k": k, "r": r}
    if all(v is None for v in given.values()):
        return None
    values = {name: (_OLD_DEFAULTS[name] if v is None else v) for name, v in given.items()}
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if values["r"] > min(values["m"], values["n"]):
        raise ValueError(f"r must lie in [1, min(m, n)] = [1, {min(values['m'], values['n'])}], got {values['r']}")
    return dict(zip(DIMS, (int(values[x]) for x in "mnkr")))


def _size_sets(degree: int, given: dict | None, generic: bool) -> list:
    sets = [modular.generic_sizes(degree), modular.generic_sizes(degree, shift=1)] if generic else []
    return sets + ([given] if given else [])


def vanishes(expr, m: int | None = None, n: int | None = None, k: int | None = None, r: int | None = None, *,
             generic: bool = True, seed: int = 0) -> bool:
    r"""True iff the polynomial expression ``expr`` is identically zero, decided exactly.

    ``expr`` is evaluated exactly (in GF(p), :mod:`.modular`) at :data:`POINTS` random points with
    explicit numeric matrices, at two sets of *generic* sizes — every size m, n, k, r, m − r, n − r
    larger than the expression's degree D in its matrix leaves, all distinct, m > n > k
    (:func:`~.modular.generic_sizes`) — and at the sizes given, if any. Small sizes alone would
    certify false identities: Cayley–Hamilton for k = 2, Σ*BBᵀ = BBᵀΣ* for r = 1. A nonzero
    polynomial passes one point with probability at most D/p ≈ 1e-6 (Schwartz–Zippel), so a
    False is certain and a True wrong with probability below 1e-17.

    Parameters
    ----------
    expr : str, Quantity or sympy expression (scalar or matrix), polynomial in its leaves
        A string is a catalogue name or an expression (safe parser, :mod:`.parsing`).
    m, n, k, r : int, optional
        Sizes to test at in addition (missing ones default to 3, 2, 2, 1 when some are given).
    generic : bool
        Test at the generic sizes (turn off only to ask about particular sizes).
    seed : int
        Seed of the random points.

    Raises
    ------
    NotPolynomial
        The expression has spectral functions, square roots, inverses, ...

    Examples
    --------
    >>> from pgflow.analysis.symbolic import k, trace
    >>> vanishes("imbalance - (U.T*U - V.T*V)")
    True
    >>> M = U.T * U
    >>> vanishes(M*M - trace(M)*M + (trace(M)**2 - trace(M*M))/2 * Identity(k), m=3, n=2, k=2, r=1)
    False
    >>> vanishes(M*M - trace(M)*M + (trace(M)**2 - trace(M*M))/2 * Identity(k), m=3, n=2, k=2, r=1, generic=False)
    True
    """
    expr = as_expr(expr)
    sets = _size_sets(modular.matrix_degree(expr), _given_sizes(m, n, k, r), generic)
    if not sets:
        raise ValueError("vanishes needs sizes to test at: generic=True or m, n, k, r")
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    for sizes in sets:
        value, _ = modular.Modular([expr], sizes, POINTS, rng)(expr)
        if np.any(value % modular.PRIME):
            return False
    return True


class Verification(dict):
    """The outcome of :func:`verify`: check name -> bool, and ``details``: check name -> the list of
    :class:`~.numeric_checks.Finding` behind it (each with its sizes and measured error)."""

    details: dict

    def report(self) -> str:
        """Every finding, one per line."""
        return "\n".join(f"{key}: {f}" for key, found in self.details.items() for f in found)


def _fields(dynamics: str) -> list:
    """The symbolic vector fields to check: this module's ``vector_field`` and the one the derivatives
    are built on (the same function unless one of them was replaced)."""
    out = [vector_field]
    if _derivatives.vector_field is not vector_field:
        out.append(_derivatives.vector_field)
    return [(f"symbolic field ({f.__module__}.{f.__name__})", f(dynamics)) for f in out]


def _exact(q, derived, grads, sizes_sets, rng, findings) -> None:
    """The derivations against forward-mode dual numbers, exactly, at every size set."""
    G = (QUANTITIES["G_U"].expr, QUANTITIES["G_V"].expr)
    fields = {d: _derivatives.vector_field(d) for d in derived if d != "gd"}
    exprs = [q, *derived.values(), *grads.values(), *G, *[f for uv in fields.values() for f in uv]]
    for sizes in sizes_sets:
        ev = modular.Modular(exprs, sizes, POINTS, rng)
        label = tuple(sizes[d] for d in DIMS)
        for X, grad in grads.items():
            direction = ev.random(ev.shape(X))
            _, got = ev(q, tangents={X: direction})
            got = np.zeros((ev.points, 1, 1), dtype=np.int64) if got is None else got
            pairing = np.sum(ev(grad)[0] * direction % modular.PRIME, axis=(-2, -1)) % modular.PRIME
            findings[f"grad_{X.name}"].append(numeric_checks.Finding(
                f"exact: ⟨∇_{X.name} q, D⟩ = Dq[D] at random points", label, ev.same(got[:, 0, 0], pairing), 0.0))
        for d, want_expr in derived.items():
            if d == "gd":
                step = {U: (ev.values[U] - ev(G[0])[0] * ev.values[eta]) % modular.PRIME,
                        V: (ev.values[V] - ev(G[1])[0] * ev.values[eta]) % modular.PRIME,
                        t: (ev.values[t] + ev.values[eta]) % modular.PRIME}
                want = ev(q, step)[0] - ev(q)[0]
                what = "exact: q(x − ηG) − q(x) at random points"
            else:
                U_dot, V_dot = (ev(f)[0] for f in fields[d])
                want = ev(q, tangents={U: U_dot, V: V_dot, t: np.ones_like(ev.values[t])})[1]
                want = np.zeros(1, dtype=np.int64) if want is None else want
                what = "exact: the chain rule along the symbolic field at random points"
            findings[d].append(numeric_checks.Finding(what, label, ev.same(ev(want_expr)[0], want), 0.0))


def _numeric(q, derived, grads, sizes_list, rng, findings) -> None:
    """The derivations and the symbolic fields against pgflow.flows, numerically, at every size."""
    rates = list(derived.values())
    for sizes in sizes_list:
        for _ in range(5):  # a state where every spectral value is simple
            point = numeric_checks.Point(sizes, rng)
            if numeric_checks.smooth_at(point, rates):
                break
        for X, grad in grads.items():
            findings[f"grad_{X.name}"].append(numeric_checks.gradient_check(point, q, grad, X.name, rng))
        for d, expr in derived.items():
            if d == "gd":
                G_U, G_V = QUANTITIES["G_U"].expr, QUANTITIES["G_V"].expr
                findings[d].append(numeric_checks.field_check(point, d, (-eta * G_U, -eta * G_V),
                                                              "symbolic update −η(G_U, G_V)"))
                findings[d].append(numeric_checks.gd_check(point, q, expr))
                continue
            for label, field in _fields(d):
                findings[d].append(numeric_checks.field_check(point, d, field, label))
            findings[d].append(numeric_checks.rate_check(point, q, expr, d, 1.0))


def verify(q, dynamics=DYNAMICS, *, m: int | None = None, n: int | None = None, k: int | None = None,
           r: int | None = None, seed: int = 0) -> Verification:
    r"""Check every derivation of ``q`` independently of the symbolic calculus that made it.

    For each requested dynamics, and for the gradients of a scalar q, two kinds of evidence:

    * **numeric, against pgflow.flows** (:mod:`.numeric_checks`), on random states at the sizes
      :data:`~.numeric_checks.NUMERIC_SIZES` (and the sizes given): the symbolic vector field
      against the flow object (``GradientFlow``, ``PerturbedGradientFlow`` with a
      ``FixedPerturbation`` in either form, ``ModifiedFlow``) and the symbolic GD update against a
      step of ``gradient_descent``; the symbolic time derivative against 8th-order differences of q
      along the flow object's own vector field; the GD increment against q(x₊) − q(x) with x₊ from
      ``gradient_descent``; the gradients against differences along random directions.
    * **exact** (polynomial q, :mod:`.modular`): at random points of two sets of generic sizes
      (see :func:`vanishes`), the time derivative against the exact chain rule (dual numbers) along
      the symbolic field, the GD polynomial against q(x − ηG) − q(x), and ⟨∇q, D⟩ against Dq[D].

    Spectral quantities (norm, λ_min, σ_min, ...) have no exact form and are checked numerically,
    at states where their values are simple; their "gd" entry checks the shifted expression
    q(x − η∇f) − q(x) that a GD run evaluates.

    Parameters
    ----------
    q : str, Quantity or sympy expression (scalar or matrix)
    dynamics : sequence of {"gf", "pgf_residual", "pgf_additive", "modified", "gd"}
    m, n, k, r : int, optional
        Extra sizes to check at, exactly and numerically.
    seed : int
        Seed of the random states and points.

    Returns
    -------
    Verification
        "grad_U", "grad_V" (scalar q with a gradient) and each requested dynamics -> bool (True
        only if every check behind it passed); ``.details`` lists the checks with their errors.

    Examples
    --------
    >>> verify("imbalance_sq", dynamics=("gf", "gd"))
    {'grad_U': True, 'grad_V': True, 'gf': True, 'gd': True}
    """
    q = as_expr(q)
    dynamics = (dynamics,) if isinstance(dynamics, str) else tuple(dynamics)
    unknown = set(dynamics) - set(DYNAMICS)
    if unknown:
        raise ValueError(f"dynamics must be among {DYNAMICS}, got {sorted(unknown)}")
    derived = {}
    for d in dynamics:
        if d != "gd":
            derived[d] = time_derivative(q, d)
        else:
            try:
                derived[d] = gd_step(q)
            except NotPolynomial:
                derived[d] = gd_increment(q)
    grads = {}
    if not isinstance(q, MatrixExpr):
        try:
            grads = {X: gradient(q, X) for X in (U, V)}
        except NotPolynomial:  # spectral functions have directional derivatives only
            grads = {}
    keys = [f"grad_{X.name}" for X in grads] + list(dynamics)
    findings = {key: [] for key in keys}
    given = _given_sizes(m, n, k, r)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    try:
        degree = max(modular.matrix_degree(e) for e in [q, *derived.values(), *grads.values()])
        _exact(q, derived, grads, _size_sets(degree, given, True), rng, findings)
    except NotPolynomial:
        pass  # no exact form: the numeric checks below are the evidence
    sizes_list = list(numeric_checks.NUMERIC_SIZES) + ([tuple(given[d] for d in DIMS)] if given else [])
    _numeric(q, derived, grads, sizes_list, rng, findings)
    out = Verification({key: bool(findings[key]) and all(f.passed for f in findings[key]) for key in keys})
    out.details = findings
    return out
