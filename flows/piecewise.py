"""Integration piece by piece, for perturbations that jump on a time grid or restart at each GD step.

A perturbation model (:mod:`pgflow.flows.perturbations`) may be smooth only between breakpoints:
a random direction redrawn on a grid, a mini-batch redrawn on each piece, GD's discretization error
that depends on the state at the start of each step. A Runge–Kutta step across such a jump would
evaluate the next piece's perturbation in its stages (scipy's FSAL stage at the end of a step does
exactly that), so :func:`integrate_piecewise` restarts the solver at every breakpoint.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from . import blas, reduction
from .checks import renamed, time_grid
from .integration import IMPLICIT, REFERENCE_TIGHTER, IntegrationError, default_atol, integrate
from .ode import parse_span
from .stepping import SCIPY_MIN_RTOL
from .trajectory import Accuracy, SolverStats, Trajectory


@renamed(t_end="t_span", t_start="t_span")
def integrate_piecewise(flow, x0, t_span, *, t_eval=None, events=(), error_estimate: bool = False,
                        **kwargs) -> Trajectory:
    """:func:`pgflow.flows.integration.integrate` restarted at each breakpoint of the flow's perturbation.

    Each piece [b_j, b_{j+1}] is integrated with ``flow.piece(b_j, x(b_j))``, a smooth vector field,
    so no solver stage ever evaluates the next piece's perturbation (scipy's FSAL stage at the end
    of a step would otherwise do exactly that, at every jump).

    Parameters
    ----------
    flow : PerturbedGradientFlow
    x0, t_span, events
        As for :func:`pgflow.flows.integration.integrate` (forward in time); events are searched on every
        piece (a ``terminal`` count counts the occurrences of one piece).
    t_eval : array_like, optional
        Times to save (default: every solver step); piece ends are integrated to but not saved
        unless requested. A state saved on a breakpoint belongs to the piece that ends there, so
        its "perturbation_norm" is that piece's E (the left limit).
    error_estimate : bool
        Estimate every saved state's error from a second piecewise run on the saved times at
        tighter tolerances (as :func:`pgflow.flows.integration.integrate` does, each piece starting
        from the second run's own state, so that the estimate is of the global error), with steps
        no longer than half the smallest output interval of the piece. ``guarantee`` is not
        available piecewise.
    **kwargs
        Passed to :func:`pgflow.flows.integration.integrate` for every piece (method, rtol, atol, monitors,
        budgets, ...); ``first_step`` is the first step of each piece, at most the piece's length.
        ``reduce`` is decided once for the whole run (see :mod:`pgflow.flows.reduction`): a reduced run
        solves every piece, and the reference of ``error_estimate``, in the same bases.

    Returns
    -------
    Trajectory
        ``stats`` sums the solver statistics over the pieces, ``meta["pieces"]`` records their
        number, ``dynamics`` is the whole flow's, and ``dense`` covers all of them.
    """
    started = time.perf_counter()
    t0, t1 = parse_span(t_span)
    if not t1 > t0:
        raise ValueError(f"t_span must run forward for a piecewise flow, got ({t0}, {t1})")
    if kwargs.get("guarantee"):
        raise ValueError("guarantee=True is not available for integrate_piecewise: use error_estimate=True and "
                         "tighten rtol until the estimate is small enough")
    if kwargs.get("atol") is None:  # one default for every piece, from the initial state
        kwargs["atol"] = default_atol(flow.problem, x0, kwargs.get("rtol", 1e-8))[0]
    x0 = flow.problem.check_state(x0)
    reduce = kwargs.pop("reduce", "auto")
    with blas.limit(kwargs.get("blas_threads", 1)):  # the bases' QRs, under the run's thread limit
        plan = reduction.plan(flow, x0, reduce, t0)
    if plan.reduced:
        options = {key: value for key, value in kwargs.items() if key not in ("monitors", "default_monitors", "callback")}
        meta = {**flow.problem.describe(), **flow.describe(), **(kwargs.get("provenance") or {})}
        try:
            return plan.solve(integrate_piecewise, (plan.flow, plan.start, (t0, t1)),
                              {**options, "t_eval": t_eval, "error_estimate": error_estimate},
                              monitors=kwargs.get("monitors"), default_monitors=kwargs.get("default_monitors", True),
                              meta=meta, dynamics=flow.dynamics, blas_threads=kwargs.get("blas_threads", 1),
                              events=events, callback=kwargs.get("callback"), started=started)
        except reduction.LeftSpans as exc:
            plan = reduction.in_full(exc, reduce, plan.full_dim)
    kwargs["reduce"] = False  # decided for the whole run: the pieces are not asked again
    run = _pieces(flow, x0, t0, t1, t_eval, events, kwargs)
    run.meta.update(plan.meta())
    if not error_estimate or run.t.size == 0:
        return run
    method = run.stats.method if run.stats.method in IMPLICIT else "DOP853"
    rtol, atol = kwargs.get("rtol", 1e-8), kwargs["atol"]
    spacing = np.diff(run.t)
    reference = _pieces(flow, x0, t0, float(run.t[-1]), run.t, (), {
        **kwargs, "method": method, "rtol": max(rtol / REFERENCE_TIGHTER, SCIPY_MIN_RTOL),
        "atol": atol / REFERENCE_TIGHTER, "monitors": None, "default_monitors": False,
        "max_step": min(kwargs.get("max_step", np.inf), 0.5 * spacing.min() if spacing.size else np.inf)})
    estimate = np.linalg.norm(run.x - reference.x, axis=-1)
    accuracy = Accuracy(estimate=estimate, how="reference", reference=reference.x, reference_method=method,
                        reference_rtol=reference.meta["rtol"], reference_atol=reference.meta["atol"],
                        cost=reference.stats.rhs_calls / max(1, run.stats.rhs_calls))
    return dataclasses.replace(run, accuracy=accuracy)


def _pieces(flow, x0, t0: float, t1: float, t_eval, events, kwargs) -> Trajectory:
    """The run over [t0, t1], restarted at every breakpoint of the perturbation."""
    breaks = np.asarray(flow.perturbation.breakpoints(t0, t1), dtype=float)
    edges = np.concatenate([[t0], breaks, [t1]])
    grid = time_grid(t_eval, t0, t1)
    parts, x = [], x0
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        sub_eval = None
        if grid is not None:
            inside = grid[(grid > a) & (grid < b)] if i else grid[(grid >= a) & (grid < b)]
            sub_eval = np.append(inside, b)
        try:
            options = dict(kwargs)
            if options.get("first_step") is not None:
                options["first_step"] = min(options["first_step"], b - a)
            part = integrate(flow.piece(a, x), x, (a, b), t_eval=sub_eval, events=events, **options)
        except IntegrationError as exc:
            raise IntegrationError(f"{exc} (piece {i + 1} of {len(edges) - 1}, [{a:g}, {b:g}], of the run to "
                                   f"t_end = {t1:g})", exc.t_reached,
                                   _join(parts + [exc.partial], grid, t0, t1, flow)) from exc
        parts.append(part)
        x = part.final
        if part.stats.stopped_at is not None:
            break
    return _join(parts, grid, t0, t1, flow)


def _join(parts: list[Trajectory], grid, t0: float, t1: float, flow) -> Trajectory:
    """One trajectory from consecutive pieces: shared endpoints once, only requested times kept."""
    keep = []
    for i, part in enumerate(parts):
        k = np.ones(part.t.size, dtype=bool) if grid is None else np.isin(part.t, grid)
        if i and grid is None:
            k[0] = False  # the previous piece's end
        keep.append(k)
    t = np.concatenate([p.t[k] for p, k in zip(parts, keep)])
    x = np.concatenate([p.x[k] for p, k in zip(parts, keep)])
    monitors = {name: np.concatenate([p.monitors[name][k] for p, k in zip(parts, keep)])
                for name in parts[0].monitors}
    meta = {**parts[-1].meta, **flow.describe(), "t_start": t0, "t_end": t1, "pieces": len(parts)}
    events = {key: tuple(s for p in parts for s in p.events.get(key, ())) for key in parts[0].events}
    event_states = {key: np.concatenate([p.event_states[key] for p in parts]) for key in parts[0].event_states}
    dense = None
    if all(p.dense is not None for p in parts):
        dense = _PiecewiseDense(np.array([p.meta["t_start"] for p in parts]), [p.dense for p in parts])
    return Trajectory(t=t, x=x, layout=parts[0].layout, monitors=monitors, meta=meta, dynamics=flow.dynamics,
                      stats=SolverStats.combined(p.stats for p in parts), events=events, event_states=event_states,
                      dense=dense)


class _PiecewiseDense:
    """Dense output over consecutive pieces: piece j serves [starts[j], starts[j+1])."""

    def __init__(self, starts: np.ndarray, denses: list):
        self.starts, self.denses = starts, denses

    def __call__(self, t):
        t = np.asarray(t, dtype=float)
        j = np.clip(np.searchsorted(self.starts, t, side="right") - 1, 0, len(self.denses) - 1)
        if t.ndim == 0:
            return self.denses[int(j)](t)
        out = None
        for piece in np.unique(j):
            values = self.denses[piece](t[j == piece])
            if out is None:
                out = np.empty((t.size, values.shape[-1]))
            out[j == piece] = values
        return out
