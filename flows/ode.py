"""Plain ODEs: a user's right-hand side ``fun(t, y, *args)`` as a flow object, and scipy's ``t_span``."""

from __future__ import annotations

import inspect

import numpy as np
import scipy.sparse

from .trajectory import Dynamics

__all__ = ["ODE", "parse_span"]


class ODE:
    """A plain right-hand side ``fun(t, y, *args)`` as a flow object (what :func:`integrate` does with a
    callable that is not a flow).

    Parameters
    ----------
    fun : callable ``fun(t, y, *args) -> ndarray``
        The right-hand side, shaped like y. A ``fun`` that also takes ``out=`` (an array shaped like
        y) writes into it, and the explicit Runge–Kutta solvers then evaluate it straight into their
        stage rows.
    args : tuple
        Extra arguments of ``fun`` (and of ``jac`` and the events).
    jac : callable ``jac(t, y, *args)``, array_like or sparse matrix, optional
        ∂fun/∂y for the implicit methods (default: finite differences).
    """

    problem = None
    dynamics = Dynamics("ode")

    def __init__(self, fun, args=(), jac=None):
        if not callable(fun):
            raise TypeError(f"fun must be callable fun(t, y), got {type(fun).__name__}")
        if not isinstance(args, tuple):
            raise TypeError(f"args must be a tuple of extra arguments of fun, got {type(args).__name__}")
        self.fun, self.args = fun, args
        try:
            self._writes_out = "out" in inspect.signature(fun).parameters
        except (TypeError, ValueError):  # a builtin or C function without a signature
            self._writes_out = False
        # a constant Jacobian goes to scipy as the matrix itself (it is then never "evaluated": njev = 0)
        self.constant_jac = None
        if jac is None or callable(jac):
            self.jac = None if jac is None else (lambda t, y: jac(t, y, *self.args))
        else:
            self.constant_jac = jac if scipy.sparse.issparse(jac) else np.asarray(jac, dtype=float)
            self.jac = lambda t, y: self.constant_jac

    def __call__(self, t, y, out=None):
        if out is not None and self._writes_out:
            result = self.fun(t, y, *self.args, out=out)
            return out if result is None else result
        value = self.fun(t, y, *self.args)
        if out is None:
            return value
        out[...] = value
        return out

    def first_value(self, t0: float, y0: np.ndarray) -> None:
        """Evaluate fun once at the start and refuse what scipy would misread later (a list, a wrong
        shape, NaN), naming ``fun``."""
        value = self.fun(t0, y0, *self.args)
        name = getattr(self.fun, "__qualname__", "fun")
        if not isinstance(value, np.ndarray):
            raise TypeError(f"fun ({name}) must return a numpy array shaped like y0, {y0.shape}, got "
                            f"{type(value).__name__} at t0 = {t0:g}")
        if value.shape != y0.shape:
            raise ValueError(f"fun ({name}) must return an array shaped like y0, {y0.shape}, got shape "
                             f"{value.shape} at t0 = {t0:g}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"fun ({name}) returned non-finite values at t0 = {t0:g} from a finite y0")
        if np.iscomplexobj(value) and not np.iscomplexobj(y0):
            raise TypeError(f"fun ({name}) returned complex values for a real y0: pass a complex y0 to "
                            f"integrate in complex arithmetic")

    def monitors(self) -> dict:
        return {}

    def describe(self) -> dict:
        return {"flow": "ode", "fun": getattr(self.fun, "__qualname__", repr(self.fun))}


def parse_span(t_span) -> tuple[float, float]:
    """``t_span`` as (t0, t1): a pair, or an end time reached from 0."""
    if np.ndim(t_span) == 0:
        pair = (0.0, t_span)
    else:
        pair = tuple(np.asarray(t_span, dtype=object).ravel())
        if len(pair) != 2:
            raise ValueError(f"t_span must be an end time or a pair (t0, t1), got {t_span!r}")
    try:
        t0, t1 = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise TypeError(f"t_span must hold real numbers, got {t_span!r}") from None
    if not np.isfinite(t0) or np.isnan(t1):
        raise ValueError(f"t_span must start at a finite time and end at a time (or ±inf), got {t_span!r}")
    return t0, t1
