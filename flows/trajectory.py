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
from .subspace import Bases, ReducedStates

DYNAMICS_KINDS = ("gf", "scaled_gf", "modified", "pgf", "gd", "ode")
"""Kinds of :class:`Dynamics`: gradient flow, ScaledGD's flow, a modified flow, a perturbed gradient
flow, gradient descent, or a user's own ODE (a plain ``fun(t, y)``)."""


@dataclass(frozen=True)
class Dynamics:
    """What moved the state of a trajectory.

    Parameters
    ----------
    kind : {"gf", "scaled_gf", "modified", "pgf", "gd", "ode"}
    variant : str, optional
        The GD scheme ("simultaneous", "alternating", "scaled", "minibatch"), or the scheme a
        modified flow models.
    step_size : float, optional
        η of gradient descent or of the scheme a modified flow models.
    form : {"residual", "additive"}, optional
        How a perturbation enters (perturbed flows and perturbed GD).
    perturbation : dict, optional
        The perturbation model's description (its ``describe()``).
    order : int, optional
        For a modified flow, the power of η to which it matches the scheme (1 or 2).

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
    order: int | None = None

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


@dataclass(frozen=True, eq=False)
class Accuracy:
    """How far a trajectory's saved states are from the exact solution, and how that was found.

    Attributes
    ----------
    estimate : ndarray, shape (T,)
        Estimated ‖x(tᵢ) − x_true(tᵢ)‖₂ at every saved time.
    how : str
        "reference": the distance to a second solve at tighter tolerances on the same times;
        "rounding": gradient descent's own rounding bound (GD has no truncation error against itself).
    reference : ndarray, shape (T, dim), or ReducedStates, optional
        The second solve's states (so that :meth:`Trajectory.error_estimate_of` can take any function
        of the state through the same comparison); a reduced run's reference is reduced too, in the
        same bases (so the estimate, ‖x − x_ref‖₂ = ‖z − z_ref‖₂, is the full state's).
    reference_method : str, optional
    reference_rtol, reference_atol : float, optional
        The second solve's method and tolerances.
    cost : float, optional
        Right-hand sides of the second solve per right-hand side of the solve.
    """

    estimate: np.ndarray
    how: str
    reference: np.ndarray | ReducedStates | None = None
    reference_method: str | None = None
    reference_rtol: float | None = None
    reference_atol: float | None = None
    cost: float | None = None

    def summary(self) -> dict:
        """JSON-friendly: how, the largest estimate, the reference's settings and the cost."""
        return {"how": self.how, "max_estimate": float(np.max(self.estimate)) if self.estimate.size else 0.0,
                "reference_method": self.reference_method, "reference_rtol": self.reference_rtol,
                "reference_atol": self.reference_atol, "cost": self.cost}


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
        Flat states. A reduced run (see :mod:`pgflow.flows.reduction`) is constructed with
        ``x=ReducedStates(bases, coordinates)`` and keeps only those (``reduced``); reading ``x`` then
        rebuilds every saved state at once (T × dim memory, kept for later reads), while
        :meth:`state`, :meth:`factors`, :meth:`states`, ``final``, :meth:`at`, the monitors and
        :meth:`save` rebuild one state at a time or none.
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
    event_states : dict of str -> ndarray, shape (occurrences, dim)
        The states at those times.
    accuracy : Accuracy, optional
        The estimated error of every saved state (``integrate(..., error_estimate=True)``; always for
        gradient descent).
    dense : callable, optional
        ``dense(t) -> x(t)``: the solver's continuous output (not saved by :meth:`save`).
    """

    t: np.ndarray
    x: np.ndarray = field(repr=False)  # a property (below): full states, rebuilt from a ReducedStates on demand
    layout: tuple
    monitors: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    dynamics: Dynamics | None = None
    stats: SolverStats | None = None
    events: Mapping = field(default_factory=dict)
    event_states: Mapping = field(default_factory=dict)
    accuracy: Accuracy | None = None
    dense: Callable | None = None

    def __post_init__(self):
        if not isinstance(self.monitors, MonitorValues):
            object.__setattr__(self, "monitors", MonitorValues(self.monitors))
        states = self.__dict__["_states"]
        if isinstance(states, ReducedStates) and tuple(states.bases.layout) != tuple(self.layout):
            raise ValueError(f"the bases of x are for the layout {states.bases.layout}, not {self.layout}")

    @property
    def reduced(self) -> ReducedStates | None:
        """The bases and reduced coordinates of a reduced run (None for a full one)."""
        states = self.__dict__["_states"]
        return states if isinstance(states, ReducedStates) else None

    @property
    def dim(self) -> int:
        """The size of a full state."""
        return sum(a * b for _, (a, b) in self.layout)

    def state(self, i: int) -> np.ndarray:
        """The saved state i, shape (dim,) (rebuilt alone for a reduced run)."""
        return np.asarray(self.__dict__["_states"][i])

    def states(self):
        """The saved states one at a time, each shape (dim,): a reduced run never holds more than one."""
        return iter(self.__dict__["_states"])

    def factors(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The factors (U, V) of saved state i, shapes (m, k) and (n, k) ((X, X) for a symmetric problem)."""
        x, blocks, start = self.state(i), [], 0
        for _, (a, b) in self.layout:
            blocks.append(x[start:start + a * b].reshape(a, b))
            start += a * b
        return blocks[0], blocks[-1]

    def _block(self, name: str) -> np.ndarray:
        start, reduced = 0, self.reduced
        for j, (block, (a, b)) in enumerate(self.layout):
            if block == name:
                if reduced is not None:  # lift this block alone: Q_U C over time, not the whole state
                    p = reduced.bases.reduced_layout[j][1][0]
                    offset = sum(c * d for _, (c, d) in reduced.bases.reduced_layout[:j])
                    return reduced.bases.matrices[j] @ reduced.coordinates[:, offset:offset + p * b].reshape(-1, p, b)
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
        return self.state(-1)

    @property
    def error_estimate(self) -> np.ndarray:
        """Estimated ‖x(tᵢ) − x_true(tᵢ)‖₂ at every saved time, shape (T,) (see :class:`Accuracy`)."""
        if self.accuracy is None:
            raise ValueError("this trajectory carries no error estimate: integrate with error_estimate=True "
                             "(or guarantee=True)")
        return self.accuracy.estimate

    def error_estimate_of(self, fn) -> np.ndarray:
        """Estimated error of a derived quantity ``fn(x)`` (e.g. the loss, or UVᵀ) at every saved time.

        With a reference solve: ‖fn(x(tᵢ)) − fn(x_ref(tᵢ))‖ (the same comparison as the state's).
        For gradient descent: the change of fn under a perturbation of the state as large as its
        rounding bound, in a random direction (first order).

        Parameters
        ----------
        fn : callable ``fn(x) -> float or ndarray``

        Returns
        -------
        ndarray, shape (T,)
        """
        accuracy = self.accuracy
        if accuracy is None:
            raise ValueError("this trajectory carries no error estimate: integrate with error_estimate=True")
        if accuracy.reference is not None:
            return np.array([np.linalg.norm(np.asarray(fn(a)) - np.asarray(fn(b)))
                             for a, b in zip(self.states(), accuracy.reference)])
        direction = np.random.default_rng(0).standard_normal(self.dim)
        direction /= np.linalg.norm(direction)
        return np.array([np.linalg.norm(np.asarray(fn(x + e * direction)) - np.asarray(fn(x - e * direction))) / 2
                         for x, e in zip(self.states(), accuracy.estimate)])

    def at(self, t) -> np.ndarray:
        """The state at time(s) ``t`` from the dense output, shape (dim,) or (len(t), dim).

        For a flow this is the solver's interpolant (DOP853's can be much less accurate than its
        steps: request the times through ``t_eval`` when accuracy matters). For GD it is the
        piecewise-linear interpolant of the saved iterates, exact at the saved steps.
        """
        t_arr = np.asarray(t, dtype=float)
        lo, hi = min(self.t[0], self.t[-1]), max(self.t[0], self.t[-1])  # a run may go backward in time
        span = 1e-12 * max(1.0, abs(lo), abs(hi))
        if np.any(t_arr < lo - span) or np.any(t_arr > hi + span) or not np.all(np.isfinite(t_arr)):
            raise ValueError(f"t must lie in [{lo}, {hi}], got {t}")
        if self.dense is None:
            raise ValueError("this trajectory has no dense output: integrate with dense_output=True to keep the "
                             "solver's interpolants (a trajectory loaded from a file has none)")
        return self.dense(t_arr)

    def record(self) -> dict:
        """Everything but the arrays, as JSON-friendly data: provenance, dynamics, statistics, events."""
        return {"meta": self.meta, "layout": self.layout,
                "dynamics": None if self.dynamics is None else self.dynamics.as_dict(),
                "stats": None if self.stats is None else self.stats.as_dict(),
                "accuracy": None if self.accuracy is None else self.accuracy.summary(),
                "events": {name: list(map(float, times)) for name, times in self.events.items()}}

    def save(self, path) -> str:
        """Write an ``.npz`` file, or a netCDF file when ``path`` ends in ``.nc``, atomically (temporary
        file in the same folder, then rename).

        Returns the path written (``.npz`` appended to any other name). The dense output is not saved.
        A reduced run's ``.npz`` file holds its bases (``basis/<block>``, rows × p), reduced states
        (``coordinates``, T × reduced_dim) and start (``start``, dim) instead of ``x``, and loads as a
        reduced run; its netCDF file holds the rebuilt states (T × dim). netCDF needs ``pip install 'pgflow[data]'`` (see
        :mod:`pgflow.flows.export`).
        """
        path = os.fspath(path)
        if path.endswith(".nc"):
            from .export import write_netcdf
            return write_netcdf(path, self._arrays())
        if not path.endswith(".npz"):
            path += ".npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **self._arrays(rebuild=False))
        return path

    def _arrays(self, rebuild: bool = True) -> dict:
        """What :meth:`save` writes: the arrays, and the :meth:`record` as JSON text under "meta".

        The states are ``x`` (T, dim), or with ``rebuild=False`` a reduced run's ``basis/<block>`` and
        ``coordinates``."""
        reduced = None if rebuild else self.reduced
        if reduced is None:
            states = {"x": self.x}
        else:
            states = {"coordinates": reduced.coordinates,
                      **{f"basis/{name}": Q for Q, (name, _) in zip(reduced.bases.matrices, self.layout)},
                      **({"start": reduced.start} if reduced.start is not None else {})}
        return {"t": self.t, **states, "meta": np.array(json.dumps(self.record())),
                **{f"monitor/{k}": v for k, v in self.monitors.items()},
                **{f"event_states/{k}": v for k, v in self.event_states.items()},
                **({"error_estimate": self.accuracy.estimate} if self.accuracy is not None else {})}

    def to_xarray(self):
        """The trajectory as an ``xarray.Dataset`` (needs ``pip install 'pgflow[data]'``).

        Dims ``time`` and ``row``/``col``/``rank`` (variables ``U`` (time, row, rank), ``V`` (time,
        col, rank)), or ``state`` for a state without factors; monitors as variables; meta, layout,
        dynamics, stats and events as JSON attributes. See :mod:`pgflow.flows.export`.
        """
        from .export import dataset_from_arrays
        return dataset_from_arrays(self._arrays())

    def to_pandas(self):
        """The monitors by time as a ``pandas.DataFrame`` (index ``time``; a monitor of q columns, such as
        ``singular_values``, as ``<name>_0`` … ``<name>_{q-1}``; needs ``pip install 'pgflow[data]'``)."""
        from .export import monitors_frame
        return monitors_frame(self.t, self.monitors, None if self.accuracy is None else self.accuracy.estimate,
                              self.record())

    @classmethod
    def load(cls, path) -> "Trajectory":
        """Read a file written by :meth:`save` (``.npz``, or netCDF when ``path`` ends in ``.nc``)."""
        path = os.fspath(path)
        if path.endswith(".nc"):
            from .export import read_netcdf
            opened = read_netcdf(path)  # the arrays, by the names np.load gives those of an .npz file
        else:
            opened = np.load(path, allow_pickle=False)
        with opened as data:
            head = json.loads(str(data["meta"]))
            monitors = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("monitor/")}
            layout = tuple((name, tuple(shape)) for name, shape in head["layout"])
            dynamics = None if head.get("dynamics") is None else Dynamics(**head["dynamics"])
            stats = None if head.get("stats") is None else SolverStats(**head["stats"])
            events = {name: tuple(times) for name, times in head.get("events", {}).items()}
            event_states = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("event_states/")}
            accuracy = None
            if head.get("accuracy") is not None:  # the reference states are not saved: the estimate is
                summary = {k: v for k, v in head["accuracy"].items() if k != "max_estimate"}
                accuracy = Accuracy(estimate=data["error_estimate"], **summary)
            if "coordinates" in data.files:  # a reduced run: its bases and reduced states
                x = ReducedStates(Bases(tuple(data[f"basis/{name}"] for name, _ in layout), layout),
                                  data["coordinates"], data["start"] if "start" in data.files else None)
            else:
                x = data["x"]
            return cls(t=data["t"], x=x, layout=layout, monitors=monitors, meta=head["meta"],  # type: ignore[arg-type]
                       dynamics=dynamics, stats=stats, events=events, event_states=event_states, accuracy=accuracy)


def _full_states(self) -> np.ndarray:
    states = self.__dict__["_states"]
    if not isinstance(states, ReducedStates):
        return states
    if "_rebuilt" not in self.__dict__:  # rebuilt once, on the first read: later reads are free
        self.__dict__["_rebuilt"] = np.asarray(states)
    return self.__dict__["_rebuilt"]


def _set_states(self, states) -> None:
    self.__dict__["_states"] = states


# ``x`` is a dataclass field (a constructor argument, kept by dataclasses.replace) read through this property,
# so a reduced run can hold its states as a ReducedStates and still hand out ordinary arrays
Trajectory.x = property(_full_states, _set_states,  # type: ignore[assignment]  # read as the ndarray annotated
                        doc="Flat states, shape (T, dim) (see the class docstring).")
