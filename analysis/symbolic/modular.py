r"""Exact evaluation of polynomial matrix expressions at random points, with forward derivatives.

A polynomial identity is decided by evaluating both sides *exactly* at random points with explicit
numeric matrices (Schwartz–Zippel: a nonzero polynomial of total degree D vanishes at a uniformly
random point of a field with p elements with probability at most D/p). Exact arithmetic is done in
the prime field GF(p), p = 2²⁶ − 5, with int64 numpy arrays: every rational constant c = a/b
becomes a·b⁻¹ mod p, entries of products stay below 2⁵², and a matrix product over at most 2047
terms below 2⁶³, so nothing overflows and nothing is rounded. This replaces the expansion of every
entry into a multivariate polynomial, whose cost grows so fast that only tiny sizes (where false
identities such as Cayley–Hamilton hold) were affordable.

Values are *dual numbers* (value, tangent): the tangent of a leaf is a given direction, and sums,
products, transposes, traces and integer powers propagate it by the product rule, so the exact
directional derivative of an expression along a direction is computed numerically, independently
of the symbolic derivation it is compared with.

Which sizes (:func:`generic_sizes`): a polynomial identity of matrices holds by accident only for
matrices smaller than its degree (Cayley–Hamilton: M² − tr(M)M + ½(tr(M)² − tr(M²))I = 0 for every
2×2 M; Σ*BBᵀ = BBᵀΣ* when r = 1; the standard polynomial of degree 2s for s×s matrices). So every
size — m, n, k, r and the complements m − r, n − r — is taken larger than the expression's degree
D in the matrix leaves, all of them distinct, with m > n > k; a second set of sizes, shifted,
guards against identities that hold only for particular dimensions.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import sympy as sp
from sympy import (HadamardProduct, Identity, MatAdd, MatMul, MatPow, MatrixExpr, MatrixSymbol, Trace,
                   Transpose, ZeroMatrix)

from .vocabulary import DIMS, STRUCTURE, E, E_U, E_V, NotPolynomial, Phi, Phi_perp, Psi, Psi_perp, Sigma, \
    Sigma_star, U, V, eta, k, m, n, r, t

PRIME = 67108859
"""p = 2²⁶ − 5: products of two residues fit in 52 bits."""


def matrix_degree(e) -> int:
    """An upper bound on the degree of ``e`` in its matrix leaves (each leaf counts 1)."""
    memo: dict = {}

    def deg(x):
        if x in memo:
            return memo[x]
        if isinstance(x, MatrixSymbol):
            out = 1
        elif isinstance(x, (Identity, ZeroMatrix)) or not x.args:
            out = 0
        elif isinstance(x, (MatAdd, sp.Add)):
            out = max(deg(a) for a in x.args)
        elif isinstance(x, (MatPow, sp.Pow)) and x.exp.is_Integer:
            out = abs(int(x.exp)) * deg(x.base)
        else:  # products, transposes, traces, functions: the degrees of the arguments add up (an upper bound)
            out = sum(deg(a) for a in x.args)
        memo[x] = out
        return out

    return deg(e)


def generic_sizes(degree: int, shift: int = 0) -> dict:
    """Sizes at which no matrix identity of degree ≤ ``degree`` holds by accident.

    k = D + 1, r = D + 2, n − r = D + 3, m − r = D + 4 (so m > n > k, all distinct and above D); a
    ``shift`` > 0 moves them apart by different amounts (a second, independent set).
    """
    D = max(int(degree), 1)
    k_, r_ = D + 1 + shift, D + 2 + 2 * shift
    n_ = r_ + D + 3 + shift
    m_ = r_ + D + 4 + 3 * shift
    return {m: m_, n: n_, k: k_, r: r_}


def _residue(c) -> int:
    """A rational constant (sympy or Python number) as an element of GF(p)."""
    if isinstance(c, sp.Float) or isinstance(c, float):
        c = Fraction(float(c))  # the exact binary value of the float
    elif isinstance(c, sp.Rational):
        c = Fraction(int(c.p), int(c.q))
    else:
        c = Fraction(c)
    if c.denominator % PRIME == 0:
        raise ZeroDivisionError(f"the constant {c} has no value modulo {PRIME}")
    return c.numerator % PRIME * pow(c.denominator % PRIME, PRIME - 2, PRIME) % PRIME


def _mm(a, b):
    return (a @ b) % PRIME


def _add(x, y):
    if x is None:
        return y
    if y is None:
        return x
    return (x + y) % PRIME


class Modular:
    """Exact dual-number evaluation of polynomial expressions at random points of GF(p).

    Parameters
    ----------
    exprs : sequence of sympy expressions
        Everything that will be evaluated (fixes the leaves and whether the frame is rotated).
    sizes : dict
        {m, n, k, r: int}.
    points : int
        Number of random points, evaluated together (a leading batch axis).
    rng : numpy.random.Generator

    Notes
    -----
    If the expressions mention the target's structure (Φ, Ψ, Φ⊥, Ψ⊥, Σ*), Σ is built in the rotated
    frame Φ = [I_r; 0], Ψ = [I_r; 0], Φ⊥ = [0; I], Ψ⊥ = [0; I], Σ* = diag(s), Σ = ΦΣ*Ψᵀ (every
    quantity is invariant under x ↦ (QU, Q'V), Σ ↦ QΣQ'ᵀ); otherwise Σ is a generic matrix.
    Matrices are int64 arrays of shape (points, rows, cols), scalars (points, 1, 1).
    """

    def __init__(self, exprs, sizes: dict, points: int, rng):
        self.sizes = {d: int(sizes[d]) for d in DIMS}
        if not 1 <= self.sizes[r] <= min(self.sizes[m], self.sizes[n]):
            raise ValueError(f"r must lie in [1, min(m, n)], got sizes {self.sizes}")
        self.points, self.rng = int(points), rng
        structured = any(e.has(s_) for e in exprs for s_ in STRUCTURE)
        leaves = {U, V, Sigma, E, E_U, E_V} | {a for e in exprs for a in e.atoms(MatrixSymbol)}
        if structured:
            leaves -= {Sigma, *STRUCTURE}
        self.values = {leaf: self.random(self.shape(leaf)) for leaf in sorted(leaves, key=str)}
        if structured:
            m_, n_, r_ = self.sizes[m], self.sizes[n], self.sizes[r]
            s_diag = self.eye(r_) * self.random((r_, 1)).transpose(0, 2, 1) % PRIME
            self.values.update({Phi: self.eye(m_, r_), Psi: self.eye(n_, r_), Phi_perp: self.eye(m_, m_ - r_, r_),
                                Psi_perp: self.eye(n_, n_ - r_, r_), Sigma_star: s_diag})
            self.values[Sigma] = _mm(_mm(self.values[Phi], s_diag), self.values[Psi].transpose(0, 2, 1))
        scalars = ({a for e in exprs for a in e.free_symbols if not isinstance(a, MatrixSymbol)} | {eta, t}) - set(DIMS)
        self.values.update({s_: self.random((1, 1)) for s_ in sorted(scalars, key=str)})
        self.values.update({d: np.full((self.points, 1, 1), v % PRIME, dtype=np.int64) for d, v in self.sizes.items()})

    def shape(self, leaf) -> tuple:
        return tuple(int(d.xreplace(self.sizes)) if isinstance(d, sp.Basic) else int(d) for d in leaf.shape)

    def random(self, shape) -> np.ndarray:
        """Uniform residues, shape (points, *shape)."""
        return self.rng.integers(0, PRIME, size=(self.points, *shape), dtype=np.int64)

    def eye(self, a: int, b: int | None = None, offset: int = 0) -> np.ndarray:
        b = a if b is None else b
        out = np.zeros((self.points, a, b), dtype=np.int64)
        for j in range(b):
            if 0 <= j + offset < a:
                out[:, j + offset, j] = 1
        return out

    def __call__(self, expr, values: dict | None = None, tangents: dict | None = None):
        """(value, tangent) of ``expr``: int64 arrays (points, rows, cols) ((points, 1, 1) for a scalar);
        the tangent is the exact derivative along ``tangents`` (leaf -> direction, same shapes),
        None where it is zero."""
        env = self.values if values is None else {**self.values, **values}
        tangents = tangents or {}
        memo: dict = {}

        def ev(e):
            if e in memo:
                return memo[e]
            if e in env:
                out = (env[e], tangents.get(e))
            elif isinstance(e, Identity):
                out = (self.eye(self.shape(e)[0]), None)
            elif isinstance(e, ZeroMatrix):
                out = (np.zeros((self.points, *self.shape(e)), dtype=np.int64), None)
            elif e.is_Number:
                out = (np.full((1, 1, 1), _residue(e), dtype=np.int64), None)
            elif isinstance(e, (MatAdd, sp.Add)):
                parts = [ev(a) for a in e.args]
                out = (sum(p[0] for p in parts) % PRIME, _sum_tangents(parts))
            elif isinstance(e, MatMul):
                coeff, mats = e.as_coeff_matrices()
                out = _chain([ev(coeff)] + [ev(a) for a in mats], matrix=True)
            elif isinstance(e, (sp.Mul, HadamardProduct)):
                out = _chain([ev(a) for a in e.args], matrix=False)
            elif isinstance(e, Transpose):
                v, d = ev(e.arg)
                out = (v.transpose(0, 2, 1), None if d is None else d.transpose(0, 2, 1))
            elif isinstance(e, Trace):
                v, d = ev(e.arg)
                out = (_trace(v), None if d is None else _trace(d))
            elif isinstance(e, (MatPow, sp.Pow)) and e.exp.is_Integer and (e.exp >= 0 or isinstance(e, sp.Pow)):
                out = self._power(ev(e.base), int(e.exp), isinstance(e, MatPow), e)
            else:
                raise NotPolynomial(f"{e} is not a polynomial expression, so it has no exact evaluation")
            memo[e] = out
            return out

        return ev(expr)

    def _power(self, base, p: int, matrix: bool, e):
        v, d = base
        if p < 0:  # a scalar 1/x: x⁻¹ = x^(p−2) in GF(p), and d(1/x) = −dx/x²
            inv = np.vectorize(lambda a: pow(int(a), PRIME - 2, PRIME), otypes=[np.int64])(v)
            if np.any(v % PRIME == 0):
                raise ZeroDivisionError(f"{e}: the random point makes a denominator vanish")
            base = (inv, None if d is None else (-d % PRIME) * inv % PRIME * inv % PRIME)
            return self._power(base, -p, False, e)
        result = (self.eye(v.shape[-1]) if matrix else np.ones_like(v), None)
        for _ in range(p):
            result = _chain([result, (v, d)], matrix=matrix)
        return result

    def same(self, a, b) -> bool:
        """Exact equality of two evaluated values (arrays of residues) at every point."""
        a, b = np.broadcast_arrays(np.asarray(a) % PRIME, np.asarray(b) % PRIME)
        return bool(np.all(a == b))


def _trace(v):
    return (np.trace(v, axis1=-2, axis2=-1) % PRIME)[:, None, None]


def _sum_tangents(parts):
    out = None
    for _, d in parts:
        out = _add(out, d)
    return out


def _chain(parts, matrix: bool):
    """The product of dual numbers in order (matrix products, scalars (points, 1, 1) broadcast)."""
    def times(a, b):
        if matrix and a.shape[-2:] != (1, 1) and b.shape[-2:] != (1, 1):
            return _mm(a, b)
        return a * b % PRIME

    value, tangent = parts[0]
    for v, d in parts[1:]:
        new_tangent = None
        if tangent is not None:
            new_tangent = times(tangent, v)
        if d is not None:
            new_tangent = _add(new_tangent, times(value, d))
        value, tangent = times(value, v), new_tangent
    return value, tangent


def is_matrix(expr) -> bool:
    return isinstance(expr, MatrixExpr)
