r"""Perturbation models E(t, x) for the perturbed gradient flow and perturbed gradient descent.

The perturbed gradient flow (:class:`pgflow.flows.dynamics.PerturbedGradientFlow`) adds E to the
gradient flow in one of two forms (see ``docs/math/dynamics.md``):

residual form
    U̇ = (Σ − UVᵀ + E(t))V, V̇ = (Σ − UVᵀ + E(t))ᵀU: E is an (m, n) matrix.
additive form
    U̇ = RV + E_U(t), V̇ = RᵀU + E_V(t): E is a flat vector of shape (dim,).

Perturbation protocol (every model below follows it; :class:`Perturbation` holds the defaults):

``__call__(t, x) -> E``
    Shape (m, n) for the residual form, (dim,) for the additive form.
``bound(t, x) -> float``, ``claims_bound``
    The bound the model claims for ‖E‖, when ``claims_bound`` (else NaN).
``norm``
    "fro" or "op": the matrix norm of ‖E‖ and its bound (flat vectors: the Euclidean norm).
``state_dependent``
    False when E depends on t only; the PGF then has an analytic Jacobian.
``breakpoints(t0, t1) -> array``, ``piece(t, x_start) -> perturbation``
    Times in (t0, t1) where E jumps, and the smooth perturbation on the piece starting at t from
    the state x_start there. :func:`pgflow.flows.piecewise.integrate_piecewise` restarts the solver
    at every breakpoint so that no Runge–Kutta stage straddles a jump.
``describe() -> dict``
    The model's description (for provenance).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .checks import as_float_array, positive, positive_int
from .problems import distance_factors, lowrank_core
from .seeds import batch_indices, child_rng, seed_record, seed_sequence

FORMS = ("residual", "additive")
NORMS = ("fro", "op")


# --------------------------------------------------------------------------------------------------
# norms
# --------------------------------------------------------------------------------------------------

def _check_norm(norm) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def magnitude(E: np.ndarray, norm: str) -> float:
    """‖E‖: Frobenius or operator norm of a matrix, Euclidean norm of a flat vector."""
    E = np.asarray(E)
    return float(np.linalg.norm(E, 2) if norm == "op" and E.ndim == 2 else np.linalg.norm(E))


def residual_magnitude(problem, x, norm: str) -> float:
    """‖Σ − UVᵀ‖ in the Frobenius or operator norm, from the factors (no m×n matrix)."""
    if norm == "fro":
        return float(problem.residual_norm(x))
    return float(np.linalg.norm(lowrank_core(*distance_factors(*problem.factors(x), problem.target)), 2))


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------

class Perturbation:
    """Defaults of the perturbation protocol: smooth in t, state-dependent, no bound claimed
    (``claims_bound`` False: ``bound`` is NaN and a perturbed flow records no "perturbation_bound")."""

    norm: str = "fro"
    state_dependent: bool = True

    @property
    def claims_bound(self) -> bool:
        return False

    def bound(self, t, x) -> float:
        return float("nan")

    def breakpoints(self, t0: float, t1: float) -> np.ndarray:
        return np.empty(0)

    def piece(self, t: float, x_start) -> "Perturbation":
        return self

    def describe(self) -> dict:
        return {"perturbation": type(self).__name__, "norm": self.norm}


class _OnGrid(Perturbation):
    """E drawn afresh on each piece [g_j, g_{j+1}) of a time grid (the first piece reaches back to
    −∞, the last on to +∞); subclasses supply ``grid`` and ``at_piece(j, x)``."""

    grid: np.ndarray

    def index(self, t) -> int:
        """The piece j holding time t."""
        # GD asks at t = kη, which rounds to either side of a grid point jΔ = kη
        t = t + 8 * np.finfo(float).eps * max(1.0, abs(t))
        return int(np.clip(np.searchsorted(self.grid, t, side="right") - 1, 0, self.grid.size - 1))

    def __call__(self, t, x):
        return self.at_piece(self.index(t), x)

    def breakpoints(self, t0, t1):
        g = self.grid[1:]
        return g[(g > t0) & (g < t1)]

    def piece(self, t, x_start):
        return _Piece(self, self.index(t))


class _Piece(Perturbation):
    """A grid perturbation frozen on one piece, so the solver never sees the next piece's E."""

    def __init__(self, parent: _OnGrid, index: int):
        self.parent, self.index = parent, index
        self.norm, self.state_dependent = parent.norm, parent.state_dependent

    def __call__(self, t, x):
        return self.parent.at_piece(self.index, x)

    @property
    def claims_bound(self) -> bool:
        return self.parent.claims_bound

    def bound(self, t, x):
        return self.parent.bound(t, x)

    def describe(self):
        return {**self.parent.describe(), "piece": self.index}


