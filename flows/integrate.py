"""Integrate a flow with any of scipy's ``solve_ivp`` methods, with exact grid output and provenance.

Why not call ``solve_ivp`` directly: its ``t_eval`` states come from the step interpolant, and
DOP853's interpolant is up to 10⁴× less accurate than its steps on these flows. Here the explicit
Runge–Kutta methods, Radau and BDF *step onto* every requested time (the step that would cross a
grid point is shortened to end on it), so a state on the grid is as accurate as a step. LSODA's
Fortran core cannot be steered that way; its Nordsieck interpolant is of the method's own order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.integrate import BDF, DOP853, LSODA, RK23, RK45, OdeSolution, Radau
from scipy.optimize import brentq

from . import monitors as _monitors
from ._checks import as_float_array, positive
from .trajectory import Trajectory, package_version

METHODS = {"RK23": RK23, "RK45": RK45, "DOP853": DOP853, "Radau": Radau, "BDF": BDF, "LSODA": LSODA}
IMPLICIT = frozenset({"Radau", "BDF", "LSODA"})


class IntegrationError(RuntimeError):
    """A solve that failed: scipy's message, the time reached, and the trajectory up to there."""

    def __init__(self, message: str, t_reached: float, partial: Trajectory):
        super().__init__(message)
        self.t_reached = t_reached
        self.partial = partial


@dataclass(frozen=True)
class Event:
    """A zero of ``fun(t, x)`` located during integration.

    Parameters
    ----------
    fun : callable ``fun(t, x) -> float``
    terminal : bool
        Stop the integration at the first zero.
    direction : float
        Only zeros crossed from negative to positive (> 0), positive to negative (< 0), or both (0).
    name : str, optional
        Key of the event's times in ``Trajectory.meta["events"]``; defaults to ``fun.__name__``.
    """

    fun: Callable[[float, np.ndarray], float]
    terminal: bool = False
    direction: float = 0.0
    name: str | None = None

    @property
    def key(self) -> str:
        return self.name or getattr(self.fun, "__name__", "event")


def loss_below(problem, eps: float) -> Event:
    """Terminal event: stop when f(x) falls to ``eps``."""
    eps = positive(eps, "eps")

    def loss_minus_eps(t, x):
        return float(problem.loss(x)) - eps
    return Event(loss_minus_eps, terminal=True, direction=-1.0, name=f"loss_below_{eps:g}")


def _events(events) -> list[Event]:
    out = []
    for i, ev in enumerate(events):
        if isinstance(ev, Event):
            out.append(ev)
        elif callable(ev):
            out.append(Event(ev))
        else:
            raise TypeError(f"events[{i}] must be a callable fun(t, x) or an Event, got {type(ev).__name__}")
    return out


def _time_grid(t_eval, t0: float, t_end: float) -> np.ndarray | None:
    if t_eval is None:
        return None
    grid = as_float_array(t_eval, "t_eval", ndim=1)
    if grid.size == 0 or np.any(np.diff(grid) <= 0):
        raise ValueError("t_eval must be a non-empty, strictly increasing 1-D array")
    if grid[0] < t0 or grid[-1] > t_end:
        raise ValueError(f"t_eval must lie in [t_start, t_end] = [{t0}, {t_end}], got [{grid[0]}, {grid[-1]}]")
    return grid


