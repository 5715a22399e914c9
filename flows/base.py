"""The problem protocol: what a problem must define, what pgflow derives from it, and a check that the
two agree.

A problem is a smooth loss f of a flat float64 state x (shape (dim,), or a batch (B, dim)). Subclass
:class:`Problem` and define

``dim``
    The state's size.
``loss(x)``
    f(x), a float (an array of B floats for a batch).
``grad(x, out=None)``
    ∇f(x), shaped like x, written into ``out`` when given.

Everything else pgflow needs is derived from ``grad``, so that a subclass that overrides ``grad``
changes every consumer at once — the gradient flow's right-hand side, the GD step, the
``grad_norm`` monitor, the Jacobian of the implicit solvers and the Hessian-vector products of
the modified flow and of the sharpness:

``negative_grad(x, out=None)``
    −∇f(x), the gradient flow's velocity: −grad(x) unless a class provides a faster route.
``hvp(x, v)``, ``hessian(x)``
    ∇²f(x)·v and the dense ∇²f(x): by default central differences of ``grad`` (error about
    ε^{2/3} ≈ 4e-11 relative, two gradients per product) and one ``hvp`` per column.
``third_derivative(x, a, b)``
    ∇³f(x)[a, b], the vector whose i-th entry is Σ_jk ∂³f/∂x_i∂x_j∂x_k a_j b_k (for the second-order
    modified flow): by default central differences of ``hvp``.

A class may provide its own ``negative_grad``, ``hvp``, ``hessian``, ``third_derivative`` or
``partial_grad`` (faster or exact). They are trusted only for the ``grad`` they were written with:
when a subclass takes ``grad`` (or the stacked kernel ``_grad_rows`` of a factored problem) from a
new place, its own body or a mixin listed before its parent, every such method found further up the
MRO is replaced by the derived default (the parent's would compute the parent's derivatives), unless
the class defining the new gradient lists the name in ``inherits_derivatives``, saying that the
parent's method is still right for its ``grad``. That declaration covers only the class that makes
it: a subclass or mixin with a gradient of its own is judged again.

:func:`check_problem` compares ``grad`` with ``loss``, ``hvp`` with ``grad`` and ``third_derivative``
with ``hvp`` through the decay of
their Taylor remainders (second order when they agree, first order when they do not, as pymanopt's
``check_gradient`` does); the flows and gradient descent run it once per problem of a user's class
and raise :class:`ProblemError` naming the method that disagrees.
"""

from __future__ import annotations

import abc
import functools
import threading
import warnings
import weakref

import numpy as np

from .checks import NonFiniteWarning, as_float_array, nonfinite_where

DERIVED = ("negative_grad", "hvp", "hessian", "third_derivative", "partial_grad")
"""Methods computed from ``grad``: a class's own version is used only with the ``grad`` it was written for."""

GRADIENTS = ("grad", "_grad_rows")
"""Where a class defines its gradient (``_grad_rows`` is the stacked kernel behind
:class:`pgflow.flows.problems.FactoredProblem`'s ``grad``): a class defining one of them has a new
gradient, so the derived methods it inherits are replaced."""


class ProblemError(ValueError):
    """A problem whose methods disagree with each other (a gradient that is not the loss's) or that
    returns something malformed: the message names the method."""


