r"""Exact subspace reduction: a factorization run solved in (k + r)-dimensional coordinates.

For f(U, V) = ½‖UVᵀ − Σ‖²_F with a rank-r target Σ = Φ diag(σ) Ψᵀ, the gradient flow's
U̇ = (Σ − UVᵀ)V has its columns in span(U, Φ) and V̇ = (Σ − UVᵀ)ᵀU in span(V, Ψ), so

    U(t) ⊂ span(U₀, Φ),   V(t) ⊂ span(V₀, Ψ)   for all t,

and so does every GD step (simultaneous, alternating, ScaledGD, whose preconditioners act on the
right), the modified flows (built from ∇f and ∇²f, which map the spans into themselves), a perturbed
flow whose E lies in the spans, and X(t) ⊂ span(X₀, Φ) for the symmetric problem. With orthonormal
bases of those spans,

    Q_U = [Φ, …]  (m × (k + r)),   Q_V = [Ψ, …]  (n × (k + r)),

(Householder QR of [Φ, U₀] with its first r columns set to Φ exactly: when [Φ, U₀] is rank-deficient,
a zero column or U₀ inside span Φ, the QR still returns k + r orthonormal columns, the extra ones
directions the run never enters, so every run of a problem has the same reduced size), the states
are U = Q_U C and V = Q_V D, and (C, D) follow the same dynamics for the (k + r) × (k + r) target

    S = Q_Uᵀ Φ diag(σ) Ψᵀ Q_V = [diag σ, 0; 0, 0]:

f(Q_U C, Q_V D) = f̃(C, D) and ∇_U f = Q_U ∇_C f̃, ∇_V f = Q_V ∇_D f̃. The loss, the distance, the
imbalance, the gradient norm and the singular values of UVᵀ are the reduced state's, so the default
monitors cost O((k + r)³) per state whatever m and n. The state shrinks from (m + n)k to 2(k + r)k
values (40,000 to 1,200 at m = n = 1000, k = 20, r = 10). S does not depend on the start, so the
members of a batch share one reduced problem, each with its own bases.

Never reduced: a problem other than :class:`~pgflow.flows.problems.MatrixFactorization` and
:class:`~pgflow.flows.problems.SymmetricFactorization` (a sensing operator mixes every direction of
UVᵀ), k + r ≥ min(m, n) (nothing to gain), a flow other than pgflow's gradient, ScaledGD, modified and
perturbed flows, a batch of a perturbed flow, and a perturbation that leaves the spans: known by its
type (sensing errors, random directions) or, for a type that does not say, measured at the start as
the leakage ‖E − Q_U Q_Uᵀ E Q_V Q_Vᵀ‖_F / ‖E‖_F (above ``LEAK_RTOL``). A perturbation of unknown type that
is inside the spans at the start is measured again at every evaluation of the reduced run; if it leaves them
there, the reduced run stops (:class:`LeftSpans`) and the run is solved in full from the start, with the time
and the leakage in ``meta["reduction_reason"]`` (``reduce=True`` raises instead).

:func:`plan` decides; :meth:`Plan.solve` runs the reduced problem through the same integrator or GD
loop and returns trajectories that hold the bases and reduced states
(:class:`~pgflow.flows.trajectory.ReducedStates`) and behave like full ones.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import blas
from . import monitors as _monitors
from .base import TRUSTED
from .events import Event, as_events
from .failures import DivergenceError, IntegrationError
from .perturbations import (DiscretizationError, FixedPerturbation, MinibatchSensingError, Perturbation,
                            RandomPerturbation, SensingError)
from .problems import MatrixFactorization, SymmetricFactorization
from .targets import LowRankTarget
from .subspace import Bases, LiftedDense, ReducedStates
from .trajectory import Trajectory

__all__ = ["LEAK_ROUNDING", "LEAK_RTOL", "LeftSpans", "Plan", "in_full", "ReducedFactorization", "ReducedPerturbation", "ReducedSymmetricFactorization",
           "leakage", "plan", "reduced_problem", "span_bases"]

LEAK_RTOL = 1e-10
"""A perturbation whose value leaks out of the spans by more than this fraction of its norm is not
reduced: rounding leaks about 1e-16, a generic direction about 1e-2 (measured 1.3e-2 for a random
residual-form perturbation at m = n = 1000)."""

LEAK_ROUNDING = 1e3 * np.finfo(float).eps
"""While a reduced run goes, a state-dependent E is evaluated at lifted states x = Q z, whose rounding
leaks out of the spans however exact E is: near convergence, where E may be small, that rounding
is a large fraction of ‖E‖. A leak counts only above ``LEAK_RTOL``·‖E‖ plus this fraction of the
residual's scale ‖Σ‖_F + ‖U‖_F‖V‖_F (times ‖U‖_F + ‖V‖_F for an additive E, a velocity): a leak
below it moves the solution by no more than rounding does."""

_DYNAMICS = __name__.rpartition(".")[0] + ".dynamics"
# the flows of pgflow.flows.dynamics whose right-hand sides keep the spans, known by class (this module sits
# below the dynamics in the import layers, so it names them rather than importing them)
_FLOWS = ("GradientFlow", "ScaledGradientFlow", "ModifiedFlow", "PerturbedGradientFlow")
_PROBLEMS = (MatrixFactorization, SymmetricFactorization)


def _demand(reduce) -> bool | None:
    """``reduce`` as True (reduce or raise), False (never) or None ("auto": reduce where exact)."""
    if reduce is None or (isinstance(reduce, str) and reduce == "auto"):
        return None
    if isinstance(reduce, (bool, np.bool_)):
        return bool(reduce)
    raise ValueError(f"reduce must be 'auto' (or None), True or False, got {reduce!r}")


def span_bases(problem, x0) -> Bases:
    """Orthonormal bases Q_U = [Φ, …] of span(U₀, Φ) and Q_V = [Ψ, …] of span(V₀, Ψ) (Q = [Φ, …] of
    span(X₀, Φ) for a symmetric problem), each rows × (k + r), or (B, rows, k + r) for a batch x0.

    Parameters
    ----------
    problem : MatrixFactorization or SymmetricFactorization
    x0 : ndarray, shape (dim,) or (B, dim)

    Returns
    -------
    Bases
    """
    target, r = problem.target, problem.target.rank
    blocks = problem.unpack(x0)
    blocks = (blocks,) if len(problem.layout) == 1 else blocks
    matrices = []
    for F, Phi in zip(blocks, (target.Phi, target.Psi)):
        A = np.concatenate([np.broadcast_to(Phi, F.shape[:-2] + Phi.shape), F], axis=-1)
        Q = np.linalg.qr(A)[0]
        Q[..., :r] = Phi  # the QR's first columns are ±Φ to rounding; exactly Φ makes S exactly [diag σ, 0; 0, 0]
        matrices.append(Q)
    return Bases(tuple(matrices), problem.layout)


class _SmallResidual:
    """The residual norm of a reduced problem, whose matrices are (k + r) × (k + r): forming UVᵀ − S costs a
    tenth of the QRs that spare a large problem the m×n matrix, and is as accurate (every entry to rounding)."""

    target: LowRankTarget  # the problem class it is mixed into has them
    factors: Callable

    def residual_norm(self, x) -> np.ndarray:
        U, V = self.factors(x)
        return np.linalg.norm(U @ V.mT - self.target.dense(), axis=(-2, -1))


class ReducedFactorization(_SmallResidual, MatrixFactorization):
    """:class:`~pgflow.flows.problems.MatrixFactorization` of the reduced coordinates (C, D)."""


class ReducedSymmetricFactorization(_SmallResidual, SymmetricFactorization):
    """:class:`~pgflow.flows.problems.SymmetricFactorization` of the reduced coordinates C."""


TRUSTED.update({ReducedFactorization, ReducedSymmetricFactorization})  # the parents' tested derivatives

def reduced_problem(problem):
    """The problem of the reduced coordinates: the same kind and width, target S = [diag σ, 0; 0, 0] of
    size (k + r) × (k + r) (for a symmetric M = Φ diag(σ) Ψᵀ, S = [diag σ ΨᵀΦ, 0; 0, 0])."""
    target, k = problem.target, problem.width
    p, r = k + target.rank, target.rank
    E = np.eye(p, r)
    if type(problem) is SymmetricFactorization:
        Psi = np.zeros((p, r))
        Psi[:r] = target.Phi.T @ target.Psi  # Ψ = Φ(ΦᵀΨ): the row space of a symmetric M is its column space
        return ReducedSymmetricFactorization(LowRankTarget(E, target.sigma, Psi), k)
    return ReducedFactorization(LowRankTarget(E, target.sigma, E), k)


def leakage(E, bases: Bases, form: str) -> float:
    """‖E − (the part of E inside the spans)‖_F / ‖E‖_F: Q_U Q_Uᵀ E Q_V Q_Vᵀ for a residual-form (m, n)
    matrix, Q Qᵀ block by block for an additive (dim,) vector (0 for E = 0)."""
    E = np.asarray(E, dtype=np.float64)
    size = float(np.linalg.norm(E))
    return 0.0 if size == 0.0 else _leak(E, bases, form, _project(E, bases, form)) / size


def _project(E: np.ndarray, bases: Bases, form: str) -> np.ndarray:
    """E's reduced coordinates: Q_Uᵀ E Q_V (residual form), Qᵀ E block by block (additive form)."""
    if form == "additive":
        return bases.project(E)
    Q_U, Q_V = bases.matrices
    return Q_U.T @ E @ Q_V


