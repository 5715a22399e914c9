"""scipy's explicit Runge–Kutta methods (RK23, RK45, DOP853) with the stage arithmetic done in place.

The step, its error estimate and the step-size controller are scipy's (the same Butcher tableaux,
read from scipy's classes, the same error norms and safety factors), so a single state takes
scipy's steps to rounding. A batch of B equal members differs on purpose: its error norm is the
largest of the members' own norms (see ``_InPlace._error_norm``). What changes is how the stages
are computed. scipy forms each stage input as ``y + (K[:s].T @ a) * h`` (three temporaries),
copies the right-hand side into ``K[s]``, and estimates the error with two more passes over K. Here

- y sits in the same buffer as the stages, so a stage input is *one* product ``[1, h·a] @ [y; K]``
  over a contiguous window of rows, written into a preallocated vector (:func:`combine`); DOP853
  orders its rows so that the windows skip the stages its tableau leaves out;
- the right-hand side writes straight into its stage row (``into(t, y, out)``);
- DOP853's error estimates do not use f(y_new), so y_new and both estimates come out of one product
  over the stages (three rows of output), not three;
- the error estimates and the scale are formed in preallocated buffers and summed by batch member
  on the way, so a batch has each member's own error norm (``member_error``) for free.

A step allocates only its new state. Dense output is scipy's (DOP853's, which costs 3 more
right-hand sides and its own arrays, recomputed over the reordered buffer).

What this module takes from scipy beyond ``solve_ivp``'s public API is listed in
:data:`SCIPY_CLASS_NAMES`, :data:`SCIPY_SOLVER_STATE` and :data:`SCIPY_MODULE_NAMES` and checked
when the module is imported (:func:`check_scipy`): a scipy release that renames one of them fails
here, with the name and the scipy version this code was written against, instead of deep inside a
solve.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy
from scipy.integrate import DOP853, RK23, RK45
from scipy.integrate._ivp import rk as _scipy_rk
from scipy.linalg.blas import dgemm

SCIPY_WRITTEN_AGAINST = "1.17"
"""The scipy release these steppers were written and tested against."""

SCIPY_CLASS_NAMES = {
    RK23: ("n_stages", "order", "error_estimator_order", "A", "B", "C", "E", "TOO_SMALL_STEP"),
    RK45: ("n_stages", "order", "error_estimator_order", "A", "B", "C", "E", "TOO_SMALL_STEP"),
    DOP853: ("n_stages", "order", "error_estimator_order", "A", "B", "C", "E3", "E5", "A_EXTRA", "C_EXTRA", "D",
             "TOO_SMALL_STEP"),
}
"""Class attributes read from scipy's Runge–Kutta classes: the Butcher tableaux and error weights."""

SCIPY_SOLVER_STATE = ("t", "y", "t_old", "y_old", "t_bound", "f", "h_abs", "h_previous", "max_step", "rtol", "atol",
                      "direction", "error_exponent", "n", "nfev", "njev", "nlu", "K", "status")
"""Attributes of a constructed scipy solver that the steppers read or set (DOP853 also ``K_extended``)."""

SCIPY_MODULE_NAMES = ("Dop853DenseOutput", "SAFETY", "MIN_FACTOR", "MAX_FACTOR")
"""Names taken from ``scipy.integrate._ivp.rk`` (a private module): DOP853's interpolant and the
controller constants, which :data:`SAFETY`, :data:`MIN_FACTOR` and :data:`MAX_FACTOR` must equal."""

# scipy's step-size controller constants; check_scipy compares them with scipy's own
SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0


