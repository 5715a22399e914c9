r"""Symbolic matrix calculus for the quantities the proofs track, with exact and numeric checks.

A *quantity* is a sympy expression in the factors ``U`` (m×k) and ``V`` (n×k), the target ``Sigma``
(m×n) and its pieces (``Phi``, ``Psi``, ``Phi_perp``, ``Psi_perp``, ``Sigma_star``), written with
``MatrixSymbol`` arithmetic, e.g. ``trace((U.T*U - V.T*V)**2)``; it may be scalar or matrix-valued.
pgflow derives

* its gradient with respect to ``U`` and ``V`` (scalar quantities): :func:`gradient`;
* its time derivative along GF, residual- and additive-form PGF and the modified flow:
  :func:`time_derivative`, the chain rule ``d/dt q = Dq[U̇, V̇]`` (= ⟨∇_U q, U̇⟩ + ⟨∇_V q, V̇⟩);
* its exact one-step change under gradient descent as a polynomial in ``eta``: :func:`gd_step`;

and compiles any expression into a batched numpy function: :func:`compile_expr`, :func:`evaluate`.

How the derivations are done, and why not with ``expr.diff(MatrixSymbol)``
------------------------------------------------------------------------
sympy's matrix differentiation fails on the first quantity anyone writes here
(``trace((U.T*U - V.T*V)**2).diff(U)`` raises inside its array code, so does ``sqrt(trace(...))``)
and returns 4-index arrays for matrix-valued quantities such as ``U.T*U - V.T*V``, whose time
derivative is what a conservation law is about. pgflow therefore differentiates with its own
product rule (:func:`directional`, a Fréchet derivative ``Dq[ΔU, ΔV]`` that works for scalar and
matrix quantities and for spectral functions such as ``norm``), extracts gradients from the linear
functional ``Dq[ΔU]`` by cyclic permutation under the trace, and gets the GD step by expanding
``q(U − ηG_U, V − ηG_V)`` in the non-commuting factors. Expansions distribute only over sums that
involve the direction, so ``Sigma - U*V.T`` stays one factor: the numeric functions then evaluate the
residual once and do not cancel catastrophically near a minimum.

Every derivation is checked independently *componentwise* (:func:`explicit`, :func:`vanishes`,
:func:`verify`): every matrix becomes an explicit small matrix of scalar symbols (m=3, n=2, k=2 is
plenty), sympy differentiates entry by entry, and the difference is expanded to exactly 0.
Expressions that mention the target's singular vectors are made explicit in Ye & Du's rotated frame
(Φ = [I; 0], Ψ = [I; 0], Σ = Φ diag(s) Ψᵀ), which loses no generality because every quantity here is
invariant under the rotation x ↦ (QU, Q'V), Σ ↦ QΣQ'ᵀ.

Numeric evaluation
------------------
:func:`compile_expr` turns an expression into numpy code (each distinct subexpression is computed
once). sympy's ``lambdify`` is not used because its printers have no ``Trace``, print scalar factors
of a ``MatMul`` as ``.dot(2)``, and transpose with ``.T``, which cannot batch: here every matrix may
carry leading batch axes (the saved states of a trajectory, shape (T, m, k)), transposes swap the
last two axes, and scalars are carried as (..., 1, 1) so they broadcast against matrices.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
import sympy as sp
from sympy import (HadamardProduct, Identity, Inverse, MatAdd, MatMul, MatPow, MatrixExpr, MatrixSymbol, Trace,
                   Transpose, ZeroMatrix)

# ---------------------------------------------------------------------------------------------
# Vocabulary: sizes, the state, the target, perturbations and scalar parameters
# ---------------------------------------------------------------------------------------------

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


def trace(X) -> sp.Expr:
    """tr X for a square matrix expression (shape-checked)."""
    _check_square(X, "trace")
    return Trace(X)


def fro2(X) -> sp.Expr:
    """‖X‖²_F = tr(XᵀX)."""
    return Trace(X.T * X)


# ---------------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------------

def format_shape(shape) -> str:
    """``(m, k)`` as ``m×k``; scalars as ``scalar``."""
    if shape is None:
        return "scalar"
    return "×".join(str(s) if isinstance(s, (int, sp.Symbol, sp.Integer)) else f"({s})" for s in shape)


def _same_dim(a, b) -> bool:
    return a == b or sp.expand(sp.sympify(a) - sp.sympify(b)) == 0


def _check_square(X, what: str) -> None:
    if not isinstance(X, MatrixExpr):
        raise ShapeError(f"{what} needs a square matrix, got the scalar {X}")
    if not _same_dim(*X.shape):
        raise ShapeError(f"{what} needs a square matrix, got {X} of shape {format_shape(X.shape)}")


def shape_of(expr):
    """The shape of ``expr`` (None for a scalar), checking every product, sum and trace inside it.

    sympy only rejects a product such as ``U*V`` when it can decide that the inner sizes differ,
    which with symbolic sizes (k against n) it cannot; this check compares the sizes structurally.

    Raises
    ------
    ShapeError
        Naming the smallest offending sub-expression and the shapes involved.
    """
    return _shape(sp.sympify(expr), {})


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
                if not _same_dim(sa[1], sb[0]):
                    raise ShapeError(f"{e}: cannot multiply {a} ({format_shape(sa)}) by {b} ({format_shape(sb)}); "
                                     f"inner sizes {sa[1]} and {sb[0]} differ")
        elif isinstance(e, (MatAdd, HadamardProduct)):
            shapes = [_shape(a, memo) for a in e.args]
            for a, sa in zip(e.args, shapes):
                if sa is None:
                    raise ShapeError(f"{e}: cannot add the scalar {a} to a matrix")
                if not (_same_dim(sa[0], shapes[0][0]) and _same_dim(sa[1], shapes[0][1])):
                    raise ShapeError(f"{e}: cannot add {e.args[0]} ({format_shape(shapes[0])}) and {a} "
                                     f"({format_shape(sa)})")
        elif isinstance(e, (MatPow, Inverse)):
            _shape(e.args[0], memo)
            _check_square(e.args[0], "a matrix power or inverse")
        else:
            for a in e.args:
                _shape(a, memo)
        out = tuple(e.shape)
    else:
        if isinstance(e, Trace):
            _shape(e.arg, memo)
            _check_square(e.arg, "trace")
        elif isinstance(e, MatrixFunction):
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


# ---------------------------------------------------------------------------------------------
# Spectral functions: scalar functions of a matrix with a derivative rule and a numpy kernel
# ---------------------------------------------------------------------------------------------

def _sym(X):
    return 0.5 * (X + np.swapaxes(X, -1, -2))


def _col(x):
    return x[..., None, None]


class MatrixFunction(sp.Function):
    """Base of the spectral functions: commutative real scalars of matrix arguments.

    Subclasses define ``label`` (the name in the claim language), ``kernel`` (numpy, batched over
    leading axes, returning shape (...)) and, if differentiable, ``rate(dX)`` (the derivative along
    Ẋ = dX, a sympy expression). The first ``matrix_args`` arguments are matrices.
    """

    is_commutative = True
    is_real = True
    square = False
    matrix_args = 1

    @classmethod
    def eval(cls, *args):
        for a in args[:cls.matrix_args]:
            if not isinstance(a, MatrixExpr):
                raise ShapeError(f"{cls.label}() needs a matrix argument, got the scalar {a}")
        return None

    def check_args(self) -> None:
        if self.square:
            _check_square(self.args[0], f"{self.label}()")
        if self.matrix_args == 2 and not all(map(_same_dim, self.args[0].shape, self.args[1].shape)):
            raise ShapeError(f"{self}: a matrix and its derivative must have the same shape")

    def _sympystr(self, printer):
        return f"{self.label}({', '.join(printer.doprint(a) for a in self.args)})"


class _SingularValue(MatrixFunction):
    """σ_which(X) (0: largest, −1: the min(rows, cols)-th); its rate is uᵀẊv for its singular pair."""
    nargs = 1
    which = 0

    @classmethod
    def kernel(cls, X):
        if 0 in X.shape[-2:]:
            return np.zeros(X.shape[:-2])
        return np.linalg.svd(X, compute_uv=False)[..., cls.which]

    def rate(self, dX):
        return SingularRate(self.args[0], dX, sp.Integer(self.which))


class OpNorm(_SingularValue):
    """‖X‖, the spectral norm (largest singular value)."""
    label, which = "norm", 0


class SigmaMin(_SingularValue):
    """σ_min(X), the min(rows, cols)-th singular value."""
    label, which = "sigma_min", -1


class _Eigenvalue(MatrixFunction):
    """λ_which of the symmetric part (X + Xᵀ)/2 (= X for symmetric X); its rate is vᵀ sym(Ẋ) v."""
    nargs = 1
    square = True
    which = 0

    @classmethod
    def kernel(cls, X):
        return np.linalg.eigvalsh(_sym(X))[..., cls.which]

    def rate(self, dX):
        return EigenRate(self.args[0], dX, sp.Integer(self.which))


class LambdaMin(_Eigenvalue):
    """λ_min of the symmetric part."""
    label, which = "lambda_min", 0


class LambdaMax(_Eigenvalue):
    """λ_max of the symmetric part."""
    label, which = "lambda_max", -1


class FroNorm(MatrixFunction):
    """‖X‖_F; its rate is tr(XᵀẊ)/‖X‖_F. Evaluated as a norm, never as √tr(XᵀX), which rounding can
    make the square root of a negative number when X is the difference of nearly equal terms."""
    label = "fro"
    nargs = 1

    @staticmethod
    def kernel(X):
        return np.linalg.norm(X, axis=(-2, -1)) if 0 not in X.shape[-2:] else np.zeros(X.shape[:-2])

    def rate(self, dX):
        return Trace(self.args[0].T * dX) / self


class SingularRate(MatrixFunction):
    """d/dt σ_i(X) = u_iᵀ Ẋ v_i (i = 0: largest, −1: smallest), valid where σ_i is simple."""
    label = "singular_rate"
    nargs = 3
    matrix_args = 2

    @staticmethod
    def kernel(X, dX, which):
        if 0 in X.shape[-2:]:
            return np.zeros(np.broadcast_shapes(X.shape[:-2], dX.shape[:-2]))
        u, _, vt = np.linalg.svd(X)
        i = int(which) % min(X.shape[-2:])
        return np.einsum("...i,...ij,...j->...", u[..., :, i], dX, vt[..., i, :])


class EigenRate(MatrixFunction):
    """d/dt λ_i(sym X) = v_iᵀ sym(Ẋ) v_i (i = 0: smallest, −1: largest), valid where λ_i is simple."""
    label = "eigen_rate"
    nargs = 3
    matrix_args = 2

    @staticmethod
    def kernel(X, dX, which):
        v = np.linalg.eigh(_sym(X))[1][..., :, int(which)]
        return np.einsum("...i,...ij,...j->...", v, _sym(dX), v)


def norm(X) -> sp.Expr:
    """Spectral norm ‖X‖ (for a scalar: |x|)."""
    return sp.Abs(X) if not isinstance(X, MatrixExpr) else OpNorm(X)


def fro(X) -> sp.Expr:
    """Frobenius norm ‖X‖_F (for a scalar: |x|)."""
    return sp.Abs(X) if not isinstance(X, MatrixExpr) else FroNorm(X)


def lambda_min(X) -> sp.Expr:
    """Smallest eigenvalue of the symmetric part of a square matrix."""
    f = LambdaMin(X)
    f.check_args()
    return f


def lambda_max(X) -> sp.Expr:
    """Largest eigenvalue of the symmetric part of a square matrix."""
    f = LambdaMax(X)
    f.check_args()
    return f


def sigma_min(X) -> sp.Expr:
    """Smallest singular value σ_min(X) (the min(rows, cols)-th)."""
    return SigmaMin(X)


def sigma_max(X) -> sp.Expr:
    """Largest singular value = spectral norm."""
    return OpNorm(X)


# ---------------------------------------------------------------------------------------------
# Directional (Fréchet) derivative
# ---------------------------------------------------------------------------------------------

def _zero_like(e):
    return ZeroMatrix(*e.shape) if isinstance(e, MatrixExpr) else sp.Integer(0)


def _is_zero(e) -> bool:
    return e == 0 or isinstance(e, ZeroMatrix)


def _add(terms, like):
    terms = [a for a in terms if not _is_zero(a)]
    if not terms:
        return _zero_like(like)
    return functools.reduce(lambda a, b: a + b, terms)


def _mul(factors):
    if any(_is_zero(f) for f in factors):
        first = [f for f in factors if isinstance(f, MatrixExpr)]
        return ZeroMatrix(first[0].shape[0], first[-1].shape[1]) if first else sp.Integer(0)
    return functools.reduce(lambda a, b: a * b, factors)


def directional(expr, direction: dict):
    r"""The Fréchet derivative D expr[direction] by the product and chain rules.

    Parameters
    ----------
    expr : sympy expression (scalar or matrix)
    direction : dict
        Leaf -> its derivative: ``{U: U̇, V: V̇}`` (matrix expressions of the leaf's shape), optionally
        a scalar symbol such as ``t: 1``. Leaves not in the dict are constants.

    Returns
    -------
    sympy expression of the shape of ``expr``
        Unexpanded (sums such as Σ − UVᵀ stay whole). Spectral functions contribute their rate
        (e.g. ``norm(X)`` → u₁ᵀ DX v₁), valid where the singular value or eigenvalue is simple.
    """
    leaves = tuple(direction)
    for leaf, d in direction.items():
        if isinstance(leaf, MatrixExpr) and not (isinstance(d, MatrixExpr) and tuple(d.shape) == tuple(leaf.shape)):
            raise ShapeError(f"direction for {leaf} must be a matrix of shape {format_shape(leaf.shape)}, got {d}")
    memo: dict = {}

    def D(e):
        if e in memo:
            return memo[e]
        if not e.has(*leaves):
            out = _zero_like(e)
        elif e in direction:
            out = sp.sympify(direction[e])
        elif isinstance(e, MatAdd):
            out = _add([D(a) for a in e.args], e)
        elif isinstance(e, MatMul):
            coeff, mats = e.as_coeff_matrices()
            terms = [_mul([D(coeff), *mats])]
            terms += [_mul([coeff, *mats[:i], D(a), *mats[i + 1:]]) for i, a in enumerate(mats)]
            out = _add(terms, e)
        elif isinstance(e, Transpose):
            d = D(e.arg)
            out = _zero_like(e) if _is_zero(d) else d.T
        elif isinstance(e, Trace):
            d = D(e.arg)
            out = sp.Integer(0) if _is_zero(d) else Trace(d)
        elif isinstance(e, MatPow) and e.exp.is_Integer and e.exp > 0:
            p, X = int(e.exp), e.base
            out = _add([_mul([*([X] * i), D(X), *([X] * (p - 1 - i))]) for i in range(p)], e)
        elif isinstance(e, (Inverse, MatPow)):  # X⁻ᵖ = (X⁻¹)ᵖ, D X⁻¹ = −X⁻¹ DX X⁻¹
            if isinstance(e, MatPow) and not (e.exp.is_Integer and e.exp < 0):
                raise NotPolynomial(f"cannot differentiate the matrix power {e}")
            inv = Inverse(e.args[0])
            dinv = -inv * D(e.args[0]) * inv
            p = 1 if isinstance(e, Inverse) else -int(e.exp)
            out = _add([_mul([*([inv] * i), dinv, *([inv] * (p - 1 - i))]) for i in range(p)], e)
        elif isinstance(e, HadamardProduct):
            out = _add([HadamardProduct(*e.args[:i], D(a), *e.args[i + 1:]) for i, a in enumerate(e.args)], e)
        elif isinstance(e, MatrixFunction):
            if not hasattr(e, "rate"):
                raise TypeError(f"{e} has no derivative rule")
            d = D(e.args[0])
            out = sp.Integer(0) if _is_zero(d) else e.rate(d)
        elif isinstance(e, MatrixExpr):
            raise TypeError(f"cannot differentiate the matrix expression {e} ({type(e).__name__})")
        elif isinstance(e, sp.Add):
            out = _add([D(a) for a in e.args], e)
        elif isinstance(e, sp.Mul):
            out = _add([_mul([*e.args[:i], D(a), *e.args[i + 1:]]) for i, a in enumerate(e.args)], e)
        elif isinstance(e, sp.Pow):
            base, ex = e.args
            if ex.has(*leaves):
                raise TypeError(f"cannot differentiate {e}: its exponent depends on the state")
            out = _mul([ex, base ** (ex - 1), D(base)])
        elif isinstance(e, sp.Abs):  # d|x| = sign(x) dx for real x; sympy's own rule assumes complex x
            out = _mul([sp.sign(e.args[0]), D(e.args[0])])
        elif isinstance(e, sp.Function) and len(e.args) == 1:  # exp, log, ...
            x = sp.Dummy("x")
            out = _mul([e.func(x).diff(x).subs(x, e.args[0]), D(e.args[0])])
        else:
            raise TypeError(f"cannot differentiate {e} ({type(e).__name__})")
        memo[e] = out
        return out

    return D(sp.sympify(expr)).doit()


# ---------------------------------------------------------------------------------------------
# Expansion into non-commuting monomials (for gradients and exact GD polynomials)
# ---------------------------------------------------------------------------------------------

def _monomials(X, wrt) -> list:
    """X = Σ c·F₁⋯F_p as [(c, (F₁, …, F_p))], distributing only over sums that involve ``wrt``.

    The parts of a sum that do not involve ``wrt`` are kept together as one factor.
    """
    if not X.has(*wrt):
        return [(sp.Integer(1), (X,))]
    if isinstance(X, MatrixSymbol):
        return [(sp.Integer(1), (X,))]
    if isinstance(X, MatAdd):
        involved, free = [], []
        for a in X.args:
            for c, fs in _monomials(a, wrt):
                (involved if (c.has(*wrt) or any(f.has(*wrt) for f in fs)) else free).append((c, fs))
        if len(free) == 1:
            involved.append(free[0])
        elif free:
            involved.append((sp.Integer(1), (_add([c * _mul(list(fs)) for c, fs in free], X),)))
        return involved
    if isinstance(X, MatMul):
        coeff, mats = X.as_coeff_matrices()
        out = [(c, ()) for c in sp.Add.make_args(_expand_scalar(coeff, wrt))]
        for a in mats:
            out = [(c1 * c2, f1 + f2) for (c1, f1), (c2, f2) in itertools.product(out, _monomials(a, wrt))]
        return out
    if isinstance(X, Transpose):
        return [(c, tuple(f.T for f in reversed(fs))) for c, fs in _monomials(X.arg, wrt)]
    if isinstance(X, MatPow) and X.exp.is_Integer and X.exp > 0:
        return _monomials(MatMul(*([X.base] * int(X.exp))), wrt)
    raise NotPolynomial(f"{X} is not a polynomial in {', '.join(map(str, wrt))}")


def _canonical_trace(fs) -> sp.Expr:
    """tr(F₁⋯F_p) written in one canonical rotation / transposition, so equal traces collect."""
    fs = tuple(fs)
    back = tuple(f.T for f in reversed(fs))
    candidates = [seq[i:] + seq[:i] for seq in (fs, back) for i in range(len(seq))]
    best = min(candidates, key=lambda seq: tuple(sp.srepr(f) for f in seq))
    return Trace(best[0] if len(best) == 1 else MatMul(*best))


def _expand_scalar(s, wrt) -> sp.Expr:
    """A scalar expression expanded so that every trace involving ``wrt`` is tr(monomial)."""
    s = sp.sympify(s)
    if not s.has(*wrt) or s.is_Symbol:
        return s
    if isinstance(s, Trace):
        return sp.Add(*[c * _canonical_trace(fs) for c, fs in _monomials(s.arg, wrt)])
    if isinstance(s, (sp.Add, sp.Mul)):
        return sp.expand(s.func(*[_expand_scalar(a, wrt) for a in s.args]), deep=False)
    if isinstance(s, sp.Pow) and s.exp.is_Integer and s.exp > 0:
        return sp.expand(_expand_scalar(s.base, wrt) ** s.exp, deep=False)
    raise NotPolynomial(f"{s} is not a polynomial in {', '.join(map(str, wrt))}")


def _product(fs, shape):
    return Identity(shape[0]) if not fs else (fs[0] if len(fs) == 1 else MatMul(*fs))


@functools.lru_cache(maxsize=None)
def _gradient(q, X):
    dX = MatrixSymbol(f"d{X.name}", *X.shape)
    try:
        L = _expand_scalar(directional(q, {X: dX}), (dX,))
    except NotPolynomial:
        raise NotPolynomial(f"{q} has no symbolic gradient: its derivative is not a trace ⟨G, d{X.name}⟩ (spectral "
                            f"functions such as norm or lambda_min only have directional derivatives; use "
                            f"directional() or time_derivative())") from None
    terms = []
    for term in sp.Add.make_args(L):
        if term == 0:
            continue
        factors = sp.Mul.make_args(term)
        carriers = [f for f in factors if f.has(dX)]
        if len(carriers) != 1 or not isinstance(carriers[0], Trace):
            raise NotPolynomial(f"cannot write the derivative term {term} as a trace ⟨G, d{X.name}⟩")
        coeff = sp.Mul(*[f for f in factors if f is not carriers[0]])
        arg = carriers[0].arg
        fs = arg.args if isinstance(arg, MatMul) else (arg,)
        i = next(j for j, f in enumerate(fs) if f.has(dX))
        rest = fs[i + 1:] + fs[:i]
        if fs[i] == dX:  # tr(rest · dX) = ⟨restᵀ, dX⟩
            terms.append(coeff * _product(tuple(f.T for f in reversed(rest)), X.shape))
        elif fs[i] == dX.T:  # tr(dXᵀ · rest) = ⟨rest, dX⟩
            terms.append(coeff * _product(rest, X.shape))
        else:
            raise NotPolynomial(f"d{X.name} appears inside {fs[i]}")
    return _add(terms, X).doit()


def gradient(q, wrt=U):
    """∇_wrt q of a scalar quantity, as a matrix expression of the shape of ``wrt``.

    Parameters
    ----------
    q : str or sympy scalar expression
        A catalogue name (see :data:`QUANTITIES`) or an expression.
    wrt : MatrixSymbol
        ``U`` or ``V`` (or any other leaf).

    Returns
    -------
    MatrixExpr
        G with Dq[ΔX] = ⟨G, ΔX⟩ = tr(GᵀΔX), from the directional derivative by cyclic permutation
        under the trace. Quantities with spectral functions (norm, λ_min, …) have no symbolic gradient.

    Examples
    --------
    >>> gradient("loss", U)
    -(Sigma - U*V.T)*V
    """
    q = _as_expr(q)
    if not is_scalar(q):
        raise ShapeError(f"gradient needs a scalar quantity; {q} has shape {format_shape(shape_of(q))}")
    if not isinstance(wrt, MatrixSymbol):
        raise TypeError(f"wrt must be a MatrixSymbol such as U or V, got {wrt!r}")
    return _gradient(q, wrt)


# ---------------------------------------------------------------------------------------------
# Catalogue of quantities
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Quantity:
    """A named quantity of the state.

    Attributes
    ----------
    name : str
    expr : sympy expression
        In the leaves of :data:`SYMBOLS`; scalar or matrix-valued.
    description : str
        The formula in words, with its source.
    """

    name: str
    expr: sp.Basic
    description: str

    @property
    def shape(self):
        """Symbolic shape, None for a scalar."""
        return shape_of(self.expr)


def _catalogue() -> dict[str, Quantity]:
    R = Sigma - U * V.T
    U1, V1 = Phi.T * U, Psi.T * V
    J, K = Phi_perp.T * U, Psi_perp.T * V
    A, B = (U1 + V1) / 2, (U1 - V1) / 2
    loss = fro2(R) / 2
    G_U, G_V = _gradient(loss, U), _gradient(loss, V)
    entries = [
        ("loss", loss, "f = ½‖UVᵀ − Σ‖²_F (MATH.md §1)"),
        ("R", R, "residual Σ − UVᵀ, m×n"),
        ("G_U", G_U, "∇_U f = −RV, derived symbolically from loss"),
        ("G_V", G_V, "∇_V f = −RᵀU, derived symbolically from loss"),
        ("grad_sq", fro2(G_U) + fro2(G_V), "‖∇f‖²_F = ‖G_U‖²_F + ‖G_V‖²_F"),
        ("UtU", U.T * U, "UᵀU, k×k"),
        ("VtV", V.T * V, "VᵀV, k×k"),
        ("imbalance", U.T * U - V.T * V, "UᵀU − VᵀV, k×k; conserved by GF and residual-form PGF"),
        ("imbalance_sq", fro2(U.T * U - V.T * V), "‖UᵀU − VᵀV‖²_F"),
        ("U1", U1, "ΦᵀU, r×k: the signal part of U (Ye & Du's top block)"),
        ("V1", V1, "ΨᵀV, r×k: the signal part of V"),
        ("J", J, "Φ⊥ᵀU, (m−r)×k: the noise part of U (Ye & Du's J)"),
        ("K", K, "Ψ⊥ᵀV, (n−r)×k: the noise part of V (Ye & Du's K)"),
        ("signal_U", fro2(U1), "‖ΦᵀU‖²_F"),
        ("signal_V", fro2(V1), "‖ΨᵀV‖²_F"),
        ("noise_U", fro2(J), "‖Φ⊥ᵀU‖²_F"),
        ("noise_V", fro2(K), "‖Ψ⊥ᵀV‖²_F"),
        ("A", A, "(ΦᵀU + ΨᵀV)/2, r×k: Ye & Du's symmetric part"),
        ("B", B, "(ΦᵀU − ΨᵀV)/2, r×k: Ye & Du's asymmetric part"),
        ("P", Sigma_star - A * A.T + B * B.T, "Σ* − AAᵀ + BBᵀ, r×r (Ye & Du)"),
        ("S", A * B.T - B * A.T, "ABᵀ − BAᵀ, r×r (Ye & Du); Φᵀ(Σ − UVᵀ)Ψ = P + S"),
        ("A_sq", fro2(A), "‖A‖²_F"),
        ("B_sq", fro2(B), "‖B‖²_F (Ye & Du Stage 1: ‖B‖_F ≤ 2c·d·ε)"),
        ("J_sq", fro2(J), "‖J‖²_F"),
        ("K_sq", fro2(K), "‖K‖²_F"),
    ]
    return {name: Quantity(name, expr, doc) for name, expr, doc in entries}


QUANTITIES: dict[str, Quantity] = _catalogue()
"""The named quantities; each ``expr`` is a sympy expression in :data:`SYMBOLS`."""


def _as_expr(q):
    if isinstance(q, str):
        if q not in QUANTITIES:
            import difflib
            close = difflib.get_close_matches(q, list(QUANTITIES), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise KeyError(f"unknown quantity {q!r}{hint}; known: {', '.join(QUANTITIES)}")
        return QUANTITIES[q].expr
    if isinstance(q, Quantity):
        return q.expr
    if not isinstance(q, sp.Basic):
        raise TypeError(f"a quantity must be a catalogue name, a Quantity or a sympy expression, "
                        f"got {type(q).__name__}")
    return q


# ---------------------------------------------------------------------------------------------
# Dynamics: right-hand sides built on the one symbolic gradient, time derivatives, GD steps
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def vector_field(dynamics: str) -> tuple:
    r"""(U̇, V̇) of a flow, built on the symbolic gradient G = (G_U, G_V) of ``loss``.

    gf: −G. pgf_residual: −G + (EV, EᵀU), i.e. U̇ = (Σ − UVᵀ + E)V. pgf_additive: −G + (E_U, E_V).
    modified: −G − (η/2)∇²f·G with ∇²f·G = DG[G] (backward error analysis of GD, MATH.md §3).
    """
    G_U, G_V = QUANTITIES["G_U"].expr, QUANTITIES["G_V"].expr
    if dynamics == "gf":
        return -G_U, -G_V
    if dynamics == "pgf_residual":
        return -G_U + E * V, -G_V + E.T * U
    if dynamics == "pgf_additive":
        return -G_U + E_U, -G_V + E_V
    if dynamics == "modified":
        HG_U = directional(G_U, {U: G_U, V: G_V})
        HG_V = directional(G_V, {U: G_U, V: G_V})
        return -G_U - eta / 2 * HG_U, -G_V - eta / 2 * HG_V
    raise ValueError(f"dynamics must be one of {DYNAMICS[:-1]} for a vector field, got {dynamics!r}")


def _check_differentiable(q, what: str) -> None:
    for p in PERTURBATIONS:
        if q.has(p):
            raise ValueError(f"cannot take {what} of {q}: it contains the perturbation {p}, "
                             f"and pgflow does not model d{p}/dt")


@functools.lru_cache(maxsize=None)
def _time_derivative(q, dynamics):
    U_dot, V_dot = vector_field(dynamics)
    return directional(q, {U: U_dot, V: V_dot, t: sp.Integer(1)})


def time_derivative(q, dynamics: str = "gf"):
    r"""d/dt q along a flow: the chain rule Dq[U̇, V̇] (+ ∂q/∂t if q mentions ``t``).

    Parameters
    ----------
    q : str, Quantity or sympy expression (scalar or matrix)
    dynamics : {"gf", "pgf_residual", "pgf_additive", "modified"}
        For "gd" use :func:`gd_step`.

    Returns
    -------
    sympy expression of the shape of q; mentions ``E`` (``E_U``, ``E_V``) for PGF, ``eta`` for
    the modified flow.

    Examples
    --------
    >>> vanishes(time_derivative("imbalance", "pgf_residual"))
    True
    """
    q = _as_expr(q)
    shape_of(q)
    _check_differentiable(q, "the time derivative")
    if dynamics == "gd":
        raise ValueError("gradient descent has no time derivative: use gd_step(q) for its exact one-step change")
    return _time_derivative(q, dynamics)


def _by_power(pieces, h):
    """Group [(c, factors)] into {j: Σ c_j·factors} by the power j of ``h`` in each scalar term of c."""
    groups: dict = {}
    for c, fs in pieces:
        for term in sp.Add.make_args(sp.expand(c)):
            rest, j = term.as_coeff_exponent(h)
            groups.setdefault(int(j), []).append(rest * _mul(list(fs)) if fs else rest)
    return groups


@functools.lru_cache(maxsize=None)
def _gd_step(q):
    dU, dV = MatrixSymbol("dU", *U.shape), MatrixSymbol("dV", *V.shape)
    # The step size is a fresh symbol h, set to eta only at the end: q may itself mention eta, and
    # shifting by eta would mix the powers of the step with those of q (e.g. eta*loss would lose
    # only its h⁰ part if the two were one symbol).
    h = sp.Dummy("h")
    shifted = q.xreplace({U: U + h * dU, V: V + h * dV, t: t + h})
    wrt = (dU, dV, h)
    if isinstance(q, MatrixExpr):
        groups = _by_power(_monomials(shifted, wrt), h)
    else:
        groups = _by_power([(_expand_scalar(shifted, wrt), ())], h)
    G_U, G_V = QUANTITIES["G_U"].expr, QUANTITIES["G_V"].expr
    increment = _add([h ** j * _add(terms, q) for j, terms in sorted(groups.items()) if j >= 1], q)
    return increment.xreplace({dU: -G_U, dV: -G_V, h: eta}).doit()


def gd_step(q):
    r"""q(U₊, V₊) − q(U, V) for one GD step U₊ = U − ηG_U, V₊ = V − ηG_V: an exact polynomial in η.

    Parameters
    ----------
    q : str, Quantity or sympy expression, polynomial in U and V

    Returns
    -------
    sympy expression of the shape of q: Σ_{j≥1} η^j c_j with each c_j a matrix polynomial in
    U, V, Σ. The terms of order j are cancellation-free (q(U, V) itself never appears).

    Raises
    ------
    NotPolynomial
        q has spectral functions, inverses or non-integer powers of the state.

    Examples
    --------
    >>> G_U, G_V = QUANTITIES["G_U"].expr, QUANTITIES["G_V"].expr
    >>> vanishes(gd_step("imbalance") - eta**2 * (G_U.T*G_U - G_V.T*G_V))
    True
    """
    q = _as_expr(q)
    shape_of(q)
    _check_differentiable(q, "the GD step")
    return _gd_step(q)


# ---------------------------------------------------------------------------------------------
# Componentwise (exact) checks
# ---------------------------------------------------------------------------------------------

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
    q = _as_expr(q)
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


# ---------------------------------------------------------------------------------------------
# Numeric evaluation: expression -> batched numpy code
# ---------------------------------------------------------------------------------------------

def _tr(X):
    return np.trace(X, axis1=-2, axis2=-1)[..., None, None]


def _tr2(X, Y):  # tr(XY) without forming XY
    return np.sum(X * np.swapaxes(Y, -1, -2), axis=(-2, -1))[..., None, None]


def _fro2(X):
    return np.sum(X * X, axis=(-2, -1))[..., None, None]


def _T_np(X):
    return np.swapaxes(X, -1, -2)


def _mpow(X, p):
    return np.linalg.matrix_power(X, p)


_RUNTIME = {"_tr": _tr, "_tr2": _tr2, "_fro2": _fro2, "_T": _T_np, "_mpow": _mpow,
            "_inv": np.linalg.inv, "_eye": lambda a: np.eye(int(a)), "_zeros": lambda a, b: np.zeros((int(a), int(b))),
            "_sqrt": np.sqrt, "_abs": np.abs, "_sign": np.sign, "_exp": np.exp, "_log": np.log, "_col": _col,
            "_max": lambda *a: functools.reduce(np.maximum, a), "_min": lambda *a: functools.reduce(np.minimum, a)}
_SCALAR_FUNCS = {sp.Abs: "_abs", sp.sign: "_sign", sp.exp: "_exp", sp.log: "_log"}


class _Codegen:
    """Python source for one expression; every distinct non-leaf subexpression gets one variable."""

    def __init__(self):
        self.lines: list[str] = []
        self.memo: dict = {}
        self.leaves: dict = {}  # identifier -> sympy leaf
        self.kernels: dict = {}

    def ref(self, e) -> str:
        if e in self.memo:
            return self.memo[e]
        code = self.code(e)
        if isinstance(e, (sp.Symbol, MatrixSymbol)) or e.is_Number:
            return code
        var = f"_v{len(self.lines)}"
        self.lines.append(f"    {var} = {code}")
        self.memo[e] = var
        return var

    def leaf(self, e) -> str:
        name = e.name
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"leaf name {name!r} is not a plain identifier")
        if self.leaves.setdefault(name, e) != e:
            raise ValueError(f"two different leaves are both called {name!r}: {self.leaves[name]!r} and {e!r}")
        return name

    def code(self, e) -> str:
        ref = self.ref
        if isinstance(e, (MatrixSymbol, sp.Symbol)):
            return self.leaf(e)
        if e.is_Integer:
            return str(int(e))
        if e.is_Number:
            return repr(float(e))
        if isinstance(e, Identity):
            return f"_eye({ref(e.shape[0])})"
        if isinstance(e, ZeroMatrix):
            return f"_zeros({ref(e.shape[0])}, {ref(e.shape[1])})"
        if isinstance(e, (MatAdd, sp.Add)):
            return " + ".join(ref(a) for a in e.args)
        if isinstance(e, MatMul):
            coeff, mats = e.as_coeff_matrices()
            prod = " @ ".join(ref(a) for a in mats)
            return prod if coeff == 1 else f"{ref(coeff)} * ({prod})"
        if isinstance(e, (sp.Mul, HadamardProduct)):
            return " * ".join(ref(a) for a in e.args)
        if isinstance(e, Transpose):
            return f"_T({ref(e.arg)})"
        if isinstance(e, Trace):
            X = e.arg
            if isinstance(X, MatMul) and X.as_coeff_matrices()[0] == 1 and len(X.args) >= 2:
                first, rest = X.args[0], X.args[1:]
                if len(rest) == 1 and (first == rest[0].T or rest[0] == first.T):
                    return f"_fro2({ref(rest[0] if first == rest[0].T else first)})"
                return f"_tr2({ref(first)}, {ref(rest[0] if len(rest) == 1 else MatMul(*rest))})"
            return f"_tr({ref(X)})"
        if isinstance(e, MatPow) and e.exp.is_Integer:
            return f"_mpow({ref(e.base)}, {int(e.exp)})"
        if isinstance(e, Inverse):
            return f"_inv({ref(e.arg)})"
        if isinstance(e, sp.Pow):
            if e.exp == sp.Rational(1, 2):
                return f"_sqrt({ref(e.base)})"
            return f"({ref(e.base)}) ** ({ref(e.exp)})"
        if isinstance(e, (sp.Max, sp.Min)):
            return f"{'_max' if isinstance(e, sp.Max) else '_min'}({', '.join(ref(a) for a in e.args)})"
        if isinstance(e, MatrixFunction):
            key = f"_k_{type(e).__name__}"
            self.kernels[key] = type(e).kernel
            return f"_col({key}({', '.join(ref(a) for a in e.args)}))"
        if type(e) in _SCALAR_FUNCS:
            return f"{_SCALAR_FUNCS[type(e)]}({ref(e.args[0])})"
        raise TypeError(f"cannot evaluate {e} ({type(e).__name__}) numerically")


def _size(dim, sizes: dict) -> int | None:
    """A symbolic size such as m − r at concrete sizes, or None if some size is unknown."""
    value = sp.sympify(dim).xreplace({d: sp.Integer(int(v)) for d, v in sizes.items()})
    return int(value) if value.is_Integer else None


@dataclass(frozen=True, eq=False)
class Compiled:
    """A sympy expression compiled into batched numpy code (see :func:`compile_expr`).

    Attributes
    ----------
    expr : sympy expression
    shape : tuple or None
        Symbolic shape (None for a scalar).
    leaves : dict
        Identifier -> leaf (MatrixSymbol or Symbol) the function needs, sizes m, n, k, r included.
    source : str
        The generated Python code.
    """

    expr: sp.Basic
    shape: tuple | None
    leaves: dict
    source: str
    fn: object

    def __call__(self, **values) -> np.ndarray:
        """Evaluate on arrays given by leaf name.

        Matrices may carry leading batch axes ((T, m, k) for the saved states of a trajectory); scalar
        leaves may be numbers or arrays of the batch shape (T,). The sizes m, n, k, r are inferred from
        the matrices unless given.

        Returns
        -------
        ndarray, float64
            Shape batch (scalar expression) or batch + (rows, cols) (matrix expression).
        """
        unknown = sorted(set(values) - set(self.leaves) - {d.name for d in DIMS})
        if unknown:
            raise TypeError(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not among the leaves "
                            f"{sorted(self.leaves)} of {self.expr}")
        missing = sorted(set(self.leaves) - set(values) - {d.name for d in DIMS})
        if missing:
            raise TypeError(f"missing value(s) for {', '.join(missing)} to evaluate {self.expr}")
        sizes = {d: values[d.name] for d in DIMS if d.name in values}
        env, batch = {}, ()
        arrays = {}
        for name, leaf in self.leaves.items():
            if name in (d.name for d in DIMS):
                continue
            a = np.asarray(values[name], dtype=np.float64)
            if isinstance(leaf, MatrixSymbol):
                if a.ndim < 2:
                    raise ValueError(f"{name} must be a matrix of shape (..., {leaf.shape[0]}, {leaf.shape[1]}), "
                                     f"got shape {a.shape}")
                for sym, size in zip(leaf.shape, a.shape[-2:]):
                    if sym in DIMS:
                        sizes.setdefault(sym, size)  # the first matrix fixes the size; the check below reports
                batch = np.broadcast_shapes(batch, a.shape[:-2])
            else:
                batch = np.broadcast_shapes(batch, a.shape)
                a = a[..., None, None] if a.ndim else a
            arrays[name] = a
        for name, a in arrays.items():
            leaf = self.leaves[name]
            if isinstance(leaf, MatrixSymbol):
                want = tuple(_size(s_, sizes) for s_ in leaf.shape)
                if None in want or tuple(a.shape[-2:]) != want:
                    raise ValueError(f"{name} must have shape (..., {leaf.shape[0]}, {leaf.shape[1]}) = (..., "
                                     f"{', '.join(map(str, want))}) here, got {a.shape}")
            env[name] = a
        for d in DIMS:
            if d.name in self.leaves:
                if d not in sizes:
                    raise TypeError(f"cannot infer the size {d} to evaluate {self.expr}: pass {d}=")
                env[d.name] = int(sizes[d])
        out = np.asarray(self.fn(**env), dtype=np.float64)
        if self.shape is None:
            return np.array(np.broadcast_to(out, batch + (1, 1))[..., 0, 0])
        rows, cols = (_size(s_, sizes) for s_ in self.shape)
        return np.array(np.broadcast_to(out, batch + (rows, cols)))


@functools.lru_cache(maxsize=512)
def compile_expr(expr) -> Compiled:
    """Compile a sympy expression (scalar or matrix) into a batched numpy function.

    Each distinct subexpression is computed once (so the residual Σ − UVᵀ is formed once however
    often it appears); tr(XY) and ‖X‖²_F are evaluated without forming the product. Results are
    cached per expression.

    Examples
    --------
    >>> f = compile_expr(QUANTITIES["imbalance_sq"].expr)
    >>> float(f(U=np.eye(3, 2), V=np.zeros((2, 2))))
    2.0
    """
    expr = sp.sympify(expr)
    shape = shape_of(expr)
    gen = _Codegen()
    result = gen.ref(expr)
    for d in expr.atoms(MatrixSymbol):  # sizes the matrices need even when they cancel out of the code
        gen.leaf(d)
    args = sorted(gen.leaves)
    source = f"def _compiled({', '.join(args)}):\n" + "\n".join(gen.lines) + f"\n    return {result}\n"
    namespace = {**_RUNTIME, **gen.kernels}
    exec(compile(source, "<pgflow.analysis.symbolic>", "exec"), namespace)
    leaves = {**gen.leaves, **{d.name: d for d in expr.free_symbols & set(DIMS)}}
    return Compiled(expr, shape, leaves, source, namespace["_compiled"])


def _complement(Q: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the orthogonal complement of the columns of Q, shape (rows, rows − cols)."""
    full = np.linalg.svd(Q, full_matrices=True)[0]
    return full[:, Q.shape[1]:]


def problem_values(problem) -> dict:
    """Numeric values of the target leaves for a factorization problem (Σ dense, Φ, Ψ, Φ⊥, Ψ⊥, Σ*, sizes).

    Raises
    ------
    TypeError
        The problem is not an asymmetric factorization with factors U (m×k), V (n×k) and a target
        with singular vectors (``target.Phi``, ``target.sigma``, ``target.Psi``).
    """
    layout = getattr(problem, "layout", None)
    target = getattr(problem, "target", None)
    if (layout is None or len(layout) != 2 or target is None
            or not all(hasattr(target, a) for a in ("Phi", "sigma", "Psi", "dense"))):
        raise TypeError("analysis.symbolic models the asymmetric factorization f = ½‖UVᵀ − Σ‖²_F: the problem "
                        f"needs two factors (U, V) and a LowRankTarget, got {type(problem).__name__}")
    (_, (m_, k_)), (_, (n_, _)) = layout
    Phi_, Psi_ = np.asarray(target.Phi), np.asarray(target.Psi)
    return {"Sigma": target.dense(), "Phi": Phi_, "Psi": Psi_, "Phi_perp": _complement(Phi_),
            "Psi_perp": _complement(Psi_), "Sigma_star": np.diag(target.sigma), "m": m_, "n": n_, "k": k_,
            "r": len(target.sigma)}


def evaluate(expr, problem, x, **values) -> np.ndarray:
    """Evaluate a quantity or derived expression at state(s) ``x`` of ``problem``.

    Parameters
    ----------
    expr : str, Quantity or sympy expression
    problem : MatrixFactorization
    x : array_like, shape (dim,) or (T, dim)
        Flat state(s), e.g. ``trajectory.x``.
    **values
        Any other leaves by name: ``E`` (shape (m, n) or (T, m, n)), ``E_U``, ``E_V``, ``eta``, ``t``, ….

    Returns
    -------
    ndarray
        Shape () or (T,) for a scalar, (…, rows, cols) for a matrix expression.

    Examples
    --------
    >>> from flows import MatrixFactorization, init
    >>> p = MatrixFactorization.random(m=5, n=4, rank=2, width=2, seed=0)
    >>> x = init.gaussian(p, 0.5, seed=1)
    >>> bool(np.isclose(evaluate("loss", p, x), p.loss(x)))
    True
    """
    fn = compile_expr(_as_expr(expr))
    x = np.asarray(x, dtype=np.float64)
    U_, V_ = problem.unpack(x)
    env = {**problem_values(problem), "U": U_, "V": V_, **values}
    wanted = set(fn.leaves) | {d.name for d in DIMS}
    return fn(**{name: v for name, v in env.items() if name in wanted})
