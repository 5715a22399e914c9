"""How a run fails: the exceptions it raises (each naming the time or step reached and carrying the
partial trajectory), and the budgets that stop a runaway run before it exhausts the machine."""

from __future__ import annotations

import functools
import os
import time
from typing import TYPE_CHECKING

from .checks import nonfinite_where, positive, positive_int

if TYPE_CHECKING:  # for the annotations only: a failure carries the trajectory up to where it happened
    from .trajectory import Trajectory

# Budgets: a run that needs more is stopped with BudgetExceeded, naming the budget and the time reached.
# A million steps is minutes of stepping, far beyond any transient pgflow integrates; 512 MiB of saved
# states and interpolants leaves a laptop room for the rest (a finite-time blow-up without them grew
# 10 MB/s until it had taken 10.6 GB).
DEFAULT_MAX_STEPS = 1_000_000
DEFAULT_MAX_MEMORY = 2 ** 29


class IntegrationError(RuntimeError):
    """A solve that failed: scipy's message, the time reached, and the trajectory up to there."""

    def __init__(self, message: str, t_reached: float, partial: Trajectory):
        super().__init__(message)
        self.t_reached = t_reached
        self.partial = partial


class ToleranceNotMet(IntegrationError):
    """``guarantee=True`` could not bring the estimated global error within rtol: carries the best
    ``estimate`` reached (shape (T,), or (T, B) for a batch)."""

    def __init__(self, message: str, estimate):
        super().__init__(message, float("nan"), None)
        self.estimate = estimate


class BudgetExceeded(IntegrationError):
    """A run stopped by its budget: ``budget`` names it ("max_steps", "max_time" or "max_memory")."""

    def __init__(self, message: str, t_reached: float, partial, budget: str):
        super().__init__(message, t_reached, partial)
        self.budget = budget


class DivergenceError(FloatingPointError):
    """GD left every sensible bound: carries the ``step`` and the ``partial`` trajectory before it."""

    def __init__(self, message: str, step: int, partial: Trajectory):
        super().__init__(message)
        self.step = step
        self.partial = partial


class NonFiniteMonitor(FloatingPointError):
    """A monitor that is NaN or ±inf on the finite states of a run (``integrate``, gradient descent):
    names the monitor and the first time; carries the whole ``trajectory``, monitors included, so
    nothing computed is lost."""

    def __init__(self, message: str, monitor: str, trajectory: Trajectory):
        super().__init__(message)
        self.monitor = monitor
        self.trajectory = trajectory


def reporting_nonfinite_monitors(run):
    """Decorate a function returning a Trajectory (or a list of them, a batch) so that a monitor that is
    not finite on a saved state raises :class:`NonFiniteMonitor` instead of passing as a number."""
    @functools.wraps(run)
    def checked(*args, **kwargs):
        result = run(*args, **kwargs)
        for b, member in enumerate(result if isinstance(result, list) else [result]):
            for name, values in member.monitors.items():
                where = nonfinite_where(values, member.t)
                if where is not None:
                    batch = f" of batch member {b}" if isinstance(result, list) else ""
                    raise NonFiniteMonitor(f"monitor {name!r}{batch} is {where}, on a finite state: the states "
                                           f"are kept in the error's .trajectory", name, member)
        return result
    return checked


def available_memory() -> int | None:
    """Bytes of memory the system can still give (MemAvailable on Linux), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


class Budget:
    """Steps, wall time and bytes of saved output a run may use; ``exceeded`` says which ran out."""

    def __init__(self, max_steps, max_time, max_memory):
        self.max_steps = positive_int(max_steps, "max_steps")
        self.max_time = None if max_time is None else positive(max_time, "max_time")
        self.max_memory = positive_int(max_memory, "max_memory")
        self.start = time.perf_counter()

    def exceeded(self, steps: int, memory: int) -> str | None:
        if steps >= self.max_steps:
            return f"max_steps: {steps} steps taken, the budget is {self.max_steps}"
        if memory > self.max_memory:
            return (f"max_memory: {memory / 2**20:.0f} MiB of saved states and interpolants, the budget is "
                    f"{self.max_memory / 2**20:.0f} MiB")
        if self.max_time is not None and time.perf_counter() - self.start > self.max_time:
            return f"max_time: {time.perf_counter() - self.start:.1f} s of wall time, the budget is {self.max_time:g} s"
        return None
