"""A plain user ``solve_ivp`` (dense m×n residual, no Jacobian, scipy's t_eval) against ``integrate``.

Case (b): m = n = 200, r = 5, k = 10, κ = 10, init scale 1e-4; errors over the whole transient.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.integrate import solve_ivp

from benchmarks._timing import table
from benchmarks.cases import case, max_error, reference
from pgflow.flows import GradientFlow, integrate


def main(t_end: float = 30.0, rtol: float = 1e-8) -> dict:
    problem, x0 = case("b")
    grid = np.linspace(0, t_end, 201)
    ref = reference(problem, x0, grid)
    Sigma = problem.target.dense()

    def dense_rhs(t, x):
        U, V = problem.unpack(x)
        R = Sigma - U @ V.T
        return np.concatenate([(R @ V).ravel(), (R.T @ U).ravel()])

    rows, times = [], {}
    for label, run in (
        ("solve_ivp DOP853, dense residual", lambda: solve_ivp(dense_rhs, (0, t_end), x0, method="DOP853", rtol=rtol,
                                                                atol=1e-12, t_eval=grid)),
        ("integrate (auto), factored gradient", lambda: integrate(GradientFlow(problem), x0, t_end, rtol=rtol,
                                                                  atol=1e-12, t_eval=grid, default_monitors=False,
                                                                  dense_output=False, reduce=False)),
    ):
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            out = run()
            best = min(best, time.perf_counter() - start)
        X = out.y.T if hasattr(out, "y") else out.x
        nfev = out.nfev if hasattr(out, "nfev") else out.stats.nfev
        times[label] = best
        rows.append((label, nfev, f"{best:.3f}", f"{max_error(problem, X, ref):.1e}"))
    # equal accuracy: the loosest rtol at which integrate is at least as accurate as solve_ivp was
    target = float(rows[0][3])
    for loose in (1e-4, 1e-5, 1e-6, 1e-7, 1e-8):
        start = time.perf_counter()
        out = integrate(GradientFlow(problem), x0, t_end, rtol=loose, atol=1e-12, t_eval=grid, default_monitors=False,
                        dense_output=False, reduce=False)
        elapsed = time.perf_counter() - start
        if max_error(problem, out.x, ref) <= target:
            break
    label = f"integrate (auto), rtol {loose:g}: equal accuracy"
    times[label] = elapsed
    rows.append((label, out.stats.nfev, f"{elapsed:.3f}", f"{max_error(problem, out.x, ref):.1e}"))
    print(f"case (b): m = n = 200, k = 10, r = 5, t_end = {t_end:g}, rtol = {rtol:g}, 201 output times (best of 3)")
    print(table(rows, ("run", "nfev", "seconds", "max error over the grid")))
    ratio = times[rows[0][0]] / times[rows[1][0]]
    equal = times[rows[0][0]] / times[label]
    print(f"ratio solve_ivp / integrate at the same rtol: {ratio:.1f}x (integrate {float(rows[0][3]) / float(rows[1][3]):.0f}x more accurate)")
    print(f"ratio solve_ivp / integrate at equal accuracy: {equal:.1f}x")
    return {"ratio_same_rtol": ratio, "ratio_equal_accuracy": equal}


if __name__ == "__main__":
    main()