def check_scipy() -> None:
    """Raise ImportError naming every scipy name this module relies on that the installed scipy lacks.

    Checked at import: the class attributes, the state of a solver constructed on a one-dimensional
    problem, the private module's names, and that scipy's controller constants equal ours.
    """
    missing = [f"{cls.__name__}.{name}" for cls, names in SCIPY_CLASS_NAMES.items() for name in names
               if not hasattr(cls, name)]
    missing += [f"scipy.integrate._ivp.rk.{name}" for name in SCIPY_MODULE_NAMES if not hasattr(_scipy_rk, name)]
    for cls in SCIPY_CLASS_NAMES:
        solver = cls(lambda t, y: -y, 0.0, np.ones(1), 1.0)
        expected = SCIPY_SOLVER_STATE + (("K_extended",) if cls is DOP853 else ())
        missing += [f"{cls.__name__}(...).{name}" for name in expected if not hasattr(solver, name)]
    if not missing:
        ours = (SAFETY, MIN_FACTOR, MAX_FACTOR)
        theirs = tuple(getattr(_scipy_rk, name) for name in ("SAFETY", "MIN_FACTOR", "MAX_FACTOR"))
        if ours != theirs:
            missing.append(f"controller constants (SAFETY, MIN_FACTOR, MAX_FACTOR) = {theirs}, expected {ours}")
    if missing:
        raise ImportError(f"pgflow.flows.rk was written against scipy {SCIPY_WRITTEN_AGAINST}; scipy "
                          f"{scipy.__version__} lacks or changed: {', '.join(missing)}. Pin scipy to "
                          f"{SCIPY_WRITTEN_AGAINST}.x or update pgflow.")


check_scipy()
Dop853DenseOutput = _scipy_rk.Dop853DenseOutput


