"""Reductions (a run -> a row of named numbers) and the one function that runs a sweep's run."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...flows import DivergenceError, Event, IntegrationError, emergence_events, emergence_report
from ...flows import blas
from ...flows import monitors as _monitors
from .. import setups
from ..discretization import error_vs_step
from .schema import complete

class StudyNotOk(ArithmeticError):
    """The ``order`` reduction's study was pre-asymptotic, diverged or had too loose a reference."""


# numerical failures of a run's dynamics: results, stored as failed runs (FloatingPointError covers
# DivergenceError and overflow)
FAILURES = (DivergenceError, FloatingPointError, IntegrationError, np.linalg.LinAlgError, StudyNotOk)


@dataclass(frozen=True)
class RunResult:
    """What a reduction sees: the resolved configuration, problem, initial state and trajectory."""

    config: dict
    problem: object
    x0: np.ndarray
    trajectory: object


def _no_events(problem, config):
    return []


def _no_monitors(problem, config):
    return {}


@dataclass(frozen=True)
class Reduction:
    """A named reduction of a run to numbers.

    Parameters
    ----------
    columns : callable ``columns(config) -> tuple of str``
        The names it produces (NaN for a failed run).
    reduce : callable ``reduce(RunResult) -> dict``
        Column name -> float or int.
    events : callable ``events(problem, config) -> list of flows.Event``
        Events the flows (GF, PGF) must locate for it.
    monitors : callable ``monitors(problem, config) -> dict``
        Monitors GD must record for it (GD has no events).
    help : str
        What its columns measure, for ``pgflow sweep --list-fields``.
    """

    columns: Callable
    reduce: Callable
    events: Callable = _no_events
    monitors: Callable = _no_monitors
    help: str = ""


def _relative_error(problem):
    scale = problem.target.frobenius_norm
    return lambda t, x: float(problem.residual_norm(x)) / scale


def _recovery_error(run):
    return {"recovery_error": _relative_error(run.problem)(None, run.trajectory.final)}


def _time_to_eps_events(problem, config):
    error, eps = _relative_error(problem), config["eps"]
    return [Event(lambda t, x: error(t, x) - eps, direction=-1.0, name="time_to_eps")]


def _time_to_eps(run):
    traj, eps = run.trajectory, run.config["eps"]
    if _relative_error(run.problem)(0.0, run.x0) <= eps:
        return {"time_to_eps": 0.0}  # no crossing to locate: already there
    if "time_to_eps" in traj.events:
        times = traj.events["time_to_eps"]
        return {"time_to_eps": float(times[0]) if times else math.nan}
    hit = np.flatnonzero(traj.monitors["relative_error"] <= eps)  # GD: first recorded step
    return {"time_to_eps": float(traj.t[hit[0]]) if hit.size else math.nan}


def _n_modes(config) -> int:
    return min(config["rank"], config["width"])


def _emergence_columns(config):
    return tuple(name for i in range(1, _n_modes(config) + 1)
                 for name in (f"emergence_{i}", f"emergence_{i}_predicted"))


def _emergence(run):
    report = emergence_report(run.trajectory, run.problem, run.x0, run.config["fraction"])
    names = _emergence_columns(run.config)
    values = np.column_stack([report.measured, report.predicted]).ravel()
    return dict(zip(names, map(float, values)))


def _order(run):
    c = run.config
    study = error_vs_step(run.problem, run.x0, c["order_step_sizes"], c["t_end"], variant=c["variant"])
    if not study.ok:  # an order outside its asymptotic regime is no order: the run fails with the reason
        raise StudyNotOk(f"the fitted order {study.order:.3f} is not an order here: {study.verdict}")
    return {"order": float(study.order), "order_stderr": float(study.order_stderr)}



