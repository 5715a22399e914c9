r"""Sweeps: grids of runs, on all local cores or a Dask cluster, resumable, nothing lost.

A sweep is a *base* run configuration, a grid of *axes* over its fields, a number of replicates per
grid cell, and a list of *reductions* that turn each run into a row of named numbers.

Runs
    A run configuration is a flat dict over :data:`FIELDS` (problem sizes, rank, width,
    condition, measurements, noise, init scale, dynamics, method and tolerances, GD step size and
    variant, PGF level ρ, seeds, ...). :func:`run_one` builds the problem and the initial state,
    runs gradient flow (``dynamics = "gf"``, :func:`flows.integrate`), the perturbed gradient
    flow with a :class:`flows.RandomPerturbation` of level ρ (``"pgf"``,
    :func:`flows.integrate_piecewise`) or gradient descent (``"gd"``, perturbed when ρ or ξ₀ > 0),
    and applies the reductions. It is a module-level function of a dict, so it pickles to local
    processes and to Dask workers.
Grid
    Product axes vary one field each; a zipped axis varies several fields together (equal lengths).
    Runs are ordered with the last axis fastest and the replicate index innermost.
Seeds
    The three seeds (problem, init, perturbation) of run (i₁, …, i_A, replicate) are the first
    three 32-bit words of ``SeedSequence(seed).spawn(·)[i₁].spawn(·)[i₂]…[replicate]``. Keying by the grid *position*
    rather than the flat run number means that appending values to an axis, or raising
    ``replicates``, leaves every existing run — and its stored result — as it was. The resolved
    seeds are plain integers, recorded in the run's configuration and its row: the run
    reproduces alone, bit for bit, with ``run_one(config)``. A seed field set to an integer (in the
    base or on an axis) is used as given instead.
Storage
    Each finished run is written atomically to ``<out>/runs/<run_id>.json`` (its configuration
    and its row), where ``run_id`` is a hash of the resolved configuration and the code
    version (the package version and a hash of the library's sources): a re-run skips runs whose file exists, a killed sweep loses only the runs in flight
    (a kill in the middle of a write leaves at most a hidden ``.tmp-*`` file, never read), and a
    changed configuration never meets a stale result. The table (``<out>/table.csv``, and a
    pandas DataFrame when pandas is installed) is assembled from those files.
Failures
    A run whose dynamics fail numerically (diverging GD, a failed solve, a singular matrix) is
    stored with ``status = "failed"``, its error message and NaN reductions, and the sweep goes
    on. Any other exception is a bug or a bad configuration: it stops the sweep (the runs already
    stored are kept). Configuration errors are caught before anything runs, naming the field.
Executors
    "serial" (in this process), "processes" (default; ``concurrent.futures`` with the forkserver
    or spawn start method, all cores) and "dask" (``dask.distributed.Client`` at a scheduler
    address; ``pip install .[cluster]``). Every run limits BLAS to one thread, in every executor,
    so the executors compute the same numbers and do not oversubscribe the cores.
Timing
    ``wall_time`` (seconds of the whole run, in the worker) is the only column that differs from one
    execution to the next; it is listed in :data:`TIMING_COLUMNS` and left out by
    ``Table.csv(timing=False)``.

Examples
--------
>>> import tempfile
>>> sweep = Sweep(base={"m": 6, "n": 5, "rank": 2, "width": 2, "t_end": 30.0},
...               grid={"scale": [1e-3, 1e-1]}, replicates=2, reductions=("recovery_error", "nfev"))
>>> table = run_sweep(sweep, tempfile.mkdtemp(), executor="serial")
>>> len(table), table.columns[:4]
(4, ('run', 'scale', 'replicate', 'problem_seed'))
>>> bool(np.all(table.column("recovery_error") < 1e-3))
True
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import multiprocessing
import numbers
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from flows import (DivergenceError, Event, GradientFlow, IntegrationError, MatrixCompletion, MatrixFactorization,
                   MatrixSensing, PerturbedGradientFlow, RandomPerturbation, emergence_events, emergence_report,
                   gradient_descent, init, integrate, integrate_piecewise)
from flows import _blas
from flows import monitors as _monitors
from flows._checks import positive, positive_int
from flows._io import atomic_path
from flows.descent import VARIANTS
from flows.integrate import METHODS
from flows.trajectory import code_version, package_version

from ._config import read_toml
from .discretization import error_vs_step, number_of_steps

SPAWN = "spawn"
SEED_FIELDS = ("problem_seed", "init_seed", "perturbation_seed")
TIMING_COLUMNS = ("wall_time",)
EXECUTORS = ("serial", "processes", "dask")
RUNS_FOLDER = "runs"
TABLE_FILE = "table.csv"
# numerical failures of a run's dynamics: results, stored as failed runs (FloatingPointError covers
# DivergenceError and overflow)
FAILURES = (DivergenceError, FloatingPointError, IntegrationError, np.linalg.LinAlgError)


# --------------------------------------------------------------------------------------------------
# fields of a run configuration: default and check (which returns the normalized value)
# --------------------------------------------------------------------------------------------------

def _choice(*options):
    def check(value, name):
        if not isinstance(value, str) or value not in options:
            raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")
        return value
    return check


def _non_negative(value, name):
    return positive(value, name, allow_zero=True)


def _between(low: float, high: float = math.inf, *, open_high: bool = False):
    """A check for a positive real in [low, high] ((0, …] when low = 0; …) when open_high)."""
    interval = f"{'(' if low == 0 else '['}{low:g}, {high:g}{')' if open_high or high == math.inf else ']'}"

    def check(value, name):
        value = positive(value, name)
        if value < low or value > high or (open_high and value == high):
            raise ValueError(f"{name} must lie in {interval}, got {value}")
        return value
    return check


def _seed(value, name):
    return SPAWN if value == SPAWN else positive_int(value, name, minimum=0)


def _step_sizes(value, name):
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list of step sizes, got {type(value).__name__}")
    values = [positive(v, f"{name}[{i}]") for i, v in enumerate(value)]
    if len(set(values)) < 2:
        raise ValueError(f"{name} must hold at least two distinct step sizes, got {value!r}")
    return values


FIELDS: dict[str, tuple[object, Callable]] = {
    # problem: ½‖UVᵀ − Σ‖² ("factorization"), Gaussian sensing of X* with p = measurements ("sensing"),
    # or a uniformly observed fraction of the entries ("completion"); target σ evenly spaced in
    # [1, condition]; noise: standard deviation of each measurement's noise
    "problem": ("factorization", _choice("factorization", "sensing", "completion")),
    "m": (8, positive_int),
    "n": (8, positive_int),
    "rank": (2, positive_int),
    "width": (2, positive_int),
    "condition": (1.0, _between(1.0)),
    "measurements": (64, positive_int),
    "observed": (0.5, _between(0.0, 1.0)),
    "noise": (0.0, _non_negative),
    # initial state: entries of scale α ("gaussian") or U₀ᵀU₀ = V₀ᵀV₀ ("balanced")
    "init": ("gaussian", _choice("gaussian", "balanced")),
    "scale": (1e-3, positive),
    # dynamics to t_end: "gf", "pgf" (a RandomPerturbation of level rho and floor xi0, redrawn every
    # perturbation_interval) or "gd" (round(t_end / step_size) steps; perturbed when rho or xi0 > 0)
    "dynamics": ("gf", _choice("gf", "pgf", "gd")),
    "t_end": (20.0, positive),
    "method": ("auto", _choice("auto", *METHODS)),
    "rtol": (1e-8, positive),
    "atol": (1e-10, positive),
    "step_size": (0.05, positive),
    "variant": ("simultaneous", _choice(*VARIANTS)),
    "record_every": (1, positive_int),
    "rho": (0.0, _non_negative),
    "xi0": (0.0, _non_negative),
    "perturbation_interval": (0.1, positive),
    # parameters of the reductions (see REDUCTIONS)
    "eps": (1e-3, positive),
    "fraction": (0.5, _between(0.0, 1.0, open_high=True)),
    "order_step_sizes": ([0.04, 0.02, 0.01], _step_sizes),
    # seeds: "spawn" (from the sweep's root seed and the run's grid position) or an int
    "problem_seed": (SPAWN, _seed),
    "init_seed": (SPAWN, _seed),
    "perturbation_seed": (SPAWN, _seed),
}


# --------------------------------------------------------------------------------------------------
# reductions: a run -> named numbers
# --------------------------------------------------------------------------------------------------

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
    """

    columns: Callable
    reduce: Callable
    events: Callable = _no_events
    monitors: Callable = _no_monitors


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
    if "time_to_eps" in traj.meta.get("events", {}):
        times = traj.meta["events"]["time_to_eps"]
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
    return {"order": float(study.order), "order_stderr": float(study.order_stderr)}


