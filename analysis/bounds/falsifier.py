r"""A falsifier: search for a counterexample to a claim before trusting it.

:func:`falsify` runs a claim on many short trajectories and looks for the one where it fails worst:

1. **screening**: random and adversarial initial states (:mod:`.starts`: small, large, balanced,
   λ-balanced, unbalanced, aligned and anti-aligned with Φ, orthogonal to it, repeated and
   near-repeated spectra, a zero factor, saddles and the origin, rank-deficient factors) on problems
   of several sizes and
   targets (a fresh random target each time; condition 1 gives repeated target singular values);
2. **local optimization** of the claim's slack over the initial state, from the best candidates:
   ``scipy.optimize.minimize`` (L-BFGS-B, gradients by finite differences) over a subspace of
   initial states around the candidate, spanned by the candidate itself (its scale) and random
   directions.

The objective is the smallest *relative* slack over the saved states where the claim's hypotheses
hold, slack / (|lhs| + |rhs| + allowance) ∈ [−1, 1] (non-finite sides count as −1.5); a negative value
is a counterexample. Every candidate is an ensemble of :mod:`.ensembles` with an explicit initial
state, so the counterexample comes with a reproducer: a claim file that ``pgflow check`` reruns.
Budgets count trajectories (the default, :data:`DEFAULT_BUDGET`, takes seconds).
"""

from __future__ import annotations

import itertools
import json
import math
import time as _time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import scipy.optimize

from ...flows import IntegrationError
from .claim import Claim
from .ensembles import ensemble_runs
from .reports import Report, check
from .starts import KINDS

DEFAULT_BUDGET = 120
"""Trajectories a falsification may run by default (seconds for the default family)."""

DEFAULT_T_END = 2.0
"""Length of each trajectory (time units; GD: whole steps of the default η)."""

DEFAULT_FAMILY = (
    {"m": 6, "n": 5, "rank": 2, "width": 2, "condition": 2.0, "rho": 0.0, "xi0": 0.1},
    {"m": 5, "n": 4, "rank": 2, "width": 3, "condition": 1.0, "rho": 0.0, "xi0": 0.5},
    {"m": 7, "n": 5, "rank": 3, "width": 2, "condition": 4.0, "rho": 0.0, "xi0": 0.02},
    {"m": 4, "n": 6, "rank": 1, "width": 2, "condition": 1.0, "rho": 0.0, "xi0": 1.0},
)
"""Problems searched by default: k = r, k > r with equal target singular values, k < r with κ = 4,
and m < n with rank 1. Perturbed flows get a random constant direction E of norm ξ₀ (one piece over
the run unless ``perturbation_interval`` is given): the rate bounds hold for every E, and a
state-dependent ρ‖Σ − UVᵀ‖ (``rho``) costs an SVD per evaluation."""

_PROBLEM_KEYS = ("m", "n", "rank", "width", "condition", "rho", "xi0", "perturbation_interval", "perturbation_norm",
                 "step_size", "rtol", "atol", "method")
_NO_APPLICABLE_STATE = 2.0
_NON_FINITE = -1.5


