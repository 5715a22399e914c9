"""Notebook-friendly figures: functions that compute and *return* matplotlib figures.

In a notebook, call a function and let the figure display itself (the last expression of a cell)::

    from notebook_figures import loss_curves, gallery_figure   # with examples/ on sys.path, or %run it
    fig = loss_curves(m=20, n=15, width=4)
    fig                                   # shown inline
    fig.savefig("loss.pdf")               # or saved, whenever you like

Nothing here calls ``pyplot``: each function builds a ``matplotlib.figure.Figure`` of its own, so it
does not depend on a backend, leaves no figure open in a global registry, and can be called in a
loop, a script, a test or a notebook alike (Jupyter's inline display shows a returned Figure). The
same holds for pgflow's own plotting: every figure of the gallery is ``plot(compute(config, rng),
config)`` (:func:`gallery_figure`), and :meth:`Report.plot <pgflow.analysis.bounds.Report.plot>`
returns a Figure too.

Run as a script, it saves the figures as PNG files::

    python examples/notebook_figures.py [--out DIR]            # default DIR: example-figures
    python examples/notebook_figures.py --small [--out DIR]    # what the test suite runs
"""

import os
import sys

import numpy as np
from matplotlib.figure import Figure

from pgflow import GradientFlow, MatrixFactorization, gradient_descent, init, integrate
from pgflow.figures import gallery, style

SMALL = "--small" in sys.argv[1:]  # tests/test_examples.py runs every example with --small


def loss_curves(m: int = 30, n: int = 20, width: int = 5, step_sizes=(0.05, 0.1, 0.15), t_end: float = 12.0,
                seed: int = 0) -> Figure:
    """Loss over time of gradient flow and of GD at several step sizes, from one small random start.

    Parameters
    ----------
    m, n, width : int
        Σ is m×n of rank 3 (σ = 4, 2, 1); U is m×width, V n×width.
    step_sizes : sequence of float
        GD's step sizes η (each run for t_end/η steps).
    t_end : float
    seed : int

    Returns
    -------
    matplotlib.figure.Figure
        One axes: the loss (log scale) against t (GD: t = kη).
    """
    problem = MatrixFactorization.random(m=m, n=n, rank=3, width=width, singular_values=[4.0, 2.0, 1.0], seed=seed)
    x0 = init.gaussian(problem, 1e-3, seed=seed + 1)
    flow = integrate(GradientFlow(problem), x0, t_end, t_eval=np.linspace(0.0, t_end, 241))
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.semilogy(flow.t, flow.monitors["loss"], "k", lw=2, label="gradient flow")
    for eta in step_sizes:
        gd = gradient_descent(problem, x0, eta, int(round(t_end / eta)))
        ax.semilogy(gd.t, gd.monitors["loss"], "--", label=f"GD, η = {eta:g}")
    ax.set(xlabel="time t (GD: t = kη)", ylabel="loss ½‖UVᵀ − Σ‖²_F", title="incremental learning, three plateaus")
    ax.legend()
    return fig


def gallery_figure(number: int, quick: bool = True) -> Figure:
    """Figure ``number`` (1–8) of pgflow's gallery, computed now and returned instead of written.

    Parameters
    ----------
    number : int
    quick : bool
        The script's tiny ``QUICK`` config (seconds) instead of the full one.

    Returns
    -------
    matplotlib.figure.Figure
        Drawn in the gallery's style (:func:`pgflow.figures.style.context`).
    """
    script = gallery.module(number)
    config = gallery.config_of(script, quick=quick)
    data = script.compute(config, np.random.default_rng(config["seed"]))
    with style.context():  # the style applies to the artists created inside it
        return script.plot(data, config)


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    size = {"m": 10, "n": 8, "width": 3, "t_end": 8.0} if SMALL else {}
    figures = {"loss_curves": loss_curves(**size), "gallery_fig3": gallery_figure(3, quick=True)}
    for name, fig in figures.items():
        assert isinstance(fig, Figure) and fig.axes, name
        path = os.path.join(out, f"{name}.png")
        fig.savefig(path)
        print(f"{name}: {len(fig.axes)} axes, {sum(len(ax.lines) for ax in fig.axes)} lines -> {path}")
    # what loss_curves drew: gradient flow and one GD curve per step size, the flow's loss decreasing
    (ax,) = figures["loss_curves"].axes
    assert [line.get_label() for line in ax.lines] == ["gradient flow", "GD, η = 0.05", "GD, η = 0.1", "GD, η = 0.15"]
    assert np.all(np.diff(ax.lines[0].get_ydata()) <= 0)
    print("OK: figures returned, and saved")


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else "example-figures")