class Problem(abc.ABC):
    """Base of every problem: a loss f and its gradient on a flat float64 state.

    Subclasses define ``dim``, ``loss`` and ``grad`` (see the module docstring); ``hvp``, ``hessian``
    and ``negative_grad`` are derived from ``grad`` unless the subclass provides them.

    Attributes
    ----------
    inherits_derivatives : tuple of str
        Names of :data:`DERIVED` methods a subclass that overrides ``grad`` keeps from its parent
        (default: none; each then falls back to the derivation from the new ``grad``). Read from the
        class's own body only: its subclasses do not inherit the declaration.
    layout : tuple of (name, (rows, cols))
        How the state splits into named blocks; a problem without factors is one column ``x``.

    Examples
    --------
    >>> class Quadratic(Problem):
    ...     dim = 3
    ...     def loss(self, x):
    ...         return 0.5 * np.sum(np.asarray(x) ** 2, axis=-1)
    ...     def grad(self, x, out=None):
    ...         return np.multiply(1.0, x, out=out)
    >>> q = Quadratic()
    >>> q.hvp(np.ones(3), np.arange(3.0)).round(8).tolist()
    [0.0, 1.0, 2.0]
    >>> check_problem(q)
    """

    inherits_derivatives: tuple = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "loss" in vars(cls) and not getattr(cls.loss, "__isabstractmethod__", False):
            cls.loss = _reporting_nonfinite(vars(cls)["loss"])
        unknown = set(vars(cls).get("inherits_derivatives", ())) - set(DERIVED)
        if unknown:
            raise TypeError(f"{cls.__name__}.inherits_derivatives names {sorted(unknown)}; the derived methods "
                            f"are {DERIVED}")
        # The gradient this class uses comes from the first class of its MRO that defines one (itself, a
        # parent or a mixin). A derived method found further up the MRO was written for another gradient and
        # is replaced by the derivation from this one, unless the gradient's class declares it still right:
        # a declaration covers the class that makes it, not subclasses or mixins with gradients of their own.
        mro = cls.__mro__
        source = next(k for k in mro if any(name in vars(k) for name in GRADIENTS))
        if source is Problem:  # no gradient yet (abstract)
            return
        keep = set(vars(source).get("inherits_derivatives", ()))
        for name in DERIVED:
            owner = next(k for k in mro if name in vars(k))
            if owner is Problem or name in keep or mro.index(owner) <= mro.index(source):
                continue
            setattr(cls, name, vars(Problem)[name])
            if name == "partial_grad":  # the cost goes with the method
                cls.PARTIAL_GRAD_COST = Problem.PARTIAL_GRAD_COST

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """The size of the state x."""

    @abc.abstractmethod
    def loss(self, x):
        """f(x) for x of shape (dim,) (a float) or (B, dim) (shape (B,))."""

    @abc.abstractmethod
    def grad(self, x, out=None):
        """∇f(x), shaped like x, written into ``out`` if given."""

    @property
    def layout(self) -> tuple:
        return (("x", (self.dim, 1)),)

    def describe(self) -> dict:
        """What the problem is, for provenance."""
        return {"problem": type(self).__name__, "dim": self.dim}

    def check_state(self, x, name: str = "x0") -> np.ndarray:
        """A finite float64 copy of a state of shape (dim,) or (B, dim); else a clear error."""
        x = as_float_array(x, name)
        if x.ndim not in (1, 2) or x.shape[-1] != self.dim:
            raise ValueError(f"{name} must have shape ({self.dim},) or (B, {self.dim}), got {x.shape}")
        return x.copy()

    def negative_grad(self, x, out=None):
        """−∇f(x), the velocity of the gradient flow, written into ``out`` if given."""
        out = self.grad(x, out=out)
        np.negative(out, out=out)
        return out

    def hvp(self, x, v):
        """∇²f(x)·v by central differences of ``grad``: (∇f(x + hv) − ∇f(x − hv))/(2h).

        h = ε^{1/3}·(1 + ‖x‖)/‖v‖ balances truncation (∝ h²) and rounding (∝ ε/h): about 4e-11
        relative error for a smooth f. Exact products are better: a problem that can compute them
        overrides this.
        """
        x = np.asarray(x, dtype=float)
        v = np.asarray(v, dtype=float)
        size = float(np.linalg.norm(v))
        if size == 0.0:
            return np.zeros_like(x)
        h = np.cbrt(np.finfo(float).eps) * (1.0 + float(np.linalg.norm(x))) / size
        return (self.grad(x + h * v) - self.grad(x - h * v)) / (2.0 * h)

    def third_derivative(self, x, a, b):
        """∇³f(x)[a, b], shape (dim,), by central differences of ``hvp``: (∇²f(x + hb) − ∇²f(x − hb))a/(2h).

        With the problem's own (exact) ``hvp`` the error is about ε^{2/3} relative, as for ``hvp``;
        with the finite-difference ``hvp`` differences are nested and only about ε^{1/3} ≈ 6e-6 is
        left: a problem that knows its third derivative should say so.
        """
        x = np.asarray(x, dtype=float)
        a = np.asarray(a, dtype=float)
        b = np.asarray(b, dtype=float)
        size = float(np.linalg.norm(b))
        if size == 0.0 or not np.any(a):
            return np.zeros_like(x)
        h = np.cbrt(np.finfo(float).eps) * (1.0 + float(np.linalg.norm(x))) / size
        return (self.hvp(x + h * b, a) - self.hvp(x - h * b, a)) / (2.0 * h)

    def hessian(self, x) -> np.ndarray:
        """The dense ∇²f(x), shape (dim, dim), one ``hvp`` per column, symmetrized."""
        x = np.asarray(x, dtype=float)
        if x.shape != (self.dim,):
            raise ValueError(f"hessian takes a single state of shape ({self.dim},), got {x.shape}")
        H = np.column_stack([self.hvp(x, e) for e in np.eye(self.dim)])
        return 0.5 * (H + H.T)

    def partial_grad(self, x, block: str, out=None):
        """∇f with respect to one block of :attr:`layout`, shaped like that block (a whole gradient)."""
        names = [name for name, _ in self.layout]
        if block not in names:
            raise ValueError(f"block must be one of {names}, got {block!r}")
        x = np.asarray(x, dtype=float)
        start = sum(a * b for name, (a, b) in self.layout[:names.index(block)])
        rows, cols = dict(self.layout)[block]
        G = self.grad(x)[..., start:start + rows * cols].reshape(x.shape[:-1] + (rows, cols))
        if out is None:
            return G
        out[...] = G
        return out

    # What one block gradient costs, as a fraction of a full gradient evaluation (GD's nfev counts it)
    PARTIAL_GRAD_COST = 1.0

    def random_state(self, rng) -> np.ndarray:
        """A state to check the derivatives at: i.i.d. N(0, 1) entries (a subclass may know better)."""
        return rng.standard_normal(self.dim)