def _leak(E: np.ndarray, bases: Bases, form: str, projected: np.ndarray) -> float:
    """‖E − (the part of E inside the spans)‖_F from E and its reduced coordinates ``projected``."""
    if form == "additive":
        return float(np.linalg.norm(E - bases.lift(projected)))
    Q_U, Q_V = bases.matrices
    return float(np.linalg.norm(E - Q_U @ (projected @ Q_V.T)))


class LeftSpans(Exception):
    """Raised inside a reduced run when the perturbation's value leaves the spans: the reduced run would be
    wrong from there on, so the caller solves the run in full (see :func:`in_full`).

    Attributes
    ----------
    t : float
        Where the perturbation was evaluated.
    leak : float
        Its leakage (see :func:`leakage`).
    """

    def __init__(self, name: str, t: float, leak: float):
        self.t, self.leak = float(t), float(leak)
        super().__init__(f"the perturbation {name} left the spans at t = {self.t:.6g}: leakage {leak:.3e} of "
                         f"‖E‖_F (above {LEAK_RTOL:g} and the rounding of the state)")


def in_full(exc: LeftSpans, reduce, full_dim: int) -> "Plan":
    """The plan of a run whose reduced solve stopped with ``exc``: in full, with the reason; ``reduce=True``
    (reduce or raise) raises ValueError instead."""
    if _demand(reduce):
        raise ValueError(f"reduce=True, but this run cannot be reduced: {exc}") from None
    return Plan(f"{exc}; solved in full", full_dim)


