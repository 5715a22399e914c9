"""Gradient descent: explicit Euler on the (perturbed) gradient flow, through the same problem gradient.

Every variant is a step rule plugged into one loop (:func:`_descend`), which records, monitors and
checks for divergence.
"""

from __future__ import annotations

import math
import time

import numpy as np

from . import monitors as _monitors
from ._checks import positive, positive_int, seed_record
from .perturbations import PerturbedGradientFlow, batch_indices, indexed_rng
from .problems import MatrixFactorization, factor_gradient, target_workspace
from .trajectory import PiecewiseLinear, Trajectory, package_version

VARIANTS = ("simultaneous", "alternating", "scaled")


class DivergenceError(FloatingPointError):
    """GD left every sensible bound: carries the ``step`` and the ``partial`` trajectory before it."""

    def __init__(self, message: str, step: int, partial: Trajectory):
        super().__init__(message)
        self.step = step
        self.partial = partial


def gradient_descent(problem, x0, step_size: float, n_steps: int, *, variant: str = "simultaneous",
                     perturbation=None, perturbation_form: str = "residual", record_every: int = 1,
                     monitors=None, max_loss: float | None = None, provenance: dict | None = None):
    """Run GD and return it as a :class:`Trajectory` with times t = k·η.

    simultaneous: U₊ = U + ηRV, V₊ = V + ηRᵀU (x₊ = x − η∇f(x)), explicit Euler on GF.
    alternating: U₊ = U + ηRV, then V₊ = V + ηR₊ᵀU₊ with R₊ = Σ − U₊Vᵀ (V uses the new U); each
    block step of a :class:`flows.MatrixFactorization` computes only its own gradient block.
    scaled (ScaledGD, Tong–Ma–Chi): U₊ = U − η∇_U f (VᵀV)⁻¹, V₊ = V − η∇_V f (UᵀU)⁻¹.
    perturbed (simultaneous only): explicit Euler on the perturbed gradient flow,
    U₊ = U + η(R + E_k)V, V₊ = V + η(R + E_k)ᵀU (residual form) or x₊ = x − η(∇f(x) − e_k)
    (additive form), with E_k = E(kη, x_k) from a model of :mod:`flows.perturbations`.

    Parameters
    ----------
    problem : problem object
    x0 : array_like, shape (dim,) or (B, dim)
        Initial state, or a batch of B initial states run together (one vectorized step for all;
        not with a perturbation).
    step_size : float
        η > 0.
    n_steps : int
        Number of steps, ≥ 1.
    variant : {"simultaneous", "alternating", "scaled"}
    perturbation : perturbation model, optional
        E(t, x); see :class:`flows.perturbations.PerturbedGradientFlow`. Its ‖E‖ and bound are
        recorded as the monitors "perturbation_norm" and "perturbation_bound".
    perturbation_form : {"residual", "additive"}
    record_every : int
        Save every this many steps (the first and last state are always saved).
    monitors : dict of name -> ``fn(t, x)``, optional
        Default: :func:`flows.monitors.default`.
    max_loss : float, optional
        Divergence bound on f at the recorded steps; default 10⁶·max(f(x₀), ‖Σ‖²_F).
    provenance : dict, optional
        Extra entries for ``meta``.

    Returns
    -------
    Trajectory, or list of B Trajectory for a batch
        ``meta["nfev"]`` counts gradient evaluations: one a step, except alternating GD on problems
        without a block gradient (all but :class:`flows.MatrixFactorization`), whose two block
        steps each evaluate the full gradient and count two.

    Raises
    ------
    DivergenceError
        A non-finite gradient (checked every step) or f > ``max_loss`` (checked at recorded steps);
        says at which step (and, for a batch, which members), and carries the trajectory recorded
        before it.

    Examples
    --------
    >>> from flows import MatrixFactorization, init
    >>> p = MatrixFactorization.random(m=6, n=5, rank=2, width=2, seed=0)
    >>> gd = gradient_descent(p, init.gaussian(p, 0.1, seed=1), step_size=0.1, n_steps=400, record_every=100)
    >>> gd.t.tolist(), bool(gd.monitors["loss"][-1] < 1e-8)
    ([0.0, 10.0, 20.0, 30.0, 40.0], True)
    """
    eta = positive(step_size, "step_size")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if variant != "simultaneous" and len(problem.layout) != 2:
        raise ValueError(f"variant={variant!r} needs a problem with two factors (U, V)")
    extra_monitors, method = {}, f"gradient_descent/{variant}"

    if perturbation is not None:
        if np.ndim(x0) != 1:
            raise ValueError("a perturbed GD run takes one initial state of shape (dim,), not a batch")
        if variant != "simultaneous":
            raise ValueError(f"perturbation needs variant='simultaneous' (Euler on the perturbed flow), got {variant!r}")
        pgf = PerturbedGradientFlow(problem, perturbation, perturbation_form)
        extra_monitors = pgf.monitors()
        method = f"gradient_descent/perturbed-{perturbation_form}"

        def direction(k, x, g):
            problem.grad(x, out=g)
            g -= pgf.perturbation_term(k * eta, x)
    elif variant == "simultaneous":
        def direction(k, x, g):
            problem.grad(x, out=g)
    elif variant == "scaled":
        def direction(k, x, g):
            scaled_gradient(problem, x, problem.grad(x, out=g))

    if variant == "alternating":
        step = _alternating_step(problem, eta)
    else:
        def step(k, x, g):  # explicit Euler along the direction
            direction(k, x, g)
            g *= eta
            x -= g
            return 1

    meta = {"method": method, **({"perturbation": perturbation.describe(), "perturbation_form": perturbation_form}
                                 if perturbation is not None else {})}
    return _descend(problem, x0, eta, n_steps, step, record_every=record_every, monitors=monitors,
                    extra_monitors=extra_monitors, max_loss=max_loss, meta=meta, provenance=provenance)