REDUCTIONS: dict[str, Reduction] = {
    "recovery_error": Reduction(lambda c: ("recovery_error",), _recovery_error),
    "final_loss": Reduction(lambda c: ("final_loss",),
                            lambda run: {"final_loss": float(run.problem.loss(run.trajectory.final))}),
    "time_to_eps": Reduction(lambda c: ("time_to_eps",), _time_to_eps, events=_time_to_eps_events,
                             monitors=lambda p, c: {"relative_error": _relative_error(p)}),
    "emergence_times": Reduction(_emergence_columns, _emergence,
                                 events=lambda p, c: emergence_events(p, c["fraction"]),
                                 monitors=lambda p, c: {"singular_values": _monitors.singular_values(p)}),
    "nfev": Reduction(lambda c: ("nfev",), lambda run: {"nfev": int(run.trajectory.meta["nfev"])}),
    "order": Reduction(lambda c: ("order", "order_stderr"), _order),
}
"""Reductions by name. recovery_error: ‖UVᵀ − X*‖_F/‖X*‖_F at t_end. final_loss: f at t_end.
time_to_eps: first time the recovery error is ≤ eps (GF, PGF: an event on the solver's steps; GD:
the first recorded step, so within record_every·η). emergence_times: measured and predicted time
at which singular value i reaches fraction·σᵢ (:func:`flows.emergence_report`). nfev: right-hand
side evaluations (GD: gradient evaluations). order: fitted order of GD's error against GF over
order_step_sizes (:func:`analysis.discretization.error_vs_step`, from the same start)."""

