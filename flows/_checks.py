"""Argument checks shared by every module: each error names the argument and what was expected."""

from __future__ import annotations

import numbers

import numpy as np


def as_float_array(value, name: str, ndim: int | None = None, shape: tuple | None = None) -> np.ndarray:
    """Return ``value`` as a finite float64 array, or raise naming ``name``.

    ``shape`` entries that are ``None`` match any length.
    """
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