REDUCTIONS: dict[str, Reduction] = {
    "recovery_error": Reduction(lambda c: ("recovery_error",), _recovery_error,
                                help="‖UVᵀ − X*‖_F / ‖X*‖_F at t_end"),
    "final_loss": Reduction(lambda c: ("final_loss",),
                            lambda run: {"final_loss": float(run.problem.loss(run.trajectory.final))},
                            help="the loss f at t_end"),
    "time_to_eps": Reduction(lambda c: ("time_to_eps",), _time_to_eps, events=_time_to_eps_events,
                             monitors=lambda p, c: {"relative_error": _relative_error(p)},
                             help="the first time the recovery error is <= eps (GD: at a saved step)"),
    "emergence_times": Reduction(_emergence_columns, _emergence,
                                 events=lambda p, c: emergence_events(p, c["fraction"]),
                                 monitors=lambda p, c: {"singular_values": _monitors.singular_values(p)},
                                 help="emergence_i and emergence_i_predicted: when σᵢ(UVᵀ) reaches fraction·σᵢ, "
                                      "measured and predicted"),
    "nfev": Reduction(lambda c: ("nfev",), lambda run: {"nfev": int(run.trajectory.stats.nfev)},
                      help="right-hand side evaluations (GD: gradient evaluations)"),
    "order": Reduction(lambda c: ("order", "order_stderr"), _order,
                       help="order and order_stderr: the fitted order of GD's error against GF over "
                            "order_step_sizes"),
}
"""Reductions by name. recovery_error: ‖UVᵀ − X*‖_F/‖X*‖_F at t_end. final_loss: f at t_end.
time_to_eps: first time the recovery error is ≤ eps (GF, PGF: an event on the solver's steps; GD:
the first saved step, so within save_every·η). emergence_times: measured and predicted time
at which singular value i reaches fraction·σᵢ (:func:`pgflow.flows.emergence_report`). nfev: right-hand
side evaluations (GD: gradient evaluations). order: fitted order of GD's error against GF over
order_step_sizes (:func:`pgflow.analysis.discretization.error_vs_step`, from the same start)."""


DEFAULT_REDUCTIONS = ("recovery_error", "final_loss", "nfev")


def _evolve(config: dict, problem, x0, reductions):
    if config["dynamics"] == "gd":
        monitors = {k: v for r in reductions for k, v in r.monitors(problem, config).items()}
        return setups.evolve(problem, x0, config, monitors=monitors, default_monitors=False)
    # the reductions need only the final state and their events: save two states, no interpolants
    return setups.evolve(problem, x0, config, t_eval=[0.0, config["t_end"]],
                         events=[e for r in reductions for e in r.events(problem, config)], default_monitors=False,
                         dense_output=False)


def run_one(config: dict) -> dict:
    """Run one resolved configuration (see :meth:`Sweep.runs`) and reduce it to a row.

    Parameters
    ----------
    config : dict
        Fields of :data:`FIELDS` with integer seeds (a field left out takes its default), and
        "reductions" (names in :data:`REDUCTIONS`).

    Returns
    -------
    dict
        "status" ("ok" or "failed"), the reductions' columns (NaN when failed), "wall_time"
        (seconds) and "error" (the exception's type and message when failed, else "").
    """
    start = time.perf_counter()
    config = complete(config)  # a run file's configuration holds only the fields that apply to it
    reductions = [REDUCTIONS[name] for name in config["reductions"]]
    # one BLAS thread in every executor: the same numbers everywhere, and N workers on N cores
    with blas.limit(1):
        problem = setups.build_problem(config)
        x0 = setups.initial_state(problem, config)
        try:
            result = RunResult(config, problem, x0, _evolve(config, problem, x0, reductions))
            values = {k: v for r in reductions for k, v in r.reduce(result).items()}
            status, error = "ok", ""
        except FAILURES as exc:
            return failed_row(config, "failed", f"{type(exc).__name__}: {exc}", time.perf_counter() - start)
    return {"status": status, **values, "wall_time": time.perf_counter() - start, "error": error}


def failed_row(config: dict, status: str, error: str, wall_time: float = math.nan) -> dict:
    """The row of a run without results: ``status``, NaN for every column of its reductions, ``error``."""
    config = complete(config)
    columns = (col for name in config["reductions"] for col in REDUCTIONS[name].columns(config))
    return {"status": status, **dict.fromkeys(columns, math.nan), "wall_time": wall_time, "error": error}
