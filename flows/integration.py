"""Integrate a flow, or any ``fun(t, y)``, with scipy's ``solve_ivp`` methods: exact grid output,
scipy's vocabulary, budgets, and provenance.

Why not call ``solve_ivp`` directly: its ``t_eval`` states come from the step interpolant, and
DOP853's interpolant is up to 10⁴× less accurate than its steps on these flows (see
``docs/performance.md``). Here the explicit Runge–Kutta methods, Radau and BDF *step onto* every
requested time (the step that would cross a grid point is shortened to end on it), so a state on the
grid is as accurate as a step; a grid much denser than the solver's own steps therefore costs one
step per grid point. LSODA's Fortran core cannot be steered that way; its Nordsieck interpolant is of
the method's own order.

``integrate`` takes a flow object (:mod:`pgflow.flows.dynamics`) or a plain right-hand side
``fun(t, y, *args)`` as :func:`scipy.integrate.solve_ivp` does (``t_span`` a pair or an end time,
``args``, ``jac``, events with scipy's ``terminal`` and ``direction`` attributes, backward in time,
complex states), and returns a :class:`~pgflow.flows.trajectory.Trajectory` either way.
``method="auto"`` chooses from the stiffness of the flow (see :func:`choose_method`), and a batch of
initial states (B, dim) of a flow is integrated as one vectorized system. RK23, RK45 and DOP853 run as
:mod:`pgflow.flows.rk`'s in-place versions of scipy's classes: the same steps, without the temporaries.
Every run has a budget of steps, wall time and memory (:class:`BudgetExceeded`).
"""

from __future__ import annotations

import time

import numpy as np
from scipy.integrate import BDF, DOP853, LSODA, RK23, RK45, OdeSolution, Radau

from . import blas, reduction
from . import monitors as _monitors
from .checks import positive, renamed, time_grid
from .events import Event, as_events, loss_below
from .ode import ODE, parse_span
from .failures import (DEFAULT_MAX_MEMORY, DEFAULT_MAX_STEPS, Budget, BudgetExceeded, IntegrationError,
                       ToleranceNotMet, available_memory, reporting_nonfinite_monitors)
from .stepping import SCIPY_MIN_RTOL, Constant, Dense, Steps, System, march, progress_bar
from .stiffness import choose_method, stiffness
from .trajectory import Accuracy, SolverStats, Trajectory
from .version import package_version

METHODS = {"RK23": RK23, "RK45": RK45, "DOP853": DOP853, "Radau": Radau, "BDF": BDF, "LSODA": LSODA}
IMPLICIT = frozenset({"Radau", "BDF", "LSODA"})

# error_estimate: the reference solve's tolerances are this many times tighter (its own error is then
# about that many times smaller than the one it measures, for a method whose global error follows its
# tolerance); guarantee: at most this many solves
REFERENCE_TIGHTER = 32.0
GUARANTEE_ATTEMPTS = 5

__all__ = ["BudgetExceeded", "DEFAULT_MAX_MEMORY", "DEFAULT_MAX_STEPS", "Event", "IMPLICIT", "IntegrationError",
           "METHODS", "ODE", "ToleranceNotMet", "choose_method", "default_atol", "integrate", "loss_below", "stiffness"]


# --------------------------------------------------------------------------------------------------
# integrate
# --------------------------------------------------------------------------------------------------

