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
from ..progress import run_bar
from ..text import table as text_table
from . import consistency
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


def rate(q, dynamics: str, gradient: tuple | None = None):
    """The expression derivative(q) stands for on a run of ``dynamics``.

    Flows: :func:`pgflow.analysis.symbolic.time_derivative`. GD: the one-step difference quotient
    (q(x₊) − q(x))/η, from :func:`pgflow.analysis.symbolic.gd_step` when q is polynomial, else by
    evaluating q at x₊ = (U − ηG_U, V − ηG_V). ``initial(...)`` inside q is a constant. ``gradient``:
    the (G_U, G_V) the run follows (:attr:`Run.gradient`; default that of ½‖UVᵀ − Σ‖²_F).
    """
    # initial(q) is a number fixed by the first state; differentiating or shifting the U, V inside it
    # would treat it as a function of the current state, so it becomes an opaque leaf meanwhile.
    frozen = _initial_leaves(q, {})
    q = q.xreplace(frozen)
    out = S.time_derivative(q, dynamics, gradient) if dynamics != "gd" else S.gd_increment(q, gradient) / S.eta
    return out.xreplace({leaf: node for node, leaf in frozen.items()})


def _resolve(e, dynamics: str, gradient: tuple | None = None):
    if isinstance(e, (Rate, MatrixRate)):
        return rate(_resolve(e.args[0], dynamics, gradient), dynamics, gradient)
    if not e.args or isinstance(e, (sp.MatrixSymbol, sp.Symbol)) or not e.has(Rate, MatrixRate):
        return e
    return e.func(*[_resolve(a, dynamics, gradient) for a in e.args])


