"""Ensembles of runs for checking claims, and claim files.

An ensemble is one random target, several initial states (one per init seed) and several dynamics,
described with the fields of :mod:`pgflow.analysis.setups`; :func:`ensemble_runs` turns it into the
:class:`~pgflow.analysis.bounds.runs.Run` objects a claim is checked on. A claim file (TOML, or a
Python module when explicitly allowed) holds claims, an ensemble and parameter values.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import replace

import numpy as np

from ...flows.descent import DivergenceError, number_of_steps
from .. import claims, setups
from ..config import check_keys, read_toml
from ..progress import run_bar
from .claim import Claim
from .runs import Run

ENSEMBLE_DEFAULTS = {
    "m": 8, "n": 6, "rank": 2, "width": 2, "condition": 2.0, "problem_seed": 0,
    "init_seeds": 5, "init": "gaussian", "scale": 1e-2,
    "t_end": 10.0, "n_save": 101, "method": "DOP853", "rtol": 1e-10, "atol": 1e-12,
    "dynamics": ["gf", "gd", "pgf_residual"], "step_size": None,
    "rho": 0.1, "xi0": 0.01, "perturbation_interval": 0.25, "perturbation_norm": "op",
    "x0": None, "x0_file": None,
}
"""Ensemble defaults (field names of :data:`pgflow.analysis.setups.FIELDS`, plus:)

``init_seeds``: a count N (seeds 0..N−1) or a list of seeds; each seeds one initial state and that
run's perturbation. ``n_save``: saved states per run (t_eval = linspace(0, t_end, n_save); GD saves
every n_steps/(n_save − 1) steps). ``dynamics``: a list of names of :data:`pgflow.analysis.setups.DYNAMICS`.
``step_size``: η for GD and the modified flow, dividing t_end (default: the largest such η ≤ 1/(5σ₁)).
``x0``: explicit initial state(s) instead of ``init``/``scale``: one flat state (a list of dim
numbers, U then V row by row, as ``problem.pack``) or a list of them; ``x0_file``: the same from a
``.npy`` file, shape (dim,) or (N, dim) (a relative path is relative to the claim file). With
explicit states, ``init_seeds`` (default 0, 1, …) seeds only each run's perturbation; this is how
:func:`pgflow.analysis.bounds.falsify` writes a counterexample that ``pgflow check`` reruns."""

RENAMED = {**setups.RENAMED, "seeds": "init_seeds", "perturbation": "rho, xi0, perturbation_interval and "
           "perturbation_norm (directly in [ensemble])"}

_CLAIM_FIELDS = {"statement", "name", "allowance", "rel_allowance", "params", "dynamics", "expect", "description",
                 "quantities", "assume"}


def ensemble_config(ensemble: dict) -> dict:
    """The ensemble's settings, checked, with the defaults filled in."""
    check_keys(ensemble, ENSEMBLE_DEFAULTS, "[ensemble]", renamed=RENAMED)
    config = {**ENSEMBLE_DEFAULTS, **ensemble}
    bad = sorted(set(config["dynamics"]) - set(setups.DYNAMICS))
    if bad:
        raise ValueError(f"[ensemble] dynamics must be among {list(setups.DYNAMICS)}, got {bad}")
    fields = {k: v for k, v in config.items() if k in setups.FIELDS and k != "dynamics" and v is not None}
    config.update(setups.check_fields(fields, "[ensemble]"))
    return config


