"""Matrix calculus: the directional (Fréchet) derivative, expansion into non-commuting monomials, and
gradients extracted from the linear functional Dq[ΔX] by cyclic permutation under the trace.
"""

from __future__ import annotations

import functools
import itertools

import sympy as sp
from sympy import (HadamardProduct, Identity, Inverse, MatAdd, MatMul, MatPow, MatrixExpr, MatrixSymbol, Trace,
                   Transpose, ZeroMatrix)

from .parsing import as_sympy
from .sensing import AdjointMeasure, Measure
from .spectral import AbsRate, MatrixFunction, magnitude
from .vocabulary import NotPolynomial, ShapeError, format_shape


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


def flat_product(factors):
    """The product of scalars and matrices as one flat MatMul (coefficient first; a scalar when there
    is no matrix), built without sympy's canonicalization: ``*`` simplifies the whole product each
    time, which costs seconds on a third derivative."""
    if any(_is_zero(f) for f in factors):
        return _mul(factors)
    coeff, mats = sp.Integer(1), []
    for f in factors:
        if isinstance(f, MatMul):
            c, ms = f.as_coeff_matrices()
            coeff, mats = coeff * c, mats + list(ms)
        elif isinstance(f, MatrixExpr):
            mats.append(f)
        else:
            coeff = coeff * f
    if not mats:
        return coeff
    if coeff == 1 and len(mats) == 1:
        return mats[0]
    return MatMul(*([] if coeff == 1 else [coeff]), *mats)


def flat_sum(terms, like=None):
    """The sum of terms as one flat MatAdd (a scalar Add for scalars), zeros dropped, built without
    canonicalization (as :func:`flat_product`)."""
    flat = []
    for t in terms:
        if not _is_zero(t):
            flat += list(t.args) if isinstance(t, MatAdd) else [t]
    if not flat:
        return _zero_like(like)
    if len(flat) == 1:
        return flat[0]
    return MatAdd(*flat) if isinstance(flat[0], MatrixExpr) else sp.Add(*flat)


def directional(expr, direction: dict, *, canonical: bool = True):
    r"""The Fréchet derivative D expr[direction] by the product and chain rules.

    Parameters
    ----------
    expr : sympy expression (scalar or matrix), or an expression string (safe parser, :mod:`.parsing`)
    direction : dict
        Leaf -> its derivative: ``{U: U̇, V: V̇}`` (matrix expressions of the leaf's shape), optionally
        a scalar symbol such as ``t: 1``. Leaves not in the dict are constants.
    canonical : bool
        Simplify sums and products as they are built (sympy's canonical form: like terms collected).
        False builds them flat (:func:`flat_sum`, :func:`flat_product`), the same value in a form
        meant to be compiled, not read: a hundred times faster on the third derivative of a quartic.

    Returns
    -------
    sympy expression of the shape of ``expr``
        Unexpanded (sums such as Σ − UVᵀ stay whole). Spectral functions and |x| contribute their
        right-derivative (e.g. ``norm(X)`` → u₁ᵀ DX v₁ where σ₁ is simple, the one-sided cluster rule
        where it is repeated: :mod:`.spectral_rates`).
    """
    add, mul = (_add, _mul) if canonical else (flat_sum, flat_product)
    expr = as_sympy(expr)
    direction = {as_sympy(leaf, "a leaf"): as_sympy(d, "a direction") for leaf, d in direction.items()}
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
            out = direction[e]
        elif isinstance(e, MatAdd):
            out = add([D(a) for a in e.args], e)
        elif isinstance(e, MatMul):
            coeff, mats = e.as_coeff_matrices()
            terms = [mul([D(coeff), *mats])]
            terms += [mul([coeff, *mats[:i], D(a), *mats[i + 1:]]) for i, a in enumerate(mats)]
            out = add(terms, e)
        elif isinstance(e, Transpose):
            d = D(e.arg)
            out = _zero_like(e) if _is_zero(d) else d.T
        elif isinstance(e, Trace):
            d = D(e.arg)
            out = sp.Integer(0) if _is_zero(d) else Trace(d)
        elif isinstance(e, MatPow) and e.exp.is_Integer and e.exp > 0:
            p, X = int(e.exp), e.base
            out = add([mul([*([X] * i), D(X), *([X] * (p - 1 - i))]) for i in range(p)], e)
        elif isinstance(e, (Inverse, MatPow)):  # X⁻ᵖ = (X⁻¹)ᵖ, D X⁻¹ = −X⁻¹ DX X⁻¹
            if isinstance(e, MatPow) and not (e.exp.is_Integer and e.exp < 0):
                raise NotPolynomial(f"cannot differentiate the matrix power {e}")
            inv = Inverse(e.args[0])
            dinv = -inv * D(e.args[0]) * inv
            p = 1 if isinstance(e, Inverse) else -int(e.exp)
            out = add([mul([*([inv] * i), dinv, *([inv] * (p - 1 - i))]) for i in range(p)], e)
        elif getattr(e, "is_linear_map", False):  # 𝒜(X), 𝒜*(z): D[L(X)] = L(DX)
            d = D(e.arg)
            out = _zero_like(e) if _is_zero(d) else e.func(d)
        elif isinstance(e, HadamardProduct):
            out = add([HadamardProduct(*e.args[:i], D(a), *e.args[i + 1:]) for i, a in enumerate(e.args)], e)
        elif isinstance(e, MatrixFunction):
            if not hasattr(e, "rate"):
                raise TypeError(f"{e} has no derivative rule")
            d = D(e.args[0])
            out = sp.Integer(0) if _is_zero(d) else e.rate(d)
        elif isinstance(e, MatrixExpr):
            raise TypeError(f"cannot differentiate the matrix expression {e} ({type(e).__name__})")
        elif isinstance(e, sp.Add):
            out = add([D(a) for a in e.args], e)
        elif isinstance(e, sp.Mul):
            out = add([mul([*e.args[:i], D(a), *e.args[i + 1:]]) for i, a in enumerate(e.args)], e)
        elif isinstance(e, sp.Pow):
            base, ex = e.args
            if ex.has(*leaves):
                raise TypeError(f"cannot differentiate {e}: its exponent depends on the state")
            out = mul([ex, base ** (ex - 1), D(base)])
        elif isinstance(e, sp.Abs):  # d⁺|x| = sign(x) dx, |dx| at x = 0; sympy's own rule assumes complex x
            d = D(e.args[0])
            out = sp.Integer(0) if _is_zero(d) else AbsRate(e.args[0], d, magnitude(e.args[0]), magnitude(d))
        elif isinstance(e, sp.Function) and len(e.args) == 1:  # exp, log, ...
            x = sp.Dummy("x")
            out = mul([e.func(x).diff(x).subs(x, e.args[0]), D(e.args[0])])
        else:
            raise TypeError(f"cannot differentiate {e} ({type(e).__name__})")
        memo[e] = out
        return out

    return D(expr).doit() if canonical else D(expr)


