"""method="auto" against every fixed method on the benchmark cases: auto / best must stay ≤ 1.5."""

from __future__ import annotations

import time

import numpy as np

from benchmarks._timing import table
from benchmarks.cases import case
from flows import GradientFlow, integrate

CASES = {"a": 30.0, "mild": 30.0, "b": 30.0, "d3": 100.0, "c": 30.0}
METHODS = ("auto", "RK45", "DOP853", "LSODA", "BDF")


def time_run(flow, x0, t_end, method, rtol, budget):
    best = np.inf
    for _ in range(2):
        start = time.perf_counter()
        integrate(flow, x0, t_end, method=method, rtol=rtol, atol=1e-12, monitors={}, dense_output=False)
        best = min(best, time.perf_counter() - start)
        if best > budget:
            break
    return best


def main(rtol: float = 1e-8, budget: float = 5.0) -> dict:
    rows, worst = [], {}
    for name, t_end in CASES.items():
        problem, x0 = case(name)
        flow = GradientFlow(problem)
        times = {}
        for method in METHODS:
            if method in ("LSODA", "BDF") and problem.dim > 5000:
                times[method] = np.nan  # a dense Jacobian of dim 40000 needs 12.8 GB
                continue
            if method in ("RK45", "DOP853") and name == "d3" and method == "RK45":
                times[method] = np.nan  # stability-bound like DOP853, minutes; DOP853 stands for both
                continue
            times[method] = time_run(flow, x0, t_end, method, rtol, budget)
        chosen = integrate(flow, x0, min(t_end, 1e-3), monitors={}, dense_output=False).meta["method"]
        chosen = integrate(flow, x0, t_end, rtol=rtol, atol=1e-12, monitors={}, dense_output=False).meta["method"]
        best = np.nanmin([times[m] for m in METHODS[1:]])
        worst[name] = times["auto"] / best
        rows.append((name, problem.dim, chosen, *(("—" if np.isnan(times[m]) else f"{times[m]:.3f}") for m in METHODS),
                     f"{worst[name]:.2f}"))
    print(f"seconds to t_end at rtol {rtol:g} (best of 2); '—': not run (see the script)")
    print(table(rows, ("case", "dim", "auto chose", *METHODS, "auto / best")))
    print(f"largest ratio auto / best fixed method: {max(worst.values()):.2f}x")
    return worst


if __name__ == "__main__":
    main()