DEFAULT_REDUCTIONS = ("recovery_error", "final_loss", "nfev")


# --------------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------------

def build_problem(config: dict):
    """The problem of a resolved run configuration (target, operator and noise from problem_seed)."""
    c = config
    shape = dict(m=c["m"], n=c["n"], rank=c["rank"], width=c["width"])
    common = dict(condition=c["condition"], seed=c["problem_seed"])
    if c["problem"] == "factorization":
        return MatrixFactorization.random(**shape, **common)
    if c["problem"] == "sensing":
        return MatrixSensing.random(**shape, n_measurements=c["measurements"], noise=c["noise"], **common)
    return MatrixCompletion.random(**shape, fraction=c["observed"], noise=c["noise"], **common)


def initial_state(problem, config: dict) -> np.ndarray:
    """x₀ of a resolved run configuration (from init_seed)."""
    make = init.gaussian if config["init"] == "gaussian" else init.balanced
    return make(problem, config["scale"], seed=config["init_seed"])


def _perturbation(problem, config):
    grid = np.arange(0.0, config["t_end"], config["perturbation_interval"])
    return RandomPerturbation(problem, config["rho"], config["xi0"], grid, config["perturbation_seed"])


def _evolve(config: dict, problem, x0, reductions):
    c = config
    if c["dynamics"] == "gd":
        n_steps = number_of_steps(c["step_size"], c["t_end"], "step_size")
        monitors = {k: v for r in reductions for k, v in r.monitors(problem, c).items()}
        perturbation = _perturbation(problem, c) if c["rho"] or c["xi0"] else None
        return gradient_descent(problem, x0, c["step_size"], n_steps, variant=c["variant"],
                                perturbation=perturbation, record_every=c["record_every"], monitors=monitors)
    # the reductions need only the final state and their events: save two states, no interpolants
    options = dict(method=c["method"], rtol=c["rtol"], atol=c["atol"], t_eval=[0.0, c["t_end"]],
                   events=[e for r in reductions for e in r.events(problem, c)], monitors={},
                   dense_output=False)
    if c["dynamics"] == "gf":
        return integrate(GradientFlow(problem), x0, c["t_end"], **options)
    return integrate_piecewise(PerturbedGradientFlow(problem, _perturbation(problem, c)), x0, c["t_end"], **options)


