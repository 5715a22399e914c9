"""Vector fields ẋ = F(t, x) built on a problem's one gradient: the gradient flow, ScaledGD's flow,
the modified flow of backward error analysis and the perturbed gradient flow.

A flow object is what :func:`pgflow.flows.integration.integrate` consumes and what
:func:`pgflow.flows.descent.gradient_descent` takes explicit Euler steps on:

``problem``
    The problem whose state it moves.
``__call__(t, x, out=None) -> ẋ``
    The right-hand side (scipy's ``fun``), for x of shape (dim,) or a batch (B, dim), written into
    ``out`` (an array shaped like x) when given: the explicit Runge–Kutta solvers then evaluate it
    straight into their stage buffers.
``jac(t, x) -> (dim, dim)`` or ``None``
    The analytic Jacobian ∂F/∂x, handed to the implicit solvers.
``monitors() -> dict``
    Extra monitors the flow contributes (e.g. the perturbation norm of a perturbed flow).
``dynamics``
    The :class:`pgflow.flows.trajectory.Dynamics` record every trajectory of this flow carries.
``describe() -> dict``
    Provenance.

The mathematics of each field is in ``docs/math/dynamics.md``.
"""

from __future__ import annotations

import numpy as np

from .base import ensure_consistent
from .checks import positive
from .perturbations import FORMS, magnitude
from .problems import couple_residual, negative_grad
from .trajectory import Dynamics

VARIANTS = ("simultaneous", "alternating", "scaled")
"""The GD schemes of :func:`pgflow.flows.descent.gradient_descent` (and of :class:`ModifiedFlow`)."""


def _into(out, value):
    """``value`` written into ``out`` when given (a flow evaluated into a solver's stage row)."""
    if out is None:
        return value
    out[...] = value
    return out


class GradientFlow:
    """Gradient flow ẋ = −∇f(x); for factorization U̇ = RV, V̇ = RᵀU with R = Σ − UVᵀ.

    Its Jacobian is −∇²f, the problem's dense Hessian (assembled from Kronecker blocks).

    Parameters
    ----------
    problem : Problem
        A :class:`pgflow.flows.base.Problem` (or anything with ``grad`` and ``hessian``).
    check : bool
        Check once that the problem's ``grad`` is the gradient of its ``loss``
        (:func:`pgflow.flows.base.check_problem`; pgflow's own problem classes are not re-checked).

    Examples
    --------
    >>> from pgflow.flows import MatrixFactorization, init
    >>> p = MatrixFactorization.random(m=4, n=3, rank=1, width=2, seed=0)
    >>> x = init.gaussian(p, scale=0.1, seed=1)
    >>> bool(np.allclose(GradientFlow(p)(0.0, x), -p.grad(x)))
    True
    """

    dynamics = Dynamics("gf")

    def __init__(self, problem, *, check: bool = True):
        ensure_consistent(problem, check)
        self.problem = problem

    def __call__(self, t, x, out=None):
        return negative_grad(self.problem, x, out)

    def stage_kernel(self, shape: tuple[int, ...]):
        """The right-hand side as ``into(t, y, out)`` on flat arrays for states of ``shape``, bound once
        per solve (the problem's :meth:`~pgflow.flows.problems.FactoredProblem.negative_grad_kernel`), or
        None: then a solver calls the flow itself (always for a subclass with a ``__call__`` of its own,
        which this kernel would bypass)."""
        if type(self).__call__ is not GradientFlow.__call__:
            return None
        kernel = getattr(self.problem, "negative_grad_kernel", None)
        return None if kernel is None else kernel(shape)

    def jac(self, t, x):
        return -self.problem.hessian(x)

    def monitors(self) -> dict:
        return {}

    def describe(self) -> dict:
        return {"flow": type(self).__name__}


def _two_factors(problem, what: str):
    if len(problem.layout) != 2:
        raise ValueError(f"{what} needs a problem with two factors (U, V), got factors "
                         f"{[name for name, _ in problem.layout]}")