# a loss that calls its parent's (super().loss(x) + a regularizer) reports a non-finite value once, from
# the outermost call
_EVALUATING = threading.local()


def _reporting_nonfinite(loss):
    """``loss`` that warns (:class:`~pgflow.flows.checks.NonFiniteWarning`) when its value is NaN or ±inf,
    saying whether the state itself was finite: a pure evaluation never passes NaN on in silence."""
    if getattr(loss, "_reports_nonfinite", False):
        return loss

    @functools.wraps(loss)
    def checked(self, x):
        if getattr(_EVALUATING, "active", False):
            return loss(self, x)
        _EVALUATING.active = True
        try:
            value = loss(self, x)
        finally:
            _EVALUATING.active = False
        where = nonfinite_where(value, item="state")
        if where is not None:
            bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
            cause = f"the state has {bad} non-finite entries" if bad else "the state is finite (an overflow?)"
            warnings.warn(f"{type(self).__name__}.loss is {where}: {cause}", NonFiniteWarning, stacklevel=2)
        return value

    checked._reports_nonfinite = True
    return checked


# --------------------------------------------------------------------------------------------------
# the consistency check
# --------------------------------------------------------------------------------------------------

# Taylor steps, as fractions of the state's scale: from 1 down to 1e-7
_STEPS = np.logspace(0, -7, 15)
# a remainder this far above the rounding of its terms is measured, not noise
_ABOVE_NOISE = 1e3
# the fitted decay of a remainder must reach this (2 when the derivative is right, 1 when not)
_MIN_ORDER = 1.7


def _decay(remainders, noise) -> float | None:
    """The median slope of log remainder against log h over the steps where the remainder is measured
    (above ``_ABOVE_NOISE`` × its rounding), or None when fewer than three are (a remainder that is
    zero to rounding at every step: an affine or exactly quadratic function along the direction)."""
    r, noise = np.asarray(remainders), np.asarray(noise)
    measured = np.flatnonzero(r > _ABOVE_NOISE * noise)
    if measured.size < 3:
        return None
    # consecutive measured steps: the slopes between neighbours
    h = _STEPS[measured]
    slopes = np.diff(np.log(r[measured])) / np.diff(np.log(h))
    return float(np.median(slopes))