def integrate(flow, x0, t_end: float, *, method: str = "DOP853", rtol: float = 1e-8, atol: float = 1e-10,
              t_eval=None, events=(), monitors=None, dense_output: bool = True, jacobian: bool = True,
              max_step: float = np.inf, first_step: float | None = None, t_start: float = 0.0,
              provenance: dict | None = None) -> Trajectory:
    """Integrate ẋ = flow(t, x) from ``x0`` over [t_start, t_end].

    Parameters
    ----------
    flow : flow object
        E.g. :class:`flows.GradientFlow`; see :mod:`flows.dynamics` for the protocol.
    x0 : array_like, shape (dim,)
        Initial state (``problem.pack(U0, V0)`` or an initializer from :mod:`flows.init`).
    t_end : float
        Final time, > t_start.
    method : {"RK23", "RK45", "DOP853", "Radau", "BDF", "LSODA"}
        scipy's solver; the implicit ones receive ``flow.jac`` unless ``jacobian=False``.
    rtol, atol : float
        Relative and absolute tolerances, > 0.
    t_eval : array_like, shape (T,), optional
        Times to save. Default: every solver step. Grid states are exact steps (except LSODA).
    events : sequence of callables ``fun(t, x)`` or :class:`Event`
        Zeros are located on the dense output; their times go to ``meta["events"][name]``.
    monitors : dict of name -> ``fn(t, x)``, optional
        Evaluated on the saved states after the solve. Default: :func:`flows.monitors.default`.
        The flow's own monitors (``flow.monitors()``) are always added.
    dense_output : bool
        Keep the solver's interpolants for :meth:`Trajectory.at` (memory ∝ steps × dim).
    jacobian : bool
        Pass the analytic Jacobian to implicit methods (False: scipy's finite differences).
    max_step, first_step : float
        Passed to the scipy solver.
    t_start : float
        Initial time.
    provenance : dict, optional
        Extra entries for ``meta`` (e.g. the seeds that made ``x0``).

    Returns
    -------
    Trajectory
        ``meta`` holds the problem, method, tolerances, nfev/njev/nlu/steps, wall time and version.

    Raises
    ------
    IntegrationError
        The solver failed; carries scipy's message, ``t_reached`` and the ``partial`` trajectory.

    Examples
    --------
    >>> from flows import MatrixFactorization, GradientFlow, init
    >>> p = MatrixFactorization.random(m=6, n=5, rank=2, width=2, seed=0)
    >>> run = integrate(GradientFlow(p), init.gaussian(p, 0.1, seed=1), 20.0, t_eval=[0, 10, 20])
    >>> run.x.shape, bool(run.monitors["loss"][-1] < 1e-8)
    ((3, 20), True)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    problem = flow.problem
    x0 = problem.check_state(x0)
    if x0.ndim != 1:
        raise ValueError(f"x0 must have shape ({problem.dim},), got {x0.shape}")
    t0, t_end = float(t_start), float(t_end)
    if not (np.isfinite(t0) and np.isfinite(t_end) and t_end > t0):
        raise ValueError(f"t_end must be finite and > t_start = {t0}, got {t_end}")
    rtol = positive(rtol, "rtol")
    atol = positive(atol, "atol")
    grid = _time_grid(t_eval, t0, t_end)
    evs = _events(events)
    mons = _monitors.check(_monitors.default(problem) if monitors is None else monitors)
    mons.update(flow.monitors())

    kwargs = {"rtol": rtol, "atol": atol, "max_step": max_step}
    if first_step is not None:
        kwargs["first_step"] = positive(first_step, "first_step")
    use_jac = method in IMPLICIT and jacobian and getattr(flow, "jac", None) is not None
    if use_jac:
        kwargs["jac"] = flow.jac
    # Steering onto the grid works for every solver that clips its step at t_bound in Python.
    steer = grid is not None and method != "LSODA"
    next_i = 0
    if grid is not None and grid[0] == t0:
        next_i = 1
    bound = grid[next_i] if steer and next_i < len(grid) else t_end

    rhs = _Counted(flow)
    start = time.perf_counter()
    solver = METHODS[method](rhs, t0, x0, bound, **kwargs)
    ts, xs = ([t0], [x0.copy()]) if grid is None or grid[0] == t0 else ([], [])
    step_ts, interpolants = [t0], []
    g_old = [float(ev.fun(t0, x0)) for ev in evs]
    event_times = {ev.key: [] for ev in evs}
    n_steps, stop = 0, False
    need_sol = dense_output or bool(evs) or (grid is not None and not steer)

    def partial_result():
        return _result(problem, flow, ts, xs, mons, None, event_times, meta)

    meta = {**problem.describe(), **flow.describe(), "method": method, "rtol": rtol, "atol": atol,
            "t_start": t0, "t_end": t_end, "jacobian": "analytic" if use_jac else
            ("finite differences" if method in IMPLICIT else "not used"), "version": package_version(),
            **(provenance or {})}

    while not stop:
        message = solver.step()
        if solver.status == "failed":
            meta.update(_stats(solver, rhs, n_steps, time.perf_counter() - start))
            raise IntegrationError(f"{method} failed at t = {solver.t:.9g} of t_end = {t_end:g}: {message}",
                                   solver.t, partial_result())
        n_steps += 1
        t_old, t_new, x_new = solver.t_old, solver.t, solver.y
        sol = solver.dense_output() if need_sol else None
        if sol is not None and dense_output:
            step_ts.append(t_new)
            interpolants.append(sol)

        t_stop = t_new
        for j, ev in enumerate(evs):
            g_new = float(ev.fun(t_new, x_new))
            crossed = (g_old[j] < 0 <= g_new and ev.direction >= 0) or (g_old[j] > 0 >= g_new and ev.direction <= 0)
            if crossed:
                if g_new == 0:
                    root = t_new
                else:
                    root = brentq(lambda s: ev.fun(s, sol(s)), t_old, t_new, xtol=4 * np.finfo(float).eps * abs(t_new))
                event_times[ev.key].append(root)
                if ev.terminal:
                    stop, t_stop = True, min(t_stop, root)
            g_old[j] = g_new

        if grid is None:
            ts.append(t_stop)
            xs.append(x_new.copy() if t_stop == t_new else sol(t_stop))
        else:
            while next_i < len(grid) and grid[next_i] <= t_stop:
                ts.append(grid[next_i])
                xs.append(x_new.copy() if grid[next_i] == t_new else sol(grid[next_i]))
                next_i += 1
        if stop or (solver.status == "finished" and t_new >= t_end):
            break
        if steer and solver.status == "finished":
            solver.t_bound = grid[next_i] if next_i < len(grid) else t_end
            solver.status = "running"

    meta.update(_stats(solver, rhs, n_steps, time.perf_counter() - start))
    if stop:
        meta["stopped_by_event_at"] = t_stop
    dense = None
    if dense_output and interpolants:
        if stop:
            step_ts[-1] = t_stop
        dense = _Dense(OdeSolution(step_ts, interpolants))
    return _result(problem, flow, ts, xs, mons, dense, event_times, meta)


class _Dense:
    """Adapts scipy's OdeSolution to time-first output: (dim,) or (T, dim)."""

    def __init__(self, sol: OdeSolution):
        self.sol = sol

    def __call__(self, t):
        out = self.sol(t)
        return out.T if np.ndim(t) else out


class _Counted:
    """Counts every right-hand-side call: scipy's nfev misses those of its finite-difference Jacobians."""

    def __init__(self, flow):
        self.flow, self.calls = flow, 0

    def __call__(self, t, x):
        self.calls += 1
        return self.flow(t, x)


def _stats(solver, rhs: _Counted, n_steps: int, wall: float) -> dict:
    return {"nfev": int(solver.nfev), "njev": int(solver.njev), "nlu": int(solver.nlu), "rhs_calls": rhs.calls,
            "steps": n_steps, "t_reached": float(solver.t), "wall_time": wall}


def _result(problem, flow, ts, xs, mons, dense, event_times, meta) -> Trajectory:
    t = np.asarray(ts, dtype=float)
    x = np.asarray(xs, dtype=float).reshape(len(ts), problem.dim)
    start = time.perf_counter()
    values = _monitors.evaluate(mons, t, x)
    meta = {**meta, "monitor_time": time.perf_counter() - start,
            "events": {k: list(map(float, v)) for k, v in event_times.items()}}
    return Trajectory(t=t, x=x, layout=problem.layout, monitors=values, meta=meta, dense=dense)