def ensemble_runs(ensemble: dict | None = None, *, monitors: dict | None = None,
                  default_monitors: bool = True, progress: bool | None = False) -> list[Run]:
    """The runs of an ensemble: every init seed × every dynamics, on one random factorization target.

    Parameters
    ----------
    ensemble : dict, optional
        Keys of :data:`ENSEMBLE_DEFAULTS`.
    monitors : dict, optional
        Monitors recorded on the trajectories besides the default ones.
    default_monitors : bool, default True
        Record the default monitors (:func:`pgflow.flows.monitors.default`); claims do not read
        them, so False saves their cost.
    progress : bool or None
        A progress bar over the runs (tqdm, on stderr); None: only on a terminal.

    Returns
    -------
    list of Run
        Init seed s starts from ``init.<init>(problem, scale, seed=s)`` and its perturbation is a
        random perturbation with ``seed=s``: the initial state, the target and the perturbation's
        pieces draw from separate streams (:mod:`pgflow.flows.seeds`), so they stay independent even
        when s equals ``problem_seed``.
    """
    c = ensemble_config(ensemble or {})
    base = setups.defaults(**{k: c[k] for k in ("m", "n", "rank", "width", "condition", "problem_seed", "init",
                                                "scale", "t_end", "method", "rtol", "atol", "rho", "xi0",
                                                "perturbation_interval", "perturbation_norm")})
    problem = setups.build_problem(base)
    states = explicit_states(c, problem)
    if states is not None and "init_seeds" not in (ensemble or {}):
        seeds = list(range(len(states)))
    else:
        seeds = list(range(c["init_seeds"])) if isinstance(c["init_seeds"], int) else list(c["init_seeds"])
    if states is not None and len(seeds) != len(states):
        raise ValueError(f"[ensemble] init_seeds gives {len(seeds)} seed(s) for {len(states)} explicit initial "
                         f"state(s) in x0: give one seed per state")
    if c["step_size"] is None:  # the largest η ≤ 1/(5σ₁) that reaches t_end in whole steps
        eta = c["t_end"] / math.ceil(5 * float(problem.target.sigma[0]) * c["t_end"])
    else:
        eta = c["step_size"]
    n_steps = number_of_steps(eta, c["t_end"], "step_size")
    grid = np.linspace(0.0, c["t_end"], c["n_save"])
    runs = []
    with run_bar(len(seeds) * len(c["dynamics"]), "ensemble", progress) as bar:
        for j, s in enumerate(seeds):
            runs += _seed_runs(problem, base, c, s, None if states is None else states[j], eta, n_steps, grid,
                               monitors, default_monitors, bar)
    return runs