def run_one(config: dict) -> dict:
    """Run one resolved configuration (see :meth:`Sweep.runs`) and reduce it to a row.

    Parameters
    ----------
    config : dict
        Every field of :data:`FIELDS` with integer seeds, and "reductions" (names in
        :data:`REDUCTIONS`).

    Returns
    -------
    dict
        "status" ("ok" or "failed"), the reductions' columns (NaN when failed), "wall_time"
        (seconds) and "error" (the exception's type and message when failed, else "").
    """
    start = time.perf_counter()
    reductions = [REDUCTIONS[name] for name in config["reductions"]]
    # one BLAS thread in every executor: the same numbers everywhere, and N workers on N cores
    with _blas.limit(1):
        problem = build_problem(config)
        x0 = initial_state(problem, config)
        try:
            result = RunResult(config, problem, x0, _evolve(config, problem, x0, reductions))
            values = {k: v for r in reductions for k, v in r.reduce(result).items()}
            status, error = "ok", ""
        except FAILURES as exc:
            values = dict.fromkeys((col for r in reductions for col in r.columns(config)), math.nan)
            status, error = "failed", f"{type(exc).__name__}: {exc}"
    return {"status": status, **values, "wall_time": time.perf_counter() - start, "error": error}


# --------------------------------------------------------------------------------------------------
# the sweep: base, axes, replicates, reductions -> planned runs
# --------------------------------------------------------------------------------------------------

@contextmanager
def _located(where: str):
    """Prefix the message of a TypeError or ValueError raised in the block with ``where``."""
    try:
        yield
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from exc


def _check_value(name: str, value, where: str):
    """The normalized value of field ``name``, or an error that says where it was set."""
    if name not in FIELDS:
        raise ValueError(f"{where}: unknown field {name!r}; fields are {sorted(FIELDS)}")
    with _located(where):
        return FIELDS[name][1](value, name)


def _check_axis(name: str, values, where: str, seen: dict) -> list:
    """The normalized values of an axis over field ``name``; ``seen`` maps fields to where they were set."""
    if name not in FIELDS:
        raise ValueError(f"{where}: unknown field {name!r}; fields are {sorted(FIELDS)}")
    if name in seen:
        raise ValueError(f"{where}: field {name!r} is already set in {seen[name]}")
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{where}: an axis must be a non-empty list of values, got {values!r}")
    seen[name] = where
    return [_check_value(name, v, f"{where}[{j}]") for j, v in enumerate(values)]


