"""Side-by-side timing: candidates are interleaved so machine noise hits them alike."""

from __future__ import annotations

import time

import numpy as np


def compare(candidates: dict, repeats: int = 7, number: int = 1) -> dict[str, float]:
    """Median seconds per call of each zero-argument callable, measured round-robin."""
    times = {name: [] for name in candidates}
    for fn in candidates.values():
        fn()  # warm caches and BLAS threads before anything is timed
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            for _ in range(number):
                fn()
            times[name].append((time.perf_counter() - start) / number)
    return {name: float(np.median(v)) for name, v in times.items()}


def table(rows: list[tuple], header: tuple) -> str:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
