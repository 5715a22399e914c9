"""Side-by-side timing: candidates are interleaved so machine noise hits them alike."""

from __future__ import annotations

import time

import numpy as np

from pgflow.analysis.text import table as text_table


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
    """Right-aligned columns under a ruled header (pgflow's one table printer)."""
    return text_table(header, rows, align=">" * len(header), rule=True)