def _check_run(config: dict, where: str) -> None:
    """Constraints between fields, checked on every run before any runs."""
    c = config
    if c["rank"] > min(c["m"], c["n"]):
        raise ValueError(f"{where}: rank must be <= min(m, n) = {min(c['m'], c['n'])}, got {c['rank']}")
    if c["init"] == "balanced" and c["m"] < c["width"]:
        raise ValueError(f"{where}: init = 'balanced' needs m >= width, got m = {c['m']}, width = {c['width']}")
    if c["dynamics"] == "gf" and (c["rho"] or c["xi0"]):
        raise ValueError(f"{where}: rho and xi0 perturb dynamics 'pgf' or 'gd', not 'gf'")
    if c["dynamics"] == "gd" and (c["rho"] or c["xi0"]) and c["variant"] != "simultaneous":
        raise ValueError(f"{where}: perturbed GD (rho or xi0 > 0) needs variant = 'simultaneous'")
    try:
        if c["dynamics"] == "gd":
            number_of_steps(c["step_size"], c["t_end"], "step_size")
        if "order" in c["reductions"]:
            for eta in c["order_step_sizes"]:
                number_of_steps(eta, c["t_end"], "order_step_sizes")
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its position, the values its axes give it, and its resolved configuration."""

    index: int
    key: tuple
    axes: dict
    config: dict
    run_id: str


def run_id(config: dict) -> str:
    """The hash naming a run's file: its resolved configuration and the code version (the package
    version and a hash of the library's sources, :func:`flows.trajectory.code_version`)."""
    text = json.dumps({"config": config, "version": code_version()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Sweep:
    """A base configuration, axes over its fields, replicates and reductions.

    Parameters
    ----------
    base : dict
        Field -> value (:data:`FIELDS`); unset fields take their defaults, and axes override it.
    grid : dict
        Product axes: field -> non-empty list of values.
    zipped : sequence of dict
        Zipped axes: each a dict field -> list, all lists of one axis of the same length; the fields of
        an axis vary together.
    reductions : sequence of str
        Names in :data:`REDUCTIONS`.
    seed : int
        The root seed of every "spawn" seed.
    replicates : int
        Runs per grid cell (the innermost axis, "replicate").

    Raises
    ------
    ValueError, TypeError
        Naming the field and where it was set: an unknown field or reduction, an empty axis, zipped
        lists of different lengths, a field on two axes, repeated values on an axis, a bad value, or
        a run whose fields contradict each other.
    """

    base: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    zipped: tuple = ()
    reductions: tuple = DEFAULT_REDUCTIONS
    seed: int = 0
    replicates: int = 1
    axes: tuple = field(init=False, repr=False)  # ((fields, (values per field) per position), ...)
    _plan: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        base = {name: _check_value(name, value, f"base.{name}") for name, value in dict(self.base).items()}
        if isinstance(self.zipped, dict):
            raise TypeError("zipped must be a list of dicts (in TOML, [[zip]] tables), got a dict")
        seen = {}  # field -> the axis that sets it (an axis overrides the base)
        grid = {name: _check_axis(name, values, f"grid.{name}", seen) for name, values in dict(self.grid).items()}
        zipped = []
        for i, group in enumerate(self.zipped):
            if not group:
                raise ValueError(f"zip[{i}]: a zipped axis needs at least one field")
            group = {name: _check_axis(name, values, f"zip[{i}].{name}", seen) for name, values in dict(group).items()}
            lengths = {name: len(values) for name, values in group.items()}
            if len(set(lengths.values())) > 1:
                raise ValueError(f"zip[{i}]: zipped fields must have the same length, got "
                                 + ", ".join(f"{name} has {n}" for name, n in lengths.items()))
            zipped.append(group)
        reductions = tuple(self.reductions)
        for name in reductions:
            if name not in REDUCTIONS:
                raise ValueError(f"sweep.reductions: unknown reduction {name!r}; reductions are {sorted(REDUCTIONS)}")
        if not reductions or len(set(reductions)) < len(reductions):
            raise ValueError(f"sweep.reductions must be a non-empty list without repeats, got {list(reductions)}")
        axes = {f"grid.{name}": ((name,), tuple((v,) for v in values)) for name, values in grid.items()}
        axes |= {f"zip[{i}]": (tuple(group), tuple(zip(*group.values()))) for i, group in enumerate(zipped)}
        for where, (_, values) in axes.items():
            if len(set(map(_canonical, values))) < len(values):
                raise ValueError(f"{where}: repeated values (use replicates for repeated runs)")
        for name, value in (("base", base), ("grid", grid), ("zipped", tuple(zipped)), ("reductions", reductions),
                            ("seed", positive_int(self.seed, "sweep.seed", minimum=0)),
                            ("replicates", positive_int(self.replicates, "sweep.replicates")),
                            ("axes", tuple(axes.values()))):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_plan", self._resolve())

    @property
    def axis_fields(self) -> tuple[str, ...]:
        """Every field an axis sets, in axis order."""
        return tuple(name for names, _ in self.axes for name in names)

    def _resolve(self) -> tuple[PlannedRun, ...]:
        shape = tuple(len(values) for _, values in self.axes) + (self.replicates,)
        plan, by_id = [], {}
        defaults = {name: default for name, (default, _) in FIELDS.items()}
        for index, key in enumerate(np.ndindex(*shape)):
            key = tuple(int(i) for i in key)
            axes = {name: value for (names, values), i in zip(self.axes, key) for name, value in zip(names, values[i])}
            config = {**defaults, **self.base, **axes, "reductions": list(self.reductions)}
            # SeedSequence(seed, spawn_key=key) is SeedSequence(seed).spawn(·)[key[0]].spawn(·)[key[1]]…
            spawned = np.random.SeedSequence(self.seed, spawn_key=key).generate_state(len(SEED_FIELDS))
            for name, word in zip(SEED_FIELDS, spawned):
                if config[name] == SPAWN:
                    config[name] = int(word)
            where = f"run {index} ({_describe(axes, key[-1])})"
            _check_run(config, where)
            rid = run_id(config)
            if rid in by_id:
                raise ValueError(f"{where} has the same configuration as run {by_id[rid]}: with explicit seeds, "
                                 "replicates > 1 repeat the same run")
            by_id[rid] = index
            plan.append(PlannedRun(index, key, axes, config, rid))
        return tuple(plan)

    def runs(self) -> tuple[PlannedRun, ...]:
        """Every run of the sweep, in grid order (last axis fastest, replicate innermost)."""
        return self._plan

    def __len__(self) -> int:
        return len(self._plan)

    @classmethod
    def from_config(cls, config: dict, source: str = "config") -> "Sweep":
        """The sweep described by the [sweep], [base], [grid] and [[zip]] sections of a config dict."""
        with _located(source):
            s = config.get("sweep", {})
            check_keys(s, SWEEP_KEYS, "[sweep]")
            zipped = config.get("zip", [])
            if not isinstance(zipped, list):
                raise ValueError("zip must be an array of tables, written [[zip]]")
            return cls(base=config.get("base", {}), grid=config.get("grid", {}), zipped=zipped,
                       reductions=s.get("reductions", DEFAULT_REDUCTIONS), seed=s.get("seed", 0),
                       replicates=s.get("replicates", 1))


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True)


def _describe(axes: dict, replicate: int) -> str:
    return ", ".join([f"{k} = {v!r}" for k, v in axes.items()] + [f"replicate {replicate}"])


# --------------------------------------------------------------------------------------------------
# TOML configs
# --------------------------------------------------------------------------------------------------

SWEEP_KEYS = ("seed", "replicates", "reductions")
SECTIONS = ("sweep", "base", "grid", "zip", "output", "plot")


def check_keys(values: dict, allowed, where: str) -> None:
    """Raise naming ``where`` and the key if ``values`` has a key outside ``allowed`` (a typo would
    otherwise be silently ignored)."""
    for key in values:
        if key not in allowed:
            raise ValueError(f"{where}: unknown key {key!r}; keys are {sorted(allowed)}")


def read_config(path) -> dict:
    """A sweep config from a TOML file: sections [sweep], [base], [grid], [[zip]], [output], [plot].

    Only the section names are checked here; :meth:`Sweep.from_config` checks the rest.
    """
    return read_toml(path, SECTIONS, arrays=("zip",))


def load_sweep(path) -> Sweep:
    """The :class:`Sweep` of a TOML config file."""
    return Sweep.from_config(read_config(path), source=f"config {path}")


# --------------------------------------------------------------------------------------------------
# executors
# --------------------------------------------------------------------------------------------------

def _serial(pending):
    for planned in pending:
        yield planned, run_one(planned.config)


def _mp_context():
    # fork would copy the parent's threads and locks; forkserver forks workers from a clean server
    # that has imported this module (numpy, scipy) once, so each worker starts in milliseconds
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


def _processes(pending, workers):
    pool = ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=_mp_context())
    try:
        futures = {pool.submit(run_one, planned.config): planned for planned in pending}
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:  # on an error or an interrupt, drop the runs not yet started
        pool.shutdown(wait=True, cancel_futures=True)


