"""A discretization report: several :func:`~pgflow.analysis.discretization.error_vs_step` studies of
one problem and start (GD variants against their flow and their modified flow), the sharpness along
the largest-η GD runs, and the table, text and figure that present them."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from ..flows import DivergenceError, gradient_descent
from ..flows.descent import number_of_steps
from ..flows.version import package_version
from .discretization import ASYMPTOTIC_TOL, error_vs_step
from .stability import critical_step_size, sharpness_along
from .text import table

COLUMNS = ("variant", "against", "measure", "step_size", "n_steps", "error_t_end", "order", "order_stderr",
           "local_slope", "asymptotic", "diverged", "ok", "reference_error", "reference_ok")
"""Columns of :meth:`DiscretizationReport.rows` and of its CSV. ``local_slope`` is the slope of log error
between this step size and the next smaller one (NaN for the smallest); ``asymptotic`` and ``ok`` are
the study's flags, ``diverged`` whether this step size's GD run diverged (its error is then NaN)."""


def _number(value: float, spec: str) -> str:
    """``value`` formatted, or "-" where it is not defined (NaN), as the report's notes explain."""
    return "-" if not np.isfinite(value) else format(value, spec)


def order_text(order: float, stderr: float) -> str:
    """A fitted order as the report's table, its verdicts and its figure all print it: "2.9871 ± 0.0042"."""
    return f"{_number(order, '.4f')} ± {_number(stderr, '.4f')}"


def _fields(values: dict, prefix: str = "") -> str:
    """A description dict as "key = value, ..." (a nested dict's keys dotted: "target.rank = 2")."""
    return ", ".join(_fields(v, f"{prefix}{k}.") if isinstance(v, dict)
                     else f"{prefix}{k} = {v:g}" if isinstance(v, float) else f"{prefix}{k} = {v}"
                     for k, v in values.items())


@dataclass(frozen=True, eq=False)
class DiscretizationReport:
    """Studies by (variant, against), the sharpness along GD by variant, and where they came from.

    Attributes
    ----------
    problem : problem object
    x0 : ndarray, shape (dim,)
    studies : dict of (variant, against) -> DiscretizationStudy
    sharpness : dict of variant -> SharpnessTrace
        Along GD with the largest step size (up to where it diverged, if it did).
    critical_step_size : float
        2/λ_max(∇²f) at the balanced minimum.
    settings : dict
        t_end, the reference's method and tolerance (for the report's header).
    """

    problem: object
    x0: np.ndarray
    studies: dict
    sharpness: dict
    critical_step_size: float
    settings: dict

    def rows(self) -> list[dict]:
        """One row per (variant, against, step size), with the :data:`COLUMNS`."""
        rows = []
        for (variant, against), st in self.studies.items():
            # local_slopes[i] joins the i-th and (i + 1)-th largest step sizes: give it to the larger one
            slope = np.full(st.step_sizes.shape, np.nan)
            slope[np.argsort(-st.step_sizes, kind="stable")[:-1]] = st.local_slopes
            for j, eta in enumerate(st.step_sizes):
                rows.append({"variant": variant, "against": against, "measure": st.measure, "step_size": eta,
                             "n_steps": st.meta["gradient_descent"][j]["n_steps"], "error_t_end": st.errors[j],
                             "order": st.order, "order_stderr": st.order_stderr, "local_slope": slope[j],
                             "asymptotic": st.asymptotic, "diverged": float(eta) in st.diverged, "ok": st.ok,
                             "reference_error": st.reference_error[j], "reference_ok": st.reference_ok})
        return rows

    def to_pandas(self):
        """Every study of the report as one tidy ``pandas.DataFrame`` (needs ``pip install 'pgflow[data]'``).

        One row per (variant, against, step size), the :data:`COLUMNS` as columns (the rows of
        :meth:`rows`). This stands in for a ``DiscretizationStudy.to_pandas``: a single study is the
        rows of one (variant, against), ``frame[(frame.variant == v) & (frame.against == a)]``.

        Returns
        -------
        pandas.DataFrame
        """
        from ..flows.export import require
        pd = require("pandas", "DiscretizationReport.to_pandas")
        return pd.DataFrame(self.rows(), columns=list(COLUMNS))

    def csv(self) -> str:
        """The rows as CSV text, floats written so that they read back to the same number."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.rows():
            writer.writerow({k: repr(float(v)) if isinstance(v, (float, np.floating)) else v for k, v in row.items()})
        return buf.getvalue()

    def text(self, setup: dict | None = None) -> str:
        """The rows as an aligned table under a header of provenance (``setup``: how the problem and
        the start were made, printed as given)."""
        sigma1 = float(self.problem.target.sigma[0])
        s = self.settings
        lines = [f"pgflow discretization (version {package_version()})",
                 "problem: " + _fields(self.problem.describe())]
        if setup is not None:
            lines.append("setup: " + _fields(setup))
        lines += [f"t_end = {s['t_end']:g}; reference {s['method']} at rtol {s['reference_rtol']:g}, checked "
                  f"against 100x looser",
                  f"1/(4σ₁) = {0.25 / sigma1:.6g}; critical step 2/λ_max at the balanced minimum = "
                  f"{self.critical_step_size:.6g}", ""]
        head = ("variant", "against", "η", "steps", "error(t_end)", "order ± stderr", "local slope",
                "reference error", "reference ok")
        body = [(r["variant"], r["against"], f"{r['step_size']:.6g}", str(r["n_steps"]),
                 "diverged" if r["diverged"] else _number(r["error_t_end"], ".4e"),
                 order_text(r["order"], r["order_stderr"]), _number(r["local_slope"], ".4f"),
                 _number(r["reference_error"], ".2e"), "yes" if r["reference_ok"] else "NO") for r in self.rows()]
        notes = ["", "local slope: the slope of log error from this η to the next smaller one (- for the smallest "
                 "η); - elsewhere: not defined (fewer than two finite errors, or a diverged run)",
                 f"asymptotic: every local slope within {ASYMPTOTIC_TOL} of the fitted order; the verdicts:"]
        for (variant, against), st in self.studies.items():
            notes.append(f"{variant} vs {against}: order {order_text(st.order, st.order_stderr)}; local slopes "
                         f"{', '.join(_number(s, '.4f') for s in st.local_slopes)}; asymptotic: "
                         f"{'yes' if st.asymptotic else 'NO'}; {st.verdict}")
        return "\n".join(lines) + "\n" + table(head, body) + "\n" + "\n".join(notes) + "\n"

    def not_ok(self) -> list[str]:
        """One line per study that is not ok (:attr:`DiscretizationStudy.ok`): why, and the step sizes to try."""
        return [f"{v} vs {a}: {st.verdict.removeprefix('not ok: ')}" for (v, a), st in self.studies.items()
                if not st.ok]

    def figure(self):
        """Error vs η (log–log, fitted slopes), error over time, sharpness along GD vs 2/η.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from matplotlib.figure import Figure

        studies, problem = self.studies, self.problem
        fig = Figure(figsize=(14, 4), layout="constrained")
        ax_order, ax_time, ax_sharp = fig.subplots(1, 3)
        colors = {variant: f"C{i}" for i, variant in enumerate(dict.fromkeys(v for v, _ in studies))}
        for (variant, against), st in studies.items():
            line, color = {"flow": "-", "modified": "--", "modified2": ":"}[against], colors[variant]
            ax_order.loglog(st.step_sizes, st.errors, line, marker="o", color=color,
                            label=f"{variant} vs {against}: order {order_text(st.order, st.order_stderr)}"
                                  + ("" if st.ok else " (NOT OK)"))
            ax_order.loglog(st.step_sizes, st.fit(st.step_sizes), ":", color=color, lw=0.8)
            # shade by log η: the largest step darkest
            shade = np.log(st.step_sizes / st.step_sizes.min()) / np.log(st.step_sizes.max() / st.step_sizes.min())
            for j, (t, err) in enumerate(zip(st.times, st.errors_over_time)):
                ax_time.semilogy(t[1:], err[1:], line, color=color, alpha=0.3 + 0.7 * shade[j],
                                 label=f"{variant} vs {against}" if shade[j] == 1 else None)
        etas = np.unique(np.concatenate([st.step_sizes for st in studies.values()]))
        ax_order.set_xticks(etas, [f"{e:.3g}" for e in etas], minor=False)
        ax_order.set_xticks([], minor=True)
        ax_order.set(xlabel="step size η", ylabel="error at t_end", title="error against step size")
        ax_time.set(xlabel="time t = kη", ylabel="error", title="error over time (darker: larger η)")
        for variant, trace in self.sharpness.items():
            ax_sharp.semilogy(trace.t, trace.sharpness, color=colors[variant],
                              label=f"{variant} GD, η = {trace.step_size:.4g}")
        eta = next(iter(self.sharpness.values())).step_size
        ax_sharp.axhline(2.0 / eta, color="k", ls="--", lw=1, label="2/η")
        ax_sharp.axhline(2.0 * problem.target.sigma[0], color="0.6", ls=":", lw=1, label="2σ₁")
        ax_sharp.set(xlabel="time t = kη", ylabel="λ_max(∇²f)", title="sharpness along GD")
        for ax in (ax_order, ax_time, ax_sharp):
            ax.legend(fontsize=7)
        return fig


