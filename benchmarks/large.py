"""Case (c), m = n = 1000, k = 20, r = 10: the right-hand side against the BLAS lower bound for its
flops, and the whole solve against nfev × (one right-hand side)."""

from __future__ import annotations

import time

import numpy as np

from benchmarks._timing import compare, table
from benchmarks.cases import case
from flows import GradientFlow, integrate
from flows._blas import limit


def gemm_rate(threads) -> float:
    """Flop rate of a large square matrix product: what this machine's BLAS can sustain."""
    A = np.random.default_rng(0).standard_normal((1500, 1500))
    with limit(threads):
        t = compare({"gemm": lambda: A @ A}, repeats=5)["gemm"]
    return 2 * 1500 ** 3 / t


def main(t_end: float = 30.0, rtol: float = 1e-8) -> dict:
    problem, x0 = case("c")
    (m, k), (n, _) = problem.layout[0][1], problem.layout[1][1]
    r = problem.target.rank
    # Grams VᵀV, UᵀU; products U(VᵀV), V(UᵀU); ΨᵀV, ΦᵀU; Φ(σ⊙·), Ψ(σ⊙·): two flops per multiply-add
    flops = 2 * (n * k * k + m * k * k + m * k * k + n * k * k + n * r * k + m * r * k + m * r * k + n * r * k)
    flow = GradientFlow(problem)
    rows = []
    results = {}
    for threads in (1, None):
        with limit(threads):
            rhs = compare({"rhs": lambda: flow(0.0, x0)}, repeats=9, number=20)["rhs"]
            start = time.perf_counter()
            run = integrate(flow, x0, t_end, rtol=rtol, atol=1e-12, monitors={}, dense_output=False,
                            blas_threads=threads)
            solve = time.perf_counter() - start
        bound = flops / gemm_rate(threads)
        label = "1 thread" if threads == 1 else "BLAS default"
        overhead = solve / (run.meta["nfev"] * rhs)
        rows.append((label, f"{1e3 * rhs:.3f}", f"{1e3 * bound:.3f}", f"{rhs / bound:.1f}", run.meta["nfev"],
                     f"{solve:.2f}", f"{overhead:.2f}"))
        results[label] = {"rhs_over_bound": rhs / bound, "solve_over_nfev_rhs": overhead}
    print(f"case (c): m = n = {m}, k = {k}, r = {r}, {flops / 1e6:.1f} Mflop per right-hand side, "
          f"DOP853 (auto) to t = {t_end:g} at rtol {rtol:g}")
    print(table(rows, ("BLAS threads", "rhs ms", "flop bound ms", "rhs / bound", "nfev", "solve s",
                       "solve / (nfev × rhs)")))
    return results


if __name__ == "__main__":
    main()
