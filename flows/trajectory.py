"""The result of every run, continuous or discrete: states over time, what moved them, and provenance.

A :class:`Trajectory` carries three typed records that code reads (never strings to parse):

- :class:`Dynamics`: what moved the state (gradient flow, a perturbed or modified flow, gradient
  descent and its variant, the step size, the perturbation);
- :class:`SolverStats`: what it cost (method, evaluations, steps, wall time);
- ``events``: the times at which each event was located;

and ``meta``, a JSON-friendly dict of provenance (problem, sizes, seeds, tolerances, version).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from .files import atomic_path

DYNAMICS_KINDS = ("gf", "scaled_gf", "modified", "pgf", "gd")
"""Kinds of :class:`Dynamics`: gradient flow, ScaledGD's flow, a modified flow, a perturbed gradient
flow, gradient descent."""


@dataclass(frozen=True)
class Dynamics:
    """What moved the state of a trajectory.

    Parameters
    ----------
    kind : {"gf", "scaled_gf", "modified", "pgf", "gd"}
    variant : str, optional
        The GD scheme ("simultaneous", "alternating", "scaled", "minibatch"), or the scheme a
        modified flow models.
    step_size : float, optional
        η of gradient descent or of the scheme a modified flow models.
    form : {"residual", "additive"}, optional
        How a perturbation enters (perturbed flows and perturbed GD).
    perturbation : dict, optional
        The perturbation model's description (its ``describe()``).

    Examples
    --------
    >>> Dynamics("pgf", form="residual").name
    'pgf_residual'
    """

    kind: str
    variant: str | None = None
    step_size: float | None = None
    form: str | None = None
    perturbation: Mapping | None = None

    def __post_init__(self):
        if self.kind not in DYNAMICS_KINDS:
            raise ValueError(f"kind must be one of {DYNAMICS_KINDS}, got {self.kind!r}")

    @property
    def name(self) -> str:
        """The dynamics' name in the claim language and in run configurations: the kind, except
        "pgf_residual" / "pgf_additive" for a perturbed flow."""
        return f"pgf_{self.form}" if self.kind == "pgf" else self.kind

    @property
    def perturbed(self) -> bool:
        return self.perturbation is not None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SolverStats:
    """What a run cost.

    Attributes
    ----------
    method : str
        The ``solve_ivp`` method that ran (for gradient descent: "gradient_descent").
    nfev : int
        Right-hand side evaluations counted by the solver (GD: gradient evaluations).
    steps : int
        Accepted solver steps (GD: steps taken).
    wall_time : float
        Seconds spent stepping (monitors excluded).
    njev, nlu : int
        Jacobian evaluations and LU decompositions (implicit methods).
    rhs_calls : int
        Every right-hand side call, including those of finite-difference Jacobians.
    monitor_time : float
        Seconds spent evaluating monitors on the saved states.
    method_reason : str, optional
        Why ``method="auto"`` chose ``method``.
    t_reached : float, optional
        The last time the solver reached (the end, or where it stopped or failed).
    stopped_at : float, optional
        The time at which a terminal event stopped the run.
    member_error : float, optional
        For a member of a batch: its largest scaled local error estimate over the accepted steps.
    """

    method: str
    nfev: int
    steps: int
    wall_time: float
    njev: int = 0
    nlu: int = 0
    rhs_calls: int = 0
    monitor_time: float = 0.0
    method_reason: str | None = None
    t_reached: float | None = None
    stopped_at: float | None = None
    member_error: float | None = None

    def replace(self, **changes) -> "SolverStats":
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def combined(cls, parts) -> "SolverStats":
        """The statistics of consecutive pieces of one run: counts and times summed, the methods
        listed once each, the last piece's end."""
        parts = list(parts)
        methods = list(dict.fromkeys(p.method for p in parts))
        reasons = list(dict.fromkeys(p.method_reason for p in parts if p.method_reason))
        total = {name: sum(getattr(p, name) for p in parts)
                 for name in ("nfev", "steps", "wall_time", "njev", "nlu", "rhs_calls", "monitor_time")}
        return cls(method=methods[0] if len(methods) == 1 else "mixed: " + ", ".join(methods),
                   method_reason="; ".join(reasons) or None, t_reached=parts[-1].t_reached,
                   stopped_at=parts[-1].stopped_at, **total)


RENAMED_MONITORS = {"imbalance": "imbalance_fro", "signal_U": "signal_U_min", "signal_V": "signal_V_min",
                    "noise_U": "noise_U_norm", "noise_V": "noise_V_norm"}
"""Monitor names of earlier versions -> their names now (the old names meant other numbers than the
symbolic quantities of the same name)."""


class MonitorValues(dict):
    """Monitor values by name, shape (T,) or (T, q) each; an old name raises a KeyError naming the new one."""

    def __missing__(self, name):
        if name in RENAMED_MONITORS:
            raise KeyError(f"monitor {name!r} is now called {RENAMED_MONITORS[name]!r} (the symbolic quantity "
                           f"{name!r} is a different number)")
        raise KeyError(name)