class ScaledGradientFlow:
    """The flow of ScaledGD (Tong, Ma, Chi): U̇ = −∇_U f (VᵀV)⁻¹, V̇ = −∇_V f (UᵀU)⁻¹.

    ScaledGD (``gradient_descent(..., variant="scaled")``) is explicit Euler on this flow; both
    precondition through :func:`scaled_gradient`.

    Parameters
    ----------
    problem : problem object with two factors (U, V)
    check : bool
        Check once that ``grad`` is the gradient of ``loss`` (see :class:`GradientFlow`).

    Notes
    -----
    The right-hand side takes a state (dim,) or a batch (B, dim); ``jvp`` and ``jac`` a single state.
    UᵀU and VᵀV must stay invertible (full column rank factors).

    The Jacobian is built column by column from :meth:`jvp`, with P_V = (VᵀV)⁻¹,

        ∂F_U[W] = −(∇²f W)_U P_V + (G_U P_V)(W_VᵀV + VᵀW_V) P_V,

    and the mirror image for V: a Python loop over ``dim`` columns, so keep it to small problems.
    """

    dynamics = Dynamics("scaled_gf")

    def __init__(self, problem, *, check: bool = True):
        _two_factors(problem, "ScaledGradientFlow")
        ensure_consistent(problem, check)
        self.problem = problem

    def _single(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.shape != (self.problem.dim,):
            raise ValueError(f"x must have shape ({self.problem.dim},) (jvp and jac take one state, not a "
                             f"batch), got {x.shape}")
        return x

    def __call__(self, t, x, out=None):
        x = np.asarray(x, dtype=float)
        out = scaled_gradient(self.problem, x, self.problem.grad(x, out=out))
        np.negative(out, out=out)
        return out

    def jvp(self, x, w) -> np.ndarray:
        """∂F(x)·w, the derivative of the right-hand side in the direction w (shape (dim,))."""
        x = self._single(x)
        w = self._single(w)
        p = self.problem
        U, V = p.unpack(x)
        WU, WV = p.unpack(w)
        SU, SV = p.unpack(scaled_gradient(p, x, p.grad(x)))
        # both terms end in the same right factor P: precondition their sum once
        inner = p.join(SU @ (WV.T @ V + V.T @ WV), SV @ (WU.T @ U + U.T @ WU)) - p.hvp(x, w)
        return scaled_gradient(p, x, inner)

    def jac(self, t, x):
        x = self._single(x)
        return np.column_stack([self.jvp(x, e) for e in np.eye(self.problem.dim)])

    def monitors(self) -> dict:
        return {}

    def describe(self) -> dict:
        return {"flow": type(self).__name__}


class ModifiedFlow:
    r"""The modified equation of a GD variant: the flow its iterates follow to O(η²).

    Backward error analysis: one step x₊ = x + ηF(x) + η²D(x) + O(η³) of a scheme whose flow limit is
    ẋ = F is matched to O(η³) by the flow ẋ = F + η(D − ½F′F), so over a fixed time GD stays O(η²)
    from this flow but only O(η) from ẋ = F.

    simultaneous (x₊ = x − η∇f):
        ẋ = −∇f − (η/2)∇²f∇f.
    alternating (V sees the new U):
        V₊ = V − η∇_V f(U − ηG_U, V) adds D = (0, H_VU G_U), so
        ẋ = −∇f − (η/2)∇²f∇f + η(0, H_VU G_U), H_VU G_U = (∇²f·(G_U, 0))_V.
    scaled (ScaledGD, Euler on F = :class:`ScaledGradientFlow`):
        ẋ = F − (η/2)F′F with F′F from :meth:`ScaledGradientFlow.jvp`.

    ``order=2`` (simultaneous GD) adds the η² term of explicit Euler's modified equation,
    η²((1/12)F″(F, F) + (1/3)F′F′F) with F = −∇f, F′ = −∇²f, F″ = −∇³f:

        ẋ = −∇f − (η/2)∇²f∇f − η²((1/12)∇³f[∇f, ∇f] + (1/3)∇²f∇²f∇f),

    so GD stays O(η³) from it over a fixed time.

    Every term goes through ``problem.grad``, ``problem.hvp`` and (order 2) ``problem.third_derivative``.

    Parameters
    ----------
    problem : problem object
    step_size : float
        η > 0, the GD step this flow models.
    variant : {"simultaneous", "alternating", "scaled"}
        As in :func:`pgflow.flows.descent.gradient_descent`; the last two need a problem with factors (U, V).
    order : {1, 2}
        The power of η up to which the flow matches the scheme's steps (its distance to GD is then
        O(η^(order+1)) over a fixed time). Order 2 is derived for simultaneous GD.
    check : bool
        Check once that ``grad`` is the gradient of ``loss`` (see :class:`GradientFlow`).

    Notes
    -----
    ``jac`` is None: the Jacobian would need third derivatives of f, and the modified flow is not
    stiff for the step sizes it models (η below the stability limit), so integrate it with an
    explicit method; implicit ones fall back to scipy's finite differences.

    Examples
    --------
    >>> from pgflow.flows import MatrixFactorization, init
    >>> p = MatrixFactorization.random(m=4, n=3, rank=1, width=2, seed=0)
    >>> x = init.gaussian(p, scale=0.5, seed=1)
    >>> g = p.grad(x)
    >>> bool(np.allclose(ModifiedFlow(p, 0.1)(0.0, x), -g - 0.05 * p.hvp(x, g)))
    True
    """

    jac = None

    def __init__(self, problem, step_size: float, variant: str = "simultaneous", *, order: int = 1,
                 check: bool = True):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if isinstance(order, bool) or order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order!r}")
        if order == 2 and variant != "simultaneous":
            raise ValueError(f"order=2 is derived for simultaneous GD (explicit Euler) only, got variant={variant!r}")
        if variant != "simultaneous":
            _two_factors(problem, f"variant={variant!r}")
        ensure_consistent(problem, check)
        self.problem = problem
        self.step_size = positive(step_size, "step_size")
        self.variant = variant
        self.order = int(order)
        self._scaled = ScaledGradientFlow(problem, check=False) if variant == "scaled" else None
        self.dynamics = Dynamics("modified", variant=variant, step_size=self.step_size, order=self.order)

    def __call__(self, t, x, out=None):
        eta = self.step_size
        if self._scaled is not None:
            F = self._scaled(t, x)
            return _into(out, F - 0.5 * eta * self._scaled.jvp(x, F))
        p = self.problem
        g = p.grad(x)
        Hg = p.hvp(x, g)
        value = -g - 0.5 * eta * Hg
        if self.order == 2:
            value -= eta**2 * (p.third_derivative(x, g, g) / 12.0 + p.hvp(x, Hg) / 3.0)
        if self.variant == "alternating":
            u, v = p.slices().values()
            first = np.zeros_like(g)
            first[..., u] = g[..., u]
            value[..., v] += eta * p.hvp(x, first)[..., v]
        return _into(out, value)

    def monitors(self) -> dict:
        return {}

    def describe(self) -> dict:
        return {"flow": type(self).__name__, "step_size": self.step_size, "variant": self.variant,
                "order": self.order}


