r"""Check claimed inequalities on trajectories: both sides on every saved state of every run.

A *claim* is one comparison between scalar expressions of the state, written as a string::

    derivative(noise_U_sq) <= -2*lambda_min(VtV)*noise_U_sq + 2*sqrt(noise_U_sq)*norm(E)*fro(V)

The claim language
------------------
Python expression syntax, evaluated by a small interpreter over the syntax tree
(:mod:`pgflow.analysis.symbolic.parsing`; never ``eval``: a claim file cannot run code) into sympy
expressions of :mod:`pgflow.analysis.symbolic`. Attributes other than ``.T``, subscripts, lambdas,
dunder names and calls of anything but the functions below are :class:`ClaimSyntaxError`.

* Matrices: ``U`` (m×k), ``V`` (n×k), ``Sigma`` (m×n), ``Phi``, ``Psi`` (singular vectors, m×r,
  n×r), ``Phi_perp``, ``Psi_perp`` (complements), ``Sigma_star`` (diag σ, r×r), the perturbation
  ``E`` (m×n, residual-form PGF) or ``E_U``, ``E_V`` (additive form); every quantity of
  :data:`pgflow.analysis.symbolic.QUANTITIES` by name (``loss``, ``R``, ``G_U``, ``VtV``, ``imbalance``,
  ``noise_U_sq``, ``A``, ``B``, ``J``, ``K``, …).
* Scalars: numbers, ``t``, ``eta`` (GD step / modified flow), ``sigma_1``, ``sigma_r``, ``kappa``,
  the sizes ``m``, ``n``, ``k``, ``r``, ``E_bound`` (the perturbation model's own ``bound(t, x)``),
  and the claim's parameters.
* Operators: ``+ - * / **`` (``*`` and ``@`` are matrix products), ``X.T``; an integer exponent is
  at most 64 in absolute value, and every constant sub-expression must be a finite real number
  (``1/0``, ``log(0)``, ``sqrt(-1)``, ``1e400`` are errors).
* Functions: ``norm`` (spectral), ``fro`` (Frobenius), ``trace``, ``lambda_min``, ``lambda_max``
  (of the symmetric part), ``sigma_min``, ``sigma_max``, ``nuclear_norm`` (sum of the singular
  values), ``top_sum(X, s)`` (sum of the s largest), ``sqrt``, ``abs``, ``exp``, ``log``, ``max``,
  ``min``; ``derivative(q)`` and ``initial(q)`` (q at the run's first saved state).
* Comparisons: exactly one of ``<=``, ``>=``, ``==``, between scalars. A Loewner order
  AAᵀ ⪯ 2Σ* is written ``lambda_max(A*A.T - 2*Sigma_star) <= 0``.

``derivative(q)`` is exact, through the symbolic chain rule along the run's own dynamics
(:func:`pgflow.analysis.symbolic.time_derivative`), never a difference of saved states. On a gradient
descent run it is the one-step difference quotient (q(x₊) − q(x))/η with x₊ = x − η∇f(x) the
*exact* next iterate of the saved state (so it does not depend on ``save_every``): for polynomial
q from the exact η-polynomial of :func:`pgflow.analysis.symbolic.gd_step` (no cancellation), otherwise by
evaluating q at x₊. The discrete claim "Δq/η ≤ b" is the Euler analogue of "dq/dt ≤ b" and tends to
it as η → 0: a GD run checks *discrete* claims. Spectral functions, ‖·‖_F and |·| get their
*right*-derivatives, correct at repeated or zero singular values and repeated eigenvalues (the
one-sided rule of Lewis & Overton, :mod:`pgflow.analysis.symbolic.spectral_rates`); the states where
one was used are counted as *nonsmooth* in the report.

Every derivative is also compared, once per run, with the finite differences of the saved states
(:mod:`.consistency`): a derivative that disagrees with its trajectory (a run declared with the wrong
dynamics) makes the report UNRELIABLE instead of holding. A :class:`Run` refuses a dynamics label
that contradicts its trajectory's own record. A claim may carry hypotheses (``assume``) that restrict
it to the states where they hold. :func:`falsify` searches random and adversarial starts for a
counterexample; :mod:`.export` writes tidy CSV/JSON reports.

A claim holds on a state when lhs ≤ rhs + a (``<=``), lhs + a ≥ rhs (``>=``) or |lhs − rhs| ≤ a
(``==``), with the allowance a = ``allowance`` (an expression, default 0) + ``rel_allowance``·(|lhs| + |rhs|)
for bounds that are attained. Non-finite values count as violations.

Errors in a claim (:class:`ClaimError`) quote it and underline the offending sub-expression.
"""

from .claim import Claim
from .language import (FUNCTIONS, MAX_EXPONENT, ClaimError, ClaimSyntaxError, E_bound, Initial, MatrixInitial,
                       MatrixRate, Rate, derivative, initial, kappa, parse_claim, parse_expression, sigma_1, sigma_r,
                       vocabulary)
from .consistency import DerivativeCheck
from .reports import TABLE_HEADER, Report, Series, Violation, check, check_all, rate, table
from .runs import Run
from .falsifier import DEFAULT_BUDGET, DEFAULT_FAMILY, Falsification, falsify

__all__ = ["Claim", "ClaimError", "ClaimSyntaxError", "DEFAULT_BUDGET", "DEFAULT_FAMILY", "DerivativeCheck", "E_bound",
           "FUNCTIONS", "Falsification", "Initial", "MAX_EXPONENT", "MatrixInitial", "MatrixRate", "Rate", "Report",
           "Run", "Series", "TABLE_HEADER", "Violation", "check", "check_all", "derivative", "falsify", "initial",
           "kappa", "parse_claim", "parse_expression", "rate", "sigma_1", "sigma_r", "table", "vocabulary"]
