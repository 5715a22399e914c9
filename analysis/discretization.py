r"""How far gradient descent is from the flow, and why: error against step size, fitted order.

GD with step η is explicit Euler on the gradient flow, so over a fixed time T its iterates are O(η)
from the flow and O(η²) from the modified flow :class:`pgflow.flows.dynamics.ModifiedFlow`
(ẋ = −∇f − (η/2)∇²f∇f). :func:`error_vs_step` measures that error for several η, with a reference
solution checked to be 100× more accurate than the smallest error it is used to measure, and
:func:`fit_order` (:func:`pgflow.analysis.fitting.fit_power_law`) fits the slope of log error against log η.
That slope is the order only in the asymptotic regime, so the study also reports the local slopes
between consecutive step sizes, flags a study whose local slopes drift (``asymptotic``), records GD
runs that diverge instead of aborting, and gives a verdict (``ok``, ``verdict``) with the step sizes
to run instead.

The same holds for the other schemes of :func:`pgflow.flows.gradient_descent`: alternating GD has plain GF
as its flow limit and its own O(η) modified flow; ScaledGD is Euler on
:class:`pgflow.flows.dynamics.ScaledGradientFlow`.

The imbalance D = UᵀU − VᵀV, conserved by GF, is where the two differ most visibly:
one simultaneous GD step changes it by exactly η²(G_UᵀG_U − G_VᵀG_V) (:func:`imbalance_step`), and
the modified flow changes it at the rate η(G_UᵀG_U − G_VᵀG_V) (:func:`imbalance_rate`), G = ∇f.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..flows import DivergenceError, GradientFlow, IntegrationError, gradient_descent, integrate
from ..flows.checks import as_float_array, positive, renamed
from ..flows.descent import number_of_steps
from ..flows.dynamics import VARIANTS, ModifiedFlow, ScaledGradientFlow
from ..flows.version import package_version

from .compare import compare
from .fitting import PowerLaw, fit_power_law
from .progress import run_bar

AGAINST = ("flow", "modified", "modified2")
MEASURES = ("state", "product")
# The reference's estimated error must be this many times below the smallest GD error it measures.
REFERENCE_MARGIN = 100.0
# A study is asymptotic when every local slope is within this of the fitted order (so the local
# slopes also agree with each other to twice this). Measured (issue #16): the default study of
# `pgflow discretization --print-config` (ησ₁ ≤ 1/8) deviates by at most 0.021; the same problem
# with ησ₁ up to 1.2 by 0.11 (t_end = 2.4) to 0.7 (t_end = 1.2).
ASYMPTOTIC_TOL = 0.05
# Suggested step sizes halve from the largest η ≤ SUGGESTED_ETA_SIGMA/σ₁ that divides t_end.
SUGGESTED_ETA_SIGMA = 0.25


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
    """GD with several step sizes against a reference flow: errors, their order, whether that order
    can be trusted, and provenance.

    Attributes
    ----------
    step_sizes : ndarray, shape (J,)
        As given.
    errors : ndarray, shape (J,)
        The error at t_end, in ``measure``; NaN where GD diverged.
    comparisons : tuple of Comparison or None
        GD against the reference over time, one per step size (state, product, monitors); None where
        GD diverged (or the modified flow's solve failed: ``meta["reference"]["failed"]``).
    fit : analysis.fitting.PowerLaw
        errors ≈ fit.coefficient · step_sizes ** fit.order over the finite errors (:func:`fit_order`);
        NaN if fewer than two are finite.
    against : {"flow", "modified", "modified2"}
    variant : {"simultaneous", "alternating", "scaled"}
    measure : {"state", "product"}
        ‖x_GD − x_ref‖₂ or ‖U_GDV_GDᵀ − U_refV_refᵀ‖_F.
    reference_error : ndarray, shape (J,)
        Estimated error at t_end of the reference each GD run is measured against: its distance to
        the same solve at 100× looser tolerances, which bounds the loose solve's error and so, by
        tolerance proportionality, overestimates the tight one's by about 100×. NaN where GD diverged.
    reference_ok : bool
        max(reference_error) · 100 ≤ min(errors) over the finite errors: the reference is at least
        100× more accurate than the smallest error measured with it.
    meta : dict
        Problem, t_end, solver, tolerances, nfev and wall times of every run, version.
    local_slopes : ndarray, shape (J − 1,)
        Slopes of log error against log η between consecutive step sizes, in order of decreasing η:
        local_slopes[j] is between the j-th and (j + 1)-th largest (NaN next to a diverged run).
    asymptotic : bool
        The fitted order can be trusted as the order of the scheme: at least three finite errors and,
        between consecutive step sizes among them, every local slope within :data:`ASYMPTOTIC_TOL`
        of :attr:`order` (hence within twice that of each other). Outside the asymptotic regime the
        slopes drift with η and a fit through them is a number with no meaning (order 2.43 ± 0.02
        for a second-order scheme at ησ₁ ≤ 1.2).
    diverged : dict of float -> str
        Step sizes whose GD run diverged, with the error message (where it stopped).
    suggested_step_sizes : ndarray, shape (max(J, 4),)
        Step sizes to run instead: halving from the largest η ≤ :data:`SUGGESTED_ETA_SIGMA`/σ₁ that
        divides t_end (from half the largest current η if all are already that small but the study
        is still not asymptotic). A heuristic: run it and check that it is asymptotic.
    reasons : tuple of str
        Why the study is not :attr:`ok` (empty if it is).
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
    local_slopes: np.ndarray = field(default_factory=lambda: np.empty(0))
    asymptotic: bool = False
    diverged: dict = field(default_factory=dict)
    suggested_step_sizes: np.ndarray = field(default_factory=lambda: np.empty(0))
    reasons: tuple = ()

    @property
    def ok(self) -> bool:
        """The verdict: asymptotic, no run diverged, and the reference 100× tighter than every error."""
        return not self.reasons

    @property
    def verdict(self) -> str:
        """One line: "ok", or "not ok: " and every reason, with the step sizes to try."""
        if self.ok:
            return "ok"
        etas = ", ".join(f"{e:.6g}" for e in self.suggested_step_sizes)
        return "not ok: " + "; ".join(self.reasons) + f" (suggested step_sizes = [{etas}])"

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
        """The GD times k·η of each run, tuple of arrays of shape (n_j + 1,) (empty where GD diverged)."""
        return tuple(np.empty(0) if c is None else c.t for c in self.comparisons)

    @property
    def errors_over_time(self) -> tuple:
        """The error in ``measure`` at every GD step of each run, tuple of arrays of shape (n_j + 1,)
        (empty where GD diverged)."""
        return tuple(np.empty(0) if c is None else getattr(c, self.measure) for c in self.comparisons)


def local_slopes(step_sizes, errors) -> np.ndarray:
    """Slopes of log error against log η between consecutive step sizes in order of decreasing η.

    Parameters
    ----------
    step_sizes, errors : array_like, shape (J,)
        Positive step sizes (distinct); errors positive or NaN.

    Returns
    -------
    ndarray, shape (J − 1,)
        slopes[j] = (log e₍ⱼ₊₁₎ − log e₍ⱼ₎)/(log η₍ⱼ₊₁₎ − log η₍ⱼ₎) for η₍₀₎ > η₍₁₎ > …; NaN where
        either error is NaN.

    Examples
    --------
    >>> local_slopes([0.4, 0.1, 0.2], [16e-4, 1e-4, 4e-4])
    array([2., 2.])
    """
    order = np.argsort(-np.asarray(step_sizes, dtype=float), kind="stable")
    log_eta = np.log(np.asarray(step_sizes, dtype=float)[order])
    log_err = np.log(np.asarray(errors, dtype=float)[order])
    return np.diff(log_err) / np.diff(log_eta)


def suggest_step_sizes(step_sizes, t_end: float, sigma1: float, asymptotic: bool, diverged=()) -> np.ndarray:
    """Step sizes likely to be asymptotic: halving from the largest η ≤ :data:`SUGGESTED_ETA_SIGMA`/σ₁
    that divides ``t_end`` into whole steps; from half the largest current η if every current η is
    already below that and the study still is not asymptotic; and below half the smallest η that
    diverged. max(J, 4) values, each dividing t_end.

    Parameters
    ----------
    step_sizes : array_like, shape (J,)
        The study's step sizes.
    t_end : float
    sigma1 : float
        σ₁, the largest singular value of the target.
    asymptotic : bool
        Whether the study was asymptotic.
    diverged : iterable of float
        Step sizes whose GD run diverged.

    Returns
    -------
    ndarray, shape (max(J, 4),)

    Examples
    --------
    >>> suggest_step_sizes([0.6, 0.3, 0.15], t_end=2.0, sigma1=2.0, asymptotic=False)
    array([0.125   , 0.0625  , 0.03125 , 0.015625])
    """
    etas = np.asarray(step_sizes, dtype=float)
    cap = SUGGESTED_ETA_SIGMA / sigma1
    start = etas.max() / 2 if (not asymptotic and etas.max() <= cap) else min(cap, etas.max())
    start = min([start] + [0.5 * float(eta) for eta in diverged])
    first = t_end / math.ceil(t_end / start * (1 - 1e-12))   # whole steps, not above start
    return first / 2.0 ** np.arange(max(etas.size, 4))


def _merged_grid(grids) -> np.ndarray:
    """Union of time grids, with times equal up to rounding (k·η two ways) kept once."""
    t = np.sort(np.concatenate(grids))
    keep = np.concatenate([[True], np.diff(t) > 1e-10 * max(1.0, t[-1])])
    return t[keep]


def _descents(problem, x0, etas, t_end: float, variant: str, bar):
    """GD with every step size to ``t_end``: the runs (None where GD diverged) and why each diverged.

    A diverging run is a finding about that η, not a reason to lose the others: it is recorded, and
    its error is NaN.
    """
    runs, diverged = [], {}
    for eta in etas:
        try:
            runs.append(gradient_descent(problem, x0, eta, number_of_steps(eta, t_end), variant=variant))
        except DivergenceError as exc:
            runs.append(None)
            diverged[float(eta)] = str(exc)
        bar.update()
    return runs, diverged


def _references(problem, x0, etas, variant: str, against: str, gd_runs, ran: list, solve):
    """The reference solve of each GD run that finished (None elsewhere), the (tight, 100× looser)
    pairs that check them, and the step sizes whose modified flow failed (removed from ``ran``)."""
    references, checks, failed = [None] * len(etas), [], {}
    if against == "flow" and ran:
        flow = ScaledGradientFlow(problem) if variant == "scaled" else GradientFlow(problem)
        grid = _merged_grid([gd_runs[j].t for j in ran])
        tight, loose = solve(flow, grid), solve(flow, grid[[0, -1]], looser=100.0)
        checks = [(tight, loose)] * len(ran)
        for j in ran:
            references[j] = tight
    elif against in ("modified", "modified2"):
        for j in list(ran):
            flow = ModifiedFlow(problem, etas[j], variant, order=2 if against == "modified2" else 1)
            try:
                tight, loose = solve(flow, gd_runs[j].t), solve(flow, gd_runs[j].t[[0, -1]], looser=100.0)
            except IntegrationError as exc:     # the modified flow of a large η can blow up: a finding too
                failed[float(etas[j])] = str(exc)
                ran.remove(j)
                continue
            references[j] = tight
            checks.append((tight, loose))
    return references, checks, failed


def error_vs_step(problem, x0, step_sizes, t_end: float, *, against: str = "flow",
                  variant: str = "simultaneous", measure: str = "state", reference_rtol: float = 1e-12,
                  reference_atol: float | None = None, method: str = "DOP853",
                  progress: bool | None = False) -> DiscretizationStudy:
    """Run GD with each step size to ``t_end`` and measure its distance to a reference flow.

    against="flow": the flow limit of the scheme (GF; :class:`ScaledGradientFlow` for ScaledGD),
    integrated once on the union of the GD grids k·η (error O(η)). against="modified": the modified
    flow of the scheme, which depends on η, integrated once per step size on its grid (error O(η²));
    "modified2": its second-order version (``ModifiedFlow(order=2)``, simultaneous GD; error O(η³)). ``integrate`` steps onto
    every grid point, so the reference states are solver steps, never interpolants.

    Each reference is integrated a second time at 100× looser tolerances; their distance at t_end
    is ``reference_error`` and ``reference_ok`` says whether it lies 100× below the smallest GD error.

    The verdict ``ok`` requires three things, each a way for the fitted order to mean nothing: the
    study is asymptotic (every local slope between consecutive step sizes within
    :data:`ASYMPTOTIC_TOL` of the fitted order, at least three finite errors), no GD run diverged,
    and ``reference_ok``. ``reasons`` says which failed and ``suggested_step_sizes`` what to run instead.

    Parameters
    ----------
    problem : problem object
    x0 : array_like, shape (dim,)
    step_sizes : array_like, shape (J,)
        η values, each dividing ``t_end`` into whole steps; at least two distinct values.
    t_end : float
        The common final time T.
    against : {"flow", "modified", "modified2"}
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
    progress : bool or None
        A progress bar over the GD runs and the reference solves (tqdm, on stderr); None: only on a
        terminal.

    Returns
    -------
    DiscretizationStudy
        ``.errors``, ``.errors_over_time``, ``.order``, ``.order_stderr``, ``.reference_ok``,
        ``.local_slopes``, ``.asymptotic``, ``.diverged``, ``.suggested_step_sizes`` and the verdict
        ``.ok`` / ``.verdict``. A GD run that diverges does not raise: its η is recorded in
        ``.diverged`` with the reason, its error is NaN, the fit uses the other step sizes, and the
        study is not ok.

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
    if against == "modified2" and variant != "simultaneous":
        raise ValueError(f"against='modified2' (the second-order modified flow) is derived for variant='simultaneous' "
                         f"only, got variant={variant!r}")
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
    n_references = 2 if against == "flow" else 2 * len(etas)  # each reference, and its 100× looser check
    with run_bar(len(etas) + n_references, f"{variant} vs {against}", progress) as bar:
        gd_runs, diverged = _descents(problem, x0, etas, t_end, variant, bar)
        ran = [j for j, run in enumerate(gd_runs) if run is not None]

        def solve(flow, grid, looser=1.0):
            run = integrate(flow, x0, t_end, method=method, rtol=rtol * looser, atol=atol * looser,
                            t_eval=grid, dense_output=False)
            bar.update()
            return run

        references, checks, failed = _references(problem, x0, etas, variant, against, gd_runs, ran, solve)

    comparisons = tuple(None if ref is None else compare(run, ref) for run, ref in zip(gd_runs, references))
    errors = np.full(etas.shape, np.nan)
    reference_error = np.full(etas.shape, np.nan)
    for j, (tight, loose) in zip(ran, checks):
        errors[j] = getattr(comparisons[j], measure)[-1]
        reference_error[j] = getattr(compare(loose, tight), measure)[-1]
    finite = np.isfinite(errors)
    reference_ok = bool(finite.any() and REFERENCE_MARGIN * reference_error[finite].max() <= errors[finite].min())
    fit = fit_order(etas[finite], errors[finite]) if finite.sum() >= 2 else PowerLaw(np.nan, np.nan, np.nan)
    slopes = local_slopes(etas, errors)
    # judged on the runs that finished (a diverged η is a reason of its own, below)
    settled = local_slopes(etas[finite], errors[finite])
    asymptotic = bool(finite.sum() >= 3 and np.max(np.abs(settled - fit.order)) <= ASYMPTOTIC_TOL
                      and np.ptp(settled) <= 2 * ASYMPTOTIC_TOL)
    suggested = suggest_step_sizes(etas, t_end, float(problem.target.sigma[0]), asymptotic, diverged)

    reasons = []
    if diverged:
        reasons.append("GD diverged at η = " + ", ".join(f"{e:.6g}" for e in diverged))
    if failed:
        reasons.append("the modified flow's solve failed at η = " + ", ".join(f"{e:.6g}" for e in failed))
    if finite.sum() < 3:
        reasons.append(f"{int(finite.sum())} finite errors: at least 3 are needed to see whether the local "
                       f"slopes have settled")
    elif not asymptotic:
        reasons.append(f"not asymptotic: local slopes {', '.join(f'{s:.3f}' for s in settled)} differ from the "
                       f"fitted order {fit.order:.3f} by up to {np.max(np.abs(settled - fit.order)):.3f} "
                       f"> {ASYMPTOTIC_TOL}")
    if finite.any() and not reference_ok:
        reasons.append("reference not 100x more accurate than the smallest error: lower reference_rtol")

    def solver_stats(run):
        return {"nfev": run.stats.nfev, "steps": run.stats.steps, "wall_time": run.stats.wall_time}

    def gd_stats(eta, run):
        if run is None:
            return {"step_size": float(eta), "n_steps": number_of_steps(eta, t_end), "diverged": diverged[float(eta)]}
        return solver_stats(run) | {"step_size": run.dynamics.step_size, "n_steps": run.stats.steps}

    unique_checks = list({id(c): c for c in checks}.values())   # the flow reference is one solve for every η
    margin = float("nan")
    if finite.any():
        worst_reference = reference_error[finite].max()
        margin = float(errors[finite].min() / worst_reference) if worst_reference > 0 else float("inf")
    meta = {"problem": problem.describe(), "t_end": t_end, "against": against, "variant": variant,
            "measure": measure, "reference": {"method": method, "rtol": rtol, "atol": atol, "failed": failed,
                                              "check": "same solve at 100x looser rtol and atol",
                                              "solves": [solver_stats(t) for t, _ in unique_checks],
                                              "check_solves": [solver_stats(lo) for _, lo in unique_checks]},
            "gradient_descent": [gd_stats(eta, run) for eta, run in zip(etas, gd_runs)],
            "reference_margin": margin, "asymptotic_tol": ASYMPTOTIC_TOL,
            "version": package_version(), "wall_time": time.perf_counter() - start}
    return DiscretizationStudy(step_sizes=etas, errors=errors, comparisons=comparisons, fit=fit, against=against,
                               variant=variant, measure=measure, reference_error=reference_error,
                               reference_ok=reference_ok, meta=meta, local_slopes=slopes, asymptotic=asymptotic,
                               diverged=diverged, suggested_step_sizes=suggested, reasons=tuple(reasons))