def _dask(pending, scheduler):
    try:
        from dask.distributed import Client, as_completed as dask_completed
    except ImportError as exc:
        raise ImportError("the Dask executor needs dask.distributed: pip install 'pgflow[cluster]'") from exc
    own = not isinstance(scheduler, Client)
    client = Client(scheduler) if own else scheduler
    try:
        # the run id as the task key: unique per configuration, and readable in Dask's dashboard
        futures = {client.submit(run_one, planned.config, key=f"pgflow-run-{planned.run_id}", pure=False): planned
                   for planned in pending}
        for future in dask_completed(futures):
            yield futures[future], future.result()
    finally:
        if own:
            client.close()


def _available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --------------------------------------------------------------------------------------------------
# progress: count, rate and ETA on a terminal, nothing otherwise
# --------------------------------------------------------------------------------------------------

class _Line:
    """A one-line progress report rewritten in place, for terminals without tqdm."""

    def __init__(self, total: int, stream):
        self.total, self.done, self.stream, self.start = total, 0, stream, time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done += n
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else math.inf
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        self.stream.write(f"\rsweep: {self.done}/{self.total} runs, {rate:.2f} runs/s, ETA {eta:.0f} s ")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool | None):
    stream = sys.stderr
    if enabled is None:
        enabled = stream.isatty()
    if not enabled or total == 0:
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Line(total, stream)
    return tqdm(total=total, unit="run", desc="sweep", file=stream)


