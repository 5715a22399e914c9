"""Events: zeros of functions of the state located during integration, with scipy's semantics.

An event is a callable ``fun(t, y)`` (``fun(t, y, *args)`` with ``args``) whose sign change inside a
step is located on the step's interpolant. As in :func:`scipy.integrate.solve_ivp`, the callable may
carry the attributes

``terminal``
    False (or 0, or None): never stop; True: stop at the first occurrence; an integer n ≥ 1: stop at
    the n-th occurrence.
``direction``
    > 0: only crossings from negative to positive (in the direction of integration); < 0: only from
    positive to negative; 0: both.

or it may be wrapped in :class:`Event`, which also takes a ``name``. Within one step the located
zeros are taken in time order, and those after the one that terminates the run are dropped (they
did not happen: the run stopped before them). An event whose value is NaN cannot change sign; the
first NaN of each event is reported once with a warning naming the event and the time.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import brentq

from .checks import positive


class EventWarning(UserWarning):
    """An event that cannot fire: its function returned NaN."""


def _terminal_count(terminal, where: str) -> int:
    """scipy's ``terminal`` as a count of occurrences (0: never stop)."""
    if terminal is None or terminal is False:
        return 0
    if terminal is True:
        return 1
    if isinstance(terminal, numbers.Integral) and terminal >= 0:
        return int(terminal)
    raise ValueError(f"The `terminal` attribute of {where} must be a boolean or a non-negative integer, got "
                     f"{terminal!r}")


@dataclass(frozen=True)
class Event:
    """A zero of ``fun(t, x)`` located during integration.

    Parameters
    ----------
    fun : callable ``fun(t, x) -> float``
    terminal : bool or int
        Stop the integration at the first zero (True), at the n-th (n ≥ 1), or never (False or 0).
    direction : float
        Only zeros crossed from negative to positive (> 0), positive to negative (< 0), or both (0).
    name : str, optional
        Key of the event's times in ``Trajectory.events``; defaults to ``fun.__name__``.
    """

    fun: Callable[[float, np.ndarray], float]
    terminal: bool | int = False
    direction: float = 0.0
    name: str | None = None

    def __post_init__(self):
        if not callable(self.fun):
            raise TypeError(f"Event.fun must be callable fun(t, x), got {type(self.fun).__name__}")
        _terminal_count(self.terminal, f"event {self.key!r}")
        if isinstance(self.direction, bool) or not isinstance(self.direction, numbers.Real) \
                or not np.isfinite(self.direction):
            raise ValueError(f"the direction of event {self.key!r} must be a finite number, got {self.direction!r}")

    @property
    def key(self) -> str:
        return self.name or getattr(self.fun, "__name__", "event")

    @property
    def count(self) -> int:
        """After how many occurrences the run stops (0: never)."""
        return _terminal_count(self.terminal, f"event {self.key!r}")


def loss_below(problem, eps: float) -> Event:
    """Terminal event: stop when f(x) falls to ``eps``."""
    eps = positive(eps, "eps")

    def loss_minus_eps(t, x):
        return float(problem.loss(x)) - eps
    return Event(loss_minus_eps, terminal=True, direction=-1.0, name=f"loss_below_{eps:g}")


def as_events(events, args: tuple = ()) -> list[Event]:
    """``events`` (a callable, an :class:`Event` or a sequence of them) as Events, with scipy's
    ``terminal`` / ``direction`` attributes read from plain callables and ``args`` bound."""
    if events is None:
        return []
    if callable(events) or isinstance(events, Event):
        events = [events]
    out = []
    for i, ev in enumerate(events):
        if not isinstance(ev, Event):
            if not callable(ev):
                raise TypeError(f"events[{i}] must be a callable fun(t, y) or an Event, got {type(ev).__name__}")
            where = f"events[{i}] ({getattr(ev, '__name__', type(ev).__name__)})"
            ev = Event(ev, terminal=_terminal_count(getattr(ev, "terminal", None), where),
                       direction=float(getattr(ev, "direction", 0.0)), name=getattr(ev, "__name__", f"event_{i}"))
        if args:
            fun = ev.fun
            ev = Event(lambda t, y, fun=fun: fun(t, y, *args), ev.terminal, ev.direction, ev.key)
        out.append(ev)
    keys = [ev.key for ev in out]
    if len(set(keys)) < len(keys):  # two events of one name would share their recorded times
        out = [Event(ev.fun, ev.terminal, ev.direction, f"{ev.key}_{i}" if keys.count(ev.key) > 1 else ev.key)
               for i, ev in enumerate(out)]
    return out


class EventLog:
    """The events of one run: their values at the last step, what happened, and when to stop.

    Parameters
    ----------
    events : list of Event
    t0 : float
    y0 : ndarray
        The initial state (the events' values there are the reference for the first step).
    """

    def __init__(self, events: list[Event], t0: float, y0: np.ndarray):
        self.events = events
        self._nan_reported = [False] * len(events)
        self.values = [self._value(j, t0, y0) for j in range(len(events))]
        self.times = {ev.key: [] for ev in events}
        self.states = {ev.key: [] for ev in events}
        self.counts = [0] * len(events)

    def _value(self, j: int, t, y) -> float:
        ev = self.events[j]
        raw = ev.fun(t, y)
        try:
            value = float(np.real_if_close(raw))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"event {ev.key!r} must return one real number, got {type(raw).__name__}: {exc}") from None
        if np.isnan(value) and not self._nan_reported[j]:
            warnings.warn(f"event {ev.key!r} returned NaN at t = {t:.9g}: it cannot fire while it is NaN",
                          EventWarning, stacklevel=4)
            self._nan_reported[j] = True
        return value

    def step(self, t_old: float, t_new: float, y_new: np.ndarray, sol) -> float | None:
        """Locate the events crossed in the step from ``t_old`` to ``t_new`` on the interpolant ``sol``.

        Returns the time at which a terminal event stops the run (zeros after it in the same step are
        dropped), or None.
        """
        found = []
        for j, ev in enumerate(self.events):
            g_old, g_new = self.values[j], self._value(j, t_new, y_new)
            self.values[j] = g_new
            up, down = g_old < 0 <= g_new, g_old > 0 >= g_new
            if (up and ev.direction >= 0) or (down and ev.direction <= 0):
                root = t_new if g_new == 0 else brentq(lambda s: ev.fun(s, sol(s)), t_old, t_new,
                                                       xtol=4 * np.finfo(float).eps * max(abs(t_new), 1e-300),
                                                       rtol=4 * np.finfo(float).eps)
                found.append((abs(root - t_old), j, root))
        for _, j, root in sorted(found):  # in time order
            ev = self.events[j]
            self.times[ev.key].append(float(root))
            self.states[ev.key].append(np.array(y_new if root == t_new else sol(root)))
            self.counts[j] += 1
            if ev.count and self.counts[j] >= ev.count:
                return float(root)
        return None

    def states_array(self, dim: int) -> dict:
        """Event name -> the states at its occurrences, shape (occurrences, dim)."""
        return {key: np.array(states).reshape(len(states), dim) for key, states in self.states.items()}