def _grid(grid) -> np.ndarray:
    g = as_float_array(grid, "grid", ndim=1).copy()
    if g.size == 0 or np.any(np.diff(g) <= 0):
        raise ValueError("grid must be a non-empty, strictly increasing 1-D array of times")
    g.setflags(write=False)
    return g


@dataclass(frozen=True, eq=False)
class FixedPerturbation(Perturbation):
    """A constant E: an (m, n) matrix for the residual form or a (dim,) vector for the additive form.

    Parameters
    ----------
    value : array_like, shape (m, n) or (dim,)
    norm : {"fro", "op"}
    name : str
        Label in ``describe()``.
    """

    value: np.ndarray
    norm: str = "fro"
    name: str = "fixed"

    state_dependent = False

    def __post_init__(self):
        value = as_float_array(self.value, "value").copy()
        if value.ndim not in (1, 2):
            raise ValueError(f"value must be an (m, n) matrix or a flat (dim,) vector, got shape {value.shape}")
        value.setflags(write=False)
        object.__setattr__(self, "value", value)
        _check_norm(self.norm)
        object.__setattr__(self, "_size", magnitude(value, self.norm))

    def __call__(self, t, x):
        return self.value

    claims_bound = True

    def bound(self, t, x):
        return self._size

    def describe(self):
        return {"perturbation": self.name, "norm": self.norm, "size": self._size}


@dataclass(frozen=True, eq=False)
class FunctionPerturbation(Perturbation):
    """E = fn(t, x), with an optional claimed bound.

    Parameters
    ----------
    fn : callable ``fn(t, x) -> E``
    bound_fn : callable ``bound_fn(t, x) -> float``, optional
        The claimed bound on ‖E‖ (default: none, recorded as NaN).
    norm : {"fro", "op"}
    state_dependent : bool
        False if fn ignores x; the PGF then gets an analytic Jacobian.
    name : str
    """

    fn: Callable
    bound_fn: Callable | None = None
    norm: str = "fro"
    state_dependent: bool = True
    name: str = "function"

    def __post_init__(self):
        if not callable(self.fn):
            raise TypeError(f"fn must be callable fn(t, x), got {type(self.fn).__name__}")
        if self.bound_fn is not None and not callable(self.bound_fn):
            raise TypeError(f"bound_fn must be callable bound_fn(t, x) or None, got {type(self.bound_fn).__name__}")
        _check_norm(self.norm)

    def __call__(self, t, x):
        return self.fn(t, x)

    @property
    def claims_bound(self) -> bool:
        return self.bound_fn is not None

    def bound(self, t, x):
        return float("nan") if self.bound_fn is None else float(self.bound_fn(t, x))

    def describe(self):
        return {"perturbation": self.name, "norm": self.norm, "state_dependent": self.state_dependent,
                "fn": getattr(self.fn, "__qualname__", repr(self.fn))}


# Directions a RandomPerturbation keeps: a solver asks for the current piece and, in a step that
# straddles a jump, the next one (then the current one again after a rejection); pieces are otherwise
# visited in order, so the earliest drawn is the one to drop.
DIRECTIONS_KEPT = 4