class ReducedPerturbation(Perturbation):
    """A perturbation of the full state seen in reduced coordinates: Q_Uᵀ E(t, x) Q_V (residual form) or
    Qᵀ E block by block (additive form), with x = Q z the lifted state. Exact when E lies in the spans.

    Parameters
    ----------
    parent : perturbation model of the full problem
    bases : Bases
    form : {"residual", "additive"}
    sigma_norm : float
        ‖Σ‖_F of the full problem's target (the scale of the rounding allowed in a leak, see
        :data:`LEAK_ROUNDING`).

    Raises
    ------
    LeftSpans
        From a call whose E leaks out of the spans (see :data:`LEAK_ROUNDING`).
    """

    def __init__(self, parent, bases: Bases, form: str, sigma_norm: float):
        self.parent, self.bases, self.form, self.sigma_norm = parent, bases, form, float(sigma_norm)
        self.norm = getattr(parent, "norm", "fro")
        self.state_dependent = getattr(parent, "state_dependent", True)
        self._block_ends = np.cumsum([rows * cols for _, (rows, cols) in bases.reduced_layout])[:-1]

    def __call__(self, t, z):
        E = np.asarray(self.parent(t, self.bases.lift(z)), dtype=np.float64)
        projected = self.project(E)
        # measured at every evaluation: a perturbation of unknown type may leave the spans after the start
        leak, size = _leak(E, self.bases, self.form, projected), float(np.linalg.norm(E))
        if leak > LEAK_RTOL * size + self._rounding(z):
            raise LeftSpans(type(self.parent).__name__, t, leak / size)
        return projected

    def _rounding(self, z) -> float:
        """The leak that rounding of the lifted state can cause (see :data:`LEAK_ROUNDING`); the norms of the
        reduced blocks are those of U and V (orthonormal bases)."""
        norms = [float(np.linalg.norm(block)) for block in np.split(np.asarray(z), self._block_ends)]
        U, V = norms if len(norms) == 2 else norms * 2
        scale = self.sigma_norm + U * V
        return LEAK_ROUNDING * (scale if self.form == "residual" else scale * (U + V))

    def project(self, E) -> np.ndarray:
        return _project(np.asarray(E, dtype=np.float64), self.bases, self.form)

    def bound(self, t, z):
        return self.parent.bound(t, self.bases.lift(z))

    def breakpoints(self, t0, t1):
        return self.parent.breakpoints(t0, t1)

    def piece(self, t, z_start):
        return ReducedPerturbation(self.parent.piece(t, self.bases.lift(z_start)), self.bases, self.form,
                                   self.sigma_norm)

    def describe(self):
        return self.parent.describe()


