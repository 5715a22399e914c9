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

The package's modules, from the bottom up: :mod:`.vocabulary` (symbols, shapes), :mod:`.spectral`
(norms, extreme eigenvalues and singular values), :mod:`.calculus` (directional derivatives,
gradients), :mod:`.catalogue` (named quantities), :mod:`.derivatives` (vector fields, time
derivatives, GD steps), :mod:`.checking` (exact componentwise checks) and :mod:`.codegen` (numpy
evaluation). Everything public is importable from ``pgflow.analysis.symbolic`` itself.

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
once), batched over leading axes so that it evaluates on every saved state of a trajectory at once
(see :mod:`.codegen`).
"""

from .calculus import directional, gradient_of
from .catalogue import QUANTITIES, RENAMED_QUANTITIES, Quantity, as_expr
from .checking import Componentwise, explicit, vanishes, verify
from .codegen import Compiled, compile_expr, evaluate, problem_values
from .derivatives import gd_step, gradient, time_derivative, vector_field
from .spectral import (EigenRate, FroNorm, LambdaMax, LambdaMin, MatrixFunction, OpNorm, SigmaMin, SingularRate, fro,
                       lambda_max, lambda_min, norm, sigma_max, sigma_min)
from .vocabulary import (DIMS, DYNAMICS, PERTURBATIONS, STATE, STRUCTURE, SYMBOLS, TARGET, E, E_U, E_V, NotPolynomial,
                         Phi, Phi_perp, Psi, Psi_perp, ShapeError, Sigma, Sigma_star, U, V, eta, format_shape, fro2,
                         is_scalar, k, m, n, r, same_dim, shape_of, t, trace)

__all__ = ["Compiled", "Componentwise", "DIMS", "DYNAMICS", "E", "E_U", "E_V", "EigenRate", "FroNorm", "LambdaMax",
           "LambdaMin", "MatrixFunction", "NotPolynomial", "OpNorm", "PERTURBATIONS", "Phi", "Phi_perp", "Psi",
           "Psi_perp", "QUANTITIES", "Quantity", "RENAMED_QUANTITIES", "STATE", "STRUCTURE", "SYMBOLS", "ShapeError",
           "Sigma", "Sigma_star", "SigmaMin", "SingularRate", "TARGET", "U", "V", "as_expr", "compile_expr",
           "directional", "eta", "evaluate", "explicit", "format_shape", "fro", "fro2", "gd_step", "gradient",
           "gradient_of", "is_scalar", "k", "lambda_max", "lambda_min", "m", "n", "norm", "problem_values", "r", "same_dim",
           "shape_of", "sigma_max", "sigma_min", "t", "time_derivative", "trace", "vanishes", "vector_field",
           "verify"]
