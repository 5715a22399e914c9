"""Integrate a flow with any of scipy's ``solve_ivp`` methods, with exact grid output and provenance.

Why not call ``solve_ivp`` directly: its ``t_eval`` states come from the step interpolant, and
DOP853's interpolant is up to 10⁴× less accurate than its steps on these flows (see ``docs/performance.md``). Here the explicit
Runge–Kutta methods, Radau and BDF *step onto* every requested time (the step that would cross a
grid point is shortened to end on it), so a state on the grid is as accurate as a step; a grid much
denser than the solver's own steps therefore costs one step per grid point. LSODA's Fortran core
cannot be steered that way; its Nordsieck interpolant is of the method's own order.

``method="auto"`` chooses from the stiffness of the flow (see :func:`choose_method`), and a batch of
initial states (B, dim) is integrated as one vectorized system. RK23, RK45 and DOP853 run as
:mod:`pgflow.flows.rk`'s in-place versions of scipy's classes: the same steps, without the temporaries.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse
from scipy.integrate import BDF, DOP853, LSODA, RK23, RK45, OdeSolution, Radau
from scipy.optimize import brentq

from . import blas
from . import monitors as _monitors
from .checks import positive, time_grid
from .rk import IN_PLACE
from .trajectory import SolverStats, Trajectory
from .version import package_version

METHODS = {"RK23": RK23, "RK45": RK45, "DOP853": DOP853, "Radau": Radau, "BDF": BDF, "LSODA": LSODA}
IMPLICIT = frozenset({"Radau", "BDF", "LSODA"})

# method="auto" thresholds, from benchmarks/stiff.py and benchmarks/auto_method.py on 2 cores:
# above this ratio of fast to slow rate, LSODA with the analytic Jacobian beats DOP853 (3-20x) ...
STIFFNESS_RATIO = 50.0
# ... unless the run is so short that an explicit solver needs only a few hundred stability-bound steps
STIFF_SPAN = 500.0
# a dense Jacobian beyond this dimension costs more memory and LU time than stiffness saves
DENSE_JACOBIAN_LIMIT = 5000


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
        Key of the event's times in ``Trajectory.events``; defaults to ``fun.__name__``.
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


def stiffness(problem, x0) -> tuple[float, float]:
    """Cheap estimates of the fastest and slowest rates of the flow started at ``x0``.

    The fast rate bounds λ_max(∇²f) along the whole run: max(‖U₀‖² + ‖V₀‖², ‖D‖₂ + 2σ₁) with the
    imbalance D = U₀ᵀU₀ − V₀ᵀV₀, which gradient flow conserves (at a minimum λ_max = ‖U‖² + ‖V‖²).
    The slow rate is σ_r, the smallest singular value of the target, which sets the time scale of the
    last mode to be learned.

    Parameters
    ----------
    problem : problem object
    x0 : ndarray, shape (dim,) or (B, dim)

    Returns
    -------
    fast, slow : float
        For a batch, the fast rate is the largest over the members.
    """
    U, V = problem.factors(x0)
    D = np.swapaxes(U, -1, -2) @ U - np.swapaxes(V, -1, -2) @ V
    spectral = lambda A: np.linalg.norm(A, 2, axis=(-2, -1))  # noqa: E731
    sigma = problem.target.sigma
    fast = np.maximum(spectral(U) ** 2 + spectral(V) ** 2, spectral(D) + 2 * sigma[0])
    return float(np.max(fast)), float(sigma[-1])


def choose_method(flow, x0, t_span: float) -> tuple[str, str]:
    """The method ``method="auto"`` uses, and why.

    Stiff (fast/slow rate > ``STIFFNESS_RATIO`` and fast rate × span > ``STIFF_SPAN``): LSODA with the
    analytic Jacobian (BDF with a sparse block-diagonal Jacobian for a batch), unless the dense
    Jacobian would exceed ``DENSE_JACOBIAN_LIMIT`` rows or the flow has no Jacobian. Otherwise
    DOP853, the fastest explicit method on these flows at every tolerance measured.

    Returns
    -------
    method, reason : str
    """
    fast, slow = stiffness(flow.problem, x0)
    ratio = fast / slow
    summary = f"fast rate {fast:.3g}, slow rate {slow:.3g}, ratio {ratio:.3g}, fast rate x span {fast * t_span:.3g}"
    if ratio <= STIFFNESS_RATIO or fast * t_span <= STIFF_SPAN:
        return "DOP853", f"not stiff ({summary})"
    if getattr(flow, "jac", None) is None:
        return "DOP853", f"stiff ({summary}) but the flow has no analytic Jacobian"
    if flow.problem.dim > DENSE_JACOBIAN_LIMIT:
        return "DOP853", f"stiff ({summary}) but dim {flow.problem.dim} is too large for a dense Jacobian"
    if np.ndim(x0) == 2:
        return "BDF", f"stiff ({summary}); batch: BDF with a block-diagonal sparse Jacobian"
    return "LSODA", f"stiff ({summary})"


class _System:
    """The flow as scipy sees it: flat state, a batch stacked into one vector, every call counted.

    scipy's nfev misses the right-hand sides of its finite-difference Jacobians; ``calls`` does not.
    """

    def __init__(self, flow, shape: tuple[int, ...]):
        self.flow, self.shape, self.calls = flow, shape, 0
        self._writes_out = "out" in inspect.signature(flow.__call__).parameters

    def __call__(self, t, y):
        self.calls += 1
        return self.flow(t, y.reshape(self.shape)).reshape(-1)

    def into(self, t, y, out):
        """The right-hand side written into ``out`` (the explicit solvers' stage rows)."""
        self.calls += 1
        if self._writes_out:
            target = out.reshape(self.shape)
            result = self.flow(t, y.reshape(self.shape), out=target)
            if result is not target:  # a flow that takes out= but returns a fresh array
                target[...] = result
        else:
            out[:] = self.flow(t, y.reshape(self.shape)).reshape(-1)

    def jac(self, t, y):
        if len(self.shape) == 1:
            return self.flow.jac(t, y)
        return scipy.sparse.block_diag([self.flow.jac(t, x) for x in y.reshape(self.shape)], format="csc")


class _Steps:
    """What the stepping loop produced: saved states, interpolants, events, and how it ended."""

    def __init__(self):
        self.ts, self.ys, self.step_ts, self.interpolants = [], [], [], []
        self.event_times, self.stopped_at, self.failure, self.n_steps = {}, None, None, 0
        self.member_error = self.t_finite = None


def integrate(flow, x0, t_end: float, *, method: str = "auto", rtol: float = 1e-8, atol: float = 1e-10,
              t_eval=None, events=(), monitors=None, dense_output: bool = True, jacobian: bool = True,
              blas_threads: int | None = 1, max_step: float = np.inf, first_step: float | None = None,
              t_start: float = 0.0, provenance: dict | None = None):
    """Integrate ẋ = flow(t, x) from ``x0`` over [t_start, t_end].

    Parameters
    ----------
    flow : flow object
        E.g. :class:`pgflow.flows.dynamics.GradientFlow`; see :mod:`pgflow.flows.dynamics` for the protocol.
    x0 : array_like, shape (dim,) or (B, dim)
        Initial state (``problem.pack(U0, V0)`` or an initializer from :mod:`pgflow.flows.init`), or a batch
        of B initial states, integrated as one vectorized system of size B·dim. The trade-off: the
        batch shares one step-size sequence, so every member takes the steps its most demanding
        member needs (the explicit methods accept a step only when each member's own error estimate,
        scipy's norm over that member alone, is within tolerance). That costs some extra steps (about
        15% for 64 Gaussian seeds) and buys one Python step driving B right-hand sides: about 10× faster
        than B separate solves at dim 200 (``python -m benchmarks batch``). ``stats.member_error``
        reports each member's largest scaled local error estimate over the accepted steps (≤ 1).
        The implicit methods control the norm of the whole batch.
    t_end : float
        Final time, > t_start.
    method : {"auto", "RK23", "RK45", "DOP853", "Radau", "BDF", "LSODA"}
        scipy's solver; the implicit ones receive ``flow.jac`` unless ``jacobian=False``. "auto"
        chooses by :func:`choose_method` and records the choice and its reason in ``stats``.
    rtol, atol : float
        Relative and absolute tolerances, > 0.
    t_eval : array_like, shape (T,), optional
        Times to save. Default: every solver step. Grid states are exact steps (except LSODA).
    events : sequence of callables ``fun(t, x)`` or :class:`Event`
        Zeros are located on the dense output; their times go to ``Trajectory.events[name]``. Not with
        a batch.
    monitors : dict of name -> ``fn(t, x)``, optional
        Evaluated on the saved states after the solve. Default: :func:`pgflow.flows.monitors.default`.
        The flow's own monitors (``flow.monitors()``) are always added.
    dense_output : bool
        Keep the solver's interpolants for :meth:`Trajectory.at` (memory ∝ steps × dim; DOP853 pays
        3 extra right-hand sides per step for them).
    jacobian : bool
        Pass the analytic Jacobian to implicit methods (False: scipy's finite differences).
    blas_threads : int or None
        BLAS threads during the solve (default 1: never slower here, much faster when the other
        cores are busy; see :mod:`pgflow.flows.blas`); None leaves BLAS alone.
    max_step, first_step : float
        Passed to the scipy solver.
    t_start : float
        Initial time.
    provenance : dict, optional
        Extra entries for ``meta`` (e.g. the seeds that made ``x0``).

    Returns
    -------
    Trajectory, or list of B Trajectory for a batch
        ``stats`` holds the method (and why, for "auto"), nfev/njev/nlu/steps, rhs_calls and wall
        time; ``dynamics`` the flow's record; ``events`` the located events; ``meta`` the problem,
        the tolerances, the span and the version.

    Raises
    ------
    IntegrationError
        The solver failed; carries scipy's message, ``t_reached`` and the ``partial`` trajectory.

    Examples
    --------
    >>> from pgflow.flows import MatrixFactorization, GradientFlow, init
    >>> p = MatrixFactorization.random(m=6, n=5, rank=2, width=2, seed=0)
    >>> run = integrate(GradientFlow(p), init.gaussian(p, 0.1, seed=1), 20.0, t_eval=[0, 10, 20])
    >>> run.x.shape, bool(run.monitors["loss"][-1] < 1e-8), run.stats.method
    ((3, 22), True, 'DOP853')
    """
    if method != "auto" and method not in METHODS:
        raise ValueError(f"method must be 'auto' or one of {sorted(METHODS)}, got {method!r}")
    problem = flow.problem
    x0 = problem.check_state(x0)
    t0, t_end = float(t_start), float(t_end)
    if not (np.isfinite(t0) and np.isfinite(t_end) and t_end > t0):
        raise ValueError(f"t_end must be finite and > t_start = {t0}, got {t_end}")
    rtol = positive(rtol, "rtol")
    atol = positive(atol, "atol")
    if not max_step > 0:
        raise ValueError(f"max_step must be positive (inf: no limit), got {max_step}")
    grid = time_grid(t_eval, t0, t_end)
    evs = _events(events)
    batch = x0.shape[0] if x0.ndim == 2 else None
    if batch and evs:
        raise ValueError("events are not supported with a batch of initial states; integrate members separately")
    mons = _monitors.check(_monitors.default(problem) if monitors is None else monitors)
    mons.update(flow.monitors())
    requested = method
    reason = None
    if method == "auto":
        method, reason = choose_method(flow, x0, t_end - t0)
    if batch and method == "LSODA":
        raise ValueError("method='LSODA' needs a dense Jacobian and cannot run a batch; use 'BDF' or 'Radau'")

    system = _System(flow, x0.shape)
    kwargs = {"rtol": rtol, "atol": atol, "max_step": max_step}
    if first_step is not None:
        kwargs["first_step"] = positive(first_step, "first_step")
    use_jac = method in IMPLICIT and jacobian and getattr(flow, "jac", None) is not None
    if use_jac:
        kwargs["jac"] = system.jac
    meta = {**problem.describe(), **flow.describe(), "method_requested": requested, "rtol": rtol, "atol": atol,
            "t_start": t0, "t_end": t_end,
            "jacobian": "analytic" if use_jac else ("finite differences" if method in IMPLICIT else "not used"),
            "blas_threads": blas_threads, "t_eval_points": None if grid is None else len(grid),
            **({"max_step": max_step} if np.isfinite(max_step) else {}),
            **({"first_step": kwargs["first_step"]} if "first_step" in kwargs else {}),
            "version": package_version(), **(provenance or {})}
    if batch:
        meta["batch_size"] = batch

    start = time.perf_counter()
    # an overflow in a stage sum is not a warning but a failed solve, reported with the step where it happened
    with blas.limit(blas_threads), np.errstate(over="ignore", invalid="ignore"):
        run = _march(METHODS[method], system, x0.reshape(-1), t0, t_end, grid, evs, kwargs,
                     dense_output, steer=grid is not None and method != "LSODA", batch=batch)
    stats = SolverStats(method=method, method_reason=reason, nfev=run.nfev, njev=run.njev, nlu=run.nlu,
                        rhs_calls=system.calls, steps=run.n_steps, t_reached=run.t_reached,
                        stopped_at=run.stopped_at, wall_time=time.perf_counter() - start)
    events = {k: tuple(map(float, v)) for k, v in run.event_times.items()}
    dense = None
    if dense_output and run.interpolants and run.failure is None:
        dense = _Dense(OdeSolution(run.step_ts, run.interpolants))
    results = _results(problem, run, mons, dense, meta, batch, flow, stats, events)
    if run.failure is not None:
        raise IntegrationError(f"{method} failed at t = {run.t_reached:.9g} of t_end = {t_end:g}: {run.failure}",
                               run.t_reached, results)
    return results


def _march(solver_class, system, y0, t0, t_end, grid, evs, kwargs, dense_output, steer, batch) -> _Steps:
    """The stepping loop: save states (on the grid or at every step), locate events, stop on failure."""
    run = _Steps()
    next_i = 1 if grid is not None and grid[0] == t0 else 0
    bound = grid[next_i] if steer and next_i < len(grid) else t_end
    if "first_step" in kwargs:  # scipy refuses a first step beyond the (first) bound
        kwargs = {**kwargs, "first_step": min(kwargs["first_step"], bound - t0)}
    if solver_class in IN_PLACE:
        solver = IN_PLACE[solver_class](system, t0, y0, bound, into=system.into, batch=batch, **kwargs)
    else:
        solver = solver_class(system, t0, y0, bound, **kwargs)
    if grid is None or grid[0] == t0:
        run.ts.append(t0)
        run.ys.append(y0.copy())
    run.step_ts.append(t0)
    g_old = [float(ev.fun(t0, y0)) for ev in evs]
    run.event_times = {ev.key: [] for ev in evs}
    need_sol = dense_output or bool(evs) or (grid is not None and not steer)
    track_members = batch is not None and solver_class in IN_PLACE
    # the in-place steppers make a fresh y each step and never write it again: keep it, not a copy
    keep = (lambda y: y) if solver_class in IN_PLACE else np.copy
    if track_members:
        run.member_error = np.zeros(batch)

    while True:
        message = solver.step()
        if solver.status == "failed":
            run.failure = message
            break
        t_old, t_new, y_new = solver.t_old, solver.t, solver.y
        if not np.isfinite(y_new).all():  # an overflow the error estimate cannot see (inf / inf scale)
            run.failure = f"the state became non-finite in the step from t = {t_old:.9g} to {t_new:.9g}"
            run.t_finite = t_old
            break
        run.n_steps += 1
        sol = solver.dense_output() if need_sol else None
        if sol is not None and dense_output:
            run.step_ts.append(t_new)
            run.interpolants.append(sol)
        if track_members:
            np.maximum(run.member_error, solver.member_error, out=run.member_error)

        t_stop = t_new
        for j, ev in enumerate(evs):
            g_new = float(ev.fun(t_new, y_new))
            if (g_old[j] < 0 <= g_new and ev.direction >= 0) or (g_old[j] > 0 >= g_new and ev.direction <= 0):
                root = t_new if g_new == 0 else brentq(lambda s: ev.fun(s, sol(s)), t_old, t_new,
                                                       xtol=4 * np.finfo(float).eps * abs(t_new))
                run.event_times[ev.key].append(root)
                if ev.terminal:
                    run.stopped_at = t_stop = min(t_stop, root)
            g_old[j] = g_new

        if grid is None:
            run.ts.append(t_stop)
            run.ys.append(keep(y_new) if t_stop == t_new else sol(t_stop))
        else:
            while next_i < len(grid) and grid[next_i] <= t_stop:
                run.ts.append(grid[next_i])
                run.ys.append(keep(y_new) if grid[next_i] == t_new else sol(grid[next_i]))
                next_i += 1
        if run.stopped_at is not None or (solver.status == "finished" and t_new >= t_end):
            break
        if steer and solver.status == "finished":
            solver.t_bound = grid[next_i] if next_i < len(grid) else t_end
            solver.status = "running"

    if run.stopped_at is not None and run.interpolants:
        run.step_ts[-1] = run.stopped_at
    run.nfev, run.njev, run.nlu = int(solver.nfev), int(solver.njev), int(solver.nlu)
    run.t_reached = float(solver.t if run.t_finite is None else run.t_finite)
    return run


class _Dense:
    """Adapts scipy's OdeSolution to time-first output, (dim,) or (T, dim), for one batch member."""

    def __init__(self, sol: OdeSolution, member: slice = slice(None)):
        self.sol, self.member = sol, member

    def __call__(self, t):
        out = self.sol(t)[self.member]
        return out.T if np.ndim(t) else out

    def __getitem__(self, member: slice) -> "_Dense":
        return _Dense(self.sol, member)


def _results(problem, run: _Steps, mons, dense, meta, batch, flow, stats: SolverStats, events):
    t = np.asarray(run.ts, dtype=float)
    record = dict(meta=meta, dynamics=getattr(flow, "dynamics", None), events=events)
    if not batch:
        return _trajectory(problem, t, np.asarray(run.ys, dtype=float).reshape(len(t), -1), mons, dense, stats,
                           record)
    dim = problem.dim
    states = np.empty((batch, len(t), dim))  # member-major, so each member's states are one block
    for i, y in enumerate(run.ys):
        states[:, i] = y.reshape(batch, dim)
    out = []
    for b in range(batch):
        member_stats = stats if run.member_error is None else stats.replace(member_error=float(run.member_error[b]))
        member = slice(b * dim, (b + 1) * dim)
        out.append(_trajectory(problem, t, states[b], mons, dense[member] if dense else None, member_stats,
                               {**record, "meta": {**meta, "member": b}}))
    return out


def _trajectory(problem, t, x, mons, dense, stats: SolverStats, record: dict) -> Trajectory:
    start = time.perf_counter()
    values = _monitors.evaluate(mons, t, x)
    return Trajectory(t=t, x=np.ascontiguousarray(x), layout=problem.layout, monitors=values, dense=dense,
                      stats=stats.replace(monitor_time=time.perf_counter() - start), **record)