def combine(coef: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out ← coefᵀ rows, for coefficients (s,) or (s, q), rows (s, n) and out (n,) or (q, n), both
    C-contiguous.

    From n = 2000 on, one BLAS gemm on the transposes, written in place (outᵀ is Fortran-ordered,
    so f2py passes it through): OpenBLAS's gemm streams these tall, thin products 1.2-1.6× faster
    than its gemv (``np.dot``) does, which wins below, where the call costs more than the stream.
    """
    if rows.shape[1] < GEMM_FROM or not (out.flags.c_contiguous and out.dtype == np.float64):
        # f2py would write into a copy of such an out and drop the result; np.dot writes or raises
        return np.dot(coef.T, rows, out=out)
    dgemm(1.0, rows.T, coef.reshape(len(coef), -1), c=out.reshape(-1, rows.shape[1]).T, overwrite_c=True)
    return out


GEMM_FROM = 2000


def _window(where: dict, coefs: dict):
    """A linear combination of buffer rows as (rows, coefficients, y's index): ``coefs`` maps row
    labels ("y" or a stage index) to a coefficient (or a column of q coefficients); rows is the
    smallest slice of the buffer holding every nonzero one, the coefficients cover that slice (zero
    for the rows between), and y's index is its place in the slice (None if absent)."""
    used = {where[label]: np.asarray(c, dtype=float) for label, c in coefs.items() if np.any(c)}
    lo, hi = min(used), max(used) + 1
    coef = np.zeros((hi - lo,) + next(iter(used.values())).shape)
    for row, c in used.items():
        coef[row - lo] = c
    coef.flags.writeable = False  # shared by every solver of the class (see _Layout)
    y_at = where["y"] - lo if "y" in coefs else None
    return slice(lo, hi), coef, y_at


@dataclass(frozen=True)
class _Layout:
    """What an in-place stepper class computes once, whatever its state: where each row of the buffer
    is, the windows of its sums, and the stage coefficients laid end to end (``stage_coef``; stage
    i + 1's are ``stage_coef[stage_parts[i]]`` and y's coefficient sits at ``stage_y``), so a step
    scales all of them by h in one pass."""

    where: dict
    stage_sums: list
    stage_coef: np.ndarray
    stage_parts: list
    stage_y: np.ndarray
    new_sum: tuple
    err_sum: tuple | None
    n_weights: int
    h_inside: bool
    fused: bool


@functools.cache
def _layout(cls, n_rows: int) -> _Layout:
    """The :class:`_Layout` of stepper class ``cls`` with ``n_rows`` stage rows (built once per class)."""
    s = cls.n_stages
    where = {label: i for i, label in enumerate(cls.ORDER or ("y", *range(n_rows)))}
    stage_sums = [_window(where, {"y": 1.0, **dict(enumerate(cls.A[i, :i]))}) for i in range(1, s)]
    bounds = np.cumsum([0] + [len(coef) for _, coef, _ in stage_sums])
    stage_coef = np.concatenate([coef for _, coef, _ in stage_sums])
    stage_coef.flags.writeable = False
    stage_y = np.array([lo + y_at for lo, (_, _, y_at) in zip(bounds, stage_sums)])
    parts = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
    weights = np.atleast_2d(np.stack([cls.E5, cls.E3]) if hasattr(cls, "E5") else cls.E)
    if weights[:, s].any():  # RK23, RK45: the error estimate needs f(y_new)
        new_sum = _window(where, {"y": 1.0, **dict(enumerate(cls.B))})
        err_sum, fused = _window(where, dict(enumerate(weights.T))), False
    else:  # DOP853's does not: one pass over the stages gives y_new and both estimates
        columns = np.column_stack([cls.B, weights[:, :s].T])
        new_sum = _window(where, {"y": np.eye(1, len(columns.T))[0], **dict(enumerate(columns))})
        err_sum, fused = None, True
    return _Layout(where, stage_sums, stage_coef, parts, stage_y, new_sum, err_sum, len(weights),
                   len(weights) == 1, fused)



class _InPlace:
    """Mixin over a scipy RungeKutta class; see the module docstring.

    Extra constructor arguments: ``into(t, y, out)`` writes the right-hand side at (t, y) into
    ``out``; ``batch`` (int or None) splits the state into that many equal members, each of whose
    error norm must be ≤ 1 for a step to be accepted. Real states and a scalar ``rtol`` only.
    """

    def __init__(self, fun, t0, y0, t_bound, *, into, batch=None, **kwargs):
        if np.iscomplexobj(y0):
            raise TypeError("y0 must be real: the in-place steppers keep float64 buffers")
        super().__init__(fun, t0, y0, t_bound, **kwargs)
        if np.ndim(self.rtol):
            raise ValueError("rtol must be a scalar for the in-place steppers")
        self._into = into
        s = self.n_stages
        n_rows = len(getattr(self, "K_extended", self.K))  # DOP853 keeps 3 dense-output stages more
        layout = _layout(type(self), n_rows)
        self._rows = np.zeros((len(layout.where), self.n))
        self._where = layout.where
        self._y_row = self._rows[self._where["y"]]
        self._k = [self._rows[self._where[j]] for j in range(n_rows)]  # the stages, in stage order
        if self.ORDER is None:  # stage order in memory: scipy's dense output reads K as it is
            self.K = self._rows[1:s + 2]
            if hasattr(self, "K_extended"):
                self.K_extended = self._rows[1:]
        else:
            self.K = self.K_extended = None
        self._layout = layout
        # the stage sums as (h-scaled coefficients, rows) views, fixed for the solver's life
        self._stage_scaled = np.empty(len(layout.stage_coef))
        self._stage_views = [(self._stage_scaled[part], self._rows[rows])
                             for part, (rows, _, _) in zip(layout.stage_parts, layout.stage_sums)]
        self._h_inside = layout.h_inside
        self._new_sum, self._err_sum = layout.new_sum, layout.err_sum
        if layout.fused:
            self._update = np.empty((1 + layout.n_weights, self.n))
            self._err = self._update[1:]
        else:
            self._err = np.empty((layout.n_weights, self.n))
            self._update = None
        self._stage_in = np.empty(self.n)
        self._abs_y = np.abs(self.y)
        self._scale = np.empty(self.n)
        self._abs_new = np.empty(self.n)
        self.batch = batch
        self.member_error = None

    # memory order of the buffer's rows ("y" and stage indices); None: y, then the stages in order
    ORDER = None

    def stages(self) -> np.ndarray:
        """The stage derivatives K of the last step, in stage order (a copy), shape (n_stages + 1, n)."""
        return np.stack(self._k[:self.n_stages + 1])

    def _sum(self, window, h, out):
        """out ← y + h Σ a_j K_j over a window from :func:`_window` (y's coefficient stays 1); with
        columns of coefficients, the first is that sum and the others (error weights) stay as they are."""
        rows, coef, y_at = window
        scaled = coef.copy()
        first = scaled if coef.ndim == 1 else scaled[:, 0]
        first *= h
        first[y_at] = 1.0
        return combine(scaled, self._rows[rows], out)

    def _rhs(self, t, y, out):
        self.nfev += 1
        self._into(t, y, out)

    def _stages(self, t, h):
        """Fill the stages for a step of size h from (t, y) (y in its buffer row); return y_new."""
        # every stage's coefficients scaled by h in one pass (y's stay 1), as _sum would one window at a time
        np.multiply(self._layout.stage_coef, h, out=self._stage_scaled)
        self._stage_scaled[self._layout.stage_y] = 1.0
        for i, (coef, rows) in enumerate(self._stage_views, start=1):
            self._rhs(t + self.C[i] * h, combine(coef, rows, self._stage_in), self._k[i])
        if self._update is None:
            y_new = self._sum(self._new_sum, h, np.empty(self.n))
        else:
            y_new = self._sum(self._new_sum, h, self._update)[0].copy()
        self._rhs(t + h, y_new, self._k[self.n_stages])
        return y_new

    def _error_norm(self, h, y_new) -> float:
        """scipy's error norm of the step just taken; for a batch, the largest of the members' own norms.

        A batch's shared step is thus accepted only when every member's step would be accepted alone.
        (The norm of the stacked batch would let members exceed the tolerance: by √B for RK45, and by
        far more for DOP853, whose 3rd-order estimate damps the norm, so that one member's large
        3rd-order error hides another's 5th-order one.)
        """
        np.abs(y_new, out=self._abs_new)
        np.maximum(self._abs_y, self._abs_new, out=self._scale)
        self._scale *= self.rtol
        self._scale += self.atol
        err = self._err
        if self._update is None:
            # RK23/RK45 scale by h before squaring, as scipy does (squares of E·K alone can overflow)
            rows, weights, _ = self._err_sum
            combine(weights * (abs(h) if self._h_inside else 1.0), self._rows[rows], err)
        err /= self._scale
        members = 1 if self.batch is None else self.batch
        by_member = err.reshape(len(err), members, -1)
        squares = np.einsum("qbd,qbd->qb", by_member, by_member)
        h_abs, size = 1.0 if self._h_inside else abs(h), self.n // members
        if members == 1:  # one state: the same arithmetic on Python floats, without the batch's array calls
            norm = _norm(h_abs, [float(q[0]) for q in squares], size)
            self._member_norm = np.array([norm])
            return norm
        self._member_norm = _norm(h_abs, squares, size)
        return float(np.max(self._member_norm))

    def _step_impl(self):
        t, y = self.t, self.y
        min_step = 10 * np.abs(np.nextafter(t, self.direction * np.inf) - t)
        h_abs = min(max(self.h_abs, min_step), self.max_step)
        self._y_row[...] = y
        self._k[0][...] = self.f
        self.f = self._k[0]  # f(t, y) stays valid through rejected and failed attempts
        rejected = False
        while True:
            if h_abs < min_step:
                return False, self.TOO_SMALL_STEP
            t_new = t + h_abs * self.direction
            if self.direction * (t_new - self.t_bound) > 0:
                t_new = self.t_bound
            h = t_new - t
            h_abs = np.abs(h)
            y_new = self._stages(t, h)
            error_norm = self._error_norm(h, y_new)
            if error_norm < 1:
                factor = MAX_FACTOR if error_norm == 0 else min(MAX_FACTOR, SAFETY * error_norm ** self.error_exponent)
                h_abs *= min(1.0, factor) if rejected else factor
                break
            h_abs *= max(MIN_FACTOR, SAFETY * error_norm ** self.error_exponent)
            rejected = True
        self.h_previous, self.y_old = h, y
        self.t, self.y, self.h_abs = t_new, y_new, h_abs
        self.f = self._k[self.n_stages]  # a view: the next step copies it into K₀ before overwriting
        self._abs_y, self._abs_new = self._abs_new, self._abs_y
        self.member_error = self._member_norm
        return True, None


@functools.cache
def _dense_windows(cls, n_rows: int):
    """The windows of DOP853's interpolant: its 3 extra stages and D·K (built once per class)."""
    where = _layout(cls, n_rows).where
    return ([_window(where, {"y": 1.0, **dict(enumerate(a[:i]))})
             for i, a in enumerate(cls.A_EXTRA, start=cls.n_stages + 1)],
            _window(where, dict(enumerate(cls.D.T))))


def _norm(h_abs, squares, size):
    """Error norms from the per-member sums of squared scaled error estimates: rows of shape (B,), or
    of Python floats for one state (then plain float arithmetic, the same operations in the same order)."""
    if len(squares) == 1:  # RK23, RK45: RMS of h·(E·K)/scale
        return h_abs * (math.sqrt(squares[0] / size) if isinstance(squares[0], float) else np.sqrt(squares[0] / size))
    e5, e3 = squares  # DOP853: the 5th-order estimate, damped by the 3rd-order one
    denom = e5 + 0.01 * e3
    # 0 when both estimates are 0, as scipy's; a NaN estimate stays NaN, so the step is rejected
    if isinstance(e5, float):
        return 0.0 if denom == 0 else h_abs * e5 / math.sqrt(denom * size)
    return np.divide(h_abs * e5, np.sqrt(denom * size), out=np.zeros_like(e5), where=denom != 0)


class InPlaceRK23(_InPlace, RK23):
    """scipy's RK23 with in-place stages (see :mod:`pgflow.flows.rk`); real states only."""


class InPlaceRK45(_InPlace, RK45):
    """scipy's RK45 with in-place stages (see :mod:`pgflow.flows.rk`); real states only."""


class InPlaceDOP853(_InPlace, DOP853):
    """scipy's DOP853 with in-place stages (see :mod:`pgflow.flows.rk`); real states only.

    Stages 1 and 2 only feed stages 2–4, and 3, 4 no later than stage 11, so the buffer keeps them
    around y and K₀ ([K₂, K₁, y, K₀, K₃, K₄, …]): every stage sum, and the update with the error
    estimates, then read one contiguous window, 74 rows a step (y + K in stage order would be 90
    with the update fused, 103 without). A window's zero-coefficient rows are always stages of the
    same attempt (0 · NaN left over from a rejected attempt would be NaN).
    """

    ORDER = (2, 1, "y", 0, *range(3, 16))

    def _dense_output_impl(self):
        """scipy's DOP853 interpolant (3 more stages, then F = [Δ, hf₀ − Δ, 2Δ − h(f₀ + f), h D·K]),
        with the sums taken over this buffer's order."""
        extra, (rows, D, _) = _dense_windows(type(self), len(self._k))
        h = self.h_previous
        for i, (window, c) in enumerate(zip(extra, self.C_EXTRA), start=self.n_stages + 1):
            self._rhs(self.t_old + c * h, self._sum(window, h, self._stage_in), self._k[i])
        F = np.empty((3 + len(D.T), self.n))
        delta = self.y - self.y_old
        F[0] = delta
        F[1] = h * self._k[0] - delta
        F[2] = 2 * delta - h * (self.f + self._k[0])
        combine(D * h, self._rows[rows], F[3:])
        return Dop853DenseOutput(self.t_old, self.t, self.y_old, F)


IN_PLACE = {RK23: InPlaceRK23, RK45: InPlaceRK45, DOP853: InPlaceDOP853}
