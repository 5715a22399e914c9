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

A loss written as a formula becomes a problem the flows and gradient descent integrate:
:class:`FormulaProblem` (:mod:`.problem`) reads it (:mod:`.formula`), derives its gradient,
Hessian-vector product and third derivative with this calculus, and compiles them at the problem's
sizes into numpy programs that use the low-rank target through its factors and never form an m×n
matrix where the formula allows it (:mod:`.factored`); sensing losses apply the operator ``A(X)``
of :mod:`.sensing`.

The package's modules, from the bottom up: :mod:`.vocabulary` (symbols, shapes), :mod:`.sensing` (the
measurement operator 𝒜 and y), :mod:`.parsing` (the safe expression parser), :mod:`.spectral_rates`
and :mod:`.spectral` (norms, extreme eigenvalues and singular values, one-sided rates),
:mod:`.calculus` (directional derivatives, gradients), :mod:`.catalogue` (named quantities),
:mod:`.derivatives` (vector fields, time derivatives, GD steps), :mod:`.codegen` (numpy evaluation),
:mod:`.factored` (programs at concrete sizes that keep m×n matrices factored), :mod:`.formula` and
:mod:`.problem` (a loss from a formula), :mod:`.modular` and :mod:`.numeric_checks` (exact and
numeric evidence) and :mod:`.checking` (:func:`vanishes`, :func:`verify`). Everything public is
importable from ``pgflow.analysis.symbolic`` itself.

How the derivations are done, and why not with ``expr.diff(MatrixSymbol)``
--------------------------------------------------------------------------
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

Every derivation is checked independently (:func:`verify`): numerically against pgflow's own dynamics
objects (the symbolic vector field against ``GradientFlow``, ``PerturbedGradientFlow``, ``ModifiedFlow``
and a ``gradient_descent`` step; the derivative against high-order differences of the quantity along
the flow object's own field), and, for polynomial quantities, exactly at random points of generic
sizes (:mod:`.modular`: explicit numeric matrices in a prime field, dual numbers for derivatives).
:func:`vanishes` decides identities the same way, at sizes larger than the expression's degree, where
no matrix identity holds by accident (Cayley–Hamilton holds for every 2×2 matrix). Expressions that
mention the target's singular vectors are made explicit in Ye & Du's rotated frame (Φ = [I; 0],
Ψ = [I; 0], Σ = Φ diag(s) Ψᵀ), which loses no generality because every quantity here is invariant
under the rotation x ↦ (QU, Q'V), Σ ↦ QΣQ'ᵀ. :func:`explicit` writes an expression out entry by entry.

Spectral functions (``norm``, ``sigma_min``, ``lambda_min``, ``lambda_max``, ``nuclear_norm``,
``top_sum``) have right-derivatives that are correct at repeated and zero values
(:mod:`.spectral_rates`, Lewis & Overton 1996); the compiled rate reports where such a nonsmooth
point was met. Expression strings are read by the safe parser of :mod:`.parsing`, never by ``eval``.

Numeric evaluation
------------------
:func:`compile_expr` turns an expression into numpy code (each distinct subexpression is computed
once), batched over leading axes so that it evaluates on every saved state of a trajectory at once
(see :mod:`.codegen`).
"""

from .calculus import directional, gradient_of
from .catalogue import QUANTITIES, RENAMED_QUANTITIES, Quantity, as_expr
from .checking import Componentwise, Verification, explicit, vanishes, verify
from .codegen import Compiled, compile_expr, evaluate, problem_values
from .derivatives import gd_increment, gd_step, gradient, time_derivative, vector_field
from .factored import FactoredProgram, compile_factored
from .formula import Formula, FormulaError, FormulaShapeError, FormulaSyntaxError, read_formula
from .modular import generic_sizes, matrix_degree
from .problem import FORMULAS, FormulaProblem
from .sensing import A, A_adjoint, AdjointMeasure, Measure, p, y
from .parsing import ClaimError, ClaimSyntaxError, parse_expression
from .spectral import (RATES, AbsRate, EigenRate, FroNorm, FroRate, LambdaMax, LambdaMin, MatrixFunction, NuclearNorm,
                       NuclearRate, OpNorm, SigmaMin, SingularRate, TopSum, TopSumRate, fro, lambda_max, lambda_min,
                       norm, nuclear_norm, sigma_max, sigma_min, top_sum)
from .vocabulary import (DIMS, DYNAMICS, PERTURBATIONS, STATE, STRUCTURE, SYMBOLS, TARGET, E, E_U, E_V, NotPolynomial,
                         Phi, Phi_perp, Psi, Psi_perp, ShapeError, Sigma, Sigma_star, U, V, eta, format_shape, fro2,
                         is_scalar, k, m, n, r, same_dim, shape_of, t, trace)

__all__ = ["A", "A_adjoint", "AbsRate", "AdjointMeasure", "ClaimError", "ClaimSyntaxError", "Compiled", "Componentwise",
           "DIMS", "DYNAMICS", "E", "E_U", "E_V", "EigenRate", "FORMULAS", "FactoredProgram", "Formula", "FormulaError",
           "FormulaProblem", "FormulaShapeError", "FormulaSyntaxError", "FroNorm", "FroRate", "LambdaMax", "LambdaMin",
           "MatrixFunction", "Measure", "NotPolynomial", "NuclearNorm", "NuclearRate", "OpNorm", "PERTURBATIONS", "Phi",
           "Phi_perp", "Psi", "Psi_perp", "QUANTITIES", "Quantity", "RATES", "RENAMED_QUANTITIES", "STATE", "STRUCTURE",
           "SYMBOLS", "ShapeError", "Sigma", "SigmaMin", "Sigma_star", "SingularRate", "TARGET", "TopSum", "TopSumRate",
           "U", "V", "Verification", "as_expr", "compile_expr", "compile_factored", "directional", "eta", "evaluate",
           "explicit", "format_shape", "fro", "fro2", "gd_increment", "gd_step", "generic_sizes", "gradient",
           "gradient_of", "is_scalar", "k", "lambda_max", "lambda_min", "m", "matrix_degree", "n", "norm",
           "nuclear_norm", "p", "parse_expression", "problem_values", "r", "read_formula", "same_dim", "shape_of",
           "sigma_max", "sigma_min", "t", "time_derivative", "top_sum", "trace", "vanishes", "vector_field", "verify",
           "y"]