def _problem_obstacle(problem) -> str | None:
    """Why the problem cannot be reduced, or None."""
    if problem is None:
        return "a plain fun(t, y) has no factors to reduce"
    if type(problem) not in _PROBLEMS:
        mixing = " (its measurement operator mixes every direction of UVᵀ)" if hasattr(problem, "operator") else ""
        return (f"the problem is a {type(problem).__name__}{mixing}; only MatrixFactorization and "
                f"SymmetricFactorization are known to keep their factors in span(U₀, Φ) × span(V₀, Ψ)")
    k, r = problem.width, problem.target.rank
    smallest = min(problem.target.shape)
    if k + r >= smallest:
        return f"width + rank = {k} + {r} is not below min(m, n) = {smallest}: nothing to reduce"
    return None


def _perturbation(flow, reduced, bases: Bases, x0, t0: float):
    """(the perturbation of the reduced flow, None), or (None, why the perturbation cannot be reduced)."""
    E, form = flow.perturbation, flow.form
    if isinstance(E, (SensingError, MinibatchSensingError)):
        return None, "the perturbation is a sensing error (𝒜*𝒜 − I)(X* − UVᵀ), which mixes every direction of UVᵀ"
    if isinstance(E, RandomPerturbation):
        return None, "a RandomPerturbation points in random directions, out of span(U₀, Φ) × span(V₀, Ψ)"
    if type(E) is DiscretizationError:
        if E.problem is not flow.problem:
            return None, "the DiscretizationError belongs to another problem than the flow's"
        return DiscretizationError(reduced, E.step_size), None  # ∇f(x(τ)) − ∇f(x_k) is Q times the reduced one
    if type(E) is FixedPerturbation:
        leak = leakage(E.value, bases, form)
        if leak > LEAK_RTOL:
            return None, f"the fixed perturbation leaves the spans: leakage {leak:.2g} of ‖E‖_F (> {LEAK_RTOL:g})"
        return FixedPerturbation(_project(np.asarray(E.value, dtype=np.float64), bases, form), E.norm, E.name), None
    reduced_E = ReducedPerturbation(E, bases, form, flow.problem.target.frobenius_norm)
    try:
        reduced_E(t0, bases.project(x0))  # the same measure as every later evaluation's
    except LeftSpans as exc:
        return None, (f"the perturbation {type(E).__name__} leaves the spans at the start: leakage {exc.leak:.3e} "
                      f"of ‖E‖_F (above {LEAK_RTOL:g} and the rounding of the state)")
    except Exception as exc:  # noqa: BLE001  (the solve will raise it again, where it belongs)
        return None, f"the perturbation could not be evaluated at the start to measure its leakage: {exc}"
    return reduced_E, None


def _reduced_flow(flow, reduced, bases: Bases, x0, t0: float):
    """(the same flow on the reduced problem, None), or (None, why not)."""
    kind = type(flow).__name__ if type(flow).__module__ == _DYNAMICS and type(flow).__name__ in _FLOWS else None
    if kind is None:
        return None, (f"the flow is a {type(flow).__name__}, not one of pgflow's {', '.join(_FLOWS)} (its "
                      f"right-hand side is not known to keep the spans)")
    if kind in ("GradientFlow", "ScaledGradientFlow"):
        return type(flow)(reduced, check=False), None
    if kind == "ModifiedFlow":
        # rebuilt from its description, and kept only if that describes it completely
        settings = {key: value for key, value in flow.describe().items() if key != "flow"}
        try:
            rebuilt = type(flow)(reduced, **settings, check=False)
        except TypeError as exc:
            return None, f"the ModifiedFlow could not be rebuilt on the reduced problem: {exc}"
        if rebuilt.describe() != flow.describe():
            return None, "the ModifiedFlow's description does not determine it: it cannot be rebuilt reduced"
        return rebuilt, None
    if np.ndim(x0) == 2:
        return None, "a batch of a perturbed flow is solved in full (each member would need its own projection of E)"
    perturbation, why = _perturbation(flow, reduced, bases, x0, t0)
    return (None, why) if why else (type(flow)(reduced, perturbation, flow.form, check=False), None)


