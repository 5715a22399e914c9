"""Figure 7 — solvers: cost of every solve_ivp method as the initial imbalance makes the flow stiff.

A λ-balanced start (U₀ᵀU₀ − V₀ᵀV₀ = λI, :func:`pgflow.flows.init.lambda_balanced`) puts a fast rate of
about λ into the flow (‖U‖² ≈ λ) while the slow rate stays near σ_r: for large λ the explicit
methods (RK23, RK45, DOP853) are stability-bound and their right-hand-side evaluations grow ∝ λ,
while the implicit ones (Radau, BDF, LSODA) stay flat. The implicit methods are run with the
analytic Jacobian −∇²f (solid) and with scipy's finite differences (dashed, whose extra
evaluations are counted). Every solve has the same tolerances and the same final time; the
dotted line marks where ``method="auto"`` (:func:`pgflow.flows.choose_method`) switches to LSODA.

Reproducibility: evaluation counts are deterministic, wall times are not. The figure is therefore
drawn from a stored measurement (``MEASURED``; :mod:`pgflow.figures.gallery`): the committed
``figures/data/fig7_solvers.npz``, shipped with the package, so that ``pgflow figures`` redraws the
same numbers, writes byte-identical files and leaves a clean checkout clean.
``python -m pgflow.figures.fig7_solvers --remeasure`` times every solve again on this machine and
stores the result in ``figures/data/`` (commit it to update the gallery); a config with no stored
measurement (``--quick``, an edited ``CONFIG``) is measured and kept in the data cache.
"""

from __future__ import annotations

import sys

import numpy as np

from ..flows import METHODS, GradientFlow, MatrixFactorization, choose_method, init, integrate
from ..flows.integration import IMPLICIT

from . import gallery, style

NAME = "fig7_solvers"
TITLE = "solver cost against initial imbalance"
MEASURED = True  # wall times of this machine: drawn from the stored measurement, see the module docstring
CONFIG = {"m": 10, "n": 8, "rank": 2, "width": 3, "condition": 2.0, "scale": 0.1, "t_end": 20.0,
          "log10_lambda": [-2.0, -1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0], "rtol": 1e-8, "atol": 1e-10,
          "repeat_below": 1.0, "repeats": 5, "seed": 0}
QUICK = {"m": 6, "n": 5, "width": 2, "t_end": 5.0, "log10_lambda": [-1.0, 1.0, 2.5], "rtol": 1e-6, "atol": 1e-8,
         "repeats": 1}


def runs():
    """(method, analytic Jacobian?) for every solve: each method, and the implicit ones without it too."""
    return [(method, True) for method in METHODS] + [(method, False) for method in METHODS if method in IMPLICIT]


def compute(config, rng):
    """Evaluations, wall time and final state of every (method, Jacobian) at every λ."""
    c = config
    problem = MatrixFactorization.random(m=c["m"], n=c["n"], rank=c["rank"], width=c["width"],
                                         condition=c["condition"], seed=int(rng.integers(2**31)))
    init_seed = int(rng.integers(2**31))
    lambdas = 10.0 ** np.asarray(c["log10_lambda"], dtype=float)
    flow, plan = GradientFlow(problem), runs()
    evaluations, wall = np.empty((len(plan), lambdas.size)), np.empty((len(plan), lambdas.size))
    final = np.empty((len(plan), lambdas.size, problem.dim))
    auto_stiff = np.empty(lambdas.size, dtype=bool)
    for j, lam in enumerate(lambdas):
        x0 = init.lambda_balanced(problem, c["scale"], lam, seed=init_seed)
        auto_stiff[j] = choose_method(flow, x0, c["t_end"])[0] != "DOP853"
        for i, (method, jacobian) in enumerate(plan):
            def solve():
                # the full state: the figure is about each solver's cost on the flow of dimension (m + n)k
                return integrate(flow, x0, c["t_end"], method=method, jacobian=jacobian, rtol=c["rtol"],
                                 atol=c["atol"], t_eval=[0.0, c["t_end"]], dense_output=False, default_monitors=False,
                                 reduce=False)
            run = solve()
            times = [run.stats.wall_time]
            # a short solve is timed again (its best time kept): one busy moment, or another process on
            # a shared machine, would dominate it
            while sum(times) < c["repeat_below"] and len(times) < c["repeats"]:
                times.append(solve().stats.wall_time)
            evaluations[i, j], wall[i, j], final[i, j] = run.stats.rhs_calls, min(times), run.final
    # how far the methods' final states are apart, relative to their size: they solved the same problem
    spread = np.max(np.linalg.norm(final - final[:1], axis=2) / np.linalg.norm(final[:1], axis=2))
    return {"lambdas": lambdas, "evaluations": evaluations, "wall_time": wall, "auto_stiff": auto_stiff,
            "spread": np.array(spread)}


def plot(data, config):
    """(a) right-hand-side evaluations and (b) wall time of each solver against λ, log–log."""
    fig, (ax_n, ax_t) = style.figure(2, height=3.9)
    lam, colors = data["lambdas"], dict(zip(METHODS, style.colors(len(METHODS))))
    for i, (method, jacobian) in enumerate(runs()):
        ls = "-" if jacobian else "--"
        label = method if method not in IMPLICIT else f"{method}, {'analytic' if jacobian else 'finite-difference'} J"
        for ax, key in ((ax_n, "evaluations"), (ax_t, "wall_time")):
            ax.loglog(lam, data[key][i], ls, marker="o" if method in IMPLICIT else "s", color=colors[method],
                      label=label)
    switch = lam[np.argmax(data["auto_stiff"])] if data["auto_stiff"].any() else None
    for ax in (ax_n, ax_t):
        if switch is not None:
            ax.axvline(switch, color="0.4", ls=":", lw=1.0, label='method="auto" picks LSODA from here')
        ax.set_xlabel("initial imbalance λ = ‖U₀ᵀU₀ − V₀ᵀV₀‖₂")
    ax_n.set(ylabel="right-hand-side evaluations (incl. finite differences)",
             title=f"cost to t = {config['t_end']:g} at rtol {config['rtol']:g}")
    ax_t.set(ylabel="wall time of the solve [s]",
             title=f"wall time (final states of all methods agree to {float(data['spread']):.0e})")
    ax_n.legend(loc="upper left", ncols=2)
    style.panel_labels(ax_n, ax_t)
    return fig


main = gallery.main_for(__name__)

if __name__ == "__main__":
    sys.exit(main())
