r"""Numeric checks of derivations against pgflow's dynamics objects, not against the symbolic layer.

The symbolic derivations (gradients, time derivatives, GD increments, vector fields) are compared
with numbers made by :mod:`pgflow.flows`: ``problem.grad``, the right-hand sides of
:class:`~pgflow.flows.GradientFlow`, :class:`~pgflow.flows.PerturbedGradientFlow` (with a
:class:`~pgflow.flows.FixedPerturbation`, both forms) and :class:`~pgflow.flows.ModifiedFlow`, and one
step of :func:`~pgflow.flows.gradient_descent`. A time derivative is checked against the 8th-order
central difference of the quantity along the flow's own numeric vector field (exact for
polynomials of degree ≤ 8 along the line, so only rounding remains), at two step sizes; a GD
increment against q(x₊) − q(x) with x₊ the iterate gradient descent computed. Random states, at
several sizes; spectral quantities are checked at states where their values are simple (generic
random states), redrawn if a state lands near a nonsmooth point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...flows import (FixedPerturbation, GradientFlow, MatrixFactorization, ModifiedFlow, PerturbedGradientFlow,
                      gradient_descent)
from .codegen import compile_expr, problem_values
from .vocabulary import DIMS

NUMERIC_SIZES = ((6, 5, 3, 2), (5, 7, 2, 3), (8, 6, 4, 1))
"""(m, n, k, r) of the numeric checks: k > r, k < r, r = 1, m > n and m < n."""

REL_TOL = 1e-7
"""Relative tolerance of a numeric check (the measured agreement of true derivations is ~1e-12)."""

_STENCIL = np.array([1 / 280, -4 / 105, 1 / 5, -4 / 5, 0.0, 4 / 5, -1 / 5, 4 / 105, -1 / 280])


@dataclass(frozen=True)
class Finding:
    """One numeric or exact comparison: what, at which sizes, whether it passed, and its relative error."""

    check: str
    sizes: tuple
    passed: bool
    error: float

    def __str__(self) -> str:
        return f"{'ok  ' if self.passed else 'FAIL'} {self.check} at (m, n, k, r) = {self.sizes}: error {self.error:.2g}"


class Point:
    """A random factorization problem, state, perturbations, step size and time, with evaluators.

    Parameters
    ----------
    sizes : tuple (m, n, k, r)
    rng : numpy.random.Generator
    """

    def __init__(self, sizes, rng):
        m_, n_, k_, r_ = sizes
        self.sizes = tuple(sizes)
        self.problem = MatrixFactorization.random(m_, n_, r_, k_, condition=2.5,
                                                  seed=int(rng.integers(2 ** 31)))
        self.x = 0.6 * rng.standard_normal(self.problem.dim)
        self.E = 0.3 * rng.standard_normal((m_, n_))
        self.e = 0.3 * rng.standard_normal(self.problem.dim)
        self.eta = float(0.04 + 0.04 * rng.random())
        self.t = float(rng.random())
        self.target = problem_values(self.problem)
        E_U, E_V = self.problem.unpack(self.e)
        self.extras = {"E": self.E, "E_U": E_U, "E_V": E_V, "eta": self.eta}
        self.flows = {"gf": GradientFlow(self.problem),
                      "pgf_residual": PerturbedGradientFlow(self.problem, FixedPerturbation(self.E)),
                      "pgf_additive": PerturbedGradientFlow(self.problem, FixedPerturbation(self.e), form="additive"),
                      "modified": ModifiedFlow(self.problem, self.eta)}

    def field(self, dynamics: str) -> np.ndarray:
        """The flow object's right-hand side at the state, or the GD increment x₊ − x."""
        if dynamics == "gd":
            step = gradient_descent(self.problem, self.x, self.eta, 1, default_monitors=False)
            return step.x[-1] - self.x
        return np.asarray(self.flows[dynamics](self.t, self.x), dtype=float)

    def value(self, expr, x=None, t=None, with_flags: bool = False):
        """``expr`` at the flat state ``x`` (default: the point's) and time ``t``, as an array."""
        fn = compile_expr(expr)
        U_, V_ = self.problem.unpack(self.x if x is None else x)
        env = {**self.target, **self.extras, "U": U_, "V": V_, "t": self.t if t is None else t}
        wanted = set(fn.leaves) | {d.name for d in DIMS}
        args = {name: v for name, v in env.items() if name in wanted}
        if with_flags:
            return fn.with_flags(**args)
        return np.asarray(fn(**args), dtype=float)

    def along(self, q, direction: np.ndarray, clock: float):
        """(derivative of q along x + h·direction, t + clock·h at h = 0, estimated error, scale)."""
        scale_x = max(np.linalg.norm(self.x), 1e-3)
        size = np.linalg.norm(direction)
        if size == 0:
            return np.zeros_like(self.value(q)), 0.0, float(np.max(np.abs(self.value(q))))
        estimates, magnitude = [], 0.0
        for h in (2e-2 * scale_x / size, 1e-2 * scale_x / size):
            values = [self.value(q, self.x + j * h * direction, self.t + clock * j * h) for j in range(-4, 5)]
            magnitude = max(magnitude, max(float(np.max(np.abs(v))) for v in values) / h)
            estimates.append(sum(c * v for c, v in zip(_STENCIL, values)) / h)
        return estimates[1], float(np.max(np.abs(estimates[0] - estimates[1]))), magnitude


