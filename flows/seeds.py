"""Seeds: every random draw in pgflow comes from a ``numpy.random.SeedSequence`` and nothing else.

Three rules, so that a number can be reproduced alone:

- a seed is an int, a ``SeedSequence`` or (where draws are not addressed by index) a ``Generator``;
  ``None`` is refused: pgflow never draws from an unseeded generator;
- different purposes drawing with the same int seed use different child streams of it
  (:data:`TARGET_STREAM`, :data:`INIT_STREAM`), so a target and an initial state drawn with one seed
  are independent;
- draws indexed by a piece or a step (a perturbation's direction on piece j, a mini-batch at step k)
  come from child j of the seed (:func:`child_rng`), so they do not depend on the order in which
  the pieces or steps are visited.
"""

from __future__ import annotations

import numbers

import numpy as np

# Streams of one seed for different purposes. A target and an initial state drawn with the same int
# seed must be independent: with plain default_rng(seed) both draw the same Gaussians, and U₀ then
# lies exactly in col(Φ). Far from the small indices used for perturbation pieces and mini-batches.
TARGET_STREAM, INIT_STREAM = 1_000_001, 1_000_002


def seed_rng(seed, name: str = "seed", stream: int | None = None) -> np.random.Generator:
    """A generator from ``seed`` (an int, a SeedSequence or a Generator, used as given).

    With ``stream``, an int or SeedSequence seed gives its child ``stream`` (:func:`child_rng`), so
    different purposes drawing with the same seed get independent numbers.
    """
    if seed is None:
        raise ValueError(f"{name} is required (an int): pgflow never draws from an unseeded generator")
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.random.SeedSequence)):
        raise TypeError(f"{name} must be an int or numpy.random.SeedSequence, got {type(seed).__name__}")
    return np.random.default_rng(seed) if stream is None else child_rng(seed, stream, name)


def seed_sequence(seed, name: str = "seed") -> np.random.SeedSequence:
    """``seed`` as a SeedSequence (a non-negative int or a SeedSequence; not a Generator, whose draws
    cannot be addressed by index)."""
    if seed is None:
        raise ValueError(f"{name} is required (an int): pgflow never draws from an unseeded generator")
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise TypeError(f"{name} must be a non-negative int or numpy.random.SeedSequence (draws are indexed, "
                        f"so a Generator cannot be used), got {seed!r}")
    return np.random.SeedSequence(int(seed))


def child_rng(seed, index: int, name: str = "seed") -> np.random.Generator:
    """The generator of child ``index`` of ``seed``: ``SeedSequence(seed).spawn(n)[index]`` for any
    n > index, without spawning the others and without changing ``seed`` (``spawn`` would)."""
    ss = seed_sequence(seed, name)
    child = np.random.SeedSequence(ss.entropy, spawn_key=ss.spawn_key + (int(index),), pool_size=ss.pool_size)
    return np.random.default_rng(child)


def seed_record(seed):
    """A JSON-friendly record of a seed, for provenance."""
    if seed is None or isinstance(seed, (bool, numbers.Integral)):
        return None if seed is None else int(seed)
    if isinstance(seed, np.random.SeedSequence):
        return {"entropy": str(seed.entropy), "spawn_key": list(seed.spawn_key)}
    return repr(seed)


def batch_indices(seed, index: int, n_measurements: int, batch_size: int) -> np.ndarray:
    """The mini-batch of step (or piece) ``index``: ``batch_size`` distinct measurements of
    ``n_measurements``, drawn from :func:`child_rng` (seed, index)."""
    return child_rng(seed, index).choice(n_measurements, size=batch_size, replace=False)