def _alternating_step(problem, eta: float):
    """The step ``step(k, x, g)`` of alternating GD: U₊ = U − η∇_U f(U, V), then V₊ = V − η∇_V f(U₊, V).

    For a :class:`flows.MatrixFactorization` each block computes only its own gradient with
    :func:`flows.problems.factor_gradient`, one of the two halves its full gradient is made of (same
    products, so the same numbers): ∇_U f = Wuᵀ(Wv V) = U VᵀV − ΣV and ∇_V f = Wvᵀ(Wu U) = V UᵀU −
    ΣᵀU. The two halves cost one gradient, and the step returns 1 (its share of ``nfev``). Other
    problems have no block gradient: each block step evaluates the full ∇f and the step returns 2.
    """
    if not isinstance(problem, MatrixFactorization):
        blocks = tuple(problem.slices().values())

        def step(k, x, g):
            for sl in blocks:  # V's block sees the new U
                problem.grad(x, out=g)
                x[..., sl] -= eta * g[..., sl]
            return 2
        return step

    width, bound = problem.width, {}

    def step(k, x, g):
        if bound.get("x") is not x or bound.get("g") is not g:
            # _descend steps the same buffers every time: unpacking them and sizing the workspace
            # once saves a third of a small step (a single state is a stack of one)
            X, G = x.reshape(-1, problem.dim), g.reshape(-1, problem.dim)
            bound.update(x=x, g=g, views=(*problem.unpack(X), *problem.unpack(G)),
                         work=target_workspace(problem.target, width, len(X), stacked=False))
        U, V, GU, GV = bound["views"]  # stacks (S, rows, k)
        (Wu, Wv), (Mu, Mv) = bound["work"]
        np.copyto(Wu[:, :width], U.mT)
        np.copyto(Wv[:, :width], V.mT)
        factor_gradient(Wu, Wv, V, Mv, GU)  # ∇_U f(U, V)
        GU *= eta
        U -= GU
        np.copyto(Wu[:, :width], U.mT)  # V is unchanged, and so is Wv
        factor_gradient(Wv, Wu, U, Mu, GV)  # ∇_V f(U₊, V)
        GV *= eta
        V -= GV
        return 1

    return step


