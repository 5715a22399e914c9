"""The result of every run, continuous or discrete: states over time plus their provenance."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ._io import atomic_path


@functools.cache
def code_version() -> str:
    """The package version plus a hash of the ``flows`` and ``analysis`` sources.

    Caches of computed results (figure data, sweep runs) are keyed by it, so that editing the library
    without bumping the version never reuses a result the old code computed.
    """
    digest = hashlib.sha256()
    root = pathlib.Path(__file__).resolve().parents[1]
    for package in ("flows", "analysis"):
        for path in sorted((root / package).glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{package_version()}+{digest.hexdigest()[:12]}"


def package_version() -> str:
    try:
        from importlib.metadata import version
        return version("pgflow")
    except Exception:  # running from a source tree that was never installed
        return "0+unknown"


class PiecewiseLinear:
    """x(t) interpolated linearly between saved states: GD's continuous-time embedding."""

    def __init__(self, t: np.ndarray, x: np.ndarray):
        self.t, self.x = t, x

    def __call__(self, t):
        t = np.asarray(t, dtype=float)
        i = np.clip(np.searchsorted(self.t, t, side="right") - 1, 0, len(self.t) - 2)
        w = ((t - self.t[i]) / (self.t[i + 1] - self.t[i]))[..., None]
        return (1 - w) * self.x[i] + w * self.x[i + 1]


@dataclass(frozen=True, eq=False)
class Trajectory:
    """States ``x`` at times ``t`` (time-first), monitors on those states, and provenance.

    Attributes
    ----------
    t : ndarray, shape (T,)
        Times (for GD: k·η at the recorded steps k).
    x : ndarray, shape (T, dim)
        Flat states.
    layout : tuple of (name, (rows, cols))
        The factor blocks of ``x`` (from the problem), so ``U``, ``V`` work after :meth:`load`.
    monitors : dict of str -> ndarray, shape (T,) or (T, q)
    meta : dict
        Problem, sizes, seeds, method, tolerances or step size, solver statistics, wall time, version.
    dense : callable, optional
        ``dense(t) -> x(t)``: the solver's continuous output (not saved by :meth:`save`).
    """

    t: np.ndarray
    x: np.ndarray
    layout: tuple
    monitors: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    dense: Callable | None = None

    def _block(self, name: str) -> np.ndarray:
        start = 0
        for block, (a, b) in self.layout:
            if block == name:
                return self.x[:, start:start + a * b].reshape(-1, a, b)
            start += a * b
        raise AttributeError(f"this trajectory has no factor {name!r}; its factors are "
                             f"{[n for n, _ in self.layout]}")

    @property
    def U(self) -> np.ndarray:
        """U over time, shape (T, m, k) (X for a symmetric problem)."""
        return self._block(self.layout[0][0])

    @property
    def V(self) -> np.ndarray:
        """V over time, shape (T, n, k) (X for a symmetric problem)."""
        return self._block(self.layout[-1][0])

    @property
    def final(self) -> np.ndarray:
        """The last saved state, shape (dim,)."""
        return self.x[-1]

    def at(self, t) -> np.ndarray:
        """The state at time(s) ``t`` from the dense output, shape (dim,) or (len(t), dim).

        For a flow this is the solver's interpolant (DOP853's can be much less accurate than its
        steps: request the times through ``t_eval`` when accuracy matters). For GD it is the
        piecewise-linear interpolant of the recorded iterates, exact at the recorded steps.
        """
        t_arr = np.asarray(t, dtype=float)
        lo, hi = self.t[0], self.t[-1]
        span = 1e-12 * max(1.0, abs(hi))
        if np.any(t_arr < lo - span) or np.any(t_arr > hi + span) or not np.all(np.isfinite(t_arr)):
            raise ValueError(f"t must lie in [{lo}, {hi}], got {t}")
        if self.dense is None:
            raise ValueError("this trajectory has no dense output (loaded from a file, or dense_output=False)")
        return self.dense(t_arr)

    def save(self, path) -> str:
        """Write an ``.npz`` file atomically (temporary file in the same folder, then rename).

        Returns the path written. The dense output is not saved.
        """
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        arrays = {"t": self.t, "x": self.x,
                  "meta": np.array(json.dumps({"meta": self.meta, "layout": self.layout})),
                  **{f"monitor/{k}": v for k, v in self.monitors.items()}}
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        return path

    @classmethod
    def load(cls, path) -> "Trajectory":
        """Read a file written by :meth:`save`."""
        with np.load(os.fspath(path), allow_pickle=False) as data:
            head = json.loads(str(data["meta"]))
            monitors = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("monitor/")}
            layout = tuple((name, tuple(shape)) for name, shape in head["layout"])
            return cls(t=data["t"], x=data["x"], layout=layout, monitors=monitors, meta=head["meta"])