def _seed_runs(problem, base: dict, c: dict, s: int, x0, eta: float, n_steps: int, grid, monitors,
               default_monitors: bool, bar) -> list[Run]:
    """The runs of init seed ``s`` (from ``x0`` when the ensemble gives explicit states), one per dynamics."""
    runs, provenance = [], {"seed": s}
    for dynamics in c["dynamics"]:
        setup = {**base, "init_seed": s, "perturbation_seed": s, "dynamics": dynamics, "step_size": eta,
                 "save_every": max(1, n_steps // (c["n_save"] - 1))}
        start = setups.initial_state(problem, setup) if x0 is None else x0
        label = f"{dynamics} seed {s}"
        if dynamics == "gd":
            try:
                traj = setups.evolve(problem, start, {**setup, "rho": 0.0, "xi0": 0.0}, provenance=provenance,
                                     monitors=monitors, default_monitors=default_monitors)
            except DivergenceError as exc:  # judge the steps taken before GD left every bound
                traj, label = _before_divergence(exc), f"{label} (diverged at step {exc.step})"
            runs.append(Run.of(traj, problem, label=label))
        else:
            flow = setups.flow_for(problem, setup)
            traj = setups.evolve(problem, start, setup, flow=flow, t_eval=grid, provenance=provenance,
                                 monitors=monitors, default_monitors=default_monitors)
            runs.append(Run.of(traj, flow, label=label))
        bar.update()
    return runs


def _before_divergence(exc: DivergenceError):
    """The finite saved states of a diverged GD run (at least two), as a trajectory."""
    partial = exc.partial
    if partial is None:
        raise exc
    finite = np.all(np.isfinite(partial.x), axis=1)
    keep = np.cumprod(finite).astype(bool)  # the states before the first non-finite one
    if keep.sum() < 2:
        raise exc
    return replace(partial, t=partial.t[keep], x=partial.x[keep],
                   monitors={k: np.asarray(v)[keep] for k, v in partial.monitors.items()})


def explicit_states(config: dict, problem):
    """The explicit initial states of an ensemble (``x0`` or ``x0_file``), shape (N, dim), or None."""
    if config.get("x0") is not None and config.get("x0_file") is not None:
        raise ValueError("[ensemble] give x0 or x0_file, not both")
    if config.get("x0_file") is not None:
        states = np.load(os.fspath(config["x0_file"]), allow_pickle=False)
        where = f"[ensemble] x0_file {config['x0_file']}"
    elif config.get("x0") is not None:
        try:
            states = np.array(config["x0"], dtype=float)
        except (TypeError, ValueError):
            raise ValueError("[ensemble] x0 must be a list of numbers (one state) or a list of such lists") from None
        where = "[ensemble] x0"
    else:
        return None
    states = np.atleast_2d(np.asarray(states, dtype=float))
    if states.ndim != 2 or states.shape[1] != problem.dim or states.shape[0] == 0:
        raise ValueError(f"{where} must hold states of length dim = (m + n)·width = {problem.dim}, got shape "
                         f"{np.shape(states)}")
    if not np.all(np.isfinite(states)):
        raise ValueError(f"{where} holds non-finite numbers")
    return states


def _claim(entry, index: int) -> Claim:
    if isinstance(entry, Claim):
        return entry
    if isinstance(entry, str):
        return claims.get(entry)
    if not isinstance(entry, dict):
        raise TypeError(f"claim {index} must be a table, a Claim or a catalogue name, got {type(entry).__name__}")
    entry = dict(entry)
    use = entry.pop("use", None)
    unknown = sorted(set(entry) - _CLAIM_FIELDS)
    if unknown or (use is None and "statement" not in entry):
        renamed = {"tol": "allowance", "rtol": "rel_allowance"}
        hints = [f"{k!r} is now called {renamed[k]!r}" for k in unknown if k in renamed]
        raise ValueError(f"claim {index}: needs 'statement' (or 'use'); unknown field(s) {unknown}"
                         f"{' (' + '; '.join(hints) + ')' if hints else ''}; fields: {sorted(_CLAIM_FIELDS)}")
    if use is None:
        return Claim(**entry)
    base = claims.get(use)
    return replace(base, params={**base.params, **entry.pop("params", {})}, **entry)


def load_claim_file(path, *, allow_python: bool = False) -> tuple[list[Claim], dict, dict]:
    """Claims, ensemble config and parameter values from a TOML file (or a Python module).

    Parameters
    ----------
    path : str or path-like
        ``.toml``: sections [ensemble], [params] and [[claim]]. ``.py``: a module defining ``CLAIMS``
        and optionally ``ENSEMBLE`` and ``PARAMS``; it is code, so it runs only with ``allow_python``.
    allow_python : bool
        Run a Python claim file.
    """
    path = os.fspath(path)
    if path.endswith(".toml"):
        data = read_toml(path, {"ensemble", "params", "claim"}, arrays=("claim",))
        entries, ensemble, params = data.get("claim", []), data.get("ensemble", {}), data.get("params", {})
    elif path.endswith(".py"):
        if not allow_python:
            raise ValueError(f"{path} is a Python file: running it runs its code; pass --allow-python "
                             f"(allow_python=True) if you trust it, or write the claims as TOML")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"claim file {path} does not exist")
        spec = importlib.util.spec_from_file_location("pgflow_claims", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not hasattr(module, "CLAIMS"):
            raise ValueError(f"{path} must define CLAIMS (a list of Claim objects or catalogue names)")
        entries, ensemble, params = module.CLAIMS, getattr(module, "ENSEMBLE", {}), getattr(module, "PARAMS", {})
    else:
        raise ValueError(f"a claim file must end in .toml or .py, got {path}")
    if not entries:
        raise ValueError(f"{path} defines no claims")
    ensemble = dict(ensemble)
    if isinstance(ensemble.get("x0_file"), str) and not os.path.isabs(ensemble["x0_file"]):
        ensemble["x0_file"] = os.path.join(os.path.dirname(os.path.abspath(path)), ensemble["x0_file"])
    return [_claim(e, i) for i, e in enumerate(entries)], dict(ensemble), dict(params)