@dataclass(frozen=True, eq=False)
class Falsification:
    """The outcome of :func:`falsify`.

    Attributes
    ----------
    claim : Claim
    found : bool
        A counterexample was found and confirmed by a full :func:`check` (every derivative agreeing
        with its trajectory).
    worst_slack : float
        The smallest slack of the worst candidate (< 0: violated).
    worst_relative : float
        Its relative slack, slack / (|lhs| + |rhs| + allowance).
    time : float
        When the worst candidate is tightest (or first violated).
    state : ndarray, shape (dim,)
        The worst candidate's initial state.
    state_at_time : ndarray, shape (dim,)
        Its saved state at ``time``.
    dynamics : str
    ensemble : dict
        The ensemble that reruns the worst candidate (:func:`pgflow.analysis.bounds.ensembles.ensemble_runs`).
    params : dict
        The claim's parameter values used.
    evaluations : int
        Trajectories run.
    applicable : int
        Trajectories with a saved state that meets the claim's hypotheses (``assume``): a search in
        which none did says nothing about the claim.
    seconds : float
    kind : str
        The start kind (or "optimized") of the worst candidate.
    report : Report or None
        The full check of the worst candidate.
    """

    claim: Claim
    found: bool
    worst_slack: float
    worst_relative: float
    time: float
    state: np.ndarray
    state_at_time: np.ndarray
    dynamics: str
    ensemble: dict
    params: dict
    evaluations: int
    applicable: int
    seconds: float
    kind: str
    report: Report | None = field(default=None, repr=False)

    def summary(self) -> str:
        """One line: counterexample or not, the worst slack, where, and the cost."""
        verdict = "COUNTEREXAMPLE" if self.found else "no counterexample"
        if not self.found and self.applicable == 0:
            verdict = "no trajectory met the hypotheses (nothing tested)"
        return (f"{self.claim.label}: {verdict} ({self.dynamics}); worst slack {self.worst_slack:.3g} (relative "
                f"{self.worst_relative:.3g}) at t = {self.time:.4g} from a {self.kind} start; {self.evaluations} "
                f"trajectories ({self.applicable} within the hypotheses) in {self.seconds:.1f} s")

    def reproducer(self) -> str:
        """A claim file (TOML) that reruns the worst candidate with ``pgflow check``.

        The claim is written with ``expect = false`` when a counterexample was found, so the check
        passes exactly when the counterexample still breaks the claim.

        Raises
        ------
        ValueError
            The claim was built from a sympy relation, which has no text in the claim language.
        """
        if not isinstance(self.claim.statement, str):
            raise ValueError("a claim built from a sympy relation has no claim-file form; write it as a string")
        c = self.claim
        lines = [f"# falsify: {self.summary()}", "", "[ensemble]"]
        lines += [f"{key} = {_toml(value)}" for key, value in self.ensemble.items()]
        entry = {"name": c.label + (" (counterexample)" if self.found else ""), "statement": c.text,
                 "allowance": c.allowance, "rel_allowance": float(c.rel_allowance), "dynamics": [self.dynamics],
                 "expect": not self.found, "params": dict(self.params)}
        if c.assume:
            entry["assume"] = ({d: list(v) for d, v in c.assume.items()} if isinstance(c.assume, Mapping)
                               else list(c.assume))
        if c.quantities:
            entry["quantities"] = dict(c.quantities)
        if c.description:
            entry["description"] = c.description
        lines += ["", "[[claim]]"] + [f"{key} = {_toml(value)}" for key, value in entry.items() if value != {}]
        return "\n".join(lines) + "\n"

    def write(self, path) -> str:
        """Write :meth:`reproducer` to ``path`` (atomically); returns the path."""
        from ...flows.files import atomic_path

        with atomic_path(str(path)) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            fh.write(self.reproducer())
        return str(path)