def minibatch_gradient_descent(problem, x0, step_size: float, n_steps: int, batch_size: int, seed, *,
                               record_every: int = 1, monitors=None, max_loss: float | None = None,
                               provenance: dict | None = None):
    """Mini-batch sensing GD: step k uses a fresh batch B_k of ``batch_size`` measurements.

    x₊ = x − η∇f_{B_k}(x), where f_B is the unbiased mini-batch loss of
    :meth:`flows.sensing.MatrixSensing.minibatch` (so E[∇f_B] = ∇f) and
    B_k = :func:`flows.perturbations.batch_indices` (seed, k, p, b): step k's batch is the same
    whatever ``n_steps`` is. The recorded monitors are those of the full problem.

    Parameters
    ----------
    problem : MatrixSensing (or MatrixCompletion)
    x0, step_size, n_steps, record_every, monitors, max_loss, provenance
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
    indexed_rng(seed, 0)  # validate the seed before the run, not at step 1

    def step(k, x, g):
        problem.minibatch(batch_indices(seed, k, p, batch_size)).grad(x, out=g)
        g *= eta
        x -= g
        return 1

    meta = {"method": "minibatch_gradient_descent", "batch_size": batch_size,
            "seed": seed_record(seed)}
    return _descend(problem, x0, eta, n_steps, step, record_every=record_every, monitors=monitors,
                    extra_monitors={}, max_loss=max_loss, meta=meta, provenance=provenance)


def _descend(problem, x0, eta: float, n_steps: int, step, *, record_every, monitors, extra_monitors, max_loss,
             meta, provenance):
    """The one GD loop: ``step(k, x, g)`` moves x_k to x_{k+1} in place, leaves its direction in g
    (checked for finiteness) and returns how many gradients it evaluated. ``x`` may be a batch;
    ``x`` and ``g`` are the same C-contiguous buffers at every step."""
    x = problem.check_state(x0)
    n_steps = positive_int(n_steps, "n_steps")
    record_every = positive_int(record_every, "record_every")
    f0 = float(np.max(problem.loss(x)))
    if max_loss is None:
        max_loss = 1e6 * max(f0, problem.target.frobenius_norm ** 2)
    max_loss = positive(max_loss, "max_loss")
    mons = {**_monitors.check(_monitors.default(problem) if monitors is None else monitors), **extra_monitors}

    recorded = sorted(set(range(0, n_steps + 1, record_every)) | {n_steps})
    X = np.empty((len(recorded),) + x.shape)
    X[0] = x
    meta = {**problem.describe(), **meta, "step_size": eta, "n_steps": n_steps, "record_every": record_every,
            "max_loss": max_loss, "version": package_version(), **(provenance or {})}
    if x.ndim == 2:
        meta["batch_size"] = x.shape[0]

    def trajectory(t, states, info):
        m0 = time.perf_counter()
        values = _monitors.evaluate(mons, t, states)
        return Trajectory(t=t, x=states, layout=problem.layout, monitors=values,
                          meta={**info, "monitor_time": time.perf_counter() - m0},
                          dense=PiecewiseLinear(t, states) if len(t) > 1 else None)

    def result(n_rec, wall, extra=None):
        t = eta * np.asarray(recorded[:n_rec], dtype=float)
        info = {**meta, "nfev": nfev, "steps": recorded[n_rec - 1], "wall_time": wall, **(extra or {})}
        if x.ndim == 1:
            return trajectory(t, X[:n_rec].copy(), info)
        return [trajectory(t, X[:n_rec, b].copy(), {**info, "member": b}) for b in range(x.shape[0])]

    def fail(k, why, bad):
        members = "" if x.ndim == 1 else f" in batch members {np.flatnonzero(bad).tolist()}"
        raise DivergenceError(f"gradient descent diverged at step {k} (t = {k * eta:g}, step_size = {eta:g})"
                              f"{members}: {why}", k, result(r, time.perf_counter() - start, {"diverged_at_step": k}))

    g = np.empty_like(x)
    nfev, r = 0, 1
    start = time.perf_counter()
    for k in range(1, n_steps + 1):
        nfev += step(k - 1, x, g)
        if not math.isfinite(np.vdot(g, g)):  # one reduction; overflow anywhere makes it inf or nan
            fail(k, "non-finite gradient", ~np.isfinite(g).all(axis=-1))
        if k == recorded[r]:
            loss = problem.loss(x)
            if not np.all(loss <= max_loss):
                fail(k, f"loss above max_loss = {max_loss:g}", ~(loss <= max_loss))
            X[r] = x
            r += 1
    return result(len(recorded), time.perf_counter() - start)


def scaled_gradient(problem, x, g):
    """Precondition ∇f in place: G_U ← G_U (VᵀV)⁻¹, G_V ← G_V (UᵀU)⁻¹ (ScaledGD's direction)."""
    U, V = problem.unpack(x)
    GU, GV = problem.unpack(g)
    try:
        GU[...] = np.linalg.solve(V.mT @ V, GU.mT).mT
        GV[...] = np.linalg.solve(U.mT @ U, GV.mT).mT
    except np.linalg.LinAlgError as exc:
        raise np.linalg.LinAlgError("ScaledGD needs UᵀU and VᵀV invertible (full column rank factors)") from exc
    return g