@dataclass(frozen=True, eq=False)
class RandomPerturbation(_OnGrid):
    r"""‖E‖ = ρ‖Σ − UVᵀ‖ + ξ₀ in a random direction that is constant on each piece of a time grid.

    The direction on piece j is a Gaussian matrix (or vector) normalized in the chosen norm, drawn
    from child j of ``SeedSequence(seed)``: reproducible, and independent of the order in which a
    solver visits the pieces. Pass the grid in ``t_eval`` or, better, integrate with
    :func:`pgflow.flows.piecewise.integrate_piecewise` so that the solver restarts at every jump.

    Parameters
    ----------
    problem : problem object
        Supplies Σ, the factors and the shapes.
    rho, xi0 : float
        ρ ≥ 0 (relative size) and ξ₀ ≥ 0 (absolute floor).
    grid : array_like, shape (J,)
        Strictly increasing times where the direction is redrawn.
    seed : int or numpy.random.SeedSequence
    norm : {"op", "fro"}
        The norm of E and of Σ − UVᵀ ("fro" only for the additive form).
    form : {"residual", "additive"}
        (m, n) matrices or (dim,) vectors.
    """

    problem: object
    rho: float
    xi0: float
    grid: np.ndarray
    seed: object
    norm: str = "op"
    form: str = "residual"

    def __post_init__(self):
        object.__setattr__(self, "rho", positive(self.rho, "rho", allow_zero=True))
        object.__setattr__(self, "xi0", positive(self.xi0, "xi0", allow_zero=True))
        object.__setattr__(self, "grid", _grid(self.grid))
        seed_sequence(self.seed)
        _check_norm(self.norm)
        if self.form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {self.form!r}")
        if self.form == "additive" and self.norm == "op":
            raise ValueError("an additive perturbation is a flat vector: use norm='fro' (Euclidean)")
        shape = self.problem.target.shape if self.form == "residual" else (self.problem.dim,)
        object.__setattr__(self, "_shape", shape)
        object.__setattr__(self, "_directions", {})

    @property
    def state_dependent(self) -> bool:
        return self.rho > 0

    def direction(self, j: int) -> np.ndarray:
        """The unit direction on piece j, shape (m, n) or (dim,), read-only.

        The last ``DIRECTIONS_KEPT`` directions drawn are kept; any other is drawn again from its seed,
        so a long grid costs no memory and the answer does not depend on which pieces came before.
        """
        D = self._directions.get(j)
        if D is None:
            G = child_rng(self.seed, j).standard_normal(self._shape)
            D = G / magnitude(G, self.norm)
            D.setflags(write=False)  # it is shared through the cache
            if len(self._directions) >= DIRECTIONS_KEPT:
                del self._directions[next(iter(self._directions))]  # the earliest drawn
            self._directions[j] = D
        return D

    def at_piece(self, j, x):
        return self.bound(None, x) * self.direction(j)

    claims_bound = True

    def bound(self, t, x):
        return self.rho * residual_magnitude(self.problem, x, self.norm) + self.xi0 if self.rho else self.xi0

    def describe(self):
        return {"perturbation": "random", "rho": self.rho, "xi0": self.xi0, "norm": self.norm, "form": self.form,
                "grid": [float(self.grid[0]), float(self.grid[-1]), int(self.grid.size)],
                "seed": seed_record(self.seed)}


def _sensing_error(operator, Xstar: np.ndarray, U, V, noise_term) -> np.ndarray:
    """(𝒜*𝒜 − I)(X* − UVᵀ) (+ 𝒜*ξ): the gap between the sensing and the factorization residual."""
    Z = Xstar - U @ V.T
    E = operator.normal(Z) - Z
    if noise_term is not None:
        E += noise_term
    return E


@dataclass(frozen=True, eq=False)
class SensingError(Perturbation):
    r"""E = (𝒜*𝒜 − I)(X* − UVᵀ), plus 𝒜*ξ with ``noise=True``.

    With this E, the residual-form PGF of the factorization problem with Σ = X* is the gradient flow
    of the sensing problem (with its noise when ``noise=True``). RIP of order rank(X* − UVᵀ) + 1
    with constant δ gives ‖(𝒜*𝒜 − I)(X* − UVᵀ)‖_op ≤ δ‖X* − UVᵀ‖_F.

    Parameters
    ----------
    problem : MatrixSensing
    noise : bool
        Include the measurement noise term 𝒜*ξ.
    delta : float, optional
        The RIP constant δ the bound uses; default: none claimed (NaN). An empirical value:
        :func:`pgflow.flows.operators.rip_estimate` with rank = rank(X*) + width + 1.
    """

    problem: object
    noise: bool = False
    delta: float | None = None

    norm = "op"

    def __post_init__(self):
        _check_sensing(self.problem)
        if self.delta is not None:
            object.__setattr__(self, "delta", positive(self.delta, "delta", allow_zero=True))
        object.__setattr__(self, "_Xstar", self.problem.target.dense())
        term = self.problem.operator.adjoint(self.problem.noise_vector) if self.noise else None
        object.__setattr__(self, "_noise_term", term)
        object.__setattr__(self, "_noise_size", 0.0 if term is None else magnitude(term, "op"))

    def __call__(self, t, x):
        U, V = self.problem.factors(x)
        return _sensing_error(self.problem.operator, self._Xstar, U, V, self._noise_term)

    @property
    def claims_bound(self) -> bool:
        return self.delta is not None

    def bound(self, t, x):
        if self.delta is None:
            return float("nan")
        return self.delta * float(self.problem.residual_norm(x)) + self._noise_size

    def describe(self):
        return {"perturbation": "sensing_error", "norm": self.norm, "noise": self.noise, "delta": self.delta}


