"""Least-squares power laws: error ≈ C·hᵖ, the order p with its standard error."""

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
    lx, ly = np.log(x), np.log(y)
    A = np.column_stack([lx, np.ones_like(lx)])
    (slope, intercept), *_ = np.linalg.lstsq(A, ly, rcond=None)
    dof = x.size - 2
    if dof > 0:
        resid = ly - A @ np.array([slope, intercept])
        stderr = float(np.sqrt(resid @ resid / dof / np.sum((lx - lx.mean()) ** 2)))
    else:
        stderr = float("nan")
    return PowerLaw(order=float(slope), order_stderr=stderr, coefficient=float(np.exp(intercept)))
