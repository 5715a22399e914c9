r"""A second opinion on every checked derivative: finite differences of the saved trajectory.

``derivative(q)`` is computed from the symbolic chain rule along the run's *declared* dynamics. If
the declaration is wrong (a GD trajectory labelled as a flow, a sensing flow labelled as the
factorization's gradient flow, a perturbation other than the one that moved the state), the
derivative is exact for the wrong system. So each derivative is compared, once per run, with the
states themselves:

* on a flow, over each interval [t_i, t_{i+1}] of the saved grid (except those holding a jump of
  a piecewise perturbation), the change q(t_{i+1}) − q(t_i)
  against the trapezoid rule h(ḋ_i + ḋ_{i+1})/2 on the derivative's values. The trapezoid error is
  h³|q'''|/12, estimated from second differences of the derivative itself; an interval is
  compared only where that estimate is below a twentieth of the change (the saving is dense
  enough), and a mismatch counts when it exceeds a tenth of the change plus ten times the
  estimate plus the noise of the states (q's sensitivity to a relative state error of 100·rtol,
  measured by evaluating q at perturbed states);
* on gradient descent, where the derivative is the one-step quotient, over consecutive saved
  steps (save_every = 1): q(x_{i+1}) − q(x_i) against η times the quotient, to rounding.

A derivative *disagrees* on a run when at least a fifth of its compared intervals (and at least one)
mismatch. A disagreement makes the report unreliable: the claim is then neither reported to hold
nor to be violated (:attr:`pgflow.analysis.bounds.Report.verdict`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DENSE = 0.05
"""An interval is compared when its trapezoid error estimate is at most this fraction of the change."""
MISMATCH = 0.1
"""A compared interval mismatches when the discrepancy exceeds this fraction of the change (plus
ten times the error estimate and the noise)."""
SHARE = 0.2
"""A derivative disagrees on a run when at least this share of its compared intervals mismatch."""


@dataclass(frozen=True)
class DerivativeCheck:
    """derivative(q) on one run against the finite differences of q over the saved states.

    Attributes
    ----------
    derivative : str
        The derivative, as written (``derivative(q)``).
    run : int
        Index of the run in the report.
    label : str
    compared : int
        Intervals dense enough to compare.
    mismatched : int
        Compared intervals where the two disagree.
    worst : float
        The largest discrepancy over its tolerance (≤ 1: agreement everywhere); NaN if none compared.
    time : float or None
        Start of the first mismatching interval.
    symbolic, differenced : float or None
        There: the mean derivative by the trapezoid rule on the derivative's values and by the
        difference of q (norms, for a matrix q).
    """

    derivative: str
    run: int
    label: str
    compared: int
    mismatched: int
    worst: float
    time: float | None = None
    symbolic: float | None = None
    differenced: float | None = None

    @property
    def status(self) -> str:
        """"agrees", "DISAGREES" or "not dense enough" (nothing could be compared)."""
        if self.compared == 0:
            return "not dense enough"
        return "DISAGREES" if self.disagrees else "agrees"

    @property
    def disagrees(self) -> bool:
        return self.compared > 0 and self.mismatched >= max(1, math.ceil(SHARE * self.compared))

    def describe(self) -> str:
        """One line for the report table."""
        text = (f"{self.derivative} on {self.label}: {self.status} with the saved trajectory's finite differences "
                f"({self.mismatched} of {self.compared} intervals mismatch")
        if self.time is not None:
            text += f"; first at t = {self.time:.6g}: derivative {self.symbolic:.6g}, differences {self.differenced:.6g}"
        return text + ")"


def _norms(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(x.reshape(len(x), -1) ** 2, axis=1))


def compare(name: str, index: int, run, t, q, d, noise, discrete: bool, jumps=None) -> DerivativeCheck:
    """Compare the derivative values ``d`` with differences of ``q`` over the saved times ``t``.

    Parameters
    ----------
    name : str
    index : int
        Run index in the report.
    run : Run
    t : ndarray, shape (T,)
    q, d : ndarray, shape (T,) or (T, rows, cols)
        q and derivative(q) on the saved states.
    noise : ndarray, shape (T,)
        How much q moves under a state error of the trajectory's accuracy.
    discrete : bool
        GD: compare one-step differences (only across single steps of size η).
    jumps : array_like, optional
        Times where the perturbation jumps (its ``grid``): an interval holding one is not compared,
        since the derivative at its right end already sees the next piece's E.
    """
    T = len(t)
    q, d = q.reshape(T, -1), d.reshape(T, -1)
    if T < 2:
        return DerivativeCheck(name, index, run.label, 0, 0, float("nan"))
    h = np.diff(t)
    change = q[1:] - q[:-1]
    size = _norms(change)
    floor = noise[1:] + noise[:-1] + 1e3 * np.finfo(float).eps * (_norms(q[1:]) + _norms(q[:-1]))
    if discrete:
        eta = float(run.step_size)
        predicted = eta * d[:-1]
        usable = np.abs(h - eta) <= 1e-9 * eta
        tolerance = 1e-9 * (size + _norms(predicted)) + floor
        estimate = np.zeros_like(size)
    else:
        predicted = 0.5 * h[:, None] * (d[1:] + d[:-1])
        curvature = np.zeros(T)
        if T >= 3:  # ≈ |q'''| at the interior nodes, from second divided differences of the derivative
            slopes = (d[1:] - d[:-1]) / h[:, None]
            curvature[1:-1] = _norms(2 * (slopes[1:] - slopes[:-1]) / (h[1:] + h[:-1])[:, None])
            curvature[0], curvature[-1] = curvature[1], curvature[-2]
        estimate = h ** 3 / 12 * np.maximum(curvature[1:], curvature[:-1])
        scale = size + _norms(predicted)
        usable = (h > 0) & ((estimate <= DENSE * scale) | (scale <= floor))
        if jumps is not None and len(jumps):
            jumps = np.asarray(jumps, dtype=float)
            inside = np.searchsorted(jumps, t[1:], side="right") - np.searchsorted(jumps, t[:-1], side="right")
            usable &= inside == 0
        tolerance = MISMATCH * scale + 10 * estimate + floor
    gap = _norms(change - predicted)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(tolerance > 0, gap / tolerance, np.where(gap > 0, np.inf, 0.0))
    ratio = np.where(np.isfinite(gap), ratio, np.inf)
    bad = usable & (ratio > 1)
    compared = int(np.count_nonzero(usable))
    worst = float(np.max(ratio[usable])) if compared else float("nan")
    if not bad.any():
        return DerivativeCheck(name, index, run.label, compared, 0, worst)
    i = int(np.flatnonzero(bad)[0])
    per_time = h[i] if h[i] > 0 else 1.0
    return DerivativeCheck(name, index, run.label, compared, int(np.count_nonzero(bad)), worst, float(t[i]),
                           float(_norms(predicted[i:i + 1])[0] / per_time), float(size[i] / per_time))


def state_accuracy(run) -> float:
    """Relative accuracy of the saved states: rounding for GD, 100·rtol for a solver (rtol 1e-8 if
    the trajectory does not record it)."""
    record = getattr(run.trajectory, "dynamics", None)
    if (record is not None and record.kind == "gd") or (record is None and run.dynamics == "gd"):
        return 1e-12
    meta = run.trajectory.meta if isinstance(run.trajectory.meta, dict) else {}
    return 100.0 * float(meta.get("rtol", 1e-8))


def perturbed_states(run, seed: int = 0):
    """(U, V) of every saved state moved by a random relative error of the trajectory's accuracy."""
    x = np.asarray(run.trajectory.x, dtype=float)
    rng = np.random.default_rng(np.random.SeedSequence([seed, x.shape[0], x.shape[1]]))
    z = rng.standard_normal(x.shape)
    z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-300)
    atol = float(run.trajectory.meta.get("atol", 0.0)) if isinstance(run.trajectory.meta, dict) else 0.0
    scale = state_accuracy(run) * np.linalg.norm(x, axis=1, keepdims=True) + 100 * atol * math.sqrt(x.shape[1])
    U, V = run.problem.unpack(x + scale * z)
    return U, V