def plan(flow, x0, reduce="auto", t0: float = 0.0) -> "Plan":
    """Decide whether a run of ``flow`` from ``x0`` is solved reduced, and set it up.

    Parameters
    ----------
    flow : flow object (or :class:`~pgflow.flows.ode.ODE`)
    x0 : ndarray, shape (dim,) or (B, dim)
        A checked initial state (or batch).
    reduce : {"auto", None, True, False}
        "auto" (or None): reduce where it is exact; True: reduce or raise; False: never.
    t0 : float
        Where a perturbation of unknown type is evaluated to measure its leakage.

    Returns
    -------
    Plan

    Raises
    ------
    ValueError
        ``reduce=True`` for a run that cannot be reduced (the message says why), or an invalid ``reduce``.

    Examples
    --------
    >>> from pgflow.flows import GradientFlow, MatrixFactorization, init
    >>> p = MatrixFactorization.random(m=50, n=40, rank=2, width=3, seed=0)
    >>> how = plan(GradientFlow(p), init.gaussian(p, 0.01, seed=1))
    >>> how.reduced, how.full_dim, how.bases.reduced_dim, how.bases.reduced_layout
    (True, 270, 30, (('U', (5, 3)), ('V', (5, 3))))
    """
    demand = _demand(reduce)
    problem = getattr(flow, "problem", None)
    dim = int(np.shape(x0)[-1])
    if demand is False:
        return Plan("reduce=False", dim)
    reason = _problem_obstacle(problem)
    if reason is None:
        bases = span_bases(problem, x0)
        reduced, reason = _reduced_flow(flow, reduced_problem(problem), bases, x0, t0)
        if reason is None:
            spans = "span(X₀, Φ)" if len(bases.layout) == 1 else "span(U₀, Φ) × span(V₀, Ψ)"
            return Plan(f"exact: the run stays in {spans}", dim, bases, reduced, np.ascontiguousarray(bases.project(x0)),
                        x0)
    if demand:
        raise ValueError(f"reduce=True, but this run cannot be reduced: {reason}")
    return Plan(reason, dim)


