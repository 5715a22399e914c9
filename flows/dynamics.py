"""Vector fields ẋ = F(t, x) built on a problem's one gradient.

A flow object is what :func:`flows.integrate` consumes:

``problem``
    The problem whose state it moves.
``__call__(t, x) -> ẋ``
    The right-hand side (scipy's ``fun``), for x of shape (dim,) or a batch (B, dim). A flow whose
    ``__call__`` also takes ``out=`` (an array shaped like x) writes into it, and the explicit
    Runge–Kutta solvers then evaluate it straight into their stage buffers.
``jac(t, x) -> (dim, dim)`` or ``None``
    The analytic Jacobian ∂F/∂x, handed to the implicit solvers.
``monitors() -> dict``
    Extra monitors the flow contributes (e.g. the perturbation norm of a perturbed flow).
``describe() -> dict``
    Provenance.
"""

from __future__ import annotations

import numpy as np

from ._checks import positive
from .descent import VARIANTS, scaled_gradient
from .problems import negative_grad


class GradientFlow:
    """Gradient flow ẋ = −∇f(x); for factorization U̇ = RV, V̇ = RᵀU with R = Σ − UVᵀ.

    Its Jacobian is −∇²f, the problem's dense Hessian (assembled from Kronecker blocks).

    Parameters
    ----------
    problem : problem object
        Anything with ``grad`` and ``hessian`` (see :mod:`flows.problems`).

    Examples
    --------
    >>> from flows import MatrixFactorization, init
    >>> p = MatrixFactorization.random(m=4, n=3, rank=1, width=2, seed=0)
    >>> x = init.gaussian(p, scale=0.1, seed=1)
    >>> bool(np.allclose(GradientFlow(p)(0.0, x), -p.grad(x)))
    True
    """

    def __init__(self, problem):
        self.problem = problem

    def __call__(self, t, x, out=None):
        return negative_grad(self.problem, x, out)

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
    precondition through :func:`flows.descent.scaled_gradient`.

    Parameters
    ----------
    problem : problem object with two factors (U, V)

    Notes
    -----
    Only single states x of shape (dim,): the preconditioner solves one k×k system per factor.
    UᵀU and VᵀV must stay invertible (full column rank factors).

    The Jacobian is built column by column from :meth:`jvp`, with P_V = (VᵀV)⁻¹,

        ∂F_U[W] = −(∇²f W)_U P_V + (G_U P_V)(W_VᵀV + VᵀW_V) P_V,

    and the mirror image for V: a Python loop over ``dim`` columns, so keep it to small problems.
    """

    def __init__(self, problem):
        _two_factors(problem, "ScaledGradientFlow")
        self.problem = problem

    def _single(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.shape != (self.problem.dim,):
            raise ValueError(f"x must have shape ({self.problem.dim},) (ScaledGradientFlow takes no batches), "
                             f"got {x.shape}")
        return x

    def __call__(self, t, x):
        x = self._single(x)
        out = scaled_gradient(self.problem, x, self.problem.grad(x))
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

    Every term goes through ``problem.grad`` and ``problem.hvp``.

    Parameters
    ----------
    problem : problem object
    step_size : float
        η > 0, the GD step this flow models.
    variant : {"simultaneous", "alternating", "scaled"}
        As in :func:`flows.gradient_descent`; the last two need a problem with factors (U, V).

    Notes
    -----
    ``jac`` is None: the Jacobian would need third derivatives of f, and the modified flow is not
    stiff for the step sizes it models (η below the stability limit), so integrate it with an
    explicit method; implicit ones fall back to scipy's finite differences.

    Examples
    --------
    >>> from flows import MatrixFactorization, init
    >>> p = MatrixFactorization.random(m=4, n=3, rank=1, width=2, seed=0)
    >>> x = init.gaussian(p, scale=0.5, seed=1)
    >>> g = p.grad(x)
    >>> bool(np.allclose(ModifiedFlow(p, 0.1)(0.0, x), -g - 0.05 * p.hvp(x, g)))
    True
    """

    jac = None

    def __init__(self, problem, step_size: float, variant: str = "simultaneous"):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if variant != "simultaneous":
            _two_factors(problem, f"variant={variant!r}")
        self.problem = problem
        self.step_size = positive(step_size, "step_size")
        self.variant = variant
        self._scaled = ScaledGradientFlow(problem) if variant == "scaled" else None

    def __call__(self, t, x):
        eta = self.step_size
        if self._scaled is not None:
            F = self._scaled(t, x)
            return F - 0.5 * eta * self._scaled.jvp(x, F)
        p = self.problem
        g = p.grad(x)
        out = -g - 0.5 * eta * p.hvp(x, g)
        if self.variant == "alternating":
            u, v = p.slices().values()
            first = np.zeros_like(g)
            first[..., u] = g[..., u]
            out[..., v] += eta * p.hvp(x, first)[..., v]
        return out

    def monitors(self) -> dict:
        return {}

    def describe(self) -> dict:
        return {"flow": type(self).__name__, "step_size": self.step_size, "variant": self.variant}