@renamed(t_end="t_span", t_start="t_span")
@reporting_nonfinite_monitors
def integrate(fun, y0, t_span, *, method: str = "auto", rtol: float = 1e-8, atol: float | None = None, t_eval=None,
              events=(), args: tuple = (), jac=None, monitors=None, default_monitors: bool = True,
              dense_output: bool = False,
              error_estimate: bool = False, guarantee: bool = False, jacobian: bool = True,
              blas_threads: int | None = 1, max_step: float = np.inf, first_step: float | None = None,
              max_steps: int = DEFAULT_MAX_STEPS, max_time: float | None = None, max_memory: int = DEFAULT_MAX_MEMORY,
              progress: bool = False, callback=None, provenance: dict | None = None, reduce="auto"):
    """Integrate ẏ = fun(t, y) from ``y0`` over ``t_span``: a flow of pgflow's, or any ODE.

    Parameters
    ----------
    fun : flow object or callable ``fun(t, y, *args)``
        A flow (e.g. :class:`pgflow.flows.dynamics.GradientFlow`; see :mod:`pgflow.flows.dynamics`
        for the protocol) or a plain right-hand side as for :func:`scipy.integrate.solve_ivp`,
        returning a numpy array shaped like y (checked at t0). A plain ``fun`` may take ``out=``.
    y0 : array_like, shape (n,), or (B, dim) for a batch of a flow
        Initial state (for a flow ``problem.pack(U0, V0)`` or an initializer from
        :mod:`pgflow.flows.init`). A complex y0 is integrated in complex arithmetic (plain ODEs, not
        LSODA); a flow's state must be real. A batch of B initial states of a flow is integrated as
        one vectorized system of size B·dim. The trade-off: the batch shares one step-size sequence,
        so every member takes the steps its most demanding member needs (the explicit methods accept
        a step only when each member's own error estimate, scipy's norm over that member alone, is
        within tolerance). That costs some extra steps (about 15% for 64 Gaussian seeds) and buys one
        Python step driving B right-hand sides: about 10× faster than B separate solves at dim 200
        (``python -m benchmarks batch``). ``stats.member_error`` reports each member's largest scaled
        local error estimate over the accepted steps (≤ 1). The implicit methods control the norm of
        the whole batch.
    t_span : float or (float, float)
        (t0, t1), or an end time t1 reached from t0 = 0; t1 < t0 integrates backward in time (plain
        ODEs), t1 = ±inf runs until a terminal event (or a budget).
    method : {"auto", "RK23", "RK45", "DOP853", "Radau", "BDF", "LSODA"}
        scipy's solver; the implicit ones receive the Jacobian (the flow's ``jac``, or ``jac``)
        unless ``jacobian=False``. "auto" chooses by :func:`choose_method` and records the choice
        and its reason in ``stats``.
    rtol, atol : float
        Relative and absolute tolerances of each step's local error, > 0. scipy raises an rtol below
        100ε to 100ε; ``meta`` records the tolerances actually used. The default atol scales with the
        problem (:func:`default_atol`: 1e-3·rtol times the smallest entry scale the run passes
        through), so that a small initial state is resolved as well as a large one.
    t_eval : array_like, shape (T,), optional
        Times to save, monotone in the direction of integration, inside t_span. Default: every solver
        step. Grid states are exact steps (except LSODA's).
    events : callable, Event, or a sequence of them
        Zeros of ``event(t, y, *args)`` located on each step's interpolant, with scipy's ``terminal``
        (bool or a count) and ``direction`` attributes (see :mod:`pgflow.flows.events`); their times
        go to ``Trajectory.events[name]`` and the states to ``Trajectory.event_states[name]``. Not
        with a batch.
    args : tuple
        Extra arguments of a plain ``fun``, ``jac`` and the events.
    jac : callable ``jac(t, y, *args)``, array_like or sparse matrix, optional
        ∂fun/∂y of a plain ODE for the implicit methods (a flow brings its own).
    monitors : dict of name -> ``fn(t, y)``, optional
        Evaluated on the saved states after the solve, in addition to the default ones
        (:func:`pgflow.flows.monitors.default`: loss, grad_norm, ... of a problem; ‖y‖ for a plain
        ODE); a monitor named like a default one replaces it. The flow's own monitors
        (``flow.monitors()``, e.g. a perturbation's norm) are always added.
    default_monitors : bool, default True
        False: record only ``monitors`` (and the flow's own), e.g. for a lean timing run.
    dense_output : bool
        Keep the solver's interpolants for :meth:`Trajectory.at` (memory ∝ steps × dim; DOP853 pays
        3 extra right-hand sides per step for them). Off by default: the saved states are the output.
    error_estimate : bool
        Estimate the error ‖x(tᵢ) − x_true(tᵢ)‖₂ of every saved state (``Trajectory.error_estimate``,
        ``Trajectory.error_estimate_of(fn)``) from a second solve on the same times at
        ``REFERENCE_TIGHTER``× tighter tolerances (DOP853, or the same implicit method); the
        difference is the first solve's error up to the second's, about that many times smaller. It
        costs about 1.5 to 2.5 solves (``accuracy.cost`` records the ratio of right-hand sides); see
        ``docs/accuracy.md`` for why a second solve and not the local error estimates.
    guarantee : bool
        Make rtol a promise about the global error: re-solve with tighter local tolerances until
        the estimated error at every saved time is at most rtol·‖x(tᵢ)‖₂ + atol·√dim, or raise
        :class:`ToleranceNotMet` with the best estimate reached after ``GUARANTEE_ATTEMPTS`` solves.
    jacobian : bool
        Pass the Jacobian to implicit methods (False: scipy's finite differences).
    blas_threads : int or None
        BLAS threads during the solve (default 1: never slower here, much faster when the other
        cores are busy; see :mod:`pgflow.flows.blas`); None leaves BLAS alone.
    max_step, first_step : float
        As for scipy's solvers; ``first_step`` may not exceed the span.
    max_steps, max_time, max_memory : int, float, int
        The run's budget: accepted steps, wall-clock seconds (default: none), and bytes of saved
        states and interpolants (checked before the run when ``t_eval`` fixes them, and against the
        memory the system has available). Exceeding one raises :class:`BudgetExceeded`.
    progress : bool
        Show a progress bar (tqdm) of t against t1.
    callback : callable ``callback(t, y)``, optional
        Called after every accepted step (a view of the state: copy what you keep).
    provenance : dict, optional
        Extra entries for ``meta`` (e.g. the seeds that made ``y0``).
    reduce : {"auto", True, False}
        Solve a factorization flow in the (k + r)-dimensional coordinates of U = Q_U C, V = Q_V D
        (:mod:`pgflow.flows.reduction`): "auto" (or None) wherever that is exact, True or raise a
        ValueError saying why it cannot be, False never. Everything else is unchanged: the grid,
        events, error estimates, batches and monitors work as in full, on the same values to
        rounding; the trajectory keeps the bases and reduced states and rebuilds full ones on demand.
        With the reduced state the solver's error norm is over the reduced entries, and
        ``guarantee`` checks atol·√(reduced dim), a stricter promise. ``meta`` records ``reduced``,
        ``full_dim``, ``reduced_dim`` and ``reduction_reason``.
        A perturbation of unknown type that leaves the spans during a reduced run makes the run start
        over in full from the beginning: ``callback`` then sees the early times twice, and
        ``max_time`` applies to each of the two runs.

    Returns
    -------
    Trajectory, or list of B Trajectory for a batch
        ``stats`` holds the method (and why, for "auto"), nfev/njev/nlu/steps, rhs_calls and wall
        time; ``dynamics`` the flow's record (kind "ode" for a plain ODE); ``events`` and
        ``event_states`` the located events; ``meta`` the problem, the tolerances used, the span and
        the version. ``x`` is time-first: shape (T, n), the transpose of ``solve_ivp``'s ``y``.

    Raises
    ------
    IntegrationError
        The solver failed; carries scipy's message, ``t_reached`` and the ``partial`` trajectory.
    BudgetExceeded
        A budget ran out (an IntegrationError, with ``budget`` naming it).
    ToleranceNotMet
        ``guarantee=True`` and the tolerance could not be met (carries the best ``estimate``).

    Examples
    --------
    >>> from pgflow.flows import MatrixFactorization, GradientFlow, init
    >>> p = MatrixFactorization.random(m=6, n=5, rank=2, width=2, seed=0)
    >>> run = integrate(GradientFlow(p), init.gaussian(p, 0.1, seed=1), 20.0, t_eval=[0, 10, 20])
    >>> run.x.shape, bool(run.monitors["loss"][-1] < 1e-8), run.stats.method
    ((3, 22), True, 'DOP853')
    >>> decay = integrate(lambda t, y: -y, [1.0, 2.0], (0.0, 1.0), rtol=1e-10, atol=1e-12)
    >>> np.allclose(decay.final, np.exp(-1.0) * np.array([1.0, 2.0])), decay.dynamics.kind
    (True, 'ode')
    """
    started = time.perf_counter()
    if method != "auto" and method not in METHODS:
        raise ValueError(f"method must be 'auto' or one of {sorted(METHODS)}, got {method!r}")
    t0, t_end = parse_span(t_span)
    plain = not (callable(fun) and hasattr(fun, "problem"))
    if plain:
        flow = ODE(fun, args, jac)
        y0 = np.asarray(y0)
        if y0.ndim != 1:
            raise ValueError(f"y0 must be 1-D, shape (n,), for a plain fun(t, y), got shape {y0.shape}")
        if not (np.issubdtype(y0.dtype, np.number) and not np.issubdtype(y0.dtype, np.timedelta64)):
            raise TypeError(f"y0 must hold numbers, got dtype {y0.dtype}")
        y0 = y0.astype(complex if np.iscomplexobj(y0) else float)  # integers are exact as floats
        if not np.all(np.isfinite(y0)):
            raise ValueError("y0 must be finite")
        flow.first_value(t0, y0)
        layout = (("y", (y0.size, 1)),)
    else:
        flow = fun
        if args or jac is not None:
            raise TypeError("args and jac are for a plain fun(t, y); a flow brings its own Jacobian")
        y0 = flow.problem.check_state(y0)
        layout = flow.problem.layout
    problem = flow.problem
    if t_end < t0 and not plain:
        raise ValueError(f"t_span must run forward for a flow: got t0 = {t0} > t1 = {t_end}")
    if not np.isfinite(t_end) and not any(ev.count for ev in as_events(events, args)):
        raise ValueError(f"t_span must end at a finite time unless a terminal event stops the run, got t1 = {t_end}")
    rtol = positive(rtol, "rtol")
    atol_rule = None
    if atol is None:
        atol, atol_rule = default_atol(problem, y0, rtol)
    atol = positive(atol, "atol")
    if not max_step > 0:
        raise ValueError(f"max_step must be positive (inf: no limit), got {max_step}")
    if first_step is not None:
        first_step = positive(first_step, "first_step")
        if first_step > abs(t_end - t0):
            raise ValueError(f"first_step = {first_step:g} exceeds the span |t1 − t0| = {abs(t_end - t0):g}")
    grid = time_grid(t_eval, t0, t_end)
    evs = as_events(events, args)
    batch = y0.shape[0] if y0.ndim == 2 else None
    if batch and evs:
        raise ValueError("events are not supported with a batch of initial states; integrate members separately")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable callback(t, y), got {type(callback).__name__}")
    with blas.limit(blas_threads):  # the QRs of the bases: tall and skinny, and 20× slower when a thread stalls
        plan = reduction.plan(flow, y0, reduce, t0)
    if plan.reduced:
        options = dict(method=method, rtol=rtol, atol=atol, t_eval=grid, dense_output=dense_output,
                       error_estimate=error_estimate, guarantee=guarantee, jacobian=jacobian, blas_threads=blas_threads,
                       max_step=max_step, first_step=first_step, max_steps=max_steps, max_time=max_time,
                       max_memory=max_memory, progress=progress, provenance=provenance)
        meta = {**problem.describe(), **flow.describe(), **({"atol_rule": atol_rule} if atol_rule else {}),
                **(provenance or {})}
        try:
            return plan.solve(integrate, (plan.flow, plan.start, (t0, t_end)), options, monitors=monitors,
                              default_monitors=default_monitors, meta=meta,
                              dynamics=flow.dynamics, blas_threads=blas_threads, events=evs, callback=callback,
                              started=started)
        except reduction.LeftSpans as exc:
            plan = reduction.in_full(exc, reduce, plan.full_dim)
    budget = Budget(max_steps, max_time, max_memory)
    if grid is not None:  # the saved states are known before the run: refuse a run that cannot fit
        needed = len(grid) * y0.nbytes
        free = available_memory()
        if needed > budget.max_memory or (free is not None and needed > free):
            limit = budget.max_memory if needed > budget.max_memory else free
            raise BudgetExceeded(f"saving {len(grid)} states of {y0.size} values needs {needed / 2**20:.0f} MiB, "
                                 f"more than {'max_memory' if limit == budget.max_memory else 'the memory available'}"
                                 f" ({limit / 2**20:.0f} MiB): save fewer times or raise max_memory", t0, None,
                                 "max_memory")
    mons = {**_monitors.chosen(problem, monitors, default_monitors), **flow.monitors()}
    requested, reason = method, None
    if method == "auto":
        method, reason = choose_method(flow, y0, t_end - t0 if np.isfinite(t_end) else np.inf, t0=t0)
    if batch and method == "LSODA":
        raise ValueError("method='LSODA' needs a dense Jacobian and cannot run a batch; use 'BDF' or 'Radau'")
    if np.iscomplexobj(y0) and method == "LSODA":
        raise ValueError("LSODA cannot integrate a complex y0; use 'BDF', 'Radau' or an explicit method")

    use_jac = method in IMPLICIT and jacobian and getattr(flow, "jac", None) is not None
    describe = problem.describe() if problem is not None else {}
    meta = {**describe, **flow.describe(), "method_requested": requested, "rtol": rtol, "atol": atol,
            **({"atol_rule": atol_rule} if atol_rule else {}), "t_start": t0, "t_end": t_end,
            "jacobian": "analytic" if use_jac else ("finite differences" if method in IMPLICIT else "not used"),
            "blas_threads": blas_threads, "t_eval_points": None if grid is None else len(grid),
            **({"max_step": max_step} if np.isfinite(max_step) else {}),
            **({"first_step": first_step} if first_step is not None else {}),
            "version": package_version(), **(provenance or {}), **plan.meta()}
    if batch:
        meta["batch_size"] = batch

    def solve(solver: str, local_rtol: float, local_atol: float, times, with_events: bool, dense: bool,
              watched: bool, split=None):
        """One run of ``solver``: its stepping record and its right-hand side count."""
        system = System(flow, y0.shape)
        kwargs = {"rtol": local_rtol, "atol": local_atol, "max_step": max_step}
        if first_step is not None:
            kwargs["first_step"] = first_step
        if solver in IMPLICIT and use_jac:
            constant = getattr(flow, "constant_jac", None)
            kwargs["jac"] = system.jac if constant is None else constant
        bar = progress_bar(t0, t_end) if watched and progress else None
        try:
            # an overflow in a stage sum is not a warning but a failed solve, reported with the step where it
            # happened
            with blas.limit(blas_threads), np.errstate(over="ignore", invalid="ignore"):
                run = march(METHODS[solver], system, y0.reshape(-1), t0, times[-1] if times is not None and
                            not with_events else t_end, times, evs if with_events else [], kwargs, dense,
                            steer=times is not None and solver != "LSODA", batch=batch, budget=budget, bar=bar,
                            callback=callback if watched else None, shape=y0.shape, split=split)
        finally:
            if bar is not None:
                bar.close()
        return run, system.calls

    start = time.perf_counter()
    local_rtol, local_atol = rtol, atol
    for attempt in range(1, GUARANTEE_ATTEMPTS + 1):
        run, calls = solve(method, local_rtol, local_atol, grid, True, dense_output, True)
        if run.failure is not None or run.budget is not None or not (error_estimate or guarantee):
            break
        reference = _reference(solve, method, run, local_rtol, local_atol, batch)
        allowed = rtol * _norms(np.asarray(run.ys), batch) + atol * np.sqrt(y0.size // (batch or 1))
        worst = float(np.max(reference["estimate"] / allowed)) if run.ys else 0.0
        if not guarantee or worst <= 1.0:
            break
        if attempt == GUARANTEE_ATTEMPTS or local_rtol / (2 * worst) < 4 * SCIPY_MIN_RTOL:
            raise ToleranceNotMet(f"guarantee: after {attempt} solves (local rtol {local_rtol:.3g}) the estimated "
                                  f"error is {worst:.3g}× the promised rtol·‖x‖ + atol·√dim", reference["estimate"])
        # the global error scales about like the local tolerance: tighten by the factor missed, and a margin
        local_rtol, local_atol = local_rtol / (2 * worst), local_atol / (2 * worst)
    meta.update(rtol=run.rtol, atol=run.atol)
    if guarantee:
        meta.update(guarantee=True, rtol_requested=rtol, atol_requested=atol, solves=attempt)
    stats = SolverStats(method=method, method_reason=reason, nfev=run.nfev, njev=run.njev, nlu=run.nlu,
                        rhs_calls=calls, steps=run.n_steps, t_reached=run.t_reached,
                        stopped_at=run.stopped_at, wall_time=time.perf_counter() - start)
    dense = None
    if dense_output and run.failure is None and (run.interpolants or t_end == t0):
        dense = Dense(OdeSolution(run.step_ts, run.interpolants) if run.interpolants else Constant(y0.reshape(-1)))
    accuracy = reference if (error_estimate or guarantee) and run.failure is None and run.budget is None else None
    with blas.limit(blas_threads):  # the monitors: the same small products as the solve, under the same limit
        results = _results(problem, layout, run, mons, dense, meta, batch, flow, stats, accuracy)
    if run.budget is not None:
        raise BudgetExceeded(f"{method} stopped at t = {run.t_reached:.9g} of t1 = {t_end:g}: budget {run.budget}",
                             run.t_reached, results, run.budget.split(":")[0])
    if run.failure is not None:
        raise IntegrationError(f"{method} failed at t = {run.t_reached:.9g} of t1 = {t_end:g}: {run.failure}",
                               run.t_reached, results)
    return results


def default_atol(problem, y0, rtol: float) -> tuple[float, str]:
    """The default absolute tolerance: 1e-3·rtol × the smallest scale of the state's entries the run
    passes through, and the rule in words (recorded in ``meta["atol_rule"]``).

    The scale is the RMS of the initial entries (the smallest member's, for a batch); for a
    factorization-type problem also √(σ_r/k), the entry size of a learned mode, when that is smaller.
    A fixed atol is relative to nothing: 1e-10 against entries of 1e-3 (a small initialization) is
    a relative 1e-7, and the global error of a solve at rtol 1e-8 then reached 546× rtol.
    """
    y = np.abs(np.atleast_2d(y0))
    scale = float(np.min(np.sqrt(np.mean(y ** 2, axis=-1))))
    rule = "1e-3 * rtol * RMS of the initial entries"
    if hasattr(problem, "target") and hasattr(problem, "width"):
        learned = float(np.sqrt(problem.target.sigma[-1] / problem.width))
        if learned < scale or scale == 0.0:
            scale, rule = learned, "1e-3 * rtol * sqrt(sigma_r / width)"
    if scale == 0.0 or not np.isfinite(scale):
        return 1e-12 * rtol, "1e-12 * rtol (the initial state is zero)"
    return 1e-3 * rtol * scale, rule


def _norms(states: np.ndarray, batch) -> np.ndarray:
    """‖x(tᵢ)‖₂ of saved states (T, n): shape (T,), or (T, B), member by member, for a batch."""
    norms = np.linalg.norm(states.reshape(len(states), batch or 1, -1), axis=-1)
    return norms if batch else norms[:, 0]


def _reference(solve, method: str, run: Steps, local_rtol: float, local_atol: float, batch) -> dict:
    """The second solve on the saved times at tighter tolerances, and the distance to it."""
    if not run.ys:  # nothing saved (every output time came after a terminal event): nothing to estimate
        return {"estimate": np.zeros((0, batch) if batch else 0), "how": "reference", "reference": np.zeros((0, 0))}
    solver = method if method in IMPLICIT else "DOP853"  # a stiff flow keeps its implicit method
    ref_rtol = max(local_rtol / REFERENCE_TIGHTER, SCIPY_MIN_RTOL)
    ref_atol = local_atol * ref_rtol / local_rtol
    times = np.asarray(run.ts, dtype=float)
    # the intervals the solve crossed in one step, steered by its output times (or all, when it saved every
    # step): there the reference must step more finely than the solve, or it repeats its step
    one_step = np.ones(len(times), dtype=bool)
    if run.steps_per_interval and len(run.steps_per_interval) >= len(times) - 1:
        counts = np.asarray(run.steps_per_interval[-(len(times) - 1):]) if len(times) > 1 else np.zeros(0)
        one_step[1:] = counts <= 1
    ref, calls = solve(solver, ref_rtol, ref_atol, times, False, False, False, split=one_step)
    if ref.failure is not None or ref.budget is not None:
        raise IntegrationError(f"the reference solve of the error estimate ({solver} at rtol {ref_rtol:.3g}) "
                               f"failed at t = {ref.t_reached:.9g}: {ref.failure or ref.budget}", ref.t_reached, None)
    states, ref_states = np.asarray(run.ys), np.asarray(ref.ys)
    return {"estimate": _norms(states - ref_states, batch), "how": "reference", "reference": ref_states,
            "reference_method": solver, "reference_rtol": ref_rtol, "reference_atol": ref_atol,
            "cost": calls / max(run.nfev, 1)}


def _results(problem, layout, run: Steps, mons, dense, meta, batch, flow, stats: SolverStats, accuracy):
    t = np.asarray(run.ts, dtype=float)
    dim = sum(a * b for _, (a, b) in layout)
    record = dict(meta=meta, dynamics=getattr(flow, "dynamics", None),
                  events={k: tuple(v) for k, v in run.events.times.items()},
                  event_states=run.events.states_array(dim))
    dtype = np.result_type(*run.ys) if run.ys else float

    def member_accuracy(b):
        if accuracy is None:
            return None
        estimate = accuracy["estimate"] if b is None else accuracy["estimate"][:, b]
        reference = accuracy["reference"].reshape(len(t), -1)
        reference = reference if b is None else reference[:, b * dim:(b + 1) * dim]
        return Accuracy(**{**accuracy, "estimate": np.asarray(estimate), "reference": reference})

    if not batch:
        states = np.asarray(run.ys, dtype=dtype).reshape(len(t), dim)
        return _trajectory(layout, t, states, mons, dense, stats, {**record, "accuracy": member_accuracy(None)})
    states = np.empty((batch, len(t), dim), dtype=dtype)  # member-major, so each member's states are one block
    for i, y in enumerate(run.ys):
        states[:, i] = y.reshape(batch, dim)
    out = []
    for b in range(batch):
        member_stats = stats if run.member_error is None else stats.replace(member_error=float(run.member_error[b]))
        member = slice(b * dim, (b + 1) * dim)
        out.append(_trajectory(layout, t, states[b], mons, dense[member] if dense else None, member_stats,
                               {**record, "meta": {**meta, "member": b}, "accuracy": member_accuracy(b)}))
    return out


def _trajectory(layout, t, x, mons, dense, stats: SolverStats, record: dict) -> Trajectory:
    start = time.perf_counter()
    values = _monitors.evaluate(mons, t, x, warn=False)
    return Trajectory(t=t, x=np.ascontiguousarray(x), layout=layout, monitors=values, dense=dense,
                      stats=stats.replace(monitor_time=time.perf_counter() - start), **record)
