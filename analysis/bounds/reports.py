"""Checking a claim on runs: resolving ``derivative()`` per dynamics, evaluating both sides on every
saved state, and the report."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import sympy as sp
from sympy import MatrixExpr

from .. import symbolic as S
from ..text import table as text_table
from .claim import Claim
from .language import ClaimError, Initial, MatrixInitial, MatrixRate, Rate
from .runs import Run



def _initial_leaves(expr, names: dict) -> dict:
    """Each initial(q) in ``expr`` -> a constant leaf standing for it.

    ``names`` maps initial(q) nodes to leaf names and is filled in, so one cache of names keeps a
    node's leaf the same across the sides of a claim.
    """
    leaves = {}
    for node in {n for n in sp.preorder_traversal(expr) if isinstance(n, (Initial, MatrixInitial))}:
        name = names.setdefault(node, f"initial__{len(names)}")
        inner = node.args[0]
        leaves[node] = sp.MatrixSymbol(name, *inner.shape) if isinstance(inner, MatrixExpr) else sp.Symbol(name)
    return leaves


def rate(q, dynamics: str):
    """The expression derivative(q) stands for on a run of ``dynamics``.

    Flows: :func:`pgflow.analysis.symbolic.time_derivative`. GD: the one-step difference quotient
    (q(x₊) − q(x))/η, from :func:`pgflow.analysis.symbolic.gd_step` when q is polynomial, else by
    evaluating q at x₊ = (U − ηG_U, V − ηG_V). ``initial(...)`` inside q is a constant.
    """
    # initial(q) is a number fixed by the first state; differentiating or shifting the U, V inside it
    # would treat it as a function of the current state, so it becomes an opaque leaf meanwhile.
    frozen = _initial_leaves(q, {})
    q = q.xreplace(frozen)
    if dynamics != "gd":
        out = S.time_derivative(q, dynamics)
    else:
        try:
            out = S.gd_step(q) / S.eta
        except S.NotPolynomial:
            G_U, G_V = S.QUANTITIES["G_U"].expr, S.QUANTITIES["G_V"].expr
            out = (q.xreplace({S.U: S.U - S.eta * G_U, S.V: S.V - S.eta * G_V, S.t: S.t + S.eta}) - q) / S.eta
    return out.xreplace({leaf: node for node, leaf in frozen.items()})


def _resolve(e, dynamics: str):
    if isinstance(e, (Rate, MatrixRate)):
        return rate(_resolve(e.args[0], dynamics), dynamics)
    if not e.args or isinstance(e, (sp.MatrixSymbol, sp.Symbol)) or not e.has(Rate, MatrixRate):
        return e
    return e.func(*[_resolve(a, dynamics) for a in e.args])


def _evaluate(expr, run: Run, params: Mapping, cache: dict) -> np.ndarray:
    """``expr`` (derivatives resolved) on every saved state of ``run``: shape (T,) or (T, rows, cols).

    ``initial(q)`` becomes a constant leaf holding q at the first saved state.
    """
    leaves = _initial_leaves(expr, cache.setdefault("initial names", {}))
    constants = {leaf.name: _evaluate(node.args[0], run, params, cache)[0] for node, leaf in leaves.items()}
    expr = expr.xreplace(leaves)
    fn = S.compile_expr(expr)
    needed = frozenset(fn.leaves) - set(constants) - {d.name for d in S.DIMS}
    key = ("values", run, needed)
    if key not in cache:
        cache[key] = run.values(set(needed), params)
    env = cache[key]
    missing = needed - set(env)
    if missing:
        raise ValueError(f"no value for {', '.join(sorted(missing))} on run {run.label!r}")
    values = {**{name: env[name] for name in needed}, **{d.name: env[d.name] for d in S.DIMS}, **constants}
    out = fn(**{name: v for name, v in values.items() if name in fn.leaves or name in {d.name for d in S.DIMS}})
    T = len(run.trajectory.t)
    return np.broadcast_to(out, (T,) + out.shape[out.ndim - (0 if fn.shape is None else 2):])



@dataclass(frozen=True)
class Violation:
    """Where a claim first fails: run index and label, saved-state index, time, both sides."""

    run: int
    label: str
    index: int
    time: float
    lhs: float
    rhs: float


@dataclass(frozen=True, eq=False)
class Series:
    """Both sides of a claim on one run, time-first arrays of shape (T,)."""

    label: str
    dynamics: str
    t: np.ndarray
    lhs: np.ndarray
    rhs: np.ndarray
    allowance: np.ndarray
    slack: np.ndarray


@dataclass(frozen=True, eq=False)
class Report:
    """The outcome of :func:`check`.

    Attributes
    ----------
    claim : Claim
    holds : bool
        Every side finite and slack ≥ 0 on every saved state of every run.
    min_slack : float
        Smallest slack, with a the allowance: rhs + a − lhs (``<=``), lhs + a − rhs (``>=``),
        a − |lhs − rhs| (``==``).
    worst_ratio : float
        How much of the bound is used, at the tightest state: the largest lo/hi with the claim read
        as lo ≤ hi without its allowance (``==`` reads |lhs − rhs| ≤ a). hi > 0: lo/hi;
        hi < 0: hi/lo if lo < 0, else ∞; undefined where hi = 0 (NaN if everywhere). ≤ 1 where the
        claim holds exactly; 1 means the bound is attained.
    first_violation : Violation or None
        The earliest violating saved state over all runs (ties: the lowest run index).
    n_states : int
    series : tuple of Series
        Per run, for :meth:`plot`.
    """

    claim: Claim
    holds: bool
    min_slack: float
    worst_ratio: float
    first_violation: Violation | None
    n_states: int
    series: tuple

    @property
    def as_expected(self) -> bool:
        return self.holds == self.claim.expect

    def summary(self) -> str:
        """One line: the verdict and the key numbers."""
        verdict = "holds" if self.holds else "VIOLATED"
        text = (f"{self.claim.label}: {verdict} on {len(self.series)} run(s), {self.n_states} states; "
                f"min slack {self.min_slack:.3g}, worst ratio {self.worst_ratio:.3g}")
        if self.first_violation is not None:
            v = self.first_violation
            text += f"; first violation at t = {v.time:.6g} on {v.label} (lhs {v.lhs:.6g}, rhs {v.rhs:.6g})"
        return text

    def plot(self, max_runs: int = 20):
        """Both sides over time (top) and the slack (bottom, symlog), one colour per dynamics.

        Returns
        -------
        matplotlib.figure.Figure
            Made without pyplot, so it works under any backend (Agg included) and is not kept alive
            by a global figure manager.
        """
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 6), layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True)
        colours = {d: f"C{i}" for i, d in enumerate(S.DYNAMICS)}
        # the allowance moves the bound the way the claim allows: up for <=, down for >=
        sign, bound_label = {"<=": (1.0, "rhs + allowance"), ">=": (-1.0, "rhs − allowance"),
                             "==": (0.0, "rhs")}[self.claim.op]
        seen = set()
        for s in self.series[:max_runs]:
            c = colours[s.dynamics]
            first = s.dynamics not in seen
            seen.add(s.dynamics)
            top.plot(s.t, s.lhs, "-", color=c, lw=1, alpha=0.8, label=f"lhs ({s.dynamics})" if first else None)
            top.plot(s.t, s.rhs + sign * s.allowance, "--", color=c, lw=1, alpha=0.8, label=bound_label if first else None)
            bottom.plot(s.t, s.slack, color=c, lw=1, alpha=0.8)
        if self.first_violation is not None:
            v = self.first_violation
            top.plot([v.time], [v.lhs], "rx", ms=10, mew=2, label=f"first violation ({v.label})")
            bottom.plot([v.time], [self.series[v.run].slack[v.index]], "rx", ms=10, mew=2)
        bottom.axhline(0.0, color="k", lw=0.8)
        bottom.set_yscale("symlog", linthresh=max(1e-12, 1e-6 * max(1e-300, _max_abs(self.series, "slack"))))
        statement = textwrap.fill(self.claim.text, 100)
        top.set_title(f"{self.claim.name}\n{statement}" if self.claim.name else statement, fontsize=9)
        top.set_ylabel("both sides")
        bottom.set(xlabel="time t (GD: kη)", ylabel="slack (≥ 0: holds)")
        top.legend(fontsize=7, loc="best")
        return fig


def _max_abs(series, attr) -> float:
    values = [np.nanmax(np.abs(getattr(s, attr))) for s in series if np.any(np.isfinite(getattr(s, attr)))]
    return float(max(values)) if values else 1.0


def _slack_and_ratio(op, lhs, rhs, allowance):
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = {"<=": (lhs, rhs), ">=": (rhs, lhs), "==": (np.abs(lhs - rhs), allowance)}[op]
        slack = (hi - lo) + (allowance if op != "==" else 0.0)
        ratio = np.where(hi > 0, lo / hi, np.where(hi < 0, np.where(lo < 0, hi / lo, np.inf), np.nan))
    slack = np.where(np.isfinite(lhs) & np.isfinite(rhs) & np.isfinite(allowance), slack, -np.inf)
    return slack, ratio


def _as_runs(runs) -> list:
    runs = [runs] if isinstance(runs, Run) else list(runs)
    if not runs:
        raise ValueError("runs must hold at least one Run")
    for i, r in enumerate(runs):
        if not isinstance(r, Run):
            raise TypeError(f"runs[{i}] must be a Run (see Run.of), got {type(r).__name__}")
    return runs


def check(claim, runs, *, params: Mapping | None = None) -> Report:
    """Evaluate a claim on every saved state of every run.

    Parameters
    ----------
    claim : Claim or str
    runs : Run or sequence of Run
        E.g. an ensemble over seeds, mixing dynamics (each must be among ``claim.dynamics``).
    params : mapping, optional
        Values for the claim's parameters (override ``claim.params``).

    Returns
    -------
    Report

    Examples
    --------
    >>> from pgflow.flows import MatrixFactorization, GradientFlow, init, integrate
    >>> p = MatrixFactorization.random(m=5, n=4, rank=2, width=2, seed=0)
    >>> flow = GradientFlow(p)
    >>> traj = integrate(flow, init.gaussian(p, 0.1, seed=1), 5.0, t_eval=np.linspace(0, 5, 11))
    >>> check("derivative(loss) <= 0", Run.of(traj, flow)).holds
    True
    >>> check(Claim("derivative(loss) == -grad_sq", rel_allowance=1e-10), Run.of(traj, flow)).holds
    True
    >>> check("derivative(loss) >= 0", Run.of(traj, flow)).first_violation.time
    0.0
    """
    claim = claim if isinstance(claim, Claim) else Claim(claim)
    runs = _as_runs(runs)
    values = dict(claim.params)
    if params:
        values.update(claim.with_params(**params).params)
    if claim.dynamics is not None:
        for i, run in enumerate(runs):
            if run.dynamics not in claim.dynamics:
                raise ValueError(f"claim {claim.label!r} is stated for {claim.dynamics}; run {i} ({run.label!r}) "
                                 f"is {run.dynamics!r}")
    series, cache = [], {}
    resolved: dict = {}
    for run in runs:
        if run.dynamics not in resolved:
            try:
                sides = (claim.lhs, claim.rhs, claim.allowance_expr)
                resolved[run.dynamics] = tuple(_resolve(e, run.dynamics) for e in sides)
            except (ValueError, TypeError) as exc:
                raise ClaimError(f"cannot resolve the claim on {run.dynamics} runs: {exc}", claim.text,
                                 name=claim.label) from None
        lhs, rhs, allowed = (np.array(_evaluate(e, run, values, cache), dtype=float) for e in resolved[run.dynamics])
        allowed = allowed + claim.rel_allowance * (np.abs(lhs) + np.abs(rhs))
        slack, _ = _slack_and_ratio(claim.op, lhs, rhs, allowed)
        series.append(Series(run.label, run.dynamics, np.asarray(run.trajectory.t, dtype=float), lhs, rhs, allowed,
                             slack))
    return _report(claim, series)


def _report(claim: Claim, series: list) -> Report:
    first, min_slack, worst = None, np.inf, -np.inf
    for i, s in enumerate(series):
        _, ratio = _slack_and_ratio(claim.op, s.lhs, s.rhs, s.allowance)
        min_slack = min(min_slack, float(np.min(s.slack)))
        if np.any(np.isfinite(ratio) | np.isinf(ratio)):
            worst = max(worst, float(np.nanmax(np.where(np.isnan(ratio), -np.inf, ratio))))
        bad = np.flatnonzero(~(s.slack >= 0))
        if bad.size and (first is None or s.t[bad[0]] < first.time):
            j = int(bad[0])
            first = Violation(i, s.label, j, float(s.t[j]), float(s.lhs[j]), float(s.rhs[j]))
    worst = float("nan") if worst == -np.inf else worst
    return Report(claim, first is None, min_slack, worst, first, sum(len(s.t) for s in series), tuple(series))


def check_all(claims, runs, *, params: Mapping | None = None) -> list[Report]:
    """:func:`check` for each claim, each on the runs whose dynamics it is stated for.

    Parameters
    ----------
    claims : sequence of Claim
    runs : sequence of Run
    params : mapping, optional
        Shared values for parameters (a claim file's ``[params]``): they fill in the parameters a
        claim declares without a value; a value the claim sets itself wins.
    """
    runs = _as_runs(runs)
    reports = []
    for claim in claims:
        mine = [r for r in runs if claim.dynamics is None or r.dynamics in claim.dynamics]
        if not mine:
            raise ValueError(f"no run has the dynamics {claim.dynamics} that claim {claim.label!r} is stated for")
        unset = {k: v for k, v in (params or {}).items() if k in claim.params and claim.params[k] is None}
        reports.append(check(claim, mine, params=unset))
    return reports


def table(reports) -> str:
    """A plain-text table of reports: one row per claim."""
    header = ("claim", "dynamics", "runs", "states", "holds", "expected", "min slack", "worst ratio", "first violation")
    rows = []
    for rep in reports:
        v = rep.first_violation
        where = "-" if v is None else f"t={v.time:.4g} ({v.label})"
        dyn = ",".join(sorted({s.dynamics for s in rep.series}))
        rows.append((rep.claim.label, dyn, str(len(rep.series)), str(rep.n_states), "yes" if rep.holds else "NO",
                     "yes" if rep.as_expected else "NO", f"{rep.min_slack:.3g}", f"{rep.worst_ratio:.3g}", where))
    return text_table(header, rows, rule=True)
