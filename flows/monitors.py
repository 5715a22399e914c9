"""Monitors: functions of a saved state, evaluated after a run (never inside the right-hand side).

A monitor is a callable ``fn(t, x) -> float or 1-D array``. :func:`default` binds the standard set to
a problem. A monitor's name means the same number as the quantity of that name in the symbolic
catalogue (:data:`pgflow.analysis.symbolic.QUANTITIES`), so a claim and a monitor about
``imbalance_fro`` agree; names that changed meaning raise a ``KeyError`` naming the new one
(:data:`pgflow.flows.trajectory.RENAMED_MONITORS`).
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from .base import GRADIENTS
from .checks import NonFiniteWarning, nonfinite_where
from .problems import FactoredProblem, MatrixFactorization, SymmetricFactorization, lowrank_core
from .trajectory import MonitorValues

Monitor = Callable[[float, np.ndarray], "float | np.ndarray"]

# the problems whose loss is LOSS_SCALE·‖R‖²_F and whose gradient is (RV, RᵀU) for the residual R = UVᵀ − Σ
_RESIDUAL_PROBLEMS = (MatrixFactorization, SymmetricFactorization)
# :func:`evaluate` takes the states of Shared monitors in stacks of at most this many values: the quantities of
# a stack (a gradient or a residual per state) then stay a few MB, and each numpy call serves many states
STACK_VALUES = 2 ** 20


class Shared:
    """A monitor ``transform(quantity(x))`` whose quantity accepts one state (dim,) or a stack (T, dim), and
    that other monitors may share: :func:`evaluate` computes each quantity once per stack of states for all
    the monitors that use it, so a monitor costs a few numpy calls per stack, not per state. Called alone,
    ``fn(t, x)`` computes its quantity itself.

    Parameters
    ----------
    quantity : callable ``quantity(x)``, x of shape (dim,) or (T, dim)
        Compared by equality (a bound method of one problem is the same quantity each time it is taken).
    transform : callable ``transform(value)``
        Vectorized over the leading axis of a stack: a value of shape () or (q,) per state.
    """

    def __init__(self, quantity: Callable, transform: Callable):
        self.quantity, self.transform = quantity, transform

    def __call__(self, t, x):
        value = self.transform(self.quantity(x))
        return float(value) if np.ndim(value) == 0 else value


def _residual_family(problem, names) -> bool:
    """Whether ``problem``'s class takes the methods ``names`` from MatrixFactorization or SymmetricFactorization,
    so that they are the residual's (a subclass with its own loss or gradient is not)."""
    return any(all(getattr(type(problem), name, None) is getattr(family, name) for name in names)
               for family in _RESIDUAL_PROBLEMS)


def _forms_residual(problem) -> bool:
    """Whether the gradient norm forms the residual R = UVᵀ − Σ (m×n a state): when R holds no more numbers than
    the factored gradient's workspaces [U, Φ] and [V, Ψ], m·n ≤ (m + n)(k + r), as in the reduced problems
    (m = n = k + r). There three small products cost less than the gradient; a larger problem's ``grad`` never
    forms an m×n matrix."""
    (m, n), q = problem.target.shape, problem.width + problem.target.rank
    return m * n <= (m + n) * q


def _residual_gradient_norm(problem, x) -> np.ndarray:
    """‖∇f‖₂ of a state or a stack of states from the formed residual R = UVᵀ − Σ:

        f = ½‖R‖²_F:  ∇_U f = RV, ∇_V f = RᵀU, ‖∇f‖₂ = ‖(RV, RᵀU)‖_F;
        f = ¼‖XXᵀ − M‖²_F (symmetric, factors U = V = X):  ∇f = RX.
    """
    U, V = problem.factors(x)
    R = U @ V.mT - problem.target.dense()
    RV = np.linalg.norm(R @ V, axis=(-2, -1))
    if len(problem.layout) == 1:
        return RV
    return np.hypot(RV, np.linalg.norm(R.mT @ U, axis=(-2, -1)))


def loss(problem) -> Monitor:
    """f(x) (for the factorization problems from the residual norm, shared with :func:`distance`: one QR)."""
    if _residual_family(problem, ("loss",)):
        scale = problem.LOSS_SCALE
        return Shared(problem.residual_norm, lambda d: scale * d ** 2)
    if _stacks(problem):
        return Shared(problem.loss, np.asarray)
    return lambda t, x: float(problem.loss(x))


def grad_norm(problem) -> Monitor:
    """‖∇f(x)‖₂ (from the formed residual where that is cheaper, see :func:`_forms_residual`)."""
    if _residual_family(problem, GRADIENTS) and _forms_residual(problem):
        return Shared(lambda x: _residual_gradient_norm(problem, x), np.asarray)
    if _stacks(problem):
        return Shared(problem.grad, lambda g: np.linalg.norm(g, axis=-1))
    return lambda t, x: float(np.linalg.norm(problem.grad(x)))


