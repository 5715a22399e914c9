"""Monitors: functions of a saved state, evaluated after a run (never inside the right-hand side).

A monitor is a callable ``fn(t, x) -> float or 1-D array``. :func:`default` binds the standard set to
a problem. A monitor's name means the same number as the quantity of that name in the symbolic
catalogue (:data:`pgflow.analysis.symbolic.QUANTITIES`), so a claim and a monitor about
``imbalance_fro`` agree; names that changed meaning raise a ``KeyError`` naming the new one
(:data:`pgflow.flows.trajectory.RENAMED_MONITORS`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .problems import lowrank_core
from .trajectory import MonitorValues

Monitor = Callable[[float, np.ndarray], "float | np.ndarray"]


def loss(problem) -> Monitor:
    """f(x)."""
    return lambda t, x: float(problem.loss(x))


def grad_norm(problem) -> Monitor:
    """‖∇f(x)‖₂."""
    return lambda t, x: float(np.linalg.norm(problem.grad(x)))


def imbalance_fro(problem) -> Monitor:
    """‖UᵀU − VᵀV‖_F, the Frobenius norm of the imbalance (conserved by GF; zero for the symmetric
    problem)."""
    def fn(t, x):
        U, V = problem.factors(x)
        return float(np.linalg.norm(U.T @ U - V.T @ V))
    return fn


def distance(problem) -> Monitor:
    """‖UVᵀ − Σ‖_F (‖XXᵀ − M‖_F for the symmetric problem), without forming UVᵀ."""
    return lambda t, x: float(problem.residual_norm(x))


def singular_values(problem) -> Monitor:
    """Singular values of UVᵀ, all k of them (from the k×k core, not the m×n product)."""
    def fn(t, x):
        s = np.linalg.svd(lowrank_core(*problem.factors(x)), compute_uv=False)
        return np.pad(s, (0, problem.width - s.shape[0]))
    return fn


def state_norm(t, x) -> float:
    """‖x‖₂, the monitor of a plain ODE (which has no loss)."""
    return float(np.linalg.norm(x))


def default(problem) -> dict[str, Monitor]:
    """The standard monitors of ``problem``.

    A factorization-type problem (with ``factors`` and a ``target``): loss, grad_norm, imbalance_fro,
    distance and singular_values. Any other :class:`~pgflow.flows.base.Problem`: loss and grad_norm.
    No problem (a plain ODE, ``problem=None``): ``state_norm`` = ‖y‖₂.
    """
    if problem is None:
        return {"state_norm": state_norm}
    if not (hasattr(problem, "factors") and hasattr(problem, "target")):
        return {"loss": loss(problem), "grad_norm": grad_norm(problem)}
    return {"loss": loss(problem), "grad_norm": grad_norm(problem), "imbalance_fro": imbalance_fro(problem),
            "distance": distance(problem), "singular_values": singular_values(problem)}



def check(monitors) -> dict[str, Monitor]:
    """A copy of ``monitors`` after checking it is a dict of name -> callable ``fn(t, x)``."""
    if not isinstance(monitors, dict):
        raise TypeError(f"monitors must be a dict of name -> fn(t, x), got {type(monitors).__name__}")
    for name, fn in monitors.items():
        if not callable(fn):
            raise TypeError(f"monitor {name!r} must be callable fn(t, x)")
    return dict(monitors)


def evaluate(monitors: dict[str, Monitor], t: np.ndarray, x: np.ndarray) -> MonitorValues:
    """Evaluate every monitor on every saved state: name -> array of shape (T,) or (T, q)."""
    out = MonitorValues()
    for name, fn in monitors.items():
        out[name] = np.asarray([fn(ti, xi) for ti, xi in zip(t, x)], dtype=float)
    return out
