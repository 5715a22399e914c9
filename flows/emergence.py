r"""Incremental learning: when each singular value of UVᵀ emerges, measured against the balanced mode.

From a small init the singular values of UVᵀ are learned one after another (see
``docs/math/proof-quantities.md``). Singular
value i *emerges* when the i-th largest singular value of UVᵀ first reaches fraction·σᵢ.

Prediction. A balanced spectral mode u = ab obeys u̇ = 2u(σ − u) and reaches fσ at
t = [ln((σ − u₀)/u₀) + ln(f/(1 − f))]/(2σ) ≈ ln(σ/u₀)/(2σ) (:func:`pgflow.flows.exact.emergence_time`).
For a general init we take as mode i's initial amplitude the component along the growing
eigenvector (Φᵢ, Ψᵢ)/√2 of the linearized flow at 0,

    uᵢ(0) = ‖Φᵢᵀ U₀ + Ψᵢᵀ V₀‖² / 4,

which equals aᵢ² for a balanced spectral init U₀ = Φ diag(a), V₀ = Ψ diag(a) (the prediction is
then exact) and is the small-init growth amplitude otherwise (the prediction is then approximate:
it ignores the decaying component and the coupling between modes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import positive
from .exact import emergence_time
from .integration import Event
from .monitors import singular_values


def _fraction(fraction) -> float:
    fraction = positive(fraction, "fraction")
    if fraction >= 1:
        raise ValueError(f"fraction must lie in (0, 1): a mode only approaches σ, got {fraction}")
    return fraction


def _n_modes(problem) -> int:
    return min(problem.target.rank, problem.width)


def event_name(i: int, fraction: float) -> str:
    """Key of singular value i's emergence (0-based i) in ``Trajectory.events``."""
    return f"emergence_{i + 1}_at_{fraction:g}"


def emergence_events(problem, fraction: float = 0.5) -> list[Event]:
    """One :class:`pgflow.flows.integration.Event` per singular value: sᵢ(UVᵀ) − fraction·σᵢ crossing upwards.

    Parameters
    ----------
    problem : problem object with a target and factors U, V
    fraction : float
        0 < f < 1.

    Returns
    -------
    list of Event, length min(rank, width)
        Named by :func:`event_name`; pass them as ``integrate(..., events=...)``.
    """
    fraction = _fraction(fraction)
    svals = singular_values(problem)
    sigma = problem.target.sigma

    def make(i):
        level = fraction * sigma[i]
        return Event(lambda t, x: float(svals(t, x)[i]) - level, direction=1.0, name=event_name(i, fraction))
    return [make(i) for i in range(_n_modes(problem))]


def initial_amplitudes(problem, x0) -> np.ndarray:
    """uᵢ(0) = ‖Φᵢᵀ U₀ + Ψᵢᵀ V₀‖²/4 for each mode i < min(rank, width), shape (q,)."""
    U0, V0 = problem.factors(np.asarray(x0, dtype=float))
    t = problem.target
    q = _n_modes(problem)
    return 0.25 * np.sum((t.Phi[:, :q].T @ U0 + t.Psi[:, :q].T @ V0) ** 2, axis=1)


@dataclass(frozen=True, eq=False)
class EmergenceReport:
    """Measured and predicted emergence times, one entry per singular value.

    Attributes
    ----------
    sigma, u0 : ndarray, shape (q,)
        σᵢ and the initial amplitudes uᵢ(0) (:func:`initial_amplitudes`).
    fraction : float
    measured : ndarray, shape (q,)
        First time sᵢ(UVᵀ) rose through fraction·σᵢ (NaN: not within the run, or already above
        at its start).
    predicted : ndarray, shape (q,)
        The balanced-mode time (NaN when uᵢ(0) ≥ fraction·σᵢ: nothing left to emerge).
    source : str
        "events" (located on the dense output) or "grid" (linear interpolation between saved states).
    """

    sigma: np.ndarray
    u0: np.ndarray
    fraction: float
    measured: np.ndarray
    predicted: np.ndarray
    source: str

    @property
    def relative_error(self) -> np.ndarray:
        """|measured − predicted| / predicted."""
        return np.abs(self.measured - self.predicted) / self.predicted

    def as_dict(self) -> dict:
        return {"sigma": self.sigma.tolist(), "u0": self.u0.tolist(), "fraction": self.fraction,
                "measured": self.measured.tolist(), "predicted": self.predicted.tolist(),
                "relative_error": self.relative_error.tolist(), "source": self.source}


def emergence_report(trajectory, problem, x0, fraction: float = 0.5) -> EmergenceReport:
    """Emergence times of a run beside the balanced-mode prediction ln(σᵢ/uᵢ(0))/(2σᵢ) (exact form).

    Measured times come from the events of :func:`emergence_events` (same ``fraction``) when the
    run has them, otherwise from the "singular_values" monitor by linear interpolation between
    saved states (GD runs; as accurate as the saved grid is fine).

    Parameters
    ----------
    trajectory : Trajectory
    problem : problem object
    x0 : array_like, shape (dim,)
        The initial state of the run.
    fraction : float

    Returns
    -------
    EmergenceReport
    """
    fraction = _fraction(fraction)
    sigma = problem.target.sigma[:_n_modes(problem)]
    u0 = initial_amplitudes(problem, x0)
    predicted = np.array([emergence_time(s, u, fraction) if 0 < u < fraction * s else np.nan
                          for s, u in zip(sigma, u0)])
    events = trajectory.events
    names = [event_name(i, fraction) for i in range(sigma.size)]
    if all(name in events for name in names):
        measured = np.array([events[name][0] if events[name] else np.nan for name in names])
        source = "events"
    elif "singular_values" in trajectory.monitors:
        s = trajectory.monitors["singular_values"]
        measured = np.array([_first_crossing(trajectory.t, s[:, i], fraction * sigma[i]) for i in range(sigma.size)])
        source = "grid"
    else:
        raise ValueError(f"trajectory has neither the events {names} (integrate with "
                         f"events=emergence_events(problem, {fraction:g})) nor a 'singular_values' monitor")
    return EmergenceReport(sigma=sigma.copy(), u0=u0, fraction=fraction, measured=measured, predicted=predicted,
                           source=source)


def _first_crossing(t: np.ndarray, s: np.ndarray, level: float) -> float:
    """First time s(t) reaches level upwards, linear between saved points (NaN: never)."""
    above = np.nonzero(s >= level)[0]
    if above.size == 0:
        return np.nan
    j = above[0]
    if j == 0:  # already there at the start, like an event that never crosses
        return np.nan
    return float(t[j - 1] + (level - s[j - 1]) / (s[j] - s[j - 1]) * (t[j] - t[j - 1]))


__all__ = ["EmergenceReport", "emergence_events", "emergence_report", "event_name", "initial_amplitudes"]
