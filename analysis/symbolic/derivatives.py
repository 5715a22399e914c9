"""Derivatives of quantities: gradients, the vector fields of the flows built on the one symbolic
gradient, time derivatives along them, and the exact one-step change under gradient descent.
"""

from __future__ import annotations

import functools

import sympy as sp
from sympy import MatrixExpr, MatrixSymbol

from .calculus import _add, _expand_scalar, _monomials, _mul, directional, gradient_of
from .catalogue import QUANTITIES, as_expr
from .vocabulary import (DYNAMICS, PERTURBATIONS, E, E_U, E_V, NotPolynomial, ShapeError, U, V, eta, format_shape,
                         is_scalar, shape_of, t)

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
    q = as_expr(q)
    if not is_scalar(q):
        raise ShapeError(f"gradient needs a scalar quantity; {q} has shape {format_shape(shape_of(q))}")
    if not isinstance(wrt, MatrixSymbol):
        raise TypeError(f"wrt must be a MatrixSymbol such as U or V, got {wrt!r}")
    return gradient_of(q, wrt)


def _gradient_pair(gradient) -> tuple:
    """(G_U, G_V): the given pair, or the gradient of the catalogue's ``loss``."""
    if gradient is None:
        return QUANTITIES["G_U"].expr, QUANTITIES["G_V"].expr
    G_U, G_V = gradient
    if not (isinstance(G_U, MatrixExpr) and isinstance(G_V, MatrixExpr)):
        raise TypeError(f"gradient must be a pair (G_U, G_V) of matrix expressions, got {gradient!r}")
    return G_U, G_V


@functools.lru_cache(maxsize=None)
def vector_field(dynamics: str, gradient: tuple | None = None) -> tuple:
    r"""(U̇, V̇) of a flow, built on the symbolic gradient G = (G_U, G_V) of ``loss``.

    gf: −G. pgf_residual: −G + (EV, EᵀU), i.e. U̇ = (Σ − UVᵀ + E)V. pgf_additive: −G + (E_U, E_V).
    modified: −G − (η/2)∇²f·G with ∇²f·G = DG[G] (backward error analysis of GD, docs/math/invariants.md).

    ``gradient``: another loss's (G_U, G_V), e.g. a formula problem's
    (:attr:`~.problem.FormulaProblem.symbolic_gradient`); default the catalogue's ½‖UVᵀ − Σ‖²_F.
    """
    G_U, G_V = _gradient_pair(gradient)
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
def _time_derivative(q, dynamics, gradient=None):
    U_dot, V_dot = vector_field(dynamics, gradient)
    return directional(q, {U: U_dot, V: V_dot, t: sp.Integer(1)})


def time_derivative(q, dynamics: str = "gf", gradient: tuple | None = None):
    r"""d/dt q along a flow: the chain rule Dq[U̇, V̇] (+ ∂q/∂t if q mentions ``t``).

    Parameters
    ----------
    q : str, Quantity or sympy expression (scalar or matrix)
    dynamics : {"gf", "pgf_residual", "pgf_additive", "modified"}
        For "gd" use :func:`gd_step`.
    gradient : (G_U, G_V), optional
        The gradient the flow follows (:func:`vector_field`); default that of ½‖UVᵀ − Σ‖²_F.

    Returns
    -------
    sympy expression of the shape of q; mentions ``E`` (``E_U``, ``E_V``) for PGF, ``eta`` for
    the modified flow.

    Examples
    --------
    >>> from pgflow.analysis.symbolic import vanishes
    >>> vanishes(time_derivative("imbalance", "pgf_residual"))
    True
    """
    q = as_expr(q)
    shape_of(q)
    _check_differentiable(q, "the time derivative")
    if dynamics == "gd":
        raise ValueError("gradient descent has no time derivative: use gd_step(q) for its exact one-step change")
    return _time_derivative(q, dynamics, None if gradient is None else tuple(gradient))


def _by_power(pieces, h):
    """Group [(c, factors)] into {j: Σ c_j·factors} by the power j of ``h`` in each scalar term of c."""
    groups: dict = {}
    for c, fs in pieces:
        for term in sp.Add.make_args(sp.expand(c)):
            rest, j = term.as_coeff_exponent(h)
            groups.setdefault(int(j), []).append(rest * _mul(list(fs)) if fs else rest)
    return groups


@functools.lru_cache(maxsize=None)
def _gd_step(q, gradient=None):
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
    G_U, G_V = _gradient_pair(gradient)
    increment = _add([h ** j * _add(terms, q) for j, terms in sorted(groups.items()) if j >= 1], q)
    return increment.xreplace({dU: -G_U, dV: -G_V, h: eta}).doit()


def gd_step(q, gradient: tuple | None = None):
    r"""q(U₊, V₊) − q(U, V) for one GD step U₊ = U − ηG_U, V₊ = V − ηG_V: an exact polynomial in η.

    Parameters
    ----------
    q : str, Quantity or sympy expression, polynomial in U and V
    gradient : (G_U, G_V), optional
        The gradient GD steps along; default that of ½‖UVᵀ − Σ‖²_F.

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
    >>> from pgflow.analysis.symbolic import vanishes
    >>> G_U, G_V = QUANTITIES["G_U"].expr, QUANTITIES["G_V"].expr
    >>> vanishes(gd_step("imbalance") - eta**2 * (G_U.T*G_U - G_V.T*G_V))
    True
    """
    q = as_expr(q)
    shape_of(q)
    _check_differentiable(q, "the GD step")
    return _gd_step(q, None if gradient is None else tuple(gradient))


def gd_increment(q, gradient: tuple | None = None):
    r"""q(U − ηG_U, V − ηG_V, t + η) − q(U, V, t), the change of q over one GD step.

    For q polynomial in U and V this is :func:`gd_step` (the exact η-polynomial, cancellation-free);
    otherwise (spectral functions, square roots, ...) it is the shifted expression minus q, which is
    evaluated at the next iterate x₊ = x − η∇f(x) of each state.

    Parameters
    ----------
    q : str, Quantity or sympy expression (scalar or matrix)
    gradient : (G_U, G_V), optional
        The gradient GD steps along; default that of ½‖UVᵀ − Σ‖²_F.

    Returns
    -------
    sympy expression of the shape of q

    Examples
    --------
    >>> from pgflow.analysis.symbolic import norm
    >>> gd_increment(norm(QUANTITIES["J"].expr)).has(eta)
    True
    """
    q = as_expr(q)
    shape_of(q)
    _check_differentiable(q, "the GD step")
    gradient = None if gradient is None else tuple(gradient)
    try:
        return _gd_step(q, gradient)
    except NotPolynomial:
        G_U, G_V = _gradient_pair(gradient)
        return q.xreplace({U: U - eta * G_U, V: V - eta * G_V, t: t + eta}) - q
