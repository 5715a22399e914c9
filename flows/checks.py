"""Argument checks shared by every layer: each error names the argument and what was expected.

They never cast, clip or ignore: a value is returned normalized (a float64 array, a float, an int)
or refused with an error naming the argument.
"""

from __future__ import annotations

import functools
import numbers

import numpy as np


class NonFiniteWarning(RuntimeWarning):
    """A pure evaluation (a loss, monitors on given states) produced NaN or ±inf. The value is
    returned as computed; the warning says where it arose."""


def nonfinite_where(values, t=None, item: str = "saved state") -> str | None:
    """Where ``values`` (shape (T,) or (T, q), or a scalar) first stop being finite, or None if they never do.

    Returns e.g. ``"nan at t = 0.5 (saved state 3 of 10, and 6 later ones)"``, or
    ``"nan at state 1 of 3"`` without ``t``; a scalar is just ``"nan"`` or ``"inf"``. Without ``t`` the
    states are named by index only, as ``item`` ("saved state", or "state" of a batch).
    """
    values = np.asarray(values)
    if values.dtype.kind not in "fc":
        return None
    bad = ~np.isfinite(values)
    if not bad.any():
        return None
    if values.ndim == 0:
        return "nan" if np.isnan(values) else "inf"
    rows = bad.reshape(len(values), -1).any(axis=1)
    first = int(np.argmax(rows))
    kind = "nan" if np.isnan(values[first]).any() else "inf"
    later = int(rows.sum()) - 1
    place = f"{item} {first} of {len(values)}{f', and {later} later ones' if later else ''}"
    return f"{kind} at {place}" if t is None else f"{kind} at t = {float(np.asarray(t)[first]):.6g} ({place})"


def as_float_array(value, name: str, ndim: int | None = None, shape: tuple | None = None) -> np.ndarray:
    """Return ``value`` as a finite float64 array, or raise naming ``name``.

    ``shape`` entries that are ``None`` match any length.
    """
    if np.iscomplexobj(value):  # numpy would drop the imaginary part with only a warning
        raise TypeError(f"{name} must be real, got complex values (pgflow never drops an imaginary part)")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real array, got {type(value).__name__}") from exc
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; it has {np.size(arr) - np.count_nonzero(np.isfinite(arr))} non-finite entries")
    return arr


def positive(value, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float, or raise unless it is finite and > 0 (>= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite, got {value}")
    return value


def positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def time_grid(t_eval, t_start: float, t_end: float) -> np.ndarray | None:
    """``t_eval`` as a checked grid of output times (None stays None): a non-empty 1-D array of finite
    times, strictly monotone in the direction from ``t_start`` to ``t_end`` and inside that span."""
    if t_eval is None:
        return None
    grid = as_float_array(t_eval, "t_eval", ndim=1)
    direction = 1.0 if t_end >= t_start else -1.0
    if grid.size == 0 or np.any(direction * np.diff(grid) <= 0):
        raise ValueError(f"t_eval must be a non-empty, strictly {'in' if direction > 0 else 'de'}creasing 1-D "
                         f"array (the direction from t_start to t_end)")
    if grid.min() < min(t_start, t_end) or grid.max() > max(t_start, t_end):
        raise ValueError(f"t_eval must lie in [t_start, t_end] = [{t_start}, {t_end}], got [{grid[0]}, {grid[-1]}]")
    return grid


def renamed(**old_to_new):
    """Decorator: a call with an old keyword argument raises a TypeError naming the new one.

    ``@renamed(record_every="save_every")`` keeps every old name an error that says what to write
    instead, so a script written for an older pgflow fails at once and clearly, never silently.
    """
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for old, new in old_to_new.items():
                if old in kwargs:
                    raise TypeError(f"{fn.__name__}() got the old argument {old!r}: it is now called {new!r}")
            return fn(*args, **kwargs)
        return wrapper
    return decorate