@dataclass(frozen=True, eq=False)
class MinibatchSensingError(_OnGrid):
    r"""E = (𝒜_B*𝒜_B − I)(X* − UVᵀ) (+ 𝒜_B*ξ_B) with a fresh mini-batch B on each grid piece.

    𝒜_B, y_B are the unbiased mini-batch operator and measurements of
    :meth:`pgflow.flows.sensing.MatrixSensing.minibatch`; the batch of piece j is
    :func:`batch_indices` (seed, j), the same draw :func:`pgflow.flows.descent.minibatch_gradient_descent`
    makes at step j, so GD on the factorization problem with this perturbation and the grid
    η·(0, 1, 2, …) *is* mini-batch sensing GD. No bound is claimed.

    Parameters
    ----------
    problem : MatrixSensing
    batch_size : int
        1 ≤ b ≤ p.
    grid : array_like, shape (J,)
        Times where a new batch is drawn.
    seed : int or numpy.random.SeedSequence
    noise : bool
        Include the mini-batch noise term 𝒜_B*ξ_B.
    """

    problem: object
    batch_size: int
    grid: np.ndarray
    seed: object
    noise: bool = False

    norm = "op"

    def __post_init__(self):
        _check_sensing(self.problem)
        p = self.problem.operator.n_measurements
        b = positive_int(self.batch_size, "batch_size")
        if b > p:
            raise ValueError(f"batch_size must be <= the number of measurements {p}, got {b}")
        object.__setattr__(self, "grid", _grid(self.grid))
        seed_sequence(self.seed)
        object.__setattr__(self, "_Xstar", self.problem.target.dense())
        object.__setattr__(self, "_last", [None, None, None])  # piece, operator, noise term

    def batch(self, j: int):
        """The mini-batch operator and noise term of piece j (the last one is kept)."""
        if self._last[0] != j:
            sub = self.problem.minibatch(batch_indices(self.seed, j, self.problem.operator.n_measurements,
                                                       self.batch_size))
            self._last[:] = [j, sub.operator, sub.operator.adjoint(sub.noise_vector) if self.noise else None]
        return self._last[1], self._last[2]

    def at_piece(self, j, x):
        U, V = self.problem.factors(x)
        operator, noise_term = self.batch(j)
        return _sensing_error(operator, self._Xstar, U, V, noise_term)

    def describe(self):
        return {"perturbation": "minibatch_sensing_error", "norm": self.norm, "batch_size": self.batch_size,
                "noise": self.noise, "grid": [float(self.grid[0]), float(self.grid[-1]), int(self.grid.size)],
                "seed": seed_record(self.seed)}


def measurement_noise(problem) -> FixedPerturbation:
    """E = 𝒜*(ξ), the measurement noise seen by the residual: a fixed matrix (operator norm)."""
    _check_sensing(problem)
    return FixedPerturbation(problem.operator.adjoint(problem.noise_vector), norm="op", name="measurement_noise")


@dataclass(frozen=True, eq=False)
class DiscretizationError(Perturbation):
    r"""GD as an additive PGF: e(τ) = ∇f(x(τ)) − ∇f(x_k) on [kη, (k+1)η).

    The PGF right-hand side on that piece is the constant −∇f(x_k), so its solution is the
    piecewise-linear interpolant of GD and any Runge–Kutta step lands on x_{k+1} = x_k − η∇f(x_k)
    up to rounding. E depends on the state at the start of each step, so this model only makes
    sense piece by piece: integrate it with :func:`pgflow.flows.piecewise.integrate_piecewise`. No bound is claimed.

    Parameters
    ----------
    problem : problem object
    step_size : float
        η > 0; steps start at t = kη.
    """

    problem: object
    step_size: float

    def __post_init__(self):
        object.__setattr__(self, "step_size", positive(self.step_size, "step_size"))

    def __call__(self, t, x):
        raise TypeError("DiscretizationError depends on the state at the start of each GD step: integrate it "
                        "with pgflow.flows.piecewise.integrate_piecewise, which hands that state to each piece")

    def breakpoints(self, t0, t1):
        eta = self.step_size
        b = np.arange(np.floor(t0 / eta) + 1, np.ceil(t1 / eta) + 1) * eta
        return b[(b > t0) & (b < t1)]

    def piece(self, t, x_start):
        g0 = self.problem.grad(np.asarray(x_start, dtype=float))
        return FunctionPerturbation(lambda t, x: self.problem.grad(x) - g0, name="discretization_error")

    def describe(self):
        return {"perturbation": "discretization_error", "step_size": self.step_size}


def _check_sensing(problem):
    if not (hasattr(problem, "operator") and hasattr(problem, "noise_vector")):
        raise TypeError(f"problem must be a sensing problem (pgflow.flows.sensing.MatrixSensing), got {type(problem).__name__}")


__all__ = ["DiscretizationError", "FORMS", "FixedPerturbation", "FunctionPerturbation", "MinibatchSensingError",
           "Perturbation", "RandomPerturbation", "SensingError", "magnitude", "measurement_noise",
           "residual_magnitude"]