def check_problem(problem, x=None, *, seed: int = 0, hvp: bool | None = None,
                  third_derivative: bool | None = None) -> None:
    """Check that ``grad`` is the gradient of ``loss`` (and ``hvp`` the derivative of ``grad``,
    ``third_derivative`` that of ``hvp``).

    Along a random direction v, the remainder |f(x + hv) − f(x) − h⟨∇f(x), v⟩| decays like h² when
    ∇f is right and like h when it is not; likewise ‖∇f(x + hv) − ∇f(x) − h ∇²f(x)v‖ for ``hvp``
    and ‖∇²f(x + hv)w − ∇²f(x)w − h ∇³f(x)[w, v]‖ for ``third_derivative`` (w a second direction).
    The decay is fitted over h from the state's scale down to where rounding takes over.

    Parameters
    ----------
    problem : Problem
    x : array_like, shape (dim,), optional
        Where to check (default: ``problem.random_state`` from ``seed``).
    seed : int
        Seed of the state and the direction.
    hvp : bool, optional
        Also check ``hvp`` against ``grad``. Default: when the problem defines its own ``hvp`` (the
        finite-difference default is second order by construction, so checking it proves nothing).
    third_derivative : bool, optional
        Also check ``third_derivative`` against ``hvp``. Default: when the problem defines its own.

    Raises
    ------
    ProblemError
        Naming the method that disagrees (with the measured order), or that returned a wrong shape or
        non-finite values.
    """
    rng = np.random.default_rng(seed)
    name = type(problem).__name__
    if x is None:
        x = problem.random_state(rng) if hasattr(problem, "random_state") else rng.standard_normal(problem.dim)
    x = np.asarray(x, dtype=float)
    v = rng.standard_normal(x.shape)
    v *= max(float(np.linalg.norm(x)), 1.0) / float(np.linalg.norm(v))

    def loss(y):
        return _scalar(problem.loss(y), f"{name}.loss")

    def grad(y):
        return _vector(problem.grad(y), x.shape, f"{name}.grad")

    g0 = grad(x)
    _expect_second_order(loss, x, v, float(g0 @ v), f"{name}.grad is not the gradient of {name}.loss",
                         "|f(x + hv) − f(x) − h⟨grad(x), v⟩|", " (a sign error, a missing factor or a transposed block?)")
    # the flows' velocity: a negative_grad from another gradient than this grad would integrate the wrong loss
    # (a duck-typed problem has none: the flows negate its grad)
    if hasattr(problem, "negative_grad"):
        gap = float(np.linalg.norm(_vector(problem.negative_grad(x), x.shape, f"{name}.negative_grad") + g0))
        if not gap <= 1e-10 * max(float(np.linalg.norm(g0)), 1e-300):
            raise ProblemError(f"{name}.negative_grad is not −{name}.grad: ‖negative_grad(x) + grad(x)‖ = "
                               f"{gap:.3g}, ‖grad(x)‖ = {float(np.linalg.norm(g0)):.3g}")
    if hvp is None:
        hvp = _has_own(problem, "hvp")
    if third_derivative is None:
        third_derivative = _has_own(problem, "third_derivative")
    if hvp:
        Hv = _vector(problem.hvp(x, v), x.shape, f"{name}.hvp")
        _expect_second_order(grad, x, v, Hv, f"{name}.hvp is not the derivative of {name}.grad",
                             "‖grad(x + hv) − grad(x) − h·hvp(x, v)‖")
    if third_derivative:
        w = rng.standard_normal(x.shape)
        T = _vector(problem.third_derivative(x, w, v), x.shape, f"{name}.third_derivative")
        _expect_second_order(lambda y: _vector(problem.hvp(y, w), x.shape, f"{name}.hvp"), x, v, T,
                             f"{name}.third_derivative is not the derivative of {name}.hvp",
                             "‖hvp(x + hv, w) − hvp(x, w) − h·third_derivative(x, w, v)‖")


def _expect_second_order(F, x, v, dF, failure: str, remainder: str, hint: str = "") -> None:
    """Raise ProblemError(failure) unless ‖F(x + hv) − F(x) − h·dF‖ decays like h² over :data:`_STEPS`
    (or stays at rounding level: F affine along v)."""
    eps = np.finfo(float).eps
    F0 = F(x)
    r, noise = [], []
    for h in _STEPS:
        Fh = F(x + h * v)
        r.append(float(np.linalg.norm(Fh - F0 - h * dF)))
        noise.append(eps * float(np.linalg.norm(Fh) + np.linalg.norm(F0) + np.linalg.norm(h * dF)))
    order = _decay(r, noise)
    if order is not None and order < _MIN_ORDER:
        raise ProblemError(f"{failure}: the Taylor remainder {remainder} decays like h^{order:.2f}, not h²"
                           f"{hint}; pass check=False to skip this check")


def _scalar(value, what: str) -> float:
    value = np.asarray(value)
    if value.shape not in ((), (1,)) or not np.isfinite(value).all():
        raise ProblemError(f"{what} must return one finite number for a state of shape (dim,), got "
                           f"{value!r:.80}")
    return float(value.reshape(()))


def _vector(value, shape, what: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ProblemError(f"{what} must return a numpy array shaped like x, {shape}, got {type(value).__name__}")
    if value.shape != shape:
        raise ProblemError(f"{what} must return an array shaped like x, {shape}, got shape {value.shape}")
    if not np.isfinite(value).all():
        raise ProblemError(f"{what} returned non-finite values at a finite state")
    return value.astype(float, copy=False)


# problems already checked (by identity, without keeping them alive)
_CHECKED = weakref.WeakSet()
# classes whose derivatives pgflow's own tests check: not checked again at every run
TRUSTED: set = set()


def ensure_consistent(problem, check: bool = True) -> None:
    """Run :func:`check_problem` once per problem object (none for pgflow's own classes, whose tests
    check them, or with ``check=False``)."""
    if not check or type(problem) in TRUSTED:
        return
    if not all(hasattr(problem, name) for name in ("loss", "grad", "dim")):
        return  # a duck-typed problem without a loss has nothing to check its gradient against
    try:
        if problem in _CHECKED:
            return
    except TypeError:  # not weakly referenceable: check every time
        check_problem(problem)
        return
    check_problem(problem)
    _CHECKED.add(problem)


def _has_own(problem, name: str) -> bool:
    """Whether the derived method ``name`` is the problem's own (worth checking), not the
    finite-difference default."""
    method = getattr(type(problem), name, None)
    return method is not None and method is not vars(Problem)[name]
