"""Least-squares power laws: error ≈ C·hᵖ, the order p with its standard error (``scipy.stats.linregress``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..flows.checks import as_float_array


@dataclass(frozen=True)
class PowerLaw:
    """y ≈ coefficient · x^order, fitted in log–log space.

    Attributes
    ----------
    order, order_stderr : float
        Slope p of log y against log x and its standard error (NaN with two points: a line through two
        points has no residual to estimate it from).
    coefficient : float
        C = exp(intercept).
    """

    order: float
    order_stderr: float
    coefficient: float

    def __call__(self, x):
        return self.coefficient * np.asarray(x, dtype=float) ** self.order


def fit_power_law(x, y) -> PowerLaw:
    """Fit y ≈ C·xᵖ by least squares on (log x, log y).

    Parameters
    ----------
    x, y : array_like, shape (N,)
        Positive and finite, N ≥ 2, x not all equal.
    """
    x = as_float_array(x, "x", ndim=1)
    y = as_float_array(y, "y", shape=x.shape)
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError(f"x must hold at least two distinct values, got {x}")
    if np.any(x <= 0):
        raise ValueError(f"x must be positive (it is fitted in log space), got {x}")
    if np.any(y <= 0):
        raise ValueError(f"y must be positive (it is fitted in log space), got {y}")
    # Imported here: scipy.stats takes ~0.5 s to import, and most users of this module never fit.
    from scipy.stats import linregress

    # linregress gives the least-squares slope and its standard error √(Σr²/(N − 2)/Σ(log x − mean)²),
    # the same numbers (to rounding) as the normal equations; with N = 2 it reports 0, which would
    # claim a certainty two points cannot give.
    fit = linregress(np.log(x), np.log(y))
    stderr = float(fit.stderr) if x.size > 2 else float("nan")
    return PowerLaw(order=float(fit.slope), order_stderr=stderr, coefficient=float(np.exp(fit.intercept)))
