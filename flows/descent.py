"""Gradient descent: explicit Euler on the gradient flow, through the same problem gradient."""

from __future__ import annotations

import time

import numpy as np

from . import monitors as _monitors
from ._checks import positive, positive_int
from .trajectory import PiecewiseLinear, Trajectory, package_version

VARIANTS = ("simultaneous", "alternating", "scaled")


class DivergenceError(FloatingPointError):
    """GD left every sensible bound: carries the ``step`` and the ``partial`` trajectory before it."""

    def __init__(self, message: str, step: int, partial: Trajectory):
        super().__init__(message)
        self.step = step
        self.partial = partial


def gradient_descent(problem, x0, step_size: float, n_steps: int, *, variant: str = "simultaneous",
                     record_every: int = 1, monitors=None, max_loss: float | None = None,
                     provenance: dict | None = None) -> Trajectory:
    """Run GD and return it as a :class:`Trajectory` with times t = k·η.

    simultaneous: U₊ = U + ηRV, V₊ = V + ηRᵀU (x₊ = x − η∇f(x)), explicit Euler on GF.
    alternating: U₊ = U + ηRV, then V₊ = V + ηR₊ᵀU₊ with R₊ = Σ − U₊Vᵀ (V uses the new U).
    scaled (ScaledGD, Tong–Ma–Chi): U₊ = U − η∇_U f (VᵀV)⁻¹, V₊ = V − η∇_V f (UᵀU)⁻¹.

    Parameters
    ----------
    problem : problem object
    x0 : array_like, shape (dim,)
    step_size : float
        η > 0.
    n_steps : int
        Number of steps, ≥ 1.
    variant : {"simultaneous", "alternating", "scaled"}
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
    Trajectory

    Raises
    ------
    DivergenceError
        A non-finite gradient (checked every step) or f > ``max_loss`` (checked at recorded steps);
        says at which step, and carries the trajectory recorded before it.

    Examples
    --------
    >>> from flows import MatrixFactorization, init
    >>> p = MatrixFactorization.random(m=6, n=5, rank=2, width=2, seed=0)
    >>> gd = gradient_descent(p, init.gaussian(p, 0.1, seed=1), step_size=0.1, n_steps=400, record_every=100)
    >>> gd.t.tolist(), bool(gd.monitors["loss"][-1] < 1e-8)
    ([0.0, 10.0, 20.0, 30.0, 40.0], True)
    """
    x = problem.check_state(x0)
    if x.ndim != 1:
        raise ValueError(f"x0 must have shape ({problem.dim},), got {x.shape}")
    eta = positive(step_size, "step_size")
    n_steps = positive_int(n_steps, "n_steps")
    record_every = positive_int(record_every, "record_every")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    blocks = list(problem.slices().values())
    if variant != "simultaneous" and len(blocks) != 2:
        raise ValueError(f"variant={variant!r} needs a problem with two factors (U, V)")
    f0 = float(problem.loss(x))
    if max_loss is None:
        max_loss = 1e6 * max(f0, problem.target.frobenius_norm ** 2)
    max_loss = positive(max_loss, "max_loss")
    mons = _monitors.check(_monitors.default(problem) if monitors is None else monitors)

    recorded = sorted(set(range(0, n_steps + 1, record_every)) | {n_steps})
    X = np.empty((len(recorded), problem.dim))
    X[0] = x
    meta = {**problem.describe(), "method": f"gradient_descent/{variant}", "step_size": eta,
            "n_steps": n_steps, "record_every": record_every, "max_loss": max_loss,
            "version": package_version(), **(provenance or {})}

    def result(n_rec, wall, extra=None):
        t = eta * np.asarray(recorded[:n_rec], dtype=float)
        m0 = time.perf_counter()
        values = _monitors.evaluate(mons, t, X[:n_rec])
        info = {**meta, "nfev": nfev, "steps": recorded[n_rec - 1], "wall_time": wall,
                "monitor_time": time.perf_counter() - m0, **(extra or {})}
        x_rec = X[:n_rec].copy()
        return Trajectory(t=t, x=x_rec, layout=problem.layout, monitors=values, meta=info,
                          dense=PiecewiseLinear(t, x_rec) if n_rec > 1 else None)

    def fail(k, why):
        raise DivergenceError(f"gradient descent diverged at step {k} (t = {k * eta:g}, step_size = {eta:g}): {why}",
                              k, result(r, time.perf_counter() - start, {"diverged_at_step": k}))

    g = np.empty_like(x)
    nfev, r = 0, 1
    start = time.perf_counter()
    for k in range(1, n_steps + 1):
        if variant == "simultaneous":
            problem.grad(x, out=g)
            g *= eta
            x -= g
            nfev += 1
        elif variant == "scaled":
            problem.grad(x, out=g)
            scaled_gradient(problem, x, g)
            g *= eta
            x -= g
            nfev += 1
        else:
            for sl in blocks:  # each block sees the blocks already updated before it
                problem.grad(x, out=g)
                x[sl] -= eta * g[sl]
                nfev += 1
        if not np.isfinite(g @ g):
            fail(k, "non-finite gradient")
        if k == recorded[r]:
            if not problem.loss(x) <= max_loss:
                fail(k, f"loss above max_loss = {max_loss:g}")
            X[r] = x
            r += 1
    return result(len(recorded), time.perf_counter() - start)


def scaled_gradient(problem, x, g):
    """Precondition ∇f in place: G_U ← G_U (VᵀV)⁻¹, G_V ← G_V (UᵀU)⁻¹ (ScaledGD's direction)."""
    U, V = problem.unpack(x)
    GU, GV = problem.unpack(g)
    try:
        GU[...] = np.linalg.solve(V.T @ V, GU.T).T
        GV[...] = np.linalg.solve(U.T @ U, GV.T).T
    except np.linalg.LinAlgError as exc:
        raise np.linalg.LinAlgError("ScaledGD needs UᵀU and VᵀV invertible (full column rank factors)") from exc
    return g
