"""Gradient descent: explicit Euler steps on a flow object, through the problem's one gradient.

Simultaneous GD is explicit Euler on :class:`~pgflow.flows.dynamics.GradientFlow`, ScaledGD on
:class:`~pgflow.flows.dynamics.ScaledGradientFlow` and perturbed GD on
:class:`~pgflow.flows.dynamics.PerturbedGradientFlow`: x₊ = x + η F(kη, x) with the flow's own
right-hand side F, so any difference between GD and its flow is discretization error by construction.
Alternating GD takes the Euler step one factor block at a time, through the problem's
``partial_grad``. Every variant is a step rule plugged into one loop (:func:`_descend`), which
saves states, evaluates monitors and checks for divergence.
"""

from __future__ import annotations

import math
import time

import numpy as np

from . import blas, reduction
from . import monitors as _monitors
from .base import ensure_consistent
from .checks import positive, positive_int, renamed
from .dynamics import VARIANTS, GradientFlow, PerturbedGradientFlow, ScaledGradientFlow
from .failures import DEFAULT_MAX_MEMORY, BudgetExceeded, DivergenceError, reporting_nonfinite_monitors
from .problems import MatrixFactorization, SymmetricFactorization
from .seeds import batch_indices, child_rng, seed_record
from .trajectory import Accuracy, Dynamics, PiecewiseLinear, SolverStats, Trajectory
from .version import package_version

FACTORIZATIONS = (MatrixFactorization, SymmetricFactorization)
SAVED_BY_DEFAULT = 1000
"""GD saves every ⌈n_steps / SAVED_BY_DEFAULT⌉-th step unless told otherwise (and always the last)."""


def number_of_steps(step_size: float, t_end: float, name: str = "step_size", where: str = "") -> int:
    """t_end / η as a whole number of GD steps, or a ValueError naming ``name`` (and ``where``)."""
    n = int(round(t_end / step_size))
    if n < 1 or abs(n * step_size - t_end) > 1e-9 * t_end:
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}{name} must divide t_end = {t_end:g} into whole steps, got {step_size:g} "
                         f"({t_end / step_size:.6g} steps)")
    return n


