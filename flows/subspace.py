"""The subspaces a reduced run stays in, and its saved states rebuilt from them on demand.

A reduced run (:mod:`pgflow.flows.reduction`) solves for the coordinates of each factor in a fixed
orthonormal basis: U = Q_U C, V = Q_V D (X = Q C for a symmetric problem). :class:`Bases` holds the
Q's and maps between full and reduced states; :class:`ReducedStates` holds a run's reduced states and
hands out full ones one at a time (or all, when asked); :class:`LiftedDense` does the same for a
solver's dense output. :class:`pgflow.flows.trajectory.Trajectory` keeps a reduced run this way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Bases", "LiftedDense", "ReducedStates"]


@dataclass(frozen=True, eq=False)
class Bases:
    r"""Orthonormal bases of the subspaces a reduced run stays in, one per factor block of the state.

    Each factor block F (rows × k) of a full state is F = Q F̃, with Q (rows × p) of orthonormal
    columns and F̃ (p × k) the block of the reduced state: U = Q_U C and V = Q_V D for an asymmetric
    problem, X = Q C for a symmetric one (see :mod:`pgflow.flows.reduction` for why the run never
    leaves them). The bases of a batch carry a leading member axis.

    Parameters
    ----------
    matrices : tuple of ndarray, each shape (rows, p) or (B, rows, p)
        Q of every block of ``layout``, in its order.
    layout : tuple of (name, (rows, cols))
        The blocks of the full state.
    """

    matrices: tuple
    layout: tuple

    def __post_init__(self):
        if len(self.matrices) != len(self.layout):
            raise ValueError(f"matrices must hold one basis per block of the layout ({len(self.layout)}), "
                             f"got {len(self.matrices)}")
        for Q, (name, (rows, _)) in zip(self.matrices, self.layout):
            if not (isinstance(Q, np.ndarray) and Q.dtype == np.float64 and Q.ndim in (2, 3) and Q.shape[-2] == rows):
                raise ValueError(f"the basis of {name} must be a float64 array of shape ({rows}, p) or (B, {rows}, p), "
                                 f"got {getattr(Q, 'shape', type(Q).__name__)}")

    @property
    def reduced_layout(self) -> tuple:
        """The blocks of a reduced state: ((name, (p, cols)), ...)."""
        return tuple((name, (Q.shape[-1], cols)) for Q, (name, (_, cols)) in zip(self.matrices, self.layout))

    @property
    def dim(self) -> int:
        return sum(a * b for _, (a, b) in self.layout)

    @property
    def reduced_dim(self) -> int:
        return sum(a * b for _, (a, b) in self.reduced_layout)

    def member(self, b: int) -> "Bases":
        """The bases of batch member b."""
        return Bases(tuple(Q[b] for Q in self.matrices), self.layout)

    def _map(self, x, transpose: bool):
        """Q F̃ (lift) or Qᵀ F (project), block by block, for states of shape (..., size)."""
        x = np.asarray(x, dtype=np.float64)
        source, target = (self.layout, self.reduced_layout) if transpose else (self.reduced_layout, self.layout)
        lead, start, blocks = x.shape[:-1], 0, []
        for Q, (_, shape) in zip(self.matrices, source):
            block = x[..., start:start + shape[0] * shape[1]].reshape(lead + shape)
            blocks.append(np.matmul(Q.mT if transpose else Q, block).reshape(lead + (-1,)))
            start += shape[0] * shape[1]
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=-1)

    def lift(self, z) -> np.ndarray:
        """Full states x from reduced ones: each block F = Q F̃. Shape (..., reduced_dim) -> (..., dim)."""
        return self._map(z, transpose=False)

    def project(self, x) -> np.ndarray:
        """Reduced states from full ones: each block F̃ = Qᵀ F. Shape (..., dim) -> (..., reduced_dim)."""
        return self._map(x, transpose=True)


class ReducedStates:
    """Saved states kept as bases and reduced coordinates, rebuilt as full states on demand.

    ``states[i]`` rebuilds one state (shape (dim,)), ``states[a:b]`` several ((T', dim)), iteration one
    at a time, and ``np.asarray(states)`` all of them (T × dim memory: only when asked).

    Parameters
    ----------
    bases : Bases
    coordinates : ndarray, shape (T, reduced_dim)
    start : ndarray, shape (dim,), optional
        The run's initial state, when the first saved state is the start: returned as it was given
        (Q Qᵀx₀ would be x₀ only to rounding), so that ``states[0]`` is x₀ as in a full run.
    """

    def __init__(self, bases: Bases, coordinates: np.ndarray, start: np.ndarray | None = None):
        coordinates = np.asarray(coordinates)
        if coordinates.ndim != 2 or coordinates.shape[1] != bases.reduced_dim:
            raise ValueError(f"coordinates must have shape (T, {bases.reduced_dim}), got {coordinates.shape}")
        if start is not None and (np.shape(start) != (bases.dim,) or not len(coordinates)):
            raise ValueError(f"start must be the first saved state, shape ({bases.dim},), got shape {np.shape(start)} "
                             f"with {len(coordinates)} saved states")
        self.bases, self.coordinates, self.start = bases, coordinates, start

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.coordinates), self.bases.dim)

    def __len__(self) -> int:
        return len(self.coordinates)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, tuple):
            raise TypeError("index the saved states along time only (states[i], states[a:b]); take np.asarray(states) "
                            "for more")
        states = self.bases.lift(self.coordinates[index])
        if self.start is not None:
            first = np.arange(len(self.coordinates))[index] == 0  # which of the rows asked for is the start
            if states.ndim == 1:
                return np.array(self.start) if first else states
            states[first] = self.start
        return states

    def __iter__(self):
        for i, z in enumerate(self.coordinates):
            yield np.array(self.start) if i == 0 and self.start is not None else self.bases.lift(z)

    def __array__(self, dtype=None, copy=None):
        states = self[:]
        return states if dtype is None else states.astype(dtype, copy=False)


class LiftedDense:
    """The dense output of a reduced run as full states: ``bases.lift(dense(t))``."""

    def __init__(self, dense: Callable, bases: Bases):
        self.dense, self.bases = dense, bases

    def __call__(self, t):
        return self.bases.lift(self.dense(t))
