"""Figure 6 — matrix sensing: recovery error against the number of measurements p and the init scale α.

Gradient flow on f(U, V) = ½‖𝒜(UVᵀ) − y‖² with p Gaussian measurements of a low-rank X*, in an
overparameterized model (width k = m): below p = mn infinitely many matrices fit the measurements,
and which one gradient flow finds depends on where it starts. From a small start it finds the
low-rank X* with p well below mn (implicit regularization); from a large one it does not. Each
cell is the median over several seeds of ‖UVᵀ − X*‖_F/‖X*‖_F at the end of the run.

The grid runs as a sweep (:mod:`pgflow.analysis.sweeps`), the very sweep of ``pgflow sweep figure6``
(``pgflow/analysis/examples/sweep_figure6.toml``, read on first use; ``--quick`` shrinks its grid): every run's seeds follow
from ``config["seed"]`` and its grid position, so a run computes the same numbers serially, in
local processes or on a Dask cluster. The gallery runs it serially: 90 short runs gain little
from a process pool on two cores, and each spawned worker of a pool re-runs the caller's main
script unless it is guarded by ``if __name__ == "__main__"``.

To draw the figure from a larger sweep run elsewhere, e.g. with
``pgflow sweep my_grid.toml --scheduler tcp://host:8786 --out DIR`` (same two axes)::

    from pgflow.analysis.sweeps import load_sweep, run_sweep
    sweep = load_sweep("my_grid.toml")
    table = run_sweep(sweep, "DIR")                # the stored runs are read, not run again
    fig = fig6_sensing.plot(fig6_sensing.data_from_table(table), {"base": sweep.runs()[0].config})
"""

from __future__ import annotations

import functools
import sys
import tempfile

import numpy as np

from ..analysis.sweeps import Sweep, example_path, phase_diagram, read_config, run_sweep
from . import gallery, style

NAME = "fig6_sensing"
TITLE = "matrix sensing phase diagram"
X, Y, VALUE = "n_measurements", "scale", "recovery_error"


@functools.cache
def _configs() -> dict:
    """CONFIG and QUICK, from the shipped sweep file (read on first use, not at import)."""
    sweep = read_config(example_path("figure6"))
    return {"CONFIG": {"base": sweep["base"], "grid": sweep["grid"], "replicates": sweep["sweep"]["replicates"],
                       "executor": "serial", "seed": sweep["sweep"]["seed"]},
            "QUICK": {"base": {**sweep["base"], "t_end": 60.0}, "grid": {X: [12, 32, 64], Y: [1e-3, 0.3]},
                      "replicates": 2}}


def __getattr__(name):
    if name in ("CONFIG", "QUICK"):  # every figure script has them; this one's come from the sweep file
        return _configs()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def compute(config, rng):
    """Run the sweep (``rng`` is unused: the sweep seeds each run from ``config["seed"]``)."""
    sweep = Sweep(base=config["base"], grid=config["grid"], replicates=config["replicates"], reductions=(VALUE,),
                  seed=config["seed"])
    with tempfile.TemporaryDirectory() as folder:  # the figure's own cache keeps the numbers
        table = run_sweep(sweep, folder, executor=config["executor"], progress=False)
    return data_from_table(table)


def data_from_table(table):
    """The figure's arrays from a sweep's table with axes "n_measurements" and "scale".

    Returns
    -------
    dict with ``p`` (X,), ``alpha`` (Y,), ``median`` (Y, X) and ``runs`` (Y, X, R): every
    replicate's recovery error (NaN where a cell has fewer than R runs or a run failed).
    """
    p, alpha, median = phase_diagram(table, X, Y, VALUE, np.median)
    xv, yv, v = table.column(X), table.column(Y), table.column(VALUE)
    replicates = int(table.column("replicate").max()) + 1
    runs = np.full(median.shape + (replicates,), np.nan)
    for j, a in enumerate(alpha):
        for i, q in enumerate(p):
            cell = v[(xv == q) & (yv == a)]
            runs[j, i, :cell.size] = cell
    return {"p": p, "alpha": alpha, "median": median, "runs": runs}


def _edges(values):
    """Cell edges around positive values on a log axis: geometric midpoints, extended at both ends."""
    logs = np.log(values)
    mid = (logs[1:] + logs[:-1]) / 2
    first, last = (2 * logs[0] - mid[0], 2 * logs[-1] - mid[-1]) if mid.size else (logs[0] - 0.5, logs[0] + 0.5)
    return np.exp(np.concatenate([[first], mid, [last]]))


def plot(data, config):
    """(a) the phase diagram (median error per cell); (b) error against α for each p, every seed shown."""
    from matplotlib.colors import LogNorm

    fig, (ax, ax_a) = style.figure(2, height=4.0)
    p, alpha, median = data["p"], data["alpha"], data["median"]
    base = config["base"]
    m, n, r = base["m"], base["n"], base["rank"]
    finite = median[np.isfinite(median)]
    norm = LogNorm(vmin=min(finite.min(), 1e-3), vmax=max(finite.max(), 1.0))
    mesh = ax.pcolormesh(_edges(p), _edges(alpha), median, norm=norm, cmap="viridis_r")
    for (j, i), z in np.ndenumerate(median):
        ax.text(p[i], alpha[j], "failed" if np.isnan(z) else f"{z:.2g}", ha="center", va="center", fontsize=7,
                color="w" if np.isfinite(z) and norm(z) > 0.5 else "k")
    ax.set(xscale="log", yscale="log", xlabel="measurements p", ylabel="init scale α (entries of U₀, V₀)",
           title=f"median over {data['runs'].shape[2]} seeds")
    ax.set_xticks(p, [f"{v:g}" for v in p], minor=False)
    ax.set_xticks([], minor=True)
    ax.set_yticks(alpha, [f"{v:g}" for v in alpha], minor=False)
    ax.set_yticks([], minor=True)
    ax.grid(False)
    fig.colorbar(mesh, ax=ax, label="recovery error ‖UVᵀ − X*‖_F / ‖X*‖_F")

    shades = style.shades(p.size, cmap="plasma", hi=0.8)
    for i, q in enumerate(p):
        ax_a.loglog(alpha, median[:, i], "-o", color=shades[i], label=f"p = {q:g}")
        runs = data["runs"][:, i, :]
        ax_a.loglog(np.repeat(alpha, runs.shape[1]), runs.ravel(), ".", color=shades[i], alpha=0.5, ms=3)
    ax_a.set(xlabel="init scale α", ylabel="recovery error ‖UVᵀ − X*‖_F / ‖X*‖_F",
             title=f"X* {m}×{n} of rank {r}, width {base['width']}: mn = {m * n}, r(m + n − r) = {r * (m + n - r)}")
    ax_a.legend(title="median (line), each seed (dots)", loc="lower right", ncols=2)
    style.panel_labels(ax, ax_a)
    return fig


main = gallery.main_for(__name__)

if __name__ == "__main__":
    sys.exit(main())
