r"""Where gradient descent stops following the flow: sharpness, critical step, departure, oscillation.

GD with step η is linearly stable at a minimum only if its sharpness λ_max(∇²f) is at most 2/η. At
a global minimum of the factorization loss λ_max = ‖U‖²_op + ‖V‖²_op ≥ 2σ₁, with equality at the
balanced minima, so no global minimum is stable once ησ₁ > 1 (docs/math/invariants.md). On a balanced spectral
mode u = ab GD is the map u₊ = u(1 + η(σ − u))² (docs/math/closed-forms.md), whose fixed point u = σ has
multiplier 1 − 2ησ:

- ησ < 1: GD converges to u = σ;
- ησ = 1: period-doubling bifurcation; for 1 < ησ ≲ 1.24 GD settles on a period-2 orbit around σ,
  followed by a period-doubling cascade into chaos (with periodic windows, e.g. period 3 near
  ησ = 1.7) — bounded, but never converging;
- ησ < 2 keeps the interval [0, σ + 2/η] invariant (the map's interior maximum
  4(1 + ησ)³/(27η) stays below the repelling fixed point u = σ + 2/η exactly when ησ ≤ 2), so a
  start 0 < u₀ < σ + 2/η stays bounded; for ησ > 2 a generic start escapes to infinity.

That is the mode in isolation. In a full matrix problem the directions off the mode (imbalance,
the other columns) are not stable throughout the chaotic range: on a 6×5 rank-2 example the
period-2 orbit persists for ησ₁ up to 1.2, but GD diverged at ησ₁ = 1.5, even from a spectral start.

:func:`sharpness` computes λ_max by Lanczos on the Hessian-vector product, :func:`sharpness_along`
follows it along a trajectory (to plot against 2/η), :func:`departure` finds the step where GD leaves
the flow and :func:`oscillation_period` detects period-2 (or longer) cycles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse.linalg import eigsh

from ..flows import init
from ..flows.checks import positive, positive_int, renamed
from ..flows.seeds import seed_rng

from .compare import Comparison

# ARPACK needs room for its Krylov basis; below this size the dense Hessian is cheaper and exact.
_DENSE_BELOW = 16


def sharpness(problem, x, *, seed=0, tol: float = 0.0) -> float:
    """λ_max(∇²f(x)), the largest (algebraic) Hessian eigenvalue, by Lanczos on ``problem.hvp``.

    Parameters
    ----------
    problem : problem object
    x : array_like, shape (dim,)
    seed : int
        Seed of Lanczos' starting vector (ARPACK's own default is not reproducible across builds).
    tol : float
        Relative accuracy passed to ``eigsh``; 0 means machine precision.

    Returns
    -------
    float

    Notes
    -----
    Problems with dim < 16 use the dense ``problem.hessian(x)`` (ARPACK needs a Krylov space
    larger than that).
    """
    x = problem.check_state(x, "x")
    if x.ndim != 1:
        raise ValueError(f"x must have shape ({problem.dim},), got {x.shape}")
    if problem.dim < _DENSE_BELOW:
        return float(np.linalg.eigvalsh(problem.hessian(x))[-1])
    v0 = seed_rng(seed).standard_normal(problem.dim)
    value = eigsh(problem.hvp_operator(x), k=1, which="LA", v0=v0, tol=positive(tol, "tol", allow_zero=True),
                  return_eigenvectors=False)
    return float(value[0])


@dataclass(frozen=True, eq=False)
class SharpnessTrace:
    """λ_max(∇²f) along a trajectory.

    Attributes
    ----------
    t : ndarray, shape (T,)
    sharpness : ndarray, shape (T,)
    step_size : float or None
        η of a GD trajectory (None for a flow).
    """

    t: np.ndarray
    sharpness: np.ndarray
    step_size: float | None

    @property
    def threshold(self) -> float | None:
        """2/η, the stability limit of GD on a quadratic (None for a flow)."""
        return None if self.step_size is None else 2.0 / self.step_size


@renamed(every="stride")
def sharpness_along(problem, trajectory, *, stride: int = 1, seed=0) -> SharpnessTrace:
    """:func:`sharpness` at every ``stride``-th saved state of ``trajectory`` (and at the last one).

    Parameters
    ----------
    problem : problem object
    trajectory : Trajectory
    stride : int
        Take every this many saved states.
    seed : int
        Seed of the Lanczos starting vector (the same at every state).

    Returns
    -------
    SharpnessTrace
    """
    stride = positive_int(stride, "stride")
    idx = np.unique(np.r_[np.arange(0, len(trajectory.t), stride), len(trajectory.t) - 1])
    values = np.array([sharpness(problem, trajectory.x[i], seed=seed) for i in idx])
    record = trajectory.dynamics
    return SharpnessTrace(t=trajectory.t[idx].copy(), sharpness=values,
                          step_size=None if record is None else record.step_size)


def minimum_sharpness(problem, x) -> float:
    """‖U‖²_op + ‖V‖²_op: λ_max(∇²f) at any global minimum of the factorization loss.

    At R = 0 the Hessian's quadratic form is ‖ΔU Vᵀ + U ΔVᵀ‖²_F ≤ (‖U‖² + ‖V‖²)‖Δ‖², with equality
    for ΔU ∝ ‖V‖·u₁q_Vᵀ, ΔV ∝ ‖U‖·v₁q_Uᵀ, where u₁, q_U (v₁, q_V) are the top left and right
    singular vectors of U (of V). For the symmetric problem this is 2‖X‖²_op. Off a minimum it is
    only the prediction to compare :func:`sharpness` with.

    Parameters
    ----------
    problem : factorization problem
    x : array_like, shape (dim,)
    """
    U, V = problem.factors(problem.check_state(x, "x"))
    return float(np.linalg.norm(U, 2) ** 2 + np.linalg.norm(V, 2) ** 2)


def balanced_minimum(problem) -> np.ndarray:
    """The balanced global minimum U = Φ diag(√σ), V = Ψ diag(√σ) (zero columns beyond the rank).

    Raises
    ------
    ValueError
        The width is below the rank of the target (no exact minimum).
    """
    r = problem.target.rank
    if problem.width < r:
        raise ValueError(f"the problem's width ({problem.width}) must be at least the target's rank ({r})")
    return init.spectral(problem, np.sqrt(problem.target.sigma))


def critical_step_size(problem) -> float:
    """2/λ_max(∇²f) at the balanced minimum: above it no global minimum is linearly stable for GD.

    For the factorization problems λ_max = 2σ₁ there, so this is 1/σ₁; for sensing the measurement
    operator shifts it (it is computed, not assumed).
    """
    return 2.0 / sharpness(problem, balanced_minimum(problem))


@dataclass(frozen=True)
class Departure:
    """Where GD first leaves the flow.

    Attributes
    ----------
    index : int
        Index into ``comparison.t``.
    t : float
        Its time.
    step : int or None
        The GD step k = t/η (None if the compared trajectory has no step size).
    distance : float
        The relative distance there.
    """

    index: int
    t: float
    step: int | None
    distance: float


def departure(comparison: Comparison, threshold: float = 0.1, *, measure: str = "product") -> Departure | None:
    """The first time the relative distance between GD and the flow exceeds ``threshold``.

    Parameters
    ----------
    comparison : Comparison
        From ``analysis.compare(gd, flow)``.
    threshold : float
        Relative distance, > 0.
    measure : {"product", "state"}
        ‖U_aV_aᵀ − U_bV_bᵀ‖_F / ‖U_bV_bᵀ‖_F or ‖x_a − x_b‖ / ‖x_b‖.

    Returns
    -------
    Departure or None
        None if GD stays within ``threshold`` throughout.
    """
    if not isinstance(comparison, Comparison):
        raise TypeError(f"comparison must be an analysis.Comparison, got {type(comparison).__name__}")
    threshold = positive(threshold, "threshold")
    if measure not in ("product", "state"):
        raise ValueError(f"measure must be 'product' or 'state', got {measure!r}")
    rel = getattr(comparison, f"{measure}_relative")
    above = np.flatnonzero(rel > threshold)
    if above.size == 0:
        return None
    i = int(above[0])
    record = comparison.dynamics
    eta = None if record is None else record.step_size
    t = float(comparison.t[i])
    return Departure(index=i, t=t, step=None if eta is None else int(round(t / eta)), distance=float(rel[i]))


@renamed(rtol="match_rtol")
def oscillation_period(trajectory, *, max_period: int = 8, tail: int = 64, match_rtol: float = 1e-8) -> int | None:
    """The smallest period p ≤ ``max_period`` of the last ``tail`` GD iterates, if they have one.

    p is the smallest with ‖x_{k+p} − x_k‖ ≤ match_rtol·max‖x‖ for every k in the tail: 1 means GD has
    converged, 2 a period-2 oscillation (the edge-of-stability signature across a minimum), None
    no short cycle (chaos, a slow transient, or a tail too short to tell).

    Parameters
    ----------
    trajectory : Trajectory
        GD saved at every step (``save_every=1``), at least ``max_period + 2`` states.
    max_period : int
    tail : int
        How many of the last states to inspect (at least ``max_period + 2``).
    match_rtol : float
        Two states are the same when they differ by at most this, relative to the largest state.

    Returns
    -------
    int or None
    """
    max_period = positive_int(max_period, "max_period")
    tail = positive_int(tail, "tail", minimum=max_period + 2)
    match_rtol = positive(match_rtol, "match_rtol")
    record = trajectory.dynamics
    if record is None or record.kind != "gd":
        raise ValueError("trajectory must be a gradient descent run (its period is in steps)")
    if not np.allclose(np.diff(trajectory.t), record.step_size, rtol=1e-9, atol=0.0):
        raise ValueError("trajectory must save every step (save_every=1) to detect a period")
    if len(trajectory.t) < max_period + 2:
        raise ValueError(f"trajectory must hold at least max_period + 2 = {max_period + 2} states, "
                         f"got {len(trajectory.t)}")
    x = trajectory.x[-tail:]
    scale = match_rtol * float(np.max(np.linalg.norm(x, axis=1)))
    for p in range(1, min(max_period, len(x) - 1) + 1):
        if np.max(np.linalg.norm(x[p:] - x[:-p], axis=1)) <= scale:
            return p
    return None