@renamed(record_every="save_every")
@reporting_nonfinite_monitors
def gradient_descent(problem, x0, step_size: float, n_steps: int | None = None, *, t_end: float | None = None,
                     variant: str = "simultaneous", perturbation=None, perturbation_form: str = "residual",
                     save_every: int | None = None, monitors=None, default_monitors: bool = True,
                     max_loss: float | None = None, provenance: dict | None = None,
                     check: bool = True, max_time: float | None = None, max_memory: int = DEFAULT_MAX_MEMORY,
                     progress: bool = False, callback=None, blas_threads: int | None = 1, reduce="auto"):
    """Run GD and return it as a :class:`Trajectory` with times t = k·η.

    simultaneous: U₊ = U + ηRV, V₊ = V + ηRᵀU (x₊ = x − η∇f(x)), explicit Euler on GF.
    alternating: U₊ = U + ηRV, then V₊ = V + ηR₊ᵀU₊ with R₊ = Σ − U₊Vᵀ (V uses the new U); each
    block step of a :class:`pgflow.flows.MatrixFactorization` computes only its own gradient block.
    scaled (ScaledGD, Tong–Ma–Chi): U₊ = U − η∇_U f (VᵀV)⁻¹, V₊ = V − η∇_V f (UᵀU)⁻¹.
    perturbed (simultaneous only): explicit Euler on the perturbed gradient flow,
    U₊ = U + η(R + E_k)V, V₊ = V + η(R + E_k)ᵀU (residual form) or x₊ = x − η(∇f(x) − e_k)
    (additive form), with E_k = E(kη, x_k) from a model of :mod:`pgflow.flows.perturbations`.

    Each step is x₊ = x + η F(kη, x) with F the right-hand side of the flow object the variant
    discretizes (``GradientFlow``, ``ScaledGradientFlow``, ``PerturbedGradientFlow``); alternating GD
    steps U, then V, with the problem's ``partial_grad``.

    Parameters
    ----------
    problem : problem object
    x0 : array_like, shape (dim,) or (B, dim)
        Initial state, or a batch of B initial states run together (one vectorized step for all;
        not with a perturbation).
    step_size : float
        η > 0.
    n_steps : int, optional
        Number of steps, ≥ 1. Give ``n_steps`` or ``t_end``, not both.
    t_end : float, optional
        The final time instead of ``n_steps``: t_end / η steps, which must be a whole number (to
        relative 1e-9; otherwise a ValueError says so rather than stopping short of or past t_end).
    variant : {"simultaneous", "alternating", "scaled"}
    perturbation : perturbation model, optional
        E(t, x); see :class:`pgflow.flows.dynamics.PerturbedGradientFlow`. Its ‖E‖ and bound are
        recorded as the monitors "perturbation_norm" and (when it claims one) "perturbation_bound".
    perturbation_form : {"residual", "additive"}
    save_every : int, optional
        Save every this many steps (the first and last state are always saved). Default:
        ⌈n_steps / ``SAVED_BY_DEFAULT``⌉, at most 1,000 evenly spaced states and the last (pass 1 to
        keep every step).
    monitors : dict of name -> ``fn(t, x)``, optional
        Recorded in addition to the default ones (:func:`pgflow.flows.monitors.default`); a monitor
        named like a default one replaces it.
    default_monitors : bool, default True
        False: record only ``monitors`` (and the perturbation's).
    max_loss : float, optional
        Divergence bound on f at the recorded steps; default 10⁶·max(f(x₀), ‖Σ‖²_F).
    provenance : dict, optional
        Extra entries for ``meta``.
    check : bool
        Check once that the problem's ``grad`` is the gradient of its ``loss``
        (:func:`pgflow.flows.base.check_problem`; pgflow's own problem classes are not re-checked).
    max_time, max_memory : float, int
        The run's budget besides ``n_steps``: wall-clock seconds (checked at saved steps; default none)
        and bytes of saved iterates (checked before the run). Exceeding one raises
        :class:`~pgflow.flows.integration.BudgetExceeded` with the iterates saved so far.
    progress : bool
        Show a progress bar (tqdm).
    callback : callable ``callback(t, x)``, optional
        Called after every step with t = kη (a view of the iterate: copy what you keep).
    blas_threads : int or None
        BLAS threads during the steps and the monitors (default 1, as for
        :func:`pgflow.flows.integration.integrate`); None leaves BLAS alone.
    reduce : {"auto", True, False}
        Run GD in the coordinates of U = Q_U C, V = Q_V D (see :mod:`pgflow.flows.reduction`): every
        variant's iterates stay in span(U₀, Φ) × span(V₀, Ψ), so the reduced iterates are the full
        ones to rounding. "auto" (or None) wherever exact, True or raise saying why not, False never.
        A perturbation of unknown type that leaves the spans during a reduced run makes the run start
        over in full from the beginning: ``callback`` then sees the early times twice, and
        ``max_time`` applies to each of the two runs.

    Returns
    -------
    Trajectory, or list of B Trajectory for a batch
        ``dynamics`` is ``Dynamics("gd", variant, step_size, ...)``; ``stats.nfev`` counts gradient
        evaluations: one a step, except alternating GD, whose block gradients each cost the
        problem's ``PARTIAL_GRAD_COST`` of a gradient (half for
        :class:`~pgflow.flows.problems.MatrixFactorization`, a whole one for problems without a
        block gradient).

    Raises
    ------
    DivergenceError
        A non-finite gradient (checked every step) or f > ``max_loss`` (checked at recorded steps);
        says at which step (and, for a batch, which members), and carries the trajectory recorded
        before it.

    Examples
    --------
    >>> from pgflow.flows import MatrixFactorization, init
    >>> p = MatrixFactorization.random(m=6, n=5, rank=2, width=2, seed=0)
    >>> gd = gradient_descent(p, init.gaussian(p, 0.1, seed=1), step_size=0.1, n_steps=400, save_every=100)
    >>> gd.t.tolist(), bool(gd.monitors["loss"][-1] < 1e-8)
    ([0.0, 10.0, 20.0, 30.0, 40.0], True)
    """
    started = time.perf_counter()
    eta = positive(step_size, "step_size")
    n_steps = _steps(eta, n_steps, t_end)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    ensure_consistent(problem, check)
    if variant != "simultaneous" and len(problem.layout) != 2:
        raise ValueError(f"variant={variant!r} needs a problem with two factors (U, V)")
    if perturbation is not None:
        if np.ndim(x0) != 1:
            raise ValueError("a perturbed GD run takes one initial state of shape (dim,), not a batch")
        if variant != "simultaneous":
            raise ValueError(f"perturbation needs variant='simultaneous' (Euler on the perturbed flow), got {variant!r}")
        flow = PerturbedGradientFlow(problem, perturbation, perturbation_form, check=False)
        dynamics = Dynamics("gd", variant=variant, step_size=eta, form=perturbation_form,
                            perturbation=perturbation.describe())
    else:
        flow = ScaledGradientFlow(problem, check=False) if variant == "scaled" else GradientFlow(problem, check=False)
        dynamics = Dynamics("gd", variant=variant, step_size=eta)
    x0 = problem.check_state(x0)
    with blas.limit(blas_threads):  # the bases' QRs, under the run's thread limit
        plan = reduction.plan(flow, x0, reduce)
    if plan.reduced:
        options = dict(variant=variant, perturbation=getattr(plan.flow, "perturbation", None),
                       perturbation_form=perturbation_form, save_every=save_every, max_loss=max_loss, check=False,
                       max_time=max_time, max_memory=max_memory, progress=progress, blas_threads=blas_threads)
        try:
            return plan.solve(gradient_descent, (plan.flow.problem, plan.start, eta, n_steps), options,
                              monitors=monitors, default_monitors=default_monitors,
                              meta={**problem.describe(), **(provenance or {})}, dynamics=dynamics,
                              blas_threads=blas_threads, callback=callback, started=started)
        except reduction.LeftSpans as exc:
            plan = reduction.in_full(exc, reduce, plan.full_dim)

    if variant == "alternating":
        step = _alternating_step(problem, eta)
    else:
        def step(k, x, g):  # explicit Euler on the flow: x₊ = x + η F(kη, x)
            flow(k * eta, x, out=g)
            g *= eta
            x += g
            return 1

    return _descend(problem, x0, eta, n_steps, step, dynamics, save_every=save_every,
                    monitors=_monitors.chosen(problem, monitors, default_monitors), extra_monitors=flow.monitors(),
                    max_loss=max_loss, provenance={**(provenance or {}), **plan.meta()},
                    max_time=max_time, max_memory=max_memory, progress=progress, callback=callback,
                    blas_threads=blas_threads)