class PiecewiseLinear:
    """x(t) interpolated linearly between saved states: GD's continuous-time embedding."""

    def __init__(self, t: np.ndarray, x: np.ndarray):
        self.t, self.x = t, x

    def __call__(self, t):
        t = np.asarray(t, dtype=float)
        i = np.clip(np.searchsorted(self.t, t, side="right") - 1, 0, len(self.t) - 2)
        w = ((t - self.t[i]) / (self.t[i + 1] - self.t[i]))[..., None]
        return (1 - w) * self.x[i] + w * self.x[i + 1]


@dataclass(frozen=True, eq=False)
class Trajectory:
    """States ``x`` at times ``t`` (time-first), monitors on those states, and what made them.

    Attributes
    ----------
    t : ndarray, shape (T,)
        Times (for GD: k·η at the saved steps k).
    x : ndarray, shape (T, dim)
        Flat states.
    layout : tuple of (name, (rows, cols))
        The factor blocks of ``x`` (from the problem), so ``U``, ``V`` work after :meth:`load`.
    monitors : dict of str -> ndarray, shape (T,) or (T, q)
    meta : dict
        Provenance: problem, sizes, seeds, tolerances or step size, version (JSON-friendly).
    dynamics : Dynamics, optional
        What moved the state.
    stats : SolverStats, optional
        What the run cost.
    events : dict of str -> tuple of float
        The times at which each event was located, by event name.
    dense : callable, optional
        ``dense(t) -> x(t)``: the solver's continuous output (not saved by :meth:`save`).
    """

    t: np.ndarray
    x: np.ndarray
    layout: tuple
    monitors: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    dynamics: Dynamics | None = None
    stats: SolverStats | None = None
    events: Mapping = field(default_factory=dict)
    dense: Callable | None = None

    def __post_init__(self):
        if not isinstance(self.monitors, MonitorValues):
            object.__setattr__(self, "monitors", MonitorValues(self.monitors))

    def _block(self, name: str) -> np.ndarray:
        start = 0
        for block, (a, b) in self.layout:
            if block == name:
                return self.x[:, start:start + a * b].reshape(-1, a, b)
            start += a * b
        raise AttributeError(f"this trajectory has no factor {name!r}; its factors are "
                             f"{[n for n, _ in self.layout]}")

    @property
    def U(self) -> np.ndarray:
        """U over time, shape (T, m, k) (X for a symmetric problem)."""
        return self._block(self.layout[0][0])

    @property
    def V(self) -> np.ndarray:
        """V over time, shape (T, n, k) (X for a symmetric problem)."""
        return self._block(self.layout[-1][0])

    @property
    def final(self) -> np.ndarray:
        """The last saved state, shape (dim,)."""
        return self.x[-1]

    def at(self, t) -> np.ndarray:
        """The state at time(s) ``t`` from the dense output, shape (dim,) or (len(t), dim).

        For a flow this is the solver's interpolant (DOP853's can be much less accurate than its
        steps: request the times through ``t_eval`` when accuracy matters). For GD it is the
        piecewise-linear interpolant of the saved iterates, exact at the saved steps.
        """
        t_arr = np.asarray(t, dtype=float)
        lo, hi = self.t[0], self.t[-1]
        span = 1e-12 * max(1.0, abs(hi))
        if np.any(t_arr < lo - span) or np.any(t_arr > hi + span) or not np.all(np.isfinite(t_arr)):
            raise ValueError(f"t must lie in [{lo}, {hi}], got {t}")
        if self.dense is None:
            raise ValueError("this trajectory has no dense output (loaded from a file, or dense_output=False)")
        return self.dense(t_arr)

    def record(self) -> dict:
        """Everything but the arrays, as JSON-friendly data: provenance, dynamics, statistics, events."""
        return {"meta": self.meta, "layout": self.layout,
                "dynamics": None if self.dynamics is None else self.dynamics.as_dict(),
                "stats": None if self.stats is None else self.stats.as_dict(),
                "events": {name: list(map(float, times)) for name, times in self.events.items()}}

    def save(self, path) -> str:
        """Write an ``.npz`` file atomically (temporary file in the same folder, then rename).

        Returns the path written. The dense output is not saved.
        """
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        arrays = {"t": self.t, "x": self.x, "meta": np.array(json.dumps(self.record())),
                  **{f"monitor/{k}": v for k, v in self.monitors.items()}}
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        return path

    @classmethod
    def load(cls, path) -> "Trajectory":
        """Read a file written by :meth:`save`."""
        with np.load(os.fspath(path), allow_pickle=False) as data:
            head = json.loads(str(data["meta"]))
            monitors = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("monitor/")}
            layout = tuple((name, tuple(shape)) for name, shape in head["layout"])
            dynamics = None if head.get("dynamics") is None else Dynamics(**head["dynamics"])
            stats = None if head.get("stats") is None else SolverStats(**head["stats"])
            events = {name: tuple(times) for name, times in head.get("events", {}).items()}
            return cls(t=data["t"], x=data["x"], layout=layout, monitors=monitors, meta=head["meta"],
                       dynamics=dynamics, stats=stats, events=events)