def imbalance_fro(problem) -> Monitor:
    """‖UᵀU − VᵀV‖_F, the Frobenius norm of the imbalance (conserved by GF; zero for the symmetric
    problem)."""
    def imbalance(x):
        U, V = problem.factors(x)
        return U.mT @ U - V.mT @ V
    return Shared(imbalance, lambda D: np.linalg.norm(D, axis=(-2, -1)))


def distance(problem) -> Monitor:
    """‖UVᵀ − Σ‖_F (‖XXᵀ − M‖_F for the symmetric problem), without forming UVᵀ."""
    return Shared(problem.residual_norm, np.asarray)


def _spectral_factor(U: np.ndarray, V: np.ndarray) -> np.ndarray:
    """A matrix with the singular values of UVᵀ (batched over leading axes), from the thin QRs U = Q_U R_U and
    V = Q_V R_V, whose Q's have orthonormal columns:

        UVᵀ = (U R_Vᵀ) Q_Vᵀ = Q_U (R_U R_Vᵀ) Q_Vᵀ.

    U R_Vᵀ (m×k) while U has fewer than 2k rows (a reduced problem, m = k + r, with r < k): LAPACK's SVD then
    bidiagonalizes it directly, and a QR of U would cost more than it saves. A taller U: the k×k core R_U R_Vᵀ
    (:func:`~pgflow.flows.problems.lowrank_core`), whose QR of U the SVD of U R_Vᵀ would repeat inside.
    """
    m, k = U.shape[-2:]
    if m >= 2 * k:
        return lowrank_core(U, V)
    R_V = np.linalg.qr(V, mode="r")
    return U @ np.swapaxes(R_V, -1, -2)


def singular_values(problem) -> Monitor:
    """Singular values of UVᵀ, all k of them (from :func:`_spectral_factor`, never the m×n product)."""
    def spectrum(F):
        s = np.linalg.svd(F, compute_uv=False)
        return np.pad(s, [(0, 0)] * (s.ndim - 1) + [(0, problem.width - s.shape[-1])])
    return Shared(lambda x: _spectral_factor(*problem.factors(x)), spectrum)


def state_norm(t, x) -> float:
    """‖x‖₂, the monitor of a plain ODE (which has no loss)."""
    return float(np.linalg.norm(x))


def _stacks(problem) -> bool:
    """Whether the problem is one of pgflow's factored problems, whose loss and gradient take stacks of states."""
    return isinstance(problem, FactoredProblem)


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


def chosen(problem, monitors=None, default_monitors: bool = True) -> dict[str, Monitor]:
    """The monitors a run records: the defaults of ``problem`` (see :func:`default`) unless
    ``default_monitors`` is False, plus the caller's ``monitors`` (a caller's monitor replaces a default
    one of the same name).

    Parameters
    ----------
    problem : Problem or None
    monitors : dict of name -> ``fn(t, x)``, optional
        Added to the defaults.
    default_monitors : bool
        False: record only ``monitors`` (``default_monitors=False`` with no ``monitors``: none).
    """
    if not isinstance(default_monitors, bool):
        raise TypeError(f"default_monitors must be True or False, got {default_monitors!r}")
    own = {} if monitors is None else check(monitors)
    return {**(default(problem) if default_monitors else {}), **own}


def evaluate(monitors: dict[str, Monitor], t: np.ndarray, x, *, warn: bool = True) -> MonitorValues:
    """Evaluate every monitor on every saved state: name -> array of shape (T,) or (T, q).

    A monitor that is NaN or ±inf somewhere is reported by a :class:`~pgflow.flows.checks.NonFiniteWarning`
    naming it and the first time (``warn=False``: the caller reports it; ``integrate`` and gradient
    descent raise :class:`~pgflow.flows.failures.NonFiniteMonitor`).

    :class:`Shared` monitors of an array of states run on stacks of states (at most ``STACK_VALUES``
    values each), each quantity once per stack for all the monitors that share it (the residual norm of
    loss and distance); the others state by state. ``x`` is an array (T, dim) or any sequence of states
    (then every monitor runs state by state).
    """
    shared = {name: fn for name, fn in monitors.items() if isinstance(fn, Shared) and isinstance(x, np.ndarray)}
    values: dict[str, list] = {name: [] for name in monitors}
    if shared and len(x):
        size = max(1, STACK_VALUES // max(1, x[0].size))
        for start in range(0, len(x), size):
            stack, quantities = x[start:start + size], {}
            for name, part in shared.items():
                if part.quantity not in quantities:
                    quantities[part.quantity] = part.quantity(stack)
                values[name].extend(part.transform(quantities[part.quantity]))
    for name, fn in monitors.items():
        if name not in shared:
            values[name] = [fn(ti, xi) for ti, xi in zip(t, x)]
    result = MonitorValues({name: np.asarray(v, dtype=float) for name, v in values.items()})
    if warn:
        for name, v in result.items():
            where = nonfinite_where(v, t)
            if where is not None:
                warnings.warn(f"monitor {name!r} is {where}", NonFiniteWarning, stacklevel=2)
    return result