def _steps(eta: float, n_steps, t_end) -> int:
    """The number of GD steps from exactly one of ``n_steps`` and ``t_end``."""
    if (n_steps is None) == (t_end is None):
        raise TypeError("give the length of the run as n_steps or as t_end (= n_steps × step_size), "
                        f"exactly one of them; got n_steps={n_steps!r}, t_end={t_end!r}")
    if n_steps is not None:
        return positive_int(n_steps, "n_steps")
    return number_of_steps(eta, positive(t_end, "t_end"))


def _alternating_step(problem, eta: float):
    """The step ``step(k, x, g)`` of alternating GD: U₊ = U − η∇_U f(U, V), then V₊ = V − η∇_V f(U₊, V).

    Each block's gradient comes from the problem's ``partial_grad`` (for a
    :class:`~pgflow.flows.problems.MatrixFactorization` only that block's half of the products; the
    two halves cost one gradient). The step returns its share of ``nfev``: 2 × ``PARTIAL_GRAD_COST``.
    """
    blocks = [name for name, _ in problem.layout]
    cost = 2 * problem.PARTIAL_GRAD_COST
    bound = {}

    def step(k, x, g):
        if bound.get("x") is not x or bound.get("g") is not g:
            # _descend steps the same buffers every time: unpack them once
            bound.update(x=x, g=g, views=list(zip(problem.unpack(x), problem.unpack(g))))
        for name, (X, G) in zip(blocks, bound["views"]):  # V's block sees the new U
            problem.partial_grad(x, name, out=G)
            G *= eta
            X -= G
        return cost

    return step