# Expansion into non-commuting monomials (for gradients and exact GD polynomials)

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
    if getattr(X, "is_linear_map", False):  # L(Σ c·F₁⋯F_p) = Σ c·L(F₁⋯F_p)
        return [(c, (X.func(_product(fs, X.arg.shape)),)) for c, fs in _monomials(X.arg, wrt)]
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
    s = as_sympy(s)
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
def gradient_of(q, X):
    """∇_X q of a scalar sympy expression q (see :func:`pgflow.analysis.symbolic.gradient`)."""
    dX = MatrixSymbol(f"d{X.name}", *X.shape)
    try:
        L = _expand_scalar(directional(q, {X: dX}), (dX,))
    except NotPolynomial:
        raise NotPolynomial(f"{q} has no symbolic gradient: its derivative is not a trace ⟨G, d{X.name}⟩ (spectral "
                            f"functions such as norm or lambda_min only have directional derivatives; use "
                            f"directional() or time_derivative())") from None
    pending = []  # (coefficient, factors of a trace monomial tr(F₁⋯F_p) linear in dX)
    for term in sp.Add.make_args(L):
        if term == 0:
            continue
        factors = sp.Mul.make_args(term)
        carriers = [f for f in factors if f.has(dX)]
        if len(carriers) != 1 or not isinstance(carriers[0], Trace):
            raise NotPolynomial(f"cannot write the derivative term {term} as a trace ⟨G, d{X.name}⟩")
        arg = carriers[0].arg
        pending.append((sp.Mul(*[f for f in factors if f is not carriers[0]]),
                        arg.args if isinstance(arg, MatMul) else (arg,)))
    terms = []
    while pending:
        coeff, fs = pending.pop()
        i = next(j for j, f in enumerate(fs) if f.has(dX))
        rest = fs[i + 1:] + fs[:i]
        if fs[i] == dX:  # tr(rest · dX) = ⟨restᵀ, dX⟩
            terms.append(coeff * _product(tuple(f.T for f in reversed(rest)), X.shape))
        elif fs[i] == dX.T:  # tr(dXᵀ · rest) = ⟨rest, dX⟩
            terms.append(coeff * _product(rest, X.shape))
        elif _is_image(fs[i]):
            # dX inside a linear map L (𝒜): tr(L(W)ᵀ·rest) = ⟨L(W), rest⟩ = ⟨L*(rest), W⟩ and
            # tr(L(W)·rest) = ⟨L*(restᵀ), W⟩, i.e. tr(L*(·)ᵀ W), whose monomials are then read as above
            image = fs[i]
            transposed = isinstance(image, Transpose)
            image = image.arg if transposed else image
            z = _product(rest, (1, 1)) if transposed else _product(tuple(f.T for f in reversed(rest)), (1, 1))
            adjoint = _adjoint_of(image)(z)
            pending += [(coeff * c, (adjoint.T, *ws)) for c, ws in _monomials(image.arg, (dX,))]
        else:
            raise NotPolynomial(f"d{X.name} appears inside {fs[i]}")
    return _add(terms, X).doit()


def _is_image(f) -> bool:
    """Whether a factor is L(W) or L(W)ᵀ for a linear map L of :mod:`.sensing`."""
    return getattr(f.arg if isinstance(f, Transpose) else f, "is_linear_map", False)


def _adjoint_of(image):
    """The adjoint map of a linear image's map (𝒜 ↦ 𝒜*, 𝒜* ↦ 𝒜)."""
    return {Measure: AdjointMeasure, AdjointMeasure: Measure}[type(image)]