def compare(check: str, sizes, got, want, floor: float = 0.0) -> Finding:
    """|got − want| ≤ REL_TOL·(|got| + |want|) + floor, entry-wise maximum."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    scale = float(np.max(np.abs(got)) + np.max(np.abs(want))) if got.size else 0.0
    ok = bool(np.all(np.isfinite(got)) and np.all(np.isfinite(want)) and diff <= REL_TOL * scale + floor)
    return Finding(check, tuple(sizes), ok, diff / scale if scale > 0 else diff)


def rate_check(point: Point, q, derived, dynamics: str, clock: float) -> Finding:
    """The symbolic rate ``derived`` against the difference quotient of q along the numeric field."""
    field = point.field(dynamics)
    fd, spread, magnitude = point.along(q, field, clock)
    return compare(f"{dynamics}: d/dt q against differences along the {dynamics} flow object", point.sizes,
                   point.value(derived), fd, floor=1e-11 * magnitude + 4 * spread)


def gd_check(point: Point, q, increment) -> Finding:
    """The symbolic GD increment against q(x₊) − q(x), x₊ from gradient_descent."""
    x_next = point.x + point.field("gd")
    before, after = point.value(q), point.value(q, x_next, point.t + point.eta)
    floor = 1e-10 * float(np.max(np.abs(before)) + np.max(np.abs(after)))
    return compare("gd: the increment against q(x₊) − q(x) with x₊ from gradient_descent", point.sizes,
                   point.value(increment), after - before, floor=floor)


def field_check(point: Point, dynamics: str, field, label: str) -> Finding:
    """A symbolic vector field (U̇, V̇) (or GD update U₊ − U, V₊ − V) against the flow object's."""
    U_dot, V_dot = (point.value(f) for f in field)
    want = point.field(dynamics)
    return compare(f"{dynamics}: {label} against the {'gradient_descent step' if dynamics == 'gd' else 'flow object'}",
                   point.sizes, point.problem.pack(U_dot, V_dot), want, floor=1e-13 * float(np.max(np.abs(want))))


def gradient_check(point: Point, q, grad, block: str, rng) -> Finding:
    """⟨∇_X q, D⟩ against the difference quotient of q along a random D in block X ("U" or "V")."""
    D_U, D_V = (rng.standard_normal(a.shape) for a in point.problem.unpack(point.x))
    D_U, D_V = (D_U, 0 * D_V) if block == "U" else (0 * D_U, D_V)
    pairing = np.sum(point.value(grad) * (D_U if block == "U" else D_V))
    fd, spread, magnitude = point.along(q, point.problem.pack(D_U, D_V), 0.0)
    return compare(f"gradient: ⟨∇_{block} q, D⟩ against differences along D", point.sizes, pairing, fd,
                   floor=1e-11 * magnitude + 4 * spread)


def smooth_at(point: Point, exprs) -> bool:
    """Whether no rate in ``exprs`` is taken at a (near-)nonsmooth point of this state."""
    for e in exprs:
        _, flags = point.value(e, with_flags=True)
        if flags is not None and np.any(flags):
            return False
    return True