@renamed(record_every="save_every")
@reporting_nonfinite_monitors
def minibatch_gradient_descent(problem, x0, step_size: float, n_steps: int, batch_size: int, seed, *,
                               save_every: int | None = None, monitors=None, default_monitors: bool = True,
                               max_loss: float | None = None, provenance: dict | None = None):
    """Mini-batch sensing GD: step k uses a fresh batch B_k of ``batch_size`` measurements.

    x₊ = x − η∇f_{B_k}(x), where f_B is the unbiased mini-batch loss of
    :meth:`pgflow.flows.sensing.MatrixSensing.minibatch` (so E[∇f_B] = ∇f) and
    B_k = :func:`pgflow.flows.seeds.batch_indices` (seed, k, p, b): step k's batch is the same
    whatever ``n_steps`` is. The recorded monitors are those of the full problem.

    Parameters
    ----------
    problem : MatrixSensing (or MatrixCompletion)
    x0, step_size, n_steps, save_every, monitors, default_monitors, max_loss, provenance
        As for :func:`gradient_descent`.
    batch_size : int
        1 ≤ b ≤ p.
    seed : int or numpy.random.SeedSequence

    Returns
    -------
    Trajectory
    """
    if not callable(getattr(problem, "minibatch", None)):
        raise TypeError(f"problem must be a sensing problem with minibatch(indices), got {type(problem).__name__}")
    eta = positive(step_size, "step_size")
    p = problem.operator.n_measurements
    batch_size = positive_int(batch_size, "batch_size")
    if batch_size > p:
        raise ValueError(f"batch_size must be <= the number of measurements {p}, got {batch_size}")
    child_rng(seed, 0)  # validate the seed before the run, not at step 1

    def step(k, x, g):
        problem.minibatch(batch_indices(seed, k, p, batch_size)).grad(x, out=g)
        g *= eta
        x -= g
        return 1

    provenance = {"minibatch_size": batch_size, "minibatch_seed": seed_record(seed), **(provenance or {}),
                  **reduction.Plan("mini-batch sensing gradients mix every direction of UVᵀ", problem.dim).meta()}
    return _descend(problem, x0, eta, n_steps, step, Dynamics("gd", variant="minibatch", step_size=eta),
                    save_every=save_every, monitors=_monitors.chosen(problem, monitors, default_monitors),
                    extra_monitors={}, max_loss=max_loss,
                    provenance=provenance)


def _descend(problem, x0, eta: float, n_steps: int, step, dynamics: Dynamics, *, save_every, monitors,
             extra_monitors, max_loss, provenance, max_time=None, max_memory=DEFAULT_MAX_MEMORY, progress=False,
             callback=None, blas_threads=1):
    """The one GD loop: ``step(k, x, g)`` moves x_k to x_{k+1} in place, leaves its increment in g
    (checked for finiteness) and returns how many gradients it evaluated. ``x`` may be a batch;
    ``x`` and ``g`` are the same C-contiguous buffers at every step. The steps and the monitors run under
    one BLAS thread limit."""
    # an overflow is a divergence, reported by the finiteness check with its step, not a floating-point warning
    # (one BLAS thread computes in this thread, where numpy sees the overflow flags)
    with blas.limit(blas_threads), np.errstate(over="ignore", invalid="ignore"):
        return _descend_limited(problem, x0, eta, n_steps, step, dynamics, save_every=save_every, monitors=monitors,
                                extra_monitors=extra_monitors, max_loss=max_loss, provenance=provenance,
                                max_time=max_time, max_memory=max_memory, progress=progress, callback=callback)


