r"""How far gradient descent is from the flow, and why: error against step size, fitted order.

GD with step η is explicit Euler on the gradient flow, so over a fixed time T its iterates are O(η)
from the flow and O(η²) from the modified flow :class:`pgflow.flows.dynamics.ModifiedFlow`
(ẋ = −∇f − (η/2)∇²f∇f). :func:`error_vs_step` measures that error for several η, with a reference
solution checked to be 100× more accurate than the smallest error it is used to measure, and
:func:`fit_order` (:func:`pgflow.analysis.fitting.fit_power_law`) fits the slope of log error against log η.

The same holds for the other schemes of :func:`pgflow.flows.gradient_descent`: alternating GD has plain GF
as its flow limit and its own O(η) modified flow; ScaledGD is Euler on
:class:`pgflow.flows.dynamics.ScaledGradientFlow`.

The imbalance D = UᵀU − VᵀV, conserved by GF, is where the two differ most visibly:
one simultaneous GD step changes it by exactly η²(G_UᵀG_U − G_VᵀG_V) (:func:`imbalance_step`), and
the modified flow changes it at the rate η(G_UᵀG_U − G_VᵀG_V) (:func:`imbalance_rate`), G = ∇f.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..flows import GradientFlow, gradient_descent, integrate
from ..flows.checks import as_float_array, positive, renamed
from ..flows.descent import number_of_steps
from ..flows.dynamics import VARIANTS, ModifiedFlow, ScaledGradientFlow
from ..flows.version import package_version

from .compare import compare
from .fitting import PowerLaw, fit_power_law

AGAINST = ("flow", "modified")
MEASURES = ("state", "product")
# The reference's estimated error must be this many times below the smallest GD error it measures.
REFERENCE_MARGIN = 100.0


# The order of a scheme is the exponent of its error's power law in η: one fit for the whole package.
fit_order = fit_power_law


def imbalance(problem, x) -> np.ndarray:
    """D = UᵀU − VᵀV, shape (k, k) (zero for a one-factor problem)."""
    U, V = problem.factors(np.asarray(x, dtype=float))
    return U.T @ U - V.T @ V


def _gradient_gram(problem, x) -> np.ndarray:
    GU, GV = problem.factors(problem.grad(np.asarray(x, dtype=float)))
    return GU.T @ GU - GV.T @ GV


@renamed(eta="step_size")
def imbalance_step(problem, x, step_size: float) -> np.ndarray:
    """The exact change of D = UᵀU − VᵀV in one simultaneous GD step: η²(G_UᵀG_U − G_VᵀG_V).

    Exact for every loss of the form f(UVᵀ) (factorization, sensing, completion): the O(η) terms
    cancel because UᵀG_U + G_UᵀU = VᵀG_V + G_VᵀV there.

    Parameters
    ----------
    problem : problem object
    x : array_like, shape (dim,)
    step_size : float
        The step size η > 0.

    Returns
    -------
    ndarray, shape (k, k)
    """
    return positive(step_size, "step_size") ** 2 * _gradient_gram(problem, x)


@renamed(eta="step_size")
def imbalance_rate(problem, x, step_size: float) -> np.ndarray:
    """dD/dt along the (simultaneous) modified flow: η(G_UᵀG_U − G_VᵀG_V).

    Differentiating the identity UᵀG_U + G_UᵀU = VᵀG_V + G_VᵀV along ∇f turns the −(η/2)∇²f∇f
    term into this rate; the −∇f term conserves D, as for GF. Over one step of length η it
    reproduces :func:`imbalance_step` to leading order.

    Parameters
    ----------
    problem : problem object
    x : array_like, shape (dim,)
    step_size : float
        The step size η > 0 of the modified flow.

    Returns
    -------
    ndarray, shape (k, k)
    """
    return positive(step_size, "step_size") * _gradient_gram(problem, x)


@dataclass(frozen=True, eq=False)
class DiscretizationStudy:
    """GD with several step sizes against a reference flow: errors, their order, and provenance.

    Attributes
    ----------
    step_sizes : ndarray, shape (J,)
    errors : ndarray, shape (J,)
        The error at t_end, in ``measure``.
    comparisons : tuple of Comparison
        GD against the reference over time, one per step size (state, product, monitors).
    fit : analysis.fitting.PowerLaw
        errors ≈ fit.coefficient · step_sizes ** fit.order (:func:`fit_order`).
    against : {"flow", "modified"}
    variant : {"simultaneous", "alternating", "scaled"}
    measure : {"state", "product"}
        ‖x_GD − x_ref‖₂ or ‖U_GDV_GDᵀ − U_refV_refᵀ‖_F.
    reference_error : ndarray, shape (J,)
        Estimated error at t_end of the reference each GD run is measured against: its distance to
        the same solve at 100× looser tolerances, which bounds the loose solve's error and so, by
        tolerance proportionality, overestimates the tight one's by about 100×.
    reference_ok : bool
        max(reference_error) · 100 ≤ min(errors): the reference is at least 100× more accurate
        than the smallest error measured with it.
    meta : dict
        Problem, t_end, solver, tolerances, nfev and wall times of every run, version.
    """

    step_sizes: np.ndarray
    errors: np.ndarray
    comparisons: tuple
    fit: PowerLaw
    against: str
    variant: str
    measure: str
    reference_error: np.ndarray
    reference_ok: bool
    meta: dict = field(default_factory=dict)

    @property
    def order(self) -> float:
        """Fitted order p of err ≈ C·η^p."""
        return self.fit.order

    @property
    def order_stderr(self) -> float:
        """Standard error of :attr:`order`."""
        return self.fit.order_stderr

    @property
    def times(self) -> tuple:
        """The GD times k·η of each run, tuple of arrays of shape (n_j + 1,)."""
        return tuple(c.t for c in self.comparisons)

    @property
    def errors_over_time(self) -> tuple:
        """The error in ``measure`` at every GD step of each run, tuple of arrays of shape (n_j + 1,)."""
        return tuple(getattr(c, self.measure) for c in self.comparisons)


def _merged_grid(grids) -> np.ndarray:
    """Union of time grids, with times equal up to rounding (k·η two ways) kept once."""
    t = np.sort(np.concatenate(grids))
    keep = np.concatenate([[True], np.diff(t) > 1e-10 * max(1.0, t[-1])])
    return t[keep]


def error_vs_step(problem, x0, step_sizes, t_end: float, *, against: str = "flow",
                  variant: str = "simultaneous", measure: str = "state", reference_rtol: float = 1e-12,
                  reference_atol: float | None = None, method: str = "DOP853") -> DiscretizationStudy:
    """Run GD with each step size to ``t_end`` and measure its distance to a reference flow.

    against="flow": the flow limit of the scheme (GF; :class:`ScaledGradientFlow` for ScaledGD),
    integrated once on the union of the GD grids k·η. against="modified": the modified flow of the
    scheme, which depends on η, integrated once per step size on its grid. ``integrate`` steps onto
    every grid point, so the reference states are solver steps, never interpolants.

    Each reference is integrated a second time at 100× looser tolerances; their distance at t_end
    is ``reference_error`` and ``reference_ok`` says whether it lies 100× below the smallest GD error.

    Parameters
    ----------
    problem : problem object
    x0 : array_like, shape (dim,)
    step_sizes : array_like, shape (J,)
        η values, each dividing ``t_end`` into whole steps; at least two distinct values.
    t_end : float
        The common final time T.
    against : {"flow", "modified"}
    variant : {"simultaneous", "alternating", "scaled"}
        The GD scheme (see :func:`pgflow.flows.gradient_descent`).
    measure : {"state", "product"}
        Error in the flat state (‖·‖₂) or in UVᵀ (‖·‖_F, blind to the (UQ, VQ) symmetry).
    reference_rtol : float
        Relative tolerance of the reference solve.
    reference_atol : float, optional
        Absolute tolerance; default ``reference_rtol`` × 10⁻².
    method : str
        The ``solve_ivp`` method of the reference (an explicit Runge–Kutta method is best: it steps
        exactly onto the grid).

    Returns
    -------
    DiscretizationStudy
        ``.errors``, ``.errors_over_time``, ``.order``, ``.order_stderr``, ``.reference_ok``.

    Raises
    ------
    flows.DivergenceError
        A GD run diverged (the step size is above the stability limit).

    Examples
    --------
    >>> from pgflow.flows import MatrixFactorization, init
    >>> p = MatrixFactorization.random(m=6, n=5, rank=2, width=2, condition=2.0, seed=0)
    >>> x0 = init.gaussian(p, 0.3, seed=1)
    >>> s = error_vs_step(p, x0, [0.04, 0.02, 0.01], t_end=1.0, against="modified")
    >>> bool(1.8 < s.order < 2.2), s.reference_ok
    (True, True)
    """
    start = time.perf_counter()
    if against not in AGAINST:
        raise ValueError(f"against must be one of {AGAINST}, got {against!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    etas = as_float_array(step_sizes, "step_sizes", ndim=1)
    if np.unique(etas).size < 2 or np.unique(etas).size != etas.size:
        raise ValueError(f"step_sizes must hold at least two distinct values and no repeats, got {etas}")
    t_end = positive(t_end, "t_end")
    etas = np.array([positive(float(e), f"step_sizes[{i}]") for i, e in enumerate(etas)])
    rtol = positive(reference_rtol, "reference_rtol")
    atol = 1e-2 * rtol if reference_atol is None else positive(reference_atol, "reference_atol")
    x0 = problem.check_state(x0)

    gd_runs = [gradient_descent(problem, x0, eta, number_of_steps(eta, t_end), variant=variant) for eta in etas]

    def solve(flow, grid, looser=1.0):
        return integrate(flow, x0, t_end, method=method, rtol=rtol * looser, atol=atol * looser,
                         t_eval=grid, dense_output=False)

    if against == "flow":
        flow = ScaledGradientFlow(problem) if variant == "scaled" else GradientFlow(problem)
        grid = _merged_grid([run.t for run in gd_runs])
        tight, loose = solve(flow, grid), solve(flow, grid[[0, -1]], looser=100.0)
        references, checks = [tight] * len(etas), [(tight, loose)]
    else:
        references, checks = [], []
        for eta, run in zip(etas, gd_runs):
            flow = ModifiedFlow(problem, eta, variant)
            tight, loose = solve(flow, run.t), solve(flow, run.t[[0, -1]], looser=100.0)
            references.append(tight)
            checks.append((tight, loose))

    comparisons = tuple(compare(run, ref) for run, ref in zip(gd_runs, references))
    errors = np.array([getattr(c, measure)[-1] for c in comparisons])
    check_errors = np.array([getattr(compare(loose, tight), measure)[-1] for tight, loose in checks])
    reference_error = np.broadcast_to(check_errors, etas.shape).copy()
    reference_ok = bool(REFERENCE_MARGIN * reference_error.max() <= errors.min())

    def solver_stats(run):
        return {"nfev": run.stats.nfev, "steps": run.stats.steps, "wall_time": run.stats.wall_time}

    meta = {"problem": problem.describe(), "t_end": t_end, "against": against, "variant": variant,
            "measure": measure, "reference": {"method": method, "rtol": rtol, "atol": atol,
                                              "check": "same solve at 100x looser rtol and atol",
                                              "solves": [solver_stats(t) for t, _ in checks],
                                              "check_solves": [solver_stats(lo) for _, lo in checks]},
            "gradient_descent": [solver_stats(run) | {"step_size": run.dynamics.step_size,
                                                      "n_steps": run.stats.steps} for run in gd_runs],
            "reference_margin": float(errors.min() / reference_error.max()) if reference_error.max() > 0
            else float("inf"),
            "version": package_version(), "wall_time": time.perf_counter() - start}
    return DiscretizationStudy(step_sizes=etas, errors=errors, comparisons=comparisons,
                               fit=fit_order(etas, errors), against=against, variant=variant, measure=measure,
                               reference_error=reference_error, reference_ok=reference_ok, meta=meta)