def _toml(value) -> str:
    """A TOML value: strings as basic strings, floats in full precision, lists and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else
                                                          ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def _as_claim(claim) -> Claim:
    from .. import claims as catalogue  # the catalogue is built from this package

    if isinstance(claim, Claim):
        return claim
    if isinstance(claim, str) and claim in catalogue.CATALOGUE:
        return catalogue.get(claim)
    if isinstance(claim, str):
        return Claim(claim)
    raise TypeError(f"claim must be a Claim, a catalogue name or a claim string, got {type(claim).__name__}")


def _family(problem_family) -> list[dict]:
    if problem_family is None:
        return [dict(f) for f in DEFAULT_FAMILY]
    members = [problem_family] if isinstance(problem_family, dict) else list(problem_family)
    out = []
    for i, member in enumerate(members):
        if not isinstance(member, dict):
            raise TypeError(f"problem_family[{i}] must be a dict of ensemble settings (m, n, rank, width, "
                            f"condition, ...), got {type(member).__name__}")
        unknown = sorted(set(member) - set(_PROBLEM_KEYS))
        if unknown:
            raise ValueError(f"problem_family[{i}]: unknown key(s) {unknown}; allowed: {list(_PROBLEM_KEYS)}")
        out.append(dict(member))
    if not out:
        raise ValueError("problem_family must hold at least one problem description")
    return out


class _Search:
    """The state of one falsification: the budget, the best candidate, the evaluations."""

    def __init__(self, claim, params, dynamics, t_end, n_save, budget, deadline):
        self.claim, self.params, self.dynamics = claim, params, dynamics
        self.t_end, self.n_save, self.budget, self.deadline = t_end, n_save, budget, deadline
        self.evaluations = 0
        self.applicable = 0  # candidates with a state that meets the claim's hypotheses
        self.best = None  # (objective, ensemble, kind, report)

    def exhausted(self) -> bool:
        return self.evaluations >= self.budget or (self.deadline is not None and _time.monotonic() > self.deadline)

    def ensemble(self, member: dict, x0, problem_seed: int, seed: int) -> dict:
        return {"perturbation_interval": float(self.t_end), **member, "problem_seed": int(problem_seed),
                "dynamics": [self.dynamics], "t_end": float(self.t_end), "n_save": int(self.n_save),
                "init_seeds": [int(seed)], "x0": [float(v) for v in x0]}

    def runs(self, ensemble: dict) -> list:
        return ensemble_runs(ensemble, default_monitors=False)

    def objective(self, ensemble: dict, kind: str) -> float:
        """The relative slack of one candidate (negative: a counterexample)."""
        self.evaluations += 1
        try:
            with np.errstate(all="ignore"):
                report = check(self.claim, self.runs(ensemble), params=self.params, consistency_check=False)
        except (IntegrationError, FloatingPointError, np.linalg.LinAlgError, OverflowError, ValueError):
            return _NO_APPLICABLE_STATE  # the run itself failed: no state to judge
        value = relative_slack(report)
        self.applicable += applicable(report)
        if self.best is None or value < self.best[0]:
            self.best = (value, ensemble, kind, report)
        return value


def relative_slack(report: Report) -> float:
    """The falsifier's objective for a checked candidate (negative: a counterexample).

    On the states where the hypotheses hold: the smallest slack divided by the run's largest
    |lhs| + |rhs| + allowance, in [−1, 1] (non-finite sides: −1.5). Where no state meets the
    hypotheses: 1 + how far they fail (in (1, 2]), so that the optimizer is led towards starts that
    meet them.
    """
    worst = _NO_APPLICABLE_STATE
    for s in report.series:
        applies = np.ones(len(s.t), dtype=bool) if s.applies is None else s.applies
        if not applies.any():
            if s.hypothesis_slack is not None:
                worst = min(worst, 1.0 + min(1.0, float(-np.max(s.hypothesis_slack))))
            continue
        with np.errstate(all="ignore"):
            size = np.abs(s.lhs) + np.abs(s.rhs) + np.abs(s.allowance)
            scale = float(np.max(np.where(applies & np.isfinite(size), size, 0.0)))
            rel = s.slack / scale if scale > 0 else np.where(s.slack >= 0, 1.0, -1.0)
        rel = np.where(np.isfinite(s.slack) & np.isfinite(size), rel, _NON_FINITE)
        worst = min(worst, float(np.min(rel[applies])))
    return worst


def applicable(report: Report) -> bool:
    """Whether some saved state meets the claim's hypotheses."""
    return any(s.applies is None or s.applies.any() for s in report.series)


def _screen(search: _Search, family, rng, share: float) -> None:
    limit = int(math.ceil(share * search.budget))
    order = list(itertools.product(range(len(family)), list(KINDS)))
    rest = order[len(KINDS):]
    rng.shuffle(rest)  # the first member meets every kind first, the other pairs come in a random order
    order = order[:len(KINDS)] + rest
    for member_index, kind in itertools.cycle(order):
        if search.evaluations >= limit or search.exhausted() or (search.best and search.best[0] < 0):
            return
        member = family[member_index]
        problem_seed, seed = int(rng.integers(2 ** 31)), int(rng.integers(2 ** 31))
        try:
            problem = ensemble_runs_problem(member, problem_seed)
            x0 = KINDS[kind](problem, rng)
        except ValueError:
            continue  # a start this problem cannot have (e.g. λ-balanced with m < width)
        search.objective(search.ensemble(member, x0, problem_seed, seed), kind)


def ensemble_runs_problem(member: dict, problem_seed: int):
    """The problem an ensemble with these settings builds (the target from ``problem_seed``)."""
    from .. import setups

    base = setups.defaults(**{k: member[k] for k in ("m", "n", "rank", "width", "condition") if k in member},
                           problem_seed=int(problem_seed))
    return setups.build_problem(base)


def _optimize(search: _Search, rng, starts: int = 2) -> None:
    """L-BFGS-B on the relative slack over a random subspace of initial states around the best."""
    for _ in range(starts):
        if search.exhausted() or search.best is None or search.best[0] < 0:
            return
        _, ensemble, _, _ = search.best
        x_best = np.array(ensemble["x0"], dtype=float)
        p = min(6, x_best.size)
        # the start itself spans the first direction, so the search can also scale it up or down
        directions = rng.standard_normal((x_best.size, p))
        if np.linalg.norm(x_best) > 0:
            directions[:, 0] = x_best
        Q = np.linalg.qr(directions)[0]
        radius = 0.3 * max(np.linalg.norm(x_best), 1e-3)

        class Found(Exception):
            pass

        def f(c):
            if search.exhausted():
                raise Found
            value = search.objective({**ensemble, "x0": [float(v) for v in x_best + radius * (Q @ c)]}, "optimized")
            if value < 0:
                raise Found
            return value

        try:
            scipy.optimize.minimize(f, np.zeros(p), method="L-BFGS-B", bounds=[(-1.0, 1.0)] * p,
                                    options={"maxfun": max(1, search.budget - search.evaluations), "eps": 1e-3})
        except Found:
            pass