def _descend_limited(problem, x0, eta: float, n_steps: int, step, dynamics: Dynamics, *, save_every, monitors,
                     extra_monitors, max_loss, provenance, max_time, max_memory, progress, callback):
    x = problem.check_state(x0)
    n_steps = positive_int(n_steps, "n_steps")
    # a bounded record by default: evenly spaced steps, so that monitors and memory do not grow with n_steps
    save_every = -(-n_steps // SAVED_BY_DEFAULT) if save_every is None else positive_int(save_every, "save_every")
    max_time = None if max_time is None else positive(max_time, "max_time")
    max_memory = positive_int(max_memory, "max_memory")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable callback(t, x), got {type(callback).__name__}")
    f0 = np.max(problem.loss(x))
    if not np.isfinite(f0):
        raise ValueError(f"x0: the loss at the initial state is {f0} (overflow, or a non-finite entry)")
    f0 = float(f0)
    if max_loss is None:  # far beyond the start and the target's own scale: only a divergence gets there
        target = getattr(problem, "target", None)
        max_loss = 1e6 * max(abs(f0), target.frobenius_norm ** 2 if target is not None else 1.0)
    max_loss = positive(max_loss, "max_loss")
    loss_bound = _loss_bound(problem)
    mons = {**monitors, **extra_monitors}

    recorded = sorted(set(range(0, n_steps + 1, save_every)) | {n_steps})
    needed = len(recorded) * x.nbytes
    if needed > max_memory:
        raise BudgetExceeded(f"saving {len(recorded)} iterates of {x.size} values needs {needed / 2**20:.0f} MiB, more "
                             f"than max_memory ({max_memory / 2**20:.0f} MiB): raise save_every or max_memory", 0.0,
                             None, "max_memory")
    X = np.empty((len(recorded),) + x.shape)
    X[0] = x
    meta = {**problem.describe(), "step_size": eta, "n_steps": n_steps, "save_every": save_every,
            "max_loss": max_loss, "version": package_version(), **(provenance or {})}
    if x.ndim == 2:
        meta["batch_size"] = x.shape[0]

    def trajectory(t, states, info, stats):
        m0 = time.perf_counter()
        values = _monitors.evaluate(mons, t, states, warn=False)
        return Trajectory(t=t, x=states, layout=problem.layout, monitors=values, meta=info, dynamics=dynamics,
                          stats=stats.replace(monitor_time=time.perf_counter() - m0),
                          accuracy=rounding_bound(t / eta, states),
                          dense=PiecewiseLinear(t, states) if len(t) > 1 else None)

    def result(n_rec, wall, extra=None):
        t = eta * np.asarray(recorded[:n_rec], dtype=float)
        stats = SolverStats(method="gradient_descent", nfev=int(round(nfev)), steps=recorded[n_rec - 1],
                            wall_time=wall, t_reached=float(t[-1]))
        info = {**meta, **(extra or {})}
        if x.ndim == 1:
            return trajectory(t, X[:n_rec].copy(), info, stats)
        return [trajectory(t, X[:n_rec, b].copy(), {**info, "member": b}, stats) for b in range(x.shape[0])]

    def fail(k, why, bad):
        members = "" if x.ndim == 1 else f" in batch members {np.flatnonzero(bad).tolist()}"
        raise DivergenceError(f"gradient descent diverged at step {k} (t = {k * eta:g}, step_size = {eta:g})"
                              f"{members}: {why}", k, result(r, time.perf_counter() - start, {"diverged_at_step": k}))

    g = np.empty_like(x)
    nfev, r = 0, 1
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm  # only when asked: a progress bar is for people watching
        bar = tqdm(total=n_steps, desc="gradient descent", unit="step")
    try:
        for k in range(1, n_steps + 1):
            nfev += step(k - 1, x, g)
            if not math.isfinite(np.vdot(g, g)):  # one reduction; overflow anywhere makes it inf or nan
                fail(k, "non-finite gradient (an entry or its squared norm)", ~np.isfinite(np.square(g).sum(axis=-1)))
            if k == recorded[r]:
                if not np.all(loss_bound(x) <= max_loss):  # the bound says f may be too large: look
                    loss = problem.loss(x)
                    if not np.all(loss <= max_loss):
                        fail(k, f"loss above max_loss = {max_loss:g}", ~(loss <= max_loss))
                X[r] = x
                r += 1
                if bar is not None:
                    bar.update(k - bar.n)
                if max_time is not None and time.perf_counter() - start > max_time:
                    raise BudgetExceeded(f"gradient descent stopped at step {k} (t = {k * eta:g}) of {n_steps}: budget "
                                         f"max_time: {time.perf_counter() - start:.1f} s of wall time, the budget is "
                                         f"{max_time:g} s", k * eta, result(r, time.perf_counter() - start),
                                         "max_time")
            if callback is not None:
                callback(k * eta, x)
    finally:
        if bar is not None:
            bar.close()
    return result(len(recorded), time.perf_counter() - start)


def _loss_bound(problem):
    """A cheap upper bound ``bound(x)`` of f, so that the divergence check computes f only when it may be
    large: f = c‖UVᵀ − Σ‖²_F ≤ c(‖U‖_F‖V‖_F + ‖Σ‖_F)² for pgflow's factorization problems (two norms instead
    of the QRs of f; 1 + 1e-9 covers their rounding), else f itself."""
    if not isinstance(problem, FACTORIZATIONS):
        return problem.loss
    scale, size = problem.LOSS_SCALE, problem.target.frobenius_norm

    def bound(x):
        U, V = problem.factors(x)
        norms = np.linalg.norm(U, axis=(-2, -1)) * np.linalg.norm(V, axis=(-2, -1))
        return (1 + 1e-9) * scale * (norms + size) ** 2

    return bound


def rounding_bound(steps: np.ndarray, states: np.ndarray) -> Accuracy:
    """GD's error against itself: only rounding. Each step x₊ = x − η∇f(x) rounds its O(dim)
    floating-point operations per entry to relative ε, so after k steps the iterate carries at most
    about k·ε·max_{j≤k}‖x_j‖ (taken over the saved iterates), not amplified through the Jacobian: a
    bound on the arithmetic, not on the distance to any flow (that is the discretization study's job)."""
    norms = np.maximum.accumulate(np.linalg.norm(states, axis=-1)) if len(states) else np.zeros(0)
    return Accuracy(estimate=np.finfo(float).eps * np.rint(steps) * norms, how="rounding")