# --------------------------------------------------------------------------------------------------
# storage and the table
# --------------------------------------------------------------------------------------------------

def _run_path(out, rid: str) -> str:
    return os.path.join(out, RUNS_FOLDER, f"{rid}.json")


def _store(out, planned: PlannedRun, row: dict) -> None:
    record = {"run_id": planned.run_id, "version": package_version(), "config": planned.config, "row": row}
    with atomic_path(_run_path(out, planned.run_id)) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1)


def _stored_row(out, rid: str) -> dict:
    with open(_run_path(out, rid), encoding="utf-8") as fh:
        return json.load(fh)["row"]


def _cell(value) -> str:
    """A CSV cell that reads back to the same number: floats by repr, lists as JSON."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return json.dumps(value)
    return str(value)


@dataclass(frozen=True)
class Table:
    """The rows of a sweep, one per run in grid order.

    Attributes
    ----------
    columns : tuple of str
        "run" (grid index), the axis fields, "replicate", the three seeds, "status", the reductions'
        columns, "wall_time", "error", "run_id".
    rows : tuple of dict
        A run's missing columns (another run's emergence modes) read as NaN / empty.
    computed, reused : int
        Runs computed by this call and runs whose stored result it reused.
    """

    columns: tuple
    rows: tuple
    computed: int = 0
    reused: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> np.ndarray:
        """One column as an array (float64 when numeric; missing values NaN)."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns are {list(self.columns)}")
        values = [row.get(name, math.nan) for row in self.rows]
        if all(isinstance(v, numbers.Real) for v in values):
            return np.asarray(values, dtype=np.float64)
        return np.asarray(values, dtype=object)

    def csv(self, timing: bool = True) -> str:
        """The table as CSV text; ``timing=False`` leaves out :data:`TIMING_COLUMNS`, so that two
        executions of one sweep give the same text, number for number."""
        columns = [c for c in self.columns if timing or c not in TIMING_COLUMNS]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for row in self.rows:
            writer.writerow([_cell(row[c]) if c in row else "" for c in columns])
        return buf.getvalue()

    def to_pandas(self):
        """The table as a ``pandas.DataFrame`` (needs pandas)."""
        import pandas as pd
        return pd.DataFrame([{c: row.get(c, math.nan) for c in self.columns} for row in self.rows],
                            columns=list(self.columns))


def _assemble(out, plan, computed: int) -> Table:
    rows = []
    for planned in plan:
        seeds = {name: planned.config[name] for name in SEED_FIELDS}
        rows.append({"run": planned.index, **planned.axes, "replicate": planned.key[-1], **seeds,
                     **_stored_row(out, planned.run_id), "run_id": planned.run_id})
    columns = tuple(dict.fromkeys(c for row in rows for c in row))
    # timing and free text last, after the reductions' columns of every row (emergence columns vary with rank)
    tail = ("wall_time", "error", "run_id")
    columns = tuple(c for c in columns if c not in tail) + tail
    return Table(columns, tuple(rows), computed=computed, reused=len(plan) - computed)