def falsify(claim, problem_family=None, dynamics=None, t_end: float | None = None, budget: int | None = None, *,
            params: dict | None = None, seed: int = 0, n_save: int = 41, time_limit: float | None = None):
    """Search for a counterexample to ``claim``.

    Parameters
    ----------
    claim : Claim, catalogue name or claim string
    problem_family : dict or sequence of dict, optional
        Problem descriptions (ensemble settings: ``m``, ``n``, ``rank``, ``width``, ``condition``, and
        ``rho``, ``xi0``, ``perturbation_interval``, ``step_size``, ``rtol``, ...); each candidate draws
        a fresh target. Default :data:`DEFAULT_FAMILY`.
    dynamics : str or sequence of str, optional
        Dynamics to search (default: those the claim is stated for, else "gf"); the budget is split
        between them.
    t_end : float, optional
        Trajectory length (default :data:`DEFAULT_T_END`).
    budget : int, optional
        Trajectories to run in all (default :data:`DEFAULT_BUDGET`).
    params : dict, optional
        Values of the claim's parameters.
    seed : int
        Seed of the search (problems, starts, subspaces).
    n_save : int
        Saved states per trajectory.
    time_limit : float, optional
        Stop after this many seconds.

    Returns
    -------
    Falsification
        The worst candidate over all dynamics (the first confirmed counterexample, if any).

    Examples
    --------
    >>> result = falsify("fro(J) >= 1e-9 * fro(U)", dynamics="gf", budget=30)
    >>> result.found, result.kind
    (True, 'aligned')
    """
    claim = _as_claim(claim)
    values = dict(claim.params)
    values.update(params or {})
    missing = sorted(k for k, v in values.items() if v is None)
    if missing:
        raise ValueError(f"claim {claim.label!r}: set the parameter(s) {missing} with params={{...}}")
    family = _family(problem_family)
    dyn = (dynamics,) if isinstance(dynamics, str) else tuple(dynamics or claim.dynamics or ("gf",))
    t_end = DEFAULT_T_END if t_end is None else float(t_end)
    budget = DEFAULT_BUDGET if budget is None else int(budget)
    if budget < 1:
        raise ValueError(f"budget must be a positive number of trajectories, got {budget}")
    started = _time.monotonic()
    deadline = None if time_limit is None else started + float(time_limit)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    results = []
    for i, d in enumerate(dyn):
        share = budget // len(dyn) + (1 if i < budget % len(dyn) else 0)
        search = _Search(claim, values, d, t_end, n_save, max(1, share), deadline)
        _screen(search, family, rng, share=0.6)
        _optimize(search, rng)
        results.append(_result(search, claim, values, started))
        if results[-1].found:
            break
    found = [r for r in results if r.found]
    best = found[0] if found else min(results, key=lambda r: r.worst_relative)
    total, within = sum(r.evaluations for r in results), sum(r.applicable for r in results)
    return Falsification(**{**best.__dict__, "evaluations": total, "applicable": within,
                            "seconds": _time.monotonic() - started})


def _result(search: _Search, claim: Claim, values: dict, started: float) -> Falsification:
    if search.best is None:
        raise RuntimeError(f"claim {claim.label!r}: no trajectory of {search.dynamics} could be run")
    objective, ensemble, kind, quick = search.best
    runs = ensemble_runs(ensemble)
    report = check(claim, runs, params=values)
    found = report.verdict == "VIOLATED"
    s = report.series[0]
    applies = np.ones(len(s.t), dtype=bool) if s.applies is None else s.applies
    if report.first_violation is not None:
        index = report.first_violation.index
    else:
        index = int(np.argmin(np.where(applies, s.slack, np.inf)))
    trajectory = runs[0].trajectory
    return Falsification(claim, found, float(report.min_slack), float(objective), float(s.t[index]),
                         np.array(ensemble["x0"], dtype=float), np.array(trajectory.x[index]), search.dynamics,
                         ensemble, values, search.evaluations, search.applicable, _time.monotonic() - started, kind,
                         report)
