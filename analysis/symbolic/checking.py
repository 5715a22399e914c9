"""Exact componentwise checks: every matrix becomes an explicit matrix of polynomial-ring generators
and identities are decided exactly, entry by entry.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp
from sympy import Identity, MatAdd, MatMul, MatPow, MatrixExpr, MatrixSymbol, Trace, Transpose, ZeroMatrix

from .catalogue import QUANTITIES, as_expr
from .derivatives import gd_step, gradient, time_derivative, vector_field
from .vocabulary import (DIMS, DYNAMICS, STRUCTURE, E, E_U, E_V, NotPolynomial, Phi, Phi_perp, Psi, Psi_perp, Sigma,
                         Sigma_star, U, V, eta, t)

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
        exprs = [sp.sympify(e) for e in exprs]
        self.sizes = dict(zip(DIMS, (m, n, k, r)))
        structured = any(e.has(s_) for e in exprs for s_ in STRUCTURE)
        leaves = {U, V, Sigma, E, E_U, E_V} | {a for e in exprs for a in e.atoms(MatrixSymbol)}
        if structured:
            leaves -= {Sigma, *STRUCTURE}
        scalars = sorted({a for e in exprs for a in e.free_symbols if not isinstance(a, MatrixSymbol)}
                         - set(DIMS) | {eta, t}, key=str)
        shapes = {leaf: tuple(int(sp.sympify(d).xreplace(self.sizes)) for d in leaf.shape) for leaf in leaves}
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
                out = self._eye(int(sp.sympify(e.shape[0]).xreplace(self.sizes)))
            elif isinstance(e, ZeroMatrix):
                shape = tuple(int(sp.sympify(d).xreplace(self.sizes)) for d in e.shape)
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

        return ev(sp.sympify(expr))

    def entries(self, value) -> list:
        """The entries of a result as a flat list (a scalar gives one entry)."""
        return list(np.ravel(np.asarray(value, dtype=object))) if isinstance(value, (np.ndarray, list)) else [value]

    def same(self, a, b) -> bool:
        """Exact equality of two results, entry by entry."""
        a, b = self.entries(a), self.entries(b)
        return len(a) == len(b) and all(x == y for x, y in zip(a, b))


def explicit(expr, m: int = 3, n: int = 2, k: int = 2, r: int = 1):
    """``expr`` with every matrix made an explicit matrix of scalar symbols (see :class:`Componentwise`).

    Returns
    -------
    sympy ImmutableMatrix or scalar expression, expanded.
    """
    cw = Componentwise([expr], m, n, k, r)
    out = cw(expr)
    if isinstance(out, np.ndarray):
        return sp.ImmutableMatrix(out.shape[0], out.shape[1], [e.as_expr() for e in out.ravel()])
    return out.as_expr()


def vanishes(expr, m: int = 3, n: int = 2, k: int = 2, r: int = 1) -> bool:
    """True iff the polynomial expression ``expr`` is identically zero (exactly, entry by entry)."""
    cw = Componentwise([expr], m, n, k, r)
    return all(e == 0 for e in cw.entries(cw(expr)))


def verify(q, dynamics=DYNAMICS, *, m: int = 3, n: int = 2, k: int = 2, r: int = 1) -> dict[str, bool]:
    r"""Check every derivation of ``q`` componentwise, independently of the matrix calculus above.

    The entries of ``q`` become exact polynomials in the entries of U and V (:class:`Componentwise`)
    and are differentiated entry by entry. Checked: the gradients (scalar q) against
    :func:`gradient`; ``∂q/∂t + Σ_ij ∂q/∂U_ij U̇_ij + ∂q/∂V_ij V̇_ij`` against :func:`time_derivative`
    for each flow; ``q(U − ηG_U, V − ηG_V, t + η) − q`` against :func:`gd_step`.

    Returns
    -------
    dict
        "grad_U", "grad_V" (scalar q) and each requested dynamics -> bool.

    Examples
    --------
    >>> verify("imbalance_sq", dynamics=("gf", "gd"))
    {'grad_U': True, 'grad_V': True, 'gf': True, 'gd': True}
    """
    q = as_expr(q)
    unknown = set(dynamics) - set(DYNAMICS)
    if unknown:
        raise ValueError(f"dynamics must be among {DYNAMICS}, got {sorted(unknown)}")
    derived = {d: (time_derivative(q, d) if d != "gd" else gd_step(q)) for d in dynamics}
    fields = {d: vector_field(d) for d in dynamics if d != "gd"}
    scalar = not isinstance(q, MatrixExpr)
    grads = {X: gradient(q, X) for X in (U, V)} if scalar else {}
    G = (QUANTITIES["G_U"].expr, QUANTITIES["G_V"].expr)
    cw = Componentwise([q, *derived.values(), *grads.values(), *G, *[f for uv in fields.values() for f in uv]],
                       m, n, k, r)
    Ue, Ve = cw.values[U], cw.values[V]
    qe = cw(q)
    q_entries = cw.entries(qe)
    out = {}
    for X, Xe in ((U, Ue), (V, Ve)):
        if scalar:
            want = np.vectorize(lambda s_: qe.diff(s_), otypes=[object])(Xe)
            out[f"grad_{X.name}"] = cw.same(want, cw(grads[X]))
    for d in dynamics:
        if d == "gd":
            step = {U: Ue - cw(G[0]) * cw.values[eta], V: Ve - cw(G[1]) * cw.values[eta],
                    t: cw.values[t] + cw.values[eta]}  # one GD step of size η advances t by η
            shifted = cw.entries(cw(q, step))
            want = [a - b for a, b in zip(shifted, q_entries)]
        else:
            Ud, Vd = (cw.entries(cw(f)) for f in fields[d])
            want = [sum((e.diff(u) * du for u, du in zip(Ue.ravel(), Ud)), e.diff(cw.values[t]))  # ∂q/∂t + chain rule
                    + sum((e.diff(v) * dv for v, dv in zip(Ve.ravel(), Vd)), cw.ring(0)) for e in q_entries]
        out[d] = cw.same(want, cw(derived[d]))
    return out
