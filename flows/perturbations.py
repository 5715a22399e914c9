r"""The perturbed gradient flow (PGF) and its perturbation models (MATH.md §2).

Two forms, both built on the problem's one gradient:

residual form
    U̇ = (Σ − UVᵀ + E(t))V, V̇ = (Σ − UVᵀ + E(t))ᵀU, i.e. ẋ = −∇f(x) + (EV, EᵀU), E of shape (m, n).
    UᵀU − VᵀV is conserved for every E. With Σ = X* and E the sensing error
    (𝒜*𝒜 − I)(X* − UVᵀ) (+ 𝒜*ξ) it *is* the sensing gradient flow.
additive form
    U̇ = RV + E_U(t), V̇ = RᵀU + E_V(t), i.e. ẋ = −∇f(x) + e, e a flat vector of shape (dim,).
    On [kη, (k+1)η) the piecewise-linear interpolant of GD solves it with
    e = ∇f(x) − ∇f(x_k) (:class:`DiscretizationError`).

Perturbation protocol (every model below follows it; :class:`Perturbation` holds the defaults):

``__call__(t, x) -> E``
    Shape (m, n) for the residual form, (dim,) for the additive form.
``bound(t, x) -> float``
    The bound the model claims for ‖E‖ (NaN: none claimed).
``norm``
    "fro" or "op": the matrix norm of ‖E‖ and its bound (flat vectors: the Euclidean norm).
``state_dependent``
    False when E depends on t only; the PGF then has an analytic Jacobian.
``breakpoints(t0, t1) -> array``, ``piece(t, x_start) -> perturbation``
    Times in (t0, t1) where E jumps, and the smooth perturbation on the piece starting at t from
    the state x_start there. :func:`integrate_piecewise` restarts the solver at every breakpoint so
    that no Runge–Kutta stage straddles a jump.
``describe() -> dict``
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._checks import as_float_array, child_rng, positive, positive_int, seed_record, seed_sequence
from .integrate import IntegrationError, _time_grid, integrate
from .problems import couple_residual, distance_factors, lowrank_core, negative_grad
from .trajectory import Trajectory

FORMS = ("residual", "additive")
NORMS = ("fro", "op")


# --------------------------------------------------------------------------------------------------
# seeds with random access: the draw for piece j must not depend on which pieces were drawn before
# --------------------------------------------------------------------------------------------------

def indexed_rng(seed, index: int) -> np.random.Generator:
    """The generator of piece (or step) ``index``: :func:`flows._checks.child_rng`."""
    return child_rng(seed, index)


def batch_indices(seed, index: int, n_measurements: int, batch_size: int) -> np.ndarray:
    """The mini-batch of step (or piece) ``index``: ``batch_size`` distinct measurements of ``n_measurements``."""
    return indexed_rng(seed, index).choice(n_measurements, size=batch_size, replace=False)


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
    """Defaults of the perturbation protocol: smooth in t, state-dependent, no bound claimed."""

    norm: str = "fro"
    state_dependent: bool = True

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
    :func:`integrate_piecewise` so that the solver restarts at every jump.

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
            G = indexed_rng(self.seed, j).standard_normal(self._shape)
            D = G / magnitude(G, self.norm)
            D.setflags(write=False)  # it is shared through the cache
            if len(self._directions) >= DIRECTIONS_KEPT:
                del self._directions[next(iter(self._directions))]  # the earliest drawn
            self._directions[j] = D
        return D

    def at_piece(self, j, x):
        return self.bound(None, x) * self.direction(j)

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
        :func:`flows.operators.rip_estimate` with rank = rank(X*) + width + 1.
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
    :meth:`flows.sensing.MatrixSensing.minibatch`; the batch of piece j is
    :func:`batch_indices` (seed, j), the same draw :func:`flows.descent.minibatch_gradient_descent`
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
    sense piece by piece: integrate it with :func:`integrate_piecewise`. No bound is claimed.

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
                        "with flows.perturbations.integrate_piecewise, which hands that state to each piece")

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
        raise TypeError(f"problem must be a sensing problem (flows.sensing.MatrixSensing), got {type(problem).__name__}")


# --------------------------------------------------------------------------------------------------
# the flow
# --------------------------------------------------------------------------------------------------

class PerturbedGradientFlow:
    r"""Perturbed gradient flow ẋ = −∇f(x) + (perturbation term), in residual or additive form.

    residual: U̇ = (Σ − UVᵀ + E)V, V̇ = (Σ − UVᵀ + E)ᵀU (E of shape (m, n));
    additive: U̇ = RV + E_U, V̇ = RᵀU + E_V (E flat, shape (dim,)).

    The Jacobian is analytic when E does not depend on the state: −∇²f, plus in the residual form
    the blocks ∂(EV)/∂V = E ⊗ I_k and ∂(EᵀU)/∂U = Eᵀ ⊗ I_k. Otherwise ``jac`` is None (the implicit
    solvers then use finite differences). ``monitors()`` records ‖E‖ ("perturbation_norm") and its
    claimed bound ("perturbation_bound") on every saved state. Perturbations that jump on a time
    grid (:class:`RandomPerturbation`, :class:`MinibatchSensingError`) or need the state at the
    start of each piece (:class:`DiscretizationError`) are best integrated with
    :func:`integrate_piecewise`; :func:`flows.integrate` also works for the former, but its
    solver steps across each jump by shrinking its step until the jump no longer shows.

    Parameters
    ----------
    problem : problem object
        The unperturbed problem (for the sensing PGF: the factorization problem with Σ = X*).
    perturbation : perturbation model
        See the module docstring for the protocol.
    form : {"residual", "additive"}

    Examples
    --------
    >>> from flows import MatrixFactorization, GradientFlow, init
    >>> p = MatrixFactorization.random(m=4, n=3, rank=1, width=2, seed=0)
    >>> x = init.gaussian(p, 0.1, seed=1)
    >>> pgf = PerturbedGradientFlow(p, FixedPerturbation(np.zeros((4, 3))))
    >>> bool(np.array_equal(pgf(0.0, x), GradientFlow(p)(0.0, x)))
    True
    """

    def __init__(self, problem, perturbation, form: str = "residual"):
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        if not (callable(perturbation) and callable(getattr(perturbation, "bound", None))):
            raise TypeError(f"perturbation must be callable E(t, x) with a bound(t, x) method (see "
                            f"flows.perturbations), got {type(perturbation).__name__}")
        if form == "residual" and len(problem.layout) != 2:
            raise ValueError("the residual form needs a problem with two factors U, V (E enters as EV, EᵀU)")
        self.problem, self.perturbation, self.form = problem, perturbation, form
        self._shape = problem.target.shape if form == "residual" else (problem.dim,)
        self.jac = None if getattr(perturbation, "state_dependent", True) else self._jac

    def perturbation_term(self, t, x) -> np.ndarray:
        """What the perturbation adds to −∇f: (EV, EᵀU) packed (residual form) or E (additive)."""
        E = np.asarray(self.perturbation(t, x), dtype=float)
        if E.shape != self._shape:
            raise ValueError(f"the perturbation returned shape {E.shape}; the {self.form} form needs {self._shape}")
        # a state that overflowed may give a non-finite E: that is for the solver or GD to report
        if not np.all(np.isfinite(E)) and np.all(np.isfinite(x)):
            raise ValueError(f"the perturbation {self.perturbation.describe()} returned non-finite values at "
                             f"t = {t:g} from a finite state")
        if self.form == "additive":
            return E
        U, V = self.problem.factors(x)
        return self.problem.join(E @ V, E.T @ U)

    def __call__(self, t, x):
        if np.ndim(x) == 2:
            return np.stack([self(t, xi) for xi in x])
        out = negative_grad(self.problem, x)
        out += self.perturbation_term(t, x)
        return out

    def _jac(self, t, x):
        J = -self.problem.hessian(x)
        if self.form == "residual":
            couple_residual(J, np.asarray(self.perturbation(t, x), dtype=float), self.problem.width)
        return J

    def piece(self, t, x_start) -> "PerturbedGradientFlow":
        """The flow on the piece of the perturbation that starts at t from ``x_start``."""
        return PerturbedGradientFlow(self.problem, self.perturbation.piece(t, x_start), self.form)

    def monitors(self) -> dict:
        E, norm = self.perturbation, getattr(self.perturbation, "norm", "fro")
        return {"perturbation_norm": lambda t, x: magnitude(E(t, x), norm),
                "perturbation_bound": lambda t, x: float(E.bound(t, x))}

    def describe(self) -> dict:
        return {"flow": type(self).__name__, "form": self.form, "perturbation": self.perturbation.describe()}


# --------------------------------------------------------------------------------------------------
# piecewise integration
# --------------------------------------------------------------------------------------------------

def integrate_piecewise(flow, x0, t_end: float, *, t_start: float = 0.0, t_eval=None, events=(),
                        **kwargs) -> Trajectory:
    """:func:`flows.integrate` restarted at each breakpoint of the flow's perturbation.

    Each piece [b_j, b_{j+1}] is integrated with ``flow.piece(b_j, x(b_j))``, a smooth vector field,
    so no solver stage ever evaluates the next piece's perturbation (scipy's FSAL stage at the end
    of a step would otherwise do exactly that, at every jump).

    Parameters
    ----------
    flow : PerturbedGradientFlow
    x0, t_end, t_start, events
        As for :func:`flows.integrate`; events are searched on every piece.
    t_eval : array_like, optional
        Times to save (default: every solver step); piece ends are integrated to but not saved
        unless requested. A state saved on a breakpoint belongs to the piece that ends there, so
        its "perturbation_norm" is that piece's E (the left limit).
    **kwargs
        Passed to :func:`flows.integrate` for every piece (method, rtol, atol, monitors,
        first_step, ...).

    Returns
    -------
    Trajectory
        ``meta`` sums the solver statistics over the pieces and records their number in "pieces";
        ``dense`` covers all of them.
    """
    t0, t1 = float(t_start), float(t_end)
    breaks = np.asarray(flow.perturbation.breakpoints(t0, t1), dtype=float)
    edges = np.concatenate([[t0], breaks, [t1]])
    grid = _time_grid(t_eval, t0, t1)
    parts, x = [], x0
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        sub_eval = None
        if grid is not None:
            inside = grid[(grid > a) & (grid < b)] if i else grid[(grid >= a) & (grid < b)]
            sub_eval = np.append(inside, b)
        try:
            part = integrate(flow.piece(a, x), x, b, t_start=a, t_eval=sub_eval, events=events, **kwargs)
        except IntegrationError as exc:
            raise IntegrationError(f"{exc} (piece {i + 1} of {len(edges) - 1}, [{a:g}, {b:g}], of the run to "
                                   f"t_end = {t1:g})", exc.t_reached,
                                   _join(parts + [exc.partial], grid, t0, t1, flow.describe())) from exc
        parts.append(part)
        x = part.final
        if "stopped_by_event_at" in part.meta:
            break
    return _join(parts, grid, t0, t1, flow.describe())


_SUMMED = ("nfev", "njev", "nlu", "rhs_calls", "steps", "wall_time", "monitor_time")


def _join(parts: list[Trajectory], grid, t0: float, t1: float, description: dict) -> Trajectory:
    """One trajectory from consecutive pieces: shared endpoints once, only requested times kept."""
    keep = []
    for i, part in enumerate(parts):
        k = np.ones(part.t.size, dtype=bool) if grid is None else np.isin(part.t, grid)
        if i and grid is None:
            k[0] = False  # the previous piece's end
        keep.append(k)
    t = np.concatenate([p.t[k] for p, k in zip(parts, keep)])
    x = np.concatenate([p.x[k] for p, k in zip(parts, keep)])
    monitors = {name: np.concatenate([p.monitors[name][k] for p, k in zip(parts, keep)])
                for name in parts[0].monitors}
    methods = sorted({p.meta["method"] for p in parts})
    meta = {**parts[-1].meta, **description, "t_start": t0, "t_end": t1, "pieces": len(parts),
            "method": methods[0] if len(methods) == 1 else "mixed: " + ", ".join(methods),
            **{key: sum(p.meta.get(key, 0) for p in parts) for key in _SUMMED},
            **({"method_reason": [p.meta["method_reason"] for p in parts]} if "method_reason" in parts[-1].meta else {}),
            "events": {key: [s for p in parts for s in p.meta.get("events", {}).get(key, [])]
                       for key in parts[0].meta.get("events", {})}}
    dense = None
    if all(p.dense is not None for p in parts):
        dense = _PiecewiseDense(np.array([p.meta["t_start"] for p in parts]), [p.dense for p in parts])
    return Trajectory(t=t, x=x, layout=parts[0].layout, monitors=monitors, meta=meta, dense=dense)


class _PiecewiseDense:
    """Dense output over consecutive pieces: piece j serves [starts[j], starts[j+1])."""

    def __init__(self, starts: np.ndarray, denses: list):
        self.starts, self.denses = starts, denses

    def __call__(self, t):
        t = np.asarray(t, dtype=float)
        j = np.clip(np.searchsorted(self.starts, t, side="right") - 1, 0, len(self.denses) - 1)
        if t.ndim == 0:
            return self.denses[int(j)](t)
        out = None
        for piece in np.unique(j):
            values = self.denses[piece](t[j == piece])
            if out is None:
                out = np.empty((t.size, values.shape[-1]))
            out[j == piece] = values
        return out


__all__ = ["DiscretizationError", "FixedPerturbation", "FunctionPerturbation", "MinibatchSensingError",
           "Perturbation", "PerturbedGradientFlow", "RandomPerturbation", "SensingError", "batch_indices",
           "indexed_rng", "integrate_piecewise", "magnitude", "measurement_noise", "residual_magnitude"]
