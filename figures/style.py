"""The one style of every figure, and the plotting helpers the figure scripts share.

rcParams are read when an artist is created, so a figure must be built *and* saved inside
:func:`context`; :func:`pgflow.figures.gallery.render` does both. Figures are ``matplotlib.figure.Figure``
objects, never pyplot's: no global figure registry, no backend choice, nothing left open between
figures. Nothing here depends on the machine (fonts are matplotlib's bundled DejaVu Sans), so the
same data gives the same PNG bytes everywhere the same matplotlib version runs.
"""

from __future__ import annotations

from contextlib import contextmanager

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..analysis.fitting import PowerLaw

RC = {
    "font.family": "DejaVu Sans",     # bundled with matplotlib: the same glyphs (and bytes) everywhere
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.labelsize": 9.0,
    "legend.fontsize": 7.5,
    "legend.framealpha": 0.85,
    "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0,
    "lines.linewidth": 1.4,
    "lines.markersize": 4.0,
    "axes.grid": True,
    "grid.color": "0.88",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "axes.prop_cycle": matplotlib.cycler(color=["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00",
                                                "#56B4E9", "#F0E442", "#000000"]),  # Okabe–Ito: colour-blind safe
    "image.cmap": "viridis",
    "savefig.dpi": 130,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
    "svg.hashsalt": "pgflow",         # SVG ids from a fixed salt instead of a random one
    "svg.fonttype": "path",
    "pdf.fonttype": 42,               # TrueType in the PDF: text stays text
    "path.simplify": True,
}

# Width of a figure that spans the README's column, in inches.
WIDTH = 11.0


@contextmanager
def context():
    """rcParams of the gallery, restored afterwards."""
    with matplotlib.rc_context(RC):
        yield


def figure(ncols: int = 1, nrows: int = 1, *, height: float = 3.6, width: float = WIDTH, **subplot_kw):
    """A constrained-layout figure and its axes (a flat array when there is more than one)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, (axes[0, 0] if axes.size == 1 else axes.ravel())


def colors(n: int) -> list[str]:
    """The first n colours of the cycle (n ≤ 8), for curves that share a colour across panels."""
    cycle = RC["axes.prop_cycle"].by_key()["color"]
    if n > len(cycle):
        raise ValueError(f"at most {len(cycle)} colours, asked for {n}")
    return cycle[:n]


def shades(n: int, cmap: str = "viridis", lo: float = 0.0, hi: float = 0.85) -> list:
    """n colours along a colormap, for an ordered parameter (step size, perturbation level)."""
    return [matplotlib.colormaps[cmap](v) for v in np.linspace(lo, hi, n)]


def panel_labels(*axes) -> None:
    """"(a)", "(b)", ... in the top-left corners of the panels' title rows, in the order given."""
    for ax, letter in zip(axes, "abcdefgh"):
        ax.set_title(f"({letter})", loc="left", fontweight="bold")


def power_law(fit) -> PowerLaw:
    """A fitted power law from compute()'s array (order, order_stderr, coefficient), i.e.
    ``numpy.array(dataclasses.astuple(analysis.fitting.fit_power_law(x, y)))``."""
    return PowerLaw(*map(float, fit))


def fitted_slope(ax, x, fit, color) -> None:
    """Draw a fitted power law y = C·xᵖ (see :func:`power_law`) over ``x`` as a thin dotted line."""
    x = np.asarray(x, dtype=float)
    ax.plot(x, power_law(fit)(x), ":", color=color, lw=1.0)


def slope_text(fit) -> str:
    """"slope 1.982 ± 0.004" for a fitted power law (no ± when two points leave no residual)."""
    fit = power_law(fit)
    if np.isfinite(fit.order_stderr):
        return f"slope {fit.order:.3f} ± {fit.order_stderr:.3f}"
    return f"slope {fit.order:.3f}"


def positive(values, floor: float = 1e-300) -> np.ndarray:
    """Values clipped below at ``floor`` so that exact zeros still show on a log axis."""
    return np.maximum(np.asarray(values, dtype=float), floor)


def legend(ax, entries, **kwargs):
    """A legend of proxy lines: ``entries`` is a list of (label, Line2D keyword arguments).

    For figures whose curves are told apart by two properties at once (colour: which mode; line
    style: which method), where one legend entry per curve would repeat each property many times.
    """
    handles = [Line2D([], [], **{"color": "k", **props}) for _, props in entries]
    return ax.legend(handles, [label for label, _ in entries], **kwargs)