def run_sweep(sweep: Sweep, out, *, executor: str | None = None, workers: int | None = None,
              scheduler=None, progress: bool | None = None) -> Table:
    """Run every run of ``sweep`` not yet stored under ``out``; return the whole table.

    Parameters
    ----------
    sweep : Sweep
    out : path
        Folder of the results: ``runs/<run_id>.json`` per run and ``table.csv``. Runs already there
        (same configuration, same package version) are not run again.
    executor : {"serial", "processes", "dask"}, optional
        Default: "dask" when ``scheduler`` is given, else "processes".
    workers : int, optional
        Local processes (default: every core this process may use). Not for "dask": a cluster
        has its own workers.
    scheduler : str or dask.distributed.Client, optional
        The scheduler's address ("tcp://host:8786") or a connected client.
    progress : bool, optional
        Show count, rate and ETA on stderr (tqdm if installed); default: only on a terminal.

    Returns
    -------
    Table

    Raises
    ------
    Exception
        Whatever a run raised that is not a numerical failure (see the module docstring); the runs
        finished before it are stored.
    """
    if not isinstance(sweep, Sweep):
        raise TypeError(f"sweep must be a Sweep, got {type(sweep).__name__}")
    executor = executor or ("dask" if scheduler is not None else "processes")
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {executor!r}")
    if (executor == "dask") != (scheduler is not None):
        raise ValueError("scheduler (a Dask scheduler's address) goes with executor 'dask', and only with it")
    if workers is not None and executor != "processes":
        raise ValueError(f"workers applies to executor 'processes', not {executor!r}")
    workers = _available_cores() if workers is None else positive_int(workers, "workers")
    out = os.fspath(out)
    plan = sweep.runs()
    pending = [p for p in plan if not os.path.exists(_run_path(out, p.run_id))]
    if pending:
        results = (_serial(pending) if executor == "serial" else _processes(pending, workers)
                   if executor == "processes" else _dask(pending, scheduler))
        bar = _progress(len(pending), progress)
        try:
            for planned, row in results:
                _store(out, planned, row)
                bar.update(1)
        finally:
            bar.close()
    table = _assemble(out, plan, len(pending))
    with atomic_path(os.path.join(out, TABLE_FILE)) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(table.csv())
    return table


def phase_diagram(table: Table, x: str, y: str, value: str, reduce: Callable = np.median):
    """``value`` reduced over the replicates of each (x, y) cell: the numbers of a phase diagram.

    Failed runs count as NaN; ``reduce`` sees them (``np.median`` then gives NaN for the cell,
    ``np.nanmedian`` skips them).

    Returns
    -------
    xs : ndarray, shape (X,)
        The values of column ``x``, in grid order.
    ys : ndarray, shape (Y,)
    Z : ndarray, shape (Y, X)
        NaN where a cell has no runs.
    """
    for name in (x, y, value):
        if name not in table.columns:
            raise ValueError(f"no column {name!r} in the table; columns are {list(table.columns)}")
    xv, yv, v = table.column(x), table.column(y), table.column(value)
    xs, ys = (np.array(list(dict.fromkeys(values.tolist()))) for values in (xv, yv))  # in grid order
    Z = np.full((ys.size, xs.size), np.nan)
    for j, yy in enumerate(ys):
        for i, xx in enumerate(xs):
            cell = v[(xv == xx) & (yv == yy)]
            if cell.size:
                Z[j, i] = reduce(cell.astype(np.float64))
    return xs, ys, Z


__all__ = ["DEFAULT_REDUCTIONS", "EXECUTORS", "FIELDS", "PlannedRun", "REDUCTIONS", "Reduction", "RunResult",
           "Sweep", "TIMING_COLUMNS", "Table", "build_problem", "initial_state", "load_sweep", "phase_diagram",
           "read_config", "run_id", "run_one", "run_sweep"]