def discretization_report(problem, x0, *, step_sizes, t_end: float, variants=("simultaneous",),
                          against=("flow", "modified"), measure: str = "state", reference_rtol: float = 1e-12,
                          method: str = "DOP853", progress: bool | None = False) -> DiscretizationReport:
    """Every (variant, against) study of one start, and the sharpness along the largest-η GD runs.

    Parameters
    ----------
    problem : problem object
    x0 : array_like, shape (dim,)
    step_sizes : sequence of float
        Each divides ``t_end`` into whole steps.
    t_end : float
    variants : sequence of {"simultaneous", "alternating", "scaled"}
    against : sequence of {"flow", "modified", "modified2"}
    measure, reference_rtol, method, progress
        As for :func:`~pgflow.analysis.discretization.error_vs_step` (one progress bar per study).

    Returns
    -------
    DiscretizationReport
    """
    for name, values in (("variants", variants), ("against", against), ("step_sizes", step_sizes)):
        if isinstance(values, str) or not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"{name} must be a non-empty list, got {values!r}")
    studies = {(variant, vs): error_vs_step(problem, x0, step_sizes, t_end, against=vs, variant=variant,
                                            measure=measure, reference_rtol=reference_rtol, method=method,
                                            progress=progress)
               for variant in variants for vs in against}
    eta = max(step_sizes)
    n_steps = number_of_steps(eta, t_end)

    def largest_step_run(variant):
        try:
            return gradient_descent(problem, x0, eta, n_steps, variant=variant)
        except DivergenceError as exc:      # the sharpness up to the blow-up is what explains it
            return exc.partial

    sharp = {variant: sharpness_along(problem, largest_step_run(variant), stride=max(1, n_steps // 50))
             for variant in variants}
    return DiscretizationReport(problem=problem, x0=np.asarray(x0, dtype=float), studies=studies, sharpness=sharp,
                                critical_step_size=critical_step_size(problem),
                                settings={"t_end": t_end, "method": method, "reference_rtol": reference_rtol})


__all__ = ["COLUMNS", "DiscretizationReport", "discretization_report"]
