"""The stepping loop behind :func:`pgflow.flows.integration.integrate`: the system as scipy sees it,
steps steered onto the output times, events, budgets, progress, and the dense output."""

from __future__ import annotations

import inspect

import numpy as np
import scipy.sparse

from .events import EventLog
from .rk import IN_PLACE

# scipy's solvers use max(rtol, 100ε) (scipy.integrate._ivp.common.validate_tol)
SCIPY_MIN_RTOL = 100 * np.finfo(float).eps



class System:
    """The flow as scipy sees it: flat state, a batch stacked into one vector, every call counted.

    scipy's nfev misses the right-hand sides of its finite-difference Jacobians; ``calls`` does not.
    """

    def __init__(self, flow, shape: tuple[int, ...]):
        self.flow, self.shape, self.calls = flow, shape, 0
        self._writes_out = "out" in inspect.signature(flow.__call__).parameters
        # a flow may bind its right-hand side to this shape once (its checks and lookups out of the stage loop)
        bind = getattr(flow, "stage_kernel", None)
        self._kernel = None if bind is None else bind(shape)

    def __call__(self, t, y):
        self.calls += 1
        return np.asarray(self.flow(t, y.reshape(self.shape))).reshape(-1)

    def into(self, t, y, out):
        """The right-hand side written into ``out`` (the explicit solvers' stage rows)."""
        self.calls += 1
        if self._kernel is not None and y.flags.c_contiguous and out.flags.c_contiguous:
            self._kernel(t, y, out)
        elif self._writes_out:
            target = out.reshape(self.shape)
            result = self.flow(t, y.reshape(self.shape), out=target)
            if result is not target:  # a flow that takes out= but returns a fresh array
                target[...] = result
        else:
            out[:] = np.asarray(self.flow(t, y.reshape(self.shape))).reshape(-1)

    def jac(self, t, y):
        if len(self.shape) == 1:
            return self.flow.jac(t, y)
        return scipy.sparse.block_diag([self.flow.jac(t, x) for x in y.reshape(self.shape)], format="csc")


class Steps:
    """What the stepping loop produced: saved states, interpolants, events, and how it ended."""

    def __init__(self):
        self.ts, self.ys, self.step_ts, self.interpolants = [], [], [], []
        self.stopped_at, self.failure, self.budget, self.n_steps = None, None, None, 0
        self.member_error = self.t_finite = None
        self.events: EventLog | None = None
        self.memory = 0
        self.steps_per_interval = []




def progress_bar(t0: float, t1: float):
    from tqdm import tqdm  # only when asked: a progress bar is for people watching
    return tqdm(total=abs(t1 - t0) if np.isfinite(t1) else None, desc="integrate", unit="t",
                bar_format="{l_bar}{bar}| t {n:.4g}/{total:.4g} [{elapsed}<{remaining}]")


class Constant:
    """The interpolant of a run that did not move (t1 = t0)."""

    def __init__(self, y):
        self.y = y

    def __call__(self, t):
        return np.repeat(self.y[:, None], np.size(t), axis=1) if np.ndim(t) else self.y.copy()


