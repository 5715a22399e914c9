"""Distance between two trajectories over time: GD iterate k against the flow at time kη.

The distance is measured three ways: in the flat state, in the product UVᵀ (blind to the symmetry
(U, V) → (UQ, VQ) with orthogonal Q, which the loss cannot see), and in every monitor the two
trajectories share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..flows import monitors as _monitors
from ..flows.problems import lowrank_frobenius
from ..flows.trajectory import Dynamics, Trajectory

# Two times are the same grid point when they differ by less than this, relative to the time span:
# k·η computed two ways (k·η against (k/2)·(2η)) differs by a few ulps.
_TIME_RTOL = 1e-10


@dataclass(frozen=True, eq=False)
class Comparison:
    """Distances between trajectory ``a`` and trajectory ``b`` at the times of ``a``.

    Attributes
    ----------
    t : ndarray, shape (T,)
        The times of ``a`` (for GD: k·η).
    state : ndarray, shape (T,)
        ‖x_a(t) − x_b(t)‖₂.
    product : ndarray, shape (T,)
        ‖U_aV_aᵀ − U_bV_bᵀ‖_F (‖X_aX_aᵀ − X_bX_bᵀ‖_F for a symmetric problem), from thin QR factors.
    state_scale, product_scale : ndarray, shape (T,)
        ‖x_b(t)‖₂ and ‖U_bV_bᵀ‖_F, the denominators of the relative distances.
    monitors : dict of str -> ndarray, shape (T,)
        |m_a(t) − m_b(t)| for each shared monitor (‖·‖₂ over the components of a vector monitor).
    meta : dict
        How ``b`` was aligned (``"grid"``: its saved states; ``"dense"``: its dense output), the
        monitors that could not be compared and why, and the provenance of both trajectories.
    dynamics : pgflow.flows.Dynamics or None
        What moved ``a`` (for GD, its step size).
    """

    t: np.ndarray
    state: np.ndarray
    product: np.ndarray
    state_scale: np.ndarray
    product_scale: np.ndarray
    monitors: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    dynamics: Dynamics | None = None

    @property
    def state_relative(self) -> np.ndarray:
        """‖x_a − x_b‖ / ‖x_b‖, shape (T,)."""
        return _ratio(self.state, self.state_scale)

    @property
    def product_relative(self) -> np.ndarray:
        """‖U_aV_aᵀ − U_bV_bᵀ‖_F / ‖U_bV_bᵀ‖_F, shape (T,)."""
        return _ratio(self.product, self.product_scale)


def _ratio(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    return np.where(num == 0, 0.0, out)


def _grid_indices(t_a: np.ndarray, t_b: np.ndarray) -> np.ndarray | None:
    """Indices of ``t_a`` in ``t_b`` (within rounding), or None if some time of ``a`` is missing."""
    span = max(1.0, float(np.max(np.abs(t_b))))
    right = np.clip(np.searchsorted(t_b, t_a), 0, len(t_b) - 1)
    left = np.maximum(right - 1, 0)
    j = np.where(np.abs(t_b[left] - t_a) <= np.abs(t_b[right] - t_a), left, right)
    return j if np.all(np.abs(t_b[j] - t_a) <= _TIME_RTOL * span) else None


def compare(a, b, *, monitors=None, problem=None) -> Comparison:
    """Distance from trajectory ``a`` to trajectory ``b``, at the times of ``a``.

    ``b`` supplies its state at each time of ``a``: from its saved states when they include those
    times (the same grid, or a finer one holding it — no interpolation), otherwise from its dense
    output ``b.at(t)`` (no re-integration; DOP853's interpolant is far less accurate than its steps,
    so integrate ``b`` with ``t_eval`` on the grid of ``a`` when accuracy matters).

    Parameters
    ----------
    a : Trajectory
        Usually GD (times k·η).
    b : Trajectory
        Usually the flow; must cover the times of ``a`` and have the same factor layout.
    monitors : dict of name -> ``fn(t, x)``, optional
        Used only when ``b`` is read from its dense output, to evaluate the shared monitors on the
        interpolated states. Default: :func:`pgflow.flows.monitors.default` of ``problem`` if given;
        with neither, monitors are compared only on a shared grid (skipped ones are listed in
        ``meta["skipped_monitors"]``).
    problem : problem object, optional
        See ``monitors``.

    Returns
    -------
    Comparison

    Examples
    --------
    >>> from pgflow.flows import MatrixFactorization, GradientFlow, gradient_descent, init, integrate
    >>> p = MatrixFactorization.random(m=5, n=4, rank=2, width=2, seed=0)
    >>> x0 = init.gaussian(p, 0.3, seed=1)
    >>> gd = gradient_descent(p, x0, step_size=0.01, n_steps=100)
    >>> gf = integrate(GradientFlow(p), x0, 1.0, t_eval=gd.t, rtol=1e-10, atol=1e-12)
    >>> c = compare(gd, gf)
    >>> c.meta["alignment"], c.t.shape, bool(c.product[-1] < 0.01)
    ('grid', (101,), True)
    """
    for name, traj in (("a", a), ("b", b)):
        if not all(hasattr(traj, attr) for attr in ("t", "x", "layout", "monitors")):
            raise TypeError(f"{name} must be a Trajectory, got {type(traj).__name__}")
    if tuple(a.layout) != tuple(b.layout):
        raise ValueError(f"a and b must have the same factor layout, got {a.layout} and {b.layout}")
    idx = _grid_indices(a.t, b.t)
    skipped = {}
    if idx is not None:
        xb = b.x[idx]
        mb = {name: values[idx] for name, values in b.monitors.items()}
        alignment = "grid"
    else:
        if b.dense is None:
            raise ValueError("b's saved times do not include the times of a and b has no dense output: "
                             "integrate b with t_eval=a.t or dense_output=True")
        try:
            xb = np.atleast_2d(b.at(a.t))
        except ValueError as exc:
            raise ValueError(f"b must cover the times of a: {exc}") from exc
        alignment = "dense"
        fns = monitors if monitors is not None else (_monitors.default(problem) if problem is not None else {})
        shared = {name: fn for name, fn in fns.items() if name in a.monitors and name in b.monitors}
        mb = _monitors.evaluate(shared, a.t, xb)
        skipped = {name: "b read from its dense output and no monitor function given"
                   for name in a.monitors if name in b.monitors and name not in shared}

    aligned_b = Trajectory(t=a.t, x=xb, layout=a.layout)
    Ua, Va, Ub, Vb = a.U, a.V, aligned_b.U, aligned_b.V
    product = lowrank_frobenius(np.concatenate([Ua, -Ub], -1), np.concatenate([Va, Vb], -1))
    diffs = {}
    for name in a.monitors:
        if name in mb:
            d = np.abs(np.asarray(a.monitors[name], float) - np.asarray(mb[name], float))
            diffs[name] = d if d.ndim == 1 else np.linalg.norm(d.reshape(len(d), -1), axis=1)
    meta = {"alignment": alignment, "skipped_monitors": skipped,
            "a": dict(a.meta), "b": dict(b.meta)}
    return Comparison(t=np.array(a.t, dtype=float), state=np.linalg.norm(a.x - xb, axis=1), product=product,
                      state_scale=np.linalg.norm(xb, axis=1), product_scale=lowrank_frobenius(Ub, Vb),
                      monitors=diffs, meta=meta, dynamics=a.dynamics)