@dataclass(frozen=True, eq=False)
class Plan:
    """How a run is solved: reduced (``bases`` and the reduced ``flow``), or in full and why.

    Attributes
    ----------
    reason : str
        Why the run is reduced, or why not (``meta["reduction_reason"]``).
    full_dim : int
    bases : Bases, optional
        The bases of the spans (a leading member axis for a batch); None: solved in full.
    flow : flow object, optional
        The flow on the reduced problem.
    start : ndarray, shape (reduced_dim,) or (B, reduced_dim), optional
        The reduced initial state(s) z₀ = Qᵀx₀.
    x0 : ndarray, shape (dim,) or (B, dim), optional
        The full initial state(s), handed back as the first saved state (see :class:`ReducedStates`).
    """

    reason: str
    full_dim: int
    bases: Bases | None = None
    flow: Any = None
    start: np.ndarray | None = None
    x0: np.ndarray | None = None

    @property
    def reduced(self) -> bool:
        return self.bases is not None

    def meta(self) -> dict:
        """The typed record every trajectory carries: ``reduced`` (bool), ``full_dim`` and ``reduced_dim`` (int,
        or None when solved in full) and ``reduction_reason`` (str)."""
        return {"reduced": self.reduced, "full_dim": self.full_dim,
                "reduced_dim": None if self.bases is None else self.bases.reduced_dim, "reduction_reason": self.reason}

    def _reduced_bases(self) -> Bases:
        if self.bases is None:
            raise ValueError(f"this run is solved in full ({self.reason}): there is nothing to lift")
        return self.bases

    def solve(self, run, args: tuple, options: dict, *, monitors, meta: dict, dynamics, default_monitors=True,
              blas_threads=1, events=(), callback=None, started: float):
        """Run ``run(*args, **options)`` (integrate, integrate_piecewise or gradient_descent) on the reduced
        problem and return its trajectories as reduced full-problem trajectories.

        The run gets no monitors of its own (a flow's own monitors still come with it), the events and the
        callback see lifted states, and a failure's partial trajectory is returned reduced too.

        Parameters
        ----------
        run : callable
        args, options : tuple, dict
            Its arguments, on the reduced problem (``reduce=False`` is added).
        monitors : dict or None
            The caller's monitors of full states, evaluated on the lifted states.
        default_monitors : bool
            Whether to add the default monitors (evaluated on the reduced states: the same numbers, at
            the reduced size's cost).
        meta : dict
            Entries that replace the reduced run's: the full problem's description, provenance.
        dynamics : Dynamics
            The full run's record.
        blas_threads : int or None
            The BLAS thread limit of the monitors.
        events, callback
            The caller's, on full states.
        started : float
            ``time.perf_counter()`` when the caller began: the set-up counts in ``wall_time``.
        """
        bases = self._reduced_bases()
        # the default monitors of the reduced problem (checked before the run, as in full)
        defaults = _monitors.chosen(self.flow.problem, None, default_monitors)
        monitors = None if monitors is None else _monitors.check(monitors)
        reduced_options = {**options, "default_monitors": False, "reduce": False}
        if callback is not None:
            reduced_options["callback"] = _on_lifted(callback, bases)
        if events:
            reduced_options["events"] = [Event(_on_lifted(ev.fun, bases), ev.terminal, ev.direction, ev.key)
                                         for ev in as_events(events)]
        finish = dict(monitors=monitors, defaults=defaults, meta=meta, dynamics=dynamics, blas_threads=blas_threads,
                      setup=time.perf_counter() - started)
        try:
            result = run(*args, **reduced_options)
        except (IntegrationError, DivergenceError) as exc:
            exc.partial = self.lifted(exc.partial, **finish)
            raise
        return self.lifted(result, **finish)

    def lifted(self, result, *, monitors, defaults, meta, dynamics, blas_threads, setup):
        """The reduced run's trajectory (or list of a batch's, or None) as the full problem's, with the
        ``defaults`` monitors (of reduced states) and the caller's ``monitors`` (of lifted states)."""
        bases = self._reduced_bases()
        if result is None:
            return None
        if isinstance(result, list):
            return [self._member(run, bases.member(b), b, monitors, defaults, meta, dynamics, blas_threads, setup)
                    for b, run in enumerate(result)]
        return self._member(result, bases, None, monitors, defaults, meta, dynamics, blas_threads, setup)

    def _member(self, run: Trajectory, bases: Bases, b, monitors, defaults, meta, dynamics, blas_threads,
                setup) -> Trajectory:
        """Member b of a batch (None: the one run) as the full problem's trajectory."""
        fns = {**defaults, **{name: _on_lifted(fn, bases) for name, fn in (monitors or {}).items()}}
        start = time.perf_counter()
        with blas.limit(blas_threads):
            values = _monitors.evaluate(fns, run.t, run.x, warn=False)
        monitor_time = time.perf_counter() - start
        accuracy = run.accuracy
        if accuracy is not None and accuracy.reference is not None and len(accuracy.reference):
            accuracy = dataclasses.replace(accuracy, reference=ReducedStates(bases, np.asarray(accuracy.reference)))
        stats = run.stats
        if stats is not None:
            stats = stats.replace(wall_time=stats.wall_time + setup, monitor_time=stats.monitor_time + monitor_time)
        starts, origins = np.asarray(self.start), np.asarray(self.x0)
        z0, x0 = (starts, origins) if b is None else (starts[b], origins[b])
        saved_start = len(run.t) > 0 and np.array_equal(run.x[0], z0)  # the run saved its start: give x₀ back
        states = ReducedStates(bases, run.x, np.array(x0) if saved_start else None)
        return Trajectory(t=run.t, x=states, layout=bases.layout,  # type: ignore[arg-type]  # x takes ReducedStates
                          monitors={**values, **run.monitors}, meta={**run.meta, **meta, **self.meta()},
                          dynamics=dynamics, stats=stats, events=run.events,
                          event_states={k: bases.lift(v) for k, v in run.event_states.items()}, accuracy=accuracy,
                          dense=None if run.dense is None else LiftedDense(run.dense, bases))


def _on_lifted(fn: Callable, bases: Bases) -> Callable:
    """``fn(t, x)`` of a full state (a monitor, an event, a callback) as a function of a reduced state z: fn(t, Q z)."""
    return lambda t, z: fn(t, bases.lift(z))