def _evaluate(expr, run: Run, params: Mapping, cache: dict, *, flags: bool = False, states=None):
    """``expr`` (derivatives resolved) on every saved state of ``run``: shape (T,) or (T, rows, cols).

    ``initial(q)`` becomes a constant leaf holding q at the first saved state. With ``flags``, returns
    (values, nonsmooth) with nonsmooth (T,) True where a right-derivative met a nonsmooth point;
    ``states`` = (U, V) evaluates at other states than the saved ones.
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
    if states is not None:
        values.update({name: v for name, v in zip(("U", "V"), states) if name in needed})
    args = {name: v for name, v in values.items() if name in fn.leaves or name in {d.name for d in S.DIMS}}
    out, marks = fn.with_flags(**args) if flags else (fn(**args), None)
    T = len(run.trajectory.t)
    out = np.broadcast_to(out, (T,) + out.shape[out.ndim - (0 if fn.shape is None else 2):])
    if not flags:
        return out
    return out, np.broadcast_to(np.asarray(marks, dtype=bool), (T,))



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
    nonsmooth: np.ndarray | None = None
    """(T,) bool: a right-derivative in the claim was taken at a nonsmooth point of this state."""
    applies: np.ndarray | None = None
    """(T,) bool: the claim's hypotheses (``assume``) hold on this state, so it is checked there."""
    hypothesis_slack: np.ndarray | None = None
    """(T,): the smallest relative slack of the hypotheses, slack / (|lhs| + |rhs|) (≥ 0 where they
    hold); None without hypotheses."""


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
    derivative_checks : tuple of DerivativeCheck
        Every ``derivative(q)`` of the claim on every run against the finite differences of q over
        the saved states (:mod:`.consistency`).
    n_nonsmooth : int
        Saved states where a right-derivative was taken at a nonsmooth point (a repeated or zero
        singular value, a repeated eigenvalue, |x| at 0): the values there are one-sided derivatives.
    n_excluded : int
        Saved states where a hypothesis of the claim (``assume``) fails: not checked.

    Notes
    -----
    ``holds`` is True only if every checked state satisfies the claim, at least one state was
    checked, *and* no derivative disagrees with the trajectory: where a derivative disagrees with the
    states (the run's dynamics are not what it was declared to be), its values certify nothing, and
    the verdict is "UNRELIABLE".
    """

    claim: Claim
    holds: bool
    min_slack: float
    worst_ratio: float
    first_violation: Violation | None
    n_states: int
    series: tuple
    derivative_checks: tuple = ()
    n_nonsmooth: int = 0
    n_excluded: int = 0

    @property
    def disagreements(self) -> tuple:
        """The derivative checks that disagree with the saved trajectory."""
        return tuple(c for c in self.derivative_checks if c.disagrees)

    @property
    def verdict(self) -> str:
        """"holds", "VIOLATED" (a state violates the claim and every derivative agrees with the
        trajectory), "UNRELIABLE" (a derivative disagrees with the trajectory) or "NOT CHECKED" (no
        saved state meets the claim's hypotheses: nothing supports a verdict)."""
        if self.disagreements:
            return "UNRELIABLE"
        if self.first_violation is None and self.n_states == self.n_excluded:
            return "NOT CHECKED"
        return "holds" if self.first_violation is None else "VIOLATED"

    @property
    def as_expected(self) -> bool:
        """The outcome is the one the claim expects: it holds (``must_hold``), or, for a known
        counterexample, it is violated with every derivative agreeing with the trajectory."""
        return self.verdict == ("holds" if self.claim.expect else "VIOLATED")

    def summary(self) -> str:
        """One line: the verdict and the key numbers."""
        text = (f"{self.claim.label}: {self.verdict} on {len(self.series)} run(s), {self.n_states} states; "
                f"min slack {_slack_cell(self)}, worst ratio {_ratio_cell(self)}")
        text += "".join(f" ({note})" for note in _cell_notes([self]))
        if self.first_violation is not None:
            v = self.first_violation
            text += f"; first violation at t = {v.time:.6g} on {v.label} (lhs {v.lhs:.6g}, rhs {v.rhs:.6g})"
        if self.n_nonsmooth:
            text += f"; {self.n_nonsmooth} nonsmooth state(s) (one-sided derivatives)"
        if self.n_excluded:
            text += f"; {self.n_excluded} state(s) outside the hypotheses, not checked"
        for c in self.disagreements:
            text += f"; {c.describe()}"
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

    def to_pandas(self):
        """The report as tidy data: a ``pandas.DataFrame`` with one row per run and checked saved state
        (needs ``pip install 'pgflow[data]'``).

        Columns :data:`~pgflow.analysis.bounds.export.TIDY_COLUMNS`: claim, run, time, lhs, rhs, slack,
        holds, nonsmooth (the rows of :func:`~pgflow.analysis.bounds.export.tidy_rows`; states outside
        the claim's hypotheses are not checked and have no row).

        Returns
        -------
        pandas.DataFrame
        """
        from ...flows.export import require
        from .export import TIDY_COLUMNS, tidy_rows
        pd = require("pandas", "Report.to_pandas")
        return pd.DataFrame(tidy_rows([self]), columns=list(TIDY_COLUMNS))


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


def check(claim, runs, *, params: Mapping | None = None, consistency_check: bool = True) -> Report:
    """Evaluate a claim on every saved state of every run.

    Parameters
    ----------
    claim : Claim or str
    runs : Run or sequence of Run
        E.g. an ensemble over seeds, mixing dynamics (each must be among ``claim.dynamics``).
    params : mapping, optional
        Values for the claim's parameters (override ``claim.params``).
    consistency_check : bool
        Compare every derivative with the finite differences of the saved states
        (:mod:`.consistency`); off only for quick searches (the falsifier rechecks what it finds).

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
    series, checks, cache = [], [], {}
    resolved: dict = {}
    for index, run in enumerate(runs):
        key = (run.dynamics, run.gradient)  # a formula problem's runs follow their own gradient
        if key not in resolved:
            try:
                sides = (claim.lhs, claim.rhs, claim.allowance_expr)
                resolved[key] = (tuple(_resolve(e, *key) for e in sides),
                                 tuple((_resolve(a, *key), op, _resolve(b, *key))
                                       for a, op, b in claim.hypotheses_for(run.dynamics)))
            except (ValueError, TypeError) as exc:
                raise ClaimError(f"cannot resolve the claim on {run.dynamics} runs: {exc}", claim.text,
                                 name=claim.label) from None
        sides, hypotheses = resolved[key]
        parts = [_evaluate(e, run, values, cache, flags=True) for e in sides]
        (lhs, rhs, allowed), marks = (np.array(v, dtype=float) for v, _ in parts), [m for _, m in parts]
        allowed = allowed + claim.rel_allowance * (np.abs(lhs) + np.abs(rhs))
        slack, _ = _slack_and_ratio(claim.op, lhs, rhs, allowed)
        nonsmooth = np.logical_or.reduce(marks)
        applies, margin = np.ones(len(slack), dtype=bool), None
        for a, op, b in hypotheses:
            a_values, b_values = (np.array(_evaluate(e, run, values, cache), dtype=float) for e in (a, b))
            h_slack = _slack_and_ratio(op, a_values, b_values, np.zeros_like(a_values))[0]
            applies &= h_slack >= 0
            with np.errstate(divide="ignore", invalid="ignore"):
                size = np.abs(a_values) + np.abs(b_values)
                rel = np.where(size > 0, h_slack / np.where(size > 0, size, 1.0), np.where(h_slack >= 0, 0.0, -1.0))
            rel = np.where(np.isfinite(rel), rel, -1.0)
            margin = rel if margin is None else np.minimum(margin, rel)
        series.append(Series(run.label, run.dynamics, np.asarray(run.trajectory.t, dtype=float), lhs, rhs, allowed,
                             slack, nonsmooth, applies, margin))
        if consistency_check:
            checks += [_derivative_check(node, index, run, values, cache) for node in _rates(claim)]
    return _report(claim, series, checks)


def _rates(claim: Claim) -> list:
    """The distinct derivative(q) nodes of a claim (both sides and the allowance)."""
    nodes = []
    for e in (claim.lhs, claim.rhs, claim.allowance_expr):
        for node in sp.preorder_traversal(e):
            if isinstance(node, (Rate, MatrixRate)) and node not in nodes:
                nodes.append(node)
    return nodes


def _derivative_check(node, index: int, run: Run, params: Mapping, cache: dict):
    """derivative(q) on ``run`` against finite differences of q over its saved states (once per run)."""
    key = ("derivative check", node, run)
    if key not in cache:
        q = _resolve(node.args[0], run.dynamics, run.gradient)
        d = rate(q, run.dynamics, run.gradient)
        q_values = np.asarray(_evaluate(q, run, params, cache), dtype=float)
        d_values = np.asarray(_evaluate(d, run, params, cache), dtype=float)
        moved = np.asarray(_evaluate(q, run, params, cache, states=consistency.perturbed_states(run)), dtype=float)
        T = len(q_values)
        noise = 10 * np.sqrt(np.sum((moved - q_values).reshape(T, -1) ** 2, axis=1))
        noise = np.where(np.isfinite(noise), noise, 0.0)
        label = f"derivative({S.parsing.normalize(str(node.args[0]))})"
        jumps = getattr(run.perturbation, "grid", None) if run.dynamics.startswith("pgf") else None
        cache[key] = consistency.compare(label, index, run, np.asarray(run.trajectory.t, dtype=float), q_values,
                                         d_values, noise, discrete=run.dynamics == "gd", jumps=jumps)
    check = cache[key]
    return check if check.run == index else consistency.DerivativeCheck(**{**check.__dict__, "run": index})


def _report(claim: Claim, series: list, checks=()) -> Report:
    first, min_slack, worst = None, np.inf, -np.inf
    for i, s in enumerate(series):
        applies = np.ones(len(s.t), dtype=bool) if s.applies is None else s.applies
        _, ratio = _slack_and_ratio(claim.op, s.lhs, s.rhs, s.allowance)
        ratio = np.where(applies, ratio, np.nan)
        if applies.any():
            min_slack = min(min_slack, float(np.min(s.slack[applies])))
        if np.any(np.isfinite(ratio) | np.isinf(ratio)):
            worst = max(worst, float(np.nanmax(np.where(np.isnan(ratio), -np.inf, ratio))))
        bad = np.flatnonzero(~(s.slack >= 0) & applies)
        if bad.size and (first is None or s.t[bad[0]] < first.time):
            j = int(bad[0])
            first = Violation(i, s.label, j, float(s.t[j]), float(s.lhs[j]), float(s.rhs[j]))
    worst = float("nan") if worst == -np.inf else worst
    checks = tuple(checks)
    nonsmooth = sum(int(np.count_nonzero(s.nonsmooth)) for s in series if s.nonsmooth is not None)
    excluded = sum(int(np.count_nonzero(~s.applies)) for s in series if s.applies is not None)
    checked = sum(len(s.t) for s in series) - excluded
    holds = first is None and checked > 0 and not any(c.disagrees for c in checks)
    return Report(claim, holds, min_slack, worst, first, sum(len(s.t) for s in series), tuple(series), checks,
                  nonsmooth, excluded)


def check_all(claims, runs, *, params: Mapping | None = None, progress: bool | None = False) -> list[Report]:
    """:func:`check` for each claim, each on the runs whose dynamics it is stated for.

    Parameters
    ----------
    claims : sequence of Claim
    runs : sequence of Run
    params : mapping, optional
        Shared values for parameters (a claim file's ``[params]``): they fill in the parameters a
        claim declares without a value; a value the claim sets itself wins.
    progress : bool or None
        A progress bar over the claims (tqdm, on stderr); None: only on a terminal.
    """
    runs, claims = _as_runs(runs), list(claims)
    reports = []
    with run_bar(len(claims), "claims", progress) as bar:
        for claim in claims:
            mine = [r for r in runs if claim.dynamics is None or r.dynamics in claim.dynamics]
            if not mine:
                raise ValueError(f"no run has the dynamics {claim.dynamics} that claim {claim.label!r} is stated for")
            unset = {k: v for k, v in (params or {}).items() if k in claim.params and claim.params[k] is None}
            reports.append(check(claim, mine, params=unset))
            bar.update()
    return reports


TABLE_HEADER = ("claim", "dynamics", "runs", "states", "holds", "must_hold", "as_expected", "min slack",
                "worst ratio", "nonsmooth", "excluded", "fd check", "first violation")
"""Columns of :func:`table`: ``holds`` is the verdict (yes, NO, UNRELIABLE where a derivative
disagrees with the saved trajectory, or NOT CHECKED where no state meets the claim's hypotheses);
``must_hold`` whether the claim is expected to hold (False for a known counterexample);
``as_expected`` whether the verdict is the expected one; ``nonsmooth`` the number of states where a
one-sided derivative was used; ``excluded`` the states outside the claim's hypotheses; ``fd check``
the comparison of every derivative with the finite differences of the saved states (ok, n/a where no
run is saved densely enough, or the number of disagreements). A cell that is not a number is explained
under the table (:data:`RATIO_UNDEFINED`, :data:`SLACK_UNDEFINED`, :data:`SLACK_NONFINITE`)."""


RATIO_UNDEFINED = "worst ratio n/a: the bound's side is 0 at every checked state, so no ratio is defined"
SLACK_UNDEFINED = "min slack -: no state meets the claim's hypotheses (nothing checked)"
SLACK_NONFINITE = "min slack non-finite: a side of the claim is NaN or ±inf at some state (a violation)"


def _ratio_cell(rep: Report) -> str:
    return "n/a" if np.isnan(rep.worst_ratio) else f"{rep.worst_ratio:.3g}"


def _slack_cell(rep: Report) -> str:
    if rep.min_slack == np.inf:
        return "-"
    return "non-finite" if not np.isfinite(rep.min_slack) else f"{rep.min_slack:.3g}"


def _cell_notes(reports) -> list[str]:
    """What the table's "n/a", "-" and "non-finite" cells mean, for those that appear."""
    notes = []
    if any(np.isnan(rep.worst_ratio) for rep in reports):
        notes.append(RATIO_UNDEFINED)
    if any(rep.min_slack == np.inf for rep in reports):
        notes.append(SLACK_UNDEFINED)
    if any(not np.isfinite(rep.min_slack) and rep.min_slack != np.inf for rep in reports):
        notes.append(SLACK_NONFINITE)
    return notes


def _fd_cell(rep: Report) -> str:
    if not rep.derivative_checks:
        return "-"
    if rep.disagreements:
        return f"DISAGREES ({len(rep.disagreements)})"
    return "ok" if any(c.compared for c in rep.derivative_checks) else "n/a"


def table(reports) -> str:
    """A plain-text table of reports, one row per claim, then one line per derivative that disagrees
    with its trajectory's finite differences (see :data:`TABLE_HEADER` for the columns)."""
    reports, rows, notes = list(reports), [], []
    for rep in reports:
        v = rep.first_violation
        where = "-" if v is None else f"t={v.time:.4g} ({v.label})"
        dyn = ",".join(sorted({s.dynamics for s in rep.series}))
        verdict = {"holds": "yes", "VIOLATED": "NO"}.get(rep.verdict, rep.verdict)
        rows.append((rep.claim.label, dyn, str(len(rep.series)), str(rep.n_states), verdict,
                     "yes" if rep.claim.expect else "no", "yes" if rep.as_expected else "NO", _slack_cell(rep),
                     _ratio_cell(rep), str(rep.n_nonsmooth), str(rep.n_excluded), _fd_cell(rep), where))
        notes += [f"{rep.claim.label}: {c.describe()}" for c in rep.disagreements]
    notes += _cell_notes(reports)
    text = text_table(TABLE_HEADER, rows, rule=True)
    return text + ("\n" + "\n".join(notes) if notes else "")