class PerturbedGradientFlow:
    r"""Perturbed gradient flow ẋ = −∇f(x) + (perturbation term), in residual or additive form.

    residual: U̇ = (Σ − UVᵀ + E)V, V̇ = (Σ − UVᵀ + E)ᵀU (E of shape (m, n));
    additive: U̇ = RV + E_U, V̇ = RᵀU + E_V (E flat, shape (dim,)).

    The Jacobian is analytic when E does not depend on the state: −∇²f, plus in the residual form
    the blocks ∂(EV)/∂V = E ⊗ I_k and ∂(EᵀU)/∂U = Eᵀ ⊗ I_k. Otherwise ``jac`` is None (the implicit
    solvers then use finite differences). ``monitors()`` records ‖E‖ ("perturbation_norm") and, when it
    claims one, its bound ("perturbation_bound") on every saved state. Perturbations that jump on a time
    grid (:class:`~pgflow.flows.perturbations.RandomPerturbation`,
    :class:`~pgflow.flows.perturbations.MinibatchSensingError`) or need the state at the start of each
    piece (:class:`~pgflow.flows.perturbations.DiscretizationError`) are best integrated with
    :func:`pgflow.flows.piecewise.integrate_piecewise`; :func:`pgflow.flows.integration.integrate` also
    works for the former, but its
    solver steps across each jump by shrinking its step until the jump no longer shows.

    Parameters
    ----------
    problem : problem object
        The unperturbed problem (for the sensing PGF: the factorization problem with Σ = X*).
    perturbation : perturbation model
        See :mod:`pgflow.flows.perturbations` for the protocol.
    form : {"residual", "additive"}
    check : bool
        Check once that ``grad`` is the gradient of ``loss`` (see :class:`GradientFlow`).

    Examples
    --------
    >>> from pgflow.flows import FixedPerturbation, MatrixFactorization, GradientFlow, init
    >>> p = MatrixFactorization.random(m=4, n=3, rank=1, width=2, seed=0)
    >>> x = init.gaussian(p, 0.1, seed=1)
    >>> pgf = PerturbedGradientFlow(p, FixedPerturbation(np.zeros((4, 3))))
    >>> bool(np.array_equal(pgf(0.0, x), GradientFlow(p)(0.0, x)))
    True
    """

    def __init__(self, problem, perturbation, form: str = "residual", *, check: bool = True):
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        if not (callable(perturbation) and callable(getattr(perturbation, "bound", None))):
            raise TypeError(f"perturbation must be callable E(t, x) with a bound(t, x) method (see "
                            f"pgflow.flows.perturbations), got {type(perturbation).__name__}")
        if form == "residual" and len(problem.layout) != 2:
            raise ValueError("the residual form needs a problem with two factors U, V (E enters as EV, EᵀU)")
        ensure_consistent(problem, check)
        self.problem, self.perturbation, self.form = problem, perturbation, form
        self._shape = problem.target.shape if form == "residual" else (problem.dim,)
        self.jac = None if getattr(perturbation, "state_dependent", True) else self._jac
        self.dynamics = Dynamics("pgf", form=form, perturbation=perturbation.describe())

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

    def __call__(self, t, x, out=None):
        if np.ndim(x) == 2:
            return _into(out, np.stack([self(t, xi) for xi in x]))
        out = negative_grad(self.problem, x, out)
        out += self.perturbation_term(t, x)
        return out

    def _jac(self, t, x):
        J = -self.problem.hessian(x)
        if self.form == "residual":
            couple_residual(J, np.asarray(self.perturbation(t, x), dtype=float), self.problem.width)
        return J

    def piece(self, t, x_start) -> "PerturbedGradientFlow":
        """The flow on the piece of the perturbation that starts at t from ``x_start``."""
        return PerturbedGradientFlow(self.problem, self.perturbation.piece(t, x_start), self.form, check=False)

    def monitors(self) -> dict:
        """‖E(t)‖, and the bound it claims when it claims one (``perturbation.claims_bound``)."""
        E, norm = self.perturbation, getattr(self.perturbation, "norm", "fro")
        mons = {"perturbation_norm": lambda t, x: magnitude(E(t, x), norm)}
        if getattr(E, "claims_bound", True):
            mons["perturbation_bound"] = lambda t, x: float(E.bound(t, x))
        return mons

    def describe(self) -> dict:
        return {"flow": type(self).__name__, "form": self.form, "perturbation": self.perturbation.describe()}


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
