"""One BLAS thread (integrate's default) against BLAS's own default, on explicit and implicit solves."""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks._timing import table
from benchmarks.cases import case
from pgflow.flows import GradientFlow, integrate


def main(rtol: float = 1e-8) -> dict:
    runs = (("(b) DOP853", "b", 30.0, "DOP853"), ("(c) DOP853", "c", 30.0, "DOP853"),
            ("(d3) LSODA + Jacobian", "d3", 100.0, "LSODA"), ("(d3) BDF + Jacobian", "d3", 100.0, "BDF"))
    rows, ratios = [], {}
    for label, name, t_end, method in runs:
        problem, x0 = case(name)
        times = {}
        for threads in (1, None):
            best = np.inf
            for _ in range(2):
                start = time.perf_counter()
                integrate(GradientFlow(problem), x0, t_end, method=method, rtol=rtol, atol=1e-12, default_monitors=False,
                          dense_output=False, blas_threads=threads, reduce=False)
                best = min(best, time.perf_counter() - start)
            times[threads] = best
        ratios[label] = times[None] / times[1]
        rows.append((label, problem.dim, f"{times[1]:.3f}", f"{times[None]:.3f}", f"{ratios[label]:.2f}"))
    print(f"seconds (best of 2) on {os.cpu_count()} cores at rtol {rtol:g}")
    print(table(rows, ("solve", "dim", "1 BLAS thread", "BLAS default", "default / 1 thread")))
    return ratios


if __name__ == "__main__":
    main()
