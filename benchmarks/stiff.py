"""The stiff case (d3): method="auto" against DOP853 and against LSODA without the Jacobian."""

from __future__ import annotations

import time

import numpy as np

from benchmarks._timing import table
from benchmarks.cases import case, max_error, reference
from pgflow.flows import GradientFlow, integrate


def main(t_end: float = 100.0, rtol: float = 1e-8) -> dict:
    problem, x0 = case("d3")
    U, V = problem.unpack(x0)
    grid = np.linspace(0, t_end, 101)
    ref = reference(problem, x0, grid)
    flow = GradientFlow(problem)
    rows, times, reasons = [], {}, {}
    for label, kw in (("auto", {}), ("DOP853", {"method": "DOP853"}),
                      ("LSODA, finite-difference Jacobian", {"method": "LSODA", "jacobian": False}),
                      ("LSODA, analytic Jacobian", {"method": "LSODA"})):
        start = time.perf_counter()
        run = integrate(flow, x0, t_end, rtol=rtol, atol=1e-12, t_eval=grid, default_monitors=False, dense_output=False,
                        reduce=False, **kw)
        times[label] = time.perf_counter() - start
        reasons[label] = run.stats.method_reason
        rows.append((label, run.stats.method, run.stats.rhs_calls, run.stats.njev, f"{times[label]:.3f}",
                     f"{max_error(problem, run.x, ref):.1e}"))
    print(f"stiff case: m = n = 20, k = 5, U₀ ≈ 3, V₀ ≈ 1e-6, ‖U₀ᵀU₀ − V₀ᵀV₀‖ = "
          f"{np.linalg.norm(U.T @ U - V.T @ V, 2):.0f}, σ_min = 1, t_end = {t_end:g}, rtol = {rtol:g}")
    print(table(rows, ("run", "method", "rhs calls", "njev", "seconds", "max error")))
    ratios = {k: times[k] / times["auto"] for k in times if k != "auto"}
    for k, v in ratios.items():
        print(f"ratio {k} / auto: {v:.1f}x")
    print(f"auto chose {reasons['auto']}")
    return ratios


if __name__ == "__main__":
    main()