def march(solver_class, system, y0, t0, t_end, grid, evs, kwargs, dense_output, steer, batch, budget, bar,
           callback, shape, split=None) -> Steps:
    """The stepping loop: save states (on the grid or at every step), locate events, stop on failure or
    at the end of a budget. ``split`` (with ``steer``) is a boolean per grid time: no step is longer than
    half the interval that ends at a marked time. The reference solve of an error estimate marks the
    intervals its solve crossed in one step, where the grid, not the tolerance, set the step: a
    tighter tolerance alone would repeat that step exactly, and with it the error it is there to check.
    ``run.steps_per_interval`` counts the steps that ended in each grid interval."""
    run = Steps()
    direction = 1.0 if t_end >= t0 else -1.0
    before = lambda a, b: direction * (a - b) <= 0  # noqa: E731  (a comes no later than b)
    next_i = 1 if grid is not None and grid[0] == t0 else 0
    bound = grid[next_i] if steer and next_i < len(grid) else t_end
    if "first_step" in kwargs and kwargs["first_step"] > abs(bound - t0):
        # the run steps onto the first grid time: a first step beyond it ends there (a step, not a clip
        # of the user's value: the step after continues from the grid time)
        kwargs = {**kwargs, "first_step": abs(bound - t0)}
    if grid is None or grid[0] == t0:
        run.ts.append(t0)
        run.ys.append(y0.copy())
    run.step_ts.append(t0)
    run.events = EventLog(evs, t0, y0.reshape(shape))
    if t_end == t0:  # nothing to integrate
        run.nfev = run.njev = run.nlu = 0
        run.t_reached, run.rtol, run.atol = t0, kwargs["rtol"], kwargs["atol"]
        return run
    complex_state = np.iscomplexobj(y0)
    user_max_step = kwargs["max_step"]

    def max_step_to(bound_i, start):
        halve = split is not None and steer and bound_i < len(grid) and split[bound_i]
        return min(user_max_step, 0.5 * abs(grid[bound_i] - start)) if halve else user_max_step

    if split is not None and steer:
        kwargs = {**kwargs, "max_step": max_step_to(next_i, t0)}
    if solver_class in IN_PLACE and not complex_state:
        solver = IN_PLACE[solver_class](system, t0, y0, bound, into=system.into, batch=batch, **kwargs)
    else:
        solver = solver_class(system, t0, y0, bound, **kwargs)
    # every scipy solver raises an rtol below 100ε to 100ε (with a warning): record what it uses
    run.rtol, run.atol = max(kwargs["rtol"], SCIPY_MIN_RTOL), kwargs["atol"]
    need_sol = dense_output or bool(evs) or (grid is not None and not steer)
    track_members = batch is not None and isinstance(solver, tuple(IN_PLACE.values()))
    # the in-place steppers make a fresh y each step and never write it again: keep it, not a copy
    keep = (lambda y: y) if isinstance(solver, tuple(IN_PLACE.values())) else np.copy
    if track_members:
        run.member_error = np.zeros(batch)
    state_bytes = y0.nbytes
    in_interval = 0

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
            if len(run.interpolants) == 1:
                run.interpolant_bytes = sum(a.nbytes for a in vars(sol).values() if isinstance(a, np.ndarray))
        if track_members:
            np.maximum(run.member_error, solver.member_error, out=run.member_error)

        t_stop = t_new
        if evs:
            stop = run.events.step(t_old, t_new, y_new.reshape(shape), lambda s: sol(s).reshape(shape))
            if stop is not None:
                run.stopped_at = t_stop = stop

        if grid is None:
            run.ts.append(t_stop)
            run.ys.append(keep(y_new) if t_stop == t_new else sol(t_stop))
        else:
            in_interval += 1
            while next_i < len(grid) and before(grid[next_i], t_stop):
                run.ts.append(grid[next_i])
                run.ys.append(keep(y_new) if grid[next_i] == t_new else sol(grid[next_i]))
                run.steps_per_interval.append(in_interval)
                in_interval = 0
                next_i += 1
        if bar is not None:
            bar.update(abs(t_stop - t_old))
        if callback is not None:
            callback(t_stop, y_new.reshape(shape))
        if run.stopped_at is not None or (solver.status == "finished" and before(t_end, t_new)):
            break
        run.memory = len(run.ys) * state_bytes + len(run.interpolants) * getattr(run, "interpolant_bytes", 0)
        exceeded = budget.exceeded(run.n_steps, run.memory)
        if exceeded is not None:
            run.budget = exceeded
            break
        if steer and solver.status == "finished":
            solver.t_bound = grid[next_i] if next_i < len(grid) else t_end
            solver.status = "running"
            if split is not None:
                solver.max_step = max_step_to(next_i, t_new)

    if run.stopped_at is not None and run.interpolants:
        run.step_ts[-1] = run.stopped_at
    run.nfev, run.njev, run.nlu = int(solver.nfev), int(solver.njev), int(solver.nlu)
    run.t_reached = float(solver.t if run.t_finite is None else run.t_finite)
    if run.stopped_at is not None:
        run.t_reached = float(run.stopped_at)
    return run


class Dense:
    """Adapts scipy's OdeSolution to time-first output, (dim,) or (T, dim), for one batch member."""

    def __init__(self, sol, member: slice = slice(None)):
        self.sol, self.member = sol, member

    def __call__(self, t):
        out = self.sol(t)[self.member]
        return out.T if np.ndim(t) else out

    def __getitem__(self, member: slice) -> "Dense":
        return Dense(self.sol, member)
